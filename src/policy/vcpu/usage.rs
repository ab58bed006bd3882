//! Step 2 of a plan: usage. Cumulative vCPU times become percent of one
//! pCPU, smoothed per vCPU and summed per guest, and every vCPU gets the
//! weight the placement and balancing steps plan with.
//!
//! # Two levels: guest demand, vCPU weight
//! A guest's kernel moves its threads between its own vCPUs, so the split
//! of its load over its vCPUs can change every interval while its total
//! stays put. The planner therefore keeps, per guest:
//! - its **demand**: the sum of its vCPUs' usage, smoothed by the same
//!   EWMA and jump rule as a vCPU's usage. It is what stays stable.
//! - how much its **split moves**: the fraction of its demand that moved
//!   between its vCPUs from one interval to the next (half the L1 distance
//!   of consecutive splits), smoothed with weight [`SPLIT_WEIGHT`].
//!
//! A guest whose split moves by more than [`FLOATING_ABOVE`] of its demand
//! per interval **floats** (until it moves by less than [`SETTLED_BELOW`]).
//! Each of a floating guest's `k` vCPUs is planned at its **persistent
//! share** of the demand: an equal part `1/k`, moved only by a skew that
//! outlasts the noise (`persistent_share`): its longer-run share
//! (EWMA weight [`SHARE_WEIGHT`]) beyond twice the scatter of one
//! interval's share ([`SHARE_BAND`]), or a streak of intervals each well
//! beyond that scatter on the same side ([`STREAK_BEYOND`], once the
//! scatter was measured over [`STREAK_MIN_STEPS`] steps), then normalised
//! over the guest. A pCPU holding `c` of its vCPUs thus carries about
//! `c/k` of its demand whichever vCPU its threads ran on this interval, so
//! the guest kernel moving them changes nothing the planner sees and makes
//! no pin change; but a vCPU the guest kernel leaves (all but) idle, as
//! real guests were seen to do for a minute, is seen within 2 intervals as
//! the lighter load it is (a drop beyond twice the scatter). Every other
//! vCPU is planned at its own smoothed usage: a one-vCPU guest, and a
//! guest whose threads stay put (pinned inside it, or busy on vCPU 0
//! only).
//!
//! A multi-vCPU guest may float or not until [`UNSURE_SPLITS`] splits
//! over whole intervals have been seen, and how much its split moves was
//! measured (over an interval with no change of its pCPUs' sharing), or
//! [`UNSURE_UNMEASURED`] splits passed without: a presample's short split
//! does not count, and the next one is usually seen across the first
//! plan's own pins. Until then a reading cannot tell a guest busy on vCPU 0
//! only from one whose threads happened to be there. Planned by its own
//! usage meanwhile, a floating guest next to pCPUs that plans keep
//! changing would show where its threads happened to run, and each such
//! reading would draw pins that leave it unmeasured again. The bound keeps
//! a guest that never sits still from hiding a skew for good. A vCPU of such a guest whose
//! affinity is not a single pCPU is planned halfway between what the
//! reading shows and an equal part, so a guest busy on vCPU 0 only is not
//! stacked with another one when placed. A vCPU pinned to one pCPU is
//! planned at an equal part: which of them move must not hang on a reading
//! that may be the threads' chance placement. On real guests, halfway
//! weights let one reading make a plan of 3 moves cheapest (2 vCPUs of one
//! busy guest, 1 of the other); that left a pCPU with more of one guest's
//! demand, and 3 more pins followed a few intervals later. And the interval
//! right after the first plan's pins, planned by each vCPU's own usage,
//! chased where the threads happened to run. At equal parts the first plan
//! moves 2 + 2 of each busy guest, the split that held.
//!
//! A presample (a reading taken by [`Tracker::observe`] a short while
//! before the plan) is replaced by the next reading instead of being
//! blended with it, and the pCPUs of presampled vCPUs count as changed, so
//! their neighbours' usage is taken afresh too.

mod history;

use history::{join, pair_up, sorted_runs, Prev};

use super::{Snapshot, VcpuConfig, VcpuSample};

