//! Hub tests: requests in, effects asserted; no sockets, time is an argument.

use std::rc::Rc;

use super::*;

fn id(key: u32) -> ConnId {
    ConnId {
        key,
        serial: key + 100,
    }
}

fn now() -> Now {
    Now {
        unix_ms: 1_767_225_600_000,
        mono: Instant::now(),
    }
}

fn hub() -> Hub {
    Hub::new(HubConfig::default())
}

fn join_at(h: &mut Hub, conn: ConnId, name: &str, presence: bool, at: Now) {
    let req = Request::Join {
        name: name.to_owned(),
        features: Features {
            presence,
            ..Features::default()
        },
    };
    h.handle(conn, req, at);
}

fn join(h: &mut Hub, key: u32, name: &str, presence: bool) {
    join_at(h, id(key), name, presence, now());
}

fn say(h: &mut Hub, key: u32, text: &str, at: Now) {
    h.handle(
        id(key),
        Request::Say {
            room: None,
            text: text.into(),
        },
        at,
    );
}

fn private(h: &mut Hub, key: u32, to: &str, text: &str) {
    let req = Request::Private {
        to: to.into(),
        text: text.into(),
    };
    h.handle(id(key), req, now());
}

/// Every effect, owned, in drain order.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Deliver(Vec<ConnId>, Event),
    Persist(Event),
    Joined(ConnId, String),
    Refused(ConnId, ErrorCode),
    Gone(ConnId, String, LeaveReason),
    Claim(ConnId, String),
    Post(Event),
    Private(ConnId, String, String),
    Watch(String, bool),
    Presence(String, String, bool),
}

fn effects(h: &mut Hub) -> Vec<Seen> {
    let mut v = Vec::new();
    h.drain_effects(|e| {
        v.push(match e {
            Effect::Deliver { to, msg, .. } => Seen::Deliver(to.to_vec(), msg.event.clone()),
            Effect::Persist { msg } => Seen::Persist(msg.event.clone()),
            Effect::Joined { conn, name, .. } => Seen::Joined(conn, name.to_owned()),
            Effect::JoinRefused { conn, code } => Seen::Refused(conn, code),
            Effect::Gone {
                conn, name, why, ..
            } => Seen::Gone(conn, name.to_owned(), why),
            Effect::Claim { conn, name, .. } => Seen::Claim(conn, name.to_owned()),
            Effect::Post { msg } => Seen::Post(msg.event.clone()),
            Effect::Private { conn, to, text, .. } => {
                Seen::Private(conn, to.to_owned(), text.to_owned())
            }
            Effect::Watch { room, on } => Seen::Watch(room.to_owned(), on),
            Effect::Presence { room, name, on } => {
                Seen::Presence(room.to_owned(), name.to_owned(), on)
            }
        })
    });
    v
}

/// The deliveries only: (recipients, event).
fn bodies(h: &mut Hub) -> Vec<(Vec<ConnId>, Event)> {
    effects(h)
        .into_iter()
        .filter_map(|s| match s {
            Seen::Deliver(to, e) => Some((to, e)),
            _ => None,
        })
        .collect()
}

fn error_code(out: &[(Vec<ConnId>, Event)]) -> Option<ErrorCode> {
    out.iter().find_map(|(_, b)| match b {
        Event::Error { code, .. } => Some(*code),
        _ => None,
    })
}

fn sorted(mut v: Vec<ConnId>) -> Vec<ConnId> {
    v.sort_by_key(|c| c.key);
    v
}

#[test]
fn join_welcomes_and_announces() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let out = effects(&mut h);
    assert_eq!(
        out[0],
        Seen::Joined(id(1), "alice".into()),
        "the outcome first"
    );
    assert!(
        matches!(&out[1], Seen::Deliver(to, Event::Info { user: Some(u), text, .. })
        if to == &[id(1)] && u == "alice" && text.contains("1 user online"))
    );
    assert!(
        matches!(&out[2], Seen::Deliver(to, Event::Notice { text }) if to == &[id(1)] && text == "Client alice has joined the chat.")
    );
    assert_eq!(h.user_count(), 1);
}

