//! The HTTP port over real loopback sockets, with raw requests: static files
//! and their headers, conditional GET, keep-alive and pipelining, every error
//! status, path traversal, the request and idle timeouts, `/healthz`,
//! `/stats`, and `--assets DIR` mode.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::wsraw::{ACCEPT, FIN, PING, PONG, cframe, upgrade_request};
use common::{Client, TempDir, WAIT};
use serde_json::Value;

/// One parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    /// (lower-case name, value) in order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == &name.to_ascii_lowercase())
            .map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 connection that can carry several requests.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Conn {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    fn send(&mut self, raw: &[u8]) {
        self.writer.write_all(raw).expect("write");
    }

    /// Reads one response; `head_only` for HEAD requests (no body whatever
    /// `Content-Length` says). `None` on EOF, reset or timeout before a status line.
    fn response(&mut self, head_only: bool) -> Option<Resp> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {line:?}");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).expect("status");
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            self.reader.read_line(&mut h).expect("header line");
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').expect("header has a colon");
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        let has_body = !head_only && !matches!(status, 100..=199 | 204 | 304);
        if has_body {
            let len: usize = resp
                .header("content-length")
                .expect("Content-Length")
                .parse()
                .expect("numeric Content-Length");
            resp.body = vec![0; len];
            self.reader.read_exact(&mut resp.body).expect("body");
        }
        Some(resp)
    }

    /// True when the server closed the connection (EOF or reset) within [`WAIT`];
    /// any bytes before that are an error.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 256];
        match self.reader.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(_) => true,
        }
    }
}

/// One request on a fresh connection.
fn request(addr: SocketAddr, raw: &str) -> Resp {
    let head_only = raw.starts_with("HEAD ");
    let mut c = Conn::open(addr);
    c.send(raw.as_bytes());
    c.response(head_only).expect("a response")
}

