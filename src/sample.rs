//! The thin layer between libvirt and the policies: reads everything one
//! interval needs in as few round trips as the driver allows.
//!
//! Two ways to read the running domains ([`ReadPath`]), chosen once per
//! connection:
//! - **Bulk** (the default): one `virConnectGetAllDomainStats` (state, and
//!   the vCPU and balloon groups when asked) gives every active domain with
//!   its figures, vCPU times (`vcpu.<n>.time`) with one timestamp taken
//!   when the call returns; affinity and the current pCPU are not in bulk
//!   stats, so the vCPU reader adds one `virDomainGetVcpus` per running
//!   domain, used only for those two. A
//!   group the driver leaves out of the records (libvirt 9.0's test driver
//!   fills only `state.*`) is read per domain instead (`virDomainGetInfo`,
//!   `virDomainMemoryStats`, `virDomainGetMaxMemory`).
//! - **Per domain**: when the driver or daemon does not implement
//!   `virConnectGetAllDomainStats` at all (libvirt 7.0's test driver, a
//!   daemon older than 1.2.8), `virConnectListAllDomains` (active) and then
//!   `virDomainGetInfo`, `virDomainGetVcpus`, `virDomainMemoryStats` per
//!   domain, each domain's vCPU times stamped when its `virDomainGetVcpus`
//!   returns. The switch happens on an [`ErrorKind::Unsupported`] answer
//!   only, is remembered for the life of the connection, and
//!   [`read_path`] tells the caller which path is in use so it can say so
//!   once.

use std::sync::OnceLock;
use std::time::Instant;

use crate::policy::memory::DomainMem;
use crate::policy::vcpu::{Snapshot, VcpuSample};
use crate::virt::{
    stats, Connection, Domain, DomainInfo, Error, ErrorKind, ListFilter, MemoryStats, NodeCpuMap,
    Result, TypedParams, VcpuInfo, STATE_RUNNING,
};

/// The instant [`monotonic_ns`] counts from.
fn clock_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Nanoseconds on a monotonic clock since the process's first reading.
pub fn monotonic_ns() -> u64 {
    monotonic_ns_at(Instant::now())
}

/// `at` on [`monotonic_ns`]'s clock (0 for an instant before its start).
pub fn monotonic_ns_at(at: Instant) -> u64 {
    let since = at.saturating_duration_since(clock_start());
    u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
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
    /// When the vCPU times in `vcpus` were read, in [`monotonic_ns`]: the
    /// return of the bulk call when they came from its `vcpu.<n>.time`
    /// fields, else the return of this domain's `virDomainGetVcpus`.
    /// `None` when vCPUs were not asked for (or it has none).
    pub vcpu_times_ns: Option<u64>,
}

/// A domain's bulk record and when the bulk call returned.
#[derive(Clone, Copy)]
struct Record<'a> {
    params: &'a TypedParams,
    read_ns: u64,
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

/// How [`read_domains`] reads the running domains (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadPath {
    /// One `virConnectGetAllDomainStats` round trip, plus per-domain calls
    /// only for what the records lack.
    Bulk,
    /// `virConnectListAllDomains` and per-domain calls: the driver lacks
    /// bulk stats.
    PerDomain,
}

impl std::fmt::Display for ReadPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadPath::Bulk => "bulk stats (virConnectGetAllDomainStats)",
            ReadPath::PerDomain => "per-domain calls (virConnectGetAllDomainStats not supported)",
        })
    }
}

/// The path [`read_domains`] uses on `conn`: `None` before its first read.
pub fn read_path(conn: &Connection) -> Option<ReadPath> {
    conn.bulk_stats.get().map(|bulk| {
        if bulk {
            ReadPath::Bulk
        } else {
            ReadPath::PerDomain
        }
    })
}