/// Tolerance for float comparisons against thresholds.
pub(super) const EPS: f64 = 1e-9;
/// EWMA weight of the newest distance between consecutive splits.
pub const SPLIT_WEIGHT: f64 = 0.5;
/// A guest floats once more than this fraction of its demand moves
/// between its vCPUs per interval (smoothed) ...
pub const FLOATING_ABOVE: f64 = 0.1;
/// ... and stops floating once less than this fraction does.
pub const SETTLED_BELOW: f64 = 0.05;
/// EWMA weight of the newest split in a vCPU's longer-run share of its
/// guest's demand: a skew must persist for several intervals to be seen.
pub const SHARE_WEIGHT: f64 = 0.3;
/// A vCPU's longer-run share moves its persistent share only by what lies
/// beyond this many σ of one interval's share from an equal part.
pub const SHARE_BAND: f64 = 2.0;
/// A multi-vCPU guest is unsure (floating or not) for its first this many
/// splits over whole intervals; a presample's short split does not count.
/// The first is usually seen across the first plan's own pins, so it says
/// nothing of where the guest's threads run.
pub const UNSURE_SPLITS: u8 = 2;
/// ... and after that for as long as how much its split moves is not
/// measured, up to this many whole-interval splits.
pub const UNSURE_UNMEASURED: u8 = 4;
// `splits` stops counting at UNSURE_UNMEASURED: below UNSURE_SPLITS, every
// multi-vCPU guest would stay unsure.
const _: () = assert!(UNSURE_UNMEASURED >= UNSURE_SPLITS);
/// A vCPU's **streak**: the intervals in a row whose share of its guest's
/// demand lay more than this many σ from an equal part, all on the same
/// side (σ: the scatter of one interval's share, measured with weight
/// [`STREAK_VAR_WEIGHT`]).
pub const STREAK_BEYOND: f64 = 2.0;
/// A streak is taken for a lasting skew once it is this long: under
/// Gaussian noise with a known σ, two intervals in a row beyond 2σ on the
/// same side come about once in 970 per vCPU.
pub const STREAK_MIN: u8 = 2;
/// A streak is counted only against a σ measured over at least this many
/// steps. σ taken from one step is as likely as not under 0.67 of the true
/// one (a fifth of the time under a quarter of it), so one calm first step
/// would make the next two intervals of plain noise look like a streak.
pub const STREAK_MIN_STEPS: u8 = 4;
/// The streak's mean skew weighs its last `STREAK_MAX` intervals (then the
/// newest by `1 / STREAK_MAX`), so a skew that fades is not remembered for
/// as long as it lasted.
pub const STREAK_MAX: u8 = 8;
/// EWMA weight of the newest step in the σ a streak is measured against:
/// slow, so that a few calm intervals do not narrow it.
pub const STREAK_VAR_WEIGHT: f64 = 0.1;
/// The split is measured only while the guest's raw demand is at least
/// this many points (an idle guest's split is noise).
const SHARE_MIN_DEMAND: f64 = 2.0;

/// The single pCPU an affinity pins to, if it names exactly one.
pub fn single_pin(affinity: &[u32]) -> Option<u32> {
    match affinity {
        [c] => Some(*c),
        _ => None,
    }
}

/// The pCPU a vCPU's load is counted on: its single pin, else the pCPU it
/// was running on when sampled.
pub fn load_pcpu(affinity: &[u32], running_on: Option<u32>) -> Option<u32> {
    single_pin(affinity).or(running_on)
}

/// Usage in percent of one pCPU: `Δ cpu_time / Δ wall × 100`, capped at
/// 100; `None` if the counter went backwards or no time passed.
pub fn usage_pct(cpu_ns: (u64, u64), wall_ns: (u64, u64)) -> Option<f64> {
    let d_cpu = cpu_ns.1.checked_sub(cpu_ns.0)?;
    let d_wall = wall_ns.1.checked_sub(wall_ns.0).filter(|&d| d > 0)?;
    Some((d_cpu as f64 / d_wall as f64 * 100.0).min(100.0))
}

