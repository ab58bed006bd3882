//! Stats that are missing, stale, lagging or stalled, balloons that do not
//! move, grants in flight, and clock steps.
use super::*;

#[test]
fn missing_stats_never_resized_and_noted_once() {
    let mut c = Coordinator::new(MemConfig::default());
    let blind = |lu| DomainMem {
        unused_kib: None,
        available_kib: None,
        ..dom("a", 4096, 8192, 3000, lu)
    };
    let short = |lu| DomainMem {
        unused_kib: None,
        ..dom("b", 512, 8192, 10, lu)
    };
    let mut count = 0;
    for k in 0..5u64 {
        let p = run(&mut c, k * 2000, &host_mib(100), &[blind(k), short(k)]);
        assert!(acts(&p).is_empty(), "{p:?}");
        count += p.notes.iter().filter(|(_, n)| *n == Note::NoStats).count();
    }
    assert_eq!(count, 2, "once per domain");

    // Stats but no balloon size (or no max): never resized either.
    let mut c = Coordinator::new(MemConfig::default());
    for k in 0..3u64 {
        let p = run(
            &mut c,
            k * 2000,
            &big_host(),
            &[
                DomainMem {
                    actual_kib: 0,
                    ..dom("a", 512, 2048, 10, k)
                },
                DomainMem {
                    max_kib: 0,
                    ..dom("b", 4096, 8192, 3000, k)
                },
            ],
        );
        assert!(acts(&p).is_empty(), "{p:?}");
        let n = p.notes.iter().filter(|(_, n)| *n == Note::NoSize).count();
        assert_eq!(n, if k == 0 { 2 } else { 0 });
    }
}

/// The thin guest was granted enough on its first sample: its stall does
/// not grant again; the fat one is never shrunk on stale stats.
#[test]
fn stale_stats_neither_shrink_nor_regrant() {
    let mut c = Coordinator::new(MemConfig::default());
    let fat = dom("fat", 4096, 8192, 3000, 7);
    let thin = dom("thin", 512, 2048, 60, 7);
    run(&mut c, 0, &big_host(), &[fat.clone(), thin.clone()]);
    for k in 1..4u64 {
        // last_update stuck at 7.
        let p = run(&mut c, k * 2000, &big_host(), &[fat.clone(), thin.clone()]);
        assert!(acts(&p).is_empty(), "{p:?}");
        let stale = p
            .notes
            .iter()
            .filter(|(_, n)| matches!(n, Note::Stale { .. }));
        assert_eq!(stale.count(), if k == 1 { 2 } else { 0 }, "once per streak");
    }
    // Fresh again: the fat guest gives, the thin one (grown on its first
    // sample) is left alone.
    let p = run(
        &mut c,
        8000,
        &big_host(),
        &[DomainMem {
            last_update: Some(9),
            ..fat
        }],
    );
    assert!(action(&p, "fat").is_some_and(|a| !a.is_grow()), "{p:?}");
}

#[test]
fn lagging_stats_do_not_double_grant() {
    let mut c = Coordinator::new(MemConfig::default());
    let p = run(&mut c, 0, &big_host(), &[dom("a", 512, 4096, 30, 1)]);
    let to = action(&p, "a").expect("grant").to_kib;
    // Balloon not there yet, fresh stats still from before: no new grant,
    // no shrink, pending noted.
    let p = run(&mut c, 2000, &big_host(), &[dom("a", 512, 4096, 30, 3)]);
    assert!(acts(&p).is_empty(), "stacked: {p}");
    assert!(has_note(&p, "a", |n| matches!(
        n,
        Note::BalloonPending { .. }
    )));
    // Balloon reached it, stats still from before the grant: no grant.
    let at = to / MIB;
    let before = DomainMem {
        actual_kib: to,
        ..dom("a", 512, 4096, 30, 5)
    };
    let p = run(&mut c, 4000, &big_host(), &[before]);
    assert!(acts(&p).is_empty(), "double grant: {p}");
    // Now the stats show it: in band, nothing.
    let p = run(
        &mut c,
        6000,
        &big_host(),
        &[dom("a", at, 4096, 30 + at - 512, 7)],
    );
    assert!(acts(&p).is_empty(), "{p}");
}

