//! End-to-end latency: from the instant a sample was captured at the sender to the instant
//! it is played at the receiver.
//!
//! The sender's RTCP sender reports pair an RTP timestamp with the wall-clock instant at
//! which the sample carrying it was captured (compensated for the encoder's look-ahead, so
//! it refers to the *decoded* sample with that timestamp). The receiver knows, for the
//! first frame of every output period, which RTP timestamp it plays and the wall-clock
//! instant the device will play it. The difference is the latency of that sample. It is
//! exact on one host; across hosts it is as good as the two wall clocks agree (NTP/PTP).

use crate::rtcp::{ntp_to_unix_ns, SenderReport};
use crate::time::frames_to_ns;

/// Sender clock map from the latest sender report: RTP timestamp → capture instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureClock {
    /// Capture instant (Unix ns) of the sample with timestamp `rtp_ts`.
    pub capture_unix_ns: i64,
    pub rtp_ts: u32,
}

impl CaptureClock {
    pub fn from_sender_report(sr: &SenderReport) -> Self {
        CaptureClock {
            capture_unix_ns: ntp_to_unix_ns(sr.ntp),
            rtp_ts: sr.rtp_timestamp,
        }
    }

    /// Capture instant of the sample with RTP timestamp `rtp_ts` (within ±2^31 samples of
    /// the report, i.e. ±12 hours).
    pub fn capture_unix_ns_of(&self, rtp_ts: u32) -> i64 {
        let delta = rtp_ts.wrapping_sub(self.rtp_ts) as i32 as i64;
        self.capture_unix_ns + frames_to_ns(delta)
    }

    /// Latency of the sample with `rtp_ts` played at `playback_unix_ns`.
    pub fn latency_ns(&self, rtp_ts: u32, playback_unix_ns: i64) -> i64 {
        playback_unix_ns - self.capture_unix_ns_of(rtp_ts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtcp::unix_ns_to_ntp;

    #[test]
    fn latency_of_a_sample_across_timestamp_wrap() {
        let sr = SenderReport {
            ssrc: 1,
            ntp: unix_ns_to_ntp(1_000_000_000_000),
            rtp_timestamp: u32::MAX - 47,
            packet_count: 0,
            octet_count: 0,
        };
        let clock = CaptureClock::from_sender_report(&sr);
        // 48 samples later = 1 ms later, past the wrap
        // NTP fractions are 2^-32 s: conversions are exact to 1 ns
        let close = |a: i64, b: i64| assert!((a - b).abs() <= 1, "{a} vs {b}");
        close(clock.capture_unix_ns_of(0), 1_000_000_000_000 + 1_000_000);
        close(clock.latency_ns(0, 1_000_000_000_000 + 11_000_000), 10_000_000);
        // 480 samples before the report
        close(
            clock.capture_unix_ns_of(u32::MAX - 47 - 480),
            1_000_000_000_000 - 10_000_000,
        );
    }
}
