//! SRTP and SRTCP (RFC 3711, RFC 7714) with a pre-shared master key ([`MasterKey`]),
//! bytes in and bytes out: [`Protector`] seals what one side sends (its RTP, its RTCP),
//! [`Unprotector`] opens what it receives and says why a datagram was refused
//! ([`Rejected`]: forged or wrongly keyed, replayed, malformed). No socket, no clock, so
//! the binaries call it on their network and encoder threads, never in an audio
//! callback, and a fuzz target can call [`Unprotector::unprotect`] with any bytes.
//!
//! # The implementation: `webrtc-srtp`, behind guards
//!
//! The cryptography is `webrtc-srtp` (webrtc-rs, MIT/Apache-2.0): pure Rust on the
//! RustCrypto `aes`, `ctr`, `hmac`, `sha1` and `aes-gcm` crates, both suites patchcord
//! needs (AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM), a replay window per SSRC, released
//! regularly, and no C library or OpenSSL to build or ship. The alternative was Debian's
//! libsrtp2 (the reference implementation, which GStreamer's `srtpenc` uses): its Rust
//! bindings (`srtp` / `srtp2-sys`) were last released years ago and generate their FFI
//! with an old bindgen from headers of their own libsrtp copy, not Debian's.
//!
//! Reading `webrtc-srtp` 0.17.2 found three things a network-facing receiver must not
//! do, so this wrapper stands between it and the network:
//! - **SRTCP with the E flag clear is returned without checking its tag** (AES-CM): a
//!   forged BYE would pass. Every SRTCP packet here must have E set (ffmpeg, libsrtp and
//!   this wrapper always encrypt RTCP); one without is refused as [`Rejected::AuthFailed`].
//! - **Short SRTCP packets panic** (the index is read at `len − tag − 4` before any length
//!   check): lengths are checked here first ([`Rejected::Malformed`]).
//! - **Every SSRC that arrives gets lasting state before it is authenticated**, so a
//!   flood of random SSRCs would grow memory without bound. Here each SSRC has its own
//!   context; a packet of an unknown SSRC is tried with a fresh one, which is kept only if
//!   the packet authenticates, and at most `max_sources` are kept (the one unused longest
//!   makes room). A forged packet with a new SSRC costs a key derivation and is gone.
//! - **A forged SRTP packet sets a fresh replay window** (found by the `srtp_unprotect`
//!   fuzz target): the library's wrapped window takes its starting point from the first
//!   sequence number it *checks*, before the tag is verified. An SSRC whose context was
//!   made by its SRTCP (a sender report that arrives before the first packet does) had
//!   no SRTP window yet: one forged packet 30,000 ahead made every genuine packet "too
//!   old", for minutes. Here the first SRTP packet of such an SSRC is tried
//!   with a fresh context first, and reaches the kept one only if it authenticates.
//!
//! It allocates its output for every packet (the API returns `Bytes`): on the network and
//! encoder threads, which may allocate. The cost per packet is in BENCHMARKS.md.
//!
//! # Replay
//!
//! Each SSRC has a window of [`REPLAY_WINDOW`] packets for SRTP and for SRTCP: a packet
//! seen before, or older than the window, is [`Rejected::Replayed`]. The window is wide
//! enough that reordering the jitter buffer could still use is never taken for a replay
//! (512 packets: 1.3 s of 2.5 ms frames).
//!
//! Plain RTP and RTCP sent to a receiver that expects SRTP fail authentication like a
//! forgery: on the wire the two cannot be told apart, and both are refused and counted.
//!
//! # Fuzzing
//!
//! [`Unprotector::unprotect`] is the entry point for hostile bytes; any input gives an
//! answer, never a panic (a proptest here checks that much):
//!
//! ```
//! use patchcord_common::srtp::{MasterKey, Suite, Unprotector};
//! let key = MasterKey::new(Suite::AesCm128HmacSha1_80, &[7; 30]).unwrap();
//! let mut open = Unprotector::new(&key, 4);
//! let mut out = [0u8; 2048];
//! let data: &[u8] = &[0x80, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3];
//! assert!(open.unprotect(data, &mut out).is_err());
//! ```

use std::collections::HashMap;

use webrtc_srtp::context::Context;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;
use webrtc_srtp::Error as LibError;

use crate::rtcp::is_rtcp;
use crate::rtp::RTP_HEADER_LEN;
pub use crate::srtp_key::{KeyError, MasterKey, Suite};

/// Packets each SSRC's replay window covers (SRTP and SRTCP each).
pub const REPLAY_WINDOW: usize = 512;

