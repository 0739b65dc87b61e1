//! Adaptive delay: the target follows the jitter (up fast, down slowly), the delay follows
//! the target by removing and repeating pitch periods, and clock drift is absorbed by the
//! rate stage, which follows the drift estimate alone.

use patchcord_common::playout::{DelayMode, NoSegments, PlayoutConfig, StreamPlayout};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::time::frames_to_ns;

const FRAME: usize = 480;

fn packets(n: usize) -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::LowDelay).unwrap();
    let mut pk = Packetizer::new(1, 96, 100, 1000);
    let pcm: Vec<f32> = (0..FRAME).map(|i| (i as f32 * 0.07).sin() * 0.3).collect();
    let mut buf = [0u8; 1500];
    let mut rtp = [0u8; 1500];
    (0..n)
        .map(|i| {
            let len = enc.encode_float(&pcm, &mut buf).unwrap();
            let l = pk.build((i * FRAME) as u64, &buf[..len], &mut rtp).unwrap();
            rtp[..l].to_vec()
        })
        .collect()
}

/// Adaptive mode, mono, from `min_ms` up to 500 ms, 99 % quantile.
fn adaptive_cfg(min_ms: i64) -> PlayoutConfig {
    PlayoutConfig {
        mode: DelayMode::Adaptive {
            min_ns: min_ms * 1_000_000,
            max_ns: 500_000_000,
            quantile: 0.99,
        },
        channels: 1,
        latency_ns: min_ms * 1_000_000,
        ..PlayoutConfig::default()
    }
}

struct Trace {
    /// (time s, target ms, delay ms, rate) once a second
    seconds: Vec<(f64, f64, f64, f64)>,
}

/// Sender clock `ppm` fast; packet i leaves at its capture end and arrives after 1 ms plus
/// `jitter_ms(i, t)` (uniform in [0, j) from a fixed PRNG).
fn run(secs: usize, ppm: f64, jitter_ms: impl Fn(f64) -> f64, min_ms: i64) -> (StreamPlayout, Trace) {
    let n = secs * 48_000 / FRAME;
    let dgrams = packets(n);
    let mut seed = 0x1234_5678_9abc_def1u64;
    let mut arrivals: Vec<(i64, usize)> = (0..n)
        .map(|i| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let sent = (frames_to_ns(((i + 1) * FRAME) as i64) as f64 / (1.0 + ppm * 1e-6)) as i64;
            let j = jitter_ms(sent as f64 * 1e-9);
            (sent + 1_000_000 + (u * j * 1e6) as i64, i)
        })
        .collect();
    arrivals.sort();
    let cfg = adaptive_cfg(min_ms);
    let mut p = StreamPlayout::new(1, cfg).unwrap();
    let mut out = vec![0f32; 128];
    let mut f = 0u64;
    let mut next = 0;
    let mut trace = Trace { seconds: vec![] };
    let end = frames_to_ns((n * FRAME) as i64) - 100_000_000;
    loop {
        let now = frames_to_ns(f as i64);
        if now > end {
            break;
        }
        while next < arrivals.len() && arrivals[next].0 <= now {
            let d = &dgrams[arrivals[next].1];
            let h = validate_opus_rtp(d, 96).unwrap();
            p.insert(&h, h.payload(d), arrivals[next].0);
            next += 1;
        }
        p.pull(&mut out, f, now, &mut NoSegments);
        f += 128;
        if f % 48_000 < 128 {
            trace.seconds.push((
                now as f64 * 1e-9,
                p.target_delay_ns() as f64 / 1e6,
                p.delay_ns().unwrap_or(0) as f64 / 1e6,
                p.rate(),
            ));
        }
    }
    (p, trace)
}

fn at(t: &Trace, s: f64) -> (f64, f64, f64, f64) {
    *t.seconds.iter().find(|x| x.0 >= s).unwrap()
}

