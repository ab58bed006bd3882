//! The contention simulator: planner and host over many intervals, with
//! guests whose threads float between their vCPUs, and the tests that
//! drive it.
use super::*;

/// Each pCPU shares its 100 % among its vCPUs' demands, max-min fair.
pub(super) struct Sim {
    pcpus: Vec<u32>,
    now: u64,
    /// (sample, demand %)
    vcpus: Vec<(VcpuSample, f64)>,
    /// Load per pCPU measured over the last interval (the lab's view).
    pub(super) measured: Vec<f64>,
    /// Guests whose threads float: (indices of its vCPUs, total demand,
    /// spread). Each interval its total is split anew over its vCPUs,
    /// vCPU v getting a part ∝ 1 + spread × u_v, u_v uniform in [-1, 1].
    floating: Vec<(Vec<usize>, f64, f64)>,
    rng: u64,
}

impl Sim {
    pub(super) fn new(pcpus: &[u32], vcpus: &[(&str, u32, f64, &[u32])]) -> Self {
        Sim {
            pcpus: pcpus.to_vec(),
            now: 0,
            vcpus: vcpus
                .iter()
                .map(|&(d, v, dem, a)| (sample(d, v, 0, a), dem))
                .collect(),
            measured: vec![0.0; pcpus.len()],
            floating: Vec::new(),
            rng: 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// Makes `domain`'s threads float: its `total` demand is split anew
    /// over its vCPUs every interval (see `floating`).
    pub(super) fn float(&mut self, domain: &str, total: f64, spread: f64) {
        let idx: Vec<usize> = (0..self.vcpus.len())
            .filter(|&i| self.vcpus[i].0.name == domain)
            .collect();
        self.floating.push((idx, total, spread));
    }

    /// Uniform in [-1, 1] (xorshift64*).
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        x as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }

    fn resplit(&mut self) {
        for g in 0..self.floating.len() {
            let (idx, total, spread) = self.floating[g].clone();
            let parts: Vec<f64> = idx.iter().map(|_| 1.0 + spread * self.uniform()).collect();
            let sum: f64 = parts.iter().sum();
            for (&i, part) in idx.iter().zip(parts) {
                self.vcpus[i].1 = (total * part / sum).min(100.0);
            }
        }
    }

    /// Where a vCPU runs: its pin, else spread over its affinity.
    fn runs_on(s: &VcpuSample) -> u32 {
        s.affinity[s.vcpu as usize % s.affinity.len()]
    }

    pub(super) fn advance(&mut self) {
        self.resplit();
        let dt = SEC;
        self.now += dt;
        let mut got = vec![0.0; self.vcpus.len()];
        for &cpu in &self.pcpus {
            let mut on: Vec<usize> = (0..self.vcpus.len())
                .filter(|&i| Self::runs_on(&self.vcpus[i].0) == cpu)
                .collect();
            on.sort_by(|&a, &b| self.vcpus[a].1.total_cmp(&self.vcpus[b].1));
            let mut left = 100.0;
            for (k, &i) in on.iter().enumerate() {
                let share = left / (on.len() - k) as f64;
                got[i] = self.vcpus[i].1.min(share);
                left -= got[i];
            }
        }
        self.measured = vec![0.0; self.pcpus.len()];
        for (i, (s, _)) in self.vcpus.iter_mut().enumerate() {
            s.cpu_time_ns += (got[i] * dt as f64 / 100.0).round() as u64;
            s.running_on = Some(Self::runs_on(s));
            if let Ok(p) = self.pcpus.binary_search(&Self::runs_on(s)) {
                self.measured[p] += got[i];
            }
        }
    }

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot {
            monotonic_ns: self.now,
            pcpus: self.pcpus.clone(),
            vcpus: self.vcpus.iter().map(|v| v.0.clone()).collect(),
        }
    }

    pub(super) fn apply(&mut self, plan: &Plan<'_>) {
        for pin in &plan.pins {
            for (s, _) in self.vcpus.iter_mut() {
                if s.domain == pin.domain && s.vcpu == pin.vcpu {
                    s.affinity = vec![pin.pcpu];
                }
            }
        }
    }

    pub(super) fn measured_sd(&self) -> f64 {
        stddev(&self.measured)
    }

    pub(super) fn all_pinned(&self) -> bool {
        self.vcpus
            .iter()
            .all(|(s, _)| s.affinity.len() == 1 && self.pcpus.contains(&s.affinity[0]))
    }

    /// Runs `n` intervals; returns (pin changes, measured sd) per
    /// interval. Interval k plans on the usage measured since k−1.
    pub(super) fn run(&mut self, sched: &mut Scheduler, n: usize) -> Vec<(usize, f64)> {
        let mut out = Vec::new();
        for _ in 0..n {
            let snap = self.snapshot();
            let plan = sched.plan(&snap);
            self.apply(&plan);
            self.advance();
            out.push((plan.pins.len(), self.measured_sd()));
        }
        out
    }
}

