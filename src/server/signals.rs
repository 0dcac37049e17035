//! SIGINT and SIGTERM as poll events. Both are blocked for the process and read
//! from a `signalfd` registered with the poll, so Ctrl+C or a service manager's
//! stop makes the loop drain (everyone told, queued output flushed, WebSockets
//! closed with 1001) instead of killing the process mid-write.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The signals that stop the server.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

/// A non-blocking `signalfd` for [`STOP_SIGNALS`].
#[derive(Debug)]
pub(super) struct Signals {
    fd: OwnedFd,
}

impl Signals {
    /// Blocks the stop signals for the calling thread (and threads it starts
    /// later) and opens the descriptor they are read from. Call it before any
    /// other thread exists, or those threads would still take the default action.
    pub(super) fn install() -> io::Result<Signals> {
        // SAFETY: `set` is a plain C struct initialised by `sigemptyset` before use;
        // every pointer passed lives for the duration of the call; the descriptor
        // returned by `signalfd` is checked and then owned by `OwnedFd` alone.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for sig in STOP_SIGNALS {
                libc::sigaddset(&mut set, sig);
            }
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Signals {
                fd: OwnedFd::from_raw_fd(fd),
            })
        }
    }

    /// The next pending stop signal's number, if any.
    pub(super) fn next(&self) -> Option<u32> {
        // SAFETY: `info` is a plain C struct of the exact size `read` is given.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: the buffer is valid for `size` bytes and the descriptor is open.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), (&raw mut info).cast(), size) };
        (usize::try_from(n) == Ok(size)).then_some(info.ssi_signo)
    }

    pub(super) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
