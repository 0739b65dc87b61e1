//! RFC 2198 redundant audio ("RED") carrying Opus: each RTP packet holds the current Opus
//! packet (the *primary* encoding) plus copies of the previous N Opus packets (the
//! *redundant* blocks), so that a lost packet's audio arrives again in the next one.
//!
//! # Why
//!
//! Opus in-band FEC (LBRR) exists only in SILK and hybrid modes; with
//! `--application lowdelay` (CELT only) it does nothing. RED works with every mode because
//! it repeats whole Opus packets.
//!
//! # Cost and benefit
//!
//! - Bitrate: about `bitrate × (N + 1)`, plus 4 bytes of RED header per redundant block and
//!   1 byte for the primary (and the usual 12-byte RTP + UDP/IP headers, paid once per
//!   packet). At 128 kb/s with 10 ms frames (160-byte Opus packets) N = 2 sends
//!   ~3 × 160 + 9 = 489 payload bytes per packet.
//! - Recovery: any run of up to N consecutive lost packets is fully recovered, bit-exact
//!   (the redundant copy is the very same Opus packet), as long as the packet after the
//!   run arrives in time. It adds no delay at the sender; at the receiver a frame can be
//!   recovered only once the next packet is there, i.e. if the jitter buffer holds at least
//!   one frame more than the loss it should repair (k frames for k consecutive losses).
//! - Blocks are dropped (the packet carries fewer) when they would not fit in one datagram
//!   ([`MAX_DATAGRAM_LEN`] − 12-byte RTP header), when an Opus packet is longer than the
//!   10-bit block length allows (1023 bytes: only at very high bitrates with long frames),
//!   or when the timestamp offset exceeds 14 bits (16383 samples = 341 ms at 48 kHz).
//!
//! # Wire format (RFC 2198 §3)
//!
//! ```text
//! redundant block header, 4 bytes each, oldest first:
//!   |1| block PT (7) | timestamp offset (14) | block length (10) |
//! primary header, 1 byte:
//!   |0| block PT (7) |
//! then the block data in the same order, primary last (its length is what remains).
//! ```
//!
//! The RTP header carries the RED payload type, the primary's timestamp and an ordinary
//! per-packet sequence number. A block's timestamp is `packet timestamp − offset`.
//!
//! # Receiver use
//!
//! [`validate_red_rtp`] reads the RTP header with the parser of
//! [`crate::rtp::validate_opus_rtp`] ([`crate::rtp::read_rtp_header`]) and
//! returns the primary as an ordinary [`RtpOpusHeader`] (so it goes into the jitter buffer
//! as usual), plus a [`RedInfo`] that locates the redundant blocks in the datagram. When a
//! packet is missing, look in the *following* packets for a redundant block whose
//! timestamp ([`RedundantBlockInfo::timestamp`], or [`RedInfo::find`]) is the missing one,
//! and decode that block as a **normal Opus packet** (not with the FEC flag): it is a
//! complete copy of the lost packet. Blocks whose timestamp the receiver already has (as a
//! primary or from an earlier redundant copy) are ignored.
//!
//! Everything here is sans-IO and allocation-free after [`RedEncoder::new`].

use crate::rtp::{
    opus_packet_duration, read_rtp_header, DropReason, RtpOpusHeader, MAX_DATAGRAM_LEN, RTP_HEADER_LEN,
};

/// Most previous frames one packet repeats.
pub const MAX_REDUNDANCY: usize = 3;
/// Most block headers (redundant and primary together) [`parse_red`] accepts.
pub const MAX_RED_BLOCKS: usize = 16;
/// Longest redundant block the 10-bit length field can describe.
pub const MAX_RED_BLOCK_LEN: usize = 0x3ff;
/// Largest timestamp offset the 14-bit field can describe (in 48 kHz samples).
pub const MAX_RED_TS_OFFSET: u32 = 0x3fff;
/// Largest RED payload: one datagram minus the fixed RTP header.
pub const MAX_RED_PAYLOAD_LEN: usize = MAX_DATAGRAM_LEN - RTP_HEADER_LEN;

const REDUNDANT_HEADER_LEN: usize = 4;
const PRIMARY_HEADER_LEN: usize = 1;
const F_BIT: u8 = 0x80;

/// Errors building or parsing a RED payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedError {
    /// [`RedEncoder::new`] was asked for more than [`MAX_REDUNDANCY`] blocks.
    #[error("redundancy must be 0..=3")]
    RedundancyTooHigh,
    /// A block payload type above 127.
    #[error("payload type must be 0..=127")]
    PayloadTypeInvalid,
    /// The primary block is empty (building), or no bytes remain for it (parsing).
    #[error("primary encoding is empty")]
    EmptyPrimary,
    /// The primary alone does not fit in one datagram.
    #[error("primary encoding does not fit in one datagram")]
    PrimaryTooLarge,
    /// The output buffer cannot hold the RED header and the primary.
    #[error("output buffer too small for the RED payload")]
    BufferTooSmall,
    /// The block headers run past the end of the payload (also: empty payload).
    #[error("RED block headers run past the end of the payload")]
    TruncatedHeader,
    /// More than [`MAX_RED_BLOCKS`] block headers.
    #[error("more than 16 RED blocks")]
    TooManyBlocks,
    /// The redundant blocks' lengths add up to more than the payload holds.
    #[error("RED block lengths exceed the payload")]
    BlockBeyondPayload,
}

impl RedError {
    /// The [`DropReason`] bucket a receiver counts this parse error in: structural RED
    /// errors count as a bad payload ([`DropReason::BadOpus`]), a missing primary as
    /// [`DropReason::EmptyPayload`].
    pub fn drop_reason(self) -> DropReason {
        match self {
            RedError::EmptyPrimary => DropReason::EmptyPayload,
            _ => DropReason::BadOpus,
        }
    }
}

/// One remembered Opus packet. `len == 0` means it cannot be sent as a redundant block
/// (longer than [`MAX_RED_BLOCK_LEN`]); it still occupies its place in the history.
#[derive(Clone, Copy)]
struct Slot {
    data: [u8; MAX_RED_BLOCK_LEN],
    len: usize,
    pt: u8,
    timestamp: u32,
}

