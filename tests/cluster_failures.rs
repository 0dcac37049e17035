//! Cluster nodes (the real binary, `--redis … --node-id …`) and a real
//! `redis-server`, both started here on loopback, under failures: Redis
//! killed and restarted empty, subscriptions killed by Redis, a node killed.
//! Each test kills only the processes it started, by their PID, and is
//! bounded in time.

mod common;
#[path = "common/redis.rs"]
mod redis;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::binary::{ServerProcess, Spawn, try_stats, wait_for};
use redis::RedisServer;
use serde_json::{Value, json};

/// How long a node may take to reach Redis after it starts.
const UP_WAIT: Duration = Duration::from_secs(10);

/// The words of the notice a node gives when room lines were lost.
const LOST: &str = "could not be delivered";

// ---- nodes ------------------------------------------------------------------

/// Starts a node of the cluster on `redis` with id `id` (and `extra`
/// flags); its log goes to this test's output, prefixed with its id. Waits
/// until it is connected to Redis.
fn start_node(redis: &RedisServer, id: &str, extra: &[&str]) -> ServerProcess {
    let url = format!("redis://127.0.0.1:{}", redis.port());
    let mut args = vec!["--redis", &url, "--node-id", id, "--log-level", "info"];
    args.extend_from_slice(extra);
    let mut node = ServerProcess::start(Spawn {
        args: &args,
        stderr: true,
        ..Spawn::default()
    });
    if let Some(err) = node.take_stderr() {
        let id = id.to_owned();
        thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[node {id}] {line}");
            }
        });
    }
    assert!(
        wait_for(UP_WAIT, || cluster(&node)["up"] == true),
        "node {id} never connected to Redis"
    );
    node
}

/// The node's `/stats` `cluster` object (`null` when it cannot be read).
fn cluster(node: &ServerProcess) -> Value {
    try_stats(node.http).map_or(Value::Null, |v| v["cluster"].clone())
}

/// The node's users online, from `/stats`.
fn users(node: &ServerProcess) -> u64 {
    try_stats(node.http).map_or(0, |v| v["users"].as_u64().unwrap_or(0))
}

// ---- clients ----------------------------------------------------------------

/// A JSON-lines client whose every received object is kept (with the
/// instant it arrived) by a reader thread.
struct Peer {
    name: String,
    writer: TcpStream,
    got: Arc<Mutex<Vec<(Instant, Value)>>>,
    closed: Arc<AtomicBool>,
}

