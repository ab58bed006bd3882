//! The memory loop's ticks: releases before grants, stats periods of
//! restarted guests, and grants funded by releases that failed.
use super::*;

fn mem_tick(clock: &FakeClock, w: &Rc<RefCell<World>>, l: &mut MemLoop, m: &mut Metrics, t: u32) {
    clock.set(SEC * t);
    with_ctx(clock, w, false, m, |ctx, src| l.tick(ctx, src)).expect("tick");
}

#[test]
fn a_stop_after_a_release_leaves_the_grants_unapplied() {
    let clock = FakeClock::default();
    let mut donor = dom("donor", &[]);
    donor.mem = mem_of("donor", 2048, 4096, 400, 1);
    let w = world(&clock, &[0], vec![donor]);
    let mut l = MemLoop::new(2 * SEC, MemConfig::default());
    let mut m = Metrics::default();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    {
        let mut w = w.borrow_mut();
        w.host_free_kib = 200 * MIB;
        w.doms[0].mem.last_update = Some(3);
        let mut needy = dom("needy", &[]);
        needy.mem = mem_of("needy", 512, 2048, 30, 1);
        w.doms.push(needy);
        w.stop_after = Some(1);
    }
    clock.set(2 * SEC);
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    let names: Vec<String> = w.borrow().setmem.iter().map(|s| s.0.clone()).collect();
    assert_eq!(names, ["donor"], "stopped after the release");
    assert_eq!(m.memory_granted_kib_total, 0);
}

#[test]
fn a_restarted_guest_gets_its_stats_period_again() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0], vec![dom("g", &[])]);
    let mut l = MemLoop::new(2 * SEC, MemConfig::default());
    let mut m = Metrics::default();
    mem_tick(&clock, &w, &mut l, &mut m, 0);
    mem_tick(&clock, &w, &mut l, &mut m, 2);
    assert_eq!(w.borrow().periods.len(), 1, "set once per running instance");
    // Stopped and started again: same UUID, new ID.
    w.borrow_mut().doms[0].id = 2;
    mem_tick(&clock, &w, &mut l, &mut m, 4);
    assert_eq!(w.borrow().periods.len(), 2, "set again after the restart");
    mem_tick(&clock, &w, &mut l, &mut m, 6);
    assert_eq!(w.borrow().periods.len(), 2);
}

/// One guest `g` whose every stats-period request fails with `kind`, and
/// a memory loop with a 2 s interval.
fn guest_g_whose_period_is_refused(
    clock: &FakeClock,
    kind: ErrorKind,
) -> (Rc<RefCell<World>>, MemLoop) {
    let w = world(clock, &[0], vec![dom("g", &[])]);
    w.borrow_mut().period_fault = Box::new(move |_| {
        Some(Failure::new(
            kind,
            "virDomainSetMemoryStatsPeriod(g): No memory balloon device configured",
        ))
    });
    (w, MemLoop::new(2 * SEC, MemConfig::default()))
}

#[test]
fn a_restarted_guest_whose_period_fails_is_warned_about_again() {
    let clock = FakeClock::default();
    let (w, mut l) = guest_g_whose_period_is_refused(&clock, ErrorKind::Unsupported);
    let mut m = Metrics::default();
    mem_tick(&clock, &w, &mut l, &mut m, 0);
    mem_tick(&clock, &w, &mut l, &mut m, 2);
    mem_tick(&clock, &w, &mut l, &mut m, 4);
    assert_eq!(w.borrow().period_attempts, 2, "intervals 1 and 2, not 3");
    assert_eq!(l.warnings(), 1, "warned once");
    w.borrow_mut().doms[0].id = 7;
    mem_tick(&clock, &w, &mut l, &mut m, 6);
    assert_eq!(
        w.borrow().period_attempts,
        3,
        "tried at once after the restart"
    );
    assert_eq!(
        l.warnings(),
        1,
        "the old instance's key is gone, the new one warned"
    );
}

