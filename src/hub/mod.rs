//! The chat hub: the chat domain with no wire vocabulary and no I/O.
//!
//! - [`msg`]: requests in, effects out, events, ids, time as Unix milliseconds;
//! - [`directory`]: names ⇄ users (the hub's own [`UserId`]s) ⇄ local connections;
//! - [`room`]: members, who hears what, presence debounce and summary mode;
//! - [`names`]: the name rules.
//!
//! The server feeds [`Request`]s for a connection ([`Hub::handle`]), tells the
//! hub once when a connection ends ([`Hub::handle_left`]), closes the turn
//! ([`Hub::end_turn`]) and drains the [`Effect`]s ([`Hub::drain_effects`]), with
//! the current time passed in. There is one room on the wire today, `#lobby`,
//! which every user joins; the hub keeps rooms in a table and routes every
//! broadcast through a room, so more rooms need no change to the directory.
//!
//! # Effect order
//! Effects come out in the order they were produced: each request's effects
//! together, in request order (a join's outcome before its welcome or error),
//! then end-of-turn presence. A broadcast's recipients are resolved when it is
//! drained, from the room's members then, minus those who joined after it was
//! produced (their welcome comes first).

pub mod directory;
pub mod msg;
pub mod names;
pub mod room;

use std::time::{Duration, Instant};

pub use msg::{
    ConnId, Effect, ErrorCode, Event, Features, LeaveReason, Message, Now, PresenceMode, Request,
    RoomId, UserId,
};

use directory::{ClaimError, Directory};
use room::{Audience, Member, Room, SummaryPolicy};

/// The room everyone is in.
pub const LOBBY: &str = "#lobby";

/// Hub settings (a slice of the server's `Config`).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Above this many users in a room, join/leave notices and pushed lists become a periodic summary.
    pub summary_above_users: usize,
    /// How often the summary is sent while in summary mode.
    pub summary_interval: Duration,
    /// Chat messages per second allowed per user (burst of the same size); 0 = unlimited.
    pub rate_limit_per_sec: u32,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            summary_above_users: 1000,
            summary_interval: Duration::from_secs(5),
            rate_limit_per_sec: 0,
        }
    }
}

/// Who a produced message is for, resolved when drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Conn(ConnId),
    Room(RoomId, Audience),
}

/// An effect as stored until drained.
#[derive(Debug)]
enum Pending {
    Deliver {
        to: Target,
        msg: Message,
        seq: u64,
    },
    Joined {
        conn: ConnId,
        user: UserId,
    },
    JoinRefused {
        conn: ConnId,
        code: ErrorCode,
    },
    Gone {
        conn: ConnId,
        user: UserId,
        name: String,
        why: LeaveReason,
    },
}

/// The chat state machine. See the module docs.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    policy: SummaryPolicy,
    dir: Directory,
    rooms: Vec<Room>,
    lobby: RoomId,
    outbox: Vec<Pending>,
    /// Messages produced since start (the next message's sequence number).
    produced: u64,
    relayed: u64,
    /// The server is stopping: users leave without notices or list updates.
    closing: bool,
    /// Reused recipient list for draining.
    scratch: Vec<ConnId>,
}

impl Hub {
    /// An empty hub with its lobby.
    pub fn new(cfg: HubConfig) -> Hub {
        let policy = SummaryPolicy {
            above_users: cfg.summary_above_users,
            interval: cfg.summary_interval,
        };
        let lobby = RoomId(0);
        Hub {
            cfg,
            policy,
            dir: Directory::new(),
            rooms: vec![Room::new(lobby, LOBBY)],
            lobby,
            outbox: Vec::new(),
            produced: 0,
            relayed: 0,
            closing: false,
            scratch: Vec::new(),
        }
    }

    /// Users online.
    pub fn user_count(&self) -> usize {
        self.dir.len()
    }

    /// Chat and private messages relayed since start.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// The name `conn` joined under (for tests and introspection; the server
    /// learns joins from [`Effect::Joined`]).
    pub fn name_of(&self, conn: ConnId) -> Option<&str> {
        let id = self.dir.user_of(conn)?;
        self.dir.get(id).map(|u| u.name.as_str())
    }

    /// One request from `conn`.
    pub fn handle(&mut self, conn: ConnId, req: Request, now: Now) {
        match req {
            Request::Join { name, features } => self.join(conn, &name, features, now),
            Request::Say { text } => self.say(conn, text, now),
            Request::Private { to, text } => self.private(conn, &to, text, now),
            Request::Who => self.who(conn, now),
            Request::Reply(event) => self.push(Target::Conn(conn), now, event),
        }
    }

