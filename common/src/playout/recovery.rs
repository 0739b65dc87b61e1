//! Decode and loss recovery: how a stream's playout turns the packets buffered for a stretch
//! of its timeline into audio, and tells where every sample came from.
//!
//! For the timeline position due, in this order: the packet itself, decoded; a packet that
//! is missing while later ones are buffered is recovered from the in-band FEC of the next
//! packet (SILK/hybrid packets; CELT-only packets carry none), else from an RFC 2198
//! redundant copy a later packet carried, else concealed with Opus PLC (`missing`).
//! Packets whose time passed are decoded only to keep the decoder's state continuous
//! (`late`, or `discarded` at a start). A timestamp gap with consecutive sequence numbers
//! (DTX, a paused sender) is concealed up to the next packet.
//!
//! When nothing at all is buffered ahead (the buffer ran *dry*), the stream is either
//! waiting for a late packet or has stopped, and which one is known only later. Its first
//! frame is concealed, then the concealment fades to silence over 20 ms
//! ([`DRY_FADE_FRAMES`]) — unless the stream lost or missed packets in the last 10 s: then
//! a loss burst is the likelier story, and the first [`DRY_PLAIN_LOSSY_NS`] are concealed
//! plainly before the fade. The concealment is *pending*: if audio resumes, it was an
//! underrun and counts as concealment (and as an interruption when ≥ 150 ms); if the stream
//! stays silent for `idle_after` (or said BYE) it ended, and counts as `ended` only. A
//! stream that stops after playing cleanly so plays one frame of concealment and a fade,
//! and its end is not a glitch. Why longer on a lossy stream: under the `bursty` profile
//! (bursts of up to 8 packets) fading after the first frame cost 0.09 PESQ-WB (2.96
//! against 3.05), after 60 ms 0.06 (3.155 against 3.215 with 200 ms plain; BENCHMARKS.md
//! §4).

use super::{SampleSource, Segment, SegmentSink, StreamPlayout};
use crate::jitter::StoredPacket;
use crate::rtp::{opus_packet_may_carry_fec, MAX_OPUS_PACKET_SAMPLES};
use crate::time::{frames_to_ns, ns_to_frames_ceil};

/// Concealment this long in one run is an interruption (as WebRTC counts them): 150 ms.
const INTERRUPTION_SAMPLES: u64 = 7200;
/// Opus PLC works in multiples of 2.5 ms.
const PLC_QUANTUM: u32 = 120;
/// A dry run of a stream that lost packets in the last [`super::LOSS_MEMORY_NS`] is
/// concealed plainly this long (one frame otherwise)...
pub const DRY_PLAIN_LOSSY_NS: i64 = 200_000_000;
/// ...then its concealment fades to silence over this many frames.
pub const DRY_FADE_FRAMES: u32 = 960;

/// Gain of the faded concealment `pos` frames into the fade.
pub fn dry_fade_gain(pos: u64) -> f32 {
    1.0 - pos.min(DRY_FADE_FRAMES as u64) as f32 / DRY_FADE_FRAMES as f32
}

impl StreamPlayout {
    /// Produce stream frames for timeline positions `[pos, pos + n)` (interleaved).
    pub(super) fn read_stream(&mut self, out: &mut [f32], pos: u64, sink: &mut impl SegmentSink) {
        let ch = self.cfg.channels;
        let frames = out.len() / ch;
        let out_frame = pos;
        let mut i = 0usize;
        while i < frames {
            let f = out_frame + i as u64;
            let Some(tl) = self.timeline else {
                out[i * ch..frames * ch].fill(0.0);
                sink.segment(&Segment {
                    out_frame: f,
                    frames: (frames - i) as u32,
                    rtp_ts: 0,
                    source: SampleSource::Silence,
                });
                break;
            };
            if f < tl.out_frame0 {
                let n = ((tl.out_frame0 - f) as usize).min(frames - i);
                out[i * ch..(i + n) * ch].fill(0.0);
                sink.segment(&Segment {
                    out_frame: f,
                    frames: n as u32,
                    rtp_ts: 0,
                    source: SampleSource::Silence,
                });
                i += n;
                continue;
            }
            if self.dec_pos >= self.dec_len {
                let need_ts = tl.ts0 + (f - tl.out_frame0);
                self.refill(need_ts, f, sink);
                continue;
            }
            let n = (self.dec_len - self.dec_pos).min(frames - i);
            out[i * ch..(i + n) * ch].copy_from_slice(&self.dec[self.dec_pos * ch..(self.dec_pos + n) * ch]);
            self.dec_pos += n;
            i += n;
        }
    }

    /// Make decoded audio available starting exactly at `need_ts`.
    fn refill(&mut self, need_ts: u64, out_frame: u64, sink: &mut impl SegmentSink) {
        // Each step either produces audio, or moves `next_seq` forward past packets whose
        // time is over: bounded by the store's capacity.
        for _ in 0..=self.store.capacity() {
            if self.refill_step(need_ts, out_frame, sink) {
                return;
            }
        }
        self.conceal(self.last_frame_samples, need_ts, out_frame, sink);
    }

