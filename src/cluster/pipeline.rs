//! The command link's protocol: commands pipelined to Redis, replies matched
//! to them in order (Redis answers a connection's commands in the order they
//! were sent). Sans-I/O: commands in, bytes to write out; bytes read in,
//! `(tag, reply)` pairs out; time passed in for the reply timeout.
//!
//! Knows nothing of sockets or of what the commands mean: the caller tags
//! each command (`T`) and reads the reply it gets back with that tag.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::proto::resp::{Frame, RespDecoder, RespError, RespLimits, encode_command};

/// Caps on what may wait for Redis.
#[derive(Debug, Clone, Copy)]
pub struct PipelineLimits {
    /// Commands sent and not yet answered.
    pub max_in_flight: usize,
    /// Bytes of commands encoded and not yet taken for writing.
    pub max_unsent_bytes: usize,
    /// The oldest command unanswered this long means the link is stuck.
    pub reply_timeout: Duration,
}

impl Default for PipelineLimits {
    fn default() -> Self {
        PipelineLimits {
            max_in_flight: 10_000,
            max_unsent_bytes: 16 << 20,
            reply_timeout: Duration::from_secs(5),
        }
    }
}

/// Why the pipeline refused a command or gave up on the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineError {
    /// Too many commands in flight, or too many bytes unsent: the caller
    /// sheds load (the command was not queued).
    Full,
    /// A reply arrived with no command waiting for it.
    UnexpectedReply,
    /// The replies are not valid RESP.
    Protocol(RespError),
}

impl fmt::Display for PipelineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PipelineError::Full => f.write_str("too many commands waiting for Redis"),
            PipelineError::UnexpectedReply => f.write_str("a reply no command was waiting for"),
            PipelineError::Protocol(e) => write!(f, "bad reply from Redis: {e}"),
        }
    }
}

impl std::error::Error for PipelineError {}

/// Commands in flight on one connection. See the module docs.
#[derive(Debug)]
pub struct Pipeline<T> {
    limits: PipelineLimits,
    decoder: RespDecoder,
    unsent: Vec<u8>,
    in_flight: VecDeque<(T, Instant)>,
}

impl<T> Pipeline<T> {
    pub fn new(limits: PipelineLimits, resp: RespLimits) -> Pipeline<T> {
        Pipeline {
            limits,
            decoder: RespDecoder::new(resp),
            unsent: Vec::new(),
            in_flight: VecDeque::new(),
        }
    }

    /// Queues `cmd` (its arguments as bulk strings) under `tag`.
    /// `Err(Full)` (nothing queued) at either cap.
    pub fn send(&mut self, tag: T, cmd: &[&[u8]], now: Instant) -> Result<(), PipelineError> {
        if self.in_flight.len() >= self.limits.max_in_flight
            || self.unsent.len() >= self.limits.max_unsent_bytes
        {
            return Err(PipelineError::Full);
        }
        encode_command(cmd, &mut self.unsent);
        self.in_flight.push_back((tag, now));
        Ok(())
    }

