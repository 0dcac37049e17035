//! The TCP chat protocol over real loopback sockets: JSON lines and plain text,
//! joins and names, broadcasts and private messages, presence lists and deltas,
//! framing (split writes, `\r\n`, UTF-8, JSON escapes), errors, the line and
//! output limits, and the binary's command line.
//!
//! Every wait is bounded by a read timeout ([`common::WAIT`]); names are unique
//! per test and every test has its own server.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, WAIT};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// True when `s` is `HH:MM:SS` with hours < 24 and minutes, seconds < 60.
fn is_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() != 8 || b[2] != b':' || b[5] != b':' {
        return false;
    }
    let num = |i: usize| -> Option<u32> {
        let (hi, lo) = (b[i], b[i + 1]);
        (hi.is_ascii_digit() && lo.is_ascii_digit())
            .then(|| u32::from((hi - b'0') * 10 + lo - b'0'))
    };
    matches!((num(0), num(3), num(6)), (Some(h), Some(m), Some(s)) if h < 24 && m < 60 && s < 60)
}

/// Asserts that a server object carries a well-formed `timestamp`.
fn check_stamp(v: &Value) {
    let stamp = v["timestamp"].as_str().unwrap_or_default();
    assert!(is_stamp(stamp), "bad or missing timestamp in {v}");
}

/// The part of a text-mode line after its `[HH:MM:SS] ` prefix.
fn text_body(line: &str) -> &str {
    let (stamp, rest) = line
        .strip_prefix('[')
        .and_then(|l| l.split_once("] "))
        .unwrap_or_else(|| panic!("text line without a stamp: {line:?}"));
    assert!(is_stamp(stamp), "bad stamp in {line:?}");
    rest
}

/// Reading helpers on top of the shared JSON-lines client; every object read is
/// checked for its timestamp.
trait ChatExt {
    /// The next object.
    fn next(&mut self) -> Value;
    /// Skips objects until one satisfies `pred`.
    fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value;
    /// Skips objects until an `error` with `code`; fails on any other error first.
    fn error(&mut self, code: &str) -> Value;
    /// Skips objects until a chat message from `from` saying `text`.
    fn chat(&mut self, from: &str, text: &str) -> Value;
    /// Skips objects until the server notice `text`.
    fn notice(&mut self, text: &str) -> Value;
    /// Skips objects until a `user_list`.
    fn user_list(&mut self) -> Vec<String>;
    /// Next text-mode line, with its stamp checked and stripped.
    fn text(&mut self) -> String;
    /// Skips text-mode lines until one (stamp stripped) satisfies `pred`.
    fn text_until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String;
}

impl ChatExt for Client {
    fn next(&mut self) -> Value {
        let v = self.recv();
        check_stamp(&v);
        v
    }

    fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let v = self.next();
            if pred(&v) {
                return v;
            }
        }
        panic!("never received {what}");
    }

    fn error(&mut self, code: &str) -> Value {
        let v = self.until(&format!("error {code}"), |v| v["type"] == "error");
        assert_eq!(v["code"], code, "unexpected error {v}");
        assert_eq!(v["sender"], "Server");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        v
    }

    fn chat(&mut self, from: &str, text: &str) -> Value {
        self.until(&format!("{from}: {text}"), |v| {
            v["type"] == "message" && v["sender"] == from && v["message"] == text
        })
    }

    fn notice(&mut self, text: &str) -> Value {
        self.until(&format!("notice {text:?}"), |v| {
            v["type"] == "message" && v["sender"] == "Server" && v["message"] == text
        })
    }

    fn user_list(&mut self) -> Vec<String> {
        let v = self.until("user_list", |v| v["type"] == "user_list");
        let users = names(&v["users"]);
        assert_eq!(v["count"], users.len(), "count disagrees in {v}");
        users
    }

    fn text(&mut self) -> String {
        let line = self.line().expect("no text line before timeout/EOF");
        text_body(&line).to_owned()
    }

    fn text_until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let body = self.text();
            if pred(&body) {
                return body;
            }
        }
        panic!("never received text line {what}");
    }
}

/// A JSON array of strings as a vector.
fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|n| n.as_str().expect("name").to_owned())
        .collect()
}