/// Why a received datagram was not opened. Each is counted; none is played.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    /// The authentication tag is wrong: a forged or altered packet, another key, or a
    /// plain (unprotected) RTP/RTCP packet.
    #[error("authentication failed")]
    AuthFailed,
    /// Seen before, or older than the replay window.
    #[error("replayed")]
    Replayed,
    /// Too short for the header and the tag, or not RTP/RTCP at all.
    #[error("malformed")]
    Malformed,
}

/// Why a packet could not be protected (a bug or an over-long packet, not the network).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtectError {
    #[error("packet to protect is not RTP/RTCP or too short")]
    NotRtp,
    #[error("protected packet does not fit the output buffer")]
    TooLong,
    #[error("SRTP: {0}")]
    Library(String),
}

/// What [`Unprotector::unprotect`] opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// An RTP packet of `len` bytes (header and payload, tag removed).
    Rtp(usize),
    /// An RTCP compound packet of `len` bytes.
    Rtcp(usize),
}

fn profile(suite: Suite) -> ProtectionProfile {
    match suite {
        Suite::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
        Suite::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
    }
}

fn context(key: &MasterKey, replay: bool) -> Result<Context, LibError> {
    let (rtp, rtcp) = if replay {
        (
            Some(srtp_replay_protection(REPLAY_WINDOW)),
            Some(srtcp_replay_protection(REPLAY_WINDOW)),
        )
    } else {
        (None, None)
    };
    Context::new(
        key.master_key(),
        key.master_salt(),
        profile(key.suite()),
        rtp,
        rtcp,
    )
}

fn copy_out(sealed: &[u8], out: &mut [u8]) -> Option<usize> {
    out.get_mut(..sealed.len())?.copy_from_slice(sealed);
    Some(sealed.len())
}

/// Protects the RTP and RTCP one side sends (any number of its own SSRCs).
pub struct Protector {
    ctx: Context,
    suite: Suite,
}

impl Protector {
    pub fn new(key: &MasterKey) -> Self {
        Protector {
            // the key and salt lengths are the suite's (MasterKey checks them)
            ctx: context(key, false).unwrap_or_else(|e| unreachable!("SRTP key of checked length: {e}")),
            suite: key.suite(),
        }
    }

    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Seal an RTP packet into `out`; returns the length (the packet's + the tag).
    pub fn protect_rtp(&mut self, packet: &[u8], out: &mut [u8]) -> Result<usize, ProtectError> {
        if packet.len() < RTP_HEADER_LEN || is_rtcp(packet) {
            return Err(ProtectError::NotRtp);
        }
        let sealed = self
            .ctx
            .encrypt_rtp(packet)
            .map_err(|e| ProtectError::Library(e.to_string()))?;
        copy_out(&sealed, out).ok_or(ProtectError::TooLong)
    }

    /// Seal an RTCP compound packet into `out`; returns the length (+ E/index and tag).
    pub fn protect_rtcp(&mut self, packet: &[u8], out: &mut [u8]) -> Result<usize, ProtectError> {
        if !is_rtcp(packet) {
            return Err(ProtectError::NotRtp);
        }
        let sealed = self
            .ctx
            .encrypt_rtcp(packet)
            .map_err(|e| ProtectError::Library(e.to_string()))?;
        copy_out(&sealed, out).ok_or(ProtectError::TooLong)
    }
}

/// One authenticated SSRC's receive context.
struct Source {
    ctx: Context,
    /// [`Unprotector::uses`] at its last authenticated packet.
    last_used: u64,
    /// An SRTP packet authenticated: the context's SRTP replay window is set.
    rtp_seen: bool,
}

/// Opens the SRTP and SRTCP one side receives, from any number of senders (bounded).
pub struct Unprotector {
    key: MasterKey,
    /// By SSRC, at most `max_sources`.
    sources: HashMap<u32, Source>,
    max_sources: usize,
    uses: u64,
}

impl Unprotector {
    /// `max_sources`: SSRCs whose replay state is kept (at least 1).
    pub fn new(key: &MasterKey, max_sources: usize) -> Self {
        let max_sources = max_sources.max(1);
        Unprotector {
            key: key.clone(),
            sources: HashMap::with_capacity(max_sources),
            max_sources,
            uses: 0,
        }
    }

