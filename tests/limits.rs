//! Connection caps at the door: `--max-connections` for the whole server and
//! `--max-per-ip` for one client address. A refused client gets one short
//! answer on every port (an `error` line on the chat port, a 503 on the
//! WebSocket and HTTP ports) and is closed; the users already in keep chatting,
//! and a freed slot is usable again at once.

mod common;

use std::io::{BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;

use common::binary::{stats, wait_for};
use common::wsraw::{answer, upgrade, upgrade_request};
use common::{Client, WAIT};
use serde_json::{Value, json};

/// A TCP connection to `dst` from the loopback address `src` (bind before
/// connect, which std cannot do).
fn connect_from(src: Ipv4Addr, dst: SocketAddr) -> TcpStream {
    let SocketAddr::V4(dst) = dst else {
        panic!("IPv4 only")
    };
    let sockaddr = |a: SocketAddrV4| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; the address structs
    // are fully initialised and outlive the calls; on success the descriptor is
    // handed to `TcpStream`, which then owns it alone.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let stream = TcpStream::from_raw_fd(fd);
        let local = sockaddr(SocketAddrV4::new(src, 0));
        assert_eq!(
            libc::bind(fd, (&raw const local).cast(), len),
            0,
            "bind {src}"
        );
        let remote = sockaddr(dst);
        assert_eq!(
            libc::connect(fd, (&raw const remote).cast(), len),
            0,
            "connect {dst}"
        );
        stream
    }
}

/// The refusal a join on `stream` must get.
fn refused(stream: TcpStream, name: &str) -> Value {
    match join_on(stream, name) {
        Ok(_) => panic!("{name} was let in"),
        Err(v) => v,
    }
}

/// Joins on `stream`; `Ok` with the client, or `Err` with the refusal (after
/// checking the server closed the connection).
fn join_on(stream: TcpStream, name: &str) -> Result<Client, Value> {
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut c = Client {
        reader: BufReader::new(stream.try_clone().expect("clone")),
        writer: stream,
    };
    // The refusal may come (and the socket close) before the join is written.
    let _ = c
        .writer
        .write_all(format!("{{\"type\":\"join\",\"sender\":\"{name}\"}}\n").as_bytes());
    let v = c.recv_until("welcome or refusal", |v| {
        v["type"] == "info" || v["type"] == "error"
    });
    if v["type"] == "info" {
        return Ok(c);
    }
    assert!(c.closed(), "a refused client must be closed: {v}");
    Err(v)
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";

fn chat(from: &mut Client, to: &mut Client, text: &str) {
    from.say(text);
    let sender =
        to.recv_until(text, |v| v["type"] == "message" && v["message"] == text)["sender"].clone();
    assert!(sender.is_string());
}

#[test]
fn max_connections_refuses_newcomers_on_every_port_and_frees_slots() {
    let addrs = common::start_with(|c| c.max_connections = 3);
    let local = Ipv4Addr::LOCALHOST;
    let mut a = join_on(connect_from(local, addrs.tcp), "a").expect("a in");
    let mut b = join_on(connect_from(local, addrs.tcp), "b").expect("b in");
    let c = join_on(connect_from(local, addrs.tcp), "c").expect("c in");

    let no = refused(connect_from(local, addrs.tcp), "d");
    assert_eq!(no["code"], "server_full", "{no}");
    let (status, body) = answer(
        connect_from(local, addrs.ws),
        upgrade_request("/", "").as_bytes(),
    );
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert!(body.contains("full"), "{body}");
    let (status, _) = answer(connect_from(local, addrs.http), HEALTHZ);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");

    chat(&mut a, &mut b, "still fine");
    drop(c);
    let mut d = None;
    assert!(
        wait_for(WAIT, || {
            d = join_on(connect_from(local, addrs.tcp), "d").ok();
            d.is_some()
        }),
        "the freed slot was never reusable"
    );
    chat(d.as_mut().expect("d"), &mut a, "d made it");
}

#[test]
fn max_per_ip_limits_one_address_and_not_the_others() {
    let addrs = common::start_with(|c| {
        c.max_per_ip = 2;
        c.per_ip_exempt_loopback = false;
    });
    let greedy = Ipv4Addr::new(127, 0, 0, 2);
    let other = Ipv4Addr::new(127, 0, 0, 3);
    let mut g1 = join_on(connect_from(greedy, addrs.tcp), "g1").expect("g1 in");
    // Connections on any port count: a WebSocket takes the second slot.
    // It stays open (held until the end of the test) so it keeps its slot.
    let mut ws_slot = connect_from(greedy, addrs.ws);
    ws_slot.set_read_timeout(Some(WAIT)).expect("timeout");
    upgrade(&mut ws_slot);

    // The third from the same address is refused on every port...
    let no = refused(connect_from(greedy, addrs.tcp), "g3");
    assert_eq!(no["code"], "too_many_connections", "{no}");
    assert!(
        no["message"]
            .as_str()
            .is_some_and(|m| m.contains("your address"))
    );
    let (status, body) = answer(connect_from(greedy, addrs.http), HEALTHZ);
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert!(body.contains("Too many connections"), "{body}");

    // ...while another address is let in and chats with the first.
    let mut o = join_on(connect_from(other, addrs.tcp), "o").expect("o in");
    chat(&mut o, &mut g1, "hello from elsewhere");
    let s = stats(addrs.http);
    assert!(s["refused"].as_u64().is_some_and(|n| n >= 2), "{s}");

    // Closing one of the greedy address's connections frees its slot.
    drop(g1);
    let mut again = None;
    assert!(
        wait_for(WAIT, || {
            again = join_on(connect_from(greedy, addrs.tcp), "g4").ok();
            again.is_some()
        }),
        "the address never got its slot back"
    );
    chat(again.as_mut().expect("g4"), &mut o, "back");
    drop(ws_slot);
}

#[test]
fn loopback_is_exempt_from_the_per_address_limit_by_default() {
    let addrs = common::start_with(|c| c.max_per_ip = 2);
    let mut clients: Vec<Client> = (0..10)
        .map(|i| Client::join(addrs.tcp, &format!("local{i}")))
        .collect();
    let (first, rest) = clients.split_first_mut().expect("clients");
    first.send(&json!({"type":"who"}));
    first.recv_until("a list of all ten", |v| {
        v["type"] == "user_list" && v["users"].as_array().map(Vec::len) == Some(10)
    });
    chat(first, &mut rest[8], "ten of us");
}