    /// The bytes to write, taken (the caller's link queues them).
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.unsent)
    }

    /// True when commands wait to be written.
    pub fn has_output(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Commands sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Decodes every complete reply in `input` and pairs it with its command's
    /// tag (and the time it was sent, for the round-trip time). Returns the
    /// bytes used; the rest (an incomplete reply) is passed again with more.
    /// `Err` means the connection cannot go on (reconnect).
    pub fn handle_bytes(
        &mut self,
        input: &[u8],
        out: &mut Vec<(T, Instant, Frame)>,
    ) -> Result<usize, PipelineError> {
        let mut used = 0;
        while let Some(rest) = input.get(used..)
            && !rest.is_empty()
        {
            match self.decoder.decode(rest).map_err(PipelineError::Protocol)? {
                None => break,
                Some((n, frame)) => {
                    used += n;
                    let Some((tag, sent)) = self.in_flight.pop_front() else {
                        return Err(PipelineError::UnexpectedReply);
                    };
                    out.push((tag, sent, frame));
                }
            }
        }
        Ok(used)
    }

    /// True when the oldest unanswered command has waited longer than the
    /// reply timeout.
    pub fn timed_out(&self, now: Instant) -> bool {
        self.in_flight.front().is_some_and(|(_, sent)| {
            now.saturating_duration_since(*sent) >= self.limits.reply_timeout
        })
    }

    /// When the oldest unanswered command times out, if any is in flight.
    pub fn deadline(&self) -> Option<Instant> {
        self.in_flight
            .front()
            .map(|(_, sent)| *sent + self.limits.reply_timeout)
    }

    /// The connection is gone: every unanswered command's tag, oldest first
    /// (their fate is unknown), and a clean state for the next connection.
    pub fn reset(&mut self) -> Vec<T> {
        self.unsent.clear();
        self.decoder.reset();
        self.in_flight.drain(..).map(|(t, _)| t).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline() -> Pipeline<u32> {
        Pipeline::new(PipelineLimits::default(), RespLimits::default())
    }

    #[test]
    fn replies_pair_with_commands_in_order_over_any_split() {
        let t = Instant::now();
        let mut p = pipeline();
        p.send(1, &[b"SET", b"k", b"v"], t).expect("queued");
        p.send(2, &[b"GET", b"k"], t).expect("queued");
        p.send(3, &[b"GET", b"missing"], t).expect("queued");
        assert_eq!(
            p.take_output(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n"
        );
        let replies: &[u8] = b"+OK\r\n$1\r\nv\r\n$-1\r\n";
        for split in 0..=replies.len() {
            let mut p2 = pipeline();
            for tag in 1..=3 {
                p2.send(tag, &[b"X"], t).expect("queued");
            }
            let mut out = Vec::new();
            let (a, b) = replies.split_at(split);
            let used = p2.handle_bytes(a, &mut out).expect("ok");
            let mut rest = a[used..].to_vec();
            rest.extend_from_slice(b);
            let used2 = p2.handle_bytes(&rest, &mut out).expect("ok");
            assert_eq!(used2, rest.len(), "split {split}");
            let got: Vec<(u32, Frame)> = out.into_iter().map(|(t, _, f)| (t, f)).collect();
            assert_eq!(
                got,
                vec![
                    (1, Frame::Simple(b"OK".to_vec())),
                    (2, Frame::Bulk(b"v".to_vec())),
                    (3, Frame::Null)
                ],
                "split {split}"
            );
        }
    }

    #[test]
    fn a_reply_nobody_waits_for_is_an_error() {
        let mut p = pipeline();
        let mut out = Vec::new();
        assert_eq!(
            p.handle_bytes(b"+OK\r\n", &mut out),
            Err(PipelineError::UnexpectedReply)
        );
    }

    #[test]
    fn caps_refuse_without_queueing() {
        let t = Instant::now();
        let mut p: Pipeline<u32> = Pipeline::new(
            PipelineLimits {
                max_in_flight: 2,
                max_unsent_bytes: 1 << 20,
                reply_timeout: Duration::from_secs(1),
            },
            RespLimits::default(),
        );
        p.send(1, &[b"PING"], t).expect("1");
        p.send(2, &[b"PING"], t).expect("2");
        assert_eq!(p.send(3, &[b"PING"], t), Err(PipelineError::Full));
        assert_eq!(p.in_flight(), 2);
        let mut p: Pipeline<u32> = Pipeline::new(
            PipelineLimits {
                max_in_flight: 100,
                max_unsent_bytes: 20,
                reply_timeout: Duration::from_secs(1),
            },
            RespLimits::default(),
        );
        p.send(1, &[b"SET", b"key", b"value"], t).expect("1");
        assert_eq!(p.send(2, &[b"PING"], t), Err(PipelineError::Full));
    }

    #[test]
    fn the_oldest_unanswered_command_sets_the_timeout_and_reset_returns_the_lost() {
        let t0 = Instant::now();
        let mut p = pipeline();
        assert!(p.deadline().is_none());
        p.send(7, &[b"PING"], t0).expect("queued");
        p.send(8, &[b"PING"], t0 + Duration::from_secs(1))
            .expect("queued");
        assert_eq!(p.deadline(), Some(t0 + Duration::from_secs(5)));
        assert!(!p.timed_out(t0 + Duration::from_millis(4999)));
        assert!(p.timed_out(t0 + Duration::from_secs(5)));
        assert_eq!(p.reset(), vec![7, 8]);
        assert_eq!(p.in_flight(), 0);
        assert!(!p.has_output());
    }
}
