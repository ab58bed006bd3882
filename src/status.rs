//! `kvmsched status`: one virt-top-like table of domains, vCPUs and host.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::cpulist::format_cpu_list;
use crate::json::printable;
use crate::policy::vcpu::usage::{load_pcpu, stddev, usage_pct};
use crate::sample::{self, monotonic_ns, Want};
use crate::virt::{Connection, ListFilter, NodeCpuStats, Result};

/// One vCPU row.
#[derive(Debug, Clone, PartialEq)]
pub struct VcpuRow {
    /// vCPU number.
    pub vcpu: u32,
    /// pCPU it ran on at the second sample.
    pub pcpu: Option<u32>,
    /// Affinity list.
    pub affinity: Vec<u32>,
    /// Usage over the window (percent of one pCPU), if both samples exist.
    pub usage: Option<f64>,
}

/// One domain's rows.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainRow {
    /// Name.
    pub name: String,
    /// vCPUs.
    pub vcpus: Vec<VcpuRow>,
    /// Balloon size (KiB).
    pub actual_kib: Option<u64>,
    /// Unused (KiB).
    pub unused_kib: Option<u64>,
    /// Available (KiB).
    pub available_kib: Option<u64>,
    /// Max (KiB).
    pub max_kib: Option<u64>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// URI.
    pub uri: String,
    /// Window (s).
    pub window_s: f64,
    /// Online pCPUs with busy percent (from host CPU times) and the load
    /// of the vCPUs attributed to them.
    pub pcpus: Vec<(u32, Option<f64>, f64)>,
    /// Host free memory (KiB) and its source.
    pub host_free: Option<(u64, &'static str)>,
    /// Domains.
    pub domains: Vec<DomainRow>,
    /// Domains that could not be read.
    pub skipped: Vec<String>,
    /// Host summary line (model, CPUs, MHz) and libvirt version.
    pub host: String,
    /// Defined domains that are not running.
    pub inactive: Vec<String>,
    /// How the domains were read (bulk stats or per-domain calls).
    pub read_path: Option<sample::ReadPath>,
}

fn cpu_times(conn: &Connection, cpus: &[u32]) -> Vec<Option<NodeCpuStats>> {
    // Per-CPU figures are optional in this report: a driver without them
    // shows "-" rather than failing the command.
    cpus.iter()
        .map(|&c| conn.node_cpu_stats(Some(c)).ok())
        .collect()
}

/// Samples twice, `window` apart, and builds the report.
pub fn collect(conn: &Connection, window: Duration) -> Result<Report> {
    let uri = conn.canonical_uri()?;
    let version = conn.lib_version()?;
    let info = conn.node_info()?;
    let host = sample::read_host_cpus(conn)?;
    let online = host.online.cpus();
    let host_line = format!(
        "{} pCPUs online ({}) of {} present, {} {} MHz, libvirt {}.{}.{}",
        online.len(),
        format_cpu_list(&online),
        host.present,
        info.model,
        info.mhz,
        version / 1_000_000,
        (version / 1000) % 1000,
        version % 1000
    );
    let defined: Vec<String> = conn
        .list_all_domains(ListFilter::All)?
        .iter()
        .map(|d| d.name().to_string())
        .collect();
    let want = Want {
        vcpus: true,
        memory: true,
    };
    let cpu0 = cpu_times(conn, &online);
    let t0 = monotonic_ns();
    let (first, _) = sample::read_domains(conn, host.present, want, &|_| false)?;
    let before: BTreeMap<(String, u32), u64> = first
        .iter()
        .flat_map(|d| {
            d.vcpus
                .iter()
                .map(move |v| ((d.domain.uuid().to_string(), v.number), v.cpu_time_ns))
        })
        .collect();
    std::thread::sleep(window);
    let cpu1 = cpu_times(conn, &online);
    let t1 = monotonic_ns();
    let (second, skipped) = sample::read_domains(
        conn,
        host.present,
        Want {
            vcpus: true,
            memory: false,
        },
        &|_| false,
    )?;
    let wall_s = t1.saturating_sub(t0) as f64 / 1e9;

    let mut load: BTreeMap<u32, f64> = online.iter().map(|&c| (c, 0.0)).collect();
    let mut domains = Vec::new();
    for d in &second {
        let mem = first.iter().find(|f| f.domain.uuid() == d.domain.uuid());
        let mut rows = Vec::new();
        for v in &d.vcpus {
            let usage = before
                .get(&(d.domain.uuid().to_string(), v.number))
                .and_then(|&t| usage_pct((t, v.cpu_time_ns), (t0, t1)));
            let affinity = v.affinity.cpus();
            if let (Some(u), Some(p)) = (usage, load_pcpu(&affinity, v.cpu)) {
                *load.entry(p).or_insert(0.0) += u;
            }
            rows.push(VcpuRow {
                vcpu: v.number,
                pcpu: v.cpu,
                affinity,
                usage,
            });
        }
        domains.push(DomainRow {
            name: d.domain.name().to_string(),
            vcpus: rows,
            actual_kib: mem.and_then(|m| m.memory.actual),
            unused_kib: mem.and_then(|m| m.memory.unused),
            available_kib: mem.and_then(|m| m.memory.available),
            max_kib: mem.and_then(|m| m.max_kib),
        });
    }
    let pcpus = online
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let busy = match (
                cpu0.get(i).copied().flatten(),
                cpu1.get(i).copied().flatten(),
            ) {
                (Some(a), Some(b)) if b.total() > a.total() => Some(
                    b.busy().saturating_sub(a.busy()) as f64 / (b.total() - a.total()) as f64
                        * 100.0,
                ),
                _ => None,
            };
            (c, busy, load.get(&c).copied().unwrap_or(0.0))
        })
        .collect();
    let mut inactive: Vec<String> = defined
        .into_iter()
        .filter(|n| !second.iter().any(|d| d.domain.name() == n))
        .collect();
    inactive.sort();
    let host_free = sample::read_host_free(conn).ok().map(|h| (h.kib, h.source));
    Ok(Report {
        uri,
        host: host_line,
        inactive,
        read_path: sample::read_path(conn),
        window_s: wall_s,
        pcpus,
        host_free,
        domains,
        skipped: skipped
            .into_iter()
            .map(|s| format!("{}: {}", s.name, s.error))
            .collect(),
    })
}

