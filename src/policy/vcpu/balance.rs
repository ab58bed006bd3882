//! Step 4 of a plan: balancing, a greedy local search over one placement.
//!
//! Each step looks at the busiest pCPU `H` and the idlest `L` and considers,
//! in tiers (a later tier only when the earlier ones offer nothing):
//! 1. moving one vCPU to `L` from one of the [`TIER1_PCPUS`] busiest pCPUs,
//!    or from `H` to one of the as many idlest, and swapping a vCPU of `H`
//!    with a lighter one of `L`;
//! 2. swaps from any pCPU to `L` and from `H` to any pCPU;
//! 3. an exact repartition of the busy vCPUs of such a pair (2-for-1,
//!    2-for-2 … exchanges) when the pair holds at most
//!    [`EXCHANGE_MAX_VCPUS`] of them.
//!
//! Moving weight `x` across a pair whose gap is `g` leaves a gap of
//! `|g − 2x|`; an action is allowed only if it narrows that gap by at least
//! `min_gain` points, so it strictly lowers the std-dev and never leaves the
//! pair wider than before. [`Candidate::better`] is the one preference rule:
//! an action that reaches the aim wins over one that does not; among those
//! that do, the cheapest (a swap costs two pin changes), then the best;
//! among the others, the one that brings the most pCPUs within the aim of
//! the mean load per pin change, then the best gain per pin change (each
//! pair is offered, besides the vCPUs nearest half its gap, those nearest
//! to what fills its idler pCPU to the mean). Steps stop when the
//! std-dev is within the aim, nothing qualifies, or the `max_moves` budget
//! is spent.
//!
//! Small hosts, exactly: when (pCPUs)^(busy vCPUs) ≤ [`exact::EXACT_MAX_STATES`]
//! (e.g. 16 vCPUs on 2 pCPUs, 10 on 3), every placement is enumerated and
//! replaces the greedy result if it reaches the aim with fewer pin changes,
//! or with as many and a more even spread of each guest, or lowers the
//! std-dev by at least `min_gain / 2` more.
//!
//! The spread rule (`balance/spread.rs`; the exhaustive search is in
//! `balance/exact.rs`): among the plans that reach the aim with the fewest pin
//! changes, the one with the fewest pairs of one guest's vCPUs on one pCPU
//! wins. Many plans balance a host equally well today; the one that gives
//! each pCPU its proportion of every guest stays balanced when a guest's
//! kernel moves its threads between its vCPUs, or when one guest's demand
//! changes (4 vCPUs of each of two guests, 3 + 1 and 1 + 3 over two pCPUs,
//! turn a 20-point gap between the guests into a 10-point gap between the
//! pCPUs; 2 + 2 and 2 + 2, into none). Pairwise moves
//! cannot find a three-way rotation (122/95/89 → 104/95/107, std-dev 5.1,
//! where 4.3 exists; see `exhaustive_search_beats_the_local_search`).

use std::cmp::Ordering;

use super::report::{Decision, PinKind};
use super::usage::{mean, sum_sq, EPS};

mod exact;
mod spread;

/// Exact pair repartition is tried only on pairs holding at most this many
/// busy vCPUs together (2^n subsets).
const EXCHANGE_MAX_VCPUS: usize = 12;
/// ... and on pairs other than (busiest, idlest) only up to this many pCPUs.
const EXCHANGE_MAX_PCPUS: usize = 16;
/// Tier-1 moves come from the this many busiest pCPUs (to the idlest) and
/// go to this many idlest ones (from the busiest): on a large host the best
/// move is among them, and looking at all pCPUs made each step O(P log k).
const TIER1_PCPUS: usize = 16;

/// A candidate action of the local search.
#[derive(Debug, Clone, Copy)]
enum Action {
    /// Move vCPU `v` from pCPU `from` to `to`.
    Move { v: usize, from: usize, to: usize },
    /// Swap vCPU `a` on `s` with vCPU `b` on `t`.
    Swap {
        a: usize,
        s: usize,
        b: usize,
        t: usize,
    },
    /// Repartition the vCPUs of `s` and `t`: bit `j` of `mask` set means
    /// the `j`-th of `members[s] ++ members[t]` ends on `s`.
    Exchange { s: usize, t: usize, mask: u32 },
}

