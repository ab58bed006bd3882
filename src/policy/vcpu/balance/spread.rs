//! The spread rule of the balancing step: among plans with as many pin
//! changes, the one with the fewest pairs of one guest's vCPUs on one pCPU
//! (see the parent module). A pass over the greedy result lives here; the
//! exhaustive search (`exact.rs`) applies the same measure.

use super::super::report::PinKind;
use super::super::usage::{sum_sq, EPS};
use super::Balancer;

/// The spread rule looks at this many vCPUs on each side of a moved one's
/// weight for one to move instead.
const SPREAD_CANDIDATES: usize = 16;
/// ... of at most this many looked at on each side ...
const SPREAD_SCAN: usize = 128;
/// ... in at most this many passes over the moved vCPUs.
const SPREAD_PASSES: usize = 4;

/// Index pairs `(i, j)`, `i < j`, into `busy` of vCPUs of one guest. The
/// number of such pairs sharing a pCPU is the spread rule's measure: it is
/// lowest when each guest's vCPUs are spread as evenly as they can be.
pub(super) fn guest_pairs(busy: &[usize], guest: &[usize]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for j in 0..busy.len() {
        for i in 0..j {
            if guest[busy[i]] == guest[busy[j]] {
                pairs.push((i, j));
            }
        }
    }
    pairs
}

impl Balancer<'_> {
    /// vCPUs with weight of `v`'s guest on pCPU `p` (a guest's vCPUs have
    /// adjacent indices).
    fn guest_on(&self, v: usize, p: usize) -> usize {
        let g = self.guest[v];
        let start = (0..v)
            .rev()
            .take_while(|&i| self.guest[i] == g)
            .last()
            .unwrap_or(v);
        (start..self.loc.len())
            .take_while(|&i| self.guest[i] == g)
            .filter(|&i| self.loc[i] == p && self.weight[i] > 0.0)
            .count()
    }

    /// The spread rule for the greedy result. A vCPU that the plan moves
    /// off a pCPU is replaced by another vCPU there, of another guest and
    /// of about its weight (the [`SPREAD_CANDIDATES`] nearest on each
    /// side, among [`SPREAD_SCAN`]), if that leaves fewer pairs of one
    /// guest's vCPUs on one pCPU and keeps the aim (short of the aim: the
    /// std-dev). As many pin changes, better spread guests.
    pub(super) fn spread(&mut self, kind: &mut [Option<PinKind>]) {
        for _ in 0..SPREAD_PASSES {
            if !self.spread_pass(kind) {
                break;
            }
        }
    }

    /// One pass of [`Balancer::spread`] over the moved vCPUs; whether it
    /// replaced any.
    fn spread_pass(&mut self, kind: &mut [Option<PinKind>]) -> bool {
        let mut any = false;
        let reach = self.reach();
        let moved: Vec<usize> = (0..self.loc.len())
            .filter(|&v| matches!(self.cur[v], Some(s) if s != self.loc[v]))
            .collect();
        // The loads' sum of squares, until a replacement changes it (their
        // mean stays: a replacement moves no load off the pCPUs).
        let mean = self.mean;
        let mut ss = sum_sq(self.load);
        for v in moved {
            let (Some(s), t) = (self.cur[v], self.loc[v]) else {
                continue;
            };
            // Within the aim: stay there. Short of it: no worse.
            let limit = if ss <= reach { reach } else { ss + EPS };
            let sq = |x: f64| (x - mean) * (x - mean);
            let (ls, lt, wv) = (self.load[s], self.load[t], self.weight[v]);
            // Pairs v makes by going back to s, less those it leaves at t.
            let back = self.guest_on(v, s) as i64 - (self.guest_on(v, t) as i64 - 1);
            let m = &self.members[s];
            let pos = m.partition_point(|e| e.0 < wv);
            // Another guest's unmoved vCPUs nearest in weight, each side
            // (equal parts of v's own guest may fill the nearest places).
            let other =
                |e: &&(f64, usize)| self.guest[e.1] != self.guest[v] && self.cur[e.1] == Some(s);
            let below = m[..pos].iter().rev().take(SPREAD_SCAN).filter(other);
            let above = m[pos..].iter().take(SPREAD_SCAN).filter(other);
            let near = below
                .take(SPREAD_CANDIDATES)
                .chain(above.take(SPREAD_CANDIDATES));
            let mut best: Option<(i64, f64, usize)> = None;
            for &(wu, u) in near {
                let gain = back + self.guest_on(u, t) as i64 - (self.guest_on(u, s) as i64 - 1);
                let d = wv - wu;
                let after = ss - sq(ls) - sq(lt) + sq(ls + d) + sq(lt - d);
                if gain < 0
                    && after <= limit
                    && best.map_or(true, |(g, a, _)| gain < g || (gain == g && after < a))
                {
                    best = Some((gain, after, u));
                }
            }
            if let Some((_, _, u)) = best {
                self.relocate(v, t, s);
                self.relocate(u, s, t);
                kind[u] = kind[v].take();
                any = true;
                ss = sum_sq(self.load);
            }
        }
        any
    }
}
