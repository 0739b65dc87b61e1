//! Whole-pipeline simulation harness shared by `tests/sim.rs` and the impairment
//! benchmark (`examples/impairment_table.rs`): Opus encoder → RTP packetizer (→ RFC 2198)
//! → seeded netsim impairment → StreamPlayout pulled by a virtual output device.
#![allow(dead_code)]

use patchcord_common::playout::{DelayMode, PlayoutConfig, Segment, SegmentSink, StreamPlayout};
use patchcord_common::red::{validate_red_rtp, RedEncoder};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::time::frames_to_ns;
use patchcord_netsim::{named_profile, Fate, Impairment, Profile};

pub const PT: u8 = 96;
pub const RED_PT: u8 = 97;
pub const PERIOD: usize = 128;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Codec {
    /// CELT only, 10 ms frames.
    LowDelay,
    /// SILK/hybrid with in-band FEC, 20 ms frames.
    VoipFec,
    /// CELT, 10 ms frames, each packet carrying the previous 2 frames (RFC 2198).
    LowDelayRed2,
}

impl Codec {
    pub fn frame(self) -> usize {
        match self {
            Codec::VoipFec => 960,
            _ => 480,
        }
    }
}

pub struct Stream {
    /// RTP datagrams as sent, one per frame.
    pub datagrams: Vec<Vec<u8>>,
    /// The Opus payload of each frame (the primary), for replaying decodes.
    pub opus: Vec<Vec<u8>>,
    pub codec: Codec,
}

pub fn signal(n: usize) -> Vec<f32> {
    // a chord with a slow sweep, so concealment and FEC have real work to do
    (0..n)
        .map(|i| {
            let t = i as f32 / 48_000.0;
            0.25 * (2.0 * std::f32::consts::PI * (220.0 + 20.0 * t.sin()) * t).sin()
                + 0.15 * (2.0 * std::f32::consts::PI * 660.0 * t).sin()
        })
        .collect()
}

pub fn encode(codec: Codec, seconds: usize) -> Stream {
    let frame = codec.frame();
    let app = if codec == Codec::VoipFec {
        opus::Application::Voip
    } else {
        opus::Application::LowDelay
    };
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, app).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(48_000)).unwrap();
    if codec == Codec::VoipFec {
        enc.set_inband_fec(true).unwrap();
        enc.set_packet_loss_perc(20).unwrap();
    }
    let pt = if codec == Codec::LowDelayRed2 { RED_PT } else { PT };
    let mut pk = Packetizer::new(0xabc, pt, 60_000, 4_000_000_000);
    let mut red = RedEncoder::new(2).unwrap();
    let pcm = signal(seconds * 48_000);
    let (mut buf, mut redbuf, mut rtp) = ([0u8; 1500], [0u8; 1500], [0u8; 1500]);
    let mut datagrams = vec![];
    let mut opus_frames = vec![];
    for (i, chunk) in pcm.chunks_exact(frame).enumerate() {
        let n = enc.encode_float(chunk, &mut buf).unwrap();
        opus_frames.push(buf[..n].to_vec());
        let payload: &[u8] = if codec == Codec::LowDelayRed2 {
            let m = red
                .build_payload(&buf[..n], PT, frame as u32, &mut redbuf)
                .unwrap();
            &redbuf[..m]
        } else {
            &buf[..n]
        };
        let len = pk.build((i * frame) as u64, payload, &mut rtp).unwrap();
        datagrams.push(rtp[..len].to_vec());
    }
    Stream {
        datagrams,
        opus: opus_frames,
        codec,
    }
}

pub struct Log(pub Vec<Segment>);
impl SegmentSink for Log {
    fn segment(&mut self, s: &Segment) {
        self.0.push(*s);
    }
}

pub struct Outcome {
    pub playout: StreamPlayout,
    pub output: Vec<f32>,
    pub segments: Vec<Segment>,
    /// Per packet index: delivered copies' arrival times (empty = dropped).
    pub arrivals: Vec<Vec<i64>>,
    pub impair: patchcord_netsim::ImpairStats,
    /// (second, target ms, delay ms)
    pub trace: Vec<(f64, f64, f64)>,
}

