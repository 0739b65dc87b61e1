//! The playout engine runs inside the output callback: after `StreamPlayout::new` it must
//! never allocate or free, whatever arrives. This test runs it under an allocator that
//! counts every allocation made inside `assert_no_alloc` scopes, through loss, reordering,
//! duplicates, late packets, garbage payloads, a sequence jump (sender restart), an outage,
//! a sender clock 800 ppm fast (so the rate stage resamples) and, in adaptive mode, the
//! delay moved by pitch-period splices (time-scale modification).

use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count, AllocDisabler};
use patchcord_common::playout::{DelayMode, NoSegments, PlayoutConfig, StreamPlayout};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::time::frames_to_ns;

#[global_allocator]
static A: AllocDisabler = AllocDisabler;

#[test]
fn playout_never_allocates_after_creation() {
    for mode in [
        DelayMode::Fixed,
        DelayMode::Adaptive {
            min_ns: 5_000_000,
            max_ns: 500_000_000,
            quantile: 0.99,
        },
    ] {
        never_allocates(mode);
    }
}

fn never_allocates(mode: DelayMode) {
    // Packets prepared up front (allocation allowed here).
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_inband_fec(true).unwrap();
    enc.set_packet_loss_perc(20).unwrap();
    let mut a = Packetizer::new(7, 96, 65_000, 1);
    let mut b = Packetizer::new(7, 96, 30_000, 99_999);
    let mut datagrams = vec![];
    let mut opus_buf = [0u8; 1500];
    let mut rtp = [0u8; 1500];
    let pcm: Vec<f32> = (0..480).map(|i| (i as f32 * 0.05).sin() * 0.3).collect();
    for i in 0..3000u64 {
        let n = enc.encode_float(&pcm, &mut opus_buf).unwrap();
        let p = if i < 2000 { &mut a } else { &mut b };
        let len = p.build(i * 480, &opus_buf[..n], &mut rtp).unwrap();
        datagrams.push(rtp[..len].to_vec());
    }
    let headers: Vec<_> = datagrams.iter().map(|d| validate_opus_rtp(d, 96).ok()).collect();
    for (i, d) in datagrams.iter_mut().enumerate() {
        if i % 97 == 5 {
            // undecodable (code 2, a first frame longer than the packet), behind a header
            // that validated: the decoder's error path
            d[12] = (31 << 3) | 2;
            d[13] = 0xff;
        }
    }
    let mut schedule: Vec<(i64, usize)> = vec![];
    for (i, _) in datagrams.iter().enumerate() {
        // the sender's clock runs 800 ppm fast
        let t = frames_to_ns(((i + 1) * 480) as i64) * 10_000 / 10_008;
        if (1200..1300).contains(&i) {
            continue; // 1 s outage
        }
        if (600..700).contains(&i) {
            // a second of 80 ms more delay: the adaptive target rises and the delay is
            // moved up by pitch-period splices
            schedule.push((t + 80_000_000, i));
            continue;
        }
        match i % 50 {
            7 => {}                                      // lost
            11 => schedule.push((t + 40_000_000, i)),    // late
            13 => schedule.extend([(t, i), (t + 1, i)]), // duplicate
            17 => schedule.push((t + 12_000_000, i)),    // reordered within the buffer
            _ => schedule.push((t, i)),
        }
    }
    schedule.sort();
    let cfg = PlayoutConfig {
        mode,
        channels: 2,
        latency_ns: 20_000_000,
        ..PlayoutConfig::default()
    };
    let mut playout = StreamPlayout::new(7, cfg).unwrap();
    let mut out = vec![0f32; 2 * 256];

    let adaptive = matches!(mode, DelayMode::Adaptive { .. });
    let mut rate_moved = false;
    reset_violation_count();
    assert_no_alloc(|| {
        let mut next = 0;
        let mut f = 0u64;
        while next < schedule.len() || f < 3100 * 480 {
            let now = frames_to_ns(f as i64);
            while next < schedule.len() && schedule[next].0 <= now {
                let i = schedule[next].1;
                if let Some(h) = &headers[i] {
                    playout.insert(h, h.payload(&datagrams[i]), schedule[next].0);
                }
                next += 1;
            }
            playout.pull(&mut out, f, now, &mut NoSegments);
            rate_moved |= playout.rate() != 1.0;
            f += 256;
        }
    });
    assert_eq!(
        violation_count(),
        0,
        "the playout allocated inside the audio-thread scope"
    );
    let c = playout.counters();
    // the schedule really exercised every path (the adaptive delay grows to take the late
    // packets in time, and plays through the rate stage)
    assert!(
        c.missing > 0 && (c.late > 0 || adaptive) && c.duplicates > 0 && c.recovered_fec > 0,
        "{c:?}"
    );
    assert!(rate_moved, "the rate stage never resampled");
    assert!(!adaptive || c.tsm_operations > 0, "no splice was made: {c:?}");
    assert!(
        c.decode_errors > 0 && c.ended > 0 && c.resyncs >= 2 && c.seq_jumps >= 1,
        "{c:?}"
    );

    // and the test does detect an allocation
    reset_violation_count();
    assert_no_alloc(|| drop(std::hint::black_box(vec![1u8; 16])));
    assert!(violation_count() >= 1, "the allocator check is not active");
}