#[derive(Debug, Clone, Copy)]
struct Candidate {
    action: Action,
    /// Reduction of the sum of squared deviations.
    gain: f64,
    /// Pin changes.
    cost: usize,
    /// pCPUs it brings within the aim of the mean load, less those it
    /// takes out of it.
    settles: i32,
}

impl Candidate {
    /// Whether `self` is preferred over `other`, given the sum of squares
    /// now (`ss`) and the sum of squares at which the aim is met (`reach`).
    fn better(&self, other: &Candidate, ss: f64, reach: f64) -> bool {
        let ra = ss - self.gain <= reach;
        let rb = ss - other.gain <= reach;
        match (ra, rb) {
            (true, false) => true,
            (false, true) => false,
            (true, true) => {
                self.cost < other.cost || (self.cost == other.cost && self.gain > other.gain)
            }
            (false, false) => {
                let per = |c: &Candidate| f64::from(c.settles) / c.cost as f64;
                let (a, b) = (per(self), per(other));
                a > b + EPS
                    || ((a - b).abs() <= EPS
                        && self.gain / self.cost as f64 > other.gain / other.cost as f64)
            }
        }
    }
}

/// Keeps the preferred of the candidates offered.
struct Best {
    ss: f64,
    reach: f64,
    budget: usize,
    best: Option<Candidate>,
}

impl Best {
    fn offer(&mut self, c: Option<Candidate>) {
        if let Some(c) = c {
            if c.cost <= self.budget
                && self
                    .best
                    .map_or(true, |b| c.better(&b, self.ss, self.reach))
            {
                self.best = Some(c);
            }
        }
    }
}

fn cmp_member(a: &(f64, usize), b: &(f64, usize)) -> Ordering {
    a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
}

/// `a` before `b` in [`Balancer::order`]: the busier first, then the
/// lower index.
fn busier(load: &[f64], a: usize, b: usize) -> Ordering {
    load[b].total_cmp(&load[a]).then(a.cmp(&b))
}

/// How much moving `x` across a gap `g` lowers the loads' sum of squares.
fn gain(g: f64, x: f64) -> f64 {
    2.0 * x * (g - x)
}

/// How much moving `x` across a gap `g` narrows it.
fn narrowing(g: f64, x: f64) -> f64 {
    g - (g - 2.0 * x).abs()
}

/// What the search knows of each vCPU, indexed alike.
#[derive(Debug, Clone, Copy)]
pub(super) struct Vcpus<'a> {
    /// The load it is planned at.
    pub weight: &'a [f64],
    /// Its guest: equal numbers are vCPUs of one guest, which must have
    /// adjacent indices.
    pub guest: &'a [usize],
    /// Its pCPU before this plan, to count pin changes.
    pub cur: &'a [Option<usize>],
}

/// The greedy local search over one placement.
pub(super) struct Balancer<'a> {
    aim: f64,
    min_gain: f64,
    max_moves: usize,
    weight: &'a [f64],
    /// Guest of each vCPU, for the spread rule (see [`Vcpus::guest`]).
    guest: &'a [usize],
    /// Pin before this plan, to count pin changes.
    cur: &'a [Option<usize>],
    loc: &'a mut [usize],
    load: &'a mut [f64],
    /// The mean pCPU load (moves do not change it).
    mean: f64,
    /// vCPUs with positive weight per pCPU, sorted by (weight, index).
    members: Vec<Vec<(f64, usize)>>,
    /// pCPUs from the busiest to the idlest (equal loads: lower index
    /// first), kept in order as loads change ([`Balancer::relocate`]), so
    /// each step finds its extremes without a pass over all pCPUs.
    order: Vec<usize>,
}

impl<'a> Balancer<'a> {
    /// A search that stops at std-dev `aim`, over the placement `loc` with
    /// pCPU loads `load` (both updated in place).
    pub fn new(
        aim: f64,
        min_gain: f64,
        max_moves: usize,
        vcpus: Vcpus<'a>,
        loc: &'a mut [usize],
        load: &'a mut [f64],
    ) -> Self {
        let Vcpus { weight, guest, cur } = vcpus;
        let mut members = vec![Vec::new(); load.len()];
        for (i, &p) in loc.iter().enumerate() {
            if weight[i] > 0.0 {
                members[p].push((weight[i], i));
            }
        }
        for m in &mut members {
            m.sort_unstable_by(cmp_member);
        }
        let mut order: Vec<usize> = (0..load.len()).collect();
        order.sort_unstable_by(|&a, &b| busier(load, a, b));
        Balancer {
            aim,
            min_gain,
            max_moves,
            weight,
            guest,
            cur,
            loc,
            mean: mean(load),
            load,
            members,
            order,
        }
    }

