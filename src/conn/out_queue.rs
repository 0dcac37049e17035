//! Pending output of one connection, and the shared blocks broadcasts are
//! written into.
//!
//! # Memory: O(messages + recipients), not their product
//! Every message the hub delivers is encoded once per wire format and
//! appended to that format's [`SharedLog`]: an append-only sequence of
//! blocks of about [`BLOCK_BYTES`]. A recipient's queue holds [`Slice`]s,
//! ranges of a block, and a slice that starts where the queue's last one
//! ends, in the same block, extends it instead of adding an entry. A burst
//! of broadcasts to one room therefore costs each member ONE entry per
//! block (a few dozen bytes per 64 KiB of output), whatever the number of
//! messages, and the bytes once for everyone. (Redis's replication backlog
//! and Kafka's consumer offsets are the same idea: one log, a position per
//! reader.)
//!
//! The documented bound (checked by a property test): a queue takes
//! `ENTRY_BYTES` per entry, and its entries are at most `runs + blocks`,
//! where `runs` counts the runs of consecutive log messages that are all
//! for the queue's recipient (a message for someone else in between starts
//! a new run) and `blocks` the log blocks begun while its bytes were queued
//! (each boundary splits a run at most once). Blocks are freed
//! when the last slice into them is written, so a slow reader keeps at most
//! its output limit's worth of blocks alive, and the limit (a byte limit,
//! [`OutQueue::pending_bytes`]) bounds memory too.
//!
//! A flush hands the queued ranges to one `write_vectored`; a partial write
//! only moves an offset. An idle connection's queue holds no heap memory.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::rc::Rc;

/// Most ranges handed to one `writev` (Linux `IOV_MAX` is 1024).
const MAX_IOV: usize = 256;

/// Queues of at most this many ranges are written with small arrays.
const FEW: usize = 8;

/// A block is retired (no more appends) once it holds this many bytes.
pub const BLOCK_BYTES: usize = 64 * 1024;

/// What one queue entry takes.
pub const ENTRY_BYTES: usize = std::mem::size_of::<Piece>();

/// An append-only buffer of encoded messages shared by many queues. Bytes
/// once written never change; readers address them by index.
#[derive(Debug, Default)]
pub struct Block {
    bytes: RefCell<Vec<u8>>,
}

/// A range of a [`Block`]: one or more encoded messages, back to back.
#[derive(Debug, Clone)]
pub struct Slice {
    block: Rc<Block>,
    start: u32,
    end: u32,
}

impl Slice {
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// True when `next` starts where this slice ends, in the same block.
    pub fn end_is(&self, next: &Slice) -> bool {
        Rc::ptr_eq(&self.block, &next.block) && self.end == next.start
    }

    /// Takes `next` into this slice when it starts where this one ends, in
    /// the same block; false (nothing changed) otherwise.
    pub fn extend(&mut self, next: &Slice) -> bool {
        if Rc::ptr_eq(&self.block, &next.block) && self.end == next.start {
            self.end = next.end;
            true
        } else {
            false
        }
    }

    /// A copy of the bytes (tests and logs).
    pub fn to_vec(&self) -> Vec<u8> {
        let b = self.block.bytes.borrow();
        b.get(self.start as usize..self.end as usize)
            .unwrap_or_default()
            .to_vec()
    }

    /// A slice of bytes that belong to nobody else.
    pub fn from_bytes(bytes: &[u8]) -> Slice {
        let end = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let kept = bytes.get(..end as usize).unwrap_or_default();
        Slice {
            block: Rc::new(Block {
                bytes: RefCell::new(kept.to_vec()),
            }),
            start: 0,
            end,
        }
    }
}

/// One wire format's log of encoded messages. See the module docs.
#[derive(Debug, Default)]
pub struct SharedLog {
    current: Option<Rc<Block>>,
}

impl SharedLog {
    pub fn new() -> SharedLog {
        SharedLog::default()
    }

    /// Appends what `encode` writes (to the end of the given vector; it
    /// returns false to write nothing) and returns it as a slice; `None`
    /// when nothing was written.
    pub fn append(&mut self, encode: impl FnOnce(&mut Vec<u8>) -> bool) -> Option<Slice> {
        let block = match &self.current {
            Some(b) if b.bytes.try_borrow().is_ok_and(|v| v.len() < BLOCK_BYTES) => b.clone(),
            _ => {
                let b = Rc::new(Block {
                    bytes: RefCell::new(Vec::with_capacity(BLOCK_BYTES)),
                });
                self.current = Some(b.clone());
                b
            }
        };
        let (start, end) = {
            let Ok(mut v) = block.bytes.try_borrow_mut() else {
                return None;
            };
            let start = v.len();
            if !encode(&mut v) {
                v.truncate(start);
                return None;
            }
            (start, v.len())
        };
        let (Ok(start), Ok(end)) = (u32::try_from(start), u32::try_from(end)) else {
            // A block past 4 GiB: never with messages under the line limit.
            self.current = None;
            return None;
        };
        if start == end {
            return None;
        }
        Some(Slice { block, start, end })
    }

