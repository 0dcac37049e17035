//! The text mapping of the chat, for `nc` and `telnet`: the first line is the
//! name, later lines are chat text or `/commands`; hub events become one
//! human-readable line each (`[HH:MM:SS] ...`), made terminal-safe.

use super::{
    ClientMsg, DecodeError, Event, Features, Stamp, echo, message_or_private, summary_sentence,
    text_len_hint, write_decimal,
};
use crate::hub::{LOBBY, Message};

/// The usage line of `/msg`, carried by its `DecodeError::Usage`.
pub const MSG_USAGE: &str = "/msg NAME TEXT";

/// The usage line of `/join`.
pub const JOIN_USAGE: &str = "/join #ROOM";

/// The usage line of `/history`.
pub const HISTORY_USAGE: &str = "/history [COUNT]";

/// Appends the text-mode line for `event` (with `\n`); returns false when
/// text-mode clients get nothing for it (presence deltas).
///
/// Every string is made terminal-safe on the way out: `\n`, `\r` and `\t`
/// become a space, any other control character (C0, DEL, C1 U+0080..U+009F)
/// becomes U+FFFD, so no one can inject lines or escape sequences.
pub fn encode_text(event: &Event, stamp: Stamp, out: &mut Vec<u8>) -> bool {
    write_line(event, stamp, None, 0, out)
}

/// Appends the text-mode line(s) for `msg`; false when text mode gets
/// nothing for it. Messages of a room other than `#lobby` show the room
/// before the time (`[#toan 10:01:02] an: hi`), so lobby-only users see
/// exactly the lines they always saw. History comes one line per message,
/// each marked `(history)`.
pub fn encode_message_text(msg: &Message, offset_secs: i32, out: &mut Vec<u8>) -> bool {
    let room = msg
        .room
        .as_ref()
        .map(|t| &*t.name)
        .filter(|name| *name != LOBBY);
    let stamp = Stamp::from_unix_ms(msg.ts_ms, offset_secs);
    write_line(&msg.event, stamp, room, offset_secs, out)
}

fn write_prefix(stamp: Stamp, room: Option<&str>, out: &mut Vec<u8>) {
    out.push(b'[');
    if let Some(room) = room {
        write_terminal_safe(out, room);
        out.push(b' ');
    }
    out.extend_from_slice(stamp.as_str().as_bytes());
    out.extend_from_slice(b"] ");
}

