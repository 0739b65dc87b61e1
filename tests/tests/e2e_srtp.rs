//! End-to-end: SRTP and SRTCP (RFC 3711) with a pre-shared key (issue 10), against the
//! real binaries and real peers from Debian packages:
//! - ffmpeg's `srtp://` output into `patchcord-recv`, and `patchcord-send` into ffmpeg
//!   through patchcord's SDP (`RTP/SAVP`, `a=crypto`);
//! - GStreamer `srtpenc` into `patchcord-recv`, and `patchcord-send` into `srtpdec`, for
//!   both suites (AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM), its SRTCP included;
//! - patchcord to patchcord with RTCP both ways (SR one way, RR the other, all SRTCP),
//!   and with the key taken from the sender's SDP by `patchcord-recv --sdp`;
//! - a wrong key and plain RTP: refused, counted, nothing played;
//! - forged and replayed packets from the sender's own address while a tone plays: each
//!   one counted, and the tone unchanged in every 10 ms window;
//! - the replay-window attack the fuzzer found: a forgery far ahead of a stream's first
//!   packet, once its SSRC is known from SRTCP, is counted and locks nothing out (the
//!   test fails without the fix in `common/src/srtp.rs`: every packet was a "replay").
//!
//! The received audio is checked for its frequency, level and duration.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use patchcord_common::srtp_key::{MasterKey, Suite};
use patchcord_tests::*;

/// A fresh random key for `suite`.
fn new_key(suite: Suite) -> MasterKey {
    let bytes: Vec<u8> = (0..suite.master_key_len() + suite.master_salt_len())
        .map(|_| rand::random())
        .collect();
    MasterKey::new(suite, &bytes).unwrap()
}

fn s(x: &str) -> String {
    x.to_string()
}

fn key_args(key: &MasterKey) -> Vec<String> {
    vec![
        s("--srtp-key"),
        key.to_base64(),
        s("--srtp-suite"),
        s(key.suite().name()),
    ]
}

/// `patchcord-recv` on `port`, mono WAV out, for `secs`.
fn receiver(dir: &Path, port: u16, secs: f64, extra: &[String]) -> Proc {
    let mut args = vec![
        s("--listen"),
        format!("127.0.0.1:{port}"),
        s("--device"),
        format!("wav:{}", dir.join("out.wav").display()),
        s("--channels"),
        s("1"),
        s("--latency"),
        s("60"),
        s("--duration"),
        secs.to_string(),
        s("--stats-json"),
        dir.join("recv.json").display().to_string(),
        s("-q"),
    ];
    args.extend_from_slice(extra);
    let p = Proc::spawn(dir, "recv", &bin("patchcord-recv"), &args);
    wait_for_file(&dir.join("recv.json"));
    p
}

/// `patchcord-send` of a 1 kHz tone (amplitude 0.5) to `to`, mono, for `secs`.
fn sender(dir: &Path, to: &str, secs: f64, extra: &[String]) -> Proc {
    let mut args = vec![
        s("--to"),
        s(to),
        s("--device"),
        s("tone:1000"),
        s("--channels"),
        s("1"),
        s("--duration"),
        secs.to_string(),
        s("--stats-json"),
        dir.join("send.json").display().to_string(),
        s("-q"),
    ];
    args.extend_from_slice(extra);
    Proc::spawn(dir, "send", &bin("patchcord-send"), &args)
}

fn u(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {v}"))
}

fn finish(p: &mut Proc) {
    let (ok, err) = p.wait(Duration::from_secs(30));
    assert!(ok, "{} failed: {err}", p.name);
}

/// The WAV holds `freq` at `amplitude` (within 1 dB) for about `seconds`.
fn assert_tone(wav: &Path, freq: f64, amplitude: f64, seconds: f64) {
    let (_, samples) = read_wav(wav);
    let heard = seconds_of_tone(&samples, freq);
    let level = tone_amplitude(&samples, freq);
    eprintln!("{}: {heard:.2} s of {freq} Hz at {level:.3}", wav.display());
    assert!(
        (heard - seconds).abs() < 0.4,
        "{heard:.2} s of {freq} Hz in {}, {seconds} s sent",
        wav.display()
    );
    assert!(
        (20.0 * (level / amplitude).log10()).abs() < 1.0,
        "{freq} Hz at amplitude {level:.4} in {}, sent at {amplitude}",
        wav.display()
    );
}

