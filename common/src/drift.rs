//! Clock drift between a sender and the output device, estimated on its own, and the
//! playout rate that follows it.
//!
//! # Why a separate estimator
//! The first adaptive playout took the drift from the integral term of its delay controller.
//! On real streams that term settled at −700 to −940 ppm between two processes on the same
//! clock (true drift 0): it integrated the controller's own start-up and jitter, and kept
//! the whole stream resampled. Drift is a property of two clocks, not of the buffer, so it
//! is measured from the clocks, in the spirit of zita-njbridge's DLL, and nothing else feeds
//! it.
//!
//! # What is measured
//! Two series, each reduced to its minimum per one-second window (queuing and scheduling
//! only ever *add* delay, so the minimum is the clean clock reading):
//! - **sender vs host**: transit = arrival instant − media time of the packet's RTP
//!   timestamp. A sender whose sample clock runs ε fast makes the transit fall by ε ns per ns.
//! - **device vs host**: the output callback's instant − the duration of the frames the
//!   device has played. A device that plays δ fast makes it fall by δ.
//!
//! A least-squares line through the last [`WINDOWS`] window minima gives each slope; windows
//! whose minimum lies far above the line (a second of congestion) are dropped and the line
//! refitted. The stream must be consumed at `(1 + ε) / (1 + δ)` stream samples per output
//! sample.
//!
//! Accuracy, from `common/tests/drift.rs` (seeded, virtual time): on one clock with 0–20 ms
//! uniform jitter and 5 % loss the estimate is within 20 ppm of 0 after 10 s; at ±100 and
//! ±1000 ppm it is within 20 ppm of the truth after 30 s and stays there for an hour.
//!
//! # The rate that follows it ([`DriftFollower`])
//! The rate is exactly 1 (the rate stage then copies, bit for bit) unless a correction is
//! needed: the estimate is beyond [`ENGAGE_PPM`], or, in fixed mode, the playout delay has
//! moved more than [`ENGAGE_DELAY_NS`] from where it started. Then the rate is
//! `1 + drift`, plus, in fixed mode, a slow pull of the delay back to its reference
//! (1/[`PULL_BACK_S`] of the error per second, at most ±[`MAX_PULL_PPM`]): a DLL whose
//! frequency term is the measured drift. It lets go (rate 1 again) below [`RELEASE_PPM`]
//! with the delay back within [`RELEASE_DELAY_NS`]. A change of a few hundred ppm is far
//! below what an ear hears as pitch (a cent is 578 ppm).

/// One-second windows kept for the fit: about a minute.
pub const WINDOWS: usize = 64;
const WINDOW_NS: i64 = 1_000_000_000;
/// Windows needed before a slope is reported.
const MIN_WINDOWS: usize = 5;
/// Drift beyond this engages the rate stage.
pub const ENGAGE_PPM: f64 = 20.0;
/// Drift below this (with the delay in place) releases it.
pub const RELEASE_PPM: f64 = 10.0;
/// Fixed mode: delay moved this far from its reference engages the rate stage.
pub const ENGAGE_DELAY_NS: i64 = 1_500_000;
pub const RELEASE_DELAY_NS: i64 = 300_000;
/// Fixed mode: the delay error is pulled back over this many seconds...
pub const PULL_BACK_S: f64 = 20.0;
/// ...at a rate offset of at most this.
pub const MAX_PULL_PPM: f64 = 200.0;
/// Largest drift believed: beyond any real pair of clocks (0.5 %).
pub const MAX_DRIFT: f64 = 0.005;

/// Slope of the per-window minimum of a value against time.
#[derive(Debug, Clone)]
struct MinSlope {
    window_start: Option<i64>,
    /// Minimum of the current window: (time, value).
    current: Option<(i64, i64)>,
    points: [(i64, i64); WINDOWS],
    len: usize,
    head: usize,
}

impl Default for MinSlope {
    fn default() -> Self {
        MinSlope {
            window_start: None,
            current: None,
            points: [(0, 0); WINDOWS],
            len: 0,
            head: 0,
        }
    }
}

impl MinSlope {
    /// Returns whether a window closed (the slope may have changed).
    fn observe(&mut self, t: i64, v: i64) -> bool {
        let start = *self.window_start.get_or_insert(t);
        if t < start {
            return false;
        }
        let mut closed = false;
        if t - start >= WINDOW_NS {
            closed = true;
            if let Some(p) = self.current.take() {
                self.points[self.head] = p;
                self.head = (self.head + 1) % WINDOWS;
                self.len = (self.len + 1).min(WINDOWS);
            }
            self.window_start = Some(t);
        }
        if self.current.is_none_or(|(_, m)| v < m) {
            self.current = Some((t, v));
        }
        closed
    }

