//! The RTCP the receiver keeps about each sender and sends back to it (RFC 3550 §6.4.2):
//! a receiver report with one block per stream (fraction lost since the last report,
//! cumulative lost, extended highest sequence number, interarrival jitter, and LSR/DLSR,
//! from which the sender computes the round trip), and an SDES with our CNAME and TOOL.
//!
//! Where to: to the address each sender's RTCP comes from, out of the socket it came in
//! on (the RTP port with `--rtcp-mux`, else the RTCP port). That is symmetric RTCP (RFC
//! 4961): the one address that surely reaches back through a proxy or a NAT, and the one
//! patchcord-send listens on. Streams whose sender sends no RTCP get no report: nothing
//! says where one would be read. Senders sharing an address share a compound packet (at
//! most 31 blocks; beyond that the blocks take turns).
//!
//! When: on the RFC 3550 schedule ([`RtcpTimer`]), with this receiver and every sender as
//! members and the received RTP rate as the session bandwidth, so a round of reports to
//! many senders spaces the rounds out; with forward reconsideration (RFC 3550 §6.3.3), so
//! a crowd of senders arriving while the timer runs postpones the round instead of being
//! answered at the old, short interval; and with reverse reconsideration (§6.3.4), so that
//! when senders leave (BYE, time-out, shed) the next round comes sooner in proportion
//! ([`Feedback::left`], [`Feedback::take_rescheduled`]). The work per round is bounded by the number of
//! streams (`--max-streams`), and the table of senders by [`MAX_SENDERS`].
//!
//! It also remembers which senders are patchcord (SDES TOOL `patchcord-send …`): only
//! their sender reports pair an RTP timestamp with a *capture* instant on a clock this
//! host can compare, so only for them is the latency "capture → playback".
//!
//! Whom it hears: only what the receiver's source validation lets through (`NetSide::rtcp`
//! in `main.rs`): RTCP about a playing stream from that stream's own RTCP source, and
//! RTCP kept aside for a new SSRC once it passes probation from the same source. So a
//! report goes only to a validated stream's sender: not to a forger of its SSRC, not to
//! a source on probation or refused.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use patchcord_common::rtcp::{ns_to_ntp_short, ntp_short, CompoundWriter, ReportBlock, MAX_REPORT_BLOCKS};
use patchcord_common::rtcp_interval::{Expiry, Participants, RtcpTimer};

/// Senders remembered at once; RTCP from further SSRCs is not kept.
pub const MAX_SENDERS: usize = 4096;
/// A sender not heard from (RTP or RTCP) for this long is forgotten.
const FORGET_NS: i64 = 60_000_000_000;
/// Our TOOL.
const TOOL: &str = concat!("patchcord-recv ", env!("CARGO_PKG_VERSION"));

/// Whether an SDES TOOL names patchcord-send.
pub fn is_patchcord_tool(tool: Option<&[u8]>) -> bool {
    tool.is_some_and(|t| t.starts_with(b"patchcord-send"))
}

/// Which of the receiver's sockets a datagram came in on, and a reply leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    Rtp,
    Rtcp,
}

/// What the receiver measured of one stream (RFC 3550 A.3, A.8).
#[derive(Debug, Clone, Copy)]
pub struct Reception {
    pub ssrc: u32,
    pub expected: u64,
    pub lost: i64,
    pub extended_max_seq: u64,
    pub jitter_rtp: f64,
    /// The last time it was measured (Unix ns).
    pub at_ns: i64,
}

#[derive(Debug, Default)]
struct Sender {
    rtcp_from: Option<(SocketAddr, Via)>,
    /// LSR of its last sender report and when that arrived.
    last_sr: Option<(u32, i64)>,
    patchcord: bool,
    /// `expected` and received at our previous report (for the fraction lost).
    prior: (u64, u64),
    heard_ns: i64,
}

/// A compound RTCP packet to send.
pub struct Outgoing {
    pub via: Via,
    pub to: SocketAddr,
    pub packet: Vec<u8>,
}

