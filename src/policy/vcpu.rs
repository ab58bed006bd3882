//! vCPU placement policy: a pure planner that keeps every vCPU
//! hard-pinned to one pCPU and the pCPU loads balanced with few pin changes.
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
//! # Algorithm, per interval
//! 1. **Usable pCPUs** = `snapshot.pcpus` ∩ `--cpus` (if given), sorted.
//! 2. **Usage.** For each `(domain UUID, vCPU)` the usage is
//!    `Δ cpu_time / Δ wall × 100`, capped at 100. A vCPU seen for the first
//!    time, or whose counter went backwards (the domain restarted), has no
//!    usage yet. History of vanished vCPUs is dropped. Usage is smoothed by
//!    an EWMA (`smoothing` = weight of the newest sample); a change of
//!    `jump` points or more is adopted at once, and so is every sample of a
//!    vCPU whose pCPU gained or lost a pinned vCPU since the last snapshot
//!    (its share of that pCPU changed, so older samples no longer describe
//!    it). A real change is thus seen within one interval, a just-moved
//!    vCPU's prediction is never stale, and steady-state noise is damped.
//! 3. **Placement.** A vCPU whose affinity is not exactly one usable pCPU
//!    (unpinned, multi-CPU, or pinned to a pCPU now offline) is hard-pinned.
//!    Those with a known usage go first, largest first, each to the pCPU
//!    with the least load (then fewest vCPUs, then lowest id) — the LPT
//!    rule. Those without usage (warm-up) then go to the pCPU with the
//!    fewest vCPUs (then least load, lowest id), which spreads a guest's
//!    vCPUs round-robin. Placement is not capped: being pinned is required.
//! 4. **Balancing.** If the std-dev of the loads is within `threshold`,
//!    nothing moves (no churn). Otherwise a greedy local search runs. Each
//!    step looks at the busiest pCPU `H` and the idlest `L` and considers
//!    - moving one vCPU from any pCPU to `L`, or from `H` to any pCPU;
//!    - swapping a vCPU of `H` with a lighter vCPU of `L` (and, only when
//!      nothing else helps, swaps on the other pairs above);
//!    - only when still nothing helps: an exact repartition of the busy
//!      vCPUs of such a pair (2-for-1, 2-for-2 … exchanges), when the pair
//!      holds at most 12 of them.
//!
//!    Moving usage `x` across a pair whose gap is `g` leaves a gap of
//!    `|g − 2x|`; an action is allowed only if it narrows that gap by at
//!    least `min_gain` points, so it strictly lowers the std-dev and never
//!    makes the pair worse than before (a move that would flip the pair
//!    into a wider gap is refused). The best action is the one that lowers
//!    the sum of squared deviations the most (per pin change: a swap costs
//!    two); an action that reaches the threshold wins over one that doesn't,
//!    and among those the cheapest, then the best. Steps stop when the
//!    std-dev is within the threshold, no action qualifies, or the
//!    `max_moves` budget of pin changes is spent.
//!
//!    Swaps matter because measured usage is capped by contention: two
//!    heavy vCPUs sharing pCPU A measure 50 + 50 = 100 while two 30 % vCPUs
//!    on B make 60; moving a heavy would predict 50 vs 110 (refused), but
//!    swapping a heavy with a light predicts 80/80 (and really gives
//!    100/100).
//! 5. **Small hosts, exactly.** When (pCPUs)^(busy vCPUs) ≤ 65 536 (e.g. 16
//!    vCPUs on 2 pCPUs, 10 on 3), all placements are enumerated: the greedy
//!    result is replaced if another placement reaches the threshold with
//!    fewer pin changes, or lowers the std-dev by at least `min_gain / 2`
//!    more. So small hosts get the fewest moves and the optimum.
//! 6. The plan lists only pins that change something, sorted by domain and
//!    vCPU. Everything is ordered by `(domain, vCPU)` and pCPU id, so the
//!    same input always gives the same plan.
//!
//! The stop conditions depend only on the resulting placement, not on the
//! path to it, so an interval with unchanged usage after a plan was applied
//! makes no move (unless the previous plan hit `max_moves`).
//!
//! Cost: sorting the vCPUs, `O(n log n)`, then per balancing step
//! `O(P log k)` for moves plus `O(k)` for swaps (P pCPUs, k vCPUs per
//! pCPU), at most `max_moves` steps; the exact parts are bounded constants.
//!
//! Limits: the additive model ignores contention. On a saturated pCPU the
//! measured usage is a lower bound of the demand, so after a move the
//! measured loads can differ from the prediction and a few corrective
//! intervals may follow before the placement settles (the simulator tests
//! bound this).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::fmt;

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
/// Highest CPU number accepted by [`parse_cpu_list`].
pub const MAX_CPU_ID: u32 = 65_535;

/// Exact pair repartition is tried only on pairs holding at most this many
/// busy vCPUs together (2^n subsets).
const EXCHANGE_MAX_VCPUS: usize = 12;
/// ... and on pairs other than (busiest, idlest) only up to this many pCPUs.
const EXCHANGE_MAX_PCPUS: usize = 16;

/// The exhaustive search runs only when (pCPUs)^(busy vCPUs) is at most this.
const EXACT_MAX_STATES: usize = 1 << 16;

/// Tolerance for float comparisons against thresholds.
const EPS: f64 = 1e-9;

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

    /// Replaces invalid values by their defaults.
    fn sanitized(mut self) -> Self {
        let d = VcpuConfig::default();
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            self.threshold = d.threshold;
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

/// Why a pin is in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinKind {
    /// The vCPU was not hard-pinned to one usable pCPU.
    Placement,
    /// Moved by rebalancing.
    Move,
    /// Exchanged with another vCPU by rebalancing.
    Swap,
}

/// One pin to apply: set the affinity of `domain`'s `vcpu` to `{pcpu}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    /// Domain UUID.
    pub domain: String,
    /// Domain name, for display.
    pub name: String,
    /// vCPU number.
    pub vcpu: u32,
    /// Target pCPU.
    pub pcpu: u32,
    /// The single pCPU it was pinned to before, if it was pinned to one.
    pub from: Option<u32>,
    /// Why.
    pub kind: PinKind,
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            PinKind::Placement => "place",
            PinKind::Move => "move",
            PinKind::Swap => "swap",
        };
        match self.from {
            Some(from) => write!(
                f,
                "{} vCPU {}: pCPU {} -> {} ({kind})",
                self.name, self.vcpu, from, self.pcpu
            ),
            None => write!(
                f,
                "{} vCPU {}: unpinned -> pCPU {} ({kind})",
                self.name, self.vcpu, self.pcpu
            ),
        }
    }
}

/// What the planner decided about balance this interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No vCPU to schedule.
    Idle,
    /// No usable pCPU (offline, or outside `--cpus`): nothing can be pinned.
    NoUsablePcpus,
    /// No vCPU has a usage yet (first interval): placement only.
    Warmup,
    /// Std-dev within the threshold: no rebalancing move.
    Balanced,
    /// Rebalancing moves and swaps were planned.
    Rebalanced {
        /// Single-vCPU moves.
        moves: usize,
        /// Swaps (two pin changes each).
        swaps: usize,
        /// The `max_moves` budget stopped the search.
        capped: bool,
    },
    /// Above the threshold but within twice it, seen `seen` of the
    /// `needed` intervals in a row: nothing moves yet (noise guard).
    Unconfirmed {
        /// Consecutive intervals over the threshold so far.
        seen: u32,
        /// Intervals needed.
        needed: u32,
    },
    /// Above the threshold, but no single move or swap narrows any gap
    /// enough (indivisible loads): nothing moves.
    Unbalanceable,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Decision::Idle => f.write_str("no vCPUs"),
            Decision::NoUsablePcpus => f.write_str("no usable pCPU"),
            Decision::Warmup => f.write_str("warm-up (no usage yet)"),
            Decision::Balanced => f.write_str("balanced"),
            Decision::Rebalanced {
                moves,
                swaps,
                capped,
            } => {
                write!(f, "rebalanced: {moves} move(s), {swaps} swap(s)")?;
                if capped {
                    f.write_str(", move cap reached")?;
                }
                Ok(())
            }
            Decision::Unbalanceable => f.write_str("imbalanced, no move narrows it"),
            Decision::Unconfirmed { seen, needed } => {
                write!(
                    f,
                    "small imbalance, waiting for confirmation ({seen}/{needed})"
                )
            }
        }
    }
}

/// The result of one interval: pins to apply and the figures behind them.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Pins that change an affinity, sorted by (domain, vCPU).
    pub pins: Vec<Pin>,
    /// Load per usable pCPU before the plan (an unpinned vCPU counts on the
    /// pCPU it ran on, if usable), in pCPU order.
    pub loads_before: Vec<(u32, f64)>,
    /// Predicted load per usable pCPU after the plan, in pCPU order.
    pub loads_after: Vec<(u32, f64)>,
    /// Std-dev of `loads_before`, points.
    pub stddev_before: f64,
    /// Std-dev of `loads_after`, points.
    pub stddev_after: f64,
    /// The threshold in force.
    pub threshold: f64,
    /// vCPUs that were not hard-pinned to a usable pCPU and got placed.
    pub placed: usize,
    /// The balancing decision.
    pub decision: Decision,
}

impl Plan {
    /// Number of pin calls the plan needs.
    pub fn pin_changes(&self) -> usize {
        self.pins.len()
    }
}

