//! Durations of the audio work (the callback's, the render's), in ns, for the stats'
//! percentiles: the last second exactly (every duration kept and sorted), the whole run in
//! a log histogram of constant size (1 % buckets), so a run of any length costs the same
//! memory and its summary's p50 / p99 are within 1 %.

/// Durations (ns) for percentiles: the last second exactly, the whole run in a histogram
/// of constant size.
pub struct Durations {
    window: Vec<u32>,
    run: LogHistogram,
    max: u32,
}

impl Durations {
    pub fn new() -> Self {
        Durations {
            window: Vec::with_capacity(1 << 12),
            run: LogHistogram::new(),
            max: 0,
        }
    }

    pub fn push(&mut self, ns: u32) {
        if self.window.len() < 1 << 16 {
            self.window.push(ns);
        }
        self.run.add(ns);
        self.max = self.max.max(ns);
    }

    /// p50, p99 and max (ns) over the last window (clearing it), or over the whole run
    /// (p50 and p99 then within 1 %, from the histogram).
    pub fn take(&mut self, whole_run: bool) -> (u32, u32, u32) {
        if whole_run {
            return (self.run.percentile(0.5), self.run.percentile(0.99), self.max);
        }
        self.window.sort_unstable();
        let r = (
            percentile(&self.window, 0.5),
            percentile(&self.window, 0.99),
            self.max,
        );
        self.window.clear();
        r
    }
}

/// Counts of durations in buckets 1 % wide from 1 µs to `u32::MAX` ns (about 1,530
/// buckets): a run of any length in constant memory, percentiles within 1 %.
struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
}

const HIST_MIN_NS: f64 = 1_000.0;
const HIST_STEP: f64 = 1.01;

impl LogHistogram {
    fn new() -> Self {
        let buckets = (u32::MAX as f64 / HIST_MIN_NS).ln() / HIST_STEP.ln();
        LogHistogram {
            counts: vec![0; buckets.ceil() as usize + 2],
            total: 0,
        }
    }

    /// Bucket `i` holds durations in (upper(i − 1), upper(i)]; bucket 0 everything ≤ 1 µs.
    fn bucket(&self, ns: u32) -> usize {
        let x = ns as f64;
        let i = if x <= HIST_MIN_NS {
            0
        } else {
            ((x / HIST_MIN_NS).ln() / HIST_STEP.ln()).ceil() as usize
        };
        i.min(self.counts.len() - 1)
    }

    fn upper(i: usize) -> u32 {
        (HIST_MIN_NS * HIST_STEP.powi(i as i32)).min(u32::MAX as f64) as u32
    }

    fn add(&mut self, ns: u32) {
        let i = self.bucket(ns);
        self.counts[i] += 1;
        self.total += 1;
    }

    /// The upper edge of the bucket holding the `p` quantile (0 when empty).
    fn percentile(&self, p: f64) -> u32 {
        if self.total == 0 {
            return 0;
        }
        // the same rank as `percentile` on a sorted vector
        let rank = ((self.total - 1) as f64 * p).round() as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Self::upper(i);
            }
        }
        u32::MAX
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-long histogram gives the same percentiles as sorting every duration, within
    /// its 1 % bucket width, for durations from sub-microsecond to seconds.
    #[test]
    fn run_histogram_percentiles_within_one_percent() {
        let mut h = LogHistogram::new();
        let mut all = vec![];
        let mut x = 0x9e37_79b9u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // log-uniform from ~500 ns to ~2 s
            let ns = (500.0 * (x as f64 / u32::MAX as f64 * 15.2).exp()) as u32;
            h.add(ns);
            all.push(ns);
        }
        all.sort_unstable();
        for p in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = percentile(&all, p) as f64;
            let approx = h.percentile(p) as f64;
            if exact <= HIST_MIN_NS {
                assert!(approx <= HIST_MIN_NS, "p{p}: {approx} vs {exact}");
            } else {
                assert!(
                    approx >= exact && approx <= exact * 1.0101,
                    "p{p}: {approx} vs exact {exact}"
                );
            }
        }
        assert_eq!(LogHistogram::new().percentile(0.5), 0);
        // the extremes land in the first and last buckets
        h.add(0);
        h.add(u32::MAX);
        assert_eq!(h.percentile(1.0), u32::MAX);
    }
}
