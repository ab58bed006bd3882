//! `kvmsched`: parse, connect, loop.

use std::io::Write as _;
use std::process::ExitCode;

use kvmsched::cli::{self, Cli, Command, Global, Loops};
use kvmsched::config::Given;
use kvmsched::daemon::{self, Options, Reloaded};
use kvmsched::json::printable;
use kvmsched::log::Logger;
use kvmsched::{config, metrics, signals, status, virt};

fn main() -> ExitCode {
    let cli = match cli::utf8_args(std::env::args_os().skip(1)).and_then(|a| cli::parse(&a)) {
        Ok(c) => c,
        Err(e) => return fail(&e.0, 2),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failed::Input(e)) => fail(&e, 2),
        Err(Failed::Runtime(e)) => fail(&e, 1),
    }
}

/// Why a command failed, which decides the exit status.
enum Failed {
    /// Bad input (a config file that does not load or parse, a value out of
    /// range): exit status 2, like a bad argument.
    Input(String),
    /// Anything at run time (libvirt unreachable, a port taken): 1.
    Runtime(String),
}

impl From<String> for Failed {
    fn from(e: String) -> Self {
        Failed::Runtime(e)
    }
}

/// Prints `kvmsched: <msg>` as one line (libvirt messages may hold line
/// breaks and names control characters) and returns exit status `code`.
fn fail(msg: &str, code: u8) -> ExitCode {
    // Never a panic, even when stderr is closed.
    let _ = writeln!(std::io::stderr().lock(), "kvmsched: {}", printable(msg));
    ExitCode::from(code)
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an
/// error; any other write failure is one line and exit status 1, never a
/// panic.
fn out(text: &str) -> Result<(), Failed> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failed::Runtime(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

fn run(cli: Cli) -> Result<(), Failed> {
    virt::set_trace(cli.global.trace);
    let uri = cli::resolve_uri(
        cli.global.connect.as_deref(),
        std::env::var("LIBVIRT_DEFAULT_URI").ok().as_deref(),
    );
    match &cli.command {
        Command::Help(None) => out(cli::USAGE),
        Command::Help(Some(c)) => out(&cli::command_help(c)),
        Command::Version => out(&format!("kvmsched {}\n", env!("CARGO_PKG_VERSION"))),
        Command::Status { window } => {
            let conn = virt::Connection::open_read_only(&uri).map_err(|e| e.to_string())?;
            let window = window.unwrap_or(cli::DEFAULT_WINDOW);
            let report = status::collect(&conn, window).map_err(|e| e.to_string())?;
            out(&report.to_string())
        }
        Command::Daemon {
            loops,
            given,
            iterations,
        } => daemon_main(&cli.global, &uri, *loops, given, *iterations),
    }
}

fn daemon_main(
    global: &Global,
    uri: &str,
    loops: Loops,
    given: &[Given],
    iterations: Option<u64>,
) -> Result<(), Failed> {
    let file = global
        .config
        .as_deref()
        .map(config::load)
        .transpose()
        .map_err(Failed::Input)?;
    let settings = config::resolve(file.as_ref(), given).map_err(Failed::Input)?;
    signals::install_handlers()?;
    signals::spawn_stop_watchdog(std::time::Duration::from_millis(900))?;
    let metrics = match &global.metrics {
        Some(addr) => Some(metrics::MetricsServer::bind(addr)?),
        None => None,
    };
    // SIGHUP: the file again, under the same command line.
    let reload: Option<Box<dyn Fn() -> Result<Reloaded, String>>> =
        global.config.clone().map(|path| {
            let given = given.to_vec();
            Box::new(move || {
                let s = config::resolve(Some(&config::load(&path)?), &given)?;
                Ok(Reloaded {
                    vcpu: s.vcpu,
                    memory: s.memory,
                    exclude: s.exclude,
                })
            }) as Box<dyn Fn() -> Result<Reloaded, String>>
        });
    let log = Logger {
        format: global.log_format,
        verbose: global.verbose,
    };
    let mode = if global.dry_run {
        " (dry run: read-only, nothing is changed)"
    } else {
        ""
    };
    let mut every = Vec::new();
    if loops.vcpu() {
        every.push(format!(
            "vcpu every {} s",
            settings.vcpu_interval.as_secs_f64()
        ));
    }
    if loops.memory() {
        every.push(format!(
            "memory every {} s",
            settings.memory_interval.as_secs_f64()
        ));
    }
    log.line(
        "daemon",
        &format!(
            "kvmsched {} on {uri}: {}{mode}",
            env!("CARGO_PKG_VERSION"),
            every.join(", ")
        ),
    );
    if let Some(addr) = metrics.as_ref().and_then(|m| m.local_addr()) {
        log.line("daemon", &format!("metrics on http://{addr}/metrics"));
    }
    Ok(daemon::run(Options {
        uri: uri.to_string(),
        dry_run: global.dry_run,
        log,
        vcpu: loops
            .vcpu()
            .then_some((settings.vcpu_interval, settings.vcpu)),
        memory: loops
            .memory()
            .then_some((settings.memory_interval, settings.memory)),
        iterations,
        exclude: settings.exclude,
        metrics,
        config_path: global.config.clone(),
        reload,
    })?)
}
