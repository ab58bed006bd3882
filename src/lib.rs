//! kvmsched: a host-side vCPU scheduler and memory coordinator for KVM guests.
//!
//! - [`virt`]: the safe wrapper over libvirt's C API (via `libvirt-sys`).
//! - [`policy`]: the pure vCPU and memory policies (plain data in, plans out).

pub mod policy;
pub mod virt;
