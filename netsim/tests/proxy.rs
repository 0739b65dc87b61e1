//! End-to-end: the `patchcord-impair` binary between two UDP sockets on loopback.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_patchcord-impair");

fn temp_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("patchcord-impair-test-{}-{name}", std::process::id()))
}

/// A loopback UDP socket with a large receive buffer (so a briefly descheduled test thread
/// does not lose datagrams in the kernel, which would break the exact accounting).
fn bind(port: u16) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&SocketAddr::from(([127, 0, 0, 1], port)).into())?;
    Ok(s.into())
}

/// Two sockets on consecutive loopback ports (RTP, RTCP).
fn socket_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..64 {
        let Ok(a) = bind(0) else {
            continue;
        };
        let Ok(addr) = a.local_addr() else { continue };
        let Some(next) = addr.port().checked_add(1) else {
            continue;
        };
        if let Ok(b) = bind(next) {
            return (a, b);
        }
    }
    panic!("no free pair of consecutive UDP ports on 127.0.0.1");
}

struct Proxy {
    child: Child,
    listen: SocketAddr,
    stderr: mpsc::Receiver<String>,
}

impl Proxy {
    fn start(dest: SocketAddr, args: &[&str]) -> Proxy {
        let mut child = Command::new(BIN)
            .args(["--listen", "127.0.0.1:0", "--to", &dest.to_string(), "--quiet"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stderr = child.stderr.take();
        let (tx, rx) = mpsc::channel();
        let mut proxy = Proxy {
            child,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            stderr: rx,
        };
        let stderr = stderr.expect("piped stderr");
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = proxy
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("proxy did not say it was listening"));
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().expect("address");
                proxy.listen = addr.parse().expect("listen address");
                return proxy;
            }
        }
    }

    fn rtcp(&self) -> SocketAddr {
        SocketAddr::new(self.listen.ip(), self.listen.port() + 1)
    }

    /// SIGTERM, wait for a clean exit, return the final JSON record of `stats`.
    fn stop(mut self, stats: &PathBuf) -> Value {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = self.child.wait().expect("wait");
        let log: Vec<String> = self.stderr.try_iter().collect();
        assert!(status.success(), "proxy exited with {status}: {log:?}");
        final_record(stats)
    }
}

impl Drop for Proxy {
    /// A failed test must not leave the proxy running (no-op after a clean `stop`).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn final_record(stats: &PathBuf) -> Value {
    let text = std::fs::read_to_string(stats).expect("stats file");
    let last = text.lines().last().expect("a stats line");
    let v: Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(
        v["final"],
        Value::Bool(true),
        "last line is not the final record: {last}"
    );
    v
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut d = vec![0x80, 96];
    d.extend_from_slice(&seq.to_be_bytes());
    d.extend_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    d.extend_from_slice(&ssrc.to_be_bytes());
    d.extend_from_slice(&[0xF8, 0xFF, 0xFE]);
    d
}

fn seq_of(d: &[u8]) -> u16 {
    u16::from_be_bytes([d[2], d[3]])
}

/// Receive on `socket` until it has been quiet for `quiet`.
fn collect(socket: UdpSocket, quiet: Duration) -> thread::JoinHandle<Vec<Vec<u8>>> {
    thread::spawn(move || {
        socket.set_read_timeout(Some(quiet)).expect("timeout");
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        // Wait up to 10 s for the first datagram, then until quiet.
        let start = Instant::now();
        loop {
            match socket.recv(&mut buf) {
                Ok(n) => out.push(buf[..n].to_vec()),
                Err(_) if out.is_empty() && start.elapsed() < Duration::from_secs(10) => continue,
                Err(_) => break,
            }
        }
        out
    })
}

fn seqs(v: &Value, key: &str) -> Vec<u16> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key}"))
        .iter()
        .map(|x| x.as_u64().expect("seq") as u16)
        .collect()
}

