//! The poll loop: one `mio::Poll` owns every listener and connection. It moves
//! bytes, runs timers and dispatches decoded input; protocol rules live in
//! `proto`, chat rules in `hub`.
//!
//! One turn:
//! 1. poll (timeout: zero while work is pending, else the next timer);
//! 2. accept / read / write for each event; input is decoded and fed to the hub;
//! 3. connections that used up their read budget are read again;
//! 4. timers: handshake and idle deadlines, WebSocket pings, lingering closes;
//! 5. reap connections marked dead (the hub hears about abrupt disconnects);
//! 6. the hub's end of turn (debounced presence), then delivery: every message
//!    is encoded once per wire format and the bytes shared by all recipients;
//! 7. flush every connection with new output before sleeping.
//!
//! Closing is deferred: a connection over a limit is marked, not freed, while
//! other code may still hold its key.
//!
//! Stopping (SIGINT / SIGTERM, when [`Server::stop_on_signals`] was called): the
//! listeners stop accepting, every user gets a notice, each connection flushes
//! what is queued (WebSockets end with a 1001 close frame) and half-closes; `run`
//! returns once all are closed or the linger timeout passes. A second signal
//! ends it at once.

mod accept;
mod clock;
mod deliver;
mod http;
mod input;
mod signals;
mod timers;
pub mod token;

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use slab::Slab;

use crate::config::Config;
use crate::conn::{Conn, Flush, Phase, Port, Wire};
use crate::hub::{Hub, Now};
use crate::proto::ws::close::CloseCode;
use crate::proto::ws::handshake::HandshakeConfig;
use crate::web::static_files::StaticFiles;

use clock::Clock;
use token::Token2;

/// Size of the loop-owned read buffer every connection reads into.
const SCRATCH_BYTES: usize = 64 * 1024;

/// The addresses the listeners actually bound (port 0 resolved).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundAddrs {
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub http: SocketAddr,
}

/// Why the server could not start or go on.
#[derive(Debug)]
pub enum ServerError {
    /// A listener could not bind; names the port and the flag that changes it.
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        source: io::Error,
    },
    /// `--assets DIR` is unusable.
    Assets { dir: String, source: io::Error },
    /// The poll itself failed.
    Io(io::Error),
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerError::Bind { addr, flag, source } => {
                if source.kind() == io::ErrorKind::AddrInUse {
                    write!(
                        f,
                        "port {} is already in use on {}: stop the other program or choose another port with {flag} PORT (0 = any free port)",
                        addr.port(),
                        addr.ip()
                    )
                } else {
                    write!(f, "cannot listen on {addr} ({flag}): {source}")
                }
            }
            ServerError::Assets { dir, source } => {
                write!(f, "cannot serve --assets {dir}: {source}")
            }
            ServerError::Io(e) => write!(f, "poll failed: {e}"),
        }
    }
}

impl std::error::Error for ServerError {}

/// Counters for `/stats`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub accepted: u64,
    pub refused: u64,
}

