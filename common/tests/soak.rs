//! One simulated hour of the receiver's path for one sender, in virtual time (issue 10):
//! source validation (probation, then the bound stream's continuity), the stream's
//! adaptive playout pulled by a virtual output every 10 ms, and the receiver's stream
//! timeout, as `patchcord-recv` runs them. The sender's clock runs 100 ppm fast; its path
//! loses 5 % at random, delays each packet by 0–20 ms (so packets overtake each other),
//! holds 1 % back for two intervals and duplicates 0.5 %. At 20 minutes the sender restarts
//! (new sequence and timestamp bases, same SSRC); at 40 minutes the path is down for 30 s,
//! the stream times out, and the sender's packets after it start a new stream.
//!
//! Asserted, every simulated minute:
//! - **every packet in exactly one counter**: what the sender sent is lost on the path,
//!   still on the path, or reached the receiver; what reached it is dropped by validation
//!   (`unvalidated`, `wrong_source`, `jumps_rejected`), waiting there (probation, held
//!   aside), or in a stream, where it was a duplicate, late, an overflow, played, a decode
//!   error, discarded, or is still buffered;
//! - **constant memory**: the heap in use (a counting allocator wraps the system's) is the
//!   same at minute 10 and at minute 60, within 4 KiB (measured: the same to the byte;
//!   96 bytes more between the restart and the outage);
//! - the audio plays: nearly everything the path delivered in time is played, the
//!   restart is followed (one `restarts`), the outage ends the stream, not as a
//!   concealment storm, and outside it no more 10 ms windows are quiet than there were
//!   concealment events; the drift is read within 20 ppm.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, Ordering};

use patchcord_common::playout::{DelayMode, NoSegments, PlayoutConfig, StreamPlayout};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::source::{PacketMeta, Probation, SourceCounters, StreamSource};
use patchcord_common::stats::StreamCounters;
use patchcord_common::time::frames_to_ns;
use patchcord_netsim::{Impairment, Profile};

/// Heap bytes in use by this test binary.
struct Counting;

static LIVE: AtomicI64 = AtomicI64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as i64 - l.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SSRC: u32 = 0x50a4;
const PT: u8 = 96;
/// 20 ms Opus frames with in-band FEC, as a speech sender would send them.
const FRAME: u32 = 960;
const PERIOD: usize = 480;
const MINUTE_NS: i64 = 60_000_000_000;
const HOUR_NS: i64 = 60 * MINUTE_NS;
const RESTART_NS: i64 = 20 * MINUTE_NS;
const OUTAGE_NS: (i64, i64) = (40 * MINUTE_NS, 40 * MINUTE_NS + 30_000_000_000);
/// `patchcord-recv --stream-timeout` default.
const TIMEOUT_NS: i64 = 1_000_000_000;
/// The sender's clock against the receiver's.
const DRIFT_PPM: f64 = 100.0;

/// Five seconds of a chord, Opus-encoded once and looped.
fn opus_frames() -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(32_000)).unwrap();
    enc.set_inband_fec(true).unwrap();
    enc.set_packet_loss_perc(10).unwrap();
    let mut buf = [0u8; 1500];
    (0..250)
        .map(|k| {
            let pcm: Vec<f32> = (0..FRAME as usize)
                .map(|i| {
                    let t = (k * FRAME as usize + i) as f32 / 48_000.0;
                    0.3 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
                        + 0.1 * (2.0 * std::f32::consts::PI * 1320.0 * t).sin()
                })
                .collect();
            let n = enc.encode_float(&pcm, &mut buf).unwrap();
            buf[..n].to_vec()
        })
        .collect()
}

/// The receiver: validation, at most one stream, and the totals of streams gone.
struct Receiver {
    probation: Probation,
    stream: Option<(StreamSource, Box<StreamPlayout>)>,
    source: SourceCounters,
    gone: StreamCounters,
    streams_started: u64,
    streams_timed_out: u64,
    out: Vec<f32>,
    out_frame: u64,
    /// 10 ms output windows quieter than the chord (RMS < 0.05).
    silent_windows: u64,
}

impl Receiver {
    fn new() -> Self {
        Receiver {
            probation: Probation::new(64),
            stream: None,
            source: SourceCounters::default(),
            gone: StreamCounters::default(),
            streams_started: 0,
            streams_timed_out: 0,
            out: vec![0.0; PERIOD],
            out_frame: 0,
            silent_windows: 0,
        }
    }

