//! Virtual audio devices, implemented as a cpal *custom host*.
//!
//! The binaries never know whether they talk to a sound card or to one of these devices: both
//! are a [`cpal::Device`] producing the same callbacks.
//!
//! # Devices
//!
//! | spec        | direction | behaviour                                                          |
//! |-------------|-----------|--------------------------------------------------------------------|
//! | `tone:HZ`   | input     | sine at `HZ` (0 < HZ < 24000), amplitude 0.5, same on all channels |
//! | `wav:PATH`  | input     | 48 kHz WAV file loaded at open time, played once, then silence; a file of another channel count is mixed to the stream's ([`downmix`]) |
//! | `silence`   | input     | zeros                                                              |
//! | `wav:PATH`  | output    | records a 32-bit float, 48 kHz WAV with the stream's channel count |
//! | `null`      | output    | discards                                                           |
//!
//! Every device supports exactly 48000 Hz, `f32`, 1 or 2 channels. `BufferSize::Fixed(P)` sets
//! the period `P` (16..=8192 frames); `BufferSize::Default` is 128 frames.
//!
//! # Timing model
//!
//! Each stream has its own clock thread, started paused. Let `origin` be the `Instant` the
//! stream was built; every [`cpal::StreamInstant`] of the stream (callback timestamps and
//! [`cpal::traits::StreamTrait::now`]) is the time elapsed since `origin`. Let `t0` be the
//! `Instant` of the first `play()` and `R = 48000 * (1 + clock_ppm * 1e-6)` the effective rate
//! (a virtual crystal that is `clock_ppm` off). The **nominal time of frame `n`** is
//! `t0 + n / R`. The frame counter is the sample-accurate clock; wall time only decides when
//! the thread wakes up.
//!
//! * **Input**, buffer covering frames `[n, n+P)`: the callback is invoked at the nominal time
//!   of frame `n+P` (when its last frame has been "captured"). `capture` = nominal time of frame
//!   `n`; `callback` = the actual `Instant::now()` when the callback is called.
//! * **Output**, buffer covering frames `[n, n+P)`: the callback is invoked at the nominal time
//!   of frame `n`. `callback` = actual now; `playback` = nominal time of frame `n` + `P/R`, i.e.
//!   one period of device buffering, like a double-buffered DAC.
//!
//! Because `capture`/`playback` are exact functions of the frame index, the latency of a chain
//! virtual input → network → virtual output can be measured to the sample, independent of
//! scheduling noise: a frame captured at nominal time `c` that is written into an output buffer
//! whose `playback` is `p` at offset `k` leaves the "DAC" at `p + k/R`.
//!
//! The thread sleeps to absolute deadlines computed from the frame counter (sleep errors never
//! accumulate), and spins for the last ~100 µs. If it wakes up late it runs the missed callbacks
//! back to back (no frames are skipped). If it is more than 50 ms late it reports
//! [`cpal::ErrorKind::Xrun`] through the error callback, counts it ([`VirtualStream::xruns`]),
//! and re-anchors `t0` so the frame due now is nominally due now (a time discontinuity, like a
//! real device recovering from an xrun) instead of bursting to catch up. `pause()` stops the
//! callbacks; `play()` re-anchors `t0` so the next frame is nominally due at the `play()` call.
//!
//! Input buffers are preallocated; the clock thread does not allocate in steady state (only on
//! error paths, to format messages). The `wav:` output does no file I/O on the clock thread:
//! buffers go through an `rtrb` ring (10 s) to a writer thread; frames that do not fit are
//! dropped, counted ([`VirtualStream::dropped_frames`]) and reported (`ErrorKind::Other`).
//! Dropping the stream stops the clock thread, then drains the ring and finalizes the WAV
//! before `drop` returns.

mod clock;
mod downmix;
mod wav;

