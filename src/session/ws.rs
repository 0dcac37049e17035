//! WebSocket sessions: the handshake on the WebSocket port, the chat over
//! text frames, and the echo application of the conformance-test server.
//! Frames, fragments, UTF-8 and the close handshake are the codec's
//! ([`crate::proto::ws::session::WsSession`]); this module decides what the
//! chat does with them.
//!
//! # How it works
//! - Handshake: a complete upgrade request within the handshake timeout, or a
//!   refusal with the codec's status; then the connection is a WebSocket.
//! - Chat: each text message is one JSON request. A user must join within the
//!   first-line timeout (closed with 1008). A WebSocket silent for the ping
//!   interval is pinged, and dropped when the pong timeout passes without
//!   input. Binary messages end it with 1003; `exit` with 1000; a stopping
//!   server with 1001; a protocol violation with the codec's code.
//! - Chat, while a join sent before joining waits for the hub's answer: all
//!   further input is held, control frames included (decoding stops right
//!   after the join's frame; the server keeps the rest, in order). A ping,
//!   a close or a protocol violation behind the join is therefore seen only
//!   once the answer came (joined or refused); the join deadline still runs,
//!   and no pings are sent (their pongs would be held too).

use std::rc::Rc;
use std::time::Instant;

use log::{debug, warn};

use super::{Asked, Ctx, Format, Out, Step};
use crate::config::Config;
use crate::hub::{LeaveReason, Request};
use crate::proto::chat::{self, ClientMsg};
use crate::proto::ws::close::CloseCode;
use crate::proto::ws::frame::{Opcode, encode_frame};
use crate::proto::ws::handshake;
use crate::proto::ws::session::{WsEvent, WsLimits, WsSession};

/// Payload of our liveness pings.
const PING_PAYLOAD: &[u8] = b"alive?";

/// Waiting for a complete upgrade request on the WebSocket port.
#[derive(Debug)]
pub struct HandshakeSession {
    deadline: Instant,
    ended: bool,
}

impl HandshakeSession {
    pub fn new(cfg: &Config, now: Instant) -> HandshakeSession {
        HandshakeSession {
            deadline: now + cfg.handshake_timeout,
            ended: false,
        }
    }

    pub(crate) fn handle_bytes(&mut self, input: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Out>) -> Step {
        if self.ended {
            return Step::Used(input.len());
        }
        match handshake::parse_request(input, ctx.handshake) {
            Ok(None) => Step::Used(0),
            Ok(Some((n, req))) => Step::Upgrade(n, req),
            Err(e) => {
                warn!(
                    "{:?} {}: WebSocket handshake refused: {e}",
                    ctx.conn, ctx.peer
                );
                out.push(Out::Send(Rc::from(e.response())));
                out.push(Out::End(LeaveReason::ProtocolError));
                self.ended = true;
                Step::Used(input.len())
            }
        }
    }

    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        if !self.ended && ctx.now >= self.deadline {
            warn!(
                "{:?} {}: no WebSocket handshake in time, disconnecting",
                ctx.conn, ctx.peer
            );
            self.ended = true;
            out.push(Out::Kill(LeaveReason::Timeout));
        }
    }
}

/// The codec plus the liveness probe every WebSocket application shares.
#[derive(Debug)]
struct Link {
    codec: WsSession,
    last_read: Instant,
    /// When the last unanswered ping was sent.
    ping_sent: Option<Instant>,
    ended: bool,
}

impl Link {
    fn new(ctx: &Ctx<'_>, max_message_bytes: usize, max_fragments: usize) -> Link {
        Link {
            codec: WsSession::new(WsLimits {
                max_message_bytes,
                max_fragments,
            }),
            last_read: ctx.now,
            ping_sent: None,
            ended: false,
        }
    }

