//! Connection storms: thousands of connect/close cycles on every port, half-closed
//! sockets, clients that vanish mid-line, mid-frame or mid-handshake. Afterwards
//! `/stats` must show no leaked connections and no ghost users.

mod common;

use common::binary::stats;

use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

#[test]
fn connection_storm_leaves_no_leaked_connections_or_ghost_users() {
    let addrs = common::start();
    // A user who stays and must keep working throughout.
    let mut stayer = common::Client::join(addrs.tcp, "stayer");
    for i in 0..600 {
        match i % 6 {
            // Connect and close at once, on every port.
            0 => drop(TcpStream::connect(addrs.tcp).unwrap()),
            1 => drop(TcpStream::connect(addrs.ws).unwrap()),
            2 => drop(TcpStream::connect(addrs.http).unwrap()),
            // Join, then vanish mid-line.
            3 => {
                let mut s = TcpStream::connect(addrs.tcp).unwrap();
                let _ = s.write_all(
                    format!("{{\"type\":\"join\",\"sender\":\"g{i}\"}}\n{{\"type\":\"mess")
                        .as_bytes(),
                );
            }
            // Half-close after a join.
            4 => {
                let mut s = TcpStream::connect(addrs.tcp).unwrap();
                let _ = s.write_all(format!("h{i}\n").as_bytes());
                let _ = s.shutdown(Shutdown::Write);
            }
            // Vanish mid-handshake.
            _ => {
                let mut s = TcpStream::connect(addrs.ws).unwrap();
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: webs");
            }
        }
    }
    stayer.say("still here");
    let v = stayer.recv_until("own message", |v| v["message"] == "still here");
    assert_eq!(v["sender"], "stayer");
    // Connection counts are refreshed by the timer sweep (every 250 ms): let two
    // sweeps pass so the figures describe the state after the storm.
    std::thread::sleep(Duration::from_millis(600));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(addrs.http);
        let users = s["users"].as_u64();
        // The stats request itself and the stayer stay open.
        let total = s["connections_total"].as_u64();
        if users == Some(1) && total.is_some_and(|t| t <= 2) {
            break;
        }
        assert!(Instant::now() < deadline, "leak after storm: {s}");
        std::thread::sleep(Duration::from_millis(100));
    }
    stayer.send(&serde_json::json!({"type":"who"}));
    let list = stayer.expect_type("user_list");
    assert_eq!(list["users"], serde_json::json!(["stayer"]));
}
