//! Tests of the memory coordinator: the helpers all of them use, and the
//! sizing rules on fresh stats (release, growth, floors, max, the host's
//! reserve, the report). Stale and stalled stats with grants in flight
//! (`stale`), the property tests (`properties`) and the simulated guest
//! (`sim`) have modules of their own.

use super::*;

mod properties;
mod sim;
mod stale;

const KERNEL_MIB: u64 = TEST_KERNEL_MIB;

// `dom`: a domain whose kernel keeps 40 MiB (available = actual − 40 MiB).
use super::test_domain as dom;

fn host_mib(mib: u64) -> HostMem {
    HostMem {
        free_kib: mib * MIB,
    }
}

fn big_host() -> HostMem {
    host_mib(20 * 1024)
}

fn action<'a>(p: &'a MemPlan, name: &str) -> Option<&'a SetMemory> {
    p.actions().find(|a| a.name == name)
}

/// Plans one period and applies every action (the balloon calls succeed).
fn run(c: &mut Coordinator, now_ms: u64, host: &HostMem, doms: &[DomainMem]) -> MemPlan {
    let p = c.plan(now_ms, host, doms);
    c.commit(now_ms, &acts(&p));
    p
}

/// Releases then grants, as a list.
fn acts(p: &MemPlan) -> Vec<SetMemory> {
    p.actions().cloned().collect()
}

fn has_note(p: &MemPlan, name: &str, f: impl Fn(&Note) -> bool) -> bool {
    p.notes.iter().any(|(n, note)| n == name && f(note))
}

/// A guest whose balloon follows each request before the next period and
/// whose stats are fresh every period (no lag): free = actual − kernel −
/// used.
struct Guest {
    name: &'static str,
    actual_mib: u64,
    max_mib: u64,
    used_mib: u64,
}

impl Guest {
    fn snapshot(&self, lu: u64) -> DomainMem {
        let free = self.actual_mib - KERNEL_MIB - self.used_mib;
        dom(self.name, self.actual_mib, self.max_mib, free, lu)
    }
    fn free_mib(&self) -> u64 {
        self.actual_mib - KERNEL_MIB - self.used_mib
    }
    fn apply(&mut self, p: &MemPlan) {
        if let Some(a) = action(p, self.name) {
            self.actual_mib = a.to_kib / MIB;
        }
    }
}

#[test]
fn first_sample_is_not_shrunk() {
    let mut c = Coordinator::new(MemConfig::default());
    let p = run(&mut c, 0, &big_host(), &[dom("a", 1024, 2048, 300, 10)]);
    assert!(action(&p, "a").is_none());
    assert!(has_note(&p, "a", |n| *n == Note::Appeared));
}

#[test]
fn guest_with_300mb_free_releases_gradually_to_target() {
    for (cap_mib, min_periods) in [(128, 3), (32, 6)] {
        let cfg = MemConfig {
            release_cap_kib: cap_mib * MIB,
            ..MemConfig::default()
        };
        let target = cfg.target_free_kib / MIB;
        let band_top = (cfg.target_free_kib + cfg.band_kib) / MIB;
        let mut c = Coordinator::new(cfg);
        // 300 MB ≈ 286 MiB free.
        let mut g = Guest {
            name: "a",
            actual_mib: 1024,
            max_mib: 2048,
            used_mib: 1024 - KERNEL_MIB - 286,
        };
        let mut steps = Vec::new();
        let mut periods = 0;
        for k in 0..40u64 {
            let p = run(&mut c, k * 2000, &big_host(), &[g.snapshot(100 + 2 * k)]);
            if let Some(a) = action(&p, "a") {
                assert!(!a.is_grow(), "{p}");
                steps.push((a.from_kib - a.to_kib) / MIB);
            }
            g.apply(&p);
            assert!(g.free_mib() >= target, "free {} < target", g.free_mib());
            if g.free_mib() <= band_top {
                periods = k;
                break;
            }
        }
        assert!(
            g.free_mib() <= band_top,
            "never reached the band: {steps:?}"
        );
        assert!(steps[0] <= cap_mib, "first step {} > cap", steps[0]);
        assert!(steps[0] < 200, "one jump: {steps:?}");
        assert!(steps.iter().all(|&s| s <= cap_mib), "{steps:?}");
        assert!(steps.len() >= 2, "not gradual: {steps:?}");
        assert!(periods >= min_periods, "{periods} periods: {steps:?}");
        if cap_mib == 32 {
            assert_eq!(steps[0], 32, "the cap binds first: {steps:?}");
        }
    }
}

