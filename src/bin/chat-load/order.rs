//! The same-order check: every receiver of a room must see that room's
//! broadcasts in one and the same total order, not merely each sender's
//! messages in that sender's order (which the per-sender check already
//! covers). Owns the per-receiver [`Fingerprint`] and the end-of-run
//! comparison, [`compare`].
//!
//! How it works: each staying client keeps one fingerprint, an
//! order-sensitive 64-bit fold of the `(sender, seq)` of every broadcast it
//! takes in for the first time, plus how many it folded. Nothing per message
//! is stored, and a delivery costs one multiply-xorshift round (two multiplies).
//!
//! Which messages count: only broadcasts (private messages and their
//! confirmations reach one client each and are never folded), and only those
//! sent once every receiver had joined. `chat-load` starts sending only after
//! its whole join phase, so that is every broadcast of the run; receivers that
//! joined at different times would otherwise start from different prefixes.
//!
//! Who is compared: within each room (one group without rooms), the receivers
//! still connected at the end whose count equals the broadcasts their room's
//! senders sent, i.e. those that got the full set. A receiver that missed
//! some, got some after a gap, or was dropped is left out: the other checks
//! already count those faults, and a partial fold says nothing about order.
//! The compared receivers of a room must all hold the same hash.

/// Start value of every fold, so that an empty fold is not zero.
const SEED: u64 = 0x6C6F_6164_6F72_6472;

/// The splitmix64 finalizer: a bijection on `u64` that spreads every input bit
/// over the whole word.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// What one receiver has seen so far: a fold of the `(sender, seq)` sequence and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    hash: u64,
    count: u64,
}

impl Default for Fingerprint {
    fn default() -> Fingerprint {
        Fingerprint::new()
    }
}

impl Fingerprint {
    /// The fingerprint of the empty sequence.
    pub const fn new() -> Fingerprint {
        Fingerprint {
            hash: SEED,
            count: 0,
        }
    }

    /// Appends message `seq` of `sender`. `h' = mix(h ^ key)` does not
    /// commute: after `a, b` the hash is `mix(mix(h ^ a) ^ b)`, after `b, a`
    /// it is `mix(mix(h ^ b) ^ a)`, equal only if `mix(h ^ a) ^ mix(h ^ b)`
    /// happens to be `a ^ b` (a 64-bit coincidence).
    #[inline]
    pub fn fold(&mut self, sender: u64, seq: u64) {
        let key = sender.rotate_left(32) ^ seq;
        self.hash = mix(self.hash ^ key);
        self.count += 1;
    }
}

/// The outcome of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verdict {
    /// Receivers compared: connected to the end and holding their room's full set.
    pub compared: usize,
    /// Receivers left out (incomplete or disconnected).
    pub left_out: usize,
    /// Most distinct orders within one room: 1 when all agree, 0 when nobody was compared.
    pub distinct: usize,
    /// Rooms (groups) whose compared receivers disagree.
    pub groups_differing: usize,
    /// Two receivers (client indexes) of one room that disagree, the first such pair found.
    pub example: Option<(usize, usize)>,
}

impl Verdict {
    /// True when no room has two compared receivers with different orders.
    pub fn same(&self) -> bool {
        self.groups_differing == 0
    }
}

