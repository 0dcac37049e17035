//! The companion binaries against a real server: `chat-client` driven through
//! piped stdin, and a small `chat-load` run checked through its `--json` line.
//! Every child is killed on drop and every wait has a deadline.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::binary::{ServerProcess, Spawn};

const WAIT: Duration = Duration::from_secs(10);

fn start_server() -> ServerProcess {
    ServerProcess::start(Spawn::default())
}

/// A child process that is killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    /// Waits for the exit status, killing the child after `limit`.
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Forwards every line of `r` to a channel, so reads can have deadlines.
fn line_channel(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

struct Client {
    guard: Guard,
    stdin: Option<ChildStdin>,
    out: Receiver<String>,
    seen: Vec<String>,
}

fn start_client(port: &str, name: Option<&str>) -> Client {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chat-client"));
    cmd.args(["--host", "127.0.0.1", "--port", port]);
    if let Some(n) = name {
        cmd.args(["--name", n]);
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chat-client");
    let stdin = child.stdin.take();
    let out = line_channel(child.stdout.take().expect("client stdout"));
    Client {
        guard: Guard(child),
        stdin,
        out,
        seen: Vec::new(),
    }
}

impl Client {
    fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to chat-client");
        stdin.flush().expect("flush chat-client stdin");
    }

    /// Reads output lines until one contains `needle`; panics after [`WAIT`].
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!("no line with {needle:?}; saw {:#?}", self.seen),
            }
        }
    }
}

#[test]
fn chat_client_joins_chats_whispers_lists_and_quits() {
    let server = start_server();
    let port = server.tcp.port().to_string();

    let mut bob = start_client(&port, Some("bob"));
    bob.expect("Welcome bob");

    // No --name: the first stdin line is the name; a taken one asks again.
    let mut alice = start_client(&port, None);
    alice.say("bob");
    alice.expect("name_taken");
    alice.say("alice");
    alice.expect("Welcome alice");

    alice.say("hello everyone \u{1b}[2J");
    let line = bob.expect("alice: hello everyone");
    assert!(
        !line.contains('\u{1b}'),
        "escape reached the terminal: {line:?}"
    );

    alice.say("@bob psst");
    bob.expect("[private] alice: psst");
    alice.expect("[private to bob] psst");

    bob.say("/who");
    let who = bob.expect("online: ");
    assert!(who.contains("alice") && who.contains("bob"), "{who}");

    alice.say("/quit");
    let status = alice.guard.wait_for(WAIT).expect("alice exits after /quit");
    assert!(status.success(), "{status:?}");

    // Stdin EOF: sends exit and leaves with status 0.
    bob.stdin = None;
    let status = bob.guard.wait_for(WAIT).expect("bob exits at stdin EOF");
    assert!(status.success(), "{status:?}");
    drop(server);
}

#[test]
fn chat_client_rooms_commands() {
    let server = start_server();
    let port = server.tcp.port().to_string();
    let mut an = start_client(&port, Some("an"));
    an.expect("Welcome an");
    an.expect("You are in #lobby");
    let mut bo = start_client(&port, Some("bo"));
    bo.expect("Welcome bo");

    an.say("/join #Toan");
    an.expect("*** You are in #toan (1 user: an)");
    an.say("first words");
    let own = an.expect("an: first words");
    assert!(own.starts_with("[#toan "), "{own}");
    bo.say("/join toan");
    let joined = bo.expect("*** You are in #toan (2 users");
    assert!(joined.contains("Plain lines go here now"), "{joined}");
    let replayed = bo.expect("(history) an: first words");
    assert!(replayed.starts_with("[#toan "), "{replayed}");

    // Plain lines go to the current room, shown with the room.
    bo.say("hi toan");
    let line = an.expect("bo: hi toan");
    assert!(
        line.starts_with("[#toan ") && !line.contains("(history)"),
        "{line}"
    );

    an.say("/topic maps and more");
    bo.expect("an set the topic of #toan: maps and more");
    bo.say("/topic");
    bo.expect("Topic of #toan: maps and more");
    bo.say("/history 5");
    bo.expect("(history) bo: hi toan");
    bo.say("/rooms");
    let list = bo.expect("*** Rooms (");
    assert!(list.contains("#toan (2) maps and more"), "{list}");

    // Errors are readable; a bad name is refused and the current room stays.
    bo.say("/join #no way");
    bo.expect("usage: /join #ROOM");
    bo.say("/join #bad.name");
    bo.expect("(room_invalid)");

    // Leaving: plain lines go to the lobby again, shown as before.
    bo.say("/part");
    bo.expect("*** You left #toan.");
    bo.expect("plain lines now go to #lobby");
    bo.say("/history");
    bo.expect("No earlier messages in #lobby");
    bo.say("lobby again");
    let lobby = an.expect("bo: lobby again");
    assert!(!lobby.contains('#'), "lobby lines are unchanged: {lobby}");
    an.say("/part #nowhere");
    an.expect("(not_in_room)");
    bo.say("/help");
    bo.expect("/part [#room]");

    bo.stdin = None;
    let status = bo.guard.wait_for(WAIT).expect("bo exits at stdin EOF");
    assert!(status.success(), "{status:?}");
    drop(server);
}