/// A donor with 400 MiB free, then a needy guest appears while the host
/// is exactly at its reserve, so the needy guest's grant can only be
/// funded by the donor's release (which libvirt refuses if `refused`).
/// Returns the world and the metrics after the second memory tick.
fn grant_funded_by_a_release(refused: bool) -> (Rc<RefCell<World>>, Metrics) {
    let clock = FakeClock::default();
    let mut donor = dom("donor", &[]);
    donor.mem = mem_of("donor", 2048, 4096, 400, 1);
    let w = world(&clock, &[0], vec![donor]);
    let mut l = MemLoop::new(2 * SEC, MemConfig::default());
    let mut m = Metrics::default();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    {
        let mut w = w.borrow_mut();
        w.host_free_kib = 200 * MIB;
        w.doms[0].mem.last_update = Some(3);
        let mut needy = dom("needy", &[]);
        needy.mem = mem_of("needy", 512, 2048, 30, 1);
        w.doms.push(needy);
        if refused {
            w.setmem_fault = Box::new(|name| {
                (name == "donor").then(|| Failure::new(ErrorKind::Other, "refused"))
            });
        }
    }
    clock.set(2 * SEC);
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    (w, m)
}

#[test]
fn a_grant_funded_by_a_failed_release_is_not_applied() {
    let (w, m) = grant_funded_by_a_release(true);
    let w = w.borrow();
    assert!(
        !w.setmem.iter().any(|(n, _)| n == "needy"),
        "unfunded grant applied: {:?}",
        w.setmem
    );
    assert_eq!(m.memory_granted_kib_total, 0);
}

#[test]
fn a_grant_funded_by_a_release_that_worked_is_applied() {
    let (w, m) = grant_funded_by_a_release(false);
    let names: Vec<String> = w.borrow().setmem.iter().map(|s| s.0.clone()).collect();
    assert_eq!(names, ["donor", "needy"], "release first, then the grant");
    assert!(m.memory_granted_kib_total > 0);
    assert!(m.memory_granted_kib_total <= m.memory_released_kib_total);
}

#[test]
fn a_stats_period_refused_once_is_asked_again() {
    // The first request meets a monitor that is busy for a moment.
    let clock = FakeClock::default();
    let w = world(&clock, &[0], vec![dom("g", &[])]);
    let refusals = Rc::new(Cell::new(1));
    let left = Rc::clone(&refusals);
    w.borrow_mut().period_fault = Box::new(move |_| {
        (left.get() > 0).then(|| {
            left.set(left.get() - 1);
            Failure::new(
                ErrorKind::Other,
                "virDomainSetMemoryStatsPeriod(g): cannot acquire state change lock",
            )
        })
    });
    let mut l = MemLoop::new(2 * SEC, MemConfig::default());
    let mut m = Metrics::default();
    for t in 0..4 {
        mem_tick(&clock, &w, &mut l, &mut m, 2 * t);
    }
    let w = w.borrow();
    assert_eq!(refusals.get(), 0);
    assert_eq!(w.period_attempts, 2, "refused, then set the next interval");
    assert_eq!(w.periods, [("g".to_string(), 2)]);
    assert_eq!(l.warnings(), 1);
}

#[test]
fn a_stats_period_that_keeps_failing_is_asked_less_and_less_often() {
    let clock = FakeClock::default();
    let (w, mut l) = guest_g_whose_period_is_refused(&clock, ErrorKind::Other);
    let mut m = Metrics::default();
    let mut asked = Vec::new();
    for tick in 1..=200u32 {
        let before = w.borrow().period_attempts;
        mem_tick(&clock, &w, &mut l, &mut m, 2 * tick);
        if w.borrow().period_attempts > before {
            asked.push(tick);
        }
    }
    assert_eq!(asked, [1, 2, 4, 8, 16, 32, 64, 128, 192]);
    assert_eq!(l.warnings(), 1, "warned once");
}
