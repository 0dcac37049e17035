//! The JSON mapping of the chat: client objects → [`ClientMsg`], hub events →
//! one JSON object each (keys in a fixed order, `"type"` first and
//! `"timestamp"` last; strings kept exactly, escaped per JSON). Used by the
//! JSON-lines chat port and by WebSocket text frames.

use super::{
    ClientMsg, DecodeError, ErrorCode, Event, Features, MAX_JSON_DEPTH, Since, Stamp, echo,
    message_or_private, private, summary_sentence, text_len_hint, write_decimal,
};
use crate::hub::Message;
use crate::proto::json::{self, Value};

/// The hint JSON clients get where a sentence tells them what to send.
fn hint(code: ErrorCode) -> Option<&'static str> {
    match code {
        ErrorCode::NotJoined => Some(r#" Send {"type":"join","sender":"NAME"} to join."#),
        _ => None,
    }
}

/// Appends `event` as one JSON object stamped `stamp` (no trailing newline),
/// in the original protocol's form (no room details).
pub fn encode_json(event: &Event, stamp: Stamp, out: &mut Vec<u8>) {
    write_body(event, 0, out);
    write_stamp(stamp, out);
}

/// Appends `msg` as one JSON object (no trailing newline). `rooms`: the
/// recipient joined with the rooms feature, so a message of a room carries
/// `"room"` (and a chat line its `"seq"` and `"ts"`); otherwise the object is
/// exactly the original protocol's. `offset_secs` is the local zone's offset
/// from UTC for the `"timestamp"` (`HH:MM:SS`).
pub fn encode_message_json(msg: &Message, offset_secs: i32, rooms: bool, out: &mut Vec<u8>) {
    write_body(&msg.event, offset_secs, out);
    if rooms
        && let Some(tag) = &msg.room
        && carries_room_key(&msg.event)
    {
        out.extend_from_slice(br#","room":"#);
        json::write_str(out, &tag.name);
        if let Some(seq) = tag.seq {
            out.extend_from_slice(br#","seq":"#);
            write_decimal(out, seq);
            out.extend_from_slice(br#","ts":"#);
            write_decimal(out, msg.ts_ms);
        }
    }
    write_stamp(Stamp::from_unix_ms(msg.ts_ms, offset_secs), out);
}

/// Events whose room comes from the message's tag (the room events name
/// their room themselves).
fn carries_room_key(event: &Event) -> bool {
    matches!(
        event,
        Event::Chat { .. }
            | Event::Notice { .. }
            | Event::Summary { .. }
            | Event::UserList { .. }
            | Event::Presence { .. }
    )
}

fn write_stamp(stamp: Stamp, out: &mut Vec<u8>) {
    out.extend_from_slice(br#","timestamp":"#);
    json::write_str(out, stamp.as_str());
    out.push(b'}');
}

/// Appends `{"type":...` and the event's fields, without closing the object.
fn write_body(event: &Event, offset_secs: i32, out: &mut Vec<u8>) {
    out.reserve(text_len_hint(event) + 96);
    match event {
        Event::Chat { from, text } => {
            out.extend_from_slice(br#"{"type":"message","sender":"#);
            json::write_str(out, from);
            out.extend_from_slice(br#","message":"#);
            json::write_str(out, text);
        }
        Event::Notice { text } => {
            out.extend_from_slice(br#"{"type":"message","sender":"Server","message":"#);
            json::write_str(out, text);
        }
        Event::Summary {
            joined,
            left,
            count,
        } => {
            out.extend_from_slice(br#"{"type":"message","sender":"Server","message":"#);
            let mut text = summary_sentence(*joined, *left, *count);
            text.push_str(r#" Send {"type":"who"} for the list."#);
            json::write_str(out, &text);
        }
        Event::Info { text, user, limits } => {
            out.extend_from_slice(br#"{"type":"info","sender":"Server","message":"#);
            json::write_str(out, text);
            if let Some(user) = user {
                out.extend_from_slice(br#","user":"#);
                json::write_str(out, user);
            }
            if let Some(l) = limits {
                out.extend_from_slice(br#","limits":{"rooms_per_user":"#);
                write_decimal(out, l.rooms_per_user as u64);
                out.extend_from_slice(br#","rooms_per_server":"#);
                write_decimal(out, l.rooms_per_server as u64);
                out.extend_from_slice(br#","topic_bytes":"#);
                write_decimal(out, l.topic_bytes as u64);
                out.extend_from_slice(br#","room_name_chars":"#);
                write_decimal(out, l.name_chars as u64);
                out.push(b'}');
            }
        }
        Event::UserList { users } => {
            out.extend_from_slice(br#"{"type":"user_list","users":"#);
            write_json_names(out, users);
            out.extend_from_slice(br#","count":"#);
            write_decimal(out, users.len() as u64);
        }
        Event::Presence {
            joined,
            left,
            count,
        } => {
            out.extend_from_slice(br#"{"type":"presence","joined":"#);
            write_json_names(out, joined);
            out.extend_from_slice(br#","left":"#);
            write_json_names(out, left);
            out.extend_from_slice(br#","count":"#);
            write_decimal(out, *count as u64);
        }
        Event::Private { from, text } => {
            out.extend_from_slice(br#"{"type":"private","sender":"#);
            json::write_str(out, from);
            out.extend_from_slice(br#","message":"#);
            json::write_str(out, text);
        }
        Event::PrivateSent { to, text } => {
            out.extend_from_slice(br#"{"type":"private_sent","sender":"Server","to_user":"#);
            json::write_str(out, to);
            out.extend_from_slice(br#","message":"#);
            json::write_str(out, text);
        }
        Event::Error { code, text } => {
            out.extend_from_slice(br#"{"type":"error","sender":"Server","code":"#);
            json::write_str(out, code.as_str());
            out.extend_from_slice(br#","message":"#);
            match hint(*code) {
                Some(h) => json::write_str(out, &format!("{text}{h}")),
                None => json::write_str(out, text),
            }
        }
        Event::RoomJoined {
            room,
            topic,
            users,
            count,
            epoch,
            seq,
            ..
        } => {
            out.extend_from_slice(br#"{"type":"room_joined","room":"#);
            json::write_str(out, room);
            out.extend_from_slice(br#","topic":"#);
            json::write_str(out, topic);
            if let Some(users) = users {
                out.extend_from_slice(br#","users":"#);
                write_json_names(out, users);
            }
            out.extend_from_slice(br#","count":"#);
            write_decimal(out, *count as u64);
            out.extend_from_slice(br#","epoch":"#);
            json::write_str(out, epoch);
            out.extend_from_slice(br#","seq":"#);
            write_decimal(out, *seq);
        }
        Event::RoomLeft { room } => {
            out.extend_from_slice(br#"{"type":"room_left","room":"#);
            json::write_str(out, room);
        }
        Event::History {
            room,
            messages,
            complete,
            gap,
            ..
        } => {
            out.extend_from_slice(br#"{"type":"history","room":"#);
            json::write_str(out, room);
            out.extend_from_slice(br#","messages":["#);
            for (i, m) in messages.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                encode_message_json(m, offset_secs, true, out);
            }
            out.extend_from_slice(br#"],"complete":"#);
            out.extend_from_slice(if *complete { b"true" } else { b"false" });
            out.extend_from_slice(br#","gap":"#);
            out.extend_from_slice(if *gap { b"true" } else { b"false" });
        }
        Event::RoomList { rooms, total } => {
            out.extend_from_slice(br#"{"type":"room_list","rooms":["#);
            for (i, r) in rooms.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"name":"#);
                json::write_str(out, &r.name);
                out.extend_from_slice(br#","users":"#);
                write_decimal(out, r.users as u64);
                out.extend_from_slice(br#","topic":"#);
                json::write_str(out, &r.topic);
                out.push(b'}');
            }
            out.extend_from_slice(br#"],"total":"#);
            write_decimal(out, *total as u64);
        }
        Event::Topic { room, topic, by } => {
            out.extend_from_slice(br#"{"type":"topic","room":"#);
            json::write_str(out, room);
            out.extend_from_slice(br#","topic":"#);
            json::write_str(out, topic);
            out.extend_from_slice(br#","sender":"#);
            json::write_str(out, if by.is_empty() { "Server" } else { by });
        }
    }
}

/// Appends `["a","b",...]`.
fn write_json_names(out: &mut Vec<u8>, names: &[String]) {
    out.push(b'[');
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(out, name);
    }
    out.push(b']');
}

/// Decodes one JSON-mode line (without its `\n`).
///
/// Accepts the object forms listed on [`ClientMsg`]: a `message` whose text is
/// `@NAME TEXT` and the old `{"type":"private","to":NAME,"message":TEXT}` are
/// [`ClientMsg::Private`]. Extra fields are ignored and a field whose value is
/// `null` counts as absent. `Err` when the line is not UTF-8, not JSON (nesting
/// limit [`MAX_JSON_DEPTH`]), not an object, or a field the type needs is
/// missing (`MissingField`) or not of the right JSON type (`BadField`); also
/// `BadField("to")` for a private target that is empty or holds whitespace,
/// which could not be routed, and `Usage` for a private message without text.
/// Names are not checked against the name rules here.
pub fn decode_json(line: &[u8]) -> Result<ClientMsg, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidUtf8)?;
    let value = json::parse(text, MAX_JSON_DEPTH).map_err(DecodeError::InvalidJson)?;
    if !matches!(value, Value::Object(_)) {
        return Err(DecodeError::NotAnObject);
    }
    let kind = required_str(&value, "type")?;
    match kind {
        "join" => {
            let name = match field(&value, "sender") {
                Some(_) => required_str(&value, "sender")?,
                None => match field(&value, "name") {
                    Some(_) => required_str(&value, "name")?,
                    None => return Err(DecodeError::MissingField("sender")),
                },
            };
            let features = match field(&value, "features") {
                None => Features::default(),
                Some(Value::Array(items)) => features_from(items),
                Some(_) => return Err(DecodeError::BadField("features")),
            };
            Ok(ClientMsg::Join {
                name: name.to_owned(),
                features,
            })
        }
        "message" => {
            let room = optional_str(&value, "room")?;
            match message_or_private(required_str(&value, "message")?)? {
                ClientMsg::Message { text, .. } => Ok(ClientMsg::Message {
                    room: room.map(str::to_owned),
                    text,
                }),
                private => Ok(private),
            }
        }
        "room_join" => {
            let room = required_str(&value, "room")?.to_owned();
            let since = match field(&value, "since") {
                None => None,
                Some(v @ Value::Object(_)) => Some(Since {
                    epoch: required_str(v, "epoch")?.to_owned(),
                    seq: number(v, "seq")?.ok_or(DecodeError::MissingField("seq"))?,
                }),
                Some(_) => return Err(DecodeError::BadField("since")),
            };
            Ok(ClientMsg::RoomJoin { room, since })
        }
        "room_leave" => Ok(ClientMsg::RoomLeave {
            room: optional_str(&value, "room")?.map(str::to_owned),
        }),
        "rooms" => Ok(ClientMsg::Rooms),
        "topic" => Ok(ClientMsg::Topic {
            room: optional_str(&value, "room")?.map(str::to_owned),
            topic: optional_str(&value, "topic")?.map(str::to_owned),
        }),
        "history" => Ok(ClientMsg::History {
            room: optional_str(&value, "room")?.map(str::to_owned),
            before: number(&value, "before")?,
            limit: number(&value, "limit")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        }),
        "private" => {
            let to = required_str(&value, "to")?;
            if to.is_empty() || to.contains(char::is_whitespace) {
                return Err(DecodeError::BadField("to"));
            }
            let message = required_str(&value, "message")?;
            private(to, message.trim_start())
        }
        "exit" => Ok(ClientMsg::Exit),
        "who" => Ok(ClientMsg::Who),
        other => Err(DecodeError::UnknownType(echo(other))),
    }
}

/// `key` of a JSON object, treating `null` as absent.
fn field<'v>(object: &'v Value, key: &str) -> Option<&'v Value> {
    object.get(key).filter(|v| **v != Value::Null)
}

/// The string `key` of a JSON object: `MissingField` when absent or `null`,
/// `BadField` when of another type.
fn required_str<'v>(object: &'v Value, key: &'static str) -> Result<&'v str, DecodeError> {
    field(object, key)
        .ok_or(DecodeError::MissingField(key))?
        .as_str()
        .ok_or(DecodeError::BadField(key))
}

/// The string `key` of a JSON object, `None` when absent or `null`,
/// `BadField` when of another type.
fn optional_str<'v>(object: &'v Value, key: &'static str) -> Result<Option<&'v str>, DecodeError> {
    match field(object, key) {
        None => Ok(None),
        Some(v) => v.as_str().map(Some).ok_or(DecodeError::BadField(key)),
    }
}

/// The non-negative integer `key` of a JSON object, `None` when absent or
/// `null`, `BadField` for anything else (fractions, negatives, over `u64`).
fn number(object: &Value, key: &'static str) -> Result<Option<u64>, DecodeError> {
    match field(object, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .parse::<u64>()
            .map(Some)
            .map_err(|_| DecodeError::BadField(key)),
        Some(_) => Err(DecodeError::BadField(key)),
    }
}

/// Known feature names switch their flag on; anything else (unknown names,
/// non-string items) is skipped so newer clients can ask for more.
fn features_from(items: &[Value]) -> Features {
    let mut features = Features::default();
    for item in items {
        match item.as_str() {
            Some("presence") => features.presence = true,
            Some("rooms") => features.rooms = true,
            Some("history") => features.history = true,
            _ => {}
        }
    }
    features
}

/// True when the first non-whitespace byte of `line` is `{`: the connection's
/// first line picks JSON mode this way, anything else picks text mode.
pub fn looks_like_json(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{T, join, msg, names};
    use super::super::{ErrorCode, decode_text, decode_text_name};
    use super::*;
    use crate::proto::json::JsonError;

    fn json_of(body: Event) -> String {
        let mut out = Vec::new();
        encode_json(&body, T, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn not_joined_errors_tell_json_clients_what_to_send() {
        let out = json_of(Event::Error {
            code: ErrorCode::NotJoined,
            text: "Please join first.".into(),
        });
        assert!(
            out.contains(
                r#"Please join first. Send {\"type\":\"join\",\"sender\":\"NAME\"} to join."#
            ),
            "{out}"
        );
    }

    #[test]
    fn summary_is_worded_for_json_clients() {
        let out = json_of(Event::Summary {
            joined: 3,
            left: 1,
            count: 1200,
        });
        assert_eq!(
            out,
            r#"{"type":"message","sender":"Server","message":"3 joined and 1 left since the last summary; 1200 users online. Send {\"type\":\"who\"} for the list.","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn at_messages_are_private() {
        assert_eq!(
            decode_json(br#"{"type":"message","message":"@bob  hi"}"#),
            Ok(ClientMsg::Private {
                to: "bob".into(),
                text: "hi".into()
            })
        );
        assert_eq!(
            decode_json(br#"{"type":"message","message":"@bob"}"#),
            Err(DecodeError::Usage(super::super::PRIVATE_USAGE))
        );
    }

    #[test]
    fn decodes_seed_style_join() {
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"alice"}"#),
            join("alice", false)
        );
        assert_eq!(
            decode_json(br#"{"type": "join", "sender": "bob", "timestamp": "10:00:00"}"#),
            join("bob", false)
        );
    }

    #[test]
    fn decodes_join_with_name_when_sender_is_absent() {
        assert_eq!(
            decode_json(br#"{"type":"join","name":"carol"}"#),
            join("carol", false)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"s","name":"n"}"#),
            join("s", false)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":null,"name":"n"}"#),
            join("n", false)
        );
    }

    #[test]
    fn join_does_not_check_name_rules() {
        assert_eq!(
            decode_json(br#"{"type":"join","sender":""}"#),
            join("", false)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":" a\nb "}"#),
            join(" a\nb ", false)
        );
    }

    #[test]
    fn decodes_join_features() {
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"a","features":["presence"]}"#),
            join("a", true)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"a","features":["x","presence",3,{}]}"#),
            join("a", true)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"a","features":["typing"]}"#),
            join("a", false)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"a","features":[]}"#),
            join("a", false)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"a","features":null}"#),
            join("a", false)
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"a","features":"presence"}"#),
            Err(DecodeError::BadField("features"))
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":"a","features":{"presence":true}}"#),
            Err(DecodeError::BadField("features"))
        );
    }

    #[test]
    fn rejects_join_without_a_string_name() {
        assert_eq!(
            decode_json(br#"{"type":"join"}"#),
            Err(DecodeError::MissingField("sender"))
        );
        assert_eq!(
            decode_json(br#"{"type":"join","sender":5,"name":"n"}"#),
            Err(DecodeError::BadField("sender"))
        );
        assert_eq!(
            decode_json(br#"{"type":"join","name":["n"]}"#),
            Err(DecodeError::BadField("name"))
        );
    }

    #[test]
    fn decodes_seed_style_message_and_ignores_sender() {
        assert_eq!(
            decode_json(br#"{"type":"message","sender":"alice","message":"hello all"}"#),
            msg("hello all")
        );
        assert_eq!(
            decode_json(br#"{"type":"message","sender":"mallory","message":"hi"}"#),
            msg("hi")
        );
        assert_eq!(
            decode_json(br#"{"type":"message","sender":7,"message":"x"}"#),
            msg("x")
        );
        assert_eq!(
            decode_json(br#"{"message":"x","type":"message"}"#),
            msg("x")
        );
        assert_eq!(
            decode_json(br#"{"type":"message","message":"@bob psst"}"#),
            Ok(ClientMsg::Private {
                to: "bob".into(),
                text: "psst".into()
            })
        );
        assert_eq!(decode_json(br#"{"type":"message","message":""}"#), msg(""));
    }

    #[test]
    fn decodes_message_escapes_and_surrogate_pairs() {
        assert_eq!(
            decode_json(br#"{"type":"message","message":"a\"b\\c\/d\n\t\u00e9\ud83d\ude00"}"#),
            msg("a\"b\\c/d\n\té😀")
        );
        assert_eq!(
            decode_json("{\"type\":\"message\",\"message\":\"héllo 世界 😀\"}".as_bytes()),
            msg("héllo 世界 😀")
        );
    }

    #[test]
    fn rejects_message_without_string_text() {
        assert_eq!(
            decode_json(br#"{"type":"message","sender":"a"}"#),
            Err(DecodeError::MissingField("message"))
        );
        assert_eq!(
            decode_json(br#"{"type":"message","message":null}"#),
            Err(DecodeError::MissingField("message"))
        );
        assert_eq!(
            decode_json(br#"{"type":"message","message":42}"#),
            Err(DecodeError::BadField("message"))
        );
    }

    #[test]
    fn decodes_old_private_form_as_a_private_message() {
        assert_eq!(
            decode_json(br#"{"type":"private","to":"BOB","message":"hi"}"#),
            Ok(ClientMsg::Private {
                to: "BOB".into(),
                text: "hi".into()
            })
        );
        assert_eq!(
            decode_json(br#"{"type":"private","sender":"a","to":"bob","message":" two  spaces "}"#),
            Ok(ClientMsg::Private {
                to: "bob".into(),
                text: "two  spaces ".into()
            })
        );
        assert_eq!(
            decode_json(br#"{"type":"private","message":"hi"}"#),
            Err(DecodeError::MissingField("to"))
        );
        assert_eq!(
            decode_json(br#"{"type":"private","to":"bob"}"#),
            Err(DecodeError::MissingField("message"))
        );
        assert_eq!(
            decode_json(br#"{"type":"private","to":1,"message":"hi"}"#),
            Err(DecodeError::BadField("to"))
        );
        for to in ["", "bob smith", " bob", "bob\\t", "bob\\u3000"] {
            let line = format!(r#"{{"type":"private","to":"{to}","message":"hi"}}"#);
            assert_eq!(
                decode_json(line.as_bytes()),
                Err(DecodeError::BadField("to")),
                "{to:?}"
            );
        }
    }

    #[test]
    fn decodes_exit_and_who() {
        assert_eq!(decode_json(br#"{"type":"exit"}"#), Ok(ClientMsg::Exit));
        assert_eq!(
            decode_json(br#"{"type":"exit","sender":"alice"}"#),
            Ok(ClientMsg::Exit)
        );
        assert_eq!(decode_json(br#" { "type" : "who" } "#), Ok(ClientMsg::Who));
    }

    #[test]
    fn keeps_the_last_of_repeated_keys() {
        assert_eq!(
            decode_json(br#"{"type":"who","type":"message","message":"m"}"#),
            msg("m")
        );
    }

    #[test]
    fn rejects_unknown_or_missing_type() {
        assert_eq!(
            decode_json(br#"{"type":"dance"}"#),
            Err(DecodeError::UnknownType("dance".into()))
        );
        assert_eq!(
            decode_json(br#"{"type":"Message","message":"x"}"#),
            Err(DecodeError::UnknownType("Message".into()))
        );
        assert_eq!(
            decode_json(br#"{"type":"help"}"#),
            Err(DecodeError::UnknownType("help".into()))
        );
        assert_eq!(
            decode_json(br#"{"sender":"a","message":"x"}"#),
            Err(DecodeError::MissingField("type"))
        );
        assert_eq!(
            decode_json(br#"{}"#),
            Err(DecodeError::MissingField("type"))
        );
        assert_eq!(
            decode_json(br#"{"type":null}"#),
            Err(DecodeError::MissingField("type"))
        );
        assert_eq!(
            decode_json(br#"{"type":1}"#),
            Err(DecodeError::BadField("type"))
        );
        assert_eq!(
            decode_json(br#"{"type":["join"]}"#),
            Err(DecodeError::BadField("type"))
        );
    }

    #[test]
    fn cuts_long_unknown_type_in_the_error() {
        let long = "é".repeat(100);
        let line = format!(r#"{{"type":"{long}"}}"#);
        assert_eq!(
            decode_json(line.as_bytes()),
            Err(DecodeError::UnknownType(
                "é".repeat(super::super::MAX_ECHO_CHARS)
            ))
        );
    }

    #[test]
    fn rejects_non_objects() {
        for line in [
            &b"[]"[..],
            b"\"join\"",
            b"42",
            b"null",
            b"true",
            b"[{\"type\":\"who\"}]",
        ] {
            assert_eq!(decode_json(line), Err(DecodeError::NotAnObject));
        }
    }

    #[test]
    fn rejects_invalid_json() {
        let cases: &[(&[u8], JsonError)] = &[
            (b"", JsonError::UnexpectedEnd),
            (b"hello", JsonError::Syntax { offset: 0 }),
            (br#"{"type":"who",}"#, JsonError::Syntax { offset: 14 }),
            (
                br#"{"type":"who"} x"#,
                JsonError::TrailingData { offset: 15 },
            ),
            (
                br#"{"type":"who"}{"type":"who"}"#,
                JsonError::TrailingData { offset: 14 },
            ),
            (
                b"{\"type\":\"message\",\"message\":\"a\nb\"}",
                JsonError::ControlChar { offset: 30 },
            ),
            (
                br#"{"type":"message","message":"\ud83d"}"#,
                JsonError::BadEscape { offset: 29 },
            ),
            (br#"{"type":"who""#, JsonError::UnexpectedEnd),
        ];
        for (line, want) in cases {
            assert_eq!(
                decode_json(line),
                Err(DecodeError::InvalidJson(*want)),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn limits_json_depth_to_32() {
        let nest = |d: usize| {
            format!(
                r#"{{"type":"who","x":{}{}}}"#,
                "[".repeat(d - 1),
                "]".repeat(d - 1)
            )
        };
        assert_eq!(decode_json(nest(32).as_bytes()), Ok(ClientMsg::Who));
        assert_eq!(
            decode_json(nest(33).as_bytes()),
            Err(DecodeError::InvalidJson(JsonError::TooDeep { max: 32 }))
        );
        let deep = "[".repeat(100_000);
        assert_eq!(
            decode_json(deep.as_bytes()),
            Err(DecodeError::InvalidJson(JsonError::TooDeep { max: 32 }))
        );
    }

    #[test]
    fn rejects_invalid_utf8() {
        assert_eq!(
            decode_json(b"{\"type\":\"message\",\"message\":\"\xff\"}"),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(decode_json(b"\xc3"), Err(DecodeError::InvalidUtf8));
        assert_eq!(
            decode_text(b"hi \xed\xa0\x80"),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(decode_text_name(b"\xfe"), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn detects_json_by_first_non_whitespace_byte() {
        assert!(looks_like_json(br#"{"type":"join","sender":"a"}"#));
        assert!(looks_like_json(b" \t\r\n{"));
        assert!(looks_like_json(b"{not json"));
        assert!(!looks_like_json(b"alice"));
        assert!(!looks_like_json(b" [1]"));
        assert!(!looks_like_json(b""));
        assert!(!looks_like_json(b"   "));
        assert!(!looks_like_json(b"\xff{"));
    }

    #[test]
    fn encodes_chat_json() {
        let body = Event::Chat {
            from: "alice".into(),
            text: "hi".into(),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"message","sender":"alice","message":"hi","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_notice_json() {
        let body = Event::Notice {
            text: "alice joined the chat".into(),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"message","sender":"Server","message":"alice joined the chat","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_info_json_with_and_without_user() {
        let body = Event::Info {
            text: "Welcome".into(),
            user: None,
            limits: None,
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"info","sender":"Server","message":"Welcome","timestamp":"12:00:01"}"#
        );
        let body = Event::Info {
            text: "Welcome, alice".into(),
            user: Some("alice".into()),
            limits: None,
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"info","sender":"Server","message":"Welcome, alice","user":"alice","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_user_list_json() {
        let body = Event::UserList {
            users: names(&["a", "b", "c"]),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"user_list","users":["a","b","c"],"count":3,"timestamp":"12:00:01"}"#
        );
        let body = Event::UserList { users: vec![] };
        assert_eq!(
            json_of(body),
            r#"{"type":"user_list","users":[],"count":0,"timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_presence_json() {
        let body = Event::Presence {
            joined: names(&["d"]),
            left: names(&["a", "b"]),
            count: 1234567,
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"presence","joined":["d"],"left":["a","b"],"count":1234567,"timestamp":"12:00:01"}"#
        );
        let body = Event::Presence {
            joined: vec![],
            left: vec![],
            count: 0,
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"presence","joined":[],"left":[],"count":0,"timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_private_json() {
        let body = Event::Private {
            from: "alice".into(),
            text: "psst".into(),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"private","sender":"alice","message":"psst","timestamp":"12:00:01"}"#
        );
        let body = Event::PrivateSent {
            to: "bob".into(),
            text: "psst".into(),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"private_sent","sender":"Server","to_user":"bob","message":"psst","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_error_json_with_code() {
        let body = Event::Error {
            code: ErrorCode::NameTaken,
            text: "Name 'alice' is taken.".into(),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"error","sender":"Server","code":"name_taken","message":"Name 'alice' is taken.","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encode_json_appends_without_newline() {
        let mut out = b"prefix".to_vec();
        encode_json(&Event::Notice { text: "x".into() }, T, &mut out);
        assert!(out.starts_with(b"prefix{"));
        assert!(out.ends_with(b"}"));
    }

    #[test]
    fn encode_json_escapes_and_keeps_text_exactly() {
        let nasty = "q\"b\\s/\n\r\t\u{0}\u{1b}[31m\u{7f}\u{85}é😀\u{2028}";
        let body = Event::Chat {
            from: "a\"b".into(),
            text: nasty.into(),
        };
        let out = json_of(body);
        assert_eq!(
            out,
            "{\"type\":\"message\",\"sender\":\"a\\\"b\",\"message\":\"q\\\"b\\\\s/\\n\\r\\t\\u0000\\u001b[31m\u{7f}\u{85}é😀\u{2028}\",\"timestamp\":\"12:00:01\"}"
        );
        let theirs: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(theirs["message"], nasty);
        assert_eq!(theirs["sender"], "a\"b");
        let ours = json::parse(&out, 1).unwrap();
        assert_eq!(ours.get("message").and_then(Value::as_str), Some(nasty));
    }

    #[test]
    fn client_surrogate_pairs_survive_decode_and_encode() {
        let Ok(ClientMsg::Message { text, .. }) =
            decode_json(br#"{"type":"message","message":"\ud83d\ude00 \uD834\uDD1E"}"#)
        else {
            panic!("not a message");
        };
        assert_eq!(text, "😀 𝄞");
        let out = json_of(Event::Chat {
            from: "a".into(),
            text: text.clone(),
        });
        assert!(out.contains("\"message\":\"😀 𝄞\""));
        let theirs: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(theirs["message"], text);
    }
}
