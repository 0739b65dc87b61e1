//! RTCP (RFC 3550 §6) as patchcord speaks it, sans-IO and allocation-free: writing and
//! reading sender reports (the wall-clock ↔ RTP-timestamp pairing that end-to-end latency
//! is computed from), receiver reports (RFC 3550 §6.4.2: loss, jitter, and LSR/DLSR, from
//! which a sender computes the round trip), SDES CNAME and TOOL (§6.5: required in every
//! compound packet; TOOL tells a receiver the sender is patchcord), and BYE. RTP and RTCP
//! may share one port (RFC 5761); [`is_rtcp`] tells them apart. The send interval is
//! [`crate::rtcp_interval`]'s.
//!
//! # Why our own code
//!
//! Looked at: `rtcp-types` (Centricular, well kept): its SR/RR/BYE parsers are zero-copy,
//! but its SDES parser collects chunks and items into `Vec`s and every writer is a builder
//! holding `Vec`s (the compound builder boxes each packet), so each report would allocate
//! on the encoder thread; `rtcp` (webrtc-rs): packets are boxed trait objects over `Bytes`,
//! allocating per packet. What patchcord needs beyond what this file already had is a
//! report block, RR and SDES (about 150 lines) that write into a caller's buffer and parse
//! into plain values borrowing the datagram. Its output is checked against `rtcp-types`'
//! parser in the tests, and against GStreamer's `rtpbin` end to end.
//!
//! Time is always passed in: wall-clock instants are nanoseconds since the Unix epoch.

/// RTCP packet types (RFC 3550 §12.1).
pub const RTCP_SR: u8 = 200;
pub const RTCP_RR: u8 = 201;
pub const RTCP_SDES: u8 = 202;
pub const RTCP_BYE: u8 = 203;
/// SDES item types (RFC 3550 §6.5).
pub const SDES_CNAME: u8 = 1;
pub const SDES_TOOL: u8 = 6;
/// Most report blocks in one SR or RR (the 5-bit count).
pub const MAX_REPORT_BLOCKS: usize = 31;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

/// RFC 5761 §4: a datagram on a shared port is RTCP when its second byte (marker bit and
/// payload type of an RTP header) is in 192..=223.
pub fn is_rtcp(datagram: &[u8]) -> bool {
    datagram.len() >= 8 && datagram[0] >> 6 == 2 && (192..=223).contains(&datagram[1])
}

/// Unix-epoch nanoseconds → 64-bit NTP timestamp (32.32 fixed point seconds since 1900).
pub fn unix_ns_to_ntp(unix_ns: i64) -> u64 {
    let unix_ns = unix_ns.max(0) as u128;
    let secs = (unix_ns / 1_000_000_000) as u64 + NTP_UNIX_OFFSET_SECS;
    let frac = ((unix_ns % 1_000_000_000) << 32) / 1_000_000_000;
    (secs << 32) | frac as u64
}

/// The middle 32 bits of a 64-bit NTP timestamp (16.16 seconds): the LSR of a report
/// block, and the unit of round-trip arithmetic (RFC 3550 §6.4.1).
pub fn ntp_short(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// A duration in 1/65536 s (DLSR, round trips) → nanoseconds.
pub fn ntp_short_to_ns(units: u32) -> i64 {
    ((units as i64) * 1_000_000_000 + (1 << 15)) >> 16
}

/// Nanoseconds → 1/65536 s, saturating (DLSR).
pub fn ns_to_ntp_short(ns: i64) -> u32 {
    (((ns.max(0) as i128) << 16) / 1_000_000_000).min(u32::MAX as i128) as u32
}

/// 64-bit NTP timestamp → Unix-epoch nanoseconds (rounded to nearest).
pub fn ntp_to_unix_ns(ntp: u64) -> i64 {
    let secs = (ntp >> 32) as i64 - NTP_UNIX_OFFSET_SECS as i64;
    let frac = (ntp & 0xffff_ffff) as u128;
    let nanos = ((frac * 1_000_000_000 + (1u128 << 31)) >> 32) as i64;
    secs * 1_000_000_000 + nanos
}

/// A sender report's sender-info section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: u32,
    /// Wall-clock instant (NTP format) at which the sample with `rtp_timestamp` was captured.
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packet_count: u32,
    pub octet_count: u32,
}

/// One reception report block (RFC 3550 §6.4.1): what a receiver saw of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source reported on.
    pub ssrc: u32,
    /// Fraction of packets lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24 bits, signed: duplicates can make it negative).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// [`ntp_short`] of the last sender report received from the source (0: none).
    pub lsr: u32,
    /// Delay since that report was received, 1/65536 s.
    pub dlsr: u32,
}