#[test]
fn loss20_accounting_matches_what_arrived_and_rtcp_passes() {
    let (dest, dest_rtcp) = socket_pair();
    let dest_addr = dest.local_addr().expect("addr");
    let stats = temp_path("loss20.jsonl");
    let proxy = Proxy::start(
        dest_addr,
        &[
            "--profile",
            "loss=20%",
            "--seed",
            "1234",
            "--stats-json",
            stats.to_str().expect("utf8"),
        ],
    );

    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    let reply_dest = dest.try_clone().expect("clone");
    let rx = collect(dest, Duration::from_millis(1500));
    let rx_rtcp = collect(dest_rtcp, Duration::from_millis(1500));

    const N: u16 = 1000;
    for seq in 0..N {
        client.send_to(&rtp(seq, 0xC0FFEE), proxy.listen).expect("send");
        if seq % 20 == 0 {
            // An RTCP sender report (PT 200) on port + 1.
            client
                .send_to(&[0x80, 200, 0, 6, 0, 0xC0, 0xFF, 0xEE, seq as u8], proxy.rtcp())
                .expect("send rtcp");
        }
        thread::sleep(Duration::from_micros(300));
    }
    let got = rx.join().expect("rx thread");
    let got_rtcp = rx_rtcp.join().expect("rtcp thread");

    // A reply from the destination goes back to the client, unimpaired.
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    reply_dest.send_to(b"reply", proxy.listen).expect("reply");
    let mut buf = [0u8; 64];
    let n = client
        .recv(&mut buf)
        .expect("the reply from the destination came back");
    assert_eq!(&buf[..n], b"reply");

    let v = proxy.stop(&stats);
    let received: Vec<u16> = got.iter().map(|d| seq_of(d)).collect();
    let unique: BTreeSet<u16> = received.iter().copied().collect();
    let dropped = seqs(&v, "dropped_seqs");
    let dropped_set: BTreeSet<u16> = dropped.iter().copied().collect();
    let missing: BTreeSet<u16> = (0..N).filter(|s| !unique.contains(s)).collect();

    assert_eq!(v["received"], u64::from(N));
    assert_eq!(v["rtp"], u64::from(N));
    assert_eq!(unique.len() + dropped.len(), usize::from(N));
    assert_eq!(
        missing, dropped_set,
        "missing sequence numbers differ from the proxy's dropped_seqs"
    );
    assert_eq!(dropped.len(), dropped_set.len());
    assert_eq!(v["dropped"], dropped.len() as u64);
    assert_eq!(received.len(), unique.len(), "loss=20% duplicated something");
    assert!(seqs(&v, "duplicated_seqs").is_empty());
    assert_eq!(v["delivered"], received.len() as u64);
    assert!(
        (120..=280).contains(&dropped.len()),
        "{} dropped of 1000 at 20%",
        dropped.len()
    );
    // Every datagram arrived intact.
    for d in &got {
        assert_eq!(d, &rtp(seq_of(d), 0xC0FFEE));
    }
    // RTCP: all 50 passed, unimpaired.
    assert_eq!(got_rtcp.len(), 50);
    assert_eq!(v["rtcp_forwarded"], 50);
    assert_eq!(v["returned"], 1);
    assert_eq!(v["stop_reason"], "SIGTERM");
    assert_eq!(v["seed"], 1234);
    assert_eq!(v["profile"], "loss=0.2");
    let streams = v["streams"].as_array().expect("streams");
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0]["ssrc"], 0xC0FFEE);
    assert_eq!(streams[0]["dropped"], dropped.len() as u64);

    // The loss decisions depend only on the seed and the packet order: the model with the
    // same seed drops the same packets.
    let mut model = patchcord_netsim::Impairment::new(
        patchcord_netsim::Profile::parse("loss=20%").expect("profile"),
        1234,
    );
    let expected: Vec<u16> = (0..N)
        .filter(|&s| model.submit(u64::from(s), i64::from(s)) == patchcord_netsim::Fate::Dropped)
        .collect();
    assert_eq!(dropped, expected);
    let _ = std::fs::remove_file(&stats);
}