/// Mean of the values, 0 for none.
pub fn mean(loads: &[f64]) -> f64 {
    loads.iter().sum::<f64>() / loads.len().max(1) as f64
}

/// Sum of squared deviations from the mean.
pub fn sum_sq(loads: &[f64]) -> f64 {
    let mean = mean(loads);
    loads.iter().map(|l| (l - mean) * (l - mean)).sum()
}

/// Population standard deviation, 0 for no values.
pub fn stddev(loads: &[f64]) -> f64 {
    if loads.is_empty() {
        return 0.0;
    }
    (sum_sq(loads) / loads.len() as f64).sqrt()
}

/// How much of the imbalance of `load` the loads `reading` show: the
/// std-dev of `reading`'s projection on the deviations of `load` from their
/// mean, 0 if `reading` leans the other way. It is `stddev(load)` when the
/// two are equal and never more than `stddev(reading)`; a reading whose
/// imbalance lies elsewhere (another pair of pCPUs, or the other way
/// round) does not count as showing this one.
pub fn imbalance_in(reading: &[f64], load: &[f64]) -> f64 {
    let norm = sum_sq(load);
    if norm <= EPS {
        return 0.0;
    }
    let (ml, mr) = (mean(load), mean(reading));
    let along: f64 = load
        .iter()
        .zip(reading)
        .map(|(l, r)| (l - ml) * (r - mr))
        .sum();
    along.max(0.0) / norm.sqrt() / (load.len() as f64).sqrt()
}

/// The persistent share of a vCPU in its guest's demand: an `equal` part,
/// moved by what the longer-run readings show beyond their noise, or
/// `None` before its share and scatter were measured. Of two readings, the
/// one that moves it further wins:
/// - the EWMA `share`, less [`SHARE_BAND`]·σ (σ² = `var`, the scatter of
///   one interval's share). The EWMA keeps σ·√(w / (2 − w)) ≈ 0.42 σ of
///   that scatter as noise (weight w = [`SHARE_WEIGHT`]), so this takes a
///   skew within about 4.8 times its own noise for noise. (With a band of
///   σ, noise alone drew pin changes for the simulator's floating guests:
///   2 of 4 property runs failed.) A level shift widens σ for a while, so this
///   sees a vCPU left idle only after 5 to 7 intervals.
/// - a streak of at least [`STREAK_MIN`] intervals beyond
///   [`STREAK_BEYOND`]·σ_long (σ_long² = `var_long`, the slower measure
///   of the same scatter): its mean skew, less one standard error of that
///   mean (σ_long/√r over `r` intervals). The streak itself is the
///   evidence (noise seldom makes one), so its mean is shrunk by its own
///   error only, and the estimate firms up while the skew lasts: a vCPU
///   the guest kernel leaves (all but) idle, a drop beyond 2σ_long, is
///   seen in 2 intervals.
fn persistent_share(h: &ShareHistory, equal: f64) -> Option<f64> {
    let sigma = h.var?.sqrt();
    let skew = h.share? - equal;
    let mut kept = (skew.abs() - SHARE_BAND * sigma, skew);
    if h.streak >= STREAK_MIN {
        let error = h.var_long?.sqrt() / f64::from(h.streak).sqrt();
        let by_streak = h.streak_skew.abs() - error;
        if by_streak > kept.0 {
            kept = (by_streak, h.streak_skew);
        }
    }
    Some((equal + kept.0.max(0.0).copysign(kept.1)).max(0.0))
}

/// The EWMA with its jump rule, for a vCPU's usage and a guest's demand
/// alike: `raw` replaces the previous value at once if there is none, if
/// it differs by `jump` points or more, or if `reset` (its pCPU's sharing
/// changed); otherwise it is blended in with weight `smoothing`.
fn smooth(prev: Option<f64>, raw: f64, reset: bool, cfg: &VcpuConfig) -> f64 {
    match prev {
        Some(u) if !reset && (raw - u).abs() < cfg.jump => {
            cfg.smoothing * raw + (1.0 - cfg.smoothing) * u
        }
        _ => raw,
    }
}

