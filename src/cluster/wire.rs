//! What nodes tell each other through Redis, as bytes: the notes published on
//! a room channel, the payloads of room lines and topics (also kept in Redis),
//! private messages, and the value of a name claim. Sans-I/O, with limits;
//! decoding never panics and refuses anything it would not encode itself.
//!
//! Room channel notes (one space after the kind letter and between fields):
//!
//! ```text
//! m SEQ PAYLOAD     a room line numbered SEQ (written by the POST script)
//! t PAYLOAD         a topic change (written by the TOPIC script)
//! j NODE NAME       NAME entered the room on node NODE
//! l NODE NAME       NAME left the room on node NODE
//! ```
//!
//! `SEQ` is decimal, 1 to `u64::MAX`, without leading zeros. `NODE` is 1 to
//! [`MAX_NODE_BYTES`] of `A-Z a-z 0-9 _ -`. A name is 1 to
//! [`MAX_NAME_BYTES`] bytes of UTF-8 with no whitespace or control
//! character (the hub's names are at most 32 characters of up to 4 bytes).
//!
//! A line or topic `PAYLOAD` is one history record in the log's own format
//! (`store::record`, without the final LF) with seq 0: the POST script
//! assigns the real seq, which travels beside the payload and is put into
//! the record on receipt ([`decode_line`]). So the bytes in the room's stream
//! decode with `record::decode` as they are.
//!
//! A private message is `p FROM TEXT` (`FROM` a name, so the first space
//! after it ends it; `TEXT` any UTF-8, possibly empty). A claim value is
//! `NODE IDX GEN DISPLAY`: the node holding the name, the connection's slot
//! and generation there (decimal `u32`s), and the name as displayed.

use std::fmt;

use crate::hub::names::MAX_NAME_CHARS;
use crate::store::record::{self, MAX_LINE_BYTES, RecordError};
use crate::store::{Record, RecordKind};

/// Longest node id, in bytes.
pub const MAX_NODE_BYTES: usize = 32;

/// Longest name (user or display), in bytes: the hub's longest name in the
/// widest UTF-8.
pub const MAX_NAME_BYTES: usize = 4 * MAX_NAME_CHARS;

/// Longest line or topic payload: the log's longest record line.
pub const MAX_PAYLOAD_BYTES: usize = MAX_LINE_BYTES;

/// Longest private message text, in bytes.
pub const MAX_TEXT_BYTES: usize = MAX_LINE_BYTES;

