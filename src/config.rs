//! The configuration file (`--config PATH`), parsed by hand.
//!
//! # Format
//!
//! UTF-8 text, one setting per line:
//!
//! ```text
//! # a comment
//! vcpu.threshold = 5        # a comment after a value
//! vcpu.cpus      = 0-3,8
//! exclude        = build-*, win?? # may be repeated
//! floor.db01     = 2048
//! ```
//!
//! - A line is `key = value`; spaces around the key and the value are
//!   ignored. The key ends at the first `=`.
//! - `#` starts a comment anywhere on a line (so `#` cannot appear in a
//!   value); blank lines and comment-only lines are ignored.
//! - Values are written without quotes.
//! - Every key may be given at most once, except `exclude`.
//!
//! # Keys
//!
//! | key | value | default |
//! |-----|-------|---------|
//! | `vcpu.threshold` | std-dev of pCPU loads (points) at or below which nothing moves; number ≥ 0 | 5 |
//! | `vcpu.max_moves` | most pin changes per interval; integer ≥ 1 | 64 |
//! | `vcpu.confirm_intervals` | intervals a small imbalance (≤ 2 × threshold) must persist before pins change; integer ≥ 1 | 2 |
//! | `vcpu.cpus` | pCPUs to use, a CPU list such as `0-3,8` | all online |
//! | `vcpu.smoothing` | EWMA weight of the newest usage sample; 0 < x ≤ 1 | 0.5 |
//! | `memory.target_free_mib` | free memory each guest should keep (MiB) | 100 |
//! | `memory.band_mib` | dead band above the target (MiB) | 32 |
//! | `memory.release_fraction` | share of the excess released per period; 0 < x ≤ 1 | 0.5 |
//! | `memory.release_cap_mib` | largest release of one guest per period (MiB) | 128 |
//! | `memory.min_step_mib` | smallest change issued (MiB) | 4 |
//! | `memory.min_floor_mib` | lowest balloon size a shrink sets (MiB) | 200 |
//! | `memory.host_reserve_mib` | host free memory never granted (MiB) | 200 |
//! | `memory.growth_lookahead_periods` | periods of consumption granted ahead; integer | 3 |
//! | `exclude` | comma-separated domain names or globs (`*`, `?`); repeatable | none |
//! | `floor.<domain-name>` | per-domain balloon floor (MiB) | none |
//! | `interval.vcpu` | vCPU loop interval (seconds, 0.05 to 86400) | 2 |
//! | `interval.memory` | memory loop interval (seconds, 0.05 to 86400) | 2 |
//!
//! MiB values are whole non-negative numbers. Excluded domains are never
//! pinned and never ballooned. Globs match whole, case-sensitive names: `*`
//! matches any run of characters (also none), `?` exactly one character;
//! there is no escaping and there are no character classes.
//!
//! # Errors
//!
//! Every error is one line, `<origin>:<line>: <what is wrong>`: an unknown
//! key, a bad value (naming the key and the value), a missing `=`, or a
//! duplicate key. [`load`] reports I/O errors as `<path>: <error>`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::policy::memory::{MemConfig, MIB};
use crate::policy::vcpu::{parse_cpu_list, VcpuConfig};

/// Shortest accepted interval, as on the command line.
const MIN_INTERVAL_S: f64 = 0.05;
/// Longest accepted interval (one day), as on the command line.
const MAX_INTERVAL_S: f64 = 86_400.0;
/// Largest MiB value: its KiB must fit in a `u64`.
const MAX_MIB: u64 = u64::MAX / MIB;

