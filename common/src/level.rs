//! Audio levels: peak and RMS in dBFS, and a count of samples at full scale, for the
//! meters of both binaries (the sender's capture, the receiver's streams and mix).
//!
//! [`Levels::measure`] runs on the audio thread: one pass over the block it already has in
//! hand, no allocation, no branch per sample (the clip count is a compare added in),
//! vectorized: 0.25–0.4 ns a sample here (BENCHMARKS.md §8), under 0.01 % of a period.
//! A block's [`Levels`] is a window: the reader merges windows
//! ([`Levels::merge`]) up to a second and reads dBFS from the sum.
//!
//! Conventions: 0 dBFS is a sample of ±1.0 (so a full-scale sine reads 0 dBFS peak and
//! −3.01 dBFS RMS: no AES17 +3 dB correction); silence reads [`FLOOR_DBFS`] rather than
//! −∞, which JSON cannot carry. A clip is a sample whose magnitude reaches
//! [`FULL_SCALE`], the largest 16-bit value: what an i16 device delivers when its
//! converter is overdriven, and what a float device delivers at or beyond ±1.
//!
//! [`SharedLevels`] carries windows from an audio callback to a control thread through
//! four atomics (no queue, no lock): the callback adds, the reader swaps them out.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A sample at or beyond this magnitude counts as clipped: 32767 / 32768.
pub const FULL_SCALE: f32 = 32767.0 / 32768.0;

/// What silence (or no audio at all) reads, in dBFS.
pub const FLOOR_DBFS: f64 = -120.0;

/// The levels of a window of audio: its peak, its energy, and its clipped samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    /// Largest magnitude (linear).
    pub peak: f32,
    /// Sum of the squares of every sample.
    pub sum_sq: f64,
    /// Samples measured (all channels).
    pub samples: u64,
    /// Samples at or beyond [`FULL_SCALE`].
    pub clipped: u64,
}

impl Levels {
    /// Add the samples of `block` (any channel layout) to the window. Eight lanes of
    /// accumulators, so that the compiler can keep them in one vector register each.
    #[inline]
    pub fn measure(&mut self, block: &[f32]) {
        const LANES: usize = 8;
        let mut peak = [0f32; LANES];
        let mut sum = [0f32; LANES];
        let mut clipped = [0u32; LANES];
        let chunks = block.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                let a = c[i].abs();
                peak[i] = if a > peak[i] { a } else { peak[i] };
                sum[i] += c[i] * c[i];
                clipped[i] += (a >= FULL_SCALE) as u32;
            }
        }
        for (i, &x) in rest.iter().enumerate() {
            let a = x.abs();
            peak[i] = if a > peak[i] { a } else { peak[i] };
            sum[i] += x * x;
            clipped[i] += (a >= FULL_SCALE) as u32;
        }
        self.peak = peak.iter().fold(self.peak, |p, &x| p.max(x));
        self.sum_sq += sum.iter().map(|&x| x as f64).sum::<f64>();
        self.samples += block.len() as u64;
        self.clipped += clipped.iter().map(|&c| c as u64).sum::<u64>();
    }

    /// The window followed by `other`.
    pub fn merge(&mut self, other: &Levels) {
        self.peak = self.peak.max(other.peak);
        self.sum_sq += other.sum_sq;
        self.samples += other.samples;
        self.clipped += other.clipped;
    }

    /// Peak level, dBFS (at least [`FLOOR_DBFS`]).
    pub fn peak_dbfs(&self) -> f64 {
        to_dbfs(self.peak as f64)
    }

    /// RMS level, dBFS (at least [`FLOOR_DBFS`]).
    pub fn rms_dbfs(&self) -> f64 {
        if self.samples == 0 {
            return FLOOR_DBFS;
        }
        to_dbfs((self.sum_sq / self.samples as f64).sqrt())
    }
}

fn to_dbfs(linear: f64) -> f64 {
    if linear.is_finite() && linear > 0.0 {
        (20.0 * linear.log10()).max(FLOOR_DBFS)
    } else {
        FLOOR_DBFS
    }
}

/// A compact meter for a status line: eight cells from −48 to 0 dBFS filled to the RMS
/// level (`#`), the cell of the peak marked (`|`), then the RMS and peak in dB and `CLIP`
/// when `clipped`: `[######| ] -9/-6 dB`.
pub fn meter_text(rms_dbfs: f64, peak_dbfs: f64, clipped: bool) -> String {
    const CELLS: usize = 8;
    let cell = |db: f64| {
        (((db + 48.0) / 48.0 * CELLS as f64)
            .round()
            .clamp(0.0, CELLS as f64)) as usize
    };
    let (rms, peak) = (cell(rms_dbfs), cell(peak_dbfs));
    let bar: String = (0..CELLS)
        .map(|i| match i {
            _ if i < rms => '#',
            _ if peak > 0 && i == peak - 1 => '|',
            _ => ' ',
        })
        .collect();
    let db = |v: f64| {
        if v <= FLOOR_DBFS {
            "-inf".to_string()
        } else {
            format!("{v:.0}")
        }
    };
    format!(
        "[{bar}] {}/{} dB{}",
        db(rms_dbfs),
        db(peak_dbfs),
        if clipped { " CLIP" } else { "" }
    )
}

