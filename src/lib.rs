//! kvmsched: a host-side vCPU scheduler and memory coordinator for KVM guests.
//!
//! - [`virt`]: the safe wrapper over libvirt's C API (via `libvirt-sys`).
//! - [`policy`]: the pure vCPU and memory policies (plain data in, plans out).
//! - [`sample`]: libvirt → policy inputs; [`daemon`]: the control loops.
//! - [`cli`], [`config`], [`log`], [`json`], [`metrics`], [`signals`]: the
//!   hand-written operational pieces (no runtime dependency beyond libc).

pub mod cli;
pub mod config;
pub mod cpulist;
pub mod daemon;
pub mod json;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod sample;
pub mod signals;
pub mod status;
pub mod virt;
