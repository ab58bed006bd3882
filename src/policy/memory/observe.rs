//! The first two steps of a period for one domain: [`observe`] folds the
//! sample into the domain's history (freshness, consumption rate, the lag
//! bookkeeping of balloon changes), [`decide`] says what the domain wants or
//! can give.

use super::record::{Change, History};
use super::report::{Note, Reason};
use super::{signed, to_u64, DomainMem, MemConfig};

/// Where a domain's stats stand this period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Freshness {
    /// First sample: may be grown, not shrunk.
    First,
    /// A new sample since the previous period.
    Fresh,
    /// The same sample as the previous period.
    Stale,
}

/// One domain's sample, after the bookkeeping.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sample {
    pub unused_kib: u64,
    pub used_kib: u64,
    pub freshness: Freshness,
    /// Size the balloon is still moving to.
    pub pending_kib: Option<u64>,
}

/// What [`observe`] found.
#[derive(Debug, Clone, Copy)]
pub(super) struct Observed {
    /// Grants in flight from earlier periods (KiB).
    pub in_flight_kib: u64,
    /// None: no balloon stats or size, never resized.
    pub sample: Option<Sample>,
}

/// A grow wanted this period.
#[derive(Debug, Clone, Copy)]
pub(super) struct Want {
    /// Size the growth is on top of (grow in flight, else actual).
    pub base_kib: u64,
    pub amount_kib: u64,
    pub projected: i128,
    pub reason: Reason,
}

/// What a domain can give this period.
#[derive(Debug, Clone, Copy)]
pub(super) struct Give {
    /// Gradual release (may be 0).
    pub normal_kib: u64,
    /// Most that may be taken when the host is short (≥ normal).
    pub capacity_kib: u64,
    pub projected: i128,
    pub free_kib: u64,
    pub excess_kib: u64,
}

/// Evaluation of one domain for one period.
#[derive(Debug)]
pub(super) struct Eval {
    pub floor_kib: u64,
    pub grow: Option<Want>,
    pub give: Option<Give>,
    /// Grants in flight from earlier periods (KiB).
    pub in_flight_kib: u64,
}

impl Eval {
    fn inert(in_flight_kib: u64) -> Self {
        Self {
            floor_kib: 0,
            grow: None,
            give: None,
            in_flight_kib,
        }
    }
}

type Notes = Vec<(String, Note)>;

