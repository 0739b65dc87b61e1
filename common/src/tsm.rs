//! Time-scale modification by whole pitch periods: moves the playout delay without changing
//! the pitch, the way WebRTC NetEq's *accelerate* and *preemptive expand* do.
//!
//! Why: the adaptive delay used to move by resampling at up to ±2 %, which shifts the pitch
//! by up to a third of a semitone while it glides (440 Hz plays at 431–449 Hz). Removing or
//! repeating a whole pitch period keeps every waveform cycle as it was: only where the
//! audio is (near) periodic, or quiet, is a splice made, and it is cross-faded.
//!
//! # What a call does
//! [`TimeStretch::accelerate`] looks for a lag `T` in `[max(min_remove, 120), min(max_remove,
//! 1440, frames after pos - 240)]` such that the 5 ms at the play point `pos` resemble the 5 ms
//! at `pos + T`, then rewrites those 5 ms at `pos + T` as a cross-fade from `buf[pos..]` into
//! `buf[pos+T..]`; the caller skips to `pos + T`. [`TimeStretch::expand`] is the mirror
//! image: `T ≤ pos` frames back into the history, the 5 ms at `pos - T` rewritten as the
//! cross-fade from the upcoming `buf[pos..]` into `buf[pos-T..]`, and the caller steps back
//! to `pos - T`. The rewritten frames are [`Splice::overlap`] = [`OVERLAP_FRAMES`]; every other
//! frame is left bit for bit (the tests check it). A `None` leaves `buf` untouched.
//!
//! # Design
//! - **Lags 120–1440 frames (2.5–30 ms).** 2.5–15 ms covers speech pitch (400–66 Hz); the range
//!   goes on to 30 ms so that one call can remove or repeat *several* periods of a voice or
//!   an instrument (WSOLA-like: whatever lag correlates best), which moves the delay faster.
//!   A longer lag is preferred when its distortion `1 - quality` is at most twice the best
//!   candidate's; that ratio, not an absolute slack, keeps a pure tone on its best-matching
//!   multiple (see the slip below). The range is narrowed by the caller's `min/max` and by
//!   the frames available, so [`TimeStretch::LOOKAHEAD_FRAMES`] (1680) and
//!   [`TimeStretch::HISTORY_FRAMES`] (1440) are what the *full* range needs, not minimums:
//!   accelerate needs 360 frames after `pos`, expand 120 before and 240 after.
//! - **Search: coarse at 6 kHz, refined at 48 kHz**, on the mono mix. The span is averaged
//!   in blocks of 8 frames (integrate-and-dump, aligned on the play point so a decimated lag
//!   `k` is exactly `8k`), and the normalised cross-correlation over a 30-sample (5 ms)
//!   window is computed for every decimated lag (15–180). The six best local maxima, plus
//!   the longest one within 0.05 of the best, are refined at full rate over ±8 frames. This
//!   is about 5× cheaper than searching every lag at full rate (below); the coarse stage only
//!   has to land within a few frames of a good lag, the refinement picks the exact one.
//! - **Quality** compares the two segments that will be cross-faded, over *all channels*
//!   (not the mono mix, so anti-phase stereo cannot fool it), at each refined candidate:
//!   `2xy / (xx + yy)` = `1 - |x - y|² / (|x|² + |y|²)`, the normalised cross-correlation
//!   times the level match `2√(xx·yy) / (xx + yy)`; 1.0 for a segment that repeats
//!   exactly. The search itself is level-blind (normalised correlation finds the shape);
//!   the level term keeps expand from replaying a louder past into a quieter present (a
//!   tone 20 dB down 5 frames before the play point: correlation 1, quality < 0.25, refused
//!   at 0.9; test `tsm_expand_does_not_replay_a_louder_past`). The caller's
//!   `min_quality` decides what to accept (the tests use 0.9; a caller can ask for more when
//!   the delay is only a little off and accept less when it must move; [`QUIET_ONLY`] asks
//!   for a quiet passage and skips the search).
//! - **Quiet rule:** when every 2.5 ms block of the whole span (all channels) is below
//!   [`QUIET_DBFS`] (-50 dB RMS re 1.0), nothing is searched: the longest lag allowed is
//!   taken, quality reported 1.0, [`Splice::quiet`] set. Blockwise, so a click in the middle
//!   of a quiet passage is not averaged away.
//! - **Cross-fade: 240 frames (5 ms), `w = sin²`, gains `1-w` and `w`** (constant sum, smooth
//!   at both ends): for correlated segments the sum keeps the level; for quiet, uncorrelated
//!   ones the ≤3 dB dip in the middle is at -50 dB. The fade is computed into a scratch
//!   buffer first because for `T < 240` the two segments overlap.
//! - **Real time:** all buffers are allocated in [`TimeStretch::new`]; a call reads at most
//!   1680 frames and does a fixed amount of work (~11 k multiply-adds coarse, ~7 × 17 × 480
//!   refined, 7 × 480 × channels for quality). Any argument is checked before indexing:
//!   `pos` beyond the buffer, `min > max`, ranges outside 120–1440, too few frames, zero
//!   channels or NaN in the audio give `None`, never a panic (proptest in the tests).
//!
//! # Measurements
//! Cost, stereo, full range (min 1, max 1440), `cargo run --release -p patchcord-common
//! --example tsm_cost` (this 2-core VM, load average 5 from other jobs while measuring,
//! hence the tails; 20 000 calls per row; 0 allocations inside the calls under
//! `assert_no_alloc`):
//!
//! | signal        | call       | p50 µs | p99 µs | result               |
//! |---------------|------------|-------:|-------:|----------------------|
//! | tone 440 Hz   | accelerate |    8.3 |    8.6 | 1200 frames, q 1.000 |
//! | tone 440 Hz   | expand     |    8.3 |    8.5 | 1200 frames, q 1.000 |
//! | voiced 120 Hz | accelerate |    8.3 |    9.4 | 1152 frames, q 0.999 |
//! | voiced 120 Hz | expand     |    8.2 |    9.2 |  730 frames, q 0.999 |
//! | white noise   | accelerate |    8.4 |    9.2 | None                 |
//! | white noise   | expand     |    8.3 |    9.2 | None                 |
//!
//! (An earlier run at the same load: p50 8.5–9.3, p99 12.7–13.9.)
//! Searching every lag at full rate instead (the same code with a decimation of 1): 43–52 µs
//! p50. Max per call was 4–20 ms in every run: preemption on the loaded VM, not the code.
//!
//! Quality and pitch, `cargo test --release -p patchcord-common --lib tsm -- --nocapture`:
//! 2 s streamed in 480-frame blocks, a call every 20 ms (max 720 frames) or every 30 ms
//! (max 1440), min quality 0.9; every call succeeded, so these remove or add 450–1980 ms:
//! - 1 kHz and 200 Hz + 4 harmonics (integer periods of 48 and 240 frames): quality 1.00000,
//!   spectral peak and zero-crossing frequency exact to 0.0001 Hz, largest sample step equal
//!   to the clean tone's.
//! - 440 Hz (period 109.09 frames, not an integer): quality ≥ 0.99994, largest step 0.02883
//!   against 0.02879 clean. Every 30 ms it finds 1200 frames = exactly 11 periods: 440.0000 Hz.
//!   Every 20 ms, limited to 720 frames, the best multiple is 218 frames (2 periods less 0.18
//!   frame), and 99 splices in 2 s add up to a 0.083 Hz shift of the *average* frequency (the
//!   phase slips 0.18/109 of a cycle per splice; the pitch between splices is untouched).
//!   This slip, at most half a frame per splice, is the price of integer lags: the average
//!   frequency moves by at most `splices per second × 0.5 / period` Hz, 0.018 Hz at 440 Hz
//!   for 4 splices a second.
//! - White noise: no splice reaches 0.9 (best quality over 39 seeds 0.15); formant-filtered
//!   noise with a syllable envelope (speech-like, unvoiced) peaks at 0.78, refused at 0.9.
//!   The same white noise at -60 dB is quiet: accepted with the full lag asked for.

