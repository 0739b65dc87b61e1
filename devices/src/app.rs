//! What both binaries share to be a well-behaved process: the device flags, the setup
//! flags (`--config FILE`, `--generate KIND`), the stats output (`--stats-json PATH|-`), and stopping on Ctrl-C / SIGTERM / `--duration`.

/// `eprintln!` that never panics: a status line or message written to a standard error
/// that was closed (`patchcord-send … 2>&1 | head -1`) is dropped, and the program goes on
/// to stop cleanly (a sender still sends its BYE).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::Duration;

use crate::{HostChoice, VirtualOptions};

/// Device selection flags, identical for `patchcord-send` and `patchcord-recv`.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Audio host: alsa, jack, pulseaudio or virtual. Default: the system's default host,
    /// or the virtual host when --device names a virtual device.
    #[arg(long, value_name = "HOST", default_value = "auto", value_parser = parse_host)]
    pub host: HostChoice,
    /// Device name (case-insensitive substring of a name shown by --list-devices), or a
    /// virtual device: tone:HZ, wav:PATH, silence (inputs); wav:PATH, null (outputs).
    #[arg(long, value_name = "NAME")]
    pub device: Option<String>,
    /// List every host's input and output devices with their supported configurations,
    /// then exit.
    #[arg(long)]
    pub list_devices: bool,
    /// Audio channels: 1 or 2.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=2))]
    pub channels: u16,
    /// Device period in frames (default: 256 on a sound server: PipeWire, PulseAudio, or
    /// ALSA through one; else the device's own default; virtual devices: 128).
    #[arg(long, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(16..=8192))]
    pub period: Option<u32>,
    /// Run virtual devices this many parts per million fast (positive) or slow (negative),
    /// to simulate clock drift between two machines.
    #[arg(long, value_name = "PPM", default_value_t = 0.0, allow_negative_numbers = true, value_parser = parse_ppm)]
    pub clock_ppm: f64,
    /// Do not give the encoder / network thread real-time (SCHED_FIFO) priority.
    #[arg(long)]
    pub no_realtime: bool,
}

/// Setup flags, identical for `patchcord-send` and `patchcord-recv`: what a packager or a
/// service needs.
#[derive(clap::Args, Debug, Clone)]
pub struct SetupArgs {
    /// Read flags from a TOML file whose keys are the long flag names (`latency-min = 20`,
    /// `allow = ["10.0.0.0/8"]`, `quiet = true`); a flag on the command line wins over the
    /// file's.
    #[arg(long, value_name = "FILE", value_hint = clap::ValueHint::FilePath)]
    pub config: Option<std::path::PathBuf>,
    /// Write the man page or a shell's completion to standard output, then exit.
    #[arg(long, value_name = "KIND")]
    pub generate: Option<crate::generate::Generate>,
}

impl DeviceArgs {
    pub fn virtual_options(&self) -> VirtualOptions {
        VirtualOptions {
            clock_ppm: self.clock_ppm,
        }
    }
}

fn parse_host(s: &str) -> Result<HostChoice, String> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(HostChoice::Auto);
    }
    s.parse::<HostChoice>().map_err(|e| e.to_string())
}

fn parse_ppm(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if !v.is_finite() || v.abs() > 100_000.0 {
        return Err("clock offset must be within ±100000 ppm".into());
    }
    Ok(v)
}

/// Parse a duration in seconds (`--duration`): positive and finite.
pub fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of seconds"))?;
    if !v.is_finite() || v <= 0.0 || v > 1.0e7 {
        return Err("duration must be a positive number of seconds".into());
    }
    Ok(v)
}

/// Parse an Opus frame duration in ms (`--frame-ms`): 2.5, 5, 10, 20, 40 or 60.
pub fn parse_frame_ms(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if [2.5, 5.0, 10.0, 20.0, 40.0, 60.0].contains(&v) {
        Ok(v)
    } else {
        Err("frame duration must be one of 2.5, 5, 10, 20, 40, 60 (ms)".into())
    }
}

/// Where JSON-lines statistics go.
pub enum StatsSink {
    None,
    Stdout,
    File(BufWriter<File>),
}

impl StatsSink {
    /// `None` → no output, `-` → standard output, else a file (created or truncated).
    pub fn open(arg: Option<&str>) -> io::Result<Self> {
        match arg {
            None => Ok(StatsSink::None),
            Some("-") => Ok(StatsSink::Stdout),
            Some(path) => File::create(path)
                .map(|f| StatsSink::File(BufWriter::new(f)))
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create stats file '{path}': {e}"))),
        }
    }

