//! Planner benchmark (not a timed test): `cargo bench --bench vcpu_plan`.
//!
//! Random usage (0–100 %) for n vCPUs over 256 pCPUs; prints the time of one
//! `Scheduler::plan` call (median and min over several runs) for:
//! - `rebalance`: vCPUs hard-pinned to random pCPUs, default move cap;
//! - `rebalance-uncapped`: the same with no cap (worst case of the search);
//! - `placement`: every vCPU unpinned, usage known (LPT placement);
//! - `steady`: uncapped plans applied, usage unchanged, until one makes no
//!   pin change; the interval after that (the common case: no move).
//!
//! To time the planner of another tree beside this one in the same run,
//! add its module to `planners!` (e.g. the previous `policy/vcpu.rs` copied
//! in as `policy::vcpu_old`).

use std::hint::black_box;
use std::time::{Duration, Instant};

const PCPUS: u32 = 256;
const SEC: u64 = 1_000_000_000;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Row {
    n: usize,
    case: &'static str,
    median: Duration,
    min: Duration,
    pins: usize,
    sd_before: f64,
    sd_after: f64,
}

/// Snapshots at t = 0 s and t = 1 s for n vCPUs (4 per domain), in the
/// types of planner module `$m`.
macro_rules! snapshots {
    ($m:ident, $n:expr, $pinned:expr, $seed:expr) => {{
        use $m::{Snapshot, VcpuSample};
        let (n, pinned, seed): (usize, bool, u64) = ($n, $pinned, $seed);
        let mut rng = Rng(seed | 1);
        let pcpus: Vec<u32> = (0..PCPUS).collect();
        let mut s0 = Vec::with_capacity(n);
        let mut s1 = Vec::with_capacity(n);
        for i in 0..n {
            let affinity = if pinned {
                vec![rng.below(u64::from(PCPUS)) as u32]
            } else {
                pcpus.clone()
            };
            let usage = rng.below(10_001); // 0.00 .. 100.00 %
            let base = rng.below(1 << 40);
            let s = VcpuSample {
                domain: format!("00000000-0000-0000-0000-{:012x}", i / 4),
                name: format!("guest{}", i / 4),
                vcpu: (i % 4) as u32,
                cpu_time_ns: base,
                affinity,
                running_on: None,
            };
            let mut t = s.clone();
            t.cpu_time_ns = base + usage * SEC / 10_000;
            s0.push(s);
            s1.push(t);
        }
        let snap = |t: u64, vcpus| Snapshot {
            monotonic_ns: t * SEC,
            pcpus: pcpus.clone(),
            vcpus,
        };
        (snap(0, s0), snap(1, s1))
    }};
}

