//! The encoder thread: a real thread, woken by the capture callback. As soon as a whole
//! Opus frame of samples is in the ring it is encoded, packetized and sent, so the only
//! waiting the sender adds is the frame itself.
//!
//! It also sends the RTCP sender reports (with an SDES CNAME and TOOL, RFC 3550 §6.1),
//! because it is the one place that knows both the RTP timestamp of every frame and when
//! that frame was captured; it tells the report reader ([`crate::reports`]) when each
//! report left, which the round trip is measured from. At the end it sends RR + SDES + BYE.
//!
//! It watches the capture marks for audio lost before it reached the callback (a capture
//! gap: the host clock advanced by clearly more than the frames delivered,
//! [`patchcord_common::capture_gaps`]), counts it, and skips a long one (50 ms or more)
//! in the RTP timeline, as it does for frames lost to a full sample ring: the timestamps
//! keep telling when each sample was captured, so the receiver conceals the hole and
//! keeps its latency, and the sender reports stay true. Without the skip every packet
//! after a gap carries a timestamp older than its capture by the gap: measured after a
//! 292 ms gap on PulseAudio (BENCHMARKS.md §7), the receiver counted 61 packets late, its
//! delay target went to its 500 ms ceiling and the latency from 40 to 719 ms; with the
//! skip, 4 late packets, the latency from 44 to 65 ms (the adaptive target holding the
//! spike). The skip lands when the gap is confirmed, 10 ms or three callbacks after the
//! audio resumed: the frames captured in between are time-stamped early by the gap and
//! reach the receiver late (those 4).
//!
//! Shorter gaps are counted, not skipped. A step of a few ms is within what the
//! receiver's adaptive delay absorbs, and it is not always lost audio: on a PulseAudio
//! monitor with 5 ms clients beside it (the e2e_desktop latency test) the capture timing
//! stepped forward 260 times (1.2 s in all) and back 282 times in 74 s with no frames
//! missing; skipping those pushed the RTP timeline a second ahead of the audio (the
//! receiver concealed where nothing was lost and reported negative latencies). The
//! timeline cannot step back, so only a gap too long to be such a wobble is skipped.
//!
//! With `--redundancy N` each Opus packet is wrapped in an RFC 2198 RED payload that also
//! carries the previous N Opus packets ([`patchcord_common::red`]); all buffers for that
//! are allocated before the loop, so sending stays allocation-free.
//!
//! With `--srtp-key` every RTP and RTCP packet is protected here, on this thread, just
//! before it is sent ([`patchcord_common::srtp::Protector`]); the Opus budget is smaller
//! by the tag so that the protected datagram still fits. The SRTP library allocates its
//! output per packet (this thread may; the audio callback never protects anything).

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use patchcord_common::capture_gaps::CaptureGapDetector;
use patchcord_common::red::{RedEncoder, MAX_RED_PAYLOAD_LEN};
use patchcord_common::rtcp::{ntp_short, unix_ns_to_ntp, CompoundWriter, SenderReport};
use patchcord_common::rtp::{Packetizer, MAX_DATAGRAM_LEN, RTP_HEADER_LEN};
use patchcord_common::srtp::Protector;
use patchcord_common::time::{frames_to_ns, SAMPLE_RATE};
use patchcord_devices::clock::HostClock;

use crate::capture::{CaptureCounters, CaptureMark};

