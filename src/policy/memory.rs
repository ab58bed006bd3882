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
//!    each still by at most `release_cap` per period, only as much as is
//!    short (noted). Then grants are made neediest first (lowest projected
//!    free), each capped by what is left of the budget (noted).
//! 5. Changes smaller than `min_step_kib` are not issued.
//!
//! # Guarantees (checked by the property tests)
//! - a shrink never goes below the domain's floor and never by more than
//!   `release_cap_kib`; a grow never goes above `max_kib`;
//! - if a plan grows anything, `host_free_before − Σgrow + Σrelease ≥
//!   host_reserve` (i.e. `host_free_after_kib ≥ host_reserve_kib`), where the
//!   grants still in flight from earlier periods are also subtracted; when the
//!   host starts below its reserve nothing is grown;
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
    /// Current balloon size (`VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON`).
    pub actual_kib: u64,
    /// Maximum memory of the domain (`virDomainGetMaxMemory`).
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
    /// Sum of the grows (KiB).
    pub fn granted_kib(&self) -> u64 {
        self.actions
            .iter()
            .filter(|a| a.is_grow())
            .map(|a| a.to_kib - a.from_kib)
            .sum()
    }

    /// Sum of the releases (KiB).
    pub fn released_kib(&self) -> u64 {
        self.actions
            .iter()
            .filter(|a| !a.is_grow())
            .map(|a| a.from_kib - a.to_kib)
            .sum()
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
    /// Size the growth is on top of (latest request in flight, else actual).
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
}

impl Coordinator {
    /// A coordinator with no history. `release_fraction` is clamped to
    /// `0.0..=1.0` (NaN counts as 0) and `rate_window` to at least 1.
    pub fn new(mut cfg: MemConfig) -> Self {
        cfg.release_fraction = if cfg.release_fraction.is_nan() {
            0.0
        } else {
            cfg.release_fraction.clamp(0.0, 1.0)
        };
        cfg.rate_window = cfg.rate_window.max(1);
        Self {
            cfg,
            hist: BTreeMap::new(),
            prev_now_ms: None,
        }
    }

    pub fn config(&self) -> &MemConfig {
        &self.cfg
    }

    /// The adapter could not apply this domain's last action: forget the
    /// changes still in flight so they are neither credited nor waited for.
    pub fn action_failed(&mut self, uuid: &str) {
        if let Some(h) = self.hist.get_mut(uuid) {
            h.changes.retain(|c| c.settled_lu.is_some());
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
            if let Some(g) = e.give {
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
                let from = h.unsettled().map_or(a.from_kib, |c| c.to_kib);
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
        MemPlan {
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
    h.name.clone_from(&d.name);
    let note = |notes: &mut Vec<(String, Note)>, n| notes.push((d.name.clone(), n));
    let tol = cfg.settle_tolerance_kib;

    let (Some(unused), Some(available), Some(lu)) = (d.unused_kib, d.available_kib, d.last_update)
    else {
        if !h.noted_no_stats {
            note(notes, Note::NoStats);
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
    let credit: i128 = h.changes.iter().map(Change::delta).sum();
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
        let base = pending.unwrap_or(d.actual_kib);
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

    fn dom(name: &str, actual_mib: u64, max_mib: u64, unused_mib: u64, lu: u64) -> DomainMem {
        // Guest kernel keeps 40 MiB: available = actual − 40 MiB.
        let actual = actual_mib * MIB;
        DomainMem {
            uuid: format!("uuid-{name}"),
            name: name.to_string(),
            actual_kib: actual,
            max_kib: max_mib * MIB,
            unused_kib: Some(unused_mib * MIB),
            available_kib: Some(actual - 40 * MIB),
            usable_kib: Some(unused_mib * MIB),
            last_update: Some(lu),
            rss_kib: Some(actual),
        }
    }

    fn big_host() -> HostMem {
        HostMem {
            free_kib: 20 * 1024 * MIB,
        }
    }

    fn action<'a>(p: &'a MemPlan, name: &str) -> Option<&'a SetMemory> {
        p.actions.iter().find(|a| a.name == name)
    }

    fn has_note(p: &MemPlan, name: &str, f: impl Fn(&Note) -> bool) -> bool {
        p.notes.iter().any(|(n, note)| n == name && f(note))
    }

    #[test]
    fn placeholder() {
        let mut c = Coordinator::new(MemConfig::default());
        let p = c.plan(0, &big_host(), &[dom("a", 1024, 2048, 300, 10)]);
        assert!(action(&p, "a").is_none());
        assert!(has_note(&p, "a", |n| *n == Note::Appeared));
    }
}
