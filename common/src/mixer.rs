//! Mixing many streams into one output: per-stream gain with click-free ramps, fade-in
//! when a stream starts and fade-out when it leaves, and a soft clipper so the sum never
//! wraps or hard-clips. Allocation-free after [`Mixer::new`].
//!
//! The clipper is Opus's own `opus_pcm_soft_clip` (through `opus::SoftClip`): samples
//! within ±1 pass unchanged, so while the sum stays in range the mix is exactly the sum of
//! the streams times their gains; beyond ±1 it bends the excursion smoothly back under 1
//! instead of wrapping or flattening it.

/// Length of fades and gain ramps: 10 ms.
pub const FADE_FRAMES: u32 = 480;

/// Where a stream is in its life, as the mixer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fade {
    /// Rising from silence; `pos` of [`FADE_FRAMES`] done.
    In {
        pos: u32,
    },
    Steady,
    /// Falling to silence; `pos` of [`FADE_FRAMES`] done.
    Out {
        pos: u32,
    },
    /// Silent: the stream can be handed back to be freed.
    Done,
}

/// Gain state of one stream in the mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamGain {
    /// Gain the stream should reach (linear).
    pub target: f32,
    /// Gain applied at the last frame (linear), ramps towards `target`.
    current: f32,
    pub fade: Fade,
}

impl StreamGain {
    /// A stream that starts with a fade-in to `gain` (linear).
    pub fn new(gain: f32) -> Self {
        StreamGain {
            target: gain,
            current: gain,
            fade: Fade::In { pos: 0 },
        }
    }

    /// A stream that starts at full gain (no fade-in): for tests that compare exact sums.
    pub fn immediate(gain: f32) -> Self {
        StreamGain {
            target: gain,
            current: gain,
            fade: Fade::Steady,
        }
    }

    /// Start fading out (idempotent).
    pub fn fade_out(&mut self) {
        match self.fade {
            Fade::Out { .. } | Fade::Done => {}
            Fade::In { pos } => {
                self.fade = Fade::Out {
                    pos: FADE_FRAMES - pos,
                }
            }
            Fade::Steady => self.fade = Fade::Out { pos: 0 },
        }
    }

    pub fn is_done(&self) -> bool {
        self.fade == Fade::Done
    }

    /// Envelope (0..1) at the next frame, and advance.
    fn step(&mut self) -> f32 {
        let ramp = 1.0 / FADE_FRAMES as f32;
        let env = match self.fade {
            Fade::In { pos } => {
                let e = pos as f32 * ramp;
                self.fade = if pos + 1 >= FADE_FRAMES {
                    Fade::Steady
                } else {
                    Fade::In { pos: pos + 1 }
                };
                e
            }
            Fade::Steady => 1.0,
            Fade::Out { pos } => {
                let e = 1.0 - pos as f32 * ramp;
                self.fade = if pos + 1 >= FADE_FRAMES {
                    Fade::Done
                } else {
                    Fade::Out { pos: pos + 1 }
                };
                e.max(0.0)
            }
            Fade::Done => 0.0,
        };
        if self.current != self.target {
            // exponential approach, time constant FADE_FRAMES / 4 (2.5 ms): no zipper noise
            let d = self.target - self.current;
            self.current = if d.abs() < 1e-5 {
                self.target
            } else {
                self.current + d * (4.0 / FADE_FRAMES as f32)
            };
        }
        env * self.current
    }
}

