//! The bodies of the fuzz targets: what every parser and state machine that takes input
//! from outside the process must survive, and the invariants it must keep, whatever the
//! bytes. Each function takes the fuzzer's bytes and panics only when something is broken.
//!
//! Two callers run the same code: the cargo-fuzz targets in `fuzz/fuzz_targets/` (one
//! line each; nightly, libFuzzer, `scripts/fuzz.sh`), and `common/tests/fuzz_corpus.rs`,
//! which replays the checked-in corpus `fuzz/corpus/<target>/` on stable in every
//! `cargo test`. A crash the fuzzer finds is fixed in the code under test and its input
//! kept in the corpus (and as a unit test beside the fix).
//!
//! - [`rtp_validation`]: the receiver's per-datagram path as far as it is sans-IO:
//!   RTP/Opus and RED validation, then source validation (probation, binding, jumps held
//!   aside) of a sequence of datagrams from a few addresses. Every valid packet ends in
//!   exactly one place (delivered, `wrong_source`, `unvalidated`, `jumps_rejected`, or
//!   still waiting); what waits is bounded; what is delivered validates again.
//! - [`red`]: RFC 2198 payloads: the parsed blocks tile the payload; a validated RED
//!   datagram's blocks lie inside it, in order; what [`looks_like_red`] calls RED
//!   validates as RED.
//! - [`rtcp_compound`]: compound RTCP: at most one error, and last; a sender report,
//!   receiver report or BYE parsed is written again and parses back the same.
//! - [`sdp`]: SDP descriptions: a description read is written and read back the same.
//! - [`srtp_unprotect`]: SRTP and SRTCP opened by the receiver's [`Unprotector`]: raw
//!   bytes, and packets sealed by a [`Protector`] under the same key, then delivered, bit-
//!   flipped or replayed. What was sealed opens to exactly what was sealed; a flipped bit
//!   or a replay never opens; the state kept stays within its bound.
//! - [`playout`]: one stream's playout under any sequence of inserts (any sequence
//!   numbers, timestamps, arrival times, payloads), redundant copies, BYEs, restarts and
//!   pulls of any size: the jitter buffer stays within its capacity, the output is finite,
//!   and every inserted packet is counted in exactly one counter.

use std::cell::Cell;
use std::collections::HashMap;
use std::net::SocketAddr;

use arbitrary::{Arbitrary, Unstructured};

use crate::playout::{DelayMode, NoSegments, PlayoutConfig, StreamPlayout};
use crate::red::{looks_like_red, parse_red, validate_red_rtp, RedInfo, MAX_REDUNDANCY};
use crate::rtcp::{parse_compound, CompoundWriter, RtcpPacket};
use crate::rtp::{opus_packet_duration, validate_opus_rtp, DropReason, RtpOpusHeader, RTP_HEADER_LEN};
use crate::sdp::StreamDescription;
use crate::source::{PacketMeta, Probation, SourceCounters, StreamSource};
use crate::srtp::{Opened, Protector, Rejected, Unprotector};
use crate::srtp_key::{MasterKey, Suite};

/// A target's body: the fuzzer's bytes in, a panic when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every target by name (the name of its corpus directory and of its cargo-fuzz target).
pub const TARGETS: [(&str, Target); 6] = [
    ("rtp_validation", rtp_validation),
    ("red", red),
    ("rtcp_compound", rtcp_compound),
    ("sdp", sdp),
    ("srtp_unprotect", srtp_unprotect),
    ("playout", playout),
];

const OPUS_PT: u8 = 96;
const RED_PT: u8 = 121;
/// Probation table size of the fuzzed receiver: small, so that eviction is reached.
const PROBATION_CAPACITY: usize = 8;
/// Most packets one stream holds aside (3 runs and a comeback of 8).
const MAX_HELD_PER_STREAM: usize = 32;
/// Most packets one probation candidate holds.
const MAX_WAITING_PER_CANDIDATE: usize = 8;