pub struct Feedback {
    ssrc: u32,
    cname: String,
    senders: HashMap<u32, Sender>,
    timer: RtcpTimer,
    /// Round-robin start when an address has more than 31 streams.
    cursor: usize,
    /// When the next round is due, and the membership it was computed for (A.7 `tn`,
    /// `pmembers`).
    due_ns: Option<i64>,
    pmembers: usize,
    /// A due instant moved by reverse reconsideration, for the caller's timer.
    rescheduled: Option<i64>,
    pub reports_sent: u64,
    pub report_send_errors: u64,
}

impl Feedback {
    pub fn new(ssrc: u32, cname: String) -> Self {
        Feedback {
            ssrc,
            cname,
            senders: HashMap::new(),
            // RR with one block and an SDES: about 60 bytes
            timer: RtcpTimer::new(60),
            cursor: 0,
            due_ns: None,
            pmembers: 1,
            rescheduled: None,
            reports_sent: 0,
            report_send_errors: 0,
        }
    }

    fn sender(&mut self, ssrc: u32) -> Option<&mut Sender> {
        if self.senders.len() >= MAX_SENDERS && !self.senders.contains_key(&ssrc) {
            return None;
        }
        Some(self.senders.entry(ssrc).or_default())
    }

    /// A sender report of `ssrc` (its NTP timestamp) arrived at `arrival_ns`.
    pub fn sender_report(&mut self, ssrc: u32, ntp: u64, arrival_ns: i64, from: SocketAddr, via: Via) {
        if let Some(s) = self.sender(ssrc) {
            s.last_sr = Some((ntp_short(ntp), arrival_ns));
            s.rtcp_from = Some((from, via));
            s.heard_ns = arrival_ns;
        }
    }

    /// An SDES chunk of `ssrc`; `patchcord`: its TOOL names patchcord-send
    /// ([`is_patchcord_tool`]).
    pub fn sdes(&mut self, ssrc: u32, patchcord: bool, arrival_ns: i64, from: SocketAddr, via: Via) {
        if let Some(s) = self.sender(ssrc) {
            s.patchcord = patchcord;
            s.rtcp_from = Some((from, via));
            s.heard_ns = arrival_ns;
        }
    }

    /// Forget `ssrc`'s sender: it said goodbye, or a new stream of that SSRC starts from
    /// another source.
    pub fn forget(&mut self, ssrc: u32) {
        self.senders.remove(&ssrc);
    }

    /// `ssrc`'s sender left at `now_ns` (a BYE, a time-out, shed): forgotten, and when the
    /// membership fell, the next round is brought forward (reverse reconsideration, RFC
    /// 3550 §6.3.4); [`Self::take_rescheduled`] then tells the new instant.
    pub fn left(&mut self, ssrc: u32, now_ns: i64) {
        // one member fewer than the round was computed for; a sender never heard from
        // (no RTCP) was not counted apart from its stream, and the next round sees that
        if self.senders.remove(&ssrc).is_none() {
            return;
        }
        let members = self.pmembers.saturating_sub(1).max(1);
        if let Some(due) = self.due_ns.filter(|_| members < self.pmembers) {
            let moved = self.timer.members_fell(now_ns, due, self.pmembers, members);
            self.due_ns = Some(moved);
            self.rescheduled = Some(moved);
        }
        self.pmembers = members;
    }

    /// The instant (ns, the clock of `now_ns`) the next round was moved to since the last
    /// call, if it was.
    pub fn take_rescheduled(&mut self) -> Option<i64> {
        self.rescheduled.take()
    }

    /// Where `ssrc`'s RTCP came from last.
    pub fn rtcp_source(&self, ssrc: u32) -> Option<SocketAddr> {
        self.senders.get(&ssrc)?.rtcp_from.map(|(a, _)| a)
    }

