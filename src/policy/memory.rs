//! Memory coordinator policy (issue 4): balloon sizes for every domain, one
//! period at a time.
//!
//! Pure: plain snapshots in ([`DomainMem`], [`HostMem`]), a plan out
//! ([`MemPlan`]). No libvirt types, no I/O. The adapter reads
//! `virDomainMemoryStats`/bulk stats and `virNodeGetMemoryStats`, calls
//! [`Coordinator::plan`] and applies each [`SetMemory`] with
//! `virDomainSetMemoryFlags(..., VIR_DOMAIN_AFFECT_LIVE)`, in plan order.
//!
//! # Units
//! **KiB everywhere** (libvirt's balloon and node stats are KiB; `1 MiB =
//! 1024 KiB`, [`MIB`]). `last_update` is the balloon stats timestamp in
//! seconds (QEMU stamps it when the guest's report arrives); `now_ms` is any
//! monotonic host clock in milliseconds. The two clocks are never compared.
//!
//! # Figures per domain
//! - `free = unused` (guest `MemFree`), `used = available − unused`. `used`
//!   does not move when the balloon moves (the balloon shrinks `available`
//!   too), so its change over the guest's `last_update` clock is the
//!   consumption rate; the largest of the last [`MemConfig::rate_window`]
//!   positive rates is used (conservative for growth).
//! - `floor = min(max_kib, max(min_floor, used + target_free, per-domain floor))`.
//! - `horizon = rate × growth_lookahead_periods × max(period, stats interval)`:
//!   what the guest will eat before a grant decided now can be corrected by
//!   the next one (stats age + balloon latency + next period).
//!
//! # Stats lag and balloon latency
//! A `setmem` lands within a couple of seconds, but the guest's stats report
//! it only on a later sample. Every change is remembered (`from → to`) until
//! it is *reflected*: the balloon reached it (`actual` within
//! [`MemConfig::settle_tolerance_kib`]) **and** a sample newer than the one
//! seen at that moment arrived (`last_update` advanced past it). Until then a
//! sample may or may not include it, so:
//! - growth estimate `= unused + Σ(to − from)` of unreflected changes (a grant
//!   is not granted twice because the stats lag behind it);
//! - shrink estimate `= unused + Σ min(0, to − from)` (a lower bound of the
//!   true free memory), and nothing is shrunk while a change has not reached
//!   the balloon yet;
//! - a change that does not reach the balloon within
//!   [`MemConfig::settle_timeout_ms`] is abandoned (noted). A size change made
//!   by someone else is tracked the same way.
//!
//! # Each period
//! 1. **Trust only fresh stats.** Missing `unused`/`available`/`last_update`
//!    (no balloon driver, no stats period): never resized, noted once.
//!    `last_update` not advanced since the previous period (stale): never
//!    shrunk, never grown (the previous decision already used that sample),
//!    noted once per stale streak. First sample of a domain: may be grown,
//!    not shrunk until its stats are seen advancing. `last_update` going
//!    backwards (guest restarted): history dropped.
//! 2. **Grow** when the projected free `growth estimate − horizon` is below
//!    `target_free`: ask for `target + band/2 + horizon − growth estimate`
//!    more (the shortfall plus the consumption over the look-ahead), on top
//!    of any size still in flight, capped at `max_kib`.
//! 3. **Release** when the projected free `shrink estimate − horizon` is above
//!    `target + band`: give back `min(release_cap, release_fraction ×
//!    (projected − (target + band/2)))`, never below the floor. The band
//!    `[target, target + band]` is the dead band: no change inside it, and
//!    both directions aim at its middle, so nothing oscillates.
//! 4. **Host reserve.** `budget = host free + releases − reserve −
//!    grants still in flight`. If the grants wanted exceed it (or the host
//!    is already under its reserve), donors (fresh, settled domains above
//!    their floor) are shrunk further toward their floor, most free first,
//!    each still by at most `release_cap` per period, never below the target
//!    free, only as much as is short (noted). Then grants are made neediest first (lowest projected
//!    free), each capped by what is left of the budget (noted).
//! 5. Changes smaller than `min_step_kib` are not issued.
//!
//! # Guarantees (checked by the property tests)
//! - a shrink never goes below the domain's floor and never by more than
//!   `release_cap_kib`; a grow never goes above `max_kib`;
//! - if a plan grows anything, `host_free_before − Σgrow + Σrelease ≥
//!   host_reserve` (i.e. `host_free_after_kib ≥ host_reserve_kib`), where the
//!   grants still in flight from earlier periods are also subtracted; when the
//!   host starts below its reserve a grant is made only out of what donors
//!   give back in the same plan (so the host's figure never goes down);
//! - missing or stale stats: never shrunk; all domains in band with no
//!   consumption: no action.
//!
//! The host figure is the caller's (`free + buffers + cached` of
//! `virNodeGetMemoryStats`, close to `MemAvailable`). Memory granted in
//! earlier periods but not yet touched by the guest is not visible in it;
//! only grants still in flight are subtracted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

/// KiB in one MiB.
pub const MIB: u64 = 1024;

/// One domain's balloon figures for one period (KiB; see the module doc).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainMem {
    /// Key: history is kept per UUID.
    pub uuid: String,
    /// For display, notes and [`MemConfig::per_domain_floor`].
    pub name: String,
    /// Current balloon size (`VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON`);
    /// 0 = unknown (never resized).
    pub actual_kib: u64,
    /// Maximum memory of the domain (`virDomainGetMaxMemory`); 0 = unknown
    /// (never resized).
    pub max_kib: u64,
    /// Guest free memory (`..._UNUSED`).
    pub unused_kib: Option<u64>,
    /// Guest total usable by the kernel (`..._AVAILABLE`).
    pub available_kib: Option<u64>,
    /// Guest `MemAvailable` (`..._USABLE`); shown, not used for decisions.
    pub usable_kib: Option<u64>,
    /// Stats timestamp, seconds (`..._LAST_UPDATE`).
    pub last_update: Option<u64>,
    /// QEMU process RSS (`..._RSS`); shown, not used for decisions.
    pub rss_kib: Option<u64>,
}

/// Host memory for one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostMem {
    /// `free + buffers + cached` from `virNodeGetMemoryStats` (KiB).
    pub free_kib: u64,
}

/// Tunables (KiB unless named otherwise). See [`MemConfig::default`].
#[derive(Debug, Clone, PartialEq)]
pub struct MemConfig {
    /// Free memory each guest should keep (default 100 MiB).
    pub target_free_kib: u64,
    /// Dead band above the target: free in `[target, target + band]` is left
    /// alone (default 32 MiB).
    pub band_kib: u64,
    /// Share of the excess given back per period, `0.0..=1.0` (default 0.5).
    pub release_fraction: f64,
    /// Largest release of one domain in one period (default 128 MiB).
    pub release_cap_kib: u64,
    /// Smallest change issued (default 4 MiB).
    pub min_step_kib: u64,
    /// Lowest balloon size ever set by a shrink (default 200 MiB).
    pub min_floor_kib: u64,
    /// Host free memory never granted away (default 200 MiB).
    pub host_reserve_kib: u64,
    /// Periods of consumption granted ahead (default 3).
    pub growth_lookahead_periods: u32,
    /// Consumption samples remembered (default 3).
    pub rate_window: usize,
    /// Period assumed before two calls have been seen (default 2000 ms).
    pub default_period_ms: u64,
    /// A change not reached by the balloon within this is abandoned
    /// (default 10 000 ms).
    pub settle_timeout_ms: u64,
    /// `actual` this close to a request counts as reached (default 1 MiB).
    pub settle_tolerance_kib: u64,
    /// Per-domain floors by domain name (KiB), used when larger than the
    /// default floor.
    pub per_domain_floor: BTreeMap<String, u64>,
}

impl Default for MemConfig {
    fn default() -> Self {
        Self {
            target_free_kib: 100 * MIB,
            band_kib: 32 * MIB,
            release_fraction: 0.5,
            release_cap_kib: 128 * MIB,
            min_step_kib: 4 * MIB,
            min_floor_kib: 200 * MIB,
            host_reserve_kib: 200 * MIB,
            growth_lookahead_periods: 3,
            rate_window: 3,
            default_period_ms: 2000,
            settle_timeout_ms: 10_000,
            settle_tolerance_kib: MIB,
            per_domain_floor: BTreeMap::new(),
        }
    }
}

impl MemConfig {
    /// Lowest size a shrink may set: `min(max_kib, max(min_floor, used +
    /// target_free, per-domain floor))`.
    pub fn floor_kib(&self, name: &str, used_kib: u64, max_kib: u64) -> u64 {
        let own = self.per_domain_floor.get(name).copied().unwrap_or(0);
        self.min_floor_kib
            .max(used_kib.saturating_add(self.target_free_kib))
            .max(own)
            .min(max_kib)
    }

