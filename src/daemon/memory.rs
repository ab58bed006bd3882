//! The memory loop: read → plan → apply → commit, once per memory interval.
//!
//! - **read**: every running, not excluded domain's balloon figures, and
//!   the host's free memory; each running instance (UUID + domain ID, so a
//!   restarted guest counts as new) is asked once for balloon stats every
//!   interval (`virDomainSetMemoryStatsPeriod`). A refused request is asked
//!   again after 1, 2, 4, … and then every [`PERIOD_RETRY_MAX`] intervals.
//!   The refusals that pass (a job lock held for a moment, a monitor
//!   error) and a guest without a balloon device come as driver errors of
//!   several codes (the QEMU driver reports the missing device as an
//!   internal error, the code it gives many passing failures too), so none
//!   is taken as final; one call every 64 intervals is what a guest that
//!   has no balloon costs.
//! - **plan**: [`Coordinator::plan`], which records nothing.
//! - **apply**: the releases, then only the grants that the releases which
//!   took effect still fund ([`MemPlan::grants_funded`]), each on the handle
//!   read in this interval; a stop request is honoured between actions
//!   (each is one libvirt call).
//! - **commit**: [`Coordinator::commit`] with exactly what was applied.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::clock::millis;
use super::source::{DomId, Failure, Source};
use super::{Ctx, Outcome, TickError};
use crate::metrics::DomainMetrics;
#[cfg(doc)]
use crate::policy::memory::MemPlan;
use crate::policy::memory::{Coordinator, HostMem, MemConfig, SetMemory};
use crate::sample::Want;
use crate::virt::ErrorKind;

/// What one balloon change came to.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// It took effect (or, in a dry run, would have).
    Took,
    /// It failed; the connection is fine.
    Failed,
    /// The connection is gone.
    Lost(Failure),
}

/// One running instance of a domain: its UUID and hypervisor ID.
type Instance = (String, Option<u32>);

/// Where a running instance's balloon stats period stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    /// Set (or, in a dry run, it would have been).
    Set,
    /// The last request failed: ask again at interval `at`, and if that
    /// fails too, wait twice `wait` intervals (at most
    /// [`PERIOD_RETRY_MAX`]).
    Retry { at: u64, wait: u64 },
}

/// The longest wait, in intervals, between two requests of a stats period
/// that keep failing.
pub const PERIOD_RETRY_MAX: u64 = 64;

/// The memory loop's state across intervals.
#[derive(Debug)]
pub struct MemLoop {
    /// Its interval.
    pub interval: Duration,
    coordinator: Coordinator,
    /// Running instances whose stats period was asked for, and how that
    /// went. The period lives in the QEMU process, so a guest restarted
    /// under the same UUID (a new instance) needs it again.
    periods: BTreeMap<Instance, Period>,
    /// Warnings already given (instance + what), to warn once per instance.
    warned: BTreeSet<(Instance, &'static str)>,
    /// Intervals started.
    pub ticks: u64,
}

impl MemLoop {
    /// A loop with no history.
    pub fn new(interval: Duration, cfg: MemConfig) -> Self {
        MemLoop {
            interval,
            coordinator: Coordinator::new(cfg),
            periods: BTreeMap::new(),
            warned: BTreeSet::new(),
            ticks: 0,
        }
    }

    /// New settings (SIGHUP), keeping the history of changes in flight.
    pub fn set_config(&mut self, cfg: MemConfig) {
        self.coordinator.set_config(cfg);
    }

    /// A new connection: stats periods are set again on its view.
    pub fn reconnected(&mut self) {
        self.periods.clear();
    }

    /// Applies one balloon change on the handle read this interval;
    /// `applied` gets it if it was.
    fn apply(
        &self,
        ctx: &mut Ctx<'_>,
        src: &mut dyn Source,
        index: &BTreeMap<&str, DomId>,
        a: &SetMemory,
        applied: &mut Vec<SetMemory>,
    ) -> Step {
        let Some(&d) = index.get(a.uuid.as_str()) else {
            return Step::Failed;
        };
        let event = ctx
            .log
            .obj("memory")
            .str("event", "setmem")
            .str("domain", &a.name)
            .uint("from_kib", a.from_kib)
            .uint("to_kib", a.to_kib)
            .str("reason", &a.reason.to_string())
            .bool("dry_run", ctx.dry_run);
        match ctx.apply(|| src.set_memory(d, a.to_kib)) {
            Outcome::DryRun => {
                ctx.log.event("memory", event, &format!("would set {a}"));
                Step::Took
            }
            Outcome::Applied => {
                if a.is_grow() {
                    ctx.metrics.memory_granted_kib_total += a.to_kib - a.from_kib;
                } else {
                    ctx.metrics.memory_released_kib_total += a.from_kib - a.to_kib;
                }
                if ctx.log_actions() {
                    ctx.log.event("memory", event, &format!("set {a}"));
                }
                applied.push(a.clone());
                Step::Took
            }
            Outcome::Failed(f) if f.kind == ErrorKind::ConnectionLost => Step::Lost(f),
            Outcome::Failed(f) => {
                if f.kind != ErrorKind::NoDomain {
                    ctx.log.warn("memory", &format!("{}: {f}", a.name));
                }
                Step::Failed
            }
        }
    }

