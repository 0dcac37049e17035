//! Rooms over real loopback sockets: isolation, the rooms form of messages
//! (and the original form for clients that did not ask), replay and resume,
//! history pages, topics, the room list, limits and errors, text mode's
//! commands, and the replay/live boundary while someone keeps sending.

mod common;

use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use common::Client;
use serde_json::{Value, json};

/// Joins with the rooms feature (and `extra` features); consumes the welcome
/// and the lobby's `room_joined`, which is returned.
fn rooms_client(addr: SocketAddr, name: &str, extra: &[&str]) -> (Client, Value) {
    let mut c = Client::connect(addr);
    let mut features = vec!["rooms"];
    features.extend_from_slice(extra);
    c.send(&json!({"type":"join","sender":name,"features":features}));
    let welcome = c.expect_type("info");
    assert_eq!(welcome["user"], name);
    assert!(welcome["limits"]["rooms_per_user"].is_u64(), "{welcome}");
    let joined = c.expect_type("room_joined");
    assert_eq!(joined["room"], "#lobby");
    (c, joined)
}

fn join_room(c: &mut Client, room: &str) -> (Value, Value) {
    c.send(&json!({"type":"room_join","room":room}));
    let joined = c.expect_type("room_joined");
    let history = c.expect_type("history");
    (joined, history)
}

fn say_in(c: &mut Client, room: &str, text: &str) {
    c.send(&json!({"type":"message","room":room,"message":text}));
}

fn seqs(history: &Value) -> Vec<u64> {
    history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["seq"].as_u64().expect("seq"))
        .collect()
}

/// Reads chat messages of `room` until one with text `last`; returns their texts.
fn texts_until(c: &mut Client, room: &str, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    let deadline = Instant::now() + common::WAIT;
    while Instant::now() < deadline {
        let v = c.recv();
        if v["type"] == "message" && v["room"] == room && v["sender"] != "Server" {
            let t = v["message"].as_str().unwrap_or_default().to_owned();
            let done = t == last;
            got.push(t);
            if done {
                return got;
            }
        }
    }
    panic!("never got {last:?} in {room}");
}

#[test]
fn rooms_are_isolated_and_carry_room_seq_and_ts() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anRooms", &[]);
    let (mut bo, _) = rooms_client(addrs.tcp, "boRooms", &[]);
    let mut legacy = Client::join(addrs.tcp, "legacyRooms");
    let (joined, history) = join_room(&mut an, "#Toan");
    assert_eq!(joined["room"], "#toan", "names are folded");
    assert_eq!(joined["seq"], 0);
    assert_eq!(history["messages"], json!([]));
    assert_eq!(history["complete"], true);
    assert_eq!(history["gap"], false);
    join_room(&mut bo, "#art");

    say_in(&mut an, "#toan", "only for toan");
    let m = an.recv_until("own line", |v| v["message"] == "only for toan");
    assert_eq!(m["room"], "#toan");
    assert_eq!(m["seq"], 1);
    assert!(
        m["ts"].as_u64().is_some_and(|t| t > 1_700_000_000_000),
        "{m}"
    );
    assert!(m["timestamp"].is_string());

    // bo and the legacy client see only the lobby line that follows.
    say_in(&mut an, "#lobby", "lobby marker");
    let seen = bo.recv_until("marker", |v| v["message"] == "lobby marker");
    assert_eq!(seen["room"], "#lobby");
    let mut legacy_seen = Vec::new();
    loop {
        let v = legacy.recv();
        legacy_seen.push(v.clone());
        if v["message"] == "lobby marker" {
            break;
        }
    }
    for v in &legacy_seen {
        assert_ne!(v["message"], "only for toan");
        assert!(
            v.get("room").is_none() && v.get("seq").is_none() && v.get("ts").is_none(),
            "a legacy client got room keys: {v}"
        );
    }
}

#[test]
fn a_message_to_a_room_you_are_not_in_is_refused() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anNotIn", &[]);
    let (mut bo, _) = rooms_client(addrs.tcp, "boNotIn", &[]);
    join_room(&mut bo, "#closed");
    say_in(&mut an, "#closed", "let me in");
    let e = an.expect_type("error");
    assert_eq!(e["code"], "not_in_room");
    say_in(&mut an, "#nowhere", "x");
    assert_eq!(an.expect_type("error")["code"], "not_in_room");
    // A legacy client cannot use rooms at all.
    let mut legacy = Client::join(addrs.tcp, "legacyNotIn");
    legacy.send(&json!({"type":"room_join","room":"#closed"}));
    assert_eq!(legacy.expect_type("error")["code"], "bad_format");
}

