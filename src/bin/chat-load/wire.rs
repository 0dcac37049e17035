//! Bytes on the wire for the load clients: requests for each client kind, the
//! minimal WebSocket client side (handshake, masked frames out, unmasked frames
//! in), and the cheap scanners of the receive path.
//!
//! The receive path never parses JSON: a delivery is found by its marker
//! (`"L ` in a JSON object, `: L ` or `] L ` in a text line), the three numbers
//! of the load text `L <sender> <seq> <send_nanos>` are read straight from the
//! bytes, and its [`Kind`] (broadcast, private, private confirmation) comes
//! from a fixed prefix of the line.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use std::io::Write as _;

/// How a load client speaks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Json,
    Text,
    Ws,
}

impl Wire {
    /// Whether a server line or message is an error: `!!! ` in text mode, an
    /// `error` object otherwise.
    pub fn is_error(self, msg: &[u8]) -> bool {
        match self {
            Wire::Text => find(msg, b"!!! ").is_some(),
            Wire::Json | Wire::Ws => find(msg, b"\"error\"").is_some(),
        }
    }
}

/// What a join asks for besides the name (JSON kinds; text mode always gets
/// notices and always has rooms).
#[derive(Debug, Clone, Copy, Default)]
pub struct Features {
    /// Presence deltas instead of full user lists.
    pub presence: bool,
    /// The rooms form (`room_join`, messages naming their room).
    pub rooms: bool,
}

