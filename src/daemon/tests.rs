//! Daemon ticks and the main loop on a fake clock and a fake libvirt.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use super::memory::MemLoop;
use super::source::{DomId, HostCpus, Seen};
use super::vcpu::{units, VcpuLoop};
use super::*;
use crate::cli::LogFormat;
use crate::policy::memory::{DomainMem, MIB};
use crate::policy::vcpu::{Pin, PinKind, VcpuSample};
use crate::virt::CpuMap;

const SEC: Duration = Duration::from_secs(1);

/// A clock that only moves when slept on (or set).
#[derive(Clone, Default)]
struct FakeClock(Rc<Cell<Duration>>);

impl FakeClock {
    fn set(&self, t: Duration) {
        self.0.set(t);
    }
}

impl Clock for FakeClock {
    fn monotonic(&self) -> Duration {
        self.0.get()
    }
    fn wall_unix_seconds(&self) -> f64 {
        1_800_000_000.0 + self.0.get().as_secs_f64()
    }
    fn sleep(&self, d: Duration) {
        self.0.set(self.0.get() + d);
    }
}

/// One fake vCPU: usage in percent of one pCPU, its affinity.
#[derive(Clone)]
struct FakeVcpu {
    usage: f64,
    affinity: Vec<u32>,
}

#[derive(Clone)]
struct FakeDom {
    uuid: String,
    name: String,
    id: u32,
    vcpus: Vec<FakeVcpu>,
    mem: DomainMem,
}

fn dom(name: &str, vcpus: &[(f64, &[u32])]) -> FakeDom {
    FakeDom {
        uuid: format!("uuid-{name}"),
        name: name.to_string(),
        id: 1,
        vcpus: vcpus
            .iter()
            .map(|(usage, a)| FakeVcpu {
                usage: *usage,
                affinity: a.to_vec(),
            })
            .collect(),
        mem: mem_of(name, 1024, 2048, 200, 1),
    }
}

use crate::policy::memory::test_domain as mem_of;

/// What a fake call does: `None` succeeds.
type Fault = Box<dyn Fn(&str) -> Option<Failure>>;

/// The fake host and its guests, and a record of every action.
struct World {
    clock: FakeClock,
    online: Vec<u32>,
    host_free_kib: u64,
    doms: Vec<FakeDom>,
    pins: Vec<(String, u32, Vec<u32>)>,
    setmem: Vec<(String, u64)>,
    periods: Vec<(String, u32)>,
    period_attempts: usize,
    pin_fault: Fault,
    setmem_fault: Fault,
    period_fault: Fault,
    /// Requests a stop after this many applied pins/balloon changes.
    stop_after: Option<usize>,
    stop: Rc<Cell<bool>>,
    connects: usize,
    /// `virConnectIsAlive` answers false this many times.
    dead_checks: Cell<usize>,
    /// Whether a ConnectionLost fault also closes the session (as a real
    /// closed socket does); false = an RPC-origin error over a live link.
    lost_closes: bool,
}

fn world(clock: &FakeClock, online: &[u32], doms: Vec<FakeDom>) -> Rc<RefCell<World>> {
    Rc::new(RefCell::new(World {
        clock: clock.clone(),
        online: online.to_vec(),
        host_free_kib: 10_000 * MIB,
        doms,
        pins: Vec::new(),
        setmem: Vec::new(),
        periods: Vec::new(),
        period_attempts: 0,
        pin_fault: Box::new(|_| None),
        setmem_fault: Box::new(|_| None),
        period_fault: Box::new(|_| None),
        stop_after: None,
        stop: Rc::new(Cell::new(false)),
        connects: 0,
        dead_checks: Cell::new(0),
        lost_closes: true,
    }))
}

impl World {
    fn applied(&mut self) {
        let n = self.pins.len() + self.setmem.len();
        if self.stop_after.is_some_and(|k| n >= k) {
            self.stop.set(true);
        }
    }
}

struct FakeSource {
    world: Rc<RefCell<World>>,
    /// UUIDs read this interval, by handle.
    read: Vec<String>,
}

impl FakeSource {
    fn new(world: &Rc<RefCell<World>>) -> Self {
        FakeSource {
            world: world.clone(),
            read: Vec::new(),
        }
    }

    fn dom_index(&self, d: DomId) -> Result<usize, Failure> {
        let uuid = self
            .read
            .get(d.0)
            .ok_or_else(|| Failure::new(ErrorKind::Other, "stale handle"))?;
        let w = self.world.borrow();
        w.doms
            .iter()
            .position(|x| &x.uuid == uuid)
            .ok_or_else(|| Failure::new(ErrorKind::NoDomain, "gone"))
    }
}

