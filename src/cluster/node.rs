//! One node's side of the cluster protocol, sans-I/O: the hub's cluster
//! effects in, Redis commands and subscriptions out; Redis replies and
//! pub/sub messages in, what the hub must hear out ([`ToHub`]), in order.
//!
//! - **Two links.** Commands are pipelined on one ([`Pipeline`]), channels
//!   are kept subscribed on the other ([`Subscriber`]). The server's loop
//!   moves the bytes and tells the node when a link connects or is lost.
//! - **Names.** A join's claim is `SET name value NX EX ttl`; every local
//!   name is refreshed (and re-claimed after Redis lost it) every third of
//!   the expiry; a user who leaves releases it with a compare-and-delete.
//! - **Room order.** A room line goes through the `POST` script (next
//!   `seq`, stream, publish). A watched room is subscribed first, then
//!   loaded (topic, `seq`, recent lines); messages that arrive meanwhile are
//!   held and handed over after the load, in `seq` order. A message beyond
//!   the next expected one leaves a gap, filled from the stream (`XRANGE`)
//!   or announced when the stream no longer has it.
//! - **Out of reach.** When the command link is lost, the hub hears
//!   `Up(false)` (and serves its users alone); when it is back, `Up(true)`,
//!   names are refreshed and every watched room is loaded again.
//! - **Redis lost its data** (restarted empty): a room's numbering goes on
//!   from the highest `seq` this node has seen, and a changed epoch makes
//!   every watched room announce a gap once it is loaded again.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use super::keys::Keys;
use super::pipeline::{Pipeline, PipelineLimits};
use super::scripts::{self, Script};
use super::subscriber::{Incoming, Liveness, Subscriber};
use super::wire::{self, RoomNote};
use crate::hub::ConnId;
use crate::proto::resp::{Frame, RespLimits};
use crate::store::Record;

/// The node's settings.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_id: String,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db: u32,
    /// Expiry of a name's claim; refreshed every third of it.
    pub claim_ttl: Duration,
    /// Approximate length the room streams are trimmed to.
    pub stream_maxlen: usize,
    /// Lines loaded when a room is watched.
    pub load_lines: usize,
    /// A fresh epoch, used if the cluster has none yet.
    pub fresh_epoch: String,
}

/// What the hub must hear, in this order.
#[derive(Debug, Clone, PartialEq)]
pub enum ToHub {
    /// The cluster came in reach, or went out of it.
    Up(bool),
    /// The cluster's history epoch.
    Epoch(String),
    ClaimAnswered {
        conn: ConnId,
        granted: bool,
    },
    /// A numbered line or a topic change of a watched room.
    Ingest(Record),
    /// A watched room as loaded: last `seq`, recent lines, topic.
    Synced {
        room: Rc<str>,
        seq: u64,
        lines: Vec<Record>,
        topic: Option<String>,
    },
    /// Lines of `room` are lost for good (trimmed from the stream).
    Gap {
        room: Rc<str>,
    },
    PrivateAnswered {
        conn: ConnId,
        to: String,
        text: String,
        reached: Option<String>,
    },
    DeliverPrivate {
        folded: String,
        from: String,
        text: String,
    },
    /// `name` entered (`on`) or left `room` on another node.
    Presence {
        room: Rc<str>,
        name: String,
        on: bool,
    },
    /// Everyone in `room` as the cluster has it now (expired entries left out).
    Members {
        room: Rc<str>,
        names: Vec<String>,
    },
    /// The name of the local user of `conn` is held by a user on another
    /// node (both took it while the nodes were apart): this one goes.
    NameLost {
        conn: ConnId,
    },
    /// A room line that could not be posted (the cluster is out of reach):
    /// the hub numbers and delivers it locally.
    Unposted(Record),
}

