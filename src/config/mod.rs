//! The configuration file (`--config PATH`), parsed by hand, and the one
//! place settings are resolved: defaults, then the file, then the command
//! line ([`resolve`]).
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
//! Declared once, in [`settings::SETTINGS`]: name, flag, value kind and
//! range, default (from the policies' `Default`) and help. The parser
//! below, the command-line flags, `kvmsched help run` and
//! `contrib/kvmsched.conf` (rendered, and checked by a test) all come from
//! that table, so a new key is one row there plus the field it sets.
//!
//! A flag overrides its key. Excluded domains are never pinned and never
//! ballooned; a glob ([`glob_match`]) matches whole, case-sensitive names,
//! `*` any run of characters (also none), `?` exactly one; there is no
//! escaping and there are no character classes.
//!
//! # Errors
//!
//! Every error is one line, `<origin>:<line>: <what is wrong>`: an unknown
//! key, a bad value (naming the key and the value), a missing `=`, or a
//! duplicate key. [`load`] reports I/O errors as `<path>: <error>`. A value
//! given on the command line is checked by the same code
//! ([`settings::Setting::apply`]), so its error reads the same with the flag
//! in place of the key.

use std::collections::BTreeMap;
use std::path::Path;

mod setting;
pub mod settings;

use settings::{Resolved, Setting};

/// One `key = value` line of a file, already checked.
#[derive(Debug, Clone)]
struct Entry {
    setting: &'static Setting,
    /// The key as written (`floor.db01`).
    key: String,
    /// The domain of a per-domain key.
    domain: Option<String>,
    value: String,
}

/// A parsed config file: the settings it gives, in file order; a setting
/// it does not name keeps its default or the command-line value.
#[derive(Debug, Clone, Default)]
pub struct Config {
    entries: Vec<Entry>,
}

impl Config {
    /// Whether the file sets nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value text of the last line setting `key` (as written).
    pub fn value(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.value.as_str())
    }

    /// Sets every value of the file in `r`, in file order.
    pub fn apply(&self, r: &mut Resolved) -> Result<(), String> {
        for e in &self.entries {
            e.setting.apply(r, &e.key, e.domain.as_deref(), &e.value)?;
        }
        Ok(())
    }
}

/// A setting given on the command line: the flag (or argument) that gave
/// it, and its value as typed.
#[derive(Debug, Clone)]
pub struct Given {
    /// The setting.
    pub setting: &'static Setting,
    /// The flag, or a name for a positional argument (`the interval`).
    pub what: &'static str,
    /// The value as given.
    pub value: String,
}

impl PartialEq for Given {
    fn eq(&self, other: &Self) -> bool {
        self.setting.key == other.setting.key
            && self.what == other.what
            && self.value == other.value
    }
}

impl Given {
    /// Checks the value (the same check and wording as in a file) and
    /// keeps it.
    pub fn new(setting: &'static Setting, what: &'static str, value: &str) -> Result<Self, String> {
        setting.apply(&mut Resolved::default(), what, None, value)?;
        Ok(Given {
            setting,
            what,
            value: value.to_string(),
        })
    }
}

/// The settings of a run: the defaults ([`Resolved::default`]), then the
/// file's values, then the command line's (later flags win). This is the
/// only place the precedence flag > file > default is decided.
pub fn resolve(file: Option<&Config>, given: &[Given]) -> Result<Resolved, String> {
    let mut r = Resolved::default();
    if let Some(f) = file {
        f.apply(&mut r)?;
    }
    for g in given {
        g.setting.apply(&mut r, g.what, None, &g.value)?;
    }
    r.vcpu
        .validate()
        .map_err(|e| format!("vCPU configuration: {e}"))?;
    Ok(r)
}

/// Reads and parses the file at `path`; errors name the path (and line).
pub fn load(path: &Path) -> Result<Config, String> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{origin}: {e}"))?;
    parse(&text, &origin)
}

