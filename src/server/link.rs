//! Outbound links: a socket the loop connected itself (to a pub/sub backplane,
//! say), next to the listeners. A link has its own token (`token::link`), is
//! not a client: it is not counted against the connection cap, not swept by
//! client timers and never reported to the hub. It reconnects on its own with
//! exponential backoff.
//!
//! Two layers:
//! - [`LinkState`]: the sans-I/O state machine. Time is an argument, no socket,
//!   no clock read; it owns the phase, the reconnect backoff, the outgoing
//!   byte queue and the received bytes not yet decoded.
//! - [`OutboundLink`]: the thin `mio` glue that opens the socket, turns poll
//!   events into [`LinkState`] inputs and moves bytes.
//!
//! This module knows no protocol spoken over the link (the owner decodes
//! [`LinkState::input`] and queues encoded bytes) and nothing of the hub or of
//! client connections.
//!
//! How it works:
//! ```text
//!            start                on_connected
//!   Idle ───────────▶ Connecting ─────────────▶ Connected
//!                      │   ▲                        │
//!    on_connect_timeout│   │ on_timer (until)       │ on_error / on_eof
//!    on_error          ▼   │                        │
//!                      Backoff ◀────────────────────┘
//! ```
//! Every failure waits `min(cap, base · 2^failures)`, jittered into its upper
//! half by a caller-seeded PRNG, so many nodes that lost the same peer do not
//! reconnect in step. A connection that stayed up for `stable_after` resets
//! the count; one that drops at once keeps growing it (a peer that accepts and
//! closes must not be hammered). Each input returns [`Next`]; at any time
//! [`LinkState::deadline`] is the one instant the owner should schedule (as
//! `Timer::Link(i)`), and a stale timer is harmless: [`LinkState::on_timer`]
//! ignores it.
//!
//! Output queued while the link is down is kept (up to the caps) and sent after
//! reconnecting. A chunk cut by a failed write is sent again whole: the peer
//! discards a partial command along with the connection that carried it.
//! Input received before a failure stays in [`LinkState::input`] until the
//! next connection: bytes the peer sent just before closing (replies read in
//! the same call as the EOF) are still its answers, for the owner to decode.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// Most chunks handed to one `writev`.
const MAX_IOV: usize = 64;

/// Limits and timings of one link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkConfig {
    /// A connect not completed by then counts as a failure.
    pub connect_timeout: Duration,
    /// Wait after the first failure (before jitter).
    pub backoff_base: Duration,
    /// Longest wait between attempts (before jitter).
    pub backoff_cap: Duration,
    /// A connection up at least this long resets the backoff.
    pub stable_after: Duration,
    /// Most bytes waiting to be written.
    pub max_out_bytes: usize,
    /// Most chunks waiting to be written.
    pub max_out_chunks: usize,
    /// Most received bytes waiting to be decoded; reading pauses at the limit.
    pub max_in_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            connect_timeout: Duration::from_secs(5),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(30),
            stable_after: Duration::from_secs(10),
            max_out_bytes: 4 << 20,
            max_out_chunks: 16 * 1024,
            max_in_bytes: 1 << 20,
        }
    }
}

/// Where a link is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Not started, or stopped.
    Idle,
    /// A connect is in flight; it fails at `deadline`.
    Connecting { deadline: Instant },
    /// Up since `since`.
    Connected { since: Instant },
    /// Down; the next attempt is at `until`.
    Backoff { until: Instant },
}

/// What the owner does after an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Open a connection now; unless it completes first, call
    /// [`LinkState::on_timer`] at `deadline`.
    Connect { deadline: Instant },
    /// Close the socket if one is open, and call [`LinkState::on_timer`] at `until`.
    Wait { until: Instant },
    /// Nothing to open or schedule.
    Nothing,
}

/// Why bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkError {
    /// The output queue is at [`LinkConfig::max_out_bytes`] or
    /// [`LinkConfig::max_out_chunks`]; the chunk was not queued.
    OutputFull { queued_bytes: usize, chunks: usize },
    /// The input buffer would exceed [`LinkConfig::max_in_bytes`]; nothing was kept.
    InputFull { max_bytes: usize },
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkError::OutputFull {
                queued_bytes,
                chunks,
            } => write!(
                f,
                "link output queue full ({queued_bytes} bytes in {chunks} chunks)"
            ),
            LinkError::InputFull { max_bytes } => {
                write!(f, "link input buffer full ({max_bytes} bytes undecoded)")
            }
        }
    }
}

