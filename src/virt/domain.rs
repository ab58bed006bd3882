//! `virDomainPtr`: one guest.
//!
//! Every method names the C function it calls, what it frees, and the value
//! that function returns on failure; on failure libvirt's error is copied
//! into an [`Error`] on the same thread right away.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::os::raw::{c_int, c_uint};
use std::ptr::NonNull;

use libvirt_sys as sys;

use super::call::{checked, Sentinel};
use super::connection::Connection;
use super::cpumap::{maplen, CpuMap};
use super::error::{Error, Result};
use super::memstats::MemoryStats;

/// A domain (`virDomainPtr`) holding its own reference, released with
/// `virDomainFree` on drop (a failure there is counted, never a panic). The
/// lifetime ties it to the [`Connection`] it came from.
///
/// Its name and UUID are read once when it is obtained (both are local
/// lookups in libvirt, no round trip) so every error can name the domain.
#[derive(Debug)]
pub struct Domain<'conn> {
    ptr: NonNull<sys::virDomain>,
    name: String,
    uuid: String,
    _conn: PhantomData<&'conn Connection>,
}

/// `virDomainGetInfo`'s figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DomainInfo {
    /// `virDomainState` (1 = running).
    pub state: u8,
    /// Maximum memory (KiB).
    pub max_mem_kib: u64,
    /// Current memory (KiB).
    pub memory_kib: u64,
    /// Number of vCPUs.
    pub nr_virt_cpu: u32,
    /// Total CPU time (ns).
    pub cpu_time_ns: u64,
}

/// A domain state in which it runs guest code.
pub const STATE_RUNNING: u8 = sys::VIR_DOMAIN_RUNNING as u8;

/// One vCPU as `virDomainGetVcpus` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VcpuInfo {
    /// vCPU number.
    pub number: u32,
    /// `virVcpuState` (1 = running).
    pub state: i32,
    /// Cumulative CPU time (ns).
    pub cpu_time_ns: u64,
    /// Host CPU it is running on now, if known (-1 → None).
    pub cpu: Option<u32>,
    /// Its affinity.
    pub affinity: CpuMap,
}

impl<'conn> Domain<'conn> {
    /// Takes ownership of a reference returned by libvirt.
    pub(crate) fn from_owned(ptr: NonNull<sys::virDomain>) -> Self {
        Domain {
            ptr,
            name: String::new(),
            uuid: String::new(),
            _conn: PhantomData,
        }
    }

    /// Takes a new reference on a pointer owned by someone else
    /// (`virDomainRef`, fails on `-1`), e.g. a stats record about to be
    /// freed; the new reference is released on drop.
    pub(crate) fn add_ref(ptr: NonNull<sys::virDomain>) -> Result<Self> {
        let raw = ptr.as_ptr();
        checked(
            "virDomainRef",
            None,
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: raw is a live domain pointer (owned by the caller's
                // list for the duration of this call).
                unsafe { sys::virDomainRef(raw) }
            },
        )?;
        Ok(Self::from_owned(ptr))
    }

    /// Reads the name and UUID: `virDomainGetName` (fails on `NULL`; the
    /// string belongs to the domain object and is copied) and
    /// `virDomainGetUUIDString` (fails on `-1`; fills our buffer of
    /// `VIR_UUID_STRING_BUFLEN`). Local lookups, no round trip.
    pub(crate) fn load_identity(mut self) -> Result<Self> {
        let raw = self.ptr.as_ptr();
        let name_ptr = checked(
            "virDomainGetName",
            None,
            Sentinel::Null,
            String::new,
            || {
                // SAFETY: self.ptr is a live domain reference.
                unsafe { sys::virDomainGetName(raw) }
            },
        )?;
        // SAFETY: non-NULL, NUL-terminated, owned by the domain object which
        // outlives this copy.
        self.name = unsafe { CStr::from_ptr(name_ptr) }
            .to_string_lossy()
            .into_owned();
        let mut buf = [0 as std::os::raw::c_char; sys::VIR_UUID_STRING_BUFLEN as usize];
        checked(
            "virDomainGetUUIDString",
            Some(&self.name),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: buf has VIR_UUID_STRING_BUFLEN bytes as the call requires.
                unsafe { sys::virDomainGetUUIDString(raw, buf.as_mut_ptr()) }
            },
        )?;
        // SAFETY: libvirt wrote a NUL-terminated string into buf.
        self.uuid = unsafe { CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        Ok(self)
    }

