//! Variable-rate playout: a fractional-position interpolator between the decoded stream and
//! the output, so the delay controller can play a little faster or slower than real time
//! (the one control loop of [`crate::delay`]).
//!
//! Each output frame is the stream evaluated at a fractional position with 4-point,
//! 3rd-order Lagrange interpolation (the same polynomial as rubato's `Cubic` asynchronous
//! resampler, which this stage replaced); the position advances by the rate, and a rate
//! change is ramped linearly over the next render call.
//!
//! Why our own: the controller only ever asks for ratios within ±5 % of 1, and every stream
//! of the receiver runs one of these in the audio callback. Through rubato 5 the same
//! interpolation cost about 6 µs per stream per 10 ms period (12 ns per sample, in its
//! generic adapter and chunk machinery), half again the Opus decode itself, which broke the
//! per-stream budget of issue 4 (BENCHMARKS.md §3). This loop costs about 2 µs: a fixed-point
//! position keeps the per-sample dependency chain to one integer add (an `f64` position
//! with floor and conversions was measured no faster than rubato).
//!
//! At a rate of exactly 1 and a whole-frame position the interpolation returns the stream
//! samples bit for bit, and there is no filter delay: the output frame at position `p` is
//! the stream at `p`. Everything is allocated in [`RateStage::new`]; rendering does not
//! allocate, however large the output block (input is fetched in bounded blocks).

/// Largest deviation of the rate from 1 the stage accepts (the controller stays within it).
pub const MAX_RATE_DEVIATION: f64 = 0.05;

/// Stream frames fetched from the source per call, at most.
const FETCH_MAX: usize = 256;
/// Frames the interpolation needs around the position: one before, two after.
const BEFORE: usize = 1;
const AFTER: usize = 2;

/// Fractional bits of the fixed-point position and step.
const FRAC_BITS: u32 = 32;
const ONE: u64 = 1 << FRAC_BITS;

pub struct RateStage {
    channels: usize,
    /// Interleaved stream frames; `pos >> FRAC_BITS` indexes the frame at or before the
    /// next output position.
    buf: Vec<f32>,
    /// Frames in `buf`.
    len: usize,
    /// Position of the next output frame in `buf`, fixed point (integer part ≥ `BEFORE`).
    /// Fixed point keeps the per-sample dependency chain to one integer add.
    pos: u64,
    /// Step per output frame now (fixed point), ramping towards `target`.
    step: u64,
    /// The rate asked for.
    target: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create the rate stage: {0}")]
pub struct RateError(String);

fn to_fixed(rate: f64) -> u64 {
    (rate * ONE as f64).round() as u64
}

impl RateStage {
    pub fn new(channels: usize) -> Result<Self, RateError> {
        if channels == 0 || channels > 255 {
            return Err(RateError(format!("{channels} channels")));
        }
        let frames = BEFORE + FETCH_MAX + AFTER + 2;
        let mut st = RateStage {
            channels,
            buf: crate::mem::resident_vec(frames * channels, 0.0),
            len: 0,
            pos: 0,
            step: ONE,
            target: 1.0,
        };
        st.reset();
        Ok(st)
    }

    /// Stream samples consumed per output sample. Values outside
    /// 1 ± [`MAX_RATE_DEVIATION`] are clamped; a non-finite value is ignored.
    pub fn set_rate(&mut self, rate: f64) {
        if rate.is_finite() {
            self.target = rate.clamp(1.0 - MAX_RATE_DEVIATION, 1.0 + MAX_RATE_DEVIATION);
        }
    }

    pub fn rate(&self) -> f64 {
        self.target
    }

    /// Stream frames taken from the source but not played yet, counted from the position of
    /// the next output frame (fractional).
    pub fn latency_stream_frames(&self) -> f64 {
        ((self.len as u64) * ONE - self.pos) as f64 / ONE as f64
    }

    /// Back to rate 1 and an empty history (silence before the next stream frame).
    pub fn reset(&mut self) {
        self.buf[..BEFORE * self.channels].fill(0.0);
        self.len = BEFORE;
        self.pos = BEFORE as u64 * ONE;
        self.step = ONE;
        self.target = 1.0;
    }

