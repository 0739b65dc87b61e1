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
//! the timer reconsideration below).
//!
//! **Forward reconsideration** (§6.3.3, A.7 `OnExpire`): when the timer fires, the interval
//! is computed again from the last report's time with the membership as it is *now* and a
//! fresh random draw; only if that instant has passed is the report sent, else the timer
//! is set to it ([`RtcpTimer::on_expiry`]). When many senders appear at once (a
//! conference starting, a flood of new SSRCs) the interval grows before anything is sent,
//! instead of every participant sending one round at the old, short interval.
//!
//! **Reverse reconsideration** (§6.3.4, [`RtcpTimer::members_fell`]): when members leave
//! (a BYE, a time-out), the next report and the last one's time are both pulled towards
//! now by `members / pmembers`, so that a receiver left with one of its many senders does
//! not wait out an interval computed for the crowd (RFC 3550 gives the reason: otherwise
//! the remaining participants could all be timed out by each other).
//!
//! BYE reconsideration (§6.3.7) is for sessions of more than 50 members; a patchcord
//! receiver sends no BYE, and a sender with at most 50 receivers may send its BYE at once,
//! as it does.

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
    /// When the last report went out, or the schedule started (A.7 `tp`).
    last_ns: Option<i64>,
}

/// What to do when the report timer fires ([`RtcpTimer::on_expiry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// Send the report now.
    Send,
    /// Not yet: the membership grew; set the timer to this instant (ns) and ask again.
    WaitUntil(i64),
}

impl RtcpTimer {
    /// A participant that has sent no report yet, expecting reports of about
    /// `expected_size` bytes (without UDP/IP headers).
    pub fn new(expected_size: usize) -> Self {
        RtcpTimer {
            avg_size: (expected_size + UDP_IP_OVERHEAD) as f64,
            initial: true,
            last_ns: None,
        }
    }

    /// A compound packet of `size` bytes (without UDP/IP headers) was sent at `now_ns`.
    pub fn sent(&mut self, size: usize, now_ns: i64) {
        self.avg_size += ((size + UDP_IP_OVERHEAD) as f64 - self.avg_size) / 16.0;
        self.initial = false;
        self.last_ns = Some(now_ns);
    }

    /// The timer fired at `now_ns`: forward reconsideration (§6.3.3). The interval is
    /// drawn again (`random` uniform in [0, 1), a fresh draw) for the membership `p` as it
    /// is now, from the last report (or the first expiry, which starts the schedule and
    /// sends).
    pub fn on_expiry(&mut self, now_ns: i64, p: &Participants, random: f64) -> Expiry {
        let Some(last) = self.last_ns else {
            self.last_ns = Some(now_ns);
            return Expiry::Send;
        };
        let due = last.saturating_add(self.interval_ns(p, random));
        if due <= now_ns {
            Expiry::Send
        } else {
            Expiry::WaitUntil(due)
        }
    }

