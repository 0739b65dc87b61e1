//! The process callback: JACK's per-port `f32` buffers in and out of the interleaved buffer
//! cpal callbacks take, with the stream's timestamps; and the notifications (xrun, server
//! shutdown, sample-rate change) that go to cpal's error callback.
//!
//! The callback allocates nothing, takes no lock and never blocks: the interleaving buffer
//! is allocated for [`MAX_FRAMES`] frames when the stream is built, the ports' slices are
//! gathered in fixed arrays of [`MAX_CHANNELS`], and its only shared state is atomics. A
//! cycle longer than [`MAX_FRAMES`] (the server's period changed to more) is not passed
//! to the data callback: the output plays silence, and the cycle is counted
//! ([`Shared::oversized_cycles`]); the period change itself is reported once, from JACK's
//! buffer-size notification. [`Capture::run`] and [`Playback::run`], the parts that
//! touch the audio, are proven allocation-free by this file's tests.
//!
//! # Timestamps
//!
//! Every instant is JACK's microsecond clock (`jack_get_time`) in nanoseconds, one
//! monotonic origin for the stream and its `now()`. From the cycle start `s` JACK gives
//! (`jack_get_cycle_times`; `jack_get_time` if it cannot), `f` the frames since the cycle
//! started and `L` the largest latency JACK gives our ports in the stream's direction:
//! `callback = s + f`, `capture = s − L` (the first frame of the buffer reached the graph's
//! source port `L` before the cycle started), `playback = s + L` (it leaves the graph's
//! sink port `L` after). Port latencies are measured from the cycle start, hence `s`, not
//! `callback`. A port connected straight to another client has `L = 0`: that client reads
//! the frames in the same cycle.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cpal::{
    Data, Error, ErrorKind, InputCallbackInfo, InputStreamTimestamp, OutputCallbackInfo,
    OutputStreamTimestamp, SampleFormat, StreamInstant,
};
use jack::{AudioIn, AudioOut, Client, Control, Frames, LatencyType, Port, ProcessScope};

use super::{MAX_CHANNELS, MAX_FRAMES};

const MAX_PORTS: usize = MAX_CHANNELS as usize;

/// State shared by a stream handle and its callbacks.
#[derive(Debug, Default)]
pub struct Shared {
    playing: AtomicBool,
    oversized: AtomicU64,
}

impl Shared {
    /// Start or stop calling the data callback.
    pub fn set_playing(&self, playing: bool) {
        self.playing.store(playing, Ordering::Release);
    }

    fn playing(&self) -> bool {
        self.playing.load(Ordering::Acquire)
    }

    /// Cycles longer than [`MAX_FRAMES`], played as silence.
    pub fn oversized_cycles(&self) -> u64 {
        self.oversized.load(Ordering::Relaxed)
    }

    fn count_oversized(&self) {
        self.oversized.fetch_add(1, Ordering::Relaxed);
    }
}

/// cpal's error callback, called from JACK's notification thread.
pub type ErrorSink = Arc<Mutex<Box<dyn FnMut(Error) + Send>>>;

/// Wrap an error callback.
pub fn error_sink<E: FnMut(Error) + Send + 'static>(callback: E) -> ErrorSink {
    Arc::new(Mutex::new(Box::new(callback)))
}

fn report(sink: &ErrorSink, error: Error) {
    let mut callback = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    callback(error);
}

/// `frames` at `rate` in nanoseconds.
fn frames_ns(frames: Frames, rate: u32) -> u64 {
    u64::from(frames) * 1_000_000_000 / u64::from(rate.max(1))
}

/// One cycle's times, in ns of JACK's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CycleTimes {
    /// Start of the cycle.
    pub start_ns: u64,
    /// When the callback runs.
    pub callback_ns: u64,
    /// The largest latency of the stream's ports in its direction, ns.
    pub latency_ns: u64,
}

