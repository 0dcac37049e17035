//! The data directory's epoch: a random-looking hex string made once, when
//! the directory is first used, and kept in `DIR/epoch`.
//!
//! Room seqs are only comparable within one epoch: a client that remembers
//! `(epoch, seq)` can tell a restarted server with the same history from one
//! whose data directory was replaced. Owns the file's format and the mixing of
//! a creation time and a process id into the string; the caller passes both
//! in (no clock reads here). Knows nothing about records or segments.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::StoreError;

/// Name of the epoch file inside the data directory.
pub const FILE_NAME: &str = "epoch";

/// Longest epoch accepted from the file, in hex digits.
pub const MAX_EPOCH_CHARS: usize = 64;

/// A fresh epoch: 16 lowercase hex digits mixed from `unix_nanos` and `pid`.
///
/// Not cryptographic; two directories made in the same nanosecond by the same
/// process id would get the same epoch.
pub fn generate(unix_nanos: u128, pid: u32) -> String {
    let time = (unix_nanos as u64) ^ ((unix_nanos >> 64) as u64);
    let mixed = splitmix64(time ^ splitmix64(u64::from(pid)));
    format!("{mixed:016x}")
}

/// SplitMix64's finaliser: every input bit affects every output bit.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Whether `s` is a valid epoch: 1 to [`MAX_EPOCH_CHARS`] lowercase hex digits.
pub fn is_valid(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_EPOCH_CHARS
        && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Reads `dir/epoch`, or, when there is none, writes `fresh` there (through a
/// temporary file, synced, renamed, directory synced) and returns it.
/// The `bool` is `true` when the epoch was created now.
///
/// `Err(BadEpoch)` when the file holds anything but a valid epoch and a
/// newline, or when `fresh` itself is not valid; `Err(Io)` when it cannot
/// be read or written.
pub fn load_or_create(dir: &Path, fresh: &str) -> Result<(String, bool), StoreError> {
    let path = dir.join(FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => {
            let text = std::str::from_utf8(&bytes).unwrap_or_default();
            let text = text.strip_suffix('\n').unwrap_or(text);
            if is_valid(text) {
                Ok((text.to_owned(), false))
            } else {
                Err(StoreError::BadEpoch { path })
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if !is_valid(fresh) {
                return Err(StoreError::BadEpoch { path });
            }
            let tmp = dir.join("epoch.tmp");
            let write = || -> io::Result<()> {
                let mut file = fs::File::create(&tmp)?;
                file.write_all(format!("{fresh}\n").as_bytes())?;
                file.sync_all()?;
                fs::rename(&tmp, &path)?;
                fs::File::open(dir)?.sync_all()
            };
            write().map_err(|e| StoreError::io("write", &path, e))?;
            Ok((fresh.to_owned(), true))
        }
        Err(e) => Err(StoreError::io("read", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testutil::TempDir;

    #[test]
    fn generates_sixteen_hex_digits_that_depend_on_both_inputs() {
        let a = generate(1_700_000_000_000_000_000, 42);
        assert_eq!(a.len(), 16);
        assert!(is_valid(&a));
        assert_ne!(a, generate(1_700_000_000_000_000_001, 42));
        assert_ne!(a, generate(1_700_000_000_000_000_000, 43));
        assert_eq!(a, generate(1_700_000_000_000_000_000, 42));
    }

    #[test]
    fn creates_once_then_keeps_the_first_epoch() {
        let dir = TempDir::new("epoch");
        assert_eq!(
            load_or_create(dir.path(), "abc123").unwrap(),
            ("abc123".to_owned(), true)
        );
        assert_eq!(
            load_or_create(dir.path(), "ffff").unwrap(),
            ("abc123".to_owned(), false)
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap(),
            "abc123\n"
        );
        assert!(!dir.path().join("epoch.tmp").exists());
    }

    #[test]
    fn refuses_a_damaged_epoch_file() {
        let dir = TempDir::new("epoch-bad");
        for bad in [
            &b""[..],
            b"\n",
            b"XYZ\n",
            b"ab cd\n",
            &[b'a'; 65],
            b"\xff\n",
        ] {
            std::fs::write(dir.path().join(FILE_NAME), bad).unwrap();
            assert!(matches!(
                load_or_create(dir.path(), "abc"),
                Err(StoreError::BadEpoch { .. })
            ));
        }
        std::fs::remove_file(dir.path().join(FILE_NAME)).unwrap();
        assert!(matches!(
            load_or_create(dir.path(), "not hex"),
            Err(StoreError::BadEpoch { .. })
        ));
    }
}
