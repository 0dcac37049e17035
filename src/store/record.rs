//! The record codec and the segment scanner: sans-I/O, bytes in and out.
//!
//! Owns the line format of the log: `CRC SP JSON LF`, where `CRC` is the
//! CRC-32 of the JSON bytes as 8 lowercase hex digits and JSON is one object
//! with short keys:
//!
//! ```text
//! {"r":room,"s":seq,"t":ts_ms,"k":"m","f":from,"x":text}     a message
//! {"r":room,"s":seq,"t":ts_ms,"k":"t","f":by,"x":topic}      a topic change
//! {"r":room,"s":seq,"k":"s"}                                  a seq mark
//! ```
//!
//! A *seq mark* is not a room event: it carries a room's last seq into a new
//! segment (see `disk.rs`), so that a room whose records all expire does not
//! start its seqs over after a restart.
//!
//! Strings go through `json::write_str`, which escapes every control
//! character, so a record never holds a raw LF and one line is one record.
//! Decoding ignores unknown keys (a later version may add some) and takes
//! the last of repeated keys, as `json::Value::get` does.
//!
//! The scanner walks a segment's bytes and yields each record with its byte
//! range. It stops at the first line that is not a good record and says
//! whether that line is the *torn tail* (the last line: no LF yet, or complete
//! but bad, which is what a crash in the middle of a write leaves) or a *bad
//! record in the middle* (good-looking lines follow it: real corruption).
//! Which of the two may be repaired silently is the caller's decision.
//!
//! Knows nothing about files, directories, rooms' rules or time.

use std::fmt;

use super::crc32::crc32;
use super::{Record, RecordKind};
use crate::proto::json::{self, JsonError, Value};

/// Longest line accepted or written, LF excluded: 1 MiB. Escaping can grow a
/// text up to six times (`\u0001`), so this leaves room for chat lines of
/// well over 100 KiB.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Deepest JSON nesting accepted in a record (the record object counts as 1).
pub const MAX_DEPTH: usize = 4;

/// Length of the checksum field plus its space.
const PREFIX_BYTES: usize = 9;