    /// Least-squares slope (value per unit of time) through the window minima, refitted
    /// without the points far above the first line, and its standard error. `None` until
    /// enough windows.
    fn slope(&self) -> Option<(f64, f64)> {
        if self.len < MIN_WINDOWS {
            return None;
        }
        let first = (self.head + WINDOWS - self.len) % WINDOWS;
        let (t0, v0) = self.points[first];
        let pts = (0..self.len).map(|i| {
            let (t, v) = self.points[(first + i) % WINDOWS];
            ((t - t0) as f64 * 1e-9, (v - v0) as f64 * 1e-9)
        });
        let (a, b) = fit(pts.clone(), |_, _| true)?;
        // Residual scale: median of absolute residuals (robust to the outliers themselves).
        let mut res = [0f64; WINDOWS];
        for (i, (t, v)) in pts.clone().enumerate() {
            res[i] = (v - (a + b * t)).abs();
        }
        let r = &mut res[..self.len];
        r.sort_by(|x, y| x.total_cmp(y));
        let mad = r[self.len / 2].max(20e-6);
        let keep = |t: f64, v: f64| v - (a + b * t) <= 4.0 * mad;
        let (a, b) = fit(pts.clone(), keep).unwrap_or((a, b));
        // standard error of the slope from the kept points' residuals
        let (mut n, mut st, mut stt, mut rr) = (0f64, 0f64, 0f64, 0f64);
        for (t, v) in pts.filter(|&(t, v)| keep(t, v)) {
            n += 1.0;
            st += t;
            stt += t * t;
            rr += (v - (a + b * t)).powi(2);
        }
        let sxx = stt - st * st / n;
        let se = if n > 2.0 && sxx > 0.0 {
            (rr / (n - 2.0) / sxx).sqrt()
        } else {
            f64::INFINITY
        };
        Some((b, se))
    }
}

/// Least squares `v = a + b t` over the points `keep` accepts.
fn fit(pts: impl Iterator<Item = (f64, f64)>, keep: impl Fn(f64, f64) -> bool) -> Option<(f64, f64)> {
    let (mut n, mut st, mut sv, mut stt, mut stv) = (0f64, 0f64, 0f64, 0f64, 0f64);
    for (t, v) in pts.filter(|&(t, v)| keep(t, v)) {
        n += 1.0;
        st += t;
        sv += v;
        stt += t * t;
        stv += t * v;
    }
    let den = n * stt - st * st;
    if n < MIN_WINDOWS as f64 || den <= 1e-9 {
        return None;
    }
    let b = (n * stv - st * sv) / den;
    Some(((sv - b * st) / n, b))
}

/// Estimates the rate offset between a sender's sample clock and the output device's.
/// Allocation-free; time is an argument.
/// The fits run once per closed window (about once a second), not per call.
#[derive(Debug, Clone, Default)]
pub struct DriftEstimator {
    sender: MinSlope,
    device: MinSlope,
    sender_slope: Option<(f64, f64)>,
    device_slope: Option<(f64, f64)>,
}

