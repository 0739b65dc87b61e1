//! End-to-end latency per stream, second by second. Each stream report whose stream has a
//! capture clock (a patchcord sender's RTCP sender report) gives one reading, capture →
//! playback; a second's value is its lowest reading (the one least delayed by the
//! reporting itself). The run's summary keeps, for each second, the value of the first
//! stream that measured one (at most [`MAX_SECONDS`]), for its min / median / max.

/// Seconds of latency kept for the summary: 12 days.
const MAX_SECONDS: usize = 1 << 20;

#[derive(Default, Clone, Copy)]
struct SlotLatency {
    /// Lowest reading of the second under way.
    this_second: Option<i64>,
    /// The last complete second's.
    last_second: Option<i64>,
}

pub struct LatencyLog {
    slots: Vec<SlotLatency>,
    /// The last value of any stream, for the summary after the streams have gone.
    last_ns: Option<i64>,
    history: Vec<i64>,
}

impl LatencyLog {
    pub fn new(max_streams: usize) -> Self {
        LatencyLog {
            slots: vec![SlotLatency::default(); max_streams],
            last_ns: None,
            history: Vec::new(),
        }
    }

    /// A reading for the stream in `slot`, ns.
    pub fn reading(&mut self, slot: usize, ns: i64) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.this_second = Some(s.this_second.map_or(ns, |m| m.min(ns)));
        }
    }

    /// Another stream is in `slot` now: what was measured belongs to the one before.
    pub fn forget(&mut self, slot: usize) {
        if let Some(s) = self.slots.get_mut(slot) {
            *s = SlotLatency::default();
        }
    }

    /// Close the second; `playing(slot)` says which slots hold a stream now.
    pub fn end_second(&mut self, playing: impl Fn(usize) -> bool) {
        let mut fresh = None;
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(l) = s.this_second.take() {
                s.last_second = Some(l);
                if playing(i) {
                    fresh = fresh.or(Some(l));
                }
            }
        }
        if let Some(l) = (0..self.slots.len()).find_map(|i| self.slots[i].last_second.filter(|_| playing(i)))
        {
            self.last_ns = Some(l);
        }
        if let Some(l) = fresh.filter(|_| self.history.len() < MAX_SECONDS) {
            self.history.push(l);
        }
    }

    /// The last complete second's latency of the stream in `slot`.
    pub fn of_slot(&self, slot: usize) -> Option<i64> {
        self.slots.get(slot).and_then(|s| s.last_second)
    }

    /// The last latency measured of any stream.
    pub fn last(&self) -> Option<i64> {
        self.last_ns
    }

    /// Min, median and max over the run (ns).
    pub fn spread(&self) -> Option<(i64, i64, i64)> {
        let mut all = self.history.clone();
        all.sort_unstable();
        Some((*all.first()?, all[all.len() / 2], *all.last()?))
    }
}