/// What is kept of one vCPU's share of its guest's demand.
#[derive(Debug, Clone, Copy, Default)]
struct ShareHistory {
    /// Its share of the guest's demand in the last interval measured.
    last: Option<f64>,
    /// Its share of the guest's demand over the longer run: an EWMA of
    /// `last` with weight [`SHARE_WEIGHT`], starting from an equal
    /// part.
    share: Option<f64>,
    /// How much one interval's share scatters: an EWMA (same weight) of
    /// half the squared change of `last`, once two were seen.
    var: Option<f64>,
    /// The same with weight [`STREAK_VAR_WEIGHT`] (a plain mean of the first
    /// steps): the scatter its streak is measured against.
    var_long: Option<f64>,
    /// Steps seen in `var_long` (counting stops at 255).
    steps: u8,
    /// How many intervals in a row (counting stops at [`STREAK_MAX`]) its
    /// share lay beyond [`STREAK_BEYOND`]·σ on the same side of an equal part
    /// (an interval whose split was not measured ends it) ...
    streak: u8,
    /// ... and the mean of their skews (share − equal part).
    streak_skew: f64,
}

impl ShareHistory {
    /// No streak (any more).
    fn end_streak(&mut self) {
        (self.streak, self.streak_skew) = (0, 0.0);
    }
}

/// What is kept of one vCPU between snapshots.
#[derive(Debug, Clone, Copy)]
struct VcpuHistory {
    vcpu: u32,
    cpu_time_ns: u64,
    at_ns: u64,
    /// Smoothed usage, once two readings exist.
    usage: Option<f64>,
    /// What was measured of its share in its guest's split.
    split: ShareHistory,
    /// The single pCPU it was pinned to at that reading.
    pin: Option<u32>,
    /// The reading was taken by [`Tracker::observe`] (a presample).
    presampled: bool,
    /// Its usage spans only the presample window: the next reading
    /// replaces it instead of being blended with it, and its guest's
    /// split is not counted.
    short: bool,
}

/// What is kept of one guest (domain) between snapshots.
#[derive(Debug, Clone, Default)]
struct GuestHistory {
    /// Domain UUID.
    key: String,
    /// Sorted by vCPU number.
    vcpus: Vec<VcpuHistory>,
    /// Smoothed sum of its vCPUs' usage, once measured.
    demand: Option<f64>,
    /// Smoothed fraction of the demand that moved between its vCPUs per
    /// interval, once two consecutive splits were seen with no change of
    /// their pCPUs' sharing between them.
    moving: Option<f64>,
    /// Planned by the persistent shares of its demand.
    floating: bool,
    /// Splits measured over whole intervals (counting stops at
    /// [`UNSURE_UNMEASURED`]).
    splits: u8,
}

/// One vCPU of a snapshot as the later steps see it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Measured<'a> {
    pub sample: &'a VcpuSample,
    /// The single pCPU its affinity pins it to, if any.
    pub pin: Option<u32>,
    /// The pCPU its load is counted on ([`load_pcpu`]).
    pub load_on: Option<u32>,
    /// Smoothed usage, `None` until two readings exist.
    pub usage: Option<f64>,
    /// The load the planner counts for it (0 without usage).
    pub weight: f64,
    /// Its usage over this interval alone, unsmoothed, if measured.
    pub raw: Option<f64>,
    /// Its guest: the vCPUs of one guest have the same number, and are
    /// adjacent.
    pub guest: usize,
}

/// Usage history of every vCPU seen in the last snapshot.
#[derive(Debug, Clone, Default)]
pub(super) struct Tracker {
    /// Per domain, sorted by UUID (as the snapshot's vCPUs are sorted, so
    /// each interval merges the two lists: no hashing, no allocation for a
    /// guest whose vCPUs stay the same).
    guests: Vec<GuestHistory>,
}

impl GuestHistory {
    /// Forgets how its load was split: a guest that gained or lost vCPUs
    /// splits anew.
    fn split_anew(&mut self) {
        self.splits = 0;
        self.moving = None;
        for h in &mut self.vcpus {
            h.split = ShareHistory::default();
        }
    }

