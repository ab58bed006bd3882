//! Host ("node") figures: CPUs, CPU time, memory.

use std::os::raw::{c_int, c_uint};

use libvirt_sys as sys;

use super::call::{checked, Sentinel};
use super::connection::Connection;
use super::cpumap::CpuMap;
use super::error::{Error, Result};

/// `virNodeGetInfo`'s figures. Its memory comes from NUMA data and can
/// disagree with /proc/meminfo; kvmsched uses [`NodeMemoryStats`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// CPU model.
    pub model: String,
    /// Memory (KiB), from NUMA node data.
    pub memory_kib: u64,
    /// Active CPUs.
    pub cpus: u32,
    /// Expected CPU frequency (MHz).
    pub mhz: u32,
    /// NUMA nodes.
    pub nodes: u32,
    /// Sockets per node.
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Threads per core.
    pub threads: u32,
}

/// Host CPUs present and online (`virNodeGetCPUMap`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCpuMap {
    /// Number of CPUs present (the size cpumaps must have).
    pub present: u32,
    /// The online CPUs.
    pub online: CpuMap,
}

/// Cumulative CPU time of one host CPU or all of them (ns)
/// (`virNodeGetCPUStats`). Fields the driver omits are `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCpuStats {
    /// Time in kernel mode (ns).
    pub kernel: Option<u64>,
    /// Time in user mode (ns).
    pub user: Option<u64>,
    /// Idle time (ns).
    pub idle: Option<u64>,
    /// I/O wait time (ns).
    pub iowait: Option<u64>,
}

impl NodeCpuStats {
    /// Busy time: kernel + user (ns).
    pub fn busy(&self) -> u64 {
        self.kernel.unwrap_or(0) + self.user.unwrap_or(0)
    }

    /// Busy + idle + iowait (ns).
    pub fn total(&self) -> u64 {
        self.busy() + self.idle.unwrap_or(0) + self.iowait.unwrap_or(0)
    }
}

/// Host memory (KiB) (`virNodeGetMemoryStats`, all cells): the same source
/// as /proc/meminfo on Linux.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeMemoryStats {
    /// MemTotal (KiB).
    pub total: Option<u64>,
    /// MemFree (KiB).
    pub free: Option<u64>,
    /// Buffers (KiB).
    pub buffers: Option<u64>,
    /// Cached (KiB).
    pub cached: Option<u64>,
}

impl NodeMemoryStats {
    /// What kvmsched calls the host's free memory: free + buffers + cached
    /// (KiB), close to /proc/meminfo's MemAvailable.
    pub fn reclaimable_free(&self) -> Option<u64> {
        Some(self.free? + self.buffers.unwrap_or(0) + self.cached.unwrap_or(0))
    }
}

/// `VIR_NODE_CPU_STATS_ALL_CPUS` / `VIR_NODE_MEMORY_STATS_ALL_CELLS`.
const ALL: c_int = -1;