use std::{
    fmt,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use cpal::{
    traits::{DeviceTrait, HostTrait, StreamTrait},
    BufferSize, ChannelCount, Data, DeviceDescription, DeviceDescriptionBuilder, DeviceDirection, DeviceId,
    DeviceType, Error, ErrorKind, FrameCount, HostId, InputCallbackInfo, InputStreamTimestamp, InterfaceType,
    OutputCallbackInfo, OutputStreamTimestamp, SampleFormat, SampleRate, StreamConfig, StreamInstant,
    SupportedBufferSize, SupportedStreamConfig, SupportedStreamConfigRange,
};

pub use clock::{effective_rate, ClockModel, XRUN_THRESHOLD};
pub use wav::{load_wav, WavData};

use clock::{run_clock, stream_instant, stream_instant_of, ClockConfig, ErrorSink, StreamShared};

use crate::{DeviceError, Direction, VirtualOptions};

/// The only sample rate virtual devices run at.
pub const SAMPLE_RATE: SampleRate = 48_000;
/// Smallest period accepted in `BufferSize::Fixed`.
pub const MIN_PERIOD: FrameCount = 16;
/// Largest period accepted in `BufferSize::Fixed`.
pub const MAX_PERIOD: FrameCount = 8192;
/// Period used for `BufferSize::Default`.
pub const DEFAULT_PERIOD: FrameCount = 128;
/// Largest channel count of virtual devices (1 and 2 are supported).
pub const MAX_CHANNELS: ChannelCount = 2;
/// Capacity of the `wav:` output ring, in seconds of audio.
pub const WAV_RING_SECONDS: usize = 10;
/// Largest accepted `|clock_ppm|`.
pub const MAX_CLOCK_PPM: f64 = 100_000.0;

const TONE_PREFIX: &str = "tone:";
const WAV_PREFIX: &str = "wav:";
const SILENCE: &str = "silence";
const NULL: &str = "null";
const DRIVER: &str = "patchcord-virtual";

/// Syntax of the virtual input devices, with a short description (for help and listings).
pub const INPUT_SYNTAX: &[(&str, &str)] = &[
    (
        "tone:HZ",
        "sine wave at HZ Hz (0 < HZ < 24000), amplitude 0.5, e.g. tone:440",
    ),
    ("wav:PATH", "plays a 48000 Hz WAV file once, then silence"),
    ("silence", "digital silence"),
];

/// Syntax of the virtual output devices, with a short description.
pub const OUTPUT_SYNTAX: &[(&str, &str)] = &[
    ("wav:PATH", "records a 32-bit float 48000 Hz WAV file"),
    ("null", "discards the audio"),
];

/// True if `name` selects a virtual device (`tone:…`, `wav:…`, `silence`, `null`;
/// case-insensitive).
pub fn is_virtual_name(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    n.starts_with(TONE_PREFIX) || n.starts_with(WAV_PREFIX) || n == SILENCE || n == NULL
}

/// Validate a clock offset.
pub fn check_clock_ppm(ppm: f64) -> Result<(), String> {
    if ppm.is_finite() && ppm.abs() <= MAX_CLOCK_PPM {
        Ok(())
    } else {
        Err(format!(
            "clock_ppm must be a number between -{MAX_CLOCK_PPM} and {MAX_CLOCK_PPM}, got {ppm}"
        ))
    }
}

/// What a virtual device does.
#[derive(Clone, Debug)]
pub enum VirtualKind {
    /// Sine generator (input).
    Tone {
        /// Frequency in Hz.
        freq: f64,
    },
    /// WAV file player (input), fully loaded at open time.
    WavInput {
        /// File path as given.
        path: PathBuf,
        /// Decoded audio.
        data: Arc<WavData>,
    },
    /// Zeros (input).
    Silence,
    /// WAV file recorder (output); the file is created when a stream is built.
    WavOutput {
        /// File path as given.
        path: PathBuf,
    },
    /// Discards audio (output).
    Null,
}

impl VirtualKind {
    fn direction(&self) -> Direction {
        match self {
            Self::Tone { .. } | Self::WavInput { .. } | Self::Silence => Direction::Input,
            Self::WavOutput { .. } | Self::Null => Direction::Output,
        }
    }
}

/// The cpal custom host holding the virtual devices.
///
/// `devices()` enumerates examples (`tone:440`, `silence`, `null`); `wav:` devices need a path
/// and are created with [`VirtualDevice::open`] (which [`crate::open_device`] does).
#[derive(Clone, Copy, Debug, Default)]
pub struct VirtualHost {
    opts: VirtualOptions,
}

impl VirtualHost {
    /// A virtual host whose devices use `opts`.
    pub fn new(opts: VirtualOptions) -> Self {
        Self { opts }
    }

    /// Wrap into a [`cpal::Host`] (host id [`cpal::HostId::Custom`]).
    pub fn into_cpal(self) -> cpal::Host {
        cpal::Host::from(cpal::platform::CustomHost::from_host(self))
    }
}

impl HostTrait for VirtualHost {
    type Devices = std::vec::IntoIter<VirtualDevice>;
    type Device = VirtualDevice;

    fn is_available() -> bool {
        true
    }

    fn devices(&self) -> Result<Self::Devices, Error> {
        let devices = vec![
            VirtualDevice::tone(440.0, self.opts),
            VirtualDevice::from_kind("silence".into(), VirtualKind::Silence, self.opts),
            VirtualDevice::from_kind("null".into(), VirtualKind::Null, self.opts),
        ];
        Ok(devices.into_iter())
    }

    /// `tone:440`.
    fn default_input_device(&self) -> Option<Self::Device> {
        Some(VirtualDevice::tone(440.0, self.opts))
    }

    /// `null`.
    fn default_output_device(&self) -> Option<Self::Device> {
        Some(VirtualDevice::from_kind(
            "null".into(),
            VirtualKind::Null,
            self.opts,
        ))
    }
}

/// One virtual device. Its name (and cpal device id) is its spec string, e.g. `tone:440`.
#[derive(Clone)]
pub struct VirtualDevice {
    spec: Arc<str>,
    kind: VirtualKind,
    opts: VirtualOptions,
}

impl VirtualDevice {
    /// Parse `spec` (`tone:HZ`, `wav:PATH`, `silence`, `null`) as a device of direction `dir`.
    /// `wav:` inputs are loaded here, so a missing or wrong-rate file fails now.
    pub fn open(spec: &str, dir: Direction, opts: VirtualOptions) -> Result<Self, DeviceError> {
        let spec = spec.trim();
        check_clock_ppm(opts.clock_ppm).map_err(DeviceError::InvalidOptions)?;
        let lower = spec.to_ascii_lowercase();
        let invalid = |reason: String| DeviceError::InvalidVirtual {
            spec: spec.to_owned(),
            reason,
        };
        let kind = if lower.starts_with(TONE_PREFIX) {
            let arg = spec[TONE_PREFIX.len()..].trim();
            let freq = parse_frequency(arg)
                .ok_or_else(|| invalid(format!("frequency must be a number in (0, {})", SAMPLE_RATE / 2)))?;
            VirtualKind::Tone { freq }
        } else if lower.starts_with(WAV_PREFIX) {
            let path = &spec[WAV_PREFIX.len()..];
            if path.is_empty() {
                return Err(invalid("missing file path, use wav:PATH".into()));
            }
            let path = PathBuf::from(path);
            match dir {
                Direction::Input => {
                    let data = Arc::new(load_wav(&path)?);
                    VirtualKind::WavInput { path, data }
                }
                Direction::Output => VirtualKind::WavOutput { path },
            }
        } else if lower == SILENCE {
            VirtualKind::Silence
        } else if lower == NULL {
            VirtualKind::Null
        } else {
            return Err(invalid(format!("unknown virtual device; {}", syntax_hint(dir))));
        };
        if kind.direction() != dir {
            return Err(invalid(format!(
                "this virtual device is {}-only; {}",
                kind.direction(),
                syntax_hint(dir)
            )));
        }
        Ok(Self::from_kind(spec.into(), kind, opts))
    }

    fn tone(freq: f64, opts: VirtualOptions) -> Self {
        Self::from_kind(format!("tone:{freq}").into(), VirtualKind::Tone { freq }, opts)
    }

    fn from_kind(spec: Arc<str>, kind: VirtualKind, opts: VirtualOptions) -> Self {
        Self { spec, kind, opts }
    }

    /// The spec string this device was opened with (its name).
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// What the device does.
    pub fn kind(&self) -> &VirtualKind {
        &self.kind
    }

    /// Input or output.
    pub fn direction(&self) -> Direction {
        self.kind.direction()
    }

    /// Options (clock offset) of this device.
    pub fn options(&self) -> VirtualOptions {
        self.opts
    }

    /// Wrap into a [`cpal::Device`].
    pub fn into_cpal(self) -> cpal::Device {
        cpal::Device::from(cpal::platform::CustomDevice::from_device(self))
    }

    fn default_channels(&self) -> ChannelCount {
        match &self.kind {
            VirtualKind::WavInput { data, .. } => data.channels.clamp(1, MAX_CHANNELS),
            _ => MAX_CHANNELS,
        }
    }

    fn config_ranges(&self) -> Vec<SupportedStreamConfigRange> {
        (1..=MAX_CHANNELS)
            .map(|ch| {
                SupportedStreamConfigRange::new(
                    ch,
                    SAMPLE_RATE,
                    SAMPLE_RATE,
                    SupportedBufferSize::Range {
                        min: MIN_PERIOD,
                        max: MAX_PERIOD,
                    },
                    SampleFormat::F32,
                )
            })
            .collect()
    }

    fn default_config(&self, dir: Direction) -> Result<SupportedStreamConfig, Error> {
        self.require(dir)?;
        Ok(SupportedStreamConfig::new(
            self.default_channels(),
            SAMPLE_RATE,
            SupportedBufferSize::Range {
                min: MIN_PERIOD,
                max: MAX_PERIOD,
            },
            SampleFormat::F32,
        ))
    }

    fn require(&self, dir: Direction) -> Result<(), Error> {
        if self.direction() == dir {
            Ok(())
        } else {
            Err(Error::with_message(
                ErrorKind::UnsupportedOperation,
                format!("virtual device '{}' is {}-only", self.spec, self.direction()),
            ))
        }
    }

    /// Check a requested config; returns the period in frames.
    fn check_config(&self, config: &StreamConfig, format: SampleFormat) -> Result<u32, Error> {
        let unsupported = |what: String| {
            Err(Error::with_message(
                ErrorKind::UnsupportedConfig,
                format!(
                    "virtual device '{}': {what}; virtual devices support 48000 Hz, f32, \
                     1 or 2 channels, periods {MIN_PERIOD}..={MAX_PERIOD} frames",
                    self.spec
                ),
            ))
        };
        if config.sample_rate != SAMPLE_RATE {
            return unsupported(format!("sample rate {} Hz", config.sample_rate));
        }
        if !(1..=MAX_CHANNELS).contains(&config.channels) {
            return unsupported(format!("{} channels", config.channels));
        }
        if format != SampleFormat::F32 {
            return unsupported(format!("sample format {format}"));
        }
        match config.buffer_size {
            BufferSize::Default => Ok(DEFAULT_PERIOD),
            BufferSize::Fixed(p) if (MIN_PERIOD..=MAX_PERIOD).contains(&p) => Ok(p),
            BufferSize::Fixed(p) => unsupported(format!("period {p} frames")),
        }
    }

    fn clock_config(&self, period: u32, is_input: bool) -> Result<ClockConfig, Error> {
        check_clock_ppm(self.opts.clock_ppm).map_err(|m| Error::with_message(ErrorKind::InvalidInput, m))?;
        Ok(ClockConfig {
            period,
            rate: effective_rate(self.opts.clock_ppm),
            is_input,
        })
    }
}

fn parse_frequency(arg: &str) -> Option<f64> {
    let lower = arg.to_ascii_lowercase();
    let number = lower.strip_suffix("hz").unwrap_or(&lower).trim();
    let f: f64 = number.parse().ok()?;
    (f.is_finite() && f > 0.0 && f < f64::from(SAMPLE_RATE / 2)).then_some(f)
}

fn syntax_hint(dir: Direction) -> String {
    let table = match dir {
        Direction::Input => INPUT_SYNTAX,
        Direction::Output => OUTPUT_SYNTAX,
    };
    let names: Vec<&str> = table.iter().map(|(s, _)| *s).collect();
    format!("virtual {dir} devices: {}", names.join(", "))
}

impl PartialEq for VirtualDevice {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec && self.direction() == other.direction()
    }
}

