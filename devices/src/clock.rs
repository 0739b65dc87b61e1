//! The host clock of a patchcord process: one monotonic clock (`Instant`) mapped to wall
//! clock (Unix nanoseconds) through a single anchor taken at start-up, so that
//! converted instants never jump even if the wall clock is stepped while running.
//!
//! Wall-clock time is what RTCP sender reports carry and what makes end-to-end latency
//! comparable between sender and receiver (exactly so on one host).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, Clone, Copy)]
pub struct HostClock {
    anchor: Instant,
    anchor_unix_ns: i64,
}

impl Default for HostClock {
    fn default() -> Self {
        Self::new()
    }
}

impl HostClock {
    /// Take the anchor: reads `Instant::now()` between two wall-clock reads and keeps the
    /// pair with the smallest bracket, so the anchor error is well under a microsecond.
    pub fn new() -> Self {
        let mut best: Option<(i64, Instant, i64)> = None;
        for _ in 0..5 {
            let w0 = unix_ns(SystemTime::now());
            let i = Instant::now();
            let w1 = unix_ns(SystemTime::now());
            let spread = w1 - w0;
            if best.is_none_or(|(s, _, _)| spread < s) {
                best = Some((spread, i, w0 + spread / 2));
            }
        }
        let (_, anchor, anchor_unix_ns) = best.unwrap_or((0, Instant::now(), unix_ns(SystemTime::now())));
        HostClock {
            anchor,
            anchor_unix_ns,
        }
    }

    /// Unix nanoseconds of an instant on this process's monotonic clock.
    pub fn unix_ns(&self, at: Instant) -> i64 {
        match at.checked_duration_since(self.anchor) {
            Some(d) => self.anchor_unix_ns + d.as_nanos() as i64,
            None => self.anchor_unix_ns - self.anchor.duration_since(at).as_nanos() as i64,
        }
    }

    /// Now, in Unix nanoseconds. Reads the vDSO clock: no syscall, no lock, no allocation
    /// (safe in audio callbacks).
    pub fn now_unix_ns(&self) -> i64 {
        self.unix_ns(Instant::now())
    }
}

fn unix_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i64,
        Err(e) => -(e.duration().as_nanos() as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_close_to_wall_clock() {
        let c = HostClock::new();
        let a = c.now_unix_ns();
        let b = c.now_unix_ns();
        assert!(b >= a);
        let wall = unix_ns(SystemTime::now());
        assert!((wall - b).abs() < 50_000_000, "{wall} vs {b}");
        let earlier = Instant::now() - std::time::Duration::from_millis(5);
        assert!(c.unix_ns(earlier) < a);
    }
}