    /// Open one datagram (SRTP or SRTCP, told apart by RFC 5761's payload type ranges)
    /// into `out`. Any input is safe: the worst is an `Err`.
    pub fn unprotect(&mut self, datagram: &[u8], out: &mut [u8]) -> Result<Opened, Rejected> {
        let suite = self.key.suite();
        let rtcp = is_rtcp(datagram);
        let ssrc = if rtcp {
            // header (8) + the E flag and index + the tag; E must be set (see module doc)
            let tail = datagram
                .len()
                .checked_sub(suite.rtcp_overhead())
                .filter(|&t| t >= 8);
            let e_at = match suite {
                Suite::AesCm128HmacSha1_80 => tail,
                Suite::AeadAes128Gcm => datagram.len().checked_sub(4),
            };
            let (Some(_), Some(e_at)) = (tail, e_at) else {
                return Err(Rejected::Malformed);
            };
            if datagram[e_at] & 0x80 == 0 {
                return Err(Rejected::AuthFailed);
            }
            u32::from_be_bytes([datagram[4], datagram[5], datagram[6], datagram[7]])
        } else {
            if datagram.len() < RTP_HEADER_LEN + suite.rtp_overhead() || datagram[0] >> 6 != 2 {
                return Err(Rejected::Malformed);
            }
            u32::from_be_bytes([datagram[8], datagram[9], datagram[10], datagram[11]])
        };
        let open = |ctx: &mut Context| {
            if rtcp {
                ctx.decrypt_rtcp(datagram)
            } else {
                ctx.decrypt_rtp(datagram)
            }
        };
        self.uses += 1;
        let plain = match self.sources.get_mut(&ssrc) {
            Some(s) => {
                if !rtcp && !s.rtp_seen {
                    // the SRTP window is not set yet: only an authentic packet may set it
                    let mut trial = context(&self.key, true).map_err(|_| Rejected::Malformed)?;
                    open(&mut trial).map_err(rejected)?;
                }
                let plain = open(&mut s.ctx).map_err(rejected)?;
                s.last_used = self.uses;
                s.rtp_seen |= !rtcp;
                plain
            }
            None => {
                let mut ctx = context(&self.key, true).map_err(|_| Rejected::Malformed)?;
                let plain = open(&mut ctx).map_err(rejected)?;
                if self.sources.len() >= self.max_sources {
                    let oldest = self
                        .sources
                        .iter()
                        .min_by_key(|(_, s)| s.last_used)
                        .map(|(&k, _)| k);
                    if let Some(k) = oldest {
                        self.sources.remove(&k);
                    }
                }
                let source = Source {
                    ctx,
                    last_used: self.uses,
                    rtp_seen: !rtcp,
                };
                self.sources.insert(ssrc, source);
                plain
            }
        };
        let len = copy_out(&plain, out).ok_or(Rejected::Malformed)?;
        Ok(if rtcp { Opened::Rtcp(len) } else { Opened::Rtp(len) })
    }

    /// SSRCs whose state is kept now.
    pub fn sources(&self) -> usize {
        self.sources.len()
    }
}

fn rejected(e: LibError) -> Rejected {
    match e {
        LibError::SrtpSsrcDuplicated(..) | LibError::SrtcpSsrcDuplicated(..) => Rejected::Replayed,
        LibError::RtpFailedToVerifyAuthTag
        | LibError::RtcpFailedToVerifyAuthTag
        | LibError::ErrFailedToVerifyAuthTag
        | LibError::AesGcm(_) => Rejected::AuthFailed,
        _ => Rejected::Malformed,
    }
}

/// Counters of what [`Unprotector`] refused; part of the stats JSON.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SrtpCounters {
    pub srtp_auth_failed: u64,
    pub srtp_replayed: u64,
    pub srtp_malformed: u64,
}

impl SrtpCounters {
    pub fn count(&mut self, r: Rejected) {
        match r {
            Rejected::AuthFailed => self.srtp_auth_failed += 1,
            Rejected::Replayed => self.srtp_replayed += 1,
            Rejected::Malformed => self.srtp_malformed += 1,
        }
    }
}

#[cfg(test)]
mod tests {

