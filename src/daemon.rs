//! The control loops: read a snapshot → plan → apply → report.
//!
//! One process, one connection, one thread: the vCPU and memory loops are
//! deadlines on one timeline; between them the loop sleeps in short slices so
//! a signal stops it within ~100 ms and the metrics endpoint stays served.
//! If the connection drops, the current interval is abandoned (no
//! half-applied plan is retried) and the loop reconnects with backoff.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::log::Logger;
use crate::metrics::{DomainMetrics, Metrics, MetricsServer};
use crate::policy::memory::{Coordinator, DomainMem, HostMem, MemConfig};
use crate::policy::vcpu::{Scheduler, VcpuConfig};
use crate::sample::{self, monotonic_ns, Want};
use crate::signals;
use crate::virt::{self, Connection, CpuMap, Error};

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
    /// Stop after this many intervals of the first loop.
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

/// Why a tick ended early.
enum TickError {
    /// The connection is gone: reconnect.
    Lost(Error),
    /// Something else failed: log, keep going.
    Other(Error),
}

impl From<Error> for TickError {
    fn from(e: Error) -> Self {
        if e.is_connection_lost() {
            TickError::Lost(e)
        } else {
            TickError::Other(e)
        }
    }
}

/// The state that lives across reconnects.
struct State {
    opts: Options,
    scheduler: Option<Scheduler>,
    coordinator: Option<Coordinator>,
    /// Domains whose stats period we already set (UUIDs).
    stats_period_set: BTreeSet<String>,
    /// Domains we already warned about (UUID + what), to warn once.
    warned: BTreeSet<String>,
    metrics: Metrics,
    /// Where `metrics` is published for the metrics thread, if serving.
    published: Option<crate::metrics::Shared>,
    vcpu_ticks: u64,
    /// When the vCPU loop last sampled (its usage is measured since then).
    last_vcpu_sample: Option<Instant>,
    mem_ticks: u64,
}

fn excluded(patterns: &[String], name: &str) -> bool {
    patterns.iter().any(|p| crate::config::glob_match(p, name))
}