#[test]
fn chat_client_reports_a_lost_server_with_failure() {
    let mut server = start_server();
    let port = server.tcp.port().to_string();
    let mut carol = start_client(&port, Some("carol"));
    carol.expect("Welcome carol");

    server.kill();
    let status = carol
        .guard
        .wait_for(WAIT)
        .expect("client exits when the server is gone");
    assert!(!status.success(), "{status:?}");
    let mut err = String::new();
    if let Some(mut e) = carol.guard.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut err);
    }
    assert!(err.contains("lost"), "stderr: {err:?}");
}

#[test]
fn chat_load_small_mixed_run_is_lossless() {
    let server = start_server();
    let pid = server.pid.to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_chat-load"))
        .args([
            "--addr",
            &server.tcp.to_string(),
            "--ws-addr",
            &server.ws.to_string(),
            "--proto",
            "mix",
        ])
        .args(["--clients", "50", "--senders", "5", "--messages", "20"])
        .args(["--timeout", "20", "--json", "--server-pid", &pid])
        .stdin(Stdio::null())
        .output()
        .expect("run chat-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"));
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["clients"], 50);
    assert_eq!(report["messages_sent"], 100);
    assert_eq!(report["deliveries"], 50 * 100);
    for field in ["lost", "duplicated", "reordered"] {
        assert_eq!(report[field], 0, "{field}: {stdout}");
    }
    assert!(report["latency_us"]["p99"].as_f64().is_some());
    assert!(report["server_cpu_secs"].as_f64().is_some());
    drop(server);
}

