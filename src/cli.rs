//! Hand-written command-line parsing: `kvmsched [global flags] <command> [args]`.
//!
//! Global flags may stand before or after the command. Every error is one
//! line naming the offending argument; nothing here panics on any input.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Default URI when neither `-c` nor `LIBVIRT_DEFAULT_URI` is given.
pub const DEFAULT_URI: &str = "qemu:///system";

/// Longest accepted interval or window (one day).
const MAX_SECONDS: f64 = 86_400.0;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per interval.
    Human,
    /// One JSON object per decision.
    Json,
}

/// Flags valid with every command.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// `-c/--connect URI`, or `None` to use the environment/default.
    pub connect: Option<String>,
    /// `--trace`: one stderr line per libvirt call.
    pub trace: bool,
    /// `-v/--verbose`: show each plan's reasoning.
    pub verbose: bool,
    /// `--dry-run`: read-only connection, print what would be done.
    pub dry_run: bool,
    /// `--config PATH`.
    pub config: Option<PathBuf>,
    /// `--log-format human|json`.
    pub log_format: LogFormat,
    /// `--metrics ADDR`: serve Prometheus text there.
    pub metrics: Option<String>,
}

impl Default for Global {
    fn default() -> Self {
        Global {
            connect: None,
            trace: false,
            verbose: false,
            dry_run: false,
            config: None,
            log_format: LogFormat::Human,
            metrics: None,
        }
    }
}

/// Options of the vCPU scheduler given on the command line (they override
/// the config file).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VcpuArgs {
    /// `--cpus LIST`: pCPUs to use.
    pub cpus: Option<String>,
    /// `--threshold POINTS`: std-dev that counts as balanced.
    pub threshold: Option<f64>,
}

/// Options of the memory coordinator given on the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MemoryArgs {
    /// `--target-free MIB`.
    pub target_free_mib: Option<u64>,
    /// `--host-reserve MIB`.
    pub host_reserve_mib: Option<u64>,
    /// `--min-floor MIB`.
    pub min_floor_mib: Option<u64>,
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `status [--window S]`.
    Status {
        /// Sampling window for CPU usage.
        window: Duration,
    },
    /// `vcpu <interval>`.
    Vcpu {
        /// Interval between plans.
        interval: Duration,
        /// Scheduler options.
        args: VcpuArgs,
        /// Stop after this many intervals (tests, demos).
        iterations: Option<u64>,
    },
    /// `memory <interval>`.
    Memory {
        /// Interval between plans.
        interval: Duration,
        /// Coordinator options.
        args: MemoryArgs,
        /// Stop after this many intervals.
        iterations: Option<u64>,
    },
    /// `run`: both loops.
    Run {
        /// vCPU interval (`--vcpu-interval`), default 2 s.
        vcpu_interval: Duration,
        /// Memory interval (`--memory-interval`), default 2 s.
        memory_interval: Duration,
        /// Scheduler options.
        vcpu: VcpuArgs,
        /// Coordinator options.
        memory: MemoryArgs,
        /// Stop after this many vCPU intervals.
        iterations: Option<u64>,
    },
    /// `help [command]` or `--help`.
    Help(Option<String>),
    /// `--version`.
    Version,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Cli {
    /// Global flags.
    pub global: Global,
    /// The command.
    pub command: Command,
}

/// A command-line error: one line, shown as `kvmsched: <message>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliError(pub String);

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, CliError> {
    Err(CliError(msg.into()))
}

