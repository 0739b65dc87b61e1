//! What came back: where the test signal lies in the recording, how steady it stayed, and
//! how often it broke.
//!
//! 1. **Round trip.** The whole sent signal is cross-correlated (by FFT) with the whole
//!    recording over lags `0..max_lag`; the peak is the coarse lag. The sequence never
//!    repeats ([`crate::sequence`]), so there is one peak.
//! 2. **Windows.** The sent signal is cut into 10 ms windows; each is matched against the
//!    recording within ±10 ms of the coarse lag, sample by sample, by normalised
//!    correlation. A window matches when that correlation reaches [`MATCH`]; its lag is
//!    where it peaked. The round trip is the lag most windows share (the steady lag), with
//!    the smallest and largest seen.
//! 3. **Glitches.** A run of consecutive windows that do not match is one glitch (a dropout,
//!    concealment, a click); so is a step of the lag between two matching windows by more
//!    than [`LAG_STEP`] samples (the path lost or gained time: an xrun, a resync), unless
//!    it follows a dropout (then both are one event). A slow glide (drift correction) is
//!    not a glitch.

use rustfft::{num_complex::Complex, FftPlanner};

/// Window length: 10 ms at 48 kHz.
pub const WINDOW: usize = 480;
/// ± search around the coarse lag for each window: 10 ms, so that the windows on both
/// sides of a time jump of up to that find their own lag.
const SEARCH: usize = 480;
/// Normalised correlation a window needs to count as received intact. Opus at the
/// self-test's bit rates keeps the chirps' waveform (≥ 0.98 measured); a concealed or
/// missing 10 ms falls far below.
pub const MATCH: f64 = 0.9;
/// A lag change between neighbouring matching windows larger than this is a time jump.
pub const LAG_STEP: i64 = 2;

/// The result of [`analyse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Analysis {
    /// Normalised correlation of the whole signal at the coarse lag (1 = identical).
    pub correlation: f64,
    /// Windows of the sent signal that the recording covers.
    pub windows: usize,
    /// Of those, the ones received intact.
    pub matched: usize,
    /// The lag (samples) most matching windows share; `None` when none matched.
    pub steady_lag: Option<usize>,
    /// Smallest and largest lag of a matching window.
    pub lag_range: Option<(usize, usize)>,
    /// Dropouts and time jumps, as defined in the module doc.
    pub glitches: usize,
}

/// Find `sent` in `recorded` (both mono, same rate), at a lag below `max_lag` samples.
pub fn analyse(sent: &[f32], recorded: &[f32], max_lag: usize) -> Analysis {
    let coarse = best_lag(sent, recorded, max_lag);
    let correlation = coarse.map_or(0.0, |l| normalised(sent, &recorded[l.min(recorded.len())..]));
    let mut windows = 0;
    let mut matched = 0;
    let mut glitches = 0;
    let mut in_dropout = false;
    let mut last_lag: Option<usize> = None;
    let mut lags = Vec::new();
    for start in (0..sent.len().saturating_sub(WINDOW - 1)).step_by(WINDOW) {
        let Some(coarse) = coarse else { break };
        let x = &sent[start..start + WINDOW];
        let centre = coarse + start;
        if centre + SEARCH + WINDOW > recorded.len() {
            break;
        }
        windows += 1;
        let (lag, rho) = (centre.saturating_sub(SEARCH)..=centre + SEARCH)
            .map(|at| (at - start, normalised(x, &recorded[at..at + WINDOW])))
            .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best });
        if rho < MATCH {
            if !in_dropout {
                glitches += 1;
                in_dropout = true;
            }
            continue;
        }
        matched += 1;
        // a step right after a dropout is the same event (an xrun is both)
        if !in_dropout && last_lag.is_some_and(|l| (l as i64 - lag as i64).abs() > LAG_STEP) {
            glitches += 1;
        }
        in_dropout = false;
        last_lag = Some(lag);
        lags.push(lag);
    }
    let lag_range = lags.iter().min().copied().zip(lags.iter().max().copied());
    lags.sort_unstable();
    let steady_lag = mode(&lags);
    Analysis {
        correlation,
        windows,
        matched,
        steady_lag,
        lag_range,
        glitches,
    }
}

/// The most frequent value of a sorted slice (the smallest of equals).
fn mode(sorted: &[usize]) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for run in sorted.chunk_by(|a, b| a == b) {
        if best.is_none_or(|(_, n)| run.len() > n) {
            best = Some((run[0], run.len()));
        }
    }
    best.map(|(v, _)| v)
}