fn write_line(
    event: &Event,
    stamp: Stamp,
    room: Option<&str>,
    offset_secs: i32,
    out: &mut Vec<u8>,
) -> bool {
    match event {
        Event::Presence { .. } => return false,
        // Being put in the lobby at connect time is not news in text mode.
        Event::RoomJoined { auto: true, .. } => return false,
        Event::History {
            room: r,
            messages,
            gap,
            replay,
            ..
        } => {
            let shown = (&**r != LOBBY).then_some(&**r);
            if *gap {
                write_prefix(stamp, shown, out);
                out.extend_from_slice(b"*** Some messages were missed.\n");
            }
            if messages.is_empty() && !*replay {
                write_prefix(stamp, shown, out);
                out.extend_from_slice(b"*** No earlier messages.\n");
            }
            for m in messages {
                if let Event::Chat { from, text } = &m.event {
                    write_prefix(Stamp::from_unix_ms(m.ts_ms, offset_secs), shown, out);
                    out.extend_from_slice(b"(history) ");
                    write_terminal_safe(out, from);
                    out.extend_from_slice(b": ");
                    write_terminal_safe(out, text);
                    out.push(b'\n');
                }
            }
            return !out.is_empty();
        }
        _ => {}
    }
    out.reserve(text_len_hint(event) + 32);
    write_prefix(stamp, room, out);
    match event {
        Event::Chat { from, text } => {
            write_terminal_safe(out, from);
            out.extend_from_slice(b": ");
            write_terminal_safe(out, text);
        }
        Event::Notice { text } | Event::Info { text, .. } => {
            out.extend_from_slice(b"*** ");
            write_terminal_safe(out, text);
        }
        Event::Summary {
            joined,
            left,
            count,
        } => {
            out.extend_from_slice(b"*** ");
            out.extend_from_slice(summary_sentence(*joined, *left, *count).as_bytes());
            out.extend_from_slice(b" Type /who for the list.");
        }
        Event::UserList { users } => {
            out.extend_from_slice(b"*** Online (");
            write_decimal(out, users.len() as u64);
            out.push(b')');
            for (i, user) in users.iter().enumerate() {
                out.extend_from_slice(if i == 0 { b": " } else { b", " });
                write_terminal_safe(out, user);
            }
        }
        Event::Private { from, text } => {
            out.extend_from_slice(b"[private] ");
            write_terminal_safe(out, from);
            out.extend_from_slice(b": ");
            write_terminal_safe(out, text);
        }
        Event::PrivateSent { to, text } => {
            out.extend_from_slice(b"[private to ");
            write_terminal_safe(out, to);
            out.extend_from_slice(b"] ");
            write_terminal_safe(out, text);
        }
        Event::Error { text, .. } => {
            out.extend_from_slice(b"!!! ");
            write_terminal_safe(out, text);
        }
        Event::RoomJoined {
            room,
            topic,
            users,
            count,
            ..
        } => {
            out.extend_from_slice(b"*** You are in ");
            write_terminal_safe(out, room);
            out.extend_from_slice(b" (");
            write_decimal(out, *count as u64);
            out.extend_from_slice(if *count == 1 { b" user" } else { b" users" });
            if let Some(users) = users {
                for (i, user) in users.iter().enumerate() {
                    out.extend_from_slice(if i == 0 { b": " } else { b", " });
                    write_terminal_safe(out, user);
                }
            }
            out.push(b')');
            if !topic.is_empty() {
                out.extend_from_slice(b". Topic: ");
                write_terminal_safe(out, topic);
            }
            out.extend_from_slice(b". Plain lines go here now.");
        }
        Event::RoomLeft { room } => {
            out.extend_from_slice(b"*** You left ");
            write_terminal_safe(out, room);
            out.push(b'.');
        }
        Event::RoomList { rooms, total } => {
            out.extend_from_slice(b"*** Rooms (");
            write_decimal(out, *total as u64);
            out.push(b')');
            for (i, r) in rooms.iter().enumerate() {
                out.extend_from_slice(if i == 0 { b": " } else { b", " });
                write_terminal_safe(out, &r.name);
                out.extend_from_slice(b" (");
                write_decimal(out, r.users as u64);
                out.push(b')');
                if !r.topic.is_empty() {
                    out.push(b' ');
                    write_terminal_safe(out, &r.topic);
                }
            }
        }
        Event::Topic { room, topic, by } => {
            if by.is_empty() {
                out.extend_from_slice(b"*** Topic of ");
            } else {
                out.extend_from_slice(b"*** ");
                write_terminal_safe(out, by);
                out.extend_from_slice(b" set the topic of ");
            }
            write_terminal_safe(out, room);
            out.extend_from_slice(b": ");
            if topic.is_empty() {
                out.extend_from_slice(b"(none)");
            } else {
                write_terminal_safe(out, topic);
            }
        }
        Event::Presence { .. } | Event::History { .. } => {}
    }
    out.push(b'\n');
    true
}

