//! WebSocket over real loopback sockets: `tungstenite` as the independent
//! client for the chat, and hand-built frames over a plain `TcpStream` for
//! every protocol violation and its close code (RFC 6455 §7.4.1), the opening
//! handshake's error answers, and the ping / idle timers.

mod common;

use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::wsraw::{
    self, ACCEPT, BINARY, CLOSE, CONT, FIN, KEY, PING, PONG, TEXT, cframe, close_body, connect,
    expect_close, frame, handshake, header, next_control, open, read_frame, read_head, recv_until,
    send_text, status_of, tcp_closed, upgrade_request, violation,
};
use common::{Client, WAIT};
use serde_json::{Value, json};
use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::{Bytes, Message, WebSocket};

// ----------------------------------------------------------- tungstenite client

type Ws = WebSocket<TcpStream>;

fn ws_connect(addr: SocketAddr, path: &str) -> Ws {
    let s = connect(addr);
    let url = format!("ws://{addr}{path}");
    let (ws, resp) = tungstenite::client(url.as_str(), s).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

fn ws_send(ws: &mut Ws, v: &Value) {
    ws.send(Message::text(v.to_string())).expect("ws send");
}

fn ws_join(addr: SocketAddr, path: &str, name: &str) -> Ws {
    let mut ws = ws_connect(addr, path);
    ws_send(&mut ws, &json!({"type":"join","sender":name}));
    ws_recv_until(&mut ws, "welcome", |v| v["type"] == "info");
    ws
}

/// Skips messages until a text message whose JSON satisfies `pred`.
fn ws_recv_until(ws: &mut Ws, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).expect("JSON text message");
                if pred(&v) {
                    return v;
                }
            }
            Ok(_) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
    panic!("never received {what}");
}

fn lists_all(v: &Value, names: &[&str]) -> bool {
    v["type"] == "user_list"
        && names.iter().all(|n| {
            v["users"]
                .as_array()
                .is_some_and(|u| u.iter().any(|x| x == n))
        })
}

fn is_notice(v: &Value, text: &str) -> bool {
    v["type"] == "message" && v["sender"] == "Server" && v["message"] == text
}

// ------------------------------------------------------------------- handshake

#[test]
fn tungstenite_handshakes_on_ws_port_any_path_and_http_port_ws() {
    let a = common::start();
    for path in ["/", "/chat", "/any/path?x=1"] {
        let mut ws = ws_connect(a.ws, path);
        ws.close(None).unwrap();
    }
    let mut ws = ws_connect(a.http, "/ws");
    ws_send(&mut ws, &json!({"type":"join","sender":"viahttp"}));
    let welcome = ws_recv_until(&mut ws, "welcome", |v| v["type"] == "info");
    assert_eq!(welcome["user"], "viahttp");
}