impl DriftEstimator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forget everything (the sender restarted: a new clock).
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// A packet arrived at `arrival_ns` (host clock) carrying media time `media_ns`
    /// (its RTP timestamp in ns on the sender's clock, any constant offset).
    pub fn observe_packet(&mut self, arrival_ns: i64, media_ns: i64) {
        if self.sender.observe(arrival_ns, arrival_ns - media_ns) {
            self.sender_slope = self.sender.slope();
        }
    }

    /// The output device is about to play frame `out_frame` at `now_ns` (host clock; the
    /// callback's instant, which can only be late).
    pub fn observe_output(&mut self, now_ns: i64, out_frame: u64) {
        let played_ns = crate::time::frames_to_ns(out_frame as i64);
        if self.device.observe(now_ns, now_ns - played_ns) {
            self.device_slope = self.device.slope();
        }
    }

    /// Stream samples per output sample minus one (`(1 + ε)/(1 + δ) − 1`), once both
    /// clocks have been watched for a few seconds.
    pub fn drift(&self) -> Option<f64> {
        let sender = -self.sender_slope?.0;
        let device = -self.device_slope.map_or(0.0, |s| s.0);
        let d = (1.0 + sender) / (1.0 + device) - 1.0;
        d.is_finite().then_some(d.clamp(-MAX_DRIFT, MAX_DRIFT))
    }

    /// Slope of the fastest path's transit (ns per ns) that the sender's clock makes, once
    /// the fit is sure (standard error within [`ENGAGE_PPM`]; 0 when it does not stand out
    /// of that noise): carries the delay estimator's per-second minima forward to now.
    pub fn transit_slope(&self) -> Option<f64> {
        match self.sender_slope {
            Some((b, se)) if se <= ENGAGE_PPM * 1e-6 => Some(if b.abs() > 3.0 * se {
                b.clamp(-MAX_DRIFT, MAX_DRIFT)
            } else {
                0.0
            }),
            _ => None,
        }
    }

    /// The drift worth correcting: the estimate when the fit is sure (standard error within
    /// [`ENGAGE_PPM`]) and it stands out of that noise (beyond three standard errors), else
    /// 0. A change in the jitter's distribution moves the per-window minima and looks like
    /// a slope over a few windows (measured: −370 ppm a few seconds after 50 ms of jitter
    /// set in, on one clock); such a fit is not sure, and is not believed.
    pub fn correction(&self) -> Option<f64> {
        let d = self.drift()?;
        let se = self.sender_slope.map_or(0.0, |s| s.1) + self.device_slope.map_or(0.0, |s| s.1);
        Some(if se <= ENGAGE_PPM * 1e-6 && d.abs() > 3.0 * se {
            d
        } else {
            0.0
        })
    }
}

/// Turns the drift estimate (and, in fixed mode, the delay's deviation from its reference)
/// into the playout rate, with the hysteresis that keeps the rate exactly 1 when no
/// correction is needed.
#[derive(Debug, Clone, Copy, Default)]
pub struct DriftFollower {
    engaged: bool,
    rate: f64,
}

impl DriftFollower {
    pub fn new() -> Self {
        DriftFollower {
            engaged: false,
            rate: 1.0,
        }
    }

    /// Rate for the next block. `delay_error_ns`: fixed mode's delay minus its reference
    /// (`None` in adaptive mode, where time-scale modification holds the delay).
    pub fn update(&mut self, drift: Option<f64>, delay_error_ns: Option<i64>) -> f64 {
        let d = drift.unwrap_or(0.0);
        let e = delay_error_ns.unwrap_or(0);
        let ppm = d.abs() * 1e6;
        if !self.engaged && (ppm >= ENGAGE_PPM || e.abs() >= ENGAGE_DELAY_NS) {
            self.engaged = true;
        } else if self.engaged && ppm < RELEASE_PPM && e.abs() < RELEASE_DELAY_NS {
            self.engaged = false;
        }
        self.rate = if self.engaged {
            let pull = (e as f64 * 1e-9 / PULL_BACK_S).clamp(-MAX_PULL_PPM * 1e-6, MAX_PULL_PPM * 1e-6);
            1.0 + d + pull
        } else {
            1.0
        };
        self.rate
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    pub fn engaged(&self) -> bool {
        self.engaged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_minima_ignores_queuing_and_congested_windows() {
        let mut s = MinSlope::default();
        let mut seed = 3u64;
        for i in 0..6000i64 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let t = i * 10_000_000;
            // −300 ppm, 0–20 ms of queuing, and every 7th second congested by 30 ms
            let congested = (t / WINDOW_NS) % 7 == 3;
            let q = (seed % 20_000_000) as i64 + if congested { 30_000_000 } else { 0 };
            s.observe(t, 5_000_000 - t * 3 / 10_000 + q);
        }
        let (b, _) = s.slope().unwrap();
        assert!((b + 300e-6).abs() < 10e-6, "slope {b}");
    }

    #[test]
    fn follower_is_exactly_one_until_a_correction_is_needed() {
        let mut f = DriftFollower::new();
        assert_eq!(f.update(None, None), 1.0);
        assert_eq!(f.update(Some(5e-6), Some(200_000)), 1.0);
        let r = f.update(Some(100e-6), None);
        assert!((r - 1.0001).abs() < 1e-12);
        // released only when both are small again
        assert!(f.update(Some(5e-6), Some(1_000_000)) > 1.0);
        assert_eq!(f.update(Some(5e-6), Some(100_000)), 1.0);
        // fixed mode: a delay that moved engages it and is pulled back (delay too high:
        // consume faster)
        let r = f.update(Some(0.0), Some(2_000_000));
        assert!(r > 1.0 && r <= 1.0 + MAX_PULL_PPM * 1e-6, "{r}");
    }
}