/// Appends `s` with control characters neutralised for a terminal: `\n`, `\r`
/// and `\t` and the Unicode line and paragraph separators (U+2028, U+2029)
/// become a space; other C0 controls, DEL, C1 controls (U+0080..U+009F, the
/// 8-bit escape introducers) and the bidirectional embeddings, overrides and
/// isolates (U+202A..U+202E, U+2066..U+2069, which can make a terminal show
/// text in another order than it was sent) become U+FFFD. Plain runs are
/// copied with one `extend_from_slice` each.
fn write_terminal_safe(out: &mut Vec<u8>, s: &str) {
    const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();
    let bytes = s.as_bytes();
    let mut run_start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        // In UTF-8, U+0080..U+009F are exactly 0xC2 followed by 0x80..0x9F.
        let (width, replacement): (usize, &[u8]) = match b {
            b'\n' | b'\r' | b'\t' => (1, b" "),
            0x00..=0x1f | 0x7f => (1, REPLACEMENT),
            0xc2 if matches!(bytes.get(i + 1), Some(0x80..=0x9f)) => (2, REPLACEMENT),
            // U+2028..U+202E are 0xE2 0x80 0xA8..0xAE; U+2066..U+2069 are 0xE2 0x81 0xA6..0xA9.
            0xe2 => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(0x80), Some(0xa8 | 0xa9)) => (3, b" "),
                (Some(0x80), Some(0xaa..=0xae)) | (Some(0x81), Some(0xa6..=0xa9)) => {
                    (3, REPLACEMENT)
                }
                _ => {
                    i += 1;
                    continue;
                }
            },
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(bytes.get(run_start..i).unwrap_or_default());
        out.extend_from_slice(replacement);
        i += width;
        run_start = i;
    }
    out.extend_from_slice(bytes.get(run_start..).unwrap_or_default());
}

/// Decodes text mode's first line: the name, trimmed of surrounding whitespace,
/// as `Join` with `features.presence` on (text users get join/leave notices
/// rather than whole lists). The name is not checked against the name rules.
///
/// `/quit`, `/exit` and `/help` (any case, any arguments) are honoured here too,
/// so someone who types a command before choosing a name gets `Exit` or `Help`
/// rather than a refused name. `Err(InvalidUtf8)` when the line is not UTF-8.
pub fn decode_text_name(line: &[u8]) -> Result<ClientMsg, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidUtf8)?;
    let name = text.trim();
    if let Some(rest) = name.strip_prefix('/') {
        let command = rest.split(char::is_whitespace).next().unwrap_or_default();
        if is_command(command, &["quit", "exit"]) {
            return Ok(ClientMsg::Exit);
        }
        if is_command(command, &["help"]) {
            return Ok(ClientMsg::Help);
        }
    }
    // Text users have rooms (`/join`); the lobby looks as it always did.
    Ok(ClientMsg::Join {
        name: name.to_owned(),
        features: Features {
            presence: true,
            rooms: true,
            history: false,
        },
    })
}

