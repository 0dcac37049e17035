//! The hub in cluster mode: several nodes serve one chat, and what must be
//! the same on every node is decided outside this one.
//!
//! - **Names** are claimed for the whole cluster: a join becomes
//!   [`Effect::Claim`](super::Effect::Claim), answered later with
//!   [`Hub::claim_answered`]. Meanwhile the name counts as taken here.
//! - **Room lines and topics** are not delivered where they are said: they
//!   go out as [`Effect::Post`](super::Effect::Post), are numbered by the
//!   cluster, and come back to every node (this one too) through
//!   [`Hub::ingest`], in the room's order. So every member of a room, on any
//!   node, sees the same sequence.
//! - **Private messages** to a user on another node go out as
//!   [`Effect::Private`](super::Effect::Private) and are answered with
//!   [`Hub::private_answered`]; those from other nodes arrive through
//!   [`Hub::deliver_private`].
//! - **Rooms** are watched while they have a local member
//!   ([`Effect::Watch`](super::Effect::Watch)); a watched room is loaded
//!   (recent lines, topic) and answered with [`Hub::room_synced`]. Local
//!   joiners get their room details once it is.
//! - **Out of reach** ([`Hub::set_cluster_up`]): the node serves its own
//!   users as a single node would (names checked locally, lines numbered
//!   here) until the cluster is back; rooms are then synced again, missed
//!   lines delivered, and a gap announced when some cannot be recovered.
//!
//! The hub still does no I/O: the server's cluster link turns these effects
//! into Redis commands and feeds the answers back.

use std::rc::Rc;

use super::msg::{ConnId, ErrorCode, Event, Features, Message, Now, RoomId};
use super::room::{Replay, Sync, Waiter};
use super::room_names::fold_room;
use super::{Hub, NoArchive, Pending, Target};

/// A join waiting for its name's claim.
#[derive(Debug, Clone)]
pub(crate) struct PendingJoin {
    name: String,
    folded: String,
    features: Features,
}

impl Hub {
    /// True in cluster mode while the other nodes are in reach.
    pub(super) fn clustered(&self) -> bool {
        self.cfg.cluster && self.cluster_up
    }

    /// Cluster mode: the other nodes came in reach (`up`) or went out of it.
    /// Going down: joins waiting for a claim are decided here, and rooms
    /// being loaded serve their joiners from what this node has.
    pub fn set_cluster_up(&mut self, up: bool, now: Now) {
        if !self.cfg.cluster || self.cluster_up == up {
            return;
        }
        self.cluster_up = up;
        if up {
            if std::mem::take(&mut self.cluster_lost) {
                let text = "The other servers are back in reach.".to_owned();
                self.push(Target::Everyone, now, Event::Notice { text });
            }
            return;
        }
        // Told once per outage (a flapping link says it again only after
        // coming back).
        self.cluster_lost = true;
        let text = "The other servers are out of reach: you can still talk with the users of this server, and the rest will follow when they are back.".to_owned();
        self.push(Target::Everyone, now, Event::Notice { text });
        let mut waiting: Vec<(ConnId, PendingJoin)> = self.claims.drain().collect();
        self.claiming.clear();
        // In the order they came (connection keys are handed out in order).
        waiting.sort_by_key(|(c, _)| (c.key, c.serial));
        for (conn, p) in waiting {
            self.admit(conn, &p.name, p.features, now);
        }
        let ids: Vec<RoomId> = self.rooms.iter().map(|(_, r)| r.id).collect();
        for id in ids {
            let Some(room) = self.rooms.get_mut(id.0 as usize) else {
                continue;
            };
            if let Sync::Loading(waiters) = std::mem::take(&mut room.sync) {
                for w in waiters {
                    self.serve(w, id, now);
                }
            }
        }
    }

    /// Cluster mode: the claim of `conn`'s name was `granted` (or refused:
    /// another node's user has it). False when nobody waits for it any more
    /// (the connection left): the caller releases a granted claim.
    pub fn claim_answered(&mut self, conn: ConnId, granted: bool, now: Now) -> bool {
        let Some(p) = self.claims.remove(&conn) else {
            return false;
        };
        self.claiming.remove(&p.folded);
        if !granted {
            self.refuse_taken(conn, &p.name, now);
            return true;
        }
        if self.dir.check(conn, &p.name).is_err() {
            // Taken here meanwhile (while the cluster was out of reach).
            self.refuse_taken(conn, &p.name, now);
            return false;
        }
        self.admit(conn, &p.name, p.features, now);
        true
    }