    /// Found by the `srtp_unprotect` fuzz target: an SSRC known from its SRTCP, then one
    /// forged SRTP packet far ahead, must not make the genuine packets "replayed".
    #[test]
    fn a_forged_packet_does_not_set_a_fresh_replay_window() {
        for suite in [Suite::AesCm128HmacSha1_80, Suite::AeadAes128Gcm] {
            let key = MasterKey::new(suite, &vec![3u8; suite.key_salt_len()]).unwrap();
            let mut tx = Protector::new(&key);
            let mut rx = Unprotector::new(&key, 4);
            let (mut sealed, mut out) = (vec![0u8; 200], vec![0u8; 200]);
            let rr = [0x80u8, 201, 0, 1, 0, 0, 0x50, 0x02];
            let n = tx.protect_rtcp(&rr, &mut sealed).unwrap();
            assert_eq!(rx.unprotect(&sealed[..n], &mut out), Ok(Opened::Rtcp(8)));
            let rtp = |seq: u16| {
                let mut p = vec![0u8; 20];
                p[0] = 0x80;
                p[1] = 96;
                p[2..4].copy_from_slice(&seq.to_be_bytes());
                p[8..12].copy_from_slice(&0x5002u32.to_be_bytes());
                p
            };
            // a forgery: a genuine-looking packet 30,000 ahead with a wrong tag
            let n = tx.protect_rtp(&rtp(30_008), &mut sealed).unwrap();
            let mut forged = sealed[..n].to_vec();
            let last = forged.len() - 1;
            forged[last] ^= 1;
            assert_eq!(rx.unprotect(&forged, &mut out), Err(Rejected::AuthFailed));
            for seq in 8..12 {
                let n = tx.protect_rtp(&rtp(seq), &mut sealed).unwrap();
                assert_eq!(
                    rx.unprotect(&sealed[..n], &mut out),
                    Ok(Opened::Rtp(20)),
                    "{suite:?} {seq}"
                );
            }
            // and once set by a genuine packet, a forgery still moves nothing
            let n = tx.protect_rtp(&rtp(30_000), &mut sealed).unwrap();
            let mut forged = sealed[..n].to_vec();
            forged[last] ^= 1;
            assert_eq!(rx.unprotect(&forged, &mut out), Err(Rejected::AuthFailed));
            let n = tx.protect_rtp(&rtp(12), &mut sealed).unwrap();
            assert_eq!(rx.unprotect(&sealed[..n], &mut out), Ok(Opened::Rtp(20)));
        }
    }
    use super::*;
    use crate::rtcp::{parse_compound, CompoundWriter, RtcpPacket};
    use crate::rtp::Packetizer;
    use proptest::prelude::*;