/// Updates a domain's history with this period's sample.
pub(super) fn observe(
    cfg: &MemConfig,
    h: &mut History,
    now_ms: u64,
    d: &DomainMem,
    notes: &mut Notes,
) -> Observed {
    let first = !h.seen;
    h.seen = true;
    h.name.clone_from(&d.name);
    let note = |notes: &mut Notes, n| notes.push((d.name.clone(), n));
    let tol = cfg.settle_tolerance_kib;

    let sized = d.actual_kib > 0 && d.max_kib > 0;
    let (Some(unused), Some(available), Some(lu), true) =
        (d.unused_kib, d.available_kib, d.last_update, sized)
    else {
        if !h.noted_no_stats {
            note(notes, if sized { Note::NoStats } else { Note::NoSize });
            h.noted_no_stats = true;
        }
        if !sized {
            h.drop_samples();
            h.expected_actual_kib = d.actual_kib;
            return Observed {
                in_flight_kib: 0,
                sample: None,
            };
        }
        // Stats missing from this read (a busy monitor under NOWAIT, a
        // balloon driver going away): the samples say nothing any more,
        // but a change in flight is still memory the host owes, so it
        // stays counted until it times out.
        h.drop_stats();
        abandon_timed_out(cfg, h, now_ms, d.actual_kib, notes, &d.name);
        let pending = h.unsettled().map(|c| c.to_kib);
        h.expected_actual_kib = pending.unwrap_or(d.actual_kib);
        return Observed {
            in_flight_kib: pending.map_or(0, |p| p.saturating_sub(d.actual_kib)),
            sample: None,
        };
    };
    h.noted_no_stats = false;
    if first {
        note(notes, Note::Appeared);
    }
    // A new sample is one whose `last_update` changed, in either direction:
    // it is host wall-clock time, so only its changes are trusted.
    let freshness = match h.prev_lu {
        None => Freshness::First,
        Some(p) if p != lu => Freshness::Fresh,
        Some(_) => Freshness::Stale,
    };
    if freshness != Freshness::Stale {
        h.sample_no += 1;
    }
    let seq = h.sample_no;

    // Balloon changes: reached, reflected, abandoned, or made by others.
    for c in h.changes.iter_mut() {
        if c.in_flight() && c.reached(d.actual_kib, tol) {
            c.settled_at = Some(seq);
        }
    }
    h.changes
        .retain(|c| c.settled_at.map_or(true, |s| seq <= s));
    abandon_timed_out(cfg, h, now_ms, d.actual_kib, notes, &d.name);
    if !first && h.unsettled().is_none() && d.actual_kib.abs_diff(h.expected_actual_kib) > tol {
        h.changes.push(Change {
            from_kib: h.expected_actual_kib,
            to_kib: d.actual_kib,
            issued_ms: None,
            settled_at: Some(seq),
        });
    }
    let pending = h.unsettled().map(|c| c.to_kib);
    h.expected_actual_kib = pending.unwrap_or(d.actual_kib);
    let in_flight_kib = pending.map_or(0, |p| p.saturating_sub(d.actual_kib));

    // Freshness and consumption rate.
    let used = available.saturating_sub(unused);
    if freshness == Freshness::Fresh {
        let dt = stats_interval_s(h, lu, now_ms, notes, &d.name);
        let rate = (signed(used) - signed(h.prev_used_kib)) / signed(dt);
        h.rates.push_back(rate);
        while h.rates.len() > cfg.rate_window {
            h.rates.pop_front();
        }
        h.stats_interval_s = Some(dt);
    }
    if freshness != Freshness::Stale {
        h.sample_seen_ms = Some(now_ms);
        h.stall_granted = false;
    }
    h.stale = freshness == Freshness::Stale;
    h.prev_lu = Some(lu);
    h.prev_used_kib = used;
    if freshness == Freshness::Stale {
        if !h.noted_stale {
            note(notes, Note::Stale { last_update: lu });
            h.noted_stale = true;
        }
    } else {
        h.noted_stale = false;
    }
    Observed {
        in_flight_kib,
        sample: Some(Sample {
            unused_kib: unused,
            used_kib: used,
            freshness,
            pending_kib: pending,
        }),
    }
}

/// Forgets the changes in flight whose oldest request is older than the
/// settle timeout (the balloon never got there), noting it.
fn abandon_timed_out(
    cfg: &MemConfig,
    h: &mut History,
    now_ms: u64,
    actual_kib: u64,
    notes: &mut Notes,
    name: &str,
) {
    let oldest = h
        .changes
        .iter()
        .filter(|c| c.in_flight())
        .filter_map(|c| c.issued_ms)
        .min();
    if oldest.is_some_and(|t| now_ms.saturating_sub(t) > cfg.settle_timeout_ms) {
        if let Some(c) = h.unsettled() {
            notes.push((
                name.to_string(),
                Note::BalloonTimeout {
                    requested_kib: c.to_kib,
                    actual_kib,
                },
            ));
        }
        h.abandon_in_flight();
        h.expected_actual_kib = actual_kib;
    }
}

/// Largest gap between `last_update` and the host's monotonic clock taken
/// for a stats period rather than a wall-clock step (s).
const MAX_STATS_LAG_S: u64 = 60;

/// Guest seconds between the previous sample and this one (at least 1):
/// the `last_update` difference, unless the host's wall clock stepped (it
/// went back, or ran ahead of the monotonic time between the two samples
/// by more than [`MAX_STATS_LAG_S`]); then the monotonic time, noted.
fn stats_interval_s(h: &History, lu: u64, now_ms: u64, notes: &mut Notes, name: &str) -> u64 {
    let elapsed_s = h
        .sample_seen_ms
        .map_or(0, |t| now_ms.saturating_sub(t) / 1000);
    let prev = h.prev_lu.unwrap_or(lu);
    match lu.checked_sub(prev) {
        Some(dt) if dt > 0 && dt <= elapsed_s.saturating_add(MAX_STATS_LAG_S) => dt,
        _ => {
            notes.push((
                name.to_string(),
                Note::StatsClockStep {
                    from_s: prev,
                    to_s: lu,
                },
            ));
            elapsed_s.max(1)
        }
    }
}