    /// Decodes `input` into `events`; control replies go out first. With
    /// `one`, stops right after the first event, so the caller can act on it
    /// before any later frame is decoded (control replies keep their wire
    /// order); 0 used then means the rest is an unfinished frame header.
    /// Returns (bytes used, closing started by this input). The buffers are
    /// the caller's, so an idle WebSocket keeps no allocation of its own.
    fn decode(
        &mut self,
        input: &[u8],
        one: bool,
        ctx: &Ctx<'_>,
        events: &mut Vec<WsEvent>,
        out: &mut Vec<Out>,
    ) -> (usize, bool) {
        self.last_read = ctx.now;
        self.ping_sent = None;
        let mut reply = Vec::new();
        let was_closing = self.codec.is_closing();
        let n = if one {
            self.codec
                .handle_bytes_until_event(input, events, &mut reply)
        } else {
            self.codec.handle_bytes(input, events, &mut reply)
        };
        Link::send(reply, out);
        (n, self.codec.is_closing() && !was_closing)
    }

    fn send(reply: Vec<u8>, out: &mut Vec<Out>) {
        if !reply.is_empty() {
            out.push(Out::Send(Rc::from(reply)));
        }
    }

    /// Sends a close frame (if none went out yet) and ends the connection.
    fn close(&mut self, code: CloseCode, reason: &str, why: LeaveReason, out: &mut Vec<Out>) {
        if self.ended {
            return;
        }
        let mut reply = Vec::new();
        self.codec.close(code, reason, &mut reply);
        Link::send(reply, out);
        self.ended = true;
        out.push(Out::End(why));
    }

    /// After the events of one input: a close that came with it ends the
    /// connection (a clean close handshake is a voluntary leave).
    fn after_events(
        &mut self,
        closing_started: bool,
        peer_closed: bool,
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) {
        if closing_started && !self.ended {
            self.ended = true;
            if peer_closed {
                out.push(Out::End(LeaveReason::Exit));
            } else {
                warn!(
                    "{:?} {}: WebSocket protocol violation, closed with {:?}",
                    ctx.conn,
                    ctx.peer,
                    self.codec.close_sent_code()
                );
                out.push(Out::End(LeaveReason::ProtocolError));
            }
        }
    }

    /// Ping when silent, drop when a ping stays unanswered.
    fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        if self.ended {
            return;
        }
        match self.ping_sent {
            Some(sent) if ctx.now.saturating_duration_since(sent) >= ctx.cfg.ws_pong_timeout => {
                warn!(
                    "{:?} {}: no pong in time, disconnecting",
                    ctx.conn, ctx.peer
                );
                self.ended = true;
                out.push(Out::Kill(LeaveReason::Timeout));
            }
            Some(_) => {}
            None if ctx.now.saturating_duration_since(self.last_read)
                >= ctx.cfg.ws_ping_interval =>
            {
                let mut reply = Vec::new();
                self.codec.ping(PING_PAYLOAD, &mut reply);
                self.ping_sent = Some(ctx.now);
                Link::send(reply, out);
            }
            None => {}
        }
    }

    fn on_drain(&mut self, out: &mut Vec<Out>) {
        if !self.codec.is_closing() {
            let mut reply = Vec::new();
            self.codec
                .close(CloseCode::GOING_AWAY, "server shutting down", &mut reply);
            Link::send(reply, out);
        }
    }
}

/// The chat over WebSocket text frames, one JSON request per message.
#[derive(Debug)]
pub struct WsChatSession {
    link: Link,
    /// The join deadline, until a join succeeds.
    deadline: Option<Instant>,
    joined: bool,
    /// A join was sent and waits for the hub's answer: input is held.
    join_pending: bool,
}

impl WsChatSession {
    pub fn new(ctx: &Ctx<'_>) -> WsChatSession {
        WsChatSession {
            link: Link::new(ctx, ctx.cfg.ws_max_message_bytes, ctx.cfg.ws_max_fragments),
            deadline: Some(ctx.now + ctx.cfg.first_line_timeout),
            joined: false,
            join_pending: false,
        }
    }

