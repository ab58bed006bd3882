//! Prometheus text exposition (format 0.0.4) and a minimal HTTP responder
//! for `--metrics ADDR`.
//!
//! The daemon keeps a [`Metrics`] value up to date and calls
//! [`MetricsServer::serve_pending`] from its loop: the listener is
//! nonblocking, each pending connection is answered with at most ~100 ms of
//! I/O, and nothing here panics on any input.
//!
//! Exposed families (all prefixed `kvmsched_`):
//!
//! | name | type | labels |
//! |------|------|--------|
//! | `build_info` | gauge | `version` |
//! | `connected` | gauge | |
//! | `dry_run` | gauge | |
//! | `pcpu_load_ratio` | gauge | `cpu` |
//! | `pcpu_load_stddev_ratio` | gauge | |
//! | `pins_total` | counter | |
//! | `pin_failures_total` | counter | |
//! | `intervals_total` | counter | `loop` (`vcpu`, `memory`) |
//! | `interval_duration_seconds` | gauge | `loop` |
//! | `domain_memory_actual_bytes` | gauge | `domain` |
//! | `domain_memory_free_bytes` | gauge | `domain` |
//! | `memory_granted_bytes_total` | counter | |
//! | `memory_released_bytes_total` | counter | |
//! | `libvirt_calls_total` | counter | |
//! | `libvirt_errors_total` | counter | |
//! | `reconnects_total` | counter | |

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// I/O budget for one connection.
const CONN_BUDGET: Duration = Duration::from_millis(100);
/// Most connections answered by one `serve_pending` call.
const MAX_CONNS_PER_CALL: usize = 16;
/// Largest request head read (request line + headers).
const MAX_REQUEST: usize = 8 * 1024;

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
    /// Wall time (Unix seconds) when the last interval completed; `None`
    /// before the first one.
    pub last_completed_unix_seconds: Option<f64>,
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

/// Renders `m` in the Prometheus text format 0.0.4.
pub fn render(m: &Metrics) -> String {
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
        "reconnects_total",
        "counter",
        "Reconnections to libvirtd after the connection was lost.",
        m.reconnects_total as f64,
    );
    o.0
}

/// Parses `IP:PORT`, `[IPv6]:PORT`, or a bare `PORT` (meaning
/// `127.0.0.1:PORT`). Host names are not resolved.
pub fn parse_addr(addr: &str) -> Result<SocketAddr, String> {
    let a = addr.trim();
    if !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit()) {
        let port: u16 = a
            .parse()
            .map_err(|_| format!("invalid metrics address {addr:?}: port above 65535"))?;
        return Ok(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)));
    }
    a.parse().map_err(|_| {
        format!("invalid metrics address {addr:?}: expected IP:PORT, [IPv6]:PORT or PORT")
    })
}

