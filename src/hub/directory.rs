//! The directory: who is online under which name, and which local connection
//! each user is bound to. Names are unique case-insensitively (the rules are in
//! [`super::names`]); users get the hub's own [`UserId`]s.
//!
//! Knows nothing of rooms, messages or wires. Lookups by connection go through a
//! table indexed by the connection handle's key, checked against its serial, so
//! a stale handle never finds the next user of a reused key.

use std::collections::HashMap;
use std::time::Instant;

use slab::Slab;

use super::msg::{ConnId, Features, PresenceMode, RoomId, UserId};
use super::names::{self, NameError};

/// One online user.
#[derive(Debug)]
pub struct User {
    pub name: String,
    /// The case-folded name, the uniqueness key.
    pub folded: String,
    pub conn: ConnId,
    pub mode: PresenceMode,
    pub features: Features,
    /// Rooms the user is in, in joining order; the last is the current one
    /// (where requests without a room go).
    pub rooms: Vec<RoomId>,
    /// Rate-limit bucket.
    pub tokens: f64,
    pub refilled: Instant,
}

/// Why a name cannot be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimError {
    /// The connection already has a user.
    AlreadyBound,
    /// The name breaks the name rules.
    Invalid(NameError),
    /// Someone online has this name (in any letter case).
    Taken,
}

/// Names ⇄ users ⇄ connections.
#[derive(Debug, Default)]
pub struct Directory {
    users: Slab<User>,
    by_name: HashMap<String, UserId>,
    /// Indexed by `ConnId::key`: the bound connection's serial and its user.
    by_conn: Vec<Option<(u32, UserId)>>,
}

impl Directory {
    pub fn new() -> Directory {
        Directory::default()
    }

    /// Every online user.
    pub fn iter(&self) -> impl Iterator<Item = (UserId, &User)> {
        self.users
            .iter()
            .map(|(k, u)| (UserId(u32::try_from(k).unwrap_or(u32::MAX)), u))
    }

    /// Online users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Checks whether `conn` could claim `name`, without claiming it.
    pub fn check(&self, conn: ConnId, name: &str) -> Result<String, ClaimError> {
        if self.user_of(conn).is_some() {
            return Err(ClaimError::AlreadyBound);
        }
        names::validate(name).map_err(ClaimError::Invalid)?;
        let folded = names::fold(name);
        if self.by_name.contains_key(&folded) {
            return Err(ClaimError::Taken);
        }
        Ok(folded)
    }

    /// Claims `name` for `conn` and binds them; `Err` as [`Directory::check`].
    pub fn claim(
        &mut self,
        conn: ConnId,
        name: &str,
        features: Features,
        tokens: f64,
        now: Instant,
    ) -> Result<UserId, ClaimError> {
        let folded = self.check(conn, name)?;
        let slot = usize::try_from(conn.key).map_err(|_| ClaimError::AlreadyBound)?;
        let mode = if features.presence {
            PresenceMode::Deltas
        } else {
            PresenceMode::FullLists
        };
        let key = self.users.insert(User {
            name: name.to_owned(),
            folded: folded.clone(),
            conn,
            mode,
            features,
            rooms: Vec::new(),
            tokens,
            refilled: now,
        });
        let id = UserId(u32::try_from(key).unwrap_or(u32::MAX));
        self.by_name.insert(folded, id);
        if self.by_conn.len() <= slot {
            self.by_conn.resize(slot + 1, None);
        }
        if let Some(cell) = self.by_conn.get_mut(slot) {
            *cell = Some((conn.serial, id));
        }
        Ok(id)
    }

    /// Unbinds `conn` and forgets its user; `None` when it had none.
    pub fn release(&mut self, conn: ConnId) -> Option<(UserId, User)> {
        let id = self.user_of(conn)?;
        let slot = usize::try_from(conn.key).ok()?;
        if let Some(cell) = self.by_conn.get_mut(slot) {
            *cell = None;
        }
        let user = self.users.try_remove(id.0 as usize)?;
        self.by_name.remove(&user.folded);
        Some((id, user))
    }

    /// The user bound to `conn`, if any.
    pub fn user_of(&self, conn: ConnId) -> Option<UserId> {
        let slot = usize::try_from(conn.key).ok()?;
        match self.by_conn.get(slot) {
            Some(Some((serial, id))) if *serial == conn.serial => Some(*id),
            _ => None,
        }
    }

    /// The online user called `name` (any letter case).
    pub fn find(&self, name: &str) -> Option<UserId> {
        self.by_name.get(&names::fold(name)).copied()
    }

    /// True when `folded` is the folded name of someone online.
    pub fn has_folded(&self, folded: &str) -> Option<UserId> {
        self.by_name.get(folded).copied()
    }

    pub fn get(&self, id: UserId) -> Option<&User> {
        self.users.get(id.0 as usize)
    }

    pub fn get_mut(&mut self, id: UserId) -> Option<&mut User> {
        self.users.get_mut(id.0 as usize)
    }

    /// The display name of `id` ("" when unknown).
    pub fn name(&self, id: UserId) -> &str {
        self.get(id).map_or("", |u| u.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(key: u32) -> ConnId {
        ConnId {
            key,
            serial: key + 7,
        }
    }

    fn claim(d: &mut Directory, key: u32, name: &str) -> Result<UserId, ClaimError> {
        d.claim(
            conn(key),
            name,
            Features {
                presence: true,
                ..Features::default()
            },
            0.0,
            Instant::now(),
        )
    }

    #[test]
    fn names_are_unique_in_any_letter_case_and_displayed_as_typed() {
        let mut d = Directory::new();
        let id = claim(&mut d, 1, "Alice").expect("claim");
        assert_eq!(claim(&mut d, 2, "aLiCe"), Err(ClaimError::Taken));
        assert_eq!(d.find("ALICE"), Some(id));
        assert_eq!(d.name(id), "Alice");
        assert_eq!(d.user_of(conn(1)), Some(id));
    }

    #[test]
    fn a_connection_holds_one_user() {
        let mut d = Directory::new();
        claim(&mut d, 1, "alice").expect("claim");
        assert_eq!(claim(&mut d, 1, "other"), Err(ClaimError::AlreadyBound));
    }

    #[test]
    fn invalid_names_are_refused_with_the_rule() {
        let mut d = Directory::new();
        assert_eq!(
            claim(&mut d, 1, "two words"),
            Err(ClaimError::Invalid(NameError::Whitespace))
        );
        assert!(d.is_empty());
    }

    #[test]
    fn release_frees_the_name_and_the_binding() {
        let mut d = Directory::new();
        claim(&mut d, 1, "alice").expect("claim");
        let (_, user) = d.release(conn(1)).expect("release");
        assert_eq!(user.name, "alice");
        assert_eq!(d.user_of(conn(1)), None);
        assert_eq!(d.find("alice"), None);
        assert!(d.release(conn(1)).is_none());
        claim(&mut d, 2, "ALICE").expect("name free again");
    }

    #[test]
    fn a_stale_handle_never_finds_the_next_user_of_its_key() {
        let mut d = Directory::new();
        claim(&mut d, 3, "first").expect("claim");
        d.release(conn(3));
        let newer = ConnId { key: 3, serial: 99 };
        d.claim(newer, "second", Features::default(), 0.0, Instant::now())
            .expect("claim");
        assert_eq!(d.user_of(conn(3)), None);
        assert!(d.release(conn(3)).is_none());
        assert!(d.user_of(newer).is_some());
    }
}
