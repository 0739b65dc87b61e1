//! Capture gaps: audio the capture device or the audio server dropped without saying so.
//!
//! A capture callback is told how many frames it got and, by cpal, when the first of them
//! was captured. Frames are the device's clock, the capture instant is the host's: between
//! two callbacks both advance by the same time, give or take the timestamps' jitter and a
//! slow drift of one clock against the other. When the host clock advanced by clearly more
//! than the frames delivered, audio was lost before it reached us: a **gap**. Nobody else
//! reports it: cpal 0.18.2's PulseAudio record stream asks for a server buffer (`maxlength`)
//! of one period, so when the client is late PulseAudio discards audio and sends what it has
//! now, with no overflow message; PipeWire's JACK emulation was seen dropping 8 ms without
//! an xrun. The sender's ring overruns and xruns stay at zero and the listener hears a cut.
//!
//! [`CaptureGapDetector`] follows the *offset* of each callback, its capture instant minus
//! the duration of the frames delivered before it (plus the gaps already found), against a
//! slowly tracked baseline. Sans-IO: the instants are arguments, nothing is allocated after
//! `new`, every call is a few comparisons (it runs next to the audio path).
//!
//! - **Jitter is a spike, a gap is a step.** A residual (offset − baseline) above the
//!   threshold opens a candidate; it becomes a gap only when it has held for [`PERSIST_NS`]
//!   (10 ms of frames) and at least [`PERSIST_CALLBACKS`] consecutive callbacks, all above
//!   the threshold, the last three agreeing with each other within it (the step has
//!   settled). A lone late timestamp, or a few (a callback thread descheduled for a few
//!   ms: with 64-frame JACK periods, several callbacks in a row), comes back to the
//!   baseline and is forgotten. The gap's length is the median of the last three
//!   residuals, in frames.
//!   PulseAudio, stopped for 300 ms, was seen to hand the loss over in two steps (205 ms,
//!   then 95 ms, one callback apart): the "settled" condition waits for the second step and
//!   reports one gap of the whole length.
//! - **Threshold**: [`MIN_GAP_NS`] (2 ms) or half of the last callback's duration, whichever
//!   is larger. Measured on PulseAudio 16 with cpal's interpolated timestamps (256-frame
//!   periods, 5.3 ms; 880 callbacks, BENCHMARKS.md §7): the offset's standard deviation is
//!   0.18 ms, its excursions −0.3 to +1.6 ms (the large ones late: a callback that read
//!   the clock late), so 2 ms is 11 σ and above every spike seen, and a lone larger one is
//!   what the persistence is for; a server with long periods stamps a callback anywhere
//!   within a period, hence the half period. A step shorter than 2 ms goes unseen (so
//!   would one 64-frame quantum, 1.3 ms).
//! - **Drift**: within the threshold the baseline follows the offset with a 1/16 weight per
//!   callback. A ±300 ppm clock difference moves the offset 1.6 µs per 5.3 ms callback
//!   (25 µs per 85 ms one); the baseline lags it by 16 × that, 26–400 µs, far inside 2 ms,
//!   for hours (a PulseAudio monitor with 5 ms clients beside it ran 1500 ppm fast: also
//!   tested). Such a monitor also steps its timing back and forth by a few ms (BENCHMARKS.md
//!   §7): those steps are counted (gaps and clock steps), which says the timing wobbles.
//! - **The clock going backwards** (a persistent step below the baseline: frames delivered
//!   faster than time passed, a stepped or garbage timestamp) is no gap: the baseline moves
//!   to it and it is counted as a clock step. So is a forward step longer than
//!   [`MAX_GAP_NS`] (a minute): a capture stream that loses that much is better explained by
//!   a host clock step (or a suspend) than by a number the user should add up. The first
//!   [`WARMUP_CALLBACKS`] callbacks only settle the baseline (a stream's first timestamps are
//!   the least steady: a 14.7 ms first interval was seen where 5.3 ms followed).
//!
//! Reported when confirmed, 10 ms or three callbacks after the audio resumed (whichever is
//! later), with the frame index where it resumed.

use crate::time::SAMPLE_RATE;

/// The smallest step reported as a gap (and the smallest threshold), ns.
pub const MIN_GAP_NS: i64 = 2_000_000;
/// Consecutive callbacks a step must hold, settled, to be a gap (or a clock step).
pub const PERSIST_CALLBACKS: usize = 3;
/// ... and the time it must hold, in frames delivered since it began, ns.
pub const PERSIST_NS: i64 = 10_000_000;
/// Forward steps longer than this are clock steps, not gaps, ns.
pub const MAX_GAP_NS: i64 = 60_000_000_000;
/// Callbacks at the start that only settle the baseline.
pub const WARMUP_CALLBACKS: u64 = 16;
/// Weight of a new offset in the baseline (1/16 per callback).
const BASELINE_SHIFT: u32 = 4;

