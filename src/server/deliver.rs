//! Delivery: the hub's effects become bytes in output queues. Each message is
//! encoded at most once per wire format (JSON line, text line, WebSocket text
//! frame), lazily, and the same shared chunk is queued for every recipient the
//! hub resolved. Join outcomes go to their sessions.

use log::info;
use slab::Slab;

use super::{Core, Server, history};
use crate::conn::Conn;
use crate::hub::{ConnId, Effect};
use crate::session::Encoded;

impl Server {
    /// Drains the hub's effects (see `hub::Effect` for their order).
    pub(super) fn deliver(&mut self) {
        let mut buf = std::mem::take(&mut self.core.enc);
        let offset = self.core.clock.offset_secs();
        let conns = &mut self.conns;
        let core = &mut self.core;
        let cluster = &mut self.cluster;
        let now = core.now.mono;
        self.hub.drain_effects(|effect| {
            if let Some(cl) = cluster.as_mut() {
                cl.on_effect(&effect, now);
            }
            match effect {
                Effect::Deliver { to, msg, rooms } => {
                    let mut enc = Encoded::new(msg, offset, rooms);
                    if let [id] = to {
                        send_alone(conns, core, *id, &enc, &mut buf);
                    } else {
                        for &id in to {
                            send_one(conns, core, id, &mut enc, &mut buf);
                        }
                    }
                }
                Effect::Joined { conn, name, .. } => {
                    if let Some(c) = lookup(conns, conn) {
                        info!("{conn:?} {}: joined as {name} ({})", c.peer, c.protocol());
                        if c.session.on_join_outcome(true) {
                            core.resume.push(c.key());
                        }
                    }
                }
                Effect::JoinRefused { conn, .. } => {
                    if let Some(c) = lookup(conns, conn)
                        && c.session.on_join_outcome(false)
                    {
                        core.resume.push(c.key());
                    }
                }
                Effect::Persist { msg } => {
                    if let (Some(store), Some(rec)) = (&mut core.store, history::record_of(msg))
                        && let Err(e) = store.append(&rec)
                    {
                        log::debug!("history: {} seq {} not stored: {e:?}", rec.room, rec.seq);
                    }
                }
                Effect::Gone {
                    conn, name, why, ..
                } => match lookup(conns, conn) {
                    Some(c) => info!("{conn:?} {}: {name} left ({})", c.peer, why.as_str()),
                    None => info!("{conn:?}: {name} left ({})", why.as_str()),
                },
                Effect::Claim { .. }
                | Effect::Post { .. }
                | Effect::Private { .. }
                | Effect::Watch { .. }
                | Effect::Presence { .. } => {}
            }
        });
        self.core.enc = buf;
    }
}

fn lookup(conns: &mut Slab<Conn>, id: ConnId) -> Option<&mut Conn> {
    conns
        .get_mut(usize::try_from(id.key).ok()?)
        .filter(|c| c.id == id)
}

/// A message for one recipient: its own bytes, outside the shared logs.
fn send_alone(
    conns: &mut Slab<Conn>,
    core: &mut Core,
    id: ConnId,
    enc: &Encoded<'_>,
    buf: &mut Vec<u8>,
) {
    let Some(conn) = lookup(conns, id) else {
        return;
    };
    let Some(format) = conn.session.format() else {
        return;
    };
    if let Some(bytes) = enc.get_owned(format, buf)
        && conn.queue(bytes, core.cfg.out_hard_limit_bytes, &mut core.books)
    {
        core.stats.deliveries += 1;
    }
}

fn send_one(
    conns: &mut Slab<Conn>,
    core: &mut Core,
    id: ConnId,
    enc: &mut Encoded<'_>,
    buf: &mut Vec<u8>,
) {
    let Some(conn) = lookup(conns, id) else {
        return;
    };
    let Some(format) = conn.session.format() else {
        return;
    };
    if let Some(slice) = enc.get(format, &mut core.logs, buf)
        && conn.queue_slice(slice, core.cfg.out_hard_limit_bytes, &mut core.books)
    {
        core.stats.deliveries += 1;
    }
}