pub fn simulate(stream: &Stream, profile: &str, seed: u64, mode: DelayMode) -> Outcome {
    let frame = stream.codec.frame();
    let profile = named_profile(profile)
        .or_else(|| Profile::parse(profile).ok())
        .unwrap_or_else(|| panic!("no profile {profile}"));
    let mut net = Impairment::new(profile, seed);
    let cfg = PlayoutConfig {
        mode,
        channels: 1,
        latency_ns: 60_000_000,
        ..PlayoutConfig::default()
    };
    let mut p = StreamPlayout::new(0xabc, cfg).unwrap();
    let n = stream.datagrams.len();
    let total_frames = n * frame + 48_000; // a second of tail for the path's delay
    let mut output = vec![0f32; total_frames];
    let mut log = Log(vec![]);
    let mut arrivals: Vec<Vec<i64>> = vec![vec![]; n];
    let mut trace = vec![];
    let mut next_send = 0usize;
    let mut f = 0usize;
    while f + PERIOD <= total_frames {
        let now = frames_to_ns(f as i64);
        // the sender emits packet i when its last sample is captured
        while next_send < n && frames_to_ns(((next_send + 1) * frame) as i64) <= now {
            let t = frames_to_ns(((next_send + 1) * frame) as i64);
            if let Fate::Delivered { .. } = net.submit(next_send as u64, t) {}
            next_send += 1;
        }
        while let Some((id, at)) = net.poll(now) {
            let i = id as usize;
            arrivals[i].push(at);
            let d = &stream.datagrams[i];
            if stream.codec == Codec::LowDelayRed2 {
                let (h, red) = validate_red_rtp(d, RED_PT, PT).unwrap();
                p.insert(&h, h.payload(d), at);
                for (seq, b) in red.frames_before(h.sequence, h.timestamp) {
                    p.insert_redundant(seq, b.timestamp(h.timestamp), b.duration_samples, b.payload(d));
                }
            } else {
                let h = validate_opus_rtp(d, PT).unwrap();
                p.insert(&h, h.payload(d), at);
            }
        }
        if next_send == n && net.next_delivery().is_none() {
            p.end_of_stream(); // RTCP BYE after the last packet
        }
        p.pull(&mut output[f..f + PERIOD], f as u64, now, &mut log);
        f += PERIOD;
        if f % 48_000 < PERIOD {
            trace.push((
                now as f64 * 1e-9,
                p.target_delay_ns() as f64 / 1e6,
                p.delay_ns().unwrap_or(0) as f64 / 1e6,
            ));
        }
    }
    let impair = net.stats();
    Outcome {
        playout: p,
        output,
        segments: log.0,
        arrivals,
        impair,
        trace,
    }
}

/// The path's 99th percentile of relative delay (ms): transit minus the minimum transit of
/// the preceding two seconds (the estimator's definition).
pub fn path_p99_ms(o: &Outcome, frame: usize) -> f64 {
    let mut transits: Vec<(i64, i64)> = o
        .arrivals
        .iter()
        .enumerate()
        .filter_map(|(i, a)| {
            a.first()
                .map(|&t| (t, t - frames_to_ns(((i + 1) * frame) as i64)))
        })
        .collect();
    transits.sort();
    let mut window: std::collections::VecDeque<(i64, i64)> = Default::default();
    let mut rel = Vec::with_capacity(transits.len());
    for &(t, tr) in &transits {
        // monotone deque for the sliding minimum
        while window.front().is_some_and(|&(u, _)| t - u >= 2_000_000_000) {
            window.pop_front();
        }
        while window.back().is_some_and(|&(_, v)| v >= tr) {
            window.pop_back();
        }
        window.push_back((t, tr));
        let min = window.iter().map(|x| x.1).min().unwrap_or(tr);
        rel.push(tr - min);
    }
    if rel.is_empty() {
        return 0.0;
    }
    rel.sort_unstable();
    rel[rel.len() * 99 / 100] as f64 / 1e6
}