/// Everything a connection handler may touch besides the connection itself.
pub(crate) struct Core {
    pub cfg: Config,
    pub hub: Hub,
    pub files: StaticFiles,
    pub handshake: HandshakeConfig,
    pub stats: Stats,
    /// Open connections by protocol, refreshed by the timer sweep (for `/stats`).
    pub conn_counts: Vec<(&'static str, usize)>,
    pub started: Instant,
    pub now: Now,
    pub clock: Clock,
    /// Keys with new output, flushed at the end of the turn.
    pub dirty: Vec<usize>,
    /// Keys marked dead, reaped at the end of the turn.
    pub dead: Vec<usize>,
    /// Keys whose read budget ran out; read again next turn without waiting.
    pub ready_again: Vec<usize>,
    /// Reusable buffers for WebSocket events and replies, and for encoding.
    pub ws_events: Vec<crate::proto::ws::session::WsEvent>,
    pub ws_reply: Vec<u8>,
    pub enc: Vec<u8>,
}

/// A stop in progress.
#[derive(Debug)]
struct Drain {
    /// When whatever is still open is cut.
    deadline: Instant,
    /// Connections open when the stop began.
    initial: usize,
    /// Every connection was told to finish (done once, after the goodbye is queued).
    closed_all: bool,
}

/// The server: listeners, connections and the chat hub on one thread.
pub struct Server {
    poll: Poll,
    /// Chat, WebSocket, HTTP; emptied (closed) when a stop begins.
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    scratch: Vec<u8>,
    serial: u32,
    accept_paused_until: Option<Instant>,
    /// Listeners that hit the per-turn accept bound; accepted again next turn.
    accept_again: [bool; 3],
    /// A descriptor held in reserve: when `accept` fails for want of descriptors,
    /// it is closed so the waiting client can be accepted, told the server is
    /// full and closed, instead of hanging in the backlog.
    spare_fd: Option<std::fs::File>,
    /// When the last "out of descriptors" warning was logged.
    exhaustion_warned: Option<Instant>,
    /// Open connections per client address, for `--max-per-ip`.
    per_ip: std::collections::HashMap<std::net::IpAddr, u32>,
    /// SIGINT / SIGTERM as poll events (see [`Server::stop_on_signals`]).
    signals: Option<signals::Signals>,
    /// Set once a stop signal came: the loop is draining.
    drain: Option<Drain>,
    /// Reusable list of broadcast recipients.
    member_scratch: Vec<crate::hub::ConnId>,
    next_sweep: Instant,
    core: Core,
}

impl Server {
    /// Binds every listener (all or nothing) and prepares the loop.
    pub fn bind(cfg: Config) -> Result<Server, ServerError> {
        let files = match &cfg.assets_dir {
            Some(dir) => StaticFiles::from_dir(dir).map_err(|source| ServerError::Assets {
                dir: dir.display().to_string(),
                source,
            })?,
            None => StaticFiles::embedded(),
        };
        let poll = Poll::new().map_err(ServerError::Io)?;
        let mut listeners = vec![
            listen(SocketAddr::new(cfg.host, cfg.tcp_port), "--tcp-port")?,
            listen(SocketAddr::new(cfg.host, cfg.ws_port), "--ws-port")?,
            listen(SocketAddr::new(cfg.host, cfg.http_port), "--http-port")?,
        ];
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, token::listener(i), Interest::READABLE)
                .map_err(ServerError::Io)?;
        }
        let now = Instant::now();
        let clock = Clock::new();
        let handshake = HandshakeConfig {
            max_header_bytes: cfg.max_header_bytes,
            allowed_origins: cfg.allowed_origins.clone(),
        };
        let core = Core {
            hub: Hub::new(cfg.hub.clone()),
            files,
            handshake,
            stats: Stats::default(),
            conn_counts: Vec::new(),
            started: now,
            now: Now {
                stamp: clock.stamp(),
                mono: now,
            },
            clock,
            dirty: Vec::new(),
            dead: Vec::new(),
            ready_again: Vec::new(),
            ws_events: Vec::new(),
            ws_reply: Vec::new(),
            enc: Vec::new(),
            cfg,
        };
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_BYTES],
            serial: 0,
            accept_paused_until: None,
            accept_again: [false; 3],
            spare_fd: accept::open_spare(),
            exhaustion_warned: None,
            per_ip: std::collections::HashMap::new(),
            signals: None,
            drain: None,
            member_scratch: Vec::new(),
            next_sweep: now,
            core,
        })
    }

    /// The addresses actually bound.
    pub fn local_addrs(&self) -> io::Result<BoundAddrs> {
        Ok(BoundAddrs {
            tcp: self.listener_addr(0)?,
            ws: self.listener_addr(1)?,
            http: self.listener_addr(2)?,
        })
    }

    fn listener_addr(&self, i: usize) -> io::Result<SocketAddr> {
        match self.listeners.get(i) {
            Some(l) => l.local_addr(),
            None => Err(io::Error::new(io::ErrorKind::NotFound, "listener closed")),
        }
    }

    /// Makes SIGINT and SIGTERM stop the server gracefully (see the module docs).
    /// Call it before any other thread is started: the signals are blocked for
    /// this thread and those it starts afterwards.
    pub fn stop_on_signals(&mut self) -> io::Result<()> {
        let signals = signals::Signals::install()?;
        self.poll.registry().register(
            &mut SourceFd(&signals.raw_fd()),
            token::SIGNALS,
            Interest::READABLE,
        )?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Runs the loop until a stop signal's drain completes (`Ok`) or the poll
    /// itself fails.
    pub fn run(&mut self) -> Result<(), ServerError> {
        let mut events = Events::with_capacity(1024);
        loop {
            self.turn(&mut events).map_err(ServerError::Io)?;
            if let Some(drain) = &self.drain
                && (self.conns.is_empty() || self.core.now.mono >= drain.deadline)
            {
                info!(
                    "stopped: {} connection(s) closed cleanly, {} cut at the deadline",
                    drain.initial.saturating_sub(self.conns.len()),
                    self.conns.len()
                );
                return Ok(());
            }
        }
    }

    /// A stop signal: the first starts the drain, the next one ends it now.
    fn on_signal(&mut self) {
        let Some(signals) = &self.signals else {
            return;
        };
        while let Some(signo) = signals.next() {
            let now = self.core.now.mono;
            if let Some(drain) = &mut self.drain {
                warn!("signal {signo} again: stopping now");
                drain.deadline = now;
                continue;
            }
            info!(
                "signal {signo}: stopping; draining {} connection(s) (at most {} ms)",
                self.conns.len(),
                self.core.cfg.linger_timeout.as_millis()
            );
            // Closed, not just ignored: newcomers are refused at once instead
            // of waiting in the backlog of a server that is going away.
            for mut l in self.listeners.drain(..) {
                let _ = self.poll.registry().deregister(&mut l);
            }
            self.accept_again = [false; 3];
            self.accept_paused_until = None;
            self.core.hub.shutdown(
                "The server is shutting down. Goodbye!".into(),
                self.core.now,
            );
            self.drain = Some(Drain {
                deadline: now + self.core.cfg.linger_timeout,
                initial: self.conns.len(),
                closed_all: false,
            });
        }
    }

    /// After the goodbye notice is queued: every connection ends its output
    /// (WebSockets with a 1001 close frame) and lingers.
    fn close_all_for_drain(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            if conn.phase != Phase::Open {
                continue;
            }
            if let Wire::Ws(ws) = &mut conn.wire
                && !ws.session.is_closing()
            {
                let mut reply = std::mem::take(&mut self.core.ws_reply);
                reply.clear();
                ws.session
                    .close(CloseCode::GOING_AWAY, "server shutting down", &mut reply);
                input::queue(&mut self.core, conn, std::rc::Rc::from(reply.as_slice()));
                self.core.ws_reply = reply;
            }
            input::linger(&mut self.core, conn);
        }
    }

    /// One turn of the loop (see the module docs).
    fn turn(&mut self, events: &mut Events) -> io::Result<()> {
        let timeout = self.poll_timeout(Instant::now());
        match self.poll.poll(events, Some(timeout)) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            other => other?,
        }
        self.tick();
        let again = std::mem::take(&mut self.core.ready_again);
        for event in events.iter() {
            match token::decode(event.token()) {
                Token2::Listener(i) => self.accept(i),
                Token2::Signals => self.on_signal(),
                Token2::Conn(key) => {
                    if event.is_writable() {
                        self.flush(key);
                    }
                    // A connection whose budget ran out last turn is read once,
                    // below, however many readiness events it got meanwhile.
                    let queued = self.conns.get(key).is_some_and(|c| c.read_again);
                    if !queued
                        && (event.is_readable() || event.is_read_closed() || event.is_error())
                    {
                        self.read(key);
                    }
                }
            }
        }
        for key in again {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.read_again = false;
            }
            self.read(key);
        }
        for i in 0..self.listeners.len() {
            if std::mem::take(&mut self.accept_again[i]) {
                self.accept(i);
            }
        }
        if self
            .accept_paused_until
            .is_some_and(|t| self.core.now.mono >= t)
        {
            self.accept_paused_until = None;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
        if self.core.now.mono >= self.next_sweep {
            self.next_sweep = self.core.now.mono + timers::SWEEP_INTERVAL;
            self.sweep();
        }
        // Delivery can drop recipients over their output limit; their departure is
        // news for the others, so repeat until nobody new is dead.
        loop {
            self.reap();
            self.core.hub.end_turn(self.core.now);
            self.deliver();
            if self.core.dead.is_empty() {
                break;
            }
        }
        if let Some(drain) = &mut self.drain
            && !drain.closed_all
        {
            drain.closed_all = true;
            self.close_all_for_drain();
        }
        self.flush_dirty();
        Ok(())
    }

    /// Zero while work is pending, else time to the nearest timer.
    fn poll_timeout(&self, now: Instant) -> Duration {
        if !self.core.ready_again.is_empty()
            || !self.core.dead.is_empty()
            || self.accept_again.contains(&true)
        {
            return Duration::ZERO;
        }
        let mut next = self.next_sweep;
        if let Some(t) = self.accept_paused_until {
            next = next.min(t);
        }
        if let Some(drain) = &self.drain {
            next = next.min(drain.deadline);
        }
        next.saturating_duration_since(now)
    }

    /// Reads the clock once for this turn.
    fn tick(&mut self) {
        let mono = Instant::now();
        self.core.now = Now {
            stamp: self.core.clock.stamp(),
            mono,
        };
    }

    /// Reads until `WouldBlock` or the read budget is used up, feeding each chunk
    /// to the connection's protocol. No read asks for more than the budget left.
    fn read(&mut self, key: usize) {
        let mut budget = self.core.cfg.read_budget_bytes.max(1);
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.phase == Phase::Dead {
                return;
            }
            let room = budget.min(self.scratch.len());
            match conn
                .socket
                .read(self.scratch.get_mut(..room).unwrap_or_default())
            {
                Ok(0) => {
                    input::on_eof(&mut self.core, conn);
                    return;
                }
                Ok(n) => {
                    self.core.stats.bytes_in += n as u64;
                    conn.last_read = self.core.now.mono;
                    if let Wire::Ws(ws) = &mut conn.wire {
                        ws.ping_sent = None;
                    }
                    let data = self.scratch.get(..n).unwrap_or(&[]);
                    input::handle(&mut self.core, conn, data);
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        // Queued once: a key listed twice would be read twice
                        // per turn, then more (each read re-queues it).
                        if !conn.read_again {
                            conn.read_again = true;
                            self.core.ready_again.push(key);
                        }
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("{:?} {}: read error: {e}", conn.id, conn.peer);
                    input::kill(&mut self.core, conn);
                    return;
                }
            }
        }
    }

    /// Writes a connection's queue; manages WRITABLE interest and lingering half-close.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        if conn.phase == Phase::Dead {
            return;
        }
        let mut half_closed = false;
        match conn.out.flush(&mut conn.socket) {
            Ok((n, state)) => {
                self.core.stats.bytes_out += n as u64;
                let want_write = state == Flush::Pending;
                if want_write != conn.write_interest {
                    let interest = if want_write {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    if let Err(e) = self.poll.registry().reregister(
                        &mut conn.socket,
                        token::conn(key),
                        interest,
                    ) {
                        debug!("{:?}: reregister failed: {e}", conn.id);
                        input::kill(&mut self.core, conn);
                        return;
                    }
                    conn.write_interest = want_write;
                }
                if let Phase::Linger {
                    deadline,
                    shut_down: false,
                } = conn.phase
                    && state == Flush::Done
                {
                    // Everything is out: half-close so the peer sees EOF after our last byte.
                    let _ = conn.socket.shutdown(std::net::Shutdown::Write);
                    conn.phase = Phase::Linger {
                        deadline,
                        shut_down: true,
                    };
                    half_closed = true;
                }
            }
            Err(e) => {
                debug!("{:?} {}: write error: {e}", conn.id, conn.peer);
                input::kill(&mut self.core, conn);
            }
        }
        if half_closed {
            // The peer may have closed first (its EOF already read, so no new
            // event will come): find out now instead of at the linger deadline.
            self.read(key);
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.core.dirty);
        for &key in &dirty {
            self.flush(key);
        }
        if self.core.dirty.is_empty() {
            let mut dirty = dirty;
            dirty.clear();
            self.core.dirty = dirty;
        }
    }

    /// Removes connections marked dead; the hub hears of any user still joined.
    fn reap(&mut self) {
        while let Some(key) = self.core.dead.pop() {
            let dead = self.conns.get(key).is_some_and(|c| c.phase == Phase::Dead);
            if !dead {
                continue;
            }
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.socket);
            if conn.ip_counted {
                self.release_ip(conn.peer.ip());
            }
            if let Some(name) = self.core.hub.name_of(conn.id) {
                info!("{:?} {}: {name} disconnected", conn.id, conn.peer);
            }
            self.core.hub.handle_disconnect(conn.id, self.core.now);
            debug!("{:?} {}: closed ({})", conn.id, conn.peer, conn.protocol());
            // Descriptors were freed: accepting may work again.
            if self.accept_paused_until.is_some() {
                self.accept_paused_until = Some(self.core.now.mono);
            }
        }
    }
}

