//! SDP (RFC 4566 / RFC 8866) for one Opus stream: what `patchcord-send --sdp` writes
//! and `patchcord-recv --sdp` reads, so that ffmpeg (`-protocol_whitelist file,udp,rtp -i
//! FILE`), GStreamer (`filesrc ! sdpdemux`) and patchcord describe a stream to each other
//! instead of being told its port, payload types and channels by hand.
//!
//! # What a description says
//!
//! ```text
//! v=0
//! o=- 3912049251 1 IN IP4 192.168.1.10        the sender's address
//! s=patchcord
//! c=IN IP4 239.1.2.3/16                        destination; a group has its TTL (IPv4)
//! t=0 0
//! a=tool:patchcord-send 0.1.0
//! m=audio 5004 RTP/AVP 121 96                  RED first when it is what is sent
//! a=rtpmap:96 opus/48000/2                     always /48000/2 (RFC 7587 §7)
//! a=fmtp:96 useinbandfec=1;stereo=1;sprop-stereo=1;maxaveragebitrate=128000
//! a=ptime:10
//! a=rtpmap:121 red/48000/2                     RFC 2198 redundancy, with
//! a=fmtp:121 96/96/96                          the type of each block
//! a=rtcp:5005                                  or a=rtcp-mux (RFC 3605, RFC 5761)
//! a=source-filter:incl IN IP4 239.1.2.3 192.168.1.10   multicast: the one source (RFC 4570)
//! ```
//!
//! With SRTP the profile is `RTP/SAVP` and the media has the key (RFC 4568; ffmpeg reads
//! it, with `-protocol_whitelist file,udp,rtp,srtp`):
//!
//! ```text
//! m=audio 5004 RTP/SAVP 96
//! a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz
//! ```
//!
//! Such a file holds the key: whoever reads it can listen and send. Keep it as private
//! as the key itself.
//!
//! `stereo` / `sprop-stereo` say 1 for a stereo stream and 0 for mono (RFC 7587 §6.1);
//! a reader takes the channel count from `sprop-stereo` (what the sender sends), else
//! from `stereo`, else mono. `useinbandfec=1` is written when the encoder adds FEC.
//!
//! Reading takes the first `m=audio` whose formats include `opus/48000`: its port, the
//! connection address (media level, else session level; a group's TTL), the Opus and
//! RED payload types, the channels, the RTCP port or mux and a source filter. Anything
//! else in the description (other media, other formats, bandwidth lines) is ignored;
//! a description without an Opus stream, without a connection address, or with a secure
//! profile (`RTP/SAVP`) but no `a=crypto` line of a suite patchcord speaks is an error
//! that says so. A usable `a=crypto` is taken under `RTP/AVP` too: ffmpeg writes its SRTP
//! key that way.
//!
//! # Crate
//!
//! Parsing and writing are `sdp-types` (by a GStreamer maintainer, MIT): a complete
//! RFC 8866 parser and writer with typed `rtpmap`, `fmtp`, `rtcp` and `source-filter`
//! attributes and connection addresses with TTL, which is all this needs. Also looked
//! at: `webrtc-sdp` (Mozilla's, MPL-2.0, needs Rust 1.88 where this workspace promises
//! 1.85, and is shaped for WebRTC offers rather than plain RTP/AVP and multicast) and
//! `sdp` (webrtc-rs, likewise WebRTC-shaped, no typed source filters).

use std::fmt::Write as _;
use std::net::IpAddr;

use sdp_types::{
    Connection, Fmtp, FmtpParam, Media, Origin, Rtcp, RtpMap, Session, SourceFilter, SourceFilterAddrType,
    SourceFilterAddress, SourceFilterDestination, SourceFilterMode,
};

use crate::srtp_key::MasterKey;
use crate::time::SAMPLE_RATE;

/// Where the stream's RTCP goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPort {
    /// On its own port (by convention the RTP port + 1).
    Port(u16),
    /// On the RTP port (RFC 5761).
    Mux,
    /// The sender sends none.
    None,
}

