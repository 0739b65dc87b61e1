//! Multicast, IPv4 and IPv6: one sender, two receivers, both play the tone and both send
//! their receiver reports, which the sender lists. Any-source joins from `--listen
//! GROUP:PORT --iface`, source-specific joins (SSM) from `--source` and from the source
//! filter of the sender's SDP. `--allow` takes the sender's own (unicast) address: a
//! receiver allowing it plays, a third one in the IPv4 group allowing only another network
//! hears nothing, counts every datagram as `not_allowed` and reports to no one.
//!
//! Everything runs inside a network namespace the test creates (`unshare -n`), never on
//! this machine's interfaces: IPv4 on the namespace's `lo` with a multicast route
//! (`224.0.0.0/4 dev lo src 127.0.0.1`: without `src` the kernel sends from 0.0.0.0 when
//! the interface is named by index), IPv6 over a veth pair inside it (`lo` does not loop
//! IPv6 multicast back): the sender sends on `v0`, the receivers join on `v1`. Without
//! namespaces (not root, no `unshare` or `ip`) the tests say so and pass.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use patchcord_tests::*;

const PORT: u16 = 6404;

/// Whether this machine can make a network namespace with a veth pair in it.
fn namespaces() -> bool {
    let ok = Command::new("unshare")
        .args(["-n", "sh", "-c", "ip link add v0 type veth peer name v1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: no network namespace (needs root, `unshare` from util-linux and `ip` from iproute2 with veth); multicast is not tested"
        );
    }
    ok
}

/// `patchcord-recv` with `args`, into `NAME.wav` / `NAME.json`, in the background.
fn receiver(dir: &Path, name: &str, seconds: u32, args: &str) -> String {
    format!(
        "{} {args} --device wav:{d}/{name}.wav --channels 1 --duration {seconds} \
         --stats-json {d}/{name}.json -q 2>{d}/{name}.stderr &\n",
        bin("patchcord-recv").display(),
        d = dir.display()
    )
}

/// Run `script` in a new network namespace; its processes' files land in `dir`.
fn in_namespace(dir: &Path, script: &str) {
    std::fs::write(dir.join("script.sh"), script).unwrap();
    let mut p = Proc::spawn(
        dir,
        "unshare",
        Path::new("/usr/bin/unshare"),
        &[
            "-n".into(),
            "sh".into(),
            dir.join("script.sh").display().to_string(),
        ],
    );
    let (ok, err) = p.wait(Duration::from_secs(60));
    assert!(ok, "namespace script failed: {err}");
}

/// Both receivers played the tone (at its level) for `seconds` and reported to the
/// sender, which lists both.
fn assert_both_play_and_report(dir: &Path, seconds: [f64; 2]) {
    for (name, secs) in ["a", "b"].iter().zip(seconds) {
        let (_, samples) = read_wav(&dir.join(format!("{name}.wav")));
        let heard = seconds_of_tone(&samples, 440.0);
        let level = tone_amplitude(&samples, 440.0);
        let r = final_stats(&dir.join(format!("{name}.json")));
        assert!(heard >= secs, "receiver {name}: {heard:.2} s of the tone; {r}");
        assert!(
            (20.0 * (level / 0.5).log10()).abs() < 1.0,
            "receiver {name}: level {level}"
        );
        assert!(
            r["receiver_reports_sent"].as_u64().unwrap_or(0) >= 1,
            "receiver {name}: {r}"
        );
        assert_eq!(r["lost"].as_i64(), Some(0), "receiver {name}: {r}");
    }
    let s = final_stats(&dir.join("send.json"));
    let receivers = s["receivers"].as_array().unwrap();
    assert_eq!(receivers.len(), 2, "{s}");
    for v in receivers {
        assert!(v["reports"].as_u64().unwrap() >= 1, "{v}");
        assert_eq!(v["cumulative_lost"].as_i64(), Some(0), "{v}");
        assert!(v["rtt_ms"].as_f64().unwrap() < 10.0, "{v}");
    }
}

