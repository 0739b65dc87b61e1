//! Source validation without cryptography: which datagrams may speak for a stream.
//!
//! Anyone who can reach the receiver's port can send it RTP. Without SRTP the receiver
//! cannot know who sent a packet, but it can refuse what a real sender never does, in the
//! manner of RFC 3550 (§8.2 and the A.1 `probation` / `bad_seq` rules) and of GStreamer's
//! rtpbin:
//!
//! - **Probation** ([`Probation`]). A new SSRC gets a stream only after [`MIN_SEQUENTIAL`]
//!   packets in sequence from one transport address, in whatever order they arrive:
//!   consecutive sequence numbers, timestamps 2.5 to 120 ms per step apart in the same
//!   direction, arrivals apart by their media within 250 ms; the other packets it sends
//!   meanwhile (up to 8) must belong to the same sequence. Random datagrams and one-off
//!   packets never qualify. The packets are kept and played once the SSRC qualifies:
//!   probation delays a stream by one frame and loses nothing. Candidates wait in a table
//!   of bounded size; when it is full, the address holding the most candidates gives up
//!   its oldest (or, when every address holds one, the oldest goes): an address flooding
//!   10,000 SSRCs pushes out its own candidates, never another sender's.
//! - **Binding** ([`StreamSource`]). A stream is bound to the transport address that
//!   passed probation. Packets of its SSRC from anywhere else are counted (`wrong_source`)
//!   and dropped. Its RTCP (BYE, sender reports, SDES) counts only from that address or
//!   from its port + 1 ([`is_rtcp_source`]: patchcord and rtcp-mux senders use the RTP
//!   socket, ffmpeg the next port), and the receiver's reports about it go only there. A
//!   sender that moves is heard again once its stream has timed out at the old address.
//! - **Continuity** ([`StreamSource::check`]). A packet is played only if it *follows*
//!   the highest packet so far: its sequence number within the A.1 window (99 behind, 2999
//!   ahead), its timestamp 2.5 ms to 120 ms per sequence step before it when older, at
//!   least 2.5 ms per step after it when newer, and then its media not ahead of the arrival
//!   clock by more than the frames in between (up to 4), 5 ms and four times the
//!   interarrival jitter: a sender cannot send audio before capturing it, and a packet can
//!   overtake the clock only by as much as the packet before it was delayed more. Anything
//!   else — a jump of the sequence number or of the timestamp — is held aside, in runs of
//!   packets that follow each other, and never followed on its own word. A packet that
//!   follows the stream refutes what is held: held packets are dropped (`jumps_rejected`)
//!   unless they now follow too (reordering). A run is confirmed only when it has
//!   [`MIN_SEQUENTIAL`] packets *and* the stream's own sequence has been silent for that
//!   many frames less 2 ms, plus four times its jitter: then the run is played, held
//!   packets first, and the stream restarts there (`restarts`) unless the run turns out to
//!   fit the stream after all. On a clean path a real restart or a timestamp jump after a
//!   pause is followed by its second packet, one frame later, losing nothing; an attacker
//!   has to fit its run into a silence of the sender (a lost packet, a stall). Should the
//!   sequence before a restart go on beyond where it was ([`MIN_SEQUENTIAL`] packets), it
//!   takes the stream back at once: the sender had only stalled.
//!
//! What this stops, measured on the real binaries (`tests/tests/e2e_attacks.rs`): a packet
//! with a stream's SSRC from any other address, a lone sequence or timestamp jump or a
//! pair of them even from the sender's own address (while the sender is sending), forged
//! BYEs and sender reports from elsewhere, random datagrams and SSRC floods. What it cannot
//! stop: someone who forges the sender's address can slip a run into a moment the sender
//! is silent (a lost packet, a stall: bounded in `tests/source_sim.rs`) or replace packets
//! whose sequence numbers it predicts, and a flood of well-formed streams is
//! indistinguishable from real senders; that takes `--allow` or cryptography (SRTP).
//!
//! Sans-IO: arrival instants come in as arguments. Held packets are copied to the heap
//! (at most 8 per run, 3 runs and a comeback per stream, 8 per probation candidate): this
//! runs on the network thread, never in an audio callback.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;

use serde::Serialize;

use crate::rtp::RtpOpusHeader;
use crate::stats::{MAX_DROPOUT, MAX_MISORDER};
use crate::time::frames_to_ns;

/// RFC 3550 A.1: packets in sequence before a new source is valid (and before a jump is
/// followed).
pub const MIN_SEQUENTIAL: usize = 2;
/// The shortest Opus frame, 2.5 ms: the least a timestamp advances per sequence step.
const MIN_STEP_SAMPLES: i64 = 120;
/// An older packet's timestamp lies at most this far back per sequence step (120 ms, the
/// longest Opus packet).
const MAX_STEP_SAMPLES: i64 = 5_760;
/// Frames between two packets that their media may run ahead of the arrival clock.
const AHEAD_FRAMES: i64 = 4;
/// Fixed slack of the "not ahead of the arrival clock" test.
const AHEAD_SLACK_NS: i64 = 5_000_000;
/// A confirmed jump whose sequence numbers fit and whose media is ahead of the stream by
/// less than this plays on: it was a packet held up late (a burst), not a new timeline.
const RESTART_AHEAD_NS: i64 = 250_000_000;
/// How much sooner than its packets' frames a jump may be confirmed (arrival jitter).
const CONFIRM_SLACK_NS: i64 = 2_000_000;
/// Most packets held aside per run; older ones give way (counted).
const MAX_HELD: usize = 8;
/// Most runs of held packets per stream (a jump, and an attacker's noise around it); the
/// one silent longest gives way (counted).
const MAX_RUNS: usize = 3;
/// In probation two packets' arrivals may differ from their media by at most this.
const PROBATION_LAG_NS: i64 = 250_000_000;

