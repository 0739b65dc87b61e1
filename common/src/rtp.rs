//! RTP (RFC 3550) packets carrying Opus (RFC 7587): building, validating, and
//! extending sequence numbers and timestamps to 64 bits.
//!
//! Parsing is `rtp-rs`'s zero-copy [`RtpReader`], the receiver's one RTP header parser
//! ([`read_rtp_header`]); its errors are sorted so that every malformed datagram is put in
//! exactly one [`DropReason`] bucket (rtp-rs folds three of them into "headers truncated").
//!
//! Building uses `RtpPacketBuilder::build_into`, which writes into a caller buffer and does
//! not allocate.

use rtp_rs::{RtpPacketBuilder, RtpReader, RtpReaderError, Seq};

/// The RTP clock rate of Opus is always 48 kHz (RFC 7587 §4.1), whatever the audio rate.
pub const OPUS_RTP_CLOCK_HZ: u32 = 48_000;
/// Fixed RTP header length without CSRCs or extension.
pub const RTP_HEADER_LEN: usize = 12;
/// Largest datagram we accept or build. Opus packets are at most 1275 bytes per frame
/// and a few frames per packet; anything bigger than a jumbo-free Ethernet MTU is foreign.
pub const MAX_DATAGRAM_LEN: usize = 1500;
/// Longest Opus packet duration: 120 ms at 48 kHz.
pub const MAX_OPUS_PACKET_SAMPLES: usize = 5760;

/// Why a datagram was not accepted as an RTP/Opus packet. Each kind is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the 12-byte fixed header.
    Truncated,
    /// RTP version field is not 2.
    BadVersion,
    /// The CSRC list announced by CC runs past the end of the datagram.
    CsrcBeyondLength,
    /// The header extension (its 4-byte header or its announced length) runs past the end.
    BadExtension,
    /// Padding flag set but the padding count is 0 or larger than what follows the header.
    BadPadding,
    /// Payload type is not the one configured for Opus.
    WrongPayloadType,
    /// No payload bytes after header, extension and padding.
    EmptyPayload,
    /// Payload is not a valid Opus packet (TOC / frame count / duration).
    BadOpus,
    /// Datagram longer than [`MAX_DATAGRAM_LEN`].
    Oversized,
}

impl DropReason {
    /// All kinds, in a stable order (used for stats tables).
    pub const ALL: [DropReason; 9] = [
        DropReason::Truncated,
        DropReason::BadVersion,
        DropReason::CsrcBeyondLength,
        DropReason::BadExtension,
        DropReason::BadPadding,
        DropReason::WrongPayloadType,
        DropReason::EmptyPayload,
        DropReason::BadOpus,
        DropReason::Oversized,
    ];

    /// Short snake_case name used in stats output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadVersion => "bad_version",
            DropReason::CsrcBeyondLength => "csrc_beyond_length",
            DropReason::BadExtension => "bad_extension",
            DropReason::BadPadding => "bad_padding",
            DropReason::WrongPayloadType => "wrong_payload_type",
            DropReason::EmptyPayload => "empty_payload",
            DropReason::BadOpus => "bad_opus",
            DropReason::Oversized => "oversized",
        }
    }

    /// Index into [`DropReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The fields of a validated RTP/Opus packet that the receiver needs. The payload is
/// located by offset and length within the datagram it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpOpusHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    /// Byte offset of the Opus payload in the datagram.
    pub payload_offset: usize,
    /// Length of the Opus payload (padding removed).
    pub payload_len: usize,
    /// Duration of the Opus packet in 48 kHz samples (from its TOC).
    pub duration_samples: u32,
}

