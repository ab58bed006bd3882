//! Placement: unpinned vCPUs, vCPUs on offline or excluded pCPUs, and a
//! host with no usable pCPU.
use super::*;

#[test]
fn unpinned_vcpus_are_hard_pinned_in_warmup_by_count() {
    let all: &[u32] = &[0, 1, 2, 3];
    let specs: Vec<Spec<'_>> = (0..6).map(|v| ("g", v, 50.0, all)).collect();
    let mut s = Scheduler::new(VcpuConfig::default());
    let snap = snap_at(0, all, &specs);
    let p = s.plan(&snap);
    assert_eq!(p.decision, Decision::Warmup);
    assert_eq!(p.placed, 6);
    assert_eq!(p.pins.len(), 6);
    assert!(p
        .pins
        .iter()
        .all(|x| x.kind == PinKind::Placement && x.from.is_none()));
    let targets: Vec<u32> = p.pins.iter().map(|x| x.pcpu).collect();
    assert_eq!(targets, vec![0, 1, 2, 3, 0, 1]);
}

#[test]
fn unpinned_vcpus_with_known_usage_are_placed_largest_first() {
    let both: &[u32] = &[0, 1];
    let specs: [Spec<'_>; 4] = [
        ("a", 0, 30.0, both),
        ("b", 0, 100.0, both),
        ("c", 0, 100.0, both),
        ("d", 0, 30.0, both),
    ];
    let (_, p) = measured_plan(VcpuConfig::default(), both, &specs);
    assert_eq!(p.pins.len(), 4);
    assert!((load_of(&p, 0) - 130.0).abs() < 1e-6, "{p}");
    assert!((load_of(&p, 1) - 130.0).abs() < 1e-6);
    // Multi-CPU affinity is not "pinned".
    assert_eq!(p.placed, 4);
}

#[test]
fn vcpu_on_offline_pcpu_is_replaced() {
    // pCPU 2 went offline; its vCPU must move to a usable one.
    let specs: [Spec<'_>; 3] = [
        ("a", 0, 40.0, &[0]),
        ("b", 0, 40.0, &[2]),
        ("c", 0, 10.0, &[1]),
    ];
    let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
    assert_eq!(p.pins.len(), 1, "{p}");
    let pin = &p.pins[0];
    assert_eq!((pin.name, pin.pcpu, pin.from), ("b", 1, Some(2)));
    assert_eq!(pin.kind, PinKind::Placement);
    assert_eq!(p.loads_after, vec![(0, 40.0), (1, 50.0)]);
    // Before: b's load is not attributed to a usable pCPU.
    assert_eq!(p.loads_before, vec![(0, 40.0), (1, 10.0)]);
}

#[test]
fn cpus_option_restricts_pcpus() {
    let cfg = VcpuConfig {
        cpus: Some(vec![2, 1]),
        ..VcpuConfig::default()
    };
    let all: &[u32] = &[0, 1, 2, 3];
    let specs: Vec<Spec<'_>> = (0..4).map(|v| ("g", v, 10.0, &[0u32][..])).collect();
    let mut s = Scheduler::new(cfg);
    let snap = snap_at(0, all, &specs);
    let p = s.plan(&snap);
    assert_eq!(
        p.loads_after.iter().map(|l| l.0).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let targets: Vec<u32> = p.pins.iter().map(|x| x.pcpu).collect();
    assert_eq!(targets, vec![1, 2, 1, 2]);
}

#[test]
fn no_usable_pcpu_means_no_pin() {
    let cfg = VcpuConfig {
        cpus: Some(vec![9]),
        ..VcpuConfig::default()
    };
    let specs: [Spec<'_>; 1] = [("a", 0, 10.0, &[0, 1])];
    let mut s = Scheduler::new(cfg);
    let snap = snap_at(0, &[0, 1], &specs);
    let p = s.plan(&snap);
    assert_eq!(p.decision, Decision::NoUsablePcpus);
    assert!(p.pins.is_empty());
    let p = Scheduler::new(VcpuConfig::default()).plan(leak(Snapshot::default()));
    assert_eq!(p.decision, Decision::NoUsablePcpus);
    let p = Scheduler::new(VcpuConfig::default()).plan(leak(Snapshot {
        pcpus: vec![0, 1],
        ..Snapshot::default()
    }));
    assert_eq!(p.decision, Decision::Idle);
    assert_eq!(p.loads_after, vec![(0, 0.0), (1, 0.0)]);
}