    pub(super) fn start_claim(
        &mut self,
        conn: ConnId,
        name: &str,
        folded: String,
        features: Features,
    ) {
        self.claiming.insert(folded.clone(), conn);
        self.outbox.push(Pending::Claim {
            conn,
            name: name.to_owned(),
            folded: folded.clone(),
        });
        self.claims.insert(
            conn,
            PendingJoin {
                name: name.to_owned(),
                folded,
                features,
            },
        );
    }

    /// `conn` left: its pending claim (if any) is forgotten; the cluster
    /// link releases the name when the claim's answer comes.
    pub(super) fn forget_claim(&mut self, conn: ConnId) {
        if let Some(p) = self.claims.remove(&conn) {
            self.claiming.remove(&p.folded);
        }
    }

    /// Cluster mode: a room's line or topic change as numbered by the
    /// cluster (`seq` set on chat lines), for this node's members. Lines at
    /// or below what the room has are duplicates and dropped; the caller
    /// hands lines over in order and fills gaps first. Rooms not synced
    /// ignore it.
    pub fn ingest(&mut self, msg: Message) {
        let Some(tag) = msg.room.clone() else {
            return;
        };
        let Some(room_id) = fold_room(&tag.name).and_then(|f| self.room_id(&f)) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(room_id.0 as usize) else {
            return;
        };
        if !matches!(room.sync, Sync::Synced) {
            return;
        }
        // The room's own name, shared by every message of the room.
        let msg = Message {
            room: Some(super::RoomTag {
                name: room.name.clone(),
                seq: tag.seq,
            }),
            ..msg
        };
        match &msg.event {
            Event::Chat { .. } => {
                let Some(seq) = tag.seq.filter(|s| *s > room.cluster_seq) else {
                    return;
                };
                room.seq = seq;
                room.cluster_seq = seq;
                let msg = Rc::new(msg);
                room.remember(msg.clone());
                self.outbox.push(Pending::Persist(msg.clone()));
                self.push_msg(Self::to_room(room_id), msg);
            }
            Event::Topic { topic, .. } => {
                room.topic = topic.clone();
                // Stored under the seq of the room's latest line.
                let msg = Rc::new(Message {
                    room: Some(super::RoomTag {
                        name: room.name.clone(),
                        seq: Some(room.seq),
                    }),
                    ..msg
                });
                self.outbox.push(Pending::Persist(msg.clone()));
                let to = Target::Room {
                    room: room_id,
                    aud: super::Audience::All,
                    rooms_only: true,
                };
                self.push_msg(to, msg);
            }
            _ => {}
        }
    }

