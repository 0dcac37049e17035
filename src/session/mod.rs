//! One session per wire, each sans-I/O: bytes, ticks and hub outcomes in;
//! bytes to queue, hub requests and close decisions out ([`Out`]), in order.
//!
//! - [`chat`]: the chat port: first line picks JSON lines or plain text; the
//!   first-line deadline; text mode's `/help` and name line;
//! - [`ws`]: the WebSocket port's handshake and the chat over WebSocket text
//!   frames (ping/pong liveness, join deadline, close codes), and the echo
//!   application used for conformance tests;
//! - [`http`]: static files, `/healthz`, `/stats`, and the upgrade at `/ws`.
//!
//! [`Session`] is the one place that tells the wires apart: the server calls
//! the same methods on every connection and applies the outputs. A session
//! never reads hub state; it learns the outcome of its join from
//! [`Session::on_join_outcome`], so a join that waits on another process
//! changes nothing here. Nothing in here touches a socket or reads a clock:
//! `now` comes in [`Ctx`].

pub mod chat;
pub mod http;
pub mod ws;

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use crate::config::Config;
use crate::conn::out_queue::{SharedLog, Slice};
use crate::hub::{ConnId, ErrorCode, Event, LOBBY, LeaveReason, Message, Request};
use crate::proto::chat::{ClientMsg, Stamp, encode_json, encode_message_json, encode_message_text};
use crate::proto::ws::frame::{Opcode, frame_header};
use crate::proto::ws::handshake::{HandshakeConfig, HandshakeRequest};
use crate::web::static_files::StaticFiles;

/// What a session asks for, in the order it must happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// Queue these bytes for the peer now.
    Send(Rc<[u8]>),
    /// A request for the hub.
    Hub(Request),
    /// Say what is queued, then close (lingering); the hub hears `why`.
    End(LeaveReason),
    /// Close now, dropping queued output; the hub hears `why`.
    Kill(LeaveReason),
}

/// The server-wide figures behind `/stats`, as of this turn.
#[derive(Debug, Clone, Default)]
pub struct StatsView {
    pub connections: Vec<(&'static str, usize)>,
    pub users: usize,
    pub rooms: usize,
    pub messages_relayed: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub accepted: u64,
    pub refused: u64,
    pub uptime_secs: u64,
    /// Messages queued for recipients (one per recipient).
    pub deliveries: u64,
    /// Clients dropped for reading too slowly.
    pub dropped_slow: u64,
    /// The durable history, when there is one.
    pub history: Option<HistoryView>,
    /// The cluster link, with `--redis`.
    pub cluster: Option<ClusterView>,
}

/// The cluster node's figures for `/stats` and `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    pub node: String,
    /// The Redis target, password redacted.
    pub redis: String,
    /// The command link is connected.
    pub up: bool,
    pub connects: u64,
    pub posted: u64,
    pub received: u64,
    pub gaps_filled: u64,
    pub gaps_lost: u64,
    pub rtt_us: u64,
    pub watched_rooms: usize,
    pub local_names: usize,
}

/// The history store's figures for `/stats`.
#[derive(Debug, Clone, Default)]
pub struct HistoryView {
    pub fsync: &'static str,
    pub degraded: bool,
    pub segments: usize,
    pub bytes: u64,
    pub rooms: usize,
    pub dropped_records: u64,
}

/// What the WebSocket port serves once a handshake succeeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WsApp {
    /// The chat (the production server).
    #[default]
    Chat,
    /// Echo every message back (the conformance-test server, `examples/ws_echo.rs`).
    Echo,
}

/// What sessions may read besides their own state.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub now: Instant,
    pub files: &'a StaticFiles,
    pub handshake: &'a HandshakeConfig,
    /// The current HTTP `Date` value.
    pub http_date: &'a str,
    pub stats: &'a StatsView,
    pub ws_app: WsApp,
    /// The connection this call is about, for log lines.
    pub conn: ConnId,
    pub peer: SocketAddr,
}

/// The encoding a chat participant receives hub messages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLine,
    Text,
    WsText,
}

/// The listener a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// JSON lines or plain text.
    Chat,
    /// WebSocket, any path.
    Ws,
    /// Web client, `/ws`, `/healthz`, `/stats`.
    Http,
}

/// A connection's protocol state. See the module docs.
#[derive(Debug)]
pub enum Session {
    Chat(chat::ChatSession),
    WsHandshake(ws::HandshakeSession),
    Ws(Box<ws::WsChatSession>),
    Echo(Box<ws::EchoSession>),
    Http(http::HttpSession),
}

/// What a decoded client message asks for.
pub(crate) enum Asked {
    Hub(Request),
    Exit,
    Help,
}

