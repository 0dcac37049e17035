//! `WsSession::handle_bytes` and `FrameHeader::decode` on arbitrary client
//! byte streams.
//!
//! Input layout: bytes 0-1 pick the split point, byte 2 the limits, the rest
//! is the stream the peer sends after the handshake.
//!
//! Invariants: `consumed <= input length`; what stays unconsumed while the
//! session is open is a short incomplete frame header; the events, the reply
//! bytes and the close code are the same whether the stream arrives in one
//! piece, in two pieces split at the chosen point, or is read one event at a
//! time with `handle_bytes_until_event`. `FrameHeader::decode` uses at most
//! `MAX_HEADER_BYTES`, gives the same header from exactly the bytes it used,
//! and says "incomplete" (or the same error) for every shorter prefix.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::proto::ws::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, MAX_HEADER_BYTES};
use multiuserchat::proto::ws::session::{WsEvent, WsLimits, WsSession};

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<WsEvent>,
    reply: Vec<u8>,
    closing: bool,
    close_code: Option<u16>,
}

/// Feeds `pieces` in order, keeping the unconsumed rest like the connection does.
fn feed(limits: WsLimits, pieces: &[&[u8]], until_event: bool) -> Outcome {
    let mut session = WsSession::new(limits);
    let mut events = Vec::new();
    let mut reply = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            let consumed = if until_event {
                session.handle_bytes_until_event(&pending, &mut events, &mut reply)
            } else {
                session.handle_bytes(&pending, &mut events, &mut reply)
            };
            assert!(consumed <= pending.len(), "consumed more than the input");
            pending.drain(..consumed);
            if !until_event || consumed == 0 || pending.is_empty() {
                break;
            }
        }
        if session.is_closed() || session.is_closing() {
            continue;
        }
        // Only an unfinished frame header may be left over.
        assert!(
            pending.len() < MAX_HEADER_BYTES,
            "kept {} bytes",
            pending.len()
        );
        assert_eq!(FrameHeader::decode(&pending), Ok(None));
    }
    Outcome {
        events,
        reply,
        closing: session.is_closing(),
        close_code: session.close_sent_code(),
    }
}

fn check_header(input: &[u8]) {
    let full = FrameHeader::decode(input);
    match full {
        Ok(Some((n, header))) => {
            assert!(n <= input.len() && n <= MAX_HEADER_BYTES);
            assert!(matches!(n, 6 | 8 | 14));
            assert_eq!(FrameHeader::decode(&input[..n]), full);
            assert!(header.payload_len < 1 << 63);
            if header.opcode.is_control() {
                assert!(header.fin);
                assert!(header.payload_len <= MAX_CONTROL_PAYLOAD as u64);
            }
            for k in 0..n {
                assert_eq!(FrameHeader::decode(&input[..k]), Ok(None), "prefix {k}");
            }
        }
        Ok(None) => assert!(input.len() < MAX_HEADER_BYTES),
        Err(e) => {
            for k in 0..input.len().min(MAX_HEADER_BYTES) {
                let prefix = FrameHeader::decode(&input[..k]);
                assert!(
                    prefix == Ok(None) || prefix == Err(e),
                    "prefix {k}: {prefix:?}"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [s0, s1, lim, stream @ ..] = data else {
        return;
    };
    check_header(stream);

    let limits = WsLimits {
        max_message_bytes: [16, 300, 70_000, 1 << 20][usize::from(lim & 3)],
        max_fragments: [1, 2, 8, 1024][usize::from((lim >> 2) & 3)],
    };
    let split = usize::from(u16::from_le_bytes([*s0, *s1])) % (stream.len() + 1);
    let (a, b) = stream.split_at(split);

    let whole = feed(limits, &[stream], false);
    let two = feed(limits, &[a, b], false);
    assert_eq!(whole, two, "split at {split} changes the outcome");
    let stepped = feed(limits, &[a, b], true);
    assert_eq!(whole, stepped, "handle_bytes_until_event differs");
});