/// Appends the join request.
pub fn encode_join(wire: Wire, name: &str, features: Features, out: &mut Vec<u8>, mask: [u8; 4]) {
    match wire {
        Wire::Text => {
            out.extend_from_slice(name.as_bytes());
            out.push(b'\n');
        }
        Wire::Json | Wire::Ws => {
            let mut obj = Vec::with_capacity(64);
            let _ = write!(obj, r#"{{"type":"join","sender":"{name}""#);
            match (features.presence, features.rooms) {
                (true, true) => obj.extend_from_slice(br#","features":["presence","rooms"]"#),
                (true, false) => obj.extend_from_slice(br#","features":["presence"]"#),
                (false, true) => obj.extend_from_slice(br#","features":["rooms"]"#),
                (false, false) => {}
            }
            obj.push(b'}');
            finish_json(wire, &obj, out, mask);
        }
    }
}

/// Appends a request to join `room`: `room_join`, or `/join` in text mode.
pub fn encode_room_join(wire: Wire, room: &str, out: &mut Vec<u8>, mask: [u8; 4]) {
    match wire {
        Wire::Text => {
            let _ = writeln!(out, "/join {room}");
        }
        Wire::Json | Wire::Ws => {
            let obj = format!(r#"{{"type":"room_join","room":"{room}"}}"#);
            finish_json(wire, obj.as_bytes(), out, mask);
        }
    }
}

/// Where a room join stands after one server line or message for `room`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomStep {
    /// Not about the join.
    Other,
    /// `room_joined` for the room (JSON kinds: the replay follows).
    Joined,
    /// The room's `history` replay (JSON kinds), or text mode's `You are in`
    /// line (text mode prints the replay right after, before any later line).
    Ready,
}

/// Classifies a server line or message while joining `room`.
pub fn room_step(wire: Wire, line: &[u8], room: &str) -> RoomStep {
    match wire {
        Wire::Text => {
            let after = find(line, b"] ").and_then(|p| line.get(p + 2..));
            let ok = after.is_some_and(|a| {
                a.strip_prefix(b"*** You are in ".as_slice())
                    .and_then(|a| a.strip_prefix(room.as_bytes()))
                    .is_some_and(|a| a.starts_with(b" ("))
            });
            if ok { RoomStep::Ready } else { RoomStep::Other }
        }
        Wire::Json | Wire::Ws => {
            let Some(rest) = line.strip_prefix(br#"{"type":""#) else {
                return RoomStep::Other;
            };
            let (step, rest) = if let Some(r) = rest.strip_prefix(br#"room_joined","room":""#) {
                (RoomStep::Joined, r)
            } else if let Some(r) = rest.strip_prefix(br#"history","room":""#) {
                (RoomStep::Ready, r)
            } else {
                return RoomStep::Other;
            };
            let named = rest
                .strip_prefix(room.as_bytes())
                .is_some_and(|r| r.starts_with(b"\""));
            if named { step } else { RoomStep::Other }
        }
    }
}

/// Whether a server line or message is a replay (a `history` object, or a
/// text line marked `(history)`), whose load text is not a delivery.
#[inline]
pub fn is_history(wire: Wire, line: &[u8]) -> bool {
    match wire {
        Wire::Text => find(line, b"] (history) ").is_some(),
        Wire::Json | Wire::Ws => line.starts_with(br#"{"type":"history""#),
    }
}

/// The room a delivery names: the `"room"` value in JSON kinds, the room
/// before the time in a text line (`[#load3 12:00:01] ...`). `None` when it
/// names none (text mode shows no room for `#lobby`).
pub fn line_room(wire: Wire, line: &[u8]) -> Option<&[u8]> {
    match wire {
        Wire::Text => {
            let rest = line.strip_prefix(b"[#")?;
            let end = find_byte(b' ', rest)?;
            line.get(1..end + 2)
        }
        Wire::Json | Wire::Ws => {
            const KEY: &[u8] = br#","room":""#;
            let start = find(line, KEY)? + KEY.len();
            let rest = line.get(start..)?;
            rest.get(..find_byte(b'"', rest)?)
        }
    }
}

/// Appends the protocol's voluntary leave: `/quit` in text mode, `exit` otherwise.
pub fn encode_exit(wire: Wire, name: &str, out: &mut Vec<u8>, mask: [u8; 4]) {
    match wire {
        Wire::Text => out.extend_from_slice(b"/quit\n"),
        Wire::Json | Wire::Ws => {
            let obj = format!(r#"{{"type":"exit","sender":"{name}"}}"#);
            finish_json(wire, obj.as_bytes(), out, mask);
        }
    }
}

/// The load text of one message: `L <sender> <seq> <send_nanos>`, padded to
/// `pad_to` bytes when shorter (0: no padding).
#[derive(Debug, Clone, Copy)]
pub struct LoadText {
    pub sender: usize,
    pub seq: u32,
    pub nanos: u64,
    pub pad_to: usize,
}

impl LoadText {
    #[cfg(test)]
    pub fn plain(sender: usize, seq: u32, nanos: u64) -> LoadText {
        LoadText {
            sender,
            seq,
            nanos,
            pad_to: 0,
        }
    }
}

/// Appends one chat message carrying `L <sender> <seq> <send_nanos>`; with a
/// target, the private form `@TARGET L ...` (the same text in every wire).
/// `room`: the room a broadcast goes to (JSON kinds name it; text mode's
/// plain lines go to the room joined last).
pub fn encode_message(
    wire: Wire,
    name: &str,
    to: Option<&str>,
    room: Option<&str>,
    load: LoadText,
    out: &mut Vec<u8>,
    mask: [u8; 4],
) {
    let LoadText {
        sender,
        seq,
        nanos,
        pad_to,
    } = load;
    let (at, to) = match to {
        Some(t) => ("@", t),
        None => ("", ""),
    };
    let sp = if at.is_empty() { "" } else { " " };
    // The text, padded with a space and dots up to `pad_to` bytes (the load
    // numbers end at the first non-digit).
    let mut text = [0u8; crate::opts::MAX_MESSAGE_BYTES + 96];
    let mut cur = std::io::Cursor::new(&mut text[..]);
    let _ = write!(cur, "{at}{to}{sp}L {sender} {seq} {nanos}");
    let len = cur.position() as usize;
    let gap = pad_to.saturating_sub(len);
    for k in 0..gap {
        let _ = cur.write_all(if k == 0 && gap > 1 { b" " } else { b"." });
    }
    let end = cur.position() as usize;
    let text = text.get(..end).unwrap_or_default();
    match wire {
        Wire::Text => {
            out.extend_from_slice(text);
            out.push(b'\n');
        }
        Wire::Json => {
            message_object(name, text, room.filter(|_| at.is_empty()), out);
            out.push(b'\n');
        }
        Wire::Ws => {
            let mut obj = Vec::with_capacity(text.len() + 96);
            message_object(name, text, room.filter(|_| at.is_empty()), &mut obj);
            encode_frame(OPCODE_TEXT, &obj, mask, out);
        }
    }
}

/// Appends the JSON `message` request carrying `text` (already JSON-safe).
fn message_object(name: &str, text: &[u8], room: Option<&str>, out: &mut Vec<u8>) {
    let _ = write!(out, r#"{{"type":"message","sender":"{name}","message":""#);
    out.extend_from_slice(text);
    out.push(b'"');
    if let Some(room) = room {
        let _ = write!(out, r#","room":"{room}""#);
    }
    out.push(b'}');
}

fn finish_json(wire: Wire, obj: &[u8], out: &mut Vec<u8>, mask: [u8; 4]) {
    if wire == Wire::Ws {
        encode_frame(OPCODE_TEXT, obj, mask, out);
    } else {
        out.extend_from_slice(obj);
        out.push(b'\n');
    }
}

pub const OPCODE_CONT: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

/// The opening handshake request (RFC 6455 §4.1) for `key` (base64 of 16 bytes).
pub fn ws_request(host: &str, path: &str, key: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// A fresh `Sec-WebSocket-Key` from 16 pseudo-random bytes.
pub fn ws_key(random: u64, salt: u64) -> String {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&random.to_le_bytes());
    raw[8..].copy_from_slice(&salt.to_le_bytes());
    BASE64.encode(raw)
}

/// RFC 6455 §4.2.2: base64(SHA-1(key + GUID)).
pub fn ws_accept(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    BASE64.encode(h.finalize())
}

/// Checks a complete response head (up to and without the blank line):
/// status 101 and the expected `Sec-WebSocket-Accept`.
pub fn check_ws_response(head: &[u8], key: &str) -> Result<(), String> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("WebSocket handshake refused: {status:?}"));
    }
    let want = ws_accept(key);
    let ok = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
        })
    });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "WebSocket handshake: wrong or missing Sec-WebSocket-Accept (want {want}) in {head:?}"
        ))
    }
}

