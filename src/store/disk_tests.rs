//! Tests of [`Store`] on real files in a scratch directory, with I/O errors
//! injected through [`FaultFs`].

use super::*;
use crate::store::RecordKind;
use crate::store::record::Entry;
use crate::store::testutil::{FaultFs, TempDir};

const T0: u64 = 1_700_000_000_000;

fn msg(room: &str, seq: u64, ts_ms: u64) -> Record {
    Record {
        room: room.into(),
        seq,
        ts_ms,
        kind: RecordKind::Message {
            from: "ann".into(),
            text: format!("message {seq} in {room}: \"quoted\"\nand a new line"),
        },
    }
}

fn topic(room: &str, seq: u64, ts_ms: u64) -> Record {
    Record {
        room: room.into(),
        seq,
        ts_ms,
        kind: RecordKind::Topic {
            by: "bob".into(),
            topic: format!("topic {seq}"),
        },
    }
}

fn options(dir: &Path) -> StoreOptions {
    StoreOptions::new(dir)
}

fn open_std(opts: &StoreOptions) -> Result<(Store, OpenReport, Vec<Record>), StoreError> {
    let mut seen = Vec::new();
    let (store, report) = Store::open(opts.clone(), Instant::now(), "e0e0", |r| seen.push(r))?;
    Ok((store, report, seen))
}

fn open_fault(opts: &StoreOptions, now: Instant) -> (Store<FaultFs>, FaultFs, Vec<Record>) {
    let fs = FaultFs::default();
    let mut seen = Vec::new();
    let (store, _) =
        Store::open_with(fs.clone(), opts.clone(), now, "e0e0", |r| seen.push(r)).unwrap();
    (store, fs, seen)
}

/// Segment files in `dir`, oldest first, with their sizes.
fn segment_files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(parse_segment_name)
                .is_some()
        })
        .map(|e| (e.path(), e.metadata().unwrap().len()))
        .collect();
    files.sort();
    files
}

fn line_len(r: &Record) -> u64 {
    let mut out = Vec::new();
    record::encode(r, &mut out).unwrap() as u64
}

#[test]
fn names_segments_so_that_they_sort() {
    assert_eq!(segment_name(1), "00000000000000000001.log");
    assert_eq!(parse_segment_name("00000000000000000001.log"), Some(1));
    assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
    for bad in [
        "1.log",
        "0000000000000000001a.log",
        "00000000000000000001.txt",
        "epoch",
        "99999999999999999999.log",
        "+0000000000000000001.log",
    ] {
        assert_eq!(parse_segment_name(bad), None, "{bad}");
    }
}

#[test]
fn reopening_replays_every_record_in_order_with_the_same_epoch() {
    let dir = TempDir::new("reopen");
    let opts = options(dir.path());
    let (mut store, report, seen) = open_std(&opts).unwrap();
    assert!(report.epoch_created);
    assert_eq!(report.epoch, "e0e0");
    assert!(seen.is_empty());
    let now = Instant::now();
    let mut written = Vec::new();
    for turn in 0..5u64 {
        for k in 0..3u64 {
            let seq = turn * 3 + k + 1;
            let r = if k == 2 {
                topic("lobby", seq, T0 + seq)
            } else {
                msg("lobby", seq, T0 + seq)
            };
            store.append(&r).unwrap();
            written.push(r);
        }
        let r = msg("other room", turn + 1, T0);
        store.append(&r).unwrap();
        written.push(r);
        let out = store.flush_turn(now);
        assert_eq!(out.records, 4);
        assert_eq!(out.dropped_records, 0);
    }
    store.close(now);
    drop(store);

    let (store, report, seen) = open_std(&opts).unwrap();
    assert!(!report.epoch_created);
    assert_eq!(store.epoch(), "e0e0");
    assert_eq!(report.records, written.len() as u64);
    assert_eq!(report.torn_tail, None);
    assert_eq!(seen, written);
    assert_eq!(store.last_seq("lobby"), Some(15));
    assert_eq!(store.last_seq("other room"), Some(5));
    assert_eq!(store.last_seq("nowhere"), None);
}

