//! SIGINT/SIGTERM (stop) and SIGHUP (reload) as flags the loop polls.

use std::sync::atomic::{AtomicBool, Ordering};

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
