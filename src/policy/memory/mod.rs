//! Memory coordinator policy: balloon sizes for every domain, one
//! period at a time.
//!
//! Pure: plain snapshots in ([`DomainMem`], [`HostMem`]), a plan out
//! ([`MemPlan`]). No libvirt types, no I/O. The adapter reads
//! `virDomainMemoryStats`/bulk stats and `virNodeGetMemoryStats`, calls
//! [`Coordinator::plan`], applies the [`MemPlan::releases`], then the
//! grants still funded by the releases that took effect
//! ([`MemPlan::grants_funded`]), each with
//! `virDomainSetMemoryFlags(..., VIR_DOMAIN_AFFECT_LIVE)`, and tells
//! [`Coordinator::commit`] what was applied: the history holds applied
//! changes only.
//!
//! # Layout
//! [`Coordinator::plan`] runs the steps of a period in order: `observe`
//! (fold each sample into its domain's history: freshness, rate, lag
//! bookkeeping) → `observe::decide` (what each domain wants or can give) →
//! `fund` (releases and grants within the host reserve) → `report` (the
//! [`MemPlan`] and its one-line Display). `record` holds what is remembered
//! between periods.
//!
//! # Units
//! **KiB everywhere** (libvirt's balloon and node stats are KiB; `1 MiB =
//! 1024 KiB`, [`MIB`]). `last_update` is the balloon stats timestamp in
//! seconds (QEMU stamps it with the host's wall clock when the guest's
//! report arrives); `now_ms` is any monotonic host clock in milliseconds.
//!
//! # The clocks
//! The wall clock may step either way (NTP, an operator), so `last_update`
//! is trusted only to *change*: a sample is new when its `last_update`
//! differs from the previous one, whichever way it moved. Ages (settle
//! timeout, how long stats have stalled) are measured on `now_ms`. The
//! interval between two samples is their `last_update` difference, unless
//! it went back or ran more than a minute ahead of the monotonic time
//! between them (a step, noted): then the monotonic time is used. A step
//! therefore neither forgets a change in flight nor grants twice.
//!
//! # Figures per domain
//! - `free = unused` (guest `MemFree`), `used = available − unused`. `used`
//!   does not move when the balloon moves (the balloon shrinks `available`
//!   too), so its change over the interval between samples is the
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
//! seen at that moment arrived (`last_update` changed since). Until then a
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
//! # Stalled stats
//! Stats are stalled when the sample is stale and was first seen more than
//! two intervals (`2 × max(period, stats interval)`, on `now_ms`) ago: the
//! guest stopped reporting (a stuck balloon driver, a guest too starved to
//! report). Its last sample is then extrapolated to now: `growth estimate −
//! rate × (stall time + look-ahead)`. If that is below `target_free` the
//! guest gets **one** grant per stall, of at most
//! [`MemConfig::stale_grant_kib`] (toward the middle of the band, capped at
//! `max_kib`, funded like any grant); a guest that was comfortable (in or
//! above the band, not consuming) gets nothing, and nothing is ever shrunk
//! on stale stats. The next new sample ends the stall.
//!
//! # Each period
//! 1. **Trust only fresh stats.** Missing `unused`/`available`/`last_update`
//!    (no balloon driver, no stats period): never resized, noted once.
//!    `last_update` unchanged since the previous period (stale): never
//!    shrunk, noted once per stale streak; not grown either (the previous
//!    decision already used that sample) unless the stats have *stalled*,
//!    below. First sample of a domain: may be grown, not shrunk until its
//!    stats are seen changing.
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
//!    free, only as much as is short (noted). Then grants are made neediest
//!    first (lowest projected free), each capped by what is left of the
//!    budget (noted). When a release fails, [`MemPlan::grants_funded`]
//!    re-funds the grants the same way out of the releases that took effect.
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
//! - the same holds for [`MemPlan::grants_funded`] with any part of the
//!   releases effective, and with all of them it returns the plan's grants;
//! - missing or stale stats: never shrunk; a stall: at most one grant;
//!   all domains in band with no consumption: no action;
//! - a step of the host's wall clock either way mid-grant: no second grant.
//!
//! The host figure is the caller's (`sample::read_host_free`:
//! `MemAvailable` on this host, else `free + buffers + cached` of
//! `virNodeGetMemoryStats`). Memory granted in
//! earlier periods but not yet touched by the guest is not visible in it;
//! only grants still in flight are subtracted.

