//! What both binaries share to be a well-behaved process: the device flags, the stats
//! output (`--stats-json PATH|-`), and stopping on Ctrl-C / SIGTERM / `--duration`.

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
    /// Device period in frames (default: the device's own default; virtual devices: 128).
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

    /// Write one JSON object as a line and flush it.
    pub fn write(&mut self, value: &serde_json::Value) -> io::Result<()> {
        match self {
            StatsSink::None => Ok(()),
            StatsSink::Stdout => {
                let mut out = io::stdout().lock();
                writeln!(out, "{value}")?;
                out.flush()
            }
            StatsSink::File(f) => {
                writeln!(f, "{value}")?;
                f.flush()
            }
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
