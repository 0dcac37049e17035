//! The history log's record codec and segment scanner on arbitrary bytes.
//!
//! Input layout: the whole input is a segment's bytes.
//!
//! Invariants: nothing panics; `scan` yields entries (records and seq marks)
//! at contiguous offsets from 0, each equal to `decode_entry` of its line, and
//! stops where the good
//! bytes end: `Clean` only at the end of the input, `TornTail` only for the
//! last line, `BadRecord` only when bytes follow the bad line; `decode` of any
//! line it accepts re-encodes (`encode`) to a line that decodes to the same
//! record, and re-encoding that is byte-identical (one canonical spelling).
#![no_main]

use libfuzzer_sys::fuzz_target;
use multiuserchat::store::record::{self, Entry, ScanEnd};

fuzz_target!(|data: &[u8]| {
    let mut next = 0u64;
    let mut lines = Vec::new();
    let end = record::scan(data, 0, |offset, end, entry| {
        assert_eq!(offset, next, "records are contiguous");
        assert!(end > offset && end <= data.len() as u64);
        let line = &data[offset as usize..end as usize];
        assert_eq!(line.last(), Some(&b'\n'));
        let line = &line[..line.len() - 1];
        assert_eq!(record::decode_entry(line).as_ref(), Ok(&entry));
        match entry {
            Entry::Record(rec) => lines.push(rec),
            Entry::SeqMark { room, seq } => {
                assert!(record::decode(line).is_err());
                let mut again = Vec::new();
                let n = record::encode_seq_mark(&room, seq, &mut again).expect("re-encodes");
                let mark = Entry::SeqMark { room, seq };
                assert_eq!(record::decode_entry(&again[..n - 1]), Ok(mark));
            }
        }
        next = end;
    });
    match end {
        ScanEnd::Clean => assert_eq!(next, data.len() as u64),
        ScanEnd::TornTail { offset, error } => {
            assert_eq!(offset, next);
            let rest = &data[offset as usize..];
            // No LF at all, or only the one that ends the bad last line.
            let lf = rest.iter().position(|&b| b == b'\n');
            assert!(lf.is_none_or(|i| i + 1 == rest.len()));
            assert_eq!(lf.is_none(), error == record::RecordError::Incomplete);
        }
        ScanEnd::BadRecord { offset, .. } => {
            assert_eq!(offset, next);
            let rest = &data[offset as usize..];
            let lf = rest
                .iter()
                .position(|&b| b == b'\n')
                .expect("complete line");
            assert!(lf + 1 < rest.len(), "bytes follow a bad record");
        }
    }
    for rec in lines {
        let mut again = Vec::new();
        let n = record::encode(&rec, &mut again).expect("a decoded record re-encodes");
        assert_eq!(n, again.len());
        assert_eq!(record::decode(&again[..n - 1]), Ok(rec.clone()));
        // The encoder's output is the one canonical spelling.
        let mut twice = Vec::new();
        record::encode(&record::decode(&again[..n - 1]).unwrap(), &mut twice).unwrap();
        assert_eq!(twice, again);
    }
    // The whole input as one line.
    if let Ok(rec) = record::decode(data) {
        let mut again = Vec::new();
        let n = record::encode(&rec, &mut again).expect("a decoded record re-encodes");
        assert_eq!(record::decode(&again[..n - 1]), Ok(rec));
    }
});