/// Counters of source validation, for the receiver's stats. Every RTP packet that reaches
/// validation ends in exactly one place: delivered to its stream, `wrong_source`,
/// `unvalidated`, `jumps_rejected`, or still waiting (in probation or held aside).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SourceCounters {
    /// Packets of a playing stream's SSRC from another transport address; dropped.
    pub wrong_source: u64,
    /// Packets of SSRCs that did not complete probation; dropped.
    pub unvalidated: u64,
    /// Probation candidates pushed out to make room for new SSRCs.
    pub probation_evicted: u64,
    /// Packets held aside because they did not follow their stream (delivered later, or
    /// counted in `jumps_rejected`).
    pub held_aside: u64,
    /// Held packets dropped: the stream went on without them.
    pub jumps_rejected: u64,
    /// Jumps confirmed by the packets after them: the stream restarted there.
    pub restarts: u64,
}

/// What validation reads of a packet: its RTP header, its Opus duration, its arrival.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketMeta {
    pub ssrc: u32,
    pub seq: u16,
    pub ts: u32,
    /// Duration of its Opus packet in 48 kHz samples.
    pub duration: u32,
    pub arrival_ns: i64,
}

impl PacketMeta {
    pub fn of(h: &RtpOpusHeader, arrival_ns: i64) -> Self {
        PacketMeta {
            ssrc: h.ssrc,
            seq: h.sequence,
            ts: h.timestamp,
            duration: h.duration_samples,
            arrival_ns,
        }
    }
}

/// A datagram kept until its fate is decided.
#[derive(Debug, Clone)]
pub struct Held {
    pub meta: PacketMeta,
    pub datagram: Vec<u8>,
}

/// Whether RTCP from `from` may speak for a stream whose RTP comes from `rtp`: the same
/// address (one socket for both, or RTP/RTCP multiplexing) or the same host's next port
/// (the RFC 3550 §11 convention).
pub fn is_rtcp_source(rtp: SocketAddr, from: SocketAddr) -> bool {
    rtp.ip().to_canonical() == from.ip().to_canonical()
        && (from.port() == rtp.port() || rtp.port().checked_add(1) == Some(from.port()))
}

/// How a packet relates to a reference packet of the same SSRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    /// In sequence (possibly reordered or repeated) and not ahead of the arrival clock.
    Follows,
    /// Sequence number and timestamp agree with each other, but its media is this many ns
    /// ahead of the arrival clock.
    Ahead(i64),
    /// A sequence or timestamp jump.
    Jump,
}

fn relation(r: &PacketMeta, p: &PacketMeta, jitter_ns: i64) -> Relation {
    let ds = p.seq.wrapping_sub(r.seq) as i16 as i64;
    let dt = p.ts.wrapping_sub(r.ts) as i32 as i64;
    if ds <= -(MAX_MISORDER as i64) || ds >= MAX_DROPOUT as i64 {
        return Relation::Jump;
    }
    if ds <= 0 {
        // reordered or repeated: older media, by at least 2.5 ms per sequence step
        let fits = if ds == 0 {
            dt == 0
        } else {
            dt <= ds * MIN_STEP_SAMPLES && dt >= ds * MAX_STEP_SAMPLES
        };
        return if fits { Relation::Follows } else { Relation::Jump };
    }
    if dt < ds * MIN_STEP_SAMPLES {
        return Relation::Jump;
    }
    let ahead = frames_to_ns(dt) - (p.arrival_ns - r.arrival_ns);
    let allowed = ds.min(AHEAD_FRAMES) * frames_to_ns(r.duration as i64) + AHEAD_SLACK_NS + 4 * jitter_ns;
    if ahead <= allowed {
        Relation::Follows
    } else {
        Relation::Ahead(ahead)
    }
}

/// The validation state of one playing stream: its bound address, the highest packet so
/// far, the jitter of its arrivals, and the packets held aside.
#[derive(Debug, Clone)]
pub struct StreamSource {
    address: SocketAddr,
    /// The highest (newest) packet delivered.
    reference: PacketMeta,
    last_delivered_ns: i64,
    /// Media time of `reference` (ns, from its first packet): transit = arrival − media.
    reference_media_ns: i64,
    /// Transit of the last packet delivered, for the jitter.
    last_transit_ns: i64,
    /// RFC 3550 A.8 interarrival jitter of delivered packets (in arrival order), ns.
    jitter_ns: f64,
    /// Runs of held packets, each following on from its own first packet.
    runs: Vec<Vec<Held>>,
    /// The stream's sequence before its last restart, and packets newer than it that
    /// follow it: if that sequence goes on after all (it had only stopped for a while, and
    /// someone else's run was taken for a restart), it takes the stream back at once.
    previous: Option<PacketMeta>,
    comeback: Vec<Held>,
}