/// RFC 2198 redundancy of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redundancy {
    pub payload_type: u8,
    /// Previous frames each packet repeats.
    pub depth: usize,
}

/// Everything about one Opus/RTP stream that a peer needs to receive it.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamDescription {
    /// Where the packets go: a unicast address or a multicast group.
    pub destination: IpAddr,
    pub port: u16,
    /// IPv4 multicast time-to-live.
    pub ttl: Option<u8>,
    /// The sender's address (the `o=` line). `None` when not known. Read from the source
    /// filter, else from `o=` when that is not `0.0.0.0`.
    pub source: Option<IpAddr>,
    /// A source filter names `source` as the stream's only sender (RFC 4570): what a
    /// source-specific join (SSM) needs, and for a unicast stream what the receiver
    /// allows. patchcord-send writes one for a group only.
    pub source_filter: bool,
    pub rtcp: RtcpPort,
    pub opus_payload_type: u8,
    pub red: Option<Redundancy>,
    /// 1 or 2.
    pub channels: u16,
    pub ptime_ms: Option<f64>,
    pub max_average_bitrate: Option<u32>,
    pub inband_fec: bool,
    /// SRTP (`RTP/SAVP` with `a=crypto`); `None` for plain RTP (`RTP/AVP`).
    pub crypto: Option<MasterKey>,
}

/// A description patchcord cannot receive from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("not a valid SDP description: {0}")]
    Syntax(String),
    #[error("no Opus stream in the SDP (an m=audio line with a=rtpmap:PT opus/48000/2)")]
    NoOpus,
    #[error(
        "the Opus stream uses the secure profile {0} without a usable a=crypto line \
         (patchcord speaks AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM with an inline key){1}"
    )]
    Secure(String, String),
    #[error("no connection address (c=) for the Opus stream")]
    NoConnection,
    #[error("bad connection address in the SDP: {0}")]
    BadConnection(String),
}

