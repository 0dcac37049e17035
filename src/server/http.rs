//! HTTP glue: routes parsed requests to the static files, `/healthz`, `/stats`
//! or the WebSocket upgrade at `/ws`, and queues the responses (head and shared
//! body as two chunks). Parsing and response building live in `proto::http`.

use std::fmt::Write as _;
use std::rc::Rc;

use log::{debug, warn};

use super::{Core, input};
use crate::conn::Conn;
use crate::proto::http::{self, Request, RequestLimits, Response};
use crate::proto::ws::handshake;

/// Handles one complete request at the start of `input`, if there is one;
/// returns the bytes used (0 = incomplete).
pub(super) fn requests(core: &mut Core, conn: &mut Conn, input: &[u8]) -> usize {
    let limits = RequestLimits {
        max_header_bytes: core.cfg.max_header_bytes,
        max_uri_bytes: core.cfg.max_uri_bytes,
        ..RequestLimits::default()
    };
    match http::parse(input, &limits) {
        Ok(None) => 0,
        Ok(Some((n, req))) => {
            let raw = input.get(..n).unwrap_or(&[]);
            respond(core, conn, &req, raw);
            n
        }
        Err(e) => {
            debug!("{:?} {}: bad HTTP request: {e}", conn.id, conn.peer);
            send(core, conn, &http::error(e.status()), false, true);
            input::linger(core, conn);
            input.len()
        }
    }
}

fn respond(core: &mut Core, conn: &mut Conn, req: &Request, raw: &[u8]) {
    let path = req.path();
    if path == "/ws" && req.websocket_upgrade {
        match handshake::parse_request(raw, &core.handshake) {
            Ok(Some((_, ws_req))) => input::upgrade(core, conn, &ws_req),
            Ok(None) => {
                send(core, conn, &http::error(400), false, true);
                input::linger(core, conn);
            }
            Err(e) => {
                warn!(
                    "{:?} {}: WebSocket handshake refused: {e}",
                    conn.id, conn.peer
                );
                input::queue(core, conn, Rc::from(e.response()));
                input::linger(core, conn);
            }
        }
        return;
    }
    let resp = if !req.is_get_or_head() {
        http::error(405)
    } else if path == "/healthz" {
        plain(200, "text/plain; charset=utf-8", b"ok\n".to_vec())
    } else if path == "/stats" {
        plain(200, "application/json", stats_json(core).into_bytes())
    } else {
        core.files.respond(req)
    };
    let body = http::sends_body(&req.method, resp.status);
    send(core, conn, &resp, req.keep_alive, body);
    if !req.keep_alive {
        input::linger(core, conn);
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

fn send(core: &mut Core, conn: &mut Conn, resp: &Response, keep_alive: bool, body: bool) {
    let head = http::encode_head(resp, keep_alive, core.clock.http_date());
    input::queue(core, conn, Rc::from(head));
    if body {
        input::queue(core, conn, resp.body.clone());
    }
}

/// Keeps an HTTP connection's deadline right: a started request must complete
/// within the handshake timeout (slowloris), an idle keep-alive connection is
/// closed after the idle timeout.
pub(super) fn update_deadline(core: &Core, conn: &mut Conn) {
    let now = core.now.mono;
    if conn.inbuf.is_empty() {
        conn.deadline = Some(now + core.cfg.http_idle_timeout);
    } else if conn
        .deadline
        .is_none_or(|d| d > now + core.cfg.handshake_timeout)
    {
        conn.deadline = Some(now + core.cfg.handshake_timeout);
    }
}

/// An HTTP deadline passed: a half-sent request gets 408, an idle keep-alive
/// connection is just closed.
pub(super) fn timeout(core: &mut Core, conn: &mut Conn) {
    if conn.inbuf.is_empty() {
        input::kill(core, conn);
    } else {
        debug!("{:?} {}: request timed out", conn.id, conn.peer);
        send(core, conn, &http::error(408), false, true);
        input::linger(core, conn);
    }
}

/// The `/stats` document.
fn stats_json(core: &Core) -> String {
    let s = &core.stats;
    let mut out = String::with_capacity(256);
    out.push_str("{\"connections\":{");
    let mut total = 0;
    for (i, (proto, n)) in core.conn_counts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "\"{proto}\":{n}");
        total += n;
    }
    let _ = write!(
        out,
        "}},\"connections_total\":{total},\"users\":{},\"messages_relayed\":{},\"bytes_in\":{},\"bytes_out\":{},\"accepted\":{},\"refused\":{},\"uptime_secs\":{}}}",
        core.hub.user_count(),
        core.hub.relayed(),
        s.bytes_in,
        s.bytes_out,
        s.accepted,
        s.refused,
        core.now
            .mono
            .saturating_duration_since(core.started)
            .as_secs()
    );
    out
}
