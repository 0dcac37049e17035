//! The chat hub: who is online, what their names are, and who gets which message.
//!
//! The hub is protocol-agnostic and does no I/O: the server feeds it events
//! (`handle_*`) with the current time as an argument, and takes the resulting
//! messages from its outbox ([`Hub::drain_outbox`]). Each [`Outgoing`] names its
//! recipients as a [`Recipients`] set, so the server encodes a broadcast once per
//! wire format and shares the bytes among all recipients.
//!
//! # Presence
//! Joins and leaves mark names as "touched"; [`Hub::end_turn`] (once per loop
//! turn) turns everything touched in that turn into ONE `user_list` for legacy
//! clients and ONE `presence` delta for clients that asked for deltas, so a join
//! storm costs one list per client per turn instead of one per join.
//! Above [`HubConfig::summary_above_users`] users, per-user join/leave notices and
//! pushed lists give way to a periodic summary notice (every
//! [`HubConfig::summary_interval`]); lists are then sent only on request (`who`).

pub mod names;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::proto::chat::{Body, ErrorCode, Features, ServerMsg, Stamp};

/// A connection as the hub knows it: the server's slab key plus a serial number,
/// so a message for a user who left never reaches a later connection reusing the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub key: u32,
    pub serial: u32,
}

/// How a user wants to learn about other users' presence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceMode {
    /// Legacy clients: a full `user_list` after every change.
    FullLists,
    /// Clients that joined with the `presence` feature: small deltas, full list on request.
    Deltas,
}

/// One online user, as listed for broadcast iteration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub id: ConnId,
    pub mode: PresenceMode,
    /// [`Outgoing::seq`] of this user's welcome: older broadcasts, still in the
    /// outbox when the user joined, are not theirs.
    pub since: u64,
}

/// Who receives an [`Outgoing`] message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recipients {
    /// Every online user.
    All,
    /// Online users in [`PresenceMode::FullLists`].
    FullListUsers,
    /// Online users in [`PresenceMode::Deltas`].
    DeltaUsers,
    /// One connection (joined or not).
    One(ConnId),
}

/// A message and its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    pub to: Recipients,
    pub msg: ServerMsg,
    /// Position among every message the hub ever produced.
    pub seq: u64,
}

impl Outgoing {
    /// True when `member` receives this broadcast: the set includes it, and it had
    /// joined when the message was produced. (Recipient sets are resolved at
    /// delivery, once per turn; without the second check, a user joining later in
    /// the same turn would get earlier notices and chat before its own welcome.)
    pub fn reaches(&self, member: &Member) -> bool {
        let in_set = match self.to {
            Recipients::All => true,
            Recipients::FullListUsers => member.mode == PresenceMode::FullLists,
            Recipients::DeltaUsers => member.mode == PresenceMode::Deltas,
            Recipients::One(id) => member.id == id,
        };
        in_set && member.since <= self.seq
    }
}

/// The current time, read once per loop turn by the server.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Local wall-clock time for the `timestamp` fields.
    pub stamp: Stamp,
    /// Monotonic time for rate limits and summaries.
    pub mono: Instant,
}

/// Hub settings (a slice of the server's `Config`).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Above this many online users, join/leave notices and pushed lists become a periodic summary.
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

#[derive(Debug)]
struct User {
    id: ConnId,
    name: String,
    folded: String,
    /// Position in `Hub::members`.
    index: usize,
    tokens: f64,
    refilled: Instant,
}

/// Why a user left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    Voluntary,
    Abrupt,
}

/// The chat state machine. See the module docs.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    /// Indexed by `ConnId::key`.
    users: Vec<Option<User>>,
    by_name: HashMap<String, ConnId>,
    members: Vec<Member>,
    /// (display name, folded name) of every join/leave since the last `end_turn`.
    touched: Vec<(String, String)>,
    summary_mode: bool,
    window_joined: u64,
    window_left: u64,
    last_summary: Option<Instant>,
    outbox: Vec<Outgoing>,
    /// Messages produced since start (the next [`Outgoing::seq`]).
    produced: u64,
    relayed: u64,
    /// The server is shutting down: users leave without notices or list updates.
    closing: bool,
}

impl Hub {
    /// An empty hub.
    pub fn new(cfg: HubConfig) -> Hub {
        Hub {
            cfg,
            users: Vec::new(),
            by_name: HashMap::new(),
            members: Vec::new(),
            touched: Vec::new(),
            summary_mode: false,
            window_joined: 0,
            window_left: 0,
            last_summary: None,
            outbox: Vec::new(),
            produced: 0,
            relayed: 0,
            closing: false,
        }
    }