/// Runs until a stop signal, or `iterations` intervals. Returns an error
/// only when the first connection cannot be made.
pub fn run(opts: Options) -> Result<(), String> {
    let scheduler = opts.vcpu.as_ref().map(|(_, c)| Scheduler::new(c.clone()));
    let coordinator = opts
        .memory
        .as_ref()
        .map(|(_, c)| Coordinator::new(c.clone()));
    let mut st = State {
        scheduler,
        coordinator,
        stats_period_set: BTreeSet::new(),
        warned: BTreeSet::new(),
        metrics: Metrics {
            dry_run: opts.dry_run,
            ..Default::default()
        },
        published: None,
        vcpu_ticks: 0,
        last_vcpu_sample: None,
        mem_ticks: 0,
        opts,
    };
    if let Some(server) = st.opts.metrics.take() {
        let shared = crate::metrics::Shared::default();
        server.spawn(shared.clone())?;
        st.published = Some(shared);
    }
    let mut conn = Some(connect(&st.opts).map_err(|e| e.to_string())?);
    st.metrics.connected = true;
    // Reconnect attempts back off from 0.5 s, doubling, but never wait
    // longer than the shortest loop interval (nor 8 s), so a daemon that is
    // back is found within about one interval.
    let shortest = [st.interval(Loop::Vcpu), st.interval(Loop::Memory)]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(Duration::from_secs(8));
    let max_backoff = shortest.clamp(Duration::from_secs(1), Duration::from_secs(8));
    let mut backoff = Duration::from_millis(500);
    let mut next_retry = Instant::now();
    let start = Instant::now();
    let mut next_vcpu = start;
    let mut next_mem = start;
    loop {
        if signals::stop_requested() || st.done() {
            break;
        }
        if signals::take_reload() {
            st.reload();
        }
        let now = Instant::now();
        if conn.is_none() && now >= next_retry {
            match connect(&st.opts) {
                Ok(c) => {
                    st.opts
                        .log
                        .line("daemon", &format!("reconnected to {}", st.opts.uri));
                    st.metrics.reconnects_total += 1;
                    // Usage measured across the outage says nothing about
                    // now (guests may have been re-pinned meanwhile).
                    st.restart_vcpu_history("reconnected");
                    st.metrics.connected = true;
                    // Stats periods must be set again on the new daemon's view.
                    st.stats_period_set.clear();
                    conn = Some(c);
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    st.opts.log.warn(
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
        if let Some(c) = conn.as_ref() {
            let due = st.interval(Loop::Vcpu).is_some() && now >= next_vcpu
                || st.interval(Loop::Memory).is_some() && now >= next_mem;
            let mut lost = None;
            if due {
                // A local check of the RPC client: no round trip.
                match c.is_alive() {
                    Ok(true) => {}
                    Ok(false) => {
                        lost = Some(Error::local_public(
                            "virConnectIsAlive",
                            &st.opts.uri,
                            "connection is closed",
                        ))
                    }
                    Err(e) => lost = Some(e),
                }
            }
            if lost.is_none() {
                lost = st.run_if_due(Loop::Vcpu, c, &mut next_vcpu, now);
            }
            if lost.is_none() {
                lost = st.run_if_due(Loop::Memory, c, &mut next_mem, now);
            }
            if let Some(e) = lost {
                st.opts
                    .log
                    .warn("daemon", &format!("connection lost ({e}); reconnecting"));
                st.metrics.connected = false;
                conn = None;
                next_retry = Instant::now() + backoff;
            }
        }
        // Sleep until the next deadline, in short slices (signals).
        let mut wake = [(Loop::Vcpu, next_vcpu), (Loop::Memory, next_mem)]
            .into_iter()
            .filter(|(l, _)| st.interval(*l).is_some())
            .map(|(_, t)| t)
            .min()
            .unwrap_or(next_retry);
        if conn.is_none() {
            wake = wake.min(next_retry);
        }
        st.publish();
        while Instant::now() < wake && !signals::stop_requested() {
            let left = wake.saturating_duration_since(Instant::now());
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
    st.opts.log.line("daemon", "stopped");
    Ok(())
}

/// Next deadline after `prev`: keeps the cadence, but never schedules in the
/// past (a slow interval skips ahead instead of bursting).
fn advance(prev: Instant, interval: Duration, now: Instant) -> Instant {
    let next = prev + interval;
    if next <= now {
        now + interval
    } else {
        next
    }
}

fn connect(opts: &Options) -> Result<Connection, Error> {
    if opts.dry_run {
        Connection::open_read_only(&opts.uri)
    } else {
        Connection::open(&opts.uri)
    }
}

/// The two control loops sharing the timeline.
#[derive(Debug, Clone, Copy)]
enum Loop {
    Vcpu,
    Memory,
}

impl State {
    /// The loop's interval, if this process runs it.
    fn interval(&self, l: Loop) -> Option<Duration> {
        match l {
            Loop::Vcpu => self.opts.vcpu.as_ref().map(|(i, _)| *i),
            Loop::Memory => self.opts.memory.as_ref().map(|(i, _)| *i),
        }
    }

    /// Runs loop `l` if it is configured and its deadline `next` has come,
    /// then sets the next deadline, measured after the tick: an interval
    /// that stalled in libvirt is followed by a full interval, never by a
    /// burst of catch-up intervals with tiny time deltas. Returns the error
    /// when the connection was lost.
    fn run_if_due(
        &mut self,
        l: Loop,
        conn: &Connection,
        next: &mut Instant,
        now: Instant,
    ) -> Option<Error> {
        let interval = self.interval(l)?;
        if now < *next {
            return None;
        }
        let (name, result) = match l {
            Loop::Vcpu => ("vcpu", self.vcpu_tick(conn)),
            Loop::Memory => ("memory", self.mem_tick(conn)),
        };
        self.publish();
        *next = advance(*next, interval, Instant::now());
        result.err().and_then(|e| self.tick_failed(name, e))
    }

    /// Hands the current figures to the metrics thread.
    fn publish(&mut self) {
        let counts = virt::call_counts();
        self.metrics.libvirt_calls_total = counts.calls;
        self.metrics.libvirt_errors_total = counts.failures;
        if let Some(shared) = &self.published {
            match shared.lock() {
                Ok(mut m) => *m = self.metrics.clone(),
                Err(poisoned) => *poisoned.into_inner() = self.metrics.clone(),
            }
        }
    }

    fn done(&self) -> bool {
        match self.opts.iterations {
            None => false,
            Some(n) => {
                let v = self.opts.vcpu.is_none() || self.vcpu_ticks >= n;
                let m = self.opts.memory.is_none() || self.mem_ticks >= n;
                v && m
            }
        }
    }

    fn tick_failed(&mut self, lp: &str, e: TickError) -> Option<Error> {
        match e {
            TickError::Lost(e) => Some(e),
            TickError::Other(e) => {
                self.opts.log.warn(lp, &format!("interval abandoned: {e}"));
                None
            }
        }
    }

    fn warn_once(&mut self, key: String, lp: &str, text: &str) {
        if self.warned.insert(key) {
            self.opts.log.warn(lp, text);
        }
    }

    fn reload(&mut self) {
        let Some(reload) = self.opts.reload.as_ref() else {
            self.opts
                .log
                .line("daemon", "SIGHUP: no --config file, nothing to reload");
            return;
        };
        match reload() {
            Ok(r) => {
                if let Some((_, c)) = self.opts.vcpu.as_mut() {
                    *c = r.vcpu.clone();
                    if let Some(s) = self.scheduler.as_mut() {
                        s.set_config(r.vcpu);
                    }
                }
                if let Some((_, c)) = self.opts.memory.as_mut() {
                    *c = r.memory.clone();
                    if let Some(co) = self.coordinator.as_mut() {
                        co.set_config(r.memory);
                    }
                }
                self.opts.exclude = r.exclude;
                self.opts
                    .log
                    .line("daemon", "SIGHUP: configuration reloaded");
            }
            Err(e) => self.opts.log.warn(
                "daemon",
                &format!("SIGHUP: keeping the last good configuration: {e}"),
            ),
        }
    }

    /// Reads the running domains for loop `lp`: domains that vanished
    /// between two calls are dropped quietly, other per-domain failures are
    /// logged and skipped, a lost connection ends the interval, and excluded
    /// domains are left out.
    fn read<'c>(
        &self,
        lp: &str,
        conn: &'c Connection,
        host_cpus: u32,
        want: Want,
    ) -> Result<Vec<sample::DomainRead<'c>>, TickError> {
        let (doms, skipped) = sample::read_domains(conn, host_cpus, want)?;
        for s in skipped {
            if s.error.is_connection_lost() {
                return Err(TickError::Lost(s.error));
            }
            if !s.error.is_no_domain() {
                self.opts
                    .log
                    .warn(lp, &format!("skipped {}: {}", s.name, s.error));
            }
        }
        Ok(doms
            .into_iter()
            .filter(|d| !excluded(&self.opts.exclude, d.domain.name()))
            .collect())
    }

    /// Forgets the vCPU usage history: the next interval only places
    /// unpinned vCPUs, the one after it balances on fresh usage.
    fn restart_vcpu_history(&mut self, why: &str) {
        if let (Some(s), Some((_, cfg))) = (self.scheduler.as_mut(), self.opts.vcpu.as_ref()) {
            *s = Scheduler::new(cfg.clone());
            self.last_vcpu_sample = None;
            self.opts
                .log
                .line("vcpu", &format!("{why}: usage history restarted"));
        }
    }

    fn vcpu_tick(&mut self, conn: &Connection) -> Result<(), TickError> {
        let t0 = Instant::now();
        self.vcpu_ticks += 1;
        // Usage is Δ CPU time / Δ wall time since the previous sample: a
        // window far shorter than the interval is noise, one far longer
        // (libvirt stalled) averages over conditions that may be gone.
        let interval = self.interval(Loop::Vcpu).unwrap_or_default();
        if let Some(prev) = self.last_vcpu_sample {
            let gap = t0.saturating_duration_since(prev);
            if gap < interval / 2 {
                self.opts.log.detail(
                    "vcpu",
                    &format!(
                        "only {:.2}s since the last sample: interval skipped",
                        gap.as_secs_f64()
                    ),
                );
                return Ok(());
            }
            if gap > interval * 5 / 2 {
                self.restart_vcpu_history(&format!(
                    "{:.1}s since the last sample",
                    gap.as_secs_f64()
                ));
            }
        }
        self.last_vcpu_sample = Some(t0);
        let host = sample::read_host_cpus(conn)?;
        let want = Want {
            vcpus: true,
            memory: false,
        };
        let doms = self.read("vcpu", conn, host.present, want)?;
        let snap = sample::vcpu_snapshot(&doms, host.online.cpus());
        let Some(scheduler) = self.scheduler.as_mut() else {
            return Ok(());
        };
        let plan = scheduler.plan(&snap);
        let verb = if self.opts.dry_run {
            "would pin"
        } else {
            "pin"
        };
        let mut applied = 0usize;
        for pin in &plan.pins {
            let Some(d) = doms.iter().find(|d| d.domain.uuid() == pin.domain) else {
                continue;
            };
            let map = match CpuMap::from_cpus(host.present, &[pin.pcpu]) {
                Ok(m) => m,
                Err(e) => {
                    self.opts.log.warn("vcpu", &format!("{}: {e}", pin));
                    continue;
                }
            };
            let event = self
                .opts
                .log
                .obj("vcpu")
                .str("event", "pin")
                .str("domain", &pin.name)
                .uint("vcpu", u64::from(pin.vcpu))
                .opt_uint("from", pin.from.map(u64::from))
                .uint("to", u64::from(pin.pcpu))
                .str("reason", &format!("{:?}", pin.kind).to_lowercase())
                .bool("dry_run", self.opts.dry_run);
            if self.opts.dry_run {
                self.opts.log.event("vcpu", event, &format!("{verb} {pin}"));
                continue;
            }
            match d.domain.pin_vcpu(pin.vcpu, &map) {
                Ok(()) => {
                    applied += 1;
                    self.metrics.pins_total += 1;
                    if self.opts.log.verbose
                        || matches!(self.opts.log.format, crate::cli::LogFormat::Json)
                    {
                        self.opts.log.event("vcpu", event, &format!("{verb} {pin}"));
                    }
                }
                Err(e) if e.is_no_domain() => {}
                Err(e) if e.is_connection_lost() => return Err(TickError::Lost(e)),
                Err(e) => {
                    self.metrics.pin_failures_total += 1;
                    self.opts.log.warn("vcpu", &format!("{pin}: {e}"));
                }
            }
        }
        let pins = if self.opts.dry_run {
            format!("{} pin(s) planned, none applied (dry run)", plan.pins.len())
        } else {
            format!("{applied} applied")
        };
        self.opts.log.event(
            "vcpu",
            self.opts
                .log
                .obj("vcpu")
                .str("event", "interval")
                .num("stddev_before", plan.stddev_before)
                .num("stddev_after", plan.stddev_after)
                .uint("pins_planned", plan.pins.len() as u64)
                .uint("pins_applied", applied as u64)
                .str("decision", &plan.decision.to_string())
                .raw("loads", &loads_json(&plan.loads_before)),
            &format!("{plan} | {pins}"),
        );
        self.metrics.pcpu_load = plan.loads_before.clone();
        self.metrics.load_stddev = Some(plan.stddev_before);
        self.metrics.vcpu.intervals_total += 1;
        self.metrics.vcpu.last_duration_seconds = Some(t0.elapsed().as_secs_f64());
        Ok(())
    }

    fn mem_tick(&mut self, conn: &Connection) -> Result<(), TickError> {
        let t0 = Instant::now();
        self.mem_ticks += 1;
        let period = self
            .interval(Loop::Memory)
            .map_or(2, |i| i.as_secs_f64().round().clamp(1.0, 10.0) as u32);
        let doms = self.read(
            "memory",
            conn,
            1,
            Want {
                vcpus: false,
                memory: true,
            },
        )?;
        // Ask each new guest for fresh balloon stats (once per domain).
        for d in &doms {
            if self.stats_period_set.contains(d.domain.uuid()) {
                continue;
            }
            if self.opts.dry_run {
                self.stats_period_set.insert(d.domain.uuid().to_string());
                continue;
            }
            match d.domain.set_memory_stats_period(period) {
                Ok(()) => {
                    self.stats_period_set.insert(d.domain.uuid().to_string());
                }
                Err(e) if e.is_connection_lost() => return Err(TickError::Lost(e)),
                Err(e) => {
                    self.stats_period_set.insert(d.domain.uuid().to_string());
                    self.warn_once(
                        format!("{}:period", d.domain.uuid()),
                        "memory",
                        &format!("{}: cannot set the balloon stats period ({e}); it is never shrunk while its stats are missing", d.domain.name()),
                    );
                }
            }
        }
        let host = sample::read_host_free(conn)?;
        let inputs: Vec<DomainMem> = doms.iter().map(sample::domain_mem).collect();
        let Some(coord) = self.coordinator.as_mut() else {
            return Ok(());
        };
        let now_ms = monotonic_ns() / 1_000_000;
        let plan = coord.plan(now_ms, &HostMem { free_kib: host.kib }, &inputs);
        for (name, note) in &plan.notes {
            self.opts.log.detail("memory", &format!("{name}: {note}"));
        }
        let mut applied = Vec::new();
        for a in &plan.actions {
            let event = self
                .opts
                .log
                .obj("memory")
                .str("event", "setmem")
                .str("domain", &a.name)
                .uint("from_kib", a.from_kib)
                .uint("to_kib", a.to_kib)
                .str("reason", &a.reason.to_string())
                .bool("dry_run", self.opts.dry_run);
            if self.opts.dry_run {
                self.opts
                    .log
                    .event("memory", event, &format!("would set {a}"));
                continue;
            }
            let Some(d) = doms.iter().find(|d| d.domain.uuid() == a.uuid) else {
                continue;
            };
            match d.domain.set_memory(a.to_kib) {
                Ok(()) => {
                    applied.push(a.clone());
                    if a.is_grow() {
                        self.metrics.memory_granted_kib_total += a.to_kib - a.from_kib;
                    } else {
                        self.metrics.memory_released_kib_total += a.from_kib - a.to_kib;
                    }
                    if self.opts.log.verbose
                        || matches!(self.opts.log.format, crate::cli::LogFormat::Json)
                    {
                        self.opts.log.event("memory", event, &format!("set {a}"));
                    }
                }
                Err(e) if e.is_connection_lost() => return Err(TickError::Lost(e)),
                Err(e) => {
                    if !e.is_no_domain() {
                        self.opts.log.warn("memory", &format!("{}: {e}", a.name));
                    }
                }
            }
        }
        coord.commit(now_ms, &applied);
        self.opts.log.event(
            "memory",
            self.opts
                .log
                .obj("memory")
                .str("event", "interval")
                .uint("host_free_kib", host.kib)
                .uint("actions", plan.actions.len() as u64)
                .uint("granted_kib", plan.granted_kib())
                .uint("released_kib", plan.released_kib()),
            &format!(
                "{plan}{}",
                if self.opts.dry_run && !plan.actions.is_empty() {
                    " (dry run: nothing applied)"
                } else {
                    ""
                }
            ),
        );
        self.metrics.domains = plan
            .domains
            .iter()
            .map(|l| {
                (
                    l.name.clone(),
                    DomainMetrics {
                        actual_kib: l.actual_kib,
                        free_kib: l.free_kib,
                    },
                )
            })
            .collect();
        self.metrics.memory.intervals_total += 1;
        self.metrics.memory.last_duration_seconds = Some(t0.elapsed().as_secs_f64());
        Ok(())
    }
}

fn loads_json(loads: &[(u32, f64)]) -> String {
    let items: Vec<String> = loads
        .iter()
        .map(|(c, l)| format!("{{\"pcpu\":{c},\"load\":{l:.2}}}"))
        .collect();
    format!("[{}]", items.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_keeps_cadence_and_never_bursts() {
        let t0 = Instant::now();
        let i = Duration::from_secs(4);
        // On time: the next deadline is one interval after the previous one.
        assert_eq!(advance(t0, i, t0 + Duration::from_millis(100)), t0 + i);
        // A tick that stalled 27 s: a full interval from now, not t0 + 4 s.
        let late = t0 + Duration::from_secs(27);
        assert_eq!(advance(t0, i, late), late + i);
    }
}