/// Joins with the `presence` feature; consumes the welcome and returns the
/// first (full) user list.
fn join_presence(addr: SocketAddr, name: &str) -> (Client, Vec<String>) {
    let mut c = Client::connect(addr);
    c.send(&json!({"type":"join","sender":name,"features":["presence"]}));
    let welcome = c.next();
    assert_eq!(welcome["type"], "info", "{welcome}");
    assert_eq!(welcome["user"], name);
    let users = c.user_list();
    (c, users)
}

/// Joins in text mode (the first line is the name); consumes the welcome.
fn join_text(addr: SocketAddr, name: &str) -> Client {
    let mut c = Client::connect(addr);
    c.send_raw(format!("{name}\n").as_bytes());
    let welcome = c.text();
    assert!(
        welcome.starts_with(&format!("*** Welcome {name}!")),
        "{welcome:?}"
    );
    c
}

/// Connects, waits for `name`'s join to be announced to `observer`, and returns.
fn join_seen_by(addr: SocketAddr, name: &str, observer: &mut Client) -> Client {
    let c = Client::join(addr, name);
    observer.notice(&format!("Client {name} has joined the chat."));
    c
}

// ---------------------------------------------------------------------------
// Joining, broadcasting, private messages
// ---------------------------------------------------------------------------

#[test]
fn two_clients_join_and_chat() {
    let addrs = common::start();
    let mut alice = Client::connect(addrs.tcp);
    alice.send(&json!({"type":"join","sender":"alice2c"}));
    let welcome = alice.next();
    assert_eq!(welcome["type"], "info");
    assert_eq!(welcome["sender"], "Server");
    assert_eq!(welcome["user"], "alice2c");
    alice.notice("Client alice2c has joined the chat.");

    let mut bob = Client::join(addrs.tcp, "bob2c");
    bob.notice("Client bob2c has joined the chat.");
    alice.notice("Client bob2c has joined the chat.");

    alice.say("hello bob");
    let seen = bob.chat("alice2c", "hello bob");
    assert_eq!(seen.as_object().map(|o| o.len()), Some(4), "{seen}");
    alice.chat("alice2c", "hello bob");

    bob.say("hi alice");
    alice.chat("bob2c", "hi alice");
    bob.chat("bob2c", "hi alice");
}

#[test]
fn broadcast_reaches_every_client_including_the_sender_in_order() {
    let addrs = common::start();
    const N: usize = 12;
    const PER: usize = 5;
    let mut clients: Vec<Client> = (0..N)
        .map(|i| Client::join(addrs.tcp, &format!("many{i}")))
        .collect();
    // Everyone has seen the last join, so every later broadcast reaches everyone.
    for c in &mut clients {
        c.notice(&format!("Client many{} has joined the chat.", N - 1));
    }
    for round in 0..PER {
        for (i, c) in clients.iter_mut().enumerate() {
            c.say(&format!("m{i}-{round}"));
        }
    }
    for c in &mut clients {
        let mut next_round = [0usize; N];
        let mut got = 0;
        while got < N * PER {
            let v = c.next();
            if v["type"] != "message" || v["sender"] == "Server" {
                continue;
            }
            let from = v["sender"].as_str().expect("sender");
            let i: usize = from.strip_prefix("many").expect("name").parse().expect("n");
            assert_eq!(v["message"], format!("m{i}-{}", next_round[i]), "order");
            next_round[i] += 1;
            got += 1;
        }
        assert!(next_round.iter().all(|&r| r == PER));
    }
}

#[test]
fn private_message_reaches_only_its_target_and_is_confirmed() {
    let addrs = common::start();
    let mut alice = Client::join(addrs.tcp, "alicePm");
    let mut bob = join_seen_by(addrs.tcp, "bobPm", &mut alice);
    let mut carol = join_seen_by(addrs.tcp, "carolPm", &mut alice);

    alice.say("@bobPm meet at  noon");
    let got = bob.until("private", |v| v["type"] == "private");
    assert_eq!(got["sender"], "alicePm");
    assert_eq!(got["message"], "meet at  noon");
    let sent = alice.until("private_sent", |v| v["type"] == "private_sent");
    assert_eq!(sent["to_user"], "bobPm");
    assert_eq!(sent["message"], "meet at  noon");

    // The target name is matched case-insensitively; the confirmation uses the real name.
    bob.say("@ALICEPM ok");
    let got = alice.until("private", |v| v["type"] == "private");
    assert_eq!(
        (&got["sender"], &got["message"]),
        (&json!("bobPm"), &json!("ok"))
    );
    let sent = bob.until("private_sent", |v| v["type"] == "private_sent");
    assert_eq!(sent["to_user"], "alicePm");

    // Carol saw neither private message before the next broadcast.
    alice.say("public marker");
    loop {
        let v = carol.next();
        assert!(v["type"] != "private" && v["type"] != "private_sent", "{v}");
        if v["type"] == "message" && v["message"] == "public marker" {
            break;
        }
    }
}

