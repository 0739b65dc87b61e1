//! Per-source reception statistics as RFC 3550 defines them (A.1 sequence validation,
//! A.3 expected / lost / fraction lost, A.8 interarrival jitter), plus the playout
//! counters patchcord reports for every stream.
//!
//! All inputs are arguments: sequence numbers, RTP timestamps, and arrival times already
//! converted to RTP clock units by the caller.

use serde::Serialize;

const RTP_SEQ_MOD: u32 = 1 << 16;
/// RFC 3550 A.1: largest forward jump still treated as the same sequence.
pub const MAX_DROPOUT: u32 = 3000;
/// RFC 3550 A.1: largest backward step treated as reordering, not a restart.
pub const MAX_MISORDER: u32 = 100;

/// What a sequence number means for the source's sequence space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// In sequence (possibly reordered or duplicated).
    Valid,
    /// A jump beyond MAX_DROPOUT / MAX_MISORDER; the packet is not valid. If the next
    /// packet continues from it, the source is considered restarted.
    Jump,
    /// Second sequential packet after a jump: the sender restarted its sequence. The
    /// register was re-initialised with this packet.
    Restarted,
}

/// RFC 3550 A.1/A.3/A.8 state for one SSRC.
#[derive(Debug, Clone, Copy)]
pub struct ReceptionRegister {
    initialized: bool,
    max_seq: u16,
    cycles: u32,
    base_seq: u32,
    bad_seq: u32,
    received: u64,
    expected_prior: u64,
    received_prior: u64,
    /// Interarrival jitter in RTP timestamp units, as a float (A.8 keeps it scaled by 16).
    jitter: f64,
    last_transit: Option<i64>,
}

impl Default for ReceptionRegister {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceptionRegister {
    pub fn new() -> Self {
        ReceptionRegister {
            initialized: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: RTP_SEQ_MOD + 1,
            received: 0,
            expected_prior: 0,
            received_prior: 0,
            jitter: 0.0,
            last_transit: None,
        }
    }

    fn init(&mut self, seq: u16) {
        self.initialized = true;
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.expected_prior = 0;
        self.received_prior = 0;
        self.last_transit = None;
    }

    /// Account one received packet (A.1). `arrival_rtp` is the arrival time in RTP clock
    /// units (any origin); `rtp_ts` the packet's timestamp; both feed the A.8 jitter.
    pub fn update(&mut self, seq: u16, rtp_ts: u32, arrival_rtp: u32) -> SeqVerdict {
        let mut verdict = SeqVerdict::Valid;
        if !self.initialized {
            self.init(seq);
        } else {
            let udelta = seq.wrapping_sub(self.max_seq) as u32;
            if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += RTP_SEQ_MOD;
                }
                self.max_seq = seq;
            } else if udelta <= RTP_SEQ_MOD - MAX_MISORDER {
                if seq as u32 == self.bad_seq {
                    self.init(seq);
                    verdict = SeqVerdict::Restarted;
                } else {
                    self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                    return SeqVerdict::Jump;
                }
            }
            // else: duplicate or reordered, counted as received
        }
        self.received += 1;
        // A.8: D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}) = transit_i - transit_{i-1}
        let transit = arrival_rtp.wrapping_sub(rtp_ts) as i32 as i64;
        if let Some(last) = self.last_transit {
            let d = (transit - last).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        verdict
    }

    /// Extended highest sequence number received (cycles + max_seq).
    pub fn extended_max(&self) -> u64 {
        self.cycles as u64 + self.max_seq as u64
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// A.3: packets expected = extended max − base + 1.
    pub fn expected(&self) -> u64 {
        if !self.initialized {
            return 0;
        }
        self.extended_max() + 1 - self.base_seq as u64
    }

    /// A.3: cumulative number of packets lost (negative when duplicates outnumber losses).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// A.3: fraction lost since the previous call, as the 8-bit fixed point of RTCP RR.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let expected = self.expected();
        let expected_interval = expected - self.expected_prior.min(expected);
        self.expected_prior = expected;
        let received_interval = self.received - self.received_prior.min(self.received);
        self.received_prior = self.received;
        let lost_interval = expected_interval as i64 - received_interval as i64;
        if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / expected_interval as i64).min(255) as u8
        }
    }

    /// A.8 interarrival jitter in RTP timestamp units.
    pub fn jitter_rtp(&self) -> f64 {
        self.jitter
    }
}

