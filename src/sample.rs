//! The thin layer between libvirt and the policies: reads everything one
//! interval needs in as few round trips as the driver allows.
//!
//! Per interval: one `virConnectGetAllDomainStats` (state, and the vCPU and
//! balloon groups when asked) gives every active domain with its figures;
//! affinity and the current pCPU are not in bulk stats, so the vCPU reader
//! adds one `virDomainGetVcpus` per running domain. Drivers that leave a
//! group out of bulk stats (libvirt's test driver) are read per domain
//! instead (`virDomainGetInfo`, `virDomainMemoryStats`).

use std::sync::OnceLock;
use std::time::Instant;

use crate::policy::memory::DomainMem;
use crate::policy::vcpu::{Snapshot, VcpuSample};
use crate::virt::{
    stats, Connection, Domain, Error, ErrorKind, MemoryStats, NodeCpuMap, Result, VcpuInfo,
    STATE_RUNNING,
};

/// Nanoseconds on a monotonic clock since the process's first reading.
pub fn monotonic_ns() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One running domain as read this interval.
#[derive(Debug)]
pub struct DomainRead<'c> {
    /// The domain handle (for applying actions).
    pub domain: Domain<'c>,
    /// Its vCPUs (empty unless vCPUs were asked for).
    pub vcpus: Vec<VcpuInfo>,
    /// Balloon statistics (default unless memory was asked for).
    pub memory: MemoryStats,
    /// Maximum memory (KiB), when memory was asked for.
    pub max_kib: Option<u64>,
}

/// A domain that could not be read this interval, and why.
#[derive(Debug)]
pub struct Skipped {
    /// Domain name.
    pub name: String,
    /// The error.
    pub error: Error,
}

/// What to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// vCPU times, affinity and placement.
    pub vcpus: bool,
    /// Balloon statistics and maximum.
    pub memory: bool,
}

/// Reads every running domain. Per-domain failures (a guest shutting down
/// between two calls) are returned in the second list, not as an error; a
/// failure of the bulk call (e.g. the daemon went away) is an error.
pub fn read_domains<'c>(
    conn: &'c Connection,
    host_cpus: u32,
    want: Want,
) -> Result<(Vec<DomainRead<'c>>, Vec<Skipped>)> {
    let mut groups = stats::STATE;
    if want.vcpus {
        groups |= stats::VCPU;
    }
    if want.memory {
        groups |= stats::BALLOON;
    }
    let records = conn.all_domain_stats(groups)?;
    let mut out = Vec::with_capacity(records.len());
    let mut skipped = Vec::new();
    for rec in records {
        let state = rec.params.get_i64("state.state");
        if state.is_some_and(|s| s != i64::from(STATE_RUNNING)) {
            continue;
        }
        let name = rec.domain.name().to_string();
        match read_one(rec.domain, &rec.params, host_cpus, want) {
            Ok(Some(d)) => out.push(d),
            Ok(None) => {}
            Err(error) => skipped.push(Skipped { name, error }),
        }
    }
    out.sort_by(|a, b| a.domain.name().cmp(b.domain.name()));
    Ok((out, skipped))
}

fn read_one<'c>(
    domain: Domain<'c>,
    params: &crate::virt::TypedParams,
    host_cpus: u32,
    want: Want,
) -> Result<Option<DomainRead<'c>>> {
    let mut info = None;
    let mut vcpus = Vec::new();
    if want.vcpus {
        let n = match params.get_u64("vcpu.current") {
            Some(n) => n as u32,
            None => {
                let i = domain.info()?;
                if i.state != STATE_RUNNING {
                    return Ok(None);
                }
                info = Some(i);
                i.nr_virt_cpu
            }
        };
        if n > 0 {
            vcpus = domain.vcpus(n, host_cpus)?;
        }
    }
    let mut memory = MemoryStats::default();
    let mut max_kib = None;
    if want.memory {
        if params.get_u64("balloon.current").is_some() {
            memory = MemoryStats::from_bulk(params);
            max_kib = memory.maximum;
        } else {
            memory = domain.memory_stats()?;
        }
        if max_kib.is_none() {
            max_kib = Some(match info {
                Some(i) => i.max_mem_kib,
                None => domain.max_memory()?,
            });
        }
        if memory.actual.is_none() {
            let i = match info {
                Some(i) => i,
                None => domain.info()?,
            };
            memory.actual = Some(i.memory_kib);
        }
    }
    Ok(Some(DomainRead {
        domain,
        vcpus,
        memory,
        max_kib,
    }))
}

/// Host memory that may be granted, with where the figure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFree {
    /// KiB.
    pub kib: u64,
    /// The source, for logs and `--help`.
    pub source: &'static str,
}

/// Host free memory: free + buffers + cached from `virNodeGetMemoryStats`
/// (like /proc/meminfo's MemAvailable); drivers without it (the test
/// driver) fall back to `virNodeGetFreeMemory` (NUMA data, bytes).
pub fn read_host_free(conn: &Connection) -> Result<HostFree> {
    match conn.node_memory_stats() {
        Ok(m) => {
            if let Some(kib) = m.reclaimable_free() {
                return Ok(HostFree {
                    kib,
                    source: "virNodeGetMemoryStats free+buffers+cached",
                });
            }
        }
        Err(e) if e.kind() == ErrorKind::Unsupported => {}
        Err(e) => return Err(e),
    }
    let bytes = conn.node_free_memory()?;
    Ok(HostFree {
        kib: bytes / 1024,
        source: "virNodeGetFreeMemory (NUMA)",
    })
}

/// Host CPUs: present count (sizes cpumaps) and the online ones.
pub fn read_host_cpus(conn: &Connection) -> Result<NodeCpuMap> {
    conn.node_cpu_map()
}

/// The vCPU policy's input: every vCPU of `doms` with its cumulative time,
/// affinity and current pCPU, keyed by domain UUID.
pub fn vcpu_snapshot(doms: &[DomainRead<'_>], pcpus: Vec<u32>) -> Snapshot {
    let vcpus = doms
        .iter()
        .flat_map(|d| {
            d.vcpus.iter().map(move |v| VcpuSample {
                domain: d.domain.uuid().to_string(),
                name: d.domain.name().to_string(),
                vcpu: v.number,
                cpu_time_ns: v.cpu_time_ns,
                affinity: v.affinity.cpus(),
                running_on: v.cpu,
            })
        })
        .collect();
    Snapshot {
        monotonic_ns: monotonic_ns(),
        pcpus,
        vcpus,
    }
}

/// The memory policy's input for one domain (0 = unknown size or max, which
/// the policy never resizes).
pub fn domain_mem(d: &DomainRead<'_>) -> DomainMem {
    DomainMem {
        uuid: d.domain.uuid().to_string(),
        name: d.domain.name().to_string(),
        actual_kib: d.memory.actual.unwrap_or(0),
        max_kib: d.max_kib.unwrap_or(0),
        unused_kib: d.memory.unused,
        available_kib: d.memory.available,
        usable_kib: d.memory.usable,
        last_update: d.memory.last_update,
        rss_kib: d.memory.rss,
    }
}