#[test]
fn refuses_seqs_that_do_not_increase_and_oversized_records() {
    let dir = TempDir::new("refuse");
    let (mut store, _, _) = open_std(&options(dir.path())).unwrap();
    store.append(&msg("a", 5, T0)).unwrap();
    assert_eq!(
        store.append(&msg("a", 5, T0)),
        Err(AppendError::SeqNotIncreasing { last: 5, seq: 5 })
    );
    assert_eq!(
        store.append(&msg("a", 4, T0)),
        Err(AppendError::SeqNotIncreasing { last: 5, seq: 4 })
    );
    store.append(&msg("b", 1, T0)).unwrap();
    let mut huge = msg("a", 6, T0);
    huge.kind = RecordKind::Message {
        from: "x".into(),
        text: "y".repeat(record::MAX_LINE_BYTES),
    };
    assert!(matches!(
        store.append(&huge),
        Err(AppendError::TooLong { .. })
    ));
    // The refused seq is still free.
    store.append(&msg("a", 6, T0)).unwrap();
    assert_eq!(store.flush_turn(Instant::now()).records, 3);
}

/// Writes three records, then for every cut inside the last one (and for a
/// bad checksum on it) checks that start-up keeps the first two and cuts
/// the file back to them.
#[test]
fn a_torn_last_record_is_cut_at_every_byte() {
    let dir = TempDir::new("torn");
    let opts = options(dir.path());
    let records: Vec<Record> = (1..=3).map(|s| msg("r", s, T0 + s)).collect();
    {
        let (mut store, _, _) = open_std(&opts).unwrap();
        for r in &records {
            store.append(r).unwrap();
        }
        store.close(Instant::now());
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 1);
    let path = files[0].0.clone();
    let full = fs::read(&path).unwrap();
    let last_start = full.len() as u64 - line_len(&records[2]);

    let mut damaged: Vec<Vec<u8>> = (last_start as usize + 1..full.len())
        .map(|cut| full[..cut].to_vec())
        .collect();
    let mut bad_crc = full.clone();
    bad_crc[last_start as usize + 30] ^= 0x20;
    damaged.push(bad_crc);
    for bytes in damaged {
        fs::write(&path, &bytes).unwrap();
        let (mut store, report, seen) = open_std(&opts).unwrap();
        assert_eq!(seen, records[..2], "cut at {}", bytes.len());
        let torn = report.torn_tail.expect("torn tail reported");
        assert_eq!(torn.offset, last_start);
        assert_eq!(torn.path, path);
        assert_eq!(torn.dropped_bytes, bytes.len() as u64 - last_start);
        assert_eq!(fs::metadata(&path).unwrap().len(), last_start);
        // The log goes on from the cut.
        assert_eq!(store.last_seq("r"), Some(2));
        store.append(&records[2]).unwrap();
        store.close(Instant::now());
        assert_eq!(fs::read(&path).unwrap(), full);
    }
    // A cut exactly at a line boundary is no damage at all.
    fs::write(&path, &full[..last_start as usize]).unwrap();
    let (_, report, seen) = open_std(&opts).unwrap();
    assert_eq!(report.torn_tail, None);
    assert_eq!(seen, records[..2]);
}

/// Two segments; damage in the first one (not the tail of the log).
fn two_segment_log(dir: &Path) -> (StoreOptions, Vec<Record>, Vec<(PathBuf, u64)>) {
    let mut opts = options(dir);
    opts.segment_bytes = 300;
    let records: Vec<Record> = (1..=12).map(|s| msg("r", s, T0 + s)).collect();
    let (mut store, _, _) = open_std(&opts).unwrap();
    for r in &records {
        store.append(r).unwrap();
        store.flush_turn(Instant::now());
    }
    store.close(Instant::now());
    let files = segment_files(dir);
    assert!(files.len() >= 3, "{files:?}");
    (opts, records, files)
}

