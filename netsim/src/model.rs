//! The impairment model: seeded decisions per submitted packet, a queue of pending
//! deliveries, and exact accounting of what was done.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::profile::{Jitter, Loss, Profile, ReorderExtra, NORMAL_JITTER_LIMIT_SIGMAS};
use crate::rng::Stream;

/// Random stream numbers: each aspect draws from its own stream, so switching one aspect
/// on or off does not change the others' pattern for the same seed.
const STREAM_LOSS: u64 = 1;
const STREAM_JITTER: u64 = 2;
const STREAM_SPIKE: u64 = 3;
const STREAM_REORDER: u64 = 4;
const STREAM_DUP: u64 = 5;

/// Packet interval assumed by `reorder=P:N` before the first gap between submissions is seen.
const DEFAULT_INTERVAL_NS: f64 = 20_000_000.0;
/// Smallest extra delay of a reordered packet given in packet intervals.
const MIN_REORDER_EXTRA_NS: i64 = 1_000_000;

/// What happened to one submitted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fate {
    /// Lost: it will never come out of [`Impairment::poll`].
    Dropped,
    /// `copies` (1, or 2 when duplicated) deliveries will come out of [`Impairment::poll`].
    Delivered { copies: u8 },
}

/// Everything decided for one submitted packet (returned by [`Impairment::submit_detailed`]).
/// Delivery times are final at submission: later submissions never move them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    pub fate: Fate,
    /// Submission index: 0 for the first packet submitted to this `Impairment`, then 1, 2…
    pub seq: u64,
    /// When the (first) copy is delivered; `None` when dropped.
    pub deliver_at_ns: Option<i64>,
    /// When the duplicate copy is delivered; `None` unless duplicated.
    pub duplicate_at_ns: Option<i64>,
    /// A delay spike was added.
    pub spiked: bool,
    /// The packet was given the reorder extra delay (whether a later packet actually
    /// overtakes it shows in [`Delivery::reordered`]).
    pub reorder_delayed: bool,
}

/// One delivered copy (returned by [`Impairment::poll_delivery`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Delivery {
    /// The caller's id from [`Impairment::submit`].
    pub id: u64,
    /// Delivery time.
    pub at_ns: i64,
    /// Submission time.
    pub submitted_ns: i64,
    /// Submission index (see [`Decision::seq`]).
    pub seq: u64,
    /// 0 for the original, 1 for the duplicate.
    pub copy: u8,
    /// This is an original (copy 0) delivered after the original of a packet submitted
    /// later: the receiver sees it out of order. Duplicates are never counted here.
    pub reordered: bool,
}

/// Counters of what the model did. Identities (asserted by the tests):
/// - `submitted == dropped + (delivered + pending − duplicated)`, always;
/// - so once nothing is pending, `submitted == dropped + delivered − duplicated`;
/// - `reordered <= delivered`; with fifo on and no `reorder`, `reordered == 0`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImpairStats {
    /// Packets submitted.
    pub submitted: u64,
    /// Packets dropped.
    pub dropped: u64,
    /// Packets given a second copy.
    pub duplicated: u64,
    /// Copies delivered through `poll` so far (originals and duplicates).
    pub delivered: u64,
    /// Copies waiting for their delivery time.
    pub pending: u64,
    /// Originals delivered after the original of a packet submitted later.
    pub reordered: u64,
    /// Packets that got a delay spike.
    pub spiked: u64,
    /// Packets that got the reorder extra delay.
    pub reorder_delayed: u64,
    /// Largest delivery delay (delivery − submission) of a delivered copy.
    pub max_added_delay_ns: i64,
    /// Mean delivery delay of the delivered copies (0 when none).
    pub mean_added_delay_ns: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    // Field order is the delivery order: time, then submission order, then copy.
    at: i64,
    seq: u64,
    copy: u8,
    id: u64,
    submitted: i64,
}

