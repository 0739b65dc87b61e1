//! Rendering ahead of the output callback (`--render-ahead N`).
//!
//! By default the output callback renders (decodes and mixes every stream) just in time.
//! With `--render-ahead N` a render thread does that work instead, keeping N device periods
//! of mixed audio in a ring buffer; the device callback only copies them out. The callback
//! then takes microseconds whatever the number of streams, so it can never make a shared
//! audio server (JACK) miss its deadline, and the render thread may take up to N periods for
//! one block without a glitch: scheduling spikes are absorbed, not heard. The cost is N
//! periods of latency, which the receiver reports like any other (the playback time of every
//! rendered frame is known).
//!
//! Timing: the callback sends, every period, its output frame number, its frame count and
//! the host-clock instant the device plays that frame. The render thread numbers the frames
//! it renders in the same device frames, so the playback instant of any rendered frame is
//! the last callback's instant plus the frames in between. Decisions (which packet plays,
//! the delay measurement) are taken when the frame is rendered, so packets must arrive N
//! periods before they play; the adaptive buffer measures that by itself, a fixed latency
//! must allow for it.
//!
//! With N = 1 the render thread has one period minus its wake-up time for each block: no
//! more slack than rendering in the callback. N = 2 absorbs a stall of the render thread of
//! up to a period; measured on the test VM with both cores busy, the render thread (SCHED_FIFO)
//! was once not scheduled for 8 ms, and N = 1 at 5.3 ms periods played 256 frames of silence.
//!
//! When the render thread falls behind, the callback plays silence for the frames it lacks
//! and counts them (`render_underrun_frames`). The frames rendered for that time are
//! dropped by the callback when they arrive, so a ring frame always plays at the device
//! frame it was rendered for: every stream keeps its delay, and the audio of those frames
//! is lost, as in a device underrun. The render thread never renumbers.
//!
//! Real-time rules hold on both sides: neither the callback nor a render step allocates,
//! locks or blocks (tested in `output.rs`); the callback wakes the render thread with
//! `Thread::unpark`, which does not block.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use cpal::OutputCallbackInfo;
use patchcord_common::time::frames_to_ns;
use patchcord_devices::clock::HostClock;

use crate::output::{playback_delay_ns, OutputSide};

/// Longest block the render thread renders at once (frames), and so the largest ring.
pub const MAX_BLOCK_FRAMES: usize = 8192;
/// Most periods `--render-ahead` accepts.
pub const MAX_AHEAD_PERIODS: u32 = 8;

/// What the callback tells the render thread after each period.
#[derive(Clone, Copy, Debug)]
pub struct Tick {
    /// Device frame number of this callback's first frame.
    pub out_frame: u64,
    pub frames: u32,
    /// Host-clock instant (Unix ns) the callback started.
    pub callback_unix_ns: i64,
    /// Host-clock instant (Unix ns) the device plays `out_frame`.
    pub playback_unix_ns: i64,
    /// Frames played as silence because nothing was rendered (cumulative).
    pub underrun_frames: u64,
    /// Ticks and durations the callback could not queue (cumulative).
    pub queue_full: u64,
}

/// The ring between the render thread and the device callback: N + 1 blocks. Every page
/// of it is written once here, so neither thread takes a page fault on it later.
pub fn ring(channels: usize, ahead_periods: u32) -> (rtrb::Producer<f32>, rtrb::Consumer<f32>) {
    let frames = MAX_BLOCK_FRAMES * (ahead_periods.clamp(1, MAX_AHEAD_PERIODS) as usize + 1);
    let (mut tx, mut rx) = rtrb::RingBuffer::new(frames * channels.max(1));
    let n = tx.slots();
    if let Ok(mut chunk) = tx.write_chunk(n) {
        let (a, b) = chunk.as_mut_slices();
        a.fill(0.0);
        b.fill(0.0);
        chunk.commit_all();
    }
    if let Ok(chunk) = rx.read_chunk(n) {
        chunk.commit_all();
    }
    (tx, rx)
}

