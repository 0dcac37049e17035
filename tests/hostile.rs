//! Hostile clients, in one place (the hardening issue's checklist):
//!
//! 1. floods and fairness: a TCP and a WebSocket flooder must not starve
//!    round-tripping users; the per-turn read budget interleaves two flooders;
//! 2. the per-user rate limit (`--rate-limit`), and bursts with it off;
//! 3. slowloris on every port at once, unjoined chat connections, and a joined
//!    user trickling a line (legit until the line limit);
//! 4. slow readers against the real binary: dropped, nobody else loses
//!    anything, and the server's memory stays bounded;
//! 5. malformed input on every protocol over real sockets (only what
//!    `tests/chat.rs`, `tests/ws.rs` and `tests/http.rs` do not already cover;
//!    each table says which cases live there).
//!
//! Heavy scenarios take a file-wide lock so that their timing figures do not
//! measure each other. Every scenario prints what it measured (run with
//! `--nocapture` to see it). Every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::binary::{ServerProcess, Spawn, stats, status_kib};
use common::wsraw;
use common::{Client, WAIT};
use multiuserchat::server::BoundAddrs;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Serialises the timing-sensitive scenarios of this file.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy() -> MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A name no other test in this file uses.
fn uniq(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}

/// Joins a thread, re-raising its panic (with its message) in the caller.
fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Skips objects until an `error`; asserts its code.
fn expect_error(c: &mut Client, code: &str) -> Value {
    let v = c.recv_until(&format!("error {code}"), |v| v["type"] == "error");
    assert_eq!(v["code"], code, "unexpected error {v}");
    v
}

/// Skips objects until a chat message from `from` saying `text`.
fn expect_chat(c: &mut Client, from: &str, text: &str) -> Value {
    c.recv_until(&format!("{from}: {text:?}"), |v| {
        v["type"] == "message" && v["sender"] == from && v["message"] == text
    })
}

/// A brand-new client can still join and chat.
fn fresh_client_works(addr: SocketAddr) {
    let name = uniq("fresh");
    let mut c = Client::join(addr, &name);
    c.say("alive?");
    expect_chat(&mut c, &name, "alive?");
}

/// Polls `/stats` until `ok` holds (the connection counts are refreshed by a
/// 250 ms timer sweep); fails with the last document after `limit`.
fn wait_stats(http: SocketAddr, limit: Duration, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = stats(http);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: {s}");
        thread::sleep(Duration::from_millis(100));
    }
}

/// Skips text lines until one containing `needle`.
fn next_line_containing(c: &mut Client, needle: &str) -> String {
    loop {
        let l = c
            .line()
            .unwrap_or_else(|| panic!("connection ended before a line with {needle:?}"));
        if l.contains(needle) {
            return l;
        }
    }
}

/// What a closed connection looked like when it closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    Eof,
    Reset,
}

/// Non-blocking probe: `Some` once the peer closed; appends any bytes read.
fn poll_closed(s: &mut TcpStream, got: &mut Vec<u8>) -> Option<Closed> {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(Closed::Eof),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(Closed::Reset),
        }
    }
}

/// Reads until EOF or reset within `limit`; `None` if the connection is still
/// open then. Returns the bytes read.
fn read_to_close(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    return None;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Some(got),
        }
    }
}

/// Reads lines in a thread until `stop` is set (checked on read timeouts) or
/// EOF. Returns (lines, lines starting with `prefix`, EOF seen before `stop`).
fn drain_lines(
    mut r: BufReader<TcpStream>,
    prefix: &'static [u8],
    stop: Arc<AtomicBool>,
) -> JoinHandle<(usize, usize, bool)> {
    thread::spawn(move || {
        r.get_ref()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (mut lines, mut matching) = (0usize, 0usize);
        let mut line = Vec::with_capacity(512);
        loop {
            match r.read_until(b'\n', &mut line) {
                Ok(0) => return (lines, matching, !stop.load(Ordering::SeqCst)),
                Ok(_) if line.ends_with(b"\n") => {
                    lines += 1;
                    if line.starts_with(prefix) {
                        matching += 1;
                    }
                    line.clear();
                }
                Ok(_) => {}
                // A timeout leaves the partial line in `line`; the next call appends.
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stop.load(Ordering::SeqCst) {
                        return (lines, matching, false);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return (lines, matching, !stop.load(Ordering::SeqCst)),
            }
        }
    })
}

/// Reads and discards bytes in a thread until `stop` (or EOF); returns
/// (bytes, EOF seen before `stop`).
fn drain_bytes(s: TcpStream, stop: Arc<AtomicBool>) -> JoinHandle<(u64, bool)> {
    thread::spawn(move || {
        let mut s = s;
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) => return (total, !stop.load(Ordering::SeqCst)),
                Ok(n) => total += n as u64,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    if stop.load(Ordering::SeqCst) {
                        return (total, false);
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return (total, !stop.load(Ordering::SeqCst)),
            }
        }
    })
}

/// Writes `batch` again and again until `until`; returns how many times.
fn flood_writer(mut s: TcpStream, batch: Vec<u8>, until: Instant) -> JoinHandle<usize> {
    thread::spawn(move || {
        let mut n = 0;
        while Instant::now() < until {
            if s.write_all(&batch).is_err() {
                break;
            }
            n += 1;
        }
        n
    })
}

/// Latency figures: (p50, p99, max).
fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    assert!(!v.is_empty(), "no samples");
    v.sort_unstable();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), *v.last().unwrap())
}

// ---------------------------------------------------------------------------
// 1. Floods and fairness
// ---------------------------------------------------------------------------

/// A probe message seen by a round-tripping user.
enum Probe {
    Msg(usize, usize),
    End(usize),
}

fn classify_probe(v: &Value) -> Option<Probe> {
    if v["type"] != "message" || v["sender"] == "Server" {
        return None;
    }
    let text = v["message"].as_str()?;
    let mut parts = text.split(' ');
    match (parts.next()?, parts.next()?.parse().ok()?, parts.next()) {
        ("probe", i, Some(k)) => Some(Probe::Msg(i, k.parse().ok()?)),
        ("probe-end", i, None) => Some(Probe::End(i)),
        _ => None,
    }
}

/// What one round-tripping user measured.
struct ProbeReport {
    sent: usize,
    latencies: Vec<Duration>,
    /// Probe message numbers seen, by sender.
    seen: Vec<Vec<usize>>,
}

/// Round trips (say, wait for the broadcast echo) from `start` until `until`,
/// then an end marker, then reads until every probe's end marker arrived.
fn run_probe(
    mut c: Client,
    me: usize,
    probes: usize,
    start: Instant,
    until: Instant,
) -> ProbeReport {
    let mut seen = vec![Vec::new(); probes];
    let mut latencies = Vec::new();
    let mut ends = vec![false; probes];
    // Records a probe message; returns it (sender, number) when it is one.
    fn note(v: &Value, seen: &mut [Vec<usize>], ends: &mut [bool]) -> Option<(usize, usize)> {
        match classify_probe(v) {
            Some(Probe::Msg(i, k)) => {
                seen[i].push(k);
                Some((i, k))
            }
            Some(Probe::End(i)) => {
                assert!(!ends[i], "probe {i}'s end marker twice");
                ends[i] = true;
                None
            }
            None => None,
        }
    }
    if let Some(wait) = start.checked_duration_since(Instant::now()) {
        thread::sleep(wait);
    }
    let mut k = 0;
    while Instant::now() < until {
        let t = Instant::now();
        c.say(&format!("probe {me} {k}"));
        while note(&c.recv(), &mut seen, &mut ends) != Some((me, k)) {}
        latencies.push(t.elapsed());
        k += 1;
        thread::sleep(Duration::from_millis(20));
    }
    c.say(&format!("probe-end {me}"));
    let deadline = Instant::now() + WAIT;
    while ends.contains(&false) {
        note(&c.recv(), &mut seen, &mut ends);
        assert!(Instant::now() < deadline, "probe {me}: end markers missing");
    }
    ProbeReport {
        sent: k,
        latencies,
        seen,
    }
}