impl CycleTimes {
    /// From the cycle start in µs, the frames since it started and the port latency.
    pub fn new(start_us: u64, since_start: Frames, latency: Frames, rate: u32) -> Self {
        let start_ns = start_us.saturating_mul(1000);
        Self {
            start_ns,
            callback_ns: start_ns + frames_ns(since_start, rate),
            latency_ns: frames_ns(latency, rate),
        }
    }

    fn of<PS>(client: &Client, ps: &ProcessScope, ports: &[Port<PS>], kind: LatencyType, rate: u32) -> Self {
        let start_us = ps
            .cycle_times()
            .map_or_else(|_| client.time(), |t| t.current_usecs);
        let latency = ports
            .iter()
            .map(|p| p.get_latency_range(kind).1)
            .max()
            .unwrap_or(0);
        Self::new(start_us, ps.frames_since_cycle_start(), latency, rate)
    }

    /// The input timestamp: capture = start − latency.
    pub fn input(&self) -> InputStreamTimestamp {
        InputStreamTimestamp {
            callback: StreamInstant::from_nanos(self.callback_ns),
            capture: StreamInstant::from_nanos(self.start_ns.saturating_sub(self.latency_ns)),
        }
    }

    /// The output timestamp: playback = start + latency.
    pub fn output(&self) -> OutputStreamTimestamp {
        OutputStreamTimestamp {
            callback: StreamInstant::from_nanos(self.callback_ns),
            playback: StreamInstant::from_nanos(self.start_ns + self.latency_ns),
        }
    }
}

/// Interleaves capture ports into the buffer the input callback reads.
pub struct Capture<D> {
    buffer: Vec<f32>,
    channels: usize,
    callback: D,
}

impl<D: FnMut(&Data, &InputCallbackInfo) + Send + 'static> Capture<D> {
    /// Preallocates [`MAX_FRAMES`] frames of `channels` channels.
    pub fn new(channels: usize, callback: D) -> Self {
        Self {
            buffer: vec![0.0; MAX_FRAMES * channels],
            channels,
            callback,
        }
    }

    /// One cycle of `frames` frames from `ports` (one per channel). Returns false, without
    /// calling back, when the cycle is longer than [`MAX_FRAMES`].
    pub fn run(&mut self, ports: &[&[f32]], frames: usize, times: &CycleTimes) -> bool {
        if frames > MAX_FRAMES {
            return false;
        }
        let samples = &mut self.buffer[..frames * self.channels];
        for (ch, port) in ports.iter().enumerate().take(self.channels) {
            for (frame, x) in samples.chunks_exact_mut(self.channels).zip(port.iter()) {
                frame[ch] = *x;
            }
        }
        // SAFETY: the pointer and length describe `samples`, initialised f32s of
        // `self.buffer`, not otherwise accessed while `data` lives.
        let data = unsafe { Data::from_parts(samples.as_mut_ptr().cast(), samples.len(), SampleFormat::F32) };
        (self.callback)(&data, &InputCallbackInfo::new(times.input()));
        true
    }
}

/// De-interleaves what the output callback wrote into the playback ports.
pub struct Playback<D> {
    buffer: Vec<f32>,
    channels: usize,
    callback: D,
}

impl<D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static> Playback<D> {
    /// Preallocates [`MAX_FRAMES`] frames of `channels` channels.
    pub fn new(channels: usize, callback: D) -> Self {
        Self {
            buffer: vec![0.0; MAX_FRAMES * channels],
            channels,
            callback,
        }
    }