/// What a failed bulk read means for the path: an unsupported call (or
/// stats group, flag) switches to per-domain reads; any other error
/// (daemon gone, access denied) is the caller's to handle, and the path
/// stays as it was.
fn path_after_bulk_error(e: &Error) -> Option<ReadPath> {
    (e.kind() == ErrorKind::Unsupported).then_some(ReadPath::PerDomain)
}

/// Reads every running domain, by the path this connection uses (bulk
/// first; per domain once the driver said bulk stats are unsupported).
/// Domains for which `skip(name)` is true (excluded ones) are dropped
/// right after the bulk record or the list, before any per-domain call.
/// Per-domain failures (a guest shutting down between two calls) are
/// returned in the second list, not as an error; a failure of the bulk or
/// list call (e.g. the daemon went away) is an error.
pub fn read_domains<'c>(
    conn: &'c Connection,
    host_cpus: u32,
    want: Want,
    skip: &dyn Fn(&str) -> bool,
) -> Result<(Vec<DomainRead<'c>>, Vec<Skipped>)> {
    if read_path(conn) == Some(ReadPath::PerDomain) {
        return read_domains_by(ReadPath::PerDomain, conn, host_cpus, want, skip);
    }
    match read_domains_by(ReadPath::Bulk, conn, host_cpus, want, skip) {
        Ok(read) => {
            conn.bulk_stats.set(Some(true));
            Ok(read)
        }
        Err(e) => match path_after_bulk_error(&e) {
            Some(path) => {
                conn.bulk_stats.set(Some(false));
                read_domains_by(path, conn, host_cpus, want, skip)
            }
            None => Err(e),
        },
    }
}

/// [`read_domains`] by the given path, whatever the connection's choice
/// (tests compare the two paths with it). The connection's remembered
/// path is not changed.
pub fn read_domains_by<'c>(
    path: ReadPath,
    conn: &'c Connection,
    host_cpus: u32,
    want: Want,
    skip: &dyn Fn(&str) -> bool,
) -> Result<(Vec<DomainRead<'c>>, Vec<Skipped>)> {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let mut keep = |name: String, r: Result<Option<DomainRead<'c>>>| match r {
        Ok(Some(d)) => out.push(d),
        Ok(None) => {}
        Err(error) => skipped.push(Skipped { name, error }),
    };
    match path {
        ReadPath::Bulk => {
            let mut groups = stats::STATE;
            if want.vcpus {
                groups |= stats::VCPU;
            }
            if want.memory {
                groups |= stats::BALLOON;
            }
            // Start the clock first, so the call's return is never before it.
            clock_start();
            let (records, returned) = conn.all_domain_stats_at(groups)?;
            let read_ns = monotonic_ns_at(returned);
            for rec in records {
                if skip(rec.domain.name()) {
                    continue;
                }
                let state = rec.params.get_i64("state.state");
                if state.is_some_and(|s| s != i64::from(STATE_RUNNING)) {
                    continue;
                }
                let name = rec.domain.name().to_string();
                let record = Record {
                    params: &rec.params,
                    read_ns,
                };
                keep(name, read_one(rec.domain, Some(record), host_cpus, want));
            }
        }
        ReadPath::PerDomain => {
            for domain in conn.list_all_domains(ListFilter::Active)? {
                if skip(domain.name()) {
                    continue;
                }
                let name = domain.name().to_string();
                keep(name, read_one(domain, None, host_cpus, want));
            }
        }
    }
    out.sort_by(|a, b| a.domain.name().cmp(b.domain.name()));
    Ok((out, skipped))
}

/// `virDomainGetInfo`, read once into `cache`.
fn info_of(domain: &Domain<'_>, cache: &mut Option<DomainInfo>) -> Result<DomainInfo> {
    match *cache {
        Some(i) => Ok(i),
        None => {
            let i = domain.info()?;
            *cache = Some(i);
            Ok(i)
        }
    }
}

