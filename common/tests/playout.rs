//! Playout engine tests: real Opus packets, virtual time, exact expectations.

use patchcord_common::playout::{PlayoutConfig, SampleSource, Segment, SegmentSink, StreamPlayout};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::time::frames_to_ns;

const PT: u8 = 96;

struct Collect(Vec<Segment>);
impl SegmentSink for Collect {
    fn segment(&mut self, s: &Segment) {
        self.0.push(*s);
    }
}

/// Pseudo-random noise, deterministic.
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.8
        })
        .collect()
}

struct Encoded {
    datagrams: Vec<Vec<u8>>,
    frame: usize,
}

fn encode(signal: &[f32], frame: usize, app: opus::Application, fec: bool, seq0: u16, ts0: u32) -> Encoded {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, app).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(64_000)).unwrap();
    if fec {
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(20).unwrap();
    }
    let mut pk = Packetizer::new(0x5eed, PT, seq0, ts0);
    let mut out = vec![];
    let mut buf = [0u8; 1500];
    let mut rtp = [0u8; 1500];
    for (i, chunk) in signal.chunks_exact(frame).enumerate() {
        let n = enc.encode_float(chunk, &mut buf).unwrap();
        let len = pk.build((i * frame) as u64, &buf[..n], &mut rtp).unwrap();
        out.push(rtp[..len].to_vec());
    }
    Encoded {
        datagrams: out,
        frame,
    }
}

/// Reference decode of all packets in order, no loss.
fn reference_decode(e: &Encoded) -> Vec<f32> {
    let mut dec = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
    let mut out = vec![];
    let mut buf = vec![0f32; 5760];
    for d in &e.datagrams {
        let h = validate_opus_rtp(d, PT).unwrap();
        let n = dec.decode_float(h.payload(d), &mut buf, false).unwrap();
        out.extend_from_slice(&buf[..n]);
    }
    out
}

fn cfg(latency_ms: i64) -> PlayoutConfig {
    PlayoutConfig {
        channels: 1,
        latency_ns: latency_ms * 1_000_000,
        capacity_packets: 256,
        ..PlayoutConfig::default()
    }
}

/// Drive the playout: packet i is sent at i*frame and arrives `delay(i)` ns later (None =
/// lost); the output is pulled in `period`-frame callbacks at their nominal time.
fn run(
    e: &Encoded,
    cfg: PlayoutConfig,
    period: usize,
    total_frames: usize,
    mut delay: impl FnMut(usize) -> Option<i64>,
) -> (Vec<f32>, StreamPlayout, Vec<Segment>) {
    let mut p = StreamPlayout::new(0x5eed, cfg).unwrap();
    let mut arrivals: Vec<(i64, usize)> = (0..e.datagrams.len())
        .filter_map(|i| delay(i).map(|d| (frames_to_ns((i * e.frame + e.frame) as i64) + d, i)))
        .collect();
    arrivals.sort();
    let mut next = 0;
    let mut out = vec![0f32; total_frames];
    let mut sink = Collect(vec![]);
    let mut f = 0usize;
    while f + period <= total_frames {
        let now = frames_to_ns(f as i64);
        while next < arrivals.len() && arrivals[next].0 <= now {
            let d = &e.datagrams[arrivals[next].1];
            let h = validate_opus_rtp(d, PT).unwrap();
            p.insert(&h, h.payload(d), arrivals[next].0);
            next += 1;
        }
        p.pull(&mut out[f..f + period], f as u64, now, &mut sink);
        f += period;
    }
    (out, p, sink.0)
}

/// Output frame at which the sample with stream index 0 plays.
fn offset_of(p: &StreamPlayout, ts0: u32) -> i64 {
    let tl = p.timeline().unwrap();
    // ts0 is the packetizer's initial timestamp; extended ts = 2^40 + ts0 (no wrap here)
    tl.out_frame0 as i64 - (tl.ts0 as i64 - ((1i64 << 40) + ts0 as i64))
}

