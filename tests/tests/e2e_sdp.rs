//! SDP both ways, with real peers from Debian packages: ffmpeg and GStreamer (`sdpdemux`,
//! gstreamer1.0-plugins-bad) play what `patchcord-send --sdp` describes, and
//! `patchcord-recv --sdp` plays what ffmpeg (`-sdp_file`) and a hand-written GStreamer
//! description say, taking port, payload type and channels from it. Mono and stereo;
//! the audio that comes out is checked for its frequency and level.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use patchcord_tests::*;

/// The tone is at `freq` and `amplitude` (within 1 dB) for at least `seconds` in every
/// channel of the WAV, which has `channels` channels.
fn assert_tone(wav: &Path, channels: u16, freq: f64, amplitude: f64, seconds: f64) {
    let (ch, samples) = read_wav(wav);
    assert_eq!(ch, channels, "{}", wav.display());
    for c in 0..ch as usize {
        let x = channel(&samples, ch, c);
        let heard = seconds_of_tone(&x, freq);
        let level = tone_amplitude(&x, freq);
        assert!(
            heard >= seconds,
            "channel {c}: {heard:.2} s of {freq} Hz, wanted {seconds} s"
        );
        assert!(
            (20.0 * (level / amplitude).log10()).abs() < 1.0,
            "channel {c}: {freq} Hz at amplitude {level:.4}, sent at {amplitude}"
        );
    }
}

fn sender(dir: &Path, port: u16, channels: u16, seconds: f64, sdp: &Path) -> Proc {
    Proc::spawn(
        dir,
        "send",
        &bin("patchcord-send"),
        &[
            "--to".into(),
            format!("127.0.0.1:{port}"),
            "--device".into(),
            "tone:440".into(),
            "--channels".into(),
            channels.to_string(),
            "--duration".into(),
            seconds.to_string(),
            "--sdp".into(),
            sdp.display().to_string(),
            "-q".into(),
        ],
    )
}

fn receiver(dir: &Path, sdp: &Path, seconds: f64) -> Proc {
    start_recv(
        dir,
        "recv",
        &[
            "--sdp",
            &sdp.display().to_string(),
            "--device",
            &format!("wav:{}", dir.join("out.wav").display()),
            "--latency",
            "60",
            "--duration",
            &seconds.to_string(),
        ],
    )
}

#[test]
fn ffmpeg_plays_patchcords_sdp_mono() {
    let _serial = serial();
    let dir = scratch("sdp_send_to_ffmpeg");
    let sdp = dir.join("stream.sdp");
    let port = free_port_pair();
    let mut send = sender(&dir, port, 1, 5.0, &sdp);
    wait_for_file(&sdp);
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(
        text.contains("a=fmtp:96 stereo=0;sprop-stereo=0;maxaveragebitrate=128000"),
        "{text}"
    );
    let out = dir.join("ffmpeg.wav");
    let status = Command::new(tool("ffmpeg"))
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-protocol_whitelist",
            "file,udp,rtp",
            "-i",
        ])
        .arg(&sdp)
        .args(["-t", "2.5", "-y"])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let (ok, err) = send.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    // ffmpeg decodes to the rtpmap's channel count, which RFC 7587 fixes at 2 even for
    // a mono stream: the mono tone is in both
    assert_tone(&out, 2, 440.0, 0.5, 2.3);
}

#[test]
fn gstreamer_plays_patchcords_sdp_stereo() {
    let _serial = serial();
    let dir = scratch("sdp_send_to_gst");
    let sdp = dir.join("stream.sdp");
    let port = free_port_pair();
    let mut send = sender(&dir, port, 2, 4.0, &sdp);
    wait_for_file(&sdp);
    let out = dir.join("gst.wav");
    let pipeline = format!(
        "filesrc location={} ! sdpdemux latency=60 ! rtpopusdepay ! opusdec ! audioconvert ! \
         audio/x-raw,format=S16LE,rate=48000,channels=2 ! wavenc ! filesink location={}",
        sdp.display(),
        out.display()
    );
    let mut gst = Proc::spawn(
        &dir,
        "gst",
        &tool("gst-launch-1.0"),
        &std::iter::once("-e".to_string())
            .chain(pipeline.split_whitespace().map(String::from))
            .collect::<Vec<_>>(),
    );
    let (ok, err) = send.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    gst.signal("INT"); // -e: end of stream, the WAV is finalized
    let _ = gst.wait(Duration::from_secs(10));
    assert_tone(&out, 2, 440.0, 0.5, 3.0);
}

/// ffmpeg's own description (`-sdp_file`) of a stream on payload type 111: the receiver
/// takes port, type and mono from it.
#[test]
fn patchcord_recv_plays_ffmpegs_sdp_mono() {
    let _serial = serial();
    let dir = scratch("sdp_ffmpeg_to_recv");
    let sdp = dir.join("ffmpeg.sdp");
    let port = free_port_pair();
    let ffmpeg = |seconds: f64| {
        let status = Command::new(tool("ffmpeg"))
            .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
            .arg(format!("sine=frequency=660:duration={seconds}:sample_rate=48000"))
            .args([
                "-ac",
                "1",
                "-c:a",
                "libopus",
                "-b:a",
                "64k",
                "-payload_type",
                "111",
            ])
            .args(["-sdp_file"])
            .arg(&sdp)
            .args(["-f", "rtp"])
            .arg(format!("rtp://127.0.0.1:{port}"))
            .status()
            .expect("ffmpeg");
        assert!(status.success());
    };
    ffmpeg(0.1); // writes the description
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(text.contains("a=rtpmap:111 opus/48000/2"), "{text}");
    let mut recv = receiver(&dir, &sdp, 6.0);
    ffmpeg(3.0);
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    assert_tone(&dir.join("out.wav"), 1, 660.0, 0.125, 2.8);
    let r = final_stats(&dir.join("recv.json"));
    assert_eq!(r["streams_started"].as_u64(), Some(1), "{r}");
    assert_eq!(r["lost"].as_i64(), Some(0), "{r}");
}

/// A description written by hand for a GStreamer sender, as its users do: stereo on
/// payload type 100.
#[test]
fn patchcord_recv_plays_a_gstreamer_sdp_stereo() {
    let _serial = serial();
    let dir = scratch("sdp_gst_to_recv");
    let sdp = dir.join("gst.sdp");
    let port = free_port_pair();
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=GStreamer\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 100\r\na=rtpmap:100 OPUS/48000/2\r\n\
             a=fmtp:100 sprop-stereo=1\r\n"
        ),
    )
    .unwrap();
    let mut recv = receiver(&dir, &sdp, 6.0);
    let pipeline = format!(
        "audiotestsrc is-live=true freq=440 volume=0.5 samplesperbuffer=480 num-buffers=300 ! \
         audioconvert ! audio/x-raw,rate=48000,channels=2 ! opusenc frame-size=10 ! \
         rtpopuspay pt=100 ! udpsink host=127.0.0.1 port={port}"
    );
    let status = Command::new(tool("gst-launch-1.0"))
        .arg("-q")
        .args(pipeline.split_whitespace())
        .status()
        .expect("gst-launch-1.0");
    assert!(status.success());
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    assert_tone(&dir.join("out.wav"), 2, 440.0, 0.5, 2.8);
    let r = final_stats(&dir.join("recv.json"));
    assert_eq!(r["lost"].as_i64(), Some(0), "{r}");
}
