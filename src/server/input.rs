//! Input dispatch: bytes read from a connection go to the decoder of its wire
//! protocol; decoded requests go to the hub (chat), the WebSocket session, or
//! the HTTP glue. Also the shared ways a connection ends: [`linger`] (say the
//! last words, then close) and [`kill`] (close now).

use std::rc::Rc;

use log::{debug, info, warn};

use super::{Core, http};
use crate::conn::{Conn, Phase, Wire, WsState};
use crate::proto::chat::{self, ClientMsg, ErrorCode};
use crate::proto::line::LineError;
use crate::proto::ws::close::CloseCode;
use crate::proto::ws::frame::{Opcode, encode_frame};
use crate::proto::ws::handshake;
use crate::proto::ws::session::{WsEvent, WsLimits, WsSession};

/// The text-mode `/help` answer.
const HELP: &str = "Commands: just type to talk to everyone; @NAME text or /msg NAME text for a private message; /who lists who is online; /quit leaves; //text sends a line starting with '/'.";

/// Feeds freshly read bytes to the connection's protocol, keeping any unfinished
/// item (line, frame header, request) in the connection's input buffer.
pub(super) fn handle(core: &mut Core, conn: &mut Conn, data: &[u8]) {
    if conn.is_closing() {
        return; // lingering: input is read and dropped
    }
    if conn.inbuf.is_empty() {
        let used = consume(core, conn, data);
        if !conn.is_closing()
            && let Some(rest) = data.get(used..)
        {
            conn.inbuf.extend_from_slice(rest);
        }
    } else {
        let mut buf = std::mem::take(&mut conn.inbuf);
        buf.extend_from_slice(data);
        let used = consume(core, conn, &buf);
        if conn.is_closing() {
            buf = Vec::new();
        } else {
            buf.drain(..used.min(buf.len()));
        }
        if buf.capacity() > 64 * 1024 && buf.len() < 4096 {
            buf.shrink_to_fit();
        }
        conn.inbuf = buf;
    }
    if matches!(conn.wire, Wire::Http) && !conn.is_closing() {
        http::update_deadline(core, conn);
    }
}

/// Decodes as many items as `input` holds; returns the bytes used.
fn consume(core: &mut Core, conn: &mut Conn, input: &[u8]) -> usize {
    let mut used = 0;
    while used < input.len() && !conn.is_closing() {
        let rest = input.get(used..).unwrap_or(&[]);
        let n = match conn.wire {
            Wire::Detect | Wire::JsonLines | Wire::TextLines => lines(core, conn, rest),
            Wire::WsHandshake => ws_handshake(core, conn, rest),
            Wire::Ws(_) => ws_frames(core, conn, rest),
            Wire::Http => http::requests(core, conn, rest),
        };
        if n == 0 {
            break;
        }
        used += n;
    }
    if conn.is_closing() { input.len() } else { used }
}

/// One chat line, if complete; returns the bytes used (0 = need more).
fn lines(core: &mut Core, conn: &mut Conn, input: &[u8]) -> usize {
    match conn.lines.decode(input) {
        Ok(Some((n, line))) => {
            chat_line(core, conn, line);
            n
        }
        Ok(None) => 0,
        Err(LineError::TooLong { max }) => {
            warn!(
                "{:?} {}: line over {max} bytes, disconnecting",
                conn.id, conn.peer
            );
            if matches!(conn.wire, Wire::Detect) {
                // No line yet, so no format: pick it as a finished first line would,
                // or the error could not be delivered.
                conn.wire = if chat::looks_like_json(input) {
                    Wire::JsonLines
                } else {
                    Wire::TextLines
                };
            }
            let text = format!("Line too long: at most {max} bytes per message. Disconnecting.");
            core.hub
                .send_error(conn.id, ErrorCode::LineTooLong, text, core.now);
            linger(core, conn);
            input.len()
        }
    }
}

