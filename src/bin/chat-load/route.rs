//! Where each load message goes, as pure arithmetic on (sender, seq), so the
//! receive path needs no per-message log.
//!
//! How it works: every sender numbers its messages 0, 1, 2, ... (one sequence
//! for broadcasts and private messages alike). With `--private P`, message `q`
//! of sender `s` is private when `floor((x+1)·P/100) > floor(x·P/100)` for
//! `x = q + s mod 100`: exactly P of every 100 consecutive messages, spread
//! evenly, and staggered between senders (so even short runs have some, and
//! they do not all come in the same turn). The k-th private message of sender
//! `s` goes to client `(s + 1 + k mod (C−1)) mod C` of the C staying clients:
//! round-robin over everyone but the sender.
//!
//! Receiver `r` gets from sender `s` every broadcast plus the private messages
//! addressed to `r`; the sender itself gets every message back (its broadcast,
//! or the server's `private_sent` confirmation). [`Route::reaching`] counts
//! those in any seq range in O(1), which gives both the exact expected totals
//! and the messages a receiver skipped when one arrives after a gap.
//!
//! Rooms (`--rooms N`): client `i` is in room `i mod N` (round-robin), and a
//! broadcast reaches only the clients of its sender's room (the sender
//! included); private messages are server-wide and route as above.

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pct: u64,
    clients: u64,
    /// Rooms the clients are spread over; 0 = no rooms (everyone hears every broadcast).
    rooms: u64,
}

impl Route {
    /// `pct` in 0..=100; with `pct > 0`, `clients` must be at least 2.
    pub fn new(pct: u32, clients: usize) -> Route {
        Route {
            pct: u64::from(pct.min(100)),
            clients: clients as u64,
            rooms: 0,
        }
    }

    /// The same route with the clients spread over `rooms` rooms (0 = none).
    pub fn with_rooms(self, rooms: usize) -> Route {
        Route {
            rooms: rooms as u64,
            ..self
        }
    }

    /// Client `i`'s room, `None` without rooms.
    #[inline]
    pub fn room(&self, i: usize) -> Option<usize> {
        (self.rooms > 0).then(|| (i as u64 % self.rooms) as usize)
    }

    /// Whether `r` hears `s`'s broadcasts.
    #[inline]
    pub fn same_room(&self, r: usize, s: usize) -> bool {
        self.room(r) == self.room(s)
    }

    /// Clients that hear sender `s`'s broadcasts (the sender included).
    pub fn audience(&self, s: usize) -> u64 {
        match self.room(s) {
            None => self.clients,
            Some(k) => {
                let k = k as u64;
                self.clients / self.rooms + u64::from(k < self.clients % self.rooms)
            }
        }
    }

    /// Private messages among seqs `0..q` of sender `s`.
    #[inline]
    pub fn privates_before(&self, s: usize, q: u64) -> u64 {
        let o = s as u64 % 100;
        (q + o) * self.pct / 100 - o * self.pct / 100
    }

    /// The target of sender `s`'s message `q`, `None` for a broadcast.
    #[inline]
    pub fn target(&self, s: usize, q: u64) -> Option<usize> {
        if self.pct == 0 || self.clients < 2 {
            return None;
        }
        let k = self.privates_before(s, q);
        if self.privates_before(s, q + 1) == k {
            return None;
        }
        let m = self.clients - 1;
        usize::try_from((s as u64 + 1 + k % m) % self.clients).ok()
    }

    /// How many of sender `s`'s seqs in `a..b` reach receiver `r`.
    #[inline]
    pub fn reaching(&self, r: usize, s: usize, a: u64, b: u64) -> u64 {
        if b <= a {
            return 0;
        }
        if r == s {
            return b - a;
        }
        if self.pct == 0 || self.clients < 2 {
            return if self.same_room(r, s) { b - a } else { 0 };
        }
        let (k0, k1) = (self.privates_before(s, a), self.privates_before(s, b));
        let broadcasts = if self.same_room(r, s) {
            (b - a) - (k1 - k0)
        } else {
            0
        };
        // Private k goes to r when k mod m == c.
        let m = self.clients - 1;
        let c = (r as u64 + self.clients - (s as u64 % self.clients) - 1) % self.clients;
        if c >= m {
            return broadcasts;
        }
        let upto = |x: u64| x / m + u64::from(x % m > c);
        broadcasts + upto(k1) - upto(k0)
    }

    /// Broadcasts among the first `n` messages of sender `s` (the rest are private).
    pub fn broadcasts(&self, s: usize, n: u64) -> u64 {
        if self.pct == 0 || self.clients < 2 {
            return n;
        }
        n - self.privates_before(s, n)
    }

