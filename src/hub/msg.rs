//! The hub's vocabulary: who asks ([`ConnId`], [`UserId`]), what they ask
//! ([`Request`]), what the chat says ([`Message`], [`Event`]) and what the hub
//! asks the server to do ([`Effect`]).
//!
//! Nothing here knows a wire format: no JSON keys, no text-mode commands. Texts
//! carried by events are plain sentences; where a hint depends on how the user
//! talks to the server (how to join, how to ask for the list), the event is
//! typed (an [`ErrorCode`], [`Event::Summary`]) and each wire's encoder words it.
//! Time is milliseconds since the Unix epoch (UTC); only encoders turn it into
//! a local time of day.

use std::time::Instant;

/// A connection as the hub knows it: an opaque handle chosen by the server (its
/// slab key plus a serial), so a message for a user who left never reaches a
/// later connection that reuses the key. The hub never looks inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: u32,
    pub serial: u32,
}

/// A user as the hub knows it: the hub's own id, valid while the user is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub u32);

/// A room as the hub knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoomId(pub u32);

/// The current time, read once per loop turn by the server.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Wall-clock time: milliseconds since the Unix epoch, UTC.
    pub unix_ms: u64,
    /// Monotonic time for rate limits and summaries.
    pub mono: Instant,
}

/// Optional protocol features a client asks for in its `join`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// Small `presence` deltas instead of full user lists.
    pub presence: bool,
}

/// How a user wants to learn about other users' presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceMode {
    /// Legacy clients: a full user list after every change.
    FullLists,
    /// Clients that joined with the `presence` feature: small deltas, full list on request.
    Deltas,
}

/// Why a connection's user left; told to the hub once, when the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    /// The user said goodbye (`exit`, `/quit`, a clean WebSocket close).
    Exit,
    /// The peer closed or reset the connection without saying goodbye.
    Closed,
    /// A deadline passed (no join in time, no pong, idle).
    Timeout,
    /// The client read too slowly: its output went over the limit.
    OverLimit,
    /// The client broke its wire protocol (bad frame, binary on a text chat).
    ProtocolError,
    /// The server is stopping.
    Drain,
}

impl LeaveReason {
    /// True when the user chose to leave (the others see "has left", not
    /// "disconnected unexpectedly").
    pub fn is_voluntary(self) -> bool {
        matches!(self, LeaveReason::Exit)
    }

    /// A short word for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Exit => "exit",
            LeaveReason::Closed => "closed",
            LeaveReason::Timeout => "timeout",
            LeaveReason::OverLimit => "over output limit",
            LeaveReason::ProtocolError => "protocol error",
            LeaveReason::Drain => "server stopping",
        }
    }
}

/// What a connection asks of the hub. Decoders of every wire produce these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Join under `name` (not yet checked against the name rules).
    Join { name: String, features: Features },
    /// A chat line for the user's room (may be empty: the hub refuses that).
    Say { text: String },
    /// A private message to the user named `to` (matched case-insensitively).
    Private { to: String, text: String },
    /// A full user list for the asker.
    Who,
    /// An answer the connection's own session wrote (a decode error, `/help`),
    /// queued through the hub so it stays in order with the hub's replies.
    Reply(Event),
}

/// Machine-readable reason carried by every error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The line is not valid JSON.
    BadJson,
    /// The line is not valid UTF-8.
    BadUtf8,
    /// Valid JSON or text, but not a valid request.
    BadFormat,
    /// A text-mode `/command` that does not exist.
    UnknownCommand,
    /// The requested name breaks the name rules.
    NameInvalid,
    /// Someone online already has that name.
    NameTaken,
    /// A request that needs a joined user.
    NotJoined,
    /// A second join on one connection.
    AlreadyJoined,
    /// A private message to someone not online.
    UnknownUser,
    /// A message with no text.
    EmptyMessage,
    /// A line over the length limit.
    LineTooLong,
    /// The client reads too slowly and is being dropped.
    OutputOverflow,
    /// Too many messages too fast.
    RateLimited,
    /// The connection limit is reached.
    ServerFull,
    /// The limit per client address is reached.
    TooManyConnections,
}

impl ErrorCode {
    /// The snake_case name carried on the wire.
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

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A chat line from a user, to the room (sender included).
    Chat { from: String, text: String },
    /// A notice signed by the server (joins, leaves, shutdown).
    Notice { text: String },
    /// Information for one user; `user` is set on the welcome after a join.
    Info { text: String, user: Option<String> },
    /// Every online user's name, sorted case-insensitively.
    UserList { users: Vec<String> },
    /// Presence delta: who joined and left since the last one, and the count after.
    Presence {
        joined: Vec<String>,
        left: Vec<String>,
        count: usize,
    },
    /// Summary mode's periodic notice: joins and leaves since the last one.
    /// Each wire words it, with its own way of asking for the full list.
    Summary {
        joined: u64,
        left: u64,
        count: usize,
    },
    /// A private message, to its target only.
    Private { from: String, text: String },
    /// Confirmation to the sender of a private message (`to` is the real name).
    PrivateSent { to: String, text: String },
    /// An error for one connection.
    Error { code: ErrorCode, text: String },
}

/// One message with the time the hub produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: u64,
    pub event: Event,
}

/// What the hub asks the server to do, drained once per turn with
/// [`Hub::drain_effects`](super::Hub::drain_effects).
///
/// Order: effects come out exactly in the order the hub produced them. A
/// request's effects are contiguous and in request order; for a join, the
/// outcome (`Joined` or `JoinRefused`) comes before the replies it causes (the
/// welcome or the error), so a session knows its state before its first
/// message is written. End-of-turn presence follows everything of the turn.
#[derive(Debug, PartialEq, Eq)]
pub enum Effect<'a> {
    /// Queue `msg` for every connection in `to` (already resolved: room
    /// membership, presence mode and join order are the hub's business).
    Deliver { to: &'a [ConnId], msg: &'a Message },
    /// `conn` joined as `name`.
    Joined {
        conn: ConnId,
        user: UserId,
        name: &'a str,
    },
    /// `conn`'s join was refused with `code` (its error reply follows).
    JoinRefused { conn: ConnId, code: ErrorCode },
    /// The user of `conn` is gone.
    Gone {
        conn: ConnId,
        user: UserId,
        name: &'a str,
        why: LeaveReason,
    },
}
