//! Hub routing tests: events in, outbox asserted; no sockets, time is an argument.

use super::*;

fn id(key: u32) -> ConnId {
    ConnId {
        key,
        serial: key + 100,
    }
}

fn now() -> Now {
    Now {
        stamp: Stamp::from_hms(12, 0, 1),
        mono: Instant::now(),
    }
}

fn hub() -> Hub {
    Hub::new(HubConfig::default())
}

fn join(h: &mut Hub, key: u32, name: &str, presence: bool) {
    h.handle_join(id(key), name, Features { presence }, now());
}

fn bodies(h: &mut Hub) -> Vec<(Recipients, Body)> {
    h.drain_outbox()
        .into_iter()
        .map(|o| (o.to, o.msg.body))
        .collect()
}

fn error_code(out: &[(Recipients, Body)]) -> Option<ErrorCode> {
    out.iter().find_map(|(_, b)| match b {
        Body::Error { code, .. } => Some(*code),
        _ => None,
    })
}

#[test]
fn join_welcomes_and_announces() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let out = bodies(&mut h);
    assert!(
        matches!(&out[0], (Recipients::One(i), Body::Info { user: Some(u), text })
        if *i == id(1) && u == "alice" && text.contains("1 user online"))
    );
    assert!(
        matches!(&out[1], (Recipients::All, Body::Notice { text }) if text == "Client alice has joined the chat.")
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
        .filter(|(_, b)| matches!(b, Body::UserList { .. }))
        .collect();
    let deltas: Vec<_> = out
        .iter()
        .filter(|(_, b)| matches!(b, Body::Presence { .. }))
        .collect();
    assert_eq!(lists.len(), 1);
    assert_eq!(lists[0].0, Recipients::FullListUsers);
    assert!(matches!(&lists[0].1, Body::UserList { users } if users.len() == 50));
    assert_eq!(deltas.len(), 1);
    assert!(
        matches!(&deltas[0].1, Body::Presence { joined, left, count } if joined.len() == 50 && left.is_empty() && *count == 50)
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
    let out = bodies(&mut h);
    assert!(out.iter().any(|(to, b)| *to == Recipients::One(id(2))
        && matches!(b, Body::UserList { users } if users == &["Alice".to_owned(), "bob".to_owned()])));
}

#[test]
fn rejects_taken_names_case_insensitively_and_allows_retry() {
    let mut h = hub();
    join(&mut h, 1, "Alice", false);
    let _ = bodies(&mut h);
    join(&mut h, 2, "aLiCe", false);
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::NameTaken));
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
    h.handle_message(id(1), "hi all", now());
    let out = bodies(&mut h);
    assert_eq!(
        out,
        vec![(
            Recipients::All,
            Body::Chat {
                from: "alice".into(),
                text: "hi all".into()
            }
        )]
    );
    assert_eq!(h.relayed(), 1);
}

#[test]
fn message_before_join_is_an_error() {
    let mut h = hub();
    h.handle_message(id(1), "hi", now());
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::NotJoined));
}

#[test]
fn private_message_reaches_target_and_confirms_to_sender() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    join(&mut h, 2, "Bob", false);
    let _ = bodies(&mut h);
    h.handle_message(id(1), "@bob  secret plan", now());
    let out = bodies(&mut h);
    assert_eq!(
        out,
        vec![
            (
                Recipients::One(id(2)),
                Body::Private {
                    from: "alice".into(),
                    text: "secret plan".into()
                }
            ),
            (
                Recipients::One(id(1)),
                Body::PrivateSent {
                    to: "Bob".into(),
                    text: "secret plan".into()
                }
            ),
        ]
    );
}

#[test]
fn private_to_unknown_user_or_without_text_is_an_error() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let _ = bodies(&mut h);
    h.handle_message(id(1), "@nobody hi", now());
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::UnknownUser));
    h.handle_message(id(1), "@alice", now());
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::BadFormat));
    h.handle_message(id(1), "@ hi", now());
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::BadFormat));
    h.handle_message(id(1), "   ", now());
    assert_eq!(error_code(&bodies(&mut h)), Some(ErrorCode::EmptyMessage));
}