#[test]
fn a_bad_record_in_the_middle_stops_start_up_naming_file_and_offset() {
    let dir = TempDir::new("bad-middle");
    let (opts, records, files) = two_segment_log(dir.path());
    let first = &files[0].0;
    let mut bytes = fs::read(first).unwrap();
    let second_line = line_len(&records[0]) as usize;
    bytes[second_line + 40] ^= 0x01;
    fs::write(first, &bytes).unwrap();

    let err = open_std(&opts).err().expect("start-up refused");
    match &err {
        StoreError::Corrupt {
            path,
            offset,
            reason,
        } => {
            assert_eq!(path, first);
            assert_eq!(*offset, second_line as u64);
            assert!(matches!(reason, RecordError::ChecksumMismatch { .. }));
        }
        other => panic!("unexpected {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&first.display().to_string())
            && text.contains(&format!("byte {second_line}"))
    );
    // Nothing was changed on disk by the refusal.
    assert_eq!(segment_files(dir.path()), files);

    let mut repair = opts.clone();
    repair.repair = true;
    let (mut store, report, seen) = open_std(&repair).unwrap();
    assert_eq!(seen, records[..1]);
    let cut = report.repaired.expect("repair reported");
    assert_eq!(cut.offset, second_line as u64);
    assert_eq!(cut.removed_segments, files.len() - 1);
    assert_eq!(cut.path, *first);
    // Cut there, later segments gone; the log goes on.
    let left = segment_files(dir.path());
    assert_eq!(left.len(), 1);
    assert_eq!(left[0], (first.clone(), second_line as u64));
    store.append(&msg("r", 2, T0)).unwrap();
    store.close(Instant::now());
    let (_, _, seen) = open_std(&opts).unwrap();
    assert_eq!(seen.len(), 2);
}

#[test]
fn a_torn_tail_in_an_older_segment_is_corruption() {
    let dir = TempDir::new("torn-older");
    let (opts, _, files) = two_segment_log(dir.path());
    let first = &files[0].0;
    let len = files[0].1;
    OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert!(matches!(
        open_std(&opts),
        Err(StoreError::Corrupt { ref path, .. }) if path == first
    ));
}

#[test]
fn segments_roll_after_the_turn_that_fills_them() {
    let dir = TempDir::new("roll");
    let mut opts = options(dir.path());
    opts.segment_bytes = 1000;
    let (mut store, _, _) = open_std(&opts).unwrap();
    let mut written = Vec::new();
    let mut rolls = 0;
    for turn in 0..40u64 {
        for k in 0..3 {
            let r = msg("r", turn * 3 + k + 1, T0);
            store.append(&r).unwrap();
            written.push(r);
        }
        if store.flush_turn(Instant::now()).rolled {
            rolls += 1;
        }
    }
    let files = segment_files(dir.path());
    assert_eq!(files.len(), rolls + 1);
    assert!(rolls >= 5, "{rolls} rolls");
    let turn_max = 3 * line_len(&written[written.len() - 1]);
    for (path, len) in &files[..files.len() - 1] {
        assert!(*len >= 1000 && *len < 1000 + turn_max, "{path:?}: {len}");
    }
    assert_eq!(store.stats().segments, files.len());
    assert_eq!(
        store.stats().total_bytes,
        files.iter().map(|f| f.1).sum::<u64>()
    );
    drop(store);
    let (_, report, seen) = open_std(&opts).unwrap();
    assert_eq!(seen, written);
    assert_eq!(report.segments, files.len());
}

#[test]
fn retention_deletes_whole_segments_by_age_and_rolls_an_old_open_one() {
    let dir = TempDir::new("expire-age");
    let mut opts = options(dir.path());
    opts.segment_bytes = 500;
    opts.retention = Duration::from_secs(3600);
    let now = Instant::now();
    let (mut store, _, _) = open_std(&opts).unwrap();
    // Three hours of records, one a minute.
    let hour = 3_600_000;
    for m in 0..180u64 {
        store.append(&msg("r", m + 1, T0 + m * 60_000)).unwrap();
        store.flush_turn(now);
    }
    let before = segment_files(dir.path());
    let end = T0 + 179 * 60_000;
    // Half an hour in, nothing is older than an hour.
    assert_eq!(store.expire(T0 + hour / 2, now).deleted_segments, 0);
    let out = store.expire(end + hour / 2, now);
    assert!(out.deleted_segments > 0);
    assert!(!out.failed);
    let after = segment_files(dir.path());
    assert_eq!(after.len(), before.len() - out.deleted_segments);
    assert_eq!(
        out.deleted_bytes,
        before[..out.deleted_segments]
            .iter()
            .map(|f| f.1)
            .sum::<u64>()
    );
    // Whole segments went, oldest first; every remaining one may still hold
    // a record younger than the cutoff.
    assert_eq!(after[..], before[out.deleted_segments..]);
    drop(store);
    let (mut store, _, seen) = open_std(&opts).unwrap();
    let cutoff = end + hour / 2 - hour;
    assert!(
        seen.iter().any(|r| r.ts_ms < cutoff),
        "only whole segments go"
    );
    assert!(seen.iter().all(|r| r.ts_ms + 500 * 60_000 >= cutoff));
    assert_eq!(seen.last().map(|r| r.seq), Some(180));
    // Days later: the open segment is rolled and everything goes.
    let out = store.expire(end + 10 * hour, now);
    assert!(out.deleted_segments >= 1);
    let left = segment_files(dir.path());
    assert_eq!(left.len(), 1);
    let mut mark = Vec::new();
    record::encode_seq_mark("r", 180, &mut mark).unwrap();
    assert_eq!(
        fs::read(&left[0].0).unwrap(),
        mark,
        "only the seq mark is left"
    );
    assert_eq!(store.last_seq("r"), Some(180), "seqs are not reused");
    assert!(store.read_before("r", 181, 10).unwrap().is_empty());
    // A second sweep finds nothing more to do.
    assert_eq!(store.expire(end + 20 * hour, now), ExpireOutcome::default());
    drop(store);
    let (mut store, report, seen) = open_std(&opts).unwrap();
    assert!(seen.is_empty());
    assert_eq!(report.records, 0);
    assert_eq!(store.last_seq("r"), Some(180), "not even after a restart");
    assert_eq!(store.last_seqs().collect::<Vec<_>>(), vec![("r", 180)]);
    store.append(&msg("r", 181, end + 10 * hour)).unwrap();
    assert_eq!(store.flush_turn(now).records, 1);
}

#[test]
fn each_new_segment_starts_with_every_rooms_last_seq() {
    let dir = TempDir::new("marks");
    let mut opts = options(dir.path());
    opts.segment_bytes = 600;
    let now = Instant::now();
    let (mut store, _, _) = open_std(&opts).unwrap();
    store.append(&msg("quiet", 7, T0)).unwrap();
    store.append(&topic("quiet \"room\"", 3, T0)).unwrap();
    let mut busy = Vec::new();
    for s in 1..=20 {
        let r = msg("busy", s, T0 + s);
        store.append(&r).unwrap();
        busy.push(r);
        store.flush_turn(now);
    }
    let files = segment_files(dir.path());
    assert!(files.len() >= 3);
    for (path, _) in &files[1..] {
        let bytes = fs::read(path).unwrap();
        let mut marks = Vec::new();
        record::scan(&bytes, 0, |_, _, entry| {
            if let Entry::SeqMark { room, seq } = entry {
                marks.push((room, seq));
            }
        });
        marks.sort();
        assert_eq!(marks.len(), 3, "{path:?}");
        assert_eq!(marks[1], ("quiet".to_owned(), 7));
        assert_eq!(marks[2], ("quiet \"room\"".to_owned(), 3));
    }
    // Marks are neither replayed nor paged back.
    drop(store);
    let (store, report, seen) = open_std(&opts).unwrap();
    assert_eq!(report.records, 22);
    assert_eq!(seen.len(), 22);
    assert_eq!(store.read_before("busy", 100, 100).unwrap(), busy);
    let mut seqs: Vec<(&str, u64)> = store.last_seqs().collect();
    seqs.sort();
    assert_eq!(
        seqs,
        vec![("busy", 20), ("quiet", 7), ("quiet \"room\"", 3)]
    );
}

#[test]
fn retention_deletes_oldest_segments_while_over_the_size_limit() {
    let dir = TempDir::new("expire-size");
    let mut opts = options(dir.path());
    opts.segment_bytes = 400;
    opts.max_total_bytes = 1500;
    let now = Instant::now();
    let (mut store, _, _) = open_std(&opts).unwrap();
    for s in 1..=60 {
        store.append(&msg("r", s, T0)).unwrap();
        store.flush_turn(now);
    }
    let before = segment_files(dir.path());
    let total: u64 = before.iter().map(|f| f.1).sum();
    assert!(total > 1500);
    let out = store.expire(T0, now);
    let after = segment_files(dir.path());
    let left: u64 = after.iter().map(|f| f.1).sum();
    assert!(left <= 1500, "{left}");
    // Only as many as needed: one more segment would have been over.
    assert!(left + before[out.deleted_segments - 1].1 > 1500);
    assert_eq!(after[..], before[out.deleted_segments..]);
    assert_eq!(store.stats().total_bytes, left);

    // The open segment is never deleted for size.
    opts.max_total_bytes = 0;
    drop(store);
    let (mut store, _, _) = open_std(&opts).unwrap();
    store.append(&msg("r", 61, T0)).unwrap();
    store.flush_turn(now);
    store.expire(T0, now);
    let after = segment_files(dir.path());
    assert_eq!(after.len(), 1);
    assert!(after[0].1 > 0);
}

#[test]
fn pages_back_with_exclusive_bounds_across_segments_and_rooms() {
    let dir = TempDir::new("pages");
    let mut opts = options(dir.path());
    opts.segment_bytes = 4000;
    let now = Instant::now();
    let (mut store, _, _) = open_std(&opts).unwrap();
    let mut room_a = Vec::new();
    for s in 1..=500u64 {
        let a = if s % 7 == 0 {
            topic("a", s, T0 + s)
        } else {
            msg("a", s, T0 + s)
        };
        store.append(&a).unwrap();
        room_a.push(a);
        if s % 3 == 0 {
            store.append(&msg("b", s, T0 + s)).unwrap();
        }
        store.flush_turn(now);
    }
    assert!(store.stats().segments > 10);
    assert_eq!(
        store.read_before("a", 10, 5).unwrap(),
        room_a[4..9],
        "seqs 5..=9: the bound is exclusive"
    );
    assert_eq!(store.read_before("a", 3, 100).unwrap(), room_a[..2]);
    assert!(store.read_before("a", 1, 100).unwrap().is_empty());
    assert!(store.read_before("a", 0, 100).unwrap().is_empty());
    assert!(store.read_before("a", 100, 0).unwrap().is_empty());
    assert!(store.read_before("nobody", 100, 10).unwrap().is_empty());
    assert_eq!(store.read_before("a", u64::MAX, 3).unwrap(), room_a[497..]);
    for limit in [1usize, 7, 50, 64, 65, 200] {
        let mut pages: Vec<Vec<Record>> = Vec::new();
        let mut before = 501;
        for _ in 0..1000 {
            let page = store.read_before("a", before, limit).unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= limit);
            assert!(page.windows(2).all(|w| w[0].seq < w[1].seq));
            before = page[0].seq;
            pages.push(page);
        }
        let all: Vec<Record> = pages.into_iter().rev().flatten().collect();
        assert_eq!(all, room_a, "limit {limit}");
    }
    let b = store.read_before("b", 100, 1000).unwrap();
    assert_eq!(b.len(), 33);
    assert!(
        b.iter()
            .all(|r| r.room == "b" && r.seq % 3 == 0 && r.seq < 100)
    );
    // Records not yet written are not found; the in-memory ring has them.
    store.append(&msg("a", 501, T0)).unwrap();
    assert_eq!(store.read_before("a", 502, 1).unwrap(), room_a[499..]);
    assert_eq!(
        store.read_before("a", 10_000, 5000).unwrap().len(),
        MAX_PAGE_RECORDS.min(500)
    );
}

