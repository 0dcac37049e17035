//! The cluster's Lua scripts (`cluster::scripts`) and payloads
//! (`cluster::wire`) against a real redis-server on a free loopback port:
//! loading and running by SHA-1 or source, and what each script does to
//! keys, streams and subscribers, with binary payloads.

#[path = "common/redis.rs"]
mod redis;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use multiuserchat::cluster::keys::Keys;
use multiuserchat::cluster::scripts::{self, ALL, POST, PRIVATE, REFRESH, RELEASE, Script, TOPIC};
use multiuserchat::cluster::wire::{self, RoomNote};
use multiuserchat::proto::resp::{Frame, PubSub, RespDecoder, RespLimits, encode_command};
use multiuserchat::store::RecordKind;

/// A binary payload: CR LF, NUL, a space and a byte that is not UTF-8.
const BINARY: &[u8] = b"a\r\nb\0c d\xff\r\n";

/// One connection to the server, commands in and frames out, 5 s per frame.
struct Conn {
    stream: TcpStream,
    decoder: RespDecoder,
    buf: Vec<u8>,
}

impl Conn {
    fn new(server: &redis::RedisServer) -> Conn {
        Conn {
            stream: server.connect(),
            decoder: RespDecoder::new(RespLimits::default()),
            buf: Vec::new(),
        }
    }

    fn send(&mut self, parts: &[&[u8]]) {
        let mut out = Vec::new();
        encode_command(parts, &mut out);
        self.write(&out);
    }

    fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to redis");
    }

    fn frame(&mut self) -> Frame {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut piece = [0u8; 4096];
        loop {
            if let Some((n, frame)) = self.decoder.decode(&self.buf).expect("good RESP") {
                self.buf.drain(..n);
                return frame;
            }
            assert!(Instant::now() < deadline, "no reply within 5 s");
            match self.stream.read(&mut piece) {
                Ok(0) => panic!("redis closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&piece[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn cmd(&mut self, parts: &[&[u8]]) -> Frame {
        self.send(parts);
        self.frame()
    }

    /// Runs `script` by SHA-1 (it must be loaded).
    fn run(&mut self, script: &Script, keys: &[&[u8]], args: &[&[u8]]) -> Frame {
        let mut out = Vec::new();
        script.encode_evalsha(keys, args, &mut out);
        self.write(&out);
        self.frame()
    }

    fn load_all(&mut self) {
        for script in ALL {
            let mut out = Vec::new();
            script.encode_load(&mut out);
            self.write(&out);
            assert_eq!(self.frame(), Frame::Bulk(script.sha1_hex().into_bytes()));
        }
    }

    /// A subscriber connection on `channel`, confirmed.
    fn subscriber(server: &redis::RedisServer, channel: &[u8]) -> Conn {
        let mut sub = Conn::new(server);
        sub.send(&[b"SUBSCRIBE", channel]);
        match PubSub::from_frame(sub.frame()) {
            Ok(PubSub::Subscribed { channel: c, .. }) => assert_eq!(c, channel),
            other => panic!("not a subscription confirmation: {other:?}"),
        }
        sub
    }

    /// The next message on a subscriber connection.
    fn message(&mut self) -> (Vec<u8>, Vec<u8>) {
        match PubSub::from_frame(self.frame()) {
            Ok(PubSub::Message { channel, payload }) => (channel, payload),
            other => panic!("not a message: {other:?}"),
        }
    }
}

fn bulk(frame: &Frame) -> &[u8] {
    frame
        .as_bytes()
        .unwrap_or_else(|| panic!("not a string: {frame:?}"))
}

fn int(frame: &Frame) -> i64 {
    frame
        .as_integer()
        .unwrap_or_else(|| panic!("not an integer: {frame:?}"))
}

/// The stream's entries as (ID, field, value).
fn entries(conn: &mut Conn, log: &[u8]) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let Frame::Array(items) = conn.cmd(&[b"XRANGE", log, b"-", b"+"]) else {
        panic!("XRANGE gives an array");
    };
    items
        .into_iter()
        .map(|item| {
            let Frame::Array(pair) = item else {
                panic!("an entry is an array")
            };
            let [Frame::Bulk(id), Frame::Array(fields)] = &pair[..] else {
                panic!("an entry is [id, fields]")
            };
            let [Frame::Bulk(field), Frame::Bulk(value)] = &fields[..] else {
                panic!("one field: {fields:?}")
            };
            (
                String::from_utf8(id.clone()).expect("an ASCII id"),
                field.clone(),
                value.clone(),
            )
        })
        .collect()
}

fn post(conn: &mut Conn, keys: &Keys, room: &str, payload: &[u8], maxlen: &[u8]) -> Frame {
    conn.run(
        &POST,
        &[&keys.room_seq(room), &keys.room_log(room)],
        &[&keys.room_channel(room), payload, maxlen],
    )
}

#[test]
fn scripts_load_to_their_sha1_and_run_by_sha_or_by_source() {
    let server = redis::RedisServer::start();
    let mut c = Conn::new(&server);
    c.load_all();
    let key: &[u8] = b"muc:name:ann";
    c.cmd(&[b"SET", key, b"v"]);
    assert_eq!(c.run(&RELEASE, &[key], &[b"other"]), Frame::Integer(0));

    assert_eq!(c.cmd(&[b"SCRIPT", b"FLUSH"]), Frame::Simple(b"OK".to_vec()));
    let reply = c.run(&RELEASE, &[key], &[b"v"]);
    let message = reply.error_message().expect("an error after SCRIPT FLUSH");
    assert!(
        message.starts_with(b"NOSCRIPT"),
        "{}",
        String::from_utf8_lossy(message)
    );
    assert!(scripts::is_noscript(&reply));
    assert_eq!(c.cmd(&[b"GET", key]), Frame::Bulk(b"v".to_vec()));

    // The fallback: EVAL runs the source (and caches it).
    let mut out = Vec::new();
    RELEASE.encode_eval(&[key], &[b"v"], &mut out);
    c.write(&out);
    assert_eq!(c.frame(), Frame::Integer(1));
    assert_eq!(c.cmd(&[b"EXISTS", key]), Frame::Integer(0));
    assert_eq!(c.run(&RELEASE, &[key], &[b"v"]), Frame::Integer(0));

    // REFRESH was flushed too (EVAL cached RELEASE only); loading puts it back.
    assert!(scripts::is_noscript(&c.run(
        &REFRESH,
        &[key],
        &[b"w", b"30"]
    )));
    c.load_all();
    // The argument-list form, as `Pipeline::send` takes it.
    let call = REFRESH.evalsha(&[key], &[b"w", b"30"]);
    assert_eq!(c.cmd(&call.parts()), Frame::Integer(1));
    assert_eq!(c.cmd(&[b"GET", key]), Frame::Bulk(b"w".to_vec()));
}

#[test]
fn post_numbers_logs_and_publishes_each_line_in_order() {
    let server = redis::RedisServer::start();
    let keys = Keys::default();
    let room = "#lobby";
    let mut c = Conn::new(&server);
    c.load_all();
    let mut sub = Conn::subscriber(&server, &keys.room_channel(room));

    let mut line = Vec::new();
    wire::encode_line(room, 1_700_000_000_000, "Ann", "hi\r\nthere\0", &mut line)
        .expect("a line payload");
    let payloads: [&[u8]; 4] = [&line, BINARY, b"x", b"m 9 nested"];
    for (i, payload) in payloads.iter().enumerate() {
        let seq = i as i64 + 1;
        assert_eq!(
            post(&mut c, &keys, room, payload, b"1000"),
            Frame::Integer(seq)
        );
    }
    let log = entries(&mut c, &keys.room_log(room));
    assert_eq!(log.len(), payloads.len());
    for (i, (id, field, value)) in log.iter().enumerate() {
        assert_eq!(id, &format!("{}-0", i + 1));
        assert_eq!(field, b"m");
        assert_eq!(value, payloads[i]);
    }
    assert_eq!(
        c.cmd(&[b"GET", &keys.room_seq(room)]),
        Frame::Bulk(b"4".to_vec())
    );

    for (i, payload) in payloads.iter().enumerate() {
        let (channel, note) = sub.message();
        assert_eq!(channel, keys.room_channel(room));
        let mut want = format!("m {} ", i + 1).into_bytes();
        want.extend_from_slice(payload);
        assert_eq!(note, want);
        assert_eq!(
            wire::decode_room_note(&note),
            Ok(RoomNote::Line {
                seq: i as u64 + 1,
                payload
            })
        );
    }
    // The first line comes back as the record it was, numbered; the stream
    // holds the same bytes, which the log's own decoder reads.
    let rec = wire::decode_line(1, &log[0].2).expect("a line record");
    assert_eq!(rec.seq, 1);
    assert_eq!(
        rec.kind,
        RecordKind::Message {
            from: "Ann".into(),
            text: "hi\r\nthere\0".into()
        }
    );
    assert!(multiuserchat::store::record::decode(&log[0].2).is_ok());
}

#[test]
fn post_trims_the_stream_approximately() {
    let server = redis::RedisServer::start();
    let keys = Keys::default();
    let room = "#busy";
    let mut c = Conn::new(&server);
    c.load_all();
    let (seq, log, channel) = (
        keys.room_seq(room),
        keys.room_log(room),
        keys.room_channel(room),
    );
    const POSTS: i64 = 5000;
    // Pipelined: every command written first, then every reply read.
    let mut out = Vec::new();
    for _ in 0..POSTS {
        POST.encode_evalsha(&[&seq, &log], &[&channel, BINARY, b"100"], &mut out);
    }
    c.write(&out);
    for n in 1..=POSTS {
        assert_eq!(c.frame(), Frame::Integer(n));
    }
    let len = int(&c.cmd(&[b"XLEN", &log]));
    assert!((100..=300).contains(&len), "XLEN {len} after {POSTS} posts");
    let Frame::Array(last) = c.cmd(&[b"XREVRANGE", &log, b"+", b"-", b"COUNT", b"1"]) else {
        panic!("XREVRANGE gives an array");
    };
    let Frame::Array(entry) = &last[0] else {
        panic!("an entry")
    };
    assert_eq!(entry[0], Frame::Bulk(format!("{POSTS}-0").into_bytes()));
}

#[test]
fn post_continues_above_the_stream_when_the_counter_is_lost_or_behind() {
    let server = redis::RedisServer::start();
    let keys = Keys::default();
    let room = "#r";
    let (seq, log) = (keys.room_seq(room), keys.room_log(room));
    let mut c = Conn::new(&server);
    c.load_all();
    for n in 1..=3 {
        assert_eq!(post(&mut c, &keys, room, b"x", b"1000"), Frame::Integer(n));
    }
    // Lost: the counter starts over at 1, the stream is at 3.
    assert_eq!(c.cmd(&[b"DEL", &seq]), Frame::Integer(1));
    assert_eq!(post(&mut c, &keys, room, b"y", b"1000"), Frame::Integer(4));
    assert_eq!(c.cmd(&[b"GET", &seq]), Frame::Bulk(b"4".to_vec()));
    // Behind, and equal to the stream's last ID.
    c.cmd(&[b"SET", &seq, b"3"]);
    assert_eq!(post(&mut c, &keys, room, b"z", b"1000"), Frame::Integer(5));
    c.cmd(&[b"SET", &seq, b"4"]);
    assert_eq!(post(&mut c, &keys, room, b"z", b"1000"), Frame::Integer(6));
    // The newest entry deleted: its ID stays used (the stream's last
    // generated ID), so the seq goes past it, not back to it.
    assert_eq!(c.cmd(&[b"XDEL", &log, b"6-0"]), Frame::Integer(1));
    c.cmd(&[b"DEL", &seq]);
    assert_eq!(post(&mut c, &keys, room, b"w", b"1000"), Frame::Integer(7));
    let ids: Vec<String> = entries(&mut c, &log)
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    assert_eq!(ids, ["1-0", "2-0", "3-0", "4-0", "5-0", "7-0"]);
    // Ahead of the stream: the counter's number is used as it is.
    c.cmd(&[b"SET", &seq, b"99"]);
    assert_eq!(
        post(&mut c, &keys, room, b"v", b"1000"),
        Frame::Integer(100)
    );
    // Large seqs are written in plain digits (Lua's default format would
    // give `1e+15`), in the ID and in the note.
    let mut sub = Conn::subscriber(&server, &keys.room_channel(room));
    c.cmd(&[b"SET", &seq, b"999999999999999"]);
    assert_eq!(
        post(&mut c, &keys, room, b"v", b"1000"),
        Frame::Integer(1_000_000_000_000_000)
    );
    assert_eq!(sub.message().1, b"m 1000000000000000 v");
    c.cmd(&[b"DEL", &seq]);
    assert_eq!(
        post(&mut c, &keys, room, b"u", b"1000"),
        Frame::Integer(1_000_000_000_000_001)
    );
    assert_eq!(
        entries(&mut c, &log).last().map(|(id, _, _)| id.clone()),
        Some("1000000000000001-0".to_string())
    );

    // Any other XADD failure is reported as it is, not papered over.
    let reply = post(&mut c, &keys, room, b"v", b"not-a-number");
    let message = reply.error_message().expect("an error for a bad MAXLEN");
    assert!(
        String::from_utf8_lossy(message).contains("integer"),
        "{}",
        String::from_utf8_lossy(message)
    );
    let reply = post(&mut c, &keys, "#fresh", b"v", b"not-a-number");
    let message = reply.error_message().expect("an error for a bad MAXLEN");
    assert!(
        String::from_utf8_lossy(message).contains("integer"),
        "{}",
        String::from_utf8_lossy(message)
    );
}

#[test]
fn release_deletes_only_with_the_right_value() {
    let server = redis::RedisServer::start();
    let mut c = Conn::new(&server);
    c.load_all();
    let key = Keys::default().name("ann");
    assert_eq!(c.run(&RELEASE, &[&key], &[b"mine"]), Frame::Integer(0));
    c.cmd(&[b"SET", &key, BINARY]);
    assert_eq!(c.run(&RELEASE, &[&key], &[b"mine"]), Frame::Integer(0));
    assert_eq!(c.run(&RELEASE, &[&key], &[&BINARY[..4]]), Frame::Integer(0));
    assert_eq!(c.cmd(&[b"GET", &key]), Frame::Bulk(BINARY.to_vec()));
    assert_eq!(c.run(&RELEASE, &[&key], &[BINARY]), Frame::Integer(1));
    assert_eq!(c.cmd(&[b"EXISTS", &key]), Frame::Integer(0));
}

#[test]
fn refresh_extends_ours_reclaims_a_lost_one_and_refuses_anothers() {
    let server = redis::RedisServer::start();
    let mut c = Conn::new(&server);
    c.load_all();
    let key = Keys::default().name("ann");
    let ours = wire::encode_claim("node-a", (1, 2), "Ann").expect("a claim");
    let theirs = wire::encode_claim("node-b", (1, 2), "ANN").expect("a claim");

    c.cmd(&[b"SET", &key, &ours, b"EX", b"10"]);
    assert_eq!(
        c.run(&REFRESH, &[&key], &[&ours, b"1000"]),
        Frame::Integer(1)
    );
    let ttl = int(&c.cmd(&[b"TTL", &key]));
    assert!((990..=1000).contains(&ttl), "TTL {ttl}");

    assert_eq!(c.cmd(&[b"DEL", &key]), Frame::Integer(1));
    assert_eq!(c.run(&REFRESH, &[&key], &[&ours, b"50"]), Frame::Integer(1));
    assert_eq!(c.cmd(&[b"GET", &key]), Frame::Bulk(ours.clone()));
    let ttl = int(&c.cmd(&[b"TTL", &key]));
    assert!((40..=50).contains(&ttl), "TTL {ttl}");

    c.cmd(&[b"SET", &key, &theirs, b"EX", b"10"]);
    assert_eq!(
        c.run(&REFRESH, &[&key], &[&ours, b"1000"]),
        Frame::Integer(0)
    );
    assert_eq!(c.cmd(&[b"GET", &key]), Frame::Bulk(theirs));
    let ttl = int(&c.cmd(&[b"TTL", &key]));
    assert!((1..=10).contains(&ttl), "their TTL untouched: {ttl}");
}

#[test]
fn private_reaches_a_listener_of_a_claimed_name_only() {
    let server = redis::RedisServer::start();
    let keys = Keys::default();
    let mut c = Conn::new(&server);
    c.load_all();
    let (name, channel) = (keys.name("zoë"), keys.user_channel("zoë"));
    let mut payload = Vec::new();
    wire::encode_private("Ann", "psst \r\n\0 😀", &mut payload).expect("a payload");

    // Nobody holds the name: nil, and nothing published.
    let mut sub = Conn::subscriber(&server, &channel);
    assert_eq!(
        c.run(&PRIVATE, &[&name], &[&channel, &payload]),
        Frame::Null
    );
    // Held, but nobody listens.
    let claim = wire::encode_claim("node-a", (7, 1), "Zoë").expect("a claim");
    c.cmd(&[b"SET", &name, &claim]);
    let other = keys.user_channel("nobody");
    assert_eq!(c.run(&PRIVATE, &[&name], &[&other, &payload]), Frame::Null);
    // Held and listened to: the claim comes back, the listener gets the payload.
    let reply = c.run(&PRIVATE, &[&name], &[&channel, &payload]);
    assert_eq!(bulk(&reply), &claim[..]);
    let got = wire::decode_claim(bulk(&reply)).expect("a claim value");
    assert_eq!((got.node, got.conn, got.display), ("node-a", (7, 1), "Zoë"));
    assert_eq!(sub.message(), (channel.clone(), payload.clone()));
    assert_eq!(
        wire::decode_private(&payload),
        Ok(("Ann", "psst \r\n\0 😀"))
    );
    // Only that one message reached the listener (the first try published nothing).
    sub.send(&[b"PING"]);
    assert!(matches!(
        PubSub::from_frame(sub.frame()),
        Ok(PubSub::Pong { .. })
    ));
    // Raw binary payloads pass unchanged too.
    let reply = c.run(&PRIVATE, &[&name], &[&channel, BINARY]);
    assert_eq!(bulk(&reply), &claim[..]);
    assert_eq!(sub.message(), (channel, BINARY.to_vec()));
}

#[test]
fn topic_is_stored_and_published() {
    let server = redis::RedisServer::start();
    let keys = Keys::default();
    let room = "#lobby";
    let (key, channel) = (keys.room_topic(room), keys.room_channel(room));
    let mut c = Conn::new(&server);
    c.load_all();
    assert_eq!(
        c.run(&TOPIC, &[&key], &[&channel, BINARY]),
        Frame::Integer(0)
    );
    assert_eq!(c.cmd(&[b"GET", &key]), Frame::Bulk(BINARY.to_vec()));

    let mut sub = Conn::subscriber(&server, &channel);
    let mut payload = Vec::new();
    wire::encode_topic(room, 5, "Ann", "news\r\n", &mut payload).expect("a topic");
    assert_eq!(
        c.run(&TOPIC, &[&key], &[&channel, &payload]),
        Frame::Integer(1)
    );
    assert_eq!(c.cmd(&[b"GET", &key]), Frame::Bulk(payload.clone()));
    let (from, note) = sub.message();
    assert_eq!(from, channel);
    let mut want = b"t ".to_vec();
    want.extend_from_slice(&payload);
    assert_eq!(note, want);
    let Ok(RoomNote::Topic { payload: got }) = wire::decode_room_note(&note) else {
        panic!("a topic note");
    };
    let rec = wire::decode_topic(got).expect("a topic record");
    assert_eq!(
        rec.kind,
        RecordKind::Topic {
            by: "Ann".into(),
            topic: "news\r\n".into()
        }
    );
}
