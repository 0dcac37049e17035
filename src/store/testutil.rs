//! Test helpers for the store: a scratch directory removed on drop, and a
//! file system that fails on demand.
//!
//! Owns nothing the server uses; compiled for tests only.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::fs::{Fs, StdFs};

/// A fresh directory under the system temp dir, removed (with its files) on drop.
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let base = std::env::var_os("MUC_STORE_TEST_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!("muc-store-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Which operations of a [`FaultFs`] fail next.
#[derive(Debug, Default)]
pub struct Faults {
    /// Writes fail with ENOSPC after writing this many bytes of the buffer
    /// (`Some(0)`: nothing written).
    pub write_after: Option<usize>,
    pub sync: bool,
    pub create: bool,
    pub remove: bool,
    pub truncate: bool,
    /// Counters, to check what the store did.
    pub syncs: usize,
    pub writes: usize,
}

/// [`StdFs`] with failures switched on and off through a shared [`Faults`].
#[derive(Clone, Default)]
pub struct FaultFs {
    pub faults: Rc<RefCell<Faults>>,
}

fn enospc() -> io::Error {
    io::Error::from_raw_os_error(libc::ENOSPC)
}

impl Fs for FaultFs {
    type File = std::fs::File;

    fn create(&mut self, path: &Path) -> io::Result<Self::File> {
        if self.faults.borrow().create {
            return Err(enospc());
        }
        StdFs.create(path)
    }

    fn open_append(&mut self, path: &Path) -> io::Result<Self::File> {
        StdFs.open_append(path)
    }

    fn write_all(&mut self, file: &mut Self::File, bytes: &[u8]) -> io::Result<()> {
        let cut = self.faults.borrow().write_after;
        self.faults.borrow_mut().writes += 1;
        match cut {
            Some(n) => {
                StdFs.write_all(file, &bytes[..n.min(bytes.len())])?;
                Err(enospc())
            }
            None => StdFs.write_all(file, bytes),
        }
    }

    fn sync_data(&mut self, file: &mut Self::File) -> io::Result<()> {
        if self.faults.borrow().sync {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.faults.borrow_mut().syncs += 1;
        StdFs.sync_data(file)
    }

    fn truncate(&mut self, file: &mut Self::File, len: u64) -> io::Result<()> {
        if self.faults.borrow().truncate {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        StdFs.truncate(file, len)
    }

    fn remove(&mut self, path: &Path) -> io::Result<()> {
        if self.faults.borrow().remove {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        StdFs.remove(path)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}