impl Eq for VirtualDevice {}

impl Hash for VirtualDevice {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.spec.hash(state);
        self.direction().hash(state);
    }
}

impl fmt::Debug for VirtualDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualDevice")
            .field("spec", &self.spec)
            .field("kind", &self.kind)
            .field("clock_ppm", &self.opts.clock_ppm)
            .finish()
    }
}

impl fmt::Display for VirtualDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl DeviceTrait for VirtualDevice {
    type SupportedInputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type SupportedOutputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type Stream = VirtualStream;

    fn description(&self) -> Result<DeviceDescription, Error> {
        let (direction, what) = match &self.kind {
            VirtualKind::Tone { freq } => (DeviceDirection::Input, format!("sine {freq} Hz")),
            VirtualKind::WavInput { path, data } => (
                DeviceDirection::Input,
                format!(
                    "plays {} ({} ch, {} frames)",
                    path.display(),
                    data.channels,
                    data.frames()
                ),
            ),
            VirtualKind::Silence => (DeviceDirection::Input, "silence".to_owned()),
            VirtualKind::WavOutput { path } => {
                (DeviceDirection::Output, format!("records to {}", path.display()))
            }
            VirtualKind::Null => (DeviceDirection::Output, "discards audio".to_owned()),
        };
        Ok(DeviceDescriptionBuilder::new(&*self.spec)
            .driver(DRIVER)
            .device_type(DeviceType::Virtual)
            .interface_type(InterfaceType::Virtual)
            .direction(direction)
            .add_extended_line(what)
            .build())
    }

