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
//!
//! A free slot is not enough: the load governor (`patchcord_common::load`, `--load-limit`)
//! must also see room for one more stream in the render time, else the SSRC is refused
//! the same way (and counted in `refused_for_load` too). When the load goes over the limit
//! anyway, the newest streams are shed ([`Registry::newest`], [`Registry::shed`]): they
//! fade out, are counted (`streams_shed`), and their SSRCs are kept out for
//! `SHED_HOLD_NS` (their packets counted in `refused_packets`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use patchcord_common::load::{LoadGovernor, SHED_HOLD_NS};
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
    /// Order of admission (the newest is shed first).
    pub admitted: u64,
}

/// Why a validated SSRC got no stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Every `--max-streams` slot is taken.
    NoSlot,
    /// The render time has no room for one more stream (`--load-limit`).
    Load,
}

/// Refused SSRCs remembered (their packets are then counted without probation).
pub const REFUSED_REMEMBERED: usize = 4096;

pub struct Registry {
    entries: HashMap<u32, Entry>,
    free: Vec<u16>,
    /// The last refused SSRCs, oldest first, and the same as a set.
    refused_order: VecDeque<u32>,
    refused: HashSet<u32>,
    /// Shed SSRCs and until when they are kept out (at most [`REFUSED_REMEMBERED`]).
    held_out: HashMap<u32, i64>,
    rules: Vec<(GainKey, f32)>,
    default_gain_db: f32,
    /// Render time: admission and shedding.
    pub load: LoadGovernor,
    pub streams_started: u64,
    /// Validated SSRCs turned away for lack of a slot or of render time (every time).
    pub streams_refused: u64,
    /// Of `streams_refused`, those turned away for render time.
    pub refused_for_load: u64,
    /// Playing streams shed because the render time went over the limit.
    pub streams_shed: u64,
    pub refused_packets: u64,
    pub streams_timed_out: u64,
    pub streams_released: u64,
}