/// Playout counters of one stream. Plain integers, copied out of the audio thread once
/// per period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StreamCounters {
    /// Valid RTP packets handed to the stream.
    pub packets_received: u64,
    pub payload_bytes: u64,
    /// Same sequence number already buffered or played.
    pub duplicates: u64,
    /// Arrived after their playout time; dropped.
    pub late: u64,
    /// Too far ahead of the playout point to be buffered; dropped.
    pub overflow: u64,
    /// Packets decoded and played (fully or partly).
    pub played: u64,
    /// Packets missing at their playout time (lost or late), recovered or concealed.
    pub missing: u64,
    /// Missing packets recovered from in-band FEC of the following packet.
    pub recovered_fec: u64,
    /// Samples (per channel) produced by packet loss concealment.
    pub concealed_samples: u64,
    /// Runs of consecutive concealment.
    pub concealment_events: u64,
    /// Times the buffer ran dry while the stream was playing.
    pub underruns: u64,
    /// Packets whose Opus payload failed to decode (concealed instead).
    pub decode_errors: u64,
    /// Sequence jumps beyond RFC 3550 MAX_DROPOUT (packet dropped).
    pub seq_jumps: u64,
    /// Buffered packets thrown away on purpose: sender restart, the start of a timeline
    /// (audio older than the chosen delay).
    pub discarded: u64,
    /// New playout timelines started after a sender restart or after the stream ended (an
    /// outage longer than the idle time).
    pub resyncs: u64,
    /// Packets that arrived after a packet with a higher sequence number.
    pub reordered: u64,
    /// Missing packets recovered from RFC 2198 redundancy carried by later packets.
    pub recovered_red: u64,
    /// Concealment operations (one per missing frame or gap chunk).
    pub concealed_frames: u64,
    /// Runs of concealment of 150 ms or more.
    pub interruptions: u64,
    /// Pitch-period splices made by the adaptive delay (time-scale modification).
    pub tsm_operations: u64,
    /// Samples removed by them (delay lowered without a pitch change).
    pub tsm_removed_samples: u64,
    /// Samples repeated by them (delay raised without a pitch change).
    pub tsm_inserted_samples: u64,
    /// Times the stream stopped (BYE, silence, sender restart) and its playout ended: not
    /// counted as underrun, concealment or interruption.
    pub ended: u64,
}
impl std::ops::AddAssign for StreamCounters {
    fn add_assign(&mut self, o: StreamCounters) {
        self.packets_received += o.packets_received;
        self.payload_bytes += o.payload_bytes;
        self.duplicates += o.duplicates;
        self.late += o.late;
        self.overflow += o.overflow;
        self.played += o.played;
        self.missing += o.missing;
        self.recovered_fec += o.recovered_fec;
        self.concealed_samples += o.concealed_samples;
        self.concealment_events += o.concealment_events;
        self.underruns += o.underruns;
        self.decode_errors += o.decode_errors;
        self.seq_jumps += o.seq_jumps;
        self.discarded += o.discarded;
        self.resyncs += o.resyncs;
        self.reordered += o.reordered;
        self.recovered_red += o.recovered_red;
        self.concealed_frames += o.concealed_frames;
        self.interruptions += o.interruptions;
        self.tsm_operations += o.tsm_operations;
        self.tsm_removed_samples += o.tsm_removed_samples;
        self.tsm_inserted_samples += o.tsm_inserted_samples;
        self.ended += o.ended;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_loss_across_wraparound() {
        let mut r = ReceptionRegister::new();
        let mut seq = 65530u16;
        let mut received = 0;
        for i in 0..20u32 {
            if i % 5 != 3 {
                assert_eq!(r.update(seq, i * 480, i * 480), SeqVerdict::Valid);
                received += 1;
            }
            seq = seq.wrapping_add(1);
        }
        assert_eq!(r.received(), received);
        assert_eq!(r.expected(), 20); // first i=0, last i=19 received
        assert_eq!(r.cumulative_lost(), 20 - received as i64);
        assert_eq!(r.extended_max(), (1 << 16) + 13); // one wrap, max_seq 13
    }

    #[test]
    fn fraction_lost_per_interval() {
        let mut r = ReceptionRegister::new();
        for s in 0..100u16 {
            if s % 4 != 1 {
                r.update(s, 0, 0);
            }
        }
        // 100 expected (0..=99), 75 received -> 25% -> 64/256
        assert_eq!(r.take_fraction_lost(), 64);
        for s in 100..200u16 {
            r.update(s, 0, 0);
        }
        assert_eq!(r.take_fraction_lost(), 0);
    }

    #[test]
    fn duplicates_make_loss_negative() {
        let mut r = ReceptionRegister::new();
        r.update(1, 0, 0);
        r.update(2, 0, 0);
        r.update(2, 0, 0);
        assert_eq!(r.cumulative_lost(), -1);
        assert_eq!(r.take_fraction_lost(), 0);
    }

    #[test]
    fn restart_after_two_sequential_jumped_packets() {
        let mut r = ReceptionRegister::new();
        for s in 100..110u16 {
            r.update(s, 0, 0);
        }
        assert_eq!(r.update(40_000, 0, 0), SeqVerdict::Jump);
        assert_eq!(r.update(40_001, 0, 0), SeqVerdict::Restarted);
        assert_eq!(r.expected(), 1);
        assert_eq!(r.update(40_002, 0, 0), SeqVerdict::Valid);
        assert_eq!(r.cumulative_lost(), 0);
        // a lone stray packet far away is a jump, and does not restart
        assert_eq!(r.update(9, 0, 0), SeqVerdict::Jump);
        assert_eq!(r.update(40_003, 0, 0), SeqVerdict::Valid);
    }

    #[test]
    fn jitter_follows_a8() {
        let mut r = ReceptionRegister::new();
        // packets every 480 ticks, arrival alternately +0 / +96 ticks late
        for i in 0..2000u32 {
            let arrival = i * 480 + if i % 2 == 1 { 96 } else { 0 };
            r.update(i as u16, i * 480, arrival);
        }
        // |D| is always 96, so J converges to 96
        assert!((r.jitter_rtp() - 96.0).abs() < 0.01, "{}", r.jitter_rtp());
        let mut clean = ReceptionRegister::new();
        for i in 0..100u32 {
            clean.update(i as u16, i * 480, 7 + i * 480);
        }
        assert_eq!(clean.jitter_rtp(), 0.0);
    }
}
