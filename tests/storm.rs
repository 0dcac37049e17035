//! Connection storms: thousands of connect/close cycles on every port from several
//! threads at once, half-closed sockets, resets (RST) mid-line and mid-frame,
//! clients that vanish mid-line, mid-frame or mid-handshake. Afterwards `/stats`
//! must show no leaked connections and no ghost users, and the one user who stayed
//! must have been served throughout.

mod common;

use common::binary::stats;
use common::wsraw::{self, FIN, TEXT, cframe};

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use multiuserchat::server::BoundAddrs;

const THREADS: usize = 4;
const CYCLES_PER_THREAD: usize = 750;

/// Makes `close` send a reset instead of a FIN.
fn reset_on_close(s: &TcpStream) {
    let lg = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor owned by `s`, and a correctly sized option.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&raw const lg).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
}

/// One storm cycle of kind `i % 10`.
fn cycle(addrs: &BoundAddrs, t: usize, i: usize) {
    let name = format!("g{t}x{i}");
    let join = format!("{{\"type\":\"join\",\"sender\":\"{name}\"}}\n");
    match i % 10 {
        // Connect and close at once, on every port.
        0 => drop(TcpStream::connect(addrs.tcp).expect("connect")),
        1 => drop(TcpStream::connect(addrs.ws).expect("connect")),
        2 => drop(TcpStream::connect(addrs.http).expect("connect")),
        // Join, then vanish mid-line.
        3 => {
            let mut s = TcpStream::connect(addrs.tcp).expect("connect");
            let _ = s.write_all(format!("{join}{{\"type\":\"mess").as_bytes());
        }
        // Join in text mode, then half-close.
        4 => {
            let mut s = TcpStream::connect(addrs.tcp).expect("connect");
            let _ = s.write_all(format!("{name}\n").as_bytes());
            let _ = s.shutdown(Shutdown::Write);
        }
        // Vanish mid-handshake.
        5 => {
            let mut s = TcpStream::connect(addrs.ws).expect("connect");
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: webs");
        }
        // Join over WebSocket, then reset mid-frame.
        6 => {
            let mut s = wsraw::open(addrs.ws);
            let _ = s.write_all(&cframe(FIN | TEXT, join.trim_end().as_bytes()));
            let frame = cframe(FIN | TEXT, br#"{"type":"message","message":"cut"}"#);
            let _ = s.write_all(&frame[..frame.len() / 2]);
            reset_on_close(&s);
        }
        // Join over JSON lines, then reset mid-line.
        7 => {
            let mut s = TcpStream::connect(addrs.tcp).expect("connect");
            let _ = s.write_all(format!("{join}{{\"type\":\"message\",\"mes").as_bytes());
            reset_on_close(&s);
        }
        // Half-close in the middle of an HTTP request.
        8 => {
            let mut s = TcpStream::connect(addrs.http).expect("connect");
            let _ = s.write_all(b"GET /index.html HTTP/1.1\r\nHo");
            let _ = s.shutdown(Shutdown::Write);
        }
        // Reset right after a complete HTTP request, reply unread.
        _ => {
            let mut s = TcpStream::connect(addrs.http).expect("connect");
            let _ = s.write_all(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
            reset_on_close(&s);
        }
    }
}

#[test]
fn connection_storm_leaves_no_leaked_connections_or_ghost_users() {
    let addrs = common::start();
    // A user who stays and must keep working throughout.
    let mut stayer = common::Client::join(addrs.tcp, "stayer");
    let started = Instant::now();
    let storms: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..CYCLES_PER_THREAD {
                    cycle(&addrs, t, i);
                }
            })
        })
        .collect();
    // The stayer is answered while the storm goes on.
    let mut round_trips = 0;
    while storms.iter().any(|s| !s.is_finished()) && round_trips < 1000 {
        let text = format!("ping {round_trips}");
        stayer.say(&text);
        let v = stayer.recv_until("own message", |v| v["message"] == text.as_str());
        assert_eq!(v["sender"], "stayer");
        round_trips += 1;
    }
    for s in storms {
        s.join().expect("storm thread");
    }
    eprintln!(
        "{} cycles in {:?}; the stayer made {round_trips} round trips meanwhile",
        THREADS * CYCLES_PER_THREAD,
        started.elapsed()
    );
    assert!(round_trips > 0);
    // Connection counts are refreshed by the timer sweep (every 250 ms): let two
    // sweeps pass so the figures describe the state after the storm.
    thread::sleep(Duration::from_millis(600));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(addrs.http);
        let users = s["users"].as_u64();
        // The stats request itself and the stayer stay open.
        let total = s["connections_total"].as_u64();
        if users == Some(1) && total.is_some_and(|t| t <= 2) {
            assert!(
                s["accepted"]
                    .as_u64()
                    .is_some_and(|a| a >= (THREADS * CYCLES_PER_THREAD) as u64),
                "{s}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "leak after storm: {s}");
        thread::sleep(Duration::from_millis(100));
    }
    stayer.send(&serde_json::json!({"type":"who"}));
    let list = stayer.expect_type("user_list");
    assert_eq!(list["users"], serde_json::json!(["stayer"]));
}