#[test]
fn clean_network_stays_at_the_minimum_without_glitches() {
    // (a new stream is held at its start-up delay for its first minute)
    let (p, t) = run(100, 0.0, |_| 0.3, 5);
    let c = p.counters();
    let (_, target, delay, _) = at(&t, 90.0);
    assert!(target <= 5.0 + 0.01, "target {target}");
    // splices move the delay in steps of at least 2.5 ms and stop within 6 ms above the
    // target (never below it by more than 1 ms)
    assert!(
        (-1.0..6.5).contains(&(delay - target)),
        "delay {delay} vs target {target}"
    );
    assert_eq!((c.late, c.missing, c.underruns), (0, 0, 0), "{c:?}");
}

#[test]
fn target_rises_with_jitter_and_comes_back_down() {
    // 20 ms of jitter from 70 s to 130 s (after the start-up hold of the first minute);
    // the target remembers its peaks for two minutes
    let (p, t) = run(
        270,
        0.0,
        |s| if (70.0..130.0).contains(&s) { 20.0 } else { 0.3 },
        5,
    );
    let (_, before, _, _) = at(&t, 68.0);
    let (_, rising, _, _) = at(&t, 71.0);
    let (_, settled, delay, _) = at(&t, 120.0);
    let (_, after_3s, _, _) = at(&t, 133.0);
    let (_, after, delay_after, _) = at(&t, 262.0);
    eprintln!("{:?}", t.seconds.iter().step_by(5).collect::<Vec<_>>());
    assert!(before <= 5.01, "before {before}");
    assert!(rising > 18.0, "target did not rise within a second: {rising}");
    // the largest of uniform 0..20 ms is 20 ms; + period 2.7 ms + 0.5 ms margin, one bucket
    assert!((21.0..=24.5).contains(&settled), "settled target {settled}");
    assert!(
        (-1.0..6.5).contains(&(delay - settled)),
        "delay {delay} did not follow {settled}"
    );
    assert!(after_3s > 15.0, "fell too fast: {after_3s}");
    assert!(
        after <= 5.01 && delay_after < 8.5,
        "did not come down: {after} / {delay_after}"
    );
    let c = p.counters();
    // the jitter's peaks are covered: a few late packets while it rises, then none
    assert!(c.late < 6000 / 200, "{c:?}");
    assert_eq!(c.underruns.saturating_sub(c.late), 0, "{c:?}");
}

#[test]
fn clock_drift_is_absorbed_by_the_rate_stage() {
    for ppm in [500.0, -500.0] {
        let (p, t) = run(90, ppm, |_| 0.3, 5);
        let c = p.counters();
        let (_, target, delay, rate) = at(&t, 80.0);
        // (splices hold the delay within 6 ms above the target)
        assert!(
            (-1.0..6.5).contains(&(delay - target)),
            "{ppm} ppm: delay {delay} vs target {target}"
        );
        assert!((rate - 1.0 - ppm * 1e-6).abs() < 100e-6, "{ppm} ppm: rate {rate}");
        assert!(
            (p.drift() - ppm * 1e-6).abs() < 100e-6,
            "{ppm} ppm: drift {}",
            p.drift()
        );
        assert_eq!((c.late, c.underruns), (0, 0), "{ppm}: {c:?}");
    }
}

