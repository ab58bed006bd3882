//! Raw FFI bindings to the part of libvirt's C API that kvmsched uses.
//!
//! Generated at build time by bindgen from `wrapper.h`, allowlisted to exactly
//! the functions the tool calls (see `build.rs`). libvirt's cpumap macros are
//! exposed as `kvmsched_shim_*` functions compiled from `shim/shim.c`.
//!
//! Nothing here is safe to call without reading libvirt's documentation for
//! the function; the safe layer lives in the `kvmsched` crate.

#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]
#![allow(clippy::undocumented_unsafe_blocks)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