#[test]
fn join_storm_in_one_turn_sends_one_list_per_client() {
    let mut h = hub();
    for k in 0..50 {
        join(&mut h, k, &format!("u{k}"), k % 2 == 0);
    }
    let _ = bodies(&mut h);
    h.end_turn(now());
    let out = bodies(&mut h);
    let lists: Vec<_> = out
        .iter()
        .filter(|(_, b)| matches!(b, Event::UserList { .. }))
        .collect();
    let deltas: Vec<_> = out
        .iter()
        .filter(|(_, b)| matches!(b, Event::Presence { .. }))
        .collect();
    // One list for the joiners that take deltas (shared by all 25 of them:
    // a join storm costs one list per turn), one for the legacy clients.
    assert_eq!(lists.len(), 2);
    let even: Vec<ConnId> = (0..50).filter(|k| k % 2 == 0).map(id).collect();
    let odd: Vec<ConnId> = (0..50).filter(|k| k % 2 == 1).map(id).collect();
    assert_eq!(sorted(lists[0].0.clone()), even, "the joiners' one list");
    assert_eq!(
        sorted(lists[1].0.clone()),
        odd,
        "full lists for legacy clients"
    );
    for l in &lists {
        assert!(matches!(&l.1, Event::UserList { users } if users.len() == 50));
    }
    assert_eq!(deltas.len(), 1);
    assert!(
        matches!(&deltas[0].1, Event::Presence { joined, left, count } if joined.len() == 50 && left.is_empty() && *count == 50)
    );
    // Nothing changed: nothing sent.
    h.end_turn(now());
    assert!(bodies(&mut h).is_empty());
}

#[test]
fn presence_client_gets_full_list_on_join() {
    let mut h = hub();
    join(&mut h, 1, "bob", false);
    join(&mut h, 2, "Alice", true);
    // At the end of the turn: one list for the turn's joiners that take
    // deltas (before the turn's delta).
    h.end_turn(now());
    let out = bodies(&mut h);
    let list = out
        .iter()
        .position(|(to, b)| {
            to == &[id(2)]
                && matches!(b, Event::UserList { users } if users == &["Alice".to_owned(), "bob".to_owned()])
        })
        .expect("a full list for the presence client");
    let delta = out
        .iter()
        .position(|(_, b)| matches!(b, Event::Presence { .. }))
        .expect("the turn's delta");
    assert!(list < delta);
    // Joining in a later turn gets a list of its own then; earlier joiners none.
    join(&mut h, 3, "carl", true);
    h.end_turn(now());
    let out = bodies(&mut h);
    let lists: Vec<_> = out
        .iter()
        .filter(|(_, b)| matches!(b, Event::UserList { .. }))
        .map(|(to, _)| to.clone())
        .collect();
    assert!(lists.contains(&vec![id(3)]), "{lists:?}");
    assert!(!lists.iter().any(|to| to.contains(&id(2))), "{lists:?}");
}

#[test]
fn rejects_taken_names_case_insensitively_and_allows_retry() {
    let mut h = hub();
    join(&mut h, 1, "Alice", false);
    let _ = bodies(&mut h);
    join(&mut h, 2, "aLiCe", false);
    let out = effects(&mut h);
    assert_eq!(out[0], Seen::Refused(id(2), ErrorCode::NameTaken));
    assert!(
        matches!(&out[1], Seen::Deliver(to, Event::Error { code: ErrorCode::NameTaken, .. }) if to == &[id(2)])
    );
    join(&mut h, 2, "bob", false);
    let out = bodies(&mut h);
    assert_eq!(error_code(&out), None);
    assert_eq!(h.name_of(id(2)), Some("bob"));
}

#[test]
fn rejects_invalid_and_reserved_names() {
    let mut h = hub();
    for bad in ["", "a b", "Server", &"x".repeat(33), "a\u{1b}b"] {
        join(&mut h, 1, bad, false);
        assert_eq!(
            error_code(&bodies(&mut h)),
            Some(ErrorCode::NameInvalid),
            "{bad:?}"
        );
    }
    assert_eq!(h.user_count(), 0);
}

#[test]
fn second_join_is_refused() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let _ = bodies(&mut h);
    join(&mut h, 1, "other", false);
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::AlreadyJoined));
    assert_eq!(h.name_of(id(1)), Some("alice"));
}

#[test]
fn broadcast_uses_joined_name_not_claimed_sender() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let _ = bodies(&mut h);
    say(&mut h, 1, "hi all", now());
    let out = bodies(&mut h);
    assert_eq!(
        out,
        vec![(
            vec![id(1)],
            Event::Chat {
                from: "alice".into(),
                text: "hi all".into()
            }
        )]
    );
    assert_eq!(h.relayed(), 1);
}

