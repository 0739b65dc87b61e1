//! Adaptive playout delay: how much to buffer (the estimator) and how to get there without
//! an audible step (the controller).
//!
//! # What is measured
//! For every packet, its *transit* = arrival time − media time of its RTP timestamp (any
//! constant offset cancels). The fastest path is the minimum transit over a sliding window
//! (two one-second buckets, so it follows clock drift); each packet's *relative delay* is its
//! transit minus that minimum: 0 for the fastest packets, the jitter for the others.
//!
//! # The target (estimator)
//! Relative delays go into a histogram (0.5 ms buckets up to 1 s) with exponential
//! forgetting (time constant [`FORGET_TIME_CONSTANT_S`]); the target is its `quantile`
//! (1 − glitch budget, e.g. 0.99) plus one output period (a packet must be there at the
//! start of the callback that needs its first sample) plus a small margin, bounded by
//! `--latency-min` / `--latency-max`. Because only 1 − q of the mass must lie above the
//! quantile, the target *rises within a few packets* when jitter appears; it *falls only
//! as the old mass is forgotten* (≈ 4.6 time constants for q = 0.99), i.e. slowly, and
//! heavy-tailed spikes rarer than the glitch budget do not move it (they are the budget).
//! This is the shape of WebRTC NetEq's estimator (quantile of relative delay with
//! forgetting), not its code.
//!
//! # The delay (controlled variable)
//! At every output period the playout knows which RTP timestamp it is about to play, so
//! `delay = now − media time(that timestamp) − minimum transit`: how far the playout point
//! lags the fastest possible arrival of the same audio. A packet is on time iff its relative
//! delay ≤ delay − period.
//!
//! # One control loop (controller)
//! A PI controller turns `delay − target` into the playout *rate*: stream samples consumed
//! per output sample, applied by a resampler. The proportional part moves the delay to a
//! new target; the integral part converges on the constant rate offset between sender and
//! receiver clocks, so clock-drift correction is the same loop, not a second one fighting
//! the first. The rate is bounded: at most [`MAX_SPEEDUP`] faster (the delay falls at most
//! 5 ms per second) and [`MAX_SLOWDOWN`] slower (it rises at most 20 ms per second); both
//! are small pitch changes with no click and no dropped audio.

/// Forgetting time constant of the relative-delay histogram.
pub const FORGET_TIME_CONSTANT_S: f64 = 2.0;
/// Histogram resolution and range.
pub const BUCKET_NS: i64 = 500_000;
pub const BUCKETS: usize = 2000;
/// Rate bounds: consume up to 0.5 % more (delay falls ≤ 5 ms/s) or 2 % less (rises ≤ 20 ms/s).
pub const MAX_SPEEDUP: f64 = 0.005;
pub const MAX_SLOWDOWN: f64 = 0.02;
/// Bound of the integral (clock drift) term: ±0.5 %, far beyond any real pair of clocks.
pub const MAX_DRIFT: f64 = 0.005;

/// Estimates the target delay from packet arrivals. Allocation-free after `new`.
pub struct DelayEstimator {
    quantile: f64,
    histogram: Vec<f64>,
    /// Weight of the next sample; grows by 1/forget per second of media instead of decaying
    /// every bucket (renormalised when large).
    weight: f64,
    total: f64,
    min_current: Option<i64>,
    min_previous: Option<i64>,
    bucket_start_ns: Option<i64>,
    last_media_ns: Option<i64>,
    samples: u64,
    /// Highest bucket that ever received weight since the last reset: quantile queries scan
    /// down from here, a few buckets, not the whole histogram.
    top: usize,
}

impl DelayEstimator {
    pub fn new(quantile: f64) -> Self {
        DelayEstimator {
            quantile: quantile.clamp(0.5, 0.9999),
            histogram: crate::mem::resident_vec(BUCKETS, 0.0),
            weight: 1.0,
            total: 0.0,
            min_current: None,
            min_previous: None,
            bucket_start_ns: None,
            last_media_ns: None,
            samples: 0,
            top: 0,
        }
    }

    pub fn reset(&mut self) {
        self.histogram.iter_mut().for_each(|b| *b = 0.0);
        self.weight = 1.0;
        self.total = 0.0;
        self.min_current = None;
        self.min_previous = None;
        self.bucket_start_ns = None;
        self.last_media_ns = None;
        self.samples = 0;
        self.top = 0;
    }