    /// Bytes in the block being appended to (for tests and stats).
    pub fn current_bytes(&self) -> usize {
        self.current.as_ref().map_or(0, |b| b.bytes.borrow().len())
    }
}

/// One queue entry: a range of a shared block, or of bytes queued whole
/// (a session's own reply, a static file shared by its readers).
#[derive(Debug)]
struct Piece {
    src: Src,
    start: u32,
    end: u32,
}

#[derive(Debug)]
enum Src {
    Block(Rc<Block>),
    Bytes(Rc<[u8]>),
}

/// Outcome of [`OutQueue::flush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    /// Everything was written.
    Done,
    /// The socket would block; bytes remain.
    Pending,
}

/// Ranges of shared blocks waiting to be written.
#[derive(Debug, Default)]
pub struct OutQueue {
    pieces: VecDeque<Piece>,
    /// Bytes still to write, over all entries.
    pending: usize,
}

impl OutQueue {
    /// An empty queue (no allocation).
    pub fn new() -> OutQueue {
        OutQueue::default()
    }

    /// Queues bytes whole (shared, not copied).
    pub fn push(&mut self, chunk: Rc<[u8]>) {
        let Ok(end) = u32::try_from(chunk.len()) else {
            // Over 4 GiB in one piece: in the queue as pieces of at most that.
            for part in chunk.chunks(u32::MAX as usize) {
                self.push(Rc::from(part));
            }
            return;
        };
        if end == 0 {
            return;
        }
        self.pending += chunk.len();
        self.pieces.push_back(Piece {
            src: Src::Bytes(chunk),
            start: 0,
            end,
        });
    }

    /// Queues a shared slice; one that continues the last entry extends it.
    pub fn push_slice(&mut self, s: &Slice) {
        if s.is_empty() {
            return;
        }
        self.pending += s.len();
        if let Some(last) = self.pieces.back_mut()
            && let Src::Block(b) = &last.src
            && Rc::ptr_eq(b, &s.block)
            && last.end == s.start
        {
            // No reference taken: the run only grows.
            last.end = s.end;
            return;
        }
        self.pieces.push_back(Piece {
            src: Src::Block(s.block.clone()),
            start: s.start,
            end: s.end,
        });
    }

    /// Bytes waiting to be written.
    pub fn pending_bytes(&self) -> usize {
        self.pending
    }

    /// Entries queued (each [`ENTRY_BYTES`]).
    pub fn entries(&self) -> usize {
        self.pieces.len()
    }

