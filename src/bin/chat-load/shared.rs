//! What the generator threads of one run share (`--threads`): the run's
//! identity (its id, in every client name, and the clock every send and
//! receive time is taken against), each sender's count of messages sent, the
//! join gate, the end of sending, an abort flag, and the server's latest
//! `dropped_slow_clients` from `/stats` (`--slow-readers`). With one thread
//! the same structure is used, uncontended.
//!
//! How it works: a sender's count is raised (release) before its message is
//! queued, and a receiver on another thread reads it (acquire) after the
//! message arrived; the socket write and read in between (system calls on
//! one kernel socket) order the two, so the count read is never below that
//! message's seq. Each
//! thread passes the join gate ([`Shared::joined`]) once its own clients
//! have joined and sends only once all threads have: a message must never
//! be sent before every client is there to receive it.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

/// `dropped` before `/stats` first answered.
const UNKNOWN: u64 = u64::MAX;

pub struct Shared {
    pub threads: usize,
    /// Every time in the run is nanoseconds since this instant.
    pub base: Instant,
    /// In every client name, so runs never collide.
    pub run_id: u32,
    /// Seed for the threads' random masks (each thread mixes in its index).
    pub seed: u64,
    sent: Box<[AtomicU32]>,
    joined_parts: AtomicUsize,
    sending_parts: AtomicUsize,
    abort: AtomicBool,
    dropped: AtomicU64,
}

impl Shared {
    pub fn new(threads: usize, senders: usize) -> Shared {
        let base = Instant::now();
        let seed = u64::from(std::process::id()) << 32
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x9E37_79B9);
        Shared {
            threads: threads.max(1),
            base,
            run_id: (seed ^ (seed >> 29)) as u32 & 0xFFFF,
            seed,
            sent: (0..senders).map(|_| AtomicU32::new(0)).collect(),
            joined_parts: AtomicUsize::new(0),
            sending_parts: AtomicUsize::new(threads.max(1)),
            abort: AtomicBool::new(false),
            dropped: AtomicU64::new(UNKNOWN),
        }
    }

    /// Messages sender `s` has queued so far.
    #[inline]
    pub fn sent(&self, s: usize) -> u32 {
        self.sent.get(s).map_or(0, |a| a.load(Ordering::Acquire))
    }

    /// Counts one more message of sender `s` (before it is queued).
    #[inline]
    pub fn bump(&self, s: usize) {
        if let Some(a) = self.sent.get(s) {
            a.fetch_add(1, Ordering::Release);
        }
    }

    /// Every sender's count, in order.
    pub fn sent_all(&self) -> impl Iterator<Item = u32> + '_ {
        self.sent.iter().map(|a| a.load(Ordering::Acquire))
    }

    /// One thread's clients have all joined.
    pub fn joined(&self) {
        self.joined_parts.fetch_add(1, Ordering::AcqRel);
    }

    /// True once every thread's clients have joined.
    pub fn all_joined(&self) -> bool {
        self.joined_parts.load(Ordering::Acquire) >= self.threads
    }

    /// One thread sends no more.
    pub fn done_sending(&self) {
        self.sending_parts.fetch_sub(1, Ordering::AcqRel);
    }

    /// True once no thread sends any more (the counts are final).
    pub fn nobody_sending(&self) -> bool {
        self.sending_parts.load(Ordering::Acquire) == 0
    }

    /// Tells the other threads to give up (a thread failed or ended early).
    pub fn abort(&self) {
        self.abort.store(true, Ordering::Release);
    }

    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    /// The server's latest `dropped_slow_clients`, `None` before `/stats` answered.
    pub fn dropped(&self) -> Option<u64> {
        let v = self.dropped.load(Ordering::Acquire);
        (v != UNKNOWN).then_some(v)
    }

    pub fn set_dropped(&self, v: u64) {
        self.dropped.store(v.min(UNKNOWN - 1), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gate_and_dropped() {
        let s = Shared::new(2, 3);
        s.bump(1);
        s.bump(1);
        s.bump(7);
        assert_eq!(s.sent_all().collect::<Vec<_>>(), vec![0, 2, 0]);
        assert_eq!((s.sent(1), s.sent(9)), (2, 0));
        assert!(!s.all_joined());
        s.joined();
        assert!(!s.all_joined());
        s.joined();
        assert!(s.all_joined());
        assert!(!s.nobody_sending());
        s.done_sending();
        s.done_sending();
        assert!(s.nobody_sending());
        assert_eq!(s.dropped(), None);
        s.set_dropped(5);
        assert_eq!(s.dropped(), Some(5));
        assert!(!s.aborted());
        s.abort();
        assert!(s.aborted());
    }
}
