//! Property tests of the memory coordinator: its invariants over random
//! hosts, guests and settings.
use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct PDom {
    present: bool,
    stats: bool,
    lu_step: u64, // 0: stale
    actual: u64,
    max: u64,
    used: u64,
    unused: u64,
}

impl PDom {
    /// Domain `d{i}` as this draw describes it, its stats stamped
    /// `last_update`.
    fn domain(&self, i: usize, last_update: u64) -> DomainMem {
        DomainMem {
            uuid: format!("u{i}"),
            name: format!("d{i}"),
            actual_kib: self.actual,
            max_kib: self.max,
            unused_kib: self.stats.then_some(self.unused),
            available_kib: Some(self.used + self.unused),
            usable_kib: None,
            last_update: Some(last_update),
            rss_kib: None,
        }
    }
}

fn pdom() -> impl Strategy<Value = PDom> {
    (
        any::<bool>(),
        prop::bool::weighted(0.85),
        prop_oneof![Just(0u64), Just(1), Just(2), Just(5)],
        64 * MIB..8192 * MIB,
        64 * MIB..8192 * MIB,
        0..4096 * MIB,
        0..4096 * MIB,
    )
        .prop_map(
            |(present, stats, lu_step, actual, max, used, unused)| PDom {
                present: present || lu_step != 5,
                stats,
                lu_step,
                actual,
                max,
                used,
                unused,
            },
        )
}