#[test]
fn balloon_that_never_moves_is_abandoned() {
    let mut c = Coordinator::new(MemConfig::default());
    let p = run(&mut c, 0, &big_host(), &[dom("a", 512, 4096, 30, 1)]);
    assert!(!acts(&p).is_empty());
    let mut timed_out = false;
    for k in 1..10u64 {
        let p = run(
            &mut c,
            k * 2000,
            &big_host(),
            &[dom("a", 512, 4096, 30, 1 + 2 * k)],
        );
        timed_out |= has_note(&p, "a", |n| matches!(n, Note::BalloonTimeout { .. }));
        if timed_out {
            // Abandoned: the still-short guest is asked again.
            assert!(action(&p, "a").is_some_and(SetMemory::is_grow), "{p}");
            break;
        }
        assert!(acts(&p).is_empty(), "{p}");
    }
    assert!(timed_out);
}

#[test]
fn grow_cuts_a_pending_release_short() {
    let mut c = Coordinator::new(MemConfig::default());
    run(&mut c, 0, &big_host(), &[dom("a", 1024, 2048, 400, 1)]);
    let p = run(&mut c, 2000, &big_host(), &[dom("a", 1024, 2048, 400, 3)]);
    let r = action(&p, "a").expect("release").clone();
    assert!(!r.is_grow());
    // The balloon has not moved yet and the guest suddenly needs memory.
    let d = DomainMem {
        unused_kib: Some(20 * MIB),
        ..dom("a", 1024, 2048, 400, 5)
    };
    let p = run(&mut c, 4000, &big_host(), &[d]);
    let g = action(&p, "a").expect("grow");
    assert!(g.is_grow(), "{p}");
    assert_eq!(g.from_kib, 1024 * MIB);
    assert!(g.to_kib >= 1024 * MIB + 96 * MIB, "{p}");
}

#[test]
fn size_changed_by_someone_else_is_not_granted_twice() {
    let mut c = Coordinator::new(MemConfig::default());
    run(&mut c, 0, &big_host(), &[dom("a", 1024, 4096, 110, 1)]);
    // Someone set 2048 MiB; the stats still show the old balloon.
    let d = DomainMem {
        actual_kib: 2048 * MIB,
        ..dom("a", 1024, 4096, 90, 3)
    };
    let p = run(&mut c, 2000, &big_host(), &[d]);
    assert!(acts(&p).is_empty(), "{p}");
}

#[test]
fn uncommitted_plan_leaves_nothing_in_flight() {
    let mut c = Coordinator::new(MemConfig::default());
    // Planned, never applied (the call failed or was not made).
    let p = c.plan(0, &big_host(), &[dom("a", 512, 4096, 30, 1)]);
    let first = action(&p, "a").expect("grant").clone();
    // The next plan is neither blocked nor reduced by it.
    let p = run(&mut c, 2000, &big_host(), &[dom("a", 512, 4096, 30, 3)]);
    assert_eq!(action(&p, "a"), Some(&first), "{p}");
    // Only what was committed is in flight: no second grant now.
    let p = run(&mut c, 4000, &big_host(), &[dom("a", 512, 4096, 30, 5)]);
    assert!(acts(&p).is_empty(), "stacked on a committed grant: {p}");
    // A release planned but not applied does not cut a later grant short
    // nor count as freed memory.
    let mut c = Coordinator::new(MemConfig::default());
    run(&mut c, 0, &big_host(), &[dom("b", 1024, 2048, 400, 1)]);
    let p = c.plan(2000, &big_host(), &[dom("b", 1024, 2048, 400, 3)]);
    let r = action(&p, "b").expect("release").clone();
    assert!(!r.is_grow());
    let p = run(&mut c, 4000, &big_host(), &[dom("b", 1024, 2048, 400, 5)]);
    assert_eq!(action(&p, "b"), Some(&r), "same release again: {p}");
}

#[test]
fn grants_funded_by_a_failed_release_are_rebudgeted() {
    let mut c = Coordinator::new(MemConfig::default());
    // Host exactly at its reserve: the grant is funded by the donor only.
    let donor = dom("donor", 2048, 4096, 400, 1);
    run(&mut c, 0, &host_mib(10_000), std::slice::from_ref(&donor));
    let doms = [
        DomainMem {
            last_update: Some(3),
            ..donor
        },
        dom("needy", 512, 2048, 30, 1),
    ];
    let p = c.plan(2000, &host_mib(200), &doms);
    assert_eq!((p.releases.len(), p.grants.len()), (1, 1), "{p}");
    assert_eq!(p.grants_funded(p.released_kib()), p.grants);
    // The release failed: nothing funds the grant.
    assert!(p.grants_funded(0).is_empty(), "{p}");
    // Half of it took effect: a grant of at most that half.
    let half = p.released_kib() / 2;
    let g = p.grants_funded(half);
    assert_eq!(g.len(), 1);
    assert!(g[0].to_kib - g[0].from_kib <= half, "{:?}", g[0]);
    assert_eq!(g[0].from_kib, p.grants[0].from_kib);
    // Claims beyond the planned releases fund nothing more.
    assert_eq!(p.grants_funded(u64::MAX), p.grants);
}

