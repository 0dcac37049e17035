//! Line framing for the TCP chat port: `\n`-terminated lines, a trailing `\r`
//! tolerated, a maximum length enforced before anything is buffered past it.
//!
//! The decoder remembers how far it has already scanned the unfinished line,
//! so a long line arriving in many small reads is scanned once, not once per
//! read (the caller hands back the same unconsumed prefix plus the new bytes).

use std::fmt;

/// Incremental `\n` line splitter with a length limit.
#[derive(Debug, Clone)]
pub struct LineDecoder {
    max_line_bytes: usize,
    /// Bytes at the start of the pending input already known to hold no `\n`.
    scanned: usize,
}

/// Why a line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// The line (without its terminator) is longer than the limit.
    TooLong { max: usize },
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LineError::TooLong { max } => write!(f, "line longer than {max} bytes"),
        }
    }
}

impl std::error::Error for LineError {}

impl LineDecoder {
    /// A decoder refusing lines longer than `max_line_bytes` (terminator excluded).
    pub fn new(max_line_bytes: usize) -> Self {
        LineDecoder {
            max_line_bytes,
            scanned: 0,
        }
    }

    /// Tries to take one line from the start of `input`.
    ///
    /// `input` must begin where the previous call's consumed bytes ended (the
    /// caller keeps the unconsumed rest and appends new bytes to it).
    /// `Ok(None)`: no complete line yet, nothing consumed.
    /// `Ok(Some((n, line)))`: `line` (without `\n` or a trailing `\r`) used the first `n` bytes.
    /// `Err(TooLong)`: the pending line already exceeds `max_line_bytes`.
    pub fn decode<'a>(&mut self, input: &'a [u8]) -> Result<Option<(usize, &'a [u8])>, LineError> {
        let start = self.scanned.min(input.len());
        match input[start..].iter().position(|&b| b == b'\n') {
            Some(rel) => {
                let nl = start + rel;
                self.scanned = 0;
                let mut line = &input[..nl];
                if let [head @ .., b'\r'] = line {
                    line = head;
                }
                if line.len() > self.max_line_bytes {
                    return Err(LineError::TooLong {
                        max: self.max_line_bytes,
                    });
                }
                Ok(Some((nl + 1, line)))
            }
            None => {
                self.scanned = input.len();
                // Allow one extra byte for a `\r` that may precede the `\n`.
                if input.len() > self.max_line_bytes.saturating_add(1) {
                    return Err(LineError::TooLong {
                        max: self.max_line_bytes,
                    });
                }
                Ok(None)
            }
        }
    }

    /// Forgets the scan position (after the caller discarded its pending input).
    pub fn reset(&mut self) {
        self.scanned = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all_lines(dec: &mut LineDecoder, buf: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
        while let Ok(Some((n, line))) = dec.decode(buf) {
            out.push(line.to_vec());
            buf.drain(..n);
        }
    }

    #[test]
    fn decodes_many_lines_in_one_read() {
        let mut dec = LineDecoder::new(100);
        let mut buf = b"a\nbb\r\nccc\npartial".to_vec();
        let mut out = Vec::new();
        all_lines(&mut dec, &mut buf, &mut out);
        assert_eq!(out, vec![b"a".to_vec(), b"bb".to_vec(), b"ccc".to_vec()]);
        assert_eq!(buf, b"partial");
    }

    #[test]
    fn decodes_line_split_across_reads() {
        let mut dec = LineDecoder::new(100);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for &b in b"hello world\r\n" {
            buf.push(b);
            all_lines(&mut dec, &mut buf, &mut out);
        }
        assert_eq!(out, vec![b"hello world".to_vec()]);
        assert!(buf.is_empty());
    }

    #[test]
    fn keeps_lone_cr_inside_line() {
        let mut dec = LineDecoder::new(100);
        assert_eq!(dec.decode(b"a\rb\n"), Ok(Some((4, &b"a\rb"[..]))));
    }

    #[test]
    fn accepts_line_of_exactly_max_bytes_with_crlf() {
        let mut dec = LineDecoder::new(3);
        assert_eq!(dec.decode(b"abc\r"), Ok(None));
        assert_eq!(dec.decode(b"abc\r\n"), Ok(Some((5, &b"abc"[..]))));
    }

    #[test]
    fn rejects_oversized_line_before_its_end_arrives() {
        let mut dec = LineDecoder::new(4);
        assert_eq!(dec.decode(b"abcd"), Ok(None));
        assert_eq!(dec.decode(b"abcdef"), Err(LineError::TooLong { max: 4 }));
    }

    #[test]
    fn rejects_oversized_complete_line() {
        let mut dec = LineDecoder::new(2);
        assert_eq!(dec.decode(b"abc\n"), Err(LineError::TooLong { max: 2 }));
    }

    proptest! {
        #[test]
        fn any_split_decodes_the_same(
            lines in proptest::collection::vec("[^\n\r]{0,20}", 0..8),
            cuts in proptest::collection::vec(0usize..200, 0..10),
        ) {
            let mut stream = Vec::new();
            for l in &lines {
                stream.extend_from_slice(l.as_bytes());
                stream.push(b'\n');
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            cuts.push(stream.len());
            let mut dec = LineDecoder::new(1000);
            let mut buf = Vec::new();
            let mut out = Vec::new();
            let mut prev = 0;
            for c in cuts {
                buf.extend_from_slice(&stream[prev..c]);
                prev = c;
                all_lines(&mut dec, &mut buf, &mut out);
            }
            let expected: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
            prop_assert_eq!(out, expected);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn never_panics(input in proptest::collection::vec(any::<u8>(), 0..300), max in 0usize..50) {
            let mut dec = LineDecoder::new(max);
            let mut buf = input;
            while let Ok(Some((n, _))) = dec.decode(&buf) {
                buf.drain(..n);
            }
        }
    }
}