impl RtpOpusHeader {
    /// The header fields of `reader`'s packet, with the Opus payload at `payload_offset`
    /// (`payload_len` bytes, `duration_samples` long) in its datagram.
    pub fn of(
        reader: &RtpReader<'_>,
        payload_offset: usize,
        payload_len: usize,
        duration_samples: u32,
    ) -> Self {
        RtpOpusHeader {
            marker: reader.mark(),
            payload_type: reader.payload_type(),
            sequence: u16::from(reader.sequence_number()),
            timestamp: reader.timestamp(),
            ssrc: reader.ssrc(),
            payload_offset,
            payload_len,
            duration_samples,
        }
    }

    /// The Opus payload inside `datagram` (the same slice this header was parsed from).
    pub fn payload<'a>(&self, datagram: &'a [u8]) -> &'a [u8] {
        &datagram[self.payload_offset..self.payload_offset + self.payload_len]
    }
}

/// Read the RTP header of `datagram` with rtp-rs and put every structural fault in its
/// own [`DropReason`]: oversized, truncated, version, CSRC list, extension, padding. The
/// one RTP header parser of the receiver: Opus ([`validate_opus_rtp`]) and RED
/// ([`crate::red::validate_red_rtp`]) packets both start here. Never panics, whatever
/// the bytes.
pub fn read_rtp_header(datagram: &[u8]) -> Result<RtpReader<'_>, DropReason> {
    if datagram.len() > MAX_DATAGRAM_LEN {
        return Err(DropReason::Oversized);
    }
    RtpReader::new(datagram).map_err(|e| match e {
        RtpReaderError::BufferTooShort(_) => DropReason::Truncated,
        RtpReaderError::UnsupportedVersion(_) => DropReason::BadVersion,
        RtpReaderError::PaddingLengthInvalid(_) => DropReason::BadPadding,
        // rtp-rs says "headers truncated" for three faults: the headers fit but no byte
        // is left for the padding count, the CSRC list runs past the end, or the extension
        // (its 4-byte header or its announced length) does.
        RtpReaderError::HeadersTruncated { header_len, .. } if header_len <= datagram.len() => {
            DropReason::BadPadding
        }
        RtpReaderError::HeadersTruncated { .. } => {
            let csrc_count = datagram.first().map_or(0, |b| usize::from(b & 0x0f));
            if RTP_HEADER_LEN + 4 * csrc_count > datagram.len() {
                DropReason::CsrcBeyondLength
            } else {
                DropReason::BadExtension
            }
        }
    })
}

/// Validate one datagram as RTP version 2 carrying an Opus packet with payload type
/// `expected_pt`. Never panics, whatever the bytes.
pub fn validate_opus_rtp(datagram: &[u8], expected_pt: u8) -> Result<RtpOpusHeader, DropReason> {
    let reader = read_rtp_header(datagram)?;
    if reader.payload_type() != expected_pt {
        return Err(DropReason::WrongPayloadType);
    }
    let payload = reader.payload();
    if payload.is_empty() {
        return Err(DropReason::EmptyPayload);
    }
    let duration = opus_packet_duration(payload).ok_or(DropReason::BadOpus)?;
    Ok(RtpOpusHeader::of(
        &reader,
        reader.payload_offset(),
        payload.len(),
        duration,
    ))
}

/// Duration of an Opus packet in 48 kHz samples, read from its TOC byte and frame count
/// (RFC 6716 §3.1). `None` if the packet is malformed (its frame lengths, padding and count
/// as libopus parses them, RFC 6716 §3.2) or longer than 120 ms.
pub fn opus_packet_duration(packet: &[u8]) -> Option<u32> {
    if !opus_packet_is_well_formed(packet) {
        return None;
    }
    let toc = *packet.first()?;
    let config = toc >> 3;
    // Samples per frame at 48 kHz, per configuration number (RFC 6716 Table 2).
    let per_frame: u32 = match config {
        0..=11 => [480, 960, 1920, 2880][(config % 4) as usize], // SILK: 10/20/40/60 ms
        12..=15 => [480, 960][(config % 2) as usize],            // Hybrid: 10/20 ms
        _ => [120, 240, 480, 960][(config % 4) as usize],        // CELT: 2.5/5/10/20 ms
    };
    let frames: u32 = match toc & 0x3 {
        0 => 1,
        1 | 2 => 2,
        _ => {
            let count_byte = *packet.get(1)?;
            let n = (count_byte & 0x3f) as u32;
            if n == 0 {
                return None;
            }
            n
        }
    };
    let total = per_frame * frames;
    if total as usize > MAX_OPUS_PACKET_SAMPLES {
        return None;
    }
    Some(total)
}

