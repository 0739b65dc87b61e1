//! What the proxy did, per RTP stream and by RTP sequence number.

use std::collections::BTreeMap;

use patchcord_netsim::{Decision, Fate};
use serde::Serialize;

/// Longest list of sequence numbers kept (per list); beyond it `lists_truncated` is set.
pub const MAX_LIST_LEN: usize = 1_000_000;

/// What a datagram looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// RTP version 2 with a full 12-byte header.
    Rtp { ssrc: u32, seq: u16 },
    /// RTCP (version 2, packet type 192..=223, RFC 5761 §4), e.g. with rtcp-mux.
    Rtcp,
    /// Anything else.
    Other,
}

/// Classify a datagram by its first bytes. Never panics.
pub fn classify(datagram: &[u8]) -> Kind {
    let (Some(&b0), Some(&b1)) = (datagram.first(), datagram.get(1)) else {
        return Kind::Other;
    };
    if b0 >> 6 != 2 {
        return Kind::Other;
    }
    if (192..=223).contains(&b1) {
        return Kind::Rtcp;
    }
    match (datagram.get(2..4), datagram.get(8..12)) {
        (Some(seq), Some(ssrc)) if datagram.len() >= 12 => Kind::Rtp {
            seq: u16::from_be_bytes([seq[0], seq[1]]),
            ssrc: u32::from_be_bytes([ssrc[0], ssrc[1], ssrc[2], ssrc[3]]),
        },
        _ => Kind::Other,
    }
}

/// Counts and sequence-number lists of one RTP stream. "Reordered" here means: an original
/// sent on after the original of a packet *of the same stream* that reached the proxy later
/// (what that stream's receiver sees as out of order).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct StreamReport {
    pub ssrc: u32,
    pub received: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub delivered: u64,
    pub reordered: u64,
    pub dropped_seqs: Vec<u16>,
    pub duplicated_seqs: Vec<u16>,
    pub reordered_seqs: Vec<u16>,
    /// Arrival index of the next packet of this stream.
    #[serde(skip)]
    next_index: u64,
    /// Highest arrival index whose original has been sent on.
    #[serde(skip)]
    max_delivered: Option<u64>,
}

/// The per-stream ledger, plus the same lists over all RTP streams in arrival order.
#[derive(Debug, Default)]
pub struct Ledger {
    pub streams: BTreeMap<u32, StreamReport>,
    pub dropped_seqs: Vec<u16>,
    pub duplicated_seqs: Vec<u16>,
    pub reordered_seqs: Vec<u16>,
    pub rtp: u64,
    pub non_rtp: u64,
    pub lists_truncated: bool,
}

fn push(list: &mut Vec<u16>, seq: u16, truncated: &mut bool) {
    if list.len() < MAX_LIST_LEN {
        list.push(seq);
    } else {
        *truncated = true;
    }
}

impl Ledger {
    /// A datagram was submitted to the impairment and got `decision`. Returns its arrival
    /// index within its RTP stream (pass it to [`Ledger::delivered`]).
    pub fn submitted(&mut self, kind: Kind, decision: &Decision) -> u64 {
        let Kind::Rtp { ssrc, seq } = kind else {
            self.non_rtp += 1;
            return 0;
        };
        self.rtp += 1;
        let t = &mut self.lists_truncated;
        let stream = self.streams.entry(ssrc).or_insert_with(|| StreamReport {
            ssrc,
            ..Default::default()
        });
        stream.received += 1;
        let index = stream.next_index;
        stream.next_index += 1;
        match decision.fate {
            Fate::Dropped => {
                stream.dropped += 1;
                push(&mut stream.dropped_seqs, seq, t);
                push(&mut self.dropped_seqs, seq, t);
            }
            Fate::Delivered { copies } => {
                if copies > 1 {
                    stream.duplicated += 1;
                    push(&mut stream.duplicated_seqs, seq, t);
                    push(&mut self.duplicated_seqs, seq, t);
                }
            }
        }
        index
    }

    /// Copy `copy` (0: original, 1: duplicate) of the datagram with arrival index `index`
    /// in its stream was sent on.
    pub fn delivered(&mut self, kind: Kind, index: u64, copy: u8) {
        let Kind::Rtp { ssrc, seq } = kind else { return };
        let t = &mut self.lists_truncated;
        let stream = self.streams.entry(ssrc).or_insert_with(|| StreamReport {
            ssrc,
            ..Default::default()
        });
        stream.delivered += 1;
        if copy != 0 {
            return;
        }
        let reordered = stream.max_delivered.is_some_and(|m| m > index);
        if !reordered {
            stream.max_delivered = Some(index);
        }
        if reordered {
            stream.reordered += 1;
            push(&mut stream.reordered_seqs, seq, t);
            push(&mut self.reordered_seqs, seq, t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
        let mut d = vec![0x80, 96];
        d.extend_from_slice(&seq.to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 0]);
        d.extend_from_slice(&ssrc.to_be_bytes());
        d.push(0xAA);
        d
    }

    #[test]
    fn classifies() {
        assert_eq!(classify(&rtp(513, 7)), Kind::Rtp { ssrc: 7, seq: 513 });
        assert_eq!(classify(&rtp(1, 2)[..12]), Kind::Rtp { ssrc: 2, seq: 1 });
        assert_eq!(classify(&rtp(1, 2)[..11]), Kind::Other);
        assert_eq!(classify(&[0x80, 200, 0, 6]), Kind::Rtcp);
        assert_eq!(classify(&[0x81, 201]), Kind::Rtcp);
        assert_eq!(classify(&[0x40, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), Kind::Other);
        assert_eq!(classify(&[]), Kind::Other);
        assert_eq!(classify(&[0x80]), Kind::Other);
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = classify(&junk);
        }
    }

    #[test]
    fn ledger_counts() {
        let mut l = Ledger::default();
        let d = |fate| Decision {
            fate,
            seq: 0,
            deliver_at_ns: None,
            duplicate_at_ns: None,
            spiked: false,
            reorder_delayed: false,
        };
        let a = Kind::Rtp { ssrc: 1, seq: 10 };
        let b = Kind::Rtp { ssrc: 1, seq: 11 };
        let c = Kind::Rtp { ssrc: 1, seq: 12 };
        let other_stream = Kind::Rtp { ssrc: 2, seq: 500 };
        assert_eq!(l.submitted(a, &d(Fate::Dropped)), 0);
        assert_eq!(l.submitted(b, &d(Fate::Delivered { copies: 2 })), 1);
        assert_eq!(l.submitted(Kind::Other, &d(Fate::Delivered { copies: 1 })), 0);
        assert_eq!(l.submitted(c, &d(Fate::Delivered { copies: 1 })), 2);
        assert_eq!(l.submitted(other_stream, &d(Fate::Delivered { copies: 1 })), 0);
        l.delivered(other_stream, 0, 0);
        l.delivered(c, 2, 0);
        l.delivered(b, 1, 0); // overtaken by c
        l.delivered(b, 1, 1); // a duplicate is never "reordered"
        l.delivered(Kind::Other, 0, 0);
        assert_eq!(l.rtp, 4);
        assert_eq!(l.non_rtp, 1);
        assert_eq!(l.dropped_seqs, vec![10]);
        assert_eq!(l.duplicated_seqs, vec![11]);
        assert_eq!(l.reordered_seqs, vec![11]);
        let s = &l.streams[&1];
        assert_eq!(
            (s.received, s.dropped, s.duplicated, s.delivered, s.reordered),
            (3, 1, 1, 3, 1)
        );
        assert_eq!(l.streams[&2].reordered, 0);
    }
}
