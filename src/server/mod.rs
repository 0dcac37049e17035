//! The poll loop: one `mio::Poll` owns every listener and connection. It moves
//! bytes, runs timers and dispatches; what the bytes mean is the sessions'
//! business (`session`), chat rules are the hub's (`hub`).
//!
//! One turn:
//! 1. poll (timeout: zero while work is pending, else the next deadline);
//! 2. accept / read / write for each event; read bytes go to the connection's
//!    session, whose outputs are applied in order ([`dispatch`]);
//! 3. connections that used up their read budget are read again;
//! 4. due server timers ([`deadlines`]): the sweep (session deadlines, pings,
//!    lingering closes), the end of an accept pause, the drain deadline;
//! 5. settle: the hub hears of every connection that ended (once, with why),
//!    closes its turn (debounced presence), and its effects are delivered:
//!    every message encoded once per wire format, the bytes shared by all
//!    recipients; join outcomes go to their sessions, which may go on with
//!    input they held back. Repeated until nothing new ended or happened;
//! 6. flush every connection with new output before sleeping.
//!
//! Closing is deferred: a connection over a limit is marked, not freed, while
//! other code may still hold its key.
//!
//! Stopping (SIGINT / SIGTERM, when [`Server::stop_on_signals`] was called): the
//! listeners stop accepting, every user gets a notice, each connection flushes
//! what is queued (WebSockets end with a 1001 close frame) and half-closes; `run`
//! returns once all are closed or the linger timeout passes. A second signal
//! ends it at once.
//!
//! Outbound links (a connection the server opens itself, such as a pub/sub
//! backplane) have their own tokens ([`token::link`]) and state ([`link`]); they
//! are not clients: not counted, not swept, never reported to the hub.

mod accept;
mod clock;
mod cluster;
// Some of its API waits for the outbound links that will use it.
#[allow(dead_code)]
mod deadlines;
mod deliver;
mod dispatch;
mod history;
// A place for outbound links; the pub/sub backplane will be the first to open
// one, and use the parts of its API that nothing calls yet.
#[allow(dead_code)]
mod link;
mod listen;
mod signals;
mod timers;
pub mod token;

use std::fmt;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use mio::net::TcpListener;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll};
use slab::Slab;

use crate::config::Config;
use crate::conn::{Books, Conn, Flush, Phase};
use crate::hub::{Hub, LeaveReason, Now};
use crate::proto::ws::handshake::HandshakeConfig;
use crate::session::{Out, Port, StatsView, WsApp};
use crate::web::static_files::StaticFiles;

use clock::Clock;
use deadlines::{Deadlines, Timer};
use listen::listen;
use token::Token2;

/// Size of the loop-owned read buffer every connection reads into.
const SCRATCH_BYTES: usize = 64 * 1024;
/// Input kept for a session holding it (a join pending) before the server
/// stops reading that connection until the join is answered. Fixed rather
/// than the read budget: `--read-budget-bytes` is a fairness knob that may
/// be raised for throughput, while this bounds what an unjoined client can
/// make the server keep, so that many such clients stay cheap. With one
/// read at most [`SCRATCH_BYTES`], kept input stays under 128 KiB.
const HOLD_CAP_BYTES: usize = 64 * 1024;

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
    /// The durable history could not be opened (a damaged record names its
    /// file and offset; `--repair-history` cuts the log there).
    History(crate::store::StoreError),
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
            ServerError::History(e) => write!(f, "cannot open the history: {e}"),
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
    /// Messages queued for a recipient (one per recipient).
    pub deliveries: u64,
    /// Clients dropped for reading too slowly (over the output limit).
    pub dropped_slow: u64,
}

/// What sessions read and connections write besides themselves.
pub(crate) struct Core {
    pub cfg: Config,
    pub files: StaticFiles,
    pub handshake: HandshakeConfig,
    pub ws_app: WsApp,
    pub stats: Stats,
    /// `/stats` as of the last refresh (connection counts at each sweep).
    pub stats_view: StatsView,
    pub started: Instant,
    pub now: Now,
    pub clock: Clock,
    /// The current HTTP `Date` value.
    pub http_date: String,
    /// The turn's bookkeeping (flush list, dead list, ended connections).
    pub books: Books,
    /// Keys whose read budget ran out; read again next turn without waiting.
    pub ready_again: Vec<usize>,
    /// Keys whose session may go on with input it held back.
    pub resume: Vec<usize>,
    /// Reusable session output and encoding buffers.
    pub outs: Vec<Out>,
    pub enc: Vec<u8>,
    /// The shared logs every broadcast is encoded into (one per wire format).
    pub logs: crate::session::OutLogs,
    /// The durable history (`--data-dir`), if any.
    pub store: Option<crate::store::Store>,
}