/// A packet's header and payload as the receiver validates them: the payload is located in
/// the datagram and is the Opus packet the header's duration says.
fn check_header(d: &[u8], h: &RtpOpusHeader) {
    let end = h.payload_offset + h.payload_len;
    assert!(h.payload_offset >= RTP_HEADER_LEN && end <= d.len(), "{h:?}");
    assert_eq!(
        opus_packet_duration(h.payload(d)),
        Some(h.duration_samples),
        "{h:?}"
    );
}

/// Opus on [`OPUS_PT`], RED of Opus on [`RED_PT`]: the receiver's choice with
/// `--payload-type 96 --red-payload-type 121`.
fn validate(d: &[u8]) -> Result<(RtpOpusHeader, RedInfo), DropReason> {
    match d.get(1).map(|b| b & 0x7f) {
        Some(RED_PT) => validate_red_rtp(d, RED_PT, OPUS_PT),
        _ => validate_opus_rtp(d, OPUS_PT).map(|h| (h, RedInfo::default())),
    }
}

/// One datagram for [`rtp_validation`]: raw bytes, or an RTP/Opus packet of one of a few
/// SSRCs whose sequence number and timestamp move from the last one's (so that the fuzzer
/// reaches probation, continuity and restarts, not only the header checks).
#[derive(Arbitrary, Debug)]
enum Datagram {
    Raw(Vec<u8>),
    Packet {
        ssrc: u8,
        seq_step: i8,
        ts_step: i16,
        /// The step in units of 2.5 ms (120 samples) instead of samples.
        ts_in_frames: bool,
        toc: u8,
        body: Vec<u8>,
    },
    /// A sequence or timestamp jump anywhere.
    Jump {
        ssrc: u8,
        seq: u16,
        ts: u32,
        toc: u8,
    },
}

#[derive(Arbitrary, Debug)]
struct Arrival {
    /// Which of four transport addresses it came from.
    from: u8,
    /// Microseconds since the previous datagram.
    after_us: u16,
    datagram: Datagram,
}