/// Windows of [`Levels`] handed from an audio callback to a reader through atomics: the
/// callback [`add`](SharedLevels::add)s each block's window, the reader
/// [`take`](SharedLevels::take)s their sum. Wait-free on both sides. The energy is held in
/// fixed point (2⁻³² units of a full-scale sample squared), exact enough for any meter and
/// far from overflow (a day of 8 channels at full scale is 2⁵⁸).
#[derive(Debug, Default)]
pub struct SharedLevels {
    peak_bits: AtomicU32,
    sum_sq_fixed: AtomicU64,
    samples: AtomicU64,
    clipped: AtomicU64,
}

const FIXED_ONE: f64 = (1u64 << 32) as f64;

impl SharedLevels {
    /// Add a window (the audio thread).
    #[inline]
    pub fn add(&self, l: &Levels) {
        // For non-negative floats the order of the bit patterns is the numeric order.
        self.peak_bits.fetch_max(l.peak.to_bits(), Ordering::Relaxed);
        let fixed = (l.sum_sq * FIXED_ONE).min(u64::MAX as f64 / 4.0) as u64;
        self.sum_sq_fixed.fetch_add(fixed, Ordering::Relaxed);
        self.samples.fetch_add(l.samples, Ordering::Relaxed);
        self.clipped.fetch_add(l.clipped, Ordering::Relaxed);
    }

    /// Everything added since the last take (the reader).
    pub fn take(&self) -> Levels {
        Levels {
            peak: f32::from_bits(self.peak_bits.swap(0, Ordering::Relaxed)),
            sum_sq: self.sum_sq_fixed.swap(0, Ordering::Relaxed) as f64 / FIXED_ONE,
            samples: self.samples.swap(0, Ordering::Relaxed),
            clipped: self.clipped.swap(0, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f32, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| amplitude * (i as f32 * 2.0 * std::f32::consts::PI * 440.0 / 48_000.0).sin())
            .collect()
    }

    #[test]
    fn a_sine_reads_its_peak_and_rms() {
        let mut l = Levels::default();
        for block in sine(0.5, 48_000).chunks(128) {
            l.measure(block);
        }
        assert!((l.peak_dbfs() - -6.02).abs() < 0.01, "{}", l.peak_dbfs());
        assert!((l.rms_dbfs() - -9.03).abs() < 0.01, "{}", l.rms_dbfs());
        assert_eq!(l.clipped, 0);
    }

    #[test]
    fn silence_reads_the_floor_and_clips_are_counted() {
        let mut l = Levels::default();
        assert_eq!(l.rms_dbfs(), FLOOR_DBFS);
        l.measure(&[0.0; 256]);
        assert_eq!((l.peak_dbfs(), l.rms_dbfs()), (FLOOR_DBFS, FLOOR_DBFS));
        l.measure(&[1.0, -1.0, 0.5, FULL_SCALE, -2.0, f32::NAN]);
        assert_eq!(l.clipped, 4);
        assert_eq!(l.peak_dbfs(), 20.0 * 2f64.log10());
    }

    #[test]
    fn meter_text_fills_to_the_rms_and_marks_the_peak() {
        assert_eq!(meter_text(-9.03, -6.02, false), "[######| ] -9/-6 dB");
        assert_eq!(meter_text(-30.0, -12.0, true), "[###  |  ] -30/-12 dB CLIP");
        assert_eq!(
            meter_text(FLOOR_DBFS, FLOOR_DBFS, false),
            "[        ] -inf/-inf dB"
        );
    }

    #[test]
    fn shared_windows_sum_as_merged_ones() {
        let shared = SharedLevels::default();
        let mut merged = Levels::default();
        for (k, block) in sine(0.25, 4800).chunks(480).enumerate() {
            let mut w = Levels::default();
            w.measure(block);
            if k == 3 {
                w.measure(&[1.0]);
            }
            shared.add(&w);
            merged.merge(&w);
        }
        let got = shared.take();
        assert_eq!(got.peak, merged.peak);
        assert_eq!((got.samples, got.clipped), (merged.samples, 1));
        assert!((got.rms_dbfs() - merged.rms_dbfs()).abs() < 1e-6);
        assert_eq!(shared.take(), Levels::default(), "take empties it");
    }
}