impl Peer {
    /// Connects and sends a join with the rooms feature; does not wait.
    fn connect(addr: SocketAddr, name: &str) -> Peer {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut reader = stream.try_clone().expect("clone");
        let got = Arc::new(Mutex::new(Vec::new()));
        let closed = Arc::new(AtomicBool::new(false));
        let (g, c) = (got.clone(), closed.clone());
        thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                while let Some(end) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    let v: Value = serde_json::from_slice(&line).unwrap_or_else(|e| {
                        panic!("bad JSON {:?}: {e}", String::from_utf8_lossy(&line))
                    });
                    g.lock().expect("lock").push((Instant::now(), v));
                }
            }
            c.store(true, Ordering::SeqCst);
        });
        let mut p = Peer {
            name: name.to_owned(),
            writer: stream,
            got,
            closed,
        };
        p.send(&json!({"type":"join","sender":name,"features":["rooms"]}));
        p
    }

    /// Connects and joins as `name`; returns once its lobby is joined.
    fn join(addr: SocketAddr, name: &str) -> Peer {
        let p = Peer::connect(addr, name);
        p.wait(&format!("{name}'s room_joined"), common::WAIT, |v| {
            v["type"] == "room_joined"
        });
        p
    }

    fn send(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).expect("write");
    }

    fn say(&mut self, text: &str) {
        self.send(&json!({"type":"message","message":text}));
    }

    /// The first received object satisfying `pred`, waiting up to `limit`.
    fn find(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<(Instant, Value)> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(hit) = self
                .got
                .lock()
                .expect("lock")
                .iter()
                .find(|(_, v)| pred(v))
                .cloned()
            {
                return Some(hit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Like [`Peer::find`], failing the test when nothing comes.
    fn wait(&self, what: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> (Instant, Value) {
        self.find(limit, pred)
            .unwrap_or_else(|| panic!("{}: never received {what}", self.name))
    }

    /// Everything received so far.
    fn received(&self) -> Vec<(Instant, Value)> {
        self.got.lock().expect("lock").clone()
    }

    /// Chat lines (not the server's) received so far: (when, sender, text).
    fn chat(&self) -> Vec<(Instant, String, String)> {
        self.received()
            .into_iter()
            .filter(|(_, v)| v["type"] == "message" && v["sender"] != "Server")
            .map(|(t, v)| {
                let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                (t, s("sender"), s("message"))
            })
            .collect()
    }

    /// Server notices received so far that say lines were lost.
    fn lost_notices(&self) -> Vec<String> {
        self.received()
            .into_iter()
            .filter(|(_, v)| v["type"] == "message" && v["sender"] == "Server")
            .filter_map(|(_, v)| v["message"].as_str().map(str::to_owned))
            .filter(|m| m.contains(LOST))
            .collect()
    }

    /// True when the server closed this client's connection.
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(Shutdown::Both);
    }
}

/// The number `i` of a line `"{tag} {i}…"`, if `text` is one of `tag`'s.
fn index_of(text: &str, tag: &str) -> Option<u64> {
    let rest = text.strip_prefix(tag)?.strip_prefix(' ')?;
    rest.split(' ').next()?.parse().ok()
}

/// The indices of `from`'s lines tagged `tag` as `peer` received them, in
/// arrival order; fails the test on a duplicate or an out-of-order line.
fn checked_indices(peer: &Peer, from: &str, tag: &str) -> Vec<u64> {
    let got: Vec<u64> = peer
        .chat()
        .into_iter()
        .filter(|(_, s, _)| s == from)
        .filter_map(|(_, _, t)| index_of(&t, tag))
        .collect();
    let mut seen = HashSet::new();
    for (k, i) in got.iter().enumerate() {
        assert!(
            seen.insert(*i),
            "{}: line {tag} {i} delivered twice",
            peer.name
        );
        if k > 0 {
            assert!(
                got[k - 1] < *i,
                "{}: {from}'s lines out of order: {} before {i}",
                peer.name,
                got[k - 1]
            );
        }
    }
    got
}

/// Indices in `0..sent` missing from `got`.
fn missing(got: &[u64], sent: u64) -> Vec<u64> {
    let have: HashSet<u64> = got.iter().copied().collect();
    (0..sent).filter(|i| !have.contains(i)).collect()
}

/// Compresses sorted indices into ranges for printing.
fn ranges(v: &[u64]) -> String {
    let mut out = Vec::new();
    let mut it = v.iter().copied().peekable();
    while let Some(start) = it.next() {
        let mut end = start;
        while it.peek() == Some(&(end + 1)) {
            end += 1;
            it.next();
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    format!("[{}]", out.join(","))
}

/// A thread that says `"{tag} {i}{pad}"` as `peer` every `every`, from
/// `i = 0` until `stop`; `next` holds the next index to be said.
struct Sender {
    next: Arc<AtomicU64>,
    handle: JoinHandle<()>,
}

fn spawn_sender(
    peer: &Peer,
    tag: &str,
    pad: usize,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> Sender {
    let mut w = peer.writer.try_clone().expect("clone");
    let next = Arc::new(AtomicU64::new(0));
    let n = next.clone();
    let tag = tag.to_owned();
    let padding = " ".to_owned() + &"x".repeat(pad);
    let handle = thread::spawn(move || {
        let mut i = 0u64;
        let mut at = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let text = if pad > 0 {
                format!("{tag} {i}{padding}")
            } else {
                format!("{tag} {i}")
            };
            let mut line = json!({"type":"message","message":text}).to_string();
            line.push('\n');
            w.write_all(line.as_bytes()).expect("sender write");
            i += 1;
            n.store(i, Ordering::SeqCst);
            at += every;
            if let Some(d) = at.checked_duration_since(Instant::now()) {
                thread::sleep(d);
            }
        }
    });
    Sender { next, handle }
}

impl Sender {
    /// Lines said so far.
    fn sent(&self) -> u64 {
        self.next.load(Ordering::SeqCst)
    }

    /// Waits for the thread (once its `stop` is set); returns the lines said.
    fn finish(self) -> u64 {
        self.handle.join().expect("sender thread");
        self.next.load(Ordering::SeqCst)
    }
}

// ---- tests ------------------------------------------------------------------

/// Redis dies (SIGKILL) under traffic and comes back empty: each node goes
/// on serving its own users, and cross-node chat resumes soon after Redis
/// is back; nothing is delivered twice or out of order, and what was lost
/// is announced.
#[test]
fn redis_killed_under_traffic_local_chat_goes_on_and_cross_node_chat_resumes() {
    let mut redis = RedisServer::start();
    let a = start_node(&redis, "a", &[]);
    let b = start_node(&redis, "b", &[]);
    let mut sa = Peer::join(a.tcp, "sa");
    let ra = Peer::join(a.tcp, "ra");
    let mut sb = Peer::join(b.tcp, "sb");
    let rb = Peer::join(b.tcp, "rb");

    let stop = Arc::new(AtomicBool::new(false));
    let tx_a = spawn_sender(&sa, "a", 0, Duration::from_millis(20), stop.clone());
    let tx_b = spawn_sender(&sb, "b", 0, Duration::from_millis(100), stop.clone());
    let is_line = |v: &Value, from: &str, tag: &str, min: u64| {
        v["type"] == "message"
            && v["sender"] == from
            && v["message"]
                .as_str()
                .and_then(|t| index_of(t, tag))
                .is_some_and(|i| i >= min)
    };
    rb.wait("a line from a", common::WAIT, |v| is_line(v, "sa", "a", 0));
    ra.wait("a line from b", common::WAIT, |v| is_line(v, "sb", "b", 0));
    thread::sleep(Duration::from_millis(500));

    let t_kill = Instant::now();
    redis.kill9();
    assert!(
        wait_for(common::WAIT, || cluster(&a)["up"] == false
            && cluster(&b)["up"] == false),
        "the nodes never noticed that Redis died"
    );
    // Local chat goes on: a's lines said from now on reach a's users.
    let mark = tx_a.sent();
    let (t_local, local) = ra.wait("a line said while Redis is down", common::WAIT, |v| {
        is_line(v, "sa", "a", mark + 5)
    });
    assert!(local["seq"].is_u64(), "numbered locally: {local}");
    eprintln!(
        "local delivery on a while Redis is down: line {} at {:?} after the kill",
        mark + 5,
        t_local - t_kill
    );
    thread::sleep(Duration::from_millis(1500).saturating_sub(t_kill.elapsed()));

    redis.restart();
    let t_back = Instant::now();
    let (mark_a, mark_b) = (tx_a.sent(), tx_b.sent());
    let resume = Duration::from_secs(5);
    let (at_b, _) = rb.wait("a's line after the restart", resume, |v| {
        is_line(v, "sa", "a", mark_a)
    });
    let (at_a, _) = ra.wait("b's line after the restart", resume, |v| {
        is_line(v, "sb", "b", mark_b)
    });
    eprintln!(
        "Redis down for {:?}; first cross-node delivery after the restart: a→b {:?}, b→a {:?}",
        t_back - t_kill,
        at_b - t_back,
        at_a - t_back
    );
    eprintln!("cluster a: {}\ncluster b: {}", cluster(&a), cluster(&b));

    thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::SeqCst);
    let (sent_a, sent_b) = (tx_a.finish(), tx_b.finish());
    // New lines still cross both ways.
    sa.say("a final");
    sb.say("b final");
    let is_final = |v: &Value, text: &str| v["type"] == "message" && v["message"] == text;
    rb.wait("a's final line", common::WAIT, |v| is_final(v, "a final"));
    ra.wait("b's final line", common::WAIT, |v| is_final(v, "b final"));
    sa.wait("its own final line", common::WAIT, |v| {
        is_final(v, "a final")
    });
    sb.wait("its own final line", common::WAIT, |v| {
        is_final(v, "b final")
    });

    // Nobody was disconnected.
    for p in [&sa, &ra, &sb, &rb] {
        assert!(!p.is_closed(), "{} was disconnected", p.name);
    }
    assert_eq!(users(&a), 2);
    assert_eq!(users(&b), 2);

    // Each client: no line twice, each sender's lines in order; lines that
    // never arrived were announced.
    for p in [&sa, &ra, &sb, &rb] {
        for (from, tag, sent) in [("sa", "a", sent_a), ("sb", "b", sent_b)] {
            let got = checked_indices(p, from, tag);
            let lost = missing(&got, sent);
            let notices = p.lost_notices();
            eprintln!(
                "{}: {} of {sent} {tag}-lines, missing {}; notices: {notices:?}",
                p.name,
                got.len(),
                ranges(&lost)
            );
            assert!(
                lost.is_empty() || !notices.is_empty(),
                "{}: {tag}-lines {} never arrived and were not announced",
                p.name,
                ranges(&lost)
            );
        }
    }
}

/// Waits until `peer` has `from`'s line `tag {last}`; then checks that it
/// got every one of `0..=last` exactly once, in order (or, with `allow_gap`,
/// that the missing ones were announced). Returns the missing indices.
fn expect_all(peer: &Peer, from: &str, tag: &str, last: u64, allow_gap: bool) -> Vec<u64> {
    let got_last = peer
        .find(Duration::from_secs(10), |v| {
            v["type"] == "message"
                && v["sender"] == from
                && v["message"].as_str().and_then(|t| index_of(t, tag)) == Some(last)
        })
        .is_some();
    let got = checked_indices(peer, from, tag);
    let lost = missing(&got, last + 1);
    let notices = peer.lost_notices();
    eprintln!(
        "{}: {} of {} {tag}-lines, missing {}; notices: {notices:?}",
        peer.name,
        got.len(),
        last + 1,
        ranges(&lost)
    );
    assert!(got_last, "{}: never received {tag} {last}", peer.name);
    if allow_gap {
        assert!(
            lost.is_empty() || !notices.is_empty(),
            "{}: {tag}-lines {} never arrived and were not announced",
            peer.name,
            ranges(&lost)
        );
    } else {
        assert!(lost.is_empty(), "{}: lost {}", peer.name, ranges(&lost));
    }
    lost
}

/// Redis drops every subscription (`CLIENT KILL TYPE pubsub`) while a user
/// talks: the nodes subscribe again, and the lines published meanwhile are
/// read from the room's stream: every user gets every line once, in order.
#[test]
fn killed_subscriptions_are_renewed_and_the_gap_is_filled() {
    let redis = RedisServer::start();
    let a = start_node(&redis, "a", &[]);
    let b = start_node(&redis, "b", &[]);
    let sa = Peer::join(a.tcp, "sa");
    let ra = Peer::join(a.tcp, "ra");
    let rb = Peer::join(b.tcp, "rb");
    let stop = Arc::new(AtomicBool::new(false));
    let tx = spawn_sender(&sa, "a", 0, Duration::from_millis(10), stop.clone());
    rb.wait("a first line", common::WAIT, |v| v["type"] == "message");
    thread::sleep(Duration::from_millis(300));
    for round in 0..3 {
        let mark = tx.sent();
        let t_kill = Instant::now();
        let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]);
        eprintln!("round {round}: CLIENT KILL TYPE pubsub → {killed} (after line {mark})");
        assert_eq!(killed, ":2", "both nodes' subscriptions were killed");
        let (t, _) = rb.wait("a line said after the kill", common::WAIT, |v| {
            v["type"] == "message"
                && v["message"]
                    .as_str()
                    .and_then(|t| index_of(t, "a"))
                    .is_some_and(|i| i > mark)
        });
        eprintln!(
            "round {round}: b delivers again {:?} after the kill",
            t - t_kill
        );
        thread::sleep(Duration::from_millis(300));
    }
    stop.store(true, Ordering::SeqCst);
    let last = tx.finish() - 1;
    for p in [&sa, &ra, &rb] {
        expect_all(p, "sa", "a", last, false);
    }
    eprintln!("cluster a: {}\ncluster b: {}", cluster(&a), cluster(&b));
    let filled = |n: &ServerProcess| cluster(n)["gaps_filled"].as_u64().unwrap_or(0);
    eprintln!("gaps filled: a {}, b {}", filled(&a), filled(&b));
}

/// The ids of Redis's clients in pub/sub mode (`CLIENT LIST TYPE pubsub`).
fn pubsub_clients(redis: &RedisServer) -> Vec<String> {
    let list = redis.command(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    list.lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("id=")))
        .map(str::to_owned)
        .collect()
}

