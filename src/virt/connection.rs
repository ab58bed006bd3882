//! `virConnectPtr`: a connection to a hypervisor driver.
//!
//! Every method names the C function it calls, what it frees, and the value
//! that function returns on failure (its sentinel, checked by
//! [`call::checked`](super::call)); on failure libvirt's error is copied
//! into an [`Error`] on the same thread right away.

use std::ffi::{CStr, CString};
use std::os::raw::c_uint;
use std::ptr::NonNull;

use libvirt_sys as sys;

use super::call::{checked, Sentinel};
use super::domain::Domain;
use super::error::{Error, Result};
use super::typed_params::TypedParams;

/// An open connection to libvirt (`virConnectPtr`).
///
/// Owns one reference, released with `virConnectClose` on drop (a failure
/// there is counted, never a panic). Domains borrowed from it
/// ([`Domain<'conn>`]) cannot outlive it.
///
/// ```
/// use kvmsched::virt::Connection;
///
/// # fn main() -> kvmsched::virt::Result<()> {
/// // libvirt's built-in test driver: one running domain named "test".
/// let conn = Connection::open("test:///default")?;
/// assert!(conn.is_alive()?);
/// assert_eq!(conn.canonical_uri()?, "test:///default");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Connection {
    ptr: NonNull<sys::virConnect>,
    uri: String,
    read_only: bool,
    /// Parameter counts of virNodeGetCPUStats / virNodeGetMemoryStats,
    /// asked once per connection (the driver's count never changes), so
    /// later reads are one round trip.
    pub(crate) node_cpu_nparams: std::cell::Cell<Option<std::os::raw::c_int>>,
    pub(crate) node_mem_nparams: std::cell::Cell<Option<std::os::raw::c_int>>,
    /// The canonical URI, once asked for: it cannot change for the life of
    /// the connection.
    canonical: std::cell::OnceCell<String>,
    /// Whether the driver answers virConnectGetAllDomainStats: `None`
    /// until the first try, then remembered for the life of the connection
    /// (a reconnect asks again). Read and set by `sample::read_domains`.
    pub(crate) bulk_stats: std::cell::Cell<Option<bool>>,
}

/// Which domains [`Connection::list_all_domains`] returns
/// (`virConnectListAllDomainsFlags`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFilter {
    /// Every defined or running domain.
    All,
    /// Running (active) domains only.
    Active,
}

/// One domain's record from [`Connection::all_domain_stats`].
#[derive(Debug)]
pub struct DomainStats<'conn> {
    /// The domain (its own reference, freed on drop).
    pub domain: Domain<'conn>,
    /// The typed parameters libvirt returned, copied.
    pub params: TypedParams,
}

/// Stat groups for [`Connection::all_domain_stats`] (`virDomainStatsTypes`).
pub mod stats {
    use libvirt_sys as sys;
    /// `state.*`: state and reason.
    pub const STATE: u32 = sys::VIR_DOMAIN_STATS_STATE;
    /// `vcpu.*`: per-vCPU state and time.
    pub const VCPU: u32 = sys::VIR_DOMAIN_STATS_VCPU;
    /// `balloon.*`: current/maximum and the guest's memory stats.
    pub const BALLOON: u32 = sys::VIR_DOMAIN_STATS_BALLOON;
    /// `cpu.*`: total CPU time.
    pub const CPU_TOTAL: u32 = sys::VIR_DOMAIN_STATS_CPU_TOTAL;
}

impl Connection {
    /// Opens `uri` read-write.
    ///
    /// Calls `virConnectOpen` (after [`init`](super::init)); fails on
    /// `NULL`. The connection is the caller's, closed on drop. A URI with a
    /// NUL byte is a local error, no call made.
    pub fn open(uri: &str) -> Result<Connection> {
        Self::open_with(uri, false)
    }

    /// Opens `uri` read-only: every call that changes state then fails with
    /// [`ErrorKind::Denied`](super::ErrorKind::Denied).
    ///
    /// Calls `virConnectOpenReadOnly`; fails on `NULL`. Closed on drop.
    pub fn open_read_only(uri: &str) -> Result<Connection> {
        Self::open_with(uri, true)
    }

    fn open_with(uri: &str, read_only: bool) -> Result<Connection> {
        super::init();
        let name = if read_only {
            "virConnectOpenReadOnly"
        } else {
            "virConnectOpen"
        };
        let c_uri = CString::new(uri)
            .map_err(|_| Error::local(name, Some(uri), "URI contains a NUL byte"))?;
        let raw = checked(name, Some(uri), Sentinel::Null, String::new, || {
            if read_only {
                // SAFETY: c_uri is a valid NUL-terminated string for the call.
                unsafe { sys::virConnectOpenReadOnly(c_uri.as_ptr()) }
            } else {
                // SAFETY: c_uri is a valid NUL-terminated string for the call.
                unsafe { sys::virConnectOpen(c_uri.as_ptr()) }
            }
        })?;
        let ptr =
            NonNull::new(raw).ok_or_else(|| Error::local(name, Some(uri), "NULL connection"))?;
        Ok(Connection {
            ptr,
            uri: uri.to_string(),
            read_only,
            node_cpu_nparams: std::cell::Cell::new(None),
            node_mem_nparams: std::cell::Cell::new(None),
            canonical: std::cell::OnceCell::new(),
            bulk_stats: std::cell::Cell::new(None),
        })
    }