/// Shortest lag searched, in frames (2.5 ms: a 400 Hz voice's period).
pub const MIN_LAG_FRAMES: usize = 120;
/// Longest lag searched and so the most one call removes or repeats, in frames (30 ms: two
/// periods of a 66 Hz voice, several of any higher one).
pub const MAX_LAG_FRAMES: usize = 1440;
/// Length of the cross-fade, which is also the correlation window, in frames (5 ms).
pub const OVERLAP_FRAMES: usize = 240;
/// A passage whose every 2.5 ms block is below this level (RMS over all channels, dB
/// relative to a sample value of 1.0) is "quiet": any lag will do, quality reported 1.0.
pub const QUIET_DBFS: f32 = -50.0;
/// A `min_quality` this high asks for a quiet passage only: no search is made (none could
/// report more than a quiet passage's 1.0).
pub const QUIET_ONLY: f32 = 1.0;

/// Decimation factor of the coarse search (48 kHz → 6 kHz).
const DECIMATION: usize = 8;
/// Correlation window of the coarse search, in decimated samples.
const COARSE_WINDOW: usize = OVERLAP_FRAMES / DECIMATION;
/// Full-rate lags tried on either side of a coarse peak.
const REFINE_RADIUS: usize = DECIMATION;
/// Coarse peaks refined at full rate: the best ones, plus the longest one close to the best.
const MAX_CANDIDATES: usize = 7;
/// A longer lag is preferred (it moves the delay faster) when its coarse correlation is
/// within this of the best peak's...
const COARSE_SLACK: f32 = 0.05;
/// ...and its full-rate distortion `1 - quality` at most this many times the best
/// candidate's (plus [`DISTORTION_FLOOR`]).
const DISTORTION_RATIO: f32 = 2.0;
/// Distortion below which two candidates count as equal (float noise of the correlation).
const DISTORTION_FLOOR: f32 = 1e-6;
/// Block over which the quiet rule measures the level (2.5 ms).
pub(crate) const QUIET_BLOCK_FRAMES: usize = 120;

/// One splice done by [`TimeStretch::accelerate`] or [`TimeStretch::expand`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Splice {
    /// Frames removed (accelerate) or repeated (expand).
    pub frames: usize,
    /// How alike the two segments cross-faded are, over all channels: `2xy / (xx + yy)`, the
    /// normalised cross-correlation scaled by how well their levels match; 1.0 for identical
    /// segments and when the passage was quiet.
    pub quality: f32,
    /// The passage was below [`QUIET_DBFS`]; the lag was not searched.
    pub quiet: bool,
    /// Frames rewritten by the cross-fade ([`OVERLAP_FRAMES`]).
    pub overlap: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    /// The candidate segment lies `lag` frames after the reference (accelerate).
    Ahead,
    /// The candidate segment lies `lag` frames before the reference (expand).
    Behind,
}