/// Sender side: remembers the last N Opus packets and writes RED payloads. All storage is
/// allocated in [`RedEncoder::new`]; building a payload does not allocate.
pub struct RedEncoder {
    /// Ring of the last `redundancy` frames; frame number `k` (since reset) is in slot
    /// `k % redundancy`.
    slots: Box<[Slot]>,
    /// Frames remembered since the last reset.
    frames: u64,
    last_timestamp: Option<u32>,
    blocks_sent: u64,
    blocks_skipped: u64,
    last_blocks: usize,
}

impl std::fmt::Debug for RedEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedEncoder")
            .field("redundancy", &self.slots.len())
            .field("frames", &self.frames)
            .field("last_timestamp", &self.last_timestamp)
            .field("blocks_sent", &self.blocks_sent)
            .field("blocks_skipped", &self.blocks_skipped)
            .finish()
    }
}

impl RedEncoder {
    /// An encoder that repeats the previous `redundancy` (0..=[`MAX_REDUNDANCY`]) frames.
    /// With 0 the payload is the 1-byte primary header and the primary.
    pub fn new(redundancy: usize) -> Result<Self, RedError> {
        if redundancy > MAX_REDUNDANCY {
            return Err(RedError::RedundancyTooHigh);
        }
        let empty = Slot {
            data: [0; MAX_RED_BLOCK_LEN],
            len: 0,
            pt: 0,
            timestamp: 0,
        };
        Ok(RedEncoder {
            slots: vec![empty; redundancy].into_boxed_slice(),
            frames: 0,
            last_timestamp: None,
            blocks_sent: 0,
            blocks_skipped: 0,
            last_blocks: 0,
        })
    }

    /// N: how many previous frames each packet repeats (at most).
    pub fn redundancy(&self) -> usize {
        self.slots.len()
    }

    /// Forget all remembered frames (e.g. on a timeline discontinuity). Counters are kept.
    pub fn reset(&mut self) {
        self.frames = 0;
        self.last_timestamp = None;
        self.last_blocks = 0;
        for s in self.slots.iter_mut() {
            s.len = 0;
        }
    }

    /// Redundant blocks written so far.
    pub fn blocks_sent(&self) -> u64 {
        self.blocks_sent
    }

    /// Remembered frames left out of a packet (too long for a block, offset too large, or
    /// no room in the datagram). Frames missing at the start of the stream are not counted.
    pub fn blocks_skipped(&self) -> u64 {
        self.blocks_skipped
    }

    /// Redundant blocks in the last payload built.
    pub fn last_blocks(&self) -> usize {
        self.last_blocks
    }

    /// Write the RED payload for `primary` into `out` and remember `primary` for the next
    /// calls; returns the payload length. The stream is taken to be contiguous frames of
    /// `frame_samples` each: the primary's timestamp is the previous one + `frame_samples`
    /// (redundant block k back has offset `k × frame_samples`). Use
    /// [`RedEncoder::build_payload_at`] when timestamps can jump.
    pub fn build_payload(
        &mut self,
        primary: &[u8],
        primary_pt: u8,
        frame_samples: u32,
        out: &mut [u8],
    ) -> Result<usize, RedError> {
        let timestamp = self.last_timestamp.map_or(0, |t| t.wrapping_add(frame_samples));
        self.build_payload_at(primary, primary_pt, timestamp, out)
    }

    /// Like [`RedEncoder::build_payload`] with the primary's RTP timestamp given; block
    /// offsets are the true timestamp differences, so frames skipped in the timeline are
    /// handled. Remembered frames that are not strictly earlier than `timestamp` by at most
    /// [`MAX_RED_TS_OFFSET`] are left out. Redundant blocks are chosen newest first while
    /// they fit in `min(out.len(), MAX_RED_PAYLOAD_LEN)` and written oldest first.
    ///
    /// On error `out` is left untouched and nothing is remembered.
    pub fn build_payload_at(
        &mut self,
        primary: &[u8],
        primary_pt: u8,
        timestamp: u32,
        out: &mut [u8],
    ) -> Result<usize, RedError> {
        if primary_pt > 0x7f {
            return Err(RedError::PayloadTypeInvalid);
        }
        if primary.is_empty() {
            return Err(RedError::EmptyPrimary);
        }
        if PRIMARY_HEADER_LEN + primary.len() > MAX_RED_PAYLOAD_LEN {
            return Err(RedError::PrimaryTooLarge);
        }
        let budget = out.len().min(MAX_RED_PAYLOAD_LEN);
        let mut used = PRIMARY_HEADER_LEN + primary.len();
        if used > budget {
            return Err(RedError::BufferTooSmall);
        }

        // Pick blocks newest first, so that when room is short the most useful (the
        // previous frame: repairs single losses) stays.
        let n = self.slots.len();
        let available = (self.frames.min(n as u64)) as usize;
        let mut chosen = [0usize; MAX_REDUNDANCY];
        let mut count = 0;
        for back in 1..=available {
            let idx = ((self.frames - back as u64) % n as u64) as usize;
            let slot = &self.slots[idx];
            let offset = timestamp.wrapping_sub(slot.timestamp);
            let cost = REDUNDANT_HEADER_LEN + slot.len;
            if slot.len == 0 || offset == 0 || offset > MAX_RED_TS_OFFSET || used + cost > budget {
                self.blocks_skipped += 1;
                continue;
            }
            used += cost;
            chosen[count] = idx;
            count += 1;
        }

        // Headers, oldest first, then the primary's; data in the same order.
        let mut pos = 0;
        for &idx in chosen[..count].iter().rev() {
            let slot = &self.slots[idx];
            let offset = timestamp.wrapping_sub(slot.timestamp);
            let word = (u32::from(F_BIT | slot.pt) << 24) | (offset << 10) | slot.len as u32;
            out[pos..pos + REDUNDANT_HEADER_LEN].copy_from_slice(&word.to_be_bytes());
            pos += REDUNDANT_HEADER_LEN;
        }
        out[pos] = primary_pt;
        pos += PRIMARY_HEADER_LEN;
        for &idx in chosen[..count].iter().rev() {
            let slot = &self.slots[idx];
            out[pos..pos + slot.len].copy_from_slice(&slot.data[..slot.len]);
            pos += slot.len;
        }
        out[pos..pos + primary.len()].copy_from_slice(primary);
        pos += primary.len();
        debug_assert_eq!(pos, used);

        self.blocks_sent += count as u64;
        self.last_blocks = count;
        self.last_timestamp = Some(timestamp);
        if n > 0 {
            let slot = &mut self.slots[(self.frames % n as u64) as usize];
            slot.pt = primary_pt;
            slot.timestamp = timestamp;
            if primary.len() <= MAX_RED_BLOCK_LEN {
                slot.data[..primary.len()].copy_from_slice(primary);
                slot.len = primary.len();
            } else {
                slot.len = 0;
            }
        }
        self.frames += 1;
        Ok(pos)
    }
}

