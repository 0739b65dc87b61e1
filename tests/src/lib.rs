//! Harness for the end-to-end tests: find the binaries, pick ports, run processes with a
//! deadline, read their JSON stats, make and analyse signals.

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rustfft::{num_complex::Complex, FftPlanner};

pub mod jack_flags;

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
        let mut cmd = Command::new(program);
        cmd.args(args);
        Proc::start(dir, name, cmd)
    }

    /// Start `cmd` (its program, arguments and environment), stdout discarded and stderr
    /// kept in `dir/NAME.stderr`.
    pub fn start(dir: &Path, name: &str, mut cmd: Command) -> Proc {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let err = std::fs::File::create(&stderr_path).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
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

    /// Stop it the way an init system would: SIGTERM, up to `grace` to exit, then SIGKILL.
    /// Returns whether it exited within `grace`. Never panics (it runs in `Drop`s, where a
    /// second panic would abort the whole test binary).
    pub fn stop(&mut self, grace: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < grace {
            if !matches!(child.try_wait(), Ok(None)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("{} ignored SIGTERM for {grace:?}; killed", self.name);
        let _ = child.kill();
        let _ = child.wait();
        false
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

/// Run `cmd` to its end and return its output, or `None` if it could not start or had
/// not ended within `limit` (then it is killed). For tools that talk to a server under
/// test (`jack_lsp` blocks for good on a JACK server that stopped answering).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Option<std::process::Output> {
    let child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).spawn().ok()?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.ok(),
        Err(_) => {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            None
        }
    }
}

/// `patchcord-recv ARGS --stats-json DIR/NAME.json -q`, returned once it listens (its
/// stats file exists).
pub fn start_recv(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let p = start_patchcord(dir, name, "patchcord-recv", args);
    wait_for_file(&dir.join(format!("{name}.json")));
    p
}

/// `patchcord-send ARGS --stats-json DIR/NAME.json -q`.
pub fn start_send(dir: &Path, name: &str, args: &[&str]) -> Proc {
    start_patchcord(dir, name, "patchcord-send", args)
}

fn start_patchcord(dir: &Path, name: &str, program: &str, args: &[&str]) -> Proc {
    let json = dir.join(format!("{name}.json")).display().to_string();
    let args: Vec<String> = args
        .iter()
        .copied()
        .chain(["--stats-json", &json, "-q"])
        .map(String::from)
        .collect();
    Proc::spawn(dir, name, &bin(program), &args)
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

/// A peer tool from a Debian package (GStreamer, ffmpeg), in /usr/bin.
pub fn tool(name: &str) -> std::path::PathBuf {
    let p = std::path::Path::new("/usr/bin").join(name);
    assert!(
        p.exists(),
        "{name} not installed; the README's test command installs it (gstreamer1.0-tools, ffmpeg)"
    );
    p
}

/// Seconds during which a tone of `freq` is present in `samples` (mono), by 10 ms windows.
pub fn seconds_of_tone(samples: &[f32], freq: f64) -> f64 {
    samples
        .chunks(480)
        .filter(|c| c.len() == 480 && goertzel_amplitude(c, freq) > 0.05)
        .count() as f64
        * 0.01
}

/// Amplitude of a tone of `freq` in `samples` (mono): the median over the 10 ms windows
/// where it is present (see [`seconds_of_tone`]); 0 when it is nowhere.
pub fn tone_amplitude(samples: &[f32], freq: f64) -> f64 {
    let mut a: Vec<f64> = samples
        .chunks(480)
        .filter(|c| c.len() == 480)
        .map(|c| goertzel_amplitude(c, freq))
        .filter(|&a| a > 0.025)
        .collect();
    a.sort_by(f64::total_cmp);
    a.get(a.len() / 2).copied().unwrap_or(0.0)
}

fn goertzel_amplitude(x: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    2.0 * (s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2).max(0.0).sqrt() / x.len() as f64
}

/// `len` samples of `x` from `start`, played `rate_offset` faster about the piece's middle
/// (cubic interpolation): what a delay gliding at that rate makes of it.
pub fn glided(x: &[f32], start: usize, len: usize, rate_offset: f64) -> Vec<f32> {
    let mid = len as f64 / 2.0;
    (0..len)
        .map(|n| {
            let p = start as f64 + n as f64 + (n as f64 - mid) * rate_offset;
            let i = p.floor() as usize;
            let t = p - i as f64;
            let y = |k: usize| x.get(k).copied().unwrap_or(0.0) as f64;
            let (y0, y1, y2, y3) = (y(i.saturating_sub(1)), y(i), y(i + 1), y(i + 2));
            let a1 = -y0 / 3.0 - y1 / 2.0 + y2 - y3 / 6.0;
            let a2 = (y0 + y2) / 2.0 - y1;
            let a3 = (y1 - y2) / 2.0 + (y3 - y0) / 6.0;
            (y1 + t * (a1 + t * (a2 + t * a3))) as f32
        })
        .collect()
}

/// Taps of the fractional-delay fit in [`fractional_snr_db`].
pub const TAPS: usize = 4;

/// SNR of `y` against `x` delayed by a fraction of a sample: `y[n + TAPS/2] ≈ Σ h[k]·x[n − k]`
/// (k < TAPS), `h` fitted by least squares. `y` holds `TAPS/2` samples more than `x`, in
/// front, and `TAPS/2` after.
pub fn fractional_snr_db(x: &[f32], y: &[f32]) -> f64 {
    let (mut a, mut r) = ([[0f64; TAPS]; TAPS], [0f64; TAPS]);
    let xs = |n: usize, k: usize| x[n - k] as f64;
    for n in TAPS..x.len() {
        let t = y[n + TAPS / 2 - 1] as f64;
        for (i, (ri, ai)) in r.iter_mut().zip(a.iter_mut()).enumerate() {
            *ri += xs(n, i) * t;
            for (j, aij) in ai.iter_mut().enumerate() {
                *aij += xs(n, i) * xs(n, j);
            }
        }
    }
    // Gaussian elimination (the matrix is symmetric positive definite for a chirp)
    for c in 0..TAPS {
        for row in c + 1..TAPS {
            let f = a[row][c] / a[c][c];
            let pivot = a[c];
            for (x, p) in a[row][c..].iter_mut().zip(&pivot[c..]) {
                *x -= f * p;
            }
            r[row] -= f * r[c];
        }
    }
    let mut h = [0f64; TAPS];
    for c in (0..TAPS).rev() {
        let s: f64 = (c + 1..TAPS).map(|k| a[c][k] * h[k]).sum();
        h[c] = (r[c] - s) / a[c][c];
    }
    let (mut sig, mut err) = (0f64, 0f64);
    for n in TAPS..x.len() {
        let t = y[n + TAPS / 2 - 1] as f64;
        let e = t - (0..TAPS).map(|k| h[k] * xs(n, k)).sum::<f64>();
        sig += t * t;
        err += e * e;
    }
    10.0 * (sig / err.max(1e-30)).log10()
}

/// How `patchcord-impair` treats the packets, and what the sender sends through it.
pub struct Impairment<'a> {
    /// The sender's input device (`tone:HZ`, `wav:PATH`).
    pub input: String,
    /// Seconds the sender runs; the proxy runs 3 s and the receiver 4 s longer.
    pub send_secs: f64,
    pub profile: &'a str,
    pub seed: u64,
}

impl Default for Impairment<'_> {
    /// A 440 Hz tone for 8 s through 5 % loss, 60 ms delay and 20 ms jitter, seed 42.
    fn default() -> Self {
        Impairment {
            input: "tone:440".into(),
            send_secs: 8.0,
            profile: "loss=5%,delay=60ms,jitter=20ms",
            seed: 42,
        }
    }
}

