//! The metrics thread when `accept` fails with EMFILE: it must back off, not
//! spin, and serve again once descriptors are free. Alone in its own test
//! binary because it lowers the process's descriptor limit.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kvmsched::metrics::{MetricsServer, Shared};

/// CPU time (user + system) used by the whole process so far.
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the rusage struct we own; zeroed is a valid
    // initial value for plain data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to ru.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn set_nofile(soft: libc::rlim_t) -> libc::rlimit {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let new = libc::rlimit {
        rlim_cur: soft.min(old.rlim_max),
        rlim_max: old.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own; only the soft limit drops.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) }, 0);
    old
}

#[test]
fn emfile_on_accept_does_not_spin_and_recovers() {
    let server = MetricsServer::bind("127.0.0.1:0").expect("bind");
    let addr = server.local_addr().expect("address");
    // Connections waiting in the listen backlog before the thread starts.
    let mut clients: Vec<TcpStream> = (0..3)
        .map(|_| TcpStream::connect(addr).expect("connect"))
        .collect();
    let old = set_nofile(256);
    // Use up every descriptor left, so the thread's accept fails EMFILE.
    let mut hog = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => hog.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                break;
            }
        }
    }
    let shared = Shared::default();
    shared.lock().expect("lock").pins_total = 3;
    server.spawn(shared).expect("spawn");
    std::thread::sleep(Duration::from_millis(100));
    let before = cpu_time();
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_time() - before;
    drop(hog);
    // SAFETY: restores the limit read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
    eprintln!("CPU time over 1 s with accept failing EMFILE: {used:?}");
    assert!(
        used < Duration::from_millis(100),
        "the metrics thread spun: {used:?} of CPU in 1 s"
    );
    // Descriptors are free again: the waiting clients are served.
    let c = &mut clients[0];
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    c.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").expect("send");
    let mut resp = String::new();
    c.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\nkvmsched_pins_total 3\n"), "{resp}");
}