#[test]
fn ipv4_group_one_sender_two_receivers() {
    if !namespaces() {
        return;
    }
    let _serial = serial();
    let dir = scratch("multicast_v4");
    let sdp = dir.join("stream.sdp");
    let script = format!(
        "set -e\nip link set lo up\nip route add 224.0.0.0/4 dev lo src 127.0.0.1\n{}{}sleep 0.5\n\
         {} --to 239.1.2.3:{PORT} --ttl 1 --multicast-if lo --device tone:440 --channels 1 \
         --duration 6 --sdp {} --stats-json {d}/send.json -q 2>{d}/send.stderr\nwait\n",
        receiver(
            &dir,
            "a",
            8,
            &format!("--listen 239.1.2.3:{PORT} --iface lo --allow 127.0.0.1")
        ),
        receiver(
            &dir,
            "b",
            8,
            &format!("--listen 239.1.2.3:{PORT} --source 127.0.0.1 --iface 127.0.0.1")
        ) + &receiver(
            &dir,
            "c",
            8,
            &format!("--listen 239.1.2.3:{PORT} --iface lo --allow 10.0.0.0/8")
        ),
        bin("patchcord-send").display(),
        sdp.display(),
        d = dir.display()
    );
    in_namespace(&dir, &script);
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(text.contains("c=IN IP4 239.1.2.3/1\r\n"), "{text}");
    assert!(
        text.contains("a=source-filter:incl IN IP4 239.1.2.3 127.0.0.1\r\n"),
        "{text}"
    );
    assert_both_play_and_report(&dir, [5.5, 5.5]);
    // the receiver that allows only 10.0.0.0/8 heard none of it
    let c = final_stats(&dir.join("c.json"));
    let (_, samples) = read_wav(&dir.join("c.wav"));
    assert!(samples.iter().all(|s| *s == 0.0), "{c}");
    assert_eq!(c["streams_started"].as_u64(), Some(0), "{c}");
    assert_eq!(c["receiver_reports_sent"].as_u64(), Some(0), "{c}");
    assert_eq!(c["not_allowed"], c["datagrams"], "{c}");
    assert!(c["not_allowed"].as_u64().unwrap() > 500, "{c}");
}

#[test]
fn ipv6_group_one_sender_two_receivers() {
    if !namespaces() {
        return;
    }
    let _serial = serial();
    let dir = scratch("multicast_v6");
    let sdp = dir.join("stream.sdp");
    // receiver b starts from the sender's SDP (a source-specific join), once it exists
    let script = format!(
        "set -e\nip link set lo up\nip link add v0 type veth peer name v1\n\
         ip link set v0 up\nip link set v1 up\n\
         ip addr add fd00::1/64 dev v0 nodad\nip addr add fd00::2/64 dev v1 nodad\n\
         {}sleep 0.5\n\
         {} --to [ff15::1234]:{PORT} --ttl 2 --multicast-if v0 --device tone:440 --channels 1 \
         --duration 6 --sdp {s} --stats-json {d}/send.json -q 2>{d}/send.stderr &\n\
         while [ ! -f {s} ]; do sleep 0.05; done\n{}wait\n",
        receiver(
            &dir,
            "a",
            8,
            &format!("--listen [ff15::1234]:{PORT} --iface v1 --allow fd00::/64")
        ),
        bin("patchcord-send").display(),
        receiver(&dir, "b", 7, &format!("--sdp {} --iface v1", sdp.display())),
        s = sdp.display(),
        d = dir.display()
    );
    in_namespace(&dir, &script);
    let text = std::fs::read_to_string(&sdp).unwrap();
    assert!(text.contains("c=IN IP6 ff15::1234\r\n"), "{text}");
    assert!(
        text.contains("a=source-filter:incl IN IP6 ff15::1234 fd00::1\r\n"),
        "{text}"
    );
    assert_both_play_and_report(&dir, [5.5, 5.0]);
}