impl Source for FakeSource {
    fn host_cpus(&mut self) -> Result<HostCpus, Failure> {
        let w = self.world.borrow();
        Ok(HostCpus {
            present: w.online.iter().max().map_or(0, |m| m + 1),
            online: w.online.clone(),
        })
    }

    fn host_free_kib(&mut self) -> Result<u64, Failure> {
        Ok(self.world.borrow().host_free_kib)
    }

    fn read(
        &mut self,
        want: Want,
        _host_cpus: u32,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Sample, Failure> {
        let w = self.world.borrow();
        let t = w.clock.monotonic().as_secs_f64();
        let mut out = Sample::default();
        self.read.clear();
        for d in w.doms.iter().filter(|d| !skip(&d.name)) {
            out.domains.push(Seen {
                handle: DomId(self.read.len()),
                uuid: d.uuid.clone(),
                name: d.name.clone(),
                id: want.memory.then_some(d.id),
            });
            self.read.push(d.uuid.clone());
            if want.vcpus {
                for (i, v) in d.vcpus.iter().enumerate() {
                    out.vcpus.push(VcpuSample {
                        domain: d.uuid.clone(),
                        name: d.name.clone(),
                        vcpu: i as u32,
                        cpu_time_ns: (v.usage * 1e7 * t).round() as u64,
                        affinity: v.affinity.clone(),
                        running_on: v.affinity.first().copied(),
                    });
                }
            }
            if want.memory {
                out.memory.push(d.mem.clone());
            }
        }
        Ok(out)
    }

    fn pin(&mut self, d: DomId, vcpu: u32, map: &CpuMap) -> Result<(), Failure> {
        let i = self.dom_index(d)?;
        let mut w = self.world.borrow_mut();
        let name = w.doms[i].name.clone();
        if let Some(f) = (w.pin_fault)(&name) {
            if f.kind == ErrorKind::ConnectionLost && w.lost_closes {
                w.dead_checks.set(1);
            }
            return Err(f);
        }
        w.doms[i].vcpus[vcpu as usize].affinity = map.cpus();
        w.pins.push((name, vcpu, map.cpus()));
        w.applied();
        Ok(())
    }

    fn set_memory(&mut self, d: DomId, kib: u64) -> Result<(), Failure> {
        let i = self.dom_index(d)?;
        let mut w = self.world.borrow_mut();
        let name = w.doms[i].name.clone();
        if let Some(f) = (w.setmem_fault)(&name) {
            return Err(f);
        }
        w.setmem.push((name, kib));
        w.applied();
        Ok(())
    }

    fn set_stats_period(&mut self, d: DomId, seconds: u32) -> Result<(), Failure> {
        let i = self.dom_index(d)?;
        let mut w = self.world.borrow_mut();
        let name = w.doms[i].name.clone();
        w.period_attempts += 1;
        if let Some(f) = (w.period_fault)(&name) {
            return Err(f);
        }
        w.periods.push((name, seconds));
        Ok(())
    }
}

struct FakeSession(Rc<RefCell<World>>);

impl Session for FakeSession {
    fn is_alive(&self) -> Result<bool, Failure> {
        let w = self.0.borrow();
        let dead = w.dead_checks.get();
        w.dead_checks.set(dead.saturating_sub(1));
        Ok(dead == 0)
    }
    fn source(&self) -> Box<dyn Source + '_> {
        Box::new(FakeSource::new(&self.0))
    }
}

fn quiet() -> Logger {
    Logger {
        format: LogFormat::Human,
        verbose: false,
    }
}

