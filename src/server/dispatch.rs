//! The one dispatch: bytes read from a connection go to its session (with any
//! input it kept), and the session's outputs are applied in order: bytes
//! queued, requests handed to the hub, ends and kills recorded on the
//! connection. The server never looks at which wire a session speaks.

use log::debug;

use super::Core;
use crate::conn::Conn;
use crate::hub::{Hub, LeaveReason};
use crate::session::{Out, Port};

/// Feeds `data` (after any kept input) to the connection's session and
/// applies what it asks for. Empty `data` feeds the kept input again.
pub(super) fn feed(conn: &mut Conn, hub: &mut Hub, core: &mut Core, data: &[u8]) {
    if conn.is_closing() {
        return; // lingering: input is read and dropped
    }
    if conn.port == Port::Http {
        refresh_stats(core, hub);
    }
    let mut outs = std::mem::take(&mut core.outs);
    outs.clear();
    {
        let ctx = core.ctx(conn.id, conn.peer);
        if conn.inbuf.is_empty() {
            let used = conn.session.handle_bytes(data, &ctx, &mut outs);
            if let Some(rest) = data.get(used..)
                && !rest.is_empty()
            {
                conn.inbuf.extend_from_slice(rest);
            }
        } else {
            let mut buf = std::mem::take(&mut conn.inbuf);
            buf.extend_from_slice(data);
            let used = conn.session.handle_bytes(&buf, &ctx, &mut outs);
            buf.drain(..used.min(buf.len()));
            if buf.capacity() > 64 * 1024 && buf.len() < 4096 {
                buf.shrink_to_fit();
            }
            conn.inbuf = buf;
        }
    }
    apply(conn, hub, core, &mut outs);
    core.outs = outs;
}

/// Applies a session's outputs in order. Once the connection has ended, its
/// later requests are dropped (a client dropped for its output limit does
/// not go on chatting).
pub(super) fn apply(conn: &mut Conn, hub: &mut Hub, core: &mut Core, outs: &mut Vec<Out>) {
    let now = core.now;
    for out in outs.drain(..) {
        match out {
            Out::Send(bytes) => {
                conn.queue(bytes, core.cfg.out_hard_limit_bytes, &mut core.books);
            }
            Out::Hub(req) => {
                if conn.ended.is_none() {
                    match &core.store {
                        Some(store) => hub.handle_with(
                            conn.id,
                            req,
                            now,
                            &mut super::history::StoreArchive(store),
                        ),
                        None => hub.handle(conn.id, req, now),
                    }
                }
            }
            Out::End(why) => {
                log_end(conn, why);
                conn.end(why, now.mono, core.cfg.linger_timeout, &mut core.books);
            }
            Out::Kill(why) => {
                log_end(conn, why);
                conn.kill(why, &mut core.books);
            }
        }
    }
}

fn log_end(conn: &Conn, why: LeaveReason) {
    if conn.ended.is_some() {
        return;
    }
    // The session logged the details of a timeout or violation.
    debug!(
        "{:?} {}: ending ({}, {})",
        conn.id,
        conn.peer,
        why.as_str(),
        conn.protocol()
    );
}

/// The `/stats` figures as of now (connection counts are refreshed by the sweep).
fn refresh_stats(core: &mut Core, hub: &Hub) {
    let s = &core.stats;
    let v = &mut core.stats_view;
    v.users = hub.user_count();
    v.rooms = hub.room_count();
    v.messages_relayed = hub.relayed();
    v.bytes_in = s.bytes_in;
    v.bytes_out = s.bytes_out + core.books.bytes_out;
    v.accepted = s.accepted;
    v.refused = s.refused;
    v.deliveries = s.deliveries;
    v.dropped_slow = s.dropped_slow;
    v.uptime_secs = core
        .now
        .mono
        .saturating_duration_since(core.started)
        .as_secs();
    v.history = core.store.as_ref().map(|store| {
        let st = store.stats();
        crate::session::HistoryView {
            fsync: st.fsync.as_str(),
            degraded: st.degraded.is_some(),
            segments: st.segments,
            bytes: st.total_bytes,
            rooms: st.rooms,
            dropped_records: st.dropped_records,
        }
    });
}
