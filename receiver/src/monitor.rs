//! The control thread's view of the audio thread. Every 20 ms it drains what the callback
//! handed out: period snapshots (render time, the mix's levels, the output timeline's
//! start), round-robin stream reports (counters, delay, levels, the reading for the
//! latency), retired streams (their final counters join the totals, then they are freed
//! here, never on the audio thread) and, with `--timeline`, played segments. Once a second
//! it closes the measurement window and makes the typed record, [`ReceiverStats`].
//!
//! The jobs it delegates: latency second by second (`latency.rs`), duration percentiles
//! (`durations.rs`), the CSV timeline (`timeline.rs`), the record's shape (`stats.rs`).

use std::collections::HashMap;
use std::time::Instant;

use patchcord_common::latency::CaptureClock;
use patchcord_common::level::Levels;
use patchcord_common::playout::{DelayMode, PlayoutConfig};
use patchcord_common::rtp::DropReason;
use patchcord_common::stats::StreamCounters;
use patchcord_common::time::frames_to_ns;
use patchcord_web::HttpCounters;

use crate::durations::Durations;
use crate::feedback::{Feedback, Reception};
use crate::latency::LatencyLog;
use crate::net_counters::NetCounters;
use crate::output::{Retired, Snapshot, StreamReport};
use crate::registry::Registry;
use crate::stats::{unix_ms, LiveLevels, LiveStreamLevels, ReceiverStats, StreamStats, SCHEMA};
use crate::timeline::Timeline;

/// What the monitor knows of the stream in one slot.
#[derive(Default, Clone, Copy)]
struct SlotView {
    report: Option<StreamReport>,
    /// Levels of the second under way, and of the last complete one.
    levels: Levels,
    last_levels: Levels,
    /// Levels since the meters were last read ([`Monitor::live_levels`]).
    live: Levels,
    /// Decoded samples at full scale since the stream started.
    clipped: u64,
}

/// Everything the record is made of besides the monitor's own view.
pub struct Context<'a> {
    pub net: &'a NetCounters,
    pub registry: &'a Registry,
    pub feedback: &'a Feedback,
    pub xruns: u64,
    pub cfg: &'a PlayoutConfig,
    pub hint: Option<&'a str>,
    /// What `--http` refused so far (zeros without it).
    pub http: HttpCounters,
}