/// A gap found: `frames` of audio lost just before capture frame `resumed_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureGap {
    pub resumed_at: u64,
    pub frames: u64,
}

/// Finds capture gaps from (frame index, capture instant) per callback; see the module doc.
#[derive(Debug, Clone)]
pub struct CaptureGapDetector {
    sample_rate: u32,
    /// Offset every callback should have, ns; `None` before the first callback.
    baseline_ns: Option<i64>,
    /// The previous callback's frame index (its length is the next index minus it).
    last_frame_index: Option<u64>,
    last_callback_ns: i64,
    callbacks: u64,
    /// Residuals of the candidate step so far (all beyond the threshold, one sign).
    pending: [i64; PERSIST_CALLBACKS],
    pending_len: usize,
    /// Frame index of the candidate's first callback.
    pending_at: u64,
    gaps: u64,
    gap_frames: u64,
    clock_steps: u64,
}

impl CaptureGapDetector {
    /// A detector for a stream of `sample_rate` frames per second (0 is taken as 48 kHz).
    pub fn new(sample_rate: u32) -> Self {
        CaptureGapDetector {
            sample_rate: if sample_rate == 0 {
                SAMPLE_RATE
            } else {
                sample_rate
            },
            baseline_ns: None,
            last_frame_index: None,
            last_callback_ns: 0,
            callbacks: 0,
            pending: [0; PERSIST_CALLBACKS],
            pending_len: 0,
            pending_at: 0,
            gaps: 0,
            gap_frames: 0,
            clock_steps: 0,
        }
    }

    /// Feed one callback: `frame_index`, the count of frames delivered before it, and
    /// `capture_ns`, when its first frame was captured (host clock, any epoch). Callbacks in
    /// order; one may be left out (only the indices count). Returns the gap this callback
    /// confirms, if any.
    pub fn observe(&mut self, frame_index: u64, capture_ns: i64) -> Option<CaptureGap> {
        if let Some(last) = self.last_frame_index {
            self.last_callback_ns = self.frames_to_ns(frame_index.saturating_sub(last));
        }
        self.last_frame_index = Some(frame_index);
        self.callbacks += 1;
        let offset =
            capture_ns.saturating_sub(self.frames_to_ns(frame_index.saturating_add(self.gap_frames)));
        let Some(baseline) = self.baseline_ns else {
            self.baseline_ns = Some(offset);
            return None;
        };
        let residual = offset.saturating_sub(baseline);
        let threshold = MIN_GAP_NS.max(self.last_callback_ns / 2);
        if residual.unsigned_abs() <= threshold as u64 {
            self.pending_len = 0;
            self.baseline_ns = Some(baseline + (residual >> BASELINE_SHIFT));
            return None;
        }
        // beyond the threshold: extend the candidate, or start one (on a change of sign)
        if self.pending_len > 0 && (self.pending[0] > 0) != (residual > 0) {
            self.pending_len = 0;
        }
        if self.pending_len == 0 {
            self.pending_at = frame_index;
        }
        if self.pending_len == PERSIST_CALLBACKS {
            self.pending.copy_within(1.., 0);
            self.pending_len -= 1;
        }
        self.pending[self.pending_len] = residual;
        self.pending_len += 1;
        if self.pending_len < PERSIST_CALLBACKS {
            return None;
        }
        let (lo, hi) = self
            .pending
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let held_ns = self.frames_to_ns(frame_index.saturating_sub(self.pending_at));
        if hi.saturating_sub(lo) > threshold || held_ns < PERSIST_NS {
            return None; // still moving, or not long enough
        }
        let mut sorted = self.pending;
        sorted.sort_unstable();
        let step = sorted[PERSIST_CALLBACKS / 2];
        self.pending_len = 0;
        if self.callbacks <= WARMUP_CALLBACKS {
            self.baseline_ns = Some(baseline.saturating_add(step));
            return None;
        }
        if !(0..=MAX_GAP_NS).contains(&step) {
            self.baseline_ns = Some(baseline.saturating_add(step));
            self.clock_steps += 1;
            return None;
        }
        // the offset now includes the gap: the baseline stays, the residual goes back to ~0
        let frames = self.ns_to_frames(step);
        self.gaps += 1;
        self.gap_frames += frames;
        Some(CaptureGap {
            resumed_at: self.pending_at,
            frames,
        })
    }

    /// Gaps found so far.
    pub fn gaps(&self) -> u64 {
        self.gaps
    }

    /// Frames lost in them, in all.
    pub fn gap_frames(&self) -> u64 {
        self.gap_frames
    }

