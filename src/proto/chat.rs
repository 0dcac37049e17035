//! Chat messages: client requests decoded from JSON or text-mode lines, server
//! messages encoded to JSON objects or human-readable text lines.
//! Knows nothing of sockets, the hub or framing (no `\n` for JSON, no WebSocket header).
//!
//! Decoding checks shape only (types and required fields); name rules, empty
//! messages and `@NAME` routing belong to the hub. Encoding happens once per
//! broadcast and wire format: JSON output carries every string exactly (JSON
//! escaped), text output replaces control characters so a terminal reading it
//! cannot be fed extra lines or escape sequences.

use std::fmt;

use super::json::{self, JsonError, Value};

/// Deepest array/object nesting accepted in a client's JSON line.
pub const MAX_JSON_DEPTH: usize = 32;

/// Longest unknown `type` or command echoed back in an error, in chars.
const MAX_ECHO_CHARS: usize = 32;

/// Local wall-clock time of day as `HH:MM:SS`, computed once per loop turn by the server.
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

    /// The `HH:MM:SS` text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("00:00:00")
    }
}

/// Optional protocol features a client asks for in its `join`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `"features":["presence"]`: small `presence` deltas instead of full `user_list`s.
    pub presence: bool,
}

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMsg {
    /// `{"type":"join","sender":NAME,"features":[...]}`; in text mode, the first line.
    Join {
        /// The requested name, not yet checked against the name rules.
        name: String,
        /// Optional features asked for.
        features: Features,
    },
    /// `{"type":"message","message":TEXT}`; `@NAME rest` makes it private.
    Message {
        /// The text as sent (may be empty; the hub refuses empty messages).
        text: String,
    },
    /// `{"type":"exit"}`; `/quit` or `/exit` in text mode.
    Exit,
    /// `{"type":"who"}`; `/who` in text mode: a full user list for the asker.
    Who,
    /// `/help` in text mode (answered by the server, not the hub).
    Help,
}

/// Why a client line was refused; each maps to an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line is not one valid JSON text (or nests too deep).
    InvalidJson(JsonError),
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
    /// A text-mode command with missing parts; holds its usage line.
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
}

/// Machine-readable reason carried by every `error` (`"code"` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// `bad_json`: the line is not valid JSON.
    BadJson,
    /// `bad_utf8`: the line is not valid UTF-8.
    BadUtf8,
    /// `bad_format`: valid JSON or text, but not a valid request.
    BadFormat,
    /// `unknown_command`: a text-mode `/command` that does not exist.
    UnknownCommand,
    /// `name_invalid`: the requested name breaks the name rules.
    NameInvalid,
    /// `name_taken`: someone online already has that name.
    NameTaken,
    /// `not_joined`: a request that needs a joined user.
    NotJoined,
    /// `already_joined`: a second `join` on one connection.
    AlreadyJoined,
    /// `unknown_user`: a private message to someone not online.
    UnknownUser,
    /// `empty_message`: a message with no text.
    EmptyMessage,
    /// `too_long`: a line over the length limit.
    LineTooLong,
    /// `output_overflow`: the client reads too slowly and is being dropped.
    OutputOverflow,
    /// `rate_limited`: too many messages too fast.
    RateLimited,
    /// `server_full`: the connection limit is reached.
    ServerFull,
    /// `too_many_connections`: the limit per client address is reached.
    TooManyConnections,
}

impl ErrorCode {
    /// The snake_case wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadJson => "bad_json",
            ErrorCode::BadUtf8 => "bad_utf8",
            ErrorCode::BadFormat => "bad_format",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::NameInvalid => "name_invalid",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::EmptyMessage => "empty_message",
            ErrorCode::LineTooLong => "too_long",
            ErrorCode::OutputOverflow => "output_overflow",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::TooManyConnections => "too_many_connections",
        }
    }
}

