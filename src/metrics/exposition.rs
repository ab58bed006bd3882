//! The Prometheus text exposition (format 0.0.4) of kvmsched's figures:
//! the plain-data [`Metrics`] the daemon fills in, and [`render`], which
//! writes them with HELP and TYPE lines and escaped label values.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Memory of one domain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DomainMetrics {
    /// Current balloon size (KiB).
    pub actual_kib: u64,
    /// Guest-reported free memory (KiB), if the balloon driver reports it.
    pub free_kib: Option<u64>,
}

/// Counters and gauges of one loop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoopMetrics {
    /// Intervals run so far.
    pub intervals_total: u64,
    /// Duration of the last interval's work (seconds); `None` before the
    /// first interval.
    pub last_duration_seconds: Option<f64>,
    /// When the last interval completed (Unix time, seconds); `None` before
    /// the first. A loop stuck in a call stops advancing it.
    pub last_completed_unix_seconds: Option<f64>,
}

/// Figures read when a scrape is answered rather than published by the
/// daemon: a daemon thread stuck inside a libvirt call publishes nothing,
/// and these show that it is stuck.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Live {
    /// The libvirt call in progress on the daemon's thread, and how long it
    /// has been running (seconds).
    pub call_in_progress: Option<(&'static str, f64)>,
}

impl Live {
    /// Reads them now.
    pub fn now() -> Live {
        Live {
            call_in_progress: crate::virt::call::in_progress()
                .map(|p| (p.call, p.started.elapsed().as_secs_f64())),
        }
    }
}

/// Everything exposed; plain data the daemon updates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Load of each pCPU in percentage points (0–100), from the last vCPU
    /// interval. Exposed as a ratio (points / 100).
    pub pcpu_load: Vec<(u32, f64)>,
    /// Std-dev of the pCPU loads (points) from the last vCPU interval.
    pub load_stddev: Option<f64>,
    /// Pins applied successfully.
    pub pins_total: u64,
    /// Pins libvirt refused.
    pub pin_failures_total: u64,
    /// The vCPU loop.
    pub vcpu: LoopMetrics,
    /// The memory loop.
    pub memory: LoopMetrics,
    /// Per domain name.
    pub domains: BTreeMap<String, DomainMetrics>,
    /// Memory granted to guests so far (KiB).
    pub memory_granted_kib_total: u64,
    /// Memory released by guests so far (KiB).
    pub memory_released_kib_total: u64,
    /// libvirt calls made.
    pub libvirt_calls_total: u64,
    /// libvirt calls that failed.
    pub libvirt_errors_total: u64,
    /// Handle releases (`virDomainFree`, `virConnectClose`, …) that failed
    /// in `Drop`.
    pub libvirt_release_failures_total: u64,
    /// Successful reconnections to libvirtd.
    pub reconnects_total: u64,
    /// Whether the libvirt connection is up.
    pub connected: bool,
    /// Whether running with `--dry-run`.
    pub dry_run: bool,
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample value as the text format wants it (`NaN`, `+Inf`, `-Inf`).
fn value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{v}")
    }
}

struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP kvmsched_{name} {help}");
        let _ = writeln!(self.0, "# TYPE kvmsched_{name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], v: f64) {
        let _ = write!(self.0, "kvmsched_{name}");
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, val)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape_label_value(val));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", value(v));
    }

    fn scalar(&mut self, name: &str, kind: &str, help: &str, v: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], v);
    }
}

