//! The sample clock that drives every virtual stream (see the module docs of
//! [`mod@crate::virtual_host`] for the timing model).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Condvar, Mutex, MutexGuard, OnceLock,
    },
    time::{Duration, Instant},
};

use cpal::{Error, ErrorKind, StreamInstant};

use super::SAMPLE_RATE;

/// A late wake-up beyond this is reported as an xrun and the clock is re-anchored.
pub const XRUN_THRESHOLD: Duration = Duration::from_millis(50);

/// The clock thread sleeps until this close to a deadline, then spins for the rest.
const SPIN_WINDOW: Duration = Duration::from_micros(100);

const NANOS_PER_SEC: f64 = 1e9;

/// Effective frame rate of a virtual device whose crystal is off by `clock_ppm`.
///
/// `R = 48000 * (1 + clock_ppm * 1e-6)`: +1000 ppm gives 48048 frames per second.
pub fn effective_rate(clock_ppm: f64) -> f64 {
    f64::from(SAMPLE_RATE) * (1.0 + clock_ppm * 1e-6)
}

/// The linear map from frame index to nominal time used by virtual streams.
///
/// Times are nanoseconds relative to the stream origin (the `Instant` when the stream was
/// built); they may be negative only transiently after a re-anchor very close to the origin.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockModel {
    /// Effective frame rate `R` in frames per second.
    pub rate: f64,
    /// Nominal time of frame 0, in nanoseconds since the stream origin.
    pub t0_ns: i128,
}

impl ClockModel {
    /// A clock at `rate` frames per second whose frame 0 is at `t0_ns`.
    pub fn new(rate: f64, t0_ns: i128) -> Self {
        Self { rate, t0_ns }
    }

    /// Duration of `frames` frames at this clock's rate, rounded to the nanosecond.
    pub fn frames_to_ns(&self, frames: u64) -> i128 {
        // f64 keeps sub-nanosecond precision for many hours of frames.
        (frames as f64 * NANOS_PER_SEC / self.rate).round() as i128
    }

    /// Nominal time of frame `n`: `t0 + n / R`.
    pub fn nominal_ns(&self, n: u64) -> i128 {
        self.t0_ns + self.frames_to_ns(n)
    }

    /// Move `t0` so that the nominal time of `frame` is `at_ns`.
    pub fn anchor(&mut self, frame: u64, at_ns: i128) {
        self.t0_ns = at_ns - self.frames_to_ns(frame);
    }
}

/// Nanoseconds from `origin` to `t` (`t` is never before `origin` in practice).
pub fn ns_since(origin: Instant, t: Instant) -> i128 {
    t.saturating_duration_since(origin).as_nanos() as i128
}

/// Convert nanoseconds since the stream origin into a [`StreamInstant`] (clamped at zero).
pub fn stream_instant(ns: i128) -> StreamInstant {
    let ns = u128::try_from(ns).unwrap_or(0);
    let secs = (ns / 1_000_000_000) as u64;
    let nanos = (ns % 1_000_000_000) as u32;
    StreamInstant::new(secs, nanos)
}

/// `StreamInstant` of the wall-clock instant `t`, relative to `origin`.
pub fn stream_instant_of(origin: Instant, t: Instant) -> StreamInstant {
    stream_instant(ns_since(origin, t))
}

fn instant_at(origin: Instant, ns: i128) -> Instant {
    let ns = u64::try_from(ns).unwrap_or(0);
    origin + Duration::from_nanos(ns)
}

/// Play/pause/exit state shared between a stream handle and its clock thread.
#[derive(Debug, Default)]
struct Control {
    playing: bool,
    exit: bool,
    /// Set by `play()`: the instant at which the next frame must be nominally due.
    resume_at: Option<Instant>,
}

/// The error callback of a stream, shared by its clock thread and (for `wav:` outputs) its
/// writer thread. Only locked on error paths.
#[derive(Clone)]
pub struct ErrorSink(Arc<Mutex<BoxedErrorCallback>>);

type BoxedErrorCallback = Box<dyn FnMut(Error) + Send>;

impl ErrorSink {
    pub fn new<E: FnMut(Error) + Send + 'static>(callback: E) -> Self {
        Self(Arc::new(Mutex::new(Box::new(callback))))
    }

    pub fn report(&self, error: Error) {
        let mut cb = self.0.lock().unwrap_or_else(|p| p.into_inner());
        (cb)(error);
    }
}

/// State shared between a [`super::VirtualStream`] and its threads.
pub struct StreamShared {
    origin: Instant,
    control: Mutex<Control>,
    wake: Condvar,
    started_at: OnceLock<Instant>,
    frames: AtomicU64,
    xruns: AtomicU64,
    dropped_frames: AtomicU64,
}

