//! The sender's statistics as one typed record, [`SenderStats`], made once a second from
//! the counters the capture callback, the encoder thread and the RTCP reader share
//! (atomics, and the receivers' last reports) by [`StatsReader`]. Read by the status
//! line, the JSON lines of `--stats-json` and the HTTP endpoint (`--http`: `/metrics`,
//! `/stats.json`, the dashboard).
//!
//! The JSON keys are a contract (scripts and the end-to-end tests read them): never
//! renamed, new ones may appear; [`SCHEMA`] is the version of that contract, the same
//! scheme as the receiver's. Optional values are `null`, never absent.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use patchcord_common::level::Levels;
use patchcord_common::srtp::SrtpCounters;
use patchcord_common::time::SAMPLE_RATE;
use patchcord_web::{HttpCounters, Metrics, MetricsWriter, PerItem};
use serde::Serialize;

use crate::capture::CaptureCounters;
use crate::encoder::EncoderStats;
use crate::reports::{ReceiverView, Reports};

/// Version of the JSON record's keys.
pub const SCHEMA: u32 = 1;

/// What this sender sends as: fixed for the run.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub ssrc: u32,
    pub initial_timestamp: u32,
    pub initial_sequence: u16,
    pub lookahead_samples: u32,
    pub frame_samples: usize,
    pub redundancy: usize,
    pub red_payload_type: Option<u8>,
    /// `--srtp-key`: the suite.
    pub srtp: Option<&'static str>,
}

/// Everything the sender reports once a second, and once more at the end (`final`).
#[derive(Debug, Clone, Serialize)]
pub struct SenderStats {
    pub schema: u32,
    pub program: &'static str,
    /// Wall clock (Unix time, ms) when the record was made.
    pub unix_ms: i64,
    /// Seconds since the sender started.
    pub t: f64,
    #[serde(rename = "final")]
    pub final_: bool,
    pub ssrc: u32,
    pub initial_timestamp: u32,
    pub initial_sequence: u16,
    pub lookahead_samples: u32,
    pub frame_samples: usize,
    pub redundancy: usize,
    pub red_payload_type: Option<u8>,
    pub red_blocks_sent: u64,
    pub red_blocks_skipped: u64,
    pub packets_sent: u64,
    pub bytes_sent: u64,
    pub payload_bytes: u64,
    /// Sent over the last second (whole datagrams), kb/s.
    pub send_kbps: f64,
    pub send_errors: u64,
    pub encode_errors: u64,
    pub sender_reports: u64,
    pub frames_captured: u64,
    pub ring_overruns: u64,
    pub xruns: u64,
    /// Audio lost before it reached the sender, nobody told (the audio server dropped it:
    /// the host clock ran on without frames), since the start: how often, and how long in
    /// all.
    pub capture_gaps: u64,
    pub capture_gap_ms: f64,
    /// Persistent steps of the capture timestamps that were no gap (backwards, or longer
    /// than a minute): a stepped clock, not lost audio.
    pub capture_clock_steps: u64,
    pub capture_start_unix_ns: i64,
    pub encode_us_max: f64,
    pub encode_us_mean: f64,
    /// Levels of the captured audio over the last second.
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
    /// Captured samples at full scale, since the start.
    pub clipped_samples: u64,
    pub receiver_reports: u64,
    pub rtcp_malformed: u64,
    /// `--srtp-key`: the suite (null without), and the SRTCP refused (forged, wrongly
    /// keyed, plain, replayed, malformed).
    pub srtp: Option<&'static str>,
    pub srtcp_refused: SrtpCounters,
    /// Datagrams from outside `--allow`.
    pub rtcp_not_allowed: u64,
    /// Datagrams on the socket that are not RTCP.
    pub not_rtcp: u64,
    /// `--http`: connections refused (over the cap), timed out (no request headers in
    /// time, or an answer nobody read), and bad requests (too large, malformed).
    #[serde(flatten)]
    pub http: HttpCounters,
    /// What each receiver says back (RTCP receiver reports): loss, jitter, round trip.
    pub receivers: Vec<ReceiverView>,
}

/// Makes the records from the shared counters.
pub struct StatsReader {
    pub identity: Identity,
    pub encoder: Arc<EncoderStats>,
    pub capture: Arc<CaptureCounters>,
    pub reports: Arc<Reports>,
    pub started: Instant,
    last_bytes: u64,
    clipped: u64,
    /// Capture levels of the second under way (what the meters took is added here).
    levels: Levels,
}

/// The capture meter between records (the dashboard's `levels` events, ten a second).
#[derive(Debug, Clone, Serialize)]
pub struct LiveLevels {
    pub unix_ms: i64,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
}