/// Why a line is not a good record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The line has no terminating LF (only ever the torn tail of a segment).
    Incomplete,
    /// The line is longer than [`MAX_LINE_BYTES`].
    TooLong {
        /// Line length in bytes, LF excluded.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The line does not start with 8 lowercase hex digits and a space.
    BadChecksumField,
    /// The stored checksum does not match the JSON bytes.
    ChecksumMismatch {
        /// The checksum written in the line.
        stored: u32,
        /// The checksum of the JSON bytes as found.
        computed: u32,
    },
    /// The JSON bytes are not UTF-8.
    NotUtf8,
    /// The JSON text does not parse.
    Json(JsonError),
    /// The JSON is not an object, or a required key is missing or has the
    /// wrong type (a string for `r f x k`, an unsigned integer for `s t`).
    BadField(&'static str),
    /// `k` is not `"m"`, `"t"` or `"s"` (or is `"s"` where a record was wanted).
    UnknownKind,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Incomplete => f.write_str("incomplete line (no LF)"),
            RecordError::TooLong { len, max } => {
                write!(f, "line of {len} bytes is over the {max}-byte limit")
            }
            RecordError::BadChecksumField => {
                f.write_str("line does not start with 8 lowercase hex digits and a space")
            }
            RecordError::ChecksumMismatch { stored, computed } => {
                write!(f, "checksum {stored:08x} stored, {computed:08x} computed")
            }
            RecordError::NotUtf8 => f.write_str("record is not UTF-8"),
            RecordError::Json(e) => write!(f, "record JSON: {e}"),
            RecordError::BadField(key) => write!(f, "record field {key:?} missing or mistyped"),
            RecordError::UnknownKind => f.write_str("unknown record kind"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Appends `record` to `out` as one line, LF included, and returns its length.
///
/// `Err(TooLong)` when the line would be longer than [`MAX_LINE_BYTES`] (LF
/// excluded); `out` is then left as it was, so nothing undecodable is ever
/// written.
pub fn encode(record: &Record, out: &mut Vec<u8>) -> Result<usize, RecordError> {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let json_start = out.len();
    let (kind, who, text) = match &record.kind {
        RecordKind::Message { from, text } => ("m", from, text),
        RecordKind::Topic { by, topic } => ("t", by, topic),
    };
    out.extend_from_slice(b"{\"r\":");
    json::write_str(out, &record.room);
    out.extend_from_slice(b",\"s\":");
    write_u64(out, record.seq);
    out.extend_from_slice(b",\"t\":");
    write_u64(out, record.ts_ms);
    out.extend_from_slice(b",\"k\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"f\":");
    json::write_str(out, who);
    out.extend_from_slice(b",\"x\":");
    json::write_str(out, text);
    out.push(b'}');
    finish_line(out, start, json_start)
}

/// Checks the length of the line begun at `start`, fills in the checksum of
/// the JSON from `json_start` and adds the LF; on `Err(TooLong)` removes the line.
fn finish_line(out: &mut Vec<u8>, start: usize, json_start: usize) -> Result<usize, RecordError> {
    let len = out.len().saturating_sub(start);
    if len > MAX_LINE_BYTES {
        out.truncate(start);
        return Err(RecordError::TooLong {
            len,
            max: MAX_LINE_BYTES,
        });
    }
    let crc = crc32(out.get(json_start..).unwrap_or_default());
    if let Some(field) = out.get_mut(start..json_start.saturating_sub(1)) {
        field.copy_from_slice(&hex8(crc));
    }
    out.push(b'\n');
    Ok(len + 1)
}

/// One line of the log: a room event, or a room's seq carried forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A room event.
    Record(Record),
    /// `room`'s last seq was `seq` when the segment holding this mark began.
    SeqMark {
        /// Room name.
        room: String,
        /// The room's last seq.
        seq: u64,
    },
}

/// Appends a seq mark line for `room` to `out` and returns its length.
/// `Err(TooLong)` as for [`encode`].
pub fn encode_seq_mark(room: &str, seq: u64, out: &mut Vec<u8>) -> Result<usize, RecordError> {
    let start = out.len();
    out.extend_from_slice(b"00000000 ");
    let json_start = out.len();
    out.extend_from_slice(b"{\"r\":");
    json::write_str(out, room);
    out.extend_from_slice(b",\"s\":");
    write_u64(out, seq);
    out.extend_from_slice(b",\"k\":\"s\"}");
    finish_line(out, start, json_start)
}

/// Decodes one record line (without its LF); a seq mark is
/// `Err(UnknownKind)` here (see [`decode_entry`]).
///
/// `Err` says what is wrong: over [`MAX_LINE_BYTES`], a malformed checksum
/// field, a checksum mismatch, or JSON that is not a record. Never panics.
pub fn decode(line: &[u8]) -> Result<Record, RecordError> {
    match decode_entry(line)? {
        Entry::Record(record) => Ok(record),
        Entry::SeqMark { .. } => Err(RecordError::UnknownKind),
    }
}

/// Decodes one line (without its LF): a record or a seq mark.
/// `Err` as for [`decode`]. Never panics.
pub fn decode_entry(line: &[u8]) -> Result<Entry, RecordError> {
    if line.len() > MAX_LINE_BYTES {
        return Err(RecordError::TooLong {
            len: line.len(),
            max: MAX_LINE_BYTES,
        });
    }
    let (Some(field), Some(b' '), Some(body)) = (
        line.get(..PREFIX_BYTES - 1),
        line.get(PREFIX_BYTES - 1).copied(),
        line.get(PREFIX_BYTES..),
    ) else {
        return Err(RecordError::BadChecksumField);
    };
    let stored = parse_hex8(field).ok_or(RecordError::BadChecksumField)?;
    let computed = crc32(body);
    if stored != computed {
        return Err(RecordError::ChecksumMismatch { stored, computed });
    }
    let text = std::str::from_utf8(body).map_err(|_| RecordError::NotUtf8)?;
    // A record is one flat object; a little nesting is allowed so that keys
    // a later version adds (ignored here) may hold arrays or objects.
    let value = json::parse(text, MAX_DEPTH).map_err(RecordError::Json)?;
    if !matches!(value, Value::Object(_)) {
        return Err(RecordError::BadField("{}"));
    }
    let room = string_field(&value, "r")?;
    let seq = u64_field(&value, "s")?;
    if value.get("k").and_then(Value::as_str) == Some("s") {
        return Ok(Entry::SeqMark { room, seq });
    }
    let ts_ms = u64_field(&value, "t")?;
    let who = string_field(&value, "f")?;
    let text = string_field(&value, "x")?;
    let kind = match value.get("k").and_then(Value::as_str) {
        Some("m") => RecordKind::Message { from: who, text },
        Some("t") => RecordKind::Topic {
            by: who,
            topic: text,
        },
        Some(_) => return Err(RecordError::UnknownKind),
        None => return Err(RecordError::BadField("k")),
    };
    Ok(Entry::Record(Record {
        room,
        seq,
        ts_ms,
        kind,
    }))
}

fn string_field(value: &Value, key: &'static str) -> Result<String, RecordError> {
    match value.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(RecordError::BadField(key)),
    }
}

/// An unsigned integer written in plain digits (no sign, fraction or exponent).
fn u64_field(value: &Value, key: &'static str) -> Result<u64, RecordError> {
    match value.get(key) {
        Some(Value::Number(n)) if n.bytes().all(|b| b.is_ascii_digit()) => {
            n.parse().map_err(|_| RecordError::BadField(key))
        }
        _ => Err(RecordError::BadField(key)),
    }
}

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

fn hex8(n: u32) -> [u8; 8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 8];
    for (i, slot) in out.iter_mut().enumerate() {
        let nibble = (n >> (28 - 4 * i)) & 0xf;
        *slot = DIGITS.get(nibble as usize).copied().unwrap_or(b'0');
    }
    out
}

