//! The receiver's statistics as one typed record, [`ReceiverStats`] (with a
//! [`StreamStats`] per playing stream): built once a second by the monitor, then read by
//! everything that shows them: the status line and the summary (`status.rs`), the JSON
//! lines of `--stats-json` (its `Serialize`), and the HTTP endpoint's `/metrics`,
//! `/stats.json` and dashboard (`--http`, through [`patchcord_web::Metrics`]).
//!
//! The JSON keys are a contract: scripts and the end-to-end tests read them. A key is
//! never renamed or given another meaning; new keys may appear, and [`SCHEMA`] counts the
//! versions of that contract (1: the keys of before this record, plus `schema`,
//! `program`, `unix_ms` and the level meters). Optional values are `null`, never absent.

use std::collections::BTreeMap;

use patchcord_common::source::SourceCounters;
use patchcord_common::srtp::SrtpCounters;
use patchcord_web::{HttpCounters, Metrics, MetricsWriter, PerItem};
use serde::Serialize;

/// Version of the JSON record's keys.
pub const SCHEMA: u32 = 1;

/// One stream that is playing, as of its latest report.
#[derive(Debug, Clone, Serialize)]
pub struct StreamStats {
    pub slot: u16,
    pub ssrc: u32,
    /// The sender's address (`host:port`).
    pub source: Option<String>,
    pub gain_db: f64,
    pub packets_received: u64,
    pub played: u64,
    /// RFC 3550 cumulative lost (expected − received: duplicates net out).
    pub lost: i64,
    pub missing: u64,
    pub late: u64,
    pub duplicates: u64,
    pub recovered_fec: u64,
    pub recovered_red: u64,
    pub concealed_ms: f64,
    pub concealment_events: u64,
    pub interruptions: u64,
    pub underruns: u64,
    pub tsm_operations: u64,
    pub ended: u64,
    pub jitter_ms: f64,
    pub delay_ms: Option<f64>,
    pub target_delay_ms: f64,
    pub rate: f64,
    pub drift_ppm: f64,
    pub buffer_ms: f64,
    pub latency_ms: Option<f64>,
    pub latency_note: Option<&'static str>,
    pub receiver_delay_ms: Option<f64>,
    /// Levels of the decoded stream (before its gain) over the last second.
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
    /// Decoded samples at full scale, since the stream started.
    pub clipped_samples: u64,
}