/// Converts decibels to a linear gain.
pub fn db_to_linear(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// The mix bus. Streams render into [`Mixer::scratch`], then [`Mixer::add`] adds them with
/// their gain; [`Mixer::finish`] soft-clips into the output.
pub struct Mixer {
    channels: usize,
    max_frames: usize,
    mix: Vec<f32>,
    scratch: Vec<f32>,
    clip: opus::SoftClip,
    frames: usize,
    /// Output samples the clipper changed (the sum went beyond ±1).
    pub clipped_samples: u64,
}

impl Mixer {
    pub fn new(channels: usize, max_frames: usize) -> Self {
        let ch = channels.clamp(1, 2);
        Mixer {
            channels: ch,
            max_frames,
            mix: crate::mem::resident_vec(max_frames * ch, 0.0),
            scratch: crate::mem::resident_vec(max_frames * ch, 0.0),
            clip: opus::SoftClip::new(if ch == 2 {
                opus::Channels::Stereo
            } else {
                opus::Channels::Mono
            }),
            frames: 0,
            clipped_samples: 0,
        }
    }

    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Start a period of `frames` frames (at most `max_frames`; more is truncated).
    pub fn begin(&mut self, frames: usize) {
        self.frames = frames.min(self.max_frames);
        self.mix[..self.frames * self.channels].fill(0.0);
    }

    /// Frames of the current period.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The buffer a stream renders the current period into (interleaved).
    pub fn scratch(&mut self) -> &mut [f32] {
        &mut self.scratch[..self.frames * self.channels]
    }

    /// Add the scratch buffer to the mix with the stream's gain and fade.
    pub fn add(&mut self, gain: &mut StreamGain) {
        let ch = self.channels;
        if gain.fade == Fade::Steady && gain.current == gain.target {
            let g = gain.current;
            if g == 1.0 {
                for (m, s) in self.mix[..self.frames * ch].iter_mut().zip(&self.scratch) {
                    *m += *s;
                }
            } else {
                for (m, s) in self.mix[..self.frames * ch].iter_mut().zip(&self.scratch) {
                    *m += *s * g;
                }
            }
            return;
        }
        for f in 0..self.frames {
            let g = gain.step();
            for c in 0..ch {
                self.mix[f * ch + c] += self.scratch[f * ch + c] * g;
            }
        }
    }

    /// Soft-clip the mix into `out` (interleaved, `frames × channels`).
    pub fn finish(&mut self, out: &mut [f32]) {
        let n = (self.frames * self.channels).min(out.len());
        let over = self.mix[..n].iter().filter(|s| s.abs() > 1.0).count();
        if over > 0 {
            self.clipped_samples += over as u64;
            self.clip.apply(&mut self.mix[..n]);
        }
        out[..n].copy_from_slice(&self.mix[..n]);
        out[n..].fill(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_is_exact_within_range() {
        let mut m = Mixer::new(2, 256);
        let mut a = StreamGain::immediate(1.0);
        let mut b = StreamGain::immediate(db_to_linear(-6.0));
        m.begin(128);
        m.scratch()
            .iter_mut()
            .enumerate()
            .for_each(|(i, s)| *s = (i as f32 * 0.01).sin() * 0.4);
        m.add(&mut a);
        m.scratch()
            .iter_mut()
            .enumerate()
            .for_each(|(i, s)| *s = (i as f32 * 0.03).cos() * 0.4);
        m.add(&mut b);
        let mut out = vec![0f32; 256];
        m.finish(&mut out);
        let g = db_to_linear(-6.0);
        for (i, o) in out.iter().enumerate() {
            let want = (i as f32 * 0.01).sin() * 0.4 + (i as f32 * 0.03).cos() * 0.4 * g;
            assert!((o - want).abs() < 1e-6, "{i}");
        }
        assert_eq!(m.clipped_samples, 0);
    }

    #[test]
    fn overload_is_bent_not_wrapped() {
        let mut m = Mixer::new(1, 512);
        m.begin(480);
        for k in 0..4 {
            m.scratch()
                .iter_mut()
                .enumerate()
                .for_each(|(i, s)| *s = (i as f32 * 0.05 + k as f32).sin() * 0.9);
            m.add(&mut StreamGain::immediate(1.0));
        }
        let mut out = vec![0f32; 480];
        m.finish(&mut out);
        assert!(out.iter().all(|s| s.abs() <= 1.0 && s.is_finite()));
        assert!(m.clipped_samples > 0);
    }

    #[test]
    fn fades_are_ramps_and_end_in_silence() {
        let mut m = Mixer::new(1, 4096);
        let mut g = StreamGain::new(1.0);
        m.begin(FADE_FRAMES as usize * 2);
        m.scratch().fill(1.0);
        m.add(&mut g);
        let mut out = vec![0f32; FADE_FRAMES as usize * 2];
        m.finish(&mut out);
        assert_eq!(out[0], 0.0);
        assert!(out.windows(2).all(|w| w[1] >= w[0]), "fade-in is monotone");
        assert_eq!(out[FADE_FRAMES as usize + 10], 1.0);
        g.fade_out();
        m.begin(FADE_FRAMES as usize * 2);
        m.scratch().fill(1.0);
        m.add(&mut g);
        m.finish(&mut out);
        assert!(out.windows(2).all(|w| w[1] <= w[0]), "fade-out is monotone");
        assert_eq!(out[FADE_FRAMES as usize + 1], 0.0);
        assert!(g.is_done());
    }
}