#[test]
fn private_message_to_unknown_user_is_an_error() {
    let addrs = common::start();
    let mut alice = Client::join(addrs.tcp, "aliceUnknown");
    alice.say("@nobodyHere hello?");
    let e = alice.error("unknown_user");
    assert!(e["message"].as_str().unwrap().contains("nobodyHere"), "{e}");
    // Still usable afterwards.
    alice.say("still here");
    alice.chat("aliceUnknown", "still here");
}

#[test]
fn duplicate_name_is_refused_case_insensitively_and_a_retry_succeeds() {
    let addrs = common::start();
    let mut first = Client::join(addrs.tcp, "DupName");
    let mut second = Client::connect(addrs.tcp);
    for taken in ["DupName", "dupname", "DUPNAME"] {
        second.send(&json!({"type":"join","sender":taken}));
        second.error("name_taken");
    }
    // Not joined yet: messages are refused.
    second.say("too early");
    second.error("not_joined");
    second.send(&json!({"type":"join","sender":"DupName2"}));
    let welcome = second.until("welcome", |v| v["type"] == "info");
    assert_eq!(welcome["user"], "DupName2");
    first.notice("Client DupName2 has joined the chat.");
    second.say("made it");
    first.chat("DupName2", "made it");
}

#[test]
fn invalid_names_are_refused_and_a_retry_succeeds() {
    let addrs = common::start();
    let mut c = Client::connect(addrs.tcp);
    let too_long = "n".repeat(33);
    for bad in [
        "",
        "two words",
        too_long.as_str(),
        "bell\u{7}",
        "Server",
        "sERVER",
        "@at",
        "/slash",
    ] {
        c.send(&json!({"type":"join","sender":bad}));
        c.error("name_invalid");
    }
    // 32 characters is fine.
    let longest = "v".repeat(32);
    c.send(&json!({"type":"join","sender":longest}));
    let welcome = c.until("welcome", |v| v["type"] == "info");
    assert_eq!(welcome["user"], longest.as_str());
}

#[test]
fn sender_field_is_ignored_so_nobody_can_impersonate() {
    let addrs = common::start();
    let mut mallory = Client::join(addrs.tcp, "malloryImp");
    let mut victim = join_seen_by(addrs.tcp, "victimImp", &mut mallory);
    mallory.send(&json!({"type":"message","sender":"victimImp","message":"I am the victim"}));
    mallory.send(&json!({"type":"message","sender":"Server","message":"fake notice"}));
    let v = victim.until("impersonation", |v| v["message"] == "I am the victim");
    assert_eq!(v["sender"], "malloryImp");
    let v = victim.until("fake notice", |v| v["message"] == "fake notice");
    assert_eq!(v["sender"], "malloryImp");
}

#[test]
fn exit_and_abrupt_disconnect_have_different_notices() {
    let addrs = common::start();
    let mut watcher = Client::join(addrs.tcp, "watcherEx");
    let mut polite = join_seen_by(addrs.tcp, "politeEx", &mut watcher);
    let rude = join_seen_by(addrs.tcp, "rudeEx", &mut watcher);

    polite.send(&json!({"type":"exit"}));
    watcher.notice("Client politeEx has left the chat.");
    assert!(polite.closed(), "the server closes after an exit");

    drop(rude);
    watcher.notice("Client rudeEx disconnected unexpectedly.");
    watcher.send(&json!({"type":"who"}));
    assert_eq!(watcher.user_list(), vec!["watcherEx"]);
}

#[test]
fn legacy_clients_get_a_user_list_after_each_change() {
    let addrs = common::start();
    let mut alice = Client::join(addrs.tcp, "aliceUl");
    assert_eq!(alice.user_list(), vec!["aliceUl"]);
    let bob = Client::join(addrs.tcp, "BobUl");
    assert_eq!(
        alice.user_list(),
        vec!["aliceUl", "BobUl"],
        "sorted, case-insensitively"
    );
    let carol = Client::join(addrs.tcp, "carolUl");
    assert_eq!(alice.user_list(), vec!["aliceUl", "BobUl", "carolUl"]);
    drop(bob);
    assert_eq!(alice.user_list(), vec!["aliceUl", "carolUl"]);
    drop(carol);
    assert_eq!(alice.user_list(), vec!["aliceUl"]);
}

