//! The vCPU loop: read → plan → apply, once per vCPU interval.
//!
//! - **read**: host CPUs, then every running, not excluded domain's vCPUs
//!   (time, affinity, current pCPU), stamped when the times were read (the
//!   bulk call's return; the daemon's clock for sources without a stamp).
//!   When some vCPU has no earlier reading (the first interval, a new
//!   guest), a second read [`presample_window`] later gives it a measured usage,
//!   so a guest busy on one vCPU is not placed by count.
//! - **plan**: [`Scheduler::plan`] on that snapshot.
//! - **apply**: each pin on the handle read in this interval; a swap's pins
//!   form one unit: applied whole, or, when one of them is refused, the rest
//!   is skipped and what was applied is put back (a connection lost half
//!   way leaves it to the next interval); a stop request is honoured
//!   between units.
//! - **commit**: the figures go to the metrics; the scheduler's usage
//!   history needs no commit, as the next read shows the affinities that
//!   took effect.
//!
//! Usage is Δ CPU time / Δ wall time since the previous sample, so an
//! interval that comes far too early is skipped, and one after a long gap
//! restarts the history.

use std::collections::BTreeMap;
use std::time::Duration;

use super::clock::nanos;
use super::source::{DomId, Failure, Sample, Source};
use super::{Ctx, Outcome, TickError};
use crate::log::Logger;
use crate::policy::vcpu::{Pin, PinKind, Scheduler, Snapshot, VcpuConfig};
use crate::sample::Want;
use crate::virt::{CpuMap, ErrorKind};

/// The window of the second read in an interval whose vCPUs include some
/// with no earlier reading: 1 s, so that vCPUs contending for saturated
/// pCPUs read closer to their share. Over 0.5 s, two busy and two light
/// guests floating over two saturated pCPUs were placed one busy guest on
/// one pCPU and the other with both light ones in 3 of 7 real runs; over
/// 1 s in 1 of 5. What is left is the additive model's limit: a busy vCPU
/// that shared its pCPU reads low, and usage alone cannot tell. At most
/// half the interval: intervals are timed from their start, before this
/// read, so the next reading spans the rest of the interval (about half
/// of it or more, less what the interval spent before the first read),
/// which the history takes as a whole interval.
pub fn presample_window(interval: Duration) -> Duration {
    Duration::from_secs(1).min(interval / 2)
}

/// The vCPU policy's input from one read: stamped when the times were read
/// (the bulk call's return), or now when the source has no such stamp.
fn snapshot(ctx: &Ctx<'_>, sample: &Sample, online: &[u32]) -> Snapshot {
    Snapshot {
        monotonic_ns: nanos(
            sample
                .vcpus_read_at
                .unwrap_or_else(|| ctx.clock.monotonic()),
        ),
        pcpus: online.to_vec(),
        vcpus: sample.vcpus.clone(),
    }
}

/// The vCPU loop's state across intervals.
#[derive(Debug)]
pub struct VcpuLoop {
    /// Its interval.
    pub interval: Duration,
    cfg: VcpuConfig,
    scheduler: Scheduler,
    /// When the loop last sampled (monotonic).
    last_sample: Option<Duration>,
    /// Intervals started.
    pub ticks: u64,
}

impl VcpuLoop {
    /// A loop with no history.
    pub fn new(interval: Duration, cfg: VcpuConfig) -> Self {
        VcpuLoop {
            interval,
            scheduler: Scheduler::new(cfg.clone()),
            cfg,
            last_sample: None,
            ticks: 0,
        }
    }

    /// New settings (SIGHUP), keeping the usage history.
    pub fn set_config(&mut self, cfg: VcpuConfig) {
        self.scheduler.set_config(cfg.clone());
        self.cfg = cfg;
    }

    /// Forgets the usage history: the next interval only places unpinned
    /// vCPUs, the one after it balances on fresh usage.
    pub fn restart_history(&mut self, log: &Logger, why: &str) {
        self.scheduler = Scheduler::new(self.cfg.clone());
        self.last_sample = None;
        log.line("vcpu", &format!("{why}: usage history restarted"));
    }

