//! What the level meter costs per audio callback: `Levels::measure` over a stereo block
//! of 64, 128, 256 and 480 frames, against the period it has to fit in.
//! `cargo run --release -p patchcord-common --example level_cost` (BENCHMARKS.md §8).

use std::hint::black_box;
use std::time::Instant;

use patchcord_common::level::Levels;

fn main() {
    for frames in [64usize, 128, 256, 480] {
        let block: Vec<f32> = (0..frames * 2).map(|i| (i as f32 * 0.013).sin() * 0.5).collect();
        let calls = 2_000_000_000 / (frames * 2).max(1) / 50;
        let mut best = f64::MAX;
        for _ in 0..5 {
            let mut l = Levels::default();
            let t = Instant::now();
            for _ in 0..calls {
                l.measure(black_box(&block));
                black_box(&l);
            }
            best = best.min(t.elapsed().as_nanos() as f64 / calls as f64);
        }
        let period_ns = frames as f64 / 48_000.0 * 1e9;
        println!(
            "{frames:>4} frames x 2 ch: {best:7.1} ns per block ({:.3} % of the {:.2} ms period)",
            best / period_ns * 100.0,
            period_ns / 1e6
        );
    }
}