    /// Online users, in no particular order (for broadcast iteration).
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Number of online users.
    pub fn user_count(&self) -> usize {
        self.members.len()
    }

    /// Chat and private messages relayed since start.
    pub fn relayed(&self) -> u64 {
        self.relayed
    }

    /// The joined name of `id`, if it has joined.
    pub fn name_of(&self, id: ConnId) -> Option<&str> {
        self.user(id).map(|u| u.name.as_str())
    }

    /// Takes every message produced since the last call, in order.
    /// The caller may hand the emptied vector back with [`Hub::recycle_outbox`].
    pub fn drain_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }

    /// Returns a drained outbox vector so its allocation is reused.
    pub fn recycle_outbox(&mut self, mut v: Vec<Outgoing>) {
        if self.outbox.is_empty() {
            v.clear();
            self.outbox = v;
        }
    }

    /// `join`: validates and reserves the name, welcomes the user, announces them.
    pub fn handle_join(&mut self, id: ConnId, name: &str, features: Features, now: Now) {
        if let Some(u) = self.user(id) {
            let text = format!("You have already joined as {}.", u.name);
            self.error(id, ErrorCode::AlreadyJoined, text, now);
            return;
        }
        if let Err(e) = names::validate(name) {
            let text = format!("Invalid name: {e}. Please choose another name.");
            self.error(id, ErrorCode::NameInvalid, text, now);
            return;
        }
        let folded = names::fold(name);
        if self.by_name.contains_key(&folded) {
            let text = format!("The name '{name}' is already taken. Please choose another name.");
            self.error(id, ErrorCode::NameTaken, text, now);
            return;
        }
        let mode = if features.presence {
            PresenceMode::Deltas
        } else {
            PresenceMode::FullLists
        };
        let Ok(slot) = usize::try_from(id.key) else {
            return;
        };
        if self.users.len() <= slot {
            self.users.resize_with(slot + 1, || None);
        }
        self.by_name.insert(folded.clone(), id);
        self.members.push(Member {
            id,
            mode,
            since: self.produced,
        });
        let user = User {
            id,
            name: name.to_owned(),
            folded: folded.clone(),
            index: self.members.len() - 1,
            tokens: f64::from(self.cfg.rate_limit_per_sec),
            refilled: now.mono,
        };
        if let Some(cell) = self.users.get_mut(slot) {
            *cell = Some(user);
        }

        let n = self.members.len();
        let welcome = format!(
            "Welcome {name}! You are now connected to the chat. {n} user{} online.",
            if n == 1 { "" } else { "s" }
        );
        self.push(
            Recipients::One(id),
            now,
            Body::Info {
                text: welcome,
                user: Some(name.to_owned()),
            },
        );
        let summarised = n > self.cfg.summary_above_users;
        if mode == PresenceMode::Deltas && !summarised {
            let users = self.sorted_names();
            self.push(Recipients::One(id), now, Body::UserList { users });
        }
        if summarised {
            self.window_joined += 1;
        } else {
            let text = format!("Client {name} has joined the chat.");
            self.push(Recipients::All, now, Body::Notice { text });
        }
        self.touched.push((name.to_owned(), folded));
    }

    /// `message`: a broadcast, or a private message when the text is `@NAME rest`.
    pub fn handle_message(&mut self, id: ConnId, text: &str, now: Now) {
        let limit = self.cfg.rate_limit_per_sec;
        let Some(user) = self.user_mut(id) else {
            let text =
                "Please join first: send {\"type\":\"join\",\"sender\":\"NAME\"}.".to_owned();
            self.error(id, ErrorCode::NotJoined, text, now);
            return;
        };
        if limit > 0 && !take_token(user, limit, now.mono) {
            let text = format!("Too many messages: at most {limit} per second. Message dropped.");
            self.error(id, ErrorCode::RateLimited, text, now);
            return;
        }
        let from = user.name.clone();
        if text.trim().is_empty() {
            self.error(
                id,
                ErrorCode::EmptyMessage,
                "Empty message ignored.".into(),
                now,
            );
            return;
        }
        if let Some(rest) = text.strip_prefix('@') {
            self.private(id, from, rest, now);
            return;
        }
        self.relayed += 1;
        self.push(
            Recipients::All,
            now,
            Body::Chat {
                from,
                text: text.to_owned(),
            },
        );
    }

    fn private(&mut self, id: ConnId, from: String, rest: &str, now: Now) {
        let (target, body) = match rest.split_once(char::is_whitespace) {
            Some((t, b)) => (t, b.trim_start()),
            None => (rest, ""),
        };
        if target.is_empty() || body.trim().is_empty() {
            let text = "Usage: @name message".to_owned();
            self.error(id, ErrorCode::BadFormat, text, now);
            return;
        }
        let Some(&to_id) = self.by_name.get(&names::fold(target)) else {
            let text = format!("User '{target}' is not online.");
            self.error(id, ErrorCode::UnknownUser, text, now);
            return;
        };
        let to_name = self.name_of(to_id).unwrap_or(target).to_owned();
        self.relayed += 1;
        self.push(
            Recipients::One(to_id),
            now,
            Body::Private {
                from,
                text: body.to_owned(),
            },
        );
        self.push(
            Recipients::One(id),
            now,
            Body::PrivateSent {
                to: to_name,
                text: body.to_owned(),
            },
        );
    }

    /// `exit`: the user leaves voluntarily. Not joined: nothing happens.
    pub fn handle_exit(&mut self, id: ConnId, now: Now) {
        self.remove(id, Leave::Voluntary, now);
    }

    /// The connection is gone (EOF, reset, timeout, protocol violation) without an `exit`.
    /// A no-op when the user already left or never joined.
    pub fn handle_disconnect(&mut self, id: ConnId, now: Now) {
        self.remove(id, Leave::Abrupt, now);
    }

    /// `who`: a full user list for the asker.
    pub fn handle_who(&mut self, id: ConnId, now: Now) {
        if self.user(id).is_none() {
            let text = "Please join first.".to_owned();
            self.error(id, ErrorCode::NotJoined, text, now);
            return;
        }
        let users = self.sorted_names();
        self.push(Recipients::One(id), now, Body::UserList { users });
    }

    /// An `error` for one connection (decode errors found by the server go through here,
    /// so they stay in order with the hub's own replies).
    pub fn send_error(&mut self, id: ConnId, code: ErrorCode, text: String, now: Now) {
        self.error(id, code, text, now);
    }

    /// An `info` for one connection (e.g. text-mode `/help`).
    pub fn send_info(&mut self, id: ConnId, text: String, now: Now) {
        self.push(Recipients::One(id), now, Body::Info { text, user: None });
    }

    /// The server is shutting down: everyone online gets `text` as a notice, and
    /// from now on users leave silently (no leave notices, no list updates).
    pub fn shutdown(&mut self, text: String, now: Now) {
        self.push(Recipients::All, now, Body::Notice { text });
        self.closing = true;
        self.touched.clear();
    }

    /// Once per loop turn: sends the debounced presence updates and, in summary
    /// mode, the periodic summary when it is due.
    pub fn end_turn(&mut self, now: Now) {
        if self.closing {
            self.touched.clear();
            return;
        }
        let n = self.members.len();
        let summarised = n > self.cfg.summary_above_users;
        if self.summary_mode && !summarised {
            // Leaving summary mode: flush the window and resynchronise everyone's list.
            self.emit_summary(now);
            self.touched.clear();
            let users = self.sorted_names();
            self.push(Recipients::All, now, Body::UserList { users });
        } else if summarised {
            self.touched.clear();
            if !self.summary_mode {
                // Entering summary mode: the first summary comes one interval from now.
                self.last_summary = Some(now.mono);
            }
            let due = self
                .last_summary
                .is_none_or(|t| now.mono.saturating_duration_since(t) >= self.cfg.summary_interval);
            if due && self.window_joined + self.window_left > 0 {
                self.emit_summary(now);
            }
        } else if !self.touched.is_empty() {
            self.emit_presence(now);
        }
        self.summary_mode = summarised;
    }

    fn emit_summary(&mut self, now: Now) {
        let (j, l) = (self.window_joined, self.window_left);
        self.window_joined = 0;
        self.window_left = 0;
        self.last_summary = Some(now.mono);
        if j + l == 0 {
            return;
        }
        let count = self.members.len();
        let text = format!(
            "{j} joined and {l} left since the last summary; {count} users online. Send /who (or {{\"type\":\"who\"}}) for the list."
        );
        self.push(Recipients::All, now, Body::Notice { text });
        self.push(
            Recipients::DeltaUsers,
            now,
            Body::Presence {
                joined: Vec::new(),
                left: Vec::new(),
                count,
            },
        );
    }

    fn emit_presence(&mut self, now: Now) {
        let touched = std::mem::take(&mut self.touched);
        let (mut any_full, mut any_delta) = (false, false);
        for m in &self.members {
            match m.mode {
                PresenceMode::FullLists => any_full = true,
                PresenceMode::Deltas => any_delta = true,
            }
        }
        if any_full {
            let users = self.sorted_names();
            self.push(Recipients::FullListUsers, now, Body::UserList { users });
        }
        if any_delta {
            // Net effect of the turn: a name that left and came back is "joined";
            // one that came and went is "left" (removing an unknown name is harmless).
            let mut joined: Vec<String> = Vec::new();
            let mut left: Vec<String> = Vec::new();
            for (display, folded) in &touched {
                let current = self.by_name.get(folded).and_then(|&id| self.name_of(id));
                match current {
                    Some(cur) if cur == display => {
                        if !joined.contains(display) {
                            joined.push(display.clone());
                        }
                    }
                    _ => {
                        if !left.contains(display) {
                            left.push(display.clone());
                        }
                    }
                }
            }
            let count = self.members.len();
            self.push(
                Recipients::DeltaUsers,
                now,
                Body::Presence {
                    joined,
                    left,
                    count,
                },
            );
        }
    }

    fn remove(&mut self, id: ConnId, why: Leave, now: Now) {
        let Some(user) = self.take_user(id) else {
            return;
        };
        self.by_name.remove(&user.folded);
        let idx = user.index;
        if idx < self.members.len() {
            self.members.swap_remove(idx);
            if let Some(moved) = self.members.get(idx).copied()
                && let Some(u) = self.user_mut(moved.id)
            {
                u.index = idx;
            }
        }
        let summarised = self.members.len() + 1 > self.cfg.summary_above_users;
        if self.closing {
            return;
        }
        if summarised {
            self.window_left += 1;
        } else {
            let text = match why {
                Leave::Voluntary => format!("Client {} has left the chat.", user.name),
                Leave::Abrupt => format!("Client {} disconnected unexpectedly.", user.name),
            };
            self.push(Recipients::All, now, Body::Notice { text });
        }
        self.touched.push((user.name, user.folded));
    }

    fn sorted_names(&self) -> Vec<String> {
        let mut v: Vec<&User> = self
            .members
            .iter()
            .filter_map(|m| self.user(m.id))
            .collect();
        v.sort_unstable_by(|a, b| a.folded.cmp(&b.folded));
        v.into_iter().map(|u| u.name.clone()).collect()
    }

    fn error(&mut self, id: ConnId, code: ErrorCode, text: String, now: Now) {
        self.push(Recipients::One(id), now, Body::Error { code, text });
    }

    fn push(&mut self, to: Recipients, now: Now, body: Body) {
        self.outbox.push(Outgoing {
            to,
            msg: ServerMsg {
                stamp: now.stamp,
                body,
            },
            seq: self.produced,
        });
        self.produced += 1;
    }

    fn user(&self, id: ConnId) -> Option<&User> {
        let slot = usize::try_from(id.key).ok()?;
        self.users
            .get(slot)
            .and_then(Option::as_ref)
            .filter(|u| u.id == id)
    }

    fn user_mut(&mut self, id: ConnId) -> Option<&mut User> {
        let slot = usize::try_from(id.key).ok()?;
        self.users
            .get_mut(slot)
            .and_then(Option::as_mut)
            .filter(|u| u.id == id)
    }

    fn take_user(&mut self, id: ConnId) -> Option<User> {
        let slot = usize::try_from(id.key).ok()?;
        let cell = self.users.get_mut(slot)?;
        if cell.as_ref().is_some_and(|u| u.id == id) {
            cell.take()
        } else {
            None
        }
    }
}

/// Token bucket: `limit` tokens per second, bucket size `limit`.
fn take_token(user: &mut User, limit: u32, now: Instant) -> bool {
    let rate = f64::from(limit);
    let elapsed = now.saturating_duration_since(user.refilled).as_secs_f64();
    user.tokens = (user.tokens + elapsed * rate).min(rate);
    user.refilled = now;
    if user.tokens >= 1.0 {
        user.tokens -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests;
