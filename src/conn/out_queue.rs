//! Pending output of one connection: a queue of shared, already-encoded chunks.
//!
//! A broadcast is encoded once and the same `Rc<[u8]>` is pushed to every
//! recipient; a flush hands as many chunks as fit to one `write_vectored`, and a
//! partial write only moves the offset into the first chunk, never the bytes.
//! An idle connection's queue holds no heap memory.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Most chunks handed to one `writev` (Linux `IOV_MAX` is 1024).
const MAX_IOV: usize = 256;

/// Outcome of [`OutQueue::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything was written.
    Done,
    /// The socket would block; bytes remain.
    Pending,
}

/// Shared encoded chunks waiting to be written.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Rc<[u8]>>,
    /// Bytes of the first chunk already written.
    offset: usize,
    /// Bytes still to write, over all chunks.
    pending: usize,
}

impl OutQueue {
    /// An empty queue (no allocation).
    pub fn new() -> OutQueue {
        OutQueue::default()
    }

    /// Queues a chunk (shared, not copied).
    pub fn push(&mut self, chunk: Rc<[u8]>) {
        if chunk.is_empty() {
            return;
        }
        self.pending += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Bytes waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Drops everything queued (the connection is being torn down).
    pub fn clear(&mut self) {
        self.chunks = VecDeque::new();
        self.offset = 0;
        self.pending = 0;
    }

    /// Writes as much as the socket takes, coalescing chunks into vectored writes.
    /// Returns the bytes written with the outcome; `Interrupted` is retried,
    /// other errors are returned (the connection is dead).
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<(usize, Flush)> {
        let mut total = 0;
        while !self.chunks.is_empty() {
            let mut iov = [IoSlice::new(&[]); MAX_IOV];
            let mut n_iov = 0;
            for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
                let bytes = if i == 0 {
                    chunk.get(self.offset..).unwrap_or(&[])
                } else {
                    chunk
                };
                if let Some(slot) = iov.get_mut(i) {
                    *slot = IoSlice::new(bytes);
                    n_iov = i + 1;
                }
            }
            let slices = iov.get(..n_iov).unwrap_or(&[]);
            match w.write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    total += n;
                    self.consume(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((total, Flush::Pending));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Release the ring buffer of a connection that went quiet after a burst.
        if self.chunks.capacity() > 64 {
            self.chunks = VecDeque::new();
        }
        Ok((total, Flush::Done))
    }

    fn consume(&mut self, mut n: usize) {
        self.pending = self.pending.saturating_sub(n);
        while n > 0 {
            let Some(first) = self.chunks.front() else {
                break;
            };
            let left = first.len() - self.offset;
            if n >= left {
                n -= left;
                self.offset = 0;
                self.chunks.pop_front();
            } else {
                self.offset += n;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer taking at most `cap` bytes per call, then blocking after `calls` calls.
    struct Trickle {
        out: Vec<u8>,
        cap: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.calls == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls -= 1;
            let mut n = 0;
            for b in bufs {
                let take = (self.cap - n).min(b.len());
                self.out.extend_from_slice(&b[..take]);
                n += take;
                if n == self.cap {
                    break;
                }
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn chunk(s: &str) -> Rc<[u8]> {
        Rc::from(s.as_bytes())
    }

    #[test]
    fn partial_writes_resume_at_the_right_byte() {
        let mut q = OutQueue::new();
        let shared = chunk("hello ");
        q.push(shared.clone());
        q.push(chunk("world"));
        q.push(shared);
        assert_eq!(q.pending_bytes(), 17);
        let mut w = Trickle {
            out: Vec::new(),
            cap: 4,
            calls: 2,
        };
        assert_eq!(q.flush(&mut w).unwrap(), (8, Flush::Pending));
        assert_eq!(q.pending_bytes(), 9);
        w.calls = 100;
        assert_eq!(q.flush(&mut w).unwrap(), (9, Flush::Done));
        assert_eq!(w.out, b"hello worldhello ");
        assert!(q.is_empty());
    }

    #[test]
    fn coalesces_many_chunks_into_few_writes() {
        let mut q = OutQueue::new();
        for _ in 0..1000 {
            q.push(chunk("x"));
        }
        let mut w = Trickle {
            out: Vec::new(),
            cap: usize::MAX / 2,
            calls: 4,
        };
        assert_eq!(q.flush(&mut w).unwrap(), (1000, Flush::Done));
        assert_eq!(w.calls, 0, "1000 chunks in 4 writev calls of 256");
    }

    #[test]
    fn ignores_empty_chunks() {
        let mut q = OutQueue::new();
        q.push(chunk(""));
        assert!(q.is_empty());
    }
}