/// One measurement of planner module `$m`.
macro_rules! measure_with {
    ($m:ident, $n:expr, $case:expr, $reps:expr) => {{
        use $m::{Scheduler, VcpuConfig};
        let (n, case, reps): (usize, &'static str, usize) = ($n, $case, $reps);
        let pinned = case != "placement";
        let cfg = VcpuConfig {
            max_moves: if case == "rebalance-uncapped" || case == "steady" {
                usize::MAX
            } else {
                VcpuConfig::default().max_moves
            },
            ..VcpuConfig::default()
        };
        let (s0, s1) = snapshots!($m, n, pinned, 0x5eed + n as u64);
        let mut warm = Scheduler::new(cfg);
        warm.plan(&s0);
        let mut s2 = None;
        if case == "steady" {
            // Apply plans, the same usage every interval, until two in a row
            // make no pin change; then time the next interval. One quiet
            // plan is not enough: a multi-vCPU guest is planned as equal
            // parts of its demand until an interval with no pin change next
            // to it measures whether its split moves, and the plan after
            // that one corrects for a skew that stays put.
            let mut sched = warm.clone();
            let mut snap = s1.clone();
            let step = snap
                .vcpus
                .iter()
                .zip(&s0.vcpus)
                .map(|(v, old)| v.cpu_time_ns - old.cpu_time_ns)
                .collect::<Vec<u64>>();
            let mut quiet_in_a_row = 0;
            for k in 2..10u64 {
                let plan = sched.plan(&snap);
                let mut at: std::collections::HashMap<(String, u32), u32> = Default::default();
                for p in &plan.pins {
                    at.insert((p.domain.to_string(), p.vcpu), p.pcpu);
                }
                let quiet = plan.pins.is_empty();
                drop(plan);
                for (v, d) in snap.vcpus.iter_mut().zip(&step) {
                    if let Some(&p) = at.get(&(v.domain.clone(), v.vcpu)) {
                        v.affinity = vec![p];
                    }
                    v.cpu_time_ns += d;
                }
                snap.monotonic_ns = k * SEC;
                quiet_in_a_row = if quiet { quiet_in_a_row + 1 } else { 0 };
                if quiet_in_a_row == 2 {
                    break;
                }
                if k == 9 {
                    eprintln!("steady: still pin changes after 8 plans at {n} vCPUs");
                }
            }
            warm = sched;
            s2 = Some(snap);
        }
        let input = s2.as_ref().unwrap_or(&s1);
        let mut times = Vec::with_capacity(reps);
        let mut last = None;
        for _ in 0..reps {
            let mut sched = warm.clone();
            let t = Instant::now();
            let plan = black_box(sched.plan(black_box(input)));
            times.push(t.elapsed());
            last = Some(plan);
        }
        times.sort();
        let (pins, sd_before, sd_after) = last
            .map(|p| (p.pins.len(), p.stddev_before, p.stddev_after))
            .unwrap_or_default();
        Row {
            n,
            case,
            median: times[times.len() / 2],
            min: times[0],
            pins,
            sd_before,
            sd_after,
        }
    }};
}

/// The planners measured, by label; a comparison run lists a second one
/// (the measurement is a macro over the planner's module: the types differ).
macro_rules! planners {
    ($($label:literal => $m:path),+ $(,)?) => {
        fn planners() -> Vec<(&'static str, fn(usize, &'static str, usize) -> Row)> {
            vec![$(($label, {
                use $m as planner;
                fn measure(n: usize, case: &'static str, reps: usize) -> Row {
                    measure_with!(planner, n, case, reps)
                }
                measure
            })),+]
        }
    };
}

planners!("new" => kvmsched::policy::vcpu);

fn main() {
    // `cargo bench` passes `--bench`. Other arguments select rows: a number
    // keeps only that many vCPUs, a word only that case (e.g.
    // `cargo bench --bench vcpu_plan -- 100000 steady`, to profile one).
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let sizes: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let cases: Vec<&str> = args
        .iter()
        .filter(|a| a.parse::<usize>().is_err())
        .map(String::as_str)
        .collect();
    println!("vCPU planner, {PCPUS} pCPUs, random usage 0-100 %; time of one plan()");
    println!(
        "{:>7}  {:<19} {:<8} {:>10} {:>10} {:>6} {:>9} {:>9}",
        "vCPUs", "case", "planner", "median", "min", "pins", "sd before", "sd after"
    );
    for n in [100, 1_000, 10_000, 100_000] {
        if !sizes.is_empty() && !sizes.contains(&n) {
            continue;
        }
        let reps = if n >= 100_000 { 7 } else { 21 };
        for case in ["rebalance", "rebalance-uncapped", "placement", "steady"] {
            if !cases.is_empty() && !cases.contains(&case) {
                continue;
            }
            for (label, measure) in planners() {
                let r = measure(n, case, reps);
                println!(
                    "{:>7}  {:<19} {:<8} {:>10.3?} {:>10.3?} {:>6} {:>9.1} {:>9.1}",
                    r.n, r.case, label, r.median, r.min, r.pins, r.sd_before, r.sd_after
                );
            }
        }
    }
}