#[test]
fn clean_network_plays_every_sample_with_exact_fixed_delay() {
    let sig = noise(48_000, 1);
    let e = encode(&sig, 480, opus::Application::Audio, false, 100, 5_000);
    let reference = reference_decode(&e);
    let (out, p, segs) = run(&e, cfg(20), 64, 52_000, |_| Some(300_000));
    let c = p.counters();
    assert_eq!(c.packets_received, 100);
    assert_eq!((c.missing, c.late, c.duplicates, c.decode_errors), (0, 0, 0, 0));
    // the only concealment is after the stream ended: not a glitch (its end is counted
    // once the stream has been silent for `idle_after`, later than this run)
    assert_eq!(
        (c.underruns, c.concealment_events, c.concealed_samples),
        (0, 0, 0)
    );
    let last_packet_end = segs
        .iter()
        .filter(|s| matches!(s.source, SampleSource::Packet { .. }))
        .map(|s| s.out_frame + s.frames as u64)
        .max()
        .unwrap();
    assert!(segs
        .iter()
        .filter(|s| s.source == SampleSource::Plc)
        .all(|s| s.out_frame >= last_packet_end));
    assert_eq!(c.played, 100);
    // first packet: sent at 10 ms (last sample captured), arrives 0.3 ms later, pulled 20 ms
    // after arrival: frame 48*30.3 = 1454.4 -> next callback boundary is not required, the
    // timeline is sample-accurate: ceil.
    let off = offset_of(&p, 5_000);
    assert_eq!(off, 1455);
    for (k, r) in reference.iter().enumerate() {
        let o = off as usize + k;
        if o < out.len() {
            assert_eq!(out[o], *r, "sample {k}");
        }
    }
    assert!(out[..off as usize].iter().all(|&s| s == 0.0));
    // attribution: 100 packet segments, in order, contiguous
    let pk: Vec<_> = segs
        .iter()
        .filter(|s| matches!(s.source, SampleSource::Packet { .. }))
        .collect();
    assert_eq!(pk.len(), 100);
    assert_eq!(pk[0].out_frame, off as u64);
    for w in pk.windows(2) {
        assert_eq!(w[1].out_frame, w[0].out_frame + 480);
    }
}

#[test]
fn lost_packet_is_concealed_and_counted() {
    let sig = noise(48_000, 2);
    let e = encode(&sig, 480, opus::Application::LowDelay, false, 0, 0);
    let reference = reference_decode(&e);
    let (out, p, segs) = run(&e, cfg(20), 64, 50_048, |i| if i == 40 { None } else { Some(0) });
    let c = p.counters();
    assert_eq!(c.packets_received, 99);
    assert_eq!(c.underruns, 0); // the end of the stream is not a glitch
    assert_eq!(c.missing, 1);
    assert_eq!(c.recovered_fec, 0); // CELT carries no FEC
    assert_eq!(c.concealment_events, 1); // the loss
    assert_eq!(p.register().cumulative_lost(), 1);
    let off = offset_of(&p, 0) as usize;
    // samples before the loss are bit-exact
    assert_eq!(&out[off..off + 40 * 480], &reference[..40 * 480]);
    let end = (off + 99 * 480) as u64;
    let plc: Vec<_> = segs
        .iter()
        .filter(|s| s.source == SampleSource::Plc && s.out_frame < end)
        .collect();
    assert_eq!(plc.len(), 1);
    assert_eq!(plc[0].out_frame as usize, off + 40 * 480);
    assert_eq!(plc[0].frames, 480);
}

#[test]
fn fec_recovers_a_single_loss_in_silk_mode() {
    let sig: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.03).sin() * 0.4).collect();
    let e = encode(&sig, 960, opus::Application::Voip, true, 7, 9);
    let (_, p, segs) = run(&e, cfg(40), 64, 47_000, |i| if i == 20 { None } else { Some(0) });
    let c = p.counters();
    assert_eq!(c.missing, 1);
    assert_eq!(c.recovered_fec, 1);
    assert_eq!(c.concealed_samples, 0);
    assert!(segs.iter().any(|s| matches!(s.source, SampleSource::Fec { .. })));
}

