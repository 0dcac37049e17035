//! One client connection: its socket, leftover input, output queue, which wire
//! protocol it speaks, and where it is in its life (open, lingering, dead).
//!
//! `conn` holds state only; the server decides what to do with it.

pub mod out_queue;

use std::net::SocketAddr;
use std::time::Instant;

use mio::net::TcpStream;

use crate::hub::ConnId;
use crate::proto::line::LineDecoder;
use crate::proto::ws::session::WsSession;

pub use out_queue::{Flush, OutQueue};

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

/// The protocol a connection speaks now.
#[derive(Debug)]
pub enum Wire {
    /// Chat port before the first line: a JSON object picks JSON mode, anything else is a name.
    Detect,
    /// Newline-delimited JSON objects (the seed's protocol).
    JsonLines,
    /// Human-readable lines for `nc`/`telnet`.
    TextLines,
    /// Waiting for a complete WebSocket upgrade request.
    WsHandshake,
    /// An upgraded WebSocket.
    Ws(Box<WsState>),
    /// HTTP/1.1 requests (keep-alive, pipelined).
    Http,
}

/// A WebSocket's session and liveness probe.
#[derive(Debug)]
pub struct WsState {
    pub session: WsSession,
    /// When the last unanswered ping was sent.
    pub ping_sent: Option<Instant>,
}

/// The encoding a chat participant receives hub messages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLine,
    Text,
    WsText,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Open,
    /// Finishing: flush what is queued, half-close, then discard input until EOF or
    /// the deadline, so the peer reads our last bytes instead of a reset.
    Linger {
        deadline: Instant,
        shut_down: bool,
    },
    /// Queued for removal at the end of the turn.
    Dead,
}

/// One client.
#[derive(Debug)]
pub struct Conn {
    pub id: ConnId,
    pub socket: TcpStream,
    pub peer: SocketAddr,
    pub port: Port,
    pub wire: Wire,
    pub phase: Phase,
    /// Unconsumed input (an unfinished line, frame header or request); empty while idle.
    pub inbuf: Vec<u8>,
    pub lines: LineDecoder,
    pub out: OutQueue,
    /// WRITABLE interest is registered (only while output is pending).
    pub write_interest: bool,
    /// Already on the server's flush list this turn.
    pub dirty: bool,
    /// On the server's read-again list (its read budget ran out): read once
    /// next turn, not also for the readiness events it gets meanwhile.
    pub read_again: bool,
    /// Counted against the per-address limit (released when reaped).
    pub ip_counted: bool,
    /// Handshake, first-line or HTTP request/idle deadline.
    pub deadline: Option<Instant>,
    pub last_read: Instant,
}

impl Conn {
    /// A freshly accepted connection.
    pub fn new(
        id: ConnId,
        socket: TcpStream,
        peer: SocketAddr,
        port: Port,
        max_line_bytes: usize,
        deadline: Instant,
        now: Instant,
    ) -> Conn {
        let wire = match port {
            Port::Chat => Wire::Detect,
            Port::Ws => Wire::WsHandshake,
            Port::Http => Wire::Http,
        };
        Conn {
            id,
            socket,
            peer,
            port,
            wire,
            phase: Phase::Open,
            inbuf: Vec::new(),
            lines: LineDecoder::new(max_line_bytes),
            out: OutQueue::new(),
            write_interest: false,
            dirty: false,
            read_again: false,
            ip_counted: false,
            deadline: Some(deadline),
            last_read: now,
        }
    }

    /// How this connection receives hub messages; `None` when it is not (or no
    /// longer) a chat participant.
    /// A lingering connection still gets replies addressed to it (queued before
    /// it said goodbye); it is no longer a hub member, so broadcasts skip it.
    pub fn format(&self) -> Option<Format> {
        if self.phase == Phase::Dead {
            return None;
        }
        match &self.wire {
            Wire::JsonLines => Some(Format::JsonLine),
            Wire::TextLines => Some(Format::Text),
            Wire::Ws(ws) if !ws.session.is_closing() => Some(Format::WsText),
            _ => None,
        }
    }

    /// True once the connection stopped taking new work.
    pub fn is_closing(&self) -> bool {
        self.phase != Phase::Open
    }

    /// A short protocol name for logs and `/stats`.
    pub fn protocol(&self) -> &'static str {
        match self.wire {
            Wire::Detect => "tcp_pending",
            Wire::JsonLines => "tcp_json",
            Wire::TextLines => "tcp_text",
            Wire::WsHandshake => "ws_handshake",
            Wire::Ws(_) => "websocket",
            Wire::Http => "http",
        }
    }
}