/// Maps a decoded client message to a hub request. `lobby_default`: a
/// message without a room is for `#lobby` (JSON); otherwise it is for the
/// user's current room (text mode).
pub(crate) fn asked(msg: ClientMsg, lobby_default: bool) -> Asked {
    Asked::Hub(match msg {
        ClientMsg::Join { name, features } => Request::Join { name, features },
        ClientMsg::Message { room, text } => Request::Say {
            room: room.or_else(|| lobby_default.then(|| LOBBY.to_owned())),
            text,
        },
        ClientMsg::Private { to, text } => Request::Private { to, text },
        ClientMsg::Who => Request::Who,
        ClientMsg::RoomJoin { room, since } => Request::RoomJoin { room, since },
        ClientMsg::RoomLeave { room } => Request::RoomLeave { room },
        ClientMsg::Rooms => Request::Rooms,
        ClientMsg::Topic { room, topic } => Request::Topic { room, topic },
        ClientMsg::History {
            room,
            before,
            limit,
        } => Request::History {
            room,
            before,
            limit,
        },
        ClientMsg::Exit => return Asked::Exit,
        ClientMsg::Help => return Asked::Help,
    })
}

/// What one step of a session's input handling ended with.
pub(crate) enum Step {
    /// Bytes used (0 = need more or paused).
    Used(usize),
    /// The bytes used by a valid WebSocket upgrade request; the session becomes a WebSocket.
    Upgrade(usize, HandshakeRequest),
}

impl Session {
    /// A fresh session for a client of `port`, accepted at `now`.
    pub fn new(port: Port, cfg: &Config, now: Instant) -> Session {
        match port {
            Port::Chat => Session::Chat(chat::ChatSession::new(cfg, now)),
            Port::Ws => Session::WsHandshake(ws::HandshakeSession::new(cfg, now)),
            Port::Http => Session::Http(http::HttpSession::new(cfg, now)),
        }
    }

    /// Feeds `input` (leftover plus new bytes); returns the bytes used. The rest
    /// (an unfinished line, frame header or request, or input held while a
    /// join is pending) is passed again with the next bytes. Stops after an
    /// [`Out::End`] or [`Out::Kill`].
    pub fn handle_bytes(&mut self, input: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Out>) -> usize {
        let mut used = 0;
        loop {
            let rest = input.get(used..).unwrap_or_default();
            let step = match self {
                Session::Chat(s) => Step::Used(s.handle_bytes(rest, ctx, out)),
                Session::WsHandshake(s) => s.handle_bytes(rest, ctx, out),
                Session::Ws(s) => Step::Used(s.handle_bytes(rest, ctx, out)),
                Session::Echo(s) => Step::Used(s.handle_bytes(rest, ctx, out)),
                Session::Http(s) => s.handle_bytes(rest, ctx, out),
            };
            match step {
                Step::Used(n) => return used + n,
                Step::Upgrade(n, req) => {
                    used += n;
                    out.push(Out::Send(Rc::from(
                        crate::proto::ws::handshake::response_101(&req),
                    )));
                    *self = match ctx.ws_app {
                        WsApp::Chat => Session::Ws(Box::new(ws::WsChatSession::new(ctx))),
                        WsApp::Echo => Session::Echo(Box::new(ws::EchoSession::new(ctx))),
                    };
                    log::debug!(
                        "{:?} {}: WebSocket open on {}",
                        ctx.conn,
                        ctx.peer,
                        req.path
                    );
                    if used >= input.len() {
                        return used;
                    }
                }
            }
        }
    }

    /// Timers: deadlines, WebSocket pings. Called a few times a second.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        match self {
            Session::Chat(s) => s.on_tick(ctx, out),
            Session::WsHandshake(s) => s.on_tick(ctx, out),
            Session::Ws(s) => s.on_tick(ctx, out),
            Session::Echo(s) => s.on_tick(ctx, out),
            Session::Http(s) => s.on_tick(ctx, out),
        }
    }

    /// The hub answered this connection's join (`joined` false: refused).
    /// Returns true when input held back while waiting should be fed again.
    pub fn on_join_outcome(&mut self, joined: bool) -> bool {
        match self {
            Session::Chat(s) => s.on_join_outcome(joined),
            Session::Ws(s) => s.on_join_outcome(joined),
            _ => false,
        }
    }

    /// True while the session holds input back for a join the hub has not
    /// answered yet: bytes passed meanwhile are not used, and the server
    /// keeps them (up to its cap, then it stops reading) until
    /// [`Session::on_join_outcome`] says to feed them again.
    pub fn holding(&self) -> bool {
        match self {
            Session::Chat(s) => s.holding(),
            Session::Ws(s) => s.holding(),
            _ => false,
        }
    }

    /// The server is stopping: last words before the connection lingers
    /// (WebSockets: a 1001 close frame).
    pub fn on_drain(&mut self, out: &mut Vec<Out>) {
        match self {
            Session::Ws(s) => s.on_drain(out),
            Session::Echo(s) => s.on_drain(out),
            _ => {}
        }
    }

    /// How this connection receives hub messages; `None` when it is not (or
    /// no longer) a chat participant.
    pub fn format(&self) -> Option<Format> {
        match self {
            Session::Chat(s) => s.format(),
            Session::Ws(s) => s.format(),
            _ => None,
        }
    }

    /// A short protocol name for logs and `/stats`.
    pub fn protocol(&self) -> &'static str {
        match self {
            Session::Chat(s) => s.protocol(),
            Session::WsHandshake(_) => "ws_handshake",
            Session::Ws(_) | Session::Echo(_) => "websocket",
            Session::Http(_) => "http",
        }
    }
}