    pub(crate) fn as_ptr(&self) -> sys::virConnectPtr {
        self.ptr.as_ptr()
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether the connection was opened read-only.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The canonical URI libvirt resolved, e.g. `qemu:///system` for an
    /// empty default.
    ///
    /// Calls `virConnectGetURI` the first time only (the memory loop asks
    /// every interval); fails on `NULL`. The string is copied and the
    /// caller-owned C string freed with `free()`.
    pub fn canonical_uri(&self) -> Result<String> {
        if let Some(s) = self.canonical.get() {
            return Ok(s.clone());
        }
        let raw = checked(
            "virConnectGetURI",
            Some(&self.uri),
            Sentinel::Null,
            String::new,
            || {
                // SAFETY: self.ptr is an open connection for the life of self.
                unsafe { sys::virConnectGetURI(self.as_ptr()) }
            },
        )?;
        // SAFETY: non-NULL, NUL-terminated string that the caller must free.
        let s = unsafe { CStr::from_ptr(raw) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: raw was allocated by libvirt with malloc and is ours to free.
        unsafe { libc::free(raw.cast()) };
        Ok(self.canonical.get_or_init(|| s).clone())
    }

    /// Whether the connection to the daemon is still up.
    ///
    /// Calls `virConnectIsAlive` (1 alive, 0 closed; a local check of the
    /// RPC client, no round trip); fails on `-1`. Nothing to free.
    pub fn is_alive(&self) -> Result<bool> {
        let r = checked(
            "virConnectIsAlive",
            Some(&self.uri),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: self.ptr is an open connection for the life of self.
                unsafe { sys::virConnectIsAlive(self.as_ptr()) }
            },
        )?;
        Ok(r == 1)
    }

    /// libvirt's version as major * 1 000 000 + minor * 1000 + release.
    ///
    /// Calls `virConnectGetLibVersion`; fails on `-1`. Nothing to free.
    pub fn lib_version(&self) -> Result<u64> {
        let mut ver: std::os::raw::c_ulong = 0;
        checked(
            "virConnectGetLibVersion",
            Some(&self.uri),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: self.ptr is open; &mut ver is a valid out-pointer.
                unsafe { sys::virConnectGetLibVersion(self.as_ptr(), &mut ver) }
            },
        )?;
        Ok(u64::from(ver))
    }