    fn key(suite: Suite, fill: u8) -> MasterKey {
        let len = suite.master_key_len() + suite.master_salt_len();
        let bytes: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(7) ^ fill).collect();
        MasterKey::new(suite, &bytes).unwrap()
    }

    fn rtp(p: &mut Packetizer, frame: u64) -> Vec<u8> {
        let mut b = vec![0; 1500];
        let payload: Vec<u8> = (0..120).map(|i| (i as u8) ^ (frame as u8)).collect();
        let n = p.build(frame * 480, &payload, &mut b).unwrap();
        b.truncate(n);
        b
    }

    fn bye(ssrc: u32) -> Vec<u8> {
        let mut b = [0u8; 200];
        let mut w = CompoundWriter::new(&mut b);
        w.receiver_report(ssrc, &[]).unwrap();
        w.sdes(ssrc, "a@b", None).unwrap();
        w.bye(ssrc).unwrap();
        w.packet().to_vec()
    }

    fn seal_rtp(p: &mut Protector, plain: &[u8]) -> Vec<u8> {
        let mut out = vec![0; 1600];
        let n = p.protect_rtp(plain, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn round_trip_both_suites_rtp_and_rtcp() {
        for suite in Suite::ALL {
            let k = key(suite, 0);
            let mut tx = Protector::new(&k);
            let mut rx = Unprotector::new(&k, 4);
            let mut pk = Packetizer::new(0x1234_5678, 96, 65_530, 1000);
            let mut out = vec![0; 1600];
            // across the sequence number wrap (rollover counter)
            for f in 0..20 {
                let plain = rtp(&mut pk, f);
                let sealed = seal_rtp(&mut tx, &plain);
                assert_eq!(sealed.len(), plain.len() + suite.rtp_overhead());
                assert_ne!(sealed[12..plain.len()], plain[12..], "payload is encrypted");
                assert_eq!(rx.unprotect(&sealed, &mut out), Ok(Opened::Rtp(plain.len())));
                assert_eq!(out[..plain.len()], plain[..]);
            }
            let plain = bye(0x1234_5678);
            let n = tx.protect_rtcp(&plain, &mut out).unwrap();
            assert_eq!(n, plain.len() + suite.rtcp_overhead());
            let sealed = out[..n].to_vec();
            assert_eq!(rx.unprotect(&sealed, &mut out), Ok(Opened::Rtcp(plain.len())));
            assert!(matches!(
                parse_compound(&out[..plain.len()]).last(),
                Some(Ok(RtcpPacket::Bye { .. }))
            ));
            assert_eq!(rx.unprotect(&sealed, &mut out), Err(Rejected::Replayed));
        }
    }

    #[test]
    fn forged_replayed_plain_and_wrong_key_refused() {
        for suite in Suite::ALL {
            let k = key(suite, 0);
            let mut tx = Protector::new(&k);
            let mut rx = Unprotector::new(&k, 4);
            let mut pk = Packetizer::new(7, 96, 100, 0);
            let mut out = vec![0; 1600];
            let first = seal_rtp(&mut tx, &rtp(&mut pk, 0));
            assert!(rx.unprotect(&first, &mut out).is_ok());
            assert_eq!(rx.unprotect(&first, &mut out), Err(Rejected::Replayed));
            // one flipped bit anywhere: header, payload or tag
            let next = seal_rtp(&mut tx, &rtp(&mut pk, 1));
            for i in [1, 5, 20, next.len() - 1] {
                let mut forged = next.clone();
                forged[i] ^= 0x10;
                assert_eq!(
                    rx.unprotect(&forged, &mut out),
                    Err(Rejected::AuthFailed),
                    "{suite} byte {i}"
                );
            }
            // the genuine one still opens after the forgeries
            assert!(rx.unprotect(&next, &mut out).is_ok());
            // plain RTP and RTCP, and another key
            let plain = rtp(&mut pk, 2);
            assert_eq!(rx.unprotect(&plain, &mut out), Err(Rejected::AuthFailed));
            let mut plain_bye = bye(7);
            plain_bye.extend_from_slice(&[0; 30]);
            assert_eq!(rx.unprotect(&plain_bye, &mut out), Err(Rejected::AuthFailed));
            let mut other = Protector::new(&key(suite, 0x55));
            let wrong = seal_rtp(&mut other, &plain);
            assert_eq!(rx.unprotect(&wrong, &mut out), Err(Rejected::AuthFailed));
            // SRTCP with the E flag cleared (the library would not check its tag)
            let mut sealed = vec![0; 300];
            let n = tx.protect_rtcp(&bye(7), &mut sealed).unwrap();
            let e_at = match suite {
                Suite::AesCm128HmacSha1_80 => n - 14,
                Suite::AeadAes128Gcm => n - 4,
            };
            sealed[e_at] &= 0x7f;
            assert_eq!(rx.unprotect(&sealed[..n], &mut out), Err(Rejected::AuthFailed));
            for short in [&[][..], &[0x80, 200, 0, 1, 0, 0, 0, 7], &plain[..20]] {
                assert_eq!(rx.unprotect(short, &mut out), Err(Rejected::Malformed));
            }
        }
    }

    /// Forged packets with ever new SSRCs leave no state; genuine SSRCs beyond the limit
    /// replace the one unused longest.
    #[test]
    fn sources_are_bounded() {
        let k = key(Suite::AesCm128HmacSha1_80, 0);
        let mut rx = Unprotector::new(&k, 3);
        let mut out = vec![0; 1600];
        let mut forger = Protector::new(&key(Suite::AesCm128HmacSha1_80, 1));
        for ssrc in 0..1000 {
            let forged = seal_rtp(&mut forger, &rtp(&mut Packetizer::new(ssrc, 96, 0, 0), 0));
            assert_eq!(rx.unprotect(&forged, &mut out), Err(Rejected::AuthFailed));
        }
        assert_eq!(rx.sources(), 0);
        let mut tx = Protector::new(&k);
        for ssrc in 0..5 {
            let sealed = seal_rtp(&mut tx, &rtp(&mut Packetizer::new(ssrc, 96, 0, 0), 0));
            assert!(rx.unprotect(&sealed, &mut out).is_ok());
        }
        assert_eq!(rx.sources(), 3);
    }

    proptest! {
        /// Any bytes, and any bytes after an RTP or RTCP first byte: an answer, never a panic.
        #[test]
        fn any_datagram_is_safe(mut d in proptest::collection::vec(any::<u8>(), 0..80), rtcp in any::<bool>(), gcm in any::<bool>()) {
            let suite = if gcm { Suite::AeadAes128Gcm } else { Suite::AesCm128HmacSha1_80 };
            let mut rx = Unprotector::new(&key(suite, 0), 2);
            if d.len() >= 2 {
                d[0] = 0x80 | (d[0] & 0x3f);
                if rtcp {
                    d[1] = 200 + d[1] % 4;
                }
            }
            let mut out = [0u8; 100];
            let _ = rx.unprotect(&d, &mut out);
        }
    }
}
