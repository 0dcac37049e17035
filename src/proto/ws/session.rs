//! One server-side WebSocket connection after the handshake (RFC 6455 §5-§7):
//! frame stream in, messages and protocol replies out.
//!
//! Owns message reassembly, the size and fragment limits, incremental UTF-8
//! checking of text, ping/pong and the close handshake. It does not own a
//! socket, a clock or a buffer of unread input: the caller passes received
//! bytes to [`WsSession::handle_bytes`], keeps whatever was not consumed (only
//! ever an unfinished frame header, at most 13 bytes), and sends `reply`.
//!
//! # How it works
//!
//! Decoding alternates between two steps:
//! - *header*: [`FrameHeader::decode`] on the input; an incomplete header is
//!   left unconsumed, a complete one is checked against the message state
//!   (RFC 6455 §5.4 fragmentation rules, limits) and becomes the current frame;
//! - *payload*: whatever payload bytes are present are consumed at once,
//!   unmasked straight into the message buffer (data) or a 125-byte array
//!   (control). Text is UTF-8 checked chunk by chunk, so an invalid byte fails
//!   the connection while the message is still arriving. When the frame's
//!   last byte is in, the frame is finished: a final data frame yields a
//!   message, a ping a pong, a close the close handshake.
//!
//! Connection states:
//! - `Open`: everything above.
//! - `CloseSent`: the server called [`WsSession::close`]; frames are still
//!   parsed so the peer's close answer surfaces as [`WsEvent::Closed`], but
//!   data is dropped and pings are not answered (RFC 6455 §5.5.1: no data
//!   after a close frame).
//! - `Closed`: the close handshake is done or the connection was failed;
//!   input is consumed and ignored.
//!
//! A protocol violation *fails the connection* (RFC 6455 §7.1.7): the close
//! frame with the matching code goes to `reply`, the state becomes `Closed`,
//! and **no event is pushed**. The caller learns it from
//! [`WsSession::is_closing`] (and the code from [`WsSession::close_sent_code`]).

use super::close::{self, CloseCode};
use super::frame::{self, FrameHeader, MAX_CONTROL_PAYLOAD, Opcode};
use super::utf8::Utf8Validator;

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WsLimits {
    /// Largest message (sum of its fragments' payloads) in bytes; above → close 1009.
    pub max_message_bytes: usize,
    /// Most frames one message may be split into; above → close 1009 (the
    /// message is refused for its size in frames, like an oversized one).
    /// An empty final continuation frame, which only marks the end, is not
    /// counted: 65,536 pieces of 64 bytes followed by an empty FIN frame is a
    /// message of 65,536 fragments. Should be at least 1.
    pub max_fragments: usize,
}

/// What the peer sent, one complete item at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsEvent {
    /// A complete, valid UTF-8 text message.
    Text(String),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A pong (answer to our ping, or unsolicited heartbeat) with its payload.
    Pong(Vec<u8>),
    /// The peer sent a valid close frame. `code` is `None` when its body was
    /// empty. If the close was the peer's initiative the echo is already in
    /// `reply`; either way the close handshake is complete and the TCP
    /// connection may be closed once `reply` is flushed.
    Closed { code: Option<u16> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    CloseSent,
    Closed,
}

/// The frame whose payload is being received.
#[derive(Debug, Clone, Copy)]
struct CurrentFrame {
    header: FrameHeader,
    /// Payload bytes received so far (the mask position).
    received: u64,
    /// Payload is dropped instead of stored (data frames while `CloseSent`).
    discard: bool,
}

/// A data message being assembled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageKind {
    Text,
    Binary,
}

/// Sans-I/O WebSocket server session. See the module docs for the states.
#[derive(Debug)]
pub struct WsSession {
    limits: WsLimits,
    state: State,
    frame: Option<CurrentFrame>,
    /// Kind of the message currently open (first frame seen, final not yet).
    message: Option<MessageKind>,
    /// Frames of the open message so far.
    fragments: usize,
    /// Unmasked payload of the open message; empty and unallocated when idle.
    message_buf: Vec<u8>,
    utf8: Utf8Validator,
    control_buf: [u8; MAX_CONTROL_PAYLOAD],
    control_len: usize,
    close_sent: Option<u16>,
}

/// Upper bound on the up-front allocation for a declared message length; the
/// rest grows as bytes actually arrive.
const MAX_RESERVE_BYTES: usize = 1 << 20;

impl WsSession {
    pub fn new(limits: WsLimits) -> Self {
        Self {
            limits,
            state: State::Open,
            frame: None,
            message: None,
            fragments: 0,
            message_buf: Vec::new(),
            utf8: Utf8Validator::new(),
            control_buf: [0; MAX_CONTROL_PAYLOAD],
            control_len: 0,
            close_sent: None,
        }
    }

