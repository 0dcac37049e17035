//! Chat messages on the wire: client requests decoded from JSON objects
//! ([`json`]) or text-mode lines ([`text`]), hub events encoded to either.
//! Knows nothing of sockets or framing (no `\n` for JSON, no WebSocket header);
//! the domain types ([`Event`], [`ErrorCode`], [`Features`]) are the hub's.
//!
//! Decoding checks shape only (types and required fields) and turns each
//! wire's private-message syntax (`@NAME text`, `/msg`, the old JSON `private`
//! object) into a typed [`ClientMsg::Private`]; name rules, empty messages and
//! routing belong to the hub. Encoding happens once per broadcast and wire
//! format: the Unix-millisecond time of a message becomes the local `HH:MM:SS`
//! here, and each format words the hints that depend on it (how to join, how
//! to ask for the list).

pub mod json;
pub mod text;

use std::fmt;

pub use crate::hub::{ErrorCode, Event, Features, Since};
pub use json::{decode_json, encode_json, encode_message_json, looks_like_json};
pub use text::{MSG_USAGE, decode_text, decode_text_name, encode_message_text, encode_text};

/// Deepest array/object nesting accepted in a client's JSON line.
pub const MAX_JSON_DEPTH: usize = 32;

/// Longest unknown `type` or command echoed back in an error, in chars.
const MAX_ECHO_CHARS: usize = 32;

/// The usage line of an `@NAME TEXT` private message, carried by its `DecodeError::Usage`.
pub const PRIVATE_USAGE: &str = "@NAME TEXT";

/// Local wall-clock time of day as `HH:MM:SS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp([u8; 8]);

impl Stamp {
    /// `HH:MM:SS` from hours, minutes and seconds (each taken modulo its range).
    pub fn from_hms(h: u8, m: u8, s: u8) -> Stamp {
        let (h, m, s) = (h % 24, m % 60, s % 60);
        Stamp([
            b'0' + h / 10,
            b'0' + h % 10,
            b':',
            b'0' + m / 10,
            b'0' + m % 10,
            b':',
            b'0' + s / 10,
            b'0' + s % 10,
        ])
    }

    /// The local time of day of `unix_ms` (milliseconds since the Unix epoch,
    /// UTC) in a zone `offset_secs` east of UTC.
    pub fn from_unix_ms(unix_ms: u64, offset_secs: i32) -> Stamp {
        let secs = i64::try_from(unix_ms / 1000).unwrap_or(0) + i64::from(offset_secs);
        let day = secs.rem_euclid(86_400);
        let (h, m, s) = (day / 3600, day % 3600 / 60, day % 60);
        Stamp::from_hms(h as u8, m as u8, s as u8)
    }

    /// The `HH:MM:SS` text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("00:00:00")
    }
}

/// A request from a client, as its wire put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// `{"type":"join","sender":NAME,"features":[...]}`; in text mode, the first line.
    Join {
        /// The requested name, not yet checked against the name rules.
        name: String,
        /// Optional features asked for.
        features: Features,
    },
    /// `{"type":"message","message":TEXT}` (optional `"room"`); any other
    /// text-mode line.
    Message {
        /// The room named (`None`: JSON means `#lobby`, text mode the current room).
        room: Option<String>,
        /// The text as sent (may be empty; the hub refuses empty messages).
        text: String,
    },
    /// `@NAME TEXT` in a message, `/msg NAME TEXT`, or the old JSON
    /// `{"type":"private","to":NAME,"message":TEXT}`.
    Private {
        /// The target's name as typed (matched case-insensitively by the hub).
        to: String,
        /// The text, without the whitespace that separated it from the name.
        text: String,
    },
    /// `{"type":"exit"}`; `/quit` or `/exit` in text mode.
    Exit,
    /// `{"type":"who"}`; `/who` in text mode: a full user list for the asker.
    Who,
    /// `/help` in text mode (answered by the text session).
    Help,
    /// `{"type":"room_join","room":R,"since":{"epoch":E,"seq":N}}`; `/join #R`.
    RoomJoin { room: String, since: Option<Since> },
    /// `{"type":"room_leave","room":R}`; `/part [#R]`.
    RoomLeave { room: Option<String> },
    /// `{"type":"rooms"}`; `/rooms`.
    Rooms,
    /// `{"type":"topic","room":R,"topic":T}`; `/topic [T]` (no text: show it).
    Topic {
        room: Option<String>,
        topic: Option<String>,
    },
    /// `{"type":"history","room":R,"before":N,"limit":L}`; `/history [L]`.
    History {
        room: Option<String>,
        before: Option<u64>,
        limit: Option<usize>,
    },
}