    /// One cycle of `frames` frames into `ports` (one per channel). A cycle longer than
    /// [`MAX_FRAMES`] is silence, and returns false.
    pub fn run(&mut self, ports: &mut [&mut [f32]], frames: usize, times: &CycleTimes) -> bool {
        if frames > MAX_FRAMES {
            silence(ports);
            return false;
        }
        let samples = &mut self.buffer[..frames * self.channels];
        samples.fill(0.0);
        // SAFETY: as in `Capture::run`; `samples` is exclusively borrowed by `data`.
        let mut data =
            unsafe { Data::from_parts(samples.as_mut_ptr().cast(), samples.len(), SampleFormat::F32) };
        (self.callback)(&mut data, &OutputCallbackInfo::new(times.output()));
        for (ch, port) in ports.iter_mut().enumerate().take(self.channels) {
            for (x, frame) in port.iter_mut().zip(samples.chunks_exact(self.channels)) {
                *x = frame[ch];
            }
        }
        true
    }
}

fn silence(ports: &mut [&mut [f32]]) {
    for p in ports {
        p.fill(0.0);
    }
}

/// The process handler of an input stream.
pub struct InputProcess<D> {
    pub ports: Vec<Port<AudioIn>>,
    pub capture: Capture<D>,
    pub shared: Arc<Shared>,
    pub rate: u32,
    pub errors: ErrorSink,
}

impl<D: FnMut(&Data, &InputCallbackInfo) + Send + 'static> jack::ProcessHandler for InputProcess<D> {
    fn process(&mut self, client: &Client, ps: &ProcessScope) -> Control {
        if !self.shared.playing() {
            return Control::Continue;
        }
        let times = CycleTimes::of(client, ps, &self.ports, LatencyType::Capture, self.rate);
        let mut slices: [&[f32]; MAX_PORTS] = [&[]; MAX_PORTS];
        for (s, p) in slices.iter_mut().zip(&self.ports) {
            *s = p.as_slice(ps);
        }
        let n = self.ports.len();
        if !self.capture.run(&slices[..n], ps.n_frames() as usize, &times) {
            self.shared.count_oversized();
        }
        Control::Continue
    }

    fn buffer_size(&mut self, _: &Client, size: Frames) -> Control {
        check_buffer_size(&self.errors, size);
        Control::Continue
    }
}

/// The process handler of an output stream.
pub struct OutputProcess<D> {
    pub ports: Vec<Port<AudioOut>>,
    pub playback: Playback<D>,
    pub shared: Arc<Shared>,
    pub rate: u32,
    pub errors: ErrorSink,
}

impl<D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static> jack::ProcessHandler for OutputProcess<D> {
    fn process(&mut self, client: &Client, ps: &ProcessScope) -> Control {
        let times = CycleTimes::of(client, ps, &self.ports, LatencyType::Playback, self.rate);
        let n = self.ports.len();
        let mut slices: [&mut [f32]; MAX_PORTS] = Default::default();
        for (s, p) in slices.iter_mut().zip(self.ports.iter_mut()) {
            *s = p.as_mut_slice(ps);
        }
        let ports = &mut slices[..n];
        if !self.shared.playing() {
            silence(ports);
        } else if !self.playback.run(ports, ps.n_frames() as usize, &times) {
            self.shared.count_oversized();
        }
        Control::Continue
    }

    fn buffer_size(&mut self, _: &Client, size: Frames) -> Control {
        check_buffer_size(&self.errors, size);
        Control::Continue
    }
}

/// JACK's buffer-size callback is not real-time: it may report (and so format a message).
fn check_buffer_size(errors: &ErrorSink, size: Frames) {
    if size as usize > MAX_FRAMES {
        report(
            errors,
            Error::with_message(
                ErrorKind::UnsupportedConfig,
                format!("the JACK period changed to {size} frames; patchcord handles up to {MAX_FRAMES}: it plays silence"),
            ),
        );
    }
}

/// JACK's notifications, on its notification thread.
pub struct Notifications {
    pub errors: ErrorSink,
    pub rate: u32,
}

impl jack::NotificationHandler for Notifications {
    unsafe fn shutdown(&mut self, _status: jack::ClientStatus, reason: &str) {
        report(
            &self.errors,
            Error::with_message(
                ErrorKind::StreamInvalidated,
                format!("the JACK server shut down: {reason}"),
            ),
        );
    }

