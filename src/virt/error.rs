//! Errors from libvirt calls, copied from libvirt's thread-local last error.

use std::ffi::CStr;
use std::fmt;

use libvirt_sys as sys;

/// Where an error came from when libvirt itself reported nothing (a local
/// check in this crate failed before or after the C call).
pub const LOCAL_ERROR_CODE: i32 = -1;

/// A failed libvirt call: which call, on what, and what libvirt said.
///
/// Built right after the failing call on the same thread, from
/// `virGetLastError()`, which is then reset (`virResetLastError()`), so an
/// error can never be attributed to a later call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The libvirt function that failed, e.g. `virDomainPinVcpu`.
    pub call: &'static str,
    /// The object the call acted on (a domain name, a URI), if any.
    pub target: Option<String>,
    /// libvirt's `virErrorNumber` (`code`), or [`LOCAL_ERROR_CODE`].
    pub code: i32,
    /// libvirt's `virErrorDomain`: the subsystem that raised the error.
    pub origin: i32,
    /// libvirt's message (or ours for a local error).
    pub message: String,
}

/// What kind of failure an [`Error`] is, decided once from libvirt's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection to the daemon is gone: reconnect.
    ConnectionLost,
    /// The domain does not exist (any more).
    NoDomain,
    /// The driver does not implement the call.
    Unsupported,
    /// The connection may not do this (read-only, ACL).
    Denied,
    /// Anything else: the call failed, the connection is fine.
    Other,
}

/// The crate-wide result type for libvirt calls.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Copies and clears libvirt's last error for this thread.
    pub(crate) fn last(call: &'static str, target: Option<&str>) -> Self {
        // SAFETY: virGetLastError takes no arguments and returns either NULL
        // or a pointer to this thread's error slot, valid until the next
        // libvirt call on this thread; we copy it before making one.
        let ptr = unsafe { sys::virGetLastError() };
        let (code, origin, message) = if ptr.is_null() {
            (
                LOCAL_ERROR_CODE,
                0,
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
            (err.code, err.domain, message)
        };
        // SAFETY: no arguments; clears this thread's error slot, which we no
        // longer reference.
        unsafe { sys::virResetLastError() };
        Error {
            call,
            target: target.map(str::to_owned),
            code,
            origin,
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
            code: LOCAL_ERROR_CODE,
            origin: 0,
            message: message.into(),
        }
    }

    /// An error detected outside libvirt about `target` (e.g. a closed
    /// connection noticed by `virConnectIsAlive` returning 0).
    pub fn local_public(call: &'static str, target: &str, message: &str) -> Self {
        Error::local(call, Some(target), message)
    }

    /// The kind of failure (the one classification callers act on).
    pub fn kind(&self) -> ErrorKind {
        if self.is_connection_lost() {
            ErrorKind::ConnectionLost
        } else if self.is_no_domain() {
            ErrorKind::NoDomain
        } else if self.is_unsupported() {
            ErrorKind::Unsupported
        } else if self.is_denied() {
            ErrorKind::Denied
        } else {
            ErrorKind::Other
        }
    }

    /// The domain does not exist (any more): routine for a daemon, since
    /// guests come and go between two calls.
    pub fn is_no_domain(&self) -> bool {
        self.code == sys::VIR_ERR_NO_DOMAIN as i32
            || (self.code == sys::VIR_ERR_OPERATION_INVALID as i32
                && self.message.contains("not running"))
    }

    /// The connection to the daemon is gone (daemon restarted or killed).
    pub fn is_connection_lost(&self) -> bool {
        let lost = [
            sys::VIR_ERR_SYSTEM_ERROR,
            sys::VIR_ERR_RPC,
            sys::VIR_ERR_INVALID_CONN,
            sys::VIR_ERR_NO_CONNECT,
        ];
        lost.iter().any(|c| self.code == *c as i32)
    }

    /// The driver does not implement this call.
    pub fn is_unsupported(&self) -> bool {
        self.code == sys::VIR_ERR_NO_SUPPORT as i32
            || self.code == sys::VIR_ERR_OPERATION_UNSUPPORTED as i32
            || self.code == sys::VIR_ERR_ARGUMENT_UNSUPPORTED as i32
    }

    /// The connection may not do this (read-only connection, ACL).
    pub fn is_denied(&self) -> bool {
        self.code == sys::VIR_ERR_OPERATION_DENIED as i32
            || self.code == sys::VIR_ERR_ACCESS_DENIED as i32
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.call)?;
        if let Some(t) = &self.target {
            write!(f, "({t})")?;
        }
        write!(f, ": {}", self.message)?;
        if self.code != LOCAL_ERROR_CODE {
            write!(f, " (libvirt error {})", self.code)?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}
