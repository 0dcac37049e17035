//! The Redis links' protocols (`cluster::pipeline`, `cluster::subscriber`)
//! against a real redis-server on a free loopback port: pipelined commands
//! answered in order, and a subscription that survives `CLIENT KILL TYPE
//! pubsub` by subscribing again on the next connection.

#[path = "common/redis.rs"]
mod redis;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use multiuserchat::cluster::pipeline::{Pipeline, PipelineLimits};
use multiuserchat::cluster::subscriber::{Incoming, Subscriber};
use multiuserchat::proto::resp::{Frame, RespLimits};

/// Reads in small pieces until `done` holds over what `feed` produced; fails after 5 s.
fn pump<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    out: &mut Vec<T>,
    mut feed: impl FnMut(&[u8], &mut Vec<T>) -> usize,
    done: impl Fn(&[T]) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut piece = [0u8; 7];
    while !done(out) {
        assert!(Instant::now() < deadline, "timed out");
        match stream.read(&mut piece) {
            Ok(0) => panic!("closed"),
            Ok(n) => {
                buf.extend_from_slice(&piece[..n]);
                let used = feed(buf, out);
                buf.drain(..used);
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let server = redis::RedisServer::start();
    let mut s = server.connect();
    let mut p: Pipeline<&str> = Pipeline::new(PipelineLimits::default(), RespLimits::default());
    let now = Instant::now();
    p.send("set", &[b"SET", b"k", b"v"], now).expect("queued");
    p.send("incr", &[b"INCR", b"n"], now).expect("queued");
    p.send("get", &[b"GET", b"k"], now).expect("queued");
    p.send("missing", &[b"GET", b"nothing"], now)
        .expect("queued");
    p.send("wrong", &[b"INCR", b"k"], now).expect("queued");
    s.write_all(&p.take_output()).expect("write");
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    pump(
        &mut s,
        &mut buf,
        &mut out,
        |b, o| p.handle_bytes(b, o).expect("replies"),
        |o| o.len() == 5,
    );
    let got: Vec<(&str, Frame)> = out.into_iter().map(|(t, _, f)| (t, f)).collect();
    assert_eq!(got[0], ("set", Frame::Simple(b"OK".to_vec())));
    assert_eq!(got[1], ("incr", Frame::Integer(1)));
    assert_eq!(got[2], ("get", Frame::Bulk(b"v".to_vec())));
    assert_eq!(got[3], ("missing", Frame::Null));
    assert!(matches!(&got[4], ("wrong", Frame::Error(e)) if e.starts_with(b"ERR")));
    assert_eq!(p.in_flight(), 0);
}

#[test]
fn a_killed_subscription_is_subscribed_again_on_the_next_connection() {
    let server = redis::RedisServer::start();
    let mut cmd = server.connect();
    let mut p: Pipeline<u32> = Pipeline::new(PipelineLimits::default(), RespLimits::default());
    let now = Instant::now();
    let mut sub = Subscriber::new(
        Duration::from_secs(30),
        Duration::from_secs(5),
        RespLimits::default(),
        now,
    );
    sub.subscribe(b"room:a");

    let publish = |p: &mut Pipeline<u32>, cmd: &mut TcpStream, text: &[u8]| {
        p.send(0, &[b"PUBLISH", b"room:a", text], Instant::now())
            .expect("queued");
        cmd.write_all(&p.take_output()).expect("write");
        let (mut buf, mut out) = (Vec::new(), Vec::new());
        pump(
            cmd,
            &mut buf,
            &mut out,
            |b, o| p.handle_bytes(b, o).expect("reply"),
            |o| o.len() == 1,
        );
    };

    for round in 0..2 {
        let mut s = server.connect();
        sub.on_connected(Instant::now());
        s.write_all(&sub.take_output()).expect("write");
        let (mut buf, mut got) = (Vec::new(), Vec::new());
        pump(
            &mut s,
            &mut buf,
            &mut got,
            |b, o| sub.handle_bytes(b, Instant::now(), o).expect("frames"),
            |o| o.iter().any(|i| matches!(i, Incoming::Subscribed { .. })),
        );
        assert!(sub.is_subscribed(b"room:a"), "round {round}");
        let text = format!("hello {round}");
        publish(&mut p, &mut cmd, text.as_bytes());
        pump(
            &mut s,
            &mut buf,
            &mut got,
            |b, o| sub.handle_bytes(b, Instant::now(), o).expect("frames"),
            |o| o.iter().any(|i| matches!(i, Incoming::Message { .. })),
        );
        assert!(got.contains(&Incoming::Message {
            channel: b"room:a".to_vec(),
            payload: text.into_bytes(),
        }));
        // Redis drops every subscriber: the link sees EOF and reconnects.
        p.send(0, &[b"CLIENT", b"KILL", b"TYPE", b"pubsub"], Instant::now())
            .expect("queued");
        cmd.write_all(&p.take_output()).expect("write");
        let (mut cbuf, mut cout) = (Vec::new(), Vec::new());
        pump(
            &mut cmd,
            &mut cbuf,
            &mut cout,
            |b, o| p.handle_bytes(b, o).expect("reply"),
            |o| o.len() == 1,
        );
        assert_eq!(cout[0].2, Frame::Integer(1), "one subscriber killed");
        let mut rest = [0u8; 64];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            assert!(Instant::now() < deadline, "the killed link never saw EOF");
            match s.read(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => break,
            }
        }
        sub.on_disconnected();
        assert!(!sub.is_subscribed(b"room:a"));
    }
}
