//! The encoder thread: a real thread, woken by the capture callback. As soon as a whole
//! Opus frame of samples is in the ring it is encoded, packetized and sent, so the only
//! waiting the sender adds is the frame itself.
//!
//! It also sends the RTCP sender reports, because it is the one place that knows both the
//! RTP timestamp of every frame and when that frame was captured.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use patchcord_common::playout::frames_to_ns;
use patchcord_common::rtcp::{build_bye, build_sender_report, unix_ns_to_ntp, SenderReport};
use patchcord_common::rtp::Packetizer;
use patchcord_devices::clock::HostClock;

use crate::capture::{CaptureCounters, CaptureMark};

/// Counters and facts the control thread reads.
#[derive(Default)]
pub struct EncoderStats {
    pub packets_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub payload_bytes: AtomicU64,
    pub send_errors: AtomicU64,
    pub encode_errors: AtomicU64,
    pub sender_reports: AtomicU64,
    /// Capture instant (Unix ns) of capture frame 0, from the capture marks (min-filtered).
    pub capture_start_unix_ns: AtomicI64,
    /// Longest and last encode time, ns.
    pub encode_ns_max: AtomicU64,
    pub encode_ns_total: AtomicU64,
    /// Frames skipped in the RTP timeline because the sample ring overflowed.
    pub frames_skipped: AtomicU64,
}

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
        let mut opus_buf = vec![0u8; 1500];
        let mut packet = vec![0u8; 1500];
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
        loop {
            while let Ok(m) = self.marks.pop() {
                let est = m.capture_unix_ns - frames_to_ns(m.frame_index as i64);
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
                self.encode_and_send(&pcm, frame_index, &mut opus_buf, &mut packet);
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
                            self.send_sender_report(start, frame_index - n as u64, dest, &mut packet);
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
            if let Some(len) = build_bye(self.cfg.packetizer.ssrc(), &mut packet) {
                let _ = self.cfg.socket.send_to(&packet[..len], dest);
            }
        }
    }

    fn encode_and_send(&mut self, pcm: &[f32], frame_index: u64, opus_buf: &mut [u8], packet: &mut [u8]) {
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
        let Ok(plen) = self.cfg.packetizer.build(frame_index, &opus_buf[..len], packet) else {
            self.stats.encode_errors.fetch_add(1, Ordering::Relaxed);
            return;
        };
        match self.cfg.socket.send_to(&packet[..plen], self.cfg.rtp_dest) {
            Ok(_) => {
                self.stats.packets_sent.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes_sent.fetch_add(plen as u64, Ordering::Relaxed);
                self.stats.payload_bytes.fetch_add(len as u64, Ordering::Relaxed);
            }
            Err(_) => {
                // Nobody listening (ICMP port unreachable), or socket buffer full.
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The report pairs the RTP timestamp of the *decoded* sample (frame + look-ahead) with
    /// the capture instant of the input sample it reproduces.
    fn send_sender_report(&mut self, start: i64, frame_index: u64, dest: SocketAddr, packet: &mut [u8]) {
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
        if let Some(len) = build_sender_report(&sr, packet) {
            if self.cfg.socket.send_to(&packet[..len], dest).is_ok() {
                self.stats.sender_reports.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