#[test]
fn presence_clients_get_one_full_list_then_deltas() {
    let addrs = common::start();
    let legacy = Client::join(addrs.tcp, "legacyPr");
    let (mut p, users) = join_presence(addrs.tcp, "deltaPr");
    assert_eq!(users, vec!["deltaPr", "legacyPr"]);

    let newcomer = Client::join(addrs.tcp, "newPr");
    // The delta of its own join turn may repeat what the full list already said.
    let d = p.until("presence", |v| v["type"] == "presence" && v["count"] == 3);
    assert_eq!(names(&d["joined"]), vec!["newPr"]);
    assert!(names(&d["left"]).is_empty());
    assert_eq!(d["count"], 3);

    drop(newcomer);
    let d = p.until("presence", |v| v["type"] == "presence");
    assert!(names(&d["joined"]).is_empty());
    assert_eq!(names(&d["left"]), vec!["newPr"]);
    assert_eq!(d["count"], 2);

    drop(legacy);
    let d = p.until("presence", |v| v["type"] == "presence");
    assert_eq!(names(&d["left"]), vec!["legacyPr"]);
    assert_eq!(d["count"], 1);

    // A presence client never gets a pushed user_list, only the one it asks for.
    p.send(&json!({"type":"who"}));
    loop {
        let v = p.next();
        if v["type"] == "user_list" {
            assert_eq!(names(&v["users"]), vec!["deltaPr"]);
            break;
        }
    }
}

#[test]
fn join_storm_is_fast_and_presence_updates_are_debounced() {
    const N: usize = 2000;
    // Keep per-user notices and lists on (no summary mode) so debouncing is what is measured.
    let addrs = common::start_with(|cfg| cfg.hub.summary_above_users = 10 * N);
    let total = N + 2;
    let mut legacy = Client::join(addrs.tcp, "stormLegacy");
    let (mut delta, _) = join_presence(addrs.tcp, "stormDelta");
    legacy.user_list();

    let legacy_reader = thread::spawn(move || {
        let mut lists = 0usize;
        loop {
            let users = legacy.user_list();
            lists += 1;
            if users.len() == total {
                return lists;
            }
        }
    });
    let delta_reader = thread::spawn(move || {
        let (mut deltas, mut joined) = (0usize, 0usize);
        loop {
            let d = delta.until("presence", |v| v["type"] == "presence");
            deltas += 1;
            // Its own join may still be reported once, after its first full list.
            joined += names(&d["joined"])
                .iter()
                .filter(|n| *n != "stormDelta")
                .count();
            if d["count"] == total {
                return (deltas, joined);
            }
        }
    });

    let started = Instant::now();
    let mut storm = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(addrs.tcp).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let line =
            format!("{{\"type\":\"join\",\"sender\":\"storm{i}\",\"features\":[\"presence\"]}}\n");
        s.write_all(line.as_bytes()).expect("write join");
        storm.push(s);
    }
    for (i, s) in storm.iter_mut().enumerate() {
        // The welcome is the first thing a joiner receives; read it byte by byte
        // so nothing after it is consumed.
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while byte[0] != b'\n' {
            s.read_exact(&mut byte).expect("welcome before timeout");
            line.push(byte[0]);
        }
        let v: Value = serde_json::from_slice(&line).expect("welcome JSON");
        assert_eq!(v["type"], "info", "the welcome comes first: {v}");
        assert_eq!(v["user"], format!("storm{i}"));
    }
    let lists = legacy_reader.join().expect("legacy reader");
    let (deltas, joined) = delta_reader.join().expect("delta reader");
    let elapsed = started.elapsed();
    eprintln!("join storm: {N} joins in {elapsed:?}, {lists} user_lists, {deltas} presence deltas");
    assert_eq!(joined, N, "every join appears in exactly one delta");
    assert!(
        elapsed < Duration::from_secs(10),
        "join storm took {elapsed:?}"
    );
    assert!(
        lists * 4 < N,
        "{lists} user_lists for {N} joins: not debounced"
    );
    assert!(
        deltas * 4 < N,
        "{deltas} presence deltas for {N} joins: not debounced"
    );
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