/// What a reply answers.
#[derive(Debug)]
enum Tag {
    /// AUTH / SELECT: an error ends the connection.
    Hello,
    /// Nothing to do with the reply (errors are logged).
    Ignore(&'static str),
    Epoch,
    Claim {
        conn: ConnId,
    },
    Refresh {
        conn: ConnId,
        folded: String,
    },
    Script {
        script: &'static Script,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
        evaled: bool,
        then: Then,
    },
    LoadTopic {
        room: Rc<str>,
        round: u64,
    },
    LoadSeq {
        room: Rc<str>,
        round: u64,
    },
    LoadLines {
        room: Rc<str>,
        round: u64,
    },
    Fill {
        room: Rc<str>,
        round: u64,
    },
    Members {
        room: Rc<str>,
        round: u64,
    },
}

/// What follows a script's reply.
#[derive(Debug, Clone)]
enum Then {
    Nothing,
    Posted,
    Private {
        conn: ConnId,
        to: String,
        text: String,
    },
}

/// A channel the node is subscribed to.
#[derive(Debug, Clone)]
enum Chan {
    Room(Rc<str>),
    User(String),
}

/// Where a watched room stands.
#[derive(Debug)]
enum Phase {
    /// Waiting for its subscription (and the command link) to load it.
    Waiting,
    /// Loading; messages that arrive meanwhile are held.
    Loading {
        topic: Option<Option<String>>,
        seq: Option<u64>,
        held: BTreeMap<u64, Record>,
    },
    /// Live: `last` was handed to the hub; later ones wait in `held` until
    /// the gap before them is filled.
    Live {
        last: u64,
        held: BTreeMap<u64, Record>,
        filling: bool,
    },
}

#[derive(Debug)]
struct Watched {
    channel: Vec<u8>,
    /// Bumped whenever the room is loaded again: older replies are stale.
    round: u64,
    subscribed: bool,
    phase: Phase,
    /// The highest `seq` handed to the hub before the room last went back
    /// to waiting; kept across reconnects (see [`Node::on_cmd_connected`]).
    high: u64,
    /// Redis lost its data since the room was last loaded: the next load
    /// announces a gap.
    lost: bool,
}

impl Watched {
    /// Back to waiting for a (re)load: what was in flight is stale, and the
    /// `seq` reached so far is remembered.
    fn back_to_waiting(&mut self) {
        if let Phase::Live { last, .. } = &self.phase {
            self.high = self.high.max(*last);
        }
        self.round += 1;
        self.phase = Phase::Waiting;
    }
}

/// A local user's claim.
#[derive(Debug, Clone)]
struct Claim {
    key: Vec<u8>,
    value: Vec<u8>,
    channel: Vec<u8>,
}

/// Held messages beyond which a room is loaded again instead.
const MAX_HELD: usize = 10_000;

/// One node's cluster protocol. See the module docs.
#[derive(Debug)]
pub struct Node {
    cfg: NodeConfig,
    keys: Keys,
    cmd: Pipeline<Tag>,
    sub: Subscriber,
    cmd_ready: bool,
    rooms: HashMap<Rc<str>, Watched>,
    channels: HashMap<Vec<u8>, Chan>,
    names: HashMap<ConnId, Claim>,
    /// Local users in each room (kept in the rooms' member sets).
    local: HashMap<Rc<str>, std::collections::HashSet<String>>,
    next_refresh: Option<Instant>,
    /// Wall-clock milliseconds as of the last call that passed them.
    unix_ms: u64,
    /// Subscription-link bytes queued before the subscriber's own (AUTH).
    sub_out: Vec<u8>,
    out: Vec<ToHub>,
    replies: Vec<(Tag, Instant, Frame)>,
    incoming: Vec<Incoming>,
    /// The cluster's epoch as last read from Redis.
    epoch: Option<String>,
    /// Counters for `/stats` and `/metrics`.
    pub stats: NodeStats,
}

/// Counters of the cluster link.
#[derive(Debug, Default, Clone, Copy)]
pub struct NodeStats {
    pub connects: u64,
    pub posted: u64,
    pub received: u64,
    pub gaps_filled: u64,
    pub gaps_lost: u64,
    /// Round-trip time of the latest reply, in microseconds.
    pub rtt_us: u64,
}

impl Node {
    pub fn new(cfg: NodeConfig, now: Instant) -> Node {
        let limits = RespLimits::default();
        Node {
            keys: Keys::new(super::keys::DEFAULT_PREFIX),
            cmd: Pipeline::new(PipelineLimits::default(), limits),
            sub: Subscriber::new(Duration::from_secs(5), Duration::from_secs(5), limits, now),
            cmd_ready: false,
            rooms: HashMap::new(),
            channels: HashMap::new(),
            names: HashMap::new(),
            local: HashMap::new(),
            next_refresh: None,
            unix_ms: 0,
            sub_out: Vec::new(),
            out: Vec::new(),
            replies: Vec::new(),
            incoming: Vec::new(),
            epoch: None,
            stats: NodeStats::default(),
            cfg,
        }
    }

    /// The epoch to set if the cluster has none at the next connect (Redis
    /// lost its data meanwhile): a new one, so that clients learn that the
    /// history they knew is gone.
    pub fn set_fresh_epoch(&mut self, epoch: String) {
        self.cfg.fresh_epoch = epoch;
    }

    /// The node's id.
    pub fn id(&self) -> &str {
        &self.cfg.node_id
    }

    /// True while the command link is connected.
    pub fn is_up(&self) -> bool {
        self.cmd_ready
    }

    /// True when the hub has something to hear.
    pub fn has_news(&self) -> bool {
        !self.out.is_empty()
    }

    /// What the hub must hear, taken.
    pub fn take_to_hub(&mut self) -> Vec<ToHub> {
        std::mem::take(&mut self.out)
    }

    /// Bytes for the command link, taken.
    pub fn take_cmd_output(&mut self) -> Vec<u8> {
        self.cmd.take_output()
    }

    /// Bytes for the subscription link, taken.
    pub fn take_sub_output(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.sub_out);
        out.extend_from_slice(&self.sub.take_output());
        out
    }

    /// Watched rooms and local names (for `/stats`).
    pub fn counts(&self) -> (usize, usize) {
        (self.rooms.len(), self.names.len())
    }

    // ---- links ------------------------------------------------------------

