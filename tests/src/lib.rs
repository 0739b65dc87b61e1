//! Harness for the end-to-end tests: find the binaries, pick ports, run processes with a
//! deadline, read their JSON stats, make and analyse signals.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustfft::{num_complex::Complex, FftPlanner};

/// Directory holding `patchcord-send` / `patchcord-recv`: `$PATCHCORD_BIN_DIR`, else the
/// workspace's target directory for the profile these tests were built with.
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PATCHCORD_BIN_DIR") {
        return PathBuf::from(d);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or(root.join("target"));
    target.join(if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    })
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the binaries first (cargo build --release --bins) or set PATCHCORD_BIN_DIR",
        p.display()
    );
    p
}

/// A UDP port on 127.0.0.1 whose successor (RTCP) is also free right now.
pub fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = a.local_addr().unwrap().port();
        if port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free UDP port pair");
}

static SERIAL: Mutex<()> = Mutex::new(());

/// End-to-end tests measure real time on a 2-core machine: run them one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scratch directory under the target dir, fresh for each test.
pub fn scratch(name: &str) -> PathBuf {
    let d = bin_dir().join("e2e").join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A child process that is killed if the test panics.
pub struct Proc {
    pub child: Option<Child>,
    pub name: String,
    pub stderr_path: PathBuf,
}

impl Proc {
    pub fn spawn(dir: &Path, name: &str, program: &Path, args: &[String]) -> Proc {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let err = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Proc {
            child: Some(child),
            name: name.into(),
            stderr_path,
        }
    }

    /// Wait for exit with a deadline; returns (success, stderr).
    pub fn wait(&mut self, deadline: Duration) -> (bool, String) {
        let start = Instant::now();
        let mut child = self.child.take().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let err = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                return (status.success(), err);
            }
            if start.elapsed() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let err = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                panic!("{} did not exit within {deadline:?}; stderr:\n{err}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send SIGTERM (or SIGINT) like a user would.
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait (up to 10 s) until `p` exists: a process has started and opened its output.
pub fn wait_for_file(p: &Path) {
    let start = Instant::now();
    while !p.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} never appeared",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Read JSON-lines stats; returns every record.
pub fn read_stats(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The final record (`"final": true`).
pub fn final_stats(path: &Path) -> serde_json::Value {
    read_stats(path)
        .into_iter()
        .rev()
        .find(|v| v["final"] == serde_json::Value::Bool(true))
        .unwrap_or_else(|| panic!("no final record in {}", path.display()))
}

/// Write a mono or multichannel float WAV at 48 kHz.
pub fn write_wav(path: &Path, channels: u16, interleaved: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in interleaved {
        w.write_sample(*s).unwrap();
    }
    w.finalize().unwrap();
}

/// Read a WAV file; returns (channels, interleaved f32 samples).
pub fn read_wav(path: &Path) -> (u16, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(spec.sample_rate, 48_000);
    let samples = match spec.sample_format {
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap()).collect(),
        hound::SampleFormat::Int => {
            let scale = (1u64 << (spec.bits_per_sample - 1)) as f32;
            r.samples::<i32>().map(|s| s.unwrap() as f32 / scale).collect()
        }
    };
    (spec.channels, samples)
}

/// Channel `ch` of interleaved audio.
pub fn channel(interleaved: &[f32], channels: u16, ch: usize) -> Vec<f32> {
    interleaved
        .iter()
        .skip(ch)
        .step_by(channels as usize)
        .copied()
        .collect()
}

/// Deterministic test signal: a logarithmic chirp 200 Hz → 6 kHz over `seconds`, with
/// a 50 ms fade in and out, amplitude 0.5.
pub fn chirp(seconds: f64) -> Vec<f32> {
    let n = (seconds * 48_000.0) as usize;
    let (f0, f1) = (200.0f64, 6000.0f64);
    let k = (f1 / f0).ln() / seconds;
    (0..n)
        .map(|i| {
            let t = i as f64 / 48_000.0;
            let phase = 2.0 * std::f64::consts::PI * f0 * ((k * t).exp() - 1.0) / k;
            let fade = (t / 0.05).min((seconds - t) / 0.05).clamp(0.0, 1.0);
            (phase.sin() * 0.5 * fade) as f32
        })
        .collect()
}

/// The lag (in samples) at which `y` best matches `x` (y[n] ≈ x[n − lag]), by FFT
/// cross-correlation over lags 0..max_lag.
pub fn best_lag(x: &[f32], y: &[f32], max_lag: usize) -> usize {
    let n = (x.len() + y.len()).next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut a: Vec<Complex<f64>> = (0..n)
        .map(|i| Complex::new(*x.get(i).unwrap_or(&0.0) as f64, 0.0))
        .collect();
    let mut b: Vec<Complex<f64>> = (0..n)
        .map(|i| Complex::new(*y.get(i).unwrap_or(&0.0) as f64, 0.0))
        .collect();
    fwd.process(&mut a);
    fwd.process(&mut b);
    let mut c: Vec<Complex<f64>> = a.iter().zip(&b).map(|(a, b)| a.conj() * b).collect();
    inv.process(&mut c);
    (0..max_lag.min(n))
        .max_by(|&i, &j| c[i].re.total_cmp(&c[j].re))
        .unwrap()
}

/// Signal-to-noise ratio in dB of `y` against the reference `x` (same length).
pub fn snr_db(x: &[f32], y: &[f32]) -> f64 {
    let sig: f64 = x.iter().map(|v| (*v as f64).powi(2)).sum();
    let noise: f64 = x
        .iter()
        .zip(y)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    10.0 * (sig / noise.max(1e-30)).log10()
}
