//! Two real sender processes into one real receiver: both signals are in the output WAV,
//! each starting where its sender's capture start and its stream's reported latency put it.

use std::time::Duration;

use patchcord_tests::*;

/// Amplitude of the `freq` component of a window (Goertzel).
fn tone_amplitude(x: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / 48_000.0;
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s = v as f64 + 2.0 * w.cos() * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - 2.0 * w.cos() * s1 * s2;
    2.0 * power.sqrt() / x.len() as f64
}

#[test]
fn two_senders_into_one_receiver() {
    let _serial = serial();
    let dir = scratch("two_senders");
    let port = free_port_pair();
    let s = |x: &str| x.to_string();
    let out = dir.join("out.wav");
    let mut recv = Proc::spawn(
        &dir,
        "recv",
        &bin("patchcord-recv"),
        &[
            s("--listen"),
            format!("127.0.0.1:{port}"),
            s("--device"),
            format!("wav:{}", out.display()),
            s("--channels"),
            s("1"),
            s("--latency"),
            s("20"),
            s("--gain-db"),
            s("-3"),
            s("--duration"),
            s("7"),
            s("--stats-json"),
            dir.join("recv.json").display().to_string(),
            s("-q"),
        ],
    );
    wait_for_file(&dir.join("recv.json"));
    let sender = |name: &str, tone: &str, secs: &str| {
        Proc::spawn(
            &dir,
            name,
            &bin("patchcord-send"),
            &[
                s("--to"),
                format!("127.0.0.1:{port}"),
                s("--device"),
                s(tone),
                s("--channels"),
                s("1"),
                s("--duration"),
                s(secs),
                s("--stats-json"),
                dir.join(format!("{name}.json")).display().to_string(),
                s("-q"),
            ],
        )
    };
    let mut a = sender("a", "tone:440", "5");
    std::thread::sleep(Duration::from_millis(1500));
    let mut b = sender("b", "tone:1000", "3");
    for (p, what) in [
        (&mut a, "sender a"),
        (&mut b, "sender b"),
        (&mut recv, "receiver"),
    ] {
        let (ok, err) = p.wait(Duration::from_secs(30));
        assert!(ok, "{what}: {err}");
    }
    let recv_stats = read_stats(&dir.join("recv.json"));
    let fin = recv_stats.last().unwrap();
    assert_eq!(fin["streams_started"].as_u64(), Some(2), "{fin}");
    assert_eq!(fin["streams_refused"].as_u64(), Some(0));
    assert_eq!(fin["lost"].as_i64(), Some(0));
    assert_eq!(fin["clipped_samples"].as_u64(), Some(0));
    let output_start = fin["output_start_unix_ns"].as_f64().unwrap();
    let (_, samples) = read_wav(&out);
    for (name, freq) in [("a", 440.0), ("b", 1000.0)] {
        let sent = final_stats(&dir.join(format!("{name}.json")));
        let ssrc = sent["ssrc"].as_u64().unwrap();
        // this stream's reported end-to-end latency, from any second it was playing
        let latency_ms = recv_stats
            .iter()
            .filter_map(|r| r["streams"].as_array())
            .flatten()
            .filter(|st| st["ssrc"].as_u64() == Some(ssrc))
            .find_map(|st| st["latency_ms"].as_f64())
            .unwrap_or_else(|| panic!("no latency for stream {name}"));
        let expected = (sent["capture_start_unix_ns"].as_f64().unwrap() - output_start) * 48_000.0 / 1e9
            + latency_ms * 48.0;
        let onset = samples
            .chunks(480)
            .position(|w| tone_amplitude(w, freq) > 0.1)
            .unwrap_or_else(|| panic!("{freq} Hz never appears in the output"))
            * 480;
        eprintln!(
            "stream {name} ({freq} Hz): onset {onset}, expected {expected:.0}, latency {latency_ms:.2} ms"
        );
        assert!(
            (onset as f64 - expected).abs() <= 960.0,
            "{name}: onset {onset} vs expected {expected:.0}"
        );
        // and it lasts as long as its sender played
        let duration_s: f64 = sent["frames_captured"].as_f64().unwrap() / 48_000.0;
        let present = samples
            .chunks(480)
            .filter(|w| tone_amplitude(w, freq) > 0.1)
            .count() as f64
            * 0.01;
        assert!(
            (present - duration_s).abs() < 0.3,
            "{name}: {present:.2} s of tone vs {duration_s:.2} s sent"
        );
    }
}
