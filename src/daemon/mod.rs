//! The daemon: the vCPU and memory loops on one libvirt connection.
//!
//! Threads:
//! - **main loop** ([`run`]): owns the connection and both loops. The two
//!   loops are deadlines on one timeline; between them it sleeps in short
//!   slices, so a stop request ends it within ~50 ms unless a libvirt call
//!   is in progress. SIGHUP re-reads the config between intervals.
//! - **metrics thread** (with `--metrics`): serves `/metrics` from the
//!   copy of [`Metrics`] the main loop publishes after each interval.
//! - **stop watchdog** ([`signals::spawn_stop_watchdog`]): ends the process
//!   when a stop request is not honoured in time (a call that never
//!   returns), naming the call if one was in progress.
//! - **overrun observer** ([`overrun`]): logs once when an interval (or a
//!   connect) has run for more than three intervals.
//!
//! One interval of a loop ([`vcpu`], [`memory`]), in the main loop:
//!
//! ```text
//!   Session::is_alive ──false──► abandon, reconnect with backoff
//!         │ true
//!   Session::source()            one Source per interval
//!         │
//!   read   Source::read ─► Sample: policy inputs + a DomId per domain
//!         │                (excluded names skipped before any per-domain call;
//!         │                 stamped by the injected Clock)
//!   plan   Scheduler::plan / Coordinator::plan (pure, records nothing)
//!         │
//!   apply  Ctx::apply per action on its DomId (the one dry-run check);
//!         │ stop checked between actions, a swap's pins as one unit,
//!         │ memory: releases, then plan.grants_funded(released)
//!         │
//!   commit Coordinator::commit(applied), metrics, the interval's log line
//! ```
//!
//! The [`Clock`] and the libvirt side ([`Session`], [`Source`]) are
//! injected, so a tick runs in tests on fakes. A failure is classified
//! once ([`source::Failure`]): a lost connection (or `virConnectIsAlive`
//! false) abandons the interval, and the main loop reconnects with backoff;
//! a refused action is counted and logged, and the interval goes on; a
//! domain that vanished is skipped quietly.

pub mod clock;
pub mod memory;
pub mod overrun;
pub mod source;
pub mod vcpu;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use crate::log::Logger;
use crate::metrics::{Metrics, MetricsServer};
use crate::policy::memory::MemConfig;
use crate::policy::vcpu::VcpuConfig;
use crate::sample::{ReadPath, Want};
use crate::signals;
use crate::virt::{self, Connection, ErrorKind};

pub use clock::{Clock, SystemClock};
use memory::MemLoop;
use overrun::Progress;
pub use source::{Failure, Sample, Session, Source};
use vcpu::VcpuLoop;

/// What the daemon runs.
pub struct Options {
    /// libvirt URI.
    pub uri: String,
    /// Read-only connection, print only.
    pub dry_run: bool,
    /// Logging.
    pub log: Logger,
    /// vCPU loop: interval and policy config.
    pub vcpu: Option<(Duration, VcpuConfig)>,
    /// Memory loop: interval and policy config.
    pub memory: Option<(Duration, MemConfig)>,
    /// Stop after this many intervals of each loop.
    pub iterations: Option<u64>,
    /// Domains never touched (names/globs).
    pub exclude: Vec<String>,
    /// Metrics endpoint.
    pub metrics: Option<MetricsServer>,
    /// Config file to reload on SIGHUP.
    pub config_path: Option<std::path::PathBuf>,
    /// Rebuilds the policy configs from the config file (SIGHUP).
    pub reload: Option<Box<dyn Fn() -> Result<Reloaded, String>>>,
}

/// Policy configs rebuilt on SIGHUP.
pub struct Reloaded {
    /// vCPU config.
    pub vcpu: VcpuConfig,
    /// Memory config.
    pub memory: MemConfig,
    /// Excluded domains.
    pub exclude: Vec<String>,
}

/// Why an interval ended early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickError {
    /// The connection is gone: reconnect.
    Lost(Failure),
    /// Something else failed: log, keep going.
    Abandoned(Failure),
}

impl From<Failure> for TickError {
    fn from(f: Failure) -> Self {
        if f.kind == ErrorKind::ConnectionLost {
            TickError::Lost(f)
        } else {
            TickError::Abandoned(f)
        }
    }
}

/// What one action came to.
#[derive(Debug)]
pub enum Outcome {
    /// It was applied.
    Applied,
    /// Dry run: not attempted.
    DryRun,
    /// It failed.
    Failed(Failure),
}

