//! One received stream (one SSRC): admission of its packets, its sample-accurate playout
//! timeline, and the chain that turns buffered packets into output frames. Pulled by the
//! output callback; never allocates after [`StreamPlayout::new`], never reads a clock (time
//! is an argument), never panics on input.
//!
//! # The chain, per pull
//! ```text
//!   packets ─▶ decode + loss recovery ─▶ stretch stage ─▶ rate stage ─▶ output frames
//!              (recovery.rs)             (adaptive:       (clock drift
//!                                         pitch-period     only; bypassed
//!                                         splices)         at rate 1)
//! ```
//! The delay policy ([`crate::delay`]) sets the target and asks for splices; the drift
//! estimator ([`crate::drift`]) sets the rate. Which stream sample plays at which output
//! frame is always known: stream positions advance with the frames read, and the stages
//! report the frames they hold; segments ([`Segment`]) are reported at the output frame
//! they play at.
//!
//! # The timeline
//! Once the first packets of a stream are buffered, the stream gets an affine map from
//! extended RTP timestamps to stream positions,
//!
//! ```text
//!     position(ts) = position0 + (ts − ts0)
//! ```
//!
//! which never changes while the stream plays: splices and resampling move the output
//! against it, not the map. Fixed mode chooses it so that the newest buffered packet is
//! pulled exactly `latency` after it arrived; adaptive mode listens for 200 ms and starts
//! above what it heard: its target plus a cushion, plus twice the spread it heard (a short
//! observation sees about half of a wide path's spread), held for 5 s while the path shows
//! the rest; the excess then comes off in pauses (see [`crate::delay`]). A packet needed before it arrived is
//! concealed (`missing`) and, when it comes, counted `late` and dropped. After an outage
//! longer than `idle_after` the stream is idle (`ended`) and the next packet starts a new
//! timeline (`resyncs`), so an outage never leaves a long gap or a growing latency behind.

mod recovery;
mod segment;

pub use recovery::{dry_fade_gain, DRY_FADE_FRAMES, DRY_PLAIN_LOSSY_NS};
use segment::Reposition;
pub use segment::{NoSegments, SampleSource, Segment, SegmentSink};

use crate::delay::{DelayEstimator, DelayHold, StretchPolicy};
use crate::drift::{DriftEstimator, DriftFollower};
use crate::jitter::{PacketStore, StoreOutcome, StoredPacket};
use crate::rate::RateStage;
use crate::rtp::MAX_OPUS_PACKET_SAMPLES;
use crate::rtp::{opus_packet_may_carry_fec, RtpOpusHeader, SeqExtender, TimestampExtender};
use crate::stats::{ReceptionRegister, SeqVerdict, StreamCounters};
use crate::stretch::{StretchRequest, StretchStage};
use crate::time::{frames_to_ns, ns_to_frames_ceil, SAMPLE_RATE};

/// Adaptive mode keeps room for loss recovery this long after the last loss.
const LOSS_MEMORY_NS: i64 = 10_000_000_000;
/// Adaptive mode listens this long to a new stream before it starts playing it...
const ADAPTIVE_WARMUP_NS: i64 = 200_000_000;
/// ...starts this much above its target (what the warm-up showed), or by the frames that
/// recover a loss if more...
const START_CUSHION_NS: i64 = 10_000_000;
/// ...and holds its target at least at that start-up delay, and that cushion above the
/// target, for this long: the path's first spikes find room before they are known. (On a clean loopback, spikes of up to 8 ms above
/// a 5.7 ms target made 1–3 late packets a minute before the hold; none with it.)
const START_HOLD_NS: i64 = 60_000_000_000;
/// ...and at least at its start-up delay for this long, while the path shows its spread.
const START_SETTLE_NS: i64 = 5_000_000_000;

/// Adaptive mode, a new stream's first minute: the target is held at least at `start_ns`
/// until `settle_until`, then at `floor_ns` (and a cushion above the moving target) until
/// `until`.
#[derive(Debug, Clone, Copy)]
struct StartHold {
    start_ns: i64,
    settle_until: i64,
    floor_ns: i64,
    until: i64,
}
/// How the playout delay is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DelayMode {
    /// Constant delay `latency_ns` from arrival to pull, never slipped; clock drift is
    /// resampled away.
    Fixed,
    /// Target follows the `quantile` of relative arrival delay (1 − glitch budget), within
    /// `[min_ns, max_ns]`; reached by pitch-period splices (see [`crate::delay`]).
    Adaptive { min_ns: i64, max_ns: i64, quantile: f64 },
}

