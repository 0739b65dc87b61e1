//! The output side: the cpal output callback pulls every stream's playout and mixes them.
//! The output device clock is the master clock: its frame counter is the receiver's
//! sample-accurate time base.
//!
//! Everything the callback touches was allocated before it runs. New streams arrive as
//! boxes through the control queue into a fixed table of `--max-streams` slots; streams
//! that leave fade out over 10 ms and go back through another queue, to be freed by the
//! control thread. Packets arrive in preallocated slots, addressed to a stream slot by the
//! network side. Statistics leave through queues; when one is full the item is dropped
//! *and counted*. The level meters (peak, energy, clips: `patchcord_common::level`) are
//! measured here in the same pass, on each stream's decoded block and on the output, and
//! leave with the stream reports and the period snapshots.
//!
//! # Decoding in the callback, or in a render thread
//! By default each stream is decoded inside the callback, just in time, without a queue of
//! decoded audio in between: no added latency. With `--render-ahead N` the same
//! [`OutputSide::render`] runs in a render thread N periods ahead and the callback only
//! copies (`ahead.rs`). Measured (BENCHMARKS.md §3, 10 ms periods, mono 32 kb/s streams,
//! 2-core VM):
//! - per stream, the whole cost (jitter buffer, decode, rate stage, mix) is 1.01–1.04× the
//!   raw `opus_decode` in fixed mode and 1.10–1.20× in adaptive mode: a worker cannot make
//!   the work smaller, only move it;
//! - up to 64 streams the callback's p99 stays under 18 % of the period: rendering in the
//!   callback is right, and the default;
//! - at 256 streams the callback's p99 is 53 % (fixed) and 60 % (adaptive), over the 50 %
//!   budget; with `--render-ahead 2` the callback's p99 is 0.24–0.29 % and the render
//!   thread (p99 52–62 %) has two periods per block: no render underrun in any run.
//!
//! So: many streams, or a shared audio server where a long callback hurts every client
//! (JACK), call for `--render-ahead 2`; `render_p99` and `callback_p99` in the stats say
//! which side carries the work.

use std::time::Instant;

use cpal::OutputCallbackInfo;
use patchcord_common::level::Levels;
use patchcord_common::mixer::{Mixer, StreamGain};
use patchcord_common::playout::{Segment, SegmentSink, StreamPlayout};
use patchcord_common::red::RedInfo;
use patchcord_common::rtp::{RtpOpusHeader, MAX_DATAGRAM_LEN};
use patchcord_common::stats::StreamCounters;
use patchcord_devices::clock::HostClock;

/// How long after the callback the device plays its first frame, from cpal's timestamps.
pub fn playback_delay_ns(info: &OutputCallbackInfo) -> i64 {
    let ts = info.timestamp();
    ts.playback.saturating_duration_since(ts.callback).as_nanos() as i64
}

/// One datagram on its way from the network task to the output callback.
#[derive(Clone, Copy)]
pub struct PacketSlot {
    /// Stream slot the network side assigned to this SSRC.
    pub slot: u16,
    /// An RTCP BYE for `header.ssrc` rather than a packet.
    pub bye: bool,
    /// Source validation confirmed a jump at this packet: the stream starts a new sequence.
    pub restart: bool,
    pub header: RtpOpusHeader,
    /// RFC 2198 redundant blocks carried by the packet (empty for plain Opus).
    pub red: RedInfo,
    pub arrival_unix_ns: i64,
    pub len: usize,
    pub data: [u8; MAX_DATAGRAM_LEN],
}

impl PacketSlot {
    /// An RTCP BYE from `ssrc`, for the stream in `slot`.
    pub fn bye(slot: u16, ssrc: u32) -> Self {
        PacketSlot {
            slot,
            bye: true,
            restart: false,
            header: RtpOpusHeader {
                marker: false,
                payload_type: 0,
                sequence: 0,
                timestamp: 0,
                ssrc,
                payload_offset: 0,
                payload_len: 0,
                duration_samples: 0,
            },
            red: RedInfo::default(),
            arrival_unix_ns: 0,
            len: 0,
            data: [0; MAX_DATAGRAM_LEN],
        }
    }

