//! The RESP codec against a real Redis 7: commands written by our encoder over
//! a plain `TcpStream`, replies read in small pieces of random size and
//! decoded incrementally, the decoded frames (and for some replies the raw
//! bytes, the same ones kept as fixtures in `src/proto/resp.rs`) asserted.

#[path = "common/redis.rs"]
mod redis;

use std::io::{Read, Write};
use std::net::TcpStream;

use multiuserchat::proto::resp::{
    self, Frame, PubSub, RespDecoder, RespError, RespLimits, SubscriptionKind,
};
use redis::RedisServer;

/// Upper bound on the reads for one frame: a stuck test fails instead of looping.
const MAX_READS_PER_FRAME: usize = 1_000_000;

/// A client connection that reads in pieces of 1 to 7 bytes (or larger pieces
/// once a frame is known to be big), the way a slow network would deliver them.
struct Conn {
    stream: TcpStream,
    decoder: RespDecoder,
    pending: Vec<u8>,
    rng: u64,
}

impl Conn {
    fn new(server: &RedisServer, seed: u64) -> Conn {
        Conn::with_limits(server, seed, RespLimits::default())
    }

    fn with_limits(server: &RedisServer, seed: u64, limits: RespLimits) -> Conn {
        Conn {
            stream: server.connect(),
            decoder: RespDecoder::new(limits),
            pending: Vec::new(),
            rng: seed | 1,
        }
    }

    /// xorshift64: enough to vary the piece sizes, reproducible from the seed.
    fn next_piece_len(&mut self, max: usize) -> usize {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng % max as u64) as usize + 1
    }

    fn send(&mut self, cmd: &[&[u8]]) {
        let mut out = Vec::new();
        resp::encode_command(cmd, &mut out);
        self.stream.write_all(&out).expect("write command");
    }

    fn send_inline(&mut self, cmd: &[&[u8]]) {
        let mut out = Vec::new();
        resp::encode_inline(cmd, &mut out);
        self.stream.write_all(&out).expect("write inline command");
    }

    /// The next frame and the exact bytes it was decoded from.
    fn try_read_raw(&mut self) -> Result<(Frame, Vec<u8>), RespError> {
        for _ in 0..MAX_READS_PER_FRAME {
            if let Some((n, frame)) = self.decoder.decode(&self.pending)? {
                let raw: Vec<u8> = self.pending.drain(..n).collect();
                return Ok((frame, raw));
            }
            // Small pieces test the splits; bigger ones keep a large bulk quick.
            let max = if self.pending.len() > 4096 { 65536 } else { 7 };
            let len = self.next_piece_len(max);
            let mut buf = vec![0u8; len];
            let got = self.stream.read(&mut buf).expect("read reply");
            assert!(got > 0, "server closed the connection");
            self.pending
                .extend_from_slice(buf.get(..got).unwrap_or_default());
        }
        panic!("no frame after {MAX_READS_PER_FRAME} reads");
    }

    fn read_raw(&mut self) -> (Frame, Vec<u8>) {
        self.try_read_raw().expect("decode reply")
    }

    fn read(&mut self) -> Frame {
        self.read_raw().0
    }

    /// Sends `cmd` and returns the reply frame.
    fn cmd(&mut self, cmd: &[&[u8]]) -> Frame {
        self.send(cmd);
        self.read()
    }

    /// Sends `cmd` and returns the reply's raw bytes, checking they decode to `want`.
    fn cmd_raw(&mut self, cmd: &[&[u8]], want: &Frame) -> Vec<u8> {
        self.send(cmd);
        let (frame, raw) = self.read_raw();
        assert_eq!(&frame, want, "reply to {:?}", printable(cmd));
        raw
    }

    fn hello3(&mut self) {
        let Frame::Map(fields) = self.cmd(&[b"HELLO", b"3"]) else {
            panic!("HELLO 3 did not answer with a map");
        };
        assert!(fields.contains(&(bulk(b"proto"), Frame::Integer(3))));
        assert!(fields.contains(&(bulk(b"server"), bulk(b"redis"))));
    }
}

