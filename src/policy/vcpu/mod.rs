//! vCPU placement policy: a pure planner that keeps every vCPU hard-pinned
//! to one pCPU and the pCPU loads balanced with few pin changes.
//!
//! Nothing here talks to libvirt. The adapter reads a [`Snapshot`] each
//! interval (cumulative vCPU time, current affinity, usable pCPUs), calls
//! [`Scheduler::plan`], applies the returned [`Pin`]s and prints the
//! [`Plan`]'s one-line summary.
//!
//! # Units
//! Usage and load are in percent of one pCPU: 100 means one pCPU fully busy.
//! Std-dev is the population standard deviation of the usable pCPUs' loads,
//! in percentage points.
//!
//! # Steps, per interval (one module each)
//! 1. **Usable pCPUs** = `snapshot.pcpus` ∩ `--cpus` (if given), sorted.
//! 2. **Usage** ([`usage`], which also describes the two levels: a guest's
//!    demand and its vCPUs' weights). For each `(domain UUID, vCPU)` the usage is
//!    `Δ cpu_time / Δ wall × 100`, capped at 100. A vCPU seen for the first
//!    time, or whose counter went backwards (the domain restarted), has no
//!    usage yet. History of vanished vCPUs is dropped. Usage is smoothed by
//!    an EWMA (`smoothing` = weight of the newest sample); a change of
//!    `jump` points or more is adopted at once, and so is every sample of a
//!    vCPU whose pCPU gained or lost a pinned vCPU since the last snapshot
//!    (its share of that pCPU changed, so older samples no longer describe
//!    it). Each vCPU then gets the weight the next steps plan with: its
//!    usage, or, in a guest whose threads float between its vCPUs, its
//!    persistent share of the guest's demand (an equal part unless a skew
//!    lasts), so the guest kernel moving them changes no load the planner
//!    sees.
//! 3. **Placement** (`place.rs`). A vCPU whose affinity is not exactly one
//!    usable pCPU (unpinned, multi-CPU, or pinned to a pCPU now offline) is
//!    hard-pinned: known usage first, largest first, to the least loaded
//!    pCPU; without usage, to the pCPU with the fewest vCPUs.
//! 4. **Balancing** (`balance.rs`). If the std-dev of the loads is within
//!    `threshold`, nothing moves (no churn); nor does it when the loads of
//!    this interval's reading alone (unsmoothed) show less than the
//!    threshold of that imbalance (`imbalance_in`: the reading's std-dev
//!    along it, none if it leans the other way), as the planned loads lag
//!    behind an imbalance that is already gone, or follow a floating
//!    guest's shares while its kernel moved its threads the other way. A
//!    small imbalance (at most twice the threshold) must be seen `confirm`
//!    intervals first, without a balanced interval between (an interval
//!    whose reading alone does not show it neither counts nor resets).
//!    Then a greedy local search moves and swaps vCPUs until the
//!    std-dev is within the **aim** (default half the threshold), with the
//!    fewest pin changes it finds. Among plans with as many changes, the
//!    one that spreads each guest's vCPUs most evenly wins: a pass over
//!    the greedy result, and on small hosts an exhaustive search.
//!    Planning below the trigger leaves room for noise: a plan that
//!    stopped just under the threshold would be pushed back over it by
//!    the next interval's noise.
//! 5. The plan (`report.rs`) lists only pins that change something, sorted
//!    by domain and vCPU. Everything is ordered by `(domain, vCPU)` and
//!    pCPU id, so the same input always gives the same plan.
//!
//! The stop conditions depend only on the resulting placement, not on the
//! path to it, so an interval with unchanged usage after a plan was applied
//! makes no move (unless the previous plan hit `max_moves`).
//!
//! Cost: sorting the vCPUs, `O(n log n)` (skipped when the snapshot is in
//! order, as the adapter's is), and one merge of the snapshot's domains
//! with the usage history, which is kept sorted the same way (no hashing;
//! a guest whose vCPUs are unchanged is updated in place). Balancing keeps
//! the pCPUs ordered by load, so each step reads the busiest and idlest
//! off the ends and costs `O(log k)` per tier-1 move candidate (32 of
//! them) and `O(k)` per swap (k vCPUs per pCPU), plus `O(P)` for the sum
//! of squares, for at most `max_moves` steps; the exact pair
//! repartition and the exhaustive search are bounded by constants. The
//! pins borrow the snapshot's strings. `benches/vcpu_plan.rs` times it up
//! to 100,000 vCPUs.
//!
//! Limits: the additive model ignores contention. On a saturated pCPU the
//! measured usage is a lower bound of the demand, so after a move the
//! measured loads can differ from the prediction and a few corrective
//! intervals may follow before the placement settles (the simulator tests
//! bound this).

