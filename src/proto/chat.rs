//! Chat messages: client requests decoded from JSON or text-mode lines, server
//! messages encoded to JSON objects or human-readable text lines.
//! Knows nothing of sockets, the hub or framing (no `\n` for JSON, no WebSocket header).

use std::fmt;

use super::json::JsonError;

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
    Join { name: String, features: Features },
    /// `{"type":"message","message":TEXT}`; `@NAME rest` makes it private.
    Message { text: String },
    /// `{"type":"exit"}`; `/quit` in text mode.
    Exit,
    /// `{"type":"who"}`; `/who` in text mode: a full user list for the asker.
    Who,
    /// `/help` in text mode (answered by the server, not the hub).
    Help,
}

/// Why a client line was refused; each maps to an `error` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    InvalidUtf8,
    InvalidJson(JsonError),
    NotAnObject,
    MissingField(&'static str),
    BadField(&'static str),
    UnknownType(String),
    UnknownCommand(String),
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
            _ => ErrorCode::BadFormat,
        }
    }
}

/// Machine-readable reason carried by every `error` (`"code"` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadJson,
    BadUtf8,
    BadFormat,
    UnknownCommand,
    NameInvalid,
    NameTaken,
    NotJoined,
    AlreadyJoined,
    UnknownUser,
    EmptyMessage,
    LineTooLong,
    OutputOverflow,
    RateLimited,
    ServerFull,
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
        }
    }
}

/// What a server message says; see [`ServerMsg`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A chat line from a user, broadcast to all (sender included).
    Chat { from: String, text: String },
    /// Join/leave/summary notice: `"type":"message"` with sender `Server`.
    Notice { text: String },
    /// `"type":"info"` from `Server`; `user` is set on the welcome of a join.
    Info { text: String, user: Option<String> },
    /// Full list of online users (`count` = `users.len()`).
    UserList { users: Vec<String> },
    /// Presence delta for clients that asked for the `presence` feature.
    Presence { joined: Vec<String>, left: Vec<String>, count: usize },
    /// A private message, to its target only.
    Private { from: String, text: String },
    /// Confirmation to the sender of a private message.
    PrivateSent { to: String, text: String },
    /// An error for one client.
    Error { code: ErrorCode, text: String },
}

/// One server-to-client message with its timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMsg {
    pub stamp: Stamp,
    pub body: Body,
}

impl ServerMsg {
    /// Appends the JSON object (no trailing newline).
    pub fn encode_json(&self, out: &mut Vec<u8>) {
        let _ = out;
        todo!("encode_json")
    }

    /// Appends the text-mode line (with `\n`); returns false when text-mode
    /// clients get nothing for this message (e.g. presence deltas).
    pub fn encode_text(&self, out: &mut Vec<u8>) -> bool {
        let _ = out;
        todo!("encode_text")
    }
}

/// Decodes one JSON-mode line (without its `\n`).
pub fn decode_json(line: &[u8]) -> Result<ClientMsg, DecodeError> {
    let _ = line;
    todo!("decode_json")
}

/// Decodes one text-mode line after the name line (commands or chat text).
pub fn decode_text(line: &[u8]) -> Result<ClientMsg, DecodeError> {
    let _ = line;
    todo!("decode_text")
}