#[test]
fn clock_step_mid_grant_never_double_grants() {
    for step in [-3600i64, 3600] {
        let lu = |s: u64| Some(s.saturating_add_signed(step));
        let mut c = Coordinator::new(MemConfig::default());
        let p = run(&mut c, 0, &big_host(), &[dom("a", 512, 4096, 30, 10_000)]);
        let to = action(&p, "a").expect("grant").to_kib;
        let at = to / MIB;
        // Balloon not there yet, host clock stepped, stats from before.
        let d = DomainMem {
            last_update: lu(10_002),
            ..dom("a", 512, 4096, 30, 0)
        };
        let p = run(&mut c, 2000, &big_host(), &[d]);
        assert!(acts(&p).is_empty(), "step {step}: {p}");
        assert!(has_note(&p, "a", |n| matches!(
            n,
            Note::StatsClockStep { .. }
        )));
        // Balloon there, stats still from before the grant.
        let d = DomainMem {
            actual_kib: to,
            last_update: lu(10_004),
            ..dom("a", 512, 4096, 30, 0)
        };
        let p = run(&mut c, 4000, &big_host(), &[d]);
        assert!(acts(&p).is_empty(), "step {step}: double grant: {p}");
        // The stats show it: in band, nothing.
        let d = DomainMem {
            last_update: lu(10_006),
            ..dom("a", at, 4096, 30 + at - 512, 0)
        };
        let p = run(&mut c, 6000, &big_host(), &[d]);
        assert!(acts(&p).is_empty(), "step {step}: {p}");
        assert!(!has_note(&p, "a", |n| matches!(
            n,
            Note::StatsClockStep { .. }
        )));
    }
}

#[test]
fn clock_step_keeps_the_consumption_rate() {
    // 10 MiB/s over fresh samples, then the host clock steps 1 h either
    // way: the rate over the step comes from the monotonic clock.
    for step in [-3600i64, 3600] {
        let cfg = MemConfig {
            rate_window: 1,
            ..MemConfig::default()
        };
        let mut c = Coordinator::new(cfg);
        let mut last = None;
        for k in 0..4u64 {
            let shift = if k == 3 { step } else { 0 };
            let lu = (1000 + 2 * k).saturating_add_signed(shift);
            last = Some(run(
                &mut c,
                k * 2000,
                &big_host(),
                &[dom("a", 2048, 4096, 200 - 20 * k, lu)],
            ));
        }
        let p = last.expect("planned");
        let a = action(&p, "a").expect("grown");
        let Reason::Grow { rate_kib_s, .. } = a.reason else {
            panic!("{a}");
        };
        assert_eq!(rate_kib_s, 10 * MIB, "step {step}: {a}");
    }
}

/// A guest consuming 10 MiB/s over three fresh samples (the last one
/// grants), the grant lands, then its stats stall at `last_update` 5.
/// Returns the plans of the stalled periods 3..12.
fn stall_after_consuming(cfg: MemConfig) -> Vec<MemPlan> {
    let mut c = Coordinator::new(cfg);
    let mut actual = 1024;
    for k in 0..3u64 {
        let p = run(
            &mut c,
            k * 2000,
            &big_host(),
            &[dom("a", 1024, 4096, 160 - 20 * k, 1 + 2 * k)],
        );
        if let Some(a) = action(&p, "a") {
            actual = a.to_kib / MIB;
        }
    }
    assert!(actual > 1024, "the consumer was granted");
    (3..12u64)
        .map(|k| {
            let d = DomainMem {
                actual_kib: actual * MIB,
                ..dom("a", 1024, 4096, 120, 5)
            };
            let p = run(&mut c, k * 2000, &big_host(), &[d]);
            if let Some(a) = action(&p, "a") {
                actual = a.to_kib / MIB;
            }
            p
        })
        .collect()
}

