//! Raw FFI bindings to the part of libvirt's C API that kvmsched uses.
//!
//! Generated at build time by bindgen from `wrapper.h`, allowlisted to exactly
//! the functions the tool calls (see `build.rs`). libvirt's cpumap macros are
//! exposed as `kvmsched_shim_*` functions compiled from `shim/shim.c`.
//!
//! Nothing here is safe to call without reading libvirt's documentation for
//! the function; the safe layer lives in the `kvmsched` crate.

#![warn(missing_docs)]

/// bindgen's output: libvirt's own names and layouts, documented in
/// libvirt's API reference (<https://libvirt.org/html/index.html>), plus
/// the `kvmsched_shim_*` functions declared in `shim/shim.h`.
#[allow(non_upper_case_globals)]
#[allow(non_camel_case_types)]
#[allow(non_snake_case)]
#[allow(missing_docs)]
#[allow(clippy::all)]
#[allow(clippy::undocumented_unsafe_blocks)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

pub use bindings::*;
