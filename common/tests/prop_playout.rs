//! Property tests: any sequence of inserts (arbitrary order, duplicates, wild timestamps,
//! any SSRC, garbage payloads, redundancy offers) and pulls of any size never panics, never
//! exceeds capacity, and keeps the counters consistent: every received packet ends up in
//! exactly one place.

use patchcord_common::playout::{DelayMode, NoSegments, PlayoutConfig, StreamPlayout};
use patchcord_common::rtp::{opus_packet_duration, RtpOpusHeader};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Insert {
        seq_delta: i32,
        ts_delta: i64,
        toc: u8,
        len: usize,
        dt_us: u32,
    },
    Redundant {
        seq_back: u16,
        ts_back: u32,
        toc: u8,
    },
    Pull {
        frames: usize,
        dt_us: u32,
    },
    EndOfStream,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (-200i32..200, -200_000i64..200_000, any::<u8>(), 1usize..300, 0u32..30_000)
            .prop_map(|(seq_delta, ts_delta, toc, len, dt_us)| Op::Insert { seq_delta, ts_delta, toc, len, dt_us }),
        1 => (any::<i32>(), any::<i64>(), any::<u8>(), 1usize..1400, 0u32..2_000_000)
            .prop_map(|(seq_delta, ts_delta, toc, len, dt_us)| Op::Insert { seq_delta, ts_delta, toc, len, dt_us }),
        1 => (0u16..8, 0u32..5000, any::<u8>()).prop_map(|(seq_back, ts_back, toc)| Op::Redundant { seq_back, ts_back, toc }),
        4 => (1usize..600, 0u32..20_000).prop_map(|(frames, dt_us)| Op::Pull { frames, dt_us }),
        1 => Just(Op::EndOfStream),
    ]
}

fn run(ops: Vec<Op>, mode: DelayMode, channels: usize) {
    let cfg = PlayoutConfig {
        mode,
        channels,
        latency_ns: 10_000_000,
        capacity_packets: 64,
        ..PlayoutConfig::default()
    };
    let mut p = StreamPlayout::new(9, cfg).unwrap();
    let mut now: i64 = 1_000_000_000;
    let mut out_frame = 0u64;
    let mut seq: u16 = 1000;
    let mut ts: u32 = 5000;
    let mut out = vec![0f32; 600 * channels];
    let mut payload = vec![0u8; 1400];
    for op in ops {
        match op {
            Op::Insert {
                seq_delta,
                ts_delta,
                toc,
                len,
                dt_us,
            } => {
                now += dt_us as i64 * 1000;
                seq = seq.wrapping_add(seq_delta as u16);
                ts = ts.wrapping_add(ts_delta as u32);
                payload[0] = toc;
                for (i, b) in payload[1..len].iter_mut().enumerate() {
                    *b = (i as u8).wrapping_mul(31).wrapping_add(toc);
                }
                let Some(duration) = opus_packet_duration(&payload[..len]) else {
                    continue;
                };
                let h = RtpOpusHeader {
                    marker: false,
                    payload_type: 96,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 9,
                    payload_offset: 0,
                    payload_len: len,
                    duration_samples: duration,
                };
                p.insert(&h, &payload[..len], now);
            }
            Op::Redundant {
                seq_back,
                ts_back,
                toc,
            } => {
                payload[0] = toc;
                if let Some(d) = opus_packet_duration(&payload[..8]) {
                    p.insert_redundant(
                        seq.wrapping_sub(seq_back),
                        ts.wrapping_sub(ts_back),
                        d,
                        &payload[..8],
                    );
                }
            }
            Op::Pull { frames, dt_us } => {
                now += dt_us as i64 * 1000;
                p.pull(&mut out[..frames * channels], out_frame, now, &mut NoSegments);
                out_frame += frames as u64;
                assert!(out[..frames * channels].iter().all(|s| s.is_finite()));
            }
            Op::EndOfStream => p.end_of_stream(),
        }
        let (buffered, capacity) = p.buffered_packets();
        assert!(buffered <= capacity);
        let c = p.counters();
        let accounted =
            c.duplicates + c.late + c.overflow + c.played + c.decode_errors + c.discarded + buffered as u64;
        assert_eq!(c.packets_received, accounted, "{c:?} buffered {buffered}");
        // the RFC 3550 register restarts with the sender (A.1); the counters keep the history
        assert!(p.register().received() <= c.packets_received);
        assert!(c.recovered_fec + c.recovered_red <= c.missing, "{c:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn fixed_mode_never_panics_and_counts_every_packet(ops in prop::collection::vec(op(), 1..300)) {
        run(ops, DelayMode::Fixed, 1);
    }

    #[test]
    fn adaptive_mode_never_panics_and_counts_every_packet(ops in prop::collection::vec(op(), 1..300)) {
        run(ops, DelayMode::Adaptive { min_ns: 2_000_000, max_ns: 200_000_000, quantile: 0.99 }, 2);
    }
}