/// Redis drops subscribers that fall behind (`client-output-buffer-limit
/// pubsub 1kb 512 1`); a burst of large lines makes it drop the nodes'
/// subscriptions. The nodes notice, subscribe again, and their users get
/// every line (read from the stream) or a notice that some were lost;
/// afterwards lines flow again.
#[test]
fn a_subscription_dropped_for_its_output_limit_recovers() {
    const LINES: u64 = 200;
    let redis = RedisServer::start();
    assert_eq!(
        redis.command(&[
            "CONFIG",
            "SET",
            "client-output-buffer-limit",
            "pubsub 1kb 512 1"
        ]),
        "+OK"
    );
    let a = start_node(&redis, "a", &[]);
    let b = start_node(&redis, "b", &[]);
    let mut sa = Peer::join(a.tcp, "sa");
    let ra = Peer::join(a.tcp, "ra");
    let rb = Peer::join(b.tcp, "rb");
    let subscribers_before = pubsub_clients(&redis);
    // The burst: 200 lines of about 2 KB, written at once.
    let pad = "x".repeat(2000);
    let mut burst = String::new();
    for i in 0..LINES {
        burst.push_str(&json!({"type":"message","message":format!("big {i} {pad}")}).to_string());
        burst.push('\n');
    }
    let t0 = Instant::now();
    sa.writer.write_all(burst.as_bytes()).expect("burst");
    let mut lost_b = Vec::new();
    for p in [&sa, &ra, &rb] {
        let lost = expect_all(p, "sa", "big", LINES - 1, true);
        if p.name == "rb" {
            lost_b = lost;
        }
    }
    eprintln!("burst of {LINES} lines settled in {:?}", t0.elapsed());
    // The nodes' subscription connections were dropped and made again.
    let subscribers_after = pubsub_clients(&redis);
    eprintln!(
        "subscription connections: before {subscribers_before:?}, after {subscribers_after:?}"
    );
    assert_eq!(subscribers_after.len(), 2, "both nodes subscribed again");
    assert!(
        subscribers_after
            .iter()
            .all(|id| !subscribers_before.contains(id)),
        "Redis did not drop the subscriptions (the burst was too small?)"
    );
    eprintln!("cluster a: {}\ncluster b: {}", cluster(&a), cluster(&b));
    eprintln!("b's user missed {} line(s)", lost_b.len());
    // Lines flow again, both ways.
    sa.say("after the burst");
    let mut sb = Peer::join(b.tcp, "sb");
    sb.say("from b after the burst");
    let is = |v: &Value, t: &str| v["type"] == "message" && v["message"] == t;
    rb.wait("a line after the burst", common::WAIT, |v| {
        is(v, "after the burst")
    });
    ra.wait("b's line after the burst", common::WAIT, |v| {
        is(v, "from b after the burst")
    });
    for p in [&sa, &ra, &rb, &sb] {
        assert!(!p.is_closed(), "{} was disconnected", p.name);
    }
}