    /// Updates the demand, the split and whether the guest floats from
    /// this interval's raw usages (`raws`, in vCPU order), and sets the
    /// weights. A split over a presample window (`short`) is not counted.
    fn weigh(
        &mut self,
        raws: &[Option<f64>],
        raw_total: f64,
        reset: bool,
        short: bool,
        cfg: &VcpuConfig,
        out: &mut [Measured<'_>],
    ) {
        let all_raw = raws.iter().all(Option::is_some);
        if raws.iter().any(Option::is_some) {
            self.demand = Some(smooth(self.demand, raw_total, reset || !all_raw, cfg));
        } else if self.vcpus.iter().all(|h| h.usage.is_none()) {
            self.demand = None;
        }
        if all_raw && !short && raw_total >= SHARE_MIN_DEMAND {
            self.splits = self.splits.saturating_add(1).min(UNSURE_UNMEASURED);
            let (mut moved, mut seen) = (0.0, true);
            let equal = 1.0 / self.vcpus.len() as f64;
            for (h, raw) in self.vcpus.iter_mut().zip(raws) {
                let now = raw.unwrap_or(0.0) / raw_total;
                let s = &mut h.split;
                // The streak, against σ as it was before this interval.
                let skew = now - equal;
                let sigma = s.var_long.filter(|_| s.steps >= STREAK_MIN_STEPS);
                match sigma.map(f64::sqrt) {
                    Some(sigma) if skew.abs() > STREAK_BEYOND * sigma => {
                        if s.streak > 0 && skew * s.streak_skew > 0.0 {
                            s.streak = (s.streak + 1).min(STREAK_MAX);
                            s.streak_skew += (skew - s.streak_skew) / f64::from(s.streak);
                        } else {
                            (s.streak, s.streak_skew) = (1, skew);
                        }
                    }
                    _ => s.end_streak(),
                }
                match s.last {
                    Some(last) => {
                        moved += (now - last).abs() / 2.0;
                        // Half the squared step: the variance of one
                        // interval's share, which a lasting change of
                        // level inflates once, not for as long as it lasts.
                        let var = (now - last) * (now - last) / 2.0;
                        s.var = Some(match s.var {
                            Some(v) => v + SHARE_WEIGHT * (var - v),
                            None => var,
                        });
                        // A mean of the steps until there are 1 / weight of
                        // them, then the EWMA: one calm first step must not
                        // make the scatter look small for long.
                        s.steps = s.steps.saturating_add(1);
                        let w = STREAK_VAR_WEIGHT.max(1.0 / f64::from(s.steps));
                        s.var_long = Some(s.var_long.map_or(var, |v| v + w * (var - v)));
                    }
                    None => seen = false,
                }
                s.last = Some(now);
                let long = s.share.unwrap_or(equal);
                s.share = Some(long + SHARE_WEIGHT * (now - long));
            }
            // A split seen across a change of its pCPUs' sharing (a pin
            // change here or next to it) is the planner's doing, not the
            // guest kernel's: it does not count as floating.
            if seen && !reset {
                let m = self
                    .moving
                    .map_or(moved, |m| m + SPLIT_WEIGHT * (moved - m));
                self.moving = Some(m);
                self.floating = m > if self.floating {
                    SETTLED_BELOW
                } else {
                    FLOATING_ABOVE
                };
            }
        } else {
            // A streak is of intervals in a row: one not measured ends it.
            for h in &mut self.vcpus {
                h.split.end_streak();
            }
        }
        let known = self.vcpus.iter().filter(|h| h.usage.is_some()).count();
        let demand = self.demand.unwrap_or(0.0);
        let part = demand / known.max(1) as f64;
        // The persistent shares, when every vCPU has one and has usage.
        let equal = 1.0 / self.vcpus.len().max(1) as f64;
        let persistent = |h: &VcpuHistory| persistent_share(&h.split, equal);
        let sum: Option<f64> = (self.floating && known == self.vcpus.len())
            .then(|| self.vcpus.iter().map(persistent).sum::<Option<f64>>())
            .flatten()
            .filter(|&sum| sum > EPS);
        // Too few whole-interval splits seen, or none over an interval
        // that measures how much it moves: floating or not is unknown.
        let unsure = (self.splits < UNSURE_SPLITS
            || (self.moving.is_none() && self.splits < UNSURE_UNMEASURED))
            && self.vcpus.len() > 1;
        for (m, h) in out.iter_mut().zip(&self.vcpus) {
            m.weight = match (h.usage, sum, persistent(h)) {
                (None, ..) => 0.0,
                (Some(_), Some(sum), Some(share)) => demand * share / sum,
                (Some(_), ..) if self.floating => part,
                // Unsure and not pinned to one pCPU: halfway, so that a
                // guest busy on vCPU 0 only is not stacked with another.
                (Some(u), ..) if unsure && h.pin.is_none() => (u + part) / 2.0,
                // Unsure and pinned: which of its vCPUs carry the load is
                // not known yet, so which move does not depend on it.
                (Some(_), ..) if unsure => part,
                (Some(u), ..) => u,
            };
        }
    }
}

impl VcpuHistory {
    /// The first reading of a vCPU.
    fn fresh(s: &VcpuSample, at_ns: u64) -> Self {
        VcpuHistory {
            vcpu: s.vcpu,
            cpu_time_ns: s.cpu_time_ns,
            at_ns,
            usage: None,
            split: ShareHistory::default(),
            pin: single_pin(&s.affinity),
            presampled: false,
            short: false,
        }
    }
}

impl Tracker {
    fn find(&self, domain: &str) -> Option<&GuestHistory> {
        let i = self
            .guests
            .binary_search_by(|g| g.key.as_str().cmp(domain))
            .ok()?;
        Some(&self.guests[i])
    }

