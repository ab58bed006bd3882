//! Pure scheduling policies: plain snapshots in, plans out.
//!
//! Nothing in this module touches libvirt; the adapter in `crate::daemon`
//! turns libvirt into these inputs and the plans into libvirt calls.

pub mod memory;
pub mod vcpu;