/// Two losses in a row at a delay under two frames: the buffer runs dry at the first (the
/// second is lost too, the third not yet there); the second is then recovered from the
/// third's FEC, not concealed.
#[test]
fn fec_recovers_the_second_of_two_losses_after_a_dry_frame() {
    let sig: Vec<f32> = (0..48_000).map(|i| (i as f32 * 0.03).sin() * 0.4).collect();
    let e = encode(&sig, 960, opus::Application::Voip, true, 7, 9);
    let (_, p, segs) = run(&e, cfg(30), 64, 47_000, |i| {
        if i == 20 || i == 21 {
            None
        } else {
            Some(0)
        }
    });
    let c = p.counters();
    assert_eq!(c.missing, 2);
    assert_eq!(c.recovered_fec, 1);
    assert_eq!(c.concealed_frames, 1);
    let fec: Vec<_> = segs
        .iter()
        .filter_map(|s| match s.source {
            SampleSource::Fec { seq } => Some(seq),
            _ => None,
        })
        .collect();
    assert_eq!(fec.len(), 1);
    assert_eq!(fec[0] % 65_536, 7 + 21);
}

#[test]
fn late_and_duplicate_packets_are_counted_and_dropped() {
    let sig = noise(24_000, 3);
    let e = encode(
        &sig,
        480,
        opus::Application::LowDelay,
        false,
        65_500,
        u32::MAX - 2000,
    );
    let mut p = StreamPlayout::new(1, cfg(20)).unwrap();
    let mut out = vec![0f32; 64];
    let mut sink = Collect(vec![]);
    let mut f = 0u64;
    let insert = |p: &mut StreamPlayout, i: usize, at: i64| {
        let d = &e.datagrams[i];
        let h = validate_opus_rtp(d, PT).unwrap();
        p.insert(&h, h.payload(d), at)
    };
    // packets 0..50 on time except 10 (arrives 200 ms late) and 20 (sent twice)
    for i in 0..50usize {
        let at = frames_to_ns(((i + 1) * 480) as i64);
        while frames_to_ns(f as i64) < at {
            p.pull(&mut out, f, frames_to_ns(f as i64), &mut sink);
            f += 64;
        }
        if i != 10 {
            insert(&mut p, i, at);
        }
        if i == 20 {
            insert(&mut p, i, at);
        }
    }
    insert(&mut p, 10, frames_to_ns(f as i64));
    let c = *p.counters();
    assert_eq!(c.duplicates, 1);
    assert_eq!(c.late, 1);
    assert_eq!(c.missing, 1);
    assert_eq!(p.register().cumulative_lost(), -1); // RFC 3550: duplicate counted as received
}

#[test]
fn outage_longer_than_buffer_recovers_with_new_timeline() {
    let sig = noise(96_000, 4);
    let e = encode(&sig, 480, opus::Application::LowDelay, false, 0, 0);
    // packets 50..150 lost (1 s outage)
    let (out, p, _) = run(&e, cfg(20), 64, 96_000, |i| {
        if (50..150).contains(&i) {
            None
        } else {
            Some(0)
        }
    });
    let c = p.counters();
    // an outage longer than `idle_after` ends the timeline (one frame of concealment, faded
    // out); the packets after it start a new one
    assert_eq!((c.underruns, c.ended, c.resyncs), (0, 1, 1));
    // after the resync, audio plays with the same 20 ms delay: packet 150 is sent at 151*10ms
    // and plays 20 ms after arrival
    let tl = p.timeline().unwrap();
    let ts150 = (1u64 << 40) + 150 * 480;
    let play150 = tl.out_frame0 as i64 + (ts150 as i64 - tl.ts0 as i64);
    assert_eq!(play150, 151 * 480 + 960);
    let reference = reference_decode(&e);
    // decoder was reset at the resync: compare a later stretch loosely by energy
    let seg = &out[play150 as usize + 4800..play150 as usize + 9600];
    let energy: f32 = seg.iter().map(|s| s * s).sum();
    let ref_energy: f32 = reference[160 * 480..170 * 480].iter().map(|s| s * s).sum();
    assert!(
        (energy / ref_energy - 1.0).abs() < 0.2,
        "{energy} vs {ref_energy}"
    );
}