#[test]
fn duplicates_reorders_and_garbage_are_accounted_exactly() {
    let (dest, _dest_rtcp) = socket_pair();
    let dest_addr = dest.local_addr().expect("addr");
    let stats = temp_path("dup.jsonl");
    let log = temp_path("dup-packets.jsonl");
    let proxy = Proxy::start(
        dest_addr,
        &[
            "--profile",
            "loss=5%,dup=5%:1ms,reorder=5%:3ms,jitter=1ms:uniform",
            "--seed",
            "99",
            "--stats-json",
            stats.to_str().expect("utf8"),
            "--packet-log",
            log.to_str().expect("utf8"),
        ],
    );
    let client = UdpSocket::bind("127.0.0.1:0").expect("client");
    let rx = collect(dest, Duration::from_millis(1500));
    const N: u16 = 1000;
    let mut garbage = 0u64;
    for seq in 0..N {
        client
            .send_to(&rtp(seq.wrapping_add(65_000), 7), proxy.listen)
            .expect("send");
        if seq % 50 == 0 {
            // Non-RTP junk of assorted lengths (including empty): impaired, never fatal.
            let len = usize::from(seq / 50) * 3;
            let junk: Vec<u8> = (0..len).map(|i| (i * 31 + 7) as u8 & 0x3F).collect();
            client.send_to(&junk, proxy.listen).expect("send junk");
            garbage += 1;
        }
        thread::sleep(Duration::from_micros(400));
    }
    let got = rx.join().expect("rx thread");
    let v = proxy.stop(&stats);

    let rtp_got: Vec<u16> = got
        .iter()
        .filter(|d| d.len() >= 12 && d[0] == 0x80)
        .map(|d| seq_of(d))
        .collect();
    let mut count: HashMap<u16, u32> = HashMap::new();
    for &s in &rtp_got {
        *count.entry(s).or_default() += 1;
    }
    let sent: Vec<u16> = (0..N).map(|s| s.wrapping_add(65_000)).collect();
    let missing: BTreeSet<u16> = sent.iter().copied().filter(|s| !count.contains_key(s)).collect();
    let twice: BTreeSet<u16> = count.iter().filter(|(_, &c)| c == 2).map(|(&s, _)| s).collect();
    assert!(count.values().all(|&c| c <= 2));

    assert_eq!(
        missing,
        seqs(&v, "dropped_seqs").into_iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(
        twice,
        seqs(&v, "duplicated_seqs").into_iter().collect::<BTreeSet<_>>()
    );
    assert!(!twice.is_empty(), "dup=5% duplicated nothing");
    assert_eq!(count.len() + missing.len(), usize::from(N));
    assert_eq!(v["rtp"], u64::from(N));
    assert_eq!(v["non_rtp"], garbage);
    assert_eq!(v["received"], u64::from(N) + garbage);
    assert_eq!(v["delivered"], got.len() as u64);
    assert_eq!(v["pending"], 0);
    assert_eq!(v["unsent_at_exit"], 0);
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k}"));
    assert_eq!(n("received"), n("dropped") + n("delivered") - n("duplicated"));

    // Reordered as the receiver sees it (first copies in arrival order, by send index; the
    // sequence numbers wrap at 65536 mid-run) equals the proxy's reordered_seqs.
    let index = |s: u16| s.wrapping_sub(65_000);
    let mut seen = HashSet::new();
    let mut highest: Option<u16> = None;
    let mut reordered = Vec::new();
    for &s in &rtp_got {
        if !seen.insert(s) {
            continue;
        }
        if highest.is_some_and(|h| h > index(s)) {
            reordered.push(s);
        }
        highest = Some(highest.map_or(index(s), |h| h.max(index(s))));
    }
    assert!(!reordered.is_empty(), "reorder=5% reordered nothing");
    assert_eq!(reordered, seqs(&v, "reordered_seqs"));

    // The packet log has one line per impaired datagram.
    let lines = std::fs::read_to_string(&log).expect("packet log");
    let entries: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(entries.len() as u64, n("received"));
    let logged_dropped = entries
        .iter()
        .filter(|e| e["fate"] == "dropped" && !e["seq"].is_null())
        .count();
    assert_eq!(logged_dropped, missing.len());
    let _ = std::fs::remove_file(&stats);
    let _ = std::fs::remove_file(&log);
}

