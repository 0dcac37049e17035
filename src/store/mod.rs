//! Durable room history: room messages and topic changes appended to a
//! checksummed log in a data directory, replayed at start-up, paged back on
//! request, and expired by age and total size. Embedded: plain files, no
//! database server.
//!
//! Owns the on-disk format and the files under `--data-dir`. It must not know
//! about connections, sessions, wires or the hub's rules: the caller decides
//! what is stored (private messages are not), assigns each room's `seq`, keeps
//! the in-memory ring of recent records, and marks replays as `gap` while the
//! store is degraded. Time is always an argument (the loop's `Instant` for
//! syncs, Unix milliseconds for retention); the store reads no clock.
//!
//! - [`crc32`]: the hand-written CRC-32 (IEEE) behind every record.
//! - [`record`]: sans-I/O record codec (`CRC8HEX SP JSON LF`) and the segment
//!   scanner that tells a torn tail from a bad record in the middle.
//! - [`index`]: sans-I/O per-room index of where records sit on disk, sparse
//!   enough to keep in memory for the whole retention period.
//! - [`epoch`]: the data directory's `epoch` string (made once, kept in a file).
//! - [`fs`]: the few file operations of the write path behind a trait, so
//!   tests can inject a full disk or an I/O error.
//! - [`disk`]: [`Store`]: open/recover, append, group commit per loop turn,
//!   segment roll, retention, paging, degraded state.
//!
//! # On disk
//!
//! ```text
//! DIR/epoch                       hex string + LF, written once (tmp + rename)
//! DIR/00000000000000000001.log    segments, named by a counter, oldest first
//! DIR/00000000000000000002.log    the newest segment is the one appended to
//! ```
//!
//! Each segment is a sequence of lines, one record per line:
//! `crc32-of-json as 8 lowercase hex digits, one space, a JSON object, LF`,
//! e.g. `441fdcd1 {"r":"lobby","s":7,"t":1700000000000,"k":"m","f":"ann","x":"hi"}`.
//! Every segment after the first begins with a *seq mark* per room known
//! (`{"r":"lobby","s":7,"k":"s"}`): each room's last seq survives retention
//! deleting all of its records, so seqs never start over within an epoch.
//!
//! # Driving it from the loop, one turn
//!
//! ```text
//! dispatch events → hub effects → store.append(&record) for each room message/topic
//! fire timers
//! store.flush_turn(now)    one write of the turn's records; fdatasync per policy
//! deliver + flush sockets  (so with `always`, nothing is shown before it is durable)
//! poll timeout ≤ store.next_deadline()      (everysec sync, retry while degraded)
//! every minute or so: store.expire(unix_ms) (retention: whole segments)
//! ```

pub mod crc32;
pub mod disk;
pub mod epoch;
pub mod fs;
pub mod index;
pub mod record;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

pub use disk::{ExpireOutcome, FlushOutcome, OpenReport, Store, StoreStats, Truncation};
pub use record::RecordError;

/// One stored room event. `seq` is assigned by the caller: messages are
/// numbered 1, 2, 3... within a room, without gaps; a topic change carries
/// the seq of the room's latest message (so it may repeat it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Room name.
    pub room: String,
    /// Position in the room's history (see the type's docs).
    pub seq: u64,
    /// Wall-clock time of the event, milliseconds since the Unix epoch
    /// (what retention by age compares against).
    pub ts_ms: u64,
    /// What happened.
    pub kind: RecordKind,
}

/// What a [`Record`] says happened in its room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKind {
    /// A message said in the room.
    Message {
        /// Sender's name.
        from: String,
        /// Message text, as the hub accepted it.
        text: String,
    },
    /// The room's topic was set.
    Topic {
        /// Who set it.
        by: String,
        /// The new topic (may be empty: topic cleared).
        topic: String,
    },
}

/// When appended records are forced to stable storage (`--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Group commit: every loop turn that appended anything ends with one
    /// write and one `fdatasync`, before that turn's deliveries are flushed.
    Always,
    /// Written every turn, `fdatasync` at most once a second (the default).
    /// A power loss may lose the last second; a crashed process loses nothing
    /// that was written.
    EverySec,
    /// Written every turn, never synced by the store while running (only by
    /// [`Store::close`]): the kernel writes back when it likes. A crashed
    /// process loses nothing that was written; a power loss may lose more.
    Never,
}

impl FsyncPolicy {
    /// The flag spelling: `always`, `everysec` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::EverySec => "everysec",
            FsyncPolicy::Never => "never",
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = String;