impl StreamSource {
    /// A stream bound to `address`, whose newest delivered packet is `last`.
    pub fn new(address: SocketAddr, last: PacketMeta) -> Self {
        StreamSource {
            address,
            reference: last,
            last_delivered_ns: last.arrival_ns,
            reference_media_ns: 0,
            last_transit_ns: last.arrival_ns,
            jitter_ns: 0.0,
            runs: Vec::new(),
            previous: None,
            comeback: Vec::new(),
        }
    }

    /// The transport address the stream is bound to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Whether RTCP from `from` speaks for this stream (see [`is_rtcp_source`]).
    pub fn is_rtcp_source(&self, from: SocketAddr) -> bool {
        is_rtcp_source(self.address, from)
    }

    /// Packets held aside now (in runs, or of the sequence before a restart): at most
    /// `(3 + 1) × 8`.
    pub fn held_packets(&self) -> usize {
        self.runs.iter().map(Vec::len).sum::<usize>() + self.comeback.len()
    }

    /// Arrival of the last packet delivered: held or foreign packets do not keep a stream
    /// alive.
    pub fn last_delivered_ns(&self) -> i64 {
        self.last_delivered_ns
    }

    /// Judge a packet of this stream's SSRC that arrived from `from`. Packets to play are
    /// handed to `deliver(datagram, arrival_ns, restart)` in order — held packets first
    /// when a jump is confirmed, the first of them with `restart` set: the stream's
    /// playout must start a new sequence there.
    pub fn check(
        &mut self,
        p: &PacketMeta,
        from: SocketAddr,
        datagram: &[u8],
        counters: &mut SourceCounters,
        deliver: &mut impl FnMut(&[u8], i64, bool),
    ) {
        if from != self.address {
            counters.wrong_source += 1;
            return;
        }
        let jitter = self.jitter_ns as i64;
        if relation(&self.reference, p, jitter) == Relation::Follows {
            self.accept(p);
            deliver(datagram, p.arrival_ns, false);
            if !self.runs.is_empty() || !self.comeback.is_empty() {
                self.settle_held(counters, deliver);
            }
            return;
        }
        if let Some(prev) = self.previous {
            let newer = p.seq.wrapping_sub(prev.seq) as i16 > 0;
            if newer && relation(&prev, p, jitter) == Relation::Follows {
                self.come_back(p, datagram, counters, deliver);
                return;
            }
        }
        self.hold(p, datagram, counters, deliver);
    }

    /// `p` continues the sequence the stream had before its last restart, beyond where it
    /// had got: once MIN_SEQUENTIAL such packets came, that sequence is the stream again.
    fn come_back(
        &mut self,
        p: &PacketMeta,
        datagram: &[u8],
        counters: &mut SourceCounters,
        deliver: &mut impl FnMut(&[u8], i64, bool),
    ) {
        counters.held_aside += 1;
        if self.comeback.len() == MAX_HELD {
            self.comeback.remove(0);
            counters.jumps_rejected += 1;
        }
        self.comeback.push(Held {
            meta: *p,
            datagram: datagram.to_vec(),
        });
        if self.comeback.len() >= MIN_SEQUENTIAL {
            let held = std::mem::take(&mut self.comeback);
            self.previous = None;
            self.take_run(held, true, counters, deliver);
        }
    }

    fn accept(&mut self, p: &PacketMeta) {
        let dt = p.ts.wrapping_sub(self.reference.ts) as i32 as i64;
        let media_ns = self.reference_media_ns + frames_to_ns(dt);
        // A.8: D = difference of the transit times of packets consecutive in arrival
        let transit = p.arrival_ns - media_ns;
        let d = (transit - self.last_transit_ns).abs() as f64;
        self.jitter_ns += (d - self.jitter_ns) / 16.0;
        self.last_transit_ns = transit;
        if p.seq.wrapping_sub(self.reference.seq) as i16 > 0 {
            self.reference = *p;
            self.reference_media_ns = media_ns;
        }
        self.last_delivered_ns = self.last_delivered_ns.max(p.arrival_ns);
    }

    /// A jump is followed: `p` starts a new sequence (its transit too).
    fn rebase(&mut self, p: &PacketMeta) {
        self.reference = *p;
        self.reference_media_ns = 0;
        self.last_transit_ns = p.arrival_ns;
        self.last_delivered_ns = self.last_delivered_ns.max(p.arrival_ns);
    }

    /// A packet followed while packets were held: those that now follow too are delivered
    /// (they were reordered), the rest were a jump the stream did not take.
    fn settle_held(&mut self, counters: &mut SourceCounters, deliver: &mut impl FnMut(&[u8], i64, bool)) {
        let comeback = std::mem::take(&mut self.comeback);
        for h in std::mem::take(&mut self.runs)
            .into_iter()
            .flatten()
            .chain(comeback)
        {
            if relation(&self.reference, &h.meta, self.jitter_ns as i64) == Relation::Follows {
                self.accept(&h.meta);
                deliver(&h.datagram, h.meta.arrival_ns, false);
            } else {
                counters.jumps_rejected += 1;
            }
        }
    }

