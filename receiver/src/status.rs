//! What the receiver prints on stderr, read from its typed record ([`ReceiverStats`]):
//! the status line once a second (with a meter of the mix's level) and the summary when
//! it stops.

use patchcord_common::level::meter_text;
use patchcord_devices::app::StopReason;

use crate::stats::ReceiverStats;

pub fn print_status(s: &ReceiverStats, kbps: f64) {
    let hint = s
        .hint
        .as_deref()
        .map(|h| format!(" | hint: {h}"))
        .unwrap_or_default();
    patchcord_devices::say!(
        "recv {:>6.1}s | streams {} | packets {:>7} | lost {} | late {} | concealed {:.1} ms | delay {:.1}/{:.1} ms | underruns {} | xruns {} | {:.1} kb/s | latency {} | bad {} | foreign {} | cb p99 {:.0}% | mix {}{hint}",
        s.t,
        s.active_streams,
        s.packets_received,
        s.lost,
        s.late,
        s.concealed_ms,
        s.delay_ms.unwrap_or(0.0),
        s.target_delay_ms.unwrap_or(0.0),
        s.underruns,
        s.xruns,
        kbps,
        match (s.latency_ms, s.receiver_delay_ms) {
            (Some(l), _) => format!("{l:.2} ms"),
            (None, Some(d)) => format!("? (receiver side {d:.1} ms)"),
            (None, None) if s.active_streams == 0 => "- (no stream)".into(),
            (None, None) => "?".into(),
        },
        s.dropped_total(),
        s.foreign(),
        s.callback_p99 * 100.0,
        meter_text(s.mix_rms_dbfs, s.mix_peak_dbfs, s.mix_peak_dbfs >= 0.0),
    );
}

pub fn print_summary(s: &ReceiverStats, reason: StopReason) {
    patchcord_devices::say!(
        "patchcord-recv: stopped ({}) after {:.1} s",
        match reason {
            StopReason::Interrupted => "interrupted",
            StopReason::Terminated => "terminated",
            StopReason::DurationElapsed => "duration reached",
        },
        s.t
    );
    patchcord_devices::say!(
        "  streams: {} started, {} refused ({} of them for --load-limit), {} shed for --load-limit, {} timed out",
        s.streams_started,
        s.streams_refused,
        s.refused_for_load,
        s.streams_shed,
        s.streams_timed_out
    );
    let v = &s.source;
    patchcord_devices::say!(
        "  sources: {} datagrams not allowed (--allow), {} from the wrong source (RTCP {}), {} never validated (probation; {} candidates evicted), {} held aside as jumps ({} rejected), {} restarts",
        s.not_allowed,
        v.wrong_source,
        s.rtcp_wrong_source,
        v.unvalidated,
        v.probation_evicted,
        v.held_aside,
        v.jumps_rejected,
        v.restarts
    );
    if let Some(suite) = s.srtp {
        let r = &s.srtp_refused;
        patchcord_devices::say!(
            "  SRTP {suite}: {} failed authentication (forged, another key, or plain RTP), {} replayed, {} malformed",
            r.srtp_auth_failed,
            r.srtp_replayed,
            r.srtp_malformed
        );
    }
    patchcord_devices::say!(
        "  packets received {}, played {}, discarded {} (audio older than the chosen delay at a stream start, or a sender restart), late {}, duplicates {}",
        s.packets_received, s.played, s.discarded, s.late, s.duplicates
    );
    patchcord_devices::say!(
        "  lost {} (RFC 3550), missing at playout {}, recovered by FEC {} / redundancy {}",
        s.lost,
        s.missing,
        s.recovered_fec,
        s.recovered_red
    );
    patchcord_devices::say!(
        "  concealed {:.1} ms in {} events ({} interruptions >= 150 ms), underruns {}, streams ended {}, pitch-period splices {}, xruns {}, resyncs {}, bad datagrams {}, socket drops {}, jitter {:.2} ms",
        s.concealed_ms,
        s.concealment_events,
        s.interruptions,
        s.underruns,
        s.ended,
        s.tsm_operations,
        s.xruns,
        s.resyncs,
        s.dropped_total(),
        s.socket_drops.map_or("null".to_string(), |d| d.to_string()),
        s.jitter_ms.unwrap_or(0.0)
    );
    match s.latency_ms {
        Some(l) => patchcord_devices::say!(
            "  end-to-end latency (capture -> playback, from RTCP SR), per second while playing: min {:.2} / median {:.2} / max {:.2} ms, last {l:.2} ms ({} jitter buffer)",
            s.latency_min_ms.unwrap_or(0.0),
            s.latency_median_ms.unwrap_or(0.0),
            s.latency_max_ms.unwrap_or(0.0),
            s.mode
        ),
        None => patchcord_devices::say!(
            "  end-to-end latency: not measured ({}){}",
            s.latency_note.unwrap_or("no stream"),
            s.receiver_delay_ms
                .map(|d| format!("; receiver side (arrival of the fastest packets -> playback): {d:.2} ms"))
                .unwrap_or_default()
        ),
    }
    patchcord_devices::say!(
        "  RTCP: {} sender reports received, {} receiver reports sent",
        s.sender_reports,
        s.receiver_reports_sent
    );
    patchcord_devices::say!("  output: {} samples bent by the soft clipper", s.clipped_samples);
    patchcord_devices::say!(
        "  audio callback: p50 {:.1}%, p99 {:.1}%, max {:.1}% of the {}-frame period",
        s.callback_p50 * 100.0,
        s.callback_p99 * 100.0,
        s.callback_max * 100.0,
        s.period_frames
    );
    if s.render_ahead {
        patchcord_devices::say!(
            "  render thread (--render-ahead): p50 {:.1}%, p99 {:.1}%, max {:.1}% of the period; {} frames played as silence because it was late",
            s.render_p50 * 100.0,
            s.render_p99 * 100.0,
            s.render_max * 100.0,
            s.render_underrun_frames
        );
    }
}
