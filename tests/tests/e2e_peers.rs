//! Interoperability with real peers from Debian packages: GStreamer's Opus/RTP elements
//! (`gst-launch-1.0`) and ffmpeg's RTP muxer, in both directions. Standard RTP (RFC 3550)
//! with the Opus payload format (RFC 7587), dynamic payload type 96.

use std::process::Command;
use std::time::Duration;

use patchcord_tests::*;

fn receiver(dir: &std::path::Path, port: u16) -> Proc {
    Proc::spawn(
        dir,
        "recv",
        &bin("patchcord-recv"),
        &[
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--device".into(),
            format!("wav:{}", dir.join("out.wav").display()),
            "--channels".into(),
            "1".into(),
            "--latency".into(),
            "60".into(),
            "--duration".into(),
            "6".into(),
            "--stats-json".into(),
            dir.join("recv.json").display().to_string(),
            "-q".into(),
        ],
    )
}

fn assert_clean_reception(dir: &std::path::Path, freq: f64, seconds: f64) {
    let r = final_stats(&dir.join("recv.json"));
    assert_eq!(r["streams_started"].as_u64(), Some(1), "{r}");
    assert_eq!(r["lost"].as_i64(), Some(0), "{r}");
    for (k, v) in r["dropped"].as_object().unwrap() {
        assert_eq!(v.as_u64(), Some(0), "dropped {k}: {r}");
    }
    let (_, samples) = read_wav(&dir.join("out.wav"));
    let heard = seconds_of_tone(&samples, freq);
    assert!(
        (heard - seconds).abs() < 0.3,
        "{heard:.2} s of {freq} Hz received, {seconds} s sent; {r}"
    );
}

#[test]
fn gstreamer_sends_to_patchcord() {
    let _serial = serial();
    let dir = scratch("peer_gst_to_recv");
    let port = free_port_pair();
    let mut recv = receiver(&dir, port);
    wait_for_file(&dir.join("recv.json"));
    let pipeline = format!(
        "audiotestsrc is-live=true freq=440 volume=0.5 samplesperbuffer=480 num-buffers=300 ! \
         audioconvert ! audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=10 ! \
         rtpopuspay pt=96 ! udpsink host=127.0.0.1 port={port}"
    );
    let status = Command::new(tool("gst-launch-1.0"))
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .expect("gst-launch-1.0");
    assert!(status.success());
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    assert_clean_reception(&dir, 440.0, 3.0);
}

#[test]
fn ffmpeg_sends_to_patchcord() {
    let _serial = serial();
    let dir = scratch("peer_ffmpeg_to_recv");
    let port = free_port_pair();
    let mut recv = receiver(&dir, port);
    wait_for_file(&dir.join("recv.json"));
    let status = Command::new(tool("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg("sine=frequency=660:duration=3:sample_rate=48000")
        .args([
            "-ac",
            "1",
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            "-payload_type",
            "96",
            "-f",
            "rtp",
        ])
        .arg(format!("rtp://127.0.0.1:{port}"))
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    assert_clean_reception(&dir, 660.0, 3.0);
    // ffmpeg sends RTCP sender reports to port + 1, from its RTP port + 1: the receiver
    // takes them as the stream's own (source validation) and measures the latency
    let r = final_stats(&dir.join("recv.json"));
    assert!(r["sender_reports"].as_u64().unwrap_or(0) >= 1, "{r}");
    assert_eq!(r["rtcp_wrong_source"].as_u64(), Some(0), "{r}");
    assert!(r["latency_ms"].as_f64().is_some(), "{r}");
}

#[test]
fn patchcord_sends_to_gstreamer() {
    let _serial = serial();
    let dir = scratch("peer_send_to_gst");
    let port = free_port_pair();
    let out = dir.join("gst.wav");
    let pipeline = format!(
        "udpsrc port={port} caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96 ! \
         rtpjitterbuffer latency=60 ! rtpopusdepay ! opusdec ! audioconvert ! audioresample ! \
         audio/x-raw,format=S16LE,rate=48000,channels=1 ! wavenc ! filesink location={}",
        out.display()
    );
    let gst = Proc::spawn(
        &dir,
        "gst",
        &tool("gst-launch-1.0"),
        &std::iter::once("-e".to_string())
            .chain(pipeline.split_whitespace().map(String::from))
            .collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let mut send = Proc::spawn(
        &dir,
        "send",
        &bin("patchcord-send"),
        &[
            "--to".into(),
            format!("127.0.0.1:{port}"),
            "--device".into(),
            "tone:1000".into(),
            "--channels".into(),
            "1".into(),
            "--duration".into(),
            "3".into(),
            "--no-rtcp".into(),
            "-q".into(),
        ],
    );
    let (ok, err) = send.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(500));
    gst.signal("INT"); // -e: end of stream, the WAV is finalized
    let mut gst = gst;
    let _ = gst.wait(Duration::from_secs(10));
    let (_, samples) = read_wav(&out);
    let heard = seconds_of_tone(&samples, 1000.0);
    assert!(
        (heard - 3.0).abs() < 0.3,
        "GStreamer decoded {heard:.2} s of the 3 s tone"
    );
}
