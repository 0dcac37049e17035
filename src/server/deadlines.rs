//! The deadline queue for server-level timers: the connection sweep, the
//! accept pause, the drain deadline, and later outbound-link reconnects and log
//! syncs. One queue replaces a field and a `min` per timer kind in the poll
//! timeout.
//!
//! How it works: deadlines sit in a `BTreeMap<(Instant, u64), K>`; the `u64` is
//! an insertion sequence, so equal instants come out in the order they were
//! scheduled and every entry has a unique key. A [`TimerId`] is that map key,
//! so cancelling is one `remove`, and an id whose deadline already fired or was
//! cancelled cancels nothing (sequences are never reused). [`Deadlines::set`]
//! keeps at most one deadline per key ("resume accepting at T", "sweep at T").
//!
//! It owns only instants and keys. It knows nothing of connections, sockets or
//! what a key means; it never reads the clock (time is always an argument).
//! Per-connection deadlines do not belong here: the queue is meant for a handful
//! of entries, which is why the per-key operations scan it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A server-level timer kind, the key the loop schedules in [`Deadlines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// The periodic sweep over every connection's deadlines.
    Sweep,
    /// Accepting resumes after a pause for want of descriptors.
    AcceptResume,
    /// A stop's drain ends: whatever is still open is cut.
    Drain,
    /// Outbound link `i` (see `server::link`): connect timeout or reconnect.
    Link(usize),
    /// The history store's next sync or retry.
    StoreSync,
    /// The history store's retention sweep.
    StoreExpire,
    /// The cluster node's next timer (name refresh, reply timeout, ping).
    Cluster,
}

/// One scheduled deadline, as returned by [`Deadlines::schedule`]; pass it to
/// [`Deadlines::cancel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId {
    at: Instant,
    seq: u64,
}

impl TimerId {
    /// When this deadline is (or was) due.
    pub fn at(&self) -> Instant {
        self.at
    }
}

/// Pending deadlines, earliest first; ties in scheduling order.
#[derive(Debug, Clone)]
pub struct Deadlines<K> {
    queue: BTreeMap<(Instant, u64), K>,
    next_seq: u64,
}

impl<K> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            queue: BTreeMap::new(),
            next_seq: 0,
        }
    }
}

impl<K: Copy + Eq> Deadlines<K> {
    /// An empty queue.
    pub fn new() -> Deadlines<K> {
        Deadlines::default()
    }

    /// Adds a deadline for `key` at `at`, beside any others `key` already has.
    pub fn schedule(&mut self, at: Instant, key: K) -> TimerId {
        let seq = self.next_seq;
        // 2^64 schedules do not happen; wrapping keeps this free of overflow panics.
        self.next_seq = self.next_seq.wrapping_add(1);
        self.queue.insert((at, seq), key);
        TimerId { at, seq }
    }

    /// Removes the deadline `id`. False when it already fired or was cancelled.
    pub fn cancel(&mut self, id: TimerId) -> bool {
        self.queue.remove(&(id.at, id.seq)).is_some()
    }

    /// Makes `at` the only pending deadline of `key`: every other deadline of
    /// `key` is cancelled first. Scans the queue.
    pub fn set(&mut self, key: K, at: Instant) -> TimerId {
        self.cancel_key(key);
        self.schedule(at, key)
    }

    /// Cancels every pending deadline of `key`; returns how many there were.
    /// Scans the queue.
    pub fn cancel_key(&mut self, key: K) -> usize {
        let before = self.queue.len();
        self.queue.retain(|_, k| *k != key);
        before - self.queue.len()
    }

    /// The earliest pending deadline of `key`, `None` when it has none. Scans
    /// the queue.
    pub fn deadline_of(&self, key: K) -> Option<Instant> {
        self.queue
            .iter()
            .find(|(_, k)| **k == key)
            .map(|((at, _), _)| *at)
    }

