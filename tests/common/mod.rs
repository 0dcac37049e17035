//! Shared test helpers: a server on 127.0.0.1 with every port 0 (running on its
//! own thread, as in production: one thread, one poll loop), and a JSON-lines client.
#![allow(dead_code)]

pub mod binary;
pub mod wsraw;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use multiuserchat::config::Config;
use multiuserchat::server::{BoundAddrs, Server};
use serde_json::Value;

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Starts a server with the defaults adjusted by `tweak`; returns its addresses.
pub fn start_with(tweak: impl FnOnce(&mut Config) + Send + 'static) -> BoundAddrs {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut cfg = Config {
            host: "127.0.0.1".parse().unwrap(),
            tcp_port: 0,
            ws_port: 0,
            http_port: 0,
            ..Config::default()
        };
        tweak(&mut cfg);
        let mut server = Server::bind(cfg).expect("bind");
        tx.send(server.local_addrs().expect("addrs")).expect("send");
        let _ = server.run();
    });
    rx.recv_timeout(WAIT).expect("server did not start")
}

/// Starts a server with the default limits.
pub fn start() -> BoundAddrs {
    start_with(|_| {})
}

/// A JSON-lines chat client.
pub struct Client {
    pub reader: BufReader<TcpStream>,
    pub writer: TcpStream,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            reader: BufReader::new(s.try_clone().unwrap()),
            writer: s,
        }
    }

    /// Connects and joins as `name`, consuming the welcome.
    pub fn join(addr: SocketAddr, name: &str) -> Client {
        let mut c = Client::connect(addr);
        c.send(&serde_json::json!({"type":"join","sender":name}));
        c.expect_type("info");
        c
    }

    pub fn send(&mut self, v: &Value) {
        let mut line = v.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).expect("write");
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
    }

    pub fn say(&mut self, text: &str) {
        self.send(&serde_json::json!({"type":"message","sender":"ignored","message":text}));
    }

    /// The next line, raw (without `\n`); `None` on EOF or timeout.
    pub fn line(&mut self) -> Option<String> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(s.trim_end_matches('\n').to_owned()),
        }
    }

    /// The next JSON object.
    pub fn recv(&mut self) -> Value {
        let line = self.line().expect("no line before timeout/EOF");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
    }

    /// Skips objects until one satisfies `pred`; fails after [`WAIT`].
    pub fn recv_until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let v = self.recv();
            if pred(&v) {
                return v;
            }
        }
        panic!("never received {what}");
    }

    pub fn expect_type(&mut self, ty: &str) -> Value {
        self.recv_until(ty, |v| v["type"] == ty)
    }

    /// True when the server closed the connection (EOF) within [`WAIT`].
    pub fn closed(&mut self) -> bool {
        let deadline = Instant::now() + WAIT;
        let mut s = String::new();
        while Instant::now() < deadline {
            s.clear();
            match self.reader.read_line(&mut s) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
        false
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "multiuserchat-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