/// Runs one tick of `f` with a context over `clock` and `world`.
fn with_ctx<R>(
    clock: &FakeClock,
    world: &Rc<RefCell<World>>,
    dry_run: bool,
    metrics: &mut Metrics,
    f: impl FnOnce(&mut Ctx<'_>, &mut FakeSource) -> R,
) -> R {
    let log = quiet();
    let stop_flag = world.borrow().stop.clone();
    let stop = move || stop_flag.get();
    let mut ctx = Ctx {
        log: &log,
        dry_run,
        exclude: &[],
        clock,
        stop: &stop,
        metrics,
        read_path: &std::cell::Cell::new(None),
    };
    let mut src = FakeSource::new(world);
    f(&mut ctx, &mut src)
}

fn refused(kind: ErrorKind) -> Fault {
    Box::new(move |_| Some(Failure::new(kind, "virDomainPinVcpu(g): refused")))
}

fn affinities(world: &Rc<RefCell<World>>, name: &str) -> Vec<Vec<u32>> {
    let w = world.borrow();
    let d = w.doms.iter().find(|d| d.name == name).expect("domain");
    d.vcpus.iter().map(|v| v.affinity.clone()).collect()
}

#[test]
fn vcpu_tick_pins_what_the_plan_says() {
    let clock = FakeClock::default();
    let w = world(
        &clock,
        &[0, 1, 2],
        vec![dom("g", &[(50.0, &[0, 1, 2][..]); 3])],
    );
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    // Placement by count: one vCPU per pCPU, each hard-pinned.
    let mut placed: Vec<u32> = affinities(&w, "g").iter().flatten().copied().collect();
    assert_eq!(affinities(&w, "g").iter().map(Vec::len).max(), Some(1));
    placed.sort_unstable();
    assert_eq!(placed, [0, 1, 2]);
    assert_eq!(m.pins_total, 3);
    assert_eq!(m.vcpu.intervals_total, 1);
    // Completed after the short second read of an interval with new vCPUs.
    assert_eq!(
        m.vcpu.last_completed_unix_seconds,
        Some(1_800_000_000.0 + super::vcpu::presample_window(SEC).as_secs_f64())
    );
    // Balanced and pinned: the next interval changes nothing.
    clock.set(SEC);
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    assert_eq!(w.borrow().pins.len(), 3);
}

#[test]
fn dry_run_applies_nothing_in_either_loop() {
    let clock = FakeClock::default();
    let mut g = dom("g", &[(50.0, &[0, 1][..]); 2]);
    g.mem = mem_of("g", 512, 2048, 30, 1);
    let w = world(&clock, &[0, 1], vec![g]);
    let mut v = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut mem = MemLoop::new(SEC, MemConfig::default());
    let mut m = Metrics::default();
    for k in 0..3 {
        clock.set(SEC * k);
        with_ctx(&clock, &w, true, &mut m, |ctx, src| {
            v.tick(ctx, src)?;
            mem.tick(ctx, src)
        })
        .expect("tick");
    }
    let w = w.borrow();
    assert!(w.pins.is_empty() && w.setmem.is_empty() && w.periods.is_empty());
    assert_eq!((m.pins_total, m.memory_granted_kib_total), (0, 0));
    assert_eq!(m.vcpu.intervals_total, 3);
}

#[test]
fn a_lost_connection_abandons_the_interval() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
    w.borrow_mut().pin_fault = refused(ErrorKind::ConnectionLost);
    let mut l = VcpuLoop::new(SEC, VcpuConfig::default());
    let mut m = Metrics::default();
    let r = with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src));
    assert!(matches!(r, Err(TickError::Lost(_))), "{r:?}");
    assert_eq!(m.pin_failures_total, 0, "not a refused pin");
    assert_eq!(m.vcpu.intervals_total, 0, "the interval did not complete");
    assert_eq!(m.vcpu.last_completed_unix_seconds, None);
}

/// Runs the main loop on fakes for `iterations` intervals of each loop.
fn run_daemon(
    clock: &FakeClock,
    w: &Rc<RefCell<World>>,
    vcpu: bool,
    memory: bool,
    iterations: u64,
) -> Daemon {
    let mut d = Daemon::new(Options {
        uri: "fake:///".into(),
        dry_run: false,
        log: quiet(),
        vcpu: vcpu.then(|| (SEC, VcpuConfig::default())),
        memory: memory.then(|| (SEC, MemConfig::default())),
        iterations: Some(iterations),
        exclude: Vec::new(),
        metrics: None,
        config_path: None,
        reload: None,
    });
    let world = w.clone();
    let mut connect = move || -> Result<Box<dyn Session>, Failure> {
        world.borrow_mut().connects += 1;
        Ok(Box::new(FakeSession(world.clone())))
    };
    let stop_flag = w.borrow().stop.clone();
    let stop = move || stop_flag.get();
    d.run(Env {
        clock,
        stop: &stop,
        take_reload: &|| false,
        connect: &mut connect,
    })
    .expect("run");
    d
}

#[test]
fn a_lost_connection_reconnects() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
    w.borrow_mut().pin_fault = refused(ErrorKind::ConnectionLost);
    let d = run_daemon(&clock, &w, true, false, 3);
    assert!(w.borrow().connects >= 2, "reconnected");
    assert!(d.metrics.reconnects_total >= 1);
}

#[test]
fn a_lost_kind_on_a_live_connection_keeps_the_connection() {
    // The daemon's dispatcher answers some refusals with an RPC-origin
    // error over a connection that stays up: only the interval is lost.
    let clock = FakeClock::default();
    let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
    w.borrow_mut().pin_fault = refused(ErrorKind::ConnectionLost);
    w.borrow_mut().lost_closes = false;
    let d = run_daemon(&clock, &w, true, false, 3);
    assert_eq!(w.borrow().connects, 1, "never reconnected");
    assert_eq!(d.metrics.reconnects_total, 0);
}