#[test]
fn room_names_follow_the_rules() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anNames", &[]);
    for bad in [
        "toan",
        "#",
        "#to an",
        "#toán",
        "#to.an",
        &format!("#{}", "x".repeat(33)),
    ] {
        an.send(&json!({"type":"room_join","room":bad}));
        assert_eq!(an.expect_type("error")["code"], "room_invalid", "{bad}");
    }
    let (joined, _) = join_room(&mut an, &format!("#{}", "x".repeat(32)));
    assert_eq!(joined["count"], 1);
}

#[test]
fn joining_replays_and_since_resumes_exactly_or_says_gap() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anReplay", &[]);
    let (mut bo, _) = rooms_client(addrs.tcp, "boReplay", &[]);
    join_room(&mut an, "#r");
    for i in 1..=5 {
        say_in(&mut an, "#r", &format!("m{i}"));
    }
    texts_until(&mut an, "#r", "m5");
    let (joined, history) = join_room(&mut bo, "#r");
    assert_eq!(joined["seq"], 5);
    let epoch = joined["epoch"].as_str().expect("epoch").to_owned();
    assert_eq!(seqs(&history), vec![1, 2, 3, 4, 5]);
    assert_eq!(history["complete"], true);
    assert_eq!(history["gap"], false);
    assert_eq!(history["messages"][0]["message"], "m1");
    assert_eq!(history["messages"][0]["room"], "#r");

    bo.send(&json!({"type":"room_leave","room":"#r"}));
    assert_eq!(bo.expect_type("room_left")["room"], "#r");
    for i in 6..=8 {
        say_in(&mut an, "#r", &format!("m{i}"));
    }
    texts_until(&mut an, "#r", "m8");
    bo.send(&json!({"type":"room_join","room":"#r","since":{"epoch":epoch,"seq":5}}));
    bo.expect_type("room_joined");
    let h = bo.expect_type("history");
    assert_eq!(seqs(&h), vec![6, 7, 8], "exactly what was missed");
    assert_eq!(h["gap"], false);

    bo.send(&json!({"type":"room_leave","room":"#r"}));
    bo.expect_type("room_left");
    bo.send(&json!({"type":"room_join","room":"#r","since":{"epoch":"another","seq":2}}));
    bo.expect_type("room_joined");
    let h = bo.expect_type("history");
    assert_eq!(h["gap"], true, "another epoch cannot be served exactly");
    assert_eq!(
        seqs(&h),
        (1..=8).collect::<Vec<_>>(),
        "the newest follow instead"
    );
}

#[test]
fn history_pages_have_exclusive_bounds() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anPages", &[]);
    join_room(&mut an, "#pages");
    for i in 1..=10 {
        say_in(&mut an, "#pages", &format!("p{i}"));
    }
    texts_until(&mut an, "#pages", "p10");
    an.send(&json!({"type":"history","room":"#pages","before":6,"limit":3}));
    let h = an.expect_type("history");
    assert_eq!(seqs(&h), vec![3, 4, 5]);
    assert_eq!(h["complete"], false);
    an.send(&json!({"type":"history","room":"#pages","before":2,"limit":3}));
    let h = an.expect_type("history");
    assert_eq!(seqs(&h), vec![1]);
    assert_eq!(h["complete"], true);
    an.send(&json!({"type":"history","room":"#pages","limit":2}));
    assert_eq!(seqs(&an.expect_type("history")), vec![9, 10]);
    an.send(&json!({"type":"history","room":"#elsewhere"}));
    assert_eq!(an.expect_type("error")["code"], "not_in_room");
}

#[test]
fn topics_reach_the_room_and_show_in_the_list() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anTopic", &[]);
    let (mut bo, _) = rooms_client(addrs.tcp, "boTopic", &[]);
    join_room(&mut an, "#math");
    join_room(&mut bo, "#math");
    an.send(&json!({"type":"topic","room":"#math","topic":"fractions today"}));
    let t = bo.expect_type("topic");
    assert_eq!(
        (&t["room"], &t["topic"], &t["sender"]),
        (
            &json!("#math"),
            &json!("fractions today"),
            &json!("anTopic")
        )
    );
    an.send(&json!({"type":"topic","room":"#math","topic":"x".repeat(391)}));
    assert_eq!(an.expect_type("error")["code"], "bad_format");
    bo.send(&json!({"type":"rooms"}));
    let list = bo.expect_type("room_list");
    let math = list["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .find(|r| r["name"] == "#math")
        .cloned()
        .expect("#math listed");
    assert_eq!(math["users"], 2);
    assert_eq!(math["topic"], "fractions today");
    assert!(list["total"].as_u64().is_some_and(|n| n >= 2));
    // A newcomer learns the topic on joining.
    let (mut cy, _) = rooms_client(addrs.tcp, "cyTopic", &[]);
    let (joined, _) = join_room(&mut cy, "#math");
    assert_eq!(joined["topic"], "fractions today");
    assert_eq!(joined["users"], json!(["anTopic", "boTopic", "cyTopic"]));
}

