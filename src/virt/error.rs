//! Errors from libvirt calls, copied from libvirt's thread-local last error,
//! and the one place they are classified ([`Error::kind`]).
//!
//! # How a failure is classified
//!
//! [`Error::kind`] looks only at libvirt's error code (`virErrorNumber`) and
//! the subsystem that raised it (`virErrorDomain`, here called the origin),
//! never at the message, which libvirt translates. What each rule rests on,
//! from libvirt's source:
//!
//! - **Connection lost.** The RPC client raises every failure of the link
//!   itself with origin `VIR_FROM_RPC` (`#define VIR_FROM_THIS VIR_FROM_RPC`
//!   in `src/rpc/virnetsocket.c` and `src/rpc/virnetclient.c`):
//!   - the daemon closed the socket: `virNetSocketReadWire` reports
//!     `virReportSystemError(EIO, "End of file while reading data")`, i.e.
//!     `VIR_ERR_SYSTEM_ERROR`;
//!   - a write to a dead daemon: `virReportSystemError(errno, "Cannot write
//!     data")` (`EPIPE`), `VIR_ERR_SYSTEM_ERROR`;
//!   - any later call on that client: `virNetClientSendInternal` reports
//!     `VIR_ERR_INTERNAL_ERROR` "client socket is closed"; a hangup seen in
//!     `virNetClientIOEventLoop` is `VIR_ERR_INTERNAL_ERROR` "received
//!     hangup event on socket".
//!
//!   So `VIR_ERR_SYSTEM_ERROR` and `VIR_ERR_INTERNAL_ERROR` count as lost
//!   **only with origin `VIR_FROM_RPC`**. The same `VIR_ERR_SYSTEM_ERROR`
//!   from the host side of a live connection (e.g. `virProcessSetAffinity`'s
//!   "cannot set CPU affinity", origin `VIR_FROM_NONE`, or a cgroup write,
//!   `VIR_FROM_CGROUP`) is a refused action, not a lost connection.
//!   `VIR_ERR_INVALID_CONN` (a connection object libvirt no longer accepts)
//!   and `VIR_ERR_NO_CONNECT` are lost whatever their origin.
//!   `src/remote/remote_driver.c`'s own errors (origin `VIR_FROM_REMOTE`)
//!   are about a reply's content, not the link.
//!
//!   Code and origin cannot tell everything apart here: the daemon's
//!   dispatcher (`src/remote/remote_daemon_dispatch.c`) also uses
//!   `VIR_FROM_RPC`, and sends some refusals back over a live connection as
//!   `VIR_ERR_INTERNAL_ERROR` (e.g. `virDomainGetVcpus` asking for more than
//!   `REMOTE_CPUMAPS_MAX` bytes of maps). Those classify as lost too; the
//!   daemon, the one caller that reconnects, adds `virConnectIsAlive`'s
//!   view (the client marks itself closed on every link failure above)
//!   before it drops a connection.
//! - **Protocol refusals.** `VIR_ERR_RPC` from `VIR_FROM_RPC` is what an
//!   older daemon answers for a procedure it lacks
//!   (`src/rpc/virnetserverprogram.c`: "unknown procedure"), on a connection
//!   that stays up: [`ErrorKind::Unsupported`]. The client raises the same
//!   code for a malformed packet, and then marks itself closed
//!   (`virNetClientMarkClose`), so the next call or `virConnectIsAlive`
//!   reports the loss.
//! - **No domain.** `VIR_ERR_NO_DOMAIN` from any origin (the domain was
//!   undefined, e.g. a transient guest destroyed). "Domain is not running"
//!   is `VIR_ERR_OPERATION_INVALID` raised by `virDomainObjCheckActive` and,
//!   for `VIR_DOMAIN_AFFECT_LIVE` (the only impact kvmsched uses), by
//!   `virDomainObjUpdateModificationImpact`, both in
//!   `src/conf/domain_conf.c`, origin `VIR_FROM_DOMAIN`. Only that
//!   combination counts: drivers raise `VIR_ERR_OPERATION_INVALID` with
//!   their own origin for other refusals too (the QEMU driver's "Unable to
//!   change memory of active domain without the balloon device"), which
//!   must be reported, not ignored. A driver-origin "inactive domain"
//!   refusal (the QEMU driver's `virDomainGetVcpus` on a stopped guest) is
//!   therefore [`ErrorKind::Other`]: logged once by the caller, never
//!   mistaken for something routine.
//! - **Unsupported.** `VIR_ERR_NO_SUPPORT` (a driver without the call, e.g.
//!   libvirt 7.0's test driver and `virConnectGetAllDomainStats`, reported
//!   by `virReportUnsupportedError`), `VIR_ERR_OPERATION_UNSUPPORTED` and
//!   `VIR_ERR_ARGUMENT_UNSUPPORTED` (a flag or stats group it lacks), and
//!   the protocol refusal above.
//! - **Denied.** `VIR_ERR_OPERATION_DENIED` (read-only connection) and
//!   `VIR_ERR_ACCESS_DENIED` (an ACL, origin `VIR_FROM_ACCESS`).

