//! RTCP both ways (RFC 3550): GStreamer's `rtpbin` takes patchcord-send's sender reports
//! and their SDES CNAME, and its receiver reports come back to patchcord-send, which shows
//! them (count, loss, jitter, round trip); patchcord-recv's receiver reports reach patchcord-send, which
//! shows the round trip (loopback: well under a millisecond) and the loss that
//! `patchcord-impair` applied, to the packet; a sender that is not patchcord gets no
//! "capture → playback" latency, only the receiver's own share, and the reason.

use std::process::Command;
use std::time::Duration;

use patchcord_tests::*;

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn gstreamer_rtpbin_takes_patchcords_sender_reports_and_cname() {
    let _serial = serial();
    let dir = scratch("rtcp_send_to_rtpbin");
    let port = free_port_pair();
    let pipeline = format!(
        "rtpbin name=b udpsrc port={port} caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96 ! \
         b.recv_rtp_sink_0 udpsrc port={} ! b.recv_rtcp_sink_0 b. ! rtpopusdepay ! opusdec ! fakesink",
        port + 1
    );
    let log = dir.join("gst.log");
    let mut gst = Command::new(tool("gst-launch-1.0"))
        .args(pipeline.split_whitespace())
        .env("GST_DEBUG", "rtpsession:5")
        .env("GST_DEBUG_NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("gst-launch-1.0");
    std::thread::sleep(Duration::from_millis(800));
    let mut send = start_send(
        &dir,
        "send",
        &[
            "--to",
            &format!("127.0.0.1:{port}"),
            "--device",
            "tone:440",
            "--duration",
            "3",
        ],
    );
    let pid = send.child.as_ref().map(|c| c.id()).unwrap();
    let (ok, err) = send.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    std::thread::sleep(Duration::from_millis(300));
    let _ = gst.kill();
    let _ = gst.wait();
    let ssrc = final_stats(&dir.join("send.json"))["ssrc"].as_u64().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    let cname = format!("{pid}@{}", hostname());
    let srs = text.matches(&format!("got SR packet: SSRC {ssrc:08x}")).count();
    assert!(srs >= 2, "rtpbin took {srs} sender reports of {ssrc:08x}");
    assert!(
        text.contains(&format!("type 1, len {}, data {cname}", cname.len())),
        "rtpbin read no CNAME {cname}"
    );
    assert!(text.contains(&format!("SDES changed for SSRC {ssrc:08x}")));
}

/// GStreamer's `rtpbin` as the receiver, sending its receiver reports to where
/// patchcord-send's RTCP comes from (its one socket): patchcord-send shows them, with no
/// loss, a small jitter, rtpbin's CNAME, and the round trip from rtpbin's LSR/DLSR.
#[test]
fn gstreamer_rtpbins_receiver_reports_reach_patchcord_send() {
    let _serial = serial();
    let dir = scratch("rtcp_rtpbin_reports");
    let port = free_port_pair();
    let mut send = start_send(
        &dir,
        "send",
        &[
            "--to",
            &format!("127.0.0.1:{port}"),
            "--device",
            "tone:440",
            "--duration",
            "9",
        ],
    );
    // the sender's socket: the one UDP port its process holds
    let pid = send.child.as_ref().map(|c| c.id()).unwrap();
    let mut source_port = None;
    for _ in 0..100 {
        let out = Command::new("ss")
            .args(["-Hunap"])
            .output()
            .expect("ss (iproute2)");
        let text = String::from_utf8_lossy(&out.stdout);
        source_port = text
            .lines()
            .find(|l| l.contains(&format!("pid={pid},")))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|local| local.rsplit(':').next())
            .and_then(|p| p.parse::<u16>().ok());
        if source_port.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let source_port = source_port.expect("the sender's UDP port (ss -unap)");
    let pipeline = format!(
        "rtpbin name=b udpsrc port={port} caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=OPUS,payload=96 ! \
         b.recv_rtp_sink_0 udpsrc port={} ! b.recv_rtcp_sink_0 \
         b.send_rtcp_src_0 ! udpsink host=127.0.0.1 port={source_port} sync=false async=false \
         b. ! rtpopusdepay ! opusdec ! fakesink",
        port + 1
    );
    let mut gst = Command::new(tool("gst-launch-1.0"))
        .args(pipeline.split_whitespace())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("gst.log")).unwrap())
        .spawn()
        .expect("gst-launch-1.0");
    let (ok, err) = send.wait(Duration::from_secs(30));
    let _ = gst.kill();
    let _ = gst.wait();
    assert!(ok, "{err}");
    let s = final_stats(&dir.join("send.json"));
    let receivers = s["receivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 1, "{s}");
    let v = &receivers[0];
    eprintln!("rtpbin as seen by patchcord-send: {v}");
    assert!(v["reports"].as_u64().unwrap_or(0) >= 2, "{v}");
    // nothing lost on loopback; rtpbin, joining a running stream, reports −1 (RFC 3550
    // lets the count go negative: it is expected − received, from its own base)
    assert!(v["cumulative_lost"].as_i64().is_some_and(|l| l <= 0), "{v}");
    assert_eq!(v["fraction_lost_pct"].as_f64(), Some(0.0), "{v}");
    let jitter = v["jitter_ms"].as_f64().unwrap();
    assert!((0.0..5.0).contains(&jitter), "{v}");
    assert!(v["cname"].as_str().is_some_and(|c| !c.is_empty()), "{v}");
    // rtpbin echoes our last SR (LSR) and its hold time (DLSR): a loopback round trip
    let rtt = v["rtt_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no round trip: {v}"));
    assert!((0.0..5.0).contains(&rtt), "{v}");
    // from udpsink's own socket
    assert!(
        v["address"].as_str().is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{v}"
    );
}

