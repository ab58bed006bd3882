//! Log lines: human by default, one JSON object per event with
//! `--log-format json`. Everything goes to stdout; errors to stderr.
//!
//! Human lines carry domain names and libvirt messages, which may hold
//! control characters (`\r`, ESC): they are escaped by [`printable`], the
//! JSON rule, so one event is one line and no terminal escape gets through.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::LogFormat;
use crate::json::printable;

/// UTC time as RFC 3339 with milliseconds, computed by hand (no deps).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Where the daemon's lines go.
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    /// Human or JSON.
    pub format: LogFormat,
    /// Show reasoning lines.
    pub verbose: bool,
}

impl Logger {
    /// A human line (`ts loop: text`, control characters in `text` escaped
    /// by [`printable`]); in JSON mode it becomes
    /// `{"ts":..,"loop":..,"event":"summary","text":..}`.
    pub fn line(&self, lp: &str, text: &str) {
        match self.format {
            LogFormat::Human => out(&format!(
                "{} {lp}: {}",
                timestamp(SystemTime::now()),
                printable(text)
            )),
            LogFormat::Json => out(&crate::json::JsonObject::new()
                .str("ts", &timestamp(SystemTime::now()))
                .str("loop", lp)
                .str("event", "summary")
                .str("text", text)
                .finish()),
        }
    }

    /// A reasoning line, shown with `--verbose` only.
    pub fn detail(&self, lp: &str, text: &str) {
        if self.verbose {
            self.line(lp, text);
        }
    }

    /// A JSON event object for loop `lp`, with `ts` and `loop` filled in.
    pub fn obj(&self, lp: &str) -> crate::json::JsonObject {
        crate::json::JsonObject::new()
            .str("ts", &timestamp(SystemTime::now()))
            .str("loop", lp)
    }

    /// A decision event: in JSON mode `obj` (made by [`Logger::obj`]); in
    /// human mode `text` under loop `lp`.
    pub fn event(&self, lp: &str, obj: crate::json::JsonObject, text: &str) {
        match self.format {
            LogFormat::Human => self.line(lp, text),
            LogFormat::Json => out(&obj.finish()),
        }
    }

    /// A warning or error, always to stderr (escaped like [`Logger::line`]).
    pub fn warn(&self, lp: &str, text: &str) {
        let line = match self.format {
            LogFormat::Human => format!(
                "{} {lp}: warning: {}",
                timestamp(SystemTime::now()),
                printable(text)
            ),
            LogFormat::Json => crate::json::JsonObject::new()
                .str("ts", &timestamp(SystemTime::now()))
                .str("loop", lp)
                .str("event", "warning")
                .str("text", text)
                .finish(),
        };
        // A closed stderr must not stop the daemon.
        writeln!(std::io::stderr().lock(), "{line}").ok();
    }
}

fn out(line: &str) {
    let mut o = std::io::stdout().lock();
    // A closed stdout (pipe reader gone) must not stop the daemon.
    writeln!(o, "{line}").ok();
    o.flush().ok();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_674_123_456);
        assert_eq!(timestamp(t), "2026-11-26T06:22:03.456Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&timestamp(leap)[..10], "2000-02-29");
    }
}