/// What a tick gets from the daemon.
pub struct Ctx<'a> {
    /// Logging.
    pub log: &'a Logger,
    /// Dry run: no action is applied (decided in [`Ctx::apply`] only).
    pub dry_run: bool,
    /// Excluded domains (names/globs).
    pub exclude: &'a [String],
    /// The clock.
    pub clock: &'a dyn Clock,
    /// Whether a stop was requested (checked between actions).
    pub stop: &'a dyn Fn() -> bool,
    /// The figures to publish.
    pub metrics: &'a mut Metrics,
    /// The domain read path last announced (logged once, and again only
    /// if it changes).
    pub read_path: &'a Cell<Option<ReadPath>>,
}

impl Ctx<'_> {
    /// Applies one action, unless this is a dry run: the one place that
    /// decides it, for both loops.
    pub fn apply(&self, f: impl FnOnce() -> Result<(), Failure>) -> Outcome {
        if self.dry_run {
            return Outcome::DryRun;
        }
        match f() {
            Ok(()) => Outcome::Applied,
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Whether applied actions are logged one by one.
    pub fn log_actions(&self) -> bool {
        self.log.verbose || matches!(self.log.format, crate::cli::LogFormat::Json)
    }

    /// Reads the running domains for loop `lp`, excluded ones left out
    /// before any per-domain call: domains that vanished are dropped
    /// quietly, other per-domain failures are logged and skipped, and a
    /// lost connection ends the interval.
    pub fn read(
        &self,
        lp: &str,
        src: &mut dyn Source,
        want: Want,
        host_cpus: u32,
    ) -> Result<Sample, TickError> {
        let exclude = self.exclude;
        let skip = |name: &str| excluded(exclude, name);
        let sample = src.read(want, host_cpus, &skip)?;
        if let Some(path) = sample.read_path {
            if self.read_path.replace(Some(path)) != Some(path) {
                self.log.line("daemon", &format!("domains read by {path}"));
            }
        }
        for s in &sample.skipped {
            match s.failure.kind {
                ErrorKind::ConnectionLost => return Err(TickError::Lost(s.failure.clone())),
                ErrorKind::NoDomain => {}
                _ => self
                    .log
                    .warn(lp, &format!("skipped {}: {}", s.name, s.failure)),
            }
        }
        Ok(sample)
    }
}

fn excluded(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| crate::config::glob_match(p, name))
}

/// Opens a [`Session`].
pub type Connect<'a> = dyn FnMut() -> Result<Box<dyn Session>, Failure> + 'a;

/// The outside world of the main loop.
pub struct Env<'a> {
    /// The clock.
    pub clock: &'a dyn Clock,
    /// Whether a stop was requested.
    pub stop: &'a dyn Fn() -> bool,
    /// Whether a reload was requested since the last call.
    pub take_reload: &'a dyn Fn() -> bool,
    /// Opens a connection.
    pub connect: &'a mut Connect<'a>,
}

/// The main loop's state, across reconnects.
pub struct Daemon {
    uri: String,
    dry_run: bool,
    log: Logger,
    iterations: Option<u64>,
    exclude: Vec<String>,
    reload: Option<Box<dyn Fn() -> Result<Reloaded, String>>>,
    vcpu: Option<VcpuLoop>,
    memory: Option<MemLoop>,
    /// The figures, published after each interval.
    pub metrics: Metrics,
    published: Option<crate::metrics::Shared>,
    progress: Arc<Progress>,
    /// The domain read path last announced in the log.
    read_path: Cell<Option<ReadPath>>,
}

/// Runs until a stop signal, or `iterations` intervals. Returns an error
/// only when the first connection cannot be made.
pub fn run(mut opts: Options) -> Result<(), String> {
    let server = opts.metrics.take();
    let mut d = Daemon::new(opts);
    if let Some(server) = server {
        let shared = crate::metrics::Shared::default();
        server.spawn(shared.clone())?;
        d.published = Some(shared);
    }
    overrun::spawn_observer(d.progress.clone(), d.log)?;
    let uri = d.uri.clone();
    let dry_run = d.dry_run;
    let mut connect = move || -> Result<Box<dyn Session>, Failure> {
        let c = if dry_run {
            Connection::open_read_only(&uri)
        } else {
            Connection::open(&uri)
        };
        Ok(Box::new(c?))
    };
    d.run(Env {
        clock: &SystemClock,
        stop: &signals::stop_requested,
        take_reload: &signals::take_reload,
        connect: &mut connect,
    })
}

