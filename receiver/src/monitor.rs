//! The control thread's view of the audio thread: drains the snapshot, stream report,
//! segment and retired-stream queues, measures end-to-end latency per stream and the
//! callback's load, and renders the stats as JSON (per stream and for the mix).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use patchcord_common::latency::CaptureClock;
use patchcord_common::playout::{DelayMode, PlayoutConfig, SampleSource};
use patchcord_common::rtp::DropReason;
use patchcord_common::source::SourceCounters;
use patchcord_common::srtp::SrtpCounters;
use patchcord_common::stats::StreamCounters;
use patchcord_common::time::frames_to_ns;
use serde_json::json;

use crate::feedback::{Feedback, Reception};
use crate::output::{Retired, Snapshot, StreamReport, StreamSegment};
use crate::registry::Registry;

/// Seconds of latency kept for the summary: 12 days.
const MAX_LATENCY_SECONDS: usize = 1 << 20;

/// Counters of the network side.
#[derive(Default)]
pub struct NetCounters {
    pub datagrams: u64,
    pub rtcp: u64,
    pub rtcp_malformed: u64,
    pub sender_reports: u64,
    pub byes: u64,
    pub dropped: [u64; DropReason::ALL.len()],
    /// Source validation: probation, binding, jumps (see `patchcord_common::source`).
    pub source: SourceCounters,
    /// Datagrams from addresses outside `--allow`.
    pub not_allowed: u64,
    /// `--srtp-key`: the suite, and the datagrams SRTP refused.
    pub srtp_suite: Option<&'static str>,
    pub srtp: SrtpCounters,
    /// Sender reports, SDES and BYEs not from the stream's own RTCP source (also those kept
    /// aside for an SSRC before it passed probation from another source), and BYEs for an
    /// SSRC that is neither playing nor on probation.
    pub rtcp_wrong_source: u64,
    /// Packets of new SSRCs waiting in probation now.
    pub in_probation: usize,
    pub queue_full: u64,
    pub control_queue_full: u64,
    /// Datagrams the kernel dropped for our socket (receive buffer full), if known.
    pub socket_drops: Option<u64>,
    pub socket_buffer_bytes: usize,
}

#[derive(Default, Clone, Copy)]
struct SlotView {
    report: Option<StreamReport>,
    latency_min: Option<i64>,
    latency_ns: Option<i64>,
}

pub struct Monitor {
    snapshots: rtrb::Consumer<Snapshot>,
    reports: rtrb::Consumer<StreamReport>,
    retired: rtrb::Consumer<Retired>,
    segments: Option<rtrb::Consumer<StreamSegment>>,
    timeline_out: Option<BufWriter<File>>,
    pending_silence: Option<StreamSegment>,
    pub last: Snapshot,
    slots: Vec<SlotView>,
    /// Counters of streams that have left (read from the stream before it is freed).
    retired_totals: StreamCounters,
    retired_lost: i64,
    retired_expected: u64,
    /// Last known end-to-end latency, for the summary after the streams have gone; else
    /// why there was none, and the receiver's side of it.
    last_latency_ns: Option<i64>,
    last_latency_note: Option<&'static str>,
    last_receiver_delay_ms: Option<f64>,
    /// The latency measured in each second of the run (the first stream that measured
    /// one), for the summary's min / median / max; at most [`MAX_LATENCY_SECONDS`].
    latency_history: Vec<i64>,
    /// Minimum of (playback instant − frame / rate) over the run: the wall-clock instant of
    /// output frame 0, exact when the device clock is the host clock (virtual devices); used
    /// to align the output WAV with the input in tests.
    output_start_unix_ns: Option<i64>,
    /// Rendering time per period (decode and mix).
    render: Durations,
    /// The output callback's own duration, when it does not render (`--render-ahead`).
    callback: Option<(rtrb::Consumer<u32>, Durations)>,
    pub started: Instant,
}

