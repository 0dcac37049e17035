//! The HTTP port's session: routes parsed requests to the static files,
//! `/healthz`, `/stats` or the WebSocket upgrade at `/ws`, and answers with the
//! head and the shared body as two chunks. Keep-alive and pipelining are
//! supported; parsing and response building live in `proto::http`.
//!
//! Deadlines: a started request must complete within the handshake timeout
//! (slowloris; answered with 408), an idle keep-alive connection is closed
//! after the idle timeout.

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Instant;

use log::{debug, warn};

use super::{Ctx, Out, StatsView, Step};
use crate::config::Config;
use crate::hub::LeaveReason;
use crate::proto::http::{self, Request, RequestLimits, Response};
use crate::proto::json;
use crate::proto::ws::handshake;

/// An HTTP connection's state.
#[derive(Debug)]
pub struct HttpSession {
    deadline: Instant,
    /// Part of a request is waiting for the rest.
    partial: bool,
    ended: bool,
}

impl HttpSession {
    pub fn new(cfg: &Config, now: Instant) -> HttpSession {
        HttpSession {
            deadline: now + cfg.handshake_timeout,
            partial: false,
            ended: false,
        }
    }

    /// Handles every complete request at the start of `input`.
    pub(crate) fn handle_bytes(&mut self, input: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Out>) -> Step {
        let limits = RequestLimits {
            max_header_bytes: ctx.cfg.max_header_bytes,
            max_uri_bytes: ctx.cfg.max_uri_bytes,
            ..RequestLimits::default()
        };
        let mut used = 0;
        while !self.ended && used < input.len() {
            let rest = input.get(used..).unwrap_or_default();
            match http::parse(rest, &limits) {
                Ok(None) => break,
                Ok(Some((n, req))) => {
                    let raw = rest.get(..n).unwrap_or_default();
                    if let Some(upgrade) = self.respond(&req, raw, ctx, out) {
                        return Step::Upgrade(used + n, upgrade);
                    }
                    used += n;
                }
                Err(e) => {
                    debug!("{:?} {}: bad HTTP request: {e}", ctx.conn, ctx.peer);
                    send(out, &http::error(e.status()), false, true, ctx.http_date);
                    self.end(out);
                }
            }
        }
        if self.ended {
            return Step::Used(input.len());
        }
        self.partial = used < input.len();
        self.update_deadline(ctx);
        Step::Used(used)
    }

    fn respond(
        &mut self,
        req: &Request,
        raw: &[u8],
        ctx: &Ctx<'_>,
        out: &mut Vec<Out>,
    ) -> Option<handshake::HandshakeRequest> {
        let path = req.path();
        if path == "/ws" && req.websocket_upgrade {
            match handshake::parse_request(raw, ctx.handshake) {
                Ok(Some((_, ws_req))) => return Some(ws_req),
                Ok(None) => send(out, &http::error(400), false, true, ctx.http_date),
                Err(e) => {
                    warn!(
                        "{:?} {}: WebSocket handshake refused: {e}",
                        ctx.conn, ctx.peer
                    );
                    out.push(Out::Send(Rc::from(e.response())));
                }
            }
            self.end(out);
            return None;
        }
        let resp = if !req.is_get_or_head() {
            http::error(405)
        } else if path == "/healthz" {
            plain(200, "text/plain; charset=utf-8", b"ok\n".to_vec())
        } else if path == "/metrics" {
            plain(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics_text(ctx.stats),
            )
        } else if path == "/stats" {
            plain(200, "application/json", stats_json(ctx.stats))
        } else {
            ctx.files.respond(req)
        };
        let body = http::sends_body(&req.method, resp.status);
        send(out, &resp, req.keep_alive, body, ctx.http_date);
        if !req.keep_alive {
            self.end(out);
        }
        None
    }

    fn end(&mut self, out: &mut Vec<Out>) {
        self.ended = true;
        out.push(Out::End(LeaveReason::Closed));
    }

    fn update_deadline(&mut self, ctx: &Ctx<'_>) {
        let now = ctx.now;
        if !self.partial {
            self.deadline = now + ctx.cfg.http_idle_timeout;
        } else if self.deadline > now + ctx.cfg.handshake_timeout {
            self.deadline = now + ctx.cfg.handshake_timeout;
        }
    }

    /// A half-sent request gets 408 at its deadline; an idle keep-alive
    /// connection is just closed.
    pub fn on_tick(&mut self, ctx: &Ctx<'_>, out: &mut Vec<Out>) {
        if self.ended || ctx.now < self.deadline {
            return;
        }
        if self.partial {
            debug!("{:?} {}: request timed out", ctx.conn, ctx.peer);
            send(out, &http::error(408), false, true, ctx.http_date);
            self.end(out);
        } else {
            self.ended = true;
            out.push(Out::Kill(LeaveReason::Timeout));
        }
    }
}