    /// Feeds received bytes and returns how many were consumed.
    ///
    /// Consumes everything except a trailing incomplete frame header (at most
    /// 13 bytes), which the caller keeps and passes again, followed by the
    /// next bytes. Payload bytes are consumed as they arrive, so the caller
    /// never buffers a message. Complete messages and pongs and the peer's
    /// close go to `events`; pongs for pings and close frames go to `reply`.
    ///
    /// On a protocol violation the close frame with its code (1002, 1007 or
    /// 1009) is appended to `reply`, [`is_closing`](Self::is_closing) becomes
    /// true and no event is pushed for it. Once closed, all input is consumed
    /// and ignored.
    ///
    /// `reply` and `events` are two streams: a pong or close in `reply` may
    /// belong to a frame that came after a message in `events`. A caller that
    /// answers messages on this same connection and wants the exact wire
    /// order uses [`handle_bytes_until_event`](Self::handle_bytes_until_event).
    pub fn handle_bytes(
        &mut self,
        input: &[u8],
        events: &mut Vec<WsEvent>,
        reply: &mut Vec<u8>,
    ) -> usize {
        self.decode(input, events, reply, false)
    }

    /// Like [`handle_bytes`](Self::handle_bytes), but returns right after the
    /// first event has been pushed, so the caller can send its answer to that
    /// event before any reply caused by later frames (an echo server then
    /// answers a message before failing on the bad frame behind it). Call it
    /// again with the rest; it returns 0 only when the rest is an incomplete
    /// header (or empty).
    pub fn handle_bytes_until_event(
        &mut self,
        input: &[u8],
        events: &mut Vec<WsEvent>,
        reply: &mut Vec<u8>,
    ) -> usize {
        self.decode(input, events, reply, true)
    }

    fn decode(
        &mut self,
        input: &[u8],
        events: &mut Vec<WsEvent>,
        reply: &mut Vec<u8>,
        stop_after_event: bool,
    ) -> usize {
        let events_before = events.len();
        let mut pos = 0;
        while self.state != State::Closed {
            match self.frame {
                None => {
                    let rest = input.get(pos..).unwrap_or_default();
                    if rest.is_empty() {
                        break;
                    }
                    match FrameHeader::decode(rest) {
                        Ok(None) => return pos,
                        Ok(Some((n, header))) => {
                            pos += n;
                            if let Err(code) = self.begin_frame(header) {
                                self.fail(code, reply);
                                break;
                            }
                        }
                        Err(e) => {
                            self.fail(e.close_code(), reply);
                            break;
                        }
                    }
                }
                Some(mut current) => {
                    let rest = input.get(pos..).unwrap_or_default();
                    let left = current.header.payload_len.saturating_sub(current.received);
                    let take = usize::try_from(left).map_or(rest.len(), |l| l.min(rest.len()));
                    let chunk = rest.get(..take).unwrap_or_default();
                    if let Err(code) = self.take_payload(&current, chunk) {
                        self.fail(code, reply);
                        break;
                    }
                    pos += take;
                    current.received = current.received.saturating_add(take as u64);
                    if current.received < current.header.payload_len {
                        self.frame = Some(current);
                        break;
                    }
                    self.frame = None;
                    self.finish_frame(current, events, reply);
                    if stop_after_event && events.len() > events_before {
                        break;
                    }
                }
            }
        }
        if self.state == State::Closed {
            return input.len();
        }
        pos
    }

    /// Starts a server-initiated close (RFC 6455 §5.5.1, §7.1.2): appends a
    /// close frame with `code` and `reason` (cut to 123 bytes on a character
    /// boundary) to `reply`. Only the first call after the session opened
    /// has an effect; afterwards nothing is sent.
    pub fn close(&mut self, code: CloseCode, reason: &str, reply: &mut Vec<u8>) {
        if self.state != State::Open {
            return;
        }
        let mut body = Vec::with_capacity(2 + reason.len().min(close::MAX_REASON_BYTES));
        close::close_payload(code, reason, &mut body);
        frame::encode_frame(Opcode::Close, &body, reply);
        self.close_sent = Some(code.0);
        self.state = State::CloseSent;
        // RFC 6455 §5.5.1: data after our close is not delivered; stop storing it.
        if let Some(current) = self.frame.as_mut() {
            current.discard = !current.header.opcode.is_control();
        }
        self.drop_message();
    }

    /// Appends a ping (payload cut to 125 bytes, RFC 6455 §5.5) to `reply`.
    /// Nothing is sent once a close frame went out.
    pub fn ping(&mut self, payload: &[u8], reply: &mut Vec<u8>) {
        if self.state != State::Open {
            return;
        }
        let payload = payload.get(..MAX_CONTROL_PAYLOAD).unwrap_or(payload);
        frame::encode_frame(Opcode::Ping, payload, reply);
    }

    /// True once a close frame has been sent (by [`close`](Self::close), as
    /// an echo of the peer's close, or on a protocol violation). The caller
    /// stops sending data, flushes `reply` and closes the TCP connection
    /// (after the peer's close answer or a short grace period, if it wants
    /// the close handshake to finish).
    pub fn is_closing(&self) -> bool {
        self.close_sent.is_some()
    }

    /// True when nothing more is expected from the peer: the close handshake
    /// finished or the connection was failed.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The code of the close frame that was sent, if any.
    pub fn close_sent_code(&self) -> Option<u16> {
        self.close_sent
    }

