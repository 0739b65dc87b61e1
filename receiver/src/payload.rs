//! Which RTP payload types the receiver plays, and a one-line hint for the ones it drops.
//!
//! Opus has no static payload type (RFC 7587 §7): every sender picks a dynamic one,
//! 96..=127. patchcord-send and GStreamer's `rtpopuspay` use 96, ffmpeg's RTP muxer 97. So
//! unless told otherwise (`--payload-type`, or an SDP) the receiver takes Opus on any
//! dynamic type, and both play with no flag. RFC 2198 redundancy (RED) comes on its own
//! type, `--red-payload-type`, 121 by default: the type of RFC 2198's own example, away
//! from the 96 and 97 that Opus senders use (it was 97, which made ffmpeg's default stream
//! count as malformed RED). A packet of another dynamic type that has the structure of RED
//! ([`looks_like_red`]) is dropped rather than decoded as Opus.
//!
//! Packets dropped for their payload type are counted per type (`wrong_payload_type`);
//! when one type keeps arriving ([`HINT_MIN_PACKETS`] in a second) the status line says
//! which flag would play it.

use patchcord_common::red::{looks_like_red, validate_red_rtp, RedInfo};
use patchcord_common::rtp::{validate_opus_rtp, DropReason, RtpOpusHeader};

/// Dynamic RTP payload types (RFC 3551 §3), the only ones Opus and RED can have.
pub const DYNAMIC: std::ops::RangeInclusive<u8> = 96..=127;
/// Default RED payload type.
pub const DEFAULT_RED_PT: u8 = 121;
/// Packets of one dropped type per second that make a hint: a stream (50 packets/s at
/// 20 ms frames), not a stray datagram.
pub const HINT_MIN_PACKETS: u32 = 10;

/// What a packet dropped for its payload type looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Dropped {
    #[default]
    Other,
    /// A valid Opus packet on a dynamic type the receiver was not told.
    Opus,
    /// RED on a type that is not `--red-payload-type`.
    Red,
}

pub struct PayloadTypes {
    /// `None`: Opus on any dynamic type but the RED one.
    opus: Option<u8>,
    red: u8,
    /// Packets dropped for their type in the current second, and what the last one was.
    dropped: [(u32, Dropped); 128],
    hint: Option<String>,
}

impl PayloadTypes {
    pub fn new(opus: Option<u8>, red: u8) -> Result<Self, String> {
        if opus == Some(red) {
            return Err(format!(
                "--red-payload-type {red} equals --payload-type; choose two different dynamic payload types"
            ));
        }
        Ok(PayloadTypes {
            opus,
            red,
            dropped: [(0, Dropped::Other); 128],
            hint: None,
        })
    }

    /// For the start line: "Opus PT 96..127, RED PT 121".
    pub fn describe(&self) -> String {
        match self.opus {
            Some(pt) => format!("Opus PT {pt}, RED PT {}", self.red),
            None => format!("Opus PT any of 96..127, RED PT {}", self.red),
        }
    }

    /// Validate a datagram as Opus or RED-of-Opus by its payload type; a packet dropped for
    /// its type is counted for the hint.
    pub fn validate(&mut self, d: &[u8]) -> Result<(RtpOpusHeader, RedInfo), DropReason> {
        let result = self.parse(d);
        if result == Err(DropReason::WrongPayloadType) {
            let pt = d.get(1).map_or(0, |b| b & 0x7f);
            let kind = if !DYNAMIC.contains(&pt) {
                Dropped::Other
            } else if looks_like_red(d).is_some() {
                Dropped::Red
            } else if validate_opus_rtp(d, pt).is_ok() {
                Dropped::Opus
            } else {
                Dropped::Other
            };
            let entry = &mut self.dropped[usize::from(pt)];
            *entry = (entry.0.saturating_add(1), kind);
        }
        result
    }

    /// [`PayloadTypes::validate`] without counting: for a packet that validated when it
    /// arrived and is parsed again from its datagram (held aside by source validation).
    pub fn parse(&self, d: &[u8]) -> Result<(RtpOpusHeader, RedInfo), DropReason> {
        let pt = d.get(1).map_or(0, |b| b & 0x7f);
        if pt == self.red {
            return validate_red_rtp(d, self.red, self.opus);
        }
        let opus = match self.opus {
            Some(o) => o,
            None if DYNAMIC.contains(&pt) && looks_like_red(d).is_none() => pt,
            // header errors come first, as for any packet; then the type
            None => *DYNAMIC.start(),
        };
        validate_opus_rtp(d, opus).map(|h| (h, RedInfo::default()))
    }

