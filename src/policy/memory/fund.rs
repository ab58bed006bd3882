//! The third step of a period: releases and grants within the host reserve.
//!
//! `budget = host free − reserve − grants still in flight + releases`. If
//! the grants wanted exceed it, donors give more toward their floor, most
//! free first; then grants are made neediest first, each capped by what is
//! left. The same rule ([`take`]) re-funds the grants when only part of the
//! releases took effect ([`Funding::refund`]).

use std::cmp::Reverse;

use super::observe::Eval;
use super::report::{Note, Reason, SetMemory};
use super::{to_u64, DomainMem, MemConfig};

/// What re-funding the grants needs to know.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Funding {
    /// `host free − reserve − grants still in flight`, before any release.
    base_kib: i128,
    /// Size each grant is on top of, in grant order.
    bases_kib: Vec<u64>,
    min_step_kib: u64,
}

impl Funding {
    /// `grants` (the plan's) re-funded out of the base budget plus
    /// `released_kib`.
    pub fn refund(&self, grants: &[SetMemory], released_kib: u64) -> Vec<SetMemory> {
        let mut budget = self.base_kib + i128::from(released_kib);
        grants
            .iter()
            .zip(&self.bases_kib)
            .filter_map(|(g, &base)| {
                let grant = take(
                    &mut budget,
                    g.to_kib.saturating_sub(base),
                    self.min_step_kib,
                );
                (grant > 0).then(|| SetMemory {
                    to_kib: base + grant,
                    ..g.clone()
                })
            })
            .collect()
    }
}

/// Takes up to `amount` out of `budget`; nothing (0) when what is left is
/// less than one step.
fn take(budget: &mut i128, amount: u64, min_step: u64) -> u64 {
    let grant = to_u64((*budget).min(i128::from(amount)));
    if grant < min_step {
        return 0;
    }
    *budget -= i128::from(grant);
    grant
}

/// The releases and grants of one period.
pub(super) struct Funded {
    pub releases: Vec<SetMemory>,
    pub grants: Vec<SetMemory>,
    pub funding: Funding,
}

/// Decides the releases and grants from each domain's evaluation.
pub(super) fn fund(
    cfg: &MemConfig,
    host_free_kib: u64,
    doms: &[&DomainMem],
    evals: &[Eval],
    notes: &mut Vec<(String, Note)>,
) -> Funded {
    let in_flight: i128 = evals.iter().map(|e| i128::from(e.in_flight_kib)).sum();
    let base = i128::from(host_free_kib) - i128::from(cfg.host_reserve_kib) - in_flight;
    let mut budget = base;
    // Release decided per domain (KiB) and whether the host's shortage
    // raised it.
    let mut release = vec![(0u64, false); evals.len()];
    for (e, r) in evals.iter().zip(&mut release) {
        if let Some(g) = e.give.filter(|g| g.normal_kib >= cfg.min_step_kib) {
            r.0 = g.normal_kib;
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
        donors.sort_by_key(|&i| Reverse(evals[i].give.map_or(0, |g| g.projected)));
        for i in donors {
            if short <= 0 {
                break;
            }
            let Some(g) = evals[i].give else { continue };
            let r = &mut release[i];
            let room = g.capacity_kib.saturating_sub(r.0);
            let extra = to_u64(short.min(i128::from(room)));
            let total = r.0 + extra;
            // A release that only the host asked for still obeys the step.
            if extra == 0 || total < cfg.min_step_kib {
                continue;
            }
            *r = (total, true);
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

    let mut releases = Vec::new();
    for (i, e) in evals.iter().enumerate() {
        let (kib, for_host) = release[i];
        let (Some(g), true) = (e.give, kib >= cfg.min_step_kib) else {
            continue;
        };
        let d = doms[i];
        let reason = if for_host {
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
        releases.push(SetMemory {
            uuid: d.uuid.clone(),
            name: d.name.clone(),
            from_kib: d.actual_kib,
            to_kib: d.actual_kib - kib,
            reason,
        });
    }

    // Grants, neediest first, within the budget.
    let mut needy: Vec<usize> = (0..evals.len())
        .filter(|&i| evals[i].grow.is_some())
        .collect();
    needy.sort_by_key(|&i| evals[i].grow.map_or(0, |w| w.projected));
    let mut grants = Vec::new();
    let mut bases_kib = Vec::new();
    for i in needy {
        let Some(w) = evals[i].grow else { continue };
        let d = doms[i];
        let grant = take(&mut budget, w.amount_kib, cfg.min_step_kib);
        if grant < w.amount_kib {
            notes.push((
                d.name.clone(),
                Note::HostReserveLimited {
                    wanted_kib: w.amount_kib,
                    granted_kib: grant,
                },
            ));
        }
        if grant == 0 {
            continue;
        }
        grants.push(SetMemory {
            uuid: d.uuid.clone(),
            name: d.name.clone(),
            from_kib: d.actual_kib,
            to_kib: w.base_kib + grant,
            reason: w.reason,
        });
        bases_kib.push(w.base_kib);
    }
    Funded {
        releases,
        grants,
        funding: Funding {
            base_kib: base,
            bases_kib,
            min_step_kib: cfg.min_step_kib,
        },
    }
}