    /// The command link connected: hello, scripts, epoch; names refreshed and
    /// rooms loaded again.
    ///
    /// A Redis that lost its data (restarted empty) would number a room's
    /// lines from 1 again, and nodes that already delivered higher numbers
    /// would take the new lines for old ones and drop them. So, before
    /// anything the hub may post, each watched room's `seq` is set to the
    /// highest this node has seen, if Redis has none (`SET … NX`): a Redis
    /// that kept its data keeps its own, never lower, value.
    pub fn on_cmd_connected(&mut self, now: Instant) {
        self.stats.connects += 1;
        self.cmd_ready = true;
        let _ = self.cmd.reset();
        self.hello_commands(now);
        for s in scripts::ALL {
            self.send(Tag::Ignore("SCRIPT LOAD"), &s.load(), now);
        }
        let epoch_key = self.keys.epoch();
        let fresh = self.cfg.fresh_epoch.clone();
        self.send(
            Tag::Ignore("SET epoch"),
            &[b"SET", &epoch_key, fresh.as_bytes(), b"NX"],
            now,
        );
        self.send(Tag::Epoch, &[b"GET", &epoch_key], now);
        let highs: Vec<(Vec<u8>, String)> = self
            .rooms
            .iter()
            .map(|(room, w)| {
                let high = match &w.phase {
                    Phase::Live { last, .. } => w.high.max(*last),
                    _ => w.high,
                };
                (self.keys.room_seq(room), high.to_string())
            })
            .filter(|(_, high)| high != "0")
            .collect();
        for (key, high) in highs {
            self.send(
                Tag::Ignore("SET seq NX"),
                &[b"SET", &key, high.as_bytes(), b"NX"],
                now,
            );
        }
        self.out.push(ToHub::Up(true));
        self.refresh_names(now);
        let rooms: Vec<Rc<str>> = self.rooms.keys().cloned().collect();
        for room in rooms {
            if let Some(w) = self.rooms.get_mut(&room) {
                w.back_to_waiting();
            }
            self.load_if_ready(&room, now);
        }
        info!("cluster: node {} connected to Redis", self.cfg.node_id);
    }

    /// The command link is lost: replies in flight are gone.
    pub fn on_cmd_lost(&mut self) {
        if !self.cmd_ready {
            return;
        }
        self.cmd_ready = false;
        let mut unposted = 0usize;
        for tag in self.cmd.reset() {
            match tag {
                Tag::Script {
                    then: Then::Posted,
                    args,
                    script,
                    ..
                } if std::ptr::eq(script, &scripts::POST) => {
                    if let Some(rec) = args.get(1).and_then(|p| wire::decode_line(1, p).ok()) {
                        unposted += 1;
                        self.out.push(ToHub::Unposted(rec));
                    }
                }
                Tag::Script {
                    then: Then::Private { conn, to, text },
                    ..
                } => self.out.push(ToHub::PrivateAnswered {
                    conn,
                    to,
                    text,
                    reached: None,
                }),
                _ => {}
            }
        }
        for w in self.rooms.values_mut() {
            w.back_to_waiting();
        }
        self.out.push(ToHub::Up(false));
        warn!(
            "cluster: node {} lost Redis ({unposted} line(s) delivered locally only)",
            self.cfg.node_id
        );
    }

    /// The subscription link connected: every wanted channel is subscribed
    /// again (rooms load once their subscription is confirmed).
    pub fn on_sub_connected(&mut self, now: Instant) {
        let mut hello = Vec::new();
        if let Some(pass) = &self.cfg.password {
            let mut cmd: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = &self.cfg.user {
                cmd.push(user.as_bytes());
            }
            cmd.push(pass.as_bytes());
            crate::proto::resp::encode_command(&cmd, &mut hello);
        }
        self.sub.on_connected(now);
        hello.extend_from_slice(&self.sub.take_output());
        self.sub_out = hello;
        for w in self.rooms.values_mut() {
            w.back_to_waiting();
            w.subscribed = false;
        }
    }

    /// The subscription link is lost: rooms wait for it to come back.
    pub fn on_sub_lost(&mut self) {
        self.sub.on_disconnected();
        self.sub_out.clear();
        for w in self.rooms.values_mut() {
            w.back_to_waiting();
            w.subscribed = false;
        }
    }

    /// Bytes read on the command link; returns the bytes used. `Err`: the
    /// link cannot go on (the caller reconnects it).
    pub fn on_cmd_input(&mut self, input: &[u8], now: Instant) -> Result<usize, String> {
        let mut replies = std::mem::take(&mut self.replies);
        let used = self
            .cmd
            .handle_bytes(input, &mut replies)
            .map_err(|e| e.to_string());
        let mut fatal = None;
        for (tag, sent, frame) in replies.drain(..) {
            self.stats.rtt_us =
                u64::try_from(now.saturating_duration_since(sent).as_micros()).unwrap_or(u64::MAX);
            if let Err(e) = self.on_reply(tag, frame, now) {
                fatal.get_or_insert(e);
            }
        }
        self.replies = replies;
        match fatal {
            Some(e) => Err(e),
            None => used,
        }
    }

