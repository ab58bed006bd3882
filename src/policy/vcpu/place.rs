//! Step 3 of a plan: placement. Every vCPU not hard-pinned to one usable
//! pCPU gets one; placement is not capped, being pinned is required.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// f64 with a total order, for heap keys (values are finite).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Key(f64);
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Where every vCPU is (index into the usable pCPUs) and what each pCPU holds.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    /// pCPU index of each vCPU.
    pub loc: Vec<usize>,
    /// Sum of the weights on each pCPU.
    pub load: Vec<f64>,
    /// vCPUs on each pCPU.
    pub count: Vec<usize>,
}

/// Places the vCPUs whose `cur` is `None`, keeps the others where they
/// are, and returns the layout and how many were placed.
///
/// Those with a known usage go first, largest weight first, each to the
/// pCPU with the least load (then fewest vCPUs, then lowest index): the
/// LPT rule. Those without usage (warm-up) follow, each to the pCPU with
/// the fewest vCPUs (then least load, lowest index), which spreads a
/// guest's vCPUs round-robin.
pub(super) fn place(
    np: usize,
    cur: &[Option<usize>],
    weight: &[f64],
    known: &[bool],
) -> (Layout, usize) {
    let mut l = Layout {
        loc: vec![0; cur.len()],
        load: vec![0.0; np],
        count: vec![0; np],
    };
    // Known usage first, by weight (largest first, then index); the others
    // in index order. Sorted as (weight, index) pairs: one sequential pass
    // instead of looking the weights up at every comparison.
    let mut known_todo: Vec<(f64, usize)> = Vec::new();
    let mut blind: Vec<usize> = Vec::new();
    for (i, c) in cur.iter().enumerate() {
        match *c {
            Some(p) => {
                l.loc[i] = p;
                l.load[p] += weight[i];
                l.count[p] += 1;
            }
            None if known[i] => known_todo.push((weight[i], i)),
            None => blind.push(i),
        }
    }
    known_todo.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let split = known_todo.len();
    let todo: Vec<usize> = known_todo
        .into_iter()
        .map(|(_, i)| i)
        .chain(blind)
        .collect();
    for (phase, by_load) in [(&todo[..split], true), (&todo[split..], false)] {
        let key = |l: &Layout, p: usize| {
            let (load, count) = (Key(l.load[p]), l.count[p]);
            Reverse(if by_load {
                (load, count, Key(0.0), p)
            } else {
                (Key(count as f64), 0, load, p)
            })
        };
        let mut heap: BinaryHeap<_> = (0..np).map(|p| key(&l, p)).collect();
        for &i in phase {
            let Some(Reverse((_, _, _, p))) = heap.pop() else {
                break;
            };
            l.loc[i] = p;
            l.load[p] += weight[i];
            l.count[p] += 1;
            heap.push(key(&l, p));
        }
    }
    (l, todo.len())
}
