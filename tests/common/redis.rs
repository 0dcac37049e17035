//! A real `redis-server` for tests: one process per [`RedisServer`], on
//! 127.0.0.1 and a free ephemeral port, with no persistence and its own
//! scratch directory; killed (by its PID) and cleaned up on drop.
//!
//! Knows how to start, kill (`kill9`) and restart the process (a new, empty
//! one on the same port), not the RESP codec: the readiness check writes and
//! reads `PING` / `+PONG` as raw bytes, and [`RedisServer::command`] sends
//! one command and reads a one-line or bulk reply.
//!
//! Use from a test file with
//! `#[path = "common/redis.rs"] mod redis;` and `let server = redis::RedisServer::start();`.
#![allow(dead_code)]

use std::fs;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the server may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Read and write timeout of the streams from [`RedisServer::connect`].
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts with a new port when another process took the chosen one first.
const PORT_ATTEMPTS: usize = 5;

/// A running `redis-server` child process.
pub struct RedisServer {
    child: Child,
    port: u16,
    dir: PathBuf,
    /// The extra arguments it was started with, for [`RedisServer::restart`].
    extra_args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` and waits until it answers `PING`.
    ///
    /// The server runs with `--save '' --appendonly no` (nothing written to
    /// disk), `--enable-debug-command local` (so tests can ask for every RESP3
    /// type with `DEBUG PROTOCOL`), and its log in the scratch directory.
    ///
    /// Panics when `redis-server` is not installed, or when it does not start
    /// and answer within 10 s (the panic message holds its log).
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Like [`RedisServer::start`], with extra `--option value` arguments.
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            match RedisServer::try_start(extra_args) {
                Ok(server) => return server,
                // Most likely the port was taken between choosing and binding it.
                Err(log) => last_log = log,
            }
        }
        panic!("redis-server did not start after {PORT_ATTEMPTS} attempts; last log:\n{last_log}");
    }

    /// One start on a freshly chosen port; `Err(log)` if the process exited.
    fn try_start(extra_args: &[&str]) -> Result<RedisServer, String> {
        RedisServer::start_on(free_port(), extra_args)
    }

    /// Kills the server at once (SIGKILL to its PID, then reaped): no
    /// goodbye, its connections just close. Idempotent.
    pub fn kill9(&mut self) {
        // `Child::kill` sends SIGKILL to this child's PID only.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new, empty `redis-server` on the same port (with the same
    /// extra arguments, no persistence), killing the current one first if
    /// it still runs. Waits until it answers `PING`; retries for a few
    /// seconds while the port cannot be bound yet.
    ///
    /// Panics when no server could be started on the port.
    pub fn restart(&mut self) {
        self.kill9();
        let extra: Vec<String> = self.extra_args.clone();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_log = String::new();
        while Instant::now() < deadline {
            match RedisServer::start_on(self.port, &extra) {
                Ok(mut fresh) => {
                    // Take over the new process; the old directory goes.
                    std::mem::swap(self, &mut fresh);
                    // `fresh` now holds the dead process: dropping it reaps
                    // nothing new and removes the old directory.
                    return;
                }
                Err(log) => last_log = log,
            }
            thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "redis-server could not be restarted on port {}; last log:\n{last_log}",
            self.port
        );
    }

    /// One start on `port`; `Err(log)` if the process exited.
    fn start_on(port: u16, extra_args: &[&str]) -> Result<RedisServer, String> {
        let dir = scratch_dir(port);
        let log_path = dir.join("redis.log");
        let log = fs::File::create(&log_path).expect("create the redis log file");
        let log_err = log.try_clone().expect("clone the redis log file handle");
        let spawned = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--enable-debug-command", "local"])
            .arg("--dir")
            .arg(&dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let _ = fs::remove_dir_all(&dir);
                panic!(
                    "redis-server is not installed: these tests need a real Redis 7 \
                     (`apt-get install -y redis-server`; .ci/run installs it)"
                );
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&dir);
                panic!("cannot run redis-server: {e}");
            }
        };
        // From here on, Drop kills the process and removes the directory.
        let mut server = RedisServer {
            child,
            port,
            dir,
            extra_args: extra_args.iter().map(|a| (*a).to_owned()).collect(),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                return Err(format!("exited with {status}:\n{log}"));
            }
            if answers_ping(server.addr()) {
                return Ok(server);
            }
            thread::sleep(Duration::from_millis(20));
        }
        let log = fs::read_to_string(&log_path).unwrap_or_default();
        drop(server);
        panic!("redis-server did not answer PING within {START_TIMEOUT:?}; log:\n{log}");
    }

    /// The address the server listens on (127.0.0.1 and its port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection with read and write timeouts of [`IO_TIMEOUT`].
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr()).expect("connect to redis-server");
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .expect("set read timeout");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set write timeout");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream
    }
}

impl RedisServer {
    /// Sends one command (encoded here as a RESP array of bulk strings) on a
    /// new connection and returns its reply as text: the line of a simple
    /// string, integer or error without its CRLF (`+OK`, `:2`, `-ERR ...`),
    /// or the payload of a bulk string (`INFO`); `$-1` for a nil. Enough for
    /// `CONFIG SET`, `CLIENT KILL`, `GET` or `INFO`.
    pub fn command(&self, args: &[&str]) -> String {
        let mut cmd = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            cmd.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            cmd.extend_from_slice(a.as_bytes());
            cmd.extend_from_slice(b"\r\n");
        }
        let mut stream = self.connect();
        stream
            .write_all(&cmd)
            .expect("write a command to redis-server");
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while !line.ends_with(b"\r\n") {
            let n = stream
                .read(&mut byte)
                .expect("read a reply from redis-server");
            assert!(n == 1, "redis-server closed the connection");
            line.push(byte[0]);
        }
        line.truncate(line.len() - 2);
        let line = String::from_utf8_lossy(&line).into_owned();
        let Some(len) = line.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) else {
            return line;
        };
        let mut body = vec![0u8; len + 2];
        stream.read_exact(&mut body).expect("read a bulk reply");
        body.truncate(len);
        String::from_utf8_lossy(&body).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // `Child::kill` signals this child's PID only; `wait` reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A port that was free a moment ago: the kernel picks it for a listener
/// bound to port 0, and the listener is closed before the server binds it.
fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A new, empty directory under the system temp dir for one server.
fn scratch_dir(port: u16) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "multiuserchat-redis-{}-{port}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&dir).expect("create the redis scratch directory");
    dir
}

/// Whether a server at `addr` answers `PING` with `+PONG` right now.
fn answers_ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}