fn plain(status: u16, content_type: &str, body: Vec<u8>) -> Response {
    Response {
        status,
        headers: vec![
            ("Content-Type", content_type.to_owned()),
            ("Cache-Control", "no-store".to_owned()),
        ],
        body: Rc::from(body),
    }
}

fn send(out: &mut Vec<Out>, resp: &Response, keep_alive: bool, body: bool, date: &str) {
    let head = http::encode_head(resp, keep_alive, date);
    out.push(Out::Send(Rc::from(head)));
    if body {
        out.push(Out::Send(resp.body.clone()));
    }
}

/// The `/stats` document, written with the project's JSON writer.
fn stats_json(s: &StatsView) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"{\"connections\":{");
    let mut total = 0;
    for (i, (proto, n)) in s.connections.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_str(&mut out, proto);
        out.push(b':');
        write_number(&mut out, *n as u64);
        total += n;
    }
    out.push(b'}');
    let fields: [(&str, u64); 11] = [
        ("connections_total", total as u64),
        ("users", s.users as u64),
        ("rooms", s.rooms as u64),
        ("messages_relayed", s.messages_relayed),
        ("bytes_in", s.bytes_in),
        ("bytes_out", s.bytes_out),
        ("accepted", s.accepted),
        ("refused", s.refused),
        ("uptime_secs", s.uptime_secs),
        ("deliveries", s.deliveries),
        ("dropped_slow_clients", s.dropped_slow),
    ];
    for (key, value) in fields {
        out.push(b',');
        json::write_str(&mut out, key);
        out.push(b':');
        write_number(&mut out, value);
    }
    out.extend_from_slice(b",\"history\":");
    match &s.history {
        None => out.extend_from_slice(b"{\"persistent\":false}"),
        Some(h) => {
            out.extend_from_slice(b"{\"persistent\":true,\"fsync\":");
            json::write_str(&mut out, h.fsync);
            out.extend_from_slice(b",\"degraded\":");
            out.extend_from_slice(if h.degraded { b"true" } else { b"false" });
            for (key, value) in [
                ("segments", h.segments as u64),
                ("bytes", h.bytes),
                ("rooms", h.rooms as u64),
                ("dropped_records", h.dropped_records),
            ] {
                out.push(b',');
                json::write_str(&mut out, key);
                out.push(b':');
                write_number(&mut out, value);
            }
            out.push(b'}');
        }
    }
    if let Some(c) = &s.cluster {
        out.extend_from_slice(b",\"cluster\":{\"node\":");
        json::write_str(&mut out, &c.node);
        out.extend_from_slice(b",\"redis\":");
        json::write_str(&mut out, &c.redis);
        out.extend_from_slice(b",\"up\":");
        out.extend_from_slice(if c.up { b"true" } else { b"false" });
        for (key, value) in [
            ("connects", c.connects),
            ("posted", c.posted),
            ("received", c.received),
            ("gaps_filled", c.gaps_filled),
            ("gaps_lost", c.gaps_lost),
            ("rtt_us", c.rtt_us),
            ("watched_rooms", c.watched_rooms as u64),
            ("local_names", c.local_names as u64),
        ] {
            out.push(b',');
            json::write_str(&mut out, key);
            out.push(b':');
            write_number(&mut out, value);
        }
        out.push(b'}');
    }
    out.push(b'}');
    out
}

