//! [`Store`]: the log's files. Opens and recovers the data directory,
//! buffers a turn's records, writes and syncs them per [`FsyncPolicy`], rolls
//! segments, deletes expired ones, pages old records back, and turns write-path
//! I/O errors into a degraded state instead of stopping the chat.
//!
//! Owns the data directory's segment files and the policy of when to write,
//! sync, roll, delete and retry. Knows nothing about the loop, sockets or
//! the hub: times are arguments (`Instant` for syncs and retries, Unix
//! milliseconds for retention), and the caller decides when each step runs.
//!
//! # States
//!
//! ```text
//!            write/fdatasync/create fails          retry (truncate to the last good
//! Healthy ─────────────────────────────────▶ Degraded   length + fdatasync) succeeds
//!    ▲        (logged once; the turn's and every                │
//!    └──────── later record is dropped and counted) ◀───────────┘
//! ```
//!
//! While healthy, [`Store::append`] encodes into one turn buffer and
//! [`Store::flush_turn`] writes it with one `write` to the newest segment,
//! syncs when the policy says so, and rolls to a new segment once the newest
//! one reaches `segment_bytes`. A retry is attempted by `flush_turn` once
//! [`RESUME_INTERVAL`] has passed since the failure ([`Store::next_deadline`]
//! says when).
//!
//! A roll writes (and syncs) a seq mark per known room at the start of the new
//! segment, so the open segment always carries every room's last seq.
//!
//! # Start-up
//!
//! Every segment is read whole, oldest first, and each record handed to the
//! caller. A torn tail (the last line of the newest segment incomplete or bad:
//! a crash during a write) is cut off with a warning. Any other bad line stops
//! the start with [`StoreError::Corrupt`] naming the file and byte offset;
//! with `repair` the log is cut there instead, and later segments deleted.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use log::{error, info, warn};

use super::fs::{Fs, StdFs};
use super::index::Index;
use super::record::{self, Entry, RecordError, ScanEnd};
use super::{AppendError, FsyncPolicy, Record, RecordKind, StoreError, StoreOptions, epoch};

/// `everysec`: the longest time between a write and its `fdatasync`.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// While degraded, how often the write path is retried.
pub const RESUME_INTERVAL: Duration = Duration::from_secs(10);

/// Most records [`Store::read_before`] returns in one page.
pub const MAX_PAGE_RECORDS: usize = 1000;

/// The file name of segment `id`: 20 digits and `.log`, so names sort by id.
pub fn segment_name(id: u64) -> String {
    format!("{id:020}.log")
}

/// The id in a segment file name; `None` for any other name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".log")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A cut made to the log at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truncation {
    /// The segment that was cut.
    pub path: PathBuf,
    /// Its new length: the start of the first line dropped.
    pub offset: u64,
    /// Bytes dropped from that segment.
    pub dropped_bytes: u64,
    /// Later segments deleted (repair only).
    pub removed_segments: usize,
    /// What was wrong with the line at `offset`.
    pub reason: RecordError,
}

/// What [`Store::open`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// The data directory's epoch.
    pub epoch: String,
    /// Whether the epoch (and so the data directory) was created by this start.
    pub epoch_created: bool,
    /// Records handed to `visit`.
    pub records: u64,
    /// Segments kept.
    pub segments: usize,
    /// The torn last record that was cut off, if any.
    pub torn_tail: Option<Truncation>,
    /// The cut made by `repair` at a bad record in the middle, if any.
    pub repaired: Option<Truncation>,
}

/// What one [`Store::flush_turn`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushOutcome {
    /// Bytes written (0 or the whole turn buffer: one write).
    pub written_bytes: usize,
    /// Records written.
    pub records: usize,
    /// Whether an `fdatasync` completed.
    pub synced: bool,
    /// Whether a new segment was started.
    pub rolled: bool,
    /// Records of this turn that did not reach the file (appended while
    /// degraded, or lost with a failed write).
    pub dropped_records: usize,
}

