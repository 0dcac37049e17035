//! The real server binary as a child process on 127.0.0.1 with every port 0:
//! the ports are read back from its start-up banner. Its memory and descriptors
//! can be read from `/proc`, and its descriptor limit can be lowered.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use super::WAIT;

/// A running server binary, killed and reaped on drop.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub tcp: SocketAddr,
    pub ws: SocketAddr,
    pub http: SocketAddr,
}

/// How to start the binary.
#[derive(Default)]
pub struct Spawn<'a> {
    /// Extra flags after `--host 127.0.0.1` and the three `--*-port 0`.
    pub args: &'a [&'a str],
    /// Soft and hard `RLIMIT_NOFILE` for the child.
    pub nofile: Option<u64>,
    /// Extra environment variables for the child.
    pub env: &'a [(&'a str, &'a str)],
    /// Pipe the child's stderr (else it is discarded); see [`ServerProcess::take_stderr`].
    pub stderr: bool,
}

impl ServerProcess {
    pub fn start(spawn: Spawn<'_>) -> ServerProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_multiuserchat"));
        cmd.args([
            "--host",
            "127.0.0.1",
            "--tcp-port",
            "0",
            "--ws-port",
            "0",
            "--http-port",
            "0",
            "--log-level",
            "warn",
        ])
        .args(spawn.args)
        .envs(spawn.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if spawn.stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        if let Some(n) = spawn.nofile {
            // SAFETY: between fork and exec only setrlimit runs, which is
            // async-signal-safe; no allocation or locking happens in the closure.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn server binary");
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout");
        // The banner names each port once; keep draining afterwards so the child
        // never blocks on a full pipe.
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut found = Vec::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if found.len() < 3
                    && let Some(addr) = banner_addr(&line)
                {
                    found.push(addr);
                    if found.len() == 3 {
                        let _ = tx.send(found.clone());
                    }
                }
            }
        });
        let addrs = match rx.recv_timeout(WAIT) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server binary printed no banner");
            }
        };
        ServerProcess {
            child,
            pid,
            tcp: addrs[0],
            ws: addrs[1],
            http: addrs[2],
        }
    }

    /// The child's stderr, once, when started with [`Spawn::stderr`].
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.stderr.take()
    }

    /// Sends `sig` to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid).expect("pid");
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
    }

    /// Waits for the process to exit, at most `limit`; `None` if it did not.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the process at once (SIGKILL: no goodbye, sockets just close).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Open descriptors of the server process.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Resident memory of the server process, in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS").expect("VmRSS")
    }

    /// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), in KiB.
    pub fn status_kib(&self, field: &str) -> Option<u64> {
        status_kib(self.pid, field)
    }

    /// `GET path` on the HTTP port: the body of a 200, else `None`.
    pub fn get(&self, path: &str) -> Option<String> {
        get(self.http, path)
    }

    /// The `/stats` document.
    pub fn stats(&self) -> Value {
        stats(self.http)
    }

    /// The `/stats` document, `None` if the server could not serve it.
    pub fn try_stats(&self) -> Option<Value> {
        try_stats(self.http)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `tcp://127.0.0.1:PORT`, `ws://127.0.0.1:PORT/`, `http://127.0.0.1:PORT/` in a banner line.
fn banner_addr(line: &str) -> Option<SocketAddr> {
    let rest = line.split("://").nth(1)?;
    rest.trim_end_matches('/').parse().ok()
}

/// A `kB` field of `/proc/PID/status` of any process, in KiB (for sampling
/// threads, which cannot borrow a [`ServerProcess`]).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let v = l.strip_prefix(field)?.strip_prefix(':')?;
        v.split_whitespace().next()?.parse().ok()
    })
}

/// Fetches `/stats` from the HTTP port.
pub fn stats(addr: SocketAddr) -> Value {
    try_stats(addr).expect("no /stats document")
}

/// `/stats`, or `None` when the server answered anything but a 200 with JSON
/// (a 503 while it is out of descriptors, say).
pub fn try_stats(addr: SocketAddr) -> Option<Value> {
    serde_json::from_str(&get(addr, "/stats")?).ok()
}

/// `GET path` with `Connection: close`: the body of a 200, else `None`.
pub fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    if !raw.starts_with("HTTP/1.1 200") {
        return None;
    }
    raw.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
}

/// Sleeps in small steps until `cond` holds; false after `limit`.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(20));
    }
}
