//! Incremental UTF-8 validation for WebSocket text messages (RFC 6455 §8.1).
//!
//! A text message may arrive in many frames and many reads, and a code point
//! may be split anywhere between them. The endpoint must fail the connection
//! as soon as the bytes seen so far cannot start a valid UTF-8 sequence, not
//! only when the message ends, so the validator is fed chunk by chunk and
//! keeps the unfinished code point in a few bytes of state.
//!
//! This module knows nothing about frames or sessions: bytes in, verdict out.
//!
//! How it works: the state is "how many continuation bytes are still owed"
//! (`need`) plus the allowed range for the next one (`lo..=hi`). A lead byte
//! sets both (RFC 3629 §4 table: the narrowed second-byte ranges after `E0`,
//! `ED`, `F0` and `F4` rule out overlong forms, surrogates and code points
//! above U+10FFFF); every continuation byte must fall in the range, after
//! which the range widens back to `80..=BF`. Between code points the bulk of
//! a chunk is checked with `std::str::from_utf8` (fast over ASCII); the state
//! machine only handles a code point cut off by the end of a chunk and its
//! continuation at the start of the next.

use std::fmt;

/// The bytes seen so far are not a prefix of any valid UTF-8 string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid UTF-8")
    }
}

impl std::error::Error for Utf8Error {}

/// Streaming UTF-8 checker. Feed chunks with [`feed`](Self::feed); at the end
/// of the text ask [`is_complete`](Self::is_complete) whether a code point was
/// left unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    /// Continuation bytes still owed by the current code point (0 = at a boundary).
    need: u8,
    /// Allowed range of the next continuation byte.
    lo: u8,
    hi: u8,
}

impl Default for Utf8Validator {
    fn default() -> Self {
        Self::new()
    }
}

impl Utf8Validator {
    pub const fn new() -> Self {
        Self {
            need: 0,
            lo: 0x80,
            hi: 0xBF,
        }
    }

    /// Forgets any unfinished code point (start of a new message).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// True when the bytes fed so far end on a code point boundary.
    pub fn is_complete(&self) -> bool {
        self.need == 0
    }

    /// Checks the next chunk of the text. `Err` as soon as the chunk holds a
    /// byte that cannot continue a valid UTF-8 string (the rest of the chunk
    /// is not looked at); the validator should then be reset before reuse.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), Utf8Error> {
        let mut i = 0;
        while i < bytes.len() {
            if self.need == 0 {
                // Fast path between code points: the standard library's
                // validator (word-at-a-time over ASCII) checks the bulk; only
                // a code point cut off by the chunk end is left to the
                // state machine below.
                let rest = bytes.get(i..).unwrap_or_default();
                match std::str::from_utf8(rest) {
                    Ok(_) => return Ok(()),
                    Err(e) => {
                        i += e.valid_up_to();
                        if e.error_len().is_some() {
                            // Not just cut short: this byte can never become valid.
                            return Err(Utf8Error);
                        }
                    }
                }
                let Some(&b) = bytes.get(i) else { break };
                i += 1;
                match b {
                    0x00..=0x7F => {}
                    0xC2..=0xDF => self.start_code_point(1, 0x80, 0xBF),
                    0xE0 => self.start_code_point(2, 0xA0, 0xBF),
                    0xE1..=0xEC | 0xEE..=0xEF => self.start_code_point(2, 0x80, 0xBF),
                    0xED => self.start_code_point(2, 0x80, 0x9F),
                    0xF0 => self.start_code_point(3, 0x90, 0xBF),
                    0xF1..=0xF3 => self.start_code_point(3, 0x80, 0xBF),
                    0xF4 => self.start_code_point(3, 0x80, 0x8F),
                    // 80..=C1 and F5..=FF never start a code point.
                    _ => return Err(Utf8Error),
                }
            } else {
                let Some(&b) = bytes.get(i) else { break };
                if b < self.lo || b > self.hi {
                    return Err(Utf8Error);
                }
                i += 1;
                self.need -= 1;
                self.lo = 0x80;
                self.hi = 0xBF;
            }
        }
        Ok(())
    }

    fn start_code_point(&mut self, need: u8, lo: u8, hi: u8) {
        self.need = need;
        self.lo = lo;
        self.hi = hi;
    }
}

/// Whole-buffer check with the same rules (used for close reasons).
pub fn is_valid(bytes: &[u8]) -> bool {
    let mut v = Utf8Validator::new();
    v.feed(bytes).is_ok() && v.is_complete()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_split(bytes: &[u8], cuts: &[usize]) -> bool {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&bytes.len())) {
            let cut = cut.clamp(start, bytes.len());
            if v.feed(&bytes[start..cut]).is_err() {
                return false;
            }
            start = cut;
        }
        v.is_complete()
    }

    #[test]
    fn accepts_ascii_and_multibyte() {
        assert!(is_valid(b""));
        assert!(is_valid(b"hello world, plain ascii text of some length"));
        assert!(is_valid(
            "κόσμε €𝄞 \u{10FFFF} \u{FFFF} \u{D7FF} \u{E000}".as_bytes()
        ));
    }

    #[test]
    fn rejects_overlong_surrogate_and_out_of_range() {
        for bad in [
            &b"\xC0\x80"[..],
            b"\xC1\xBF",
            b"\xE0\x80\x80",
            b"\xE0\x9F\xBF",
            b"\xED\xA0\x80", // U+D800
            b"\xED\xBF\xBF", // U+DFFF
            b"\xF0\x8F\xBF\xBF",
            b"\xF4\x90\x80\x80", // U+110000
            b"\xF5\x80\x80\x80",
            b"\xFF",
            b"\x80",
            b"\xC2\x41",
        ] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn reports_incomplete_code_point_at_end() {
        let mut v = Utf8Validator::new();
        assert!(v.feed(b"ab\xE2\x82").is_ok());
        assert!(!v.is_complete());
        assert!(v.feed(b"\xAC").is_ok());
        assert!(v.is_complete());
    }

    #[test]
    fn fails_fast_on_first_invalid_byte() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"0123456789abcdef\xCE\xBA\xE1"), Ok(()));
        // A continuation byte expected, a lead byte given: offset 0 of this chunk.
        assert_eq!(v.feed(b"\xF4"), Err(Utf8Error));
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"abcdefghijklmnop\xF4\x90"), Err(Utf8Error));
    }

    #[test]
    fn code_point_split_byte_by_byte() {
        let text = "a€𝄞κ".as_bytes();
        let cuts: Vec<usize> = (1..text.len()).collect();
        assert!(check_split(text, &cuts));
    }

    proptest! {
        #[test]
        fn agrees_with_std_under_any_split(
            bytes in prop::collection::vec(any::<u8>(), 0..64),
            cuts in prop::collection::vec(0usize..64, 0..6),
        ) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(check_split(&bytes, &cuts), std::str::from_utf8(&bytes).is_ok());
        }

        #[test]
        fn agrees_with_std_on_mostly_valid_text(
            s in "\\PC{0,40}",
            flip in any::<Option<(usize, u8)>>(),
            cuts in prop::collection::vec(0usize..200, 0..6),
        ) {
            let mut bytes = s.into_bytes();
            if let Some((at, byte)) = flip
                && !bytes.is_empty()
            {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(check_split(&bytes, &cuts), std::str::from_utf8(&bytes).is_ok());
        }
    }
}