fn write_loads(f: &mut fmt::Formatter<'_>, loads: &[(u32, f64)]) -> fmt::Result {
    if loads.len() <= 16 {
        for (i, (cpu, load)) in loads.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{cpu}:{load:.1}")?;
        }
        Ok(())
    } else {
        let min = loads.iter().map(|l| l.1).fold(f64::INFINITY, f64::min);
        let max = loads.iter().map(|l| l.1).fold(f64::NEG_INFINITY, f64::max);
        let mean = loads.iter().map(|l| l.1).sum::<f64>() / loads.len() as f64;
        write!(
            f,
            "{} pCPUs min {min:.1} mean {mean:.1} max {max:.1}",
            loads.len()
        )
    }
}

impl fmt::Display for Plan {
    /// One line: `loads 0:100.0 1:0.0 -> 0:50.0 1:50.0 | sd 50.0 -> 0.0
    /// (thr 5.0) | rebalanced: 2 move(s), 0 swap(s) | 2 pin(s), 0 placed`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("loads ")?;
        write_loads(f, &self.loads_before)?;
        if !self.pins.is_empty() {
            f.write_str(" -> ")?;
            write_loads(f, &self.loads_after)?;
        }
        write!(f, " | sd {:.1}", self.stddev_before)?;
        if !self.pins.is_empty() {
            write!(f, " -> {:.1}", self.stddev_after)?;
        }
        write!(
            f,
            " (thr {:.1}) | {} | {} pin(s), {} placed",
            self.threshold,
            self.decision,
            self.pins.len(),
            self.placed
        )
    }
}

/// Parses a CPU list such as `0-3,8` into sorted, distinct CPU numbers.
pub fn parse_cpu_list(s: &str) -> Result<Vec<u32>, String> {
    let num = |t: &str| -> Result<u32, String> {
        let t = t.trim();
        if t.is_empty() {
            return Err(format!("invalid CPU list {s:?}: missing CPU number"));
        }
        let n: u32 = t
            .parse()
            .map_err(|_| format!("invalid CPU list {s:?}: {t:?} is not a CPU number"))?;
        if n > MAX_CPU_ID {
            return Err(format!(
                "invalid CPU list {s:?}: CPU {n} is above the maximum {MAX_CPU_ID}"
            ));
        }
        Ok(n)
    };
    if s.trim().is_empty() {
        return Err("invalid CPU list: empty".to_string());
    }
    let mut out = Vec::new();
    for item in s.split(',') {
        if item.trim().is_empty() {
            return Err(format!("invalid CPU list {s:?}: empty item"));
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!(
                        "invalid CPU list {s:?}: range {a}-{b} is backwards"
                    ));
                }
                out.extend(a..=b);
            }
            None => out.push(num(item)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Usage history of one vCPU.
#[derive(Debug, Clone, Copy)]
struct History {
    cpu_time_ns: u64,
    at_ns: u64,
    usage: Option<f64>,
    /// The single pCPU it was pinned to at that reading.
    pin: Option<u32>,
}

/// The stateful planner: keeps per-vCPU usage history between intervals.
#[derive(Debug, Clone)]
pub struct Scheduler {
    cfg: VcpuConfig,
    /// Domain UUID → vCPU → history.
    history: HashMap<String, HashMap<u32, History>>,
    /// Consecutive intervals whose std-dev exceeded the threshold.
    over_streak: u32,
}

/// f64 with a total order, for heap keys (values are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Population std-dev.
fn stddev(loads: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = loads.clone().count();
    if n == 0 {
        return 0.0;
    }
    let mean = loads.clone().sum::<f64>() / n as f64;
    let ss: f64 = loads.map(|l| (l - mean) * (l - mean)).sum();
    (ss / n as f64).sqrt()
}

/// How much moving `x` across a gap `g` narrows it.
fn narrowing(g: f64, x: f64) -> f64 {
    g - (g - 2.0 * x).abs()
}

impl Scheduler {
    /// A planner with no history. Invalid config values are replaced by
    /// their defaults (call [`VcpuConfig::validate`] first to report them).
    pub fn new(cfg: VcpuConfig) -> Self {
        Scheduler {
            cfg: cfg.sanitized(),
            history: HashMap::new(),
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
        self.history.get(domain)?.get(&vcpu)?.usage
    }

    /// Updates the history from `snap` and returns the vCPUs sorted by
    /// (domain, vCPU), deduplicated, with their smoothed usage.
    fn measure<'a>(&mut self, snap: &'a Snapshot) -> Vec<(&'a VcpuSample, Option<f64>)> {
        let mut order: Vec<&VcpuSample> = snap.vcpus.iter().collect();
        order.sort_by(|a, b| (a.domain.as_str(), a.vcpu).cmp(&(b.domain.as_str(), b.vcpu)));
        order.dedup_by(|a, b| a.domain == b.domain && a.vcpu == b.vcpu);
        let pin_of = |s: &VcpuSample| match s.affinity.as_slice() {
            [c] => Some(*c),
            _ => None,
        };

        // Pass 1: pair each sample with its previous history and note the
        // pCPUs whose set of pinned vCPUs changed since the last snapshot.
        let mut old = std::mem::take(&mut self.history);
        let mut prevs: Vec<Option<History>> = Vec::with_capacity(order.len());
        let mut changed: Vec<u32> = Vec::new();
        // (domain key, its map to reuse, index of its first sample)
        let mut keys: Vec<(String, HashMap<u32, History>, usize)> = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let dom = order[i].domain.as_str();
            let first = i;
            let (key, mut prev) = match old.remove_entry(dom) {
                Some((k, v)) => (k, v),
                None => (dom.to_string(), HashMap::new()),
            };
            while i < order.len() && order[i].domain == dom {
                let s = order[i];
                let p = prev.remove(&s.vcpu);
                let was = p.and_then(|h| h.pin);
                let now_pin = pin_of(s);
                if p.is_none() || was != now_pin {
                    changed.extend(was);
                    changed.extend(now_pin);
                }
                prevs.push(p);
                i += 1;
            }
            // vCPUs of this domain that vanished.
            changed.extend(prev.values().filter_map(|h| h.pin));
            keys.push((key, prev, first));
        }
        // Domains that vanished.
        changed.extend(old.values().flat_map(|d| d.values().filter_map(|h| h.pin)));
        changed.sort_unstable();
        changed.dedup();

        // Pass 2: usage.
        let now = snap.monotonic_ns;
        let (alpha, jump) = (self.cfg.smoothing, self.cfg.jump);
        let mut out = Vec::with_capacity(order.len());
        let mut hist: Vec<History> = Vec::with_capacity(order.len());
        for (s, prev) in order.iter().zip(prevs) {
            let pin = pin_of(s);
            let fresh = History {
                cpu_time_ns: s.cpu_time_ns,
                at_ns: now,
                usage: None,
                pin,
            };
            let h = match prev {
                Some(p) if s.cpu_time_ns >= p.cpu_time_ns && now > p.at_ns => {
                    let raw = ((s.cpu_time_ns - p.cpu_time_ns) as f64 / (now - p.at_ns) as f64
                        * 100.0)
                        .min(100.0);
                    // Its pCPU's sharing changed: old samples no longer apply.
                    let moved = pin.map_or(true, |c| changed.binary_search(&c).is_ok());
                    let usage = match p.usage {
                        Some(u) if !moved && (raw - u).abs() < jump => {
                            alpha * raw + (1.0 - alpha) * u
                        }
                        _ => raw,
                    };
                    History {
                        usage: Some(usage),
                        ..fresh
                    }
                }
                // The same reading again: keep what we know.
                Some(p) if s.cpu_time_ns == p.cpu_time_ns && now == p.at_ns => p,
                // New, restarted (counter went backwards) or clock oddity.
                _ => fresh,
            };
            hist.push(h);
            out.push((*s, h.usage));
        }
        let ends: Vec<usize> = keys
            .iter()
            .skip(1)
            .map(|k| k.2)
            .chain([order.len()])
            .collect();
        for ((key, mut map, first), last) in keys.into_iter().zip(ends) {
            map.clear();
            map.extend((first..last).map(|j| (order[j].vcpu, hist[j])));
            self.history.insert(key, map);
        }
        out
    }

    /// Plans one interval. Call once per snapshot, in time order.
    pub fn plan(&mut self, snap: &Snapshot) -> Plan {
        let threshold = self.cfg.threshold;
        let mut pcpus: Vec<u32> = match &self.cfg.cpus {
            Some(allowed) => snap
                .pcpus
                .iter()
                .copied()
                .filter(|c| allowed.binary_search(c).is_ok())
                .collect(),
            None => snap.pcpus.clone(),
        };
        pcpus.sort_unstable();
        pcpus.dedup();
        let measured = self.measure(snap);
        let np = pcpus.len();
        let idx_of = |cpu: u32| pcpus.binary_search(&cpu).ok();
        let usage: Vec<f64> = measured.iter().map(|m| m.1.unwrap_or(0.0)).collect();

        // Where each vCPU is hard-pinned now (index into `pcpus`).
        let cur: Vec<Option<usize>> = measured
            .iter()
            .map(|(s, _)| match s.affinity.as_slice() {
                [c] => idx_of(*c),
                _ => None,
            })
            .collect();
        let mut before = vec![0.0; np];
        for (i, (s, _)) in measured.iter().enumerate() {
            if let Some(p) = cur[i].or_else(|| s.running_on.and_then(idx_of)) {
                before[p] += usage[i];
            }
        }
        let loads_before: Vec<(u32, f64)> = pcpus.iter().copied().zip(before).collect();
        let stddev_before = stddev(loads_before.iter().map(|l| l.1));
        let mut plan = Plan {
            pins: Vec::new(),
            loads_after: loads_before.clone(),
            loads_before,
            stddev_before,
            stddev_after: stddev_before,
            threshold,
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

        // Placement.
        let mut load = vec![0.0; np];
        let mut count = vec![0usize; np];
        let mut loc = vec![0usize; measured.len()];
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        for (i, m) in measured.iter().enumerate() {
            match cur[i] {
                Some(p) => {
                    loc[i] = p;
                    load[p] += usage[i];
                    count[p] += 1;
                }
                None if m.1.is_some() => known.push(i),
                None => unknown.push(i),
            }
        }
        plan.placed = known.len() + unknown.len();
        known.sort_by(|&a, &b| usage[b].total_cmp(&usage[a]).then(a.cmp(&b)));
        if !known.is_empty() {
            let mut heap: BinaryHeap<Reverse<(Key, usize, usize)>> = (0..np)
                .map(|p| Reverse((Key(load[p]), count[p], p)))
                .collect();
            for &i in &known {
                if let Some(Reverse((_, _, p))) = heap.pop() {
                    loc[i] = p;
                    load[p] += usage[i];
                    count[p] += 1;
                    heap.push(Reverse((Key(load[p]), count[p], p)));
                }
            }
        }
        if !unknown.is_empty() {
            let mut heap: BinaryHeap<Reverse<(usize, Key, usize)>> = (0..np)
                .map(|p| Reverse((count[p], Key(load[p]), p)))
                .collect();
            for &i in &unknown {
                if let Some(Reverse((_, _, p))) = heap.pop() {
                    loc[i] = p;
                    count[p] += 1;
                    heap.push(Reverse((count[p], Key(load[p]), p)));
                }
            }
        }

        // Balancing.
        let mut kind: Vec<Option<PinKind>> = vec![None; measured.len()];
        let any_known = measured.iter().any(|m| m.1.is_some());
        let sd = stddev(load.iter().copied());
        plan.decision = if !any_known {
            Decision::Warmup
        } else if sd <= threshold + EPS {
            self.over_streak = 0;
            Decision::Balanced
        } else {
            self.over_streak = self.over_streak.saturating_add(1);
            let needed = self.cfg.confirm.max(1);
            if sd <= 2.0 * threshold + EPS && self.over_streak < needed {
                Decision::Unconfirmed {
                    seen: self.over_streak,
                    needed,
                }
            } else {
                self.over_streak = 0;
                let mut b = Balancer::new(&self.cfg, &usage, &cur, &mut loc, load);
                b.run(&mut kind)
            }
        };

        // Final loads, recomputed from the placement.
        let mut after = vec![0.0; np];
        for (i, &p) in loc.iter().enumerate() {
            after[p] += usage[i];
        }
        plan.stddev_after = stddev(after.iter().copied());
        plan.loads_after = pcpus.iter().copied().zip(after).collect();

        for (i, (s, _)) in measured.iter().enumerate() {
            if cur[i] == Some(loc[i]) {
                continue;
            }
            plan.pins.push(Pin {
                domain: s.domain.clone(),
                name: s.name.clone(),
                vcpu: s.vcpu,
                pcpu: pcpus[loc[i]],
                from: match s.affinity.as_slice() {
                    [c] => Some(*c),
                    _ => None,
                },
                kind: if cur[i].is_none() {
                    PinKind::Placement
                } else {
                    kind[i].unwrap_or(PinKind::Move)
                },
            });
        }
        plan
    }
}

/// A candidate action of the local search.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Move vCPU `v` from pCPU `from` to `to`.
    Move { v: usize, from: usize, to: usize },
    /// Repartition the vCPUs of `s` and `t`: bit `j` of `mask` set means
    /// the `j`-th of `members[s] ++ members[t]` ends on `s`.
    Exchange { s: usize, t: usize, mask: u32 },
    /// Swap vCPU `a` on `s` with vCPU `b` on `t`.
    Swap {
        a: usize,
        s: usize,
        b: usize,
        t: usize,
    },
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    action: Action,
    /// Reduction of the sum of squared deviations.
    gain: f64,
    /// Pin changes.
    cost: usize,
}

