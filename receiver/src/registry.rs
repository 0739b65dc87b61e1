//! The network side's table of streams: which SSRC plays in which slot of the output
//! callback, the source it is bound to (and the validation state of its packets,
//! [`StreamSource`]), its gain, and what happens when there are more senders than
//! `--max-streams`. Runs on the control thread; it is where every stream is allocated
//! (and, when the callback hands it back, freed).
//!
//! Only SSRCs that completed probation (`patchcord_common::source::Probation`) ask for a
//! slot, so a flood of one-off packets never takes one. A validated SSRC that finds every
//! slot taken is refused: each refusal is counted (`streams_refused`, exact however many),
//! and the last [`REFUSED_REMEMBERED`] refused SSRCs are remembered so that their further
//! packets are counted (`refused_packets`) without another probation while no slot is free.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use patchcord_common::source::StreamSource;

/// Who a gain rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GainKey {
    Ssrc(u32),
    Address(SocketAddr),
    Host(IpAddr),
}

/// `--source-gain KEY=DB`: KEY is an SSRC (`0x1234abcd` or decimal), `HOST:PORT`, or `HOST`.
pub fn parse_source_gain(s: &str) -> Result<(GainKey, f32), String> {
    let (key, db) = s
        .rsplit_once('=')
        .ok_or_else(|| format!("'{s}': expected KEY=DB, e.g. 192.168.1.5=-6 or 0x1234abcd=3"))?;
    let db: f32 = db
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': '{db}' is not a number of dB"))?;
    if !(-90.0..=24.0).contains(&db) {
        return Err(format!("'{s}': gain must be within -90..=24 dB"));
    }
    let key = key.trim();
    let parsed = if let Some(hex) = key.strip_prefix("0x").or_else(|| key.strip_prefix("0X")) {
        u32::from_str_radix(hex, 16).ok().map(GainKey::Ssrc)
    } else if let Ok(a) = key.parse::<SocketAddr>() {
        Some(GainKey::Address(a))
    } else if let Ok(ip) = key.parse::<IpAddr>() {
        Some(GainKey::Host(ip))
    } else {
        key.parse::<u32>().ok().map(GainKey::Ssrc)
    };
    parsed
        .map(|k| (k, db))
        .ok_or_else(|| format!("'{s}': '{key}' is not an SSRC, HOST:PORT or HOST"))
}

/// One playing stream.
#[derive(Debug)]
pub struct Entry {
    pub slot: u16,
    /// Its bound address and the validation state of its packets.
    pub source: StreamSource,
}

/// Refused SSRCs remembered (their packets are then counted without probation).
pub const REFUSED_REMEMBERED: usize = 4096;

pub struct Registry {
    entries: HashMap<u32, Entry>,
    free: Vec<u16>,
    /// The last refused SSRCs, oldest first, and the same as a set.
    refused_order: VecDeque<u32>,
    refused: HashSet<u32>,
    rules: Vec<(GainKey, f32)>,
    default_gain_db: f32,
    pub streams_started: u64,
    /// Validated SSRCs turned away for lack of a slot (every time).
    pub streams_refused: u64,
    pub refused_packets: u64,
    pub streams_timed_out: u64,
    pub streams_released: u64,
}

impl Registry {
    pub fn new(max_streams: usize, default_gain_db: f32, rules: Vec<(GainKey, f32)>) -> Self {
        Registry {
            entries: HashMap::with_capacity(max_streams),
            // lowest slot first
            free: (0..max_streams as u16).rev().collect(),
            refused_order: VecDeque::new(),
            refused: HashSet::new(),
            rules,
            default_gain_db,
            streams_started: 0,
            streams_refused: 0,
            refused_packets: 0,
            streams_timed_out: 0,
            streams_released: 0,
        }
    }

    pub fn gain_db_for(&self, ssrc: u32, source: SocketAddr) -> f32 {
        let find = |want: &dyn Fn(&GainKey) -> bool| self.rules.iter().find(|(k, _)| want(k)).map(|r| r.1);
        find(&|k| *k == GainKey::Ssrc(ssrc))
            .or_else(|| find(&|k| *k == GainKey::Address(source)))
            .or_else(|| find(&|k| *k == GainKey::Host(source.ip())))
            .unwrap_or(self.default_gain_db)
    }

    /// The playing stream of `ssrc`.
    pub fn get_mut(&mut self, ssrc: u32) -> Option<&mut Entry> {
        self.entries.get_mut(&ssrc)
    }

    pub fn get(&self, ssrc: u32) -> Option<&Entry> {
        self.entries.get(&ssrc)
    }

    /// A packet of an SSRC without a stream: `true` (counted in `refused_packets`) when it
    /// was refused before and still no slot is free.
    pub fn still_refused(&mut self, ssrc: u32) -> bool {
        if self.free.is_empty() && self.refused.contains(&ssrc) {
            self.refused_packets += 1;
            return true;
        }
        false
    }

    /// The slot a validated SSRC from `source` would get, and its gain (dB); `None` when
    /// every slot is taken. Nothing changes until [`Registry::started`] confirms it.
    pub fn free_slot(&self, ssrc: u32, source: SocketAddr) -> Option<(u16, f32)> {
        self.free
            .last()
            .map(|&slot| (slot, self.gain_db_for(ssrc, source)))
    }

