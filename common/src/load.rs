//! The load governor: the output stays in real time when the streams cost more than the
//! machine can render.
//!
//! Rendering a period (every stream's jitter buffer, decode, rate stage and the mix) must
//! take less than the period, or the output falls behind real time and every stream
//! glitches. BENCHMARKS.md §3 measured the cost as close to linear in the number of
//! streams, so one number, the *load* (render time over output time, averaged over
//! [`WINDOW_FRAMES`]), and its share per stream describe the machine well enough to act on:
//!
//! - **Admission.** A new stream is admitted only while the measured load plus one more
//!   stream's share stays within [`ADMIT_SHARE`] of `--load-limit`: a flood of valid
//!   streams fills the machine up to its limit and is then refused (counted by the caller
//!   as refusals), whatever `--max-streams` says. Until a first window is measured every
//!   stream is admitted.
//! - **Shedding.** When a whole window's mean load is above the limit anyway (the machine
//!   got slower, another process took a core, streams got heavier, or many streams
//!   arrived at once before anything was measured), the newest streams are shed, in
//!   proportion to the excess: those left use [`ADMIT_SHARE`] of the limit. At least one
//!   is shed, never the last one: the streams that played first keep playing. The window
//!   after a shed is not judged (its streams were still fading out), so a shed is never
//!   doubled by its own echo; the caller keeps shed streams out for [`SHED_HOLD_NS`], so
//!   they do not come back on the next window's room and tip it over again.
//!
//! A mean over half a second, not a peak: one period stretched by the scheduler (common on
//! a loaded machine) does not shed anybody, while an overload that lasts is over within
//! one to two seconds (measured: 60 streams arriving at once at `--load-limit 3` were
//! shed within 2 s of the start, in `tests/tests/e2e_attacks.rs`).
//!
//! Sans-IO: the caller feeds every rendered period (frames, render time, streams) and
//! asks; time is the output frame count.

use crate::time::{frames_to_ns, SAMPLE_RATE};

/// Frames of output over which the load is averaged: half a second.
pub const WINDOW_FRAMES: u64 = SAMPLE_RATE as u64 / 2;

/// New streams are admitted while the projected load stays within this share of the
/// limit, so that one admission never pushes the load over it.
pub const ADMIT_SHARE: f64 = 0.9;

/// How long a shed stream is kept out (its packets counted as refused) before it may come
/// back through probation, if there is room then.
pub const SHED_HOLD_NS: i64 = 10_000_000_000;

/// Default `--load-limit`: the share of real time the renderer may use. BENCHMARKS.md §3:
/// 256 streams used about half of each period on this machine with no underrun; 75 %
/// leaves the rest for the scheduler's noise.
pub const DEFAULT_LIMIT: f64 = 0.75;

#[derive(Debug, Clone)]
pub struct LoadGovernor {
    limit: f64,
    // the window being measured
    frames: u64,
    render_ns: u64,
    stream_frames: u64,
    /// Mean load of the last complete window.
    load: Option<f64>,
    /// Load per stream, from the last window that had streams.
    per_stream: Option<f64>,
    /// Streams to shed, decided and not yet taken.
    to_shed: u32,
    /// The current window follows a shed: measured, not judged.
    after_shed: bool,
}

impl LoadGovernor {
    /// `limit`: share of real time the renderer may use, in [0.001, 1].
    pub fn new(limit: f64) -> Self {
        LoadGovernor {
            limit: limit.clamp(0.001, 1.0),
            frames: 0,
            render_ns: 0,
            stream_frames: 0,
            load: None,
            per_stream: None,
            to_shed: 0,
            after_shed: false,
        }
    }

