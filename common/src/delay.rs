//! The delay policy, fixed and adaptive as one story: how much to buffer, and how the delay
//! is held or moved. (Clock drift is not here: [`crate::drift`] measures it on its own and
//! the rate stage follows it, in both modes.)
//!
//! # What is measured
//! For every packet, its *transit* = arrival time − media time of its RTP timestamp (any
//! constant offset cancels). The fastest path is the minimum transit over a sliding window
//! (two one-second buckets, so it follows clock drift); each packet's *relative delay* is its
//! transit minus that minimum: 0 for the fastest packets, the jitter for the others.
//! At every output period the playout knows which RTP timestamp it is about to play, so
//! `delay = now − media time(that timestamp) − minimum transit`: how far the playout point
//! lags the fastest possible arrival of the same audio. A packet is on time iff its relative
//! delay ≤ delay − period.
//!
//! # Fixed mode ([`DelayHold`])
//! The delay is set once, when the timeline starts, and never moved: no slip, no skip. Its
//! minimum per second is compared with the first settled second's; a deviation (clock drift
//! the estimate has not caught yet) is handed to the drift follower, which resamples by a
//! few ppm until it is gone. The first real-stream measurements found the old delay keeper
//! slipping 167–516 samples under stationary 0–20 ms jitter at every setting from 20 to
//! 200 ms; a minimum per second of the delay does not move with such jitter.
//!
//! # Adaptive mode: the target ([`DelayEstimator`])
//! Relative delays go into a histogram (0.5 ms buckets up to 1 s) with exponential
//! forgetting (time constant [`FORGET_TIME_CONSTANT_S`]); the target is its `quantile`
//! (1 − glitch budget, e.g. 0.99) plus one output period plus a small margin, bounded by
//! `--latency-min` / `--latency-max`. It *rises within a few packets* when jitter appears and
//! *falls as the old mass is forgotten* (≈ 10 s). This is the shape of WebRTC NetEq's
//! estimator (quantile of relative delay with forgetting), not its code.
//!
//! A quantile cannot see rare spikes: on a clean loopback, scheduling hiccups of the
//! sender or receiver process delay one packet in a thousand by 5–10 ms, below any
//! per-packet budget and audible every time (40 late packets in 10 minutes at the 0.99
//! quantile, measured), and every late packet is a concealed frame: at 1 % late, speech
//! loses about what 1 % loss costs it. So the estimator also keeps the largest relative
//! delay of every second of arrivals for [`PEAK_MEMORY_NS`] (two minutes), as a peak
//! detector: the target covers the largest of the last [`PEAK_SHORT_MEMORY_NS`] (10 s: a
//! spike is expected again soon), the second largest of the two minutes (a level reached
//! twice recurs), and the largest of the two minutes up to [`PEAK_HOLD_CAP_NS`] (40 ms)
//! above the quantile. The hiccups of a healthy network and host (5–30 ms on these
//! machines) are so held for two minutes even when they come alone, while a lone heavy
//! spike, or a burst after a stall, lifts the target for 10 s and no longer; a pattern of
//! heavy spikes keeps it up while it lasts. What a user can reason about: each new, larger
//! hiccup costs one glitch; a spike pattern costs one or two, not one per occurrence. A new stream is also held at its start-up delay for its first minute
//! (`playout/mod.rs`), so the first spikes of a healthy network find room too.

//! # Adaptive mode: moving the delay ([`StretchPolicy`])
//! The delay moves by removing or repeating whole pitch periods of the decoded audio
//! ([`crate::stretch`], [`crate::tsm`]), as NetEq's accelerate and preemptive expand do, not
//! by resampling at ±2 % (a pitch change of a third of a semitone that the first version
//! made audible on every tone). A stream starts *above* its target (see `playout.rs`) and
//! comes down by removals; it never plays slow to fill its buffer.

use crate::tsm::QUIET_ONLY;