    fn id(&self) -> Result<DeviceId, Error> {
        Ok(DeviceId::new(HostId::Custom, &*self.spec))
    }

    fn supports_input(&self) -> bool {
        self.direction() == Direction::Input
    }

    fn supports_output(&self) -> bool {
        self.direction() == Direction::Output
    }

    fn supported_input_configs(&self) -> Result<Self::SupportedInputConfigs, Error> {
        Ok(match self.direction() {
            Direction::Input => self.config_ranges(),
            Direction::Output => Vec::new(),
        }
        .into_iter())
    }

    fn supported_output_configs(&self) -> Result<Self::SupportedOutputConfigs, Error> {
        Ok(match self.direction() {
            Direction::Output => self.config_ranges(),
            Direction::Input => Vec::new(),
        }
        .into_iter())
    }

    fn default_input_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.default_config(Direction::Input)
    }

    fn default_output_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.default_config(Direction::Output)
    }

    fn build_input_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        self.require(Direction::Input)?;
        let period = self.check_config(&config, sample_format)?;
        let cfg = self.clock_config(period, true)?;
        let channels = usize::from(config.channels);
        let source = match &self.kind {
            VirtualKind::Tone { freq } => Source::Tone {
                phase: 0.0,
                increment: freq / f64::from(SAMPLE_RATE),
            },
            VirtualKind::WavInput { data, .. } => Source::Wav {
                samples: downmix::mix(&data.samples, usize::from(data.channels), channels),
                position: 0,
            },
            _ => Source::Silence,
        };
        let origin = Instant::now();
        let shared = Arc::new(StreamShared::new(origin));
        let ticker = InputTicker {
            source,
            buffer: vec![0.0; period as usize * channels],
            channels,
            callback: data_callback,
            origin,
        };
        let errors = ErrorSink::new(error_callback);
        let clock = spawn_clock(&shared, cfg, ticker, errors, &self.spec, "in")?;
        Ok(VirtualStream {
            shared,
            period,
            clock: Some(clock),
            writer: None,
        })
    }

    fn build_output_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        self.require(Direction::Output)?;
        let period = self.check_config(&config, sample_format)?;
        let cfg = self.clock_config(period, false)?;
        let channels = usize::from(config.channels);
        let origin = Instant::now();
        let shared = Arc::new(StreamShared::new(origin));
        let errors = ErrorSink::new(error_callback);

        let (sink, writer) = match &self.kind {
            VirtualKind::WavOutput { path } => {
                let file = wav::create_writer(path, config.channels)?;
                let capacity = WAV_RING_SECONDS * SAMPLE_RATE as usize * channels;
                let (producer, consumer) = rtrb::RingBuffer::new(capacity);
                let writer =
                    wav::spawn_writer(path.clone(), file, consumer, errors.clone()).map_err(spawn_error)?;
                let sink = Sink::Wav {
                    producer,
                    shared: Arc::clone(&shared),
                    errors: errors.clone(),
                    label: Arc::clone(&self.spec),
                    last_report: None,
                };
                (sink, Some(writer))
            }
            _ => (Sink::Null, None),
        };
        let ticker = OutputTicker {
            sink,
            buffer: vec![0.0; period as usize * channels],
            channels,
            callback: data_callback,
            origin,
        };
        let clock = match spawn_clock(&shared, cfg, ticker, errors, &self.spec, "out") {
            Ok(clock) => clock,
            Err(e) => {
                // The ticker (and with it the ring producer) is gone: let the writer finish.
                if let Some(w) = writer {
                    w.thread().unpark();
                    let _ = w.join();
                }
                return Err(e);
            }
        };
        Ok(VirtualStream {
            shared,
            period,
            clock: Some(clock),
            writer,
        })
    }
}

