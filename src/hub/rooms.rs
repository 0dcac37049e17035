//! Room requests: join (with the replay and `since`), leave, the room
//! list, topics and history pages. The hub's state and delivery live in
//! [`super`]; what a room holds in [`super::room`]; the name rules in
//! [`super::room_names`]; history older than memory comes through the
//! [`super::archive::Archive`] port.

use std::rc::Rc;

use super::archive::{Archive, MAX_RESUME_LINES};
use super::msg::{ConnId, ErrorCode, Event, Message, Now, RoomId, RoomInfo, Since, UserId};
use super::room::{Audience, Room};
use super::room_names::{MAX_ROOM_NAME_CHARS, MAX_TOPIC_BYTES, fold_room};
use super::{Hub, MAX_LISTED_ROOMS, Pending, RoomTag, Target, first_seq};

impl Hub {
    /// The joined user of `conn`, if it may use rooms (else the error is queued).
    pub(super) fn rooms_user(&mut self, conn: ConnId, now: Now) -> Option<UserId> {
        let id = self.joined_user(conn, now)?;
        self.rooms_allowed(conn, id, now).then_some(id)
    }

    /// [`Hub::rooms_user`] and the room the request names (`None`: the
    /// current one), which the user must be in.
    pub(super) fn in_room(
        &mut self,
        conn: ConnId,
        room: Option<&str>,
        now: Now,
    ) -> Option<(UserId, RoomId)> {
        let id = self.rooms_user(conn, now)?;
        let room_id = self.member_room(conn, id, room, now)?;
        Some((id, room_id))
    }

    /// `room_joined` for `conn`, who is now in `room_id` (`auto`: on joining the server).
    pub(super) fn room_joined(&mut self, conn: ConnId, room_id: RoomId, auto: bool, now: Now) {
        let Some(room) = self.rooms.get(room_id.0 as usize) else {
            return;
        };
        let count = room.total();
        let users = (!room.summarised(&self.policy, 0)).then(|| room.sorted_names(&self.dir));
        let event = Event::RoomJoined {
            room: room.name.clone(),
            topic: room.topic.clone(),
            users,
            count,
            epoch: self.epoch.clone(),
            seq: room.seq,
            auto,
        };
        self.push_in(Target::Conn { conn, rooms: true }, room_id, now, event);
    }

    /// The replay on joining a room: everything after `since` when it can be
    /// served exactly (from memory, and from the archive for older lines),
    /// else the newest messages with `gap` set.
    pub(super) fn replay(
        &mut self,
        conn: ConnId,
        room_id: RoomId,
        since: Option<Since>,
        now: Now,
        archive: &mut dyn Archive,
    ) {
        let Some(room) = self.rooms.get(room_id.0 as usize) else {
            return;
        };
        let resumable = since
            .as_ref()
            .filter(|s| *s.epoch == *self.epoch && s.seq <= room.seq && !archive.degraded());
        let exact = resumable.and_then(|s| {
            let oldest = room.oldest_in_memory();
            if s.seq + 1 >= oldest {
                return Some(room.after(s.seq));
            }
            // Older than memory: the archive must hold every line in between.
            let want = usize::try_from(oldest - 1 - s.seq).ok()?;
            if want + room.after(s.seq).len() > MAX_RESUME_LINES {
                return None;
            }
            let older = archive.read(&room.name, s.seq, oldest, want).ok()??;
            let contiguous = older.len() == want
                && older
                    .iter()
                    .zip(s.seq + 1..)
                    .all(|(m, n)| m.room.as_ref().and_then(|t| t.seq) == Some(n));
            contiguous.then(|| {
                let mut all: Vec<Rc<Message>> = older.into_iter().map(Rc::new).collect();
                all.extend(room.after(s.seq));
                all
            })
        });
        let gap = since.is_some() && exact.is_none();
        let messages = exact.unwrap_or_else(|| room.before(room.seq + 1, self.cfg.replay_count));
        let complete = first_seq(&messages).map_or(room.seq == 0, |s| s <= 1);
        let event = Event::History {
            room: room.name.clone(),
            messages,
            complete,
            gap,
            replay: true,
        };
        self.push_in(Target::Conn { conn, rooms: true }, room_id, now, event);
    }

    /// The lobby's last `n` messages, as plain messages after an `info`.
    pub(super) fn legacy_replay(&mut self, conn: ConnId, n: usize, now: Now) {
        if n == 0 {
            return;
        }
        let lobby = self.lobby;
        let Some(room) = self.rooms.get(lobby.0 as usize) else {
            return;
        };
        let messages = room.before(room.seq + 1, n);
        if messages.is_empty() {
            return;
        }
        let to = Target::Conn { conn, rooms: false };
        let text = format!(
            "The last {} message{} before you joined:",
            messages.len(),
            if messages.len() == 1 { "" } else { "s" }
        );
        self.push(
            to,
            now,
            Event::Info {
                text,
                user: None,
                limits: None,
            },
        );
        for m in messages {
            self.push_msg(to, m);
        }
    }