/// Counters and facts the control thread reads.
#[derive(Default)]
pub struct EncoderStats {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    /// RTP payload bytes (with RED: the whole RED payload, redundant blocks included).
    pub payload_bytes: AtomicU64,
    pub send_errors: AtomicU64,
    pub encode_errors: AtomicU64,
    pub sender_reports: AtomicU64,
    /// Capture instant (Unix ns) of capture frame 0, from the capture marks (min-filtered).
    pub capture_start_unix_ns: AtomicI64,
    /// Longest encode time, and the sum of all encode times (for the mean), ns.
    pub encode_ns_max: AtomicU64,
    pub encode_ns_total: AtomicU64,
    /// Frames skipped in the RTP timeline because the sample ring overflowed.
    pub frames_skipped: AtomicU64,
    /// Capture gaps (audio lost before the callback, found from the capture marks), the
    /// frames lost in them (also skipped in the RTP timeline), and steps of the capture
    /// clock that were no gap (backwards, or implausibly long).
    pub capture_gaps: AtomicU64,
    pub capture_gap_frames: AtomicU64,
    pub capture_clock_steps: AtomicU64,
    /// RFC 2198 redundant blocks sent, and previous frames left out of a packet (too big
    /// for the datagram or the 10-bit block length).
    pub red_blocks_sent: AtomicU64,
    pub red_blocks_skipped: AtomicU64,
}

/// Capture gaps this long or longer are skipped in the RTP timeline (50 ms); see the
/// module doc.
const RTP_SKIP_MIN_FRAMES: u64 = SAMPLE_RATE as u64 / 20;

pub struct EncoderConfig {
    pub channels: usize,
    pub frame_samples: usize,
    pub packetizer: Packetizer,
    pub encoder: opus::Encoder,
    pub lookahead_samples: u32,
    pub socket: UdpSocket,
    pub rtp_dest: SocketAddr,
    pub rtcp_dest: Option<SocketAddr>,
    pub clock: HostClock,
    /// RFC 2198 redundancy; `None` sends plain Opus payloads. When set, `packetizer` must
    /// use the RED payload type and `opus_payload_type` is the block type of the Opus data.
    pub red: Option<RedEncoder>,
    pub opus_payload_type: u8,
    /// SDES CNAME and TOOL of this sender.
    pub cname: String,
    pub tool: &'static str,
    /// (LSR, send instant in Unix ns) of every sender report sent, for the round trip.
    pub reports_sent: rtrb::Producer<SentReport>,
    /// SRTP/SRTCP protection of everything sent; `None` sends plain RTP.
    pub srtp: Option<Protector>,
}

/// A sender report as it left: the middle 32 bits of its NTP timestamp (what a receiver
/// echoes as LSR) and when it was sent (host clock, Unix ns). The two differ: the NTP
/// timestamp is the capture instant of a sample, earlier than the send.
#[derive(Debug, Clone, Copy, Default)]
pub struct SentReport {
    pub lsr: u32,
    pub sent_unix_ns: i64,
}

/// The encoder thread's working buffers, allocated once before the loop.
pub struct SendBuffers {
    opus: Vec<u8>,
    red: Vec<u8>,
    packet: Vec<u8>,
    /// The protected packet (SRTP).
    sealed: Vec<u8>,
}

impl SendBuffers {
    /// The Opus buffer is sized so that the encoder itself keeps every packet within one
    /// datagram (libopus lowers the bitrate of a frame rather than exceed it), after the
    /// `srtp_overhead` bytes SRTP adds.
    pub fn new(red: bool, srtp_overhead: usize) -> Self {
        let red_max = MAX_RED_PAYLOAD_LEN - srtp_overhead;
        let opus_max = if red {
            red_max - 1
        } else {
            MAX_DATAGRAM_LEN - RTP_HEADER_LEN - srtp_overhead
        };
        SendBuffers {
            opus: vec![0; opus_max],
            red: vec![0; if red { red_max } else { 0 }],
            packet: vec![0; MAX_DATAGRAM_LEN],
            sealed: vec![
                0;
                if srtp_overhead > 0 {
                    MAX_DATAGRAM_LEN + 64
                } else {
                    0
                }
            ],
        }
    }
}

/// What goes on the wire: `plain`, or its SRTP/SRTCP protection written into `sealed`.
/// `None` when it cannot be protected (counted by the caller).
fn seal<'a>(
    srtp: &mut Option<Protector>,
    plain: &'a [u8],
    sealed: &'a mut [u8],
    rtcp: bool,
) -> Option<&'a [u8]> {
    let Some(p) = srtp else { return Some(plain) };
    let n = if rtcp {
        p.protect_rtcp(plain, sealed)
    } else {
        p.protect_rtp(plain, sealed)
    };
    n.ok().map(|n| &sealed[..n])
}