use std::ffi::CStr;
use std::fmt;

use libvirt_sys as sys;

/// What kind of failure an [`Error`] is, decided once by [`Error::kind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection to the daemon is gone (daemon restarted or killed):
    /// reconnect.
    ConnectionLost,
    /// The domain does not exist or no longer runs: routine for a daemon,
    /// since guests come and go between two calls.
    NoDomain,
    /// The driver or daemon does not implement this call, flag or group:
    /// use another way to get the figure.
    Unsupported,
    /// The connection may not do this (read-only connection, ACL).
    Denied,
    /// Anything else, including a refused action on a live connection and
    /// errors detected by this crate around a call.
    Other,
}

/// Where the error was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// libvirt reported it: its `virErrorNumber` and `virErrorDomain`.
    Libvirt { code: i32, origin: i32 },
    /// This crate detected it (a bad argument, a result libvirt's
    /// documentation rules out, or a failure libvirt left unexplained).
    Local,
}

/// A failed libvirt call: which call, on what, and what libvirt said.
///
/// Built right after the failing call on the same thread, from
/// `virGetLastError()`, which is then reset (`virResetLastError()`), so an
/// error can never be attributed to a later call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    call: &'static str,
    target: Option<String>,
    source: Source,
    message: String,
}

/// The crate-wide result type for libvirt calls.
pub type Result<T> = std::result::Result<T, Error>;

/// The classification table (see the module doc for the evidence).
fn classify(code: i32, origin: i32) -> ErrorKind {
    let is = |c: sys::virErrorNumber| code == c as i32;
    let from = |d: sys::virErrorDomain| origin == d as i32;
    if is(sys::VIR_ERR_INVALID_CONN) || is(sys::VIR_ERR_NO_CONNECT) {
        return ErrorKind::ConnectionLost;
    }
    if from(sys::VIR_FROM_RPC) && (is(sys::VIR_ERR_SYSTEM_ERROR) || is(sys::VIR_ERR_INTERNAL_ERROR))
    {
        return ErrorKind::ConnectionLost;
    }
    if from(sys::VIR_FROM_RPC) && is(sys::VIR_ERR_RPC) {
        return ErrorKind::Unsupported;
    }
    if is(sys::VIR_ERR_NO_DOMAIN)
        || (is(sys::VIR_ERR_OPERATION_INVALID) && from(sys::VIR_FROM_DOMAIN))
    {
        return ErrorKind::NoDomain;
    }
    if is(sys::VIR_ERR_NO_SUPPORT)
        || is(sys::VIR_ERR_OPERATION_UNSUPPORTED)
        || is(sys::VIR_ERR_ARGUMENT_UNSUPPORTED)
    {
        return ErrorKind::Unsupported;
    }
    if is(sys::VIR_ERR_OPERATION_DENIED) || is(sys::VIR_ERR_ACCESS_DENIED) {
        return ErrorKind::Denied;
    }
    ErrorKind::Other
}

