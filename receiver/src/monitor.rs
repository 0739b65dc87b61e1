//! The control thread's view of the audio thread: drains the snapshot, segment and
//! retired-stream queues, measures end-to-end latency and callback load, and renders
//! the stats as JSON.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::time::Instant;

use patchcord_common::latency::CaptureClock;
use patchcord_common::playout::{frames_to_ns, PlayoutConfig, SampleSource, Segment, StreamPlayout};
use patchcord_common::rtp::DropReason;
use serde_json::json;

use crate::output::Snapshot;

/// Counters of the network side.
#[derive(Default)]
pub struct NetCounters {
    pub datagrams: u64,
    pub rtcp: u64,
    pub rtcp_malformed: u64,
    pub sender_reports: u64,
    pub byes: u64,
    pub dropped: [u64; DropReason::ALL.len()],
    pub queue_full: u64,
    pub other_ssrc: u64,
    pub streams_started: u64,
}

pub struct Monitor {
    pub snapshots: rtrb::Consumer<Snapshot>,
    pub retired: rtrb::Consumer<Box<StreamPlayout>>,
    pub segments: Option<rtrb::Consumer<Segment>>,
    pub timeline_out: Option<BufWriter<File>>,
    pending_silence: Option<Segment>,
    pub last: Snapshot,
    /// Minimum of (playback instant − frame / rate) over the whole run: the wall-clock
    /// instant of output frame 0, exact when the device clock is the host clock (virtual
    /// devices); used to align the output WAV with the input in tests.
    output_start_unix_ns: Option<i64>,
    /// Callback durations of the current second and of the whole run.
    callback_ns: Vec<u32>,
    callback_ns_run: Vec<u32>,
    callback_ns_max: u32,
    /// Minimum over the current second of the per-period end-to-end latency (the callback
    /// reads the clock a little after the device's instant, never before), and the last
    /// complete second's value.
    latency_min: Option<i64>,
    pub latency_ns: Option<i64>,
    pub started: Instant,
}

impl Monitor {
    pub fn new(
        snapshots: rtrb::Consumer<Snapshot>,
        retired: rtrb::Consumer<Box<StreamPlayout>>,
        segments: Option<rtrb::Consumer<Segment>>,
        timeline_out: Option<BufWriter<File>>,
    ) -> Self {
        Monitor {
            snapshots,
            retired,
            segments,
            timeline_out,
            pending_silence: None,
            last: Snapshot::default(),
            output_start_unix_ns: None,
            callback_ns: Vec::with_capacity(1 << 12),
            callback_ns_run: Vec::with_capacity(1 << 16),
            callback_ns_max: 0,
            latency_min: None,
            latency_ns: None,
            started: Instant::now(),
        }
    }