/// Why a client is turned away at the door, before it has a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached, or out of descriptors.
    Full,
    /// `--max-per-ip` reached for the client's address.
    PerIp,
}

/// Appends the refusal a client of `port` gets: a chat-port client an error
/// line (JSON: its mode is not known yet), a WebSocket or HTTP client a 503.
pub fn refusal(port: Port, why: Refusal, stamp: Stamp, out: &mut Vec<u8>) {
    let (code, text) = match why {
        Refusal::Full => (
            ErrorCode::ServerFull,
            "The server is full. Please try again later.",
        ),
        Refusal::PerIp => (
            ErrorCode::TooManyConnections,
            "Too many connections from your address. Close some and try again.",
        ),
    };
    match port {
        Port::Chat => {
            let event = Event::Error {
                code,
                text: text.into(),
            };
            encode_json(&event, stamp, out);
            out.push(b'\n');
        }
        Port::Ws | Port::Http => {
            let head = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                text.len() + 1
            );
            out.extend_from_slice(head.as_bytes());
            out.extend_from_slice(text.as_bytes());
            out.push(b'\n');
        }
    }
}

/// The shared logs broadcasts are encoded into, one per wire format (see
/// `conn::out_queue`).
#[derive(Debug, Default)]
pub struct OutLogs {
    pub json: SharedLog,
    pub text: SharedLog,
    pub ws: SharedLog,
}

/// Lazily encoded forms of one hub message: each wire format at most once,
/// appended to that format's shared log and queued by every recipient of
/// that format as a range of it.
pub struct Encoded<'a> {
    msg: &'a Message,
    offset_secs: i32,
    /// The recipients get the rooms form.
    rooms: bool,
    json: Option<Option<Slice>>,
    text: Option<Option<Slice>>,
    ws: Option<Option<Slice>>,
}

impl<'a> Encoded<'a> {
    /// `offset_secs`: the local zone's offset from UTC, for the `HH:MM:SS`
    /// stamps; `rooms`: the recipients joined with the rooms feature.
    pub fn new(msg: &'a Message, offset_secs: i32, rooms: bool) -> Self {
        Encoded {
            msg,
            offset_secs,
            rooms,
            json: None,
            text: None,
            ws: None,
        }
    }

    /// The bytes for `format` for one recipient alone: not in a shared log,
    /// where they would split the runs of everyone else's broadcasts.
    pub fn get_owned(&self, format: Format, buf: &mut Vec<u8>) -> Option<Rc<[u8]>> {
        let (msg, offset, rooms) = (self.msg, self.offset_secs, self.rooms);
        buf.clear();
        match format {
            Format::JsonLine => {
                encode_message_json(msg, offset, rooms, buf);
                buf.push(b'\n');
            }
            Format::Text => {
                if !encode_message_text(msg, offset, buf) {
                    return None;
                }
            }
            Format::WsText => {
                let mut payload = Vec::new();
                encode_message_json(msg, offset, rooms, &mut payload);
                frame_header(Opcode::Text, payload.len(), buf);
                buf.extend_from_slice(&payload);
            }
        }
        (!buf.is_empty()).then(|| Rc::from(buf.as_slice()))
    }