#[test]
fn a_failed_write_degrades_logs_once_and_recovers_after_the_retry_interval() {
    let dir = TempDir::new("degraded");
    let opts = options(dir.path());
    let t = Instant::now();
    let (mut store, fs, _) = open_fault(&opts, t);
    store.append(&msg("r", 1, T0)).unwrap();
    assert_eq!(store.flush_turn(t).records, 1);

    // The disk fills up in the middle of a turn's write.
    fs.faults.borrow_mut().write_after = Some(25);
    store.append(&msg("r", 2, T0)).unwrap();
    store.append(&msg("r", 3, T0)).unwrap();
    let out = store.flush_turn(t);
    assert_eq!(out.records, 0);
    assert_eq!(out.dropped_records, 2);
    assert!(store.is_degraded());
    let reason = store.stats().degraded.unwrap();
    assert!(reason.contains("write"), "{reason}");
    assert_eq!(store.next_deadline(), Some(t + RESUME_INTERVAL));

    // While degraded, appends are dropped and counted, nothing is written.
    assert_eq!(store.append(&msg("r", 4, T0)), Err(AppendError::Degraded));
    let writes = fs.faults.borrow().writes;
    let out = store.flush_turn(t + Duration::from_secs(1));
    assert_eq!(out.dropped_records, 1);
    assert_eq!(fs.faults.borrow().writes, writes);
    assert_eq!(store.stats().dropped_records, 3);

    // Still full at the first retry: stays degraded, retries later.
    fs.faults.borrow_mut().truncate = true;
    store.flush_turn(t + RESUME_INTERVAL);
    assert!(store.is_degraded());
    assert_eq!(store.next_deadline(), Some(t + RESUME_INTERVAL * 2));

    // Space again: the partial turn is cut off and appends go on.
    *fs.faults.borrow_mut() = Default::default();
    store.append(&msg("r", 5, T0)).unwrap_err();
    let out = store.flush_turn(t + RESUME_INTERVAL * 2);
    assert!(!store.is_degraded());
    assert_eq!(out.dropped_records, 1);
    store.append(&msg("r", 6, T0)).unwrap();
    assert_eq!(store.flush_turn(t + RESUME_INTERVAL * 2).records, 1);
    store.close(t + RESUME_INTERVAL * 2);
    drop(store);

    let (_, report, seen) = open_std(&opts).unwrap();
    assert_eq!(
        report.torn_tail, None,
        "the partial write was cut at resume"
    );
    assert_eq!(
        seen.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 6],
        "2..=5 are the gap"
    );
}