/// The report blocks of one SR or RR; `count` of them valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlocks {
    pub blocks: [ReportBlock; MAX_REPORT_BLOCKS],
    pub count: usize,
}

impl ReportBlocks {
    pub fn as_slice(&self) -> &[ReportBlock] {
        &self.blocks[..self.count.min(MAX_REPORT_BLOCKS)]
    }
}

/// One packet of a compound RTCP datagram that patchcord understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// A sender report and the reception reports it carries.
    SenderReport(SenderReport, ReportBlocks),
    /// A receiver report from `reporter`.
    ReceiverReport { reporter: u32, reports: ReportBlocks },
    /// The first chunk of an SDES packet: the source's CNAME and TOOL, if it gave them.
    Sdes {
        ssrc: u32,
        cname: Option<&'a [u8]>,
        tool: Option<&'a [u8]>,
    },
    /// BYE for up to the first 31 sources (the count field's limit); `count` of them valid.
    Bye { ssrcs: [u32; 31], count: usize },
    /// APP, feedback, XR...: well-formed but not used.
    Other { packet_type: u8 },
}

/// The RTCP datagram is malformed; the rest of the datagram is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet truncated")]
    Truncated,
    #[error("RTCP version is not 2")]
    BadVersion,
    #[error("RTCP length field runs past the datagram")]
    BadLength,
}

/// Writes a compound RTCP packet (RFC 3550 §6.1) into a caller's buffer, packet after
/// packet. Each method returns `None`, leaving the buffer as it was, when the packet
/// does not fit.
pub struct CompoundWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> CompoundWriter<'b> {
    pub fn new(buf: &'b mut [u8]) -> Self {
        CompoundWriter { buf, len: 0 }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The compound packet written so far.
    pub fn packet(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Reserve `len` bytes (a multiple of 4) for one packet and write its common header.
    fn begin(&mut self, count: usize, packet_type: u8, len: usize) -> Option<&mut [u8]> {
        let out = self.buf.get_mut(self.len..self.len + len)?;
        out[0] = 0x80 | count as u8;
        out[1] = packet_type;
        out[2..4].copy_from_slice(&((len / 4 - 1) as u16).to_be_bytes());
        self.len += len;
        Some(out)
    }

    /// A sender report carrying up to 31 reception reports.
    pub fn sender_report(&mut self, sr: &SenderReport, blocks: &[ReportBlock]) -> Option<()> {
        let blocks = &blocks[..blocks.len().min(MAX_REPORT_BLOCKS)];
        let out = self.begin(blocks.len(), RTCP_SR, 28 + 24 * blocks.len())?;
        out[4..8].copy_from_slice(&sr.ssrc.to_be_bytes());
        out[8..16].copy_from_slice(&sr.ntp.to_be_bytes());
        out[16..20].copy_from_slice(&sr.rtp_timestamp.to_be_bytes());
        out[20..24].copy_from_slice(&sr.packet_count.to_be_bytes());
        out[24..28].copy_from_slice(&sr.octet_count.to_be_bytes());
        write_blocks(&mut out[28..], blocks);
        Some(())
    }

    /// A receiver report from `reporter` with up to 31 reception reports (none is valid:
    /// it opens a compound packet of a participant that received nothing).
    pub fn receiver_report(&mut self, reporter: u32, blocks: &[ReportBlock]) -> Option<()> {
        let blocks = &blocks[..blocks.len().min(MAX_REPORT_BLOCKS)];
        let out = self.begin(blocks.len(), RTCP_RR, 8 + 24 * blocks.len())?;
        out[4..8].copy_from_slice(&reporter.to_be_bytes());
        write_blocks(&mut out[8..], blocks);
        Some(())
    }

    /// An SDES packet with one chunk: `ssrc`'s CNAME and, if given, TOOL (each at most 255
    /// bytes; longer values are cut).
    pub fn sdes(&mut self, ssrc: u32, cname: &str, tool: Option<&str>) -> Option<()> {
        let item = |v: &str| v.len().min(255);
        let items = 2 + item(cname) + tool.map_or(0, |t| 2 + item(t));
        // chunk: SSRC, items, then a null item and padding to a word boundary
        let chunk = (4 + items + 1).div_ceil(4) * 4;
        let out = self.begin(1, RTCP_SDES, 4 + chunk)?;
        out[4..8].copy_from_slice(&ssrc.to_be_bytes());
        let mut pos = 8;
        for (kind, value) in [(SDES_CNAME, Some(cname)), (SDES_TOOL, tool)] {
            let Some(v) = value else { continue };
            let v = &v.as_bytes()[..item(v)];
            out[pos] = kind;
            out[pos + 1] = v.len() as u8;
            out[pos + 2..pos + 2 + v.len()].copy_from_slice(v);
            pos += 2 + v.len();
        }
        out[pos..].fill(0);
        Some(())
    }

    /// A BYE for one source.
    pub fn bye(&mut self, ssrc: u32) -> Option<()> {
        let out = self.begin(1, RTCP_BYE, 8)?;
        out[4..8].copy_from_slice(&ssrc.to_be_bytes());
        Some(())
    }
}

fn write_blocks(out: &mut [u8], blocks: &[ReportBlock]) {
    for (b, o) in blocks.iter().zip(out.chunks_exact_mut(24)) {
        o[0..4].copy_from_slice(&b.ssrc.to_be_bytes());
        let lost = b.cumulative_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32 & 0x00ff_ffff;
        o[4..8].copy_from_slice(&((u32::from(b.fraction_lost) << 24) | lost).to_be_bytes());
        o[8..12].copy_from_slice(&b.highest_seq.to_be_bytes());
        o[12..16].copy_from_slice(&b.jitter.to_be_bytes());
        o[16..20].copy_from_slice(&b.lsr.to_be_bytes());
        o[20..24].copy_from_slice(&b.dlsr.to_be_bytes());
    }
}

/// Iterate over the packets of a compound RTCP datagram. Stops at the first malformed
/// packet, yielding the error once.
pub fn parse_compound(datagram: &[u8]) -> RtcpIter<'_> {
    RtcpIter {
        rest: datagram,
        failed: false,
    }
}