    /// A guest's smoothed demand (sum of its vCPUs' usage), if measured.
    pub fn demand(&self, domain: &str) -> Option<f64> {
        self.find(domain)?.demand
    }

    /// Whether a guest floats (is planned as equal parts of its demand).
    pub fn floating(&self, domain: &str) -> Option<bool> {
        self.find(domain).map(|g| g.floating)
    }

    /// Smoothed usage of a vCPU as of the last update.
    pub fn usage(&self, domain: &str, vcpu: u32) -> Option<f64> {
        let g = self.find(domain)?;
        let j = g.vcpus.binary_search_by_key(&vcpu, |h| h.vcpu).ok()?;
        g.vcpus[j].usage
    }

    /// Whether some vCPU of `snap` has no earlier reading to measure its
    /// usage against (new, or its counter went backwards).
    pub fn lacks_reading(&self, snap: &Snapshot) -> bool {
        let (order, runs) = sorted_runs(snap);
        let at = join(&self.guests, &order, &runs);
        runs.iter().zip(at).any(|(run, at)| {
            let Some(g) = at.map(|i| &self.guests[i]) else {
                return true;
            };
            let samples = &order[run.clone()];
            let prev = Prev::of(&g.vcpus, samples);
            samples.iter().enumerate().any(|(j, s)| {
                !matches!(prev.get(&g.vcpus, j), Some(p) if p.cpu_time_ns <= s.cpu_time_ns)
            })
        })
    }