    /// Checks a new frame header against the message state and limits.
    fn begin_frame(&mut self, header: FrameHeader) -> Result<(), CloseCode> {
        let discard = self.state == State::CloseSent;
        match header.opcode {
            Opcode::Text | Opcode::Binary => {
                // RFC 6455 §5.4: a new data message may not start inside a fragmented one.
                if self.message.is_some() {
                    return Err(CloseCode::PROTOCOL_ERROR);
                }
                if !discard {
                    // Limits are checked on the declared length, before allocating.
                    let len = self.check_size(0, header.payload_len)?;
                    self.message = Some(if header.opcode == Opcode::Text {
                        MessageKind::Text
                    } else {
                        MessageKind::Binary
                    });
                    self.fragments = 1;
                    self.utf8.reset();
                    self.message_buf.reserve(len.min(MAX_RESERVE_BYTES));
                }
            }
            Opcode::Continuation => {
                // RFC 6455 §5.4: a continuation needs an open fragmented message.
                if self.message.is_none() {
                    if discard {
                        // Its start was dropped after our close; drop this too.
                    } else {
                        return Err(CloseCode::PROTOCOL_ERROR);
                    }
                } else {
                    // An empty final frame only ends the message (senders that
                    // stream in fixed-size pieces finish that way); it adds no
                    // data and is not counted as a fragment.
                    if header.payload_len > 0 || !header.fin {
                        self.fragments = self.fragments.saturating_add(1);
                        if self.fragments > self.limits.max_fragments {
                            return Err(CloseCode::TOO_BIG);
                        }
                    }
                    let len = self.check_size(self.message_buf.len(), header.payload_len)?;
                    self.message_buf.reserve(len.min(MAX_RESERVE_BYTES));
                }
            }
            Opcode::Close | Opcode::Ping | Opcode::Pong => {
                // Header decoding already enforced FIN and <= 125 bytes (RFC 6455 §5.5).
                self.control_len = 0;
            }
        }
        self.frame = Some(CurrentFrame {
            header,
            received: 0,
            discard: discard && !header.opcode.is_control(),
        });
        Ok(())
    }

    /// RFC 6455 §10.4: refuse a message as soon as its declared size exceeds
    /// the limit. Returns the frame length as `usize`.
    fn check_size(&self, have: usize, declared: u64) -> Result<usize, CloseCode> {
        let len = usize::try_from(declared).map_err(|_| CloseCode::TOO_BIG)?;
        match have.checked_add(len) {
            Some(total) if total <= self.limits.max_message_bytes => Ok(len),
            _ => Err(CloseCode::TOO_BIG),
        }
    }

    /// Unmasks and stores one piece of the current frame's payload.
    fn take_payload(&mut self, current: &CurrentFrame, chunk: &[u8]) -> Result<(), CloseCode> {
        if chunk.is_empty() || current.discard {
            return Ok(());
        }
        // The mask position only matters modulo 4.
        let offset = (current.received % 4) as usize;
        if current.header.opcode.is_control() {
            let start = self.control_len;
            let end = start.saturating_add(chunk.len());
            let Some(dst) = self.control_buf.get_mut(start..end) else {
                return Err(CloseCode::PROTOCOL_ERROR);
            };
            dst.copy_from_slice(chunk);
            frame::apply_mask(dst, current.header.mask, offset);
            self.control_len = end;
            return Ok(());
        }
        let start = self.message_buf.len();
        self.message_buf.extend_from_slice(chunk);
        let Some(dst) = self.message_buf.get_mut(start..) else {
            return Ok(());
        };
        frame::apply_mask(dst, current.header.mask, offset);
        // RFC 6455 §8.1: fail as soon as the text is known not to be UTF-8.
        if self.message == Some(MessageKind::Text) && self.utf8.feed(dst).is_err() {
            return Err(CloseCode::INVALID_PAYLOAD);
        }
        Ok(())
    }

