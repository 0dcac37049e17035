//! Accepting: until `WouldBlock` or [`MAX_ACCEPTS_PER_TURN`] (the rest next
//! turn, so a connection storm cannot starve chat traffic). Over the connection
//! cap a client gets a short refusal and is closed. When descriptors run out
//! (`EMFILE`/`ENFILE`), the reserve descriptor is given up for a moment so each
//! waiting client can be accepted, refused the same way and closed, instead of
//! hanging in the backlog; without a reserve (or on other errors such as
//! `ENOBUFS`) accepting pauses briefly instead of spinning on a listener that
//! stays readable, and resumes when a connection closes or the pause ends.

use std::fs::File;
use std::io::{self, Write};
use std::net::IpAddr;
use std::time::Duration;

use log::{debug, info, warn};
use mio::Interest;
use mio::net::TcpStream;

use super::deadlines::Timer;
use super::{Server, token};
use crate::conn::Conn;
use crate::hub::ConnId;
use crate::proto::chat::Stamp;
use crate::session::{Port, Refusal, Session, refusal};

/// How long accepting pauses after running out of descriptors.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Shortest interval between two "out of descriptors" warnings.
const EXHAUSTION_WARN_EVERY: Duration = Duration::from_secs(5);

/// Most connections accepted (or refused) per listener per loop turn.
const MAX_ACCEPTS_PER_TURN: usize = 256;

/// Opens the reserve descriptor (see the module docs).
pub(super) fn open_spare() -> Option<File> {
    match File::open("/dev/null") {
        Ok(f) => Some(f),
        Err(e) => {
            warn!(
                "cannot open a reserve descriptor (/dev/null): {e}; when descriptors run out, clients will wait instead of being refused"
            );
            None
        }
    }
}

/// True for "out of descriptors", per process or system-wide.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

impl Server {
    /// Accepts every pending connection on listener `i`.
    pub(super) fn accept(&mut self, i: usize) {
        if self.accept_paused {
            return;
        }
        let port = Port::from_listener(i);
        for _ in 0..MAX_ACCEPTS_PER_TURN {
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
                Err(e) if out_of_descriptors(&e) && self.spare_fd.is_some() => {
                    if !self.refuse_with_spare(i, port, &e) {
                        return;
                    }
                }
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS/ENOMEM: the listener stays readable, so
                    // pause instead of spinning; the pending clients wait in the backlog.
                    warn!(
                        "accept failed on {port:?} port: {e}; pausing accepts for {} ms",
                        ACCEPT_PAUSE.as_millis()
                    );
                    self.pause_accepting();
                    return;
                }
            }
        }
        // Bound reached with clients possibly still waiting: edge-triggered, so no
        // new event would come for them; try again next turn.
        if let Some(flag) = self.accept_again.get_mut(i) {
            *flag = true;
        }
    }

    /// Stops accepting for a moment (see the module docs).
    fn pause_accepting(&mut self) {
        self.accept_paused = true;
        self.timers
            .set(Timer::AcceptResume, self.core.now.mono + ACCEPT_PAUSE);
    }

    /// Turns a just-accepted client away (see [`refuse`]) and counts it.
    fn refuse(&mut self, socket: &mut TcpStream, port: Port, why: Refusal) {
        self.core.stats.refused += 1;
        let stamp = Stamp::from_unix_ms(self.core.now.unix_ms, self.core.clock.offset_secs());
        refuse(socket, port, why, stamp, &mut self.core.enc);
    }

    /// True when connections from `ip` count against `--max-per-ip`.
    fn counts_against_ip_limit(&self, ip: IpAddr) -> bool {
        let cfg = &self.core.cfg;
        cfg.max_per_ip > 0 && !(cfg.per_ip_exempt_loopback && ip.to_canonical().is_loopback())
    }

    /// Counts one more connection from `ip`; false (nothing counted) at the limit.
    fn take_ip(&mut self, ip: IpAddr) -> bool {
        let n = self.per_ip.entry(ip.to_canonical()).or_insert(0);
        if *n as usize >= self.core.cfg.max_per_ip {
            return false;
        }
        *n += 1;
        true
    }

    /// One connection from `ip` is gone.
    pub(super) fn release_ip(&mut self, ip: IpAddr) {
        let ip = ip.to_canonical();
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Out of descriptors: frees the reserve, accepts one waiting client, refuses
    /// and closes it, then takes the reserve back. False when nothing was waiting
    /// or the reserve could not be used (accepting is then paused).
    fn refuse_with_spare(&mut self, i: usize, port: Port, cause: &io::Error) -> bool {
        drop(self.spare_fd.take());
        let accepted = match self.listeners.get(i) {
            Some(listener) => listener.accept(),
            None => return false,
        };
        let more = match accepted {
            Ok((mut socket, peer)) => {
                self.refuse(&mut socket, port, Refusal::Full);
                drop(socket);
                debug!("{peer}: refused on {port:?} port: {cause}");
                let now = self.core.now.mono;
                if self
                    .exhaustion_warned
                    .is_none_or(|t| now >= t + EXHAUSTION_WARN_EVERY)
                {
                    self.exhaustion_warned = Some(now);
                    warn!(
                        "out of descriptors ({cause}): refusing new clients; {} refused so far",
                        self.core.stats.refused
                    );
                }
                true
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => false,
            Err(e) => {
                debug!("accept with the reserve descriptor failed: {e}");
                self.pause_accepting();
                false
            }
        };
        self.spare_fd = open_spare();
        if self.spare_fd.is_none() {
            self.pause_accepting();
            return false;
        }
        more
    }

    fn admit(&mut self, mut socket: TcpStream, peer: std::net::SocketAddr, port: Port) {
        if self.conns.len() >= self.core.cfg.max_connections {
            self.refuse(&mut socket, port, Refusal::Full);
            debug!("{peer}: refused, {} connections open", self.conns.len());
            return;
        }
        let ip_counted = self.counts_against_ip_limit(peer.ip());
        if ip_counted && !self.take_ip(peer.ip()) {
            self.refuse(&mut socket, port, Refusal::PerIp);
            debug!(
                "{peer}: refused, {} connections from this address",
                self.core.cfg.max_per_ip
            );
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
            if ip_counted {
                self.release_ip(peer.ip());
            }
            return;
        }
        self.serial = self.serial.wrapping_add(1);
        let id = ConnId {
            key: u32::try_from(key).unwrap_or(u32::MAX),
            serial: self.serial,
        };
        let session = Session::new(port, &self.core.cfg, self.core.now.mono);
        let conn = entry.insert(Conn::new(id, socket, peer, port, session));
        conn.ip_counted = ip_counted;
        self.core.stats.accepted += 1;
        info!("{id:?} {peer}: connected on {port:?} port");
        // Bytes may already be waiting (edge-triggered: no event will say so).
        self.read(key);
    }
}

/// Sends a refusal (best effort) and closes the socket right after.
fn refuse(socket: &mut TcpStream, port: Port, why: Refusal, stamp: Stamp, buf: &mut Vec<u8>) {
    buf.clear();
    refusal(port, why, stamp, buf);
    let _ = socket.write(buf);
    let _ = socket.shutdown(std::net::Shutdown::Both);
}
