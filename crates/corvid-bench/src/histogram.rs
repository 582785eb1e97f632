//! A fixed-size log-linear latency histogram: recording never allocates, precision is about 1.6 %.
//!
//! Values below 128 get one bucket each; above, every power of two is split into 64 buckets. Percentiles are read
//! as the upper bound of the bucket they fall in (clamped to the exact maximum), so they never understate.

/// Values below this have a bucket each.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// Total buckets: 128 linear ones, then 64 for each shift from 1 to 57.
const BUCKETS: usize = (57 + 2) * SUB as usize;

/// A latency histogram of `u64` values (nanoseconds, by convention).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
    min: u64,
    sum: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(value: u64) -> usize {
    if value < LINEAR {
        return value as usize;
    }
    let exponent = 63 - value.leading_zeros() as u64;
    let shift = exponent - 6;
    (shift * SUB + (value >> shift)) as usize
}

/// The largest value that falls in bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let shift = i / SUB - 1;
    let mantissa = i - shift * SUB;
    let bound = (u128::from(mantissa + 1) << shift) - 1;
    u64::try_from(bound).unwrap_or(u64::MAX)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self { counts: vec![0; BUCKETS], total: 0, max: 0, min: u64::MAX, sum: 0 }
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.max = self.max.max(value);
        self.min = self.min.min(value);
        self.sum += u128::from(value);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
        self.min = self.min.min(other.min);
        self.sum += other.sum;
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest value recorded (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The mean (0 when empty).
    pub fn mean(&self) -> f64 {
        if self.total == 0 { 0.0 } else { self.sum as f64 / self.total as f64 }
    }

    /// The value at quantile `q` (0.0 to 1.0): the upper bound of its bucket, at most the maximum; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i).min(self.max).max(self.min);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_ordered() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 2, u64::MAX]) {
            let i = index(v);
            assert!(i >= last, "index not monotonic at {v}");
            assert!(upper_bound(i) >= v, "upper bound below value at {v}");
            assert!(i < BUCKETS);
            last = i;
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn precision_is_within_two_percent() {
        for v in [200u64, 1_000, 12_345, 1_000_000, 987_654_321] {
            let ub = upper_bound(index(v));
            assert!((ub - v) as f64 / v as f64 <= 0.02, "{v} -> {ub}");
        }
    }

    #[test]
    fn quantiles() {
        let mut h = Histogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.max(), 1_000_000);
        let p50 = h.quantile(0.5);
        assert!((500_000..=510_000).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((990_000..=1_000_000).contains(&p99), "{p99}");
        assert_eq!(h.quantile(1.0), 1_000_000);
        let mut other = Histogram::new();
        other.record(5);
        h.merge(&other);
        assert_eq!(h.quantile(0.0), 5);
        assert_eq!(Histogram::new().quantile(0.5), 0);
    }
}
