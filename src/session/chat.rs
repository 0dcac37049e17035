//! The chat port's session: newline-delimited JSON objects (the original
//! clients) or plain text (`nc`, `telnet`), picked by the first line.
//!
//! # How it works
//! - `Detect`: blank lines are ignored; a first line starting with `{` picks
//!   JSON mode, anything else picks text mode and is the name.
//! - JSON mode: every line is one request.
//! - Text mode: until joined, each line is a name (or `/help`, `/quit`);
//!   after that, lines are chat text or `/commands`, and `/help` is answered
//!   here, in text mode's own words.
//! - Either mode: while a join sent before joining waits for the hub's
//!   answer, further input is held back (decoding stops at the line after
//!   the join; the server keeps the rest), so a message pipelined behind the
//!   join is read as the joined user's, however late the answer comes. A
//!   refused join ends the hold too, and the next line is read as before the
//!   join (text mode: a name again). A join sent once joined is answered
//!   `already_joined` and holds nothing.
//! - The first-line deadline lasts until a join succeeds: a connection that
//!   never joins (however many lines it sends) is dropped at the deadline.

use std::time::Instant;

use log::{debug, info, warn};

use super::{Asked, Ctx, Format, Out};
use crate::config::Config;
use crate::hub::{ErrorCode, Event, LeaveReason, Request};
use crate::proto::chat::{self, ClientMsg};
use crate::proto::line::{LineDecoder, LineError};

/// The text-mode `/help` answer.
pub const HELP: &str = "Commands: just type to talk in the current room; @NAME text or /msg NAME text for a private message; /who lists who is in the room; /join #ROOM joins (or creates) a room and makes it current; /part [#ROOM] leaves it; /rooms lists rooms; /topic [TEXT] shows or sets the topic; /history [N] shows earlier messages; /quit leaves; //text sends a line starting with '/'.";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Detect,
    Json,
    Text,
}

/// A chat-port connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct ChatSession {
    mode: Mode,
    lines: LineDecoder,
    /// The first-line deadline, until a join succeeds.
    deadline: Option<Instant>,
    joined: bool,
    /// A join was sent and waits for the hub's answer: input is held.
    join_pending: bool,
    /// An `End` or `Kill` was issued.
    ended: bool,
}

impl ChatSession {
    pub fn new(cfg: &Config, now: Instant) -> ChatSession {
        ChatSession {
            mode: Mode::Detect,
            lines: LineDecoder::new(cfg.max_line_bytes),
            deadline: Some(now + cfg.first_line_timeout),
            joined: false,
            join_pending: false,
            ended: false,
        }
    }

    /// Decodes every complete line of `input` (unless paused); returns the bytes used.
    pub fn handle_bytes(&mut self, input: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Out>) -> usize {
        let mut used = 0;
        while !self.ended && !self.join_pending {
            let rest = input.get(used..).unwrap_or_default();
            match self.lines.decode(rest) {
                Ok(Some((n, line))) => {
                    used += n;
                    self.line(line, ctx, out);
                }
                Ok(None) => break,
                Err(LineError::TooLong { max }) => {
                    warn!(
                        "{:?} {}: line over {max} bytes, disconnecting",
                        ctx.conn, ctx.peer
                    );
                    if self.mode == Mode::Detect {
                        // No line yet, so no format: pick it as a finished first line
                        // would, or the error could not be delivered.
                        self.mode = if chat::looks_like_json(rest) {
                            Mode::Json
                        } else {
                            Mode::Text
                        };
                    }
                    let text =
                        format!("Line too long: at most {max} bytes per message. Disconnecting.");
                    out.push(Out::Hub(Request::Reply(Event::Error {
                        code: ErrorCode::LineTooLong,
                        text,
                    })));
                    self.end(out, LeaveReason::ProtocolError);
                    return input.len();
                }
            }
        }
        if self.ended { input.len() } else { used }
    }

    fn line(&mut self, line: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        let blank = line.iter().all(u8::is_ascii_whitespace);
        let decoded = match self.mode {
            // Blank lines before the first real one (telnet) are ignored.
            Mode::Detect if blank => return,
            Mode::Detect if chat::looks_like_json(line) => {
                self.mode = Mode::Json;
                chat::decode_json(line)
            }
            Mode::Detect => {
                self.mode = Mode::Text;
                info!("{:?} {}: plain-text client", ctx.conn, ctx.peer);
                chat::decode_text_name(line)
            }
            Mode::Json => chat::decode_json(line),
            Mode::Text if !self.joined => chat::decode_text_name(line),
            Mode::Text if blank => return,
            Mode::Text => chat::decode_text(line),
        };
        match decoded {
            Ok(msg) => self.request(msg, out),
            Err(e) => {
                debug!("{:?} {}: bad input: {e}", ctx.conn, ctx.peer);
                out.push(Out::Hub(Request::Reply(e.to_event())));
            }
        }
    }