fn get(addr: SocketAddr, target: &str) -> Resp {
    request(
        addr,
        &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

fn asset(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// --------------------------------------------------------------- static files

#[test]
fn get_index_has_body_and_every_header() {
    let a = common::start();
    let r = get(a.http, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(
        r.header("content-length"),
        Some(r.body.len().to_string().as_str())
    );
    assert!(r.header("date").is_some_and(|d| d.ends_with(" GMT")));
    let etag = r.header("etag").expect("ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert!(r.header("cache-control").is_some());
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(
        r.header("content-security-policy")
            .is_some_and(|v| v.contains("default-src 'self'"))
    );
    assert_eq!(r.body, asset("index.html"));
    assert_eq!(get(a.http, "/index.html").body, r.body);
}

#[test]
fn head_has_the_same_headers_and_no_body() {
    let a = common::start();
    let g = get(a.http, "/");
    let mut c = Conn::open(a.http);
    c.send(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
    let h = c.response(true).expect("HEAD response");
    assert_eq!(h.status, 200);
    for name in [
        "content-type",
        "content-length",
        "etag",
        "cache-control",
        "x-content-type-options",
        "content-security-policy",
    ] {
        assert_eq!(h.header(name), g.header(name), "{name}");
    }
    // No body follows: the next response starts right away.
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let next = c.response(false).expect("second response");
    assert_eq!((next.status, next.body_text().as_str()), (200, "ok\n"));
}

#[test]
fn each_asset_type_has_its_content_type() {
    let a = common::start();
    for (name, ty) in [
        ("style.css", "text/css; charset=utf-8"),
        ("chat.js", "text/javascript; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
        ("rooms.html", "text/html; charset=utf-8"),
    ] {
        let r = get(a.http, &format!("/{name}"));
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(ty), "{name}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.body, asset(name), "{name}");
    }
}

#[test]
fn if_none_match_with_the_etag_gets_304_without_body() {
    let a = common::start();
    let etag = get(a.http, "/style.css")
        .header("etag")
        .expect("ETag")
        .to_owned();
    let mut c = Conn::open(a.http);
    c.send(
        format!("GET /style.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    );
    let r = c.response(false).expect("304");
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    // No body: the connection goes on with the next response.
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response(false).expect("next").status, 200);
    // A different tag gets the file.
    let r = request(
        a.http,
        "GET /style.css HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"nope\"\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
}

#[test]
fn query_string_is_ignored() {
    let a = common::start();
    let r = get(a.http, "/?x=1");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, asset("index.html"));
    assert_eq!(get(a.http, "/style.css?v=2").body, asset("style.css"));
}

#[test]
fn missing_file_is_404() {
    let a = common::start();
    for target in ["/nope.html", "/css/", "/.hidden", "/index.html/x"] {
        assert_eq!(get(a.http, target).status, 404, "{target}");
    }
}

#[test]
fn path_traversal_never_leaks() {
    let a = common::start();
    for target in [
        "/../Cargo.toml",
        "/%2e%2e/Cargo.toml",
        "/%2E%2E/Cargo.toml",
        "/..%2fCargo.toml",
        "/..%2FCargo.toml",
        "/a/..\\..\\x",
        "/..\\Cargo.toml",
        "/%00",
        "/index.html%00.css",
        "/./../Cargo.toml",
        "/assets/../../Cargo.toml",
        "/%252e%252e/Cargo.toml",
        "//etc/passwd",
        "/....//Cargo.toml",
    ] {
        let mut c = Conn::open(a.http);
        c.send(format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
        let Some(r) = c.response(false) else {
            continue; // refused without an answer is fine too
        };
        assert_ne!(r.status, 200, "{target}");
        let body = r.body_text();
        assert!(!body.contains("[package]"), "{target} leaked Cargo.toml");
        assert!(!body.contains("root:"), "{target} leaked /etc/passwd");
    }
}

// ------------------------------------------------------------- connection use

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let a = common::start();
    let mut c = Conn::open(a.http);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let r1 = c.response(false).expect("first");
    assert_eq!(r1.status, 200);
    assert_eq!(r1.header("connection"), Some("keep-alive"));
    c.send(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n");
    let r2 = c.response(false).expect("second");
    assert_eq!(r2.status, 200);
    assert_eq!(r2.body, asset("style.css"));
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let a = common::start();
    let mut c = Conn::open(a.http);
    c.send(
        b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n\
          HEAD /chat.js HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /missing HTTP/1.1\r\nHost: x\r\n\r\n\
          GET /favicon.svg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let r = c.response(false).expect("1");
    assert_eq!((r.status, r.body.clone()), (200, asset("style.css")));
    let r = c.response(true).expect("2");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    let r = c.response(false).expect("3");
    assert_eq!(r.status, 404);
    let r = c.response(false).expect("4");
    assert_eq!((r.status, r.body.clone()), (200, asset("favicon.svg")));
    assert!(c.closed());
}

#[test]
fn connection_close_closes_after_the_response() {
    let a = common::start();
    let mut c = Conn::open(a.http);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let r = c.response(false).expect("response");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.closed());
    // HTTP/1.0 without keep-alive too.
    let mut c = Conn::open(a.http);
    c.send(b"GET /healthz HTTP/1.0\r\n\r\n");
    assert_eq!(c.response(false).expect("1.0 response").status, 200);
    assert!(c.closed());
}

// -------------------------------------------------------------------- errors

#[test]
fn other_methods_get_405_with_allow() {
    let a = common::start();
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = request(
            a.http,
            &format!("{method} / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        );
        assert_eq!(r.status, 405, "{method}");
        let allow = r.header("allow").expect("Allow");
        assert!(allow.contains("GET") && allow.contains("HEAD"), "{allow}");
    }
    // A small body is skipped; the connection goes on.
    let mut c = Conn::open(a.http);
    c.send(b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response(false).expect("405").status, 405);
    assert_eq!(c.response(false).expect("then 200").status, 200);
}

#[test]
fn expect_100_continue_is_answered_at_once_and_closed() {
    let a = common::start();
    // The client waits for a go-ahead before its body: the final answer comes
    // without the body ever being sent, then the connection closes.
    let mut c = Conn::open(a.http);
    let t0 = Instant::now();
    c.send(
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3000\r\nExpect: 100-continue\r\n\r\n",
    );
    let r = c.response(false).expect("an answer before the body");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(c.closed());
    // A client that sends the body anyway gets one answer, never a second one
    // made of its body bytes.
    let mut c = Conn::open(a.http);
    c.send(b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\nExpect: 100-continue\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response(false).expect("405").status, 405);
    assert!(c.closed(), "the body was read as a request");
}

#[test]
fn malformed_requests_get_400() {
    let a = common::start();
    for raw in [
        "hello\r\n\r\n",
        "GET / HTTP/1.1\r\nHost x\r\n\r\n",
        "GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        "GET\r\n\r\n",
    ] {
        let mut c = Conn::open(a.http);
        c.send(raw.as_bytes());
        let r = c
            .response(false)
            .unwrap_or_else(|| panic!("no answer to {raw:?}"));
        assert_eq!(r.status, 400, "{raw:?}");
        assert!(c.closed(), "{raw:?} left the connection open");
    }
}

#[test]
fn long_uri_gets_414() {
    let a = common::start();
    let target = format!("/{}", "a".repeat(3000));
    let r = get(a.http, &target);
    assert_eq!(r.status, 414);
}

#[test]
fn huge_header_block_gets_431() {
    let a = common::start();
    let mut c = Conn::open(a.http);
    let raw = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "b".repeat(9000)
    );
    // The answer may come before the whole block is written.
    let _ = c.writer.write_all(raw.as_bytes());
    assert_eq!(c.response(false).expect("431").status, 431);
    // Many small fields too.
    let many: String = (0..100).map(|i| format!("X-F{i}: v\r\n")).collect();
    let r = request(a.http, &format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n"));
    assert_eq!(r.status, 431);
}

#[test]
fn http_2_gets_505() {
    let a = common::start();
    let r = request(a.http, "GET / HTTP/2.0\r\nHost: x\r\n\r\n");
    assert_eq!(r.status, 505);
}

// ------------------------------------------------------------------- timeouts

#[test]
fn partial_request_gets_408_or_close_within_timeout() {
    let a = common::start_with(|c| c.handshake_timeout = Duration::from_secs(1));
    let mut c = Conn::open(a.http);
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n");
    let t0 = Instant::now();
    // Keep dribbling: trickling bytes must not extend the deadline.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(200));
        let _ = c.writer.write_all(b"X-A: b\r\n");
    }
    if let Some(r) = c.response(false) {
        assert_eq!(r.status, 408);
        assert!(c.closed());
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed too late: {took:?}");
}

#[test]
fn idle_keep_alive_connection_is_closed() {
    let a = common::start_with(|c| c.http_idle_timeout = Duration::from_secs(1));
    let mut c = Conn::open(a.http);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response(false).expect("response").status, 200);
    let t0 = Instant::now();
    assert!(c.closed(), "idle connection left open");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "closed too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "closed too late: {took:?}");
}

// -------------------------------------------------------------- healthz, stats

#[test]
fn healthz_says_ok() {
    let a = common::start();
    let r = get(a.http, "/healthz");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "ok\n");
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain"))
    );
}

fn stats(addr: SocketAddr) -> Value {
    let r = get(addr, "/stats");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").is_some_and(|t| t.contains("json")));
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body_text()))
}

#[test]
fn stats_is_json_and_counts_users() {
    let a = common::start();
    let s = stats(a.http);
    assert!(s["connections"].is_object(), "{s}");
    for field in [
        "users",
        "messages_relayed",
        "bytes_in",
        "bytes_out",
        "uptime_secs",
    ] {
        assert!(s[field].is_u64(), "{field} in {s}");
    }
    assert_eq!(s["users"], 0);

    let mut alice = Client::join(a.tcp, "statsalice");
    let _bob = Client::join(a.tcp, "statsbob");
    alice.say("counted");
    alice.recv_until("own message", |v| v["message"] == "counted");
    let deadline = Instant::now() + WAIT;
    let s = loop {
        let s = stats(a.http);
        let ready = s["users"] == 2
            && s["messages_relayed"].as_u64().is_some_and(|n| n >= 1)
            && s["connections"]["tcp_json"] == 2;
        if ready || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(s["users"], 2, "{s}");
    assert_eq!(s["connections"]["tcp_json"], 2, "{s}");
    assert!(s["messages_relayed"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["bytes_in"].as_u64().unwrap() > 0, "{s}");
    assert!(s["bytes_out"].as_u64().unwrap() > 0, "{s}");
}

#[test]
fn metrics_serve_the_same_figures_for_prometheus() {
    let a = common::start();
    let mut alice = Client::join(a.tcp, "metricsalice");
    alice.say("counted");
    alice.recv_until("own message", |v| v["message"] == "counted");
    let deadline = Instant::now() + WAIT;
    let text = loop {
        let r = get(a.http, "/metrics");
        assert_eq!(r.status, 200);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/plain; version=0.0.4"))
        );
        let text = r.body_text();
        if text.contains("multiuserchat_connections{protocol=\"tcp_json\"} 1\n")
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(text.contains("multiuserchat_users 1\n"), "{text}");
    assert!(
        text.contains("multiuserchat_connections{protocol=\"tcp_json\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("multiuserchat_messages_relayed_total 1\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE multiuserchat_bytes_out_total counter\n"),
        "{text}"
    );
}

// --------------------------------------------------------------- --assets DIR

#[test]
fn assets_dir_serves_its_files_but_no_symlink_leaving_it() {
    let tmp = TempDir::new("assets");
    let root = tmp.0.join("www");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::fs::write(root.join("index.html"), "<p>from disk</p>").unwrap();
    std::fs::write(root.join("sub/page.txt"), "nested").unwrap();
    std::fs::write(root.join(".env"), "SECRET=1").unwrap();
    std::fs::write(tmp.0.join("outside.txt"), "top secret").unwrap();
    std::os::unix::fs::symlink(tmp.0.join("outside.txt"), root.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink(&tmp.0, root.join("up")).unwrap();
    std::os::unix::fs::symlink(root.join("sub/page.txt"), root.join("inside.txt")).unwrap();

    let dir = root.clone();
    let a = common::start_with(move |c| c.assets_dir = Some(dir));

    let r = get(a.http, "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.body_text(), "<p>from disk</p>");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert!(r.header("etag").is_some());
    let r = get(a.http, "/sub/page.txt");
    assert_eq!((r.status, r.body_text().as_str()), (200, "nested"));
    // A symlink that stays inside is fine.
    assert_eq!(get(a.http, "/inside.txt").body_text(), "nested");
    // Edits show up without a restart.
    std::fs::write(root.join("sub/page.txt"), "edited").unwrap();
    assert_eq!(get(a.http, "/sub/page.txt").body_text(), "edited");

    for target in [
        "/escape.txt",
        "/up/outside.txt",
        "/.env",
        "/sub",
        "/chat.js",
    ] {
        let r = get(a.http, target);
        assert_eq!(r.status, 404, "{target}");
        assert!(!r.body_text().contains("secret"), "{target}");
        assert!(!r.body_text().contains("SECRET"), "{target}");
    }
}

// ------------------------------------------------------------------ more edges

#[test]
fn head_of_builtin_routes_has_no_body() {
    let a = common::start();
    let mut c = Conn::open(a.http);
    c.send(b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\nHEAD /stats HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    let r = c.response(true).expect("HEAD /healthz");
    assert_eq!((r.status, r.header("content-length")), (200, Some("3")));
    let r = c.response(true).expect("HEAD /stats");
    assert_eq!(r.status, 200);
    let r = c.response(false).expect("GET /healthz");
    assert_eq!(r.body_text(), "ok\n");
}

#[test]
fn if_none_match_star_and_weak_tags_match() {
    let a = common::start();
    let etag = get(a.http, "/chat.js").header("etag").unwrap().to_owned();
    for inm in [
        "*".to_owned(),
        format!("W/{etag}"),
        format!("\"x\", {etag}"),
    ] {
        let r = request(
            a.http,
            &format!(
                "GET /chat.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: {inm}\r\nConnection: close\r\n\r\n"
            ),
        );
        assert_eq!(r.status, 304, "{inm}");
    }
}

#[test]
fn absolute_and_odd_targets_are_refused() {
    let a = common::start();
    for target in ["http://127.0.0.1/", "*", "index.html"] {
        let r = get(a.http, target);
        assert_eq!(r.status, 400, "{target}");
    }
}

#[test]
fn keep_alive_connection_can_upgrade_to_websocket() {
    let a = common::start();
    let mut c = Conn::open(a.http);
    c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(c.response(false).expect("healthz").status, 200);
    c.send(upgrade_request("/ws", "").as_bytes());
    let r = c.response(true).expect("101");
    assert_eq!(r.status, 101);
    assert_eq!(r.header("sec-websocket-accept"), Some(ACCEPT));
    // A masked ping gets its pong.
    c.send(&cframe(FIN | PING, b"hi"));
    let mut pong = [0u8; 4];
    c.reader.read_exact(&mut pong).expect("pong");
    assert_eq!(pong, [FIN | PONG, 2, b'h', b'i']);
}

#[test]
fn half_closed_client_still_gets_its_response() {
    let a = common::start();
    // `printf 'GET / HTTP/1.0\r\n\r\n' | nc -N host port`: the request and the
    // client's EOF arrive together; the answer must not be thrown away.
    for raw in [
        "GET /healthz HTTP/1.0\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET /nope HTTP/1.0\r\n\r\n",
    ] {
        for _ in 0..5 {
            let mut c = Conn::open(a.http);
            c.send(raw.as_bytes());
            c.writer.shutdown(std::net::Shutdown::Write).unwrap();
            let r = c
                .response(false)
                .unwrap_or_else(|| panic!("no response to {raw:?}"));
            assert!(r.status == 200 || r.status == 404, "{raw:?}");
            let t0 = Instant::now();
            assert!(c.closed());
            assert!(
                t0.elapsed() < Duration::from_secs(1),
                "close waited for the linger deadline"
            );
        }
    }
}
