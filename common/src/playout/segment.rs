//! What every played sample came from: the segments a stream's playout reports as they
//! start to play (decoded from a packet, recovered by FEC or redundancy, concealed, or
//! silence), which the receiver writes to `--timeline` and the tests replay sample for
//! sample.

/// Where a played sample came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleSource {
    /// No stream audio (before the timeline starts, or idle).
    Silence,
    /// Decoded from the packet with this extended sequence number.
    Packet { seq: u64 },
    /// Recovered from the in-band FEC carried by packet `seq + 1`.
    Fec { seq: u64 },
    /// Decoded from an RFC 2198 redundant copy of packet `seq` carried by a later packet.
    Redundancy { seq: u64 },
    /// Packet loss concealment.
    Plc,
    /// Concealment in a dry run after its first frame, multiplied by
    /// [`crate::playout::dry_fade_gain`]`(fade_pos + k)` for its `k`-th frame.
    FadingPlc { fade_pos: u32 },
}

/// A run of output frames with one source. `rtp_ts` is the extended RTP timestamp of its
/// first frame (meaningless for `Silence`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub out_frame: u64,
    pub frames: u32,
    pub rtp_ts: u64,
    pub source: SampleSource,
}

/// Receives the segments as they start playing. Called from the audio thread: must not
/// allocate, lock or block.
pub trait SegmentSink {
    fn segment(&mut self, segment: &Segment);
}

/// Moves segments from stream positions to the output frames they play at.
pub(super) struct Reposition<'a, S: SegmentSink> {
    pub(super) sink: &'a mut S,
    pub(super) offset: i64,
}

impl<S: SegmentSink> SegmentSink for Reposition<'_, S> {
    fn segment(&mut self, segment: &Segment) {
        let out_frame = (segment.out_frame as i64 + self.offset).max(0) as u64;
        self.sink.segment(&Segment {
            out_frame,
            ..*segment
        });
    }
}

/// Discards segments.
pub struct NoSegments;
impl SegmentSink for NoSegments {
    fn segment(&mut self, _segment: &Segment) {}
}