fn pcfg() -> impl Strategy<Value = MemConfig> {
    (
        0..300 * MIB,
        0..100 * MIB,
        0.0..1.0f64,
        0..256 * MIB,
        0..16 * MIB,
        0..512 * MIB,
        0..2048 * MIB,
        0..5u32,
    )
        .prop_map(|(t, b, f, cap, step, floor, reserve, la)| MemConfig {
            target_free_kib: t,
            band_kib: b,
            release_fraction: f,
            release_cap_kib: cap,
            min_step_kib: step,
            min_floor_kib: floor,
            host_reserve_kib: reserve,
            growth_lookahead_periods: la,
            ..MemConfig::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Over random sequences of periods (domains present or not, stats
    /// missing, stale or fresh, any sizes, host anywhere): every shrink
    /// stays at or above the floor, by at most the cap, and only on fresh
    /// stats seen advancing; every grow stays at or below max, never on
    /// missing stats, and on stale stats only as the one grant of a stall;
    /// if anything is granted,
    /// host_free − Σgrow + Σrelease ≥ reserve.
    #[test]
    fn invariants_hold(
        cfg in pcfg(),
        periods in prop::collection::vec(
            (0..4096 * MIB, prop::collection::vec(pdom(), 4)), 1..8),
    ) {
        let mut c = Coordinator::new(cfg.clone());
        // Last lu seen per domain index in the previous period (None: absent
        // or without stats).
        let mut prev: [Option<u64>; 4] = [None; 4];
        let mut lus = [1000u64; 4];
        // Grants made during the current stale streak, per domain index.
        let mut stall_grants = [0u32; 4];
        for (k, (host_free, ps)) in periods.iter().enumerate() {
            for (i, p) in ps.iter().enumerate() {
                if !(p.present && p.stats && p.lu_step == 0 && prev[i].is_some()) {
                    stall_grants[i] = 0;
                }
            }
            let mut doms = Vec::new();
            let mut now_prev = [None; 4];
            for (i, p) in ps.iter().enumerate() {
                if !p.present {
                    continue;
                }
                lus[i] += p.lu_step;
                let d = p.domain(i, lus[i]);
                if p.stats {
                    now_prev[i] = Some(lus[i]);
                }
                doms.push((i, d));
            }
            let input: Vec<DomainMem> = doms.iter().map(|(_, d)| d.clone()).collect();
            let plan = run(&mut c, k as u64 * 2000, &HostMem { free_kib: *host_free }, &input);
            for a in acts(&plan) {
                let (i, d) = doms.iter().find(|(_, d)| d.uuid == a.uuid).expect("known domain");
                let p = &ps[*i];
                prop_assert_eq!(a.from_kib, d.actual_kib);
                prop_assert!(a.from_kib.abs_diff(a.to_kib) >= cfg.min_step_kib.max(1), "{}", a);
                prop_assert!(p.stats, "resized without stats: {}", a);
                let stale = prev[*i] == Some(lus[*i]);
                if stale {
                    prop_assert!(a.is_grow(), "shrunk on stale stats: {}", a);
                    prop_assert!(matches!(a.reason, Reason::Stalled { .. }), "{}", a);
                    stall_grants[*i] += 1;
                    prop_assert!(stall_grants[*i] <= 1, "second grant in a stall: {}", a);
                }
                if a.is_grow() {
                    prop_assert!(a.to_kib <= d.max_kib, "above max: {}", a);
                } else {
                    let floor = cfg.floor_kib(&d.name, p.used, p.max);
                    prop_assert!(a.to_kib >= floor, "below floor {}: {}", floor, a);
                    prop_assert!(a.from_kib - a.to_kib <= cfg.release_cap_kib, "over cap: {}", a);
                    prop_assert!(prev[*i].is_some_and(|l| lus[*i] > l), "shrunk unproven: {}", a);
                }
            }
            let grants = plan.granted_kib();
            let releases = plan.released_kib();
            if grants > 0 {
                prop_assert!(
                    u128::from(*host_free) + u128::from(releases)
                        >= u128::from(grants) + u128::from(cfg.host_reserve_kib),
                    "reserve broken: {}", plan
                );
                prop_assert!(plan.host_free_after_kib >= cfg.host_reserve_kib);
            }
            let first_grow = acts(&plan).iter().position(SetMemory::is_grow);
            let last_release = acts(&plan).iter().rposition(|a| !a.is_grow());
            if let (Some(g), Some(r)) = (first_grow, last_release) {
                prop_assert!(r < g, "a release after a grant");
            }
            prev = now_prev;
        }
    }

    /// For any plan and any subset of its releases that took effect: the
    /// grants re-funded by them keep the host at or above its reserve (when
    /// it started there; when it started below, its figure does not go
    /// down), and with every release effective they are the plan's grants.
    /// What was applied is committed, as the daemon does.
    #[test]
    fn funded_grants_keep_the_reserve(
        cfg in pcfg(),
        periods in prop::collection::vec(
            (0..4096 * MIB, prop::collection::vec(pdom(), 4), any::<u8>()), 1..8),
    ) {
        let mut c = Coordinator::new(cfg.clone());
        let mut lus = [1000u64; 4];
        for (k, (host_free, ps, mask)) in periods.iter().enumerate() {
            let doms: Vec<DomainMem> = ps.iter().enumerate().filter(|(_, p)| p.present).map(|(i, p)| {
                lus[i] += p.lu_step;
                p.domain(i, lus[i])
            }).collect();
            let now = k as u64 * 2000;
            let plan = c.plan(now, &HostMem { free_kib: *host_free }, &doms);
            prop_assert_eq!(plan.grants_funded(plan.released_kib()), plan.grants.clone());
            let effective: Vec<SetMemory> = plan.releases.iter().enumerate()
                .filter(|(i, _)| mask & (1 << (i % 8)) != 0)
                .map(|(_, a)| a.clone())
                .collect();
            let released: u64 = effective.iter().map(|a| a.from_kib - a.to_kib).sum();
            let funded = plan.grants_funded(released);
            let granted: u64 = funded.iter().map(|a| a.to_kib - a.from_kib).sum();
            for (f, g) in funded.iter().zip(&plan.grants) {
                prop_assert!(f.to_kib <= g.to_kib && f.from_kib == g.from_kib, "{} vs {}", f, g);
            }
            let after = i128::from(*host_free) - i128::from(granted) + i128::from(released);
            if *host_free >= cfg.host_reserve_kib {
                prop_assert!(after >= i128::from(cfg.host_reserve_kib),
                    "host {} < reserve {}: {}", after, cfg.host_reserve_kib, plan);
            } else {
                prop_assert!(granted <= released, "host went down: {}", plan);
            }
            let applied: Vec<SetMemory> = effective.into_iter().chain(funded).collect();
            c.commit(now, &applied);
        }
    }

    /// A guest short of memory, not consuming, whose balloon lands one
    /// period after a request and whose stats stall at random; a new sample
    /// shows the balloon of its own period or (`lag`) of the one before,
    /// never older than the sample seen before it; the host wall clock steps 1 h back or forward at period
    /// `at`. It is grown once to the middle of the band: never a second
    /// grant, whatever the step.
    #[test]
    fn clock_step_never_double_grants(
        back in any::<bool>(),
        at in 1..10u64,
        lag in 0..2usize,
        free0 in 0..90u64,
        fresh in prop::collection::vec(prop::bool::weighted(0.7), 12),
    ) {
        let cfg = MemConfig::default();
        let (used, kernel) = (300 * MIB, KERNEL_MIB * MIB);
        let mut actual = used + kernel + free0 * MIB;
        let mut c = Coordinator::new(cfg.clone());
        let mut pending = None;
        let mut seen_actual = Vec::new();
        let mut sample = (0u64, 0u64, 0u64); // lu, unused, available
        for (k, &new) in fresh.iter().enumerate() {
            let k = k as u64;
            if let Some(to) = pending.take() {
                actual = to;
            }
            seen_actual.push(actual);
            if k == 0 || new {
                let wall = 10_000 + 2 * k;
                let lu = match (k >= at, back) {
                    (false, _) => wall,
                    (true, true) => wall - 3600,
                    (true, false) => wall + 3600,
                };
                let a = seen_actual[seen_actual.len().saturating_sub(1 + lag)];
                sample = (lu, a - kernel - used, a - kernel);
            }
            let d = DomainMem {
                uuid: "u".into(),
                name: "g".into(),
                actual_kib: actual,
                max_kib: 4096 * MIB,
                unused_kib: Some(sample.1),
                available_kib: Some(sample.2),
                usable_kib: None,
                last_update: Some(sample.0),
                rss_kib: None,
            };
            let p = run(&mut c, k * 2000, &big_host(), &[d]);
            for a in p.actions() {
                prop_assert!(a.is_grow(), "period {}: {}", k, p);
                pending = Some(a.to_kib);
                let free_after = a.to_kib - kernel - used;
                prop_assert!(free_after <= cfg.target_free_kib + cfg.band_kib,
                    "period {}: over-granted to {} KiB free: {}", k, free_after, p);
            }
        }
        prop_assert!(actual - kernel - used >= cfg.target_free_kib);
    }

    /// All guests inside the band, not consuming, fresh stats, host
    /// above its reserve: no action, period after period.
    #[test]
    fn steady_state_is_quiet(
        guests in prop::collection::vec((0..=32 * MIB, 64 * MIB..4096 * MIB, 0..=1024 * MIB), 1..6),
        periods in 2..6u64,
    ) {
        let cfg = MemConfig::default();
        let mut c = Coordinator::new(cfg.clone());
        for k in 0..periods {
            let doms: Vec<DomainMem> = guests.iter().enumerate().map(|(i, &(f, used, head))| {
                let unused = cfg.target_free_kib + f;
                let actual = used + unused + KERNEL_MIB * MIB;
                DomainMem {
                    uuid: format!("u{i}"),
                    name: format!("d{i}"),
                    actual_kib: actual,
                    max_kib: actual + head,
                    unused_kib: Some(unused),
                    available_kib: Some(used + unused),
                    usable_kib: None,
                    last_update: Some(50 + 2 * k),
                    rss_kib: None,
                }
            }).collect();
            let plan = run(&mut c, k * 2000, &HostMem { free_kib: 4096 * MIB }, &doms);
            prop_assert!(acts(&plan).is_empty(), "{}", plan);
        }
    }
}
