//! The slice of RTCP (RFC 3550 §6) patchcord speaks: sender reports (which carry the
//! wall-clock ↔ RTP-timestamp mapping that lets the receiver compute end-to-end latency)
//! and BYE. RTP and RTCP may share one port (RFC 5761); [`is_rtcp`] tells them apart.
//!
//! Time is always passed in: wall-clock instants are nanoseconds since the Unix epoch.

/// RTCP packet types (RFC 3550 §12.1).
pub const RTCP_SR: u8 = 200;
pub const RTCP_RR: u8 = 201;
pub const RTCP_SDES: u8 = 202;
pub const RTCP_BYE: u8 = 203;

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

/// One packet of a compound RTCP datagram that patchcord understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    /// BYE for up to the first 31 sources (the count field's limit); `count` of them valid.
    Bye {
        ssrcs: [u32; 31],
        count: usize,
    },
    /// Receiver reports, SDES, APP, feedback...: well-formed but not used.
    Other {
        packet_type: u8,
    },
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

/// Write a sender report with no report blocks into `out`; returns its length (28 bytes).
pub fn build_sender_report(sr: &SenderReport, out: &mut [u8]) -> Option<usize> {
    const LEN: usize = 28;
    let out = out.get_mut(..LEN)?;
    out[0] = 0x80; // V=2, P=0, RC=0
    out[1] = RTCP_SR;
    out[2..4].copy_from_slice(&((LEN / 4 - 1) as u16).to_be_bytes());
    out[4..8].copy_from_slice(&sr.ssrc.to_be_bytes());
    out[8..16].copy_from_slice(&sr.ntp.to_be_bytes());
    out[16..20].copy_from_slice(&sr.rtp_timestamp.to_be_bytes());
    out[20..24].copy_from_slice(&sr.packet_count.to_be_bytes());
    out[24..28].copy_from_slice(&sr.octet_count.to_be_bytes());
    Some(LEN)
}

/// Write a BYE for one source into `out`; returns its length (8 bytes).
pub fn build_bye(ssrc: u32, out: &mut [u8]) -> Option<usize> {
    const LEN: usize = 8;
    let out = out.get_mut(..LEN)?;
    out[0] = 0x81; // V=2, SC=1
    out[1] = RTCP_BYE;
    out[2..4].copy_from_slice(&1u16.to_be_bytes());
    out[4..8].copy_from_slice(&ssrc.to_be_bytes());
    Some(LEN)
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

impl Iterator for RtcpIter<'_> {
    type Item = Result<RtcpPacket, RtcpError>;

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

fn parse_one(b: &[u8]) -> Result<(RtcpPacket, usize), RtcpError> {
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
            let ssrc = word(0).ok_or(RtcpError::Truncated)?;
            let msw = word(1).ok_or(RtcpError::Truncated)? as u64;
            let lsw = word(2).ok_or(RtcpError::Truncated)? as u64;
            RtcpPacket::SenderReport(SenderReport {
                ssrc,
                ntp: (msw << 32) | lsw,
                rtp_timestamp: word(3).ok_or(RtcpError::Truncated)?,
                packet_count: word(4).ok_or(RtcpError::Truncated)?,
                octet_count: word(5).ok_or(RtcpError::Truncated)?,
            })
        }
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

    #[test]
    fn sender_report_round_trip() {
        let sr = SenderReport {
            ssrc: 0xabcd_0123,
            ntp: unix_ns_to_ntp(1_763_700_000_500_000_000),
            rtp_timestamp: 123_456,
            packet_count: 77,
            octet_count: 9999,
        };
        let mut buf = [0u8; 64];
        let n = build_sender_report(&sr, &mut buf).unwrap();
        let mut bye = [0u8; 8];
        build_bye(0xabcd_0123, &mut bye).unwrap();
        let mut compound = buf[..n].to_vec();
        compound.extend_from_slice(&bye);
        assert!(is_rtcp(&compound));
        let parsed: Vec<_> = parse_compound(&compound).collect();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0], Ok(RtcpPacket::SenderReport(sr)));
        match parsed[1] {
            Ok(RtcpPacket::Bye { ssrcs, count }) => {
                assert_eq!(count, 1);
                assert_eq!(ssrcs[0], 0xabcd_0123);
            }
            ref other => panic!("unexpected {other:?}"),
        }
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
