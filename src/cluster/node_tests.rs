//! Tests of [`Node`](super::node::Node) through its public inputs and
//! outputs: RESP bytes in on both links, commands and hub news out.

use std::rc::Rc;
use std::time::{Duration, Instant};

use super::keys::{DEFAULT_PREFIX, Keys};
use super::node::{Node, NodeConfig, ToHub};

const ROOM: &str = "#r";

fn node(now: Instant) -> Node {
    Node::new(
        NodeConfig {
            node_id: "n1".into(),
            user: None,
            password: None,
            db: 0,
            claim_ttl: Duration::from_secs(60),
            stream_maxlen: 100,
            load_lines: 10,
            fresh_epoch: "E1".into(),
        },
        now,
    )
}

/// `cmd` as Redis reads it: an array of bulk strings.
fn command(cmd: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", cmd.len()).into_bytes();
    for part in cmd {
        out.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
    out
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Answers what a (re)connected command link sent first: five `SCRIPT
/// LOAD`s, `SET epoch NX`, `GET epoch` (with `epoch`), then `extra` replies.
fn hello_replies(n: &mut Node, epoch: &str, extra: &str, now: Instant) {
    let mut r = "+sha\r\n".repeat(5);
    r.push_str("+OK\r\n");
    r.push_str(&bulk(epoch));
    r.push_str(extra);
    assert_eq!(n.on_cmd_input(r.as_bytes(), now), Ok(r.len()));
}

/// The replies to a room's load: no topic, `seq`, no members, no lines.
fn load_replies(seq: u64) -> String {
    format!("$-1\r\n{}*0\r\n*0\r\n", bulk(&seq.to_string()))
}

/// The replies to the presence refresh of a connect, for one watched room:
/// expired members removed (none), members read (none).
const PRESENCE: &str = ":0\r\n*0\r\n";

/// A node with `ROOM` watched, connected and loaded at `seq` under epoch E1.
fn live_node(seq: u64, now: Instant) -> Node {
    let keys = Keys::new(DEFAULT_PREFIX);
    let mut n = node(now);
    n.watch(ROOM, true, now);
    n.on_cmd_connected(now);
    n.on_sub_connected(now);
    let _ = (n.take_cmd_output(), n.take_sub_output());
    hello_replies(&mut n, "E1", PRESENCE, now);
    let chan = keys.room_channel(ROOM);
    let mut confirm = b"*3\r\n$9\r\nsubscribe\r\n".to_vec();
    confirm.extend_from_slice(format!("${}\r\n", chan.len()).as_bytes());
    confirm.extend_from_slice(&chan);
    confirm.extend_from_slice(b"\r\n:1\r\n");
    assert_eq!(n.on_sub_input(&confirm, now), Ok(confirm.len()));
    let r = load_replies(seq);
    assert_eq!(n.on_cmd_input(r.as_bytes(), now), Ok(r.len()));
    let news = n.take_to_hub();
    assert!(
        news.iter()
            .any(|m| matches!(m, ToHub::Synced { seq: s, .. } if *s == seq)),
        "{news:?}"
    );
    n
}

#[test]
fn after_a_reconnect_a_rooms_numbering_goes_on_from_the_highest_seq_seen() {
    let now = Instant::now();
    let keys = Keys::new(DEFAULT_PREFIX);
    let mut n = live_node(5, now);
    let set_nx = command(&[b"SET", &keys.room_seq(ROOM), b"5", b"NX"]);
    n.on_cmd_lost();
    n.on_cmd_connected(now);
    let out = n.take_cmd_output();
    assert!(contains(&out, &set_nx), "{}", String::from_utf8_lossy(&out));
    // Before the room is loaded again, and before anything the hub posts.
    let load = command(&[b"GET", &keys.room_seq(ROOM)]);
    let at = |needle: &[u8]| out.windows(needle.len()).position(|w| w == needle);
    assert!(at(&set_nx) < at(&load), "{}", String::from_utf8_lossy(&out));
    // A room this node never saw a line of asks for nothing.
    let mut fresh = node(now);
    fresh.watch(ROOM, true, now);
    fresh.on_cmd_connected(now);
    let seq_key = keys.room_seq(ROOM);
    let set_seq = &command(&[b"SET", &seq_key])[4..];
    assert!(!contains(&fresh.take_cmd_output(), set_seq));
}

#[test]
fn a_new_epoch_means_redis_lost_its_data_and_each_room_announces_a_gap() {
    let now = Instant::now();
    let room: Rc<str> = Rc::from(ROOM);
    // Same epoch after a reconnect: nothing was lost.
    let mut n = live_node(5, now);
    n.on_cmd_lost();
    let _ = n.take_to_hub();
    n.on_cmd_connected(now);
    hello_replies(
        &mut n,
        "E1",
        &format!("+OK\r\n{PRESENCE}{}", load_replies(7)),
        now,
    );
    let news = n.take_to_hub();
    assert!(
        !news.iter().any(|m| matches!(m, ToHub::Gap { .. })),
        "{news:?}"
    );
    assert_eq!(n.stats.gaps_lost, 0);

    // Another epoch: Redis came back empty; the room says so after its load.
    n.on_cmd_lost();
    let _ = n.take_to_hub();
    n.on_cmd_connected(now);
    hello_replies(
        &mut n,
        "E2",
        &format!("+OK\r\n{PRESENCE}{}", load_replies(7)),
        now,
    );
    let news = n.take_to_hub();
    let synced = news
        .iter()
        .position(|m| matches!(m, ToHub::Synced { .. }))
        .expect("synced");
    assert_eq!(news.get(synced + 1), Some(&ToHub::Gap { room }), "{news:?}");
    assert!(news.contains(&ToHub::Epoch("E2".into())));
    assert_eq!(n.stats.gaps_lost, 1);

    // Announced once: the next reconnect under the same epoch is quiet.
    n.on_cmd_lost();
    n.on_cmd_connected(now);
    hello_replies(
        &mut n,
        "E2",
        &format!("+OK\r\n{PRESENCE}{}", load_replies(7)),
        now,
    );
    let news = n.take_to_hub();
    assert!(
        !news.iter().any(|m| matches!(m, ToHub::Gap { .. })),
        "{news:?}"
    );
}