/// The meters between records (the dashboard's `levels` events, ten a second): each
/// playing stream's levels and the mix's over the last tenth of a second.
#[derive(Debug, Clone, Serialize)]
pub struct LiveLevels {
    pub unix_ms: i64,
    pub streams: Vec<LiveStreamLevels>,
    pub mix_peak_dbfs: f64,
    pub mix_rms_dbfs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LiveStreamLevels {
    pub ssrc: u32,
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
}

/// Wall clock, Unix ms.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Everything the receiver reports once a second, and once more at the end (`final`).
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverStats {
    pub schema: u32,
    pub program: &'static str,
    /// Wall clock (Unix time, ms) when the record was made.
    pub unix_ms: i64,
    /// Seconds since the receiver started.
    pub t: f64,
    #[serde(rename = "final")]
    pub final_: bool,
    pub mode: &'static str,
    /// The first stream (lowest slot): "the" stream in single-stream use.
    pub ssrc: Option<u32>,
    pub active_streams: u32,
    pub streams: Vec<StreamStats>,
    pub streams_started: u64,
    /// Validated SSRCs turned away (no `--max-streams` slot, or no room in `--load-limit`).
    pub streams_refused: u64,
    /// Of `streams_refused`, those turned away for `--load-limit`.
    pub refused_for_load: u64,
    /// Playing streams shed because the render load went over `--load-limit`.
    pub streams_shed: u64,
    /// Render time over output time, last half second (a share of real time).
    pub load: Option<f64>,
    pub refused_packets: u64,
    pub streams_timed_out: u64,
    pub streams_released: u64,
    // totals over every stream, those gone and those playing
    pub packets_received: u64,
    pub payload_bytes: u64,
    pub played: u64,
    pub missing: u64,
    pub lost: i64,
    pub expected: u64,
    pub late: u64,
    pub duplicates: u64,
    pub overflow: u64,
    pub recovered_fec: u64,
    pub recovered_red: u64,
    pub concealed_samples: u64,
    pub concealed_ms: f64,
    pub concealed_frames: u64,
    pub concealment_events: u64,
    pub interruptions: u64,
    pub underruns: u64,
    pub decode_errors: u64,
    pub seq_jumps: u64,
    pub resyncs: u64,
    pub reordered: u64,
    pub discarded: u64,
    pub tsm_operations: u64,
    pub tsm_removed_samples: u64,
    pub tsm_inserted_samples: u64,
    pub ended: u64,
    // the first stream's
    pub jitter_ms: Option<f64>,
    pub delay_ms: Option<f64>,
    pub target_delay_ms: Option<f64>,
    pub rate: Option<f64>,
    pub drift_ppm: Option<f64>,
    pub buffer_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    pub latency_ns: Option<i64>,
    pub latency_note: Option<&'static str>,
    pub latency_min_ms: Option<f64>,
    pub latency_median_ms: Option<f64>,
    pub latency_max_ms: Option<f64>,
    pub receiver_delay_ms: Option<f64>,
    pub receiver_reports_sent: u64,
    pub receiver_report_send_errors: u64,
    pub output_start_unix_ns: Option<i64>,
    pub output_frames: u64,
    pub period_frames: u32,
    pub xruns: u64,
    /// Output samples the mix's soft clipper bent (the sum went beyond ±1).
    pub clipped_samples: u64,
    /// Levels of the output (the mix after its clipper) over the last second.
    pub mix_peak_dbfs: f64,
    pub mix_rms_dbfs: f64,
    pub callback_p50: f64,
    pub callback_p99: f64,
    pub callback_max: f64,
    pub render_ahead: bool,
    pub render_p50: f64,
    pub render_p99: f64,
    pub render_max: f64,
    pub render_underrun_frames: u64,
    pub callback_queue_full: u64,
    pub datagrams: u64,
    pub rtcp_packets: u64,
    pub rtcp_malformed: u64,
    pub sender_reports: u64,
    pub byes: u64,
    /// Datagrams dropped by validation, by reason.
    pub dropped: BTreeMap<&'static str, u64>,
    pub not_allowed: u64,
    pub rtcp_wrong_source: u64,
    pub in_probation: usize,
    pub receive_queue_full: u64,
    pub socket_drops: Option<u64>,
    pub socket_buffer_bytes: usize,
    pub control_queue_full: u64,
    pub unrouted_packets: u64,
    pub retire_queue_full: u64,
    pub segments_dropped: u64,
    pub snapshots_dropped: u64,
    pub reports_dropped: u64,
    /// Source validation: wrong_source, unvalidated, probation_evicted, held_aside,
    /// jumps_rejected, restarts.
    #[serde(flatten)]
    pub source: SourceCounters,
    /// `--srtp-key`: the suite (null without), and what SRTP refused: srtp_auth_failed
    /// (forged, another key, or plain RTP), srtp_replayed, srtp_malformed.
    pub srtp: Option<&'static str>,
    #[serde(flatten)]
    pub srtp_refused: SrtpCounters,
    /// `--http`: connections refused (over the cap), timed out (no request headers in
    /// time, or an answer nobody read), and bad requests (too large, malformed).
    #[serde(flatten)]
    pub http: HttpCounters,
    /// Advice about the senders' payload types, when there is some.
    pub hint: Option<String>,
}

impl ReceiverStats {
    /// Datagrams dropped by validation, every reason together.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Datagrams refused by source validation or SRTP: not allowed, from the wrong source,
    /// never validated, jumps rejected, failed authentication, replayed.
    pub fn foreign(&self) -> u64 {
        self.not_allowed
            + self.source.wrong_source
            + self.rtcp_wrong_source
            + self.source.unvalidated
            + self.source.jumps_rejected
            + self.srtp_refused.srtp_auth_failed
            + self.srtp_refused.srtp_replayed
    }
}

impl Metrics for ReceiverStats {
    fn write_metrics(&self, m: &mut MetricsWriter) {
        let per_stream: [PerItem<StreamStats>; 17] = [
            ("packets_received", "RTP packets received", true, &|s| {
                Some(s.packets_received as f64)
            }),
            ("lost", "Packets lost (RFC 3550 cumulative)", true, &|s| {
                Some(s.lost as f64)
            }),
            ("late", "Packets that arrived after their playout", true, &|s| {
                Some(s.late as f64)
            }),
            ("concealed_seconds", "Audio concealed (PLC)", true, &|s| {
                Some(s.concealed_ms / 1e3)
            }),
            ("interruptions", "Concealments of 150 ms or more", true, &|s| {
                Some(s.interruptions as f64)
            }),
            (
                "recovered",
                "Packets recovered by FEC or redundancy",
                true,
                &|s| Some((s.recovered_fec + s.recovered_red) as f64),
            ),
            ("clipped_samples", "Decoded samples at full scale", true, &|s| {
                Some(s.clipped_samples as f64)
            }),
            ("jitter_seconds", "RFC 3550 interarrival jitter", false, &|s| {
                Some(s.jitter_ms / 1e3)
            }),
            (
                "delay_seconds",
                "Playout delay above the fastest packets",
                false,
                &|s| s.delay_ms.map(|d| d / 1e3),
            ),
            ("target_delay_seconds", "Playout delay target", false, &|s| {
                Some(s.target_delay_ms / 1e3)
            }),
            (
                "buffer_seconds",
                "Audio waiting in the jitter buffer",
                false,
                &|s| Some(s.buffer_ms / 1e3),
            ),
            (
                "drift_ppm",
                "Sender clock against the output clock",
                false,
                &|s| Some(s.drift_ppm),
            ),
            (
                "latency_seconds",
                "End-to-end latency, capture to playback (patchcord senders)",
                false,
                &|s| s.latency_ms.map(|l| l / 1e3),
            ),
            (
                "receiver_delay_seconds",
                "Arrival of the fastest packets to playback",
                false,
                &|s| s.receiver_delay_ms.map(|l| l / 1e3),
            ),
            ("peak_dbfs", "Peak level over the last second", false, &|s| {
                Some(s.peak_dbfs)
            }),
            ("rms_dbfs", "RMS level over the last second", false, &|s| {
                Some(s.rms_dbfs)
            }),
            ("gain_db", "Gain in the mix", false, &|s| Some(s.gain_db)),
        ];
        let labels = |s: &StreamStats| {
            vec![
                ("ssrc", format!("{:08x}", s.ssrc)),
                ("source", s.source.clone().unwrap_or_default()),
            ]
        };
        m.per_item("patchcord_recv_stream_", &self.streams, labels, &per_stream);
        let gauge = |m: &mut MetricsWriter, name: &str, help: &str, v: f64| {
            m.family(&format!("patchcord_recv_{name}"), help, false, &[(vec![], v)]);
        };
        let counter = |m: &mut MetricsWriter, name: &str, help: &str, v: f64| {
            m.family(&format!("patchcord_recv_{name}"), help, true, &[(vec![], v)]);
        };
        gauge(m, "active_streams", "Streams playing", self.active_streams as f64);
        if let Some(load) = self.load {
            gauge(
                m,
                "render_load",
                "Render time over output time, last half second (--load-limit)",
                load,
            );
        }
        counter(
            m,
            "streams_started",
            "Streams started",
            self.streams_started as f64,
        );
        counter(
            m,
            "streams_refused",
            "Streams refused (--max-streams or --load-limit)",
            self.streams_refused as f64,
        );
        counter(
            m,
            "streams_shed",
            "Streams shed for --load-limit",
            self.streams_shed as f64,
        );
        counter(
            m,
            "packets_received",
            "RTP packets received, all streams",
            self.packets_received as f64,
        );
        counter(m, "lost", "Packets lost, all streams", self.lost as f64);
        counter(m, "late", "Late packets, all streams", self.late as f64);
        counter(
            m,
            "concealed_seconds",
            "Audio concealed, all streams",
            self.concealed_ms / 1e3,
        );
        counter(
            m,
            "interruptions",
            "Concealments of 150 ms or more, all streams",
            self.interruptions as f64,
        );
        counter(m, "underruns", "Jitter buffer underruns", self.underruns as f64);
        counter(m, "xruns", "Device xruns", self.xruns as f64);
        counter(
            m,
            "dropped",
            "Datagrams dropped by validation",
            self.dropped_total() as f64,
        );
        counter(
            m,
            "foreign",
            "Datagrams refused by source validation",
            self.foreign() as f64,
        );
        counter(
            m,
            "mix_clipped_samples",
            "Output samples bent by the soft clipper",
            self.clipped_samples as f64,
        );
        gauge(
            m,
            "mix_peak_dbfs",
            "Output peak level over the last second",
            self.mix_peak_dbfs,
        );
        gauge(
            m,
            "mix_rms_dbfs",
            "Output RMS level over the last second",
            self.mix_rms_dbfs,
        );
        gauge(
            m,
            "callback_p50_ratio",
            "Audio callback duration p50, fraction of the period",
            self.callback_p50,
        );
        gauge(
            m,
            "callback_p99_ratio",
            "Audio callback duration p99, fraction of the period",
            self.callback_p99,
        );
        gauge(
            m,
            "callback_max_ratio",
            "Audio callback duration max, fraction of the period",
            self.callback_max,
        );
        gauge(m, "period_frames", "Device period", self.period_frames as f64);
        if let Some(d) = self.socket_drops {
            counter(
                m,
                "socket_drops",
                "Datagrams the kernel dropped for the socket",
                d as f64,
            );
        }
        self.http.write_metrics(m, "patchcord_recv_");
    }
}
