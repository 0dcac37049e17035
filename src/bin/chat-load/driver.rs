//! The load run itself: one `mio` poll loop driving every client.
//!
//! How it works:
//! 1. Join phase: clients are started in order (client i to address i mod n,
//!    see [`Options::target`]) with at most `connect_window` of them between
//!    `connect` and their welcome, so the server's listen backlog is never
//!    overrun. Each one moves
//!    `Connecting → (WsHandshake) → Joining → Joined`; any failure ends the run.
//! 2. Send phase: the first S clients send `L <sender> <seq> <send_nanos>`,
//!    each keeping at most `window` of its own messages unacknowledged (its own
//!    broadcast, or the server's confirmation of its private message, coming
//!    back is the acknowledgement), paced by `--rate` if given. With
//!    `--private`, some messages go as `@TARGET L ...` to one other client
//!    (see [`crate::route`]). With `--churn`, short-lived clients come and go
//!    beside the staying ones (see "Churn" below).
//! 3. Drain: after the last send, wait until every client has every message
//!    and every churn cycle has ended, or until nothing arrives for [`QUIET`]
//!    while messages are missing.
//!
//! Every client checks each sender's sequence (`next` per (receiver, sender) =
//! one past the last seq received). A receiver must see exactly the seqs that
//! reach it (every broadcast; the private messages addressed to it; for the
//! sender itself every seq), in increasing order: a seq below `next` counts as
//! duplicated; one that leaves out seqs meant for this receiver counts as
//! reordered (the left-out ones as `skipped`); a private message that reaches
//! anyone but its target, a confirmation anywhere but at its sender, or a
//! message of the wrong kind counts as misdelivered. Whatever a receiver still
//! misses at the end is lost. Each receiver also folds the `(sender, seq)` of
//! every broadcast it takes in (duplicates aside) into a fingerprint; at the
//! end the receivers of each room that got them all must hold the same one
//! (see [`crate::order`]). Reads go into one shared scratch buffer; only a
//! partial line or frame is kept per client; writes are coalesced per turn.
//!
//! Rooms (`--rooms N`): staying clients join with the rooms feature, then
//! `Joining → RoomJoining → RoomReplay → Joined`: after the welcome each sends
//! `room_join` for `#load{i mod N}` and counts as joined once it has the
//! room's `room_joined` and `history` replay (text mode: `/join` and its
//! `You are in` line). Broadcasts name their sender's room; a broadcast must
//! reach exactly that room's clients (see [`crate::route`]) and name the room
//! (JSON `"room"`, text `[#room ...]`), else it counts as misdelivered. Replays
//! are never deliveries.
//!
//! Floor mode (`--floor`, for examples/floor_relay.rs): no join; a client
//! counts as joined once its connect completes (the relay accepts pending
//! connections before it reads lines in a turn, so a client connected before a
//! send gets that message). Senders send the same tcp-json message lines, the
//! relay sends each back verbatim to every client, and the receive path and
//! every check above stay as they are; there are no other lines.
//!
//! Slow readers (`--slow-readers N`): N more JSON clients, in slots after the
//! churn slots, that join after the staying clients, read until their
//! welcome, and are then taken out of the poll set with their socket left
//! open (receive buffer `--slow-rcvbuf`): they never read again. They are not
//! receivers (no checks, no fingerprints). Sending stops once the server's
//! `/stats` says `dropped_slow_clients` reached N (polled by
//! [`crate::stats`] into [`Shared`]), then the run drains as usual.
//!
//! Threads (`--threads T`): T `Load`s, one per thread, each with its own poll
//! loop, drive the clients `i` with `i mod T` = their index (slow reader k
//! likewise by `k mod T`); see [`crate::threads`]. What they must agree on
//! lives in [`Shared`]: the senders' counts (a receiver checks and expects
//! against every sender's, wherever it runs), the join gate (no thread sends
//! before all have joined) and the end of sending. Each `Load` checks its own
//! receivers; expected deliveries are its receivers times all messages sent
//! (`--threads` excludes private messages, rooms and churn).
//!
//! Churn: churn clients live in extra slots after the C staying clients (tokens
//! C.., at most [`churn_cap`] at once). Cycle n uses wire n mod K (JSON without
//! the presence feature, text, WebSocket; K = 2 without `--ws-addr`) and leaves
//! with the protocol's exit when (n / K) is even, by closing the socket
//! otherwise. A cycle completes when an abrupt leaver closes or the server
//! closes a voluntary leaver's connection; it fails on a refused join, no
//! welcome within [`CHURN_JOIN_TIMEOUT`], a server close before the leave, or
//! no close within [`CHURN_LEAVE_TIMEOUT`] of the exit. Churn clients discard
//! what they receive, except that a private message or confirmation reaching
//! one counts as misdelivered.

use std::io::{self, IsTerminal, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use std::net::SocketAddr;

use crate::hist::Histogram;
use crate::opts::{self, Options, Proto};
use crate::order::{self, Fingerprint, Verdict};
use crate::route::Route;
use crate::shared::Shared;
use crate::wire::{self, Kind, LoadText, Wire};

/// The error of a thread that gave up because another one failed.
pub const ABORTED: &str = "another generator thread failed";
/// A run stops when messages are missing and nothing has arrived for this long.
const QUIET: Duration = Duration::from_secs(5);
/// How long a churn client stays after its welcome.
const CHURN_HOLD: Duration = Duration::from_millis(200);
/// A churn client must be welcomed this soon after its connect started.
const CHURN_JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// After a churn client's exit, the server must close the connection this soon.
const CHURN_LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often churn deadlines are looked at.
const CHURN_TICK: Duration = Duration::from_millis(5);
/// Longest line or frame kept while waiting for its end.
const MAX_PENDING_BYTES: usize = 1 << 20;
const SCRATCH_BYTES: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Connecting,
    WsHandshake,
    Joining,
    /// Welcomed; `room_join` sent, waiting for `room_joined` (`--rooms`).
    RoomJoining,
    /// `room_joined` seen, waiting for the room's replay (`--rooms`).
    RoomReplay,
    Joined,
    /// A churn client that sent its exit and waits for the server to close.
    Leaving,
    Closed,
}

/// One simulated user; kept small, buffers stay empty while idle.
struct Client {
    stream: Option<TcpStream>,
    wire: Wire,
    state: State,
    /// Unfinished line, frame or handshake response.
    pending: Vec<u8>,
    /// Bytes not yet written.
    out: Vec<u8>,
    /// Text of a fragmented WebSocket message so far.
    fragments: Vec<u8>,
    dirty: bool,
}

/// A sender's own messages acknowledged (its count sent is in [`Shared`]).
#[derive(Default, Clone, Copy)]
struct SenderState {
    acked: u32,
}

/// The churn part of one churn slot (its socket and buffers are a [`Client`]).
struct ChurnSlot {
    name: String,
    /// Connect start, for the join latency.
    started: Instant,
    /// Join, hold or leave deadline, by state.
    deadline: Instant,
    voluntary: bool,
}

/// Churn bookkeeping.
struct Churn {
    /// Cycles per second; `None` without `--churn`.
    rate: Option<f64>,
    slots: Vec<Option<ChurnSlot>>,
    free: Vec<usize>,
    active: usize,
    started: u64,
    completed: u64,
    failed: u64,
    voluntary: u64,
    abrupt: u64,
    first_error: Option<String>,
    join_latency: Histogram,
    last_tick: Instant,
}

/// Churn slots: max(16, RATE), at most 1000.
fn churn_cap(rate: Option<f64>) -> usize {
    rate.map_or(0, |r| (r.ceil() as usize).clamp(16, 1000))
}

/// Churn figures for the report.
pub struct ChurnOutcome {
    pub started: u64,
    pub completed: u64,
    pub failed: u64,
    pub voluntary: u64,
    pub abrupt: u64,
    pub first_error: Option<String>,
    pub join_latency: Histogram,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Complete,
    Stalled,
    TimedOut,
}

/// Everything the report needs.
pub struct Outcome {
    pub ending: Ending,
    pub clients: usize,
    pub joined: usize,
    pub senders: usize,
    pub messages_sent: u64,
    pub expected: u64,
    pub deliveries: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub skipped: u64,
    pub unexpected: u64,
    pub misdelivered: u64,
    pub first_misdelivery: Option<String>,
    pub disconnected: u64,
    pub server_errors: u64,
    pub first_server_error: Option<String>,
    /// Private messages sent, delivered to their targets, confirmed to their senders.
    pub private_sent: u64,
    pub private_delivered: u64,
    pub private_confirmed: u64,
    pub churn: ChurnOutcome,
    pub connect_secs: f64,
    pub send_secs: f64,
    pub delivery_secs: f64,
    pub latency: Histogram,
    /// The same-order check over the receivers of each room (see [`crate::order`]).
    pub order: Verdict,
    /// Each TCP address with the staying clients it got.
    pub addrs: Vec<(SocketAddr, usize)>,
    /// Each WebSocket address with the staying clients it got.
    pub ws_addrs: Vec<(SocketAddr, usize)>,
    /// Per staying client: its fingerprint and whether it was joined and
    /// connected at the end (what [`crate::threads`] needs to compare orders
    /// across threads).
    pub fingerprints: Vec<Fingerprint>,
    pub connected: Vec<bool>,
    /// Slow readers that joined; that the generator saw closed (it never
    /// reads, so normally none); the server's last `dropped_slow_clients`;
    /// seconds from the first send until that reached `--slow-readers`.
    pub slow_joined: usize,
    pub slow_closed: u64,
    pub slow_dropped: Option<u64>,
    pub slow_all_dropped_secs: Option<f64>,
}