impl Error {
    /// Copies and clears libvirt's last error for this thread.
    pub(crate) fn last(call: &'static str, target: Option<&str>) -> Self {
        // SAFETY: virGetLastError takes no arguments and returns either NULL
        // or a pointer to this thread's error slot, valid until the next
        // libvirt call on this thread; we copy it before making one.
        let ptr = unsafe { sys::virGetLastError() };
        let (source, message) = if ptr.is_null() {
            (
                Source::Local,
                "libvirt reported failure without an error".to_string(),
            )
        } else {
            // SAFETY: ptr is non-null and points to libvirt's thread-local
            // virError, valid for the duration of this read (no libvirt call
            // in between).
            let err = unsafe { &*ptr };
            let message = if err.message.is_null() {
                "(no message)".to_string()
            } else {
                // SAFETY: libvirt's message is a NUL-terminated string owned by
                // the error slot, alive until the reset below.
                unsafe { CStr::from_ptr(err.message) }
                    .to_string_lossy()
                    .into_owned()
            };
            (
                Source::Libvirt {
                    code: err.code,
                    origin: err.domain,
                },
                message,
            )
        };
        // SAFETY: no arguments; clears this thread's error slot, which we no
        // longer reference.
        unsafe { sys::virResetLastError() };
        Error {
            call,
            target: target.map(str::to_owned),
            source,
            message,
        }
    }

    /// An error detected by this crate around a call (bad argument, a result
    /// libvirt's documentation rules out).
    pub(crate) fn local(
        call: &'static str,
        target: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Error {
            call,
            target: target.map(str::to_owned),
            source: Source::Local,
            message: message.into(),
        }
    }

    /// An error as libvirt would report it, for classifier tests.
    #[cfg(test)]
    pub(crate) fn from_libvirt(
        call: &'static str,
        code: sys::virErrorNumber,
        origin: sys::virErrorDomain,
        message: &str,
    ) -> Self {
        Error {
            call,
            target: None,
            source: Source::Libvirt {
                code: code as i32,
                origin: origin as i32,
            },
            message: message.to_string(),
        }
    }

    /// What kind of failure this is, from libvirt's code and origin only
    /// (never the message, which libvirt translates). Errors detected by
    /// this crate are [`ErrorKind::Other`].
    pub fn kind(&self) -> ErrorKind {
        match self.source {
            Source::Libvirt { code, origin } => classify(code, origin),
            Source::Local => ErrorKind::Other,
        }
    }