#[test]
fn raw_handshake_answers_rfc_accept_value() {
    let a = common::start();
    let (_s, head) = handshake(a.ws, &upgrade_request("/", ""));
    assert_eq!(status_of(&head), 101, "{head}");
    assert_eq!(header(&head, "Sec-WebSocket-Accept"), Some(ACCEPT));
    assert!(header(&head, "Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
}

#[test]
fn wrong_version_gets_426_naming_13() {
    let a = common::start();
    let req = upgrade_request("/", "").replace("Version: 13", "Version: 8");
    for addr in [a.ws, a.http] {
        let path_req = if addr == a.http {
            req.replacen("GET / ", "GET /ws ", 1)
        } else {
            req.clone()
        };
        let (mut s, head) = handshake(addr, &path_req);
        assert_eq!(status_of(&head), 426, "{head}");
        assert_eq!(header(&head, "Sec-WebSocket-Version"), Some("13"));
        assert!(tcp_closed(&mut s));
    }
}

#[test]
fn bad_key_gets_400() {
    let a = common::start();
    for key in [
        "abc",
        "",
        "dGhlIHNhbXBsZSBub25jZQ",
        "!!!!!!!!!!!!!!!!!!!!!!==",
    ] {
        let req = upgrade_request("/", "").replace(KEY, key);
        let (mut s, head) = handshake(a.ws, &req);
        assert_eq!(status_of(&head), 400, "key {key:?}: {head}");
        assert!(tcp_closed(&mut s));
    }
}

#[test]
fn header_block_over_8k_gets_431() {
    let a = common::start();
    let pad = format!("X-Pad: {}\r\n", "a".repeat(9000));
    let mut s = connect(a.ws);
    // The server may answer before the whole block is written.
    let _ = s.write_all(upgrade_request("/", &pad).as_bytes());
    let head = read_head(&mut s);
    assert_eq!(status_of(&head), 431, "{head}");
}

#[test]
fn handshake_sent_byte_by_byte_works() {
    let a = common::start();
    let mut s = connect(a.ws);
    for b in upgrade_request("/", "").bytes() {
        s.write_all(&[b]).unwrap();
        thread::sleep(Duration::from_micros(200));
    }
    let head = read_head(&mut s);
    assert_eq!(status_of(&head), 101, "{head}");
    // Frames split byte by byte too.
    let join = cframe(FIN | TEXT, br#"{"type":"join","sender":"slowpoke"}"#);
    for b in join {
        s.write_all(&[b]).unwrap();
    }
    let welcome = recv_until(&mut s, "welcome", |v| v["type"] == "info");
    assert_eq!(welcome["user"], "slowpoke");
}

#[test]
fn unfinished_handshake_is_dropped_after_timeout() {
    let a = common::start_with(|c| c.handshake_timeout = Duration::from_secs(1));
    let mut partial = connect(a.ws);
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .unwrap();
    let mut silent = connect(a.ws);
    let t0 = Instant::now();
    assert!(tcp_closed(&mut partial), "half-sent handshake still open");
    assert!(tcp_closed(&mut silent), "silent connection still open");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed too late: {took:?}");
}

#[test]
fn a_websocket_that_never_joins_is_closed_with_1008_at_the_first_line_timeout() {
    let a = common::start_with(|c| c.first_line_timeout = Duration::from_secs(1));
    let mut idle = open(a.ws);
    idle.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    // One that joins in time stays, however long it then idles.
    let mut joined = ws_join(a.ws, "/", "punctual");
    let t0 = Instant::now();
    expect_close(&mut idle, 1008);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed too late: {took:?}");
    ws_send(
        &mut joined,
        &json!({"type":"message","message":"still here"}),
    );
    ws_recv_until(&mut joined, "own message", |v| v["message"] == "still here");
}

#[test]
fn origin_allow_list() {
    let a = common::start_with(|c| c.allowed_origins = vec!["http://good.example".into()]);
    for (addr, path) in [(a.ws, "/"), (a.http, "/ws")] {
        let bad = upgrade_request(path, "Origin: http://evil.example\r\n");
        let (mut s, head) = handshake(addr, &bad);
        assert_eq!(status_of(&head), 403, "{head}");
        assert!(tcp_closed(&mut s));

        let good = upgrade_request(path, "Origin: http://good.example\r\n");
        let (_s, head) = handshake(addr, &good);
        assert_eq!(status_of(&head), 101, "{head}");
    }
}

// ------------------------------------------------------------------------ chat

#[test]
fn websocket_and_tcp_users_chat_together() {
    let a = common::start();
    let mut wa = ws_join(a.ws, "/", "wsalice");
    let mut wb = ws_join(a.http, "/ws", "wsbob");
    let mut tc = Client::join(a.tcp, "tcpcarol");
    let all = ["wsalice", "wsbob", "tcpcarol"];

    ws_recv_until(&mut wa, "full list", |v| lists_all(v, &all));
    ws_recv_until(&mut wb, "full list", |v| lists_all(v, &all));
    tc.recv_until("full list", |v| lists_all(v, &all));

    // Public messages, each direction.
    ws_send(
        &mut wa,
        &json!({"type":"message","message":"hello from ws"}),
    );
    let is_hello = |v: &Value| v["type"] == "message" && v["message"] == "hello from ws";
    let got = tc.recv_until("ws message", is_hello);
    assert_eq!(got["sender"], "wsalice");
    ws_recv_until(&mut wb, "ws message", is_hello);

    tc.say("hello from tcp");
    let is_tcp = |v: &Value| v["type"] == "message" && v["message"] == "hello from tcp";
    let got = ws_recv_until(&mut wa, "tcp message", is_tcp);
    assert_eq!(got["sender"], "tcpcarol");
    ws_recv_until(&mut wb, "tcp message", is_tcp);

    // Private messages, each direction.
    ws_send(
        &mut wa,
        &json!({"type":"message","message":"@tcpcarol psst ws"}),
    );
    let p = tc.expect_type("private");
    assert_eq!(
        (p["sender"].as_str(), p["message"].as_str()),
        (Some("wsalice"), Some("psst ws"))
    );
    let sent = ws_recv_until(&mut wa, "private_sent", |v| v["type"] == "private_sent");
    assert_eq!(sent["to_user"], "tcpcarol");

    tc.say("@wsbob psst tcp");
    let p = ws_recv_until(&mut wb, "private", |v| v["type"] == "private");
    assert_eq!(
        (p["sender"].as_str(), p["message"].as_str()),
        (Some("tcpcarol"), Some("psst tcp"))
    );
    let sent = tc.expect_type("private_sent");
    assert_eq!(sent["to_user"], "wsbob");

    // Nobody else saw the private texts.
    ws_send(&mut wa, &json!({"type":"message","message":"marker"}));
    let seen = ws_recv_until(&mut wb, "marker", |v| {
        v["message"] == "marker" || v["message"] == "psst ws"
    });
    assert_eq!(seen["message"], "marker");
}

#[test]
fn fragmented_text_message_is_reassembled_and_relayed() {
    let a = common::start();
    let mut ws = ws_join(a.ws, "/", "fragger");
    let mut tc = Client::join(a.tcp, "reader");

    // tungstenite sends the raw frames (masked, as a client must).
    let parts = [
        r#"{"type":"message","#,
        r#""message":"split "#,
        r#"in three"}"#,
    ];
    ws.send(Message::Frame(Frame::message(
        Bytes::from(parts[0]),
        OpCode::Data(Data::Text),
        false,
    )))
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        Bytes::from(parts[1]),
        OpCode::Data(Data::Continue),
        false,
    )))
    .unwrap();
    ws.send(Message::Frame(Frame::message(
        Bytes::from(parts[2]),
        OpCode::Data(Data::Continue),
        true,
    )))
    .unwrap();
    let got = tc.recv_until("reassembled", |v| v["message"] == "split in three");
    assert_eq!(got["sender"], "fragger");

    // Raw frames, with a ping between the fragments (RFC 6455 §5.4: allowed).
    let mut raw = wsraw::join(a.ws, "rawfrag");
    let mut bytes = cframe(TEXT, br#"{"type":"message","message":"raw "#);
    bytes.extend(cframe(FIN | PING, b"mid"));
    bytes.extend(cframe(CONT, b"frag"));
    bytes.extend(cframe(FIN | CONT, br#"ments"}"#));
    raw.write_all(&bytes).unwrap();
    assert_eq!(next_control(&mut raw), (FIN | PONG, b"mid".to_vec()));
    let got = tc.recv_until("raw reassembled", |v| v["message"] == "raw fragments");
    assert_eq!(got["sender"], "rawfrag");
}

#[test]
fn ping_gets_pong_with_same_payload() {
    let a = common::start();
    let mut ws = ws_connect(a.ws, "/");
    ws.send(Message::Ping(Bytes::from_static(b"are you there?")))
        .unwrap();
    loop {
        match ws.read().expect("pong") {
            Message::Pong(p) => {
                assert_eq!(&p[..], b"are you there?");
                break;
            }
            Message::Text(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Empty and 125-byte payloads, raw.
    let mut raw = open(a.ws);
    for payload in [Vec::new(), vec![b'p'; 125]] {
        raw.write_all(&cframe(FIN | PING, &payload)).unwrap();
        assert_eq!(next_control(&mut raw), (FIN | PONG, payload));
    }
}

#[test]
fn close_handshake_echoes_1000_and_user_leaves_voluntarily() {
    let a = common::start();
    let mut ws = ws_join(a.ws, "/", "leaver");
    let mut tc = Client::join(a.tcp, "watcher");
    tc.recv_until("list with leaver", |v| lists_all(v, &["leaver", "watcher"]));

    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .unwrap();
    let echoed = loop {
        match ws.read() {
            Ok(Message::Close(f)) => break f,
            Ok(_) => {}
            Err(e) => panic!("no close echo: {e}"),
        }
    };
    assert_eq!(echoed.map(|f| f.code), Some(CloseCode::Normal));
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    assert!(
        tcp_closed(ws.get_mut()),
        "TCP stays open after the close handshake"
    );

    tc.recv_until("voluntary leave", |v| {
        is_notice(v, "Client leaver has left the chat.")
    });

    // Raw: the close echo carries the same code; an empty close gets 1000.
    let mut raw = open(a.ws);
    raw.write_all(&cframe(FIN | CLOSE, &close_body(3000, "custom")))
        .unwrap();
    expect_close(&mut raw, 3000);
    let mut raw = open(a.ws);
    raw.write_all(&cframe(FIN | CLOSE, b"")).unwrap();
    expect_close(&mut raw, 1000);
}

#[test]
fn binary_message_gets_1003() {
    let a = common::start();
    let mut ws = ws_join(a.ws, "/", "binary");
    let mut tc = Client::join(a.tcp, "seer");
    tc.recv_until("list with binary", |v| lists_all(v, &["binary", "seer"]));
    ws.send(Message::Binary(Bytes::from_static(&[1, 2, 3])))
        .unwrap();
    let close = loop {
        match ws.read() {
            Ok(Message::Close(f)) => break f,
            Ok(_) => {}
            Err(e) => panic!("no close: {e}"),
        }
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Unsupported));
    tc.recv_until("binary gone", |v| {
        v["type"] == "message"
            && v["sender"] == "Server"
            && v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("Client binary "))
    });

    let mut raw = open(a.ws);
    raw.write_all(&cframe(FIN | BINARY, b"\x00\x01")).unwrap();
    expect_close(&mut raw, 1003);
}

#[test]
fn abrupt_tcp_drop_is_an_unexpected_disconnect() {
    let a = common::start();
    let ws = ws_join(a.ws, "/", "dropper");
    let mut tc = Client::join(a.tcp, "witness");
    tc.recv_until("list with dropper", |v| {
        lists_all(v, &["dropper", "witness"])
    });
    drop(ws);
    tc.recv_until("unexpected disconnect", |v| {
        is_notice(v, "Client dropper disconnected unexpectedly.")
    });
}

// ---------------------------------------------------------- protocol violations

#[test]
fn unmasked_frame_gets_1002() {
    let a = common::start();
    violation(a.ws, &frame(FIN | TEXT, b"{}", None), 1002);
}

#[test]
fn rsv_bits_get_1002() {
    let a = common::start();
    for rsv in [0x40, 0x20, 0x10] {
        violation(a.ws, &cframe(FIN | rsv | TEXT, b"{}"), 1002);
    }
}

#[test]
fn reserved_opcodes_get_1002() {
    let a = common::start();
    for op in [0x3, 0x7, 0xB, 0xF] {
        violation(a.ws, &cframe(FIN | op, b""), 1002);
    }
}

#[test]
fn control_frame_over_125_bytes_gets_1002() {
    let a = common::start();
    violation(a.ws, &cframe(FIN | PING, &[b'x'; 126]), 1002);
    violation(
        a.ws,
        &cframe(FIN | CLOSE, &close_body(1000, &"r".repeat(124))),
        1002,
    );
}

#[test]
fn fragmented_ping_gets_1002() {
    let a = common::start();
    violation(a.ws, &cframe(PING, b"x"), 1002);
}

#[test]
fn continuation_without_open_message_gets_1002() {
    let a = common::start();
    violation(a.ws, &cframe(FIN | CONT, b"x"), 1002);
    violation(a.ws, &cframe(CONT, b"x"), 1002);
}

#[test]
fn new_data_frame_inside_fragmented_message_gets_1002() {
    let a = common::start();
    let mut bytes = cframe(TEXT, b"{\"type\":");
    bytes.extend(cframe(FIN | TEXT, b"{}"));
    violation(a.ws, &bytes, 1002);
    let mut bytes = cframe(TEXT, b"{\"type\":");
    bytes.extend(cframe(FIN | BINARY, b"\x00"));
    violation(a.ws, &bytes, 1002);
}

#[test]
fn invalid_utf8_text_gets_1007() {
    let a = common::start();
    violation(a.ws, &cframe(FIN | TEXT, b"\xff\xfe"), 1007);
    // A code point cut at the end of the message.
    violation(
        a.ws,
        &cframe(FIN | TEXT, "é".as_bytes().split_at(1).0),
        1007,
    );
    // Invalid in the second fragment.
    let mut bytes = cframe(TEXT, b"ok so far ");
    bytes.extend(cframe(FIN | CONT, b"\xed\xa0\x80"));
    violation(a.ws, &bytes, 1007);
}

#[test]
fn invalid_close_codes_get_1002() {
    let a = common::start();
    for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        let mut s = open(a.ws);
        s.write_all(&cframe(FIN | CLOSE, &close_body(code, "")))
            .unwrap();
        expect_close(&mut s, 1002);
    }
}

#[test]
fn one_byte_close_payload_gets_1002() {
    let a = common::start();
    violation(a.ws, &cframe(FIN | CLOSE, b"\x03"), 1002);
}

#[test]
fn close_reason_not_utf8_gets_1007() {
    let a = common::start();
    let mut body = close_body(1000, "");
    body.extend_from_slice(b"\xff");
    violation(a.ws, &cframe(FIN | CLOSE, &body), 1007);
}

#[test]
fn message_over_max_gets_1009() {
    let a = common::start_with(|c| c.ws_max_message_bytes = 1024);
    // One frame declaring more than the limit: refused from its header.
    violation(a.ws, &cframe(FIN | TEXT, &[b' '; 2000]), 1009);
    let mut s = open(a.ws);
    s.write_all(&[FIN | TEXT, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4])
        .unwrap();
    expect_close(&mut s, 1009);
    // Fragments that add up to more than the limit.
    let mut bytes = cframe(TEXT, &[b' '; 600]);
    bytes.extend(cframe(FIN | CONT, &[b' '; 600]));
    violation(a.ws, &bytes, 1009);

    // Exactly at the limit is fine: the (non-JSON) text gets an error reply.
    let mut s = open(a.ws);
    send_text(&mut s, &[b'x'; 1024]);
    let err = recv_until(&mut s, "error", |v| v["type"] == "error");
    assert_eq!(err["code"], "bad_json");
}

// ------------------------------------------------------------------ liveness

#[test]
fn silent_websocket_is_dropped_while_a_ponging_one_stays() {
    let a = common::start_with(|c| {
        c.ws_ping_interval = Duration::from_secs(1);
        c.ws_pong_timeout = Duration::from_secs(1);
    });
    let mut tc = Client::join(a.tcp, "observer");

    let mut awake = ws_join(a.ws, "/", "awake");
    awake
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut silent = wsraw::join(a.ws, "silent");
    let t0 = Instant::now();

    // tungstenite answers pings while it reads.
    let reader = thread::spawn(move || {
        let mut pings = 0;
        let end = Instant::now() + Duration::from_millis(3500);
        while Instant::now() < end {
            match awake.read() {
                Ok(Message::Ping(_)) => pings += 1,
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("awake client lost its connection: {e}"),
            }
        }
        (awake, pings)
    });

    // The silent client is pinged, never answers, and is dropped.
    let mut pinged = false;
    while let Some((first, payload)) = read_frame(&mut silent) {
        if first == FIN | PING {
            pinged = true;
            assert!(payload.len() <= 125);
        }
    }
    let took = t0.elapsed();
    assert!(pinged, "no ping before the drop");
    assert!(took < Duration::from_secs(4), "dropped after {took:?}");
    tc.recv_until("silent dropped", |v| {
        is_notice(v, "Client silent disconnected unexpectedly.")
    });
    assert!(t0.elapsed() < Duration::from_millis(3500));

    let (mut awake, pings) = reader.join().expect("reader thread");
    assert!(pings >= 1, "the awake client was never pinged");
    tc.send(&json!({"type":"who"}));
    let list = tc.recv_until("who answer", |v| v["type"] == "user_list");
    let users = list["users"].as_array().unwrap();
    assert!(users.iter().any(|u| u == "awake"), "{list}");
    assert!(!users.iter().any(|u| u == "silent"), "{list}");
    // And it still works.
    awake.get_mut().set_read_timeout(Some(WAIT)).unwrap();
    ws_send(
        &mut awake,
        &json!({"type":"message","message":"still here"}),
    );
    tc.recv_until("awake speaks", |v| v["message"] == "still here");
}

// ------------------------------------------------------------------ more edges

#[test]
fn frames_in_the_same_write_as_the_handshake_are_not_lost() {
    let a = common::start();
    for (addr, path, name) in [(a.ws, "/", "eagerws"), (a.http, "/ws", "eagerhttp")] {
        let mut bytes = upgrade_request(path, "").into_bytes();
        let join = format!(r#"{{"type":"join","sender":"{name}"}}"#);
        bytes.extend(cframe(FIN | TEXT, join.as_bytes()));
        bytes.extend(cframe(FIN | PING, b"early"));
        let mut s = connect(addr);
        s.write_all(&bytes).unwrap();
        let head = read_head(&mut s);
        assert_eq!(status_of(&head), 101, "{head}");
        // The pong may overtake the welcome: the hub's answers go out at the end of the turn.
        let (mut welcome, mut pong) = (None, None);
        while welcome.is_none() || pong.is_none() {
            let (first, payload) = read_frame(&mut s).expect("welcome and pong");
            match first & 0x0F {
                TEXT => {
                    let v: Value = serde_json::from_slice(&payload).unwrap();
                    if v["type"] == "info" {
                        welcome = Some(v);
                    }
                }
                PONG => pong = Some(payload),
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
        assert_eq!(welcome.unwrap()["user"], name);
        assert_eq!(pong.unwrap(), b"early");
    }
}

#[test]
fn browser_style_connection_header_lists_work() {
    let a = common::start();
    for (addr, path) in [(a.ws, "/"), (a.http, "/ws")] {
        let req = upgrade_request(path, "Origin: http://anything.example\r\n")
            .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade")
            .replace("Upgrade: websocket", "Upgrade: WebSocket");
        let (_s, head) = handshake(addr, &req);
        assert_eq!(status_of(&head), 101, "{head}");
    }
}

#[test]
fn exit_message_closes_with_1000_and_is_a_voluntary_leave() {
    let a = common::start();
    let mut tc = Client::join(a.tcp, "stayer");
    let mut s = wsraw::join(a.ws, "quitter");
    tc.recv_until("list with quitter", |v| {
        lists_all(v, &["quitter", "stayer"])
    });
    send_text(&mut s, br#"{"type":"exit"}"#);
    expect_close(&mut s, 1000);
    tc.recv_until("voluntary leave", |v| {
        is_notice(v, "Client quitter has left the chat.")
    });
}

#[test]
fn data_after_the_peers_close_is_ignored() {
    let a = common::start();
    let mut tc = Client::join(a.tcp, "listener");
    let mut s = wsraw::join(a.ws, "closer");
    let mut bytes = cframe(FIN | CLOSE, &close_body(1000, ""));
    bytes.extend(cframe(
        FIN | TEXT,
        br#"{"type":"message","message":"ghost"}"#,
    ));
    s.write_all(&bytes).unwrap();
    expect_close(&mut s, 1000);
    let v = tc.recv_until("leave or ghost", |v| {
        v["message"] == "ghost" || is_notice(v, "Client closer has left the chat.")
    });
    assert_ne!(v["message"], "ghost");
}

#[test]
fn large_message_is_relayed_with_64_bit_length() {
    let a = common::start();
    let mut sender = ws_join(a.ws, "/", "bigsender");
    let mut wr = ws_join(a.http, "/ws", "bigreader");
    let mut tc = Client::join(a.tcp, "bigtcp");
    ws_recv_until(&mut sender, "list", |v| {
        lists_all(v, &["bigsender", "bigreader", "bigtcp"])
    });
    let text = "é".repeat(30_000) + &"z".repeat(4_000); // 64,000 bytes of UTF-8
    ws_send(&mut sender, &json!({"type":"message","message":text}));
    let got = ws_recv_until(&mut wr, "big message", |v| {
        v["type"] == "message" && v["sender"] == "bigsender"
    });
    assert_eq!(got["message"].as_str(), Some(text.as_str()));
    let got = tc.recv_until("big message", |v| {
        v["type"] == "message" && v["sender"] == "bigsender"
    });
    assert_eq!(got["message"].as_str(), Some(text.as_str()));
}

#[test]
fn too_many_fragments_gets_1009() {
    let a = common::start_with(|c| c.ws_max_fragments = 4);
    let mut ok = cframe(TEXT, b"{\"type\":");
    ok.extend(cframe(CONT, b"\"who\""));
    ok.extend(cframe(CONT, b" "));
    ok.extend(cframe(FIN | CONT, b"}"));
    let mut s = open(a.ws);
    s.write_all(&ok).unwrap();
    // Four fragments are fine: a `who` before joining is answered with an error.
    recv_until(&mut s, "answer", |v| {
        v["type"] == "error" || v["type"] == "user_list"
    });

    let mut bytes = cframe(TEXT, b"a");
    for _ in 0..4 {
        bytes.extend(cframe(CONT, b"a"));
    }
    violation(a.ws, &bytes, 1009);
}

#[test]
fn close_then_half_close_still_gets_the_echo() {
    let a = common::start();
    let mut tc = Client::join(a.tcp, "halfwatch");
    for i in 0..5 {
        let name = format!("half{i}");
        let mut s = wsraw::join(a.ws, &name);
        s.write_all(&cframe(FIN | CLOSE, &close_body(1000, "")))
            .unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        expect_close(&mut s, 1000);
        let left = format!("Client {name} has left the chat.");
        tc.recv_until("voluntary leave", |v| is_notice(v, &left));
    }
    // A join followed at once by EOF still gets its welcome.
    let mut s = open(a.ws);
    send_text(&mut s, br#"{"type":"join","sender":"hit_and_run"}"#);
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let welcome = recv_until(&mut s, "welcome", |v| v["type"] == "info");
    assert_eq!(welcome["user"], "hit_and_run");
}
