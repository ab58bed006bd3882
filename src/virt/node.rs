//! Host ("node") figures: CPUs, CPU time, memory.
//!
//! Every method names the C function it calls, what it frees, and the value
//! that function returns on failure.

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
    /// free + buffers + cached (KiB): the host's free memory as libvirt
    /// can tell it. `cached` includes shared memory (`Shmem`), which
    /// cannot be reclaimed, so this can be well above /proc/meminfo's
    /// MemAvailable.
    pub fn free_buffers_cached(&self) -> Option<u64> {
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
    /// Host CPU and memory summary.
    ///
    /// Calls `virNodeGetInfo` into a struct of ours; fails on `-1`. Nothing
    /// to free.
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

    /// CPUs present and online.
    ///
    /// Calls `virNodeGetCPUMap`, which returns the number of CPUs present;
    /// fails on `-1`. Reads only the bytes of libvirt's `malloc`'d map that
    /// every driver allocates (see `copy_online_map` in this file) and frees
    /// it with `free()`. A map whose CPUs differ from libvirt's online count
    /// is a local error.
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
            let map = copy_online_map(present, online, |i| {
                // SAFETY: copy_online_map asks only for bytes before the one
                // holding the last online CPU, inclusive, and below
                // VIR_CPU_MAPLEN(present); every driver allocates at least
                // those (see copy_online_map). raw stays valid until the
                // free below.
                unsafe { *raw.add(i) }
            });
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

    /// Cumulative CPU times of host CPU `cpu`, or of all CPUs with `None`.
    ///
    /// Calls `virNodeGetCPUStats` twice the first time on a connection
    /// (count, then values into our buffer of that many), once after that;
    /// fails on `-1`. Nothing to free.
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

    /// Host memory, all NUMA cells, KiB.
    ///
    /// Calls `virNodeGetMemoryStats` like [`Connection::node_cpu_stats`]
    /// (count once per connection, then values into our buffer); fails on
    /// `-1` (drivers without it answer `VIR_ERR_NO_SUPPORT`). Nothing to
    /// free.
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

    /// Free memory in **bytes** from NUMA data; shown by `status` for
    /// comparison only.
    ///
    /// Calls `virNodeGetFreeMemory`; fails on `0` (which a driver without
    /// NUMA cells also returns). Nothing to free.
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

/// Copies the online-CPU map out of the buffer `virNodeGetCPUMap` returned,
/// reading byte `i` through `byte(i)` only where every driver allocated it.
///
/// What libvirt guarantees about that buffer's length:
/// - Local drivers (`virHostCPUGetMap` in `src/util/virhostcpu.c`, used by
///   the QEMU driver) fill it with `virBitmapToData` (`src/util/virbitmap.c`),
///   which allocates `(last set bit + CHAR_BIT) / CHAR_BIT` bytes (1 when no
///   bit is set): only up to the byte of the highest *online* CPU, so on a
///   host whose top CPUs are offline it is shorter than
///   `VIR_CPU_MAPLEN(present)`. `online` is `virBitmapCountBits` of the same
///   bitmap.
/// - The remote client (`remoteNodeGetCPUMap`, `src/remote/remote_driver.c`)
///   allocates and copies the `cpumap_len` bytes the daemon sent, which
///   `remoteDispatchNodeGetCPUMap` sets to `VIR_CPU_MAPLEN(present)`.
/// - The test driver returns one byte for its fixed 8 CPUs.
///
/// So the bytes up to and including the one holding the `online`-th set
/// bit are always allocated: the loop reads the next byte only while fewer
/// than `online` CPUs have been seen (a set bit is still to come, so its
/// byte exists), and never past `VIR_CPU_MAPLEN(present)`. A map holding
/// fewer than `online` CPUs means libvirt's count and map disagree; the
/// caller reports it.
fn copy_online_map(present: u32, online: u32, byte: impl Fn(usize) -> u8) -> CpuMap {
    let mut bytes = Vec::new();
    let mut seen = 0u32;
    for i in 0..super::cpumap::maplen(present) {
        if seen >= online {
            break;
        }
        let b = byte(i);
        seen += b.count_ones();
        bytes.push(b);
    }
    CpuMap::from_bytes(present, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::raw::c_int;

    /// What `virBitmapToData` (src/util/virbitmap.c) allocates for a bitmap
    /// whose last set bit is `last`: `(last + CHAR_BIT) / CHAR_BIT` bytes,
    /// 1 when no bit is set.
    fn bitmap_to_data(online: &[u32]) -> Vec<u8> {
        let len = online
            .iter()
            .max()
            .map_or(1, |&last| (last as usize + 8) / 8);
        let mut data = vec![0u8; len];
        for &c in online {
            data[c as usize / 8] |= 1 << (c % 8);
        }
        data
    }

    fn shim_maplen(cpus: u32) -> usize {
        // SAFETY: pure arithmetic on an int, no pointers.
        unsafe { sys::kvmsched_shim_cpu_maplen(cpus as c_int) as usize }
    }

    #[test]
    fn cpu_map_is_read_within_what_local_drivers_allocate() {
        // Hosts whose highest CPUs are offline: the local drivers' buffer is
        // shorter than VIR_CPU_MAPLEN(present).
        let cases: &[(u32, &[u32])] = &[
            (16, &[0, 1, 2, 3]),
            (64, &[0, 8, 9]),
            (1024, &[0, 5, 700]),
            (9, &[]),
            (8, &[0, 2, 4]),
            (24, &[23]),
        ];
        for &(present, online) in cases {
            let data = bitmap_to_data(online);
            assert!(data.len() <= shim_maplen(present).max(1));
            let read = std::cell::Cell::new(0usize);
            let map = copy_online_map(present, online.len() as u32, |i| {
                read.set(read.get().max(i + 1));
                // Indexing panics on a read past libvirt's allocation.
                data[i]
            });
            assert_eq!(map.cpus(), online, "present={present}");
            assert!(read.get() <= data.len(), "present={present}");
        }
    }

    #[test]
    fn cpu_map_reads_at_most_the_remote_copy() {
        // remoteNodeGetCPUMap copies exactly the cpumap_len bytes the daemon
        // sent: VIR_CPU_MAPLEN(present) (remoteDispatchNodeGetCPUMap).
        for present in [1u32, 7, 8, 9, 64, 65] {
            let data = vec![0xffu8; shim_maplen(present)];
            let map = copy_online_map(present, present, |i| data[i]);
            assert_eq!(map.count(), present);
        }
    }
}