/// Why bytes are not a good note, payload or claim (or why a value cannot
/// be encoded as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The kind letter is not one this version knows.
    UnknownKind,
    /// A part (named) is missing, or a separating space is.
    Missing(&'static str),
    /// A number (named) is not canonical decimal, is 0 where that is not
    /// allowed, or overflows.
    BadNumber(&'static str),
    /// The node id is empty or holds a byte outside `A-Z a-z 0-9 _ -`.
    BadNode,
    /// A name (named) is empty or holds whitespace or a control character.
    BadName(&'static str),
    /// A field (named) is longer than its limit.
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    /// A text field (named) is not UTF-8.
    NotUtf8(&'static str),
    /// The payload is not a good history record.
    Record(RecordError),
    /// The record is of the other kind (a topic where a line was wanted, or
    /// the reverse), or its seq is not the placeholder 0.
    WrongRecord,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::UnknownKind => f.write_str("unknown note kind"),
            WireError::Missing(part) => write!(f, "{part} missing"),
            WireError::BadNumber(part) => write!(f, "{part} is not a good number"),
            WireError::BadNode => f.write_str("bad node id"),
            WireError::BadName(part) => write!(f, "{part} is not a good name"),
            WireError::TooLong { field, len, max } => {
                write!(f, "{field} of {len} bytes is over the {max}-byte limit")
            }
            WireError::NotUtf8(part) => write!(f, "{part} is not UTF-8"),
            WireError::Record(e) => write!(f, "payload: {e}"),
            WireError::WrongRecord => f.write_str("payload is not the record wanted"),
        }
    }
}

impl std::error::Error for WireError {}

/// One note from a room channel, borrowing the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomNote<'a> {
    /// A room line: its seq and payload (see [`decode_line`]).
    Line { seq: u64, payload: &'a [u8] },
    /// A topic change: its payload (see [`decode_topic`]).
    Topic { payload: &'a [u8] },
    /// `name` entered the room on node `node`.
    Joined { name: &'a str, node: &'a str },
    /// `name` left the room on node `node`.
    Left { name: &'a str, node: &'a str },
}

/// Decodes one room channel message. Never panics.
pub fn decode_room_note(bytes: &[u8]) -> Result<RoomNote<'_>, WireError> {
    let (kind, rest) = kind_of(bytes)?;
    match kind {
        b'm' => {
            let (seq, payload) = split_space(rest, "seq", "payload")?;
            let seq = parse_u64(seq, "seq")?;
            if seq == 0 {
                return Err(WireError::BadNumber("seq"));
            }
            Ok(RoomNote::Line {
                seq,
                payload: check_payload(payload)?,
            })
        }
        b't' => Ok(RoomNote::Topic {
            payload: check_payload(rest)?,
        }),
        b'j' | b'l' => {
            let (node, name) = split_space(rest, "node", "name")?;
            let node = check_node(node)?;
            let name = check_name(name, "name")?;
            Ok(if kind == b'j' {
                RoomNote::Joined { name, node }
            } else {
                RoomNote::Left { name, node }
            })
        }
        _ => Err(WireError::UnknownKind),
    }
}

/// Appends `note` to `out` as [`decode_room_note`] reads it. `Err` (nothing
/// appended) for anything it would refuse.
pub fn encode_room_note(note: &RoomNote<'_>, out: &mut Vec<u8>) -> Result<(), WireError> {
    match *note {
        RoomNote::Line { seq, payload } => {
            if seq == 0 {
                return Err(WireError::BadNumber("seq"));
            }
            let payload = check_payload(payload)?;
            out.extend_from_slice(b"m ");
            out.extend_from_slice(seq.to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(payload);
        }
        RoomNote::Topic { payload } => {
            let payload = check_payload(payload)?;
            out.extend_from_slice(b"t ");
            out.extend_from_slice(payload);
        }
        RoomNote::Joined { name, node } => presence(b'j', node, name, out)?,
        RoomNote::Left { name, node } => presence(b'l', node, name, out)?,
    }
    Ok(())
}

/// Appends `j NODE NAME`: `name` entered the room on `node`.
pub fn encode_joined(node: &str, name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    presence(b'j', node, name, out)
}

/// Appends `l NODE NAME`: `name` left the room on `node`.
pub fn encode_left(node: &str, name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    presence(b'l', node, name, out)
}

fn presence(kind: u8, node: &str, name: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    check_node(node.as_bytes())?;
    check_name(name.as_bytes(), "name")?;
    out.extend_from_slice(&[kind, b' ']);
    out.extend_from_slice(node.as_bytes());
    out.push(b' ');
    out.extend_from_slice(name.as_bytes());
    Ok(())
}

/// Appends the payload of a room line (a message record with seq 0) to
/// `out` and returns its length. `Err` (nothing appended) when the record
/// would be over the log's line limit.
pub fn encode_line(
    room: &str,
    ts_ms: u64,
    from: &str,
    text: &str,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let kind = RecordKind::Message {
        from: from.to_owned(),
        text: text.to_owned(),
    };
    encode_record(room, ts_ms, kind, out)
}

/// The record a room line stands for: the payload decoded, `seq` put in.
/// `Err` when `seq` is 0, the payload is not a good record, is a topic, or
/// does not carry the placeholder seq 0.
pub fn decode_line(seq: u64, payload: &[u8]) -> Result<Record, WireError> {
    if seq == 0 {
        return Err(WireError::BadNumber("seq"));
    }
    let mut rec = decode_record(payload)?;
    if !matches!(rec.kind, RecordKind::Message { .. }) {
        return Err(WireError::WrongRecord);
    }
    rec.seq = seq;
    Ok(rec)
}

/// Appends the payload of a topic change (a topic record with seq 0) to
/// `out` and returns its length. `Err` as for [`encode_line`].
pub fn encode_topic(
    room: &str,
    ts_ms: u64,
    by: &str,
    topic: &str,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let kind = RecordKind::Topic {
        by: by.to_owned(),
        topic: topic.to_owned(),
    };
    encode_record(room, ts_ms, kind, out)
}

/// The topic record a payload holds (seq 0: topics are not numbered).
/// `Err` as for [`decode_line`], with the kinds swapped.
pub fn decode_topic(payload: &[u8]) -> Result<Record, WireError> {
    let rec = decode_record(payload)?;
    if !matches!(rec.kind, RecordKind::Topic { .. }) {
        return Err(WireError::WrongRecord);
    }
    Ok(rec)
}

fn encode_record(
    room: &str,
    ts_ms: u64,
    kind: RecordKind,
    out: &mut Vec<u8>,
) -> Result<usize, WireError> {
    let rec = Record {
        room: room.to_owned(),
        seq: 0,
        ts_ms,
        kind,
    };
    let n = record::encode(&rec, out).map_err(WireError::Record)?;
    // The log's LF ends a line in a file; a payload has its own length.
    out.pop();
    Ok(n.saturating_sub(1))
}

fn decode_record(payload: &[u8]) -> Result<Record, WireError> {
    let rec = record::decode(check_payload(payload)?).map_err(WireError::Record)?;
    if rec.seq != 0 {
        return Err(WireError::WrongRecord);
    }
    Ok(rec)
}

/// Appends a private message payload, `p FROM TEXT`. `Err` (nothing
/// appended) when `from` is not a name or `text` is over [`MAX_TEXT_BYTES`].
pub fn encode_private(from: &str, text: &str, out: &mut Vec<u8>) -> Result<(), WireError> {
    check_name(from.as_bytes(), "from")?;
    check_len(text.len(), "text", MAX_TEXT_BYTES)?;
    out.extend_from_slice(b"p ");
    out.extend_from_slice(from.as_bytes());
    out.push(b' ');
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// The sender and text of a private message payload. Never panics.
pub fn decode_private(bytes: &[u8]) -> Result<(&str, &str), WireError> {
    let (kind, rest) = kind_of(bytes)?;
    if kind != b'p' {
        return Err(WireError::UnknownKind);
    }
    let (from, text) = split_space(rest, "from", "text")?;
    let from = check_name(from, "from")?;
    check_len(text.len(), "text", MAX_TEXT_BYTES)?;
    let text = std::str::from_utf8(text).map_err(|_| WireError::NotUtf8("text"))?;
    Ok((from, text))
}

/// A name claim's value, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    /// The node the user is connected to.
    pub node: &'a str,
    /// The connection there (slot, generation).
    pub conn: (u32, u32),
    /// The name as the user spelled it.
    pub display: &'a str,
}

/// The value of a name claim: `NODE IDX GEN DISPLAY`. `Err` when `node` is
/// not a node id or `display` not a name.
pub fn encode_claim(node: &str, conn: (u32, u32), display: &str) -> Result<Vec<u8>, WireError> {
    check_node(node.as_bytes())?;
    check_name(display.as_bytes(), "display")?;
    let (idx, generation) = (conn.0.to_string(), conn.1.to_string());
    let mut out = Vec::with_capacity(node.len() + idx.len() + generation.len() + display.len() + 3);
    for (i, part) in [node, idx.as_str(), generation.as_str(), display]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            out.push(b' ');
        }
        out.extend_from_slice(part.as_bytes());
    }
    Ok(out)
}