pub struct Load {
    opts: Options,
    run_id: u32,
    shared: Arc<Shared>,
    /// This thread's index among `shared.threads`.
    part: usize,
    poll: Poll,
    clients: Vec<Client>,
    senders: Vec<SenderState>,
    /// The senders this thread drives (all of them with one thread).
    own_senders: Vec<usize>,
    /// This thread's clients in start order: its staying clients, then its slow readers.
    to_start: Vec<usize>,
    /// This thread's staying clients (its receivers).
    own_receivers: usize,
    /// Slot of slow reader 0 (after the staying clients and the churn slots).
    slow_base: usize,
    slow_joined: usize,
    slow_closed: u64,
    slow_all_dropped_at: Option<Instant>,
    /// Names of the staying clients, built once for the send and check paths.
    names: Vec<String>,
    /// `#load0..#load{N-1}` with `--rooms N`; empty otherwise.
    room_names: Vec<String>,
    route: Route,
    /// One past the last seq received, per (receiver, sender), row-major by receiver.
    next: Vec<u32>,
    /// Deliveries accounted for in order or by skipping (the seqs below `next`
    /// that reach their receiver, summed).
    progress: u64,
    /// Per staying client: the order of the broadcasts it got (see [`crate::order`]).
    order: Vec<Fingerprint>,
    churn: Churn,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    rng: u64,
    base: Instant,
    ws_keys: Vec<(usize, String)>,
    started: usize,
    in_flight: usize,
    joined: usize,
    fatal: Option<String>,
    deliveries: u64,
    duplicated: u64,
    reordered: u64,
    skipped: u64,
    unexpected: u64,
    misdelivered: u64,
    first_misdelivery: Option<String>,
    disconnected: u64,
    server_errors: u64,
    first_server_error: Option<String>,
    private_sent: u64,
    private_delivered: u64,
    private_confirmed: u64,
    /// Receive time of the latest delivery, in nanoseconds since `base`.
    last_delivery_ns: u64,
    latency: Histogram,
    show_progress: bool,
    last_progress: Instant,
}

impl Load {
    /// A one-thread run.
    #[cfg(test)]
    pub fn new(opts: Options) -> io::Result<Load> {
        let shared = Arc::new(Shared::new(1, opts.senders));
        Load::part(opts, shared, 0)
    }

    /// The `part`-th of `shared.threads` threads of a run.
    pub fn part(opts: Options, shared: Arc<Shared>, part: usize) -> io::Result<Load> {
        let base = shared.base;
        let seed = shared.seed ^ (part as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let threads = shared.threads;
        let owned = |i: usize| i % threads == part;
        let first_ws = opts.clients - opts.ws_clients.min(opts.clients);
        let cap = churn_cap(opts.churn);
        let slow_base = opts.clients + cap;
        let clients = (0..slow_base + opts.slow_readers)
            .map(|i| Client {
                stream: None,
                wire: if i >= slow_base {
                    Wire::Json
                } else if i >= first_ws {
                    Wire::Ws
                } else {
                    wire_for(opts.proto, i)
                },
                state: State::NotStarted,
                pending: Vec::new(),
                out: Vec::new(),
                fragments: Vec::new(),
                dirty: false,
            })
            .collect();
        let to_start: Vec<usize> = (0..opts.clients)
            .filter(|&i| owned(i))
            .chain(
                (0..opts.slow_readers)
                    .filter(|&k| owned(k))
                    .map(|k| slow_base + k),
            )
            .collect();
        let own_receivers = (0..opts.clients).filter(|&i| owned(i)).count();
        let run_id = shared.run_id;
        Ok(Load {
            run_id,
            shared,
            part,
            own_senders: (0..opts.senders).filter(|&s| owned(s)).collect(),
            to_start,
            own_receivers,
            slow_base,
            slow_joined: 0,
            slow_closed: 0,
            slow_all_dropped_at: None,
            names: (0..opts.clients).map(|i| client_name(run_id, i)).collect(),
            room_names: (0..opts.rooms).map(room_name).collect(),
            route: Route::new(opts.private_pct, opts.clients).with_rooms(opts.rooms),
            poll: Poll::new()?,
            clients,
            senders: vec![SenderState::default(); opts.senders],
            next: vec![0; opts.clients * opts.senders],
            progress: 0,
            order: vec![Fingerprint::new(); opts.clients],
            churn: Churn {
                rate: opts.churn,
                slots: (0..cap).map(|_| None).collect(),
                free: (0..cap).rev().collect(),
                active: 0,
                started: 0,
                completed: 0,
                failed: 0,
                voluntary: 0,
                abrupt: 0,
                first_error: None,
                join_latency: Histogram::new(),
                last_tick: base,
            },
            scratch: vec![0; SCRATCH_BYTES],
            dirty: Vec::new(),
            rng: seed | 1,
            base,
            ws_keys: Vec::new(),
            started: 0,
            in_flight: 0,
            joined: 0,
            fatal: None,
            deliveries: 0,
            duplicated: 0,
            reordered: 0,
            skipped: 0,
            unexpected: 0,
            misdelivered: 0,
            first_misdelivery: None,
            disconnected: 0,
            server_errors: 0,
            first_server_error: None,
            private_sent: 0,
            private_delivered: 0,
            private_confirmed: 0,
            last_delivery_ns: 0,
            latency: Histogram::new(),
            show_progress: part == 0 && io::stderr().is_terminal(),
            last_progress: base,
            opts,
        })
    }

    /// Client `i`'s name: a staying client's, a slow reader's, or the
    /// current churn client's in slot `i`.
    fn name(&self, i: usize) -> String {
        if let Some(k) = self.slow_index(i) {
            return slow_name(self.run_id, k);
        }
        match self.names.get(i) {
            Some(n) => n.clone(),
            None => self
                .churn_slot(i)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        }
    }

    /// Which slow reader slot `i` holds, if it is one.
    #[inline]
    fn slow_index(&self, i: usize) -> Option<usize> {
        i.checked_sub(self.slow_base)
            .filter(|&k| k < self.opts.slow_readers)
    }

    fn churn_slot(&self, i: usize) -> Option<&ChurnSlot> {
        let k = i.checked_sub(self.opts.clients)?;
        self.churn.slots.get(k)?.as_ref()
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }

    fn mask(&mut self) -> [u8; 4] {
        // xorshift64: masks need no cryptographic quality in a load test.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng as u32).to_le_bytes()
    }

    /// Runs all phases; `Err` only when the run could not be set up or a client failed to join.
    /// `on_joined` is called once, when every client (of every thread) has
    /// joined and before the first send. Any ending but a complete one tells
    /// the other threads to give up.
    pub fn run(
        self,
        server_rss_probe: &mut dyn FnMut(),
        on_joined: &mut dyn FnMut(),
    ) -> Result<Outcome, String> {
        let shared = Arc::clone(&self.shared);
        let r = self.phases(server_rss_probe, on_joined);
        if !matches!(&r, Ok(o) if o.ending == Ending::Complete) {
            shared.abort();
        }
        r
    }

    fn phases(
        mut self,
        server_rss_probe: &mut dyn FnMut(),
        on_joined: &mut dyn FnMut(),
    ) -> Result<Outcome, String> {
        let start = Instant::now();
        let deadline = start + self.opts.timeout;
        let mut events = Events::with_capacity(1024);

        // Join phase: this thread's clients, then the gate (every thread's).
        let (mut announced, mut passed_gate) = (false, false);
        while !passed_gate {
            if let Some(e) = self.fatal.take() {
                return Err(e);
            }
            if self.shared.aborted() {
                return Err(ABORTED.into());
            }
            if Instant::now() >= deadline {
                return Ok(self.outcome(Ending::TimedOut, start, None, None));
            }
            let mine_joined = self.joined >= self.to_start.len();
            if !mine_joined {
                self.start_clients()?;
            } else if !announced {
                announced = true;
                self.shared.joined();
            }
            passed_gate = mine_joined && self.shared.all_joined();
            if !passed_gate {
                // Waiting at the gate: look at it often.
                let wait = if mine_joined { 2 } else { 100 };
                self.turn(&mut events, Duration::from_millis(wait))?;
                server_rss_probe();
                self.progress_line("joining");
            }
        }
        if let Some(e) = self.fatal.take() {
            return Err(e);
        }
        let joined_at = Instant::now();
        on_joined();
        if self.opts.settle_ms > 0 {
            // Wait for the join traffic to end: quiet for settle_ms, 10 s at most.
            let quiet_for = Duration::from_millis(self.opts.settle_ms);
            let cap = Instant::now() + Duration::from_secs(10);
            let mut quiet_since = Instant::now();
            while Instant::now() < cap && quiet_since.elapsed() < quiet_for {
                self.turn(&mut events, Duration::from_millis(20))?;
                if !events.is_empty() {
                    quiet_since = Instant::now();
                }
            }
        }

        // Send phase and drain.
        let send_start = Instant::now();
        let send_end = self.opts.duration.map(|d| send_start + d);
        let own = self.own_senders.len();
        let total = own as u64 * u64::from(self.opts.messages);
        // This thread's share of the aggregate rate.
        let rate = self
            .opts
            .rate
            .map(|r| r * own as f64 / self.opts.senders.max(1) as f64);
        let mut scheduled: u64 = 0;
        let mut sending = true;
        let mut last_activity = send_start;
        let mut last_seen = (0u64, 0u64);
        let slow = self.opts.slow_readers as u64;
        let ending = loop {
            let now = Instant::now();
            if now >= deadline {
                break Ending::TimedOut;
            }
            if self.shared.aborted() {
                break Ending::Stalled;
            }
            if slow > 0
                && self.slow_all_dropped_at.is_none()
                && self.shared.dropped().is_some_and(|d| d >= slow)
            {
                self.slow_all_dropped_at = Some(now);
            }
            if sending
                && (scheduled >= total
                    || send_end.is_some_and(|e| now >= e)
                    || self.slow_all_dropped_at.is_some())
            {
                sending = false;
                self.shared.done_sending();
            }
            if sending {
                scheduled = self.send_due(now, send_start, rate, scheduled, total);
                self.start_churn(now, send_start);
            }
            self.churn_tick(now);
            let sent = self.messages_sent();
            let expected = self.expected();
            if !sending
                && self.shared.nobody_sending()
                && self.progress >= expected
                && self.churn.active == 0
            {
                break Ending::Complete;
            }
            if (self.deliveries, sent) != last_seen {
                last_seen = (self.deliveries, sent);
                last_activity = now;
            } else if self.progress < expected && now.duration_since(last_activity) >= QUIET {
                break Ending::Stalled;
            }
            let mut wait = match (sending, rate) {
                (true, Some(rate)) if rate > 0.0 => {
                    let due = send_start + Duration::from_secs_f64(scheduled as f64 / rate);
                    due.saturating_duration_since(now)
                        .min(Duration::from_millis(100))
                }
                _ => Duration::from_millis(100),
            };
            if self.churn.active > 0 || (sending && self.churn.rate.is_some()) {
                wait = wait.min(CHURN_TICK);
            }
            if slow > 0 || (self.shared.threads > 1 && !self.shared.nobody_sending()) {
                // Look at /stats's count, or the other threads' sending, often.
                wait = wait.min(Duration::from_millis(10));
            }
            self.turn(&mut events, wait)?;
            server_rss_probe();
            self.progress_line("sending");
        };
        if sending {
            self.shared.done_sending();
        }
        if self.show_progress {
            eprint!("\r\x1b[K");
        }
        Ok(self.outcome(ending, start, Some(joined_at), Some(send_start)))
    }

    /// Messages sent so far by every sender (of every thread).
    fn messages_sent(&self) -> u64 {
        self.shared.sent_all().map(u64::from).sum()
    }

    /// Deliveries this thread's receivers are owed for what has been sent so
    /// far (see [`Route::expected`]). Several threads: every message reaches
    /// every receiver (no private messages or rooms then).
    fn expected(&self) -> u64 {
        if self.shared.threads > 1 {
            return self.own_receivers as u64 * self.messages_sent();
        }
        self.shared
            .sent_all()
            .enumerate()
            .map(|(i, n)| self.route.expected(i, u64::from(n)))
            .sum()
    }

    /// Starts the churn cycles due by now (`rate` per second since `send_start`)
    /// while slots are free; late ones start as slots free up.
    fn start_churn(&mut self, now: Instant, send_start: Instant) {
        let Some(rate) = self.churn.rate else {
            return;
        };
        let due = (now.duration_since(send_start).as_secs_f64() * rate) as u64 + 1;
        while self.churn.started < due {
            let Some(k) = self.churn.free.pop() else {
                break;
            };
            self.start_churn_client(k, now);
        }
    }

    fn start_churn_client(&mut self, k: usize, now: Instant) {
        let n = self.churn.started;
        self.churn.started += 1;
        self.churn.active += 1;
        let kinds: &[Wire] = if !self.opts.ws_addrs.is_empty() {
            &[Wire::Json, Wire::Text, Wire::Ws]
        } else {
            &[Wire::Json, Wire::Text]
        };
        let kinds_n = kinds.len() as u64;
        let wire = kinds
            .get((n % kinds_n) as usize)
            .copied()
            .unwrap_or(Wire::Json);
        let voluntary = (n / kinds_n).is_multiple_of(2);
        let i = self.opts.clients + k;
        if let Some(slot) = self.churn.slots.get_mut(k) {
            *slot = Some(ChurnSlot {
                name: churn_name(self.run_id, n),
                started: now,
                deadline: now + CHURN_JOIN_TIMEOUT,
                voluntary,
            });
        }
        // Cycle n goes to address n mod count, as staying client n would.
        let Some(addr) = self.opts.target(n as usize, wire == Wire::Ws) else {
            return self.churn_end(i, Some("no address to connect to".into()));
        };
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => return self.churn_end(i, Some(format!("connect to {addr} failed: {e}"))),
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            return self.churn_end(i, Some(format!("register: {e}")));
        }
        if let Some(c) = self.clients.get_mut(i) {
            c.wire = wire;
            c.stream = Some(stream);
            c.state = State::Connecting;
            c.pending.clear();
            c.out.clear();
            c.fragments.clear();
        }
    }