/// Durations (ns) for percentiles: the last second exactly, the whole run in a histogram
/// of constant size.
struct Durations {
    window: Vec<u32>,
    run: LogHistogram,
    max: u32,
}

impl Durations {
    fn new() -> Self {
        Durations {
            window: Vec::with_capacity(1 << 12),
            run: LogHistogram::new(),
            max: 0,
        }
    }

    fn push(&mut self, ns: u32) {
        if self.window.len() < 1 << 16 {
            self.window.push(ns);
        }
        self.run.add(ns);
        self.max = self.max.max(ns);
    }

    /// p50, p99 and max (ns) over the last window (clearing it), or over the whole run
    /// (p50 and p99 then within 1 %, from the histogram).
    fn take(&mut self, whole_run: bool) -> (u32, u32, u32) {
        if whole_run {
            return (self.run.percentile(0.5), self.run.percentile(0.99), self.max);
        }
        self.window.sort_unstable();
        let r = (
            percentile(&self.window, 0.5),
            percentile(&self.window, 0.99),
            self.max,
        );
        self.window.clear();
        r
    }
}

/// Counts of durations in buckets 1 % wide from 1 µs to `u32::MAX` ns (about 1,530
/// buckets): a run of any length in constant memory, percentiles within 1 %.
struct LogHistogram {
    counts: Vec<u64>,
    total: u64,
}

const HIST_MIN_NS: f64 = 1_000.0;
const HIST_STEP: f64 = 1.01;

impl LogHistogram {
    fn new() -> Self {
        let buckets = (u32::MAX as f64 / HIST_MIN_NS).ln() / HIST_STEP.ln();
        LogHistogram {
            counts: vec![0; buckets.ceil() as usize + 2],
            total: 0,
        }
    }

    /// Bucket `i` holds durations in (upper(i − 1), upper(i)]; bucket 0 everything ≤ 1 µs.
    fn bucket(&self, ns: u32) -> usize {
        let x = ns as f64;
        let i = if x <= HIST_MIN_NS {
            0
        } else {
            ((x / HIST_MIN_NS).ln() / HIST_STEP.ln()).ceil() as usize
        };
        i.min(self.counts.len() - 1)
    }

    fn upper(i: usize) -> u32 {
        (HIST_MIN_NS * HIST_STEP.powi(i as i32)).min(u32::MAX as f64) as u32
    }

    fn add(&mut self, ns: u32) {
        let i = self.bucket(ns);
        self.counts[i] += 1;
        self.total += 1;
    }

    /// The upper edge of the bucket holding the `p` quantile (0 when empty).
    fn percentile(&self, p: f64) -> u32 {
        if self.total == 0 {
            return 0;
        }
        // the same rank as `percentile` on a sorted vector
        let rank = ((self.total - 1) as f64 * p).round() as u64;
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Self::upper(i);
            }
        }
        u32::MAX
    }
}

impl Monitor {
    pub fn new(
        snapshots: rtrb::Consumer<Snapshot>,
        reports: rtrb::Consumer<StreamReport>,
        retired: rtrb::Consumer<Retired>,
        segments: Option<rtrb::Consumer<StreamSegment>>,
        timeline_out: Option<BufWriter<File>>,
        max_streams: usize,
        callback_durations: Option<rtrb::Consumer<u32>>,
    ) -> Self {
        Monitor {
            snapshots,
            reports,
            retired,
            segments,
            timeline_out,
            pending_silence: None,
            last: Snapshot::default(),
            slots: vec![SlotView::default(); max_streams],
            retired_totals: StreamCounters::default(),
            retired_lost: 0,
            retired_expected: 0,
            last_latency_ns: None,
            last_latency_note: None,
            last_receiver_delay_ms: None,
            latency_history: Vec::new(),
            output_start_unix_ns: None,
            render: Durations::new(),
            callback: callback_durations.map(|c| (c, Durations::new())),
            started: Instant::now(),
        }
    }