/// Sender and receiver on loopback: the receiver's reports come back, the sender shows
/// their round trip, the receiver's CNAME, no loss.
#[test]
fn patchcord_send_shows_the_round_trip_from_patchcord_recvs_reports() {
    let _serial = serial();
    let dir = scratch("rtcp_round_trip");
    let port = free_port_pair();
    let mut recv = start_recv(
        &dir,
        "recv",
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--device",
            "null",
            "--duration",
            "9",
        ],
    );
    let mut send = start_send(
        &dir,
        "send",
        &[
            "--to",
            &format!("127.0.0.1:{port}"),
            "--device",
            "tone:440",
            "--duration",
            "7",
        ],
    );
    let (ok, err) = send.wait(Duration::from_secs(30));
    assert!(ok, "{err}");
    let (ok, err) = recv.wait(Duration::from_secs(30));
    assert!(ok, "{err}");
    let s = final_stats(&dir.join("send.json"));
    let r = final_stats(&dir.join("recv.json"));
    let receivers = s["receivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 1, "{s}");
    let v = &receivers[0];
    // every report's round trip, as the per-second records show them
    let mut rtts: Vec<f64> = vec![];
    let mut last_reports = 0;
    for rec in read_stats(&dir.join("send.json")) {
        let r = &rec["receivers"][0];
        if let (Some(n), Some(rtt)) = (r["reports"].as_u64(), r["rtt_ms"].as_f64()) {
            if n > last_reports {
                rtts.push(rtt);
                last_reports = n;
            }
        }
    }
    rtts.sort_by(f64::total_cmp);
    println!("loopback round trips (ms): {rtts:?}");
    assert!(rtts.len() >= 2, "{v}");
    // the best reading is the path's round trip, well under 1 ms on loopback (scheduling on
    // a loaded machine only adds, so the minimum is the reading to judge); the median stays
    // far below the 10 ms and more (a frame, a device period) by which a round trip taken
    // from the sender report's capture instant, not its send instant, would be off
    assert!(rtts[0] > 0.0 && rtts[0] < 1.0, "{rtts:?}");
    assert!(rtts[rtts.len() / 2] < 5.0, "{rtts:?}");
    assert_eq!(v["cumulative_lost"].as_i64(), Some(0));
    assert!(v["cname"]
        .as_str()
        .unwrap()
        .ends_with(&format!("@{}", hostname())));
    assert!(r["receiver_reports_sent"].as_u64().unwrap() >= 2, "{r}");
    assert_eq!(r["receiver_report_send_errors"].as_u64(), Some(0));
    // patchcord's sender reports: the latency is capture -> playback, and the summary
    // has its spread over the run
    let (min, median, max) = (
        r["latency_min_ms"].as_f64().unwrap(),
        r["latency_median_ms"].as_f64().unwrap(),
        r["latency_max_ms"].as_f64().unwrap(),
    );
    let last = r["latency_ms"].as_f64().unwrap();
    assert!(
        min <= median && median <= max && (min..=max).contains(&last),
        "{r}"
    );
    // once the stream has gone, a status line shows no latency
    let records = read_stats(&dir.join("recv.json"));
    let after = records.iter().rev().find(|x| x["final"] == false).unwrap();
    assert_eq!(after["active_streams"].as_u64(), Some(0), "{after}");
    assert!(after["latency_ms"].is_null(), "{after}");
}

