//! Benchmark: the receiver's playout over the named impairment profiles, in virtual time.
//!
//!     cargo run --release -p patchcord-common --example impairment_table -- [MINUTES] [SEED] [PROFILE...]
//!
//! Prints a Markdown table: added delay (the playout delay above the fastest packets,
//! sampled once a second: mean and p95), late packets, concealed audio, losses recovered by
//! FEC or RFC 2198 redundancy, interruptions (≥ 150 ms of concealment) per minute, and the
//! path's own 99th percentile of relative delay. Deterministic for a given seed.

#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::*;
use patchcord_common::playout::DelayMode;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let minutes: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let seed: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let adaptive = DelayMode::Adaptive {
        min_ns: 5_000_000,
        max_ns: 500_000_000,
        quantile: 0.99,
    };
    let configs = [
        ("fixed 60 ms, PLC", Codec::LowDelay, DelayMode::Fixed),
        ("adaptive, PLC", Codec::LowDelay, adaptive),
        ("adaptive, FEC", Codec::VoipFec, adaptive),
        ("adaptive, RED 2", Codec::LowDelayRed2, adaptive),
    ];
    let named = [
        "clean", "loss1", "loss5", "loss20", "bursty", "jitter5", "jitter20", "jitter50", "reorder", "dup",
        "mixed",
    ];
    // more arguments: profiles to run instead of the named ones (netsim syntax)
    let given: Vec<&str> = args.iter().skip(3).map(|s| s.as_str()).collect();
    let profiles: Vec<&str> = if given.is_empty() { named.to_vec() } else { given };
    let streams: Vec<_> = configs.iter().map(|c| encode(c.1, minutes * 60)).collect();
    println!(
        "| profile | playout | path p99 (ms) | added delay mean / p95 (ms) | late % | concealed % | recovered % of missing | interruptions / min |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for profile in profiles {
        for (k, (name, codec, mode)) in configs.iter().enumerate() {
            let o = simulate(&streams[k], profile, seed, *mode);
            let c = o.playout.counters();
            let mut delays: Vec<f64> = o.trace.iter().skip(5).map(|t| t.2).collect();
            delays.sort_by(f64::total_cmp);
            let mean = delays.iter().sum::<f64>() / delays.len().max(1) as f64;
            let p95 = delays.get(delays.len() * 95 / 100).copied().unwrap_or(0.0);
            let total = (streams[k].datagrams.len() * codec.frame()) as f64;
            let recovered = c.recovered_fec + c.recovered_red;
            println!(
                "| {profile} | {name} | {:.1} | {:.1} / {:.1} | {:.2} | {:.2} | {} | {:.2} |",
                path_p99_ms(&o, codec.frame()),
                mean,
                p95,
                100.0 * c.late as f64 / streams[k].datagrams.len() as f64,
                100.0 * c.concealed_samples as f64 / total,
                if c.missing > 0 {
                    format!("{:.1}", 100.0 * recovered as f64 / c.missing as f64)
                } else {
                    "–".into()
                },
                c.interruptions as f64 / minutes as f64,
            );
        }
    }
}
