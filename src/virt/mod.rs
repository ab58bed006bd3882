//! A safe wrapper over the libvirt calls kvmsched needs.
//!
//! One file per libvirt object; every FFI call goes through
//! `call::checked`, which checks the call's own failure sentinel, copies
//! libvirt's error right away on the same thread, counts the call and writes
//! the `--trace` line. Each public function's doc names the C function it
//! calls, who frees what, and that function's failure sentinel; failures
//! are [`Error`] values classified once by [`Error::kind`].
//!
//! ```
//! use kvmsched::virt::{Connection, ListFilter};
//!
//! # fn main() -> kvmsched::virt::Result<()> {
//! let conn = Connection::open_read_only("test:///default")?;
//! for domain in conn.list_all_domains(ListFilter::Active)? {
//!     let info = domain.info()?;
//!     println!("{}: {} vCPUs, {} KiB", domain.name(), info.nr_virt_cpu, info.memory_kib);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]
// `c_ulong` is u64 here but u32 on 32-bit targets: `u64::from` is the
// portable widening, even where clippy sees a no-op.
#![allow(clippy::useless_conversion)]

pub mod call;
pub mod connection;
pub mod cpumap;
pub mod domain;
pub mod error;
pub mod memstats;
pub mod node;
pub mod typed_params;

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

use libvirt_sys as sys;

pub use call::{call_counts, set_trace, thread_call_count, trace_enabled, CallCounts};
pub use connection::{stats, Connection, DomainStats, ListFilter};
pub use cpumap::{format_cpu_list, CpuMap};
pub use domain::{Domain, DomainInfo, VcpuInfo, STATE_RUNNING};
pub use error::{Error, ErrorKind, Result};
pub use memstats::MemoryStats;
pub use node::{NodeCpuMap, NodeCpuStats, NodeInfo, NodeMemoryStats};
pub use typed_params::{ParamValue, TypedParams};

static INIT: Once = Once::new();
static DROP_FAILURES: AtomicU64 = AtomicU64::new(0);

/// libvirt's default handler prints every error to stderr; ours keeps quiet
/// because each error is returned as a value and reported once by the caller.
unsafe extern "C" fn silent(_user: *mut std::os::raw::c_void, _err: sys::virErrorPtr) {}

/// Initialises libvirt once per process and silences its default error
/// printing. Called by every `Connection` constructor.
///
/// Calls `virInitialize` (fails on `-1`, only on allocation or thread-local
/// setup; such a failure surfaces as the connect call's own error) and
/// `virSetErrorFunc` (void) with a handler that prints nothing, since every
/// error is returned as a value. Nothing to free.
pub fn init() {
    INIT.call_once(|| {
        // virInitialize can only fail on allocation or thread-local setup;
        // a failure then surfaces as the connect call's own error.
        // Its error, if any, is counted and traced by checked().
        call::checked(
            "virInitialize",
            None,
            call::Sentinel::Negative,
            String::new,
            || {
                // SAFETY: no arguments; safe to call from any thread, once.
                unsafe { sys::virInitialize() }
            },
        )
        .ok();
        call::checked(
            "virSetErrorFunc",
            None,
            call::Sentinel::Never,
            String::new,
            || {
                // SAFETY: a NULL user pointer and a handler with the exact
                // virErrorFunc signature that never dereferences its arguments.
                unsafe { sys::virSetErrorFunc(std::ptr::null_mut(), Some(silent)) }
            },
        )
        .ok();
    });
}

/// Notes that a release call in `Drop` failed (drop cannot report it).
pub(crate) fn note_drop_failure(call: &'static str) {
    DROP_FAILURES.fetch_add(1, Ordering::Relaxed);
    if trace_enabled() {
        // Never panics (eprintln! would on a closed stderr), as Drop must not.
        let _ = writeln!(
            std::io::stderr().lock(),
            "trace: {call} failed while releasing a handle"
        );
    }
}

/// How many release calls failed in `Drop` so far (published as
/// `kvmsched_libvirt_release_failures_total`).
pub fn drop_failures() -> u64 {
    DROP_FAILURES.load(Ordering::Relaxed)
}