pub struct EncoderThread {
    pub cfg: EncoderConfig,
    pub samples: rtrb::Consumer<f32>,
    pub marks: rtrb::Consumer<CaptureMark>,
    pub capture: Arc<CaptureCounters>,
    pub stats: Arc<EncoderStats>,
    pub stop: Arc<AtomicBool>,
}

impl EncoderThread {
    pub fn run(mut self) {
        let ch = self.cfg.channels;
        let n = self.cfg.frame_samples;
        let mut pcm = vec![0f32; n * ch];
        let overhead = self.cfg.srtp.as_ref().map_or(0, |p| p.suite().rtp_overhead());
        let mut bufs = SendBuffers::new(self.cfg.red.is_some(), overhead);
        let mut frame_index: u64 = 0;
        let mut skipped_seen: u64 = 0;
        // Min-filter of (capture instant − frame/rate): the callback reads the clock a
        // little after the device did, never before, so the smallest value is the best.
        let mut start_estimate: Option<i64> = None;
        // The same, over the marks since the last sender report only: follows a device
        // clock that runs at a different rate than the host clock.
        let mut window_estimate: Option<i64> = None;
        let mut report_estimate: Option<i64> = None;
        let mut last_sr_unix_ns: Option<i64> = None;
        let mut gaps = CaptureGapDetector::new(SAMPLE_RATE);
        let mut gap_frames_skipped: u64 = 0;
        loop {
            while let Ok(m) = self.marks.pop() {
                if let Some(gap) = gaps.observe(m.frame_index, m.capture_unix_ns) {
                    if gap.frames >= RTP_SKIP_MIN_FRAMES {
                        frame_index += gap.frames;
                        gap_frames_skipped += gap.frames;
                    }
                    self.stats.capture_gaps.store(gaps.gaps(), Ordering::Relaxed);
                    self.stats
                        .capture_gap_frames
                        .store(gaps.gap_frames(), Ordering::Relaxed);
                }
                self.stats
                    .capture_clock_steps
                    .store(gaps.clock_steps(), Ordering::Relaxed);
                // the mark's frame on the RTP timeline, which skips the long gaps
                let timeline = m.frame_index + gap_frames_skipped;
                let est = m.capture_unix_ns - frames_to_ns(timeline as i64);
                window_estimate = Some(window_estimate.map_or(est, |w: i64| w.min(est)));
                if start_estimate.is_none_or(|s| est < s) {
                    start_estimate = Some(est);
                    self.stats.capture_start_unix_ns.store(est, Ordering::Relaxed);
                }
            }
            let overruns = self.capture.ring_overruns.load(Ordering::Relaxed);
            if overruns > skipped_seen {
                frame_index += overruns - skipped_seen;
                self.stats.frames_skipped.store(overruns, Ordering::Relaxed);
                skipped_seen = overruns;
            }
            if self.samples.slots() >= n * ch {
                if let Ok(chunk) = self.samples.read_chunk(n * ch) {
                    let (a, b) = chunk.as_slices();
                    pcm[..a.len()].copy_from_slice(a);
                    pcm[a.len()..].copy_from_slice(b);
                    chunk.commit_all();
                }
                self.encode_and_send(&pcm, frame_index, &mut bufs);
                frame_index += n as u64;
                let now = self.cfg.clock.now_unix_ns();
                if let Some(dest) = self.cfg.rtcp_dest {
                    // First report right away, then every second.
                    if last_sr_unix_ns.is_none_or(|t| now - t >= 1_000_000_000) {
                        if let Some(w) = window_estimate.take() {
                            report_estimate = Some(w);
                        }
                        if let Some(start) = report_estimate {
                            last_sr_unix_ns = Some(now);
                            self.send_sender_report(start, frame_index - n as u64, dest, &mut bufs);
                        }
                    }
                }
                continue;
            }
            if self.stop.load(Ordering::Acquire) {
                break;
            }
            std::thread::park_timeout(Duration::from_millis(50));
        }
        if let Some(dest) = self.cfg.rtcp_dest {
            let ssrc = self.cfg.packetizer.ssrc();
            let mut w = CompoundWriter::new(&mut bufs.packet);
            let bye = w
                .receiver_report(ssrc, &[])
                .and_then(|_| w.sdes(ssrc, &self.cfg.cname, Some(self.cfg.tool)))
                .and_then(|_| w.bye(ssrc));
            if bye.is_some() {
                if let Some(d) = seal(&mut self.cfg.srtp, w.packet(), &mut bufs.sealed, true) {
                    let _ = self.cfg.socket.send_to(d, dest);
                }
            }
        }
    }

