//! Several nodes joined through a real `redis-server` (started by the tests
//! on a free loopback port): one chat, whichever node serves whom.

mod common;
#[path = "common/redis.rs"]
mod redis;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Client, start_with};
use multiuserchat::config::RedisTarget;
use multiuserchat::server::BoundAddrs;
use serde_json::{Value, json};

/// A node of the cluster on `redis`, with id `id`.
fn node(redis: &redis::RedisServer, id: &str) -> BoundAddrs {
    let target = RedisTarget::parse(&format!("redis://127.0.0.1:{}", redis.port())).expect("url");
    let id = id.to_owned();
    let addrs = start_with(move |c| {
        c.redis = Some(target);
        c.node_id = id;
    });
    wait_up(addrs.http);
    addrs
}

/// Waits until the node at `http` says its link to Redis is up.
fn wait_up(http: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = common::binary::try_stats(http);
        if v.as_ref().is_some_and(|v| v["cluster"]["up"] == true) {
            return;
        }
        assert!(Instant::now() < deadline, "node never connected to Redis");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Joins with the rooms feature; returns the client once its lobby is loaded.
fn join_rooms(addr: SocketAddr, name: &str) -> Client {
    let mut c = Client::connect(addr);
    c.send(&json!({"type":"join","sender":name,"features":["rooms","presence"]}));
    c.expect_type("info");
    c.recv_until("room_joined", |v| v["type"] == "room_joined");
    c
}

fn chat_texts(c: &mut Client, n: usize) -> Vec<(String, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let v: Value = c.recv();
        if v["type"] == "message" && v["sender"] != "Server" {
            got.push((
                v["sender"].as_str().unwrap_or_default().to_owned(),
                v["message"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    got
}

#[test]
fn a_line_said_on_one_node_reaches_users_on_another() {
    let redis = redis::RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = join_rooms(a.tcp, "alice");
    let mut bob = join_rooms(b.tcp, "bob");
    alice.say("hello from a");
    let got = chat_texts(&mut bob, 1);
    assert_eq!(got, vec![("alice".to_owned(), "hello from a".to_owned())]);
    // The sender sees its own line come back, numbered by the cluster.
    let own = alice.recv_until("own line", |v| v["type"] == "message");
    assert_eq!(own["message"], "hello from a");
    assert_eq!(own["seq"], 1);
}

#[test]
fn a_name_is_unique_across_nodes() {
    let redis = redis::RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let _alice = join_rooms(a.tcp, "Alice");
    let mut other = Client::connect(b.tcp);
    other.send(&json!({"type":"join","sender":"ALICE"}));
    let v = other.expect_type("error");
    assert_eq!(v["code"], "name_taken");
    // A free name still works on the same connection.
    other.send(&json!({"type":"join","sender":"carol"}));
    other.expect_type("info");
}

#[test]
fn a_name_is_free_again_once_its_user_leaves() {
    let redis = redis::RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let alice = join_rooms(a.tcp, "alice");
    drop(alice);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = Client::connect(b.tcp);
        c.send(&json!({"type":"join","sender":"alice"}));
        let v = c.recv_until("join answer", |v| {
            v["type"] == "info" || v["type"] == "error"
        });
        if v["type"] == "info" {
            break;
        }
        assert!(Instant::now() < deadline, "the name was never released");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn private_messages_cross_nodes_and_unknown_names_are_refused() {
    let redis = redis::RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = join_rooms(a.tcp, "alice");
    let mut bob = join_rooms(b.tcp, "Bob");
    alice.send(&json!({"type":"private","sender":"alice","to":"bob","message":"psst"}));
    let got = bob.recv_until("private", |v| v["type"] == "private");
    assert_eq!(got["sender"], "alice");
    assert_eq!(got["message"], "psst");
    let echo = alice.recv_until("private_sent", |v| v["type"] == "private_sent");
    assert_eq!(
        echo["to_user"], "Bob",
        "the echo names the recipient as they spell it"
    );
    alice.send(&json!({"type":"private","sender":"alice","to":"nobody","message":"x"}));
    let e = alice.recv_until("error", |v| v["type"] == "error");
    assert_eq!(e["code"], "unknown_user");
}

#[test]
fn two_senders_on_two_nodes_and_a_third_node_see_one_order() {
    const EACH: usize = 200;
    let redis = redis::RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let c = node(&redis, "c");
    let mut s1 = join_rooms(a.tcp, "s1");
    let mut s2 = join_rooms(b.tcp, "s2");
    let mut r1 = join_rooms(c.tcp, "r1");
    let mut r2 = join_rooms(a.tcp, "r2");
    let t1 = std::thread::spawn(move || {
        for i in 0..EACH {
            s1.say(&format!("one {i}"));
        }
        chat_texts(&mut s1, 2 * EACH)
    });
    let t2 = std::thread::spawn(move || {
        for i in 0..EACH {
            s2.say(&format!("two {i}"));
        }
        chat_texts(&mut s2, 2 * EACH)
    });
    let o1 = chat_texts(&mut r1, 2 * EACH);
    let o2 = chat_texts(&mut r2, 2 * EACH);
    let o3 = t1.join().expect("s1");
    let o4 = t2.join().expect("s2");
    assert_eq!(o1, o2, "two receivers on two nodes saw different orders");
    assert_eq!(o1, o3);
    assert_eq!(o1, o4);
    // Per-sender order kept too.
    let ones: Vec<&String> = o1
        .iter()
        .filter(|(s, _)| s == "s1")
        .map(|(_, t)| t)
        .collect();
    let want: Vec<String> = (0..EACH).map(|i| format!("one {i}")).collect();
    assert_eq!(ones, want.iter().collect::<Vec<_>>());
}

#[test]
fn rooms_topics_and_history_are_shared() {
    let redis = redis::RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = join_rooms(a.tcp, "alice");
    alice.send(&json!({"type":"room_join","room":"#dev"}));
    alice.recv_until("room_joined", |v| {
        v["type"] == "room_joined" && v["room"] == "#dev"
    });
    for i in 0..5 {
        alice.send(&json!({"type":"message","room":"#dev","message":format!("line {i}")}));
    }
    alice.send(&json!({"type":"topic","room":"#dev","topic":"build things"}));
    alice.recv_until("topic", |v| {
        v["type"] == "topic" && v["topic"] == "build things"
    });
    // A user on the other node joining later gets the room's history and topic.
    let mut bob = join_rooms(b.tcp, "bob");
    bob.send(&json!({"type":"room_join","room":"#dev"}));
    let joined = bob.recv_until("room_joined", |v| {
        v["type"] == "room_joined" && v["room"] == "#dev"
    });
    assert_eq!(joined["topic"], "build things");
    assert_eq!(joined["seq"], 5);
    let h = bob.recv_until("history", |v| v["type"] == "history");
    let texts: Vec<&str> = h["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["message"].as_str())
        .collect();
    assert_eq!(
        texts,
        vec!["line 0", "line 1", "line 2", "line 3", "line 4"]
    );
}

#[test]
fn user_lists_and_presence_span_the_nodes() {
    let redis = redis::RedisServer::start();
    let a = node(&redis, "a");
    let b = node(&redis, "b");
    let mut alice = join_rooms(a.tcp, "alice");
    let mut bob = join_rooms(b.tcp, "bob");
    // alice hears of bob's arrival on the other node as a presence delta.
    let p = alice.recv_until("bob's presence", |v| {
        v["type"] == "presence"
            && v["joined"]
                .as_array()
                .is_some_and(|j| j.iter().any(|n| n == "bob"))
    });
    assert_eq!(p["count"], 2);
    // A full list on request names both, sorted.
    bob.send(&json!({"type":"who"}));
    let list = bob.recv_until("user list", |v| v["type"] == "user_list");
    assert_eq!(list["users"], json!(["alice", "bob"]));
    // A legacy client (full lists) on node b sees both too.
    let mut carol = Client::connect(b.tcp);
    carol.send(&json!({"type":"join","sender":"carol"}));
    let l = carol.recv_until("list with alice", |v| {
        v["type"] == "user_list"
            && v["users"]
                .as_array()
                .is_some_and(|u| u.iter().any(|n| n == "alice"))
    });
    assert_eq!(l["users"], json!(["alice", "bob", "carol"]));
    // bob leaves: alice sees it.
    drop(bob);
    alice.recv_until("bob left", |v| {
        v["type"] == "presence"
            && v["left"]
                .as_array()
                .is_some_and(|j| j.iter().any(|n| n == "bob"))
    });
}