    /// Persistent steps of the capture clock that were no gap: backwards, or beyond
    /// [`MAX_GAP_NS`].
    pub fn clock_steps(&self) -> u64 {
        self.clock_steps
    }

    fn frames_to_ns(&self, frames: u64) -> i64 {
        let ns = frames as i128 * 1_000_000_000 / self.sample_rate as i128;
        ns.min(i64::MAX as i128) as i64
    }

    /// Rounded to the nearest frame (of a positive duration).
    fn ns_to_frames(&self, ns: i64) -> u64 {
        ((ns.max(0) as i128 * self.sample_rate as i128 + 500_000_000) / 1_000_000_000) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated capture stream: the device's clock runs `ppm` off the host's, callbacks
    /// of varying size, timestamps with a deterministic pseudo-random jitter of up to
    /// ±`jitter_ns` and, one callback in a hundred, 1–3 ms late (PulseAudio's worst seen:
    /// 1.6 ms); a xorshift, so runs replay bit for bit.
    struct Stream {
        frame_index: u64,
        /// Device time of the next frame, in host ns (exact, before jitter).
        host_ns: f64,
        ppm: f64,
        jitter_ns: f64,
        rng: u64,
        sizes: &'static [u64],
        k: usize,
    }

    impl Stream {
        fn new(ppm: f64, jitter_ns: f64, sizes: &'static [u64]) -> Self {
            Stream {
                frame_index: 0,
                host_ns: 1.0e12,
                ppm,
                jitter_ns,
                rng: 0x9e37_79b9_7f4a_7c15,
                sizes,
                k: 0,
            }
        }

        fn random(&mut self) -> f64 {
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        }

        /// The next callback's (frame index, capture ns).
        fn next(&mut self) -> (u64, i64) {
            let late = if self.random() > 0.98 {
                2.0e6 + self.random() * 1.0e6
            } else {
                0.0
            };
            let jitter = self.random() * self.jitter_ns;
            let at = (self.frame_index, (self.host_ns + jitter + late) as i64);
            let frames = self.sizes[self.k % self.sizes.len()];
            self.k += 1;
            self.frame_index += frames;
            self.host_ns += frames as f64 * 1.0e9 / 48_000.0 * (1.0 + self.ppm * 1e-6);
            at
        }

        /// The device loses `ns` of audio (the host clock moves on, no frames delivered).
        fn lose(&mut self, ns: f64) {
            self.host_ns += ns;
        }
    }

    const PULSE: &[u64] = &[255, 256, 255, 257, 240, 270, 256];

    fn run(d: &mut CaptureGapDetector, s: &mut Stream, callbacks: u64) -> Vec<CaptureGap> {
        (0..callbacks)
            .filter_map(|_| {
                let (f, t) = s.next();
                d.observe(f, t)
            })
            .collect()
    }

    /// Three simulated hours at ±300 ppm with ±0.5 ms jitter (PulseAudio's was within
    /// that), and with JACK-like fixed 64-frame and long 4096-frame callbacks; and the
    /// 1–24-frame callbacks of a PulseAudio monitor running 1500 ppm fast: no gap.
    #[test]
    fn clean_streams_have_no_gaps_over_hours() {
        for (ppm, sizes) in [
            (300.0, PULSE),
            (-300.0, PULSE),
            (300.0, &[64][..]),
            (-250.0, &[4096][..]),
            (1500.0, &[11, 1, 24, 9, 13][..]),
        ] {
            let mut s = Stream::new(ppm, 500_000.0, sizes);
            let mean = sizes.iter().sum::<u64>() as f64 / sizes.len() as f64;
            let callbacks = (3.0 * 3600.0 * 48_000.0 / mean) as u64;
            let mut d = CaptureGapDetector::new(48_000);
            assert_eq!(run(&mut d, &mut s, callbacks), vec![], "{ppm} ppm, {sizes:?}");
            assert_eq!((d.gaps(), d.gap_frames(), d.clock_steps()), (0, 0, 0));
        }
    }

    /// An 8 ms and a 200 ms loss, in a drifting, jittery stream: two gaps of the right
    /// length (within the timestamps' jitter), at the frame where the audio resumed.
    #[test]
    fn gaps_are_found_with_their_length() {
        let mut s = Stream::new(200.0, 300_000.0, PULSE);
        let mut d = CaptureGapDetector::new(48_000);
        assert!(run(&mut d, &mut s, 2000).is_empty());
        let mut found = Vec::new();
        for lost_ms in [8.0, 200.0] {
            s.lose(lost_ms * 1e6);
            let resumed = s.frame_index;
            let gaps = run(&mut d, &mut s, 2000);
            assert_eq!(gaps.len(), 1, "{lost_ms} ms: {gaps:?}");
            assert_eq!(gaps[0].resumed_at, resumed);
            let ms = gaps[0].frames as f64 / 48.0;
            assert!((ms - lost_ms).abs() < 0.6, "{lost_ms} ms lost, {ms} ms found");
            found.push(gaps[0].frames);
        }
        assert_eq!(d.gaps(), 2);
        assert_eq!(d.gap_frames(), found.iter().sum::<u64>());
        assert_eq!(d.clock_steps(), 0);
    }

    /// A loss handed over in two steps one callback apart (PulseAudio after a 300 ms
    /// stall: 205 ms, then 95 ms): one gap of the whole length.
    #[test]
    fn a_step_in_two_parts_is_one_gap() {
        let mut s = Stream::new(0.0, 200_000.0, PULSE);
        let mut d = CaptureGapDetector::new(48_000);
        run(&mut d, &mut s, 500);
        s.lose(205e6);
        run(&mut d, &mut s, 1);
        s.lose(95e6);
        let gaps = run(&mut d, &mut s, 500);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!((gaps[0].frames as f64 / 48.0 - 300.0).abs() < 0.5);
    }

    /// Late timestamps, one or two callbacks long and up to a second late (a callback that
    /// read the clock late), are no gap; nor is a lone early one.
    #[test]
    fn spikes_are_not_gaps() {
        let mut s = Stream::new(-100.0, 300_000.0, PULSE);
        let mut d = CaptureGapDetector::new(48_000);
        run(&mut d, &mut s, 500);
        for (len, spike_ns) in [(1, 5e6), (2, 30e6), (1, 1e9), (2, 200e6), (1, -50e6), (2, 3e6)] {
            for _ in 0..len {
                let (f, t) = s.next();
                assert_eq!(d.observe(f, t + spike_ns as i64), None);
            }
            assert!(run(&mut d, &mut s, 100).is_empty());
        }
        assert_eq!((d.gaps(), d.clock_steps()), (0, 0));
    }

    /// At 64-frame periods (1.3 ms) a thread descheduled for 5 ms makes four late
    /// timestamps in a row, each less late (they do not settle): no gap; an 8 ms loss
    /// there is one.
    #[test]
    fn short_periods_need_ten_ms_not_three_callbacks() {
        let mut s = Stream::new(100.0, 50_000.0, &[64]);
        let mut d = CaptureGapDetector::new(48_000);
        run(&mut d, &mut s, 1000);
        for late_ns in [5_000_000i64, 3_700_000, 2_400_000, 1_100_000] {
            let (f, t) = s.next();
            assert_eq!(d.observe(f, t + late_ns), None);
        }
        assert!(run(&mut d, &mut s, 1000).is_empty());
        s.lose(8e6);
        let gaps = run(&mut d, &mut s, 1000);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert!((gaps[0].frames as f64 / 48.0 - 8.0).abs() < 0.2);
    }

    /// A host clock stepped back by a second, and one stepped far forward: no panic, no
    /// gap, each counted once as a clock step; a later real gap is still found. Garbage at
    /// the extremes of i64 and u64 does not panic either.
    #[test]
    fn clock_steps_are_counted_not_gaps() {
        let mut s = Stream::new(50.0, 300_000.0, PULSE);
        let mut d = CaptureGapDetector::new(48_000);
        run(&mut d, &mut s, 500);
        s.lose(-1e9);
        assert!(run(&mut d, &mut s, 500).is_empty());
        assert_eq!((d.gaps(), d.clock_steps()), (0, 1));
        s.lose(3600e9);
        assert!(run(&mut d, &mut s, 500).is_empty());
        assert_eq!((d.gaps(), d.clock_steps()), (0, 2));
        s.lose(50e6);
        assert_eq!(run(&mut d, &mut s, 500).len(), 1);
        assert_eq!(d.gaps(), 1);
        for (f, t) in [
            (u64::MAX, i64::MAX),
            (0, i64::MIN),
            (u64::MAX, i64::MIN),
            (5, 0),
            (5, i64::MAX),
        ] {
            for _ in 0..5 {
                d.observe(f, t);
            }
        }
    }

    /// Other rates: a 10 ms loss at 44.1 kHz is 441 frames.
    #[test]
    fn frames_are_counted_at_the_stream_rate() {
        let mut d = CaptureGapDetector::new(44_100);
        let period_ns = 441 * 1_000_000_000 / 44_100;
        let mut gaps = Vec::new();
        for k in 0..200i64 {
            let t = k * period_ns + if k >= 100 { 10_000_000 } else { 0 };
            gaps.extend(d.observe(k as u64 * 441, t));
        }
        assert_eq!(
            gaps,
            vec![CaptureGap {
                resumed_at: 100 * 441,
                frames: 441
            }]
        );
    }
}