pub struct RtcpIter<'a> {
    rest: &'a [u8],
    failed: bool,
}

impl<'a> Iterator for RtcpIter<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let result = parse_one(self.rest);
        match result {
            Ok((packet, used)) => {
                self.rest = &self.rest[used..];
                Some(Ok(packet))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

fn parse_one(b: &[u8]) -> Result<(RtcpPacket<'_>, usize), RtcpError> {
    if b.len() < 4 {
        return Err(RtcpError::Truncated);
    }
    if b[0] >> 6 != 2 {
        return Err(RtcpError::BadVersion);
    }
    let count = (b[0] & 0x1f) as usize;
    let packet_type = b[1];
    let len = (u16::from_be_bytes([b[2], b[3]]) as usize + 1) * 4;
    if len > b.len() {
        return Err(RtcpError::BadLength);
    }
    let body = &b[4..len];
    let word = |i: usize| -> Option<u32> {
        body.get(i * 4..i * 4 + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
    };
    let packet = match packet_type {
        RTCP_SR => {
            if body.len() < 24 {
                return Err(RtcpError::Truncated);
            }
            let msw = word(1).ok_or(RtcpError::Truncated)? as u64;
            let lsw = word(2).ok_or(RtcpError::Truncated)? as u64;
            let sr = SenderReport {
                ssrc: word(0).ok_or(RtcpError::Truncated)?,
                ntp: (msw << 32) | lsw,
                rtp_timestamp: word(3).ok_or(RtcpError::Truncated)?,
                packet_count: word(4).ok_or(RtcpError::Truncated)?,
                octet_count: word(5).ok_or(RtcpError::Truncated)?,
            };
            RtcpPacket::SenderReport(sr, parse_blocks(&body[24..], count)?)
        }
        RTCP_RR => RtcpPacket::ReceiverReport {
            reporter: word(0).ok_or(RtcpError::Truncated)?,
            reports: parse_blocks(&body[4..], count)?,
        },
        RTCP_SDES => parse_sdes(body, count)?,
        RTCP_BYE => {
            let mut ssrcs = [0u32; 31];
            for (i, slot) in ssrcs.iter_mut().enumerate().take(count) {
                *slot = word(i).ok_or(RtcpError::Truncated)?;
            }
            RtcpPacket::Bye { ssrcs, count }
        }
        other => RtcpPacket::Other { packet_type: other },
    };
    Ok((packet, len))
}

fn parse_blocks(b: &[u8], count: usize) -> Result<ReportBlocks, RtcpError> {
    let mut out = ReportBlocks {
        blocks: [ReportBlock::default(); MAX_REPORT_BLOCKS],
        count,
    };
    let bytes = b.get(..24 * count).ok_or(RtcpError::Truncated)?;
    for (o, w) in out.blocks.iter_mut().zip(bytes.chunks_exact(24)) {
        let word = |i: usize| u32::from_be_bytes([w[i], w[i + 1], w[i + 2], w[i + 3]]);
        let lost = word(4) & 0x00ff_ffff;
        *o = ReportBlock {
            ssrc: word(0),
            fraction_lost: w[4],
            // sign-extend the 24-bit count
            cumulative_lost: ((lost << 8) as i32) >> 8,
            highest_seq: word(8),
            jitter: word(12),
            lsr: word(16),
            dlsr: word(20),
        };
    }
    Ok(out)
}

/// The first chunk of an SDES body (after the common header): its CNAME and TOOL.
fn parse_sdes(body: &[u8], count: usize) -> Result<RtcpPacket<'_>, RtcpError> {
    if count == 0 {
        return Ok(RtcpPacket::Other {
            packet_type: RTCP_SDES,
        });
    }
    let ssrc = body.get(..4).ok_or(RtcpError::Truncated)?;
    let ssrc = u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]);
    let (mut cname, mut tool) = (None, None);
    let mut pos = 4;
    loop {
        let kind = *body.get(pos).ok_or(RtcpError::Truncated)?;
        if kind == 0 {
            break;
        }
        let len = usize::from(*body.get(pos + 1).ok_or(RtcpError::Truncated)?);
        let value = body.get(pos + 2..pos + 2 + len).ok_or(RtcpError::Truncated)?;
        match kind {
            SDES_CNAME => cname = Some(value),
            SDES_TOOL => tool = Some(value),
            _ => {}
        }
        pos += 2 + len;
    }
    Ok(RtcpPacket::Sdes { ssrc, cname, tool })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_round_trip_is_sub_nanosecond() {
        for ns in [
            0i64,
            1,
            999_999_999,
            1_700_000_000_123_456_789,
            2_000_000_000_999_999_999,
        ] {
            let back = ntp_to_unix_ns(unix_ns_to_ntp(ns));
            assert!((back - ns).abs() <= 1, "{ns} -> {back}");
        }
        assert_eq!(unix_ns_to_ntp(0) >> 32, NTP_UNIX_OFFSET_SECS);
    }

    fn block(ssrc: u32, cumulative_lost: i32) -> ReportBlock {
        ReportBlock {
            ssrc,
            fraction_lost: 13,
            cumulative_lost,
            highest_seq: 0x0001_fff0,
            jitter: 77,
            lsr: 0x1234_5678,
            dlsr: 0x0001_8000,
        }
    }

    /// Every packet kind written, read back, and read by `rtcp-types` as well.
    #[test]
    fn compound_round_trip_and_rtcp_types_agrees() {
        let sr = SenderReport {
            ssrc: 0xabcd_0123,
            ntp: unix_ns_to_ntp(1_763_700_000_500_000_000),
            rtp_timestamp: 123_456,
            packet_count: 77,
            octet_count: 9999,
        };
        let mut buf = [0u8; 1500];
        let mut w = CompoundWriter::new(&mut buf);
        w.sender_report(&sr, &[block(5, -3)]).unwrap();
        w.receiver_report(0x1111, &[block(7, 42), block(8, 1 << 22)])
            .unwrap();
        w.sdes(0xabcd_0123, "me@host", Some("patchcord-send 0.1.0"))
            .unwrap();
        w.bye(0xabcd_0123).unwrap();
        let compound = w.packet().to_vec();
        assert!(is_rtcp(&compound));
        let parsed: Vec<_> = parse_compound(&compound).map(Result::unwrap).collect();
        assert_eq!(parsed.len(), 4);
        match parsed[0] {
            RtcpPacket::SenderReport(s, blocks) => {
                assert_eq!(s, sr);
                assert_eq!(blocks.as_slice(), &[block(5, -3)]);
            }
            ref other => panic!("{other:?}"),
        }
        match parsed[1] {
            RtcpPacket::ReceiverReport { reporter, reports } => {
                assert_eq!(reporter, 0x1111);
                assert_eq!(reports.as_slice(), &[block(7, 42), block(8, 1 << 22)]);
            }
            ref other => panic!("{other:?}"),
        }
        assert_eq!(
            parsed[2],
            RtcpPacket::Sdes {
                ssrc: 0xabcd_0123,
                cname: Some(b"me@host"),
                tool: Some(b"patchcord-send 0.1.0"),
            }
        );
        match parsed[3] {
            RtcpPacket::Bye { ssrcs, count } => assert_eq!((count, ssrcs[0]), (1, 0xabcd_0123)),
            ref other => panic!("{other:?}"),
        }
        // an independent parser reads the same
        use rtcp_types::{Compound, Packet, RtcpPacketParserExt};
        let packets: Vec<_> = Compound::parse(&compound).unwrap().map(Result::unwrap).collect();
        assert_eq!(packets.len(), 4);
        let Packet::Sr(s) = &packets[0] else { panic!() };
        assert_eq!(
            (s.ssrc(), s.ntp_timestamp(), s.rtp_timestamp()),
            (sr.ssrc, sr.ntp, 123_456)
        );
        let b = s.report_blocks().next().unwrap();
        assert_eq!(
            (b.ssrc(), b.cumulative_lost(), b.fraction_lost()),
            (5, 0xff_fffd, 13)
        );
        let Packet::Rr(r) = &packets[1] else { panic!() };
        let blocks: Vec<_> = r.report_blocks().collect();
        assert_eq!(
            (r.ssrc(), blocks.len(), blocks[1].cumulative_lost()),
            (0x1111, 2, 1 << 22)
        );
        assert_eq!(
            (
                blocks[0].interarrival_jitter(),
                blocks[0].last_sender_report_timestamp()
            ),
            (77, 0x1234_5678)
        );
        assert_eq!(blocks[0].delay_since_last_sender_report_timestamp(), 0x0001_8000);
        let Packet::Sdes(d) = &packets[2] else { panic!() };
        let chunk = d.chunks().next().unwrap();
        let items: Vec<_> = chunk.items().map(|i| (i.type_(), i.value().to_vec())).collect();
        assert_eq!(
            items,
            vec![(1, b"me@host".to_vec()), (6, b"patchcord-send 0.1.0".to_vec())]
        );
        let Packet::Bye(b) = &packets[3] else { panic!() };
        assert_eq!(b.ssrcs().collect::<Vec<_>>(), vec![0xabcd_0123]);
        assert_eq!(packets[3].type_(), RTCP_BYE);
    }

    #[test]
    fn sdes_of_every_length_pads_to_a_word_and_reads_back() {
        for len in 0..=300usize {
            let cname: String = "c".repeat(len);
            let mut buf = [0u8; 700];
            let mut w = CompoundWriter::new(&mut buf);
            w.sdes(9, &cname, None).unwrap();
            assert_eq!(w.len() % 4, 0);
            let p = w.packet().to_vec();
            match parse_compound(&p).next() {
                Some(Ok(RtcpPacket::Sdes {
                    ssrc: 9,
                    cname: Some(c),
                    tool: None,
                })) => {
                    assert_eq!(c.len(), len.min(255))
                }
                other => panic!("{len}: {other:?}"),
            }
        }
        // too small a buffer: nothing written
        let mut small = [0u8; 10];
        let mut w = CompoundWriter::new(&mut small);
        assert!(w.sdes(1, "name", None).is_none());
        assert!(w.is_empty());
    }

    #[test]
    fn short_ntp_units() {
        assert_eq!(ntp_short(0x1122_3344_5566_7788), 0x3344_5566);
        assert_eq!(ntp_short_to_ns(0x0001_0000), 1_000_000_000);
        assert_eq!(ns_to_ntp_short(500_000_000), 0x8000);
        assert_eq!(ns_to_ntp_short(-5), 0);
    }

    #[test]
    fn rtp_is_not_rtcp() {
        // RTP with PT 96, marker set: second byte 0xE0 = 224, outside 192..=223
        assert!(!is_rtcp(&[0x80, 0xE0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!is_rtcp(&[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn malformed_rtcp_is_an_error_not_a_panic() {
        assert_eq!(
            parse_compound(&[0x80, 200, 0, 50]).next(),
            Some(Err(RtcpError::BadLength))
        );
        assert_eq!(
            parse_compound(&[0x80, 200, 0, 0]).next(),
            Some(Err(RtcpError::Truncated))
        );
        assert_eq!(
            parse_compound(&[0x40, 200, 0, 0]).next(),
            Some(Err(RtcpError::BadVersion))
        );
        // BYE whose count exceeds its length
        assert_eq!(
            parse_compound(&[0x85, 203, 0, 1, 0, 0, 0, 1]).next(),
            Some(Err(RtcpError::Truncated))
        );
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 0x80) as u8).collect();
            let _ = parse_compound(&junk).count();
        }
    }
}