/// What a run through the proxy left: the final JSON records of the receiver, the proxy
/// and the sender, the received audio (mono) and the directory holding everything
/// (`recv.json` with every record, `timeline.csv`).
pub struct ImpairedRun {
    pub recv: serde_json::Value,
    pub proxy: serde_json::Value,
    pub send: serde_json::Value,
    pub samples: Vec<f32>,
    pub dir: PathBuf,
}

/// The real sender → `patchcord-impair` → the real receiver (mono, `wav:` output, adaptive
/// delay unless `recv_extra` says otherwise), in `dir`. Does not take [`serial`]: the
/// caller does if it measures time tightly.
pub fn run_impaired(dir: &Path, imp: &Impairment, send_extra: &[&str], recv_extra: &[&str]) -> ImpairedRun {
    let recv_port = free_port_pair();
    let proxy_port = free_port_pair();
    let s = |x: &str| x.to_string();
    let out = dir.join("out.wav");
    let mut rargs = vec![
        s("--listen"),
        format!("127.0.0.1:{recv_port}"),
        s("--device"),
        format!("wav:{}", out.display()),
        s("--channels"),
        s("1"),
        s("--duration"),
        format!("{}", imp.send_secs + 4.0),
        s("--stats-json"),
        dir.join("recv.json").display().to_string(),
        s("--timeline"),
        dir.join("timeline.csv").display().to_string(),
        s("-q"),
    ];
    rargs.extend(recv_extra.iter().map(|a| a.to_string()));
    let mut recv = Proc::spawn(dir, "recv", &bin("patchcord-recv"), &rargs);
    wait_for_file(&dir.join("recv.json"));
    let mut proxy = Proc::spawn(
        dir,
        "proxy",
        &bin("patchcord-impair"),
        &[
            s("--listen"),
            format!("127.0.0.1:{proxy_port}"),
            s("--to"),
            format!("127.0.0.1:{recv_port}"),
            s("--profile"),
            s(imp.profile),
            s("--seed"),
            imp.seed.to_string(),
            s("--duration"),
            format!("{}", imp.send_secs + 3.0),
            s("--realtime"),
            s("--quiet"),
            s("--stats-json"),
            dir.join("proxy.json").display().to_string(),
        ],
    );
    wait_for_file(&dir.join("proxy.json"));
    let mut sargs = vec![
        s("--to"),
        format!("127.0.0.1:{proxy_port}"),
        s("--device"),
        imp.input.clone(),
        s("--channels"),
        s("1"),
        s("--duration"),
        imp.send_secs.to_string(),
        s("--stats-json"),
        dir.join("send.json").display().to_string(),
        s("-q"),
    ];
    sargs.extend(send_extra.iter().map(|a| a.to_string()));
    let mut send = Proc::spawn(dir, "send", &bin("patchcord-send"), &sargs);
    for (p, what) in [
        (&mut send, "sender"),
        (&mut proxy, "proxy"),
        (&mut recv, "receiver"),
    ] {
        let (ok, err) = p.wait(Duration::from_secs(60 + imp.send_secs as u64));
        assert!(ok, "{what} failed: {err}");
    }
    let (_, samples) = read_wav(&out);
    ImpairedRun {
        recv: final_stats(&dir.join("recv.json")),
        proxy: final_stats(&dir.join("proxy.json")),
        send: final_stats(&dir.join("send.json")),
        samples,
        dir: dir.to_path_buf(),
    }
}