    fn hold(
        &mut self,
        p: &PacketMeta,
        datagram: &[u8],
        counters: &mut SourceCounters,
        deliver: &mut impl FnMut(&[u8], i64, bool),
    ) {
        counters.held_aside += 1;
        let jitter = self.jitter_ns as i64;
        // the run it continues (a run may itself lose or reorder packets), or a new one
        let i = match self.runs.iter().position(|run| {
            run.last()
                .is_some_and(|last| relation(&last.meta, p, jitter) == Relation::Follows)
        }) {
            Some(i) => i,
            None => {
                if self.runs.len() == MAX_RUNS {
                    let stale = (0..self.runs.len())
                        .min_by_key(|&k| self.runs[k].last().map_or(i64::MIN, |h| h.meta.arrival_ns))
                        .unwrap_or(0);
                    counters.jumps_rejected += self.runs.remove(stale).len() as u64;
                }
                self.runs.push(Vec::new());
                self.runs.len() - 1
            }
        };
        let run = &mut self.runs[i];
        if run.len() == MAX_HELD {
            run.remove(0);
            counters.jumps_rejected += 1;
        }
        run.push(Held {
            meta: *p,
            datagram: datagram.to_vec(),
        });
        // The stream's own sequence must have been silent for as long as MIN_SEQUENTIAL
        // packets take to arrive, paced as audio — that many frames (of the longer of the
        // two frame sizes), less 2 ms — and four times its jitter more (a late packet of a
        // jittery stream leaves a gap). On a clean path a real restart is confirmed by its
        // second packet; an attacker must fit its run into a gap of the stream.
        let frame_ns = frames_to_ns(self.reference.duration.max(run[0].meta.duration) as i64);
        let quiet_ns = p.arrival_ns - self.last_delivered_ns;
        let needed_ns = MIN_SEQUENTIAL as i64 * frame_ns - CONFIRM_SLACK_NS + 4 * jitter;
        if run.len() >= MIN_SEQUENTIAL && quiet_ns >= needed_ns {
            self.confirm(i, counters, deliver);
        }
    }

    /// Run `i` of held packets goes on and the stream's own sequence has stopped: the run
    /// becomes the stream.
    fn confirm(
        &mut self,
        i: usize,
        counters: &mut SourceCounters,
        deliver: &mut impl FnMut(&[u8], i64, bool),
    ) {
        let held = self.runs.swap_remove(i);
        let restart = match relation(&self.reference, &held[0].meta, self.jitter_ns as i64) {
            Relation::Follows => false,
            Relation::Ahead(ns) => ns > RESTART_AHEAD_NS,
            Relation::Jump => true,
        };
        if restart {
            self.previous = Some(self.reference);
            counters.jumps_rejected += self.comeback.len() as u64;
            self.comeback.clear();
        }
        self.take_run(held, restart, counters, deliver);
    }

    /// Deliver a run of held packets as the stream from now on (restarting it there, or
    /// not); the other runs are dropped.
    fn take_run(
        &mut self,
        held: Vec<Held>,
        restart: bool,
        counters: &mut SourceCounters,
        deliver: &mut impl FnMut(&[u8], i64, bool),
    ) {
        counters.jumps_rejected += self.runs.drain(..).map(|r| r.len()).sum::<usize>() as u64;
        if restart {
            counters.restarts += 1;
            self.rebase(&held[0].meta);
        }
        for (k, h) in held.iter().enumerate() {
            if k > 0 || !restart {
                self.accept(&h.meta);
            }
            deliver(&h.datagram, h.meta.arrival_ns, restart && k == 0);
        }
    }
}

/// One SSRC from one address on probation: its packets so far, in sequence.
#[derive(Debug)]
struct Candidate {
    packets: Vec<Held>,
    /// When it entered the table (a serial number), to tell it from an older candidate of
    /// the same SSRC and address in [`Probation::order`].
    serial: u64,
}

/// An SSRC that completed probation: bind it with `source`, then deliver `earlier` (oldest
/// first) and the packet that completed it.
#[derive(Debug)]
pub struct Admission {
    pub source: StreamSource,
    pub earlier: Vec<Held>,
}

type Key = (u32, SocketAddr);

/// New SSRCs on probation, in a table of bounded size (see the module doc). Finding the
/// candidate to push out is O(log n): candidates are queued per address and overall, and
/// addresses ranked by how many they hold.
#[derive(Debug)]
pub struct Probation {
    candidates: HashMap<Key, Candidate>,
    capacity: usize,
    /// Each address's candidates, oldest first.
    by_address: HashMap<SocketAddr, VecDeque<u32>>,
    /// (candidates held, address), for the busiest address.
    ranking: BTreeSet<(usize, SocketAddr)>,
    /// Every candidate in the order it entered, with its serial; entries of candidates
    /// gone since are skipped (and compacted away).
    order: VecDeque<(Key, u64)>,
    serial: u64,
}

impl Probation {
    /// A table of at most `capacity` candidates (each holds up to [`MIN_SEQUENTIAL`] − 1
    /// datagrams).
    pub fn new(capacity: usize) -> Self {
        Probation {
            candidates: HashMap::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            by_address: HashMap::new(),
            ranking: BTreeSet::new(),
            order: VecDeque::new(),
            serial: 0,
        }
    }

    /// Candidates now on probation.
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Packets waiting in probation now.
    pub fn waiting_packets(&self) -> usize {
        self.candidates.values().map(|c| c.packets.len()).sum()
    }

