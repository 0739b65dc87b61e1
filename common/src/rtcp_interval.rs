//! When a participant sends its next RTCP compound packet: RFC 3550 §6.2–6.3, computed
//! as in its Appendix A.7 (`rtcp_interval()`), sans-IO: the random draw is an argument.
//!
//! RTCP gets 5 % of the session bandwidth. When senders are at most a quarter of the
//! members, senders share a quarter of that and receivers the rest, so the interval grows
//! with the number of participants and the size of their reports: many senders make each
//! receiver report less often per sender, not flood the network. The deterministic
//! interval is at least a minimum (RFC 3550's "reduced minimum" 360 s / session kb/s,
//! capped at 5 s: 2.8 s for one 128 kb/s stream), halved before the first report; it is
//! then spread over [0.5, 1.5] times itself and divided by e − 3/2 (the compensation for
//! timer reconsideration, which a unicast session with a stable membership never needs).

/// Fraction of the session bandwidth for RTCP.
pub const RTCP_BANDWIDTH_FRACTION: f64 = 0.05;
/// Share of the RTCP bandwidth for senders when they are few.
const SENDER_FRACTION: f64 = 0.25;
/// e − 3/2 (A.7).
const COMPENSATION: f64 = std::f64::consts::E - 1.5;
/// RFC 3550's fixed minimum interval.
const MAX_MIN_INTERVAL_S: f64 = 5.0;
/// IPv4 + UDP header bytes, counted in every RTCP packet's size (§6.2).
pub const UDP_IP_OVERHEAD: usize = 28;

/// Who is in the session, as this participant sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Participants {
    /// Everyone, this participant included.
    pub members: usize,
    pub senders: usize,
    /// This participant sent RTP since its last report.
    pub we_sent: bool,
    /// RTP bandwidth of the session (bits per second).
    pub session_bps: f64,
}

/// The RTCP send schedule of one participant.
#[derive(Debug, Clone)]
pub struct RtcpTimer {
    /// Average compound packet size, bytes with UDP/IP headers (A.7 `avg_rtcp_size`).
    avg_size: f64,
    initial: bool,
}

impl RtcpTimer {
    /// A participant that has sent no report yet, expecting reports of about
    /// `expected_size` bytes (without UDP/IP headers).
    pub fn new(expected_size: usize) -> Self {
        RtcpTimer {
            avg_size: (expected_size + UDP_IP_OVERHEAD) as f64,
            initial: true,
        }
    }

    /// A compound packet of `size` bytes (without UDP/IP headers) was sent.
    pub fn sent(&mut self, size: usize) {
        self.avg_size += ((size + UDP_IP_OVERHEAD) as f64 - self.avg_size) / 16.0;
        self.initial = false;
    }

    /// Average compound packet size so far, bytes with UDP/IP headers.
    pub fn average_size(&self) -> f64 {
        self.avg_size
    }

    /// Nanoseconds until the next report; `random` is uniform in [0, 1).
    pub fn interval_ns(&self, p: &Participants, random: f64) -> i64 {
        let session_kbps = (p.session_bps / 1000.0).max(1.0);
        let mut min_s = (360.0 / session_kbps).min(MAX_MIN_INTERVAL_S);
        if self.initial {
            min_s /= 2.0;
        }
        let members = p.members.max(1);
        let mut bandwidth = (p.session_bps / 8.0 * RTCP_BANDWIDTH_FRACTION).max(1.0);
        let mut n = members;
        if (p.senders as f64) <= members as f64 * SENDER_FRACTION {
            if p.we_sent {
                bandwidth *= SENDER_FRACTION;
                n = p.senders.max(1);
            } else {
                bandwidth *= 1.0 - SENDER_FRACTION;
                n = members - p.senders.min(members - 1);
            }
        }
        let t = (self.avg_size * n as f64 / bandwidth).max(min_s);
        let t = t * (random.clamp(0.0, 1.0) + 0.5) / COMPENSATION;
        (t * 1e9) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receiver_of(senders: usize, session_bps: f64) -> Participants {
        Participants {
            members: senders + 1,
            senders,
            we_sent: false,
            session_bps,
        }
    }

    #[test]
    fn one_stream_reports_every_few_seconds_spread_around_the_reduced_minimum() {
        let mut t = RtcpTimer::new(80);
        let p = receiver_of(1, 128_000.0);
        // first report: half of 360/128 s, spread
        let first: Vec<f64> = [0.0, 0.5, 0.999]
            .iter()
            .map(|&r| t.interval_ns(&p, r) as f64 / 1e9)
            .collect();
        let half_min = 360.0 / 128.0 / 2.0;
        assert!((first[1] - half_min / COMPENSATION).abs() < 1e-6, "{first:?}");
        assert!((first[0] - 0.5 * half_min / COMPENSATION).abs() < 1e-6);
        assert!(first[2] < 1.5 * half_min / COMPENSATION);
        t.sent(80);
        let later = t.interval_ns(&p, 0.5) as f64 / 1e9;
        assert!((later - 2.0 * half_min / COMPENSATION).abs() < 1e-6, "{later}");
        // low bandwidth: the fixed 5 s minimum
        assert!(
            (t.interval_ns(&receiver_of(1, 8_000.0), 0.5) as f64 / 1e9 - 5.0 / COMPENSATION).abs() < 1e-6
        );
    }

    /// With many senders a receiver's round of reports grows (one RR + SDES to each), and
    /// the interval grows with it: RTCP stays within 5 % of the session bandwidth.
    #[test]
    fn many_senders_stretch_the_interval_to_the_bandwidth_share() {
        for senders in [1usize, 8, 64, 256] {
            let session_bps = 128_000.0 * senders as f64;
            let size = 56 * senders;
            let mut t = RtcpTimer::new(size);
            for _ in 0..64 {
                t.sent(size);
            }
            let p = receiver_of(senders, session_bps);
            let mean_s = t.interval_ns(&p, 0.5) as f64 / 1e9 * COMPENSATION;
            let rtcp_bps = (size + UDP_IP_OVERHEAD) as f64 * 8.0 / mean_s;
            // this one receiver (among senders + 1 members) uses at most the whole RTCP share
            assert!(
                rtcp_bps <= session_bps * RTCP_BANDWIDTH_FRACTION * 1.0001,
                "{senders}: {rtcp_bps}"
            );
        }
        // a sender among many receivers gets the senders' quarter
        let t = RtcpTimer::new(100);
        let sender = Participants {
            members: 10,
            senders: 1,
            we_sent: true,
            session_bps: 128_000.0,
        };
        assert!(t.interval_ns(&sender, 0.5) > 0);
    }
}