/// Parses a duration in seconds: a positive decimal number ("2", "0.5").
pub fn parse_seconds(what: &str, s: &str) -> Result<Duration, CliError> {
    let v: f64 = match s.trim().parse() {
        Ok(v) => v,
        Err(_) => return err(format!("{what} must be a number of seconds, got '{s}'")),
    };
    if !v.is_finite() || v <= 0.0 {
        return err(format!("{what} must be greater than 0 seconds, got '{s}'"));
    }
    if v > MAX_SECONDS {
        return err(format!(
            "{what} must be at most {MAX_SECONDS} seconds, got '{s}'"
        ));
    }
    if v < 0.05 {
        return err(format!("{what} must be at least 0.05 seconds, got '{s}'"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_u64(what: &str, s: &str) -> Result<u64, CliError> {
    s.trim()
        .parse::<u64>()
        .or_else(|_| err(format!("{what} must be a whole number, got '{s}'")))
}

fn parse_f64(what: &str, s: &str) -> Result<f64, CliError> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => err(format!("{what} must be a non-negative number, got '{s}'")),
    }
}

/// The arguments as UTF-8 strings; the error names the first that is not
/// (counting from 1 after the program name), shown lossily and escaped.
pub fn utf8_args(args: impl IntoIterator<Item = OsString>) -> Result<Vec<String>, CliError> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.into_string().or_else(|bad| {
                err(format!(
                    "argument {} is not valid UTF-8: '{}'",
                    i + 1,
                    bad.to_string_lossy()
                ))
            })
        })
        .collect()
}

/// Splits `--flag=value` or takes the next argument as the value.
fn value<'a>(
    flag: &str,
    inline: Option<&'a str>,
    rest: &mut impl Iterator<Item = &'a String>,
) -> Result<&'a str, CliError> {
    if let Some(v) = inline {
        return Ok(v);
    }
    match rest.next() {
        Some(v) => Ok(v.as_str()),
        None => err(format!("{flag} needs a value")),
    }
}

/// Parses `args` (without the program name).
pub fn parse(args: &[String]) -> Result<Cli, CliError> {
    let mut global = Global::default();
    let mut positional: Vec<&str> = Vec::new();
    let mut opts: Vec<(String, String)> = Vec::new();
    let mut help = false;
    let mut version = false;
    let mut it = args.iter();
    let mut only_positional = false;
    while let Some(arg) = it.next() {
        if only_positional || !arg.starts_with('-') || arg == "-" || is_negative_number(arg) {
            positional.push(arg.as_str());
            continue;
        }
        if arg == "--" {
            only_positional = true;
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg.as_str(), None),
        };
        match flag {
            "-h" | "--help" => help = true,
            "-V" | "--version" => version = true,
            "-c" | "--connect" => global.connect = Some(value(flag, inline, &mut it)?.to_string()),
            "--trace" => global.trace = true,
            "-v" | "--verbose" => global.verbose = true,
            "--dry-run" => global.dry_run = true,
            "--config" => global.config = Some(PathBuf::from(value(flag, inline, &mut it)?)),
            "--log-format" => {
                global.log_format = match value(flag, inline, &mut it)? {
                    "human" => LogFormat::Human,
                    "json" => LogFormat::Json,
                    other => {
                        return err(format!(
                            "--log-format must be 'human' or 'json', got '{other}'"
                        ))
                    }
                }
            }
            "--metrics" => global.metrics = Some(value(flag, inline, &mut it)?.to_string()),
            "--window" | "--cpus" | "--threshold" | "--target-free" | "--host-reserve"
            | "--min-floor" | "--vcpu-interval" | "--memory-interval" | "--iterations" => {
                let v = value(flag, inline, &mut it)?;
                opts.push((flag.to_string(), v.to_string()));
            }
            other => return err(format!("unknown option '{other}' (see kvmsched --help)")),
        }
    }
    if let Some(c) = &global.connect {
        if c.is_empty() {
            return err("--connect needs a non-empty URI");
        }
    }
    if version {
        return Ok(Cli {
            global,
            command: Command::Version,
        });
    }
    let Some((&name, rest)) = positional.split_first() else {
        if help {
            return Ok(Cli {
                global,
                command: Command::Help(None),
            });
        }
        return err("missing command: one of status, vcpu, memory, run (see kvmsched --help)");
    };
    if help || name == "help" {
        let topic = if name == "help" {
            rest.first().map(|s| s.to_string())
        } else {
            Some(name.to_string())
        };
        if let Some(t) = &topic {
            if !COMMANDS.contains(&t.as_str()) {
                return err(format!("unknown command '{t}' (see kvmsched --help)"));
            }
        }
        return Ok(Cli {
            global,
            command: Command::Help(topic),
        });
    }
    let command = build_command(name, rest, &opts)?;
    Ok(Cli { global, command })
}

