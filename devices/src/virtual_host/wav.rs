//! WAV file loading (virtual `wav:` input) and the writer thread (virtual `wav:` output).

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use cpal::{Error, ErrorKind};
use hound::{SampleFormat as WavFormat, WavReader, WavSpec, WavWriter};

use super::{clock::ErrorSink, SAMPLE_RATE};
use crate::DeviceError;

/// A whole WAV file decoded to interleaved `f32` samples.
#[derive(Clone, PartialEq)]
pub struct WavData {
    /// Channel count of the file.
    pub channels: u16,
    /// Interleaved samples, `frames() * channels` long.
    pub samples: Vec<f32>,
}

impl WavData {
    /// Number of frames in the file.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

impl std::fmt::Debug for WavData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavData")
            .field("channels", &self.channels)
            .field("frames", &self.frames())
            .finish()
    }
}

/// Load a whole WAV file (any integer or float format) as `f32`. The file must be 48000 Hz.
pub fn load_wav(path: &Path) -> Result<WavData, DeviceError> {
    let shown = path.display().to_string();
    let read_err = |e: hound::Error| DeviceError::WavRead {
        path: shown.clone(),
        reason: e.to_string(),
    };
    let reader = WavReader::open(path).map_err(read_err)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE {
        return Err(DeviceError::WavSampleRate {
            path: shown,
            rate: spec.sample_rate,
        });
    }
    if spec.channels == 0 {
        return Err(DeviceError::WavRead {
            path: shown,
            reason: "file declares 0 channels".into(),
        });
    }
    let samples: Vec<f32> = match spec.sample_format {
        WavFormat::Float => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(read_err)?,
        WavFormat::Int => {
            let bits = spec.bits_per_sample;
            if !(1..=32).contains(&bits) {
                return Err(DeviceError::WavRead {
                    path: shown,
                    reason: format!("unsupported integer sample size {bits} bits"),
                });
            }
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .into_samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(read_err)?
        }
    };
    Ok(WavData {
        channels: spec.channels,
        samples,
    })
}

/// Create the output file (so a bad path fails at stream build time).
pub fn create_writer(path: &Path, channels: u16) -> Result<WavWriter<BufWriter<File>>, Error> {
    let spec = WavSpec {
        channels,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 32,
        sample_format: WavFormat::Float,
    };
    WavWriter::create(path, spec).map_err(|e| {
        Error::with_message(
            ErrorKind::InvalidInput,
            format!("cannot create wav:{}: {e}", path.display()),
        )
    })
}

/// How often the writer brings the WAV header up to date: a process killed outright
/// (SIGKILL, power cut) leaves a file any reader opens, missing at most this much audio
/// (and what the operating system had not written yet).
pub const HEADER_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// Spawn the thread that drains `consumer` into `writer`, brings the header's sizes up to
/// date every [`HEADER_UPDATE_INTERVAL`], and finalizes the file once the producer side
/// (owned by the clock thread) is gone.
pub fn spawn_writer(
    path: PathBuf,
    mut writer: WavWriter<BufWriter<File>>,
    mut consumer: rtrb::Consumer<f32>,
    errors: ErrorSink,
) -> std::io::Result<JoinHandle<()>> {
    let path: Arc<str> = path.display().to_string().into();
    std::thread::Builder::new()
        .name("patchcord-wav-writer".into())
        .spawn(move || {
            let mut failed = false;
            let mut header_updated = std::time::Instant::now();
            loop {
                // Check before draining, so everything pushed before abandonment is written.
                let abandoned = consumer.is_abandoned();
                let available = consumer.slots();
                if available > 0 {
                    if let Ok(chunk) = consumer.read_chunk(available) {
                        let (a, b) = chunk.as_slices();
                        for &s in a.iter().chain(b) {
                            if failed {
                                break;
                            }
                            if let Err(e) = writer.write_sample(s) {
                                failed = true;
                                errors.report(Error::with_message(
                                    ErrorKind::Other,
                                    format!("writing wav:{path} failed: {e}; recording stopped"),
                                ));
                            }
                        }
                        chunk.commit_all();
                    }
                }
                if abandoned {
                    break;
                }
                if !failed && header_updated.elapsed() >= HEADER_UPDATE_INTERVAL {
                    header_updated = std::time::Instant::now();
                    // hound's flush: header sizes rewritten, buffers written out
                    if let Err(e) = writer.flush() {
                        failed = true;
                        errors.report(Error::with_message(
                            ErrorKind::Other,
                            format!("writing wav:{path} failed: {e}; recording stopped"),
                        ));
                    }
                }
                std::thread::park_timeout(Duration::from_millis(5));
            }
            if let Err(e) = writer.finalize() {
                errors.report(Error::with_message(
                    ErrorKind::Other,
                    format!("finalizing wav:{path} failed: {e}"),
                ));
            }
        })
}