/// One block of a RED payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedBlock<'a> {
    /// Block payload type (7 bits).
    pub pt: u8,
    /// Timestamp offset: the block's timestamp is the packet's minus this (0 for the
    /// primary).
    pub ts_offset: u32,
    pub data: &'a [u8],
    /// The last block, whose timestamp is the packet's.
    pub primary: bool,
}

/// The blocks of a validated RED payload, oldest first, primary last. Zero-copy.
#[derive(Debug, Clone)]
pub struct RedBlocks<'a> {
    /// Headers not yet iterated (the primary's 1-byte header last).
    headers: &'a [u8],
    /// Block data not yet iterated.
    data: &'a [u8],
    /// Blocks not yet iterated, primary included.
    remaining: usize,
    header_len: usize,
    primary_pt: u8,
    primary: &'a [u8],
}

impl<'a> RedBlocks<'a> {
    /// Number of redundant blocks in the payload (not counting the primary).
    pub fn redundant_count(&self) -> usize {
        (self.header_len - PRIMARY_HEADER_LEN) / REDUNDANT_HEADER_LEN
    }

    /// Bytes of block headers at the start of the payload.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// The primary block.
    pub fn primary(&self) -> RedBlock<'a> {
        RedBlock {
            pt: self.primary_pt,
            ts_offset: 0,
            data: self.primary,
            primary: true,
        }
    }
}

impl<'a> Iterator for RedBlocks<'a> {
    type Item = RedBlock<'a>;

    fn next(&mut self) -> Option<RedBlock<'a>> {
        match self.remaining {
            0 => None,
            1 => {
                self.remaining = 0;
                self.headers = &[];
                self.data = &[];
                Some(self.primary())
            }
            _ => {
                let (h, rest) = self.headers.split_first_chunk::<REDUNDANT_HEADER_LEN>()?;
                let word = u32::from_be_bytes(*h);
                let len = (word & 0x3ff) as usize;
                let (data, tail) = self.data.split_at_checked(len)?;
                self.headers = rest;
                self.data = tail;
                self.remaining -= 1;
                Some(RedBlock {
                    pt: h[0] & 0x7f,
                    ts_offset: (word >> 10) & 0x3fff,
                    data,
                    primary: false,
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for RedBlocks<'_> {}

/// Parse a RED payload (the RTP payload, padding removed). The whole structure is checked
/// here, so iterating the result yields every block. Never panics, whatever the bytes.
pub fn parse_red(payload: &[u8]) -> Result<RedBlocks<'_>, RedError> {
    let mut pos = 0;
    let mut blocks = 0;
    let mut redundant_len = 0usize;
    let primary_pt = loop {
        let Some(&b) = payload.get(pos) else {
            return Err(RedError::TruncatedHeader);
        };
        blocks += 1;
        if blocks > MAX_RED_BLOCKS {
            return Err(RedError::TooManyBlocks);
        }
        if b & F_BIT == 0 {
            pos += PRIMARY_HEADER_LEN;
            break b;
        }
        let Some(h) = payload.get(pos..pos + REDUNDANT_HEADER_LEN) else {
            return Err(RedError::TruncatedHeader);
        };
        redundant_len += usize::from(u16::from_be_bytes([h[2], h[3]]) & 0x3ff);
        pos += REDUNDANT_HEADER_LEN;
    };
    let (headers, data) = payload.split_at(pos);
    if redundant_len > data.len() {
        return Err(RedError::BlockBeyondPayload);
    }
    if redundant_len == data.len() {
        return Err(RedError::EmptyPrimary);
    }
    Ok(RedBlocks {
        headers,
        data,
        remaining: blocks,
        header_len: pos,
        primary_pt,
        primary: &data[redundant_len..],
    })
}

/// Whether `datagram`, which carries some other payload type than the RED one the receiver
/// was told, is nevertheless an RFC 2198 packet of Opus blocks: at least one redundant
/// block, every block a valid Opus packet of one dynamic payload type other than the
/// packet's, each redundant block's timestamp offset a whole number of primary frames.
/// Returns that packet's payload type. Strict on purpose: an Opus packet read as RED
/// passes by chance about once in millions (the primary header must repeat the block
/// type, the offsets land on frame multiples, the lengths add up), so the receiver uses
/// this only to drop such packets instead of decoding them as Opus, and to say which
/// `--red-payload-type` would play them.
pub fn looks_like_red(datagram: &[u8]) -> Option<u8> {
    let reader = read_rtp_header(datagram).ok()?;
    let blocks = parse_red(reader.payload()).ok()?;
    let block_pt = blocks.primary_pt;
    if blocks.redundant_count() == 0 || block_pt == reader.payload_type() || !(96..=127).contains(&block_pt) {
        return None;
    }
    let frame = opus_packet_duration(blocks.primary().data)?;
    for b in blocks {
        let whole_frames = b.ts_offset > 0 && b.ts_offset % frame == 0;
        if b.pt != block_pt || opus_packet_duration(b.data).is_none() || (!b.primary && !whole_frames) {
            return None;
        }
    }
    Some(reader.payload_type())
}

/// Where one redundant block of a validated RED datagram is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedundantBlockInfo {
    /// Timestamp offset from the packet's (primary's) timestamp.
    pub ts_offset: u32,
    /// Byte offset of the block's Opus packet in the datagram.
    pub payload_offset: usize,
    pub payload_len: usize,
    /// Duration of the block's Opus packet in 48 kHz samples.
    pub duration_samples: u32,
}

impl RedundantBlockInfo {
    /// RTP timestamp of this block, given the packet's timestamp.
    pub fn timestamp(&self, packet_timestamp: u32) -> u32 {
        packet_timestamp.wrapping_sub(self.ts_offset)
    }

    /// The block's Opus packet inside `datagram` (the slice it was validated from).
    pub fn payload<'a>(&self, datagram: &'a [u8]) -> &'a [u8] {
        &datagram[self.payload_offset..self.payload_offset + self.payload_len]
    }
}

/// The redundant blocks of a validated RED datagram: the (up to) [`MAX_REDUNDANCY`] last
/// ones in the packet, oldest first. Fixed size, no allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RedInfo {
    blocks: [RedundantBlockInfo; MAX_REDUNDANCY],
    count: usize,
    in_packet: usize,
}