    /// Middle of the dead band: where both grows and releases aim.
    fn aim_kib(&self) -> u64 {
        self.target_free_kib.saturating_add(self.band_kib / 2)
    }

    fn band_top_kib(&self) -> u64 {
        self.target_free_kib.saturating_add(self.band_kib)
    }
}

/// Why a size is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Free memory projected above the band: part of the excess given back.
    Release {
        /// Shrink estimate of free memory (KiB).
        free_kib: u64,
        /// Projected free above the middle of the band (KiB).
        excess_kib: u64,
    },
    /// The host is short (grants wanted or its reserve): shrunk toward the
    /// floor.
    HostShort {
        /// Shrink estimate of free memory (KiB).
        free_kib: u64,
        /// The domain's floor (KiB).
        floor_kib: u64,
    },
    /// Free memory projected below the target.
    Grow {
        /// Growth estimate of free memory (KiB).
        free_kib: u64,
        /// Consumption rate (KiB/s).
        rate_kib_s: u64,
        /// Consumption expected over the look-ahead (KiB).
        lookahead_kib: u64,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Reason::Release {
                free_kib,
                excess_kib,
            } => write!(
                f,
                "release: free {}, excess {}",
                Mib(free_kib),
                Mib(excess_kib)
            ),
            Reason::HostShort {
                free_kib,
                floor_kib,
            } => write!(
                f,
                "host short: free {}, shrink toward floor {}",
                Mib(free_kib),
                Mib(floor_kib)
            ),
            Reason::Grow {
                free_kib,
                rate_kib_s,
                lookahead_kib,
            } => write!(
                f,
                "grow: free {}, consuming {}/s, look-ahead {}",
                Mib(free_kib),
                Mib(rate_kib_s),
                Mib(lookahead_kib)
            ),
        }
    }
}

/// One balloon change to apply (`virDomainSetMemoryFlags`, live, KiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetMemory {
    pub uuid: String,
    pub name: String,
    /// Balloon size seen this period.
    pub from_kib: u64,
    /// Size to set.
    pub to_kib: u64,
    pub reason: Reason,
}

impl SetMemory {
    /// `to − from` (KiB, negative for a release).
    pub fn delta_kib(&self) -> i64 {
        signed(self.to_kib) - signed(self.from_kib)
    }

    /// Grows the domain.
    pub fn is_grow(&self) -> bool {
        self.to_kib > self.from_kib
    }
}

impl fmt::Display for SetMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {} ({}) {}",
            self.name,
            Mib(self.from_kib),
            Mib(self.to_kib),
            Delta(self.delta_kib()),
            self.reason
        )
    }
}

/// Something the coordinator decided not to do, or wants said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// First period of this domain: not shrunk until its stats advance.
    Appeared,
    /// The domain is gone; its history is dropped.
    Vanished,
    /// No balloon stats (`unused`/`available`/`last_update` missing): never
    /// resized. Noted once until stats appear.
    NoStats,
    /// Balloon size or max memory unknown (0): never resized. Noted once.
    NoSize,
    /// `last_update` did not advance: not resized. Noted once per streak.
    Stale { last_update: u64 },
    /// `last_update` went backwards (guest restarted?): history dropped.
    StatsRestarted,
    /// A change has not reached the balloon yet: no shrink, no stacked grow
    /// unless needed.
    BalloonPending { requested_kib: u64, actual_kib: u64 },
    /// A change did not reach the balloon in time: abandoned.
    BalloonTimeout { requested_kib: u64, actual_kib: u64 },
    /// Growth wanted but capped by (or already at) the domain's max.
    AtMax { wanted_kib: u64, max_kib: u64 },
    /// Growth capped by the host reserve.
    HostReserveLimited { wanted_kib: u64, granted_kib: u64 },
    /// Shrunk beyond the gradual release toward its floor because the host
    /// is short.
    ShrunkForHost { extra_kib: u64 },
    /// (Host) donors could not cover what the host is short of.
    HostShortUnmet { short_kib: u64 },
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Note::Appeared => f.write_str("new domain: not shrunk until its stats advance"),
            Note::Vanished => f.write_str("domain gone: history dropped"),
            Note::NoStats => f.write_str("no balloon stats: not resized"),
            Note::NoSize => f.write_str("balloon size or max unknown: not resized"),
            Note::Stale { last_update } => {
                write!(f, "stale stats (last_update {last_update}): not resized")
            }
            Note::StatsRestarted => f.write_str("stats clock went back: history dropped"),
            Note::BalloonPending {
                requested_kib,
                actual_kib,
            } => write!(
                f,
                "balloon moving to {} (at {}): no new change unless needed",
                Mib(requested_kib),
                Mib(actual_kib)
            ),
            Note::BalloonTimeout {
                requested_kib,
                actual_kib,
            } => write!(
                f,
                "balloon never reached {} (at {}): request abandoned",
                Mib(requested_kib),
                Mib(actual_kib)
            ),
            Note::AtMax {
                wanted_kib,
                max_kib,
            } => write!(
                f,
                "wants {} more, capped at max {}",
                Mib(wanted_kib),
                Mib(max_kib)
            ),
            Note::HostReserveLimited {
                wanted_kib,
                granted_kib,
            } => write!(
                f,
                "host reserve: granted {} of {}",
                Mib(granted_kib),
                Mib(wanted_kib)
            ),
            Note::ShrunkForHost { extra_kib } => {
                write!(
                    f,
                    "host short: {} more taken toward the floor",
                    Mib(extra_kib)
                )
            }
            Note::HostShortUnmet { short_kib } => {
                write!(f, "host short by {} that no donor can give", Mib(short_kib))
            }
        }
    }
}

/// Per-domain figures of one period, for the one-line report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainLine {
    pub name: String,
    pub actual_kib: u64,
    /// `unused` as reported (None: no stats).
    pub free_kib: Option<u64>,
    /// Change planned this period (KiB, 0 if none).
    pub change_kib: i64,
}

/// Output of one period.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemPlan {
    /// Releases first, then grants neediest first: apply in this order.
    pub actions: Vec<SetMemory>,
    /// The releases of `actions`, to apply first.
    pub releases: Vec<SetMemory>,
    /// The grants of `actions`, neediest first, funded by `releases`.
    pub grants: Vec<SetMemory>,
    /// Reasoning for `--verbose`, keyed by domain name (`"host"` for the
    /// host).
    pub notes: Vec<(String, Note)>,
    /// Input order.
    pub domains: Vec<DomainLine>,
    pub host_free_before_kib: u64,
    /// `before − Σgrow + Σrelease`.
    pub host_free_after_kib: u64,
    pub host_reserve_kib: u64,
}

impl MemPlan {
    /// The grants still affordable when only `released_kib` of the planned
    /// releases took effect: all of them when every release did, else none.
    pub fn grants_funded(&self, released_kib: u64) -> Vec<SetMemory> {
        if released_kib >= self.released_kib() {
            self.grants.clone()
        } else {
            Vec::new()
        }
    }

    /// Sum of the grows (KiB).
    pub fn granted_kib(&self) -> u64 {
        self.actions
            .iter()
            .filter(|a| a.is_grow())
            .fold(0, |s, a| s.saturating_add(a.to_kib - a.from_kib))
    }

    /// Sum of the releases (KiB).
    pub fn released_kib(&self) -> u64 {
        self.actions
            .iter()
            .filter(|a| !a.is_grow())
            .fold(0, |s, a| s.saturating_add(a.from_kib - a.to_kib))
    }
}

impl fmt::Display for MemPlan {
    /// One line: host free before→after, then `name actual/free [change]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "host free {}->{} (reserve {})",
            Mib(self.host_free_before_kib),
            Mib(self.host_free_after_kib),
            Mib(self.host_reserve_kib)
        )?;
        for d in &self.domains {
            write!(f, " | {} {} free ", d.name, Mib(d.actual_kib))?;
            match d.free_kib {
                Some(v) => write!(f, "{}", Mib(v))?,
                None => f.write_str("?")?,
            }
            if d.change_kib != 0 {
                write!(f, " {}", Delta(d.change_kib))?;
            }
        }
        Ok(())
    }
}

/// KiB shown as rounded MiB.
struct Mib(u64);

impl fmt::Display for Mib {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}M", self.0.saturating_add(MIB / 2) / MIB)
    }
}

/// Signed KiB shown as rounded MiB with a sign.
struct Delta(i64);

impl fmt::Display for Delta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { '-' } else { '+' };
        write!(f, "{sign}{}", Mib(self.0.unsigned_abs()))
    }
}

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