    /// `conn` has ended, for `why`: its user (if any) leaves every room. Told
    /// once per connection; a no-op for a connection without a user.
    pub fn handle_left(&mut self, conn: ConnId, why: LeaveReason, now: Now) {
        let Some((id, user)) = self.dir.release(conn) else {
            return;
        };
        self.outbox.push(Pending::Gone {
            conn,
            user: id,
            name: user.name.clone(),
            why,
        });
        let silent = self.closing;
        let mut notices = Vec::new();
        for room in &mut self.rooms {
            if room
                .remove(id, &user.name, &user.folded, &self.policy, silent)
                .is_some()
                && !silent
                && !room.summarised(&self.policy, 1)
            {
                notices.push(room.id);
            }
        }
        for room in notices {
            let text = if why.is_voluntary() {
                format!("Client {} has left the chat.", user.name)
            } else {
                format!("Client {} disconnected unexpectedly.", user.name)
            };
            self.push(
                Target::Room(room, Audience::All),
                now,
                Event::Notice { text },
            );
        }
    }

    /// The server is stopping: everyone online gets `text` as a notice, and
    /// from now on users leave silently (no leave notices, no list updates).
    pub fn shutdown(&mut self, text: String, now: Now) {
        // Everyone is in the lobby.
        self.push(
            Target::Room(self.lobby, Audience::All),
            now,
            Event::Notice { text },
        );
        self.closing = true;
        for room in &mut self.rooms {
            room.forget_touched();
        }
    }

    /// Once per loop turn: each room's debounced presence updates and, in
    /// summary mode, its summary when due.
    pub fn end_turn(&mut self, now: Now) {
        if self.closing {
            for room in &mut self.rooms {
                room.forget_touched();
            }
            return;
        }
        for i in 0..self.rooms.len() {
            let Some(room) = self.rooms.get_mut(i) else {
                continue;
            };
            let id = room.id;
            let out = room.end_turn(&self.dir, &self.policy, now.mono);
            for (aud, event) in out {
                self.push(Target::Room(id, aud), now, event);
            }
        }
    }

