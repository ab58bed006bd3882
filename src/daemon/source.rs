//! What the loops need from libvirt, behind two small traits so a tick
//! runs against fakes in tests: a [`Session`] is one connection, a
//! [`Source`] is one interval's view of it.
//!
//! A [`Source`] is made per interval. Its `read` returns plain policy
//! inputs plus a [`DomId`] per domain; the actions of that interval name
//! the domain by that `DomId`, which refers to the handle read in the same
//! interval (no lookup by UUID). Failures are classified once, here, into
//! a [`Failure`] with its [`ErrorKind`].

use std::fmt;
use std::time::Duration;

use crate::policy::memory::DomainMem;
use crate::policy::vcpu::VcpuSample;
use crate::sample::{self, DomainRead, Want};
use crate::virt::{Connection, CpuMap, Error, ErrorKind};

/// A failed call as the loops see it: its kind decides what happens next
/// (reconnect, skip quietly, count and log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The call, its target and libvirt's message.
    pub message: String,
}

impl Failure {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            kind: e.kind(),
            message: e.to_string(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A domain read in this interval: the index of its handle in the
/// interval's [`Source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DomId(pub(crate) usize);

/// Who a domain is, as read this interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Its handle in this interval.
    pub handle: DomId,
    /// UUID (stable across restarts).
    pub uuid: String,
    /// Name.
    pub name: String,
    /// Hypervisor ID of the running instance (`None` if not read or
    /// unknown); a restart under the same UUID changes it.
    pub id: Option<u32>,
}

/// A domain that could not be read this interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Domain name.
    pub name: String,
    /// Why.
    pub failure: Failure,
}

/// One interval's read of the running domains that are not excluded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// The domains, with their handles.
    pub domains: Vec<Seen>,
    /// The vCPU policy's input (empty unless vCPUs were asked for).
    pub vcpus: Vec<VcpuSample>,
    /// The memory policy's input (empty unless memory was asked for).
    pub memory: Vec<DomainMem>,
    /// Domains that failed to read.
    pub skipped: Vec<Skipped>,
    /// When the vCPU times were read, on the clock of
    /// [`crate::daemon::clock::SystemClock`] (the bulk call's return on the
    /// bulk path); `None` = when `read` returned.
    pub vcpus_read_at: Option<Duration>,
    /// How libvirt's domains were read (bulk stats or per domain), when
    /// known; announced once per connection.
    pub read_path: Option<sample::ReadPath>,
}

impl Sample {
    /// The handle of the domain with this UUID read this interval.
    pub fn index(&self) -> std::collections::BTreeMap<&str, DomId> {
        self.domains
            .iter()
            .map(|d| (d.uuid.as_str(), d.handle))
            .collect()
    }
}

/// Host CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpus {
    /// CPUs present (sizes cpumaps).
    pub present: u32,
    /// Online CPUs (the usable pCPUs).
    pub online: Vec<u32>,
}

/// One interval's access to libvirt.
pub trait Source {
    /// Host CPUs present and online.
    fn host_cpus(&mut self) -> Result<HostCpus, Failure>;
    /// Host memory that may be granted (KiB).
    fn host_free_kib(&mut self) -> Result<u64, Failure>;
    /// Reads every running domain whose name `skip` rejects not; `host_cpus`
    /// sizes the affinity maps.
    fn read(
        &mut self,
        want: Want,
        host_cpus: u32,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Sample, Failure>;
    /// Pins `vcpu` of `d` to `map`.
    fn pin(&mut self, d: DomId, vcpu: u32, map: &CpuMap) -> Result<(), Failure>;
    /// Sets the live balloon target of `d`.
    fn set_memory(&mut self, d: DomId, kib: u64) -> Result<(), Failure>;
    /// Asks `d`'s balloon driver for stats every `seconds`.
    fn set_stats_period(&mut self, d: DomId, seconds: u32) -> Result<(), Failure>;
}

/// One connection.
pub trait Session {
    /// Whether the connection is still up (a local check, no round trip).
    fn is_alive(&self) -> Result<bool, Failure>;
    /// This interval's view of the connection.
    fn source(&self) -> Box<dyn Source + '_>;
}

impl Session for Connection {
    fn is_alive(&self) -> Result<bool, Failure> {
        Ok(Connection::is_alive(self)?)
    }

    fn source(&self) -> Box<dyn Source + '_> {
        Box::new(Libvirt {
            conn: self,
            doms: Vec::new(),
        })
    }
}

/// The libvirt [`Source`]: keeps the handles of the last read.
struct Libvirt<'c> {
    conn: &'c Connection,
    doms: Vec<DomainRead<'c>>,
}

impl<'c> Libvirt<'c> {
    fn domain(&self, d: DomId, call: &str) -> Result<&DomainRead<'c>, Failure> {
        self.doms.get(d.0).ok_or_else(|| {
            Failure::new(
                ErrorKind::Other,
                format!("{call}: no domain #{} in this interval's read", d.0),
            )
        })
    }
}

impl Source for Libvirt<'_> {
    fn host_cpus(&mut self) -> Result<HostCpus, Failure> {
        let m = sample::read_host_cpus(self.conn)?;
        Ok(HostCpus {
            present: m.present,
            online: m.online.cpus(),
        })
    }

    fn host_free_kib(&mut self) -> Result<u64, Failure> {
        Ok(sample::read_host_free(self.conn)?.kib)
    }

    fn read(
        &mut self,
        want: Want,
        host_cpus: u32,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<Sample, Failure> {
        let (doms, skipped) = sample::read_domains(self.conn, host_cpus, want, skip)?;
        let mut out = Sample {
            skipped: skipped
                .into_iter()
                .map(|s| Skipped {
                    name: s.name,
                    failure: s.error.into(),
                })
                .collect(),
            ..Sample::default()
        };
        // The instance ID only matters to the memory loop (stats period).
        let mut kept = Vec::with_capacity(doms.len());
        for d in doms {
            let id = if want.memory {
                match d.domain.id() {
                    Ok(id) => id,
                    Err(e) => {
                        out.skipped.push(Skipped {
                            name: d.domain.name().to_string(),
                            failure: e.into(),
                        });
                        continue;
                    }
                }
            } else {
                None
            };
            out.domains.push(Seen {
                handle: DomId(kept.len()),
                uuid: d.domain.uuid().to_string(),
                name: d.domain.name().to_string(),
                id,
            });
            kept.push(d);
        }
        let doms = kept;
        if want.vcpus {
            let snap = sample::vcpu_snapshot(&doms, Vec::new());
            out.vcpus_read_at = Some(Duration::from_nanos(snap.monotonic_ns));
            out.vcpus = snap.vcpus;
        }
        out.read_path = sample::read_path(self.conn);
        if want.memory {
            out.memory = doms.iter().map(sample::domain_mem).collect();
        }
        self.doms = doms;
        Ok(out)
    }

    fn pin(&mut self, d: DomId, vcpu: u32, map: &CpuMap) -> Result<(), Failure> {
        Ok(self
            .domain(d, "virDomainPinVcpu")?
            .domain
            .pin_vcpu(vcpu, map)?)
    }

    fn set_memory(&mut self, d: DomId, kib: u64) -> Result<(), Failure> {
        Ok(self
            .domain(d, "virDomainSetMemoryFlags")?
            .domain
            .set_memory(kib)?)
    }

    fn set_stats_period(&mut self, d: DomId, seconds: u32) -> Result<(), Failure> {
        Ok(self
            .domain(d, "virDomainSetMemoryStatsPeriod")?
            .domain
            .set_memory_stats_period(seconds)?)
    }
}