fn spawn_error(e: std::io::Error) -> Error {
    Error::with_message(
        ErrorKind::ResourceExhausted,
        format!("cannot start virtual device thread: {e}"),
    )
}

fn spawn_clock<T: clock::Tick>(
    shared: &Arc<StreamShared>,
    cfg: ClockConfig,
    ticker: T,
    errors: ErrorSink,
    spec: &Arc<str>,
    suffix: &str,
) -> Result<JoinHandle<()>, Error> {
    let shared = Arc::clone(shared);
    let label = Arc::clone(spec);
    std::thread::Builder::new()
        .name(format!("patchcord-virtual-{suffix}"))
        .spawn(move || {
            // Best effort: a virtual device is the machine's sound card; give its clock
            // thread the priority a driver thread would have.
            let _ = crate::realtime::promote_current_thread(128);
            run_clock(&shared, cfg, ticker, &errors, &label)
        })
        .map_err(spawn_error)
}

/// Sample generator of a virtual input.
enum Source {
    Tone {
        phase: f64,
        increment: f64,
    },
    /// The file already mixed to the stream's channels; `position` in samples.
    Wav {
        samples: Vec<f32>,
        position: usize,
    },
    Silence,
}

impl Source {
    fn fill(&mut self, buffer: &mut [f32], channels: usize) {
        match self {
            Source::Tone { phase, increment } => {
                for frame in buffer.chunks_exact_mut(channels) {
                    let v = ((*phase * std::f64::consts::TAU).sin() * 0.5) as f32;
                    frame.fill(v);
                    *phase += *increment;
                    if *phase >= 1.0 {
                        *phase -= 1.0;
                    }
                }
            }
            Source::Wav { samples, position } => {
                let rest = samples.get(*position..).unwrap_or(&[]);
                let n = rest.len().min(buffer.len());
                buffer[..n].copy_from_slice(&rest[..n]);
                buffer[n..].fill(0.0);
                *position += n;
            }
            Source::Silence => buffer.fill(0.0),
        }
    }
}

