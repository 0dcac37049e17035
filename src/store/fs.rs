//! The file operations of the store's write path, behind a trait.
//!
//! Owns nothing but the seam: [`StdFs`] forwards to `std::fs`, and tests put
//! a file system there that fails on demand (a full disk or an I/O error
//! cannot be made reliably with permissions when tests run as root). Reading
//! at start-up and for paging uses `std::fs` directly: an error there is
//! returned to the caller, not turned into the degraded state.
//!
//! Knows nothing about records, segments or policies.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// The operations the store performs while running.
pub trait Fs {
    /// An open segment.
    type File;

    /// Creates a new, empty file for appending; `Err` if it already exists.
    fn create(&mut self, path: &Path) -> io::Result<Self::File>;

    /// Opens an existing file for appending at its end.
    fn open_append(&mut self, path: &Path) -> io::Result<Self::File>;

    /// Writes all of `bytes` at the end of `file` (retrying short writes and
    /// `Interrupted`); on `Err`, any prefix of `bytes` may have been written.
    fn write_all(&mut self, file: &mut Self::File, bytes: &[u8]) -> io::Result<()>;

    /// `fdatasync(2)`: the file's data (and the size) reach stable storage.
    fn sync_data(&mut self, file: &mut Self::File) -> io::Result<()>;

    /// Cuts `file` to `len` bytes.
    fn truncate(&mut self, file: &mut Self::File, len: u64) -> io::Result<()>;

    /// Deletes the file at `path`.
    fn remove(&mut self, path: &Path) -> io::Result<()>;

    /// `fsync(2)` on the directory, so created and removed names are durable.
    fn sync_dir(&mut self, dir: &Path) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs;

impl Fs for StdFs {
    type File = File;

    fn create(&mut self, path: &Path) -> io::Result<File> {
        OpenOptions::new().append(true).create_new(true).open(path)
    }

    fn open_append(&mut self, path: &Path) -> io::Result<File> {
        OpenOptions::new().append(true).open(path)
    }

    fn write_all(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        file.write_all(bytes)
    }

    fn sync_data(&mut self, file: &mut File) -> io::Result<()> {
        file.sync_data()
    }

    fn truncate(&mut self, file: &mut File, len: u64) -> io::Result<()> {
        // With O_APPEND, the next write still goes to the (new) end.
        file.set_len(len)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}