/// Compares the fingerprints of receivers `0..fps.len()`: receiver `i` is in
/// group `group(i)`, is owed `owed(group(i))` broadcasts and is compared only
/// when `connected(i)` and it folded exactly that many.
pub fn compare(
    fps: &[Fingerprint],
    group: impl Fn(usize) -> usize,
    owed: impl Fn(usize) -> u64,
    connected: impl Fn(usize) -> bool,
) -> Verdict {
    let mut v = Verdict::default();
    // (group, hash, receiver) of every compared receiver, sorted so that each
    // group's distinct hashes are adjacent.
    let mut keys: Vec<(usize, u64, usize)> = Vec::new();
    for (i, fp) in fps.iter().enumerate() {
        let g = group(i);
        if connected(i) && fp.count == owed(g) {
            keys.push((g, fp.hash, i));
        } else {
            v.left_out += 1;
        }
    }
    v.compared = keys.len();
    keys.sort_unstable();
    let mut start = 0;
    while let Some(&(g, first_hash, first_i)) = keys.get(start) {
        let len = keys
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|k| k.0 == g)
            .count();
        let members = keys.get(start..start + len).unwrap_or_default();
        let mut distinct = 0;
        let mut last = None;
        for &(_, h, i) in members {
            if last != Some(h) {
                distinct += 1;
                last = Some(h);
                if h != first_hash {
                    v.example.get_or_insert((first_i.min(i), first_i.max(i)));
                }
            }
        }
        v.distinct = v.distinct.max(distinct);
        if distinct > 1 {
            v.groups_differing += 1;
        }
        start += len.max(1);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(seq: &[(u64, u64)]) -> Fingerprint {
        let mut fp = Fingerprint::new();
        for &(s, q) in seq {
            fp.fold(s, q);
        }
        fp
    }

    /// `(sender, seq)` of a run where `senders` senders interleave `n` messages each.
    fn interleaved(senders: u64, n: u64) -> Vec<(u64, u64)> {
        (0..n)
            .flat_map(|q| (0..senders).map(move |s| (s, q)))
            .collect()
    }

    #[test]
    fn same_sequence_same_fingerprint() {
        let seq = interleaved(3, 50);
        assert_eq!(of(&seq), of(&seq));
        assert_eq!(of(&seq).count, 150);
        assert_eq!(of(&[]), Fingerprint::new());
        assert_ne!(of(&[(0, 0)]), Fingerprint::new());
    }

    #[test]
    fn any_swap_of_two_messages_changes_the_fingerprint() {
        let seq = interleaved(4, 30);
        let base = of(&seq);
        for a in 0..seq.len() {
            for b in a + 1..seq.len() {
                let mut swapped = seq.clone();
                swapped.swap(a, b);
                let fp = of(&swapped);
                assert_eq!(fp.count, base.count);
                assert_ne!(fp, base, "swap of {a} and {b}");
            }
        }
        // Per-sender order kept, total order changed: (1,0) before (0,0).
        assert_ne!(of(&[(0, 0), (1, 0)]), of(&[(1, 0), (0, 0)]));
        // Sender and seq are not interchangeable.
        assert_ne!(of(&[(1, 2)]), of(&[(2, 1)]));
    }

    #[test]
    fn prefixes_fold_alike_and_only_full_sets_are_compared() {
        let seq = interleaved(2, 40);
        // A receiver that has only a prefix agrees with the others up to there.
        assert_eq!(of(&seq[..25]), of(&seq[..25]));
        assert_ne!(of(&seq[..25]), of(&seq));
        // Receivers 0-2 got the whole set; 3 only a prefix; 4 was dropped.
        let fps = vec![of(&seq), of(&seq), of(&seq), of(&seq[..79]), of(&seq)];
        let v = compare(&fps, |_| 0, |_| 80, |i| i != 4);
        assert_eq!((v.compared, v.left_out, v.distinct), (3, 2, 1));
        assert!(v.same());
        assert_eq!(v.example, None);
        // A prefix in another order is still left out, not counted as a difference.
        let mut other = seq[..79].to_vec();
        other.swap(0, 1);
        let fps = vec![of(&seq), of(&other)];
        assert!(compare(&fps, |_| 0, |_| 80, |_| true).same());
    }

    #[test]
    fn differences_are_counted_per_group() {
        let seq = interleaved(2, 10);
        let mut swapped = seq.clone();
        swapped.swap(4, 5);
        let room1: Vec<(u64, u64)> = (0..7).map(|q| (7, q)).collect();
        // Receivers 0, 2, 4 in group 0 (owed 20), receivers 1, 3 in group 1 (owed 7).
        let fps = vec![of(&seq), of(&room1), of(&swapped), of(&room1), of(&seq)];
        let group = |i: usize| i % 2;
        let owed = |g: usize| if g == 0 { 20 } else { 7 };
        let v = compare(&fps, group, owed, |_| true);
        assert!(!v.same());
        assert_eq!((v.compared, v.left_out), (5, 0));
        assert_eq!((v.distinct, v.groups_differing), (2, 1));
        assert_eq!(v.example, Some((0, 2)));
        // Different groups may well have different orders: they hear different messages.
        let fps = vec![of(&seq), of(&room1), of(&seq), of(&room1)];
        let v = compare(&fps, group, owed, |_| true);
        assert!(v.same());
        assert_eq!((v.compared, v.distinct), (4, 1));
        // Nobody compared: nothing differs.
        let v = compare(&fps, group, |_| 1000, |_| true);
        assert!(v.same());
        assert_eq!((v.compared, v.left_out, v.distinct), (0, 4, 0));
        // Three orders in one group.
        let mut third = seq.clone();
        third.swap(0, 1);
        let v = compare(
            &[of(&seq), of(&swapped), of(&third)],
            |_| 0,
            |_| 20,
            |_| true,
        );
        assert_eq!((v.distinct, v.groups_differing), (3, 1));
    }
}