fn chat_line(core: &mut Core, conn: &mut Conn, line: &[u8]) {
    let now = core.now;
    let id = conn.id;
    let decoded = match conn.wire {
        Wire::Detect => {
            if line.iter().all(u8::is_ascii_whitespace) {
                return; // blank lines before the first real one (telnet) are ignored
            }
            // The first-line deadline stays until a join succeeds (`chat_msg`):
            // a connection that never joins must not outlive it.
            if chat::looks_like_json(line) {
                conn.wire = Wire::JsonLines;
                chat::decode_json(line)
            } else {
                conn.wire = Wire::TextLines;
                info!("{id:?} {}: plain-text client", conn.peer);
                chat::decode_text_name(line)
            }
        }
        Wire::JsonLines => chat::decode_json(line),
        Wire::TextLines if core.hub.name_of(id).is_none() => chat::decode_text_name(line),
        Wire::TextLines => {
            if line.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            chat::decode_text(line)
        }
        _ => return,
    };
    match decoded {
        Ok(msg) => chat_msg(core, conn, msg),
        Err(e) => {
            debug!("{id:?} {}: bad input: {e}", conn.peer);
            core.hub.send_error(id, e.code(), e.to_string(), now);
        }
    }
}

/// A decoded chat request from any wire.
fn chat_msg(core: &mut Core, conn: &mut Conn, msg: ClientMsg) {
    let now = core.now;
    let id = conn.id;
    match msg {
        ClientMsg::Join { name, features } => {
            core.hub.handle_join(id, &name, features, now);
            if core.hub.name_of(id).is_some() {
                conn.deadline = None;
                info!(
                    "{id:?} {}: joined as {name} ({})",
                    conn.peer,
                    conn.protocol()
                );
            }
        }
        ClientMsg::Message { text } => core.hub.handle_message(id, &text, now),
        ClientMsg::Who => core.hub.handle_who(id, now),
        ClientMsg::Help => core.hub.send_info(id, HELP.to_owned(), now),
        ClientMsg::Exit => {
            if let Some(name) = core.hub.name_of(id) {
                info!("{id:?} {}: {name} left", conn.peer);
            }
            core.hub.handle_exit(id, now);
            if let Wire::Ws(ws) = &mut conn.wire {
                core.ws_reply.clear();
                ws.session
                    .close(CloseCode::NORMAL, "bye", &mut core.ws_reply);
                let reply = Rc::from(core.ws_reply.as_slice());
                queue(core, conn, reply);
            }
            linger(core, conn);
        }
    }
}

/// Waits for a complete upgrade request on the WebSocket port.
fn ws_handshake(core: &mut Core, conn: &mut Conn, input: &[u8]) -> usize {
    match handshake::parse_request(input, &core.handshake) {
        Ok(None) => 0,
        Ok(Some((n, req))) => {
            upgrade(core, conn, &req);
            n
        }
        Err(e) => {
            warn!(
                "{:?} {}: WebSocket handshake refused: {e}",
                conn.id, conn.peer
            );
            queue(core, conn, Rc::from(e.response()));
            linger(core, conn);
            input.len()
        }
    }
}

/// Answers 101 and switches the connection to WebSocket frames.
pub(super) fn upgrade(core: &mut Core, conn: &mut Conn, req: &handshake::HandshakeRequest) {
    queue(core, conn, Rc::from(handshake::response_101(req)));
    let limits = WsLimits {
        max_message_bytes: core.cfg.ws_max_message_bytes,
        max_fragments: core.cfg.ws_max_fragments,
    };
    conn.wire = Wire::Ws(Box::new(WsState {
        session: WsSession::new(limits),
        ping_sent: None,
    }));
    // Like a chat-port client, a WebSocket must join within the first-line
    // timeout (the echo server used for conformance tests has no join).
    conn.deadline = (!core.cfg.ws_echo).then(|| core.now.mono + core.cfg.first_line_timeout);
    debug!(
        "{:?} {}: WebSocket open on {}",
        conn.id, conn.peer, req.path
    );
}