    /// Whether RTCP from `from` may speak for `ssrc` while it is on probation (its first
    /// sender report usually comes between its first two packets).
    pub fn is_rtcp_source(&self, ssrc: u32, from: SocketAddr) -> bool {
        let mut prev = from;
        prev.set_port(from.port().wrapping_sub(1));
        self.candidates.contains_key(&(ssrc, from))
            || (from.port() > 0 && self.candidates.contains_key(&(ssrc, prev)))
    }

    /// A packet of an SSRC that has no stream, from `from`. Returns the admission when it
    /// completes probation.
    pub fn offer(
        &mut self,
        p: &PacketMeta,
        from: SocketAddr,
        datagram: &[u8],
        counters: &mut SourceCounters,
    ) -> Option<Admission> {
        let key = (p.ssrc, from);
        if let Some(c) = self.candidates.get_mut(&key) {
            if !c.packets.iter().all(|h| in_sequence(&h.meta, p)) {
                counters.unvalidated += c.packets.len() as u64;
                c.packets.clear();
            } else if run_length(&c.packets, p) >= MIN_SEQUENTIAL {
                let earlier = self.remove(key).map(|c| c.packets).unwrap_or_default();
                let mut source = StreamSource::new(from, earlier.first().map_or(*p, |h| h.meta));
                for h in &earlier {
                    source.accept(&h.meta);
                }
                source.accept(p);
                return Some(Admission { source, earlier });
            } else if c.packets.len() == MAX_HELD {
                c.packets.remove(0);
                counters.unvalidated += 1;
            }
            c.packets.push(Held {
                meta: *p,
                datagram: datagram.to_vec(),
            });
            return None;
        }
        if self.candidates.len() >= self.capacity {
            self.make_room(counters);
        }
        self.insert(key, *p, datagram);
        None
    }

    fn insert(&mut self, key: Key, p: PacketMeta, datagram: &[u8]) {
        self.serial += 1;
        let held = Held {
            meta: p,
            datagram: datagram.to_vec(),
        };
        self.candidates.insert(
            key,
            Candidate {
                packets: vec![held],
                serial: self.serial,
            },
        );
        let queue = self.by_address.entry(key.1).or_default();
        self.ranking.remove(&(queue.len(), key.1));
        queue.push_back(key.0);
        self.ranking.insert((queue.len(), key.1));
        self.order.push_back((key, self.serial));
        if self.order.len() > 2 * self.capacity + 16 {
            let live = &self.candidates;
            self.order
                .retain(|(k, serial)| live.get(k).is_some_and(|c| c.serial == *serial));
        }
    }

    fn remove(&mut self, key: Key) -> Option<Candidate> {
        let c = self.candidates.remove(&key)?;
        if let Some(queue) = self.by_address.get_mut(&key.1) {
            self.ranking.remove(&(queue.len(), key.1));
            queue.retain(|&ssrc| ssrc != key.0);
            if queue.is_empty() {
                self.by_address.remove(&key.1);
            } else {
                self.ranking.insert((queue.len(), key.1));
            }
        }
        Some(c)
    }

    /// The table is full: the address holding the most candidates gives up its oldest; if
    /// every address holds one, the oldest candidate of all goes.
    fn make_room(&mut self, counters: &mut SourceCounters) {
        let busiest = self.ranking.last().copied();
        let victim = match busiest {
            Some((n, address)) if n > 1 => self
                .by_address
                .get(&address)
                .and_then(|q| q.front())
                .map(|&ssrc| (ssrc, address)),
            _ => loop {
                let Some((key, serial)) = self.order.pop_front() else {
                    break None;
                };
                if self.candidates.get(&key).is_some_and(|c| c.serial == serial) {
                    break Some(key);
                }
            },
        };
        if let Some(c) = victim.and_then(|k| self.remove(k)) {
            counters.unvalidated += c.packets.len() as u64;
            counters.probation_evicted += 1;
        }
    }
}

/// Whether two packets of a candidate belong to one sequence, in whatever order they
/// arrived: sequence numbers apart by 1 to 8, timestamps apart by 2.5 to 120 ms per step in
/// the same direction, and arrival times apart by the same as their media, within 250 ms
/// either way (a flood cycling through SSRCs comes back to one much later).
fn in_sequence(q: &PacketMeta, p: &PacketMeta) -> bool {
    let ds = p.seq.wrapping_sub(q.seq) as i16 as i64;
    let dt = p.ts.wrapping_sub(q.ts) as i32 as i64;
    if ds == 0 || ds.abs() > MAX_HELD as i64 {
        return false;
    }
    let direction = ds.signum();
    let (steps, media) = (ds * direction, dt * direction);
    if media < steps * MIN_STEP_SAMPLES || media > steps * MAX_STEP_SAMPLES {
        return false;
    }
    let arrival = (p.arrival_ns - q.arrival_ns) * direction;
    (arrival - frames_to_ns(media)).abs() <= PROBATION_LAG_NS
}