    pub fn datagram(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// Commands from the control thread to the callback.
pub enum Control {
    /// A new stream for an empty slot (all its allocation was done by the control thread).
    Add {
        slot: u16,
        stream: Box<StreamPlayout>,
        gain: f32,
    },
    /// Fade out the stream in `slot` (if it is still `ssrc`) and hand it back.
    Remove { slot: u16, ssrc: u32 },
}

/// A stream handed back by the callback, to be freed by the control thread.
pub struct Retired {
    pub slot: u16,
    pub stream: Box<StreamPlayout>,
}

/// What the callback reports after each period.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Output frame index of the first frame of this period.
    pub out_frame: u64,
    pub frames: u32,
    /// Host-clock instant (Unix ns) the device will play `out_frame`; unknown for what the
    /// render thread renders before the device's first callback.
    pub playback_unix_ns: Option<i64>,
    /// Time spent rendering this period (decode, mix): the whole callback when it renders,
    /// the render thread's work with `--render-ahead`.
    pub render_ns: u32,
    /// Frames the output callback had to fill with silence because the render thread was
    /// behind (`--render-ahead` only; cumulative).
    pub render_underrun_frames: u64,
    /// `--render-ahead`: reports the copying callback could not queue (cumulative).
    pub callback_queue_full: u64,
    pub active_streams: u32,
    /// Packets addressed to a slot that holds no stream of that SSRC.
    pub unrouted_packets: u64,
    pub retire_queue_full: u64,
    pub segments_dropped: u64,
    pub snapshots_dropped: u64,
    pub reports_dropped: u64,
    pub clipped_samples: u64,
    /// Levels of this period's output (the mix after its soft clipper).
    pub mix_levels: Levels,
}

/// One stream's state, reported round-robin (a few streams per period).
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamReport {
    pub slot: u16,
    pub ssrc: u32,
    /// When the next period's first frame plays.
    pub playback_unix_ns: i64,
    /// RTP timestamp played at `out_frame`, if the stream is playing.
    pub rtp_ts_at_frame: Option<u32>,
    pub buffered_samples: u64,
    pub target_delay_ns: i64,
    pub delay_ns: Option<i64>,
    pub rate: f64,
    pub drift: f64,
    pub gain: f32,
    pub counters: StreamCounters,
    pub rfc3550_expected: u64,
    pub rfc3550_lost: i64,
    /// RFC 3550 extended highest sequence number received (for receiver reports).
    pub extended_max_seq: u64,
    pub jitter_rtp: f64,
    /// From this period's rendering to its playback, ns: with `delay_ns`, the receiver's
    /// own share of the latency (arrival of the fastest packets → playback).
    pub output_delay_ns: i64,
    /// Levels of the stream's decoded audio (before its gain) since its previous report.
    pub levels: Levels,
}

/// Streams reported per period: 256 streams at 375 periods/s are each refreshed ~6×/s.
const REPORTS_PER_PERIOD: usize = 4;

/// A played segment, tagged with its stream (for `--timeline`).
#[derive(Clone, Copy, Debug)]
pub struct StreamSegment {
    pub ssrc: u32,
    pub segment: Segment,
}

struct QueueSink<'a> {
    queue: Option<&'a mut rtrb::Producer<StreamSegment>>,
    ssrc: u32,
    dropped: &'a mut u64,
}

impl SegmentSink for QueueSink<'_> {
    fn segment(&mut self, segment: &Segment) {
        if let Some(q) = self.queue.as_deref_mut() {
            if q.push(StreamSegment {
                ssrc: self.ssrc,
                segment: *segment,
            })
            .is_err()
            {
                *self.dropped += 1;
            }
        }
    }
}

pub struct StreamSlot {
    pub stream: Option<Box<StreamPlayout>>,
    pub gain: StreamGain,
    /// Levels of the stream's decoded audio since its last report.
    pub levels: Levels,
}