#[test]
fn message_before_join_is_an_error_in_plain_words() {
    let mut h = hub();
    say(&mut h, 1, "hi", now());
    h.handle(id(1), Request::Who, now());
    let out = bodies(&mut h);
    assert_eq!(out.len(), 2);
    for (_, e) in &out {
        match e {
            Event::Error {
                code: ErrorCode::NotJoined,
                text,
            } => assert!(!text.contains('{') && !text.contains('/'), "{text}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn private_message_reaches_target_and_confirms_to_sender() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    join(&mut h, 2, "Bob", false);
    let _ = bodies(&mut h);
    private(&mut h, 1, "bob", "secret plan");
    let out = bodies(&mut h);
    assert_eq!(
        out,
        vec![
            (
                vec![id(2)],
                Event::Private {
                    from: "alice".into(),
                    text: "secret plan".into()
                }
            ),
            (
                vec![id(1)],
                Event::PrivateSent {
                    to: "Bob".into(),
                    text: "secret plan".into()
                }
            ),
        ]
    );
    assert_eq!(h.relayed(), 1);
}

#[test]
fn private_to_unknown_user_or_without_text_is_an_error() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let _ = bodies(&mut h);
    private(&mut h, 1, "nobody", "hi");
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::UnknownUser));
    private(&mut h, 1, "alice", " ");
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::BadFormat));
    private(&mut h, 1, "", "hi");
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::BadFormat));
    say(&mut h, 1, "   ", now());
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::EmptyMessage));
}

#[test]
fn exit_and_disconnect_have_different_notices() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    join(&mut h, 2, "bob", false);
    join(&mut h, 3, "carol", false);
    let _ = bodies(&mut h);
    h.handle_left(id(1), LeaveReason::Exit, now());
    h.handle_left(id(2), LeaveReason::Closed, now());
    h.handle_left(id(1), LeaveReason::Closed, now()); // already gone: no-op
    let out = effects(&mut h);
    assert_eq!(out[0], Seen::Gone(id(1), "alice".into(), LeaveReason::Exit));
    let notices: Vec<String> = out
        .into_iter()
        .filter_map(|s| match s {
            Seen::Deliver(_, Event::Notice { text }) => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(
        notices,
        vec![
            "Client alice has left the chat.".to_owned(),
            "Client bob disconnected unexpectedly.".to_owned()
        ]
    );
    assert_eq!(h.user_count(), 1);
    // The freed name can be taken again.
    join(&mut h, 4, "ALICE", false);
    assert_eq!(error_code(&bodies(&mut h)), None);
}

#[test]
fn every_reason_but_exit_is_unexpected() {
    for why in [
        LeaveReason::Closed,
        LeaveReason::Timeout,
        LeaveReason::OverLimit,
        LeaveReason::ProtocolError,
    ] {
        let mut h = hub();
        join(&mut h, 1, "a", false);
        join(&mut h, 2, "b", false);
        let _ = bodies(&mut h);
        h.handle_left(id(1), why, now());
        let out = bodies(&mut h);
        assert!(
            out.iter().any(|(_, e)| matches!(e, Event::Notice { text } if text == "Client a disconnected unexpectedly.")),
            "{why:?}"
        );
    }
}

#[test]
fn stale_conn_id_never_reaches_new_user_on_same_key() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let old = id(1);
    h.handle_left(old, LeaveReason::Exit, now());
    let new = ConnId {
        key: 1,
        serial: 999,
    };
    join_at(&mut h, new, "bob", false, now());
    let _ = bodies(&mut h);
    h.handle(
        old,
        Request::Say {
            room: None,
            text: "ghost".into(),
        },
        now(),
    );
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::NotJoined));
    assert_eq!(h.name_of(new), Some("bob"));
}

#[test]
fn deltas_are_netted_within_a_turn() {
    let mut h = hub();
    join(&mut h, 1, "watcher", true);
    join(&mut h, 2, "flap", false);
    h.end_turn(now());
    let _ = bodies(&mut h);
    // flap leaves and comes back; ghost comes and goes.
    h.handle_left(id(2), LeaveReason::Exit, now());
    join(&mut h, 3, "flap", false);
    join(&mut h, 4, "ghost", false);
    h.handle_left(id(4), LeaveReason::Closed, now());
    let _ = bodies(&mut h);
    h.end_turn(now());
    let out = bodies(&mut h);
    let delta = out.iter().find_map(|(_, b)| match b {
        Event::Presence {
            joined,
            left,
            count,
        } => Some((joined.clone(), left.clone(), *count)),
        _ => None,
    });
    assert_eq!(
        delta,
        Some((vec!["flap".to_owned()], vec!["ghost".to_owned()], 2))
    );
}

#[test]
fn who_lists_everyone_sorted() {
    let mut h = hub();
    join(&mut h, 1, "carol", true);
    join(&mut h, 2, "Alice", true);
    join(&mut h, 3, "bob", true);
    let _ = bodies(&mut h);
    h.handle(id(1), Request::Who, now());
    assert_eq!(
        bodies(&mut h),
        vec![(
            vec![id(1)],
            Event::UserList {
                users: vec!["Alice".into(), "bob".into(), "carol".into()]
            }
        )]
    );
}