    /// Cluster mode: `room` as the cluster has it: its last line's `seq`,
    /// its recent `lines` (oldest first, numbered) and `topic`. The room is
    /// synced from now on; joiners who waited get their details. A room
    /// synced again after an outage delivers the lines its members missed,
    /// and announces a gap when they cannot all be recovered.
    pub fn room_synced(
        &mut self,
        room: &str,
        seq: u64,
        lines: Vec<Message>,
        topic: Option<String>,
        now: Now,
    ) {
        let Some(room_id) = fold_room(room).and_then(|f| self.room_id(&f)) else {
            return;
        };
        let Some(r) = self.rooms.get_mut(room_id.0 as usize) else {
            return;
        };
        let name = r.name.clone();
        let lines: Vec<Rc<Message>> = lines
            .into_iter()
            .filter(|m| m.room.as_ref().and_then(|t| t.seq).is_some())
            .map(|m| {
                Rc::new(Message {
                    room: Some(super::RoomTag {
                        name: name.clone(),
                        seq: m.room.as_ref().and_then(|t| t.seq),
                    }),
                    ..m
                })
            })
            .collect();
        let before = std::mem::replace(&mut r.sync, Sync::Synced);
        // What the cluster numbered and this node delivered; lines numbered
        // here while it was out of reach do not count.
        let had = r.cluster_seq;
        let local_lines = r.seq > had;
        let waiters = match before {
            Sync::Loading(w) => w,
            Sync::Local | Sync::Synced => Vec::new(),
        };
        // Members who were here all along (the room was synced before, and
        // they are not waiting for a first load) are owed what they missed.
        let resync = r.synced_once && !r.is_empty() && waiters.len() < r.len();
        r.synced_once = true;
        let missed: Vec<Rc<Message>> = if resync {
            lines
                .iter()
                .filter(|m| super::seq_of(m) > had)
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let gap = resync
            && (seq < had
                || missed
                    .first()
                    .map_or(seq > had, |m| super::seq_of(m) > had + 1));
        r.reload(seq, lines);
        r.cluster_seq = seq;
        if let Some(t) = topic {
            r.topic = t;
        }
        for m in missed {
            self.outbox.push(Pending::Persist(m.clone()));
            self.push_msg(Self::to_room(room_id), m);
        }
        if gap {
            let text = format!(
                "Some messages in {name} could not be delivered while other servers were out of reach."
            );
            self.push(Self::to_room(room_id), now, Event::Notice { text });
        }
        if resync && local_lines {
            let text = format!(
                "Messages sent in {name} while the servers were apart reached only the users of this server."
            );
            self.push(Self::to_room(room_id), now, Event::Notice { text });
        }
        for w in waiters {
            self.serve(w, room_id, now);
        }
    }

    /// Cluster mode: the private message `conn` sent to `to` reached
    /// `reached` (the recipient's name as they spell it), or nobody.
    pub fn private_answered(
        &mut self,
        conn: ConnId,
        to: &str,
        text: String,
        reached: Option<String>,
        now: Now,
    ) {
        if self.dir.user_of(conn).is_none() {
            return;
        }
        match reached {
            Some(name) => {
                self.relayed += 1;
                let back = self.to_conn(conn);
                self.push(back, now, Event::PrivateSent { to: name, text });
            }
            None => self.unknown_user(conn, to, now),
        }
    }

    /// Cluster mode: a private message from another node for the local user
    /// whose folded name is `folded`; false when nobody here has it.
    pub fn deliver_private(&mut self, folded: &str, from: String, text: String, now: Now) -> bool {
        let Some(conn) = self
            .dir
            .has_folded(folded)
            .and_then(|id| self.dir.get(id))
            .map(|u| u.conn)
        else {
            return false;
        };
        let to = self.to_conn(conn);
        self.push(to, now, Event::Private { from, text });
        true
    }

    /// A joiner's room details (`room_joined`, replay), now or once the room
    /// is loaded.
    pub(super) fn welcome_room(&mut self, w: Waiter, room_id: RoomId, now: Now) {
        if let Some(room) = self.rooms.get_mut(room_id.0 as usize)
            && let Sync::Loading(waiters) = &mut room.sync
        {
            waiters.retain(|x| x.conn != w.conn);
            waiters.push(w);
            return;
        }
        self.serve(w, room_id, now);
    }

    /// Gives `w` its room details, if it is still a member.
    fn serve(&mut self, w: Waiter, room_id: RoomId, now: Now) {
        let member = self.dir.user_of(w.conn).is_some_and(|id| {
            self.rooms
                .get(room_id.0 as usize)
                .is_some_and(|r| r.contains(id))
        });
        if !member {
            return;
        }
        match w.replay {
            Replay::Rooms { history } => {
                self.room_joined(w.conn, room_id, w.auto, now);
                if history {
                    self.replay(w.conn, room_id, w.since, now, &mut NoArchive);
                }
            }
            Replay::Legacy(n) => self.legacy_replay(w.conn, n, now),
        }
    }

    /// Cluster mode: a room just got its first local member: watch it (and
    /// load it, when the cluster is in reach).
    pub(super) fn watch_if_first(&mut self, room_id: RoomId) {
        if !self.cfg.cluster {
            return;
        }
        let up = self.cluster_up;
        let Some(room) = self.rooms.get_mut(room_id.0 as usize) else {
            return;
        };
        if room.len() != 1 || !matches!(room.sync, Sync::Local) {
            return;
        }
        if up {
            room.sync = Sync::Loading(Vec::new());
        }
        let name = room.name.clone();
        self.outbox.push(Pending::Watch {
            room: name,
            on: true,
        });
    }

    /// Cluster mode: a room lost its last local member: stop watching it
    /// (what it remembers goes stale from now on).
    pub(super) fn unwatch_if_no_local(&mut self, room_id: RoomId) {
        if !self.cfg.cluster {
            return;
        }
        let Some(room) = self.rooms.get_mut(room_id.0 as usize) else {
            return;
        };
        if !room.is_empty() {
            return;
        }
        room.sync = Sync::Local;
        let name = room.name.clone();
        self.outbox.push(Pending::Watch {
            room: name,
            on: false,
        });
    }

    /// Cluster mode: tells the other nodes that local user `id` entered
    /// (`on`) or left room `room_id`.
    pub(super) fn tell_presence(&mut self, room_id: RoomId, id: super::UserId, on: bool) {
        if !self.cfg.cluster {
            return;
        }
        let (Some(room), Some(user)) = (self.rooms.get(room_id.0 as usize), self.dir.get(id))
        else {
            return;
        };
        self.outbox.push(Pending::Presence {
            room: room.name.clone(),
            name: user.name.clone(),
            on,
        });
    }

    /// Cluster mode: `name` entered (`on`) or left `room` on another node.
    pub fn remote_presence(&mut self, room: &str, name: &str, on: bool) {
        let Some(room_id) = fold_room(room).and_then(|f| self.room_id(&f)) else {
            return;
        };
        let folded = super::names::fold(name);
        if let Some(r) = self.rooms.get_mut(room_id.0 as usize) {
            r.remote_presence(name, &folded, on);
            self.mark_dirty(room_id);
        }
    }

    /// Cluster mode: every member of `room` as the cluster has it now
    /// (this node's users included; they are skipped).
    pub fn room_members(&mut self, room: &str, names: Vec<String>) {
        let Some(room_id) = fold_room(room).and_then(|f| self.room_id(&f)) else {
            return;
        };
        let remote: Vec<(String, String)> = names
            .into_iter()
            .map(|n| (super::names::fold(&n), n))
            .filter(|(f, _)| self.dir.has_folded(f).is_none())
            .collect();
        if let Some(r) = self.rooms.get_mut(room_id.0 as usize) {
            r.remote_snapshot(remote);
            self.mark_dirty(room_id);
        }
    }

    /// Cluster mode: the name of `conn`'s user turned out to be held by a
    /// user on another node (both took it while the nodes were apart): the
    /// user is told why before the server ends the connection. False when
    /// `conn` has no user.
    pub fn name_lost(&mut self, conn: ConnId, now: Now) -> bool {
        let Some(name) = self.name_of(conn).map(str::to_owned) else {
            return false;
        };
        let text = format!(
            "The name '{name}' was also taken on another server while the servers were apart, and it keeps it. Please join again with another name."
        );
        self.error(conn, ErrorCode::NameTaken, text, now);
        true
    }

    /// The name a pending claim is for.
    pub fn pending_claim_name(&self, conn: ConnId) -> Option<String> {
        self.claims.get(&conn).map(|p| p.name.clone())
    }

    /// Cluster mode: lines of `room` were lost before this node could
    /// deliver them (trimmed from the room's stream): members are told.
    pub fn room_gap(&mut self, room: &str, now: Now) {
        let Some(room_id) = fold_room(room).and_then(|f| self.room_id(&f)) else {
            return;
        };
        let Some(name) = self.rooms.get(room_id.0 as usize).map(|r| r.name.clone()) else {
            return;
        };
        let text = format!("Some messages in {name} could not be delivered.");
        self.push(Self::to_room(room_id), now, Event::Notice { text });
    }

    /// Cluster mode: a room line the cluster could not take (out of reach):
    /// numbered and delivered here, as a single node would.
    pub fn post_locally(&mut self, msg: Message, now: Now) {
        let (Event::Chat { from, text }, Some(tag)) = (msg.event, msg.room) else {
            return;
        };
        let Some(room_id) = fold_room(&tag.name).and_then(|f| self.room_id(&f)) else {
            return;
        };
        let Some(room) = self.rooms.get_mut(room_id.0 as usize) else {
            return;
        };
        let seq = room.next_seq();
        let msg = Rc::new(Message {
            ts_ms: now.unix_ms,
            event: Event::Chat { from, text },
            room: Some(super::RoomTag {
                name: room.name.clone(),
                seq: Some(seq),
            }),
        });
        room.remember(msg.clone());
        self.outbox.push(Pending::Persist(msg.clone()));
        self.push_msg(Self::to_room(room_id), msg);
    }

    /// The history's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Error for a private message to a name nobody has.
    pub(super) fn unknown_user(&mut self, conn: ConnId, to: &str, now: Now) {
        // No online name is longer than the name limit: quote no more.
        let shown: String = to.chars().take(super::names::MAX_NAME_CHARS + 1).collect();
        let msg = format!("User '{shown}' is not online.");
        self.error(conn, ErrorCode::UnknownUser, msg, now);
    }
}
