//! The exhaustive search of the balancing step, for small hosts (see the
//! parent module).

use super::super::usage::{sum_sq, EPS};
use super::spread::guest_pairs;
use super::Balancer;

/// The exhaustive search runs only when (pCPUs)^(busy vCPUs) is at most this.
const EXACT_MAX_STATES: usize = 1 << 16;

impl Balancer<'_> {
    /// Pin changes of the current placement.
    fn changes(&self) -> usize {
        (0..self.loc.len())
            .filter(|&v| matches!(self.cur[v], Some(c) if c != self.loc[v]))
            .count()
    }

    /// On small instances, an exhaustive search over the placements of the
    /// busy vCPUs for, in order: reaching the aim with the fewest pin
    /// changes, then the most even spread of each guest, then the lowest
    /// std-dev; else (nothing reaches the aim) the lowest std-dev, then the
    /// fewest changes. Adopts it (and returns true) if it reaches the aim
    /// with fewer changes than the current placement, or as many and a more
    /// even spread, or lowers the std-dev by at least `min_gain / 2` more.
    pub(super) fn exact_search(&mut self) -> bool {
        let np = self.load.len();
        let k: usize = self.members.iter().map(Vec::len).sum();
        let Some(states) = u32::try_from(k)
            .ok()
            .and_then(|k| np.checked_pow(k))
            .filter(|&n| k > 0 && n <= EXACT_MAX_STATES)
        else {
            return false;
        };
        let mut busy: Vec<usize> = self.members.iter().flatten().map(|e| e.1).collect();
        busy.sort_unstable();
        let reach = self.reach();
        let mut digits = vec![0usize; k];
        let mut loads = vec![0.0; np];
        let pairs = guest_pairs(&busy, self.guest);
        let stacked = |at: &dyn Fn(usize) -> usize| -> usize {
            pairs.iter().filter(|&&(i, j)| at(i) == at(j)).count()
        };
        struct Found {
            reaches: bool,
            changes: usize,
            stacked: usize,
            ss: f64,
            digits: Vec<usize>,
        }
        let mut best: Option<Found> = None;
        let (w, was): (Vec<f64>, Vec<Option<usize>>) =
            busy.iter().map(|&v| (self.weight[v], self.cur[v])).unzip();
        for _ in 0..states {
            loads.fill(0.0);
            let mut changes = 0;
            for j in 0..k {
                loads[digits[j]] += w[j];
                changes += usize::from(was[j].is_some_and(|p| p != digits[j]));
            }
            let ss = sum_sq(&loads);
            let reaches = ss <= reach;
            // Counted only where it decides: it costs O(pairs).
            let mut here = None;
            let better = changes <= self.max_moves
                && match &best {
                    None => true,
                    Some(b) => match (reaches, b.reaches) {
                        (true, false) => true,
                        (false, true) => false,
                        (true, true) => {
                            changes < b.changes
                                || (changes == b.changes && {
                                    let st = *here.get_or_insert_with(|| stacked(&|j| digits[j]));
                                    st < b.stacked || (st == b.stacked && ss < b.ss - EPS)
                                })
                        }
                        (false, false) => {
                            ss < b.ss - EPS || ((ss - b.ss).abs() <= EPS && changes < b.changes)
                        }
                    },
                };
            if better {
                best = Some(Found {
                    reaches,
                    changes,
                    stacked: here.unwrap_or_else(|| stacked(&|j| digits[j])),
                    ss,
                    digits: digits.clone(),
                });
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
        let Some(best) = best else {
            return false;
        };
        let now_ss = sum_sq(self.load);
        let now_changes = self.changes();
        let sd = |ss: f64| (ss / np as f64).sqrt();
        let margin = (self.min_gain / 2.0).max(EPS);
        let take = if now_ss <= reach {
            best.reaches
                && (best.changes < now_changes
                    || (best.changes == now_changes
                        && best.stacked < stacked(&|j| self.loc[busy[j]])))
        } else {
            best.reaches || sd(best.ss) < sd(now_ss) - margin
        };
        if take {
            for (j, &v) in busy.iter().enumerate() {
                if self.loc[v] != best.digits[j] {
                    let from = self.loc[v];
                    self.relocate(v, from, best.digits[j]);
                }
            }
        }
        take
    }
}