/// Feeds bytes to the WebSocket session and acts on its events.
fn ws_frames(core: &mut Core, conn: &mut Conn, input: &[u8]) -> usize {
    let Wire::Ws(ws) = &mut conn.wire else {
        return 0;
    };
    let mut events = std::mem::take(&mut core.ws_events);
    let mut reply = std::mem::take(&mut core.ws_reply);
    events.clear();
    reply.clear();
    let was_closing = ws.session.is_closing();
    let n = ws.session.handle_bytes(input, &mut events, &mut reply);
    let now_closing = ws.session.is_closing();
    let close_code = ws.session.close_sent_code();
    if !reply.is_empty() {
        queue(core, conn, Rc::from(reply.as_slice()));
    }
    let mut peer_closed = false;
    for ev in events.drain(..) {
        if conn.is_closing() {
            break;
        }
        match ev {
            WsEvent::Text(text) => {
                if core.cfg.ws_echo {
                    echo(core, conn, Opcode::Text, text.as_bytes());
                    continue;
                }
                match chat::decode_json(text.as_bytes()) {
                    Ok(msg) => chat_msg(core, conn, msg),
                    Err(e) => core
                        .hub
                        .send_error(conn.id, e.code(), e.to_string(), core.now),
                }
            }
            WsEvent::Binary(data) => {
                if core.cfg.ws_echo {
                    echo(core, conn, Opcode::Binary, &data);
                    continue;
                }
                // The chat is text: RFC 6455 §7.4.1 1003 "cannot accept this data type".
                if let Wire::Ws(ws) = &mut conn.wire {
                    reply.clear();
                    ws.session.close(
                        CloseCode::UNSUPPORTED,
                        "binary messages are not supported",
                        &mut reply,
                    );
                    queue(core, conn, Rc::from(reply.as_slice()));
                }
                core.hub.handle_disconnect(conn.id, core.now);
                linger(core, conn);
            }
            WsEvent::Pong(_) => {}
            WsEvent::Closed { .. } => peer_closed = true,
        }
    }
    core.ws_events = events;
    core.ws_reply = reply;
    if now_closing && !was_closing && !conn.is_closing() {
        if peer_closed {
            // A clean close handshake is a voluntary leave (tab closed, page left).
            core.hub.handle_exit(conn.id, core.now);
        } else {
            warn!(
                "{:?} {}: WebSocket protocol violation, closed with {:?}",
                conn.id, conn.peer, close_code
            );
            core.hub.handle_disconnect(conn.id, core.now);
        }
        linger(core, conn);
    }
    n
}

fn echo(core: &mut Core, conn: &mut Conn, opcode: Opcode, payload: &[u8]) {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    encode_frame(opcode, payload, &mut frame);
    queue(core, conn, Rc::from(frame));
}

/// The peer closed its side.
pub(super) fn on_eof(core: &mut Core, conn: &mut Conn) {
    if let Phase::Linger { shut_down, .. } = conn.phase {
        // Before our half-close the last words (a response, a close frame) may
        // still be queued: `Server::flush` closes once they are out.
        if shut_down {
            kill(core, conn);
        }
        return;
    }
    if !conn.inbuf.is_empty() {
        debug!(
            "{:?} {}: EOF with {} unfinished bytes",
            conn.id,
            conn.peer,
            conn.inbuf.len()
        );
    }
    // Abrupt unless an `exit` came first (then the hub already forgot the user).
    core.hub.handle_disconnect(conn.id, core.now);
    // A half-closed peer still reads: answers to its last input, queued now or
    // by this turn's delivery, go out before the close.
    linger(core, conn);
}

/// Stops taking input, lets queued output drain, half-closes, then closes when the
/// peer closes too or the linger deadline passes.
pub(super) fn linger(core: &mut Core, conn: &mut Conn) {
    if conn.phase != Phase::Open {
        return;
    }
    conn.phase = Phase::Linger {
        deadline: core.now.mono + core.cfg.linger_timeout,
        shut_down: false,
    };
    conn.inbuf = Vec::new();
    mark_dirty(core, conn);
}

/// Closes now: output is dropped; the connection is reaped at the end of the turn.
pub(super) fn kill(core: &mut Core, conn: &mut Conn) {
    if conn.phase == Phase::Dead {
        return;
    }
    conn.phase = Phase::Dead;
    conn.out.clear();
    conn.inbuf = Vec::new();
    core.dead.push(conn.id.key as usize);
}

/// Queues a chunk for a connection, enforcing the output limit.
pub(super) fn queue(core: &mut Core, conn: &mut Conn, chunk: Rc<[u8]>) {
    if conn.phase == Phase::Dead {
        return;
    }
    let limit = core.cfg.out_hard_limit_bytes;
    if conn.out.pending_bytes() + chunk.len() > limit {
        // Output is written at the end of the turn; one busy turn can queue
        // more than the limit for a client that reads fine. Hand the socket
        // what it takes now, and drop only a client whose socket is full.
        if conn.phase == Phase::Open
            && let Ok((n, _)) = conn.out.flush(&mut conn.socket)
        {
            core.stats.bytes_out += n as u64;
        }
        if conn.out.pending_bytes() + chunk.len() > limit {
            overflow(core, conn);
            return;
        }
    }
    conn.out.push(chunk);
    mark_dirty(core, conn);
}

/// A client that does not read fast enough is dropped; nobody else waits for it.
pub(super) fn overflow(core: &mut Core, conn: &mut Conn) {
    warn!(
        "{:?} {}: more than {} bytes of output pending, disconnecting",
        conn.id, conn.peer, core.cfg.out_hard_limit_bytes
    );
    core.hub.handle_disconnect(conn.id, core.now);
    kill(core, conn);
}

