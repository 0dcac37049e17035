//! Delivery: the hub's outbox becomes bytes in output queues. Each message is
//! encoded at most once per wire format (JSON line, text line, WebSocket text
//! frame), lazily, and the same shared chunk is queued for every recipient.

use std::rc::Rc;

use super::{Server, input};
use crate::conn::Format;
use crate::hub::{ConnId, Member, Recipients};
use crate::proto::chat::ServerMsg;
use crate::proto::ws::frame::{Opcode, frame_header};

/// Lazily encoded forms of one message.
struct Encodings<'a> {
    msg: &'a ServerMsg,
    json: Option<Rc<[u8]>>,
    text: Option<Option<Rc<[u8]>>>,
    ws: Option<Rc<[u8]>>,
}

impl<'a> Encodings<'a> {
    fn new(msg: &'a ServerMsg) -> Self {
        Encodings {
            msg,
            json: None,
            text: None,
            ws: None,
        }
    }

    /// The bytes for `format`; `None` when that format carries nothing for this message.
    fn get(&mut self, format: Format, buf: &mut Vec<u8>) -> Option<Rc<[u8]>> {
        match format {
            Format::JsonLine => {
                let msg = self.msg;
                Some(
                    self.json
                        .get_or_insert_with(|| {
                            buf.clear();
                            msg.encode_json(buf);
                            buf.push(b'\n');
                            Rc::from(buf.as_slice())
                        })
                        .clone(),
                )
            }
            Format::Text => {
                let msg = self.msg;
                self.text
                    .get_or_insert_with(|| {
                        buf.clear();
                        msg.encode_text(buf).then(|| Rc::from(buf.as_slice()))
                    })
                    .clone()
            }
            Format::WsText => {
                let msg = self.msg;
                Some(
                    self.ws
                        .get_or_insert_with(|| {
                            buf.clear();
                            msg.encode_json(buf);
                            let mut frame = Vec::with_capacity(buf.len() + 10);
                            frame_header(Opcode::Text, buf.len(), &mut frame);
                            frame.extend_from_slice(buf);
                            Rc::from(frame)
                        })
                        .clone(),
                )
            }
        }
    }
}

impl Server {
    /// Moves everything in the hub's outbox into output queues.
    pub(super) fn deliver(&mut self) {
        let outbox = self.core.hub.drain_outbox();
        if outbox.is_empty() {
            self.core.hub.recycle_outbox(outbox);
            return;
        }
        let mut buf = std::mem::take(&mut self.core.enc);
        for out in &outbox {
            let mut enc = Encodings::new(&out.msg);
            match out.to {
                Recipients::One(id) => self.send_one(id, &mut enc, &mut buf),
                _ => {
                    // Recipient ids are copied out: queueing may tell the hub about an overflow.
                    let members: &[Member] = self.core.hub.members();
                    let mut targets = std::mem::take(&mut self.member_scratch);
                    targets.clear();
                    targets.extend(members.iter().filter(|m| out.reaches(m)).map(|m| m.id));
                    for &id in &targets {
                        self.send_one(id, &mut enc, &mut buf);
                    }
                    self.member_scratch = targets;
                }
            }
        }
        self.core.enc = buf;
        self.core.hub.recycle_outbox(outbox);
    }

    fn send_one(&mut self, id: ConnId, enc: &mut Encodings<'_>, buf: &mut Vec<u8>) {
        let Ok(key) = usize::try_from(id.key) else {
            return;
        };
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.id != id {
            return;
        }
        let Some(format) = conn.format() else {
            return;
        };
        if let Some(chunk) = enc.get(format, buf) {
            input::queue(&mut self.core, conn, chunk);
        }
    }
}