    /// Acts on a frame whose payload is complete.
    fn finish_frame(
        &mut self,
        current: CurrentFrame,
        events: &mut Vec<WsEvent>,
        reply: &mut Vec<u8>,
    ) {
        let header = current.header;
        match header.opcode {
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                if header.fin && !current.discard && self.message.is_some() {
                    self.finish_message(events, reply);
                }
            }
            Opcode::Ping => {
                // RFC 6455 §5.5.2/§5.5.3: answer with a pong carrying the same data.
                if self.state == State::Open {
                    let payload = self.control_payload();
                    frame::encode_frame(Opcode::Pong, payload, reply);
                }
            }
            Opcode::Pong => {
                // RFC 6455 §5.5.3: unsolicited pongs are allowed; surfaced for liveness.
                if self.state == State::Open {
                    let payload = self.control_payload().to_vec();
                    events.push(WsEvent::Pong(payload));
                }
            }
            Opcode::Close => self.handle_close(events, reply),
        }
    }

    /// Hands out the completed message (RFC 6455 §5.4: the final fragment arrived).
    fn finish_message(&mut self, events: &mut Vec<WsEvent>, reply: &mut Vec<u8>) {
        let kind = self.message.take();
        self.fragments = 0;
        let data = std::mem::take(&mut self.message_buf);
        match kind {
            Some(MessageKind::Text) => {
                // RFC 6455 §8.1: a text message may not end inside a code point.
                if !self.utf8.is_complete() {
                    self.fail(CloseCode::INVALID_PAYLOAD, reply);
                    return;
                }
                // Already validated chunk by chunk; this is the safe conversion.
                match String::from_utf8(data) {
                    Ok(text) => events.push(WsEvent::Text(text)),
                    Err(_) => self.fail(CloseCode::INVALID_PAYLOAD, reply),
                }
            }
            Some(MessageKind::Binary) => events.push(WsEvent::Binary(data)),
            None => {}
        }
    }

    /// RFC 6455 §5.5.1: a close frame from the peer.
    fn handle_close(&mut self, events: &mut Vec<WsEvent>, reply: &mut Vec<u8>) {
        let parsed = close::parse_close_payload(self.control_payload());
        match parsed {
            Ok(code) => {
                let code = code.map(|(c, _reason)| c);
                if self.state == State::Open {
                    // RFC 6455 §5.5.1: echo the status code; an empty close is answered with 1000.
                    let echo = CloseCode(code.unwrap_or(CloseCode::NORMAL.0));
                    let mut body = [0u8; 2];
                    body.copy_from_slice(&echo.0.to_be_bytes());
                    frame::encode_frame(Opcode::Close, &body, reply);
                    self.close_sent = Some(echo.0);
                }
                self.state = State::Closed;
                self.drop_message();
                events.push(WsEvent::Closed { code });
            }
            Err(e) => self.fail(e.close_code(), reply),
        }
    }

    fn control_payload(&self) -> &[u8] {
        self.control_buf.get(..self.control_len).unwrap_or_default()
    }

    /// RFC 6455 §7.1.7: fail the connection: send a close frame with `code`
    /// (unless one was already sent) and stop processing input.
    fn fail(&mut self, code: CloseCode, reply: &mut Vec<u8>) {
        if self.state == State::Open {
            let mut body = Vec::with_capacity(2);
            close::close_payload(code, "", &mut body);
            frame::encode_frame(Opcode::Close, &body, reply);
            self.close_sent = Some(code.0);
        }
        self.state = State::Closed;
        self.frame = None;
        self.drop_message();
    }

    /// Frees the message buffer (nothing more will be delivered).
    fn drop_message(&mut self) {
        self.message = None;
        self.fragments = 0;
        self.message_buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::super::frame::client_frame;
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn limits() -> WsLimits {
        WsLimits {
            max_message_bytes: 1 << 20,
            max_fragments: 16,
        }
    }

    /// Feeds `input` in one call; asserts everything was consumed.
    fn run(s: &mut WsSession, input: &[u8]) -> (Vec<WsEvent>, Vec<u8>) {
        let mut events = Vec::new();
        let mut reply = Vec::new();
        let n = s.handle_bytes(input, &mut events, &mut reply);
        assert_eq!(n, input.len(), "all input consumed");
        (events, reply)
    }

    /// Feeds `input` as the poll loop would: pieces split at `cuts`, the
    /// unconsumed tail kept and passed again.
    fn run_split(s: &mut WsSession, input: &[u8], cuts: &[usize]) -> (Vec<WsEvent>, Vec<u8>) {
        let mut events = Vec::new();
        let mut reply = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            let cut = cut.clamp(start, input.len());
            pending.extend_from_slice(&input[start..cut]);
            start = cut;
            let n = s.handle_bytes(&pending, &mut events, &mut reply);
            assert!(pending.len() - n <= 13, "only a header may be held back");
            pending.drain(..n);
        }
        assert!(pending.is_empty());
        (events, reply)
    }

    fn close_frame(code: u16) -> Vec<u8> {
        let mut v = vec![0x88, 0x02];
        v.extend_from_slice(&code.to_be_bytes());
        v
    }

    /// Asserts the session failed with `code`: close frame in `reply`, closing, no events.
    fn assert_fails(input: &[u8], code: u16) {
        let mut s = WsSession::new(limits());
        let (events, reply) = run(&mut s, input);
        assert!(
            !events.iter().any(|e| matches!(e, WsEvent::Closed { .. })),
            "{events:?}"
        );
        assert!(
            reply.ends_with(&close_frame(code)),
            "{reply:x?} for code {code}"
        );
        assert!(s.is_closing() && s.is_closed());
        assert_eq!(s.close_sent_code(), Some(code));
        // Anything later is consumed and ignored.
        let (events, reply) = run(&mut s, &client_frame(0x89, b"x", MASK));
        assert!(events.is_empty() && reply.is_empty());
    }

    #[test]
    fn decodes_rfc_masked_hello() {
        // RFC 6455 §5.7.
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut s = WsSession::new(limits());
        let (events, reply) = run(&mut s, &bytes);
        assert_eq!(events, [WsEvent::Text("Hello".into())]);
        assert!(reply.is_empty());
        assert!(!s.is_closing());
    }

    #[test]
    fn decodes_rfc_fragmented_hello() {
        // RFC 6455 §5.7: "Hel" then "lo", here masked as a client must.
        let mut input = client_frame(0x01, b"Hel", MASK);
        input.extend(client_frame(0x80, b"lo", MASK));
        let mut s = WsSession::new(limits());
        let (events, _) = run(&mut s, &input);
        assert_eq!(events, [WsEvent::Text("Hello".into())]);
    }

    #[test]
    fn answers_rfc_ping_with_pong() {
        // RFC 6455 §5.7: masked ping "Hello" → unmasked pong "Hello".
        let mut s = WsSession::new(limits());
        let (events, reply) = run(&mut s, &client_frame(0x89, b"Hello", MASK));
        assert!(events.is_empty());
        assert_eq!(reply, [0x8a, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn decodes_256_byte_and_64_kib_binary() {
        for len in [256usize, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let input = client_frame(0x82, &payload, MASK);
            assert_eq!(input[1] & 0x7F, if len == 256 { 126 } else { 127 });
            let mut s = WsSession::new(limits());
            let (events, _) = run(&mut s, &input);
            assert_eq!(events, [WsEvent::Binary(payload)]);
        }
    }

    #[test]
    fn answers_ping_between_fragments() {
        let mut input = client_frame(0x01, b"Hel", MASK);
        input.extend(client_frame(0x89, b"p", MASK));
        input.extend(client_frame(0x8A, b"q", MASK));
        input.extend(client_frame(0x80, b"lo", MASK));
        let mut s = WsSession::new(limits());
        let (events, reply) = run(&mut s, &input);
        assert_eq!(
            events,
            [WsEvent::Pong(b"q".to_vec()), WsEvent::Text("Hello".into())]
        );
        assert_eq!(reply, [0x8a, 0x01, b'p']);
    }

    #[test]
    fn holds_back_only_an_incomplete_header() {
        let input = client_frame(0x82, &[7u8; 300], MASK);
        let mut s = WsSession::new(limits());
        let mut events = Vec::new();
        let mut reply = Vec::new();
        assert_eq!(s.handle_bytes(&input[..5], &mut events, &mut reply), 0);
        // Header complete (8 bytes) plus some payload: all consumed.
        assert_eq!(s.handle_bytes(&input[..20], &mut events, &mut reply), 20);
        assert_eq!(
            s.handle_bytes(&input[20..], &mut events, &mut reply),
            input.len() - 20
        );
        assert_eq!(events, [WsEvent::Binary(vec![7u8; 300])]);
    }

    #[test]
    fn decodes_empty_messages_and_zero_length_frames() {
        let mut input = client_frame(0x81, b"", MASK);
        input.extend(client_frame(0x02, b"", MASK));
        input.extend(client_frame(0x00, b"", MASK));
        input.extend(client_frame(0x80, b"", MASK));
        input.extend(client_frame(0x8A, b"", MASK));
        let mut s = WsSession::new(limits());
        let (events, _) = run(&mut s, &input);
        assert_eq!(
            events,
            [
                WsEvent::Text(String::new()),
                WsEvent::Binary(Vec::new()),
                WsEvent::Pong(Vec::new())
            ]
        );
    }

    #[test]
    fn rejects_unmasked_client_frame() {
        assert_fails(&[0x81, 0x05, b'H', b'e', b'l', b'l', b'o'], 1002);
    }

    #[test]
    fn rejects_reserved_bits() {
        for b0 in [0xC1, 0xA1, 0x91] {
            assert_fails(&client_frame(b0, b"x", MASK), 1002);
        }
    }

    #[test]
    fn rejects_reserved_opcodes() {
        for op in (3..=7).chain(11..=15) {
            assert_fails(&client_frame(0x80 | op, b"", MASK), 1002);
        }
    }

    #[test]
    fn rejects_bad_control_frames() {
        assert_fails(&client_frame(0x89, &[0u8; 126], MASK), 1002);
        assert_fails(&client_frame(0x09, b"x", MASK), 1002);
        assert_fails(&client_frame(0x08, b"", MASK), 1002);
    }

    #[test]
    fn rejects_64_bit_length_with_msb_set() {
        assert_fails(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4], 1002);
    }

    #[test]
    fn rejects_bad_fragment_sequences() {
        // Continuation with no message open.
        assert_fails(&client_frame(0x80, b"x", MASK), 1002);
        // New text frame while a fragmented message is open.
        let mut input = client_frame(0x01, b"a", MASK);
        input.extend(client_frame(0x81, b"b", MASK));
        assert_fails(&input, 1002);
        let mut input = client_frame(0x02, b"a", MASK);
        input.extend(client_frame(0x02, b"b", MASK));
        assert_fails(&input, 1002);
    }

    #[test]
    fn rejects_too_many_fragments_with_1009() {
        let mut input = Vec::new();
        for _ in 0..16 {
            input.extend(client_frame(0x00, b"a", MASK));
        }
        input[0] = 0x01; // first frame: Text
        let mut over = input.clone();
        over.extend(client_frame(0x80, b"a", MASK));
        // 16 non-final frames + 1 final with data = 17 > 16.
        assert_fails(&over, 1009);
        let mut empty_non_final = input.clone();
        empty_non_final.extend(client_frame(0x00, b"", MASK));
        assert_fails(&empty_non_final, 1009);
        let mut ok = input.clone();
        ok.extend(client_frame(0x80, b"", MASK));
        // 16 data frames and an empty final frame: the terminator is not counted.
        let mut s = WsSession::new(limits());
        let (events, reply) = run(&mut s, &ok);
        assert_eq!(events, [WsEvent::Text("a".repeat(16))]);
        assert!(reply.is_empty());
        // Exactly 16 frames is fine.
        let mut exact: Vec<u8> = Vec::new();
        exact.extend(client_frame(0x01, b"a", MASK));
        for _ in 0..14 {
            exact.extend(client_frame(0x00, b"a", MASK));
        }
        exact.extend(client_frame(0x80, b"a", MASK));
        let (events, _) = run(&mut s, &exact);
        assert_eq!(events, [WsEvent::Text("a".repeat(16))]);
    }

    #[test]
    fn rejects_oversized_message_on_declared_length() {
        let small = WsLimits {
            max_message_bytes: 100,
            max_fragments: 16,
        };
        // Header alone (declared 101 bytes, no payload yet) is enough to refuse.
        let frame = client_frame(0x82, &[0u8; 101], MASK);
        let mut s = WsSession::new(small);
        let (events, reply) = run(&mut s, &frame[..6]);
        assert!(events.is_empty());
        assert_eq!(reply, close_frame(1009));
        // A 64-bit length near the maximum is refused without allocating.
        let mut s = WsSession::new(small);
        let huge = [
            0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
        ];
        let (_, reply) = run(&mut s, &huge);
        assert_eq!(reply, close_frame(1009));
        // Accumulated fragments over the limit.
        let mut input = client_frame(0x01, &[b'a'; 60], MASK);
        input.extend(client_frame(0x80, &[b'a'; 41], MASK));
        let mut s = WsSession::new(small);
        let (events, reply) = run(&mut s, &input);
        assert!(events.is_empty());
        assert_eq!(reply, close_frame(1009));
        // Exactly at the limit is fine.
        let mut s = WsSession::new(small);
        let (events, _) = run(&mut s, &client_frame(0x82, &[0u8; 100], MASK));
        assert_eq!(events, [WsEvent::Binary(vec![0u8; 100])]);
    }

    #[test]
    fn rejects_invalid_utf8_text_with_1007() {
        assert_fails(
            &client_frame(
                0x81,
                b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80",
                MASK,
            ),
            1007,
        );
        // Message ends inside a code point.
        assert_fails(&client_frame(0x81, b"ok\xe2\x82", MASK), 1007);
    }

    #[test]
    fn fails_fast_on_invalid_utf8_in_first_fragment() {
        let mut s = WsSession::new(limits());
        // First fragment carries an invalid byte; the message has not ended.
        let (events, reply) = run(&mut s, &client_frame(0x01, b"hello\xff", MASK));
        assert!(events.is_empty());
        assert_eq!(reply, close_frame(1007));
        // Even before the frame itself is complete.
        let mut s = WsSession::new(limits());
        let frame = client_frame(0x81, b"ab\xc0cdefgh", MASK);
        let (_, reply) = run(&mut s, &frame[..6 + 3]);
        assert_eq!(reply, close_frame(1007));
    }

    #[test]
    fn accepts_code_point_split_across_fragments() {
        let euro = "€".as_bytes(); // e2 82 ac
        let mut input = client_frame(0x01, &euro[..1], MASK);
        input.extend(client_frame(0x00, &euro[1..2], MASK));
        input.extend(client_frame(0x80, &euro[2..], MASK));
        let cuts: Vec<usize> = (1..input.len()).collect();
        let mut s = WsSession::new(limits());
        let (events, reply) = run_split(&mut s, &input, &cuts);
        assert_eq!(events, [WsEvent::Text("€".into())]);
        assert!(reply.is_empty());
    }

    #[test]
    fn echoes_peer_close_code() {
        let mut s = WsSession::new(limits());
        let mut input = client_frame(0x88, b"\x0f\xa0bye", MASK);
        input.extend(client_frame(0x81, b"ignored", MASK));
        let (events, reply) = run(&mut s, &input);
        assert_eq!(events, [WsEvent::Closed { code: Some(4000) }]);
        assert_eq!(reply, close_frame(4000));
        assert!(s.is_closing() && s.is_closed());
        assert_eq!(s.close_sent_code(), Some(4000));
    }

    #[test]
    fn answers_empty_close_with_1000() {
        let mut s = WsSession::new(limits());
        let (events, reply) = run(&mut s, &client_frame(0x88, b"", MASK));
        assert_eq!(events, [WsEvent::Closed { code: None }]);
        assert_eq!(reply, close_frame(1000));
    }

    #[test]
    fn rejects_one_byte_close_payload() {
        assert_fails(&client_frame(0x88, b"\x03", MASK), 1002);
    }

    #[test]
    fn rejects_every_invalid_close_code_range() {
        for code in [
            0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 6000, 65535,
        ] {
            assert_fails(&client_frame(0x88, &code.to_be_bytes(), MASK), 1002);
        }
        for code in [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            let mut s = WsSession::new(limits());
            let (events, reply) = run(&mut s, &client_frame(0x88, &code.to_be_bytes(), MASK));
            assert_eq!(events, [WsEvent::Closed { code: Some(code) }]);
            assert_eq!(reply, close_frame(code));
        }
    }

    #[test]
    fn rejects_invalid_utf8_close_reason_with_1007() {
        assert_fails(&client_frame(0x88, b"\x03\xe8\xce\xba\xe1\xbd", MASK), 1007);
    }

    #[test]
    fn server_close_waits_for_peer_answer() {
        let mut s = WsSession::new(limits());
        let mut reply = Vec::new();
        s.close(CloseCode::GOING_AWAY, "shutdown", &mut reply);
        assert_eq!(&reply[..4], [0x88, 10, 0x03, 0xe9]);
        assert_eq!(&reply[4..], b"shutdown");
        assert!(s.is_closing() && !s.is_closed());
        // Idempotent; no more pings either.
        let mut again = Vec::new();
        s.close(CloseCode::NORMAL, "", &mut again);
        s.ping(b"x", &mut again);
        assert!(again.is_empty());
        // Data and pings are dropped, the peer's close is surfaced without an echo.
        let mut input = client_frame(0x81, b"late", MASK);
        input.extend(client_frame(0x89, b"p", MASK));
        input.extend(client_frame(0x88, &1001u16.to_be_bytes(), MASK));
        let (events, reply) = run(&mut s, &input);
        assert_eq!(events, [WsEvent::Closed { code: Some(1001) }]);
        assert!(reply.is_empty());
        assert!(s.is_closed());
        assert_eq!(s.close_sent_code(), Some(1001));
    }

    #[test]
    fn server_close_mid_message_drops_it() {
        let mut s = WsSession::new(limits());
        let mut first = client_frame(0x01, b"abc", MASK);
        let frame = client_frame(0x80, b"defgh", MASK);
        first.extend_from_slice(&frame[..8]);
        let (events, _) = run(&mut s, &first);
        assert!(events.is_empty());
        let mut reply = Vec::new();
        s.close(CloseCode::NORMAL, "", &mut reply);
        let mut rest = frame[8..].to_vec();
        rest.extend(client_frame(0x88, b"", MASK));
        let (events, _) = run(&mut s, &rest);
        assert_eq!(events, [WsEvent::Closed { code: None }]);
    }

    #[test]
    fn until_event_keeps_wire_order() {
        // Text, then a frame with a reserved bit: the message comes out first,
        // the failure only on the next call.
        let mut input = client_frame(0x81, b"first", MASK);
        let first_len = input.len();
        input.extend(client_frame(0xA1, b"x", MASK));
        let mut s = WsSession::new(limits());
        let mut events = Vec::new();
        let mut reply = Vec::new();
        let n = s.handle_bytes_until_event(&input, &mut events, &mut reply);
        assert_eq!(n, first_len);
        assert_eq!(events, [WsEvent::Text("first".into())]);
        assert!(reply.is_empty() && !s.is_closing());
        let m = s.handle_bytes_until_event(&input[n..], &mut events, &mut reply);
        assert_eq!(m, input.len() - n);
        assert_eq!(reply, close_frame(1002));
        assert_eq!(events.len(), 1);
    }

    #[test]
    fn ping_truncates_to_125_bytes() {
        let mut s = WsSession::new(limits());
        let mut reply = Vec::new();
        s.ping(&[1u8; 200], &mut reply);
        assert_eq!(&reply[..2], [0x89, 125]);
        assert_eq!(reply.len(), 127);
    }

    #[test]
    fn close_reason_is_truncated() {
        let mut s = WsSession::new(limits());
        let mut reply = Vec::new();
        s.close(CloseCode::POLICY, &"x".repeat(300), &mut reply);
        assert_eq!(reply[1], 125);
        assert_eq!(s.close_sent_code(), Some(1008));
    }

    #[derive(Debug, Clone)]
    enum Item {
        Text(String),
        Binary(Vec<u8>),
        Fragmented(Vec<String>, bool),
        Ping(Vec<u8>),
        Pong(Vec<u8>),
    }

    fn item() -> impl Strategy<Value = Item> {
        prop_oneof![
            "\\PC{0,30}".prop_map(Item::Text),
            prop::collection::vec(any::<u8>(), 0..300).prop_map(Item::Binary),
            (prop::collection::vec("\\PC{0,8}", 1..5), any::<bool>())
                .prop_map(|(p, ping)| Item::Fragmented(p, ping)),
            prop::collection::vec(any::<u8>(), 0..125).prop_map(Item::Ping),
            prop::collection::vec(any::<u8>(), 0..125).prop_map(Item::Pong),
        ]
    }

    /// Builds a client stream and the events and reply it must produce.
    fn script(items: &[Item], mask: [u8; 4]) -> (Vec<u8>, Vec<WsEvent>, Vec<u8>) {
        let mut wire = Vec::new();
        let mut events = Vec::new();
        let mut reply = Vec::new();
        for it in items {
            match it {
                Item::Text(t) => {
                    wire.extend(client_frame(0x81, t.as_bytes(), mask));
                    events.push(WsEvent::Text(t.clone()));
                }
                Item::Binary(b) => {
                    wire.extend(client_frame(0x82, b, mask));
                    events.push(WsEvent::Binary(b.clone()));
                }
                Item::Fragmented(parts, ping) => {
                    // Split the joined text at byte positions, so code points straddle frames.
                    let joined: String = parts.concat();
                    let bytes = joined.as_bytes();
                    let n = parts.len();
                    let mut start = 0;
                    for (i, part) in parts.iter().enumerate() {
                        let end = if i + 1 == n {
                            bytes.len()
                        } else {
                            (start + part.len()).min(bytes.len())
                        };
                        let end = if i + 1 < n && end > start {
                            end - (i % 2).min(end - start)
                        } else {
                            end
                        };
                        let op = if i == 0 { 0x01 } else { 0x00 };
                        let fin = if i + 1 == n { 0x80 } else { 0 };
                        wire.extend(client_frame(op | fin, &bytes[start..end], mask));
                        if *ping && i == 0 {
                            wire.extend(client_frame(0x89, b"mid", mask));
                            encode_frame_into(&mut reply, Opcode::Pong, b"mid");
                        }
                        start = end;
                    }
                    events.push(WsEvent::Text(joined));
                }
                Item::Ping(p) => {
                    wire.extend(client_frame(0x89, p, mask));
                    encode_frame_into(&mut reply, Opcode::Pong, p);
                }
                Item::Pong(p) => {
                    wire.extend(client_frame(0x8A, p, mask));
                    events.push(WsEvent::Pong(p.clone()));
                }
            }
        }
        (wire, events, reply)
    }

    fn encode_frame_into(out: &mut Vec<u8>, op: Opcode, payload: &[u8]) {
        frame::encode_frame(op, payload, out);
    }

    proptest! {
        #[test]
        fn any_split_decodes_to_identical_events(
            items in prop::collection::vec(item(), 0..8),
            mask in any::<[u8; 4]>(),
            cuts in prop::collection::vec(0usize..4000, 0..20),
        ) {
            let (wire, want_events, want_reply) = script(&items, mask);
            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut s = WsSession::new(limits());
            let (events, reply) = run_split(&mut s, &wire, &cuts);
            prop_assert_eq!(&events, &want_events);
            prop_assert_eq!(&reply, &want_reply);
            prop_assert!(!s.is_closing());
            // Byte by byte gives the same result.
            let every: Vec<usize> = (1..wire.len()).collect();
            let mut s = WsSession::new(limits());
            let (events, reply) = run_split(&mut s, &wire, &every);
            prop_assert_eq!(&events, &want_events);
            prop_assert_eq!(&reply, &want_reply);
            // One event per call gives the same result too.
            let mut s = WsSession::new(limits());
            let mut events = Vec::new();
            let mut reply = Vec::new();
            let mut pos = 0;
            while pos < wire.len() {
                let before = events.len();
                let n = s.handle_bytes_until_event(&wire[pos..], &mut events, &mut reply);
                prop_assert!(n > 0);
                prop_assert!(events.len() - before <= 1);
                pos += n;
            }
            prop_assert_eq!(events, want_events);
            prop_assert_eq!(reply, want_reply);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..2000),
            cuts in prop::collection::vec(0usize..2000, 0..10),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let small = WsLimits { max_message_bytes: 1000, max_fragments: 4 };
            let mut s = WsSession::new(small);
            let mut events = Vec::new();
            let mut reply = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            let mut start = 0;
            for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
                let cut = cut.clamp(start, bytes.len());
                pending.extend_from_slice(&bytes[start..cut]);
                start = cut;
                let n = s.handle_bytes(&pending, &mut events, &mut reply);
                prop_assert!(n <= pending.len());
                prop_assert!(pending.len() - n < frame::MAX_HEADER_BYTES);
                pending.drain(..n);
            }
        }

        #[test]
        fn never_panics_on_mostly_masked_frames(
            frames in prop::collection::vec((any::<u8>(), prop::collection::vec(any::<u8>(), 0..200)), 0..10),
        ) {
            let mut wire = Vec::new();
            for (b0, payload) in &frames {
                wire.extend(client_frame(*b0, payload, MASK));
            }
            let mut s = WsSession::new(limits());
            let mut events = Vec::new();
            let mut reply = Vec::new();
            let n = s.handle_bytes(&wire, &mut events, &mut reply);
            prop_assert_eq!(n, wire.len());
        }
    }
}