/// Forgetting time constant of the relative-delay histogram.
pub const FORGET_TIME_CONSTANT_S: f64 = 2.0;
/// Histogram resolution and range.
pub const BUCKET_NS: i64 = 500_000;
pub const BUCKETS: usize = 2000;
/// The fastest path is the minimum transit over this many seconds. Over one to two seconds
/// (the first version) it moved by 5–10 ms from one second to the next under jitter20 (the
/// minimum of 50 packets with 20 ms of jitter), the measured delay with it, and each move
/// beyond the policy's band was a splice in the middle of speech.
pub const BASELINE_WINDOWS: usize = 10;
const BASELINE_WINDOW_NS: i64 = 1_000_000_000;
/// The largest relative delay of each second of arrivals is kept this long; the target
/// covers the second largest of them (a level reached twice)...
pub const PEAK_MEMORY_NS: i64 = 120_000_000_000;
/// ...and the largest of this recent stretch (a lone spike, expected again soon after)...
pub const PEAK_SHORT_MEMORY_NS: i64 = 10_000_000_000;
/// ...and the largest of the two minutes up to this far above the quantile: hiccups of a
/// healthy network and host (5–30 ms, measured) are held for two minutes even when they come
/// once, heavy spikes (outages) only when they recur.
pub const PEAK_HOLD_CAP_NS: i64 = 40_000_000;
const PEAK_WINDOW_NS: i64 = 1_000_000_000;
const PEAK_WINDOWS: usize = 120;

/// Estimates the target delay from packet arrivals. Allocation-free after `new`.
pub struct DelayEstimator {
    quantile: f64,
    histogram: Vec<f64>,
    /// Weight of the next sample; grows by 1/forget per second of media instead of decaying
    /// every bucket (renormalised when large).
    weight: f64,
    total: f64,
    /// The fastest path: minimum transit of each second of arrivals, (instant, minimum),
    /// for the last [`BASELINE_WINDOWS`] seconds, and of the second being filled.
    minima: [(i64, i64); BASELINE_WINDOWS],
    minima_next: usize,
    min_window: Option<(i64, i64, i64)>,
    baseline: Option<i64>,
    last_media_ns: Option<i64>,
    samples: u64,
    /// Highest bucket that ever received weight since the last reset: quantile queries scan
    /// down from here, a few buckets, not the whole histogram.
    top: usize,
    /// Largest relative delay per second of arrivals: (window start, maximum), and the
    /// window being filled.
    peaks: [(i64, i64); PEAK_WINDOWS],
    peak_next: usize,
    peak_window: Option<(i64, i64)>,
    /// The peak level the target covers (recomputed once a window closes).
    peak_level: i64,
}

impl DelayEstimator {
    pub fn new(quantile: f64) -> Self {
        DelayEstimator {
            quantile: quantile.clamp(0.5, 0.9999),
            histogram: crate::mem::resident_vec(BUCKETS, 0.0),
            weight: 1.0,
            total: 0.0,
            minima: [(0, i64::MAX); BASELINE_WINDOWS],
            minima_next: 0,
            min_window: None,
            baseline: None,
            last_media_ns: None,
            samples: 0,
            top: 0,
            peaks: [(i64::MIN, 0); PEAK_WINDOWS],
            peak_next: 0,
            peak_window: None,
            peak_level: 0,
        }
    }

    pub fn reset(&mut self) {
        self.histogram.iter_mut().for_each(|b| *b = 0.0);
        self.weight = 1.0;
        self.total = 0.0;
        self.minima = [(0, i64::MAX); BASELINE_WINDOWS];
        self.minima_next = 0;
        self.min_window = None;
        self.baseline = None;
        self.last_media_ns = None;
        self.samples = 0;
        self.top = 0;
        self.peaks = [(i64::MIN, 0); PEAK_WINDOWS];
        self.peak_next = 0;
        self.peak_window = None;
        self.peak_level = 0;
    }

    /// The fastest path's transit now: the minimum over the last [`BASELINE_WINDOWS`]
    /// seconds, each second's minimum carried forward along the sender's clock drift (over
    /// the last one to two seconds while the drift is not known yet: a sender 1000 ppm slow
    /// would otherwise leave the minimum 10 ms behind).
    pub fn min_transit_ns(&self) -> Option<i64> {
        self.baseline
    }