/// What one [`Store::expire`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExpireOutcome {
    /// Whole segments deleted.
    pub deleted_segments: usize,
    /// Their bytes.
    pub deleted_bytes: u64,
    /// A deletion failed (logged); the sweep stopped there, oldest first.
    pub failed: bool,
}

/// Numbers for `/stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStats {
    /// The fsync policy in force.
    pub fsync: FsyncPolicy,
    /// Segment files.
    pub segments: usize,
    /// Their total size in bytes.
    pub total_bytes: u64,
    /// Rooms with a known last seq.
    pub rooms: usize,
    /// `Some(reason)` while degraded, e.g. `"write …: No space left on device"`.
    pub degraded: Option<String>,
    /// Records dropped since start (degraded or failed writes).
    pub dropped_records: u64,
}

/// One segment file.
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    bytes: u64,
    /// End of the seq marks at the start of the segment (0 if none).
    marks_bytes: u64,
    newest_ts_ms: Option<u64>,
}

/// A record in the turn buffer, waiting for the write.
#[derive(Debug)]
struct Pending {
    room: String,
    seq: u64,
    ts_ms: u64,
    offset: u64,
    end: u64,
}

#[derive(Debug)]
struct Degraded {
    reason: String,
    retry_at: Instant,
}

/// The durable room history. See the module docs for the states and
/// `store/mod.rs` for how the loop drives it.
pub struct Store<F: Fs = StdFs> {
    opts: StoreOptions,
    fs: F,
    epoch: String,
    /// Every segment, oldest first; the last one is `active`.
    segments: BTreeMap<u64, Segment>,
    active: u64,
    file: F::File,
    total_bytes: u64,
    index: Index,
    /// This turn's encoded records.
    pending: Vec<u8>,
    pending_records: Vec<Pending>,
    /// Bytes were written since the last `fdatasync`.
    unsynced: bool,
    last_sync: Instant,
    degraded: Option<Degraded>,
    dropped_this_turn: usize,
    dropped_total: u64,
}

impl Store<StdFs> {
    /// Opens (or creates) the data directory `opts.dir` on the real file system.
    /// See [`Store::open_with`].
    pub fn open(
        opts: StoreOptions,
        now: Instant,
        fresh_epoch: &str,
        visit: impl FnMut(Record),
    ) -> Result<(Self, OpenReport), StoreError> {
        Store::open_with(StdFs, opts, now, fresh_epoch, visit)
    }
}