/// A nonblocking listener answering `GET /metrics`.
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Listens on `addr` (see [`parse_addr`]); the socket is nonblocking.
    pub fn bind(addr: &str) -> Result<MetricsServer, String> {
        let sa = parse_addr(addr)?;
        let listener = TcpListener::bind(sa).map_err(|e| format!("cannot listen on {sa}: {e}"))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot listen on {sa}: set nonblocking: {e}"))?;
        Ok(MetricsServer { listener })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Answers the connections already waiting (at most 16 per call, each
    /// within ~100 ms of I/O), then returns. Never blocks on an idle
    /// listener; errors of single connections are ignored.
    pub fn serve_pending(&self, m: &Metrics) {
        let mut body: Option<String> = None;
        for _ in 0..MAX_CONNS_PER_CALL {
            match self.listener.accept() {
                Ok((stream, _)) => handle(stream, m, &mut body),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // WouldBlock: nothing pending. Anything else (EMFILE,
                // ECONNABORTED…): try again on the next call.
                Err(_) => break,
            }
        }
    }
}

/// The figures the daemon publishes for the metrics thread.
pub type Shared = std::sync::Arc<std::sync::Mutex<Metrics>>;

impl MetricsServer {
    /// Serves `/metrics` from its own thread, so a scrape is answered even
    /// while the daemon's thread is blocked in a libvirt call (a daemon
    /// restarting, a stuck guest monitor). The thread waits in `poll(2)` on
    /// the listener and copies the last published figures only when a
    /// client is waiting.
    pub fn spawn(self, shared: Shared) -> Result<(), String> {
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || loop {
                let mut pfd = libc::pollfd {
                    fd: self.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd for the duration of the call.
                let ready = unsafe { libc::poll(&mut pfd, 1, 500) };
                if ready <= 0 {
                    continue;
                }
                let snapshot = match shared.lock() {
                    Ok(m) => m.clone(),
                    // A panic elsewhere while holding the lock: the figures
                    // are still plain data, serve them.
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                self.serve_pending(&snapshot);
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the metrics thread: {e}"))
    }
}

impl AsRawFd for MetricsServer {
    /// The listening socket, for `poll(2)` in the daemon's loop.
    fn as_raw_fd(&self) -> RawFd {
        self.listener.as_raw_fd()
    }
}

/// Time left until `deadline`, or `None` if it has passed.
fn remaining(deadline: Instant) -> Option<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
}

fn handle(mut stream: TcpStream, m: &Metrics, body: &mut Option<String>) {
    let deadline = Instant::now() + CONN_BUDGET;
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let head = read_head(&mut stream, deadline);
    let response = respond(&head, || body.get_or_insert_with(|| render(m)).clone());
    write_all(&mut stream, &response, deadline);
    let _ = stream.shutdown(std::net::Shutdown::Write);
}

/// Reads until the end of the request head, `MAX_REQUEST` bytes, EOF, an
/// error, or the deadline.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Vec<u8> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while buf.len() < MAX_REQUEST && !head_complete(&buf) {
        let Some(left) = remaining(deadline) else {
            break;
        };
        if stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    buf
}

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

fn write_all(stream: &mut TcpStream, mut data: &[u8], deadline: Instant) {
    while !data.is_empty() {
        let Some(left) = remaining(deadline) else {
            return;
        };
        if stream.set_write_timeout(Some(left)).is_err() {
            return;
        }
        match stream.write(data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// The full HTTP response to the request head `head`; `body` renders the
/// metrics only when they are asked for.
fn respond(head: &[u8], body: impl FnOnce() -> String) -> Vec<u8> {
    let line_end = head.iter().position(|&b| b == b'\n');
    let Some(line) = line_end
        .and_then(|end| std::str::from_utf8(&head[..end]).ok())
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
    else {
        let status = if head.len() >= MAX_REQUEST {
            "431 Request Header Fields Too Large"
        } else {
            "400 Bad Request"
        };
        return plain(status, &[], "bad request\n", true);
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return plain("400 Bad Request", &[], "bad request\n", true);
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return plain("400 Bad Request", &[], "bad request\n", true);
    }
    let path = target.split('?').next().unwrap_or(target);
    let with_body = method != "HEAD";
    match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            let text = body();
            response(
                "200 OK",
                "text/plain; version=0.0.4; charset=utf-8",
                &[],
                &text,
                with_body,
            )
        }
        ("GET" | "HEAD", _) => plain(
            "404 Not Found",
            &[],
            "not found: metrics are at /metrics\n",
            with_body,
        ),
        _ => plain(
            "405 Method Not Allowed",
            &["Allow: GET, HEAD"],
            "method not allowed\n",
            true,
        ),
    }
}

fn plain(status: &str, extra: &[&str], body: &str, with_body: bool) -> Vec<u8> {
    response(status, "text/plain; charset=utf-8", extra, body, with_body)
}

fn response(
    status: &str,
    content_type: &str,
    extra: &[&str],
    body: &str,
    with_body: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for h in extra {
        out.push_str(h);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    if with_body {
        out.push_str(body);
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::thread;

    type Labels = Vec<(String, String)>;

    /// Parses a label set `{a="x",b="y"}`, unescaping values; returns the
    /// labels and the rest of the line.
    fn parse_labels(s: &str) -> Result<(Labels, &str), String> {
        let mut rest = s.strip_prefix('{').ok_or("no '{'")?;
        let mut labels = Vec::new();
        loop {
            if let Some(r) = rest.strip_prefix('}') {
                return Ok((labels, r));
            }
            let eq = rest.find('=').ok_or("label without '='")?;
            let name = &rest[..eq];
            if !valid_name(name, false) {
                return Err(format!("bad label name {name:?}"));
            }
            rest = rest[eq + 1..].strip_prefix('"').ok_or("unquoted value")?;
            let mut val = String::new();
            let mut chars = rest.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => val.push('\\'),
                        Some((_, '"')) => val.push('"'),
                        Some((_, 'n')) => val.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '\n')) => return Err("raw newline in label".into()),
                    Some((_, c)) => val.push(c),
                }
            };
            labels.push((name.to_string(), val));
            rest = &rest[end + 1..];
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return Err(format!("expected ',' or '}}' at {rest:?}"));
            }
        }
    }

    fn valid_name(n: &str, colon: bool) -> bool {
        let mut cs = n.chars();
        matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }

    type Samples = Vec<(String, Labels, f64)>;

    /// A checker for the text format 0.0.4 as we use it (no histograms or
    /// summaries): HELP then TYPE before each family's samples, samples
    /// grouped by family, names valid and prefixed, label values escaped,
    /// no duplicate series. Returns the samples.
    fn check_exposition(text: &str) -> Result<Samples, String> {
        if !text.ends_with('\n') {
            return Err("no final newline".into());
        }
        let mut samples = Vec::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut series: HashSet<String> = HashSet::new();
        let mut current: Option<(String, String)> = None; // name, type
        let mut help_for: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let at = |m: String| format!("line {}: {m}: {line:?}", i + 1);
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, _help) = rest.split_once(' ').ok_or_else(|| at("HELP".into()))?;
                if !done.insert(name.to_string()) {
                    return Err(at(format!("family {name} repeated")));
                }
                help_for = Some(name.to_string());
                current = None;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').ok_or_else(|| at("TYPE".into()))?;
                if help_for.as_deref() != Some(name) {
                    return Err(at("TYPE without HELP just before".into()));
                }
                if !matches!(kind, "counter" | "gauge") {
                    return Err(at(format!("type {kind}")));
                }
                if kind == "counter" && !name.ends_with("_total") {
                    return Err(at("counter not named _total".into()));
                }
                current = Some((name.to_string(), kind.to_string()));
                help_for = None;
            } else if line.starts_with('#') || line.is_empty() {
                return Err(at("unexpected comment or blank line".into()));
            } else {
                let name_end = line.find(['{', ' ']).ok_or_else(|| at("no value".into()))?;
                let name = &line[..name_end];
                let (fam, _) = current
                    .as_ref()
                    .ok_or_else(|| at("sample before TYPE".into()))?;
                if name != fam {
                    return Err(at(format!("sample of {name} inside family {fam}")));
                }
                if !valid_name(name, true) || !name.starts_with("kvmsched_") {
                    return Err(at("bad metric name".into()));
                }
                let (labels, rest) = if line[name_end..].starts_with('{') {
                    parse_labels(&line[name_end..]).map_err(at)?
                } else {
                    (Vec::new(), &line[name_end..])
                };
                let v = rest
                    .strip_prefix(' ')
                    .ok_or_else(|| at("no space".into()))?;
                let v: f64 = match v {
                    "NaN" => f64::NAN,
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    v => v.parse().map_err(|_| at(format!("bad value {v:?}")))?,
                };
                let key = format!("{name}{labels:?}");
                if !series.insert(key) {
                    return Err(at("duplicate series".into()));
                }
                samples.push((name.to_string(), labels, v));
            }
        }
        if help_for.is_some() {
            return Err("HELP without TYPE at the end".into());
        }
        Ok(samples)
    }

    fn sample_metrics() -> Metrics {
        let mut m = Metrics {
            pcpu_load: vec![(0, 50.0), (1, 12.5), (7, 0.0)],
            load_stddev: Some(25.0),
            pins_total: 12,
            pin_failures_total: 1,
            vcpu: LoopMetrics {
                intervals_total: 30,
                last_duration_seconds: Some(0.004),
                last_completed_unix_seconds: None,
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

    fn find<'a>(s: &'a Samples, name: &str, label: Option<(&str, &str)>) -> Option<&'a f64> {
        s.iter()
            .find(|(n, l, _)| {
                n == name
                    && match label {
                        None => l.is_empty(),
                        Some((k, v)) => l.iter().any(|(a, b)| a == k && b == v),
                    }
            })
            .map(|(_, _, v)| v)
    }

    #[test]
    fn render_is_valid_and_complete() {
        let m = sample_metrics();
        let text = render(&m);
        let s = check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(find(&s, "kvmsched_connected", None), Some(&1.0));
        assert_eq!(find(&s, "kvmsched_dry_run", None), Some(&0.0));
        assert_eq!(
            find(&s, "kvmsched_pcpu_load_ratio", Some(("cpu", "0"))),
            Some(&0.5)
        );
        assert_eq!(
            find(&s, "kvmsched_pcpu_load_ratio", Some(("cpu", "7"))),
            Some(&0.0)
        );
        assert_eq!(
            find(&s, "kvmsched_pcpu_load_stddev_ratio", None),
            Some(&0.25)
        );
        assert_eq!(find(&s, "kvmsched_pins_total", None), Some(&12.0));
        assert_eq!(find(&s, "kvmsched_pin_failures_total", None), Some(&1.0));
        assert_eq!(
            find(&s, "kvmsched_intervals_total", Some(("loop", "memory"))),
            Some(&29.0)
        );
        assert_eq!(
            find(
                &s,
                "kvmsched_interval_duration_seconds",
                Some(("loop", "vcpu"))
            ),
            Some(&0.004)
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
            Some(&(1024.0 * 1024.0))
        );
        assert_eq!(
            find(
                &s,
                "kvmsched_domain_memory_free_bytes",
                Some(("domain", "web1"))
            ),
            Some(&(512.0 * 1024.0))
        );
        assert_eq!(
            find(&s, "kvmsched_memory_granted_bytes_total", None),
            Some(&4194304.0)
        );
        assert_eq!(
            find(&s, "kvmsched_memory_released_bytes_total", None),
            Some(&1048576.0)
        );
        assert_eq!(find(&s, "kvmsched_libvirt_calls_total", None), Some(&900.0));
        assert_eq!(find(&s, "kvmsched_libvirt_errors_total", None), Some(&2.0));
        assert_eq!(find(&s, "kvmsched_reconnects_total", None), Some(&1.0));
        assert!(text.contains("# TYPE kvmsched_pins_total counter\n"));
        assert!(text.contains("# TYPE kvmsched_connected gauge\n"));
    }

    #[test]
    fn odd_domain_names_are_escaped() {
        let text = render(&sample_metrics());
        assert!(text.contains(
            r#"kvmsched_domain_memory_actual_bytes{domain="odd \"name\" \\ with\nnewline"} 2097152"#
        ));
        let s = check_exposition(&text).unwrap_or_else(|e| panic!("{e}"));
        let odd = "odd \"name\" \\ with\nnewline";
        assert_eq!(
            find(
                &s,
                "kvmsched_domain_memory_actual_bytes",
                Some(("domain", odd))
            ),
            Some(&2097152.0)
        );
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
    }

    #[test]
    fn default_metrics_render_valid() {
        let text = render(&Metrics::default());
        check_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
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
        check_exposition(&render(&m)).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn checker_catches_mistakes() {
        let bad = [
            "kvmsched_x 1\n",
            "# HELP kvmsched_x h\nkvmsched_x 1\n",
            "# HELP kvmsched_x h\n# TYPE kvmsched_x counter\nkvmsched_x 1\n",
            "# HELP kvmsched_x h\n# TYPE kvmsched_x gauge\nkvmsched_x{a=\"b} 1\n",
            "# HELP kvmsched_x h\n# TYPE kvmsched_x gauge\nkvmsched_x{a=\"\\t\"} 1\n",
            "# HELP kvmsched_x h\n# TYPE kvmsched_x gauge\nkvmsched_y 1\n",
            "# HELP kvmsched_x h\n# TYPE kvmsched_x gauge\nkvmsched_x one\n",
            "# HELP kvmsched_x h\n# TYPE kvmsched_x gauge\nkvmsched_x 1\nkvmsched_x 2\n",
        ];
        for b in bad {
            assert!(check_exposition(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("9477"), Ok("127.0.0.1:9477".parse().unwrap()));
        assert_eq!(
            parse_addr(" 127.0.0.1:1 "),
            Ok("127.0.0.1:1".parse().unwrap())
        );
        assert_eq!(parse_addr("[::1]:9477"), Ok("[::1]:9477".parse().unwrap()));
        assert_eq!(parse_addr("0.0.0.0:80"), Ok("0.0.0.0:80".parse().unwrap()));
        for bad in [
            "",
            "65536",
            "localhost:9477",
            "::1:9477",
            "1.2.3.4",
            ":80",
            "x",
        ] {
            let e = parse_addr(bad).unwrap_err();
            assert!(e.contains("invalid metrics address"), "{e}");
        }
        let e = MetricsServer::bind("nope").unwrap_err();
        assert!(e.contains("\"nope\""), "{e}");
    }

    #[test]
    fn bind_conflict_is_an_error() {
        let a = MetricsServer::bind("127.0.0.1:0").unwrap();
        let addr = a.local_addr().unwrap();
        let e = MetricsServer::bind(&addr.to_string()).unwrap_err();
        assert!(e.starts_with(&format!("cannot listen on {addr}: ")), "{e}");
    }

    /// Sends `request` from a thread and serves until the reply arrives.
    fn exchange(server: &MetricsServer, m: &Metrics, request: &'static [u8]) -> String {
        let addr = server.local_addr().unwrap();
        let client = thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.write_all(request).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        });
        let start = Instant::now();
        while !client.is_finished() && start.elapsed() < Duration::from_secs(5) {
            server.serve_pending(m);
            thread::sleep(Duration::from_millis(5));
        }
        client.join().unwrap()
    }

    #[test]
    fn loopback_get_metrics() {
        let server = MetricsServer::bind("127.0.0.1:0").unwrap();
        let m = sample_metrics();
        let resp = exchange(
            &server,
            &m,
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
        );
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        assert_eq!(body, render(&m));
        check_exposition(body).unwrap();
    }

    #[test]
    fn loopback_other_requests() {
        let server = MetricsServer::bind("127.0.0.1:0").unwrap();
        let m = Metrics::default();
        let cases: [(&'static [u8], &str); 7] = [
            (b"GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 404 "),
            (b"GET /metrics?x=1 HTTP/1.0\n\n", "HTTP/1.1 200 "),
            (b"POST /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 405 "),
            (b"\x00\xff\xfe garbage\r\n\r\n", "HTTP/1.1 400 "),
            (b"GET /metrics\r\n\r\n", "HTTP/1.1 400 "),
            (b"GET metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 400 "),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", "HTTP/1.1 200 "),
        ];
        for (req, want) in cases {
            let resp = exchange(&server, &m, req);
            assert!(resp.starts_with(want), "{req:?} → {resp:?}");
        }
        let resp = exchange(&server, &m, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(resp.ends_with("\r\n\r\n"), "HEAD has no body: {resp:?}");
    }

    #[test]
    fn idle_and_silent_clients_do_not_block() {
        let server = MetricsServer::bind("127.0.0.1:0").unwrap();
        let m = Metrics::default();
        let t = Instant::now();
        server.serve_pending(&m);
        assert!(t.elapsed() < Duration::from_millis(50));

        // A client that connects and says nothing costs ~100 ms at most.
        let _silent = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        thread::sleep(Duration::from_millis(20));
        let t = Instant::now();
        server.serve_pending(&m);
        let took = t.elapsed();
        assert!(took < Duration::from_millis(500), "{took:?}");
    }

    #[test]
    fn oversized_request_head() {
        let big = "GET /metrics HTTP/1.1\r\nX: ".to_string() + &"a".repeat(MAX_REQUEST);
        let resp = respond(big.as_bytes(), String::new);
        assert!(resp.starts_with(b"HTTP/1.1 200"));
        let resp = respond("a".repeat(MAX_REQUEST).as_bytes(), String::new);
        assert!(resp.starts_with(b"HTTP/1.1 431"));
    }

    proptest! {
        #[test]
        fn respond_never_panics(req in prop::collection::vec(any::<u8>(), 0..300)) {
            let resp = respond(&req, || "body".to_string());
            prop_assert!(resp.starts_with(b"HTTP/1.1 "));
        }

        #[test]
        fn respond_textual_requests(
            method in "[A-Z]{0,7}",
            target in "[ -~]{0,20}",
            version in "HTTP/1\\.[01]|[ -~]{0,8}",
        ) {
            let req = format!("{method} {target} {version}\r\n\r\n");
            let resp = String::from_utf8(respond(req.as_bytes(), || "b".to_string())).unwrap();
            let status: u16 = resp[9..12].parse().unwrap();
            prop_assert!([200, 400, 404, 405].contains(&status), "{}", resp);
            if status == 200 {
                prop_assert!(method == "GET" || method == "HEAD");
            }
        }

        #[test]
        fn any_domain_name_renders_valid(names in prop::collection::vec(any::<String>(), 0..6)) {
            let mut m = Metrics::default();
            for (i, n) in names.iter().enumerate() {
                m.domains.insert(n.clone(), DomainMetrics { actual_kib: i as u64, free_kib: Some(1) });
            }
            let text = render(&m);
            let s = check_exposition(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            for n in &names {
                prop_assert!(find(&s, "kvmsched_domain_memory_actual_bytes", Some(("domain", n))).is_some());
            }
        }
    }
}