/// The device callback with `--render-ahead`: copies rendered frames out of the ring.
pub struct RingOutput {
    ring: rtrb::Consumer<f32>,
    ticks: rtrb::Producer<Tick>,
    durations: rtrb::Producer<u32>,
    worker: Option<Thread>,
    clock: HostClock,
    channels: usize,
    /// Device frame number of the next callback's first frame.
    out_frame: u64,
    /// Frame number of the next frame in the ring.
    ring_frame: u64,
    pub underrun_frames: u64,
    /// Ticks or durations that found their queue full (counted, never blocking; reported
    /// as `callback_queue_full` with the next tick that gets through).
    pub queue_full: u64,
}

impl RingOutput {
    pub fn new(
        ring: rtrb::Consumer<f32>,
        ticks: rtrb::Producer<Tick>,
        durations: rtrb::Producer<u32>,
        worker: Option<Thread>,
        channels: usize,
        clock: HostClock,
    ) -> Self {
        RingOutput {
            ring,
            ticks,
            durations,
            worker,
            clock,
            channels: channels.max(1),
            out_frame: 0,
            ring_frame: 0,
            underrun_frames: 0,
            queue_full: 0,
        }
    }

    /// Copy the frames for device frames `[device_frame, device_frame + out.len() / ch)`
    /// from the ring, as many as are there; returns the samples written (the caller fills
    /// the rest with silence). Frames whose time has passed (the render thread was late)
    /// are dropped first, so a ring frame always plays at the device frame it was rendered
    /// for.
    fn take(&mut self, out: &mut [f32], device_frame: u64) -> usize {
        let ch = self.channels;
        if self.ring_frame < device_frame {
            let stale = ((device_frame - self.ring_frame) as usize).min(self.ring.slots() / ch);
            if let Ok(chunk) = self.ring.read_chunk(stale * ch) {
                chunk.commit_all();
                self.ring_frame += stale as u64;
            }
        }
        if self.ring_frame != device_frame {
            return 0; // still behind: nothing for this part
        }
        let n = (self.ring.slots() / ch * ch).min(out.len() / ch * ch);
        match self.ring.read_chunk(n) {
            Ok(chunk) => {
                let (a, b) = chunk.as_slices();
                out[..a.len()].copy_from_slice(a);
                out[a.len()..a.len() + b.len()].copy_from_slice(b);
                chunk.commit_all();
            }
            Err(_) => return 0,
        }
        self.ring_frame += (n / ch) as u64;
        n
    }

    pub fn on_output_f32(&mut self, out: &mut [f32], info: &OutputCallbackInfo) {
        let started = Instant::now();
        let n = self.take(out, self.out_frame);
        out[n..].fill(0.0);
        self.finish(out.len(), n, info, started);
    }

    pub fn on_output_i16(&mut self, out: &mut [i16], info: &OutputCallbackInfo) {
        let started = Instant::now();
        let mut buf = [0f32; 256];
        let chunk_len = buf.len() / self.channels * self.channels;
        let mut got = 0;
        let mut frame = self.out_frame;
        for o in out.chunks_mut(chunk_len) {
            let len = o.len();
            let n = self.take(&mut buf[..len], frame);
            frame += (len / self.channels) as u64;
            buf[n..len].fill(0.0);
            for (d, s) in o.iter_mut().zip(&buf[..len]) {
                *d = (s.clamp(-1.0, 1.0) * 32767.0) as i16;
            }
            got += n;
        }
        self.finish(out.len(), got, info, started);
    }

    fn finish(&mut self, len: usize, got: usize, info: &OutputCallbackInfo, started: Instant) {
        let frames = len / self.channels;
        self.underrun_frames += ((len - got) / self.channels) as u64;
        let callback_unix_ns = self.clock.unix_ns(started);
        let tick = Tick {
            out_frame: self.out_frame,
            frames: frames as u32,
            callback_unix_ns,
            playback_unix_ns: callback_unix_ns + playback_delay_ns(info),
            underrun_frames: self.underrun_frames,
            queue_full: self.queue_full,
        };
        self.out_frame += frames as u64;
        if self.ticks.push(tick).is_err() {
            self.queue_full += 1;
        }
        if let Some(w) = &self.worker {
            w.unpark();
        }
        let took = started.elapsed().as_nanos().min(u32::MAX as u128) as u32;
        if self.durations.push(took).is_err() {
            self.queue_full += 1;
        }
    }
}