/// The sequence numbers in a JSON array (the proxy's `dropped_seqs`, `duplicated_seqs`).
pub fn seqs(v: &serde_json::Value) -> std::collections::BTreeSet<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}

/// The receiver's counters equal what the proxy did: every packet it delivered arrived,
/// RFC 3550 loss = its drops (bar drops before the first and after the last delivered
/// packet, which no receiver can see), and every packet missing at its playout time was
/// dropped or late.
pub fn assert_counters_match_proxy(run: &ImpairedRun) {
    let (r, p, s) = (&run.recv, &run.proxy, &run.send);
    let dropped = seqs(&p["dropped_seqs"]);
    assert!(!dropped.is_empty(), "the proxy dropped nothing: {p}");
    assert_eq!(
        p["received"], s["packets_sent"],
        "proxy saw every packet the sender sent"
    );
    // everything the proxy delivered arrived, and nothing else
    assert_eq!(r["packets_received"], p["delivered"], "recv {r}\nproxy {p}");
    assert_eq!(r["duplicates"].as_u64(), Some(0));
    let lost = r["lost"].as_u64().unwrap();
    assert!(
        lost <= dropped.len() as u64 && lost + 3 >= dropped.len() as u64,
        "lost {lost} vs proxy {}",
        dropped.len()
    );
    // every missing packet was dropped by the proxy or arrived late (not `lost + late`:
    // when the first two packets arrive swapped, RFC 3550 A.1 takes the second as the
    // base and `lost` is one short of the drops, which `missing` still counts)
    let missing = r["missing"].as_u64().unwrap();
    let late = r["late"].as_u64().unwrap();
    assert!(
        missing <= dropped.len() as u64 + late,
        "missing {missing} dropped {} late {late}",
        dropped.len()
    );
    assert!(missing + 3 >= lost, "missing {missing} lost {lost}");
}

/// What one `patchcord-selftest` run printed and wrote.
pub struct SelfTest {
    pub success: bool,
    pub stdout: String,
    /// Its `--stats-json` object.
    pub result: serde_json::Value,
}

/// Run `patchcord-selftest` with `args` (plus `--stats-json`, `--keep` in `dir` and
/// `--bin-dir`), with `env` set.
pub fn run_selftest(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> SelfTest {
    let json = dir.join("selftest.json");
    let _ = std::fs::remove_file(&json);
    let out = Command::new(bin("patchcord-selftest"))
        .args(args)
        .arg("--stats-json")
        .arg(&json)
        .arg("--keep")
        .arg(dir)
        .arg("--bin-dir")
        .arg(bin_dir())
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run patchcord-selftest");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("patchcord-selftest {args:?}:\n{stdout}");
    let result = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    SelfTest {
        success: out.status.success(),
        stdout,
        result,
    }
}
