//! Accepting: until `WouldBlock`; over the connection cap a client gets a short
//! refusal and is closed; when descriptors run out, accepting pauses briefly
//! (instead of spinning on a listener that stays readable) and resumes when a
//! connection closes or the pause ends.

use std::io::{self, Write};
use std::time::Duration;

use log::{debug, info, warn};
use mio::Interest;
use mio::net::TcpStream;

use super::{Server, token};
use crate::conn::{Conn, Port};
use crate::hub::ConnId;

/// How long accepting pauses after running out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

impl Server {
    /// Accepts every pending connection on listener `i`.
    pub(super) fn accept(&mut self, i: usize) {
        if self.accept_paused_until.is_some() {
            return;
        }
        let port = Port::from_listener(i);
        loop {
            let Some(listener) = self.listeners.get(i) else {
                return;
            };
            match listener.accept() {
                Ok((socket, peer)) => self.admit(socket, peer, port),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                    ) => {}
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS/ENOMEM: the listener stays readable, so
                    // pause instead of spinning; the pending clients wait in the backlog.
                    warn!(
                        "accept failed on {port:?} port: {e}; pausing accepts for {} ms",
                        ACCEPT_PAUSE.as_millis()
                    );
                    self.accept_paused_until = Some(self.core.now.mono + ACCEPT_PAUSE);
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut socket: TcpStream, peer: std::net::SocketAddr, port: Port) {
        if self.conns.len() >= self.core.cfg.max_connections {
            self.core.stats.refused += 1;
            refuse(&mut socket, port);
            debug!("{peer}: refused, {} connections open", self.conns.len());
            return;
        }
        // Chat latency matters more than packet count: no Nagle delay.
        let _ = socket.set_nodelay(true);
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) =
            self.poll
                .registry()
                .register(&mut socket, token::conn(key), Interest::READABLE)
        {
            warn!("{peer}: cannot register connection: {e}");
            return;
        }
        self.serial = self.serial.wrapping_add(1);
        let id = ConnId {
            key: u32::try_from(key).unwrap_or(u32::MAX),
            serial: self.serial,
        };
        let cfg = &self.core.cfg;
        let now = self.core.now.mono;
        let timeout = match port {
            Port::Chat => cfg.first_line_timeout,
            Port::Ws | Port::Http => cfg.handshake_timeout,
        };
        entry.insert(Conn::new(
            id,
            socket,
            peer,
            port,
            cfg.max_line_bytes,
            now + timeout,
            now,
        ));
        self.core.stats.accepted += 1;
        info!("{id:?} {peer}: connected on {port:?} port");
        // Bytes may already be waiting (edge-triggered: no event will say so).
        self.read(key);
    }
}

/// Best-effort refusal for a client over the connection cap.
fn refuse(socket: &mut TcpStream, port: Port) {
    let msg: &[u8] = match port {
        Port::Chat => {
            b"{\"type\":\"error\",\"sender\":\"Server\",\"code\":\"server_full\",\"message\":\"The server is full. Please try again later.\",\"timestamp\":\"00:00:00\"}\n"
        }
        Port::Ws | Port::Http => {
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\nServer is full.\n"
        }
    };
    let _ = socket.write(msg);
    let _ = socket.shutdown(std::net::Shutdown::Both);
}