    /// One interval.
    ///
    /// When some vCPU has no earlier reading, the interval reads twice,
    /// [`presample_window`] apart, so its first placement uses measured usage.
    pub fn tick(&mut self, ctx: &mut Ctx<'_>, src: &mut dyn Source) -> Result<(), TickError> {
        let t0 = ctx.clock.monotonic();
        self.ticks += 1;
        // A window far shorter than the interval is noise, one far longer
        // (libvirt stalled) averages over conditions that may be gone.
        if let Some(prev) = self.last_sample {
            let gap = t0.saturating_sub(prev);
            if gap < self.interval / 2 {
                ctx.log.detail(
                    "vcpu",
                    &format!(
                        "only {:.2}s since the last sample: interval skipped",
                        gap.as_secs_f64()
                    ),
                );
                return Ok(());
            }
            if gap > self.interval * 5 / 2 {
                self.restart_history(
                    ctx.log,
                    &format!("{:.1}s since the last sample", gap.as_secs_f64()),
                );
            }
        }
        self.last_sample = Some(t0);

        // Read.
        let host = src.host_cpus()?;
        let want = Want {
            vcpus: true,
            memory: false,
        };
        let mut sample = ctx.read("vcpu", src, want, host.present)?;
        let mut snap = snapshot(ctx, &sample, &host.online);
        // vCPUs with no earlier reading (first interval, a new guest) would
        // be placed by count: one short second read gives them a usage.
        if self.scheduler.wants_presample(&snap) && !(ctx.stop)() {
            self.scheduler.observe(&snap);
            ctx.clock.sleep(presample_window(self.interval));
            sample = ctx.read("vcpu", src, want, host.present)?;
            snap = snapshot(ctx, &sample, &host.online);
        }

        // Plan.
        let plan = self.scheduler.plan(&snap);

        // Apply, unit by unit; a stop request is honoured between units.
        let index = sample.index();
        let mut applied = 0usize;
        let mut stopped = false;
        for unit in units(&plan.pins) {
            if (ctx.stop)() {
                stopped = true;
                break;
            }
            let mut done: Vec<&Pin<'_>> = Vec::new();
            for pin in unit {
                match apply_pin(ctx, src, &index, host.present, pin) {
                    Step::Took => {
                        applied += 1;
                        done.push(pin);
                    }
                    // Half a swap stacks two vCPUs on one pCPU: the rest
                    // is not applied, and what was is put back.
                    Step::Failed => {
                        applied -= undo(ctx, src, &index, host.present, &done);
                        break;
                    }
                    Step::Lost(f) => return Err(TickError::Lost(f)),
                }
            }
        }

        // Commit: report and publish.
        let pins = if ctx.dry_run {
            format!("{} pin(s) planned, none applied (dry run)", plan.pins.len())
        } else if stopped {
            format!("{applied} applied, the rest left undone (stop requested)")
        } else {
            format!("{applied} applied")
        };
        ctx.log.event(
            "vcpu",
            ctx.log
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
        ctx.metrics.pcpu_load = plan.loads_before.clone();
        ctx.metrics.load_stddev = Some(plan.stddev_before);
        ctx.metrics.vcpu.intervals_total += 1;
        ctx.metrics.vcpu.last_duration_seconds =
            Some(ctx.clock.monotonic().saturating_sub(t0).as_secs_f64());
        ctx.metrics.vcpu.last_completed_unix_seconds = Some(ctx.clock.wall_unix_seconds());
        Ok(())
    }
}

/// What one pin came to.
enum Step {
    /// Applied (or, in a dry run, would have been).
    Took,
    /// Not applied; the connection is fine.
    Failed,
    /// The connection is gone.
    Lost(Failure),
}

/// Puts the pins of a unit that was not applied whole back where they were
/// (each one's `from`); returns how many were put back. A pin with no
/// single earlier pCPU cannot be put back and stays (it was a placement).
fn undo(
    ctx: &mut Ctx<'_>,
    src: &mut dyn Source,
    index: &BTreeMap<&str, DomId>,
    present: u32,
    done: &[&Pin<'_>],
) -> usize {
    let mut back = 0;
    for pin in done.iter().rev() {
        let Some(from) = pin.from else { continue };
        let reverse = Pin {
            pcpu: from,
            from: Some(pin.pcpu),
            ..**pin
        };
        match apply_pin(ctx, src, index, present, &reverse) {
            Step::Took => back += 1,
            Step::Failed | Step::Lost(_) => ctx.log.warn(
                "vcpu",
                &format!("{pin}: could not be put back after the rest of its swap failed"),
            ),
        }
    }
    back
}

/// Applies one pin on the handle read this interval.
fn apply_pin(
    ctx: &mut Ctx<'_>,
    src: &mut dyn Source,
    index: &BTreeMap<&str, DomId>,
    present: u32,
    pin: &Pin<'_>,
) -> Step {
    let Some(&d) = index.get(pin.domain) else {
        return Step::Failed;
    };
    let map = match CpuMap::from_cpus(present, &[pin.pcpu]) {
        Ok(m) => m,
        Err(e) => {
            ctx.log.warn("vcpu", &format!("{pin}: {e}"));
            return Step::Failed;
        }
    };
    let event = ctx
        .log
        .obj("vcpu")
        .str("event", "pin")
        .str("domain", pin.name)
        .uint("vcpu", u64::from(pin.vcpu))
        .opt_uint("from", pin.from.map(u64::from))
        .uint("to", u64::from(pin.pcpu))
        .str("reason", &format!("{:?}", pin.kind).to_lowercase())
        .bool("dry_run", ctx.dry_run);
    match ctx.apply(|| src.pin(d, pin.vcpu, &map)) {
        Outcome::DryRun => {
            ctx.log.event("vcpu", event, &format!("would pin {pin}"));
            Step::Took
        }
        Outcome::Applied => {
            ctx.metrics.pins_total += 1;
            if ctx.log_actions() {
                ctx.log.event("vcpu", event, &format!("pin {pin}"));
            }
            Step::Took
        }
        Outcome::Failed(f) => match f.kind {
            ErrorKind::ConnectionLost => Step::Lost(f),
            ErrorKind::NoDomain => Step::Failed,
            _ => {
                ctx.metrics.pin_failures_total += 1;
                ctx.log.warn("vcpu", &format!("{pin}: {f}"));
                Step::Failed
            }
        },
    }
}

/// The pins in the units they are applied in: the pins of swaps that
/// exchange vCPUs between the same pCPUs (connected through the pCPUs they
/// leave and reach) form one unit; every other pin is a unit alone. Units
/// keep the plan's order of their first pin.
pub fn units<'p, 'a>(pins: &'p [Pin<'a>]) -> Vec<Vec<&'p Pin<'a>>> {
    let mut out: Vec<(Vec<u32>, Vec<&Pin<'a>>)> = Vec::new();
    for pin in pins {
        if pin.kind != PinKind::Swap {
            out.push((Vec::new(), vec![pin]));
            continue;
        }
        let cpus: Vec<u32> = pin.from.into_iter().chain([pin.pcpu]).collect();
        let mut joined: Option<usize> = None;
        let mut i = 0;
        while i < out.len() {
            let touches = out[i].0.iter().any(|c| cpus.contains(c));
            match (touches, joined) {
                (true, None) => {
                    joined = Some(i);
                    i += 1;
                }
                (true, Some(j)) => {
                    let (c, p) = out.remove(i);
                    out[j].0.extend(c);
                    out[j].1.extend(p);
                }
                (false, _) => i += 1,
            }
        }
        let j = match joined {
            Some(j) => j,
            None => {
                out.push((Vec::new(), Vec::new()));
                out.len() - 1
            }
        };
        out[j].0.extend(cpus);
        out[j].1.push(pin);
    }
    out.into_iter().map(|(_, p)| p).collect()
}

fn loads_json(loads: &[(u32, f64)]) -> String {
    let items: Vec<String> = loads
        .iter()
        .map(|(c, l)| format!("{{\"pcpu\":{c},\"load\":{l:.2}}}"))
        .collect();
    format!("[{}]", items.join(","))
}