/// The render thread's state: the output side (streams, mixer) and the ring it fills.
pub struct RenderWorker {
    side: OutputSide,
    ring: rtrb::Producer<f32>,
    ticks: rtrb::Consumer<Tick>,
    block: Vec<f32>,
    channels: usize,
    ahead_periods: u32,
    /// The device's period (frames): the largest callback seen (a guess before the first).
    /// Devices may vary their callback size; the ring must cover the largest.
    period_frames: usize,
    /// Device frame number of the next frame to render.
    next_frame: u64,
    last_tick: Option<Tick>,
}

impl RenderWorker {
    /// `period_guess`: frames per callback until the first callback says.
    pub fn new(
        side: OutputSide,
        ring: rtrb::Producer<f32>,
        ticks: rtrb::Consumer<Tick>,
        ahead_periods: u32,
        period_guess: usize,
    ) -> Self {
        let channels = side.channels.max(1);
        RenderWorker {
            side,
            ring,
            ticks,
            block: patchcord_common::mem::resident_vec(MAX_BLOCK_FRAMES * channels, 0.0),
            channels,
            ahead_periods: ahead_periods.clamp(1, MAX_AHEAD_PERIODS),
            period_frames: period_guess.max(1),
            next_frame: 0,
            last_tick: None,
        }
    }

    #[cfg(test)]
    pub fn side(&self) -> &OutputSide {
        &self.side
    }

    /// One round: take the callback's news, then render until the ring holds
    /// `ahead_periods` periods. Returns false once the callback side is gone.
    /// Allocation-free and non-blocking.
    pub fn step(&mut self) -> bool {
        while let Ok(t) = self.ticks.pop() {
            // frames the device played as silence: the callback drops what we rendered for
            // them when it arrives, so our numbering stays the device's
            self.side.render_underrun_frames = t.underrun_frames;
            let frames = (t.frames as usize).max(1);
            // the guess counts until the first callback; then the largest seen
            self.period_frames = match self.last_tick {
                Some(_) => self.period_frames.max(frames),
                None => frames,
            };
            self.side.callback_queue_full = t.queue_full;
            self.last_tick = Some(t);
        }
        if self.ring.is_abandoned() {
            return false;
        }
        let ch = self.channels;
        let capacity = self.ring.buffer().capacity();
        let want = (self.ahead_periods as usize * self.period_frames * ch).min(capacity);
        // blocks of one period (a callback longer than the block buffer: in pieces)
        let block_frames = self.period_frames.min(MAX_BLOCK_FRAMES);
        loop {
            let free = self.ring.slots();
            let filled = capacity - free;
            let n = block_frames * ch;
            if filled >= want || free < n {
                return true;
            }
            // The block is due when the callback N periods before it runs: the playout takes
            // that as its time, so the render thread's wake-up jitter does not enter the
            // delay measurement (measured: it made the adaptive rate wander by 20 samples
            // in half a second). When the thread runs early (start, catching up), the actual
            // time: packets that have not arrived cannot be counted as there.
            let actual = self.side.clock.now_unix_ns();
            let (now, playback) = match self.last_tick {
                Some(t) => {
                    let from_tick = |frame: i64| frames_to_ns(frame - t.out_frame as i64);
                    let due =
                        self.next_frame as i64 - (self.ahead_periods as usize * self.period_frames) as i64;
                    (
                        actual.min(t.callback_unix_ns + from_tick(due)),
                        Some(t.playback_unix_ns + from_tick(self.next_frame as i64)),
                    )
                }
                // unknown before the device's first callback
                None => (actual, None),
            };
            self.side.out_frame = self.next_frame;
            self.side.render(&mut self.block[..n], now, playback);
            let Ok(mut chunk) = self.ring.write_chunk(n) else {
                return true;
            };
            let (a, b) = chunk.as_mut_slices();
            let split = a.len();
            a.copy_from_slice(&self.block[..split]);
            b.copy_from_slice(&self.block[split..n]);
            chunk.commit_all();
            self.next_frame += block_frames as u64;
        }
    }

    /// The render thread: renders whenever the callback has taken audio (woken by it), or
    /// every millisecond, until the callback side is gone or `stop` is set.
    pub fn run(mut self, stop: Arc<AtomicBool>) {
        while !stop.load(Ordering::Relaxed) && self.step() {
            std::thread::park_timeout(Duration::from_millis(1));
        }
    }
}