impl std::error::Error for LinkError {}

/// SplitMix64: a tiny deterministic PRNG, good enough to spread reconnects.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator; equal seeds give equal sequences.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The sans-I/O state of one outbound link (see the module docs).
#[derive(Debug)]
pub struct LinkState {
    cfg: LinkConfig,
    phase: Phase,
    /// Failures since the last stable connection.
    failures: u32,
    rng: SplitMix64,
    out: VecDeque<Rc<[u8]>>,
    /// Bytes of the first chunk already written.
    out_offset: usize,
    /// Bytes still to write, over all chunks.
    out_bytes: usize,
    input: Vec<u8>,
}

impl LinkState {
    /// An idle link; `seed` drives the backoff jitter.
    pub fn new(cfg: LinkConfig, seed: u64) -> LinkState {
        LinkState {
            cfg,
            phase: Phase::Idle,
            failures: 0,
            rng: SplitMix64::new(seed),
            out: VecDeque::new(),
            out_offset: 0,
            out_bytes: 0,
            input: Vec::new(),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        matches!(self.phase, Phase::Connected { .. })
    }

    /// Failures since the last stable connection.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The instant to schedule for this link: the connect deadline or the end
    /// of the backoff; `None` while idle or connected.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Connecting { deadline } => Some(deadline),
            Phase::Backoff { until } => Some(until),
            Phase::Idle | Phase::Connected { .. } => None,
        }
    }

    /// Begins connecting from idle or backoff; [`Next::Nothing`] when already
    /// connecting or connected.
    pub fn start(&mut self, now: Instant) -> Next {
        match self.phase {
            Phase::Idle | Phase::Backoff { .. } => {
                let deadline = now + self.cfg.connect_timeout;
                self.phase = Phase::Connecting { deadline };
                Next::Connect { deadline }
            }
            Phase::Connecting { .. } | Phase::Connected { .. } => Next::Nothing,
        }
    }

    /// Back to idle (the owner closes the socket); queued output is kept.
    pub fn stop(&mut self) {
        self.phase = Phase::Idle;
        self.rewind();
        self.input.clear();
    }

    /// The connect completed. Ignored unless connecting.
    pub fn on_connected(&mut self, now: Instant) -> Next {
        if matches!(self.phase, Phase::Connecting { .. }) {
            self.phase = Phase::Connected { since: now };
            // Left over from the previous connection, if the owner did not
            // take it: it answers nothing sent on this one.
            self.input.clear();
        }
        Next::Nothing
    }

    /// The connect deadline passed: a failure, unless the link is no longer
    /// connecting or the deadline is not reached (a stale timer).
    pub fn on_connect_timeout(&mut self, now: Instant) -> Next {
        match self.phase {
            Phase::Connecting { deadline } if now >= deadline => self.fail(now),
            _ => Next::Nothing,
        }
    }

    /// The socket failed (connect refused, reset, write error): backoff.
    /// Ignored while idle or already backing off.
    pub fn on_error(&mut self, now: Instant) -> Next {
        match self.phase {
            Phase::Connecting { .. } | Phase::Connected { .. } => self.fail(now),
            Phase::Idle | Phase::Backoff { .. } => Next::Nothing,
        }
    }

    /// The peer closed the connection: the same as an error.
    pub fn on_eof(&mut self, now: Instant) -> Next {
        self.on_error(now)
    }

    /// The link's timer fired: a due connect deadline fails, a due backoff
    /// starts the next attempt; anything else is a stale timer and does nothing.
    pub fn on_timer(&mut self, now: Instant) -> Next {
        match self.phase {
            Phase::Connecting { .. } => self.on_connect_timeout(now),
            Phase::Backoff { until } if now >= until => self.start(now),
            _ => Next::Nothing,
        }
    }

    /// Keeps received bytes for the owner to decode ([`LinkState::input`]).
    /// `Err` when they would exceed [`LinkConfig::max_in_bytes`]; nothing is kept then.
    pub fn on_readable(&mut self, bytes: &[u8]) -> Result<(), LinkError> {
        if bytes.len() > self.in_room() {
            return Err(LinkError::InputFull {
                max_bytes: self.cfg.max_in_bytes,
            });
        }
        self.input.extend_from_slice(bytes);
        Ok(())
    }

    /// Received bytes not yet consumed; after a failure, those the lost
    /// connection delivered, until the next one connects.
    pub fn input(&self) -> &[u8] {
        &self.input
    }

    /// Drops the first `n` received bytes (at most all of them), once decoded.
    pub fn consume_input(&mut self, n: usize) {
        let n = n.min(self.input.len());
        self.input.drain(..n);
    }

    /// How many more received bytes fit.
    pub fn in_room(&self) -> usize {
        self.cfg.max_in_bytes.saturating_sub(self.input.len())
    }

    /// Queues an encoded chunk (shared, not copied), also while the link is
    /// down. `Err` when the queue is at its byte or chunk cap; the chunk is
    /// not queued then. Empty chunks are ignored.
    pub fn queue(&mut self, chunk: Rc<[u8]>) -> Result<(), LinkError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let over_bytes = self
            .out_bytes
            .checked_add(chunk.len())
            .is_none_or(|total| total > self.cfg.max_out_bytes);
        if over_bytes || self.out.len() >= self.cfg.max_out_chunks {
            return Err(LinkError::OutputFull {
                queued_bytes: self.out_bytes,
                chunks: self.out.len(),
            });
        }
        self.out_bytes += chunk.len();
        self.out.push_back(chunk);
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        self.out_bytes
    }

    /// True when bytes wait and the link is connected to write them.
    pub fn wants_write(&self) -> bool {
        self.out_bytes > 0 && self.is_connected()
    }

    /// Fills `slices` with the unwritten bytes, in order, as many chunks as fit;
    /// returns how many slices were filled (0 when nothing waits).
    pub fn write_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.out.iter().enumerate() {
            let Some(slot) = slices.get_mut(n) else {
                break;
            };
            let bytes = if i == 0 {
                chunk.get(self.out_offset..).unwrap_or_default()
            } else {
                chunk
            };
            *slot = IoSlice::new(bytes);
            n += 1;
        }
        n
    }

    /// Marks `n` bytes as written (after a possibly partial write); whole
    /// chunks are dropped, a partial one only moves the offset.
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.out_bytes);
        self.out_bytes -= n;
        while n > 0 {
            let Some(front) = self.out.front() else {
                break;
            };
            let left = front.len().saturating_sub(self.out_offset);
            if n >= left {
                n -= left;
                self.out.pop_front();
                self.out_offset = 0;
            } else {
                self.out_offset += n;
                n = 0;
            }
        }
    }

    /// Drops all queued output.
    pub fn clear_output(&mut self) {
        self.out.clear();
        self.out_offset = 0;
        self.out_bytes = 0;
    }

    /// A failure in `Connecting` or `Connected`: pick the wait, enter backoff.
    fn fail(&mut self, now: Instant) -> Next {
        if let Phase::Connected { since } = self.phase
            && now.saturating_duration_since(since) >= self.cfg.stable_after
        {
            self.failures = 0;
        }
        let until = now + self.backoff_delay();
        self.failures = self.failures.saturating_add(1);
        self.phase = Phase::Backoff { until };
        self.rewind();
        // `input` is kept: what the connection delivered before it failed
        // is still for the owner to decode (see the module docs).
        Next::Wait { until }
    }

    /// `min(cap, base · 2^failures)`, jittered uniformly into `[d/2, d]`.
    fn backoff_delay(&mut self) -> Duration {
        let doublings = self.failures.min(31);
        let d = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << doublings)
            .min(self.cfg.backoff_cap);
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        let span = nanos - half;
        let jitter = match span.checked_add(1) {
            Some(m) => self.rng.next_u64() % m,
            None => self.rng.next_u64(),
        };
        Duration::from_nanos(half.saturating_add(jitter))
    }

    /// A chunk cut by a dead connection is sent again whole on the next one.
    fn rewind(&mut self) {
        if let Some(front) = self.out.front() {
            self.out_bytes += self.out_offset.min(front.len());
        }
        self.out_offset = 0;
    }
}

