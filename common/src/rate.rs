//! Variable-rate playout: a resampler between the decoded stream and the output, so the
//! delay controller can play a little faster or slower than real time (the one control
//! loop of [`crate::delay`]). Uses rubato's asynchronous polynomial resampler with a fixed
//! output chunk; everything is allocated in [`RateStage::new`], processing does not
//! allocate.
//!
//! At a rate of exactly 1 the stage is bypassed by the caller (fixed mode), so fixed-delay
//! playout stays bit-exact.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Adjustable, Async, FixedAsync, PolynomialDegree, Resampler};

/// Output frames per resampler call: small, so a rate change takes effect within 0.7 ms.
pub const OUT_CHUNK: usize = 32;

pub struct RateStage {
    resampler: Async<f32>,
    channels: usize,
    input: Vec<f32>,
    output: Vec<f32>,
    out_pos: usize,
    out_len: usize,
    rate: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot create resampler: {0}")]
pub struct RateError(String);

impl RateStage {
    pub fn new(channels: usize) -> Result<Self, RateError> {
        // rubato's ratio is output rate / input rate: 1 / (our rate). ±5 % head room.
        let resampler = Async::<f32>::new_poly(
            1.0,
            1.05,
            PolynomialDegree::Cubic,
            OUT_CHUNK,
            channels,
            FixedAsync::Output,
        )
        .map_err(|e| RateError(e.to_string()))?;
        let input = vec![0.0; resampler.input_frames_max() * channels];
        let output = vec![0.0; resampler.output_frames_max() * channels];
        Ok(RateStage {
            resampler,
            channels,
            input,
            output,
            out_pos: 0,
            out_len: 0,
            rate: 1.0,
        })
    }

    /// Stream samples consumed per output sample.
    pub fn set_rate(&mut self, rate: f64) {
        if rate != self.rate
            && rate.is_finite()
            && self.resampler.set_resample_ratio(1.0 / rate, true).is_ok()
        {
            self.rate = rate;
        }
    }

    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Output frames already resampled and waiting.
    pub fn pending_output_frames(&self) -> usize {
        self.out_len - self.out_pos
    }

    /// Stream frames inside the stage (not yet played): filter delay plus pending output,
    /// expressed in stream frames.
    pub fn latency_stream_frames(&self) -> f64 {
        // the true filter delay is one frame less than `output_delay()` (measured in a test below)
        (self.resampler.output_delay().saturating_sub(1) + self.pending_output_frames()) as f64 * self.rate
    }

    pub fn reset(&mut self) {
        self.resampler.reset();
        let _ = self.resampler.set_resample_ratio(1.0, false);
        self.rate = 1.0;
        self.out_pos = 0;
        self.out_len = 0;
    }

    /// Fill `out` (interleaved). `source` must fill the slice it is given with the next
    /// stream frames. Returns the number of stream frames consumed.
    pub fn render(&mut self, out: &mut [f32], mut source: impl FnMut(&mut [f32])) -> u64 {
        let ch = self.channels;
        let frames = out.len() / ch;
        let mut done = 0;
        let mut consumed = 0u64;
        while done < frames {
            if self.out_pos >= self.out_len {
                let need = self.resampler.input_frames_next();
                source(&mut self.input[..need * ch]);
                consumed += need as u64;
                let (Ok(input), Ok(mut output)) = (
                    InterleavedSlice::new(&self.input[..], ch, need),
                    InterleavedSlice::new_mut(&mut self.output[..], ch, OUT_CHUNK),
                ) else {
                    out[done * ch..].fill(0.0);
                    return consumed;
                };
                match self.resampler.process_into_buffer(&input, &mut output, None) {
                    Ok((_, produced)) => {
                        self.out_pos = 0;
                        self.out_len = produced;
                    }
                    Err(_) => {
                        out[done * ch..].fill(0.0);
                        return consumed;
                    }
                }
                if self.out_len == 0 {
                    continue;
                }
            }
            let n = (self.out_len - self.out_pos).min(frames - done);
            out[done * ch..(done + n) * ch]
                .copy_from_slice(&self.output[self.out_pos * ch..(self.out_pos + n) * ch]);
            self.out_pos += n;
            done += n;
        }
        consumed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, start: u64) -> impl FnMut(&mut [f32]) {
        let mut i = start;
        let _ = n;
        move |buf: &mut [f32]| {
            for s in buf.iter_mut() {
                *s = ((i as f64) * 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0).sin() as f32 * 0.5;
                i += 1;
            }
        }
    }

    #[test]
    fn consumes_at_the_requested_rate() {
        for rate in [1.0, 1.005, 0.98] {
            let mut st = RateStage::new(1).unwrap();
            st.set_rate(rate);
            let mut out = vec![0f32; 128];
            let mut src = tone(0, 0);
            let mut consumed = 0;
            for _ in 0..3000 {
                consumed += st.render(&mut out, &mut src);
            }
            let expected = 3000.0 * 128.0 * rate;
            assert!(
                (consumed as f64 - expected).abs() < 200.0,
                "rate {rate}: {consumed} vs {expected}"
            );
        }
    }

    #[test]
    fn a_tone_stays_a_tone_at_rate_one() {
        let mut st = RateStage::new(1).unwrap();
        let mut out = vec![0f32; 48_000];
        let mut src = tone(0, 0);
        st.render(&mut out, &mut src);
        // after the filter delay the output is the same 1 kHz sine, delayed
        let err_at = |d: usize| -> f32 {
            (1000..40_000)
                .map(|i| {
                    let want =
                        ((i - d) as f64 * 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0).sin() as f32 * 0.5;
                    (out[i] - want).abs()
                })
                .fold(0.0, f32::max)
        };
        let (best, err) = (0..8)
            .map(|d| (d, err_at(d)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!(err < 1e-3, "max error {err} at delay {best}");
        assert_eq!(
            best,
            st.resampler.output_delay() - 1,
            "reported delay {}",
            st.resampler.output_delay()
        );
    }
}
