//! patchcord's sans-IO core: everything between the socket and the audio device that can
//! be a plain state machine. Nothing in this crate reads a clock, touches a socket or a
//! device: time is always an argument, which is what lets the tests run hours of lossy,
//! jittery network in seconds, deterministically.
//!
//! - [`rtp`]: RTP/Opus packet building and validation, sequence/timestamp extension.
//! - [`rtcp`]: sender and receiver reports, SDES, BYE, NTP time conversion, RTP/RTCP demux.
//! - [`rtcp_interval`]: when to send the next RTCP report (RFC 3550 A.7).
//! - [`jitter`]: fixed-capacity packet store of the jitter buffer.
//! - [`playout`]: one received stream: jitter buffer + decoder + sample-accurate timeline.
//! - [`sdp`]: SDP descriptions of a stream, written and read.
//! - [`srtp`], [`srtp_key`]: SRTP/SRTCP protect and unprotect with a pre-shared key.
//! - [`time`]: the 48 kHz sample rate and ns/frame conversions.
//! - [`stats`]: RFC 3550 reception statistics and playout counters.
//! - [`source`]: source validation: probation of new SSRCs, address binding, jumps held aside.
//! - [`load`]: the load governor: admission and shedding of streams by render time.
//! - [`latency`]: end-to-end latency from sender reports and playback instants.
//! - [`capture_gaps`]: audio the capture device or server dropped silently, from capture instants.
//! - [`level`]: peak / RMS dBFS and clip counts for the meters.
//! - [`mem`]: allocation that is resident before the audio thread touches it.
//! - [`fuzz`]: the bodies of the fuzz targets (`fuzz/`), also replayed on stable.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub mod capture_gaps;
pub mod delay;
pub mod drift;
pub mod fuzz;
pub mod jitter;
pub mod latency;
pub mod level;
pub mod load;
pub mod mem;
pub mod mixer;
pub mod playout;
pub mod rate;
pub mod red;
pub mod rtcp;
pub mod rtcp_interval;
pub mod rtp;
pub mod sdp;
pub mod source;
pub mod srtp;
pub mod srtp_key;
pub mod stats;
pub mod stretch;
pub mod time;
pub mod tsm;