fn mib(kib: Option<u64>) -> String {
    kib.map(|k| (k / 1024).to_string())
        .unwrap_or_else(|| "-".to_string())
}

fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1}"))
        .unwrap_or_else(|| "-".to_string())
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        writeln!(
            out,
            "kvmsched status  {}  window {:.2}s",
            self.uri, self.window_s
        )?;
        writeln!(out, "host: {}", self.host)?;
        if let Some(path) = self.read_path {
            writeln!(out, "domains read by {path}")?;
        }
        match self.host_free {
            Some((kib, src)) => writeln!(out, "host free memory: {} MiB ({src})", kib / 1024)?,
            None => writeln!(out, "host free memory: unknown")?,
        }
        let loads: Vec<f64> = self.pcpus.iter().map(|p| p.2).collect();
        writeln!(out, "\n{:>5} {:>7} {:>10}", "PCPU", "BUSY%", "VCPU-LOAD%")?;
        for (c, busy, load) in &self.pcpus {
            writeln!(out, "{:>5} {:>7} {:>10.1}", c, pct(*busy), load)?;
        }
        writeln!(out, "vCPU load std-dev: {:.1} points", stddev(&loads))?;
        writeln!(
            out,
            "\n{:<20} {:>4} {:>4} {:<10} {:>6} {:>8} {:>8} {:>8} {:>8}",
            "DOMAIN", "VCPU", "PCPU", "AFFINITY", "CPU%", "ACTUAL", "UNUSED", "AVAIL", "MAX(MiB)"
        )?;
        for d in &self.domains {
            if d.vcpus.is_empty() {
                writeln!(
                    out,
                    "{:<20} {:>4} {:>4} {:<10} {:>6} {:>8} {:>8} {:>8} {:>8}",
                    printable(&d.name),
                    "-",
                    "-",
                    "-",
                    "-",
                    mib(d.actual_kib),
                    mib(d.unused_kib),
                    mib(d.available_kib),
                    mib(d.max_kib)
                )?;
            }
            for (i, v) in d.vcpus.iter().enumerate() {
                let (name, a, u, av, m) = if i == 0 {
                    (
                        printable(&d.name),
                        mib(d.actual_kib),
                        mib(d.unused_kib),
                        mib(d.available_kib),
                        mib(d.max_kib),
                    )
                } else {
                    (
                        "".into(),
                        String::new(),
                        String::new(),
                        String::new(),
                        String::new(),
                    )
                };
                let aff = if v.affinity.is_empty() {
                    "-".to_string()
                } else {
                    format_cpu_list(&v.affinity)
                };
                writeln!(
                    out,
                    "{:<20} {:>4} {:>4} {:<10} {:>6} {:>8} {:>8} {:>8} {:>8}",
                    name,
                    v.vcpu,
                    v.pcpu.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
                    aff,
                    pct(v.usage),
                    a,
                    u,
                    av,
                    m
                )?;
            }
        }
        if self.domains.is_empty() {
            writeln!(out, "(no running domains)")?;
        }
        if !self.inactive.is_empty() {
            let names: Vec<_> = self.inactive.iter().map(|n| printable(n)).collect();
            writeln!(out, "not running: {}", names.join(", "))?;
        }
        for s in &self.skipped {
            writeln!(out, "skipped {}", printable(s))?;
        }
        f.write_str(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_missing_figures_as_dashes() {
        let r = Report {
            uri: "test:///x".into(),
            window_s: 1.0,
            pcpus: vec![(0, None, 25.0), (1, Some(10.0), 0.0)],
            host_free: None,
            domains: vec![DomainRow {
                name: "d".into(),
                vcpus: vec![VcpuRow {
                    vcpu: 0,
                    pcpu: None,
                    affinity: vec![0, 1],
                    usage: None,
                }],
                actual_kib: Some(524_288),
                unused_kib: None,
                available_kib: None,
                max_kib: Some(2_097_152),
            }],
            skipped: vec![],
            host: "2 pCPUs".into(),
            inactive: vec!["off".into()],
            read_path: Some(sample::ReadPath::PerDomain),
        };
        let s = r.to_string();
        assert!(s.contains("host free memory: unknown"));
        assert!(s.contains("not running: off"));
        assert!(s.contains("domains read by per-domain calls"), "{s}");
        assert!(s.contains("std-dev: 12.5"), "{s}");
        let row = s.lines().find(|l| l.starts_with("d ")).expect("row");
        assert!(row.contains("0-1"), "{row}");
        assert!(row.contains("512") && row.contains("2048"), "{row}");
    }
}