struct InputTicker<D> {
    source: Source,
    buffer: Vec<f32>,
    channels: usize,
    callback: D,
    origin: Instant,
}

impl<D> clock::Tick for InputTicker<D>
where
    D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
{
    fn tick(&mut self, _n: u64, start_ns: i128, _end_ns: i128) {
        self.source.fill(&mut self.buffer, self.channels);
        // SAFETY: the pointer and length describe `self.buffer`, a live, initialised `[f32]`
        // that is not otherwise accessed while `data` exists; the format is F32.
        let data = unsafe {
            Data::from_parts(
                self.buffer.as_mut_ptr().cast(),
                self.buffer.len(),
                SampleFormat::F32,
            )
        };
        let info = InputCallbackInfo::new(InputStreamTimestamp {
            callback: stream_instant_of(self.origin, Instant::now()),
            capture: stream_instant(start_ns),
        });
        (self.callback)(&data, &info);
    }
}

/// Where a virtual output's rendered buffers go.
enum Sink {
    Null,
    Wav {
        producer: rtrb::Producer<f32>,
        shared: Arc<StreamShared>,
        errors: ErrorSink,
        label: Arc<str>,
        last_report: Option<Instant>,
    },
}

impl Sink {
    fn consume(&mut self, buffer: &[f32], channels: usize) {
        if let Sink::Wav {
            producer,
            shared,
            errors,
            label,
            last_report,
        } = self
        {
            let frames = buffer.len() / channels;
            let fit = (producer.slots() / channels).min(frames);
            // Cannot fail: `fit` frames are known to be free and only this thread writes.
            let _ = producer.push_entire_slice(&buffer[..fit * channels]);
            let dropped = (frames - fit) as u64;
            if dropped > 0 {
                let total = shared.add_dropped_frames(dropped);
                let now = Instant::now();
                let due = last_report.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
                if due {
                    *last_report = Some(now);
                    errors.report(Error::with_message(
                        ErrorKind::Other,
                        format!(
                            "virtual device '{label}': WAV writer is not keeping up; \
                             dropped {dropped} frames ({total} in total)"
                        ),
                    ));
                }
            }
        }
    }
}

