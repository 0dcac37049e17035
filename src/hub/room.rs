//! A room: its members, who hears what, and its presence bookkeeping.
//!
//! # Presence
//! Joins and leaves mark names as "touched"; [`Room::end_turn`] (once per loop
//! turn) turns everything touched in that turn into ONE full list for members
//! in [`PresenceMode::FullLists`] and ONE delta for members in
//! [`PresenceMode::Deltas`], so a join storm costs one list per member per turn
//! instead of one per join. Above [`SummaryPolicy::above_users`] members,
//! per-user join/leave notices and pushed lists give way to a periodic
//! [`Event::Summary`] (every [`SummaryPolicy::interval`]); lists are then sent
//! only on request.
//!
//! Knows users only by [`UserId`] and reads their names from the
//! [`Directory`]; knows nothing of wires.

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::directory::Directory;
use super::msg::{ConnId, Event, Message, PresenceMode, RoomId, Since, UserId};

/// Cluster mode: where a room's state stands against the other nodes.
#[derive(Debug, Default)]
pub enum Sync {
    /// Kept by this node alone: a single node, a room with no local member
    /// (what it remembers may be stale), or a cluster out of reach.
    #[default]
    Local,
    /// Its recent history is being loaded; these local joiners get their
    /// `room_joined` and replay once it is.
    Loading(Vec<Waiter>),
    /// Up to date: every line numbered by the cluster reaches this node.
    Synced,
}

/// A local member whose room details wait for the room to be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiter {
    pub conn: ConnId,
    /// Put there on joining the server (the lobby).
    pub auto: bool,
    pub since: Option<Since>,
    /// What the joiner is owed once loaded.
    pub replay: Replay,
}

/// The replay a joiner gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replay {
    /// A client with rooms: `room_joined`, then the history (when `history`).
    Rooms { history: bool },
    /// A client without rooms: the lobby's last `n` lines as plain messages.
    Legacy(usize),
}

/// One member: the user, the connection that receives for it, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub user: UserId,
    pub conn: ConnId,
    pub mode: PresenceMode,
    /// The member joined with the rooms feature (gets room details).
    pub rooms: bool,
    /// Sequence number of the member's welcome: broadcasts produced before it
    /// (still undelivered when the member joined) are not theirs.
    pub since: u64,
}

/// Which members of a room a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every member.
    All,
    /// Members in one presence mode.
    Mode(PresenceMode),
    /// Members in [`PresenceMode::Deltas`] who joined at or after this
    /// sequence number (this turn's joiners, owed a full list).
    FreshDeltas(u64),
}

/// When a room switches to summary mode.
#[derive(Debug, Clone, Copy)]
pub struct SummaryPolicy {
    pub above_users: usize,
    pub interval: Duration,
}

/// A room and its presence state. See the module docs.
#[derive(Debug)]
pub struct Room {
    pub id: RoomId,
    pub name: Rc<str>,
    pub topic: String,
    /// Kept without members or history (`--room`, and `#lobby`).
    pub permanent: bool,
    /// The last chat line's sequence number (0: none yet).
    pub seq: u64,
    /// The most recent chat lines, oldest first, at most `ring_capacity`.
    ring: VecDeque<Rc<Message>>,
    ring_capacity: usize,
    /// Text bytes held by `ring`, kept under [`RING_MAX_BYTES`].
    ring_bytes: usize,
    members: Vec<Member>,
    /// Position of each member in `members`.
    pos: HashMap<UserId, u32>,
    /// (display name, folded name) of every join/leave since the last `end_turn`.
    touched: Vec<(String, String)>,
    summary_mode: bool,
    /// Cluster mode: where the room stands (see [`Sync`]).
    pub sync: Sync,
    /// Members who joined this turn in [`PresenceMode::Deltas`] are owed a
    /// full list: one, shared by all of them, at the end of the turn.
    pub want_list: bool,
    /// Cluster mode: the room was loaded from the cluster at least once.
    pub synced_once: bool,
    /// Cluster mode: the last `seq` the cluster gave a line of this room
    /// (`seq` can be higher: lines numbered here while out of reach).
    pub cluster_seq: u64,
    /// Cluster mode: members on other nodes, folded name → display name.
    remote: HashMap<String, String>,
    window_joined: u64,
    window_left: u64,
    last_summary: Option<Instant>,
}