    /// Fill `out` (interleaved). `source` must fill the slice it is given with the next
    /// stream frames. Returns the number of stream frames consumed.
    pub fn render(&mut self, out: &mut [f32], source: impl FnMut(&mut [f32])) -> u64 {
        match self.channels {
            1 => self.render_ch::<1>(out, source),
            2 => self.render_ch::<2>(out, source),
            _ => self.render_ch::<0>(out, source),
        }
    }

    /// `CH` is the channel count, or 0 for "`self.channels`" (so mono and stereo get loops
    /// the compiler can unroll).
    fn render_ch<const CH: usize>(&mut self, out: &mut [f32], mut source: impl FnMut(&mut [f32])) -> u64 {
        let ch = if CH == 0 { self.channels } else { CH };
        let frames = out.len() / ch;
        if frames == 0 {
            return 0;
        }
        // ramp the step linearly to the target over this block (the last frames may end a
        // few units off the target; the step is set to it exactly at the end)
        let target = to_fixed(self.target);
        let ramp = (target as i64 - self.step as i64) / frames as i64;
        let mut consumed = 0u64;
        let mut k = 0;
        while k < frames {
            if ((self.pos >> FRAC_BITS) as usize) + AFTER >= self.len {
                consumed += self.refill(frames - k, target, &mut source);
            }
            // frames the buffered input covers without a check per channel
            let (mut pos, mut step) = (self.pos, self.step);
            let len = self.len;
            let buf = &self.buf[..len * ch];
            while k < frames {
                let i = (pos >> FRAC_BITS) as usize;
                if i + AFTER >= len {
                    break;
                }
                let t = (pos & (ONE - 1)) as f32 * (1.0 / ONE as f32);
                let x = &buf[(i - BEFORE) * ch..(i + AFTER + 1) * ch];
                let o = &mut out[k * ch..(k + 1) * ch];
                for c in 0..ch {
                    o[c] = lagrange4(t, x[c], x[ch + c], x[2 * ch + c], x[3 * ch + c]);
                }
                step = step.wrapping_add_signed(ramp);
                pos += step;
                k += 1;
            }
            self.pos = pos;
            self.step = step;
        }
        self.step = target;
        consumed
    }