    /// First buffered packet after `seq` (scan bounded by the capacity).
    fn first_buffered_after(&self, seq: u64) -> Option<StoredPacket> {
        (seq + 1..seq + 1 + self.store.capacity() as u64).find_map(|s| self.store.get(s).map(|(m, _)| m))
    }

    /// One step of [`refill`](Self::refill); `true` when audio is available at `need_ts`.
    fn refill_step(&mut self, need_ts: u64, out_frame: u64, sink: &mut impl SegmentSink) -> bool {
        for _ in 0..=self.store.capacity() {
            let Some((meta, payload)) = self.store.get(self.next_seq) else {
                break;
            };
            let dur = meta.duration_samples as u64;
            if meta.ext_ts > need_ts {
                // Timestamp gap with consecutive sequence numbers (DTX or a paused
                // sender): conceal up to the packet.
                let n = (meta.ext_ts - need_ts).min(self.last_frame_samples as u64) as u32;
                self.conceal(n, need_ts, out_frame, sink);
                return true;
            }
            let ch = self.cfg.channels;
            let decoded = self
                .decoder
                .decode_float(payload, &mut self.dec[..dur as usize * ch], false);
            self.store.remove(meta.ext_seq);
            self.next_seq += 1;
            if meta.ext_ts + dur <= need_ts {
                // Wholly in the past (its time was concealed, or skipped by the delay
                // keeper): decoded only to keep the decoder state continuous. Reported
                // as a zero-length segment so the decode sequence can be replayed.
                if meta.redundant {
                    // its original never came and the copy came after its time (it was
                    // concealed while the buffer was dry): missing, not recovered
                    if meta.ext_ts + dur > self.skip_until_ts {
                        self.counters.missing += 1;
                    }
                } else if meta.ext_ts + dur > self.skip_until_ts {
                    // its time was concealed while the buffer was dry: missing, then late
                    self.counters.late += 1;
                    self.counters.missing += 1;
                } else {
                    // skipped on purpose (stream start)
                    self.counters.discarded += 1;
                }
                sink.segment(&Segment {
                    out_frame,
                    frames: 0,
                    rtp_ts: meta.ext_ts,
                    source: if meta.redundant {
                        SampleSource::Redundancy { seq: meta.ext_seq }
                    } else {
                        SampleSource::Packet { seq: meta.ext_seq }
                    },
                });
                continue;
            }
            match decoded {
                Ok(n) if n > 0 => {
                    self.last_frame_samples = n as u32;
                    self.dec_len = n;
                    self.dec_pos = ((need_ts - meta.ext_ts) as usize).min(n);
                    if meta.redundant {
                        self.counters.missing += 1;
                        self.counters.recovered_red += 1;
                    } else {
                        self.counters.played += 1;
                    }
                    self.resume();
                    self.concealing = false;
                    sink.segment(&Segment {
                        out_frame,
                        frames: (n - self.dec_pos) as u32,
                        rtp_ts: need_ts,
                        source: if meta.redundant {
                            SampleSource::Redundancy { seq: meta.ext_seq }
                        } else {
                            SampleSource::Packet { seq: meta.ext_seq }
                        },
                    });
                    return true;
                }
                _ => {
                    // A corrupt packet's TOC duration cannot be trusted: conceal up to the
                    // next buffered packet, at most the duration it claimed.
                    if !meta.redundant {
                        self.counters.decode_errors += 1;
                    }
                    let mut n = meta.ext_ts + dur - need_ts;
                    if let Some((next, _)) = self.store.get(self.next_seq) {
                        n = n.min(next.ext_ts.saturating_sub(need_ts)).max(1);
                    }
                    self.conceal(n as u32, need_ts, out_frame, sink);
                    return true;
                }
            }
        }
        if !self.store.is_empty() {
            self.resume();
            // The packet due now is missing but later ones are buffered: lost (or late).
            // If the next buffered packet already starts at or before the playout point,
            // the missing ones' time was concealed while the buffer was dry: they are over.
            if let Some(next) = self.first_buffered_after(self.next_seq) {
                if next.ext_ts <= need_ts {
                    self.last_missing_ns = self.last_pull_ns;
                    self.counters.missing += next.ext_seq - self.next_seq;
                    self.next_seq = next.ext_seq;
                    return false;
                }
                // The same when only some of them are over: a dry run concealed the time
                // of the first ones, and the one due now is the one whose frames reach
                // `next`. It is the packet the FEC in `next` recovers (two losses in a
                // row at a delay under two frames: the second was concealed instead of
                // recovered, 37 of 182 recoverable losses at 20 % loss; BENCHMARKS §4).
                let still_due = (next.ext_ts - need_ts).div_ceil(next.duration_samples.max(1) as u64);
                let over = (next.ext_seq - self.next_seq).saturating_sub(still_due);
                if over > 0 {
                    self.counters.missing += over;
                    self.next_seq += over;
                }
            }
            self.counters.missing += 1;
            self.last_missing_ns = self.last_pull_ns;
            let lost_seq = self.next_seq;
            self.next_seq += 1;
            if self.recover_fec(lost_seq, need_ts) {
                self.counters.recovered_fec += 1;
                self.concealing = false;
                sink.segment(&Segment {
                    out_frame,
                    frames: self.dec_len as u32,
                    rtp_ts: need_ts,
                    source: SampleSource::Fec { seq: lost_seq },
                });
                return true;
            }
            self.conceal(self.last_frame_samples, need_ts, out_frame, sink);
            return true;
        }
        // Nothing buffered ahead of the playout point: the buffer ran dry. Either a packet
        // is late (an underrun, known only when the stream resumes) or the stream ended.
        if self.ended {
            self.go_idle();
            return true;
        }
        if !self.dry {
            self.dry_after_loss = self
                .last_missing_ns
                .zip(self.last_pull_ns)
                .is_some_and(|(m, now)| now - m < super::LOSS_MEMORY_NS);
        }
        self.dry = true;
        // a packet is late or lost: make room for recovery (adaptive mode)
        self.last_missing_ns = self.last_pull_ns;
        if frames_to_ns((self.dry_samples + self.last_frame_samples as u64) as i64) > self.cfg.idle_after_ns {
            self.go_idle();
            return true;
        }
        self.conceal(self.last_frame_samples, need_ts, out_frame, sink);
        true
    }