/// Time-scale modification of an interleaved 48 kHz stream by whole pitch periods.
pub struct TimeStretch {
    channels: usize,
    /// Mono mix of the searched span.
    mono: Vec<f32>,
    /// `mono` decimated by [`DECIMATION`].
    coarse: Vec<f32>,
    /// Coarse normalised correlation per decimated lag.
    coarse_corr: Vec<f32>,
    /// Cross-fade output before it is written back (the regions may overlap).
    fade: Vec<f32>,
    /// Fade-in gain per frame of the cross-fade (the fade-out gain is `1 - w`).
    window: Vec<f32>,
}

impl TimeStretch {
    /// History before the play point that [`expand`](Self::expand) may repeat.
    pub const HISTORY_FRAMES: usize = MAX_LAG_FRAMES;
    /// Frames after the play point that [`accelerate`](Self::accelerate) may read and
    /// rewrite (its full lag range); fewer only narrow the range. `expand` needs
    /// [`OVERLAP_FRAMES`] after the play point.
    pub const LOOKAHEAD_FRAMES: usize = MAX_LAG_FRAMES + OVERLAP_FRAMES;

    /// All allocation happens here. `channels` of 0 gives a stretcher that always
    /// returns `None`.
    pub fn new(channels: usize) -> Self {
        let window = (0..OVERLAP_FRAMES)
            .map(|i| {
                let s = (std::f64::consts::FRAC_PI_2 * (i as f64 + 0.5) / OVERLAP_FRAMES as f64).sin();
                (s * s) as f32
            })
            .collect();
        let span = MAX_LAG_FRAMES + OVERLAP_FRAMES;
        Self {
            channels,
            mono: vec![0.0; span],
            coarse: vec![0.0; span / DECIMATION + 1],
            coarse_corr: vec![0.0; MAX_LAG_FRAMES / DECIMATION + 2],
            fade: vec![0.0; OVERLAP_FRAMES * channels],
            window,
        }
    }

    /// Number of interleaved channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Removes `T` frames, `min_remove ≤ T ≤ max_remove`, one or more whole pitch periods,
    /// best correlated: rewrites frames `[pos+T, pos+T+OVERLAP_FRAMES)` as the cross-fade from
    /// `buf[pos..]` into `buf[pos+T..]`; the caller then continues playing at `pos + T`.
    /// Frames `[0, pos)` are history (unused here). Returns `None`, `buf` untouched, when no
    /// splice reaches `min_quality` or there are too few frames after `pos`.
    pub fn accelerate(
        &mut self,
        buf: &mut [f32],
        pos: usize,
        min_remove: usize,
        max_remove: usize,
        min_quality: f32,
    ) -> Option<Splice> {
        let ch = self.channels;
        if ch == 0 {
            return None;
        }
        let frames = buf.len() / ch;
        let after = frames.checked_sub(pos)?;
        let lo = min_remove.max(MIN_LAG_FRAMES);
        let hi = max_remove
            .min(MAX_LAG_FRAMES)
            .min(after.checked_sub(OVERLAP_FRAMES)?);
        if lo > hi {
            return None;
        }
        self.splice(
            buf,
            pos,
            pos,
            pos + hi + OVERLAP_FRAMES,
            Dir::Ahead,
            lo,
            hi,
            min_quality,
        )
    }

    /// Repeats `T` frames, `min_add ≤ T ≤ max_add`, one or more whole pitch periods, best
    /// correlated: rewrites frames `[pos-T, pos-T+OVERLAP_FRAMES)` as the cross-fade from the
    /// upcoming `buf[pos..]` into the history `buf[pos-T..]`; the caller continues at `pos - T`
    /// (frames `[pos-T, pos)` play again, seamlessly, then `pos` onward). Needs `T ≤ pos` and
    /// [`OVERLAP_FRAMES`] frames after `pos`. Returns `None`, `buf` untouched, when no
    /// splice reaches `min_quality` or there are too few frames.
    pub fn expand(
        &mut self,
        buf: &mut [f32],
        pos: usize,
        min_add: usize,
        max_add: usize,
        min_quality: f32,
    ) -> Option<Splice> {
        let ch = self.channels;
        if ch == 0 {
            return None;
        }
        let frames = buf.len() / ch;
        if frames.checked_sub(pos)? < OVERLAP_FRAMES {
            return None;
        }
        let lo = min_add.max(MIN_LAG_FRAMES);
        let hi = max_add.min(MAX_LAG_FRAMES).min(pos);
        if lo > hi {
            return None;
        }
        self.splice(
            buf,
            pos,
            pos - hi,
            pos + OVERLAP_FRAMES,
            Dir::Behind,
            lo,
            hi,
            min_quality,
        )
    }

    /// The part of [`accelerate`](Self::accelerate) and [`expand`](Self::expand) after
    /// their checks: the frames `[from, to)` are the whole span read; quiet, any lag in
    /// range will do (the longest), else the search finds one; then the cross-fade.
    #[allow(clippy::too_many_arguments)]
    fn splice(
        &mut self,
        buf: &mut [f32],
        pos: usize,
        from: usize,
        to: usize,
        dir: Dir,
        lo: usize,
        hi: usize,
        min_quality: f32,
    ) -> Option<Splice> {
        let ch = self.channels;
        let (lag, quality, quiet) = if is_quiet(&buf[from * ch..to * ch], ch) {
            (hi, 1.0, true)
        } else if min_quality >= QUIET_ONLY {
            return None;
        } else {
            let (lag, q) = self.search(buf, from, pos, dir, lo, hi, min_quality)?;
            (lag, q, false)
        };
        if quality.partial_cmp(&min_quality).is_none_or(|o| o.is_lt()) {
            return None;
        }
        let other = match dir {
            Dir::Ahead => pos + lag,
            Dir::Behind => pos - lag,
        };
        self.cross_fade(buf, pos, other);
        Some(Splice {
            frames: lag,
            quality,
            quiet,
            overlap: OVERLAP_FRAMES,
        })
    }