#[test]
fn a_crash_while_degraded_leaves_a_torn_tail_that_start_up_cuts() {
    let dir = TempDir::new("degraded-crash");
    let opts = options(dir.path());
    let t = Instant::now();
    let (mut store, fs, _) = open_fault(&opts, t);
    store.append(&msg("r", 1, T0)).unwrap();
    store.flush_turn(t);
    fs.faults.borrow_mut().write_after = Some(30);
    store.append(&msg("r", 2, T0)).unwrap();
    store.flush_turn(t);
    assert!(store.is_degraded());
    drop(store); // kill -9: no resume, no close
    let (_, report, seen) = open_std(&opts).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(report.torn_tail.map(|t| t.dropped_bytes), Some(30));
}

#[test]
fn a_failed_fdatasync_or_roll_degrades_too() {
    let dir = TempDir::new("degraded-sync");
    let mut opts = options(dir.path());
    opts.fsync = FsyncPolicy::Always;
    opts.segment_bytes = 200;
    let t = Instant::now();
    let (mut store, fs, _) = open_fault(&opts, t);
    fs.faults.borrow_mut().sync = true;
    store.append(&msg("r", 1, T0)).unwrap();
    let out = store.flush_turn(t);
    assert_eq!(out.records, 1);
    assert!(!out.synced);
    assert!(store.stats().degraded.unwrap().contains("fdatasync"));
    fs.faults.borrow_mut().sync = false;
    store.flush_turn(t + RESUME_INTERVAL);
    assert!(!store.is_degraded());

    // The segment is full; creating the next one fails.
    fs.faults.borrow_mut().create = true;
    for s in 2..=4 {
        store.append(&msg("r", s, T0)).unwrap();
    }
    let out = store.flush_turn(t + RESUME_INTERVAL);
    assert_eq!(out.records, 3);
    assert!(!out.rolled);
    assert!(store.stats().degraded.unwrap().contains("create"));
    fs.faults.borrow_mut().create = false;
    let out = store.flush_turn(t + RESUME_INTERVAL * 2);
    assert!(out.rolled, "the roll is retried after resuming");
    assert!(!store.is_degraded());
    assert_eq!(segment_files(dir.path()).len(), 2);
    drop(store);
    let (_, _, seen) = open_std(&opts).unwrap();
    assert_eq!(seen.len(), 4);
}

