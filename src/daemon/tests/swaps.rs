//! Applying a plan's pins as units: a swap is applied whole or put back,
//! and a stop never leaves one half done.
use super::*;

fn pin(name: &str, vcpu: u32, from: u32, to: u32, kind: PinKind) -> Pin<'_> {
    Pin {
        domain: name,
        name,
        vcpu,
        pcpu: to,
        from: Some(from),
        kind,
    }
}

#[test]
fn swap_pins_form_units_by_the_pcpus_they_exchange() {
    let pins = [
        pin("a", 0, 0, 1, PinKind::Swap),
        pin("b", 0, 2, 3, PinKind::Swap),
        pin("c", 0, 5, 4, PinKind::Move),
        pin("d", 0, 1, 0, PinKind::Swap),
        pin("e", 0, 3, 2, PinKind::Swap),
    ];
    let names: Vec<Vec<&str>> = units(&pins)
        .iter()
        .map(|u| u.iter().map(|p| p.name).collect())
        .collect();
    assert_eq!(names, [vec!["a", "d"], vec!["b", "e"], vec!["c"]]);
}

/// Heavies share pCPU0, lights pCPU1: the second interval plans one swap.
fn swap_world(clock: &FakeClock) -> Rc<RefCell<World>> {
    world(
        clock,
        &[0, 1],
        vec![
            dom("h1", &[(50.0, &[0])]),
            dom("h2", &[(50.0, &[0])]),
            dom("l1", &[(30.0, &[1])]),
            dom("l2", &[(30.0, &[1])]),
        ],
    )
}

#[test]
fn a_stop_during_a_swap_finishes_the_swap() {
    let clock = FakeClock::default();
    let w = swap_world(&clock);
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    // The first interval measures usage with its short second read, so
    // it already plans the swap.
    w.borrow_mut().stop_after = Some(1);
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    let pins = w.borrow().pins.clone();
    assert_eq!(pins.len(), 2, "both halves of the swap: {pins:?}");
    let on0 = ["h1", "h2", "l1", "l2"]
        .iter()
        .filter(|n| affinities(&w, n) == [vec![0]])
        .count();
    assert_eq!(on0, 2, "one heavy and one light per pCPU");
}

#[test]
fn a_swap_whose_first_pin_is_refused_is_skipped_whole() {
    let clock = FakeClock::default();
    let w = swap_world(&clock);
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    // Whichever pin of the swap comes first is refused (the first
    // interval plans the swap: its second read measured the usage).
    w.borrow_mut().pin_fault = refused(ErrorKind::Other);
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    assert_eq!(m.pin_failures_total, 1, "the second half was not tried");
    assert!(w.borrow().pins.is_empty());
}

#[test]
fn a_swap_whose_second_pin_is_refused_is_put_back() {
    let clock = FakeClock::default();
    let w = swap_world(&clock);
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    // The second pin call of the interval is refused; the others succeed.
    let calls = Rc::new(Cell::new(0u32));
    let seen = calls.clone();
    w.borrow_mut().pin_fault = Box::new(move |_| {
        seen.set(seen.get() + 1);
        (seen.get() == 2).then(|| Failure::new(ErrorKind::Other, "virDomainPinVcpu: refused"))
    });
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    assert_eq!(m.pin_failures_total, 1);
    // The first half was applied, then put back: the seeding holds.
    assert_eq!(w.borrow().pins.len(), 2, "{:?}", w.borrow().pins);
    for (name, cpu) in [("h1", 0), ("h2", 0), ("l1", 1), ("l2", 1)] {
        assert_eq!(affinities(&w, name), [vec![cpu]], "{name}");
    }
}

#[test]
fn a_stop_between_pins_leaves_the_rest_unapplied() {
    let clock = FakeClock::default();
    let w = world(
        &clock,
        &[0, 1, 2],
        vec![dom("g", &[(50.0, &[0, 1, 2][..]); 3])],
    );
    w.borrow_mut().stop_after = Some(1);
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    assert_eq!(w.borrow().pins.len(), 1, "{:?}", w.borrow().pins);
}