#[test]
fn above_threshold_notices_become_a_periodic_summary() {
    let mut h = Hub::new(HubConfig {
        summary_above_users: 3,
        summary_interval: Duration::from_secs(5),
        rate_limit_per_sec: 0,
        ..HubConfig::default()
    });
    let t0 = Instant::now();
    let at = |secs: u64| Now {
        unix_ms: 0,
        mono: t0 + Duration::from_secs(secs),
    };
    for k in 0..10 {
        join_at(&mut h, id(k), &format!("u{k}"), false, at(0));
    }
    h.end_turn(at(0));
    let out = bodies(&mut h);
    let notices = out
        .iter()
        .filter(|(_, b)| matches!(b, Event::Notice { .. }))
        .count();
    assert_eq!(
        notices, 3,
        "only the joins below the threshold are announced"
    );
    // The window is due after the interval: one summary.
    h.end_turn(at(2));
    assert!(bodies(&mut h).is_empty());
    h.end_turn(at(6));
    let out = bodies(&mut h);
    assert!(out.iter().any(|(to, b)| to.len() == 10
        && matches!(
            b,
            Event::Summary {
                joined: 7,
                left: 0,
                count: 10
            }
        )));
    // Dropping back under the threshold resynchronises everyone with a full list.
    for k in 0..8 {
        h.handle_left(id(k), LeaveReason::Exit, at(7));
    }
    h.end_turn(at(7));
    let out = bodies(&mut h);
    assert!(
        out.iter()
            .any(|(to, b)| to.len() == 2
                && matches!(b, Event::UserList { users } if users.len() == 2))
    );
}

#[test]
fn rate_limit_drops_excess_without_disconnecting() {
    let mut h = Hub::new(HubConfig {
        rate_limit_per_sec: 2,
        ..HubConfig::default()
    });
    let t0 = Instant::now();
    let at = |ms: u64| Now {
        unix_ms: 0,
        mono: t0 + Duration::from_millis(ms),
    };
    join_at(&mut h, id(1), "fast", false, at(0));
    let _ = bodies(&mut h);
    for _ in 0..3 {
        say(&mut h, 1, "x", at(0));
    }
    let out = bodies(&mut h);
    assert_eq!(
        out.iter()
            .filter(|(_, b)| matches!(b, Event::Chat { .. }))
            .count(),
        2
    );
    assert_eq!(error_code(&out), Some(ErrorCode::RateLimited));
    say(&mut h, 1, "later", at(600));
    assert!(matches!(&bodies(&mut h)[..], [(_, Event::Chat { .. })]));
    assert_eq!(h.user_count(), 1);
}

#[test]
fn a_joiner_gets_no_broadcast_produced_before_its_join() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    say(&mut h, 1, "before bob", now());
    join(&mut h, 2, "bob", false);
    say(&mut h, 1, "after bob", now());
    h.end_turn(now());
    let to_bob: Vec<Event> = bodies(&mut h)
        .into_iter()
        .inspect(|(to, _)| assert!(to.contains(&id(1)) || to == &[id(2)]))
        .filter(|(to, _)| to.contains(&id(2)))
        .map(|(_, e)| e)
        .collect();
    assert!(matches!(&to_bob[0], Event::Info { user: Some(u), .. } if u == "bob"));
    assert!(
        matches!(&to_bob[1], Event::Notice { text } if text == "Client bob has joined the chat.")
    );
    assert!(matches!(&to_bob[2], Event::Chat { text, .. } if text == "after bob"));
    assert!(matches!(&to_bob[3], Event::UserList { users } if users.len() == 2));
    assert_eq!(to_bob.len(), 4);
}