    /// Finds the lag in `[lo, hi]` to splice at: the reference segment is the
    /// [`OVERLAP_FRAMES`] frames at `reference`, the candidate the same length `lag` frames
    /// ahead of or behind it. `start` is the first frame of the span searched
    /// (`hi + OVERLAP_FRAMES` frames). Returns the lag and its all-channel quality, among the
    /// candidates that reach `min_quality`. Callers have checked that the span lies in `buf`.
    #[allow(clippy::too_many_arguments)]
    fn search(
        &mut self,
        buf: &[f32],
        start: usize,
        reference: usize,
        dir: Dir,
        lo: usize,
        hi: usize,
        min_quality: f32,
    ) -> Option<(usize, f32)> {
        let ch = self.channels;
        let n = hi + OVERLAP_FRAMES;
        // Mono mix of the span.
        let scale = 1.0 / ch as f32;
        for (m, frame) in self.mono[..n]
            .iter_mut()
            .zip(buf[start * ch..(start + n) * ch].chunks_exact(ch))
        {
            *m = frame.iter().sum::<f32>() * scale;
        }
        let mono = &self.mono[..n];
        let ref_m = reference - start;
        // Coarse: block means of DECIMATION frames, aligned so that the reference starts on
        // a block boundary; a decimated lag k is the full-rate lag k * DECIMATION.
        let offset = ref_m % DECIMATION;
        let dlen = (n - offset) / DECIMATION;
        let inv = 1.0 / DECIMATION as f32;
        for (d, block) in self.coarse[..dlen]
            .iter_mut()
            .zip(mono[offset..].chunks_exact(DECIMATION))
        {
            *d = block.iter().sum::<f32>() * inv;
        }
        let coarse = &self.coarse[..dlen];
        let ref_d = (ref_m - offset) / DECIMATION;
        let r = &coarse[ref_d..ref_d + COARSE_WINDOW];
        let r_energy = dot(r, r);
        let k_lo = (lo / DECIMATION).max(1);
        let k_hi = match dir {
            Dir::Ahead => hi.div_ceil(DECIMATION).min(dlen - COARSE_WINDOW - ref_d),
            Dir::Behind => hi.div_ceil(DECIMATION).min(ref_d),
        };
        if k_lo > k_hi {
            return None;
        }
        for k in k_lo..=k_hi {
            let c0 = match dir {
                Dir::Ahead => ref_d + k,
                Dir::Behind => ref_d - k,
            };
            let c = &coarse[c0..c0 + COARSE_WINDOW];
            self.coarse_corr[k] = normalised(dot(r, c), r_energy, dot(c, c));
        }
        // Coarse peaks: the best few, plus the longest within COARSE_SLACK of the best.
        let corr = &self.coarse_corr;
        let is_peak = |k: usize| {
            (k == k_lo || corr[k] >= corr[k - 1]) && (k == k_hi || corr[k] >= corr[k + 1]) && corr[k] > 0.0
        };
        let mut cands = [0usize; MAX_CANDIDATES];
        let mut n_cands = 0;
        for k in k_lo..=k_hi {
            if !is_peak(k) {
                continue;
            }
            // Insertion into the best MAX_CANDIDATES - 1, by coarse correlation.
            let keep = MAX_CANDIDATES - 1;
            let mut i = n_cands.min(keep);
            if i == keep && corr[cands[keep - 1]] >= corr[k] {
                continue;
            }
            while i > 0 && corr[cands[i - 1]] < corr[k] {
                if i < keep {
                    cands[i] = cands[i - 1];
                }
                i -= 1;
            }
            cands[i] = k;
            n_cands = (n_cands + 1).min(keep);
        }
        if n_cands == 0 {
            return None;
        }
        let best_c = corr[cands[0]];
        if let Some(k) = (k_lo..=k_hi)
            .rev()
            .find(|&k| is_peak(k) && corr[k] >= best_c - COARSE_SLACK)
        {
            if !cands[..n_cands].contains(&k) {
                cands[n_cands] = k;
                n_cands += 1;
            }
        }
        // Refinement at full rate around each peak, then the all-channel quality.
        let x = &mono[ref_m..ref_m + OVERLAP_FRAMES];
        let x_energy = dot(x, x);
        let mut chosen: [(usize, f32); MAX_CANDIDATES] = [(0, f32::NAN); MAX_CANDIDATES];
        for (slot, &k) in chosen.iter_mut().zip(&cands[..n_cands]) {
            let centre = k * DECIMATION;
            let from = centre.saturating_sub(REFINE_RADIUS).max(lo);
            let to = (centre + REFINE_RADIUS).min(hi);
            let mut best = (0usize, f32::NEG_INFINITY);
            for lag in from..=to {
                let c0 = match dir {
                    Dir::Ahead => ref_m + lag,
                    Dir::Behind => ref_m - lag,
                };
                let y = &mono[c0..c0 + OVERLAP_FRAMES];
                let q = normalised(dot(x, y), x_energy, dot(y, y));
                if q > best.1 {
                    best = (lag, q);
                }
            }
            if best.1 > f32::NEG_INFINITY {
                *slot = (best.0, self.quality(buf, reference, best.0, dir));
            }
        }
        let best_q = chosen
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, |a, b| if b > a { b } else { a });
        chosen
            .iter()
            .filter(|c| {
                c.1 >= min_quality && 1.0 - c.1 <= DISTORTION_RATIO * (1.0 - best_q) + DISTORTION_FLOOR
            })
            .max_by_key(|c| c.0)
            .copied()
    }

    /// Quality of splicing the [`OVERLAP_FRAMES`] frames at `reference` with those `lag`
    /// frames ahead of or behind, over all channels: `2xy / (xx + yy)`, that is
    /// `1 - |x - y|² / (|x|² + |y|²)`, the normalised cross-correlation scaled by how well
    /// the two levels match (`2√(xx·yy) / (xx + yy)`). 0 when both are silent.
    fn quality(&self, buf: &[f32], reference: usize, lag: usize, dir: Dir) -> f32 {
        let ch = self.channels;
        let len = OVERLAP_FRAMES * ch;
        let c0 = match dir {
            Dir::Ahead => reference + lag,
            Dir::Behind => reference - lag,
        };
        let x = &buf[reference * ch..reference * ch + len];
        let y = &buf[c0 * ch..c0 * ch + len];
        let energy = dot(x, x) + dot(y, y);
        if energy > 0.0 {
            2.0 * dot(x, y) / energy
        } else {
            0.0
        }
    }

    /// Rewrites the [`OVERLAP_FRAMES`] frames at `target` as the cross-fade from the frames at
    /// `source` (fading out) into those at `target` (fading in).
    fn cross_fade(&mut self, buf: &mut [f32], source: usize, target: usize) {
        let ch = self.channels;
        let len = OVERLAP_FRAMES * ch;
        {
            let from = &buf[source * ch..source * ch + len];
            let into = &buf[target * ch..target * ch + len];
            for (((out, a), b), &w) in self
                .fade
                .chunks_exact_mut(ch)
                .zip(from.chunks_exact(ch))
                .zip(into.chunks_exact(ch))
                .zip(&self.window)
            {
                for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                    *o = a + w * (b - a);
                }
            }
        }
        buf[target * ch..target * ch + len].copy_from_slice(&self.fade);
    }
}

