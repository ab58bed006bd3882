//! Replays a lab run's recorded vCPU times through the vCPU planner, to see
//! what it would plan on real guests' readings without running them again:
//! `cargo run --release --example vcpu_replay -- lab/out/SCENARIO [INTERVAL_S]`.
//!
//! It reads the run's `vcpu.csv` (the lab's 1 s sampler: cumulative vCPU
//! time and affinity per guest and vCPU) and `report.md` (when kvmsched
//! started and stopped). From kvmsched's start it builds a snapshot every
//! `INTERVAL_S` seconds (default 4, at least 1), presampling on the next
//! sample (1 s later) when the planner asks for it, much as the daemon
//! does, and prints per interval:
//! - the plan's one-line summary;
//! - `measured`: the pCPU loads the lab measured over that interval (vCPU
//!   time by the pCPU the lab counted each vCPU on) and their std-dev.
//!
//! With `REPLAY_GUESTS=1` it also prints, per guest, whether its threads
//! float and its vCPUs' smoothed usage.
//!
//! The pins are not applied: the layout stays as recorded, which followed
//! the real kvmsched's plans. A replay therefore shows when the planner
//! would act on the same readings, not where that would have led.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::process::ExitCode;

use kvmsched::policy::vcpu::usage::stddev;
use kvmsched::policy::vcpu::{parse_cpu_list, Scheduler, Snapshot, VcpuConfig, VcpuSample};

/// One vCPU row: the sample, and the pCPU the lab counted its load on.
type Row = (VcpuSample, Option<u32>);
/// One sampler instant: its time (s) and its vCPU rows.
type Instant = (f64, Vec<Row>);

fn field<'a>(cols: &[&'a str], head: &[&str], name: &str) -> Result<&'a str, String> {
    let i = head
        .iter()
        .position(|h| *h == name)
        .ok_or_else(|| format!("vcpu.csv has no column {name}"))?;
    cols.get(i)
        .copied()
        .ok_or_else(|| format!("vcpu.csv: a row has no {name}"))
}

/// The lab's affinity column: `0`, `0+1`, or `-` when it was not read.
fn cpus(field: &str) -> Option<Vec<u32>> {
    match field {
        "-" | "" => Some(Vec::new()),
        f => parse_cpu_list(&f.replace('+', ",")).ok(),
    }
}

fn read_samples(csv: &str) -> Result<Vec<Instant>, String> {
    let mut lines = csv.lines();
    let head: Vec<&str> = lines
        .next()
        .ok_or("vcpu.csv is empty")?
        .split(',')
        .collect();
    let mut by_t: BTreeMap<u64, Vec<Row>> = BTreeMap::new();
    for line in lines {
        let cols: Vec<&str> = line.split(',').collect();
        let bad = |what: &str| format!("vcpu.csv: bad {what} in {line:?}");
        let get = |name: &str| field(&cols, &head, name);
        let t: f64 = get("t")?
            .parse()
            .ok()
            .filter(|t: &f64| t.is_finite() && *t >= 0.0)
            .ok_or_else(|| bad("t"))?;
        let guest = get("guest")?.to_string();
        let sample = VcpuSample {
            domain: guest.clone(),
            name: guest,
            vcpu: get("vcpu")?.parse().map_err(|_| bad("vcpu"))?,
            cpu_time_ns: get("time_ns")?.parse().map_err(|_| bad("time_ns"))?,
            affinity: cpus(get("affinity")?).ok_or_else(|| bad("affinity"))?,
            running_on: get("ran_on")?.parse().ok(),
        };
        let counted_on = get("counted_on")?.parse().ok();
        by_t.entry((t * 1000.0).round() as u64)
            .or_default()
            .push((sample, counted_on));
    }
    Ok(by_t
        .into_iter()
        .map(|(ms, v)| (ms as f64 / 1000.0, v))
        .collect())
}