impl StreamDescription {
    /// The SDP text. `session_id` goes into the `o=` line (use the SSRC or a time);
    /// `tool` into `a=tool`.
    pub fn to_sdp(&self, session_id: u64, tool: &str) -> String {
        let origin_ip = self.source.unwrap_or(if self.destination.is_ipv4() {
            IpAddr::from([0, 0, 0, 0])
        } else {
            IpAddr::from([0u16; 8])
        });
        let mut session = Session::new(Origin::with_ip_addr(session_id, 1, origin_ip), "patchcord");
        session.set_connection(Connection::from_ip_addr_ttl(self.destination, self.ttl));
        session.add_attribute_with_value("tool", tool);
        let opus = self.opus_payload_type;
        let formats = match self.red {
            Some(r) => format!("{} {opus}", r.payload_type),
            None => opus.to_string(),
        };
        let mut m = Media::new(
            sdp_types::MediaType::Audio,
            self.port,
            if self.crypto.is_some() {
                sdp_types::TransportProto::RtpSavp
            } else {
                sdp_types::TransportProto::RtpAvp
            },
            formats,
        );
        if let Some(key) = &self.crypto {
            m.add_attribute_with_value("crypto", key.crypto_attribute());
        }
        m.add_attribute(RtpMap::with_encoding_params(opus, "opus", SAMPLE_RATE, "2"));
        let stereo = if self.channels == 2 { "1" } else { "0" };
        let mut fmtp = Fmtp::new(opus);
        if self.inband_fec {
            fmtp.add_format_specific_param(FmtpParam::with_value("useinbandfec", "1"));
        }
        fmtp.add_format_specific_param(FmtpParam::with_value("stereo", stereo));
        fmtp.add_format_specific_param(FmtpParam::with_value("sprop-stereo", stereo));
        if let Some(b) = self.max_average_bitrate {
            fmtp.add_format_specific_param(FmtpParam::with_value("maxaveragebitrate", b));
        }
        m.add_attribute(fmtp);
        if let Some(p) = self.ptime_ms {
            m.add_attribute_with_value("ptime", format_ms(p));
        }
        if let Some(r) = self.red {
            m.add_attribute(RtpMap::with_encoding_params(
                r.payload_type,
                "red",
                SAMPLE_RATE,
                "2",
            ));
            let mut blocks = String::new();
            for i in 0..=r.depth {
                let _ = write!(blocks, "{}{opus}", if i > 0 { "/" } else { "" });
            }
            let mut red = Fmtp::new(r.payload_type);
            red.add_format_specific_param(FmtpParam::new(blocks));
            m.add_attribute(red);
        }
        match self.rtcp {
            RtcpPort::Port(p) => m.add_attribute(Rtcp::with_port(p)),
            RtcpPort::Mux => m.add_attribute_from_str("rtcp-mux"),
            RtcpPort::None => {}
        }
        if let (Some(src), true) = (self.source, self.source_filter) {
            m.add_attribute(SourceFilter {
                mode: SourceFilterMode::Incl,
                nettype: sdp_types::NetType::In,
                addrtype: if src.is_ipv4() {
                    SourceFilterAddrType::Ip4
                } else {
                    SourceFilterAddrType::Ip6
                },
                destination: SourceFilterDestination::Address(SourceFilterAddress::IpAddr(self.destination)),
                sources: vec![SourceFilterAddress::IpAddr(src)],
            });
        }
        session.add_media(m);
        let mut out = Vec::new();
        // writing into a Vec cannot fail
        let _ = session.write(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Read the first Opus stream of a description.
    pub fn parse(text: &[u8]) -> Result<Self, SdpError> {
        let session = Session::parse(text).map_err(|e| SdpError::Syntax(e.to_string()))?;
        let (media, opus) = session
            .medias
            .iter()
            .filter(|m| m.media == "audio")
            .find_map(|m| {
                let opus = m
                    .attributes_typed::<RtpMap>()
                    .filter_map(Result::ok)
                    .find(|r| r.encoding_name.eq_ignore_ascii_case("opus") && r.clock_rate == SAMPLE_RATE)?;
                Some((m, opus.payload_type))
            })
            .ok_or(SdpError::NoOpus)?;
        // the first a=crypto of a suite we speak; else why the last one was refused. ffmpeg
        // writes its key under RTP/AVP: a key is taken whatever the profile says
        let mut why = String::new();
        let crypto = media.get_attribute_values("crypto").flatten().find_map(|v| {
            MasterKey::from_crypto_attribute(v)
                .map_err(|e| why = format!(": {e}"))
                .ok()
        });
        if crypto.is_none() && media.proto.contains("SAVP") {
            return Err(SdpError::Secure(media.proto.clone(), why));
        }
        let connection = media
            .connections
            .first()
            .or(session.connection.as_ref())
            .ok_or(SdpError::NoConnection)?;
        let address = connection
            .try_address()
            .map_err(|e| SdpError::BadConnection(e.to_string()))?;
        let red = media
            .attributes_typed::<RtpMap>()
            .filter_map(Result::ok)
            // RED on the Opus stream's own payload type cannot be told from it: not RED
            .find(|r| r.encoding_name.eq_ignore_ascii_case("red") && r.payload_type != opus)
            .map(|r| {
                let depth = media
                    .attributes_typed::<Fmtp>()
                    .filter_map(Result::ok)
                    .find(|f| f.fmt == r.payload_type)
                    .and_then(|f| {
                        f.format_specific_params
                            .first()
                            .map(|p| p.param.split('/').count())
                    })
                    .unwrap_or(1);
                Redundancy {
                    payload_type: r.payload_type,
                    depth: depth.saturating_sub(1),
                }
            });
        let params: Vec<FmtpParam> = media
            .attributes_typed::<Fmtp>()
            .filter_map(Result::ok)
            .filter(|f| f.fmt == opus)
            .flat_map(|f| f.format_specific_params)
            .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|p| p.param.trim().eq_ignore_ascii_case(name))
                .and_then(|p| p.val.as_deref())
                .map(str::trim)
        };
        let channels = match param("sprop-stereo").or(param("stereo")) {
            Some("1") => 2,
            _ => 1,
        };
        let rtcp = if media.has_attribute("rtcp-mux") {
            RtcpPort::Mux
        } else {
            match media.get_first_attribute_typed::<Rtcp>() {
                Some(Ok(r)) => RtcpPort::Port(r.port),
                _ => RtcpPort::Port(media.port.saturating_add(1)),
            }
        };
        let filtered = media
            .attributes_typed::<SourceFilter>()
            .filter_map(Result::ok)
            .find(|f| f.mode == SourceFilterMode::Incl)
            .and_then(|f| {
                f.sources.into_iter().find_map(|s| match s {
                    SourceFilterAddress::IpAddr(ip) => Some(ip),
                    SourceFilterAddress::FQDN(_) => None,
                })
            });
        let source = filtered.or_else(|| {
            session
                .origin
                .try_parse_unicast_ip_address()
                .ok()
                .filter(|ip| !ip.is_unspecified())
        });
        Ok(StreamDescription {
            destination: address.ip,
            port: media.port,
            // only an IPv4 group has a TTL (RFC 8866 §5.7); after an IPv6 address "/N"
            // is a count of addresses, and after a unicast one it means nothing
            ttl: address
                .ttl
                .filter(|_| address.ip.is_ipv4() && address.ip.is_multicast()),
            source,
            source_filter: filtered.is_some(),
            rtcp,
            opus_payload_type: opus,
            red,
            channels,
            ptime_ms: media
                .get_first_attribute_value("ptime")
                .flatten()
                .and_then(|v| v.trim().parse().ok()),
            max_average_bitrate: param("maxaveragebitrate").and_then(|v| v.parse().ok()),
            inband_fec: param("useinbandfec") == Some("1"),
            crypto,
        })
    }
}