    /// Write one record as a line of JSON and flush it.
    pub fn write<T: serde::Serialize>(&mut self, record: &T) -> io::Result<()> {
        let line = |w: &mut dyn Write| -> io::Result<()> {
            serde_json::to_writer(&mut *w, record)?;
            writeln!(w)?;
            w.flush()
        };
        match self {
            StatsSink::None => Ok(()),
            StatsSink::Stdout => line(&mut io::stdout().lock()),
            StatsSink::File(f) => line(f),
        }
    }
}

/// Why the process is stopping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Interrupted,
    Terminated,
    DurationElapsed,
}

/// Resolves on Ctrl-C, SIGTERM, or after `duration`.
pub async fn wait_for_stop(duration: Option<f64>) -> StopReason {
    let sleep = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending::<()>().await,
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => StopReason::Interrupted,
        _ = term => StopReason::Terminated,
        _ = sleep => StopReason::DurationElapsed,
    }
}

/// The stream configuration patchcord opens a device with: 48 kHz, `channels`, f32 when the
/// device offers it (else i16), and `--period` when given (on a sound server, else
/// [`crate::server::SERVER_PERIOD_FRAMES`]). A clear error lists what the device offers
/// when it cannot do that.
pub fn choose_config(
    opened: &crate::OpenedDevice,
    direction: crate::Direction,
    channels: usize,
    period: Option<u32>,
) -> Result<(cpal::StreamConfig, cpal::SampleFormat), String> {
    use cpal::traits::DeviceTrait;
    use cpal::SampleFormat;
    let ranges: Vec<cpal::SupportedStreamConfigRange> = match direction {
        crate::Direction::Input => opened.device.supported_input_configs().map(|r| r.collect()),
        crate::Direction::Output => opened.device.supported_output_configs().map(|r| r.collect()),
    }
    .map_err(|e| format!("cannot query {direction} device '{}': {e}", opened.device_name))?;
    let server = crate::server::Server::of(opened);
    let any_channels = server.is_some_and(crate::server::Server::converts_channels);
    let mut format = None;
    for range in &ranges {
        if (range.channels() as usize == channels || any_channels)
            && range.min_sample_rate() <= 48_000
            && range.max_sample_rate() >= 48_000
        {
            match range.sample_format() {
                SampleFormat::F32 => format = Some(SampleFormat::F32),
                SampleFormat::I16 if format.is_none() => format = Some(SampleFormat::I16),
                _ => {}
            }
        }
    }
    let format = format.ok_or_else(|| {
        let offered: Vec<String> = ranges
            .iter()
            .map(|r| format!("{} ch {}-{} Hz {}", r.channels(), r.min_sample_rate(), r.max_sample_rate(), r.sample_format()))
            .collect();
        format!(
            "{direction} device '{}' on {} does not support {channels} channel(s) at 48000 Hz as f32 or i16; it offers: {}",
            opened.device_name,
            opened.host_name,
            if offered.is_empty() { "nothing".to_string() } else { offered.join(", ") }
        )
    })?;
    let config = cpal::StreamConfig {
        channels: channels as u16,
        sample_rate: 48_000,
        buffer_size: period
            .or(server.map(|_| crate::server::SERVER_PERIOD_FRAMES))
            .map(cpal::BufferSize::Fixed)
            .unwrap_or(cpal::BufferSize::Default),
    };
    Ok((config, format))
}

/// The shared `main` of both binaries: `--list-devices`, else run `run` on a
/// current-thread tokio runtime; errors are printed as `NAME: message` with exit status 1.
pub fn run_main<F>(name: &str, device: &DeviceArgs, run: impl FnOnce() -> F) -> std::process::ExitCode
where
    F: std::future::Future<Output = Result<(), String>>,
{
    use std::process::ExitCode;
    if device.list_devices {
        let mut out = io::stdout().lock();
        return match crate::list_devices(&mut out, device.virtual_options()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                crate::say!("{name}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::say!("{name}: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            crate::say!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The RTCP SDES CNAME of this process (RFC 3550 §6.5.1): `pid@host`, unique on the
/// network for as long as it runs.
pub fn rtcp_cname() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    format!(
        "{}@{}",
        std::process::id(),
        if host.is_empty() { "localhost" } else { host }
    )
}