#[test]
fn exit_and_disconnect_have_different_notices() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    join(&mut h, 2, "bob", false);
    join(&mut h, 3, "carol", false);
    let _ = bodies(&mut h);
    h.handle_exit(id(1), now());
    h.handle_disconnect(id(2), now());
    h.handle_disconnect(id(1), now()); // already gone: no-op
    let notices: Vec<String> = bodies(&mut h)
        .into_iter()
        .filter_map(|(_, b)| match b {
            Body::Notice { text } => Some(text),
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
    assert_eq!(h.members()[0].id, id(3));
    // The freed name can be taken again.
    join(&mut h, 4, "ALICE", false);
    assert_eq!(error_code(&bodies(&mut h)), None);
}

#[test]
fn stale_conn_id_never_reaches_new_user_on_same_key() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    let old = id(1);
    h.handle_exit(old, now());
    let new = ConnId {
        key: 1,
        serial: 999,
    };
    h.handle_join(new, "bob", Features::default(), now());
    let _ = bodies(&mut h);
    h.handle_message(old, "ghost", now());
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
    h.handle_exit(id(2), now());
    join(&mut h, 3, "flap", false);
    join(&mut h, 4, "ghost", false);
    h.handle_disconnect(id(4), now());
    let _ = bodies(&mut h);
    h.end_turn(now());
    let out = bodies(&mut h);
    let delta = out.iter().find_map(|(_, b)| match b {
        Body::Presence {
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
    h.handle_who(id(1), now());
    assert_eq!(
        bodies(&mut h),
        vec![(
            Recipients::One(id(1)),
            Body::UserList {
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
    });
    let t0 = Instant::now();
    let at = |secs: u64| Now {
        stamp: Stamp::from_hms(0, 0, 0),
        mono: t0 + Duration::from_secs(secs),
    };
    for k in 0..10 {
        h.handle_join(id(k), &format!("u{k}"), Features::default(), at(0));
    }
    h.end_turn(at(0));
    let out = bodies(&mut h);
    let notices = out
        .iter()
        .filter(|(_, b)| matches!(b, Body::Notice { .. }))
        .count();
    assert_eq!(
        notices, 3,
        "only the joins below the threshold are announced"
    );
    // The window is due after the interval: one summary notice.
    h.end_turn(at(2));
    assert!(bodies(&mut h).is_empty());
    h.end_turn(at(6));
    let out = bodies(&mut h);
    assert!(out.iter().any(|(to, b)| *to == Recipients::All
        && matches!(b, Body::Notice { text } if text.starts_with("7 joined and 0 left"))));
    // Dropping back under the threshold resynchronises everyone with a full list.
    for k in 0..8 {
        h.handle_exit(id(k), at(7));
    }
    h.end_turn(at(7));
    let out = bodies(&mut h);
    assert!(out.iter().any(|(to, b)| *to == Recipients::All
        && matches!(b, Body::UserList { users } if users.len() == 2)));
}

#[test]
fn rate_limit_drops_excess_without_disconnecting() {
    let mut h = Hub::new(HubConfig {
        rate_limit_per_sec: 2,
        ..HubConfig::default()
    });
    let t0 = Instant::now();
    let at = |ms: u64| Now {
        stamp: Stamp::from_hms(0, 0, 0),
        mono: t0 + Duration::from_millis(ms),
    };
    h.handle_join(id(1), "fast", Features::default(), at(0));
    let _ = bodies(&mut h);
    for _ in 0..3 {
        h.handle_message(id(1), "x", at(0));
    }
    let out = bodies(&mut h);
    assert_eq!(
        out.iter()
            .filter(|(_, b)| matches!(b, Body::Chat { .. }))
            .count(),
        2
    );
    assert_eq!(error_code(&out), Some(ErrorCode::RateLimited));
    h.handle_message(id(1), "later", at(600));
    assert!(matches!(
        &bodies(&mut h)[..],
        [(Recipients::All, Body::Chat { .. })]
    ));
    assert_eq!(h.user_count(), 1);
}

#[test]
fn a_joiner_gets_no_broadcast_produced_before_its_join() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    h.handle_message(id(1), "before bob", now());
    join(&mut h, 2, "bob", false);
    h.handle_message(id(1), "after bob", now());
    h.end_turn(now());
    let bob = *h.members().iter().find(|m| m.id == id(2)).unwrap();
    let alice = *h.members().iter().find(|m| m.id == id(1)).unwrap();
    let to_bob: Vec<Body> = h
        .drain_outbox()
        .into_iter()
        .inspect(|o| assert!(o.reaches(&alice) || o.to == Recipients::One(id(2))))
        .filter(|o| o.reaches(&bob))
        .map(|o| o.msg.body)
        .collect();
    assert!(matches!(&to_bob[0], Body::Info { user: Some(u), .. } if u == "bob"));
    assert!(
        matches!(&to_bob[1], Body::Notice { text } if text == "Client bob has joined the chat.")
    );
    assert!(matches!(&to_bob[2], Body::Chat { text, .. } if text == "after bob"));
    assert!(matches!(&to_bob[3], Body::UserList { users } if users.len() == 2));
    assert_eq!(to_bob.len(), 4);
}

#[test]
fn shutdown_notifies_everyone_then_users_leave_silently() {
    let mut h = hub();
    join(&mut h, 1, "alice", false);
    join(&mut h, 2, "bob", true);
    h.end_turn(now());
    bodies(&mut h);
    h.shutdown("Server is shutting down.".into(), now());
    h.handle_disconnect(id(1), now());
    h.handle_exit(id(2), now());
    h.end_turn(now());
    let out = bodies(&mut h);
    assert_eq!(
        out,
        vec![(
            Recipients::All,
            Body::Notice {
                text: "Server is shutting down.".into()
            }
        )]
    );
    assert_eq!(h.user_count(), 0);
}
