//! The rate stage of commit e8a5b08 (4-point cubic Lagrange interpolation, fixed-point
//! position), kept here only as the reference the benchmark compares the polyphase stage
//! with. Its tests and module doc are in the history of `common/src/rate.rs`.

/// Largest deviation of the rate from 1 the stage accepts (the controller stays within it).
const MAX_RATE_DEVIATION: f64 = 0.05;

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

#[derive(Debug)]
pub struct RateError;

fn to_fixed(rate: f64) -> u64 {
    (rate * ONE as f64).round() as u64
}

impl RateStage {
    pub fn new(channels: usize) -> Result<Self, RateError> {
        if channels == 0 || channels > 255 {
            return Err(RateError);
        }
        let frames = BEFORE + FETCH_MAX + AFTER + 2;
        let mut st = RateStage {
            channels,
            buf: vec![0.0; frames * channels],
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