    /// Parses `always`, `everysec` or `never` (exactly, lowercase); `Err`
    /// names the accepted values.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "everysec" => Ok(FsyncPolicy::EverySec),
            "never" => Ok(FsyncPolicy::Never),
            _ => Err(format!(
                "unknown fsync policy {s:?}: expected always, everysec or never"
            )),
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the store is configured with. Units are in the field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// The data directory (`--data-dir`); created if missing.
    pub dir: PathBuf,
    /// A segment is closed and a new one started after the turn whose write
    /// brings it to at least this size (so a segment exceeds it by less than
    /// one turn's records). `0` rolls after every write.
    pub segment_bytes: u64,
    /// Closed segments whose newest record is older than this are deleted
    /// whole; the open segment is rolled first when it is that old.
    pub retention: Duration,
    /// While all segments together are larger than this, the oldest closed
    /// segment is deleted (the open segment is never deleted for size).
    pub max_total_bytes: u64,
    /// When appended records are synced.
    pub fsync: FsyncPolicy,
    /// At start-up, truncate at a bad record in the middle of the log
    /// (dropping it, everything after it and every later segment) instead of
    /// refusing to start.
    pub repair: bool,
}

/// Default segment size: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
/// Default retention by age: 7 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default total size limit: 1 GiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 1 << 30;

impl StoreOptions {
    /// The defaults for data directory `dir`: 64 MiB segments, 7 days,
    /// 1 GiB in total, `everysec`, no repair.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            dir: dir.into(),
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention: DEFAULT_RETENTION,
            max_total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            fsync: FsyncPolicy::EverySec,
            repair: false,
        }
    }
}

/// Why the store could not open, read or repair its files.
#[derive(Debug)]
pub enum StoreError {
    /// An operation on `path` failed.
    Io {
        /// What was being done ("read", "truncate", "create", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's answer.
        error: io::Error,
    },
    /// A record that is not the torn tail of the log failed to decode.
    Corrupt {
        /// The segment holding it.
        path: PathBuf,
        /// Byte offset of the start of the bad line in that segment.
        offset: u64,
        /// What was wrong with it.
        reason: RecordError,
    },
    /// The `epoch` file exists but does not hold 1 to 64 lowercase hex digits.
    BadEpoch {
        /// The epoch file.
        path: PathBuf,
    },
}

impl StoreError {
    /// A [`StoreError::Io`]: `op` on `path` failed with `error`.
    pub fn io(op: &'static str, path: &Path, error: io::Error) -> Self {
        StoreError::Io {
            op,
            path: path.to_path_buf(),
            error,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io { op, path, error } => {
                write!(f, "history store: {op} {}: {error}", path.display())
            }
            StoreError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "history store: bad record in {} at byte {offset}: {reason} \
                 (start with repair to truncate the log there)",
                path.display()
            ),
            StoreError::BadEpoch { path } => write!(
                f,
                "history store: {} does not hold an epoch (1 to 64 lowercase hex digits)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io { error, .. } => Some(error),
            StoreError::Corrupt { reason, .. } => Some(reason),
            StoreError::BadEpoch { .. } => None,
        }
    }
}

/// Why [`Store::append`] did not take a record. None of these stops the chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendError {
    /// The store is degraded after an I/O error; the record is dropped (the
    /// caller marks it as a `gap` in replays).
    Degraded,
    /// The encoded line would be longer than [`record::MAX_LINE_BYTES`].
    TooLong {
        /// Encoded length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// `seq` is not greater than the room's last stored seq.
    SeqNotIncreasing {
        /// The room's last seq.
        last: u64,
        /// The refused seq.
        seq: u64,
    },
}

impl fmt::Display for AppendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AppendError::Degraded => f.write_str("history store is degraded; record dropped"),
            AppendError::TooLong { len, max } => {
                write!(f, "record of {len} bytes is over the {max}-byte limit")
            }
            AppendError::SeqNotIncreasing { last, seq } => {
                write!(f, "seq {seq} does not follow the room's last seq {last}")
            }
        }
    }
}

impl std::error::Error for AppendError {}

#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fsync_flag_values() {
        for p in [
            FsyncPolicy::Always,
            FsyncPolicy::EverySec,
            FsyncPolicy::Never,
        ] {
            assert_eq!(p.as_str().parse::<FsyncPolicy>(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert!("Always".parse::<FsyncPolicy>().is_err());
        assert!("".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn corruption_error_names_file_and_offset() {
        let e = StoreError::Corrupt {
            path: PathBuf::from("/data/00000000000000000003.log"),
            offset: 4096,
            reason: RecordError::ChecksumMismatch {
                stored: 1,
                computed: 2,
            },
        };
        let text = e.to_string();
        assert!(text.contains("/data/00000000000000000003.log"), "{text}");
        assert!(text.contains("byte 4096"), "{text}");
        assert!(text.contains("repair"), "{text}");
    }
}