/// A balloon change not yet reflected in the stats.
#[derive(Debug, Clone)]
struct Change {
    from_kib: u64,
    to_kib: u64,
    /// When we asked (None: someone else changed the size).
    issued_ms: Option<u64>,
    /// `last_update` seen when the balloon was first seen at `to`.
    settled_lu: Option<u64>,
}

impl Change {
    fn delta(&self) -> i128 {
        i128::from(self.to_kib) - i128::from(self.from_kib)
    }

    fn reached(&self, actual: u64, tol: u64) -> bool {
        if self.to_kib >= self.from_kib {
            actual.saturating_add(tol) >= self.to_kib
        } else {
            actual <= self.to_kib.saturating_add(tol)
        }
    }
}

/// What is remembered about a domain between periods.
#[derive(Debug, Clone, Default)]
struct History {
    name: String,
    /// Seen in an earlier period.
    seen: bool,
    prev_lu: Option<u64>,
    prev_used_kib: u64,
    /// Guest seconds between the last two fresh samples.
    stats_interval_s: Option<u64>,
    /// KiB/s, newest last.
    rates: VecDeque<i64>,
    changes: Vec<Change>,
    /// Balloon size expected now if nobody else touched it.
    expected_actual_kib: u64,
    /// Balloon size seen in the last period.
    observed_actual_kib: u64,
    noted_no_stats: bool,
    noted_stale: bool,
}

impl History {
    fn drop_samples(&mut self) {
        self.prev_lu = None;
        self.stats_interval_s = None;
        self.rates.clear();
        self.changes.clear();
    }

    fn unsettled(&self) -> Option<&Change> {
        self.changes.iter().rev().find(|c| c.settled_lu.is_none())
    }
}

/// A grow wanted this period.
#[derive(Debug, Clone, Copy)]
struct Want {
    /// Size the growth is on top of (grow in flight, else actual).
    base_kib: u64,
    amount_kib: u64,
    projected: i128,
    reason: Reason,
}

/// What a domain can give this period.
#[derive(Debug, Clone, Copy)]
struct Give {
    /// Gradual release (may be 0).
    normal_kib: u64,
    /// Most that may be taken when the host is short (≥ normal).
    capacity_kib: u64,
    projected: i128,
    free_kib: u64,
    excess_kib: u64,
}

/// Evaluation of one domain for one period.
#[derive(Debug)]
struct Eval {
    floor_kib: u64,
    grow: Option<Want>,
    give: Option<Give>,
    /// Grants in flight from earlier periods (KiB).
    in_flight_kib: u64,
    /// Release decided (KiB) and whether the host's shortage raised it.
    release_kib: u64,
    for_host: bool,
}

impl Eval {
    fn inert(in_flight_kib: u64) -> Self {
        Self {
            floor_kib: 0,
            grow: None,
            give: None,
            in_flight_kib,
            release_kib: 0,
            for_host: false,
        }
    }
}

/// The memory coordinator: config plus per-domain history.
#[derive(Debug, Clone)]
pub struct Coordinator {
    cfg: MemConfig,
    hist: BTreeMap<String, History>,
    prev_now_ms: Option<u64>,
    /// Domains with an action in the last plan (until `commit`).
    planned: Vec<String>,
}