/// Settings read from a config file; `None` (or empty) means "not given,
/// keep the default or the command-line value".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    /// `vcpu.threshold` (points).
    pub vcpu_threshold: Option<f64>,
    /// `vcpu.max_moves`.
    pub vcpu_max_moves: Option<usize>,
    /// `vcpu.confirm_intervals`.
    pub vcpu_confirm: Option<u32>,
    /// `vcpu.cpus`, sorted and distinct.
    pub vcpu_cpus: Option<Vec<u32>>,
    /// `vcpu.smoothing`.
    pub vcpu_smoothing: Option<f64>,
    /// `memory.target_free_mib`.
    pub memory_target_free_mib: Option<u64>,
    /// `memory.band_mib`.
    pub memory_band_mib: Option<u64>,
    /// `memory.release_fraction`.
    pub memory_release_fraction: Option<f64>,
    /// `memory.release_cap_mib`.
    pub memory_release_cap_mib: Option<u64>,
    /// `memory.min_step_mib`.
    pub memory_min_step_mib: Option<u64>,
    /// `memory.min_floor_mib`.
    pub memory_min_floor_mib: Option<u64>,
    /// `memory.host_reserve_mib`.
    pub memory_host_reserve_mib: Option<u64>,
    /// `memory.growth_lookahead_periods`.
    pub memory_growth_lookahead_periods: Option<u32>,
    /// `interval.vcpu`.
    pub interval_vcpu: Option<Duration>,
    /// `interval.memory`.
    pub interval_memory: Option<Duration>,
    /// `exclude` patterns (names or globs), in file order.
    pub exclude: Vec<String>,
    /// `floor.<domain-name>`: per-domain floors in MiB.
    pub floors: BTreeMap<String, u64>,
}

impl Config {
    /// Overrides the fields of `c` given in the file.
    pub fn apply_vcpu(&self, c: &mut VcpuConfig) {
        if let Some(v) = self.vcpu_threshold {
            c.threshold = v;
        }
        if let Some(v) = self.vcpu_max_moves {
            c.max_moves = v;
        }
        if let Some(v) = self.vcpu_confirm {
            c.confirm = v;
        }
        if let Some(v) = &self.vcpu_cpus {
            c.cpus = Some(v.clone());
        }
        if let Some(v) = self.vcpu_smoothing {
            c.smoothing = v;
        }
    }

    /// Overrides the fields of `c` given in the file (MiB → KiB). Floors
    /// are added to `c.per_domain_floor`, replacing entries of the same
    /// name; start from a fresh [`MemConfig`] on reload so that floors
    /// removed from the file disappear.
    pub fn apply_memory(&self, c: &mut MemConfig) {
        let kib = |mib: u64| mib.saturating_mul(MIB);
        if let Some(v) = self.memory_target_free_mib {
            c.target_free_kib = kib(v);
        }
        if let Some(v) = self.memory_band_mib {
            c.band_kib = kib(v);
        }
        if let Some(v) = self.memory_release_fraction {
            c.release_fraction = v;
        }
        if let Some(v) = self.memory_release_cap_mib {
            c.release_cap_kib = kib(v);
        }
        if let Some(v) = self.memory_min_step_mib {
            c.min_step_kib = kib(v);
        }
        if let Some(v) = self.memory_min_floor_mib {
            c.min_floor_kib = kib(v);
        }
        if let Some(v) = self.memory_host_reserve_mib {
            c.host_reserve_kib = kib(v);
        }
        if let Some(v) = self.memory_growth_lookahead_periods {
            c.growth_lookahead_periods = v;
        }
        for (name, mib) in &self.floors {
            c.per_domain_floor.insert(name.clone(), kib(*mib));
        }
    }

    /// Whether `domain_name` matches one of the `exclude` patterns.
    pub fn is_excluded(&self, domain_name: &str) -> bool {
        self.exclude.iter().any(|p| glob_match(p, domain_name))
    }
}

/// Reads and parses the file at `path`; errors name the path (and line).
pub fn load(path: &Path) -> Result<Config, String> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: {e}"))?;
    parse(&text, &origin)
}