/// Decodes a name claim's value. Never panics.
pub fn decode_claim(bytes: &[u8]) -> Result<Claim<'_>, WireError> {
    let (node, rest) = split_space(bytes, "node", "conn")?;
    let (idx, rest) = split_space(rest, "conn", "generation")?;
    let (generation, display) = split_space(rest, "generation", "display")?;
    Ok(Claim {
        node: check_node(node)?,
        conn: (
            parse_u32(idx, "conn")?,
            parse_u32(generation, "generation")?,
        ),
        display: check_name(display, "display")?,
    })
}

/// The kind letter and what follows its space.
fn kind_of(bytes: &[u8]) -> Result<(u8, &[u8]), WireError> {
    match bytes {
        [] => Err(WireError::Missing("kind")),
        [kind, b' ', rest @ ..] => Ok((*kind, rest)),
        [b'm' | b't' | b'j' | b'l' | b'p'] => Err(WireError::Missing("body")),
        _ => Err(WireError::UnknownKind),
    }
}

/// `bytes` split at its first space; the first part must not be empty.
fn split_space<'a>(
    bytes: &'a [u8],
    first: &'static str,
    second: &'static str,
) -> Result<(&'a [u8], &'a [u8]), WireError> {
    let at = bytes.iter().position(|&b| b == b' ');
    match at {
        Some(0) => Err(WireError::Missing(first)),
        Some(at) => Ok((
            bytes.get(..at).unwrap_or_default(),
            bytes.get(at + 1..).unwrap_or_default(),
        )),
        None if bytes.is_empty() => Err(WireError::Missing(first)),
        None => Err(WireError::Missing(second)),
    }
}

