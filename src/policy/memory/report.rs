//! What a plan says: the actions, the notes and the one-line report.

use std::fmt;

use super::fund::{Funded, Funding};
use super::{signed, to_u64, DomainMem, MIB};

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
    /// Stats stalled and the last sample, extrapolated, is short: one
    /// bounded grant.
    Stalled {
        /// Growth estimate of free memory at the last sample (KiB).
        free_kib: u64,
        /// Consumption rate at the last sample (KiB/s).
        rate_kib_s: u64,
        /// Time since that sample arrived (ms).
        stalled_ms: u64,
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
            Reason::Stalled {
                free_kib,
                rate_kib_s,
                stalled_ms,
            } => write!(
                f,
                "stats stalled {} s: free {} at the last sample, consuming {}/s",
                stalled_ms / 1000,
                Mib(free_kib),
                Mib(rate_kib_s)
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
    /// First period of this domain: not shrunk until its stats change.
    Appeared,
    /// The domain is gone; its history is dropped.
    Vanished,
    /// No balloon stats (`unused`/`available`/`last_update` missing): never
    /// resized. Noted once until stats appear.
    NoStats,
    /// Balloon size or max memory unknown (0): never resized. Noted once.
    NoSize,
    /// `last_update` did not change: not shrunk, grown only once if the
    /// stats stall. Noted once per streak.
    Stale { last_update: u64 },
    /// `last_update` went back, or jumped further than the monotonic clock
    /// ran: the host's wall clock stepped; the interval is taken from the
    /// monotonic clock, the history is kept.
    StatsClockStep { from_s: u64, to_s: u64 },
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
            Note::Appeared => f.write_str("new domain: not shrunk until its stats change"),
            Note::Vanished => f.write_str("domain gone: history dropped"),
            Note::NoStats => f.write_str("no balloon stats: not resized"),
            Note::NoSize => f.write_str("balloon size or max unknown: not resized"),
            Note::Stale { last_update } => {
                write!(
                    f,
                    "stale stats (last_update {last_update}): not shrunk, grown only if they stall"
                )
            }
            Note::StatsClockStep { from_s, to_s } => write!(
                f,
                "stats clock stepped (last_update {from_s} -> {to_s}): interval from the host's monotonic clock"
            ),
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
    /// Apply these first.
    pub releases: Vec<SetMemory>,
    /// Then these, neediest first, re-budgeted by [`MemPlan::grants_funded`]
    /// when not every release took effect.
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
    /// How the grants were funded, to re-budget them.
    pub(super) funding: Funding,
}

impl MemPlan {
    /// The report of one period's decisions.
    pub(super) fn new(
        host_free_kib: u64,
        host_reserve_kib: u64,
        doms: &[&DomainMem],
        funded: Funded,
        notes: Vec<(String, Note)>,
    ) -> Self {
        let Funded {
            releases,
            grants,
            funding,
        } = funded;
        let mut plan = MemPlan {
            domains: Vec::with_capacity(doms.len()),
            releases,
            grants,
            notes,
            host_free_before_kib: host_free_kib,
            host_free_after_kib: 0,
            host_reserve_kib,
            funding,
        };
        plan.host_free_after_kib = to_u64(
            i128::from(host_free_kib) + i128::from(plan.released_kib())
                - i128::from(plan.granted_kib()),
        );
        plan.domains = doms
            .iter()
            .map(|d| DomainLine {
                name: d.name.clone(),
                actual_kib: d.actual_kib,
                free_kib: d.unused_kib,
                change_kib: plan
                    .actions()
                    .find(|a| a.uuid == d.uuid)
                    .map_or(0, SetMemory::delta_kib),
            })
            .collect();
        plan
    }

    /// Releases, then grants: the order to apply them in.
    pub fn actions(&self) -> impl Iterator<Item = &SetMemory> {
        self.releases.iter().chain(&self.grants)
    }

    /// The grants still affordable when only `released_kib` of the planned
    /// releases took effect: [`MemPlan::grants`] re-funded in order out of
    /// the same budget, each capped by what is left of it, those smaller
    /// than the step dropped. Equal to `grants` when every release did;
    /// never takes the host below its reserve (nor further below it when it
    /// started there).
    pub fn grants_funded(&self, released_kib: u64) -> Vec<SetMemory> {
        self.funding
            .refund(&self.grants, released_kib.min(self.released_kib()))
    }

    /// Sum of the grows (KiB).
    pub fn granted_kib(&self) -> u64 {
        self.grants.iter().fold(0, |s, a| {
            s.saturating_add(a.to_kib.saturating_sub(a.from_kib))
        })
    }

    /// Sum of the releases (KiB).
    pub fn released_kib(&self) -> u64 {
        self.releases.iter().fold(0, |s, a| {
            s.saturating_add(a.from_kib.saturating_sub(a.to_kib))
        })
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