/// Parses config text; `origin` (usually the path) starts every error.
pub fn parse(text: &str, origin: &str) -> Result<Config, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cfg = Config::default();
    // Line where each key (other than `exclude`) was first set.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (idx, raw) in text.lines().enumerate() {
        let line_no = idx + 1;
        let at = |msg: String| format!("{origin}:{line_no}: {msg}");
        let line = match raw.split_once('#') {
            Some((before, _)) => before,
            None => raw,
        }
        .trim();
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(at(format!("expected 'key = value', got {line:?}")));
        };
        let (key, value) = (key.trim(), value.trim());
        if key.is_empty() {
            return Err(at(format!("missing key before '=' in {line:?}")));
        }
        if key != "exclude" {
            if let Some(first) = seen.get(key) {
                return Err(at(format!(
                    "duplicate key {key:?} (first set on line {first})"
                )));
            }
        }
        set(&mut cfg, key, value).map_err(at)?;
        if key != "exclude" {
            seen.insert(key.to_string(), line_no);
        }
    }
    Ok(cfg)
}

/// Applies one `key = value` to `cfg`; the error has no position yet.
fn set(cfg: &mut Config, key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err(format!("missing value for {key}"));
    }
    if value.starts_with(['"', '\'']) {
        return Err(format!(
            "bad value {value:?} for {key}: values are written without quotes"
        ));
    }
    match key {
        "vcpu.threshold" => cfg.vcpu_threshold = Some(number(key, value, 0.0, f64::MAX)?),
        "vcpu.max_moves" => {
            let n = integer(key, value)?;
            if n < 1 {
                return Err(bad(key, value, "expected an integer >= 1"));
            }
            cfg.vcpu_max_moves =
                Some(usize::try_from(n).map_err(|_| bad(key, value, "too large"))?);
        }
        "vcpu.confirm_intervals" => {
            let n = integer(key, value)?;
            if n < 1 {
                return Err(bad(key, value, "expected an integer >= 1"));
            }
            cfg.vcpu_confirm = Some(u32::try_from(n).map_err(|_| bad(key, value, "too large"))?);
        }
        "vcpu.cpus" => {
            let cpus = parse_cpu_list(value).map_err(|e| format!("bad value for {key}: {e}"))?;
            cfg.vcpu_cpus = Some(cpus);
        }
        "vcpu.smoothing" => cfg.vcpu_smoothing = Some(fraction(key, value)?),
        "memory.target_free_mib" => cfg.memory_target_free_mib = Some(mib(key, value)?),
        "memory.band_mib" => cfg.memory_band_mib = Some(mib(key, value)?),
        "memory.release_fraction" => cfg.memory_release_fraction = Some(fraction(key, value)?),
        "memory.release_cap_mib" => cfg.memory_release_cap_mib = Some(mib(key, value)?),
        "memory.min_step_mib" => cfg.memory_min_step_mib = Some(mib(key, value)?),
        "memory.min_floor_mib" => cfg.memory_min_floor_mib = Some(mib(key, value)?),
        "memory.host_reserve_mib" => cfg.memory_host_reserve_mib = Some(mib(key, value)?),
        "memory.growth_lookahead_periods" => {
            let n = integer(key, value)?;
            cfg.memory_growth_lookahead_periods =
                Some(u32::try_from(n).map_err(|_| bad(key, value, "too large"))?);
        }
        "interval.vcpu" => cfg.interval_vcpu = Some(interval(key, value)?),
        "interval.memory" => cfg.interval_memory = Some(interval(key, value)?),
        "exclude" => {
            for item in value.split(',') {
                let item = item.trim();
                if item.is_empty() {
                    return Err(bad(key, value, "empty name in the list"));
                }
                cfg.exclude.push(item.to_string());
            }
        }
        _ => match key.strip_prefix("floor.") {
            Some(name) => {
                let name = name.trim();
                if name.is_empty() {
                    return Err(format!("missing domain name in key {key:?}"));
                }
                cfg.floors.insert(name.to_string(), mib(key, value)?);
            }
            None => return Err(format!("unknown key {key:?}")),
        },
    }
    Ok(())
}

fn bad(key: &str, value: &str, why: &str) -> String {
    format!("bad value {value:?} for {key}: {why}")
}

/// A finite number in `[lo, hi]`.
fn number(key: &str, value: &str, lo: f64, hi: f64) -> Result<f64, String> {
    let want = || {
        if hi == f64::MAX {
            format!("expected a number >= {lo}")
        } else {
            format!("expected a number from {lo} to {hi}")
        }
    };
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= lo && v <= hi => Ok(v),
        _ => Err(bad(key, value, &want())),
    }
}