fn check_len(len: usize, field: &'static str, max: usize) -> Result<(), WireError> {
    if len > max {
        return Err(WireError::TooLong { field, len, max });
    }
    Ok(())
}

fn check_payload(payload: &[u8]) -> Result<&[u8], WireError> {
    if payload.is_empty() {
        return Err(WireError::Missing("payload"));
    }
    check_len(payload.len(), "payload", MAX_PAYLOAD_BYTES)?;
    Ok(payload)
}

fn check_node(node: &[u8]) -> Result<&str, WireError> {
    check_len(node.len(), "node", MAX_NODE_BYTES)?;
    if node.is_empty()
        || !node
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(WireError::BadNode);
    }
    std::str::from_utf8(node).map_err(|_| WireError::BadNode)
}

fn check_name<'a>(name: &'a [u8], field: &'static str) -> Result<&'a str, WireError> {
    check_len(name.len(), field, MAX_NAME_BYTES)?;
    let name = std::str::from_utf8(name).map_err(|_| WireError::NotUtf8(field))?;
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(WireError::BadName(field));
    }
    Ok(name)
}

/// Canonical decimal: digits only, no leading zero (except `0` itself).
fn parse_u64(digits: &[u8], field: &'static str) -> Result<u64, WireError> {
    let canonical = match digits {
        [] => false,
        [b'0'] => true,
        [first, ..] => *first != b'0' && digits.iter().all(u8::is_ascii_digit),
    };
    if !canonical {
        return Err(WireError::BadNumber(field));
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(WireError::BadNumber(field))?;
    }
    Ok(n)
}

