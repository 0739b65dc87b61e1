//! The capture side: the cpal input callback. It only copies frames into the sample ring,
//! measures their level on the way (peak, energy, clips: the capture meter), notes when
//! they were captured, and wakes the encoder thread. No allocation, no lock, no logging,
//! bounded time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::Thread;

use cpal::InputCallbackInfo;
use patchcord_common::level::{Levels, SharedLevels};
use patchcord_devices::clock::HostClock;

/// When capture frame `frame_index` was captured, by the host clock (Unix ns).
#[derive(Debug, Clone, Copy, Default)]
pub struct CaptureMark {
    pub frame_index: u64,
    pub capture_unix_ns: i64,
}

/// Counters shared between the audio thread, the encoder thread and the control thread.
#[derive(Default)]
pub struct CaptureCounters {
    pub frames_captured: AtomicU64,
    /// Frames dropped because the sample ring was full (encoder too slow).
    pub ring_overruns: AtomicU64,
    pub callbacks: AtomicU64,
    pub xruns: AtomicU64,
    /// Levels of what was captured (all of it, also what did not fit in the ring).
    pub levels: SharedLevels,
}

pub struct CaptureSide {
    pub samples: rtrb::Producer<f32>,
    pub marks: rtrb::Producer<CaptureMark>,
    pub channels: usize,
    pub clock: HostClock,
    pub counters: Arc<CaptureCounters>,
    pub encoder: Thread,
    pub frame_index: u64,
}

impl CaptureSide {
    /// The body of the input callback, for any sample format convertible to f32.
    pub fn on_input<T: Copy>(&mut self, data: &[T], info: &InputCallbackInfo, to_f32: impl Fn(T) -> f32) {
        let now = self.clock.now_unix_ns();
        let ts = info.timestamp();
        let since_capture = ts.callback.saturating_duration_since(ts.capture).as_nanos() as i64;
        let frames = data.len() / self.channels;
        let mark = CaptureMark {
            frame_index: self.frame_index,
            capture_unix_ns: now - since_capture,
        };
        // A full mark ring only means the encoder has not read recent marks: skip one.
        let _ = self.marks.push(mark);
        let want = frames * self.channels;
        let room = self.samples.slots().min(want) / self.channels * self.channels;
        if let Ok(mut chunk) = self.samples.write_chunk_uninit(room) {
            let (a, b) = chunk.as_mut_slices();
            let split = a.len();
            for (dst, src) in a.iter_mut().zip(&data[..split]) {
                dst.write(to_f32(*src));
            }
            for (dst, src) in b.iter_mut().zip(&data[split..room]) {
                dst.write(to_f32(*src));
            }
            // SAFETY: all `room` slots were initialised just above.
            unsafe { chunk.commit_all() };
        }
        // the level of every captured sample, also of those the ring had no room for
        let mut levels = Levels::default();
        let mut block = [0f32; 256];
        for piece in data[..want].chunks(block.len()) {
            for (b, x) in block.iter_mut().zip(piece) {
                *b = to_f32(*x);
            }
            levels.measure(&block[..piece.len()]);
        }
        self.counters.levels.add(&levels);
        if room < want {
            self.counters
                .ring_overruns
                .fetch_add(((want - room) / self.channels) as u64, Ordering::Relaxed);
        }
        self.frame_index += frames as u64;
        self.counters
            .frames_captured
            .fetch_add(frames as u64, Ordering::Relaxed);
        self.counters.callbacks.fetch_add(1, Ordering::Relaxed);
        // Futex wake of a parked thread: wait-free for the caller, never blocks.
        self.encoder.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use assert_no_alloc::{assert_no_alloc, reset_violation_count, violation_count};
    use cpal::{InputStreamTimestamp, StreamInstant};

    /// The capture callback copies into the ring, records marks, counts overruns and wakes
    /// the encoder: none of it may allocate, also when the ring is full.
    #[test]
    fn capture_callback_never_allocates() {
        let (samples, mut consumer) = rtrb::RingBuffer::<f32>::new(48_000);
        let (marks, mut mark_rx) = rtrb::RingBuffer::<CaptureMark>::new(16);
        let counters = Arc::new(CaptureCounters::default());
        let mut side = CaptureSide {
            samples,
            marks,
            channels: 2,
            clock: HostClock::new(),
            counters: counters.clone(),
            encoder: std::thread::current(),
            frame_index: 0,
        };
        let f32_data = vec![0.25f32; 2 * 64];
        let i16_data = vec![1000i16; 2 * 64];
        reset_violation_count();
        for k in 0..2000u64 {
            let t = k * 1_333_333;
            let info = InputCallbackInfo::new(InputStreamTimestamp {
                callback: StreamInstant::from_nanos(t + 1_333_333),
                capture: StreamInstant::from_nanos(t),
            });
            if k % 2 == 0 {
                assert_no_alloc(|| side.on_input(&f32_data, &info, |s| s));
            } else {
                assert_no_alloc(|| side.on_input(&i16_data, &info, |s| s as f32 / 32768.0));
            }
            // the "encoder" drains only the first half of the time: the ring then fills up
            if k < 1000 {
                while consumer.pop().is_ok() {}
                while mark_rx.pop().is_ok() {}
            }
        }
        assert_eq!(violation_count(), 0, "the capture callback allocated");
        // every captured sample was metered, also those that did not fit
        let levels = counters.levels.take();
        assert_eq!(levels.samples, 2000 * 64 * 2);
        assert_eq!(levels.peak, 0.25);
        assert_eq!(levels.clipped, 0);
        let mean_sq = (0.25f64.powi(2) + (1000.0f64 / 32768.0).powi(2)) / 2.0;
        assert!((levels.rms_dbfs() - 10.0 * mean_sq.log10()).abs() < 0.01);
        assert_eq!(counters.frames_captured.load(Ordering::Relaxed), 2000 * 64);
        // 1000 callbacks of 64 frames into a 24000-frame ring: 40000 frames did not fit
        assert_eq!(counters.ring_overruns.load(Ordering::Relaxed), 1000 * 64 - 24_000);
    }
}