/// The commands `kvmsched` knows.
pub const COMMANDS: &[&str] = &["status", "vcpu", "memory", "run"];

fn is_negative_number(s: &str) -> bool {
    s.len() > 1 && s.starts_with('-') && s[1..].chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn allowed(cmd: &str, opts: &[(String, String)], ok: &[&str]) -> Result<(), CliError> {
    for (flag, _) in opts {
        if !ok.contains(&flag.as_str()) {
            return err(format!("option '{flag}' does not apply to '{cmd}'"));
        }
    }
    Ok(())
}

fn opt<'a>(opts: &'a [(String, String)], flag: &str) -> Option<&'a str> {
    opts.iter()
        .rev()
        .find(|(f, _)| f == flag)
        .map(|(_, v)| v.as_str())
}

fn vcpu_args(opts: &[(String, String)]) -> Result<VcpuArgs, CliError> {
    Ok(VcpuArgs {
        cpus: opt(opts, "--cpus").map(str::to_string),
        threshold: opt(opts, "--threshold")
            .map(|v| parse_f64("--threshold", v))
            .transpose()?,
    })
}

fn memory_args(opts: &[(String, String)]) -> Result<MemoryArgs, CliError> {
    Ok(MemoryArgs {
        target_free_mib: opt(opts, "--target-free")
            .map(|v| parse_u64("--target-free", v))
            .transpose()?,
        host_reserve_mib: opt(opts, "--host-reserve")
            .map(|v| parse_u64("--host-reserve", v))
            .transpose()?,
        min_floor_mib: opt(opts, "--min-floor")
            .map(|v| parse_u64("--min-floor", v))
            .transpose()?,
    })
}

fn iterations(opts: &[(String, String)]) -> Result<Option<u64>, CliError> {
    match opt(opts, "--iterations") {
        None => Ok(None),
        Some(v) => match parse_u64("--iterations", v)? {
            0 => err("--iterations must be at least 1"),
            n => Ok(Some(n)),
        },
    }
}

fn one_interval(cmd: &str, rest: &[&str]) -> Result<Duration, CliError> {
    match rest {
        [] => err(format!(
            "'{cmd}' needs an interval in seconds, e.g. kvmsched {cmd} 2"
        )),
        [i] => parse_seconds("interval", i),
        [_, extra, ..] => err(format!("unexpected argument '{extra}' after the interval")),
    }
}

fn build_command(
    name: &str,
    rest: &[&str],
    opts: &[(String, String)],
) -> Result<Command, CliError> {
    const VCPU_OPTS: &[&str] = &["--cpus", "--threshold", "--iterations"];
    const MEM_OPTS: &[&str] = &[
        "--target-free",
        "--host-reserve",
        "--min-floor",
        "--iterations",
    ];
    match name {
        "status" => {
            allowed(name, opts, &["--window"])?;
            if let Some(extra) = rest.first() {
                return err(format!("unexpected argument '{extra}' for 'status'"));
            }
            let window = match opt(opts, "--window") {
                Some(v) => parse_seconds("--window", v)?,
                None => Duration::from_secs(1),
            };
            Ok(Command::Status { window })
        }
        "vcpu" => {
            allowed(name, opts, VCPU_OPTS)?;
            Ok(Command::Vcpu {
                interval: one_interval(name, rest)?,
                args: vcpu_args(opts)?,
                iterations: iterations(opts)?,
            })
        }
        "memory" => {
            allowed(name, opts, MEM_OPTS)?;
            Ok(Command::Memory {
                interval: one_interval(name, rest)?,
                args: memory_args(opts)?,
                iterations: iterations(opts)?,
            })
        }
        "run" => {
            let mut ok: Vec<&str> = vec!["--vcpu-interval", "--memory-interval"];
            ok.extend_from_slice(VCPU_OPTS);
            ok.extend_from_slice(MEM_OPTS);
            allowed(name, opts, &ok)?;
            if let Some(extra) = rest.first() {
                return err(format!("unexpected argument '{extra}' for 'run' (use --vcpu-interval/--memory-interval)"));
            }
            let secs = |flag: &str| -> Result<Duration, CliError> {
                match opt(opts, flag) {
                    Some(v) => parse_seconds(flag, v),
                    None => Ok(Duration::from_secs(2)),
                }
            };
            Ok(Command::Run {
                vcpu_interval: secs("--vcpu-interval")?,
                memory_interval: secs("--memory-interval")?,
                vcpu: vcpu_args(opts)?,
                memory: memory_args(opts)?,
                iterations: iterations(opts)?,
            })
        }
        other => err(format!(
            "unknown command '{other}': expected one of status, vcpu, memory, run"
        )),
    }
}

