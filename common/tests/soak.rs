//! An hour of one stream through the receiver's sans-IO path, in virtual time, seeded:
//! a sender whose clock runs 100 ppm fast, a path with 5 % loss, 2 ms of jitter and 1 %
//! reordering (patchcord-netsim), a sender restart (new sequence and timestamp bases) at
//! 20 minutes and a 5 s outage at 40 minutes; the receiver validates each datagram,
//! judges it by source validation (probation, continuity, the restart confirmed) and
//! plays it through the default adaptive playout, pulled by a 48 kHz output device.
//!
//! What must hold: every packet the sender made ends in exactly one counter, from the
//! outage and the path's loss through source validation to the playout's counters; the
//! memory the receiver holds is the same at minute 60 as at minute 2 (a counting
//! allocator), and so are its buffers; the drift is read within 20 ppm; the audio plays
//! everywhere but in the outage and the restart.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;

use patchcord_common::playout::{packets_for_delay, DelayMode, NoSegments, PlayoutConfig, StreamPlayout};
use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
use patchcord_common::source::{PacketMeta, Probation, SourceCounters, StreamSource};
use patchcord_common::time::frames_to_ns;
use patchcord_netsim::{Impairment, Profile};

thread_local! {
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

/// Counts the bytes the calling thread holds, so that the test sees its own memory only.
struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + layout.size() as isize));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = LIVE_BYTES.try_with(|c| c.set(c.get() - layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + new_size as isize - layout.size() as isize));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const PT: u8 = 96;
const FRAME: u64 = 480;
const PERIOD: usize = 480;
const SENDER_PPM: f64 = 100.0;
const MINUTE_NS: i64 = 60_000_000_000;
const RESTART_AT_NS: i64 = 20 * MINUTE_NS;
const OUTAGE_NS: std::ops::Range<i64> = 40 * MINUTE_NS..40 * MINUTE_NS + 5_000_000_000;

/// Ten seconds of a chord, encoded once and sent round and round.
fn opus_frames() -> Vec<Vec<u8>> {
    let mut enc = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::LowDelay).unwrap();
    enc.set_bitrate(opus::Bitrate::Bits(48_000)).unwrap();
    let mut out = [0u8; 1500];
    (0..1000u64)
        .map(|k| {
            let pcm: Vec<f32> = (k * FRAME..(k + 1) * FRAME)
                .map(|i| {
                    let t = i as f32 / 48_000.0;
                    0.3 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                        + 0.1 * (2.0 * std::f32::consts::PI * 660.0 * t).sin()
                })
                .collect();
            let n = enc.encode_float(&pcm, &mut out).unwrap();
            out[..n].to_vec()
        })
        .collect()
}

/// The sender: packet `k` leaves when its last sample is captured on a clock
/// [`SENDER_PPM`] fast; from [`RESTART_AT_NS`] on it is a new sequence (a restart).
struct Sender {
    frames: Vec<Vec<u8>>,
    first_after_restart: Option<u64>,
}

impl Sender {
    fn sent_at(k: u64) -> i64 {
        ((k + 1) as f64 * frames_to_ns(FRAME as i64) as f64 / (1.0 + SENDER_PPM * 1e-6)) as i64
    }

    /// Packet `k` as a datagram.
    fn datagram(&self, k: u64, out: &mut [u8]) -> usize {
        let ((seq0, ts0), index) = match self.first_after_restart {
            Some(r) if k >= r => ((7u16, 3_000_000_000u32), k - r),
            _ => ((60_000, 4_000_000_000), k),
        };
        let mut p = Packetizer::new(0x50a6, PT, seq0.wrapping_add(index as u16), ts0);
        let len = p
            .build(index * FRAME, &self.frames[(k % 1000) as usize], out)
            .unwrap();
        out[1] &= 0x7f; // the marker bit: only on the first packet of a sequence
        if index == 0 {
            out[1] |= 0x80;
        }
        len
    }
}

/// Where every packet the sender made ended up.
#[derive(Debug, Default)]
struct Tally {
    made: u64,
    in_outage: u64,
    handed_to_playout: u64,
}