/// What a server message says; see [`ServerMsg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A chat line from a user, broadcast to all (sender included).
    Chat {
        /// The sender's joined name.
        from: String,
        /// The chat text.
        text: String,
    },
    /// Join/leave/summary notice: `"type":"message"` with sender `Server`.
    Notice {
        /// The notice text.
        text: String,
    },
    /// `"type":"info"` from `Server`; `user` is set on the welcome of a join.
    Info {
        /// The information text.
        text: String,
        /// The joined name, on the welcome after a join.
        user: Option<String>,
    },
    /// Full list of online users (`count` = `users.len()`).
    UserList {
        /// Every online user's name.
        users: Vec<String>,
    },
    /// Presence delta for clients that asked for the `presence` feature.
    Presence {
        /// Names that joined since the last delta.
        joined: Vec<String>,
        /// Names that left since the last delta.
        left: Vec<String>,
        /// Users online after the change.
        count: usize,
    },
    /// A private message, to its target only.
    Private {
        /// The sender's joined name.
        from: String,
        /// The private text.
        text: String,
    },
    /// Confirmation to the sender of a private message.
    PrivateSent {
        /// The recipient's joined name.
        to: String,
        /// The private text as delivered.
        text: String,
    },
    /// An error for one client.
    Error {
        /// The machine-readable reason.
        code: ErrorCode,
        /// A human-readable explanation.
        text: String,
    },
}

/// One server-to-client message with its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMsg {
    /// When the server produced it (local time of day).
    pub stamp: Stamp,
    /// What it says.
    pub body: Body,
}