/// Why a client line was refused; each maps to an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line is not one valid JSON text (or nests too deep).
    InvalidJson(super::json::JsonError),
    /// The JSON text is valid but not an object.
    NotAnObject,
    /// A field the message type needs is absent or `null`.
    MissingField(&'static str),
    /// A field has the wrong JSON type (or, for `to`, an unroutable name).
    BadField(&'static str),
    /// `"type"` names no known message (cut to 32 chars).
    UnknownType(String),
    /// A text-mode `/command` that does not exist, with its `/` (cut to 32 chars).
    UnknownCommand(String),
    /// A command or private message with missing parts; holds its usage line.
    Usage(&'static str),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::InvalidUtf8 => f.write_str("message is not valid UTF-8"),
            DecodeError::InvalidJson(e) => write!(f, "bad JSON: {e}"),
            DecodeError::NotAnObject => f.write_str("bad format: expected a JSON object"),
            DecodeError::MissingField(k) => write!(f, "bad format: missing field \"{k}\""),
            DecodeError::BadField(k) => write!(f, "bad format: field \"{k}\" has the wrong type"),
            DecodeError::UnknownType(t) => write!(f, "bad format: unknown type \"{t}\""),
            DecodeError::UnknownCommand(c) => write!(f, "unknown command {c} (try /help)"),
            DecodeError::Usage(usage) => write!(f, "usage: {usage}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl DecodeError {
    /// The machine-readable `code` of the `error` reply.
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::InvalidUtf8 => ErrorCode::BadUtf8,
            DecodeError::InvalidJson(_) => ErrorCode::BadJson,
            DecodeError::UnknownCommand(_) => ErrorCode::UnknownCommand,
            DecodeError::NotAnObject
            | DecodeError::MissingField(_)
            | DecodeError::BadField(_)
            | DecodeError::UnknownType(_)
            | DecodeError::Usage(_) => ErrorCode::BadFormat,
        }
    }

    /// The `error` event this refusal is answered with.
    pub fn to_event(&self) -> Event {
        Event::Error {
            code: self.code(),
            text: self.to_string(),
        }
    }
}

/// A chat line: `@NAME TEXT` is a private message (the text starts after the
/// whitespace that follows the name; `Err(Usage)` without a name or a text),
/// anything else a message to the room.
pub(crate) fn message_or_private(text: &str) -> Result<ClientMsg, DecodeError> {
    let Some(rest) = text.strip_prefix('@') else {
        return Ok(ClientMsg::Message {
            room: None,
            text: text.to_owned(),
        });
    };
    let (to, body) = match rest.split_once(char::is_whitespace) {
        Some((t, b)) => (t, b.trim_start()),
        None => (rest, ""),
    };
    private(to, body)
}

/// A typed private message; `Err(Usage)` when the name or the text is missing.
pub(crate) fn private(to: &str, text: &str) -> Result<ClientMsg, DecodeError> {
    if to.is_empty() || text.trim().is_empty() {
        return Err(DecodeError::Usage(PRIVATE_USAGE));
    }
    Ok(ClientMsg::Private {
        to: to.to_owned(),
        text: text.to_owned(),
    })
}

/// At most [`MAX_ECHO_CHARS`] chars of `s`, for error messages that quote the client.
pub(crate) fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => s.get(..cut).unwrap_or_default().to_owned(),
        None => s.to_owned(),
    }
}

