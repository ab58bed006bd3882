//! The HTTP side of `--metrics ADDR`: a listener answering `GET /metrics`
//! from its own thread.
//!
//! The metrics thread waits in one `poll(2)` on the listener and on the
//! clients it holds, all nonblocking. It answers a client once its request
//! head is complete, rendering the figures last published by the daemon at
//! that moment. The cost of bad clients is bounded:
//! - a connection is closed `CONN_DEADLINE` after it was accepted;
//! - at most `MAX_CLIENTS` are held; a new one closes the oldest that has
//!   not sent its request;
//! - when `accept` fails, for instance out of descriptors (EMFILE), the
//!   listener rests for `ACCEPT_BACKOFF` instead of being retried at once.
//!
//! Nothing here panics on any input. There is no authentication: anyone who
//! can reach the address can read the figures.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::exposition::{render, Live, Metrics};
use super::Shared;

/// Longest a client may take from being accepted to having been answered;
/// past it the connection is closed.
const CONN_DEADLINE: Duration = Duration::from_secs(5);
/// Most client connections held at once. Accepting one more closes the
/// oldest that has not sent its request yet.
const MAX_CLIENTS: usize = 32;
/// Most connections accepted per wake-up, so a flood of connects cannot
/// keep the thread from the clients it holds.
const MAX_ACCEPTS_PER_WAKE: usize = 64;
/// How long the listener is left alone after `accept` ran out of
/// descriptors (or failed otherwise), instead of retrying at once.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(200);
/// Largest request head read (request line + headers).
const MAX_REQUEST: usize = 8 * 1024;

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

    /// Serves `/metrics` from its own thread, so a scrape is answered even
    /// while the daemon's thread is blocked in a libvirt call (a daemon
    /// restarting, a stuck guest monitor). Each answer renders the figures
    /// last published in `shared`. The thread runs until the process ends.
    pub fn spawn(self, shared: Shared) -> Result<(), String> {
        let mut serve = Serve::new(self.listener, CONN_DEADLINE);
        std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || loop {
                serve.step(&|| snapshot(&shared), None);
            })
            .map(|_| ())
            .map_err(|e| format!("cannot start the metrics thread: {e}"))
    }
}