/// The greedy local search over one placement.
struct Balancer<'a> {
    threshold: f64,
    min_gain: f64,
    max_moves: usize,
    usage: &'a [f64],
    /// Pin before this plan, to count pin changes.
    cur: &'a [Option<usize>],
    loc: &'a mut [usize],
    load: Vec<f64>,
    /// vCPUs with positive usage per pCPU, sorted by (usage, index).
    members: Vec<Vec<(f64, usize)>>,
}

fn cmp_member(a: &(f64, usize), b: &(f64, usize)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

impl<'a> Balancer<'a> {
    fn new(
        cfg: &VcpuConfig,
        usage: &'a [f64],
        cur: &'a [Option<usize>],
        loc: &'a mut [usize],
        load: Vec<f64>,
    ) -> Self {
        let mut members = vec![Vec::new(); load.len()];
        for (i, &p) in loc.iter().enumerate() {
            if usage[i] > 0.0 {
                members[p].push((usage[i], i));
            }
        }
        for m in &mut members {
            m.sort_by(cmp_member);
        }
        Balancer {
            threshold: cfg.threshold,
            min_gain: cfg.min_gain,
            max_moves: cfg.max_moves,
            usage,
            cur,
            loc,
            load,
            members,
        }
    }

    /// Whether moving `x` across gap `g` qualifies.
    fn qualifies(&self, g: f64, x: f64) -> bool {
        let n = narrowing(g, x);
        x > EPS && n > EPS && n >= self.min_gain - EPS
    }

    /// Best single move from `s` to `t`.
    fn best_move(&self, s: usize, t: usize) -> Option<Candidate> {
        let g = self.load[s] - self.load[t];
        if g <= 0.0 {
            return None;
        }
        let m = &self.members[s];
        let half = g / 2.0;
        let pos = m.partition_point(|e| e.0 < half);
        let mut best: Option<Candidate> = None;
        // Below half first (no flip), so it wins ties.
        let below = pos
            .checked_sub(1)
            .map(|j| m.partition_point(|e| e.0 < m[j].0));
        for j in [below, Some(pos)].into_iter().flatten() {
            let Some(&(x, v)) = m.get(j) else { continue };
            if !self.qualifies(g, x) {
                continue;
            }
            let gain = 2.0 * x * (g - x);
            if best.map_or(true, |b| gain > b.gain) {
                best = Some(Candidate {
                    action: Action::Move { v, from: s, to: t },
                    gain,
                    cost: 1,
                });
            }
        }
        best
    }

    /// Best swap of a vCPU on `s` with a lighter one on `t`.
    fn best_swap(&self, s: usize, t: usize) -> Option<Candidate> {
        let g = self.load[s] - self.load[t];
        if g <= 0.0 {
            return None;
        }
        let (ms, mt) = (&self.members[s], &self.members[t]);
        if ms.is_empty() || mt.is_empty() {
            return None;
        }
        let half = g / 2.0;
        let mut best: Option<Candidate> = None;
        let mut j = 0;
        for &(ua, a) in ms {
            let target = ua - half;
            while j < mt.len() && mt[j].0 < target {
                j += 1;
            }
            for k in [j.checked_sub(1), Some(j)].into_iter().flatten() {
                let Some(&(ub, b)) = mt.get(k) else { continue };
                let d = ua - ub;
                if !self.qualifies(g, d) {
                    continue;
                }
                let gain = 2.0 * d * (g - d);
                if best.map_or(true, |c| gain > c.gain) {
                    best = Some(Candidate {
                        action: Action::Swap { a, s, b, t },
                        gain,
                        cost: 2,
                    });
                }
            }
        }
        best
    }

    /// Best exact repartition of the vCPUs of `s` and `t` (only when they
    /// hold at most [`EXCHANGE_MAX_VCPUS`] busy vCPUs together).
    fn best_exchange(
        &self,
        s: usize,
        t: usize,
        ss: f64,
        reach: f64,
        budget: usize,
    ) -> Option<Candidate> {
        let g = self.load[s] - self.load[t];
        let (ms, mt) = (&self.members[s], &self.members[t]);
        let m = ms.len() + mt.len();
        if g <= 0.0 || m > EXCHANGE_MAX_VCPUS {
            return None;
        }
        let items: Vec<f64> = ms.iter().chain(mt).map(|e| e.0).collect();
        let on_s: f64 = ms.iter().map(|e| e.0).sum();
        let orig: u32 = (1u32 << ms.len()) - 1;
        let mut best: Option<Candidate> = None;
        for mask in 0..(1u32 << m) {
            let cost = (mask ^ orig).count_ones() as usize;
            if cost == 0 || cost > budget {
                continue;
            }
            let kept: f64 = (0..m)
                .filter(|j| mask >> j & 1 == 1)
                .map(|j| items[j])
                .sum();
            let x = on_s - kept;
            if !self.qualifies(g, x) {
                continue;
            }
            let c = Candidate {
                action: Action::Exchange { s, t, mask },
                gain: 2.0 * x * (g - x),
                cost,
            };
            if best.map_or(true, |b| Self::better(&c, &b, ss, reach)) {
                best = Some(c);
            }
        }
        best
    }

    fn sum_sq(&self) -> f64 {
        let mean = self.load.iter().sum::<f64>() / self.load.len() as f64;
        self.load.iter().map(|l| (l - mean) * (l - mean)).sum()
    }

    /// Whether `a` should be preferred over `b`, given the sum of squares
    /// now and the sum of squares at which the threshold is met.
    fn better(a: &Candidate, b: &Candidate, ss: f64, reach: f64) -> bool {
        let ra = ss - a.gain <= reach;
        let rb = ss - b.gain <= reach;
        match (ra, rb) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => a.cost < b.cost || (a.cost == b.cost && a.gain > b.gain),
            (false, false) => a.gain / a.cost as f64 > b.gain / b.cost as f64,
        }
    }

    fn run(&mut self, kind: &mut [Option<PinKind>]) -> Decision {
        let np = self.load.len();
        let reach = (self.threshold + EPS).powi(2) * np as f64;
        let (mut moves, mut swaps, mut spent) = (0, 0, 0);
        let mut capped = false;
        loop {
            let ss = self.sum_sq();
            if ss <= reach {
                break;
            }
            let budget = self.max_moves - spent;
            if budget == 0 {
                capped = true;
                break;
            }
            let hi = (0..np)
                .max_by(|&a, &b| self.load[a].total_cmp(&self.load[b]).then(b.cmp(&a)))
                .unwrap_or(0);
            let lo = (0..np)
                .min_by(|&a, &b| self.load[a].total_cmp(&self.load[b]).then(a.cmp(&b)))
                .unwrap_or(0);
            let mut best: Option<Candidate> = None;
            let consider = |c: Option<Candidate>, best: &mut Option<Candidate>| {
                if let Some(c) = c {
                    if c.cost <= budget && best.map_or(true, |b| Self::better(&c, &b, ss, reach)) {
                        *best = Some(c);
                    }
                }
            };
            for s in 0..np {
                consider(self.best_move(s, lo), &mut best);
            }
            for t in 0..np {
                consider(self.best_move(hi, t), &mut best);
            }
            consider(self.best_swap(hi, lo), &mut best);
            if best.is_none() {
                for s in 0..np {
                    consider(self.best_swap(s, lo), &mut best);
                }
                for t in 0..np {
                    consider(self.best_swap(hi, t), &mut best);
                }
            }
            if best.is_none() {
                // Stuck: try repartitioning small pairs exactly.
                consider(self.best_exchange(hi, lo, ss, reach, budget), &mut best);
                if np <= EXCHANGE_MAX_PCPUS {
                    for s in 0..np {
                        consider(self.best_exchange(s, lo, ss, reach, budget), &mut best);
                    }
                    for t in 0..np {
                        consider(self.best_exchange(hi, t, ss, reach, budget), &mut best);
                    }
                }
            }
            let Some(c) = best else {
                if budget < 2 && self.best_swap(hi, lo).is_some() {
                    capped = true;
                }
                break;
            };
            spent += c.cost;
            match c.action {
                Action::Move { v, from, to } => {
                    self.relocate(v, from, to);
                    kind[v] = Some(PinKind::Move);
                    moves += 1;
                }
                Action::Exchange { s, t, mask } => {
                    let ns = self.members[s].len();
                    let plan: Vec<(usize, usize, usize)> = self.members[s]
                        .iter()
                        .chain(&self.members[t])
                        .enumerate()
                        .filter_map(|(j, &(_, v))| match (j < ns, mask >> j & 1 == 1) {
                            (true, false) => Some((v, s, t)),
                            (false, true) => Some((v, t, s)),
                            _ => None,
                        })
                        .collect();
                    for (v, from, to) in plan {
                        self.relocate(v, from, to);
                        kind[v] = Some(PinKind::Swap);
                    }
                    swaps += 1;
                }
                Action::Swap { a, s, b, t } => {
                    self.relocate(a, s, t);
                    self.relocate(b, t, s);
                    kind[a] = Some(PinKind::Swap);
                    kind[b] = Some(PinKind::Swap);
                    swaps += 1;
                }
            }
        }
        if let Some(changed) = self.try_exact(reach) {
            for &v in &changed {
                kind[v] = Some(PinKind::Move);
            }
            return Decision::Rebalanced {
                moves: changed.len(),
                swaps: 0,
                capped: false,
            };
        }
        if moves + swaps == 0 && !capped {
            Decision::Unbalanceable
        } else {
            Decision::Rebalanced {
                moves,
                swaps,
                capped,
            }
        }
    }

    /// Pin changes of the current placement.
    fn changes(&self) -> usize {
        (0..self.loc.len())
            .filter(|&i| matches!(self.cur[i], Some(p) if p != self.loc[i]))
            .count()
    }

    /// On small instances, an exhaustive search over the placements of the
    /// busy vCPUs (at most [`EXACT_MAX_STATES`]) for, in order: reaching
    /// the threshold with the fewest pin changes, else the lowest std-dev,
    /// then the fewest changes. Replaces the greedy result if it reaches
    /// the threshold with fewer changes than the greedy result, or lowers
    /// the std-dev by at least `min_gain / 2` more. Returns the vCPUs whose
    /// pin changed.
    fn try_exact(&mut self, reach: f64) -> Option<Vec<usize>> {
        let np = self.load.len();
        let mut busy: Vec<usize> = self.members.iter().flatten().map(|e| e.1).collect();
        busy.sort_unstable();
        let k = busy.len();
        let states = u32::try_from(k)
            .ok()
            .and_then(|k| np.checked_pow(k))
            .filter(|&n| n <= EXACT_MAX_STATES)?;
        if k == 0 {
            return None;
        }
        let mean = self.load.iter().sum::<f64>() / np as f64;
        // Load of the zero-usage vCPUs is zero, so loads come from `busy`.
        let mut digits = vec![0usize; k];
        let mut loads = vec![0.0; np];
        // (reaches, changes, ss, digits)
        let mut best: Option<(bool, usize, f64, Vec<usize>)> = None;
        for _ in 0..states {
            loads.iter_mut().for_each(|l| *l = 0.0);
            let mut changes = 0;
            for (j, &v) in busy.iter().enumerate() {
                loads[digits[j]] += self.usage[v];
                if matches!(self.cur[v], Some(p) if p != digits[j]) {
                    changes += 1;
                }
            }
            if changes <= self.max_moves {
                let ss: f64 = loads.iter().map(|l| (l - mean) * (l - mean)).sum();
                let reaches = ss <= reach;
                let better = match &best {
                    None => true,
                    Some((br, bc, bss, _)) => match (reaches, *br) {
                        (true, false) => true,
                        (false, true) => false,
                        (true, true) => changes < *bc || (changes == *bc && ss < bss - EPS),
                        (false, false) => {
                            ss < bss - EPS || ((ss - bss).abs() <= EPS && changes < *bc)
                        }
                    },
                };
                if better {
                    best = Some((reaches, changes, ss, digits.clone()));
                }
            }
            // Next placement (mixed-radix counter).
            for d in digits.iter_mut() {
                *d += 1;
                if *d < np {
                    break;
                }
                *d = 0;
            }
        }
        let (reaches, changes, ss, digits) = best?;
        let (gss, gchanges) = (self.sum_sq(), self.changes());
        let sd = |ss: f64| (ss / np as f64).sqrt();
        let margin = (self.min_gain / 2.0).max(EPS);
        let take = if gss <= reach {
            reaches && changes < gchanges
        } else {
            reaches || sd(ss) < sd(gss) - margin
        };
        if !take {
            return None;
        }
        for (j, &v) in busy.iter().enumerate() {
            if self.loc[v] != digits[j] {
                let from = self.loc[v];
                self.relocate(v, from, digits[j]);
            }
        }
        let changed = (0..self.loc.len())
            .filter(|&i| matches!(self.cur[i], Some(p) if p != self.loc[i]))
            .collect();
        Some(changed)
    }

    fn relocate(&mut self, v: usize, from: usize, to: usize) {
        let e = (self.usage[v], v);
        if let Ok(j) = self.members[from].binary_search_by(|x| cmp_member(x, &e)) {
            self.members[from].remove(j);
        }
        let j = self.members[to]
            .binary_search_by(|x| cmp_member(x, &e))
            .unwrap_or_else(|j| j);
        self.members[to].insert(j, e);
        self.load[from] -= e.0;
        self.load[to] += e.0;
        self.loc[v] = to;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = 1_000_000_000;

    fn sample(dom: &str, vcpu: u32, cpu_time_ns: u64, affinity: &[u32]) -> VcpuSample {
        VcpuSample {
            domain: format!("uuid-{dom}"),
            name: dom.to_string(),
            vcpu,
            cpu_time_ns,
            affinity: affinity.to_vec(),
            running_on: affinity.first().copied(),
        }
    }

    /// A vCPU spec for table tests: (domain, vcpu, usage %, affinity).
    type Spec<'a> = (&'a str, u32, f64, &'a [u32]);

    fn snap_at(t: u64, pcpus: &[u32], specs: &[Spec<'_>]) -> Snapshot {
        Snapshot {
            monotonic_ns: t * SEC,
            pcpus: pcpus.to_vec(),
            vcpus: specs
                .iter()
                .map(|&(d, v, u, a)| sample(d, v, (u * 1e7 * t as f64).round() as u64, a))
                .collect(),
        }
    }

    /// Two intervals one second apart with constant usage and unchanged
    /// affinities; returns the scheduler and the second plan.
    fn measured_plan(cfg: VcpuConfig, pcpus: &[u32], specs: &[Spec<'_>]) -> (Scheduler, Plan) {
        let mut s = Scheduler::new(cfg);
        let first = s.plan(&snap_at(0, pcpus, specs));
        assert!(matches!(first.decision, Decision::Warmup | Decision::Idle));
        let p = s.plan(&snap_at(1, pcpus, specs));
        (s, p)
    }

    fn load_of(p: &Plan, cpu: u32) -> f64 {
        p.loads_after
            .iter()
            .find(|l| l.0 == cpu)
            .map_or(f64::NAN, |l| l.1)
    }

    /// Applies pins to samples (what the adapter does).
    fn apply(snap: &mut Snapshot, plan: &Plan) {
        for pin in &plan.pins {
            for s in snap.vcpus.iter_mut() {
                if s.domain == pin.domain && s.vcpu == pin.vcpu {
                    s.affinity = vec![pin.pcpu];
                    s.running_on = Some(pin.pcpu);
                }
            }
        }
    }

    #[test]
    fn all_on_one_four_equal_on_two_pcpus_takes_two_moves() {
        let specs: Vec<Spec<'_>> = ["a", "b", "c", "d"]
            .iter()
            .map(|d| (*d, 0, 25.0, &[0u32][..]))
            .collect();
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert_eq!(p.pins.len(), 2, "{p}");
        assert_eq!(
            p.decision,
            Decision::Rebalanced {
                moves: 2,
                swaps: 0,
                capped: false
            }
        );
        assert!(p.pins.iter().all(|x| x.pcpu == 1 && x.from == Some(0)));
        assert!(p.pins.iter().all(|x| x.kind == PinKind::Move));
        assert!((load_of(&p, 0) - 50.0).abs() < 1e-6);
        assert!((load_of(&p, 1) - 50.0).abs() < 1e-6);
        assert!((p.stddev_before - 50.0).abs() < 1e-6);
        assert!(p.stddev_after < 1e-6);
    }

    #[test]
    fn already_balanced_makes_no_move() {
        let specs: [Spec<'_>; 4] = [
            ("a", 0, 50.0, &[0]),
            ("b", 0, 50.0, &[0]),
            ("c", 0, 50.0, &[1]),
            ("d", 0, 50.0, &[1]),
        ];
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert!(p.pins.is_empty(), "{p}");
        assert_eq!(p.decision, Decision::Balanced);
        assert_eq!(p.loads_before, p.loads_after);
    }

    #[test]
    fn within_threshold_no_churn_even_if_improvable() {
        // 54 vs 46: std-dev 4 ≤ 5, a move of the 8 % vCPU would make 0, but no churn.
        let specs: [Spec<'_>; 3] = [
            ("a", 0, 46.0, &[0]),
            ("b", 0, 8.0, &[0]),
            ("c", 0, 46.0, &[1]),
        ];
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert!(p.pins.is_empty(), "{p}");
        assert_eq!(p.decision, Decision::Balanced);
    }

    #[test]
    fn mixed_heavy_light_is_fixed_by_a_swap() {
        // Heavies share pCPU0 (50 + 50), lights on pCPU1 (30 + 30).
        let specs: [Spec<'_>; 4] = [
            ("h1", 0, 50.0, &[0]),
            ("h2", 0, 50.0, &[0]),
            ("l1", 0, 30.0, &[1]),
            ("l2", 0, 30.0, &[1]),
        ];
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert_eq!(
            p.decision,
            Decision::Rebalanced {
                moves: 0,
                swaps: 1,
                capped: false
            },
            "{p}"
        );
        assert_eq!(p.pins.len(), 2);
        assert!(p.pins.iter().all(|x| x.kind == PinKind::Swap));
        assert!((load_of(&p, 0) - 80.0).abs() < 1e-6);
        assert!((load_of(&p, 1) - 80.0).abs() < 1e-6);
        // One heavy and one light per pCPU.
        let on = |cpu: u32| -> Vec<&str> {
            let mut v: Vec<&str> = specs
                .iter()
                .filter(|s| {
                    let pinned = p.pins.iter().find(|x| x.name == s.0).map(|x| x.pcpu);
                    pinned.unwrap_or(s.3[0]) == cpu
                })
                .map(|s| &s.0[..1])
                .collect();
            v.sort();
            v
        };
        assert_eq!(on(0), vec!["h", "l"]);
        assert_eq!(on(1), vec!["h", "l"]);
    }

    #[test]
    fn single_heavy_is_not_flipped() {
        // 100 on pCPU0, nothing on pCPU1: moving it just flips the imbalance.
        let specs: [Spec<'_>; 1] = [("a", 0, 100.0, &[0])];
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert!(p.pins.is_empty(), "{p}");
        assert_eq!(p.decision, Decision::Unbalanceable);
    }

    #[test]
    fn move_that_widens_the_pair_is_refused() {
        // 70 alone on pCPU0 vs 40 on pCPU1: gap 30; moving 70 would leave 110 vs 0.
        let specs: [Spec<'_>; 2] = [("a", 0, 70.0, &[0]), ("b", 0, 40.0, &[1])];
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert!(p.pins.is_empty(), "{p}");
        assert!(p.stddev_after <= p.stddev_before);
    }

    #[test]
    fn four_guests_by_four_vcpus_two_busy_two_idle() {
        // All 16 vCPUs on pCPU0; busy ones measure 100/8 = 12.5, idle ~0.5.
        let names = ["g1", "g2", "g3", "g4"];
        let mut specs: Vec<Spec<'_>> = Vec::new();
        for (gi, g) in names.iter().enumerate() {
            for v in 0..4 {
                let u = if gi < 2 { 12.5 } else { 0.5 };
                specs.push((g, v, u, &[0]));
            }
        }
        for pcpus in [&[0u32, 1][..], &[0, 1, 2, 3][..]] {
            let (_, p) = measured_plan(VcpuConfig::default(), pcpus, &specs);
            assert!(p.stddev_after <= 5.0, "{p}");
            assert!(matches!(
                p.decision,
                Decision::Rebalanced { capped: false, .. }
            ));
        }
    }

    #[test]
    fn unpinned_vcpus_are_hard_pinned_in_warmup_by_count() {
        let all: &[u32] = &[0, 1, 2, 3];
        let specs: Vec<Spec<'_>> = (0..6).map(|v| ("g", v, 50.0, all)).collect();
        let mut s = Scheduler::new(VcpuConfig::default());
        let p = s.plan(&snap_at(0, all, &specs));
        assert_eq!(p.decision, Decision::Warmup);
        assert_eq!(p.placed, 6);
        assert_eq!(p.pins.len(), 6);
        assert!(p
            .pins
            .iter()
            .all(|x| x.kind == PinKind::Placement && x.from.is_none()));
        let targets: Vec<u32> = p.pins.iter().map(|x| x.pcpu).collect();
        assert_eq!(targets, vec![0, 1, 2, 3, 0, 1]);
    }

    #[test]
    fn unpinned_vcpus_with_known_usage_are_placed_largest_first() {
        let both: &[u32] = &[0, 1];
        let specs: [Spec<'_>; 4] = [
            ("a", 0, 30.0, both),
            ("b", 0, 100.0, both),
            ("c", 0, 100.0, both),
            ("d", 0, 30.0, both),
        ];
        let (_, p) = measured_plan(VcpuConfig::default(), both, &specs);
        assert_eq!(p.pins.len(), 4);
        assert!((load_of(&p, 0) - 130.0).abs() < 1e-6, "{p}");
        assert!((load_of(&p, 1) - 130.0).abs() < 1e-6);
        // Multi-CPU affinity is not "pinned".
        assert_eq!(p.placed, 4);
    }

    #[test]
    fn vcpu_on_offline_pcpu_is_replaced() {
        // pCPU 2 went offline; its vCPU must move to a usable one.
        let specs: [Spec<'_>; 3] = [
            ("a", 0, 40.0, &[0]),
            ("b", 0, 40.0, &[2]),
            ("c", 0, 10.0, &[1]),
        ];
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert_eq!(p.pins.len(), 1, "{p}");
        let pin = &p.pins[0];
        assert_eq!((pin.name.as_str(), pin.pcpu, pin.from), ("b", 1, Some(2)));
        assert_eq!(pin.kind, PinKind::Placement);
        assert_eq!(p.loads_after, vec![(0, 40.0), (1, 50.0)]);
        // Before: b's load is not attributed to a usable pCPU.
        assert_eq!(p.loads_before, vec![(0, 40.0), (1, 10.0)]);
    }

    #[test]
    fn cpus_option_restricts_pcpus() {
        let cfg = VcpuConfig {
            cpus: Some(vec![2, 1]),
            ..VcpuConfig::default()
        };
        let all: &[u32] = &[0, 1, 2, 3];
        let specs: Vec<Spec<'_>> = (0..4).map(|v| ("g", v, 10.0, &[0u32][..])).collect();
        let mut s = Scheduler::new(cfg);
        let p = s.plan(&snap_at(0, all, &specs));
        assert_eq!(
            p.loads_after.iter().map(|l| l.0).collect::<Vec<_>>(),
            vec![1, 2]
        );
        let targets: Vec<u32> = p.pins.iter().map(|x| x.pcpu).collect();
        assert_eq!(targets, vec![1, 2, 1, 2]);
    }

    #[test]
    fn no_usable_pcpu_means_no_pin() {
        let cfg = VcpuConfig {
            cpus: Some(vec![9]),
            ..VcpuConfig::default()
        };
        let specs: [Spec<'_>; 1] = [("a", 0, 10.0, &[0, 1])];
        let mut s = Scheduler::new(cfg);
        let p = s.plan(&snap_at(0, &[0, 1], &specs));
        assert_eq!(p.decision, Decision::NoUsablePcpus);
        assert!(p.pins.is_empty());
        let p = Scheduler::new(VcpuConfig::default()).plan(&Snapshot::default());
        assert_eq!(p.decision, Decision::NoUsablePcpus);
        let p = Scheduler::new(VcpuConfig::default()).plan(&Snapshot {
            pcpus: vec![0, 1],
            ..Snapshot::default()
        });
        assert_eq!(p.decision, Decision::Idle);
        assert_eq!(p.loads_after, vec![(0, 0.0), (1, 0.0)]);
    }

    #[test]
    fn first_interval_moves_nothing_already_pinned() {
        let specs: Vec<Spec<'_>> = ["a", "b", "c", "d"]
            .iter()
            .map(|d| (*d, 0, 25.0, &[0u32][..]))
            .collect();
        let mut s = Scheduler::new(VcpuConfig::default());
        let p = s.plan(&snap_at(0, &[0, 1], &specs));
        assert_eq!(p.decision, Decision::Warmup);
        assert!(p.pins.is_empty());
        assert_eq!(s.usage("uuid-a", 0), None);
        let p = s.plan(&snap_at(1, &[0, 1], &specs));
        assert_eq!(p.pins.len(), 2);
        assert!((s.usage("uuid-a", 0).unwrap_or(0.0) - 25.0).abs() < 1e-9);
    }

    #[test]
    fn vanished_domain_is_forgotten_and_new_one_starts_fresh() {
        let mut s = Scheduler::new(VcpuConfig::default());
        let specs: [Spec<'_>; 2] = [("a", 0, 50.0, &[0]), ("b", 0, 50.0, &[1])];
        s.plan(&snap_at(0, &[0, 1], &specs));
        s.plan(&snap_at(1, &[0, 1], &specs));
        assert!(s.usage("uuid-b", 0).is_some());
        // b vanishes, c appears.
        let specs2: [Spec<'_>; 2] = [("a", 0, 50.0, &[0]), ("c", 0, 50.0, &[0])];
        let p = s.plan(&snap_at(2, &[0, 1], &specs2));
        assert_eq!(s.usage("uuid-b", 0), None);
        assert_eq!(s.usage("uuid-c", 0), None);
        // a is known, c (unknown usage, counted as 0) is left alone.
        assert!(p.pins.is_empty(), "{p}");
        assert!(!matches!(p.decision, Decision::Warmup));
        // b comes back later: it is new again (no stale delta).
        let specs3: [Spec<'_>; 2] = [("a", 0, 50.0, &[0]), ("b", 0, 50.0, &[1])];
        s.plan(&snap_at(3, &[0, 1], &specs3));
        assert_eq!(s.usage("uuid-b", 0), None);
    }

    #[test]
    fn counter_going_backwards_is_a_restart() {
        let mut s = Scheduler::new(VcpuConfig::default());
        let mk = |t: u64, ns: u64| Snapshot {
            monotonic_ns: t * SEC,
            pcpus: vec![0, 1],
            vcpus: vec![sample("a", 0, ns, &[0])],
        };
        s.plan(&mk(10, 50 * SEC));
        s.plan(&mk(11, 50 * SEC + SEC / 2));
        assert!((s.usage("uuid-a", 0).unwrap_or(0.0) - 50.0).abs() < 1e-9);
        s.plan(&mk(12, SEC / 10));
        assert_eq!(s.usage("uuid-a", 0), None);
        s.plan(&mk(13, SEC / 10 + SEC / 5));
        assert!((s.usage("uuid-a", 0).unwrap_or(0.0) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn usage_is_capped_and_same_snapshot_twice_keeps_usage() {
        let mut s = Scheduler::new(VcpuConfig::default());
        let mk = |t: u64, ns: u64| Snapshot {
            monotonic_ns: t,
            pcpus: vec![0],
            vcpus: vec![sample("a", 0, ns, &[0])],
        };
        s.plan(&mk(SEC, 0));
        s.plan(&mk(2 * SEC, SEC + SEC / 100));
        assert_eq!(s.usage("uuid-a", 0), Some(100.0));
        s.plan(&mk(2 * SEC, SEC + SEC / 100));
        assert_eq!(s.usage("uuid-a", 0), Some(100.0));
    }

    #[test]
    fn smoothing_damps_noise_and_adopts_jumps() {
        let mut s = Scheduler::new(VcpuConfig::default());
        let mut ns = 0u64;
        let mut t = 0u64;
        let mut step = |s: &mut Scheduler, u: f64| {
            t += SEC;
            ns += (u * 1e7) as u64;
            s.plan(&Snapshot {
                monotonic_ns: t,
                pcpus: vec![0],
                vcpus: vec![sample("a", 0, ns, &[0])],
            });
            s.usage("uuid-a", 0).unwrap_or(f64::NAN)
        };
        step(&mut s, 0.0);
        assert_eq!(step(&mut s, 30.0), 30.0);
        assert_eq!(step(&mut s, 36.0), 33.0); // noise: half-way
        assert_eq!(step(&mut s, 90.0), 90.0); // jump: adopted at once
    }

    #[test]
    fn noise_does_not_cause_repins() {
        // Balanced 2 + 2 at ~50 % each with ±4 points of noise.
        let mut s = Scheduler::new(VcpuConfig::default());
        let noise = [0.0, 4.0, -4.0, 3.0, -2.0, 4.0, -4.0, 1.0];
        let mut cum = [0u64; 4];
        for (k, n) in noise.iter().enumerate() {
            let mut vcpus = Vec::new();
            for (i, c) in cum.iter_mut().enumerate() {
                let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
                *c += ((50.0 + sign * n) * 1e7) as u64;
                vcpus.push(sample(&format!("g{i}"), 0, *c, &[(i / 2) as u32]));
            }
            let p = s.plan(&Snapshot {
                monotonic_ns: (k as u64 + 1) * SEC,
                pcpus: vec![0, 1],
                vcpus,
            });
            assert!(p.pins.is_empty(), "interval {k}: {p}");
        }
    }

    #[test]
    fn a_small_imbalance_must_persist_before_anything_moves() {
        // 4 vCPUs, 2 per pCPU; intervals where pCPU0's pair reads 6 points
        // higher each (smoothed: std-dev 6–10, over the threshold but not
        // twice it).
        let mut s = Scheduler::new(VcpuConfig::default());
        let mut cum = [0u64; 4];
        let mut plan_with = |k: u64, extra: f64, s: &mut Scheduler| {
            let mut vcpus = Vec::new();
            for (i, c) in cum.iter_mut().enumerate() {
                let pcpu = (i / 2) as u32;
                let u = if pcpu == 0 {
                    50.0 + extra
                } else {
                    50.0 - extra
                };
                *c += (u * 1e7) as u64;
                vcpus.push(sample(&format!("g{i}"), 0, *c, &[pcpu]));
            }
            s.plan(&Snapshot {
                monotonic_ns: (k + 1) * SEC,
                pcpus: vec![0, 1],
                vcpus,
            })
        };
        assert_eq!(plan_with(0, 0.0, &mut s).decision, Decision::Warmup);
        assert_eq!(plan_with(1, 0.0, &mut s).decision, Decision::Balanced);
        // A one-interval spike: waits, moves nothing.
        let p = plan_with(2, 6.0, &mut s);
        assert_eq!(
            p.decision,
            Decision::Unconfirmed { seen: 1, needed: 2 },
            "{p}"
        );
        assert!(p.pins.is_empty());
        // Back to normal: the streak resets.
        assert_eq!(plan_with(3, 0.0, &mut s).decision, Decision::Balanced);
        let p = plan_with(4, 6.0, &mut s);
        assert!(
            matches!(p.decision, Decision::Unconfirmed { seen: 1, .. }),
            "{p}"
        );
        // The same imbalance a second interval in a row is acted on.
        let p = plan_with(5, 6.0, &mut s);
        assert!(
            matches!(
                p.decision,
                Decision::Rebalanced { .. } | Decision::Unbalanceable
            ),
            "{p}"
        );
    }

    #[test]
    fn a_large_imbalance_is_fixed_at_once_even_with_confirmation() {
        let cfg = VcpuConfig {
            confirm: 5,
            ..VcpuConfig::default()
        };
        let specs: Vec<Spec<'_>> = (0..4).map(|v| ("g", v, 25.0, &[0u32][..])).collect();
        let (_, p) = measured_plan(cfg, &[0, 1], &specs);
        assert_eq!(p.pins.len(), 2, "{p}");
    }

    #[test]
    fn max_moves_caps_rebalancing() {
        let cfg = VcpuConfig {
            max_moves: 2,
            ..VcpuConfig::default()
        };
        let specs: Vec<Spec<'_>> = (0..8).map(|v| ("g", v, 12.5, &[0u32][..])).collect();
        let (_, p) = measured_plan(cfg, &[0, 1, 2, 3], &specs);
        assert_eq!(p.pins.len(), 2, "{p}");
        assert_eq!(
            p.decision,
            Decision::Rebalanced {
                moves: 2,
                swaps: 0,
                capped: true
            }
        );
        assert!(p.stddev_after < p.stddev_before);
    }

    #[test]
    fn prefers_one_move_that_reaches_threshold_over_a_swap() {
        // pCPU0: 40 + 20, pCPU1: 30. Moving 20 → 40/50 (sd 5) in one pin.
        let specs: [Spec<'_>; 3] = [
            ("a", 0, 40.0, &[0]),
            ("b", 0, 20.0, &[0]),
            ("c", 0, 30.0, &[1]),
        ];
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        assert_eq!(p.pins.len(), 1, "{p}");
        assert!(p.stddev_after <= 5.0 + 1e-9);
    }

    #[test]
    fn plans_are_deterministic_and_order_independent() {
        let specs: Vec<Spec<'_>> = (0..12)
            .map(|v| {
                (
                    "g",
                    v,
                    [10.0, 35.0, 35.0, 60.0][v as usize % 4],
                    &[0u32][..],
                )
            })
            .collect();
        let (_, p1) = measured_plan(VcpuConfig::default(), &[0, 1, 2], &specs);
        let (_, p2) = measured_plan(VcpuConfig::default(), &[0, 1, 2], &specs);
        assert_eq!(p1, p2);
        let mut rev = specs.clone();
        rev.reverse();
        let (_, p3) = measured_plan(VcpuConfig::default(), &[2, 1, 0], &rev);
        assert_eq!(p1, p3);
        // Duplicated samples are ignored.
        let mut dup = specs.clone();
        dup.extend_from_slice(&specs[..3]);
        let (_, p4) = measured_plan(VcpuConfig::default(), &[0, 1, 2], &dup);
        assert_eq!(p1, p4);
    }

    #[test]
    fn display_is_one_line_with_the_figures() {
        let specs: Vec<Spec<'_>> = ["a", "b", "c", "d"]
            .iter()
            .map(|d| (*d, 0, 25.0, &[0u32][..]))
            .collect();
        let (_, p) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        let line = p.to_string();
        assert_eq!(
            line,
            "loads 0:100.0 1:0.0 -> 0:50.0 1:50.0 | sd 50.0 -> 0.0 (thr 5.0) | \
             rebalanced: 2 move(s), 0 swap(s) | 2 pin(s), 0 placed"
        );
        assert_eq!(p.pins[0].to_string(), "a vCPU 0: pCPU 0 -> 1 (move)");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn parse_cpu_list_accepts_ranges_and_rejects_garbage() {
        assert_eq!(parse_cpu_list("0-3,8"), Ok(vec![0, 1, 2, 3, 8]));
        assert_eq!(parse_cpu_list(" 8, 0-1 ,1"), Ok(vec![0, 1, 8]));
        assert_eq!(parse_cpu_list("5"), Ok(vec![5]));
        assert_eq!(parse_cpu_list("2-2"), Ok(vec![2]));
        for bad in [
            "", " ", "0,,1", "a", "1-", "-1", "3-1", "1-2-3", "70000", "0,x",
        ] {
            let e = parse_cpu_list(bad);
            assert!(e.is_err(), "{bad:?} gave {e:?}");
        }
        let e = parse_cpu_list("3-1").err().unwrap_or_default();
        assert!(e.contains("backwards"), "{e}");
        let e = parse_cpu_list("0,x").err().unwrap_or_default();
        assert!(e.contains("\"x\" is not a CPU number"), "{e}");
    }

    #[test]
    fn set_config_keeps_history() {
        let specs: Vec<Spec<'_>> = (0..4).map(|v| ("g", v, 25.0, &[0u32][..])).collect();
        let (mut s, _) = measured_plan(VcpuConfig::default(), &[0, 1], &specs);
        s.set_config(VcpuConfig {
            max_moves: 1,
            ..VcpuConfig::default()
        });
        assert_eq!(s.config().max_moves, 1);
        let p = s.plan(&snap_at(2, &[0, 1], &specs));
        assert_eq!(p.pins.len(), 1, "no new warm-up: {p}");
    }

    #[test]
    fn config_validation() {
        assert_eq!(VcpuConfig::default().validate(), Ok(()));
        let bad = [
            VcpuConfig {
                threshold: -1.0,
                ..VcpuConfig::default()
            },
            VcpuConfig {
                smoothing: 0.0,
                ..VcpuConfig::default()
            },
            VcpuConfig {
                min_gain: f64::NAN,
                ..VcpuConfig::default()
            },
            VcpuConfig {
                cpus: Some(vec![]),
                ..VcpuConfig::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
            let s = Scheduler::new(c);
            assert!(s.config().threshold >= 0.0 && s.config().smoothing > 0.0);
        }
    }

    // ---- Simulator: a contention model driving several intervals. ----

    /// Each pCPU shares its 100 % among its vCPUs' demands, max-min fair.
    struct Sim {
        pcpus: Vec<u32>,
        now: u64,
        /// (sample, demand %)
        vcpus: Vec<(VcpuSample, f64)>,
        /// Load per pCPU measured over the last interval (the lab's view).
        measured: Vec<f64>,
    }

    impl Sim {
        fn new(pcpus: &[u32], vcpus: &[(&str, u32, f64, &[u32])]) -> Self {
            Sim {
                pcpus: pcpus.to_vec(),
                now: 0,
                vcpus: vcpus
                    .iter()
                    .map(|&(d, v, dem, a)| (sample(d, v, 0, a), dem))
                    .collect(),
                measured: vec![0.0; pcpus.len()],
            }
        }

        /// Where a vCPU runs: its pin, else spread over its affinity.
        fn runs_on(s: &VcpuSample) -> u32 {
            s.affinity[s.vcpu as usize % s.affinity.len()]
        }

        fn advance(&mut self) {
            let dt = SEC;
            self.now += dt;
            let mut got = vec![0.0; self.vcpus.len()];
            for &cpu in &self.pcpus {
                let mut on: Vec<usize> = (0..self.vcpus.len())
                    .filter(|&i| Self::runs_on(&self.vcpus[i].0) == cpu)
                    .collect();
                on.sort_by(|&a, &b| self.vcpus[a].1.total_cmp(&self.vcpus[b].1));
                let mut left = 100.0;
                for (k, &i) in on.iter().enumerate() {
                    let share = left / (on.len() - k) as f64;
                    got[i] = self.vcpus[i].1.min(share);
                    left -= got[i];
                }
            }
            self.measured = vec![0.0; self.pcpus.len()];
            for (i, (s, _)) in self.vcpus.iter_mut().enumerate() {
                s.cpu_time_ns += (got[i] * dt as f64 / 100.0).round() as u64;
                s.running_on = Some(Self::runs_on(s));
                if let Ok(p) = self.pcpus.binary_search(&Self::runs_on(s)) {
                    self.measured[p] += got[i];
                }
            }
        }

        fn snapshot(&self) -> Snapshot {
            Snapshot {
                monotonic_ns: self.now,
                pcpus: self.pcpus.clone(),
                vcpus: self.vcpus.iter().map(|v| v.0.clone()).collect(),
            }
        }

        fn apply(&mut self, plan: &Plan) {
            for pin in &plan.pins {
                for (s, _) in self.vcpus.iter_mut() {
                    if s.domain == pin.domain && s.vcpu == pin.vcpu {
                        s.affinity = vec![pin.pcpu];
                    }
                }
            }
        }

        fn measured_sd(&self) -> f64 {
            stddev(self.measured.iter().copied())
        }

        fn all_pinned(&self) -> bool {
            self.vcpus
                .iter()
                .all(|(s, _)| s.affinity.len() == 1 && self.pcpus.contains(&s.affinity[0]))
        }

        /// Runs `n` intervals; returns (pin changes, measured sd) per
        /// interval. Interval k plans on the usage measured since k−1.
        fn run(&mut self, sched: &mut Scheduler, n: usize) -> Vec<(usize, f64)> {
            let mut out = Vec::new();
            for _ in 0..n {
                let plan = sched.plan(&self.snapshot());
                self.apply(&plan);
                self.advance();
                out.push((plan.pins.len(), self.measured_sd()));
            }
            out
        }
    }

    #[test]
    fn sim_all_on_one_converges_within_three_intervals_then_stays() {
        let heavy: Vec<Spec<'_>> = ["a", "b", "c", "d"]
            .iter()
            .map(|d| (*d, 0, 100.0, &[0u32][..]))
            .collect();
        let mut sim = Sim::new(&[0, 1], &heavy);
        sim.advance(); // the load ran before kvmsched started
        let mut s = Scheduler::new(VcpuConfig::default());
        let r = sim.run(&mut s, 8);
        // Interval 1 warm-up, interval 2 moves two, measured balanced after.
        assert_eq!(r[0].0, 0, "{r:?}");
        assert_eq!(r[1].0, 2, "{r:?}");
        assert!(r[1].1 <= 5.0, "{r:?}");
        assert!(
            r[2..].iter().all(|&(pins, sd)| pins == 0 && sd <= 5.0),
            "{r:?}"
        );
    }

    #[test]
    fn sim_mixed_unpinned_ends_one_heavy_one_light_per_pcpu() {
        let both: &[u32] = &[0, 1];
        // Domain order puts both heavies on pCPU0 in the warm-up placement.
        let specs: [Spec<'_>; 4] = [
            ("a-heavy", 0, 100.0, both),
            ("b-light", 0, 30.0, both),
            ("c-heavy", 0, 100.0, both),
            ("d-light", 0, 30.0, both),
        ];
        let mut sim = Sim::new(both, &specs);
        let mut s = Scheduler::new(VcpuConfig::default());
        let r = sim.run(&mut s, 8);
        assert!(sim.all_pinned());
        assert!(
            r[2..].iter().all(|&(pins, sd)| pins == 0 && sd <= 5.0),
            "{r:?}"
        );
        for cpu in [0, 1] {
            let mut kinds: Vec<&str> = sim
                .vcpus
                .iter()
                .filter(|(v, _)| v.affinity == [cpu])
                .map(|(v, _)| &v.name[2..])
                .collect();
            kinds.sort();
            assert_eq!(kinds, ["heavy", "light"], "pCPU {cpu}");
        }
    }

    #[test]
    fn sim_mixed_heavies_together_are_swapped() {
        // Pinned so that the heavies share pCPU0: measured 50+50 vs 30+30.
        let specs: [Spec<'_>; 4] = [
            ("h1", 0, 100.0, &[0]),
            ("h2", 0, 100.0, &[0]),
            ("l1", 0, 30.0, &[1]),
            ("l2", 0, 30.0, &[1]),
        ];
        let mut sim = Sim::new(&[0, 1], &specs);
        sim.advance();
        let mut s = Scheduler::new(VcpuConfig::default());
        let r = sim.run(&mut s, 6);
        assert_eq!(r[1].0, 2, "{r:?}");
        assert!((sim.measured[0] - 100.0).abs() < 1e-6 && (sim.measured[1] - 100.0).abs() < 1e-6);
        assert!(r[2..].iter().all(|&(pins, _)| pins == 0), "{r:?}");
    }

    #[test]
    fn sim_seed_4x4_unpinned_balances_and_stays() {
        let all: &[u32] = &[0, 1];
        let mut specs: Vec<Spec<'_>> = Vec::new();
        for (gi, g) in ["g1", "g2", "g3", "g4"].iter().enumerate() {
            for v in 0..4 {
                specs.push((g, v, if gi < 2 { 100.0 } else { 1.0 }, all));
            }
        }
        let mut sim = Sim::new(all, &specs);
        let mut s = Scheduler::new(VcpuConfig::default());
        let r = sim.run(&mut s, 6);
        assert_eq!(r[0].0, 16, "all placed in warm-up: {r:?}");
        assert!(sim.all_pinned());
        assert!(r.iter().all(|&(_, sd)| sd <= 5.0), "{r:?}");
        assert!(r[1..].iter().all(|&(pins, _)| pins == 0), "{r:?}");
    }

    #[test]
    fn sim_three_heavies_on_two_pcpus_no_ping_pong() {
        // Indivisible: the best is 2 on one pCPU, 1 on the other.
        let specs: Vec<Spec<'_>> = ["a", "b", "c"]
            .iter()
            .map(|d| (*d, 0, 100.0, &[0u32][..]))
            .collect();
        let mut sim = Sim::new(&[0, 1], &specs);
        sim.advance();
        let mut s = Scheduler::new(VcpuConfig::default());
        let r = sim.run(&mut s, 10);
        let total: usize = r.iter().map(|x| x.0).sum();
        assert_eq!(total, 1, "{r:?}");
        assert!(r[2..].iter().all(|&(_, sd)| sd <= 5.0), "{r:?}");
    }

    #[test]
    fn sim_load_change_after_warmup_is_fixed_next_interval() {
        let specs: [Spec<'_>; 4] = [
            ("a", 0, 1.0, &[0]),
            ("b", 0, 1.0, &[0]),
            ("c", 0, 1.0, &[1]),
            ("d", 0, 1.0, &[1]),
        ];
        let mut sim = Sim::new(&[0, 1], &specs);
        let mut s = Scheduler::new(VcpuConfig::default());
        let r = sim.run(&mut s, 3);
        assert!(r.iter().all(|x| x.0 == 0));
        // a and b become busy (on the same pCPU); c and d stay idle.
        sim.vcpus[0].1 = 100.0;
        sim.vcpus[1].1 = 100.0;
        let r = sim.run(&mut s, 6);
        // First interval still plans on the old usage; the next one fixes it.
        assert_eq!(r[0].0, 0, "{r:?}");
        assert_eq!(r[1].0, 1, "{r:?}");
        assert!(r[1..].iter().all(|&(_, sd)| sd <= 5.0), "{r:?}");
        assert!(r[2..].iter().all(|&(pins, _)| pins == 0), "{r:?}");
    }

    // ---- Property tests. ----

    /// Lowest std-dev over all placements (small instances only).
    fn brute_force_best(usage: &[f64], np: usize) -> f64 {
        let n = usage.len();
        let mut best = f64::INFINITY;
        let total = np.pow(n as u32);
        for code in 0..total {
            let mut loads = vec![0.0; np];
            let mut c = code;
            for u in usage {
                loads[c % np] += u;
                c /= np;
            }
            best = best.min(stddev(loads.iter().copied()));
        }
        best
    }

    const IDS: [u32; 3] = [0, 2, 5];

    /// (domain, usage %, affinity); the vCPU number is the index.
    type OwnedSpec = (String, f64, Vec<u32>);

    fn instance() -> impl Strategy<Value = (usize, Vec<(u8, u8, bool)>)> {
        (
            1usize..=3,
            prop::collection::vec((0u8..=100, 0u8..4, any::<bool>()), 1..=8),
        )
    }

    fn specs_of(np: usize, raw: &[(u8, u8, bool)]) -> (Vec<u32>, Vec<OwnedSpec>) {
        let pcpus = IDS[..np].to_vec();
        let specs = raw
            .iter()
            .enumerate()
            .map(|(i, &(u, pin, floating))| {
                // pin index 3 is an offline pCPU (7).
                let aff = if floating {
                    pcpus.clone()
                } else if (pin as usize) < np {
                    vec![pcpus[pin as usize]]
                } else {
                    vec![7]
                };
                (format!("d{}", i / 2), f64::from(u), aff)
            })
            .collect();
        (pcpus, specs)
    }

    fn snap_of(t: u64, pcpus: &[u32], specs: &[OwnedSpec]) -> Snapshot {
        Snapshot {
            monotonic_ns: t * SEC,
            pcpus: pcpus.to_vec(),
            vcpus: specs
                .iter()
                .enumerate()
                .map(|(i, (d, u, a))| {
                    let mut s = sample(d, i as u32, (u * 1e7) as u64 * t, a);
                    s.running_on = None;
                    s
                })
                .collect(),
        }
    }

    fn hard_pinned(snap: &Snapshot) -> bool {
        snap.vcpus
            .iter()
            .all(|s| s.affinity.len() == 1 && snap.pcpus.contains(&s.affinity[0]))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn prop_plan_is_sound((np, raw) in instance(), exact in any::<bool>()) {
            let (pcpus, mut specs) = specs_of(np, &raw);
            // With `exact`, no hysteresis: the search itself must reach
            // max(threshold, optimum). With the default min_gain it may stop
            // up to a min_gain-sized step short of the optimum.
            let min_gain = if exact { 0.0 } else { DEFAULT_MIN_GAIN };
            let cfg = VcpuConfig { max_moves: 1000, min_gain, confirm: 1, ..VcpuConfig::default() };
            let mut s = Scheduler::new(cfg);

            // Interval 0: warm-up; everything gets hard-pinned.
            let mut snap = snap_of(0, &pcpus, &specs);
            let p0 = s.plan(&snap);
            prop_assert_eq!(p0.decision, Decision::Warmup);
            apply(&mut snap, &p0);
            prop_assert!(hard_pinned(&snap));
            for (sp, v) in specs.iter_mut().zip(&snap.vcpus) {
                sp.2 = v.affinity.clone();
            }

            // Interval 1: usage known.
            let mut snap = snap_of(1, &pcpus, &specs);
            let p1 = s.plan(&snap);
            prop_assert!(p1.stddev_after <= p1.stddev_before + 1e-9, "{}", p1);
            let usage: Vec<f64> = specs.iter().map(|x| x.1).collect();
            let best = brute_force_best(&usage, np);
            let slack = if exact { 1e-9 } else { DEFAULT_MIN_GAIN };
            prop_assert!(
                p1.stddev_after <= DEFAULT_THRESHOLD.max(best) + slack,
                "sd {} > max(thr, optimum {}): {}", p1.stddev_after, best, p1
            );
            if p1.stddev_before <= DEFAULT_THRESHOLD {
                prop_assert!(p1.pins.is_empty());
            }
            apply(&mut snap, &p1);
            prop_assert!(hard_pinned(&snap));
            for (sp, v) in specs.iter_mut().zip(&snap.vcpus) {
                sp.2 = v.affinity.clone();
            }

            // Interval 2: unchanged loads → no move.
            let p2 = s.plan(&snap_of(2, &pcpus, &specs));
            prop_assert!(p2.pins.is_empty(), "{}", p2);
            prop_assert!((p2.stddev_before - p1.stddev_after).abs() < 1e-6);
        }

        #[test]
        fn prop_measured_plan_never_worsens_and_pins_all((np, raw) in instance()) {
            // Initial affinities as generated (some floating, some offline).
            let (pcpus, specs) = specs_of(np, &raw);
            let mut s = Scheduler::new(VcpuConfig::default());
            s.plan(&snap_of(0, &pcpus, &specs));
            let mut snap = snap_of(1, &pcpus, &specs);
            let p = s.plan(&snap);
            apply(&mut snap, &p);
            prop_assert!(hard_pinned(&snap));
            let all_pinned_before = specs.iter().all(|x| x.2.len() == 1 && pcpus.contains(&x.2[0]));
            if all_pinned_before {
                prop_assert_eq!(p.placed, 0);
                prop_assert!(p.stddev_after <= p.stddev_before + 1e-9, "{}", p);
            }
            // Same input, fresh scheduler → same plan.
            let mut s2 = Scheduler::new(VcpuConfig::default());
            s2.plan(&snap_of(0, &pcpus, &specs));
            prop_assert_eq!(s2.plan(&snap_of(1, &pcpus, &specs)), p);
        }

        #[test]
        fn prop_sim_converges_and_stays(
            np in 2usize..=4,
            vcpus in prop::collection::vec((0u8..=100, 0u8..4, any::<bool>()), 1..=10),
        ) {
            let pcpus: Vec<u32> = (0..np as u32).collect();
            let names: Vec<String> = (0..vcpus.len()).map(|i| format!("d{}", i / 3)).collect();
            let all = pcpus.clone();
            let affs: Vec<Vec<u32>> = vcpus
                .iter()
                .map(|&(_, pin, floating)| {
                    if floating { all.clone() } else { vec![u32::from(pin) % np as u32] }
                })
                .collect();
            let specs: Vec<Spec<'_>> = vcpus
                .iter()
                .enumerate()
                .map(|(i, &(d, _, _))| (names[i].as_str(), i as u32, f64::from(d), affs[i].as_slice()))
                .collect();
            let mut sim = Sim::new(&pcpus, &specs);
            sim.advance();
            let mut s = Scheduler::new(VcpuConfig::default());
            let r = sim.run(&mut s, 20);
            prop_assert!(sim.all_pinned());
            // Under heavy contention measured usage shifts after each move,
            // so a few corrective intervals are allowed (each small one
            // confirmed over `confirm` = 2 intervals); then no churn.
            prop_assert!(r[14..].iter().all(|x| x.0 == 0), "{:?}", r);
        }
    }
}
