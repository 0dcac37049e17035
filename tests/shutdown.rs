//! Stopping: SIGTERM or Ctrl+C (SIGINT) makes the real binary say goodbye to
//! every user on every protocol, flush, close WebSockets with 1001, stop
//! accepting, and exit with status 0 within the linger timeout.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::binary::{ServerProcess, Spawn};
use common::{Client, WAIT};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

const GOODBYE: &str = "The server is shutting down. Goodbye!";

fn stop_with(sig: libc::c_int) {
    let mut server = ServerProcess::start(Spawn::default());
    let mut json = Client::join(server.tcp, "jay");
    let text_sock = TcpStream::connect(server.tcp).expect("connect");
    text_sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut text = BufReader::new(text_sock.try_clone().expect("clone"));
    (&text_sock).write_all(b"tex\n").expect("join");
    let mut line = String::new();
    text.read_line(&mut line).expect("welcome");
    assert!(line.contains("*** Welcome tex"), "{line:?}");

    let ws_sock = TcpStream::connect(server.ws).expect("connect");
    ws_sock.set_read_timeout(Some(WAIT)).expect("timeout");
    let (mut ws, _) =
        tungstenite::client(format!("ws://{}/", server.ws).as_str(), ws_sock).expect("ws");
    ws.send(Message::text(r#"{"type":"join","sender":"wes"}"#))
        .expect("send");
    // Everyone is in once the last joiner's arrival reached the first.
    json.recv_until("wes joined", |v| {
        v["message"].as_str().is_some_and(|m| m.contains("wes"))
    });

    let started = Instant::now();
    server.signal(sig);

    // JSON lines: the goodbye notice, and nothing about users leaving, then EOF.
    let v = json.recv_until("goodbye", |v| {
        v["sender"] == "Server" && v["type"] == "message"
    });
    assert_eq!(v["message"], GOODBYE, "{v}");
    assert!(json.closed(), "JSON client not closed");
    // The listeners closed when the stop began, before the drain ends.
    assert!(TcpStream::connect(server.tcp).is_err(), "still accepting");
    drop(json);

    // Text mode: the same notice as a line, then EOF.
    let mut seen = Vec::new();
    loop {
        line.clear();
        match text.read_line(&mut line) {
            Ok(0) => break,
            Ok(_) => seen.push(line.trim_end().to_owned()),
            Err(e) => panic!("text client: {e} after {seen:?}"),
        }
    }
    assert!(
        seen.iter().any(|l| l.ends_with(GOODBYE)),
        "text client saw {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("left") || l.contains("disconnected"))
    );
    drop((text, text_sock));

    // WebSocket: the notice, then a close frame with 1001 Going Away.
    let mut got_goodbye = false;
    let code = loop {
        match ws.read() {
            Ok(Message::Text(t)) => got_goodbye |= t.contains(GOODBYE),
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => {}
            Err(e) => panic!("WebSocket ended without a close frame: {e}"),
        }
    };
    assert!(got_goodbye, "no goodbye over WebSocket");
    assert_eq!(code, Some(CloseCode::Away));
    drop(ws);

    let status = server
        .wait_exit(Duration::from_secs(5))
        .expect("server still running 5 s after the signal");
    assert!(status.success(), "{status:?}");
    // Every client closed when told to: nobody waited for the linger timeout.
    let took = started.elapsed();
    eprintln!("signal {sig}: exited {status:?} after {took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert!(TcpStream::connect(server.tcp).is_err(), "still accepting");
}

#[test]
fn sigterm_says_goodbye_on_every_protocol_and_exits_zero() {
    stop_with(libc::SIGTERM);
}

#[test]
fn sigint_does_the_same() {
    stop_with(libc::SIGINT);
}

/// Sends `sig` and requires exit status 0 within a second.
fn exits_zero_within_a_second_of(server: &mut ServerProcess, sig: libc::c_int) {
    let started = Instant::now();
    server.signal(sig);
    let status = server.wait_exit(Duration::from_secs(5)).expect("exit");
    assert!(status.success(), "{status:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn an_idle_server_stops_at_once_and_a_second_signal_cuts_the_drain() {
    // Idle: nothing to drain, so the exit is immediate.
    let mut server = ServerProcess::start(Spawn::default());
    exits_zero_within_a_second_of(&mut server, libc::SIGTERM);

    // A client that never reads its goodbye (nor closes) would hold the drain
    // for the linger timeout (2 s); a second signal ends it at once.
    let mut server = ServerProcess::start(Spawn::default());
    let _stubborn = Client::join(server.tcp, "stubborn");
    server.signal(libc::SIGTERM);
    assert!(
        server.wait_exit(Duration::from_millis(500)).is_none(),
        "exited before the lingering client closed"
    );
    exits_zero_within_a_second_of(&mut server, libc::SIGTERM);
}