#[test]
fn stalled_stats_of_a_consuming_guest_get_one_bounded_grant() {
    let cfg = MemConfig::default();
    let plans = stall_after_consuming(cfg.clone());
    let grants: Vec<(usize, SetMemory)> = plans
        .iter()
        .enumerate()
        .flat_map(|(i, p)| p.actions().map(move |a| (i, a.clone())))
        .collect();
    assert_eq!(grants.len(), 1, "{grants:?}");
    let (i, g) = &grants[0];
    assert!(g.is_grow(), "{g}");
    assert!(matches!(g.reason, Reason::Stalled { .. }), "{g}");
    assert!(g.to_kib - g.from_kib <= cfg.stale_grant_kib, "{g}");
    // Not before the stall outlasted two intervals (sample seen at 4 s,
    // interval 2 s: first stalled at 10 s, the third stalled period).
    assert_eq!(*i, 2, "{g}");
    // Off: nothing.
    let off = stall_after_consuming(MemConfig {
        stale_grant_kib: 0,
        ..MemConfig::default()
    });
    assert!(off.iter().all(|p| acts(p).is_empty()));
}

#[test]
fn stalled_stats_of_a_comfortable_guest_get_nothing() {
    let mut c = Coordinator::new(MemConfig::default());
    // In the band and not consuming; one with a lot free.
    let calm = |lu| dom("calm", 1024, 4096, 116, lu);
    let fat = |lu| dom("fat", 4096, 8192, 3000, lu);
    for k in 0..3u64 {
        run(
            &mut c,
            k * 2000,
            &big_host(),
            &[calm(1 + 2 * k), fat(1 + 2 * k)],
        );
    }
    for k in 3..30u64 {
        let p = run(&mut c, k * 2000, &big_host(), &[calm(5), fat(5)]);
        assert!(acts(&p).is_empty(), "period {k}: {p}");
    }
}

#[test]
fn stale_between_samples_is_not_a_stall() {
    // Stats every 4 s, planned every 2 s: every other period is stale. A
    // guest eating 5 MiB/s is grown on fresh samples only (the fresh
    // decision covered the look-ahead), and never starves.
    let mut c = Coordinator::new(MemConfig::default());
    let mut g = Guest {
        name: "a",
        actual_mib: 1024,
        max_mib: 8192,
        used_mib: 800,
    };
    let mut sample = g.snapshot(1);
    let mut grants = 0;
    for k in 0..40u64 {
        if k % 2 == 0 {
            sample = g.snapshot(1 + 2 * k);
        }
        let d = DomainMem {
            actual_kib: g.actual_mib * MIB,
            ..sample.clone()
        };
        let p = run(&mut c, k * 2000, &big_host(), &[d]);
        if k % 2 == 1 {
            assert!(acts(&p).is_empty(), "period {k}: {p}");
        }
        grants += p.grants.len();
        g.apply(&p);
        g.used_mib += 10;
        assert!(g.free_mib() >= 40, "period {k}: free {}", g.free_mib());
    }
    assert!(grants >= 5, "{grants} grants");
}

#[test]
fn a_read_without_stats_keeps_a_grant_in_flight() {
    // A grant, then one read whose balloon stats are left out (libvirt's
    // bulk read with NOWAIT skips them while the guest's monitor is busy),
    // then stats from before the grant: the grant stays counted against
    // the host, and it is not made a second time.
    let needy = |name, lu| dom(name, 512, 4096, 30, lu);
    let g1 = {
        let mut c = Coordinator::new(MemConfig::default());
        let p = run(&mut c, 0, &big_host(), &[needy("a", 1)]);
        action(&p, "a").expect("grant").to_kib - 512 * MIB
    };
    // The host can fund that grant and 10 MiB more.
    let reserve = MemConfig::default().host_reserve_kib;
    let host = HostMem {
        free_kib: reserve + g1 + 10 * MIB,
    };
    let mut c = Coordinator::new(MemConfig::default());
    let p = run(&mut c, 0, &host, &[needy("a", 1)]);
    let to = action(&p, "a").expect("grant").to_kib;
    assert_eq!(to - 512 * MIB, g1);
    // No stats for `a` this time, its balloon not moved yet (host free
    // unchanged), and a second needy guest: only the 10 MiB are left.
    let blind = DomainMem {
        unused_kib: None,
        available_kib: None,
        last_update: None,
        ..needy("a", 1)
    };
    let p = run(&mut c, 2000, &host, &[blind, needy("b", 1)]);
    let b = action(&p, "b").map_or(0, |s| s.to_kib - s.from_kib);
    assert!(b <= 10 * MIB, "b granted {} KiB out of a's grant: {p}", b);
    assert!(action(&p, "a").is_none(), "{p}");
    // The balloon reached it, stats still from before the grant: no grant.
    let before = DomainMem {
        actual_kib: to,
        ..needy("a", 3)
    };
    let p = run(&mut c, 4000, &host, &[before]);
    assert!(action(&p, "a").is_none(), "double grant: {p}");
}
