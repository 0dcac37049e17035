//! The cluster's wire formats (`cluster::wire`) on arbitrary bytes: room
//! channel notes, the line and topic payloads inside them, private message
//! payloads and name claim values.
//!
//! Input layout: the whole input goes to every decoder (a note, a private
//! payload, a claim value, a line payload with seq 1, a topic payload); a
//! line or topic note's payload goes on to its own decoder.
//!
//! Invariants: nothing panics; every note, private payload and claim value
//! accepted re-encodes to the same bytes (one spelling each); a line payload
//! accepted is a log record with seq 0 (`record::decode` reads it) whose
//! fields re-encode to a payload that decodes to the same record, with the
//! note's seq put in; the same for topics, which keep seq 0.
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::cluster::wire::{self, RoomNote};
use multiuserchat::store::{Record, RecordKind, record};

/// A line or topic payload that decoded to `rec`: re-encoded from its
/// fields, it decodes to `rec` again.
fn check_record(payload: &[u8], rec: &Record, seq: u64) {
    let plain = record::decode(payload).expect("a payload is a log record");
    assert_eq!(plain.seq, 0, "payloads carry the placeholder seq");
    let mut again = Vec::new();
    let n = match &rec.kind {
        RecordKind::Message { from, text } => {
            assert_eq!(rec.seq, seq);
            wire::encode_line(&rec.room, rec.ts_ms, from, text, &mut again)
        }
        RecordKind::Topic { by, topic } => {
            assert_eq!(rec.seq, 0);
            wire::encode_topic(&rec.room, rec.ts_ms, by, topic, &mut again)
        }
    }
    .expect("a decoded record re-encodes");
    assert_eq!(n, again.len());
    let back = match rec.kind {
        RecordKind::Message { .. } => wire::decode_line(seq, &again),
        RecordKind::Topic { .. } => wire::decode_topic(&again),
    };
    assert_eq!(back.as_ref(), Ok(rec));
}

fuzz_target!(|data: &[u8]| {
    if let Ok(note) = wire::decode_room_note(data) {
        let mut again = Vec::new();
        wire::encode_room_note(&note, &mut again).expect("an accepted note re-encodes");
        assert_eq!(again, data, "one spelling per note");
        match note {
            RoomNote::Line { seq, payload } => {
                assert!(seq > 0);
                if let Ok(rec) = wire::decode_line(seq, payload) {
                    check_record(payload, &rec, seq);
                }
            }
            RoomNote::Topic { payload } => {
                if let Ok(rec) = wire::decode_topic(payload) {
                    check_record(payload, &rec, 0);
                }
            }
            RoomNote::Joined { name, node } | RoomNote::Left { name, node } => {
                assert!(!name.is_empty() && name.len() <= wire::MAX_NAME_BYTES);
                assert!(!node.is_empty() && node.len() <= wire::MAX_NODE_BYTES);
            }
        }
    }
    if let Ok((from, text)) = wire::decode_private(data) {
        let mut again = Vec::new();
        wire::encode_private(from, text, &mut again).expect("an accepted private re-encodes");
        assert_eq!(again, data, "one spelling per private message");
    }
    if let Ok(claim) = wire::decode_claim(data) {
        let again = wire::encode_claim(claim.node, claim.conn, claim.display)
            .expect("an accepted claim re-encodes");
        assert_eq!(again, data, "one spelling per claim");
    }
    if let Ok(rec) = wire::decode_line(1, data) {
        check_record(data, &rec, 1);
    }
    if let Ok(rec) = wire::decode_topic(data) {
        check_record(data, &rec, 0);
    }
});