    fn config() -> PlayoutConfig {
        PlayoutConfig {
            mode: DelayMode::Adaptive {
                min_ns: 5_000_000,
                max_ns: 500_000_000,
                quantile: 0.99,
            },
            channels: 1,
            latency_ns: 5_000_000,
            capacity_packets: 256,
            ..PlayoutConfig::default()
        }
    }

    fn datagram(&mut self, d: &[u8], from: SocketAddr, arrival: i64) {
        let h = validate_opus_rtp(d, PT).unwrap();
        let meta = PacketMeta::of(&h, arrival);
        match self.stream.as_mut() {
            Some((src, playout)) => src.check(&meta, from, d, &mut self.source, &mut |dg, at, restart| {
                if restart {
                    playout.restart_sequence();
                }
                let h = validate_opus_rtp(dg, PT).unwrap();
                playout.insert(&h, h.payload(dg), at);
            }),
            None => {
                if let Some(a) = self.probation.offer(&meta, from, d, &mut self.source) {
                    let mut playout = Box::new(StreamPlayout::new(SSRC, Self::config()).unwrap());
                    for held in a
                        .earlier
                        .iter()
                        .map(|h| (&h.datagram[..], h.meta.arrival_ns))
                        .chain([(d, arrival)])
                    {
                        let h = validate_opus_rtp(held.0, PT).unwrap();
                        playout.insert(&h, h.payload(held.0), held.1);
                    }
                    self.stream = Some((a.source, playout));
                    self.streams_started += 1;
                }
            }
        }
    }

    /// One output period at `now`, then the stream timeout.
    fn period(&mut self, now: i64) {
        self.out.fill(0.0);
        if let Some((src, playout)) = self.stream.as_mut() {
            playout.pull(&mut self.out, self.out_frame, now, &mut NoSegments);
            if now - src.last_delivered_ns() >= TIMEOUT_NS {
                let (buffered, _) = playout.buffered_packets();
                assert_eq!(
                    buffered, 0,
                    "a stream silent for {TIMEOUT_NS} ns still buffers packets"
                );
                self.gone += *playout.counters();
                self.stream = None;
                self.streams_timed_out += 1;
            }
        }
        let rms = (self.out.iter().map(|s| s * s).sum::<f32>() / PERIOD as f32).sqrt();
        if rms < 0.05 {
            self.silent_windows += 1;
        }
        self.out_frame += PERIOD as u64;
    }

    /// Every stream's counters (gone and playing) and the packets still buffered.
    fn playout_totals(&self) -> (StreamCounters, u64) {
        let mut c = self.gone;
        let mut buffered = 0;
        if let Some((_, p)) = &self.stream {
            c += *p.counters();
            buffered = p.buffered_packets().0 as u64;
        }
        (c, buffered)
    }

    fn held(&self) -> u64 {
        self.probation.waiting_packets() as u64
            + self.stream.as_ref().map_or(0, |(s, _)| s.held_packets() as u64)
    }
}