    /// Account one packet: its arrival and the media time (ns) of its timestamp, and the
    /// slope of the transit that clock drift makes (ns per ns; `None` while unknown).
    /// Returns its relative delay in ns.
    pub fn observe(&mut self, arrival_ns: i64, media_ns: i64, transit_slope: Option<f64>) -> i64 {
        let transit = arrival_ns - media_ns;
        // A packet that arrived before the window began (the arrival clock stepped back)
        // starts a new window, so that the window's minimum is never older than the window.
        let (start, t_min, min) = match self.min_window {
            Some((start, t, m)) if (0..BASELINE_WINDOW_NS).contains(&(arrival_ns - start)) => {
                if transit < m {
                    (start, arrival_ns, transit)
                } else {
                    (start, t, m)
                }
            }
            previous => {
                if let Some((_, t, m)) = previous {
                    self.minima[self.minima_next] = (t, m);
                    self.minima_next = (self.minima_next + 1) % BASELINE_WINDOWS;
                }
                (arrival_ns, arrival_ns, transit)
            }
        };
        self.min_window = Some((start, t_min, min));
        let carried = |(t, m): (i64, i64)| match transit_slope {
            _ if m == i64::MAX => i64::MAX,
            Some(slope) => m + ((arrival_ns - t) as f64 * slope) as i64,
            None if arrival_ns - t < 2 * BASELINE_WINDOW_NS => m,
            None => i64::MAX,
        };
        let base = self
            .minima
            .iter()
            .copied()
            .map(carried)
            .fold(carried((t_min, min)), i64::min);
        self.baseline = Some(base);
        let relative = (transit - base).max(0);
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
        self.note_peak(arrival_ns, relative);
        relative
    }

    fn note_peak(&mut self, arrival_ns: i64, relative: i64) {
        match self.peak_window {
            Some((start, max)) if arrival_ns - start < PEAK_WINDOW_NS => {
                self.peak_window = Some((start, max.max(relative)));
            }
            previous => {
                if let Some(done) = previous {
                    self.peaks[self.peak_next] = done;
                    self.peak_next = (self.peak_next + 1) % PEAK_WINDOWS;
                    self.update_peak_level(arrival_ns);
                }
                self.peak_window = Some((arrival_ns, relative));
            }
        }
    }

    /// The level the peaks call for at `now_ns`: the largest window maximum of the last
    /// [`PEAK_SHORT_MEMORY_NS`] (a spike is expected again soon after it), the second
    /// largest of the last [`PEAK_MEMORY_NS`] (a level reached twice recurs), and the largest
    /// of those up to [`PEAK_HOLD_CAP_NS`] above the quantile.
    fn update_peak_level(&mut self, now_ns: i64) {
        let (mut first, mut second, mut short) = (0i64, 0i64, 0i64);
        for &(t, m) in self.peaks.iter().filter(|&&(t, _)| t != i64::MIN) {
            let age = now_ns - t;
            if age < PEAK_SHORT_MEMORY_NS {
                short = short.max(m);
            }
            if age < PEAK_MEMORY_NS {
                if m > first {
                    second = first;
                    first = m;
                } else if m > second {
                    second = m;
                }
            }
        }
        let held = first.min(self.quantile_ns() + PEAK_HOLD_CAP_NS);
        self.peak_level = short.max(second).max(held);
    }

