//! The JACK client flags end to end, on any JACK server (jackd, or PipeWire through
//! `pw-jack`): `--jack-name`, `--no-connect`, `--connect`.
//!
//! [`check_no_connect`] builds a chain whose middle runs on JACK: a virtual 440 Hz tone is
//! sent to receiver `studio_a` (JACK output, `--no-connect`), whose ports are not connected
//! to those of sender `studio_b` (JACK input, `--no-connect`).
//! Until the test connects them with `jack_connect`, the ports have no connection at all
//! (`jack_lsp -c`, polled all along) and the second sender captures silence (its capture
//! meter, in its stats); after, it captures the tone. [`check_connect`] starts both with
//! `--connect` and checks that every listing shows only the connections asked for, and
//! finally all of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin, free_port_pair, read_stats, Proc};

/// Makes a command that reaches the JACK server under test (its environment, or a
/// `pw-jack` prefix).
pub type JackCommand<'a> = &'a dyn Fn(&str) -> Command;

/// `jack_lsp -c`: each port with the ports it is connected to.
pub fn connections(cmd: JackCommand) -> BTreeMap<String, Vec<String>> {
    let out = cmd("jack_lsp")
        .arg("-c")
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut map = BTreeMap::<String, Vec<String>>::new();
    let mut current = String::new();
    for line in out.lines() {
        if line.starts_with(char::is_whitespace) {
            map.entry(current.clone())
                .or_default()
                .push(line.trim().to_string());
        } else {
            current = line.trim().to_string();
            map.entry(current.clone()).or_default();
        }
    }
    map
}

fn spawn(cmd: JackCommand, dir: &Path, name: &str, program: &str, args: &[&str]) -> Proc {
    let stderr_path = dir.join(format!("{name}.stderr"));
    let child = cmd(bin(program).to_str().unwrap_or_default())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    Proc {
        child: Some(child),
        name: name.into(),
        stderr_path,
    }
}

/// Poll `jack_lsp -c` until `done` holds (at most `timeout`), checking `always` on every
/// listing; returns the last listing.
fn poll(
    cmd: JackCommand,
    timeout: Duration,
    always: impl Fn(&BTreeMap<String, Vec<String>>),
    done: impl Fn(&BTreeMap<String, Vec<String>>) -> bool,
) -> BTreeMap<String, Vec<String>> {
    let start = Instant::now();
    loop {
        let c = connections(cmd);
        always(&c);
        if done(&c) {
            return c;
        }
        assert!(start.elapsed() < timeout, "gave up waiting; jack_lsp -c: {c:#?}");
        // gently: every jack_lsp is a client the server registers and tells everyone of
        std::thread::sleep(Duration::from_millis(150));
    }
}

const RECV_PORTS: [&str; 2] = ["studio_a:out_1", "studio_a:out_2"];
const SEND_PORTS: [&str; 2] = ["studio_b:in_1", "studio_b:in_2"];