#[test]
fn effects_come_out_in_production_order() {
    let mut h = hub();
    join(&mut h, 1, "a", true);
    join(&mut h, 2, "a", true);
    say(&mut h, 1, "one", now());
    h.handle_left(id(1), LeaveReason::Exit, now());
    h.end_turn(now());
    let kinds: Vec<&str> = effects(&mut h)
        .iter()
        .map(|s| match s {
            Seen::Joined(..) => "joined",
            Seen::Refused(..) => "refused",
            Seen::Gone(..) => "gone",
            Seen::Persist(..) => "persist",
            Seen::Deliver(_, Event::Info { .. }) => "welcome",
            Seen::Deliver(_, Event::UserList { .. }) => "list",
            Seen::Deliver(_, Event::Notice { .. }) => "notice",
            Seen::Deliver(_, Event::Error { .. }) => "error",
            Seen::Deliver(_, Event::Chat { .. }) => "chat",
            Seen::Deliver(_, Event::Presence { .. }) => "presence",
            Seen::Deliver(..) => "other",
            Seen::Claim(..)
            | Seen::Post(..)
            | Seen::Private(..)
            | Seen::Watch(..)
            | Seen::Presence(..) => "cluster",
        })
        .collect();
    // Recipients are resolved when drained: a's own join notice and chat
    // reach nobody, since a left in the same turn and nobody else is here.
    assert_eq!(
        kinds,
        [
            "joined", "welcome", // a joins (its list would come at the end of the turn)
            "refused", "error",   // the second "a" is refused
            "persist", // a talks: the line is kept (and reaches nobody)
            "gone",    // a leaves
        ]
    );
}

#[test]
fn shutdown_notifies_everyone_then_users_leave_silently() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    join(&mut h, 2, "bob", true);
    h.end_turn(now());
    bodies(&mut h);
    h.shutdown("Server is shutting down.".into(), now());
    // The server delivers the goodbye before the connections end.
    let out = bodies(&mut h);
    h.handle_left(id(1), LeaveReason::Drain, now());
    h.handle_left(id(2), LeaveReason::Drain, now());
    h.end_turn(now());
    assert!(bodies(&mut h).is_empty(), "users leave silently");
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(sorted(out[0].0.clone()), vec![id(1), id(2)]);
    assert_eq!(
        out[0].1,
        Event::Notice {
            text: "Server is shutting down.".into()
        }
    );
    assert_eq!(h.user_count(), 0);
}

/// An archive over a plain list, for the archive paths.
struct ListArchive {
    lines: Vec<Message>,
    degraded: bool,
    fail: bool,
}

