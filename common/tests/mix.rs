//! Mixing: three senders with different frame sizes, channel counts, gains and start times
//! into one stereo receiver. The mix equals the sum of the individually decoded streams
//! times their gains (the soft clipper never engages while the sum stays within ±1).

use patchcord_common::mixer::{db_to_linear, Mixer, StreamGain};
use patchcord_common::playout::{NoSegments, PlayoutConfig, StreamPlayout};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::time::frames_to_ns;

const PERIOD: usize = 128;

struct Sender {
    frame: usize,
    start_s: f64,
    datagrams: Vec<Vec<u8>>,
    gain: f32,
}

fn sender(ssrc: u32, frame: usize, channels: usize, freq: f32, start_s: f64, gain_db: f32) -> Sender {
    let ch = if channels == 2 {
        opus::Channels::Stereo
    } else {
        opus::Channels::Mono
    };
    let mut enc = opus::Encoder::new(48_000, ch, opus::Application::Audio).unwrap();
    let mut pk = Packetizer::new(ssrc, 96, ssrc as u16, ssrc.wrapping_mul(977));
    let (mut buf, mut rtp) = ([0u8; 1500], [0u8; 1500]);
    let n_frames = 48_000 * 4 / frame;
    let mut datagrams = vec![];
    for i in 0..n_frames {
        let pcm: Vec<f32> = (0..frame * channels)
            .map(|k| {
                let t = (i * frame + k / channels) as f32 / 48_000.0;
                0.25 * (2.0 * std::f32::consts::PI * freq * t * if k % channels == 1 { 1.5 } else { 1.0 })
                    .sin()
            })
            .collect();
        let n = enc.encode_float(&pcm, &mut buf).unwrap();
        let len = pk.build((i * frame) as u64, &buf[..n], &mut rtp).unwrap();
        datagrams.push(rtp[..len].to_vec());
    }
    Sender {
        frame,
        start_s,
        datagrams,
        gain: db_to_linear(gain_db),
    }
}

/// Run the given senders into playouts; returns each stream's output (unmixed) and the mix.
fn run(senders: &[Sender]) -> (Vec<Vec<f32>>, Vec<f32>, u64) {
    let total = 48_000 * 5;
    let cfg = PlayoutConfig {
        channels: 2,
        latency_ns: 30_000_000,
        ..PlayoutConfig::default()
    };
    let mut alone: Vec<StreamPlayout> = senders
        .iter()
        .enumerate()
        .map(|(i, _)| StreamPlayout::new(i as u32, cfg).unwrap())
        .collect();
    let mut mixed: Vec<StreamPlayout> = senders
        .iter()
        .enumerate()
        .map(|(i, _)| StreamPlayout::new(i as u32, cfg).unwrap())
        .collect();
    let mut gains: Vec<StreamGain> = senders.iter().map(|s| StreamGain::immediate(s.gain)).collect();
    let mut mixer = Mixer::new(2, PERIOD);
    let mut outs = vec![vec![0f32; total * 2]; senders.len()];
    let mut mix = vec![0f32; total * 2];
    let mut next = vec![0usize; senders.len()];
    let mut f = 0;
    while f + PERIOD <= total {
        let now = frames_to_ns(f as i64);
        for (k, s) in senders.iter().enumerate() {
            let start = (s.start_s * 1e9) as i64;
            while next[k] < s.datagrams.len()
                && start + frames_to_ns(((next[k] + 1) * s.frame) as i64) + 1_000_000 <= now
            {
                let d = &s.datagrams[next[k]];
                let h = validate_opus_rtp(d, 96).unwrap();
                let at = start + frames_to_ns(((next[k] + 1) * s.frame) as i64) + 1_000_000;
                alone[k].insert(&h, h.payload(d), at);
                mixed[k].insert(&h, h.payload(d), at);
                next[k] += 1;
            }
            alone[k].pull(
                &mut outs[k][f * 2..(f + PERIOD) * 2],
                f as u64,
                now,
                &mut NoSegments,
            );
        }
        mixer.begin(PERIOD);
        for (k, p) in mixed.iter_mut().enumerate() {
            p.pull(mixer.scratch(), f as u64, now, &mut NoSegments);
            mixer.add(&mut gains[k]);
        }
        mixer.finish(&mut mix[f * 2..(f + PERIOD) * 2]);
        f += PERIOD;
    }
    (outs, mix, mixer.clipped_samples)
}

#[test]
fn mix_equals_the_sum_of_the_streams() {
    let senders = [
        sender(1, 120, 1, 330.0, 0.0, 0.0), // 2.5 ms frames, mono, 0 dB, starts at once
        sender(2, 480, 2, 440.0, 0.3, -6.0), // 10 ms, stereo, -6 dB, starts at 0.3 s
        sender(3, 960, 1, 550.0, 0.7, -12.0), // 20 ms, mono, -12 dB, starts at 0.7 s
    ];
    let (outs, mix, clipped) = run(&senders);
    assert_eq!(clipped, 0);
    let mut max_err = 0f32;
    for i in 0..mix.len() {
        let want: f32 = outs.iter().zip(&senders).map(|(o, s)| o[i] * s.gain).sum();
        max_err = max_err.max((mix[i] - want).abs());
    }
    assert!(max_err < 1e-6, "mix differs from the sum by {max_err}");
    // every stream really is in the mix: each starts where its sender did
    for (k, s) in senders.iter().enumerate() {
        let first = outs[k].iter().position(|x| x.abs() > 1e-3).unwrap() / 2;
        let expected = ((s.start_s + s.frame as f64 / 48_000.0) * 48_000.0) as usize + 48 + 1440; // + arrival + latency
        assert!(
            (first as i64 - expected as i64).abs() < 2 * s.frame as i64 + 600,
            "stream {k} starts at {first}, expected ~{expected}"
        );
    }
    // a mono stream plays on both output channels
    assert!(outs[0]
        .chunks(2)
        .skip(24_000)
        .take(100)
        .all(|f| (f[0] - f[1]).abs() < 1e-6));
}

#[test]
fn loud_sums_are_soft_clipped_not_wrapped() {
    let senders: Vec<Sender> = (0..6)
        .map(|k| sender(10 + k, 480, 1, 200.0 + 30.0 * k as f32, 0.0, 6.0))
        .collect();
    let (_, mix, clipped) = run(&senders);
    assert!(clipped > 0);
    assert!(mix.iter().all(|s| s.is_finite() && s.abs() <= 1.0));
}