    /// Minimum transit over the last one to two seconds.
    pub fn min_transit_ns(&self) -> Option<i64> {
        match (self.min_current, self.min_previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Account one packet: its arrival and the media time (ns) of its timestamp.
    /// Returns its relative delay in ns.
    pub fn observe(&mut self, arrival_ns: i64, media_ns: i64) -> i64 {
        let transit = arrival_ns - media_ns;
        // sliding-window minimum: two buckets of one second of arrival time
        let start = *self.bucket_start_ns.get_or_insert(arrival_ns);
        if arrival_ns - start >= 1_000_000_000 {
            self.min_previous = self.min_current.take();
            self.bucket_start_ns = Some(arrival_ns);
        }
        self.min_current = Some(self.min_current.map_or(transit, |m| m.min(transit)));
        let min = self.min_transit_ns().unwrap_or(transit);
        let relative = (transit - min).max(0);
        // forgetting by media time elapsed since the previous packet
        let dt = match self.last_media_ns {
            Some(last) if media_ns > last => (media_ns - last) as f64 * 1e-9,
            _ => 0.0,
        };
        self.last_media_ns = Some(self.last_media_ns.map_or(media_ns, |l| l.max(media_ns)));
        self.weight *= (dt / FORGET_TIME_CONSTANT_S).exp();
        if self.weight > 1e100 {
            self.histogram.iter_mut().for_each(|b| *b /= self.weight);
            self.total /= self.weight;
            self.weight = 1.0;
        }
        let bucket = ((relative / BUCKET_NS) as usize).min(BUCKETS - 1);
        self.histogram[bucket] += self.weight;
        self.top = self.top.max(bucket);
        self.total += self.weight;
        self.samples += 1;
        relative
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// The configured quantile of the relative delay, in ns (upper edge of its bucket).
    pub fn quantile_ns(&self) -> i64 {
        self.quantile_at(self.quantile)
    }

    /// Any quantile `q` in [0, 1] of the relative delay (1 = the largest seen, still weighted):
    /// the upper edge of the lowest bucket below which at least `q` of the mass lies. Scans
    /// down from the highest bucket used, so it costs the spread of the delays, not the
    /// histogram's size (it runs once per output period per stream).
    pub fn quantile_at(&self, q: f64) -> i64 {
        if self.total <= 0.0 {
            return 0;
        }
        // mass allowed above the answer
        let limit = (1.0 - q.clamp(0.0, 1.0)) * self.total + 1e-12 * self.total;
        let mut i = self.top;
        let mut above = 0.0;
        while i > 0 && above + self.histogram[i] <= limit {
            above += self.histogram[i];
            i -= 1;
        }
        (i as i64 + 1) * BUCKET_NS
    }
}

/// PI controller from delay error to playout rate. Allocation-free, no clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct RateController {
    integral: f64,
    smoothed_error_s: Option<f64>,
    rate: f64,
}

/// Proportional gain: 10 ms too much delay → 0.5 % faster.
const KP: f64 = 0.5;
/// Integral gain (per second): finds a 100 ppm clock offset in ~10 s.
const KI: f64 = 0.02;
/// Smoothing of the measured error against callback scheduling noise (time constant).
const ERROR_SMOOTHING_S: f64 = 0.1;

impl RateController {
    pub fn new() -> Self {
        RateController {
            integral: 0.0,
            smoothed_error_s: None,
            rate: 1.0,
        }
    }

    /// Current rate: stream samples consumed per output sample.
    pub fn rate(&self) -> f64 {
        if self.rate == 0.0 {
            1.0
        } else {
            self.rate
        }
    }

    /// The estimated clock offset (integral term), as a rate offset.
    pub fn drift(&self) -> f64 {
        self.integral
    }

    pub fn reset_error(&mut self) {
        self.smoothed_error_s = None;
    }

    /// Update with the measured delay error (delay − target, seconds) after `dt_s` seconds.
    pub fn update(&mut self, error_s: f64, dt_s: f64) -> f64 {
        let a = (dt_s / ERROR_SMOOTHING_S).min(1.0);
        let e = match self.smoothed_error_s {
            Some(s) => s + a * (error_s - s),
            None => error_s,
        };
        self.smoothed_error_s = Some(e);
        self.integral = (self.integral + KI * e * dt_s).clamp(-MAX_DRIFT, MAX_DRIFT);
        let correction = (KP * e + self.integral).clamp(-MAX_SLOWDOWN, MAX_SPEEDUP);
        self.rate = 1.0 + correction;
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packets every 10 ms; relative delay uniform-ish in [0, jitter).
    fn feed(est: &mut DelayEstimator, from_s: f64, to_s: f64, jitter_ms: f64, seed: &mut u64) {
        let mut t = from_s;
        while t < to_s {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let u = (*seed >> 11) as f64 / (1u64 << 53) as f64;
            let media = (t * 1e9) as i64;
            est.observe(media + 5_000_000 + (u * jitter_ms * 1e6) as i64, media);
            t += 0.01;
        }
    }

    #[test]
    fn quantile_follows_jitter_up_fast_and_down_slowly() {
        let mut e = DelayEstimator::new(0.99);
        let mut seed = 7u64;
        feed(&mut e, 0.0, 10.0, 0.2, &mut seed);
        assert!(e.quantile_ns() <= 1_000_000, "clean: {}", e.quantile_ns());
        // jitter of 20 ms appears: within 0.5 s the 0.99 quantile is near 20 ms
        feed(&mut e, 10.0, 10.5, 20.0, &mut seed);
        let q = e.quantile_ns();
        assert!(q > 15_000_000 && q <= 21_000_000, "after 0.5 s of jitter: {q}");
        feed(&mut e, 10.5, 40.0, 20.0, &mut seed);
        let q = e.quantile_ns();
        assert!((19_000_000..=21_000_000).contains(&q), "settled: {q}");
        // jitter stops: still high after 3 s, back down after 15 s
        feed(&mut e, 40.0, 43.0, 0.2, &mut seed);
        assert!(e.quantile_ns() > 10_000_000, "fell too fast: {}", e.quantile_ns());
        feed(&mut e, 43.0, 55.0, 0.2, &mut seed);
        assert!(
            e.quantile_ns() <= 1_000_000,
            "did not come down: {}",
            e.quantile_ns()
        );
    }

    /// The top-down scan answers exactly what the definition (lowest bucket whose cumulative
    /// mass from below reaches q) answers.
    #[test]
    fn quantile_scan_matches_the_definition() {
        let mut seed = 12345u64;
        let mut e = DelayEstimator::new(0.99);
        for i in 0..5000i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let jitter = ((seed >> 20) % 40_000_000) as i64 * if i % 50 == 0 { 5 } else { 1 };
            e.observe(i * 10_000_000 + jitter, i * 10_000_000);
            if i % 97 == 0 {
                for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
                    let want = q * e.total * (1.0 - 1e-12);
                    let mut acc = 0.0;
                    let reference = e
                        .histogram
                        .iter()
                        .position(|b| {
                            acc += b;
                            acc >= want
                        })
                        .map_or(BUCKETS as i64 * BUCKET_NS, |k| (k as i64 + 1) * BUCKET_NS);
                    let got = e.quantile_at(q);
                    // equal, or one bucket apart where float rounding of the two sums differs
                    assert!(
                        (got - reference).abs() <= BUCKET_NS,
                        "q {q}: {got} vs {reference}"
                    );
                }
            }
        }
    }

    #[test]
    fn rare_spikes_do_not_move_a_high_quantile() {
        let mut e = DelayEstimator::new(0.99);
        let mut seed = 9u64;
        let mut t = 0.0;
        let mut i = 0u64;
        while t < 60.0 {
            let media = (t * 1e9) as i64;
            let spike = if i.is_multiple_of(400) { 150_000_000 } else { 0 }; // 0.25 % of packets
            e.observe(media + 3_000_000 + spike, media);
            t += 0.01;
            i += 1;
        }
        let _ = &mut seed;
        assert!(e.quantile_ns() <= 1_000_000, "{}", e.quantile_ns());
    }

    #[test]
    fn minimum_transit_follows_drift() {
        let mut e = DelayEstimator::new(0.99);
        // sender clock 1000 ppm fast: transit shrinks by 1 ms per second
        for i in 0..1000i64 {
            let media = i * 10_000_000;
            let arrival = media - media / 1000 + 2_000_000;
            let rel = e.observe(arrival, media);
            assert!(rel <= 2_000_000, "relative delay grew with drift: {rel} at {i}");
        }
    }

    #[test]
    fn controller_converges_on_a_clock_offset_and_is_bounded() {
        // plant: delay changes by (rate - 1 - drift) per second of output
        let drift = 300e-6;
        let mut c = RateController::new();
        let mut delay = 0.030;
        let target = 0.020;
        for _ in 0..(120 * 375) {
            let dt = 128.0 / 48_000.0;
            let r = c.update(delay - target, dt);
            assert!((1.0 - MAX_SLOWDOWN..=1.0 + MAX_SPEEDUP).contains(&r));
            delay -= (r - 1.0 - drift) * dt;
        }
        assert!((delay - target).abs() < 0.0005, "delay {delay}");
        assert!((c.drift() - drift).abs() < 50e-6, "drift estimate {}", c.drift());
    }
}