impl Coordinator {
    /// A coordinator with no history. `release_fraction` is clamped to
    /// `0.0..=1.0` (NaN counts as 0), `rate_window` and `min_step_kib` to at
    /// least 1.
    pub fn new(mut cfg: MemConfig) -> Self {
        cfg.release_fraction = if cfg.release_fraction.is_nan() {
            0.0
        } else {
            cfg.release_fraction.clamp(0.0, 1.0)
        };
        cfg.rate_window = cfg.rate_window.max(1);
        cfg.min_step_kib = cfg.min_step_kib.max(1);
        Self {
            cfg,
            hist: BTreeMap::new(),
            prev_now_ms: None,
            planned: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &MemConfig {
        &self.cfg
    }

    /// Replaces the configuration (SIGHUP reload), keeping each domain's
    /// history so changes in flight are still accounted for.
    pub fn set_config(&mut self, cfg: MemConfig) {
        let hist = std::mem::take(&mut self.hist);
        let prev = self.prev_now_ms;
        *self = Coordinator::new(cfg);
        self.hist = hist;
        self.prev_now_ms = prev;
    }

    /// Records what of the last plan was applied: the changes of planned
    /// actions that were not applied are forgotten, so they are neither
    /// credited nor waited for.
    pub fn commit(&mut self, _now_ms: u64, applied: &[SetMemory]) {
        let planned = std::mem::take(&mut self.planned);
        for uuid in planned {
            if !applied.iter().any(|a| a.uuid == uuid) {
                self.action_failed(&uuid);
            }
        }
    }

    fn action_failed(&mut self, uuid: &str) {
        if let Some(h) = self.hist.get_mut(uuid) {
            h.changes.retain(|c| c.settled_lu.is_some());
            h.expected_actual_kib = h.observed_actual_kib;
        }
    }

    /// Plans one period. `now_ms`: monotonic host clock; `doms`: every
    /// running domain (a UUID given twice is used once).
    pub fn plan(&mut self, now_ms: u64, host: &HostMem, doms: &[DomainMem]) -> MemPlan {
        let period_ms = match self.prev_now_ms {
            Some(p) if now_ms > p => (now_ms - p).clamp(250, 60_000),
            _ => self.cfg.default_period_ms,
        };
        self.prev_now_ms = Some(now_ms);
        let mut notes = Vec::new();

        // Dedupe, and drop the history of domains that are gone.
        let mut seen = BTreeSet::new();
        let doms: Vec<&DomainMem> = doms
            .iter()
            .filter(|d| seen.insert(d.uuid.as_str()))
            .collect();
        self.hist.retain(|uuid, h| {
            let keep = seen.contains(uuid.as_str());
            if !keep {
                notes.push((h.name.clone(), Note::Vanished));
            }
            keep
        });

        let cfg = &self.cfg;
        let mut evals: Vec<Eval> = Vec::with_capacity(doms.len());
        for d in &doms {
            let h = self.hist.entry(d.uuid.clone()).or_default();
            evals.push(observe(cfg, h, now_ms, period_ms, d, &mut notes));
        }

        // Budget: host free − reserve − grants still in flight.
        let in_flight: i128 = evals.iter().map(|e| i128::from(e.in_flight_kib)).sum();
        let mut budget = i128::from(host.free_kib) - i128::from(cfg.host_reserve_kib) - in_flight;
        for e in &mut evals {
            if let Some(g) = e.give.filter(|g| g.normal_kib >= cfg.min_step_kib) {
                e.release_kib = g.normal_kib;
                budget += i128::from(g.normal_kib);
            }
        }
        let wanted: i128 = evals
            .iter()
            .filter_map(|e| e.grow.map(|w| i128::from(w.amount_kib)))
            .sum();

        // Host short: take more from donors, most free first.
        let mut short = wanted - budget;
        if short > 0 {
            let mut donors: Vec<usize> = (0..evals.len())
                .filter(|&i| evals[i].give.is_some())
                .collect();
            donors.sort_by_key(|&i| std::cmp::Reverse(evals[i].give.map_or(0, |g| g.projected)));
            for i in donors {
                if short <= 0 {
                    break;
                }
                let e = &mut evals[i];
                let Some(g) = e.give else { continue };
                let room = g.capacity_kib.saturating_sub(e.release_kib);
                let extra = to_u64(short.min(i128::from(room)));
                let total = e.release_kib + extra;
                // A release that only the host asked for still obeys the step.
                if extra == 0 || total < cfg.min_step_kib {
                    continue;
                }
                e.release_kib = total;
                e.for_host = true;
                short -= i128::from(extra);
                budget += i128::from(extra);
                notes.push((
                    doms[i].name.clone(),
                    Note::ShrunkForHost { extra_kib: extra },
                ));
            }
            if short > 0 {
                notes.push((
                    "host".to_string(),
                    Note::HostShortUnmet {
                        short_kib: to_u64(short),
                    },
                ));
            }
        }

        let mut actions = Vec::new();
        let mut change = vec![0i64; doms.len()];
        // Releases first.
        for (i, e) in evals.iter().enumerate() {
            let (Some(g), true) = (e.give, e.release_kib >= cfg.min_step_kib) else {
                continue;
            };
            let d = doms[i];
            let to = d.actual_kib - e.release_kib;
            let reason = if e.for_host {
                Reason::HostShort {
                    free_kib: g.free_kib,
                    floor_kib: e.floor_kib,
                }
            } else {
                Reason::Release {
                    free_kib: g.free_kib,
                    excess_kib: g.excess_kib,
                }
            };
            actions.push(SetMemory {
                uuid: d.uuid.clone(),
                name: d.name.clone(),
                from_kib: d.actual_kib,
                to_kib: to,
                reason,
            });
        }
        // Then grants, neediest first, within the budget.
        let mut needy: Vec<usize> = (0..evals.len())
            .filter(|&i| evals[i].grow.is_some())
            .collect();
        needy.sort_by_key(|&i| evals[i].grow.map_or(0, |w| w.projected));
        for i in needy {
            let Some(w) = evals[i].grow else { continue };
            let d = doms[i];
            let grant = to_u64(budget.min(i128::from(w.amount_kib)));
            if grant < w.amount_kib {
                notes.push((
                    d.name.clone(),
                    Note::HostReserveLimited {
                        wanted_kib: w.amount_kib,
                        granted_kib: if grant >= cfg.min_step_kib { grant } else { 0 },
                    },
                ));
            }
            if grant < cfg.min_step_kib {
                continue;
            }
            budget -= i128::from(grant);
            actions.push(SetMemory {
                uuid: d.uuid.clone(),
                name: d.name.clone(),
                from_kib: d.actual_kib,
                to_kib: w.base_kib + grant,
                reason: w.reason,
            });
        }

        // Remember what was asked.
        let index: BTreeMap<&str, usize> = doms
            .iter()
            .enumerate()
            .map(|(i, d)| (d.uuid.as_str(), i))
            .collect();
        for a in &actions {
            if let Some(&i) = index.get(a.uuid.as_str()) {
                change[i] = a.delta_kib();
            }
            if let Some(h) = self.hist.get_mut(&a.uuid) {
                let lu = h.prev_lu;
                let mut from = a.from_kib;
                if let Some(c) = h.changes.iter_mut().rev().find(|c| c.settled_lu.is_none()) {
                    if c.to_kib > c.from_kib {
                        // Stacked on a grow still in flight.
                        from = c.to_kib;
                    } else {
                        // A release still in flight is cut short here.
                        c.to_kib = a.from_kib;
                        c.settled_lu = lu;
                    }
                }
                h.changes.push(Change {
                    from_kib: from,
                    to_kib: a.to_kib,
                    issued_ms: Some(now_ms),
                    settled_lu: None,
                });
                h.expected_actual_kib = a.to_kib;
            }
        }

        let host_after =
            i128::from(host.free_kib) + signed_sum(&actions, false) - signed_sum(&actions, true);
        self.planned = actions.iter().map(|a| a.uuid.clone()).collect();
        let (grants, releases) = actions.iter().cloned().partition(SetMemory::is_grow);
        MemPlan {
            releases,
            grants,
            domains: doms
                .iter()
                .zip(change)
                .map(|(d, c)| DomainLine {
                    name: d.name.clone(),
                    actual_kib: d.actual_kib,
                    free_kib: d.unused_kib,
                    change_kib: c,
                })
                .collect(),
            actions,
            notes,
            host_free_before_kib: host.free_kib,
            host_free_after_kib: to_u64(host_after),
            host_reserve_kib: cfg.host_reserve_kib,
        }
    }
}

/// Σ|delta| of grows (`grow = true`) or releases.
fn signed_sum(actions: &[SetMemory], grow: bool) -> i128 {
    actions
        .iter()
        .filter(|a| a.is_grow() == grow)
        .map(|a| i128::from(a.delta_kib()).abs())
        .sum()
}

/// Updates a domain's history with this period's sample and says what it
/// wants or can give.
fn observe(
    cfg: &MemConfig,
    h: &mut History,
    now_ms: u64,
    period_ms: u64,
    d: &DomainMem,
    notes: &mut Vec<(String, Note)>,
) -> Eval {
    let first = !h.seen;
    h.seen = true;
    h.observed_actual_kib = d.actual_kib;
    h.name.clone_from(&d.name);
    let note = |notes: &mut Vec<(String, Note)>, n| notes.push((d.name.clone(), n));
    let tol = cfg.settle_tolerance_kib;

    let sized = d.actual_kib > 0 && d.max_kib > 0;
    let (Some(unused), Some(available), Some(lu), true) =
        (d.unused_kib, d.available_kib, d.last_update, sized)
    else {
        if !h.noted_no_stats {
            note(notes, if sized { Note::NoStats } else { Note::NoSize });
            h.noted_no_stats = true;
        }
        h.drop_samples();
        h.expected_actual_kib = d.actual_kib;
        return Eval::inert(0);
    };
    h.noted_no_stats = false;
    if first {
        note(notes, Note::Appeared);
    }
    if h.prev_lu.is_some_and(|p| lu < p) {
        note(notes, Note::StatsRestarted);
        h.drop_samples();
    }

    // Balloon changes: reached, reflected, abandoned, or made by others.
    for c in h.changes.iter_mut() {
        if c.settled_lu.is_none() && c.reached(d.actual_kib, tol) {
            c.settled_lu = Some(lu);
        }
    }
    h.changes.retain(|c| c.settled_lu.map_or(true, |s| lu <= s));
    let oldest = h
        .changes
        .iter()
        .filter(|c| c.settled_lu.is_none())
        .filter_map(|c| c.issued_ms)
        .min();
    if oldest.is_some_and(|t| now_ms.saturating_sub(t) > cfg.settle_timeout_ms) {
        if let Some(c) = h.unsettled() {
            note(
                notes,
                Note::BalloonTimeout {
                    requested_kib: c.to_kib,
                    actual_kib: d.actual_kib,
                },
            );
        }
        h.changes.retain(|c| c.settled_lu.is_some());
        h.expected_actual_kib = d.actual_kib;
    }
    if !first && h.unsettled().is_none() && d.actual_kib.abs_diff(h.expected_actual_kib) > tol {
        h.changes.push(Change {
            from_kib: h.expected_actual_kib,
            to_kib: d.actual_kib,
            issued_ms: None,
            settled_lu: Some(lu),
        });
    }
    let pending = h.unsettled().map(|c| c.to_kib);
    h.expected_actual_kib = pending.unwrap_or(d.actual_kib);
    let in_flight = pending.map_or(0, |p| p.saturating_sub(d.actual_kib));

    // Freshness and consumption rate.
    let used = available.saturating_sub(unused);
    let fresh = match h.prev_lu {
        None => None,
        Some(p) if lu > p => {
            let dt = lu - p;
            let rate = (signed(used) - signed(h.prev_used_kib)) / signed(dt);
            h.rates.push_back(rate);
            while h.rates.len() > cfg.rate_window {
                h.rates.pop_front();
            }
            h.stats_interval_s = Some(dt);
            Some(true)
        }
        Some(_) => Some(false),
    };
    h.prev_lu = Some(lu);
    h.prev_used_kib = used;
    if fresh == Some(false) {
        if !h.noted_stale {
            note(notes, Note::Stale { last_update: lu });
            h.noted_stale = true;
        }
        return Eval::inert(in_flight);
    }
    h.noted_stale = false;

    let rate = to_u64(i128::from(h.rates.iter().copied().max().unwrap_or(0)));
    let interval_ms = h
        .stats_interval_s
        .map_or(0, |s| s.saturating_mul(1000))
        .max(period_ms);
    let horizon =
        i128::from(rate) * i128::from(cfg.growth_lookahead_periods) * i128::from(interval_ms)
            / 1000;
    // An unsettled release counts only for what already landed: a grow
    // cuts it short.
    let actual = i128::from(d.actual_kib);
    let credit: i128 = h
        .changes
        .iter()
        .map(|c| match c.settled_lu {
            None if c.to_kib < c.from_kib => (actual - i128::from(c.from_kib)).clamp(c.delta(), 0),
            _ => c.delta(),
        })
        .sum();
    let credit_down: i128 = h.changes.iter().map(|c| c.delta().min(0)).sum();
    let grow_est = i128::from(unused) + credit;
    let shrink_est = i128::from(unused) + credit_down;
    let floor = cfg.floor_kib(&d.name, used, d.max_kib);
    let target = i128::from(cfg.target_free_kib);
    let mut eval = Eval::inert(in_flight);
    eval.floor_kib = floor;

    let projected = grow_est - horizon;
    if projected < target {
        let want = i128::from(cfg.aim_kib()) + horizon - grow_est;
        let base = pending.unwrap_or(0).max(d.actual_kib);
        let room = d.max_kib.saturating_sub(base);
        let amount = to_u64(want).min(room);
        if amount < to_u64(want) {
            note(
                notes,
                Note::AtMax {
                    wanted_kib: to_u64(want),
                    max_kib: d.max_kib,
                },
            );
        }
        if amount >= cfg.min_step_kib {
            eval.grow = Some(Want {
                base_kib: base,
                amount_kib: amount,
                projected,
                reason: Reason::Grow {
                    free_kib: to_u64(grow_est),
                    rate_kib_s: rate,
                    lookahead_kib: to_u64(horizon),
                },
            });
        }
        return eval;
    }
    if let Some(p) = pending {
        note(
            notes,
            Note::BalloonPending {
                requested_kib: p,
                actual_kib: d.actual_kib,
            },
        );
        return eval;
    }
    if fresh.is_none() {
        // First sample: nothing proves these stats are current.
        return eval;
    }
    let projected = shrink_est - horizon;
    let above_floor = d.actual_kib.saturating_sub(floor);
    let spare = to_u64(projected - target);
    let capacity = cfg.release_cap_kib.min(above_floor).min(spare);
    let excess = to_u64(projected - i128::from(cfg.aim_kib()));
    let normal = if projected > i128::from(cfg.band_top_kib()) {
        // Float → int `as` saturates; the fraction is clamped to 0..=1.
        ((excess as f64 * cfg.release_fraction) as u64).min(capacity)
    } else {
        0
    };
    if capacity > 0 {
        eval.give = Some(Give {
            normal_kib: normal,
            capacity_kib: capacity,
            projected,
            free_kib: to_u64(shrink_est),
            excess_kib: excess,
        });
    }
    eval
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KERNEL_MIB: u64 = 40;

    /// A domain whose kernel keeps 40 MiB: available = actual − 40 MiB.
    fn dom(name: &str, actual_mib: u64, max_mib: u64, unused_mib: u64, lu: u64) -> DomainMem {
        let actual = actual_mib * MIB;
        DomainMem {
            uuid: format!("uuid-{name}"),
            name: name.to_string(),
            actual_kib: actual,
            max_kib: max_mib * MIB,
            unused_kib: Some(unused_mib * MIB),
            available_kib: Some(actual - KERNEL_MIB * MIB),
            usable_kib: Some(unused_mib * MIB),
            last_update: Some(lu),
            rss_kib: Some(actual),
        }
    }

    fn host_mib(mib: u64) -> HostMem {
        HostMem {
            free_kib: mib * MIB,
        }
    }

    fn big_host() -> HostMem {
        host_mib(20 * 1024)
    }

    fn action<'a>(p: &'a MemPlan, name: &str) -> Option<&'a SetMemory> {
        p.actions.iter().find(|a| a.name == name)
    }