mod balance;
mod place;
mod report;
pub mod usage;

#[cfg(test)]
mod tests;

pub use crate::cpulist::{parse_cpu_list, MAX_CPU_ID};
pub use report::{Decision, Pin, PinKind, Plan};

use balance::{Balancer, Vcpus};
use usage::{imbalance_in, stddev, Tracker, EPS};

/// Default number of intervals a small imbalance must persist.
pub const DEFAULT_CONFIRM: u32 = 2;
/// Default std-dev threshold, in percentage points.
pub const DEFAULT_THRESHOLD: f64 = 5.0;
/// Default cap on pin changes made by rebalancing per interval.
pub const DEFAULT_MAX_MOVES: usize = 64;
/// Default EWMA weight of the newest usage sample.
pub const DEFAULT_SMOOTHING: f64 = 0.5;
/// Default usage change (points) adopted at once instead of smoothed.
pub const DEFAULT_JUMP: f64 = 20.0;
/// Default minimum narrowing (points) of a pair's gap for a move or swap.
pub const DEFAULT_MIN_GAIN: f64 = 2.0;

/// One vCPU as read from the hypervisor at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuSample {
    /// Domain UUID: the identity key (names can be reused).
    pub domain: String,
    /// Domain name, for display only.
    pub name: String,
    /// vCPU number within the domain.
    pub vcpu: u32,
    /// Cumulative CPU time of this vCPU, in nanoseconds.
    pub cpu_time_ns: u64,
    /// pCPUs the vCPU may run on, sorted.
    pub affinity: Vec<u32>,
    /// pCPU the vCPU was running on when sampled, if known.
    pub running_on: Option<u32>,
}

/// Everything the planner needs for one interval.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Monotonic clock when the samples were read, in nanoseconds.
    pub monotonic_ns: u64,
    /// Online pCPUs (any order; `--cpus` is applied by the planner).
    pub pcpus: Vec<u32>,
    /// All vCPUs of all running domains.
    pub vcpus: Vec<VcpuSample>,
}

/// Planner settings. [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct VcpuConfig {
    /// Std-dev of pCPU loads (points) at or below which nothing moves.
    pub threshold: f64,
    /// Std-dev (points) a rebalance plans down to once triggered, in
    /// `[0, threshold]`; `None` = half the threshold.
    pub aim: Option<f64>,
    /// Most pin changes rebalancing may make per interval (a swap is two).
    /// Initial placement is not counted: it is always done.
    pub max_moves: usize,
    /// EWMA weight of the newest usage sample, in (0, 1]; 1 = no smoothing.
    pub smoothing: f64,
    /// A usage change of at least this many points replaces the smoothed
    /// value at once.
    pub jump: f64,
    /// A move or swap must narrow the gap between its two pCPUs by at least
    /// this many points (hysteresis against tiny moves).
    pub min_gain: f64,
    /// Restrict to these pCPUs (`--cpus`); `None` = all online.
    pub cpus: Option<Vec<u32>>,
    /// Hysteresis against noise: an imbalance no worse than twice the
    /// threshold must be seen this many intervals in a row before anything
    /// moves (1 = act at once). A larger imbalance is always fixed at once.
    pub confirm: u32,
}

impl Default for VcpuConfig {
    fn default() -> Self {
        VcpuConfig {
            threshold: DEFAULT_THRESHOLD,
            aim: None,
            max_moves: DEFAULT_MAX_MOVES,
            smoothing: DEFAULT_SMOOTHING,
            jump: DEFAULT_JUMP,
            min_gain: DEFAULT_MIN_GAIN,
            cpus: None,
            confirm: DEFAULT_CONFIRM,
        }
    }
}