fn bytes(kib: u64) -> f64 {
    kib.saturating_mul(1024) as f64
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Renders `m`, and `live` read at the time of the scrape, in the
/// Prometheus text format 0.0.4.
pub fn render(m: &Metrics, live: &Live) -> String {
    let mut o = Out(String::with_capacity(2048 + 160 * m.domains.len()));
    o.family("build_info", "gauge", "kvmsched version, always 1.");
    o.sample("build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
    o.scalar(
        "connected",
        "gauge",
        "Whether the libvirt connection is up (1) or not (0).",
        flag(m.connected),
    );
    o.scalar(
        "dry_run",
        "gauge",
        "Whether kvmsched runs with --dry-run and changes nothing.",
        flag(m.dry_run),
    );

    o.family(
        "pcpu_load_ratio",
        "gauge",
        "Load of each pCPU by guest vCPUs in the last vCPU interval (1 = one full CPU).",
    );
    for (cpu, load) in &m.pcpu_load {
        o.sample(
            "pcpu_load_ratio",
            &[("cpu", &cpu.to_string())],
            load / 100.0,
        );
    }
    o.family(
        "pcpu_load_stddev_ratio",
        "gauge",
        "Standard deviation of the pCPU loads in the last vCPU interval.",
    );
    if let Some(sd) = m.load_stddev {
        o.sample("pcpu_load_stddev_ratio", &[], sd / 100.0);
    }
    o.scalar(
        "pins_total",
        "counter",
        "vCPU pins applied.",
        m.pins_total as f64,
    );
    o.scalar(
        "pin_failures_total",
        "counter",
        "vCPU pins that libvirt refused.",
        m.pin_failures_total as f64,
    );

    o.family("intervals_total", "counter", "Intervals run, per loop.");
    o.sample(
        "intervals_total",
        &[("loop", "vcpu")],
        m.vcpu.intervals_total as f64,
    );
    o.sample(
        "intervals_total",
        &[("loop", "memory")],
        m.memory.intervals_total as f64,
    );
    o.family(
        "interval_duration_seconds",
        "gauge",
        "Time the last interval's work took, per loop.",
    );
    for (name, l) in [("vcpu", &m.vcpu), ("memory", &m.memory)] {
        if let Some(d) = l.last_duration_seconds {
            o.sample("interval_duration_seconds", &[("loop", name)], d);
        }
    }
    o.family(
        "interval_last_completed_timestamp_seconds",
        "gauge",
        "When the last interval completed (Unix time), per loop.",
    );
    for (name, l) in [("vcpu", &m.vcpu), ("memory", &m.memory)] {
        if let Some(t) = l.last_completed_unix_seconds {
            o.sample(
                "interval_last_completed_timestamp_seconds",
                &[("loop", name)],
                t,
            );
        }
    }

    o.family(
        "domain_memory_actual_bytes",
        "gauge",
        "Current balloon size of each domain.",
    );
    for (name, d) in &m.domains {
        o.sample(
            "domain_memory_actual_bytes",
            &[("domain", name)],
            bytes(d.actual_kib),
        );
    }
    o.family(
        "domain_memory_free_bytes",
        "gauge",
        "Free memory reported by each domain's balloon driver.",
    );
    for (name, d) in &m.domains {
        if let Some(free) = d.free_kib {
            o.sample("domain_memory_free_bytes", &[("domain", name)], bytes(free));
        }
    }
    o.scalar(
        "memory_granted_bytes_total",
        "counter",
        "Memory granted to guests by growing their balloon size.",
        bytes(m.memory_granted_kib_total),
    );
    o.scalar(
        "memory_released_bytes_total",
        "counter",
        "Memory taken back from guests by shrinking their balloon size.",
        bytes(m.memory_released_kib_total),
    );
    o.scalar(
        "libvirt_calls_total",
        "counter",
        "libvirt API calls made.",
        m.libvirt_calls_total as f64,
    );
    o.scalar(
        "libvirt_errors_total",
        "counter",
        "libvirt API calls that failed.",
        m.libvirt_errors_total as f64,
    );
    o.scalar(
        "libvirt_release_failures_total",
        "counter",
        "libvirt handle releases (virDomainFree, virConnectClose, ...) that failed.",
        m.libvirt_release_failures_total as f64,
    );
    o.family(
        "libvirt_call_in_progress",
        "gauge",
        "The libvirt call the daemon is inside at the time of the scrape (1; no sample when none).",
    );
    if let Some((call, _)) = live.call_in_progress {
        o.sample("libvirt_call_in_progress", &[("call", call)], 1.0);
    }
    o.scalar(
        "libvirt_call_in_progress_seconds",
        "gauge",
        "How long the libvirt call in progress has been running (0 when none).",
        live.call_in_progress.map_or(0.0, |(_, age)| age),
    );
    o.scalar(
        "reconnects_total",
        "counter",
        "Reconnections to libvirtd after the connection was lost.",
        m.reconnects_total as f64,
    );
    o.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::promcheck::{check, find};
    use proptest::prelude::*;

    fn sample_metrics() -> Metrics {
        let mut m = Metrics {
            pcpu_load: vec![(0, 50.0), (1, 12.5), (7, 0.0)],
            load_stddev: Some(25.0),
            pins_total: 12,
            pin_failures_total: 1,
            vcpu: LoopMetrics {
                intervals_total: 30,
                last_duration_seconds: Some(0.004),
                last_completed_unix_seconds: Some(1_764_590_400.25),
            },
            memory: LoopMetrics {
                intervals_total: 29,
                last_duration_seconds: None,
                last_completed_unix_seconds: None,
            },
            memory_granted_kib_total: 4096,
            memory_released_kib_total: 1024,
            libvirt_calls_total: 900,
            libvirt_errors_total: 2,
            reconnects_total: 1,
            connected: true,
            dry_run: false,
            ..Metrics::default()
        };
        m.domains.insert(
            "web1".into(),
            DomainMetrics {
                actual_kib: 1024,
                free_kib: Some(512),
            },
        );
        m.domains.insert(
            "odd \"name\" \\ with\nnewline".into(),
            DomainMetrics {
                actual_kib: 2048,
                free_kib: None,
            },
        );
        m
    }

    #[test]
    fn render_is_valid_and_complete() {
        let m = sample_metrics();
        let text = render(&m, &Live::default());
        let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(find(&s, "kvmsched_connected", None), Some(1.0));
        assert_eq!(find(&s, "kvmsched_dry_run", None), Some(0.0));
        assert_eq!(
            find(&s, "kvmsched_pcpu_load_ratio", Some(("cpu", "0"))),
            Some(0.5)
        );
        assert_eq!(
            find(&s, "kvmsched_pcpu_load_ratio", Some(("cpu", "7"))),
            Some(0.0)
        );
        assert_eq!(
            find(&s, "kvmsched_pcpu_load_stddev_ratio", None),
            Some(0.25)
        );
        assert_eq!(find(&s, "kvmsched_pins_total", None), Some(12.0));
        assert_eq!(find(&s, "kvmsched_pin_failures_total", None), Some(1.0));
        assert_eq!(
            find(&s, "kvmsched_intervals_total", Some(("loop", "memory"))),
            Some(29.0)
        );
        assert_eq!(
            find(
                &s,
                "kvmsched_interval_duration_seconds",
                Some(("loop", "vcpu"))
            ),
            Some(0.004)
        );
        assert_eq!(
            find(
                &s,
                "kvmsched_interval_duration_seconds",
                Some(("loop", "memory"))
            ),
            None
        );
        assert_eq!(
            find(
                &s,
                "kvmsched_domain_memory_actual_bytes",
                Some(("domain", "web1"))
            ),
            Some(1024.0 * 1024.0)
        );
        assert_eq!(
            find(
                &s,
                "kvmsched_domain_memory_free_bytes",
                Some(("domain", "web1"))
            ),
            Some(512.0 * 1024.0)
        );
        assert_eq!(
            find(&s, "kvmsched_memory_granted_bytes_total", None),
            Some(4194304.0)
        );
        assert_eq!(
            find(&s, "kvmsched_memory_released_bytes_total", None),
            Some(1048576.0)
        );
        assert_eq!(find(&s, "kvmsched_libvirt_calls_total", None), Some(900.0));
        assert_eq!(find(&s, "kvmsched_libvirt_errors_total", None), Some(2.0));
        assert_eq!(find(&s, "kvmsched_reconnects_total", None), Some(1.0));
        assert!(text.contains("# TYPE kvmsched_pins_total counter\n"));
        assert!(text.contains("# TYPE kvmsched_connected gauge\n"));
    }

    #[test]
    fn interval_completion_times_per_loop() {
        let s = check(&render(&sample_metrics(), &Live::default())).unwrap();
        let name = "kvmsched_interval_last_completed_timestamp_seconds";
        assert_eq!(
            find(&s, name, Some(("loop", "vcpu"))),
            Some(1_764_590_400.25)
        );
        assert_eq!(find(&s, name, Some(("loop", "memory"))), None);
    }

    #[test]
    fn render_with_and_without_a_call_in_progress() {
        let m = sample_metrics();
        let idle = render(&m, &Live::default());
        let s = check(&idle).unwrap_or_else(|e| panic!("{e}\n{idle}"));
        assert!(idle.contains("# TYPE kvmsched_libvirt_call_in_progress gauge\n"));
        assert!(!s
            .iter()
            .any(|x| x.name == "kvmsched_libvirt_call_in_progress"));
        assert_eq!(
            find(&s, "kvmsched_libvirt_call_in_progress_seconds", None),
            Some(0.0)
        );

        let stuck = Live {
            call_in_progress: Some(("virDomainSetMemoryFlags", 42.5)),
        };
        let text = render(&m, &stuck);
        let s = check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert!(text
            .contains("\nkvmsched_libvirt_call_in_progress{call=\"virDomainSetMemoryFlags\"} 1\n"));
        let calls: Vec<_> = s
            .iter()
            .filter(|x| x.name == "kvmsched_libvirt_call_in_progress")
            .collect();
        assert_eq!(calls.len(), 1);
        assert_eq!(
            find(&s, "kvmsched_libvirt_call_in_progress_seconds", None),
            Some(42.5)
        );
    }

    #[test]
    fn odd_domain_names_are_escaped() {
        let text = render(&sample_metrics(), &Live::default());
        assert!(text.contains(
            r#"kvmsched_domain_memory_actual_bytes{domain="odd \"name\" \\ with\nnewline"} 2097152"#
        ));
        let s = check(&text).unwrap_or_else(|e| panic!("{e}"));
        let odd = "odd \"name\" \\ with\nnewline";
        assert_eq!(
            find(
                &s,
                "kvmsched_domain_memory_actual_bytes",
                Some(("domain", odd))
            ),
            Some(2097152.0)
        );
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn default_metrics_render_valid() {
        let text = render(&Metrics::default(), &Live::default());
        check(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    }

    #[test]
    fn special_values() {
        assert_eq!(value(f64::NAN), "NaN");
        assert_eq!(value(f64::INFINITY), "+Inf");
        assert_eq!(value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(value(1.5), "1.5");
        let m = Metrics {
            load_stddev: Some(f64::NAN),
            pcpu_load: vec![(0, f64::INFINITY)],
            memory_granted_kib_total: u64::MAX,
            ..Metrics::default()
        };
        check(&render(&m, &Live::default())).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn the_checker_rejects_a_counter_without_total() {
        let good = "# HELP kvmsched_pins_total h\n# TYPE kvmsched_pins_total counter\n\
                    kvmsched_pins_total 1\n";
        assert_eq!(
            find(&check(good).unwrap(), "kvmsched_pins_total", None),
            Some(1.0)
        );
        let bad = good.replace("_total", "");
        let e = check(&bad).unwrap_err();
        assert!(e.contains("ends _total"), "{e}");
    }

    proptest! {
        // Each case runs the Python checker once.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn any_domain_name_renders_valid(names in prop::collection::vec(any::<String>(), 0..6)) {
            let mut m = Metrics::default();
            for (i, n) in names.iter().enumerate() {
                m.domains.insert(n.clone(), DomainMetrics { actual_kib: i as u64, free_kib: Some(1) });
            }
            let text = render(&m, &Live::default());
            let s = check(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            for n in &names {
                prop_assert!(find(&s, "kvmsched_domain_memory_actual_bytes", Some(("domain", n))).is_some());
            }
        }

        #[test]
        fn any_figures_render_valid(
            loads in prop::collection::vec((any::<u32>(), any::<f64>()), 0..8),
            stddev in any::<Option<f64>>(),
            counters in any::<[u64; 8]>(),
            seconds in any::<[Option<f64>; 4]>(),
            flags in any::<(bool, bool)>(),
            age in any::<Option<f64>>(),
        ) {
            let mut loads = loads;
            loads.sort_by_key(|&(cpu, _)| cpu);
            loads.dedup_by_key(|&mut (cpu, _)| cpu);
            let m = Metrics {
                pcpu_load: loads,
                load_stddev: stddev,
                pins_total: counters[0],
                pin_failures_total: counters[1],
                vcpu: LoopMetrics {
                    intervals_total: counters[2],
                    last_duration_seconds: seconds[0],
                    last_completed_unix_seconds: seconds[1],
                },
                memory: LoopMetrics {
                    intervals_total: counters[3],
                    last_duration_seconds: seconds[2],
                    last_completed_unix_seconds: seconds[3],
                },
                memory_granted_kib_total: counters[4],
                memory_released_kib_total: counters[5],
                libvirt_calls_total: counters[6],
                libvirt_errors_total: counters[7],
                connected: flags.0,
                dry_run: flags.1,
                ..Metrics::default()
            };
            let live = Live { call_in_progress: age.map(|a| ("virDomainGetVcpus", a.abs())) };
            let text = render(&m, &live);
            check(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        }
    }
}