    /// A validated SSRC found no free slot: counted, with its `packets`, and remembered.
    pub fn refuse(&mut self, ssrc: u32, packets: u64) {
        self.streams_refused += 1;
        self.refused_packets += packets;
        if self.refused.insert(ssrc) {
            self.refused_order.push_back(ssrc);
            if self.refused_order.len() > REFUSED_REMEMBERED {
                if let Some(old) = self.refused_order.pop_front() {
                    self.refused.remove(&old);
                }
            }
        }
    }

    /// The stream of a validated SSRC was handed to the callback in `slot`.
    pub fn started(&mut self, ssrc: u32, slot: u16, source: StreamSource) {
        self.free.retain(|&s| s != slot);
        self.entries.insert(ssrc, Entry { slot, source });
        if self.refused.remove(&ssrc) {
            self.refused_order.retain(|&s| s != ssrc);
        }
        self.streams_started += 1;
    }

    /// Streams whose bound source has delivered nothing for `timeout_ns`, as (slot, ssrc).
    /// They stay in the table until [`Registry::forget`] confirms their removal was sent to
    /// the callback.
    pub fn silent(&self, now_ns: i64, timeout_ns: i64, out: &mut Vec<(u16, u32)>) {
        out.clear();
        out.extend(
            self.entries
                .iter()
                .filter(|(_, e)| now_ns - e.source.last_delivered_ns() >= timeout_ns)
                .map(|(&ssrc, e)| (e.slot, ssrc)),
        );
    }

    /// A silent stream is fading out: its SSRC leaves the table (the slot stays taken until
    /// the callback hands the stream back).
    pub fn forget(&mut self, ssrc: u32) {
        if self.entries.remove(&ssrc).is_some() {
            self.streams_timed_out += 1;
        }
    }

    /// The callback handed back the stream of `slot`: the slot is free again.
    pub fn release(&mut self, slot: u16) {
        self.entries.retain(|_, e| e.slot != slot);
        if !self.free.contains(&slot) {
            self.free.push(slot);
        }
        self.streams_released += 1;
    }

    pub fn slot_of(&self, ssrc: u32) -> Option<u16> {
        self.entries.get(&ssrc).map(|e| e.slot)
    }

    pub fn source_of_slot(&self, slot: u16) -> Option<(u32, SocketAddr)> {
        self.entries
            .iter()
            .find(|(_, e)| e.slot == slot)
            .map(|(s, e)| (*s, e.source.address()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchcord_common::source::PacketMeta;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn source(a: SocketAddr, arrival_ns: i64) -> StreamSource {
        let last = PacketMeta {
            ssrc: 0,
            seq: 1,
            ts: 480,
            duration: 480,
            arrival_ns,
        };
        StreamSource::new(a, last)
    }

    #[test]
    fn slots_are_allocated_refused_and_released() {
        let mut r = Registry::new(2, 0.0, vec![]);
        let a = addr("10.0.0.1:5000");
        for (i, ssrc) in [1u32, 2].iter().enumerate() {
            let (slot, _) = r.free_slot(*ssrc, a).unwrap();
            assert_eq!(slot as usize, i);
            r.started(*ssrc, slot, source(a, 5 * i as i64));
        }
        assert_eq!(r.slot_of(1), Some(0));
        assert_eq!(r.free_slot(3, a), None);
        r.refuse(3, 2);
        assert!(r.still_refused(3));
        assert!(!r.still_refused(4));
        assert_eq!((r.streams_refused, r.refused_packets), (1, 3));
        let mut out = vec![];
        r.silent(1_002, 1_000, &mut out);
        assert_eq!(out, vec![(0, 1)]); // stream 2 delivered at 5
        r.forget(1);
        // slot 0 is not free until released
        assert_eq!(r.free_slot(3, a), None);
        r.release(0);
        assert_eq!(r.free_slot(3, a).map(|s| s.0), Some(0));
        assert!(
            !r.still_refused(3),
            "a refused SSRC goes through probation again once a slot is free"
        );
    }

    #[test]
    fn refusals_are_counted_exactly_however_many() {
        let mut r = Registry::new(1, 0.0, vec![]);
        r.started(1, 0, source(addr("10.0.0.1:5000"), 0));
        for ssrc in 2..10_002u32 {
            r.refuse(ssrc, 2);
        }
        assert_eq!(r.streams_refused, 10_000);
        assert_eq!(r.refused_packets, 20_000);
        // the most recent are remembered, memory stays bounded
        assert!(r.still_refused(10_001));
        assert!(!r.still_refused(2));
        assert_eq!(r.refused.len(), REFUSED_REMEMBERED);
    }

    #[test]
    fn gains_by_ssrc_then_address_then_host() {
        let rules = vec![
            parse_source_gain("10.0.0.1=-6").unwrap(),
            parse_source_gain("10.0.0.1:6000=-3").unwrap(),
            parse_source_gain("0x10=3").unwrap(),
        ];
        let r = Registry::new(4, -1.0, rules);
        assert_eq!(r.gain_db_for(0x10, addr("10.0.0.1:6000")), 3.0);
        assert_eq!(r.gain_db_for(7, addr("10.0.0.1:6000")), -3.0);
        assert_eq!(r.gain_db_for(7, addr("10.0.0.1:6001")), -6.0);
        assert_eq!(r.gain_db_for(7, addr("10.0.0.2:6000")), -1.0);
        assert!(parse_source_gain("nonsense").is_err());
        assert!(parse_source_gain("1.2.3.4=loud").is_err());
        assert!(parse_source_gain("1.2.3.4=99").is_err());
        assert_eq!(parse_source_gain("4660=0").unwrap().0, GainKey::Ssrc(4660));
    }
}