/// Decodes one text-mode line after the name line (commands or chat text).
///
/// Commands (case-insensitive, extra arguments ignored unless used):
/// `/who` → `Who`; `/quit` or `/exit` → `Exit`; `/help` → `Help`;
/// `/msg NAME TEXT` → `Private` (`Err(Usage)` when NAME or TEXT is missing);
/// `//TEXT` → `Message { text: "/TEXT" }` (the escape for a leading slash);
/// any other `/cmd` → `Err(UnknownCommand("/cmd"))` (the command is cut to 32
/// chars). `@NAME TEXT` is `Private` as in JSON mode. Any other line is
/// `Message` exactly as received, empty lines included (the hub refuses empty
/// messages). `Err(InvalidUtf8)` when the line is not UTF-8.
pub fn decode_text(line: &[u8]) -> Result<ClientMsg, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidUtf8)?;
    let Some(after_slash) = text.strip_prefix('/') else {
        return message_or_private(text);
    };
    if after_slash.starts_with('/') {
        return Ok(ClientMsg::Message {
            room: None,
            text: after_slash.to_owned(),
        });
    }
    // The command is what directly follows the `/`: "/ who" is not `/who`.
    let (command, args) = after_slash
        .split_once(char::is_whitespace)
        .unwrap_or((after_slash, ""));
    if is_command(command, &["who"]) {
        Ok(ClientMsg::Who)
    } else if is_command(command, &["quit", "exit"]) {
        Ok(ClientMsg::Exit)
    } else if is_command(command, &["help"]) {
        Ok(ClientMsg::Help)
    } else if is_command(command, &["join"]) {
        let (room, _) = split_word(args);
        if room.is_empty() {
            return Err(DecodeError::Usage(JOIN_USAGE));
        }
        Ok(ClientMsg::RoomJoin {
            room: room.to_owned(),
            since: None,
        })
    } else if is_command(command, &["part", "leave"]) {
        let (room, _) = split_word(args);
        Ok(ClientMsg::RoomLeave {
            room: (!room.is_empty()).then(|| room.to_owned()),
        })
    } else if is_command(command, &["rooms", "list"]) {
        Ok(ClientMsg::Rooms)
    } else if is_command(command, &["topic"]) {
        let topic = args.trim();
        Ok(ClientMsg::Topic {
            room: None,
            topic: (!topic.is_empty()).then(|| topic.to_owned()),
        })
    } else if is_command(command, &["history"]) {
        let (n, _) = split_word(args);
        let limit = match n {
            "" => None,
            n => Some(
                n.parse::<usize>()
                    .map_err(|_| DecodeError::Usage(HISTORY_USAGE))?,
            ),
        };
        Ok(ClientMsg::History {
            room: None,
            before: None,
            limit,
        })
    } else if is_command(command, &["msg"]) {
        let (to, message) = split_word(args);
        if to.is_empty() || message.trim().is_empty() {
            return Err(DecodeError::Usage(MSG_USAGE));
        }
        Ok(ClientMsg::Private {
            to: to.to_owned(),
            text: message.to_owned(),
        })
    } else {
        let mut shown = String::with_capacity(command.len() + 1);
        shown.push('/');
        shown.push_str(&echo(command));
        Err(DecodeError::UnknownCommand(shown))
    }
}

/// True when `command` is one of `names`, ignoring ASCII case.
fn is_command(command: &str, names: &[&str]) -> bool {
    names.iter().any(|name| command.eq_ignore_ascii_case(name))
}