/// A running render thread.
pub struct RenderThread {
    handle: JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl RenderThread {
    /// It ends only when stopped, or by a panic: then nothing plays any more.
    pub fn has_died(&self) -> bool {
        self.handle.is_finished()
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.thread().unpark();
        let _ = self.handle.join();
    }
}

/// Render `side` `ahead_periods` device periods ahead: renders the first periods now,
/// starts the render thread (real-time priority unless `realtime` is false), and returns
/// the device callback, the thread, and the queue of the callback's own durations (ns).
pub fn start(
    side: OutputSide,
    ahead_periods: u32,
    period_guess: usize,
    realtime: bool,
) -> Result<(RingOutput, RenderThread, rtrb::Consumer<u32>), String> {
    let (channels, clock) = (side.channels, side.clock);
    let (ring_tx, ring_rx) = ring(channels, ahead_periods);
    let (tick_tx, tick_rx) = rtrb::RingBuffer::<Tick>::new(1024);
    let (dur_tx, dur_rx) = rtrb::RingBuffer::<u32>::new(1 << 14);
    let mut worker = RenderWorker::new(side, ring_tx, tick_rx, ahead_periods, period_guess);
    worker.step();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_w = stop.clone();
    let handle = std::thread::Builder::new()
        .name("patchcord-render".into())
        .spawn(move || {
            if realtime {
                if let Err(e) = patchcord_devices::realtime::promote_current_thread(period_guess as u32) {
                    patchcord_devices::say!("patchcord-recv: note: render thread: {e}");
                }
            }
            worker.run(stop_w)
        })
        .map_err(|e| format!("cannot start the render thread: {e}"))?;
    let output = RingOutput::new(
        ring_rx,
        tick_tx,
        dur_tx,
        Some(handle.thread().clone()),
        channels,
        clock,
    );
    Ok((output, RenderThread { handle, stop }, dur_rx))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{Control, PacketSlot, Retired, Snapshot, StreamReport};
    use cpal::{OutputStreamTimestamp, StreamInstant};

    /// A render worker and its copying callback around an output side with no streams.
    struct Rig {
        w: RenderWorker,
        cb: RingOutput,
        snap_rx: rtrb::Consumer<Snapshot>,
        dur_rx: rtrb::Consumer<u32>,
    }

    fn rig(channels: usize, ahead: u32, period_guess: usize) -> Rig {
        let (_packet_tx, packets) = rtrb::RingBuffer::<PacketSlot>::new(4);
        let (_control_tx, control) = rtrb::RingBuffer::<Control>::new(4);
        let (retired, _retired_rx) = rtrb::RingBuffer::<Retired>::new(4);
        let (snapshots, snap_rx) = rtrb::RingBuffer::<Snapshot>::new(256);
        let (reports, _report_rx) = rtrb::RingBuffer::<StreamReport>::new(64);
        let clock = HostClock::new();
        let side = OutputSide::new(
            packets, control, retired, snapshots, reports, None, 4, channels, 8192, clock,
        );
        let (ring_tx, ring_rx) = ring(channels, ahead);
        let (tick_tx, tick_rx) = rtrb::RingBuffer::new(16);
        let (dur_tx, dur_rx) = rtrb::RingBuffer::new(16);
        Rig {
            w: RenderWorker::new(side, ring_tx, tick_rx, ahead, period_guess),
            cb: RingOutput::new(ring_rx, tick_tx, dur_tx, None, channels, clock),
            snap_rx,
            dur_rx,
        }
    }

    fn info(frame: u64) -> OutputCallbackInfo {
        let t = frames_to_ns(frame as i64) as u64;
        OutputCallbackInfo::new(OutputStreamTimestamp {
            callback: StreamInstant::from_nanos(t),
            playback: StreamInstant::from_nanos(t + 1_000_000),
        })
    }

    /// The render thread keeps N periods ahead and numbers what it renders in device frames;
    /// after an underrun the callback drops the frames whose time has passed, so what it
    /// plays is always the frame rendered for that device frame.
    /// (That the playback instants it predicts are right is shown end to end: the output
    /// lags the input by exactly the reported latency, `tests/e2e_virtual.rs`.)
    #[test]
    fn renders_ahead_in_device_frames_and_recovers_from_an_underrun() {
        // the guess (480) is wrong: the device asks for 128 frames
        let Rig {
            mut w,
            mut cb,
            mut snap_rx,
            mut dur_rx,
        } = rig(1, 2, 480);
        let mut out = vec![1f32; 128];
        let frames = |rx: &mut rtrb::Consumer<Snapshot>| {
            let mut v = vec![];
            while let Ok(s) = rx.pop() {
                v.push((s.out_frame, s.frames, s.playback_unix_ns));
            }
            v
        };

        assert!(w.step());
        assert_eq!(
            frames(&mut snap_rx)
                .iter()
                .map(|f| (f.0, f.1))
                .collect::<Vec<_>>(),
            [(0, 480), (480, 480)]
        );
        // the callback plays the first 960 frames, 128 at a time; the worker, told the
        // period, keeps 2 × 128 ahead from then on
        let mut f = 0u64;
        for _ in 0..8 {
            cb.on_output_f32(&mut out, &info(f));
            assert!(out.iter().all(|&s| s == 0.0)); // rendered silence, not a stale 1.0
            f += 128;
            assert!(w.step());
        }
        let got = frames(&mut snap_rx);
        assert_eq!(got.first().map(|g| (g.0, g.1)), Some((960, 128)));
        for g in got.windows(2) {
            assert_eq!(g[1].0, g[0].0 + 128);
        }
        // the callback timed itself every period
        assert_eq!(std::iter::from_fn(|| dur_rx.pop().ok()).count(), 8);
        assert_eq!(cb.underrun_frames, 0);
        // queued: 1024 − 8 × 128 = 0 of the first two blocks, + what the steps rendered
        let queued = |cb: &RingOutput| cb.ring.slots() as u64;
        let rendered_to = f + queued(&cb);

        // the render thread stalls: the callback drains the ring, then plays silence
        out.fill(1.0);
        let mut silent = 0u64;
        while queued(&cb) > 0 || silent == 0 {
            let before = cb.underrun_frames;
            cb.on_output_f32(&mut out, &info(f));
            silent += cb.underrun_frames - before;
            f += 128;
        }
        assert_eq!(silent, f - rendered_to);
        assert!(out.iter().all(|&s| s == 0.0));
        assert!(w.step());
        let got = frames(&mut snap_rx);
        // the render thread numbers on where it stopped (its first blocks are stale now)
        assert_eq!(got.first().map(|g| g.0), Some(rendered_to));
        assert_eq!(w.side().render_underrun_frames, silent);
        assert!(
            got.last().is_some_and(|g| g.0 >= f),
            "rendered up to the device's time"
        );
        // the callback drops the stale frames and plays the one rendered for its frame
        let before = cb.underrun_frames;
        cb.on_output_f32(&mut out, &info(f));
        f += 128;
        assert_eq!(
            cb.underrun_frames, before,
            "no silence once the render thread is back"
        );
        assert_eq!(cb.ring_frame, f, "the ring frame played is the device frame");
        for _ in 0..20 {
            assert!(w.step());
            cb.on_output_f32(&mut out, &info(f));
            f += 128;
            assert_eq!(cb.ring_frame, f);
        }
        assert_eq!(cb.underrun_frames, before);

        // the callback side gone: the render thread ends
        drop(cb);
        assert!(!w.step());
    }

    /// A device whose callbacks vary in size (128 and 1000 frames, alternating): the ring
    /// is kept N of the largest ahead, so none finds it short (N = 1, the tightest).
    #[test]
    fn callbacks_of_varying_size_never_find_the_ring_short() {
        let Rig {
            mut w,
            mut cb,
            mut dur_rx,
            ..
        } = rig(2, 1, 128);
        assert!(w.step());
        let mut f = 0;
        let mut after_first_large = 0;
        for k in 0..200 {
            let frames = if k % 2 == 0 { 128 } else { 1000 };
            let mut out = vec![0f32; frames * 2];
            cb.on_output_f32(&mut out, &info(f));
            f += frames as u64;
            // until the first 1000-frame callback, the worker could not know
            if k == 1 {
                after_first_large = cb.underrun_frames;
            }
            assert!(w.step());
            while dur_rx.pop().is_ok() {}
        }
        assert_eq!(cb.underrun_frames, after_first_large);
    }
}