impl StreamShared {
    pub fn new(origin: Instant) -> Self {
        Self {
            origin,
            control: Mutex::new(Control::default()),
            wake: Condvar::new(),
            started_at: OnceLock::new(),
            frames: AtomicU64::new(0),
            xruns: AtomicU64::new(0),
            dropped_frames: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn origin(&self) -> Instant {
        self.origin
    }

    pub fn started_at(&self) -> Option<Instant> {
        self.started_at.get().copied()
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }

    pub fn xruns(&self) -> u64 {
        self.xruns.load(Ordering::Relaxed)
    }

    pub fn dropped_frames(&self) -> u64 {
        self.dropped_frames.load(Ordering::Relaxed)
    }

    pub fn add_dropped_frames(&self, n: u64) -> u64 {
        self.dropped_frames.fetch_add(n, Ordering::Relaxed) + n
    }

    pub fn is_playing(&self) -> bool {
        self.lock().playing
    }

    pub fn play(&self) {
        let mut c = self.lock();
        if !c.playing && !c.exit {
            let now = Instant::now();
            c.playing = true;
            c.resume_at = Some(now);
            let _ = self.started_at.set(now);
        }
        drop(c);
        self.wake.notify_all();
    }

    pub fn pause(&self) {
        let mut c = self.lock();
        c.playing = false;
        drop(c);
        self.wake.notify_all();
    }

    pub fn request_exit(&self) {
        let mut c = self.lock();
        c.exit = true;
        c.playing = false;
        drop(c);
        self.wake.notify_all();
    }

    /// Block while paused. Returns `None` on exit, otherwise the pending resume instant (if
    /// `play()` was called since the last check).
    fn wait_playing(&self) -> Option<Option<Instant>> {
        let mut c = self.lock();
        loop {
            if c.exit {
                return None;
            }
            if c.playing {
                return Some(c.resume_at.take());
            }
            c = self.wake.wait(c).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Sleep until `deadline` (coarse sleep, then a short spin). Returns false if the stream was
    /// paused, resumed or asked to exit meanwhile.
    fn sleep_until(&self, deadline: Instant) -> bool {
        loop {
            let now = Instant::now();
            if now >= deadline {
                return true;
            }
            let remaining = deadline - now;
            if remaining > SPIN_WINDOW {
                let c = self.lock();
                if c.exit || !c.playing || c.resume_at.is_some() {
                    return false;
                }
                let (c, _) = self
                    .wake
                    .wait_timeout(c, remaining - SPIN_WINDOW)
                    .unwrap_or_else(|p| p.into_inner());
                drop(c);
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// What the clock thread does for each period.
pub trait Tick: Send + 'static {
    /// Process the buffer covering frames `[n, n + P)`. `start_ns`/`end_ns` are the nominal
    /// times of frames `n` and `n + P` (ns since the stream origin).
    fn tick(&mut self, n: u64, start_ns: i128, end_ns: i128);
}

/// Static parameters of a clock thread.
#[derive(Clone, Copy, Debug)]
pub struct ClockConfig {
    pub period: u32,
    pub rate: f64,
    /// Input buffers are delivered when their last frame is due; output buffers when their
    /// first frame is due.
    pub is_input: bool,
}

/// Body of a stream's clock thread. Returns when the stream asks it to exit.
pub fn run_clock<T: Tick>(
    shared: &StreamShared,
    cfg: ClockConfig,
    mut ticker: T,
    errors: &ErrorSink,
    label: &str,
) {
    let origin = shared.origin;
    let period = u64::from(cfg.period);
    let mut model = ClockModel::new(cfg.rate, 0);
    let mut n: u64 = 0;
    loop {
        match shared.wait_playing() {
            None => return,
            Some(Some(resume)) => model.anchor(n, ns_since(origin, resume)),
            Some(None) => {}
        }
        let event_frame = if cfg.is_input { n + period } else { n };
        let due = instant_at(origin, model.nominal_ns(event_frame));
        if !shared.sleep_until(due) {
            continue;
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(due);
        if late > XRUN_THRESHOLD {
            let count = shared.xruns.fetch_add(1, Ordering::Relaxed) + 1;
            errors.report(Error::with_message(
                ErrorKind::Xrun,
                format!(
                    "virtual device '{label}': clock thread woke up {:.1} ms late; \
                     clock resynchronised (xrun #{count})",
                    late.as_secs_f64() * 1e3
                ),
            ));
            model.anchor(event_frame, ns_since(origin, now));
        }
        ticker.tick(n, model.nominal_ns(n), model.nominal_ns(n + period));
        n += period;
        shared.frames.store(n, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nominal_time_is_linear_in_frames() {
        let m = ClockModel::new(48_000.0, 5_000);
        assert_eq!(m.nominal_ns(0), 5_000);
        assert_eq!(m.nominal_ns(48_000), 1_000_005_000);
        assert_eq!(m.nominal_ns(64), 5_000 + 1_333_333);
        // Many hours in: still exact to the nanosecond.
        let n = 48_000u64 * 3600 * 10;
        assert_eq!(m.nominal_ns(n), 5_000 + 36_000_000_000_000);
    }

    #[test]
    fn ppm_changes_the_rate() {
        let fast = ClockModel::new(effective_rate(1000.0), 0);
        assert!((effective_rate(1000.0) - 48_048.0).abs() < 1e-9);
        // 48048 frames take exactly one second on a +1000 ppm clock.
        assert_eq!(fast.nominal_ns(48_048), 1_000_000_000);
        let slow = ClockModel::new(effective_rate(-500.0), 0);
        assert_eq!(slow.nominal_ns(47_976), 1_000_000_000);
    }

    #[test]
    fn anchor_moves_t0() {
        let mut m = ClockModel::new(48_000.0, 0);
        m.anchor(48_000, 3_000_000_000);
        assert_eq!(m.t0_ns, 2_000_000_000);
        assert_eq!(m.nominal_ns(96_000), 4_000_000_000);
    }

    #[test]
    fn stream_instant_conversion() {
        assert_eq!(stream_instant(-5), StreamInstant::ZERO);
        assert_eq!(stream_instant(1_500_000_001), StreamInstant::new(1, 500_000_001));
    }
}