impl Core {
    /// What a session may read, as of this turn, for connection `conn` at `peer`.
    pub fn ctx(&self, conn: crate::hub::ConnId, peer: SocketAddr) -> crate::session::Ctx<'_> {
        crate::session::Ctx {
            cfg: &self.cfg,
            now: self.now.mono,
            files: &self.files,
            handshake: &self.handshake,
            http_date: &self.http_date,
            stats: &self.stats_view,
            ws_app: self.ws_app,
            conn,
            peer,
        }
    }
}

/// A stop in progress.
#[derive(Debug)]
struct Drain {
    /// Connections open when the stop began.
    initial: usize,
    /// Every connection was told to finish (done once, after the goodbye is queued).
    closed_all: bool,
    /// The deadline passed: whatever is still open is cut.
    expired: bool,
}

/// The server: listeners, connections and the chat hub on one thread.
pub struct Server {
    poll: Poll,
    /// Chat, WebSocket, HTTP; emptied (closed) when a stop begins.
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    hub: Hub,
    scratch: Vec<u8>,
    serial: u32,
    /// Server-level timers; the nearest gives the poll timeout.
    timers: Deadlines<Timer>,
    accept_paused: bool,
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
    /// Connections the server opened itself (see the module docs).
    links: Vec<link::OutboundLink>,
    /// Link deadlines to keep in `timers` once the links are no longer borrowed.
    timers_for_link: Vec<(usize, Option<Instant>)>,
    /// The cluster node (`--redis`).
    cluster: Option<cluster::Cluster>,
    /// Broadcasts being gathered into one range per recipient (`deliver`).
    run: deliver::Run,
    core: Core,
}

impl Server {
    /// Binds every listener (all or nothing) and prepares the loop.
    pub fn bind(cfg: Config) -> Result<Server, ServerError> {
        Server::bind_with(cfg, WsApp::Chat)
    }

