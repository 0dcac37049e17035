//! The server's `/stats` during a run (`--stats-addr`, for `--slow-readers`):
//! a helper thread asks for it every [`INTERVAL`] over a fresh blocking
//! HTTP/1.1 connection (loopback only, short timeouts) and stores
//! `dropped_slow_clients` in [`Shared`], where the poll loops look at it.
//! Blocking here never holds up a poll loop. A failed request is skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::shared::Shared;

/// Time between two requests.
const INTERVAL: Duration = Duration::from_millis(100);
/// Connect, read and write limit of one request.
const LIMIT: Duration = Duration::from_secs(2);
/// Largest response read.
const MAX_RESPONSE: u64 = 1 << 20;

/// Polls `addr` until `stop` is set.
pub fn poll(addr: SocketAddr, shared: &Shared, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        if let Some(n) = fetch(addr).as_deref().and_then(dropped_slow) {
            shared.set_dropped(n);
        }
        std::thread::sleep(INTERVAL);
    }
}

/// The body of one `GET /stats` (with the head; the field is found by name).
fn fetch(addr: SocketAddr) -> Option<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&addr, LIMIT).ok()?;
    s.set_read_timeout(Some(LIMIT)).ok()?;
    s.set_write_timeout(Some(LIMIT)).ok()?;
    s.write_all(b"GET /stats HTTP/1.1\r\nHost: chat-load\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut body = Vec::new();
    s.take(MAX_RESPONSE).read_to_end(&mut body).ok()?;
    Some(body)
}

/// `"dropped_slow_clients":N` in a `/stats` response.
pub fn dropped_slow(response: &[u8]) -> Option<u64> {
    let key = b"\"dropped_slow_clients\":";
    let at = response.windows(key.len()).position(|w| w == key)? + key.len();
    let digits = response.get(at..)?;
    let end = digits
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    std::str::from_utf8(digits.get(..end)?).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_dropped_count() {
        let r = b"HTTP/1.1 200 OK\r\n\r\n{\"users\":3,\"dropped_slow_clients\":42,\"x\":1}";
        assert_eq!(dropped_slow(r), Some(42));
        assert_eq!(dropped_slow(b"{\"dropped_slow_clients\":7}"), Some(7));
        assert_eq!(dropped_slow(b"{\"users\":3}"), None);
        assert_eq!(dropped_slow(b"{\"dropped_slow_clients\":}"), None);
        assert_eq!(
            dropped_slow(b"{\"dropped_slow_clients\":99999999999999999999999}"),
            None
        );
    }
}
