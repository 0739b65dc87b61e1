//! Tests of the virtual devices. They need no sound card. Wall-clock assertions are loose
//! (the test machine is shared); nominal timestamps are checked exactly.

use std::{
    f64::consts::TAU,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use cpal::{
    traits::{DeviceTrait, StreamTrait},
    BufferSize, ErrorKind, StreamConfig, StreamInstant,
};
use patchcord_devices::{
    jack_host::JackOptions,
    list_devices, open_device,
    virtual_host::{effective_rate, VirtualDevice, VirtualStream},
    DeviceError, Direction, HostChoice, VirtualOptions,
};

const RATE: u32 = 48_000;

fn config(channels: u16, period: u32) -> StreamConfig {
    StreamConfig {
        channels,
        sample_rate: RATE,
        buffer_size: BufferSize::Fixed(period),
    }
}

fn ns(t: StreamInstant) -> i128 {
    t.duration_since(StreamInstant::ZERO).as_nanos() as i128
}

fn opts(clock_ppm: f64) -> VirtualOptions {
    VirtualOptions { clock_ppm }
}

/// A per-test scratch directory under the target dir.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("virtual-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

#[derive(Clone, Debug)]
struct InputBuffer {
    capture: StreamInstant,
    callback: StreamInstant,
    samples: Vec<f32>,
}

type Recorded = Arc<Mutex<Vec<InputBuffer>>>;

/// Every recorded sample, in order.
fn all_samples(buffers: &Recorded) -> Vec<f32> {
    buffers
        .lock()
        .unwrap()
        .iter()
        .flat_map(|b| b.samples.clone())
        .collect()
}

fn record_input(
    device: &VirtualDevice,
    cfg: StreamConfig,
) -> (VirtualStream, Recorded, Arc<Mutex<Vec<cpal::Error>>>) {
    let buffers: Recorded = Arc::default();
    let errors: Arc<Mutex<Vec<cpal::Error>>> = Arc::default();
    let b = Arc::clone(&buffers);
    let e = Arc::clone(&errors);
    let stream = device
        .build_input_stream::<f32, _, _>(
            cfg,
            move |data: &[f32], info: &cpal::InputCallbackInfo| {
                let ts = info.timestamp();
                b.lock().unwrap().push(InputBuffer {
                    capture: ts.capture,
                    callback: ts.callback,
                    samples: data.to_vec(),
                });
            },
            move |err| e.lock().unwrap().push(err),
            None,
        )
        .expect("build input stream");
    (stream, buffers, errors)
}

fn wait_for_frames(stream: &VirtualStream, frames: u64, timeout: Duration) {
    let start = Instant::now();
    while stream.frames() < frames {
        assert!(
            start.elapsed() < timeout,
            "stream stalled at {} frames (wanted {frames})",
            stream.frames()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tone_value(freq: f64, n: u64) -> f64 {
    (TAU * freq * n as f64 / f64::from(RATE)).sin() * 0.5
}

#[test]
fn tone_input_is_sample_accurate() {
    let freq = 1000.0;
    let period = 64u32;
    let device = VirtualDevice::open("tone:1000", Direction::Input, opts(0.0)).unwrap();
    let (stream, buffers, errors) = record_input(&device, config(2, period));
    assert_eq!(stream.buffer_size().unwrap(), period);
    assert!(buffers.lock().unwrap().is_empty(), "stream must start paused");
    stream.play().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Frames delivered vs wall time since play().
    let t0 = stream.started_at().expect("started");
    let before = t0.elapsed().as_secs_f64();
    let frames = stream.frames() as f64;
    let after = t0.elapsed().as_secs_f64();
    let xruns = stream.xruns();
    let origin = stream.origin();
    drop(stream);

    let buffers = buffers.lock().unwrap().clone();
    assert!(buffers.len() >= 100, "only {} callbacks", buffers.len());
    // Contiguous frames: sample values follow the frame index across all buffers.
    let mut n = 0u64;
    for b in &buffers {
        assert_eq!(b.samples.len(), period as usize * 2);
        for frame in b.samples.chunks_exact(2) {
            let want = tone_value(freq, n);
            assert!(
                (f64::from(frame[0]) - want).abs() < 1e-5,
                "frame {n}: {} != {want}",
                frame[0]
            );
            assert_eq!(frame[0], frame[1], "channels differ at frame {n}");
            n += 1;
        }
    }

    if xruns > 0 || !errors.lock().unwrap().is_empty() {
        eprintln!("machine too busy ({xruns} xruns); skipping timing checks");
        return;
    }
    // Capture timestamps are exactly nominal: t0 + k * P / R.
    let t0_ns = t0.duration_since(origin).as_nanos() as i128;
    let c0 = ns(buffers[0].capture);
    assert!((c0 - t0_ns).abs() <= 1_000, "first capture {c0} vs t0 {t0_ns}");
    let period_ns = f64::from(period) * 1e9 / f64::from(RATE);
    for (k, b) in buffers.iter().enumerate() {
        let want = (k as f64 * period_ns).round() as i128;
        let got = ns(b.capture) - c0;
        assert!(
            (got - want).abs() <= 1_000,
            "buffer {k}: capture offset {got} != {want}"
        );
        // Delivered once its last frame is due.
        assert!(
            ns(b.callback) + 1_000 >= ns(b.capture) + period_ns as i128,
            "buffer {k} delivered before it was captured"
        );
    }
    // Frame count tracks wall time within a few periods (never ahead).
    let p = f64::from(period);
    assert!(
        frames <= after * f64::from(RATE) + 1.0,
        "clock ahead of wall time"
    );
    assert!(
        frames >= before * f64::from(RATE) - 8.0 * p,
        "clock behind: {frames} frames after {before} s"
    );
}

#[test]
fn clock_ppm_changes_nominal_rate() {
    let period = 64u32;
    let ppm = 1000.0;
    let rate = effective_rate(ppm);
    let device = VirtualDevice::open("tone:440", Direction::Input, opts(ppm)).unwrap();
    let (stream, buffers, _errors) = record_input(&device, config(1, period));
    stream.play().unwrap();
    std::thread::sleep(Duration::from_millis(400));
    let t0 = stream.started_at().unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    let frames = stream.frames() as f64;
    let xruns = stream.xruns();
    drop(stream);

    let buffers = buffers.lock().unwrap().clone();
    assert!(buffers.len() > 100);
    if xruns == 0 {
        // Nominal times follow R = 48048, not 48000.
        let c0 = ns(buffers[0].capture);
        for (k, b) in buffers.iter().enumerate() {
            let frames_k = k as f64 * f64::from(period);
            let want = (frames_k * 1e9 / rate).round() as i128;
            let got = ns(b.capture) - c0;
            assert!((got - want).abs() <= 1_000, "buffer {k}: {got} != {want}");
        }
        let k = buffers.len() - 1;
        let nominal_48k = (k as f64 * f64::from(period) * 1e9 / 48_000.0) as i128;
        let got = ns(buffers[k].capture) - c0;
        // 0.1 % of the elapsed nominal time, far above the 1 µs tolerance.
        assert!(nominal_48k - got > (nominal_48k / 2000), "ppm had no effect");
    }
    // Loose wall-clock check: about 48048 frames per second.
    let measured = frames / elapsed;
    assert!(
        (measured / rate - 1.0).abs() < 0.05,
        "measured {measured} frames/s, expected about {rate}"
    );
}

#[test]
fn output_timestamps_are_one_period_ahead() {
    let period = 128u32;
    let device = VirtualDevice::open("null", Direction::Output, opts(0.0)).unwrap();
    let stamps: Arc<Mutex<Vec<(StreamInstant, StreamInstant, usize)>>> = Arc::default();
    let s = Arc::clone(&stamps);
    let stream = device
        .build_output_stream::<f32, _, _>(
            config(1, period),
            move |data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let ts = info.timestamp();
                assert!(data.iter().all(|&x| x == 0.0), "buffer not cleared");
                data.fill(1.0);
                s.lock().unwrap().push((ts.callback, ts.playback, data.len()));
            },
            |_| {},
            None,
        )
        .unwrap();
    stream.play().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t0_ns = stream
        .started_at()
        .unwrap()
        .duration_since(stream.origin())
        .as_nanos() as i128;
    let now = stream.now();
    let xruns = stream.xruns();
    drop(stream);
    let stamps = stamps.lock().unwrap().clone();
    assert!(stamps.len() > 20);
    let period_ns = f64::from(period) * 1e9 / f64::from(RATE);
    for (k, (callback, playback, len)) in stamps.iter().enumerate() {
        assert_eq!(*len, period as usize);
        assert!(
            ns(*callback) <= ns(now),
            "now() must be on the callback time base"
        );
        if xruns == 0 {
            // Buffer k covers frames [kP, (k+1)P) and plays at nominal((k+1)P).
            let want = t0_ns + ((k + 1) as f64 * period_ns).round() as i128;
            assert!((ns(*playback) - want).abs() <= 1_000, "buffer {k}");
            // Called when its first frame is nominally due, i.e. one period before playback.
            assert!(ns(*callback) + 1_000 >= want - period_ns as i128);
        }
    }
}

#[test]
fn pause_stops_callbacks_and_resume_is_phase_continuous() {
    let freq = 440.0;
    let device = VirtualDevice::open("tone:440", Direction::Input, opts(0.0)).unwrap();
    let (stream, buffers, _) = record_input(&device, config(1, 128));
    stream.play().unwrap();
    wait_for_frames(&stream, 4800, Duration::from_secs(5));
    stream.pause().unwrap();
    std::thread::sleep(Duration::from_millis(20)); // let an in-flight callback finish
    let paused_frames = stream.frames();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(stream.frames(), paused_frames, "callbacks while paused");
    assert!(!stream.is_playing());
    let resumed = Instant::now();
    stream.play().unwrap();
    wait_for_frames(&stream, paused_frames + 4800, Duration::from_secs(5));
    let origin = stream.origin();
    drop(stream);

    let buffers = buffers.lock().unwrap().clone();
    let mut n = 0u64;
    for b in &buffers {
        for &s in &b.samples {
            assert!((f64::from(s) - tone_value(freq, n)).abs() < 1e-5, "frame {n}");
            n += 1;
        }
    }
    // The first buffer after resume is nominally captured at the play() call.
    let k = (paused_frames / 128) as usize;
    let resumed_ns = resumed.duration_since(origin).as_nanos() as i128;
    let c = ns(buffers[k].capture);
    assert!(
        c >= resumed_ns && c - resumed_ns < 50_000_000,
        "capture after resume at {c}, play() at {resumed_ns}"
    );
}

#[test]
fn late_wakeups_catch_up_and_long_stalls_are_xruns() {
    let period = 64u32;
    let device = VirtualDevice::open("null", Direction::Output, opts(0.0)).unwrap();
    let calls = Arc::new(AtomicU64::new(0));
    let stamps: Arc<Mutex<Vec<i128>>> = Arc::default();
    let errors: Arc<Mutex<Vec<cpal::Error>>> = Arc::default();
    let (c, s, e) = (Arc::clone(&calls), Arc::clone(&stamps), Arc::clone(&errors));
    let stream = device
        .build_output_stream::<f32, _, _>(
            config(2, period),
            move |_data: &mut [f32], info: &cpal::OutputCallbackInfo| {
                let k = c.fetch_add(1, Ordering::SeqCst);
                s.lock().unwrap().push(ns(info.timestamp().playback));
                if k == 10 {
                    // Short stall: the clock must catch up without skipping or resyncing.
                    std::thread::sleep(Duration::from_millis(15));
                }
                if k == 60 {
                    // Long stall: an xrun.
                    std::thread::sleep(Duration::from_millis(150));
                }
            },
            move |err| e.lock().unwrap().push(err),
            None,
        )
        .unwrap();
    stream.play().unwrap();
    let start = Instant::now();
    while calls.load(Ordering::SeqCst) < 120 {
        assert!(start.elapsed() < Duration::from_secs(10), "stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    let xruns = stream.xruns();
    drop(stream);
    let errors = errors.lock().unwrap().clone();
    assert!(xruns >= 1, "the 150 ms stall must be an xrun");
    assert!(errors.iter().any(|e| e.kind() == ErrorKind::Xrun), "{errors:?}");
    let stamps = stamps.lock().unwrap().clone();
    let period_ns = f64::from(period) * 1e9 / f64::from(RATE);
    if xruns == 1 {
        // Before the long stall, timestamps are linear (the 15 ms stall was caught up).
        for k in 1..=60 {
            let want = ((k as f64) * period_ns).round() as i128;
            let got = stamps[k] - stamps[0];
            assert!((got - want).abs() <= 1_000, "buffer {k}: {got} vs {want}");
        }
        // After it, the clock was re-anchored: a jump of roughly the stall length.
        let jump = stamps[61] - stamps[60];
        assert!(jump > 100_000_000, "no resync after xrun (jump {jump} ns)");
    }
}

fn write_wav_i16(path: &std::path::Path, rate: u32, channels: u16, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

fn ramp(frames: usize) -> Vec<i16> {
    (0..frames).map(|i| (i as i32 * 5 - 24_000) as i16).collect()
}

#[test]
fn wav_input_plays_file_once_then_silence() {
    let dir = scratch("wav-in");
    let path = dir.join("ramp.wav");
    let file = ramp(9_600);
    write_wav_i16(&path, RATE, 1, &file);

    let spec = format!("wav:{}", path.display());
    let device = VirtualDevice::open(&spec, Direction::Input, opts(0.0)).unwrap();
    assert_eq!(device.default_input_config().unwrap().channels(), 1);
    let (stream, buffers, _) = record_input(&device, config(2, 256));
    stream.play().unwrap();
    wait_for_frames(&stream, 12_000, Duration::from_secs(10));
    drop(stream);

    let samples = all_samples(&buffers);
    let frames: Vec<&[f32]> = samples.chunks_exact(2).collect();
    assert!(frames.len() >= 12_000);
    for (i, f) in frames.iter().enumerate() {
        let want = file.get(i).map_or(0.0, |&v| f32::from(v) / 32768.0);
        assert_eq!(f[0], want, "frame {i} left");
        assert_eq!(f[1], want, "frame {i} right (mono is duplicated)");
    }
}

#[test]
fn wav_input_maps_stereo_files() {
    let dir = scratch("wav-in-stereo");
    let path = dir.join("stereo.wav");
    // left 2i, right 0: the mono mix (L + R) / 2 is i; the left channel alone would be 2i
    let interleaved: Vec<i16> = (0..1000).flat_map(|i| [2 * i as i16, 0]).collect();
    write_wav_i16(&path, RATE, 2, &interleaved);
    let spec = format!("wav:{}", path.display());
    let device = VirtualDevice::open(&spec, Direction::Input, opts(0.0)).unwrap();
    let (stream, buffers, _) = record_input(&device, config(1, 64));
    stream.play().unwrap();
    wait_for_frames(&stream, 1024, Duration::from_secs(10));
    drop(stream);
    let samples = all_samples(&buffers);
    for (i, &s) in samples.iter().take(1000).enumerate() {
        assert_eq!(
            s,
            i as f32 / 32768.0,
            "frame {i}: a mono stream plays the average of left and right"
        );
    }
}

#[test]
fn wav_input_mixes_five_one_to_stereo() {
    let dir = scratch("wav-in-51");
    let path = dir.join("surround.wav");
    // 5.1 (L R C LFE Ls Rs): a different constant on each channel
    let frame = [8000i16, 4000, 2000, 16000, 1000, 500];
    let interleaved: Vec<i16> = (0..1000).flat_map(|_| frame).collect();
    write_wav_i16(&path, RATE, 6, &interleaved);
    let spec = format!("wav:{}", path.display());
    let device = VirtualDevice::open(&spec, Direction::Input, opts(0.0)).unwrap();
    let (stream, buffers, _) = record_input(&device, config(2, 64));
    stream.play().unwrap();
    wait_for_frames(&stream, 1024, Duration::from_secs(10));
    drop(stream);
    let samples = all_samples(&buffers);
    let v = |i: usize| f32::from(frame[i]) / 32768.0;
    let c = std::f32::consts::FRAC_1_SQRT_2;
    let norm = 2.0 + c;
    let left = (v(0) + c * v(2) + v(4)) / norm;
    let right = (v(1) + c * v(2) + v(5)) / norm;
    for f in samples.chunks_exact(2).take(1000) {
        assert!(
            (f[0] - left).abs() < 1e-6 && (f[1] - right).abs() < 1e-6,
            "{f:?} vs [{left}, {right}]: L, C, Ls left; R, C, Rs right; no LFE"
        );
    }
}

/// Output stream whose callback writes frame index `f` as `(f * 1e-5, -f * 1e-5)`.
fn ramp_output(device: &VirtualDevice, channels: u16) -> (VirtualStream, Arc<AtomicU64>) {
    let counter = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&counter);
    let stream = device
        .build_output_stream::<f32, _, _>(
            config(channels, 128),
            move |data: &mut [f32], _: &cpal::OutputCallbackInfo| {
                for frame in data.chunks_exact_mut(usize::from(channels)) {
                    let f = c.fetch_add(1, Ordering::SeqCst) as f32 * 1e-5;
                    frame[0] = f;
                    if let Some(r) = frame.get_mut(1) {
                        *r = -f;
                    }
                }
            },
            |e| panic!("unexpected stream error: {e}"),
            None,
        )
        .unwrap();
    (stream, counter)
}

#[test]
fn wav_output_records_every_frame_and_finalizes_on_drop() {
    let dir = scratch("wav-out");
    let path = dir.join("out.wav");
    let spec = format!("wav:{}", path.display());
    let device = VirtualDevice::open(&spec, Direction::Output, opts(0.0)).unwrap();
    let (stream, counter) = ramp_output(&device, 2);
    assert!(path.exists(), "file must be created when the stream is built");
    stream.play().unwrap();
    wait_for_frames(&stream, 9_600, Duration::from_secs(10));
    assert_eq!(stream.dropped_frames(), 0);
    drop(stream); // finalizes
    let rendered = counter.load(Ordering::SeqCst);

    let reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, RATE);
    assert_eq!(spec.bits_per_sample, 32);
    assert_eq!(spec.sample_format, hound::SampleFormat::Float);
    assert_eq!(u64::from(reader.duration()), rendered, "header length");
    let samples: Vec<f32> = reader.into_samples::<f32>().map(Result::unwrap).collect();
    assert_eq!(samples.len() as u64, rendered * 2);
    for (i, f) in samples.chunks_exact(2).enumerate() {
        let want = i as f32 * 1e-5;
        assert_eq!((f[0], f[1]), (want, -want), "frame {i}");
    }
}

#[test]
fn wav_output_never_played_is_a_valid_empty_file() {
    let dir = scratch("wav-out-empty");
    let path = dir.join("empty.wav");
    let device =
        VirtualDevice::open(&format!("wav:{}", path.display()), Direction::Output, opts(0.0)).unwrap();
    let (stream, _) = ramp_output(&device, 1);
    drop(stream);
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.duration(), 0);
    assert_eq!(reader.spec().channels, 1);
}

#[test]
fn wav_round_trip_through_input_and_output_streams() {
    let dir = scratch("wav-roundtrip");
    let in_path = dir.join("in.wav");
    let out_path = dir.join("out.wav");
    let file = ramp(9_600);
    write_wav_i16(&in_path, RATE, 1, &file);

    let input = open_device(
        HostChoice::Auto,
        Some(&format!("wav:{}", in_path.display())),
        Direction::Input,
        opts(0.0),
        &JackOptions::default(),
    )
    .unwrap();
    let output = open_device(
        HostChoice::Auto,
        Some(&format!("wav:{}", out_path.display())),
        Direction::Output,
        opts(0.0),
        &JackOptions::default(),
    )
    .unwrap();
    assert!(input.is_virtual && output.is_virtual);
    assert_eq!(input.host_name, "Virtual");

    let (mut tx, mut rx) = rtrb::RingBuffer::<f32>::new(48_000);
    let in_stream = input
        .device
        .build_input_stream::<f32, _, _>(
            config(1, 64),
            move |data: &[f32], _: &cpal::InputCallbackInfo| {
                tx.push_entire_slice(data).expect("ring full");
            },
            |e| panic!("input error: {e}"),
            None,
        )
        .unwrap();
    // Start consuming once 50 ms are buffered, so scheduling noise cannot cause underruns.
    let prefill = 2_400;
    let mut started = false;
    let underruns = Arc::new(AtomicU64::new(0));
    let u = Arc::clone(&underruns);
    let rendered = Arc::new(AtomicU64::new(0));
    let r = Arc::clone(&rendered);
    let out_stream = output
        .device
        .build_output_stream::<f32, _, _>(
            config(2, 64),
            move |data: &mut [f32], _: &cpal::OutputCallbackInfo| {
                started = started || rx.slots() >= prefill;
                for frame in data.chunks_exact_mut(2) {
                    let v = if started {
                        rx.pop().unwrap_or_else(|_| {
                            u.fetch_add(1, Ordering::SeqCst);
                            0.0
                        })
                    } else {
                        0.0
                    };
                    frame.fill(v);
                }
                r.fetch_add(64, Ordering::SeqCst);
            },
            |e| panic!("output error: {e}"),
            None,
        )
        .unwrap();
    in_stream.play().unwrap();
    out_stream.play().unwrap();
    let start = Instant::now();
    while rendered.load(Ordering::SeqCst) < 9_600 + 2 * prefill as u64 + 2_400 {
        assert!(start.elapsed() < Duration::from_secs(20), "stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(out_stream);
    drop(in_stream);

    let reader = hound::WavReader::open(&out_path).unwrap();
    assert_eq!(reader.spec().channels, 2);
    let out: Vec<f32> = reader.into_samples::<f32>().map(Result::unwrap).collect();
    let frames: Vec<&[f32]> = out.chunks_exact(2).collect();
    let delay = frames
        .iter()
        .position(|f| f[0] != 0.0)
        .expect("the file never came out");
    assert!(delay >= prefill, "delay {delay} shorter than the prefill");
    for (i, &v) in file.iter().enumerate() {
        let want = f32::from(v) / 32768.0;
        assert_eq!(frames[delay + i], [want, want], "frame {i} (delay {delay})");
    }
    // After the file: silence (the input plays once).
    assert!(frames[delay + file.len()..].iter().all(|f| f == &[0.0, 0.0]));
    assert_eq!(underruns.load(Ordering::SeqCst), 0);
}

#[test]
fn unsupported_configs_are_rejected() {
    let device = VirtualDevice::open("tone:440", Direction::Input, opts(0.0)).unwrap();
    let try_cfg = |cfg: StreamConfig| {
        device
            .build_input_stream::<f32, _, _>(cfg, |_: &[f32], _: &_| {}, |_| {}, None)
            .err()
            .map(|e| e.kind())
    };
    let mut cfg = config(2, 64);
    cfg.sample_rate = 44_100;
    assert_eq!(try_cfg(cfg), Some(ErrorKind::UnsupportedConfig));
    assert_eq!(try_cfg(config(3, 64)), Some(ErrorKind::UnsupportedConfig));
    assert_eq!(try_cfg(config(0, 64)), Some(ErrorKind::UnsupportedConfig));
    assert_eq!(try_cfg(config(1, 8)), Some(ErrorKind::UnsupportedConfig));
    assert_eq!(try_cfg(config(1, 8193)), Some(ErrorKind::UnsupportedConfig));
    assert_eq!(try_cfg(config(1, 16)), None);
    let mut cfg = config(1, 64);
    cfg.buffer_size = BufferSize::Default;
    let stream = device
        .build_input_stream::<f32, _, _>(cfg, |_: &[f32], _: &_| {}, |_| {}, None)
        .unwrap();
    assert_eq!(stream.buffer_size().unwrap(), 128);
    drop(stream);
    // Wrong sample type.
    let err = device
        .build_input_stream::<i16, _, _>(config(1, 64), |_: &[i16], _: &_| {}, |_| {}, None)
        .err()
        .map(|e| e.kind());
    assert_eq!(err, Some(ErrorKind::UnsupportedConfig));
    // Wrong direction.
    let err = device
        .build_output_stream::<f32, _, _>(config(1, 64), |_: &mut [f32], _: &_| {}, |_| {}, None)
        .err()
        .map(|e| e.kind());
    assert_eq!(err, Some(ErrorKind::UnsupportedOperation));
    // Output side too.
    let null = VirtualDevice::open("null", Direction::Output, opts(0.0)).unwrap();
    let mut cfg = config(2, 64);
    cfg.sample_rate = 44_100;
    let err = null
        .build_output_stream::<f32, _, _>(cfg, |_: &mut [f32], _: &_| {}, |_| {}, None)
        .err()
        .map(|e| e.kind());
    assert_eq!(err, Some(ErrorKind::UnsupportedConfig));

    // Supported configs report exactly 48 kHz f32 mono/stereo.
    let ranges: Vec<_> = device.supported_input_configs().unwrap().collect();
    assert_eq!(ranges.len(), 2);
    for r in &ranges {
        assert_eq!((r.min_sample_rate(), r.max_sample_rate()), (RATE, RATE));
        assert_eq!(r.sample_format(), cpal::SampleFormat::F32);
    }
    assert_eq!(device.supported_output_configs().unwrap().count(), 0);
}

#[test]
fn wav_output_in_missing_directory_fails_early() {
    let dir = scratch("wav-missing");
    let path = dir.join("no-such-dir").join("out.wav");
    let spec = format!("wav:{}", path.display());
    // Through open_device: a DeviceError naming the path.
    let err = open_device(
        HostChoice::Auto,
        Some(&spec),
        Direction::Output,
        opts(0.0),
        &JackOptions::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        err.contains("cannot write wav:") && err.contains("does not exist"),
        "{err}"
    );
    // At stream build time: InvalidInput naming the path.
    let device = VirtualDevice::open(&spec, Direction::Output, opts(0.0)).unwrap();
    let err = device
        .build_output_stream::<f32, _, _>(config(2, 64), |_: &mut [f32], _: &_| {}, |_| {}, None)
        .expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

#[test]
fn wav_input_errors_are_clear() {
    let dir = scratch("wav-bad");
    let path = dir.join("cd.wav");
    write_wav_i16(&path, 44_100, 2, &[0; 200]);
    let spec = format!("wav:{}", path.display());
    let err = open_device(
        HostChoice::Auto,
        Some(&spec),
        Direction::Input,
        opts(0.0),
        &JackOptions::default(),
    )
    .err();
    assert!(matches!(
        err,
        Some(DeviceError::WavSampleRate { rate: 44_100, .. })
    ));
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.starts_with(&format!(
            "wav:{} has sample rate 44100; patchcord runs at 48000 Hz",
            path.display()
        )),
        "{msg}"
    );

    let missing = dir.join("missing.wav");
    let msg = open_device(
        HostChoice::Virtual,
        Some(&format!("wav:{}", missing.display())),
        Direction::Input,
        opts(0.0),
        &JackOptions::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(
        msg.starts_with(&format!("cannot read wav:{}: ", missing.display())),
        "{msg}"
    );

    let garbage = dir.join("garbage.wav");
    std::fs::write(&garbage, b"not a wav file").unwrap();
    let err = VirtualDevice::open(&format!("wav:{}", garbage.display()), Direction::Input, opts(0.0)).err();
    assert!(matches!(err, Some(DeviceError::WavRead { .. })), "{err:?}");
}

#[test]
fn wav_input_converts_float_and_24_bit() {
    let dir = scratch("wav-formats");
    let float_path = dir.join("f32.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(&float_path, spec).unwrap();
    for s in [0.25f32, -0.5, 0.125] {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let data = patchcord_devices::virtual_host::load_wav(&float_path).unwrap();
    assert_eq!(data.samples, vec![0.25, -0.5, 0.125]);

    let int_path = dir.join("i24.wav");
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 24,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&int_path, spec).unwrap();
    for s in [1 << 22, -(1 << 23)] {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    let data = patchcord_devices::virtual_host::load_wav(&int_path).unwrap();
    assert_eq!(data.channels, 2);
    assert_eq!(data.samples, vec![0.5, -1.0]);
}

#[test]
fn cpal_device_path_works_for_virtual_devices() {
    let opened = open_device(
        HostChoice::Auto,
        Some("TONE:440"),
        Direction::Input,
        opts(0.0),
        &JackOptions::default(),
    )
    .map_err(|e| e.to_string())
    .unwrap();
    assert_eq!(opened.device_name, "TONE:440");
    let device = &opened.device;
    assert_eq!(device.id().unwrap().host(), cpal::HostId::Custom);
    assert_eq!(device.description().unwrap().name(), "TONE:440");
    let cfg = device.default_input_config().unwrap();
    assert_eq!(cfg.sample_rate(), RATE);
    let frames = Arc::new(AtomicU64::new(0));
    let f = Arc::clone(&frames);
    let stream = device
        .build_input_stream::<f32, _, _>(
            cfg.config(),
            move |data: &[f32], _: &_| {
                f.fetch_add(data.len() as u64, Ordering::SeqCst);
            },
            |_| {},
            None,
        )
        .unwrap();
    stream.play().unwrap();
    let start = Instant::now();
    while frames.load(Ordering::SeqCst) < 4_800 {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let t = Instant::now();
    drop(stream);
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "drop must stop the thread promptly"
    );

    // The virtual host as a cpal::Host.
    use cpal::traits::HostTrait;
    let host = patchcord_devices::virtual_host(opts(0.0));
    assert_eq!(host.id(), cpal::HostId::Custom);
    let names: Vec<String> = host
        .devices()
        .unwrap()
        .map(|d| d.description().unwrap().name().to_owned())
        .collect();
    assert_eq!(names, ["tone:440", "silence", "null"]);
    assert_eq!(host.input_devices().unwrap().count(), 2);
    assert_eq!(host.output_devices().unwrap().count(), 1);
}

#[test]
fn list_devices_does_not_fail_without_hardware() {
    let mut out = Vec::new();
    list_devices(&mut out, opts(0.0)).unwrap();
    let text = String::from_utf8(out).unwrap();
    for needle in [
        "Virtual", "tone:HZ", "wav:PATH", "silence", "null", "ALSA", "JACK",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn auto_without_sound_card_points_to_virtual_devices() {
    if patchcord_devices::has_sound_card() || cpal::default_host().id() != cpal::HostId::Alsa {
        eprintln!("a sound card (or sound server) is present; nothing to check");
        return;
    }
    for (dir, needles) in [
        (Direction::Input, ["tone:HZ", "wav:PATH", "silence"]),
        (Direction::Output, ["wav:PATH", "null", "null"]),
    ] {
        let err = open_device(HostChoice::Auto, None, dir, opts(0.0), &JackOptions::default()).err();
        assert!(matches!(err, Some(DeviceError::NoSoundCard { .. })), "{err:?}");
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.starts_with("no sound card found"), "{msg}");
        for n in needles {
            assert!(msg.contains(n), "{msg}");
        }
    }
}

#[test]
fn real_host_errors_are_actionable() {
    // JACK: either a server is running, or the error says to start one.
    match open_device(
        HostChoice::Jack,
        None,
        Direction::Output,
        opts(0.0),
        &JackOptions::default(),
    ) {
        Ok(d) => assert!(!d.is_virtual),
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.starts_with("host JACK is not available") && msg.contains("is a JACK server running?"),
                "{msg}"
            );
        }
    }
    // ALSA: an absent name lists the candidates.
    match open_device(
        HostChoice::Alsa,
        Some("no such device 1234"),
        Direction::Input,
        opts(0.0),
        &JackOptions::default(),
    ) {
        Err(DeviceError::NoMatch { .. }) => {}
        Err(DeviceError::Enumerate { .. }) => {}
        other => panic!("unexpected: {other:?}"),
    }
    let msg = open_device(
        HostChoice::Alsa,
        Some("no such device 1234"),
        Direction::Input,
        opts(0.0),
        &JackOptions::default(),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(msg.contains("run with --list-devices"), "{msg}");
}