pub struct Monitor {
    snapshots: rtrb::Consumer<Snapshot>,
    reports: rtrb::Consumer<StreamReport>,
    retired: rtrb::Consumer<Retired>,
    timeline: Option<Timeline>,
    pub last: Snapshot,
    slots: Vec<SlotView>,
    /// Output levels of the second under way, and of the last complete one, and since the
    /// meters were last read.
    mix_levels: Levels,
    last_mix_levels: Levels,
    live_mix: Levels,
    /// Counters of streams that have left (read from the stream before it is freed).
    retired_totals: StreamCounters,
    retired_lost: i64,
    retired_expected: u64,
    latency: LatencyLog,
    /// Why the first stream had no latency, and the receiver's share of it, for the
    /// summary after the streams have gone.
    last_latency_note: Option<&'static str>,
    last_receiver_delay_ms: Option<f64>,
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

impl Monitor {
    pub fn new(
        snapshots: rtrb::Consumer<Snapshot>,
        reports: rtrb::Consumer<StreamReport>,
        retired: rtrb::Consumer<Retired>,
        timeline: Option<Timeline>,
        max_streams: usize,
        callback_durations: Option<rtrb::Consumer<u32>>,
    ) -> Self {
        Monitor {
            snapshots,
            reports,
            retired,
            timeline,
            last: Snapshot::default(),
            slots: vec![SlotView::default(); max_streams],
            mix_levels: Levels::default(),
            last_mix_levels: Levels::default(),
            live_mix: Levels::default(),
            retired_totals: StreamCounters::default(),
            retired_lost: 0,
            retired_expected: 0,
            latency: LatencyLog::new(max_streams),
            last_latency_note: None,
            last_receiver_delay_ms: None,
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
            registry.load.observe(s.frames, s.render_ns, s.active_streams);
            self.mix_levels.merge(&s.mix_levels);
            self.live_mix.merge(&s.mix_levels);
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
            let slot = r.slot as usize;
            let Some(v) = self.slots.get_mut(slot) else {
                continue;
            };
            if v.report.is_some_and(|old| old.ssrc != r.ssrc) {
                *v = SlotView::default();
                self.latency.forget(slot);
            }
            if let (Some(ts), Some(c)) = (r.rtp_ts_at_frame, clocks.get(&r.ssrc)) {
                self.latency.reading(slot, c.latency_ns(ts, r.playback_unix_ns));
            }
            v.levels.merge(&r.levels);
            v.live.merge(&r.levels);
            v.clipped += r.levels.clipped;
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
            self.latency.forget(old.slot as usize);
            registry.release(old.slot);
            drop(old);
        }
        if let Some(t) = self.timeline.as_mut() {
            t.drain();
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
        let slots = &self.slots;
        self.latency.end_second(|i| slots[i].report.is_some());
        for v in self.slots.iter_mut() {
            v.last_levels = std::mem::take(&mut v.levels);
        }
        self.last_mix_levels = std::mem::take(&mut self.mix_levels);
    }

    /// The meters' levels since they were last read (for the dashboard, ten times a
    /// second): each playing stream's, and the mix's.
    pub fn live_levels(&mut self) -> LiveLevels {
        let streams = self
            .slots
            .iter_mut()
            .filter_map(|v| {
                let l = std::mem::take(&mut v.live);
                v.report.map(|r| LiveStreamLevels {
                    ssrc: r.ssrc,
                    peak_dbfs: l.peak_dbfs(),
                    rms_dbfs: l.rms_dbfs(),
                })
            })
            .collect();
        let mix = std::mem::take(&mut self.live_mix);
        LiveLevels {
            unix_ms: unix_ms(),
            streams,
            mix_peak_dbfs: mix.peak_dbfs(),
            mix_rms_dbfs: mix.rms_dbfs(),
        }
    }

    pub fn finish_timeline(&mut self) -> std::io::Result<()> {
        match self.timeline.as_mut() {
            Some(t) => t.finish(),
            None => Ok(()),
        }
    }

    /// The record of the last second (`final_`: the summary of the whole run).
    pub fn stats(&mut self, cx: &Context, final_: bool) -> ReceiverStats {
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
        for (slot, v) in self.slots.iter().enumerate() {
            let Some(r) = v.report else { continue };
            c += r.counters;
            lost += r.rfc3550_lost;
            expected += r.rfc3550_expected;
            let latency_ns = self.latency.of_slot(slot);
            streams.push(StreamStats {
                slot: r.slot,
                ssrc: r.ssrc,
                source: cx.registry.source_of_slot(r.slot).map(|(_, a)| a.to_string()),
                gain_db: 20.0 * (r.gain.max(1e-9) as f64).log10(),
                packets_received: r.counters.packets_received,
                played: r.counters.played,
                lost: r.rfc3550_lost,
                missing: r.counters.missing,
                late: r.counters.late,
                duplicates: r.counters.duplicates,
                recovered_fec: r.counters.recovered_fec,
                recovered_red: r.counters.recovered_red,
                concealed_ms: r.counters.concealed_samples as f64 / 48.0,
                concealment_events: r.counters.concealment_events,
                interruptions: r.counters.interruptions,
                underruns: r.counters.underruns,
                tsm_operations: r.counters.tsm_operations,
                ended: r.counters.ended,
                jitter_ms: r.jitter_rtp / 48.0,
                delay_ms: r.delay_ns.map(|d| d as f64 / 1e6),
                target_delay_ms: r.target_delay_ns as f64 / 1e6,
                rate: r.rate,
                drift_ppm: r.drift * 1e6,
                buffer_ms: r.buffered_samples as f64 / 48.0,
                latency_ms: latency_ns.map(|l| l as f64 / 1e6),
                latency_note: latency_ns.is_none().then(|| cx.feedback.latency_note(r.ssrc)),
                receiver_delay_ms: receiver_delay_ms(&r),
                peak_dbfs: v.last_levels.peak_dbfs(),
                rms_dbfs: v.last_levels.rms_dbfs(),
                clipped_samples: v.clipped,
            });
        }
        // the first stream (lowest slot) stands for "the" stream in single-stream use
        let first = self
            .slots
            .iter()
            .enumerate()
            .find_map(|(i, v)| v.report.map(|r| (r, self.latency.of_slot(i))));
        // after the streams have gone, a status line shows no latency; the summary the last
        let latency_ns = first.and_then(|f| f.1).or(self.latency.last().filter(|_| final_));
        let spread = self.latency.spread().filter(|_| final_);
        if let Some(f) = first {
            self.last_latency_note = Some(cx.feedback.latency_note(f.0.ssrc));
            self.last_receiver_delay_ms = receiver_delay_ms(&f.0).or(self.last_receiver_delay_ms);
        }
        let net = cx.net;
        let ms = |ns: i64| ns as f64 / 1e6;
        ReceiverStats {
            schema: SCHEMA,
            program: "patchcord-recv",
            unix_ms: unix_ms(),
            t: self.started.elapsed().as_secs_f64(),
            final_,
            mode: match cx.cfg.mode {
                DelayMode::Fixed => "fixed",
                DelayMode::Adaptive { .. } => "adaptive",
            },
            ssrc: first.map(|f| f.0.ssrc),
            active_streams: s.active_streams,
            streams,
            streams_started: cx.registry.streams_started,
            streams_refused: cx.registry.streams_refused,
            refused_for_load: cx.registry.refused_for_load,
            streams_shed: cx.registry.streams_shed,
            load: cx.registry.load.load(),
            refused_packets: cx.registry.refused_packets,
            streams_timed_out: cx.registry.streams_timed_out,
            streams_released: cx.registry.streams_released,
            packets_received: c.packets_received,
            payload_bytes: c.payload_bytes,
            played: c.played,
            missing: c.missing,
            lost,
            expected,
            late: c.late,
            duplicates: c.duplicates,
            overflow: c.overflow,
            recovered_fec: c.recovered_fec,
            recovered_red: c.recovered_red,
            concealed_samples: c.concealed_samples,
            concealed_ms: c.concealed_samples as f64 / 48.0,
            concealed_frames: c.concealed_frames,
            concealment_events: c.concealment_events,
            interruptions: c.interruptions,
            underruns: c.underruns,
            decode_errors: c.decode_errors,
            seq_jumps: c.seq_jumps,
            resyncs: c.resyncs,
            reordered: c.reordered,
            discarded: c.discarded,
            tsm_operations: c.tsm_operations,
            tsm_removed_samples: c.tsm_removed_samples,
            tsm_inserted_samples: c.tsm_inserted_samples,
            ended: c.ended,
            jitter_ms: first.map(|f| f.0.jitter_rtp / 48.0),
            delay_ms: first.and_then(|f| f.0.delay_ns).map(ms),
            target_delay_ms: first.map(|f| ms(f.0.target_delay_ns)),
            rate: first.map(|f| f.0.rate),
            drift_ppm: first.map(|f| f.0.drift * 1e6),
            buffer_ms: first.map(|f| f.0.buffered_samples as f64 / 48.0),
            latency_ms: latency_ns.map(ms),
            latency_ns,
            latency_note: match (latency_ns, first) {
                (Some(_), _) => None,
                (None, Some(f)) => Some(cx.feedback.latency_note(f.0.ssrc)),
                (None, None) => self.last_latency_note.filter(|_| final_),
            },
            latency_min_ms: spread.map(|s| ms(s.0)),
            latency_median_ms: spread.map(|s| ms(s.1)),
            latency_max_ms: spread.map(|s| ms(s.2)),
            receiver_delay_ms: match first {
                Some(f) => receiver_delay_ms(&f.0),
                None => self.last_receiver_delay_ms.filter(|_| final_),
            },
            receiver_reports_sent: cx.feedback.reports_sent,
            receiver_report_send_errors: cx.feedback.report_send_errors,
            output_start_unix_ns: self.output_start_unix_ns,
            output_frames: s.out_frame + s.frames as u64,
            period_frames: s.frames,
            xruns: cx.xruns,
            clipped_samples: s.clipped_samples,
            mix_peak_dbfs: self.last_mix_levels.peak_dbfs(),
            mix_rms_dbfs: self.last_mix_levels.rms_dbfs(),
            callback_p50: callback.0 as f64 / period_ns,
            callback_p99: callback.1 as f64 / period_ns,
            callback_max: callback.2 as f64 / period_ns,
            render_ahead: self.callback.is_some(),
            render_p50: render.0 as f64 / period_ns,
            render_p99: render.1 as f64 / period_ns,
            render_max: render.2 as f64 / period_ns,
            render_underrun_frames: s.render_underrun_frames,
            callback_queue_full: s.callback_queue_full,
            datagrams: net.datagrams,
            rtcp_packets: net.rtcp,
            rtcp_malformed: net.rtcp_malformed,
            sender_reports: net.sender_reports,
            byes: net.byes,
            dropped: DropReason::ALL
                .iter()
                .map(|r| (r.name(), net.dropped[r.index()]))
                .collect(),
            not_allowed: net.not_allowed,
            rtcp_wrong_source: net.rtcp_wrong_source,
            in_probation: net.in_probation,
            receive_queue_full: net.queue_full,
            socket_drops: net.socket_drops,
            socket_buffer_bytes: net.socket_buffer_bytes,
            control_queue_full: net.control_queue_full,
            unrouted_packets: s.unrouted_packets,
            retire_queue_full: s.retire_queue_full,
            segments_dropped: s.segments_dropped,
            snapshots_dropped: s.snapshots_dropped,
            reports_dropped: s.reports_dropped,
            source: net.source,
            srtp: net.srtp_suite,
            srtp_refused: net.srtp,
            http: cx.http,
            hint: cx.hint.map(str::to_string),
        }
    }
}

/// The receiver's own share of the latency, from the arrival of the stream's fastest
/// packets to playback: what can be said without a comparable sender clock.
fn receiver_delay_ms(r: &StreamReport) -> Option<f64> {
    r.delay_ns.map(|d| (d + r.output_delay_ns) as f64 / 1e6)
}
