//! The history store as the loop uses it: hub messages to log records and
//! back, and the hub's [`Archive`] port over the store for pages older than a
//! room's memory. The store and the hub know nothing of each other.

use std::rc::Rc;

use crate::hub::{Archive, Event, Message, RoomTag};
use crate::store::{Record, RecordKind, Store};

/// The log record for a room message or topic change; `None` for anything
/// else (private messages and notices are never stored).
pub fn record_of(msg: &Message) -> Option<Record> {
    let tag = msg.room.as_ref()?;
    let (seq, kind) = match &msg.event {
        Event::Chat { from, text } => (
            tag.seq?,
            RecordKind::Message {
                from: from.clone(),
                text: text.clone(),
            },
        ),
        Event::Topic { topic, by, .. } => (
            tag.seq.unwrap_or(0),
            RecordKind::Topic {
                by: by.clone(),
                topic: topic.clone(),
            },
        ),
        _ => return None,
    };
    Some(Record {
        room: tag.name.to_string(),
        seq,
        ts_ms: msg.ts_ms,
        kind,
    })
}

/// The hub message a log record stands for.
pub fn message_of(rec: Record) -> Message {
    let name: Rc<str> = Rc::from(rec.room.as_str());
    match rec.kind {
        RecordKind::Message { from, text } => Message {
            ts_ms: rec.ts_ms,
            event: Event::Chat { from, text },
            room: Some(RoomTag {
                name,
                seq: Some(rec.seq),
            }),
        },
        RecordKind::Topic { by, topic } => Message {
            ts_ms: rec.ts_ms,
            event: Event::Topic {
                room: name.clone(),
                topic,
                by,
            },
            room: Some(RoomTag { name, seq: None }),
        },
    }
}

/// The hub's view of the store.
pub struct StoreArchive<'a>(pub &'a Store);

impl Archive for StoreArchive<'_> {
    fn read(
        &mut self,
        room: &str,
        after: u64,
        before: u64,
        limit: usize,
    ) -> Result<Option<Vec<Message>>, ()> {
        let mut out: Vec<Message> = Vec::new();
        let mut before = before;
        // Topic records share the numbering: page until enough messages.
        while out.len() < limit {
            let page = self.0.read_before(room, before, limit).map_err(|e| {
                log::warn!("history of {room} cannot be read: {e}");
            })?;
            let Some(first) = page.first() else {
                break;
            };
            let next_before = first.seq;
            let mut msgs: Vec<Message> = page
                .into_iter()
                .filter(|r| r.seq > after && matches!(r.kind, RecordKind::Message { .. }))
                .map(message_of)
                .collect();
            msgs.append(&mut out);
            out = msgs;
            if next_before <= after + 1 || next_before >= before {
                break;
            }
            before = next_before;
        }
        let cut = out.len().saturating_sub(limit);
        Ok(Some(out.split_off(cut)))
    }

    fn degraded(&self) -> bool {
        self.0.is_degraded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_topics_round_trip_through_records() {
        let chat = Message {
            ts_ms: 42,
            event: Event::Chat {
                from: "an".into(),
                text: "hi\nthere".into(),
            },
            room: Some(RoomTag {
                name: Rc::from("#r"),
                seq: Some(7),
            }),
        };
        let rec = record_of(&chat).expect("a record");
        assert_eq!(rec.seq, 7);
        assert_eq!(message_of(rec), chat);
        let notice = Message {
            ts_ms: 1,
            event: Event::Notice { text: "x".into() },
            room: Some(RoomTag {
                name: Rc::from("#r"),
                seq: None,
            }),
        };
        assert!(record_of(&notice).is_none(), "notices are not history");
    }
}
