//! One client connection: its socket, leftover input, output queue, its
//! session (which wire it speaks), and its life: open, lingering, dead.
//!
//! The lifecycle lives here: [`Conn::queue`] (with the output-limit policy:
//! hand the socket what it takes before dropping a client), [`Conn::end`]
//! (linger: say the last words, half-close, close) and [`Conn::kill`] (close
//! now). Each records the reason once in the turn's [`Books`], from which the
//! server tells the hub, in one place, that the user left.

pub mod out_queue;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::warn;
use mio::net::TcpStream;

use crate::hub::{ConnId, LeaveReason};
use crate::session::{Port, Session};

pub use out_queue::{Flush, OutQueue, Slice};

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// Finishing: flush what is queued, half-close, then discard input until EOF or
    /// the deadline, so the peer reads our last bytes instead of a reset.
    Linger {
        deadline: Instant,
        shut_down: bool,
    },
    /// Queued for removal at the end of the turn.
    Dead,
}

/// The turn's bookkeeping that connections write to: who has output to
/// flush, who is to be removed, whose end the hub has not heard of yet.
#[derive(Debug, Default)]
pub struct Books {
    /// Keys with new output, flushed at the end of the turn.
    pub dirty: Vec<usize>,
    /// Keys marked dead, reaped at the end of the turn.
    pub dead: Vec<usize>,
    /// Connections that ended this turn, with why; the hub hears of each once.
    pub ended: Vec<(ConnId, LeaveReason)>,
    /// Bytes written by [`Conn::queue`]'s early flush.
    pub bytes_out: u64,
    /// No early flush: output may reach a socket only after the turn's
    /// history is synced (`--fsync always`), so a client whose queue a busy
    /// turn fills past the limit is dropped instead of flushed early.
    pub hold_early_flush: bool,
}

/// One client.
#[derive(Debug)]
pub struct Conn {
    pub id: ConnId,
    pub socket: TcpStream,
    pub peer: SocketAddr,
    pub port: Port,
    pub session: Session,
    pub phase: Phase,
    /// Unconsumed input (an unfinished line, frame header or request, or input
    /// held while a join is pending); empty while idle.
    pub inbuf: Vec<u8>,
    pub out: OutQueue,
    /// WRITABLE interest is registered (only while output is pending).
    pub write_interest: bool,
    /// Already on the flush list this turn.
    pub dirty: bool,
    /// On the server's read-again list (its read budget ran out): read once
    /// next turn, not also for the readiness events it gets meanwhile.
    pub read_again: bool,
    /// Reading stopped while its session holds input for a pending join (the
    /// kept input reached the cap); read again once the join is answered.
    pub read_paused: bool,
    /// The most input ever kept at once (for tests of the hold cap).
    #[cfg(test)]
    pub inbuf_peak: usize,
    /// Counted against the per-address limit (released when reaped).
    pub ip_counted: bool,
    /// Why it ended (set once).
    pub ended: Option<LeaveReason>,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(
        id: ConnId,
        socket: TcpStream,
        peer: SocketAddr,
        port: Port,
        session: Session,
    ) -> Conn {
        Conn {
            id,
            socket,
            peer,
            port,
            session,
            phase: Phase::Open,
            inbuf: Vec::new(),
            out: OutQueue::new(),
            write_interest: false,
            dirty: false,
            read_again: false,
            read_paused: false,
            #[cfg(test)]
            inbuf_peak: 0,
            ip_counted: false,
            ended: None,
        }
    }

    /// True once the connection stopped taking new work.
    pub fn is_closing(&self) -> bool {
        self.phase != Phase::Open
    }

    /// The key in the server's table.
    pub fn key(&self) -> usize {
        self.id.key as usize
    }

    /// Queues a chunk, enforcing the output limit `limit`. Output is written at
    /// the end of the turn, so one busy turn can queue more than the limit for
    /// a client that reads fine: before dropping, the socket gets what it
    /// takes now, and only a client still over the limit is dropped
    /// ([`LeaveReason::OverLimit`]). False when the chunk was not queued.
    pub fn queue(&mut self, chunk: Rc<[u8]>, limit: usize, books: &mut Books) -> bool {
        if !self.make_room(chunk.len(), limit, books) {
            return false;
        }
        self.out.push(chunk);
        self.mark_dirty(books);
        true
    }

    /// Like [`Conn::queue`], for a range of a shared block (a broadcast).
    pub fn queue_slice(&mut self, slice: &Slice, limit: usize, books: &mut Books) -> bool {
        if !self.make_room(slice.len(), limit, books) {
            return false;
        }
        self.out.push_slice(slice);
        self.mark_dirty(books);
        true
    }