/// Takes every vCPU's cumulative time from the bulk record's
/// `vcpu.<number>.time` (ns) when the record has it for all of them;
/// returns whether it did (otherwise `vcpus` keep `virDomainGetVcpus`'s).
fn take_bulk_vcpu_times(params: &TypedParams, vcpus: &mut [VcpuInfo]) -> bool {
    let times: Option<Vec<u64>> = vcpus
        .iter()
        .map(|v| params.get_u64(&format!("vcpu.{}.time", v.number)))
        .collect();
    match times {
        Some(times) if !vcpus.is_empty() => {
            for (v, t) in vcpus.iter_mut().zip(times) {
                v.cpu_time_ns = t;
            }
            true
        }
        _ => false,
    }
}

/// Reads one domain: from its bulk record where it has the figures, by
/// per-domain calls where it does not (or with no record). vCPU times come
/// from the record's `vcpu.<n>.time` when present; `virDomainGetVcpus` is
/// then only read for affinity and the current pCPU. `Ok(None)` for a
/// domain that turned out not to be running.
fn read_one<'c>(
    domain: Domain<'c>,
    record: Option<Record<'_>>,
    host_cpus: u32,
    want: Want,
) -> Result<Option<DomainRead<'c>>> {
    let params = record.map(|r| r.params);
    let get = |name: &str| params.and_then(|p| p.get_u64(name));
    // virDomainGetInfo at most once, and only when a figure is missing.
    let mut info: Option<DomainInfo> = None;
    if params.is_none() && info_of(&domain, &mut info)?.state != STATE_RUNNING {
        return Ok(None);
    }
    let mut vcpus = Vec::new();
    let mut vcpu_times_ns = None;
    if want.vcpus {
        let n = match get("vcpu.current") {
            Some(n) => u32::try_from(n).unwrap_or(u32::MAX),
            None => {
                let i = info_of(&domain, &mut info)?;
                if i.state != STATE_RUNNING {
                    return Ok(None);
                }
                i.nr_virt_cpu
            }
        };
        if n > 0 {
            vcpus = domain.vcpus(n, host_cpus)?;
            let own_ns = monotonic_ns();
            vcpu_times_ns = Some(match record {
                Some(r) if take_bulk_vcpu_times(r.params, &mut vcpus) => r.read_ns,
                _ => own_ns,
            });
        }
    }
    let mut memory = MemoryStats::default();
    let mut max_kib = None;
    if want.memory {
        match params {
            Some(p) if p.get_u64("balloon.current").is_some() => {
                memory = MemoryStats::from_bulk(p);
                max_kib = memory.maximum;
            }
            _ => memory = domain.memory_stats()?,
        }
        if max_kib.is_none() {
            max_kib = Some(match info {
                Some(i) => i.max_mem_kib,
                None => domain.max_memory()?,
            });
        }
        if memory.actual.is_none() {
            memory.actual = Some(info_of(&domain, &mut info)?.memory_kib);
        }
    }
    Ok(Some(DomainRead {
        domain,
        vcpus,
        memory,
        max_kib,
        vcpu_times_ns,
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

/// Host free memory, from the best source the connection allows:
/// - a daemon on this machine (see [`is_this_host`]): the kernel's own
///   estimate, `MemAvailable` of /proc/meminfo. It leaves out shared
///   memory (`Shmem`: tmpfs, and the RAM of guests backed by memfd or
///   shared memory, as virtiofs and vhost-user need), which cannot be
///   reclaimed but which /proc/meminfo's `Cached` includes;
/// - otherwise (a remote host, or a kernel without `MemAvailable`, before
///   Linux 3.14): free + buffers + cached from `virNodeGetMemoryStats`,
///   which counts that shared memory as free;
/// - drivers without node memory stats (the test driver):
///   `virNodeGetFreeMemory` (NUMA data, bytes).
pub fn read_host_free(conn: &Connection) -> Result<HostFree> {
    if is_this_host(&conn.canonical_uri()?) {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        if let Some(kib) = mem_available_kib(&meminfo) {
            return Ok(HostFree {
                kib,
                source: "MemAvailable of /proc/meminfo",
            });
        }
    }
    match conn.node_memory_stats() {
        Ok(m) => {
            if let Some(kib) = m.free_buffers_cached() {
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

/// Whether a canonical libvirt URI surely reaches a daemon on this
/// machine: no transport but a local socket (`qemu:///system`,
/// `qemu+unix:///session?socket=…`) and nothing where the host goes,
/// except the test driver's, whose host is a fake one inside this process.
/// Any other transport (`ssh`, `tcp`, `tls`, `ext`, which may run a tunnel
/// anywhere, …) or a named host, even `localhost`, counts as remote: its
/// figure then comes from libvirt.
pub fn is_this_host(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return false;
    };
    let (driver, transport) = scheme.split_once('+').unwrap_or((scheme, "unix"));
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    driver != "test" && transport == "unix" && authority.is_empty()
}

/// `MemAvailable` (KiB) from the text of /proc/meminfo, if it is there.
pub fn mem_available_kib(meminfo: &str) -> Option<u64> {
    let rest = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut words = rest.split_whitespace();
    let kib = words.next()?.parse().ok()?;
    (words.next() == Some("kB")).then_some(kib)
}

/// Host CPUs: present count (sizes cpumaps) and the online ones.
pub fn read_host_cpus(conn: &Connection) -> Result<NodeCpuMap> {
    conn.node_cpu_map()
}

/// The vCPU policy's input: every vCPU of `doms` with its cumulative time,
/// affinity and current pCPU, keyed by domain UUID and in UUID order.
///
/// Its timestamp is when the times were read ([`DomainRead::vcpu_times_ns`]):
/// on the bulk path that is the one instant the bulk call returned, so the
/// `virDomainGetVcpus` round trips that follow it add no error to usage.
/// When times came from `virDomainGetVcpus` (per-domain path, or a driver
/// without `vcpu.<n>.time`), it is the latest of those reads, i.e. after
/// the last round trip; with no vCPU at all, now.
pub fn vcpu_snapshot(doms: &[DomainRead<'_>], pcpus: Vec<u32>) -> Snapshot {
    // In UUID order, the planner's own: it then merges the snapshot with
    // its history without sorting the vCPUs.
    let mut by_uuid: Vec<&DomainRead<'_>> = doms.iter().collect();
    by_uuid.sort_by(|a, b| a.domain.uuid().cmp(b.domain.uuid()));
    let vcpus = by_uuid
        .into_iter()
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
    let monotonic_ns = doms
        .iter()
        .filter_map(|d| d.vcpu_times_ns)
        .max()
        .unwrap_or_else(monotonic_ns);
    Snapshot {
        monotonic_ns,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::virt::{CpuMap, ParamValue};
    use libvirt_sys as sys;

    fn vcpu(number: u32, cpu_time_ns: u64) -> VcpuInfo {
        VcpuInfo {
            number,
            state: 1,
            cpu_time_ns,
            cpu: Some(0),
            affinity: CpuMap::new(4),
        }
    }

    #[test]
    fn only_a_uri_without_a_host_is_this_host() {
        for uri in [
            "qemu:///system",
            "qemu:///session",
            "qemu+unix:///system?socket=/run/x/libvirt-sock",
            "lxc:///",
        ] {
            assert!(is_this_host(uri), "{uri}");
        }
        for uri in [
            "test:///default",
            "test:///tmp/node.xml",
            "qemu+ssh://root@host/system",
            "qemu+tcp://localhost:16509/system",
            "qemu+tls://10.0.0.2/system",
            "qemu+ssh:///system",
            "qemu+ext:///system?command=/usr/bin/tunnel",
            "qemu+unix://root@/system",
            "qemu",
            "",
        ] {
            assert!(!is_this_host(uri), "{uri}");
        }
    }

    #[test]
    fn mem_available_is_read_from_meminfo() {
        let meminfo = "MemTotal:       24605332 kB\nMemFree:        20127480 kB\n\
                       MemAvailable:   23976652 kB\nBuffers:          152100 kB\n\
                       Cached:          3712304 kB\nShmem:           2200000 kB\n";
        assert_eq!(mem_available_kib(meminfo), Some(23_976_652));
        // Kernels before 3.14 have no such line; a value without its unit
        // or a number that is not one is not taken either.
        assert_eq!(mem_available_kib("MemTotal: 1 kB\nMemFree: 1 kB\n"), None);
        assert_eq!(mem_available_kib("MemAvailable: 12\n"), None);
        assert_eq!(mem_available_kib("MemAvailable: -3 kB\n"), None);
        assert_eq!(mem_available_kib(""), None);
    }

    #[test]
    fn vcpu_times_come_from_the_bulk_record_when_it_has_all_of_them() {
        let params = TypedParams::from_pairs(vec![
            ("vcpu.current".into(), ParamValue::UInt(2)),
            ("vcpu.0.time".into(), ParamValue::ULLong(7_000)),
            ("vcpu.1.time".into(), ParamValue::ULLong(9_000)),
        ]);
        let mut vcpus = vec![vcpu(0, 1), vcpu(1, 2)];
        assert!(take_bulk_vcpu_times(&params, &mut vcpus));
        assert_eq!(vcpus[0].cpu_time_ns, 7_000);
        assert_eq!(vcpus[1].cpu_time_ns, 9_000);
        assert_eq!(vcpus[1].cpu, Some(0), "placement stays virDomainGetVcpus's");
        // One vCPU missing from the record: all keep their own times, so a
        // domain's vCPUs never mix two instants.
        let mut vcpus = vec![vcpu(0, 1), vcpu(1, 2), vcpu(2, 3)];
        assert!(!take_bulk_vcpu_times(&params, &mut vcpus));
        assert_eq!(
            vcpus.iter().map(|v| v.cpu_time_ns).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let empty = TypedParams::from_pairs(vec![]);
        assert!(!take_bulk_vcpu_times(&empty, &mut [vcpu(0, 5)]));
    }

    fn err(code: u32, origin: u32, message: &str) -> Error {
        Error::from_libvirt("virConnectGetAllDomainStats", code, origin, message)
    }

    #[test]
    fn only_an_unsupported_bulk_read_switches_to_per_domain_reads() {
        let unsupported = [
            // libvirt 7.0's test driver: virReportUnsupportedError.
            err(
                sys::VIR_ERR_NO_SUPPORT,
                sys::VIR_FROM_DOMAIN,
                "this function is not supported by the connection driver: virConnectGetAllDomainStats",
            ),
            // A daemon older than the procedure.
            err(sys::VIR_ERR_RPC, sys::VIR_FROM_RPC, "unknown procedure: 344"),
            // A stats group or flag the driver lacks.
            err(sys::VIR_ERR_ARGUMENT_UNSUPPORTED, sys::VIR_FROM_QEMU, "x"),
            err(sys::VIR_ERR_OPERATION_UNSUPPORTED, sys::VIR_FROM_QEMU, "x"),
        ];
        for e in &unsupported {
            assert_eq!(path_after_bulk_error(e), Some(ReadPath::PerDomain), "{e}");
        }
        let others = [
            err(
                sys::VIR_ERR_SYSTEM_ERROR,
                sys::VIR_FROM_RPC,
                "End of file while reading data",
            ),
            err(
                sys::VIR_ERR_INTERNAL_ERROR,
                sys::VIR_FROM_RPC,
                "client socket is closed",
            ),
            err(sys::VIR_ERR_ACCESS_DENIED, sys::VIR_FROM_ACCESS, "denied"),
            err(
                sys::VIR_ERR_INTERNAL_ERROR,
                sys::VIR_FROM_QEMU,
                "not supported",
            ),
            Error::local("virConnectGetAllDomainStats", None, "not supported"),
        ];
        for e in &others {
            assert_eq!(path_after_bulk_error(e), None, "{e}");
        }
    }
}