/// Whether libopus can split the packet into frames (`opus_packet_parse`: code 1 with an
/// even length, code 2 and 3 lengths and padding within the packet, at most 48 frames).
/// Random bytes fail about half the time; every packet an encoder makes passes. Does not
/// allocate.
fn opus_packet_is_well_formed(packet: &[u8]) -> bool {
    let Ok(len) = i32::try_from(packet.len()) else {
        return false;
    };
    if len == 0 {
        return false;
    }
    let mut toc = 0u8;
    let mut frames = [std::ptr::null::<u8>(); 48];
    let mut sizes = [0i16; 48];
    let mut payload_offset = 0i32;
    // SAFETY: `packet` is valid for `len` bytes; the out pointers refer to live locals of
    // the sizes libopus writes (one TOC byte, 48 frame pointers and sizes, one offset).
    let frames_found = unsafe {
        opusic_sys::opus_packet_parse(
            packet.as_ptr(),
            len,
            &mut toc,
            frames.as_mut_ptr(),
            sizes.as_mut_ptr(),
            &mut payload_offset,
        )
    };
    frames_found > 0
}

/// Whether an Opus packet's first frame is coded with SILK or hybrid, the only modes that
/// can carry in-band FEC (LBRR) for the previous frame.
pub fn opus_packet_may_carry_fec(packet: &[u8]) -> bool {
    matches!(packet.first(), Some(toc) if (toc >> 3) < 16)
}

/// Builds the RTP packets of one outgoing Opus stream: sequence numbers and timestamps
/// start at (random) values chosen by the caller and advance per packet.
#[derive(Debug, Clone)]
pub struct Packetizer {
    ssrc: u32,
    payload_type: u8,
    next_sequence: u16,
    initial_timestamp: u32,
    packets: u64,
    payload_octets: u64,
}

/// The packetizer was asked to build something that cannot be an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketizeError {
    #[error("output buffer too small for the RTP packet")]
    BufferTooSmall,
    #[error("payload type must be 0..=127")]
    PayloadTypeInvalid,
}

