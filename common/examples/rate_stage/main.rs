//! Benchmark and measurement of the rate stage (`common/src/rate.rs`) against the 4-point
//! cubic it replaced (commit e8a5b08, kept in `cubic.rs`), in one run on one thread.
//!
//!     cargo run --release -p patchcord-common --example rate_stage
//!
//! 1. Flatness: a sine at each frequency through each stage at each rate; per 50 ms window
//!    the output level against the ideal sine's at the positions the stage reports, and
//!    the SNR against that sine. Worst window of 10 (after the first block's ramp).
//! 2. Cost: ns per output frame, mono and stereo, 480-frame blocks of noise at rate 1.0007
//!    (every frame filtered) and at rate 1 (the copy); 1000 blocks per repetition, median
//!    of 15 repetitions, the two stages interleaved (other jobs on the machine show up as
//!    outliers, which the median drops).

mod cubic;

use std::time::Instant;

use patchcord_common::rate::RateStage;

const WINDOW: usize = 2400;

/// What the benchmark needs of a stage.
trait Stage {
    fn set_rate(&mut self, rate: f64);
    fn latency_stream_frames(&self) -> f64;
    fn render(&mut self, out: &mut [f32], source: &mut dyn FnMut(&mut [f32])) -> u64;
}

impl Stage for RateStage {
    fn set_rate(&mut self, rate: f64) {
        RateStage::set_rate(self, rate)
    }
    fn latency_stream_frames(&self) -> f64 {
        RateStage::latency_stream_frames(self)
    }
    fn render(&mut self, out: &mut [f32], source: &mut dyn FnMut(&mut [f32])) -> u64 {
        RateStage::render(self, out, source)
    }
}

impl Stage for cubic::RateStage {
    fn set_rate(&mut self, rate: f64) {
        cubic::RateStage::set_rate(self, rate)
    }
    fn latency_stream_frames(&self) -> f64 {
        cubic::RateStage::latency_stream_frames(self)
    }
    fn render(&mut self, out: &mut [f32], source: &mut dyn FnMut(&mut [f32])) -> u64 {
        cubic::RateStage::render(self, out, source)
    }
}

fn stage(polyphase: bool, channels: usize) -> Box<dyn Stage> {
    if polyphase {
        Box::new(RateStage::new(channels).expect("channels in range"))
    } else {
        Box::new(cubic::RateStage::new(channels).expect("channels in range"))
    }
}

/// Worst level deviation (dB) and worst SNR (dB) over 10 windows of 50 ms.
fn flatness(st: &mut dyn Stage, hz: f64, rate: f64) -> (f64, f64) {
    let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
    let mut i = 0u64;
    let mut src = |buf: &mut [f32]| {
        for s in buf.iter_mut() {
            *s = ((i as f64) * w).sin() as f32 * 0.5;
            i += 1;
        }
    };
    st.set_rate(rate);
    let mut out = vec![0f32; WINDOW];
    let mut consumed = st.render(&mut out[..480], &mut src);
    // the realised step: the positions are 32.32 fixed point
    let step = (rate * 4_294_967_296.0).round() / 4_294_967_296.0;
    let (mut worst_db, mut worst_snr) = (0f64, f64::INFINITY);
    for _ in 0..10 {
        let mut p = consumed as f64 - st.latency_stream_frames();
        consumed += st.render(&mut out, &mut src);
        let (mut sig, mut got, mut err) = (0f64, 0f64, 0f64);
        for &o in &out {
            let (o, ideal) = (o as f64, (p * w).sin() * 0.5);
            sig += ideal * ideal;
            got += o * o;
            err += (o - ideal) * (o - ideal);
            p += step;
        }
        let db = 10.0 * (got / sig).log10();
        if db.abs() > worst_db.abs() {
            worst_db = db;
        }
        worst_snr = worst_snr.min(10.0 * (sig / err).log10());
    }
    (worst_db, worst_snr)
}

/// ns per output frame rendering 1000 blocks of 480 frames.
fn cost(st: &mut dyn Stage, channels: usize, rate: f64, noise: &[f32]) -> f64 {
    st.set_rate(rate);
    let mut at = 0;
    let mut src = |buf: &mut [f32]| {
        for s in buf.iter_mut() {
            *s = noise[at];
            at = (at + 1) % noise.len();
        }
    };
    let mut out = vec![0f32; 480 * channels];
    st.render(&mut out, &mut src); // the ramp
    let t0 = Instant::now();
    for _ in 0..1000 {
        st.render(&mut out, &mut src);
        std::hint::black_box(&mut out);
    }
    t0.elapsed().as_secs_f64() * 1e9 / (1000.0 * 480.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    println!("flatness: worst 50 ms window, level (dB) / SNR (dB)");
    println!("| kHz | rate | cubic | polyphase |");
    println!("|---|---|---|---|");
    for khz in [1.0, 5.0, 10.0, 15.0, 18.0, 20.0] {
        for rate in [1.0001, 0.9993, 1.001, 0.99, 1.01, 0.95, 1.05] {
            let (cd, cs) = flatness(stage(false, 1).as_mut(), khz * 1000.0, rate);
            let (pd, ps) = flatness(stage(true, 1).as_mut(), khz * 1000.0, rate);
            println!("| {khz} | {rate} | {cd:+.3} / {cs:.1} | {pd:+.4} / {ps:.1} |");
        }
    }

    let mut x = 1u32;
    let noise: Vec<f32> = (0..48_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as f32 / u32::MAX as f32 - 0.5
        })
        .collect();
    println!();
    println!("cost: ns per output frame, 480-frame blocks, median of 15");
    println!("| channels | rate | cubic | polyphase |");
    println!("|---|---|---|---|");
    for channels in [1, 2] {
        for rate in [1.0007, 1.0] {
            let (mut c, mut p) = (vec![], vec![]);
            for _ in 0..15 {
                c.push(cost(stage(false, channels).as_mut(), channels, rate, &noise));
                p.push(cost(stage(true, channels).as_mut(), channels, rate, &noise));
            }
            println!("| {channels} | {rate} | {:.2} | {:.2} |", median(c), median(p));
        }
    }
}