/// 10 → "10", 2.5 → "2.5".
fn format_ms(ms: f64) -> String {
    if ms.fract() == 0.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unicast_stereo() -> StreamDescription {
        StreamDescription {
            destination: "127.0.0.1".parse().unwrap(),
            port: 5004,
            ttl: None,
            source: Some("127.0.0.1".parse().unwrap()),
            source_filter: false,
            rtcp: RtcpPort::Port(5005),
            opus_payload_type: 96,
            red: None,
            channels: 2,
            ptime_ms: Some(10.0),
            max_average_bitrate: Some(128_000),
            inband_fec: false,
            crypto: None,
        }
    }

    #[test]
    fn unicast_stereo_text_and_round_trip() {
        let d = unicast_stereo();
        let text = d.to_sdp(42, "patchcord-send 0.1.0");
        for line in [
            "v=0\r\n",
            "o=- 42 1 IN IP4 127.0.0.1\r\n",
            "c=IN IP4 127.0.0.1\r\n",
            "m=audio 5004 RTP/AVP 96\r\n",
            "a=rtpmap:96 opus/48000/2\r\n",
            "a=fmtp:96 stereo=1;sprop-stereo=1;maxaveragebitrate=128000\r\n",
            "a=ptime:10\r\n",
            "a=rtcp:5005\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert!(!text.contains("source-filter"), "{text}");
        assert_eq!(StreamDescription::parse(text.as_bytes()).unwrap(), d);
    }

    /// Found by the `sdp` fuzz target: RED mapped to the Opus payload type was read as
    /// redundancy on that type (which the receiver refuses: "--red-payload-type equals
    /// --payload-type").
    #[test]
    fn red_on_the_opus_payload_type_is_not_red() {
        let text = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=x\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:96 red/48000/2\r\na=fmtp:96 96/96\r\n";
        let d = StreamDescription::parse(text.as_bytes()).unwrap();
        assert_eq!((d.opus_payload_type, d.red), (96, None));
        assert_eq!(StreamDescription::parse(d.to_sdp(1, "t").as_bytes()).unwrap(), d);
    }

    /// Found by the `sdp` fuzz target: a TTL after an address that is not an IPv4 group was
    /// read as one (and not written again).
    #[test]
    fn only_an_ipv4_group_has_a_ttl() {
        for (c, ttl) in [
            ("IN IP6 ::100/2", None),
            ("IN IP4 ::100/2", None),
            ("IN IP6 ff15::1/3", None),
            ("IN IP4 192.0.2.1/16", None),
            ("IN IP4 239.1.2.3/16", Some(16)),
        ] {
            let text = format!("v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=x\r\nc={c}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n");
            let d = StreamDescription::parse(text.as_bytes()).unwrap();
            assert_eq!(d.ttl, ttl, "{c}");
            let again = StreamDescription::parse(d.to_sdp(1, "t").as_bytes()).unwrap();
            assert_eq!(again, d, "{c}");
        }
    }

    /// Found by the `sdp` fuzz target: a unicast description with a source filter was read
    /// with its filter (the receiver allows only that source) but written without it.
    #[test]
    fn unicast_source_filter_round_trip() {
        let d = StreamDescription {
            source: Some("192.168.1.10".parse().unwrap()),
            source_filter: true,
            ..unicast_stereo()
        };
        let text = d.to_sdp(42, "patchcord-send 0.1.0");
        assert!(
            text.contains("a=source-filter:incl IN IP4 127.0.0.1 192.168.1.10\r\n"),
            "{text}"
        );
        assert_eq!(StreamDescription::parse(text.as_bytes()).unwrap(), d);
    }

    #[test]
    fn multicast_mono_with_redundancy_round_trip() {
        let d = StreamDescription {
            destination: "239.1.2.3".parse().unwrap(),
            ttl: Some(16),
            source: Some("10.0.0.7".parse().unwrap()),
            source_filter: true,
            rtcp: RtcpPort::Mux,
            red: Some(Redundancy {
                payload_type: 121,
                depth: 2,
            }),
            channels: 1,
            ptime_ms: Some(2.5),
            inband_fec: true,
            ..unicast_stereo()
        };
        let text = d.to_sdp(1, "t");
        for line in [
            "c=IN IP4 239.1.2.3/16\r\n",
            "m=audio 5004 RTP/AVP 121 96\r\n",
            "a=fmtp:96 useinbandfec=1;stereo=0;sprop-stereo=0;maxaveragebitrate=128000\r\n",
            "a=ptime:2.5\r\n",
            "a=rtpmap:121 red/48000/2\r\n",
            "a=fmtp:121 96/96/96\r\n",
            "a=rtcp-mux\r\n",
            "a=source-filter:incl IN IP4 239.1.2.3 10.0.0.7\r\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
        assert_eq!(StreamDescription::parse(text.as_bytes()).unwrap(), d);
        let v6 = StreamDescription {
            destination: "ff15::1234".parse().unwrap(),
            ttl: None,
            source: Some("::1".parse().unwrap()),
            ..d
        };
        let text = v6.to_sdp(1, "t");
        assert!(text.contains("c=IN IP6 ff15::1234\r\n"), "{text}");
        assert_eq!(StreamDescription::parse(text.as_bytes()).unwrap(), v6);
    }

    /// What ffmpeg 5.1's RTP muxer writes (`-sdp_file`), and a hand-written GStreamer one.
    #[test]
    fn other_tools_descriptions() {
        let ffmpeg = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\n\
                      a=tool:libavformat 59.27.100\nm=audio 6000 RTP/AVP 97\nb=AS:64\n\
                      a=rtpmap:97 opus/48000/2\na=fmtp:97 sprop-stereo=0\n";
        let d = StreamDescription::parse(ffmpeg.as_bytes()).unwrap();
        assert_eq!(
            (d.port, d.opus_payload_type, d.channels, d.rtcp, d.red),
            (6000, 97, 1, RtcpPort::Port(6001), None)
        );
        let gst = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=gst\r\nt=0 0\r\n\
                   m=video 5000 RTP/AVP 100\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:100 H264/90000\r\n\
                   m=audio 5002 RTP/AVP 100\r\nc=IN IP4 127.0.0.1\r\na=rtpmap:100 OPUS/48000/2\r\n\
                   a=fmtp:100 stereo=1\r\n";
        let d = StreamDescription::parse(gst.as_bytes()).unwrap();
        assert_eq!((d.port, d.opus_payload_type, d.channels), (5002, 100, 2));
        for (bad, want) in [
            ("v=0\r\nnonsense\r\n", None),
            (
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 5 RTP/AVP 0\r\nc=IN IP4 1.2.3.4\r\n",
                Some(SdpError::NoOpus),
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 5 RTP/AVP 96\r\na=rtpmap:96 opus/48000/2\r\n",
                Some(SdpError::NoConnection),
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 5 RTP/SAVP 96\r\nc=IN IP4 1.2.3.4\r\na=rtpmap:96 opus/48000/2\r\n",
                Some(SdpError::Secure("RTP/SAVP".into(), String::new())),
            ),
            (
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=x\r\nt=0 0\r\nm=audio 5 RTP/SAVP 96\r\nc=IN IP4 1.2.3.4\r\na=rtpmap:96 opus/48000/2\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=\r\n",
                Some(SdpError::Secure(
                    "RTP/SAVP".into(),
                    ": the SRTP key is 5 bytes; AES_CM_128_HMAC_SHA1_80 takes 30 (master key 16 + salt 14): \
                     make one with `head -c 30 /dev/urandom | base64`"
                        .into(),
                )),
            ),
        ] {
            let e = StreamDescription::parse(bad.as_bytes()).unwrap_err();
            if let Some(w) = want {
                assert_eq!(e, w);
            }
        }
    }
}

#[cfg(test)]
mod srtp_tests {
    use super::*;
    use crate::srtp_key::Suite;

    /// `RTP/SAVP` and `a=crypto` written, read back, and read from ffmpeg's form.
    #[test]
    fn secure_profile_carries_the_key() {
        for suite in Suite::ALL {
            let len = suite.master_key_len() + suite.master_salt_len();
            let key = MasterKey::new(suite, &vec![0x42; len]).unwrap();
            let d = StreamDescription {
                destination: "127.0.0.1".parse().unwrap(),
                port: 5004,
                ttl: None,
                source: None,
                source_filter: false,
                rtcp: RtcpPort::Port(5005),
                opus_payload_type: 96,
                red: None,
                channels: 1,
                ptime_ms: None,
                max_average_bitrate: None,
                inband_fec: false,
                crypto: Some(key.clone()),
            };
            let text = d.to_sdp(1, "t");
            assert!(text.contains("m=audio 5004 RTP/SAVP 96\r\n"), "{text}");
            let line = format!("a=crypto:1 {suite} inline:{}\r\n", key.to_base64());
            assert!(text.contains(&line), "{line} missing from\n{text}");
            assert_eq!(StreamDescription::parse(text.as_bytes()).unwrap(), d);
        }
        // what ffmpeg 5.1's RTP muxer prints with -srtp_out_suite/-srtp_out_params: its
        // key under RTP/AVP
        let ffmpeg = "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=No Name\nc=IN IP4 127.0.0.1\nt=0 0\n\
                      m=audio 6000 RTP/AVP 97\nb=AS:64\na=rtpmap:97 opus/48000/2\n\
                      a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJC\n";
        let d = StreamDescription::parse(ffmpeg.as_bytes()).unwrap();
        assert_eq!(d.crypto.map(|k| k.master_key().to_vec()), Some(vec![0x42; 16]));
    }
}
