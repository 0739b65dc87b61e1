//! Packet storage of the jitter buffer: a fixed ring of slots indexed by extended
//! sequence number, with all payload memory allocated once at creation.
//!
//! This type only stores and finds packets; the decision of *when* a packet plays (the
//! playout timeline, late/lost accounting, concealment) belongs to
//! [`crate::playout::StreamPlayout`].

use crate::rtp::MAX_DATAGRAM_LEN;

/// Metadata of one stored packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredPacket {
    pub ext_seq: u64,
    pub ext_ts: u64,
    pub duration_samples: u32,
    pub arrival_ns: i64,
    pub len: usize,
    /// A stand-in recovered from RFC 2198 redundancy of a later packet, not the original.
    pub redundant: bool,
}

/// What happened to an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    Stored,
    /// The same sequence number is already stored.
    Duplicate,
    /// Its slot is held by a packet `capacity` or more sequence numbers away.
    SlotBusy,
    /// Payload longer than a slot.
    TooLarge,
}

/// Fixed-capacity packet store. `insert`, `get`, `remove` are O(1) and never allocate.
pub struct PacketStore {
    slots: Vec<Option<StoredPacket>>,
    payloads: Vec<u8>,
    slot_bytes: usize,
    count: usize,
}

impl PacketStore {
    /// Allocates `capacity` slots of [`MAX_DATAGRAM_LEN`] bytes each.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        PacketStore {
            slots: crate::mem::resident_vec(capacity, None),
            payloads: crate::mem::resident_vec(capacity * MAX_DATAGRAM_LEN, 0u8),
            slot_bytes: MAX_DATAGRAM_LEN,
            count: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn index(&self, ext_seq: u64) -> usize {
        (ext_seq % self.slots.len() as u64) as usize
    }

    pub fn insert(&mut self, meta: StoredPacket, payload: &[u8]) -> StoreOutcome {
        if payload.len() > self.slot_bytes {
            return StoreOutcome::TooLarge;
        }
        let i = self.index(meta.ext_seq);
        match self.slots[i] {
            Some(existing) if existing.ext_seq == meta.ext_seq => return StoreOutcome::Duplicate,
            Some(_) => return StoreOutcome::SlotBusy,
            None => {}
        }
        let start = i * self.slot_bytes;
        self.payloads[start..start + payload.len()].copy_from_slice(payload);
        self.slots[i] = Some(StoredPacket {
            len: payload.len(),
            ..meta
        });
        self.count += 1;
        StoreOutcome::Stored
    }

    /// The packet with this extended sequence number, if stored.
    pub fn get(&self, ext_seq: u64) -> Option<(StoredPacket, &[u8])> {
        let i = self.index(ext_seq);
        match self.slots[i] {
            Some(p) if p.ext_seq == ext_seq => {
                let start = i * self.slot_bytes;
                Some((p, &self.payloads[start..start + p.len]))
            }
            _ => None,
        }
    }

    pub fn remove(&mut self, ext_seq: u64) -> Option<StoredPacket> {
        let i = self.index(ext_seq);
        match self.slots[i] {
            Some(p) if p.ext_seq == ext_seq => {
                self.slots[i] = None;
                self.count -= 1;
                Some(p)
            }
            _ => None,
        }
    }

    /// Stored packets that are originals (not redundancy stand-ins). O(capacity).
    pub fn originals(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.is_some_and(|p| !p.redundant))
            .count()
    }

    pub fn clear(&mut self) {
        for s in self.slots.iter_mut() {
            *s = None;
        }
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(seq: u64) -> StoredPacket {
        StoredPacket {
            ext_seq: seq,
            ext_ts: seq * 480,
            duration_samples: 480,
            arrival_ns: 0,
            len: 0,
            redundant: false,
        }
    }

    #[test]
    fn insert_get_remove() {
        let mut s = PacketStore::new(4);
        assert_eq!(s.insert(meta(10), &[1, 2, 3]), StoreOutcome::Stored);
        assert_eq!(s.insert(meta(10), &[1, 2, 3]), StoreOutcome::Duplicate);
        assert_eq!(s.insert(meta(14), &[9]), StoreOutcome::SlotBusy);
        assert_eq!(s.insert(meta(11), &[4]), StoreOutcome::Stored);
        assert_eq!(s.len(), 2);
        let (m, p) = s.get(10).unwrap();
        assert_eq!((m.ext_seq, m.len, p), (10, 3, &[1u8, 2, 3][..]));
        assert!(s.get(14).is_none());
        assert_eq!(s.remove(10).map(|m| m.ext_seq), Some(10));
        assert!(s.get(10).is_none());
        assert_eq!(s.insert(meta(14), &[9]), StoreOutcome::Stored);
        assert_eq!(
            s.insert(meta(1), &vec![0u8; MAX_DATAGRAM_LEN + 1]),
            StoreOutcome::TooLarge
        );
        s.clear();
        assert!(s.is_empty());
    }
}
