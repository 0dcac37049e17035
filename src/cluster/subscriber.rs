//! The subscription link's protocol: the channels a node wants, kept
//! subscribed across reconnects (every wanted channel is subscribed again on
//! each new connection), messages out, and liveness: a `PING` when the link
//! has been silent, and a dead link when no answer comes in time.
//!
//! Sans-I/O: wants and bytes in, bytes to write and messages out, time passed
//! in. Knows nothing of sockets or of what the channels carry.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::proto::resp::{Frame, PubSub, RespDecoder, RespError, RespLimits, encode_command};

/// What arrived on the subscription link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A message published to a subscribed channel.
    Message { channel: Vec<u8>, payload: Vec<u8> },
    /// Redis confirmed a subscription.
    Subscribed { channel: Vec<u8> },
}

/// What a tick found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    /// No answer to our `PING` in time: reconnect.
    Dead,
}

/// Subscriptions of one node. See the module docs.
#[derive(Debug)]
pub struct Subscriber {
    wanted: BTreeSet<Vec<u8>>,
    confirmed: BTreeSet<Vec<u8>>,
    decoder: RespDecoder,
    unsent: Vec<u8>,
    connected: bool,
    last_input: Instant,
    ping_sent: Option<Instant>,
    idle_ping: Duration,
    pong_timeout: Duration,
}

impl Subscriber {
    /// `idle_ping`: silence after which a `PING` is sent; `pong_timeout`: how
    /// long its answer may take.
    pub fn new(
        idle_ping: Duration,
        pong_timeout: Duration,
        limits: RespLimits,
        now: Instant,
    ) -> Self {
        Subscriber {
            wanted: BTreeSet::new(),
            confirmed: BTreeSet::new(),
            decoder: RespDecoder::new(limits),
            unsent: Vec::new(),
            connected: false,
            last_input: now,
            ping_sent: None,
            idle_ping,
            pong_timeout,
        }
    }

    /// Wants `channel` (subscribed now if connected, else on connecting).
    pub fn subscribe(&mut self, channel: &[u8]) {
        if self.wanted.insert(channel.to_vec()) && self.connected {
            encode_command(&[b"SUBSCRIBE", channel], &mut self.unsent);
        }
    }

    /// No longer wants `channel`.
    pub fn unsubscribe(&mut self, channel: &[u8]) {
        if self.wanted.remove(channel) && self.connected {
            encode_command(&[b"UNSUBSCRIBE", channel], &mut self.unsent);
        }
        self.confirmed.remove(channel);
    }

    /// True when `channel` is wanted and Redis confirmed it on this connection.
    pub fn is_subscribed(&self, channel: &[u8]) -> bool {
        self.confirmed.contains(channel)
    }

    /// A new connection: every wanted channel is subscribed again, in one command.
    pub fn on_connected(&mut self, now: Instant) {
        self.connected = true;
        self.last_input = now;
        self.ping_sent = None;
        self.confirmed.clear();
        self.decoder.reset();
        self.unsent.clear();
        if !self.wanted.is_empty() {
            let mut cmd: Vec<&[u8]> = Vec::with_capacity(self.wanted.len() + 1);
            cmd.push(b"SUBSCRIBE");
            cmd.extend(self.wanted.iter().map(Vec::as_slice));
            encode_command(&cmd, &mut self.unsent);
        }
    }

    /// The connection is gone; wanted channels are kept for the next one.
    pub fn on_disconnected(&mut self) {
        self.connected = false;
        self.confirmed.clear();
        self.unsent.clear();
        self.ping_sent = None;
    }

