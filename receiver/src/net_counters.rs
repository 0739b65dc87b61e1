//! What the network side (the tokio thread in `main.rs`) counts of the datagrams it
//! receives before any reaches a stream: RTCP, validation drops by reason, source
//! validation, `--allow`, SRTP's refusals, the queues to the audio thread, and the socket's kernel drops.
//! The monitor reads them into the stats record once a second.

use patchcord_common::rtp::DropReason;
use patchcord_common::source::SourceCounters;
use patchcord_common::srtp::SrtpCounters;

/// Counters of the network side.
#[derive(Default)]
pub struct NetCounters {
    pub datagrams: u64,
    pub rtcp: u64,
    pub rtcp_malformed: u64,
    pub sender_reports: u64,
    pub byes: u64,
    pub dropped: [u64; DropReason::ALL.len()],
    /// Source validation: probation, binding, jumps (see `patchcord_common::source`).
    pub source: SourceCounters,
    /// Datagrams from addresses outside `--allow`.
    pub not_allowed: u64,
    /// `--srtp-key`: the suite, and the datagrams SRTP refused.
    pub srtp_suite: Option<&'static str>,
    pub srtp: SrtpCounters,
    /// Sender reports, SDES and BYEs not from the stream's own RTCP source (also those kept
    /// aside for an SSRC before it passed probation from another source), and BYEs for an
    /// SSRC that is neither playing nor on probation.
    pub rtcp_wrong_source: u64,
    /// Packets of new SSRCs waiting in probation now.
    pub in_probation: usize,
    pub queue_full: u64,
    pub control_queue_full: u64,
    /// Datagrams the kernel dropped for our socket (receive buffer full), if known.
    pub socket_drops: Option<u64>,
    pub socket_buffer_bytes: usize,
}