/// Parses config text; `origin` (usually the path) starts every error.
/// Every value is checked here, so [`Config::apply`] cannot fail on it.
pub fn parse(text: &str, origin: &str) -> Result<Config, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut cfg = Config::default();
    let mut check = Resolved::default();
    // Line where each key (other than repeatable ones) was first set.
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
        let Some((setting, domain)) = settings::by_key(key) else {
            return Err(at(format!("unknown key {key:?}")));
        };
        if !setting.repeatable() {
            if let Some(first) = seen.get(key) {
                return Err(at(format!(
                    "duplicate key {key:?} (first set on line {first})"
                )));
            }
        }
        if value.is_empty() {
            return Err(at(format!("missing value for {key}")));
        }
        if value.starts_with(['"', '\'']) {
            return Err(at(format!(
                "bad value {value:?} for {key}: values are written without quotes"
            )));
        }
        setting.apply(&mut check, key, domain, value).map_err(at)?;
        if !setting.repeatable() {
            seen.insert(key.to_string(), line_no);
        }
        cfg.entries.push(Entry {
            setting,
            key: key.to_string(),
            domain: domain.map(|d| d.trim().to_string()),
            value: value.to_string(),
        });
    }
    Ok(cfg)
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
    use super::settings::{sample_config, MAX_MIB, SETTINGS};
    use super::*;
    use crate::policy::memory::MemConfig;
    use crate::policy::vcpu::VcpuConfig;
    use proptest::prelude::*;
    use std::time::Duration;

    /// The settings `text` gives over the defaults.
    fn res(text: &str) -> Resolved {
        match resolve(Some(&ok(text)), &[]) {
            Ok(r) => r,
            Err(e) => panic!("unexpected error for {text:?}: {e}"),
        }
    }

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
        assert!(ok("").is_empty());
        assert!(ok("\n\n   \n# hello\n   # indented = 3\n").is_empty());
        assert_eq!(
            res("\u{feff}# bom\r\nvcpu.threshold = 2\r\n")
                .vcpu
                .threshold,
            2.0
        );
    }

    #[test]
    fn every_key() {
        let r = res("vcpu.threshold = 7.5\n\
                    vcpu.max_moves = 3\n\
                    vcpu.confirm_intervals = 4\n\
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
        assert_eq!(r.vcpu.threshold, 7.5);
        assert_eq!(r.vcpu.max_moves, 3);
        assert_eq!(r.vcpu.confirm, 4);
        assert_eq!(r.vcpu.cpus, Some(vec![0, 1, 2, 3, 8]));
        assert_eq!(r.vcpu.smoothing, 1.0);
        assert_eq!(r.memory.target_free_kib, 150 * 1024);
        assert_eq!(r.memory.band_kib, 0);
        assert_eq!(r.memory.release_fraction, 0.25);
        assert_eq!(r.memory.release_cap_kib, 64 * 1024);
        assert_eq!(r.memory.min_step_kib, 2 * 1024);
        assert_eq!(r.memory.min_floor_kib, 256 * 1024);
        assert_eq!(r.memory.host_reserve_kib, 512 * 1024);
        assert_eq!(r.memory.growth_lookahead_periods, 0);
        assert_eq!(r.vcpu_interval, Duration::from_millis(500));
        assert_eq!(r.memory_interval, Duration::from_secs(3));
        assert_eq!(r.exclude, vec!["a", "b*", "c?"]);
        assert_eq!(r.memory.per_domain_floor.get("db01"), Some(&(2048 * 1024)));
        assert_eq!(r.memory.per_domain_floor.get("web 1"), Some(&1024));
        assert_eq!(r.memory.per_domain_floor.len(), 2);
    }

    #[test]
    fn trailing_comments_and_spacing() {
        let r = res("  vcpu.threshold=3   # three points\nexclude = x # , y\n");
        assert_eq!(r.vcpu.threshold, 3.0);
        assert_eq!(r.exclude, vec!["x"]);
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
        assert_eq!(res("exclude = a\nexclude = a\n").exclude, vec!["a", "a"]);
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
        assert_eq!(load(&file).unwrap().value("vcpu.threshold"), Some("9"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn apply_overrides_only_given_fields() {
        let r = res("vcpu.threshold = 8\nvcpu.cpus = 2-3\n\
                    memory.target_free_mib = 150\nmemory.release_fraction = 0.75\n\
                    memory.growth_lookahead_periods = 5\nfloor.db = 3\n");
        assert_eq!(r.vcpu.threshold, 8.0);
        assert_eq!(r.vcpu.cpus, Some(vec![2, 3]));
        assert_eq!(r.vcpu.max_moves, VcpuConfig::default().max_moves);
        assert_eq!(r.memory.target_free_kib, 150 * 1024);
        assert_eq!(r.memory.release_fraction, 0.75);
        assert_eq!(r.memory.growth_lookahead_periods, 5);
        assert_eq!(r.memory.band_kib, MemConfig::default().band_kib);
        assert_eq!(r.memory.per_domain_floor.get("db"), Some(&(3 * 1024)));
        assert_eq!(r.memory_interval, settings::DEFAULT_INTERVAL);
    }

    #[test]
    fn flags_override_the_file_and_later_flags_win() {
        let file = ok("vcpu.threshold = 8\ninterval.vcpu = 3\nmemory.host_reserve_mib = 1\n");
        let flag =
            |s: &'static Setting, v: &str| Given::new(s, s.flag.unwrap_or(s.key), v).unwrap();
        let thr = settings::by_flag("--threshold").unwrap();
        let given = [
            flag(thr, "1"),
            flag(thr, "2"),
            flag(&settings::VCPU_INTERVAL, "0.5"),
        ];
        let r = resolve(Some(&file), &given).unwrap();
        assert_eq!(r.vcpu.threshold, 2.0);
        assert_eq!(r.vcpu_interval, Duration::from_millis(500));
        assert_eq!(r.memory.host_reserve_kib, 1024);
        assert_eq!(r.memory_interval, settings::DEFAULT_INTERVAL);
        assert_eq!(resolve(None, &[]).unwrap(), Resolved::default());
    }

    #[test]
    fn flag_errors_read_like_file_errors() {
        let reserve = settings::by_flag("--host-reserve").unwrap();
        let too_big = (MAX_MIB + 1).to_string();
        let e = Given::new(reserve, "--host-reserve", &too_big).unwrap_err();
        assert_eq!(
            e,
            format!("bad value \"{too_big}\" for --host-reserve: at most {MAX_MIB} MiB")
        );
        let f = err(&format!("memory.host_reserve_mib = {too_big}"));
        assert_eq!(
            f,
            format!(
                "t.conf:1: {}",
                e.replace("--host-reserve", "memory.host_reserve_mib")
            )
        );
    }

    #[test]
    fn exclusion() {
        let r = res("exclude = win-*, db?\nexclude = exact\n");
        let excluded = |n: &str| r.exclude.iter().any(|p| glob_match(p, n));
        assert!(excluded("win-10"));
        assert!(excluded("win-"));
        assert!(excluded("db1"));
        assert!(!excluded("db12"));
        assert!(excluded("exact"));
        assert!(!excluded("Exact"));
        assert!(!excluded("linux"));
        assert!(Resolved::default().exclude.is_empty());
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

    /// The shipped sample config is the table's rendering
    /// (`UPDATE_SAMPLE_CONFIG=1` rewrites it), it parses to nothing, and its
    /// commented-out defaults (`#key = value` lines) are the real defaults.
    #[test]
    fn contrib_sample_config() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/kvmsched.conf");
        let want = sample_config();
        if std::env::var_os("UPDATE_SAMPLE_CONFIG").is_some() {
            std::fs::write(path, &want).unwrap();
        }
        let text = std::fs::read_to_string(path).unwrap();
        assert!(
            text == want,
            "contrib/kvmsched.conf differs from the settings table; run \
             UPDATE_SAMPLE_CONFIG=1 cargo test --lib config::tests::contrib_sample_config"
        );
        assert!(ok(&text).is_empty());

        let uncommented: String = text
            .lines()
            .map(|l| match l.strip_prefix('#') {
                Some(rest) if rest.starts_with(|c: char| c.is_ascii_alphabetic()) => rest,
                _ => l,
            })
            .map(|l| format!("{l}\n"))
            .collect();
        let c = ok(&uncommented);
        let literal = SETTINGS
            .iter()
            .filter(|s| s.default_value().is_some())
            .count();
        assert!(literal >= 14, "{literal}");
        assert_eq!(c.entries.len(), literal);
        assert_eq!(resolve(Some(&c), &[]).unwrap(), Resolved::default());
    }

    #[test]
    fn a_bounded_number_names_its_range() {
        let s = Setting {
            key: "vcpu.example",
            flag: Some("--example"),
            section: settings::Section::Vcpu,
            kind: settings::Kind::Number {
                min: 0.0,
                max: 100.0,
                field: |r| &mut r.vcpu.threshold,
            },
            help: "an example",
            note: "",
            example: "",
        };
        let mut r = Resolved::default();
        assert_eq!(s.apply(&mut r, s.key, None, "100"), Ok(()));
        assert_eq!(r.vcpu.threshold, 100.0);
        assert_eq!(
            s.apply(&mut r, "--example", None, "100.5"),
            Err("bad value \"100.5\" for --example: expected a number from 0 to 100".into())
        );
        assert_eq!(s.range(), "a number from 0 to 100");
    }

    /// Every setting's shown value and example parse and apply, and the
    /// literal default is what applying it gives.
    #[test]
    fn every_setting_renders_a_value_it_accepts() {
        for s in SETTINGS {
            let text = match s.default_value() {
                Some(d) => d,
                None => s.example.to_string(),
            };
            assert!(
                !text.is_empty(),
                "{} has neither a default nor an example",
                s.key
            );
            let key = s.key.replace("<domain>", "db01");
            let r = res(&format!("{key} = {text}"));
            if s.default_value().is_some() {
                assert_eq!(r, Resolved::default(), "{}", s.key);
            }
            assert!(
                !s.help.ends_with('.') && !s.help.contains('\n'),
                "{}",
                s.key
            );
        }
        let keys: Vec<_> = SETTINGS.iter().map(|s| s.key).collect();
        let mut distinct = keys.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(keys.len(), distinct.len(), "duplicate key in {keys:?}");
        assert!(SETTINGS
            .iter()
            .any(|s| s.key == settings::VCPU_INTERVAL.key));
        assert!(SETTINGS
            .iter()
            .any(|s| s.key == settings::MEMORY_INTERVAL.key));
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
        "vcpu.confirm_intervals",
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
                    let r = resolve(Some(&c), &[]);
                    prop_assert!(r.is_ok(), "{:?}", r);
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