/// The longest run of consecutive sequence numbers among `held` and `p`.
fn run_length(held: &[Held], p: &PacketMeta) -> usize {
    let mut offsets: Vec<i64> = held
        .iter()
        .map(|h| h.meta.seq.wrapping_sub(p.seq) as i16 as i64)
        .collect();
    offsets.push(0);
    offsets.sort_unstable();
    offsets.dedup();
    let (mut best, mut run) = (1, 1);
    for w in offsets.windows(2) {
        run = if w[1] == w[0] + 1 { run + 1 } else { 1 };
        best = best.max(run);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u32 = 480;
    const FRAME_NS: i64 = 10_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn meta(ssrc: u32, seq: u16, ts: u32, arrival_ns: i64) -> PacketMeta {
        PacketMeta {
            ssrc,
            seq,
            ts,
            duration: FRAME,
            arrival_ns,
        }
    }

    /// A datagram that names its packet, so tests can see what was delivered.
    fn bytes(p: &PacketMeta) -> Vec<u8> {
        let mut d = p.seq.to_be_bytes().to_vec();
        d.extend_from_slice(&p.ts.to_be_bytes());
        d
    }

    /// Drives one stream; records deliveries as (seq, ts, arrival, restart).
    struct Bench {
        source: StreamSource,
        counters: SourceCounters,
        delivered: Vec<(u16, u32, i64, bool)>,
    }

    impl Bench {
        /// A stream from 10.0.0.1:5000 whose packet (seq 100, ts 1000) arrived at t = 0.
        fn new() -> Self {
            Bench {
                source: StreamSource::new(addr("10.0.0.1:5000"), meta(1, 100, 1000, 0)),
                counters: SourceCounters::default(),
                delivered: vec![],
            }
        }

        fn send_from(&mut self, from: &str, p: PacketMeta) {
            let d = bytes(&p);
            let delivered = &mut self.delivered;
            self.source
                .check(&p, addr(from), &d, &mut self.counters, &mut |dg, at, restart| {
                    let seq = u16::from_be_bytes([dg[0], dg[1]]);
                    let ts = u32::from_be_bytes([dg[2], dg[3], dg[4], dg[5]]);
                    delivered.push((seq, ts, at, restart));
                });
        }

        fn send(&mut self, p: PacketMeta) {
            self.send_from("10.0.0.1:5000", p)
        }

        /// The legitimate packet `k` frames after the first (seq 100, ts 1000, t = 0).
        fn legit(&mut self, k: i64) {
            self.send(meta(1, 100 + k as u16, 1000 + (k as u32) * FRAME, k * FRAME_NS));
        }

        fn seqs(&self) -> Vec<u16> {
            self.delivered.iter().map(|d| d.0).collect()
        }
    }

    #[test]
    fn a_stream_in_sequence_is_delivered_as_it_comes() {
        let mut b = Bench::new();
        for k in 1..50 {
            b.legit(k);
        }
        assert_eq!(b.seqs(), (101..150).collect::<Vec<_>>());
        assert_eq!(b.counters, SourceCounters::default());
    }

    #[test]
    fn reordering_duplicates_loss_and_silence_follow() {
        let mut b = Bench::new();
        b.legit(2);
        b.legit(1); // reordered
        b.legit(2); // duplicate
        b.legit(8); // 5 lost
                    // a silence (DTX): the next talkspurt 3 s later, sequence number + 1
        b.send(meta(
            1,
            109,
            1000 + 8 * FRAME + 144_000,
            8 * FRAME_NS + 3_000_000_000,
        ));
        // a stall of 2 s, then a burst of everything queued behind it
        for k in 0..4 {
            b.send(meta(
                1,
                110 + k,
                1000 + 8 * FRAME + 144_000 + (k as u32 + 1) * FRAME,
                5_100_000_000,
            ));
        }
        assert_eq!(b.seqs(), vec![102, 101, 102, 108, 109, 110, 111, 112, 113]);
        assert_eq!(b.counters, SourceCounters::default());
    }

    #[test]
    fn packets_from_another_address_are_counted_and_dropped() {
        let mut b = Bench::new();
        b.send_from("10.0.0.2:5000", meta(1, 101, 1000 + FRAME, FRAME_NS));
        b.send_from("10.0.0.1:5001", meta(1, 101, 1000 + FRAME, FRAME_NS));
        b.legit(1);
        assert_eq!(b.seqs(), vec![101]);
        assert_eq!(b.counters.wrong_source, 2);
    }

    #[test]
    fn a_lone_timestamp_jump_is_held_then_dropped() {
        for jump in [480_000u32, 864_000_000, 0u32.wrapping_sub(480_000)] {
            let mut b = Bench::new();
            b.legit(1);
            // +10 s, +5 h, -10 s: same address, the next sequence number
            b.send(meta(1, 102, 1000 + 2 * FRAME + jump, 15_000_000));
            b.legit(2);
            b.legit(3);
            assert_eq!(b.seqs(), vec![101, 102, 103], "jump {jump}");
            assert_eq!(b.counters.held_aside, 1);
            assert_eq!(b.counters.jumps_rejected, 1);
            assert_eq!(b.counters.restarts, 0);
        }
    }

    #[test]
    fn sequence_jumps_and_jumped_pairs_are_not_followed_while_the_stream_sends() {
        let mut b = Bench::new();
        let mut attacks = 0;
        for k in 1..200i64 {
            b.legit(k);
            if k % 10 == 0 {
                // +1000, timestamp as the sender's
                let s = 100 + k as u16;
                b.send(meta(
                    1,
                    s + 1000,
                    1000 + k as u32 * FRAME,
                    k * FRAME_NS + 3_000_000,
                ));
                attacks += 1;
            }
            if k % 50 == 25 {
                // a pair at +30000, back to back, consistent with each other
                let s = (100 + k as u16).wrapping_add(30_000);
                let t = 7 + k * FRAME_NS;
                b.send(meta(1, s, 99, t));
                b.send(meta(1, s + 1, 99 + FRAME, t + 100_000));
                attacks += 2;
            }
        }
        assert_eq!(b.seqs(), (101..300).collect::<Vec<_>>());
        assert_eq!(b.counters.held_aside, attacks);
        assert_eq!(b.counters.jumps_rejected, attacks);
        assert_eq!(b.counters.restarts, 0);
    }

    #[test]
    fn a_sender_restart_resumes_one_frame_later() {
        let mut b = Bench::new();
        for k in 1..10 {
            b.legit(k);
        }
        // new sequence and timestamp bases, the same SSRC and address, on the same pacing
        for k in 10..20i64 {
            let j = (k - 10) as u16;
            b.send(meta(1, 40_000 + j, 7_777_777 + j as u32 * FRAME, k * FRAME_NS));
        }
        let restarted: Vec<_> = b.delivered[9..].to_vec();
        assert_eq!(restarted.len(), 10, "every packet after the restart plays");
        // the first is delivered (with its own arrival time) once the second confirms it
        assert_eq!(restarted[0], (40_000, 7_777_777, 10 * FRAME_NS, true));
        assert!(restarted[1..].iter().all(|d| !d.3));
        assert_eq!(b.counters.restarts, 1);
        assert_eq!(b.counters.jumps_rejected, 0);
    }

    #[test]
    fn a_timestamp_jump_after_a_pause_resumes() {
        let mut b = Bench::new();
        for k in 1..10 {
            b.legit(k);
        }
        // 1 s pause, then the sequence goes on but the timestamp jumped 5 h
        let t0 = 9 * FRAME_NS + 1_000_000_000;
        let ts0 = 1000 + 10 * FRAME + 864_000_000;
        for j in 0..5u16 {
            b.send(meta(1, 110 + j, ts0 + j as u32 * FRAME, t0 + j as i64 * FRAME_NS));
        }
        assert_eq!(b.seqs()[9..], [110, 111, 112, 113, 114]);
        assert!(b.delivered[9].3, "the playout restarts at the jump");
        assert_eq!(b.counters.restarts, 1);
        // a timestamp that advanced with the pause is no jump at all
        let mut b = Bench::new();
        b.send(meta(1, 101, 1000 + 48_000 + FRAME, 1_000_000_000));
        assert_eq!(
            b.delivered,
            vec![(101, 1000 + 48_000 + FRAME, 1_000_000_000, false)]
        );
    }

    #[test]
    fn packets_reordered_by_jitter_all_play() {
        let mut b = Bench::new();
        // each packet delayed 0..60 ms (a fixed pseudo-random pattern), delivered in
        // arrival order
        let mut arrivals: Vec<(i64, i64)> = (1..300i64)
            .map(|k| (k * FRAME_NS + (k * 7919 % 61) * 1_000_000, k))
            .collect();
        arrivals.sort();
        for (at, k) in arrivals {
            b.send(meta(1, 100 + k as u16, 1000 + k as u32 * FRAME, at));
        }
        let mut seqs = b.seqs();
        seqs.sort();
        assert_eq!(seqs, (101..400).collect::<Vec<_>>());
        assert_eq!(b.counters.jumps_rejected, 0);
        assert_eq!(b.counters.restarts, 0);
    }

    #[test]
    fn a_sender_that_stalled_takes_its_stream_back_at_once() {
        let mut b = Bench::new();
        for k in 1..10 {
            b.legit(k);
        }
        // the sender stalls 300 ms; a forged pair in the silence is taken for a restart
        b.send(meta(1, 30_000, 5, 150_000_000));
        b.send(meta(1, 30_001, 5 + FRAME, 160_000_000));
        assert_eq!(b.counters.restarts, 1);
        // the sender goes on where it was: its second packet takes the stream back
        for k in 10..40 {
            b.send(meta(
                1,
                100 + k as u16,
                1000 + k as u32 * FRAME,
                390_000_000 + k * 1_000_000,
            ));
        }
        assert_eq!(b.counters.restarts, 2);
        let legit: Vec<u16> = b.seqs().into_iter().filter(|&s| s < 30_000).collect();
        assert_eq!(legit, (101..140).collect::<Vec<_>>());
        assert!(
            b.delivered.iter().any(|d| d.0 == 110 && d.3),
            "restarted back at 110"
        );
    }

    #[test]
    fn rtcp_comes_from_the_rtp_address_or_its_next_port() {
        let rtp = addr("10.0.0.1:5000");
        assert!(is_rtcp_source(rtp, addr("10.0.0.1:5000")));
        assert!(is_rtcp_source(rtp, addr("10.0.0.1:5001")));
        assert!(!is_rtcp_source(rtp, addr("10.0.0.1:4999")));
        assert!(!is_rtcp_source(rtp, addr("10.0.0.2:5001")));
        assert!(is_rtcp_source(
            addr("[::ffff:10.0.0.1]:5000"),
            addr("10.0.0.1:5001")
        ));
        assert!(!is_rtcp_source(addr("10.0.0.1:65535"), addr("10.0.0.1:0")));
    }

    fn offer(p: &mut Probation, c: &mut SourceCounters, from: &str, m: PacketMeta) -> Option<Admission> {
        p.offer(&m, addr(from), &bytes(&m), c)
    }

    #[test]
    fn two_packets_in_sequence_admit_a_new_ssrc_and_both_play() {
        let (mut p, mut c) = (Probation::new(8), SourceCounters::default());
        assert!(offer(&mut p, &mut c, "10.0.0.1:5000", meta(7, 10, 500, 0)).is_none());
        let a = offer(
            &mut p,
            &mut c,
            "10.0.0.1:5000",
            meta(7, 11, 500 + FRAME, FRAME_NS),
        )
        .unwrap();
        assert_eq!(a.earlier.len(), 1);
        assert_eq!(a.earlier[0].meta, meta(7, 10, 500, 0));
        assert_eq!(a.earlier[0].datagram, bytes(&meta(7, 10, 500, 0)));
        assert_eq!(a.source.address(), addr("10.0.0.1:5000"));
        assert!(p.is_empty());
        assert_eq!(c, SourceCounters::default());
        // the stream follows on from the second packet
        let mut s = a.source;
        let mut got = vec![];
        let m = meta(7, 12, 500 + 2 * FRAME, 2 * FRAME_NS);
        s.check(&m, addr("10.0.0.1:5000"), &bytes(&m), &mut c, &mut |_, at, _| {
            got.push(at)
        });
        assert_eq!(got, vec![2 * FRAME_NS]);
    }

    #[test]
    fn probation_takes_its_packets_in_any_order() {
        let (mut p, mut c) = (Probation::new(8), SourceCounters::default());
        let m = |k: u16, at_ms: i64| meta(7, 10 + k, 500 + k as u32 * FRAME, at_ms * 1_000_000);
        assert!(offer(&mut p, &mut c, "10.0.0.1:5000", m(3, 31)).is_none());
        assert!(offer(&mut p, &mut c, "10.0.0.1:5000", m(1, 33)).is_none());
        let a = offer(&mut p, &mut c, "10.0.0.1:5000", m(2, 35)).unwrap();
        let earlier: Vec<u16> = a.earlier.iter().map(|h| h.meta.seq).collect();
        assert_eq!(earlier, vec![13, 11]);
        assert_eq!(c, SourceCounters::default());
    }

    #[test]
    fn one_off_and_inconsistent_packets_never_qualify() {
        let (mut p, mut c) = (Probation::new(64), SourceCounters::default());
        let mut x = 0x1234_5678u32;
        let mut rand = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let from = "10.0.0.9:4000";
        for i in 0..10_000i64 {
            // random SSRC from a small set, random sequence number and timestamp
            let m = meta(rand() % 8, rand() as u16, rand(), i * 100_000);
            assert!(offer(&mut p, &mut c, from, m).is_none());
        }
        // in sequence but the timestamp does not advance, or jumps ahead of the clock,
        // or lags it by a second
        for (k, &(dts, dt_ns)) in [(0u32, FRAME_NS), (48_000, FRAME_NS), (FRAME, 1_000_000_000)]
            .iter()
            .enumerate()
        {
            let ssrc = 100 + k as u32;
            assert!(offer(&mut p, &mut c, from, meta(ssrc, 1, 0, 2_000_000_000)).is_none());
            assert!(offer(&mut p, &mut c, from, meta(ssrc, 2, dts, 2_000_000_000 + dt_ns)).is_none());
        }
        // the same SSRC from two addresses: two candidates, neither continues the other
        assert!(offer(&mut p, &mut c, "10.0.0.1:1", meta(5, 1, 0, 3_000_000_000)).is_none());
        assert!(offer(&mut p, &mut c, "10.0.0.2:1", meta(5, 2, FRAME, 3_010_000_000)).is_none());
        assert!(c.unvalidated > 9_000, "{c:?}");
    }

    #[test]
    fn a_flooding_address_pushes_out_only_its_own_candidates() {
        let (mut p, mut c) = (Probation::new(16), SourceCounters::default());
        assert!(offer(&mut p, &mut c, "10.0.0.1:5000", meta(1, 10, 0, 0)).is_none());
        // 10,000 SSRCs from one address within the frame
        for i in 0..10_000u32 {
            let m = meta(1000 + i, i as u16, i, 1_000 * i as i64);
            assert!(offer(&mut p, &mut c, "10.6.6.6:666", m).is_none());
        }
        assert_eq!(p.len(), 16);
        assert_eq!(c.probation_evicted, 10_000 - 15);
        assert_eq!(c.unvalidated, 10_000 - 15);
        // the real sender's second packet still finds its first
        let a = offer(&mut p, &mut c, "10.0.0.1:5000", meta(1, 11, FRAME, FRAME_NS));
        assert!(a.is_some_and(|a| a.earlier.len() == 1));
        // a candidate silent for a second gives way before anyone else
        let (mut p, mut c) = (Probation::new(2), SourceCounters::default());
        assert!(offer(&mut p, &mut c, "10.0.0.1:5000", meta(1, 10, 0, 0)).is_none());
        assert!(offer(&mut p, &mut c, "10.0.0.2:5000", meta(2, 10, 0, 1_500_000_000)).is_none());
        assert!(offer(&mut p, &mut c, "10.0.0.2:5000", meta(3, 10, 0, 1_500_000_000)).is_none());
        assert!(!p.is_rtcp_source(1, addr("10.0.0.1:5000")));
        assert!(p.is_rtcp_source(2, addr("10.0.0.2:5001")));
        assert_eq!(c.probation_evicted, 1);
    }
}