#[test]
fn an_hour_of_drift_loss_reorder_a_restart_and_an_outage_counts_every_packet_in_constant_memory() {
    let frames = opus_frames();
    let profile =
        Profile::parse("loss=5%,delay=10ms,jitter=10ms:uniform,fifo=off,reorder=1%,dup=0.5%").unwrap();
    let mut path = Impairment::new(profile, 10);
    let from: SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let mut rx = Receiver::new();
    let mut pk = Packetizer::new(SSRC, PT, 61_000, 4_290_000_000);
    // datagrams on the path, by id: 4096 slots of a whole datagram each, reused
    let mut sent: Vec<Vec<u8>> = (0..4096).map(|_| Vec::with_capacity(1500)).collect();
    let mut rtp = [0u8; 1500];
    let interval = frames_to_ns(FRAME as i64) as f64 * (1.0 - DRIFT_PPM * 1e-6);
    let (mut k, mut frame_index) = (0u64, 0u64);
    let (mut submitted, mut outage_lost) = (0u64, 0u64);
    let mut restarted = false;
    let mut now = 0i64;
    let mut live_at_10 = None;
    let mut next_minute = MINUTE_NS;
    while now < HOUR_NS {
        now += frames_to_ns(PERIOD as i64);
        // the sender: every packet whose capture ended by now
        while ((k + 1) as f64 * interval) as i64 <= now {
            let t = ((k + 1) as f64 * interval) as i64;
            if !restarted && t >= RESTART_NS {
                restarted = true;
                pk = Packetizer::new(SSRC, PT, pk.next_sequence().wrapping_add(20_000), 123_456_789);
                frame_index = 0;
            }
            let len = pk
                .build(frame_index, &frames[k as usize % frames.len()], &mut rtp)
                .unwrap();
            frame_index += FRAME as u64;
            k += 1;
            if (OUTAGE_NS.0..OUTAGE_NS.1).contains(&t) {
                outage_lost += 1;
                continue;
            }
            let id = submitted % 4096;
            sent[id as usize].clear();
            sent[id as usize].extend_from_slice(&rtp[..len]);
            path.submit(id, t);
            submitted += 1;
        }
        while let Some(d) = path.poll_delivery(now) {
            let dg = std::mem::take(&mut sent[d.id as usize]);
            rx.datagram(&dg, from, d.at_ns);
            sent[d.id as usize] = dg;
        }
        rx.period(now);
        if now >= next_minute {
            next_minute += MINUTE_NS;
            let p = path.stats();
            // the path: sent = lost + arrived (duplicates arrive twice) + still on it
            let arrived = p.delivered;
            assert_eq!(p.submitted, submitted);
            assert_eq!(
                submitted,
                p.dropped + arrived + path.pending() as u64 - p.duplicated
            );
            assert_eq!(k, submitted + outage_lost);
            // the receiver: arrived = dropped by validation + waiting there + in a stream
            let s = rx.source;
            let (c, buffered) = rx.playout_totals();
            let in_streams =
                c.duplicates + c.late + c.overflow + c.played + c.decode_errors + c.discarded + buffered;
            assert_eq!(
                c.packets_received,
                in_streams,
                "minute {}: {c:?}",
                now / MINUTE_NS
            );
            assert_eq!(
                arrived,
                s.unvalidated + s.wrong_source + s.jumps_rejected + rx.held() + c.packets_received,
                "minute {}: {s:?} {c:?}",
                now / MINUTE_NS
            );
            if now / MINUTE_NS == 10 {
                live_at_10 = Some(LIVE.load(Ordering::Relaxed));
            }
        }
    }
    let live_at_60 = LIVE.load(Ordering::Relaxed);
    let grew = live_at_60 - live_at_10.unwrap();
    let p = path.stats();
    let s = rx.source;
    let (c, _) = rx.playout_totals();
    let drift_ppm = rx.stream.as_ref().map_or(0.0, |(_, p)| p.drift() * 1e6);
    println!(
        "one hour: {k} packets sent, {} lost on the path, {outage_lost} in the outage, {} arrived ({} duplicated, {} reordered)\n\
         validation: {s:?}\nplayout: {c:?}\nstreams started {}, timed out {}; heap {} bytes at minute 10, {} more at 60; drift {drift_ppm:.1} ppm; {} silent 10 ms windows",
        p.dropped, p.delivered, p.duplicated, p.reordered, rx.streams_started, rx.streams_timed_out, live_at_10.unwrap(), grew, rx.silent_windows
    );
    assert!(
        grew.abs() <= 4 * 1024,
        "the heap grew by {grew} bytes from minute 10 to 60"
    );
    // the restart is followed once; the outage ends the first stream and a second starts
    assert_eq!(s.restarts, 1, "{s:?}");
    assert_eq!((rx.streams_started, rx.streams_timed_out), (2, 1));
    assert_eq!(s.wrong_source, 0);
    // nearly everything that arrived once and in time is played
    let once = p.delivered - p.duplicated;
    assert!(
        c.played as f64 >= 0.97 * once as f64,
        "played {} of {once}",
        c.played
    );
    assert!(c.duplicates >= p.duplicated, "{c:?}");
    assert!(c.interruptions <= 2, "{c:?}");
    // the drift is read (by the stream after the outage, in its 20 minutes)
    assert!((drift_ppm - DRIFT_PPM).abs() < 20.0, "drift {drift_ppm:.1} ppm");
    // silence in the outage (3,000 windows), the timeout and the two starts (about 150);
    // elsewhere at most one quiet window per concealment event (measured: an unrecovered
    // 20 ms loss of this voip-mode chord leaves one 10 ms window under 0.05 RMS, single
    // windows scattered over the hour, 430 for 460 events)
    let quiet = rx.silent_windows.saturating_sub(3_150);
    assert!(
        quiet <= c.concealment_events,
        "{} silent 10 ms windows: {c:?}",
        rx.silent_windows
    );
}