impl Room {
    pub fn new(id: RoomId, name: &str, ring_capacity: usize) -> Room {
        Room {
            id,
            name: Rc::from(name),
            topic: String::new(),
            permanent: false,
            seq: 0,
            ring: VecDeque::new(),
            ring_capacity,
            ring_bytes: 0,
            members: Vec::new(),
            pos: HashMap::new(),
            touched: Vec::new(),
            summary_mode: false,
            sync: Sync::Local,
            want_list: false,
            synced_once: false,
            cluster_seq: 0,
            remote: HashMap::new(),
            window_joined: 0,
            window_left: 0,
            last_summary: None,
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members here and, in cluster mode, on other nodes.
    pub fn total(&self) -> usize {
        self.members.len() + self.remote.len()
    }

    /// Cluster mode: `name` is in the room on another node (`on`), or left
    /// it. Counts for this turn's presence update like a local join or leave.
    pub fn remote_presence(&mut self, name: &str, folded: &str, on: bool) {
        let changed = if on {
            self.remote
                .insert(folded.to_owned(), name.to_owned())
                .as_deref()
                != Some(name)
        } else {
            self.remote.remove(folded).is_some()
        };
        if changed {
            self.touched.push((name.to_owned(), folded.to_owned()));
        }
    }

    /// Cluster mode: everyone in the room on other nodes, as the cluster
    /// has it now (folded, display): differences count as joins and leaves.
    pub fn remote_snapshot(&mut self, now: Vec<(String, String)>) {
        let fresh: HashMap<String, String> = now.into_iter().collect();
        let gone: Vec<(String, String)> = self
            .remote
            .iter()
            .filter(|(f, _)| !fresh.contains_key(*f))
            .map(|(f, d)| (d.clone(), f.clone()))
            .collect();
        for (f, d) in &fresh {
            if self.remote.get(f) != Some(d) {
                self.touched.push((d.clone(), f.clone()));
            }
        }
        self.touched.extend(gone);
        self.remote = fresh;
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    pub fn contains(&self, user: UserId) -> bool {
        self.pos.contains_key(&user)
    }

    /// True while the room sends periodic summaries instead of per-user news.
    pub fn in_summary_mode(&self) -> bool {
        self.summary_mode
    }

    /// True when the room is (or, with `extra` more members, would be) above
    /// the summary threshold.
    pub fn summarised(&self, policy: &SummaryPolicy, extra: usize) -> bool {
        self.members.len() + extra > policy.above_users
    }

    /// Adds a member (a no-op for a member already in); the join counts for
    /// this turn's presence update.
    pub fn add(&mut self, m: Member, name: &str, folded: &str, policy: &SummaryPolicy) {
        if self.pos.contains_key(&m.user) {
            return;
        }
        let Ok(at) = u32::try_from(self.members.len()) else {
            return;
        };
        self.pos.insert(m.user, at);
        self.members.push(m);
        if self.summarised(policy, 0) {
            self.window_joined += 1;
        }
        // Touched even in summary mode: the room may leave it before the turn ends.
        self.touched.push((name.to_owned(), folded.to_owned()));
    }

    /// Removes a member; `None` when not in. `silent` leaves no trace in presence
    /// (the server is stopping).
    pub fn remove(
        &mut self,
        user: UserId,
        name: &str,
        folded: &str,
        policy: &SummaryPolicy,
        silent: bool,
    ) -> Option<Member> {
        let idx = self.pos.remove(&user)? as usize;
        if idx >= self.members.len() {
            return None;
        }
        let m = self.members.swap_remove(idx);
        if let Some(moved) = self.members.get(idx) {
            self.pos.insert(moved.user, idx as u32);
        }
        if !silent {
            if self.summarised(policy, 1) {
                self.window_left += 1;
            }
            self.touched.push((name.to_owned(), folded.to_owned()));
        }
        Some(m)
    }

    /// Appends the connections of the members in `aud` who had joined when
    /// message `seq` was produced: those without the rooms feature to
    /// `plain`, the others to `rooms`.
    pub fn resolve(
        &self,
        aud: Audience,
        seq: u64,
        plain: &mut Vec<ConnId>,
        rooms: &mut Vec<ConnId>,
    ) {
        for m in &self.members {
            let wanted = m.since <= seq
                && match aud {
                    Audience::All => true,
                    Audience::Mode(mode) => m.mode == mode,
                    Audience::FreshDeltas(from) => {
                        m.mode == PresenceMode::Deltas && m.since >= from
                    }
                };
            if wanted {
                if m.rooms {
                    rooms.push(m.conn);
                } else {
                    plain.push(m.conn);
                }
            }
        }
    }

    /// Records a chat line (its `seq` already taken with [`Room::next_seq`]).
    /// The oldest lines make way beyond `ring_capacity` lines or
    /// [`RING_MAX_BYTES`] of text.
    pub fn remember(&mut self, msg: Rc<Message>) {
        if self.ring_capacity == 0 {
            return;
        }
        self.ring_bytes += text_bytes(&msg);
        self.ring.push_back(msg);
        while self.ring.len() > self.ring_capacity
            || (self.ring_bytes > RING_MAX_BYTES && self.ring.len() > 1)
        {
            if let Some(old) = self.ring.pop_front() {
                self.ring_bytes = self.ring_bytes.saturating_sub(text_bytes(&old));
            }
        }
    }

    /// Replaces what the room remembers with `lines` (oldest first, numbered)
    /// and sets its sequence number: the room as loaded from the cluster.
    pub fn reload(&mut self, seq: u64, lines: Vec<Rc<Message>>) {
        self.ring.clear();
        self.ring_bytes = 0;
        self.seq = seq;
        for m in lines {
            if seq_of(&m) <= seq {
                self.remember(m);
            }
        }
    }

    /// The next chat line's sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// The oldest sequence number still in memory (`seq + 1` when none).
    pub fn oldest_in_memory(&self) -> u64 {
        self.ring
            .front()
            .and_then(|m| m.room.as_ref())
            .and_then(|t| t.seq)
            .unwrap_or(self.seq + 1)
    }

    /// Up to `limit` remembered lines with a sequence number below `before`
    /// (exclusive), oldest first.
    pub fn before(&self, before: u64, limit: usize) -> Vec<Rc<Message>> {
        let mut v: Vec<Rc<Message>> = self
            .ring
            .iter()
            .rev()
            .filter(|m| seq_of(m) < before)
            .take(limit)
            .cloned()
            .collect();
        v.reverse();
        v
    }

    /// Every remembered line after `after` (exclusive), oldest first.
    pub fn after(&self, after: u64) -> Vec<Rc<Message>> {
        self.ring
            .iter()
            .filter(|m| seq_of(m) > after)
            .cloned()
            .collect()
    }

    /// True when the room has ever had a chat line that is still remembered.
    pub fn has_history(&self) -> bool {
        !self.ring.is_empty()
    }

    /// Every member's name, sorted case-insensitively.
    ///
    /// Both vectors are sized up front: a list is built per joiner in a join
    /// storm, and collecting the names in place into the sorting vector
    /// would keep its larger, doubled buffer alive with the list.
    pub fn sorted_names(&self, dir: &Directory) -> Vec<String> {
        let mut v: Vec<(&str, &str)> = Vec::with_capacity(self.total());
        v.extend(
            self.members
                .iter()
                .filter_map(|m| dir.get(m.user))
                .map(|u| (u.folded.as_str(), u.name.as_str())),
        );
        v.extend(
            self.remote
                .iter()
                .filter(|(f, _)| dir.has_folded(f).is_none())
                .map(|(f, d)| (f.as_str(), d.as_str())),
        );
        v.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut names = Vec::with_capacity(v.len());
        names.extend(v.iter().map(|(_, d)| (*d).to_owned()));
        names
    }

    /// Forgets this turn's presence changes (the server is stopping).
    pub fn forget_touched(&mut self) {
        self.touched.clear();
    }

    /// Once per loop turn: the debounced presence updates and, in summary mode,
    /// the summary when due, as (audience, event) pairs in sending order.
    pub fn end_turn(
        &mut self,
        dir: &Directory,
        policy: &SummaryPolicy,
        now: Instant,
    ) -> Vec<(Audience, Event)> {
        let mut out = Vec::new();
        let summarised = self.summarised(policy, 0);
        if self.summary_mode && !summarised {
            // Leaving summary mode: flush the window and resynchronise everyone's list.
            self.emit_summary(now, &mut out);
            self.touched.clear();
            let users = self.sorted_names(dir);
            out.push((Audience::All, Event::UserList { users }));
        } else if summarised {
            self.touched.clear();
            if !self.summary_mode {
                // Entering summary mode: the first summary comes one interval from now.
                self.last_summary = Some(now);
            }
            let due = self
                .last_summary
                .is_none_or(|t| now.saturating_duration_since(t) >= policy.interval);
            if due && self.window_joined + self.window_left > 0 {
                self.emit_summary(now, &mut out);
            }
        } else if !self.touched.is_empty() {
            self.emit_presence(dir, &mut out);
        }
        self.summary_mode = summarised;
        out
    }

    fn emit_summary(&mut self, now: Instant, out: &mut Vec<(Audience, Event)>) {
        let (joined, left) = (self.window_joined, self.window_left);
        self.window_joined = 0;
        self.window_left = 0;
        self.last_summary = Some(now);
        if joined + left == 0 {
            return;
        }
        let count = self.total();
        out.push((
            Audience::All,
            Event::Summary {
                joined,
                left,
                count,
            },
        ));
        out.push((
            Audience::Mode(PresenceMode::Deltas),
            Event::Presence {
                joined: Vec::new(),
                left: Vec::new(),
                count,
            },
        ));
    }

    fn emit_presence(&mut self, dir: &Directory, out: &mut Vec<(Audience, Event)>) {
        let touched = std::mem::take(&mut self.touched);
        let any_full = self
            .members
            .iter()
            .any(|m| m.mode == PresenceMode::FullLists);
        let any_delta = self.members.iter().any(|m| m.mode == PresenceMode::Deltas);
        if any_full {
            let users = self.sorted_names(dir);
            out.push((
                Audience::Mode(PresenceMode::FullLists),
                Event::UserList { users },
            ));
        }
        if any_delta {
            // Net effect of the turn: a name that left and came back is "joined";
            // one that came and went is "left" (removing an unknown name is harmless).
            let mut joined: Vec<String> = Vec::new();
            let mut left: Vec<String> = Vec::new();
            for (display, folded) in &touched {
                let here = dir
                    .has_folded(folded)
                    .filter(|&id| self.contains(id))
                    .map(|id| dir.name(id))
                    .or_else(|| self.remote.get(folded).map(String::as_str));
                match here {
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
            let count = self.total();
            out.push((
                Audience::Mode(PresenceMode::Deltas),
                Event::Presence {
                    joined,
                    left,
                    count,
                },
            ));
        }
    }
}

/// Most text one room keeps in memory for replays (older lines come from
/// the durable log, if any).
pub const RING_MAX_BYTES: usize = 2 << 20;

/// The bytes of text a remembered line holds.
fn text_bytes(m: &Message) -> usize {
    match &m.event {
        Event::Chat { from, text } => from.len() + text.len() + 64,
        _ => 64,
    }
}

/// A remembered line's sequence number (0 for none).
fn seq_of(m: &Message) -> u64 {
    m.room.as_ref().and_then(|t| t.seq).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: SummaryPolicy = SummaryPolicy {
        above_users: 3,
        interval: Duration::from_secs(5),
    };

    fn member(dir: &mut Directory, key: u32, name: &str, mode: PresenceMode, since: u64) -> Member {
        let conn = ConnId { key, serial: 1 };
        let features = super::super::msg::Features {
            presence: mode == PresenceMode::Deltas,
            ..Default::default()
        };
        let user = dir
            .claim(conn, name, features, 0.0, Instant::now())
            .expect("claim");
        Member {
            user,
            conn,
            mode,
            rooms: key.is_multiple_of(2),
            since,
        }
    }

    fn add(room: &mut Room, dir: &Directory, m: Member) {
        let (name, folded) = dir
            .get(m.user)
            .map(|u| (u.name.clone(), u.folded.clone()))
            .expect("user");
        room.add(m, &name, &folded, &POLICY);
    }

    #[test]
    fn resolves_members_by_mode_and_join_order() {
        let mut dir = Directory::new();
        let mut room = Room::new(RoomId(0), "#lobby", 0);
        let a = member(&mut dir, 1, "a", PresenceMode::FullLists, 0);
        let b = member(&mut dir, 2, "b", PresenceMode::Deltas, 5);
        add(&mut room, &dir, a);
        add(&mut room, &dir, b);
        let resolve = |aud, seq| {
            let (mut plain, mut rooms) = (Vec::new(), Vec::new());
            room.resolve(aud, seq, &mut plain, &mut rooms);
            (plain, rooms)
        };
        // a (key 1) has no rooms feature, b (key 2) has.
        assert_eq!(
            resolve(Audience::All, 4),
            (vec![a.conn], vec![]),
            "b joined after message 4"
        );
        assert_eq!(resolve(Audience::All, 5), (vec![a.conn], vec![b.conn]));
        assert_eq!(
            resolve(Audience::Mode(PresenceMode::Deltas), 9),
            (vec![], vec![b.conn])
        );
    }

    #[test]
    fn removal_keeps_positions_consistent() {
        let mut dir = Directory::new();
        let mut room = Room::new(RoomId(0), "#lobby", 0);
        let ms: Vec<Member> = (0..4)
            .map(|k| member(&mut dir, k, &format!("u{k}"), PresenceMode::Deltas, 0))
            .collect();
        for m in &ms {
            add(&mut room, &dir, *m);
        }
        assert!(
            room.remove(ms[0].user, "u0", "u0", &POLICY, false)
                .is_some()
        );
        assert!(
            room.remove(ms[0].user, "u0", "u0", &POLICY, false)
                .is_none()
        );
        assert!(
            room.remove(ms[3].user, "u3", "u3", &POLICY, false)
                .is_some()
        );
        assert_eq!(room.len(), 2);
        assert!(room.contains(ms[1].user) && room.contains(ms[2].user));
    }

    #[test]
    fn a_turn_of_changes_is_one_list_and_one_delta() {
        let mut dir = Directory::new();
        let mut room = Room::new(RoomId(0), "#lobby", 0);
        let a = member(&mut dir, 1, "x", PresenceMode::FullLists, 0);
        add(&mut room, &dir, a);
        let b = member(&mut dir, 2, "B", PresenceMode::Deltas, 0);
        add(&mut room, &dir, b);
        let out = room.end_turn(&dir, &POLICY, Instant::now());
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[0], (Audience::Mode(PresenceMode::FullLists), Event::UserList { users }) if users == &["B".to_owned(), "x".to_owned()])
        );
        assert!(
            matches!(&out[1], (Audience::Mode(PresenceMode::Deltas), Event::Presence { joined, left, count: 2 }) if joined.len() == 2 && left.is_empty())
        );
        assert!(room.end_turn(&dir, &POLICY, Instant::now()).is_empty());
    }

    #[test]
    fn above_the_threshold_changes_are_summarised_per_interval() {
        let mut dir = Directory::new();
        let mut room = Room::new(RoomId(0), "#lobby", 0);
        let t0 = Instant::now();
        for k in 0..4 {
            let m = member(&mut dir, k, &format!("u{k}"), PresenceMode::Deltas, 0);
            add(&mut room, &dir, m);
        }
        // Entering summary mode: nothing until one interval has passed.
        assert!(room.end_turn(&dir, &POLICY, t0).is_empty());
        let later = t0 + POLICY.interval;
        let out = room.end_turn(&dir, &POLICY, later);
        assert!(matches!(
            &out[0],
            (
                Audience::All,
                Event::Summary {
                    joined: 1,
                    left: 0,
                    count: 4
                }
            )
        ));
    }

    fn line(seq: u64) -> Rc<Message> {
        Rc::new(Message {
            ts_ms: seq,
            event: Event::Chat {
                from: "a".into(),
                text: format!("m{seq}"),
            },
            room: Some(super::super::msg::RoomTag {
                name: Rc::from("#r"),
                seq: Some(seq),
            }),
        })
    }

    #[test]
    fn the_ring_keeps_the_newest_and_pages_with_exclusive_bounds() {
        let mut room = Room::new(RoomId(1), "#r", 5);
        for _ in 0..8 {
            let seq = room.next_seq();
            room.remember(line(seq));
        }
        assert_eq!(room.seq, 8);
        assert_eq!(room.oldest_in_memory(), 4);
        let seqs = |v: Vec<Rc<Message>>| v.iter().map(|m| seq_of(m)).collect::<Vec<_>>();
        assert_eq!(seqs(room.before(9, 3)), vec![6, 7, 8]);
        assert_eq!(seqs(room.before(6, 10)), vec![4, 5]);
        assert_eq!(seqs(room.before(4, 10)), Vec::<u64>::new());
        assert_eq!(seqs(room.after(6)), vec![7, 8]);
        assert_eq!(seqs(room.after(8)), Vec::<u64>::new());
    }

    #[test]
    fn the_ring_also_keeps_under_its_byte_budget() {
        let mut room = Room::new(RoomId(1), "#big", 1000);
        let big = "x".repeat(64 * 1024);
        for _ in 0..100 {
            let seq = room.next_seq();
            room.remember(Rc::new(Message {
                ts_ms: 0,
                event: Event::Chat {
                    from: "a".into(),
                    text: big.clone(),
                },
                room: Some(super::super::msg::RoomTag {
                    name: Rc::from("#big"),
                    seq: Some(seq),
                }),
            }));
        }
        let kept = room.after(0).len();
        assert!(kept < 40 && kept > 20, "{kept} lines of 64 KiB kept");
        assert_eq!(room.oldest_in_memory(), 101 - kept as u64);
    }
}
