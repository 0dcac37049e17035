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

pub mod archive;
mod cluster;
pub mod directory;
pub mod msg;
pub mod names;
pub mod room;
pub mod room_names;
mod rooms;

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

pub use msg::{
    ConnId, Effect, ErrorCode, Event, Features, LeaveReason, Message, Now, PresenceMode, Request,
    RoomId, RoomInfo, RoomLimits, RoomTag, Since, UserId,
};

pub use archive::{Archive, NoArchive};
use directory::{ClaimError, Directory};
use room::{Audience, Member, Replay, Room, SummaryPolicy, Waiter};
use room_names::{MAX_ROOM_NAME_CHARS, MAX_TOPIC_BYTES, fold_room};

/// The room everyone is in.
pub const LOBBY: &str = "#lobby";

/// Most rooms listed in one `room_list`.
pub(crate) const MAX_LISTED_ROOMS: usize = 100;

/// Hub settings (a slice of the server's `Config`).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Above this many users in a room, join/leave notices and pushed lists become a periodic summary.
    pub summary_above_users: usize,
    /// How often the summary is sent while in summary mode.
    pub summary_interval: Duration,
    /// Chat messages per second allowed per user (burst of the same size); 0 = unlimited.
    pub rate_limit_per_sec: u32,
    /// Rooms one user may be in at once.
    pub max_rooms_per_user: usize,
    /// Rooms the server holds at once.
    pub max_rooms: usize,
    /// Users may create rooms by joining them (else only the permanent ones exist).
    pub room_create: bool,
    /// Rooms that always exist (`--room`), besides `#lobby`.
    pub permanent_rooms: Vec<String>,
    /// Lobby messages replayed to clients without the rooms feature on joining.
    pub legacy_replay: usize,
    /// Messages replayed on joining a room.
    pub replay_count: usize,
    /// Recent messages each room keeps in memory.
    pub ring_capacity: usize,
    /// Most messages one history page carries.
    pub max_history_page: usize,
    /// The history's identity: a `since` from another epoch cannot be served exactly.
    pub epoch: String,
    /// Cluster mode: names are claimed, room lines numbered and private
    /// messages routed by the cluster (see [`cluster`]).
    pub cluster: bool,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            summary_above_users: 1000,
            summary_interval: Duration::from_secs(5),
            rate_limit_per_sec: 0,
            max_rooms_per_user: 20,
            max_rooms: 10_000,
            room_create: true,
            permanent_rooms: Vec::new(),
            legacy_replay: 0,
            replay_count: 50,
            ring_capacity: 1000,
            max_history_page: 200,
            epoch: "0".into(),
            cluster: false,
        }
    }
}

/// Who a produced message is for, resolved when drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// One connection; `rooms`: it gets the rooms form.
    Conn { conn: ConnId, rooms: bool },
    /// Members of a room; `rooms_only`: members without the rooms feature skip it.
    Room {
        room: RoomId,
        aud: Audience,
        rooms_only: bool,
    },
    /// Everyone online.
    Everyone,
}

/// An effect as stored until drained.
#[derive(Debug)]
pub(crate) enum Pending {
    Deliver {
        to: Target,
        msg: Rc<Message>,
        seq: u64,
    },
    Persist(Rc<Message>),
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
    Claim {
        conn: ConnId,
        name: String,
        folded: String,
    },
    Post(Rc<Message>),
    Private {
        conn: ConnId,
        to: String,
        from: String,
        text: String,
    },
    Watch {
        room: Rc<str>,
        on: bool,
    },
    Presence {
        room: Rc<str>,
        name: String,
        on: bool,
    },
}

/// The chat state machine. See the module docs.
#[derive(Debug)]
pub struct Hub {
    cfg: HubConfig,
    policy: SummaryPolicy,
    dir: Directory,
    rooms: Slab<Room>,
    room_names: HashMap<Rc<str>, RoomId>,
    lobby: RoomId,
    epoch: Rc<str>,
    /// Rooms with presence work for the end of the turn.
    dirty_rooms: Vec<RoomId>,
    outbox: Vec<Pending>,
    /// Messages produced since start (the next message's sequence number).
    produced: u64,
    /// `produced` when the last `end_turn` finished: members who joined
    /// since are this turn's joiners.
    turn_start: u64,
    relayed: u64,
    /// The server is stopping: users leave without notices or list updates.
    closing: bool,
    /// Reused recipient lists for draining.
    plain: Vec<ConnId>,
    fancy: Vec<ConnId>,
    /// Cluster mode: the other nodes are in reach.
    cluster_up: bool,
    /// Cluster mode: users were told the other nodes are out of reach.
    cluster_lost: bool,
    /// Cluster mode: joins waiting for their name's claim, by connection,
    /// and the folded names being claimed.
    claims: HashMap<ConnId, cluster::PendingJoin>,
    claiming: HashMap<String, ConnId>,
}