/// Lowercase hex only: accepting `A-F` too would let a one-byte case change
/// of the checksum field go unnoticed.
fn parse_hex8(field: &[u8]) -> Option<u32> {
    if field.len() != 8 {
        return None;
    }
    let mut n = 0u32;
    for &b in field {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        n = (n << 4) | u32::from(digit);
    }
    Some(n)
}

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belonged to a good record.
    Clean,
    /// The last line is incomplete or bad; everything before `offset` is good.
    TornTail {
        /// Start of the torn line (absolute: `base` + position).
        offset: u64,
        /// What was wrong with it ([`RecordError::Incomplete`] if no LF).
        error: RecordError,
    },
    /// A complete line followed by more bytes is bad: corruption, not a crash.
    BadRecord {
        /// Start of the bad line (absolute).
        offset: u64,
        /// What was wrong with it.
        error: RecordError,
    },
}

impl ScanEnd {
    /// The offset where good bytes end, if the scan did not end clean.
    pub fn offset(&self) -> Option<u64> {
        match *self {
            ScanEnd::Clean => None,
            ScanEnd::TornTail { offset, .. } | ScanEnd::BadRecord { offset, .. } => Some(offset),
        }
    }
}

/// Walks `bytes`, which start at a line boundary at absolute offset `base`,
/// calling `visit(offset, end, entry)` for each good line in order
/// (`end` is just past its LF), and stops at the first line that is not one.
///
/// Never panics; one pass, each byte looked at a bounded number of times
/// (the LF search, then the checksum and JSON parse of its line).
pub fn scan(bytes: &[u8], base: u64, mut visit: impl FnMut(u64, u64, Entry)) -> ScanEnd {
    let mut pos = 0usize;
    while let Some(rest) = bytes.get(pos..).filter(|r| !r.is_empty()) {
        let offset = base.saturating_add(pos as u64);
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            return ScanEnd::TornTail {
                offset,
                error: RecordError::Incomplete,
            };
        };
        let line = rest.get(..nl).unwrap_or_default();
        let next = pos + nl + 1;
        match decode_entry(line) {
            Ok(entry) => visit(offset, base.saturating_add(next as u64), entry),
            Err(error) if next >= bytes.len() => return ScanEnd::TornTail { offset, error },
            Err(error) => return ScanEnd::BadRecord { offset, error },
        }
        pos = next;
    }
    ScanEnd::Clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn msg(room: &str, seq: u64, from: &str, text: &str) -> Record {
        Record {
            room: room.into(),
            seq,
            ts_ms: 1_700_000_000_000 + seq,
            kind: RecordKind::Message {
                from: from.into(),
                text: text.into(),
            },
        }
    }

    fn line_of(record: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        encode(record, &mut out).unwrap();
        out
    }

    fn scan_all(bytes: &[u8]) -> (Vec<(u64, u64, Record)>, ScanEnd) {
        let mut seen = Vec::new();
        let end = scan(bytes, 0, |o, e, entry| match entry {
            Entry::Record(r) => seen.push((o, e, r)),
            Entry::SeqMark { .. } => panic!("no marks written here"),
        });
        (seen, end)
    }

    #[test]
    fn encodes_the_documented_line() {
        let line = line_of(&Record {
            room: "lobby".into(),
            seq: 7,
            ts_ms: 1_700_000_000_000,
            kind: RecordKind::Message {
                from: "ann".into(),
                text: "hi".into(),
            },
        });
        let json = br#"{"r":"lobby","s":7,"t":1700000000000,"k":"m","f":"ann","x":"hi"}"#;
        let mut expected = format!("{:08x} ", crc32(json)).into_bytes();
        expected.extend_from_slice(json);
        expected.push(b'\n');
        assert_eq!(line, expected);
        assert_eq!(&line[..9], b"441fdcd1 ", "the example in mod.rs");
    }

    #[test]
    fn round_trips_topics_and_edge_numbers() {
        for rec in [
            Record {
                room: String::new(),
                seq: 0,
                ts_ms: 0,
                kind: RecordKind::Topic {
                    by: "op".into(),
                    topic: String::new(),
                },
            },
            Record {
                room: "r".into(),
                seq: u64::MAX,
                ts_ms: u64::MAX,
                kind: RecordKind::Topic {
                    by: "\u{0}\"\\".into(),
                    topic: "line\nbreak\r\u{2028}😀".into(),
                },
            },
        ] {
            let line = line_of(&rec);
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(decode(&line[..line.len() - 1]), Ok(rec));
        }
    }

    #[test]
    fn refuses_over_long_records_without_writing() {
        let mut out = b"kept".to_vec();
        let big = msg("r", 1, "a", &"\u{1}".repeat(MAX_LINE_BYTES / 6 + 1));
        assert!(matches!(
            encode(&big, &mut out),
            Err(RecordError::TooLong { .. })
        ));
        assert_eq!(out, b"kept");
        let just = msg("r", 1, "a", &"x".repeat(MAX_LINE_BYTES - 200));
        let n = encode(&just, &mut out).unwrap();
        assert!(n - 1 <= MAX_LINE_BYTES);
        assert_eq!(decode(&out[4..out.len() - 1]), Ok(just));
    }

    #[test]
    fn rejects_each_kind_of_bad_line() {
        let body = br#"{"r":"a","s":1,"t":2,"k":"m","f":"b","x":"c"}"#;
        let with_crc = |json: &[u8]| {
            let mut l = format!("{:08x} ", crc32(json)).into_bytes();
            l.extend_from_slice(json);
            l
        };
        assert!(decode(&with_crc(body)).is_ok());
        assert_eq!(decode(b""), Err(RecordError::BadChecksumField));
        assert_eq!(decode(b"1234567"), Err(RecordError::BadChecksumField));
        assert_eq!(decode(b"12345678"), Err(RecordError::BadChecksumField));
        let mut upper = with_crc(body);
        upper[..8].make_ascii_uppercase();
        if upper != with_crc(body) {
            assert_eq!(decode(&upper), Err(RecordError::BadChecksumField));
        }
        assert!(matches!(
            decode(&[b"00000000 ", &body[..]].concat()),
            Err(RecordError::ChecksumMismatch { .. })
        ));
        assert_eq!(decode(&with_crc(b"\xff")), Err(RecordError::NotUtf8));
        assert!(matches!(decode(&with_crc(b"{")), Err(RecordError::Json(_))));
        assert!(matches!(
            decode(&with_crc(br#"{"a":[[[[1]]]]}"#)),
            Err(RecordError::Json(JsonError::TooDeep { .. }))
        ));
        assert_eq!(decode(&with_crc(b"[]")), Err(RecordError::BadField("{}")));
        for (json, key) in [
            (&br#"{"s":1,"t":2,"k":"m","f":"b","x":"c"}"#[..], "r"),
            (br#"{"r":"a","s":-1,"t":2,"k":"m","f":"b","x":"c"}"#, "s"),
            (br#"{"r":"a","s":1.0,"t":2,"k":"m","f":"b","x":"c"}"#, "s"),
            (br#"{"r":"a","s":1,"t":1e3,"k":"m","f":"b","x":"c"}"#, "t"),
            (
                br#"{"r":"a","s":18446744073709551616,"t":2,"k":"m","f":"b","x":"c"}"#,
                "s",
            ),
            (br#"{"r":"a","s":1,"t":2,"k":"m","f":3,"x":"c"}"#, "f"),
            (br#"{"r":"a","s":1,"t":2,"k":"m","f":"b"}"#, "x"),
            (br#"{"r":"a","s":1,"t":2,"f":"b","x":"c"}"#, "k"),
        ] {
            assert_eq!(decode(&with_crc(json)), Err(RecordError::BadField(key)));
        }
        assert_eq!(
            decode(&with_crc(
                br#"{"r":"a","s":1,"t":2,"k":"z","f":"b","x":"c"}"#
            )),
            Err(RecordError::UnknownKind)
        );
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert!(matches!(decode(&long), Err(RecordError::TooLong { .. })));
    }

    #[test]
    fn accepts_unknown_keys_and_other_spellings() {
        let json = br#" { "x" : "c", "f":"b","k":"t","t":2,"s":1,"r":"\u0061","new":[] } "#;
        let mut line = format!("{:08x} ", crc32(json)).into_bytes();
        line.extend_from_slice(json);
        assert_eq!(
            decode(&line),
            Ok(Record {
                room: "a".into(),
                seq: 1,
                ts_ms: 2,
                kind: RecordKind::Topic {
                    by: "b".into(),
                    topic: "c".into()
                }
            })
        );
    }

    #[test]
    fn seq_marks_round_trip_and_are_not_records() {
        let mut out = Vec::new();
        let n = encode_seq_mark("lobby \"x\"", 42, &mut out).unwrap();
        assert_eq!(n, out.len());
        let line = &out[..n - 1];
        assert!(line.ends_with(br#","s":42,"k":"s"}"#));
        assert_eq!(
            decode_entry(line),
            Ok(Entry::SeqMark {
                room: "lobby \"x\"".into(),
                seq: 42
            })
        );
        assert_eq!(decode(line), Err(RecordError::UnknownKind));
        let rec = msg("a", 1, "b", "c");
        assert_eq!(
            decode_entry(&line_of(&rec)[..line_of(&rec).len() - 1]),
            Ok(Entry::Record(rec))
        );
        let mut out = Vec::new();
        assert!(encode_seq_mark(&"r".repeat(MAX_LINE_BYTES), 1, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn scans_records_with_their_byte_ranges() {
        let mut log = Vec::new();
        let a = msg("a", 1, "x", "one");
        let b = msg("b", 1, "y", "two\nlines");
        encode(&a, &mut log).unwrap();
        let split = log.len() as u64;
        encode(&b, &mut log).unwrap();
        let (seen, end) = scan_all(&log);
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(
            seen,
            vec![(0, split, a), (split, log.len() as u64, b.clone())]
        );
        // An absolute base shifts the offsets.
        let mut offsets = Vec::new();
        let end = scan(&log[split as usize..], 1000, |o, e, _| offsets.push((o, e)));
        assert_eq!(end, ScanEnd::Clean);
        assert_eq!(offsets, vec![(1000, 1000 + log.len() as u64 - split)]);
        assert_eq!(scan_all(b"").1, ScanEnd::Clean);
    }

    #[test]
    fn a_cut_anywhere_in_the_last_record_is_a_torn_tail() {
        let mut log = Vec::new();
        for seq in 1..=3 {
            encode(&msg("room", seq, "ann", "hello \"world\""), &mut log).unwrap();
        }
        let last_start = log.len() - line_of(&msg("room", 3, "ann", "hello \"world\"")).len();
        for cut in last_start + 1..log.len() {
            let (seen, end) = scan_all(&log[..cut]);
            assert_eq!(seen.len(), 2, "cut at {cut}");
            assert_eq!(end.offset(), Some(last_start as u64), "cut at {cut}");
            assert!(matches!(end, ScanEnd::TornTail { .. }), "cut at {cut}");
        }
    }

    #[test]
    fn a_bad_last_line_with_lf_is_torn_but_in_the_middle_is_bad() {
        let mut log = Vec::new();
        for seq in 1..=3 {
            encode(&msg("room", seq, "ann", "text"), &mut log).unwrap();
        }
        let second = line_of(&msg("room", 1, "ann", "text")).len();
        let third = log.len() - line_of(&msg("room", 3, "ann", "text")).len();
        let mut tail_bad = log.clone();
        tail_bad[third + 20] ^= 0x01;
        assert!(matches!(
            scan_all(&tail_bad).1,
            ScanEnd::TornTail { offset, error: RecordError::ChecksumMismatch { .. } }
                if offset == third as u64
        ));
        let mut middle_bad = log.clone();
        middle_bad[second + 20] ^= 0x01;
        let (seen, end) = scan_all(&middle_bad);
        assert_eq!(seen.len(), 1);
        assert!(matches!(
            end,
            ScanEnd::BadRecord { offset, .. } if offset == second as u64
        ));
    }

    fn tricky() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            proptest::collection::vec(
                proptest::sample::select(vec![
                    '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é', '\u{2028}',
                    '\u{fffd}', '😀', ' ', 'a', '{', '}',
                ]),
                0..32
            )
            .prop_map(|c| c.into_iter().collect()),
        ]
    }

    fn any_record() -> impl Strategy<Value = Record> {
        (
            tricky(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            tricky(),
            tricky(),
        )
            .prop_map(|(room, seq, ts_ms, topic, who, text)| Record {
                room,
                seq,
                ts_ms,
                kind: if topic {
                    RecordKind::Topic {
                        by: who,
                        topic: text,
                    }
                } else {
                    RecordKind::Message { from: who, text }
                },
            })
    }

    proptest! {
        #[test]
        fn round_trips_any_record(rec in any_record()) {
            let line = line_of(&rec);
            prop_assert_eq!(line.last(), Some(&b'\n'));
            prop_assert!(!line[..line.len() - 1].contains(&b'\n'));
            prop_assert_eq!(decode(&line[..line.len() - 1]), Ok(rec));
        }

        #[test]
        fn detects_any_single_byte_corruption(
            rec in any_record(),
            at in any::<proptest::sample::Index>(),
            delta in 1u8..=255,
        ) {
            let mut line = line_of(&rec);
            line.pop();
            let i = at.index(line.len());
            line[i] ^= delta;
            prop_assert!(decode(&line).is_err(), "byte {} changed and accepted", i);
        }

        #[test]
        fn corruption_inside_a_log_never_yields_a_wrong_record(
            recs in proptest::collection::vec(any_record(), 1..5),
            at in any::<proptest::sample::Index>(),
            delta in 1u8..=255,
        ) {
            let mut log = Vec::new();
            for r in &recs {
                encode(r, &mut log).unwrap();
            }
            let i = at.index(log.len());
            log[i] ^= delta;
            let (seen, end) = scan_all(&log);
            // Every yielded record is one that was written, in order, and
            // the scan does not end clean unless the byte became part of
            // nothing (impossible: every byte belongs to a record).
            for (k, (_, _, r)) in seen.iter().enumerate() {
                prop_assert_eq!(r, &recs[k]);
            }
            prop_assert!(seen.len() < recs.len());
            prop_assert_ne!(end, ScanEnd::Clean);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
            let mut last_end = 0;
            let end = scan(&bytes, 0, |o, e, _| {
                assert_eq!(o, last_end);
                last_end = e;
            });
            if let Some(o) = end.offset() {
                assert_eq!(o, last_end);
            }
        }
    }
}