#[test]
fn sender_restart_with_new_sequence_resyncs() {
    let sig = noise(48_000, 5);
    let a = encode(&sig, 480, opus::Application::LowDelay, false, 1000, 0);
    let b = encode(&sig, 480, opus::Application::LowDelay, false, 40_000, 77_777);
    let mut p = StreamPlayout::new(0x5eed, cfg(20)).unwrap();
    let mut out = vec![0f32; 64];
    let mut f = 0u64;
    let mut t = 0i64;
    for i in 0..150usize {
        t += 10_000_000;
        let d = if i < 50 {
            &a.datagrams[i]
        } else {
            &b.datagrams[i - 50]
        };
        let h = validate_opus_rtp(d, PT).unwrap();
        p.insert(&h, h.payload(d), t);
        while frames_to_ns(f as i64) < t {
            p.pull(&mut out, f, frames_to_ns(f as i64), &mut Collect(vec![]));
            f += 64;
        }
    }
    let c = p.counters();
    assert_eq!(c.seq_jumps, 1);
    assert_eq!(c.resyncs, 1);
    assert!(c.played > 140, "{c:?}");
}

#[test]
fn garbage_payload_is_concealed_not_fatal() {
    let sig = noise(9600, 6);
    let e = encode(&sig, 480, opus::Application::LowDelay, false, 0, 0);
    let mut p = StreamPlayout::new(0x5eed, cfg(20)).unwrap();
    let mut out = vec![0f32; 64];
    let (mut f, mut next) = (0usize, 0usize);
    while f < 12_032 {
        let now = frames_to_ns(f as i64);
        while next < e.datagrams.len() && frames_to_ns(((next + 1) * 480) as i64) <= now {
            let d = &e.datagrams[next];
            let h = validate_opus_rtp(d, PT).unwrap();
            let mut payload = h.payload(d).to_vec();
            if next == 5 {
                // behind a header that validated, a payload libopus cannot split into
                // frames (code 2, a first frame longer than the packet)
                payload[0] = (31 << 3) | 2;
                payload[1] = 0xff;
            }
            p.insert(&h, &payload, frames_to_ns(((next + 1) * 480) as i64));
            next += 1;
        }
        p.pull(&mut out, f as u64, now, &mut Collect(vec![]));
        f += 64;
    }
    assert_eq!(p.counters().decode_errors, 1, "{:?}", p.counters());
    assert_eq!(p.counters().played, 20 - 1);
}

/// Sender clock runs `ppm` fast or slow relative to the receiver's: in fixed mode the rate
/// stage follows the measured drift, so the buffer level (and so the delay) holds without a
/// single slip or concealed sample.
fn drift_run(ppm: f64) -> (StreamPlayout, Vec<i64>) {
    drift_run_with(ppm, |_| 0)
}