#[test]
fn a_refused_pin_is_counted_and_the_connection_kept() {
    for kind in [ErrorKind::Other, ErrorKind::Denied] {
        let clock = FakeClock::default();
        let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
        w.borrow_mut().pin_fault = refused(kind);
        let d = run_daemon(&clock, &w, true, false, 3);
        assert_eq!(w.borrow().connects, 1, "{kind:?}: never reconnected");
        assert_eq!(d.metrics.reconnects_total, 0);
        assert!(d.metrics.connected);
        assert_eq!(
            d.metrics.vcpu.intervals_total, 3,
            "{kind:?}: none abandoned"
        );
        // Both vCPUs are refused each interval.
        assert_eq!(d.metrics.pin_failures_total, 6, "{kind:?}");
        assert_eq!(d.metrics.pins_total, 0);
    }
}

#[test]
fn a_closed_connection_is_reopened_before_the_interval() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
    w.borrow().dead_checks.set(1);
    let d = run_daemon(&clock, &w, true, false, 2);
    assert_eq!(w.borrow().connects, 2);
    assert_eq!(d.metrics.reconnects_total, 1);
    assert_eq!(d.metrics.vcpu.intervals_total, 2, "no interval ran on it");
}

#[test]
fn main_loop_runs_both_loops_on_the_fake_clock() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0, 1], vec![dom("g", &[(50.0, &[0, 1][..]); 2])]);
    let d = run_daemon(&clock, &w, true, true, 4);
    assert_eq!(d.metrics.vcpu.intervals_total, 4);
    assert_eq!(d.metrics.memory.intervals_total, 4);
    assert_eq!(w.borrow().periods, [("g".to_string(), 1)]);
    // Four 1 s intervals on time (at 0, 1, 2 and 3 s), then the sleep to
    // the next deadline.
    assert_eq!(clock.monotonic(), 4 * SEC);
}

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

#[test]
fn a_restarted_guest_whose_period_fails_is_warned_about_again() {
    let clock = FakeClock::default();
    let w = world(&clock, &[0], vec![dom("g", &[])]);
    w.borrow_mut().period_fault = Box::new(|_| {
        Some(Failure::new(
            ErrorKind::Unsupported,
            "virDomainSetMemoryStatsPeriod(g): no balloon",
        ))
    });
    let mut l = MemLoop::new(2 * SEC, MemConfig::default());
    let mut m = Metrics::default();
    mem_tick(&clock, &w, &mut l, &mut m, 0);
    mem_tick(&clock, &w, &mut l, &mut m, 2);
    assert_eq!(w.borrow().period_attempts, 1, "tried once per instance");
    assert_eq!(l.warnings(), 1, "warned once");
    w.borrow_mut().doms[0].id = 7;
    mem_tick(&clock, &w, &mut l, &mut m, 4);
    assert_eq!(
        w.borrow().period_attempts,
        2,
        "tried again after the restart"
    );
    assert_eq!(
        l.warnings(),
        1,
        "the old instance's key is gone, the new one warned"
    );
}

#[test]
fn a_grant_funded_by_a_failed_release_is_not_applied() {
    let clock = FakeClock::default();
    let mut donor = dom("donor", &[]);
    donor.mem = mem_of("donor", 2048, 4096, 400, 1);
    let w = world(&clock, &[0], vec![donor]);
    let mut l = MemLoop::new(2 * SEC, MemConfig::default());
    let mut m = Metrics::default();
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    {
        // Host exactly at its reserve: the needy guest's grant can only be
        // funded by the donor's release, which libvirt refuses.
        let mut w = w.borrow_mut();
        w.host_free_kib = 200 * MIB;
        w.doms[0].mem.last_update = Some(3);
        let mut needy = dom("needy", &[]);
        needy.mem = mem_of("needy", 512, 2048, 30, 1);
        w.doms.push(needy);
        w.setmem_fault =
            Box::new(|name| (name == "donor").then(|| Failure::new(ErrorKind::Other, "refused")));
    }
    clock.set(2 * SEC);
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
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
    }
    clock.set(2 * SEC);
    with_ctx(&clock, &w, false, &mut m, |ctx, src| l.tick(ctx, src)).expect("tick");
    let names: Vec<String> = w.borrow().setmem.iter().map(|s| s.0.clone()).collect();
    assert_eq!(names, ["donor", "needy"], "release first, then the grant");
    assert!(m.memory_granted_kib_total > 0);
    assert!(m.memory_granted_kib_total <= m.memory_released_kib_total);
}

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