    /// Like [`Server::bind`], with another application on the WebSocket port
    /// (the echo server of the conformance tests).
    pub fn bind_with(cfg: Config, ws_app: WsApp) -> Result<Server, ServerError> {
        let files = match &cfg.assets_dir {
            Some(dir) => StaticFiles::from_dir(dir).map_err(|source| ServerError::Assets {
                dir: dir.display().to_string(),
                source,
            })?,
            None => StaticFiles::embedded(),
        };
        let poll = Poll::new().map_err(ServerError::Io)?;
        let reuse = cfg.reuse_port;
        let mut listeners = vec![
            listen(SocketAddr::new(cfg.host, cfg.tcp_port), "--tcp-port", reuse)?,
            listen(SocketAddr::new(cfg.host, cfg.ws_port), "--ws-port", reuse)?,
            listen(
                SocketAddr::new(cfg.host, cfg.http_port),
                "--http-port",
                reuse,
            )?,
        ];
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry()
                .register(l, token::listener(i), Interest::READABLE)
                .map_err(ServerError::Io)?;
        }
        let now = Instant::now();
        let mut clock = Clock::new();
        let unix_ms = unix_ms();
        let http_date = clock.http_date(unix_ms / 1000).to_owned();
        let handshake = HandshakeConfig {
            max_header_bytes: cfg.max_header_bytes,
            allowed_origins: cfg.allowed_origins.clone(),
        };
        let mut timers = Deadlines::new();
        timers.set(Timer::Sweep, now);
        // Without durable history, every start begins a new history: a
        // client's `since` from an earlier run is answered with `gap`.
        let mut hub_cfg = cfg.hub.clone();
        hub_cfg.epoch = new_epoch(unix_ms);
        hub_cfg.cluster = cfg.redis.is_some();
        let mut hub = Hub::new(hub_cfg);
        let store = match &cfg.data_dir {
            Some(dir) => Some(open_history(&cfg, dir, &mut hub, now, unix_ms)?),
            None => None,
        };
        if store.is_some() {
            timers.set(Timer::StoreExpire, now);
        }
        let core = Core {
            files,
            handshake,
            ws_app,
            stats: Stats::default(),
            stats_view: StatsView::default(),
            started: now,
            now: Now { unix_ms, mono: now },
            clock,
            http_date,
            books: Books {
                hold_early_flush: store.is_some() && cfg.fsync == crate::store::FsyncPolicy::Always,
                ..Books::default()
            },
            ready_again: Vec::new(),
            resume: Vec::new(),
            outs: Vec::new(),
            enc: Vec::new(),
            logs: crate::session::OutLogs::default(),
            store,
            cfg,
        };
        Ok(Server {
            poll,
            listeners,
            conns: Slab::new(),
            hub,
            scratch: vec![0; SCRATCH_BYTES],
            // Started at a per-run value: a connection's (key, serial) is then
            // not the same as one of an earlier run of this node, so a name
            // claim that run left in Redis is never taken for this run's.
            serial: run_serial(unix_ms),
            timers,
            accept_paused: false,
            accept_again: [false; 3],
            spare_fd: accept::open_spare(),
            exhaustion_warned: None,
            per_ip: std::collections::HashMap::new(),
            signals: None,
            drain: None,
            links: Vec::new(),
            timers_for_link: Vec::new(),
            cluster: None,
            run: deliver::Run::default(),
            core,
        })
        .map(|mut server| {
            server.start_cluster();
            server
        })
    }

    fn hub_epoch(&self) -> String {
        self.hub.epoch().to_owned()
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
                && (self.conns.is_empty() || drain.expired)
            {
                info!(
                    "stopped: {} connection(s) closed cleanly, {} cut at the deadline",
                    drain.initial.saturating_sub(self.conns.len()),
                    self.conns.len()
                );
                if let Some(store) = &mut self.core.store {
                    store.close(Instant::now());
                }
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
            if self.drain.is_some() {
                warn!("signal {signo} again: stopping now");
                self.timers.set(Timer::Drain, now);
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
            self.accept_paused = false;
            self.timers.cancel_key(Timer::AcceptResume);
            self.hub.shutdown(
                "The server is shutting down. Goodbye!".into(),
                self.core.now,
            );
            self.timers
                .set(Timer::Drain, now + self.core.cfg.linger_timeout);
            self.drain = Some(Drain {
                initial: self.conns.len(),
                closed_all: false,
                expired: false,
            });
        }
    }

    /// After the goodbye notice is queued: every connection says its last
    /// words (WebSockets a 1001 close frame) and lingers.
    fn close_all_for_drain(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let mut outs = std::mem::take(&mut self.core.outs);
            if let Some(conn) = self.conns.get_mut(key)
                && conn.phase == Phase::Open
            {
                conn.session.on_drain(&mut outs);
                outs.push(Out::End(LeaveReason::Drain));
                dispatch::apply(conn, &mut self.hub, &mut self.core, &mut outs);
            }
            self.core.outs = outs;
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
                Token2::Link(i) => self.link_event(i, event),
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
        self.fire_timers();
        self.settle();
        if let Some(drain) = &mut self.drain
            && !drain.closed_all
        {
            drain.closed_all = true;
            self.close_all_for_drain();
            self.settle();
        }
        // The turn's history goes to disk before anyone is shown the turn
        // (with `--fsync always`, synced too: nobody sees what is not on disk).
        self.flush_store();
        self.flush_dirty();
        Ok(())
    }

    /// Writes the turn's history records; keeps the store's next sync or
    /// retry in the deadline queue.
    fn flush_store(&mut self) {
        let Some(store) = &mut self.core.store else {
            return;
        };
        let now = self.core.now.mono;
        store.flush_turn(now);
        match store.next_deadline() {
            Some(at) => {
                self.timers.set(Timer::StoreSync, at);
            }
            None => {
                self.timers.cancel_key(Timer::StoreSync);
            }
        }
    }

    /// Opens an outbound link to `addr` and starts connecting; its index, or
    /// `None` when every link token is taken. A link is no client: not counted
    /// against `--max-connections`, not swept, never reported to the hub.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn open_link(&mut self, addr: SocketAddr, cfg: link::LinkConfig) -> Option<usize> {
        let i = self.links.len();
        let token = token::link(i)?;
        // Jitter differs between nodes started together.
        let seed = self.core.now.unix_ms ^ (u64::from(std::process::id()) << 32) ^ i as u64;
        let mut link = link::OutboundLink::new(addr, token, cfg, seed);
        let next = link.connect(self.poll.registry(), Instant::now());
        self.links.push(link);
        self.set_link_timer(i, next);
        Some(i)
    }

    /// A poll event for link `i`.
    fn link_event(&mut self, i: usize, event: &mio::event::Event) {
        let registry = self.poll.registry();
        let now = self.core.now.mono;
        let next = self
            .links
            .get_mut(i)
            .and_then(|l| l.handle_event(event, registry, now, &mut self.scratch));
        self.set_link_timer(i, next);
    }

    /// Keeps link `i`'s one deadline (connect timeout, end of backoff) in the queue.
    fn set_link_timer(&mut self, i: usize, next: Option<Instant>) {
        match next {
            Some(at) => {
                self.timers.set(Timer::Link(i), at);
            }
            None => {
                self.timers.cancel_key(Timer::Link(i));
            }
        }
    }

    /// Runs every server timer that is due.
    fn fire_timers(&mut self) {
        let now = self.core.now.mono;
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::Sweep => {
                    self.timers.set(Timer::Sweep, now + timers::SWEEP_INTERVAL);
                    self.sweep();
                }
                Timer::AcceptResume => {
                    self.accept_paused = false;
                    for i in 0..self.listeners.len() {
                        self.accept(i);
                    }
                }
                Timer::Drain => {
                    if let Some(drain) = &mut self.drain {
                        drain.expired = true;
                    }
                }
                Timer::StoreSync => self.flush_store(),
                Timer::StoreExpire => {
                    self.timers
                        .set(Timer::StoreExpire, now + STORE_EXPIRE_INTERVAL);
                    if let Some(store) = &mut self.core.store {
                        let out = store.expire(self.core.now.unix_ms, now);
                        if out.deleted_segments > 0 {
                            info!(
                                "history: {} old segment(s) deleted ({} bytes)",
                                out.deleted_segments, out.deleted_bytes
                            );
                        }
                    }
                }
                // The node's timers run in `pump_cluster`, every turn.
                Timer::Cluster => {}
                Timer::Link(i) => {
                    let registry = self.poll.registry();
                    let next = self
                        .links
                        .get_mut(i)
                        .and_then(|l| l.on_timer(registry, now));
                    self.set_link_timer(i, next);
                }
            }
        }
    }

    /// Until nothing new happens: the hub hears of ended connections, closes
    /// its turn, and its effects are delivered (which can drop recipients over
    /// their output limit, news for the others) and answered joins resume
    /// their sessions.
    fn settle(&mut self) {
        loop {
            self.pump_cluster();
            self.reap();
            self.hub.end_turn(self.core.now);
            self.deliver();
            self.resume();
            if self.core.books.dead.is_empty()
                && self.core.books.ended.is_empty()
                && !self.hub.has_effects()
                && !self.cluster_has_news()
            {
                break;
            }
        }
        self.flush_cluster();
    }

    /// Zero while work is pending, else time to the nearest deadline.
    fn poll_timeout(&self, now: Instant) -> Duration {
        if !self.core.ready_again.is_empty()
            || !self.core.books.dead.is_empty()
            || self.accept_again.contains(&true)
        {
            return Duration::ZERO;
        }
        self.timers.timeout(now).unwrap_or(timers::SWEEP_INTERVAL)
    }

    /// Reads the clock once for this turn.
    fn tick(&mut self) {
        let unix_ms = unix_ms();
        self.core.now = Now {
            unix_ms,
            mono: Instant::now(),
        };
        let date = self.core.clock.http_date(unix_ms / 1000);
        if date != self.core.http_date {
            self.core.http_date.clear();
            self.core.http_date.push_str(date);
        }
    }

    /// Reads until `WouldBlock` or the read budget is used up, feeding each chunk
    /// to the connection's session. No read asks for more than the budget left.
    /// While the session holds input for a pending join, reading stops once
    /// [`HOLD_CAP_BYTES`] are kept (until [`Server::resume`]), so kept input
    /// stays under the cap plus one read.
    fn read(&mut self, key: usize) {
        let mut budget = self.core.cfg.read_budget_bytes.max(1);
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.phase == Phase::Dead {
                return;
            }
            if conn.phase == Phase::Open
                && conn.inbuf.len() >= HOLD_CAP_BYTES
                && conn.session.holding()
            {
                // Not queued to read again: mio is edge-triggered, so
                // `resume` queues it once the join is answered.
                conn.read_paused = true;
                return;
            }
            let room = budget.min(self.scratch.len());
            match conn
                .socket
                .read(self.scratch.get_mut(..room).unwrap_or_default())
            {
                Ok(0) => {
                    self.on_eof(key);
                    return;
                }
                Ok(n) => {
                    self.core.stats.bytes_in += n as u64;
                    let data = self.scratch.get(..n).unwrap_or(&[]);
                    dispatch::feed(conn, &mut self.hub, &mut self.core, data);
                    #[cfg(test)]
                    {
                        conn.inbuf_peak = conn.inbuf_peak.max(conn.inbuf.len());
                    }
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        // Queued once: a key listed twice would be read twice
                        // per turn, then more (each read re-queues it).
                        if let Some(conn) = self.conns.get_mut(key)
                            && !conn.read_again
                        {
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
                    conn.kill(LeaveReason::Closed, &mut self.core.books);
                    return;
                }
            }
        }
    }

    /// The peer closed its side.
    fn on_eof(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if let Phase::Linger { shut_down, .. } = conn.phase {
            // Before our half-close the last words (a response, a close frame) may
            // still be queued: `flush` closes once they are out.
            if shut_down {
                conn.kill(LeaveReason::Closed, &mut self.core.books);
            }
            return;
        }
        if !conn.inbuf.is_empty() {
            debug!(
                "{:?} {}: EOF with {} unfinished bytes",
                conn.id,
                conn.peer,
                conn.inbuf.len()
            );
        }
        // A half-closed peer still reads: answers to its last input, queued now or
        // by this turn's delivery, go out before the close.
        let (now, linger) = (self.core.now.mono, self.core.cfg.linger_timeout);
        conn.end(LeaveReason::Closed, now, linger, &mut self.core.books);
    }

    /// Feeds input a session held back (its join was answered meanwhile). A
    /// connection whose reading stopped at the hold cap is read again next
    /// turn: no new readiness event would come for what the socket holds.
    fn resume(&mut self) {
        let keys = std::mem::take(&mut self.core.resume);
        for &key in &keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.phase == Phase::Open {
                dispatch::feed(conn, &mut self.hub, &mut self.core, &[]);
            }
            if std::mem::take(&mut conn.read_paused)
                && conn.phase != Phase::Dead
                && !conn.read_again
            {
                conn.read_again = true;
                self.core.ready_again.push(key);
            }
        }
        if self.core.resume.is_empty() {
            let mut keys = keys;
            keys.clear();
            self.core.resume = keys;
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
                        conn.kill(LeaveReason::Closed, &mut self.core.books);
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
                conn.kill(LeaveReason::Closed, &mut self.core.books);
            }
        }
        if half_closed {
            // The peer may have closed first (its EOF already read, so no new
            // event will come): find out now instead of at the linger deadline.
            self.read(key);
        }
    }

    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.core.books.dirty);
        for &key in &dirty {
            self.flush(key);
        }
        if self.core.books.dirty.is_empty() {
            let mut dirty = dirty;
            dirty.clear();
            self.core.books.dirty = dirty;
        }
    }

    /// The one place the hub hears that a connection ended (with why); then
    /// connections marked dead are removed.
    fn reap(&mut self) {
        for (id, why) in self.core.books.ended.drain(..) {
            if why == LeaveReason::OverLimit {
                self.core.stats.dropped_slow += 1;
            }
            self.hub.handle_left(id, why, self.core.now);
        }
        while let Some(key) = self.core.books.dead.pop() {
            let dead = self.conns.get(key).is_some_and(|c| c.phase == Phase::Dead);
            if !dead {
                continue;
            }
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.socket);
            if conn.ip_counted {
                self.release_ip(conn.peer.ip());
            }
            debug!("{:?} {}: closed ({})", conn.id, conn.peer, conn.protocol());
            // Descriptors were freed: accepting may work again.
            if self.accept_paused {
                self.timers.set(Timer::AcceptResume, self.core.now.mono);
            }
        }
    }
}