    /// Looks at churn deadlines: joins that take too long, holds that are over
    /// (the client leaves), exits the server does not answer by closing.
    fn churn_tick(&mut self, now: Instant) {
        if self.churn.active == 0 || now.duration_since(self.churn.last_tick) < CHURN_TICK {
            return;
        }
        self.churn.last_tick = now;
        for k in 0..self.churn.slots.len() {
            let Some(slot) = self.churn.slots.get(k).and_then(Option::as_ref) else {
                continue;
            };
            if now < slot.deadline {
                continue;
            }
            let voluntary = slot.voluntary;
            let i = self.opts.clients + k;
            let Some(c) = self.clients.get(i) else {
                continue;
            };
            match c.state {
                State::Joined if voluntary => {
                    let mask = self.mask();
                    let name = self.name(i);
                    if let Some(c) = self.clients.get_mut(i) {
                        wire::encode_exit(c.wire, &name, &mut c.out, mask);
                        c.state = State::Leaving;
                    }
                    if let Some(Some(slot)) = self.churn.slots.get_mut(k) {
                        slot.deadline = now + CHURN_LEAVE_TIMEOUT;
                    }
                    self.mark_dirty(i);
                }
                State::Joined => self.churn_end(i, None),
                State::Leaving => self.churn_end(
                    i,
                    Some(format!(
                        "the server did not close within {CHURN_LEAVE_TIMEOUT:?} of the exit"
                    )),
                ),
                _ => self.churn_end(i, Some(format!("no welcome within {CHURN_JOIN_TIMEOUT:?}"))),
            }
        }
    }

    /// Ends the churn cycle in client slot `i`: completed when `error` is `None`.
    /// Closes the socket and frees the slot.
    fn churn_end(&mut self, i: usize, error: Option<String>) {
        let Some(k) = i.checked_sub(self.opts.clients) else {
            return;
        };
        let Some(slot) = self.churn.slots.get_mut(k).and_then(Option::take) else {
            return;
        };
        if let Some(c) = self.clients.get_mut(i) {
            if let Some(mut stream) = c.stream.take() {
                let _ = self.poll.registry().deregister(&mut stream);
            }
            c.state = State::NotStarted;
            c.pending = Vec::new();
            c.out = Vec::new();
            c.fragments = Vec::new();
        }
        self.ws_keys.retain(|(j, _)| *j != i);
        self.churn.free.push(k);
        self.churn.active = self.churn.active.saturating_sub(1);
        match error {
            None => {
                self.churn.completed += 1;
                if slot.voluntary {
                    self.churn.voluntary += 1;
                } else {
                    self.churn.abrupt += 1;
                }
            }
            Some(e) => {
                self.churn.failed += 1;
                self.churn
                    .first_error
                    .get_or_insert_with(|| format!("{}: {e}", slot.name));
            }
        }
    }