/// The receiver's per-datagram path (see the module doc).
pub fn rtp_validation(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let addresses: [SocketAddr; 4] = [
        SocketAddr::from(([192, 0, 2, 1], 5004)),
        SocketAddr::from(([192, 0, 2, 1], 5006)),
        SocketAddr::from(([192, 0, 2, 2], 5004)),
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 5004)),
    ];
    let mut probation = Probation::new(PROBATION_CAPACITY);
    let mut streams: HashMap<u32, StreamSource> = HashMap::new();
    let mut counters = SourceCounters::default();
    let mut dropped = [0u64; DropReason::ALL.len()];
    let (mut datagrams, mut offered, delivered) = (0u64, 0u64, Cell::new(0u64));
    let mut now_ns: i64 = 1_000_000_000;
    // per SSRC: last sequence number and timestamp built
    let mut last = [(0u16, 0u32); 4];
    let mut deliver = |d: &[u8], _at: i64, _restart: bool| {
        // a delivered packet is parsed again from its datagram (receiver: `hand_over`)
        let (h, _) = validate(d).expect("a delivered datagram validated when it arrived");
        check_header(d, &h);
        delivered.set(delivered.get() + 1);
    };
    // (`arbitrary_iter` ends with the data; a plain loop would get default values forever)
    let Ok(arrivals) = u.arbitrary_iter::<Arrival>() else {
        return;
    };
    for a in arrivals {
        let Ok(a) = a else {
            return;
        };
        now_ns += i64::from(a.after_us) * 1000;
        let from = addresses[usize::from(a.from % 4)];
        let d = match a.datagram {
            Datagram::Raw(d) => d,
            Datagram::Packet {
                ssrc,
                seq_step,
                ts_step,
                ts_in_frames,
                toc,
                body,
            } => {
                let (seq, ts) = &mut last[usize::from(ssrc % 4)];
                *seq = seq.wrapping_add(seq_step as u16);
                let step = if ts_in_frames {
                    i32::from(ts_step) * 120
                } else {
                    i32::from(ts_step)
                };
                *ts = ts.wrapping_add(step as u32);
                rtp_packet(u32::from(ssrc % 4), *seq, *ts, toc, &body)
            }
            Datagram::Jump { ssrc, seq, ts, toc } => {
                last[usize::from(ssrc % 4)] = (seq, ts);
                rtp_packet(u32::from(ssrc % 4), seq, ts, toc, &[0; 40])
            }
        };
        datagrams += 1;
        let (h, red) = match validate(&d) {
            Ok(v) => v,
            Err(reason) => {
                dropped[reason.index()] += 1;
                continue;
            }
        };
        check_header(&d, &h);
        for b in red.redundant() {
            assert_eq!(opus_packet_duration(b.payload(&d)), Some(b.duration_samples));
        }
        offered += 1;
        let meta = PacketMeta::of(&h, now_ns);
        if let Some(stream) = streams.get_mut(&h.ssrc) {
            stream.check(&meta, from, &d, &mut counters, &mut deliver);
        } else if let Some(admission) = probation.offer(&meta, from, &d, &mut counters) {
            assert!(admission.earlier.len() <= MAX_WAITING_PER_CANDIDATE);
            for held in &admission.earlier {
                deliver(&held.datagram, held.meta.arrival_ns, false);
            }
            deliver(&d, now_ns, false);
            streams.insert(h.ssrc, admission.source);
        }
        // bounded: the probation table, what it holds, what each stream holds
        assert!(probation.len() <= PROBATION_CAPACITY);
        let waiting = probation.waiting_packets();
        assert!(
            waiting <= PROBATION_CAPACITY * MAX_WAITING_PER_CANDIDATE,
            "{waiting}"
        );
        let held: usize = streams.values().map(StreamSource::held_packets).sum();
        assert!(streams.values().all(|s| s.held_packets() <= MAX_HELD_PER_STREAM));
        // every datagram in one place, every valid packet in one place
        assert_eq!(datagrams, offered + dropped.iter().sum::<u64>());
        let delivered = delivered.get();
        let placed = delivered
            + counters.wrong_source
            + counters.unvalidated
            + counters.jumps_rejected
            + waiting as u64
            + held as u64;
        assert_eq!(
            offered, placed,
            "{counters:?} delivered {delivered} waiting {waiting} held {held}"
        );
    }
}

/// An RTP packet of payload type [`OPUS_PT`]: `toc` then `body`.
fn rtp_packet(ssrc: u32, seq: u16, ts: u32, toc: u8, body: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(RTP_HEADER_LEN + 1 + body.len());
    d.extend_from_slice(&[0x80, OPUS_PT]);
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&ts.to_be_bytes());
    d.extend_from_slice(&ssrc.to_be_bytes());
    d.push(toc);
    d.extend_from_slice(body);
    d
}

/// RFC 2198 parsing (see the module doc). The first byte chooses what the rest is: a RED
/// payload, or a datagram.
pub fn red(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        // a payload: the blocks, in order, tile it exactly
        if let Ok(blocks) = parse_red(rest) {
            let header_len = blocks.header_len();
            let redundant = blocks.redundant_count();
            let primary = blocks.primary();
            assert!(!primary.data.is_empty());
            let mut covered = header_len;
            let mut count = 0;
            for b in blocks {
                assert_eq!(b.primary, count == redundant);
                assert_eq!(rest.get(covered..covered + b.data.len()), Some(b.data));
                covered += b.data.len();
                count += 1;
            }
            assert_eq!((covered, count), (rest.len(), redundant + 1));
        }
        return;
    }
    // a datagram: its blocks lie inside it, oldest first, the primary after them
    let opus_pt = (mode & 2 != 0).then_some(OPUS_PT);
    if let Ok((h, info)) = validate_red_rtp(rest, RED_PT, opus_pt) {
        check_header(rest, &h);
        assert!(info.redundant().len() <= MAX_REDUNDANCY);
        assert!(info.redundant().len() == info.redundant_in_packet().min(MAX_REDUNDANCY));
        let mut end = 0;
        for b in info.redundant() {
            assert!(b.payload_offset >= end);
            assert_eq!(opus_packet_duration(b.payload(rest)), Some(b.duration_samples));
            end = b.payload_offset + b.payload_len;
        }
        assert!(end <= h.payload_offset);
        for (_, b) in info.frames_before(h.sequence, h.timestamp) {
            assert_eq!(
                info.find(h.timestamp, b.timestamp(h.timestamp))
                    .map(|f| f.ts_offset),
                Some(b.ts_offset)
            );
        }
    }
    if let Some(pt) = looks_like_red(rest) {
        assert!(
            validate_red_rtp(rest, pt, None).is_ok(),
            "looks like RED on {pt} but does not validate"
        );
    }
}

