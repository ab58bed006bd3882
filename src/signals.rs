//! SIGINT/SIGTERM (stop) and SIGHUP (reload) as flags the loop polls, the
//! stop watchdog, and the marker of the libvirt call in progress that the
//! watchdog and the overrun observer read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

extern "C" fn on_hup(_sig: libc::c_int) {
    RELOAD.store(true, Ordering::SeqCst);
}

fn install(sig: libc::c_int, handler: extern "C" fn(libc::c_int)) -> Result<(), String> {
    // SAFETY: sigaction is plain data; zeroed is a valid initial value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = handler as usize;
    action.sa_flags = 0;
    // SAFETY: action.sa_mask is a valid sigset_t owned by us.
    if unsafe { libc::sigemptyset(&mut action.sa_mask) } != 0 {
        return Err(format!("sigemptyset failed for signal {sig}"));
    }
    // SAFETY: the handler only stores to an atomic (async-signal-safe); the
    // action struct is valid for the call; the old action is not requested.
    if unsafe { libc::sigaction(sig, &action, std::ptr::null_mut()) } != 0 {
        return Err(format!(
            "sigaction({sig}) failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// Installs the handlers. Idempotent.
pub fn install_handlers() -> Result<(), String> {
    install(libc::SIGINT, on_stop)?;
    install(libc::SIGTERM, on_stop)?;
    install(libc::SIGHUP, on_hup)?;
    Ok(())
}

/// The libvirt call in progress on the main loop, and for how long (from
/// the one checked call path, [`crate::virt::call::in_progress`]).
pub fn current_call() -> Option<(&'static str, Duration)> {
    crate::virt::call::in_progress().map(|c| (c.call, c.started.elapsed()))
}

/// The watchdog's last words: names the stuck libvirt call only when one
/// was in progress.
fn stop_message(call: Option<(&str, Duration)>) -> String {
    match call {
        Some((call, age)) => format!(
            "kvmsched: stop requested; a libvirt call ({call}, {:.1}s) did not return in time, exiting\n",
            age.as_secs_f64()
        ),
        None => "kvmsched: stop requested; the loop did not stop in time, exiting\n".to_string(),
    }
}

/// Makes sure a stop request ends the process within `grace` even when the
/// main loop is blocked inside a libvirt call that does not return (a stuck
/// guest monitor can hold a call for libvirt's 30 s job timeout): a watcher
/// thread waits for the request, gives the loop `grace` to finish or abandon
/// its interval, then ends the process with status 0, saying which call was
/// stuck, if one was. The loops check for a stop between actions and apply
/// a swap's two pins as a unit, so only a call that never returns can be
/// cut short here.
pub fn spawn_stop_watchdog(grace: Duration) -> Result<(), String> {
    std::thread::Builder::new()
        .name("stop-watchdog".into())
        .spawn(move || {
            while !stop_requested() {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(grace);
            let msg = stop_message(current_call());
            // SAFETY: write(2) on fd 2 with a valid buffer of msg.len() bytes.
            unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
            // SAFETY: _exit ends the process at once without running atexit
            // handlers or destructors, which could race with the main thread
            // still inside libvirt; stdout is line-flushed by the logger.
            unsafe { libc::_exit(0) }
        })
        .map(|_| ())
        .map_err(|e| format!("cannot start the stop watchdog: {e}"))
}

/// Whether a stop was requested.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Requests a stop (as a signal would).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Whether a reload was requested since the last call (clears it).
pub fn take_reload() -> bool {
    RELOAD.swap(false, Ordering::SeqCst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_names_a_stuck_call_only_when_one_was_in_progress() {
        let stuck = stop_message(Some(("virDomainSetMemoryFlags", Duration::from_secs(2))));
        assert!(stuck.contains("virDomainSetMemoryFlags"), "{stuck}");
        assert!(stuck.contains("did not return in time"), "{stuck}");
        let idle = stop_message(None);
        assert!(!idle.contains("libvirt call"), "{idle}");
        assert!(idle.ends_with('\n'));
    }

    #[test]
    fn sighup_sets_reload_once() {
        install_handlers().expect("install");
        assert!(!take_reload());
        // SAFETY: raising a signal whose handler we installed above.
        let rc = unsafe { libc::raise(libc::SIGHUP) };
        assert_eq!(rc, 0);
        assert!(take_reload());
        assert!(!take_reload(), "cleared after being taken");
    }
}
