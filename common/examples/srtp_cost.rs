//! Benchmark: what SRTP costs per packet ([`patchcord_common::srtp`]), for both suites, on
//! RTP packets of typical Opus sizes: protect (the sender's encoder thread), unprotect of a
//! genuine packet (the receiver's network thread), and the refusals an attacker can cause:
//! a forged packet of a known SSRC (tag check) and one of a new SSRC each time (a trial
//! context: key derivation, then the tag check).
//!
//!     cargo run --release -p patchcord-common --example srtp_cost
//!
//! Each case: 20 000 packets, each timed alone, per-packet times sorted, median and p99
//! reported (µs). Payloads: 10 ms frames at 32, 128 and 510 kb/s (40, 160, 638 bytes).

use std::time::Instant;

use patchcord_common::rtp::Packetizer;
use patchcord_common::srtp::{MasterKey, Protector, Suite, Unprotector};

const PACKETS: usize = 20_000;

fn stats(mut t: Vec<f64>) -> (f64, f64) {
    t.sort_by(f64::total_cmp);
    (t[t.len() / 2], t[t.len() * 99 / 100])
}

fn main() {
    println!("| suite | payload (bytes) | protect p50 / p99 (µs) | unprotect p50 / p99 | forged, known SSRC p50 / p99 | forged, new SSRC p50 / p99 |");
    println!("|---|---|---|---|---|---|");
    for suite in Suite::ALL {
        let len = suite.master_key_len() + suite.master_salt_len();
        let key = MasterKey::new(suite, &vec![0x5a; len]).unwrap();
        let other = MasterKey::new(suite, &vec![0xa5; len]).unwrap();
        for payload_len in [40usize, 160, 638] {
            let payload = vec![0x33u8; payload_len];
            let mut pk = Packetizer::new(0x1234, 96, 0, 0);
            let plain: Vec<Vec<u8>> = (0..PACKETS as u64)
                .map(|i| {
                    let mut b = vec![0; 1500];
                    let n = pk.build(i * 480, &payload, &mut b).unwrap();
                    b.truncate(n);
                    b
                })
                .collect();
            let mut tx = Protector::new(&key);
            let mut sealed = Vec::with_capacity(PACKETS);
            let mut out = vec![0u8; 1600];
            let mut t_protect = Vec::with_capacity(PACKETS);
            for p in &plain {
                let t0 = Instant::now();
                let n = tx.protect_rtp(p, &mut out).unwrap();
                t_protect.push(t0.elapsed().as_secs_f64() * 1e6);
                sealed.push(out[..n].to_vec());
            }
            let mut rx = Unprotector::new(&key, 16);
            let mut t_open = Vec::with_capacity(PACKETS);
            for p in &sealed {
                let t0 = Instant::now();
                let r = rx.unprotect(p, &mut out);
                t_open.push(t0.elapsed().as_secs_f64() * 1e6);
                assert!(r.is_ok());
            }
            // forgeries: the same packets sealed with another key
            let mut forger = Protector::new(&other);
            let forged: Vec<Vec<u8>> = plain
                .iter()
                .map(|p| {
                    let n = forger.protect_rtp(p, &mut out).unwrap();
                    out[..n].to_vec()
                })
                .collect();
            let mut rx = Unprotector::new(&key, 16);
            let _ = rx.unprotect(&sealed[0], &mut out); // SSRC 0x1234 known
            let mut t_known = Vec::with_capacity(PACKETS);
            for p in &forged[1..] {
                let t0 = Instant::now();
                let r = rx.unprotect(p, &mut out);
                t_known.push(t0.elapsed().as_secs_f64() * 1e6);
                assert!(r.is_err());
            }
            let mut t_new = Vec::with_capacity(PACKETS);
            for (i, p) in forged.iter().enumerate() {
                let mut p = p.clone();
                p[8..12].copy_from_slice(&(i as u32 + 0x10_0000).to_be_bytes());
                let t0 = Instant::now();
                let r = rx.unprotect(&p, &mut out);
                t_new.push(t0.elapsed().as_secs_f64() * 1e6);
                assert!(r.is_err());
            }
            let f = |(a, b): (f64, f64)| format!("{a:.2} / {b:.2}");
            println!(
                "| {suite} | {payload_len} | {} | {} | {} | {} |",
                f(stats(t_protect)),
                f(stats(t_open)),
                f(stats(t_known)),
                f(stats(t_new))
            );
        }
    }
}