/// One step of [`srtp_unprotect`].
#[derive(Arbitrary, Debug)]
enum SrtpStep {
    /// Bytes from anywhere.
    Raw(Vec<u8>),
    /// An RTP packet of SSRC `ssrc % SRTP_SOURCES`, `seq_step` (1..=64) after that
    /// SSRC's last, sealed and delivered.
    Rtp {
        ssrc: u8,
        seq_step: u8,
        payload: Vec<u8>,
    },
    /// A receiver report from SSRC `ssrc % SRTP_SOURCES`, sealed and delivered.
    Rtcp { ssrc: u8 },
    /// The last sealed datagram again.
    Replay,
    /// The last sealed datagram with one byte changed.
    Flip { at: u16, xor: u8 },
}

/// SSRCs the fuzzed sender uses: no more than the receiver keeps, so no replay window is
/// ever evicted (an evicted SSRC's window starts over, by design).
const SRTP_SOURCES: u8 = 4;

/// SRTP and SRTCP opening (see the module doc).
pub fn srtp_unprotect(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let suite = if u.arbitrary::<bool>().unwrap_or(false) {
        Suite::AeadAes128Gcm
    } else {
        Suite::AesCm128HmacSha1_80
    };
    let key_salt: Vec<u8> = (0..suite.key_salt_len() as u8)
        .map(|i| i.wrapping_mul(37) ^ 0x5a)
        .collect();
    let Ok(key) = MasterKey::new(suite, &key_salt) else {
        panic!("a key of the suite's length");
    };
    let mut tx = Protector::new(&key);
    let mut rx = Unprotector::new(&key, SRTP_SOURCES as usize);
    let mut seqs = [0u16; SRTP_SOURCES as usize];
    let (mut plain, mut sealed, mut out) = (vec![0u8; 1600], vec![0u8; 1700], vec![0u8; 1700]);
    let mut last: Option<Vec<u8>> = None;
    while !u.is_empty() {
        let Ok(step) = SrtpStep::arbitrary(&mut u) else {
            break;
        };
        match step {
            SrtpStep::Raw(bytes) => {
                if let Ok(Opened::Rtp(n) | Opened::Rtcp(n)) = rx.unprotect(&bytes, &mut out) {
                    assert!(n <= bytes.len());
                }
            }
            SrtpStep::Rtp {
                ssrc,
                seq_step,
                payload,
            } => {
                let i = (ssrc % SRTP_SOURCES) as usize;
                seqs[i] = seqs[i].wrapping_add(1 + (seq_step % 64) as u16);
                let body = &payload[..payload.len().min(1200)];
                let len = RTP_HEADER_LEN + body.len().max(1);
                plain[..len].fill(0);
                plain[0] = 0x80;
                plain[1] = OPUS_PT;
                plain[2..4].copy_from_slice(&seqs[i].to_be_bytes());
                plain[4..8].copy_from_slice(&(seqs[i] as u32 * 480).to_be_bytes());
                plain[8..12].copy_from_slice(&(0x5000 + i as u32).to_be_bytes());
                plain[RTP_HEADER_LEN..RTP_HEADER_LEN + body.len()].copy_from_slice(body);
                let Ok(n) = tx.protect_rtp(&plain[..len], &mut sealed) else {
                    panic!("a small RTP packet protects");
                };
                assert_eq!(rx.unprotect(&sealed[..n], &mut out), Ok(Opened::Rtp(len)));
                assert_eq!(out[..len], plain[..len]);
                last = Some(sealed[..n].to_vec());
            }
            SrtpStep::Rtcp { ssrc } => {
                let i = (ssrc % SRTP_SOURCES) as u32;
                let mut rr = [0x80, 201, 0, 1, 0, 0, 0, 0];
                rr[4..8].copy_from_slice(&(0x5000 + i).to_be_bytes());
                let Ok(n) = tx.protect_rtcp(&rr, &mut sealed) else {
                    panic!("a receiver report protects");
                };
                assert_eq!(rx.unprotect(&sealed[..n], &mut out), Ok(Opened::Rtcp(rr.len())));
                assert_eq!(out[..rr.len()], rr);
                last = Some(sealed[..n].to_vec());
            }
            SrtpStep::Replay => {
                if let Some(p) = &last {
                    assert_eq!(rx.unprotect(p, &mut out), Err(Rejected::Replayed));
                }
            }
            SrtpStep::Flip { at, xor } => {
                if let Some(p) = &last {
                    let mut q = p.clone();
                    let at = at as usize % q.len();
                    q[at] ^= xor.max(1);
                    assert!(rx.unprotect(&q, &mut out).is_err(), "a changed byte {at} opened");
                }
            }
        }
        assert!(rx.sources() <= SRTP_SOURCES as usize);
    }
}