/// `--jack-name studio_a` / `studio_b` and `--no-connect` (see the module doc).
pub fn check_no_connect(cmd: JackCommand, dir: &Path) {
    let (p1, p2) = (free_port_pair(), free_port_pair());
    let (to1, to2) = (format!("127.0.0.1:{p1}"), format!("127.0.0.1:{p2}"));
    let stats = dir.join("studio_b.json");
    let mut recv = spawn(
        cmd,
        dir,
        "studio_a",
        "patchcord-recv",
        &[
            "--host",
            "jack",
            "--jack-name",
            "studio_a",
            "--no-connect",
            "--listen",
            &to1,
            "--duration",
            "9",
        ],
    );
    let _tone = spawn(
        cmd,
        dir,
        "tone",
        "patchcord-send",
        &["--device", "tone:440", "--to", &to1, "--duration", "9"],
    );
    poll(
        cmd,
        Duration::from_secs(10),
        |_| {},
        |c| RECV_PORTS.iter().all(|p| c.contains_key(*p)),
    );
    let mut send = spawn(
        cmd,
        dir,
        "studio_b",
        "patchcord-send",
        &[
            "--host",
            "jack",
            "--jack-name",
            "studio_b",
            "--no-connect",
            "--to",
            &to2,
            "--stats-json",
            stats.to_str().unwrap_or_default(),
            "--duration",
            "7",
        ],
    );
    let _sink = spawn(
        cmd,
        dir,
        "sink",
        "patchcord-recv",
        &["--listen", &to2, "--device", "null", "--duration", "8"],
    );
    let unconnected = |c: &BTreeMap<String, Vec<String>>| {
        for p in RECV_PORTS.iter().chain(&SEND_PORTS) {
            assert!(c.get(*p).is_none_or(Vec::is_empty), "{p} is connected: {c:#?}");
        }
    };
    poll(cmd, Duration::from_secs(10), unconnected, |c| {
        SEND_PORTS.iter().all(|p| c.contains_key(*p))
    });
    // two seconds of stats while unconnected: silence captured
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        unconnected(&connections(cmd));
        std::thread::sleep(Duration::from_millis(300));
    }
    let before = read_stats(&stats);
    assert!(!before.is_empty(), "no stats from the JACK sender yet");
    for r in &before {
        let peak = r["peak_dbfs"].as_f64().unwrap_or(f64::NEG_INFINITY);
        assert!(peak < -90.0, "the unconnected sender captured {peak} dBFS: {r}");
    }
    for (from, to) in RECV_PORTS.iter().zip(&SEND_PORTS) {
        let ok = cmd("jack_connect")
            .args([from, to])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "jack_connect {from} {to}");
    }
    let (ok, err) = send.wait(Duration::from_secs(20));
    assert!(ok, "sender: {err}");
    assert!(err.contains("JACK client 'studio_b'"), "{err}");
    assert!(!err.contains("connected"), "{err}");
    let after = read_stats(&stats);
    let last = after
        .iter()
        .rev()
        .find(|r| r["final"] != true)
        .cloned()
        .unwrap_or_default();
    let peak = last["peak_dbfs"].as_f64().unwrap_or(f64::NEG_INFINITY);
    assert!(
        peak > -12.0,
        "once connected the sender captures the tone; its last second: {last}"
    );
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "receiver: {err}");
    assert!(err.contains("JACK client 'studio_a'"), "{err}");
}

/// `--connect`: the receiver's two channels to `playback`, the sender's from `capture` (in
/// that order); only those connections ever exist.
pub fn check_connect(cmd: JackCommand, dir: &Path, playback: &str, capture: [&str; 2]) {
    let to = format!("127.0.0.1:{}", free_port_pair());
    let mut recv = spawn(
        cmd,
        dir,
        "studio_a",
        "patchcord-recv",
        &[
            "--host",
            "jack",
            "--jack-name",
            "studio_a",
            "--connect",
            playback,
            "--listen",
            &to,
            "--duration",
            "5",
        ],
    );
    let mut send = spawn(
        cmd,
        dir,
        "studio_b",
        "patchcord-send",
        &[
            "--host",
            "jack",
            "--jack-name",
            "studio_b",
            "--connect",
            capture[0],
            capture[1],
            "--to",
            &to,
            "--duration",
            "4",
        ],
    );
    let expected: BTreeMap<&str, Vec<String>> = [
        ("studio_a:out_1", vec![playback.to_string()]),
        ("studio_a:out_2", vec![playback.to_string()]),
        ("studio_b:in_1", vec![capture[0].to_string()]),
        ("studio_b:in_2", vec![capture[1].to_string()]),
    ]
    .into();
    let only_expected = |c: &BTreeMap<String, Vec<String>>| {
        for (port, peers) in c.iter().filter(|(p, _)| p.starts_with("studio_")) {
            let allowed = expected
                .get(port.as_str())
                .unwrap_or_else(|| panic!("unexpected port {port}: {c:#?}"));
            assert!(
                peers.iter().all(|p| allowed.contains(p)),
                "{port} -> {peers:?}: {c:#?}"
            );
        }
    };
    poll(cmd, Duration::from_secs(10), only_expected, |c| {
        expected.iter().all(|(p, peers)| c.get(*p) == Some(peers))
    });
    let (ok, err) = send.wait(Duration::from_secs(20));
    assert!(ok, "sender: {err}");
    for c in capture {
        assert!(
            err.contains(&format!("JACK: connected {c} -> studio_b:in_")),
            "{err}"
        );
    }
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "receiver: {err}");
    assert!(
        err.contains(&format!("JACK: connected studio_a:out_2 -> {playback}")),
        "{err}"
    );
}
