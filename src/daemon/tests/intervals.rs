//! The intervals' cadence, a reload on SIGHUP, and the first interval's
//! reading.
use super::*;

#[test]
fn advance_keeps_cadence_and_never_bursts() {
    let t0 = Duration::from_secs(100);
    let i = Duration::from_secs(4);
    // On time: the next deadline is one interval after the previous one.
    assert_eq!(advance(t0, i, t0 + Duration::from_millis(100)), t0 + i);
    // A tick that stalled 27 s: a full interval from now, not t0 + 4 s.
    let late = t0 + Duration::from_secs(27);
    assert_eq!(advance(t0, i, late), late + i);
}

#[test]
fn a_too_early_interval_is_skipped_and_a_long_gap_restarts_the_history() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
    let mut l = VcpuLoop::new(2 * SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    let mut at = |t: Duration, m: &mut Metrics| {
        clock.set(t);
        with_ctx(&clock, &w, false, m, |ctx, src| l.tick(ctx, src)).expect("tick");
    };
    at(Duration::ZERO, &mut m);
    // 0.9 s after the last sample: under half an interval, skipped.
    at(Duration::from_millis(900), &mut m);
    assert_eq!(m.vcpu.intervals_total, 1);
    at(2 * SEC, &mut m);
    assert_eq!(m.vcpu.intervals_total, 2);
    assert!(m.load_stddev.is_some());
    // 6 s later (more than 2.5 intervals): the history restarts, so this
    // interval has no earlier reading and measures usage over its short
    // second read only.
    at(8 * SEC, &mut m);
    assert_eq!(m.vcpu.intervals_total, 3);
    assert_eq!(
        clock.monotonic(),
        8 * SEC + super::vcpu::presample_window(2 * SEC)
    );
}

#[test]
fn sighup_reloads_the_exclusions() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
    let mut d = Daemon::new(Options {
        uri: "fake:///".into(),
        dry_run: false,
        log: quiet(),
        vcpu: Some((SEC, VcpuConfig::default())),
        memory: None,
        iterations: Some(2),
        exclude: Vec::new(),
        metrics: None,
        config_path: None,
        reload: Some(Box::new(|| {
            Ok(Reloaded {
                vcpu: VcpuConfig::default(),
                memory: MemConfig::default(),
                exclude: vec!["g*".into()],
            })
        })),
    });
    let world = w.clone();
    let mut connect =
        move || -> Result<Box<dyn Session>, Failure> { Ok(Box::new(FakeSession(world.clone()))) };
    // A SIGHUP before the first interval: "g" is excluded from the start.
    let hup = Cell::new(true);
    d.run(Env {
        clock: &clock,
        stop: &|| false,
        take_reload: &|| hup.replace(false),
        connect: &mut connect,
    })
    .expect("run");
    assert!(w.borrow().pins.is_empty(), "{:?}", w.borrow().pins);
    assert_eq!(d.metrics.vcpu.intervals_total, 2);
}

#[test]
fn the_first_interval_places_by_measured_usage_not_by_count() {
    // Four guests busy only on vCPU 0, never read before. Placed by count,
    // each guest's two vCPUs are spread, but nothing tells where the busy
    // ones go; the short second read measures them, so they are split 2/2.
    let clock = FakeClock::default();
    clock.set(Duration::from_secs(10));
    let guests = ["a", "b", "c", "d"]
        .iter()
        .map(|n| dom(n, &[(45.0, &[0, 1][..]), (0.0, &[0, 1][..])]))
        .collect();
    let w = world(&clock, &[0, 1], guests);
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    let t0 = clock.monotonic();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    let world = w.borrow();
    let busy_on_0 = world
        .doms
        .iter()
        .filter(|d| d.vcpus[0].affinity == [0])
        .count();
    assert!(
        world.doms.iter().all(|d| d.vcpus[0].affinity.len() == 1),
        "hard-pinned"
    );
    assert_eq!(busy_on_0, 2, "busy vCPUs split evenly over both pCPUs");
    drop(world);
    assert_eq!(
        clock.monotonic() - t0,
        super::vcpu::presample_window(SEC),
        "one short second read"
    );
}

#[test]
fn known_vcpus_need_no_second_read() {
    let clock = FakeClock::default();
    clock.set(Duration::from_secs(10));
    let w = world(
        &clock,
        &[0, 1],
        vec![dom("a", &[(50.0, &[0][..]), (50.0, &[1][..])])],
    );
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick 1");
    clock.set(clock.monotonic() + SEC);
    let t1 = clock.monotonic();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick 2");
    assert_eq!(
        clock.monotonic(),
        t1,
        "no sleep once every vCPU has a reading"
    );
}

#[test]
fn the_presample_window_is_1_s_at_most_half_the_interval() {
    use super::vcpu::presample_window;
    assert_eq!(presample_window(4 * SEC), Duration::from_secs(1));
    assert_eq!(presample_window(2 * SEC), Duration::from_secs(1));
    assert_eq!(presample_window(SEC), Duration::from_millis(500));
}