/// Next deadline after `prev`: keeps the cadence, but never schedules in the
/// past (a slow interval skips ahead instead of bursting).
fn advance(prev: Duration, interval: Duration, now: Duration) -> Duration {
    let next = prev + interval;
    if next <= now {
        now + interval
    } else {
        next
    }
}

/// The two control loops sharing the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Which {
    Vcpu,
    Memory,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Vcpu => "vcpu",
            Which::Memory => "memory",
        }
    }
}

impl Daemon {
    /// The daemon for `opts` (its `metrics` server is not started here).
    pub fn new(opts: Options) -> Self {
        Daemon {
            vcpu: opts.vcpu.map(|(i, c)| VcpuLoop::new(i, c)),
            memory: opts.memory.map(|(i, c)| MemLoop::new(i, c)),
            metrics: Metrics {
                dry_run: opts.dry_run,
                ..Default::default()
            },
            uri: opts.uri,
            dry_run: opts.dry_run,
            log: opts.log,
            iterations: opts.iterations,
            exclude: opts.exclude,
            reload: opts.reload,
            published: None,
            read_path: Cell::new(None),
            progress: Arc::new(Progress::default()),
        }
    }

    fn interval(&self, w: Which) -> Option<Duration> {
        match w {
            Which::Vcpu => self.vcpu.as_ref().map(|l| l.interval),
            Which::Memory => self.memory.as_ref().map(|l| l.interval),
        }
    }

    /// The shortest loop interval (8 s when none runs).
    fn shortest(&self) -> Duration {
        [self.interval(Which::Vcpu), self.interval(Which::Memory)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::from_secs(8))
    }

    /// The main loop. Returns an error only when the first connection
    /// cannot be made.
    pub fn run(&mut self, env: Env<'_>) -> Result<(), String> {
        let clock = env.clock;
        self.progress.begin(
            &format!("connecting to {}", self.uri),
            clock.monotonic(),
            self.shortest(),
        );
        let first = (env.connect)();
        self.progress.end();
        let mut conn = Some(first.map_err(|e| e.to_string())?);
        self.metrics.connected = true;
        // Reconnect attempts back off from 0.5 s, doubling, but never wait
        // longer than the shortest loop interval (nor 8 s), so a daemon that
        // is back is found within about one interval.
        let max_backoff = self
            .shortest()
            .clamp(Duration::from_secs(1), Duration::from_secs(8));
        let mut backoff = Duration::from_millis(500);
        let mut next_retry = clock.monotonic();
        let start = clock.monotonic();
        let mut next = [(Which::Vcpu, start), (Which::Memory, start)];
        loop {
            if (env.stop)() || self.done() {
                break;
            }
            if (env.take_reload)() {
                self.reload();
            }
            let now = clock.monotonic();
            if conn.is_none() && now >= next_retry {
                self.progress.begin(
                    &format!("reconnecting to {}", self.uri),
                    now,
                    self.shortest(),
                );
                let attempt = (env.connect)();
                self.progress.end();
                match attempt {
                    Ok(c) => {
                        self.log
                            .line("daemon", &format!("reconnected to {}", self.uri));
                        self.metrics.reconnects_total += 1;
                        self.metrics.connected = true;
                        self.reconnected();
                        conn = Some(c);
                        backoff = Duration::from_millis(500);
                    }
                    Err(e) => {
                        self.log.warn(
                            "daemon",
                            &format!(
                                "reconnect failed ({e}); retrying in {:.1}s",
                                backoff.as_secs_f64()
                            ),
                        );
                        next_retry = now + backoff;
                        backoff = (backoff * 2).min(max_backoff);
                    }
                }
            }
            if let Some(c) = conn.as_deref() {
                let mut lost = None;
                let due: Vec<Which> = next
                    .iter()
                    .filter(|(w, t)| self.interval(*w).is_some() && now >= *t)
                    .map(|(w, _)| *w)
                    .collect();
                if !due.is_empty() {
                    // A local check of the RPC client: no round trip.
                    match c.is_alive() {
                        Ok(true) => {}
                        Ok(false) => {
                            lost = Some(Failure::new(
                                ErrorKind::ConnectionLost,
                                format!("virConnectIsAlive({}): connection is closed", self.uri),
                            ))
                        }
                        Err(f) => lost = Some(f),
                    }
                }
                for w in due {
                    if lost.is_some() {
                        break;
                    }
                    lost = self.run_one(w, c, clock, env.stop);
                    let interval = self.interval(w).unwrap_or_default();
                    for (x, t) in next.iter_mut() {
                        if *x == w {
                            *t = advance(*t, interval, clock.monotonic());
                        }
                    }
                }
                if let Some(f) = lost {
                    self.log
                        .warn("daemon", &format!("connection lost ({f}); reconnecting"));
                    self.metrics.connected = false;
                    conn = None;
                    next_retry = clock.monotonic() + backoff;
                }
            }
            // Sleep until the next deadline, in short slices (signals);
            // without a connection, until the next attempt (a deadline
            // already past must not make this a busy loop).
            let wake = if conn.is_none() {
                next_retry
            } else {
                next.iter()
                    .filter(|(w, _)| self.interval(*w).is_some())
                    .map(|(_, t)| *t)
                    .min()
                    .unwrap_or(next_retry)
            };
            self.publish();
            while clock.monotonic() < wake && !(env.stop)() {
                let left = wake.saturating_sub(clock.monotonic());
                clock.sleep(left.min(Duration::from_millis(50)));
            }
        }
        self.log.line("daemon", "stopped");
        Ok(())
    }

