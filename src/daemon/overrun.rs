//! What the main loop is doing, for an observer thread that cannot be
//! blocked by it: when one piece of work (an interval, a connect) runs for
//! more than [`OVERRUN_INTERVALS`] intervals, the observer logs it once,
//! naming the libvirt call in progress.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock::{Clock, SystemClock};
use crate::log::Logger;
use crate::signals;

/// An interval overruns when its work takes more than this many intervals.
pub const OVERRUN_INTERVALS: u32 = 3;

/// How often the observer looks.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The work in progress on the main loop, shared with the observer.
#[derive(Debug, Default)]
pub struct Progress {
    current: Mutex<Option<Work>>,
}

#[derive(Debug, Clone)]
struct Work {
    what: String,
    since: Duration,
    interval: Duration,
    reported: bool,
}

impl Progress {
    /// The main loop starts `what` at monotonic time `now`; its budget is
    /// `interval`.
    pub fn begin(&self, what: &str, now: Duration, interval: Duration) {
        self.set(Some(Work {
            what: what.to_string(),
            since: now,
            interval,
            reported: false,
        }));
    }

    /// The work in progress is done.
    pub fn end(&self) {
        self.set(None);
    }

    fn set(&self, w: Option<Work>) {
        match self.current.lock() {
            Ok(mut g) => *g = w,
            Err(p) => *p.into_inner() = w,
        }
    }

    /// At monotonic time `now`: the line to log if the work in progress has
    /// overrun, once per piece of work.
    pub fn overrun(&self, now: Duration, call: Option<(&str, Duration)>) -> Option<String> {
        let mut g = match self.current.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let w = g.as_mut()?;
        let running = now.saturating_sub(w.since);
        if w.reported || running <= w.interval * OVERRUN_INTERVALS {
            return None;
        }
        w.reported = true;
        let waiting = match call {
            Some((c, age)) => format!("; waiting for {c} for {:.1}s", age.as_secs_f64()),
            None => String::new(),
        };
        Some(format!(
            "{} has run {:.1}s, more than {OVERRUN_INTERVALS} intervals of {:.1}s{waiting}",
            w.what,
            running.as_secs_f64(),
            w.interval.as_secs_f64()
        ))
    }
}

/// Starts the observer thread: it lives as long as the process.
pub fn spawn_observer(progress: Arc<Progress>, log: Logger) -> Result<(), String> {
    std::thread::Builder::new()
        .name("overrun-observer".into())
        .spawn(move || loop {
            std::thread::sleep(WATCH_EVERY);
            let now = SystemClock.monotonic();
            if let Some(line) = progress.overrun(now, signals::current_call()) {
                log.warn("daemon", &line);
            }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the overrun observer: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn an_overrun_is_reported_once_and_only_past_three_intervals() {
        let p = Progress::default();
        assert_eq!(p.overrun(10 * S, None), None, "nothing in progress");
        p.begin("the vcpu interval", 10 * S, 2 * S);
        assert_eq!(p.overrun(16 * S, None), None, "exactly 3 intervals");
        let line = p
            .overrun(17 * S, Some(("virDomainPinVcpu", 6 * S)))
            .expect("overrun");
        assert!(line.starts_with("the vcpu interval has run 7.0s"), "{line}");
        assert!(line.contains("virDomainPinVcpu"), "{line}");
        assert_eq!(p.overrun(30 * S, None), None, "once");
        p.end();
        p.begin("the vcpu interval", 40 * S, 2 * S);
        assert!(p.overrun(47 * S, None).is_some(), "a new piece of work");
    }
}