    /// Hands every effect produced since the last call to `f`, in order (see
    /// the module docs), and forgets them.
    pub fn drain_effects(&mut self, mut f: impl FnMut(Effect<'_>)) {
        let mut outbox = std::mem::take(&mut self.outbox);
        let mut scratch = std::mem::take(&mut self.scratch);
        for p in &outbox {
            match p {
                Pending::Deliver {
                    to: Target::Conn(c),
                    msg,
                    ..
                } => f(Effect::Deliver {
                    to: std::slice::from_ref(c),
                    msg,
                }),
                Pending::Deliver {
                    to: Target::Room(room, aud),
                    msg,
                    seq,
                } => {
                    scratch.clear();
                    if let Some(r) = self.room(*room) {
                        r.resolve(*aud, *seq, &mut scratch);
                    }
                    if !scratch.is_empty() {
                        f(Effect::Deliver { to: &scratch, msg });
                    }
                }
                // The name as of now ("" when the user left in the same turn).
                Pending::Joined { conn, user } => f(Effect::Joined {
                    conn: *conn,
                    user: *user,
                    name: self.dir.get(*user).map_or("", |u| u.name.as_str()),
                }),
                Pending::JoinRefused { conn, code } => f(Effect::JoinRefused {
                    conn: *conn,
                    code: *code,
                }),
                Pending::Gone {
                    conn,
                    user,
                    name,
                    why,
                } => f(Effect::Gone {
                    conn: *conn,
                    user: *user,
                    name,
                    why: *why,
                }),
            }
        }
        outbox.clear();
        if self.outbox.is_empty() {
            self.outbox = outbox;
        }
        self.scratch = scratch;
    }

    /// True when effects are waiting to be drained.
    pub fn has_effects(&self) -> bool {
        !self.outbox.is_empty()
    }

    fn room(&self, id: RoomId) -> Option<&Room> {
        self.rooms.get(id.0 as usize)
    }

    fn join(&mut self, conn: ConnId, name: &str, features: Features, now: Now) {
        let mode = if features.presence {
            PresenceMode::Deltas
        } else {
            PresenceMode::FullLists
        };
        let tokens = f64::from(self.cfg.rate_limit_per_sec);
        let id = match self.dir.claim(conn, name, mode, tokens, now.mono) {
            Ok(id) => id,
            Err(ClaimError::AlreadyBound) => {
                let current = self.name_of(conn).unwrap_or_default();
                let text = format!("You have already joined as {current}.");
                self.error(conn, ErrorCode::AlreadyJoined, text, now);
                return;
            }
            Err(ClaimError::Invalid(e)) => {
                self.outbox.push(Pending::JoinRefused {
                    conn,
                    code: ErrorCode::NameInvalid,
                });
                let text = format!("Invalid name: {e}. Please choose another name.");
                self.error(conn, ErrorCode::NameInvalid, text, now);
                return;
            }
            Err(ClaimError::Taken) => {
                self.outbox.push(Pending::JoinRefused {
                    conn,
                    code: ErrorCode::NameTaken,
                });
                let text =
                    format!("The name '{name}' is already taken. Please choose another name.");
                self.error(conn, ErrorCode::NameTaken, text, now);
                return;
            }
        };
        self.outbox.push(Pending::Joined { conn, user: id });
        let lobby = self.lobby;
        let member = Member {
            user: id,
            conn,
            mode,
            since: self.produced,
        };
        let policy = self.policy;
        let (Some(room), Some(user)) = (self.rooms.get_mut(lobby.0 as usize), self.dir.get(id))
        else {
            return;
        };
        room.add(member, &user.name, &user.folded, &policy);
        let n = self.dir.len();
        let summarised = room.summarised(&policy, 0);
        let list =
            (mode == PresenceMode::Deltas && !summarised).then(|| room.sorted_names(&self.dir));
        let welcome = format!(
            "Welcome {name}! You are now connected to the chat. {n} user{} online.",
            if n == 1 { "" } else { "s" }
        );
        self.push(
            Target::Conn(conn),
            now,
            Event::Info {
                text: welcome,
                user: Some(name.to_owned()),
            },
        );
        if let Some(users) = list {
            self.push(Target::Conn(conn), now, Event::UserList { users });
        }
        if !summarised {
            let text = format!("Client {name} has joined the chat.");
            self.push(
                Target::Room(lobby, Audience::All),
                now,
                Event::Notice { text },
            );
        }
    }

    /// The sender's user and name, after the joined and rate checks; `None`
    /// when the request was refused (the error is queued).
    fn sender(&mut self, conn: ConnId, now: Now) -> Option<(UserId, String)> {
        let limit = self.cfg.rate_limit_per_sec;
        let Some(id) = self.dir.user_of(conn) else {
            self.error(conn, ErrorCode::NotJoined, "Please join first.".into(), now);
            return None;
        };
        let user = self.dir.get_mut(id)?;
        if limit > 0 && !take_token(&mut user.tokens, &mut user.refilled, limit, now.mono) {
            let text = format!("Too many messages: at most {limit} per second. Message dropped.");
            self.error(conn, ErrorCode::RateLimited, text, now);
            return None;
        }
        Some((id, user.name.clone()))
    }

    fn say(&mut self, conn: ConnId, text: String, now: Now) {
        let Some((_, from)) = self.sender(conn, now) else {
            return;
        };
        if text.trim().is_empty() {
            self.error(
                conn,
                ErrorCode::EmptyMessage,
                "Empty message ignored.".into(),
                now,
            );
            return;
        }
        self.relayed += 1;
        let lobby = self.lobby;
        self.push(
            Target::Room(lobby, Audience::All),
            now,
            Event::Chat { from, text },
        );
    }

    fn private(&mut self, conn: ConnId, to: &str, text: String, now: Now) {
        let Some((_, from)) = self.sender(conn, now) else {
            return;
        };
        if to.is_empty() || text.trim().is_empty() {
            let msg = "A private message needs a recipient and a text.".to_owned();
            self.error(conn, ErrorCode::BadFormat, msg, now);
            return;
        }
        let Some(target) = self.dir.find(to).and_then(|id| self.dir.get(id)) else {
            let msg = format!("User '{to}' is not online.");
            self.error(conn, ErrorCode::UnknownUser, msg, now);
            return;
        };
        let (to_conn, to_name) = (target.conn, target.name.clone());
        self.relayed += 1;
        self.push(
            Target::Conn(to_conn),
            now,
            Event::Private {
                from,
                text: text.clone(),
            },
        );
        self.push(
            Target::Conn(conn),
            now,
            Event::PrivateSent { to: to_name, text },
        );
    }

    fn who(&mut self, conn: ConnId, now: Now) {
        if self.dir.user_of(conn).is_none() {
            self.error(conn, ErrorCode::NotJoined, "Please join first.".into(), now);
            return;
        }
        let users = self
            .room(self.lobby)
            .map(|r| r.sorted_names(&self.dir))
            .unwrap_or_default();
        self.push(Target::Conn(conn), now, Event::UserList { users });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, text: String, now: Now) {
        self.push(Target::Conn(conn), now, Event::Error { code, text });
    }

    fn push(&mut self, to: Target, now: Now, event: Event) {
        self.outbox.push(Pending::Deliver {
            to,
            msg: Message {
                ts_ms: now.unix_ms,
                event,
            },
            seq: self.produced,
        });
        self.produced += 1;
    }
}

/// Token bucket: `limit` tokens per second, bucket size `limit`.
fn take_token(tokens: &mut f64, refilled: &mut Instant, limit: u32, now: Instant) -> bool {
    let rate = f64::from(limit);
    let elapsed = now.saturating_duration_since(*refilled).as_secs_f64();
    *tokens = (*tokens + elapsed * rate).min(rate);
    *refilled = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests;