impl VcpuConfig {
    /// Checks the values; the error names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(format!("threshold must be >= 0, got {}", self.threshold));
        }
        if let Some(aim) = self.aim {
            if !(aim.is_finite() && aim >= 0.0 && aim <= self.threshold) {
                return Err(format!(
                    "aim must be in [0, threshold = {}], got {aim}",
                    self.threshold
                ));
            }
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            return Err(format!(
                "smoothing must be in (0, 1], got {}",
                self.smoothing
            ));
        }
        if !(self.jump.is_finite() && self.jump >= 0.0) {
            return Err(format!("jump must be >= 0, got {}", self.jump));
        }
        if !(self.min_gain.is_finite() && self.min_gain >= 0.0) {
            return Err(format!("min_gain must be >= 0, got {}", self.min_gain));
        }
        if matches!(&self.cpus, Some(c) if c.is_empty()) {
            return Err("cpus must not be empty".to_string());
        }
        Ok(())
    }

    /// The aim in force: `aim`, or half the threshold.
    pub fn effective_aim(&self) -> f64 {
        self.aim.unwrap_or(self.threshold / 2.0)
    }

    /// Replaces invalid values by their defaults.
    fn sanitized(mut self) -> Self {
        let d = VcpuConfig::default();
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            self.threshold = d.threshold;
        }
        if matches!(self.aim, Some(a) if !(a.is_finite() && a >= 0.0 && a <= self.threshold)) {
            self.aim = d.aim;
        }
        if !(self.smoothing > 0.0 && self.smoothing <= 1.0) {
            self.smoothing = d.smoothing;
        }
        if !(self.jump.is_finite() && self.jump >= 0.0) {
            self.jump = d.jump;
        }
        if !(self.min_gain.is_finite() && self.min_gain >= 0.0) {
            self.min_gain = d.min_gain;
        }
        if let Some(c) = &mut self.cpus {
            c.sort_unstable();
            c.dedup();
        }
        self
    }
}

/// The stateful planner: keeps per-vCPU usage history between intervals.
#[derive(Debug, Clone)]
pub struct Scheduler {
    cfg: VcpuConfig,
    usage: Tracker,
    /// Consecutive intervals whose std-dev exceeded the threshold.
    over_streak: u32,
}

impl Scheduler {
    /// A planner with no history. Invalid config values are replaced by
    /// their defaults (call [`VcpuConfig::validate`] first to report them).
    pub fn new(cfg: VcpuConfig) -> Self {
        Scheduler {
            cfg: cfg.sanitized(),
            usage: Tracker::default(),
            over_streak: 0,
        }
    }

    /// Replaces the configuration (e.g. on reload), keeping the usage
    /// history so no new warm-up is needed. Sanitized like [`Scheduler::new`].
    pub fn set_config(&mut self, cfg: VcpuConfig) {
        self.cfg = cfg.sanitized();
    }

    /// The configuration in force.
    pub fn config(&self) -> &VcpuConfig {
        &self.cfg
    }

    /// Smoothed usage of a vCPU as of the last plan, if known.
    pub fn usage(&self, domain: &str, vcpu: u32) -> Option<f64> {
        self.usage.usage(domain, vcpu)
    }

    /// A guest's smoothed demand (the sum of its vCPUs' usage) as of the
    /// last plan, if known.
    pub fn demand(&self, domain: &str) -> Option<f64> {
        self.usage.demand(domain)
    }

    /// Whether a guest's threads float (its load moves between its vCPUs),
    /// so it is planned as equal parts of its demand; `None` for an unknown
    /// guest.
    pub fn floating(&self, domain: &str) -> Option<bool> {
        self.usage.floating(domain)
    }

    /// Whether planning on `snap` now would place some vCPU blind: it has
    /// no earlier reading (new, or its domain restarted), so its usage is
    /// unknown and it would be placed by count.
    ///
    /// The daemon's contract: when this is true, call [`Scheduler::observe`]
    /// with `snap`, take a second snapshot a short while later (the
    /// daemon's `presample_window`), and [`Scheduler::plan`] on that one.
    /// Its new vCPUs then have a usage measured over the short window; the
    /// others keep their usage over the whole interval. The next
    /// interval's reading replaces the short one instead of being blended
    /// with it, and a split over the short window does not count towards
    /// whether a guest's threads float.
    pub fn wants_presample(&self, snap: &Snapshot) -> bool {
        self.usage.lacks_reading(snap)
    }

    /// Records the readings of the vCPUs in `snap` that have none, or whose
    /// counter went backwards, without planning (see
    /// [`Scheduler::wants_presample`]). vCPUs already known are left
    /// untouched.
    pub fn observe(&mut self, snap: &Snapshot) {
        self.usage.observe(snap);
    }