/// Normalised correlation of `x` with the start of `y` (over their common length).
fn normalised(x: &[f32], y: &[f32]) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0f64, 0.0f64, 0.0f64);
    for (a, b) in x.iter().zip(y) {
        let (a, b) = (*a as f64, *b as f64);
        xy += a * b;
        xx += a * a;
        yy += b * b;
    }
    if xx <= 0.0 || yy <= 0.0 {
        return 0.0;
    }
    xy / (xx * yy).sqrt()
}

/// The lag in `0..max_lag` at which `y` best matches `x` (y[n] ≈ x[n − lag]), by FFT
/// cross-correlation; `None` when either is empty.
fn best_lag(x: &[f32], y: &[f32], max_lag: usize) -> Option<usize> {
    if x.is_empty() || y.is_empty() {
        return None;
    }
    let n = (x.len() + y.len()).next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let (fwd, inv) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let padded = |s: &[f32]| -> Vec<Complex<f64>> {
        (0..n)
            .map(|i| Complex::new(s.get(i).copied().unwrap_or(0.0) as f64, 0.0))
            .collect()
    };
    let (mut a, mut b) = (padded(x), padded(y));
    fwd.process(&mut a);
    fwd.process(&mut b);
    let mut c: Vec<Complex<f64>> = a.iter().zip(&b).map(|(a, b)| a.conj() * b).collect();
    inv.process(&mut c);
    (0..max_lag.min(y.len()).max(1)).max_by(|&i, &j| c[i].re.total_cmp(&c[j].re))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequence::test_sequence;

    fn delayed(x: &[f32], lag: usize, tail: usize) -> Vec<f32> {
        let mut y = vec![0.0; lag];
        y.extend_from_slice(x);
        y.extend(std::iter::repeat_n(0.0, tail));
        y
    }

    #[test]
    fn a_clean_delay_is_found_to_the_sample() {
        let x = test_sequence(2.0);
        let y = delayed(&x, 12_345, 2_000);
        let a = analyse(&x, &y, 48_000);
        assert_eq!(a.steady_lag, Some(12_345));
        assert_eq!(a.lag_range, Some((12_345, 12_345)));
        assert_eq!(a.glitches, 0);
        assert_eq!(a.matched, a.windows);
        assert_eq!(a.windows, 200);
        assert!(a.correlation > 0.999, "{}", a.correlation);
    }

    #[test]
    fn a_long_round_trip_is_found() {
        // longer than any chirp and than the pattern's first cycle
        let x = test_sequence(4.0);
        let y = delayed(&x, 96_000 + 17, 1_000);
        let a = analyse(&x, &y, 3 * 48_000);
        assert_eq!(a.steady_lag, Some(96_017));
        assert_eq!(a.glitches, 0);
    }

    #[test]
    fn a_dropout_is_one_glitch() {
        let x = test_sequence(2.0);
        let mut y = delayed(&x, 1_000, 2_000);
        // 25 ms of silence, spanning three windows
        y[1_000 + 30_000..1_000 + 31_200].fill(0.0);
        let a = analyse(&x, &y, 48_000);
        assert_eq!(a.glitches, 1, "{a:?}");
        assert!(a.windows - a.matched >= 2 && a.windows - a.matched <= 4, "{a:?}");
        assert_eq!(a.steady_lag, Some(1_000));
    }

    #[test]
    fn a_time_jump_is_one_glitch() {
        let x = test_sequence(2.0);
        // the path loses a 64-frame period after 1 s: the rest arrives 64 samples earlier
        let mut y = vec![0.0; 1_000];
        y.extend_from_slice(&x[..48_000]);
        y.extend_from_slice(&x[48_064..]);
        y.extend(std::iter::repeat_n(0.0, 2_000));
        let a = analyse(&x, &y, 48_000);
        assert_eq!(a.glitches, 1, "{a:?}");
        assert_eq!(a.lag_range, Some((936, 1_000)));
    }

    #[test]
    fn silence_matches_nothing() {
        let x = test_sequence(1.0);
        let a = analyse(&x, &vec![0.0; 60_000], 10_000);
        assert_eq!(a.matched, 0);
        assert_eq!(a.steady_lag, None);
        assert!(a.correlation.abs() < 1e-9);
        let a = analyse(&x, &[], 10_000);
        assert_eq!((a.windows, a.matched), (0, 0));
    }

    #[test]
    fn noise_survives_at_a_lower_correlation_but_matches() {
        // small noise (-40 dB): still every window
        let x = test_sequence(1.0);
        let mut y = delayed(&x, 500, 1_000);
        let mut state = 1u32;
        for v in &mut y {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            *v += (state as f32 / u32::MAX as f32 - 0.5) * 0.008;
        }
        let a = analyse(&x, &y, 10_000);
        assert_eq!(a.matched, a.windows);
        assert_eq!(a.glitches, 0);
    }
}