impl<F: Fs> Store<F> {
    /// Opens (or creates) the data directory and replays the log: `visit` gets
    /// every record, oldest first, so the caller can rebuild its rings and each
    /// room's last seq. `fresh_epoch` (see [`epoch::generate`]) is written to
    /// the `epoch` file only if there is none.
    ///
    /// A torn tail is cut off (reported in [`OpenReport::torn_tail`]). `Err`:
    /// [`StoreError::Corrupt`] for a bad record elsewhere unless
    /// `opts.repair` (then [`OpenReport::repaired`]); [`StoreError::Io`] when a
    /// file cannot be listed, read, cut, created or opened;
    /// [`StoreError::BadEpoch`]. On `Err`, records already visited must be
    /// discarded. Reads each segment whole (up to `segment_bytes` plus one
    /// turn of memory at a time).
    pub fn open_with(
        mut fs: F,
        opts: StoreOptions,
        now: Instant,
        fresh_epoch: &str,
        mut visit: impl FnMut(Record),
    ) -> Result<(Self, OpenReport), StoreError> {
        let dir = opts.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
        let (epoch, epoch_created) = epoch::load_or_create(&dir, fresh_epoch)?;
        let ids = list_segments(&dir)?;
        let mut report = OpenReport {
            epoch: epoch.clone(),
            epoch_created,
            records: 0,
            segments: 0,
            torn_tail: None,
            repaired: None,
        };
        let mut segments = BTreeMap::new();
        let mut index = Index::new();
        for (n, &id) in ids.iter().enumerate() {
            let path = dir.join(segment_name(id));
            let bytes = fs::read(&path).map_err(|e| StoreError::io("read", &path, e))?;
            let mut newest_ts_ms: Option<u64> = None;
            let mut marks_bytes = 0;
            let end = record::scan(&bytes, 0, |offset, end, entry| match entry {
                Entry::Record(rec) => {
                    index.add(&rec.room, rec.seq, id, offset, end);
                    newest_ts_ms = Some(newest_ts_ms.map_or(rec.ts_ms, |t| t.max(rec.ts_ms)));
                    report.records += 1;
                    visit(rec);
                }
                Entry::SeqMark { room, seq } => {
                    index.note_seq(&room, seq);
                    marks_bytes = end;
                }
            });
            let file_len = bytes.len() as u64;
            let is_last = n + 1 == ids.len();
            let (good_len, stop) = match end {
                ScanEnd::Clean => (file_len, false),
                ScanEnd::TornTail { offset, error } if is_last => {
                    cut_file(&path, offset)?;
                    warn!(
                        "history store: torn last record in {} at byte {offset} ({error}); \
                         cut off {} bytes",
                        path.display(),
                        file_len.saturating_sub(offset)
                    );
                    report.torn_tail = Some(Truncation {
                        path: path.clone(),
                        offset,
                        dropped_bytes: file_len.saturating_sub(offset),
                        removed_segments: 0,
                        reason: error,
                    });
                    (offset, false)
                }
                ScanEnd::TornTail { offset, error } | ScanEnd::BadRecord { offset, error } => {
                    if !opts.repair {
                        return Err(StoreError::Corrupt {
                            path,
                            offset,
                            reason: error,
                        });
                    }
                    cut_file(&path, offset)?;
                    let later = ids.get(n + 1..).unwrap_or_default();
                    for &later_id in later {
                        let later_path = dir.join(segment_name(later_id));
                        fs::remove_file(&later_path)
                            .map_err(|e| StoreError::io("remove", &later_path, e))?;
                    }
                    fs.sync_dir(&dir)
                        .map_err(|e| StoreError::io("fsync", &dir, e))?;
                    warn!(
                        "history store: repair: bad record in {} at byte {offset} ({error}); \
                         cut {} bytes there and deleted {} later segment(s)",
                        path.display(),
                        file_len.saturating_sub(offset),
                        later.len()
                    );
                    report.repaired = Some(Truncation {
                        path: path.clone(),
                        offset,
                        dropped_bytes: file_len.saturating_sub(offset),
                        removed_segments: later.len(),
                        reason: error,
                    });
                    (offset, true)
                }
            };
            segments.insert(
                id,
                Segment {
                    path,
                    bytes: good_len,
                    marks_bytes: marks_bytes.min(good_len),
                    newest_ts_ms,
                },
            );
            if stop {
                break;
            }
        }
        let (active, file) = open_active(&mut fs, &opts, &mut segments)?;
        report.segments = segments.len();
        let total_bytes = segments.values().map(|s| s.bytes).sum();
        let store = Store {
            opts,
            fs,
            epoch,
            segments,
            active,
            file,
            total_bytes,
            index,
            pending: Vec::new(),
            pending_records: Vec::new(),
            unsynced: false,
            last_sync: now,
            degraded: None,
            dropped_this_turn: 0,
            dropped_total: 0,
        };
        Ok((store, report))
    }

    /// The data directory's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// The last seq stored (or appended) for `room`; `None` if never seen.
    pub fn last_seq(&self, room: &str) -> Option<u64> {
        self.index.last_seq(room)
    }

    /// Every room's last seq, in no particular order: after [`Store::open`],
    /// where each room's seqs go on from (this includes rooms whose records
    /// have all expired, carried forward by seq marks).
    pub fn last_seqs(&self) -> impl Iterator<Item = (&str, u64)> {
        self.index.last_seqs()
    }