/// Whether every [`QUIET_BLOCK_FRAMES`] block of the interleaved `span` is below
/// [`QUIET_DBFS`].
pub(crate) fn is_quiet(span: &[f32], ch: usize) -> bool {
    let threshold = 10f32.powf(QUIET_DBFS / 10.0);
    span.chunks(QUIET_BLOCK_FRAMES * ch)
        .all(|b| dot(b, b) < threshold * b.len() as f32)
}

/// `xy / sqrt(xx * yy)`, 0 when either segment is silent.
fn normalised(xy: f32, xx: f32, yy: f32) -> f32 {
    let d = xx * yy;
    if d > 0.0 {
        xy / d.sqrt()
    } else {
        0.0
    }
}

/// Dot product with eight independent accumulators, so that it vectorises.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (a8, b8) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a8
        .remainder()
        .iter()
        .zip(b8.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in a8.zip(b8) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 480;
    const SR: f64 = 48_000.0;

    /// A stereo test signal: frame index → (left, right).
    type Source = dyn Fn(usize) -> (f32, f32);

    fn tone(f: f64) -> Box<Source> {
        Box::new(move |n| {
            let t = n as f64 / SR;
            let l = 0.5 * (2.0 * std::f64::consts::PI * f * t).sin();
            let r = 0.35 * (2.0 * std::f64::consts::PI * f * t + 0.3).sin();
            (l as f32, r as f32)
        })
    }

    /// 200 Hz with its 2nd to 5th harmonics.
    fn harmonic_200() -> Box<Source> {
        Box::new(|n| {
            let w = 2.0 * std::f64::consts::PI * 200.0 * n as f64 / SR;
            let l = 0.4 * w.sin()
                + 0.2 * (2.0 * w + 0.5).sin()
                + 0.1 * (3.0 * w + 1.0).sin()
                + 0.05 * (4.0 * w).sin()
                + 0.03 * (5.0 * w + 2.0).sin();
            let r = 0.3 * w.sin() + 0.15 * (2.0 * w + 1.5).sin() + 0.1 * (3.0 * w).sin();
            (l as f32, r as f32)
        })
    }

    #[derive(Clone, Copy, PartialEq, Debug)]
    enum Op {
        Accelerate,
        Expand,
    }

    struct Run {
        /// Left channel as played.
        left: Vec<f32>,
        /// Frames removed (accelerate) or added (expand), summed over the splices.
        moved: usize,
        splices: usize,
        min_quality_seen: f32,
    }

    /// Plays `blocks` blocks of 480 frames from a buffer holding history and lookahead, as the
    /// playout would, calling `op` every `every` blocks. Checks that every frame played that
    /// no splice rewrote is the source frame it claims to be, and that the final offset
    /// between output and source is the sum of the splices.
    fn stream(src: &Source, op: Op, blocks: usize, every: usize, max_move: usize, min_quality: f32) -> Run {
        let ch = 2;
        let mut ts = TimeStretch::new(ch);
        let mut buf: Vec<f32> = Vec::new();
        let mut rewritten: Vec<bool> = Vec::new();
        let (mut base, mut pos) = (0usize, 0usize);
        let mut run = Run {
            left: vec![],
            moved: 0,
            splices: 0,
            min_quality_seen: 1.0,
        };
        let mut last_src = 0usize;
        for b in 0..blocks {
            while buf.len() / ch < pos + BLOCK + TimeStretch::LOOKAHEAD_FRAMES {
                let (l, r) = src(base + buf.len() / ch);
                buf.extend([l, r]);
                rewritten.push(false);
            }
            if pos > TimeStretch::HISTORY_FRAMES {
                let drop = pos - TimeStretch::HISTORY_FRAMES;
                buf.drain(..drop * ch);
                rewritten.drain(..drop);
                base += drop;
                pos -= drop;
            }
            if b > 0 && b % every == 0 {
                let s = match op {
                    Op::Accelerate => ts.accelerate(&mut buf, pos, 1, max_move, min_quality),
                    Op::Expand => ts.expand(&mut buf, pos, 1, max_move, min_quality),
                };
                if let Some(s) = s {
                    assert!(s.frames >= MIN_LAG_FRAMES && s.frames <= max_move, "{s:?}");
                    pos = match op {
                        Op::Accelerate => pos + s.frames,
                        Op::Expand => pos - s.frames,
                    };
                    rewritten[pos..pos + s.overlap].iter_mut().for_each(|r| *r = true);
                    run.moved += s.frames;
                    run.splices += 1;
                    run.min_quality_seen = run.min_quality_seen.min(s.quality);
                }
            }
            for i in pos..pos + BLOCK {
                let (l, r) = (buf[i * ch], buf[i * ch + 1]);
                if !rewritten[i] {
                    assert_eq!((l, r), src(base + i), "frame {} of the source changed", base + i);
                }
                run.left.push(l);
                last_src = base + i;
            }
            pos += BLOCK;
        }
        let out_last = run.left.len() - 1;
        match op {
            Op::Accelerate => assert_eq!(last_src, out_last + run.moved),
            Op::Expand => assert_eq!(last_src + run.moved, out_last),
        }
        run
    }

    /// Frequency of the strongest component near `guess`: Hann-windowed DTFT magnitude,
    /// maximised by golden-section search within ±3 Hz.
    fn peak_frequency(x: &[f32], guess: f64) -> f64 {
        let n = x.len();
        let mag = |f: f64| {
            let (mut re, mut im) = (0.0f64, 0.0f64);
            let w = 2.0 * std::f64::consts::PI * f / SR;
            for (i, &v) in x.iter().enumerate() {
                let hann = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
                let p = w * i as f64;
                re += hann * v as f64 * p.cos();
                im += hann * v as f64 * p.sin();
            }
            re * re + im * im
        };
        let g = (5f64.sqrt() - 1.0) / 2.0;
        let (mut a, mut b) = (guess - 3.0, guess + 3.0);
        let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
        let (mut fc, mut fd) = (mag(c), mag(d));
        while b - a > 1e-4 {
            if fc > fd {
                b = d;
                d = c;
                fd = fc;
                c = b - g * (b - a);
                fc = mag(c);
            } else {
                a = c;
                c = d;
                fc = fd;
                d = a + g * (b - a);
                fd = mag(d);
            }
        }
        (a + b) / 2.0
    }

    /// Frequency from a least-squares line through the upward zero crossings (pure tones).
    fn zero_crossing_frequency(x: &[f32]) -> f64 {
        let mut t = vec![];
        for i in 1..x.len() {
            let (a, b) = (x[i - 1] as f64, x[i] as f64);
            if a < 0.0 && b >= 0.0 {
                t.push(i as f64 - 1.0 + a / (a - b));
            }
        }
        let n = t.len() as f64;
        let mk = (n - 1.0) / 2.0;
        let mt = t.iter().sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for (k, &tk) in t.iter().enumerate() {
            sxy += (k as f64 - mk) * (tk - mt);
            sxx += (k as f64 - mk) * (k as f64 - mk);
        }
        SR / (sxy / sxx)
    }

    fn max_step(x: &[f32]) -> f32 {
        x.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0, f32::max)
    }

    fn check_tone(src: &Source, f: f64, pure: bool) {
        let clean: Vec<f32> = (0..200 * BLOCK).map(|n| src(n).0).collect();
        let clean_step = max_step(&clean);
        for op in [Op::Accelerate, Op::Expand] {
            // 2 s of output, a splice asked for every 20 ms (one period up to 15 ms), then
            // every 30 ms (up to the full 30 ms range).
            for (every, max_move) in [(2, 720), (3, MAX_LAG_FRAMES)] {
                let run = stream(src, op, 200, every, max_move, 0.9);
                let f_out = peak_frequency(&run.left, f);
                let step = max_step(&run.left);
                eprintln!(
                    "{f} Hz {op:?} every {every} blocks ≤{max_move}: {} splices, {:.1} ms moved, min quality {:.5}, peak {f_out:.4} Hz, max step {step:.5} (clean {clean_step:.5})",
                    run.splices,
                    run.moved as f64 / 48.0,
                    run.min_quality_seen
                );
                assert!(run.moved >= 2400, "only {} frames moved", run.moved);
                assert!((f_out - f).abs() < 0.1, "peak at {f_out} Hz");
                if pure {
                    let f_zc = zero_crossing_frequency(&run.left);
                    eprintln!("  zero crossings: {f_zc:.4} Hz");
                    assert!((f_zc - f).abs() < 0.1, "zero crossings say {f_zc} Hz");
                }
                assert!(
                    step <= clean_step * 1.02 + 1e-4,
                    "click: step {step} > clean {clean_step}"
                );
            }
        }
    }

    #[test]
    fn tsm_tone_440_keeps_pitch_without_clicks() {
        check_tone(&*tone(440.0), 440.0, true);
    }

    #[test]
    fn tsm_tone_1k_keeps_pitch_without_clicks() {
        check_tone(&*tone(1000.0), 1000.0, true);
    }

    #[test]
    fn tsm_harmonic_200_keeps_pitch_without_clicks() {
        check_tone(&*harmonic_200(), 200.0, false);
    }

    /// Seeded xorshift noise in [-0.5, 0.5).
    fn noise(seed: u32) -> impl FnMut() -> f32 {
        let mut x = seed.max(1);
        move || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as f32 / u32::MAX as f32 - 0.5
        }
    }

    /// Stereo, `frames` long: white noise, or "speech-like" noise (two formant resonators,
    /// 4 Hz syllable envelope: unvoiced, so without a period), scaled by `gain`.
    fn noise_buf(frames: usize, speech_like: bool, gain: f32, seed: u32) -> Vec<f32> {
        let mut n = noise(seed);
        let mut out = Vec::with_capacity(frames * 2);
        // Two-pole resonators at 700 Hz and 1200 Hz, r = 0.98.
        let res = |f: f32| {
            let w = 2.0 * std::f32::consts::PI * f / 48_000.0;
            (2.0 * 0.98 * w.cos(), -0.98f32 * 0.98)
        };
        let (a1, a2) = (res(700.0), res(1200.0));
        let (mut y1, mut y2) = ([0.0f32; 2], [0.0f32; 2]);
        for i in 0..frames {
            let (l, r) = if speech_like {
                let env = 0.5 + 0.5 * (2.0 * std::f32::consts::PI * 4.0 * i as f32 / 48_000.0).sin();
                let e = n() * env;
                let v1 = a1.0 * y1[0] + a1.1 * y1[1] + e;
                let v2 = a2.0 * y2[0] + a2.1 * y2[1] + e;
                y1 = [v1, y1[0]];
                y2 = [v2, y2[0]];
                let v = 0.05 * (v1 + v2);
                (v, 0.8 * v + 0.01 * n())
            } else {
                (n(), n())
            };
            out.extend([l * gain, r * gain]);
        }
        out
    }

    #[test]
    fn tsm_uncorrelated_input_refused_at_high_quality() {
        let mut ts = TimeStretch::new(2);
        let frames = TimeStretch::HISTORY_FRAMES + TimeStretch::LOOKAHEAD_FRAMES;
        let pos = TimeStretch::HISTORY_FRAMES;
        for speech_like in [false, true] {
            let mut worst = f32::NEG_INFINITY;
            for seed in 1..40 {
                let orig = noise_buf(frames, speech_like, 1.0, seed);
                let mut buf = orig.clone();
                assert_eq!(ts.accelerate(&mut buf, pos, 1, usize::MAX, 0.9), None);
                assert_eq!(ts.expand(&mut buf, pos, 1, usize::MAX, 0.9), None);
                assert!(buf == orig, "None must leave buf untouched");
                // The best quality on offer, for the record.
                if let Some(s) = ts.accelerate(&mut buf, pos, 1, usize::MAX, -1.0) {
                    worst = worst.max(s.quality);
                    assert!(!s.quiet);
                }
            }
            eprintln!("speech-like {speech_like}: best splice quality over 39 seeds {worst:.3}");
        }
    }

    #[test]
    fn tsm_quiet_passage_accepted_whole_range() {
        let mut ts = TimeStretch::new(2);
        let frames = TimeStretch::HISTORY_FRAMES + TimeStretch::LOOKAHEAD_FRAMES;
        let pos = TimeStretch::HISTORY_FRAMES;
        // -60 dBFS noise: uncorrelated, but quiet.
        let orig = noise_buf(frames, false, 2e-3, 7);
        let mut buf = orig.clone();
        let s = ts
            .accelerate(&mut buf, pos, 1, 1000, 0.99)
            .expect("quiet passage accepted");
        assert_eq!(
            s,
            Splice {
                frames: 1000,
                quality: 1.0,
                quiet: true,
                overlap: OVERLAP_FRAMES
            }
        );
        let mut buf = orig.clone();
        let s = ts
            .expand(&mut buf, pos, 1, usize::MAX, 0.99)
            .expect("quiet passage accepted");
        assert_eq!((s.frames, s.quiet), (MAX_LAG_FRAMES, true));
        // The same noise 20 dB louder (-40 dBFS) is no longer quiet.
        let loud = noise_buf(frames, false, 2e-2, 7);
        assert_eq!(ts.accelerate(&mut loud.clone(), pos, 1, 1000, 0.99), None);
        // A short loud click inside an otherwise quiet passage: not quiet.
        let mut clicked = orig.clone();
        clicked[(pos + 700) * 2] = 0.5;
        assert_eq!(ts.accelerate(&mut clicked, pos, 1, 1000, 0.99), None);
        // Digital silence.
        let mut zero = vec![0.0; frames * 2];
        assert_eq!(
            ts.expand(&mut zero, pos, 300, 300, 1.0).map(|s| s.frames),
            Some(300)
        );
    }

    #[test]
    fn tsm_expand_does_not_replay_a_louder_past() {
        // A 200 Hz tone that drops 20 dB just before the play point: every earlier period has
        // the same shape (normalised correlation 1) but ten times the level.
        let pos = TimeStretch::HISTORY_FRAMES;
        let frames = pos + TimeStretch::LOOKAHEAD_FRAMES;
        let src = harmonic_200();
        let buf: Vec<f32> = (0..frames)
            .flat_map(|n| {
                let g = if n + 5 < pos { 1.0 } else { 0.1 };
                let (l, r) = src(n);
                [l * g, r * g]
            })
            .collect();
        let mut ts = TimeStretch::new(2);
        assert_eq!(ts.expand(&mut buf.clone(), pos, 245, usize::MAX, 0.9), None);
        let s = ts.expand(&mut buf.clone(), pos, 245, usize::MAX, -1.0).unwrap();
        assert!(s.quality < 0.25, "{s:?}");
        // Accelerate reads only the future, which is all at the same level: accepted.
        assert!(ts
            .accelerate(&mut buf.clone(), pos, 1, usize::MAX, 0.99)
            .is_some());
    }

    #[test]
    fn tsm_lookahead_limits_the_range() {
        let src = tone(300.0);
        let frames = 1000;
        let buf: Vec<f32> = (0..frames).flat_map(|n| <[f32; 2]>::from(src(n))).collect();
        let mut ts = TimeStretch::new(2);
        // 1000 frames after pos: at most 1000 - OVERLAP_FRAMES removed.
        let s = ts.accelerate(&mut buf.clone(), 0, 1, usize::MAX, 0.9).unwrap();
        assert!(
            s.frames <= frames - OVERLAP_FRAMES && s.frames.is_multiple_of(160),
            "{s:?}"
        );
        // Expand: at most pos repeated.
        let s = ts.expand(&mut buf.clone(), 500, 1, usize::MAX, 0.9).unwrap();
        assert!(s.frames <= 500 && s.frames.is_multiple_of(160), "{s:?}");
        // min_remove honoured.
        let s = ts.accelerate(&mut buf.clone(), 0, 400, usize::MAX, 0.9).unwrap();
        assert!(s.frames >= 400 && s.frames.is_multiple_of(160), "{s:?}");
    }

    #[test]
    fn tsm_hostile_arguments_give_none() {
        let src = tone(440.0);
        let good: Vec<f32> = (0..4000).flat_map(|n| <[f32; 2]>::from(src(n))).collect();
        let mut ts = TimeStretch::new(2);
        let mut b = good.clone();
        for (pos, min, max, q) in [
            (4001, 1, 720, 0.0),                 // pos beyond the buffer
            (usize::MAX, 1, 720, 0.0),           // far beyond
            (4000, 1, 720, 0.0),                 // nothing after pos
            (2000, 720, 120, 0.0),               // min > max
            (2000, 1, 100, 0.0),                 // range below the shortest lag
            (2000, usize::MAX, usize::MAX, 0.0), // range above the longest
            (2000, 1, 720, f32::NAN),            // NaN quality
            (2000, 1, 720, 1.5),                 // unreachable quality
        ] {
            assert_eq!(
                ts.accelerate(&mut b, pos, min, max, q),
                None,
                "{pos} {min} {max} {q}"
            );
            assert_eq!(ts.expand(&mut b, pos, min, max, q), None, "{pos} {min} {max} {q}");
        }
        assert!(b == good);
        // Expand needs history; accelerate needs lookahead.
        assert_eq!(ts.expand(&mut b, 100, 1, 720, 0.0), None);
        assert_eq!(ts.accelerate(&mut b, 4000 - 300, 1, 720, 0.0), None);
        // Buffers too short for the shortest lag plus the overlap (360 frames), odd lengths,
        // zero channels, NaN samples.
        for len in [0usize, 1, 2, 3, 241, 481, 717] {
            let mut t = vec![0.1f32; len];
            for pos in [0, 1, len / 4, len / 2, len] {
                assert_eq!(ts.accelerate(&mut t, pos, 1, 1440, 0.0), None, "len {len}");
                assert_eq!(ts.expand(&mut t, pos, 1, 1440, 0.0), None, "len {len}");
            }
        }
        let mut zero_ch = TimeStretch::new(0);
        assert_eq!(zero_ch.accelerate(&mut b, 100, 1, 720, 0.0), None);
        assert_eq!(zero_ch.expand(&mut b, 2000, 1, 720, 0.0), None);
        let mut nan = good.clone();
        nan[2100 * 2] = f32::NAN; // in the reference segment: every quality is NaN
        assert_eq!(ts.accelerate(&mut nan, 2000, 1, 1440, 0.0), None);
        let mut inf = good.clone();
        inf[2100 * 2] = f32::INFINITY;
        assert_eq!(ts.expand(&mut inf, 2000, 1, 1440, 0.0), None);
    }

    proptest::proptest! {
        #[test]
        fn tsm_never_panics(
            channels in 0usize..4,
            len in 0usize..9000,
            pos in proptest::prop_oneof![0usize..5000, proptest::num::usize::ANY],
            min in proptest::prop_oneof![0usize..2000, proptest::num::usize::ANY],
            max in proptest::prop_oneof![0usize..2000, proptest::num::usize::ANY],
            q in proptest::prop_oneof![-1.0f32..1.1, proptest::num::f32::ANY],
            seed in 1u32..1000,
            tonal in proptest::bool::ANY,
        ) {
            let mut n = noise(seed);
            let f = 100.0 + seed as f32;
            let mut buf: Vec<f32> = (0..len)
                .map(|i| if tonal { (i as f32 * f / 48_000.0 * std::f32::consts::TAU).sin() } else { n() })
                .collect();
            let mut ts = TimeStretch::new(channels);
            let frames = len.checked_div(channels).unwrap_or(0);
            if let Some(s) = ts.accelerate(&mut buf, pos, min, max, q) {
                proptest::prop_assert!(s.frames >= min && s.frames <= max && s.quality >= q);
                proptest::prop_assert!(pos + s.frames + s.overlap <= frames);
            }
            if let Some(s) = ts.expand(&mut buf, pos, min, max, q) {
                proptest::prop_assert!(s.frames >= min && s.frames <= max && s.quality >= q);
                proptest::prop_assert!(s.frames <= pos && pos + s.overlap <= frames);
            }
        }
    }
}
