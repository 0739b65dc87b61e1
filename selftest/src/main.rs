//! `patchcord-selftest`: check patchcord on this machine, through a real audio path.
//!
//! It starts patchcord-recv and patchcord-send on one host, plays a test signal
//! ([`sequence`]) into the sender's input, records the receiver's output, finds the signal in
//! the recording ([`analysis`]) and prints the round trip it measured next to the end-to-end
//! latency the receiver reported, the glitches it heard, and PASS or FAIL (exit 0 or 1; 2
//! when it could not run at all).
//!
//! Two audio paths:
//! - **JACK** ([`jack_loop`]): the self-test is a JACK client; its `out` port feeds the
//!   sender (`--connect`), the receiver plays into its `in` port. The lag it measures is port
//!   to port; the receiver's figure adds the latencies JACK gives the binaries' own ports
//!   (patchcord's JACK host counts those: the capture latency of the sender's port, and the
//!   playback latency of the receiver's), so the self-test compares measured + those with
//!   the report.
//! - **Virtual devices**: the sender reads the signal from `wav:`, the receiver records to
//!   `wav:`. Their sample-accurate clocks and the start instants both binaries report
//!   (`capture_start_unix_ns`, `output_start_unix_ns`) turn the lag between the two files
//!   into an end-to-end latency.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod analysis;
mod jack_loop;
mod peers;
mod sequence;

/// Tests run the JACK process step under an allocator that counts allocations.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

use std::io::Write as _;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{CommandFactory, Parser, ValueEnum};
use patchcord_devices::say;
use serde_json::{json, Value};

use analysis::{analyse, Analysis, WINDOW};
use jack_loop::JackLoop;
use peers::{program, Peer};
use sequence::{test_sequence, SAMPLE_RATE};

/// The longest round trip the self-test looks for.
const MAX_ROUND_TRIP_S: f64 = 1.0;
/// Seconds beyond the signal after which the binaries stop by themselves (`--duration`),
/// and the JACK path gives up, whatever happens to the self-test.
const BACKSTOP_S: f64 = 60.0;
/// Silence before the signal in the virtual sender's input file, while the stream starts.
const VIRTUAL_LEAD_S: f64 = 1.0;

#[derive(Parser, Debug)]
#[command(
    name = "patchcord-selftest",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PATCHCORD_COMMIT"), ")"),
    about = "Check patchcord on this machine: a test signal through patchcord-send and \
             patchcord-recv, its round trip and glitches measured and compared with the \
             latency the receiver reports; PASS (exit 0) or FAIL (exit 1)"
)]
struct Args {
    /// Audio path: jack (the self-test is a JACK client between the two binaries; needs a
    /// running JACK server) or virtual (the binaries' wav: devices).
    #[arg(long, value_enum, default_value_t = AudioPath::Jack)]
    host: AudioPath,
    /// Seconds of test signal.
    #[arg(long, value_name = "SECS", default_value_t = 5.0, value_parser = parse_signal_seconds)]
    seconds: f64,
    /// Largest difference between the measured and the reported latency that passes, in ms.
    #[arg(long, value_name = "MS", default_value_t = 0.5)]
    tolerance_ms: f64,
    /// Glitches (dropouts, time jumps) that still pass.
    #[arg(long, value_name = "N", default_value_t = 0)]
    max_glitches: usize,
    /// UDP port patchcord-recv listens on (RTCP on the next one). Default: a free one.
    #[arg(long, value_name = "PORT")]
    port: Option<u16>,
    /// Send the stream to HOST:PORT instead of straight to the receiver, e.g. through an
    /// impairment proxy that forwards to --port.
    #[arg(long, value_name = "HOST:PORT")]
    to: Option<String>,
    /// One more argument for patchcord-send, after the self-test's own (repeat it:
    /// --send-arg=--bitrate --send-arg=128000).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    send_arg: Vec<String>,
    /// One more argument for patchcord-recv, after the self-test's own (repeat it:
    /// --recv-arg=--render-ahead --recv-arg=2).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    recv_arg: Vec<String>,
    /// Directory holding patchcord-send and patchcord-recv. Default: this program's own
    /// directory when they are there, else PATH.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    bin_dir: Option<PathBuf>,
    /// Keep the work files (signal, recording, the binaries' stats and standard error) in
    /// DIR instead of a temporary directory that is removed.
    #[arg(long, value_name = "DIR", value_hint = clap::ValueHint::DirPath)]
    keep: Option<PathBuf>,
    /// Also write the result as one JSON object to PATH (- for standard output).
    #[arg(long, value_name = "PATH")]
    stats_json: Option<String>,
    /// Write the man page or a shell's completion to standard output, then exit.
    #[arg(long, value_name = "KIND")]
    generate: Option<patchcord_devices::generate::Generate>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum AudioPath {
    Jack,
    Virtual,
}

fn parse_signal_seconds(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (1.0..=600.0).contains(&v) => Ok(v),
        _ => Err("the test signal lasts 1 to 600 seconds".into()),
    }
}