    /// The busiest pCPU (equal loads: the lowest index).
    fn busiest(&self) -> usize {
        self.order.first().copied().unwrap_or(0)
    }

    /// The idlest pCPU (equal loads: the lowest index).
    fn idlest(&self) -> usize {
        let Some(&last) = self.order.last() else {
            return 0;
        };
        let min = self.load[last];
        let j = self
            .order
            .partition_point(|&p| self.load[p].total_cmp(&min) == Ordering::Greater);
        self.order[j]
    }

    /// Position of pCPU `p` in `order` (by binary search: `order` is
    /// sorted by the current loads).
    fn position(&self, p: usize) -> usize {
        self.order
            .partition_point(|&q| busier(self.load, q, p) == Ordering::Less)
    }

    /// Puts pCPU `p`, out of `order`, back at its place.
    fn reinsert(&mut self, p: usize) {
        let r = self.position(p);
        self.order.insert(r, p);
    }

    /// Whether moving `x` across gap `g` qualifies.
    fn qualifies(&self, g: f64, x: f64) -> bool {
        let n = narrowing(g, x);
        x > EPS && n > EPS && n >= self.min_gain - EPS
    }

    /// A move or swap shifting `x` across gap `g`, if it qualifies.
    fn shift(&self, g: f64, x: f64, action: Action, cost: usize) -> Option<Candidate> {
        let (s, t) = match action {
            Action::Move { from, to, .. } => (from, to),
            Action::Swap { s, t, .. } | Action::Exchange { s, t, .. } => (s, t),
        };
        let off = |load: f64| i32::from((load - self.mean).abs() > self.aim + EPS);
        let (ls, lt) = (self.load[s], self.load[t]);
        self.qualifies(g, x).then(|| Candidate {
            action,
            settles: off(ls) + off(lt) - off(ls - x) - off(lt + x),
            gain: gain(g, x),
            cost,
        })
    }

    /// Single moves from `s` to `t`, offered to `best`: the vCPUs nearest
    /// (from below and above) to half the gap, which narrow this pair most,
    /// and to what `t` lacks of the mean or `s` has over it (the smaller),
    /// which fill a pCPU without pushing it past the mean: after vCPUs were
    /// knocked elsewhere, those send each one home.
    fn offer_moves(&self, s: usize, t: usize, best: &mut Best) {
        let g = self.load[s] - self.load[t];
        if g <= 0.0 {
            return;
        }
        let m = &self.members[s];
        let fill = (self.load[s] - self.mean).min(self.mean - self.load[t]);
        for target in [g / 2.0, fill] {
            if target <= 0.0 {
                continue;
            }
            let pos = m.partition_point(|e| e.0 < target);
            // The first of the vCPUs of the largest weight below the target.
            let below = pos.checked_sub(1).map(|j| match j.checked_sub(1) {
                Some(i) if m[i].0 == m[j].0 => m[..i].partition_point(|e| e.0 < m[j].0),
                _ => j,
            });
            for j in [below, Some(pos)].into_iter().flatten() {
                let Some(&(x, v)) = m.get(j) else { continue };
                best.offer(self.shift(g, x, Action::Move { v, from: s, to: t }, 1));
            }
        }
    }