/// Appends `n` in decimal without allocating.
pub(crate) fn write_decimal(out: &mut Vec<u8>, n: u64) {
    let mut n = n;
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(slot) = digits.get_mut(start) {
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// The summary notice's sentence, without the wire's hint.
pub(crate) fn summary_sentence(joined: u64, left: u64, count: usize) -> String {
    format!("{joined} joined and {left} left since the last summary; {count} users online.")
}

/// Rough byte size of the strings inside an event, to reserve output space once.
pub(crate) fn text_len_hint(event: &Event) -> usize {
    let names = |list: &[String]| list.iter().map(|n| n.len() + 4).sum::<usize>();
    match event {
        Event::Chat { from, text } | Event::Private { from, text } => from.len() + text.len(),
        Event::Notice { text } | Event::Error { text, .. } => text.len(),
        Event::Info { text, user, .. } => text.len() + user.as_ref().map_or(0, |u| u.len() + 10),
        Event::UserList { users } => names(users),
        Event::Presence { joined, left, .. } => names(joined) + names(left),
        Event::Summary { .. } => 96,
        Event::PrivateSent { to, text } => to.len() + text.len(),
        Event::RoomJoined { users, topic, .. } => {
            topic.len() + users.as_ref().map_or(0, |u| names(u)) + 96
        }
        Event::RoomLeft { room } => room.len() + 32,
        Event::History { messages, .. } => messages.len() * 128 + 64,
        Event::RoomList { rooms, .. } => rooms
            .iter()
            .map(|r| r.name.len() + r.topic.len() + 32)
            .sum(),
        Event::Topic { topic, by, .. } => topic.len() + by.len() + 64,
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Helpers shared by the JSON and text mapping tests.
    use super::{ClientMsg, DecodeError, Features, Stamp};

    /// A fixed stamp for byte-exact expectations.
    pub const T: Stamp = Stamp(*b"12:00:01");

    pub fn msg(text: &str) -> Result<ClientMsg, DecodeError> {
        Ok(ClientMsg::Message {
            room: None,
            text: text.to_owned(),
        })
    }

    pub fn pm(to: &str, text: &str) -> Result<ClientMsg, DecodeError> {
        Ok(ClientMsg::Private {
            to: to.to_owned(),
            text: text.to_owned(),
        })
    }

    pub fn join(name: &str, presence: bool) -> Result<ClientMsg, DecodeError> {
        Ok(ClientMsg::Join {
            name: name.to_owned(),
            features: Features {
                presence,
                ..Features::default()
            },
        })
    }

    pub fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{T, msg};
    use super::*;
    use crate::proto::json::JsonError;
    use proptest::prelude::*;

    #[test]
    fn stamp_formats_hh_mm_ss_modulo_ranges() {
        assert_eq!(Stamp::from_hms(9, 5, 7).as_str(), "09:05:07");
        assert_eq!(Stamp::from_hms(23, 59, 59).as_str(), "23:59:59");
        assert_eq!(Stamp::from_hms(24, 60, 61).as_str(), "00:00:01");
        assert_eq!(Stamp::from_hms(255, 255, 255).as_str(), "15:15:15");
    }

    #[test]
    fn decode_errors_map_to_codes_and_messages() {
        let cases = [
            (
                DecodeError::InvalidUtf8,
                "bad_utf8",
                "message is not valid UTF-8",
            ),
            (
                DecodeError::InvalidJson(JsonError::Syntax { offset: 3 }),
                "bad_json",
                "bad JSON: unexpected character at byte 3",
            ),
            (
                DecodeError::NotAnObject,
                "bad_format",
                "bad format: expected a JSON object",
            ),
            (
                DecodeError::MissingField("type"),
                "bad_format",
                "bad format: missing field \"type\"",
            ),
            (
                DecodeError::BadField("to"),
                "bad_format",
                "bad format: field \"to\" has the wrong type",
            ),
            (
                DecodeError::UnknownType("x".into()),
                "bad_format",
                "bad format: unknown type \"x\"",
            ),
            (
                DecodeError::UnknownCommand("/x".into()),
                "unknown_command",
                "unknown command /x (try /help)",
            ),
            (
                DecodeError::Usage(MSG_USAGE),
                "bad_format",
                "usage: /msg NAME TEXT",
            ),
        ];
        for (err, code, text) in cases {
            assert_eq!(err.code().as_str(), code);
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn every_error_code_has_its_wire_name() {
        let all = [
            (ErrorCode::BadJson, "bad_json"),
            (ErrorCode::BadUtf8, "bad_utf8"),
            (ErrorCode::BadFormat, "bad_format"),
            (ErrorCode::UnknownCommand, "unknown_command"),
            (ErrorCode::NameInvalid, "name_invalid"),
            (ErrorCode::NameTaken, "name_taken"),
            (ErrorCode::NotJoined, "not_joined"),
            (ErrorCode::AlreadyJoined, "already_joined"),
            (ErrorCode::UnknownUser, "unknown_user"),
            (ErrorCode::EmptyMessage, "empty_message"),
            (ErrorCode::LineTooLong, "too_long"),
            (ErrorCode::OutputOverflow, "output_overflow"),
            (ErrorCode::RateLimited, "rate_limited"),
            (ErrorCode::ServerFull, "server_full"),
            (ErrorCode::TooManyConnections, "too_many_connections"),
        ];
        for (code, name) in all {
            let mut out = Vec::new();
            let event = Event::Error {
                code,
                text: String::new(),
            };
            encode_json(&event, T, &mut out);
            let theirs: serde_json::Value = serde_json::from_slice(&out).unwrap();
            assert_eq!(theirs["code"], name);
        }
    }

    #[test]
    fn write_decimal_writes_any_u64() {
        for n in [0, 7, 10, 99, 100, 123_456, u64::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
    }
    #[test]
    fn stamp_from_unix_ms_applies_the_offset() {
        // 2026-01-01T00:00:00Z = 1767225600 s.
        let ms = 1_767_225_600_000 + 3_723_500;
        assert_eq!(Stamp::from_unix_ms(ms, 0).as_str(), "01:02:03");
        assert_eq!(Stamp::from_unix_ms(ms, 3600).as_str(), "02:02:03");
        assert_eq!(Stamp::from_unix_ms(ms, -7200).as_str(), "23:02:03");
        assert_eq!(Stamp::from_unix_ms(0, 0).as_str(), "00:00:00");
    }

    #[test]
    fn at_name_text_is_a_typed_private_message() {
        assert_eq!(
            message_or_private("@bob  hi  there "),
            Ok(ClientMsg::Private {
                to: "bob".into(),
                text: "hi  there ".into()
            })
        );
        assert_eq!(
            message_or_private("@bob\thi"),
            Ok(ClientMsg::Private {
                to: "bob".into(),
                text: "hi".into()
            })
        );
        for bad in ["@", "@bob", "@bob   ", "@ hi"] {
            assert_eq!(
                message_or_private(bad),
                Err(DecodeError::Usage(PRIVATE_USAGE)),
                "{bad:?}"
            );
        }
        assert_eq!(
            message_or_private("a@b"),
            Ok(ClientMsg::Message {
                room: None,
                text: "a@b".into()
            })
        );
    }

    // ---- properties ----

    fn tricky_string() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec![
                    '"', '\\', '/', '\n', '\r', '\t', '\u{0}', '\u{1b}', '\u{7f}', '\u{80}',
                    '\u{9b}', '\u{9f}', '\u{a0}', 'a', ' ', 'é', '[', '@', '\u{2028}', '\u{fffd}',
                    '😀',
                ]),
                0..24
            )
            .prop_map(|chars| chars.into_iter().collect()),
        ]
    }

    fn body() -> impl Strategy<Value = Event> {
        let s = tricky_string;
        let list = || prop::collection::vec(tricky_string(), 0..5);
        prop_oneof![
            (s(), s()).prop_map(|(from, text)| Event::Chat { from, text }),
            s().prop_map(|text| Event::Notice { text }),
            (s(), prop::option::of(s())).prop_map(|(text, user)| Event::Info {
                text,
                user,
                limits: None
            }),
            list().prop_map(|users| Event::UserList { users }),
            (list(), list(), any::<usize>()).prop_map(|(joined, left, count)| Event::Presence {
                joined,
                left,
                count
            }),
            (s(), s()).prop_map(|(from, text)| Event::Private { from, text }),
            (s(), s()).prop_map(|(to, text)| Event::PrivateSent { to, text }),
            (any::<u64>(), any::<u64>(), any::<usize>()).prop_map(|(joined, left, count)| {
                Event::Summary {
                    joined,
                    left,
                    count,
                }
            }),
            s().prop_map(|text| Event::Error {
                code: ErrorCode::RateLimited,
                text
            }),
        ]
    }

    /// The strings `body` should carry in its JSON form, by key.
    fn expected_json(body: &Event) -> serde_json::Value {
        use serde_json::json;
        match body {
            Event::Chat { from, text } => json!({"type":"message","sender":from,"message":text}),
            Event::Notice { text } => json!({"type":"message","sender":"Server","message":text}),
            Event::Summary {
                joined,
                left,
                count,
            } => json!({"type":"message","sender":"Server","message":format!(
                "{joined} joined and {left} left since the last summary; {count} users online. Send {{\"type\":\"who\"}} for the list."
            )}),
            Event::Info {
                text, user: None, ..
            } => {
                json!({"type":"info","sender":"Server","message":text})
            }
            Event::Info {
                text,
                user: Some(user),
                ..
            } => json!({"type":"info","sender":"Server","message":text,"user":user}),
            Event::UserList { users } => {
                json!({"type":"user_list","users":users,"count":users.len()})
            }
            Event::Presence {
                joined,
                left,
                count,
            } => json!({"type":"presence","joined":joined,"left":left,"count":count}),
            Event::Private { from, text } => json!({"type":"private","sender":from,"message":text}),
            Event::PrivateSent { to, text } => {
                json!({"type":"private_sent","sender":"Server","to_user":to,"message":text})
            }
            Event::Error { code, text } => {
                json!({"type":"error","sender":"Server","code":code.as_str(),"message":text})
            }
            // Room events are not generated by `body()`; their own tests cover them.
            other => panic!("not generated: {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_json(&bytes);
            let _ = decode_text(&bytes);
            let _ = decode_text_name(&bytes);
            let _ = looks_like_json(&bytes);
        }

        #[test]
        fn decoders_never_panic_on_near_valid_lines(
            kind in prop::sample::select(vec!["join", "message", "private", "exit", "who", "x"]),
            key in prop::sample::select(vec!["sender", "name", "message", "to", "features", "type"]),
            raw in "[\\[\\]{}\",:a-z0-9\\\\ ]{0,12}",
            cmd in "/?[a-zA-Z/]{0,5}[ \t]{0,2}[a-z ]{0,6}",
        ) {
            let line = format!(r#"{{"type":"{kind}","{key}":{raw}}}"#);
            let _ = decode_json(line.as_bytes());
            let _ = decode_text(cmd.as_bytes());
            let _ = decode_text_name(cmd.as_bytes());
        }

        #[test]
        fn json_message_text_round_trips(text in tricky_string()) {
            prop_assume!(!text.starts_with('@'));
            let line = serde_json::json!({"type":"message","sender":"x","message":text}).to_string();
            prop_assert_eq!(decode_json(line.as_bytes()), msg(&text));
        }

        #[test]
        fn encode_json_parses_and_carries_exact_strings(body in body(), h in 0u8..24, m in 0u8..60, s in 0u8..60) {
            let stamp = Stamp::from_hms(h, m, s);
            let mut out = Vec::new();
            encode_json(&body, stamp, &mut out);
            let text = std::str::from_utf8(&out).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut want = expected_json(&body);
            want["timestamp"] = stamp.as_str().into();
            prop_assert_eq!(&theirs, &want);
            let tail = format!(",\"timestamp\":\"{}\"}}", stamp.as_str());
            prop_assert!(text.starts_with("{\"type\":"), "{}", text);
            prop_assert!(text.ends_with(&tail), "{}", text);
            prop_assert!(crate::proto::json::parse(text, MAX_JSON_DEPTH).is_ok());
        }

        #[test]
        fn encode_text_is_one_terminal_safe_line(body in body()) {
            let mut out = Vec::new();
            let sent = encode_text(&body, T, &mut out);
            prop_assert_eq!(sent, !matches!(body, Event::Presence { .. }));
            if sent {
                let text = std::str::from_utf8(&out).unwrap();
                let line = text.strip_suffix('\n').unwrap();
                prop_assert!(line.starts_with("[12:00:01] "));
                prop_assert!(!line.chars().any(char::is_control), "{:?}", line);
                prop_assert!(!line.chars().any(|c| matches!(c, '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')), "{:?}", line);
            } else {
                prop_assert!(out.is_empty());
            }
        }
    }
}