fn drift_run_with(ppm: f64, extra_delay_ns: impl Fn(usize) -> i64) -> (StreamPlayout, Vec<i64>) {
    let secs = 40usize;
    let sig = noise(48_000 * secs, 9);
    let e = encode(&sig, 480, opus::Application::LowDelay, false, 0, 0);
    let mut p = StreamPlayout::new(1, cfg(20)).unwrap();
    let mut out = vec![0f32; 64];
    let mut f = 0u64;
    let mut levels = vec![];
    let mut window_min = i64::MAX;
    let scale = 1.0 / (1.0 + ppm * 1e-6);
    for (i, d) in e.datagrams.iter().enumerate() {
        // packet i is complete at sender time (i+1)*10 ms on the sender's clock
        let at = (frames_to_ns(((i + 1) * 480) as i64) as f64 * scale) as i64 + 200_000 + extra_delay_ns(i);
        while frames_to_ns(f as i64) < at {
            p.pull(&mut out, f, frames_to_ns(f as i64), &mut Collect(vec![]));
            f += 64;
            window_min = window_min.min(p.buffered_samples() as i64);
            if f % 48_000 < 64 {
                levels.push(window_min);
                window_min = i64::MAX;
            }
        }
        let h = validate_opus_rtp(d, PT).unwrap();
        p.insert(&h, h.payload(d), at);
    }
    (p, levels)
}

fn assert_held(ppm: f64) {
    let (p, levels) = drift_run(ppm);
    let c = p.counters();
    assert_eq!(
        (
            c.missing,
            c.late,
            c.underruns,
            c.concealed_samples,
            c.tsm_operations
        ),
        (0, 0, 0, 0, 0),
        "{c:?}"
    );
    assert!(
        (p.drift() * 1e6 - ppm).abs() < 20.0,
        "drift {} ppm",
        p.drift() * 1e6
    );
    assert!((p.rate() - 1.0 - ppm * 1e-6).abs() < 250e-6, "rate {}", p.rate());
    // the level moves while the estimate forms (a few seconds), then holds
    let settled = &levels[10..];
    let spread = settled.iter().max().unwrap() - settled.iter().min().unwrap();
    assert!(spread < 48 * 3, "level wandered {spread} samples: {levels:?}");
}

#[test]
fn fixed_delay_holds_against_fast_sender_clock() {
    assert_held(1000.0);
}

#[test]
fn fixed_delay_holds_against_slow_sender_clock() {
    assert_held(-1000.0);
}

#[test]
fn without_drift_the_rate_is_exactly_one() {
    let (p, _) = drift_run(0.0);
    let c = p.counters();
    assert_eq!(p.rate(), 1.0);
    assert_eq!(c.concealed_samples, 0, "{c:?}");
}

#[test]
fn jitter_spikes_are_not_mistaken_for_drift() {
    // every 4 s, one packet 8 ms late (still within the 20 ms buffer)
    let (p, _) = drift_run_with(0.0, |i| if i % 400 == 150 { 8_000_000 } else { 0 });
    let c = p.counters();
    assert_eq!(p.rate(), 1.0);
    assert_eq!((c.late, c.concealed_samples), (0, 0), "{c:?}");
}

#[test]
fn jitter_buffer_is_sized_for_its_largest_delay() {
    use patchcord_common::playout::packets_for_delay;
    // 500 ms (the default --latency-max) + 250 ms of burst, in 2.5 ms frames
    assert_eq!(packets_for_delay(500_000_000), 300);
    assert_eq!(packets_for_delay(20_000_000), 108);
    assert_eq!(packets_for_delay(-5), 100);
}