    /// Whether the store is degraded (appends are dropped).
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_some()
    }

    /// Numbers for `/stats`.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            fsync: self.opts.fsync,
            segments: self.segments.len(),
            total_bytes: self.total_bytes,
            rooms: self.index.rooms(),
            degraded: self.degraded.as_ref().map(|d| d.reason.clone()),
            dropped_records: self.dropped_total,
        }
    }

    /// Adds `record` to this turn's buffer; [`Store::flush_turn`] writes it.
    ///
    /// `Err(Degraded)`: dropped (counted in the next [`FlushOutcome`]).
    /// `Err(TooLong)`: over [`record::MAX_LINE_BYTES`] encoded.
    /// `Err(SeqNotIncreasing)`: `record.seq` is not above the room's last seq
    /// (a topic change may equal it).
    pub fn append(&mut self, record: &Record) -> Result<(), AppendError> {
        if self.degraded.is_some() {
            self.dropped_this_turn += 1;
            self.dropped_total += 1;
            return Err(AppendError::Degraded);
        }
        // A topic change takes the seq of the room's latest message (room
        // messages are numbered without gaps, topics are not numbered), so it
        // may equal the last seq; a message must be above it.
        let topic = matches!(record.kind, RecordKind::Topic { .. });
        if let Some(last) = self.index.last_seq(&record.room)
            && (record.seq < last || (record.seq == last && !topic))
        {
            return Err(AppendError::SeqNotIncreasing {
                last,
                seq: record.seq,
            });
        }
        let offset = self.active_bytes() + self.pending.len() as u64;
        let len = record::encode(record, &mut self.pending).map_err(|e| match e {
            RecordError::TooLong { len, max } => AppendError::TooLong { len, max },
            _ => AppendError::TooLong {
                len: 0,
                max: record::MAX_LINE_BYTES,
            },
        })?;
        self.index.note_seq(&record.room, record.seq);
        self.pending_records.push(Pending {
            room: record.room.clone(),
            seq: record.seq,
            ts_ms: record.ts_ms,
            offset,
            end: offset + len as u64,
        });
        Ok(())
    }

    /// Ends the loop turn: one write of the records appended since the last
    /// call, then an `fdatasync` if the policy says so (`always`: now;
    /// `everysec`: if [`SYNC_INTERVAL`] has passed since the last one), then a
    /// segment roll if the newest segment reached `segment_bytes`. While
    /// degraded, retries the write path first when [`RESUME_INTERVAL`] is up.
    ///
    /// Call it every turn before the turn's deliveries are flushed to sockets,
    /// and when [`Store::next_deadline`] passes. Never fails: an I/O error
    /// degrades the store (logged once) and shows in the outcome's
    /// `dropped_records` and [`Store::is_degraded`].
    pub fn flush_turn(&mut self, now: Instant) -> FlushOutcome {
        self.flush(now, false)
    }

    /// Flushes and syncs whatever the policy (`never` included), for a clean
    /// shutdown. `dropped_records` is non-zero, or [`Store::is_degraded`]
    /// true, if not everything appended reached stable storage.
    pub fn close(&mut self, now: Instant) -> FlushOutcome {
        self.flush(now, true)
    }

    /// When [`Store::flush_turn`] next has work that no append triggers: the
    /// `everysec` sync of written data, or the retry while degraded. `None`
    /// when there is nothing to wait for.
    pub fn next_deadline(&self) -> Option<Instant> {
        if let Some(d) = &self.degraded {
            return Some(d.retry_at);
        }
        if self.unsynced && self.opts.fsync == FsyncPolicy::EverySec {
            return self.last_sync.checked_add(SYNC_INTERVAL);
        }
        None
    }

    fn flush(&mut self, now: Instant, force_sync: bool) -> FlushOutcome {
        let mut out = FlushOutcome {
            dropped_records: std::mem::take(&mut self.dropped_this_turn),
            ..FlushOutcome::default()
        };
        if self.degraded.is_some() && !self.try_resume(now) {
            return out;
        }
        if !self.pending.is_empty() {
            let written = self.fs.write_all(&mut self.file, &self.pending);
            if let Err(e) = written {
                out.dropped_records += self.pending_records.len();
                self.degrade("write", e, now);
                return out;
            }
            out.written_bytes = self.pending.len();
            out.records = self.pending_records.len();
            self.commit_pending();
            self.unsynced = true;
        }
        let due = match self.opts.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::EverySec => now.saturating_duration_since(self.last_sync) >= SYNC_INTERVAL,
            FsyncPolicy::Never => false,
        };
        if self.unsynced && (due || force_sync) {
            if let Err(e) = self.fs.sync_data(&mut self.file) {
                self.degrade("fdatasync", e, now);
                return out;
            }
            self.unsynced = false;
            self.last_sync = now;
            out.synced = true;
        }
        if self.active_is_full() {
            out.rolled = self.roll(now);
        }
        out
    }

    /// Moves the written turn buffer's records into the index.
    fn commit_pending(&mut self) {
        let written = self.pending.len() as u64;
        let mut newest: Option<u64> = None;
        for p in self.pending_records.drain(..) {
            self.index.add(&p.room, p.seq, self.active, p.offset, p.end);
            newest = Some(newest.map_or(p.ts_ms, |t| t.max(p.ts_ms)));
        }
        if let Some(seg) = self.segments.get_mut(&self.active) {
            seg.bytes += written;
            if let Some(ts) = newest {
                seg.newest_ts_ms = Some(seg.newest_ts_ms.map_or(ts, |t| t.max(ts)));
            }
        }
        self.total_bytes += written;
        self.pending.clear();
        // A burst can leave a large buffer behind; give it back.
        if self.pending.capacity() > 4 << 20 {
            self.pending.shrink_to(64 << 10);
        }
    }

    fn active_bytes(&self) -> u64 {
        self.segments.get(&self.active).map_or(0, |s| s.bytes)
    }

    /// The open segment holds records (not only marks) and reached its size.
    fn active_is_full(&self) -> bool {
        self.segments
            .get(&self.active)
            .is_some_and(|s| s.bytes > s.marks_bytes && s.bytes >= self.opts.segment_bytes)
    }

    /// Closes the newest segment (synced unless `never`) and starts the next
    /// one with a seq mark for every room known, written and synced at once,
    /// so the newest segment always holds every room's last seq (retention
    /// may delete all of a room's records; its seqs must not start over).
    /// `false` (and degraded) if any step failed.
    fn roll(&mut self, now: Instant) -> bool {
        let sync = self.opts.fsync != FsyncPolicy::Never;
        if sync && self.unsynced {
            if let Err(e) = self.fs.sync_data(&mut self.file) {
                self.degrade("fdatasync", e, now);
                return false;
            }
            self.unsynced = false;
            self.last_sync = now;
        }
        let id = self.active.saturating_add(1);
        let path = self.opts.dir.join(segment_name(id));
        let file = match self.fs.create(&path) {
            Ok(file) => file,
            Err(e) => {
                self.degrade("create", e, now);
                return false;
            }
        };
        self.file = file;
        self.active = id;
        self.segments.insert(
            id,
            Segment {
                path,
                bytes: 0,
                marks_bytes: 0,
                newest_ts_ms: None,
            },
        );
        if sync && let Err(e) = self.fs.sync_dir(&self.opts.dir) {
            self.degrade("fsync directory", e, now);
            return false;
        }
        self.write_seq_marks(now)
    }

    /// Writes the seq marks at the start of the (new, empty) open segment.
    fn write_seq_marks(&mut self, now: Instant) -> bool {
        let mut marks = Vec::new();
        for (room, seq) in self.index.last_seqs() {
            // A room name too long for a line was never stored either.
            let _ = record::encode_seq_mark(room, seq, &mut marks);
        }
        if marks.is_empty() {
            return true;
        }
        if let Err(e) = self.fs.write_all(&mut self.file, &marks) {
            self.degrade("write", e, now);
            return false;
        }
        if self.opts.fsync != FsyncPolicy::Never
            && let Err(e) = self.fs.sync_data(&mut self.file)
        {
            self.degrade("fdatasync", e, now);
            return false;
        }
        let len = marks.len() as u64;
        if let Some(seg) = self.segments.get_mut(&self.active) {
            seg.bytes += len;
            seg.marks_bytes = seg.bytes;
        }
        self.total_bytes += len;
        true
    }

    /// Enters (or stays in) the degraded state; logs only on entry.
    fn degrade(&mut self, op: &str, e: io::Error, now: Instant) {
        let path = self
            .segments
            .get(&self.active)
            .map_or_else(|| self.opts.dir.clone(), |s| s.path.clone());
        let reason = format!("{op} {}: {e}", path.display());
        if self.degraded.is_none() {
            error!(
                "history store degraded: {reason}; room history is not stored until \
                 the disk recovers (retried every {} s)",
                RESUME_INTERVAL.as_secs()
            );
        }
        let dropped = self.pending_records.len();
        self.dropped_total += dropped as u64;
        self.pending.clear();
        self.pending_records.clear();
        self.degraded = Some(Degraded {
            reason,
            retry_at: now.checked_add(RESUME_INTERVAL).unwrap_or(now),
        });
    }

    /// While degraded and the retry is due: cuts the newest segment back to
    /// its last good length (dropping a partly written turn) and syncs it and
    /// the directory.
    /// `true` when the store is healthy again (or was).
    fn try_resume(&mut self, now: Instant) -> bool {
        let Some(d) = &mut self.degraded else {
            return true;
        };
        if now < d.retry_at {
            return false;
        }
        let len = self.segments.get(&self.active).map_or(0, |s| s.bytes);
        // The directory too: the failure may have been the roll's.
        let result = self
            .fs
            .truncate(&mut self.file, len)
            .and_then(|()| self.fs.sync_data(&mut self.file))
            .and_then(|()| self.fs.sync_dir(&self.opts.dir));
        match result {
            Ok(()) => {
                info!("history store: writing again (was: {})", d.reason);
                self.degraded = None;
                self.unsynced = false;
                self.last_sync = now;
                true
            }
            Err(e) => {
                d.retry_at = now.checked_add(RESUME_INTERVAL).unwrap_or(now);
                log::debug!("history store: retry failed: {e}");
                false
            }
        }
    }

    /// Deletes whole segments, oldest first, while the oldest one's newest
    /// record is older than `retention` before `now_unix_ms`, or all segments
    /// together are over `max_total_bytes`. The open segment is never deleted
    /// for size; for age it is rolled first (not while degraded or with
    /// records waiting for [`Store::flush_turn`]). Call it now and then (e.g.
    /// once a minute), after `flush_turn`.
    ///
    /// A deletion that fails is logged and stops the sweep (so segments always
    /// go oldest first); the next call tries again. A roll that fails degrades
    /// the store, as in `flush_turn`.
    pub fn expire(&mut self, now_unix_ms: u64, now: Instant) -> ExpireOutcome {
        let mut out = ExpireOutcome::default();
        let retention_ms = u64::try_from(self.opts.retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_unix_ms.saturating_sub(retention_ms);
        // Each pass deletes a segment, rolls once, or stops.
        for _ in 0..self.segments.len() + 2 {
            let Some((&id, seg)) = self.segments.first_key_value() else {
                break;
            };
            let too_old = match seg.newest_ts_ms {
                Some(ts) => ts < cutoff,
                None => id != self.active,
            };
            let too_big = self.total_bytes > self.opts.max_total_bytes;
            if !too_old && !too_big {
                break;
            }
            if id == self.active {
                let can_roll =
                    too_old && seg.bytes > 0 && self.pending.is_empty() && self.degraded.is_none();
                if can_roll && self.roll(now) {
                    continue;
                }
                break;
            }
            let (path, bytes) = (seg.path.clone(), seg.bytes);
            match self.fs.remove(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    warn!("history store: cannot delete {}: {e}", path.display());
                    out.failed = true;
                    break;
                }
                _ => {
                    self.segments.remove(&id);
                    self.index.drop_segment(id);
                    self.total_bytes = self.total_bytes.saturating_sub(bytes);
                    out.deleted_segments += 1;
                    out.deleted_bytes += bytes;
                }
            }
        }
        out
    }

    /// Up to `limit` (at most [`MAX_PAGE_RECORDS`]) records of `room` with
    /// `seq < before_seq`, oldest first: the newest ones below the bound.
    /// Only records already written by `flush_turn` are found; fewer than
    /// `limit` means the room has no older records on disk.
    ///
    /// Cost: from the newest segment holding older records backwards, one
    /// `pread` per segment of the range the [`Index`] gives (the wanted records
    /// plus up to two marks' worth more, and other rooms' records in between),
    /// decoded and filtered. `Err(Io)` if a segment cannot be read;
    /// `Err(Corrupt)` if the range no longer decodes (changed under us).
    pub fn read_before(
        &self,
        room: &str,
        before_seq: u64,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let limit = limit.min(MAX_PAGE_RECORDS);
        let mut newest_first: Vec<Record> = Vec::new();
        if limit == 0 {
            return Ok(newest_first);
        }
        for span in self.index.spans(room, before_seq, limit) {
            let need = limit.saturating_sub(newest_first.len());
            if need == 0 {
                break;
            }
            let Some(seg) = self.segments.get(&span.segment) else {
                continue;
            };
            let buf = read_range(&seg.path, span.start, span.end)?;
            let mut found = Vec::new();
            let end = record::scan(&buf, span.start, |_, _, entry| {
                if let Entry::Record(rec) = entry
                    && rec.room == room
                    && rec.seq < before_seq
                {
                    found.push(rec);
                }
            });
            if let ScanEnd::TornTail { offset, error } | ScanEnd::BadRecord { offset, error } = end
            {
                return Err(StoreError::Corrupt {
                    path: seg.path.clone(),
                    offset,
                    reason: error,
                });
            }
            newest_first.extend(found.into_iter().rev().take(need));
        }
        newest_first.reverse();
        Ok(newest_first)
    }
}

