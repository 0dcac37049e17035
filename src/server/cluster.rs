//! The loop's side of the cluster (`--redis`): two outbound links to Redis
//! carry the bytes of [`Node`] (commands on one, subscriptions on the
//! other); the hub's cluster effects go to the node, and what the node
//! hears goes to the hub, in order. No chat rule lives here.

use std::rc::Rc;
use std::time::{Duration, Instant};

use log::warn;

use super::{Server, history, link};
use crate::cluster::node::{Node, NodeConfig, ToHub};
use crate::hub::{Effect, Event};

/// The node and its two links.
pub(crate) struct Cluster {
    pub node: Node,
    cmd: usize,
    sub: usize,
    cmd_up: bool,
    sub_up: bool,
}

impl Cluster {
    /// Passes one hub effect to the node; false when it is not a cluster effect.
    pub fn on_effect(&mut self, effect: &Effect<'_>, now: Instant) -> bool {
        let node = &mut self.node;
        match *effect {
            Effect::Claim { conn, name, folded } => node.claim(conn, name, folded, now),
            Effect::Joined { conn, name, .. } => node.joined(conn, name, now),
            Effect::Gone { conn, .. } => node.gone(conn, now),
            Effect::Post { msg } => {
                let room = msg.room.as_ref().map(|t| t.name.clone());
                match (&msg.event, room) {
                    (Event::Chat { from, text }, Some(room)) => {
                        node.post_line(&room, msg.ts_ms, from, text, now);
                    }
                    (Event::Topic { topic, by, .. }, Some(room)) => {
                        node.post_topic(&room, msg.ts_ms, by, topic, now);
                    }
                    _ => {}
                }
            }
            Effect::Private {
                conn,
                to,
                from,
                text,
            } => node.private(conn, to, from, text, now),
            Effect::Watch { room, on } => node.watch(room, on, now),
            Effect::Presence { room, name, on } => node.presence(room, name, on, now),
            _ => return false,
        }
        true
    }
}

impl Server {
    /// Opens the two links to Redis (`--redis`); the node connects in the
    /// background and the server serves its users meanwhile.
    pub(super) fn start_cluster(&mut self) {
        let Some(target) = self.core.cfg.redis.clone() else {
            return;
        };
        let addr = match target.resolve() {
            Ok(a) => a,
            Err(e) => {
                warn!("cluster: cannot resolve {target}: {e}; serving alone");
                return;
            }
        };
        let cfg = NodeConfig {
            node_id: self.core.cfg.node_id.clone(),
            user: target.user.clone(),
            password: target.password.clone(),
            db: target.db,
            // A node killed without releasing its users' names holds them
            // this long (`--presence-ttl`).
            claim_ttl: self.core.cfg.presence_ttl,
            stream_maxlen: 10_000,
            load_lines: self.core.cfg.hub.ring_capacity.max(1),
            fresh_epoch: self.hub_epoch(),
        };
        let now = Instant::now();
        let link_cfg = link::LinkConfig {
            connect_timeout: Duration::from_secs(2),
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_secs(2),
            max_out_bytes: 64 << 20,
            max_in_bytes: 16 << 20,
            ..link::LinkConfig::default()
        };
        let (Some(cmd), Some(sub)) = (
            self.open_link(addr, link_cfg),
            self.open_link(addr, link_cfg),
        ) else {
            warn!("cluster: no link tokens left; serving alone");
            return;
        };
        self.core.stats_view.cluster = Some(crate::session::ClusterView {
            node: self.core.cfg.node_id.clone(),
            redis: target.to_string(),
            ..Default::default()
        });
        self.cluster = Some(Cluster {
            node: Node::new(cfg, now),
            cmd,
            sub,
            cmd_up: false,
            sub_up: false,
        });
    }