#[test]
fn chat_load_rooms_run_keeps_messages_in_their_rooms() {
    let server = start_server();
    let output = Command::new(env!("CARGO_BIN_EXE_chat-load"))
        .args([
            "--addr",
            &server.tcp.to_string(),
            "--ws-addr",
            &server.ws.to_string(),
            "--proto",
            "mix",
        ])
        .args(["--clients", "30", "--senders", "6", "--messages", "20"])
        .args([
            "--rooms",
            "3",
            "--private",
            "10",
            "--timeout",
            "20",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run chat-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"));
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report["rooms"], 3);
    assert_eq!(report["messages_sent"], 120);
    // 12 private messages (target + confirmation), 108 broadcasts to the 10 clients of a room.
    assert_eq!(report["private_sent"], 12);
    assert_eq!(report["deliveries"], 108 * 10 + 12 * 2);
    for field in [
        "lost",
        "duplicated",
        "reordered",
        "misdelivered",
        "unexpected",
    ] {
        assert_eq!(report[field], 0, "{field}: {stdout}");
    }
    drop(server);
}

#[test]
fn chat_load_spreads_clients_over_addresses_and_checks_one_order() {
    let server = start_server();
    let (tcp, ws) = (server.tcp.to_string(), server.ws.to_string());
    let output = Command::new(env!("CARGO_BIN_EXE_chat-load"))
        // The same server twice, once repeated, once comma-separated.
        .args(["--addr", &tcp, "--addr", &tcp])
        .args(["--ws-addr", &format!("{ws},{ws}"), "--proto", "mix"])
        .args(["--clients", "40", "--senders", "4", "--messages", "25"])
        .args(["--private", "10", "--timeout", "20", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run chat-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"));
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for field in ["lost", "duplicated", "reordered", "misdelivered"] {
        assert_eq!(report[field], 0, "{field}: {stdout}");
    }
    // Client i goes to entry i mod 2; mix makes clients 3, 7, 11, ... WebSocket,
    // all odd: 20 TCP clients on the first entry, 10 on the second, 10 WebSocket
    // clients on the second WebSocket entry.
    let counts = |key: &str| -> Vec<(String, u64)> {
        let list = report[key].as_array().cloned().unwrap_or_default();
        list.iter()
            .map(|a| {
                let addr = a["addr"].as_str().unwrap_or_default().to_string();
                (addr, a["clients"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    assert_eq!(counts("addrs"), vec![(tcp.clone(), 20), (tcp.clone(), 10)]);
    assert_eq!(counts("ws_addrs"), vec![(ws.clone(), 0), (ws.clone(), 10)]);
    assert!(stdout.contains(&format!("{tcp} (20 clients), {tcp} (10 clients)")));
    // One server, one order: every receiver got the broadcasts alike
    // (private messages are left out of the comparison).
    assert_eq!(report["order_same"], true, "{stdout}");
    assert_eq!(report["order_receivers"], 40);
    assert_eq!(report["order_left_out"], 0);
    assert_eq!(report["order_distinct"], 1);
    assert!(stdout.contains("same for 40 receivers"), "{stdout}");
    assert!(report["private_sent"].as_u64().is_some_and(|n| n > 0));
    drop(server);
}

#[test]
fn chat_load_one_address_report_lists_no_addresses() {
    let server = start_server();
    let output = Command::new(env!("CARGO_BIN_EXE_chat-load"))
        .args(["--addr", &server.tcp.to_string()])
        .args(["--clients", "5", "--senders", "2", "--messages", "5"])
        .args(["--timeout", "20", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run chat-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"));
    assert!(report.get("addrs").is_none() && report.get("ws_addrs").is_none());
    assert!(!stdout.contains("addresses"), "{stdout}");
    assert_eq!(report["order_same"], true);
    assert_eq!(report["order_receivers"], 5);
    drop(server);
}

#[test]
fn chat_load_slow_readers_are_dropped_while_the_others_get_everything() {
    let server = ServerProcess::start(Spawn {
        args: &["--max-output-bytes", "65536"],
        ..Spawn::default()
    });
    let output = Command::new(env!("CARGO_BIN_EXE_chat-load"))
        .args(["--addr", &server.tcp.to_string()])
        .args(["--clients", "6", "--senders", "1", "--messages", "1000000"])
        .args(["--message-bytes", "64", "--slow-readers", "20"])
        .args(["--stats-addr", &server.http.to_string(), "--threads", "2"])
        .args(["--duration", "20", "--timeout", "40", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run chat-load");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last line is not JSON ({e}): {stdout}"));
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        (report["threads"].as_u64(), report["joined"].as_u64()),
        (Some(2), Some(6))
    );
    assert_eq!(report["slow_joined"], 20, "{stdout}");
    assert_eq!(report["slow_dropped"], 20, "{stdout}");
    assert!(
        report["slow_all_dropped_secs"]
            .as_f64()
            .is_some_and(|s| s < 20.0)
    );
    let sent = report["messages_sent"].as_u64().unwrap_or(0);
    assert!((1..1_000_000).contains(&sent), "{stdout}");
    assert_eq!(report["deliveries"].as_u64(), Some(6 * sent));
    for field in ["lost", "duplicated", "reordered", "disconnected"] {
        assert_eq!(report[field], 0, "{field}: {stdout}");
    }
    drop(server);
}

#[test]
fn chat_load_refuses_non_loopback_targets() {
    let output = Command::new(env!("CARGO_BIN_EXE_chat-load"))
        .args([
            "--addr",
            "192.0.2.1:12345",
            "--clients",
            "1",
            "--senders",
            "1",
        ])
        .args(["--messages", "1", "--timeout", "5"])
        .output()
        .expect("run chat-load");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
}
