//! The names of everything the nodes of one cluster share in Redis: the keys
//! (name claims, room counters, logs, topics, members, the cluster epoch) and
//! the pub/sub channels (one per user for private messages, one per room).
//!
//! All start with one prefix (default [`DEFAULT_PREFIX`]), so several
//! clusters can share a Redis by choosing different prefixes. Names are bytes
//! (what the RESP encoder takes); user names go in folded (see
//! `hub::names::fold`), room names as they are (`#lobby`).
//!
//! | method            | name                         | what it is                      |
//! |-------------------|------------------------------|---------------------------------|
//! | `name(u)`         | `P:name:{u}`                 | string: the claim on a user name |
//! | `user_channel(u)` | `P:user:{u}`                 | channel: private messages to `u` |
//! | `room_channel(r)` | `P:room:{r}`                 | channel: what happens in room `r` |
//! | `room_seq(r)`     | `P:room:{r}:seq`             | integer: the room's last seq    |
//! | `room_log(r)`     | `P:room:{r}:log`             | stream: the room's recent lines |
//! | `room_topic(r)`   | `P:room:{r}:topic`           | string: the room's topic record |
//! | `room_members(r)` | `P:room:{r}:members`         | sorted set: who is in the room  |
//! | `epoch()`         | `P:epoch`                    | string: the cluster's epoch     |
//!
//! A room channel and a room key never collide: keys and channels are separate
//! namespaces in Redis, and the key suffixes (`:seq`, …) cannot end a room name.

/// The prefix the server uses unless configured otherwise.
pub const DEFAULT_PREFIX: &str = "muc";

/// Builds key and channel names under one prefix. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys::new(DEFAULT_PREFIX)
    }
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix, without the `:` that follows it in every name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `P:name:{folded_user}`: the claim key of a user name.
    pub fn name(&self, folded_user: &str) -> Vec<u8> {
        self.join(&["name", folded_user])
    }

    /// `P:user:{folded_user}`: the channel of private messages to a user.
    pub fn user_channel(&self, folded_user: &str) -> Vec<u8> {
        self.join(&["user", folded_user])
    }

    /// `P:room:{room}`: the channel of a room's lines, topics and presence.
    pub fn room_channel(&self, room: &str) -> Vec<u8> {
        self.join(&["room", room])
    }

    /// `P:room:{room}:seq`: the counter that numbers a room's lines.
    pub fn room_seq(&self, room: &str) -> Vec<u8> {
        self.join(&["room", room, "seq"])
    }

    /// `P:room:{room}:log`: the stream of a room's recent lines (ID `seq-0`).
    pub fn room_log(&self, room: &str) -> Vec<u8> {
        self.join(&["room", room, "log"])
    }

    /// `P:room:{room}:topic`: the room's current topic.
    pub fn room_topic(&self, room: &str) -> Vec<u8> {
        self.join(&["room", room, "topic"])
    }

    /// `P:room:{room}:members`: the sorted set of the room's members.
    pub fn room_members(&self, room: &str) -> Vec<u8> {
        self.join(&["room", room, "members"])
    }

    /// `P:epoch`: the cluster's epoch (changes when Redis lost its data).
    pub fn epoch(&self) -> Vec<u8> {
        self.join(&["epoch"])
    }

    fn join(&self, parts: &[&str]) -> Vec<u8> {
        let len = self.prefix.len() + parts.iter().map(|p| p.len() + 1).sum::<usize>();
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(self.prefix.as_bytes());
        for part in parts {
            out.push(b':');
            out.extend_from_slice(part.as_bytes());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_table() {
        let k = Keys::default();
        assert_eq!(k.prefix(), "muc");
        assert_eq!(k.name("alice"), b"muc:name:alice");
        assert_eq!(k.user_channel("alice"), b"muc:user:alice");
        assert_eq!(k.room_channel("#lobby"), b"muc:room:#lobby");
        assert_eq!(k.room_seq("#lobby"), b"muc:room:#lobby:seq");
        assert_eq!(k.room_log("#lobby"), b"muc:room:#lobby:log");
        assert_eq!(k.room_topic("#lobby"), b"muc:room:#lobby:topic");
        assert_eq!(k.room_members("#lobby"), b"muc:room:#lobby:members");
        assert_eq!(k.epoch(), b"muc:epoch");
        assert_eq!(Keys::new("t1").name("é"), "t1:name:é".as_bytes());
    }
}