/// Appends one masked, unfragmented client frame (RFC 6455 §5.2, §5.3).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// One server frame: header fields and the payload's place in the input.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: std::ops::Range<usize>,
}

/// Tries to decode one server frame at the start of `input`.
/// `Ok(None)`: incomplete, nothing consumed. `Ok(Some((n, frame)))`: the frame
/// used `n` bytes. `Err` for a masked server frame (RFC 6455 §5.1) or a payload over `max`.
pub fn decode_frame(input: &[u8], max: usize) -> Result<Option<(usize, Frame)>, String> {
    let (Some(&b0), Some(&b1)) = (input.first(), input.get(1)) else {
        return Ok(None);
    };
    if b1 & 0x80 != 0 {
        return Err("server sent a masked frame".into());
    }
    let (len, head) = match b1 & 0x7F {
        126 => match input.get(2..4) {
            Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
            None => return Ok(None),
        },
        127 => match input.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(b) => (u64::from_be_bytes(b), 10),
            None => return Ok(None),
        },
        n => (u64::from(n), 2),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&l| l <= max)
        .ok_or("frame too large")?;
    let end = head + len;
    if input.len() < end {
        return Ok(None);
    }
    Ok(Some((
        end,
        Frame {
            fin: b0 & 0x80 != 0,
            opcode: b0 & 0x0F,
            payload: head..end,
        },
    )))
}

/// Index of the first `byte` in `hay`, eight bytes at a time.
#[inline]
pub fn find_byte(byte: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO.wrapping_mul(u64::from(byte));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let x = u64::from_le_bytes(w) ^ pattern;
        let found = x.wrapping_sub(LO) & !x & HI;
        if found != 0 {
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&b| b == byte)
        .map(|p| base + p)
}

/// Index of the first occurrence of `needle` (non-empty) in `hay`.
#[inline]
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(p) = hay.get(from..).and_then(|h| find_byte(first, h)) {
        let at = from + p;
        if hay.get(at + 1..at + needle.len()) == Some(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Whether `name` occurs in `hay` as a whole name: `load-1-1` is not found in `load-1-12`.
pub fn contains_name(hay: &[u8], name: &[u8]) -> bool {
    let mut from = 0;
    while let Some(p) = hay.get(from..).and_then(|h| find(h, name)) {
        let end = from + p + name.len();
        if !matches!(
            hay.get(end),
            Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'-' | b'_')
        ) {
            return true;
        }
        from = end;
    }
    false
}

/// What a line carrying load text is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A broadcast (`message` / `[ts] NAME: ...`).
    Chat,
    /// A private message to this client (`private` / `[ts] [private] NAME: ...`).
    Private,
    /// The server's confirmation of this client's private message
    /// (`private_sent` / `[ts] [private to NAME] ...`).
    PrivateSent,
}