    fn request(&mut self, msg: ClientMsg, out: &mut Vec<Out>) {
        match super::asked(msg, self.mode == Mode::Json) {
            Asked::Hub(req) => {
                // Once joined, the hub answers a join with an error and no
                // outcome: holding then would never end.
                if matches!(req, Request::Join { .. }) && !self.joined {
                    self.join_pending = true;
                }
                out.push(Out::Hub(req));
            }
            Asked::Help => out.push(Out::Hub(Request::Reply(Event::Info {
                text: HELP.to_owned(),
                user: None,
                limits: None,
            }))),
            Asked::Exit => self.end(out, LeaveReason::Exit),
        }
    }

    fn end(&mut self, out: &mut Vec<Out>, why: LeaveReason) {
        self.ended = true;
        out.push(Out::End(why));
    }

    /// The first-line deadline.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        if !self.ended && self.deadline.is_some_and(|d| ctx.now >= d) {
            warn!(
                "{:?} {}: no join within the first-line timeout, disconnecting",
                ctx.conn, ctx.peer
            );
            self.ended = true;
            out.push(Out::Kill(LeaveReason::Timeout));
        }
    }

    /// See [`super::Session::on_join_outcome`].
    pub fn on_join_outcome(&mut self, joined: bool) -> bool {
        if joined {
            self.joined = true;
            self.deadline = None;
        }
        std::mem::take(&mut self.join_pending)
    }

    pub fn format(&self) -> Option<Format> {
        match self.mode {
            Mode::Detect => None,
            Mode::Json => Some(Format::JsonLine),
            Mode::Text => Some(Format::Text),
        }
    }

    pub fn protocol(&self) -> &'static str {
        match self.mode {
            Mode::Detect => "tcp_pending",
            Mode::Json => "tcp_json",
            Mode::Text => "tcp_text",
        }
    }

    /// True while input is held back for a pending join.
    pub fn holding(&self) -> bool {
        self.join_pending && !self.ended
    }

    /// True while the first-line deadline runs (for tests and `/stats`).
    pub fn has_deadline(&self) -> bool {
        self.deadline.is_some()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{Fixture, requests, sent};
    use super::*;
    use crate::hub::Features;

    fn session(f: &Fixture, now: Instant) -> ChatSession {
        ChatSession::new(&f.cfg, now)
    }

    fn feed(s: &mut ChatSession, f: &Fixture, now: Instant, bytes: &[u8]) -> (usize, Vec<Out>) {
        let mut out = Vec::new();
        let n = s.handle_bytes(bytes, &f.ctx(now), &mut out);
        (n, out)
    }

    #[test]
    fn a_json_first_line_picks_json_mode_and_joins() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        let join = b"\r\n{\"type\":\"join\",\"sender\":\"al\"}\n";
        let msg = b"{\"type\":\"message\",\"message\":\"hi\"}\n";
        let input = [&join[..], &msg[..]].concat();
        let (n, out) = feed(&mut s, &f, now, &input);
        assert_eq!(n, join.len(), "decoding stops behind the join");
        assert_eq!(s.format(), Some(Format::JsonLine));
        assert_eq!(
            requests(&out),
            vec![&Request::Join {
                name: "al".into(),
                features: Features::default()
            }]
        );
        assert!(s.on_join_outcome(true), "held input is fed again");
        let (n, out) = feed(&mut s, &f, now, msg);
        assert_eq!(n, msg.len());
        assert_eq!(
            requests(&out),
            vec![&Request::Say {
                room: Some("#lobby".into()),
                text: "hi".into()
            }]
        );
    }

    #[test]
    fn json_mode_holds_input_while_its_join_is_pending() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        let join = b"{\"type\":\"join\",\"sender\":\"al\"}\n";
        let rest =
            b"{\"type\":\"message\",\"message\":\"one\"}\n{\"type\":\"who\"}\n{\"type\":\"mess";
        let (n, _) = feed(&mut s, &f, now, &[&join[..], &rest[..]].concat());
        assert_eq!(n, join.len());
        assert!(s.holding());
        // More input (the server appends it to what it kept): nothing moves,
        // whatever its shape, and no request goes out.
        let mut held = rest.to_vec();
        held.extend_from_slice(b"age\",\"message\":\"two\"}\n{\"type\":\"exit\"}\n");
        let (n, out) = feed(&mut s, &f, now, &held);
        assert_eq!((n, out.len()), (0, 0));
        assert!(s.on_join_outcome(true));
        assert!(!s.holding());
        assert!(!s.on_join_outcome(true), "nothing held any more");
        let (n, out) = feed(&mut s, &f, now, &held);
        assert_eq!(n, held.len());
        assert_eq!(
            out,
            vec![
                Out::Hub(Request::Say {
                    room: Some("#lobby".into()),
                    text: "one".into()
                }),
                Out::Hub(Request::Who),
                Out::Hub(Request::Say {
                    room: Some("#lobby".into()),
                    text: "two".into()
                }),
                Out::End(LeaveReason::Exit),
            ],
            "every held line, in order"
        );
    }

    #[test]
    fn a_refused_json_join_lets_the_next_line_retry() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        let first = b"{\"type\":\"join\",\"sender\":\"taken\"}\n";
        let second = b"{\"type\":\"join\",\"sender\":\"free\"}\n";
        let msg = b"{\"type\":\"message\",\"message\":\"hi\"}\n";
        let mut input = [&first[..], &second[..], &msg[..]].concat();
        let (n, _) = feed(&mut s, &f, now, &input);
        assert_eq!(n, first.len());
        input.drain(..n);
        // name_taken: the hold ends, the deadline stays.
        assert!(s.on_join_outcome(false), "a refusal resumes too");
        assert!(s.has_deadline());
        let (n, out) = feed(&mut s, &f, now, &input);
        assert_eq!(n, second.len(), "the retry is a join, and holds again");
        assert!(matches!(requests(&out)[..], [Request::Join { name, .. }] if name == "free"));
        input.drain(..n);
        assert!(s.on_join_outcome(true));
        assert!(!s.has_deadline());
        let (n, out) = feed(&mut s, &f, now, &input);
        assert_eq!(n, msg.len());
        assert!(matches!(requests(&out)[..], [Request::Say { text, .. }] if text == "hi"));
    }

    #[test]
    fn a_join_once_joined_holds_nothing() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        feed(&mut s, &f, now, b"{\"type\":\"join\",\"sender\":\"al\"}\n");
        s.on_join_outcome(true);
        // The hub answers already_joined without an outcome: no hold to wait on.
        let input = b"{\"type\":\"join\",\"sender\":\"bo\"}\n{\"type\":\"who\"}\n";
        let (n, out) = feed(&mut s, &f, now, input);
        assert_eq!(n, input.len());
        assert_eq!(requests(&out).len(), 2);
        assert!(!s.holding());
    }

    #[test]
    fn the_first_line_deadline_fires_while_a_join_is_pending() {
        let f = Fixture::new();
        let t0 = Instant::now();
        for input in [
            &b"{\"type\":\"join\",\"sender\":\"al\"}\n{\"type\":\"who\"}\n"[..],
            &b"al\nhello\n"[..],
        ] {
            let mut s = session(&f, t0);
            feed(&mut s, &f, t0, input);
            assert!(s.holding());
            let mut out = Vec::new();
            s.on_tick(
                &f.ctx(t0 + f.cfg.first_line_timeout - Duration::from_millis(1)),
                &mut out,
            );
            assert!(out.is_empty());
            s.on_tick(&f.ctx(t0 + f.cfg.first_line_timeout), &mut out);
            assert_eq!(out, vec![Out::Kill(LeaveReason::Timeout)]);
            assert!(!s.holding(), "an ended session holds nothing");
        }
    }

    #[test]
    fn text_mode_holds_input_while_its_name_is_pending() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        let input = b"bob\nhello\n";
        let (n, out) = feed(&mut s, &f, now, input);
        assert_eq!(n, 4, "only the name line is used");
        assert_eq!(s.format(), Some(Format::Text));
        assert_eq!(
            requests(&out),
            vec![&Request::Join {
                name: "bob".into(),
                features: Features {
                    presence: true,
                    rooms: true,
                    history: false
                }
            }]
        );
        // Nothing moves until the hub answers.
        assert_eq!(feed(&mut s, &f, now, b"hello\n").0, 0);
        assert!(s.on_join_outcome(true), "held input is fed again");
        let (n, out) = feed(&mut s, &f, now, b"hello\n");
        assert_eq!(n, 6);
        assert_eq!(
            requests(&out),
            vec![&Request::Say {
                room: None,
                text: "hello".into()
            }]
        );
    }

    #[test]
    fn a_refused_text_name_makes_the_next_line_a_name_again() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        feed(&mut s, &f, now, b"two words\n");
        assert!(s.on_join_outcome(false));
        let (_, out) = feed(&mut s, &f, now, b"fine\n");
        assert!(matches!(requests(&out)[..], [Request::Join { name, .. }] if name == "fine"));
    }

    #[test]
    fn help_is_answered_in_text_modes_own_words() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        feed(&mut s, &f, now, b"tina\n");
        s.on_join_outcome(true);
        let (_, out) = feed(&mut s, &f, now, b"/help\n");
        match &requests(&out)[..] {
            [
                Request::Reply(Event::Info {
                    text, user: None, ..
                }),
            ] => {
                assert!(text.starts_with("Commands:") && text.contains("/quit"));
                assert!(!text.contains('{'), "no JSON syntax for a text user");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn private_syntax_becomes_a_typed_request() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        feed(&mut s, &f, now, b"tina\n");
        s.on_join_outcome(true);
        let (_, out) = feed(&mut s, &f, now, b"/msg jack  psst\n@jack again\n");
        assert_eq!(
            requests(&out),
            vec![
                &Request::Private {
                    to: "jack".into(),
                    text: "psst".into()
                },
                &Request::Private {
                    to: "jack".into(),
                    text: "again".into()
                }
            ]
        );
    }

    #[test]
    fn the_first_line_deadline_lasts_until_a_join_succeeds() {
        let f = Fixture::new();
        let t0 = Instant::now();
        let mut s = session(&f, t0);
        feed(&mut s, &f, t0, b"{\"type\":\"who\"}\n");
        s.on_join_outcome(false);
        assert!(s.has_deadline(), "no join yet");
        let mut out = Vec::new();
        s.on_tick(
            &f.ctx(t0 + f.cfg.first_line_timeout - Duration::from_millis(1)),
            &mut out,
        );
        assert!(out.is_empty());
        s.on_tick(&f.ctx(t0 + f.cfg.first_line_timeout), &mut out);
        assert_eq!(out, vec![Out::Kill(LeaveReason::Timeout)]);

        let mut s = session(&f, t0);
        feed(&mut s, &f, t0, b"{\"type\":\"join\",\"sender\":\"x\"}\n");
        s.on_join_outcome(true);
        assert!(!s.has_deadline());
        let mut out = Vec::new();
        s.on_tick(&f.ctx(t0 + f.cfg.first_line_timeout * 2), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn exit_ends_and_stops_reading() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        let input = b"{\"type\":\"exit\"}\n{\"type\":\"who\"}\n";
        let (n, out) = feed(&mut s, &f, now, input);
        assert_eq!(n, input.len());
        assert_eq!(out, vec![Out::End(LeaveReason::Exit)]);
    }

    #[test]
    fn a_line_over_the_limit_is_answered_then_ended() {
        let mut f = Fixture::new();
        f.cfg.max_line_bytes = 16;
        let now = Instant::now();
        let mut s = session(&f, now);
        let (_, out) = feed(&mut s, &f, now, &[b'x'; 40]);
        assert!(matches!(
            &out[..],
            [
                Out::Hub(Request::Reply(Event::Error {
                    code: ErrorCode::LineTooLong,
                    ..
                })),
                Out::End(LeaveReason::ProtocolError)
            ]
        ));
        assert_eq!(s.format(), Some(Format::Text));
        assert!(sent(&out).is_empty());
    }

    #[test]
    fn decode_errors_are_replies_in_order() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = session(&f, now);
        let (_, out) = feed(
            &mut s,
            &f,
            now,
            b"{\"type\":\"nope\"}\n{\"type\":\"who\"}\n",
        );
        assert!(matches!(
            &requests(&out)[..],
            [
                Request::Reply(Event::Error {
                    code: ErrorCode::BadFormat,
                    ..
                }),
                Request::Who
            ]
        ));
    }
}