/// Compound RTCP parsing (see the module doc).
pub fn rtcp_compound(data: &[u8]) {
    let mut items = 0;
    let mut failed = false;
    for p in parse_compound(data) {
        assert!(!failed, "an item after an error");
        items += 1;
        assert!(items <= data.len() / 4 + 1);
        let p = match p {
            Ok(p) => p,
            Err(_) => {
                failed = true;
                continue;
            }
        };
        let mut buf = [0u8; 1500];
        let mut w = CompoundWriter::new(&mut buf);
        let written = match p {
            RtcpPacket::SenderReport(sr, reports) => w.sender_report(&sr, reports.as_slice()),
            RtcpPacket::ReceiverReport { reporter, reports } => {
                w.receiver_report(reporter, reports.as_slice())
            }
            RtcpPacket::Bye { ssrcs, count: 1 } => w.bye(ssrcs[0]),
            RtcpPacket::Bye { count, .. } => {
                assert!(count <= 31);
                None
            }
            RtcpPacket::Sdes { .. } | RtcpPacket::Other { .. } => None,
        };
        if written.is_some() {
            let again: Vec<_> = parse_compound(w.packet()).collect();
            assert_eq!(again, [Ok(p)], "written again from {p:?}");
        }
    }
}

/// SDP parsing (see the module doc).
pub fn sdp(data: &[u8]) {
    let Ok(d) = StreamDescription::parse(data) else {
        return;
    };
    assert!(d.channels == 1 || d.channels == 2);
    let text = d.to_sdp(1, "fuzz");
    match StreamDescription::parse(text.as_bytes()) {
        Ok(again) => assert_eq!(again, d, "{text}"),
        Err(e) => panic!("{e}: a description read cannot be read back:\n{text}"),
    }
}

/// One operation on a stream's playout.
#[derive(Arbitrary, Debug)]
enum PlayoutOp {
    /// A packet: sequence number and timestamp moved from the last ones, arriving `late_us`
    /// before now, with any payload (dropped, as the receiver does, unless its TOC and
    /// structure make it an Opus packet; decoded by libopus as it is).
    Insert {
        seq_step: i16,
        ts_step: i32,
        late_us: i32,
        payload: Vec<u8>,
    },
    /// A redundant copy of an earlier packet (RFC 2198).
    Redundant {
        seq_back: u8,
        ts_back: u16,
        payload: Vec<u8>,
    },
    /// The output callback pulls `frames` frames, `after_us` after the last operation.
    Pull {
        frames: u16,
        after_us: u32,
    },
    /// Time passes.
    Wait {
        us: u32,
    },
    EndOfStream,
    RestartSequence,
}