    /// Runs one interval of loop `w` on `session`. Returns the failure when
    /// the connection was lost.
    fn run_one(
        &mut self,
        w: Which,
        session: &dyn Session,
        clock: &dyn Clock,
        stop: &dyn Fn() -> bool,
    ) -> Option<Failure> {
        let interval = self.interval(w)?;
        self.progress.begin(
            &format!("the {} interval", w.name()),
            clock.monotonic(),
            interval,
        );
        let mut src = session.source();
        let mut ctx = Ctx {
            log: &self.log,
            dry_run: self.dry_run,
            exclude: &self.exclude,
            clock,
            stop,
            metrics: &mut self.metrics,
            read_path: &self.read_path,
        };
        let result = match w {
            Which::Vcpu => self.vcpu.as_mut().map(|l| l.tick(&mut ctx, src.as_mut())),
            Which::Memory => self.memory.as_mut().map(|l| l.tick(&mut ctx, src.as_mut())),
        };
        drop(src);
        self.progress.end();
        self.publish();
        match result? {
            Ok(()) => None,
            // The daemon's own dispatcher also answers some refusals with
            // an RPC-origin error over a connection that stays up, which
            // code and origin cannot tell from a closed socket: the RPC
            // client's own state (no round trip) decides.
            Err(TickError::Lost(f)) if matches!(session.is_alive(), Ok(true)) => {
                self.log.warn(
                    w.name(),
                    &format!("interval abandoned: {f} (the connection is still alive)"),
                );
                None
            }
            Err(TickError::Lost(f)) => Some(f),
            Err(TickError::Abandoned(f)) => {
                self.log.warn(w.name(), &format!("interval abandoned: {f}"));
                None
            }
        }
    }

    /// After a reconnect: usage measured across the outage says nothing
    /// about now (guests may have been re-pinned meanwhile), and stats
    /// periods are set again on the new daemon's view.
    fn reconnected(&mut self) {
        if let Some(v) = self.vcpu.as_mut() {
            v.restart_history(&self.log, "reconnected");
        }
        if let Some(m) = self.memory.as_mut() {
            m.reconnected();
        }
    }

    /// Hands the current figures to the metrics thread.
    fn publish(&mut self) {
        let counts = virt::call_counts();
        self.metrics.libvirt_calls_total = counts.calls;
        self.metrics.libvirt_errors_total = counts.failures;
        self.metrics.libvirt_release_failures_total = virt::drop_failures();
        if let Some(shared) = &self.published {
            match shared.lock() {
                Ok(mut m) => *m = self.metrics.clone(),
                Err(poisoned) => *poisoned.into_inner() = self.metrics.clone(),
            }
        }
    }

    fn done(&self) -> bool {
        match self.iterations {
            None => false,
            Some(n) => {
                let v = self.vcpu.as_ref().map_or(true, |l| l.ticks >= n);
                let m = self.memory.as_ref().map_or(true, |l| l.ticks >= n);
                v && m
            }
        }
    }

    fn reload(&mut self) {
        let Some(reload) = self.reload.as_ref() else {
            self.log
                .line("daemon", "SIGHUP: no --config file, nothing to reload");
            return;
        };
        match reload() {
            Ok(r) => {
                if let Some(v) = self.vcpu.as_mut() {
                    v.set_config(r.vcpu);
                }
                if let Some(m) = self.memory.as_mut() {
                    m.set_config(r.memory);
                }
                self.exclude = r.exclude;
                self.log.line("daemon", "SIGHUP: configuration reloaded");
            }
            Err(e) => self.log.warn(
                "daemon",
                &format!("SIGHUP: keeping the last good configuration: {e}"),
            ),
        }
    }
}