    /// The bytes for `format`, appended to `logs` on first use; `None` when
    /// that format carries nothing for this message. `buf` is scratch space.
    pub fn get(&mut self, format: Format, logs: &mut OutLogs, buf: &mut Vec<u8>) -> Option<&Slice> {
        let (msg, offset, rooms) = (self.msg, self.offset_secs, self.rooms);
        match format {
            Format::JsonLine => self
                .json
                .get_or_insert_with(|| {
                    logs.json.append(|v| {
                        encode_message_json(msg, offset, rooms, v);
                        v.push(b'\n');
                        true
                    })
                })
                .as_ref(),
            Format::Text => self
                .text
                .get_or_insert_with(|| logs.text.append(|v| encode_message_text(msg, offset, v)))
                .as_ref(),
            Format::WsText => self
                .ws
                .get_or_insert_with(|| {
                    buf.clear();
                    encode_message_json(msg, offset, rooms, buf);
                    logs.ws.append(|v| {
                        frame_header(Opcode::Text, buf.len(), v);
                        v.extend_from_slice(buf);
                        true
                    })
                })
                .as_ref(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_speak_each_ports_language() {
        let stamp = Stamp::from_hms(1, 2, 3);
        let mut out = Vec::new();
        refusal(Port::Chat, Refusal::Full, stamp, &mut out);
        let v: serde_json::Value =
            serde_json::from_slice(out.strip_suffix(b"\n").expect("one line")).expect("JSON");
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "server_full");
        assert_eq!(v["timestamp"], "01:02:03");

        for port in [Port::Ws, Port::Http] {
            out.clear();
            refusal(port, Refusal::PerIp, stamp, &mut out);
            let text = String::from_utf8(out.clone()).expect("UTF-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
            assert!(head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
            assert!(head.contains(&format!("Content-Length: {}", body.len())));
            assert!(body.starts_with("Too many connections"));
        }
    }

    #[test]
    fn each_format_is_encoded_once_and_shared() {
        let msg = Message {
            ts_ms: 0,
            event: Event::Chat {
                from: "a".into(),
                text: "hi".into(),
            },
            room: None,
        };
        let mut enc = Encoded::new(&msg, 0, false);
        let mut buf = Vec::new();
        let mut logs = OutLogs::default();
        let a = enc
            .get(Format::JsonLine, &mut logs, &mut buf)
            .expect("json")
            .clone();
        let b = enc
            .get(Format::JsonLine, &mut logs, &mut buf)
            .expect("json")
            .clone();
        assert_eq!(
            logs.json.current_bytes(),
            a.len(),
            "encoded once for every JSON recipient"
        );
        let a = a.to_vec();
        assert_eq!(b.to_vec(), a);
        assert_eq!(&a[..], &b"{\"type\":\"message\",\"sender\":\"a\",\"message\":\"hi\",\"timestamp\":\"00:00:00\"}\n"[..]);
        let t = enc
            .get(Format::Text, &mut logs, &mut buf)
            .expect("text")
            .to_vec();
        assert_eq!(&t[..], b"[00:00:00] a: hi\n");
        let w = enc
            .get(Format::WsText, &mut logs, &mut buf)
            .expect("ws")
            .to_vec();
        assert_eq!(w[0], 0x81);
        assert_eq!(&w[2..], &a[..a.len() - 1]);
        let presence = Message {
            ts_ms: 0,
            event: Event::Presence {
                joined: vec![],
                left: vec![],
                count: 0,
            },
            room: None,
        };
        let mut enc = Encoded::new(&presence, 0, false);
        assert!(
            enc.get(Format::Text, &mut logs, &mut buf).is_none(),
            "text mode gets no deltas"
        );
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the sessions' unit tests.
    use super::*;
    use crate::proto::ws::handshake::HandshakeConfig;

    pub struct Fixture {
        pub cfg: Config,
        pub files: StaticFiles,
        pub handshake: HandshakeConfig,
        pub stats: StatsView,
        pub ws_app: WsApp,
    }

    impl Fixture {
        pub fn new() -> Fixture {
            let cfg = Config::default();
            let handshake = HandshakeConfig {
                max_header_bytes: cfg.max_header_bytes,
                allowed_origins: Vec::new(),
            };
            Fixture {
                cfg,
                files: StaticFiles::embedded(),
                handshake,
                stats: StatsView::default(),
                ws_app: WsApp::Chat,
            }
        }

        pub fn ctx(&self, now: Instant) -> Ctx<'_> {
            Ctx {
                cfg: &self.cfg,
                now,
                files: &self.files,
                handshake: &self.handshake,
                http_date: "Thu, 01 Jan 1970 00:00:00 GMT",
                stats: &self.stats,
                ws_app: self.ws_app,
                conn: ConnId { key: 0, serial: 0 },
                peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            }
        }
    }

    /// Every `Out::Send` concatenated, as text (lossy).
    pub fn sent(out: &[Out]) -> String {
        let mut v = Vec::new();
        for o in out {
            if let Out::Send(b) = o {
                v.extend_from_slice(b);
            }
        }
        String::from_utf8_lossy(&v).into_owned()
    }

    /// The hub requests in `out`.
    pub fn requests(out: &[Out]) -> Vec<&Request> {
        out.iter()
            .filter_map(|o| match o {
                Out::Hub(r) => Some(r),
                _ => None,
            })
            .collect()
    }
}