#[test]
fn a_failed_delete_stops_the_sweep_and_is_retried() {
    let dir = TempDir::new("expire-fail");
    let mut opts = options(dir.path());
    opts.segment_bytes = 200;
    opts.max_total_bytes = 0;
    let t = Instant::now();
    let (mut store, fs, _) = open_fault(&opts, t);
    for s in 1..=6 {
        store.append(&msg("r", s, T0)).unwrap();
        store.flush_turn(t);
    }
    let before = segment_files(dir.path()).len();
    fs.faults.borrow_mut().remove = true;
    let out = store.expire(T0, t);
    assert!(out.failed);
    assert_eq!(out.deleted_segments, 0);
    assert!(!store.is_degraded());
    fs.faults.borrow_mut().remove = false;
    let out = store.expire(T0, t);
    assert_eq!(out.deleted_segments, before - 1);
}

#[test]
fn always_syncs_each_turn_that_wrote_once() {
    let dir = TempDir::new("always");
    let mut opts = options(dir.path());
    opts.fsync = FsyncPolicy::Always;
    let t = Instant::now();
    let (mut store, fs, _) = open_fault(&opts, t);
    for s in 1..=3 {
        store.append(&msg("r", 2 * s - 1, T0)).unwrap();
        store.append(&msg("r", 2 * s, T0)).unwrap();
        let out = store.flush_turn(t);
        assert!(out.synced && out.records == 2);
    }
    let empty = store.flush_turn(t);
    assert!(!empty.synced);
    let f = fs.faults.borrow();
    assert_eq!(
        (f.writes, f.syncs),
        (3, 3),
        "one write and one sync per turn"
    );
    assert_eq!(store.next_deadline(), None);
}