    fn encode_and_send(&mut self, pcm: &[f32], frame_index: u64, bufs: &mut SendBuffers) {
        let SendBuffers {
            opus: opus_buf,
            red: red_buf,
            packet,
            sealed,
        } = bufs;
        let t0 = std::time::Instant::now();
        let encoded = self.cfg.encoder.encode_float(pcm, opus_buf);
        let took = t0.elapsed().as_nanos() as u64;
        self.stats.encode_ns_total.fetch_add(took, Ordering::Relaxed);
        self.stats.encode_ns_max.fetch_max(took, Ordering::Relaxed);
        let len = match encoded {
            Ok(len) => len,
            Err(_) => {
                self.stats.encode_errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let opus = &opus_buf[..len];
        let payload = match self.cfg.red.as_mut() {
            None => opus,
            Some(red) => {
                // The primary's timestamp is the frame's: block offsets stay right across
                // frames skipped after a ring overrun.
                let ts = self.cfg.packetizer.timestamp_of_frame(frame_index);
                match red.build_payload_at(opus, self.cfg.opus_payload_type, ts, red_buf) {
                    Ok(red_len) => {
                        let s = &self.stats;
                        s.red_blocks_sent.store(red.blocks_sent(), Ordering::Relaxed);
                        s.red_blocks_skipped
                            .store(red.blocks_skipped(), Ordering::Relaxed);
                        &red_buf[..red_len]
                    }
                    Err(_) => {
                        self.stats.encode_errors.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        };
        let Ok(plen) = self.cfg.packetizer.build(frame_index, payload, packet) else {
            self.stats.encode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let Some(datagram) = seal(&mut self.cfg.srtp, &packet[..plen], sealed, false) else {
            self.stats.encode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.cfg.socket.send_to(datagram, self.cfg.rtp_dest) {
            Ok(_) => {
                self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .bytes_sent
                    .fetch_add(datagram.len() as u64, Ordering::Relaxed);
                self.stats
                    .payload_bytes
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                // Nobody listening (ICMP port unreachable), or socket buffer full.
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The report pairs the RTP timestamp of the *decoded* sample (frame + look-ahead) with
    /// the capture instant of the input sample it reproduces.
    fn send_sender_report(&mut self, start: i64, frame_index: u64, dest: SocketAddr, bufs: &mut SendBuffers) {
        let capture = start + frames_to_ns(frame_index as i64);
        let rtp = self
            .cfg
            .packetizer
            .timestamp_of_frame(frame_index + self.cfg.lookahead_samples as u64);
        let sr = SenderReport {
            ssrc: self.cfg.packetizer.ssrc(),
            ntp: unix_ns_to_ntp(capture),
            rtp_timestamp: rtp,
            packet_count: self.cfg.packetizer.packets_sent() as u32,
            octet_count: self.cfg.packetizer.payload_octets_sent() as u32,
        };
        let mut w = CompoundWriter::new(&mut bufs.packet);
        if w.sender_report(&sr, &[])
            .and_then(|_| w.sdes(sr.ssrc, &self.cfg.cname, Some(self.cfg.tool)))
            .is_none()
        {
            return;
        }
        let Some(datagram) = seal(&mut self.cfg.srtp, w.packet(), &mut bufs.sealed, true) else {
            return;
        };
        if self.cfg.socket.send_to(datagram, dest).is_ok() {
            let sent = SentReport {
                lsr: ntp_short(sr.ntp),
                sent_unix_ns: self.cfg.clock.now_unix_ns(),
            };
            // the reader keeps the last few; a full queue only loses an old report's RTT
            let _ = self.cfg.reports_sent.push(sent);
            self.stats.sender_reports.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count};
    use patchcord_common::red::validate_red_rtp;
    use patchcord_common::rtp::{validate_opus_rtp, RtpOpusHeader};

    const OPUS_PT: u8 = 96;
    const RED_PT: u8 = 97;
    const FRAME: usize = 480;

    /// An encoder thread (not started) sending to a local socket, and that socket.
    fn thread(redundancy: usize) -> (EncoderThread, UdpSocket) {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut encoder =
            opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::LowDelay).unwrap();
        encoder.set_bitrate(opus::Bitrate::Bits(96_000)).unwrap();
        let red = (redundancy > 0).then(|| RedEncoder::new(redundancy).unwrap());
        let pt = if red.is_some() { RED_PT } else { OPUS_PT };
        let (_, samples) = rtrb::RingBuffer::<f32>::new(16);
        let (_, marks) = rtrb::RingBuffer::<CaptureMark>::new(4);
        let t = EncoderThread {
            cfg: EncoderConfig {
                channels: 1,
                frame_samples: FRAME,
                packetizer: Packetizer::new(0x5eed, pt, 65534, u32::MAX - 1000),
                encoder,
                lookahead_samples: 0,
                socket,
                rtp_dest: rx.local_addr().unwrap(),
                rtcp_dest: None,
                clock: HostClock::new(),
                red,
                opus_payload_type: OPUS_PT,
                cname: "test@host".into(),
                tool: "patchcord-send test",
                reports_sent: rtrb::RingBuffer::new(4).0,
                srtp: None,
            },
            samples,
            marks,
            capture: Arc::new(CaptureCounters::default()),
            stats: Arc::new(EncoderStats::default()),
            stop: Arc::new(AtomicBool::new(false)),
        };
        (t, rx)
    }

    fn tone(frame_index: u64) -> Vec<f32> {
        (0..FRAME as u64)
            .map(|i| (((frame_index + i) as f32) * 0.05).sin() * 0.3)
            .collect()
    }

    fn receive(rx: &UdpSocket) -> Vec<u8> {
        let mut buf = [0u8; 2048];
        let n = rx.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    /// The RED path end to end through `encode_and_send`, allocation-free: every packet
    /// carries the previous N Opus packets bit-exact, with offsets from the true frame
    /// timestamps (also across a timeline gap), and parses with `validate_red_rtp`.
    #[test]
    fn red_packets_carry_previous_frames_without_allocating() {
        for n in 1..=3usize {
            let (mut t, rx) = thread(n);
            let mut bufs = SendBuffers::new(true, 0);
            // frames 0..20, then a gap of 3 frames (ring overrun), then 20 more
            let indices: Vec<u64> = (0..20).chain(23..43).map(|k| k * FRAME as u64).collect();
            let pcm: Vec<Vec<f32>> = indices.iter().map(|&i| tone(i)).collect();
            reset_violation_count();
            for (&i, p) in indices.iter().zip(&pcm) {
                assert_no_alloc(|| t.encode_and_send(p, i, &mut bufs));
            }
            assert_eq!(violation_count(), 0, "the RED send path allocated");
            let mut primaries: Vec<(u32, Vec<u8>)> = vec![];
            for (k, &i) in indices.iter().enumerate() {
                let dg = receive(&rx);
                let (h, info): (RtpOpusHeader, _) = validate_red_rtp(&dg, RED_PT, OPUS_PT).unwrap();
                assert_eq!(h.sequence, 65534u16.wrapping_add(k as u16));
                assert_eq!(h.timestamp, t.cfg.packetizer.timestamp_of_frame(i));
                assert_eq!(h.duration_samples, FRAME as u32);
                let expected: Vec<&(u32, Vec<u8>)> = primaries.iter().rev().take(n).rev().collect();
                assert_eq!(info.redundant().len(), expected.len(), "N={n} packet {k}");
                for (b, (ts, data)) in info.redundant().iter().zip(expected) {
                    assert_eq!(b.timestamp(h.timestamp), *ts);
                    assert_eq!(b.payload(&dg), &data[..]);
                }
                primaries.push((h.timestamp, h.payload(&dg).to_vec()));
            }
            let s = &t.stats;
            assert_eq!(s.packets_sent.load(Ordering::Relaxed), 40);
            assert_eq!(s.encode_errors.load(Ordering::Relaxed), 0);
            let blocks = (0..40).map(|k: usize| k.min(n) as u64).sum::<u64>();
            assert_eq!(s.red_blocks_sent.load(Ordering::Relaxed), blocks);
            assert_eq!(s.red_blocks_skipped.load(Ordering::Relaxed), 0);
            let primary_bytes: usize = primaries.iter().map(|(_, d)| d.len()).sum();
            assert_eq!(
                s.payload_bytes.load(Ordering::Relaxed),
                s.bytes_sent.load(Ordering::Relaxed) - 40 * 12
            );
            assert!(s.payload_bytes.load(Ordering::Relaxed) as usize > primary_bytes * n);
        }
    }

    /// Without redundancy the packets are plain Opus, as before.
    #[test]
    fn no_redundancy_sends_plain_opus() {
        let (mut t, rx) = thread(0);
        let mut bufs = SendBuffers::new(false, 0);
        for k in 0..5u64 {
            t.encode_and_send(&tone(k * FRAME as u64), k * FRAME as u64, &mut bufs);
        }
        for _ in 0..5 {
            let dg = receive(&rx);
            let h = validate_opus_rtp(&dg, OPUS_PT).unwrap();
            assert_eq!(h.duration_samples, FRAME as u32);
        }
        assert_eq!(t.stats.red_blocks_sent.load(Ordering::Relaxed), 0);
    }

    /// With a key every packet leaves protected (not plain Opus RTP), opens with the same
    /// key to the packet that would have been sent, and the Opus budget leaves room for
    /// the tag in one datagram.
    #[test]
    fn srtp_packets_are_protected_and_open() {
        use patchcord_common::srtp::{MasterKey, Opened, Protector, Suite, Unprotector};
        for suite in Suite::ALL {
            let key =
                MasterKey::new(suite, &vec![9; suite.master_key_len() + suite.master_salt_len()]).unwrap();
            let (mut t, rx) = thread(0);
            t.cfg.srtp = Some(Protector::new(&key));
            let mut bufs = SendBuffers::new(false, suite.rtp_overhead());
            assert_eq!(
                bufs.opus.len() + RTP_HEADER_LEN + suite.rtp_overhead(),
                MAX_DATAGRAM_LEN
            );
            let mut open = Unprotector::new(&key, 1);
            let mut plain = [0u8; 2048];
            for k in 0..5u64 {
                t.encode_and_send(&tone(k * FRAME as u64), k * FRAME as u64, &mut bufs);
                let dg = receive(&rx);
                let n = match open.unprotect(&dg, &mut plain) {
                    Ok(Opened::Rtp(n)) => n,
                    other => panic!("{suite}: {other:?}"),
                };
                assert_eq!(n + suite.rtp_overhead(), dg.len());
                let h = validate_opus_rtp(&plain[..n], OPUS_PT).unwrap();
                assert_eq!(h.sequence, 65534u16.wrapping_add(k as u16));
                assert_eq!(h.duration_samples, FRAME as u32);
            }
            let sent = t.stats.bytes_sent.load(Ordering::Relaxed);
            let payload = t.stats.payload_bytes.load(Ordering::Relaxed);
            assert_eq!(sent, payload + 5 * (RTP_HEADER_LEN + suite.rtp_overhead()) as u64);
        }
    }
}