/// Redis restarts empty while the nodes run (one of them slow to notice):
/// names are claimed again, and room lines said after the restart reach
/// the other node, also the ones said before that node was back.
#[test]
fn redis_restarted_empty_names_are_claimed_again_and_rooms_go_on() {
    let mut redis = RedisServer::start();
    let a = start_node(&redis, "a", &[]);
    let b = start_node(&redis, "b", &[]);
    let mut alice = Peer::join(a.tcp, "alice");
    let mut bob = Peer::join(b.tcp, "bob");
    for i in 0..5 {
        alice.say(&format!("before {i}"));
    }
    let is = |v: &Value, t: &str| v["type"] == "message" && v["message"] == t;
    bob.wait("alice's lines", common::WAIT, |v| is(v, "before 4"));

    // b is stopped while Redis restarts, so a is back (and talks) first.
    redis.kill9();
    assert!(wait_for(common::WAIT, || cluster(&a)["up"] == false));
    b.signal(libc::SIGSTOP);
    redis.restart();
    let t_back = Instant::now();
    let connects_a = 2;
    assert!(
        wait_for(common::WAIT, || cluster(&a)["connects"] == connects_a
            && cluster(&a)["up"] == true),
        "a did not reconnect"
    );
    eprintln!("a reconnected {:?} after the restart", t_back.elapsed());
    alice.say("after 0");
    alice.wait("its own line after the restart", common::WAIT, |v| {
        is(v, "after 0")
    });
    b.signal(libc::SIGCONT);
    let (t, _) = bob.wait("alice's line said before b was back", common::WAIT, |v| {
        is(v, "after 0")
    });
    eprintln!("b delivered it {:?} after the restart", t - t_back);
    assert!(wait_for(common::WAIT, || cluster(&b)["up"] == true));

    // Names were claimed again on the new Redis.
    for (node, name) in [(&b, "alice"), (&a, "bob")] {
        let other = Peer::connect(node.tcp, name);
        let (_, v) = other.wait("the join's answer", common::WAIT, |v| {
            v["type"] == "error" || v["type"] == "info"
        });
        assert_eq!(v["code"], "name_taken", "{name} was not claimed again: {v}");
    }
    // Rooms go on, both ways, without loss or repeats.
    alice.say("after 1");
    bob.say("from bob");
    bob.wait("alice's next line", common::WAIT, |v| is(v, "after 1"));
    alice.wait("bob's line", common::WAIT, |v| is(v, "from bob"));
    for p in [&alice, &bob] {
        let texts: Vec<String> = p.chat().into_iter().map(|(_, _, t)| t).collect();
        let want = [
            "before 0", "before 1", "before 2", "before 3", "before 4", "after 0",
        ];
        assert_eq!(&texts[..6], &want[..], "{}: {texts:?}", p.name);
        let unique: HashSet<&String> = texts.iter().collect();
        assert_eq!(
            unique.len(),
            texts.len(),
            "{}: a line twice: {texts:?}",
            p.name
        );
        eprintln!("{}: {texts:?}; notices {:?}", p.name, p.lost_notices());
    }
}