/// A stream that stops without a BYE (ffmpeg, a killed sender) after playing cleanly: one
/// frame of concealment, a 20 ms fade, then silence; once it has been silent for
/// `idle_after` it is counted as `ended`, not as an underrun, concealment or interruption.
/// A stream that lost packets in its last 10 s conceals 200 ms plainly first (a loss burst
/// is then the likelier story), and is counted the same way.
#[test]
fn a_stream_that_stops_is_ended_not_concealed() {
    use patchcord_common::playout::{DRY_FADE_FRAMES, DRY_PLAIN_LOSSY_NS};
    let sig = noise(48_000, 12);
    let e = encode(&sig, 480, opus::Application::LowDelay, false, 0, 0);
    // clean, then lossy (packet 90 of 100 lost: 100 ms before the end)
    for (lost, plain) in [
        (None, 480usize),
        (Some(90), (DRY_PLAIN_LOSSY_NS * 48 / 1_000_000) as usize),
    ] {
        let (out, p, segs) = run(&e, cfg(20), 64, 48_000 * 3, |i| (Some(i) != lost).then_some(0));
        let c = p.counters();
        let lost_count = lost.map_or(0, |_| 1);
        assert_eq!(
            (
                c.ended,
                c.underruns,
                c.concealment_events,
                c.concealed_samples,
                c.interruptions
            ),
            (1, 0, lost_count, 480 * lost_count, 0),
            "{c:?}"
        );
        let last_packet_end = segs
            .iter()
            .filter(|s| matches!(s.source, SampleSource::Packet { .. }))
            .map(|s| s.out_frame + s.frames as u64)
            .max()
            .unwrap() as usize;
        let plc = segs
            .iter()
            .filter(|s| s.source == SampleSource::Plc && s.out_frame as usize >= last_packet_end)
            .count();
        assert_eq!(plc, plain / 480, "{lost:?}: plain concealment at the end");
        let silent_from = last_packet_end + plain + DRY_FADE_FRAMES as usize;
        assert!(out[silent_from..].iter().all(|&x| x == 0.0), "{lost:?}");
        assert!(out[last_packet_end..last_packet_end + plain]
            .iter()
            .any(|&x| x != 0.0));
    }
}

/// Segments name the output frame a sample plays at, whichever output frame the stream
/// joined at (a stream added to a running output), in both modes.
#[test]
fn segments_carry_output_frames_for_a_stream_that_joins_late() {
    use patchcord_common::playout::DelayMode;
    let sig = noise(48_000, 14);
    let e = encode(&sig, 480, opus::Application::LowDelay, false, 0, 0);
    for mode in [
        DelayMode::Fixed,
        DelayMode::Adaptive {
            min_ns: 5_000_000,
            max_ns: 500_000_000,
            quantile: 0.99,
        },
    ] {
        let base = 7_777_777u64;
        let mut p = StreamPlayout::new(3, PlayoutConfig { mode, ..cfg(20) }).unwrap();
        let mut out = vec![0f32; 60_000];
        let mut sink = Collect(vec![]);
        let mut next = 0;
        for f in (0..out.len() - 64).step_by(64) {
            let now = frames_to_ns(f as i64);
            while next < e.datagrams.len() && frames_to_ns(((next + 1) * 480) as i64) <= now {
                let d = &e.datagrams[next];
                let h = validate_opus_rtp(d, PT).unwrap();
                p.insert(&h, h.payload(d), frames_to_ns(((next + 1) * 480) as i64));
                next += 1;
            }
            p.pull(&mut out[f..f + 64], base + f as u64, now, &mut sink);
        }
        // a packet segment well after the start (the decoder state then matches a
        // continuous decode) plays its audio at the output frame it names: the match is
        // best at lag 0
        let reference = reference_decode(&e);
        let s = sink
            .0
            .iter()
            .filter(|s| matches!(s.source, SampleSource::Packet { .. }) && s.frames == 480)
            .nth(40)
            .unwrap();
        let at = (s.out_frame - base) as usize;
        let k = (s.rtp_ts - (1u64 << 40)) as usize; // stream sample index
        let err = |lag: usize| -> f32 {
            (0..480)
                .map(|j| (out[at + j] - reference[k + j + lag - 50]).powi(2))
                .sum()
        };
        let best = (0..=100).min_by(|&a, &b| err(a).total_cmp(&err(b))).unwrap();
        assert_eq!(best, 50, "{mode:?}: off by {} frames", best as i64 - 50);
        let energy: f32 = reference[k..k + 480].iter().map(|x| x * x).sum();
        assert!(err(50) < energy * 1e-3, "{mode:?} {s:?}");
    }
}
