//! End-to-end across an impaired path: the real sender and receiver binaries through the
//! project's UDP proxy (`patchcord-impair`) with 5 % loss and 20 ms jitter. The received
//! audio must be continuous, and the receiver's counters must equal the proxy's own counts.

use std::collections::BTreeSet;
use std::time::Duration;

use patchcord_tests::*;

fn run(
    name: &str,
    send_extra: &[&str],
    recv_extra: &[&str],
) -> (serde_json::Value, serde_json::Value, serde_json::Value, Vec<f32>) {
    let _serial = serial();
    let dir = scratch(name);
    let recv_port = free_port_pair();
    let proxy_port = free_port_pair();
    let s = |x: &str| x.to_string();
    let out = dir.join("out.wav");
    let mut rargs = vec![
        s("--listen"),
        format!("127.0.0.1:{recv_port}"),
        s("--device"),
        format!("wav:{}", out.display()),
        s("--channels"),
        s("1"),
        s("--duration"),
        s("12"),
        s("--stats-json"),
        dir.join("recv.json").display().to_string(),
        s("-q"),
    ];
    rargs.extend(recv_extra.iter().map(|a| a.to_string()));
    let mut recv = Proc::spawn(&dir, "recv", &bin("patchcord-recv"), &rargs);
    wait_for_file(&dir.join("recv.json"));
    let mut proxy = Proc::spawn(
        &dir,
        "proxy",
        &bin("patchcord-impair"),
        &[
            s("--listen"),
            format!("127.0.0.1:{proxy_port}"),
            s("--to"),
            format!("127.0.0.1:{recv_port}"),
            s("--profile"),
            s("loss=5%,delay=60ms,jitter=20ms"),
            s("--seed"),
            s("42"),
            s("--duration"),
            s("11"),
            s("--realtime"),
            s("--quiet"),
            s("--stats-json"),
            dir.join("proxy.json").display().to_string(),
        ],
    );
    wait_for_file(&dir.join("proxy.json"));
    let mut sargs = vec![
        s("--to"),
        format!("127.0.0.1:{proxy_port}"),
        s("--device"),
        s("tone:440"),
        s("--channels"),
        s("1"),
        s("--duration"),
        s("8"),
        s("--stats-json"),
        dir.join("send.json").display().to_string(),
        s("-q"),
    ];
    sargs.extend(send_extra.iter().map(|a| a.to_string()));
    let mut send = Proc::spawn(&dir, "send", &bin("patchcord-send"), &sargs);
    for (p, what) in [
        (&mut send, "sender"),
        (&mut proxy, "proxy"),
        (&mut recv, "receiver"),
    ] {
        let (ok, err) = p.wait(Duration::from_secs(60));
        assert!(ok, "{what} failed: {err}");
    }
    let (_, samples) = read_wav(&out);
    (
        final_stats(&dir.join("recv.json")),
        final_stats(&dir.join("proxy.json")),
        final_stats(&dir.join("send.json")),
        samples,
    )
}

/// The audio between the first and the last sound is continuous: no run of digital
/// silence longer than 10 ms (concealment continues a tone; it does not drop to zero).
fn assert_continuous(samples: &[f32]) {
    let first = samples
        .iter()
        .position(|s| s.abs() > 0.01)
        .expect("no audio received");
    let last = samples.iter().rposition(|s| s.abs() > 0.01).unwrap();
    assert!(
        last - first > 48_000 * 6,
        "only {} s of audio",
        (last - first) / 48_000
    );
    let mut run = 0usize;
    let mut longest = 0usize;
    for s in &samples[first..last] {
        if s.abs() < 1e-4 {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    assert!(
        longest <= 480,
        "a gap of {longest} silent samples in the received audio"
    );
}

fn seqs(v: &serde_json::Value) -> BTreeSet<u64> {
    v.as_array()
        .map(|a| a.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}

#[test]
fn loss_and_jitter_through_the_proxy_counters_match_the_proxy() {
    let (r, p, s, samples) = run("impaired_plc", &[], &[]);
    assert_continuous(&samples);
    let dropped = seqs(&p["dropped_seqs"]);
    assert!(!dropped.is_empty(), "the proxy dropped nothing: {p}");
    assert_eq!(
        p["received"], s["packets_sent"],
        "proxy saw every packet the sender sent"
    );
    // everything the proxy delivered arrived, and nothing else
    assert_eq!(r["packets_received"], p["delivered"], "recv {r}\nproxy {p}");
    assert_eq!(r["duplicates"].as_u64(), Some(0));
    // RFC 3550 loss = the proxy's drops, except drops after the last delivered packet
    // (no receiver can see those) and before the first
    let lost = r["lost"].as_u64().unwrap();
    assert!(
        lost <= dropped.len() as u64 && lost + 3 >= dropped.len() as u64,
        "lost {lost} vs proxy {}",
        dropped.len()
    );
    // every missing packet was dropped by the proxy or arrived late
    let missing = r["missing"].as_u64().unwrap();
    let late = r["late"].as_u64().unwrap();
    assert!(
        missing <= lost + late,
        "missing {missing} lost {lost} late {late}"
    );
    assert!(missing + 3 >= lost, "missing {missing} lost {lost}");
}

#[test]
fn redundancy_recovers_the_proxys_losses() {
    let (r, p, _s, samples) = run(
        "impaired_red",
        &[
            "--application",
            "lowdelay",
            "--redundancy",
            "2",
            "--bitrate",
            "64000",
        ],
        &[],
    );
    assert_continuous(&samples);
    let dropped = seqs(&p["dropped_seqs"]).len() as u64;
    let recovered = r["recovered_red"].as_u64().unwrap();
    eprintln!("proxy dropped {dropped}, receiver recovered {recovered} by RED: {r}");
    // 5 % random loss: double losses within 3 packets are rare; the adaptive buffer makes
    // room for the copies after the first losses
    assert!(
        recovered * 10 >= dropped * 7,
        "recovered {recovered} of {dropped}"
    );
}