    fn has_note(p: &MemPlan, name: &str, f: impl Fn(&Note) -> bool) -> bool {
        p.notes.iter().any(|(n, note)| n == name && f(note))
    }

    /// A guest whose balloon follows each request before the next period and
    /// whose stats are fresh every period (no lag): free = actual − kernel −
    /// used.
    struct Guest {
        name: &'static str,
        actual_mib: u64,
        max_mib: u64,
        used_mib: u64,
    }

    impl Guest {
        fn snapshot(&self, lu: u64) -> DomainMem {
            let free = self.actual_mib - KERNEL_MIB - self.used_mib;
            dom(self.name, self.actual_mib, self.max_mib, free, lu)
        }
        fn free_mib(&self) -> u64 {
            self.actual_mib - KERNEL_MIB - self.used_mib
        }
        fn apply(&mut self, p: &MemPlan) {
            if let Some(a) = action(p, self.name) {
                self.actual_mib = a.to_kib / MIB;
            }
        }
    }

    #[test]
    fn first_sample_is_not_shrunk() {
        let mut c = Coordinator::new(MemConfig::default());
        let p = c.plan(0, &big_host(), &[dom("a", 1024, 2048, 300, 10)]);
        assert!(action(&p, "a").is_none());
        assert!(has_note(&p, "a", |n| *n == Note::Appeared));
    }

    #[test]
    fn guest_with_300mb_free_releases_gradually_to_target() {
        for (cap_mib, min_periods) in [(128, 3), (32, 6)] {
            let cfg = MemConfig {
                release_cap_kib: cap_mib * MIB,
                ..MemConfig::default()
            };
            let target = cfg.target_free_kib / MIB;
            let band_top = (cfg.target_free_kib + cfg.band_kib) / MIB;
            let mut c = Coordinator::new(cfg);
            // 300 MB ≈ 286 MiB free.
            let mut g = Guest {
                name: "a",
                actual_mib: 1024,
                max_mib: 2048,
                used_mib: 1024 - KERNEL_MIB - 286,
            };
            let mut steps = Vec::new();
            let mut periods = 0;
            for k in 0..40u64 {
                let p = c.plan(k * 2000, &big_host(), &[g.snapshot(100 + 2 * k)]);
                if let Some(a) = action(&p, "a") {
                    assert!(!a.is_grow(), "{p}");
                    steps.push((a.from_kib - a.to_kib) / MIB);
                }
                g.apply(&p);
                assert!(g.free_mib() >= target, "free {} < target", g.free_mib());
                if g.free_mib() <= band_top {
                    periods = k;
                    break;
                }
            }
            assert!(
                g.free_mib() <= band_top,
                "never reached the band: {steps:?}"
            );
            assert!(steps[0] <= cap_mib, "first step {} > cap", steps[0]);
            assert!(steps[0] < 200, "one jump: {steps:?}");
            assert!(steps.iter().all(|&s| s <= cap_mib), "{steps:?}");
            assert!(steps.len() >= 2, "not gradual: {steps:?}");
            assert!(periods >= min_periods, "{periods} periods: {steps:?}");
            if cap_mib == 32 {
                assert_eq!(steps[0], 32, "the cap binds first: {steps:?}");
            }
        }
    }

    #[test]
    fn short_guest_is_grown_to_at_least_target() {
        let mut c = Coordinator::new(MemConfig::default());
        let mut g = Guest {
            name: "a",
            actual_mib: 512,
            max_mib: 2048,
            used_mib: 512 - KERNEL_MIB - 40,
        };
        // Growth is allowed on the very first sample.
        let p = c.plan(0, &big_host(), &[g.snapshot(10)]);
        let a = action(&p, "a").expect("grown");
        assert!(a.is_grow());
        assert!(matches!(a.reason, Reason::Grow { .. }));
        g.apply(&p);
        assert!(g.free_mib() >= 100, "free {} after grow", g.free_mib());
        assert!(g.free_mib() <= 132, "overshoot: {}", g.free_mib());
    }

    #[test]
    fn release_stops_at_min_floor_and_per_domain_floor() {
        // min_floor: used 0, actual 230 MiB, 190 MiB free: the gradual step
        // (half of 74 MiB) would set 193 MiB, the floor keeps 200 MiB.
        let mut c = Coordinator::new(MemConfig::default());
        let d = dom("a", 230, 1024, 190, 1);
        c.plan(0, &big_host(), std::slice::from_ref(&d));
        let p = c.plan(
            2000,
            &big_host(),
            &[DomainMem {
                last_update: Some(3),
                ..d
            }],
        );
        assert_eq!(action(&p, "a").map(|a| a.to_kib), Some(200 * MIB), "{p}");

        // A per-domain floor larger than the default wins.
        let mut cfg = MemConfig::default();
        cfg.per_domain_floor.insert("b".into(), 1000 * MIB);
        let mut c = Coordinator::new(cfg);
        let d = dom("b", 1024, 2048, 500, 1);
        c.plan(0, &big_host(), std::slice::from_ref(&d));
        let p = c.plan(
            2000,
            &big_host(),
            &[DomainMem {
                last_update: Some(3),
                ..d
            }],
        );
        assert_eq!(action(&p, "b").map(|a| a.to_kib), Some(1000 * MIB), "{p}");

        // Already at the floor: nothing.
        let mut c = Coordinator::new(MemConfig::default());
        let d = dom("c", 200, 1024, 150, 1);
        c.plan(0, &big_host(), std::slice::from_ref(&d));
        let p = c.plan(
            2000,
            &big_host(),
            &[DomainMem {
                last_update: Some(3),
                ..d
            }],
        );
        assert!(p.actions.is_empty(), "{p}");
    }

    #[test]
    fn growth_never_exceeds_max() {
        let mut c = Coordinator::new(MemConfig::default());
        let p = c.plan(0, &big_host(), &[dom("a", 2000, 2048, 20, 1)]);
        let a = action(&p, "a").expect("grown");
        assert_eq!(a.to_kib, 2048 * MIB);
        assert!(has_note(&p, "a", |n| matches!(n, Note::AtMax { .. })));
        // At max: no action, noted.
        let mut c = Coordinator::new(MemConfig::default());
        let p = c.plan(0, &big_host(), &[dom("a", 2048, 2048, 20, 1)]);
        assert!(p.actions.is_empty());
        assert!(has_note(&p, "a", |n| matches!(n, Note::AtMax { .. })));
    }