    /// The earliest pending deadline, `None` when the queue is empty.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.first_key_value().map(|((at, _), _)| *at)
    }

    /// Removes and returns the earliest deadline's key if it is due (at or
    /// before `now`); `None` when nothing is due. Call until `None` to fire
    /// everything due, earliest first, ties in scheduling order.
    pub fn pop_due(&mut self, now: Instant) -> Option<K> {
        let entry = self.queue.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        Some(entry.remove())
    }

    /// The poll timeout: time from `now` to the earliest deadline, zero when it
    /// is already due, `None` (wait for events only) when the queue is empty.
    pub fn timeout(&self, now: Instant) -> Option<Duration> {
        self.next_deadline()
            .map(|at| at.saturating_duration_since(now))
    }

    /// Number of pending deadlines.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when no deadline is pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn drain_due(q: &mut Deadlines<Timer>, now: Instant) -> Vec<Timer> {
        let mut out = Vec::new();
        // Bounded: every pop removes an entry.
        for _ in 0..=q.len() {
            match q.pop_due(now) {
                Some(k) => out.push(k),
                None => break,
            }
        }
        out
    }

    #[test]
    fn empty_queue_has_no_deadline_and_no_timeout() {
        let q: Deadlines<Timer> = Deadlines::new();
        let now = Instant::now();
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        assert_eq!(q.next_deadline(), None);
        assert_eq!(q.timeout(now), None);
    }

    #[test]
    fn pops_earliest_first_whatever_the_scheduling_order() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        q.schedule(t0 + ms(30), Timer::Drain);
        q.schedule(t0 + ms(10), Timer::Sweep);
        q.schedule(t0 + ms(20), Timer::Link(3));
        assert_eq!(q.next_deadline(), Some(t0 + ms(10)));
        assert_eq!(
            drain_due(&mut q, t0 + ms(30)),
            [Timer::Sweep, Timer::Link(3), Timer::Drain]
        );
        assert!(q.is_empty());
    }

    #[test]
    fn ties_fire_in_scheduling_order() {
        let at = Instant::now();
        let mut q = Deadlines::new();
        q.schedule(at, Timer::Link(2));
        q.schedule(at, Timer::Sweep);
        q.schedule(at, Timer::Link(1));
        q.schedule(at, Timer::AcceptResume);
        assert_eq!(
            drain_due(&mut q, at),
            [
                Timer::Link(2),
                Timer::Sweep,
                Timer::Link(1),
                Timer::AcceptResume
            ]
        );
    }

    #[test]
    fn pops_only_deadlines_that_are_due() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        q.schedule(t0 + ms(10), Timer::Sweep);
        q.schedule(t0 + ms(50), Timer::Drain);
        assert_eq!(q.pop_due(t0), None);
        assert_eq!(q.pop_due(t0 + ms(9)), None);
        // Due exactly at its instant.
        assert_eq!(q.pop_due(t0 + ms(10)), Some(Timer::Sweep));
        assert_eq!(q.pop_due(t0 + ms(49)), None);
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(t0 + ms(100)), Some(Timer::Drain));
        assert_eq!(q.pop_due(t0 + ms(100)), None);
    }

    #[test]
    fn cancel_removes_only_that_deadline_and_only_once() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        let a = q.schedule(t0 + ms(10), Timer::Link(0));
        let b = q.schedule(t0 + ms(10), Timer::Link(0));
        assert_eq!(a.at(), t0 + ms(10));
        assert_ne!(a, b);
        assert!(q.cancel(a));
        assert!(!q.cancel(a), "a second cancel finds nothing");
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop_due(t0 + ms(10)), Some(Timer::Link(0)));
        assert!(!q.cancel(b), "a fired deadline cannot be cancelled");
    }

    #[test]
    fn set_keeps_one_deadline_per_key() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        q.schedule(t0 + ms(5), Timer::AcceptResume);
        q.schedule(t0 + ms(7), Timer::AcceptResume);
        q.schedule(t0 + ms(6), Timer::Sweep);
        let id = q.set(Timer::AcceptResume, t0 + ms(40));
        assert_eq!(q.len(), 2);
        assert_eq!(q.deadline_of(Timer::AcceptResume), Some(t0 + ms(40)));
        // Moved earlier as well as later.
        q.set(Timer::AcceptResume, t0 + ms(1));
        assert!(!q.cancel(id), "the replaced deadline is gone");
        assert_eq!(q.len(), 2);
        assert_eq!(
            drain_due(&mut q, t0 + ms(100)),
            [Timer::AcceptResume, Timer::Sweep]
        );
    }

    #[test]
    fn set_does_not_touch_other_links() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        q.set(Timer::Link(1), t0 + ms(10));
        q.set(Timer::Link(2), t0 + ms(20));
        q.set(Timer::Link(1), t0 + ms(30));
        assert_eq!(q.deadline_of(Timer::Link(1)), Some(t0 + ms(30)));
        assert_eq!(q.deadline_of(Timer::Link(2)), Some(t0 + ms(20)));
        assert_eq!(q.deadline_of(Timer::Drain), None);
    }

    #[test]
    fn cancel_key_removes_all_of_that_key() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        q.schedule(t0, Timer::Sweep);
        q.schedule(t0 + ms(1), Timer::Sweep);
        q.schedule(t0 + ms(2), Timer::Drain);
        assert_eq!(q.cancel_key(Timer::Sweep), 2);
        assert_eq!(q.cancel_key(Timer::Sweep), 0);
        assert_eq!(q.next_deadline(), Some(t0 + ms(2)));
    }

    #[test]
    fn timeout_counts_down_and_saturates_at_zero() {
        let t0 = Instant::now();
        let mut q = Deadlines::new();
        q.schedule(t0 + ms(250), Timer::Sweep);
        q.schedule(t0 + ms(900), Timer::Drain);
        assert_eq!(q.timeout(t0), Some(ms(250)));
        assert_eq!(q.timeout(t0 + ms(100)), Some(ms(150)));
        assert_eq!(q.timeout(t0 + ms(250)), Some(Duration::ZERO));
        assert_eq!(q.timeout(t0 + ms(5000)), Some(Duration::ZERO));
    }
}