    /// True when `len` more bytes fit under `limit` (after handing the
    /// socket what it takes now); else the connection is dropped.
    fn make_room(&mut self, len: usize, limit: usize, books: &mut Books) -> bool {
        if self.phase == Phase::Dead {
            return false;
        }
        if self.out.pending_bytes() + len > limit {
            if self.phase == Phase::Open
                && !books.hold_early_flush
                && let Ok((n, _)) = self.out.flush(&mut self.socket)
            {
                books.bytes_out += n as u64;
            }
            if self.out.pending_bytes() + len > limit {
                warn!(
                    "{:?} {}: more than {limit} bytes of output pending, disconnecting",
                    self.id, self.peer
                );
                self.kill(LeaveReason::OverLimit, books);
                return false;
            }
        }
        true
    }

    /// Stops taking input, lets queued output drain, half-closes, then closes
    /// when the peer closes too or `linger` passes. A no-op unless open.
    pub fn end(&mut self, why: LeaveReason, now: Instant, linger: Duration, books: &mut Books) {
        if self.phase != Phase::Open {
            return;
        }
        self.phase = Phase::Linger {
            deadline: now + linger,
            shut_down: false,
        };
        self.inbuf = Vec::new();
        self.record(why, books);
        self.mark_dirty(books);
    }

    /// Closes now: output is dropped; the connection is reaped at the end of the turn.
    pub fn kill(&mut self, why: LeaveReason, books: &mut Books) {
        if self.phase == Phase::Dead {
            return;
        }
        self.phase = Phase::Dead;
        self.out.clear();
        self.inbuf = Vec::new();
        self.record(why, books);
        books.dead.push(self.key());
    }

    /// The first end is the one the hub hears of.
    fn record(&mut self, why: LeaveReason, books: &mut Books) {
        if self.ended.is_none() {
            self.ended = Some(why);
            books.ended.push((self.id, why));
        }
    }

    pub fn mark_dirty(&mut self, books: &mut Books) {
        if !self.dirty {
            self.dirty = true;
            books.dirty.push(self.key());
        }
    }

    /// A short protocol name for logs and `/stats`.
    pub fn protocol(&self) -> &'static str {
        self.session.protocol()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;

    use super::*;
    use crate::config::Config;

    fn pair() -> (Conn, std::net::TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (server, peer) = l.accept().expect("accept");
        server.set_nonblocking(true).expect("nonblocking");
        let id = ConnId { key: 3, serial: 9 };
        let cfg = Config::default();
        let session = Session::new(Port::Chat, &cfg, Instant::now());
        let conn = Conn::new(id, TcpStream::from_std(server), peer, Port::Chat, session);
        (conn, client)
    }

    #[test]
    fn the_first_end_is_recorded_once_with_its_reason() {
        let (mut c, _peer) = pair();
        let mut books = Books::default();
        c.end(
            LeaveReason::Exit,
            Instant::now(),
            Duration::from_secs(2),
            &mut books,
        );
        c.end(
            LeaveReason::Closed,
            Instant::now(),
            Duration::from_secs(2),
            &mut books,
        );
        c.kill(LeaveReason::Timeout, &mut books);
        assert_eq!(books.ended, vec![(c.id, LeaveReason::Exit)]);
        assert_eq!(books.dead, vec![3]);
        assert_eq!(c.phase, Phase::Dead);
    }

    #[test]
    fn a_reader_with_room_is_flushed_instead_of_dropped() {
        let (mut c, mut peer) = pair();
        let mut books = Books::default();
        // 40 KB through a 16 KiB limit: the socket takes it all.
        for _ in 0..40 {
            assert!(c.queue(Rc::from(vec![b'x'; 1000]), 16 * 1024, &mut books));
        }
        assert!(books.ended.is_empty());
        assert!(books.bytes_out > 0);
        c.out.flush(&mut c.socket).expect("flush");
        let mut got = vec![0u8; 40_000];
        peer.read_exact(&mut got).expect("read");
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped_at_the_limit() {
        let (mut c, _peer) = pair();
        let mut books = Books::default();
        let chunk: Rc<[u8]> = Rc::from(vec![b'x'; 64 * 1024]);
        let mut queued = 0;
        // The kernel's buffers take a few MB at most; 4,000 chunks are 256 MB.
        while queued < 4000 && c.queue(chunk.clone(), 256 * 1024, &mut books) {
            queued += 1;
        }
        assert!(queued < 4000, "never dropped");
        assert_eq!(books.ended, vec![(c.id, LeaveReason::OverLimit)]);
        assert_eq!(c.phase, Phase::Dead);
        assert_eq!(
            c.out.pending_bytes(),
            0,
            "output of a dropped client is freed"
        );
    }
}