#[test]
fn duration_stops_cleanly_and_stats_lines_are_written() {
    let (dest, _r) = socket_pair();
    let stats = temp_path("duration.jsonl");
    let out = Command::new(BIN)
        .args([
            "--listen",
            "127.0.0.1:0",
            "--to",
            &dest.local_addr().expect("addr").to_string(),
        ])
        .args([
            "--profile",
            "jitter5",
            "--duration",
            "1.3",
            "--stats-json",
            stats.to_str().expect("utf8"),
        ])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&stats).expect("stats");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert!(lines.len() >= 2, "{text}");
    assert_eq!(lines[0]["final"], false);
    let last = lines.last().expect("final");
    assert_eq!(last["final"], true);
    assert_eq!(last["stop_reason"], "duration reached");
    assert_eq!(last["received"], 0);
    assert_eq!(last["dropped_seqs"], Value::Array(vec![]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rx 0 drop 0"), "{stderr}");
    let _ = std::fs::remove_file(&stats);
}

fn fails_with(args: &[&str], code: i32, needle: &str) {
    let out = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: {stderr:?} does not mention {needle:?}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_arguments_fail_clearly() {
    let to = ["--to", "127.0.0.1:5004"];
    fails_with(
        &[&["--listen", "127.0.0.1:0", "--profile", "loss=5"][..], &to].concat(),
        2,
        "bad --profile",
    );
    fails_with(
        &[&["--listen", "127.0.0.1:0", "--profile", "wobbly"][..], &to].concat(),
        2,
        "unknown named profile",
    );
    fails_with(
        &[&["--listen", "nowhere"][..], &to].concat(),
        2,
        "bad --listen address \"nowhere\"",
    );
    fails_with(
        &["--listen", "127.0.0.1:0", "--to", "127.0.0.1:99999"],
        2,
        "bad --to address",
    );
    fails_with(
        &["--listen", "127.0.0.1:0", "--to", "127.0.0.1:65535"],
        2,
        "port 65535 has no port + 1",
    );
    fails_with(
        &[&["--listen", "127.0.0.1:0", "--duration=-1"][..], &to].concat(),
        2,
        "bad --duration",
    );
    fails_with(&["--to", "127.0.0.1:5004"], 2, "--listen");
    fails_with(
        &[
            &[
                "--listen",
                "127.0.0.1:0",
                "--stats-json",
                "/nonexistent-dir/x.json",
            ][..],
            &to,
        ]
        .concat(),
        1,
        "cannot create --stats-json",
    );

    // Address in use: RTP port, then RTCP port.
    let (taken, _taken_rtcp) = socket_pair();
    let addr = taken.local_addr().expect("addr").to_string();
    fails_with(
        &[&["--listen", addr.as_str()][..], &to].concat(),
        1,
        "address already in use",
    );
    let (free, taken_rtcp) = socket_pair();
    let free_addr = free.local_addr().expect("addr");
    drop(free);
    fails_with(
        &[&["--listen", &free_addr.to_string()][..], &to].concat(),
        1,
        "RTCP",
    );
    drop(taken_rtcp);
}

#[test]
fn lists_named_profiles() {
    let out = Command::new(BIN).arg("--list-profiles").output().expect("run");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in patchcord_netsim::profile_names() {
        assert!(text.contains(name), "{name} missing from {text}");
    }
}