    /// The room a request names (`None`: the user's current room), which the
    /// user must be in; else the error is queued.
    pub(super) fn member_room(
        &mut self,
        conn: ConnId,
        id: UserId,
        room: Option<&str>,
        now: Now,
    ) -> Option<RoomId> {
        let current = self.dir.get(id).and_then(|u| u.rooms.last().copied());
        let found = match room {
            None => current,
            Some(name) => fold_room(name).and_then(|f| self.room_id(&f)),
        };
        let inside = found.filter(|r| self.dir.get(id).is_some_and(|u| u.rooms.contains(r)));
        if inside.is_none() {
            let text = match room {
                // Quoted only when it could be a room name: never echo a megabyte.
                Some(name) => match fold_room(name) {
                    Some(folded) => format!("You are not in {folded}."),
                    None => "You are not in that room.".to_owned(),
                },
                None => "You are not in any room.".to_owned(),
            };
            self.error(conn, ErrorCode::NotInRoom, text, now);
        }
        inside
    }

    /// Room requests need the rooms feature (text mode always has it).
    pub(super) fn rooms_allowed(&mut self, conn: ConnId, id: UserId, now: Now) -> bool {
        let ok = self.dir.get(id).is_some_and(|u| u.features.rooms);
        if !ok {
            let text = "Rooms are not enabled for this connection.".to_owned();
            self.error(conn, ErrorCode::BadFormat, text, now);
        }
        ok
    }

    pub(super) fn room_join(
        &mut self,
        conn: ConnId,
        name: &str,
        since: Option<Since>,
        now: Now,
        archive: &mut dyn Archive,
    ) {
        let Some(id) = self.rooms_user(conn, now) else {
            return;
        };
        let Some(folded) = fold_room(name) else {
            let text = format!(
                "Invalid room name. A room name is # followed by 1 to {MAX_ROOM_NAME_CHARS} of a-z, 0-9, _ and -."
            );
            self.error(conn, ErrorCode::RoomInvalid, text, now);
            return;
        };
        let room_id = match self.room_id(&folded) {
            Some(r) => r,
            None if !self.cfg.room_create => {
                let text =
                    format!("There is no room {folded}, and new rooms cannot be created here.");
                self.error(conn, ErrorCode::RoomInvalid, text, now);
                return;
            }
            None if self.rooms.len() >= self.cfg.max_rooms => {
                let text = format!(
                    "The server has its maximum of {} rooms.",
                    self.cfg.max_rooms
                );
                self.error(conn, ErrorCode::RoomLimit, text, now);
                return;
            }
            None => self.create_room(&folded, false),
        };
        let (already, count) = self
            .dir
            .get(id)
            .map_or((false, 0), |u| (u.rooms.contains(&room_id), u.rooms.len()));
        if !already && count >= self.cfg.max_rooms_per_user {
            let text =
                format!("You are in {count} rooms, the most allowed. Leave one to join another.");
            self.error(conn, ErrorCode::RoomLimit, text, now);
            self.drop_room_if_unused(room_id);
            return;
        }
        if self.enter(id, room_id).is_none() {
            return;
        }
        if self.cfg.cluster {
            let w = super::room::Waiter {
                conn,
                auto: false,
                since,
                replay: super::room::Replay::Rooms { history: true },
            };
            self.welcome_room(w, room_id, now);
        } else {
            self.room_joined(conn, room_id, false, now);
            self.replay(conn, room_id, since, now, archive);
        }
        let announce = !already
            && room_id != self.lobby
            && self
                .rooms
                .get(room_id.0 as usize)
                .is_some_and(|r| !r.summarised(&self.policy, 0));
        if announce {
            let user = self.dir.name(id).to_owned();
            let text = format!("{user} joined {folded}.");
            self.push(Self::to_room(room_id), now, Event::Notice { text });
        }
    }

    pub(super) fn room_leave(&mut self, conn: ConnId, room: Option<&str>, now: Now) {
        let Some((id, room_id)) = self.in_room(conn, room, now) else {
            return;
        };
        let policy = self.policy;
        let (Some(r), Some(user)) = (self.rooms.get_mut(room_id.0 as usize), self.dir.get(id))
        else {
            return;
        };
        r.remove(id, &user.name, &user.folded, &policy, false);
        let name = r.name.clone();
        if self.cfg.cluster {
            self.outbox.push(Pending::Presence {
                room: name.clone(),
                name: user.name.clone(),
                on: false,
            });
        }
        let announce = !r.summarised(&policy, 1);
        let text = format!("{} left {name}.", user.name);
        if let Some(u) = self.dir.get_mut(id) {
            u.rooms.retain(|x| *x != room_id);
        }
        self.mark_dirty(room_id);
        self.push(
            Target::Conn { conn, rooms: true },
            now,
            Event::RoomLeft { room: name },
        );
        if announce {
            self.push(Self::to_room(room_id), now, Event::Notice { text });
        }
        self.unwatch_if_no_local(room_id);
        self.drop_room_if_unused(room_id);
    }

