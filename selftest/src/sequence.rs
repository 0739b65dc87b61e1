//! The test signal: back-to-back short linear chirps, each sweeping up or down between a
//! low end of 200..1000 Hz and a high end of 3..6 kHz in 4 to 8 ms, all four drawn from a
//! fixed pseudo-random sequence; amplitude 0.4.
//!
//! Why: a sweep survives Opus well (the codec keeps its waveform, so the recording
//! correlates with the original sample for sample); a sweep this short puts the whole band
//! into every 10 ms window, so each window's correlation has one sharp peak (no tone whose
//! period could be mistaken for a lag); and because no two neighbours are alike and the draws never repeat,
//! the whole-signal cross-correlation has one peak, at the round trip, however long that is.

/// Sample rate of the sequence and of everything the self-test measures.
pub const SAMPLE_RATE: u32 = 48_000;

const AMPLITUDE: f64 = 0.4;
/// Range of a sweep's low and of its high end.
const LOW_HZ: [f64; 2] = [200.0, 1000.0];
const HIGH_HZ: [f64; 2] = [3000.0, 6000.0];
/// Shortest and longest chirp, samples (4 and 8 ms).
const SHORTEST: u32 = 192;
const LONGEST: u32 = 384;
/// Fade at each chirp's ends (0.5 ms), so the joins do not click.
const FADE_SAMPLES: usize = 24;

/// `seconds` of the test signal, mono, at [`SAMPLE_RATE`]; the same every time.
pub fn test_sequence(seconds: f64) -> Vec<f32> {
    let total = (seconds.max(0.0) * SAMPLE_RATE as f64) as usize;
    let mut out = Vec::with_capacity(total);
    let mut state = 0x2545_f491u32;
    let mut next = move || {
        // xorshift32: a fixed pseudo-random sequence
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    while out.len() < total {
        let len = (SHORTEST + next() % (LONGEST - SHORTEST + 1)) as usize;
        let low = LOW_HZ[0] + (next() % 1000) as f64 / 1000.0 * (LOW_HZ[1] - LOW_HZ[0]);
        let high = HIGH_HZ[0] + (next() % 1000) as f64 / 1000.0 * (HIGH_HZ[1] - HIGH_HZ[0]);
        let (f0, f1) = if next() & 1 == 0 { (low, high) } else { (high, low) };
        let dur = len as f64 / SAMPLE_RATE as f64;
        for i in 0..len.min(total - out.len()) {
            let t = i as f64 / SAMPLE_RATE as f64;
            let phase = 2.0 * std::f64::consts::PI * (f0 * t + (f1 - f0) * t * t / (2.0 * dur));
            let edge = i.min(len - 1 - i) as f64 / FADE_SAMPLES as f64;
            out.push((phase.sin() * AMPLITUDE * edge.min(1.0)) as f32);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_and_level() {
        let s = test_sequence(2.0);
        assert_eq!(s.len(), 96_000);
        let peak = s.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak <= 0.4 + 1e-6 && peak > 0.39, "{peak}");
        // continuous: no 10 ms stretch without signal
        for w in s.chunks(480) {
            let rms = (w.iter().map(|v| v * v).sum::<f32>() / w.len() as f32).sqrt();
            assert!(rms > 0.1, "{rms}");
        }
    }

    #[test]
    fn every_window_has_one_sharp_peak() {
        // what the analysis relies on: within ±10 ms, a 10 ms window matches itself only
        let s = test_sequence(2.0);
        let norm = |a: &[f32], b: &[f32]| -> f32 {
            let ab: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let aa: f32 = a.iter().map(|x| x * x).sum();
            let bb: f32 = b.iter().map(|x| x * x).sum();
            ab / (aa * bb).sqrt()
        };
        for start in (480..s.len() - 960).step_by(480) {
            let w = &s[start..start + 480];
            let side = (start - 480..=start + 480)
                .filter(|&at| at.abs_diff(start) > 2)
                .map(|at| norm(w, &s[at..at + 480]))
                .fold(f32::MIN, f32::max);
            // well below the analysis' match threshold (0.9; a received window reaches ~0.99)
            assert!(side < 0.8, "window at {start}: side peak {side}");
        }
    }
}