    /// One server line or message for the churn client in slot `i`.
    fn churn_message(&mut self, i: usize, msg: &[u8], now: Instant) {
        let Some(c) = self.clients.get(i) else { return };
        let (wire, state) = (c.wire, c.state);
        if wire::load_text(wire, msg).is_some() {
            // Churn clients are in no load room: no load line may reach them
            // with rooms, and never a private one.
            let chat_ok = self.opts.rooms == 0 || wire::is_history(wire, msg);
            if !chat_ok
                || matches!(
                    wire::kind(wire, msg),
                    Some(Kind::Private | Kind::PrivateSent)
                )
            {
                self.misdelivery(format!(
                    "churn client {}: {}",
                    self.name(i),
                    String::from_utf8_lossy(msg)
                ));
            }
            return;
        }
        if state != State::Joining {
            return;
        }
        let name = self.name(i);
        let kind_ok = wire == Wire::Text || wire::find(msg, b"\"info\"").is_some();
        if kind_ok
            && wire::find(msg, b"Welcome").is_some()
            && wire::contains_name(msg, name.as_bytes())
        {
            if let Some(c) = self.clients.get_mut(i) {
                c.state = State::Joined;
            }
            let k = i.saturating_sub(self.opts.clients);
            if let Some(Some(slot)) = self.churn.slots.get_mut(k) {
                let waited = now.saturating_duration_since(slot.started);
                self.churn.join_latency.record(waited.as_nanos() as u64);
                slot.deadline = now + CHURN_HOLD;
            }
        } else if wire.is_error(msg) {
            let text = String::from_utf8_lossy(msg).into_owned();
            self.churn_end(i, Some(format!("refused: {text}")));
        }
    }

    fn misdelivery(&mut self, what: String) {
        self.misdelivered += 1;
        self.first_misdelivery.get_or_insert(what);
    }

    /// Starts clients until `connect_window` are between connect and welcome.
    fn start_clients(&mut self) -> Result<(), String> {
        while self.in_flight < self.opts.connect_window && self.started < self.to_start.len() {
            let Some(&i) = self.to_start.get(self.started) else {
                break;
            };
            let Some(client) = self.clients.get(i) else {
                break;
            };
            // Slow reader k goes to address k mod n, as staying client k would.
            let spread_as = self.slow_index(i).unwrap_or(i);
            let Some(addr) = self.opts.target(spread_as, client.wire == Wire::Ws) else {
                return Err(format!("client {i}: no address to connect to"));
            };
            let mut stream = TcpStream::connect(addr).map_err(|e| {
                format!(
                    "client {i}: connect to {addr} failed: {e} (open-file limit or local ports exhausted?)"
                )
            })?;
            self.poll
                .registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("client {i}: register: {e}"))?;
            if let Some(c) = self.clients.get_mut(i) {
                c.stream = Some(stream);
                c.state = State::Connecting;
            }
            self.started += 1;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// One poll turn: flush, wait, handle events, flush the coalesced writes.
    fn turn(&mut self, events: &mut Events, timeout: Duration) -> Result<(), String> {
        // Bytes queued since the last turn (new sends) go out before sleeping.
        self.flush_dirty();
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let i = event.token().0;
            if event.is_writable() {
                self.on_writable(i);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.on_readable(i);
            }
        }
        self.flush_dirty();
        Ok(())
    }

