//! The `/metrics` server under bad conditions, through its public API:
//! clients that connect and say nothing must not delay a scrape.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kvmsched::metrics::{MetricsServer, Shared};

fn serve() -> SocketAddr {
    let server = MetricsServer::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("address");
    let shared = Shared::default();
    shared.lock().expect("lock").pins_total = 7;
    server.spawn(shared).expect("spawn");
    addr
}

/// One GET /metrics; returns the response and how long it took.
fn scrape(addr: SocketAddr) -> (String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    (out, t.elapsed())
}

#[test]
fn a_scrape_is_answered_fast_behind_50_idle_connections() {
    let addr = serve();
    let idle: Vec<TcpStream> = (0..50)
        .map(|_| TcpStream::connect(addr).expect("idle connect"))
        .collect();
    // Some idle clients send half a request head and stop.
    for s in idle.iter().take(10) {
        (&*s).write_all(b"GET /metr").expect("partial");
    }
    let (resp, took) = scrape(addr);
    eprintln!("scrape behind 50 idle connections took {took:?}");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\nkvmsched_pins_total 7\n"), "{resp}");
    // A functional bound, not a benchmark: without a bound on idle clients
    // each one costs the scrape its whole per-connection budget.
    assert!(took < Duration::from_secs(1), "scrape took {took:?}");
    drop(idle);
}