pub(super) fn mark_dirty(core: &mut Core, conn: &mut Conn) {
    if !conn.dirty {
        conn.dirty = true;
        core.dirty.push(conn.id.key as usize);
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream as StdStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    use crate::conn::Wire;
    use crate::server::tests::{spin, test_server};

    #[test]
    fn the_first_line_deadline_lasts_until_a_join_succeeds() {
        let (mut server, addrs) = test_server(|_| {});
        let deadline_of =
            |s: &crate::server::Server| s.conns.iter().next().map(|(_, c)| c.deadline);

        // A JSON request before joining picks JSON mode but is no join.
        let mut json = StdStream::connect(addrs.tcp).expect("connect");
        json.write_all(b"{\"type\":\"who\"}\n").expect("write");
        spin(&mut server, "JSON mode", |s| {
            s.conns
                .iter()
                .any(|(_, c)| matches!(c.wire, Wire::JsonLines))
        });
        assert!(
            matches!(deadline_of(&server), Some(Some(_))),
            "deadline dropped before joining"
        );
        // Refused names keep it too.
        json.write_all(b"{\"type\":\"join\",\"sender\":\"two words\"}\n")
            .expect("write");
        let before = server.core.stats.bytes_out;
        spin(&mut server, "name_invalid answered", |s| {
            s.core.stats.bytes_out > before
        });
        assert!(matches!(deadline_of(&server), Some(Some(_))));
        json.write_all(b"{\"type\":\"join\",\"sender\":\"fine\"}\n")
            .expect("write");
        spin(&mut server, "joined", |s| s.core.hub.user_count() == 1);
        assert!(
            matches!(deadline_of(&server), Some(None)),
            "a joined user has no deadline"
        );
        drop(json);
        spin(&mut server, "closed", |s| s.conns.is_empty());

        // Text mode: an invalid name is a first line, not a join.
        let mut text = StdStream::connect(addrs.tcp).expect("connect");
        text.write_all(b"two words\n").expect("write");
        spin(&mut server, "text mode", |s| {
            s.conns
                .iter()
                .any(|(_, c)| matches!(c.wire, Wire::TextLines))
        });
        assert!(matches!(deadline_of(&server), Some(Some(_))));
        text.write_all(b"textfine\n").expect("write");
        spin(&mut server, "joined", |s| s.core.hub.user_count() == 1);
        assert!(matches!(deadline_of(&server), Some(None)));
    }

    #[test]
    fn a_reader_whose_socket_has_room_survives_a_turn_over_its_output_limit() {
        // One write: a join and 40 messages of ~1 KB, all read and echoed in
        // one turn: about 40 KB of output for a 16 KiB limit, all of which
        // the socket can take at once.
        let (mut server, addrs) = test_server(|c| c.out_hard_limit_bytes = 16 * 1024);
        let mut c = StdStream::connect(addrs.tcp).expect("connect");
        let mut burst = b"{\"type\":\"join\",\"sender\":\"big\"}\n".to_vec();
        for i in 0..40 {
            let line = format!(
                "{{\"type\":\"message\",\"message\":\"{i:02} {}\"}}\n",
                "x".repeat(900)
            );
            burst.extend_from_slice(line.as_bytes());
        }
        c.write_all(&burst).expect("write");
        let done = Arc::new(AtomicBool::new(false));
        let mut r = c.try_clone().expect("clone");
        r.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let reader = {
            let done = done.clone();
            thread::spawn(move || {
                let (mut all, mut buf) = (Vec::new(), [0u8; 8192]);
                let end = std::time::Instant::now() + Duration::from_secs(10);
                while std::time::Instant::now() < end {
                    match r.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => all.extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => break,
                    }
                    let echoes = String::from_utf8_lossy(&all)
                        .matches("\"sender\":\"big\"")
                        .count();
                    if echoes == 40 {
                        break;
                    }
                }
                done.store(true, Ordering::SeqCst);
                String::from_utf8_lossy(&all)
                    .matches("\"sender\":\"big\"")
                    .count()
            })
        };
        spin(&mut server, "reader done", |_| done.load(Ordering::SeqCst));
        let echoes = reader.join().expect("reader");
        assert_eq!(echoes, 40, "the client was dropped although it reads");
        assert_eq!(server.core.hub.user_count(), 1);
    }
}