/// Every probe saw every probe message exactly once, in each sender's order;
/// returns all latencies.
fn check_probes(reports: &[ProbeReport]) -> Vec<Duration> {
    for (j, r) in reports.iter().enumerate() {
        for (i, from) in reports.iter().enumerate() {
            let want: Vec<usize> = (0..from.sent).collect();
            assert_eq!(
                r.seen[i], want,
                "probe {j} saw probe {i}'s messages wrongly"
            );
        }
        assert!(r.sent >= 5, "probe {j} managed only {} round trips", r.sent);
    }
    reports.iter().flat_map(|r| r.latencies.clone()).collect()
}

#[derive(Debug, Clone, Copy)]
enum Flooder {
    Tcp,
    WebSocket,
}

/// A flooder sends private messages to a sink as fast as it can for 2.5 s (both
/// read their replies in threads, so nobody is dropped for output); meanwhile
/// four users round-trip public messages and must see every one with a
/// bounded latency.
fn flood_keeps_round_trips_fast(kind: Flooder) {
    let _heavy = heavy();
    const PROBES: usize = 4;
    const FLOOD: Duration = Duration::from_millis(2500);
    // Generous output limit: this test is about input fairness; a lagging
    // reader thread must not turn into an output-limit drop.
    let addrs = common::start_with(|c| c.out_hard_limit_bytes = 64 << 20);
    let stop = Arc::new(AtomicBool::new(false));

    let sink = Client::join(addrs.tcp, "floodSink");
    let sink_drain = drain_lines(sink.reader, b"{\"type\":\"private\"", stop.clone());
    let probes: Vec<Client> = (0..PROBES)
        .map(|i| Client::join(addrs.tcp, &format!("probe{i}")))
        .collect();

    let text = format!("flood {}", "x".repeat(60));
    let one = json!({"type":"private","to":"floodSink","message":text}).to_string();
    let t0 = Instant::now();
    let until = t0 + FLOOD;
    let (writer, flooder_drain) = match kind {
        Flooder::Tcp => {
            let f = Client::join(addrs.tcp, "flooder");
            let batch: Vec<u8> = (0..500)
                .flat_map(|_| format!("{one}\n").into_bytes())
                .collect();
            let w = flood_writer(f.writer, batch, until);
            let d = drain_lines(f.reader, b"{\"type\":\"private_sent\"", stop.clone());
            (
                w,
                thread::spawn(move || {
                    let (_, confirmations, eof) = join(d);
                    (confirmations, eof)
                }),
            )
        }
        Flooder::WebSocket => {
            let s = wsraw::join(addrs.ws, "flooder");
            let batch: Vec<u8> = (0..500)
                .flat_map(|_| wsraw::cframe(wsraw::FIN | wsraw::TEXT, one.as_bytes()))
                .collect();
            let w = flood_writer(s.try_clone().unwrap(), batch, until);
            let d = drain_bytes(s, stop.clone());
            (
                w,
                thread::spawn(move || {
                    let (bytes, eof) = join(d);
                    (bytes as usize, eof)
                }),
            )
        }
    };

    let probe_threads: Vec<_> = probes
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            let (start, end) = (
                t0 + Duration::from_millis(300),
                until - Duration::from_millis(200),
            );
            thread::spawn(move || run_probe(c, i, PROBES, start, end))
        })
        .collect();
    let reports: Vec<ProbeReport> = probe_threads.into_iter().map(join).collect();
    let batches = join(writer);
    let flood_secs = t0.elapsed().as_secs_f64();
    // Let the last of the flood arrive before counting.
    thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    let (_, delivered, sink_eof) = join(sink_drain);
    let (flooder_got, flooder_eof) = join(flooder_drain);

    let lat = check_probes(&reports);
    let rounds = lat.len();
    let (p50, p99, max) = percentiles(lat);
    eprintln!(
        "{kind:?} flood: {} messages written, {delivered} delivered to the sink ({:.0}/s), \
         flooder read back {flooder_got} {}; {rounds} round trips: p50 {p50:?}, p99 {p99:?}, max {max:?}",
        batches * 500,
        delivered as f64 / flood_secs,
        match kind {
            Flooder::Tcp => "confirmations",
            Flooder::WebSocket => "bytes",
        }
    );
    assert!(!sink_eof, "the sink was disconnected");
    assert!(!flooder_eof, "the flooder was disconnected");
    assert!(
        delivered >= 1000,
        "the flood was too weak to prove anything ({delivered} messages)"
    );
    assert!(flooder_got > 0, "the flooder got no confirmations");
    assert!(
        max < Duration::from_secs(1),
        "a round trip took {max:?} during the flood (starvation)"
    );
}

#[test]
fn tcp_flooder_does_not_starve_other_users() {
    flood_keeps_round_trips_fast(Flooder::Tcp);
}

#[test]
fn websocket_flooder_does_not_starve_other_users() {
    flood_keeps_round_trips_fast(Flooder::WebSocket);
}

/// With a small read budget, two clients flooding at once are read in turns:
/// their broadcasts interleave in runs no longer than a few budgets' worth of
/// lines (reading one until it has nothing left would give one long run).
#[test]
fn small_read_budget_interleaves_two_flooders() {
    let _heavy = heavy();
    const BUDGET: usize = 1024;
    const LINE: usize = 64;
    const N: usize = 6000;
    let addrs = common::start_with(|c| {
        c.read_budget_bytes = BUDGET;
        c.out_hard_limit_bytes = 64 << 20;
    });
    let mut observer = Client::join(addrs.tcp, "budgetObserver");
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(2));
    let mut writers = Vec::new();
    let mut drains = Vec::new();
    for tag in ["A", "B"] {
        let c = Client::join(addrs.tcp, &format!("budget{tag}"));
        let mut data = Vec::with_capacity(N * LINE);
        for i in 0..N {
            let head = format!("{{\"type\":\"message\",\"message\":\"{tag} {i:06} ");
            let line = format!("{head}{}\"}}\n", "x".repeat(LINE - head.len() - 3));
            assert_eq!(line.len(), LINE);
            data.extend_from_slice(line.as_bytes());
        }
        let mut w = c.writer;
        let b = barrier.clone();
        writers.push(thread::spawn(move || {
            b.wait();
            w.write_all(&data).expect("flood write");
        }));
        drains.push(drain_lines(c.reader, b"", stop.clone()));
    }

    // The observer records whose broadcast came when.
    let mut order: Vec<u8> = Vec::with_capacity(2 * N);
    let mut next = [0usize; 2];
    let deadline = Instant::now() + Duration::from_secs(10);
    while next != [N, N] {
        assert!(
            Instant::now() < deadline,
            "flood not relayed in time: {next:?}"
        );
        let v = observer.recv();
        let Some(text) = v["message"].as_str().filter(|_| v["sender"] != "Server") else {
            continue;
        };
        let who = usize::from(text.starts_with('B'));
        let i: usize = text[2..8].parse().expect("index");
        assert_eq!(i, next[who], "{text}: lost or reordered");
        next[who] += 1;
        order.push(who as u8);
    }
    writers.into_iter().for_each(join);
    stop.store(true, Ordering::SeqCst);
    for d in drains {
        let (_, _, dropped) = join(d);
        assert!(!dropped, "a flooder was disconnected");
    }

    // Only the stretch where both still had input pending says anything.
    let first = |w: u8| order.iter().position(|&x| x == w).unwrap();
    let last = |w: u8| order.iter().rposition(|&x| x == w).unwrap();
    let (from, to) = (first(0).max(first(1)), last(0).min(last(1)));
    let mut runs = Vec::new();
    let mut run = 1usize;
    for pair in order[from..=to].windows(2) {
        if pair[0] == pair[1] {
            run += 1;
        } else {
            runs.push(run);
            run = 1;
        }
    }
    runs.push(run);
    let max_run = *runs.iter().max().unwrap();
    let per_budget = BUDGET / LINE + 1;
    eprintln!(
        "read budget {BUDGET} B ({per_budget} lines): {} alternations over {} \
         interleaved messages, longest run {max_run}",
        runs.len(),
        to - from + 1
    );
    assert!(
        runs.len() > 2 * N / (4 * per_budget),
        "barely interleaved: {} runs",
        runs.len()
    );
    assert!(
        max_run <= 3 * per_budget,
        "one flooder was read for {max_run} lines in a row with a {BUDGET}-byte budget"
    );
}