    /// The bytes to write, taken.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.unsent)
    }

    /// Decodes everything complete in `input`: messages and confirmations go
    /// to `out`; a pong clears the liveness probe. Returns the bytes used.
    /// `Err` means the connection cannot go on.
    pub fn handle_bytes(
        &mut self,
        input: &[u8],
        now: Instant,
        out: &mut Vec<Incoming>,
    ) -> Result<usize, RespError> {
        if !input.is_empty() {
            self.last_input = now;
            self.ping_sent = None;
        }
        let mut used = 0;
        while let Some(rest) = input.get(used..)
            && !rest.is_empty()
        {
            let Some((n, frame)) = self.decoder.decode(rest)? else {
                break;
            };
            used += n;
            match PubSub::from_frame(frame) {
                Ok(PubSub::Message { channel, payload }) => {
                    out.push(Incoming::Message { channel, payload });
                }
                Ok(PubSub::Subscribed { channel, .. }) => {
                    if self.wanted.contains(&channel) {
                        self.confirmed.insert(channel.clone());
                    }
                    out.push(Incoming::Subscribed { channel });
                }
                // Pongs (RESP2 `["pong", ""]` or a plain `+PONG`), unsubscribe
                // confirmations and anything else only prove the link alive.
                Ok(_) | Err(Frame::Simple(_)) | Err(_) => {}
            }
        }
        Ok(used)
    }

    /// Liveness at `now`: sends a `PING` after `idle_ping` of silence; `Dead`
    /// when it stays unanswered for `pong_timeout`.
    pub fn on_tick(&mut self, now: Instant) -> Liveness {
        if !self.connected {
            return Liveness::Alive;
        }
        match self.ping_sent {
            Some(sent) if now.saturating_duration_since(sent) >= self.pong_timeout => {
                Liveness::Dead
            }
            Some(_) => Liveness::Alive,
            None if now.saturating_duration_since(self.last_input) >= self.idle_ping => {
                encode_command(&[b"PING"], &mut self.unsent);
                self.ping_sent = Some(now);
                Liveness::Alive
            }
            None => Liveness::Alive,
        }
    }

    /// When the next tick has something to do.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.connected {
            return None;
        }
        Some(match self.ping_sent {
            Some(sent) => sent + self.pong_timeout,
            None => self.last_input + self.idle_ping,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(now: Instant) -> Subscriber {
        Subscriber::new(
            Duration::from_secs(10),
            Duration::from_secs(5),
            RespLimits::default(),
            now,
        )
    }

    #[test]
    fn wanted_channels_are_subscribed_again_on_every_connection() {
        let t = Instant::now();
        let mut s = sub(t);
        s.subscribe(b"room:a");
        s.subscribe(b"room:b");
        assert!(
            s.take_output().is_empty(),
            "nothing sent while disconnected"
        );
        s.on_connected(t);
        assert_eq!(
            s.take_output(),
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$6\r\nroom:a\r\n$6\r\nroom:b\r\n"
        );
        s.subscribe(b"room:c");
        assert_eq!(
            s.take_output(),
            b"*2\r\n$9\r\nSUBSCRIBE\r\n$6\r\nroom:c\r\n"
        );
        s.unsubscribe(b"room:a");
        assert_eq!(
            s.take_output(),
            b"*2\r\n$11\r\nUNSUBSCRIBE\r\n$6\r\nroom:a\r\n"
        );
        s.on_disconnected();
        s.on_connected(t);
        assert_eq!(
            s.take_output(),
            b"*3\r\n$9\r\nSUBSCRIBE\r\n$6\r\nroom:b\r\n$6\r\nroom:c\r\n"
        );
    }

    #[test]
    fn messages_and_confirmations_come_out_over_any_split() {
        let t = Instant::now();
        let stream: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$1\r\nr\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$5\r\nhello\r\n>3\r\n$7\r\nmessage\r\n$1\r\nr\r\n$2\r\nhi\r\n";
        for split in 0..=stream.len() {
            let mut s = sub(t);
            s.subscribe(b"r");
            s.on_connected(t);
            let mut out = Vec::new();
            let (a, b) = stream.split_at(split);
            let used = s.handle_bytes(a, t, &mut out).expect("ok");
            let mut rest = a[used..].to_vec();
            rest.extend_from_slice(b);
            assert_eq!(s.handle_bytes(&rest, t, &mut out).expect("ok"), rest.len());
            assert_eq!(
                out,
                vec![
                    Incoming::Subscribed {
                        channel: b"r".to_vec()
                    },
                    Incoming::Message {
                        channel: b"r".to_vec(),
                        payload: b"hello".to_vec()
                    },
                    Incoming::Message {
                        channel: b"r".to_vec(),
                        payload: b"hi".to_vec()
                    },
                ],
                "split {split}"
            );
            assert!(s.is_subscribed(b"r"));
        }
    }

    #[test]
    fn a_silent_link_is_pinged_and_declared_dead_without_an_answer() {
        let t0 = Instant::now();
        let mut s = sub(t0);
        s.on_connected(t0);
        assert_eq!(s.on_tick(t0 + Duration::from_secs(9)), Liveness::Alive);
        assert!(s.take_output().is_empty());
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(s.on_tick(t1), Liveness::Alive);
        assert_eq!(s.take_output(), b"*1\r\n$4\r\nPING\r\n");
        assert_eq!(s.deadline(), Some(t1 + Duration::from_secs(5)));
        // The pong arrives: alive again, next ping after more silence.
        let mut out = Vec::new();
        s.handle_bytes(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n", t1, &mut out)
            .expect("ok");
        assert!(out.is_empty());
        assert_eq!(s.on_tick(t1 + Duration::from_secs(6)), Liveness::Alive);
        let t2 = t1 + Duration::from_secs(10);
        s.on_tick(t2);
        assert_eq!(s.on_tick(t2 + Duration::from_secs(5)), Liveness::Dead);
    }
}
