//! The one path every libvirt call goes through: sentinel check, error
//! capture, call counting, the record of the call in progress and the
//! `--trace` audit line.

use std::cell::Cell;
use std::io::Write as _;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::error::{Error, Result};

static TRACE: AtomicBool = AtomicBool::new(false);
static CALLS: AtomicU64 = AtomicU64::new(0);
static FAILURES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_CALLS: Cell<u64> = const { Cell::new(0) };
}

/// The calls that have started and not yet returned, in the order they
/// started, each with the token that removes it.
static IN_PROGRESS: Mutex<Vec<(u64, InProgress)>> = Mutex::new(Vec::new());
static NEXT_TOKEN: AtomicU64 = AtomicU64::new(0);

/// A libvirt call that has started and not yet returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InProgress {
    /// The C function called, e.g. `virDomainSetMemoryFlags`.
    pub call: &'static str,
    /// When it was entered.
    pub started: Instant,
}

/// The libvirt call in progress on the daemon's thread, if any.
///
/// In the daemon only its main thread calls libvirt (the metrics and
/// stop-watchdog threads make no calls), so this is the call that thread
/// is inside, and a call that does not return stays visible here while
/// the loop publishes nothing. Any other thread may read it; the metrics
/// thread does at each scrape. When several threads call libvirt at once
/// (tests), this is the one that started first.
pub fn in_progress() -> Option<InProgress> {
    let calls = IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner);
    calls.first().map(|&(_, p)| p)
}

/// Records a call as in progress until dropped (also when `f` unwinds).
struct Entered(u64);

impl Entered {
    fn new(call: &'static str, started: Instant) -> Entered {
        let token = NEXT_TOKEN.fetch_add(1, Ordering::Relaxed);
        IN_PROGRESS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((token, InProgress { call, started }));
        Entered(token)
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        // A poisoned lock still guards a valid Vec; never panic here.
        let mut calls = IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = calls.iter().position(|&(t, _)| t == self.0) {
            calls.remove(i);
        }
    }
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

/// Makes one libvirt call: runs `f` (recorded for [`in_progress`] while it
/// runs), checks its result against `sentinel`, copies libvirt's error on
/// failure (same thread, right away), counts it and writes the trace line.
/// `args` is only evaluated when tracing.
pub(crate) fn checked<R: Check>(
    call: &'static str,
    target: Option<&str>,
    sentinel: Sentinel,
    args: impl FnOnce() -> String,
    f: impl FnOnce() -> R,
) -> Result<R> {
    let started = Instant::now();
    let entered = Entered::new(call, started);
    let raw = f();
    drop(entered);
    CALLS.fetch_add(1, Ordering::Relaxed);
    THREAD_CALLS.with(|c| c.set(c.get() + 1));
    let result = if raw.failed(sentinel) {
        FAILURES.fetch_add(1, Ordering::Relaxed);
        Err(Error::last(call, target))
    } else {
        Ok(raw)
    };
    if trace_enabled() {
        let micros = started.elapsed().as_micros();
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
        // Names and messages may hold control characters: escaped.
        writeln!(
            std::io::stderr().lock(),
            "{}",
            crate::json::printable(&line)
        )
        .ok();
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether a call named `call` is in progress on any thread.
    fn running(call: &str) -> bool {
        let calls = IN_PROGRESS.lock().unwrap_or_else(PoisonError::into_inner);
        calls.iter().any(|(_, p)| p.call == call)
    }

    #[test]
    fn a_call_is_in_progress_exactly_while_it_runs() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let before = Instant::now();
        let caller = std::thread::spawn(move || {
            checked(
                "testSlowCall",
                None,
                Sentinel::Negative,
                String::new,
                || -> c_int {
                    rx.recv().ok();
                    0
                },
            )
        });
        let start = Instant::now();
        while !running("testSlowCall") && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(running("testSlowCall"));
        let seen = in_progress().expect("a call in progress");
        let mine = IN_PROGRESS
            .lock()
            .unwrap()
            .iter()
            .find(|(_, p)| p.call == "testSlowCall")
            .map(|&(_, p)| p)
            .unwrap();
        assert!(mine.started >= before);
        // The oldest call is reported.
        assert!(seen.started <= mine.started);
        tx.send(()).unwrap();
        assert!(caller.join().unwrap().is_ok());
        assert!(!running("testSlowCall"), "cleared when the call returned");
    }

    #[test]
    fn a_call_that_unwinds_is_cleared_too() {
        let r = std::panic::catch_unwind(|| {
            checked(
                "testUnwindingCall",
                None,
                Sentinel::Never,
                String::new,
                || -> c_int {
                    assert!(running("testUnwindingCall"));
                    panic!("unwinds out of the call");
                },
            )
        });
        assert!(r.is_err());
        assert!(!running("testUnwindingCall"));
    }
}