    /// How many warnings are remembered (to warn once each).
    pub fn warnings(&self) -> usize {
        self.warned.len()
    }

    /// The stats period asked of guests: the interval, 1–10 s.
    fn period_s(&self) -> u32 {
        self.interval.as_secs_f64().round().clamp(1.0, 10.0) as u32
    }

    /// One interval.
    pub fn tick(&mut self, ctx: &mut Ctx<'_>, src: &mut dyn Source) -> Result<(), TickError> {
        let t0 = ctx.clock.monotonic();
        self.ticks += 1;

        // Read.
        let want = Want {
            vcpus: false,
            memory: true,
        };
        let sample = ctx.read("memory", src, want, 1)?;
        // Instances seen now: what is remembered about any other is dropped.
        let seen: BTreeSet<Instance> = sample
            .domains
            .iter()
            .map(|d| (d.uuid.clone(), d.id))
            .collect();
        self.periods.retain(|i, _| seen.contains(i));
        self.warned.retain(|(i, _)| seen.contains(i));
        let period = self.period_s();
        for d in &sample.domains {
            let instance = (d.uuid.clone(), d.id);
            let wait = match self.periods.get(&instance) {
                Some(Period::Set) => continue,
                Some(&Period::Retry { at, .. }) if self.ticks < at => continue,
                Some(&Period::Retry { wait, .. }) => (wait * 2).min(PERIOD_RETRY_MAX),
                None => 1,
            };
            match ctx.apply(|| src.set_stats_period(d.handle, period)) {
                Outcome::Applied | Outcome::DryRun => {
                    self.periods.insert(instance, Period::Set);
                }
                Outcome::Failed(f) if f.kind == ErrorKind::ConnectionLost => {
                    return Err(TickError::Lost(f))
                }
                Outcome::Failed(f) => {
                    let at = self.ticks + wait;
                    self.periods
                        .insert(instance.clone(), Period::Retry { at, wait });
                    if self.warned.insert((instance, "period")) {
                        ctx.log.warn(
                            "memory",
                            &format!(
                                "{}: cannot set the balloon stats period ({f}); asking again later, and never shrinking it while its stats are missing",
                                d.name
                            ),
                        );
                    }
                }
            }
        }
        let host_free_kib = src.host_free_kib()?;

        // Plan.
        let now_ms = millis(ctx.clock.monotonic());
        let plan = self.coordinator.plan(
            now_ms,
            &HostMem {
                free_kib: host_free_kib,
            },
            &sample.memory,
        );
        for (name, note) in &plan.notes {
            ctx.log.detail("memory", &format!("{name}: {note}"));
        }

        // Apply: the releases, then only the grants that what was really
        // released still funds.
        let index = sample.index();
        let mut applied: Vec<SetMemory> = Vec::new();
        let mut released_kib = 0u64;
        let mut lost = None;
        let mut stopped = false;
        for a in &plan.releases {
            if (ctx.stop)() {
                stopped = true;
                break;
            }
            match self.apply(ctx, src, &index, a, &mut applied) {
                Step::Took => {
                    released_kib = released_kib.saturating_add(a.from_kib - a.to_kib);
                }
                Step::Failed => {}
                Step::Lost(f) => {
                    lost = Some(f);
                    break;
                }
            }
        }
        let grants = if lost.is_none() && !stopped {
            plan.grants_funded(released_kib)
        } else {
            Vec::new()
        };
        if lost.is_none() && !stopped && grants.len() < plan.grants.len() {
            ctx.log.warn(
                "memory",
                &format!(
                    "{} of {} grant(s) skipped: {released_kib} KiB of the {} KiB planned releases took effect",
                    plan.grants.len() - grants.len(),
                    plan.grants.len(),
                    plan.released_kib()
                ),
            );
        }
        for a in &grants {
            if (ctx.stop)() {
                stopped = true;
                break;
            }
            if let Step::Lost(f) = self.apply(ctx, src, &index, a, &mut applied) {
                lost = Some(f);
                break;
            }
        }

        // Commit: what was applied is history, even in an interval cut short.
        self.coordinator.commit(now_ms, &applied);
        if let Some(f) = lost {
            return Err(TickError::Lost(f));
        }
        let planned = plan.releases.len() + plan.grants.len();
        ctx.log.event(
            "memory",
            ctx.log
                .obj("memory")
                .str("event", "interval")
                .uint("host_free_kib", host_free_kib)
                .uint("actions", planned as u64)
                .uint("applied", applied.len() as u64)
                .uint("granted_kib", plan.granted_kib())
                .uint("released_kib", plan.released_kib()),
            &format!(
                "{plan}{}",
                if ctx.dry_run && planned > 0 {
                    " (dry run: nothing applied)"
                } else if stopped {
                    " (stop requested: the rest left undone)"
                } else {
                    ""
                }
            ),
        );
        ctx.metrics.domains = plan
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
        ctx.metrics.memory.intervals_total += 1;
        ctx.metrics.memory.last_duration_seconds =
            Some(ctx.clock.monotonic().saturating_sub(t0).as_secs_f64());
        ctx.metrics.memory.last_completed_unix_seconds = Some(ctx.clock.wall_unix_seconds());
        Ok(())
    }
}