/// How often old history segments are looked for.
const STORE_EXPIRE_INTERVAL: Duration = Duration::from_secs(60);

/// Opens the durable history in `dir` and rebuilds the hub's rooms from it.
fn open_history(
    cfg: &Config,
    dir: &std::path::Path,
    hub: &mut Hub,
    now: Instant,
    unix_ms: u64,
) -> Result<crate::store::Store, ServerError> {
    use crate::store::{Store, StoreOptions, epoch};
    let opts = StoreOptions {
        retention: cfg.history_retention,
        max_total_bytes: cfg.history_max_bytes,
        fsync: cfg.fsync,
        repair: cfg.repair_history,
        ..StoreOptions::new(dir)
    };
    let fresh = epoch::generate(u128::from(unix_ms) * 1_000_000, std::process::id());
    let mut records = 0u64;
    let (store, report) = Store::open(opts, now, &fresh, |rec| {
        records += 1;
        hub.restore(history::message_of(rec));
    })
    .map_err(ServerError::History)?;
    hub.set_epoch(store.epoch());
    info!(
        "history: {records} record(s) in {} ({:?}, epoch {})",
        dir.display(),
        report,
        store.epoch()
    );
    Ok(store)
}

/// The first connection serial of this run: the start time and process id
/// mixed (splitmix64), different from one run to the next.
fn run_serial(unix_ms: u64) -> u32 {
    let mut z = unix_ms ^ (u64::from(std::process::id()) << 32);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as u32
}

