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

use std::rc::Rc;
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
    /// Rooms: room messages carry `room`, `seq` and `ts`, and the room
    /// requests are allowed. Without it a user lives in `#lobby` only and
    /// sees exactly the original protocol.
    pub rooms: bool,
    /// Joining the server replays the lobby's recent history.
    pub history: bool,
}

/// Where a client left off in a room: resume after `seq` of history `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Since {
    pub epoch: String,
    pub seq: u64,
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
    /// Cluster mode: the name was taken on another node while the nodes were
    /// apart, and that user keeps it.
    NameLost,
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
            LeaveReason::NameLost => "name held on another node",
        }
    }
}

/// What a connection asks of the hub. Decoders of every wire produce these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Join under `name` (not yet checked against the name rules).
    Join { name: String, features: Features },
    /// A chat line for `room` (`None`: the user's current room, `#lobby`
    /// until another is joined). May be empty: the hub refuses that.
    Say { room: Option<String>, text: String },
    /// Join (creating it if allowed) a room; with `since`, everything after it.
    RoomJoin { room: String, since: Option<Since> },
    /// Leave a room (`None`: the current one).
    RoomLeave { room: Option<String> },
    /// The list of rooms.
    Rooms,
    /// Set a room's topic, or (`topic: None`) ask for it.
    Topic {
        room: Option<String>,
        topic: Option<String>,
    },
    /// Older messages of a room: `before` exclusive (`None`: the newest).
    History {
        room: Option<String>,
        before: Option<u64>,
        limit: Option<usize>,
    },
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
    /// A room name that breaks the rules, or a room that may not be created.
    RoomInvalid,
    /// Too many rooms for this user or this server.
    RoomLimit,
    /// A room request for a room the user is not in.
    NotInRoom,
    /// History cannot be served (the store is unavailable).
    HistoryUnavailable,
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
            ErrorCode::RoomInvalid => "room_invalid",
            ErrorCode::RoomLimit => "room_limit",
            ErrorCode::NotInRoom => "not_in_room",
            ErrorCode::HistoryUnavailable => "history_unavailable",
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
    /// Information for one user; `user` is set on the welcome after a join,
    /// `limits` on the welcome of a user with rooms.
    Info {
        text: String,
        user: Option<String>,
        limits: Option<RoomLimits>,
    },
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
    /// The user is in `room` now: its topic, members (or only their count in
    /// a big room) and where its history stands.
    RoomJoined {
        room: Rc<str>,
        topic: String,
        users: Option<Vec<String>>,
        count: usize,
        epoch: Rc<str>,
        seq: u64,
        /// Put there on joining the server (the lobby), not asked for.
        auto: bool,
    },
    /// The user left `room`.
    RoomLeft { room: Rc<str> },
    /// Messages of `room`, oldest first. `complete`: nothing older exists.
    /// `gap`: what was asked for could not be served exactly (the newest
    /// messages follow instead). `replay`: sent on joining, not asked for.
    History {
        room: Rc<str>,
        messages: Vec<Rc<Message>>,
        complete: bool,
        gap: bool,
        replay: bool,
    },
    /// Rooms, the busiest first (at most a hundred), and how many exist.
    RoomList { rooms: Vec<RoomInfo>, total: usize },
    /// `room`'s topic, as set by `by` ("" when it is only being shown).
    Topic {
        room: Rc<str>,
        topic: String,
        by: String,
    },
}

/// The room limits a user with rooms is told on joining.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomLimits {
    pub rooms_per_user: usize,
    pub rooms_per_server: usize,
    pub topic_bytes: usize,
    pub name_chars: usize,
}

/// One entry of a room list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    pub name: Rc<str>,
    pub users: usize,
    pub topic: String,
}

/// The room a message belongs to, and its place in the room's history
/// (`seq`, for chat lines only: notices and presence are not history).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomTag {
    pub name: Rc<str>,
    pub seq: Option<u64>,
}

/// One message with the time the hub produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Milliseconds since the Unix epoch, UTC.
    pub ts_ms: u64,
    pub event: Event,
    /// The room it belongs to, if any.
    pub room: Option<RoomTag>,
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
    /// `rooms`: the recipients joined with the rooms feature and get the
    /// room details; the others get the original protocol's form.
    Deliver {
        to: &'a [ConnId],
        msg: &'a Message,
        rooms: bool,
    },
    /// Append a room message or topic to the durable history (before the
    /// turn's output is flushed, when the history is synchronous).
    Persist { msg: &'a Message },
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
    /// Cluster mode: claim `name` (folded: `folded`) for `conn` on every
    /// node; answer with [`Hub::claim_answered`](super::Hub::claim_answered).
    Claim {
        conn: ConnId,
        name: &'a str,
        folded: &'a str,
    },
    /// Cluster mode: a room's chat line or topic change, to be numbered and
    /// sent to every node; it comes back through
    /// [`Hub::ingest`](super::Hub::ingest) (this node included).
    Post { msg: &'a Message },
    /// Cluster mode: a private message from `conn` for a user who is not on
    /// this node (`to` as typed); answer with
    /// [`Hub::private_answered`](super::Hub::private_answered).
    Private {
        conn: ConnId,
        to: &'a str,
        from: &'a str,
        text: &'a str,
    },
    /// Cluster mode: this node has local members in `room` (`on`), or no
    /// longer has any. A room switched on is loaded (its recent history and
    /// topic) and answered with [`Hub::room_synced`](super::Hub::room_synced).
    Watch { room: &'a str, on: bool },
    /// Cluster mode: the local user `name` entered `room` (`on`) or left it;
    /// the other nodes' member lists follow.
    Presence {
        room: &'a str,
        name: &'a str,
        on: bool,
    },
}