    #[test]
    fn host_reserve_caps_grants_neediest_first() {
        // 50 MiB above the reserve; two guests want ~76 and ~96 MiB.
        let mut c = Coordinator::new(MemConfig::default());
        let host = host_mib(250);
        let p = c.plan(
            0,
            &host,
            &[dom("x", 512, 2048, 40, 1), dom("y", 512, 2048, 20, 1)],
        );
        assert!(p.granted_kib() <= 50 * MIB, "{p}");
        assert!(p.host_free_after_kib >= p.host_reserve_kib, "{p}");
        assert_eq!(p.actions.len(), 1, "{p:?}");
        assert_eq!(p.actions[0].name, "y", "neediest first");
        assert_eq!(p.actions[0].to_kib - p.actions[0].from_kib, 50 * MIB);
        assert!(has_note(&p, "x", |n| matches!(
            n,
            Note::HostReserveLimited { .. }
        )));
        assert!(has_note(&p, "y", |n| matches!(
            n,
            Note::HostReserveLimited { .. }
        )));

        // Over several periods of guests that keep asking, the host never
        // falls under its reserve.
        let mut c = Coordinator::new(MemConfig::default());
        let mut host_free = 400u64;
        let mut gs = [
            Guest {
                name: "x",
                actual_mib: 512,
                max_mib: 4096,
                used_mib: 400,
            },
            Guest {
                name: "y",
                actual_mib: 512,
                max_mib: 4096,
                used_mib: 420,
            },
        ];
        for k in 0..20u64 {
            let snaps: Vec<_> = gs.iter().map(|g| g.snapshot(1 + 2 * k)).collect();
            let p = c.plan(k * 2000, &host_mib(host_free), &snaps);
            if p.granted_kib() > 0 {
                assert!(p.host_free_after_kib >= 200 * MIB, "{p}");
            }
            for g in &mut gs {
                let before = g.actual_mib;
                g.apply(&p);
                host_free = host_free + before - g.actual_mib;
                g.used_mib += 20; // both keep consuming
                g.used_mib = g.used_mib.min(g.actual_mib - KERNEL_MIB);
            }
            assert!(host_free >= 200, "host {host_free} MiB at period {k}");
        }
    }

    #[test]
    fn donors_release_first_and_toward_floor_when_host_short() {
        let mut c = Coordinator::new(MemConfig::default());
        // Host exactly at its reserve: a grant must be funded by the donor.
        let host = host_mib(200);
        let donor = dom("donor", 2048, 4096, 400, 1);
        let needy = dom("needy", 512, 2048, 30, 1);
        c.plan(0, &host_mib(10_000), std::slice::from_ref(&donor));
        let p = c.plan(
            2000,
            &host,
            &[
                DomainMem {
                    last_update: Some(3),
                    ..donor
                },
                needy,
            ],
        );
        assert_eq!(p.actions.len(), 2, "{p:?}");
        assert!(!p.actions[0].is_grow(), "releases first: {p:?}");
        assert!(p.actions[1].is_grow());
        let released = p.released_kib();
        assert!(released <= MemConfig::default().release_cap_kib);
        assert!(p.granted_kib() <= released, "{p}");
        assert!(p.host_free_after_kib >= p.host_reserve_kib, "{p}");

        // Host under its reserve, nobody needs memory: a guest in the band
        // still gives toward its floor (free → target), said in the notes.
        let mut c = Coordinator::new(MemConfig::default());
        let d = dom("d", 1024, 2048, 120, 1);
        c.plan(0, &big_host(), std::slice::from_ref(&d));
        let p = c.plan(
            2000,
            &host_mib(100),
            &[DomainMem {
                last_update: Some(3),
                ..d
            }],
        );
        let a = action(&p, "d").expect("shrunk for the host");
        assert_eq!(
            a.from_kib - a.to_kib,
            20 * MIB,
            "down to free = target: {p}"
        );
        assert!(matches!(a.reason, Reason::HostShort { .. }));
        assert!(has_note(&p, "d", |n| matches!(
            n,
            Note::ShrunkForHost { .. }
        )));
        assert!(has_note(&p, "host", |n| matches!(
            n,
            Note::HostShortUnmet { .. }
        )));
    }

    #[test]
    fn missing_stats_never_resized_and_noted_once() {
        let mut c = Coordinator::new(MemConfig::default());
        let blind = |lu| DomainMem {
            unused_kib: None,
            available_kib: None,
            ..dom("a", 4096, 8192, 3000, lu)
        };
        let short = |lu| DomainMem {
            unused_kib: None,
            ..dom("b", 512, 8192, 10, lu)
        };
        let mut count = 0;
        for k in 0..5u64 {
            let p = c.plan(k * 2000, &host_mib(100), &[blind(k), short(k)]);
            assert!(p.actions.is_empty(), "{p:?}");
            count += p.notes.iter().filter(|(_, n)| *n == Note::NoStats).count();
        }
        assert_eq!(count, 2, "once per domain");

        // Stats but no balloon size (or no max): never resized either.
        let mut c = Coordinator::new(MemConfig::default());
        for k in 0..3u64 {
            let p = c.plan(
                k * 2000,
                &big_host(),
                &[
                    DomainMem {
                        actual_kib: 0,
                        ..dom("a", 512, 2048, 10, k)
                    },
                    DomainMem {
                        max_kib: 0,
                        ..dom("b", 4096, 8192, 3000, k)
                    },
                ],
            );
            assert!(p.actions.is_empty(), "{p:?}");
            let n = p.notes.iter().filter(|(_, n)| *n == Note::NoSize).count();
            assert_eq!(n, if k == 0 { 2 } else { 0 });
        }
    }

    #[test]
    fn stale_stats_never_resized() {
        let mut c = Coordinator::new(MemConfig::default());
        let fat = dom("fat", 4096, 8192, 3000, 7);
        let thin = dom("thin", 512, 2048, 60, 7);
        c.plan(0, &big_host(), &[fat.clone(), thin.clone()]);
        for k in 1..4u64 {
            // last_update stuck at 7.
            let p = c.plan(k * 2000, &big_host(), &[fat.clone(), thin.clone()]);
            assert!(p.actions.is_empty(), "{p:?}");
            let stale = p
                .notes
                .iter()
                .filter(|(_, n)| matches!(n, Note::Stale { .. }));
            assert_eq!(stale.count(), if k == 1 { 2 } else { 0 }, "once per streak");
        }
        // Fresh again: the fat guest gives, the thin one (grown on its first
        // sample) is left alone.
        let p = c.plan(
            8000,
            &big_host(),
            &[DomainMem {
                last_update: Some(9),
                ..fat
            }],
        );
        assert!(action(&p, "fat").is_some_and(|a| !a.is_grow()), "{p:?}");
    }

    #[test]
    fn steady_state_no_action() {
        let mut c = Coordinator::new(MemConfig::default());
        let ds = |lu| {
            vec![
                dom("a", 1024, 2048, 100, lu),
                dom("b", 512, 2048, 116, lu),
                dom("c", 2048, 2048, 132, lu),
                dom("d", 300, 300, 20, lu), // at max: noted, nothing to do
            ]
        };
        for k in 0..10u64 {
            let p = c.plan(k * 2000, &big_host(), &ds(100 + 2 * k));
            assert!(p.actions.is_empty(), "period {k}: {p}");
        }
    }

    #[test]
    fn domains_vanish_and_appear() {
        let mut c = Coordinator::new(MemConfig::default());
        c.plan(
            0,
            &big_host(),
            &[dom("a", 1024, 2048, 300, 1), dom("b", 1024, 2048, 300, 1)],
        );
        let p = c.plan(2000, &big_host(), &[dom("b", 1024, 2048, 300, 3)]);
        assert!(has_note(&p, "a", |n| *n == Note::Vanished));
        assert!(action(&p, "a").is_none());
        assert!(action(&p, "b").is_some());
        // "a" comes back (restarted): a new domain again, not shrunk at once.
        let p = c.plan(4000, &big_host(), &[dom("a", 1024, 2048, 300, 5)]);
        assert!(has_note(&p, "a", |n| *n == Note::Appeared));
        assert!(has_note(&p, "b", |n| *n == Note::Vanished));
        assert!(p.actions.is_empty());
        // A duplicate UUID is used once.
        let p = c.plan(
            6000,
            &big_host(),
            &[dom("a", 1024, 2048, 300, 7), dom("a", 1024, 2048, 300, 7)],
        );
        assert_eq!(p.actions.len(), 1);
        assert_eq!(p.domains.len(), 1);
    }