    /// Take everything the audio thread has reported; free streams it handed back.
    pub fn drain(&mut self, clocks: &HashMap<u32, CaptureClock>, registry: &mut Registry) {
        while let Ok(s) = self.snapshots.pop() {
            if let Some(p) = s.playback_unix_ns {
                let start = p - frames_to_ns(s.out_frame as i64);
                self.output_start_unix_ns = Some(self.output_start_unix_ns.map_or(start, |m| m.min(start)));
            }
            self.render.push(s.render_ns);
            self.last = s;
        }
        if let Some((q, d)) = self.callback.as_mut() {
            while let Ok(ns) = q.pop() {
                d.push(ns);
            }
        }
        while let Ok(r) = self.reports.pop() {
            // a report taken just before its stream was retired can arrive after the slot
            // was freed: only the stream the registry has in that slot counts
            if registry.slot_of(r.ssrc) != Some(r.slot) {
                continue;
            }
            let Some(v) = self.slots.get_mut(r.slot as usize) else {
                continue;
            };
            if let (Some(ts), Some(c)) = (r.rtp_ts_at_frame, clocks.get(&r.ssrc)) {
                let l = c.latency_ns(ts, r.playback_unix_ns);
                v.latency_min = Some(v.latency_min.map_or(l, |m| m.min(l)));
            }
            if v.report.is_some_and(|old| old.ssrc != r.ssrc) {
                v.latency_min = None;
                v.latency_ns = None;
            }
            v.report = Some(r);
        }
        while let Ok(old) = self.retired.pop() {
            // the stream's final counters join the totals, then it is freed here
            self.retired_totals += *old.stream.counters();
            self.retired_lost += old.stream.register().cumulative_lost();
            self.retired_expected += old.stream.register().expected();
            if let Some(v) = self.slots.get_mut(old.slot as usize) {
                *v = SlotView::default();
            }
            registry.release(old.slot);
            drop(old);
        }
        if let (Some(rx), Some(w)) = (self.segments.as_mut(), self.timeline_out.as_mut()) {
            while let Ok(seg) = rx.pop() {
                // Zero-length segments only record decoder-state decodes: not audio.
                if seg.segment.frames == 0 {
                    continue;
                }
                // Merge runs of silence; write everything else as it is.
                if seg.segment.source == SampleSource::Silence {
                    match self.pending_silence.as_mut() {
                        Some(p)
                            if p.ssrc == seg.ssrc
                                && p.segment.out_frame + p.segment.frames as u64 == seg.segment.out_frame =>
                        {
                            p.segment.frames += seg.segment.frames
                        }
                        _ => {
                            if let Some(p) = self.pending_silence.take() {
                                write_segment(w, &p);
                            }
                            self.pending_silence = Some(seg);
                        }
                    }
                    continue;
                }
                if let Some(p) = self.pending_silence.take() {
                    write_segment(w, &p);
                }
                write_segment(w, &seg);
            }
        }
    }

    /// What the playing streams measured (RFC 3550 loss and jitter), for receiver reports.
    pub fn receptions(&self) -> Vec<Reception> {
        self.slots
            .iter()
            .filter_map(|v| v.report)
            .map(|r| Reception {
                ssrc: r.ssrc,
                expected: r.rfc3550_expected,
                lost: r.rfc3550_lost,
                extended_max_seq: r.extended_max_seq,
                jitter_rtp: r.jitter_rtp,
                at_ns: r.playback_unix_ns,
            })
            .collect()
    }

    /// Close the current one-second measurement window.
    pub fn end_second(&mut self) {
        let mut fresh = None;
        for v in self.slots.iter_mut() {
            if let Some(l) = v.latency_min.take() {
                v.latency_ns = Some(l);
                if v.report.is_some() {
                    fresh = fresh.or(Some(l));
                }
            }
        }
        if let Some(l) = self.slots.iter().find_map(|v| v.report.and(v.latency_ns)) {
            self.last_latency_ns = Some(l);
        }
        if let Some(l) = fresh.filter(|_| self.latency_history.len() < MAX_LATENCY_SECONDS) {
            self.latency_history.push(l);
        }
    }

