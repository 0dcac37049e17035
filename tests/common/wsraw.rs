//! A raw WebSocket client over a plain `TcpStream`: hand-built handshakes and
//! frames (RFC 6455), so that the server's own codec is never trusted to build
//! the test input, and every byte of a protocol violation is under the test's
//! control. (`tungstenite` is the independent, well-behaved client where one
//! is wanted.)
//!
//! Client frames are masked with the fixed key [`MASK`]; server frames are
//! checked to be unmasked when read. Every read is bounded by the stream's read
//! timeout, [`WAIT`] for the streams made here.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;

use serde_json::{Value, json};

use super::WAIT;

/// RFC 6455 §1.3's sample key; any valid key works.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// The `Sec-WebSocket-Accept` for [`KEY`] (RFC 6455 §1.3).
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// The masking key of every client frame built by [`cframe`].
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

// Opcodes: the low nibble of a frame's first byte.
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;
/// The FIN bit of a frame's first byte: the last frame of a message.
pub const FIN: u8 = 0x80;

// ------------------------------------------------------------------ handshake

/// A TCP connection with a [`WAIT`] read timeout and Nagle off.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A valid opening handshake for `path` with [`KEY`]; `extra` is inserted as is
/// before the blank line (whole header lines, each ending in `\r\n`).
pub fn upgrade_request(path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// Reads a response head byte by byte (so no frame bytes are swallowed), up to
/// the blank line; whatever arrived when the peer closed or went quiet otherwise.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The status code of a response head; panics without a status line.
pub fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"))
}

/// The value of header `name` in a response head (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// Connects, sends `request` and returns the stream with the response head.
pub fn handshake(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut s = connect(addr);
    s.write_all(request.as_bytes()).unwrap();
    let head = read_head(&mut s);
    (s, head)
}

/// Sends the opening handshake for `/` on `s` and asserts `101 Switching
/// Protocols`; `s` is then a WebSocket.
pub fn upgrade(s: &mut TcpStream) {
    s.write_all(upgrade_request("/", "").as_bytes())
        .expect("handshake");
    let head = read_head(s);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head:?}");
}

/// A raw WebSocket: connects and completes the opening handshake.
pub fn open(addr: SocketAddr) -> TcpStream {
    let mut s = connect(addr);
    upgrade(&mut s);
    s
}

/// Sends `request` on `s` (an HTTP request, or a handshake to be refused) and
/// reads until the server closes: the answer's status line and body.
pub fn answer(mut s: TcpStream, request: &[u8]) -> (String, String) {
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    // The server may answer and close before reading the request.
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    let (head, body) = got.split_once("\r\n\r\n").unwrap_or((&got, ""));
    let status = head.lines().next().unwrap_or_default();
    (status.to_owned(), body.to_owned())
}

// --------------------------------------------------------------------- frames

/// One frame: `first` is the FIN/RSV/opcode byte; masked with `mask` if given
/// (clients must mask, so `None` makes a protocol violation).
pub fn frame(first: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![first];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(m | n as u8),
        n if n <= 0xFFFF => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(k) => {
            out.extend_from_slice(&k);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A client frame, masked with [`MASK`].
pub fn cframe(first: u8, payload: &[u8]) -> Vec<u8> {
    frame(first, payload, Some(MASK))
}

/// A close frame's payload: the code, then the reason.
pub fn close_body(code: u16, reason: &str) -> Vec<u8> {
    let mut b = code.to_be_bytes().to_vec();
    b.extend_from_slice(reason.as_bytes());
    b
}

/// Sends `text` as one final, masked text frame.
pub fn send_text(s: &mut TcpStream, text: &[u8]) {
    s.write_all(&cframe(FIN | TEXT, text)).expect("ws write");
}

/// Opens a WebSocket, joins as `name` and consumes the welcome.
pub fn join(addr: SocketAddr, name: &str) -> TcpStream {
    let mut s = open(addr);
    send_text(
        &mut s,
        json!({"type":"join","sender":name}).to_string().as_bytes(),
    );
    let w = recv_until(&mut s, "welcome", |v| v["type"] == "info");
    assert_eq!(w["user"], name);
    s
}

// -------------------------------------------------------------------- reading

/// Reads one server frame: (first byte, payload). `None` on EOF, reset or timeout.
pub fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).ok()?;
    assert_eq!(h[1] & 0x80, 0, "server frames are never masked");
    let len = match h[1] & 0x7F {
        126 => {
            let mut b = [0u8; 2];
            s.read_exact(&mut b).ok()?;
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            s.read_exact(&mut b).ok()?;
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).unwrap()];
    s.read_exact(&mut payload).ok()?;
    Some((h[0], payload))
}

/// Skips frames until a text frame whose JSON satisfies `pred`; fails on a
/// close frame, on EOF, or after [`WAIT`].
pub fn recv_until(s: &mut TcpStream, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        let (first, payload) =
            read_frame(s).unwrap_or_else(|| panic!("connection ended waiting for {what}"));
        assert!(
            first & 0x0F != CLOSE,
            "close frame while waiting for {what}"
        );
        if first & 0x0F == TEXT {
            let v: Value = serde_json::from_slice(&payload).expect("JSON text frame");
            if pred(&v) {
                return v;
            }
        }
    }
    panic!("never received {what}");
}

/// The next control frame, skipping data frames (chat broadcasts).
pub fn next_control(s: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let (first, payload) = read_frame(s).expect("a control frame");
        if first & 0x08 != 0 {
            return (first, payload);
        }
    }
}

/// True when the server closed the TCP connection (EOF or reset) before a read
/// timed out; discards whatever it sent first.
pub fn tcp_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Skips text and ping frames until a close frame; asserts it is final and
/// carries `code`, then that TCP closes.
pub fn expect_close(s: &mut TcpStream, code: u16) {
    loop {
        let (first, payload) = read_frame(s).expect("a close frame before EOF");
        match first & 0x0F {
            CLOSE => {
                assert_eq!(first & FIN, FIN, "close frames are final");
                assert!(payload.len() >= 2, "close frame without a code");
                assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
                break;
            }
            TEXT | PING => {}
            other => panic!("unexpected opcode {other:#x} before the close"),
        }
    }
    assert!(tcp_closed(s), "TCP stays open after the close frame");
}

/// A fresh WebSocket gets `bytes` and must fail with close `code`.
pub fn violation(addr: SocketAddr, bytes: &[u8], code: u16) {
    let mut s = open(addr);
    s.write_all(bytes).unwrap();
    expect_close(&mut s, code);
}