    #[test]
    fn lagging_stats_do_not_double_grant() {
        let mut c = Coordinator::new(MemConfig::default());
        let p = c.plan(0, &big_host(), &[dom("a", 512, 4096, 30, 1)]);
        let to = action(&p, "a").expect("grant").to_kib;
        // Balloon not there yet, fresh stats still from before: no new grant,
        // no shrink, pending noted.
        let p = c.plan(2000, &big_host(), &[dom("a", 512, 4096, 30, 3)]);
        assert!(p.actions.is_empty(), "stacked: {p}");
        assert!(has_note(&p, "a", |n| matches!(
            n,
            Note::BalloonPending { .. }
        )));
        // Balloon reached it, stats still from before the grant: no grant.
        let at = to / MIB;
        let before = DomainMem {
            actual_kib: to,
            ..dom("a", 512, 4096, 30, 5)
        };
        let p = c.plan(4000, &big_host(), &[before]);
        assert!(p.actions.is_empty(), "double grant: {p}");
        // Now the stats show it: in band, nothing.
        let p = c.plan(6000, &big_host(), &[dom("a", at, 4096, 30 + at - 512, 7)]);
        assert!(p.actions.is_empty(), "{p}");
    }

    #[test]
    fn balloon_that_never_moves_is_abandoned() {
        let mut c = Coordinator::new(MemConfig::default());
        assert!(!c
            .plan(0, &big_host(), &[dom("a", 512, 4096, 30, 1)])
            .actions
            .is_empty());
        let mut timed_out = false;
        for k in 1..10u64 {
            let p = c.plan(k * 2000, &big_host(), &[dom("a", 512, 4096, 30, 1 + 2 * k)]);
            timed_out |= has_note(&p, "a", |n| matches!(n, Note::BalloonTimeout { .. }));
            if timed_out {
                // Abandoned: the still-short guest is asked again.
                assert!(action(&p, "a").is_some_and(SetMemory::is_grow), "{p}");
                break;
            }
            assert!(p.actions.is_empty(), "{p}");
        }
        assert!(timed_out);
    }

    #[test]
    fn grow_cuts_a_pending_release_short() {
        let mut c = Coordinator::new(MemConfig::default());
        c.plan(0, &big_host(), &[dom("a", 1024, 2048, 400, 1)]);
        let p = c.plan(2000, &big_host(), &[dom("a", 1024, 2048, 400, 3)]);
        let r = action(&p, "a").expect("release").clone();
        assert!(!r.is_grow());
        // The balloon has not moved yet and the guest suddenly needs memory.
        let d = DomainMem {
            unused_kib: Some(20 * MIB),
            ..dom("a", 1024, 2048, 400, 5)
        };
        let p = c.plan(4000, &big_host(), &[d]);
        let g = action(&p, "a").expect("grow");
        assert!(g.is_grow(), "{p}");
        assert_eq!(g.from_kib, 1024 * MIB);
        assert!(g.to_kib >= 1024 * MIB + 96 * MIB, "{p}");
    }

    #[test]
    fn size_changed_by_someone_else_is_not_granted_twice() {
        let mut c = Coordinator::new(MemConfig::default());
        c.plan(0, &big_host(), &[dom("a", 1024, 4096, 110, 1)]);
        // Someone set 2048 MiB; the stats still show the old balloon.
        let d = DomainMem {
            actual_kib: 2048 * MIB,
            ..dom("a", 1024, 4096, 90, 3)
        };
        let p = c.plan(2000, &big_host(), &[d]);
        assert!(p.actions.is_empty(), "{p}");
    }

    #[test]
    fn failed_action_is_forgotten() {
        let mut c = Coordinator::new(MemConfig::default());
        let p = c.plan(0, &big_host(), &[dom("a", 512, 4096, 30, 1)]);
        assert!(!p.actions.is_empty());
        c.action_failed("uuid-a");
        let p = c.plan(2000, &big_host(), &[dom("a", 512, 4096, 30, 3)]);
        assert!(action(&p, "a").is_some_and(SetMemory::is_grow), "{p}");
    }

    #[test]
    fn one_line_report() {
        let mut c = Coordinator::new(MemConfig::default());
        let p = c.plan(
            0,
            &big_host(),
            &[
                dom("web", 512, 2048, 30, 1),
                DomainMem {
                    unused_kib: None,
                    ..dom("db", 1024, 2048, 0, 1)
                },
            ],
        );
        let line = p.to_string();
        assert!(!line.contains('\n'));
        assert!(line.starts_with("host free 20480M->"), "{line}");
        assert!(line.contains("| web 512M free 30M +"), "{line}");
        assert!(line.contains("| db 1024M free ?"), "{line}");
        let a = p.actions[0].to_string();
        assert!(a.starts_with("web: 512M -> "), "{a}");
        assert!(a.contains("grow: free 30M"), "{a}");
    }

    // ---- Property tests ------------------------------------------------

    #[derive(Debug, Clone)]
    struct PDom {
        present: bool,
        stats: bool,
        lu_step: u64, // 0: stale
        actual: u64,
        max: u64,
        used: u64,
        unused: u64,
    }

    fn pdom() -> impl Strategy<Value = PDom> {
        (
            any::<bool>(),
            prop::bool::weighted(0.85),
            prop_oneof![Just(0u64), Just(1), Just(2), Just(5)],
            64 * MIB..8192 * MIB,
            64 * MIB..8192 * MIB,
            0..4096 * MIB,
            0..4096 * MIB,
        )
            .prop_map(
                |(present, stats, lu_step, actual, max, used, unused)| PDom {
                    present: present || lu_step != 5,
                    stats,
                    lu_step,
                    actual,
                    max,
                    used,
                    unused,
                },
            )
    }

