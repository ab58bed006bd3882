//! Step 6 of a plan: what it reports. The pins to apply, the decision and
//! the loads behind it, each with a one-line `Display` for the log.

use std::fmt;

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
/// It borrows the strings of the snapshot it was planned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin<'a> {
    /// Domain UUID.
    pub domain: &'a str,
    /// Domain name, for display.
    pub name: &'a str,
    /// vCPU number.
    pub vcpu: u32,
    /// Target pCPU.
    pub pcpu: u32,
    /// The single pCPU it was pinned to before, if it was pinned to one.
    pub from: Option<u32>,
    /// Why.
    pub kind: PinKind,
}

impl fmt::Display for Pin<'_> {
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
#[derive(Debug, Clone, Copy, PartialEq)]
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
        /// vCPUs re-pinned by a move of their own.
        moves: usize,
        /// vCPUs re-pinned by a swap (2) or an exchange of several between
        /// two pCPUs, as the local search found them (what the exhaustive
        /// search changes counts as moves).
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
    /// Above the threshold in the planned loads, but this interval's
    /// reading alone shows less than the threshold of that imbalance:
    /// nothing moves, as it may already be gone. The confirmation count is
    /// kept.
    NotInReading {
        /// Std-dev of this interval's unsmoothed loads along the planned
        /// loads' imbalance (0 if they lean the other way), points.
        reading: f64,
    },
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
                write!(f, "rebalanced: {moves} moved, {swaps} swapped")?;
                if capped {
                    f.write_str(", move cap reached")?;
                }
                Ok(())
            }
            Decision::Unbalanceable => f.write_str("imbalanced, no move narrows it"),
            Decision::NotInReading { reading } => write!(
                f,
                "imbalanced when smoothed, not in this reading (sd {reading:.1} along it): waiting"
            ),
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
pub struct Plan<'a> {
    /// Pins that change an affinity, sorted by (domain, vCPU).
    pub pins: Vec<Pin<'a>>,
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
    /// The std-dev a rebalance plans down to.
    pub aim: f64,
    /// vCPUs that were not hard-pinned to a usable pCPU and got placed.
    pub placed: usize,
    /// The balancing decision.
    pub decision: Decision,
}

impl Plan<'_> {
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

impl fmt::Display for Plan<'_> {
    /// One line: `loads 0:100.0 1:0.0 -> 0:50.0 1:50.0 | sd 50.0 -> 0.0
    /// (thr 5.0, aim 2.5) | rebalanced: 2 moved, 0 swapped | 2 pin(s), 0 placed`.
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
            " (thr {:.1}, aim {:.1}) | {} | {} pin(s), {} placed",
            self.threshold,
            self.aim,
            self.decision,
            self.pins.len(),
            self.placed
        )
    }
}