    /// Decodes frames one event at a time, stopping after a join that waits
    /// for its answer; returns the bytes used (the rest is passed again).
    pub fn handle_bytes(&mut self, input: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Out>) -> usize {
        if self.link.ended {
            return input.len();
        }
        let mut used = 0;
        let mut events = Vec::with_capacity(1);
        let (mut closing_started, mut peer_closed) = (false, false);
        while !self.link.ended && !self.join_pending {
            let rest = input.get(used..).unwrap_or_default();
            let (n, started) = self.link.decode(rest, true, ctx, &mut events, out);
            used += n;
            closing_started |= started;
            let Some(ev) = events.pop() else {
                break;
            };
            match ev {
                WsEvent::Text(text) => match chat::decode_json(text.as_bytes()) {
                    Ok(msg) => self.request(msg, out),
                    Err(e) => out.push(Out::Hub(Request::Reply(e.to_event()))),
                },
                // The chat is text: RFC 6455 §7.4.1 1003 "cannot accept this data type".
                WsEvent::Binary(_) => self.link.close(
                    CloseCode::UNSUPPORTED,
                    "binary messages are not supported",
                    LeaveReason::ProtocolError,
                    out,
                ),
                WsEvent::Pong(_) => {}
                WsEvent::Closed { .. } => peer_closed = true,
            }
        }
        self.link
            .after_events(closing_started, peer_closed, ctx, out);
        if self.link.ended {
            input.len()
        } else {
            used.min(input.len())
        }
    }

    fn request(&mut self, msg: ClientMsg, out: &mut Vec<Out>) {
        match super::asked(msg, true) {
            Asked::Hub(req) => {
                // Once joined, the hub answers a join with an error and no
                // outcome: holding then would never end.
                if matches!(req, Request::Join { .. }) && !self.joined {
                    self.join_pending = true;
                }
                out.push(Out::Hub(req));
            }
            // JSON has no help request; nothing to answer.
            Asked::Help => {}
            Asked::Exit => self
                .link
                .close(CloseCode::NORMAL, "bye", LeaveReason::Exit, out),
        }
    }

    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        if self.deadline.is_some_and(|d| ctx.now >= d) {
            self.deadline = None;
            debug!("{:?} {}: no join in time, closing", ctx.conn, ctx.peer);
            self.link
                .close(CloseCode::POLICY, "join timeout", LeaveReason::Timeout, out);
            return;
        }
        // While held, a pong could not be read: the join deadline is the bound.
        if !self.join_pending {
            self.link.on_tick(ctx, out);
        }
    }

    /// See [`super::Session::on_join_outcome`].
    pub fn on_join_outcome(&mut self, joined: bool) -> bool {
        if joined {
            self.joined = true;
            self.deadline = None;
        }
        std::mem::take(&mut self.join_pending)
    }

    /// True while input is held back for a pending join.
    pub fn holding(&self) -> bool {
        self.join_pending && !self.link.ended
    }

    pub fn on_drain(&mut self, out: &mut Vec<Out>) {
        self.link.on_drain(out);
    }

    pub fn format(&self) -> Option<Format> {
        (!self.link.codec.is_closing()).then_some(Format::WsText)
    }

    /// True while the join deadline runs.
    pub fn has_deadline(&self) -> bool {
        self.deadline.is_some()
    }
}

/// Echoes text as text and binary as binary (the conformance-test server).
#[derive(Debug)]
pub struct EchoSession {
    link: Link,
}

/// Limits of the echo server, large enough for the conformance suite.
pub const ECHO_MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
pub const ECHO_MAX_FRAGMENTS: usize = 65_536;

impl EchoSession {
    pub fn new(ctx: &Ctx<'_>) -> EchoSession {
        EchoSession {
            link: Link::new(ctx, ECHO_MAX_MESSAGE_BYTES, ECHO_MAX_FRAGMENTS),
        }
    }

