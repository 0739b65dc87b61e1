//! What the receivers say back: a thread reads the RTCP that arrives on the sender's
//! socket (receivers send their reports to where our RTCP comes from) from the networks
//! `--allow` hears, and keeps, for each
//! receiver (by its SSRC, at most [`MAX_RECEIVERS`]), the last report block about our
//! stream: fraction lost, cumulative lost, interarrival jitter, and the round trip.
//!
//! The round trip (RFC 3550 §6.4.1) is A − LSR − DLSR: the arrival of the report, minus
//! when the sender report it echoes (LSR) left, minus how long the receiver held it (DLSR).
//! Our sender reports carry the *capture* instant of a sample, not the send instant, so
//! LSR is looked up in the encoder thread's list of reports as they left
//! ([`SentReport`]) instead of being read as a time: the round trip is then exact to the
//! 15 µs unit of DLSR.
//!
//! With `--srtp-key` the receivers' RTCP arrives as SRTCP: it is opened here, on this
//! thread, and what does not authenticate (or is replayed) is counted and ignored.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use patchcord_common::rtcp::{is_rtcp, ntp_short_to_ns, parse_compound, ReportBlock, RtcpPacket};
use patchcord_common::srtp::{Opened, SrtpCounters, Unprotector};
use patchcord_devices::allow::Allow;
use patchcord_devices::clock::HostClock;
use serde::Serialize;

use crate::encoder::SentReport;

/// Receivers tracked at once; a further one replaces the one heard from longest ago.
pub const MAX_RECEIVERS: usize = 64;
/// Sent reports remembered for the round trip: the receiver echoes the last one it got.
const SENT_REMEMBERED: usize = 16;

/// The last report of one receiver about our stream.
#[derive(Debug, Clone, Serialize)]
pub struct ReceiverView {
    pub ssrc: u32,
    pub address: String,
    pub cname: Option<String>,
    /// Percent lost since its previous report.
    pub fraction_lost_pct: f64,
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    pub jitter_ms: f64,
    pub rtt_ms: Option<f64>,
    pub reports: u64,
    pub last_report_unix_ns: i64,
}

/// Shared between the reader thread and the control thread.
#[derive(Default)]
pub struct Reports {
    pub receivers: Mutex<Vec<ReceiverView>>,
    pub receiver_reports: AtomicU64,
    pub rtcp_malformed: AtomicU64,
    /// Datagrams from outside `--allow`.
    pub not_allowed: AtomicU64,
    /// Datagrams on the socket that are not RTCP.
    pub not_rtcp: AtomicU64,
    /// SRTCP refused (forged, wrongly keyed, plain, replayed, malformed).
    pub srtp: Mutex<SrtpCounters>,
}

impl Reports {
    pub fn snapshot(&self) -> Vec<ReceiverView> {
        self.receivers.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

pub struct ReportReader {
    pub socket: UdpSocket,
    pub ssrc: u32,
    pub clock: HostClock,
    pub allow: Allow,
    pub sent: rtrb::Consumer<SentReport>,
    pub reports: Arc<Reports>,
    pub stop: Arc<AtomicBool>,
    /// Opens SRTCP; `None` reads plain RTCP.
    pub srtp: Option<Unprotector>,
}

impl ReportReader {
    pub fn run(mut self) {
        // the clone shares the socket: the timeout bounds how long a stop waits
        let _ = self.socket.set_read_timeout(Some(Duration::from_millis(100)));
        let mut buf = [0u8; 2048];
        let mut plain = [0u8; 2048];
        let mut sent = [SentReport::default(); SENT_REMEMBERED];
        let mut next = 0usize;
        while !self.stop.load(Ordering::Acquire) {
            let Ok((len, from)) = self.socket.recv_from(&mut buf) else {
                continue;
            };
            let arrival = self.clock.now_unix_ns();
            while let Ok(s) = self.sent.pop() {
                sent[next % SENT_REMEMBERED] = s;
                next += 1;
            }
            if !self.allow.hears(from.ip()) {
                self.reports.not_allowed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let d = match self.srtp.as_mut().map(|s| s.unprotect(&buf[..len], &mut plain)) {
                None => &buf[..len],
                Some(Ok(Opened::Rtcp(n))) => &plain[..n],
                // SRTP (not SRTCP) on the report socket: nothing for us
                Some(Ok(Opened::Rtp(_))) => continue,
                Some(Err(r)) => {
                    if let Ok(mut c) = self.reports.srtp.lock() {
                        c.count(r);
                    }
                    continue;
                }
            };
            if is_rtcp(d) {
                self.read(d, from, arrival, &sent);
            } else {
                self.reports.not_rtcp.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn read(&self, d: &[u8], from: SocketAddr, arrival: i64, sent: &[SentReport]) {
        let mut cname = None;
        let mut about_us: Option<(u32, ReportBlock)> = None;
        for p in parse_compound(d) {
            match p {
                Ok(RtcpPacket::ReceiverReport { reporter, reports }) => {
                    about_us = reports
                        .as_slice()
                        .iter()
                        .find(|b| b.ssrc == self.ssrc)
                        .map(|b| (reporter, *b))
                        .or(about_us);
                }
                Ok(RtcpPacket::SenderReport(sr, reports)) => {
                    about_us = reports
                        .as_slice()
                        .iter()
                        .find(|b| b.ssrc == self.ssrc)
                        .map(|b| (sr.ssrc, *b))
                        .or(about_us);
                }
                Ok(RtcpPacket::Sdes { cname: Some(c), .. }) => {
                    cname = Some(String::from_utf8_lossy(c).into_owned());
                }
                Ok(_) => {}
                Err(_) => {
                    self.reports.rtcp_malformed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let Some((reporter, b)) = about_us else { return };
        self.reports.receiver_reports.fetch_add(1, Ordering::Relaxed);
        let rtt_ns = sent
            .iter()
            .find(|s| b.lsr != 0 && s.lsr == b.lsr && s.sent_unix_ns != 0)
            .map(|s| arrival - s.sent_unix_ns - ntp_short_to_ns(b.dlsr));
        let Ok(mut views) = self.reports.receivers.lock() else {
            return;
        };
        let i = match views.iter().position(|v| v.ssrc == reporter) {
            Some(i) => i,
            None if views.len() < MAX_RECEIVERS => {
                views.push(ReceiverView {
                    ssrc: reporter,
                    address: String::new(),
                    cname: None,
                    fraction_lost_pct: 0.0,
                    cumulative_lost: 0,
                    highest_seq: 0,
                    jitter_ms: 0.0,
                    rtt_ms: None,
                    reports: 0,
                    last_report_unix_ns: 0,
                });
                views.len() - 1
            }
            None => {
                let oldest = views
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, v)| v.last_report_unix_ns)
                    .map_or(0, |(i, _)| i);
                views[oldest].reports = 0;
                views[oldest].ssrc = reporter;
                views[oldest].rtt_ms = None;
                oldest
            }
        };
        let v = &mut views[i];
        v.address = from.to_string();
        if cname.is_some() {
            v.cname = cname;
        }
        v.fraction_lost_pct = f64::from(b.fraction_lost) * 100.0 / 256.0;
        v.cumulative_lost = b.cumulative_lost;
        v.highest_seq = b.highest_seq;
        v.jitter_ms = f64::from(b.jitter) / 48.0;
        if let Some(rtt) = rtt_ns {
            v.rtt_ms = Some(rtt as f64 / 1e6);
        }
        v.reports += 1;
        v.last_report_unix_ns = arrival;
    }
}