impl Registry {
    pub fn new(
        max_streams: usize,
        default_gain_db: f32,
        rules: Vec<(GainKey, f32)>,
        load: LoadGovernor,
    ) -> Self {
        Registry {
            entries: HashMap::with_capacity(max_streams),
            // lowest slot first
            free: (0..max_streams as u16).rev().collect(),
            refused_order: VecDeque::new(),
            refused: HashSet::new(),
            held_out: HashMap::new(),
            rules,
            default_gain_db,
            load,
            streams_started: 0,
            streams_refused: 0,
            refused_for_load: 0,
            streams_shed: 0,
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

    /// A packet of an SSRC without a stream, at `now_ns`: `true` (counted in
    /// `refused_packets`) when it was refused before and there is still no room, or it
    /// was shed less than `SHED_HOLD_NS` ago.
    pub fn still_refused(&mut self, ssrc: u32, now_ns: i64) -> bool {
        let held = self.held_out.get(&ssrc).is_some_and(|&until| now_ns < until);
        if held || (self.refused.contains(&ssrc) && self.room().is_err()) {
            self.refused_packets += 1;
            return true;
        }
        false
    }

    /// Whether one more stream can play: a free slot and room in the render time.
    fn room(&self) -> Result<u16, Refusal> {
        let slot = *self.free.last().ok_or(Refusal::NoSlot)?;
        if !self.load.admits(self.entries.len() as u32) {
            return Err(Refusal::Load);
        }
        Ok(slot)
    }

    /// The slot a validated SSRC from `source` would get, and its gain (dB); or why it
    /// gets none. Nothing changes until [`Registry::started`] confirms it.
    pub fn free_slot(&self, ssrc: u32, source: SocketAddr) -> Result<(u16, f32), Refusal> {
        self.room().map(|slot| (slot, self.gain_db_for(ssrc, source)))
    }

    /// A validated SSRC got no stream: counted, with its `packets`, and remembered.
    pub fn refuse(&mut self, ssrc: u32, packets: u64, why: Refusal) {
        self.streams_refused += 1;
        if why == Refusal::Load {
            self.refused_for_load += 1;
        }
        self.refused_packets += packets;
        self.remember_refused(ssrc);
    }

    fn remember_refused(&mut self, ssrc: u32) {
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
        let admitted = self.streams_started;
        self.entries.insert(
            ssrc,
            Entry {
                slot,
                source,
                admitted,
            },
        );
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

    /// The `n` newest playing streams, newest first, as (slot, ssrc).
    pub fn newest(&self, n: usize) -> Vec<(u16, u32)> {
        let mut all: Vec<(u64, u16, u32)> = self
            .entries
            .iter()
            .map(|(&ssrc, e)| (e.admitted, e.slot, ssrc))
            .collect();
        all.sort_unstable_by_key(|e| std::cmp::Reverse(e.0));
        all.into_iter()
            .take(n)
            .map(|(_, slot, ssrc)| (slot, ssrc))
            .collect()
    }

    /// A playing stream is being shed at `now_ns` (its fade-out was sent to the callback):
    /// it leaves the table, counted, and its SSRC is kept out for `SHED_HOLD_NS`.
    pub fn shed(&mut self, ssrc: u32, now_ns: i64) {
        if self.entries.remove(&ssrc).is_some() {
            self.streams_shed += 1;
            self.remember_refused(ssrc);
            if self.held_out.len() >= REFUSED_REMEMBERED {
                self.held_out.retain(|_, &mut until| until > now_ns);
            }
            if self.held_out.len() < REFUSED_REMEMBERED {
                self.held_out.insert(ssrc, now_ns + SHED_HOLD_NS);
            }
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
        let mut r = Registry::new(2, 0.0, vec![], LoadGovernor::new(0.75));
        let a = addr("10.0.0.1:5000");
        for (i, ssrc) in [1u32, 2].iter().enumerate() {
            let (slot, _) = r.free_slot(*ssrc, a).unwrap();
            assert_eq!(slot as usize, i);
            r.started(*ssrc, slot, source(a, 5 * i as i64));
        }
        assert_eq!(r.slot_of(1), Some(0));
        assert_eq!(r.free_slot(3, a), Err(Refusal::NoSlot));
        r.refuse(3, 2, Refusal::NoSlot);
        assert!(r.still_refused(3, 0));
        assert!(!r.still_refused(4, 0));
        assert_eq!((r.streams_refused, r.refused_packets), (1, 3));
        let mut out = vec![];
        r.silent(1_002, 1_000, &mut out);
        assert_eq!(out, vec![(0, 1)]); // stream 2 delivered at 5
        r.forget(1);
        // slot 0 is not free until released
        assert_eq!(r.free_slot(3, a), Err(Refusal::NoSlot));
        r.release(0);
        assert_eq!(r.free_slot(3, a).map(|s| s.0), Ok(0));
        assert!(
            !r.still_refused(3, 0),
            "a refused SSRC goes through probation again once a slot is free"
        );
    }

    #[test]
    fn refusals_are_counted_exactly_however_many() {
        let mut r = Registry::new(1, 0.0, vec![], LoadGovernor::new(0.75));
        r.started(1, 0, source(addr("10.0.0.1:5000"), 0));
        for ssrc in 2..10_002u32 {
            r.refuse(ssrc, 2, Refusal::NoSlot);
        }
        assert_eq!(r.streams_refused, 10_000);
        assert_eq!(r.refused_packets, 20_000);
        // the most recent are remembered, memory stays bounded
        assert!(r.still_refused(10_001, 0));
        assert!(!r.still_refused(2, 0));
        assert_eq!(r.refused.len(), REFUSED_REMEMBERED);
    }

    #[test]
    fn the_newest_streams_are_shed_and_the_load_refuses_more() {
        let mut r = Registry::new(8, 0.0, vec![], LoadGovernor::new(0.5));
        let a = addr("10.0.0.1:5000");
        for ssrc in 1..=6u32 {
            let (slot, _) = r.free_slot(ssrc, a).unwrap();
            r.started(ssrc, slot, source(a, 0));
        }
        // six streams at 10 % of real time each: over the 50 % limit for half a second
        for _ in 0..50 {
            r.load.observe(480, 6_000_000, 6);
        }
        let n = r.load.take_shed() as usize;
        assert_eq!(n, 2, "0.6 - 0.45 over a share of 0.1");
        let shed = r.newest(n);
        assert_eq!(shed.iter().map(|s| s.1).collect::<Vec<_>>(), vec![6, 5]);
        for (_, ssrc) in shed {
            r.shed(ssrc, 0);
        }
        assert_eq!(r.streams_shed, 2);
        // free slots, but no room in the render time: refused, and shed SSRCs stay out
        assert_eq!(r.free_slot(7, a), Err(Refusal::Load));
        r.refuse(7, 3, Refusal::Load);
        assert_eq!((r.streams_refused, r.refused_for_load), (1, 1));
        assert!(r.still_refused(6, 0));
        assert!(r.still_refused(7, 0));
        assert_eq!(r.refused_packets, 5);
        // the load has room again: a refused SSRC may come back through probation at once,
        // a shed one only after its hold
        for _ in 0..100 {
            r.load.observe(480, 2_000_000, 4);
        }
        assert!(r.free_slot(7, a).is_ok());
        assert!(!r.still_refused(7, 1));
        assert!(r.still_refused(6, SHED_HOLD_NS - 1));
        assert!(!r.still_refused(6, SHED_HOLD_NS));
    }

    #[test]
    fn gains_by_ssrc_then_address_then_host() {
        let rules = vec![
            parse_source_gain("10.0.0.1=-6").unwrap(),
            parse_source_gain("10.0.0.1:6000=-3").unwrap(),
            parse_source_gain("0x10=3").unwrap(),
        ];
        let r = Registry::new(4, -1.0, rules, LoadGovernor::new(0.75));
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