/// Segment ids in `dir`, ascending. Other files are ignored.
fn list_segments(dir: &Path) -> Result<Vec<u64>, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        if let Some(id) = entry.file_name().to_str().and_then(parse_segment_name) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Cuts the file at `path` to `len` bytes and syncs it (start-up only).
fn cut_file(path: &Path, len: u64) -> Result<(), StoreError> {
    let cut = || -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    };
    cut().map_err(|e| StoreError::io("truncate", path, e))
}

/// Opens the newest segment for appending, or creates the first one. (A full
/// newest segment is rolled by the first `flush_turn`, with its seq marks.)
/// Returns its id and file.
fn open_active<F: Fs>(
    fs: &mut F,
    opts: &StoreOptions,
    segments: &mut BTreeMap<u64, Segment>,
) -> Result<(u64, F::File), StoreError> {
    if let Some((&id, seg)) = segments.last_key_value() {
        let file = fs
            .open_append(&seg.path)
            .map_err(|e| StoreError::io("open", &seg.path, e))?;
        return Ok((id, file));
    }
    let id = 1;
    let path = opts.dir.join(segment_name(id));
    let file = fs
        .create(&path)
        .map_err(|e| StoreError::io("create", &path, e))?;
    fs.sync_dir(&opts.dir)
        .map_err(|e| StoreError::io("fsync", &opts.dir, e))?;
    segments.insert(
        id,
        Segment {
            path,
            bytes: 0,
            marks_bytes: 0,
            newest_ts_ms: None,
        },
    );
    Ok((id, file))
}

/// Reads `[start, end)` of the file at `path`.
fn read_range(path: &Path, start: u64, end: u64) -> Result<Vec<u8>, StoreError> {
    let len = usize::try_from(end.saturating_sub(start)).map_err(|_| {
        StoreError::io(
            "read",
            path,
            io::Error::new(io::ErrorKind::InvalidInput, "range too large"),
        )
    })?;
    let mut buf = vec![0u8; len];
    let file = File::open(path).map_err(|e| StoreError::io("open", path, e))?;
    file.read_exact_at(&mut buf, start)
        .map_err(|e| StoreError::io("read", path, e))?;
    Ok(buf)
}

#[cfg(test)]
#[path = "disk_tests.rs"]
mod tests;