    /// Best swap of a vCPU on `s` with a lighter one on `t`: the one that
    /// shifts a weight nearest half the gap, which gains most (the first
    /// of equal gains).
    fn best_swap(&self, s: usize, t: usize) -> Option<Candidate> {
        let g = self.load[s] - self.load[t];
        let (ms, mt) = (&self.members[s], &self.members[t]);
        if g <= 0.0 || ms.is_empty() || mt.is_empty() {
            return None;
        }
        // (gain, a, b, weight shifted) of the best so far.
        let mut best: Option<(f64, usize, usize, f64)> = None;
        let mut j = 0;
        for &(ua, a) in ms {
            let target = ua - g / 2.0;
            while j < mt.len() && mt[j].0 < target {
                j += 1;
            }
            for k in [j.checked_sub(1), Some(j)].into_iter().flatten() {
                let Some(&(ub, b)) = mt.get(k) else { continue };
                let x = ua - ub;
                let gx = gain(g, x);
                if self.qualifies(g, x) && best.map_or(true, |(bg, ..)| gx > bg) {
                    best = Some((gx, a, b, x));
                }
            }
        }
        let (_, a, b, x) = best?;
        self.shift(g, x, Action::Swap { a, s, b, t }, 2)
    }

    /// Best exact repartition of the vCPUs of `s` and `t`, offered to `best`.
    fn offer_exchanges(&self, s: usize, t: usize, best: &mut Best) {
        let g = self.load[s] - self.load[t];
        let (ms, mt) = (&self.members[s], &self.members[t]);
        let m = ms.len() + mt.len();
        if g <= 0.0 || m > EXCHANGE_MAX_VCPUS {
            return;
        }
        let items: Vec<f64> = ms.iter().chain(mt).map(|e| e.0).collect();
        let on_s: f64 = ms.iter().map(|e| e.0).sum();
        let orig: u32 = (1u32 << ms.len()) - 1;
        for mask in 0..(1u32 << m) {
            let cost = (mask ^ orig).count_ones() as usize;
            if cost == 0 {
                continue;
            }
            let kept: f64 = (0..m)
                .filter(|j| mask >> j & 1 == 1)
                .map(|j| items[j])
                .sum();
            best.offer(self.shift(g, on_s - kept, Action::Exchange { s, t, mask }, cost));
        }
    }

    /// The [`TIER1_PCPUS`] busiest and as many idlest pCPUs (all of them
    /// on a smaller host), each in index order, in `heavy` and `light`;
    /// returns how many each holds.
    fn extremes(
        &self,
        heavy: &mut [usize; TIER1_PCPUS],
        light: &mut [usize; TIER1_PCPUS],
    ) -> usize {
        let np = self.order.len();
        if np <= TIER1_PCPUS {
            for p in 0..np {
                (heavy[p], light[p]) = (p, p);
            }
            return np;
        }
        heavy.copy_from_slice(&self.order[..TIER1_PCPUS]);
        light.copy_from_slice(&self.order[np - TIER1_PCPUS..]);
        heavy.sort_unstable();
        light.sort_unstable();
        TIER1_PCPUS
    }

    /// The preferred action of this step, tier by tier.
    fn next_action(&self, hi: usize, lo: usize, best: &mut Best) {
        let np = self.load.len();
        let (mut heavy, mut light) = ([0; TIER1_PCPUS], [0; TIER1_PCPUS]);
        let k = self.extremes(&mut heavy, &mut light);
        for &p in &heavy[..k] {
            self.offer_moves(p, lo, best);
        }
        for &p in &light[..k] {
            self.offer_moves(hi, p, best);
        }
        best.offer(self.best_swap(hi, lo));
        if best.best.is_some() {
            return;
        }
        for p in 0..np {
            best.offer(self.best_swap(p, lo));
            best.offer(self.best_swap(hi, p));
        }
        if best.best.is_some() {
            return;
        }
        self.offer_exchanges(hi, lo, best);
        if np <= EXCHANGE_MAX_PCPUS {
            for p in 0..np {
                self.offer_exchanges(p, lo, best);
                self.offer_exchanges(hi, p, best);
            }
        }
    }

    /// The loads' sum of squared deviations at or below which their
    /// std-dev is within the aim.
    fn reach(&self) -> f64 {
        (self.aim + EPS).powi(2) * self.load.len() as f64
    }