    /// Min, median and max of the latency over the run (ns).
    fn latency_spread(&self) -> Option<(i64, i64, i64)> {
        let mut all = self.latency_history.clone();
        all.sort_unstable();
        Some((*all.first()?, all[all.len() / 2], *all.last()?))
    }

    pub fn finish_timeline(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.timeline_out.as_mut() {
            if let Some(s) = self.pending_silence.take() {
                write_segment(w, &s);
            }
            w.flush()?;
        }
        Ok(())
    }

    pub fn stats_json(
        &mut self,
        net: &NetCounters,
        registry: &Registry,
        feedback: &Feedback,
        xruns: u64,
        cfg: &PlayoutConfig,
        final_: bool,
    ) -> serde_json::Value {
        let render = self.render.take(final_);
        // the callback's own duration; when it renders, that is the render time
        let callback = self.callback.as_mut().map_or(render, |(_, d)| d.take(final_));
        let s = &self.last;
        let period_ns = frames_to_ns(s.frames as i64).max(1) as f64;
        // totals: streams that left plus streams playing
        let mut c = self.retired_totals;
        let mut lost = self.retired_lost;
        let mut expected = self.retired_expected;
        let mut streams = vec![];
        for v in self.slots.iter() {
            let Some(r) = v.report else { continue };
            c += r.counters;
            lost += r.rfc3550_lost;
            expected += r.rfc3550_expected;
            let source = registry.source_of_slot(r.slot).map(|(_, a)| a.to_string());
            streams.push(json!({
                "slot": r.slot,
                "ssrc": r.ssrc,
                "source": source,
                "gain_db": 20.0 * r.gain.max(1e-9).log10(),
                "packets_received": r.counters.packets_received,
                "played": r.counters.played,
                "lost": r.rfc3550_lost,
                "missing": r.counters.missing,
                "late": r.counters.late,
                "duplicates": r.counters.duplicates,
                "recovered_fec": r.counters.recovered_fec,
                "recovered_red": r.counters.recovered_red,
                "concealed_ms": r.counters.concealed_samples as f64 / 48.0,
                "concealment_events": r.counters.concealment_events,
                "interruptions": r.counters.interruptions,
                "underruns": r.counters.underruns,
                "tsm_operations": r.counters.tsm_operations,
                "ended": r.counters.ended,
                "jitter_ms": r.jitter_rtp / 48.0,
                "delay_ms": r.delay_ns.map(|d| d as f64 / 1e6),
                "target_delay_ms": r.target_delay_ns as f64 / 1e6,
                "rate": r.rate,
                "drift_ppm": r.drift * 1e6,
                "buffer_ms": r.buffered_samples as f64 / 48.0,
                "latency_ms": v.latency_ns.map(|l| l as f64 / 1e6),
                "latency_note": v.latency_ns.is_none().then(|| feedback.latency_note(r.ssrc)),
                "receiver_delay_ms": receiver_delay_ms(&r),
            }));
        }
        // the first stream (lowest slot) stands for "the" stream in single-stream use
        let first = self
            .slots
            .iter()
            .find_map(|v| v.report.map(|r| (r, v.latency_ns)));
        // after the streams have gone, a status line shows no latency; the summary the last
        let latency_ns = first
            .and_then(|f| f.1)
            .or(self.last_latency_ns.filter(|_| final_));
        let spread = self.latency_spread().filter(|_| final_);
        if let Some(f) = first {
            self.last_latency_note = Some(feedback.latency_note(f.0.ssrc));
            self.last_receiver_delay_ms = receiver_delay_ms(&f.0).or(self.last_receiver_delay_ms);
        }
        let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(net.dropped[r.index()])))
            .collect();
        let mut out = json!({
            "t": self.started.elapsed().as_secs_f64(),
            "final": final_,
            "mode": match cfg.mode {
                DelayMode::Fixed => "fixed",
                DelayMode::Adaptive { .. } => "adaptive",
            },
            "ssrc": first.map(|f| f.0.ssrc),
            "active_streams": s.active_streams,
            "streams": streams,
            "streams_started": registry.streams_started,
            "streams_refused": registry.streams_refused,
            "refused_packets": registry.refused_packets,
            "streams_timed_out": registry.streams_timed_out,
            "streams_released": registry.streams_released,
            "packets_received": c.packets_received,
            "payload_bytes": c.payload_bytes,
            "played": c.played,
            "missing": c.missing,
            "lost": lost,
            "expected": expected,
            "late": c.late,
            "duplicates": c.duplicates,
            "overflow": c.overflow,
            "recovered_fec": c.recovered_fec,
            "recovered_red": c.recovered_red,
            "concealed_samples": c.concealed_samples,
            "concealed_ms": c.concealed_samples as f64 / 48.0,
            "concealed_frames": c.concealed_frames,
            "concealment_events": c.concealment_events,
            "interruptions": c.interruptions,
            "underruns": c.underruns,
            "decode_errors": c.decode_errors,
            "seq_jumps": c.seq_jumps,
            "resyncs": c.resyncs,
            "reordered": c.reordered,
            "discarded": c.discarded,
            "tsm_operations": c.tsm_operations,
            "tsm_removed_samples": c.tsm_removed_samples,
            "tsm_inserted_samples": c.tsm_inserted_samples,
            "ended": c.ended,
            "jitter_ms": first.map(|f| f.0.jitter_rtp / 48.0),
            "delay_ms": first.and_then(|f| f.0.delay_ns).map(|d| d as f64 / 1e6),
            "target_delay_ms": first.map(|f| f.0.target_delay_ns as f64 / 1e6),
            "rate": first.map(|f| f.0.rate),
            "drift_ppm": first.map(|f| f.0.drift * 1e6),
            "buffer_ms": first.map(|f| f.0.buffered_samples as f64 / 48.0),
            "latency_ms": latency_ns.map(|l| l as f64 / 1e6),
            "latency_ns": latency_ns,
            "latency_note": match (latency_ns, first) {
                (Some(_), _) => None,
                (None, Some(f)) => Some(feedback.latency_note(f.0.ssrc)),
                (None, None) => self.last_latency_note.filter(|_| final_),
            },
            "latency_min_ms": spread.map(|s| s.0 as f64 / 1e6),
            "latency_median_ms": spread.map(|s| s.1 as f64 / 1e6),
            "latency_max_ms": spread.map(|s| s.2 as f64 / 1e6),
            "receiver_delay_ms": match first {
                Some(f) => receiver_delay_ms(&f.0),
                None => self.last_receiver_delay_ms.filter(|_| final_),
            },
            "receiver_reports_sent": feedback.reports_sent,
            "receiver_report_send_errors": feedback.report_send_errors,
            "output_start_unix_ns": self.output_start_unix_ns,
            "output_frames": s.out_frame + s.frames as u64,
            "period_frames": s.frames,
            "xruns": xruns,
            "clipped_samples": s.clipped_samples,
            "callback_p50": callback.0 as f64 / period_ns,
            "callback_p99": callback.1 as f64 / period_ns,
            "callback_max": callback.2 as f64 / period_ns,
            "render_ahead": self.callback.is_some(),
            "render_p50": render.0 as f64 / period_ns,
            "render_p99": render.1 as f64 / period_ns,
            "render_max": render.2 as f64 / period_ns,
            "render_underrun_frames": s.render_underrun_frames,
            "callback_queue_full": s.callback_queue_full,
            "datagrams": net.datagrams,
            "rtcp_packets": net.rtcp,
            "rtcp_malformed": net.rtcp_malformed,
            "sender_reports": net.sender_reports,
            "byes": net.byes,
            "dropped": dropped,
            "not_allowed": net.not_allowed,
            "rtcp_wrong_source": net.rtcp_wrong_source,
            "in_probation": net.in_probation,
            "receive_queue_full": net.queue_full,
            "socket_drops": net.socket_drops,
            "socket_buffer_bytes": net.socket_buffer_bytes,
            "control_queue_full": net.control_queue_full,
            "unrouted_packets": s.unrouted_packets,
            "retire_queue_full": s.retire_queue_full,
            "segments_dropped": s.segments_dropped,
            "snapshots_dropped": s.snapshots_dropped,
            "reports_dropped": s.reports_dropped,
        });
        // source validation's counters, beside the others: wrong_source, unvalidated,
        // probation_evicted, held_aside, jumps_rejected, restarts
        if let (Some(o), Ok(serde_json::Value::Object(source))) =
            (out.as_object_mut(), serde_json::to_value(net.source))
        {
            o.extend(source);
        }
        // SRTP's: the suite (null without), srtp_auth_failed, srtp_replayed, srtp_malformed
        if let (Some(o), Ok(serde_json::Value::Object(srtp))) =
            (out.as_object_mut(), serde_json::to_value(net.srtp))
        {
            o.insert("srtp".into(), net.srtp_suite.into());
            o.extend(srtp);
        }
        out
    }
}