struct OutputTicker<D> {
    sink: Sink,
    buffer: Vec<f32>,
    channels: usize,
    callback: D,
    origin: Instant,
}

impl<D> clock::Tick for OutputTicker<D>
where
    D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
{
    fn tick(&mut self, _n: u64, _start_ns: i128, end_ns: i128) {
        self.buffer.fill(0.0);
        // SAFETY: as for the input ticker; `self.buffer` is exclusively borrowed by `data`.
        let mut data = unsafe {
            Data::from_parts(
                self.buffer.as_mut_ptr().cast(),
                self.buffer.len(),
                SampleFormat::F32,
            )
        };
        let info = OutputCallbackInfo::new(OutputStreamTimestamp {
            callback: stream_instant_of(self.origin, Instant::now()),
            playback: stream_instant(end_ns),
        });
        (self.callback)(&mut data, &info);
        self.sink.consume(&self.buffer, self.channels);
    }
}

/// A running virtual stream. Dropping it stops its clock thread (and, for `wav:` outputs,
/// drains and finalizes the file) before returning.
pub struct VirtualStream {
    shared: Arc<StreamShared>,
    period: FrameCount,
    clock: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
}

impl VirtualStream {
    /// The `Instant` the stream was built: `StreamInstant`s of this stream count from here.
    pub fn origin(&self) -> Instant {
        self.shared.origin()
    }

    /// `t0`: the `Instant` of the first `play()`, if any.
    pub fn started_at(&self) -> Option<Instant> {
        self.shared.started_at()
    }

    /// Frames delivered to (input) or rendered by (output) the data callback so far.
    pub fn frames(&self) -> u64 {
        self.shared.frames()
    }

    /// Period (frames per callback).
    pub fn period(&self) -> FrameCount {
        self.period
    }

    /// Number of xruns (wake-ups more than [`XRUN_THRESHOLD`] late) so far.
    pub fn xruns(&self) -> u64 {
        self.shared.xruns()
    }

    /// Frames a `wav:` output had to drop because its writer thread fell behind.
    pub fn dropped_frames(&self) -> u64 {
        self.shared.dropped_frames()
    }

    /// Whether the stream is currently playing.
    pub fn is_playing(&self) -> bool {
        self.shared.is_playing()
    }
}

impl StreamTrait for VirtualStream {
    fn play(&self) -> Result<(), Error> {
        self.shared.play();
        Ok(())
    }

    fn pause(&self) -> Result<(), Error> {
        self.shared.pause();
        Ok(())
    }

    fn buffer_size(&self) -> Result<FrameCount, Error> {
        Ok(self.period)
    }

    fn now(&self) -> StreamInstant {
        stream_instant_of(self.shared.origin(), Instant::now())
    }
}

impl Drop for VirtualStream {
    fn drop(&mut self) {
        self.shared.request_exit();
        if let Some(clock) = self.clock.take() {
            let _ = clock.join();
        }
        // The clock thread has dropped the ring producer: the writer drains and finalizes.
        if let Some(writer) = self.writer.take() {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }
}

impl fmt::Debug for VirtualStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualStream")
            .field("period", &self.period)
            .field("frames", &self.frames())
            .field("xruns", &self.xruns())
            .finish()
    }
}

/// Path of a `wav:` spec, if it is one (helper for callers that validate paths early).
pub fn wav_path(spec: &str) -> Option<&Path> {
    let spec = spec.trim();
    spec.get(..WAV_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(WAV_PREFIX))
        .map(|_| Path::new(&spec[WAV_PREFIX.len()..]))
}

/// What a `wav:` input plays on a stream of `channels` channels when the file has another
/// channel count (see [`downmix`]); `None` for other devices and for files that fit.
pub fn wav_input_note(spec: &str, channels: u16) -> Option<String> {
    let path = wav_path(spec)?;
    let file_channels = hound::WavReader::open(path).ok()?.spec().channels;
    downmix::describe(usize::from(file_channels), usize::from(channels))
}