impl Packetizer {
    /// `initial_sequence` and `initial_timestamp` should be random (RFC 3550 §5.1).
    pub fn new(ssrc: u32, payload_type: u8, initial_sequence: u16, initial_timestamp: u32) -> Self {
        Packetizer {
            ssrc,
            payload_type,
            next_sequence: initial_sequence,
            initial_timestamp,
            packets: 0,
            payload_octets: 0,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// RTP timestamp of sample index `frame_index` of the stream (capture frame 0 maps to the
    /// initial timestamp). The map is affine and wraps modulo 2^32.
    pub fn timestamp_of_frame(&self, frame_index: u64) -> u32 {
        self.initial_timestamp.wrapping_add(frame_index as u32)
    }

    pub fn packets_sent(&self) -> u64 {
        self.packets
    }

    pub fn payload_octets_sent(&self) -> u64 {
        self.payload_octets
    }

    /// Sequence number the next packet will carry.
    pub fn next_sequence(&self) -> u16 {
        self.next_sequence
    }

    /// Write the RTP packet for an Opus payload whose first sample is capture frame
    /// `frame_index` into `out`; returns the packet length. The marker bit is set on the
    /// first packet of the stream (start of a talkspurt, RFC 3551 §4.1).
    pub fn build(
        &mut self,
        frame_index: u64,
        opus_payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, PacketizeError> {
        let builder = RtpPacketBuilder::new()
            .payload_type(self.payload_type)
            .marked(self.packets == 0)
            .sequence(Seq::from(self.next_sequence))
            .ssrc(self.ssrc)
            .timestamp(self.timestamp_of_frame(frame_index))
            .payload(opus_payload);
        let len = builder.build_into(out).map_err(|e| match e {
            rtp_rs::RtpPacketBuildError::PayloadTypeInvalid => PacketizeError::PayloadTypeInvalid,
            _ => PacketizeError::BufferTooSmall,
        })?;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        self.packets += 1;
        self.payload_octets += opus_payload.len() as u64;
        Ok(len)
    }
}

/// Extends 16-bit RTP sequence numbers to a monotone 64-bit space, around the highest
/// value seen so far (the "cycles" of RFC 3550 A.1). Values up to 32767 behind the
/// highest map to the past, up to 32768 ahead to the future. The first value maps to
/// `2^32 + seq` so that the past stays positive.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeqExtender {
    highest: Option<u64>,
}

impl SeqExtender {
    pub fn new() -> Self {
        SeqExtender { highest: None }
    }

    /// Extend `seq` and update the highest value seen.
    pub fn extend(&mut self, seq: u16) -> u64 {
        let ext = self.peek(seq);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    /// Extend `seq` without updating state.
    pub fn peek(&self, seq: u16) -> u64 {
        match self.highest {
            None => (1u64 << 32) + seq as u64,
            Some(h) => {
                let delta = seq.wrapping_sub(h as u16) as i16 as i64;
                (h as i64 + delta).max(0) as u64
            }
        }
    }

    pub fn highest(&self) -> Option<u64> {
        self.highest
    }

    pub fn reset(&mut self) {
        self.highest = None;
    }
}

/// Extends 32-bit RTP timestamps to 64 bits around the highest seen (same scheme as
/// [`SeqExtender`], with a ±2^31 window: 12.4 hours at 48 kHz).
#[derive(Debug, Clone, Copy, Default)]
pub struct TimestampExtender {
    highest: Option<u64>,
}

impl TimestampExtender {
    pub fn new() -> Self {
        TimestampExtender { highest: None }
    }

    pub fn extend(&mut self, ts: u32) -> u64 {
        let ext = self.peek(ts);
        if self.highest.is_none_or(|h| ext > h) {
            self.highest = Some(ext);
        }
        ext
    }

    pub fn peek(&self, ts: u32) -> u64 {
        match self.highest {
            None => (1u64 << 40) + ts as u64,
            Some(h) => {
                let delta = ts.wrapping_sub(h as u32) as i32 as i64;
                (h as i64 + delta).max(0) as u64
            }
        }
    }

    pub fn reset(&mut self) {
        self.highest = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CELT-only 10 ms mono Opus packet (config 30 = CELT FB 10 ms, code 0) with a
    /// few payload bytes; good enough for header tests.
    fn opus_payload() -> Vec<u8> {
        vec![(30 << 3) as u8, 0xAA, 0xBB, 0xCC]
    }

    fn packet(seq: u16, ts: u32) -> Vec<u8> {
        let mut p = Packetizer::new(0xdead_beef, 96, seq, ts);
        let mut buf = [0u8; 1500];
        let n = p.build(0, &opus_payload(), &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn packetize_parse_round_trip() {
        let mut p = Packetizer::new(0x1234_5678, 96, 65534, 4_294_967_000);
        let mut buf = [0u8; 1500];
        let payload = opus_payload();
        for i in 0..4u64 {
            let frame = i * 480;
            let n = p.build(frame, &payload, &mut buf).unwrap();
            let h = validate_opus_rtp(&buf[..n], 96).unwrap();
            assert_eq!(h.ssrc, 0x1234_5678);
            assert_eq!(h.payload_type, 96);
            assert_eq!(h.sequence, 65534u16.wrapping_add(i as u16));
            assert_eq!(h.timestamp, 4_294_967_000u32.wrapping_add(frame as u32));
            assert_eq!(h.marker, i == 0);
            assert_eq!(h.payload(&buf[..n]), &payload[..]);
            assert_eq!(h.duration_samples, 480);
        }
        assert_eq!(p.packets_sent(), 4);
        assert_eq!(p.payload_octets_sent(), 16);
    }

    #[test]
    fn build_into_small_buffer_fails_cleanly() {
        let mut p = Packetizer::new(1, 96, 0, 0);
        let mut buf = [0u8; 8];
        assert_eq!(
            p.build(0, &opus_payload(), &mut buf),
            Err(PacketizeError::BufferTooSmall)
        );
        assert_eq!(p.packets_sent(), 0);
    }

    #[test]
    fn sequence_wraparound_extends_monotonically() {
        let mut e = SeqExtender::new();
        let base = e.extend(65533);
        assert_eq!(e.extend(65534), base + 1);
        assert_eq!(e.extend(65535), base + 2);
        assert_eq!(e.extend(0), base + 3);
        assert_eq!(e.extend(1), base + 4);
        // late packet from before the wrap maps to the past
        assert_eq!(e.extend(65535), base + 2);
        assert_eq!(e.highest(), Some(base + 4));
        // a reordered packet from 3 wraps ago is not confused with the future
        for i in 0..200_000u64 {
            let s = (65533u64 + 5 + i) as u16;
            assert_eq!(e.extend(s), base + 5 + i);
        }
    }

    #[test]
    fn timestamp_wraparound_extends_monotonically() {
        let mut e = TimestampExtender::new();
        let base = e.extend(u32::MAX - 479);
        assert_eq!(e.extend(0), base + 480);
        assert_eq!(e.extend(480), base + 960);
        assert_eq!(e.extend(u32::MAX - 479), base);
    }

    #[test]
    fn packetizer_timestamp_wraps() {
        let p = Packetizer::new(1, 96, 0, u32::MAX - 100);
        assert_eq!(p.timestamp_of_frame(101), 0);
        assert_eq!(p.timestamp_of_frame(1 << 32), u32::MAX - 100);
    }

    #[test]
    fn rejects_truncated() {
        let p = packet(1, 2);
        for len in 0..RTP_HEADER_LEN {
            assert_eq!(validate_opus_rtp(&p[..len], 96), Err(DropReason::Truncated));
        }
    }

    #[test]
    fn rejects_wrong_version() {
        for v in [0u8, 1, 3] {
            let mut p = packet(1, 2);
            p[0] = (p[0] & 0x3f) | (v << 6);
            assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::BadVersion));
        }
    }

    #[test]
    fn rejects_csrc_count_beyond_length() {
        let mut p = packet(1, 2);
        p[0] |= 0x0f; // 15 CSRCs = 60 bytes, packet has 4 payload bytes
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::CsrcBeyondLength));
        // one CSRC that exactly consumes the payload: header fine, payload empty
        let mut p = packet(1, 2);
        p[0] |= 0x01;
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::EmptyPayload));
    }