    pub fn handle_bytes(&mut self, input: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Out>) -> usize {
        if self.link.ended {
            return input.len();
        }
        let mut events = Vec::new();
        let (n, closing_started) = self.link.decode(input, false, ctx, &mut events, out);
        let mut peer_closed = false;
        for ev in &events {
            let (opcode, payload) = match ev {
                WsEvent::Text(text) => (Opcode::Text, text.as_bytes()),
                WsEvent::Binary(data) => (Opcode::Binary, data.as_slice()),
                WsEvent::Pong(_) => continue,
                WsEvent::Closed { .. } => {
                    peer_closed = true;
                    continue;
                }
            };
            let mut frame = Vec::with_capacity(payload.len() + 10);
            encode_frame(opcode, payload, &mut frame);
            out.push(Out::Send(Rc::from(frame)));
        }
        self.link
            .after_events(closing_started, peer_closed, ctx, out);
        if self.link.ended { input.len() } else { n }
    }

    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        self.link.on_tick(ctx, out);
    }

    pub fn on_drain(&mut self, out: &mut Vec<Out>) {
        self.link.on_drain(out);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{Fixture, requests};
    use super::super::{Session, WsApp};
    use super::*;
    use crate::proto::ws::frame::apply_mask;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    /// A masked client frame.
    fn client_frame(opcode: Opcode, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        encode_frame(opcode, payload, &mut f);
        // Server frames are unmasked: set the mask bit and insert the key.
        let header_len = f.len() - payload.len();
        let mut out = f[..header_len].to_vec();
        out[1] |= 0x80;
        out.extend_from_slice(&MASK);
        let mut body = payload.to_vec();
        apply_mask(&mut body, MASK, 0);
        out.extend_from_slice(&body);
        out
    }

    const UPGRADE: &[u8] = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    fn open(f: &Fixture, now: Instant) -> Session {
        let mut s = Session::new(super::super::Port::Ws, &f.cfg, now);
        let mut out = Vec::new();
        let n = s.handle_bytes(UPGRADE, &f.ctx(now), &mut out);
        assert_eq!(n, UPGRADE.len());
        assert!(matches!(&out[..], [Out::Send(b)] if b.starts_with(b"HTTP/1.1 101")));
        s
    }

    fn sends(out: &[Out]) -> Vec<Vec<u8>> {
        out.iter()
            .filter_map(|o| match o {
                Out::Send(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect()
    }

    /// The close code of a server close frame.
    fn close_code(frame: &[u8]) -> Option<u16> {
        (frame.first() == Some(&0x88)).then(|| u16::from_be_bytes([frame[2], frame[3]]))
    }

    #[test]
    fn upgrades_and_turns_text_messages_into_requests() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        assert_eq!(s.format(), Some(Format::WsText));
        let mut out = Vec::new();
        let input = client_frame(Opcode::Text, br#"{"type":"message","message":"hi"}"#);
        s.handle_bytes(&input, &f.ctx(now), &mut out);
        assert_eq!(
            requests(&out),
            vec![&Request::Say {
                room: Some("#lobby".into()),
                text: "hi".into()
            }]
        );
    }

    #[test]
    fn binary_closes_with_1003() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        let mut out = Vec::new();
        s.handle_bytes(
            &client_frame(Opcode::Binary, b"\x00"),
            &f.ctx(now),
            &mut out,
        );
        assert_eq!(close_code(&sends(&out)[0]), Some(1003));
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::ProtocolError)));
        assert_eq!(s.format(), None, "no more chat for a closing socket");
    }

    #[test]
    fn exit_closes_with_1000_and_a_peer_close_is_an_exit() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        let mut out = Vec::new();
        s.handle_bytes(
            &client_frame(Opcode::Text, br#"{"type":"exit"}"#),
            &f.ctx(now),
            &mut out,
        );
        assert_eq!(close_code(&sends(&out)[0]), Some(1000));
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::Exit)));

        let mut s = open(&f, now);
        let mut out = Vec::new();
        s.handle_bytes(
            &client_frame(Opcode::Close, &[0x03, 0xe8]),
            &f.ctx(now),
            &mut out,
        );
        assert_eq!(
            close_code(&sends(&out)[0]),
            Some(1000),
            "the close is echoed"
        );
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::Exit)));
    }

    #[test]
    fn a_protocol_violation_ends_with_the_codecs_code() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        let mut out = Vec::new();
        // Unmasked client frame: RFC 6455 §5.1 → 1002.
        s.handle_bytes(&[0x81, 0x01, b'x'], &f.ctx(now), &mut out);
        assert_eq!(close_code(&sends(&out)[0]), Some(1002));
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::ProtocolError)));
    }

    #[test]
    fn pings_when_silent_and_drops_when_the_pong_never_comes() {
        let f = Fixture::new();
        let t0 = Instant::now();
        let mut s = open(&f, t0);
        s.on_join_outcome(true);
        let mut out = Vec::new();
        s.on_tick(
            &f.ctx(t0 + f.cfg.ws_ping_interval - Duration::from_millis(1)),
            &mut out,
        );
        assert!(out.is_empty());
        let t1 = t0 + f.cfg.ws_ping_interval;
        s.on_tick(&f.ctx(t1), &mut out);
        assert_eq!(sends(&out)[0].first(), Some(&0x89), "a ping");
        out.clear();
        // Any input counts as an answer.
        s.handle_bytes(&client_frame(Opcode::Pong, b"alive?"), &f.ctx(t1), &mut out);
        s.on_tick(&f.ctx(t1 + f.cfg.ws_pong_timeout), &mut out);
        assert!(!out.contains(&Out::Kill(LeaveReason::Timeout)));
        let t2 = t1 + f.cfg.ws_ping_interval;
        s.on_tick(&f.ctx(t2), &mut out);
        out.clear();
        s.on_tick(&f.ctx(t2 + f.cfg.ws_pong_timeout), &mut out);
        assert_eq!(out, vec![Out::Kill(LeaveReason::Timeout)]);
    }

    #[test]
    fn no_join_in_time_closes_with_1008() {
        let f = Fixture::new();
        let t0 = Instant::now();
        let mut s = open(&f, t0);
        let mut out = Vec::new();
        s.on_tick(&f.ctx(t0 + f.cfg.first_line_timeout), &mut out);
        assert_eq!(close_code(&sends(&out)[0]), Some(1008));
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::Timeout)));
    }

    fn join_frame(name: &str) -> Vec<u8> {
        client_frame(
            Opcode::Text,
            format!(r#"{{"type":"join","sender":"{name}"}}"#).as_bytes(),
        )
    }

    #[test]
    fn input_behind_a_pending_join_is_held_control_frames_too() {
        let f = Fixture::new();
        let now = Instant::now();
        // Upgrade, join and more in one read: the upgrade and the join are used.
        let mut s = Session::new(super::super::Port::Ws, &f.cfg, now);
        let join = join_frame("al");
        let mut behind = client_frame(Opcode::Text, br#"{"type":"message","message":"hi"}"#);
        behind.extend(client_frame(Opcode::Ping, b"p"));
        behind.extend(client_frame(Opcode::Text, br#"{"type":"who"}"#));
        behind.extend(client_frame(Opcode::Close, &[0x03, 0xe8]));
        let input = [UPGRADE, &join[..], &behind[..]].concat();
        let mut out = Vec::new();
        let n = s.handle_bytes(&input, &f.ctx(now), &mut out);
        assert_eq!(
            n,
            UPGRADE.len() + join.len(),
            "decoding stops behind the join"
        );
        assert!(matches!(requests(&out)[..], [Request::Join { name, .. }] if name == "al"));
        assert!(s.holding());
        // Fed again while pending (more bytes came): nothing is used or answered,
        // not even the ping or the close.
        let mut out = Vec::new();
        assert_eq!(s.handle_bytes(&behind, &f.ctx(now), &mut out), 0);
        assert!(out.is_empty());
        assert!(s.on_join_outcome(true), "held input is fed again");
        assert!(!s.holding());
        let n = s.handle_bytes(&behind, &f.ctx(now), &mut out);
        assert_eq!(n, behind.len());
        // In wire order: the message, the pong, who, the close echo, the end.
        assert!(matches!(&out[0], Out::Hub(Request::Say { text, .. }) if text == "hi"));
        assert!(
            matches!(&out[1], Out::Send(b) if b[0] == 0x8a),
            "{:?}",
            out[1]
        );
        assert_eq!(out[2], Out::Hub(Request::Who));
        assert!(matches!(&out[3], Out::Send(b) if close_code(b) == Some(1000)));
        assert_eq!(out[4], Out::End(LeaveReason::Exit));
        assert_eq!(out.len(), 5);
    }

    #[test]
    fn an_unfinished_frame_behind_a_join_is_kept_whole() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        let join = join_frame("al");
        let msg = client_frame(Opcode::Text, br#"{"type":"message","message":"split"}"#);
        let mut input = [&join[..], &msg[..5]].concat();
        let mut out = Vec::new();
        assert_eq!(s.handle_bytes(&input, &f.ctx(now), &mut out), join.len());
        input.drain(..join.len());
        input.extend_from_slice(&msg[5..]);
        assert!(s.on_join_outcome(true));
        let mut out = Vec::new();
        assert_eq!(s.handle_bytes(&input, &f.ctx(now), &mut out), msg.len());
        assert!(matches!(requests(&out)[..], [Request::Say { text, .. }] if text == "split"));
    }

    #[test]
    fn a_refused_join_lets_the_next_message_retry() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        let (first, second) = (join_frame("taken"), join_frame("free"));
        let msg = client_frame(Opcode::Text, br#"{"type":"message","message":"hi"}"#);
        let mut input = [&first[..], &second[..], &msg[..]].concat();
        let mut out = Vec::new();
        let n = s.handle_bytes(&input, &f.ctx(now), &mut out);
        assert_eq!(n, first.len());
        input.drain(..n);
        assert!(s.on_join_outcome(false), "a refusal resumes too");
        let mut out = Vec::new();
        let n = s.handle_bytes(&input, &f.ctx(now), &mut out);
        assert_eq!(n, second.len(), "the retry holds again");
        assert!(matches!(requests(&out)[..], [Request::Join { name, .. }] if name == "free"));
        input.drain(..n);
        assert!(s.on_join_outcome(true));
        let mut out = Vec::new();
        assert_eq!(s.handle_bytes(&input, &f.ctx(now), &mut out), msg.len());
        assert!(matches!(requests(&out)[..], [Request::Say { text, .. }] if text == "hi"));
    }

    #[test]
    fn a_join_once_joined_holds_nothing() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        let mut out = Vec::new();
        s.handle_bytes(&join_frame("al"), &f.ctx(now), &mut out);
        s.on_join_outcome(true);
        let mut input = join_frame("bo");
        input.extend(client_frame(Opcode::Text, br#"{"type":"who"}"#));
        let mut out = Vec::new();
        assert_eq!(s.handle_bytes(&input, &f.ctx(now), &mut out), input.len());
        assert_eq!(requests(&out).len(), 2);
        assert!(!s.holding());
    }

    #[test]
    fn the_join_deadline_fires_while_a_join_is_pending_without_pings() {
        let mut f = Fixture::new();
        f.cfg.ws_ping_interval = Duration::from_secs(1);
        f.cfg.ws_pong_timeout = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut s = open(&f, t0);
        let mut out = Vec::new();
        let mut input = join_frame("al");
        input.extend(client_frame(Opcode::Text, br#"{"type":"who"}"#));
        s.handle_bytes(&input, &f.ctx(t0), &mut out);
        assert!(s.holding());
        out.clear();
        let mut t = t0;
        while t + Duration::from_secs(1) < t0 + f.cfg.first_line_timeout {
            t += Duration::from_secs(1);
            s.on_tick(&f.ctx(t), &mut out);
        }
        assert!(
            out.is_empty(),
            "no ping, no pong timeout while held: {out:?}"
        );
        s.on_tick(&f.ctx(t0 + f.cfg.first_line_timeout), &mut out);
        assert_eq!(close_code(&sends(&out)[0]), Some(1008));
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::Timeout)));
        assert!(!s.holding());
    }

    #[test]
    fn drain_closes_with_1001() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = open(&f, now);
        let mut out = Vec::new();
        s.on_drain(&mut out);
        assert_eq!(close_code(&sends(&out)[0]), Some(1001));
    }

    #[test]
    fn a_bad_handshake_is_refused_and_ended() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = Session::new(super::super::Port::Ws, &f.cfg, now);
        let mut out = Vec::new();
        s.handle_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", &f.ctx(now), &mut out);
        assert!(matches!(&out[..], [Out::Send(b), Out::End(_)] if b.starts_with(b"HTTP/1.1 4")));
    }

    #[test]
    fn the_echo_application_echoes_text_and_binary() {
        let mut f = Fixture::new();
        f.ws_app = WsApp::Echo;
        let now = Instant::now();
        let mut s = open(&f, now);
        assert_eq!(s.format(), None, "not a chat participant");
        let mut out = Vec::new();
        let mut input = client_frame(Opcode::Text, b"hello");
        input.extend(client_frame(Opcode::Binary, &[0, 1, 2]));
        s.handle_bytes(&input, &f.ctx(now), &mut out);
        let frames = sends(&out);
        assert_eq!(frames[0], [&[0x81, 5][..], b"hello"].concat());
        assert_eq!(frames[1], vec![0x82, 3, 0, 1, 2]);
    }
}