    /// Reverse reconsideration (§6.3.4): at `now_ns` the membership fell from `before` to
    /// `after`; the report due at `due_ns` is brought forward to
    /// `now + after/before × (due − now)`, and the last report's time moved back to
    /// `now − after/before × (now − last)`. Returns the new due instant (`due_ns` itself
    /// when the membership did not fall).
    pub fn members_fell(&mut self, now_ns: i64, due_ns: i64, before: usize, after: usize) -> i64 {
        if after >= before || before == 0 {
            return due_ns;
        }
        let ratio = after.max(1) as f64 / before as f64;
        if let Some(last) = self.last_ns.as_mut() {
            *last = now_ns - ((now_ns - *last).max(0) as f64 * ratio) as i64;
        }
        now_ns + ((due_ns - now_ns).max(0) as f64 * ratio) as i64
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
        t.sent(80, 0);
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
                t.sent(size, 0);
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

    /// §6.3.3: a timer set for one sender fires after a hundred more have appeared. The
    /// interval drawn again for 101 senders lies beyond now: wait until then, and then
    /// send; with the membership unchanged the report goes when due.
    #[test]
    fn a_grown_membership_postpones_the_report() {
        let mut t = RtcpTimer::new(80);
        let one = receiver_of(1, 128_000.0);
        assert_eq!(
            t.on_expiry(0, &one, 0.5),
            Expiry::Send,
            "the first expiry starts and sends"
        );
        t.sent(80, 0);
        let due = t.interval_ns(&one, 0.5);
        assert_eq!(t.on_expiry(due, &one, 0.5), Expiry::Send);
        // the same draw a little early: not yet
        assert_eq!(t.on_expiry(due - 1, &one, 0.5), Expiry::WaitUntil(due));
        // a hundred more senders, each report block making the round bigger
        let many = receiver_of(101, 101.0 * 128_000.0);
        let mut big = t.clone();
        for _ in 0..64 {
            big.sent(56 * 101, 0);
        }
        let later = big.interval_ns(&many, 0.5);
        assert!(later > due, "{later} vs {due}");
        match big.on_expiry(due, &many, 0.5) {
            Expiry::WaitUntil(at) => {
                assert_eq!(at, later);
                assert_eq!(big.on_expiry(at, &many, 0.5), Expiry::Send);
            }
            Expiry::Send => panic!("sent at the old interval"),
        }
    }

    /// Over many rounds with fresh draws and a steady membership, reconsideration plus the
    /// e − 3/2 compensation keeps the mean interval near the deterministic one: above it,
    /// and below 1.5 times it.
    #[test]
    fn reconsidered_rounds_keep_the_mean_interval() {
        let mut t = RtcpTimer::new(80);
        let p = receiver_of(1, 128_000.0);
        let mut now = 0i64;
        let mut draws = (1..).map(|k: u64| (k as f64 * 0.618_033_988_75).fract());
        let mut next = || draws.next().unwrap_or(0.5);
        assert_eq!(t.on_expiry(now, &p, next()), Expiry::Send);
        t.sent(80, now);
        let rounds = 2000;
        let start = now;
        for _ in 0..rounds {
            let mut at = now + t.interval_ns(&p, next());
            while let Expiry::WaitUntil(later) = t.on_expiry(at, &p, next()) {
                at = later;
            }
            now = at;
            t.sent(80, now);
        }
        let mean_s = (now - start) as f64 / rounds as f64 / 1e9;
        let deterministic = 360.0 / 128.0;
        assert!(
            mean_s > deterministic && mean_s < 1.5 * deterministic,
            "mean {mean_s} s against {deterministic} s"
        );
    }

    #[test]
    fn members_leaving_bring_the_next_report_forward_in_proportion() {
        let mut t = RtcpTimer::new(60);
        let p = receiver_of(1, 64_000.0);
        assert_eq!(t.on_expiry(0, &p, 0.5), Expiry::Send);
        t.sent(60, 0);
        // 40 of 41 members leave at 2 s, with the next report due at 12 s
        let due = t.members_fell(2_000_000_000, 12_000_000_000, 41, 1);
        assert_eq!(due, 2_000_000_000 + 10_000_000_000 / 41);
        // the last report moved back towards now by the same ratio: 2 s ago becomes 2/41 s
        // ago, so the next expiry's reconsideration starts from there
        let later = 2_000_000_000 - 2_000_000_000 / 41;
        match t.on_expiry(due, &p, 0.5) {
            Expiry::WaitUntil(at) => assert_eq!(at, later + t.interval_ns(&p, 0.5)),
            Expiry::Send => panic!("a fresh interval from the moved last report is still ahead"),
        }
        // a membership that grew or stayed changes nothing
        assert_eq!(t.members_fell(0, 5, 3, 3), 5);
        assert_eq!(t.members_fell(0, 5, 3, 4), 5);
        // a due instant in the past stays now at the earliest
        assert_eq!(t.members_fell(10, 5, 4, 2), 10);
    }
}