    #[test]
    fn accepts_csrc_and_extension_when_consistent() {
        let mut p = packet(7, 9);
        // insert one CSRC and an extension of one word before the payload
        let payload = p.split_off(RTP_HEADER_LEN);
        p[0] |= 0x10 | 0x01;
        p.extend_from_slice(&[0, 0, 0, 42]); // CSRC
        p.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        p.extend_from_slice(&payload);
        let h = validate_opus_rtp(&p, 96).unwrap();
        assert_eq!(h.payload(&p), &opus_payload()[..]);
        assert_eq!(h.sequence, 7);
    }

    #[test]
    fn rejects_bad_extension_length() {
        let mut p = packet(1, 2);
        p[0] |= 0x10;
        // extension header claims 200 words
        p[RTP_HEADER_LEN + 2] = 0;
        p[RTP_HEADER_LEN + 3] = 200;
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::BadExtension));
        // extension flag with no room for the 4-byte extension header
        let mut p = packet(1, 2);
        p.truncate(RTP_HEADER_LEN + 2);
        p[0] |= 0x10;
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::BadExtension));
    }

    #[test]
    fn rejects_padding_larger_than_payload() {
        let mut p = packet(1, 2);
        p[0] |= 0x20;
        let last = p.len() - 1;
        p[last] = 200;
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::BadPadding));
        p[last] = 0;
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::BadPadding));
        // padding that is valid: 2 bytes of padding appended
        let mut p = packet(1, 2);
        p[0] |= 0x20;
        p.extend_from_slice(&[0, 2]);
        let h = validate_opus_rtp(&p, 96).unwrap();
        assert_eq!(h.payload(&p), &opus_payload()[..]);
        // padding covering the whole payload
        let mut p = packet(1, 2);
        p.truncate(RTP_HEADER_LEN);
        p[0] |= 0x20;
        p.extend_from_slice(&[0, 0, 3]);
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::EmptyPayload));
    }

    #[test]
    fn rejects_wrong_payload_type() {
        let p = packet(1, 2);
        assert_eq!(validate_opus_rtp(&p, 97), Err(DropReason::WrongPayloadType));
    }

    #[test]
    fn rejects_bad_opus_and_oversized() {
        let mut p = packet(1, 2);
        p.truncate(RTP_HEADER_LEN);
        p.push((30 << 3) | 3); // code 3 without a frame count byte
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::BadOpus));
        let mut p = packet(1, 2);
        p.truncate(RTP_HEADER_LEN);
        p.extend_from_slice(&[(3 << 3) | 3, 3]); // 3 x 60 ms = 180 ms > 120 ms
        assert_eq!(validate_opus_rtp(&p, 96), Err(DropReason::BadOpus));
        let big = vec![0x80u8; MAX_DATAGRAM_LEN + 1];
        assert_eq!(validate_opus_rtp(&big, 96), Err(DropReason::Oversized));
    }

    #[test]
    fn opus_durations() {
        assert_eq!(opus_packet_duration(&[16 << 3]), Some(120)); // CELT NB 2.5 ms
        assert_eq!(opus_packet_duration(&[31 << 3]), Some(960)); // CELT FB 20 ms
        assert_eq!(opus_packet_duration(&[(1 << 3) | 1]), Some(1920)); // SILK 20 ms x2
        assert_eq!(opus_packet_duration(&[(3 << 3) | 3, 2]), Some(5760)); // 2 x 60 ms
        assert_eq!(opus_packet_duration(&[]), None);
        // malformed structure: code 1 (two equal frames) with an odd length, code 2 whose
        // first frame runs past the end, code 3 with padding beyond the packet
        assert_eq!(opus_packet_duration(&[(31 << 3) | 1, 1, 2, 3]), None);
        assert_eq!(opus_packet_duration(&[(31 << 3) | 2, 200, 1]), None);
        assert_eq!(opus_packet_duration(&[(31 << 3) | 3, 0x42, 255]), None);
        assert_eq!(opus_packet_duration(&[(31 << 3) | 1, 1, 2, 3, 4]), Some(1920));
        assert!(opus_packet_may_carry_fec(&[1 << 3]));
        assert!(!opus_packet_may_carry_fec(&[16 << 3]));
    }

    #[test]
    fn never_panics_on_any_short_input() {
        // exhaustive over all 1- and 2-byte prefixes after a valid 12 byte header variant
        let base = packet(1, 2);
        for b0 in 0..=255u8 {
            for len in 0..base.len() + 3 {
                let mut p = base.clone();
                p.resize(len, 0xff);
                if !p.is_empty() {
                    p[0] = b0;
                }
                let _ = validate_opus_rtp(&p, 96);
            }
        }
    }
}