impl Hub {
    /// An empty hub with its lobby and the permanent rooms.
    pub fn new(cfg: HubConfig) -> Hub {
        let policy = SummaryPolicy {
            above_users: cfg.summary_above_users,
            interval: cfg.summary_interval,
        };
        let epoch = Rc::from(cfg.epoch.as_str());
        let mut hub = Hub {
            cfg,
            policy,
            dir: Directory::new(),
            rooms: Slab::new(),
            room_names: HashMap::new(),
            lobby: RoomId(0),
            epoch,
            dirty_rooms: Vec::new(),
            outbox: Vec::new(),
            produced: 0,
            turn_start: 0,
            relayed: 0,
            closing: false,
            plain: Vec::new(),
            fancy: Vec::new(),
            cluster_up: false,
            cluster_lost: false,
            claims: HashMap::new(),
            claiming: HashMap::new(),
        };
        hub.lobby = hub.create_room(LOBBY, true);
        for name in hub.cfg.permanent_rooms.clone() {
            if let Some(folded) = fold_room(&name) {
                let id = hub
                    .room_id(&folded)
                    .unwrap_or_else(|| hub.create_room(&folded, true));
                if let Some(r) = hub.rooms.get_mut(id.0 as usize) {
                    r.permanent = true;
                }
            }
        }
        hub
    }

    /// Names the history (the durable log's epoch, kept with its directory).
    pub fn set_epoch(&mut self, epoch: &str) {
        self.epoch = Rc::from(epoch);
        self.cfg.epoch = epoch.to_owned();
    }

    /// Users online.
    pub fn user_count(&self) -> usize {
        self.dir.len()
    }

    /// Rooms that exist.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
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

    /// Rebuilds a room's history from the durable log at start-up: `msg` is a
    /// chat line or topic change with its room tag (chat lines with their
    /// `seq`). Creates the room if needed (beyond the room limit, skipped).
    pub fn restore(&mut self, msg: Message) {
        let Some(tag) = msg.room.clone() else {
            return;
        };
        let Some(folded) = fold_room(&tag.name) else {
            return;
        };
        let id = match self.room_id(&folded) {
            Some(id) => id,
            None if self.rooms.len() < self.cfg.max_rooms => self.create_room(&folded, false),
            None => return,
        };
        let Some(room) = self.rooms.get_mut(id.0 as usize) else {
            return;
        };
        match (&msg.event, tag.seq) {
            (Event::Topic { topic, .. }, _) => room.topic = topic.clone(),
            (Event::Chat { .. }, Some(seq)) if seq > room.seq => {
                room.seq = seq;
                room.remember(Rc::new(msg));
            }
            _ => {}
        }
    }

    /// One request from `conn`, with history in memory only.
    pub fn handle(&mut self, conn: ConnId, req: Request, now: Now) {
        self.handle_with(conn, req, now, &mut NoArchive);
    }

    /// One request from `conn`; `archive` serves history older than what
    /// rooms keep in memory.
    pub fn handle_with(&mut self, conn: ConnId, req: Request, now: Now, archive: &mut dyn Archive) {
        match req {
            Request::Join { name, features } => self.join(conn, &name, features, now),
            Request::Say { room, text } => self.say(conn, room.as_deref(), text, now),
            Request::Private { to, text } => self.private(conn, &to, text, now),
            Request::Who => self.who(conn, now),
            Request::Reply(event) => {
                let to = self.to_conn(conn);
                self.push(to, now, event);
            }
            Request::RoomJoin { room, since } => self.room_join(conn, &room, since, now, archive),
            Request::RoomLeave { room } => self.room_leave(conn, room.as_deref(), now),
            Request::Rooms => self.room_list(conn, now),
            Request::Topic { room, topic } => self.topic(conn, room.as_deref(), topic, now),
            Request::History {
                room,
                before,
                limit,
            } => self.history(conn, room.as_deref(), before, limit, now, archive),
        }
    }

