//! End-to-end on a real audio server: JACK with the dummy backend (48 kHz, 64-frame
//! periods, on a private server name). Sender and receiver run on the JACK host;
//! `jack_iodelay` measures the round trip of its test signal through sender → loopback UDP
//! → receiver.
//!
//! The server runs with real-time scheduling (`jackd -R`) when the machine allows it, else
//! as the issue's `jackd -r` (no real-time). On this shared 2-core machine the non-real-time
//! dummy server alone drops cycles (16 xruns in 10 s, BENCHMARKS.md §1), so each client
//! loses audio on its own and the latency jumps between steady stretches. The identity below
//! is a property of patchcord's timeline, and a steady server is what lets a test see it.
//!
//! What is asserted: the round trip measured by `jack_iodelay` (port to port) plus JACK's
//! own capture and playback port latencies (which cpal's timestamps include) equals the
//! end-to-end latency the receiver reports from RTCP, within 0.1 ms, in a steady second.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patchcord_tests::*;

struct Jack {
    server: String,
    proc: Proc,
}

impl Jack {
    fn start(dir: &Path) -> Jack {
        let jackd = Path::new("/usr/bin/jackd");
        assert!(
            jackd.exists(),
            "jackd not installed (apt-get install jackd2); the README's test command installs it"
        );
        // real-time first; the issue's non-real-time command if the machine refuses it
        for (attempt, mode) in ["-R", "-r"].iter().enumerate() {
            let server = format!("patchcord-test-{}-{attempt}", std::process::id());
            let args: Vec<String> = ["-n", &server, mode, "-d", "dummy", "-r", "48000", "-p", "64"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let proc = Proc::spawn(dir, &format!("jackd{attempt}"), jackd, &args);
            let mut jack = Jack { server, proc };
            let start = Instant::now();
            while jack.lsp(&[]).is_empty() {
                if start.elapsed() > Duration::from_secs(8)
                    || jack
                        .proc
                        .child
                        .as_mut()
                        .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
                {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !jack.lsp(&[]).is_empty() {
                eprintln!("jackd {mode} is up");
                return jack;
            }
        }
        panic!("jackd did not come up (neither -R nor -r)");
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("JACK_DEFAULT_SERVER", &self.server)
            .env("JACK_NO_START_SERVER", "1");
        c
    }

    fn lsp(&self, args: &[&str]) -> String {
        self.cmd("jack_lsp")
            .args(args)
            .stderr(Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn wait_for_port(&self, suffix: &str) -> String {
        let start = Instant::now();
        loop {
            if let Some(p) = self.lsp(&[]).lines().find(|l| l.ends_with(suffix)) {
                return p.trim().to_string();
            }
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "no JACK port *{suffix}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn connect(&self, a: &str, b: &str) {
        let ok = self
            .cmd("jack_connect")
            .args([a, b])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "jack_connect {a} {b} failed");
    }

    /// Latency (frames, upper end of the range) JACK reports for a port, in the given
    /// direction ("capture" or "playback"): `port capture latency = [ 64 64 ] frames`.
    fn port_latency(&self, port: &str, direction: &str) -> f64 {
        let out = self.lsp(&["-l", port]);
        let prefix = format!("port {direction} latency = [");
        out.lines()
            .find_map(|l| {
                let rest = l.trim().strip_prefix(&prefix)?;
                rest.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or_else(|| panic!("no {direction} latency for {port}: {out}"))
    }
}

impl Drop for Jack {
    fn drop(&mut self) {
        self.proc.signal("TERM");
        let _ = self.proc.wait(Duration::from_secs(10));
    }
}

#[test]
fn jack_round_trip_matches_reported_latency() {
    round_trip("jack", &[]);
}

/// The same with the render thread two JACK periods ahead of the process callback: the
/// round trip grows by those periods, and the receiver's report still matches it.
#[test]
fn jack_round_trip_with_render_ahead_matches_reported_latency() {
    round_trip("jack_ahead", &["--render-ahead", "2"]);
}

fn round_trip(name: &str, recv_extra: &[&str]) {
    let _serial = serial();
    let dir = scratch(name);
    let jack = Jack::start(&dir);
    let port = free_port_pair();
    let env_args = |extra: &[&str]| -> Vec<String> { extra.iter().map(|s| s.to_string()).collect() };
    let spawn = |name: &str, bin_name: &str, args: Vec<String>| -> Proc {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let child = jack
            .cmd(bin(bin_name).to_str().unwrap())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            name: name.into(),
            stderr_path,
        }
    };
    let mut recv = spawn(
        "recv",
        "patchcord-recv",
        env_args(&[
            "--host",
            "jack",
            "--channels",
            "1",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--latency",
            "6",
            "--duration",
            "14",
            "--stats-json",
            dir.join("recv.json").to_str().unwrap(),
            "-q",
        ])
        .into_iter()
        .chain(recv_extra.iter().map(|a| a.to_string()))
        .collect(),
    );
    let recv_port = jack.wait_for_port("_out:out_0");
    let mut send = spawn(
        "send",
        "patchcord-send",
        env_args(&[
            "--host",
            "jack",
            "--channels",
            "1",
            "--to",
            &format!("127.0.0.1:{port}"),
            "--frame-ms",
            "2.5",
            "--application",
            "lowdelay",
            "--bitrate",
            "256000",
            "--duration",
            "13",
            "--stats-json",
            dir.join("send.json").to_str().unwrap(),
            "-q",
        ]),
    );
    let send_port = jack.wait_for_port("_in:in_0");
    let iodelay_log = dir.join("iodelay.log");
    let mut iodelay = jack
        .cmd("stdbuf")
        .args(["-oL", "timeout", "10", "jack_iodelay"])
        .stdout(std::fs::File::create(&iodelay_log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("jack_iodelay (package jackd2) is needed");
    let start = Instant::now();
    while !jack.lsp(&[]).contains("jack_delay:in") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "jack_iodelay did not register"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    jack.connect("jack_delay:out", &send_port);
    jack.connect(&recv_port, "jack_delay:in");
    let capture_latency = jack.port_latency("system:capture_1", "capture");
    let playback_latency = jack.port_latency("system:playback_1", "playback");
    let _ = iodelay.wait();
    let (ok, err) = send.wait(Duration::from_secs(30));
    assert!(ok, "sender: {err}");
    let (ok, err) = recv.wait(Duration::from_secs(30));
    assert!(ok, "receiver: {err}");

    // jack_iodelay prints "   318.998 frames      6.646 ms total roundtrip latency"
    let log = std::fs::read_to_string(&iodelay_log).unwrap();
    let readings: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("total roundtrip latency"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(readings.len() >= 10, "too few jack_iodelay readings:\n{log}");
    // the most frequent reading (to 0.01 ms): the steady round trip
    let mut counts: std::collections::BTreeMap<i64, usize> = Default::default();
    for r in &readings {
        *counts.entry((r / 48.0 * 100.0).round() as i64).or_default() += 1;
    }
    let (mode_centi_ms, mode_count) = counts
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(k, n)| (*k, *n))
        .unwrap();
    let median_rtt_frames = readings
        .iter()
        .copied()
        .filter(|r| ((r / 48.0 * 100.0).round() as i64) == mode_centi_ms)
        .sum::<f64>()
        / mode_count as f64;
    let rtt_ms = median_rtt_frames / 48.0;
    let recv_stats = read_stats(&dir.join("recv.json"));
    let reported: Vec<f64> = recv_stats
        .iter()
        .filter_map(|r| r["latency_ms"].as_f64())
        .collect();
    let port_ms = (capture_latency + playback_latency) / 48.0;
    let best = reported
        .iter()
        .map(|l| (l - (rtt_ms + port_ms)).abs())
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "jack_iodelay steady {rtt_ms:.3} ms ({mode_count} of {} readings); port latencies {port_ms:.3} ms; reported per second: {reported:?}",
        readings.len()
    );
    assert!(
        best <= 0.1,
        "round trip {rtt_ms:.3} ms + port latencies {port_ms:.3} ms matches no reported latency {reported:?}"
    );
    // never below the codec's floor (2.5 ms frame + 2.5 ms look-ahead); how low it stays on
    // this machine's non-real-time JACK server is measured in BENCHMARKS.md, not asserted
    assert!(rtt_ms > 5.0, "round trip {rtt_ms:.3} ms is below the codec floor");
    let last = recv_stats.last().unwrap();
    assert!(last["played"].as_u64().unwrap_or(0) > 3000, "{last}");
}
