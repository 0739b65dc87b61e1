//! What a user sees of a run, checked on the real binaries: the level meters (a tone reads
//! its level within 0.5 dB at the sender and after the network at the receiver, silence
//! reads the floor, a clipping input counts its clips), `--http`'s `/metrics` read by
//! Prometheus' own Python parser and matched against `/stats.json`, the dashboard in
//! headless Chromium (no console error, no request leaving the page's origin, one meter
//! per stream, plots that advance), and `--report`'s self-contained HTML of the run.
//! Screenshots go to `target/artifacts/`. A missing chromium or Python module fails the
//! test (scripts/setup.sh installs them).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use patchcord_tests::*;

fn s(x: &str) -> String {
    x.to_string()
}

/// A TCP port on 127.0.0.1 that is free right now.
fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` from `127.0.0.1:port`: the status code and the body.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    c.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(name)
}

/// Run a Python check script; panics with its output when it fails.
fn python(args: &[&str]) -> String {
    let out = Command::new("python3")
        .args(args)
        .output()
        .expect("python3 is needed for the monitoring tests");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{} failed:\n{text}", args[0]);
    eprintln!("{text}");
    text
}

/// `/metrics` parsed by prometheus_client and checked against `/stats.json` of the same
/// second (fetched before and after the scrape; tried again if a second passed between).
fn check_metrics(dir: &Path, port: u16, name: &str) {
    for _ in 0..10 {
        let (a, before) = http_get(port, "/stats.json");
        let (b, metrics) = http_get(port, "/metrics");
        let (_, after) = http_get(port, "/stats.json");
        if a != 200 || b != 200 || before != after {
            std::thread::sleep(Duration::from_millis(150));
            continue;
        }
        let (m, j) = (
            dir.join(format!("{name}.metrics")),
            dir.join(format!("{name}.stats.json")),
        );
        std::fs::write(&m, metrics).unwrap();
        std::fs::write(&j, before).unwrap();
        python(&[
            script("check_metrics.py").to_str().unwrap(),
            m.to_str().unwrap(),
            j.to_str().unwrap(),
        ]);
        return;
    }
    panic!("{name}: no consistent /stats.json and /metrics pair from port {port}");
}

fn artifacts() -> PathBuf {
    let d = bin_dir().parent().unwrap().join("artifacts");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Records of `ssrc`'s stream in the receiver's stats, while it played steadily.
fn stream_records(stats: &[serde_json::Value], ssrc: u64) -> Vec<serde_json::Value> {
    stats
        .iter()
        .filter(|r| r["final"] == false)
        .filter_map(|r| r["streams"].as_array())
        .flatten()
        .filter(|st| st["ssrc"].as_u64() == Some(ssrc))
        .cloned()
        .collect()
}

#[test]
fn levels_metrics_a_tone_silence_and_clips() {
    let _serial = serial();
    let dir = scratch("monitoring_levels");
    let port = free_port_pair();
    let (recv_http, send_http) = (free_tcp_port(), free_tcp_port());
    // 1.5 s of a full-scale 200 Hz square wave, then (the WAV ends) silence
    let square: Vec<f32> = (0..72_000)
        .map(|i| if (i / 120) % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    let wav = dir.join("square.wav");
    write_wav(&wav, 1, &square);
    let mut recv = Proc::spawn(
        &dir,
        "recv",
        &bin("patchcord-recv"),
        &[
            s("--listen"),
            format!("127.0.0.1:{port}"),
            s("--device"),
            format!("wav:{}", dir.join("out.wav").display()),
            s("--channels"),
            s("1"),
            s("--latency"),
            s("20"),
            s("--duration"),
            s("7"),
            s("--http"),
            format!("127.0.0.1:{recv_http}"),
            s("--stats-json"),
            dir.join("recv.json").display().to_string(),
            s("-q"),
        ],
    );
    wait_for_file(&dir.join("recv.json"));
    let sender = |name: &str, device: &str, http: Option<u16>| {
        let mut a = vec![
            s("--to"),
            format!("127.0.0.1:{port}"),
            s("--device"),
            s(device),
            s("--channels"),
            s("1"),
            s("--duration"),
            s("5"),
            s("--stats-json"),
            dir.join(format!("{name}.json")).display().to_string(),
            s("-q"),
        ];
        if let Some(p) = http {
            a.extend([s("--http"), format!("127.0.0.1:{p}")]);
        }
        Proc::spawn(&dir, name, &bin("patchcord-send"), &a)
    };
    let mut tone = sender("tone", "tone:440", Some(send_http));
    let mut clip = sender("clip", &format!("wav:{}", wav.display()), None);
    std::thread::sleep(Duration::from_millis(3200));
    check_metrics(&dir, recv_http, "recv");
    check_metrics(&dir, send_http, "send");
    for (p, what) in [
        (&mut tone, "tone sender"),
        (&mut clip, "clip sender"),
        (&mut recv, "receiver"),
    ] {
        let (ok, err) = p.wait(Duration::from_secs(30));
        assert!(ok, "{what}: {err}");
    }

    // the sender's capture meter: the tone is a 0.5 sine, -6.02 dBFS peak, -9.03 RMS
    let tone_stats = read_stats(&dir.join("tone.json"));
    let steady: Vec<_> = tone_stats
        .iter()
        .filter(|r| r["final"] == false && r["t"].as_f64().unwrap() >= 1.5)
        .collect();
    assert!(steady.len() >= 2, "{tone_stats:?}");
    for r in &steady {
        let (peak, rms) = (r["peak_dbfs"].as_f64().unwrap(), r["rms_dbfs"].as_f64().unwrap());
        assert!(
            (peak + 6.02).abs() < 0.5 && (rms + 9.03).abs() < 0.5,
            "tone at the sender: {r}"
        );
        assert_eq!(r["clipped_samples"].as_u64(), Some(0));
        assert_eq!(r["schema"].as_u64(), Some(1));
        assert!(r["unix_ms"].as_i64().unwrap() > 1_700_000_000_000);
    }
    // the clipping input: every sample of the square counts, then silence reads the floor
    let clip_stats = read_stats(&dir.join("clip.json"));
    let clip_final = clip_stats.last().unwrap();
    assert_eq!(
        clip_final["clipped_samples"].as_u64(),
        Some(72_000),
        "{clip_final}"
    );
    let silent: Vec<_> = clip_stats
        .iter()
        .filter(|r| r["final"] == false && r["t"].as_f64().unwrap() >= 2.5)
        .collect();
    assert!(!silent.is_empty());
    for r in silent {
        assert!(
            r["rms_dbfs"].as_f64().unwrap() <= -100.0,
            "silence at the sender: {r}"
        );
    }

    // the receiver's meters, after Opus and the network
    let recv_stats = read_stats(&dir.join("recv.json"));
    let tone_ssrc = final_stats(&dir.join("tone.json"))["ssrc"].as_u64().unwrap();
    let clip_ssrc = clip_final["ssrc"].as_u64().unwrap();
    let tone_recv = stream_records(&recv_stats, tone_ssrc);
    let steady: Vec<_> = tone_recv.iter().skip(1).take(3).collect();
    assert!(steady.len() >= 2, "{tone_recv:?}");
    for st in steady {
        let (peak, rms) = (
            st["peak_dbfs"].as_f64().unwrap(),
            st["rms_dbfs"].as_f64().unwrap(),
        );
        assert!(
            (peak + 6.02).abs() < 0.5 && (rms + 9.03).abs() < 0.5,
            "tone at the receiver: {st}"
        );
        assert_eq!(st["clipped_samples"].as_u64(), Some(0));
    }
    let clip_recv = stream_records(&recv_stats, clip_ssrc);
    let clips = clip_recv
        .iter()
        .filter_map(|st| st["clipped_samples"].as_u64())
        .max()
        .unwrap_or(0);
    assert!(clips > 10_000, "the square's clips at the receiver: {clips}");
    let quiet = clip_recv.iter().rev().nth(1).expect("the clip stream played on");
    assert!(
        quiet["rms_dbfs"].as_f64().unwrap() < -60.0,
        "silence at the receiver: {quiet}"
    );
    // the square (1.0) and the tone (0.5) together overload the mix: its clipper bends them
    assert!(
        final_stats(&dir.join("recv.json"))["clipped_samples"]
            .as_u64()
            .unwrap()
            > 0
    );
    eprintln!(
        "levels: tone at the receiver {:?}",
        tone_recv
            .iter()
            .map(|st| (st["peak_dbfs"].clone(), st["rms_dbfs"].clone()))
            .collect::<Vec<_>>()
    );

    // a sender's stats file makes a report too: its capture meter and its plots
    let report = dir.join("send-report.html");
    let out = Command::new(bin("patchcord-recv"))
        .args([
            "--report",
            dir.join("tone.json").to_str().unwrap(),
            "-o",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    python(&[
        script("browser_check.py").to_str().unwrap(),
        &format!("file://{}", report.display()),
        "--selector",
        ".meter.capture",
        "--meters",
        "1",
        "--screenshot",
        artifacts().join("report-send.png").to_str().unwrap(),
    ]);
}

#[test]
fn dashboard_in_chromium_and_the_report_of_the_run() {
    let _serial = serial();
    let dir = scratch("monitoring_dashboard");
    let port = free_port_pair();
    let (http, send_http) = (free_tcp_port(), free_tcp_port());
    let stats = dir.join("recv.json");
    let recv = Proc::spawn(
        &dir,
        "recv",
        &bin("patchcord-recv"),
        &[
            s("--listen"),
            format!("127.0.0.1:{port}"),
            s("--device"),
            format!("wav:{}", dir.join("out.wav").display()),
            s("--channels"),
            s("1"),
            s("--gain-db"),
            s("-6"),
            s("--duration"),
            s("24"),
            s("--http"),
            format!("127.0.0.1:{http}"),
            s("--stats-json"),
            stats.display().to_string(),
            s("-q"),
        ],
    );
    wait_for_file(&stats);
    // sender a serves its own dashboard
    let senders: Vec<Proc> = [("a", "tone:440", true), ("b", "tone:1000", false)]
        .iter()
        .map(|&(name, tone, serves)| {
            let mut a = vec![
                s("--to"),
                format!("127.0.0.1:{port}"),
                s("--device"),
                s(tone),
                s("--channels"),
                s("1"),
                s("--duration"),
                s("22"),
                s("-q"),
            ];
            if serves {
                a.extend([s("--http"), format!("127.0.0.1:{send_http}")]);
            }
            Proc::spawn(&dir, name, &bin("patchcord-send"), &a)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let (status, page) = http_get(http, "/");
    assert_eq!(status, 200);
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the page names no other site"
    );
    let shot = artifacts().join("dashboard.png");
    python(&[
        script("browser_check.py").to_str().unwrap(),
        &format!("http://127.0.0.1:{http}/"),
        "--meters",
        "2",
        "--live",
        "--screenshot",
        shot.to_str().unwrap(),
    ]);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot of the page"
    );
    // the sender's page: its capture meter, its plots advancing
    python(&[
        script("browser_check.py").to_str().unwrap(),
        &format!("http://127.0.0.1:{send_http}/"),
        "--selector",
        ".meter.capture",
        "--meters",
        "1",
        "--live",
        "--screenshot",
        artifacts().join("dashboard-send.png").to_str().unwrap(),
    ]);
    for (mut p, what) in senders
        .into_iter()
        .zip(["sender a", "sender b"])
        .chain([(recv, "receiver")])
    {
        let (ok, err) = p.wait(Duration::from_secs(40));
        assert!(ok, "{what}: {err}");
    }

    // the report of that run: one file, the records in it, nothing loaded from elsewhere
    let report = dir.join("report.html");
    let out = Command::new(bin("patchcord-recv"))
        .args([
            "--report",
            stats.to_str().unwrap(),
            "-o",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let html = std::fs::read_to_string(&report).unwrap();
    let records = read_stats(&stats);
    for r in &records {
        if let Some(ssrc) = r["ssrc"].as_u64() {
            assert!(
                html.contains(&format!("\"ssrc\":{ssrc}")),
                "stream {ssrc} is in the report"
            );
        }
    }
    assert!(html.contains(&format!("\"unix_ms\":{}", records.last().unwrap()["unix_ms"])));
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains(" src="));
    python(&[
        script("browser_check.py").to_str().unwrap(),
        &format!("file://{}", report.display()),
        "--meters",
        "2",
        "--screenshot",
        artifacts().join("report.png").to_str().unwrap(),
    ]);
}

#[test]
fn http_refuses_an_address_beyond_loopback_unless_asked() {
    let out = Command::new(bin("patchcord-recv"))
        .args(["--http", "0.0.0.0:0", "--device", "null", "--duration", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--http 0.0.0.0:0: not a loopback address") && err.contains("--http-public"),
        "{err}"
    );
    let out = Command::new(bin("patchcord-send"))
        .args([
            "--to",
            "127.0.0.1:9",
            "--http",
            "192.0.2.1:9000",
            "--device",
            "tone:440",
            "--duration",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a loopback address"));
}