/// A number in `(0, 1]`.
fn fraction(key: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        _ => Err(bad(
            key,
            value,
            "expected a number greater than 0 and at most 1",
        )),
    }
}

/// A non-negative whole number.
fn integer(key: &str, value: &str) -> Result<u64, String> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(key, value, "expected a whole number >= 0"));
    }
    value
        .parse::<u64>()
        .map_err(|_| bad(key, value, "expected a whole number >= 0 (too large)"))
}

/// A non-negative whole number of MiB whose KiB fit in a `u64`.
fn mib(key: &str, value: &str) -> Result<u64, String> {
    let n = integer(key, value)?;
    if n > MAX_MIB {
        return Err(bad(key, value, &format!("at most {MAX_MIB} MiB")));
    }
    Ok(n)
}

/// Seconds in `[MIN_INTERVAL_S, MAX_INTERVAL_S]`.
fn interval(key: &str, value: &str) -> Result<Duration, String> {
    let v = number(key, value, MIN_INTERVAL_S, MAX_INTERVAL_S)
        .map_err(|_| bad(key, value, "expected seconds from 0.05 to 86400"))?;
    Ok(Duration::from_secs_f64(v))
}

/// Whether `name` matches the whole-name glob `pattern` (`*` = any run of
/// characters, `?` = one character, everything else literal, case
/// sensitive). Iterative with single-star backtracking: `O(len(pattern) ×
/// len(name))` time at worst, no recursion.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0usize, 0usize);
    // Position of the last `*` seen and the name position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                // Let the last `*` absorb one more character and retry.
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(text: &str) -> Config {
        match parse(text, "t.conf") {
            Ok(c) => c,
            Err(e) => panic!("unexpected error for {text:?}: {e}"),
        }
    }

    fn err(text: &str) -> String {
        match parse(text, "t.conf") {
            Ok(c) => panic!("expected an error for {text:?}, got {c:?}"),
            Err(e) => e,
        }
    }

    /// Checks `<origin>:<digits>: ` and returns the line number.
    fn error_line(e: &str, origin: &str) -> usize {
        let rest = e
            .strip_prefix(origin)
            .and_then(|r| r.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no origin in {e:?}"));
        let (num, msg) = rest
            .split_once(": ")
            .unwrap_or_else(|| panic!("no line in {e:?}"));
        assert!(!msg.is_empty(), "empty message in {e:?}");
        assert!(!e.contains('\n'), "multi-line error {e:?}");
        num.parse()
            .unwrap_or_else(|_| panic!("bad line number in {e:?}"))
    }

    #[test]
    fn empty_and_comments() {
        assert_eq!(ok(""), Config::default());
        assert_eq!(
            ok("\n\n   \n# hello\n   # indented = 3\n"),
            Config::default()
        );
        assert_eq!(
            ok("\u{feff}# bom\r\nvcpu.threshold = 2\r\n").vcpu_threshold,
            Some(2.0)
        );
    }

    #[test]
    fn every_key() {
        let c = ok("vcpu.threshold = 7.5\n\
                    vcpu.max_moves = 3\n\
                    vcpu.cpus = 0-3, 8\n\
                    vcpu.smoothing = 1\n\
                    memory.target_free_mib = 150\n\
                    memory.band_mib = 0\n\
                    memory.release_fraction = 0.25\n\
                    memory.release_cap_mib = 64\n\
                    memory.min_step_mib = 2\n\
                    memory.min_floor_mib = 256\n\
                    memory.host_reserve_mib = 512\n\
                    memory.growth_lookahead_periods = 0\n\
                    interval.vcpu = 0.5\n\
                    interval.memory = 3\n\
                    exclude = a, b*\n\
                    exclude=c?\n\
                    floor.db01 = 2048\n\
                    floor.web 1 = 1\n");
        assert_eq!(c.vcpu_threshold, Some(7.5));
        assert_eq!(c.vcpu_max_moves, Some(3));
        assert_eq!(c.vcpu_cpus, Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(c.vcpu_smoothing, Some(1.0));
        assert_eq!(c.memory_target_free_mib, Some(150));
        assert_eq!(c.memory_band_mib, Some(0));
        assert_eq!(c.memory_release_fraction, Some(0.25));
        assert_eq!(c.memory_release_cap_mib, Some(64));
        assert_eq!(c.memory_min_step_mib, Some(2));
        assert_eq!(c.memory_min_floor_mib, Some(256));
        assert_eq!(c.memory_host_reserve_mib, Some(512));
        assert_eq!(c.memory_growth_lookahead_periods, Some(0));
        assert_eq!(c.interval_vcpu, Some(Duration::from_millis(500)));
        assert_eq!(c.interval_memory, Some(Duration::from_secs(3)));
        assert_eq!(c.exclude, vec!["a", "b*", "c?"]);
        assert_eq!(c.floors.get("db01"), Some(&2048));
        assert_eq!(c.floors.get("web 1"), Some(&1));
        assert_eq!(c.floors.len(), 2);
    }

    #[test]
    fn trailing_comments_and_spacing() {
        let c = ok("  vcpu.threshold=3   # three points\nexclude = x # , y\n");
        assert_eq!(c.vcpu_threshold, Some(3.0));
        assert_eq!(c.exclude, vec!["x"]);
    }

    #[test]
    fn good_values_table() {
        let table: &[(&str, &str)] = &[
            ("vcpu.threshold", "0"),
            ("vcpu.threshold", "1e2"),
            ("vcpu.max_moves", "1"),
            ("vcpu.cpus", "5"),
            ("vcpu.smoothing", "0.01"),
            ("memory.release_fraction", "1.0"),
            ("memory.min_step_mib", "0"),
            ("memory.host_reserve_mib", &MAX_MIB.to_string()),
            ("interval.vcpu", "0.05"),
            ("interval.memory", "86400"),
            ("floor.x", "0"),
        ];
        for (k, v) in table {
            ok(&format!("{k} = {v}"));
        }
    }

    #[test]
    fn bad_values_table() {
        let too_big = (MAX_MIB + 1).to_string();
        let table: &[(&str, &str)] = &[
            ("vcpu.threshold", "-1"),
            ("vcpu.threshold", "inf"),
            ("vcpu.threshold", "NaN"),
            ("vcpu.threshold", "five"),
            ("vcpu.max_moves", "0"),
            ("vcpu.max_moves", "-2"),
            ("vcpu.max_moves", "1.5"),
            ("vcpu.max_moves", "99999999999999999999999"),
            ("vcpu.cpus", "3-1"),
            ("vcpu.cpus", "a"),
            ("vcpu.cpus", "0,,1"),
            ("vcpu.smoothing", "0"),
            ("vcpu.smoothing", "1.5"),
            ("vcpu.smoothing", "NaN"),
            ("memory.target_free_mib", "1.5"),
            ("memory.band_mib", "-1"),
            ("memory.band_mib", "+1"),
            ("memory.release_cap_mib", "1 MiB"),
            ("memory.min_floor_mib", &too_big),
            ("memory.release_fraction", "0"),
            ("memory.release_fraction", "2"),
            ("memory.growth_lookahead_periods", "4294967296"),
            ("interval.vcpu", "0"),
            ("interval.vcpu", "0.01"),
            ("interval.memory", "86401"),
            ("interval.memory", "-3"),
            ("interval.memory", "inf"),
            ("floor.db", "lots"),
            ("exclude", "a,,b"),
            ("exclude", "a,"),
            ("vcpu.threshold", "\"5\""),
        ];
        for (k, v) in table {
            let e = err(&format!("# header\n{k} = {v}\n"));
            assert_eq!(error_line(&e, "t.conf"), 2, "{e}");
            assert!(e.contains(k), "{e:?} should name key {k}");
            if !v.is_empty() && *k != "vcpu.cpus" {
                assert!(e.contains(&format!("{v:?}")), "{e:?} should name value {v}");
            }
        }
    }

    #[test]
    fn structural_errors() {
        let e = err("vcpu.threshold = 1\n\nnonsense line\n");
        assert_eq!(error_line(&e, "t.conf"), 3);
        assert!(e.contains("expected 'key = value'"), "{e}");

        let e = err("bogus.key = 1\n");
        assert_eq!(e, "t.conf:1: unknown key \"bogus.key\"");

        let e = err("= 4\n");
        assert!(e.starts_with("t.conf:1: missing key"), "{e}");

        let e = err("vcpu.threshold =   # nothing\n");
        assert_eq!(e, "t.conf:1: missing value for vcpu.threshold");

        let e = err("floor. = 3\n");
        assert!(e.starts_with("t.conf:1: missing domain name"), "{e}");

        let e = err("vcpu.threshold = 1\nvcpu.threshold = 2\n");
        assert_eq!(
            e,
            "t.conf:2: duplicate key \"vcpu.threshold\" (first set on line 1)"
        );

        let e = err("floor.a = 1\n# x\nfloor.a = 2\n");
        assert!(e.starts_with("t.conf:3: duplicate key"), "{e}");

        // `exclude` may repeat.
        assert_eq!(ok("exclude = a\nexclude = a\n").exclude, vec!["a", "a"]);
    }

    #[test]
    fn load_reports_path() {
        let dir = std::env::temp_dir().join(format!("kvmsched-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.conf");
        let e = load(&missing).unwrap_err();
        assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");

        let file = dir.join("bad.conf");
        std::fs::write(&file, "vcpu.threshold = 1\nvcpu.nope = 2\n").unwrap();
        let e = load(&file).unwrap_err();
        assert_eq!(
            e,
            format!("{}:2: unknown key \"vcpu.nope\"", file.display())
        );

        std::fs::write(&file, "vcpu.threshold = 9\n").unwrap();
        assert_eq!(load(&file).unwrap().vcpu_threshold, Some(9.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn apply_overrides_only_given_fields() {
        let c = ok("vcpu.threshold = 8\nvcpu.cpus = 2-3\n\
                    memory.target_free_mib = 150\nmemory.release_fraction = 0.75\n\
                    memory.growth_lookahead_periods = 5\nfloor.db = 3\n");
        let mut v = VcpuConfig::default();
        c.apply_vcpu(&mut v);
        assert_eq!(v.threshold, 8.0);
        assert_eq!(v.cpus, Some(vec![2, 3]));
        assert_eq!(v.max_moves, VcpuConfig::default().max_moves);
        assert_eq!(v.validate(), Ok(()));

        let mut m = MemConfig::default();
        m.per_domain_floor.insert("other".into(), 7);
        c.apply_memory(&mut m);
        assert_eq!(m.target_free_kib, 150 * 1024);
        assert_eq!(m.release_fraction, 0.75);
        assert_eq!(m.growth_lookahead_periods, 5);
        assert_eq!(m.band_kib, MemConfig::default().band_kib);
        assert_eq!(m.per_domain_floor.get("db"), Some(&(3 * 1024)));
        assert_eq!(m.per_domain_floor.get("other"), Some(&7));
    }

    #[test]
    fn exclusion() {
        let c = ok("exclude = win-*, db?\nexclude = exact\n");
        assert!(c.is_excluded("win-10"));
        assert!(c.is_excluded("win-"));
        assert!(c.is_excluded("db1"));
        assert!(!c.is_excluded("db12"));
        assert!(c.is_excluded("exact"));
        assert!(!c.is_excluded("Exact"));
        assert!(!c.is_excluded("linux"));
        assert!(!Config::default().is_excluded("anything"));
    }

    #[test]
    fn glob_table() {
        let table = [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("?", "", false),
            ("?", "é", true),
            ("a*b", "ab", true),
            ("a*b", "axxb", true),
            ("a*b", "axxbc", false),
            ("a*b*c", "abxbc", true),
            ("*a", "bbba", true),
            ("*a", "bbab", false),
            ("**", "x", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*x*y*", "..x..y..", true),
            ("*x*y*", "..y..x..", false),
        ];
        for (p, n, want) in table {
            assert_eq!(glob_match(p, n), want, "glob_match({p:?}, {n:?})");
        }
    }

    #[test]
    fn glob_pathological_is_fast() {
        let name = "a".repeat(10_000);
        let pattern = format!("{}b", "a*".repeat(50));
        let t = std::time::Instant::now();
        assert!(!glob_match(&pattern, &name));
        assert!(t.elapsed() < Duration::from_secs(2));
    }

    /// The shipped sample config parses, and its commented-out defaults
    /// (`#key = value` lines) are the real defaults.
    #[test]
    fn contrib_sample_config() {
        let text = include_str!("../contrib/kvmsched.conf");
        assert_eq!(parse(text, "kvmsched.conf"), Ok(Config::default()));

        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic()) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = ok(&uncommented);
        assert!(c.vcpu_threshold.is_some() && c.memory_min_floor_mib.is_some());
        let (mut v, mut m) = (VcpuConfig::default(), MemConfig::default());
        c.apply_vcpu(&mut v);
        c.apply_memory(&mut m);
        assert_eq!(v, VcpuConfig::default());
        assert_eq!(m, MemConfig::default());
        assert_eq!(c.interval_vcpu, Some(Duration::from_secs(2)));
        assert_eq!(c.interval_memory, Some(Duration::from_secs(2)));
    }

    const KEYS: &[&str] = &[
        "vcpu.threshold",
        "vcpu.max_moves",
        "vcpu.cpus",
        "vcpu.smoothing",
        "memory.target_free_mib",
        "memory.band_mib",
        "memory.release_fraction",
        "memory.release_cap_mib",
        "memory.min_step_mib",
        "memory.min_floor_mib",
        "memory.host_reserve_mib",
        "memory.growth_lookahead_periods",
        "interval.vcpu",
        "interval.memory",
        "exclude",
        "floor.x",
        "floor.",
        "nope",
    ];

    fn line_strategy() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            "[ -~\t\r]{0,30}",
            (prop::sample::select(KEYS), "[ -~]{0,12}").prop_map(|(k, v)| format!("{k} = {v}")),
            (prop::sample::select(KEYS), "[0-9.,e+-]{0,8}").prop_map(|(k, v)| format!("{k}={v}")),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            if let Err(e) = parse(&text, "fz") {
                let line = error_line(&e, "fz");
                prop_assert!(line >= 1 && line <= text.lines().count().max(1));
            }
        }

        #[test]
        fn keyish_lines_errors_are_positioned(lines in prop::collection::vec(line_strategy(), 0..8)) {
            let text = lines.join("\n");
            match parse(&text, "fz.conf") {
                Ok(c) => {
                    let mut v = VcpuConfig::default();
                    c.apply_vcpu(&mut v);
                    prop_assert_eq!(v.validate(), Ok(()));
                    let mut m = MemConfig::default();
                    c.apply_memory(&mut m);
                }
                Err(e) => {
                    let line = error_line(&e, "fz.conf");
                    prop_assert!(line >= 1 && line <= text.lines().count().max(1));
                }
            }
        }

        #[test]
        fn literal_name_matches_itself(name in "[^*?]{0,40}") {
            prop_assert!(glob_match(&name, &name));
        }

        #[test]
        fn star_matches_everything(name in any::<String>()) {
            prop_assert!(glob_match("*", &name));
            prop_assert!(glob_match("**", &name));
        }

        #[test]
        fn question_marks_match_by_length(name in any::<String>(), extra in 0usize..3) {
            let len = name.chars().count();
            prop_assert!(glob_match(&"?".repeat(len), &name));
            prop_assert!(!glob_match(&"?".repeat(len + 1 + extra), &name));
        }

        #[test]
        fn prefix_star_matches_extensions(prefix in "[^*?]{0,10}", tail in any::<String>()) {
            let pattern = format!("{prefix}*");
            let name = format!("{prefix}{tail}");
            prop_assert!(glob_match(&pattern, &name));
        }
    }
}