/// Through the impairment proxy (5 % loss on RTP; RTCP passes both ways): the loss the
/// receiver reports is the proxy's, packet for packet, up to the last report.
#[test]
fn patchcord_send_shows_the_loss_the_proxy_applied() {
    let _serial = serial();
    let dir = scratch("rtcp_impaired_loss");
    let imp = Impairment {
        profile: "loss=5%,delay=20ms",
        ..Impairment::default()
    };
    let run = run_impaired(&dir, &imp, &[], &[]);
    let (s, p) = (&run.send, &run.proxy);
    let v = &s["receivers"][0];
    assert!(v["reports"].as_u64().unwrap_or(0) >= 2, "{s}");
    let first = s["initial_sequence"].as_u64().unwrap();
    let index = |seq: u64| (seq + 65_536 - first) % 65_536;
    let highest = index(v["highest_seq"].as_u64().unwrap() % 65_536);
    let dropped_by_then = seqs(&p["dropped_seqs"])
        .iter()
        .filter(|&&q| index(q) <= highest)
        .count() as i64;
    let reported = v["cumulative_lost"].as_i64().unwrap();
    println!(
        "receiver reported {reported} lost up to packet {highest}; the proxy dropped {dropped_by_then} of them ({} in all)",
        seqs(&p["dropped_seqs"]).len()
    );
    assert!(dropped_by_then >= 10, "{p}");
    assert_eq!(reported, dropped_by_then);
    assert!(v["rtt_ms"].as_f64().unwrap() < 10.0, "{v}");
}

/// ffmpeg sends sender reports too, but they say when ffmpeg sent, on ffmpeg's clock:
/// no capture -> playback latency, the receiver's own share instead, and why.
#[test]
fn a_foreign_senders_reports_give_only_the_receiver_side_delay() {
    let _serial = serial();
    let dir = scratch("rtcp_foreign_latency");
    let port = free_port_pair();
    let mut recv = start_recv(
        &dir,
        "recv",
        &[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--device",
            "null",
            "--duration",
            "5",
        ],
    );
    let status = Command::new(tool("ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-re", "-f", "lavfi", "-i"])
        .arg("sine=frequency=660:duration=3:sample_rate=48000")
        .args(["-c:a", "libopus", "-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{port}"))
        .status()
        .expect("ffmpeg");
    assert!(status.success());
    let (ok, err) = recv.wait(Duration::from_secs(20));
    assert!(ok, "{err}");
    let records = read_stats(&dir.join("recv.json"));
    assert!(records.iter().all(|r| r["latency_ms"].is_null()), "{records:?}");
    let playing: Vec<_> = records
        .iter()
        .filter(|r| r["sender_reports"].as_u64().unwrap_or(0) > 0 && r["receiver_delay_ms"].is_number())
        .collect();
    assert!(!playing.is_empty(), "{records:?}");
    for r in playing {
        assert!(
            r["latency_note"].as_str().unwrap().contains("not patchcord"),
            "{r}"
        );
        let d = r["receiver_delay_ms"].as_f64().unwrap();
        assert!(d > 1.0 && d < 200.0, "receiver side {d} ms");
    }
    assert!(
        err.contains("end-to-end latency: not measured (the sender is not patchcord"),
        "{err}"
    );
}

/// `patchcord-send --allow`: receiver reports from a network outside the list are counted
/// (`rtcp_not_allowed`) and never shown; from inside it they are.
#[test]
fn patchcord_send_hears_receiver_reports_only_from_allowed_networks() {
    let _serial = serial();
    for (allow, heard) in [("127.0.0.0/8", true), ("10.0.0.0/8", false)] {
        let dir = scratch(&format!("rtcp_allow_{heard}"));
        let port = free_port_pair();
        let mut recv = start_recv(
            &dir,
            "recv",
            &[
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--device",
                "null",
                "--duration",
                "7",
            ],
        );
        wait_for_file(&dir.join("recv.json"));
        let mut send = Proc::spawn(
            &dir,
            "send",
            &bin("patchcord-send"),
            &[
                "--to".into(),
                format!("127.0.0.1:{port}"),
                "--device".into(),
                "tone:440".into(),
                "--duration".into(),
                "5".into(),
                "--allow".into(),
                allow.into(),
                "--stats-json".into(),
                dir.join("send.json").display().to_string(),
                "-q".into(),
            ],
        );
        let (ok, err) = send.wait(Duration::from_secs(30));
        assert!(ok, "{err}");
        let (ok, err) = recv.wait(Duration::from_secs(30));
        assert!(ok, "{err}");
        let s = final_stats(&dir.join("send.json"));
        let sent = final_stats(&dir.join("recv.json"))["receiver_reports_sent"]
            .as_u64()
            .unwrap();
        assert!(sent >= 1, "the receiver sent no report");
        let (reports, not_allowed) = (
            s["receiver_reports"].as_u64().unwrap(),
            s["rtcp_not_allowed"].as_u64().unwrap(),
        );
        println!("--allow {allow}: {reports} reports heard, {not_allowed} not allowed, {sent} sent");
        if heard {
            assert!(reports >= 1 && not_allowed == 0, "{s}");
            assert_eq!(s["receivers"].as_array().map(Vec::len), Some(1), "{s}");
        } else {
            assert!(reports == 0 && not_allowed >= 1, "{s}");
            assert_eq!(s["receivers"].as_array().map(Vec::len), Some(0), "{s}");
        }
    }
}