/// The flags the self-test gives the binaries on every path, as (flag, value): mono, 2.5 ms
/// low-delay frames at a bit rate that keeps the waveform, a fixed 6 ms receive buffer.
/// A flag the user gives (`--send-arg`, `--recv-arg`) replaces the one here.
const SEND_FLAGS: &[(&str, &str)] = &[
    ("--channels", "1"),
    ("--frame-ms", "2.5"),
    ("--application", "lowdelay"),
    ("--bitrate", "256000"),
];
const RECV_FLAGS: &[(&str, &str)] = &[("--channels", "1"), ("--latency", "6")];

/// What a run measured, and what it went wrong with.
struct Outcome {
    report: Vec<String>,
    failures: Vec<String>,
    json: Value,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(kind) = args.generate {
        return patchcord_devices::generate::print(kind, Args::command());
    }
    let (dir, temporary) = match &args.keep {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("patchcord-selftest-{}", std::process::id())),
            true,
        ),
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        say!("patchcord-selftest: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let result = run(&args, &dir);
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            say!("patchcord-selftest: {e}");
            return ExitCode::from(2);
        }
    };
    // the verdict is also the exit code: a closed standard output does not stop it
    let mut out = std::io::stdout().lock();
    for line in &outcome.report {
        let _ = writeln!(out, "{line}");
    }
    for f in &outcome.failures {
        let _ = writeln!(out, "FAIL: {f}");
    }
    let pass = outcome.failures.is_empty();
    if pass {
        let _ = writeln!(out, "PASS");
    }
    if let Some(path) = &args.stats_json {
        let mut json = outcome.json;
        json["pass"] = json!(pass);
        json["failures"] = json!(outcome.failures);
        let text = format!("{json}\n");
        let written = match path.as_str() {
            "-" => out.write_all(text.as_bytes()),
            p => std::fs::write(p, text),
        };
        if let Err(e) = written {
            say!("patchcord-selftest: cannot write {path}: {e}");
            return ExitCode::from(2);
        }
    }
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run(args: &Args, dir: &Path) -> Result<Outcome, String> {
    let port = match args.port {
        Some(p) => p,
        None => free_port_pair().ok_or("no free UDP port pair on 127.0.0.1")?,
    };
    let listen = format!("127.0.0.1:{port}");
    let to = args.to.clone().unwrap_or_else(|| listen.clone());
    let signal = test_sequence(args.seconds);
    match args.host {
        AudioPath::Jack => run_jack(args, dir, &listen, &to, signal),
        AudioPath::Virtual => run_virtual(args, dir, &listen, &to, signal),
    }
}

/// The base flags the user does not give, a `--duration` backstop, the path's own, then
/// the user's.
fn flags(base: &[(&str, &str)], seconds: f64, own: &[String], user: &[String]) -> Vec<String> {
    let given = |flag: &str| {
        user.iter()
            .any(|u| u == flag || u.strip_prefix(flag).is_some_and(|rest| rest.starts_with('=')))
    };
    base.iter()
        .filter(|(flag, _)| !given(flag))
        .flat_map(|(flag, value)| [flag.to_string(), value.to_string()])
        .chain(["--duration".into(), format!("{}", seconds + BACKSTOP_S)])
        .chain(own.iter().cloned())
        .chain(user.iter().cloned())
        .collect()
}

