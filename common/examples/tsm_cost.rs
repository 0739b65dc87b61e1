//! Benchmark: what one `TimeStretch::accelerate` / `expand` call costs, stereo, full lag
//! range (120..=1440 frames), on signals that exercise the whole search.
//!
//!     cargo run --release -p patchcord-common --example tsm_cost
//!
//! Each case: 20 000 calls on the same buffer (restored before each call, outside the
//! timing), per-call times sorted, median / p99 / max reported. Runs under
//! `assert_no_alloc`'s allocator and reports any allocation made inside the calls.

use std::time::Instant;

use assert_no_alloc::{assert_no_alloc, violation_count, AllocDisabler};
use patchcord_common::tsm::{TimeStretch, MAX_LAG_FRAMES};

#[global_allocator]
static A: AllocDisabler = AllocDisabler;

const CALLS: usize = 20_000;

fn signal(kind: &str, frames: usize) -> Vec<f32> {
    let mut x = 0x1234_5678u32;
    let mut noise = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x as f32 / u32::MAX as f32 - 0.5
    };
    let (mut lp_l, mut lp_r) = (0.0f32, 0.0f32);
    let mut out = Vec::with_capacity(frames * 2);
    for n in 0..frames {
        let t = n as f32 / 48_000.0;
        let (l, r) = match kind {
            "tone 440 Hz" => {
                let v = (2.0 * std::f32::consts::PI * 440.0 * t).sin() * 0.5;
                (v, v * 0.7)
            }
            "voiced 120 Hz" => {
                // Pulse train through a one-pole low-pass, with a slow pitch glide.
                let f0 = 120.0 + 10.0 * (2.0 * std::f32::consts::PI * 3.0 * t).sin();
                let ph = (f0 * t).fract();
                let e = if ph < 0.02 { 1.0 } else { 0.0 } + 0.05 * noise();
                lp_l = 0.9 * lp_l + 0.1 * e;
                lp_r = 0.8 * lp_r + 0.2 * e;
                (lp_l, lp_r)
            }
            _ => (noise() * 0.5, noise() * 0.5),
        };
        out.extend([l, r]);
    }
    out
}

fn main() {
    let frames = TimeStretch::HISTORY_FRAMES + TimeStretch::LOOKAHEAD_FRAMES + 4800;
    let pos = TimeStretch::HISTORY_FRAMES + 2400;
    println!("stereo, lags 120..={MAX_LAG_FRAMES}, {CALLS} calls per case");
    println!(
        "{:<14} {:<10} {:>8} {:>8} {:>8}  result",
        "signal", "call", "p50 µs", "p99 µs", "max µs"
    );
    for kind in ["tone 440 Hz", "voiced 120 Hz", "white noise"] {
        let orig = signal(kind, frames);
        for call in ["accelerate", "expand"] {
            let mut ts = TimeStretch::new(2);
            let mut buf = orig.clone();
            let mut times = Vec::with_capacity(CALLS);
            let mut result = None;
            for i in 0..CALLS {
                buf.copy_from_slice(&orig);
                // Move the play point a little so that the search sees different audio.
                let p = pos + (i % 97) * 7;
                let t0 = Instant::now();
                let r = assert_no_alloc(|| match call {
                    "accelerate" => ts.accelerate(&mut buf, p, 1, MAX_LAG_FRAMES, 0.5),
                    _ => ts.expand(&mut buf, p, 1, MAX_LAG_FRAMES, 0.5),
                });
                times.push(t0.elapsed().as_nanos() as f64 / 1000.0);
                result = result.or(r);
            }
            times.sort_by(|a, b| a.total_cmp(b));
            let q = |f: f64| times[((times.len() - 1) as f64 * f) as usize];
            let res = match result {
                Some(s) => format!("e.g. {} frames, quality {:.3}", s.frames, s.quality),
                None => "None".into(),
            };
            println!(
                "{kind:<14} {call:<10} {:>8.1} {:>8.1} {:>8.1}  {res}",
                q(0.5),
                q(0.99),
                q(1.0)
            );
        }
    }
    println!("allocations inside the calls: {}", violation_count());
}