    /// Bytes read on the subscription link; returns the bytes used.
    pub fn on_sub_input(&mut self, input: &[u8], now: Instant) -> Result<usize, String> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let used = self
            .sub
            .handle_bytes(input, now, &mut incoming)
            .map_err(|e| e.to_string());
        for m in incoming.drain(..) {
            match m {
                Incoming::Subscribed { channel } => self.on_subscribed(&channel, now),
                Incoming::Message { channel, payload } => self.on_message(&channel, &payload, now),
            }
        }
        self.incoming = incoming;
        used
    }

    /// The wall clock (Unix ms), for presence expiry; called every turn.
    pub fn set_unix_ms(&mut self, unix_ms: u64) {
        self.unix_ms = unix_ms;
    }

    /// Timers: name and presence refresh, reply timeout, subscription
    /// liveness. Returns (restart the command link, restart the subscription link).
    pub fn on_tick(&mut self, now: Instant, unix_ms: u64) -> (bool, bool) {
        self.unix_ms = unix_ms;
        if self.cmd_ready && self.next_refresh.is_some_and(|t| now >= t) {
            self.refresh_names(now);
        }
        let cmd_dead = self.cmd_ready && self.cmd.timed_out(now);
        let sub_dead = self.sub.on_tick(now) == Liveness::Dead;
        (cmd_dead, sub_dead)
    }

    /// The next time [`Node::on_tick`] has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        [
            self.next_refresh.filter(|_| self.cmd_ready),
            self.cmd.deadline(),
            self.sub.deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- hub effects --------------------------------------------------------

    /// Claim `name` for `conn`.
    pub fn claim(&mut self, conn: ConnId, name: &str, folded: &str, now: Instant) {
        if !self.cmd_ready {
            // Out of reach: decided locally; re-claimed when Redis is back.
            self.out.push(ToHub::ClaimAnswered {
                conn,
                granted: true,
            });
            return;
        }
        let key = self.keys.name(folded);
        let Ok(value) = wire::encode_claim(&self.cfg.node_id, (conn.key, conn.serial), name) else {
            self.out.push(ToHub::ClaimAnswered {
                conn,
                granted: false,
            });
            return;
        };
        let ttl = self.cfg.claim_ttl.as_secs().max(1).to_string();
        self.send(
            Tag::Claim { conn },
            &[b"SET", &key, &value, b"NX", b"EX", ttl.as_bytes()],
            now,
        );
    }

    /// `conn` joined as `name` (after a claim, or locally): its name is
    /// kept claimed and its private channel subscribed.
    pub fn joined(&mut self, conn: ConnId, name: &str, now: Instant) {
        let folded = crate::hub::names::fold(name);
        let Ok(value) = wire::encode_claim(&self.cfg.node_id, (conn.key, conn.serial), name) else {
            return;
        };
        let claim = Claim {
            key: self.keys.name(&folded),
            value,
            channel: self.keys.user_channel(&folded),
        };
        self.sub.subscribe(&claim.channel);
        self.channels
            .insert(claim.channel.clone(), Chan::User(folded));
        if self.next_refresh.is_none() {
            self.next_refresh = Some(now + self.refresh_every());
        }
        self.names.insert(conn, claim);
    }

    /// The user of `conn` left: its name is released.
    pub fn gone(&mut self, conn: ConnId, now: Instant) {
        let Some(claim) = self.names.remove(&conn) else {
            return;
        };
        self.sub.unsubscribe(&claim.channel);
        self.channels.remove(&claim.channel);
        if self.cmd_ready {
            self.script(
                &scripts::RELEASE,
                vec![claim.key],
                vec![claim.value],
                Then::Nothing,
                now,
            );
        }
    }

    /// A claim granted for a connection that left meanwhile.
    pub fn release_unused(&mut self, conn: ConnId, name: &str, now: Instant) {
        if !self.cmd_ready {
            return;
        }
        let folded = crate::hub::names::fold(name);
        let key = self.keys.name(&folded);
        let Ok(value) = wire::encode_claim(&self.cfg.node_id, (conn.key, conn.serial), name) else {
            return;
        };
        self.script(
            &scripts::RELEASE,
            vec![key],
            vec![value],
            Then::Nothing,
            now,
        );
    }

    /// A room's chat line to number and publish.
    pub fn post_line(&mut self, room: &str, ts_ms: u64, from: &str, text: &str, now: Instant) {
        let mut payload = Vec::new();
        if let Err(e) = wire::encode_line(room, ts_ms, from, text, &mut payload) {
            warn!("cluster: a line of {room} cannot be posted: {e:?}");
            return;
        }
        if !self.cmd_ready {
            if let Ok(rec) = wire::decode_line(1, &payload) {
                self.out.push(ToHub::Unposted(rec));
            }
            return;
        }
        self.stats.posted += 1;
        let keys = vec![self.keys.room_seq(room), self.keys.room_log(room)];
        let args = vec![
            self.keys.room_channel(room),
            payload,
            self.cfg.stream_maxlen.to_string().into_bytes(),
        ];
        self.script(&scripts::POST, keys, args, Then::Posted, now);
    }

    /// A room's topic change to publish.
    pub fn post_topic(&mut self, room: &str, ts_ms: u64, by: &str, topic: &str, now: Instant) {
        if !self.cmd_ready {
            return;
        }
        let mut payload = Vec::new();
        if wire::encode_topic(room, ts_ms, by, topic, &mut payload).is_err() {
            return;
        }
        let keys = vec![self.keys.room_topic(room)];
        let args = vec![self.keys.room_channel(room), payload];
        self.script(&scripts::TOPIC, keys, args, Then::Nothing, now);
    }

    /// A private message for a user on another node.
    pub fn private(&mut self, conn: ConnId, to: &str, from: &str, text: &str, now: Instant) {
        if !self.cmd_ready {
            self.out.push(ToHub::PrivateAnswered {
                conn,
                to: to.to_owned(),
                text: text.to_owned(),
                reached: None,
            });
            return;
        }
        let folded = crate::hub::names::fold(to);
        let mut payload = Vec::new();
        if wire::encode_private(from, text, &mut payload).is_err() {
            self.out.push(ToHub::PrivateAnswered {
                conn,
                to: to.to_owned(),
                text: text.to_owned(),
                reached: None,
            });
            return;
        }
        let keys = vec![self.keys.name(&folded)];
        let args = vec![self.keys.user_channel(&folded), payload];
        let then = Then::Private {
            conn,
            to: to.to_owned(),
            text: text.to_owned(),
        };
        self.script(&scripts::PRIVATE, keys, args, then, now);
    }

    /// The local user `name` entered `room` (`on`) or left it: the room's
    /// member set (score: expiry, Unix ms) and the other nodes follow.
    pub fn presence(&mut self, room: &str, name: &str, on: bool, now: Instant) {
        let room: Rc<str> = Rc::from(room);
        let key = self.keys.room_members(&room);
        let channel = self.keys.room_channel(&room);
        let mut note = Vec::new();
        let encoded = if on {
            wire::encode_joined(&self.cfg.node_id, name, &mut note)
        } else {
            wire::encode_left(&self.cfg.node_id, name, &mut note)
        };
        let set = self.local.entry(room.clone()).or_default();
        if on {
            set.insert(name.to_owned());
        } else {
            set.remove(name);
            if set.is_empty() {
                self.local.remove(&room);
            }
        }
        if !self.cmd_ready || encoded.is_err() {
            return;
        }
        if on {
            let score = self.expiry_ms().to_string();
            self.send(
                Tag::Ignore("ZADD"),
                &[b"ZADD", &key, score.as_bytes(), name.as_bytes()],
                now,
            );
        } else {
            self.send(Tag::Ignore("ZREM"), &[b"ZREM", &key, name.as_bytes()], now);
        }
        self.send(Tag::Ignore("PUBLISH"), &[b"PUBLISH", &channel, &note], now);
    }

    fn expiry_ms(&self) -> u64 {
        let ttl = u64::try_from(self.cfg.claim_ttl.as_millis()).unwrap_or(u64::MAX);
        self.unix_ms.saturating_add(ttl)
    }

    /// Presence refresh: this node's users in every room get a new expiry,
    /// expired entries go, and every watched room's members are read again
    /// (a killed node's users drop out of the lists at their expiry).
    fn refresh_presence(&mut self, now: Instant) {
        let score = self.expiry_ms().to_string();
        let cutoff = format!("({}", self.unix_ms);
        let rooms: Vec<(Rc<str>, Vec<String>)> = self
            .local
            .iter()
            .map(|(r, s)| (r.clone(), s.iter().cloned().collect()))
            .collect();
        for (room, names) in rooms {
            let key = self.keys.room_members(&room);
            let mut cmd: Vec<&[u8]> = vec![b"ZADD", &key];
            for n in &names {
                cmd.push(score.as_bytes());
                cmd.push(n.as_bytes());
            }
            self.send(Tag::Ignore("ZADD"), &cmd, now);
        }
        let watched: Vec<Rc<str>> = self.rooms.keys().cloned().collect();
        for room in watched {
            let key = self.keys.room_members(&room);
            self.send(
                Tag::Ignore("ZREMRANGEBYSCORE"),
                &[b"ZREMRANGEBYSCORE", &key, b"-inf", cutoff.as_bytes()],
                now,
            );
            self.read_members(&room, now);
        }
    }

    fn read_members(&mut self, room: &Rc<str>, now: Instant) {
        let Some(round) = self.rooms.get(room).map(|w| w.round) else {
            return;
        };
        let key = self.keys.room_members(room);
        let from = self.unix_ms.to_string();
        self.send(
            Tag::Members {
                room: room.clone(),
                round,
            },
            &[b"ZRANGE", &key, from.as_bytes(), b"+inf", b"BYSCORE"],
            now,
        );
    }

    /// The node has local members in `room` (`on`), or no longer has any.
    pub fn watch(&mut self, room: &str, on: bool, now: Instant) {
        let room: Rc<str> = Rc::from(room);
        if on {
            if self.rooms.contains_key(&room) {
                return;
            }
            let channel = self.keys.room_channel(&room);
            self.sub.subscribe(&channel);
            self.channels
                .insert(channel.clone(), Chan::Room(room.clone()));
            self.rooms.insert(
                room.clone(),
                Watched {
                    channel,
                    round: 0,
                    subscribed: false,
                    phase: Phase::Waiting,
                    high: 0,
                    lost: false,
                },
            );
            let _ = now;
        } else if let Some(w) = self.rooms.remove(&room) {
            self.sub.unsubscribe(&w.channel);
            self.channels.remove(&w.channel);
        }
    }

    // ---- internals ------------------------------------------------------------

    fn refresh_every(&self) -> Duration {
        (self.cfg.claim_ttl / 3).max(Duration::from_millis(500))
    }

    fn hello_commands(&mut self, now: Instant) {
        if let Some(pass) = self.cfg.password.clone() {
            match self.cfg.user.clone() {
                Some(user) => self.send(
                    Tag::Hello,
                    &[b"AUTH", user.as_bytes(), pass.as_bytes()],
                    now,
                ),
                None => self.send(Tag::Hello, &[b"AUTH", pass.as_bytes()], now),
            }
        }
        if self.cfg.db != 0 {
            let db = self.cfg.db.to_string();
            self.send(Tag::Hello, &[b"SELECT", db.as_bytes()], now);
        }
    }

    fn refresh_names(&mut self, now: Instant) {
        self.next_refresh = Some(now + self.refresh_every());
        self.refresh_presence(now);
        let ttl = self.cfg.claim_ttl.as_secs().max(1).to_string();
        let claims: Vec<(ConnId, Claim)> = self
            .names
            .iter()
            .map(|(conn, c)| (*conn, c.clone()))
            .collect();
        for (conn, c) in claims {
            let folded = match self.channels.get(&c.channel) {
                Some(Chan::User(f)) => f.clone(),
                _ => String::new(),
            };
            let args = [c.value.as_slice(), ttl.as_bytes()];
            let call = scripts::REFRESH.evalsha(&[c.key.as_slice()], &args);
            let parts = call.parts();
            self.send(Tag::Refresh { conn, folded }, &parts, now);
        }
    }

    fn send(&mut self, tag: Tag, cmd: &[&[u8]], now: Instant) {
        if let Err(e) = self.cmd.send(tag, cmd, now) {
            warn!("cluster: command dropped: {e}");
        }
    }

    fn script(
        &mut self,
        script: &'static Script,
        keys: Vec<Vec<u8>>,
        args: Vec<Vec<u8>>,
        then: Then,
        now: Instant,
    ) {
        let result = {
            let k: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
            let a: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let call = script.evalsha(&k, &a);
            let parts = call.parts();
            let parts: Vec<Vec<u8>> = parts.iter().map(|p| p.to_vec()).collect();
            parts
        };
        let refs: Vec<&[u8]> = result.iter().map(Vec::as_slice).collect();
        let tag = Tag::Script {
            script,
            keys,
            args,
            evaled: false,
            then,
        };
        if let Err(e) = self.cmd.send(tag, &refs, now) {
            warn!("cluster: command dropped: {e}");
        }
    }

    fn on_reply(&mut self, tag: Tag, frame: Frame, now: Instant) -> Result<(), String> {
        let frame = frame.without_attributes();
        match tag {
            Tag::Hello => {
                if let Some(e) = frame.error_message() {
                    return Err(format!(
                        "Redis refused the connection: {}",
                        String::from_utf8_lossy(e)
                    ));
                }
            }
            Tag::Ignore(what) => {
                if let Some(e) = frame.error_message() {
                    warn!("cluster: {what}: {}", String::from_utf8_lossy(e));
                }
            }
            Tag::Epoch => {
                if let Some(e) = frame.as_bytes().and_then(|b| std::str::from_utf8(b).ok()) {
                    if let Some(old) = self.epoch.as_deref()
                        && old != e
                    {
                        // Not the epoch of the last connection: Redis lost
                        // its data (restarted empty), and with it whatever
                        // the rooms' members missed meanwhile. Each room
                        // says so once it is loaded again.
                        warn!("cluster: Redis lost its data (epoch {old}, now {e})");
                        for w in self.rooms.values_mut() {
                            w.lost = true;
                        }
                    }
                    self.epoch = Some(e.to_owned());
                    self.out.push(ToHub::Epoch(e.to_owned()));
                }
            }
            Tag::Claim { conn } => {
                let granted = matches!(&frame, Frame::Simple(ok) if ok == b"OK");
                if let Some(e) = frame.error_message() {
                    warn!("cluster: claim failed: {}", String::from_utf8_lossy(e));
                }
                self.out.push(ToHub::ClaimAnswered { conn, granted });
            }
            Tag::Refresh { conn, folded } => {
                if frame.as_integer() == Some(0) {
                    // Two users took this name while the nodes were apart;
                    // the other one's claim reached Redis first.
                    warn!("cluster: the name {folded} is held on another node: its user here goes");
                    if self.names.contains_key(&conn) {
                        self.out.push(ToHub::NameLost { conn });
                    }
                } else if let Some(e) = frame.error_message() {
                    if scripts::is_noscript(&frame) {
                        // Loaded again; the next refresh uses it.
                        self.send(Tag::Ignore("SCRIPT LOAD"), &scripts::REFRESH.load(), now);
                    } else {
                        warn!("cluster: refresh failed: {}", String::from_utf8_lossy(e));
                    }
                }
            }
            Tag::Script {
                script,
                keys,
                args,
                evaled,
                then,
            } => {
                if !evaled && scripts::is_noscript(&frame) {
                    // Redis lost its scripts (restarted, or flushed): the
                    // source this time, and loaded again for the next ones.
                    self.send(Tag::Ignore("SCRIPT LOAD"), &script.load(), now);
                    let k: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
                    let a: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                    let parts: Vec<Vec<u8>> = script
                        .eval(&k, &a)
                        .parts()
                        .iter()
                        .map(|p| p.to_vec())
                        .collect();
                    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
                    let tag = Tag::Script {
                        script,
                        keys: keys.clone(),
                        args: args.clone(),
                        evaled: true,
                        then,
                    };
                    if let Err(e) = self.cmd.send(tag, &refs, now) {
                        warn!("cluster: command dropped: {e}");
                    }
                    return Ok(());
                }
                if let Some(e) = frame.error_message() {
                    warn!("cluster: script failed: {}", String::from_utf8_lossy(e));
                }
                match then {
                    Then::Nothing | Then::Posted => {}
                    Then::Private { conn, to, text } => {
                        let reached = frame
                            .as_bytes()
                            .and_then(|v| wire::decode_claim(v).ok())
                            .map(|c| c.display.to_owned());
                        self.out.push(ToHub::PrivateAnswered {
                            conn,
                            to,
                            text,
                            reached,
                        });
                    }
                }
            }
            Tag::LoadTopic { room, round } => {
                let topic = frame.as_bytes().and_then(|p| {
                    let rec = wire::decode_topic(p).ok()?;
                    match rec.kind {
                        crate::store::RecordKind::Topic { topic, .. } => Some(topic),
                        crate::store::RecordKind::Message { .. } => None,
                    }
                });
                if let Some(w) = self.rooms.get_mut(&room)
                    && w.round == round
                    && let Phase::Loading { topic: t, .. } = &mut w.phase
                {
                    *t = Some(topic);
                }
            }
            Tag::LoadSeq { room, round } => {
                let seq = frame
                    .as_bytes()
                    .and_then(|b| std::str::from_utf8(b).ok())
                    .and_then(|s| s.parse::<u64>().ok())
                    .or_else(|| frame.as_integer().and_then(|n| u64::try_from(n).ok()))
                    .unwrap_or(0);
                if let Some(w) = self.rooms.get_mut(&room)
                    && w.round == round
                    && let Phase::Loading { seq: s, .. } = &mut w.phase
                {
                    *s = Some(seq);
                }
            }
            Tag::LoadLines { room, round } => {
                let mut lines = entries(&frame);
                lines.sort_by_key(|r| r.seq);
                self.loaded(&room, round, lines, now);
            }
            Tag::Members { room, round } => {
                let current = self.rooms.get(&room).is_some_and(|w| w.round == round);
                if let (true, Frame::Array(items)) = (current, &frame) {
                    let names = items
                        .iter()
                        .filter_map(|f| f.as_bytes())
                        .filter_map(|b| std::str::from_utf8(b).ok())
                        .map(str::to_owned)
                        .collect();
                    self.out.push(ToHub::Members { room, names });
                }
            }
            Tag::Fill { room, round } => {
                let lines = entries(&frame);
                self.filled(&room, round, lines, now);
            }
        }
        Ok(())
    }

    fn on_subscribed(&mut self, channel: &[u8], now: Instant) {
        let Some(Chan::Room(room)) = self.channels.get(channel).cloned() else {
            return;
        };
        if let Some(w) = self.rooms.get_mut(&room) {
            w.subscribed = true;
        }
        self.load_if_ready(&room, now);
    }

    /// Loads a watched room once its subscription is confirmed and the
    /// command link is up (so no line published meanwhile is missed).
    fn load_if_ready(&mut self, room: &Rc<str>, now: Instant) {
        if !self.cmd_ready {
            return;
        }
        let Some(w) = self.rooms.get_mut(room) else {
            return;
        };
        if !w.subscribed || !matches!(w.phase, Phase::Waiting) {
            return;
        }
        w.round += 1;
        let round = w.round;
        w.phase = Phase::Loading {
            topic: None,
            seq: None,
            held: BTreeMap::new(),
        };
        let (topic, seq, log) = (
            self.keys.room_topic(room),
            self.keys.room_seq(room),
            self.keys.room_log(room),
        );
        let count = self.cfg.load_lines.max(1).to_string();
        let room = room.clone();
        self.send(
            Tag::LoadTopic {
                room: room.clone(),
                round,
            },
            &[b"GET", &topic],
            now,
        );
        self.send(
            Tag::LoadSeq {
                room: room.clone(),
                round,
            },
            &[b"GET", &seq],
            now,
        );
        // Members before lines: the hub knows who is in the room by the
        // time the load completes and its joiners are told about it.
        self.read_members(&room, now);
        self.send(
            Tag::LoadLines { room, round },
            &[b"XREVRANGE", &log, b"+", b"-", b"COUNT", count.as_bytes()],
            now,
        );
    }

    fn loaded(&mut self, room: &Rc<str>, round: u64, lines: Vec<Record>, now: Instant) {
        let Some(w) = self.rooms.get_mut(room) else {
            return;
        };
        if w.round != round {
            return;
        }
        let Phase::Loading { topic, seq, held } = std::mem::replace(&mut w.phase, Phase::Waiting)
        else {
            return;
        };
        let newest = lines.last().map_or(0, |r| r.seq);
        let seq = seq.unwrap_or(0).max(newest);
        w.phase = Phase::Live {
            last: seq,
            held: BTreeMap::new(),
            filling: false,
        };
        let lost = std::mem::take(&mut w.lost);
        self.out.push(ToHub::Synced {
            room: room.clone(),
            seq,
            lines,
            topic: topic.flatten(),
        });
        if lost {
            self.stats.gaps_lost += 1;
            self.out.push(ToHub::Gap { room: room.clone() });
        }
        for (_, rec) in held {
            self.line(room, rec, now);
        }
    }

    fn on_message(&mut self, channel: &[u8], payload: &[u8], now: Instant) {
        self.stats.received += 1;
        match self.channels.get(channel).cloned() {
            Some(Chan::Room(room)) => match wire::decode_room_note(payload) {
                Ok(RoomNote::Line { seq, payload }) => match wire::decode_line(seq, payload) {
                    Ok(rec) => self.line(&room, rec, now),
                    Err(e) => debug!("cluster: bad line on {room}: {e:?}"),
                },
                Ok(RoomNote::Topic { payload }) => match wire::decode_topic(payload) {
                    Ok(rec) => {
                        let live = self
                            .rooms
                            .get(&room)
                            .is_some_and(|w| matches!(w.phase, Phase::Live { .. }));
                        if live {
                            self.out.push(ToHub::Ingest(rec));
                        }
                    }
                    Err(e) => debug!("cluster: bad topic on {room}: {e:?}"),
                },
                Ok(RoomNote::Joined { node, .. }) | Ok(RoomNote::Left { node, .. })
                    if node == self.cfg.node_id => {}
                Ok(RoomNote::Joined { name, .. }) => self.out.push(ToHub::Presence {
                    room,
                    name: name.to_owned(),
                    on: true,
                }),
                Ok(RoomNote::Left { name, .. }) => self.out.push(ToHub::Presence {
                    room,
                    name: name.to_owned(),
                    on: false,
                }),
                Err(e) => debug!("cluster: bad note on {room}: {e:?}"),
            },
            Some(Chan::User(folded)) => match wire::decode_private(payload) {
                Ok((from, text)) => self.out.push(ToHub::DeliverPrivate {
                    folded,
                    from: from.to_owned(),
                    text: text.to_owned(),
                }),
                Err(e) => debug!("cluster: bad private message: {e:?}"),
            },
            None => {}
        }
    }

    /// A numbered line of `room`: handed over in order, held past a gap.
    fn line(&mut self, room: &Rc<str>, rec: Record, now: Instant) {
        let Some(w) = self.rooms.get_mut(room) else {
            return;
        };
        match &mut w.phase {
            Phase::Waiting => {}
            Phase::Loading { held, .. } => {
                if held.len() < MAX_HELD {
                    held.insert(rec.seq, rec);
                }
            }
            Phase::Live {
                last,
                held,
                filling,
            } => {
                if rec.seq <= *last {
                    return;
                }
                if rec.seq == *last + 1 && held.is_empty() {
                    *last = rec.seq;
                    self.out.push(ToHub::Ingest(rec));
                    return;
                }
                if held.len() >= MAX_HELD {
                    // Too far behind: load the room again.
                    w.high = w.high.max(*last);
                    w.phase = Phase::Waiting;
                    self.load_if_ready(room, now);
                    return;
                }
                held.insert(rec.seq, rec);
                let from = *last + 1;
                if !*filling {
                    *filling = true;
                    let upto = held.keys().next().copied().unwrap_or(from);
                    let round = w.round;
                    let log = self.keys.room_log(room);
                    let a = format!("{from}-0");
                    let b = format!("{}-0", upto.saturating_sub(1).max(from));
                    self.send(
                        Tag::Fill {
                            room: room.clone(),
                            round,
                        },
                        &[b"XRANGE", &log, a.as_bytes(), b.as_bytes()],
                        now,
                    );
                }
            }
        }
    }

    /// The lines of a gap, read from the stream.
    fn filled(&mut self, room: &Rc<str>, round: u64, lines: Vec<Record>, _now: Instant) {
        let Some(w) = self.rooms.get_mut(room) else {
            return;
        };
        if w.round != round {
            return;
        }
        let Phase::Live {
            last,
            held,
            filling,
        } = &mut w.phase
        else {
            return;
        };
        *filling = false;
        for rec in lines {
            if rec.seq <= *last {
                continue;
            }
            if rec.seq > *last + 1 {
                self.stats.gaps_lost += 1;
                self.out.push(ToHub::Gap { room: room.clone() });
            }
            *last = rec.seq;
            self.stats.gaps_filled += 1;
            self.out.push(ToHub::Ingest(rec));
        }
        while let Some((&seq, _)) = held.iter().next() {
            let Some(rec) = held.remove(&seq) else {
                break;
            };
            if seq <= *last {
                continue;
            }
            if seq > *last + 1 {
                // Trimmed from the stream before it could be read.
                self.stats.gaps_lost += 1;
                self.out.push(ToHub::Gap { room: room.clone() });
            }
            *last = seq;
            self.out.push(ToHub::Ingest(rec));
        }
    }
}

/// The lines of an `XRANGE` / `XREVRANGE` reply (entries `[id, [m, payload]]`).
fn entries(frame: &Frame) -> Vec<Record> {
    let Frame::Array(items) = frame else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Frame::Array(parts) = item else {
            continue;
        };
        let (Some(id), Some(Frame::Array(fields))) = (parts.first(), parts.get(1)) else {
            continue;
        };
        let Some(seq) = id
            .as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok())
            .and_then(|s| s.split('-').next())
            .and_then(|s| s.parse::<u64>().ok())
        else {
            continue;
        };
        let mut it = fields.iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if k.as_bytes() == Some(b"m")
                && let Some(rec) = v.as_bytes().and_then(|p| wire::decode_line(seq, p).ok())
            {
                out.push(rec);
            }
        }
    }
    out
}