    /// One rendered period: `frames` of output took `render_ns` with `streams` playing.
    pub fn observe(&mut self, frames: u32, render_ns: u32, streams: u32) {
        self.frames += frames as u64;
        self.render_ns += render_ns as u64;
        self.stream_frames += streams as u64 * frames as u64;
        if self.frames < WINDOW_FRAMES {
            return;
        }
        let load = self.render_ns as f64 / frames_to_ns(self.frames as i64) as f64;
        let streams = self.stream_frames as f64 / self.frames as f64;
        (self.frames, self.render_ns, self.stream_frames) = (0, 0, 0);
        self.load = Some(load);
        if streams >= 1.0 {
            self.per_stream = Some(load / streams);
        }
        if std::mem::take(&mut self.after_shed) || load <= self.limit {
            return;
        }
        // Over the limit for a whole window: shed in proportion to the excess, at least
        // one stream, and keep one.
        let keep = streams * (self.limit * ADMIT_SHARE / load);
        let playing = streams.round() as u32;
        let shed = (streams - keep).ceil() as u32;
        self.to_shed = shed.max(1).min(playing.saturating_sub(1));
        self.after_shed = self.to_shed > 0;
    }

    /// Whether one more stream fits, with `streams` playing now.
    pub fn admits(&self, streams: u32) -> bool {
        match (self.load, self.per_stream) {
            (Some(load), Some(p)) => load.max(p * streams as f64) + p <= self.limit * ADMIT_SHARE,
            (Some(load), None) => load <= self.limit * ADMIT_SHARE,
            _ => true,
        }
    }

    /// Streams to shed now (the newest ones); each is asked once.
    pub fn take_shed(&mut self) -> u32 {
        std::mem::take(&mut self.to_shed)
    }

    /// Mean load of the last complete window, a share of real time.
    pub fn load(&self) -> Option<f64> {
        self.load
    }

    pub fn limit(&self) -> f64 {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Periods of 480 frames (10 ms) for `secs`, each stream costing `cost` of the period.
    fn run(g: &mut LoadGovernor, secs: f64, streams: u32, cost: f64) {
        for _ in 0..(secs * 100.0) as u32 {
            g.observe(480, (streams as f64 * cost * 10e6) as u32, streams);
        }
    }

    #[test]
    fn admits_until_the_limit_is_in_sight() {
        let mut g = LoadGovernor::new(0.5);
        assert!(g.admits(0), "nothing measured yet: admit");
        run(&mut g, 1.0, 4, 0.05);
        assert!((g.load().unwrap() - 0.2).abs() < 1e-6);
        // 0.45 is the admission line: 7 streams at 0.05 = 0.35, one more 0.40
        assert!(g.admits(4));
        assert!(g.admits(7));
        assert!(!g.admits(9));
        // streams admitted since the last window count by their share
        assert!(!g.admits(12));
        assert_eq!(g.take_shed(), 0);
    }

    #[test]
    fn a_window_over_the_limit_sheds_the_excess_and_never_the_last_stream() {
        let mut g = LoadGovernor::new(0.5);
        run(&mut g, 0.5, 10, 0.02);
        assert_eq!(g.take_shed(), 0);
        // the machine gets three times slower: 10 streams now take 0.6; 7.5 of them fit in
        // 0.45
        run(&mut g, 0.5, 10, 0.06);
        assert_eq!(g.take_shed(), 3);
        assert_eq!(g.take_shed(), 0, "asked once");
        // the window after the shed is not judged, even if still over
        run(&mut g, 0.5, 10, 0.06);
        assert_eq!(g.take_shed(), 0);
        run(&mut g, 0.5, 6, 0.06);
        assert_eq!(g.take_shed(), 0, "6 x 0.06 = 0.36 is under the limit");
        // one stream alone over the limit is kept: shedding it would leave only silence
        let mut one = LoadGovernor::new(0.1);
        run(&mut one, 2.0, 1, 0.5);
        assert_eq!(one.take_shed(), 0);
    }

    #[test]
    fn one_stretched_period_sheds_nobody() {
        let mut g = LoadGovernor::new(0.75);
        for i in 0..500 {
            // 20 streams at 2 % each (40 %), and every 50th period the scheduler holds the
            // thread for 3 periods
            let render = if i % 50 == 0 { 30_000_000 } else { 4_000_000 };
            g.observe(480, render, 20);
            assert_eq!(g.take_shed(), 0, "period {i}");
        }
    }
}