/// An adaptive start listens for 200 ms, then starts at the target delay: the older packets
/// of the warm-up are discarded without being decoded (all but the last, which primes the
/// decoder), so a start costs about one decode, not twenty. Counted as `discarded`.
#[test]
fn a_start_decodes_one_discarded_packet_not_the_whole_warm_up() {
    struct Count {
        decoded_in_the_past: usize,
        first_played: Option<u64>,
    }
    impl patchcord_common::playout::SegmentSink for Count {
        fn segment(&mut self, s: &patchcord_common::playout::Segment) {
            if let patchcord_common::playout::SampleSource::Packet { seq } = s.source {
                if s.frames == 0 {
                    self.decoded_in_the_past += 1;
                } else if self.first_played.is_none() {
                    self.first_played = Some(seq);
                }
            }
        }
    }
    let dgrams = packets(60);
    let cfg = adaptive_cfg(5);
    let mut p = StreamPlayout::new(1, cfg).unwrap();
    let mut sink = Count {
        decoded_in_the_past: 0,
        first_played: None,
    };
    let mut out = vec![0f32; 480];
    for (k, d) in dgrams.iter().enumerate() {
        let now = frames_to_ns(((k + 1) * FRAME) as i64) + 1_000_000;
        let h = validate_opus_rtp(d, 96).unwrap();
        p.insert(&h, h.payload(d), now);
        p.pull(&mut out, (k * FRAME) as u64, now, &mut sink);
    }
    let c = p.counters();
    assert!(sink.first_played.is_some(), "the stream started playing");
    // the start skipped (most of) the warm-up; every packet is accounted for
    assert!(c.discarded >= 15, "{c:?}");
    assert_eq!(
        c.played + c.discarded + p.buffered_packets().0 as u64,
        60,
        "{c:?}"
    );
    assert_eq!(sink.decoded_in_the_past, 1, "{c:?}");
    assert_eq!((c.late, c.missing, c.concealed_frames), (0, 0, 0), "{c:?}");
}

/// A stream that starts plays first above its target and comes down by removing pitch
/// periods: it never repeats any (never plays "slow" to fill the buffer), and the rate stays
/// exactly 1 (one clock: nothing to resample).
#[test]
fn start_up_comes_down_from_above_and_never_plays_slow() {
    let (p, t) = run(90, 0.0, |_| 0.3, 5);
    let c = p.counters();
    assert_eq!(c.tsm_inserted_samples, 0, "{c:?}");
    assert!(c.tsm_removed_samples > 0, "{c:?}");
    assert!(
        t.seconds.iter().all(|s| s.3 == 1.0),
        "rate moved: {:?}",
        t.seconds
    );
    // held at the start-up delay for a minute, then down to the target
    let (_, held, held_delay, _) = at(&t, 30.0);
    assert!(
        held > 10.0 && (-1.0..6.5).contains(&(held_delay - held)),
        "{held_delay} vs {held}"
    );
    let (_, target, delay, _) = at(&t, 85.0);
    assert!(
        target < 5.01 && (-1.0..6.5).contains(&(delay - target)),
        "{delay} vs {target}"
    );
    assert_eq!((c.late, c.missing, c.concealed_samples), (0, 0, 0), "{c:?}");
}

/// Frequency of a tone from the upward zero crossings of `x` (least-squares period).
fn tone_hz(x: &[f32]) -> f64 {
    let mut crossings = vec![];
    for i in 1..x.len() {
        if x[i - 1] < 0.0 && x[i] >= 0.0 {
            let frac = x[i - 1] as f64 / (x[i - 1] as f64 - x[i] as f64);
            crossings.push(i as f64 - 1.0 + frac);
        }
    }
    let n = crossings.len() as f64;
    let (mut sk, mut st, mut skk, mut skt) = (0.0, 0.0, 0.0, 0.0);
    for (k, &t) in crossings.iter().enumerate() {
        let k = k as f64;
        sk += k;
        st += t;
        skk += k * k;
        skt += k * t;
    }
    let period = (n * skt - sk * st) / (n * skk - sk * sk);
    48_000.0 / period
}

