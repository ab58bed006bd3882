//! kvmsched: a host-side vCPU scheduler and memory coordinator for KVM guests.

pub mod policy;