    /// Close the second: the hint for the type dropped most, if it keeps arriving.
    pub fn end_second(&mut self) {
        let (pt, &(count, kind)) = self
            .dropped
            .iter()
            .enumerate()
            .max_by_key(|(_, (n, _))| *n)
            .unwrap_or((0, &(0, Dropped::Other)));
        self.hint = (count >= HINT_MIN_PACKETS).then(|| match kind {
            Dropped::Opus => format!(
                "Opus on payload type {pt} is dropped: use --payload-type {pt} (or leave it out to take any)"
            ),
            Dropped::Red => format!(
                "RFC 2198 redundancy on payload type {pt} is dropped: use --red-payload-type {pt}"
            ),
            Dropped::Other if DYNAMIC.contains(&(pt as u8)) => format!(
                "packets of payload type {pt} are dropped and are not Opus: use --payload-type / --red-payload-type, or --sdp"
            ),
            Dropped::Other => format!(
                "packets of payload type {pt} are dropped: a static type (0..95) is not Opus, which uses 96..127 (RFC 7587)"
            ),
        });
        self.dropped = [(0, Dropped::Other); 128];
    }

    /// The hint of the last second, if any.
    pub fn hint(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchcord_common::red::RedEncoder;
    use patchcord_common::rtp::Packetizer;

    fn opus_packet(pt: u8, k: u64) -> Vec<u8> {
        let mut p = Packetizer::new(7, pt, k as u16, 0);
        let mut buf = [0u8; 1500];
        let n = p.build(k * 480, &[30 << 3, 1, 2, 3], &mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn any_dynamic_type_plays_unless_one_is_named() {
        let mut any = PayloadTypes::new(None, DEFAULT_RED_PT).unwrap();
        for pt in [96, 97, 110] {
            assert!(any.validate(&opus_packet(pt, 1)).is_ok(), "PT {pt}");
        }
        assert_eq!(
            any.validate(&opus_packet(0, 1)).err(),
            Some(DropReason::WrongPayloadType)
        );
        let mut only96 = PayloadTypes::new(Some(96), DEFAULT_RED_PT).unwrap();
        assert!(only96.validate(&opus_packet(96, 1)).is_ok());
        assert_eq!(
            only96.validate(&opus_packet(97, 1)).err(),
            Some(DropReason::WrongPayloadType)
        );
        // --payload-type 97 alone is fine now; equal types are not
        assert!(PayloadTypes::new(Some(97), DEFAULT_RED_PT).is_ok());
        assert!(PayloadTypes::new(Some(121), 121).is_err());
    }

    #[test]
    fn a_type_that_keeps_arriving_gets_a_hint_naming_the_flag() {
        let mut t = PayloadTypes::new(Some(96), DEFAULT_RED_PT).unwrap();
        for k in 0..HINT_MIN_PACKETS as u64 {
            let _ = t.validate(&opus_packet(97, k));
        }
        t.end_second();
        assert!(t.hint().unwrap().contains("--payload-type 97"), "{:?}", t.hint());
        // RED on an unexpected type: dropped, never decoded as Opus, and named
        let mut any = PayloadTypes::new(None, DEFAULT_RED_PT).unwrap();
        let mut p = Packetizer::new(7, 98, 0, 0);
        let mut red = RedEncoder::new(1).unwrap();
        for k in 0..20u64 {
            let mut payload = [0u8; 1488];
            let ts = p.timestamp_of_frame(k * 480);
            let frame = [30 << 3, k as u8, 2, 3, 4];
            let len = red.build_payload_at(&frame, 96, ts, &mut payload).unwrap();
            let mut buf = [0u8; 1500];
            let n = p.build(k * 480, &payload[..len], &mut buf).unwrap();
            let r = any.validate(&buf[..n]);
            if k > 0 {
                assert_eq!(r.err(), Some(DropReason::WrongPayloadType));
            }
        }
        any.end_second();
        assert!(
            any.hint().unwrap().contains("--red-payload-type 98"),
            "{:?}",
            any.hint()
        );
        // a quiet second clears it; a few stray packets make none
        any.end_second();
        assert_eq!(any.hint(), None);
        let _ = any.validate(&opus_packet(3, 1));
        any.end_second();
        assert_eq!(any.hint(), None);
    }
}
