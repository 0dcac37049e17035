//! Soak: the real server binary under `chat-load`'s mixed scenario for a
//! bounded time, then checks that it is back to where it started.
//!
//! The server runs on 127.0.0.1 with every port 0 (ports read from its banner).
//! After `/healthz` answers and a short warm-up run (the same clients, so
//! lazily grown tables exist), the baseline is taken: `VmRSS` and the number of
//! open descriptors in `/proc/PID/fd`, with no client connected. Then
//! `chat-load --proto mix` (JSON lines, text, WebSocket) runs `SOAK_CLIENTS`
//! staying clients that all send (`SOAK_RATE` messages per second in total),
//! 20% of them as private messages, beside `SOAK_CHURN` short-lived clients per
//! second, for `SOAK_SECONDS`. Afterwards:
//! - chat-load exits 0: nothing lost, duplicated, reordered, misdelivered or
//!   unexpected, no staying client dropped, every churn cycle completed;
//! - `/stats` shows 0 users and no chat connections, and a `who` from a fresh
//!   client lists only that client;
//! - the descriptor count equals the baseline;
//! - `VmRSS` is within baseline + max(4 MiB, 25%);
//! - the server is still running.
//!
//! Every figure is printed (`--nocapture` shows them).
//!
//! Environment: `SOAK_SECONDS` (default 25), `SOAK_CLIENTS` (default 60),
//! `SOAK_RATE` (default: one message per client per second), `SOAK_CHURN`
//! (default 20). `make test` runs the defaults; `make soak` runs it in release
//! for `SOAK_SECONDS` (default 600) with `SOAK_CLIENTS` (default 300).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::binary::{ServerProcess as Server, Spawn};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);
const MIB: u64 = 1024;

/// chat-load as a child process, killed (by its own handle) and reaped on drop.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Users and open chat connections (everything but HTTP) according to `/stats`.
fn users_and_chat_connections(stats: &Value) -> (u64, u64) {
    let users = stats["users"].as_u64().expect("users");
    let conns = stats["connections"]
        .as_object()
        .expect("connections")
        .iter()
        .filter(|(proto, _)| proto.as_str() != "http")
        .map(|(_, n)| n.as_u64().expect("a count"))
        .sum();
    (users, conns)
}

