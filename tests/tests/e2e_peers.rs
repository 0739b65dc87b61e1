//! Interoperability with real peers from Debian packages: GStreamer's Opus/RTP elements
//! (`gst-launch-1.0`) and ffmpeg's RTP muxer, in both directions. Standard RTP (RFC 3550)
//! with the Opus payload format (RFC 7587), each tool on its own default payload type
//! (GStreamer 96, ffmpeg 97).

use std::process::Command;
use std::time::Duration;

use patchcord_tests::*;

fn receiver(dir: &std::path::Path, port: u16, extra: &[&str]) -> Proc {
    let args: Vec<String> = [
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
    ]
    .into_iter()
    .chain(extra.iter().map(|a| a.to_string()))
    .collect();
    Proc::spawn(dir, "recv", &bin("patchcord-recv"), &args)
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
    let mut recv = receiver(&dir, port, &[]);
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

/// ffmpeg's RTP muxer with its defaults: 3 s of a 660 Hz sine (amplitude 1/8) on payload
/// type 97.
fn ffmpeg_sine(port: u16) {
    let status = Command::new(tool("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg("sine=frequency=660:duration=3:sample_rate=48000")
        .args(["-ac", "1", "-c:a", "libopus", "-b:a", "64k", "-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{port}"))
        .status()
        .expect("ffmpeg");
    assert!(status.success());
}

/// ffmpeg's default stream (payload type 97) plays with no payload-type flag: the tone
/// comes out at its frequency and level.
#[test]
fn ffmpeg_sends_to_patchcord() {
    let _serial = serial();
    let dir = scratch("peer_ffmpeg_to_recv");
    let port = free_port_pair();
    let mut recv = receiver(&dir, port, &[]);
    wait_for_file(&dir.join("recv.json"));
    ffmpeg_sine(port);
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    assert_clean_reception(&dir, 660.0, 3.0);
    let (_, samples) = read_wav(&dir.join("out.wav"));
    let level = tone_amplitude(&samples, 660.0);
    assert!(
        (20.0 * (level / 0.125).log10()).abs() < 1.0,
        "660 Hz at amplitude {level:.4}, sent at 0.125"
    );
    // ffmpeg sends RTCP sender reports to port + 1, from its RTP port + 1: the receiver
    // takes them as the stream's own (source validation); they say when ffmpeg sent, not
    // when it captured, so they give no end-to-end latency, and the note says why
    let r = final_stats(&dir.join("recv.json"));
    assert!(r["sender_reports"].as_u64().unwrap_or(0) >= 1, "{r}");
    assert_eq!(r["rtcp_wrong_source"].as_u64(), Some(0), "{r}");
    assert!(r["latency_ms"].is_null(), "{r}");
    assert!(
        r["latency_note"].as_str().unwrap_or("").contains("not patchcord"),
        "{r}"
    );
}

/// A receiver told another payload type drops ffmpeg's packets and says, once a second,
/// which flag plays them.
#[test]
fn an_unexpected_payload_type_gets_a_hint_naming_the_flag() {
    let _serial = serial();
    let dir = scratch("peer_ffmpeg_wrong_pt");
    let port = free_port_pair();
    let mut recv = receiver(&dir, port, &["--payload-type", "96"]);
    wait_for_file(&dir.join("recv.json"));
    ffmpeg_sine(port);
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    let records = read_stats(&dir.join("recv.json"));
    let hints: Vec<&str> = records.iter().filter_map(|r| r["hint"].as_str()).collect();
    assert!(hints.len() >= 2, "{records:?}");
    assert!(hints.iter().all(|h| h.contains("--payload-type 97")), "{hints:?}");
    let r = final_stats(&dir.join("recv.json"));
    assert_eq!(r["packets_received"].as_u64(), Some(0), "{r}");
    assert!(
        r["dropped"]["wrong_payload_type"].as_u64().unwrap_or(0) > 100,
        "{r}"
    );
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
