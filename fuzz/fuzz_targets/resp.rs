//! `RespDecoder::decode` on arbitrary byte streams from a Redis server, and
//! `PubSub::from_frame` and `resp::encode` on what it decodes.
//!
//! Input layout: bytes 0-1 pick the split point, byte 2 the limits (bits 0-2
//! `max_depth` 0..=7, bits 3-4 `max_elements`, bits 5-6 `max_bulk_bytes`, bit
//! 7 small or large line and frame limits), the rest is the stream.
//!
//! Invariants: nothing panics; each `consumed` is at least 3 and within the
//! pending input; every frame keeps within the limits (depth, items per
//! aggregate, bulk bytes, frame bytes); the frames and the error (if any) are
//! the same whether the stream arrives in one piece or split at the chosen
//! point; a decoded frame, encoded again, decodes to a frame that encodes to
//! the same bytes; `PubSub::from_frame` hands back a frame it does not take
//! unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::proto::resp::{self, Frame, PubSub, RespDecoder, RespError, RespLimits};

fn limits(knob: u8) -> RespLimits {
    let small = knob & 0x80 == 0;
    RespLimits {
        max_depth: usize::from(knob & 0x07),
        max_elements: [1, 4, 16, 1 << 20][usize::from((knob >> 3) & 3)],
        max_bulk_bytes: [0, 8, 64, 1 << 20][usize::from((knob >> 5) & 3)],
        max_line_bytes: if small { 16 } else { 1024 },
        max_frame_bytes: if small { 256 } else { 1 << 20 },
    }
}

/// Checks that `frame` (at nesting `depth`) keeps within `limits`.
fn check_limits(frame: &Frame, limits: &RespLimits, depth: usize) {
    let items = match frame {
        Frame::Bulk(b) | Frame::BulkError(b) => {
            assert!(b.len() <= limits.max_bulk_bytes, "bulk over the limit");
            return;
        }
        Frame::Verbatim { text, .. } => {
            assert!(
                text.len() + 4 <= limits.max_bulk_bytes,
                "verbatim over the limit"
            );
            return;
        }
        Frame::Simple(b) | Frame::Error(b) => {
            assert!(b.len() <= limits.max_line_bytes, "line over the limit");
            return;
        }
        Frame::Array(items) | Frame::Set(items) | Frame::Push(items) => {
            assert!(items.len() <= limits.max_elements, "too many items");
            items.iter().collect::<Vec<_>>()
        }
        Frame::Map(pairs) => {
            assert!(pairs.len() <= limits.max_elements, "too many pairs");
            pairs.iter().flat_map(|(k, v)| [k, v]).collect()
        }
        Frame::Attributed { attrs, frame } => {
            assert!(attrs.len() <= limits.max_elements, "too many attributes");
            assert!(
                !matches!(**frame, Frame::Attributed { .. }),
                "attributes not merged"
            );
            check_limits(frame, limits, depth);
            attrs.iter().flat_map(|(k, v)| [k, v]).collect()
        }
        _ => return,
    };
    assert!(depth < limits.max_depth, "nested deeper than the limit");
    for item in items {
        check_limits(item, limits, depth + 1);
    }
}

/// The frames decoded before the first error, as bytes (so NaN compares
/// equal to itself), and that error.
fn run(limits: RespLimits, pieces: &[&[u8]]) -> (Vec<Vec<u8>>, Option<RespError>) {
    let mut decoder = RespDecoder::new(limits);
    let mut pending: Vec<u8> = Vec::new();
    let mut frames = Vec::new();
    for piece in pieces {
        pending.extend_from_slice(piece);
        loop {
            match decoder.decode(&pending) {
                Ok(Some((consumed, frame))) => {
                    assert!(consumed >= 3 && consumed <= pending.len());
                    assert!(consumed <= limits.max_frame_bytes, "frame over the limit");
                    check_limits(&frame, &limits, 0);
                    let mut bytes = Vec::new();
                    resp::encode(&frame, &mut bytes);
                    frames.push(bytes);
                    pending.drain(..consumed);
                }
                Ok(None) => {
                    assert!(pending.len() <= limits.max_frame_bytes);
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

/// Re-decodes an encoded frame and checks it encodes to the same bytes.
fn check_round_trip(encoded: &[u8], max_depth: usize) {
    let generous = RespLimits {
        max_depth,
        max_elements: usize::MAX,
        max_bulk_bytes: usize::MAX,
        max_line_bytes: usize::MAX,
        max_frame_bytes: usize::MAX,
    };
    let decoded = RespDecoder::new(generous).decode(encoded);
    let Ok(Some((consumed, frame))) = decoded else {
        panic!("re-encoded frame does not decode: {decoded:?}");
    };
    assert_eq!(consumed, encoded.len());
    let mut again = Vec::new();
    resp::encode(&frame, &mut again);
    assert_eq!(again, encoded, "encode/decode round trip changed the frame");

    let mut before = Vec::new();
    resp::encode(&frame, &mut before);
    if let Err(back) = PubSub::from_frame(frame) {
        let mut after = Vec::new();
        resp::encode(&back, &mut after);
        assert_eq!(
            before, after,
            "PubSub::from_frame changed a frame it refused"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let [hi, lo, knob, stream @ ..] = data else {
        return;
    };
    let limits = limits(*knob);
    let split = usize::from(u16::from_be_bytes([*hi, *lo])) % (stream.len() + 1);
    let (a, b) = stream.split_at(split);
    let whole = run(limits, &[stream]);
    let pieces = run(limits, &[a, b]);
    assert_eq!(whole, pieces, "result depends on how the input was split");
    for encoded in &whole.0 {
        check_round_trip(encoded, limits.max_depth);
    }
});