/// Most frames one pull asks for.
const MAX_PULL_FRAMES: usize = 4096;

/// One stream's playout (see the module doc).
pub fn playout(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let (Ok(adaptive), Ok(stereo), Ok(capacity), Ok(latency_ms)) = (
        bool::arbitrary(&mut u),
        bool::arbitrary(&mut u),
        u.int_in_range(1..=96usize),
        u.int_in_range(0..=200i64),
    ) else {
        return;
    };
    let channels = if stereo { 2 } else { 1 };
    let cfg = PlayoutConfig {
        mode: if adaptive {
            DelayMode::Adaptive {
                min_ns: 2_000_000,
                max_ns: 200_000_000,
                quantile: 0.99,
            }
        } else {
            DelayMode::Fixed
        },
        channels,
        latency_ns: latency_ms * 1_000_000,
        capacity_packets: capacity,
        ..PlayoutConfig::default()
    };
    let Ok(mut p) = StreamPlayout::new(7, cfg) else {
        return;
    };
    let mut out = vec![0f32; MAX_PULL_FRAMES * channels];
    let (mut now_ns, mut out_frame) = (1_000_000_000i64, 0u64);
    let (mut seq, mut ts) = (1000u16, 5000u32);
    let mut inserted = 0u64;
    let Ok(ops) = u.arbitrary_iter::<PlayoutOp>() else {
        return;
    };
    for op in ops {
        let Ok(op) = op else {
            return;
        };
        match op {
            PlayoutOp::Insert {
                seq_step,
                ts_step,
                late_us,
                payload,
            } => {
                seq = seq.wrapping_add(seq_step as u16);
                ts = ts.wrapping_add(ts_step as u32);
                let Some(duration) = opus_packet_duration(&payload) else {
                    continue;
                };
                let h = RtpOpusHeader {
                    marker: false,
                    payload_type: OPUS_PT,
                    sequence: seq,
                    timestamp: ts,
                    ssrc: 7,
                    payload_offset: 0,
                    payload_len: payload.len(),
                    duration_samples: duration,
                };
                p.insert(&h, &payload, now_ns - i64::from(late_us) * 1000);
                inserted += 1;
            }
            PlayoutOp::Redundant {
                seq_back,
                ts_back,
                payload,
            } => {
                if let Some(duration) = opus_packet_duration(&payload) {
                    let (s, t) = (
                        seq.wrapping_sub(u16::from(seq_back)),
                        ts.wrapping_sub(u32::from(ts_back)),
                    );
                    p.insert_redundant(s, t, duration, &payload);
                }
            }
            PlayoutOp::Pull { frames, after_us } => {
                now_ns += i64::from(after_us) * 1000;
                let n = usize::from(frames).min(MAX_PULL_FRAMES) * channels;
                p.pull(&mut out[..n], out_frame, now_ns, &mut NoSegments);
                out_frame += (n / channels) as u64;
                assert!(out[..n].iter().all(|s| s.is_finite()));
            }
            PlayoutOp::Wait { us } => now_ns += i64::from(us) * 1000,
            PlayoutOp::EndOfStream => p.end_of_stream(),
            PlayoutOp::RestartSequence => p.restart_sequence(),
        }
        let (buffered, capacity) = p.buffered_packets();
        assert!(buffered <= capacity);
        let c = p.counters();
        assert_eq!(inserted, c.packets_received + c.seq_jumps, "{c:?}");
        let placed =
            c.duplicates + c.late + c.overflow + c.played + c.decode_errors + c.discarded + buffered as u64;
        assert_eq!(c.packets_received, placed, "{c:?} buffered {buffered}");
        assert!(c.recovered_fec + c.recovered_red <= c.missing, "{c:?}");
    }
}