    /// Audio comes from the stream again after a dry run: the run was an underrun, and its
    /// concealment counts.
    fn resume(&mut self) {
        if !self.dry {
            return;
        }
        self.dry = false;
        self.counters.underruns += 1;
        self.counters.concealed_samples += self.dry_samples;
        self.counters.concealed_frames += self.dry_frames;
        self.count_concealment_run(self.dry_samples);
        self.dry_samples = 0;
        self.dry_frames = 0;
    }

    /// Concealment events (runs) and interruptions (runs of 150 ms or more).
    fn count_concealment_run(&mut self, samples: u64) {
        if !self.concealing {
            self.concealing = true;
            self.counters.concealment_events += 1;
            self.conceal_run = 0;
            self.interrupted = false;
        }
        self.conceal_run += samples;
        if !self.interrupted && self.conceal_run >= INTERRUPTION_SAMPLES {
            self.interrupted = true;
            self.counters.interruptions += 1;
        }
    }

    fn recover_fec(&mut self, lost_seq: u64, need_ts: u64) -> bool {
        let Some((next, payload)) = self.store.get(lost_seq + 1) else {
            return false;
        };
        let dur = next.duration_samples as u64;
        if !opus_packet_may_carry_fec(payload) || next.ext_ts != need_ts + dur {
            return false;
        }
        let ch = self.cfg.channels;
        match self
            .decoder
            .decode_float(payload, &mut self.dec[..dur as usize * ch], true)
        {
            Ok(n) if n > 0 => {
                self.dec_len = n;
                self.dec_pos = 0;
                true
            }
            _ => false,
        }
    }

    fn conceal(&mut self, samples: u32, need_ts: u64, out_frame: u64, sink: &mut impl SegmentSink) {
        let samples = samples.clamp(1, MAX_OPUS_PACKET_SAMPLES as u32);
        let quantized = samples.div_ceil(PLC_QUANTUM) * PLC_QUANTUM;
        let ch = self.cfg.channels;
        let len = (quantized as usize).min(MAX_OPUS_PACKET_SAMPLES) * ch;
        if self
            .decoder
            .decode_float(&[], &mut self.dec[..len], false)
            .is_err()
        {
            self.dec[..len].fill(0.0);
        }
        self.dec_len = samples as usize;
        self.dec_pos = 0;
        let mut source = SampleSource::Plc;
        if self.dry {
            // Pending until the stream resumes or ends. After a frame (200 ms on a lossy
            // stream) the concealment fades to silence (20 ms): a stream that stopped plays
            // that much concealment and a fade.
            let frame = self.last_frame_samples as u64;
            let plain = if self.dry_after_loss {
                frame.max(ns_to_frames_ceil(DRY_PLAIN_LOSSY_NS) as u64)
            } else {
                frame
            };
            if self.dry_samples >= plain {
                let fade_pos = self.dry_samples - plain;
                for (k, frame) in self.dec[..samples as usize * ch].chunks_exact_mut(ch).enumerate() {
                    let g = dry_fade_gain(fade_pos + k as u64);
                    frame.iter_mut().for_each(|x| *x *= g);
                }
                source = SampleSource::FadingPlc {
                    fade_pos: fade_pos.min(u32::MAX as u64) as u32,
                };
            }
            self.dry_samples += samples as u64;
            self.dry_frames += 1;
        } else {
            self.counters.concealed_samples += samples as u64;
            self.counters.concealed_frames += 1;
            self.count_concealment_run(samples as u64);
        }
        sink.segment(&Segment {
            out_frame,
            frames: samples,
            rtp_ts: need_ts,
            source,
        });
    }
}