    /// Deliveries expected for a sender that sent `n` messages, over all
    /// receivers: every client of the sender's room (everyone without rooms)
    /// gets the broadcasts; a private message reaches its target and comes
    /// back to the sender as a confirmation.
    pub fn expected(&self, s: usize, n: u64) -> u64 {
        let p = if self.clients < 2 {
            0
        } else {
            self.privates_before(s, n)
        };
        self.audience(s) * (n - p) + 2 * p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over the definitions.
    fn reaches(route: &Route, r: usize, s: usize, q: u64) -> bool {
        r == s
            || match route.target(s, q) {
                None => route.rooms == 0 || r % route.rooms as usize == s % route.rooms as usize,
                Some(t) => t == r,
            }
    }

    #[test]
    fn percentage_is_exact_and_targets_rotate() {
        let route = Route::new(20, 5);
        let privates: Vec<u64> = (0..100).filter(|&q| route.target(0, q).is_some()).collect();
        assert_eq!(privates.len(), 20);
        assert_eq!(&privates[..3], &[4, 9, 14]);
        // Sender 2 is offset by 2: its first private comes two seqs earlier.
        let privates: Vec<u64> = (0..100).filter(|&q| route.target(2, q).is_some()).collect();
        assert_eq!(privates.len(), 20);
        assert_eq!(&privates[..3], &[2, 7, 12]);
        for s in 0..250 {
            let n = (1000..1100)
                .filter(|&q| route.target(s, q).is_some())
                .count();
            assert_eq!(n, 20, "sender {s}");
        }
        let targets: Vec<usize> = privates
            .iter()
            .filter_map(|&q| route.target(2, q))
            .collect();
        assert_eq!(&targets[..5], &[3, 4, 0, 1, 3]);
        assert!(targets.iter().all(|&t| t != 2 && t < 5));
        assert_eq!(Route::new(0, 5).target(0, 4), None);
        assert!((0..50).all(|q| Route::new(100, 2).target(1, q) == Some(0)));
    }

    #[test]
    fn reaching_matches_brute_force() {
        for (pct, clients) in [
            (0, 3),
            (20, 2),
            (20, 7),
            (33, 4),
            (100, 3),
            (100, 1),
            (7, 130),
        ] {
            let route = Route::new(pct, clients);
            // Every pair for small runs; around the sender offset's wrap at 100 for the big one.
            let some: Vec<usize> = if clients <= 10 {
                (0..clients).collect()
            } else {
                vec![0, 1, 2, 98, 99, 100, 101, clients - 1]
            };
            for &s in &some {
                for &r in &some {
                    for a in 0..30 {
                        for b in a..60 {
                            let brute = (a..b).filter(|&q| reaches(&route, r, s, q)).count();
                            assert_eq!(
                                route.reaching(r, s, a, b),
                                brute as u64,
                                "pct {pct} clients {clients} r {r} s {s} {a}..{b}"
                            );
                        }
                    }
                }
                let broadcasts = (0..197).filter(|&q| route.target(s, q).is_none()).count();
                assert_eq!(route.broadcasts(s, 197), broadcasts as u64);
                let total: u64 = (0..clients).map(|r| route.reaching(r, s, 0, 197)).sum();
                let brute = (0..clients)
                    .map(|r| (0..197).filter(|&q| reaches(&route, r, s, q)).count() as u64)
                    .sum::<u64>();
                assert_eq!(total, brute, "pct {pct} clients {clients} s {s}");
                assert_eq!(total, route.expected(s, 197), "pct {pct} clients {clients}");
            }
        }
    }

    #[test]
    fn rooms_are_round_robin_and_broadcasts_stay_in_them() {
        let route = Route::new(0, 10).with_rooms(3);
        let rooms: Vec<Option<usize>> = (0..10).map(|i| route.room(i)).collect();
        let want: Vec<Option<usize>> = [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
            .into_iter()
            .map(Some)
            .collect();
        assert_eq!(rooms, want);
        // Room 0 has 4 clients, rooms 1 and 2 have 3.
        assert_eq!(
            (route.audience(0), route.audience(1), route.audience(5)),
            (4, 3, 3)
        );
        assert!(route.same_room(9, 3) && !route.same_room(1, 3));
        assert_eq!(route.reaching(3, 0, 0, 10), 10);
        assert_eq!(route.reaching(1, 0, 0, 10), 0, "another room hears nothing");
        assert_eq!(route.expected(0, 10), 40);
        assert_eq!(route.expected(2, 10), 30);
        // 100 rooms of 10 (the rooms-1k scenario).
        let route = Route::new(0, 1000).with_rooms(100);
        assert!((0..100).all(|s| route.audience(s) == 10));
        let total: u64 = (0..100).map(|s| route.expected(s, 100)).sum();
        assert_eq!(total, 100 * 100 * 10);
        assert_eq!(Route::new(0, 5).room(3), None);
        assert_eq!(Route::new(0, 5).audience(3), 5);
    }

    #[test]
    fn rooms_with_private_messages_match_brute_force() {
        for (pct, clients, rooms) in [(0, 7, 3), (20, 7, 3), (33, 9, 9), (100, 4, 2), (10, 6, 1)] {
            let route = Route::new(pct, clients).with_rooms(rooms);
            for s in 0..clients {
                for r in 0..clients {
                    for a in 0..20 {
                        for b in a..45 {
                            let brute = (a..b).filter(|&q| reaches(&route, r, s, q)).count();
                            assert_eq!(
                                route.reaching(r, s, a, b),
                                brute as u64,
                                "pct {pct} clients {clients} rooms {rooms} r {r} s {s} {a}..{b}"
                            );
                        }
                    }
                }
                let total: u64 = (0..clients).map(|r| route.reaching(r, s, 0, 133)).sum();
                assert_eq!(
                    total,
                    route.expected(s, 133),
                    "pct {pct} clients {clients} rooms {rooms} s {s}"
                );
            }
        }
    }
}