    /// Lists domains, each with its name and UUID read.
    ///
    /// Calls `virConnectListAllDomains` (flags `0` or
    /// `VIR_CONNECT_LIST_DOMAINS_ACTIVE`); fails on `-1`. libvirt returns a
    /// `malloc`'d array of domain references: each reference moves into a
    /// [`Domain`] (freed with `virDomainFree` on its drop) and the array
    /// itself is freed with `free()` before return. Then per domain
    /// `virDomainGetName` (fails on `NULL`; the string belongs to the domain
    /// object and is copied) and `virDomainGetUUIDString` (fails on `-1`;
    /// fills our buffer), both local lookups.
    ///
    /// ```
    /// use kvmsched::virt::{Connection, ListFilter};
    ///
    /// # fn main() -> kvmsched::virt::Result<()> {
    /// let conn = Connection::open_read_only("test:///default")?;
    /// let domains = conn.list_all_domains(ListFilter::Active)?;
    /// let names: Vec<&str> = domains.iter().map(|d| d.name()).collect();
    /// assert_eq!(names, ["test"]);
    /// assert_eq!(domains[0].uuid(), "6695eb01-f6a4-8304-79aa-97f2502e193f");
    /// # Ok(())
    /// # }
    /// ```
    pub fn list_all_domains(&self, filter: ListFilter) -> Result<Vec<Domain<'_>>> {
        let flags: c_uint = match filter {
            ListFilter::All => 0,
            ListFilter::Active => sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE,
        };
        let mut list: *mut sys::virDomainPtr = std::ptr::null_mut();
        let n = checked(
            "virConnectListAllDomains",
            Some(&self.uri),
            Sentinel::Negative,
            || format!("flags={flags:#x}"),
            || {
                // SAFETY: self.ptr is open; &mut list is a valid out-pointer
                // that libvirt fills with a malloc'd array on success.
                unsafe { sys::virConnectListAllDomains(self.as_ptr(), &mut list, flags) }
            },
        )?;
        let n = usize::try_from(n).unwrap_or(0);
        let mut domains = Vec::with_capacity(n);
        if !list.is_null() {
            // SAFETY: on success list points to n domain pointers (plus a
            // NULL terminator), each one a reference we now own.
            let raw = unsafe { std::slice::from_raw_parts(list, n) };
            // Wrap every pointer first, so none leaks if a later step fails.
            for &d in raw {
                if let Some(d) = NonNull::new(d) {
                    domains.push(Domain::from_owned(d));
                }
            }
            // SAFETY: the array itself was malloc'd by libvirt; the domain
            // references in it are now owned by `domains`.
            unsafe { libc::free(list.cast()) };
        }
        let mut named = Vec::with_capacity(domains.len());
        for d in domains {
            named.push(d.load_identity()?);
        }
        Ok(named)
    }

    /// Bulk statistics for all active domains in one round trip, `groups` a
    /// bitwise OR of [`stats`] constants.
    ///
    /// Calls `virConnectGetAllDomainStats` with
    /// `VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE | _NOWAIT`; fails on `-1`
    /// (a driver without it answers `VIR_ERR_NO_SUPPORT`,
    /// [`ErrorKind::Unsupported`](super::ErrorKind::Unsupported)). Each
    /// record's parameters are copied and its domain re-referenced with
    /// `virDomainRef` (fails on `-1`) into a [`Domain`] of its own; the
    /// record list is then freed with `virDomainStatsRecordListFree`.
    pub fn all_domain_stats(&self, groups: u32) -> Result<Vec<DomainStats<'_>>> {
        self.all_domain_stats_at(groups).map(|(records, _)| records)
    }

    /// [`Connection::all_domain_stats`], plus the instant the C call
    /// returned (before the records are copied): the time the figures in
    /// them refer to, as closely as the caller can know it. Same call,
    /// sentinel and ownership.
    pub fn all_domain_stats_at(
        &self,
        groups: u32,
    ) -> Result<(Vec<DomainStats<'_>>, std::time::Instant)> {
        // NOWAIT: a domain whose monitor is busy (a stuck guest) is reported
        // without the figures that need the monitor instead of blocking the
        // whole call for libvirt's 30 s job timeout.
        let flags = sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
            | sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT;
        let mut records: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
        let mut returned = std::time::Instant::now();
        let n = checked(
            "virConnectGetAllDomainStats",
            Some(&self.uri),
            Sentinel::Negative,
            || format!("stats={groups:#x}, flags={flags:#x}"),
            || {
                // SAFETY: self.ptr is open; &mut records is a valid out-pointer.
                let n = unsafe {
                    sys::virConnectGetAllDomainStats(self.as_ptr(), groups, &mut records, flags)
                };
                returned = std::time::Instant::now();
                n
            },
        )?;
        let list = StatsList(records);
        let n = usize::try_from(n).unwrap_or(0);
        let mut out = Vec::with_capacity(n);
        if list.0.is_null() {
            return Ok((out, returned));
        }
        // SAFETY: on success records points to n record pointers followed
        // by NULL; they stay valid until StatsList drops.
        let recs = unsafe { std::slice::from_raw_parts(list.0, n) };
        for &rec in recs {
            if rec.is_null() {
                continue;
            }
            // SAFETY: rec is a valid record owned by the list.
            let rec = unsafe { &*rec };
            let Some(dom) = NonNull::new(rec.dom) else {
                continue;
            };
            let domain = Domain::add_ref(dom)?;
            let count = usize::try_from(rec.nparams).unwrap_or(0);
            // SAFETY: params points to nparams initialised parameters owned by
            // the list, alive until StatsList drops after this loop.
            let params = unsafe { TypedParams::copy_from(rec.params, count) };
            out.push(DomainStats {
                domain: domain.load_identity()?,
                params,
            });
        }
        Ok((out, returned))
    }
}

/// Owns the array from virConnectGetAllDomainStats until dropped, then
/// frees it with virDomainStatsRecordListFree (records, their parameters
/// and their domain references).
struct StatsList(*mut sys::virDomainStatsRecordPtr);

impl Drop for StatsList {
    fn drop(&mut self) {
        if self.0.is_null() {
            return;
        }
        let list = self.0;
        // virDomainStatsRecordListFree returns nothing and cannot fail.
        let freed = checked(
            "virDomainStatsRecordListFree",
            None,
            Sentinel::Never,
            String::new,
            || {
                // SAFETY: list came from virConnectGetAllDomainStats and is freed
                // exactly once, here; no copy of its pointers survives (domains
                // were re-referenced with virDomainRef).
                unsafe { sys::virDomainStatsRecordListFree(list) }
            },
        );
        if freed.is_err() {
            super::note_drop_failure("virDomainStatsRecordListFree");
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let ptr = self.ptr.as_ptr();
        // A failed close leaves nothing for us to do; checked() counts and
        // traces it. Drop must not panic.
        if checked(
            "virConnectClose",
            Some(&self.uri),
            Sentinel::Negative,
            String::new,
            || {
                // SAFETY: ptr is the connection we opened; closed once, here.
                unsafe { sys::virConnectClose(ptr) }
            },
        )
        .is_err()
        {
            super::note_drop_failure("virConnectClose");
        }
    }
}
