//! Hand-written command-line parsing: `kvmsched [global flags] <command> [args]`.
//!
//! Global flags may stand before or after the command. Every error is one
//! line naming the offending argument; nothing here panics on any input.
//!
//! Flags that set a config key (`--threshold`, `--host-reserve`, ...) are
//! declared in the settings table ([`crate::config::settings`]), checked by
//! the same code as the file, and kept as given ([`Given`]): a setting not
//! on the command line is simply absent, and [`crate::config::resolve`]
//! decides flag > file > default in one step.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::settings::{self, Section, Setting};
use crate::config::Given;

/// Default URI when neither `-c` nor `LIBVIRT_DEFAULT_URI` is given.
pub const DEFAULT_URI: &str = "qemu:///system";

/// Sampling window of `status` when `--window` is not given.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(1);

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

/// Which loops a daemon command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loops {
    /// `vcpu <interval>`: the vCPU scheduler.
    Vcpu,
    /// `memory <interval>`: the memory coordinator.
    Memory,
    /// `run`: both, over one connection.
    Both,
}

impl Loops {
    /// Whether the vCPU loop runs.
    pub fn vcpu(self) -> bool {
        matches!(self, Loops::Vcpu | Loops::Both)
    }

    /// Whether the memory loop runs.
    pub fn memory(self) -> bool {
        matches!(self, Loops::Memory | Loops::Both)
    }