    /// `conn` has ended, for `why`: its user (if any) leaves every room. Told
    /// once per connection; a no-op for a connection without a user.
    pub fn handle_left(&mut self, conn: ConnId, why: LeaveReason, now: Now) {
        self.forget_claim(conn);
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
        for room_id in &user.rooms {
            let Some(room) = self.rooms.get_mut(room_id.0 as usize) else {
                continue;
            };
            let removed = room
                .remove(id, &user.name, &user.folded, &self.policy, silent)
                .is_some();
            if removed && self.cfg.cluster {
                self.outbox.push(Pending::Presence {
                    room: room.name.clone(),
                    name: user.name.clone(),
                    on: false,
                });
            }
            if !removed || silent {
                continue;
            }
            let announce = !room.summarised(&self.policy, 1);
            self.mark_dirty(*room_id);
            if announce {
                let text = if why.is_voluntary() {
                    format!("Client {} has left the chat.", user.name)
                } else {
                    format!("Client {} disconnected unexpectedly.", user.name)
                };
                self.push(Self::to_room(*room_id), now, Event::Notice { text });
            }
            self.unwatch_if_no_local(*room_id);
            self.drop_room_if_unused(*room_id);
        }
    }

    /// The server is stopping: everyone online gets `text` as a notice, and
    /// from now on users leave silently (no leave notices, no list updates).
    pub fn shutdown(&mut self, text: String, now: Now) {
        self.push(Target::Everyone, now, Event::Notice { text });
        self.closing = true;
        for (_, room) in self.rooms.iter_mut() {
            room.forget_touched();
        }
        self.dirty_rooms.clear();
    }

    /// Once per loop turn: each changed room's debounced presence updates
    /// and, in summary mode, its summary when due.
    pub fn end_turn(&mut self, now: Now) {
        if self.closing {
            return;
        }
        let dirty = std::mem::take(&mut self.dirty_rooms);
        let mut again = Vec::new();
        for id in dirty {
            let Some(room) = self.rooms.get_mut(id.0 as usize) else {
                continue;
            };
            // This turn's joiners who take deltas get one full list, shared,
            // before the turn's delta (which then only repeats names).
            let fresh_list =
                std::mem::take(&mut room.want_list).then(|| room.sorted_names(&self.dir));
            let out = room.end_turn(&self.dir, &self.policy, now.mono);
            let summary_mode = room.in_summary_mode();
            if let Some(users) = fresh_list {
                let to = Target::Room {
                    room: id,
                    aud: Audience::FreshDeltas(self.turn_start),
                    rooms_only: false,
                };
                self.push(to, now, Event::UserList { users });
            }
            if summary_mode {
                // Summaries are due on a timer: keep visiting the room.
                again.push(id);
            }
            for (aud, event) in out {
                let to = Target::Room {
                    room: id,
                    aud,
                    rooms_only: false,
                };
                self.push(to, now, event);
            }
        }
        for id in again {
            self.mark_dirty(id);
        }
        self.turn_start = self.produced;
    }