    fn raw(&self) -> sys::virDomainPtr {
        self.ptr.as_ptr()
    }

    /// The domain's name (read once by `virDomainGetName`, no call here).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The domain's UUID, as a string (stable across restarts: the key).
    /// Read once by `virDomainGetUUIDString`, no call here.
    pub fn uuid(&self) -> &str {
        &self.uuid
    }

    /// The hypervisor's ID of this running instance (`virDomainGetID`), or
    /// `None` for a domain that is not running. A local lookup: the ID is
    /// the one libvirt attached to this handle when it was obtained, and a
    /// guest restarted under the same UUID gets a new one.
    ///
    /// libvirt's only failure, `(unsigned int)-1` with an error set, is for
    /// an invalid handle, which a `Domain` never holds; `(unsigned int)-1`
    /// without an error is an inactive domain, so that value is `None` and
    /// the call is checked as one that cannot fail.
    pub fn id(&self) -> Result<Option<u32>> {
        let id = checked(
            "virDomainGetID",
            Some(&self.name),
            Sentinel::Never,
            String::new,
            || {
                // SAFETY: self.ptr is a live domain reference we own; the
                // call only reads the ID stored in the object.
                unsafe { sys::virDomainGetID(self.raw()) }
            },
        )?;
        Ok((id != c_uint::MAX).then_some(id))
    }