/// Packet slots a jitter buffer needs for a delay of up to `max_delay_ns`: that much audio
/// in the shortest Opus frames (2.5 ms), plus 250 ms for packets arriving in a burst after
/// a stall. 300 slots (450 KB of packet storage) for a 500 ms maximum.
pub fn packets_for_delay(max_delay_ns: i64) -> usize {
    let ns = max_delay_ns.max(0) + 250_000_000;
    (ns as u64).div_ceil(2_500_000) as usize
}

/// Configuration of one stream's playout.
#[derive(Debug, Clone, Copy)]
pub struct PlayoutConfig {
    /// Fixed or adaptive delay.
    pub mode: DelayMode,
    /// Channels of the decoded output (1 or 2); Opus up/down-mixes the stream to it.
    pub channels: usize,
    /// Fixed mode: delay from a packet's arrival to its pull by the output callback.
    /// Adaptive mode: the initial target.
    pub latency_ns: i64,
    /// Packet slots of the jitter buffer (bounds memory and the look-ahead).
    pub capacity_packets: usize,
    /// Continuous dry concealment after which the stream goes idle.
    pub idle_after_ns: i64,
}

impl Default for PlayoutConfig {
    fn default() -> Self {
        PlayoutConfig {
            mode: DelayMode::Fixed,
            channels: 2,
            latency_ns: 20_000_000,
            capacity_packets: 1024,
            idle_after_ns: 500_000_000,
        }
    }
}

/// Result of [`StreamPlayout::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Buffered,
    Duplicate,
    Late,
    Overflow,
    /// Sequence jump (RFC 3550 A.1); dropped.
    SeqJump,
}

/// The affine map from extended RTP timestamp to output frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    pub out_frame0: u64,
    pub ts0: u64,
}

impl Timeline {
    pub fn ts_at(&self, out_frame: u64) -> Option<u64> {
        out_frame.checked_sub(self.out_frame0).map(|d| self.ts0 + d)
    }
}

#[derive(Debug, Clone, Copy)]
struct PacketRef {
    ext_seq: u64,
    ext_ts: u64,
    arrival_ns: i64,
}

pub struct StreamPlayout {
    cfg: PlayoutConfig,
    ssrc: u32,
    store: PacketStore,
    /// Last extended sequence number inserted into each slot position (duplicate check
    /// that still works after the packet was played).
    seen: Vec<u64>,
    seq_ext: SeqExtender,
    ts_ext: TimestampExtender,
    register: ReceptionRegister,
    counters: StreamCounters,
    timeline: Option<Timeline>,
    timelines_started: u64,
    first_pending: Option<PacketRef>,
    newest_pending: Option<PacketRef>,
    next_seq: u64,
    highest_ts_end: u64,
    decoder: opus::Decoder,
    dec: Vec<f32>,
    dec_len: usize,
    dec_pos: usize,
    last_frame_samples: u32,
    concealing: bool,
    /// The buffer ran dry while playing: the concealment since then is pending, counted as
    /// an underrun and concealment if the stream resumes, as its end if it does not.
    dry: bool,
    dry_samples: u64,
    dry_frames: u64,
    /// The dry run began with losses in the last [`LOSS_MEMORY_NS`].
    dry_after_loss: bool,
    ended: bool,
    /// Packets wholly before this timestamp were discarded at the start, not late.
    skip_until_ts: u64,
    /// Stream frames read so far: the timeline's domain. Advances with the output frames,
    /// at the drift rate, and jumps with time-scale modification.
    read_frame: u64,
    /// Drift follower between stream and output (rate 1: a bit-exact copy). Always
    /// present; taken out while rendering.
    rate_stage: Option<RateStage>,
    /// Adaptive mode: pitch-period time-scale modification that moves the delay.
    stretch: Option<StretchStage>,
    stretch_policy: StretchPolicy,
    estimator: DelayEstimator,
    drift: DriftEstimator,
    follower: DriftFollower,
    /// Fixed mode: the delay's reference and its deviation (clock drift to correct).
    hold: DelayHold,
    /// Extended timestamp whose media time is 0 (first packet since the last restart).
    ts_base: Option<u64>,
    target_delay_ns: i64,
    /// Adaptive mode: a new stream's first minute.
    start_hold: Option<StartHold>,
    delay_ns: Option<i64>,
    last_pull_ns: Option<i64>,
    highest_seq: Option<u64>,
    conceal_run: u64,
    interrupted: bool,
    /// Frames after a lost one that carry what recovers it: 1 for in-band FEC (SILK or
    /// hybrid packets), the redundancy depth for RFC 2198 (0 = no recovery possible).
    recovery_depth: u64,
    /// When (pull time) the last missing packet was found.
    last_missing_ns: Option<i64>,
}

