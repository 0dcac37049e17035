//! Descriptor exhaustion: the real binary under a low `RLIMIT_NOFILE`. Clients
//! beyond what the descriptors allow are refused at once (a `server_full` line on
//! the chat port, a 503 on the WebSocket and HTTP ports) instead of hanging in
//! the backlog; users already in keep chatting; service resumes as soon as
//! descriptors are free again; nothing leaks.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::binary::{ServerProcess, Spawn, wait_for};
use common::wsraw::{answer, connect, upgrade_request};
use common::{Client, WAIT};
use serde_json::{Value, json};

/// Descriptor limit of the server process: a few for stdio, epoll, listeners
/// and the reserve, the rest for clients.
const NOFILE: u64 = 40;

enum Joined {
    In(Client),
    Refused(Value),
}

/// Connects and joins; a refused client must get `server_full` and then EOF.
fn try_join(addr: SocketAddr, name: &str) -> Joined {
    let mut c = Client::connect(addr);
    c.send(&json!({"type":"join","sender":name}));
    let v = c.recv_until("welcome or refusal", |v| {
        v["type"] == "info" || v["type"] == "error"
    });
    if v["type"] == "info" {
        return Joined::In(c);
    }
    assert_eq!(v["code"], "server_full", "unexpected refusal {v}");
    assert!(c.closed(), "a refused client must be closed");
    Joined::Refused(v)
}

fn chat_from(c: &mut Client, from: &str, text: &str) {
    c.recv_until(&format!("{from}: {text}"), |v| {
        v["type"] == "message" && v["sender"] == from && v["message"] == text
    });
}

#[test]
fn out_of_descriptors_refuses_cleanly_keeps_users_and_resumes() {
    let mut server = ServerProcess::start(Spawn {
        nofile: Some(NOFILE),
        ..Spawn::default()
    });
    let base_fds = server.fd_count();
    assert!(base_fds > 3 && (base_fds as u64) < NOFILE / 2, "{base_fds}");

    // Fill every descriptor with joined users; the first refusal must come
    // promptly (not after a backlog timeout) and carry `server_full`.
    let mut users = Vec::new();
    let mut first_refusal = None;
    for i in 0..NOFILE {
        let started = Instant::now();
        match try_join(server.tcp, &format!("u{i}")) {
            Joined::In(c) => users.push(c),
            Joined::Refused(v) => {
                first_refusal = Some((v, started.elapsed()));
                break;
            }
        }
    }
    let (refusal, took) = first_refusal.expect("never ran out of descriptors");
    eprintln!(
        "base fds {base_fds}, limit {NOFILE}: {} users in, refusal after {took:?}: {refusal}",
        users.len()
    );
    assert!(users.len() as u64 >= NOFILE - base_fds as u64 - 2);
    assert!(took < Duration::from_secs(2), "refusal took {took:?}");
    assert!(refusal["timestamp"].as_str().is_some_and(|t| t.len() == 8));

    // Every port refuses while exhausted; none of them hangs.
    for i in 0..5 {
        assert!(matches!(
            try_join(server.tcp, &format!("late{i}")),
            Joined::Refused(_)
        ));
    }
    let (ws, _) = answer(connect(server.ws), upgrade_request("/", "").as_bytes());
    assert!(ws.starts_with("HTTP/1.1 503"), "{ws}");
    let (http, _) = answer(
        connect(server.http),
        b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    assert!(http.starts_with("HTTP/1.1 503"), "{http}");

    // The users already in keep chatting, both ways.
    let last_name = format!("u{}", users.len() - 1);
    let (first, rest) = users.split_first_mut().expect("users");
    first.say("still here");
    for c in rest.iter_mut() {
        chat_from(c, "u0", "still here");
    }
    let last = rest.last_mut().expect("two users");
    last.say("me too");
    chat_from(first, &last_name, "me too");

    // Free five descriptors: newcomers get in again and are heard.
    users.truncate(users.len() - 5);
    let mut newcomers = Vec::new();
    for i in 0..5 {
        let name = format!("back{i}");
        let mut joined = None;
        // The server notices the closes on its next turn; retry briefly.
        assert!(
            wait_for(WAIT, || match try_join(server.tcp, &name) {
                Joined::In(c) => {
                    joined = Some(c);
                    true
                }
                Joined::Refused(_) => false,
            }),
            "{name} never got in after descriptors were freed"
        );
        newcomers.extend(joined);
    }
    newcomers[4].say("hello again");
    chat_from(&mut users[0], "back4", "hello again");

    // The refusals were counted and nothing leaked: once everyone is gone the
    // descriptor count is back where it started and the user list is empty.
    drop(newcomers);
    drop(users);
    let mut stats = Value::Null;
    assert!(
        wait_for(WAIT, || {
            stats = server.try_stats().unwrap_or(Value::Null);
            stats["users"] == 0
        }),
        "users left behind: {stats}"
    );
    assert!(stats["refused"].as_u64().is_some_and(|n| n >= 8), "{stats}");
    assert!(
        wait_for(WAIT, || server.fd_count() == base_fds),
        "descriptors: {} after, {base_fds} before",
        server.fd_count()
    );
    assert!(server.alive());
}
