//! End-to-end on a real audio server: JACK with the dummy backend (48 kHz, 64-frame
//! periods, on a private server name), checked by the product's own self-test,
//! `patchcord-selftest`: it plays its test signal into patchcord-send's JACK port, records
//! patchcord-recv's, and compares the round trip it measures (plus the JACK port latencies
//! the binaries' JACK host counts) with the end-to-end latency the receiver reports from
//! RTCP.
//!
//! Also here: the JACK client flags (`--jack-name`, `--no-connect`, `--connect`, a name
//! clash), checked with `jack_lsp -c` and the sender's capture meter
//! (`patchcord_tests::jack_flags`).
//!
//! The server runs with real-time scheduling (`jackd -R`) when the machine allows it, else
//! as the issue's `jackd -r` (no real-time). On this shared 2-core machine the server drops
//! cycles even when idle (4 xruns in 10 s with `-R`, BENCHMARKS.md §1). In an xrun the
//! audio may step by a period (a glitch the self-test counts: up to 2 are allowed here,
//! none by default) and the receiver's latency readings jump while the audio does not; so
//! a passing self-test may take a second or third run (each is printed). The failing cases
//! must fail on their first run.

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

    /// What `jack_lsp ARGS` lists; empty when the server does not answer within 5 s.
    fn lsp(&self, args: &[&str]) -> String {
        output_within(
            self.cmd("jack_lsp").args(args).stderr(Stdio::null()),
            Duration::from_secs(5),
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
    }

    /// The environment that points a client at this server.
    fn env(&self) -> [(&'static str, &str); 2] {
        [
            ("JACK_DEFAULT_SERVER", &self.server),
            ("JACK_NO_START_SERVER", "1"),
        ]
    }

    /// `jack_disconnect A B`; whether it succeeded within 5 s.
    fn disconnect(&self, a: &str, b: &str) -> bool {
        output_within(self.cmd("jack_disconnect").args([a, b]), Duration::from_secs(5))
            .is_some_and(|o| o.status.success())
    }
}

impl Drop for Jack {
    fn drop(&mut self) {
        self.proc.stop(Duration::from_secs(10));
    }
}

/// Run the self-test until it passes (at most three runs, each on a fresh server: a jackd
/// that stopped answering stays so); return the passing result.
fn passing_selftest(name: &str, extra: &[&str]) -> serde_json::Value {
    let _serial = serial();
    let dir = scratch(name);
    let mut last = String::new();
    for attempt in 1..=3 {
        let jack = Jack::start(&dir);
        let env = jack.env();
        let run = run_selftest(
            &dir,
            &[&["--seconds", "4", "--max-glitches", "2"], extra].concat(),
            &env,
        );
        if run.success {
            assert_eq!(run.result["pass"], true, "{}", run.stdout);
            return run.result;
        }
        eprintln!("self-test run {attempt} failed");
        last = run.stdout;
    }
    panic!("the self-test failed three times on JACK; last:\n{last}");
}

fn assert_sound(r: &serde_json::Value) {
    let n = |k: &str| r[k].as_f64().unwrap_or_else(|| panic!("no {k} in {r}"));
    // measured port to port plus the port latencies equals the receiver's report
    assert!(n("difference_ms").abs() <= 0.5, "{r}");
    assert!(n("glitches") <= 2.0, "{r}");
    assert!(n("matched_windows") >= n("windows") - 10.0, "{r}");
    // never below the codec's floor (2.5 ms frame + 2.5 ms look-ahead)
    assert!(n("round_trip_ms") > 5.0, "{r}");
    assert_eq!(n("lost"), 0.0, "{r}");
}

#[test]
fn jack_self_test_passes() {
    let r = passing_selftest("jack_selftest", &[]);
    assert_sound(&r);
    assert_eq!(r["host"], "jack");
    assert_eq!(r["period_frames"], 64);
}

/// The same with the render thread two JACK periods ahead of the process callback: the
/// round trip grows by those periods, and the receiver's report still matches it.
#[test]
fn jack_self_test_with_render_ahead_passes() {
    let r = passing_selftest(
        "jack_selftest_ahead",
        &["--recv-arg=--render-ahead", "--recv-arg=2"],
    );
    assert_sound(&r);
}

/// A user pulls the receiver's cable in the patchbay while the self-test runs: the
/// self-test notices that its signal did not come back, and says so. Its first verdict
/// must be that FAIL; a run with no verdict at all (the self-test gives up with exit 2 when
/// jackd stops answering, as the dummy server here did once under CI load) is run again on
/// a fresh server.
#[test]
fn jack_self_test_fails_when_the_audio_is_disconnected() {
    let _serial = serial();
    let dir = scratch("jack_selftest_disconnected");
    for attempt in 1..=3 {
        let jack = Jack::start(&dir);
        let Some(verdict) = disconnected_run(&jack, &dir) else {
            eprintln!("self-test run {attempt} gave no verdict; again on a fresh server");
            continue;
        };
        let failures = verdict["failures"].to_string();
        assert_eq!(verdict["pass"], false, "{verdict}");
        assert!(failures.contains("patchcord-recv received"), "{verdict}");
        assert!(failures.contains("the audio path is broken"), "{verdict}");
        return;
    }
    panic!("three self-test runs on fresh JACK servers gave no verdict");
}

/// One self-test run whose receiver is disconnected from the self-test's input as soon as
/// it is connected; its `--stats-json` verdict, or `None` when there was none.
fn disconnected_run(jack: &Jack, dir: &Path) -> Option<serde_json::Value> {
    let json = dir.join("selftest.json");
    let _ = std::fs::remove_file(&json);
    let mut selftest = jack.cmd(bin("patchcord-selftest").to_str()?);
    selftest
        .args(["--seconds", "3", "--stats-json"])
        .arg(&json)
        .arg("--bin-dir")
        .arg(bin_dir());
    let mut run = Proc::start(dir, "selftest", selftest);
    let start = Instant::now();
    let receiver_port = loop {
        let listing = jack.lsp(&["-c"]);
        let mut lines = listing.lines();
        let mut found = None;
        while let Some(l) = lines.next() {
            if l.starts_with("patchcord-selftest:in") {
                found = lines
                    .next()
                    .filter(|c| c.starts_with(' '))
                    .map(|c| c.trim().to_string());
            }
        }
        if let Some(p) = found {
            break p;
        }
        if start.elapsed() > Duration::from_secs(20) {
            eprintln!("the receiver never connected:\n{listing}");
            return None;
        }
        // gently: every jack_lsp is a client the server registers and tells everyone of
        std::thread::sleep(Duration::from_millis(200));
    };
    if !jack.disconnect(&receiver_port, "patchcord-selftest:in") {
        eprintln!("jack_disconnect {receiver_port} patchcord-selftest:in failed");
        return None;
    }
    let (_, stderr) = run.wait(Duration::from_secs(90));
    eprintln!("patchcord-selftest stderr:\n{stderr}");
    let text = std::fs::read_to_string(&json).ok()?;
    serde_json::from_str(&text).ok()
}

/// The sender sends where no receiver listens: the self-test says the network path is
/// broken.
#[test]
fn jack_self_test_fails_when_the_receiver_is_unreachable() {
    let _serial = serial();
    let dir = scratch("jack_selftest_unreachable");
    let jack = Jack::start(&dir);
    let nobody = free_port_pair();
    let run = run_selftest(
        &dir,
        &["--seconds", "2", "--to", &format!("127.0.0.1:{nobody}")],
        &jack.env(),
    );
    assert!(!run.success);
    assert_eq!(run.result["pass"], false);
    assert!(
        run.stdout.contains("FAIL: patchcord-recv received no packets"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the network path is broken"),
        "{}",
        run.stdout
    );
}

/// `--jack-name studio_a` / `studio_b` and `--no-connect`: the ports stay unconnected, and
/// the sender captures silence until the test connects them with `jack_connect` (see
/// `patchcord_tests::jack_flags`).
#[test]
fn jack_name_and_no_connect() {
    let _serial = serial();
    let dir = scratch("jack_name_no_connect");
    let jack = Jack::start(&dir);
    jack_flags::check_no_connect(&|p| jack.cmd(p), &dir);
}

/// `--connect`: from the start, only the connections asked for exist.
#[test]
fn jack_connect_makes_only_the_given_connections() {
    let _serial = serial();
    let dir = scratch("jack_connect_only");
    let jack = Jack::start(&dir);
    jack_flags::check_connect(
        &|p| jack.cmd(p),
        &dir,
        "system:playback_2",
        ["system:capture_2", "system:capture_1"],
    );
}

/// A name already taken: jackd gives the second client `NAME-01`, and the binary says so.
#[test]
fn jack_name_clash_gets_a_suffix() {
    let _serial = serial();
    let dir = scratch("jack_name_clash");
    let jack = Jack::start(&dir);
    let recv = |port: u16| {
        jack.cmd(bin("patchcord-recv").to_str().unwrap())
            .args([
                "--host",
                "jack",
                "--jack-name",
                "studio_a",
                "--no-connect",
                "-q",
                "--duration",
                "3",
            ])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = recv(free_port_pair());
    let start = Instant::now();
    while !jack.lsp(&[]).contains("studio_a:out_1") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", jack.lsp(&[]));
        std::thread::sleep(Duration::from_millis(100));
    }
    let second = recv(free_port_pair());
    let start = Instant::now();
    while !jack.lsp(&[]).contains("studio_a-01:out_2") {
        assert!(start.elapsed() < Duration::from_secs(10), "{}", jack.lsp(&[]));
        std::thread::sleep(Duration::from_millis(100));
    }
    for (child, name) in [(first, "studio_a"), (second, "studio_a-01")] {
        let out = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains(&format!("JACK client '{name}'")), "{err}");
    }
}