#[test]
fn everysec_syncs_at_most_once_a_second_and_says_when() {
    let dir = TempDir::new("everysec");
    let opts = options(dir.path());
    let t = Instant::now();
    let (mut store, fs, _) = open_fault(&opts, t);
    assert_eq!(store.next_deadline(), None);
    store.append(&msg("r", 1, T0)).unwrap();
    let out = store.flush_turn(t + Duration::from_millis(100));
    assert!(!out.synced);
    assert_eq!(store.next_deadline(), Some(t + SYNC_INTERVAL));
    store.append(&msg("r", 2, T0)).unwrap();
    assert!(!store.flush_turn(t + Duration::from_millis(999)).synced);
    assert!(store.flush_turn(t + SYNC_INTERVAL).synced);
    assert_eq!(store.next_deadline(), None);
    // After a quiet spell the first write is synced at once.
    store.append(&msg("r", 3, T0)).unwrap();
    assert!(store.flush_turn(t + Duration::from_secs(5)).synced);
    assert_eq!(fs.faults.borrow().syncs, 2);
}

#[test]
fn never_leaves_syncing_to_close() {
    let dir = TempDir::new("never");
    let mut opts = options(dir.path());
    opts.fsync = FsyncPolicy::Never;
    opts.segment_bytes = 100;
    let t = Instant::now();
    let (mut store, fs, _) = open_fault(&opts, t);
    for s in 1..=5 {
        store.append(&msg("r", s, T0)).unwrap();
        store.flush_turn(t + Duration::from_secs(s));
    }
    assert_eq!(fs.faults.borrow().syncs, 0);
    assert_eq!(store.next_deadline(), None);
    store.append(&msg("r", 6, T0)).unwrap();
    assert!(store.close(t).synced);
    assert_eq!(fs.faults.borrow().syncs, 1);
}