fn field_name(field: &[std::os::raw::c_char]) -> String {
    let bytes: Vec<u8> = field
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `virNodeCPUStats` and `virNodeMemoryStats` share one layout: a
/// fixed-size name and a value.
trait NodeParam: Default + Clone {
    fn field(&self) -> &[std::os::raw::c_char];
    fn value(&self) -> u64;
}

impl NodeParam for sys::virNodeCPUStats {
    fn field(&self) -> &[std::os::raw::c_char] {
        &self.field
    }
    fn value(&self) -> u64 {
        self.value
    }
}

impl NodeParam for sys::virNodeMemoryStats {
    fn field(&self) -> &[std::os::raw::c_char] {
        &self.field
    }
    fn value(&self) -> u64 {
        self.value
    }
}

fn const_name(bytes: &[u8]) -> &str {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .trim_end_matches('\0')
}

impl Connection {
    /// Host CPU and memory summary (`virNodeGetInfo`).
    pub fn node_info(&self) -> Result<NodeInfo> {
        let mut info = sys::virNodeInfo::default();
        checked(
            "virNodeGetInfo",
            Some(self.uri()),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: open connection; &mut info is a valid out-pointer.
                unsafe { sys::virNodeGetInfo(self.as_ptr(), &mut info) }
            },
        )?;
        Ok(NodeInfo {
            model: field_name(&info.model),
            memory_kib: u64::from(info.memory),
            cpus: info.cpus,
            mhz: info.mhz,
            nodes: info.nodes,
            sockets: info.sockets,
            cores: info.cores,
            threads: info.threads,
        })
    }

    /// CPUs present and online (`virNodeGetCPUMap`).
    pub fn node_cpu_map(&self) -> Result<NodeCpuMap> {
        let mut raw: *mut u8 = std::ptr::null_mut();
        let mut online: c_uint = 0;
        let present = checked(
            "virNodeGetCPUMap",
            Some(self.uri()),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: open connection; both out-pointers are valid; libvirt
                // mallocs the map into raw.
                unsafe { sys::virNodeGetCPUMap(self.as_ptr(), &mut raw, &mut online, 0) }
            },
        )?;
        let present = present as u32;
        let map = if raw.is_null() {
            CpuMap::new(present)
        } else {
            // SAFETY: libvirt allocated VIR_CPU_MAPLEN(present) bytes at raw.
            let bytes = unsafe { std::slice::from_raw_parts(raw, super::cpumap::maplen(present)) };
            let map = CpuMap::from_bytes(present, bytes);
            // SAFETY: raw was malloc'd by libvirt for us and is not used again.
            unsafe { libc::free(raw.cast()) };
            map
        };
        if map.count() != online {
            return Err(Error::local(
                "virNodeGetCPUMap",
                Some(self.uri()),
                format!(
                    "map has {} CPUs online, libvirt counted {online}",
                    map.count()
                ),
            ));
        }
        Ok(NodeCpuMap {
            present,
            online: map,
        })
    }

    /// The two-step protocol shared by `virNodeGetCPUStats` and
    /// `virNodeGetMemoryStats`: ask for the parameter count (once per
    /// connection: it never changes), then fill that many. `raw` makes the
    /// C call with the given buffer and count pointer; it is only ever given
    /// NULL with a count of 0, or a buffer of exactly `*count` elements.
    fn node_params<P: NodeParam>(
        &self,
        call: &'static str,
        cache: &std::cell::Cell<Option<c_int>>,
        what: &str,
        raw: impl Fn(*mut P, *mut c_int) -> c_int,
    ) -> Result<Vec<(String, u64)>> {
        let mut n: c_int = match cache.get() {
            Some(n) => n,
            None => {
                let mut n: c_int = 0;
                checked(
                    call,
                    Some(self.uri()),
                    Sentinel::Negative,
                    || format!("{what}, count"),
                    || raw(std::ptr::null_mut(), &mut n),
                )?;
                cache.set(Some(n));
                n
            }
        };
        let mut params = vec![P::default(); usize::try_from(n).unwrap_or(0)];
        if params.is_empty() {
            return Ok(Vec::new());
        }
        let asked = n;
        checked(
            call,
            Some(self.uri()),
            Sentinel::Negative,
            || format!("{what}, nparams={asked}"),
            || raw(params.as_mut_ptr(), &mut n),
        )?;
        let filled = usize::try_from(n).unwrap_or(0).min(params.len());
        Ok(params[..filled]
            .iter()
            .map(|p| (field_name(p.field()), p.value()))
            .collect())
    }

    /// Cumulative CPU times of host CPU `cpu`, or of all CPUs with `None`
    /// (`virNodeGetCPUStats`).
    pub fn node_cpu_stats(&self, cpu: Option<u32>) -> Result<NodeCpuStats> {
        const CALL: &str = "virNodeGetCPUStats";
        let num = match cpu {
            Some(c) => c_int::try_from(c)
                .map_err(|_| Error::local(CALL, Some(self.uri()), "CPU number too large"))?,
            None => ALL,
        };
        let params = self.node_params(
            CALL,
            &self.node_cpu_nparams,
            &format!("cpu={num}"),
            |buf, n| {
                // SAFETY: open connection; node_params passes NULL with *n == 0
                // (count query) or a buffer of exactly *n elements.
                unsafe { sys::virNodeGetCPUStats(self.as_ptr(), num, buf, n, 0) }
            },
        )?;
        let mut s = NodeCpuStats::default();
        for (name, v) in params {
            let v = Some(v);
            if name == const_name(sys::VIR_NODE_CPU_STATS_KERNEL) {
                s.kernel = v;
            } else if name == const_name(sys::VIR_NODE_CPU_STATS_USER) {
                s.user = v;
            } else if name == const_name(sys::VIR_NODE_CPU_STATS_IDLE) {
                s.idle = v;
            } else if name == const_name(sys::VIR_NODE_CPU_STATS_IOWAIT) {
                s.iowait = v;
            }
        }
        Ok(s)
    }

    /// Host memory, all NUMA cells (`virNodeGetMemoryStats`), KiB.
    pub fn node_memory_stats(&self) -> Result<NodeMemoryStats> {
        let params = self.node_params(
            "virNodeGetMemoryStats",
            &self.node_mem_nparams,
            "all cells",
            |buf, n| {
                // SAFETY: open connection; node_params passes NULL with *n == 0
                // (count query) or a buffer of exactly *n elements.
                unsafe { sys::virNodeGetMemoryStats(self.as_ptr(), ALL, buf, n, 0) }
            },
        )?;
        let mut s = NodeMemoryStats::default();
        for (name, v) in params {
            let v = Some(v);
            if name == const_name(sys::VIR_NODE_MEMORY_STATS_TOTAL) {
                s.total = v;
            } else if name == const_name(sys::VIR_NODE_MEMORY_STATS_FREE) {
                s.free = v;
            } else if name == const_name(sys::VIR_NODE_MEMORY_STATS_BUFFERS) {
                s.buffers = v;
            } else if name == const_name(sys::VIR_NODE_MEMORY_STATS_CACHED) {
                s.cached = v;
            }
        }
        Ok(s)
    }

    /// Free memory in **bytes** from NUMA data (`virNodeGetFreeMemory`; 0 is
    /// its error value). Shown by `status` for comparison only.
    pub fn node_free_memory(&self) -> Result<u64> {
        checked(
            "virNodeGetFreeMemory",
            Some(self.uri()),
            Sentinel::Zero,
            String::new,
            || {
                // SAFETY: open connection.
                unsafe { sys::virNodeGetFreeMemory(self.as_ptr()) }
            },
        )
    }
}
