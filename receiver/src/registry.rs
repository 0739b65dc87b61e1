//! The network side's table of streams: which SSRC plays in which slot of the output
//! callback, when each was last heard, its gain, and what happens when there are more
//! senders than `--max-streams`. Runs on the control thread; it is where every stream is
//! allocated (and, when the callback hands it back, freed).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

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

#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub slot: u16,
    pub last_arrival_ns: i64,
    pub source: SocketAddr,
}

/// What to do with a datagram of some SSRC.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Route {
    /// Known stream in this slot.
    Known(u16),
    /// New stream: create it in this slot, with this gain (dB).
    New { slot: u16, gain_db: f32 },
    /// No free slot: refused (counted).
    Refused,
}

pub struct Registry {
    entries: HashMap<u32, Entry>,
    free: Vec<u16>,
    /// SSRCs refused for lack of a slot (bounded: counted, then only packets are counted).
    refused: HashSet<u32>,
    rules: Vec<(GainKey, f32)>,
    default_gain_db: f32,
    pub streams_started: u64,
    pub streams_refused: u64,
    pub refused_packets: u64,
    pub streams_timed_out: u64,
    pub streams_released: u64,
}

const MAX_REFUSED_TRACKED: usize = 4096;

impl Registry {
    pub fn new(max_streams: usize, default_gain_db: f32, rules: Vec<(GainKey, f32)>) -> Self {
        Registry {
            entries: HashMap::with_capacity(max_streams),
            // lowest slot first
            free: (0..max_streams as u16).rev().collect(),
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

    /// Route a datagram of `ssrc` from `source`; a `New` route must be confirmed with
    /// [`Registry::started`]; until then the slot stays free (nothing to undo if the stream
    /// cannot be created).
    pub fn route(&mut self, ssrc: u32, source: SocketAddr, arrival_ns: i64) -> Route {
        if let Some(e) = self.entries.get_mut(&ssrc) {
            e.last_arrival_ns = arrival_ns;
            return Route::Known(e.slot);
        }
        match self.free.last() {
            Some(&slot) => Route::New {
                slot,
                gain_db: self.gain_db_for(ssrc, source),
            },
            None => {
                self.refused_packets += 1;
                if self.refused.len() < MAX_REFUSED_TRACKED && self.refused.insert(ssrc) {
                    self.streams_refused += 1;
                }
                Route::Refused
            }
        }
    }

    /// The stream for a `New` route was handed to the callback.
    pub fn started(&mut self, ssrc: u32, slot: u16, source: SocketAddr, arrival_ns: i64) {
        self.free.retain(|&s| s != slot);
        self.entries.insert(
            ssrc,
            Entry {
                slot,
                last_arrival_ns: arrival_ns,
                source,
            },
        );
        self.refused.remove(&ssrc);
        self.streams_started += 1;
    }

    /// Streams silent for `timeout_ns`, as (slot, ssrc). They stay in the table until
    /// [`Registry::forget`] confirms their removal was sent to the callback.
    pub fn silent(&self, now_ns: i64, timeout_ns: i64, out: &mut Vec<(u16, u32)>) {
        out.clear();
        out.extend(
            self.entries
                .iter()
                .filter(|(_, e)| now_ns - e.last_arrival_ns >= timeout_ns)
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
            .map(|(s, e)| (*s, e.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn slots_are_allocated_refused_and_released() {
        let mut r = Registry::new(2, 0.0, vec![]);
        let a = addr("10.0.0.1:5000");
        for (i, ssrc) in [1u32, 2].iter().enumerate() {
            match r.route(*ssrc, a, 0) {
                Route::New { slot, .. } => {
                    assert_eq!(slot as usize, i);
                    r.started(*ssrc, slot, a, 0);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(r.route(1, a, 5), Route::Known(0));
        assert_eq!(r.route(3, a, 5), Route::Refused);
        assert_eq!(r.route(3, a, 6), Route::Refused);
        assert_eq!((r.streams_refused, r.refused_packets), (1, 2));
        let mut out = vec![];
        r.silent(1_000, 1_000, &mut out);
        assert_eq!(out, vec![(1, 2)]); // stream 1 was heard at 5
        r.forget(2);
        // slot 1 is not free until released
        assert_eq!(r.route(3, a, 1_001), Route::Refused);
        r.release(1);
        assert!(matches!(r.route(3, a, 1_002), Route::New { slot: 1, .. }));
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