    fn on_writable(&mut self, i: usize) {
        let rcvbuf = match self.slow_index(i) {
            Some(_) => self.opts.slow_rcvbuf,
            None => 0,
        };
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        if c.state == State::Connecting {
            let Some(stream) = c.stream.as_ref() else {
                return;
            };
            match stream.take_error() {
                Ok(Some(e)) | Err(e) => return self.fail(i, format!("connect failed: {e}")),
                Ok(None) => {}
            }
            match stream.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => return self.fail(i, format!("connect failed: {e}")),
            }
            let _ = stream.set_nodelay(true);
            if rcvbuf > 0 {
                let _ = set_rcvbuf(stream, rcvbuf);
            }
            self.on_connected(i);
        }
        self.mark_dirty(i);
    }

    fn on_connected(&mut self, i: usize) {
        if self.opts.floor {
            // A plain relay has no join: a connected client is a joined one.
            if let Some(c) = self.clients.get_mut(i) {
                c.state = State::Joined;
            }
            self.joined += 1;
            self.in_flight = self.in_flight.saturating_sub(1);
            return;
        }
        let mask = self.mask();
        let name = self.name(i);
        let features = self.features(i);
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        if c.wire == Wire::Ws {
            let salt = self.rng.rotate_left(17) ^ i as u64;
            let key = wire::ws_key(self.rng, salt);
            // The address this client connected to (one of several with --ws-addr A,B).
            let host = c
                .stream
                .as_ref()
                .and_then(|s| s.peer_addr().ok())
                .or_else(|| self.opts.target(i, true))
                .map(|a| a.to_string())
                .unwrap_or_default();
            c.out
                .extend_from_slice(&wire::ws_request(&host, &self.opts.ws_path, &key));
            c.state = State::WsHandshake;
            self.ws_keys.push((i, key));
        } else {
            wire::encode_join(c.wire, &name, features, &mut c.out, mask);
            c.state = State::Joining;
        }
    }

    /// Staying clients and slow readers ask for presence deltas (and staying
    /// clients for rooms with `--rooms`);
    /// JSON churn clients take the legacy full lists, WebSocket churn clients
    /// deltas; churn clients never use rooms.
    fn features(&self, i: usize) -> wire::Features {
        let staying = i < self.opts.clients;
        let slow = self.slow_index(i).is_some();
        wire::Features {
            presence: staying || slow || self.clients.get(i).is_some_and(|c| c.wire == Wire::Ws),
            rooms: staying && self.opts.rooms > 0,
        }
    }

    /// Client `i`'s room name with `--rooms`.
    fn room_of(&self, i: usize) -> Option<&str> {
        self.route
            .room(i)
            .and_then(|k| self.room_names.get(k))
            .map(String::as_str)
    }

    /// True once client `i`'s socket is gone: the rest of its input is dropped.
    fn closed(&self, i: usize) -> bool {
        self.clients.get(i).is_none_or(|c| c.stream.is_none())
    }

    fn mark_dirty(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i)
            && !c.dirty
            && !c.out.is_empty()
        {
            c.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Writes every client with queued bytes; leftovers wait for a writable event.
    fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &i in &dirty {
            let senders = self.opts.senders;
            let Some(c) = self.clients.get_mut(i) else {
                continue;
            };
            c.dirty = false;
            let Some(stream) = c.stream.as_mut() else {
                continue;
            };
            let mut written = 0;
            let mut error = None;
            while written < c.out.len() {
                match stream.write(c.out.get(written..).unwrap_or_default()) {
                    Ok(0) => {
                        error = Some("connection closed while writing".to_string());
                        break;
                    }
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        error = Some(format!("write failed: {e}"));
                        break;
                    }
                }
            }
            c.out.drain(..written);
            if c.out.is_empty() && i >= senders {
                c.out = Vec::new();
            }
            if let Some(e) = error {
                self.fail(i, e);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Queues this thread's messages that are due (`rate`: its share of the
    /// aggregate rate); returns the new count of scheduled messages.
    fn send_due(
        &mut self,
        now: Instant,
        send_start: Instant,
        rate: Option<f64>,
        mut scheduled: u64,
        total: u64,
    ) -> u64 {
        let nanos = self.nanos(now);
        let (m, w) = (self.opts.messages, self.opts.window);
        let own = std::mem::take(&mut self.own_senders);
        match rate {
            Some(rate) if !own.is_empty() => {
                let due = (now.duration_since(send_start).as_secs_f64() * rate) as u64 + 1;
                while scheduled < due.min(total) {
                    let k = (scheduled % own.len() as u64) as usize;
                    let Some(&s) = own.get(k) else { break };
                    if !self.try_send(s, nanos, m, w) {
                        break;
                    }
                    scheduled += 1;
                }
            }
            _ => {
                for &s in &own {
                    while self.try_send(s, nanos, m, w) {
                        scheduled += 1;
                    }
                }
            }
        }
        self.own_senders = own;
        scheduled
    }

    /// Queues sender `s`'s next message if it has one and its window allows.
    fn try_send(&mut self, s: usize, nanos: u64, messages: u32, window: u32) -> bool {
        let Some(st) = self.senders.get(s).copied() else {
            return false;
        };
        let sent = self.shared.sent(s);
        if sent >= messages || sent - st.acked >= window {
            return false;
        }
        let mask = self.mask();
        let target = self.route.target(s, u64::from(sent));
        let to = target.and_then(|t| self.names.get(t)).map(String::as_str);
        let room = self
            .route
            .room(s)
            .and_then(|k| self.room_names.get(k))
            .map(String::as_str);
        let (Some(c), Some(name)) = (self.clients.get_mut(s), self.names.get(s)) else {
            return false;
        };
        if c.state != State::Joined {
            return false;
        }
        let load = LoadText {
            sender: s,
            seq: sent,
            nanos,
            pad_to: self.opts.message_bytes,
        };
        // Counted before it is queued (and so before anyone can receive it).
        self.shared.bump(s);
        wire::encode_message(c.wire, name, to, room, load, &mut c.out, mask);
        if target.is_some() {
            self.private_sent += 1;
        }
        self.mark_dirty(s);
        true
    }

    /// Reads until `WouldBlock`, handing complete lines or frames on.
    fn on_readable(&mut self, i: usize) {
        let mut scratch = std::mem::take(&mut self.scratch);
        while !self.never_reads(i)
            && let Some(stream) = self.clients.get_mut(i).and_then(|c| c.stream.as_mut())
        {
            match stream.read(&mut scratch) {
                Ok(0) => {
                    self.fail(i, "server closed the connection".into());
                    break;
                }
                Ok(n) => {
                    let now = self.nanos(Instant::now());
                    self.on_bytes(i, scratch.get(..n).unwrap_or_default(), now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.fail(i, format!("read failed: {e}"));
                    break;
                }
            }
        }
        self.scratch = scratch;
    }

    fn on_bytes(&mut self, i: usize, data: &[u8], now: u64) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        let mut pending = std::mem::take(&mut c.pending);
        let rest_len = if pending.is_empty() {
            let used = self.dispatch_bytes(i, data, now);
            let rest = data.get(used..).unwrap_or_default();
            pending.extend_from_slice(rest);
            rest.len()
        } else {
            pending.extend_from_slice(data);
            let used = self.dispatch_bytes(i, &pending, now);
            pending.drain(..used.min(pending.len()));
            pending.len()
        };
        if rest_len > MAX_PENDING_BYTES {
            return self.fail(i, "server line or frame too long".into());
        }
        if pending.capacity() > 64 * 1024 && pending.len() < 1024 {
            pending.shrink_to(4096);
        }
        if let Some(c) = self.clients.get_mut(i)
            && c.stream.is_some()
        {
            c.pending = pending;
        }
    }

    /// A slow reader that has joined: it reads no more.
    #[inline]
    fn never_reads(&self, i: usize) -> bool {
        self.slow_index(i).is_some()
            && self
                .clients
                .get(i)
                .is_some_and(|c| c.state == State::Joined)
    }

    /// Hands `buf` to the decoder of the client's current state; returns the bytes used.
    fn dispatch_bytes(&mut self, i: usize, buf: &[u8], now: u64) -> usize {
        let Some(c) = self.clients.get(i) else {
            return buf.len();
        };
        match c.state {
            State::WsHandshake => self.on_handshake(i, buf, now),
            _ if c.wire == Wire::Ws => self.on_frames(i, buf, now),
            _ => self.on_lines(i, buf, now),
        }
    }

    /// Handles complete `\n` lines; returns the bytes used.
    fn on_lines(&mut self, i: usize, buf: &[u8], now: u64) -> usize {
        let mut start = 0;
        while let Some(rest) = buf.get(start..)
            && let Some(off) = wire::find_byte(b'\n', rest)
        {
            self.on_message(i, rest.get(..off).unwrap_or_default(), now);
            start += off + 1;
            if self.closed(i) {
                return buf.len();
            }
        }
        start
    }

    fn on_handshake(&mut self, i: usize, buf: &[u8], now: u64) -> usize {
        let Some(end) = wire::find(buf, b"\r\n\r\n") else {
            return 0;
        };
        let Some(pos) = self.ws_keys.iter().position(|(k, _)| *k == i) else {
            return 0;
        };
        let (_, key) = self.ws_keys.swap_remove(pos);
        if let Err(e) = wire::check_ws_response(buf.get(..end).unwrap_or_default(), &key) {
            self.fail(i, e);
            return buf.len();
        }
        let mask = self.mask();
        let name = self.name(i);
        let features = self.features(i);
        if let Some(c) = self.clients.get_mut(i) {
            wire::encode_join(Wire::Ws, &name, features, &mut c.out, mask);
            c.state = State::Joining;
        }
        self.mark_dirty(i);
        let head = end + 4;
        head + self.on_frames(i, buf.get(head..).unwrap_or_default(), now)
    }

    /// Handles complete WebSocket frames; returns the bytes used.
    fn on_frames(&mut self, i: usize, buf: &[u8], now: u64) -> usize {
        let mut start = 0;
        loop {
            let rest = buf.get(start..).unwrap_or_default();
            let (n, frame) = match wire::decode_frame(rest, MAX_PENDING_BYTES) {
                Ok(Some(f)) => f,
                Ok(None) => return start,
                Err(e) => {
                    self.fail(i, e);
                    return buf.len();
                }
            };
            if self.closed(i) {
                return buf.len();
            }
            let payload = rest.get(frame.payload.clone()).unwrap_or_default();
            start += n;
            match frame.opcode {
                wire::OPCODE_TEXT if frame.fin => self.on_message(i, payload, now),
                wire::OPCODE_TEXT | wire::OPCODE_CONT => {
                    let Some(c) = self.clients.get_mut(i) else {
                        return buf.len();
                    };
                    c.fragments.extend_from_slice(payload);
                    if frame.fin {
                        let whole = std::mem::take(&mut c.fragments);
                        self.on_message(i, &whole, now);
                    }
                }
                wire::OPCODE_PING => {
                    let mask = self.mask();
                    if let Some(c) = self.clients.get_mut(i) {
                        wire::encode_frame(wire::OPCODE_PONG, payload, mask, &mut c.out);
                    }
                    self.mark_dirty(i);
                }
                wire::OPCODE_CLOSE => {
                    self.fail(i, "server closed the WebSocket".into());
                    return buf.len();
                }
                _ => {}
            }
        }
    }

    /// One server line (TCP) or text message (WebSocket).
    fn on_message(&mut self, i: usize, msg: &[u8], now: u64) {
        if self.slow_index(i).is_some() {
            return self.slow_message(i, msg);
        }
        if i >= self.opts.clients {
            let at = self.base + Duration::from_nanos(now);
            return self.churn_message(i, msg, at);
        }
        let Some(c) = self.clients.get(i) else { return };
        let (wire, state) = (c.wire, c.state);
        if matches!(state, State::RoomJoining | State::RoomReplay) {
            return self.on_room_joining(i, wire, state, msg);
        }
        if self.opts.rooms > 0 && wire::is_history(wire, msg) {
            return;
        }
        if let Some(text) = wire::load_text(wire, msg) {
            match (wire::kind(wire, msg), wire::parse_load(text)) {
                (Some(kind), Some((s, q, t))) => self.on_delivery(i, kind, (s, q, t), msg, now),
                _ => self.unexpected += 1,
            }
            return;
        }
        let is_error = wire.is_error(msg);
        if state == State::Joining {
            let name = self.name(i);
            let kind_ok = wire == Wire::Text || wire::find(msg, b"\"info\"").is_some();
            let welcome = kind_ok
                && wire::find(msg, b"Welcome").is_some()
                && wire::contains_name(msg, name.as_bytes());
            if welcome && self.opts.rooms > 0 {
                let mask = self.mask();
                let room = self.room_of(i).unwrap_or_default().to_string();
                if let Some(c) = self.clients.get_mut(i) {
                    wire::encode_room_join(wire, &room, &mut c.out, mask);
                    c.state = State::RoomJoining;
                }
                self.mark_dirty(i);
            } else if welcome {
                self.now_joined(i);
            } else if is_error {
                let text = String::from_utf8_lossy(msg);
                self.fatal
                    .get_or_insert_with(|| format!("client {i} ({name}) was refused: {text}"));
            }
        } else if is_error {
            self.server_errors += 1;
            if self.first_server_error.is_none() {
                self.first_server_error =
                    Some(format!("client {i}: {}", String::from_utf8_lossy(msg)));
            }
        }
    }

    /// One server line for slow reader `i`: it waits for its welcome, then
    /// leaves the poll set (its socket stays open and is never read again).
    fn slow_message(&mut self, i: usize, msg: &[u8]) {
        if self
            .clients
            .get(i)
            .is_none_or(|c| c.state != State::Joining)
        {
            return;
        }
        let name = self.name(i);
        if wire::find(msg, b"\"info\"").is_some()
            && wire::find(msg, b"Welcome").is_some()
            && wire::contains_name(msg, name.as_bytes())
        {
            self.now_joined(i);
            self.slow_joined += 1;
            if let Some(c) = self.clients.get_mut(i) {
                if let Some(stream) = c.stream.as_mut() {
                    let _ = self.poll.registry().deregister(stream);
                }
                c.pending = Vec::new();
            }
        } else if Wire::Json.is_error(msg) {
            let text = String::from_utf8_lossy(msg);
            self.fatal
                .get_or_insert_with(|| format!("slow reader {i} ({name}) was refused: {text}"));
        }
    }

    fn now_joined(&mut self, i: usize) {
        if let Some(c) = self.clients.get_mut(i) {
            c.state = State::Joined;
        }
        self.joined += 1;
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// One server line or message while staying client `i` joins its room.
    fn on_room_joining(&mut self, i: usize, wire: Wire, state: State, msg: &[u8]) {
        let room = self.room_of(i).unwrap_or_default().to_string();
        match (wire::room_step(wire, msg, &room), state) {
            (wire::RoomStep::Joined, _) => {
                if let Some(c) = self.clients.get_mut(i) {
                    c.state = State::RoomReplay;
                }
            }
            (wire::RoomStep::Ready, State::RoomReplay) => self.now_joined(i),
            // Text mode has no separate replay object.
            (wire::RoomStep::Ready, _) if wire == Wire::Text => self.now_joined(i),
            _ if wire.is_error(msg) => {
                let text = String::from_utf8_lossy(msg);
                let name = self.name(i);
                self.fatal.get_or_insert_with(|| {
                    format!("client {i} ({name}) could not join {room}: {text}")
                });
            }
            _ => {}
        }
    }

    /// Load message `(sender, seq, send_nanos)` of `kind` reached staying client
    /// `r` (`line` is the whole line or message, for the name checks of privates).
    fn on_delivery(&mut self, r: usize, kind: Kind, load: (u64, u64, u64), line: &[u8], now: u64) {
        self.deliveries += 1;
        self.last_delivery_ns = now;
        let senders = self.opts.senders;
        let (s, q, t) = load;
        let (Ok(s), Ok(q)) = (usize::try_from(s), u32::try_from(q)) else {
            self.unexpected += 1;
            return;
        };
        let sent = self.shared.sent(s);
        if s >= senders || q >= self.opts.messages || q >= sent {
            self.unexpected += 1;
            return;
        }
        let target = self.route.target(s, u64::from(q));
        let right = match (target, kind) {
            // A broadcast reaches its sender's room, named on the line.
            (None, Kind::Chat) => {
                self.route.same_room(r, s)
                    && self.room_of(s).is_none_or(|room| {
                        wire::line_room(self.clients.get(r).map_or(Wire::Json, |c| c.wire), line)
                            == Some(room.as_bytes())
                    })
            }
            // The server signs a private message with its sender's name and
            // confirms it with the target's name.
            (Some(to), Kind::Private) => {
                to == r
                    && self
                        .names
                        .get(s)
                        .is_some_and(|n| wire::contains_name(line, n.as_bytes()))
            }
            (Some(to), Kind::PrivateSent) => {
                s == r
                    && self
                        .names
                        .get(to)
                        .is_some_and(|n| wire::contains_name(line, n.as_bytes()))
            }
            _ => false,
        };
        if !right {
            let what = format!(
                "client {r} got seq {q} of sender {s} (target {target:?}) as {kind:?}: {}",
                String::from_utf8_lossy(line)
            );
            return self.misdelivery(what);
        }
        match kind {
            Kind::Chat => {}
            Kind::Private => self.private_delivered += 1,
            Kind::PrivateSent => self.private_confirmed += 1,
        }
        let route = self.route;
        let Some(next) = self.next.get_mut(r * senders + s) else {
            return;
        };
        let expected = *next;
        if q < expected {
            self.duplicated += 1;
            return;
        }
        let left_out = route.reaching(r, s, u64::from(expected), u64::from(q));
        if left_out > 0 {
            self.reordered += 1;
            self.skipped += left_out;
        }
        *next = q + 1;
        let advanced = *next;
        self.progress += left_out + 1;
        if kind == Kind::Chat
            && let Some(fp) = self.order.get_mut(r)
        {
            fp.fold(s as u64, u64::from(q));
        }
        self.latency.record(now.saturating_sub(t));
        if r == s
            && let Some(st) = self.senders.get_mut(s)
        {
            st.acked = advanced;
        }
    }

    /// Closes client `i`. While joining this ends the run; later it is counted.
    /// For a churn client: completes its cycle when it was leaving, fails it otherwise.
    fn fail(&mut self, i: usize, why: String) {
        if self.slow_index(i).is_some() {
            return self.slow_fail(i, why);
        }
        if i >= self.opts.clients {
            let leaving = self
                .clients
                .get(i)
                .is_some_and(|c| c.state == State::Leaving);
            return self.churn_end(i, (!leaving).then_some(why));
        }
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        if c.state == State::Closed {
            return;
        }
        let was = c.state;
        c.state = State::Closed;
        if let Some(mut stream) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        c.pending = Vec::new();
        c.out = Vec::new();
        c.fragments = Vec::new();
        if was == State::Joined {
            self.disconnected += 1;
            if self.first_server_error.is_none() {
                self.first_server_error = Some(format!("client {i}: {why}"));
            }
        } else {
            self.fatal
                .get_or_insert_with(|| format!("client {i} could not join: {why}"));
        }
    }

    /// Slow reader `i` failed: fatal while joining; afterwards (it is no
    /// longer polled, so only a failed write could tell) just counted.
    fn slow_fail(&mut self, i: usize, why: String) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        if c.state == State::Closed {
            return;
        }
        let was = c.state;
        c.state = State::Closed;
        if let Some(mut stream) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
        c.pending = Vec::new();
        c.out = Vec::new();
        if was == State::Joined {
            self.slow_closed += 1;
        } else {
            self.fatal
                .get_or_insert_with(|| format!("slow reader {i} could not join: {why}"));
        }
    }

    fn progress_line(&mut self, phase: &str) {
        if !self.show_progress || self.last_progress.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last_progress = Instant::now();
        eprint!(
            "\r\x1b[K{phase}: joined {}/{}  sent {}  deliveries {}  churn {}/{}",
            self.joined,
            self.opts.clients,
            self.messages_sent(),
            self.deliveries,
            self.churn.completed,
            self.churn.started
        );
    }

    fn outcome(
        &mut self,
        ending: Ending,
        start: Instant,
        joined_at: Option<Instant>,
        send_start: Option<Instant>,
    ) -> Outcome {
        let sent = self.messages_sent();
        let expected = self.expected();
        let end = Instant::now();
        let connect_secs = joined_at.unwrap_or(end).duration_since(start).as_secs_f64();
        let send_secs = send_start.map_or(0.0, |s| end.duration_since(s).as_secs_f64());
        let delivery_secs = match send_start {
            Some(s) if self.deliveries > 0 => {
                self.last_delivery_ns.saturating_sub(self.nanos(s)) as f64 / 1e9
            }
            _ => 0.0,
        };
        Outcome {
            ending,
            clients: self.opts.clients,
            // The staying clients (slow readers are counted apart).
            joined: self.joined.saturating_sub(self.slow_joined),
            senders: self.opts.senders,
            messages_sent: sent,
            expected,
            deliveries: self.deliveries,
            lost: expected.saturating_sub(self.progress),
            duplicated: self.duplicated,
            reordered: self.reordered,
            skipped: self.skipped,
            unexpected: self.unexpected,
            misdelivered: self.misdelivered,
            first_misdelivery: self.first_misdelivery.take(),
            disconnected: self.disconnected,
            server_errors: self.server_errors,
            first_server_error: self.first_server_error.take(),
            private_sent: self.private_sent,
            private_delivered: self.private_delivered,
            private_confirmed: self.private_confirmed,
            churn: ChurnOutcome {
                started: self.churn.started,
                completed: self.churn.completed,
                // Cycles still running when the run ended count as failed.
                failed: self.churn.failed + self.churn.active as u64,
                voluntary: self.churn.voluntary,
                abrupt: self.churn.abrupt,
                first_error: self.churn.first_error.take(),
                join_latency: std::mem::replace(&mut self.churn.join_latency, Histogram::new()),
            },
            connect_secs,
            send_secs,
            delivery_secs,
            latency: std::mem::replace(&mut self.latency, Histogram::new()),
            order: self.order_verdict(),
            addrs: opts::tally(
                &self.opts.addrs,
                (0..self.opts.clients).filter(|&i| self.owns(i) && !self.is_ws(i)),
            ),
            ws_addrs: opts::tally(
                &self.opts.ws_addrs,
                (0..self.opts.clients).filter(|&i| self.owns(i) && self.is_ws(i)),
            ),
            fingerprints: self.order.clone(),
            connected: (0..self.opts.clients).map(|i| self.connected(i)).collect(),
            slow_joined: self.slow_joined,
            slow_closed: self.slow_closed,
            slow_dropped: self.shared.dropped(),
            slow_all_dropped_secs: match (send_start, self.slow_all_dropped_at) {
                (Some(s), Some(t)) => Some(t.saturating_duration_since(s).as_secs_f64()),
                _ => None,
            },
        }
    }

    /// Whether staying client `i` is one of this thread's.
    fn owns(&self, i: usize) -> bool {
        i % self.shared.threads == self.part
    }

    fn is_ws(&self, i: usize) -> bool {
        self.clients.get(i).is_some_and(|c| c.wire == Wire::Ws)
    }

    /// Compares the receivers' orders, room by room (one group without rooms).
    /// Every broadcast was sent after the whole join phase, so each receiver
    /// of a room is owed all of that room's broadcasts.
    fn order_verdict(&self) -> Verdict {
        let group = |i: usize| self.route.room(i).unwrap_or(0);
        let mut owed = vec![0u64; self.opts.rooms.max(1)];
        for (s, sent) in self.shared.sent_all().enumerate() {
            if let Some(o) = owed.get_mut(group(s)) {
                *o += self.route.broadcasts(s, u64::from(sent));
            }
        }
        order::compare(
            &self.order,
            group,
            |g| owed.get(g).copied().unwrap_or(0),
            |i| self.connected(i),
        )
    }

    /// Whether staying client `i` was joined and connected at the end.
    fn connected(&self, i: usize) -> bool {
        self.clients
            .get(i)
            .is_some_and(|c| c.state == State::Joined && c.stream.is_some())
    }
}

/// `load-<run>-<i>`: unique per run, short enough for any name rule.
fn client_name(run_id: u32, i: usize) -> String {
    format!("load-{run_id:04x}-{i}")
}

/// `#load<k>`: room k of `--rooms`.
fn room_name(k: usize) -> String {
    format!("#load{k}")
}

/// `slow-<run>-<k>` for slow reader k: unique per run.
fn slow_name(run_id: u32, k: usize) -> String {
    format!("slow-{run_id:04x}-{k}")
}

/// Sets a socket's receive buffer (`SO_RCVBUF`; Linux doubles the value).
fn set_rcvbuf(stream: &TcpStream, bytes: usize) -> io::Result<()> {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is the open socket `stream` owns, and the option
    // value points to a live c_int whose size is passed with it.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const v).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `churn-<run>-<n>` for churn cycle n: unique per run.
fn churn_name(run_id: u32, n: u64) -> String {
    format!("churn-{run_id:04x}-{n}")
}

/// Client `i`'s wire; `mix` cycles json, json, text, ws (50% / 25% / 25%).
fn wire_for(proto: Proto, i: usize) -> Wire {
    match proto {
        Proto::Json => Wire::Json,
        Proto::Text => Wire::Text,
        Proto::Ws => Wire::Ws,
        Proto::Mix => match i % 4 {
            0 | 1 => Wire::Json,
            2 => Wire::Text,
            _ => Wire::Ws,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// How the test relay passes lines on.
    #[derive(Clone, Copy)]
    enum Relay {
        /// Every line `n` times to everyone, in one global order.
        Copies(usize),
        /// Every line once to everyone, but of two consecutive lines from
        /// different connections the odd-numbered connections get the second
        /// first: each sender's order stays intact, the total order differs.
        Skew,
    }

    /// A thread-per-connection relay for `clients` clients (see [`Relay`]).
    /// Ends when every client has closed (or after a 20 s read timeout).
    fn relay(listener: TcpListener, clients: usize, mode: Relay) {
        let (tx, rx) = mpsc::channel::<(usize, Vec<u8>)>();
        let mut outs = Vec::new();
        for k in 0..clients {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            if let Ok(out) = stream.try_clone() {
                outs.push(out);
            }
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                    if tx.send((k, std::mem::take(&mut line))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let to_all = |outs: &mut Vec<std::net::TcpStream>, line: &[u8], copies: usize| {
            for out in outs.iter_mut() {
                for _ in 0..copies {
                    let _ = out.write_all(line);
                }
            }
        };
        // Skew: a line waiting for the next one (at most 50 ms).
        let mut held: Option<(usize, Vec<u8>)> = None;
        loop {
            match (rx.recv_timeout(Duration::from_millis(50)), mode) {
                (Ok((_, line)), Relay::Copies(n)) => to_all(&mut outs, &line, n),
                (Ok((k, line)), Relay::Skew) => match held.take() {
                    Some((h, first)) if h != k => {
                        for (j, out) in outs.iter_mut().enumerate() {
                            let (a, b) = if j % 2 == 0 {
                                (&first, &line)
                            } else {
                                (&line, &first)
                            };
                            let _ = out.write_all(a);
                            let _ = out.write_all(b);
                        }
                    }
                    Some((_, first)) => {
                        to_all(&mut outs, &first, 1);
                        held = Some((k, line));
                    }
                    None => held = Some((k, line)),
                },
                (Err(e), _) => {
                    if let Some((_, first)) = held.take() {
                        to_all(&mut outs, &first, 1);
                    }
                    if e == mpsc::RecvTimeoutError::Disconnected {
                        break;
                    }
                }
            }
        }
    }

    /// A floor-mode run of 4 clients, 2 senders x 50 messages, against [`relay`];
    /// with `twice` the relay's address is given twice (two clients each);
    /// on `threads` generator threads.
    fn floor_run(mode: Relay, twice: bool, threads: usize) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let server = std::thread::spawn(move || relay(listener, 4, mode));
        let addrs = if twice {
            format!("{addr},{addr}")
        } else {
            addr
        };
        let args = [
            "--addr",
            &addrs,
            "--floor",
            "--clients",
            "4",
            "--senders",
            "2",
            "--messages",
            "50",
            "--window",
            "8",
            "--timeout",
            "20",
            "--threads",
            &threads.to_string(),
        ];
        let opts = Options::parse(args.iter().map(|s| s.to_string()))
            .expect("options")
            .expect("not --help");
        let out = crate::threads::run(&opts, &mut || {}, &mut || {}).expect("run");
        let _ = server.join();
        out
    }

    #[test]
    fn floor_mode_drives_a_plain_relay_with_the_same_checks() {
        let o = floor_run(Relay::Copies(1), false, 1);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!((o.joined, o.messages_sent), (4, 100));
        assert_eq!((o.deliveries, o.expected), (400, 400));
        let errors = (
            o.lost,
            o.duplicated,
            o.reordered,
            o.unexpected,
            o.disconnected,
        );
        assert_eq!(errors, (0, 0, 0, 0, 0));
        assert_eq!(o.latency.count(), 400);
        assert!(o.order.same(), "{:?}", o.order);
        assert_eq!((o.order.compared, o.order.left_out), (4, 0));
        assert_eq!(o.addrs.len(), 1);
        assert_eq!(o.addrs.first().map(|a| a.1), Some(4));
    }

    #[test]
    fn one_address_twice_spreads_the_clients_and_keeps_one_order() {
        let o = floor_run(Relay::Copies(1), true, 1);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!((o.deliveries, o.expected, o.lost), (400, 400, 0));
        let counts: Vec<usize> = o.addrs.iter().map(|a| a.1).collect();
        assert_eq!(counts, vec![2, 2]);
        assert!(o.ws_addrs.is_empty());
        assert!(o.order.same(), "{:?}", o.order);
        assert_eq!((o.order.compared, o.order.distinct), (4, 1));
    }

    #[test]
    fn a_relay_that_reorders_between_senders_fails_the_order_check() {
        let o = floor_run(Relay::Skew, false, 1);
        assert_eq!(o.ending, Ending::Complete);
        // Every per-sender check passes: only the total order differs.
        let errors = (o.lost, o.duplicated, o.reordered, o.unexpected);
        assert_eq!(errors, (0, 0, 0, 0));
        assert_eq!(o.deliveries, 400);
        assert!(!o.order.same());
        assert_eq!(o.order.compared, 4);
        assert_eq!((o.order.distinct, o.order.groups_differing), (2, 1));
        assert!(o.order.example.is_some());
    }

    #[test]
    fn floor_mode_counts_a_relay_that_sends_twice() {
        let o = floor_run(Relay::Copies(2), false, 1);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!((o.expected, o.lost), (400, 0));
        // The run ends once every expected line has arrived, so the second
        // copy of the very last lines may still be on its way: each copy that
        // did arrive is counted as a duplicate, and nothing else.
        assert!(
            (396..=400).contains(&o.duplicated),
            "{} duplicates",
            o.duplicated
        );
        assert_eq!(o.deliveries, 400 + o.duplicated);
    }

    #[test]
    fn two_threads_split_the_clients_and_keep_every_check() {
        let o = floor_run(Relay::Copies(1), false, 2);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!((o.joined, o.messages_sent), (4, 100));
        // Each thread expects its 2 receivers x all 100 messages, both senders'.
        assert_eq!((o.deliveries, o.expected), (400, 400));
        let errors = (
            o.lost,
            o.duplicated,
            o.reordered,
            o.unexpected,
            o.disconnected,
        );
        assert_eq!(errors, (0, 0, 0, 0, 0));
        assert_eq!(o.latency.count(), 400);
        assert!(o.order.same(), "{:?}", o.order);
        assert_eq!((o.order.compared, o.order.left_out), (4, 0));
        assert_eq!(o.addrs.first().map(|a| a.1), Some(4));
        assert!(o.delivery_secs > 0.0);
    }

    #[test]
    fn two_threads_merge_the_order_check_across_threads() {
        let o = floor_run(Relay::Skew, false, 2);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!(
            (o.lost, o.duplicated, o.reordered, o.unexpected),
            (0, 0, 0, 0)
        );
        assert!(!o.order.same());
        assert_eq!((o.order.compared, o.order.distinct), (4, 2));
    }

    #[test]
    fn two_threads_count_a_relay_that_sends_twice() {
        let o = floor_run(Relay::Copies(2), false, 2);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!((o.expected, o.lost), (400, 0));
        assert!(
            (392..=400).contains(&o.duplicated),
            "{} duplicates",
            o.duplicated
        );
        assert_eq!(o.deliveries, 400 + o.duplicated);
    }

    /// What the toy server of [`slow_run`] saw.
    #[derive(Default)]
    struct SlowSeen {
        /// Slow readers welcomed.
        slow: std::sync::atomic::AtomicUsize,
        /// Messages relayed, and those whose text was not 64 bytes.
        relayed: std::sync::atomic::AtomicUsize,
        wrong_size: std::sync::atomic::AtomicUsize,
    }

    /// A toy JSON server for `clients` connections: welcomes joins and relays
    /// each message to every joined client except the slow readers (`slow-`
    /// names), as if it had dropped them at once. Its `/stats` stub (on
    /// `stats`) says `dropped_slow_clients` is `slow` once `slow` slow readers
    /// were welcomed and 50 messages relayed, 0 before.
    fn slow_server(listener: TcpListener, stats: TcpListener, clients: usize, slow: usize) {
        use std::sync::atomic::Ordering;
        use std::sync::{Arc, Mutex};
        let seen = Arc::new(SlowSeen::default());
        let seen_http = Arc::clone(&seen);
        let _ = stats.set_nonblocking(false);
        std::thread::spawn(move || {
            for conn in stats.incoming() {
                let Ok(mut conn) = conn else { break };
                let mut head = [0u8; 1024];
                let _ = conn.read(&mut head);
                let done = seen_http.slow.load(Ordering::SeqCst) >= slow
                    && seen_http.relayed.load(Ordering::SeqCst) >= 50;
                let body = format!(
                    "{{\"users\":1,\"dropped_slow_clients\":{}}}",
                    if done { slow } else { 0 }
                );
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        let field = |line: &str, key: &str| -> String {
            let k = format!("\"{key}\":\"");
            line.split_once(&k)
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(v, _)| v.to_string())
                .unwrap_or_default()
        };
        let readers: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for _ in 0..clients {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            let (readers, seen) = (Arc::clone(&readers), Arc::clone(&seen));
            threads.push(std::thread::spawn(move || {
                let Ok(mut out) = stream.try_clone() else {
                    return;
                };
                let mut me = String::new();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut all = readers.lock().expect("lock");
                    if line.contains(r#""type":"join""#) {
                        me = field(&line, "sender");
                        let _ = writeln!(
                            out,
                            r#"{{"type":"info","sender":"Server","message":"Welcome {me}!","user":"{me}"}}"#
                        );
                        if me.starts_with("slow-") {
                            seen.slow.fetch_add(1, Ordering::SeqCst);
                        } else if let Ok(o) = out.try_clone() {
                            all.push(o);
                        }
                    } else if line.contains(r#""type":"message""#) {
                        let text = field(&line, "message");
                        seen.relayed.fetch_add(1, Ordering::SeqCst);
                        if text.len() != 64 {
                            seen.wrong_size.fetch_add(1, Ordering::SeqCst);
                        }
                        for o in all.iter_mut() {
                            let _ = writeln!(
                                o,
                                r#"{{"type":"message","sender":"{me}","message":"{text}"}}"#
                            );
                        }
                    }
                }
            }));
        }
        for t in threads {
            let _ = t.join();
        }
        assert_eq!(
            seen.wrong_size.load(Ordering::SeqCst),
            0,
            "a message was not 64 bytes"
        );
    }

    /// 3 clients (1 sender, window 4, up to 100,000 messages of 64 bytes) and
    /// 2 slow readers against [`slow_server`], on `threads` threads.
    fn slow_run(threads: usize) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let stats = TcpListener::bind("127.0.0.1:0").expect("bind stats");
        let addr = listener.local_addr().expect("local addr").to_string();
        let stats_addr = stats.local_addr().expect("stats addr").to_string();
        let server = std::thread::spawn(move || slow_server(listener, stats, 5, 2));
        let args = [
            "--addr",
            &addr,
            "--clients",
            "3",
            "--senders",
            "1",
            "--messages",
            "100000",
            "--window",
            "4",
            "--message-bytes",
            "64",
            "--slow-readers",
            "2",
            "--stats-addr",
            &stats_addr,
            "--timeout",
            "20",
            "--threads",
            &threads.to_string(),
        ];
        let opts = Options::parse(args.iter().map(|s| s.to_string()))
            .expect("options")
            .expect("not --help");
        let out = crate::threads::run(&opts, &mut || {}, &mut || {}).expect("run");
        // Closing the clients ends the toy server's connection threads.
        server
            .join()
            .expect("the toy server saw only 64-byte messages");
        out
    }

    #[test]
    fn slow_readers_join_then_sending_stops_once_the_server_dropped_them() {
        for threads in [1, 2] {
            let o = slow_run(threads);
            assert_eq!(o.ending, Ending::Complete, "threads {threads}");
            // The slow readers are not receivers.
            assert_eq!((o.joined, o.slow_joined), (3, 2), "threads {threads}");
            assert_eq!(o.slow_dropped, Some(2));
            assert!(o.slow_all_dropped_secs.is_some());
            // /stats says 2 only after 50 messages; then sending stops well
            // before 100,000.
            assert!(
                (50..100_000).contains(&o.messages_sent),
                "{} sent",
                o.messages_sent
            );
            assert_eq!(o.expected, 3 * o.messages_sent);
            assert_eq!((o.deliveries, o.lost, o.disconnected), (o.expected, 0, 0));
            assert_eq!(o.slow_closed, 0);
            assert!(o.order.same(), "{:?}", o.order);
            assert_eq!(o.order.compared, 3);
        }
    }

    /// A toy rooms server for `clients` JSON clients: welcomes, answers
    /// `room_join` with `room_joined` and an empty replay, and relays each
    /// message with its room, to that room's members or, with `leak`, to
    /// everyone. One lock orders all writes. Ends when every client has closed.
    fn rooms_relay(listener: TcpListener, clients: usize, leak: bool) {
        use std::sync::{Arc, Mutex};
        type Members = Arc<Mutex<Vec<(std::net::TcpStream, String)>>>;
        let members: Members = Arc::new(Mutex::new(Vec::new()));
        let field = |line: &str, key: &str| -> String {
            let k = format!("\"{key}\":\"");
            line.split_once(&k)
                .and_then(|(_, rest)| rest.split_once('"'))
                .map(|(v, _)| v.to_string())
                .unwrap_or_default()
        };
        let mut threads = Vec::new();
        for _ in 0..clients {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(20)));
            let members = Arc::clone(&members);
            threads.push(std::thread::spawn(move || {
                let Ok(mut out) = stream.try_clone() else {
                    return;
                };
                let mut me = String::new();
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut all = members.lock().expect("lock");
                    if line.contains(r#""type":"join""#) {
                        me = field(&line, "sender");
                        let _ = writeln!(
                            out,
                            r#"{{"type":"info","sender":"Server","message":"Welcome {me}!","user":"{me}"}}"#
                        );
                    } else if line.contains(r#""type":"room_join""#) {
                        let room = field(&line, "room");
                        let _ = writeln!(
                            out,
                            r#"{{"type":"room_joined","room":"{room}","topic":"","count":1,"epoch":"e","seq":0}}"#
                        );
                        let _ = writeln!(
                            out,
                            r#"{{"type":"history","room":"{room}","messages":[],"complete":true,"gap":false}}"#
                        );
                        if let Ok(o) = out.try_clone() {
                            all.push((o, room));
                        }
                    } else if line.contains(r#""type":"message""#) {
                        let room = field(&line, "room");
                        let text = field(&line, "message");
                        for (o, r) in all.iter_mut() {
                            if leak || *r == room {
                                let _ = writeln!(
                                    o,
                                    r#"{{"type":"message","sender":"{me}","message":"{text}","room":"{room}","seq":1}}"#
                                );
                            }
                        }
                    }
                }
            }));
        }
        for t in threads {
            let _ = t.join();
        }
    }

    fn rooms_run(leak: bool) -> Outcome {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local addr").to_string();
        let server = std::thread::spawn(move || rooms_relay(listener, 9, leak));
        let args = [
            "--addr",
            &addr,
            "--rooms",
            "3",
            "--clients",
            "9",
            "--senders",
            "4",
            "--messages",
            "20",
            "--window",
            "4",
            "--timeout",
            "20",
        ];
        let opts = Options::parse(args.iter().map(|s| s.to_string()))
            .expect("options")
            .expect("not --help");
        let out = Load::new(opts)
            .expect("poll")
            .run(&mut || {}, &mut || {})
            .expect("run");
        drop(server);
        out
    }

    #[test]
    fn rooms_deliveries_are_checked_per_room() {
        let o = rooms_run(false);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!((o.joined, o.messages_sent), (9, 80));
        // 4 senders x 20 messages, each to the 3 clients of its room.
        assert_eq!((o.deliveries, o.expected), (240, 240));
        let errors = (
            o.lost,
            o.duplicated,
            o.reordered,
            o.unexpected,
            o.misdelivered,
        );
        assert_eq!(errors, (0, 0, 0, 0, 0));
        // One lock orders all writes: each room has one order.
        assert!(o.order.same(), "{:?}", o.order);
        assert_eq!((o.order.compared, o.order.distinct), (9, 1));
    }

    #[test]
    fn rooms_deliveries_outside_the_room_are_misdelivered() {
        let o = rooms_run(true);
        assert_eq!(o.ending, Ending::Complete);
        assert_eq!(o.expected, 240);
        // Everyone got everything: the 6 clients of other rooms per message are wrong.
        assert_eq!(o.misdelivered, 80 * 6);
        assert_eq!((o.lost, o.duplicated, o.reordered), (0, 0, 0));
        assert!(
            o.first_misdelivery
                .as_deref()
                .is_some_and(|m| m.contains("#load")),
            "{:?}",
            o.first_misdelivery
        );
    }
}