#[test]
fn sim_all_on_one_converges_within_three_intervals_then_stays() {
    let heavy: Vec<Spec<'_>> = ["a", "b", "c", "d"]
        .iter()
        .map(|d| (*d, 0, 100.0, &[0u32][..]))
        .collect();
    let mut sim = Sim::new(&[0, 1], &heavy);
    sim.advance(); // the load ran before kvmsched started
    let mut s = Scheduler::new(VcpuConfig::default());
    let r = sim.run(&mut s, 8);
    // Interval 1 warm-up, interval 2 moves two, measured balanced after.
    assert_eq!(r[0].0, 0, "{r:?}");
    assert_eq!(r[1].0, 2, "{r:?}");
    assert!(r[1].1 <= 5.0, "{r:?}");
    assert!(
        r[2..].iter().all(|&(pins, sd)| pins == 0 && sd <= 5.0),
        "{r:?}"
    );
}

#[test]
fn sim_mixed_unpinned_ends_one_heavy_one_light_per_pcpu() {
    let both: &[u32] = &[0, 1];
    // Domain order puts both heavies on pCPU0 in the warm-up placement.
    let specs: [Spec<'_>; 4] = [
        ("a-heavy", 0, 100.0, both),
        ("b-light", 0, 30.0, both),
        ("c-heavy", 0, 100.0, both),
        ("d-light", 0, 30.0, both),
    ];
    let mut sim = Sim::new(both, &specs);
    let mut s = Scheduler::new(VcpuConfig::default());
    let r = sim.run(&mut s, 8);
    assert!(sim.all_pinned());
    assert!(
        r[2..].iter().all(|&(pins, sd)| pins == 0 && sd <= 5.0),
        "{r:?}"
    );
    for cpu in [0, 1] {
        let mut kinds: Vec<&str> = sim
            .vcpus
            .iter()
            .filter(|(v, _)| v.affinity == [cpu])
            .map(|(v, _)| &v.name[2..])
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["heavy", "light"], "pCPU {cpu}");
    }
}

#[test]
fn sim_mixed_heavies_together_are_swapped() {
    // Pinned so that the heavies share pCPU0: measured 50+50 vs 30+30.
    let specs: [Spec<'_>; 4] = [
        ("h1", 0, 100.0, &[0]),
        ("h2", 0, 100.0, &[0]),
        ("l1", 0, 30.0, &[1]),
        ("l2", 0, 30.0, &[1]),
    ];
    let mut sim = Sim::new(&[0, 1], &specs);
    sim.advance();
    let mut s = Scheduler::new(VcpuConfig::default());
    let r = sim.run(&mut s, 6);
    assert_eq!(r[1].0, 2, "{r:?}");
    assert!((sim.measured[0] - 100.0).abs() < 1e-6 && (sim.measured[1] - 100.0).abs() < 1e-6);
    assert!(r[2..].iter().all(|&(pins, _)| pins == 0), "{r:?}");
}

#[test]
fn sim_seed_4x4_unpinned_balances_and_stays() {
    let all: &[u32] = &[0, 1];
    let mut specs: Vec<Spec<'_>> = Vec::new();
    for (gi, g) in ["g1", "g2", "g3", "g4"].iter().enumerate() {
        for v in 0..4 {
            specs.push((g, v, if gi < 2 { 100.0 } else { 1.0 }, all));
        }
    }
    let mut sim = Sim::new(all, &specs);
    let mut s = Scheduler::new(VcpuConfig::default());
    let r = sim.run(&mut s, 6);
    assert_eq!(r[0].0, 16, "all placed in warm-up: {r:?}");
    assert!(sim.all_pinned());
    assert!(r.iter().all(|&(_, sd)| sd <= 5.0), "{r:?}");
    assert!(r[1..].iter().all(|&(pins, _)| pins == 0), "{r:?}");
}

#[test]
fn sim_three_heavies_on_two_pcpus_no_ping_pong() {
    // Indivisible: the best is 2 on one pCPU, 1 on the other.
    let specs: Vec<Spec<'_>> = ["a", "b", "c"]
        .iter()
        .map(|d| (*d, 0, 100.0, &[0u32][..]))
        .collect();
    let mut sim = Sim::new(&[0, 1], &specs);
    sim.advance();
    let mut s = Scheduler::new(VcpuConfig::default());
    let r = sim.run(&mut s, 10);
    let total: usize = r.iter().map(|x| x.0).sum();
    assert_eq!(total, 1, "{r:?}");
    assert!(r[2..].iter().all(|&(_, sd)| sd <= 5.0), "{r:?}");
}

#[test]
fn sim_load_change_after_warmup_is_fixed_next_interval() {
    let specs: [Spec<'_>; 4] = [
        ("a", 0, 1.0, &[0]),
        ("b", 0, 1.0, &[0]),
        ("c", 0, 1.0, &[1]),
        ("d", 0, 1.0, &[1]),
    ];
    let mut sim = Sim::new(&[0, 1], &specs);
    let mut s = Scheduler::new(VcpuConfig::default());
    let r = sim.run(&mut s, 3);
    assert!(r.iter().all(|x| x.0 == 0));
    // a and b become busy (on the same pCPU); c and d stay idle.
    sim.vcpus[0].1 = 100.0;
    sim.vcpus[1].1 = 100.0;
    let r = sim.run(&mut s, 6);
    // First interval still plans on the old usage; the next one fixes it.
    assert_eq!(r[0].0, 0, "{r:?}");
    assert_eq!(r[1].0, 1, "{r:?}");
    assert!(r[1..].iter().all(|&(_, sd)| sd <= 5.0), "{r:?}");
    assert!(r[2..].iter().all(|&(pins, _)| pins == 0), "{r:?}");
}
