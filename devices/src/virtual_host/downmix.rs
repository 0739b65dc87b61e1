//! Fitting a `wav:` input's channels to the stream's (1 or 2): every channel of the file is
//! heard, none is dropped silently.
//!
//! A WAV file without a channel mask has the default layout of its channel count (the
//! WAVE_FORMAT_EXTENSIBLE defaults, which ffmpeg and sox also assume): 3 = L R C,
//! 4 = L R Ls Rs, 5 = L R C Ls Rs, 6 = L R C LFE Ls Rs (5.1), 7 = L R C LFE Cs Ls Rs,
//! 8 = L R C LFE Ls Rs Lsd Rsd (7.1). Down to stereo, left channels go left, right channels
//! right, centre channels to both at −3 dB (ITU-R BS.775), LFE is left out as BS.775 does;
//! each output's gains are then scaled to sum to 1, so a full-scale file cannot clip. Down
//! to mono, the stereo mix is averaged (L/2 + R/2). A mono file feeds every channel. Files
//! of more than 8 channels have no default layout: every channel feeds every output
//! equally. The sender says on stderr which mix it plays ([`describe`]).
//!
//! The mix is computed once when the stream is built (the clock thread only copies).

/// Where a file channel goes in a stereo mix: (gain to left, gain to right), before scaling.
fn stereo_gains(file_channels: usize) -> Vec<(f32, f32)> {
    const L: (f32, f32) = (1.0, 0.0);
    const R: (f32, f32) = (0.0, 1.0);
    const C: (f32, f32) = (std::f32::consts::FRAC_1_SQRT_2, std::f32::consts::FRAC_1_SQRT_2);
    const LFE: (f32, f32) = (0.0, 0.0);
    match file_channels {
        1 => vec![(1.0, 1.0)],
        2 => vec![L, R],
        3 => vec![L, R, C],
        4 => vec![L, R, L, R],
        5 => vec![L, R, C, L, R],
        6 => vec![L, R, C, LFE, L, R],
        7 => vec![L, R, C, LFE, C, L, R],
        8 => vec![L, R, C, LFE, L, R, L, R],
        n => vec![(1.0, 1.0); n],
    }
}

/// The gain matrix `[out][file]` from `file_channels` to `out_channels` (1 or 2).
fn matrix(file_channels: usize, out_channels: usize) -> Vec<Vec<f32>> {
    let gains = stereo_gains(file_channels);
    // a mono file is copied, never scaled
    if file_channels == 1 {
        return vec![vec![1.0]; out_channels];
    }
    let normalized = |pick: fn(&(f32, f32)) -> f32| -> Vec<f32> {
        let sum: f32 = gains.iter().map(pick).sum();
        gains
            .iter()
            .map(|g| pick(g) / sum.max(f32::MIN_POSITIVE))
            .collect()
    };
    let left = normalized(|g| g.0);
    let right = normalized(|g| g.1);
    match out_channels {
        1 => vec![left.iter().zip(&right).map(|(l, r)| (l + r) / 2.0).collect()],
        _ => vec![left, right],
    }
}

/// `samples` (interleaved, `file_channels`) mixed to `out_channels` (1 or 2), interleaved.
pub fn mix(samples: &[f32], file_channels: usize, out_channels: usize) -> Vec<f32> {
    let m = matrix(file_channels, out_channels);
    let mut out = Vec::with_capacity(samples.len() / file_channels.max(1) * out_channels);
    for frame in samples.chunks_exact(file_channels.max(1)) {
        for row in &m {
            out.push(row.iter().zip(frame).map(|(g, s)| g * s).sum());
        }
    }
    out
}

/// What [`mix`] does, for a note on stderr; `None` when the file already has the stream's
/// channel count or is mono (copied to every channel, nothing lost).
pub fn describe(file_channels: usize, out_channels: usize) -> Option<String> {
    if file_channels == out_channels || file_channels == 1 {
        return None;
    }
    let layout = match file_channels {
        2 => "stereo",
        3 => "3.0 (L R C)",
        4 => "quad (L R Ls Rs)",
        5 => "5.0",
        6 => "5.1",
        7 => "6.1",
        8 => "7.1",
        _ => "no standard layout",
    };
    let how = match (file_channels, out_channels) {
        (2, 1) => "left and right averaged".to_owned(),
        (n, _) if n > 8 => "all channels mixed equally".to_owned(),
        (n, o) => format!(
            "centre at -3 dB{}{}",
            if [6, 7, 8].contains(&n) {
                ", LFE left out"
            } else {
                ""
            },
            if o == 1 {
                ", then left and right averaged"
            } else {
                ""
            }
        ),
    };
    Some(format!(
        "the file has {file_channels} channels ({layout}); mixed down to {out_channels} ({how}, scaled so it cannot clip)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stereo_to_mono_averages() {
        assert_eq!(mix(&[1.0, 0.0, 0.5, -0.5], 2, 1), vec![0.5, 0.0]);
    }

    #[test]
    fn mono_feeds_every_channel() {
        assert_eq!(mix(&[0.25, -1.0], 1, 2), vec![0.25, 0.25, -1.0, -1.0]);
    }

    #[test]
    fn five_one_to_stereo_keeps_every_channel_but_lfe() {
        // one frame per channel at full scale: where does each file channel land?
        let out = |ch: usize| {
            let mut f = [0.0f32; 6];
            f[ch] = 1.0;
            mix(&f, 6, 2)
        };
        let c = std::f32::consts::FRAC_1_SQRT_2;
        let norm = 1.0 + c + 1.0;
        let close = |a: &[f32], b: [f32; 2]| (a[0] - b[0]).abs() < 1e-6 && (a[1] - b[1]).abs() < 1e-6;
        assert!(close(&out(0), [1.0 / norm, 0.0]), "L");
        assert!(close(&out(1), [0.0, 1.0 / norm]), "R");
        assert!(close(&out(2), [c / norm, c / norm]), "C");
        assert!(close(&out(3), [0.0, 0.0]), "LFE");
        assert!(close(&out(4), [1.0 / norm, 0.0]), "Ls");
        assert!(close(&out(5), [0.0, 1.0 / norm]), "Rs");
        // all channels at full scale: the mix stays within ±1
        let loud = mix(&[1.0; 6], 6, 2);
        assert!(loud.iter().all(|s| s.abs() <= 1.0 + 1e-6), "{loud:?}");
    }

    #[test]
    fn notes_say_what_happens() {
        assert_eq!(describe(2, 2), None);
        assert_eq!(describe(1, 2), None);
        let n = describe(6, 2).unwrap_or_default();
        assert!(
            n.contains("6 channels (5.1)") && n.contains("LFE left out"),
            "{n}"
        );
        let n = describe(2, 1).unwrap_or_default();
        assert!(n.contains("left and right averaged"), "{n}");
    }
}