    /// The libvirt function that failed, e.g. `virDomainPinVcpu`.
    pub fn call(&self) -> &'static str {
        self.call
    }

    /// The object the call acted on (a domain name, a URI), if any.
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// libvirt's `virErrorNumber`, or `None` when this crate detected the
    /// error (or libvirt failed without setting one).
    pub fn code(&self) -> Option<i32> {
        match self.source {
            Source::Libvirt { code, .. } => Some(code),
            Source::Local => None,
        }
    }

    /// libvirt's `virErrorDomain` (the subsystem that raised the error), or
    /// `None` for an error detected by this crate.
    pub fn origin(&self) -> Option<i32> {
        match self.source {
            Source::Libvirt { origin, .. } => Some(origin),
            Source::Local => None,
        }
    }

    /// libvirt's message (or ours for a local error), for people only.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.call)?;
        if let Some(t) = &self.target {
            write!(f, "({t})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(code) = self.code() {
            write!(f, " (libvirt error {code})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: u32, origin: u32, message: &str) -> Error {
        Error::from_libvirt("virDomainPinVcpu", code, origin, message)
    }

    #[test]
    fn rpc_origin_connection_failures_are_lost() {
        // virnetsocket.c: read() == 0 → virReportSystemError(EIO, "End of file
        // while reading data"); write() EPIPE → "Cannot write data".
        let eof = err(
            sys::VIR_ERR_SYSTEM_ERROR,
            sys::VIR_FROM_RPC,
            "End of file while reading data: Input/output error",
        );
        assert_eq!(eof.kind(), ErrorKind::ConnectionLost);
        let pipe = err(
            sys::VIR_ERR_SYSTEM_ERROR,
            sys::VIR_FROM_RPC,
            "Cannot write data: Broken pipe",
        );
        assert_eq!(pipe.kind(), ErrorKind::ConnectionLost);
        // virnetclient.c: a call on a closed client.
        let closed = err(
            sys::VIR_ERR_INTERNAL_ERROR,
            sys::VIR_FROM_RPC,
            "client socket is closed",
        );
        assert_eq!(closed.kind(), ErrorKind::ConnectionLost);
        let invalid = err(
            sys::VIR_ERR_INVALID_CONN,
            sys::VIR_FROM_NONE,
            "invalid connection pointer",
        );
        assert_eq!(invalid.kind(), ErrorKind::ConnectionLost);
        let noconn = err(
            sys::VIR_ERR_NO_CONNECT,
            sys::VIR_FROM_REMOTE,
            "no connection driver",
        );
        assert_eq!(noconn.kind(), ErrorKind::ConnectionLost);
    }

    #[test]
    fn host_side_system_error_is_not_lost() {
        // virprocess.c (VIR_FROM_NONE): sched_setaffinity refusing a pin.
        let affinity = err(
            sys::VIR_ERR_SYSTEM_ERROR,
            sys::VIR_FROM_NONE,
            "cannot set CPU affinity on process 4242: Invalid argument",
        );
        assert_eq!(affinity.kind(), ErrorKind::Other);
        // vircgroup.c (VIR_FROM_CGROUP): a cpuset write refused.
        let cgroup = err(
            sys::VIR_ERR_SYSTEM_ERROR,
            sys::VIR_FROM_CGROUP,
            "Unable to write to '/sys/fs/cgroup/cpuset.cpus': Permission denied",
        );
        assert_eq!(cgroup.kind(), ErrorKind::Other);
        let qemu = err(sys::VIR_ERR_SYSTEM_ERROR, sys::VIR_FROM_QEMU, "failed");
        assert_eq!(qemu.kind(), ErrorKind::Other);
        // An internal error that is not the RPC client's is not lost either.
        let internal = err(
            sys::VIR_ERR_INTERNAL_ERROR,
            sys::VIR_FROM_QEMU,
            "client socket is closed",
        );
        assert_eq!(internal.kind(), ErrorKind::Other);
    }

    #[test]
    fn a_daemon_lacking_a_procedure_is_unsupported_not_lost() {
        // virnetserverprogram.c answers an unknown procedure with
        // VIR_ERR_RPC from VIR_FROM_RPC, on a connection that stays up.
        let e = err(
            sys::VIR_ERR_RPC,
            sys::VIR_FROM_RPC,
            "unknown procedure: 344",
        );
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = err(sys::VIR_ERR_NO_SUPPORT, sys::VIR_FROM_RPC, "x");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = err(
            sys::VIR_ERR_NO_SUPPORT,
            sys::VIR_FROM_DOMAIN,
            "this function is not supported by the connection driver: virConnectGetAllDomainStats",
        );
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = err(sys::VIR_ERR_OPERATION_UNSUPPORTED, sys::VIR_FROM_QEMU, "x");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        let e = err(sys::VIR_ERR_ARGUMENT_UNSUPPORTED, sys::VIR_FROM_QEMU, "x");
        assert_eq!(e.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn domain_gone_is_decided_by_code_and_origin_in_any_language() {
        let e = err(
            sys::VIR_ERR_NO_DOMAIN,
            sys::VIR_FROM_QEMU,
            "Domaine non trouvé : aucun domaine ne correspond à l'UUID",
        );
        assert_eq!(e.kind(), ErrorKind::NoDomain);
        // virDomainObjCheckActive (domain_conf.c, VIR_FROM_DOMAIN), translated.
        let e = err(
            sys::VIR_ERR_OPERATION_INVALID,
            sys::VIR_FROM_DOMAIN,
            "Requested operation is not valid: le domaine n'est pas en cours d'exécution",
        );
        assert_eq!(e.kind(), ErrorKind::NoDomain);
        // The same code from a driver is about something else (no balloon
        // device, a transient domain), even when the English words match.
        let e = err(sys::VIR_ERR_OPERATION_INVALID, sys::VIR_FROM_QEMU, "Requested operation is not valid: Unable to change memory of active domain without the balloon device");
        assert_eq!(e.kind(), ErrorKind::Other);
    }

    #[test]
    fn denied_and_local_errors() {
        let e = err(
            sys::VIR_ERR_OPERATION_DENIED,
            sys::VIR_FROM_NONE,
            "read only access",
        );
        assert_eq!(e.kind(), ErrorKind::Denied);
        let e = err(
            sys::VIR_ERR_ACCESS_DENIED,
            sys::VIR_FROM_ACCESS,
            "access denied",
        );
        assert_eq!(e.kind(), ErrorKind::Denied);
        let e = Error::local(
            "virDomainGetVcpus",
            Some("d"),
            "not running, connection lost",
        );
        assert_eq!(e.kind(), ErrorKind::Other);
        assert_eq!(e.code(), None);
    }
}