#[test]
fn ignores_other_files_and_rolls_a_full_last_segment_on_the_first_turn() {
    let dir = TempDir::new("others");
    fs::write(dir.path().join("notes.txt"), "x").unwrap();
    fs::write(dir.path().join("1.log"), "garbage").unwrap();
    let mut opts = options(dir.path());
    opts.segment_bytes = 50;
    let (mut store, _, _) = open_std(&opts).unwrap();
    store.append(&msg("r", 1, T0)).unwrap();
    let out = store.flush_turn(Instant::now());
    assert!(out.rolled);
    drop(store);
    let files = segment_files(dir.path());
    assert_eq!(files.len(), 2);
    // As if the process died between the write and the roll.
    fs::remove_file(&files[1].0).unwrap();
    let (mut store, report, seen) = open_std(&opts).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(report.segments, 1);
    let out = store.flush_turn(Instant::now());
    assert!(
        out.rolled,
        "the first turn starts a new segment after the full one"
    );
    assert_eq!(store.stats().segments, 2);
}

/// The cost of one small write plus `fdatasync` on this machine's disk (the
/// price of `--fsync always`, paid once per loop turn that stored anything).
/// Run with `cargo test --release -- --ignored --nocapture fdatasync`;
/// `MUC_STORE_TEST_DIR` picks the file system (default: the temp dir).
#[test]
#[ignore]
fn measure_fdatasync_cost() {
    let dir = TempDir::new("fdatasync-cost");
    let mut opts = options(dir.path());
    opts.fsync = FsyncPolicy::Always;
    let (mut store, _, _) = open_std(&opts).unwrap();
    let mut times = Vec::new();
    for turn in 0..500u64 {
        for k in 0..4 {
            store.append(&msg("r", turn * 4 + k + 1, T0)).unwrap();
        }
        let started = Instant::now();
        let out = store.flush_turn(started);
        times.push(started.elapsed());
        assert!(out.synced);
    }
    times.sort();
    let pct = |p: usize| times[(times.len() - 1) * p / 100];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "write + fdatasync of one 4-record turn ({} bytes), {} turns in {}: \
         min {:?}  p50 {:?}  p90 {:?}  p99 {:?}  max {:?}  mean {:?}",
        4 * line_len(&msg("r", 1000, T0)),
        times.len(),
        dir.path().display(),
        times[0],
        pct(50),
        pct(90),
        pct(99),
        times[times.len() - 1],
        mean
    );
}