/// Creating the stream failed.
#[derive(Debug, thiserror::Error)]
pub enum PlayoutError {
    #[error("cannot create Opus decoder: {0}")]
    Decoder(#[from] opus::Error),
    #[error("{0}")]
    Resampler(String),
}

impl StreamPlayout {
    /// Allocates everything the stream will ever need.
    pub fn new(ssrc: u32, cfg: PlayoutConfig) -> Result<Self, PlayoutError> {
        let channels = if cfg.channels >= 2 {
            opus::Channels::Stereo
        } else {
            opus::Channels::Mono
        };
        let ch = if cfg.channels >= 2 { 2 } else { 1 };
        let cfg = PlayoutConfig { channels: ch, ..cfg };
        let mut decoder = opus::Decoder::new(SAMPLE_RATE, channels)?;
        // Touch the decoder's state now, off the audio thread (one concealed frame), so its
        // first real decode in the callback finds it resident. (A precaution like
        // `mem::resident_vec`: no effect was measurable on the test VM.)
        let mut warm = vec![0f32; 960 * ch];
        let _ = decoder.decode_float(&[], &mut warm, false);
        let _ = decoder.reset_state();
        Ok(StreamPlayout {
            ssrc,
            store: PacketStore::new(cfg.capacity_packets),
            seen: crate::mem::resident_vec(cfg.capacity_packets.max(1), u64::MAX),
            seq_ext: SeqExtender::new(),
            ts_ext: TimestampExtender::new(),
            register: ReceptionRegister::new(),
            counters: StreamCounters::default(),
            timeline: None,
            timelines_started: 0,
            first_pending: None,
            newest_pending: None,
            next_seq: 0,
            highest_ts_end: 0,
            decoder,
            dec: crate::mem::resident_vec(MAX_OPUS_PACKET_SAMPLES * ch, 0.0),
            dec_len: 0,
            dec_pos: 0,
            last_frame_samples: 480,
            concealing: false,
            dry: false,
            dry_samples: 0,
            dry_frames: 0,
            dry_after_loss: false,
            ended: false,
            skip_until_ts: 0,
            read_frame: 0,
            rate_stage: Some(RateStage::new(ch).map_err(|e| PlayoutError::Resampler(e.to_string()))?),
            stretch: match cfg.mode {
                DelayMode::Adaptive { .. } => Some(StretchStage::new(ch)),
                DelayMode::Fixed => None,
            },
            stretch_policy: StretchPolicy::new(),
            estimator: DelayEstimator::new(match cfg.mode {
                DelayMode::Adaptive { quantile, .. } => quantile,
                DelayMode::Fixed => 0.99,
            }),
            drift: DriftEstimator::new(),
            follower: DriftFollower::new(),
            hold: DelayHold::default(),
            ts_base: None,
            target_delay_ns: cfg.latency_ns,
            start_hold: None,
            delay_ns: None,
            last_pull_ns: None,
            highest_seq: None,
            conceal_run: 0,
            interrupted: false,
            recovery_depth: 0,
            last_missing_ns: None,
            cfg,
        })
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn config(&self) -> &PlayoutConfig {
        &self.cfg
    }

    pub fn counters(&self) -> &StreamCounters {
        &self.counters
    }

    pub fn register(&self) -> &ReceptionRegister {
        &self.register
    }

    pub fn register_mut(&mut self) -> &mut ReceptionRegister {
        &mut self.register
    }

    pub fn timeline(&self) -> Option<Timeline> {
        self.timeline
    }

    /// Audio buffered ahead of the playout point, in samples (0 when not playing).
    pub fn buffered_samples(&self) -> u64 {
        match self.playing_ts() {
            Some(ts) => self.highest_ts_end.saturating_sub(ts),
            None => 0,
        }
    }

    /// Current target delay (above the fastest path; fixed mode: the configured latency).
    pub fn target_delay_ns(&self) -> i64 {
        self.target_delay_ns
    }

    /// Measured delay of the playout point above the fastest path, at the last pull.
    pub fn delay_ns(&self) -> Option<i64> {
        self.delay_ns
    }

    /// Playout rate (stream samples per output sample): exactly 1 unless clock drift is
    /// being corrected.
    pub fn rate(&self) -> f64 {
        self.follower.rate()
    }

    /// Estimated clock offset of the sender relative to the output device (stream samples
    /// per output sample − 1), measured on its own (see [`crate::drift`]); 0 until known.
    pub fn drift(&self) -> f64 {
        self.drift.drift().unwrap_or(0.0)
    }

    /// RTP timestamp (extended) of the sample the device plays at the first frame of the
    /// next pull: the stream position read, less the frames the stages still hold.
    pub fn playing_ts(&self) -> Option<u64> {
        let ts = self.timeline?.ts_at(self.read_frame)?;
        Some(ts.saturating_sub(self.held_frames()))
    }

    /// Original packets waiting in the jitter buffer, and its capacity. O(capacity).
    pub fn buffered_packets(&self) -> (usize, usize) {
        (self.store.originals(), self.store.capacity())
    }

    /// The sender said goodbye and everything it sent has been played.
    pub fn has_finished(&self) -> bool {
        self.ended && self.timeline.is_none()
    }

    /// Whether the stream currently has a playout timeline.
    pub fn is_playing(&self) -> bool {
        self.timeline.is_some()
    }

    /// The sender said goodbye (RTCP BYE): play out what is buffered, then go idle without
    /// counting the end of the stream as an underrun or concealment.
    pub fn end_of_stream(&mut self) {
        self.ended = true;
    }

    /// Source validation confirmed a jump of the sender's sequence (a restart, a timestamp
    /// jump after a pause; see [`crate::source`]): the next packet starts a new sequence
    /// and a new timeline, what is buffered is discarded.
    pub fn restart_sequence(&mut self) {
        self.register = ReceptionRegister::new();
        self.restart();
    }

    /// Hand a validated packet to the stream. `arrival_ns` is its arrival instant on the
    /// same clock as the `now_ns` given to [`pull`](Self::pull).
    pub fn insert(&mut self, h: &RtpOpusHeader, payload: &[u8], arrival_ns: i64) -> InsertOutcome {
        let arrival_rtp = (arrival_ns as i128 * SAMPLE_RATE as i128 / 1_000_000_000) as u32;
        match self.register.update(h.sequence, h.timestamp, arrival_rtp) {
            SeqVerdict::Jump => {
                self.counters.seq_jumps += 1;
                return InsertOutcome::SeqJump;
            }
            SeqVerdict::Restarted => self.restart(),
            SeqVerdict::Valid => {}
        }
        self.counters.packets_received += 1;
        self.counters.payload_bytes += payload.len() as u64;
        self.ended = false;
        let ext_seq = self.seq_ext.extend(h.sequence);
        let ext_ts = self.ts_ext.extend(h.timestamp);
        let slot = (ext_seq % self.seen.len() as u64) as usize;
        if self.seen[slot] == ext_seq {
            self.counters.duplicates += 1;
            return InsertOutcome::Duplicate;
        }
        if self.timeline.is_some() {
            if ext_seq < self.next_seq {
                self.counters.late += 1;
                self.seen[slot] = ext_seq;
                self.observe_arrival(ext_seq, ext_ts, arrival_ns);
                return InsertOutcome::Late;
            }
            if ext_seq >= self.next_seq + self.store.capacity() as u64 {
                self.counters.overflow += 1;
                return InsertOutcome::Overflow;
            }
        }
        let meta = StoredPacket {
            ext_seq,
            ext_ts,
            duration_samples: h.duration_samples,
            arrival_ns,
            len: payload.len(),
            redundant: false,
        };
        if self.store.get(ext_seq).is_some_and(|(m, _)| m.redundant) {
            // The original arrived after a redundant copy stood in for it: it replaces it.
            self.store.remove(ext_seq);
        }
        match self.store.insert(meta, payload) {
            StoreOutcome::Stored => {}
            StoreOutcome::Duplicate => {
                self.counters.duplicates += 1;
                return InsertOutcome::Duplicate;
            }
            StoreOutcome::SlotBusy | StoreOutcome::TooLarge => {
                self.counters.overflow += 1;
                return InsertOutcome::Overflow;
            }
        }
        self.seen[slot] = ext_seq;
        self.highest_ts_end = self.highest_ts_end.max(ext_ts + h.duration_samples as u64);
        self.observe_arrival(ext_seq, ext_ts, arrival_ns);
        if opus_packet_may_carry_fec(payload) {
            self.recovery_depth = self.recovery_depth.max(1);
        }
        if self.timeline.is_none() {
            let r = PacketRef {
                ext_seq,
                ext_ts,
                arrival_ns,
            };
            if self.first_pending.is_none_or(|f| ext_seq < f.ext_seq) {
                self.first_pending = Some(r);
            }
            if self.newest_pending.is_none_or(|n| ext_seq > n.ext_seq) {
                self.newest_pending = Some(r);
            }
        }
        InsertOutcome::Buffered
    }

    /// Offer a frame recovered from RFC 2198 redundancy: the Opus frame of packet `sequence`
    /// (timestamp `timestamp`), carried by a later packet. Stored as a stand-in if that
    /// packet has not arrived and its playout time has not passed; the original replaces it
    /// if it still arrives. Redundant copies are not counted as received packets.
    pub fn insert_redundant(&mut self, sequence: u16, timestamp: u32, duration_samples: u32, payload: &[u8]) {
        if self.seq_ext.highest().is_none() || duration_samples == 0 {
            return;
        }
        let ext_seq = self.seq_ext.peek(sequence);
        let ext_ts = self.ts_ext.peek(timestamp);
        if let Some(h) = self.highest_seq {
            self.recovery_depth = self.recovery_depth.max(h.saturating_sub(ext_seq).min(3));
        }
        let slot = (ext_seq % self.seen.len() as u64) as usize;
        if self.seen[slot] == ext_seq || self.store.get(ext_seq).is_some() {
            return;
        }
        if self.timeline.is_some()
            && (ext_seq < self.next_seq || ext_seq >= self.next_seq + self.store.capacity() as u64)
        {
            return;
        }
        let meta = StoredPacket {
            ext_seq,
            ext_ts,
            duration_samples,
            arrival_ns: 0,
            len: payload.len(),
            redundant: true,
        };
        if self.store.insert(meta, payload) == StoreOutcome::Stored {
            self.highest_ts_end = self.highest_ts_end.max(ext_ts + duration_samples as u64);
        }
    }

    /// Feed the delay estimator and the reorder count with a (non-duplicate) arrival.
    fn observe_arrival(&mut self, ext_seq: u64, ext_ts: u64, arrival_ns: i64) {
        match self.highest_seq {
            Some(h) if ext_seq < h => self.counters.reordered += 1,
            _ => self.highest_seq = Some(ext_seq),
        }
        let base = *self.ts_base.get_or_insert(ext_ts);
        let media = frames_to_ns(ext_ts as i64 - base as i64);
        self.drift.observe_packet(arrival_ns, media);
        self.estimator
            .observe(arrival_ns, media, self.drift.transit_slope());
    }

    /// Forget the sequence/timestamp spaces and the timeline (sender restarted).
    fn restart(&mut self) {
        self.counters.discarded += self.store.originals() as u64;
        self.store.clear();
        self.seen.iter_mut().for_each(|s| *s = u64::MAX);
        self.seq_ext.reset();
        self.ts_ext.reset();
        self.go_idle();
        self.highest_ts_end = 0;
        self.ts_base = None;
        self.highest_seq = None;
        self.estimator.reset();
        self.drift.reset();
    }

    /// The timeline ends: the stream stopped (BYE, silence, a sender restart). Counted as
    /// `ended`; a dry run's pending concealment was the end, not a glitch, and is dropped.
    fn go_idle(&mut self) {
        if self.timeline.is_some() {
            self.counters.ended += 1;
        }
        self.dry_frames = 0;
        self.timeline = None;
        self.first_pending = None;
        self.newest_pending = None;
        self.dec_len = 0;
        self.dec_pos = 0;
        self.concealing = false;
        self.dry = false;
        self.dry_samples = 0;
        self.conceal_run = 0;
        self.interrupted = false;
        if let Some(stage) = self.rate_stage.as_mut() {
            stage.reset();
        }
        if let Some(stage) = self.stretch.as_mut() {
            stage.reset();
        }
        self.stretch_policy = StretchPolicy::new();
        self.hold = DelayHold::default();
        self.delay_ns = None;
        let _ = self.decoder.reset_state();
    }

    fn establish(&mut self, out_frame: u64, now_ns: i64) {
        let (Some(first), Some(newest)) = (self.first_pending, self.newest_pending) else {
            return;
        };
        let mut start_delay_ns = self.target_delay_ns;
        if let DelayMode::Adaptive { min_ns, max_ns, .. } = self.cfg.mode {
            // Warm-up: listen to the path for a moment, then start *above* the target it
            // gave (which already covers the largest relative delay heard): the delay then
            // comes down to the target by removing pitch periods, and never has to be built
            // up by playing slow.
            if now_ns - first.arrival_ns < ADAPTIVE_WARMUP_NS {
                return;
            }
            // The cushion is at least the frames that recover a loss (FEC in the next
            // packet, RFC 2198 copies in the next ones): the first loss of a stream is then
            // recovered too, not only those after it (measured: one PLC'd first loss cost
            // 0.19 PESQ-WB on 20 s of speech at 1 % loss).
            let frame = self
                .store
                .get(first.ext_seq)
                .map_or(self.last_frame_samples, |(m, _)| m.duration_samples);
            let recovery = self.recovery_depth as i64 * frames_to_ns(frame as i64);
            let cushion = START_CUSHION_NS.max(recovery + 2_000_000);
            let floor = (self.target_delay_ns + cushion).clamp(min_ns, max_ns.max(min_ns));
            // A short warm-up sees about half of a wide path's spread (ten packets of a
            // 20 ms-sd path: 40–50 ms of about 120): start twice that spread higher, and
            // stay there while the path shows the rest. Repetitions while the target
            // caught up from the warm-up's made most of the adaptive loss under jitter20
            // (PESQ-WB 3.69 in the first 4 s of speech, 4.23–4.33 after 8 s; BENCHMARKS
            // §4). The excess then comes off by removals in quiet passages.
            let spread = self.estimator.target_ns();
            start_delay_ns = (floor + 2 * spread).clamp(min_ns, max_ns.max(min_ns));
            self.start_hold = Some(StartHold {
                start_ns: start_delay_ns,
                settle_until: now_ns + START_SETTLE_NS,
                floor_ns: floor,
                until: now_ns + START_HOLD_NS,
            });
        }
        let adaptive_start = match (self.cfg.mode, self.ts_base, self.estimator.min_transit_ns()) {
            // Adaptive: start with the delay above the fastest path equal to the target, so
            // a packet held up by a spike does not set the delay.
            (DelayMode::Adaptive { .. }, Some(base), Some(min_transit)) => {
                let media = frames_to_ns(first.ext_ts as i64 - base as i64);
                Some(out_frame as i64 + ns_to_frames_ceil(media + min_transit + start_delay_ns - now_ns))
            }
            _ => None,
        };
        let out_first = adaptive_start.unwrap_or_else(|| {
            // Fixed: the newest buffered packet is pulled exactly `latency` after it arrived.
            // (in fixed mode the target is the configured latency, and never changes)
            let wait_frames = ns_to_frames_ceil(newest.arrival_ns + self.target_delay_ns - now_ns);
            let span = (newest.ext_ts - first.ext_ts.min(newest.ext_ts)) as i64;
            out_frame as i64 + wait_frames - span
        });
        let timeline = if out_first >= out_frame as i64 {
            self.next_seq = first.ext_seq;
            Timeline {
                out_frame0: out_first as u64,
                ts0: first.ext_ts,
            }
        } else {
            // The oldest buffered audio is already due: start the timeline at the point
            // that keeps the configured delay; older packets are discarded.
            let ts0 = first.ext_ts + (out_frame as i64 - out_first) as u64;
            self.skip_until_ts = ts0;
            self.prune_before(first.ext_seq, ts0);
            Timeline {
                out_frame0: out_frame,
                ts0,
            }
        };
        self.timeline = Some(timeline);
        self.timelines_started += 1;
        if self.timelines_started > 1 {
            self.counters.resyncs += 1;
        }
        self.hold = DelayHold::default();
        self.first_pending = None;
        self.newest_pending = None;
        self.dec_len = 0;
        self.dec_pos = 0;
    }

    /// At a stream start, drop the packets wholly before `ts0` without decoding them (there
    /// is no played audio to keep continuous yet), all but the last, which is decoded to
    /// prime the decoder. Without this an adaptive start decoded its whole 200 ms warm-up
    /// in one period: about 20 decodes per stream, 90-120 ms for 256 streams starting
    /// together (measured with `stream_scale`). Only the consecutive run from `first_seq`
    /// is pruned; the counters are those the playout would have given them.
    fn prune_before(&mut self, first_seq: u64, ts0: u64) {
        self.next_seq = first_seq;
        let mut last_past: Option<(u64, bool)> = None;
        for seq in first_seq..first_seq + self.store.capacity() as u64 {
            let Some((meta, _)) = self.store.get(seq) else {
                break;
            };
            if meta.ext_ts + meta.duration_samples as u64 > ts0 {
                break;
            }
            if let Some((prev, redundant)) = last_past {
                self.store.remove(prev);
                if !redundant {
                    self.counters.discarded += 1;
                }
            }
            last_past = Some((seq, meta.redundant));
        }
        if let Some((seq, _)) = last_past {
            self.next_seq = seq;
        }
    }

    /// Produce `out.len() / channels` interleaved frames for output frames starting at
    /// `out_frame`, pulled at `now_ns`. Every frame is written.
    pub fn pull(&mut self, out: &mut [f32], out_frame: u64, now_ns: i64, sink: &mut impl SegmentSink) {
        let ch = self.cfg.channels;
        let frames = out.len() / ch;
        self.drift.observe_output(now_ns, out_frame);
        // the next frame read plays after the frames the stages still hold
        let held = self.held_frames();
        if self.timeline.is_none() && held == 0 {
            // nothing in flight: stream positions start as output frames
            self.read_frame = out_frame;
        }
        self.update_delay(now_ns, frames);
        if self.timeline.is_none() {
            self.establish(self.read_frame, now_ns + frames_to_ns(held as i64));
        }
        // segments are reported at the output frame they play at (exact at rate 1 and
        // between splices; within one frame per 1000 ppm of drift per period otherwise)
        let mut sink = Reposition {
            sink,
            offset: out_frame as i64 + held as i64 - self.read_frame as i64,
        };
        let sink = &mut sink;
        let request = self.stretch_request(now_ns, frames);
        let (Some(mut rate), mut stretch) = (self.rate_stage.take(), self.stretch.take()) else {
            out.fill(0.0);
            return;
        };
        rate.set_rate(self.follower.rate());
        let mut read_frame = self.read_frame;
        let mut request = request;
        let mut source = |buf: &mut [f32]| {
            let mut read = |b: &mut [f32]| {
                self.read_stream(b, read_frame, sink);
                read_frame += (b.len() / ch) as u64;
            };
            match stretch.as_mut() {
                Some(st) => st.render(buf, request.take(), &mut read),
                None => read(buf),
            }
        };
        if rate.rate() == 1.0 && rate.latency_stream_frames() == 0.0 {
            // No drift to follow and nothing held: the stream goes straight to the output,
            // read no earlier than it plays.
            source(out);
        } else {
            rate.render(out, source);
        }
        if let Some(st) = stretch.as_mut() {
            let spliced = st.take_splice();
            if spliced != 0 {
                self.counters.tsm_operations += 1;
                if spliced > 0 {
                    self.counters.tsm_removed_samples += spliced as u64;
                } else {
                    self.counters.tsm_inserted_samples += spliced.unsigned_abs();
                }
                self.stretch_policy.spliced(now_ns);
            }
        }
        self.read_frame = read_frame;
        self.rate_stage = Some(rate);
        self.stretch = stretch;
    }

    /// Stream frames read but not played yet: inside the rate stage and the stretch stage.
    fn held_frames(&self) -> u64 {
        let rate = self
            .rate_stage
            .as_ref()
            .map_or(0.0, |r| r.latency_stream_frames());
        rate.round() as u64 + self.stretch.as_ref().map_or(0, |s| s.ahead_frames()) as u64
    }

    /// Measure the delay above the fastest path, update the target (adaptive), and the
    /// rate that follows clock drift.
    fn update_delay(&mut self, now_ns: i64, frames: usize) {
        self.last_pull_ns = Some(now_ns);
        if let DelayMode::Adaptive { min_ns, max_ns, .. } = self.cfg.mode {
            if self.estimator.samples() > 0 {
                // a packet must be there at the start of the callback that needs it
                let mut want = self.estimator.target_ns() + frames_to_ns(frames as i64) + 500_000;
                // while packets are being lost, hold the frames that can recover them
                // (FEC of the next packet, RFC 2198 copies in the next ones)
                if self.last_missing_ns.is_some_and(|t| now_ns - t < LOSS_MEMORY_NS) {
                    want += self.recovery_depth as i64 * frames_to_ns(self.last_frame_samples as i64);
                }
                // for its first minute a stream keeps its cushion above the target as the
                // target moves (ffmpeg's bursts grew past the warm-up's: 1 late packet a
                // minute with the cushion on the warm-up's target alone)
                if let Some(h) = self.start_hold {
                    if now_ns < h.settle_until {
                        want = (want + START_CUSHION_NS).max(h.start_ns);
                    } else if now_ns < h.until {
                        want = (want + START_CUSHION_NS).max(h.floor_ns);
                    }
                }
                self.target_delay_ns = want.clamp(min_ns, max_ns.max(min_ns));
            }
        }
        let (Some(ts), Some(base), Some(min_transit)) =
            (self.playing_ts(), self.ts_base, self.estimator.min_transit_ns())
        else {
            self.delay_ns = None;
            return;
        };
        let media = frames_to_ns(ts as i64 - base as i64);
        let delay = now_ns - media - min_transit;
        self.delay_ns = Some(delay);
        let fixed_error = match self.cfg.mode {
            DelayMode::Fixed => self.hold.observe(delay, frames as u64),
            DelayMode::Adaptive { .. } => None,
        };
        self.follower.update(self.drift.correction(), fixed_error);
    }

    /// Whether a delay of `delay_ns` above the fastest path already covers what the path
    /// itself calls for (the quantile and the peaks, callbacks of `frames`): what it lacks
    /// of the target is then only the start-up cushion or the room to recover losses. (A
    /// first version asked only for 99.8 % of the recent packets; a tone, which never
    /// pauses, then waited past the rare hiccups the peaks are there for: 1, 2 and 1 late
    /// packets in the 10-minute clean soak.)
    fn covers(&self, delay_ns: i64, frames: usize) -> bool {
        delay_ns >= self.estimator.target_ns() + frames_to_ns(frames as i64) + 500_000
    }

    /// Adaptive mode: what to ask of the time-scale modification in this block.
    fn stretch_request(&mut self, now_ns: i64, frames: usize) -> Option<StretchRequest> {
        self.stretch.as_ref()?;
        self.timeline?;
        let delay = self.delay_ns?;
        let (accelerate, max_ns, min_quality) =
            self.stretch_policy
                .decide(delay, self.target_delay_ns, now_ns, self.covers(delay, frames))?;
        let max_frames = ns_to_frames_ceil(max_ns).max(0) as usize;
        let lookahead_frames = self.lookahead_frames();
        Some(if accelerate {
            StretchRequest::Accelerate {
                max_frames,
                lookahead_frames,
                min_quality,
            }
        } else {
            StretchRequest::Expand {
                max_frames,
                lookahead_frames,
                min_quality,
            }
        })
    }

    /// Stream frames that can be read ahead of the read position without concealing: the
    /// rest of the decoded packet and the buffered packets that follow it without a gap.
    fn lookahead_frames(&self) -> usize {
        let mut frames = (self.dec_len - self.dec_pos.min(self.dec_len)) as u64;
        let Some(mut ts) = self
            .timeline
            .and_then(|t| t.ts_at(self.read_frame))
            .map(|t| t + frames)
        else {
            return 0;
        };
        let mut seq = self.next_seq;
        for _ in 0..self.store.capacity() {
            match self.store.get(seq) {
                Some((m, _)) if m.ext_ts <= ts && m.ext_ts + m.duration_samples as u64 > ts => {
                    let end = m.ext_ts + m.duration_samples as u64;
                    frames += end - ts;
                    ts = end;
                    seq += 1;
                }
                _ => break,
            }
        }
        frames as usize
    }
}