/// A fresh history epoch: the start time and process id, in hex.
fn new_epoch(unix_ms: u64) -> String {
    format!("{unix_ms:x}-{:x}", std::process::id())
}

/// Milliseconds since the Unix epoch, UTC.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

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
    #[test]
    fn the_first_line_deadline_lasts_until_a_join_succeeds() {
        use crate::session::Session;
        let (mut server, addrs) = test_server(|_| {});
        let deadline_of = |s: &Server| {
            s.conns.iter().next().map(|(_, c)| match &c.session {
                Session::Chat(chat) => chat.has_deadline(),
                _ => false,
            })
        };
        let mode_is = |s: &Server, p: &str| s.conns.iter().any(|(_, c)| c.protocol() == p);

        // A JSON request before joining picks JSON mode but is no join.
        let mut json = StdStream::connect(addrs.tcp).expect("connect");
        json.write_all(b"{\"type\":\"who\"}\n").expect("write");
        spin(&mut server, "JSON mode", |s| mode_is(s, "tcp_json"));
        assert_eq!(
            deadline_of(&server),
            Some(true),
            "deadline dropped before joining"
        );
        // Refused names keep it too.
        json.write_all(b"{\"type\":\"join\",\"sender\":\"two words\"}\n")
            .expect("write");
        let before = server.core.stats.bytes_out;
        spin(&mut server, "name_invalid answered", |s| {
            s.core.stats.bytes_out > before
        });
        assert_eq!(deadline_of(&server), Some(true));
        json.write_all(b"{\"type\":\"join\",\"sender\":\"fine\"}\n")
            .expect("write");
        spin(&mut server, "joined", |s| s.hub.user_count() == 1);
        assert_eq!(
            deadline_of(&server),
            Some(false),
            "a joined user has no deadline"
        );
        drop(json);
        spin(&mut server, "closed", |s| s.conns.is_empty());

        // Text mode: an invalid name is a first line, not a join.
        let mut text = StdStream::connect(addrs.tcp).expect("connect");
        text.write_all(b"two words\n").expect("write");
        spin(&mut server, "text mode", |s| mode_is(s, "tcp_text"));
        assert_eq!(deadline_of(&server), Some(true));
        text.write_all(b"textfine\n").expect("write");
        spin(&mut server, "joined", |s| s.hub.user_count() == 1);
        assert_eq!(deadline_of(&server), Some(false));
    }

    #[test]
    fn text_lines_behind_a_name_wait_for_the_join_and_then_count() {
        use std::io::{BufRead, BufReader};
        let (mut server, addrs) = test_server(|_| {});
        let mut c = StdStream::connect(addrs.tcp).expect("connect");
        // Name, a refused retry and chat in one write: each line is read as
        // what it is once the one before it has been answered.
        let watcher = StdStream::connect(addrs.tcp).expect("connect");
        let mut w = watcher.try_clone().expect("clone");
        w.write_all(b"{\"type\":\"join\",\"sender\":\"taken\"}\n")
            .expect("write");
        spin(&mut server, "watcher joined", |s| s.hub.user_count() == 1);
        c.write_all(b"taken\nfresh\nhello all\n").expect("write");
        spin(&mut server, "fresh joined", |s| s.hub.user_count() == 2);
        spin(&mut server, "chat relayed", |s| s.hub.relayed() == 1);
        drop(c);
        let mut r = BufReader::new(watcher);
        r.get_ref()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        let mut line = String::new();
        let mut saw = false;
        for _ in 0..20 {
            line.clear();
            spin(&mut server, "a turn", |_| true);
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            if line.contains("\"sender\":\"fresh\",\"message\":\"hello all\"") {
                saw = true;
                break;
            }
        }
        assert!(saw, "the chat line after the name was not relayed as chat");
    }
    /// Starts a thread reading `stream` line by line, counting the chat
    /// messages from `sender` and checking they carry `m0`, `m1`, ... in order.
    fn count_messages_from(
        stream: StdStream,
        sender: &'static str,
    ) -> (
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        thread::JoinHandle<()>,
    ) {
        use std::io::{BufRead, BufReader};
        use std::sync::atomic::Ordering;
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let handle = thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut line = String::new();
            let from = format!("\"sender\":\"{sender}\",\"message\":\"m");
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if let Some(at) = line.find(&from) {
                    let n = count.load(Ordering::SeqCst);
                    let rest = &line[at + from.len()..];
                    assert!(rest.starts_with(&format!("{n} ")), "out of order: {line}");
                    count.store(n + 1, Ordering::SeqCst);
                }
                line.clear();
            }
        });
        (seen, handle)
    }

    /// A JSON join followed by `total` bytes of numbered chat lines.
    fn join_and_lines(name: &str, total: usize) -> (Vec<u8>, usize) {
        let mut input = format!("{{\"type\":\"join\",\"sender\":\"{name}\"}}\n").into_bytes();
        let pad = "x".repeat(64);
        let mut lines = 0;
        while input.len() < total {
            input.extend_from_slice(
                format!("{{\"type\":\"message\",\"message\":\"m{lines} {pad}\"}}\n").as_bytes(),
            );
            lines += 1;
        }
        (input, lines)
    }

    #[test]
    fn input_held_for_a_join_is_capped_then_read_again_when_answered() {
        use std::sync::atomic::Ordering;
        let (mut server, addrs) = test_server(|_| {});
        let mut watcher = StdStream::connect(addrs.tcp).expect("connect");
        watcher
            .write_all(b"{\"type\":\"join\",\"sender\":\"watcher\"}\n")
            .expect("write");
        spin(&mut server, "watcher joined", |s| s.hub.user_count() == 1);
        let (seen, reader) = count_messages_from(watcher.try_clone().expect("clone"), "flood");

        let flooder = StdStream::connect(addrs.tcp).expect("connect");
        spin(&mut server, "flooder accepted", |s| s.conns.len() == 2);
        let key = server
            .conns
            .iter()
            .find(|(_, c)| c.session.format().is_none())
            .map(|(k, _)| k)
            .expect("the flooder");
        // Its own messages come back to it too: drained, not checked.
        let mut drain = flooder.try_clone().expect("clone");
        let drainer = thread::spawn(move || {
            let _ = std::io::copy(&mut drain, &mut std::io::sink());
        });
        let (input, lines) = join_and_lines("flood", 1 << 20);
        let mut w = flooder.try_clone().expect("clone");
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let writer = thread::spawn(move || {
            w.write_all(&input).expect("write");
            let _ = done_tx.send(());
        });

        // Read without ending the turn: the join is not answered, so the
        // session holds everything behind it, until the cap stops reading.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.conns[key].read_paused {
            assert!(Instant::now() < deadline, "reading never paused");
            server.read(key);
            thread::sleep(Duration::from_millis(1));
        }
        let kept = server.conns[key].inbuf.len();
        assert!(
            (HOLD_CAP_BYTES..HOLD_CAP_BYTES + SCRATCH_BYTES).contains(&kept),
            "{kept} bytes kept"
        );
        let bytes_in = server.core.stats.bytes_in;
        server.read(key);
        assert_eq!(server.core.stats.bytes_in, bytes_in, "paused: nothing read");
        assert_eq!(server.conns[key].inbuf.len(), kept);
        // Let the writer finish if the socket buffers take it all: then no new
        // readiness event comes, and only the resume can restart reading.
        let _ = done_rx.recv_timeout(Duration::from_secs(5));

        spin(&mut server, "every line relayed", |_| {
            seen.load(Ordering::SeqCst) == lines
        });
        assert_eq!(server.hub.relayed(), lines as u64);
        let peak = server.conns[key].inbuf_peak;
        assert!(
            peak < HOLD_CAP_BYTES + SCRATCH_BYTES,
            "{peak} bytes kept at once"
        );
        writer.join().expect("writer");
        // The reader threads hold clones: shut the sockets down, not just drop.
        for c in [&flooder, &watcher] {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        spin(&mut server, "closed", |s| s.conns.is_empty());
        drainer.join().expect("drainer");
        reader.join().expect("reader");
    }

    #[test]
    fn a_json_join_and_a_mebibyte_of_lines_in_one_go_are_all_relayed_in_order() {
        use std::sync::atomic::Ordering;
        let (mut server, addrs) = test_server(|_| {});
        let mut watcher = StdStream::connect(addrs.tcp).expect("connect");
        watcher
            .write_all(b"{\"type\":\"join\",\"sender\":\"watcher\"}\n")
            .expect("write");
        spin(&mut server, "watcher joined", |s| s.hub.user_count() == 1);
        let (seen, reader) = count_messages_from(watcher.try_clone().expect("clone"), "flood");
        let flooder = StdStream::connect(addrs.tcp).expect("connect");
        let mut drain = flooder.try_clone().expect("clone");
        let drainer = thread::spawn(move || {
            let _ = std::io::copy(&mut drain, &mut std::io::sink());
        });
        let (input, lines) = join_and_lines("flood", 1 << 20);
        let mut w = flooder.try_clone().expect("clone");
        let writer = thread::spawn(move || w.write_all(&input).expect("write"));
        spin(&mut server, "every line relayed", |s| {
            seen.load(Ordering::SeqCst) == lines
                && s.conns
                    .iter()
                    .all(|(_, c)| c.inbuf_peak < HOLD_CAP_BYTES + SCRATCH_BYTES)
        });
        let peak = server.conns.iter().map(|(_, c)| c.inbuf_peak).max();
        assert!(peak < Some(HOLD_CAP_BYTES + SCRATCH_BYTES), "{peak:?}");
        assert_eq!(server.hub.relayed(), lines as u64);
        writer.join().expect("writer");
        // The reader threads hold clones: shut the sockets down, not just drop.
        for c in [&flooder, &watcher] {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        spin(&mut server, "closed", |s| s.conns.is_empty());
        drainer.join().expect("drainer");
        reader.join().expect("reader");
    }

    #[test]
    fn a_websocket_upgrade_join_and_messages_in_one_go_are_all_relayed_in_order() {
        use crate::proto::ws::frame::{Opcode, apply_mask, encode_frame};
        use std::sync::atomic::Ordering;
        // A masked client text frame.
        fn frame(payload: &[u8], out: &mut Vec<u8>) {
            let mask = [9, 8, 7, 6];
            let mut f = Vec::new();
            encode_frame(Opcode::Text, payload, &mut f);
            let head = f.len() - payload.len();
            f[1] |= 0x80;
            out.extend_from_slice(&f[..head]);
            out.extend_from_slice(&mask);
            let mut body = payload.to_vec();
            apply_mask(&mut body, mask, 0);
            out.extend_from_slice(&body);
        }
        let (mut server, addrs) = test_server(|_| {});
        let mut watcher = StdStream::connect(addrs.tcp).expect("connect");
        watcher
            .write_all(b"{\"type\":\"join\",\"sender\":\"watcher\"}\n")
            .expect("write");
        spin(&mut server, "watcher joined", |s| s.hub.user_count() == 1);
        let (seen, reader) = count_messages_from(watcher.try_clone().expect("clone"), "wsflood");
        let ws = StdStream::connect(addrs.ws).expect("connect");
        let mut drain = ws.try_clone().expect("clone");
        let drainer = thread::spawn(move || {
            let _ = std::io::copy(&mut drain, &mut std::io::sink());
        });
        let mut input = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
        frame(br#"{"type":"join","sender":"wsflood"}"#, &mut input);
        let pad = "y".repeat(64);
        let lines = 4000;
        for i in 0..lines {
            frame(
                format!(r#"{{"type":"message","message":"m{i} {pad}"}}"#).as_bytes(),
                &mut input,
            );
        }
        let mut w = ws.try_clone().expect("clone");
        let writer = thread::spawn(move || w.write_all(&input).expect("write"));
        spin(&mut server, "every message relayed", |_| {
            seen.load(Ordering::SeqCst) == lines
        });
        let peak = server.conns.iter().map(|(_, c)| c.inbuf_peak).max();
        assert!(peak < Some(HOLD_CAP_BYTES + SCRATCH_BYTES), "{peak:?}");
        writer.join().expect("writer");
        for c in [&ws, &watcher] {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        spin(&mut server, "closed", |s| s.conns.is_empty());
        drainer.join().expect("drainer");
        reader.join().expect("reader");
    }

    #[test]
    fn an_outbound_link_connects_talks_and_reconnects_without_being_a_client() {
        use std::io::Read;
        use std::net::TcpListener as StdListener;
        let (mut server, _) = test_server(|_| {});
        let peer = StdListener::bind("127.0.0.1:0").expect("bind");
        let cfg = link::LinkConfig {
            backoff_base: Duration::from_millis(20),
            ..link::LinkConfig::default()
        };
        let i = server
            .open_link(peer.local_addr().expect("addr"), cfg)
            .expect("a link token");
        spin(&mut server, "link connected", |s| {
            s.links[i].state().is_connected()
        });
        let (mut accepted, _) = peer.accept().expect("accept");
        accepted
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        server.links[i]
            .state_mut()
            .queue(std::rc::Rc::from(&b"PING\r\n"[..]))
            .expect("queued");
        let registry = server.poll.registry();
        let now = Instant::now();
        let next = server.links[i].flush(registry, now);
        server.set_link_timer(i, next);
        let mut got = [0u8; 6];
        accepted.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"PING\r\n");
        // Not a client: nothing counted, nobody for the hub.
        assert!(server.conns.is_empty());
        assert_eq!(server.core.stats.accepted, 0);
        assert_eq!(server.hub.user_count(), 0);
        // The peer goes away: the link backs off, then connects again by its timer.
        drop(accepted);
        spin(&mut server, "link lost", |s| {
            !s.links[i].state().is_connected()
        });
        spin(&mut server, "link back", |s| {
            s.links[i].state().is_connected()
        });
        peer.accept().expect("the reconnect reached the listener");
        assert!(server.conns.is_empty());
    }
}