fn frames_to_ms(frames: u64) -> f64 {
    frames as f64 * 1000.0 / SAMPLE_RATE as f64
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl StatsReader {
    pub fn new(
        identity: Identity,
        encoder: Arc<EncoderStats>,
        capture: Arc<CaptureCounters>,
        reports: Arc<Reports>,
    ) -> Self {
        StatsReader {
            identity,
            encoder,
            capture,
            reports,
            started: Instant::now(),
            last_bytes: 0,
            clipped: 0,
            levels: Levels::default(),
        }
    }

    /// The capture levels since the meters were last read.
    pub fn live_levels(&mut self) -> LiveLevels {
        let l = self.capture.levels.take();
        self.levels.merge(&l);
        LiveLevels {
            unix_ms: unix_ms(),
            peak_dbfs: l.peak_dbfs(),
            rms_dbfs: l.rms_dbfs(),
        }
    }

    /// The record of the last second (`final_`: the summary of the run), with what
    /// `--http` refused so far.
    pub fn record(&mut self, final_: bool, http: HttpCounters) -> SenderStats {
        let e = &self.encoder;
        let c = &self.capture;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let packets = load(&e.packets_sent);
        let bytes = load(&e.bytes_sent);
        self.levels.merge(&c.levels.take());
        let levels = std::mem::take(&mut self.levels);
        self.clipped += levels.clipped;
        let send_kbps = (bytes - self.last_bytes.min(bytes)) as f64 * 8.0 / 1000.0;
        self.last_bytes = bytes;
        let id = self.identity;
        SenderStats {
            schema: SCHEMA,
            program: "patchcord-send",
            unix_ms: unix_ms(),
            t: self.started.elapsed().as_secs_f64(),
            final_,
            ssrc: id.ssrc,
            initial_timestamp: id.initial_timestamp,
            initial_sequence: id.initial_sequence,
            lookahead_samples: id.lookahead_samples,
            frame_samples: id.frame_samples,
            redundancy: id.redundancy,
            red_payload_type: id.red_payload_type,
            red_blocks_sent: load(&e.red_blocks_sent),
            red_blocks_skipped: load(&e.red_blocks_skipped),
            packets_sent: packets,
            bytes_sent: bytes,
            payload_bytes: load(&e.payload_bytes),
            send_kbps,
            send_errors: load(&e.send_errors),
            encode_errors: load(&e.encode_errors),
            sender_reports: load(&e.sender_reports),
            frames_captured: load(&c.frames_captured),
            ring_overruns: load(&c.ring_overruns),
            xruns: load(&c.xruns),
            capture_gaps: load(&e.capture_gaps),
            capture_gap_ms: frames_to_ms(load(&e.capture_gap_frames)),
            capture_clock_steps: load(&e.capture_clock_steps),
            capture_start_unix_ns: e.capture_start_unix_ns.load(Ordering::Relaxed),
            encode_us_max: load(&e.encode_ns_max) as f64 / 1000.0,
            encode_us_mean: if packets > 0 {
                load(&e.encode_ns_total) as f64 / 1000.0 / packets as f64
            } else {
                0.0
            },
            peak_dbfs: levels.peak_dbfs(),
            rms_dbfs: levels.rms_dbfs(),
            clipped_samples: self.clipped,
            receiver_reports: load(&self.reports.receiver_reports),
            rtcp_malformed: load(&self.reports.rtcp_malformed),
            srtp: id.srtp,
            srtcp_refused: self.reports.srtp.lock().map(|c| *c).unwrap_or_default(),
            rtcp_not_allowed: load(&self.reports.not_allowed),
            not_rtcp: load(&self.reports.not_rtcp),
            http,
            receivers: self.reports.snapshot(),
        }
    }
}

impl Metrics for SenderStats {
    fn write_metrics(&self, m: &mut MetricsWriter) {
        let ssrc = format!("{:08x}", self.ssrc);
        let mut one = |name: &str, help: &str, counter: bool, v: f64| {
            m.family(
                &format!("patchcord_send_{name}"),
                help,
                counter,
                &[(vec![("ssrc", ssrc.clone())], v)],
            );
        };
        one("packets_sent", "RTP packets sent", true, self.packets_sent as f64);
        one(
            "bytes_sent",
            "Bytes sent (whole datagrams)",
            true,
            self.bytes_sent as f64,
        );
        one(
            "bitrate_kbps",
            "Sent over the last second, kb/s",
            false,
            self.send_kbps,
        );
        one(
            "send_errors",
            "Datagrams the socket refused",
            true,
            self.send_errors as f64,
        );
        one(
            "ring_overruns",
            "Captured frames dropped: the encoder was behind",
            true,
            self.ring_overruns as f64,
        );
        one("xruns", "Device xruns", true, self.xruns as f64);
        one(
            "capture_gaps",
            "Audio lost before capture, unreported by the device or server",
            true,
            self.capture_gaps as f64,
        );
        one(
            "capture_gap_seconds",
            "Length of the capture gaps, in all",
            true,
            self.capture_gap_ms / 1e3,
        );
        one(
            "capture_clock_steps",
            "Steps of the capture timestamps that were no gap",
            true,
            self.capture_clock_steps as f64,
        );
        one(
            "peak_dbfs",
            "Capture peak level over the last second",
            false,
            self.peak_dbfs,
        );
        one(
            "rms_dbfs",
            "Capture RMS level over the last second",
            false,
            self.rms_dbfs,
        );
        one(
            "clipped_samples",
            "Captured samples at full scale",
            true,
            self.clipped_samples as f64,
        );
        one(
            "encode_seconds_max",
            "Longest Opus encode",
            false,
            self.encode_us_max / 1e6,
        );
        let per_receiver: [PerItem<ReceiverView>; 4] = [
            (
                "receiver_fraction_lost_ratio",
                "Loss the receiver reported for its last interval",
                false,
                &|r| Some(r.fraction_lost_pct / 100.0),
            ),
            (
                "receiver_lost",
                "Packets the receiver reports lost (cumulative)",
                false,
                &|r| Some(r.cumulative_lost as f64),
            ),
            (
                "receiver_jitter_seconds",
                "Jitter the receiver reports",
                false,
                &|r| Some(r.jitter_ms / 1e3),
            ),
            (
                "receiver_rtt_seconds",
                "Round trip to the receiver (RTCP)",
                false,
                &|r| r.rtt_ms.map(|v| v / 1e3),
            ),
        ];
        let labels = |r: &ReceiverView| {
            vec![
                ("ssrc", ssrc.clone()),
                ("receiver_ssrc", format!("{:08x}", r.ssrc)),
                ("receiver", r.address.clone()),
            ]
        };
        m.per_item("patchcord_send_", &self.receivers, labels, &per_receiver);
        self.http.write_metrics(m, "patchcord_send_");
    }
}