/// The adaptive delay moves by tens of milliseconds (jitter grows to 50 ms and goes away)
/// while a 440 Hz tone plays: the tone stays at 440 Hz (±0.1 Hz, every clean second), because
/// the delay moves by whole pitch periods, not by resampling.
#[test]
fn a_tone_keeps_its_pitch_while_the_delay_moves() {
    struct Plc(Vec<u64>);
    let _ = Plc(vec![]).0.len();
    impl patchcord_common::playout::SegmentSink for Plc {
        fn segment(&mut self, s: &patchcord_common::playout::Segment) {
            use patchcord_common::playout::SampleSource;
            if matches!(s.source, SampleSource::Plc | SampleSource::FadingPlc { .. }) {
                self.0.push(s.out_frame);
            }
        }
    }
    let secs = 160;
    let n = secs * 48_000 / FRAME;
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(64_000)).unwrap();
    let mut pk = Packetizer::new(1, 96, 100, 1000);
    let (mut buf, mut rtp) = ([0u8; 1500], [0u8; 1500]);
    let w = 2.0 * std::f64::consts::PI * 440.0 / 48_000.0;
    let mut seed = 0x5151_7272u64;
    let mut arrivals: Vec<(i64, Vec<u8>)> = (0..n)
        .map(|i| {
            let pcm: Vec<f32> = (0..FRAME)
                .map(|k| (((i * FRAME + k) as f64 * w).sin() * 0.5) as f32)
                .collect();
            let len = enc.encode_float(&pcm, &mut buf).unwrap();
            let l = pk.build((i * FRAME) as u64, &buf[..len], &mut rtp).unwrap();
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let u = (seed >> 11) as f64 / (1u64 << 53) as f64;
            let t = (i * FRAME) as f64 / 48_000.0;
            // jitter: none, then 70 ms from 5 s to 15 s, then none again (the target
            // remembers it for two minutes)
            let j = if (5.0..15.0).contains(&t) { 70.0 } else { 0.3 };
            let sent = frames_to_ns(((i + 1) * FRAME) as i64);
            (sent + 1_000_000 + (u * j * 1e6) as i64, rtp[..l].to_vec())
        })
        .collect();
    arrivals.sort();
    let cfg = adaptive_cfg(5);
    let mut p = StreamPlayout::new(1, cfg).unwrap();
    let mut out = vec![0f32; n * FRAME];
    let mut plc = Plc(vec![]);
    let (mut f, mut next) = (0usize, 0usize);
    let mut delays = vec![];
    let mut concealed_at = vec![];
    while f + 128 <= out.len() {
        let now = frames_to_ns(f as i64);
        while next < arrivals.len() && arrivals[next].0 <= now {
            let d = &arrivals[next].1;
            let h = validate_opus_rtp(d, 96).unwrap();
            p.insert(&h, h.payload(d), arrivals[next].0);
            next += 1;
        }
        let concealed = plc.0.len();
        p.pull(&mut out[f..f + 128], f as u64, now, &mut plc);
        if plc.0.len() != concealed {
            // concealment was decoded in this pull: it plays within the next ~40 ms
            concealed_at.push(f);
        }
        if f % 48_000 == 0 {
            delays.push(p.delay_ns().unwrap_or(0) / 1_000_000);
        }
        f += 128;
    }
    let c = p.counters();
    let (lo, hi) = (delays[4..].iter().min().unwrap(), delays.iter().max().unwrap());
    eprintln!("delay by second (ms): {delays:?}\n{c:?}");
    assert!(hi - lo >= 50, "the delay moved only {lo}..{hi} ms");
    assert!(
        c.tsm_removed_samples >= 2400 && c.tsm_inserted_samples >= 2400,
        "{c:?}"
    );
    assert!(p.rate() == 1.0);
    // seconds with concealment (late packets while the jitter rises) are not judged:
    // concealment changes a tone's phase; splices must not
    let mut checked = 0;
    for s in 1..secs - 1 {
        let (a, b) = (s * 48_000, (s + 1) * 48_000);
        if concealed_at.iter().any(|&x| x + 4_800 >= a && x <= b) {
            continue;
        }
        let hz = tone_hz(&out[a..b]);
        assert!((hz - 440.0).abs() < 0.1, "second {s}: {hz} Hz");
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} clean seconds");
}