impl Archive for ListArchive {
    fn read(
        &mut self,
        room: &str,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, ()> {
        if self.fail {
            return Err(());
        }
        let mut v: Vec<Message> = self
            .lines
            .iter()
            .filter(|m| {
                m.room.as_ref().is_some_and(|t| {
                    &*t.name == room && t.seq.is_some_and(|s| s > after && s < before)
                })
            })
            .cloned()
            .collect();
        let cut = v.len().saturating_sub(limit);
        Ok(Some(v.split_off(cut)))
    }

    fn degraded(&self) -> bool {
        self.degraded
    }
}

fn rooms_join(h: &mut Hub, key: u32, name: &str) {
    let req = Request::Join {
        name: name.to_owned(),
        features: Features {
            rooms: true,
            ..Features::default()
        },
    };
    h.handle(id(key), req, now());
}

fn history_seqs(out: &[(Vec<ConnId>, Event)]) -> Option<(Vec<u64>, bool, bool)> {
    out.iter().find_map(|(_, e)| match e {
        Event::History {
            messages,
            complete,
            gap,
            ..
        } => Some((
            messages
                .iter()
                .filter_map(|m| m.room.as_ref().and_then(|t| t.seq))
                .collect(),
            *complete,
            *gap,
        )),
        _ => None,
    })
}

/// A hub whose rooms remember 3 lines, with 8 lines said in #r and all 8 in `archive`.
fn hub_with_archive() -> (Hub, ListArchive) {
    let mut h = Hub::new(HubConfig {
        ring_capacity: 3,
        ..HubConfig::default()
    });
    rooms_join(&mut h, 1, "writer");
    h.handle(
        id(1),
        Request::RoomJoin {
            room: "#r".into(),
            since: None,
        },
        now(),
    );
    let mut lines = Vec::new();
    for i in 1..=8 {
        h.handle(
            id(1),
            Request::Say {
                room: Some("#r".into()),
                text: format!("l{i}"),
            },
            now(),
        );
    }
    h.drain_effects(|e| {
        if let Effect::Persist { msg } = e {
            lines.push(msg.clone());
        }
    });
    (
        h,
        ListArchive {
            lines,
            degraded: false,
            fail: false,
        },
    )
}

#[test]
fn resume_reads_what_memory_no_longer_holds_from_the_archive() {
    let (mut h, mut archive) = hub_with_archive();
    rooms_join(&mut h, 2, "reader");
    let _ = bodies(&mut h);
    let since = Some(Since {
        epoch: "0".into(),
        seq: 2,
    });
    let req = Request::RoomJoin {
        room: "#r".into(),
        since: since.clone(),
    };
    h.handle_with(id(2), req.clone(), now(), &mut archive);
    let (seqs, _, gap) = history_seqs(&bodies(&mut h)).expect("a replay");
    assert_eq!(seqs, vec![3, 4, 5, 6, 7, 8]);
    assert!(!gap);

    // Without the archive the same resume cannot be exact.
    h.handle(
        id(2),
        Request::RoomLeave {
            room: Some("#r".into()),
        },
        now(),
    );
    h.handle(id(2), req.clone(), now());
    let (seqs, _, gap) = history_seqs(&bodies(&mut h)).expect("a replay");
    assert!(gap);
    assert_eq!(seqs, vec![6, 7, 8], "the newest follow");

    // A degraded archive may have holes: gap too.
    archive.degraded = true;
    h.handle(
        id(2),
        Request::RoomLeave {
            room: Some("#r".into()),
        },
        now(),
    );
    h.handle_with(id(2), req, now(), &mut archive);
    assert!(history_seqs(&bodies(&mut h)).expect("a replay").2);
}

#[test]
fn history_pages_continue_into_the_archive() {
    let (mut h, mut archive) = hub_with_archive();
    let _ = bodies(&mut h);
    let page = |before, limit| Request::History {
        room: Some("#r".into()),
        before: Some(before),
        limit: Some(limit),
    };
    h.handle_with(id(1), page(8, 4), now(), &mut archive);
    let (seqs, complete, _) = history_seqs(&bodies(&mut h)).expect("a page");
    assert_eq!(seqs, vec![4, 5, 6, 7]);
    assert!(!complete);
    h.handle_with(id(1), page(4, 10), now(), &mut archive);
    let (seqs, complete, _) = history_seqs(&bodies(&mut h)).expect("a page");
    assert_eq!(seqs, vec![1, 2, 3]);
    assert!(complete);
    // Memory only: the evicted lines are gone, and the page says so.
    h.handle(id(1), page(6, 10), now());
    let (seqs, complete, _) = history_seqs(&bodies(&mut h)).expect("a page");
    assert_eq!(seqs, Vec::<u64>::new());
    assert!(complete);
    archive.fail = true;
    h.handle_with(id(1), page(6, 10), now(), &mut archive);
    assert_eq!(
        error_code(&bodies(&mut h)),
        Some(ErrorCode::HistoryUnavailable)
    );
}

#[test]
fn restore_rebuilds_rooms_seq_ring_and_topic() {
    let (_, archive) = hub_with_archive();
    let mut h = Hub::new(HubConfig {
        ring_capacity: 3,
        ..HubConfig::default()
    });
    for m in archive.lines {
        h.restore(m);
    }
    h.restore(Message {
        ts_ms: 1,
        event: Event::Topic {
            room: Rc::from("#r"),
            topic: "kept".into(),
            by: "writer".into(),
        },
        room: Some(RoomTag {
            name: Rc::from("#r"),
            seq: None,
        }),
    });
    rooms_join(&mut h, 3, "back");
    h.handle(
        id(3),
        Request::RoomJoin {
            room: "#r".into(),
            since: None,
        },
        now(),
    );
    let out = bodies(&mut h);
    assert!(out.iter().any(|(_, e)| matches!(e,
        Event::RoomJoined { room, topic, seq: 8, .. } if &**room == "#r" && topic == "kept")));
    let (seqs, _, _) = history_seqs(&out).expect("a replay");
    assert_eq!(seqs, vec![6, 7, 8]);
    // The next line continues the numbering.
    h.handle(
        id(3),
        Request::Say {
            room: Some("#r".into()),
            text: "next".into(),
        },
        now(),
    );
    let persisted: Vec<u64> = {
        let mut v = Vec::new();
        h.drain_effects(|e| {
            if let Effect::Persist { msg } = e {
                v.extend(msg.room.as_ref().and_then(|t| t.seq));
            }
        });
        v
    };
    assert_eq!(persisted, vec![9]);
}

#[test]
fn a_message_for_a_dropped_room_never_reaches_a_new_room_in_its_slot() {
    let mut h = hub();
    rooms_join(&mut h, 1, "an");
    rooms_join(&mut h, 2, "bo");
    let join = |room: &str| Request::RoomJoin {
        room: room.into(),
        since: None,
    };
    h.handle(id(1), join("#old"), now());
    let _ = bodies(&mut h);
    // an leaves #old (a notice for #old is queued, then #old is dropped),
    // and bo creates #new in the same turn, which takes #old's slot.
    h.handle(id(1), Request::RoomLeave { room: None }, now());
    h.handle(id(2), join("#new"), now());
    for (to, e) in bodies(&mut h) {
        if let Event::Notice { text } = &e {
            assert!(
                !(text.contains("#old") && to.contains(&id(2))),
                "bo got #old's notice in #new"
            );
        }
    }
}

#[test]
fn a_bad_room_name_is_not_echoed_back() {
    let mut h = hub();
    rooms_join(&mut h, 1, "an");
    let _ = bodies(&mut h);
    let long = format!("#{}", "x".repeat(100_000));
    h.handle(
        id(1),
        Request::Say {
            room: Some(long),
            text: "hi".into(),
        },
        now(),
    );
    let out = bodies(&mut h);
    assert_eq!(error_code(&out), Some(ErrorCode::NotInRoom));
    assert!(out.iter().all(|(_, e)| match e {
        Event::Error { text, .. } => text.len() < 100,
        _ => true,
    }));
}

// ---- cluster mode -----------------------------------------------------------

fn cluster_hub() -> Hub {
    let mut h = Hub::new(HubConfig {
        cluster: true,
        ..HubConfig::default()
    });
    h.set_cluster_up(true, now());
    h
}

fn chat_msg(room: &str, seq: u64, from: &str, text: &str) -> Message {
    Message {
        ts_ms: 1,
        event: Event::Chat {
            from: from.into(),
            text: text.into(),
        },
        room: Some(RoomTag {
            name: room.into(),
            seq: Some(seq),
        }),
    }
}

#[test]
fn cluster_join_waits_for_the_claim_and_the_lobby_load() {
    let mut h = cluster_hub();
    join(&mut h, 1, "ann", true);
    assert_eq!(
        effects(&mut h),
        vec![Seen::Claim(id(1), "ann".into())],
        "nothing but the claim until the cluster answers"
    );
    // Someone else on this node asking for the same name meanwhile is refused.
    join(&mut h, 2, "ANN", true);
    assert!(
        effects(&mut h).contains(&Seen::Refused(id(2), ErrorCode::NameTaken)),
        "a name being claimed counts as taken"
    );
    assert!(h.claim_answered(id(1), true, now()));
    let seen = effects(&mut h);
    assert_eq!(seen.first(), Some(&Seen::Joined(id(1), "ann".into())));
    assert!(seen.contains(&Seen::Watch("#lobby".into(), true)));
    // The lobby loads: history and seq come from the cluster.
    h.room_synced(
        "#lobby",
        7,
        vec![chat_msg("#lobby", 7, "zed", "hi")],
        None,
        now(),
    );
    assert_eq!(h.name_of(id(1)), Some("ann"));
}

#[test]
fn cluster_refused_claim_is_name_taken_and_a_late_answer_is_released() {
    let mut h = cluster_hub();
    join(&mut h, 1, "ann", false);
    effects(&mut h);
    assert!(h.claim_answered(id(1), false, now()));
    let seen = effects(&mut h);
    assert_eq!(
        seen.first(),
        Some(&Seen::Refused(id(1), ErrorCode::NameTaken))
    );
    // A connection that left before its answer: the caller releases the name.
    join(&mut h, 2, "bea", false);
    effects(&mut h);
    h.handle_left(id(2), LeaveReason::Closed, now());
    assert!(!h.claim_answered(id(2), true, now()));
    assert_eq!(h.user_count(), 0);
}

#[test]
fn cluster_lines_are_posted_and_delivered_only_when_they_come_back() {
    let mut h = cluster_hub();
    join(&mut h, 1, "ann", false);
    h.claim_answered(id(1), true, now());
    h.room_synced("#lobby", 0, Vec::new(), None, now());
    effects(&mut h);
    say(&mut h, 1, "hello", now());
    let seen = effects(&mut h);
    assert!(
        matches!(seen.as_slice(), [Seen::Post(Event::Chat { text, .. })] if text == "hello"),
        "posted, not delivered: {seen:?}"
    );
    h.ingest(chat_msg("#lobby", 1, "ann", "hello"));
    let seen = effects(&mut h);
    assert!(seen.contains(&Seen::Persist(Event::Chat {
        from: "ann".into(),
        text: "hello".into()
    })));
    assert!(seen.iter().any(
        |s| matches!(s, Seen::Deliver(to, Event::Chat { text, .. }) if to == &vec![id(1)] && text == "hello")
    ));
    // A duplicate (seq not above the room's) is dropped.
    h.ingest(chat_msg("#lobby", 1, "ann", "hello"));
    assert!(effects(&mut h).is_empty());
}

#[test]
fn cluster_private_to_a_remote_user_asks_the_cluster() {
    let mut h = cluster_hub();
    join(&mut h, 1, "ann", false);
    h.claim_answered(id(1), true, now());
    effects(&mut h);
    private(&mut h, 1, "Bob", "psst");
    assert_eq!(
        effects(&mut h),
        vec![Seen::Private(id(1), "Bob".into(), "psst".into())]
    );
    h.private_answered(id(1), "Bob", "psst".into(), Some("bob".into()), now());
    assert!(effects(&mut h).iter().any(|s| matches!(
        s,
        Seen::Deliver(_, Event::PrivateSent { to, .. }) if to == "bob"
    )));
    h.private_answered(id(1), "nobody", "x".into(), None, now());
    assert!(effects(&mut h).iter().any(|s| matches!(
        s,
        Seen::Deliver(
            _,
            Event::Error {
                code: ErrorCode::UnknownUser,
                ..
            }
        )
    )));
    // And one from another node reaches the local user.
    assert!(h.deliver_private("ann", "bob".into(), "yo".into(), now()));
    assert!(!h.deliver_private("carl", "bob".into(), "yo".into(), now()));
}

#[test]
fn cluster_out_of_reach_serves_locally_and_catches_up_after() {
    let mut h = cluster_hub();
    join(&mut h, 1, "ann", false);
    // The cluster goes away while the claim is in flight: decided here.
    h.set_cluster_up(false, now());
    assert_eq!(h.name_of(id(1)), Some("ann"));
    let told = |seen: &[Seen], what: &str| {
        seen.iter()
            .filter(
                |s| matches!(s, Seen::Deliver(_, Event::Notice { text }) if text.contains(what)),
            )
            .count()
    };
    assert_eq!(
        told(&effects(&mut h), "out of reach"),
        1,
        "users are told once"
    );
    h.set_cluster_up(false, now());
    assert_eq!(told(&effects(&mut h), "out of reach"), 0);
    // Local chat goes on, numbered here.
    say(&mut h, 1, "alone", now());
    assert!(
        effects(&mut h)
            .iter()
            .any(|s| matches!(s, Seen::Deliver(_, Event::Chat { text, .. }) if text == "alone"))
    );
    // Back: the lobby's first load is history, not news.
    h.set_cluster_up(true, now());
    assert_eq!(told(&effects(&mut h), "back in reach"), 1);
    h.room_synced(
        "#lobby",
        3,
        vec![chat_msg("#lobby", 3, "zed", "z")],
        None,
        now(),
    );
    assert!(
        !effects(&mut h)
            .iter()
            .any(|s| matches!(s, Seen::Deliver(_, Event::Chat { .. }))),
        "a first load is history, not news"
    );
    // Synced again later (a reconnect): lines after what the room had are news,
    // and a hole before them is announced.
    h.room_synced(
        "#lobby",
        6,
        vec![
            chat_msg("#lobby", 5, "zed", "five"),
            chat_msg("#lobby", 6, "zed", "six"),
        ],
        None,
        now(),
    );
    let seen = effects(&mut h);
    let texts: Vec<&str> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Deliver(_, Event::Chat { text, .. }) => Some(text.as_str()),
            Seen::Deliver(_, Event::Notice { text }) if text.contains("could not") => Some("gap"),
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["five", "six", "gap"]);
}