/// A copy of the published figures.
fn snapshot(shared: &Shared) -> Metrics {
    match shared.lock() {
        Ok(m) => m.clone(),
        // A panic elsewhere while holding the lock: the figures are still
        // plain data, serve them.
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

/// Where a client connection is.
enum Phase {
    /// Reading the request head (bytes so far).
    Reading(Vec<u8>),
    /// Writing the response (bytes not yet sent).
    Writing(Vec<u8>),
}

struct Client {
    stream: TcpStream,
    /// When it is closed if not answered by then.
    deadline: Instant,
    phase: Phase,
}

/// The metrics thread's state: the listener and the clients it holds, all
/// nonblocking and waited on together in one `poll(2)`, so a client that
/// connects and says nothing costs the others nothing.
struct Serve {
    listener: TcpListener,
    clients: Vec<Client>,
    /// Each client's budget from accept to answer.
    conn_deadline: Duration,
    /// The listener is not polled before this (after `accept` failed).
    resting_until: Option<Instant>,
}

impl Serve {
    fn new(listener: TcpListener, conn_deadline: Duration) -> Serve {
        Serve {
            listener,
            clients: Vec::new(),
            conn_deadline,
            resting_until: None,
        }
    }

    /// Waits once for the listener or a client (at most `max_wait`, if
    /// given), then serves what is ready: reads request heads, answers
    /// complete ones with `figures()` rendered, writes pending responses,
    /// accepts new clients, and closes clients past their deadline.
    fn step(&mut self, figures: &dyn Fn() -> Metrics, max_wait: Option<Duration>) {
        let now = Instant::now();
        self.clients.retain(|c| c.deadline > now);
        if self.resting_until.is_some_and(|t| t <= now) {
            self.resting_until = None;
        }
        let listening = self.resting_until.is_none();
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(self.clients.len() + 1);
        for c in &self.clients {
            let events = match c.phase {
                Phase::Reading(_) => libc::POLLIN,
                Phase::Writing(_) => libc::POLLOUT,
            };
            fds.push(pollfd(c.stream.as_raw_fd(), events));
        }
        if listening {
            fds.push(pollfd(self.listener.as_raw_fd(), libc::POLLIN));
        }
        let wake = self
            .clients
            .iter()
            .map(|c| c.deadline)
            .chain(self.resting_until)
            .min()
            .map(|t| t.saturating_duration_since(now));
        let wait = match (wake, max_wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = wait.map_or(-1, |d| {
            // Round up, so the wake-up is not a little early and spent
            // finding nothing due.
            libc::c_int::try_from(d.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX)
        });
        let nfds = fds.len() as libc::nfds_t;
        // SAFETY: `fds` is a valid array of `nfds` pollfd structs, alive and
        // not otherwise borrowed for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
                // Cannot happen with valid arguments; never spin on it.
                std::thread::sleep(ACCEPT_BACKOFF);
            }
            return;
        }
        let mut body: Option<String> = None;
        let mut render_once = || {
            body.get_or_insert_with(|| render(&figures(), &Live::now()))
                .clone()
        };
        for (c, fd) in self.clients.iter_mut().zip(&fds) {
            if fd.revents != 0 {
                c.advance(&mut render_once);
            }
        }
        self.clients.retain(|c| !c.done());
        if listening && fds.last().is_some_and(|fd| fd.revents != 0) {
            self.accept(&mut render_once);
        }
    }

    /// Accepts waiting connections; on failure rests the listener.
    fn accept(&mut self, render: &mut dyn FnMut() -> String) {
        for _ in 0..MAX_ACCEPTS_PER_WAKE {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    if self.clients.len() >= MAX_CLIENTS {
                        self.drop_oldest_idle();
                    }
                    let mut c = Client {
                        stream,
                        deadline: Instant::now() + self.conn_deadline,
                        phase: Phase::Reading(Vec::new()),
                    };
                    // The request is often there already: answer it now.
                    c.advance(render);
                    if !c.done() {
                        self.clients.push(c);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    // Out of descriptors (EMFILE, ENFILE) or memory: the
                    // connection stays queued and the listener stays
                    // readable, so retrying now would spin. Free one of
                    // our own descriptors and rest.
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        self.drop_oldest_idle();
                    }
                    self.resting_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    return;
                }
            }
        }
    }

    /// Closes the oldest client still sending its request, or if every
    /// client is being answered, the oldest of all.
    fn drop_oldest_idle(&mut self) {
        let idle = self
            .clients
            .iter()
            .position(|c| matches!(c.phase, Phase::Reading(_)));
        if let Some(i) = idle.or((!self.clients.is_empty()).then_some(0)) {
            self.clients.remove(i);
        }
    }
}

