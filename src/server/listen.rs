//! Opening a listening socket: mio's `bind` with a larger backlog, or, with
//! `--reuse-port`, a socket made here with `SO_REUSEADDR` and `SO_REUSEPORT`
//! set before `bind` (mio 1.x offers no way to set options before binding),
//! so several nodes on one machine can listen on the same ports.

use std::io;
use std::net::SocketAddr;

use log::debug;
use mio::net::TcpListener;

use super::ServerError;

/// Pending connections the kernel may queue before `accept` (capped by
/// `net.core.somaxconn`, 4096 on current Linux).
const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking listener on `addr`; `flag` names the flag that changes its
/// port in the error. With `reuse_port`, other sockets that also set
/// `SO_REUSEPORT` (same user) may bind the same address, and the kernel spreads
/// new connections over them.
pub(super) fn listen(
    addr: SocketAddr,
    flag: &'static str,
    reuse_port: bool,
) -> Result<TcpListener, ServerError> {
    let bound = if reuse_port {
        bind_reuse_port(addr)
    } else {
        TcpListener::bind(addr).inspect(raise_backlog)
    };
    bound.map_err(|source| ServerError::Bind { addr, flag, source })
}

/// mio listens with a backlog of 128. A join storm (hundreds of clients connecting
/// at once while a turn is busy) overflows that, and every dropped SYN stalls its
/// client for the 1 s retransmit timeout. Calling `listen(2)` again on a listening
/// socket only changes its backlog (Linux, BSDs, macOS). Best effort: on failure
/// the listener keeps working with the smaller queue.
#[cfg(unix)]
fn raise_backlog(listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: `listen` takes a descriptor and an integer and touches no memory;
    // the descriptor is owned by `listener` and open for this whole call.
    let rc = unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
    if rc != 0 {
        debug!(
            "listen backlog stays at mio's default: {}",
            io::Error::last_os_error()
        );
    }
}

#[cfg(not(unix))]
fn raise_backlog(_listener: &TcpListener) {}

/// `socket` (non-blocking, close-on-exec), `SO_REUSEADDR` and `SO_REUSEPORT`,
/// `bind`, `listen` with [`LISTEN_BACKLOG`]. The descriptor is owned from the
/// moment it exists, so every early return closes it.
#[cfg(target_os = "linux")]
fn bind_reuse_port(addr: SocketAddr) -> io::Result<TcpListener> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: `socket` takes three integers and touches no memory.
    let raw = unsafe {
        libc::socket(
            family,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a descriptor `socket` just opened and nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    for option in [libc::SO_REUSEADDR, libc::SO_REUSEPORT] {
        let on: libc::c_int = 1;
        // SAFETY: the descriptor is open (owned by `fd`); the value pointer and
        // its length describe `on`, which lives for the whole call.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let (storage, len) = sockaddr_of(addr);
    // SAFETY: `storage` holds a `sockaddr_in` or `sockaddr_in6` of `len` bytes
    // (see `sockaddr_of`) and lives for the whole call; the descriptor is open.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `listen` takes a descriptor (open, owned by `fd`) and an integer.
    if unsafe { libc::listen(fd.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from_std(std::net::TcpListener::from(fd)))
}

#[cfg(not(target_os = "linux"))]
fn bind_reuse_port(_addr: SocketAddr) -> io::Result<TcpListener> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "--reuse-port is only supported on Linux",
    ))
}

/// `addr` as the C socket address `bind` takes, and its length.
#[cfg(target_os = "linux")]
fn sockaddr_of(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: `sockaddr_storage` is a plain C struct of integers and byte
    // arrays, for which all zeroes is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: all zeroes is a valid `sockaddr_in` (integers only).
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            // SAFETY: `sockaddr_storage` is larger than and aligned for every
            // socket address type, `sockaddr_in` included; the write is in bounds.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>(),
                    sin,
                )
            };
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: all zeroes is a valid `sockaddr_in6` (integers and bytes).
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            // SAFETY: as above, for `sockaddr_in6`.
            unsafe {
                std::ptr::write(
                    (&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>(),
                    sin6,
                )
            };
            size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().expect("addr")
    }

    fn in_use(r: Result<TcpListener, ServerError>) -> bool {
        matches!(r, Err(ServerError::Bind { ref source, .. })
            if source.kind() == io::ErrorKind::AddrInUse)
    }

    #[test]
    fn reuse_port_listeners_share_a_port() {
        let first = listen(loopback(), "--tcp-port", true).expect("first");
        let addr = first.local_addr().expect("addr");
        assert_ne!(addr.port(), 0);
        let second = listen(addr, "--tcp-port", true).expect("second on the same port");
        assert_eq!(second.local_addr().expect("addr"), addr);
        // A third without SO_REUSEPORT is still refused.
        assert!(in_use(listen(addr, "--tcp-port", false)));
    }

    #[test]
    fn without_reuse_port_the_second_bind_fails() {
        let first = listen(loopback(), "--ws-port", false).expect("first");
        let addr = first.local_addr().expect("addr");
        let err = listen(addr, "--ws-port", false);
        assert!(in_use(err), "expected AddrInUse");
        // Asking for SO_REUSEPORT does not help when the holder did not set it.
        assert!(in_use(listen(addr, "--ws-port", true)));
    }

    #[test]
    fn a_reuse_port_listener_accepts() {
        let listener = listen(loopback(), "--http-port", true).expect("listen");
        let addr = listener.local_addr().expect("addr");
        let mut client =
            TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // Non-blocking: poll accept for at most 5 s.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let (mut server_side, _) = loop {
            match listener.accept() {
                Ok(pair) => break pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no connection to accept"
                    );
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        server_side.write_all(b"hi").expect("write");
        let mut buf = [0u8; 2];
        client.read_exact(&mut buf).expect("read");
        assert_eq!(&buf, b"hi");
    }

    #[test]
    fn reuse_port_binds_ipv6_loopback_when_available() {
        let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
            return; // No IPv6 on this machine.
        };
        drop(probe);
        let first = listen("[::1]:0".parse().expect("addr"), "--tcp-port", true).expect("v6");
        let addr = first.local_addr().expect("addr");
        assert!(addr.is_ipv6());
        listen(addr, "--tcp-port", true).expect("second v6");
    }
}