/// Speech-like audio (0.6 s of a voiced harmonic sound, 0.4 s of silence): the delay's
/// non-urgent moves wait for a pause. The start-up margin comes off after the first
/// minute's hold, and a loss (the target then makes room for FEC recovery) grows the delay while it still plays every packet in time: every splice lies in a pause, none in
/// the sound (a time shift inside a word is what PESQ and ears notice; BENCHMARKS §4).
#[test]
fn unhurried_splices_wait_for_a_pause() {
    struct Offsets(Vec<(u64, u64)>);
    impl patchcord_common::playout::SegmentSink for Offsets {
        fn segment(&mut self, s: &patchcord_common::playout::Segment) {
            if s.frames > 0 && s.rtp_ts != 0 {
                self.0.push((s.out_frame, s.rtp_ts));
            }
        }
    }
    let secs = 100;
    let n = secs * 48_000 / FRAME;
    let voiced = |i: usize| {
        let t = i as f64 / 48_000.0;
        if t.fract() < 0.6 {
            let w = 2.0 * std::f64::consts::PI * 160.0 * t;
            (0.3 * w.sin() + 0.15 * (2.0 * w).sin() + 0.08 * (3.0 * w).sin()) as f32
        } else {
            0.0
        }
    };
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(64_000)).unwrap();
    enc.set_inband_fec(true).unwrap();
    enc.set_packet_loss_perc(10).unwrap();
    let mut pk = Packetizer::new(1, 96, 100, 1000);
    let (mut buf, mut rtp) = ([0u8; 1500], [0u8; 1500]);
    // one packet lost at 75.3 s (in the sound)
    let lost = 75_300 * 48 / FRAME;
    let arrivals: Vec<(i64, Vec<u8>)> = (0..n)
        .filter_map(|i| {
            let pcm: Vec<f32> = (0..FRAME).map(|k| voiced(i * FRAME + k)).collect();
            let len = enc.encode_float(&pcm, &mut buf).unwrap();
            let l = pk.build((i * FRAME) as u64, &buf[..len], &mut rtp).unwrap();
            let sent = frames_to_ns(((i + 1) * FRAME) as i64);
            (i != lost).then(|| (sent + 1_000_000, rtp[..l].to_vec()))
        })
        .collect();
    let cfg = adaptive_cfg(5);
    let mut p = StreamPlayout::new(1, cfg).unwrap();
    let mut out = vec![0f32; 128];
    let mut segs = Offsets(vec![]);
    let (mut f, mut next) = (0u64, 0usize);
    while (f as usize) + 128 <= n * FRAME {
        let now = frames_to_ns(f as i64);
        while next < arrivals.len() && arrivals[next].0 <= now {
            let d = &arrivals[next].1;
            let h = validate_opus_rtp(d, 96).unwrap();
            p.insert(&h, h.payload(d), arrivals[next].0);
            next += 1;
        }
        p.pull(&mut out, f, now, &mut segs);
        f += 128;
    }
    let c = p.counters();
    eprintln!("{c:?}");
    assert!(c.tsm_removed_samples > 0 && c.tsm_inserted_samples > 0, "{c:?}");
    // (the loss is concealed: at 5 ms the next packet is not there yet; the target then
    // makes room to recover the next one)
    assert_eq!((c.late, c.missing), (0, 1), "{c:?}");
    // a splice shows as a change of (output frame − stream position) between segments;
    // the stream audio around both of its ends is silent
    let ts0 = (1u64 << 40) + 1000;
    let mut splices = 0;
    for w in segs.0.windows(2) {
        let (a, b) = (w[0], w[1]);
        if a.0 as i64 - a.1 as i64 == b.0 as i64 - b.1 as i64 {
            continue;
        }
        splices += 1;
        let at = (b.1 - ts0) as i64;
        let moved = (b.0 as i64 - b.1 as i64) - (a.0 as i64 - a.1 as i64);
        for i in (at - moved.abs() - 2400).max(0)..at + moved.abs() + 2400 {
            assert_eq!(
                voiced(i as usize),
                0.0,
                "splice of {moved} frames at stream frame {at}"
            );
        }
    }
    assert!(splices >= 2, "{splices} splices");
}
