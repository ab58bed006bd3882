//! The HTTP side of `--metrics ADDR`: a listener answering `GET /metrics`
//! from its own thread.
//!
//! The metrics thread waits in `poll(2)` on the listener; when clients are
//! waiting it copies the last published figures and answers each pending
//! connection in turn, within ~100 ms of I/O per connection. Nothing here
//! panics on any input.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::exposition::{render, Metrics};
use super::Shared;

/// I/O budget for one connection.
const CONN_BUDGET: Duration = Duration::from_millis(100);
/// Most connections answered by one `serve_pending` call.
const MAX_CONNS_PER_CALL: usize = 16;
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

    /// Answers the connections already waiting (at most 16 per call, each
    /// within ~100 ms of I/O), then returns. Never blocks on an idle
    /// listener; errors of single connections are ignored.
    fn serve_pending(&self, m: &Metrics) {
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
                    fd: self.listener.as_raw_fd(),
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
    use crate::metrics::check::check;
    use proptest::prelude::*;
    use std::thread;

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
        let mut m = Metrics {
            pins_total: 12,
            ..Metrics::default()
        };
        m.domains.insert("web1".into(), Default::default());
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
        check(body).unwrap();
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
    }
}