/// A receiver with SRTP on refused nothing and played one clean stream.
fn assert_clean_srtp(r: &serde_json::Value, suite: Suite) {
    assert_eq!(r["srtp"].as_str(), Some(suite.name()), "{r}");
    for k in ["srtp_auth_failed", "srtp_replayed", "srtp_malformed"] {
        assert_eq!(u(r, k), 0, "{k}: {r}");
    }
    assert_eq!(u(r, "streams_started"), 1, "{r}");
    assert_eq!(r["lost"].as_i64(), Some(0), "{r}");
}

#[test]
fn ffmpeg_sends_srtp_to_patchcord() {
    let _serial = serial();
    let dir = scratch("srtp_ffmpeg_to_recv");
    let port = free_port_pair();
    let key = new_key(Suite::AesCm128HmacSha1_80);
    let mut recv = receiver(&dir, port, 6.0, &key_args(&key));
    let status = Command::new(tool("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg("sine=frequency=660:duration=3:sample_rate=48000")
        .args(["-ac", "1", "-c:a", "libopus", "-b:a", "64k", "-f", "rtp"])
        .args(["-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params"])
        .arg(key.to_base64())
        .arg(format!("srtp://127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    finish(&mut recv);
    let r = final_stats(&dir.join("recv.json"));
    assert_clean_srtp(&r, Suite::AesCm128HmacSha1_80);
    assert!(u(&r, "packets_received") >= 140, "{r}");
    // ffmpeg's sender reports arrive as SRTCP on port + 1 and open
    assert!(u(&r, "sender_reports") >= 1, "{r}");
    assert_eq!(u(&r, "rtcp_malformed"), 0, "{r}");
    assert_tone(&dir.join("out.wav"), 660.0, 0.125, 3.0);
}

/// ffmpeg reads patchcord's SDP (`RTP/SAVP`, `a=crypto`) and decodes the tone.
#[test]
fn patchcord_sends_srtp_to_ffmpeg_through_its_sdp() {
    let _serial = serial();
    let dir = scratch("srtp_send_to_ffmpeg");
    let port = free_port_pair();
    let key = new_key(Suite::AesCm128HmacSha1_80);
    let sdp = dir.join("stream.sdp");
    let mut extra = key_args(&key);
    extra.extend([s("--sdp"), sdp.display().to_string(), s("--no-rtcp")]);
    // the SDP appears before the first packet; ffmpeg opens its port a little later
    let mut send = sender(&dir, &format!("127.0.0.1:{port}"), 4.0, &extra);
    wait_for_file(&sdp);
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(text.contains(&format!("m=audio {port} RTP/SAVP 96")), "{text}");
    assert!(
        text.contains(&format!(
            "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}",
            key.to_base64()
        )),
        "{text}"
    );
    let out = dir.join("ffmpeg.wav");
    let status = Command::new(tool("ffmpeg"))
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-protocol_whitelist",
            "file,udp,rtp,srtp",
        ])
        .arg("-i")
        .arg(&sdp)
        .args(["-t", "3", "-ac", "1", "-ar", "48000", "-y"])
        .arg(&out)
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    finish(&mut send);
    assert_tone(&out, 1000.0, 0.5, 3.0);
}

/// GStreamer `srtpenc` (libsrtp2) into patchcord, both suites.
#[test]
fn gstreamer_srtpenc_to_patchcord() {
    let _serial = serial();
    for suite in Suite::ALL {
        let dir = scratch(&format!("srtp_gst_to_recv_{suite}"));
        let port = free_port_pair();
        let key = new_key(suite);
        let mut recv = receiver(&dir, port, 5.0, &key_args(&key));
        let pipeline = format!(
            "audiotestsrc is-live=true freq=440 volume=0.5 samplesperbuffer=480 num-buffers=300 ! \
             audioconvert ! audio/x-raw,rate=48000,channels=1 ! opusenc frame-size=10 ! \
             rtpopuspay pt=96 ! srtpenc key={} {} ! udpsink host=127.0.0.1 port={port}",
            key.to_hex(),
            gst_ciphers(suite, "rtp-cipher", "rtp-auth", "rtcp-cipher", "rtcp-auth", "="),
        );
        let status = Command::new(tool("gst-launch-1.0"))
            .arg("-q")
            .args(pipeline.split_whitespace())
            .status()
            .expect("gst-launch-1.0");
        assert!(status.success());
        finish(&mut recv);
        let r = final_stats(&dir.join("recv.json"));
        assert_clean_srtp(&r, suite);
        assert_tone(&dir.join("out.wav"), 440.0, 0.5, 3.0);
    }
}

/// GStreamer's names for a suite's ciphers and tags, as `name=value` pairs joined by
/// spaces (element properties) or commas (caps fields).
fn gst_ciphers(suite: Suite, rtp_c: &str, rtp_a: &str, rtcp_c: &str, rtcp_a: &str, eq: &str) -> String {
    let (cipher, auth) = match suite {
        Suite::AesCm128HmacSha1_80 => ("aes-128-icm", "hmac-sha1-80"),
        // GCM authenticates by itself
        Suite::AeadAes128Gcm => ("aes-128-gcm", "null"),
    };
    let sep = if eq == "=" { " " } else { "," };
    [(rtp_c, cipher), (rtp_a, auth), (rtcp_c, cipher), (rtcp_a, auth)]
        .map(|(k, v)| format!("{k}{eq}{v}"))
        .join(sep)
}

/// patchcord into GStreamer `srtpdec`, both suites. `srtpdec` takes its key from caps,
/// for one SSRC: the SDP's `o=` session id is the sender's SSRC.
#[test]
fn patchcord_sends_srtp_to_gstreamer_srtpdec() {
    let _serial = serial();
    for suite in Suite::ALL {
        let dir = scratch(&format!("srtp_send_to_gst_{suite}"));
        let port = free_port_pair();
        let key = new_key(suite);
        let sdp = dir.join("stream.sdp");
        let mut extra = key_args(&key);
        extra.extend([s("--sdp"), sdp.display().to_string(), s("--no-rtcp")]);
        let mut send = sender(&dir, &format!("127.0.0.1:{port}"), 4.0, &extra);
        wait_for_file(&sdp);
        let text = std::fs::read_to_string(&sdp).unwrap();
        let ssrc: u32 = text
            .lines()
            .find_map(|l| l.strip_prefix("o=- "))
            .and_then(|l| l.split(' ').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no session id in\n{text}"));
        let out = dir.join("gst.wav");
        let caps = format!(
            "application/x-srtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96,\
             ssrc=(uint){ssrc},roc=(uint)0,srtp-key=(buffer){},{}",
            key.to_hex(),
            gst_ciphers(
                suite,
                "srtp-cipher",
                "srtp-auth",
                "srtcp-cipher",
                "srtcp-auth",
                "=(string)"
            ),
        );
        let pipeline = format!(
            "udpsrc port={port} caps={caps} ! srtpdec ! rtpjitterbuffer latency=60 ! rtpopusdepay ! \
             opusdec ! audioconvert ! audio/x-raw,format=S16LE,rate=48000,channels=1 ! wavenc ! \
             filesink location={}",
            out.display()
        );
        let mut gst = Proc::spawn(
            &dir,
            "gst",
            &tool("gst-launch-1.0"),
            &std::iter::once(s("-e"))
                .chain(pipeline.split_whitespace().map(String::from))
                .collect::<Vec<_>>(),
        );
        finish(&mut send);
        std::thread::sleep(Duration::from_millis(500));
        gst.signal("INT"); // -e: end of stream, the WAV is finalized
        let _ = gst.wait(Duration::from_secs(10));
        // what GStreamer missed while it started is the start of the tone only
        let (_, samples) = read_wav(&out);
        let heard = seconds_of_tone(&samples, 1000.0);
        assert!(
            heard > 3.0 && heard < 4.2,
            "{suite}: GStreamer decoded {heard:.2} s of 4 s"
        );
        assert_tone(&out, 1000.0, 0.5, heard);
    }
}

/// GStreamer `srtpdec` (libsrtp2) authenticates and decrypts patchcord's SRTCP, both
/// suites: its RTCP output (`fakesink dump=true`) holds the sender reports in clear, their
/// NTP timestamps those of now.
#[test]
fn gstreamer_srtpdec_opens_patchcords_srtcp() {
    let _serial = serial();
    for suite in Suite::ALL {
        let dir = scratch(&format!("srtcp_send_to_gst_{suite}"));
        let port = free_port_pair();
        let key = new_key(suite);
        let sdp = dir.join("stream.sdp");
        let mut extra = key_args(&key);
        extra.extend([s("--sdp"), sdp.display().to_string()]);
        let mut send = sender(&dir, &format!("127.0.0.1:{port}"), 3.5, &extra);
        wait_for_file(&sdp);
        let text = std::fs::read_to_string(&sdp).unwrap();
        let ssrc: u32 = text
            .lines()
            .find_map(|l| l.strip_prefix("o=- "))
            .and_then(|l| l.split(' ').next())
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("no session id in\n{text}"));
        let keys = format!(
            "ssrc=(uint){ssrc},roc=(uint)0,srtp-key=(buffer){},{}",
            key.to_hex(),
            gst_ciphers(
                suite,
                "srtp-cipher",
                "srtp-auth",
                "srtcp-cipher",
                "srtcp-auth",
                "=(string)"
            ),
        );
        // two reports through srtpdec's RTCP pads (RTP into its RTP pads), then EOS
        let pipeline = format!(
            "srtpdec name=d \
             udpsrc port={port} num-buffers=100 caps=application/x-srtp,media=audio,clock-rate=48000,\
             encoding-name=OPUS,payload=96,{keys} ! d.rtp_sink d.rtp_src ! fakesink \
             udpsrc port={} num-buffers=2 caps=application/x-srtcp,{keys} ! d.rtcp_sink \
             d.rtcp_src ! fakesink dump=true",
            port + 1
        );
        let out = Command::new("timeout")
            .arg("10")
            .arg(tool("gst-launch-1.0"))
            .args(pipeline.split_whitespace())
            .output()
            .expect("gst-launch-1.0");
        finish(&mut send);
        let stdout = String::from_utf8_lossy(&out.stdout);
        // dump lines: "00000000 (0x…): 80 c8 00 06 SS SS SS SS NN NN NN NN …"
        let reports: Vec<Vec<u8>> = stdout
            .lines()
            .filter(|l| l.starts_with("00000000 "))
            .filter_map(|l| l.split("): ").nth(1))
            .map(|hex| {
                hex.split_whitespace()
                    .take(16)
                    .filter_map(|b| u8::from_str_radix(b, 16).ok())
                    .collect::<Vec<u8>>()
            })
            .filter(|b| b.len() >= 12 && b[1] == 200)
            .collect();
        assert!(
            reports.len() >= 2,
            "{suite}: srtpdec let {} sender reports through\n{stdout}",
            reports.len()
        );
        let ntp_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 2_208_988_800;
        for r in &reports {
            assert_eq!(u32::from_be_bytes([r[4], r[5], r[6], r[7]]), ssrc);
            let ntp_secs = u32::from_be_bytes([r[8], r[9], r[10], r[11]]) as u64;
            assert!(
                ntp_now.abs_diff(ntp_secs) < 30,
                "{suite}: NTP {ntp_secs} against {ntp_now}: not decrypted"
            );
        }
    }
}

/// patchcord to patchcord with RTCP both ways, over GCM: the receiver opens the sender's
/// SRTCP sender reports, the sender opens the receiver's SRTCP receiver reports.
#[test]
fn patchcord_to_patchcord_with_srtcp_both_ways() {
    let _serial = serial();
    let dir = scratch("srtp_patchcord_both_ways");
    let port = free_port_pair();
    let key = new_key(Suite::AeadAes128Gcm);
    let mut recv = receiver(&dir, port, 6.0, &key_args(&key));
    let mut send = sender(&dir, &format!("127.0.0.1:{port}"), 4.0, &key_args(&key));
    finish(&mut send);
    finish(&mut recv);
    let r = final_stats(&dir.join("recv.json"));
    assert_clean_srtp(&r, Suite::AeadAes128Gcm);
    assert!(u(&r, "sender_reports") >= 3, "{r}");
    assert!(
        r["latency_ms"].as_f64().is_some(),
        "patchcord's SRs give the latency: {r}"
    );
    // the receiver's first report comes after about 2.5 s (RFC 3550's minimum interval)
    let sr = final_stats(&dir.join("send.json"));
    assert_eq!(sr["srtp"].as_str(), Some("AEAD_AES_128_GCM"), "{sr}");
    assert!(u(&sr, "receiver_reports") >= 1, "{sr}");
    assert!(sr["receivers"][0]["rtt_ms"].as_f64().is_some(), "{sr}");
    for k in ["srtp_auth_failed", "srtp_replayed", "srtp_malformed"] {
        assert_eq!(u(&sr["srtcp_refused"], k), 0, "{k}: {sr}");
    }
    assert_tone(&dir.join("out.wav"), 1000.0, 0.5, 4.0);
}

/// patchcord-recv takes the key from patchcord-send's SDP (`a=crypto`, GCM): no key flag
/// on the receiver.
#[test]
fn patchcord_recv_takes_the_key_from_the_sdp() {
    let _serial = serial();
    let dir = scratch("srtp_sdp_to_recv");
    let port = free_port_pair();
    let key = new_key(Suite::AeadAes128Gcm);
    let sdp = dir.join("stream.sdp");
    let mut extra = key_args(&key);
    extra.extend([s("--sdp"), sdp.display().to_string()]);
    let mut send = sender(&dir, &format!("127.0.0.1:{port}"), 4.0, &extra);
    wait_for_file(&sdp);
    let mut recv = Proc::spawn(
        &dir,
        "recv",
        &bin("patchcord-recv"),
        &[
            s("--sdp"),
            sdp.display().to_string(),
            s("--device"),
            format!("wav:{}", dir.join("out.wav").display()),
            s("--duration"),
            s("6"),
            s("--stats-json"),
            dir.join("recv.json").display().to_string(),
            s("-q"),
        ],
    );
    finish(&mut send);
    finish(&mut recv);
    let r = final_stats(&dir.join("recv.json"));
    assert_clean_srtp(&r, Suite::AeadAes128Gcm);
    assert!(u(&r, "sender_reports") >= 2, "{r}");
    // the receiver starts after the SDP appears: it may miss the tone's first moments
    let (_, samples) = read_wav(&dir.join("out.wav"));
    let heard = seconds_of_tone(&samples, 1000.0);
    assert!(heard > 3.4, "{heard:.2} s of the 4 s tone; {r}");
    assert_tone(&dir.join("out.wav"), 1000.0, 0.5, heard);
}

/// A sender with another key, and one with none: every packet refused and counted as
/// failing authentication, no stream, nothing played.
#[test]
fn a_wrong_key_and_plain_rtp_are_refused() {
    let _serial = serial();
    let key = new_key(Suite::AesCm128HmacSha1_80);
    for (name, send_key) in [
        ("srtp_wrong_key", key_args(&new_key(Suite::AesCm128HmacSha1_80))),
        ("srtp_plain_refused", vec![]),
    ] {
        let dir = scratch(name);
        let port = free_port_pair();
        let mut recv = receiver(&dir, port, 4.0, &key_args(&key));
        let mut send = sender(&dir, &format!("127.0.0.1:{port}"), 2.0, &send_key);
        finish(&mut send);
        finish(&mut recv);
        let r = final_stats(&dir.join("recv.json"));
        let sent = u(&final_stats(&dir.join("send.json")), "packets_sent");
        assert!(sent >= 190, "{sent}");
        // the RTP packets, and the sender reports on port + 1
        assert!(u(&r, "srtp_auth_failed") >= sent, "{name}: {sent} sent; {r}");
        assert_eq!(u(&r, "packets_received"), 0, "{name}: {r}");
        assert_eq!(u(&r, "streams_started"), 0, "{name}: {r}");
        assert_eq!(u(&r, "sender_reports"), 0, "{name}: {r}");
        let (_, samples) = read_wav(&dir.join("out.wav"));
        let peak = samples.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert_eq!(peak, 0.0, "{name}: something played");
    }
}

/// What the relay does to the sender's SRTP besides forwarding it.
#[derive(Clone, Copy)]
enum Attack {
    /// From 1 s to 3 s, after each packet it forwards, it sends from that same address a
    /// forgery of the next one (the next sequence number, one payload bit flipped: a
    /// replayed sequence number would be refused as a replay before its tag is checked)
    /// and the packet it forwarded 20 packets before (a replay).
    ForgeAndReplay,
    /// It holds back the RTP until the sender's first SRTCP report has passed (as a loss at
    /// the start would), then sends one forgery 30,000 sequence numbers ahead of the first
    /// packet it forwards, just before it.
    ForgeFarAheadOfTheFirst,
}

/// Forwards the sender's SRTP (and, with `--rtcp-mux`, SRTCP) to the receiver from one
/// socket, and attacks from that same address; counts what it forged, replayed and held
/// back.
struct Relay {
    port: u16,
    forged: Arc<AtomicU64>,
    replayed: Arc<AtomicU64>,
    held_back: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    fn start(to_port: u16, attack: Attack) -> Relay {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        let to: SocketAddr = format!("127.0.0.1:{to_port}").parse().unwrap();
        let counter = || Arc::new(AtomicU64::new(0));
        let (forged, replayed, held_back) = (counter(), counter(), counter());
        let stop = Arc::new(AtomicBool::new(false));
        let port = socket.local_addr().unwrap().port();
        let (f, r, held, st) = (forged.clone(), replayed.clone(), held_back.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut history: Vec<Vec<u8>> = Vec::new();
            let mut first: Option<Instant> = None;
            let mut reported = false;
            let mut buf = [0u8; 2048];
            while !st.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if from == to {
                    continue; // receiver reports: not needed here
                }
                let d = &buf[..n];
                let rtp = d[1] & 0x7f == 96;
                if !rtp {
                    reported = true;
                    let _ = socket.send_to(d, to);
                    continue;
                }
                // the next packet's sequence number plus `ahead`, one payload bit flipped
                let forgery = |ahead: u16| {
                    let mut bad = d.to_vec();
                    let seq = u16::from_be_bytes([d[2], d[3]]).wrapping_add(ahead);
                    bad[2..4].copy_from_slice(&seq.to_be_bytes());
                    bad[20] ^= 0x04;
                    bad
                };
                match attack {
                    Attack::ForgeAndReplay => {
                        let _ = socket.send_to(d, to);
                        let t = first.get_or_insert_with(Instant::now).elapsed().as_secs_f64();
                        history.push(d.to_vec());
                        if (1.0..3.0).contains(&t) {
                            let _ = socket.send_to(&forgery(1), to);
                            f.fetch_add(1, Ordering::Relaxed);
                            let _ = socket.send_to(&history[history.len() - 21], to);
                            r.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Attack::ForgeFarAheadOfTheFirst => {
                        if !reported {
                            held.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if f.load(Ordering::Relaxed) == 0 {
                            let _ = socket.send_to(&forgery(30_000), to);
                            f.fetch_add(1, Ordering::Relaxed);
                        }
                        let _ = socket.send_to(d, to);
                    }
                }
            }
        });
        Relay {
            port,
            forged,
            replayed,
            held_back,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What a relay counted.
struct Attacked {
    forged: u64,
    replayed: u64,
    held_back: u64,
}

/// A tone of `secs` from `patchcord-send` (`--rtcp-mux`) through a relay that makes
/// `attack`, into `patchcord-recv` (recording `dir/out.wav`), both with one key; what the
/// relay counted and the receiver's final stats.
fn attacked(dir: &Path, attack: Attack, secs: f64) -> (Attacked, serde_json::Value) {
    let port = free_port_pair();
    let key = new_key(Suite::AesCm128HmacSha1_80);
    let mut recv = receiver(dir, port, secs + 2.0, &key_args(&key));
    let relay = Relay::start(port, attack);
    let mut extra = key_args(&key);
    extra.push(s("--rtcp-mux"));
    let mut send = sender(dir, &format!("127.0.0.1:{}", relay.port), secs, &extra);
    finish(&mut send);
    finish(&mut recv);
    let counted = Attacked {
        forged: relay.forged.load(Ordering::Relaxed),
        replayed: relay.replayed.load(Ordering::Relaxed),
        held_back: relay.held_back.load(Ordering::Relaxed),
    };
    (counted, final_stats(&dir.join("recv.json")))
}

/// Forged and replayed packets from the sender's own address: each one counted (exactly:
/// loopback loses nothing), and the tone unchanged in every 10 ms window.
#[test]
fn forged_and_replayed_packets_are_counted_and_never_played() {
    let _serial = serial();
    let dir = scratch("srtp_forged_replayed");
    let (relay, r) = attacked(&dir, Attack::ForgeAndReplay, 4.0);
    let (forged, replayed) = (relay.forged, relay.replayed);
    assert!(
        forged >= 190 && replayed >= 190,
        "{forged} forged, {replayed} replayed"
    );
    assert_eq!(u(&r, "srtp_auth_failed"), forged, "{r}");
    assert_eq!(u(&r, "srtp_replayed"), replayed, "{r}");
    assert_eq!(u(&r, "srtp_malformed"), 0, "{r}");
    for k in ["concealed_samples", "duplicates", "restarts", "underruns"] {
        assert_eq!(u(&r, k), 0, "{k}: {r}");
    }
    assert_eq!(u(&r, "streams_started"), 1, "{r}");
    // every 10 ms window between the tone's rise and its fade is the tone at 0.5
    let (_, samples) = read_wav(&dir.join("out.wav"));
    let windows: Vec<f64> = samples
        .chunks_exact(480)
        .map(|w| tone_amplitude(w, 1000.0))
        .collect();
    let first = windows
        .iter()
        .position(|&a| a > 0.25)
        .expect("the tone never played");
    let last = windows.iter().rposition(|&a| a > 0.25).unwrap();
    let rms_ok = |w: &[f32]| {
        let rms = (w.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / w.len() as f64).sqrt();
        (rms - 0.5 / 2f64.sqrt()).abs() < 0.02
    };
    let bad: Vec<usize> = (first + 5..last - 1)
        .filter(|&i| (windows[i] - 0.5).abs() > 0.05 || !rms_ok(&samples[i * 480..(i + 1) * 480]))
        .collect();
    assert!(bad.is_empty(), "windows off the tone: {bad:?}\n{r}");
    assert!(
        (last + 1 - first) as f64 * 0.01 > 3.4,
        "tone {} windows",
        last + 1 - first
    );
}

/// The replay-window attack the `srtp_unprotect` fuzz target found (BENCHMARKS.md §11):
/// the receiver knows the sender's SSRC from an SRTCP report before its first SRTP packet
/// (the relay holds the RTP back until that report has passed), and a forgery 30,000
/// sequence numbers ahead arrives just before the first genuine packet. It is refused and
/// counted, and the stream plays: not one genuine packet is taken for a replay.
#[test]
fn a_forgery_far_ahead_of_the_first_packet_does_not_lock_the_stream_out() {
    let _serial = serial();
    let dir = scratch("srtp_forged_ahead");
    let (relay, r) = attacked(&dir, Attack::ForgeFarAheadOfTheFirst, 5.0);
    let (forged, held_back) = (relay.forged, relay.held_back);
    eprintln!("{held_back} packets held back until the first report: {r}");
    assert_eq!(forged, 1, "the sender's first report never came");
    assert!(held_back >= 1, "the first report came before any RTP");
    assert_eq!(u(&r, "srtp_auth_failed"), 1, "{r}");
    assert_eq!(u(&r, "srtp_replayed"), 0, "{r}");
    assert_eq!(u(&r, "streams_started"), 1, "{r}");
    assert!(u(&r, "sender_reports") >= 1, "{r}");
    let (_, samples) = read_wav(&dir.join("out.wav"));
    let heard = seconds_of_tone(&samples, 1000.0);
    assert!(heard > 2.5, "{heard:.2} s of the tone played: {r}");
}