fn printable(cmd: &[&[u8]]) -> Vec<String> {
    cmd.iter()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn bulk(b: &[u8]) -> Frame {
    Frame::Bulk(b.to_vec())
}

fn simple(b: &[u8]) -> Frame {
    Frame::Simple(b.to_vec())
}

fn error(b: &[u8]) -> Frame {
    Frame::Error(b.to_vec())
}

#[test]
fn resp2_replies_decode_to_the_expected_frames() {
    let server = RedisServer::start();
    let mut c = Conn::new(&server, 0x5eed_0001);

    let raw = c.cmd_raw(&[b"PING"], &simple(b"PONG"));
    assert_eq!(raw, b"+PONG\r\n");
    c.cmd_raw(&[b"SET", b"k", b"v"], &simple(b"OK"));
    assert_eq!(c.cmd_raw(&[b"GET", b"k"], &bulk(b"v")), b"$1\r\nv\r\n");
    assert_eq!(c.cmd_raw(&[b"GET", b"missing"], &Frame::Null), b"$-1\r\n");
    assert_eq!(c.cmd(&[b"INCR", b"n"]), Frame::Integer(1));
    assert_eq!(
        c.cmd(&[b"INCRBY", b"n", b"-9223372036854775807"]),
        Frame::Integer(-9223372036854775806)
    );
    let raw = c.cmd_raw(
        &[b"INCR", b"k"],
        &error(b"ERR value is not an integer or out of range"),
    );
    assert_eq!(raw, b"-ERR value is not an integer or out of range\r\n");

    assert_eq!(
        c.cmd(&[b"LPUSH", b"l", b"a", b"b", b"c"]),
        Frame::Integer(3)
    );
    let raw = c.cmd_raw(
        &[b"LRANGE", b"l", b"0", b"-1"],
        &Frame::Array(vec![bulk(b"c"), bulk(b"b"), bulk(b"a")]),
    );
    assert_eq!(raw, b"*3\r\n$1\r\nc\r\n$1\r\nb\r\n$1\r\na\r\n");
    assert_eq!(
        c.cmd(&[b"LRANGE", b"none", b"0", b"-1"]),
        Frame::Array(vec![])
    );

    // RESP2 has no map, set or double: they arrive as arrays and bulk strings.
    c.cmd(&[b"HSET", b"h", b"f1", b"v1"]);
    assert_eq!(
        c.cmd(&[b"HGETALL", b"h"]),
        Frame::Array(vec![bulk(b"f1"), bulk(b"v1")])
    );
    c.cmd(&[b"ZADD", b"z", b"1.5", b"m"]);
    assert_eq!(c.cmd(&[b"ZSCORE", b"z", b"m"]), bulk(b"1.5"));
    assert_eq!(c.cmd(&[b"EVAL", b"return true", b"0"]), Frame::Integer(1));
    assert_eq!(c.cmd(&[b"EVAL", b"return false", b"0"]), Frame::Null);
}

#[test]
fn binary_and_large_values_survive_the_round_trip() {
    let server = RedisServer::start();
    let mut c = Conn::new(&server, 0x5eed_0002);
    let binary: Vec<u8> = (0..=255u8)
        .chain(b"\r\n$3\r\n*1\r\n".iter().copied())
        .collect();
    assert_eq!(c.cmd(&[b"SET", b"bin", &binary]), simple(b"OK"));
    assert_eq!(c.cmd(&[b"GET", b"bin"]), Frame::Bulk(binary.clone()));

    let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    assert_eq!(c.cmd(&[b"SET", b"large", &large]), simple(b"OK"));
    assert_eq!(c.cmd(&[b"GET", b"large"]), Frame::Bulk(large));
    assert_eq!(c.cmd(&[b"PING"]), simple(b"PONG"));
}

#[test]
fn inline_commands_with_quoted_arguments_reach_the_server_intact() {
    let server = RedisServer::start();
    let mut c = Conn::new(&server, 0x5eed_0003);
    let value: &[u8] = b"a b \"q\" 'x' \\ \t\r\n\x00\xff end";
    c.send_inline(&[b"SET", b"inline key", value]);
    assert_eq!(c.read(), simple(b"OK"));
    assert_eq!(c.cmd(&[b"GET", b"inline key"]), bulk(value));
    c.send_inline(&[b"SET", b"empty", b""]);
    assert_eq!(c.read(), simple(b"OK"));
    assert_eq!(c.cmd(&[b"STRLEN", b"empty"]), Frame::Integer(0));
    c.send_inline(&[b"PING"]);
    assert_eq!(c.read(), simple(b"PONG"));
}

#[test]
fn scripts_and_noscript_errors() {
    let server = RedisServer::start();
    let mut c = Conn::new(&server, 0x5eed_0004);
    let missing = b"ffffffffffffffffffffffffffffffffffffffff";
    let raw = c.cmd_raw(
        &[b"EVALSHA", missing, b"0"],
        &error(b"NOSCRIPT No matching script. Please use EVAL."),
    );
    assert_eq!(raw, b"-NOSCRIPT No matching script. Please use EVAL.\r\n");

    let script: &[u8] = b"return {KEYS[1], ARGV[1], 7}";
    let Frame::Bulk(sha) = c.cmd(&[b"SCRIPT", b"LOAD", script]) else {
        panic!("SCRIPT LOAD did not answer with a bulk string");
    };
    assert_eq!(sha.len(), 40);
    let want = Frame::Array(vec![bulk(b"key"), bulk(b"arg"), Frame::Integer(7)]);
    assert_eq!(c.cmd(&[b"EVALSHA", &sha, b"1", b"key", b"arg"]), want);
    assert_eq!(c.cmd(&[b"EVAL", script, b"1", b"key", b"arg"]), want);
    assert_eq!(
        c.cmd(&[b"EVAL", b"return redis.error_reply('My Error')", b"0"]),
        error(b"My Error")
    );
}

#[test]
fn resp3_replies_decode_to_the_expected_frames() {
    let server = RedisServer::start();
    let mut c = Conn::new(&server, 0x5eed_0005);
    c.hello3();

    c.cmd(&[b"HSET", b"h", b"f1", b"v1", b"f2", b"v2"]);
    let raw = c.cmd_raw(
        &[b"HGETALL", b"h"],
        &Frame::Map(vec![(bulk(b"f1"), bulk(b"v1")), (bulk(b"f2"), bulk(b"v2"))]),
    );
    assert_eq!(
        raw,
        b"%2\r\n$2\r\nf1\r\n$2\r\nv1\r\n$2\r\nf2\r\n$2\r\nv2\r\n"
    );
    c.cmd(&[b"SADD", b"s", b"x"]);
    let raw = c.cmd_raw(&[b"SMEMBERS", b"s"], &Frame::Set(vec![bulk(b"x")]));
    assert_eq!(raw, b"~1\r\n$1\r\nx\r\n");
    c.cmd(&[b"ZADD", b"z", b"1.5", b"m", b"inf", b"i", b"-inf", b"j"]);
    assert_eq!(
        c.cmd_raw(&[b"ZSCORE", b"z", b"m"], &Frame::Double(1.5)),
        b",1.5\r\n"
    );
    assert_eq!(
        c.cmd(&[b"ZSCORE", b"z", b"i"]),
        Frame::Double(f64::INFINITY)
    );
    assert_eq!(
        c.cmd(&[b"ZSCORE", b"z", b"j"]),
        Frame::Double(f64::NEG_INFINITY)
    );
    assert_eq!(c.cmd_raw(&[b"GET", b"missing"], &Frame::Null), b"_\r\n");
    assert_eq!(c.cmd(&[b"ZSCORE", b"z", b"nobody"]), Frame::Null);
    assert_eq!(
        c.cmd(&[b"INCR", b"s"]),
        error(b"WRONGTYPE Operation against a key holding the wrong kind of value")
    );
}

#[test]
fn resp3_types_from_scripts() {
    let server = RedisServer::start();
    let mut c = Conn::new(&server, 0x5eed_0006);
    c.hello3();
    let eval = |c: &mut Conn, script: &[u8]| c.cmd(&[b"EVAL", script, b"0"]);
    assert_eq!(
        eval(&mut c, b"redis.setresp(3); return true"),
        Frame::Boolean(true)
    );
    assert_eq!(
        eval(&mut c, b"redis.setresp(3); return false"),
        Frame::Boolean(false)
    );
    assert_eq!(eval(&mut c, b"return {double=0.25}"), Frame::Double(0.25));
    assert_eq!(
        eval(
            &mut c,
            b"return {big_number='-1234567890123456789012345678901234567890'}"
        ),
        Frame::BigNumber("-1234567890123456789012345678901234567890".to_owned())
    );
    assert_eq!(
        eval(
            &mut c,
            b"return {verbatim_string={format='txt', string='hello'}}"
        ),
        Frame::Verbatim {
            format: *b"txt",
            text: b"hello".to_vec()
        }
    );
    assert_eq!(
        eval(&mut c, b"return {map={a=1}}"),
        Frame::Map(vec![(bulk(b"a"), Frame::Integer(1))])
    );
    assert_eq!(
        eval(&mut c, b"return {set={a=true}}"),
        Frame::Set(vec![bulk(b"a")])
    );
}

// 3.141 below is the number Redis hard-codes for `DEBUG PROTOCOL double`, not π.
#[allow(clippy::approx_constant)]
#[test]
fn every_resp3_type_from_debug_protocol() {
    let server = RedisServer::start();
    let mut c = Conn::new(&server, 0x5eed_0007);
    c.hello3();
    let debug = |c: &mut Conn, kind: &[u8]| c.cmd(&[b"DEBUG", b"PROTOCOL", kind]);
    assert_eq!(debug(&mut c, b"string"), bulk(b"Hello World"));
    assert_eq!(debug(&mut c, b"integer"), Frame::Integer(12345));
    assert_eq!(debug(&mut c, b"double"), Frame::Double(3.141));
    assert_eq!(
        debug(&mut c, b"bignum"),
        Frame::BigNumber("1234567999999999999999999999999999999".to_owned())
    );
    assert_eq!(debug(&mut c, b"null"), Frame::Null);
    let ints = vec![Frame::Integer(0), Frame::Integer(1), Frame::Integer(2)];
    assert_eq!(debug(&mut c, b"array"), Frame::Array(ints.clone()));
    assert_eq!(debug(&mut c, b"set"), Frame::Set(ints));
    assert_eq!(
        debug(&mut c, b"map"),
        Frame::Map(vec![
            (Frame::Integer(0), Frame::Boolean(false)),
            (Frame::Integer(1), Frame::Boolean(true)),
            (Frame::Integer(2), Frame::Boolean(false)),
        ])
    );
    assert_eq!(debug(&mut c, b"true"), Frame::Boolean(true));
    assert_eq!(debug(&mut c, b"false"), Frame::Boolean(false));
    assert_eq!(
        debug(&mut c, b"verbatim"),
        Frame::Verbatim {
            format: *b"txt",
            text: b"This is a verbatim\nstring".to_vec()
        }
    );
    let attributed = debug(&mut c, b"attrib");
    assert_eq!(
        attributed,
        Frame::Attributed {
            attrs: vec![(
                bulk(b"key-popularity"),
                Frame::Array(vec![bulk(b"key:123"), Frame::Integer(90)])
            )],
            frame: Box::new(bulk(b"Some real reply following the attribute")),
        }
    );
    assert_eq!(
        attributed.without_attributes(),
        bulk(b"Some real reply following the attribute")
    );
    // A push arrives first, then the command's own reply.
    assert_eq!(
        debug(&mut c, b"push"),
        Frame::Push(vec![bulk(b"server-cpu-usage"), Frame::Integer(42)])
    );
    assert_eq!(c.read(), bulk(b"Some real reply following the push reply"));
    assert_eq!(c.cmd(&[b"PING"]), simple(b"PONG"));
}

/// Subscribes, publishes from a second connection and reads everything back
/// through `PubSub::from_frame`; `resp3` picks the protocol.
fn pubsub_round_trip(resp3: bool, seed: u64) {
    let server = RedisServer::start();
    let mut sub = Conn::new(&server, seed);
    let mut publisher = Conn::new(&server, seed.rotate_left(17));
    if resp3 {
        sub.hello3();
    }
    let pubsub = |frame: Frame| {
        let is_push = matches!(frame, Frame::Push(_));
        assert_eq!(is_push, resp3, "pub/sub frame kind: {frame:?}");
        PubSub::from_frame(frame).expect("a pub/sub frame")
    };

    sub.send(&[b"SUBSCRIBE", b"ch", b"other"]);
    assert_eq!(
        pubsub(sub.read()),
        PubSub::Subscribed {
            kind: SubscriptionKind::Channel,
            channel: b"ch".to_vec(),
            count: 1
        }
    );
    assert_eq!(
        pubsub(sub.read()),
        PubSub::Subscribed {
            kind: SubscriptionKind::Channel,
            channel: b"other".to_vec(),
            count: 2
        }
    );
    sub.send(&[b"PSUBSCRIBE", b"c*"]);
    assert_eq!(
        pubsub(sub.read()),
        PubSub::Subscribed {
            kind: SubscriptionKind::Pattern,
            channel: b"c*".to_vec(),
            count: 3
        }
    );

    let payload: &[u8] = b"hello \r\n*3\r\n world";
    assert_eq!(
        publisher.cmd(&[b"PUBLISH", b"ch", payload]),
        Frame::Integer(2)
    );
    let (frame, raw) = sub.read_raw();
    let want_raw: &[u8] = if resp3 {
        b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$18\r\nhello \r\n*3\r\n world\r\n"
    } else {
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$18\r\nhello \r\n*3\r\n world\r\n"
    };
    assert_eq!(raw, want_raw);
    assert_eq!(
        pubsub(frame),
        PubSub::Message {
            channel: b"ch".to_vec(),
            payload: payload.to_vec()
        }
    );
    assert_eq!(
        pubsub(sub.read()),
        PubSub::PatternMessage {
            pattern: b"c*".to_vec(),
            channel: b"ch".to_vec(),
            payload: payload.to_vec()
        }
    );

    // PING while subscribed: a pub/sub-shaped pong in RESP2, a plain reply in RESP3.
    sub.send(&[b"PING"]);
    let pong = sub.read();
    if resp3 {
        assert_eq!(pong, simple(b"PONG"));
        assert!(PubSub::from_frame(pong).is_err());
    } else {
        assert_eq!(
            pubsub(pong),
            PubSub::Pong {
                payload: Vec::new()
            }
        );
    }

    sub.send(&[b"UNSUBSCRIBE"]);
    let mut left = Vec::new();
    for _ in 0..2 {
        match pubsub(sub.read()) {
            PubSub::Unsubscribed {
                kind: SubscriptionKind::Channel,
                channel: Some(channel),
                ..
            } => left.push(channel),
            other => panic!("unexpected {other:?}"),
        }
    }
    left.sort();
    assert_eq!(left, vec![b"ch".to_vec(), b"other".to_vec()]);
    sub.send(&[b"PUNSUBSCRIBE"]);
    assert_eq!(
        pubsub(sub.read()),
        PubSub::Unsubscribed {
            kind: SubscriptionKind::Pattern,
            channel: Some(b"c*".to_vec()),
            count: 0
        }
    );
    sub.send(&[b"UNSUBSCRIBE"]);
    assert_eq!(
        pubsub(sub.read()),
        PubSub::Unsubscribed {
            kind: SubscriptionKind::Channel,
            channel: None,
            count: 0
        }
    );
    assert_eq!(sub.cmd(&[b"PING"]), simple(b"PONG"));
}

#[test]
fn pubsub_messages_arrive_as_arrays_in_resp2() {
    pubsub_round_trip(false, 0x5eed_0008);
}

#[test]
fn pubsub_messages_arrive_as_pushes_in_resp3() {
    pubsub_round_trip(true, 0x5eed_0009);
}

#[test]
fn limits_hold_against_real_replies() {
    let server = RedisServer::start();
    let mut c = Conn::with_limits(
        &server,
        0x5eed_000a,
        RespLimits {
            max_depth: 2,
            max_elements: 3,
            max_bulk_bytes: 10,
            ..RespLimits::default()
        },
    );
    c.send(&[b"EVAL", b"return {1, {2, {3}}}", b"0"]);
    assert_eq!(
        c.try_read_raw().map(|(f, _)| f),
        Err(RespError::TooDeep { max: 2 })
    );

    let mut c = Conn::with_limits(
        &server,
        0x5eed_000b,
        RespLimits {
            max_elements: 3,
            ..RespLimits::default()
        },
    );
    c.send(&[b"EVAL", b"return {1, 2, 3, 4}", b"0"]);
    assert_eq!(
        c.try_read_raw().map(|(f, _)| f),
        Err(RespError::TooManyElements { count: 4, max: 3 })
    );

    let mut c = Conn::with_limits(
        &server,
        0x5eed_000c,
        RespLimits {
            max_bulk_bytes: 10,
            ..RespLimits::default()
        },
    );
    c.send(&[b"ECHO", b"eleven bytes"]);
    assert_eq!(
        c.try_read_raw().map(|(f, _)| f),
        Err(RespError::BulkTooBig { len: 12, max: 10 })
    );
}