/// The number after `key` in `text` (e.g. `started at t=` → 40.3).
fn number_after(text: &str, key: &str) -> Option<f64> {
    let rest = &text[text.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn snapshot(at: &Instant, pcpus: &[u32]) -> Snapshot {
    Snapshot {
        monotonic_ns: (at.0 * 1e9) as u64,
        pcpus: pcpus.to_vec(),
        vcpus: at.1.iter().map(|(s, _)| s.clone()).collect(),
    }
}

/// The pCPU loads measured between two instants, in `pcpus` order: each
/// vCPU's usage on the pCPU the lab counted it on.
fn measured_loads(from: &Instant, to: &Instant, pcpus: &[u32]) -> Option<Vec<f64>> {
    let dt = to.0 - from.0;
    if dt <= 0.0 {
        return None;
    }
    let mut loads = vec![0.0; pcpus.len()];
    for (s, on) in &to.1 {
        let (before, _) = from
            .1
            .iter()
            .find(|(p, _)| p.domain == s.domain && p.vcpu == s.vcpu)?;
        let i = pcpus.iter().position(|c| Some(*c) == *on)?;
        loads[i] += s.cpu_time_ns.saturating_sub(before.cpu_time_ns) as f64 / 1e9 / dt * 100.0;
    }
    Some(loads)
}

/// Why a replay stopped early.
enum Stop {
    /// The reader of its output went away (e.g. `| head`): not an error.
    Closed,
    Error(String),
}

impl From<String> for Stop {
    fn from(e: String) -> Self {
        Stop::Error(e)
    }
}

impl From<&str> for Stop {
    fn from(e: &str) -> Self {
        Stop::Error(e.to_string())
    }
}

/// Writes one line of output.
fn put(out: &mut impl Write, line: &str) -> Result<(), Stop> {
    writeln!(out, "{line}").map_err(|e| match e.kind() {
        io::ErrorKind::BrokenPipe => Stop::Closed,
        _ => Stop::Error(format!("stdout: {e}")),
    })
}

fn run() -> Result<(), Stop> {
    let mut out = io::stdout().lock();
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: vcpu_replay RUN_DIR [INTERVAL_S]")?;
    let interval: f64 = match args.next() {
        Some(s) => s
            .parse()
            .ok()
            .filter(|i: &f64| i.is_finite() && *i >= 1.0)
            .ok_or_else(|| format!("bad interval {s:?}: seconds, at least 1"))?,
        None => 4.0,
    };
    let read =
        |f: &str| fs::read_to_string(format!("{dir}/{f}")).map_err(|e| format!("{dir}/{f}: {e}"));
    let samples = read_samples(&read("vcpu.csv")?)?;
    let report = read("report.md")?;
    let start = number_after(&report, "started at t=").ok_or("report.md: no start time")?;
    let stop = number_after(&report, "stopped at t=").unwrap_or(f64::MAX);
    let mut pcpus: Vec<u32> = samples
        .iter()
        .flat_map(|(_, v)| v.iter().flat_map(|(s, _)| s.affinity.iter().copied()))
        .collect();
    pcpus.sort_unstable();
    pcpus.dedup();

    let mut sched = Scheduler::new(VcpuConfig::default());
    let mut i = samples
        .iter()
        .position(|(t, _)| *t >= start)
        .ok_or("no sample after kvmsched's start")?;
    let mut last: Option<usize> = None;
    while i < samples.len() && samples[i].0 <= stop {
        let mut snap = snapshot(&samples[i], &pcpus);
        if sched.wants_presample(&snap) && i + 1 < samples.len() {
            sched.observe(&snap);
            i += 1;
            snap = snapshot(&samples[i], &pcpus);
        }
        let plan = sched.plan(&snap);
        let measured = match last.and_then(|l| measured_loads(&samples[l], &samples[i], &pcpus)) {
            Some(loads) => {
                let each: Vec<String> = pcpus
                    .iter()
                    .zip(&loads)
                    .map(|(c, l)| format!("{c}:{l:.1}"))
                    .collect();
                format!("{} sd {:.1}", each.join(" "), stddev(&loads))
            }
            None => "-".to_string(),
        };
        put(
            &mut out,
            &format!("t={:.1} measured {measured} | {plan}", samples[i].0),
        )?;
        if std::env::var_os("REPLAY_GUESTS").is_some() {
            let mut names: Vec<&str> = snap.vcpus.iter().map(|s| s.domain.as_str()).collect();
            names.sort_unstable();
            names.dedup();
            for d in names {
                let n = snap.vcpus.iter().filter(|s| s.domain == d).count() as u32;
                let u: Vec<String> = (0..n)
                    .map(|v| sched.usage(d, v).map_or("-".into(), |u| format!("{u:.1}")))
                    .collect();
                let line = format!(
                    "   {d} floating {:?} usage {}",
                    sched.floating(d),
                    u.join(" ")
                );
                put(&mut out, &line)?;
            }
        }
        last = Some(i);
        // The next sample at least an interval on (less a quarter of the
        // sampler's period, for its jitter); `interval` ≥ 1 s moves on.
        let next = samples[i].0 + interval - 0.25;
        match samples[i..].iter().position(|(t, _)| *t >= next) {
            Some(k) => i += k,
            None => break,
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) | Err(Stop::Closed) => ExitCode::SUCCESS,
        Err(Stop::Error(e)) => {
            eprintln!("vcpu_replay: {e}");
            ExitCode::FAILURE
        }
    }
}