    /// Moves the cluster's bytes and news: link state changes, input to the
    /// node, what the node heard to the hub, the node's output to the links.
    pub(super) fn pump_cluster(&mut self) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let now = self.core.now.mono;
        cl.node.set_unix_ms(self.core.now.unix_ms);
        let registry = self.poll.registry();
        for (i, is_cmd) in [(cl.cmd, true), (cl.sub, false)] {
            let Some(link) = self.links.get_mut(i) else {
                continue;
            };
            let connected = link.state().is_connected();
            let was = if is_cmd { cl.cmd_up } else { cl.sub_up };
            if connected && !was {
                if is_cmd {
                    cl.cmd_up = true;
                } else {
                    cl.sub_up = true;
                }
                // What was queued for the old connection means nothing now.
                link.state_mut().clear_output();
                let n = link.state().input().len();
                link.state_mut().consume_input(n);
                if is_cmd {
                    cl.node.on_cmd_connected(now);
                    // Should Redis lose its data before the next connect,
                    // the cluster gets an epoch no node has seen (the
                    // connect count keeps it apart from the start-up one,
                    // made in the same millisecond maybe).
                    let nanos = u128::from(self.core.now.unix_ms) * 1_000_000
                        + u128::from(cl.node.stats.connects);
                    let fresh = crate::store::epoch::generate(nanos, std::process::id());
                    cl.node.set_fresh_epoch(fresh);
                } else {
                    cl.node.on_sub_connected(now);
                }
            }
            // Input is decoded also when the link just dropped: what Redis
            // sent before closing still answers (a line's POST reply read
            // along with the close must not count as unanswered, or the
            // line would be delivered here a second time).
            if connected || was {
                loop {
                    let input = link.state().input();
                    if input.is_empty() {
                        break;
                    }
                    let used = if is_cmd {
                        cl.node.on_cmd_input(input, now)
                    } else {
                        cl.node.on_sub_input(input, now)
                    };
                    match used {
                        Ok(n) => link.state_mut().consume_input(n),
                        Err(e) => {
                            warn!("cluster: link to Redis dropped: {e}");
                            let next = link.fail(registry, now);
                            self.timers_for_link.push((i, next));
                            break;
                        }
                    }
                    if !link.read_paused() {
                        break;
                    }
                    let next = link.read(registry, now, &mut self.scratch);
                    self.timers_for_link.push((i, next));
                }
            }
            if was && !connected {
                if is_cmd {
                    cl.cmd_up = false;
                } else {
                    cl.sub_up = false;
                }
                link.state_mut().clear_output();
                let n = link.state().input().len();
                link.state_mut().consume_input(n);
                if is_cmd {
                    cl.node.on_cmd_lost();
                } else {
                    cl.node.on_sub_lost();
                }
            }
        }
        let (restart_cmd, restart_sub) = cl.node.on_tick(now, self.core.now.unix_ms);
        for (i, restart) in [(cl.cmd, restart_cmd), (cl.sub, restart_sub)] {
            if restart && let Some(link) = self.links.get_mut(i) {
                warn!("cluster: Redis stopped answering; reconnecting");
                let next = link.fail(registry, now);
                self.timers_for_link.push((i, next));
            }
        }
        if let Some(v) = self.core.stats_view.cluster.as_mut() {
            let st = cl.node.stats;
            let (rooms, names) = cl.node.counts();
            v.up = cl.cmd_up;
            v.connects = st.connects;
            v.posted = st.posted;
            v.received = st.received;
            v.gaps_filled = st.gaps_filled;
            v.gaps_lost = st.gaps_lost;
            v.rtt_us = st.rtt_us;
            v.watched_rooms = rooms;
            v.local_names = names;
        }
        let news = cl.node.take_to_hub();
        for n in news {
            self.tell_hub(n);
        }
        self.flush_cluster();
    }

    /// The node's output to its links, written now.
    pub(super) fn flush_cluster(&mut self) {
        let Some(cl) = self.cluster.as_mut() else {
            return;
        };
        let now = self.core.now.mono;
        let registry = self.poll.registry();
        for (i, bytes) in [
            (cl.cmd, cl.node.take_cmd_output()),
            (cl.sub, cl.node.take_sub_output()),
        ] {
            let Some(link) = self.links.get_mut(i) else {
                continue;
            };
            if !bytes.is_empty() && link.state().is_connected() {
                if let Err(e) = link.state_mut().queue(Rc::from(bytes)) {
                    warn!("cluster: link output full ({e}); reconnecting");
                    let next = link.fail(registry, now);
                    self.timers_for_link.push((i, next));
                    continue;
                }
                let next = link.flush(registry, now);
                self.timers_for_link.push((i, next));
            }
        }
        if let Some(at) = cl.node.deadline() {
            self.timers.set(super::deadlines::Timer::Cluster, at);
        }
        let pending = std::mem::take(&mut self.timers_for_link);
        for (i, next) in pending {
            self.set_link_timer(i, next);
        }
    }

    /// True when the node has news the hub has not heard yet.
    pub(super) fn cluster_has_news(&self) -> bool {
        self.cluster.as_ref().is_some_and(|c| c.node.has_news())
    }

    /// Ends `conn` (its queued output, the hub's last words included, goes
    /// out first).
    fn end_conn(&mut self, conn: crate::hub::ConnId, why: crate::hub::LeaveReason) {
        let Some(c) = usize::try_from(conn.key)
            .ok()
            .and_then(|k| self.conns.get_mut(k))
            .filter(|c| c.id == conn)
        else {
            return;
        };
        let (now, linger) = (self.core.now.mono, self.core.cfg.linger_timeout);
        c.end(why, now, linger, &mut self.core.books);
    }

    fn tell_hub(&mut self, n: ToHub) {
        let now = self.core.now;
        match n {
            ToHub::Up(up) => self.hub.set_cluster_up(up, now),
            ToHub::Epoch(e) => self.hub.set_epoch(&e),
            ToHub::ClaimAnswered { conn, granted } => {
                let name = self.hub.pending_claim_name(conn);
                if !self.hub.claim_answered(conn, granted, now)
                    && granted
                    && let (Some(cl), Some(name)) = (self.cluster.as_mut(), name)
                {
                    cl.node.release_unused(conn, &name, now.mono);
                }
            }
            ToHub::Ingest(rec) => self.hub.ingest(history::message_of(rec)),
            ToHub::Synced {
                room,
                seq,
                lines,
                topic,
            } => {
                let lines = lines.into_iter().map(history::message_of).collect();
                self.hub.room_synced(&room, seq, lines, topic, now);
            }
            ToHub::Gap { room } => self.hub.room_gap(&room, now),
            ToHub::PrivateAnswered {
                conn,
                to,
                text,
                reached,
            } => self.hub.private_answered(conn, &to, text, reached, now),
            ToHub::DeliverPrivate { folded, from, text } => {
                self.hub.deliver_private(&folded, from, text, now);
            }
            ToHub::Presence { room, name, on } => self.hub.remote_presence(&room, &name, on),
            ToHub::NameLost { conn } => {
                if self.hub.name_lost(conn, now) {
                    self.end_conn(conn, crate::hub::LeaveReason::NameLost);
                }
            }
            ToHub::Members { room, names } => self.hub.room_members(&room, names),
            ToHub::Unposted(rec) => self.hub.post_locally(history::message_of(rec), now),
        }
    }
}