// ---------------------------------------------------------------------------
// 2. Rate limit
// ---------------------------------------------------------------------------

/// Sends `texts` in one write; returns, in order, which were relayed (echoed
/// back to the sender) and how many were refused with `rate_limited`.
fn burst(c: &mut Client, me: &str, texts: &[String]) -> (Vec<String>, usize) {
    let mut all = String::new();
    for t in texts {
        all.push_str(&json!({"type":"message","message":t}).to_string());
        all.push('\n');
    }
    c.send_raw(all.as_bytes());
    let (mut relayed, mut refused) = (Vec::new(), 0);
    while relayed.len() + refused < texts.len() {
        let v = c.recv();
        if v["type"] == "error" {
            assert_eq!(v["code"], "rate_limited", "{v}");
            refused += 1;
        } else if v["type"] == "message" && v["sender"] == me {
            relayed.push(v["message"].as_str().unwrap().to_owned());
        }
    }
    (relayed, refused)
}

/// The chat messages from `from` that `c` receives until `last` (inclusive).
fn chats_until(c: &mut Client, from: &str, last: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let v = c.recv();
        if v["type"] == "message" && v["sender"] == from {
            let t = v["message"].as_str().unwrap().to_owned();
            let done = t == last;
            got.push(t);
            if done {
                return got;
            }
        }
    }
}

#[test]
fn rate_limit_refuses_the_excess_keeps_the_user_and_refills() {
    const N: u32 = 5;
    let addrs = common::start_with(|c| c.hub.rate_limit_per_sec = N);
    let mut observer = Client::join(addrs.tcp, "rlObserver");
    let mut burster = Client::join(addrs.tcp, "rlBurster");
    observer.recv_until("burster's join", |v| {
        v["message"] == "Client rlBurster has joined the chat."
    });

    let texts: Vec<String> = (0..10 * N).map(|i| format!("b{i}")).collect();
    let t0 = Instant::now();
    let (relayed, refused) = burst(&mut burster, "rlBurster", &texts);
    let span = t0.elapsed();
    // A full bucket of N, plus whatever refilled while the burst was being read
    // (one write is normally one loop turn: nothing).
    let refill = (span.as_secs_f64() * f64::from(N)).ceil() as usize;
    eprintln!(
        "rate limit {N}/s: burst of {} gave {} relayed, {refused} refused \
         (burst handled in {span:?})",
        texts.len(),
        relayed.len()
    );
    assert_eq!(relayed.len() + refused, texts.len());
    assert!(
        relayed.len() >= N as usize && relayed.len() <= N as usize + refill,
        "{} relayed",
        relayed.len()
    );
    let first: Vec<String> = texts[..N as usize].to_vec();
    assert_eq!(
        relayed[..N as usize],
        first[..],
        "a full bucket passes the first N"
    );

    // `who` is not a chat message: answered, and the burster is still online.
    burster.send(&json!({"type":"who"}));
    let list = burster.recv_until("who", |v| v["type"] == "user_list");
    assert!(
        list["users"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u == "rlBurster"),
        "{list}"
    );

    // After a second the bucket is full again.
    thread::sleep(Duration::from_millis(1100));
    let again: Vec<String> = (0..N).map(|i| format!("again{i}")).collect();
    let (relayed2, refused2) = burst(&mut burster, "rlBurster", &again);
    assert_eq!((relayed2.as_slice(), refused2), (again.as_slice(), 0));

    // Others got exactly the relayed ones, in order.
    let seen = chats_until(&mut observer, "rlBurster", again.last().unwrap());
    let want: Vec<String> = relayed.iter().chain(relayed2.iter()).cloned().collect();
    assert_eq!(seen, want);
}

#[test]
fn without_rate_limit_a_burst_of_1000_all_arrive_in_order() {
    let addrs = common::start();
    let mut observer = Client::join(addrs.tcp, "burstObserver");
    let mut burster = Client::join(addrs.tcp, "burster1000");
    let texts: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let (relayed, refused) = burst(&mut burster, "burster1000", &texts);
    assert_eq!((relayed.len(), refused), (1000, 0));
    assert_eq!(relayed, texts);
    assert_eq!(chats_until(&mut observer, "burster1000", "m999"), texts);
}

// ---------------------------------------------------------------------------
// 3. Slowloris
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlowPort {
    Chat,
    Ws,
    Http,
}

/// One slow connection: trickles `script` one byte at a time, or says nothing.
struct Slow {
    s: TcpStream,
    port: SlowPort,
    script: Vec<u8>,
    sent: usize,
    trickle: bool,
    opened: Instant,
    got: Vec<u8>,
    closed: Option<(Duration, Closed)>,
}

/// Round trips from a joined TCP or WebSocket user until `stop`; returns latencies.
fn chatter_until(addrs: BoundAddrs, ws: bool, stop: Arc<AtomicBool>) -> JoinHandle<Vec<Duration>> {
    thread::spawn(move || {
        let name = uniq(if ws { "lorisWs" } else { "lorisTcp" });
        let mut lat = Vec::new();
        let mut k = 0;
        if ws {
            let mut s = wsraw::join(addrs.ws, &name);
            while !stop.load(Ordering::SeqCst) {
                let text = format!("rt {k}");
                let t = Instant::now();
                wsraw::send_text(
                    &mut s,
                    json!({"type":"message","message":text})
                        .to_string()
                        .as_bytes(),
                );
                wsraw::recv_until(&mut s, "own echo", |v| {
                    v["sender"] == name.as_str() && v["message"] == text.as_str()
                });
                lat.push(t.elapsed());
                k += 1;
                thread::sleep(Duration::from_millis(50));
            }
        } else {
            let mut c = Client::join(addrs.tcp, &name);
            while !stop.load(Ordering::SeqCst) {
                let text = format!("rt {k}");
                let t = Instant::now();
                c.say(&text);
                expect_chat(&mut c, &name, &text);
                lat.push(t.elapsed());
                k += 1;
                thread::sleep(Duration::from_millis(50));
            }
        }
        lat
    })
}

