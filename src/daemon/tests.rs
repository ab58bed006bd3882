//! Daemon ticks and the main loop on a fake clock and a fake libvirt: the
//! fakes, the vCPU tick and the connection handling. The pin units and
//! swaps (`swaps`), the memory loop (`mem_loop`) and the intervals' cadence,
//! reload and first reading (`intervals`) have modules of their own.

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

mod intervals;
mod mem_loop;
mod swaps;

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
