//! The sweep: a few times a second, every connection's session checks its
//! deadlines (first line, handshake, HTTP request and keep-alive idle,
//! WebSocket join, ping and pong) and every lingering close its own. A sweep
//! over 10,000 connections costs tens of microseconds, which keeps
//! per-connection timer state to an instant or two. Server-level timers are
//! in the deadline queue ([`super::deadlines`]).

use std::time::Duration;

use super::{Server, dispatch};
use crate::conn::Phase;
use crate::hub::LeaveReason;

/// How often connection deadlines are checked (their resolution).
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);

impl Server {
    /// Checks every connection's deadlines; refreshes the `/stats` connection counts.
    pub(super) fn sweep(&mut self) {
        let now = self.core.now.mono;
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        let mut outs = std::mem::take(&mut self.core.outs);
        for (_, conn) in self.conns.iter_mut() {
            let p = conn.protocol();
            match counts.iter_mut().find(|(k, _)| *k == p) {
                Some((_, n)) => *n += 1,
                None => counts.push((p, 1)),
            }
            match conn.phase {
                Phase::Dead => {}
                Phase::Linger { deadline, .. } => {
                    if now >= deadline {
                        conn.kill(LeaveReason::Closed, &mut self.core.books);
                    }
                }
                Phase::Open => {
                    outs.clear();
                    {
                        let ctx = self.core.ctx(conn.id, conn.peer);
                        conn.session.on_tick(&ctx, &mut outs);
                    }
                    if !outs.is_empty() {
                        dispatch::apply(conn, &mut self.hub, &mut self.core, &mut outs);
                    }
                }
            }
        }
        self.core.outs = outs;
        self.core.stats_view.connections = counts;
    }
}