    /// Runs the search, then the exhaustive one where it is small enough;
    /// marks each moved vCPU in `kind` and counts them by how they moved
    /// (a vCPU moved twice, or back, counts once or not at all). Only a
    /// search that found no step at all, uncapped, is `Unbalanceable`.
    pub fn run(&mut self, kind: &mut [Option<PinKind>]) -> Decision {
        let (stepped, mut capped) = self.local_search(kind);
        self.spread(kind);
        if self.exact_search() {
            // Still short of the aim after a capped search: the cap stopped it.
            capped &= sum_sq(self.load) > self.reach();
            kind.fill(Some(PinKind::Move));
        }
        let (mut moves, mut swaps) = (0, 0);
        for (v, k) in kind.iter_mut().enumerate() {
            if !matches!(self.cur[v], Some(p) if p != self.loc[v]) {
                *k = None;
            } else if *k == Some(PinKind::Swap) {
                swaps += 1;
            } else {
                *k = Some(PinKind::Move);
                moves += 1;
            }
        }
        if moves + swaps == 0 && !stepped && !capped {
            Decision::Unbalanceable
        } else {
            Decision::Rebalanced {
                moves,
                swaps,
                capped,
            }
        }
    }

    /// The greedy local search: whether it took a step, and whether the
    /// `max_moves` budget stopped it.
    fn local_search(&mut self, kind: &mut [Option<PinKind>]) -> (bool, bool) {
        let reach = self.reach();
        let mut spent = 0;
        let (mut stepped, mut capped) = (false, false);
        loop {
            let ss = sum_sq(self.load);
            if ss <= reach {
                break;
            }
            let budget = self.max_moves.saturating_sub(spent);
            if budget == 0 {
                capped = true;
                break;
            }
            let (hi, lo) = (self.busiest(), self.idlest());
            let mut best = Best {
                ss,
                reach,
                budget,
                best: None,
            };
            self.next_action(hi, lo, &mut best);
            let Some(c) = best.best else {
                // A swap would help but only one pin change is left.
                capped = budget < 2 && self.best_swap(hi, lo).is_some();
                break;
            };
            spent += c.cost;
            stepped = true;
            match c.action {
                Action::Move { v, from, to } => {
                    self.relocate(v, from, to);
                    kind[v] = Some(PinKind::Move);
                }
                Action::Swap { a, s, b, t } => {
                    self.relocate(a, s, t);
                    self.relocate(b, t, s);
                    kind[a] = Some(PinKind::Swap);
                    kind[b] = Some(PinKind::Swap);
                }
                Action::Exchange { s, t, mask } => {
                    let ns = self.members[s].len();
                    let plan: Vec<(usize, usize, usize)> = self.members[s]
                        .iter()
                        .chain(&self.members[t])
                        .enumerate()
                        .filter_map(|(j, &(_, v))| match (j < ns, mask >> j & 1 == 1) {
                            (true, false) => Some((v, s, t)),
                            (false, true) => Some((v, t, s)),
                            _ => None,
                        })
                        .collect();
                    for (v, from, to) in plan {
                        self.relocate(v, from, to);
                        kind[v] = Some(PinKind::Swap);
                    }
                }
            }
        }
        (stepped, capped)
    }

    fn relocate(&mut self, v: usize, from: usize, to: usize) {
        if from == to {
            return;
        }
        let e = (self.weight[v], v);
        if let Ok(j) = self.members[from].binary_search_by(|x| cmp_member(x, &e)) {
            self.members[from].remove(j);
        }
        let j = self.members[to]
            .binary_search_by(|x| cmp_member(x, &e))
            .unwrap_or_else(|j| j);
        self.members[to].insert(j, e);
        // Out of `order` while their loads change, then back in place.
        let (rf, rt) = (self.position(from), self.position(to));
        self.order.remove(rf.max(rt));
        self.order.remove(rf.min(rt));
        self.load[from] -= e.0;
        self.load[to] += e.0;
        self.loc[v] = to;
        self.reinsert(from);
        self.reinsert(to);
    }
}

#[cfg(test)]
mod tests {
    use super::spread::guest_pairs;
    use super::*;
    use crate::policy::vcpu::usage::stddev;