    /// Whether `ssrc`'s sender reports carry capture instants on a comparable clock.
    pub fn is_patchcord(&self, ssrc: u32) -> bool {
        self.senders.get(&ssrc).is_some_and(|s| s.patchcord)
    }

    /// Why there is no capture → playback latency for `ssrc`.
    pub fn latency_note(&self, ssrc: u32) -> &'static str {
        match self.senders.get(&ssrc) {
            Some(s) if s.patchcord => "no sender report yet",
            Some(s) if s.last_sr.is_some() => {
                "the sender is not patchcord: its reports' timestamps say when it sent, not when it captured, on its own clock"
            }
            _ => "no RTCP sender report",
        }
    }

    /// The report timer fired at `now_ns`: this round's reports, one compound packet per
    /// sender address, for the streams in `receptions`; and when the next round is due (ns
    /// from `now_ns`). When the membership grew since the timer was set, forward
    /// reconsideration (RFC 3550 §6.3.3) may send nothing yet and name a later instant.
    /// `random` holds two independent draws, uniform in [0, 1).
    pub fn reports(
        &mut self,
        now_ns: i64,
        receptions: &[Reception],
        session_bps: f64,
        random: [f64; 2],
    ) -> (Vec<Outgoing>, i64) {
        let playing: HashSet<u32> = receptions.iter().map(|r| r.ssrc).collect();
        self.senders
            .retain(|ssrc, s| now_ns - s.heard_ns < FORGET_NS || playing.contains(ssrc));
        for r in receptions {
            if let Some(s) = self.senders.get_mut(&r.ssrc) {
                s.heard_ns = s.heard_ns.max(r.at_ns);
            }
        }
        let members = Participants {
            members: self.senders.len().max(receptions.len()) + 1,
            senders: receptions.len(),
            we_sent: false,
            session_bps,
        };
        self.pmembers = members.members;
        self.rescheduled = None;
        if let Expiry::WaitUntil(at) = self.timer.on_expiry(now_ns, &members, random[0]) {
            self.due_ns = Some(at);
            return (Vec::new(), at - now_ns);
        }
        // group the streams by where their sender's RTCP comes from
        let mut by_address: HashMap<(SocketAddr, Via), Vec<ReportBlock>> = HashMap::new();
        let n = receptions.len().max(1);
        for k in 0..receptions.len() {
            let r = &receptions[(self.cursor + k) % n];
            let Some(s) = self.senders.get_mut(&r.ssrc) else {
                continue;
            };
            let Some(dest) = s.rtcp_from else { continue };
            let blocks = by_address.entry(dest).or_default();
            if blocks.len() == MAX_REPORT_BLOCKS {
                continue; // its turn comes in a later round
            }
            let received = (r.expected as i64 - r.lost).max(0) as u64;
            let expected_interval = r.expected.saturating_sub(s.prior.0);
            let received_interval = received.saturating_sub(s.prior.1);
            s.prior = (r.expected, received);
            let lost_interval = expected_interval as i64 - received_interval as i64;
            let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
                0
            } else {
                ((lost_interval << 8) / expected_interval as i64).min(255) as u8
            };
            let (lsr, dlsr) = s
                .last_sr
                .map_or((0, 0), |(lsr, at)| (lsr, ns_to_ntp_short(now_ns - at)));
            let block = ReportBlock {
                ssrc: r.ssrc,
                fraction_lost,
                cumulative_lost: r.lost.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                highest_seq: r.extended_max_seq as u32,
                jitter: r.jitter_rtp.round().clamp(0.0, u32::MAX as f64) as u32,
                lsr,
                dlsr,
            };
            blocks.push(block);
        }
        self.cursor = self.cursor.wrapping_add(MAX_REPORT_BLOCKS);
        let mut out = Vec::with_capacity(by_address.len());
        let mut bytes = 0;
        for ((to, via), blocks) in by_address {
            let mut buf = vec![0u8; 8 + 24 * blocks.len() + 8 + 2 * 257];
            let mut w = CompoundWriter::new(&mut buf);
            if w.receiver_report(self.ssrc, &blocks)
                .and_then(|_| w.sdes(self.ssrc, &self.cname, Some(TOOL)))
                .is_none()
            {
                continue;
            }
            let len = w.len();
            buf.truncate(len);
            bytes += len;
            out.push(Outgoing { via, to, packet: buf });
        }
        if bytes > 0 {
            self.timer.sent(bytes, now_ns);
        }
        let next = self.timer.interval_ns(&members, random[1]);
        self.due_ns = Some(now_ns + next);
        (out, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchcord_common::rtcp::{parse_compound, unix_ns_to_ntp, RtcpPacket};

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn reception(ssrc: u32, expected: u64, lost: i64) -> Reception {
        Reception {
            ssrc,
            expected,
            lost,
            extended_max_seq: 70_000 + expected,
            jitter_rtp: 48.4,
            at_ns: 0,
        }
    }

    /// Each sender gets its own report, at the address (and socket) its RTCP came from,
    /// echoing its last SR; loss is per interval; a sender without RTCP gets none.
    #[test]
    fn reports_go_back_to_each_senders_rtcp_address() {
        let mut f = Feedback::new(0xfeed, "me@here".into());
        let t0 = 1_000_000_000_000i64;
        let sr_ntp = unix_ns_to_ntp(t0 - 5_000_000);
        f.sender_report(1, sr_ntp, t0, addr("10.0.0.1:7000"), Via::Rtcp);
        f.sdes(
            1,
            is_patchcord_tool(Some(b"patchcord-send 0.1.0")),
            t0,
            addr("10.0.0.1:7000"),
            Via::Rtcp,
        );
        f.sdes(
            2,
            is_patchcord_tool(Some(b"GStreamer")),
            t0,
            addr("10.0.0.2:9000"),
            Via::Rtp,
        );
        assert!(f.is_patchcord(1) && !f.is_patchcord(2));
        let now = t0 + 250_000_000;
        let (out, next) = f.reports(
            now,
            &[reception(1, 100, 5), reception(2, 50, 0), reception(3, 10, 0)],
            128_000.0,
            [0.5; 2],
        );
        assert!(next > 0);
        assert_eq!(out.len(), 2, "stream 3's sender sent no RTCP");
        let to1 = out.iter().find(|o| o.to == addr("10.0.0.1:7000")).unwrap();
        assert_eq!(to1.via, Via::Rtcp);
        let packets: Vec<_> = parse_compound(&to1.packet).map(Result::unwrap).collect();
        let RtcpPacket::ReceiverReport { reporter, reports } = packets[0] else {
            panic!("{packets:?}")
        };
        assert_eq!(reporter, 0xfeed);
        let b = reports.as_slice()[0];
        assert_eq!(
            (b.ssrc, b.cumulative_lost, b.highest_seq, b.jitter),
            (1, 5, 70_100, 48)
        );
        assert_eq!(b.fraction_lost, (5 * 256 / 100) as u8);
        assert_eq!(b.lsr, ntp_short(sr_ntp));
        assert_eq!(b.dlsr, ns_to_ntp_short(250_000_000));
        assert!(matches!(
            packets[1],
            RtcpPacket::Sdes {
                ssrc: 0xfeed,
                cname: Some(b"me@here"),
                ..
            }
        ));
        let to2 = out.iter().find(|o| o.to == addr("10.0.0.2:9000")).unwrap();
        assert_eq!(to2.via, Via::Rtp);
        // the next round: 10 more expected, none lost -> fraction 0, total still 5
        let (out, _) = f.reports(now + next, &[reception(1, 110, 5)], 128_000.0, [0.5; 2]);
        let Some(Ok(RtcpPacket::ReceiverReport { reports, .. })) = parse_compound(&out[0].packet).next()
        else {
            panic!()
        };
        assert_eq!(
            (
                reports.as_slice()[0].fraction_lost,
                reports.as_slice()[0].cumulative_lost
            ),
            (0, 5)
        );
        assert_eq!(f.rtcp_source(1), Some(addr("10.0.0.1:7000")));
        f.forget(1);
        assert!(!f.is_patchcord(1));
        assert_eq!(f.rtcp_source(1), None);
    }

    /// 100 streams from one address: at most 31 blocks in a round, all of them in turn.
    #[test]
    fn many_streams_at_one_address_take_turns() {
        let mut f = Feedback::new(1, "c".into());
        let from = addr("10.0.0.9:5000");
        let receptions: Vec<Reception> = (0..100).map(|i| reception(i, 10, 0)).collect();
        for r in &receptions {
            f.sdes(r.ssrc, false, 0, from, Via::Rtcp);
        }
        let mut seen = std::collections::HashSet::new();
        let mut last_next = 0;
        let mut at = 0;
        for _ in 0..4 {
            let (out, next) = f.reports(at, &receptions, 100.0 * 128_000.0, [0.5; 2]);
            at += next;
            assert_eq!(out.len(), 1);
            let Some(Ok(RtcpPacket::ReceiverReport { reports, .. })) = parse_compound(&out[0].packet).next()
            else {
                panic!()
            };
            assert_eq!(reports.count, 31);
            seen.extend(reports.as_slice().iter().map(|b| b.ssrc));
            last_next = next;
        }
        assert_eq!(seen.len(), 100);
        assert!(last_next > 0);
    }

    /// RFC 3550 §6.3.3: the timer was set for one sender; when it fires, a hundred more
    /// are heard (before the measured rate has grown with them). The round waits for the
    /// interval of 101 senders, then goes.
    #[test]
    fn a_crowd_arriving_postpones_the_round() {
        let mut f = Feedback::new(1, "c".into());
        let from = addr("10.0.0.9:5000");
        let crowd: Vec<Reception> = (0..101).map(|i| reception(i, 10, 0)).collect();
        f.sdes(crowd[0].ssrc, false, 0, from, Via::Rtcp);
        let (out, next) = f.reports(0, &crowd[..1], 128_000.0, [0.5; 2]);
        assert_eq!(out.len(), 1);
        for r in &crowd[1..] {
            f.sdes(r.ssrc, false, 0, from, Via::Rtcp);
        }
        // the measured RTP rate has not caught up with the crowd yet
        let (out, wait) = f.reports(next, &crowd, 128_000.0, [0.5; 2]);
        assert!(out.is_empty(), "sent at the old interval");
        assert!(wait > 0);
        let (out, _) = f.reports(next + wait, &crowd, 128_000.0, [0.5; 2]);
        assert_eq!(out.len(), 1);
    }

    /// 100 senders, then 99 say BYE: the round due for 101 members comes sooner, in
    /// proportion (RFC 3550 §6.3.4); a sender leaving that was never counted moves nothing.
    #[test]
    fn senders_leaving_bring_the_round_forward() {
        let mut f = Feedback::new(1, "c".into());
        let from = addr("10.0.0.9:5000");
        let crowd: Vec<Reception> = (0..100).map(|i| reception(i, 10, 0)).collect();
        for r in &crowd {
            f.sdes(r.ssrc, false, 0, from, Via::Rtcp);
        }
        let (out, next) = f.reports(0, &crowd, 128_000.0, [0.5; 2]);
        assert_eq!(out.len(), 1);
        assert_eq!(f.take_rescheduled(), None);
        let now = next / 10;
        for r in &crowd[1..] {
            f.left(r.ssrc, now);
        }
        let moved = f.take_rescheduled().expect("the round moved");
        // 101 members fell to 2, one per BYE: the product of the ratios
        let expected = now + ((next - now) as f64 * 2.0 / 101.0) as i64;
        assert!((moved - expected).abs() <= 100, "{moved} vs {expected}");
        assert_eq!(f.take_rescheduled(), None, "taken once");
        f.left(0xdead, now);
        assert_eq!(f.take_rescheduled(), None, "a stranger leaving moves nothing");
    }
}