#[test]
fn short_guest_is_grown_to_at_least_target() {
    let mut c = Coordinator::new(MemConfig::default());
    let mut g = Guest {
        name: "a",
        actual_mib: 512,
        max_mib: 2048,
        used_mib: 512 - KERNEL_MIB - 40,
    };
    // Growth is allowed on the very first sample.
    let p = run(&mut c, 0, &big_host(), &[g.snapshot(10)]);
    let a = action(&p, "a").expect("grown");
    assert!(a.is_grow());
    assert!(matches!(a.reason, Reason::Grow { .. }));
    g.apply(&p);
    assert!(g.free_mib() >= 100, "free {} after grow", g.free_mib());
    assert!(g.free_mib() <= 132, "overshoot: {}", g.free_mib());
}

#[test]
fn release_stops_at_min_floor_and_per_domain_floor() {
    // min_floor: used 0, actual 230 MiB, 190 MiB free: the gradual step
    // (half of 74 MiB) would set 193 MiB, the floor keeps 200 MiB.
    let mut c = Coordinator::new(MemConfig::default());
    let d = dom("a", 230, 1024, 190, 1);
    run(&mut c, 0, &big_host(), std::slice::from_ref(&d));
    let p = run(
        &mut c,
        2000,
        &big_host(),
        &[DomainMem {
            last_update: Some(3),
            ..d
        }],
    );
    assert_eq!(action(&p, "a").map(|a| a.to_kib), Some(200 * MIB), "{p}");

    // A per-domain floor larger than the default wins.
    let mut cfg = MemConfig::default();
    cfg.per_domain_floor.insert("b".into(), 1000 * MIB);
    let mut c = Coordinator::new(cfg);
    let d = dom("b", 1024, 2048, 500, 1);
    run(&mut c, 0, &big_host(), std::slice::from_ref(&d));
    let p = run(
        &mut c,
        2000,
        &big_host(),
        &[DomainMem {
            last_update: Some(3),
            ..d
        }],
    );
    assert_eq!(action(&p, "b").map(|a| a.to_kib), Some(1000 * MIB), "{p}");

    // Already at the floor: nothing.
    let mut c = Coordinator::new(MemConfig::default());
    let d = dom("c", 200, 1024, 150, 1);
    run(&mut c, 0, &big_host(), std::slice::from_ref(&d));
    let p = run(
        &mut c,
        2000,
        &big_host(),
        &[DomainMem {
            last_update: Some(3),
            ..d
        }],
    );
    assert!(acts(&p).is_empty(), "{p}");
}

#[test]
fn growth_never_exceeds_max() {
    let mut c = Coordinator::new(MemConfig::default());
    let p = run(&mut c, 0, &big_host(), &[dom("a", 2000, 2048, 20, 1)]);
    let a = action(&p, "a").expect("grown");
    assert_eq!(a.to_kib, 2048 * MIB);
    assert!(has_note(&p, "a", |n| matches!(n, Note::AtMax { .. })));
    // At max: no action, noted.
    let mut c = Coordinator::new(MemConfig::default());
    let p = run(&mut c, 0, &big_host(), &[dom("a", 2048, 2048, 20, 1)]);
    assert!(acts(&p).is_empty());
    assert!(has_note(&p, "a", |n| matches!(n, Note::AtMax { .. })));
}

#[test]
fn host_reserve_caps_grants_neediest_first() {
    // 50 MiB above the reserve; two guests want ~76 and ~96 MiB.
    let mut c = Coordinator::new(MemConfig::default());
    let host = host_mib(250);
    let p = run(
        &mut c,
        0,
        &host,
        &[dom("x", 512, 2048, 40, 1), dom("y", 512, 2048, 20, 1)],
    );
    assert!(p.granted_kib() <= 50 * MIB, "{p}");
    assert!(p.host_free_after_kib >= p.host_reserve_kib, "{p}");
    assert_eq!(acts(&p).len(), 1, "{p:?}");
    assert_eq!(acts(&p)[0].name, "y", "neediest first");
    assert_eq!(acts(&p)[0].to_kib - acts(&p)[0].from_kib, 50 * MIB);
    assert!(has_note(&p, "x", |n| matches!(
        n,
        Note::HostReserveLimited { .. }
    )));
    assert!(has_note(&p, "y", |n| matches!(
        n,
        Note::HostReserveLimited { .. }
    )));

    // Over several periods of guests that keep asking, the host never
    // falls under its reserve.
    let mut c = Coordinator::new(MemConfig::default());
    let mut host_free = 400u64;
    let mut gs = [
        Guest {
            name: "x",
            actual_mib: 512,
            max_mib: 4096,
            used_mib: 400,
        },
        Guest {
            name: "y",
            actual_mib: 512,
            max_mib: 4096,
            used_mib: 420,
        },
    ];
    for k in 0..20u64 {
        let snaps: Vec<_> = gs.iter().map(|g| g.snapshot(1 + 2 * k)).collect();
        let p = run(&mut c, k * 2000, &host_mib(host_free), &snaps);
        if p.granted_kib() > 0 {
            assert!(p.host_free_after_kib >= 200 * MIB, "{p}");
        }
        for g in &mut gs {
            let before = g.actual_mib;
            g.apply(&p);
            host_free = host_free + before - g.actual_mib;
            g.used_mib += 20; // both keep consuming
            g.used_mib = g.used_mib.min(g.actual_mib - KERNEL_MIB);
        }
        assert!(host_free >= 200, "host {host_free} MiB at period {k}");
    }
}