/// A seeded, deterministic impaired path. Sans-IO: time is always an argument, nothing
/// reads a clock; only ids are stored (the caller keeps payloads).
///
/// Same profile + same seed + same sequence of `submit` calls (ids and times) ⇒ same
/// fates and delivery times, on every machine.
#[derive(Debug, Clone)]
pub struct Impairment {
    profile: Profile,
    seed: u64,
    loss_rng: Stream,
    jitter_rng: Stream,
    spike_rng: Stream,
    reorder_rng: Stream,
    dup_rng: Stream,
    ge_bad: bool,
    queue: BinaryHeap<Reverse<Entry>>,
    next_seq: u64,
    /// Delivery time of the last packet in the fifo queue.
    fifo_tail: Option<i64>,
    last_submit: Option<i64>,
    interval_ns: Option<f64>,
    /// Highest submission index whose original has been delivered.
    max_delivered_seq: Option<u64>,
    stats: ImpairStats,
    delay_sum_ns: i128,
}

fn ns(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

impl Impairment {
    /// A path with this profile and seed. Never panics, whatever the profile holds (see
    /// [`Profile::validate`]).
    pub fn new(profile: Profile, seed: u64) -> Impairment {
        Impairment {
            profile,
            seed,
            loss_rng: Stream::new(seed, STREAM_LOSS),
            jitter_rng: Stream::new(seed, STREAM_JITTER),
            spike_rng: Stream::new(seed, STREAM_SPIKE),
            reorder_rng: Stream::new(seed, STREAM_REORDER),
            dup_rng: Stream::new(seed, STREAM_DUP),
            ge_bad: false,
            queue: BinaryHeap::new(),
            next_seq: 0,
            fifo_tail: None,
            last_submit: None,
            interval_ns: None,
            max_delivered_seq: None,
            stats: ImpairStats::default(),
            delay_sum_ns: 0,
        }
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Submit packet with caller-chosen id (e.g. index) at time `now_ns` (nanoseconds, any
    /// origin). Returns its fate; delivered copies become available from `poll` at their
    /// delivery times.
    pub fn submit(&mut self, id: u64, now_ns: i64) -> Fate {
        self.submit_detailed(id, now_ns).fate
    }

    /// Like [`submit`](Self::submit), with the delivery times and the reasons.
    ///
    /// Every packet draws from every aspect's random stream (loss, jitter, spike, reorder,
    /// duplicate) whether or not it is dropped, so packet N's jitter for a seed is the same
    /// with or without loss, and its loss the same with or without jitter.
    pub fn submit_detailed(&mut self, id: u64, now_ns: i64) -> Decision {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.submitted += 1;

        if let Some(last) = self.last_submit {
            let gap = now_ns.saturating_sub(last).max(0) as f64;
            self.interval_ns = Some(match self.interval_ns {
                None => gap,
                Some(smoothed) => smoothed + (gap - smoothed) / 16.0,
            });
        }
        self.last_submit = Some(now_ns);

        let lost = self.draw_loss();
        let jitter_ns = self.draw_jitter();
        let spike_ns = self.draw_spike();
        let reorder = match &self.profile.reorder {
            Some(r) => self.reorder_rng.chance(r.probability),
            None => false,
        };
        let duplicate = match &self.profile.duplicate {
            Some(d) => self.dup_rng.chance(d.probability),
            None => false,
        };

        if lost {
            self.stats.dropped += 1;
            return Decision {
                fate: Fate::Dropped,
                seq,
                deliver_at_ns: None,
                duplicate_at_ns: None,
                spiked: false,
                reorder_delayed: false,
            };
        }

        let delay = ns(self.profile.delay).saturating_add(jitter_ns).max(0);
        let mut at = now_ns.saturating_add(delay).saturating_add(spike_ns.unwrap_or(0));
        if reorder {
            at = at.saturating_add(self.reorder_extra_ns());
            self.stats.reorder_delayed += 1;
        } else if self.profile.fifo {
            if let Some(tail) = self.fifo_tail {
                at = at.max(tail);
            }
            self.fifo_tail = Some(at);
        }
        if spike_ns.is_some() {
            self.stats.spiked += 1;
        }
        self.push(Entry {
            at,
            seq,
            copy: 0,
            id,
            submitted: now_ns,
        });

        let duplicate_at = match (&self.profile.duplicate, duplicate) {
            (Some(d), true) => {
                let copy_at = at.saturating_add(ns(d.gap));
                self.push(Entry {
                    at: copy_at,
                    seq,
                    copy: 1,
                    id,
                    submitted: now_ns,
                });
                self.stats.duplicated += 1;
                Some(copy_at)
            }
            _ => None,
        };

        Decision {
            fate: Fate::Delivered {
                copies: if duplicate_at.is_some() { 2 } else { 1 },
            },
            seq,
            deliver_at_ns: Some(at),
            duplicate_at_ns: duplicate_at,
            spiked: spike_ns.is_some(),
            reorder_delayed: reorder,
        }
    }

    fn push(&mut self, entry: Entry) {
        self.queue.push(Reverse(entry));
        self.stats.pending += 1;
    }

    fn draw_loss(&mut self) -> bool {
        match self.profile.loss {
            Loss::None => false,
            Loss::Random { p } => self.loss_rng.chance(p),
            Loss::GilbertElliott {
                p_good_to_bad,
                p_bad_to_good,
                loss_in_bad,
                loss_in_good,
            } => {
                // Loss in the current state, then the transition for the next packet.
                let lost = self
                    .loss_rng
                    .chance(if self.ge_bad { loss_in_bad } else { loss_in_good });
                let switch = self
                    .loss_rng
                    .chance(if self.ge_bad { p_bad_to_good } else { p_good_to_bad });
                if switch {
                    self.ge_bad = !self.ge_bad;
                }
                lost
            }
        }
    }

    fn draw_jitter(&mut self) -> i64 {
        let value = match self.profile.jitter {
            Jitter::None => return 0,
            Jitter::Normal { std_dev } => {
                self.jitter_rng.std_normal_truncated(NORMAL_JITTER_LIMIT_SIGMAS) * ns(std_dev) as f64
            }
            Jitter::Uniform { max } => (2.0 * self.jitter_rng.uniform() - 1.0) * ns(max) as f64,
        };
        value.round() as i64
    }

    fn draw_spike(&mut self) -> Option<i64> {
        let spike = self.profile.spike?;
        // Both draws always happen, to keep the stream aligned per packet.
        let hit = self.spike_rng.chance(spike.probability);
        let size = self.spike_rng.pareto(spike.shape) * ns(spike.scale) as f64;
        hit.then(|| {
            let capped = size.min(ns(spike.max) as f64);
            if capped.is_nan() {
                ns(spike.scale)
            } else {
                capped.round() as i64
            }
        })
    }

    fn reorder_extra_ns(&self) -> i64 {
        match self.profile.reorder.map(|r| r.extra) {
            Some(ReorderExtra::Fixed(d)) => ns(d),
            Some(ReorderExtra::Intervals(n)) => {
                let interval = self.interval_ns.unwrap_or(DEFAULT_INTERVAL_NS);
                ((n * interval).round() as i64).max(MIN_REORDER_EXTRA_NS)
            }
            None => 0,
        }
    }

    /// Next delivery due at or before `now_ns`: (id, delivery_time_ns). Call repeatedly
    /// until None. Deliveries come out in delivery-time order; equal times in submission
    /// order, an original before its duplicate.
    pub fn poll(&mut self, now_ns: i64) -> Option<(u64, i64)> {
        self.poll_delivery(now_ns).map(|d| (d.id, d.at_ns))
    }

    /// Like [`poll`](Self::poll), with the details of the delivery.
    pub fn poll_delivery(&mut self, now_ns: i64) -> Option<Delivery> {
        let Reverse(next) = self.queue.peek()?;
        if next.at > now_ns {
            return None;
        }
        let Reverse(e) = self.queue.pop()?;
        self.stats.pending -= 1;
        self.stats.delivered += 1;
        let delay = e.at.saturating_sub(e.submitted);
        self.delay_sum_ns += i128::from(delay);
        self.stats.max_added_delay_ns = if self.stats.delivered == 1 {
            delay
        } else {
            self.stats.max_added_delay_ns.max(delay)
        };
        let reordered = e.copy == 0 && self.max_delivered_seq.is_some_and(|m| m > e.seq);
        if e.copy == 0 && !reordered {
            self.max_delivered_seq = Some(e.seq);
        }
        if reordered {
            self.stats.reordered += 1;
        }
        Some(Delivery {
            id: e.id,
            at_ns: e.at,
            submitted_ns: e.submitted,
            seq: e.seq,
            copy: e.copy,
            reordered,
        })
    }

    /// Earliest pending delivery time, if any.
    pub fn next_delivery(&self) -> Option<i64> {
        self.queue.peek().map(|Reverse(e)| e.at)
    }

    /// Number of copies waiting for their delivery time.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// Counters of everything done so far.
    pub fn stats(&self) -> ImpairStats {
        let mut s = self.stats;
        s.mean_added_delay_ns = if s.delivered == 0 {
            0.0
        } else {
            self.delay_sum_ns as f64 / s.delivered as f64
        };
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_path_delivers_immediately_in_order() {
        let mut imp = Impairment::new(Profile::default(), 1);
        for i in 0..10 {
            assert_eq!(imp.submit(i, 100 + i as i64), Fate::Delivered { copies: 1 });
        }
        assert_eq!(imp.next_delivery(), Some(100));
        let out: Vec<(u64, i64)> = std::iter::from_fn(|| imp.poll(1_000)).collect();
        assert_eq!(out, (0..10).map(|i| (i, 100 + i as i64)).collect::<Vec<_>>());
        assert_eq!(imp.next_delivery(), None);
    }

    #[test]
    fn poll_respects_time() {
        let p = Profile {
            delay: Duration::from_millis(10),
            ..Profile::default()
        };
        let mut imp = Impairment::new(p, 1);
        imp.submit(7, 0);
        assert_eq!(imp.poll(9_999_999), None);
        assert_eq!(imp.next_delivery(), Some(10_000_000));
        assert_eq!(imp.poll(10_000_000), Some((7, 10_000_000)));
        assert_eq!(imp.poll(i64::MAX), None);
    }

    #[test]
    fn extreme_times_do_not_panic() {
        let p = Profile::parse("delay=1s,jitter=1s,spike=100%:1s,reorder=50%:1s,dup=50%:1s").unwrap();
        let mut imp = Impairment::new(p, 3);
        for (i, t) in [i64::MAX, i64::MIN, 0, i64::MAX - 1, -5].into_iter().enumerate() {
            imp.submit(i as u64, t);
        }
        while imp.poll(i64::MAX).is_some() {}
        let s = imp.stats();
        assert_eq!(s.submitted, 5);
        assert_eq!(s.pending, 0);
    }

    #[test]
    fn invalid_profile_values_do_not_panic() {
        let p = Profile {
            loss: Loss::Random { p: f64::NAN },
            spike: Some(crate::Spike {
                probability: 2.0,
                scale: Duration::from_millis(1),
                shape: -1.0,
                max: Duration::ZERO,
            }),
            reorder: Some(crate::Reorder {
                probability: 1.0,
                extra: ReorderExtra::Intervals(f64::INFINITY),
            }),
            ..Profile::default()
        };
        assert!(p.validate().is_err());
        let mut imp = Impairment::new(p, 0);
        for i in 0..100 {
            imp.submit(i, i as i64 * 1000);
        }
        while imp.poll(i64::MAX).is_some() {}
    }
}