#[test]
fn an_empty_room_without_history_leaves_the_list() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anEmpty", &[]);
    join_room(&mut an, "#brief");
    an.send(&json!({"type":"room_leave","room":"#brief"}));
    an.expect_type("room_left");
    an.send(&json!({"type":"rooms"}));
    let list = an.expect_type("room_list");
    assert!(
        !list["rooms"]
            .as_array()
            .expect("rooms")
            .iter()
            .any(|r| r["name"] == "#brief"),
        "{list}"
    );
}

#[test]
fn room_limits_per_user_and_server() {
    let addrs = common::start_with(|c| {
        c.hub.max_rooms_per_user = 2;
        c.hub.max_rooms = 3;
    });
    let (mut an, _) = rooms_client(addrs.tcp, "anLimit", &[]);
    let w = join_room(&mut an, "#one").0;
    assert_eq!(w["room"], "#one");
    // #lobby and #one: the per-user limit is reached.
    an.send(&json!({"type":"room_join","room":"#two"}));
    assert_eq!(an.expect_type("error")["code"], "room_limit");
    let (mut bo, _) = rooms_client(addrs.tcp, "boLimit", &[]);
    join_room(&mut bo, "#three");
    // #lobby, #one, #three exist: the server limit is reached.
    let (mut cy, _) = rooms_client(addrs.tcp, "cyLimit", &[]);
    cy.send(&json!({"type":"room_join","room":"#four"}));
    assert_eq!(cy.expect_type("error")["code"], "room_limit");
    // Existing rooms can still be joined.
    join_room(&mut cy, "#one");
}

#[test]
fn fixed_rooms_only_when_creation_is_off() {
    let addrs = common::start_with(|c| {
        c.hub.permanent_rooms = vec!["#math".into(), "#art".into()];
        c.hub.room_create = false;
    });
    let (mut an, _) = rooms_client(addrs.tcp, "anFixed", &[]);
    an.send(&json!({"type":"rooms"}));
    let list = an.expect_type("room_list");
    let names: Vec<&str> = list["rooms"]
        .as_array()
        .expect("rooms")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    for want in ["#lobby", "#math", "#art"] {
        assert!(names.contains(&want), "{names:?}");
    }
    join_room(&mut an, "#math");
    an.send(&json!({"type":"room_join","room":"#other"}));
    assert_eq!(an.expect_type("error")["code"], "room_invalid");
}

#[test]
fn presence_deltas_name_their_room() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anPresence", &["presence"]);
    join_room(&mut an, "#p");
    let (mut bo, _) = rooms_client(addrs.tcp, "boPresence", &[]);
    join_room(&mut bo, "#p");
    let d = an.recv_until("bo's delta in #p", |v| {
        v["type"] == "presence" && v["room"] == "#p" && v["joined"] == json!(["boPresence"])
    });
    assert_eq!(d["joined"], json!(["boPresence"]));
    assert_eq!(d["count"], 2);
}

#[test]
fn legacy_clients_can_get_a_plain_replay() {
    let addrs = common::start_with(|c| c.hub.legacy_replay = 2);
    let mut first = Client::join(addrs.tcp, "firstReplay");
    for t in ["one", "two", "three"] {
        first.say(t);
    }
    first.recv_until("three", |v| v["message"] == "three");
    let mut late = Client::connect(addrs.tcp);
    late.send(&json!({"type":"join","sender":"lateReplay"}));
    late.expect_type("info");
    let note = late.expect_type("info");
    assert!(
        note["message"]
            .as_str()
            .is_some_and(|m| m.contains("last 2 messages")),
        "{note}"
    );
    let a = late.recv();
    let b = late.recv();
    assert_eq!(
        (&a["message"], &b["message"]),
        (&json!("two"), &json!("three"))
    );
    assert!(a.get("room").is_none() && a.get("seq").is_none(), "{a}");
}

#[test]
fn a_history_client_gets_the_lobby_replayed() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anLobbyHist", &[]);
    say_in(&mut an, "#lobby", "before you came");
    texts_until(&mut an, "#lobby", "before you came");
    let (mut bo, joined) = rooms_client(addrs.tcp, "boLobbyHist", &["history"]);
    assert_eq!(joined["seq"], 1);
    let h = bo.expect_type("history");
    assert_eq!(h["room"], "#lobby");
    assert_eq!(h["messages"][0]["message"], "before you came");
}

