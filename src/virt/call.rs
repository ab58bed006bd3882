//! The one path every libvirt call goes through: sentinel check, error
//! capture, call counting and the `--trace` audit line.

use std::cell::Cell;
use std::io::Write as _;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use super::error::{Error, Result};

static TRACE: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicU64 = AtomicU64::new(0);
static FAILURES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// Turns the audit trail on or off: one stderr line per libvirt call with its
/// arguments, result and duration.
pub fn set_trace(on: bool) {
    TRACE.store(on, Ordering::Relaxed);
}

/// Whether `--trace` is on.
pub fn trace_enabled() -> bool {
    TRACE.load(Ordering::Relaxed)
}

/// Counters of libvirt calls made by this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallCounts {
    /// Calls made (all threads).
    pub calls: u64,
    /// Calls that failed (all threads).
    pub failures: u64,
}

/// Calls made and failed so far by the whole process.
pub fn call_counts() -> CallCounts {
    CallCounts {
        calls: CALLS.load(Ordering::Relaxed),
        failures: FAILURES.load(Ordering::Relaxed),
    }
}

/// Calls made so far by the current thread (for per-interval accounting
/// that other threads, such as parallel tests, cannot disturb).
pub fn thread_call_count() -> u64 {
    THREAD_CALLS.with(Cell::get)
}

/// A raw return value that can be shown in the trace.
pub(crate) trait Traced: Copy {
    fn show(&self) -> String;
}

impl Traced for c_int {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Traced for u64 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Traced for u32 {
    fn show(&self) -> String {
        self.to_string()
    }
}

impl Traced for () {
    fn show(&self) -> String {
        "void".to_string()
    }
}

impl<T> Traced for *mut T {
    fn show(&self) -> String {
        if self.is_null() {
            "NULL".to_string()
        } else {
            "ptr".to_string()
        }
    }
}

impl<T> Traced for *const T {
    fn show(&self) -> String {
        if self.is_null() {
            "NULL".to_string()
        } else {
            "ptr".to_string()
        }
    }
}

/// How a call signals failure.
#[derive(Clone, Copy)]
pub(crate) enum Sentinel {
    /// `-1` (any negative value) means failure.
    Negative,
    /// `NULL` means failure.
    Null,
    /// `0` means failure (virNodeGetFreeMemory, virDomainGetMaxMemory).
    Zero,
    /// The call cannot fail (void functions).
    Never,
}

pub(crate) trait Check: Traced {
    fn failed(&self, sentinel: Sentinel) -> bool;
}

impl Check for c_int {
    fn failed(&self, s: Sentinel) -> bool {
        match s {
            Sentinel::Negative => *self < 0,
            Sentinel::Zero => *self == 0,
            Sentinel::Null | Sentinel::Never => false,
        }
    }
}

impl Check for u64 {
    fn failed(&self, s: Sentinel) -> bool {
        matches!(s, Sentinel::Zero) && *self == 0
    }
}

impl Check for u32 {
    fn failed(&self, s: Sentinel) -> bool {
        matches!(s, Sentinel::Zero) && *self == 0
    }
}

impl Check for () {
    fn failed(&self, _: Sentinel) -> bool {
        false
    }
}

impl<T> Check for *mut T {
    fn failed(&self, s: Sentinel) -> bool {
        matches!(s, Sentinel::Null) && self.is_null()
    }
}

impl<T> Check for *const T {
    fn failed(&self, s: Sentinel) -> bool {
        matches!(s, Sentinel::Null) && self.is_null()
    }
}

/// Makes one libvirt call: runs `f`, checks its result against `sentinel`,
/// copies libvirt's error on failure (same thread, right away), counts it and
/// writes the trace line. `args` is only evaluated when tracing.
pub(crate) fn checked<R: Check>(
    call: &'static str,
    target: Option<&str>,
    sentinel: Sentinel,
    args: impl FnOnce() -> String,
    f: impl FnOnce() -> R,
) -> Result<R> {
    let start = trace_enabled().then(Instant::now);
    let raw = f();
    CALLS.fetch_add(1, Ordering::Relaxed);
    THREAD_CALLS.with(|c| c.set(c.get() + 1));
    let result = if raw.failed(sentinel) {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        Err(Error::last(call, target))
    } else {
        Ok(raw)
    };
    if let Some(start) = start {
        let micros = start.elapsed().as_micros();
        let mut parts: Vec<String> = target.map(str::to_owned).into_iter().collect();
        let a = args();
        if !a.is_empty() {
            parts.push(a);
        }
        let outcome = match &result {
            Ok(r) => r.show(),
            Err(e) => match e.code() {
                Some(code) => format!("error {code}: {}", e.message()),
                None => format!("error: {}", e.message()),
            },
        };
        let line = format!(
            "trace: {call}({}) = {outcome} ({micros} us)",
            parts.join(", ")
        );
        // The trace goes to stderr; a failed write (closed stderr) must not
        // change what the call returns, so it is deliberately ignored.
        writeln!(std::io::stderr().lock(), "{line}").ok();
    }
    result
}