    fn sample_rate(&mut self, _: &Client, rate: Frames) -> Control {
        if rate == self.rate {
            return Control::Continue;
        }
        report(
            &self.errors,
            Error::with_message(
                ErrorKind::StreamInvalidated,
                format!("the JACK server changed its sample rate to {rate} Hz"),
            ),
        );
        Control::Quit
    }

    fn xrun(&mut self, _: &Client) -> Control {
        report(&self.errors, ErrorKind::Xrun.into());
        Control::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count};

    #[test]
    fn timestamps_use_the_port_latency_and_nothing_else() {
        // cycle start 1 s, 48 frames into the cycle, 64 frames of latency, 48 kHz
        let t = CycleTimes::new(1_000_000, 48, 64, 48_000);
        assert_eq!(t.callback_ns, 1_001_000_000);
        let i = t.input();
        assert_eq!(i.capture.as_nanos(), 1_000_000_000 - 1_333_333);
        assert_eq!(i.callback.as_nanos(), 1_001_000_000);
        let o = t.output();
        assert_eq!(o.playback.as_nanos(), 1_000_000_000 + 1_333_333);
        // no latency: the frames are at the port at the cycle start, no period added
        let t = CycleTimes::new(1_000_000, 0, 0, 48_000);
        assert_eq!(t.output().playback.as_nanos(), 1_000_000_000);
        assert_eq!(t.input().capture.as_nanos(), 1_000_000_000);
    }

    /// Both directions, through period changes up to and past [`MAX_FRAMES`]: the audio
    /// comes out in the right channels, and nothing in the callback path allocates.
    #[test]
    fn interleaving_is_right_and_never_allocates() {
        let left: Vec<f32> = (0..MAX_FRAMES + 64).map(|i| i as f32).collect();
        let right: Vec<f32> = left.iter().map(|x| -x).collect();
        // the last frame the input callback saw: (samples, left, right)
        let seen = Arc::new(Mutex::new((0usize, 0.0f32, 0.0f32)));
        let sink = Arc::clone(&seen);
        let mut capture = Capture::new(2, move |data: &Data, _: &InputCallbackInfo| {
            if let (Some(s), Ok(mut seen)) = (data.as_slice::<f32>(), sink.lock()) {
                *seen = (s.len(), s[s.len() - 2], s[s.len() - 1]);
            }
        });
        let mut playback = Playback::new(2, |data: &mut Data, _: &OutputCallbackInfo| {
            if let Some(s) = data.as_slice_mut::<f32>() {
                for (i, frame) in s.chunks_exact_mut(2).enumerate() {
                    frame[0] = i as f32;
                    frame[1] = 0.5;
                }
            }
        });
        let mut out_l = vec![9.0f32; MAX_FRAMES + 64];
        let mut out_r = vec![9.0f32; MAX_FRAMES + 64];
        let times = CycleTimes::new(5, 0, 0, 48_000);
        reset_violation_count();
        for frames in [64, 128, 32, MAX_FRAMES, MAX_FRAMES + 64] {
            let ok = assert_no_alloc(|| capture.run(&[&left[..frames], &right[..frames]], frames, &times));
            assert_eq!(ok, frames <= MAX_FRAMES);
            if ok {
                let last = (frames - 1) as f32;
                assert_eq!(*seen.lock().unwrap(), (2 * frames, last, -last));
            }
            let ok = assert_no_alloc(|| {
                let mut ports: [&mut [f32]; 2] = [&mut out_l[..frames], &mut out_r[..frames]];
                playback.run(&mut ports, frames, &times)
            });
            assert_eq!(ok, frames <= MAX_FRAMES);
            let (l, r) = if ok {
                ((frames - 1) as f32, 0.5)
            } else {
                (0.0, 0.0)
            };
            assert_eq!((out_l[frames - 1], out_r[frames - 1]), (l, r), "{frames} frames");
        }
        assert_eq!(violation_count(), 0, "the JACK process path allocated");
    }
}