/// A node killed with SIGKILL releases nothing: its users' names stay
/// claimed until the claims expire, `--presence-ttl` seconds later.
#[test]
fn a_killed_nodes_names_are_free_again_after_the_presence_ttl() {
    let redis = RedisServer::start();
    let ttl = ["--presence-ttl", "2"];
    let a = start_node(&redis, "a", &ttl);
    let mut b = start_node(&redis, "b", &ttl);
    let _bob = Peer::join(b.tcp, "bob");
    let try_join = |name: &str| {
        let p = Peer::connect(a.tcp, name);
        let (_, v) = p.wait("the join's answer", common::WAIT, |v| {
            v["type"] == "error" || v["type"] == "info"
        });
        v["type"] == "info"
    };
    // Held while b runs, also past the claim's first expiry (refreshed).
    assert!(!try_join("bob"), "bob's name is free while b runs");
    thread::sleep(Duration::from_millis(2500));
    assert!(!try_join("bob"), "bob's claim was not refreshed");

    b.kill();
    let t_kill = Instant::now();
    assert!(
        wait_for(Duration::from_secs(5), || try_join("bob")),
        "bob's name never became free"
    );
    let freed = t_kill.elapsed();
    eprintln!("bob's name free on a {freed:?} after b was killed");
    assert!(freed < Duration::from_millis(3500), "took {freed:?}");
}