    /// State, memory and vCPU count.
    ///
    /// Calls `virDomainGetInfo` into a struct of ours; fails on `-1`.
    /// Nothing to free.
    pub fn info(&self) -> Result<DomainInfo> {
        let mut info = sys::virDomainInfo::default();
        checked(
            "virDomainGetInfo",
            Some(&self.name),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: live domain; &mut info is a valid out-pointer.
                unsafe { sys::virDomainGetInfo(self.raw(), &mut info) }
            },
        )?;
        Ok(DomainInfo {
            state: info.state,
            max_mem_kib: u64::from(info.maxMem),
            memory_kib: u64::from(info.memory),
            nr_virt_cpu: u32::from(info.nrVirtCpu),
            cpu_time_ns: info.cpuTime,
        })
    }

    /// Maximum memory (KiB).
    ///
    /// Calls `virDomainGetMaxMemory`; fails on `0`. Nothing to free.
    pub fn max_memory(&self) -> Result<u64> {
        let v = checked(
            "virDomainGetMaxMemory",
            Some(&self.name),
            Sentinel::Zero,
            String::new,
            || {
                // SAFETY: live domain.
                unsafe { sys::virDomainGetMaxMemory(self.raw()) }
            },
        )?;
        Ok(u64::from(v))
    }

    /// Per-vCPU time, current host CPU and affinity.
    ///
    /// Calls `virDomainGetVcpus` with buffers of ours: `max_vcpus`
    /// `virVcpuInfo`s and `max_vcpus` maps of `VIR_CPU_MAPLEN(host_cpus)`
    /// bytes; fails on `-1`. Nothing to free. `max_vcpus` bounds how many
    /// are returned (the domain's vCPU count); `host_cpus` sizes the
    /// affinity maps (`virNodeGetCPUMap`'s count). Zero for either is a
    /// local error, no call made.
    ///
    /// ```
    /// use kvmsched::virt::{Connection, ListFilter};
    ///
    /// # fn main() -> kvmsched::virt::Result<()> {
    /// let conn = Connection::open_read_only("test:///default")?;
    /// let host = conn.node_cpu_map()?;
    /// let domains = conn.list_all_domains(ListFilter::Active)?;
    /// let test = &domains[0];
    /// let vcpus = test.vcpus(test.info()?.nr_virt_cpu, host.present)?;
    /// assert_eq!(vcpus.len(), 2);
    /// assert_eq!(vcpus[1].number, 1);
    /// // Unpinned: every host CPU is allowed.
    /// assert_eq!(vcpus[0].affinity.count(), host.present);
    /// # Ok(())
    /// # }
    /// ```
    pub fn vcpus(&self, max_vcpus: u32, host_cpus: u32) -> Result<Vec<VcpuInfo>> {
        const CALL: &str = "virDomainGetVcpus";
        if max_vcpus == 0 || host_cpus == 0 {
            return Err(Error::local(
                CALL,
                Some(&self.name),
                "vCPU and host CPU counts must be positive",
            ));
        }
        let maxinfo = max_vcpus as usize;
        let len = maplen(host_cpus);
        let mut infos = vec![sys::virVcpuInfo::default(); maxinfo];
        let mut maps = vec![0u8; maxinfo * len];
        let n = checked(
            CALL,
            Some(&self.name),
            Sentinel::Negative,
            || format!("maxinfo={maxinfo}, maplen={len}"),
            || {
                // SAFETY: infos has maxinfo entries and maps maxinfo × maplen
                // bytes, exactly the sizes passed.
                unsafe {
                    sys::virDomainGetVcpus(
                        self.raw(),
                        infos.as_mut_ptr(),
                        maxinfo as c_int,
                        maps.as_mut_ptr(),
                        len as c_int,
                    )
                }
            },
        )?;
        let n = (n as usize).min(maxinfo);
        let affinities = CpuMap::split(host_cpus, &maps, n);
        Ok(infos
            .iter()
            .take(n)
            .zip(affinities)
            .map(|(i, affinity)| VcpuInfo {
                number: i.number,
                state: i.state,
                cpu_time_ns: i.cpuTime,
                cpu: u32::try_from(i.cpu).ok(),
                affinity,
            })
            .collect())
    }

    /// Pins `vcpu` to the CPUs in `map` on the live domain.
    ///
    /// Calls `virDomainPinVcpu` with a copy of the map's bytes
    /// (`VIR_CPU_MAPLEN(map.size())`); fails on `-1`. Nothing to free. A
    /// refused pin on a live connection (no such vCPU, a CPU the host or
    /// cgroup refuses) is [`ErrorKind::Other`](super::ErrorKind::Other); a
    /// read-only connection gives [`ErrorKind::Denied`](super::ErrorKind::Denied).
    ///
    /// ```
    /// use kvmsched::virt::{Connection, CpuMap, ErrorKind, ListFilter};
    ///
    /// # fn main() -> kvmsched::virt::Result<()> {
    /// let conn = Connection::open("test:///default")?;
    /// let host = conn.node_cpu_map()?;
    /// let domains = conn.list_all_domains(ListFilter::Active)?;
    /// let test = &domains[0];
    /// let to_cpu_2 = CpuMap::from_cpus(host.present, &[2]).expect("CPU 2 exists");
    /// test.pin_vcpu(1, &to_cpu_2)?;
    /// assert_eq!(test.vcpus(2, host.present)?[1].affinity.cpus(), [2]);
    /// // The domain has no vCPU 7: refused, and the connection is fine.
    /// let err = test.pin_vcpu(7, &to_cpu_2).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Other);
    /// assert!(conn.is_alive()?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn pin_vcpu(&self, vcpu: u32, map: &CpuMap) -> Result<()> {
        let mut bytes = map.as_bytes().to_vec();
        checked(
            "virDomainPinVcpu",
            Some(&self.name),
            Sentinel::Negative,
            || format!("vcpu={vcpu}, cpumap={map}"),
            || {
                // SAFETY: bytes holds maplen(map.size()) bytes, the length passed.
                unsafe {
                    sys::virDomainPinVcpu(
                        self.raw(),
                        vcpu as c_uint,
                        bytes.as_mut_ptr(),
                        bytes.len() as c_int,
                    )
                }
            },
        )?;
        Ok(())
    }

    /// The balloon driver's statistics (KiB).
    ///
    /// Calls `virDomainMemoryStats` with room for
    /// `VIR_DOMAIN_MEMORY_STAT_NR` tag/value pairs of ours; fails on `-1`,
    /// else returns how many it filled. Nothing to free.
    ///
    /// ```
    /// use kvmsched::virt::{Connection, ListFilter};
    ///
    /// # fn main() -> kvmsched::virt::Result<()> {
    /// let conn = Connection::open_read_only("test:///default")?;
    /// let domains = conn.list_all_domains(ListFilter::Active)?;
    /// let stats = domains[0].memory_stats()?;
    /// assert_eq!(stats.actual, Some(2_097_152), "the balloon size, KiB");
    /// assert!(stats.unused.is_some());
    /// # Ok(())
    /// # }
    /// ```
    pub fn memory_stats(&self) -> Result<MemoryStats> {
        let nr = sys::VIR_DOMAIN_MEMORY_STAT_NR as usize;
        let mut stats: Vec<sys::virDomainMemoryStatStruct> = Vec::with_capacity(nr);
        let n = checked(
            "virDomainMemoryStats",
            Some(&self.name),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: stats has capacity for nr elements, the count passed;
                // libvirt writes at most that many.
                unsafe {
                    sys::virDomainMemoryStats(self.raw(), stats.as_mut_ptr(), nr as c_uint, 0)
                }
            },
        )?;
        // SAFETY: libvirt initialised the first n (≤ nr) elements.
        unsafe { stats.set_len((n as usize).min(nr)) };
        Ok(MemoryStats::from_tags(&stats))
    }

    /// Asks the guest's balloon driver to refresh its statistics every
    /// `period_s` seconds, on the running guest only.
    ///
    /// Calls `virDomainSetMemoryStatsPeriod` with `VIR_DOMAIN_AFFECT_LIVE`;
    /// fails on `-1`. Nothing to free. The setting dies with the QEMU
    /// process: a restarted guest needs it again. A period beyond `i32` is a
    /// local error, no call made.
    pub fn set_memory_stats_period(&self, period_s: u32) -> Result<()> {
        let period = c_int::try_from(period_s).map_err(|_| {
            Error::local(
                "virDomainSetMemoryStatsPeriod",
                Some(&self.name),
                "period too large",
            )
        })?;
        checked(
            "virDomainSetMemoryStatsPeriod",
            Some(&self.name),
            Sentinel::Negative,
            || format!("period={period_s}s, flags=live"),
            || {
                // SAFETY: live domain, plain integer arguments.
                unsafe {
                    sys::virDomainSetMemoryStatsPeriod(
                        self.raw(),
                        period,
                        sys::VIR_DOMAIN_AFFECT_LIVE,
                    )
                }
            },
        )?;
        Ok(())
    }

    /// Sets the live balloon target to `kib` KiB.
    ///
    /// Calls `virDomainSetMemoryFlags` with `VIR_DOMAIN_AFFECT_LIVE`; fails
    /// on `-1` (e.g. above the domain's maximum). Nothing to free. A size
    /// beyond `unsigned long` is a local error, no call made.
    ///
    /// ```
    /// use kvmsched::virt::{Connection, ListFilter};
    ///
    /// # fn main() -> kvmsched::virt::Result<()> {
    /// let conn = Connection::open("test:///default")?;
    /// let domains = conn.list_all_domains(ListFilter::Active)?;
    /// let test = &domains[0];
    /// test.set_memory(1_048_576)?;
    /// assert_eq!(test.info()?.memory_kib, 1_048_576);
    /// // Above the maximum (8 GiB here) is refused and changes nothing.
    /// assert!(test.set_memory(16 * 1_048_576).is_err());
    /// assert_eq!(test.info()?.memory_kib, 1_048_576);
    /// # Ok(())
    /// # }
    /// ```
    pub fn set_memory(&self, kib: u64) -> Result<()> {
        let mem = std::os::raw::c_ulong::try_from(kib).map_err(|_| {
            Error::local(
                "virDomainSetMemoryFlags",
                Some(&self.name),
                "size too large",
            )
        })?;
        checked(
            "virDomainSetMemoryFlags",
            Some(&self.name),
            Sentinel::Negative,
            || format!("{kib} KiB, flags=live"),
            || {
                // SAFETY: live domain, plain integer arguments.
                unsafe {
                    sys::virDomainSetMemoryFlags(self.raw(), mem, sys::VIR_DOMAIN_AFFECT_LIVE)
                }
            },
        )?;
        Ok(())
    }
}

impl Drop for Domain<'_> {
    fn drop(&mut self) {
        let raw = self.ptr.as_ptr();
        let name = (!self.name.is_empty()).then_some(self.name.as_str());
        if checked(
            "virDomainFree",
            name,
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: we own exactly one reference to raw; released once, here.
                unsafe { sys::virDomainFree(raw) }
            },
        )
        .is_err()
        {
            super::note_drop_failure("virDomainFree");
        }
    }
}