use std::collections::{BTreeMap, BTreeSet};

mod fund;
mod observe;
mod record;
mod report;
#[cfg(test)]
mod tests;

/// The guest kernel's own memory in [`test_domain`]: available = actual − 40 MiB.
#[cfg(test)]
pub(crate) const TEST_KERNEL_MIB: u64 = 40;

/// A domain for tests (this policy's and the daemon's): sizes in MiB,
/// `unused` free, stats stamped `lu`, available = actual − [`TEST_KERNEL_MIB`].
#[cfg(test)]
pub(crate) fn test_domain(
    name: &str,
    actual_mib: u64,
    max_mib: u64,
    unused_mib: u64,
    lu: u64,
) -> DomainMem {
    let actual = actual_mib * MIB;
    DomainMem {
        uuid: format!("uuid-{name}"),
        name: name.to_string(),
        actual_kib: actual,
        max_kib: max_mib * MIB,
        unused_kib: Some(unused_mib * MIB),
        available_kib: Some(actual - TEST_KERNEL_MIB * MIB),
        usable_kib: Some(unused_mib * MIB),
        last_update: Some(lu),
        rss_kib: Some(actual),
    }
}

pub use report::{DomainLine, MemPlan, Note, Reason, SetMemory};

use observe::Eval;
use record::History;

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
    /// Host free memory (KiB), as `sample::read_host_free` reads it.
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
    /// Most granted once to a guest whose stats stalled while, extrapolated,
    /// it is short (default 64 MiB; 0: never).
    pub stale_grant_kib: u64,
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
            stale_grant_kib: 64 * MIB,
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

fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
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

    /// Plans one period. `now_ms`: monotonic host clock; `doms`: every
    /// running domain (a UUID given twice is used once). Observes the
    /// samples (the lag bookkeeping) but records no change: what is applied
    /// is told to [`Coordinator::commit`].
    pub fn plan(&mut self, now_ms: u64, host: &HostMem, doms: &[DomainMem]) -> MemPlan {
        let period_ms = self.period_ms(now_ms);
        let mut notes = Vec::new();
        let doms = self.present(doms, &mut notes);

        // Observe each sample, then decide what each domain wants or gives.
        let cfg = &self.cfg;
        let evals: Vec<Eval> = doms
            .iter()
            .map(|d| {
                let h = self.hist.entry(d.uuid.clone()).or_default();
                let o = observe::observe(cfg, h, now_ms, d, &mut notes);
                observe::decide(cfg, h, &o, now_ms, period_ms, d, &mut notes)
            })
            .collect();

        // Fund the grants within the host reserve.
        let funded = fund::fund(cfg, host.free_kib, &doms, &evals, &mut notes);

        MemPlan::new(host.free_kib, cfg.host_reserve_kib, &doms, funded, notes)
    }

    /// Records the changes that were applied at `now_ms` (those of the last
    /// plan that took effect, e.g. [`MemPlan::releases`] that succeeded and
    /// [`MemPlan::grants_funded`] by them): the history is what was applied,
    /// so an action that failed or was never made leaves nothing in flight.
    pub fn commit(&mut self, now_ms: u64, applied: &[SetMemory]) {
        for a in applied {
            if let Some(h) = self.hist.get_mut(&a.uuid) {
                h.record(now_ms, a);
            }
        }
    }

    /// Time since the previous plan (clamped), or the default period.
    fn period_ms(&mut self, now_ms: u64) -> u64 {
        let period_ms = match self.prev_now_ms {
            Some(p) if now_ms > p => (now_ms - p).clamp(250, 60_000),
            _ => self.cfg.default_period_ms,
        };
        self.prev_now_ms = Some(now_ms);
        period_ms
    }

    /// The domains of this period, each UUID once; the history of domains
    /// that are gone is dropped.
    fn present<'a>(
        &mut self,
        doms: &'a [DomainMem],
        notes: &mut Vec<(String, Note)>,
    ) -> Vec<&'a DomainMem> {
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
        doms
    }
}
