//! Log-linear latency histogram: constant memory however many samples arrive.
//!
//! How it works: values below 32 get a bucket each; above, every power of two
//! is split into 32 equal buckets, so a bucket is at most 1/32 (about 3%) wide
//! relative to its value. Percentiles report the upper edge of their bucket,
//! clipped to the exact maximum.

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
const BUCKETS: usize = ((64 - SUB_BITS as usize) * SUB as usize) + SUB as usize;

pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max: u64,
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        (shift as usize) * SUB as usize + (v >> shift) as usize
    }

    /// Largest value that falls into bucket `i`.
    fn upper_edge(i: usize) -> u64 {
        let (shift, mantissa) = if i < 2 * SUB as usize {
            (0, i as u64)
        } else {
            let shift = (i / SUB as usize - 1) as u32;
            (shift, (i as u64) - u64::from(shift) * SUB)
        };
        let edge = (u128::from(mantissa) + 1) << shift;
        u64::try_from(edge - 1).unwrap_or(u64::MAX)
    }

    pub fn record(&mut self, v: u64) {
        if let Some(c) = self.counts.get_mut(Self::index(v)) {
            *c += 1;
        }
        self.total += 1;
        self.max = self.max.max(v);
    }

    /// Adds every sample of `other` (as if each had been recorded here).
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which `q` (0..=1) of the samples lie; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::upper_edge(i).min(self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_continuously() {
        let mut last = 0;
        for v in (0..5000u64).chain([u64::MAX / 3, u64::MAX]) {
            let i = Histogram::index(v);
            assert!(i >= last && i < BUCKETS, "v={v} i={i}");
            assert!(Histogram::upper_edge(i) >= v, "v={v}");
            last = i;
        }
    }

    #[test]
    fn merged_histograms_equal_one_with_every_sample() {
        let (mut a, mut b, mut both) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 1..=50_000u64 {
            let h = if v % 3 == 0 { &mut a } else { &mut b };
            h.record(v * 7);
            both.record(v * 7);
        }
        a.merge(&b);
        assert_eq!(a.count(), both.count());
        assert_eq!(a.max(), both.max());
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(a.quantile(q), both.quantile(q), "q={q}");
        }
        let empty = Histogram::new();
        a.merge(&empty);
        assert_eq!(a.count(), both.count());
    }

    #[test]
    fn quantiles_are_within_three_percent() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 50_000.0).abs() / 50_000.0 < 0.04, "p50={p50}");
        assert_eq!(h.quantile(1.0), 100_000);
        assert_eq!(h.count(), 100_000);
    }
}