    /// The delay the target must cover: the quantile, the largest relative delay of the
    /// current second and of the last [`PEAK_SHORT_MEMORY_NS`], and any level reached
    /// twice in the last [`PEAK_MEMORY_NS`].
    pub fn target_ns(&self) -> i64 {
        let current = self.peak_window.map_or(0, |(_, m)| m);
        self.quantile_ns().max(self.peak_level).max(current)
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

/// Fixed mode: the delay's reference (the minimum over the first whole second after the
/// timeline started and the fastest path was known) and the deviation of each later
/// second's minimum from it. Jitter moves single readings, not the minimum per second;
/// clock drift moves the minimum. The deviation goes to [`crate::drift::DriftFollower`],
/// which corrects it by resampling at a few ppm: the timeline itself never slips.
#[derive(Debug, Clone, Copy, Default)]
pub struct DelayHold {
    window_min: Option<i64>,
    window_frames: u64,
    windows: u32,
    reference: Option<i64>,
    error: Option<i64>,
}

/// Windows skipped before the reference is taken (the minimum transit settles first).
const HOLD_SETTLE_WINDOWS: u32 = 2;
const HOLD_WINDOW_FRAMES: u64 = crate::time::SAMPLE_RATE as u64;

impl DelayHold {
    /// The delay measured at a pull of `frames`; returns the deviation of the last whole
    /// second's minimum from the reference, once there is one.
    pub fn observe(&mut self, delay_ns: i64, frames: u64) -> Option<i64> {
        self.window_min = Some(self.window_min.map_or(delay_ns, |m| m.min(delay_ns)));
        self.window_frames += frames;
        if self.window_frames >= HOLD_WINDOW_FRAMES {
            self.window_frames = 0;
            self.windows += 1;
            let min = self.window_min.take().unwrap_or(delay_ns);
            match self.reference {
                None if self.windows > HOLD_SETTLE_WINDOWS => self.reference = Some(min),
                Some(r) => self.error = Some(min - r),
                None => {}
            }
        }
        self.error
    }
}

/// Adaptive mode: when to remove or repeat pitch periods ([`crate::stretch`]) so the delay
/// follows the target. The measured delay is smoothed (50 ms) against callback scheduling
/// noise. Under the target by more than [`expand_below_ns`] (1 ms, or a twentieth of a
/// large target) a repetition is asked for, of up to the error plus [`EXPAND_SLACK_NS`] (a
/// whole pitch period may be longer than the error; more delay is safe). Over the target by
/// more than [`accelerate_above_ns`] (6 ms, or a tenth of a large target) a removal, of up
/// to the error less [`ACCELERATE_LEAVES_NS`]. The band between is wider than a
/// repetition's overshoot, so a repetition never calls for a removal: the first version's
/// band (3 ms) made the delay see-saw under jitter20, 41 splices in 20 s of speech for
/// PESQ-WB 3.36 where fixed at the same delay had 4.25 (BENCHMARKS.md §4). At most one
/// splice per [`SPLICE_COOLDOWN_NS`], and one removal in sound per
/// [`REMOVAL_IN_SOUND_SPACING_NS`].
///
/// *Where* a splice goes matters as much as how many: a time shift inside a word costs
/// PESQ-WB 0.25–0.45 even where the gap between two words is silent, one in a pause between
/// sentences nothing (see [`crate::stretch::PAUSE_FRAMES`]). So what is not urgent waits
/// for a pause ([`QUIET_ONLY`]): a removal for [`ACCELERATE_PAUSE_WAIT_S`] (then a
/// well-correlated place, insisting less the longer the error persists, down to a floor),
/// a repetition for as long as the delay still covers what the path calls for (its
/// quantile and peaks: what is missing is only a cushion, the caller says so: `covered`).
/// A delay short of the path's own needs repeats a period at once, wherever the audio is
/// periodic enough.
#[derive(Debug, Clone, Copy, Default)]
pub struct StretchPolicy {
    smoothed_ns: Option<f64>,
    last_ns: Option<i64>,
    /// No splice before this instant.
    cooldown_until_ns: Option<i64>,
    /// The last request was a removal in sound (not a pause).
    asked_removal_in_sound: bool,
    /// Since when the delay has been off target, and in which direction (accelerate).
    error_since: Option<(i64, bool)>,
    /// Since when it has been back in the band.
    in_band_since_ns: Option<i64>,
}

/// A removal leaves this much of the error (never overshoot downwards)...
pub const ACCELERATE_LEAVES_NS: i64 = 2_000_000;
/// ...and is asked for beyond this much over the target, or a tenth of the target if more.
pub fn accelerate_above_ns(target_ns: i64) -> i64 {
    (target_ns / 10).max(6_000_000)
}
/// A repetition is asked for beyond this much under the target (1 ms, or a twentieth of a
/// large target: the target covers the path's peaks, and under jitter20 the delay measured
/// against a moving fastest path wandered 1–3 ms under a 106 ms target, each time a
/// repetition in the middle of speech).
pub fn expand_below_ns(target_ns: i64) -> i64 {
    (target_ns / 20).max(1_000_000)
}
/// A removal waits this long for a pause ([`crate::stretch::PAUSE_FRAMES`]) before it
/// accepts a periodic place...
pub const ACCELERATE_PAUSE_WAIT_S: f32 = 5.0;
/// A wait starts again after this long back in the band.
const IN_BAND_RESET_NS: i64 = 1_000_000_000;
pub const SPLICE_COOLDOWN_NS: i64 = 20_000_000;
/// Removals in sound (after the wait for a pause) are spaced this far apart: the error that
/// built up while they waited came off in a burst of 10 splices within 0.2 s of a chirp
/// otherwise (a few milliseconds each: the lag that matched).
pub const REMOVAL_IN_SOUND_SPACING_NS: i64 = 250_000_000;
const DELAY_SMOOTHING_NS: f64 = 50e6;
/// A repetition is asked for the error plus this (and the slack).
pub const SPLICE_MARGIN_NS: i64 = 500_000;
/// The shortest splice [`crate::tsm::TimeStretch`] makes (120 frames).
const MIN_SPLICE_NS: i64 = 2_500_000;
/// A repetition may overshoot the target by this much to find a whole pitch period.
pub const EXPAND_SLACK_NS: i64 = 2_500_000;

impl StretchPolicy {
    pub fn new() -> Self {
        Self::default()
    }

    /// `Some((accelerate, at most ns, min quality))` when a splice is due. `covered`: the
    /// delay, though under the target, already covers the path's quantile and peaks (only
    /// a cushion is missing), so a repetition may wait for a pause.
    pub fn decide(
        &mut self,
        delay_ns: i64,
        target_ns: i64,
        now_ns: i64,
        covered: bool,
    ) -> Option<(bool, i64, f32)> {
        let dt = self.last_ns.map_or(0, |l| (now_ns - l).max(0));
        self.last_ns = Some(now_ns);
        let a = (dt as f64 / DELAY_SMOOTHING_NS).min(1.0);
        let d = match self.smoothed_ns {
            Some(s) => s + a * (delay_ns as f64 - s),
            None => delay_ns as f64,
        };
        self.smoothed_ns = Some(d);
        let error = d as i64 - target_ns;
        let due = if error > accelerate_above_ns(target_ns) {
            Some((true, error - ACCELERATE_LEAVES_NS))
        } else if error < -expand_below_ns(target_ns) {
            // a repetition is at least one 2.5 ms lag, and a whole pitch period may be
            // longer than the error: overshooting upwards is safe
            Some((
                false,
                (-error + SPLICE_MARGIN_NS).max(MIN_SPLICE_NS) + EXPAND_SLACK_NS,
            ))
        } else {
            None
        };
        let Some((accelerate, max_ns)) = due else {
            // a moment back in the band (jitter moves the smoothed delay in and out) does
            // not restart the wait; a second does
            let back = *self.in_band_since_ns.get_or_insert(now_ns);
            if now_ns - back >= IN_BAND_RESET_NS {
                self.error_since = None;
            }
            return None;
        };
        self.in_band_since_ns = None;
        let since = match self.error_since {
            Some((t, a)) if a == accelerate => t,
            _ => {
                self.error_since = Some((now_ns, accelerate));
                now_ns
            }
        };
        if self.cooldown_until_ns.is_some_and(|t| now_ns < t) {
            return None;
        }
        let waited_s = (now_ns - since) as f32 * 1e-9;
        let quality = if accelerate {
            // Removing audio is never urgent: first wait for a quiet passage (speech pauses
            // every few seconds), then for a place that repeats (a splice at a poor lag
            // slips the phase of a tone), and relax only when far above target.
            // (0.95: a tone's phase slips by at most 18° at the splice.)
            if waited_s < ACCELERATE_PAUSE_WAIT_S {
                self.asked_removal_in_sound = false;
                return Some((accelerate, max_ns, QUIET_ONLY));
            }
            let waited_s = waited_s - ACCELERATE_PAUSE_WAIT_S;
            let excess_ms = error as f32 * 1e-6;
            let floor = (0.95 - 0.02 * (excess_ms - 10.0)).clamp(0.5, 0.95);
            (0.97 - 0.02 * waited_s).max(floor)
        } else {
            // While the delay still covers the path's quantile and peaks (the start-up
            // cushion or the room for loss recovery is what is missing), the repetition
            // waits for a pause. Once it does not, it relaxes quickly from that moment: a
            // repetition at a poor place is heard too.
            if covered {
                self.error_since = Some((now_ns, false));
                self.asked_removal_in_sound = false;
                return Some((accelerate, max_ns, QUIET_ONLY));
            }
            (0.85 - 0.35 * waited_s).max(0.5)
        };
        self.asked_removal_in_sound = accelerate && quality < QUIET_ONLY;
        Some((accelerate, max_ns, quality))
    }

    /// A splice was made: the delay jumped by its length, so the smoothing starts again.
    pub fn spliced(&mut self, now_ns: i64) {
        self.smoothed_ns = None;
        let spacing = if self.asked_removal_in_sound {
            REMOVAL_IN_SOUND_SPACING_NS
        } else {
            SPLICE_COOLDOWN_NS
        };
        self.cooldown_until_ns = Some(now_ns + spacing);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `playout` fuzz target: an arrival before the current window began (a
    /// wall clock stepped back) became the window's minimum; a packet two windows after
    /// it found no minimum young enough, the baseline was `i64::MAX` and the relative
    /// delay overflowed (a panic in debug builds, a delay of ~292 years in release).
    #[test]
    fn arrivals_going_back_keep_a_finite_baseline() {
        const W: i64 = BASELINE_WINDOW_NS;
        let mut e = DelayEstimator::new(0.99);
        e.observe(10 * W, 0, None);
        e.observe(7 * W, 100 * W, None);
        let relative = e.observe(10 * W + 1, 50 * W, None);
        assert_eq!(relative, 0);
        assert_eq!(e.min_transit_ns(), Some(-40 * W + 1));
    }

    /// Packets every 10 ms; relative delay uniform-ish in [0, jitter).
    fn feed(est: &mut DelayEstimator, from_s: f64, to_s: f64, jitter_ms: f64, seed: &mut u64) {
        let mut t = from_s;
        while t < to_s {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            let u = (*seed >> 11) as f64 / (1u64 << 53) as f64;
            let media = (t * 1e9) as i64;
            est.observe(media + 5_000_000 + (u * jitter_ms * 1e6) as i64, media, Some(0.0));
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
            e.observe(i * 10_000_000 + jitter, i * 10_000_000, Some(0.0));
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
            e.observe(media + 3_000_000 + spike, media, Some(0.0));
            t += 0.01;
            i += 1;
        }
        let _ = &mut seed;
        assert!(e.quantile_ns() <= 1_000_000, "{}", e.quantile_ns());
    }

    /// A lone 100 ms spike lifts the target for about 10 s (then up to the 40 ms cap for two
    /// minutes); the same spike again within two minutes holds it up while they recur; a lone
    /// 20 ms hiccup is held for two minutes.
    #[test]
    fn peaks_lift_the_target_briefly_once_and_for_minutes_when_they_recur() {
        let mut e = DelayEstimator::new(0.99);
        let mut target_at = vec![];
        for i in 0..50_000i64 {
            let media = i * 10_000_000;
            let spike = match i {
                500 | 6000 | 9000 => 100_000_000,
                30_000 => 20_000_000,
                _ => 0,
            };
            e.observe(media + 1_000_000 + spike, media, Some(0.0));
            if i % 100 == 0 {
                target_at.push(e.target_ns());
            }
        }
        let at = |s: usize| target_at[s];
        assert!(at(4) < 2_000_000, "before: {}", at(4));
        assert!(at(8) >= 100_000_000, "right after the lone spike: {}", at(8));
        // after 10 s a lone heavy spike is held only up to the cap
        let capped = at(20);
        assert!((38_000_000..42_000_000).contains(&capped), "{capped}");
        // spikes at 60 s and 90 s: recurring, held whole until two minutes after the older
        // of the last two (60 s + 120 s), then capped until two minutes after the last
        assert!(at(65) >= 100_000_000 && at(95) >= 100_000_000 && at(175) >= 100_000_000);
        assert!(at(185) < 42_000_000, "{}", at(185));
        assert!(at(215) < 2_000_000, "held too long: {}", at(215));
        // a lone 20 ms hiccup (under the cap) is held for two minutes
        assert!(at(310) >= 20_000_000 && at(415) >= 20_000_000, "{}", at(415));
        assert!(at(425) < 2_000_000, "{}", at(425));
    }

    #[test]
    fn minimum_transit_follows_drift() {
        let mut e = DelayEstimator::new(0.99);
        // sender clock 1000 ppm fast: transit shrinks by 1 ms per second
        for i in 0..1000i64 {
            let media = i * 10_000_000;
            let arrival = media - media / 1000 + 2_000_000;
            let rel = e.observe(arrival, media, Some(0.0));
            assert!(rel <= 2_000_000, "relative delay grew with drift: {rel} at {i}");
        }
    }

    #[test]
    fn fastest_path_is_the_ten_second_minimum_carried_along_the_drift() {
        // per-second minima that move by up to 8 ms (jitter): the baseline stays at the
        // lowest of the last ten seconds, and a packet at it is 0 ms relative
        let mut e = DelayEstimator::new(0.99);
        let at = |i: i64, extra: i64| (i * 10_000_000 + 5_000_000 + extra, i * 10_000_000);
        for i in 0..2000i64 {
            let second = i / 100;
            let floor = if second % 4 == 0 { 0 } else { 8_000_000 };
            let (arrival, media) = at(i, floor + (i % 7) * 1_000_000);
            e.observe(arrival, media, Some(0.0));
            if i >= 1000 {
                assert_eq!(e.min_transit_ns(), Some(5_000_000), "packet {i}");
            }
        }
        // a sender 1000 ppm slow: the transit grows by 1 ms a second; carried along that
        // slope, the ten-second minimum stays within a millisecond of the path's floor now
        let mut e = DelayEstimator::new(0.99);
        for i in 0..3000i64 {
            let media = i * 10_000_000;
            let arrival = media + media / 1000 + 2_000_000;
            e.observe(arrival, media, Some(1e-3));
            let floor_now = arrival - media;
            let base = e.min_transit_ns().unwrap();
            assert!(
                (floor_now - base).abs() <= 1_000_000,
                "{base} vs {floor_now} at {i}"
            );
        }
        // while the drift is unknown, only the last one to two seconds count
        let mut e = DelayEstimator::new(0.99);
        for i in 0..3000i64 {
            let media = i * 10_000_000;
            e.observe(media + media / 1000 + 2_000_000, media, None);
        }
        let stale = 2_000_000 + 29_990_000 / 1000 * 1000 - e.min_transit_ns().unwrap();
        assert!((0..=2_100_000).contains(&stale), "{stale}");
    }

    #[test]
    fn removals_wait_for_a_pause_and_repetitions_while_every_packet_is_in_time() {
        let target = 40_000_000;
        let ms = 1_000_000i64;
        // 20 ms over the target: a pause only, for five seconds; then periodic places
        let mut p = StretchPolicy::new();
        let mut t = 0;
        while t < 5_000 * ms {
            let (acc, _, q) = p.decide(target + 20 * ms, target, t, true).unwrap();
            assert!(acc && q >= QUIET_ONLY, "at {t}: {q}");
            t += 10 * ms;
        }
        let (_, _, q) = p.decide(target + 20 * ms, target, t + 100 * ms, true).unwrap();
        assert!(q < QUIET_ONLY, "{q}");
        // a removal in sound is followed by a quarter of a second without one
        p.spliced(t + 100 * ms);
        assert!(p.decide(target + 20 * ms, target, t + 300 * ms, true).is_none());
        assert!(p.decide(target + 20 * ms, target, t + 360 * ms, true).is_some());
        // 5 ms under it, every packet still in time: a pause only, however long it takes
        let mut p = StretchPolicy::new();
        for k in 0..6000 {
            let (acc, _, q) = p.decide(target - 5 * ms, target, k * 10 * ms, true).unwrap();
            assert!(!acc && q >= QUIET_ONLY);
        }
        // packets would be late: at once, anywhere periodic enough
        let (acc, _, q) = p.decide(target - 5 * ms, target, 60_010 * ms, false).unwrap();
        assert!(!acc && q <= 0.85, "{q}");
        // jitter moving the delay in and out of the band does not restart the wait
        let mut p = StretchPolicy::new();
        let mut t = 0;
        let mut last = QUIET_ONLY;
        while t < 8_000 * ms {
            let inside = (t / (200 * ms)) % 2 == 1;
            let d = if inside { target } else { target + 20 * ms };
            if let Some((_, _, q)) = p.decide(d, target, t, true) {
                last = q;
            }
            t += 10 * ms;
        }
        assert!(last < QUIET_ONLY, "the wait restarted: {last}");
    }
}