/// Polls `cond` every 100 ms until it holds or `limit` passes; returns its last value.
fn poll<T>(limit: Duration, mut probe: impl FnMut() -> T, cond: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let v = probe();
        if cond(&v) || Instant::now() >= deadline {
            return v;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// What a chat-load run reported, plus the server's figures sampled meanwhile.
struct Run {
    report: Value,
    peak_rss_kib: u64,
    peak_fds: usize,
    secs: f64,
}

/// Runs chat-load against `server`; panics unless it exits 0 with a JSON report.
fn chat_load(server: &Server, clients: u64, rate: f64, churn: f64, secs: f64) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat-load"))
        .args(["--addr", &server.tcp.to_string()])
        .args(["--ws-addr", &server.ws.to_string(), "--proto", "mix"])
        .args(["--clients", &clients.to_string()])
        .args(["--senders", &clients.to_string(), "--messages", "100000000"])
        .args(["--rate", &rate.to_string(), "--duration", &secs.to_string()])
        .args(["--private", "20", "--churn", &churn.to_string()])
        .args(["--timeout", &(secs + 120.0).to_string()])
        .args(["--server-pid", &server.pid.to_string(), "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run chat-load");
    let read_all = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let stdout = read_all(Box::new(child.stdout.take().expect("stdout")));
    let stderr = read_all(Box::new(child.stderr.take().expect("stderr")));
    let mut guard = Guard(child);
    let limit = Duration::from_secs_f64(secs + 150.0);
    let (mut peak_rss_kib, mut peak_fds) = (0, 0);
    let status = loop {
        if let Ok(Some(status)) = guard.0.try_wait() {
            break status;
        }
        assert!(started.elapsed() < limit, "chat-load ran over {limit:?}");
        peak_rss_kib = peak_rss_kib.max(server.rss_kib());
        peak_fds = peak_fds.max(server.fd_count());
        thread::sleep(Duration::from_millis(250));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    eprintln!("{stdout}{stderr}");
    assert!(status.success(), "chat-load failed ({status:?})");
    let last = stdout.lines().last().unwrap_or_default();
    let report: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line of chat-load is not JSON ({e}): {last}"));
    Run {
        report,
        peak_rss_kib,
        peak_fds,
        secs: started.elapsed().as_secs_f64(),
    }
}

/// Checks a chat-load report field by field (its exit status already said OK;
/// this guards against a report that does not mean what the test assumes).
fn check_report(r: &Value) {
    assert_eq!(r["result"], "OK", "{r}");
    for field in [
        "lost",
        "duplicated",
        "reordered",
        "skipped",
        "unexpected",
        "misdelivered",
        "disconnected",
        "churn_failed",
    ] {
        assert_eq!(r[field], 0, "{field}: {r}");
    }
    assert_eq!(r["joined"], r["clients"], "{r}");
    let n = |f: &str| r[f].as_u64().unwrap_or_else(|| panic!("{f} missing: {r}"));
    assert!(n("messages_sent") > 0, "{r}");
    assert_eq!(n("deliveries"), n("expected_deliveries"), "{r}");
    assert!(n("private_sent") > 0, "{r}");
    assert_eq!(n("private_delivered"), n("private_sent"), "{r}");
    assert_eq!(n("private_confirmed"), n("private_sent"), "{r}");
    assert!(n("churn_started") > 0, "{r}");
    assert_eq!(n("churn_completed"), n("churn_started"), "{r}");
    assert_eq!(
        n("churn_voluntary") + n("churn_abrupt"),
        n("churn_completed"),
        "{r}"
    );
}

/// Waits until the server has no users and no chat connections; returns the last `/stats`.
fn wait_until_empty(server: &Server) -> Value {
    // Connection counts are refreshed by the server's timer sweep (every 250 ms).
    let stats = poll(
        Duration::from_secs(5),
        || server.stats(),
        |s| users_and_chat_connections(s) == (0, 0),
    );
    assert_eq!(
        users_and_chat_connections(&stats),
        (0, 0),
        "users or chat connections left: {stats}"
    );
    stats
}

/// Joins a fresh JSON client, asks `who`, and returns the listed users; leaves again.
fn who_from_fresh_client(server: &Server) -> Vec<String> {
    let s = TcpStream::connect(server.tcp).expect("connect the probe");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut w = s.try_clone().expect("clone");
    let mut lines = BufReader::new(s).lines();
    w.write_all(b"{\"type\":\"join\",\"sender\":\"soak-probe\"}\n{\"type\":\"who\"}\n")
        .expect("send join and who");
    let deadline = Instant::now() + WAIT;
    let users = loop {
        assert!(Instant::now() < deadline, "no user_list for the probe");
        let line = lines.next().expect("a line").expect("read a line");
        let v: Value = serde_json::from_str(&line).expect("JSON line");
        if v["type"] == "error" {
            panic!("the probe was refused: {v}");
        }
        if v["type"] == "user_list" {
            break v["users"]
                .as_array()
                .expect("users")
                .iter()
                .map(|u| u.as_str().unwrap_or_default().to_string())
                .collect::<Vec<_>>();
        }
    };
    let _ = w.write_all(b"{\"type\":\"exit\"}\n");
    users
}

#[test]
fn soak_mixed_chat_private_and_churn_returns_to_baseline() {
    let secs: f64 = env_or("SOAK_SECONDS", 25.0);
    let clients: u64 = env_or("SOAK_CLIENTS", 60);
    let rate: f64 = env_or("SOAK_RATE", clients as f64);
    let churn: f64 = env_or("SOAK_CHURN", 20.0);
    assert!(secs > 0.0 && clients >= 2 && rate > 0.0 && churn > 0.0);
    let t0 = Instant::now();
    let mut server = Server::start(Spawn::default());
    let healthy = poll(
        WAIT,
        || server.get("/healthz"),
        |b| b.as_deref() == Some("ok\n"),
    );
    assert_eq!(healthy.as_deref(), Some("ok\n"), "/healthz");

    // Warm-up: every kind of client, private messages and churn once.
    let warm = chat_load(&server, clients, rate, churn, 2.0);
    check_report(&warm.report);
    wait_until_empty(&server);
    // The last HTTP request's connection closes right after its response.
    thread::sleep(Duration::from_millis(500));
    let base_fds = server.fd_count();
    let base_rss = server.rss_kib();
    eprintln!(
        "soak: baseline after warm-up: VmRSS {base_rss} KiB, {base_fds} descriptors \
         ({clients} clients, {rate} msg/s, 20% private, churn {churn}/s, {secs} s)"
    );

    let run = chat_load(&server, clients, rate, churn, secs);
    check_report(&run.report);
    assert!(server.alive(), "the server died during the soak");

    let stats = wait_until_empty(&server);
    let users = who_from_fresh_client(&server);
    assert_eq!(users, ["soak-probe"], "user list after the soak");
    wait_until_empty(&server);

    let fds = poll(
        Duration::from_secs(5),
        || server.fd_count(),
        |&n| n == base_fds,
    );
    let bound = base_rss + (4 * MIB).max(base_rss / 4);
    let rss = poll(Duration::from_secs(5), || server.rss_kib(), |&k| k <= bound);
    let hwm = server.status_kib("VmHWM").unwrap_or(0);
    let r = &run.report;
    eprintln!(
        "soak: {:.1} s run: {} messages ({} private), {} deliveries, churn {} started / {} completed \
         ({} exit, {} abrupt) / {} failed, latency p99 {} us",
        run.secs,
        r["messages_sent"],
        r["private_sent"],
        r["deliveries"],
        r["churn_started"],
        r["churn_completed"],
        r["churn_voluntary"],
        r["churn_abrupt"],
        r["churn_failed"],
        r["latency_us"]["p99"],
    );
    eprintln!(
        "soak: VmRSS baseline {base_rss} KiB, peak {} KiB (VmHWM {hwm} KiB), after {rss} KiB \
         (bound {bound} KiB)",
        run.peak_rss_kib
    );
    eprintln!(
        "soak: descriptors baseline {base_fds}, peak {}, after {fds}",
        run.peak_fds
    );
    eprintln!("soak: /stats after: {stats}");
    assert_eq!(
        fds, base_fds,
        "descriptor leak: {base_fds} before, {fds} after"
    );
    assert!(
        rss <= bound,
        "VmRSS {rss} KiB after the soak, baseline {base_rss} KiB, bound {bound} KiB"
    );
    assert!(server.alive(), "the server died");
    eprintln!("soak: total {:.1} s", t0.elapsed().as_secs_f64());
    drop(server);
}