fn run_jack(args: &Args, dir: &Path, listen: &str, to: &str, signal: Vec<f32>) -> Result<Outcome, String> {
    // a JACK server that stops answering blocks its clients' calls for good (seen once,
    // with jackd wedged under load): give up then, rather than hang
    let limit = args.seconds + BACKSTOP_S;
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs_f64(limit));
        say!("patchcord-selftest: the JACK server stopped answering; gave up after {limit:.0} s");
        std::process::exit(2);
    });
    let tail = (MAX_ROUND_TRIP_S * SAMPLE_RATE as f64) as usize;
    let jack = JackLoop::open("patchcord-selftest", signal.clone(), tail)?;
    let (out_port, in_port) = (jack.out_port.clone(), jack.in_port.clone());
    let s = |v: &str| v.to_string();
    let mut recv = Peer::spawn(
        "patchcord-recv",
        &program(args.bin_dir.as_deref(), "patchcord-recv"),
        &flags(
            RECV_FLAGS,
            args.seconds,
            &[
                s("--host"),
                s("jack"),
                s("--listen"),
                s(listen),
                s("--connect"),
                jack.in_port.clone(),
            ],
            &args.recv_arg,
        ),
        dir,
        &[],
    )?;
    let mut send = Peer::spawn(
        "patchcord-send",
        &program(args.bin_dir.as_deref(), "patchcord-send"),
        &flags(
            SEND_FLAGS,
            args.seconds,
            &[
                s("--host"),
                s("jack"),
                s("--to"),
                s(to),
                s("--connect"),
                jack.out_port.clone(),
            ],
            &args.send_arg,
        ),
        dir,
        &[],
    )?;
    let Some(wiring) = jack.wait_for_wiring(Duration::from_secs(15)) else {
        let mut failures = Vec::new();
        for peer in [&mut recv, &mut send] {
            let state = match peer.exited() {
                Some(status) => format!("exited ({status})"),
                None => "runs".into(),
            };
            failures.push(format!(
                "{} did not connect to the self-test's ports within 15 s; it {state}; its last words:\n{}",
                peer.name,
                peer.stderr_tail(5)
            ));
        }
        return Ok(Outcome {
            report: vec![],
            failures,
            json: json!({"host": "jack"}),
        });
    };
    // the receiver reports an end-to-end latency once the sender's first SR has arrived
    settle(&recv, Duration::from_secs(5));
    let records_before = recv.records().len();
    jack.start();
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds + MAX_ROUND_TRIP_S + 10.0);
    while !jack.done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let xruns = jack.xruns();
    let recording = jack.finish()?;
    let send_ok = send.stop(Duration::from_secs(10));
    let recv_ok = recv.stop(Duration::from_secs(10));
    if args.keep.is_some() {
        write_wav(&dir.join("signal.wav"), &signal)?;
        write_wav(&dir.join("recording.wav"), &recording)?;
    }
    let a = analyse(&signal, &recording, tail);
    let reported: Vec<f64> = recv
        .records()
        .iter()
        .skip(records_before)
        .filter_map(|r| r["latency_ms"].as_f64())
        .collect();
    let rate = wiring.sample_rate as f64 / 1000.0;
    let capture = wiring.sender_ports.iter().map(|p| p.1).max().unwrap_or(0);
    let playback = wiring.receiver_ports.iter().map(|p| p.1).max().unwrap_or(0);
    let ports_ms = (capture + playback) as f64 / rate;
    let mut o = verdict(
        args,
        &a,
        rate,
        "round trip, port to port",
        ports_ms,
        "the JACK latencies of the binaries' ports",
        &reported,
        &send,
        &recv,
        [send_ok, recv_ok],
    );
    o.report.insert(
        0,
        format!(
            "patchcord-selftest: JACK, {} Hz, {}-frame periods; {out_port} → {} (patchcord-send) → UDP {to} → (patchcord-recv) {} → {in_port}",
            wiring.sample_rate,
            wiring.period,
            port_names(&wiring.sender_ports),
            port_names(&wiring.receiver_ports)
        ),
    );
    o.report.push(format!(
        "JACK port latencies: capture {capture} frames at patchcord-send's port, playback {playback} at patchcord-recv's; JACK xruns during the test: {xruns}"
    ));
    if xruns > 0 && o.failures.iter().any(|f| f.contains("latency report is off")) {
        let periods = o.json["difference_ms"].as_f64().unwrap_or(0.0) * rate / wiring.period as f64;
        o.failures.push(format!(
            "JACK reported {xruns} xruns during the test: in an xrun JACK's clock moves on while \
             the audio does not, and the receiver's readings are off by whole periods (here \
             {periods:+.2}); run it again on a quieter machine, or with jackd -R"
        ));
    }
    o.json["host"] = json!("jack");
    o.json["period_frames"] = json!(wiring.period);
    o.json["jack_xruns"] = json!(xruns);
    Ok(o)
}

