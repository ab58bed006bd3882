//! `kvmsched`: parse, connect, loop.

use std::process::ExitCode;

use kvmsched::cli::{self, Cli, Command};
use kvmsched::daemon::{self, Options, Reloaded};
use kvmsched::json::printable;
use kvmsched::log::Logger;
use kvmsched::policy::memory::MemConfig;
use kvmsched::policy::vcpu::{parse_cpu_list, VcpuConfig};
use kvmsched::{config, metrics, signals, status, virt};

fn main() -> ExitCode {
    let cli = match cli::utf8_args(std::env::args_os().skip(1)).and_then(|a| cli::parse(&a)) {
        Ok(c) => c,
        Err(e) => return fail(&e.0, 2),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e, 1),
    }
}

/// Prints `kvmsched: <msg>` as one line (libvirt messages may hold line
/// breaks and names control characters) and returns exit status `code`.
fn fail(msg: &str, code: u8) -> ExitCode {
    eprintln!("kvmsched: {}", printable(msg));
    ExitCode::from(code)
}

/// The policy configs: defaults, then the config file, then flags.
fn build_configs(
    cli: &Cli,
) -> Result<(VcpuConfig, MemConfig, Vec<String>, Option<config::Config>), String> {
    let file = match &cli.global.config {
        Some(p) => Some(config::load(p)?),
        None => None,
    };
    let (vargs, margs) = match &cli.command {
        Command::Vcpu { args, .. } => (Some(args), None),
        Command::Memory { args, .. } => (None, Some(args)),
        Command::Run { vcpu, memory, .. } => (Some(vcpu), Some(memory)),
        _ => (None, None),
    };
    let (vcpu, memory, exclude) = configs_from(file.as_ref(), vargs, margs)?;
    Ok((vcpu, memory, exclude, file))
}

fn configs_from(
    file: Option<&config::Config>,
    vargs: Option<&cli::VcpuArgs>,
    margs: Option<&cli::MemoryArgs>,
) -> Result<(VcpuConfig, MemConfig, Vec<String>), String> {
    let mut vcpu = VcpuConfig::default();
    let mut memory = MemConfig::default();
    let mut exclude = Vec::new();
    if let Some(f) = file {
        f.apply_vcpu(&mut vcpu);
        f.apply_memory(&mut memory);
        exclude = f.exclude.clone();
    }
    if let Some(a) = vargs {
        if let Some(c) = &a.cpus {
            vcpu.cpus = Some(parse_cpu_list(c).map_err(|e| format!("--cpus: {e}"))?);
        }
        if let Some(t) = a.threshold {
            vcpu.threshold = t;
        }
    }
    if let Some(a) = margs {
        const MIB: u64 = 1024;
        if let Some(v) = a.target_free_mib {
            memory.target_free_kib = v * MIB;
        }
        if let Some(v) = a.host_reserve_mib {
            memory.host_reserve_kib = v * MIB;
        }
        if let Some(v) = a.min_floor_mib {
            memory.min_floor_kib = v * MIB;
        }
    }
    vcpu.validate()
        .map_err(|e| format!("vCPU configuration: {e}"))?;
    Ok((vcpu, memory, exclude))
}

fn run(cli: Cli) -> Result<(), String> {
    virt::set_trace(cli.global.trace);
    let uri = cli::resolve_uri(
        cli.global.connect.as_deref(),
        std::env::var("LIBVIRT_DEFAULT_URI").ok().as_deref(),
    );
    match &cli.command {
        Command::Help(None) => {
            print!("{}", cli::USAGE);
            Ok(())
        }
        Command::Help(Some(c)) => {
            print!("{}", cli::command_help(c));
            Ok(())
        }
        Command::Version => {
            println!("kvmsched {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Status { window } => {
            let conn = virt::Connection::open_read_only(&uri).map_err(|e| e.to_string())?;
            let report = status::collect(&conn, *window).map_err(|e| e.to_string())?;
            print!("{report}");
            Ok(())
        }
        Command::Vcpu {
            interval,
            iterations,
            ..
        } => daemon_main(&cli, &uri, Some(*interval), None, *iterations),
        Command::Memory {
            interval,
            iterations,
            ..
        } => daemon_main(&cli, &uri, None, Some(*interval), *iterations),
        Command::Run {
            vcpu_interval,
            memory_interval,
            iterations,
            ..
        } => daemon_main(
            &cli,
            &uri,
            Some(*vcpu_interval),
            Some(*memory_interval),
            *iterations,
        ),
    }
}

fn daemon_main(
    cli: &Cli,
    uri: &str,
    vcpu_interval: Option<std::time::Duration>,
    mem_interval: Option<std::time::Duration>,
    iterations: Option<u64>,
) -> Result<(), String> {
    let (vcpu, memory, exclude, file) = build_configs(cli)?;
    // Intervals from the config file apply to `run` when no flag was given.
    let (vcpu_interval, mem_interval) = match (&cli.command, &file) {
        (Command::Run { .. }, Some(f)) => (
            vcpu_interval.map(|d| {
                if has_flag(cli, "--vcpu-interval") {
                    d
                } else {
                    f.interval_vcpu.unwrap_or(d)
                }
            }),
            mem_interval.map(|d| {
                if has_flag(cli, "--memory-interval") {
                    d
                } else {
                    f.interval_memory.unwrap_or(d)
                }
            }),
        ),
        _ => (vcpu_interval, mem_interval),
    };
    signals::install_handlers()?;
    signals::spawn_stop_watchdog(std::time::Duration::from_millis(900))?;
    let metrics = match &cli.global.metrics {
        Some(addr) => Some(metrics::MetricsServer::bind(addr)?),
        None => None,
    };
    let reload: Option<Box<dyn Fn() -> Result<Reloaded, String>>> =
        cli.global.config.clone().map(|path| {
            let cli2 = cli.clone();
            Box::new(move || {
                let file = config::load(&path)?;
                let (vargs, margs) = match &cli2.command {
                    Command::Vcpu { args, .. } => (Some(args), None),
                    Command::Memory { args, .. } => (None, Some(args)),
                    Command::Run { vcpu, memory, .. } => (Some(vcpu), Some(memory)),
                    _ => (None, None),
                };
                let (vcpu, memory, exclude) = configs_from(Some(&file), vargs, margs)?;
                Ok(Reloaded {
                    vcpu,
                    memory,
                    exclude,
                })
            }) as Box<dyn Fn() -> Result<Reloaded, String>>
        });
    let log = Logger {
        format: cli.global.log_format,
        verbose: cli.global.verbose,
    };
    let mode = if cli.global.dry_run {
        " (dry run: read-only, nothing is changed)"
    } else {
        ""
    };
    log.line(
        "daemon",
        &format!("kvmsched {} on {uri}{mode}", env!("CARGO_PKG_VERSION")),
    );
    if let Some(addr) = metrics.as_ref().and_then(|m| m.local_addr()) {
        log.line("daemon", &format!("metrics on http://{addr}/metrics"));
    }
    daemon::run(Options {
        uri: uri.to_string(),
        dry_run: cli.global.dry_run,
        log,
        vcpu: vcpu_interval.map(|i| (i, vcpu)),
        memory: mem_interval.map(|i| (i, memory)),
        iterations,
        exclude,
        metrics,
        config_path: cli.global.config.clone(),
        reload,
    })
}

fn has_flag(_cli: &Cli, flag: &str) -> bool {
    std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}
