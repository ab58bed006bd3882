//! What is remembered about a domain between periods: its last sample, its
//! consumption rates and the balloon changes not yet reflected in its stats.

use std::collections::VecDeque;

use super::report::SetMemory;

/// A balloon change not yet reflected in the stats.
#[derive(Debug, Clone)]
pub(super) struct Change {
    pub from_kib: u64,
    pub to_kib: u64,
    /// When we asked (None: someone else changed the size).
    pub issued_ms: Option<u64>,
    /// Number of the sample seen when the balloon was first seen at `to`
    /// ([`History::sample_no`]): the change is reflected once a later sample
    /// arrives.
    pub settled_at: Option<u64>,
}

impl Change {
    pub fn delta(&self) -> i128 {
        i128::from(self.to_kib) - i128::from(self.from_kib)
    }

    /// The balloon has not reached `to` yet.
    pub fn in_flight(&self) -> bool {
        self.settled_at.is_none()
    }

    pub fn reached(&self, actual: u64, tol: u64) -> bool {
        if self.to_kib >= self.from_kib {
            actual.saturating_add(tol) >= self.to_kib
        } else {
            actual <= self.to_kib.saturating_add(tol)
        }
    }

    /// What this change adds to the guest's free memory as last reported,
    /// for growth: a release still in flight counts only for what already
    /// landed (a grow cuts it short).
    fn grow_credit(&self, actual_kib: u64) -> i128 {
        if self.in_flight() && self.to_kib < self.from_kib {
            (i128::from(actual_kib) - i128::from(self.from_kib)).clamp(self.delta(), 0)
        } else {
            self.delta()
        }
    }
}

/// What is remembered about a domain between periods.
#[derive(Debug, Clone, Default)]
pub(super) struct History {
    pub name: String,
    /// Seen in an earlier period.
    pub seen: bool,
    /// `last_update` of the newest sample; only compared for equality (it
    /// is host wall-clock time, which may step either way).
    pub prev_lu: Option<u64>,
    /// Counts the distinct samples seen (a new `last_update` is a new one).
    pub sample_no: u64,
    /// Monotonic time the newest sample was first seen.
    pub sample_seen_ms: Option<u64>,
    pub prev_used_kib: u64,
    /// Guest seconds between the last two fresh samples.
    pub stats_interval_s: Option<u64>,
    /// KiB/s, newest last.
    pub rates: VecDeque<i64>,
    pub changes: Vec<Change>,
    /// Balloon size expected now if nobody else touched it.
    pub expected_actual_kib: u64,
    /// This period's sample is the previous one (stale).
    pub stale: bool,
    /// A grant was applied since the newest sample arrived while it was
    /// stale: the stall's one grant is spent.
    pub stall_granted: bool,
    pub noted_no_stats: bool,
    pub noted_stale: bool,
}

impl History {
    pub fn drop_samples(&mut self) {
        self.drop_stats();
        self.changes.clear();
    }

    /// Forgets what the balloon stats said (freshness, rates), keeping the
    /// changes still in flight.
    pub fn drop_stats(&mut self) {
        self.prev_lu = None;
        self.sample_seen_ms = None;
        self.stats_interval_s = None;
        self.rates.clear();
    }

    /// The newest change still in flight: the size the balloon is moving to.
    pub fn unsettled(&self) -> Option<&Change> {
        self.changes.iter().rev().find(|c| c.in_flight())
    }

    fn unsettled_mut(&mut self) -> Option<&mut Change> {
        self.changes.iter_mut().rev().find(|c| c.in_flight())
    }

    /// Forgets the changes still in flight (they timed out).
    pub fn abandon_in_flight(&mut self) {
        self.changes.retain(|c| !c.in_flight());
    }

    /// Growth estimate credit: `Σ(to − from)` of unreflected changes.
    pub fn grow_credit(&self, actual_kib: u64) -> i128 {
        self.changes.iter().map(|c| c.grow_credit(actual_kib)).sum()
    }

    /// Shrink estimate credit: `Σ min(0, to − from)` (a lower bound).
    pub fn shrink_credit(&self) -> i128 {
        self.changes.iter().map(|c| c.delta().min(0)).sum()
    }

    /// Remembers a change applied at `now_ms`. Stacked on a grow in flight
    /// it counts from that grow's target; a release in flight is cut short
    /// where the balloon is now.
    pub fn record(&mut self, now_ms: u64, a: &SetMemory) {
        let seq = self.sample_no;
        let mut from = a.from_kib;
        if let Some(c) = self.unsettled_mut() {
            if c.to_kib > c.from_kib {
                from = c.to_kib;
            } else {
                c.to_kib = a.from_kib;
                c.settled_at = Some(seq);
            }
        }
        self.changes.push(Change {
            from_kib: from,
            to_kib: a.to_kib,
            issued_ms: Some(now_ms),
            settled_at: None,
        });
        self.expected_actual_kib = a.to_kib;
        self.stall_granted |= self.stale && a.is_grow();
    }
}