    pub(super) fn room_list(&mut self, conn: ConnId, now: Now) {
        if self.rooms_user(conn, now).is_none() {
            return;
        }
        let mut all: Vec<&Room> = self
            .rooms
            .iter()
            .map(|(_, r)| r)
            .filter(|r| !r.is_empty() || r.has_history() || r.permanent)
            .collect();
        let total = all.len();
        all.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.name.cmp(&b.name)));
        let rooms = all
            .iter()
            .take(MAX_LISTED_ROOMS)
            .map(|r| RoomInfo {
                name: r.name.clone(),
                users: r.total(),
                topic: r.topic.clone(),
            })
            .collect();
        self.push(
            Target::Conn { conn, rooms: true },
            now,
            Event::RoomList { rooms, total },
        );
    }

    pub(super) fn topic(
        &mut self,
        conn: ConnId,
        room: Option<&str>,
        topic: Option<String>,
        now: Now,
    ) {
        let Some((id, room_id)) = self.in_room(conn, room, now) else {
            return;
        };
        let by = self.dir.name(id).to_owned();
        let Some(r) = self.rooms.get_mut(room_id.0 as usize) else {
            return;
        };
        let name = r.name.clone();
        let Some(topic) = topic else {
            let event = Event::Topic {
                room: name,
                topic: r.topic.clone(),
                by: String::new(),
            };
            self.push(Target::Conn { conn, rooms: true }, now, event);
            return;
        };
        if topic.len() > MAX_TOPIC_BYTES {
            let text = format!("A topic has at most {MAX_TOPIC_BYTES} bytes.");
            self.error(conn, ErrorCode::BadFormat, text, now);
            return;
        }
        // Clustered, the change is set on every node (this one too) when it
        // comes back; else here, stored under the seq of the room's latest line.
        let clustered = self.cfg.cluster && self.cluster_up;
        let seq = (!clustered).then_some(r.seq);
        if !clustered {
            r.topic = topic.clone();
        }
        let msg = Rc::new(Message {
            ts_ms: now.unix_ms,
            event: Event::Topic {
                room: name.clone(),
                topic,
                by,
            },
            room: Some(RoomTag { name, seq }),
        });
        if clustered {
            self.outbox.push(Pending::Post(msg));
            return;
        }
        self.outbox.push(Pending::Persist(msg.clone()));
        let to = Target::Room {
            room: room_id,
            aud: Audience::All,
            rooms_only: true,
        };
        self.push_msg(to, msg);
    }

    pub(super) fn history(
        &mut self,
        conn: ConnId,
        room: Option<&str>,
        before: Option<u64>,
        limit: Option<usize>,
        now: Now,
        archive: &mut dyn Archive,
    ) {
        let Some((_, room_id)) = self.in_room(conn, room, now) else {
            return;
        };
        let Some(r) = self.rooms.get(room_id.0 as usize) else {
            return;
        };
        let limit = limit
            .unwrap_or(self.cfg.replay_count)
            .clamp(1, self.cfg.max_history_page);
        let before = before.unwrap_or(r.seq + 1).min(r.seq + 1);
        let mut messages = r.before(before, limit);
        let oldest = r.oldest_in_memory();
        let low = first_seq(&messages).unwrap_or(before).min(before);
        let mut complete = low <= 1;
        if !complete && messages.len() < limit && low <= oldest {
            // The rest of the page is older than memory.
            match archive.read(&r.name, 0, low, limit - messages.len()) {
                Ok(None) => complete = true, // memory only: nothing older exists
                Ok(Some(older)) => {
                    let mut page: Vec<Rc<Message>> = older.into_iter().map(Rc::new).collect();
                    page.append(&mut messages);
                    messages = page;
                    complete = first_seq(&messages).unwrap_or(before) <= 1;
                }
                Err(()) => {
                    let text = "History cannot be read right now.".to_owned();
                    self.error(conn, ErrorCode::HistoryUnavailable, text, now);
                    return;
                }
            }
        }
        let Some(r) = self.rooms.get(room_id.0 as usize) else {
            return;
        };
        let event = Event::History {
            room: r.name.clone(),
            messages,
            complete,
            gap: false,
            replay: false,
        };
        self.push_in(Target::Conn { conn, rooms: true }, room_id, now, event);
    }
}
