//! Benchmark: what one output period costs with N concurrent streams, against the raw cost
//! of decoding the same packets, measured in the same run, on one thread.
//!
//!     [BITRATE=32000] [MODE=fixed|adaptive] cargo run --release -p patchcord-common --example stream_scale -- [N...]
//!
//! Each stream: mono 48 kHz Opus, 10 ms frames, `BITRATE` b/s (default 32000). Each 10 ms period does what the
//! receiver's output callback does: insert every stream's packet into its jitter buffer,
//! pull 480 frames from each (decode), mix with gain, soft clip. The raw baseline decodes
//! the same packets with `opus_decode` into a buffer and nothing else. Five repetitions;
//! medians reported.

use std::time::Instant;

use patchcord_common::mixer::{Mixer, StreamGain};
use patchcord_common::playout::{DelayMode, NoSegments, PlayoutConfig, StreamPlayout};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::time::frames_to_ns;

const FRAME: usize = 480;
const PERIODS: usize = 500; // 5 s of audio

fn packets(bitrate: i32) -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(bitrate)).unwrap();
    let mut pk = Packetizer::new(1, 96, 0, 0);
    let (mut buf, mut rtp) = ([0u8; 1500], [0u8; 1500]);
    let mut x = 1u32;
    (0..PERIODS)
        .map(|i| {
            let pcm: Vec<f32> = (0..FRAME)
                .map(|k| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let t = (i * FRAME + k) as f32 / 48_000.0;
                    0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                        + (x as f32 / u32::MAX as f32 - 0.5) * 0.05
                })
                .collect();
            let n = enc.encode_float(&pcm, &mut buf).unwrap();
            let len = pk.build((i * FRAME) as u64, &buf[..n], &mut rtp).unwrap();
            rtp[..len].to_vec()
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let ns: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let ns = if ns.is_empty() { vec![1, 16, 64, 256] } else { ns };
    let bitrate: i32 = std::env::var("BITRATE")
        .ok()
        .and_then(|b| b.parse().ok())
        .unwrap_or(32_000);
    // MODE=adaptive: the receiver's default, every stream through its resampler
    let adaptive = std::env::var("MODE").is_ok_and(|m| m == "adaptive");
    let mode = if adaptive {
        DelayMode::Adaptive {
            min_ns: 5_000_000,
            max_ns: 500_000_000,
            quantile: 0.99,
        }
    } else {
        DelayMode::Fixed
    };
    println!(
        "mono, 10 ms frames, {} kb/s, application audio, {} playout",
        bitrate / 1000,
        if adaptive { "adaptive" } else { "fixed" }
    );
    let pk = packets(bitrate);
    let headers: Vec<_> = pk.iter().map(|d| validate_opus_rtp(d, 96).unwrap()).collect();
    println!("| streams | raw decode per packet (µs) | patchcord per stream per period (µs) | ratio | period p50 / p99 / max (% of 10 ms) |");
    println!("|---|---|---|---|---|");
    for &n in &ns {
        let mut raw_us = vec![];
        let mut ours_us = vec![];
        let mut p50 = vec![];
        let mut p99 = vec![];
        let mut pmax = vec![];
        for _rep in 0..5 {
            // raw: one decoder per stream, decode every packet
            let mut decoders: Vec<opus::Decoder> = (0..n)
                .map(|_| opus::Decoder::new(48_000, opus::Channels::Mono).unwrap())
                .collect();
            let mut out = vec![0f32; FRAME];
            let t0 = Instant::now();
            for (p, h) in pk.iter().zip(&headers) {
                for d in decoders.iter_mut() {
                    let _ = d.decode_float(h.payload(p), &mut out, false);
                }
            }
            raw_us.push(t0.elapsed().as_secs_f64() * 1e6 / (n * PERIODS) as f64);
            // patchcord: the output callback's work
            let cfg = PlayoutConfig {
                mode,
                channels: 1,
                latency_ns: 20_000_000,
                capacity_packets: 64,
                ..PlayoutConfig::default()
            };
            let mut streams: Vec<StreamPlayout> = (0..n)
                .map(|i| StreamPlayout::new(i as u32, cfg).unwrap())
                .collect();
            let mut gains = vec![StreamGain::immediate(0.5); n];
            let mut mixer = Mixer::new(1, FRAME);
            let mut out = vec![0f32; FRAME];
            let mut periods = Vec::with_capacity(PERIODS + 4);
            let t0 = Instant::now();
            for k in 0..PERIODS + 4 {
                let now = frames_to_ns((k * FRAME) as i64);
                let p0 = Instant::now();
                if k < PERIODS {
                    for s in streams.iter_mut() {
                        s.insert(&headers[k], headers[k].payload(&pk[k]), now);
                    }
                }
                mixer.begin(FRAME);
                for (s, g) in streams.iter_mut().zip(gains.iter_mut()) {
                    s.pull(mixer.scratch(), (k * FRAME) as u64, now, &mut NoSegments);
                    mixer.add(g);
                }
                mixer.finish(&mut out);
                periods.push(p0.elapsed().as_secs_f64() * 1e6);
            }
            ours_us.push(t0.elapsed().as_secs_f64() * 1e6 / (n * (PERIODS + 4)) as f64);
            periods.sort_by(f64::total_cmp);
            p50.push(periods[periods.len() / 2] / 100.0);
            p99.push(periods[periods.len() * 99 / 100] / 100.0);
            pmax.push(periods[periods.len() - 1] / 100.0);
        }
        let (raw, ours) = (median(&mut raw_us), median(&mut ours_us));
        println!(
            "| {n} | {raw:.2} | {ours:.2} | {:.2} | {:.1} / {:.1} / {:.1} |",
            ours / raw,
            median(&mut p50),
            median(&mut p99),
            median(&mut pmax)
        );
    }
}