/// The URI to connect to: `-c`, else `LIBVIRT_DEFAULT_URI`, else
/// [`DEFAULT_URI`], like virsh.
pub fn resolve_uri(connect: Option<&str>, env: Option<&str>) -> String {
    match (connect, env) {
        (Some(c), _) => c.to_string(),
        (None, Some(e)) if !e.is_empty() => e.to_string(),
        _ => DEFAULT_URI.to_string(),
    }
}

/// `kvmsched --help`.
pub const USAGE: &str = "\
kvmsched: host-side vCPU scheduler and memory coordinator for KVM guests (libvirt)

Usage: kvmsched [OPTIONS] <COMMAND> [ARGS]

Commands:
  status [--window S]      one table: domains, vCPUs (pCPU, affinity, usage),
                           memory (actual/unused/available/max) and the host
  vcpu <interval-s>        pin vCPUs so pCPU loads are balanced (std-dev <= threshold)
  memory <interval-s>      balloon guests toward a free-memory target
  run                      both loops over one connection
  help [COMMAND]           help for one command

Options:
  -c, --connect URI        libvirt URI (default: $LIBVIRT_DEFAULT_URI, then qemu:///system)
      --trace              print every libvirt call (args, result, microseconds) to stderr
  -v, --verbose            print each plan's reasoning
      --dry-run            open read-only and print what would be done; change nothing
      --config PATH        config file (see kvmsched help run)
      --log-format FMT     human (default) or json (one object per decision)
      --metrics ADDR       serve Prometheus text at ADDR (e.g. 127.0.0.1:9477)
  -h, --help               this help
  -V, --version            version

Exit status: 0 on success or a clean stop (SIGINT/SIGTERM), 1 on a runtime
error (e.g. libvirt unreachable), 2 on bad usage.
";

/// Help for one command.
pub fn command_help(cmd: &str) -> &'static str {
    match cmd {
        "status" => {
            "\
Usage: kvmsched status [--window S]

Samples twice, S seconds apart (default 1), and prints per domain and vCPU the
pCPU it runs on, its affinity, CPU usage over the window (percent of one pCPU),
memory actual/unused/available/max (MiB), and per host pCPU its busy percent
and the load of the vCPUs pinned there. Host free memory is free + buffers +
cached from virNodeGetMemoryStats (/proc/meminfo on Linux). Opens read-only.
"
        }
        "vcpu" => {
            "\
Usage: kvmsched vcpu <interval-s> [--cpus LIST] [--threshold POINTS] [--iterations N]

Every interval: per-vCPU usage from CPU-time deltas, pCPU load = sum of the
vCPUs pinned there. Every vCPU is hard-pinned to one pCPU; when the std-dev of
pCPU loads exceeds the threshold (default 5 points) the fewest moves/swaps that
bring it within are made; once balanced, nothing is re-pinned.
  --cpus LIST        pCPUs to use, e.g. 0-3,8 (default: all online)
  --threshold P      balanced when std-dev <= P percentage points (default 5)
  --iterations N     stop after N intervals
"
        }
        "memory" => {
            "\
Usage: kvmsched memory <interval-s> [--target-free MIB] [--host-reserve MIB]
                       [--min-floor MIB] [--iterations N]

Every interval, for all running domains with fresh balloon stats: free =
unused. Guests with more than the target free give memory back gradually;
guests short of it get memory until they have the target free (plus their
recent growth). Never below the guest floor (max(min-floor, used + target)),
never above the domain's max, never taking the host below its reserve.
Host free memory = free + buffers + cached from virNodeGetMemoryStats.
  --target-free MIB    free memory per guest to aim for (default 100)
  --host-reserve MIB   host memory never granted away (default 200)
  --min-floor MIB      never shrink a guest below this (default 200)
  --iterations N       stop after N intervals
"
        }
        "run" => {
            "\
Usage: kvmsched run [--vcpu-interval S] [--memory-interval S] [vcpu and memory options]

Runs the vCPU scheduler and the memory coordinator in one process over one
connection (defaults: 2 s each). With --dry-run it connects read-only and only
prints. SIGINT/SIGTERM stop it cleanly; SIGHUP reloads --config (a bad file
keeps the last good settings and says why). If libvirtd goes away, it keeps
running and reconnects with backoff (0.5 s doubling, at most the shortest
interval or 8 s); the interval in progress is abandoned, never half applied.

Config file (--config PATH): one `key = value` per line, `#` comments; unknown
keys and bad values are errors reported as FILE:LINE. Flags override it.
  vcpu.threshold = 5              std-dev points counted as balanced
  vcpu.max_moves = 64             most pin changes per interval
  vcpu.confirm_intervals = 2      intervals a small imbalance must last before pins change
  vcpu.cpus = 0-3,8               pCPUs to use (default: all online)
  vcpu.smoothing = 0.5            EWMA weight of the newest usage sample
  memory.target_free_mib = 100    free memory per guest
  memory.band_mib = 32            dead band above the target
  memory.release_fraction = 0.5   share of the excess released per period
  memory.release_cap_mib = 128    largest release per guest per period
  memory.min_step_mib = 4         smallest change issued
  memory.min_floor_mib = 200      lowest balloon size a shrink may set
  memory.host_reserve_mib = 200   host memory never granted away
  memory.growth_lookahead_periods = 3   consumption granted ahead
  interval.vcpu = 2               seconds
  interval.memory = 2             seconds
  exclude = web-*, db01           never pinned, never ballooned (globs; repeatable)
  floor.<domain> = 4096           per-domain floor (MiB)
See contrib/kvmsched.conf and contrib/kvmsched.service.
"
        }
        _ => USAGE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> Result<Cli, CliError> {
        let v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        parse(&v)
    }

    #[test]
    fn parses_commands_and_global_flags_anywhere() {
        let c = p("-c test:///default --trace status --window 0.5").expect("ok");
        assert_eq!(c.global.connect.as_deref(), Some("test:///default"));
        assert!(c.global.trace);
        assert_eq!(
            c.command,
            Command::Status {
                window: Duration::from_millis(500)
            }
        );
        let c = p("vcpu 12 --connect=qemu:///system -v --cpus 0-3").expect("ok");
        assert_eq!(c.global.connect.as_deref(), Some("qemu:///system"));
        assert!(c.global.verbose);
        match c.command {
            Command::Vcpu {
                interval,
                args,
                iterations,
            } => {
                assert_eq!(interval, Duration::from_secs(12));
                assert_eq!(args.cpus.as_deref(), Some("0-3"));
                assert_eq!(iterations, None);
            }
            other => panic!("{other:?}"),
        }
        let c = p("run --vcpu-interval 1 --memory-interval 3 --dry-run").expect("ok");
        assert!(c.global.dry_run);
        match c.command {
            Command::Run {
                vcpu_interval,
                memory_interval,
                ..
            } => {
                assert_eq!(vcpu_interval, Duration::from_secs(1));
                assert_eq!(memory_interval, Duration::from_secs(3));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_intervals_are_clear_errors() {
        for (args, needle) in [
            ("vcpu", "needs an interval"),
            ("vcpu 0", "greater than 0"),
            ("vcpu -3", "greater than 0"),
            ("vcpu abc", "number of seconds"),
            ("vcpu nan", "greater than 0"),
            ("vcpu inf", "greater than 0"),
            ("memory 1e9", "at most"),
            ("memory 2 3", "unexpected argument '3'"),
            ("status --window 0", "greater than 0"),
            ("memory 2 --iterations 0", "at least 1"),
        ] {
            let e = p(args).expect_err(args);
            assert!(e.0.contains(needle), "{args}: {e}");
            assert!(!e.0.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn unknown_things_are_named() {
        assert!(p("frobnicate").expect_err("x").0.contains("'frobnicate'"));
        assert!(p("status --bogus").expect_err("x").0.contains("'--bogus'"));
        assert!(p("status --cpus 0")
            .expect_err("x")
            .0
            .contains("does not apply to 'status'"));
        assert!(p("").expect_err("x").0.contains("missing command"));
        assert!(p("-c").expect_err("x").0.contains("-c needs a value"));
        assert!(p("--log-format xml status")
            .expect_err("x")
            .0
            .contains("'xml'"));
        assert!(p("help nope").expect_err("x").0.contains("'nope'"));
    }

    #[test]
    fn help_and_version() {
        assert_eq!(p("--help").expect("ok").command, Command::Help(None));
        assert_eq!(
            p("vcpu --help").expect("ok").command,
            Command::Help(Some("vcpu".into()))
        );
        assert_eq!(
            p("help memory").expect("ok").command,
            Command::Help(Some("memory".into()))
        );
        assert_eq!(p("-V").expect("ok").command, Command::Version);
        for c in COMMANDS {
            assert!(command_help(c).contains(&format!("kvmsched {c}")), "{c}");
        }
    }

    #[test]
    fn run_help_documents_every_config_key() {
        let sample = include_str!("../contrib/kvmsched.conf");
        let help = command_help("run");
        let mut keys = 0;
        for line in sample.lines() {
            // Settings are commented out as `#key = default` (no space).
            let Some(l) = line.strip_prefix('#') else {
                continue;
            };
            let Some((key, _)) = l.split_once(" = ") else {
                continue;
            };
            if !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_')
            {
                continue;
            }
            keys += 1;
            assert!(
                help.contains(&format!("{key} = ")),
                "help run does not document {key}"
            );
        }
        assert!(keys >= 13, "only {keys} keys found in the sample config");
        assert!(help.contains("exclude") && help.contains("floor.<domain>"));
    }

    #[test]
    fn non_utf8_arguments_are_named() {
        use std::os::unix::ffi::OsStringExt;
        let args = vec![
            OsString::from("status"),
            OsString::from_vec(b"--window=\xff".to_vec()),
        ];
        let e = utf8_args(args).expect_err("invalid UTF-8");
        assert_eq!(e.0, "argument 2 is not valid UTF-8: '--window=\u{fffd}'");
        let ok = utf8_args([OsString::from("run")]).expect("valid");
        assert_eq!(ok, vec!["run".to_string()]);
    }

    #[test]
    fn uri_resolution_follows_virsh() {
        assert_eq!(
            resolve_uri(Some("test:///default"), Some("qemu:///session")),
            "test:///default"
        );
        assert_eq!(
            resolve_uri(None, Some("qemu:///session")),
            "qemu:///session"
        );
        assert_eq!(resolve_uri(None, Some("")), DEFAULT_URI);
        assert_eq!(resolve_uri(None, None), DEFAULT_URI);
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_args(args in proptest::collection::vec(".{0,12}", 0..6)) {
            let _ = parse(&args);
        }

        #[test]
        fn never_panics_on_flag_soup(args in proptest::collection::vec(
            prop_oneof![
                Just("status".to_string()), Just("vcpu".to_string()), Just("memory".to_string()),
                Just("run".to_string()), Just("--window".to_string()), Just("--cpus".to_string()),
                Just("-c".to_string()), Just("--iterations".to_string()), Just("--threshold".to_string()),
                "-?[0-9]{0,4}(\\.[0-9]{0,3})?", Just("--".to_string()), Just("help".to_string()),
            ], 0..8)) {
            match parse(&args) {
                Ok(_) => {}
                Err(e) => prop_assert!(!e.0.is_empty() && !e.0.contains('\n')),
            }
        }

        #[test]
        fn accepted_intervals_are_positive(s in "-?[0-9]{0,6}(\\.[0-9]{0,4})?") {
            if let Ok(d) = parse_seconds("interval", &s) {
                prop_assert!(d > Duration::ZERO);
            }
        }
    }
}