/// The kind of a server line or message that carries load text, from its
/// prefix (the server writes `type` first; text lines start `[HH:MM:SS] `).
/// `None`: load text in some other object, which is unexpected.
#[inline]
pub fn kind(wire: Wire, line: &[u8]) -> Option<Kind> {
    match wire {
        Wire::Json | Wire::Ws => {
            let rest = line.strip_prefix(br#"{"type":""#)?;
            if rest.starts_with(br#"message""#) {
                Some(Kind::Chat)
            } else if rest.starts_with(br#"private""#) {
                Some(Kind::Private)
            } else if rest.starts_with(br#"private_sent""#) {
                Some(Kind::PrivateSent)
            } else {
                None
            }
        }
        Wire::Text => {
            let after = line.get(find(line, b"] ")? + 2..)?;
            if after.starts_with(b"[private] ") {
                Some(Kind::Private)
            } else if after.starts_with(b"[private to ") {
                Some(Kind::PrivateSent)
            } else {
                Some(Kind::Chat)
            }
        }
    }
}

/// Where the load text starts in a line, after its marker (`"L ` in JSON,
/// `: L ` or, for a private confirmation, `] L ` in text mode). The search
/// runs on the rare byte `L`, not on the quotes and spaces that fill every line.
#[inline]
pub fn load_text(wire: Wire, line: &[u8]) -> Option<&[u8]> {
    let mut from = 0;
    while let Some(p) = line.get(from..).and_then(|h| find_byte(b'L', h)) {
        let at = from + p;
        let before_ok = match wire {
            Wire::Text => at >= 2 && matches!(line.get(at - 2..at), Some(b": ") | Some(b"] ")),
            Wire::Json | Wire::Ws => at >= 1 && line.get(at - 1) == Some(&b'"'),
        };
        if before_ok && line.get(at + 1) == Some(&b' ') {
            return line.get(at + 2..);
        }
        from = at + 1;
    }
    None
}

/// Reads `<sender> <seq> <send_nanos>` from the start of `text`.
#[inline]
pub fn parse_load(text: &[u8]) -> Option<(u64, u64, u64)> {
    let mut it = text.iter();
    let mut next = || {
        let mut v: u64 = 0;
        let mut digits = 0;
        for &b in it.by_ref() {
            match b {
                b'0'..=b'9' => {
                    v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                    digits += 1;
                }
                _ => break,
            }
        }
        (digits > 0).then_some(v)
    };
    Some((next()?, next()?, next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(
            ws_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn masked_frame_matches_rfc_6455_example() {
        let mut out = Vec::new();
        encode_frame(OPCODE_TEXT, b"Hello", [0x37, 0xfa, 0x21, 0x3d], &mut out);
        assert_eq!(
            out,
            [
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
            ]
        );
    }

    #[test]
    fn decodes_unmasked_frame_and_waits_for_more() {
        let f = [0x81, 0x05, b'H', b'e', b'l', b'l', b'o'];
        for cut in 0..f.len() {
            assert_eq!(decode_frame(&f[..cut], 100), Ok(None));
        }
        let want = Frame {
            fin: true,
            opcode: OPCODE_TEXT,
            payload: 2..7,
        };
        assert_eq!(decode_frame(&f, 100), Ok(Some((7, want))));
        assert!(decode_frame(&[0x81, 0x85, 0, 0, 0, 0], 100).is_err());
    }

    #[test]
    fn finds_bytes_and_markers() {
        let line =
            br#"{"type":"message","sender":"load-1-3","message":"L 3 17 123456","timestamp":"12:00:01"}"#;
        let text = load_text(Wire::Json, line).unwrap_or_default();
        assert_eq!(parse_load(text), Some((3, 17, 123456)));
        let tline = b"[12:00:01] load-1-3: L 3 17 99";
        assert_eq!(
            load_text(Wire::Text, tline).and_then(parse_load),
            Some((3, 17, 99))
        );
        for n in 0..40 {
            let mut hay = vec![b'a'; n];
            hay.push(b'\n');
            assert_eq!(find_byte(b'\n', &hay), Some(n));
        }
        assert_eq!(find_byte(b'\n', b"abcdefghijklmnop"), None);
        assert!(contains_name(b"Welcome load-1-12! load-1-1!", b"load-1-1"));
        assert!(!contains_name(b"Welcome load-1-12!", b"load-1-1"));
        assert_eq!(
            load_text(Wire::Json, br#"{"message":"load-1 joined"}"#),
            None
        );
    }

    #[test]
    fn classifies_broadcasts_privates_and_confirmations() {
        let cases: [(Wire, &[u8], Option<Kind>); 8] = [
            (
                Wire::Json,
                br#"{"type":"message","sender":"a","message":"L 1 2 3","timestamp":"x"}"#,
                Some(Kind::Chat),
            ),
            (
                Wire::Ws,
                br#"{"type":"private","sender":"a","message":"L 1 2 3","timestamp":"x"}"#,
                Some(Kind::Private),
            ),
            (
                Wire::Json,
                br#"{"type":"private_sent","sender":"Server","to_user":"b","message":"L 1 2 3"}"#,
                Some(Kind::PrivateSent),
            ),
            (
                Wire::Json,
                br#"{"type":"info","sender":"Server","message":"L 1 2 3"}"#,
                None,
            ),
            (Wire::Text, b"[12:00:01] a: L 1 2 3", Some(Kind::Chat)),
            (
                Wire::Text,
                b"[12:00:01] [private] a: L 1 2 3",
                Some(Kind::Private),
            ),
            (
                Wire::Text,
                b"[12:00:01] [private to b] L 1 2 3",
                Some(Kind::PrivateSent),
            ),
            (Wire::Text, b"no stamp L 1 2 3", None),
        ];
        for (wire, line, want) in cases {
            assert_eq!(kind(wire, line), want, "{}", String::from_utf8_lossy(line));
            if want.is_some() {
                assert_eq!(load_text(wire, line).and_then(parse_load), Some((1, 2, 3)));
            }
        }
    }

    #[test]
    fn pads_the_text_and_the_numbers_still_read() {
        let text_of = |wire: Wire, pad_to: usize, to: Option<&str>| {
            let mut out = Vec::new();
            let load = LoadText {
                sender: 12,
                seq: 345,
                nanos: 6_789_012,
                pad_to,
            };
            encode_message(wire, "a", to, None, load, &mut out, [0; 4]);
            out
        };
        let json = text_of(Wire::Json, 64, None);
        let want = format!(
            "{{\"type\":\"message\",\"sender\":\"a\",\"message\":\"L 12 345 6789012 {}\"}}\n",
            ".".repeat(64 - 17)
        );
        assert_eq!(String::from_utf8_lossy(&json), want);
        let line = json.strip_suffix(b"\n").unwrap_or_default();
        assert_eq!(
            load_text(Wire::Json, line).and_then(parse_load),
            Some((12, 345, 6_789_012))
        );
        // Text mode; one byte short: a dot straight after the numbers.
        let text = text_of(Wire::Text, 17, None);
        assert_eq!(text, b"L 12 345 6789012.\n");
        assert_eq!(parse_load(&text[2..]), Some((12, 345, 6_789_012)));
        // Already long enough: unchanged; private messages pad the same way.
        assert_eq!(text_of(Wire::Text, 5, None), b"L 12 345 6789012\n");
        assert_eq!(text_of(Wire::Text, 0, None), b"L 12 345 6789012\n");
        let private = text_of(Wire::Text, 30, Some("bob"));
        assert_eq!(private, b"@bob L 12 345 6789012 ........\n");
    }

    #[test]
    fn encodes_private_messages_and_exits() {
        let mut out = Vec::new();
        encode_message(
            Wire::Text,
            "a",
            Some("bob"),
            None,
            LoadText::plain(1, 2, 3),
            &mut out,
            [0; 4],
        );
        encode_message(
            Wire::Text,
            "a",
            None,
            Some("#load1"),
            LoadText::plain(1, 2, 3),
            &mut out,
            [0; 4],
        );
        encode_exit(Wire::Text, "a", &mut out, [0; 4]);
        assert_eq!(out, b"@bob L 1 2 3\nL 1 2 3\n/quit\n");
        out.clear();
        encode_message(
            Wire::Json,
            "a",
            Some("bob"),
            None,
            LoadText::plain(1, 2, 3),
            &mut out,
            [0; 4],
        );
        encode_join(Wire::Json, "a", Features::default(), &mut out, [0; 4]);
        let presence = Features {
            presence: true,
            rooms: false,
        };
        encode_join(Wire::Json, "a", presence, &mut out, [0; 4]);
        encode_exit(Wire::Json, "a", &mut out, [0; 4]);
        let want = concat!(
            r#"{"type":"message","sender":"a","message":"@bob L 1 2 3"}"#,
            "\n",
            r#"{"type":"join","sender":"a"}"#,
            "\n",
            r#"{"type":"join","sender":"a","features":["presence"]}"#,
            "\n",
            r#"{"type":"exit","sender":"a"}"#,
            "\n"
        );
        assert_eq!(String::from_utf8_lossy(&out), want);
    }

    #[test]
    fn rooms_requests_and_scanners() {
        let mut out = Vec::new();
        let both = Features {
            presence: true,
            rooms: true,
        };
        encode_join(Wire::Json, "a", both, &mut out, [0; 4]);
        encode_room_join(Wire::Json, "#load3", &mut out, [0; 4]);
        encode_message(
            Wire::Json,
            "a",
            None,
            Some("#load3"),
            LoadText::plain(1, 2, 3),
            &mut out,
            [0; 4],
        );
        // A private message is server-wide: no room.
        encode_message(
            Wire::Json,
            "a",
            Some("b"),
            Some("#load3"),
            LoadText::plain(1, 3, 4),
            &mut out,
            [0; 4],
        );
        encode_room_join(Wire::Text, "#load3", &mut out, [0; 4]);
        let want = concat!(
            r#"{"type":"join","sender":"a","features":["presence","rooms"]}"#,
            "\n",
            r##"{"type":"room_join","room":"#load3"}"##,
            "\n",
            r##"{"type":"message","sender":"a","message":"L 1 2 3","room":"#load3"}"##,
            "\n",
            r#"{"type":"message","sender":"a","message":"@b L 1 3 4"}"#,
            "\n",
            "/join #load3\n",
        );
        assert_eq!(String::from_utf8_lossy(&out), want);

        let joined =
            br##"{"type":"room_joined","room":"#load3","topic":"","count":1,"epoch":"e","seq":0}"##;
        let history =
            br##"{"type":"history","room":"#load3","messages":[],"complete":true,"gap":false}"##;
        let lobby =
            br##"{"type":"room_joined","room":"#lobby","topic":"","count":1,"epoch":"e","seq":0}"##;
        assert_eq!(room_step(Wire::Json, joined, "#load3"), RoomStep::Joined);
        assert_eq!(room_step(Wire::Ws, history, "#load3"), RoomStep::Ready);
        assert_eq!(room_step(Wire::Json, lobby, "#load3"), RoomStep::Other);
        // #load3 is not #load30.
        assert_eq!(room_step(Wire::Json, joined, "#load"), RoomStep::Other);
        let text = b"[12:00:01] *** You are in #load3 (1 user: a). Plain lines go here now.";
        assert_eq!(room_step(Wire::Text, text, "#load3"), RoomStep::Ready);
        assert_eq!(room_step(Wire::Text, text, "#load"), RoomStep::Other);
        assert!(is_history(Wire::Json, history));
        assert!(is_history(
            Wire::Text,
            b"[#load3 12:00:01] (history) a: L 1 2 3"
        ));
        assert!(!is_history(Wire::Text, b"[#load3 12:00:01] a: L 1 2 3"));

        let line = br##"{"type":"message","sender":"a","message":"L 1 2 3","room":"#load3","seq":1,"ts":5,"timestamp":"x"}"##;
        assert_eq!(line_room(Wire::Json, line), Some(b"#load3".as_slice()));
        assert_eq!(kind(Wire::Json, line), Some(Kind::Chat));
        assert_eq!(
            load_text(Wire::Json, line).and_then(parse_load),
            Some((1, 2, 3))
        );
        let tline = b"[#load3 12:00:01] a: L 1 2 3";
        assert_eq!(line_room(Wire::Text, tline), Some(b"#load3".as_slice()));
        assert_eq!(kind(Wire::Text, tline), Some(Kind::Chat));
        assert_eq!(
            load_text(Wire::Text, tline).and_then(parse_load),
            Some((1, 2, 3))
        );
        assert_eq!(line_room(Wire::Text, b"[12:00:01] a: L 1 2 3"), None);
        assert_eq!(
            line_room(Wire::Json, br#"{"type":"message","message":"L 1 2 3"}"#),
            None
        );
    }
}