/// 50 connections per port trickle a valid-looking first line / handshake /
/// request one byte per 300 ms and 50 per port send nothing, all at once,
/// while users chat. Every slow connection is closed at its timeout (HTTP
/// tricklers get 408 first), chat latency stays low, and `/stats` shows no
/// leftovers.
#[test]
fn slowloris_on_every_port_at_once() {
    let _heavy = heavy();
    const PER: usize = 50;
    let timeout = Duration::from_millis(1500);
    let slack = Duration::from_millis(1500);
    let addrs = common::start_with(move |c| {
        c.handshake_timeout = timeout;
        c.first_line_timeout = timeout;
    });
    let stop = Arc::new(AtomicBool::new(false));
    let chatters: Vec<_> = (0..4)
        .map(|i| chatter_until(addrs, i == 3, stop.clone()))
        .collect();
    thread::sleep(Duration::from_millis(200));

    let mut slow = Vec::new();
    for port in [SlowPort::Chat, SlowPort::Ws, SlowPort::Http] {
        for i in 0..2 * PER {
            let (addr, script) = match port {
                SlowPort::Chat if i % 2 == 0 => (
                    addrs.tcp,
                    format!("{{\"type\":\"join\",\"sender\":\"loris{i}\"}}\n"),
                ),
                SlowPort::Chat => (addrs.tcp, format!("loris{i}\n")),
                SlowPort::Ws => (addrs.ws, wsraw::upgrade_request("/", "")),
                SlowPort::Http => (
                    addrs.http,
                    "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n".to_owned(),
                ),
            };
            let opened = Instant::now();
            let s = TcpStream::connect(addr).expect("connect");
            s.set_nonblocking(true).unwrap();
            slow.push(Slow {
                s,
                port,
                script: script.into_bytes(),
                sent: 0,
                trickle: i < PER,
                opened,
                got: Vec::new(),
                closed: None,
            });
        }
    }

    let start = Instant::now();
    let mut next_byte = start;
    while slow.iter().any(|c| c.closed.is_none()) && start.elapsed() < timeout + slack + slack {
        let now = Instant::now();
        if now >= next_byte {
            next_byte += Duration::from_millis(300);
            for c in slow.iter_mut().filter(|c| c.trickle && c.closed.is_none()) {
                // Never the last byte: the line / head must stay unfinished.
                if c.sent + 1 < c.script.len() && c.s.write(&c.script[c.sent..=c.sent]).is_ok() {
                    c.sent += 1;
                }
            }
        }
        for c in slow.iter_mut().filter(|c| c.closed.is_none()) {
            if let Some(how) = poll_closed(&mut c.s, &mut c.got) {
                c.closed = Some((c.opened.elapsed(), how));
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    // Our side closes too (after a 408 the server lingers until the client's EOF).
    for c in &slow {
        let _ = c.s.shutdown(std::net::Shutdown::Both);
    }
    // Nothing left behind while the users are still chatting: 3 JSON users,
    // 1 WebSocket user, at most the stats request itself.
    let s = wait_stats(addrs.http, WAIT, "leftover connections", |s| {
        let c = &s["connections"];
        s["users"] == 4
            && c["tcp_json"] == 3
            && c["websocket"] == 1
            && c["tcp_pending"].as_u64().unwrap_or(0) == 0
            && c["ws_handshake"].as_u64().unwrap_or(0) == 0
            && c["http"].as_u64().unwrap_or(0) <= 1
            && s["connections_total"].as_u64().is_some_and(|t| t <= 5)
    });
    assert!(
        s["accepted"].as_u64().unwrap() >= (6 * PER + 4) as u64,
        "{s}"
    );
    stop.store(true, Ordering::SeqCst);
    let latencies: Vec<Duration> = chatters.into_iter().flat_map(join).collect();

    let mut worst = Duration::ZERO;
    let mut earliest = Duration::MAX;
    let (mut eofs, mut resets, mut http408) = (0, 0, 0);
    for c in &slow {
        let (after, how) = c.closed.unwrap_or_else(|| {
            panic!(
                "{:?} connection (trickle: {}) still open",
                c.port, c.trickle
            )
        });
        worst = worst.max(after);
        earliest = earliest.min(after);
        match how {
            Closed::Eof => eofs += 1,
            Closed::Reset => resets += 1,
        }
        if c.port == SlowPort::Http && c.trickle {
            let text = String::from_utf8_lossy(&c.got);
            assert!(
                text.starts_with("HTTP/1.1 408 "),
                "trickling HTTP client got {text:?}"
            );
            assert_eq!(how, Closed::Eof, "408 then a clean close");
            http408 += 1;
        } else {
            assert!(
                c.got.is_empty(),
                "{:?} slow client got {:?}",
                c.port,
                String::from_utf8_lossy(&c.got)
            );
        }
    }
    let (p50, p99, max) = percentiles(latencies.clone());
    eprintln!(
        "slowloris: {} slow connections closed after {earliest:?}..{worst:?} (timeout {timeout:?}; \
         {eofs} EOF, {resets} reset, {http408} got 408); {} chat round trips meanwhile: p50 {p50:?}, p99 {p99:?}, max {max:?}",
        slow.len(),
        latencies.len()
    );
    assert!(
        earliest >= timeout - Duration::from_millis(50),
        "closed too early: {earliest:?}"
    );
    assert!(worst <= timeout + slack, "closed too late: {worst:?}");
    assert_eq!(http408, PER);
    assert!(latencies.len() >= 20, "chatters barely chatted");
    assert!(max < Duration::from_secs(1), "chat round trip took {max:?}");
}

/// The chat port's first-line timeout covers joining, not just any first
/// line: a connection that never manages to join (a request before joining,
/// an invalid or taken name, retried forever) is closed like a silent one,
/// while a user who joined stays.
#[test]
fn chat_connection_that_never_joins_is_closed_at_the_first_line_timeout() {
    let timeout = Duration::from_millis(1000);
    let addrs = common::start_with(move |c| c.first_line_timeout = timeout);
    let mut owner = Client::join(addrs.tcp, "takenName");
    let t0 = Instant::now();
    let mut who_first = Client::connect(addrs.tcp);
    who_first.send(&json!({"type":"who"}));
    expect_error(&mut who_first, "not_joined");
    let mut bad_text_name = Client::connect(addrs.tcp);
    bad_text_name.send_raw(b"two words\n");
    assert!(bad_text_name.line().unwrap().contains("!!! Invalid name"));
    let mut retrier = Client::connect(addrs.tcp);
    retrier.send(&json!({"type":"join","sender":"takenName"}));
    expect_error(&mut retrier, "name_taken");
    let mut late_joiner = Client::connect(addrs.tcp);
    late_joiner.send(&json!({"type":"join","sender":"takenName"}));
    expect_error(&mut late_joiner, "name_taken");

    // The retrier keeps trying a taken name; the late joiner picks a free one in time.
    let mut closed: Vec<(&str, Duration)> = Vec::new();
    let mut open = vec![
        ("who first", who_first),
        ("bad text name", bad_text_name),
        ("retrier", retrier),
    ];
    for (_, c) in &open {
        c.writer.set_nonblocking(true).unwrap();
    }
    let mut joined_late = false;
    while !open.is_empty() && t0.elapsed() < timeout * 4 {
        if !joined_late && t0.elapsed() > timeout / 2 {
            late_joiner.send(&json!({"type":"join","sender":"lateButFine"}));
            let w = late_joiner.recv_until("welcome", |v| v["type"] == "info");
            assert_eq!(w["user"], "lateButFine");
            joined_late = true;
        }
        let mut i = 0;
        while i < open.len() {
            let done = {
                let (what, c) = &mut open[i];
                if *what == "retrier" {
                    let _ = c
                        .writer
                        .write_all(b"{\"type\":\"join\",\"sender\":\"takenName\"}\n");
                }
                let mut got = Vec::new();
                poll_closed(&mut c.writer, &mut got).is_some()
            };
            if done {
                let (what, _) = open.remove(i);
                closed.push((what, t0.elapsed()));
            } else {
                i += 1;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    eprintln!("unjoined chat connections closed: {closed:?} (timeout {timeout:?})");
    let still: Vec<&str> = open.iter().map(|(w, _)| *w).collect();
    assert!(still.is_empty(), "never joined yet still open: {still:?}");
    for (what, after) in &closed {
        assert!(
            *after >= timeout - Duration::from_millis(100),
            "{what} closed early: {after:?}"
        );
        assert!(*after <= timeout * 3, "{what} closed late: {after:?}");
    }
    // The joined users were not touched.
    late_joiner.say("still here");
    expect_chat(&mut late_joiner, "lateButFine", "still here");
    owner.say("me too");
    expect_chat(&mut owner, "takenName", "me too");
}

/// After joining, a user who trickles a partial line forever is just an idle
/// user (no timeout applies), bounded by the line limit: passing it gets
/// `too_long` and a close, in the user's own format.
#[test]
fn joined_user_trickling_a_line_is_idle_until_it_passes_the_line_limit() {
    let timeout = Duration::from_millis(500);
    let addrs = common::start_with(move |c| {
        c.first_line_timeout = timeout;
        c.max_line_bytes = 256;
    });
    let mut observer = Client::join(addrs.tcp, "trickleWatcher");
    for text_mode in [false, true] {
        let name = uniq("trickler");
        let mut t = Client::connect(addrs.tcp);
        if text_mode {
            t.send_raw(format!("{name}\n").as_bytes());
            assert!(t.line().unwrap().contains("Welcome"));
            t.send_raw(b"partial ");
        } else {
            t.send(&json!({"type":"join","sender":name}));
            t.expect_type("info");
            t.send_raw(b"{\"type\":\"message\",\"message\":\"");
        }
        observer.recv_until("join", |v| {
            v["message"] == format!("Client {name} has joined the chat.")
        });
        // Three times the first-line timeout, a byte every 100 ms.
        let end = Instant::now() + timeout * 3;
        while Instant::now() < end {
            t.send_raw(b"x");
            thread::sleep(Duration::from_millis(100));
        }
        t.writer.set_nonblocking(true).unwrap();
        let mut early = Vec::new();
        assert_eq!(
            poll_closed(&mut t.writer, &mut early),
            None,
            "idle user was closed"
        );
        t.writer.set_nonblocking(false).unwrap();
        observer.send(&json!({"type":"who"}));
        let list = observer.recv_until("who", |v| {
            v["type"] == "user_list" && v["users"].as_array().unwrap().len() == 2
        });
        assert!(
            list["users"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| *u == name.as_str()),
            "{list}"
        );

        // Past the limit: too_long, then closed.
        t.send_raw(&[b'y'; 300]);
        if text_mode {
            next_line_containing(&mut t, "!!! Line too long");
        } else {
            expect_error(&mut t, "too_long");
        }
        assert!(t.closed(), "still open after too_long");
        observer.recv_until("drop notice", |v| {
            v["message"] == format!("Client {name} disconnected unexpectedly.")
        });
    }
}

// ---------------------------------------------------------------------------
// 4. Slow readers against the real binary
// ---------------------------------------------------------------------------

/// 100 users join and never read while 100 others each send 80 messages of
/// about 1 KB at full speed (one write each, read back in one thread per
/// chatter). The chatters get all 8,000 messages exactly once and in each
/// sender's order, and hear of every drop; the slow readers are dropped (EOF
/// when they finally read, gone from `/stats` and `who`); the server's peak RSS
/// stays within 100 × `--max-output-bytes` (+ 32 MiB) of its baseline.
#[test]
fn slow_readers_are_dropped_and_server_memory_stays_bounded() {
    let _heavy = heavy();
    const SLOW: usize = 100;
    const CHATTERS: usize = 100;
    // 8,000 messages of ~1.1 KB: each slow reader's kernel buffers absorb ~4 MB
    // on loopback (send buffer autotuning), so it needs more than that plus the
    // output limit to overflow.
    const PER: usize = 80;
    const PAD: usize = 1000;
    const MAX_OUT: usize = 256 * 1024;
    let max_out = MAX_OUT.to_string();
    let server = ServerProcess::start(Spawn {
        args: &["--max-output-bytes", &max_out, "--log-level", "error"],
        ..Spawn::default()
    });
    let rss_start = server.rss_kib();
    let t0 = Instant::now();

    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|i| {
            let mut s = TcpStream::connect(server.tcp).expect("connect");
            s.write_all(format!("{{\"type\":\"join\",\"sender\":\"slow{i:03}\"}}\n").as_bytes())
                .unwrap();
            s
        })
        .collect();

    // A start flag rather than a barrier: a chatter that fails early must not
    // leave the others (or this thread) waiting forever.
    let go = Arc::new(AtomicBool::new(false));
    let chat_prefix = b"{\"type\":\"message\",\"sender\":\"chat";
    let chatters: Vec<JoinHandle<(Client, usize, usize)>> = (0..CHATTERS)
        .map(|me| {
            let go = go.clone();
            let addr = server.tcp;
            thread::spawn(move || {
                let name = format!("chat{me:03}");
                let mut c = Client::connect(addr);
                c.send(&json!({"type":"join","sender":name,"features":["presence"]}));
                c.expect_type("info");
                let mut all = Vec::new();
                for k in 0..PER {
                    let text = format!("{me:03} {k:03} {}", "p".repeat(PAD));
                    all.extend_from_slice(
                        json!({"type":"message","message":text})
                            .to_string()
                            .as_bytes(),
                    );
                    all.push(b'\n');
                }
                let deadline = Instant::now() + 2 * WAIT;
                while !go.load(Ordering::SeqCst) {
                    assert!(Instant::now() < deadline, "{name}: never told to start");
                    thread::sleep(Duration::from_millis(1));
                }
                c.send_raw(&all);
                let mut next = [0usize; CHATTERS];
                let (mut got, mut drop_notices, mut line_len) = (0usize, 0usize, None);
                let mut line = Vec::with_capacity(2048);
                while got < CHATTERS * PER {
                    line.clear();
                    let n = c.reader.read_until(b'\n', &mut line).expect("chatter read");
                    assert!(n > 0, "{name} was disconnected after {got} messages");
                    if let Some(rest) = line.strip_prefix(&chat_prefix[..]) {
                        let num = |b: &[u8]| -> usize {
                            std::str::from_utf8(b).unwrap().parse().unwrap()
                        };
                        let from = num(&rest[..3]);
                        let body = &rest[3 + b"\",\"message\":\"".len()..];
                        assert_eq!(num(&body[..3]), from, "{name}: garbled line");
                        let k = num(&body[4..7]);
                        assert_eq!(
                            k, next[from],
                            "{name}: chat{from:03}'s messages lost, duplicated or reordered"
                        );
                        next[from] += 1;
                        got += 1;
                        // Every chat line has the same length: nothing truncated or spliced.
                        assert_eq!(
                            *line_len.get_or_insert(line.len()),
                            line.len(),
                            "{name}: odd line length"
                        );
                    } else if line.windows(26).any(|w| w == b"disconnected unexpectedly.") {
                        drop_notices += 1;
                    }
                }
                assert!(next.iter().all(|&n| n == PER));
                (c, got, drop_notices)
            })
        })
        .collect();

    wait_stats(server.http, WAIT, "everyone joined", |s| {
        s["users"] == SLOW + CHATTERS
    });
    let baseline = server.rss_kib();
    let peak = Arc::new(AtomicU64::new(baseline));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, pid) = (peak.clone(), sampling.clone(), server.pid);
        thread::spawn(move || {
            let mut samples = 0;
            while sampling.load(Ordering::SeqCst) {
                peak.fetch_max(status_kib(pid, "VmRSS").unwrap_or(0), Ordering::SeqCst);
                samples += 1;
                thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };

    let chat_start = Instant::now();
    go.store(true, Ordering::SeqCst);
    let mut results: Vec<(Client, usize, usize)> = chatters.into_iter().map(join).collect();
    let chat_time = chat_start.elapsed();
    // The slow readers were dropped: only the chatters (still connected) are online.
    let s = wait_stats(server.http, WAIT, "slow readers still online", |s| {
        s["users"] == CHATTERS
    });
    sampling.store(false, Ordering::SeqCst);
    let samples = join(sampler);
    let peak = peak.load(Ordering::SeqCst);
    let notices_during_chat: Vec<usize> = results.iter().map(|r| r.2).collect();
    // Every chatter hears of every drop.
    for (c, _, notices) in &mut results {
        while *notices < SLOW {
            let line = c.line().expect("a drop notice");
            if line.contains("\"sender\":\"Server\"") && line.contains("disconnected unexpectedly.")
            {
                assert!(line.contains("Client slow"), "{line}");
                *notices += 1;
            }
        }
    }
    results[0].0.send(&json!({"type":"who"}));
    let list = results[0].0.recv_until("who", |v| v["type"] == "user_list");
    let want: Vec<String> = (0..CHATTERS).map(|i| format!("chat{i:03}")).collect();
    assert_eq!(list["users"], json!(want));

    // When they finally read: what their kernel buffers held, then EOF (or reset).
    let mut absorbed = Vec::new();
    for (i, s) in slow.iter_mut().enumerate() {
        let got = read_to_close(s, WAIT)
            .unwrap_or_else(|| panic!("slow reader {i} was never disconnected"));
        absorbed.push(got.len());
    }
    let bound = SLOW as u64 * MAX_OUT as u64 / 1024 + 32 * 1024;
    eprintln!(
        "slow readers: {CHATTERS} chatters got {} messages each in {chat_time:?} ({:?} in all); \
         drop notices seen while chatting {}..{} per chatter, {SLOW} each in the end; \
         slow readers held {}..{} KiB before EOF; VmRSS start {rss_start} KiB, baseline {baseline} KiB, \
         peak {peak} KiB over {samples} samples (+{} KiB, bound +{bound} KiB); stats {s}",
        results[0].1,
        t0.elapsed(),
        notices_during_chat.iter().min().unwrap(),
        notices_during_chat.iter().max().unwrap(),
        absorbed.iter().min().unwrap() / 1024,
        absorbed.iter().max().unwrap() / 1024,
        peak.saturating_sub(baseline)
    );
    assert!(results.iter().all(|r| r.1 == CHATTERS * PER));
    assert!(samples >= 5, "too few RSS samples");
    assert!(
        peak <= baseline + bound,
        "peak RSS {peak} KiB over baseline {baseline} KiB + {bound} KiB"
    );
}

// ---------------------------------------------------------------------------
// 5. Malformed input
// ---------------------------------------------------------------------------

/// What a malformed (or odd but valid) request must produce.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// An `error` with this code; the connection stays usable.
    Error(&'static str),
    /// Relayed as a chat message with this text.
    Chat(&'static str),
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// A message whose extra field nests `depth` levels in total (the object counts).
fn message_with_depth(text: &str, depth: usize) -> Vec<u8> {
    format!(
        "{{\"type\":\"message\",\"message\":\"{text}\",\"x\":{}}}",
        nested_arrays(depth - 1)
    )
    .into_bytes()
}

/// JSON-mode cases over one joined connection. Already covered in
/// `tests/chat.rs` and not repeated: invalid/truncated UTF-8 in a value,
/// unterminated strings, missing commas, trailing garbage, bad escapes,
/// `{"type":"dance"}`, a missing type, `"message":42`, `[1,2,3]`, escaped
/// `\u0000` round trips, over-long lines, names of 33 ASCII chars, a bell,
/// `Server`, leading `@` / `/`.
fn json_line_cases() -> Vec<(&'static str, Vec<u8>, Want)> {
    use Want::{Chat, Error};
    let b = |s: &str| s.as_bytes().to_vec();
    vec![
        ("a lone NUL byte", b"\x00".to_vec(), Error("bad_json")),
        (
            "raw NUL before the object",
            b"\x00{\"type\":\"message\",\"message\":\"x\"}".to_vec(),
            Error("bad_json"),
        ),
        (
            "raw NUL after the object",
            b"{\"type\":\"message\",\"message\":\"x\"}\x00".to_vec(),
            Error("bad_json"),
        ),
        (
            "raw NUL inside a string",
            b"{\"type\":\"message\",\"message\":\"a\x00b\"}".to_vec(),
            Error("bad_json"),
        ),
        (
            "invalid UTF-8 in a key",
            b"{\"ty\xffpe\":\"message\",\"message\":\"x\"}".to_vec(),
            Error("bad_utf8"),
        ),
        (
            "overlong encoding of '/'",
            b"{\"type\":\"message\",\"message\":\"\xc0\xaf\"}".to_vec(),
            Error("bad_utf8"),
        ),
        (
            "UTF-16 surrogate encoded as UTF-8",
            b"{\"type\":\"message\",\"message\":\"\xed\xa0\x80\"}".to_vec(),
            Error("bad_utf8"),
        ),
        (
            "code point above U+10FFFF",
            b"{\"type\":\"message\",\"message\":\"\xf4\x90\x80\x80\"}".to_vec(),
            Error("bad_utf8"),
        ),
        (
            "lone surrogate escape",
            b(r#"{"type":"message","message":"\ud800"}"#),
            Error("bad_json"),
        ),
        (
            "1e999999 in an unknown field",
            b(r#"{"type":"message","message":"exp","n":1e999999}"#),
            Chat("exp"),
        ),
        (
            "-1e-999999 in an unknown field",
            b(r#"{"type":"message","message":"negexp","n":-1e-999999}"#),
            Chat("negexp"),
        ),
        (
            "40-digit integer in an unknown field",
            b(
                r#"{"type":"message","message":"digits","n":1234567890123456789012345678901234567890}"#,
            ),
            Chat("digits"),
        ),
        (
            "-0 in an unknown field",
            b(r#"{"type":"message","message":"negzero","n":-0}"#),
            Chat("negzero"),
        ),
        (
            "leading zero is not JSON",
            b(r#"{"type":"message","message":"x","n":01}"#),
            Error("bad_json"),
        ),
        (
            "a number as sender is ignored after join",
            b(r#"{"type":"message","sender":1e999999,"message":"numsender"}"#),
            Chat("numsender"),
        ),
        (
            "1e999999 as type",
            b(r#"{"type":1e999999}"#),
            Error("bad_format"),
        ),
        (
            "-0 as type",
            b(r#"{"type":-0,"message":"x"}"#),
            Error("bad_format"),
        ),
        (
            "40-digit number as message",
            b(r#"{"type":"message","message":1234567890123456789012345678901234567890}"#),
            Error("bad_format"),
        ),
        (
            "nesting depth 32 is accepted",
            message_with_depth("depth32", 32),
            Chat("depth32"),
        ),
        (
            "nesting depth 33",
            message_with_depth("x", 33),
            Error("bad_json"),
        ),
        (
            "33 nested arrays at the top",
            b(&nested_arrays(33)),
            Error("bad_json"),
        ),
        (
            "1,000 nested arrays",
            b(&nested_arrays(1000)),
            Error("bad_json"),
        ),
        (
            "100,000 nested arrays",
            b(&nested_arrays(100_000)),
            Error("bad_json"),
        ),
        (
            "100,000 nested objects",
            b(&format!(
                "{}1{}",
                "{\"a\":".repeat(100_000),
                "}".repeat(100_000)
            )),
            Error("bad_json"),
        ),
        (
            "100,000 unclosed brackets",
            b(&"[".repeat(100_000)),
            Error("bad_json"),
        ),
        (
            "unknown fields are ignored",
            b(
                r#"{"type":"message","message":"extra","zzz":{"n":[1,{"a":null}]},"sender":"Server","timestamp":"99:99:99"}"#,
            ),
            Chat("extra"),
        ),
        ("empty type", b(r#"{"type":""}"#), Error("bad_format")),
        (
            "type is case-sensitive",
            b(r#"{"type":"MESSAGE","message":"x"}"#),
            Error("bad_format"),
        ),
        (
            "10 KB unknown type",
            b(&format!("{{\"type\":\"{}\"}}", "z".repeat(10_000))),
            Error("bad_format"),
        ),
        (
            "type as an array",
            b(r#"{"type":["message"],"message":"x"}"#),
            Error("bad_format"),
        ),
        (
            "type null",
            b(r#"{"type":null,"message":"x"}"#),
            Error("bad_format"),
        ),
        (
            "message as an object",
            b(r#"{"type":"message","message":{"text":"x"}}"#),
            Error("bad_format"),
        ),
        (
            "message as a boolean",
            b(r#"{"type":"message","message":true}"#),
            Error("bad_format"),
        ),
        (
            "message null",
            b(r#"{"type":"message","message":null}"#),
            Error("bad_format"),
        ),
        (
            "private target as a number",
            b(r#"{"type":"private","to":5,"message":"x"}"#),
            Error("bad_format"),
        ),
        (
            "private target with a space",
            b(r#"{"type":"private","to":"a b","message":"x"}"#),
            Error("bad_format"),
        ),
        (
            "features as a string",
            b(r#"{"type":"join","sender":"x","features":"presence"}"#),
            Error("bad_format"),
        ),
        ("empty object", b("{}"), Error("bad_format")),
        ("a string at the top", b(r#""hello""#), Error("bad_format")),
        ("a number at the top", b("42"), Error("bad_format")),
        ("null at the top", b("null"), Error("bad_format")),
        ("true at the top", b("true"), Error("bad_format")),
        ("an empty array at the top", b("[]"), Error("bad_format")),
        (
            "trailing comma",
            b(r#"{"type":"message","message":"x",}"#),
            Error("bad_json"),
        ),
        (
            "single quotes",
            b("{'type':'message','message':'x'}"),
            Error("bad_json"),
        ),
    ]
}

#[test]
fn malformed_json_lines_get_their_error_and_the_connection_stays_usable() {
    // Long enough for the 100,000-deep cases to reach the JSON parser.
    let addrs = common::start_with(|c| c.max_line_bytes = 1 << 20);
    let mut observer = Client::join(addrs.tcp, "jsonObserver");
    let mut c = Client::join(addrs.tcp, "jsonFuzz");
    let mut relayed = Vec::new();
    for (what, line, want) in json_line_cases() {
        let mut raw = line.clone();
        raw.push(b'\n');
        c.send_raw(&raw);
        let v = c.recv_until(what, |v| {
            v["type"] == "error" || (v["type"] == "message" && v["sender"] == "jsonFuzz")
        });
        match want {
            Want::Error(code) => {
                assert_eq!(v["type"], "error", "{what}: {v}");
                assert_eq!(v["code"], code, "{what}: {v}");
                let msg = v["message"].as_str().unwrap_or_default();
                assert!(
                    !msg.is_empty() && msg.len() < 200,
                    "{what}: error text {msg:?}"
                );
            }
            Want::Chat(text) => {
                assert_eq!(v["type"], "message", "{what}: {v}");
                assert_eq!(v["message"], text, "{what}: {v}");
                relayed.push(text.to_owned());
            }
        }
    }
    c.say("still usable");
    expect_chat(&mut c, "jsonFuzz", "still usable");
    relayed.push("still usable".to_owned());
    // Others saw exactly the relayed ones, signed by the joined name.
    assert_eq!(
        chats_until(&mut observer, "jsonFuzz", "still usable"),
        relayed
    );
    fresh_client_works(addrs.tcp);
}

#[test]
fn hostile_names_are_refused_with_name_invalid() {
    let addrs = common::start();
    let mut c = Client::connect(addrs.tcp);
    let names = [
        "é".repeat(33),
        "a\nb".into(),
        "a\tb".into(),
        "a\rb".into(),
        "a\u{0}b".into(),
        "a\u{7f}b".into(),
        "a\u{85}b".into(),
        "a\u{a0}b".into(),
        "\u{3000}x".into(),
        "\u{200b}bob".into(),
        "bo\u{200d}b".into(),
        "\u{202e}evil".into(),
        "x\u{2060}y".into(),
        "\u{feff}bob".into(),
        "\u{200b}".into(),
        "bob\n".into(),
        "@".into(),
        "/".into(),
        "\u{1b}[31mred".into(),
    ];
    for name in &names {
        c.send(&json!({"type":"join","sender":name}));
        let v = expect_error(&mut c, "name_invalid");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{name:?}: {v}"
        );
    }
    for (raw, code) in [
        (r#"{"type":"join","sender":42}"#, "bad_format"),
        (r#"{"type":"join","sender":null}"#, "bad_format"),
        (r#"{"type":"join","sender":["bob"]}"#, "bad_format"),
    ] {
        c.send_raw(format!("{raw}\n").as_bytes());
        expect_error(&mut c, code);
    }
    // 32 two-byte characters are fine, and the connection was usable all along.
    let longest = "é".repeat(32);
    c.send(&json!({"type":"join","sender":longest}));
    let w = c.recv_until("welcome", |v| v["type"] == "info");
    assert_eq!(w["user"], longest.as_str());
    c.send(&json!({"type":"who"}));
    let list = c.recv_until("who", |v| v["type"] == "user_list");
    assert_eq!(list["users"], json!([longest]));

    // Text mode refuses the same names, then accepts a good one.
    let mut t = Client::connect(addrs.tcp);
    for bad in [
        &b"bad\tname"[..],
        "\u{200b}zw".as_bytes(),
        b"@at",
        b"\xff\xfe",
    ] {
        t.send_raw(&[bad, &b"\n"[..]].concat());
        let l = t.line().expect("an answer");
        assert!(l.contains("!!! "), "{bad:?}: {l:?}");
    }
    t.send_raw(b"textOk\n");
    assert!(t.line().unwrap().contains("*** Welcome textOk!"));
}

/// Text-mode receivers get every message on exactly one line with control
/// characters replaced (`\n`, `\r`, `\t` → space; other C0, DEL, C1 → U+FFFD),
/// whoever sends it and however. Already in `tests/chat.rs`: ESC, `\t`, `\n`,
/// `\r`, BEL and U+009B from a JSON sender.
#[test]
fn text_mode_receivers_get_one_safe_line_per_message() {
    let addrs = common::start_with(|c| c.max_line_bytes = 1024);
    let mut tina = Client::connect(addrs.tcp);
    tina.send_raw(b"ctrlTina\n");
    assert!(tina.line().unwrap().contains("Welcome ctrlTina!"));
    let mut jason = Client::join(addrs.tcp, "ctrlJason");
    let mut ws = wsraw::join(addrs.ws, "ctrlWs");
    let mut tom = Client::connect(addrs.tcp);
    tom.send_raw(b"ctrlTom\n");
    assert!(tom.line().unwrap().contains("Welcome ctrlTom!"));
    // Wait until Tina has seen everyone arrive, then read only chat lines.
    for who in ["ctrlJason", "ctrlWs", "ctrlTom"] {
        let want = format!("*** Client {who} has joined the chat.");
        while !tina.line().expect("join notice").ends_with(&want) {}
    }
    let body = |l: String| l.split_once("] ").map(|(_, b)| b.to_owned()).unwrap_or(l);

    let r = "\u{fffd}";
    let cases: Vec<(&str, String)> = vec![
        ("line1\nline2", "line1 line2".into()),
        ("crlf\r\nhere", "crlf  here".into()),
        ("ends with newline\n", "ends with newline ".into()),
        ("many\n\n\n\nnewlines", "many    newlines".into()),
        ("nul\u{0}byte", format!("nul{r}byte")),
        ("del\u{7f}char", format!("del{r}char")),
        ("nel\u{85}c1", format!("nel{r}c1")),
        ("osc\u{1b}]0;title\u{7}", format!("osc{r}]0;title{r}")),
        ("back\u{8}space", format!("back{r}space")),
        ("unit\u{1f}sep", format!("unit{r}sep")),
        ("u2028\u{2028}sep", "u2028 sep".into()),
        ("rlo\u{202e}olleh\u{202c}", format!("rlo{r}olleh{r}")),
        ("isolate\u{2067}x\u{2069}", format!("isolate{r}x{r}")),
    ];
    for (text, want) in &cases {
        jason.say(text);
        assert_eq!(
            body(tina.line().expect("line")),
            format!("ctrlJason: {want}"),
            "{text:?}"
        );
        // JSON users get the exact text.
        expect_chat(&mut jason, "ctrlJason", text);
    }
    // The same through a WebSocket sender and as a private message.
    wsraw::send_text(
        &mut ws,
        json!({"type":"message","message":"ws\nline\u{1b}x"})
            .to_string()
            .as_bytes(),
    );
    assert_eq!(body(tina.line().unwrap()), format!("ctrlWs: ws line{r}x"));
    jason.say("@ctrlTina psst\nsecond\u{0}line");
    assert_eq!(
        body(tina.line().unwrap()),
        format!("[private] ctrlJason: psst second{r}line")
    );
    // From another text user: a raw NUL and ESC inside a line.
    tom.send_raw(b"tom\x00nul \x1b[2J clear\n");
    assert_eq!(
        body(tina.line().unwrap()),
        format!("ctrlTom: tom{r}nul {r}[2J clear")
    );
    expect_chat(&mut jason, "ctrlTom", "tom\u{0}nul \u{1b}[2J clear");
    // Text-mode errors: invalid UTF-8 keeps the connection.
    tom.send_raw(b"bad \xc3\x28 utf8\n");
    let l = next_line_containing(&mut tom, "!!! ");
    assert!(l.contains("UTF-8"), "{l:?}");
    jason.say("marker");
    assert_eq!(
        body(tina.line().unwrap()),
        "ctrlJason: marker",
        "nothing extra in between"
    );

    // A joined text user's over-long line: one error line, then closed.
    tom.send_raw(&[b'L'; 1500]);
    next_line_containing(&mut tom, "!!! Line too long");
    assert!(tom.closed());
    assert_eq!(
        body(tina.line().unwrap()),
        "*** Client ctrlTom disconnected unexpectedly."
    );
}

/// WebSocket cases. Already in `tests/ws.rs`: invalid UTF-8 (`\xff`, a cut
/// code point, a surrogate in a later fragment), unmasked frames, RSV bits,
/// reserved opcodes, oversized control frames, bad fragmentation, bad close
/// codes and reasons, messages over the limit (one frame, a 2^32 length, or
/// fragments), too many fragments, binary messages, and `bad_json` for a
/// non-JSON message at the size limit.
#[test]
fn malformed_websocket_input() {
    let addrs = common::start_with(|c| c.ws_max_message_bytes = 1 << 20);
    let mut observer = Client::join(addrs.tcp, "wsObserver");

    // In a valid frame: an error reply, and the session goes on.
    let mut s = wsraw::join(addrs.ws, "wsFuzz");
    let deep = nested_arrays(100_000);
    let cases: Vec<(&str, Vec<u8>, Want)> = vec![
        ("not JSON", b"not json".to_vec(), Want::Error("bad_json")),
        ("empty message", Vec::new(), Want::Error("bad_json")),
        ("a raw NUL", b"\x00".to_vec(), Want::Error("bad_json")),
        (
            "two objects in one message",
            b"{\"type\":\"who\"}\n{\"type\":\"who\"}".to_vec(),
            Want::Error("bad_json"),
        ),
        (
            "nesting depth 33",
            message_with_depth("x", 33),
            Want::Error("bad_json"),
        ),
        (
            "100,000 nested arrays",
            deep.into_bytes(),
            Want::Error("bad_json"),
        ),
        ("empty object", b"{}".to_vec(), Want::Error("bad_format")),
        (
            "array at the top",
            b"[1]".to_vec(),
            Want::Error("bad_format"),
        ),
        (
            "message as a number",
            br#"{"type":"message","message":1e999999}"#.to_vec(),
            Want::Error("bad_format"),
        ),
        (
            "trailing newline is whitespace",
            b"{\"type\":\"message\",\"message\":\"nl\"}\n".to_vec(),
            Want::Chat("nl"),
        ),
        (
            "unknown fields",
            br#"{"type":"message","message":"wsextra","n":-0,"z":[[]]}"#.to_vec(),
            Want::Chat("wsextra"),
        ),
        (
            "nesting depth 32",
            message_with_depth("wsdepth32", 32),
            Want::Chat("wsdepth32"),
        ),
    ];
    let mut relayed = Vec::new();
    for (what, payload, want) in cases {
        wsraw::send_text(&mut s, &payload);
        let v = wsraw::recv_until(&mut s, what, |v| {
            v["type"] == "error" || (v["type"] == "message" && v["sender"] == "wsFuzz")
        });
        match want {
            Want::Error(code) => assert_eq!(
                (&v["type"], &v["code"]),
                (&json!("error"), &json!(code)),
                "{what}: {v}"
            ),
            Want::Chat(text) => {
                assert_eq!(v["message"], text, "{what}: {v}");
                relayed.push(text.to_owned());
            }
        }
    }
    wsraw::send_text(&mut s, br#"{"type":"message","message":"ws still open"}"#);
    relayed.push("ws still open".to_owned());
    assert_eq!(
        chats_until(&mut observer, "wsFuzz", "ws still open"),
        relayed
    );

    // Violations fail the connection with their code; the user leaves.
    let split = {
        let mut v = wsraw::cframe(wsraw::TEXT, b"\xe2\x82");
        v.extend(wsraw::cframe(wsraw::FIN | wsraw::CONT, b"("));
        v
    };
    let msb_length = vec![
        wsraw::FIN | wsraw::TEXT,
        0x80 | 127,
        0x80,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
        1,
        2,
        3,
        4,
    ];
    let violations: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "overlong UTF-8",
            wsraw::cframe(wsraw::FIN | wsraw::TEXT, b"\xc0\xaf"),
            1007,
        ),
        (
            "code point above U+10FFFF",
            wsraw::cframe(wsraw::FIN | wsraw::TEXT, b"\xf4\x90\x80\x80"),
            1007,
        ),
        ("bad continuation byte in the next fragment", split, 1007),
        ("64-bit length with its top bit set", msb_length, 1002),
        (
            "unmasked frame after joining",
            wsraw::frame(wsraw::FIN | wsraw::TEXT, b"{}", None),
            1002,
        ),
        (
            "reserved opcode after joining",
            wsraw::cframe(wsraw::FIN | 0x5, b""),
            1002,
        ),
    ];
    for (what, bytes, code) in violations {
        let name = uniq("wsViolator");
        let mut v = wsraw::join(addrs.ws, &name);
        v.write_all(&bytes).unwrap();
        eprintln!("websocket violation: {what} → {code}");
        wsraw::expect_close(&mut v, code);
        observer.recv_until(what, |m| {
            m["message"] == format!("Client {name} disconnected unexpectedly.")
        });
    }
    // The survivor and newcomers are fine.
    wsraw::send_text(
        &mut s,
        br#"{"type":"message","message":"after violations"}"#,
    );
    expect_chat(&mut observer, "wsFuzz", "after violations");
    let mut fresh = wsraw::join(addrs.ws, "wsFresh");
    wsraw::send_text(&mut fresh, br#"{"type":"message","message":"fresh ws"}"#);
    expect_chat(&mut observer, "wsFresh", "fresh ws");
}

/// HTTP violations missing from `tests/http.rs` (which covers 400 for
/// malformed lines, missing/duplicate Host and a non-numeric Content-Length,
/// 405, 414, 431, 505 and the timeouts): each gets its status, exactly one
/// response (nothing smuggled behind it is answered), and a close.
#[test]
fn http_violations_get_one_answer_and_a_close() {
    let addrs = common::start();
    // A request: its line, `Host`, more header fields, the blank line, then
    // whatever follows the head.
    let req = |line: &str, fields: &[&str], after: &str| {
        let fields: String = fields.iter().map(|f| format!("{f}\r\n")).collect();
        format!("{line}\r\nHost: x\r\n{fields}\r\n{after}")
    };
    // A second request smuggled behind the first: must never be answered.
    let next = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let chunked_then_next = format!("0\r\n\r\n{next}");
    let (get, post) = ("GET / HTTP/1.1", "POST / HTTP/1.1");
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "NUL in the request-target",
            req("GET /\0 HTTP/1.1", &[], ""),
            400,
        ),
        ("NUL in the method", req("GE\0T / HTTP/1.1", &[], ""), 400),
        ("NUL in a header value", req(get, &["X-A: a\0b"], ""), 400),
        (
            "absurd Content-Length",
            req(get, &["Content-Length: 99999999999999999999"], ""),
            413,
        ),
        (
            "Content-Length u64::MAX",
            req(get, &["Content-Length: 18446744073709551615"], ""),
            413,
        ),
        (
            "Content-Length over 4 KiB",
            req(post, &["Content-Length: 4097"], ""),
            413,
        ),
        (
            "two different Content-Lengths",
            req(post, &["Content-Length: 5", "Content-Length: 0"], next),
            400,
        ),
        (
            "smuggling: Content-Length and Transfer-Encoding",
            req(
                post,
                &["Content-Length: 6", "Transfer-Encoding: chunked"],
                &chunked_then_next,
            ),
            400,
        ),
        (
            "smuggling: Transfer-Encoding first",
            req(
                post,
                &["Transfer-Encoding: chunked", "Content-Length: 3"],
                &chunked_then_next,
            ),
            400,
        ),
        (
            "chunked body",
            req(post, &["Transfer-Encoding: chunked"], &chunked_then_next),
            413,
        ),
        (
            "space before the colon",
            req(get, &["Transfer-Encoding : chunked"], ""),
            400,
        ),
        (
            "obs-fold with a space",
            req(get, &["X-A: a", " folded"], ""),
            400,
        ),
        (
            "obs-fold with a tab",
            req(get, &["X-A: a", "\tfolded"], ""),
            400,
        ),
    ];
    for (what, raw, status) in cases {
        let mut s = TcpStream::connect(addrs.http).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let got =
            read_to_close(&mut s, WAIT).unwrap_or_else(|| panic!("{what}: connection left open"));
        let text = String::from_utf8_lossy(&got);
        let code: Option<u16> = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|t| t.get(..3))
            .and_then(|c| c.parse().ok());
        assert_eq!(code, Some(status), "{what}: {text:?}");
        assert_eq!(
            text.matches("HTTP/1.1 ").count(),
            1,
            "{what}: more than one response: {text:?}"
        );
    }
    // The port still works.
    let mut s = TcpStream::connect(addrs.http).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = read_to_close(&mut s, WAIT).expect("closed after the answer");
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.starts_with("HTTP/1.1 200 ") && text.ends_with("ok\n"),
        "{text:?}"
    );
}