/// Says what a domain wants (a grow) or can give (a release), from its
/// observed sample and history.
pub(super) fn decide(
    cfg: &MemConfig,
    h: &History,
    o: &Observed,
    now_ms: u64,
    period_ms: u64,
    d: &DomainMem,
    notes: &mut Notes,
) -> Eval {
    let note = |notes: &mut Notes, n| notes.push((d.name.clone(), n));
    let mut eval = Eval::inert(o.in_flight_kib);
    let Some(s) = o.sample else {
        return eval;
    };

    let rate = to_u64(i128::from(h.rates.iter().copied().max().unwrap_or(0)));
    let interval_ms = h
        .stats_interval_s
        .map_or(0, |s| s.saturating_mul(1000))
        .max(period_ms);
    let eaten_in = |ms: u64| i128::from(rate) * i128::from(ms) / 1000;
    let horizon = eaten_in(interval_ms.saturating_mul(u64::from(cfg.growth_lookahead_periods)));
    let grow_est = i128::from(s.unused_kib) + h.grow_credit(d.actual_kib);
    let target = i128::from(cfg.target_free_kib);

    if s.freshness == Freshness::Stale {
        // Stalled stats: the sample is older than two intervals. One bounded
        // grant per stall, if the last sample extrapolated to now (its
        // consumption over the stall and the look-ahead) is short.
        let stalled_ms = h.sample_seen_ms.map_or(0, |t| now_ms.saturating_sub(t));
        if stalled_ms <= interval_ms.saturating_mul(2) || h.stall_granted {
            return eval;
        }
        let projected = grow_est - eaten_in(stalled_ms) - horizon;
        if projected < target {
            let want = (i128::from(cfg.aim_kib()) - projected).min(i128::from(cfg.stale_grant_kib));
            let reason = Reason::Stalled {
                free_kib: to_u64(grow_est),
                rate_kib_s: rate,
                stalled_ms,
            };
            eval.grow = want_grow(cfg, &s, d, projected, want, reason, notes);
        }
        return eval;
    }

    let projected = grow_est - horizon;
    if projected < target {
        let reason = Reason::Grow {
            free_kib: to_u64(grow_est),
            rate_kib_s: rate,
            lookahead_kib: to_u64(horizon),
        };
        let want = i128::from(cfg.aim_kib()) - projected;
        eval.grow = want_grow(cfg, &s, d, projected, want, reason, notes);
        return eval;
    }
    if let Some(p) = s.pending_kib {
        note(
            notes,
            Note::BalloonPending {
                requested_kib: p,
                actual_kib: d.actual_kib,
            },
        );
        return eval;
    }
    if s.freshness == Freshness::First {
        // Nothing proves these stats are current.
        return eval;
    }
    let shrink_est = i128::from(s.unused_kib) + h.shrink_credit();
    let floor = cfg.floor_kib(&d.name, s.used_kib, d.max_kib);
    eval.floor_kib = floor;
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

/// A grow of `want` on top of the size in flight (else the balloon), capped
/// at the domain's max (noted); None below one step.
fn want_grow(
    cfg: &MemConfig,
    s: &Sample,
    d: &DomainMem,
    projected: i128,
    want: i128,
    reason: Reason,
    notes: &mut Notes,
) -> Option<Want> {
    let want = to_u64(want);
    let base = s.pending_kib.unwrap_or(0).max(d.actual_kib);
    let amount = want.min(d.max_kib.saturating_sub(base));
    if amount < want {
        notes.push((
            d.name.clone(),
            Note::AtMax {
                wanted_kib: want,
                max_kib: d.max_kib,
            },
        ));
    }
    (amount >= cfg.min_step_kib).then_some(Want {
        base_kib: base,
        amount_kib: amount,
        projected,
        reason,
    })
}