    /// Plans one interval. Call once per snapshot, in time order.
    pub fn plan<'a>(&mut self, snap: &'a Snapshot) -> Plan<'a> {
        let threshold = self.cfg.threshold;
        let pcpus = self.usable_pcpus(snap);
        let measured = self.usage.measure(snap, &self.cfg);
        let np = pcpus.len();
        // pCPU id -> index into `pcpus`: by table when the ids are dense
        // enough (as a host's are), else by binary search.
        let top = pcpus.last().map_or(0, |&c| (c as usize).saturating_add(1));
        let table: Option<Vec<Option<usize>>> = (top <= 4 * pcpus.len() + 1024).then(|| {
            let mut t = vec![None; top];
            for (i, &c) in pcpus.iter().enumerate() {
                t[c as usize] = Some(i);
            }
            t
        });
        let idx_of = |cpu: u32| match &table {
            Some(t) => t.get(cpu as usize).copied().flatten(),
            None => pcpus.binary_search(&cpu).ok(),
        };
        let weight: Vec<f64> = measured.iter().map(|m| m.weight).collect();
        let known: Vec<bool> = measured.iter().map(|m| m.usage.is_some()).collect();
        let guest: Vec<usize> = measured.iter().map(|m| m.guest).collect();

        // Where each vCPU is hard-pinned now (index into `pcpus`).
        let cur: Vec<Option<usize>> = measured.iter().map(|m| m.pin.and_then(idx_of)).collect();
        let mut before = vec![0.0; np];
        for (m, w) in measured.iter().zip(&weight) {
            if let Some(p) = m.load_on.and_then(idx_of) {
                before[p] += w;
            }
        }
        let stddev_before = stddev(&before);
        let loads_before: Vec<(u32, f64)> = pcpus.iter().copied().zip(before).collect();
        let mut plan = Plan {
            pins: Vec::new(),
            loads_after: loads_before.clone(),
            loads_before,
            stddev_before,
            stddev_after: stddev_before,
            threshold,
            aim: self.cfg.effective_aim(),
            placed: 0,
            decision: Decision::Idle,
        };
        if np == 0 {
            plan.decision = Decision::NoUsablePcpus;
            return plan;
        }
        if measured.is_empty() {
            return plan;
        }

        let (mut layout, placed) = place::place(np, &cur, &weight, &known);
        plan.placed = placed;
        let mut kind: Vec<Option<PinKind>> = vec![None; measured.len()];
        // This interval's reading alone, on the same placement.
        let mut reading = vec![0.0; np];
        for ((m, &p), w) in measured.iter().zip(&layout.loc).zip(&weight) {
            reading[p] += m.raw.unwrap_or(*w);
        }
        plan.decision = if !known.iter().any(|&k| k) {
            Decision::Warmup
        } else {
            self.decide(stddev(&layout.load), imbalance_in(&reading, &layout.load))
                .unwrap_or_else(|| {
                    let vcpus = Vcpus {
                        weight: &weight,
                        guest: &guest,
                        cur: &cur,
                    };
                    Balancer::new(
                        self.cfg.effective_aim(),
                        self.cfg.min_gain,
                        self.cfg.max_moves,
                        vcpus,
                        &mut layout.loc,
                        &mut layout.load,
                    )
                    .run(&mut kind)
                })
        };

        // Final loads, recomputed from the placement.
        let mut after = vec![0.0; np];
        for (&p, w) in layout.loc.iter().zip(&weight) {
            after[p] += w;
        }
        plan.stddev_after = stddev(&after);
        plan.loads_after = pcpus.iter().copied().zip(after).collect();
        for (i, m) in measured.iter().enumerate() {
            let (s, to) = (m.sample, layout.loc[i]);
            if cur[i] == Some(to) {
                continue;
            }
            plan.pins.push(Pin {
                domain: &s.domain,
                name: &s.name,
                vcpu: s.vcpu,
                pcpu: pcpus[to],
                from: m.pin,
                kind: match cur[i] {
                    None => PinKind::Placement,
                    Some(_) => kind[i].unwrap_or(PinKind::Move),
                },
            });
        }
        plan
    }

    /// `snap.pcpus` ∩ `--cpus`, sorted and distinct.
    fn usable_pcpus(&self, snap: &Snapshot) -> Vec<u32> {
        let mut pcpus: Vec<u32> = snap
            .pcpus
            .iter()
            .copied()
            .filter(|c| {
                self.cfg
                    .cpus
                    .as_ref()
                    .map_or(true, |a| a.binary_search(c).is_ok())
            })
            .collect();
        pcpus.sort_unstable();
        pcpus.dedup();
        pcpus
    }

    /// The balancing decision for a placement with std-dev `sd` (planned
    /// loads) and `reading` (how much of that imbalance this interval's
    /// loads alone show, [`imbalance_in`]), unless it calls for the search
    /// (`None`). Keeps the confirmation streak.
    fn decide(&mut self, sd: f64, reading: f64) -> Option<Decision> {
        let threshold = self.cfg.threshold;
        if sd <= threshold + EPS {
            self.over_streak = 0;
            return Some(Decision::Balanced);
        }
        if reading <= threshold + EPS {
            return Some(Decision::NotInReading { reading });
        }
        self.over_streak = self.over_streak.saturating_add(1);
        let needed = self.cfg.confirm.max(1);
        if sd <= 2.0 * threshold + EPS && self.over_streak < needed {
            return Some(Decision::Unconfirmed {
                seen: self.over_streak,
                needed,
            });
        }
        self.over_streak = 0;
        None
    }
}
