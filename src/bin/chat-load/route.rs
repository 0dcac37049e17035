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

#[derive(Debug, Clone, Copy)]
pub struct Route {
    pct: u64,
    clients: u64,
}

impl Route {
    /// `pct` in 0..=100; with `pct > 0`, `clients` must be at least 2.
    pub fn new(pct: u32, clients: usize) -> Route {
        Route {
            pct: u64::from(pct.min(100)),
            clients: clients as u64,
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
        if r == s || self.pct == 0 || self.clients < 2 {
            return b - a;
        }
        let (k0, k1) = (self.privates_before(s, a), self.privates_before(s, b));
        let broadcasts = (b - a) - (k1 - k0);
        // Private k goes to r when k mod m == c.
        let m = self.clients - 1;
        let c = (r as u64 + self.clients - (s as u64 % self.clients) - 1) % self.clients;
        if c >= m {
            return broadcasts;
        }
        let upto = |x: u64| x / m + u64::from(x % m > c);
        broadcasts + upto(k1) - upto(k0)
    }

    /// Deliveries expected for a sender that sent `n` messages, over all
    /// receivers: every client gets the broadcasts; a private message reaches
    /// its target and comes back to the sender as a confirmation.
    pub fn expected(&self, s: usize, n: u64) -> u64 {
        let p = if self.clients < 2 {
            0
        } else {
            self.privates_before(s, n)
        };
        self.clients * (n - p) + 2 * p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brute force over the definitions.
    fn reaches(route: &Route, r: usize, s: usize, q: u64) -> bool {
        r == s || route.target(s, q).is_none_or(|t| t == r)
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
                let total: u64 = (0..clients).map(|r| route.reaching(r, s, 0, 197)).sum();
                let brute = (0..clients)
                    .map(|r| (0..197).filter(|&q| reaches(&route, r, s, q)).count() as u64)
                    .sum::<u64>();
                assert_eq!(total, brute, "pct {pct} clients {clients} s {s}");
                assert_eq!(total, route.expected(s, 197), "pct {pct} clients {clients}");
            }
        }
    }
}