    /// Take everything the audio thread has reported.
    pub fn drain(&mut self, clocks: &HashMap<u32, CaptureClock>) {
        while let Ok(s) = self.snapshots.pop() {
            let start = s.playback_unix_ns - frames_to_ns(s.out_frame as i64);
            self.output_start_unix_ns = Some(self.output_start_unix_ns.map_or(start, |m| m.min(start)));
            if let (Some(ssrc), Some(ts)) = (s.ssrc, s.rtp_ts_at_frame) {
                if let Some(c) = clocks.get(&ssrc) {
                    let l = c.latency_ns(ts, s.playback_unix_ns);
                    self.latency_min = Some(self.latency_min.map_or(l, |m| m.min(l)));
                }
            }
            if self.callback_ns.len() < 1 << 16 {
                self.callback_ns.push(s.callback_ns);
            }
            if self.callback_ns_run.len() < 1 << 24 {
                self.callback_ns_run.push(s.callback_ns);
            }
            self.callback_ns_max = self.callback_ns_max.max(s.callback_ns);
            self.last = s;
        }
        while let Ok(old) = self.retired.pop() {
            drop(old);
        }
        if let (Some(rx), Some(w)) = (self.segments.as_mut(), self.timeline_out.as_mut()) {
            while let Ok(seg) = rx.pop() {
                // Zero-length segments only record decoder-state decodes: not audio.
                if seg.frames == 0 {
                    continue;
                }
                // Merge runs of silence; write everything else as it is.
                if seg.source == SampleSource::Silence {
                    match self.pending_silence.as_mut() {
                        Some(p) if p.out_frame + p.frames as u64 == seg.out_frame => p.frames += seg.frames,
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

    /// Close the current one-second measurement window.
    pub fn end_second(&mut self) {
        if let Some(l) = self.latency_min.take() {
            self.latency_ns = Some(l);
        }
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
        xruns: u64,
        cfg: &PlayoutConfig,
        final_: bool,
    ) -> serde_json::Value {
        let s = &self.last;
        let durations = if final_ {
            &mut self.callback_ns_run
        } else {
            &mut self.callback_ns
        };
        durations.sort_unstable();
        let period_ns = frames_to_ns(s.frames as i64).max(1) as f64;
        let (p50, p99) = (percentile(durations, 0.5), percentile(durations, 0.99));
        if !final_ {
            self.callback_ns.clear();
        }
        let c = &s.counters;
        let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
            .iter()
            .map(|r| (r.name().to_string(), json!(net.dropped[r.index()])))
            .collect();
        json!({
            "t": self.started.elapsed().as_secs_f64(),
            "final": final_,
            "ssrc": s.ssrc,
            "packets_received": c.packets_received,
            "payload_bytes": c.payload_bytes,
            "played": c.played,
            "missing": c.missing,
            "lost": s.rfc3550_lost,
            "expected": s.rfc3550_expected,
            "late": c.late,
            "duplicates": c.duplicates,
            "overflow": c.overflow,
            "recovered_fec": c.recovered_fec,
            "concealed_samples": c.concealed_samples,
            "concealed_ms": c.concealed_samples as f64 / 48.0,
            "concealment_events": c.concealment_events,
            "underruns": c.underruns,
            "decode_errors": c.decode_errors,
            "seq_jumps": c.seq_jumps,
            "resyncs": c.resyncs,
            "delay_corrections": c.delay_corrections,
            "skipped_samples": c.skipped_samples,
            "inserted_samples": c.inserted_samples,
            "reordered": c.reordered,
            "discarded": c.discarded,
            "recovered_red": c.recovered_red,
            "concealed_frames": c.concealed_frames,
            "interruptions": c.interruptions,
            "target_delay_ms": s.target_delay_ns as f64 / 1e6,
            "delay_ms": s.delay_ns.map(|d| d as f64 / 1e6),
            "rate": s.rate,
            "drift_ppm": s.drift * 1e6,
            "jitter_ms": s.jitter_rtp / 48.0,
            "buffer_ms": s.buffered_samples as f64 / 48.0,
            "mode": match cfg.mode {
                patchcord_common::playout::DelayMode::Fixed => "fixed",
                patchcord_common::playout::DelayMode::Adaptive { .. } => "adaptive",
            },
            "latency_ms": self.latency_ns.map(|l| l as f64 / 1e6),
            "latency_ns": self.latency_ns,
            "output_start_unix_ns": self.output_start_unix_ns,
            "output_frames": s.out_frame + s.frames as u64,
            "period_frames": s.frames,
            "xruns": xruns,
            "callback_p50": p50 as f64 / period_ns,
            "callback_p99": p99 as f64 / period_ns,
            "callback_max": self.callback_ns_max as f64 / period_ns,
            "datagrams": net.datagrams,
            "rtcp_packets": net.rtcp,
            "rtcp_malformed": net.rtcp_malformed,
            "sender_reports": net.sender_reports,
            "byes": net.byes,
            "dropped": dropped,
            "receive_queue_full": net.queue_full,
            "other_ssrc": net.other_ssrc,
            "streams_started": net.streams_started,
            "unrouted_packets": s.unrouted_packets,
            "segments_dropped": s.segments_dropped,
            "snapshots_dropped": s.snapshots_dropped,
        })
    }
}

fn write_segment(w: &mut BufWriter<File>, s: &Segment) {
    let (source, seq) = match s.source {
        SampleSource::Silence => ("silence", String::new()),
        SampleSource::Packet { seq } => ("packet", (seq as u16).to_string()),
        SampleSource::Fec { seq } => ("fec", (seq as u16).to_string()),
        SampleSource::Redundancy { seq } => ("red", (seq as u16).to_string()),
        SampleSource::Plc => ("plc", String::new()),
    };
    let ts = if s.source == SampleSource::Silence {
        String::new()
    } else {
        (s.rtp_ts as u32).to_string()
    };
    let _ = writeln!(w, "{},{},{},{},{}", s.out_frame, s.frames, ts, source, seq);
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