    /// Two 4-vCPU guests of equal parts, all on pCPU0: every plan of 4
    /// moves balances the loads, but only 2 + 2 per guest keeps them
    /// balanced when a guest kernel moves its threads or a guest's demand
    /// changes. Among the fewest moves that reach the aim, the search
    /// spreads each guest.
    #[test]
    fn the_fewest_moves_spread_each_guest_evenly() {
        let weight = [10.0; 8];
        let guest = [0, 0, 0, 0, 1, 1, 1, 1];
        let cur = [Some(0); 8];
        let mut loc = [0; 8];
        let mut load = vec![80.0, 0.0];
        let mut kind = vec![None; 8];
        let vcpus = Vcpus {
            weight: &weight,
            guest: &guest,
            cur: &cur,
        };
        Balancer::new(2.5, 0.0, 100, vcpus, &mut loc, &mut load).run(&mut kind);
        assert_eq!(load, vec![40.0, 40.0]);
        for g in 0..2 {
            let on_1 = (0..8).filter(|&v| guest[v] == g && loc[v] == 1).count();
            assert_eq!(on_1, 2, "guest {g}: {loc:?}");
        }
    }

    /// Pairs of one guest's vCPUs on one pCPU.
    fn stacked(guest: &[usize], loc: &[usize]) -> usize {
        let pairs = guest_pairs(&(0..guest.len()).collect::<Vec<_>>(), guest);
        pairs.iter().filter(|&&(i, j)| loc[i] == loc[j]).count()
    }

    /// Four 4-vCPU guests of equal parts on pCPU0 of four: too many
    /// placements for the exhaustive search (4^16), so the greedy search
    /// plans them. Each pCPU needs 4 of the 16: the greedy steps alone
    /// leave 10 pairs of one guest's vCPUs on one pCPU, the spread rule none
    /// (one vCPU of each guest per pCPU), with the same 12 pin changes.
    #[test]
    fn the_greedy_search_spreads_guests_too() {
        let weight = [10.0; 16];
        let guest: Vec<usize> = (0..16).map(|v| v / 4).collect();
        let cur = [Some(0); 16];
        let run = |spread: bool| {
            let mut loc = [0; 16];
            let mut load = vec![160.0, 0.0, 0.0, 0.0];
            let mut kind = vec![None; 16];
            let vcpus = Vcpus {
                weight: &weight,
                guest: &guest,
                cur: &cur,
            };
            let mut b = Balancer::new(2.5, 0.0, 100, vcpus, &mut loc, &mut load);
            b.local_search(&mut kind);
            if spread {
                b.spread(&mut kind);
            }
            let changes = (0..16).filter(|&v| loc[v] != 0).count();
            assert_eq!(load, vec![40.0; 4]);
            assert_eq!(kind.iter().filter(|k| k.is_some()).count(), changes);
            (changes, stacked(&guest, &loc))
        };
        let (greedy, spread) = (run(false), run(true));
        assert_eq!(greedy.0, 12);
        assert_eq!(spread.0, 12);
        assert!(greedy.1 >= 8, "greedy alone: {greedy:?}");
        assert_eq!(
            spread.1, 0,
            "with the spread rule (greedy alone {greedy:?})"
        );
    }

    /// Found by `prop_plan_is_sound` once the exhaustive search was left
    /// out: three pCPUs at 122/95/89 (optimum std-dev 4.3). No pairwise
    /// move, swap or pair repartition narrows a gap after the greedy steps
    /// (104/95/107, std-dev 5.1 > 5); a three-way rotation does.
    #[test]
    fn exhaustive_search_beats_the_local_search() {
        let weight = [50.0, 39.0, 11.0, 95.0, 54.0, 21.0, 36.0];
        let cur: Vec<Option<usize>> = [2, 2, 0, 1, 0, 0, 0].iter().map(|&p| Some(p)).collect();
        let run = |exact: bool| {
            let mut loc: Vec<usize> = cur.iter().flatten().copied().collect();
            let mut load = vec![0.0; 3];
            for (v, &p) in loc.iter().enumerate() {
                load[p] += weight[v];
            }
            let mut kind = vec![None; weight.len()];
            let guest: Vec<usize> = (0..weight.len()).collect();
            let vcpus = Vcpus {
                weight: &weight,
                guest: &guest,
                cur: &cur,
            };
            let mut b = Balancer::new(5.0, 0.0, 100, vcpus, &mut loc, &mut load);
            if exact {
                b.run(&mut kind);
            } else {
                b.local_search(&mut kind);
            }
            stddev(&load)
        };
        let (local, full) = (run(false), run(true));
        assert!(local > 5.0, "local search alone: {local}");
        assert!(full <= 5.0, "with the exhaustive search: {full}");
    }
}