/// The figures of `/stats` in the Prometheus text exposition format (0.0.4).
fn metrics_text(s: &StatsView) -> Vec<u8> {
    let mut out = String::with_capacity(1024);
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(out, "# HELP multiuserchat_{name} {help}");
        let _ = writeln!(out, "# TYPE multiuserchat_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "multiuserchat_{name}{labels} {value}");
        }
    };
    let conns: Vec<(String, u64)> = s
        .connections
        .iter()
        .map(|(p, n)| (format!("{{protocol=\"{p}\"}}"), *n as u64))
        .collect();
    let conn_samples: Vec<(&str, u64)> = conns.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    metric(
        "connections",
        "gauge",
        "Open connections by protocol.",
        &conn_samples,
    );
    metric("users", "gauge", "Users online.", &[("", s.users as u64)]);
    metric(
        "rooms",
        "gauge",
        "Rooms that exist.",
        &[("", s.rooms as u64)],
    );
    metric(
        "messages_relayed_total",
        "counter",
        "Chat and private messages relayed.",
        &[("", s.messages_relayed)],
    );
    metric(
        "bytes_in_total",
        "counter",
        "Bytes read from clients.",
        &[("", s.bytes_in)],
    );
    metric(
        "bytes_out_total",
        "counter",
        "Bytes written to clients.",
        &[("", s.bytes_out)],
    );
    metric(
        "accepted_total",
        "counter",
        "Connections accepted.",
        &[("", s.accepted)],
    );
    metric(
        "refused_total",
        "counter",
        "Connections refused at the door (limits).",
        &[("", s.refused)],
    );
    metric(
        "deliveries_total",
        "counter",
        "Messages queued for a recipient (one per recipient).",
        &[("", s.deliveries)],
    );
    metric(
        "dropped_slow_clients_total",
        "counter",
        "Clients dropped for reading too slowly (over the output limit).",
        &[("", s.dropped_slow)],
    );
    metric(
        "uptime_seconds",
        "gauge",
        "Seconds since start.",
        &[("", s.uptime_secs)],
    );
    if let Some(h) = &s.history {
        metric(
            "history_degraded",
            "gauge",
            "1 while the durable history cannot be written.",
            &[("", u64::from(h.degraded))],
        );
        metric(
            "history_segments",
            "gauge",
            "History log segments.",
            &[("", h.segments as u64)],
        );
        metric(
            "history_bytes",
            "gauge",
            "Bytes of history on disk.",
            &[("", h.bytes)],
        );
        metric(
            "history_dropped_records_total",
            "counter",
            "History records that could not be stored.",
            &[("", h.dropped_records)],
        );
    }
    if let Some(c) = &s.cluster {
        metric(
            "cluster_up",
            "gauge",
            "1 while the link to Redis is connected.",
            &[("", u64::from(c.up))],
        );
        metric(
            "cluster_connects_total",
            "counter",
            "Connections made to Redis (the first and every reconnect).",
            &[("", c.connects)],
        );
        metric(
            "cluster_posted_total",
            "counter",
            "Room lines sent to the cluster.",
            &[("", c.posted)],
        );
        metric(
            "cluster_received_total",
            "counter",
            "Messages received from the cluster.",
            &[("", c.received)],
        );
        metric(
            "cluster_gaps_total",
            "counter",
            "Room lines missed on the subscription: filled from the stream, or lost.",
            &[
                ("{outcome=\"filled\"}", c.gaps_filled),
                ("{outcome=\"lost\"}", c.gaps_lost),
            ],
        );
        metric(
            "cluster_redis_rtt_microseconds",
            "gauge",
            "Round-trip time of the latest Redis reply.",
            &[("", c.rtt_us)],
        );
    }
    out.into_bytes()
}