#[test]
fn join_and_message_written_one_byte_at_a_time() {
    let addrs = common::start();
    let mut c = Client::connect(addrs.tcp);
    let bytes = b"{\"type\":\"join\",\"sender\":\"byteByByte\"}\n{\"type\":\"message\",\"message\":\"slow \xc3\xa9\"}\n";
    for b in bytes {
        c.send_raw(std::slice::from_ref(b));
    }
    let welcome = c.until("welcome", |v| v["type"] == "info");
    assert_eq!(welcome["user"], "byteByByte");
    c.chat("byteByByte", "slow é");
}

#[test]
fn utf8_character_split_across_two_writes() {
    let addrs = common::start();
    let mut c = Client::join(addrs.tcp, "splitUtf8");
    // "€" is E2 82 AC: the split falls inside it.
    c.send_raw(b"{\"type\":\"message\",\"message\":\"price: \xe2\x82");
    thread::sleep(Duration::from_millis(50));
    c.send_raw(b"\xac 5\"}\n");
    c.chat("splitUtf8", "price: € 5");
}

#[test]
fn several_lines_in_one_write_are_all_handled_in_order() {
    let addrs = common::start();
    let mut c = Client::connect(addrs.tcp);
    c.send_raw(
        b"{\"type\":\"join\",\"sender\":\"batchWriter\"}\n\
          {\"type\":\"message\",\"message\":\"one\"}\n\
          {\"type\":\"message\",\"message\":\"two\"}\n\
          {\"type\":\"message\",\"message\":\"three\"}\n",
    );
    c.until("welcome", |v| v["type"] == "info");
    for text in ["one", "two", "three"] {
        let v = c.until("chat", |v| {
            v["type"] == "message" && v["sender"] != "Server"
        });
        assert_eq!(v["message"], text);
    }
}

#[test]
fn crlf_line_endings_are_accepted() {
    let addrs = common::start();
    let mut c = Client::connect(addrs.tcp);
    c.send_raw(b"{\"type\":\"join\",\"sender\":\"crlfUser\"}\r\n{\"type\":\"message\",\"message\":\"windows\"}\r\n");
    c.until("welcome", |v| {
        v["type"] == "info" && v["user"] == "crlfUser"
    });
    c.chat("crlfUser", "windows");

    let mut t = Client::connect(addrs.tcp);
    t.send_raw(b"crlfText\r\nhello\r\n");
    let welcome = t.text();
    assert!(welcome.starts_with("*** Welcome crlfText!"), "{welcome:?}");
    c.chat("crlfText", "hello");
}

#[test]
fn invalid_utf8_is_rejected_and_the_connection_stays_usable() {
    let addrs = common::start();
    let mut c = Client::join(addrs.tcp, "badUtf8");
    c.send_raw(b"{\"type\":\"message\",\"message\":\"\xff\xfe\"}\n");
    c.error("bad_utf8");
    c.send_raw(b"{\"type\":\"message\",\"message\":\"\xc3\"}\n"); // truncated sequence
    c.error("bad_utf8");
    c.say("fine now");
    c.chat("badUtf8", "fine now");
}

#[test]
fn invalid_json_and_bad_shapes_are_rejected() {
    let addrs = common::start();
    let mut c = Client::join(addrs.tcp, "badJson");
    for line in [
        &b"{\"type\":\"message\",\"message\":\"unterminated}\n"[..],
        b"{\"type\":\"message\" \"message\":\"x\"}\n",
        b"{\"type\":\"message\",\"message\":\"x\"} trailing\n",
        b"{\"type\":\"message\",\"message\":\"bad \\q escape\"}\n",
    ] {
        c.send_raw(line);
        c.error("bad_json");
    }
    for line in [
        &b"{\"type\":\"dance\"}\n"[..],
        b"{\"message\":\"no type\"}\n",
        b"{\"type\":\"message\",\"message\":42}\n",
        b"[1,2,3]\n",
    ] {
        c.send_raw(line);
        c.error("bad_format");
    }
    c.say("still fine");
    c.chat("badJson", "still fine");
}