#[test]
fn donors_release_first_and_toward_floor_when_host_short() {
    let mut c = Coordinator::new(MemConfig::default());
    // Host exactly at its reserve: a grant must be funded by the donor.
    let host = host_mib(200);
    let donor = dom("donor", 2048, 4096, 400, 1);
    let needy = dom("needy", 512, 2048, 30, 1);
    run(&mut c, 0, &host_mib(10_000), std::slice::from_ref(&donor));
    let p = run(
        &mut c,
        2000,
        &host,
        &[
            DomainMem {
                last_update: Some(3),
                ..donor
            },
            needy,
        ],
    );
    assert_eq!(acts(&p).len(), 2, "{p:?}");
    assert!(!acts(&p)[0].is_grow(), "releases first: {p:?}");
    assert!(acts(&p)[1].is_grow());
    let released = p.released_kib();
    assert!(released <= MemConfig::default().release_cap_kib);
    assert!(p.granted_kib() <= released, "{p}");
    assert!(p.host_free_after_kib >= p.host_reserve_kib, "{p}");

    // Host under its reserve, nobody needs memory: a guest in the band
    // still gives toward its floor (free → target), said in the notes.
    let mut c = Coordinator::new(MemConfig::default());
    let d = dom("d", 1024, 2048, 120, 1);
    run(&mut c, 0, &big_host(), std::slice::from_ref(&d));
    let p = run(
        &mut c,
        2000,
        &host_mib(100),
        &[DomainMem {
            last_update: Some(3),
            ..d
        }],
    );
    let a = action(&p, "d").expect("shrunk for the host");
    assert_eq!(
        a.from_kib - a.to_kib,
        20 * MIB,
        "down to free = target: {p}"
    );
    assert!(matches!(a.reason, Reason::HostShort { .. }));
    assert!(has_note(&p, "d", |n| matches!(
        n,
        Note::ShrunkForHost { .. }
    )));
    assert!(has_note(&p, "host", |n| matches!(
        n,
        Note::HostShortUnmet { .. }
    )));
}

#[test]
fn steady_state_no_action() {
    let mut c = Coordinator::new(MemConfig::default());
    let ds = |lu| {
        vec![
            dom("a", 1024, 2048, 100, lu),
            dom("b", 512, 2048, 116, lu),
            dom("c", 2048, 2048, 132, lu),
            dom("d", 300, 300, 20, lu), // at max: noted, nothing to do
        ]
    };
    for k in 0..10u64 {
        let p = run(&mut c, k * 2000, &big_host(), &ds(100 + 2 * k));
        assert!(acts(&p).is_empty(), "period {k}: {p}");
    }
}

#[test]
fn domains_vanish_and_appear() {
    let mut c = Coordinator::new(MemConfig::default());
    run(
        &mut c,
        0,
        &big_host(),
        &[dom("a", 1024, 2048, 300, 1), dom("b", 1024, 2048, 300, 1)],
    );
    let p = run(&mut c, 2000, &big_host(), &[dom("b", 1024, 2048, 300, 3)]);
    assert!(has_note(&p, "a", |n| *n == Note::Vanished));
    assert!(action(&p, "a").is_none());
    assert!(action(&p, "b").is_some());
    // "a" comes back (restarted): a new domain again, not shrunk at once.
    let p = run(&mut c, 4000, &big_host(), &[dom("a", 1024, 2048, 300, 5)]);
    assert!(has_note(&p, "a", |n| *n == Note::Appeared));
    assert!(has_note(&p, "b", |n| *n == Note::Vanished));
    assert!(acts(&p).is_empty());
    // A duplicate UUID is used once.
    let p = run(
        &mut c,
        6000,
        &big_host(),
        &[dom("a", 1024, 2048, 300, 7), dom("a", 1024, 2048, 300, 7)],
    );
    assert_eq!(acts(&p).len(), 1);
    assert_eq!(p.domains.len(), 1);
}

#[test]
fn one_line_report() {
    let mut c = Coordinator::new(MemConfig::default());
    let p = run(
        &mut c,
        0,
        &big_host(),
        &[
            dom("web", 512, 2048, 30, 1),
            DomainMem {
                unused_kib: None,
                ..dom("db", 1024, 2048, 0, 1)
            },
        ],
    );
    let line = p.to_string();
    assert!(!line.contains('\n'));
    assert!(line.starts_with("host free 20480M->"), "{line}");
    assert!(line.contains("| web 512M free 30M +"), "{line}");
    assert!(line.contains("| db 1024M free ?"), "{line}");
    let a = acts(&p)[0].to_string();
    assert!(a.starts_with("web: 512M -> "), "{a}");
    assert!(a.contains("grow: free 30M"), "{a}");
}
