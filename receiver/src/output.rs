//! The output side: the cpal output callback pulls the playout. The output device clock is
//! the master clock: its frame counter is the receiver's sample-accurate time base.
//!
//! Everything the callback touches was allocated before it runs. New streams arrive as
//! boxes through a queue and old ones leave through another, to be freed elsewhere.
//! Packets arrive in preallocated slots. Statistics and played segments leave through
//! queues; when one of them is full the item is dropped *and counted*.

use std::time::Instant;

use cpal::OutputCallbackInfo;
use patchcord_common::playout::{Segment, SegmentSink, StreamPlayout};
use patchcord_common::rtp::{RtpOpusHeader, MAX_DATAGRAM_LEN};
use patchcord_common::stats::StreamCounters;
use patchcord_devices::clock::HostClock;

/// One datagram on its way from the network task to the output callback.
#[derive(Clone, Copy)]
pub struct PacketSlot {
    /// An RTCP BYE for `header.ssrc` rather than a packet.
    pub bye: bool,
    pub header: RtpOpusHeader,
    pub arrival_unix_ns: i64,
    pub len: usize,
    pub data: [u8; MAX_DATAGRAM_LEN],
}

impl PacketSlot {
    pub fn datagram(&self) -> &[u8] {
        &self.data[..self.len]
    }
}

/// What the callback reports after each period.
#[derive(Clone, Copy, Debug, Default)]
pub struct Snapshot {
    /// Output frame index of the first frame of this period.
    pub out_frame: u64,
    pub frames: u32,
    /// Host-clock instant (Unix ns) the device will play `out_frame`.
    pub playback_unix_ns: i64,
    /// When the callback started (Unix ns) and how long it took.
    #[allow(dead_code)] // kept for the stats of later issues
    pub callback_unix_ns: i64,
    pub callback_ns: u32,
    pub ssrc: Option<u32>,
    /// RTP timestamp played at `out_frame`, if the stream is playing.
    pub rtp_ts_at_frame: Option<u32>,
    pub buffered_samples: u64,
    pub counters: StreamCounters,
    pub rfc3550_expected: u64,
    pub rfc3550_lost: i64,
    pub jitter_rtp: f64,
    /// Packets whose SSRC is not the playing stream's.
    pub unrouted_packets: u64,
    pub retire_queue_full: u64,
    pub segments_dropped: u64,
    pub snapshots_dropped: u64,
}

/// Segments go to the control thread (for `--timeline`) when a queue is given.
struct QueueSink<'a> {
    queue: Option<&'a mut rtrb::Producer<Segment>>,
    dropped: &'a mut u64,
}

impl SegmentSink for QueueSink<'_> {
    fn segment(&mut self, segment: &Segment) {
        if let Some(q) = self.queue.as_deref_mut() {
            if q.push(*segment).is_err() {
                *self.dropped += 1;
            }
        }
    }
}

pub struct OutputSide {
    pub packets: rtrb::Consumer<PacketSlot>,
    pub new_streams: rtrb::Consumer<Box<StreamPlayout>>,
    pub retired: rtrb::Producer<Box<StreamPlayout>>,
    pub snapshots: rtrb::Producer<Snapshot>,
    pub segments: Option<rtrb::Producer<Segment>>,
    pub stream: Option<Box<StreamPlayout>>,
    pub scratch: Vec<f32>,
    pub channels: usize,
    pub clock: HostClock,
    pub out_frame: u64,
    pub unrouted_packets: u64,
    pub retire_queue_full: u64,
    pub segments_dropped: u64,
    pub snapshots_dropped: u64,
}

impl OutputSide {
    /// Output callback for f32 devices.
    pub fn on_output_f32(&mut self, out: &mut [f32], info: &OutputCallbackInfo) {
        self.render(out, info);
    }

    /// Output callback for i16 devices: render into the preallocated scratch buffer.
    pub fn on_output_i16(&mut self, out: &mut [i16], info: &OutputCallbackInfo) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let n = out.len().min(scratch.len());
        self.render(&mut scratch[..n], info);
        for (o, s) in out.iter_mut().zip(&scratch[..n]) {
            *o = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
        }
        out[n..].fill(0);
        self.scratch = scratch;
    }

    fn render(&mut self, out: &mut [f32], info: &OutputCallbackInfo) {
        let started = Instant::now();
        let now = self.clock.unix_ns(started);
        let ts = info.timestamp();
        let ahead = ts.playback.saturating_duration_since(ts.callback).as_nanos() as i64;
        while let Ok(s) = self.new_streams.pop() {
            if let Some(old) = self.stream.replace(s) {
                if let Err(rtrb::PushError::Full(old)) = self.retired.push(old) {
                    // Never free on the audio thread: keep it alive in the stream slot's
                    // place by leaking it, and count. The queue holds 64 streams, so this
                    // means the control thread has stopped draining it.
                    std::mem::forget(old);
                    self.retire_queue_full += 1;
                }
            }
        }
        while let Ok(p) = self.packets.pop() {
            match self.stream.as_deref_mut() {
                Some(s) if s.ssrc() == p.header.ssrc && p.bye => s.end_of_stream(),
                Some(s) if s.ssrc() == p.header.ssrc => {
                    let d = p.datagram();
                    s.insert(&p.header, p.header.payload(d), p.arrival_unix_ns);
                }
                _ => self.unrouted_packets += 1,
            }
        }
        let frames = out.len() / self.channels.max(1);
        let mut sink = QueueSink {
            queue: self.segments.as_mut(),
            dropped: &mut self.segments_dropped,
        };
        let mut snap = Snapshot {
            out_frame: self.out_frame,
            frames: frames as u32,
            playback_unix_ns: now + ahead,
            callback_unix_ns: now,
            ..Snapshot::default()
        };
        match self.stream.as_deref_mut() {
            Some(s) => {
                s.pull(out, self.out_frame, now, &mut sink);
                snap.ssrc = Some(s.ssrc());
                snap.rtp_ts_at_frame = s
                    .timeline()
                    .and_then(|t| t.ts_at(self.out_frame))
                    .map(|t| t as u32);
                snap.buffered_samples = s.buffered_samples(self.out_frame + frames as u64);
                snap.counters = *s.counters();
                snap.rfc3550_expected = s.register().expected();
                snap.rfc3550_lost = s.register().cumulative_lost();
                snap.jitter_rtp = s.register().jitter_rtp();
            }
            None => out.fill(0.0),
        }
        self.out_frame += frames as u64;
        snap.unrouted_packets = self.unrouted_packets;
        snap.retire_queue_full = self.retire_queue_full;
        snap.segments_dropped = self.segments_dropped;
        snap.snapshots_dropped = self.snapshots_dropped;
        snap.callback_ns = started.elapsed().as_nanos().min(u32::MAX as u128) as u32;
        if self.snapshots.push(snap).is_err() {
            self.snapshots_dropped += 1;
        }
    }
}