/// Pending connections the kernel may queue before `accept` (capped by
/// `net.core.somaxconn`, 4096 on current Linux).
const LISTEN_BACKLOG: i32 = 1024;

fn listen(addr: SocketAddr, flag: &'static str) -> Result<TcpListener, ServerError> {
    let listener =
        TcpListener::bind(addr).map_err(|source| ServerError::Bind { addr, flag, source })?;
    raise_backlog(&listener);
    Ok(listener)
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

impl Port {
    fn from_listener(i: usize) -> Port {
        match i {
            0 => Port::Chat,
            1 => Port::Ws,
            _ => Port::Http,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::TcpStream as StdStream;
    use std::thread;

    /// A server on 127.0.0.1 with every port 0, driven turn by turn by the test.
    pub(in crate::server) fn test_server(tweak: impl FnOnce(&mut Config)) -> (Server, BoundAddrs) {
        let mut cfg = Config {
            host: "127.0.0.1".parse().expect("ip"),
            tcp_port: 0,
            ws_port: 0,
            http_port: 0,
            ..Config::default()
        };
        tweak(&mut cfg);
        let server = Server::bind(cfg).expect("bind");
        let addrs = server.local_addrs().expect("addrs");
        (server, addrs)
    }

    /// Runs turns until `done` holds; fails after 10 s.
    pub(in crate::server) fn spin(server: &mut Server, what: &str, done: impl Fn(&Server) -> bool) {
        let mut events = Events::with_capacity(64);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done(server) {
            assert!(Instant::now() < deadline, "never happened: {what}");
            server.turn(&mut events).expect("turn");
        }
    }

    #[test]
    fn a_flooding_connection_is_read_at_most_its_budget_per_turn() {
        const BUDGET: usize = 1000;
        const TOTAL: u64 = 512 * 1024;
        let (mut server, addrs) = test_server(|c| c.read_budget_bytes = BUDGET);
        let client = StdStream::connect(addrs.tcp).expect("connect");
        // Blank lines before a first line are ignored: input that costs
        // nothing and produces no output. Written in small pieces, so new
        // data (and readiness events) keep arriving while earlier input is
        // still unread.
        let mut w = client.try_clone().expect("clone");
        let writer = thread::spawn(move || {
            for _ in 0..TOTAL / 512 {
                w.write_all(&[b'\n'; 512]).expect("write");
            }
        });
        let mut events = Events::with_capacity(64);
        let (mut last, mut most, mut turns) = (0u64, 0u64, 0usize);
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.core.stats.bytes_in < TOTAL {
            assert!(Instant::now() < deadline, "read only {last} bytes");
            server.turn(&mut events).expect("turn");
            let now = server.core.stats.bytes_in;
            most = most.max(now - last);
            last = now;
            turns += 1;
        }
        writer.join().expect("writer");
        assert!(
            most <= BUDGET as u64,
            "{most} bytes read from one connection in one turn (budget {BUDGET}, {turns} turns)"
        );
        drop(client);
    }
}