    /// Records a reading for the vCPUs of `snap` that have none (or whose
    /// counter went backwards) and leaves every other history untouched,
    /// so their next usage still spans the whole interval.
    pub fn observe(&mut self, snap: &Snapshot) {
        let (order, runs) = sorted_runs(snap);
        let at = join(&self.guests, &order, &runs);
        let mut added = Vec::new();
        for (run, at) in runs.iter().zip(at) {
            let samples = &order[run.clone()];
            let presample = |s: &VcpuSample| VcpuHistory {
                presampled: true,
                ..VcpuHistory::fresh(s, snap.monotonic_ns)
            };
            let Some(i) = at else {
                added.push(GuestHistory {
                    key: samples[0].domain.clone(),
                    vcpus: samples.iter().map(|s| presample(s)).collect(),
                    ..GuestHistory::default()
                });
                continue;
            };
            let g = &mut self.guests[i];
            let mut gained = false;
            for s in samples {
                let fresh = presample(s);
                match g.vcpus.binary_search_by_key(&s.vcpu, |h| h.vcpu) {
                    Ok(j) if g.vcpus[j].cpu_time_ns <= s.cpu_time_ns => {}
                    Ok(j) => g.vcpus[j] = fresh,
                    Err(j) => {
                        g.vcpus.insert(j, fresh);
                        gained = true;
                    }
                }
            }
            if gained {
                g.split_anew();
            }
        }
        if !added.is_empty() {
            self.guests.append(&mut added);
            self.guests.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        }
    }

    /// Updates the history from `snap` and returns its vCPUs sorted by
    /// (domain, vCPU), deduplicated, with their usage and weight. History
    /// of vanished vCPUs and domains is dropped. A guest whose vCPUs are
    /// the same as last time is updated in place.
    pub fn measure<'a>(&mut self, snap: &'a Snapshot, cfg: &VcpuConfig) -> Vec<Measured<'a>> {
        let (order, runs) = sorted_runs(snap);
        let at = join(&self.guests, &order, &runs);

        // Pass 1: pair each guest with its history, and note the pCPUs
        // whose set of pinned vCPUs changed since then.
        let (pending, changed) = pair_up(std::mem::take(&mut self.guests), &order, &runs, at);

        // Pass 2: usage per vCPU, then the guest's demand, shares and weights.
        let now = snap.monotonic_ns;
        let mut out = Vec::with_capacity(order.len());
        let mut raws = Vec::new();
        self.guests.reserve(runs.len());
        for (g, (run, (mut guest, pairing))) in runs.iter().zip(pending).enumerate() {
            let samples = &order[run.clone()];
            let first = out.len();
            // A guest that gained or lost vCPUs: its vCPUs are pushed
            // anew below, and it splits anew once they are.
            let reshaped = matches!(pairing, Prev::Mapped(_));
            if reshaped {
                guest.vcpus.clear();
            }
            raws.clear();
            let (mut raw_total, mut reset_guest) = (0.0, reshaped);
            // Some vCPU measured over a presample window only.
            let mut short = false;
            for (j, &s) in samples.iter().enumerate() {
                let fresh = VcpuHistory::fresh(s, now);
                let pin = fresh.pin;
                let mut raw = None;
                let h = match pairing.get(&guest.vcpus, j) {
                    Some(p) if p.cpu_time_ns == s.cpu_time_ns && p.at_ns == now => p,
                    Some(p) => match usage_pct((p.cpu_time_ns, s.cpu_time_ns), (p.at_ns, now)) {
                        Some(r) => {
                            // Its pCPU's sharing changed, or its usage so far
                            // spans a presample only: old samples do not apply.
                            let reset =
                                p.short || pin.map_or(true, |c| changed.binary_search(&c).is_ok());
                            reset_guest |= reset;
                            short |= p.presampled;
                            raw = Some(r);
                            VcpuHistory {
                                usage: Some(smooth(p.usage, r, reset, cfg)),
                                split: p.split,
                                short: p.presampled,
                                ..fresh
                            }
                        }
                        None => fresh,
                    },
                    None => fresh,
                };
                raw_total += raw.unwrap_or(0.0);
                raws.push(raw);
                match pairing {
                    Prev::Aligned => guest.vcpus[j] = h,
                    Prev::Mapped(_) => guest.vcpus.push(h),
                }
                out.push(Measured {
                    sample: s,
                    pin,
                    load_on: load_pcpu(&s.affinity, s.running_on),
                    usage: h.usage,
                    weight: 0.0,
                    raw,
                    guest: g,
                });
            }
            if reshaped {
                guest.split_anew();
            }
            guest.weigh(&raws, raw_total, reset_guest, short, cfg, &mut out[first..]);
            self.guests.push(guest);
        }
        out
    }
}