    /// Make room and fetch stream frames so that the frames around the current position are
    /// present, fetching no more than the `remaining` output frames of this block can use.
    fn refill(&mut self, remaining: usize, target: u64, source: &mut impl FnMut(&mut [f32])) -> u64 {
        let ch = self.channels;
        // drop the frames no position can reach any more
        let keep_from = (self.pos >> FRAC_BITS) as usize - BEFORE;
        if keep_from > 0 {
            self.buf.copy_within(keep_from * ch..self.len * ch, 0);
            self.len -= keep_from;
            self.pos -= keep_from as u64 * ONE;
        }
        let mut total = 0u64;
        while ((self.pos >> FRAC_BITS) as usize) + AFTER >= self.len {
            // the last position this block reaches, with the fastest step it can take
            let fastest = self.step.max(target);
            let last = self.pos + remaining.saturating_sub(1) as u64 * fastest;
            let wanted = (last >> FRAC_BITS) as usize + AFTER + 1;
            let room = self.buf.len() / ch - self.len;
            let n = wanted.saturating_sub(self.len).clamp(1, room.min(FETCH_MAX));
            source(&mut self.buf[self.len * ch..(self.len + n) * ch]);
            self.len += n;
            total += n as u64;
        }
        total
    }
}

/// 4-point, 3rd-order Lagrange interpolation at `t` ∈ [0, 1) between `y1` and `y2`.
#[inline(always)]
fn lagrange4(t: f32, y0: f32, y1: f32, y2: f32, y3: f32) -> f32 {
    let a1 = -(1.0 / 3.0) * y0 - 0.5 * y1 + y2 - (1.0 / 6.0) * y3;
    let a2 = 0.5 * (y0 + y2) - y1;
    let a3 = 0.5 * (y1 - y2) + (1.0 / 6.0) * (y3 - y0);
    y1 + t * (a1 + t * (a2 + t * a3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const W_1K: f64 = 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0;

    fn sine(w: f64) -> impl FnMut(&mut [f32]) {
        let mut i = 0u64;
        move |buf: &mut [f32]| {
            for s in buf.iter_mut() {
                *s = ((i as f64) * w).sin() as f32 * 0.5;
                i += 1;
            }
        }
    }

    // The position is fixed point (2^-32 frame): over hundreds of thousands of frames the
    // realised rate may differ from the asked one by a thousandth of a frame. The accounting
    // itself is exact: the latency is derived from the same position.
    #[test]
    fn consumes_at_the_requested_rate() {
        for rate in [1.0, 1.005, 0.98, 1.05, 0.95] {
            let mut st = RateStage::new(1).unwrap();
            st.set_rate(rate);
            let mut out = vec![0f32; 128];
            let mut src = sine(W_1K);
            let mut consumed = 0;
            for _ in 0..3000 {
                consumed += st.render(&mut out, &mut src);
            }
            // the first block ramps from 1 to the rate
            let expected = 3000.0 * 128.0 * rate - 63.5 * (rate - 1.0);
            let played = consumed as f64 - st.latency_stream_frames();
            assert!(
                (played - expected).abs() < 1e-3,
                "rate {rate}: {played} vs {expected}"
            );
            assert!(
                st.latency_stream_frames() <= (AFTER + 2) as f64,
                "{}",
                st.latency_stream_frames()
            );
        }
    }

    #[test]
    fn rate_one_is_the_stream_bit_for_bit_without_delay() {
        let mut st = RateStage::new(2).unwrap();
        let mut src = sine(W_1K);
        let mut reference = sine(W_1K);
        let (mut played, mut consumed) = (0u64, 0u64);
        for block in [1usize, 7, 480, 4096, 3] {
            let mut out = vec![0f32; block * 2];
            consumed += st.render(&mut out, &mut src);
            let mut want = vec![0f32; block * 2];
            reference(&mut want);
            assert_eq!(out, want);
            played += block as u64;
            assert_eq!(consumed as f64 - st.latency_stream_frames(), played as f64);
        }
    }

    /// The output at a constant rate is the sine at the positions the stage reports, within
    /// the interpolation error of a cubic (which grows with frequency).
    #[test]
    fn follows_a_sine_at_any_rate() {
        for (hz, max_err) in [(1000.0, 2e-5), (5000.0, 3e-3)] {
            let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
            for rate in [1.0001, 0.9993, 1.03] {
                let mut st = RateStage::new(1).unwrap();
                st.set_rate(rate);
                let mut src = sine(w);
                let mut out = vec![0f32; 480];
                let mut consumed = st.render(&mut out, &mut src); // ramps to the rate
                let mut err = 0f64;
                for _ in 0..100 {
                    // position of the next output frame, in stream frames
                    let mut p = consumed as f64 - st.latency_stream_frames();
                    consumed += st.render(&mut out, &mut src);
                    for o in &out {
                        err = err.max((*o as f64 - (p * w).sin() * 0.5).abs());
                        p += rate;
                    }
                }
                assert!(err < max_err, "{hz} Hz at rate {rate}: max error {err}");
            }
        }
    }

    #[test]
    fn a_rate_change_is_a_ramp_and_the_position_is_exact() {
        let mut st = RateStage::new(1).unwrap();
        let mut src = sine(W_1K);
        let mut consumed = 0u64;
        let mut expected = 0.0f64;
        let mut step = 1.0f64;
        for (i, block) in [480usize, 64, 1000, 5, 480].iter().cycle().take(200).enumerate() {
            let rate = 1.0 + ((i as f64) * 0.37).sin() * 0.04;
            st.set_rate(rate);
            let ramp = (rate - step) / *block as f64;
            for _ in 0..*block {
                step += ramp;
                expected += step;
            }
            step = rate;
            let mut out = vec![0f32; *block];
            consumed += st.render(&mut out, &mut src);
            let played = consumed as f64 - st.latency_stream_frames();
            assert!(
                (played - expected).abs() < 1e-3,
                "block {i}: {played} vs {expected}"
            );
        }
    }

    #[test]
    fn rates_outside_the_range_are_clamped_and_nan_ignored() {
        let mut st = RateStage::new(1).unwrap();
        st.set_rate(3.0);
        assert_eq!(st.rate(), 1.0 + MAX_RATE_DEVIATION);
        st.set_rate(f64::NAN);
        assert_eq!(st.rate(), 1.0 + MAX_RATE_DEVIATION);
        st.set_rate(-1.0);
        assert_eq!(st.rate(), 1.0 - MAX_RATE_DEVIATION);
        assert!(RateStage::new(0).is_err());
    }
}