    /// True when nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.pending == 0
    }

    /// Drops everything queued (the connection is being torn down).
    pub fn clear(&mut self) {
        self.pieces = VecDeque::new();
        self.pending = 0;
    }

    /// Writes as much as the socket takes, coalescing ranges into vectored
    /// writes. Returns the bytes written with the outcome; `Interrupted` is
    /// retried, other errors are returned (the connection is dead).
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<(usize, Flush)> {
        let mut total = 0;
        while !self.pieces.is_empty() {
            // Small stack arrays for the common case (a few ranges): the
            // full-size ones cost a 8 KiB fill per flush, and an idle-10k
            // broadcast flushes 11,000 connections in one turn.
            let result = if self.pieces.len() <= FEW {
                self.write_some::<FEW, W>(w)
            } else {
                self.write_some::<MAX_IOV, W>(w)
            };
            match result {
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
        if self.pieces.capacity() > 64 {
            self.pieces = VecDeque::new();
        }
        Ok((total, Flush::Done))
    }

    /// One `write_vectored` of the first `N` ranges at most.
    fn write_some<const N: usize, W: Write>(&self, w: &mut W) -> io::Result<usize> {
        // Blocks are borrowed for the one write; nothing appends meanwhile.
        let mut held: [Option<std::cell::Ref<'_, Vec<u8>>>; N] = std::array::from_fn(|_| None);
        for (slot, p) in held.iter_mut().zip(self.pieces.iter()) {
            if let Src::Block(b) = &p.src {
                *slot = b.bytes.try_borrow().ok();
            }
        }
        let mut iov = [IoSlice::new(&[]); N];
        let mut n_iov = 0;
        for ((slot, p), held) in iov.iter_mut().zip(self.pieces.iter()).zip(held.iter()) {
            let bytes: &[u8] = match (&p.src, held) {
                (Src::Bytes(b), _) => b,
                (Src::Block(_), Some(v)) => v,
                // Borrowed elsewhere (never while a flush runs): stop here.
                (Src::Block(_), None) => break,
            };
            *slot = IoSlice::new(
                bytes
                    .get(p.start as usize..p.end as usize)
                    .unwrap_or_default(),
            );
            n_iov += 1;
        }
        match iov.get(..n_iov).unwrap_or(&[]) {
            // One range (the common case when idle clients get a broadcast):
            // a plain write(2) spares the kernel the iovec import.
            [one] => w.write(one),
            many => w.write_vectored(many),
        }
    }

    fn consume(&mut self, mut n: usize) {
        self.pending = self.pending.saturating_sub(n);
        while n > 0 {
            let Some(first) = self.pieces.front_mut() else {
                break;
            };
            let left = (first.end - first.start) as usize;
            if n >= left {
                n -= left;
                self.pieces.pop_front();
            } else {
                // n < left <= u32::MAX
                first.start += n as u32;
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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

    fn put(log: &mut SharedLog, s: &str) -> Slice {
        log.append(|v| {
            v.extend_from_slice(s.as_bytes());
            true
        })
        .expect("appended")
    }

    #[test]
    fn partial_writes_resume_at_the_right_byte() {
        let mut q = OutQueue::new();
        let mut log = SharedLog::new();
        let shared = put(&mut log, "hello ");
        q.push_slice(&shared.clone());
        q.push(chunk("world"));
        q.push_slice(&shared);
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
    fn consecutive_broadcasts_share_one_entry() {
        let mut log = SharedLog::new();
        let mut a = OutQueue::new();
        let mut b = OutQueue::new();
        for i in 0..1000 {
            let s = put(&mut log, &format!("line {i}\n"));
            a.push_slice(&s.clone());
            b.push_slice(&s);
        }
        assert_eq!(a.entries(), 1, "one block, one entry");
        assert_eq!(b.entries(), 1);
        // A message for someone else in between breaks the run.
        let _other = put(&mut log, "for c only\n");
        a.push_slice(&put(&mut log, "after\n"));
        assert_eq!(a.entries(), 2);
        let mut w = Trickle {
            out: Vec::new(),
            cap: usize::MAX / 2,
            calls: 10,
        };
        a.flush(&mut w).unwrap();
        assert!(w.out.ends_with(b"line 999\nafter\n"));
        assert!(!w.out.windows(10).any(|x| x == b"for c only"));
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
        let mut log = SharedLog::new();
        assert!(log.append(|_| true).is_none());
        assert!(
            log.append(|v| {
                v.push(b'x');
                false
            })
            .is_none()
        );
        assert_eq!(log.current_bytes(), 0, "a refused encoding leaves nothing");
    }

    #[test]
    fn blocks_are_freed_once_written() {
        let mut log = SharedLog::new();
        let mut q = OutQueue::new();
        let big = "y".repeat(1000);
        for _ in 0..200 {
            q.push_slice(&put(&mut log, &big));
        }
        let first = match &q.pieces.front().unwrap().src {
            Src::Block(b) => Rc::downgrade(b),
            Src::Bytes(_) => panic!("a block"),
        };
        let mut w = Trickle {
            out: Vec::new(),
            cap: usize::MAX / 2,
            calls: 100,
        };
        q.flush(&mut w).unwrap();
        assert!(
            first.upgrade().is_none(),
            "a retired block is gone once written"
        );
    }

    proptest! {
        /// The documented bound: entries <= runs + blocks spanned. Messages
        /// go to random subsets of 4 queues; each queue's bytes come out in
        /// order, exactly.
        #[test]
        fn queue_entries_stay_within_the_bound(
            msgs in proptest::collection::vec((1usize..3000, 0u8..16), 1..400)
        ) {
            let mut log = SharedLog::new();
            let mut qs: Vec<OutQueue> = (0..4).map(|_| OutQueue::new()).collect();
            let mut want: Vec<Vec<u8>> = vec![Vec::new(); 4];
            let mut runs = [0usize; 4];
            let mut skipped = [true; 4];
            for (i, (len, mask)) in msgs.iter().enumerate() {
                let body: Vec<u8> = std::iter::repeat_n(b'a' + (i % 26) as u8, *len).collect();
                let s = log.append(|v| { v.extend_from_slice(&body); true }).expect("slice");
                for q in 0..4 {
                    if mask & (1 << q) != 0 {
                        if skipped[q] {
                            runs[q] += 1;
                        }
                        skipped[q] = false;
                        qs[q].push_slice(&s.clone());
                        want[q].extend_from_slice(&body);
                    } else {
                        skipped[q] = true;
                    }
                }
            }
            // Every block boundary of the log can split one run of each queue.
            let total: usize = msgs.iter().map(|(len, _)| len).sum();
            let blocks = total / BLOCK_BYTES + 1;
            for q in 0..4 {
                prop_assert!(qs[q].entries() <= runs[q] + blocks,
                    "{} entries, {} runs, {} blocks", qs[q].entries(), runs[q], blocks);
                prop_assert_eq!(qs[q].pending_bytes(), want[q].len());
                let mut w = Trickle { out: Vec::new(), cap: 777, calls: usize::MAX };
                qs[q].flush(&mut w).expect("flush");
                prop_assert_eq!(&w.out, &want[q]);
            }
        }
    }
}