#[test]
fn cluster_lines_numbered_here_while_apart_do_not_hide_the_clusters() {
    let mut h = cluster_hub();
    join(&mut h, 1, "ann", false);
    h.claim_answered(id(1), true, now());
    h.room_synced(
        "#lobby",
        10,
        vec![chat_msg("#lobby", 10, "zed", "ten")],
        None,
        now(),
    );
    effects(&mut h);
    h.set_cluster_up(false, now());
    say(&mut h, 1, "local a", now());
    say(&mut h, 1, "local b", now());
    effects(&mut h);
    h.set_cluster_up(true, now());
    // Other nodes said 11..13 meanwhile (the numbers the local lines took).
    let lines = (11..=13)
        .map(|n| chat_msg("#lobby", n, "zed", &format!("z{n}")))
        .collect();
    h.room_synced("#lobby", 13, lines, None, now());
    let seen = effects(&mut h);
    let texts: Vec<&str> = seen
        .iter()
        .filter_map(|s| match s {
            Seen::Deliver(_, Event::Chat { text, .. }) => Some(text.as_str()),
            Seen::Deliver(_, Event::Notice { text }) if text.contains("reached only") => {
                Some("apart")
            }
            _ => None,
        })
        .collect();
    assert_eq!(texts, vec!["z11", "z12", "z13", "apart"]);
    // And the next line from the cluster is news, not a duplicate.
    h.ingest(chat_msg("#lobby", 14, "zed", "z14"));
    assert!(
        effects(&mut h)
            .iter()
            .any(|s| matches!(s, Seen::Deliver(_, Event::Chat { text, .. }) if text == "z14"))
    );
}