    fn pcfg() -> impl Strategy<Value = MemConfig> {
        (
            0..300 * MIB,
            0..100 * MIB,
            0.0..1.0f64,
            0..256 * MIB,
            0..16 * MIB,
            0..512 * MIB,
            0..2048 * MIB,
            0..5u32,
        )
            .prop_map(|(t, b, f, cap, step, floor, reserve, la)| MemConfig {
                target_free_kib: t,
                band_kib: b,
                release_fraction: f,
                release_cap_kib: cap,
                min_step_kib: step,
                min_floor_kib: floor,
                host_reserve_kib: reserve,
                growth_lookahead_periods: la,
                ..MemConfig::default()
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Over random sequences of periods (domains present or not, stats
        /// missing, stale or fresh, any sizes, host anywhere): every shrink
        /// stays at or above the floor, by at most the cap, and only on fresh
        /// stats seen advancing; every grow stays at or below max and never
        /// on stale or missing stats; if anything is granted,
        /// host_free − Σgrow + Σrelease ≥ reserve.
        #[test]
        fn invariants_hold(
            cfg in pcfg(),
            periods in prop::collection::vec(
                (0..4096 * MIB, prop::collection::vec(pdom(), 4)), 1..8),
        ) {
            let mut c = Coordinator::new(cfg.clone());
            // Last lu seen per domain index in the previous period (None: absent
            // or without stats).
            let mut prev: [Option<u64>; 4] = [None; 4];
            let mut lus = [1000u64; 4];
            for (k, (host_free, ps)) in periods.iter().enumerate() {
                let mut doms = Vec::new();
                let mut now_prev = [None; 4];
                for (i, p) in ps.iter().enumerate() {
                    if !p.present {
                        continue;
                    }
                    lus[i] += p.lu_step;
                    let d = DomainMem {
                        uuid: format!("u{i}"),
                        name: format!("d{i}"),
                        actual_kib: p.actual,
                        max_kib: p.max,
                        unused_kib: p.stats.then_some(p.unused),
                        available_kib: Some(p.used + p.unused),
                        usable_kib: None,
                        last_update: Some(lus[i]),
                        rss_kib: None,
                    };
                    if p.stats {
                        now_prev[i] = Some(lus[i]);
                    }
                    doms.push((i, d));
                }
                let input: Vec<DomainMem> = doms.iter().map(|(_, d)| d.clone()).collect();
                let plan = c.plan(k as u64 * 2000, &HostMem { free_kib: *host_free }, &input);
                for a in &plan.actions {
                    let (i, d) = doms.iter().find(|(_, d)| d.uuid == a.uuid).expect("known domain");
                    let p = &ps[*i];
                    prop_assert_eq!(a.from_kib, d.actual_kib);
                    prop_assert!(a.from_kib.abs_diff(a.to_kib) >= cfg.min_step_kib.max(1), "{}", a);
                    prop_assert!(p.stats, "resized without stats: {}", a);
                    prop_assert!(prev[*i] != Some(lus[*i]), "resized on stale stats: {}", a);
                    if a.is_grow() {
                        prop_assert!(a.to_kib <= d.max_kib, "above max: {}", a);
                    } else {
                        let floor = cfg.floor_kib(&d.name, p.used, p.max);
                        prop_assert!(a.to_kib >= floor, "below floor {}: {}", floor, a);
                        prop_assert!(a.from_kib - a.to_kib <= cfg.release_cap_kib, "over cap: {}", a);
                        prop_assert!(prev[*i].is_some_and(|l| lus[*i] > l), "shrunk unproven: {}", a);
                    }
                }
                let grants = plan.granted_kib();
                let releases = plan.released_kib();
                if grants > 0 {
                    prop_assert!(
                        u128::from(*host_free) + u128::from(releases)
                            >= u128::from(grants) + u128::from(cfg.host_reserve_kib),
                        "reserve broken: {}", plan
                    );
                    prop_assert!(plan.host_free_after_kib >= cfg.host_reserve_kib);
                }
                let first_grow = plan.actions.iter().position(SetMemory::is_grow);
                let last_release = plan.actions.iter().rposition(|a| !a.is_grow());
                if let (Some(g), Some(r)) = (first_grow, last_release) {
                    prop_assert!(r < g, "a release after a grant");
                }
                prev = now_prev;
            }
        }

        /// All guests inside the band, not consuming, fresh stats, host
        /// above its reserve: no action, period after period.
        #[test]
        fn steady_state_is_quiet(
            guests in prop::collection::vec((0..=32 * MIB, 64 * MIB..4096 * MIB, 0..=1024 * MIB), 1..6),
            periods in 2..6u64,
        ) {
            let cfg = MemConfig::default();
            let mut c = Coordinator::new(cfg.clone());
            for k in 0..periods {
                let doms: Vec<DomainMem> = guests.iter().enumerate().map(|(i, &(f, used, head))| {
                    let unused = cfg.target_free_kib + f;
                    let actual = used + unused + KERNEL_MIB * MIB;
                    DomainMem {
                        uuid: format!("u{i}"),
                        name: format!("d{i}"),
                        actual_kib: actual,
                        max_kib: actual + head,
                        unused_kib: Some(unused),
                        available_kib: Some(used + unused),
                        usable_kib: None,
                        last_update: Some(50 + 2 * k),
                        rss_kib: None,
                    }
                }).collect();
                let plan = c.plan(k * 2000, &HostMem { free_kib: 4096 * MIB }, &doms);
                prop_assert!(plan.actions.is_empty(), "{}", plan);
            }
        }
    }

    // ---- Simulator -----------------------------------------------------

    struct SimReport {
        min_free_consuming_mib: f64,
        reached_max_at_s: Option<f64>,
        largest_release_mib: u64,
        largest_release_after_free_mib: u64,
        periods_to_target: Option<u64>,
        oom: u32,
        releases_after_free: Vec<u64>,
    }

    /// One guest (kernel 40 MiB, 80 MiB used at rest, balloon 512 MiB, max
    /// 2048 MiB) whose program eats 15 MB/s until it has 1778 MiB, holds 10 s
    /// and frees everything. The guest samples its stats every 2 s; the
    /// coordinator sees the sample of one stats period earlier; a `setmem`
    /// lands 1 s after it is issued. Returns the figures.
    fn simulate(period_ms: u64, phase_ms: u64) -> SimReport {
        let cfg = MemConfig::default();
        let band_top = (cfg.target_free_kib + cfg.band_kib) as f64;
        let mut c = Coordinator::new(cfg.clone());
        let max = 2048.0 * MIB as f64;
        let kernel = (KERNEL_MIB * MIB) as f64;
        let base_used = 80.0 * MIB as f64;
        let eat = 15e6 / 1024.0; // KiB/s
        let stop_used = base_used + 1778.0 * MIB as f64;
        let mut used = base_used;
        let mut actual = 512.0 * MIB as f64;
        let mut pending: Vec<(u64, u64)> = Vec::new();
        let mut samples: Vec<DomainMem> = Vec::new();
        let mut hold_until = None;
        let mut freed_at: Option<u64> = None;
        let mut r = SimReport {
            min_free_consuming_mib: f64::MAX,
            reached_max_at_s: None,
            largest_release_mib: 0,
            largest_release_after_free_mib: 0,
            periods_to_target: None,
            oom: 0,
            releases_after_free: Vec::new(),
        };
        let mut periods_since_free = 0;
        let tick = 100u64;
        let mut t = 0u64;
        while t <= 400_000 {
            // Guest program.
            match (hold_until, freed_at) {
                (None, None) => {
                    used += eat * tick as f64 / 1000.0;
                    if used >= stop_used {
                        used = stop_used;
                        hold_until = Some(t + 10_000);
                    }
                }
                (Some(h), None) if t >= h => {
                    used = base_used;
                    freed_at = Some(t);
                }
                _ => {}
            }
            // Balloon.
            pending.retain(|&(at, to)| {
                if at <= t {
                    actual = to as f64;
                    false
                } else {
                    true
                }
            });
            let free = actual - kernel - used;
            if free < 0.0 {
                r.oom += 1;
                used = actual - kernel;
            }
            if freed_at.is_none() && actual < max {
                r.min_free_consuming_mib = r.min_free_consuming_mib.min(free / MIB as f64);
            }
            if actual >= max && r.reached_max_at_s.is_none() {
                r.reached_max_at_s = Some(t as f64 / 1000.0);
            }
            // Guest stats every 2 s.
            if t % 2000 == 0 {
                let unused = (actual - kernel - used).max(0.0) as u64;
                samples.push(DomainMem {
                    uuid: "u".into(),
                    name: "consumer".into(),
                    actual_kib: 0,
                    max_kib: max as u64,
                    unused_kib: Some(unused),
                    available_kib: Some((actual - kernel) as u64),
                    usable_kib: Some(unused),
                    last_update: Some(1_000 + t / 1000),
                    rss_kib: None,
                });
            }
            // Coordinator.
            if t >= phase_ms && (t - phase_ms) % period_ms == 0 {
                // The newest sample at least one stats period old.
                let seen = samples
                    .iter()
                    .rev()
                    .find(|s| s.last_update.unwrap_or(0) + 2 <= 1_000 + t / 1000);
                let d = match seen {
                    Some(s) => DomainMem {
                        actual_kib: actual as u64,
                        ..s.clone()
                    },
                    None => DomainMem {
                        uuid: "u".into(),
                        name: "consumer".into(),
                        actual_kib: actual as u64,
                        max_kib: max as u64,
                        ..DomainMem::default()
                    },
                };
                let p = c.plan(
                    t,
                    &HostMem {
                        free_kib: 20 * 1024 * MIB,
                    },
                    &[d],
                );
                for a in &p.actions {
                    if !a.is_grow() {
                        let rel = (a.from_kib - a.to_kib) / MIB;
                        r.largest_release_mib = r.largest_release_mib.max(rel);
                        if freed_at.is_some() {
                            r.largest_release_after_free_mib =
                                r.largest_release_after_free_mib.max(rel);
                            r.releases_after_free.push(rel);
                        }
                    }
                    pending.push((t + 1000, a.to_kib));
                }
                if freed_at.is_some() && r.periods_to_target.is_none() {
                    periods_since_free += 1;
                    if free <= band_top {
                        r.periods_to_target = Some(periods_since_free);
                    }
                }
            }
            t += tick;
        }
        r
    }

    #[test]
    fn simulated_consumer_never_starves_and_release_is_gradual() {
        let cap = MemConfig::default().release_cap_kib / MIB;
        for (period, phase) in [(2000, 0), (2000, 1000), (1000, 0), (1000, 500)] {
            let r = simulate(period, phase);
            println!(
                "period {period} ms, phase {phase} ms: min free while consuming under max {:.1} MiB, \
                 max reached at {:?} s, largest release {} MiB (after free: {} MiB), \
                 periods back to target {:?}, OOM ticks {}, releases after free {:?}",
                r.min_free_consuming_mib,
                r.reached_max_at_s,
                r.largest_release_mib,
                r.largest_release_after_free_mib,
                r.periods_to_target,
                r.oom,
                r.releases_after_free,
            );
            assert_eq!(r.oom, 0);
            // ~50 MB = 47.7 MiB.
            assert!(
                r.min_free_consuming_mib >= 47.7,
                "free fell to {:.1} MiB",
                r.min_free_consuming_mib
            );
            assert!(r.reached_max_at_s.is_some(), "never reached max");
            assert!(r.largest_release_mib <= cap);
            assert!(r.releases_after_free.len() >= 10, "not gradual");
            let bound = 1800 / cap * 2000 / period + 10;
            let periods = r.periods_to_target.expect("never back to target");
            assert!(periods <= bound, "{periods} periods > {bound}");
        }
    }
}