impl RedInfo {
    /// The redundant blocks kept, oldest first (in packet order).
    pub fn redundant(&self) -> &[RedundantBlockInfo] {
        &self.blocks[..self.count]
    }

    /// Redundant blocks the packet carried; more than [`RedInfo::redundant`] holds if a
    /// foreign sender put more than [`MAX_REDUNDANCY`] (the earliest are not kept).
    pub fn redundant_in_packet(&self) -> usize {
        self.in_packet
    }

    /// The redundant blocks that are the frames right before the primary, newest first,
    /// each with its sequence number: a block belongs to sequence number primary − k when
    /// it ends exactly where the k − 1 newer frames begin. RTP carries no sequence numbers
    /// for redundant blocks; chaining them by their timestamps and durations (not dividing
    /// the offset by one frame size) keeps frames of different sizes right. A block that
    /// does not chain (a gap in the sender's frames) ends the walk.
    pub fn frames_before(
        &self,
        primary_sequence: u16,
        primary_timestamp: u32,
    ) -> impl Iterator<Item = (u16, &RedundantBlockInfo)> + '_ {
        let mut end = primary_timestamp;
        self.redundant()
            .iter()
            .rev()
            .zip(1u16..)
            .map_while(move |(b, k)| {
                let ts = b.timestamp(primary_timestamp);
                (b.duration_samples > 0 && ts.wrapping_add(b.duration_samples) == end).then(|| {
                    end = ts;
                    (primary_sequence.wrapping_sub(k), b)
                })
            })
    }

    /// The redundant block carrying the frame with RTP timestamp `wanted`, in a packet
    /// with timestamp `packet_timestamp`.
    pub fn find(&self, packet_timestamp: u32, wanted: u32) -> Option<&RedundantBlockInfo> {
        self.redundant()
            .iter()
            .find(|b| b.timestamp(packet_timestamp) == wanted)
    }
}

