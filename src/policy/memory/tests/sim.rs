//! A simulated guest that consumes memory and frees it, under the
//! coordinator, with stats and balloon lag.
use super::*;

struct SimReport {
    min_free_consuming_mib: f64,
    reached_max_at_s: Option<f64>,
    largest_release_mib: u64,
    largest_release_after_free_mib: u64,
    periods_to_target: Option<u64>,
    oom: u32,
    releases_after_free: Vec<u64>,
}

/// One guest (kernel 40 MiB, 80 MiB used at rest, balloon 512 MiB, max
/// 2048 MiB) whose program eats 15 MB/s until it has 1778 MiB, holds 10 s
/// and frees everything. The guest samples its stats every 2 s; the
/// coordinator sees the sample of one stats period earlier; a `setmem`
/// lands 1 s after it is issued. Returns the figures.
fn simulate(period_ms: u64, phase_ms: u64) -> SimReport {
    let cfg = MemConfig::default();
    let band_top = (cfg.target_free_kib + cfg.band_kib) as f64;
    let mut c = Coordinator::new(cfg.clone());
    let max = 2048.0 * MIB as f64;
    let kernel = (KERNEL_MIB * MIB) as f64;
    let base_used = 80.0 * MIB as f64;
    let eat = 15e6 / 1024.0; // KiB/s
    let stop_used = base_used + 1778.0 * MIB as f64;
    let mut used = base_used;
    let mut actual = 512.0 * MIB as f64;
    let mut pending: Vec<(u64, u64)> = Vec::new();
    let mut samples: Vec<DomainMem> = Vec::new();
    let mut hold_until = None;
    let mut freed_at: Option<u64> = None;
    let mut r = SimReport {
        min_free_consuming_mib: f64::MAX,
        reached_max_at_s: None,
        largest_release_mib: 0,
        largest_release_after_free_mib: 0,
        periods_to_target: None,
        oom: 0,
        releases_after_free: Vec::new(),
    };
    let mut periods_since_free = 0;
    let tick = 100u64;
    let mut t = 0u64;
    while t <= 400_000 {
        // Guest program.
        match (hold_until, freed_at) {
            (None, None) => {
                used += eat * tick as f64 / 1000.0;
                if used >= stop_used {
                    used = stop_used;
                    hold_until = Some(t + 10_000);
                }
            }
            (Some(h), None) if t >= h => {
                used = base_used;
                freed_at = Some(t);
            }
            _ => {}
        }
        // Balloon.
        pending.retain(|&(at, to)| {
            if at <= t {
                actual = to as f64;
                false
            } else {
                true
            }
        });
        let free = actual - kernel - used;
        if free < 0.0 {
            r.oom += 1;
            used = actual - kernel;
        }
        if freed_at.is_none() && actual < max {
            r.min_free_consuming_mib = r.min_free_consuming_mib.min(free / MIB as f64);
        }
        if actual >= max && r.reached_max_at_s.is_none() {
            r.reached_max_at_s = Some(t as f64 / 1000.0);
        }
        // Guest stats every 2 s.
        if t % 2000 == 0 {
            let unused = (actual - kernel - used).max(0.0) as u64;
            samples.push(DomainMem {
                uuid: "u".into(),
                name: "consumer".into(),
                actual_kib: 0,
                max_kib: max as u64,
                unused_kib: Some(unused),
                available_kib: Some((actual - kernel) as u64),
                usable_kib: Some(unused),
                last_update: Some(1_000 + t / 1000),
                rss_kib: None,
            });
        }
        // Coordinator.
        if t >= phase_ms && (t - phase_ms) % period_ms == 0 {
            // The newest sample at least one stats period old.
            let seen = samples
                .iter()
                .rev()
                .find(|s| s.last_update.unwrap_or(0) + 2 <= 1_000 + t / 1000);
            let d = match seen {
                Some(s) => DomainMem {
                    actual_kib: actual as u64,
                    ..s.clone()
                },
                None => DomainMem {
                    uuid: "u".into(),
                    name: "consumer".into(),
                    actual_kib: actual as u64,
                    max_kib: max as u64,
                    ..DomainMem::default()
                },
            };
            let p = run(
                &mut c,
                t,
                &HostMem {
                    free_kib: 20 * 1024 * MIB,
                },
                &[d],
            );
            for a in p.actions() {
                if !a.is_grow() {
                    let rel = (a.from_kib - a.to_kib) / MIB;
                    r.largest_release_mib = r.largest_release_mib.max(rel);
                    if freed_at.is_some() {
                        r.largest_release_after_free_mib =
                            r.largest_release_after_free_mib.max(rel);
                        r.releases_after_free.push(rel);
                    }
                }
                pending.push((t + 1000, a.to_kib));
            }
            if freed_at.is_some() && r.periods_to_target.is_none() {
                periods_since_free += 1;
                if free <= band_top {
                    r.periods_to_target = Some(periods_since_free);
                }
            }
        }
        t += tick;
    }
    r
}

#[test]
fn simulated_consumer_never_starves_and_release_is_gradual() {
    let cap = MemConfig::default().release_cap_kib / MIB;
    for (period, phase) in [(2000, 0), (2000, 1000), (1000, 0), (1000, 500)] {
        let r = simulate(period, phase);
        println!(
            "period {period} ms, phase {phase} ms: min free while consuming under max {:.1} MiB, \
             max reached at {:?} s, largest release {} MiB (after free: {} MiB), \
             periods back to target {:?}, OOM ticks {}, releases after free {:?}",
            r.min_free_consuming_mib,
            r.reached_max_at_s,
            r.largest_release_mib,
            r.largest_release_after_free_mib,
            r.periods_to_target,
            r.oom,
            r.releases_after_free,
        );
        assert_eq!(r.oom, 0);
        // ~50 MB = 47.7 MiB.
        assert!(
            r.min_free_consuming_mib >= 47.7,
            "free fell to {:.1} MiB",
            r.min_free_consuming_mib
        );
        assert!(r.reached_max_at_s.is_some(), "never reached max");
        assert!(r.largest_release_mib <= cap);
        assert!(r.releases_after_free.len() >= 10, "not gradual");
        let bound = 1800 / cap * 2000 / period + 10;
        let periods = r.periods_to_target.expect("never back to target");
        assert!(periods <= bound, "{periods} periods > {bound}");
    }
}
