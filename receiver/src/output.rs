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
use patchcord_common::red::RedInfo;
use patchcord_common::rtp::{RtpOpusHeader, MAX_DATAGRAM_LEN};
use patchcord_common::stats::StreamCounters;
use patchcord_devices::clock::HostClock;

/// One datagram on its way from the network task to the output callback.
#[derive(Clone, Copy)]
pub struct PacketSlot {
    /// An RTCP BYE for `header.ssrc` rather than a packet.
    pub bye: bool,
    pub header: RtpOpusHeader,
    /// RFC 2198 redundant blocks carried by the packet (empty for plain Opus).
    pub red: RedInfo,
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
    pub target_delay_ns: i64,
    pub delay_ns: Option<i64>,
    pub rate: f64,
    pub drift: f64,
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
                    // Redundant copies of earlier frames: one frame per packet, so the block
                    // `k` frames back belongs to sequence number − k.
                    for b in p.red.redundant() {
                        if b.duration_samples == 0 || b.ts_offset % b.duration_samples != 0 {
                            continue;
                        }
                        let k = (b.ts_offset / b.duration_samples) as u16;
                        s.insert_redundant(
                            p.header.sequence.wrapping_sub(k),
                            b.timestamp(p.header.timestamp),
                            b.duration_samples,
                            b.payload(d),
                        );
                    }
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
                // the timestamp played at this period's first frame: read before the pull
                // (in adaptive mode the read position advances with it)
                let playing = s.playing_ts(self.out_frame);
                s.pull(out, self.out_frame, now, &mut sink);
                snap.ssrc = Some(s.ssrc());
                snap.rtp_ts_at_frame = playing.filter(|_| s.is_playing()).map(|t| t as u32);
                snap.target_delay_ns = s.target_delay_ns();
                snap.delay_ns = s.delay_ns();
                snap.rate = s.rate();
                snap.drift = s.drift();
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

#[cfg(test)]
mod tests {
    use super::*;
    use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count};
    use cpal::{OutputStreamTimestamp, StreamInstant};
    use patchcord_common::playout::{frames_to_ns, PlayoutConfig};
    use patchcord_common::rtp::{validate_opus_rtp, Packetizer};

    fn info(frame: u64) -> OutputCallbackInfo {
        let t = frames_to_ns(frame as i64) as u64;
        let callback = StreamInstant::from_nanos(t);
        let playback = StreamInstant::from_nanos(t + 2_666_667);
        OutputCallbackInfo::new(OutputStreamTimestamp { callback, playback })
    }

    /// The output callback, fed as the binary feeds it: streams created and retired on the
    /// control side, packets (with loss, a BYE, a second sender) through the slot queue.
    /// Every callback runs in its own no-allocation scope; 1000 stream life cycles.
    #[test]
    fn output_callback_never_allocates() {
        let (mut packet_tx, packets) = rtrb::RingBuffer::<PacketSlot>::new(512);
        let (mut stream_tx, new_streams) = rtrb::RingBuffer::<Box<StreamPlayout>>::new(8);
        let (retired, mut retired_rx) = rtrb::RingBuffer::<Box<StreamPlayout>>::new(64);
        let (snapshots, mut snap_rx) = rtrb::RingBuffer::<Snapshot>::new(64);
        let (seg_tx, mut seg_rx) = rtrb::RingBuffer::<Segment>::new(64);
        let mut side = OutputSide {
            packets,
            new_streams,
            retired,
            snapshots,
            segments: Some(seg_tx),
            stream: None,
            scratch: vec![0.0; 4096],
            channels: 2,
            clock: HostClock::new(),
            out_frame: 0,
            unrouted_packets: 0,
            retire_queue_full: 0,
            segments_dropped: 0,
            snapshots_dropped: 0,
        };
        let mut enc =
            opus::Encoder::new(48_000, opus::Channels::Stereo, opus::Application::LowDelay).unwrap();
        let pcm = vec![0.1f32; 2 * 240];
        let mut opus_buf = [0u8; 1500];
        let mut rtp = [0u8; 1500];
        let mut out_f32 = vec![0f32; 2 * 128];
        let mut out_i16 = vec![0i16; 2 * 128];
        let mut frame = 0u64;
        let mut freed = 0;
        reset_violation_count();
        for life in 0..1000u32 {
            let ssrc = 1000 + life;
            // control side: a new stream (allocation happens here)
            let cfg = PlayoutConfig {
                channels: 2,
                latency_ns: 5_000_000,
                ..PlayoutConfig::default()
            };
            assert!(stream_tx
                .push(Box::new(StreamPlayout::new(ssrc, cfg).unwrap()))
                .is_ok());
            let mut pk = Packetizer::new(ssrc, 96, life as u16, life * 7);
            let mut last_len = 0;
            for i in 0..12u64 {
                let n = enc.encode_float(&pcm, &mut opus_buf).unwrap();
                let len = pk.build(i * 240, &opus_buf[..n], &mut rtp).unwrap();
                last_len = len;
                if i % 5 != 3 {
                    let header = validate_opus_rtp(&rtp[..len], 96).unwrap();
                    let mut slot = PacketSlot {
                        bye: false,
                        header,
                        red: RedInfo::default(),
                        arrival_unix_ns: side.clock.now_unix_ns(),
                        len,
                        data: [0; MAX_DATAGRAM_LEN],
                    };
                    slot.data[..len].copy_from_slice(&rtp[..len]);
                    // a packet from another SSRC now and then: counted, not played
                    if i == 7 {
                        slot.header.ssrc ^= 0xffff;
                    }
                    let _ = packet_tx.push(slot);
                }
                // audio thread: two periods per packet, alternating sample formats
                for k in 0..2 {
                    let i = info(frame);
                    if (life + k) % 2 == 0 {
                        assert_no_alloc(|| side.on_output_f32(&mut out_f32, &i));
                    } else {
                        assert_no_alloc(|| side.on_output_i16(&mut out_i16, &i));
                    }
                    frame += 128;
                }
            }
            // the sender says goodbye
            let header = validate_opus_rtp(&rtp[..last_len], 96).unwrap();
            let _ = packet_tx.push(PacketSlot {
                bye: true,
                header,
                red: RedInfo::default(),
                arrival_unix_ns: 0,
                len: 0,
                data: [0; MAX_DATAGRAM_LEN],
            });
            // control side: free retired streams, drain reports
            while let Ok(old) = retired_rx.pop() {
                drop(old);
                freed += 1;
            }
            while snap_rx.pop().is_ok() {}
            while seg_rx.pop().is_ok() {}
        }
        assert_eq!(violation_count(), 0, "the output callback allocated or freed");
        assert!(freed >= 990, "streams were not handed back to be freed: {freed}");
        assert_eq!(side.retire_queue_full, 0);
        assert!(side.unrouted_packets >= 1000);
    }
}
