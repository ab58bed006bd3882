//! The planner's tests: the helpers all of them use, and the table tests
//! of balancing (moves, swaps, confirmation, the cap, the aim) and of the
//! plan's config and report. Placement (`place`), the usage history
//! (`history`), the contention simulator (`sim`), guests as two levels
//! (`guests`), the reading gate (`gate`) and the property tests
//! (`properties`) have modules of their own.
use super::usage::stddev;
use super::*;
use proptest::prelude::*;

mod gate;
mod guests;
mod history;
mod place;
mod properties;
mod sim;

const SEC: u64 = 1_000_000_000;

fn sample(dom: &str, vcpu: u32, cpu_time_ns: u64, affinity: &[u32]) -> VcpuSample {
    VcpuSample {
        domain: format!("uuid-{dom}"),
        name: dom.to_string(),
        vcpu,
        cpu_time_ns,
        affinity: affinity.to_vec(),
        running_on: affinity.first().copied(),
    }
}

/// A vCPU spec for table tests: (domain, vcpu, usage %, affinity).
type Spec<'a> = (&'a str, u32, f64, &'a [u32]);

fn snap_at(t: u64, pcpus: &[u32], specs: &[Spec<'_>]) -> Snapshot {
    Snapshot {
        monotonic_ns: t * SEC,
        pcpus: pcpus.to_vec(),
        vcpus: specs
            .iter()
            .map(|&(d, v, u, a)| sample(d, v, (u * 1e7 * t as f64).round() as u64, a))
            .collect(),
    }
}

/// Two intervals one second apart with constant usage and unchanged
/// affinities; returns the scheduler and the second plan.
fn measured_plan(cfg: VcpuConfig, pcpus: &[u32], specs: &[Spec<'_>]) -> (Scheduler, Plan<'static>) {
    let mut s = Scheduler::new(cfg);
    let snap = snap_at(0, pcpus, specs);
    let first = s.plan(&snap);
    assert!(matches!(first.decision, Decision::Warmup | Decision::Idle));
    let p = s.plan(leak(snap_at(1, pcpus, specs)));
    (s, p)
}

fn load_of(p: &Plan, cpu: u32) -> f64 {
    p.loads_after
        .iter()
        .find(|l| l.0 == cpu)
        .map_or(f64::NAN, |l| l.1)
}

/// `snap` with the plan's pins applied (what the adapter does).
fn applied(snap: &Snapshot, plan: &Plan<'_>) -> Snapshot {
    let mut next = snap.clone();
    for pin in &plan.pins {
        for s in next.vcpus.iter_mut() {
            if s.domain == pin.domain && s.vcpu == pin.vcpu {
                s.affinity = vec![pin.pcpu];
                s.running_on = Some(pin.pcpu);
            }
        }
    }
    next
}

/// A snapshot that lives as long as the test, for helpers that return
/// the plans made on it (a plan's pins borrow their snapshot's strings).
fn leak(snap: Snapshot) -> &'static Snapshot {
    Box::leak(Box::new(snap))
}

#[test]
fn all_on_one_four_equal_on_two_pcpus_takes_two_moves() {
    let specs: Vec<Spec<'_>> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| (*d, 0, 25.0, &[0u32][..]))
        .collect();
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert_eq!(p.pins.len(), 2, "{p}");
    assert_eq!(
        p.decision,
        Decision::Rebalanced {
            moves: 2,
            swaps: 0,
            capped: false
        }
    );
    assert!(p.pins.iter().all(|x| x.pcpu == 1 && x.from == Some(0)));
    assert!(p.pins.iter().all(|x| x.kind == PinKind::Move));
    assert!((load_of(&p, 0) - 50.0).abs() < 1e-6);
    assert!((load_of(&p, 1) - 50.0).abs() < 1e-6);
    assert!((p.stddev_before - 50.0).abs() < 1e-6);
    assert!(p.stddev_after < 1e-6);
}

#[test]
fn already_balanced_makes_no_move() {
    let specs: [Spec<'_>; 4] = [
        ("a", 0, 50.0, &[0]),
        ("b", 0, 50.0, &[0]),
        ("c", 0, 50.0, &[1]),
        ("d", 0, 50.0, &[1]),
    ];
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert!(p.pins.is_empty(), "{p}");
    assert_eq!(p.decision, Decision::Balanced);
    assert_eq!(p.loads_before, p.loads_after);
}

#[test]
fn within_threshold_no_churn_even_if_improvable() {
    // 54 vs 46: std-dev 4 ≤ 5, a move of the 8 % vCPU would make 0, but no churn.
    let specs: [Spec<'_>; 3] = [
        ("a", 0, 46.0, &[0]),
        ("b", 0, 8.0, &[0]),
        ("c", 0, 46.0, &[1]),
    ];
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert!(p.pins.is_empty(), "{p}");
    assert_eq!(p.decision, Decision::Balanced);
}

#[test]
fn mixed_heavy_light_is_fixed_by_a_swap() {
    // Heavies share pCPU0 (50 + 50), lights on pCPU1 (30 + 30).
    let specs: [Spec<'_>; 4] = [
        ("h1", 0, 50.0, &[0]),
        ("h2", 0, 50.0, &[0]),
        ("l1", 0, 30.0, &[1]),
        ("l2", 0, 30.0, &[1]),
    ];
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert_eq!(
        p.decision,
        Decision::Rebalanced {
            moves: 0,
            swaps: 2,
            capped: false
        },
        "{p}"
    );
    assert_eq!(p.pins.len(), 2);
    assert!(p.pins.iter().all(|x| x.kind == PinKind::Swap));
    assert!((load_of(&p, 0) - 80.0).abs() < 1e-6);
    assert!((load_of(&p, 1) - 80.0).abs() < 1e-6);
    // One heavy and one light per pCPU.
    let on = |cpu: u32| -> Vec<&str> {
        let mut v: Vec<&str> = specs
            .iter()
            .filter(|s| {
                let pinned = p.pins.iter().find(|x| x.name == s.0).map(|x| x.pcpu);
                pinned.unwrap_or(s.3[0]) == cpu
            })
            .map(|s| &s.0[..1])
            .collect();
        v.sort();
        v
    };
    assert_eq!(on(0), vec!["h", "l"]);
    assert_eq!(on(1), vec!["h", "l"]);
}

#[test]
fn single_heavy_is_not_flipped() {
    // 100 on pCPU0, nothing on pCPU1: moving it just flips the imbalance.
    let specs: [Spec<'_>; 1] = [("a", 0, 100.0, &[0])];
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert!(p.pins.is_empty(), "{p}");
    assert_eq!(p.decision, Decision::Unbalanceable);
}

#[test]
fn move_that_widens_the_pair_is_refused() {
    // 70 alone on pCPU0 vs 40 on pCPU1: gap 30; moving 70 would leave 110 vs 0.
    let specs: [Spec<'_>; 2] = [("a", 0, 70.0, &[0]), ("b", 0, 40.0, &[1])];
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert!(p.pins.is_empty(), "{p}");
    assert!(p.stddev_after <= p.stddev_before);
}

#[test]
fn four_guests_by_four_vcpus_two_busy_two_idle() {
    // All 16 vCPUs on pCPU0; busy ones measure 100/8 = 12.5, idle ~0.5.
    let names = ["g1", "g2", "g3", "g4"];
    let mut specs: Vec<Spec<'_>> = Vec::new();
    for (gi, g) in names.iter().enumerate() {
        for v in 0..4 {
            let u = if gi < 2 { 12.5 } else { 0.5 };
            specs.push((g, v, u, &[0]));
        }
    }
    for pcpus in [&[0u32, 1][..], &[0, 1, 2, 3][..]] {
        let (_, p) = measured_plan(VcpuConfig::default(), pcpus, &specs);
        assert!(p.stddev_after <= 5.0, "{p}");
        assert!(matches!(
            p.decision,
            Decision::Rebalanced { capped: false, .. }
        ));
    }
}

#[test]
fn a_small_imbalance_must_persist_before_anything_moves() {
    // 4 vCPUs, 2 per pCPU; intervals where pCPU0's pair reads 6 points
    // higher each (smoothed: std-dev 6–10, over the threshold but not
    // twice it).
    let mut s = Scheduler::new(VcpuConfig::default());
    let mut cum = [0u64; 4];
    let mut plan_with = |k: u64, extra: f64, s: &mut Scheduler| {
        let mut vcpus = Vec::new();
        for (i, c) in cum.iter_mut().enumerate() {
            let pcpu = (i / 2) as u32;
            let u = if pcpu == 0 {
                50.0 + extra
            } else {
                50.0 - extra
            };
            *c += (u * 1e7) as u64;
            vcpus.push(sample(&format!("g{i}"), 0, *c, &[pcpu]));
        }
        s.plan(leak(Snapshot {
            monotonic_ns: (k + 1) * SEC,
            pcpus: vec![0, 1],
            vcpus,
        }))
    };
    assert_eq!(plan_with(0, 0.0, &mut s).decision, Decision::Warmup);
    assert_eq!(plan_with(1, 0.0, &mut s).decision, Decision::Balanced);
    // A one-interval spike: waits, moves nothing.
    let p = plan_with(2, 6.0, &mut s);
    assert_eq!(
        p.decision,
        Decision::Unconfirmed { seen: 1, needed: 2 },
        "{p}"
    );
    assert!(p.pins.is_empty());
    // Back to normal: the streak resets.
    assert_eq!(plan_with(3, 0.0, &mut s).decision, Decision::Balanced);
    let p = plan_with(4, 6.0, &mut s);
    assert!(
        matches!(p.decision, Decision::Unconfirmed { seen: 1, .. }),
        "{p}"
    );
    // The same imbalance a second interval in a row is acted on.
    let p = plan_with(5, 6.0, &mut s);
    assert!(
        matches!(
            p.decision,
            Decision::Rebalanced { .. } | Decision::Unbalanceable
        ),
        "{p}"
    );
}

#[test]
fn a_large_imbalance_is_fixed_at_once_even_with_confirmation() {
    let cfg = VcpuConfig {
        confirm: 5,
        ..VcpuConfig::default()
    };
    let specs: Vec<Spec<'_>> = (0..4).map(|v| ("g", v, 25.0, &[0u32][..])).collect();
    let (_, p) = measured_plan(cfg, &[0, 1], &specs);
    assert_eq!(p.pins.len(), 2, "{p}");
}

#[test]
fn max_moves_caps_rebalancing() {
    let cfg = VcpuConfig {
        max_moves: 2,
        ..VcpuConfig::default()
    };
    let specs: Vec<Spec<'_>> = (0..8).map(|v| ("g", v, 12.5, &[0u32][..])).collect();
    let (_, p) = measured_plan(cfg, &[0, 1, 2, 3], &specs);
    assert_eq!(p.pins.len(), 2, "{p}");
    assert_eq!(
        p.decision,
        Decision::Rebalanced {
            moves: 2,
            swaps: 0,
            capped: true
        }
    );
    assert!(p.stddev_after < p.stddev_before);
}

#[test]
fn prefers_one_move_that_reaches_threshold_over_a_swap() {
    // pCPU0: 40 + 20, pCPU1: 30. Moving 20 → 40/50 (sd 5) in one pin.
    let specs: [Spec<'_>; 3] = [
        ("a", 0, 40.0, &[0]),
        ("b", 0, 20.0, &[0]),
        ("c", 0, 30.0, &[1]),
    ];
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert_eq!(p.pins.len(), 1, "{p}");
    assert!(p.stddev_after <= 5.0 + 1e-9);
}

#[test]
fn plans_are_deterministic_and_order_independent() {
    let specs: Vec<Spec<'_>> = (0..12)
        .map(|v| {
            (
                "g",
                v,
                [10.0, 35.0, 35.0, 60.0][v as usize % 4],
                &[0u32][..],
            )
        })
        .collect();
    let (_, p1) = measured_plan(VcpuConfig::default(), &[0, 1, 2], &specs);
    let (_, p2) = measured_plan(VcpuConfig::default(), &[0, 1, 2], &specs);
    assert_eq!(p1, p2);
    let mut rev = specs.clone();
    rev.reverse();
    let (_, p3) = measured_plan(VcpuConfig::default(), &[2, 1, 0], &rev);
    assert_eq!(p1, p3);
    // Duplicated samples are ignored.
    let mut dup = specs.clone();
    dup.extend_from_slice(&specs[..3]);
    let (_, p4) = measured_plan(VcpuConfig::default(), &[0, 1, 2], &dup);
    assert_eq!(p1, p4);
    // ... also next to their first copy, in an otherwise sorted snapshot.
    let mut twice: Vec<Spec<'_>> = specs.iter().flat_map(|s| [*s, *s]).collect();
    twice.sort_by_key(|s| s.1);
    let (_, p5) = measured_plan(VcpuConfig::default(), &[0, 1, 2], &twice);
    assert_eq!(p1, p5);
}

#[test]
fn display_is_one_line_with_the_figures() {
    let specs: Vec<Spec<'_>> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| (*d, 0, 25.0, &[0u32][..]))
        .collect();
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    let line = p.to_string();
    assert_eq!(
        line,
        "loads 0:100.0 1:0.0 -> 0:50.0 1:50.0 | sd 50.0 -> 0.0 (thr 5.0, aim 2.5) | \
         rebalanced: 2 moved, 0 swapped | 2 pin(s), 0 placed"
    );
    assert_eq!(p.pins[0].to_string(), "a vCPU 0: pCPU 0 -> 1 (move)");
    assert!(!line.contains('\n'));
}

#[test]
fn set_config_keeps_history() {
    let specs: Vec<Spec<'_>> = (0..4).map(|v| ("g", v, 25.0, &[0u32][..])).collect();
    let (mut s, _) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    s.set_config(VcpuConfig {
        max_moves: 1,
        ..VcpuConfig::default()
    });
    assert_eq!(s.config().max_moves, 1);
    let snap = snap_at(2, &[0, 1], &specs);
    let p = s.plan(&snap);
    assert_eq!(p.pins.len(), 1, "no new warm-up: {p}");
}

#[test]
fn config_validation() {
    assert_eq!(VcpuConfig::default().validate(), Ok(()));
    let bad = [
        VcpuConfig {
            threshold: -1.0,
            ..VcpuConfig::default()
        },
        VcpuConfig {
            smoothing: 0.0,
            ..VcpuConfig::default()
        },
        VcpuConfig {
            min_gain: f64::NAN,
            ..VcpuConfig::default()
        },
        VcpuConfig {
            cpus: Some(vec![]),
            ..VcpuConfig::default()
        },
    ];
    for c in bad {
        assert!(c.validate().is_err(), "{c:?}");
        let s = Scheduler::new(c);
        assert!(s.config().threshold >= 0.0 && s.config().smoothing > 0.0);
    }
}

#[test]
fn shared_formulas() {
    use super::usage::{load_pcpu, single_pin, usage_pct};
    assert_eq!(stddev(&[]), 0.0);
    assert!((stddev(&[100.0, 0.0]) - 50.0).abs() < 1e-9);
    assert!(stddev(&[50.0, 50.0]).abs() < 1e-9);
    assert_eq!(usage_pct((0, SEC / 2), (0, SEC)), Some(50.0));
    assert_eq!(usage_pct((0, 3 * SEC), (0, SEC)), Some(100.0));
    assert_eq!(usage_pct((5, 4), (0, SEC)), None);
    assert_eq!(usage_pct((0, 1), (SEC, SEC)), None);
    assert_eq!(single_pin(&[3]), Some(3));
    assert_eq!(single_pin(&[3, 4]), None);
    assert_eq!(load_pcpu(&[3], Some(1)), Some(3));
    assert_eq!(load_pcpu(&[0, 1], Some(1)), Some(1));
}

/// One-vCPU domains for tests about the per-vCPU search.
const DOMS: [&str; 8] = ["a", "b", "c", "d", "e", "f", "g", "h"];

#[test]
fn a_rebalance_plans_down_to_the_aim_not_just_under_the_threshold() {
    // 100 points in eight vCPUs on pCPU0 of four: the first placement under
    // the threshold is not where the plan stops.
    let specs: Vec<Spec<'_>> = [20.0, 20.0, 15.0, 15.0, 10.0, 10.0, 5.0, 5.0]
        .iter()
        .enumerate()
        .map(|(v, &u)| (DOMS[v], 0, u, &[0u32][..]))
        .collect();
    let pcpus = [0, 1, 2, 3];
    let (_, p) = measured_plan(VcpuConfig::default(), &pcpus, &specs);
    assert!(p.stddev_after <= 2.5 + 1e-9, "{p}");
    // With the aim at the threshold (the old rule) it stops earlier.
    let at_threshold = VcpuConfig {
        aim: Some(DEFAULT_THRESHOLD),
        ..VcpuConfig::default()
    };
    let (_, q) = measured_plan(at_threshold, &pcpus, &specs);
    assert!(q.stddev_after > 2.5 && q.stddev_after <= 5.0, "{q}");
    assert!(q.pins.len() <= p.pins.len());
}

#[test]
fn aim_is_validated_and_defaults_to_half_the_threshold() {
    let c = VcpuConfig {
        threshold: 8.0,
        ..VcpuConfig::default()
    };
    assert_eq!(c.effective_aim(), 4.0);
    for bad in [-1.0, 8.5, f64::NAN, f64::INFINITY] {
        let c = VcpuConfig {
            threshold: 8.0,
            aim: Some(bad),
            ..VcpuConfig::default()
        };
        let e = c.validate().err().unwrap_or_default();
        assert!(e.contains("aim"), "{bad}: {e}");
        assert_eq!(Scheduler::new(c).config().effective_aim(), 4.0);
    }
    let ok = VcpuConfig {
        aim: Some(0.0),
        ..VcpuConfig::default()
    };
    assert_eq!(ok.validate(), Ok(()));
}

#[test]
fn imbalance_in_counts_only_what_leans_the_same_way() {
    use super::usage::imbalance_in;
    let load = [60.0, 40.0, 50.0];
    let sd = stddev(&load);
    let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
    assert!(close(imbalance_in(&load, &load), sd));
    assert!(close(imbalance_in(&[55.0, 45.0, 50.0], &load), sd / 2.0));
    // The other way round, level, or between another pair of pCPUs.
    assert!(close(imbalance_in(&[40.0, 60.0, 50.0], &load), 0.0));
    assert!(close(imbalance_in(&[50.0; 3], &load), 0.0));
    assert!(close(imbalance_in(&[50.0, 50.0, 50.0], &[50.0; 3]), 0.0));
    let elsewhere = [50.0, 60.0, 40.0];
    assert!(imbalance_in(&elsewhere, &load) < stddev(&elsewhere));
}