#[test]
fn text_mode_rooms_commands() {
    let addrs = common::start();
    let (mut an, _) = rooms_client(addrs.tcp, "anText", &[]);
    let mut t = Client::connect(addrs.tcp);
    t.send_raw(b"tina\n");
    let strip = |l: String| -> String {
        // "[#room HH:MM:SS] rest" or "[HH:MM:SS] rest" -> "#room|rest" / "rest"
        let (head, rest) = l.split_once("] ").expect("a stamped line");
        match head.trim_start_matches('[').split_once(' ') {
            Some((room, _)) => format!("{room}|{rest}"),
            None => rest.to_owned(),
        }
    };
    let next = |t: &mut Client| strip(t.line().expect("a line"));
    loop {
        if next(&mut t).starts_with("*** Welcome tina") {
            break;
        }
    }
    t.send_raw(b"/join #Talk\n");
    loop {
        let l = next(&mut t);
        if l.contains("You are in #talk") {
            assert!(l.contains("Plain lines go here now"), "{l}");
            break;
        }
    }
    join_room(&mut an, "#talk");
    t.send_raw(b"hello talk\n");
    let m = an.recv_until("tina's line", |v| v["message"] == "hello talk");
    assert_eq!(m["room"], "#talk");
    loop {
        let l = next(&mut t);
        if l == "#talk|tina: hello talk" {
            break;
        }
    }
    t.send_raw(b"/topic maps and more\n");
    loop {
        if next(&mut t) == "#talk|*** tina set the topic of #talk: maps and more" {
            break;
        }
    }
    t.send_raw(b"/history 5\n");
    loop {
        if next(&mut t) == "#talk|(history) tina: hello talk" {
            break;
        }
    }
    t.send_raw(b"/rooms\n");
    loop {
        let l = next(&mut t);
        if l.starts_with("*** Rooms (") {
            assert!(l.contains("#talk (2) maps and more"), "{l}");
            break;
        }
    }
    t.send_raw(b"/part\n");
    loop {
        if next(&mut t) == "*** You left #talk." {
            break;
        }
    }
    // Back in the lobby: plain lines go there, shown as before.
    t.send_raw(b"lobby again\n");
    loop {
        if next(&mut t) == "tina: lobby again" {
            break;
        }
    }
    t.send_raw(b"/join\n");
    assert!(next(&mut t).starts_with("!!! usage: /join #ROOM"));
}

/// Joiners arrive while a sender keeps sending: each joiner's replay and
/// live lines together are every seq from the replay's first, once, in order.
#[test]
fn replay_and_live_meet_without_duplicates_or_gaps() {
    let addrs = common::start();
    let (mut sender, _) = rooms_client(addrs.tcp, "hammer", &[]);
    join_room(&mut sender, "#busy");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = sender.writer.try_clone().expect("clone");
        thread::spawn(move || {
            use std::io::Write;
            let mut i = 0u32;
            let deadline = Instant::now() + Duration::from_secs(10);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < deadline {
                i += 1;
                let line = format!(
                    "{}\n",
                    json!({"type":"message","room":"#busy","message":format!("h{i}")})
                );
                if w.write_all(line.as_bytes()).is_err() {
                    break;
                }
                if i.is_multiple_of(20) {
                    thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    // Drain the sender's own echoes so its socket never fills.
    let drainer = thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(12);
        while Instant::now() < deadline && sender.line().is_some() {}
    });
    for j in 0..6 {
        thread::sleep(Duration::from_millis(40));
        let (mut c, _) = rooms_client(addrs.tcp, &format!("joiner{j}"), &[]);
        let (joined, history) = join_room(&mut c, "#busy");
        let mut got = seqs(&history);
        let top = joined["seq"].as_u64().expect("seq");
        assert_eq!(
            got.last().copied().unwrap_or(top),
            top,
            "the replay ends at room_joined's seq"
        );
        let want = got.last().copied().unwrap_or(top) + 200;
        while got.last().copied().unwrap_or(top) < want {
            let v = c.recv();
            if v["type"] == "message" && v["room"] == "#busy" && v["sender"] == "hammer" {
                got.push(v["seq"].as_u64().expect("seq"));
            }
        }
        let first = got[0];
        let expect: Vec<u64> = (first..first + got.len() as u64).collect();
        assert_eq!(
            got, expect,
            "joiner{j}: duplicate or gap at the replay/live boundary"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.join().expect("writer");
    drop(drainer);
}