pub struct OutputSide {
    pub packets: rtrb::Consumer<PacketSlot>,
    pub control: rtrb::Consumer<Control>,
    pub retired: rtrb::Producer<Retired>,
    pub snapshots: rtrb::Producer<Snapshot>,
    pub reports: rtrb::Producer<StreamReport>,
    pub segments: Option<rtrb::Producer<StreamSegment>>,
    pub slots: Vec<StreamSlot>,
    pub mixer: Mixer,
    pub scratch: Vec<f32>,
    pub channels: usize,
    pub clock: HostClock,
    pub out_frame: u64,
    pub report_cursor: usize,
    pub unrouted_packets: u64,
    pub retire_queue_full: u64,
    pub segments_dropped: u64,
    pub snapshots_dropped: u64,
    pub reports_dropped: u64,
    pub render_underrun_frames: u64,
    pub callback_queue_full: u64,
}

impl OutputSide {
    /// Everything the callback will ever need, for up to `max_streams` streams and
    /// periods of up to `max_frames` frames.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        packets: rtrb::Consumer<PacketSlot>,
        control: rtrb::Consumer<Control>,
        retired: rtrb::Producer<Retired>,
        snapshots: rtrb::Producer<Snapshot>,
        reports: rtrb::Producer<StreamReport>,
        segments: Option<rtrb::Producer<StreamSegment>>,
        max_streams: usize,
        channels: usize,
        max_frames: usize,
        clock: HostClock,
    ) -> Self {
        OutputSide {
            packets,
            control,
            retired,
            snapshots,
            reports,
            segments,
            slots: (0..max_streams)
                .map(|_| StreamSlot {
                    stream: None,
                    gain: StreamGain::new(1.0),
                    levels: Levels::default(),
                })
                .collect(),
            mixer: Mixer::new(channels, max_frames),
            scratch: vec![0.0; max_frames * channels],
            channels,
            clock,
            out_frame: 0,
            report_cursor: 0,
            unrouted_packets: 0,
            retire_queue_full: 0,
            segments_dropped: 0,
            snapshots_dropped: 0,
            reports_dropped: 0,
            render_underrun_frames: 0,
            callback_queue_full: 0,
        }
    }

    /// Output callback for f32 devices.
    pub fn on_output_f32(&mut self, out: &mut [f32], info: &OutputCallbackInfo) {
        // periods longer than the preallocated mix bus are rendered in pieces
        let ch = self.channels.max(1);
        let max = self.scratch.len() / ch * ch;
        let mut rest = out;
        while !rest.is_empty() {
            let n = rest.len().min(max);
            let (now, later) = rest.split_at_mut(n);
            let (now_ns, playback) = self.times(info);
            self.render(now, now_ns, Some(playback));
            rest = later;
        }
    }

    /// Output callback for i16 devices: render into the preallocated scratch buffer.
    pub fn on_output_i16(&mut self, out: &mut [i16], info: &OutputCallbackInfo) {
        let mut scratch = std::mem::take(&mut self.scratch);
        for chunk in out.chunks_mut(scratch.len().max(1)) {
            let n = chunk.len();
            let (now_ns, playback) = self.times(info);
            self.render(&mut scratch[..n], now_ns, Some(playback));
            for (o, s) in chunk.iter_mut().zip(&scratch[..n]) {
                *o = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
            }
        }
        self.scratch = scratch;
    }

    fn retire(&mut self, slot: usize) {
        if let Some(stream) = self.slots[slot].stream.take() {
            if let Err(rtrb::PushError::Full(r)) = self.retired.push(Retired {
                slot: slot as u16,
                stream,
            }) {
                // Never free on the audio thread: keep it in its slot (silent, done) and
                // try again next period; count it.
                self.slots[slot].stream = Some(r.stream);
                self.retire_queue_full += 1;
            }
        }
    }

    /// Now, and when the device plays the first frame of this callback (host clock, Unix ns).
    fn times(&self, info: &OutputCallbackInfo) -> (i64, i64) {
        let now = self.clock.now_unix_ns();
        (now, now + playback_delay_ns(info))
    }

    /// Render the next `out.len() / channels` output frames (numbered from `self.out_frame`),
    /// at `now`; the device plays the first of them at `playback` (both host clock, Unix ns;
    /// `None` when not known yet: no stream reports then).
    pub fn render(&mut self, out: &mut [f32], now: i64, playback: Option<i64>) {
        let started = Instant::now();
        while let Ok(c) = self.control.pop() {
            match c {
                Control::Add { slot, stream, gain } => match self.slots.get_mut(slot as usize) {
                    Some(s) if s.stream.is_none() => {
                        s.stream = Some(stream);
                        s.gain = StreamGain::new(gain);
                        s.levels = Levels::default();
                    }
                    // a slot still in use (the control thread never does this): hand it back
                    _ => {
                        if let Err(rtrb::PushError::Full(r)) = self.retired.push(Retired { slot, stream }) {
                            std::mem::forget(r);
                            self.retire_queue_full += 1;
                        }
                    }
                },
                Control::Remove { slot, ssrc } => {
                    if let Some(s) = self.slots.get_mut(slot as usize) {
                        if s.stream.as_ref().is_some_and(|p| p.ssrc() == ssrc) {
                            s.gain.fade_out();
                        }
                    }
                }
            }
        }
        while let Ok(p) = self.packets.pop() {
            let Some(s) = self
                .slots
                .get_mut(p.slot as usize)
                .and_then(|s| s.stream.as_deref_mut())
            else {
                self.unrouted_packets += 1;
                continue;
            };
            if s.ssrc() != p.header.ssrc {
                self.unrouted_packets += 1;
                continue;
            }
            if p.bye {
                s.end_of_stream();
                continue;
            }
            if p.restart {
                s.restart_sequence();
            }
            let d = p.datagram();
            s.insert(&p.header, p.header.payload(d), p.arrival_unix_ns);
            // Redundant copies of the frames right before this one, with their sequence
            // numbers (chained by timestamp and duration, whatever their frame sizes).
            for (seq, b) in p.red.frames_before(p.header.sequence, p.header.timestamp) {
                s.insert_redundant(
                    seq,
                    b.timestamp(p.header.timestamp),
                    b.duration_samples,
                    b.payload(d),
                );
            }
        }
        let frames = out.len() / self.channels.max(1);
        self.mixer.begin(frames);
        let mut active = 0u32;
        for i in 0..self.slots.len() {
            let slot = &mut self.slots[i];
            let Some(s) = slot.stream.as_deref_mut() else {
                continue;
            };
            active += 1;
            let mut sink = QueueSink {
                queue: self.segments.as_mut(),
                ssrc: s.ssrc(),
                dropped: &mut self.segments_dropped,
            };
            s.pull(self.mixer.scratch(), self.out_frame, now, &mut sink);
            slot.levels.measure(self.mixer.scratch());
            if s.has_finished() {
                // said goodbye and played out: leave the mix
                slot.gain.fade_out();
            }
            self.mixer.add(&mut slot.gain);
            if slot.gain.is_done() {
                self.retire(i);
            }
        }
        self.mixer.finish(out);
        let mut mix_levels = Levels::default();
        mix_levels.measure(out);
        // per-stream reports, round-robin
        let n = self.slots.len();
        let mut sent = 0;
        for step in 0..n {
            let Some(playback) = playback else { break };
            if sent == REPORTS_PER_PERIOD {
                break;
            }
            let i = (self.report_cursor + step) % n;
            let Some(s) = self.slots[i].stream.as_deref() else {
                continue;
            };
            let report = StreamReport {
                slot: i as u16,
                ssrc: s.ssrc(),
                playback_unix_ns: playback + patchcord_common::time::frames_to_ns(frames as i64),
                rtp_ts_at_frame: s.playing_ts().filter(|_| s.is_playing()).map(|t| t as u32),
                buffered_samples: s.buffered_samples(),
                target_delay_ns: s.target_delay_ns(),
                delay_ns: s.delay_ns(),
                rate: s.rate(),
                drift: s.drift(),
                gain: self.slots[i].gain.target,
                counters: *s.counters(),
                rfc3550_expected: s.register().expected(),
                rfc3550_lost: s.register().cumulative_lost(),
                extended_max_seq: s.register().extended_max(),
                jitter_rtp: s.register().jitter_rtp(),
                output_delay_ns: playback - now,
                levels: std::mem::take(&mut self.slots[i].levels),
            };
            if self.reports.push(report).is_err() {
                self.reports_dropped += 1;
            }
            sent += 1;
            self.report_cursor = i + 1;
        }
        let snap = Snapshot {
            out_frame: self.out_frame,
            frames: frames as u32,
            playback_unix_ns: playback,
            render_ns: started.elapsed().as_nanos().min(u32::MAX as u128) as u32,
            render_underrun_frames: self.render_underrun_frames,
            callback_queue_full: self.callback_queue_full,
            active_streams: active,
            unrouted_packets: self.unrouted_packets,
            retire_queue_full: self.retire_queue_full,
            segments_dropped: self.segments_dropped,
            snapshots_dropped: self.snapshots_dropped,
            reports_dropped: self.reports_dropped,
            clipped_samples: self.mixer.clipped_samples,
            mix_levels,
        };
        self.out_frame += frames as u64;
        if self.snapshots.push(snap).is_err() {
            self.snapshots_dropped += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ahead::{RenderWorker, RingOutput};
    use crate::test_alloc::live_bytes;
    use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count};
    use cpal::{OutputStreamTimestamp, StreamInstant};
    use patchcord_common::playout::{DelayMode, PlayoutConfig};
    use patchcord_common::rtp::{validate_opus_rtp, Packetizer};
    use patchcord_common::time::frames_to_ns;

    fn info(frame: u64) -> OutputCallbackInfo {
        let t = frames_to_ns(frame as i64) as u64;
        let callback = StreamInstant::from_nanos(t);
        let playback = StreamInstant::from_nanos(t + 2_666_667);
        OutputCallbackInfo::new(OutputStreamTimestamp { callback, playback })
    }

    /// The output callback, fed as the binary feeds it: streams created on the control side
    /// join while others play, leave by BYE or by timeout (fade-out), and are freed on the
    /// control side; packets with losses, a foreign SSRC, both sample formats. 1000 stream
    /// life cycles, up to 8 at once. Every callback runs in its own no-allocation scope, and
    /// afterwards the memory is back to where it started.
    /// The audio thread(s) under test: the callback rendering, or the render thread's step
    /// followed by the callback copying from the ring (`--render-ahead`).
    enum Audio {
        Direct(Box<OutputSide>),
        Ahead(Box<RenderWorker>, Box<RingOutput>, rtrb::Consumer<u32>),
    }

    impl Audio {
        fn side(&self) -> &OutputSide {
            match self {
                Audio::Direct(s) => s,
                Audio::Ahead(w, _, _) => w.side(),
            }
        }

        /// One period, every audio-thread part in a no-allocation scope.
        fn period(
            &mut self,
            f32_out: Option<&mut [f32]>,
            i16_out: Option<&mut [i16]>,
            i: &OutputCallbackInfo,
        ) {
            match self {
                Audio::Direct(s) => {
                    if let Some(o) = f32_out {
                        assert_no_alloc(|| s.on_output_f32(o, i));
                    }
                    if let Some(o) = i16_out {
                        assert_no_alloc(|| s.on_output_i16(o, i));
                    }
                }
                Audio::Ahead(w, r, durations) => {
                    assert_no_alloc(|| assert!(w.step()));
                    if let Some(o) = f32_out {
                        assert_no_alloc(|| r.on_output_f32(o, i));
                    }
                    if let Some(o) = i16_out {
                        assert_no_alloc(|| r.on_output_i16(o, i));
                    }
                    while durations.pop().is_ok() {}
                }
            }
        }
    }

    #[test]
    fn output_callback_never_allocates_and_streams_come_and_go() {
        lifecycle(false);
    }

    #[test]
    fn render_ahead_never_allocates_and_streams_come_and_go() {
        lifecycle(true);
    }

    fn lifecycle(ahead: bool) {
        let (mut packet_tx, packets) = rtrb::RingBuffer::<PacketSlot>::new(512);
        let (mut control_tx, control) = rtrb::RingBuffer::<Control>::new(64);
        let (retired, mut retired_rx) = rtrb::RingBuffer::<Retired>::new(64);
        let (snapshots, mut snap_rx) = rtrb::RingBuffer::<Snapshot>::new(64);
        let (reports, mut report_rx) = rtrb::RingBuffer::<StreamReport>::new(256);
        let (seg_tx, mut seg_rx) = rtrb::RingBuffer::<StreamSegment>::new(1024);
        let side = OutputSide::new(
            packets,
            control,
            retired,
            snapshots,
            reports,
            Some(seg_tx),
            8,
            2,
            256,
            HostClock::new(),
        );
        let mut side = if ahead {
            let (ring_tx, ring_rx) = crate::ahead::ring(2, 2);
            let (tick_tx, tick_rx) = rtrb::RingBuffer::new(64);
            let (dur_tx, dur_rx) = rtrb::RingBuffer::new(64);
            let clock = side.clock;
            Audio::Ahead(
                Box::new(RenderWorker::new(side, ring_tx, tick_rx, 2, 128)),
                Box::new(RingOutput::new(ring_rx, tick_tx, dur_tx, None, 2, clock)),
                dur_rx,
            )
        } else {
            Audio::Direct(Box::new(side))
        };
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::LowDelay).unwrap();
        let pcm = vec![0.1f32; 2 * 240];
        let mut opus_buf = [0u8; 1500];
        let mut rtp = [0u8; 1500];
        let mut out_f32 = vec![0f32; 2 * 128];
        let mut out_i16 = vec![0i16; 2 * 128];
        let mut frame = 0u64;
        let mut freed = 0u32;
        let mut started = 0u32;
        // slot -> (ssrc, packetizer, packets sent)
        let mut live: [Option<(u32, Packetizer, u64)>; 8] = std::array::from_fn(|_| None);
        // reports and snapshots whose levels measured sound (the meters run in the callback)
        let (mut stream_metered, mut mix_metered) = (0u64, 0u64);
        let mut drain = |retired_rx: &mut rtrb::Consumer<Retired>,
                         live: &mut [Option<(u32, Packetizer, u64)>; 8]| {
            let mut n = 0;
            while let Ok(r) = retired_rx.pop() {
                live[r.slot as usize] = None;
                drop(r);
                n += 1;
            }
            while let Ok(s) = snap_rx.pop() {
                mix_metered += (s.mix_levels.samples > 0 && s.mix_levels.peak > 0.0) as u64;
            }
            while let Ok(r) = report_rx.pop() {
                stream_metered += (r.levels.samples > 0 && r.levels.peak > 0.0) as u64;
            }
            while seg_rx.pop().is_ok() {}
            n
        };
        // warm up lazily initialised state (thread-locals, the clock, the rate stage's
        // shared filter table) before the baseline
        drop(patchcord_common::rate::RateStage::new(2));
        side.period(Some(&mut out_f32), None, &info(frame));
        frame += 128;
        drain(&mut retired_rx, &mut live);
        let baseline = live_bytes();
        reset_violation_count();
        let mut step = 0u64;
        while started < 1000 || live.iter().any(|l| l.is_some()) {
            step += 1;
            // control side: start a stream in a free slot now and then
            if started < 1000 && step.is_multiple_of(3) {
                if let Some(slot) = live.iter().position(|l| l.is_none()) {
                    let ssrc = 10_000 + started;
                    let mode = if started.is_multiple_of(2) {
                        DelayMode::Fixed
                    } else {
                        DelayMode::Adaptive {
                            min_ns: 2_000_000,
                            max_ns: 100_000_000,
                            quantile: 0.99,
                        }
                    };
                    let cfg = PlayoutConfig {
                        mode,
                        channels: 2,
                        latency_ns: 5_000_000,
                        capacity_packets: 64,
                        ..PlayoutConfig::default()
                    };
                    let add = Control::Add {
                        slot: slot as u16,
                        stream: Box::new(StreamPlayout::new(ssrc, cfg).unwrap()),
                        gain: 0.5,
                    };
                    assert!(control_tx.push(add).is_ok());
                    live[slot] = Some((ssrc, Packetizer::new(ssrc, 96, started as u16, started * 7), 0));
                    started += 1;
                }
            }
            // every live stream sends a packet (5 ms frames); some are lost; then it leaves
            for (slot, l) in live.iter_mut().enumerate() {
                let Some((ssrc, pk, sent)) = l else { continue };
                if *sent == u64::MAX {
                    continue; // leaving
                }
                let n = enc.encode_float(&pcm, &mut opus_buf).unwrap();
                let len = pk.build(*sent * 240, &opus_buf[..n], &mut rtp).unwrap();
                *sent += 1;
                if *sent % 7 != 3 {
                    let header = validate_opus_rtp(&rtp[..len], 96).unwrap();
                    let mut p = PacketSlot {
                        slot: slot as u16,
                        bye: false,
                        // some streams restart their sequence (a confirmed jump) on the way
                        restart: *sent == 12 && *ssrc % 3 == 0,
                        header,
                        red: RedInfo::default(),
                        arrival_unix_ns: side.side().clock.now_unix_ns(),
                        len,
                        data: [0; MAX_DATAGRAM_LEN],
                    };
                    p.data[..len].copy_from_slice(&rtp[..len]);
                    if *sent == 5 {
                        p.header.ssrc ^= 0xffff; // a stray packet: counted, not played
                    }
                    let _ = packet_tx.push(p);
                }
                if *sent >= 20 + (*ssrc as u64 % 13) {
                    if *ssrc % 2 == 0 {
                        // goodbye (RTCP BYE)
                        let _ = packet_tx.push(PacketSlot::bye(slot as u16, *ssrc));
                    } else {
                        // timed out on the control side
                        assert!(control_tx
                            .push(Control::Remove {
                                slot: slot as u16,
                                ssrc: *ssrc
                            })
                            .is_ok());
                    }
                    *sent = u64::MAX;
                }
            }
            // audio thread: two periods per step, alternating sample formats
            for k in 0..2 {
                let i = info(frame);
                if (step + k).is_multiple_of(2) {
                    side.period(Some(&mut out_f32), None, &i);
                } else {
                    side.period(None, Some(&mut out_i16), &i);
                }
                frame += 128;
            }
            freed += drain(&mut retired_rx, &mut live);
            assert!(
                step < 200_000,
                "streams never left: {live:?}",
                live = live.iter().map(|l| l.as_ref().map(|x| x.0)).collect::<Vec<_>>()
            );
        }
        assert_eq!(violation_count(), 0, "the output callback allocated or freed");
        assert!(
            stream_metered > 1000 && mix_metered > 1000,
            "{stream_metered} {mix_metered}"
        );
        assert_eq!(freed, 1000, "every stream was handed back to be freed");
        assert_eq!(side.side().retire_queue_full, 0);
        assert!(
            side.side().unrouted_packets >= 900,
            "{}",
            side.side().unrouted_packets
        );
        if let Audio::Ahead(_, r, _) = &side {
            assert_eq!(r.underrun_frames, 0, "the render step ran before every callback");
            assert_eq!(r.queue_full, 0);
        }

        assert_eq!(live_bytes() - baseline, 0, "memory not back to baseline");
    }
}
