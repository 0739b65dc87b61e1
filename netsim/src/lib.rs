//! patchcord-netsim: a seeded, deterministic network impairment model.
//!
//! Used two ways:
//! - in-process by deterministic simulation tests: [`Impairment`] is sans-IO — the caller
//!   passes the time (nanoseconds, `i64`, any origin) to every call, nothing reads a clock,
//!   and only caller-chosen packet ids are stored (the caller keeps the payloads);
//! - by the `patchcord-impair` UDP proxy, so the real sender and receiver can run across an
//!   impaired path on loopback (RTP impaired, RTCP on port + 1 passed through).
//!
//! ```
//! use patchcord_netsim::{named_profile, Fate, Impairment, Profile};
//!
//! let profile = Profile::parse("jitter20,loss=2%,dup=1%").unwrap();
//! let mut path = Impairment::new(profile, 42);
//! let mut now = 0i64;
//! for id in 0..100u64 {
//!     match path.submit(id, now) {
//!         Fate::Dropped => { /* the receiver must count this one as lost */ }
//!         Fate::Delivered { copies } => { /* 1 or 2 copies will come out of poll */ let _ = copies; }
//!     }
//!     now += 20_000_000; // one packet every 20 ms
//!     while let Some((id, at)) = path.poll(now) {
//!         // hand packet `id` to the receiver at time `at`
//!         let _ = (id, at);
//!     }
//! }
//! assert!(named_profile("bursty").is_some());
//! ```
//!
//! # The model
//!
//! For each submitted packet, in this order (each aspect from its own random stream):
//! 1. **loss** — none, independent random (`loss=P`), or Gilbert–Elliott (`ge=…`, `burst=…`);
//! 2. **delay** = max(0, base delay + jitter), jitter normal (truncated at 3σ) or uniform;
//! 3. **spike** — with probability P, plus a Pareto(scale, shape) extra delay, capped;
//! 4. **reorder** — with probability P, plus an extra delay (fixed, or N smoothed packet
//!    intervals) *outside* the fifo queue, so that later packets overtake it;
//! 5. **fifo** (default on) — the other packets never overtake each other: a packet's
//!    delivery time is at least that of the previous one, as in a real queue where jitter
//!    comes from queueing (a spike holds back the packets behind it, which then arrive in
//!    a burst). `fifo=off` makes every delay independent, so jitter alone reorders;
//! 6. **duplicate** — with probability P, a second copy `GAP` after the first.
//!
//! Delivery times are final when [`Impairment::submit_detailed`] returns, so a test knows
//! exactly what the path did to each packet. See [`PROFILE_SYNTAX`] for the text syntax
//! and [`named_profile`] for the named profiles.
//!
//! # Determinism
//!
//! Random numbers come from ChaCha8 (`rand_chacha`), one stream per aspect, keyed by the
//! seed. Distributions use only IEEE-754 basic arithmetic and `sqrt` (our own `ln`/`exp`,
//! not the platform libm, whose last bits differ between systems), so the same seed and the
//! same submissions give bit-identical fates and delivery times on every machine.
//!
//! # Why not `str0m-netem` (evaluated: version 0.4.0, its full source read)
//!
//! `str0m-netem` is a small (~1500 lines), clean sans-IO netem for str0m's own tests. It
//! has seeded random loss (with correlation), Gilbert–Elliott loss (p, r, h, k — the same
//! four parameters as here), delay with uniform jitter (with correlation), duplication,
//! every-Nth-packet reordering and a rate-limited link with tail drop. It was not used,
//! because what this project needs most is missing or different:
//!
//! - **No per-packet report.** `handle_input(Input::Packet(..))` returns `()`: a drop is
//!   silent, there is no counter of drops, duplicates or reorders, and a packet's delivery
//!   time is never reported (it just comes out of `poll_output` when the caller's clock has
//!   passed it). Tests that assert "receiver counters == exactly what the impairment did"
//!   would have to reconstruct all of it by diffing inputs against outputs.
//! - **Jitter does not behave as configured.** Its queue is ordered by an insertion index
//!   *before* the send time (`Ord for QueuedPacket` compares `packet_index` first), so a
//!   packet with a long jitter draw holds back every later one (head-of-line blocking) and
//!   the delay distribution is skewed: measured with `latency=50ms, jitter=20ms` and one
//!   packet per ms, 0 of 2000 packets were reordered and the mean delay was 63.5 ms, not
//!   50 ms. Here fifo behaviour is an explicit, documented choice with a switch.
//! - **Reordering is deterministic every Nth packet** (`reorder_gap`), not probabilistic,
//!   and the reordered packet only swaps with its predecessor.
//! - **No heavy-tailed delay spikes.** Jitter is uniform only.
//! - **Time is `std::time::Instant`**, not a plain integer; Instants can only be made from
//!   the real clock plus offsets, and `poll_timeout()` calls `Instant::now()` when idle, so
//!   the library does read the clock.
//! - **It stores the payload** (`Netem<T: Clone + AsRef<[u8]>>`, cloned on duplication)
//!   and its README calls it an internal crate of str0m (no stability promise). It also
//!   brings `str0m-proto` with `serde`, `time` and others into the dependency tree.
//!
//! Wrapping it would have meant keeping its loss model and replacing the queue, the
//! jitter, the reordering and the reporting — nearly everything — so this crate has its own
//! model (same Gilbert–Elliott parameterisation; no code taken from it).

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod model;
mod profile;
mod rng;

pub use model::{Decision, Delivery, Fate, ImpairStats, Impairment};
pub use profile::{
    fmt_duration, named_profile, named_profiles, parse_duration, parse_probability, profile_names, Duplicate,
    Jitter, Loss, Profile, Reorder, ReorderExtra, Spike, DEFAULT_REORDER_INTERVALS, DEFAULT_SPIKE_MAX_SCALES,
    DEFAULT_SPIKE_SHAPE, MAX_PROFILE_DURATION, NORMAL_JITTER_LIMIT_SIGMAS, PROFILE_SYNTAX,
};
