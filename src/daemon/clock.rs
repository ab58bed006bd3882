//! The daemon's one clock, injected so that a tick can run on a fake one.
//!
//! Monotonic time schedules the intervals, measures the vCPU usage window
//! and is the memory policy's `now`; wall time is only published (the
//! metrics' "last completed interval"), never compared.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Monotonic and wall time, and sleeping.
pub trait Clock {
    /// Time since a fixed origin; never goes back.
    fn monotonic(&self) -> Duration;
    /// Seconds since the Unix epoch (may step with the host clock).
    fn wall_unix_seconds(&self) -> f64;
    /// Waits `d` (a fake clock advances by `d` instead).
    fn sleep(&self, d: Duration);
}

/// The host's clocks. Its monotonic origin is the process's first reading,
/// shared with [`crate::sample::monotonic_ns`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        Duration::from_nanos(crate::sample::monotonic_ns())
    }

    fn wall_unix_seconds(&self) -> f64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// Monotonic time in whole milliseconds (the memory policy's unit).
pub fn millis(t: Duration) -> u64 {
    u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
}

/// Monotonic time in nanoseconds (the vCPU policy's unit).
pub fn nanos(t: Duration) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}
