//! Matching a snapshot to the usage history: both are sorted by domain
//! UUID (and a domain's vCPUs by number), so each interval merges the two
//! lists instead of hashing. One string comparison per vCPU finds the
//! snapshot's runs of one domain when it is in order (the adapter reads
//! domains in order), one per guest pairs each run with its history, and
//! a guest whose vCPUs are the same as last time pairs them by position.
//! The pairing also tells which pCPUs' sharing changed since the last
//! reading, as old usage no longer describes the vCPUs there.

use std::cmp::Ordering;
use std::ops::Range;

use super::{single_pin, GuestHistory, Snapshot, VcpuHistory, VcpuSample};

/// `snap`'s vCPUs sorted by (domain, vCPU), duplicates dropped, and the
/// index ranges of its runs of one domain. One comparison of the domain
/// strings per vCPU when the snapshot is in order (the adapter reads
/// domains in order); a sort and a second pass otherwise.
pub(super) fn sorted_runs(snap: &Snapshot) -> (Vec<&VcpuSample>, Vec<Range<usize>>) {
    let mut order: Vec<&VcpuSample> = snap.vcpus.iter().collect();
    if let Some(runs) = runs_if_sorted(&mut order) {
        return (order, runs);
    }
    order.sort_unstable_by(|a, b| (a.domain.as_str(), a.vcpu).cmp(&(b.domain.as_str(), b.vcpu)));
    let runs = runs_if_sorted(&mut order).unwrap_or_default();
    (order, runs)
}

/// Drops duplicates of `order` and returns its runs of one domain, or
/// `None` (leaving `order` as it was) if it is not sorted.
fn runs_if_sorted(order: &mut Vec<&VcpuSample>) -> Option<Vec<Range<usize>>> {
    let mut keep = vec![true; order.len()];
    let mut starts = Vec::new();
    for i in 1..order.len() {
        let (a, b) = (order[i - 1], order[i]);
        match a.domain.cmp(&b.domain) {
            Ordering::Less => starts.push(i),
            Ordering::Greater => return None,
            Ordering::Equal => match a.vcpu.cmp(&b.vcpu) {
                Ordering::Less => {}
                Ordering::Equal => keep[i] = false,
                Ordering::Greater => return None,
            },
        }
    }
    if keep.iter().all(|&k| k) {
        let mut runs = Vec::with_capacity(starts.len() + 1);
        let mut from = 0;
        for s in starts.into_iter().chain([order.len()]) {
            if s > from {
                runs.push(from..s);
            }
            from = s;
        }
        return Some(runs);
    }
    // Duplicates: drop them, then the runs of what is left.
    let mut j = 0;
    order.retain(|_| {
        j += 1;
        keep[j - 1]
    });
    let mut runs = Vec::new();
    let mut from = 0;
    for i in 1..=order.len() {
        if i == order.len() || order[i].domain != order[from].domain {
            runs.push(from..i);
            from = i;
        }
    }
    Some(runs)
}

/// For each run of one domain in `order` (sorted), the index in `guests`
/// (sorted by key) of its history: one merge of the two lists, one string
/// comparison per guest in the common case.
pub(super) fn join(
    guests: &[GuestHistory],
    order: &[&VcpuSample],
    runs: &[Range<usize>],
) -> Vec<Option<usize>> {
    let mut i = 0;
    runs.iter()
        .map(|run| {
            let dom = order[run.start].domain.as_str();
            while let Some(g) = guests.get(i) {
                match g.key.as_str().cmp(dom) {
                    Ordering::Less => i += 1,
                    Ordering::Equal => return Some(i),
                    Ordering::Greater => return None,
                }
            }
            None
        })
        .collect()
}

/// The previous readings of one run of vCPUs, by position in the run.
pub(super) enum Prev {
    /// The guest has the same vCPUs as before: its histories, in order.
    Aligned,
    /// It gained or lost vCPUs (or is new): each one's history, if any.
    Mapped(Vec<Option<VcpuHistory>>),
}

impl Prev {
    /// Pairs `samples` (one run, in vCPU order) with the histories of
    /// `vcpus` (in vCPU order).
    pub(super) fn of(vcpus: &[VcpuHistory], samples: &[&VcpuSample]) -> Prev {
        let aligned = vcpus.len() == samples.len()
            && vcpus.iter().zip(samples).all(|(h, s)| h.vcpu == s.vcpu);
        if aligned {
            return Prev::Aligned;
        }
        Prev::Mapped(
            samples
                .iter()
                .map(|s| {
                    let j = vcpus.binary_search_by_key(&s.vcpu, |h| h.vcpu).ok()?;
                    Some(vcpus[j])
                })
                .collect(),
        )
    }

    /// The history of the `j`-th vCPU of the run.
    pub(super) fn get(&self, vcpus: &[VcpuHistory], j: usize) -> Option<VcpuHistory> {
        match self {
            Prev::Aligned => Some(vcpus[j]),
            Prev::Mapped(m) => m[j],
        }
    }
}

/// Takes each run's history out of `old` (by `at`, from [`join`]; a new
/// guest gets an empty one) and pairs it with the run's samples. Also
/// returns the pCPUs, sorted, whose set of pinned vCPUs changed since the
/// last reading: a vCPU pinned, unpinned or moved there, new, presampled
/// (its usage so far spans the presample only) or gone, and those of
/// domains that vanished.
pub(super) fn pair_up(
    mut old: Vec<GuestHistory>,
    order: &[&VcpuSample],
    runs: &[Range<usize>],
    at: Vec<Option<usize>>,
) -> (Vec<(GuestHistory, Prev)>, Vec<u32>) {
    let mut changed: Vec<u32> = Vec::new();
    let mut pending: Vec<(GuestHistory, Prev)> = Vec::with_capacity(runs.len());
    for (run, at) in runs.iter().zip(at) {
        let samples = &order[run.clone()];
        let prev = match at {
            Some(i) => std::mem::take(&mut old[i]),
            None => GuestHistory {
                key: samples[0].domain.clone(),
                ..GuestHistory::default()
            },
        };
        let pairing = Prev::of(&prev.vcpus, samples);
        for (j, s) in samples.iter().enumerate() {
            let p = pairing.get(&prev.vcpus, j);
            let (was, now) = (p.and_then(|h| h.pin), single_pin(&s.affinity));
            if p.map_or(true, |h| h.presampled) || was != now {
                changed.extend(was);
                changed.extend(now);
            }
        }
        if matches!(pairing, Prev::Mapped(_)) {
            // vCPUs of this domain that vanished.
            let gone = prev
                .vcpus
                .iter()
                .filter(|h| samples.binary_search_by_key(&h.vcpu, |s| s.vcpu).is_err());
            changed.extend(gone.filter_map(|h| h.pin));
        }
        pending.push((prev, pairing));
    }
    // Domains that vanished (the others were taken, leaving no vCPUs).
    changed.extend(
        old.iter()
            .flat_map(|g| g.vcpus.iter().filter_map(|h| h.pin)),
    );
    changed.sort_unstable();
    changed.dedup();
    (pending, changed)
}