fn parse_u32(digits: &[u8], field: &'static str) -> Result<u32, WireError> {
    u32::try_from(parse_u64(digits, field)?).map_err(|_| WireError::BadNumber(field))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn note(bytes: &[u8]) -> Result<RoomNote<'_>, WireError> {
        decode_room_note(bytes)
    }

    #[test]
    fn decodes_each_kind_of_note() {
        assert_eq!(
            note(b"m 42 a b\r\n\0"),
            Ok(RoomNote::Line {
                seq: 42,
                payload: b"a b\r\n\0"
            })
        );
        assert_eq!(note(b"t x y"), Ok(RoomNote::Topic { payload: b"x y" }));
        assert_eq!(
            note(b"j node-1 Ann"),
            Ok(RoomNote::Joined {
                name: "Ann",
                node: "node-1"
            })
        );
        assert_eq!(
            note("l N_2 Zoë😀".as_bytes()),
            Ok(RoomNote::Left {
                name: "Zoë😀",
                node: "N_2"
            })
        );
        assert_eq!(
            note(b"m 18446744073709551615 p"),
            Ok(RoomNote::Line {
                seq: u64::MAX,
                payload: b"p"
            })
        );
    }

    #[test]
    fn refuses_each_kind_of_bad_note() {
        let long_name = "x".repeat(MAX_NAME_BYTES + 1);
        let long_node = "n".repeat(MAX_NODE_BYTES + 1);
        let table: &[(&[u8], WireError)] = &[
            (b"", WireError::Missing("kind")),
            (b"m", WireError::Missing("body")),
            (b"x 1 p", WireError::UnknownKind),
            (b"M 1 p", WireError::UnknownKind),
            (b"mm 1 p", WireError::UnknownKind),
            (b"p a b", WireError::UnknownKind),
            (b"m ", WireError::Missing("seq")),
            (b"m 1", WireError::Missing("payload")),
            (b"m 1 ", WireError::Missing("payload")),
            (b"m  p", WireError::Missing("seq")),
            (b"m 0 p", WireError::BadNumber("seq")),
            (b"m 01 p", WireError::BadNumber("seq")),
            (b"m +1 p", WireError::BadNumber("seq")),
            (b"m -1 p", WireError::BadNumber("seq")),
            (b"m 1x p", WireError::BadNumber("seq")),
            (b"m 18446744073709551616 p", WireError::BadNumber("seq")),
            (b"m 99999999999999999999999 p", WireError::BadNumber("seq")),
            (b"t ", WireError::Missing("payload")),
            (b"j ", WireError::Missing("node")),
            (b"j node", WireError::Missing("name")),
            (b"j node ", WireError::BadName("name")),
            (b"j no.de Ann", WireError::BadNode),
            (b"j n Ann Bee", WireError::BadName("name")),
            (b"j n A\tB", WireError::BadName("name")),
            (b"j n A\x07", WireError::BadName("name")),
            (b"l n \xff", WireError::NotUtf8("name")),
            ("l n A\u{3000}B".as_bytes(), WireError::BadName("name")),
        ];
        for (bytes, want) in table {
            assert_eq!(
                note(bytes),
                Err(*want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert!(matches!(
            note(format!("j n {long_name}").as_bytes()),
            Err(WireError::TooLong { field: "name", .. })
        ));
        assert!(matches!(
            note(format!("j {long_node} a").as_bytes()),
            Err(WireError::TooLong { field: "node", .. })
        ));
        let mut big = b"t ".to_vec();
        big.resize(2 + MAX_PAYLOAD_BYTES + 1, b'x');
        assert!(matches!(
            note(&big),
            Err(WireError::TooLong {
                field: "payload",
                ..
            })
        ));
        assert_eq!(
            note(&big[..2 + MAX_PAYLOAD_BYTES]),
            Ok(RoomNote::Topic {
                payload: &big[2..2 + MAX_PAYLOAD_BYTES]
            })
        );
    }

    #[test]
    fn presence_encoders_write_the_documented_notes_and_refuse_bad_fields() {
        let mut out = Vec::new();
        encode_joined("n1", "Ann", &mut out).expect("good");
        assert_eq!(out, b"j n1 Ann");
        out.clear();
        encode_left("n1", "Ann", &mut out).expect("good");
        assert_eq!(out, b"l n1 Ann");
        out.clear();
        assert_eq!(
            encode_joined("n 1", "Ann", &mut out),
            Err(WireError::BadNode)
        );
        assert_eq!(
            encode_left("n1", "A nn", &mut out),
            Err(WireError::BadName("name"))
        );
        assert_eq!(encode_left("", "Ann", &mut out), Err(WireError::BadNode));
        assert!(out.is_empty(), "nothing written on refusal");
        let mut line = Vec::new();
        encode_room_note(
            &RoomNote::Line {
                seq: 7,
                payload: b"x",
            },
            &mut line,
        )
        .expect("good");
        assert_eq!(line, b"m 7 x");
        assert_eq!(
            encode_room_note(
                &RoomNote::Line {
                    seq: 0,
                    payload: b"x"
                },
                &mut out
            ),
            Err(WireError::BadNumber("seq"))
        );
        assert_eq!(
            encode_room_note(&RoomNote::Topic { payload: b"" }, &mut out),
            Err(WireError::Missing("payload"))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn line_and_topic_payloads_are_log_records_with_seq_0() {
        let mut out = b"kept".to_vec();
        let n = encode_line("#lobby", 1_700_000_000_000, "Ann", "hi\nthere", &mut out)
            .expect("encodes");
        let payload = &out[4..];
        assert_eq!(n, payload.len());
        assert!(!payload.contains(&b'\n'));
        let rec = record::decode(payload).expect("the log's own format");
        assert_eq!(rec.seq, 0);
        let got = decode_line(9, payload).expect("decodes");
        assert_eq!(
            got,
            Record {
                room: "#lobby".into(),
                seq: 9,
                ts_ms: 1_700_000_000_000,
                kind: RecordKind::Message {
                    from: "Ann".into(),
                    text: "hi\nthere".into()
                }
            }
        );
        assert_eq!(decode_line(0, payload), Err(WireError::BadNumber("seq")));
        assert_eq!(decode_topic(payload), Err(WireError::WrongRecord));

        let mut topic = Vec::new();
        encode_topic("#lobby", 5, "Bob", "news", &mut topic).expect("encodes");
        let got = decode_topic(&topic).expect("decodes");
        assert_eq!(got.seq, 0);
        assert_eq!(
            got.kind,
            RecordKind::Topic {
                by: "Bob".into(),
                topic: "news".into()
            }
        );
        assert_eq!(decode_line(1, &topic), Err(WireError::WrongRecord));

        // A record with a real seq is not a payload.
        let mut numbered = Vec::new();
        record::encode(&Record { seq: 3, ..got }, &mut numbered).expect("encodes");
        numbered.pop();
        assert_eq!(decode_topic(&numbered), Err(WireError::WrongRecord));
        assert!(matches!(
            decode_line(1, b"00000000 {}"),
            Err(WireError::Record(_))
        ));
        assert_eq!(decode_line(1, b""), Err(WireError::Missing("payload")));

        let mut out = b"kept".to_vec();
        let huge = "x".repeat(MAX_LINE_BYTES);
        assert!(matches!(
            encode_line("#r", 0, "a", &huge, &mut out),
            Err(WireError::Record(RecordError::TooLong { .. }))
        ));
        assert_eq!(out, b"kept");
    }

    #[test]
    fn private_payloads_and_claims() {
        let mut out = Vec::new();
        encode_private("Ann", "hi there \r\n", &mut out).expect("good");
        assert_eq!(out, b"p Ann hi there \r\n");
        assert_eq!(decode_private(&out), Ok(("Ann", "hi there \r\n")));
        assert_eq!(decode_private(b"p Ann "), Ok(("Ann", "")));
        assert_eq!(decode_private(b"p Ann"), Err(WireError::Missing("text")));
        assert_eq!(decode_private(b"p  x"), Err(WireError::Missing("from")));
        assert_eq!(decode_private(b"m Ann x"), Err(WireError::UnknownKind));
        assert_eq!(
            decode_private(b"p Ann \xff"),
            Err(WireError::NotUtf8("text"))
        );
        assert_eq!(
            encode_private("A b", "x", &mut Vec::new()),
            Err(WireError::BadName("from"))
        );

        let claim = encode_claim("node-1", (3, 4_000_000_000), "Zoë").expect("good");
        assert_eq!(claim, "node-1 3 4000000000 Zoë".as_bytes());
        assert_eq!(
            decode_claim(&claim),
            Ok(Claim {
                node: "node-1",
                conn: (3, 4_000_000_000),
                display: "Zoë"
            })
        );
        for (bad, want) in [
            (&b""[..], WireError::Missing("node")),
            (b"n", WireError::Missing("conn")),
            (b"n 1", WireError::Missing("generation")),
            (b"n 1 2", WireError::Missing("display")),
            (b"n 1 2 ", WireError::BadName("display")),
            (b"n 1 2 a b", WireError::BadName("display")),
            (b"n 01 2 a", WireError::BadNumber("conn")),
            (b"n 1 4294967296 a", WireError::BadNumber("generation")),
            (b"n! 1 2 a", WireError::BadNode),
        ] {
            assert_eq!(decode_claim(bad), Err(want), "{bad:?}");
        }
        assert_eq!(
            decode_claim(b"n 0 0 a").map(|c| c.conn),
            Ok((0, 0)),
            "0 is a slot and a generation"
        );
        assert_eq!(
            encode_claim("n", (0, 0), "a b"),
            Err(WireError::BadName("display"))
        );
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[A-Za-z0-9_é😀]{1,32}",
            proptest::collection::vec(
                any::<char>().prop_filter("a name char", |c| !c.is_whitespace() && !c.is_control()),
                1..=32
            )
            .prop_map(|c| c.into_iter().collect()),
        ]
    }

    fn node() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,32}"
    }

    fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..max),
            proptest::collection::vec(
                proptest::sample::select(vec![b' ', b'\r', b'\n', 0, b'm', b'1', 0xff]),
                0..max
            ),
        ]
    }

    proptest! {
        #[test]
        fn room_notes_round_trip(
            kind in 0u8..4,
            seq in 1u64..,
            payload in bytes(64).prop_filter("not empty", |p| !p.is_empty()),
            node in node(),
            name in name(),
        ) {
            let note = match kind {
                0 => RoomNote::Line { seq, payload: &payload },
                1 => RoomNote::Topic { payload: &payload },
                2 => RoomNote::Joined { name: &name, node: &node },
                _ => RoomNote::Left { name: &name, node: &node },
            };
            let mut out = Vec::new();
            encode_room_note(&note, &mut out).expect("a good note encodes");
            prop_assert_eq!(decode_room_note(&out), Ok(note));
            let mut presence = Vec::new();
            encode_joined(&node, &name, &mut presence).expect("good");
            prop_assert_eq!(
                decode_room_note(&presence),
                Ok(RoomNote::Joined { name: &name, node: &node })
            );
            presence.clear();
            encode_left(&node, &name, &mut presence).expect("good");
            prop_assert_eq!(
                decode_room_note(&presence),
                Ok(RoomNote::Left { name: &name, node: &node })
            );
        }

        #[test]
        fn lines_and_topics_round_trip(
            room in any::<String>(),
            ts_ms in any::<u64>(),
            who in any::<String>(),
            text in any::<String>(),
            seq in 1u64..,
        ) {
            let mut out = Vec::new();
            encode_line(&room, ts_ms, &who, &text, &mut out).expect("encodes");
            let mut note = Vec::new();
            encode_room_note(&RoomNote::Line { seq, payload: &out }, &mut note).expect("good");
            let Ok(RoomNote::Line { seq: got, payload }) = decode_room_note(&note) else {
                panic!("not a line note");
            };
            prop_assert_eq!(got, seq);
            prop_assert_eq!(
                decode_line(got, payload),
                Ok(Record {
                    room: room.clone(),
                    seq,
                    ts_ms,
                    kind: RecordKind::Message { from: who.clone(), text: text.clone() }
                })
            );
            let mut out = Vec::new();
            encode_topic(&room, ts_ms, &who, &text, &mut out).expect("encodes");
            prop_assert_eq!(
                decode_topic(&out),
                Ok(Record {
                    room,
                    seq: 0,
                    ts_ms,
                    kind: RecordKind::Topic { by: who, topic: text }
                })
            );
        }

        #[test]
        fn privates_and_claims_round_trip(
            from in name(),
            text in any::<String>(),
            node in node(),
            conn in any::<(u32, u32)>(),
        ) {
            let mut out = Vec::new();
            encode_private(&from, &text, &mut out).expect("good");
            prop_assert_eq!(decode_private(&out), Ok((from.as_str(), text.as_str())));
            let claim = encode_claim(&node, conn, &from).expect("good");
            prop_assert_eq!(
                decode_claim(&claim),
                Ok(Claim { node: &node, conn, display: &from })
            );
        }

        #[test]
        fn decoders_never_panic_and_accept_only_what_they_would_write(
            input in bytes(256),
            seq in any::<u64>(),
        ) {
            if let Ok(note) = decode_room_note(&input) {
                let mut again = Vec::new();
                encode_room_note(&note, &mut again).expect("re-encodes");
                prop_assert_eq!(&again, &input);
            }
            if let Ok((from, text)) = decode_private(&input) {
                let mut again = Vec::new();
                encode_private(from, text, &mut again).expect("re-encodes");
                prop_assert_eq!(&again, &input);
            }
            if let Ok(c) = decode_claim(&input) {
                prop_assert_eq!(encode_claim(c.node, c.conn, c.display), Ok(input.clone()));
            }
            let _ = decode_line(seq, &input);
            let _ = decode_topic(&input);
        }
    }
}