/// Two users take the same name on two nodes while Redis is away: when it
/// comes back, one claim reaches it first; the other user is told why and
/// disconnected, and the name stays unique.
#[test]
fn a_name_taken_twice_while_apart_stays_with_one_user() {
    let mut redis = RedisServer::start();
    let a = start_node(&redis, "ta", &[]);
    let b = start_node(&redis, "tb", &[]);
    redis.kill9();
    assert!(
        wait_for(Duration::from_secs(5), || cluster(&a)["up"] == false
            && cluster(&b)["up"] == false),
        "the nodes never noticed Redis was gone"
    );
    // Decided locally on each node: both get "twin".
    let on_a = Peer::join(a.tcp, "twin");
    let on_b = Peer::join(b.tcp, "twin");
    redis.restart();
    // One of them is told and disconnected; the other stays.
    let told = |p: &Peer| {
        p.find(Duration::from_millis(100), |v| {
            v["type"] == "error" && v["code"] == "name_taken"
        })
        .is_some()
    };
    assert!(
        wait_for(Duration::from_secs(10), || told(&on_a) || told(&on_b)),
        "neither user was told that the name is held on the other node"
    );
    let (lost, kept) = if told(&on_a) {
        (&on_a, &on_b)
    } else {
        (&on_b, &on_a)
    };
    assert!(
        wait_for(Duration::from_secs(5), || lost.is_closed()),
        "the user who lost the name was not disconnected"
    );
    assert!(!told(kept) && !kept.is_closed(), "both users lost the name");
    // The name is still taken on both nodes.
    for node in [&a, &b] {
        let p = Peer::connect(node.tcp, "TWIN");
        p.wait("name_taken for a third twin", common::WAIT, |v| {
            v["type"] == "error" && v["code"] == "name_taken"
        });
    }
}
