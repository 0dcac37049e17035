//! Delivery: the hub's effects become bytes in output queues. Each message is
//! encoded at most once per wire format (JSON line, text line, WebSocket text
//! frame), lazily, into that format's shared log, and every recipient the hub
//! resolved queues a range of it. Join outcomes go to their sessions.
//!
//! Consecutive broadcasts to the same recipients (a burst in one room) form a
//! run: their encodings follow each other in the logs, so each recipient
//! queues the whole run once, as one range, instead of once per message.

use log::info;
use slab::Slab;

use super::{Core, Server, history};
use crate::conn::Conn;
use crate::conn::Slice;
use crate::hub::{ConnId, Effect};
use crate::session::{Encoded, Format};

impl Server {
    /// Drains the hub's effects (see `hub::Effect` for their order).
    pub(super) fn deliver(&mut self) {
        let mut buf = std::mem::take(&mut self.core.enc);
        let offset = self.core.clock.offset_secs();
        let conns = &mut self.conns;
        let core = &mut self.core;
        let cluster = &mut self.cluster;
        let now = core.now.mono;
        let mut run = std::mem::take(&mut self.run);
        self.hub.drain_effects(|effect| {
            if let Some(cl) = cluster.as_mut() {
                cl.on_effect(&effect, now);
            }
            match effect {
                Effect::Deliver { to, msg, rooms } => {
                    let mut enc = Encoded::new(msg, offset, rooms);
                    if let [id] = to {
                        run.flush(conns, core);
                        send_alone(conns, core, *id, &enc, &mut buf);
                    } else {
                        run.add(to, rooms, &mut enc, conns, core, &mut buf);
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
        run.flush(&mut self.conns, &mut self.core);
        self.run = run;
        self.core.enc = buf;
    }
}

/// Consecutive broadcasts to the same recipients, in the same form: queued
/// once per recipient when the run ends (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Run {
    to: Vec<ConnId>,
    rooms: bool,
    /// The formats the recipients speak (JSON line, text, WebSocket).
    formats: [bool; 3],
    /// The run's bytes in each format, and the messages they hold.
    slices: [Option<Slice>; 3],
    counts: [u64; 3],
    active: bool,
}

fn format_index(f: Format) -> usize {
    match f {
        Format::JsonLine => 0,
        Format::Text => 1,
        Format::WsText => 2,
    }
}

const FORMATS: [Format; 3] = [Format::JsonLine, Format::Text, Format::WsText];

impl Run {
    /// One broadcast: joins the run when it goes to the same recipients and
    /// its bytes follow the run's in every format; else the run is queued
    /// and a new one starts with it.
    fn add(
        &mut self,
        to: &[ConnId],
        rooms: bool,
        enc: &mut Encoded<'_>,
        conns: &mut Slab<Conn>,
        core: &mut Core,
        buf: &mut Vec<u8>,
    ) {
        if !(self.active && self.rooms == rooms && self.to.as_slice() == to) {
            self.flush(conns, core);
            self.start(to, rooms, conns);
        }
        let mut fresh: [Option<Slice>; 3] = [None, None, None];
        for f in FORMATS {
            let i = format_index(f);
            if self.formats[i] {
                fresh[i] = enc.get(f, &mut core.logs, buf).cloned();
            }
        }
        let follows = fresh
            .iter()
            .zip(self.slices.iter())
            .all(|(new, run)| match (new, run) {
                (Some(n), Some(r)) => r.end_is(n),
                _ => true,
            });
        if !follows {
            // A new block began in some log: the run so far goes out first.
            self.flush(conns, core);
            self.start(to, rooms, conns);
        }
        for (i, new) in fresh.into_iter().enumerate() {
            let Some(new) = new else {
                continue;
            };
            if let Some(c) = self.counts.get_mut(i) {
                *c += 1;
            }
            match self.slices.get_mut(i) {
                Some(Some(run)) => {
                    run.extend(&new);
                }
                Some(slot) => *slot = Some(new),
                None => {}
            }
        }
    }

    fn start(&mut self, to: &[ConnId], rooms: bool, conns: &mut Slab<Conn>) {
        self.to.clear();
        self.to.extend_from_slice(to);
        self.rooms = rooms;
        self.formats = [false; 3];
        for &id in to {
            if let Some(f) = lookup(conns, id).and_then(|c| c.session.format())
                && let Some(x) = self.formats.get_mut(format_index(f))
            {
                *x = true;
            }
        }
        self.active = true;
    }

    /// Queues the run for each of its recipients.
    fn flush(&mut self, conns: &mut Slab<Conn>, core: &mut Core) {
        if !self.active {
            return;
        }
        self.active = false;
        for &id in &self.to {
            let Some(conn) = lookup(conns, id) else {
                continue;
            };
            let Some(i) = conn.session.format().map(format_index) else {
                continue;
            };
            if let Some(Some(slice)) = self.slices.get(i)
                && conn.queue_slice(slice, core.cfg.out_hard_limit_bytes, &mut core.books)
            {
                core.stats.deliveries += self.counts.get(i).copied().unwrap_or(0);
            }
        }
        self.slices = [None, None, None];
        self.counts = [0; 3];
        if self.to.capacity() > 4096 && self.to.len() < 1024 {
            self.to = Vec::new();
        }
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
