//! The usage history: the first interval, guests that vanish or restart,
//! the usage cap, and smoothing against noise.
use super::*;

#[test]
fn first_interval_moves_nothing_already_pinned() {
    let specs: Vec<Spec<'_>> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| (*d, 0, 25.0, &[0u32][..]))
        .collect();
    let mut s = Scheduler::new(VcpuConfig::default());
    let snap = snap_at(0, &[0, 1], &specs);
    let p = s.plan(&snap);
    assert_eq!(p.decision, Decision::Warmup);
    assert!(p.pins.is_empty());
    assert_eq!(s.usage("uuid-a", 0), None);
    let snap = snap_at(1, &[0, 1], &specs);
    let p = s.plan(&snap);
    assert_eq!(p.pins.len(), 2);
    assert!((s.usage("uuid-a", 0).unwrap_or(0.0) - 25.0).abs() < 1e-9);
}

#[test]
fn vanished_domain_is_forgotten_and_new_one_starts_fresh() {
    let mut s = Scheduler::new(VcpuConfig::default());
    let specs: [Spec<'_>; 2] = [("a", 0, 50.0, &[0]), ("b", 0, 50.0, &[1])];
    s.plan(&snap_at(0, &[0, 1], &specs));
    s.plan(&snap_at(1, &[0, 1], &specs));
    assert!(s.usage("uuid-b", 0).is_some());
    // b vanishes, c appears.
    let specs2: [Spec<'_>; 2] = [("a", 0, 50.0, &[0]), ("c", 0, 50.0, &[0])];
    let snap = snap_at(2, &[0, 1], &specs2);
    let p = s.plan(&snap);
    assert_eq!(s.usage("uuid-b", 0), None);
    assert_eq!(s.usage("uuid-c", 0), None);
    // a is known, c (unknown usage, counted as 0) is left alone.
    assert!(p.pins.is_empty(), "{p}");
    assert!(!matches!(p.decision, Decision::Warmup));
    // b comes back later: it is new again (no stale delta).
    let specs3: [Spec<'_>; 2] = [("a", 0, 50.0, &[0]), ("b", 0, 50.0, &[1])];
    s.plan(&snap_at(3, &[0, 1], &specs3));
    assert_eq!(s.usage("uuid-b", 0), None);
}

#[test]
fn counter_going_backwards_is_a_restart() {
    let mut s = Scheduler::new(VcpuConfig::default());
    let mk = |t: u64, ns: u64| Snapshot {
        monotonic_ns: t * SEC,
        pcpus: vec![0, 1],
        vcpus: vec![sample("a", 0, ns, &[0])],
    };
    s.plan(&mk(10, 50 * SEC));
    s.plan(&mk(11, 50 * SEC + SEC / 2));
    assert!((s.usage("uuid-a", 0).unwrap_or(0.0) - 50.0).abs() < 1e-9);
    s.plan(&mk(12, SEC / 10));
    assert_eq!(s.usage("uuid-a", 0), None);
    s.plan(&mk(13, SEC / 10 + SEC / 5));
    assert!((s.usage("uuid-a", 0).unwrap_or(0.0) - 20.0).abs() < 1e-9);
}

#[test]
fn usage_is_capped_and_same_snapshot_twice_keeps_usage() {
    let mut s = Scheduler::new(VcpuConfig::default());
    let mk = |t: u64, ns: u64| Snapshot {
        monotonic_ns: t,
        pcpus: vec![0],
        vcpus: vec![sample("a", 0, ns, &[0])],
    };
    s.plan(&mk(SEC, 0));
    s.plan(&mk(2 * SEC, SEC + SEC / 100));
    assert_eq!(s.usage("uuid-a", 0), Some(100.0));
    s.plan(&mk(2 * SEC, SEC + SEC / 100));
    assert_eq!(s.usage("uuid-a", 0), Some(100.0));
}

#[test]
fn smoothing_damps_noise_and_adopts_jumps() {
    let mut s = Scheduler::new(VcpuConfig::default());
    let mut ns = 0u64;
    let mut t = 0u64;
    let mut step = |s: &mut Scheduler, u: f64| {
        t += SEC;
        ns += (u * 1e7) as u64;
        s.plan(leak(Snapshot {
            monotonic_ns: t,
            pcpus: vec![0],
            vcpus: vec![sample("a", 0, ns, &[0])],
        }));
        s.usage("uuid-a", 0).unwrap_or(f64::NAN)
    };
    step(&mut s, 0.0);
    assert_eq!(step(&mut s, 30.0), 30.0);
    assert_eq!(step(&mut s, 36.0), 33.0); // noise: half-way
    assert_eq!(step(&mut s, 90.0), 90.0); // jump: adopted at once
}

#[test]
fn noise_does_not_cause_repins() {
    // Balanced 2 + 2 at ~50 % each with ±4 points of noise.
    let mut s = Scheduler::new(VcpuConfig::default());
    let noise = [0.0, 4.0, -4.0, 3.0, -2.0, 4.0, -4.0, 1.0];
    let mut cum = [0u64; 4];
    for (k, n) in noise.iter().enumerate() {
        let mut vcpus = Vec::new();
        for (i, c) in cum.iter_mut().enumerate() {
            let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
            *c += ((50.0 + sign * n) * 1e7) as u64;
            vcpus.push(sample(&format!("g{i}"), 0, *c, &[(i / 2) as u32]));
        }
        let p = s.plan(leak(Snapshot {
            monotonic_ns: (k as u64 + 1) * SEC,
            pcpus: vec![0, 1],
            vcpus,
        }));
        assert!(p.pins.is_empty(), "interval {k}: {p}");
    }
}