/// Splits off the first whitespace-delimited word; the rest starts at the
/// next non-whitespace char (inner and trailing whitespace kept as typed).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    s.split_once(char::is_whitespace)
        .map_or((s, ""), |(word, rest)| (word, rest.trim_start()))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{T, msg, names, pm};
    use super::*;
    use crate::hub::ErrorCode;

    fn text_of(body: Event) -> String {
        let mut out = Vec::new();
        assert!(encode_text(&body, T, &mut out));
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn summary_is_worded_for_text_clients() {
        let out = text_of(Event::Summary {
            joined: 2,
            left: 0,
            count: 1001,
        });
        assert_eq!(
            out,
            "[12:00:01] *** 2 joined and 0 left since the last summary; 1001 users online. Type /who for the list.\n"
        );
        assert!(!out.contains('{'));
    }

    #[test]
    fn errors_carry_no_json_hint() {
        let out = text_of(Event::Error {
            code: ErrorCode::NotJoined,
            text: "Please join first.".into(),
        });
        assert_eq!(out, "[12:00:01] !!! Please join first.\n");
    }

    #[test]
    fn decodes_text_name_line_as_join_with_presence_and_rooms() {
        let text_join = |name: &str| {
            Ok(ClientMsg::Join {
                name: name.to_owned(),
                features: Features {
                    presence: true,
                    rooms: true,
                    history: false,
                },
            })
        };
        assert_eq!(decode_text_name(b"alice"), text_join("alice"));
        assert_eq!(decode_text_name(b"  bob \t"), text_join("bob"));
        assert_eq!(decode_text_name("zoë".as_bytes()), text_join("zoë"));
        assert_eq!(decode_text_name(b""), text_join(""));
        assert_eq!(decode_text_name(b"a b"), text_join("a b"));
        assert_eq!(decode_text_name(b"/who"), text_join("/who"));
    }

    #[test]
    fn honours_quit_and_help_on_the_name_line() {
        assert_eq!(decode_text_name(b"/quit"), Ok(ClientMsg::Exit));
        assert_eq!(decode_text_name(b" /EXIT now"), Ok(ClientMsg::Exit));
        assert_eq!(decode_text_name(b"/Help"), Ok(ClientMsg::Help));
    }

    #[test]
    fn decodes_text_commands_in_any_case() {
        assert_eq!(decode_text(b"/who"), Ok(ClientMsg::Who));
        assert_eq!(decode_text(b"/WHO"), Ok(ClientMsg::Who));
        assert_eq!(decode_text(b"/who extra"), Ok(ClientMsg::Who));
        assert_eq!(decode_text(b"/quit"), Ok(ClientMsg::Exit));
        assert_eq!(decode_text(b"/Quit bye"), Ok(ClientMsg::Exit));
        assert_eq!(decode_text(b"/exit"), Ok(ClientMsg::Exit));
        assert_eq!(decode_text(b"/help"), Ok(ClientMsg::Help));
        assert_eq!(decode_text(b"/HeLp"), Ok(ClientMsg::Help));
    }

    #[test]
    fn decodes_text_msg_as_at_message() {
        assert_eq!(decode_text(b"/msg bob hi there"), pm("bob", "hi there"));
        assert_eq!(
            decode_text(b"/MSG  bob   hi  there "),
            pm("bob", "hi  there ")
        );
        assert_eq!(decode_text(b"/msg\tbob\thi"), pm("bob", "hi"));
        assert_eq!(decode_text(b"/msg"), Err(DecodeError::Usage(MSG_USAGE)));
        assert_eq!(decode_text(b"/msg   "), Err(DecodeError::Usage(MSG_USAGE)));
        assert_eq!(decode_text(b"/msg bob"), Err(DecodeError::Usage(MSG_USAGE)));
        assert_eq!(
            decode_text(b"/msg bob   "),
            Err(DecodeError::Usage(MSG_USAGE))
        );
    }

    #[test]
    fn double_slash_escapes_a_leading_slash() {
        assert_eq!(decode_text(b"//who"), msg("/who"));
        assert_eq!(decode_text(b"//"), msg("/"));
        assert_eq!(decode_text(b"///x y"), msg("//x y"));
    }

    #[test]
    fn rejects_unknown_text_commands() {
        assert_eq!(
            decode_text(b"/dance now"),
            Err(DecodeError::UnknownCommand("/dance".into()))
        );
        assert_eq!(
            decode_text(b"/"),
            Err(DecodeError::UnknownCommand("/".into()))
        );
        assert_eq!(
            decode_text(b"/ who"),
            Err(DecodeError::UnknownCommand("/".into()))
        );
        assert_eq!(
            decode_text(b"/whom"),
            Err(DecodeError::UnknownCommand("/whom".into()))
        );
        let long = format!("/{}", "x".repeat(100));
        assert_eq!(
            decode_text(long.as_bytes()),
            Err(DecodeError::UnknownCommand(format!("/{}", "x".repeat(32))))
        );
    }

    #[test]
    fn passes_other_text_lines_through_as_is() {
        assert_eq!(decode_text(b"hello world"), msg("hello world"));
        assert_eq!(decode_text(b"  /who"), msg("  /who"));
        assert_eq!(decode_text(b""), msg(""));
        assert_eq!(decode_text(b"a /who"), msg("a /who"));
        assert_eq!(decode_text(br#"{"type":"who"}"#), msg(r#"{"type":"who"}"#));
        assert_eq!(decode_text("ünïcödé 😀".as_bytes()), msg("ünïcödé 😀"));
        assert_eq!(decode_text(b"@bob hi"), pm("bob", "hi"));
    }

    #[test]
    fn text_mode_neutralises_separators_and_bidi_controls_only() {
        let body = Event::Chat {
            from: "a".into(),
            text: "x\u{2028}y\u{2029}z \u{202e}evil\u{202c} \u{2066}iso\u{2069} \u{2027}\u{202f}\u{2065}\u{206a} é".into(),
        };
        let mut out = Vec::new();
        encode_text(&body, T, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "[12:00:01] a: x y z \u{fffd}evil\u{fffd} \u{fffd}iso\u{fffd} \u{2027}\u{202f}\u{2065}\u{206a} é\n"
        );
    }

    #[test]
    fn encodes_text_lines() {
        let cases = [
            (
                Event::Chat {
                    from: "alice".into(),
                    text: "hi".into(),
                },
                "[12:00:01] alice: hi\n",
            ),
            (
                Event::Notice {
                    text: "bob left".into(),
                },
                "[12:00:01] *** bob left\n",
            ),
            (
                Event::Info {
                    text: "Welcome, alice".into(),
                    user: Some("alice".into()),
                    limits: None,
                },
                "[12:00:01] *** Welcome, alice\n",
            ),
            (
                Event::Info {
                    text: "Hello".into(),
                    user: None,
                    limits: None,
                },
                "[12:00:01] *** Hello\n",
            ),
            (
                Event::UserList {
                    users: names(&["a", "b", "c"]),
                },
                "[12:00:01] *** Online (3): a, b, c\n",
            ),
            (
                Event::UserList {
                    users: names(&["solo"]),
                },
                "[12:00:01] *** Online (1): solo\n",
            ),
            (
                Event::UserList { users: vec![] },
                "[12:00:01] *** Online (0)\n",
            ),
            (
                Event::Private {
                    from: "alice".into(),
                    text: "hi".into(),
                },
                "[12:00:01] [private] alice: hi\n",
            ),
            (
                Event::PrivateSent {
                    to: "bob".into(),
                    text: "hi".into(),
                },
                "[12:00:01] [private to bob] hi\n",
            ),
            (
                Event::Error {
                    code: ErrorCode::UnknownUser,
                    text: "User 'x' is not online.".into(),
                },
                "[12:00:01] !!! User 'x' is not online.\n",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(text_of(body), want);
        }
    }

    #[test]
    fn presence_writes_nothing_in_text_mode() {
        let mut out = b"keep".to_vec();
        let presence = Event::Presence {
            joined: names(&["a"]),
            left: vec![],
            count: 1,
        };
        let sent = encode_text(&presence, T, &mut out);
        assert!(!sent);
        assert_eq!(out, b"keep");
    }

    #[test]
    fn sanitises_control_characters_in_text_mode() {
        let body = Event::Chat {
            from: "ev\u{1b}il".into(),
            text: "a\nb\r\nc\td\u{0}e\u{1b}[2Jf\u{7f}g\u{80}h\u{9b}31mi\u{9f}j\u{a0}k é😀".into(),
        };
        assert_eq!(
            text_of(body),
            "[12:00:01] ev\u{fffd}il: a b  c d\u{fffd}e\u{fffd}[2Jf\u{fffd}g\u{fffd}h\u{fffd}31mi\u{fffd}j\u{a0}k é😀\n"
        );
        let body = Event::UserList {
            users: names(&["x\ny", "\u{85}z"]),
        };
        assert_eq!(text_of(body), "[12:00:01] *** Online (2): x y, \u{fffd}z\n");
        let body = Event::PrivateSent {
            to: "b\rob".into(),
            text: "\u{7}".into(),
        };
        assert_eq!(text_of(body), "[12:00:01] [private to b ob] \u{fffd}\n");
        let body = Event::Error {
            code: ErrorCode::BadFormat,
            text: "\u{1b}]0;title\u{7}".into(),
        };
        assert_eq!(text_of(body), "[12:00:01] !!! \u{fffd}]0;title\u{fffd}\n");
    }

    #[test]
    fn sanitises_every_c0_and_c1_control() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let out = text_of(Event::Notice {
                text: c.to_string(),
            });
            let want = if matches!(c, '\n' | '\r' | '\t') {
                " "
            } else {
                "\u{fffd}"
            };
            assert_eq!(
                out,
                format!("[12:00:01] *** {want}\n"),
                "U+{:04X}",
                c as u32
            );
        }
    }
}
