//! Timers: one sweep over all connections a few times a second checks every
//! deadline (handshake and first line, HTTP request and keep-alive idle,
//! lingering close, WebSocket ping and pong). A sweep over 10,000 connections
//! costs tens of microseconds, which keeps per-connection state to two instants.

use std::rc::Rc;
use std::time::Duration;

use log::{debug, warn};

use super::{Server, http, input};
use crate::conn::{Phase, Wire};
use crate::proto::ws::close::CloseCode;

/// How often deadlines are checked (their resolution).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

/// What a due deadline does to a connection.
enum Due {
    Nothing,
    Kill,
    Ping,
    HttpTimeout,
    /// A WebSocket that did not join in time: closed with 1008.
    WsJoinTimeout,
}

impl Server {
    /// Checks every connection's deadlines.
    pub(super) fn sweep(&mut self) {
        let now = self.core.now.mono;
        let ping_interval = self.core.cfg.ws_ping_interval;
        let pong_timeout = self.core.cfg.ws_pong_timeout;
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        let mut due_list = Vec::new();
        for (key, conn) in self.conns.iter() {
            let p = conn.protocol();
            match counts.iter_mut().find(|(k, _)| *k == p) {
                Some((_, n)) => *n += 1,
                None => counts.push((p, 1)),
            }
            let due = match conn.phase {
                Phase::Dead => Due::Nothing,
                Phase::Linger { deadline, .. } if now >= deadline => Due::Kill,
                Phase::Linger { .. } => Due::Nothing,
                Phase::Open => match &conn.wire {
                    Wire::Ws(_) if conn.deadline.is_some_and(|d| now >= d) => Due::WsJoinTimeout,
                    Wire::Ws(ws) => match ws.ping_sent {
                        Some(sent) if now.saturating_duration_since(sent) >= pong_timeout => {
                            Due::Kill
                        }
                        Some(_) => Due::Nothing,
                        None if now.saturating_duration_since(conn.last_read) >= ping_interval => {
                            Due::Ping
                        }
                        None => Due::Nothing,
                    },
                    Wire::Http if conn.deadline.is_some_and(|d| now >= d) => Due::HttpTimeout,
                    _ if conn.deadline.is_some_and(|d| now >= d) => Due::Kill,
                    _ => Due::Nothing,
                },
            };
            if !matches!(due, Due::Nothing) {
                due_list.push((key, due));
            }
        }
        self.core.conn_counts = counts;
        for (key, due) in due_list {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match due {
                Due::Nothing => {}
                Due::Kill => {
                    if conn.phase == Phase::Open {
                        warn!(
                            "{:?} {}: timed out ({}), disconnecting",
                            conn.id,
                            conn.peer,
                            conn.protocol()
                        );
                    }
                    self.core.hub.handle_disconnect(conn.id, self.core.now);
                    input::kill(&mut self.core, conn);
                }
                Due::Ping => {
                    if let Wire::Ws(ws) = &mut conn.wire {
                        let mut reply = std::mem::take(&mut self.core.ws_reply);
                        reply.clear();
                        ws.session.ping(b"alive?", &mut reply);
                        ws.ping_sent = Some(now);
                        debug!("{:?}: ping", conn.id);
                        input::queue(&mut self.core, conn, Rc::from(reply.as_slice()));
                        self.core.ws_reply = reply;
                    }
                }
                Due::HttpTimeout => http::timeout(&mut self.core, conn),
                Due::WsJoinTimeout => {
                    if let Wire::Ws(ws) = &mut conn.wire {
                        debug!("{:?} {}: no join in time, closing", conn.id, conn.peer);
                        let mut reply = std::mem::take(&mut self.core.ws_reply);
                        reply.clear();
                        ws.session
                            .close(CloseCode::POLICY, "join timeout", &mut reply);
                        input::queue(&mut self.core, conn, Rc::from(reply.as_slice()));
                        self.core.ws_reply = reply;
                    }
                    input::linger(&mut self.core, conn);
                }
            }
        }
    }
}
