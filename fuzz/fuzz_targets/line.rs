//! `LineDecoder::decode` fed the way the connection feeds it: the input
//! arrives in pieces, the unconsumed rest is kept and the next piece appended.
//!
//! Input layout: byte 0 picks `max_line_bytes` (0..=63), byte 1 the piece
//! size (1..=16), the rest is the stream.
//!
//! Invariants: each `consumed` is within the pending input and ends just after
//! a `\n`; a line holds no `\n`, lacks only the one `\r` before it, is at most `max_line_bytes`
//! long and is a prefix of the pending input; the lines (and whether a
//! `TooLong` error happens) are the same as when the whole stream is decoded
//! in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::proto::line::LineDecoder;

/// Lines produced before the first error, and whether an error happened.
fn run(max: usize, stream: &[u8], piece: usize) -> (Vec<Vec<u8>>, bool) {
    let mut decoder = LineDecoder::new(max);
    let mut pending: Vec<u8> = Vec::new();
    let mut lines = Vec::new();
    for chunk in stream.chunks(piece) {
        pending.extend_from_slice(chunk);
        loop {
            match decoder.decode(&pending) {
                Ok(Some((consumed, line))) => {
                    assert!(consumed >= 1 && consumed <= pending.len());
                    assert_eq!(pending[consumed - 1], b'\n');
                    assert!(line.len() <= max, "line over the limit");
                    // The line is what precedes the `\n`, less one `\r` if there is one.
                    let stripped = pending[..consumed - 1].strip_suffix(b"\r");
                    assert_eq!(line, stripped.unwrap_or(&pending[..consumed - 1]));
                    assert!(!line.contains(&b'\n'));
                    lines.push(line.to_vec());
                    pending.drain(..consumed);
                }
                Ok(None) => {
                    assert!(!pending.contains(&b'\n'), "a complete line was left");
                    assert!(pending.len() <= max + 1);
                    break;
                }
                Err(_) => return (lines, true),
            }
        }
    }
    (lines, false)
}

fuzz_target!(|data: &[u8]| {
    let [max, piece, stream @ ..] = data else {
        return;
    };
    let max = usize::from(max % 64);
    let piece = usize::from(piece % 16) + 1;
    let split = run(max, stream, piece);
    let whole = run(max, stream, stream.len().max(1));
    assert_eq!(split, whole, "result depends on how the input was split");
});