/// Validate one datagram as RTP version 2 with payload type `red_pt` carrying an RFC 2198
/// RED payload whose blocks (primary and redundant) are all Opus packets with block payload
/// type `opus_pt` (`None`: whatever type the primary has, as long as every block has it).
/// Never panics, whatever the bytes.
///
/// The header is read by [`crate::rtp::read_rtp_header`], the parser
/// [`crate::rtp::validate_opus_rtp`] uses, so its faults have the same [`DropReason`]s.
/// Then: a malformed RED structure is
/// [`DropReason::BadOpus`] (no bytes left for the primary: [`DropReason::EmptyPayload`]),
/// a block with another payload type [`DropReason::WrongPayloadType`], a block that is not
/// a valid Opus packet [`DropReason::BadOpus`].
///
/// The returned header describes the primary: `payload_offset`/`payload_len` locate the
/// primary Opus packet inside the datagram and `duration_samples` is its duration, so it
/// can be handled exactly like a plain Opus packet; `payload_type` is the RTP header's
/// (`red_pt`). The [`RedInfo`] locates the redundant blocks.
pub fn validate_red_rtp(
    datagram: &[u8],
    red_pt: u8,
    opus_pt: impl Into<Option<u8>>,
) -> Result<(RtpOpusHeader, RedInfo), DropReason> {
    let reader = read_rtp_header(datagram)?;
    if reader.payload_type() != red_pt {
        return Err(DropReason::WrongPayloadType);
    }
    let payload = reader.payload();
    if payload.is_empty() {
        return Err(DropReason::EmptyPayload);
    }
    let blocks = parse_red(payload).map_err(RedError::drop_reason)?;
    let opus_pt = opus_pt.into().unwrap_or(blocks.primary_pt);
    let in_packet = blocks.redundant_count();
    let first_kept = in_packet.saturating_sub(MAX_REDUNDANCY);
    let mut info = RedInfo {
        in_packet,
        ..RedInfo::default()
    };
    let mut offset = reader.payload_offset() + blocks.header_len();
    let mut primary = None;
    for (i, block) in blocks.enumerate() {
        if block.pt != opus_pt {
            return Err(DropReason::WrongPayloadType);
        }
        let duration = opus_packet_duration(block.data).ok_or(DropReason::BadOpus)?;
        let located = RedundantBlockInfo {
            ts_offset: block.ts_offset,
            payload_offset: offset,
            payload_len: block.data.len(),
            duration_samples: duration,
        };
        offset += block.data.len();
        if block.primary {
            primary = Some(located);
        } else if i >= first_kept {
            if let Some(slot) = info.blocks.get_mut(info.count) {
                *slot = located;
                info.count += 1;
            }
        }
    }
    let primary = primary.ok_or(DropReason::EmptyPayload)?;
    let header = RtpOpusHeader::of(
        &reader,
        primary.payload_offset,
        primary.payload_len,
        primary.duration_samples,
    );
    Ok((header, info))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtp::{validate_opus_rtp, Packetizer};

    const OPUS_PT: u8 = 96;
    const RED_PT: u8 = 97;

    /// A CELT FB 10 ms (config 30, code 0) Opus packet of `len` bytes whose body encodes
    /// `tag`, so that frames can be told apart.
    fn frame(tag: u32, len: usize) -> Vec<u8> {
        let mut f = vec![30 << 3];
        f.extend((0..len.saturating_sub(1)).map(|i| (tag as usize * 7 + i) as u8));
        f
    }

    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn round_trip_n0_to_n3() {
        for n in 0..=MAX_REDUNDANCY {
            let mut enc = RedEncoder::new(n).unwrap();
            assert_eq!(enc.redundancy(), n);
            let frames: Vec<Vec<u8>> = (0..10).map(|i| frame(i, 20 + 13 * i as usize)).collect();
            let mut out = [0u8; MAX_RED_PAYLOAD_LEN];
            for (i, f) in frames.iter().enumerate() {
                let len = enc.build_payload(f, OPUS_PT, 480, &mut out).unwrap();
                let expected_red = i.min(n);
                assert_eq!(enc.last_blocks(), expected_red);
                assert_eq!(
                    len,
                    4 * expected_red + 1 + (i - expected_red..=i).map(|j| frames[j].len()).sum::<usize>()
                );
                let blocks = parse_red(&out[..len]).unwrap();
                assert_eq!(blocks.redundant_count(), expected_red);
                assert_eq!(blocks.len(), expected_red + 1);
                assert_eq!(blocks.primary().data, &f[..]);
                let all: Vec<RedBlock> = blocks.collect();
                for (k, b) in all.iter().enumerate() {
                    // oldest first: block k carries frame i - (expected_red - k)
                    let back = expected_red - k;
                    assert_eq!(b.pt, OPUS_PT);
                    assert_eq!(b.ts_offset, 480 * back as u32);
                    assert_eq!(b.data, &frames[i - back][..]);
                    assert_eq!(b.primary, back == 0);
                }
            }
            assert_eq!(enc.blocks_skipped(), 0);
        }
    }

    #[test]
    fn header_bytes_are_rfc2198() {
        let mut enc = RedEncoder::new(1).unwrap();
        let mut out = [0u8; 64];
        enc.build_payload_at(&[1, 2, 3], 100, 1000, &mut out).unwrap();
        let len = enc.build_payload_at(&[4, 5], 101, 1000 + 960, &mut out).unwrap();
        // F=1, PT 100 | offset 960 (14 bits) | length 3 (10 bits)
        let word = (1u32 << 31) | (100 << 24) | (960 << 10) | 3;
        assert_eq!(&out[..4], &word.to_be_bytes());
        assert_eq!(out[4], 101); // F=0, primary PT
        assert_eq!(&out[5..len], &[1, 2, 3, 4, 5]);
    }

    #[test]
    fn offsets_follow_true_timestamps() {
        let mut enc = RedEncoder::new(3).unwrap();
        let mut out = [0u8; MAX_RED_PAYLOAD_LEN];
        // frames at 0, 480, (gap of 1440: ring overrun) 2400, 2880 wrapping around 2^32
        let base = u32::MAX - 1000;
        for (i, ts) in [0u32, 480, 2400].iter().enumerate() {
            enc.build_payload_at(&frame(i as u32, 10), OPUS_PT, base.wrapping_add(*ts), &mut out)
                .unwrap();
        }
        let len = enc
            .build_payload_at(&frame(3, 10), OPUS_PT, base.wrapping_add(2880), &mut out)
            .unwrap();
        let offsets: Vec<u32> = parse_red(&out[..len]).unwrap().map(|b| b.ts_offset).collect();
        assert_eq!(offsets, vec![2880, 2400, 480, 0]);
        // a timestamp going backwards (or repeating) makes the history unusable
        let len = enc
            .build_payload_at(&frame(4, 10), OPUS_PT, base.wrapping_add(2880), &mut out)
            .unwrap();
        let offsets: Vec<u32> = parse_red(&out[..len]).unwrap().map(|b| b.ts_offset).collect();
        assert_eq!(offsets, vec![2400, 480, 0]);
        assert_eq!(enc.blocks_skipped(), 1);
    }

    #[test]
    fn blocks_skipped_when_they_do_not_fit() {
        let mut out = [0u8; MAX_RED_PAYLOAD_LEN];
        // 400-byte frames: primary 401 + 2 × 404 = 1209 fits, a third block (1613) does not
        let mut enc = RedEncoder::new(3).unwrap();
        for i in 0..4 {
            enc.build_payload(&frame(i, 400), OPUS_PT, 480, &mut out).unwrap();
        }
        let len = enc.build_payload(&frame(4, 400), OPUS_PT, 480, &mut out).unwrap();
        let b: Vec<RedBlock> = parse_red(&out[..len]).unwrap().collect();
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].data, &frame(2, 400)[..]); // the newest ones were kept
        assert_eq!(b[1].data, &frame(3, 400)[..]);
        assert_eq!(enc.blocks_skipped(), 2); // one in each of the last two packets
        assert!(len <= MAX_RED_PAYLOAD_LEN);

        // a frame longer than 10 bits of length is skipped, the older small ones are kept
        let mut enc = RedEncoder::new(3).unwrap();
        enc.build_payload(&frame(0, 100), OPUS_PT, 480, &mut out).unwrap();
        enc.build_payload(&frame(1, 100), OPUS_PT, 480, &mut out).unwrap();
        enc.build_payload(&frame(2, 1100), OPUS_PT, 480, &mut out)
            .unwrap();
        let len = enc.build_payload(&frame(3, 50), OPUS_PT, 480, &mut out).unwrap();
        let b: Vec<RedBlock> = parse_red(&out[..len]).unwrap().collect();
        let offsets: Vec<u32> = b.iter().map(|b| b.ts_offset).collect();
        assert_eq!(offsets, vec![1440, 960, 0]);
        assert_eq!(b[0].data, &frame(0, 100)[..]);

        // offsets beyond 14 bits: 120 ms frames, only 2 fit in 16383 samples
        let mut enc = RedEncoder::new(3).unwrap();
        for i in 0..3 {
            enc.build_payload(&frame(i, 30), OPUS_PT, 5760, &mut out).unwrap();
        }
        let len = enc.build_payload(&frame(3, 30), OPUS_PT, 5760, &mut out).unwrap();
        let offsets: Vec<u32> = parse_red(&out[..len]).unwrap().map(|b| b.ts_offset).collect();
        assert_eq!(offsets, vec![11520, 5760, 0]);

        // a small output buffer holds fewer blocks
        let mut enc = RedEncoder::new(3).unwrap();
        let mut small = [0u8; 1 + 50 + 2 * (4 + 50)];
        for i in 0..3 {
            enc.build_payload(&frame(i, 50), OPUS_PT, 480, &mut small)
                .unwrap();
        }
        let len = enc
            .build_payload(&frame(3, 50), OPUS_PT, 480, &mut small)
            .unwrap();
        assert_eq!(len, small.len());
        assert_eq!(parse_red(&small[..len]).unwrap().redundant_count(), 2);
    }

    #[test]
    fn build_errors_leave_state_unchanged() {
        let mut enc = RedEncoder::new(2).unwrap();
        let mut out = [0u8; MAX_DATAGRAM_LEN];
        enc.build_payload_at(&frame(0, 40), OPUS_PT, 0, &mut out).unwrap();
        assert_eq!(
            enc.build_payload_at(&[], OPUS_PT, 480, &mut out),
            Err(RedError::EmptyPrimary)
        );
        assert_eq!(
            enc.build_payload_at(&frame(1, 40), 128, 480, &mut out),
            Err(RedError::PayloadTypeInvalid)
        );
        assert_eq!(
            enc.build_payload_at(&frame(1, MAX_RED_PAYLOAD_LEN), OPUS_PT, 480, &mut out),
            Err(RedError::PrimaryTooLarge)
        );
        assert_eq!(
            enc.build_payload_at(&frame(1, 40), OPUS_PT, 480, &mut out[..40]),
            Err(RedError::BufferTooSmall)
        );
        // the largest primary fits, with no room for redundancy
        let len = enc
            .build_payload_at(&frame(1, MAX_RED_PAYLOAD_LEN - 1), OPUS_PT, 480, &mut out)
            .unwrap();
        assert_eq!(len, MAX_RED_PAYLOAD_LEN);
        assert_eq!(enc.last_blocks(), 0);
        let len = enc.build_payload(&frame(2, 40), OPUS_PT, 480, &mut out).unwrap();
        // frame 1 is too long for a block; frame 0 is still there, 960 back
        let offsets: Vec<u32> = parse_red(&out[..len]).unwrap().map(|b| b.ts_offset).collect();
        assert_eq!(offsets, vec![960, 0]);
        assert_eq!(RedEncoder::new(4).err(), Some(RedError::RedundancyTooHigh));
        enc.reset();
        let len = enc.build_payload(&frame(3, 40), OPUS_PT, 480, &mut out).unwrap();
        assert_eq!(parse_red(&out[..len]).unwrap().redundant_count(), 0);
    }

    #[test]
    fn malformed_payloads() {
        assert_eq!(parse_red(&[]).err(), Some(RedError::TruncatedHeader));
        // redundant header cut short
        assert_eq!(
            parse_red(&[0x80 | 96, 0, 4]).err(),
            Some(RedError::TruncatedHeader)
        );
        // redundant header complete, primary header missing
        assert_eq!(
            parse_red(&[0x80 | 96, 0, 4, 1]).err(),
            Some(RedError::TruncatedHeader)
        );
        // primary header only: no primary data
        assert_eq!(parse_red(&[96]).err(), Some(RedError::EmptyPrimary));
        // redundant block of 2 bytes, 2 bytes follow: nothing for the primary
        assert_eq!(
            parse_red(&[0x80 | 96, 0, 4, 2, 96, 1, 2]).err(),
            Some(RedError::EmptyPrimary)
        );
        // redundant block claims 3 bytes, 2 follow
        assert_eq!(
            parse_red(&[0x80 | 96, 0, 4, 3, 96, 1, 2]).err(),
            Some(RedError::BlockBeyondPayload)
        );
        // 16 headers (15 redundant) are accepted, 17 are not
        let mut p = vec![];
        for _ in 0..15 {
            p.extend_from_slice(&[0x80 | 96, 0, 4, 1]);
        }
        p.push(96);
        p.extend(std::iter::repeat_n(0xf8, 16));
        assert_eq!(parse_red(&p).unwrap().len(), 16);
        let mut q = vec![0x80 | 96, 0, 4, 1];
        q.extend_from_slice(&p);
        q.push(0xf8);
        assert_eq!(parse_red(&q).err(), Some(RedError::TooManyBlocks));
        // a zero-length redundant block parses (the RFC allows it) but is no Opus packet
        let b: Vec<RedBlock> = parse_red(&[0x80 | 96, 0, 4, 0, 96, 0xf8]).unwrap().collect();
        assert_eq!(b.len(), 2);
        assert!(b[0].data.is_empty());
    }

    /// Whatever parse_red accepts is self-consistent.
    fn check_parse(p: &[u8]) {
        if let Ok(blocks) = parse_red(p) {
            let n = blocks.len();
            assert!((1..=MAX_RED_BLOCKS).contains(&n));
            let header_len = blocks.header_len();
            assert_eq!(header_len, 1 + 4 * blocks.redundant_count());
            let primary = blocks.primary();
            let all: Vec<RedBlock> = blocks.collect();
            assert_eq!(all.len(), n);
            assert_eq!(all.last(), Some(&primary));
            assert!(!primary.data.is_empty());
            assert_eq!(
                header_len + all.iter().map(|b| b.data.len()).sum::<usize>(),
                p.len()
            );
            assert!(all.iter().all(|b| b.pt < 128 && b.ts_offset <= MAX_RED_TS_OFFSET));
        }
    }

    #[test]
    fn parse_never_panics_exhaustive_short() {
        check_parse(&[]);
        for a in 0..=255u8 {
            check_parse(&[a]);
            for b in 0..=255u8 {
                check_parse(&[a, b]);
                for c in 0..=255u8 {
                    let _ = std::hint::black_box(parse_red(std::hint::black_box(&[a, b, c])));
                }
            }
        }
    }

    #[test]
    fn parse_and_validate_never_panic_fuzz() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut buf = [0u8; MAX_DATAGRAM_LEN + 4];
        let mut accepted = 0;
        for _ in 0..100_000 {
            let len = (rng.next() % 80) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next() as u8;
            }
            // bias towards plausible headers: small lengths, F bits
            if len > 4 && rng.next() & 1 == 0 {
                buf[0] |= 0x80;
                buf[2] &= 0xfc;
                buf[3] %= 16;
                buf[4] &= 0x7f;
            }
            check_parse(&buf[..len]);
            if parse_red(&buf[..len]).is_ok() {
                accepted += 1;
            }
            // the same bytes behind an RTP header
            let mut dg = [0u8; 100];
            dg[0] = 0x80 | (rng.next() as u8 & 0x3f);
            dg[1] = RED_PT;
            dg[12..12 + len].copy_from_slice(&buf[..len]);
            let dg = &dg[..12 + len];
            if let Ok((h, info)) = validate_red_rtp(dg, RED_PT, OPUS_PT) {
                assert!(!h.payload(dg).is_empty());
                for b in info.redundant() {
                    assert!(!b.payload(dg).is_empty());
                }
            }
        }
        assert!(accepted > 1000, "fuzz too weak: {accepted}");
        // long random inputs too
        for _ in 0..2000 {
            let len = (rng.next() % buf.len() as u64) as usize;
            for b in buf[..len].iter_mut() {
                *b = rng.next() as u8;
            }
            check_parse(&buf[..len]);
            let _ = std::hint::black_box(validate_red_rtp(&buf[..len], RED_PT, OPUS_PT));
        }
    }

    fn red_packet(
        packetizer: &mut Packetizer,
        enc: &mut RedEncoder,
        frame_index: u64,
        opus: &[u8],
    ) -> Vec<u8> {
        let mut payload = [0u8; MAX_RED_PAYLOAD_LEN];
        let ts = packetizer.timestamp_of_frame(frame_index);
        let len = enc.build_payload_at(opus, OPUS_PT, ts, &mut payload).unwrap();
        let mut out = [0u8; MAX_DATAGRAM_LEN];
        let n = packetizer.build(frame_index, &payload[..len], &mut out).unwrap();
        out[..n].to_vec()
    }

    #[test]
    fn validate_round_trip_with_packetizer() {
        let mut p = Packetizer::new(0xfeed_f00d, RED_PT, 65535, u32::MAX - 500);
        let mut enc = RedEncoder::new(2).unwrap();
        let frames: Vec<Vec<u8>> = (0..5).map(|i| frame(i, 30 + i as usize)).collect();
        for (i, f) in frames.iter().enumerate() {
            let dg = red_packet(&mut p, &mut enc, i as u64 * 480, f);
            let (h, info) = validate_red_rtp(&dg, RED_PT, OPUS_PT).unwrap();
            assert_eq!(h.ssrc, 0xfeed_f00d);
            assert_eq!(h.payload_type, RED_PT);
            assert_eq!(h.sequence, 65535u16.wrapping_add(i as u16));
            assert_eq!(h.timestamp, (u32::MAX - 500).wrapping_add(i as u32 * 480));
            assert_eq!(h.marker, i == 0);
            assert_eq!(h.payload(&dg), &f[..]);
            assert_eq!(h.duration_samples, 480);
            assert_eq!(info.redundant().len(), i.min(2));
            assert_eq!(info.redundant_in_packet(), i.min(2));
            for (k, b) in info.redundant().iter().enumerate() {
                let back = i.min(2) - k;
                assert_eq!(b.ts_offset, 480 * back as u32);
                assert_eq!(b.payload(&dg), &frames[i - back][..]);
                assert_eq!(b.duration_samples, 480);
                assert_eq!(
                    b.timestamp(h.timestamp),
                    p.timestamp_of_frame((i - back) as u64 * 480)
                );
                assert_eq!(info.find(h.timestamp, b.timestamp(h.timestamp)), Some(b));
            }
            assert_eq!(info.find(h.timestamp, h.timestamp), None);
            // a plain Opus validator does not take it (wrong payload type)
            assert_eq!(validate_opus_rtp(&dg, OPUS_PT), Err(DropReason::WrongPayloadType));
        }
    }

    /// Frames of 10 and 20 ms mixed: every redundant block gets the sequence number of the
    /// frame it copies (dividing the offset by one block's size gave 3 for the block two
    /// frames back, a 10 ms one behind a 20 ms one).
    #[test]
    fn redundant_blocks_chain_to_their_sequence_numbers_across_frame_sizes() {
        let mut p = Packetizer::new(7, RED_PT, 65534, 1000);
        let mut enc = RedEncoder::new(3).unwrap();
        let sizes = [480u32, 960, 480, 960, 960, 480];
        let mut frame_index = 0u64;
        let mut seqs_by_ts = vec![];
        for (i, &d) in sizes.iter().enumerate() {
            let mut f = frame(i as u32, 20);
            f[0] = if d == 480 { 30 << 3 } else { 31 << 3 };
            let mut payload = [0u8; MAX_RED_PAYLOAD_LEN];
            let ts = p.timestamp_of_frame(frame_index);
            let len = enc.build_payload_at(&f, OPUS_PT, ts, &mut payload).unwrap();
            let mut out = [0u8; MAX_DATAGRAM_LEN];
            let n = p.build(frame_index, &payload[..len], &mut out).unwrap();
            let (h, info) = validate_red_rtp(&out[..n], RED_PT, OPUS_PT).unwrap();
            seqs_by_ts.push((h.timestamp, h.sequence));
            let chained: Vec<_> = info.frames_before(h.sequence, h.timestamp).collect();
            assert_eq!(chained.len(), i.min(3));
            for (seq, b) in chained {
                let t = b.timestamp(h.timestamp);
                assert!(seqs_by_ts.contains(&(t, seq)), "block at {t} got sequence {seq}");
            }
            frame_index += d as u64;
        }
    }

    #[test]
    fn validate_rejections() {
        let mut p = Packetizer::new(1, RED_PT, 0, 0);
        let mut enc = RedEncoder::new(1).unwrap();
        let _ = red_packet(&mut p, &mut enc, 0, &frame(0, 8));
        let good = red_packet(&mut p, &mut enc, 480, &frame(1, 8));
        assert!(validate_red_rtp(&good, RED_PT, OPUS_PT).is_ok());
        assert_eq!(
            validate_red_rtp(&good, 98, OPUS_PT).err(),
            Some(DropReason::WrongPayloadType)
        );
        assert_eq!(
            validate_red_rtp(&good, RED_PT, 95).err(),
            Some(DropReason::WrongPayloadType)
        );
        // redundant block with another PT
        let mut d = good.clone();
        d[12] = 0x80 | 95;
        assert_eq!(
            validate_red_rtp(&d, RED_PT, OPUS_PT).err(),
            Some(DropReason::WrongPayloadType)
        );
        // redundant block that is not a valid Opus packet (code 3 with a zero frame count)
        let mut d = good.clone();
        d[12 + 5] = (30 << 3) | 3;
        d[12 + 6] = 0;
        assert_eq!(
            validate_red_rtp(&d, RED_PT, OPUS_PT).err(),
            Some(DropReason::BadOpus)
        );
        // primary block that is not a valid Opus packet
        let mut d = good.clone();
        let prim = 12 + 5 + 8;
        d[prim] = (30 << 3) | 3;
        d[prim + 1] = 0;
        assert_eq!(
            validate_red_rtp(&d, RED_PT, OPUS_PT).err(),
            Some(DropReason::BadOpus)
        );
        // block length beyond the payload: structural, BadOpus
        let mut d = good.clone();
        d[15] = 0xff;
        assert_eq!(
            validate_red_rtp(&d, RED_PT, OPUS_PT).err(),
            Some(DropReason::BadOpus)
        );
        // nothing left for the primary: EmptyPayload
        let mut d = good.clone();
        d.truncate(12 + 5 + 8);
        assert_eq!(
            validate_red_rtp(&d, RED_PT, OPUS_PT).err(),
            Some(DropReason::EmptyPayload)
        );
        // no payload at all
        assert_eq!(
            validate_red_rtp(&good[..12], RED_PT, OPUS_PT).err(),
            Some(DropReason::EmptyPayload)
        );
        // CSRC + extension + padding are skipped like in validate_opus_rtp
        let mut d = good[..12].to_vec();
        d[0] |= 0x20 | 0x10 | 0x01;
        d.extend_from_slice(&[0, 0, 0, 9]);
        d.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]);
        d.extend_from_slice(&good[12..]);
        d.extend_from_slice(&[0, 0, 3]);
        let (h, info) = validate_red_rtp(&d, RED_PT, OPUS_PT).unwrap();
        assert_eq!(h.payload(&d), &frame(1, 8)[..]);
        assert_eq!(info.redundant()[0].payload(&d), &frame(0, 8)[..]);
    }

    /// A receiver model: every frame of a lost run of up to N packets is found, bit-exact,
    /// in the redundant blocks of the packets that follow; a run of N + 1 is not.
    #[test]
    fn redundancy_recovers_consecutive_losses() {
        for n in 0..=MAX_REDUNDANCY {
            for run in 1..=MAX_REDUNDANCY + 1 {
                for start in [1usize, 7, 20] {
                    let mut p = Packetizer::new(3, RED_PT, 65530, u32::MAX - 2000);
                    let mut enc = RedEncoder::new(n).unwrap();
                    let frames: Vec<Vec<u8>> = (0..30).map(|i| frame(i, 40 + (i as usize % 9))).collect();
                    let packets: Vec<Vec<u8>> = frames
                        .iter()
                        .enumerate()
                        .map(|(i, f)| red_packet(&mut p, &mut enc, i as u64 * 960, f))
                        .collect();
                    let lost = start..start + run;
                    let mut recovered = vec![None; frames.len()];
                    for (i, dg) in packets.iter().enumerate() {
                        if lost.contains(&i) {
                            continue;
                        }
                        let (h, info) = validate_red_rtp(dg, RED_PT, OPUS_PT).unwrap();
                        recovered[i] = Some(h.payload(dg).to_vec());
                        for j in lost.clone() {
                            let want = p.timestamp_of_frame(j as u64 * 960);
                            if let Some(b) = info.find(h.timestamp, want) {
                                assert_eq!(b.duration_samples, 480);
                                recovered[j].get_or_insert_with(|| b.payload(dg).to_vec());
                            }
                        }
                    }
                    let all = recovered
                        .iter()
                        .zip(&frames)
                        .all(|(r, f)| r.as_deref() == Some(&f[..]));
                    assert_eq!(all, run <= n, "N={n} run={run} start={start}");
                    for (r, f) in recovered.iter().zip(&frames) {
                        if let Some(r) = r {
                            assert_eq!(r, f);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn more_than_three_redundant_blocks_keeps_the_last() {
        // a foreign sender with 5 redundant blocks
        let mut payload = vec![];
        for k in (1..=5u32).rev() {
            let word = (1u32 << 31) | (u32::from(OPUS_PT) << 24) | ((k * 480) << 10) | 2;
            payload.extend_from_slice(&word.to_be_bytes());
        }
        payload.push(OPUS_PT);
        for k in (0..=5u8).rev() {
            payload.extend_from_slice(&[30 << 3, k]);
        }
        let mut p = Packetizer::new(1, RED_PT, 0, 10_000);
        let mut out = [0u8; 200];
        let len = p.build(0, &payload, &mut out).unwrap();
        let (h, info) = validate_red_rtp(&out[..len], RED_PT, OPUS_PT).unwrap();
        assert_eq!(h.payload(&out[..len]), &[30 << 3, 0]);
        assert_eq!(info.redundant_in_packet(), 5);
        let offs: Vec<u32> = info.redundant().iter().map(|b| b.ts_offset).collect();
        assert_eq!(offs, vec![1440, 960, 480]);
        assert_eq!(info.redundant()[0].payload(&out[..len]), &[30 << 3, 3]);
    }

    /// RED with a payload type the receiver was not told is recognised by its structure
    /// (so it is neither decoded as Opus nor left unexplained), and may be validated with
    /// whatever block type it carries; plain Opus packets, random or real, are not RED.
    #[test]
    fn red_is_recognised_by_structure_and_opus_is_not() {
        let mut p = Packetizer::new(9, 121, 0, 0);
        let mut enc = RedEncoder::new(2).unwrap();
        let first = red_packet(&mut p, &mut enc, 0, &frame(0, 40));
        assert_eq!(looks_like_red(&first), None, "no redundant block yet");
        for k in 1..20u64 {
            let d = red_packet(&mut p, &mut enc, k * 480, &frame(k as u32, 40 + k as usize));
            assert_eq!(looks_like_red(&d), Some(121));
            let (h, info) = validate_red_rtp(&d, 121, None).unwrap();
            assert_eq!(
                (h.duration_samples, info.redundant().len()),
                (480, k.min(2) as usize)
            );
        }
        let mut rng = XorShift(0x5eed);
        let mut opus = Packetizer::new(9, 96, 0, 0);
        let mut buf = [0u8; 1500];
        let mut real = opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Audio).unwrap();
        for k in 0..20_000u64 {
            let random: Vec<u8> = (0..(rng.next() % 400 + 1)).map(|_| rng.next() as u8).collect();
            let n = opus.build(k * 480, &random, &mut buf).unwrap();
            assert_eq!(looks_like_red(&buf[..n]), None, "{:02x?}", &buf[..n]);
        }
        let pcm: Vec<f32> = (0..480).map(|i| (i as f32 * 0.07).sin() * 0.4).collect();
        for k in 0..500u64 {
            let mut packet = [0u8; 1000];
            let len = real.encode_float(&pcm, &mut packet).unwrap();
            let n = opus.build(k * 480, &packet[..len], &mut buf).unwrap();
            assert_eq!(looks_like_red(&buf[..n]), None);
        }
    }
}