    /// Hands every effect produced since the last call to `f`, in order (see
    /// the module docs), and forgets them.
    pub fn drain_effects(&mut self, mut f: impl FnMut(Effect<'_>)) {
        let mut outbox = std::mem::take(&mut self.outbox);
        let mut plain = std::mem::take(&mut self.plain);
        let mut fancy = std::mem::take(&mut self.fancy);
        for p in &outbox {
            match p {
                Pending::Deliver {
                    to: Target::Conn { conn, rooms },
                    msg,
                    ..
                } => f(Effect::Deliver {
                    to: std::slice::from_ref(conn),
                    msg,
                    rooms: *rooms,
                }),
                Pending::Deliver { to, msg, seq } => {
                    plain.clear();
                    fancy.clear();
                    match to {
                        Target::Room {
                            room,
                            aud,
                            rooms_only,
                        } => {
                            // A room dropped this turn may have its slot reused by a
                            // new room: a message only reaches the room it was for.
                            let same_room = |r: &Room| {
                                msg.room.as_ref().is_none_or(|t| {
                                    Rc::ptr_eq(&t.name, &r.name) || t.name == r.name
                                })
                            };
                            if let Some(r) = self.rooms.get(room.0 as usize)
                                && same_room(r)
                            {
                                r.resolve(*aud, *seq, &mut plain, &mut fancy);
                            }
                            if *rooms_only {
                                plain.clear();
                            }
                        }
                        Target::Everyone => {
                            for (_, u) in self.dir.iter() {
                                if u.features.rooms {
                                    fancy.push(u.conn);
                                } else {
                                    plain.push(u.conn);
                                }
                            }
                        }
                        Target::Conn { .. } => {}
                    }
                    if !plain.is_empty() {
                        f(Effect::Deliver {
                            to: &plain,
                            msg,
                            rooms: false,
                        });
                    }
                    if !fancy.is_empty() {
                        f(Effect::Deliver {
                            to: &fancy,
                            msg,
                            rooms: true,
                        });
                    }
                }
                Pending::Persist(msg) => f(Effect::Persist { msg }),
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
                Pending::Claim { conn, name, folded } => f(Effect::Claim {
                    conn: *conn,
                    name,
                    folded,
                }),
                Pending::Post(msg) => f(Effect::Post { msg }),
                Pending::Private {
                    conn,
                    to,
                    from,
                    text,
                } => f(Effect::Private {
                    conn: *conn,
                    to,
                    from,
                    text,
                }),
                Pending::Watch { room, on } => f(Effect::Watch { room, on: *on }),
                Pending::Presence { room, name, on } => f(Effect::Presence {
                    room,
                    name,
                    on: *on,
                }),
            }
        }
        outbox.clear();
        if self.outbox.is_empty() {
            self.outbox = outbox;
        }
        self.plain = plain;
        self.fancy = fancy;
    }

    /// True when effects are waiting to be drained.
    pub fn has_effects(&self) -> bool {
        !self.outbox.is_empty()
    }

    fn room_id(&self, folded: &str) -> Option<RoomId> {
        self.room_names.get(folded).copied()
    }

    fn create_room(&mut self, folded: &str, permanent: bool) -> RoomId {
        let entry = self.rooms.vacant_entry();
        let id = RoomId(u32::try_from(entry.key()).unwrap_or(u32::MAX));
        let mut room = Room::new(id, folded, self.cfg.ring_capacity);
        room.permanent = permanent;
        self.room_names.insert(room.name.clone(), id);
        entry.insert(room);
        id
    }

    /// A room with no members and no history, and not permanent, is forgotten.
    fn drop_room_if_unused(&mut self, id: RoomId) {
        let unused = self
            .rooms
            .get(id.0 as usize)
            .is_some_and(|r| r.is_empty() && !r.permanent && !r.has_history());
        if unused {
            let room = self.rooms.remove(id.0 as usize);
            self.room_names.remove(&room.name);
            self.dirty_rooms.retain(|r| *r != id);
        }
    }

    fn mark_dirty(&mut self, id: RoomId) {
        if !self.dirty_rooms.contains(&id) {
            self.dirty_rooms.push(id);
        }
    }

    fn to_room(room: RoomId) -> Target {
        Target::Room {
            room,
            aud: Audience::All,
            rooms_only: false,
        }
    }

    fn to_conn(&self, conn: ConnId) -> Target {
        let rooms = self
            .dir
            .user_of(conn)
            .and_then(|id| self.dir.get(id))
            .is_some_and(|u| u.features.rooms);
        Target::Conn { conn, rooms }
    }

    fn limits(&self) -> RoomLimits {
        RoomLimits {
            rooms_per_user: self.cfg.max_rooms_per_user,
            rooms_per_server: self.cfg.max_rooms,
            topic_bytes: MAX_TOPIC_BYTES,
            name_chars: MAX_ROOM_NAME_CHARS,
        }
    }

    fn join(&mut self, conn: ConnId, name: &str, features: Features, now: Now) {
        if self.clustered() {
            match self.dir.check(conn, name) {
                Ok(folded) if self.claims.contains_key(&conn) => {
                    // A second join while the first is being claimed.
                    let _ = folded;
                    let text = "Your join is still being answered.".to_owned();
                    self.error(conn, ErrorCode::AlreadyJoined, text, now);
                }
                Ok(folded) if self.claiming.contains_key(&folded) => {
                    self.refuse_taken(conn, name, now);
                }
                Ok(folded) => self.start_claim(conn, name, folded, features),
                Err(e) => self.refuse(conn, name, e, now),
            }
            return;
        }
        self.admit(conn, name, features, now);
    }

    /// Refuses a join for `e` (queues the outcome and the error).
    fn refuse(&mut self, conn: ConnId, name: &str, e: ClaimError, now: Now) {
        match e {
            ClaimError::AlreadyBound => {
                let current = self.name_of(conn).unwrap_or_default();
                let text = format!("You have already joined as {current}.");
                self.error(conn, ErrorCode::AlreadyJoined, text, now);
            }
            ClaimError::Invalid(e) => {
                self.outbox.push(Pending::JoinRefused {
                    conn,
                    code: ErrorCode::NameInvalid,
                });
                let text = format!("Invalid name: {e}. Please choose another name.");
                self.error(conn, ErrorCode::NameInvalid, text, now);
            }
            ClaimError::Taken => self.refuse_taken(conn, name, now),
        }
    }

    fn refuse_taken(&mut self, conn: ConnId, name: &str, now: Now) {
        self.outbox.push(Pending::JoinRefused {
            conn,
            code: ErrorCode::NameTaken,
        });
        let text = format!("The name '{name}' is already taken. Please choose another name.");
        self.error(conn, ErrorCode::NameTaken, text, now);
    }

    /// Binds `name` to `conn` and says welcome (the name is free everywhere).
    fn admit(&mut self, conn: ConnId, name: &str, features: Features, now: Now) {
        let tokens = f64::from(self.cfg.rate_limit_per_sec);
        let id = match self.dir.claim(conn, name, features, tokens, now.mono) {
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
        let Some(mode) = self.enter(id, lobby) else {
            return;
        };
        let n = self.dir.len();
        let summarised = self
            .rooms
            .get(lobby.0 as usize)
            .is_some_and(|r| r.summarised(&self.policy, 0));
        if mode == PresenceMode::Deltas
            && !summarised
            && let Some(r) = self.rooms.get_mut(lobby.0 as usize)
        {
            // Sent at the end of the turn, one list for every such joiner:
            // a join storm costs one list per turn, not one per joiner.
            r.want_list = true;
        }
        let welcome = format!(
            "Welcome {name}! You are now connected to the chat. {n} user{} online.",
            if n == 1 { "" } else { "s" }
        );
        let to = Target::Conn {
            conn,
            rooms: features.rooms,
        };
        let limits = features.rooms.then(|| self.limits());
        self.push(
            to,
            now,
            Event::Info {
                text: welcome,
                user: Some(name.to_owned()),
                limits,
            },
        );
        let replay = if features.rooms {
            Replay::Rooms {
                history: features.history,
            }
        } else if features.history {
            Replay::Legacy(self.cfg.replay_count)
        } else {
            Replay::Legacy(self.cfg.legacy_replay)
        };
        let w = Waiter {
            conn,
            auto: true,
            since: None,
            replay,
        };
        self.welcome_room(w, lobby, now);
        if !summarised {
            let text = format!("Client {name} has joined the chat.");
            self.push(Self::to_room(lobby), now, Event::Notice { text });
        }
    }

    /// Adds user `id` to room `room` (no checks, no messages); its presence
    /// mode, or `None` when either is gone.
    fn enter(&mut self, id: UserId, room_id: RoomId) -> Option<PresenceMode> {
        let produced = self.produced;
        let policy = self.policy;
        let (room, user) = (self.rooms.get_mut(room_id.0 as usize)?, self.dir.get(id)?);
        let member = Member {
            user: id,
            conn: user.conn,
            mode: user.mode,
            rooms: user.features.rooms,
            since: produced,
        };
        room.add(member, &user.name, &user.folded, &policy);
        let mode = user.mode;
        if let Some(u) = self.dir.get_mut(id) {
            u.rooms.retain(|r| *r != room_id);
            u.rooms.push(room_id);
        }
        self.mark_dirty(room_id);
        self.watch_if_first(room_id);
        self.tell_presence(room_id, id, true);
        Some(mode)
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

    /// The joined user of `conn` (else `not_joined` is queued).
    fn joined_user(&mut self, conn: ConnId, now: Now) -> Option<UserId> {
        let id = self.dir.user_of(conn);
        if id.is_none() {
            self.error(conn, ErrorCode::NotJoined, "Please join first.".into(), now);
        }
        id
    }

    fn say(&mut self, conn: ConnId, room: Option<&str>, text: String, now: Now) {
        let Some((id, from)) = self.sender(conn, now) else {
            return;
        };
        let Some(room_id) = self.member_room(conn, id, room, now) else {
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
        let Some(room) = self.rooms.get_mut(room_id.0 as usize) else {
            return;
        };
        self.relayed += 1;
        if self.cfg.cluster && self.cluster_up {
            // Numbered by the cluster; delivered here when it comes back.
            let msg = Rc::new(Message {
                ts_ms: now.unix_ms,
                event: Event::Chat { from, text },
                room: Some(RoomTag {
                    name: room.name.clone(),
                    seq: None,
                }),
            });
            self.outbox.push(Pending::Post(msg));
            return;
        }
        let seq = room.next_seq();
        let msg = Rc::new(Message {
            ts_ms: now.unix_ms,
            event: Event::Chat { from, text },
            room: Some(RoomTag {
                name: room.name.clone(),
                seq: Some(seq),
            }),
        });
        room.remember(msg.clone());
        self.outbox.push(Pending::Persist(msg.clone()));
        self.push_msg(Self::to_room(room_id), msg);
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
            if self.clustered() {
                // Maybe on another node: the cluster answers.
                self.outbox.push(Pending::Private {
                    conn,
                    to: to.to_owned(),
                    from,
                    text,
                });
                return;
            }
            self.unknown_user(conn, to, now);
            return;
        };
        let (to_conn, to_name) = (target.conn, target.name.clone());
        self.relayed += 1;
        let to_target = self.to_conn(to_conn);
        self.push(
            to_target,
            now,
            Event::Private {
                from,
                text: text.clone(),
            },
        );
        let back = self.to_conn(conn);
        self.push(back, now, Event::PrivateSent { to: to_name, text });
    }

    fn who(&mut self, conn: ConnId, now: Now) {
        let Some(id) = self.joined_user(conn, now) else {
            return;
        };
        // The current room's members (everyone is in the lobby unless they left it).
        let room_id = self
            .dir
            .get(id)
            .and_then(|u| u.rooms.last().copied())
            .unwrap_or(self.lobby);
        let users = self
            .rooms
            .get(room_id.0 as usize)
            .map(|r| r.sorted_names(&self.dir))
            .unwrap_or_default();
        let to = self.to_conn(conn);
        self.push_in(to, room_id, now, Event::UserList { users });
    }

    fn error(&mut self, conn: ConnId, code: ErrorCode, text: String, now: Now) {
        let to = self.to_conn(conn);
        self.push(to, now, Event::Error { code, text });
    }

    /// Queues `event` for `to`; messages to a room carry the room's tag.
    fn push(&mut self, to: Target, now: Now, event: Event) {
        let room = match to {
            Target::Room { room, .. } => self.rooms.get(room.0 as usize).map(|r| RoomTag {
                name: r.name.clone(),
                seq: None,
            }),
            _ => None,
        };
        let msg = Rc::new(Message {
            ts_ms: now.unix_ms,
            event,
            room,
        });
        self.push_msg(to, msg);
    }

    /// Queues `event` about room `room_id` for `to` (one connection).
    fn push_in(&mut self, to: Target, room_id: RoomId, now: Now, event: Event) {
        let room = self.rooms.get(room_id.0 as usize).map(|r| RoomTag {
            name: r.name.clone(),
            seq: None,
        });
        let msg = Rc::new(Message {
            ts_ms: now.unix_ms,
            event,
            room,
        });
        self.push_msg(to, msg);
    }

    fn push_msg(&mut self, to: Target, msg: Rc<Message>) {
        self.outbox.push(Pending::Deliver {
            to,
            msg,
            seq: self.produced,
        });
        self.produced += 1;
    }
}

/// A message's sequence number in its room (0: none).
pub(crate) fn seq_of(m: &Message) -> u64 {
    m.room.as_ref().and_then(|t| t.seq).unwrap_or(0)
}

/// The sequence number of the first message of a batch.
pub(crate) fn first_seq(messages: &[Rc<Message>]) -> Option<u64> {
    messages
        .first()
        .and_then(|m| m.room.as_ref())
        .and_then(|t| t.seq)
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