/// The receiver's own share of the latency, from the arrival of the stream's fastest
/// packets to playback: what can be said without a comparable sender clock.
fn receiver_delay_ms(r: &StreamReport) -> Option<f64> {
    r.delay_ns.map(|d| (d + r.output_delay_ns) as f64 / 1e6)
}

fn write_segment(w: &mut BufWriter<File>, s: &StreamSegment) {
    let seg = &s.segment;
    let (source, seq) = match seg.source {
        SampleSource::Silence => ("silence", String::new()),
        SampleSource::Packet { seq } => ("packet", (seq as u16).to_string()),
        SampleSource::Fec { seq } => ("fec", (seq as u16).to_string()),
        SampleSource::Redundancy { seq } => ("red", (seq as u16).to_string()),
        SampleSource::Plc => ("plc", String::new()),
        SampleSource::FadingPlc { .. } => ("plc-fade", String::new()),
    };
    let ts = if seg.source == SampleSource::Silence {
        String::new()
    } else {
        (seg.rtp_ts as u32).to_string()
    };
    let _ = writeln!(
        w,
        "{},{},{},{},{},{}",
        s.ssrc, seg.out_frame, seg.frames, ts, source, seq
    );
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The run-long histogram gives the same percentiles as sorting every duration, within
    /// its 1 % bucket width, for durations from sub-microsecond to seconds.
    #[test]
    fn run_histogram_percentiles_within_one_percent() {
        let mut h = LogHistogram::new();
        let mut all = vec![];
        let mut x = 0x9e37_79b9u32;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            // log-uniform from ~500 ns to ~2 s
            let ns = (500.0 * (x as f64 / u32::MAX as f64 * 15.2).exp()) as u32;
            h.add(ns);
            all.push(ns);
        }
        all.sort_unstable();
        for p in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
            let exact = percentile(&all, p) as f64;
            let approx = h.percentile(p) as f64;
            if exact <= HIST_MIN_NS {
                assert!(approx <= HIST_MIN_NS, "p{p}: {approx} vs {exact}");
            } else {
                assert!(
                    approx >= exact && approx <= exact * 1.0101,
                    "p{p}: {approx} vs exact {exact}"
                );
            }
        }
        assert_eq!(LogHistogram::new().percentile(0.5), 0);
        // the extremes land in the first and last buckets
        h.add(0);
        h.add(u32::MAX);
        assert_eq!(h.percentile(1.0), u32::MAX);
    }
}