#[test]
fn an_hour_of_drift_loss_reordering_a_restart_and_an_outage() {
    let start = std::time::Instant::now();
    let mut sender = Sender {
        frames: opus_frames(),
        first_after_restart: None,
    };
    let profile = Profile::parse("loss=5%,jitter=2ms,reorder=1%").unwrap();
    let mut net = Impairment::new(profile, 0x50a6);
    let from: SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let cfg = PlayoutConfig {
        mode: DelayMode::Adaptive {
            min_ns: 5_000_000,
            max_ns: 500_000_000,
            quantile: 0.99,
        },
        channels: 1,
        capacity_packets: packets_for_delay(500_000_000),
        ..PlayoutConfig::default()
    };
    let mut playout = StreamPlayout::new(0x50a6, cfg).unwrap();
    let mut probation = Probation::new(64);
    let mut stream: Option<StreamSource> = None;
    let mut counters = SourceCounters::default();
    let mut tally = Tally::default();
    let mut out = vec![0f32; PERIOD];
    let mut datagram = [0u8; 1500];
    let mut silent_windows = 0u64;
    let mut live_bytes = vec![];
    let mut buffered_max = 0usize;

    let hour_frames = 3600 * 48_000u64;
    let mut out_frame = 0u64;
    // the memory held, once a minute from minute 2 on
    let mut next_sample = 2 * 60 * 48_000u64;
    while out_frame < hour_frames {
        let now = frames_to_ns(out_frame as i64);
        while Sender::sent_at(tally.made) <= now {
            let k = tally.made;
            let at = Sender::sent_at(k);
            if at >= RESTART_AT_NS && sender.first_after_restart.is_none() {
                sender.first_after_restart = Some(k);
            }
            if OUTAGE_NS.contains(&at) {
                tally.in_outage += 1;
            } else {
                net.submit(k, at);
            }
            tally.made += 1;
        }
        while let Some((k, arrival)) = net.poll(now) {
            let len = sender.datagram(k, &mut datagram);
            let d = &datagram[..len];
            let h = validate_opus_rtp(d, PT).unwrap();
            let meta = PacketMeta::of(&h, arrival);
            let mut deliver = |dg: &[u8], at: i64, restart: bool| {
                if restart {
                    playout.restart_sequence();
                }
                let h = validate_opus_rtp(dg, PT).unwrap();
                playout.insert(&h, h.payload(dg), at);
                tally.handed_to_playout += 1;
            };
            match stream.as_mut() {
                Some(s) => s.check(&meta, from, d, &mut counters, &mut deliver),
                None => {
                    if let Some(a) = probation.offer(&meta, from, d, &mut counters) {
                        for h in &a.earlier {
                            deliver(&h.datagram, h.meta.arrival_ns, false);
                        }
                        deliver(d, arrival, false);
                        stream = Some(a.source);
                    }
                }
            }
        }
        playout.pull(&mut out, out_frame, now, &mut NoSegments);
        let rms = (out.iter().map(|s| s * s).sum::<f32>() / PERIOD as f32).sqrt();
        if rms < 0.05 {
            silent_windows += 1;
        }
        buffered_max = buffered_max.max(playout.buffered_packets().0);
        out_frame += PERIOD as u64;
        if out_frame >= next_sample {
            live_bytes.push(LIVE_BYTES.with(|c| c.get()));
            next_sample += 60 * 48_000;
        }
    }

    // Every packet made ends in exactly one counter.
    let n = net.stats();
    let held = stream.as_ref().map_or(0, StreamSource::held_packets);
    let c = *playout.counters();
    let (buffered, capacity) = playout.buffered_packets();
    println!("{tally:?}\n{n:?}\n{counters:?}\nheld {held}\n{c:?}\nbuffered {buffered}");
    assert_eq!(n.duplicated, 0);
    assert_eq!(tally.made, tally.in_outage + n.dropped + n.delivered + n.pending);
    let judged = tally.handed_to_playout
        + counters.wrong_source
        + counters.unvalidated
        + counters.jumps_rejected
        + probation.waiting_packets() as u64
        + held as u64;
    assert_eq!(n.delivered, judged);
    assert_eq!(tally.handed_to_playout, c.packets_received + c.seq_jumps);
    let placed =
        c.duplicates + c.late + c.overflow + c.played + c.decode_errors + c.discarded + buffered as u64;
    assert_eq!(c.packets_received, placed);

    // What the path and the events explain, and no more.
    let loss = n.dropped as f64 / n.submitted as f64;
    assert!((0.045..0.055).contains(&loss), "path loss {loss}");
    assert_eq!(counters.restarts, 1, "{counters:?}");
    assert_eq!(
        (counters.wrong_source, counters.unvalidated),
        (0, 0),
        "{counters:?}"
    );
    assert!(c.played as f64 >= 0.93 * tally.made as f64, "{c:?}");
    assert!(c.late + c.overflow + c.seq_jumps <= tally.made / 1000, "{c:?}");
    assert!((2..=3).contains(&c.resyncs), "a restart and an outage: {c:?}");
    let drift_ppm = playout.drift() * 1e6;
    assert!((drift_ppm - SENDER_PPM).abs() < 20.0, "drift {drift_ppm:.1} ppm");
    // the outage (5 s = 500 windows) and the restart; concealment is not silence
    assert!(silent_windows < 700, "{silent_windows} silent 10 ms windows");

    // Constant memory: the receiver holds what it held at minute 2.
    assert!(
        buffered <= capacity && buffered_max < 60,
        "buffered at most {buffered_max}"
    );
    let (lo, hi) = (live_bytes.iter().min().unwrap(), live_bytes.iter().max().unwrap());
    assert!(
        hi - lo <= 64 * 1024,
        "live bytes from {lo} to {hi}: {live_bytes:?}"
    );
    println!(
        "soak: an hour in {:.1} s; drift {drift_ppm:.1} ppm, {silent_windows} silent windows, live bytes {lo}..{hi}, buffered at most {buffered_max}",
        start.elapsed().as_secs_f64()
    );
}