    /// Whether a flag of `section` applies: intervals are flags of `run`
    /// only (`vcpu` and `memory` take theirs as the argument).
    fn accepts(self, section: Section) -> bool {
        match section {
            Section::Vcpu => self.vcpu(),
            Section::Memory => self.memory(),
            Section::Interval => self == Loops::Both,
            Section::Domains => true,
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `status [--window S]`.
    Status {
        /// Sampling window for CPU usage, if given.
        window: Option<Duration>,
    },
    /// `vcpu <interval>`, `memory <interval>` or `run`.
    Daemon {
        /// The loops to run.
        loops: Loops,
        /// Settings given on the command line (the interval argument of
        /// `vcpu`/`memory` included), in order; later ones win.
        given: Vec<Given>,
        /// Stop after this many intervals (tests, demos).
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

fn parse_u64(what: &str, s: &str) -> Result<u64, CliError> {
    s.trim()
        .parse::<u64>()
        .or_else(|_| err(format!("{what} must be a whole number, got '{s}'")))
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
            // Command options, checked once the command is known.
            f if matches!(f, "--window" | "--iterations") || settings::by_flag(f).is_some() => {
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

/// The settings among `opts` (flags of the table), checked, in order.
/// Every option must be a setting flag of `loops` or in `other`.
fn given(
    cmd: &str,
    loops: Loops,
    opts: &[(String, String)],
    other: &[&str],
) -> Result<Vec<Given>, CliError> {
    let mut out = Vec::new();
    for (flag, v) in opts {
        match settings::by_flag(flag) {
            Some(s) if loops.accepts(s.section) => out.push(check(s, v)?),
            _ if other.contains(&flag.as_str()) => {}
            _ => return err(format!("option '{flag}' does not apply to '{cmd}'")),
        }
    }
    Ok(out)
}

/// `s`'s flag value, checked like a value in the file.
fn check(s: &'static Setting, value: &str) -> Result<Given, CliError> {
    let what = s.flag.unwrap_or(s.key);
    Given::new(s, what, value.trim()).map_err(CliError)
}

fn opt<'a>(opts: &'a [(String, String)], flag: &str) -> Option<&'a str> {
    opts.iter()
        .rev()
        .find(|(f, _)| f == flag)
        .map(|(_, v)| v.as_str())
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

/// The interval argument of `vcpu`/`memory`, as the setting `s`.
fn one_interval(cmd: &str, s: &'static Setting, rest: &[&str]) -> Result<Given, CliError> {
    match rest {
        [] => err(format!(
            "'{cmd}' needs an interval in seconds, e.g. kvmsched {cmd} 2"
        )),
        [i] => Given::new(s, "the interval", i.trim()).map_err(CliError),
        [_, extra, ..] => err(format!("unexpected argument '{extra}' after the interval")),
    }
}

fn build_command(
    name: &str,
    rest: &[&str],
    opts: &[(String, String)],
) -> Result<Command, CliError> {
    let loops = match name {
        "status" => {
            if let Some((flag, _)) = opts.iter().find(|(f, _)| f != "--window") {
                return err(format!("option '{flag}' does not apply to 'status'"));
            }
            if let Some(extra) = rest.first() {
                return err(format!("unexpected argument '{extra}' for 'status'"));
            }
            let window = opt(opts, "--window")
                .map(|v| settings::seconds("--window", v.trim()).map_err(CliError))
                .transpose()?;
            return Ok(Command::Status { window });
        }
        "vcpu" => Loops::Vcpu,
        "memory" => Loops::Memory,
        "run" => Loops::Both,
        other => {
            return err(format!(
                "unknown command '{other}': expected one of status, vcpu, memory, run"
            ))
        }
    };
    let mut given = Vec::new();
    match loops {
        Loops::Vcpu => given.push(one_interval(name, &settings::VCPU_INTERVAL, rest)?),
        Loops::Memory => given.push(one_interval(name, &settings::MEMORY_INTERVAL, rest)?),
        Loops::Both => {
            if let Some(extra) = rest.first() {
                return err(format!("unexpected argument '{extra}' for 'run' (use --vcpu-interval/--memory-interval)"));
            }
        }
    }
    given.extend(self::given(name, loops, opts, &["--iterations"])?);
    Ok(Command::Daemon {
        loops,
        given,
        iterations: iterations(opts)?,
    })
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

/// Help for one command; the option and key lines, with their defaults,
/// come from the settings table.
pub fn command_help(cmd: &str) -> String {
    match cmd {
        "status" => format!(
            "\
Usage: kvmsched status [--window S]

Samples twice, S seconds apart (default {}), and prints per domain and vCPU the
pCPU it runs on, its affinity, CPU usage over the window (percent of one pCPU),
memory actual/unused/available/max (MiB), and per host pCPU its busy percent
and the load of the vCPUs pinned there, and host free memory with its source.
Opens read-only.
",
            DEFAULT_WINDOW.as_secs_f64()
        ),
        "vcpu" => format!(
            "\
Usage: kvmsched vcpu <interval-s> [--cpus LIST] [--threshold N] [--iterations N]

Every interval: per-vCPU usage from CPU-time deltas, pCPU load = sum of the
vCPUs pinned there (a guest whose threads move between its vCPUs counts as
its demand spread over them). Every vCPU is hard-pinned to one pCPU; when the
std-dev of pCPU loads exceeds the threshold, and this interval's reading shows
it, moves/swaps bring it down to the aim (`vcpu.aim` in --config, default
half the threshold) with the fewest pin changes found; once balanced,
nothing is re-pinned.
{}  --iterations N       stop after N intervals
",
            settings::flag_help(Section::Vcpu)
        ),
        "memory" => format!(
            "\
Usage: kvmsched memory <interval-s> [--target-free MIB] [--host-reserve MIB]
                       [--min-floor MIB] [--iterations N]

Every interval, for all running domains with fresh balloon stats: free =
unused. Guests with more than the target free give memory back gradually;
guests short of it get memory until they have the target free (plus their
recent growth). Never below the guest floor (max(min-floor, used + target)),
never above the domain's max, never taking the host below its reserve.
Host free memory = MemAvailable of /proc/meminfo with libvirtd on this host,
else free + buffers + cached from virNodeGetMemoryStats.
{}  --iterations N       stop after N intervals
",
            settings::flag_help(Section::Memory)
        ),
        "run" => format!(
            "\
Usage: kvmsched run [--vcpu-interval S] [--memory-interval S] [vcpu and memory options]

Runs the vCPU scheduler and the memory coordinator in one process over one
connection. With --dry-run it connects read-only and only prints.
SIGINT/SIGTERM stop it cleanly; SIGHUP reloads --config (a bad file keeps the
last good settings and says why). If libvirtd goes away, it keeps running and
reconnects with backoff (0.5 s doubling, at most the shortest interval or 8 s);
the interval in progress is abandoned, never half applied.
{}
Config file (--config PATH): one `key = value` per line, `#` comments; unknown
keys and bad values are errors reported as FILE:LINE. Flags override it.
{}See contrib/kvmsched.conf and contrib/kvmsched.service.
",
            settings::flag_help(Section::Interval),
            settings::key_help()
        ),
        _ => USAGE.to_string(),
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

    /// The (key, what, value) of each given setting.
    fn given_of(c: &Cli) -> Vec<(&'static str, &'static str, String)> {
        match &c.command {
            Command::Daemon { given, .. } => given
                .iter()
                .map(|g| (g.setting.key, g.what, g.value.clone()))
                .collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_commands_and_global_flags_anywhere() {
        let c = p("-c test:///default --trace status --window 0.5").expect("ok");
        assert_eq!(c.global.connect.as_deref(), Some("test:///default"));
        assert!(c.global.trace);
        assert_eq!(
            c.command,
            Command::Status {
                window: Some(Duration::from_millis(500))
            }
        );
        let c = p("status").expect("ok");
        assert_eq!(c.command, Command::Status { window: None });
        let c = p("vcpu 12 --connect=qemu:///system -v --cpus 0-3").expect("ok");
        assert_eq!(c.global.connect.as_deref(), Some("qemu:///system"));
        assert!(c.global.verbose);
        assert_eq!(
            given_of(&c),
            vec![
                ("interval.vcpu", "the interval", "12".to_string()),
                ("vcpu.cpus", "--cpus", "0-3".to_string()),
            ]
        );
        assert!(matches!(
            c.command,
            Command::Daemon {
                loops: Loops::Vcpu,
                iterations: None,
                ..
            }
        ));
        let c =
            p("run --vcpu-interval 1 --memory-interval=3 --dry-run --host-reserve 7").expect("ok");
        assert!(c.global.dry_run);
        assert_eq!(
            given_of(&c),
            vec![
                ("interval.vcpu", "--vcpu-interval", "1".to_string()),
                ("interval.memory", "--memory-interval", "3".to_string()),
                ("memory.host_reserve_mib", "--host-reserve", "7".to_string()),
            ]
        );
    }

    #[test]
    fn run_keeps_whether_an_interval_was_given() {
        // Not given means absent, so the config file's interval can apply.
        let c = p("run --iterations 2").expect("ok");
        assert_eq!(given_of(&c), vec![]);
        assert!(matches!(
            c.command,
            Command::Daemon {
                loops: Loops::Both,
                iterations: Some(2),
                ..
            }
        ));
    }

    #[test]
    fn bad_intervals_and_numbers_are_clear_errors() {
        let seconds = "expected seconds from 0.05 to 86400";
        for (args, needle) in [
            ("vcpu", "needs an interval"),
            ("vcpu 0", seconds),
            ("vcpu -3", seconds),
            ("vcpu abc", seconds),
            ("vcpu nan", seconds),
            ("vcpu inf", seconds),
            ("memory 1e9", "bad value \"1e9\" for the interval"),
            ("memory 2 3", "unexpected argument '3'"),
            ("status --window 0", "bad value \"0\" for --window"),
            ("memory 2 --iterations 0", "at least 1"),
            (
                "run --vcpu-interval 0.01",
                "bad value \"0.01\" for --vcpu-interval",
            ),
            (
                "vcpu 1 --threshold -1",
                "bad value \"-1\" for --threshold: expected a number >= 0",
            ),
            ("vcpu 1 --cpus 3-1", "bad value for --cpus"),
            (
                "memory 1 --min-floor 1.5",
                "bad value \"1.5\" for --min-floor",
            ),
            (
                "memory 1 --host-reserve 18014398509481984",
                "bad value \"18014398509481984\" for --host-reserve: at most 18014398509481983 MiB",
            ),
        ] {
            let e = p(args).expect_err(args);
            assert!(e.0.contains(needle), "{args}: {e}");
            assert!(!e.0.contains('\n'), "one line: {e}");
        }
        let c = p("memory 1 --host-reserve 18014398509481983").expect("largest MiB");
        assert_eq!(given_of(&c).len(), 2);
    }

    #[test]
    fn unknown_things_are_named() {
        assert!(p("frobnicate").expect_err("x").0.contains("'frobnicate'"));
        assert!(p("status --bogus").expect_err("x").0.contains("'--bogus'"));
        assert!(p("status --cpus 0")
            .expect_err("x")
            .0
            .contains("does not apply to 'status'"));
        assert!(p("vcpu 1 --host-reserve 5")
            .expect_err("x")
            .0
            .contains("'--host-reserve' does not apply to 'vcpu'"));
        assert!(p("vcpu 1 --vcpu-interval 5")
            .expect_err("x")
            .0
            .contains("does not apply to 'vcpu'"));
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
    fn help_shows_every_key_and_flag_with_its_default() {
        let run = command_help("run");
        for s in settings::SETTINGS {
            assert!(
                run.contains(&format!("  {}", s.key.replace("<domain>", "db01"))),
                "{}",
                s.key
            );
            if let Some(flag) = s.flag {
                let shown = ["vcpu", "memory", "run"]
                    .iter()
                    .any(|c| command_help(c).contains(&format!("{flag} ")));
                assert!(shown, "{flag} is in no command's help");
            }
        }
        assert!(command_help("vcpu").contains("--threshold N"));
        assert!(command_help("vcpu").contains("(default 5)"));
        assert!(command_help("memory").contains("--host-reserve MIB"));
        assert!(command_help("memory").contains("(default 200 MiB)"));
        assert!(run.contains("--vcpu-interval S"));
        assert!(run.contains("(default 2 s)"));
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
            if let Ok(d) = settings::seconds("interval", &s) {
                prop_assert!(d > Duration::ZERO);
            }
        }
    }
}