#[test]
fn json_escapes_round_trip_exactly() {
    let addrs = common::start();
    let mut sender = Client::join(addrs.tcp, "escSender");
    let mut receiver = join_seen_by(addrs.tcp, "escReceiver", &mut sender);
    let raw =
        r#"{"type":"message","message":"q\" b\\ n\n t\t e\u00e9 s\ud83d\ude00 z\u0000 sl\/"}"#;
    let expected: Value =
        serde_json::from_str::<Value>(raw).expect("valid JSON")["message"].clone();
    assert_eq!(expected, "q\" b\\ n\n t\t e\u{e9} s\u{1f600} z\u{0} sl/");
    sender.send_raw(format!("{raw}\n").as_bytes());
    for c in [&mut sender, &mut receiver] {
        let v = c.until("escaped chat", |v| v["sender"] == "escSender");
        assert_eq!(v["message"], expected);
    }
    // A private message keeps the text exactly too.
    sender.send(
        &json!({"type":"message","message":format!("@escReceiver {}", expected.as_str().unwrap())}),
    );
    let v = receiver.until("private", |v| v["type"] == "private");
    assert_eq!(v["message"], expected);
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

#[test]
fn oversized_line_gets_too_long_then_the_connection_closes() {
    let addrs = common::start_with(|cfg| cfg.max_line_bytes = 1024);
    let mut watcher = Client::join(addrs.tcp, "watcherLong");
    let mut c = join_seen_by(addrs.tcp, "longLiner", &mut watcher);

    // At the limit is fine.
    let text = "x".repeat(1024 - r#"{"type":"message","message":""}"#.len());
    c.send(&json!({"type":"message","message":text}));
    c.chat("longLiner", &text);

    let long = format!(
        "{{\"type\":\"message\",\"message\":\"{}\"}}\n",
        "y".repeat(2000)
    );
    c.send_raw(long.as_bytes());
    c.error("too_long");
    assert!(c.closed(), "connection stays open after too_long");
    watcher.notice("Client longLiner disconnected unexpectedly.");

    // A first line that never ends is cut off once it passes the limit, and the
    // error comes in the format the line began with.
    let mut endless = Client::connect(addrs.tcp);
    endless.send_raw(format!("{{\"type\":\"join\",\"sender\":\"{}", "z".repeat(1500)).as_bytes());
    endless.error("too_long");
    assert!(endless.closed());
    let mut endless_text = Client::connect(addrs.tcp);
    endless_text.send_raw(&[b'z'; 1500]);
    assert!(endless_text.text().starts_with("!!! Line too long"));
    assert!(endless_text.closed());
}

#[test]
fn a_client_that_never_reads_is_dropped_and_others_get_everything() {
    let addrs = common::start_with(|cfg| cfg.out_hard_limit_bytes = 256 * 1024);
    let mut watcher = Client::join(addrs.tcp, "watcherSlow");
    let mut talker = join_seen_by(addrs.tcp, "talkerSlow", &mut watcher);
    // Joined, then never reads again.
    let stuck = join_seen_by(addrs.tcp, "stuckSlow", &mut watcher);

    let dropped = Arc::new(AtomicBool::new(false));
    let filler = "f".repeat(1000);
    // Readers report progress so the talker never runs further ahead of them than
    // the output limit allows: only the client that never reads may overflow.
    let progress = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let expect_all = |mut c: Client, flag: Option<Arc<AtomicBool>>, done: Arc<AtomicUsize>| {
        let filler = filler.clone();
        thread::spawn(move || {
            let mut next = 0usize;
            let mut saw_notice = false;
            loop {
                let v = c.next();
                if v["sender"] == "Server" {
                    if v["message"] == "Client stuckSlow disconnected unexpectedly." {
                        saw_notice = true;
                        if let Some(f) = &flag {
                            f.store(true, Ordering::SeqCst);
                        }
                    }
                    continue;
                }
                if v["type"] != "message" {
                    continue;
                }
                assert_eq!(v["sender"], "talkerSlow");
                let text = v["message"].as_str().expect("text");
                if text == "END" {
                    return (next, saw_notice, c);
                }
                assert_eq!(text, format!("{next} {filler}"), "out of order or lost");
                next += 1;
                done.store(next, Ordering::SeqCst);
            }
        })
    };
    let talker_writer = talker.writer.try_clone().expect("clone");
    let talker_reader = Client {
        reader: BufReader::new(talker.reader.get_ref().try_clone().expect("clone")),
        writer: talker_writer,
    };
    let watch = expect_all(watcher, Some(dropped.clone()), progress[0].clone());
    let echo = expect_all(talker_reader, None, progress[1].clone());

    // Keep talking until the stuck client is dropped (its kernel buffers fill first).
    let started = Instant::now();
    let mut sent = 0usize;
    while !dropped.load(Ordering::SeqCst) {
        assert!(
            started.elapsed() < WAIT,
            "stuck client never dropped after {sent} messages"
        );
        let mut batch = String::new();
        for _ in 0..100 {
            batch.push_str(
                &json!({"type":"message","message":format!("{sent} {filler}")}).to_string(),
            );
            batch.push('\n');
            sent += 1;
        }
        talker.send_raw(batch.as_bytes());
        while progress
            .iter()
            .any(|p| sent - p.load(Ordering::SeqCst) > 100)
            && started.elapsed() < WAIT
        {
            thread::sleep(Duration::from_millis(1));
        }
    }
    talker.say("END");
    let (seen, notice, mut watcher) = watch.join().expect("watcher");
    let (echoed, _, _) = echo.join().expect("talker reader");
    assert!(notice);
    assert_eq!(seen, sent, "watcher missed messages");
    assert_eq!(echoed, sent, "talker missed its own messages");
    watcher.send(&json!({"type":"who"}));
    assert_eq!(watcher.user_list(), vec!["talkerSlow", "watcherSlow"]);
    drop(stuck);
}

// ---------------------------------------------------------------------------
// Requests in the wrong state, `who`
// ---------------------------------------------------------------------------

#[test]
fn a_second_join_on_a_joined_connection_is_an_error() {
    let addrs = common::start();
    let mut c = Client::join(addrs.tcp, "onceOnly");
    c.send(&json!({"type":"join","sender":"twiceOnly"}));
    c.error("already_joined");
    c.say("same name");
    c.chat("onceOnly", "same name");
    c.send(&json!({"type":"who"}));
    assert_eq!(c.user_list(), vec!["onceOnly"]);
}

#[test]
fn requests_before_join_get_not_joined() {
    let addrs = common::start();
    let mut c = Client::connect(addrs.tcp);
    c.send(&json!({"type":"message","message":"hello?"}));
    c.error("not_joined");
    c.send(&json!({"type":"who"}));
    c.error("not_joined");
    c.send(&json!({"type":"join","sender":"lateJoiner"}));
    let welcome = c.until("welcome", |v| v["type"] == "info");
    assert_eq!(welcome["user"], "lateJoiner");
}

#[test]
fn who_lists_everyone_online() {
    let addrs = common::start();
    let mut a = Client::join(addrs.tcp, "whoA");
    let (_b, _) = join_presence(addrs.tcp, "whoB");
    let _c = join_text(addrs.tcp, "whoC");
    a.notice("Client whoC has joined the chat.");
    a.send(&json!({"type":"who"}));
    // Pushed lists may come first; the answer is the one with everyone.
    let v = a.until("full list", |v| v["type"] == "user_list" && v["count"] == 3);
    assert_eq!(names(&v["users"]), vec!["whoA", "whoB", "whoC"]);
}

// ---------------------------------------------------------------------------
// Plain-text mode
// ---------------------------------------------------------------------------

#[test]
fn text_mode_end_to_end_with_json_interop() {
    let addrs = common::start();
    let mut tina = join_text(addrs.tcp, "tina");
    // The turn's joiners get their list at the end of the turn, after the
    // join notices of that turn.
    tina.text_until("own join", |l| l == "*** Client tina has joined the chat.");
    assert_eq!(
        tina.text_until("own list", |l| l.starts_with("*** Online")),
        "*** Online (1): tina"
    );

    let mut jack = Client::join(addrs.tcp, "jack");
    tina.text_until("jack's join", |l| {
        l == "*** Client jack has joined the chat."
    });

    // Broadcast both ways.
    jack.say("hello tina");
    assert_eq!(tina.text(), "jack: hello tina");
    tina.send_raw(b"hi jack\n");
    assert_eq!(tina.text(), "tina: hi jack");
    jack.chat("tina", "hi jack");

    // Private, text → JSON with /msg and with @.
    tina.send_raw(b"/msg jack psst\n");
    assert_eq!(tina.text(), "[private to jack] psst");
    let p = jack.until("private", |v| v["type"] == "private");
    assert_eq!(
        (&p["sender"], &p["message"]),
        (&json!("tina"), &json!("psst"))
    );
    tina.send_raw(b"@JACK again\n");
    assert_eq!(tina.text(), "[private to jack] again");
    jack.until("private", |v| {
        v["type"] == "private" && v["message"] == "again"
    });

    // Private, JSON → text.
    jack.say("@tina back at you");
    assert_eq!(tina.text(), "[private] jack: back at you");
    let sent = jack.until("private_sent", |v| v["type"] == "private_sent");
    assert_eq!(sent["to_user"], "tina");

    // Errors, /who, /help.
    tina.send_raw(b"/msg zed hello\n");
    assert_eq!(tina.text(), "!!! User 'zed' is not online.");
    tina.send_raw(b"/dance\n");
    assert!(tina.text().starts_with("!!! unknown command /dance"));
    tina.send_raw(b"/msg jack\n");
    assert!(tina.text().starts_with("!!! usage: /msg NAME TEXT"));
    tina.send_raw(b"/who\n");
    assert_eq!(tina.text(), "*** Online (2): jack, tina");
    tina.send_raw(b"/help\n");
    let help = tina.text();
    assert!(
        help.starts_with("*** Commands:") && help.contains("/quit"),
        "{help:?}"
    );
    tina.send_raw(b"//slash\n");
    assert_eq!(tina.text(), "tina: /slash");
    jack.chat("tina", "/slash");

    // Control characters from others cannot reach a terminal raw.
    jack.say("a\u{1b}[31mred\tx\ny\rz\u{7}\u{9b}!");
    assert_eq!(tina.text(), "jack: a\u{fffd}[31mred x y z\u{fffd}\u{fffd}!");
    // …while JSON clients get the exact text.
    jack.chat("jack", "a\u{1b}[31mred\tx\ny\rz\u{7}\u{9b}!");

    // Text-mode errors for bad UTF-8 keep the connection.
    tina.send_raw(b"bad \xff byte\n");
    assert!(tina.text().starts_with("!!! "));

    tina.send_raw(b"/quit\n");
    jack.notice("Client tina has left the chat.");
    assert!(tina.closed());
}

#[test]
fn text_mode_name_rules_and_retry() {
    let addrs = common::start();
    let _owner = Client::join(addrs.tcp, "TextTaken");
    let mut t = Client::connect(addrs.tcp);
    t.send_raw(b"texttaken\n");
    assert!(
        t.text()
            .starts_with("!!! The name 'texttaken' is already taken")
    );
    t.send_raw(b"two words\n");
    assert!(t.text().starts_with("!!! Invalid name"));
    t.send_raw(b"  textFine  \n");
    assert!(t.text().starts_with("*** Welcome textFine!"));
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

/// A child process killed and reaped on drop.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn spawn(args: &[&str]) -> ChildGuard {
        let child = Command::new(env!("CARGO_BIN_EXE_multiuserchat"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn server binary");
        ChildGuard(Some(child))
    }

    /// Waits for the exit (at most `limit`), collecting its output.
    fn wait_output(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        let child = self.0.as_mut().expect("child");
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return self
                    .0
                    .take()
                    .expect("child")
                    .wait_with_output()
                    .expect("output");
            }
            thread::sleep(Duration::from_millis(20));
        }
        panic!("the binary did not exit within {limit:?}");
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn binary_refuses_a_port_in_use_with_a_one_line_error() {
    let port = free_port().to_string();
    let args = [
        "--host",
        "127.0.0.1",
        "--tcp-port",
        &port,
        "--ws-port",
        "0",
        "--http-port",
        "0",
    ];
    let first = ChildGuard::spawn(&args);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = Instant::now() + WAIT;
    while TcpStream::connect(addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "first server never listened on {port}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    let out = ChildGuard::spawn(&args).wait_output(WAIT);
    assert!(
        !out.status.success(),
        "second instance exited with {:?}",
        out.status
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {stderr:?}");
    assert!(lines[0].contains(&port), "{stderr:?}");
    assert!(lines[0].contains("--tcp-port"), "{stderr:?}");
    drop(first);
}

#[test]
fn binary_help_and_version_exit_zero() {
    let help = ChildGuard::spawn(&["--help"]).wait_output(WAIT);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("--tcp-port") && text.contains("USAGE"),
        "{text}"
    );

    let version = ChildGuard::spawn(&["--version"]).wait_output(WAIT);
    assert!(version.status.success());
    let text = String::from_utf8_lossy(&version.stdout);
    assert_eq!(
        text.trim(),
        format!("multiuserchat {}", env!("CARGO_PKG_VERSION"))
    );
}