impl ServerMsg {
    /// Appends the JSON object (no trailing newline).
    ///
    /// Keys come in a fixed order, `"type"` first and `"timestamp"` last (see
    /// the wire formats on [`Body`]); strings are kept exactly, escaped per JSON.
    pub fn encode_json(&self, out: &mut Vec<u8>) {
        out.reserve(self.body.text_len_hint() + 96);
        match &self.body {
            Body::Chat { from, text } => {
                out.extend_from_slice(br#"{"type":"message","sender":"#);
                json::write_str(out, from);
                out.extend_from_slice(br#","message":"#);
                json::write_str(out, text);
            }
            Body::Notice { text } => {
                out.extend_from_slice(br#"{"type":"message","sender":"Server","message":"#);
                json::write_str(out, text);
            }
            Body::Info { text, user } => {
                out.extend_from_slice(br#"{"type":"info","sender":"Server","message":"#);
                json::write_str(out, text);
                if let Some(user) = user {
                    out.extend_from_slice(br#","user":"#);
                    json::write_str(out, user);
                }
            }
            Body::UserList { users } => {
                out.extend_from_slice(br#"{"type":"user_list","users":"#);
                write_json_names(out, users);
                out.extend_from_slice(br#","count":"#);
                write_decimal(out, users.len());
            }
            Body::Presence {
                joined,
                left,
                count,
            } => {
                out.extend_from_slice(br#"{"type":"presence","joined":"#);
                write_json_names(out, joined);
                out.extend_from_slice(br#","left":"#);
                write_json_names(out, left);
                out.extend_from_slice(br#","count":"#);
                write_decimal(out, *count);
            }
            Body::Private { from, text } => {
                out.extend_from_slice(br#"{"type":"private","sender":"#);
                json::write_str(out, from);
                out.extend_from_slice(br#","message":"#);
                json::write_str(out, text);
            }
            Body::PrivateSent { to, text } => {
                out.extend_from_slice(br#"{"type":"private_sent","sender":"Server","to_user":"#);
                json::write_str(out, to);
                out.extend_from_slice(br#","message":"#);
                json::write_str(out, text);
            }
            Body::Error { code, text } => {
                out.extend_from_slice(br#"{"type":"error","sender":"Server","code":"#);
                json::write_str(out, code.as_str());
                out.extend_from_slice(br#","message":"#);
                json::write_str(out, text);
            }
        }
        out.extend_from_slice(br#","timestamp":"#);
        json::write_str(out, self.stamp.as_str());
        out.push(b'}');
    }

    /// Appends the text-mode line (with `\n`); returns false when text-mode
    /// clients get nothing for this message (e.g. presence deltas).
    ///
    /// Every string is made terminal-safe on the way out: `\n`, `\r` and `\t`
    /// become a space, any other control character (C0, DEL, C1 U+0080..U+009F)
    /// becomes U+FFFD, so no one can inject lines or escape sequences.
    pub fn encode_text(&self, out: &mut Vec<u8>) -> bool {
        if let Body::Presence { .. } = self.body {
            return false;
        }
        out.reserve(self.body.text_len_hint() + 32);
        out.push(b'[');
        out.extend_from_slice(self.stamp.as_str().as_bytes());
        out.extend_from_slice(b"] ");
        match &self.body {
            Body::Chat { from, text } => {
                write_terminal_safe(out, from);
                out.extend_from_slice(b": ");
                write_terminal_safe(out, text);
            }
            Body::Notice { text } | Body::Info { text, .. } => {
                out.extend_from_slice(b"*** ");
                write_terminal_safe(out, text);
            }
            Body::UserList { users } => {
                out.extend_from_slice(b"*** Online (");
                write_decimal(out, users.len());
                out.push(b')');
                for (i, user) in users.iter().enumerate() {
                    out.extend_from_slice(if i == 0 { b": " } else { b", " });
                    write_terminal_safe(out, user);
                }
            }
            Body::Presence { .. } => {}
            Body::Private { from, text } => {
                out.extend_from_slice(b"[private] ");
                write_terminal_safe(out, from);
                out.extend_from_slice(b": ");
                write_terminal_safe(out, text);
            }
            Body::PrivateSent { to, text } => {
                out.extend_from_slice(b"[private to ");
                write_terminal_safe(out, to);
                out.extend_from_slice(b"] ");
                write_terminal_safe(out, text);
            }
            Body::Error { text, .. } => {
                out.extend_from_slice(b"!!! ");
                write_terminal_safe(out, text);
            }
        }
        out.push(b'\n');
        true
    }
}

impl Body {
    /// Rough byte size of the strings inside, to reserve output space once.
    fn text_len_hint(&self) -> usize {
        let names = |list: &[String]| list.iter().map(|n| n.len() + 4).sum::<usize>();
        match self {
            Body::Chat { from, text } | Body::Private { from, text } => from.len() + text.len(),
            Body::Notice { text } | Body::Error { text, .. } => text.len(),
            Body::Info { text, user } => text.len() + user.as_ref().map_or(0, |u| u.len() + 10),
            Body::UserList { users } => names(users),
            Body::Presence { joined, left, .. } => names(joined) + names(left),
            Body::PrivateSent { to, text } => to.len() + text.len(),
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

/// Appends `n` in decimal without allocating.
fn write_decimal(out: &mut Vec<u8>, mut n: usize) {
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

/// At most [`MAX_ECHO_CHARS`] chars of `s`, for error messages that quote the client.
fn echo(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO_CHARS) {
        Some((cut, _)) => s.get(..cut).unwrap_or_default().to_owned(),
        None => s.to_owned(),
    }
}

/// Decodes one JSON-mode line (without its `\n`).
///
/// Accepts the object forms listed on [`ClientMsg`] plus the old
/// `{"type":"private","to":NAME,"message":TEXT}`, which becomes
/// `Message { text: "@NAME TEXT" }`. Extra fields are ignored and a field
/// whose value is `null` counts as absent. `Err` when the line is not UTF-8,
/// not JSON (nesting limit [`MAX_JSON_DEPTH`]), not an object, or a field the
/// type needs is missing (`MissingField`) or not of the right JSON type
/// (`BadField`); also `BadField("to")` for a private target that is empty or
/// holds whitespace, which could not be routed. Names are not checked against
/// the name rules here.
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
        "message" => Ok(ClientMsg::Message {
            text: required_str(&value, "message")?.to_owned(),
        }),
        "private" => {
            let to = required_str(&value, "to")?;
            if to.is_empty() || to.contains(char::is_whitespace) {
                return Err(DecodeError::BadField("to"));
            }
            let message = required_str(&value, "message")?;
            Ok(ClientMsg::Message {
                text: private_text(to, message),
            })
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

/// Known feature names switch their flag on; anything else (unknown names,
/// non-string items) is skipped so newer clients can ask for more.
fn features_from(items: &[Value]) -> Features {
    let mut features = Features::default();
    for item in items {
        if item.as_str() == Some("presence") {
            features.presence = true;
        }
    }
    features
}

/// The `@NAME TEXT` form the hub routes as a private message.
fn private_text(to: &str, text: &str) -> String {
    let mut out = String::with_capacity(to.len() + text.len() + 2);
    out.push('@');
    out.push_str(to);
    out.push(' ');
    out.push_str(text);
    out
}

/// True when the first non-whitespace byte of `line` is `{`: the connection's
/// first line picks JSON mode this way, anything else picks text mode.
pub fn looks_like_json(line: &[u8]) -> bool {
    line.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
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
    Ok(ClientMsg::Join {
        name: name.to_owned(),
        features: Features { presence: true },
    })
}

/// Decodes one text-mode line after the name line (commands or chat text).
///
/// Commands (case-insensitive, extra arguments ignored unless used):
/// `/who` → `Who`; `/quit` or `/exit` → `Exit`; `/help` → `Help`;
/// `/msg NAME TEXT` → `Message { text: "@NAME TEXT" }` (`Err(Usage)` when NAME
/// or TEXT is missing); `//TEXT` → `Message { text: "/TEXT" }` (the escape for
/// a leading slash); any other `/cmd` → `Err(UnknownCommand("/cmd"))` (the
/// command is cut to 32 chars). Any other line is `Message` exactly as
/// received, empty lines included (the hub refuses empty messages).
/// `Err(InvalidUtf8)` when the line is not UTF-8.
pub fn decode_text(line: &[u8]) -> Result<ClientMsg, DecodeError> {
    let text = std::str::from_utf8(line).map_err(|_| DecodeError::InvalidUtf8)?;
    let Some(after_slash) = text.strip_prefix('/') else {
        return Ok(ClientMsg::Message {
            text: text.to_owned(),
        });
    };
    if after_slash.starts_with('/') {
        return Ok(ClientMsg::Message {
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
    } else if is_command(command, &["msg"]) {
        let (to, message) = split_word(args);
        if to.is_empty() || message.is_empty() {
            return Err(DecodeError::Usage(MSG_USAGE));
        }
        Ok(ClientMsg::Message {
            text: private_text(to, message),
        })
    } else {
        let mut shown = String::with_capacity(command.len() + 1);
        shown.push('/');
        shown.push_str(&echo(command));
        Err(DecodeError::UnknownCommand(shown))
    }
}

/// The usage line of `/msg`, carried by its `DecodeError::Usage`.
pub const MSG_USAGE: &str = "/msg NAME TEXT";

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
    use super::*;
    use proptest::prelude::*;

    const T: Stamp = Stamp(*b"12:00:01");

    fn msg(text: &str) -> Result<ClientMsg, DecodeError> {
        Ok(ClientMsg::Message {
            text: text.to_owned(),
        })
    }

    fn join(name: &str, presence: bool) -> Result<ClientMsg, DecodeError> {
        Ok(ClientMsg::Join {
            name: name.to_owned(),
            features: Features { presence },
        })
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn json_of(body: Body) -> String {
        let mut out = Vec::new();
        ServerMsg { stamp: T, body }.encode_json(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn text_of(body: Body) -> String {
        let mut out = Vec::new();
        assert!(ServerMsg { stamp: T, body }.encode_text(&mut out));
        String::from_utf8(out).unwrap()
    }

    // ---- Stamp ----

    #[test]
    fn stamp_formats_hh_mm_ss_modulo_ranges() {
        assert_eq!(Stamp::from_hms(9, 5, 7).as_str(), "09:05:07");
        assert_eq!(Stamp::from_hms(23, 59, 59).as_str(), "23:59:59");
        assert_eq!(Stamp::from_hms(24, 60, 61).as_str(), "00:00:01");
        assert_eq!(Stamp::from_hms(255, 255, 255).as_str(), "15:15:15");
    }

    // ---- decode_json ----

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
            msg("@bob psst")
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
    fn decodes_old_private_form_as_at_message() {
        assert_eq!(
            decode_json(br#"{"type":"private","to":"BOB","message":"hi"}"#),
            msg("@BOB hi")
        );
        assert_eq!(
            decode_json(br#"{"type":"private","sender":"a","to":"bob","message":" two  spaces "}"#),
            msg("@bob  two  spaces ")
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
            Err(DecodeError::UnknownType("é".repeat(MAX_ECHO_CHARS)))
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

    // ---- mode detection and text mode ----

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
    fn decodes_text_name_line_as_join_with_presence() {
        assert_eq!(decode_text_name(b"alice"), join("alice", true));
        assert_eq!(decode_text_name(b"  bob \t"), join("bob", true));
        assert_eq!(decode_text_name("zoë".as_bytes()), join("zoë", true));
        assert_eq!(decode_text_name(b""), join("", true));
        assert_eq!(decode_text_name(b"a b"), join("a b", true));
        assert_eq!(decode_text_name(b"/who"), join("/who", true));
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
        assert_eq!(decode_text(b"/msg bob hi there"), msg("@bob hi there"));
        assert_eq!(
            decode_text(b"/MSG  bob   hi  there "),
            msg("@bob hi  there ")
        );
        assert_eq!(decode_text(b"/msg\tbob\thi"), msg("@bob hi"));
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
        assert_eq!(decode_text(b"@bob hi"), msg("@bob hi"));
    }

    // ---- encode_json, byte for byte ----

    #[test]
    fn encodes_chat_json() {
        let body = Body::Chat {
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
        let body = Body::Notice {
            text: "alice joined the chat".into(),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"message","sender":"Server","message":"alice joined the chat","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_info_json_with_and_without_user() {
        let body = Body::Info {
            text: "Welcome".into(),
            user: None,
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"info","sender":"Server","message":"Welcome","timestamp":"12:00:01"}"#
        );
        let body = Body::Info {
            text: "Welcome, alice".into(),
            user: Some("alice".into()),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"info","sender":"Server","message":"Welcome, alice","user":"alice","timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_user_list_json() {
        let body = Body::UserList {
            users: names(&["a", "b", "c"]),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"user_list","users":["a","b","c"],"count":3,"timestamp":"12:00:01"}"#
        );
        let body = Body::UserList { users: vec![] };
        assert_eq!(
            json_of(body),
            r#"{"type":"user_list","users":[],"count":0,"timestamp":"12:00:01"}"#
        );
    }

    #[test]
    fn encodes_presence_json() {
        let body = Body::Presence {
            joined: names(&["d"]),
            left: names(&["a", "b"]),
            count: 1234567,
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"presence","joined":["d"],"left":["a","b"],"count":1234567,"timestamp":"12:00:01"}"#
        );
        let body = Body::Presence {
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
        let body = Body::Private {
            from: "alice".into(),
            text: "psst".into(),
        };
        assert_eq!(
            json_of(body),
            r#"{"type":"private","sender":"alice","message":"psst","timestamp":"12:00:01"}"#
        );
        let body = Body::PrivateSent {
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
        let body = Body::Error {
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
        ServerMsg {
            stamp: T,
            body: Body::Notice { text: "x".into() },
        }
        .encode_json(&mut out);
        assert!(out.starts_with(b"prefix{"));
        assert!(out.ends_with(b"}"));
    }

    #[test]
    fn text_mode_neutralises_separators_and_bidi_controls_only() {
        let body = Body::Chat {
            from: "a".into(),
            text: "x\u{2028}y\u{2029}z \u{202e}evil\u{202c} \u{2066}iso\u{2069} \u{2027}\u{202f}\u{2065}\u{206a} é".into(),
        };
        let mut out = Vec::new();
        ServerMsg { stamp: T, body }.encode_text(&mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "[12:00:01] a: x y z \u{fffd}evil\u{fffd} \u{fffd}iso\u{fffd} \u{2027}\u{202f}\u{2065}\u{206a} é\n"
        );
    }

    #[test]
    fn encode_json_escapes_and_keeps_text_exactly() {
        let nasty = "q\"b\\s/\n\r\t\u{0}\u{1b}[31m\u{7f}\u{85}é😀\u{2028}";
        let body = Body::Chat {
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
        let Ok(ClientMsg::Message { text }) =
            decode_json(br#"{"type":"message","message":"\ud83d\ude00 \uD834\uDD1E"}"#)
        else {
            panic!("not a message");
        };
        assert_eq!(text, "😀 𝄞");
        let out = json_of(Body::Chat {
            from: "a".into(),
            text: text.clone(),
        });
        assert!(out.contains("\"message\":\"😀 𝄞\""));
        let theirs: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(theirs["message"], text);
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
            let out = json_of(Body::Error {
                code,
                text: String::new(),
            });
            let theirs: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(theirs["code"], name);
        }
    }

    // ---- encode_text, byte for byte ----

    #[test]
    fn encodes_text_lines() {
        let cases = [
            (
                Body::Chat {
                    from: "alice".into(),
                    text: "hi".into(),
                },
                "[12:00:01] alice: hi\n",
            ),
            (
                Body::Notice {
                    text: "bob left".into(),
                },
                "[12:00:01] *** bob left\n",
            ),
            (
                Body::Info {
                    text: "Welcome, alice".into(),
                    user: Some("alice".into()),
                },
                "[12:00:01] *** Welcome, alice\n",
            ),
            (
                Body::Info {
                    text: "Hello".into(),
                    user: None,
                },
                "[12:00:01] *** Hello\n",
            ),
            (
                Body::UserList {
                    users: names(&["a", "b", "c"]),
                },
                "[12:00:01] *** Online (3): a, b, c\n",
            ),
            (
                Body::UserList {
                    users: names(&["solo"]),
                },
                "[12:00:01] *** Online (1): solo\n",
            ),
            (
                Body::UserList { users: vec![] },
                "[12:00:01] *** Online (0)\n",
            ),
            (
                Body::Private {
                    from: "alice".into(),
                    text: "hi".into(),
                },
                "[12:00:01] [private] alice: hi\n",
            ),
            (
                Body::PrivateSent {
                    to: "bob".into(),
                    text: "hi".into(),
                },
                "[12:00:01] [private to bob] hi\n",
            ),
            (
                Body::Error {
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
        let sent = ServerMsg {
            stamp: T,
            body: Body::Presence {
                joined: names(&["a"]),
                left: vec![],
                count: 1,
            },
        }
        .encode_text(&mut out);
        assert!(!sent);
        assert_eq!(out, b"keep");
    }

    #[test]
    fn sanitises_control_characters_in_text_mode() {
        let body = Body::Chat {
            from: "ev\u{1b}il".into(),
            text: "a\nb\r\nc\td\u{0}e\u{1b}[2Jf\u{7f}g\u{80}h\u{9b}31mi\u{9f}j\u{a0}k é😀".into(),
        };
        assert_eq!(
            text_of(body),
            "[12:00:01] ev\u{fffd}il: a b  c d\u{fffd}e\u{fffd}[2Jf\u{fffd}g\u{fffd}h\u{fffd}31mi\u{fffd}j\u{a0}k é😀\n"
        );
        let body = Body::UserList {
            users: names(&["x\ny", "\u{85}z"]),
        };
        assert_eq!(text_of(body), "[12:00:01] *** Online (2): x y, \u{fffd}z\n");
        let body = Body::PrivateSent {
            to: "b\rob".into(),
            text: "\u{7}".into(),
        };
        assert_eq!(text_of(body), "[12:00:01] [private to b ob] \u{fffd}\n");
        let body = Body::Error {
            code: ErrorCode::BadFormat,
            text: "\u{1b}]0;title\u{7}".into(),
        };
        assert_eq!(text_of(body), "[12:00:01] !!! \u{fffd}]0;title\u{fffd}\n");
    }

    #[test]
    fn sanitises_every_c0_and_c1_control() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let out = text_of(Body::Notice {
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

    #[test]
    fn write_decimal_writes_any_usize() {
        for n in [0, 7, 10, 99, 100, 123_456, usize::MAX] {
            let mut out = Vec::new();
            write_decimal(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
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

    fn body() -> impl Strategy<Value = Body> {
        let s = tricky_string;
        let list = || prop::collection::vec(tricky_string(), 0..5);
        prop_oneof![
            (s(), s()).prop_map(|(from, text)| Body::Chat { from, text }),
            s().prop_map(|text| Body::Notice { text }),
            (s(), prop::option::of(s())).prop_map(|(text, user)| Body::Info { text, user }),
            list().prop_map(|users| Body::UserList { users }),
            (list(), list(), any::<usize>()).prop_map(|(joined, left, count)| Body::Presence {
                joined,
                left,
                count
            }),
            (s(), s()).prop_map(|(from, text)| Body::Private { from, text }),
            (s(), s()).prop_map(|(to, text)| Body::PrivateSent { to, text }),
            s().prop_map(|text| Body::Error {
                code: ErrorCode::RateLimited,
                text
            }),
        ]
    }

    /// The strings `body` should carry in its JSON form, by key.
    fn expected_json(body: &Body) -> serde_json::Value {
        use serde_json::json;
        match body {
            Body::Chat { from, text } => json!({"type":"message","sender":from,"message":text}),
            Body::Notice { text } => json!({"type":"message","sender":"Server","message":text}),
            Body::Info { text, user: None } => {
                json!({"type":"info","sender":"Server","message":text})
            }
            Body::Info {
                text,
                user: Some(user),
            } => json!({"type":"info","sender":"Server","message":text,"user":user}),
            Body::UserList { users } => {
                json!({"type":"user_list","users":users,"count":users.len()})
            }
            Body::Presence {
                joined,
                left,
                count,
            } => json!({"type":"presence","joined":joined,"left":left,"count":count}),
            Body::Private { from, text } => json!({"type":"private","sender":from,"message":text}),
            Body::PrivateSent { to, text } => {
                json!({"type":"private_sent","sender":"Server","to_user":to,"message":text})
            }
            Body::Error { code, text } => {
                json!({"type":"error","sender":"Server","code":code.as_str(),"message":text})
            }
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
            let line = serde_json::json!({"type":"message","sender":"x","message":text}).to_string();
            prop_assert_eq!(decode_json(line.as_bytes()), msg(&text));
        }

        #[test]
        fn encode_json_parses_and_carries_exact_strings(body in body(), h in 0u8..24, m in 0u8..60, s in 0u8..60) {
            let stamp = Stamp::from_hms(h, m, s);
            let mut out = Vec::new();
            ServerMsg { stamp, body: body.clone() }.encode_json(&mut out);
            let text = std::str::from_utf8(&out).unwrap();
            let theirs: serde_json::Value = serde_json::from_str(text).unwrap();
            let mut want = expected_json(&body);
            want["timestamp"] = stamp.as_str().into();
            prop_assert_eq!(&theirs, &want);
            let tail = format!(",\"timestamp\":\"{}\"}}", stamp.as_str());
            prop_assert!(text.starts_with("{\"type\":"), "{}", text);
            prop_assert!(text.ends_with(&tail), "{}", text);
            prop_assert!(json::parse(text, MAX_JSON_DEPTH).is_ok());
        }

        #[test]
        fn encode_text_is_one_terminal_safe_line(body in body()) {
            let mut out = Vec::new();
            let sent = ServerMsg { stamp: T, body: body.clone() }.encode_text(&mut out);
            prop_assert_eq!(sent, !matches!(body, Body::Presence { .. }));
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