/// One outbound link on the loop's `Poll`: address, socket and [`LinkState`].
/// Every method returns the link's deadline to keep in the server's queue as
/// `Timer::Link(i)`; `None` means cancel it.
#[derive(Debug)]
pub struct OutboundLink {
    addr: SocketAddr,
    token: Token,
    stream: Option<TcpStream>,
    state: LinkState,
    /// The last read stopped because the input buffer was full; bytes may
    /// still wait in the socket, and no new readiness event will say so.
    read_paused: bool,
}

impl OutboundLink {
    /// An idle link to `addr`, registered under `token` once it connects.
    pub fn new(addr: SocketAddr, token: Token, cfg: LinkConfig, seed: u64) -> OutboundLink {
        OutboundLink {
            addr,
            token,
            stream: None,
            state: LinkState::new(cfg, seed),
            read_paused: false,
        }
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The state machine (phase, input, queued output).
    pub fn state(&self) -> &LinkState {
        &self.state
    }

    /// The state machine, to queue output or consume input.
    pub fn state_mut(&mut self) -> &mut LinkState {
        &mut self.state
    }

    /// True when the last read stopped at the input cap: consume input, then
    /// call [`OutboundLink::read`].
    pub fn read_paused(&self) -> bool {
        self.read_paused
    }

    /// Starts connecting (non-blocking) from idle or backoff.
    pub fn connect(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        let next = self.state.start(now);
        self.apply(next, registry, now);
        self.state.deadline()
    }

    /// Closes the socket and goes idle; queued output is kept.
    pub fn stop(&mut self, registry: &Registry) -> Option<Instant> {
        self.close(registry);
        self.state.stop();
        self.state.deadline()
    }

    /// The owner gave up on this connection (a protocol error, a peer that
    /// stopped answering): closed, and retried after a backoff.
    pub fn fail(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        let next = self.state.on_error(now);
        self.apply(next, registry, now);
        self.state.deadline()
    }

    /// The link's timer fired: connect timeout or the end of a backoff.
    pub fn on_timer(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        let next = self.state.on_timer(now);
        self.apply(next, registry, now);
        self.state.deadline()
    }

    /// A poll event for this link's token. While connecting, writability (or
    /// an error) ends the connect: `SO_ERROR` and `getpeername` tell which way.
    /// Once connected: reads into `scratch` until `WouldBlock` (or the input
    /// cap), then writes what is queued.
    pub fn handle_event(
        &mut self,
        event: &Event,
        registry: &Registry,
        now: Instant,
        scratch: &mut [u8],
    ) -> Option<Instant> {
        if self.stream.is_none() {
            return self.state.deadline();
        }
        if let Phase::Connecting { .. } = self.state.phase() {
            if !(event.is_writable() || event.is_error() || event.is_write_closed()) {
                return self.state.deadline();
            }
            match self.connect_result() {
                Ok(true) => {
                    info!("link {}: connected", self.addr);
                    self.state.on_connected(now);
                }
                Ok(false) => return self.state.deadline(),
                Err(e) => {
                    debug!("link {}: connect failed: {e}", self.addr);
                    let next = self.state.on_error(now);
                    self.apply(next, registry, now);
                    return self.state.deadline();
                }
            }
        }
        // The event that completes a connect may also report bytes already
        // sent by the peer; with edge-triggered readiness none follows for them.
        if event.is_readable() || event.is_read_closed() || event.is_error() {
            self.read(registry, now, scratch);
        }
        self.flush(registry, now)
    }

    /// Reads until `WouldBlock`, EOF or the input cap; EOF or an error sends
    /// the link into backoff.
    pub fn read(
        &mut self,
        registry: &Registry,
        now: Instant,
        scratch: &mut [u8],
    ) -> Option<Instant> {
        self.read_paused = false;
        let failed = loop {
            let Some(stream) = self.stream.as_mut() else {
                break None;
            };
            if !self.state.is_connected() {
                break None;
            }
            let room = self.state.in_room().min(scratch.len());
            if room == 0 {
                self.read_paused = true;
                break None;
            }
            let Some(buf) = scratch.get_mut(..room) else {
                break None;
            };
            match stream.read(buf) {
                Ok(0) => break Some(None),
                Ok(n) => {
                    let got = buf.get(..n).unwrap_or_default();
                    if let Err(e) = self.state.on_readable(got) {
                        break Some(Some(io::Error::other(e)));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(Some(e)),
            }
        };
        if let Some(why) = failed {
            match why {
                None => warn!("link {}: closed by the peer", self.addr),
                Some(e) => warn!("link {}: read failed: {e}", self.addr),
            }
            let next = self.state.on_eof(now);
            self.apply(next, registry, now);
        }
        self.state.deadline()
    }

    /// Writes queued bytes until done or `WouldBlock` (the next WRITABLE event
    /// resumes); a write error sends the link into backoff.
    pub fn flush(&mut self, registry: &Registry, now: Instant) -> Option<Instant> {
        let failed = loop {
            if !self.state.wants_write() {
                break None;
            }
            let Some(stream) = self.stream.as_mut() else {
                break None;
            };
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = self.state.write_slices(&mut slices);
            match stream.write_vectored(slices.get(..n).unwrap_or_default()) {
                Ok(0) => break Some(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(written) => self.state.advance(written),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = failed {
            warn!("link {}: write failed: {e}", self.addr);
            let next = self.state.on_error(now);
            self.apply(next, registry, now);
        }
        self.state.deadline()
    }

    /// `Ok(true)` once the connect completed, `Ok(false)` while it is still
    /// in flight (a spurious event), `Err` when it failed.
    fn connect_result(&self) -> io::Result<bool> {
        let Some(stream) = self.stream.as_ref() else {
            return Ok(false);
        };
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        match stream.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Carries out what the state machine asked for.
    fn apply(&mut self, next: Next, registry: &Registry, now: Instant) {
        match next {
            Next::Nothing => {}
            Next::Wait { until } => {
                self.close(registry);
                debug!(
                    "link {}: retry in {} ms (failure {})",
                    self.addr,
                    until.saturating_duration_since(now).as_millis(),
                    self.state.failures()
                );
            }
            Next::Connect { .. } => {
                self.close(registry);
                if let Err(e) = self.open(registry) {
                    debug!("link {}: cannot connect: {e}", self.addr);
                    self.close(registry);
                    // From Connecting a failure is always a wait: no recursion.
                    self.state.on_error(now);
                }
            }
        }
    }

    /// A non-blocking connect, registered for both directions: completion is
    /// signalled by writability, and with edge-triggered readiness a WRITABLE
    /// event only follows a full send buffer, so the interest can stay.
    fn open(&mut self, registry: &Registry) -> io::Result<()> {
        let mut stream = TcpStream::connect(self.addr)?;
        registry.register(
            &mut stream,
            self.token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        Ok(())
    }

    fn close(&mut self, registry: &Registry) {
        if let Some(mut stream) = self.stream.take() {
            let _ = registry.deregister(&mut stream);
        }
        self.read_paused = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cfg() -> LinkConfig {
        LinkConfig {
            connect_timeout: ms(1000),
            backoff_base: ms(100),
            backoff_cap: ms(30_000),
            stable_after: ms(10_000),
            max_out_bytes: 10,
            max_out_chunks: 3,
            max_in_bytes: 8,
        }
    }

    /// Fails `n` connect attempts in a row; returns each wait.
    fn fail_attempts(s: &mut LinkState, t: &mut Instant, n: usize) -> Vec<Duration> {
        let mut waits = Vec::new();
        for i in 0..n {
            if i > 0 || matches!(s.phase(), Phase::Backoff { .. }) {
                assert!(matches!(s.on_timer(*t), Next::Connect { .. }));
            }
            match s.on_error(*t) {
                Next::Wait { until } => {
                    waits.push(until - *t);
                    *t = until;
                }
                other => panic!("expected a wait, got {other:?}"),
            }
        }
        waits
    }

    fn started(seed: u64) -> (LinkState, Instant) {
        let t0 = Instant::now();
        let mut s = LinkState::new(cfg(), seed);
        assert_eq!(
            s.start(t0),
            Next::Connect {
                deadline: t0 + ms(1000)
            }
        );
        (s, t0)
    }

    #[test]
    fn starts_idle_and_connects_on_start() {
        let (mut s, t0) = started(1);
        assert_eq!(
            s.phase(),
            Phase::Connecting {
                deadline: t0 + ms(1000)
            }
        );
        assert_eq!(s.deadline(), Some(t0 + ms(1000)));
        assert_eq!(s.start(t0), Next::Nothing, "already connecting");
        assert_eq!(s.on_connected(t0 + ms(5)), Next::Nothing);
        assert_eq!(s.phase(), Phase::Connected { since: t0 + ms(5) });
        assert_eq!(s.deadline(), None);
        assert!(LinkState::new(cfg(), 1).deadline().is_none());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let (mut s, mut t) = started(7);
        let waits = fail_attempts(&mut s, &mut t, 14);
        for (i, w) in waits.iter().enumerate() {
            let full = ms(100).saturating_mul(1 << i.min(31)).min(ms(30_000));
            assert!(
                *w >= full / 2 && *w <= full,
                "attempt {i}: {w:?} vs {full:?}"
            );
        }
        // 100 ms · 2^9 = 51.2 s is past the cap: from there every wait is capped.
        for w in &waits[9..] {
            assert!(*w >= ms(15_000) && *w <= ms(30_000), "{w:?}");
        }
        assert_eq!(s.failures(), 14);
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        let (mut s, mut t) = started(3);
        s.failures = u32::MAX - 1;
        let waits = fail_attempts(&mut s, &mut t, 3);
        assert!(waits.iter().all(|w| *w <= ms(30_000)));
        assert_eq!(s.failures(), u32::MAX);
    }

    #[test]
    fn jitter_is_deterministic_per_seed_and_varies_across_seeds() {
        let run = |seed| {
            let (mut s, mut t) = started(seed);
            fail_attempts(&mut s, &mut t, 12)
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        let mut rng = SplitMix64::new(5);
        let first = rng.next_u64();
        assert_eq!(SplitMix64::new(5).next_u64(), first);
    }

    #[test]
    fn jitter_spreads_over_the_upper_half() {
        // Over many seeds the first wait covers most of [50 ms, 100 ms].
        let mut lo = Duration::MAX;
        let mut hi = Duration::ZERO;
        for seed in 0..200 {
            let (mut s, t0) = started(seed);
            let Next::Wait { until } = s.on_error(t0) else {
                panic!("expected a wait");
            };
            let w = until - t0;
            assert!(w >= ms(50) && w <= ms(100), "{w:?}");
            lo = lo.min(w);
            hi = hi.max(w);
        }
        assert!(lo < ms(60) && hi > ms(90), "{lo:?}..{hi:?}");
    }

    #[test]
    fn stable_connection_resets_backoff() {
        let (mut s, mut t) = started(9);
        fail_attempts(&mut s, &mut t, 6);
        assert_eq!(s.failures(), 6);
        assert!(matches!(s.on_timer(t), Next::Connect { .. }));
        s.on_connected(t);
        t += ms(10_000);
        let Next::Wait { until } = s.on_eof(t) else {
            panic!("expected a wait");
        };
        assert!(until - t <= ms(100), "back to the base wait");
        assert_eq!(s.failures(), 1);
    }

    #[test]
    fn short_lived_connection_keeps_growing_the_backoff() {
        let (mut s, mut t) = started(9);
        fail_attempts(&mut s, &mut t, 4);
        assert!(matches!(s.on_timer(t), Next::Connect { .. }));
        s.on_connected(t);
        t += ms(50);
        let Next::Wait { until } = s.on_eof(t) else {
            panic!("expected a wait");
        };
        assert!(until - t >= ms(800), "2^4 · 100 ms, jittered");
        assert_eq!(s.failures(), 5);
    }

    #[test]
    fn connect_timeout_leads_to_backoff_then_a_new_attempt() {
        let (mut s, t0) = started(11);
        assert_eq!(s.on_connect_timeout(t0 + ms(999)), Next::Nothing, "early");
        assert_eq!(s.on_timer(t0 + ms(999)), Next::Nothing, "early");
        let Next::Wait { until } = s.on_timer(t0 + ms(1000)) else {
            panic!("expected a wait");
        };
        assert_eq!(s.phase(), Phase::Backoff { until });
        assert_eq!(s.deadline(), Some(until));
        assert_eq!(s.on_timer(until - ms(1)), Next::Nothing, "stale timer");
        assert_eq!(
            s.on_timer(until),
            Next::Connect {
                deadline: until + ms(1000)
            }
        );
    }

    #[test]
    fn stale_inputs_are_ignored() {
        let t0 = Instant::now();
        let mut s = LinkState::new(cfg(), 1);
        assert_eq!(s.on_error(t0), Next::Nothing);
        assert_eq!(s.on_timer(t0), Next::Nothing);
        assert_eq!(s.on_connected(t0), Next::Nothing);
        assert_eq!(s.phase(), Phase::Idle);
        s.start(t0);
        s.on_connected(t0);
        assert_eq!(s.on_connect_timeout(t0 + ms(5000)), Next::Nothing);
        assert!(s.is_connected());
        let Next::Wait { .. } = s.on_error(t0) else {
            panic!("expected a wait");
        };
        assert_eq!(s.on_error(t0), Next::Nothing, "already backing off");
        assert_eq!(s.failures(), 1);
    }

    #[test]
    fn output_queue_caps_bytes_and_chunks() {
        let mut s = LinkState::new(cfg(), 1);
        assert!(s.queue(Rc::from(&b"abcd"[..])).is_ok());
        assert!(s.queue(Rc::from(&b""[..])).is_ok(), "empty is ignored");
        assert!(s.queue(Rc::from(&b"efgh"[..])).is_ok());
        assert_eq!(
            s.queue(Rc::from(&b"ijk"[..])),
            Err(LinkError::OutputFull {
                queued_bytes: 8,
                chunks: 2
            })
        );
        assert!(s.queue(Rc::from(&b"i"[..])).is_ok());
        assert_eq!(
            s.queue(Rc::from(&b"j"[..])),
            Err(LinkError::OutputFull {
                queued_bytes: 9,
                chunks: 3
            }),
            "chunk cap"
        );
        assert_eq!(s.pending_bytes(), 9);
        assert!(!s.wants_write(), "not connected");
        s.clear_output();
        assert_eq!(s.pending_bytes(), 0);
    }

    fn written(s: &LinkState) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 8];
        let n = s.write_slices(&mut slices);
        slices[..n].iter().flat_map(|x| x.iter().copied()).collect()
    }

    #[test]
    fn partial_writes_move_the_offset() {
        let (mut s, t0) = started(1);
        s.on_connected(t0);
        s.queue(Rc::from(&b"abcd"[..])).unwrap();
        s.queue(Rc::from(&b"ef"[..])).unwrap();
        assert!(s.wants_write());
        assert_eq!(written(&s), b"abcdef");
        s.advance(3);
        assert_eq!(written(&s), b"def");
        assert_eq!(s.pending_bytes(), 3);
        s.advance(1);
        assert_eq!(written(&s), b"ef");
        s.advance(100);
        assert_eq!(written(&s), b"");
        assert_eq!(s.pending_bytes(), 0);
        assert!(!s.wants_write());
        let mut one = [IoSlice::new(&[])];
        s.queue(Rc::from(&b"xy"[..])).unwrap();
        s.queue(Rc::from(&b"z"[..])).unwrap();
        assert_eq!(s.write_slices(&mut one), 1, "as many chunks as fit");
    }

    #[test]
    fn a_chunk_cut_by_a_failure_is_sent_again_whole() {
        let (mut s, t0) = started(1);
        s.on_connected(t0);
        s.queue(Rc::from(&b"abcd"[..])).unwrap();
        s.queue(Rc::from(&b"ef"[..])).unwrap();
        s.advance(2);
        s.on_error(t0);
        assert_eq!(s.pending_bytes(), 6);
        assert_eq!(written(&s), b"abcdef");
    }

    #[test]
    fn input_received_before_a_failure_stays_until_the_next_connection() {
        let (mut s, t0) = started(1);
        s.on_connected(t0);
        s.on_readable(b"+OK\r\n").unwrap();
        let Next::Wait { until } = s.on_eof(t0) else {
            panic!("expected a wait");
        };
        assert_eq!(s.input(), b"+OK\r\n", "the peer's last reply");
        s.consume_input(3);
        assert!(matches!(s.on_timer(until), Next::Connect { .. }));
        assert_eq!(s.input(), b"\r\n", "nothing new came in");
        s.on_connected(until);
        assert_eq!(s.input(), b"", "a new connection starts empty");
    }

    #[test]
    fn input_buffer_caps_and_consumes() {
        let mut s = LinkState::new(cfg(), 1);
        assert!(s.on_readable(b"hello").is_ok());
        assert_eq!(s.in_room(), 3);
        assert_eq!(
            s.on_readable(b"world"),
            Err(LinkError::InputFull { max_bytes: 8 })
        );
        assert_eq!(s.input(), b"hello");
        s.consume_input(2);
        assert_eq!(s.input(), b"llo");
        s.consume_input(99);
        assert_eq!(s.input(), b"");
        assert!(!LinkError::InputFull { max_bytes: 8 }.to_string().is_empty());
    }

    // Real sockets on loopback: connect, send, peer closes, refused connect.

    use mio::{Events, Poll};
    use std::net::TcpListener as StdListener;

    const WAIT: Duration = Duration::from_secs(5);

    /// Polls and feeds the link's events until `done` holds; false after `WAIT`.
    fn pump(
        poll: &mut Poll,
        link: &mut OutboundLink,
        mut done: impl FnMut(&OutboundLink) -> bool,
    ) -> bool {
        let mut events = Events::with_capacity(16);
        let mut scratch = [0u8; 256];
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            if done(link) {
                return true;
            }
            if let Err(e) = poll.poll(&mut events, Some(ms(20))) {
                assert_eq!(e.kind(), io::ErrorKind::Interrupted);
                continue;
            }
            for event in events.iter() {
                assert_eq!(event.token(), Token(9));
                link.handle_event(event, poll.registry(), Instant::now(), &mut scratch);
            }
        }
        done(link)
    }

    fn backing_off(l: &OutboundLink) -> bool {
        matches!(l.state().phase(), Phase::Backoff { .. })
    }

    #[test]
    fn loopback_connects_sends_and_backs_off_when_the_peer_closes() {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut poll = Poll::new().unwrap();
        let mut link = OutboundLink::new(addr, Token(9), LinkConfig::default(), 1);
        // Queued before the connection exists: sent once it does.
        link.state_mut().queue(Rc::from(&b"PING\r\n"[..])).unwrap();
        let deadline = link.connect(poll.registry(), Instant::now());
        assert!(deadline.is_some(), "connect timeout scheduled");
        assert!(pump(&mut poll, &mut link, |l| l.state().is_connected()));
        assert_eq!(link.state().pending_bytes(), 0, "written on connect");

        let end = Instant::now() + WAIT;
        let (mut peer, _) = loop {
            match listener.accept() {
                Ok(p) => break p,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < end => {
                    std::thread::sleep(ms(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        peer.set_nonblocking(false).unwrap();
        peer.set_read_timeout(Some(WAIT)).unwrap();
        link.state_mut().queue(Rc::from(&b"more\r\n"[..])).unwrap();
        assert_eq!(link.flush(poll.registry(), Instant::now()), None);
        let mut got = [0u8; 12];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"PING\r\nmore\r\n");

        // Bytes from the peer land in the link's input.
        peer.write_all(b"+PONG\r\n").unwrap();
        assert!(pump(&mut poll, &mut link, |l| l.state().input() == b"+PONG\r\n"));

        drop(peer);
        assert!(pump(&mut poll, &mut link, backing_off));
        assert!(link.stream.is_none(), "socket dropped");
        let Some(until) = link.state().deadline() else {
            panic!("no reconnect deadline");
        };

        // The reconnect timer brings it back to the same listener.
        let wait = until.saturating_duration_since(Instant::now());
        assert!(wait <= ms(100));
        std::thread::sleep(wait);
        assert!(link.on_timer(poll.registry(), Instant::now()).is_some());
        assert!(pump(&mut poll, &mut link, |l| l.state().is_connected()));
        link.stop(poll.registry());
        assert_eq!(link.state().phase(), Phase::Idle);
    }

    #[test]
    fn loopback_refused_connect_backs_off() {
        let addr = {
            let l = StdListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut poll = Poll::new().unwrap();
        let mut link = OutboundLink::new(addr, Token(9), LinkConfig::default(), 2);
        link.connect(poll.registry(), Instant::now());
        assert!(pump(&mut poll, &mut link, backing_off));
        assert_eq!(link.state().failures(), 1);
        assert!(link.stream.is_none());
        assert!(link.state().deadline().is_some());
    }
}