fn port_names(ports: &[(String, u32)]) -> String {
    let names: Vec<&str> = ports.iter().map(|p| p.0.as_str()).collect();
    names.join(", ")
}

fn run_virtual(args: &Args, dir: &Path, listen: &str, to: &str, signal: Vec<f32>) -> Result<Outcome, String> {
    let lead = (VIRTUAL_LEAD_S * SAMPLE_RATE as f64) as usize;
    let input = dir.join("signal.wav");
    let output = dir.join("recording.wav");
    let mut file = vec![0.0; lead];
    file.extend_from_slice(&signal);
    write_wav(&input, &file)?;
    let _ = std::fs::remove_file(&output);
    let s = |v: &str| v.to_string();
    let mut recv = Peer::spawn(
        "patchcord-recv",
        &program(args.bin_dir.as_deref(), "patchcord-recv"),
        &flags(
            RECV_FLAGS,
            args.seconds,
            &[
                s("--listen"),
                s(listen),
                s("--device"),
                format!("wav:{}", output.display()),
            ],
            &args.recv_arg,
        ),
        dir,
        &[],
    )?;
    // the receiver is listening once it writes its first record
    let start = Instant::now();
    while recv.records().is_empty() && recv.exited().is_none() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut send = Peer::spawn(
        "patchcord-send",
        &program(args.bin_dir.as_deref(), "patchcord-send"),
        &flags(
            SEND_FLAGS,
            args.seconds,
            &[
                s("--to"),
                s(to),
                s("--device"),
                format!("wav:{}", input.display()),
            ],
            &args.send_arg,
        ),
        dir,
        &[],
    )?;
    std::thread::sleep(Duration::from_secs_f64(
        VIRTUAL_LEAD_S + args.seconds + MAX_ROUND_TRIP_S,
    ));
    let send_ok = send.stop(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    let recv_ok = recv.stop(Duration::from_secs(10));
    let recording = read_wav(&output).unwrap_or_default();
    // the recording starts when the receiver does, before the sender: any lag in it
    let a = analyse(&signal, &recording, recording.len());
    let reported: Vec<f64> = recv
        .records()
        .iter()
        .filter_map(|r| r["latency_ms"].as_f64())
        .collect();
    // file positions → wall time: frame n of a file is at its stream's start + n / 48 kHz
    let capture0 = send.last_record()["capture_start_unix_ns"].as_f64();
    let output0 = recv.last_record()["output_start_unix_ns"].as_f64();
    let rate = SAMPLE_RATE as f64 / 1000.0;
    let starts_ms = match (capture0, output0) {
        (Some(c), Some(o)) => (o - c) / 1e6 - lead as f64 / rate,
        _ => f64::NAN,
    };
    let mut o = verdict(
        args,
        &a,
        rate,
        "lag of the recording behind the signal file",
        starts_ms,
        "the receiver's start less the sender's, less the file's lead-in",
        &reported,
        &send,
        &recv,
        [send_ok, recv_ok],
    );
    o.report.insert(
        0,
        format!(
            "patchcord-selftest: virtual devices; wav:{} → patchcord-send → UDP {to} → patchcord-recv → wav:",
            input.display()
        ),
    );
    o.json["host"] = json!("virtual");
    Ok(o)
}

/// Wait until the receiver reports an end-to-end latency (at most `deadline`).
fn settle(recv: &Peer, deadline: Duration) {
    let start = Instant::now();
    while start.elapsed() < deadline {
        if recv.last_record()["latency_ms"].is_number() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Judge a run: `lag_label` says what the lag between signal and recording is, and
/// `offset_ms` (what `offset_label` says) is what turns it into an end-to-end latency
/// comparable with the receiver's report (JACK: the binaries' port latencies; virtual: the
/// streams' start instants).
#[allow(clippy::too_many_arguments)]
fn verdict(
    args: &Args,
    a: &Analysis,
    rate_per_ms: f64,
    lag_label: &str,
    offset_ms: f64,
    offset_label: &str,
    reported: &[f64],
    send: &Peer,
    recv: &Peer,
    exited_cleanly: [bool; 2],
) -> Outcome {
    let mut report = Vec::new();
    let mut failures = Vec::new();
    let r = recv.last_record();
    let s = send.last_record();
    let count = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    for (ok, peer) in exited_cleanly.iter().zip([send, recv]) {
        if !ok {
            failures.push(format!(
                "{} stopped with an error; its last words:\n{}",
                peer.name,
                peer.stderr_tail(5)
            ));
        }
    }
    let signal_back = a.steady_lag.is_some() && a.matched * 2 >= a.windows.max(1);
    report.push(format!(
        "test signal: {} windows of {} ms, {} came back intact (whole-signal correlation {:.3})",
        a.windows,
        WINDOW as f64 / rate_per_ms,
        a.matched,
        a.correlation
    ));
    let received = count(&r, "packets_received");
    if !signal_back {
        failures.push(if received == 0.0 {
            format!(
                "patchcord-recv received no packets (patchcord-send sent {} to {}): the network path is broken",
                count(&s, "packets_sent"),
                args.to.as_deref().unwrap_or("the receiver")
            )
        } else {
            format!(
                "patchcord-recv received {received} packets, but the test signal did not come back \
                 ({} of {} windows): the audio path is broken (are the ports connected?)",
                a.matched, a.windows
            )
        });
    }
    let mut json = json!({
        "windows": a.windows,
        "matched_windows": a.matched,
        "correlation": a.correlation,
        "glitches": a.glitches,
        "packets_sent": count(&s, "packets_sent"),
        "packets_received": received,
        "lost": count(&r, "lost"),
        "late": count(&r, "late"),
        "concealed_ms": count(&r, "concealed_ms"),
        "underruns": count(&r, "underruns"),
        "reported_latency_ms": reported,
    });
    if let (Some(lag), Some((lo, hi))) = (a.steady_lag, a.lag_range) {
        let round_trip = lag as f64 / rate_per_ms;
        let measured = round_trip + offset_ms;
        report.push(format!(
            "{lag_label}: {round_trip:.3} ms ({lag} frames; {:.3}..{:.3} ms seen)",
            lo as f64 / rate_per_ms,
            hi as f64 / rate_per_ms
        ));
        report.push(format!(
            "end to end: {measured:.3} ms measured ({offset_ms:+.3} ms: {offset_label})"
        ));
        json["round_trip_ms"] = json!(round_trip);
        json["measured_latency_ms"] = json!(measured);
        match median(reported) {
            Some(rep) => {
                let diff = measured - rep;
                report.push(format!(
                    "end to end: {rep:.3} ms reported by patchcord-recv (median of {} readings); difference {diff:+.3} ms (tolerance {} ms)",
                    reported.len(),
                    args.tolerance_ms
                ));
                json["reported_median_ms"] = json!(rep);
                json["difference_ms"] = json!(diff);
                if diff.abs() > args.tolerance_ms || diff.is_nan() {
                    failures.push(format!(
                        "measured {measured:.3} ms but patchcord-recv reported {rep:.3} ms: its latency report is off by {diff:+.3} ms"
                    ));
                }
            }
            None => failures.push(format!(
                "patchcord-recv reported no end-to-end latency ({})",
                r["latency_note"].as_str().unwrap_or("no note")
            )),
        }
    }
    report.push(format!(
        "glitches: {} (allowed {}); patchcord-recv counted {} lost, {} late, {:.1} ms concealed, {} underruns",
        a.glitches,
        args.max_glitches,
        count(&r, "lost"),
        count(&r, "late"),
        count(&r, "concealed_ms"),
        count(&r, "underruns")
    ));
    if signal_back && a.glitches > args.max_glitches {
        failures.push(format!(
            "{} glitches (dropouts or time jumps) in the test signal, {} allowed",
            a.glitches, args.max_glitches
        ));
    }
    Outcome {
        report,
        failures,
        json,
    }
}

fn median(v: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied()
}

/// A UDP port on 127.0.0.1 whose successor (RTCP) is also free right now.
fn free_port_pair() -> Option<u16> {
    (0..100).find_map(|_| {
        let a = UdpSocket::bind("127.0.0.1:0").ok()?;
        let port = a.local_addr().ok()?.port();
        (port < 65_000 && UdpSocket::bind(("127.0.0.1", port + 1)).is_ok()).then_some(port)
    })
}

fn write_wav(path: &Path, samples: &[f32]) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let fail = |e: hound::Error| format!("cannot write {}: {e}", path.display());
    let mut w = hound::WavWriter::create(path, spec).map_err(fail)?;
    for v in samples {
        w.write_sample(*v).map_err(fail)?;
    }
    w.finalize().map_err(fail)
}

/// The first channel of a float WAV the receiver wrote.
fn read_wav(path: &Path) -> Option<Vec<f32>> {
    let mut r = hound::WavReader::open(path).ok()?;
    let channels = r.spec().channels.max(1) as usize;
    let samples: Vec<f32> = r.samples::<f32>().map_while(Result::ok).collect();
    Some(samples.into_iter().step_by(channels).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use patchcord_devices::generate::{missing_flags, Generate};

    #[test]
    fn man_page_and_completions_list_every_flag() {
        for kind in [
            Generate::Man,
            Generate::CompleteBash,
            Generate::CompleteZsh,
            Generate::CompleteFish,
        ] {
            let missing = missing_flags(kind, Args::command());
            assert!(missing.is_empty(), "{kind:?} misses {missing:?}");
        }
    }

    #[test]
    fn the_users_flags_replace_the_self_tests() {
        let user = ["--latency".to_string(), "20".into(), "--channels=2".into()];
        let f = flags(RECV_FLAGS, 5.0, &["--host".into(), "jack".into()], &user);
        assert_eq!(
            f,
            [
                "--duration",
                "65",
                "--host",
                "jack",
                "--latency",
                "20",
                "--channels=2"
            ]
        );
        let f = flags(RECV_FLAGS, 5.0, &[], &[]);
        assert_eq!(f, ["--channels", "1", "--latency", "6", "--duration", "65"]);
    }

    #[test]
    fn flags_parse() {
        let a = Args::try_parse_from([
            "patchcord-selftest",
            "--host",
            "virtual",
            "--recv-arg=--render-ahead",
            "--recv-arg",
            "2",
            "--send-arg",
            "--bitrate",
        ])
        .map_err(|e| e.to_string());
        let a = a.as_ref().ok();
        assert_eq!(a.map(|a| a.host), Some(AudioPath::Virtual));
        assert_eq!(
            a.map(|a| a.recv_arg.clone()),
            Some(vec!["--render-ahead".into(), "2".into()])
        );
        assert_eq!(a.map(|a| a.send_arg.clone()), Some(vec!["--bitrate".into()]));
        assert!(Args::try_parse_from(["patchcord-selftest", "--seconds", "0.5"]).is_err());
    }
}