fn pollfd(fd: std::os::fd::RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

impl Client {
    /// Reads or writes what the socket takes without blocking. A complete
    /// head (or EOF, or `MAX_REQUEST` bytes) gets its response; a
    /// response fully written, or an error, ends the connection.
    fn advance(&mut self, render: &mut dyn FnMut() -> String) {
        if let Phase::Reading(buf) = &mut self.phase {
            let mut chunk = [0u8; 1024];
            let end = loop {
                if buf.len() >= MAX_REQUEST || head_complete(buf) {
                    break true;
                }
                match self.stream.read(&mut chunk) {
                    Ok(0) => break true,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                    Err(_) => {
                        self.phase = Phase::Writing(Vec::new());
                        return;
                    }
                }
            };
            if !end {
                return;
            }
            let head = std::mem::take(buf);
            self.phase = Phase::Writing(respond(&head, &mut *render));
        }
        if let Phase::Writing(data) = &mut self.phase {
            while !data.is_empty() {
                match self.stream.write(data) {
                    Ok(0) => data.clear(),
                    Ok(n) => {
                        data.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                    Err(_) => data.clear(),
                }
            }
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
    }

    /// Whether the connection is finished with (answered or failed).
    fn done(&self) -> bool {
        matches!(&self.phase, Phase::Writing(d) if d.is_empty())
    }
}

fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
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
    use crate::metrics::promcheck::{check, find};
    use proptest::prelude::*;

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

    /// A metrics thread serving `m`.
    fn serve(m: Metrics) -> SocketAddr {
        let server = MetricsServer::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        server.spawn(Shared::new(m.into())).unwrap();
        addr
    }

    /// Sends `request`, returns the whole reply.
    fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn loopback_get_metrics() {
        let mut m = Metrics {
            pins_total: 12,
            ..Metrics::default()
        };
        m.domains.insert("web1".into(), Default::default());
        let resp = exchange(
            serve(m.clone()),
            b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
        );
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("\r\nContent-Type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nContent-Length: {}", body.len())));
        let s = check(body).unwrap();
        assert_eq!(find(&s, "kvmsched_pins_total", None), Some(12.0));
        assert_eq!(
            find(
                &s,
                "kvmsched_domain_memory_actual_bytes",
                Some(("domain", "web1"))
            ),
            Some(0.0)
        );
    }

    #[test]
    fn loopback_other_requests() {
        let addr = serve(Metrics::default());
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
            let resp = exchange(addr, req);
            assert!(resp.starts_with(want), "{req:?} → {resp:?}");
        }
        let resp = exchange(addr, b"HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(resp.ends_with("\r\n\r\n"), "HEAD has no body: {resp:?}");
    }

    /// A `Serve` on a loopback port, driven by the test itself.
    fn serve_here(conn_deadline: Duration) -> (Serve, SocketAddr) {
        let server = MetricsServer::bind("127.0.0.1:0").unwrap();
        let addr = server.local_addr().unwrap();
        (Serve::new(server.listener, conn_deadline), addr)
    }

    /// Steps `serve` for up to 2 s, until `until` holds.
    fn step_until(serve: &mut Serve, until: impl Fn(&Serve) -> bool) {
        let start = Instant::now();
        while !until(serve) && start.elapsed() < Duration::from_secs(2) {
            serve.step(&Metrics::default, Some(Duration::from_millis(10)));
        }
    }

    /// Whether the server closed `s` (EOF or reset), waiting up to 1 s.
    fn closed(s: &mut TcpStream) -> bool {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut b = [0u8; 64];
        match s.read(&mut b) {
            Ok(n) => n == 0,
            Err(e) => !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }

    #[test]
    fn past_the_cap_the_oldest_idle_client_is_closed() {
        let (mut serve, addr) = serve_here(CONN_DEADLINE);
        let mut idle: Vec<TcpStream> = (0..MAX_CLIENTS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        step_until(&mut serve, |s| s.clients.len() == MAX_CLIENTS);
        assert_eq!(serve.clients.len(), MAX_CLIENTS);
        let mut late = TcpStream::connect(addr).unwrap();
        let late_addr = late.local_addr().ok();
        step_until(&mut serve, |s| {
            s.clients
                .iter()
                .any(|c| c.stream.peer_addr().ok() == late_addr)
        });
        assert_eq!(serve.clients.len(), MAX_CLIENTS);
        assert!(closed(&mut idle[0]), "the oldest idle client is closed");
        late.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        step_until(&mut serve, |s| s.clients.len() < MAX_CLIENTS);
        let mut resp = String::new();
        late.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
        // The second oldest is still held.
        idle[1].set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        assert!(matches!(idle[1].read(&mut b), Err(e) if e.kind() == ErrorKind::WouldBlock));
    }

    #[test]
    fn a_silent_client_is_closed_at_its_deadline() {
        let (mut serve, addr) = serve_here(Duration::from_millis(100));
        let mut silent = TcpStream::connect(addr).unwrap();
        step_until(&mut serve, |s| s.clients.len() == 1);
        let t = Instant::now();
        step_until(&mut serve, |s| s.clients.is_empty());
        assert!(serve.clients.is_empty());
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(closed(&mut silent));
    }

    #[test]
    fn a_request_in_pieces_is_answered() {
        let (mut serve, addr) = serve_here(CONN_DEADLINE);
        let mut c = TcpStream::connect(addr).unwrap();
        for piece in [
            &b"GET /met"[..],
            b"rics HTTP/1.1\r\n",
            b"Host: x\r\n",
            b"\r\n",
        ] {
            c.write_all(piece).unwrap();
            serve.step(&Metrics::default, Some(Duration::from_millis(20)));
        }
        step_until(&mut serve, |s| s.clients.is_empty());
        let mut resp = String::new();
        c.read_to_string(&mut resp).unwrap();
        assert!(resp.starts_with("HTTP/1.1 200 "), "{resp}");
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
    }
}