fn write_number(out: &mut Vec<u8>, n: u64) {
    let mut s = String::new();
    let _ = write!(s, "{n}");
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{Fixture, sent};
    use super::super::{Port, Session};
    use super::*;

    fn feed(s: &mut Session, f: &Fixture, now: Instant, bytes: &[u8]) -> (usize, Vec<Out>) {
        let mut out = Vec::new();
        let n = s.handle_bytes(bytes, &f.ctx(now), &mut out);
        (n, out)
    }

    #[test]
    fn serves_healthz_and_keeps_the_connection() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = Session::new(Port::Http, &f.cfg, now);
        let req =
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let (n, out) = feed(&mut s, &f, now, req);
        assert_eq!(n, req.len());
        let text = sent(&out);
        assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
        assert!(!out.iter().any(|o| matches!(o, Out::End(_))));
    }

    #[test]
    fn stats_is_valid_json_with_every_figure() {
        let mut f = Fixture::new();
        f.stats = StatsView {
            connections: vec![("tcp_json", 2), ("http", 1)],
            users: 2,
            rooms: 1,
            messages_relayed: 7,
            bytes_in: 10,
            bytes_out: 20,
            accepted: 3,
            refused: 1,
            uptime_secs: 5,
            deliveries: 40,
            dropped_slow: 1,
            cluster: Some(super::super::ClusterView {
                node: "n1".into(),
                redis: "redis://127.0.0.1:6379/0".into(),
                up: true,
                connects: 2,
                rtt_us: 150,
                ..Default::default()
            }),
            history: Some(super::super::HistoryView {
                fsync: "always",
                degraded: true,
                segments: 2,
                bytes: 99,
                rooms: 3,
                dropped_records: 4,
            }),
        };
        let body = stats_json(&f.stats);
        let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(v["connections"]["tcp_json"], 2);
        assert_eq!(v["connections_total"], 3);
        assert_eq!(v["users"], 2);
        assert_eq!(v["messages_relayed"], 7);
        assert_eq!(v["refused"], 1);
        assert_eq!(v["history"]["persistent"], true);
        assert_eq!(v["history"]["degraded"], true);
        assert_eq!(v["history"]["dropped_records"], 4);
        assert_eq!(v["deliveries"], 40);
        assert_eq!(v["dropped_slow_clients"], 1);
        assert_eq!(v["cluster"]["node"], "n1");
        assert_eq!(v["cluster"]["up"], true);
        assert_eq!(v["cluster"]["connects"], 2);
        assert_eq!(v["cluster"]["rtt_us"], 150);
    }

    #[test]
    fn metrics_are_prometheus_text() {
        let mut f = Fixture::new();
        f.stats = StatsView {
            connections: vec![("tcp_json", 2), ("websocket", 1)],
            users: 3,
            rooms: 2,
            messages_relayed: 9,
            ..StatsView::default()
        };
        let text = String::from_utf8(metrics_text(&f.stats)).expect("UTF-8");
        assert!(text.contains("# TYPE multiuserchat_connections gauge\n"));
        assert!(text.contains("multiuserchat_connections{protocol=\"tcp_json\"} 2\n"));
        assert!(text.contains("multiuserchat_users 3\n"));
        assert!(text.contains("# TYPE multiuserchat_messages_relayed_total counter\n"));
        assert!(text.contains("multiuserchat_messages_relayed_total 9\n"));
        assert!(!text.contains("history"), "no history lines in memory mode");
        // Every sample line is `name{labels} value` or `name value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').expect("name and value");
            assert!(name.starts_with("multiuserchat_"), "{line}");
            assert!(value.parse::<u64>().is_ok(), "{line}");
        }
        let now = Instant::now();
        let mut s = Session::new(Port::Http, &f.cfg, now);
        let (_, out) = feed(&mut s, &f, now, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = sent(&out);
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        assert!(resp.contains("text/plain; version=0.0.4"), "{resp}");
    }

    #[test]
    fn a_half_sent_request_gets_408_at_its_deadline() {
        let f = Fixture::new();
        let t0 = Instant::now();
        let mut s = Session::new(Port::Http, &f.cfg, t0);
        let (n, _) = feed(&mut s, &f, t0, b"GET / HTTP/1.1\r\nHo");
        assert_eq!(n, 0);
        let mut out = Vec::new();
        s.on_tick(&f.ctx(t0 + f.cfg.handshake_timeout), &mut out);
        assert!(sent(&out).starts_with("HTTP/1.1 408"), "{out:?}");
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::Closed)));
    }

    #[test]
    fn an_idle_keep_alive_connection_is_closed_silently() {
        let f = Fixture::new();
        let t0 = Instant::now();
        let mut s = Session::new(Port::Http, &f.cfg, t0);
        feed(&mut s, &f, t0, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut out = Vec::new();
        s.on_tick(
            &f.ctx(t0 + f.cfg.http_idle_timeout - Duration::from_millis(1)),
            &mut out,
        );
        assert!(out.is_empty());
        s.on_tick(&f.ctx(t0 + f.cfg.http_idle_timeout), &mut out);
        assert_eq!(out, vec![Out::Kill(LeaveReason::Timeout)]);
    }

    #[test]
    fn upgrades_at_ws_and_feeds_the_rest_to_the_websocket() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = Session::new(Port::Http, &f.cfg, now);
        let mut req = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".to_vec();
        // A masked ping right behind the request.
        req.extend_from_slice(&[0x89, 0x80, 1, 2, 3, 4]);
        let (n, out) = feed(&mut s, &f, now, &req);
        assert_eq!(n, req.len());
        assert!(matches!(s, Session::Ws(_)));
        assert!(sent(&out).starts_with("HTTP/1.1 101"));
        assert!(
            matches!(out.last(), Some(Out::Send(pong)) if pong[..] == [0x8a, 0x00]),
            "the pong follows: {out:?}"
        );
    }

    #[test]
    fn non_get_is_405_and_a_bad_request_ends_the_connection() {
        let f = Fixture::new();
        let now = Instant::now();
        let mut s = Session::new(Port::Http, &f.cfg, now);
        let (_, out) = feed(
            &mut s,
            &f,
            now,
            b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(sent(&out).starts_with("HTTP/1.1 405"));
        let mut s = Session::new(Port::Http, &f.cfg, now);
        let (_, out) = feed(&mut s, &f, now, b"\x01\x02 nonsense\r\n\r\n");
        assert!(sent(&out).starts_with("HTTP/1.1 400"));
        assert_eq!(out.last(), Some(&Out::End(LeaveReason::Closed)));
    }
}
