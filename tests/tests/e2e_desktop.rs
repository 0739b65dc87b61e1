//! End-to-end on desktop sound servers, each started and stopped by its test with a
//! private `XDG_RUNTIME_DIR`: PulseAudio 16 and PipeWire 0.3 (Debian 12 packages) run
//! headless with a null sink, sender and receiver run with their default flags (no
//! `--period`), and the end-to-end latency is measured through the server itself:
//!
//! * PulseAudio: one stereo null sink `loop`; the sender captures its left channel (a
//!   remapped monitor), the receiver plays into its right channel (a remapped sink).
//!   `paplay` plays noise bursts into the left channel, `parec` records the monitor: the
//!   lag of right behind left is the latency from the sample entering the sink to its copy
//!   entering it again, sample-exact in the sink's clock.
//! * PipeWire: `jack_iodelay` (through `pw-jack`, at the receiver's 256-frame quantum) is
//!   linked to the sender's input and the receiver's output, as on JACK.
//!
//! Both measure once the receiver has settled: a new stream's first minute keeps a 10 ms
//! cushion above its adaptive target (common/src/playout/mod.rs), so the measurement starts
//! [`SETTLE_S`] seconds in, and the bound is issue 9's: ≤ 30 ms with default flags (a run
//! above it is measured again, up to three runs: [`clean_within_bound_in_one_of_three`]
//! says why).
//!
//! Also here: `--jack-name` / `--no-connect` on PipeWire's JACK API, JACK `--connect` to a
//! port that does not exist, and `--list-devices` without alsa-lib's messages and with JACK
//! devices in one direction.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use patchcord_tests::*;

/// Seconds a stream plays before the latency is measured: past the receiver's first-minute
/// start-up cushion.
const SETTLE_S: u64 = 62;
/// Issue 9's bound on the end-to-end latency with default flags through a desktop server.
const DEFAULT_FLAGS_BOUND_MS: f64 = 30.0;

/// Processes of one server setup (stopped on drop, last started first) and the
/// environment that reaches them.
struct Server {
    procs: Vec<Proc>,
    env: Vec<(String, String)>,
}

impl Server {
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }

    fn spawn(&mut self, dir: &Path, name: &str, program: &str, args: &[&str]) {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let child = self
            .cmd(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        self.procs.push(Proc {
            child: Some(child),
            name: name.into(),
            stderr_path,
        });
    }

    fn run(&self, program: &str, args: &[&str]) -> (bool, String) {
        match self.cmd(program).args(args).stderr(Stdio::piped()).output() {
            Ok(o) => (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
            ),
            Err(e) => (false, e.to_string()),
        }
    }

    /// Run a patchcord binary with this server's environment.
    fn patchcord(&self, dir: &Path, name: &str, bin_name: &str, args: &[&str]) -> Proc {
        let stderr_path = dir.join(format!("{name}.stderr"));
        let child = self
            .cmd(bin(bin_name).to_str().unwrap())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        Proc {
            child: Some(child),
            name: name.into(),
            stderr_path,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            p.stop(Duration::from_secs(5));
        }
    }
}

/// A private runtime directory (mode 0700, as the servers demand).
fn runtime_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    run
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > timeout {
            eprintln!("{what}: not within {timeout:?}");
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

fn installed(program: &str) -> bool {
    Path::new("/usr/bin").join(program).exists()
}

/// Noise bursts of 100 ms every 500 ms, left channel only, after 0.5 s of silence.
fn probe_bursts(seconds: usize) -> (Vec<f32>, Vec<usize>) {
    let mut left = vec![0.0f32; 48_000 * seconds];
    let mut starts = Vec::new();
    let mut x: u32 = 0x1234_5678;
    let mut s = 24_000;
    while s + 4_800 < left.len() - 24_000 {
        starts.push(s);
        for v in &mut left[s..s + 4_800] {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *v = (x as f32 / u32::MAX as f32 - 0.5) * 0.8;
        }
        s += 24_000;
    }
    (left.iter().flat_map(|&l| [l, 0.0]).collect(), starts)
}

/// Lag (ms) of the right channel behind the left for each burst found in a stereo
/// recording of the loop sink's monitor.
fn burst_lags_ms(recording: &Path) -> Vec<f64> {
    let (channels, samples) = read_wav(recording);
    assert_eq!(channels, 2, "{}", recording.display());
    let left = channel(&samples, 2, 0);
    let right = channel(&samples, 2, 1);
    let mut lags = Vec::new();
    let mut n = 0;
    while n < left.len() {
        if left[n].abs() > 0.05 && n + 4_800 + 9_600 < left.len() {
            let x = &left[n..n + 4_800];
            let y = &right[n..n + 4_800 + 9_600];
            let mut padded = x.to_vec();
            padded.resize(y.len(), 0.0);
            lags.push(best_lag(&padded, y, 9_600) as f64 / 48.0);
            n += 20_000;
        } else {
            n += 1;
        }
    }
    lags
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What the counters say went wrong on the audio path, if anything: the sender's ring
/// overran, an xrun, the receiver ran dry (a late packet: `underruns`). The receiver must
/// have played in any case. Capture gaps are printed, not counted: on PulseAudio's
/// monitor, with the probe's 5 ms clients beside it, the capture timing steps back and
/// forth by a few ms (BENCHMARKS.md §7).
fn glitches(send: &serde_json::Value, recv: &serde_json::Value) -> Option<String> {
    assert!(
        recv["played"].as_u64().unwrap_or(0) > 800,
        "receiver played too little: {recv}"
    );
    let counts = [
        ("sender ring overruns", &send["ring_overruns"]),
        ("sender xruns", &send["xruns"]),
        ("receiver underruns", &recv["underruns"]),
        ("receiver xruns", &recv["xruns"]),
    ];
    let bad: Vec<String> = counts
        .iter()
        .filter(|(_, v)| v.as_u64() != Some(0))
        .map(|(what, v)| format!("{what} {v}"))
        .collect();
    (!bad.is_empty()).then(|| bad.join(", "))
}

/// One run through a server with default flags: the end-to-end latency it measured, and
/// what went wrong on the audio path.
struct ServerRun {
    latency_ms: f64,
    glitches: Option<String>,
}

#[test]
fn pulseaudio_default_flags_play_at_low_latency() {
    let _serial = serial();
    assert!(
        installed("pulseaudio") && installed("paplay") && installed("pactl"),
        "PulseAudio not installed (apt-get install pulseaudio pulseaudio-utils); scripts/setup.sh installs it"
    );
    clean_within_bound_in_one_of_three("PulseAudio", pulseaudio_run);
}

/// A private PulseAudio in `dir` with one stereo null sink `loop`, its left channel as the
/// mono source `loop_left` and its right channel as the mono sink `loop_right`; `None`,
/// said as SKIPPED, where PulseAudio cannot run.
fn pulseaudio(dir: &Path) -> Option<Server> {
    let run = runtime_dir(dir);
    let mut pa = Server {
        procs: Vec::new(),
        env: vec![
            ("XDG_RUNTIME_DIR".into(), run.display().to_string()),
            ("HOME".into(), dir.display().to_string()),
        ],
    };
    pa.spawn(
        dir,
        "pulseaudio",
        "pulseaudio",
        &[
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "-L",
            "module-native-protocol-unix",
        ],
    );
    if !wait_until("pulseaudio", Duration::from_secs(10), || {
        pa.run("pactl", &["info"]).0
    }) {
        let log = std::fs::read_to_string(dir.join("pulseaudio.stderr")).unwrap_or_default();
        eprintln!("SKIPPED: PulseAudio cannot run here:\n{log}");
        return None;
    }
    for module in [
        "module-null-sink sink_name=loop rate=48000 channels=2",
        "module-remap-source source_name=loop_left master=loop.monitor channels=1 master_channel_map=front-left channel_map=mono remix=no",
        "module-remap-sink sink_name=loop_right master=loop channels=1 master_channel_map=front-right channel_map=mono remix=no",
    ] {
        let args: Vec<&str> = std::iter::once("load-module").chain(module.split(' ')).collect();
        let (ok, out) = pa.run("pactl", &args);
        assert!(ok, "pactl {module}: {out}");
    }
    Some(pa)
}

/// One run of sender and receiver with default flags through a headless PulseAudio: the
/// end-to-end latency measured through the sink, after checking the receiver's report of
/// it; `None` when PulseAudio cannot run here.
fn pulseaudio_run() -> Option<ServerRun> {
    let dir = scratch("desktop_pulse");
    let pa = pulseaudio(&dir)?;
    // The probe's streams start first and play throughout: a stream that starts on the
    // server makes it re-plan its timing, and a spike that makes would be held by the
    // adaptive target (for two minutes) if it came during the measurement
    let recording = dir.join("monitor.wav");
    let mut parec = pa
        .cmd("parec")
        .args([
            "-d",
            "loop.monitor",
            "--format=float32le",
            "--rate=48000",
            "--channels=2",
            "--latency-msec=5",
            "--file-format=wav",
        ])
        .arg(&recording)
        .spawn()
        .expect("parec");
    // silence until the stream has played SETTLE_S seconds, then the bursts
    let (burst_samples, bursts) = probe_bursts(6);
    let mut probe = vec![0.0f32; 2 * 48_000 * (SETTLE_S as usize + 4)];
    probe.extend_from_slice(&burst_samples);
    let probe_path = dir.join("probe.wav");
    write_wav(&probe_path, 2, &probe);
    let mut paplay = pa
        .cmd("paplay")
        .args(["-d", "loop", "--latency-msec=5"])
        .arg(&probe_path)
        .spawn()
        .expect("paplay");
    std::thread::sleep(Duration::from_millis(500));
    let port = free_port_pair();
    let to = format!("127.0.0.1:{port}");
    let (recv_json, send_json) = (dir.join("recv.json"), dir.join("send.json"));
    let mut recv = pa.patchcord(
        &dir,
        "recv",
        "patchcord-recv",
        &[
            "--listen",
            &to,
            "--channels",
            "1",
            "--device",
            "loop_right",
            "--duration",
            &(SETTLE_S + 16).to_string(),
            "--stats-json",
            recv_json.to_str().unwrap(),
        ],
    );
    // PulseAudio's null sink takes the receiver's latency request at its next block: start
    // the sender once the receiver plays steadily
    std::thread::sleep(Duration::from_secs(3));
    let mut send = pa.patchcord(
        &dir,
        "send",
        "patchcord-send",
        &[
            "--to",
            &to,
            "--channels",
            "1",
            "--device",
            "loop_left",
            "--duration",
            &(SETTLE_S + 12).to_string(),
            "--stats-json",
            send_json.to_str().unwrap(),
        ],
    );
    let played = paplay.wait().expect("paplay");
    assert!(played.success(), "paplay: {played}");
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &parec.id().to_string()])
        .status();
    let _ = parec.wait();
    let (ok, err) = send.wait(Duration::from_secs(30));
    assert!(ok, "sender: {err}");
    let (ok, err) = recv.wait(Duration::from_secs(30));
    assert!(ok, "receiver: {err}");

    let send_final = final_stats(&send_json);
    let recv_records = read_stats(&recv_json);
    let recv_final = recv_records.last().cloned().unwrap_or_default();
    let glitches = glitches(&send_final, &recv_final);
    eprintln!(
        "sender: {} capture gaps ({} ms), {} capture clock steps",
        send_final["capture_gaps"], send_final["capture_gap_ms"], send_final["capture_clock_steps"]
    );
    let period = recv_final["period_frames"].as_u64().unwrap_or(0);
    assert!(
        (128..=600).contains(&period),
        "the receiver's period is {period} frames, not ~256"
    );

    let lags = burst_lags_ms(&recording);
    assert!(
        lags.len() + 2 >= bursts.len(),
        "found {} of {} bursts: {lags:?}",
        lags.len(),
        bursts.len()
    );
    let measured = median(&lags);
    let reported: Vec<f64> = recv_records
        .iter()
        .filter_map(|r| r["latency_ms"].as_f64())
        .collect();
    let closest = reported
        .iter()
        .copied()
        .min_by(|a, b| (a - measured).abs().total_cmp(&(b - measured).abs()))
        .unwrap_or(f64::NAN);
    eprintln!(
        "PulseAudio, default flags: measured through the sink {measured:.2} ms (bursts {lags:?}); receiver reported {reported:?}; period {period} frames"
    );
    assert!(
        (closest - measured).abs() <= 3.0,
        "the receiver reports {reported:?}, the sink shows {measured:.2} ms"
    );
    eprintln!("receiver target per second: {:?}", targets(&recv_records));
    Some(ServerRun {
        latency_ms: measured,
        glitches,
    })
}

/// Audio PulseAudio drops without telling is counted by the sender as a capture gap, of
/// the length lost (what is missing against a clean run of the same duration); a run
/// without loss counts none. The sender captures `loop_left` with
/// default flags (cpal's PulseAudio host: a one-period server buffer); the server itself is
/// stopped (SIGSTOP) for 300 ms a few seconds in: the null sink then renders the time it
/// missed at once, the record stream's one-period buffer keeps the last period of it and
/// drops the rest, and the sender gets a period where 300 ms passed. (Stopping the *sender*
/// instead does not make a gap: the stream dies, the sender says "device error: PulseAudio
/// disconnected" and captures nothing more; likely pulseaudio 0.3.2, under cpal 0.18.2,
/// ending its reactor on the interrupted `epoll_wait` of a continued process,
/// BENCHMARKS.md §7.)
#[test]
fn pulseaudio_capture_gap_is_counted() {
    let _serial = serial();
    assert!(
        installed("pulseaudio") && installed("pactl"),
        "PulseAudio not installed (apt-get install pulseaudio pulseaudio-utils); scripts/setup.sh installs it"
    );
    let dir = scratch("desktop_pulse_gap");
    let Some(pa) = pulseaudio(&dir) else { return };
    let port = free_port_pair();
    let to = format!("127.0.0.1:{port}");
    let send = |name: &str, stop_ms: Option<u64>| -> (serde_json::Value, Option<f64>) {
        let json = dir.join(format!("{name}.json"));
        let args = [
            "--to",
            &to,
            "--channels",
            "1",
            "--device",
            "loop_left",
            "--duration",
            "8",
        ];
        let mut args: Vec<&str> = args.to_vec();
        args.extend(["--stats-json", json.to_str().unwrap()]);
        let mut send = pa.patchcord(&dir, name, "patchcord-send", &args);
        let mut stopped_ms = None;
        if let Some(ms) = stop_ms {
            std::thread::sleep(Duration::from_secs(3));
            let t0 = Instant::now();
            pa.procs[0].signal("STOP");
            std::thread::sleep(Duration::from_millis(ms));
            pa.procs[0].signal("CONT");
            stopped_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
        }
        let (ok, err) = send.wait(Duration::from_secs(30));
        assert!(ok, "{name}: {err}");
        assert!(!err.contains("device error"), "{name}: {err}");
        (final_stats(&json), stopped_ms)
    };
    let (clean, _) = send("send_clean", None);
    let (stopped, stopped_ms) = send("send_stopped", Some(300));
    let stopped_ms = stopped_ms.unwrap_or_default();
    let counters = |s: &serde_json::Value| {
        format!(
            "{} capture gaps ({} ms), {} clock steps, {} ring overruns, {} xruns, {} frames captured",
            s["capture_gaps"],
            s["capture_gap_ms"],
            s["capture_clock_steps"],
            s["ring_overruns"],
            s["xruns"],
            s["frames_captured"]
        )
    };
    // What was lost is what is missing against the clean run of the same duration (the
    // clean runs capture the same count of frames to the callback); PulseAudio loses
    // most of the stop, or part of it (measured, of 303-305 ms: 292, 292, 106, 101, 90 ms)
    let missing_ms = |s: &serde_json::Value| {
        let frames = |s: &serde_json::Value| s["frames_captured"].as_f64().unwrap_or(0.0);
        (frames(&clean) - frames(s)) / 48.0
    };
    eprintln!("PulseAudio, no stop: {}", counters(&clean));
    eprintln!(
        "PulseAudio, stopped {stopped_ms:.1} ms: {}, {:.1} ms missing against the clean run",
        counters(&stopped),
        missing_ms(&stopped)
    );
    assert_eq!(clean["capture_gaps"], 0, "no stop: {}", counters(&clean));
    assert_eq!(clean["capture_clock_steps"], 0, "no stop: {}", counters(&clean));
    let lost_ms = missing_ms(&stopped);
    let the_stop = format!(
        "stopped {stopped_ms:.1} ms, {lost_ms:.1} ms missing: {}",
        counters(&stopped)
    );
    let gaps = stopped["capture_gaps"].as_u64().unwrap_or(0);
    let gap_ms = stopped["capture_gap_ms"].as_f64().unwrap_or(0.0);
    assert!((50.0..=stopped_ms + 15.0).contains(&lost_ms), "{the_stop}");
    assert!(gaps >= 1, "{the_stop}");
    assert!((gap_ms - lost_ms).abs() <= 15.0, "{the_stop}");
    assert_eq!(stopped["ring_overruns"], 0, "{the_stop}");
    assert_eq!(stopped["xruns"], 0, "the loss was unreported: {the_stop}");
}

/// The receiver's adaptive target per second (ms), printed next to a latency: the
/// scheduling spikes it held show there.
fn targets(records: &[serde_json::Value]) -> Vec<f64> {
    records
        .iter()
        .filter_map(|r| r["target_delay_ms"].as_f64())
        .collect()
}

/// Issue 9's test: default flags play clean (no overrun, xrun or underrun) and within its
/// bound. A run that is not is reported and measured again, up to three runs. The budget
/// of the default flags (5 ms frames, 2.5 ms look-ahead, a ~5 ms capture fragment, the
/// adaptive buffer: the spread of the capture fragments, one period and the spikes it has
/// seen; ~5 ms of playback buffering) is 22-29 ms on a quiet host (BENCHMARKS.md §7). A
/// scheduling hiccup of a busy host is a late packet, or a spike the adaptive target then
/// holds for two minutes (by design: it is not heard a second time), and either spoils
/// one long run: on PulseAudio 2 of 7 runs measured above 30 ms, each followed by one
/// within it, so two runs would still miss together about once in twelve. A default that
/// misses the bound (the old 10 ms `audio` frames measured 41-48 ms) or glitches on a
/// quiet host misses it three times.
fn clean_within_bound_in_one_of_three(server: &str, run: fn() -> Option<ServerRun>) {
    let mut runs = Vec::new();
    for _ in 0..3 {
        let Some(r) = run() else { return };
        let verdict = format!(
            "{:.2} ms, {}",
            r.latency_ms,
            r.glitches.as_deref().unwrap_or("clean")
        );
        eprintln!("{server}, default flags: {verdict}");
        if r.glitches.is_none() && r.latency_ms <= DEFAULT_FLAGS_BOUND_MS {
            return;
        }
        runs.push(verdict);
    }
    panic!("{server} with default flags, three times not clean within {DEFAULT_FLAGS_BOUND_MS} ms: {runs:?}");
}

/// A private PipeWire (with its session bus and WirePlumber) in `dir`; `None`, said as
/// SKIPPED, where PipeWire cannot run.
fn pipewire(dir: &Path) -> Option<Server> {
    let run = runtime_dir(dir);
    let bus = format!("unix:path={}/bus", run.display());
    let mut pw = Server {
        procs: Vec::new(),
        env: vec![
            ("XDG_RUNTIME_DIR".into(), run.display().to_string()),
            ("HOME".into(), dir.display().to_string()),
            ("DBUS_SESSION_BUS_ADDRESS".into(), bus.clone()),
        ],
    };
    // WirePlumber needs a session bus: a private one
    pw.spawn(
        dir,
        "dbus",
        "dbus-daemon",
        &["--session", "--nofork", &format!("--address={bus}")],
    );
    assert!(wait_until("dbus", Duration::from_secs(5), || run
        .join("bus")
        .exists()));
    pw.spawn(dir, "pipewire", "pipewire", &[]);
    if !wait_until("pipewire", Duration::from_secs(10), || {
        run.join("pipewire-0").exists()
    }) {
        let log = std::fs::read_to_string(dir.join("pipewire.stderr")).unwrap_or_default();
        eprintln!("SKIPPED: PipeWire cannot run here:\n{log}");
        return None;
    }
    pw.spawn(dir, "wireplumber", "wireplumber", &[]);
    Some(pw)
}

#[test]
fn pipewire_default_flags_play_at_low_latency() {
    let _serial = serial();
    clean_within_bound_in_one_of_three("PipeWire", pipewire_run);
}

/// One run of sender and receiver with default flags through a headless PipeWire: the
/// round trip `jack_iodelay` measured, after checking the receiver's report of it; `None`
/// when PipeWire cannot run here.
fn pipewire_run() -> Option<ServerRun> {
    for p in [
        "pipewire",
        "wireplumber",
        "pipewire-pulse",
        "pw-jack",
        "pw-link",
        "dbus-daemon",
        "jack_iodelay",
    ] {
        assert!(
            installed(p),
            "{p} not installed; scripts/setup.sh installs the PipeWire packages"
        );
    }
    let dir = scratch("desktop_pipewire");
    let mut pw = pipewire(&dir)?;
    pw.spawn(&dir, "pipewire-pulse", "pipewire-pulse", &[]);
    // its socket first: a `pactl` that finds no server autospawns a PulseAudio daemon,
    // which can take the socket before pipewire-pulse does ("File exists", seen in CI)
    let socket = runtime_dir(&dir).join("pulse").join("native");
    assert!(wait_until("pipewire-pulse", Duration::from_secs(10), || socket.exists()));
    assert!(wait_until("pipewire-pulse", Duration::from_secs(10), || pw
        .run("pactl", &["info"])
        .0));
    let (ok, out) = pw.run(
        "pactl",
        &[
            "load-module",
            "module-null-sink",
            "sink_name=loop",
            "rate=48000",
            "channels=2",
        ],
    );
    assert!(ok, "null sink: {out}");

    let port = free_port_pair();
    let to = format!("127.0.0.1:{port}");
    let (recv_json, send_json) = (dir.join("recv.json"), dir.join("send.json"));
    let mut recv = pw.patchcord(
        &dir,
        "recv",
        "patchcord-recv",
        &[
            "--listen",
            &to,
            "--channels",
            "1",
            "--duration",
            &(SETTLE_S + 16).to_string(),
            "--stats-json",
            recv_json.to_str().unwrap(),
        ],
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut send = pw.patchcord(
        &dir,
        "send",
        "patchcord-send",
        &[
            "--to",
            &to,
            "--channels",
            "1",
            "--duration",
            &(SETTLE_S + 14).to_string(),
            "--stats-json",
            send_json.to_str().unwrap(),
        ],
    );
    let links = |pw: &Server| pw.run("pw-link", &["-l"]).1;
    assert!(
        wait_until("patchcord nodes", Duration::from_secs(10), || {
            let l = links(&pw);
            l.contains("patchcord-send:input_MONO") && l.contains("patchcord-recv:output_MONO")
        }),
        "{}",
        links(&pw)
    );
    std::thread::sleep(Duration::from_millis(500 + 1000 * SETTLE_S));
    let log = dir.join("iodelay.log");
    let mut iodelay = pw
        .cmd("timeout")
        .args(["8", "pw-jack", "jack_iodelay"])
        .env("PIPEWIRE_QUANTUM", "256/48000")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("pw-jack jack_iodelay");
    let inputs = |pw: &Server| pw.run("pw-link", &["-i"]).1;
    assert!(wait_until("jack_iodelay", Duration::from_secs(10), || inputs(
        &pw
    )
    .contains("jack_delay:in")));
    for (a, b) in [
        ("jack_delay:out", "patchcord-send:input_MONO"),
        ("patchcord-recv:output_MONO", "jack_delay:in"),
    ] {
        let (ok, out) = pw.run("pw-link", &[a, b]);
        assert!(ok, "pw-link {a} {b}: {out}");
    }
    // then take the nodes off the null sink (auto-linked by WirePlumber): only jack_iodelay
    // feeds the sender and hears the receiver. Linked first, unlinked second: a node left
    // without links stops, and the gap would lift the adaptive delay
    let mut current = String::new();
    for line in links(&pw).lines() {
        if !line.starts_with(' ') {
            current = line.trim().to_string();
        } else if let Some(to_port) = line.trim().strip_prefix("|-> ") {
            let ours = current.contains("patchcord") || to_port.contains("patchcord");
            if ours && !current.contains("jack_delay") && !to_port.contains("jack_delay") {
                pw.run("pw-link", &["-d", &current, to_port]);
            }
        }
    }
    let _ = iodelay.wait();
    let (ok, err) = send.wait(Duration::from_secs(30));
    assert!(ok, "sender: {err}");
    let (ok, err) = recv.wait(Duration::from_secs(30));
    assert!(ok, "receiver: {err}");

    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let readings: Vec<f64> = text
        .lines()
        .filter(|l| l.contains("total roundtrip latency"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map(|f| f / 48.0)
        .collect();
    assert!(readings.len() >= 5, "too few jack_iodelay readings:\n{text}");
    let measured = median(&readings);
    let send_final = final_stats(&send_json);
    let recv_records = read_stats(&recv_json);
    let recv_final = recv_records.last().cloned().unwrap_or_default();
    let glitches = glitches(&send_final, &recv_final);
    eprintln!(
        "sender: {} capture gaps ({} ms), {} capture clock steps",
        send_final["capture_gaps"], send_final["capture_gap_ms"], send_final["capture_clock_steps"]
    );
    let period = recv_final["period_frames"].as_u64().unwrap_or(0);
    let reported: Vec<f64> = recv_records
        .iter()
        .filter_map(|r| r["latency_ms"].as_f64())
        .collect();
    eprintln!(
        "PipeWire, default flags: jack_iodelay round trip {measured:.2} ms ({} readings); receiver reported {reported:?}; quantum {period} frames",
        readings.len()
    );
    assert_eq!(period, 256, "the receiver asked for 256-frame periods");
    // cpal 0.18.2's PipeWire timestamps leave out the quantum a pw_stream keeps queued: the
    // receiver reports one quantum (5.33 ms) less than the round trip (BENCHMARKS.md §7)
    let quantum_ms = 256.0 / 48.0;
    let best = reported
        .iter()
        .map(|r| (r + quantum_ms - measured).abs())
        .fold(f64::INFINITY, f64::min);
    assert!(
        best <= 1.0,
        "reported {reported:?} + one quantum does not match the round trip {measured:.2} ms"
    );
    eprintln!("receiver target per second: {:?}", targets(&recv_records));
    Some(ServerRun {
        latency_ms: measured,
        glitches,
    })
}

/// A JACK dummy server on a private name.
fn start_jack(dir: &Path) -> Server {
    assert!(installed("jackd"), "jackd not installed (apt-get install jackd2)");
    let name = format!("patchcord-desktop-{}", std::process::id());
    let mut jack = Server {
        procs: Vec::new(),
        env: vec![
            ("JACK_DEFAULT_SERVER".into(), name.clone()),
            ("JACK_NO_START_SERVER".into(), "1".into()),
        ],
    };
    jack.spawn(
        dir,
        "jackd",
        "jackd",
        &["-n", &name, "-r", "-d", "dummy", "-r", "48000", "-p", "64"],
    );
    assert!(
        wait_until("jackd", Duration::from_secs(10), || jack
            .run("jack_lsp", &[])
            .1
            .contains("system:playback_1")),
        "jackd did not come up"
    );
    jack
}

/// `--connect` to a port that does not exist, and `--list-devices` on JACK (the
/// connections themselves are checked in e2e_jack.rs).
#[test]
fn jack_bad_port_and_list_devices() {
    let _serial = serial();
    let dir = scratch("desktop_jack_connect");
    let jack = start_jack(&dir);
    // a port that does not exist: a clear error and a failure exit
    let out = jack
        .cmd(bin("patchcord-recv").to_str().unwrap())
        .args([
            "--host",
            "jack",
            "--listen",
            &format!("127.0.0.1:{}", free_port_pair()),
            "--connect",
            "nowhere:in",
            "--duration",
            "2",
            "-q",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("no JACK port 'nowhere:in'"),
        "{err}"
    );

    // --list-devices: JACK's devices each in their own direction, no alsa-lib lines
    let out = jack
        .cmd(bin("patchcord-send").to_str().unwrap())
        .env_remove("XDG_RUNTIME_DIR")
        .arg("--list-devices")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("ALSA lib"), "alsa-lib's messages leak:\n{text}");
    let jack_part = text
        .split("Host JACK")
        .nth(1)
        .and_then(|t| t.split("\nHost ").next())
        .unwrap_or("");
    let (inputs, outputs) = jack_part.split_once("output devices:").unwrap_or(("", ""));
    assert!(
        inputs.contains("'JACK Input (patchcord-list)'") && !inputs.contains("'JACK Output"),
        "{jack_part}"
    );
    assert!(
        outputs.contains("'JACK Output (patchcord-list)'") && !outputs.contains("'JACK Input"),
        "{jack_part}"
    );
}

/// A 6-channel (5.1) WAV sent as stereo and a stereo WAV sent as mono: what comes out is
/// the mix, not the first channels.
#[test]
fn wav_channels_are_mixed_not_dropped() {
    let _serial = serial();
    let dir = scratch("desktop_wav_channels");
    // 5.1: a 440 Hz tone on the centre only, silence elsewhere: a sender that took
    // channels 1-2 would send silence
    let tone: Vec<f32> = (0..48_000 * 2)
        .map(|n| 0.5 * (n as f32 * 440.0 * std::f32::consts::TAU / 48_000.0).sin())
        .collect();
    let surround: Vec<f32> = tone.iter().flat_map(|&c| [0.0, 0.0, c, 0.0, 0.0, 0.0]).collect();
    // stereo: 440 Hz on the right only: a mono sender that took the left would send silence
    let stereo: Vec<f32> = tone.iter().flat_map(|&r| [0.0, r]).collect();
    for (name, channels, samples, stream_channels) in
        [("surround", 6, surround, "2"), ("stereo", 2, stereo, "1")]
    {
        let input = dir.join(format!("{name}.wav"));
        write_wav(&input, channels, &samples);
        let output = dir.join(format!("{name}_out.wav"));
        let port = free_port_pair();
        let to = format!("127.0.0.1:{port}");
        let mut recv = Proc::spawn(
            &dir,
            &format!("{name}_recv"),
            &bin("patchcord-recv"),
            &[
                "--listen",
                &to,
                "--channels",
                stream_channels,
                "--device",
                &format!("wav:{}", output.display()),
                "--latency",
                "40",
                "--duration",
                "4",
                "-q",
            ]
            .map(String::from),
        );
        std::thread::sleep(Duration::from_millis(300));
        let mut send = Proc::spawn(
            &dir,
            &format!("{name}_send"),
            &bin("patchcord-send"),
            &[
                "--to",
                &to,
                "--channels",
                stream_channels,
                "--device",
                &format!("wav:{}", input.display()),
                "--duration",
                "3",
                "-q",
            ]
            .map(String::from),
        );
        let (ok, err) = send.wait(Duration::from_secs(20));
        assert!(ok, "sender: {err}");
        assert!(
            err.contains("mixed down to"),
            "the sender says how it mixes: {err}"
        );
        let (ok, err) = recv.wait(Duration::from_secs(20));
        assert!(ok, "receiver: {err}");
        let (out_channels, out) = read_wav(&output);
        for ch in 0..usize::from(out_channels) {
            let heard = seconds_of_tone(&channel(&out, out_channels, ch), 440.0);
            assert!(
                heard > 1.5,
                "{name}: channel {ch} carries {heard:.2} s of the 440 Hz tone"
            );
        }
    }
}

/// `--jack-name` and `--no-connect` through PipeWire's JACK API (`pw-jack`): the same
/// check as on jackd (`patchcord_tests::jack_flags`).
#[test]
fn jack_name_and_no_connect_on_pipewire() {
    let _serial = serial();
    assert!(
        installed("pw-jack"),
        "pw-jack not installed; scripts/setup.sh installs it"
    );
    let dir = scratch("desktop_pipewire_jack_name");
    let Some(pw) = pipewire(&dir) else {
        return;
    };
    let cmd = |program: &str| {
        let mut c = pw.cmd("pw-jack");
        c.arg(program).env("PIPEWIRE_QUANTUM", "256/48000");
        c
    };
    jack_flags::check_no_connect(&cmd, &dir);
}

/// The self-test through PipeWire's JACK API (`pw-jack`, 64-frame quantum): the binaries
/// `--connect` their ports to the self-test's on PipeWire and the signal comes back. On
/// this shared machine PipeWire's JACK emulation steps the audio by a quantum now and then
/// (no xrun reported), and the receiver's readings step with it, so the self-test's
/// verdict here is often FAIL (BENCHMARKS.md §10): what is asserted is that measured and
/// reported differ by whole quanta only, and that nothing else failed.
#[test]
fn self_test_connects_through_pipewires_jack_api() {
    let _serial = serial();
    assert!(
        installed("pw-jack"),
        "pw-jack not installed; scripts/setup.sh installs it"
    );
    let dir = scratch("desktop_pipewire_selftest");
    let Some(pw) = pipewire(&dir) else {
        return;
    };
    let env: Vec<(&str, &str)> = pw
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain([("PIPEWIRE_QUANTUM", "64/48000")])
        .collect();
    let out = Command::new("pw-jack")
        .arg(bin("patchcord-selftest"))
        .args(["--seconds", "3", "--recv-arg=--latency", "--recv-arg=20"])
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--keep")
        .arg(dir.join("selftest"))
        .args(["--stats-json", "-"])
        .envs(env.iter().copied())
        .output()
        .expect("pw-jack patchcord-selftest");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    let result: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_default();
    let n = |k: &str| result[k].as_f64().unwrap_or_else(|| panic!("no {k} in {result}"));
    // the ports connected and the signal came back
    assert!(n("matched_windows") >= 0.9 * n("windows"), "{result}");
    // the 20 ms buffer plus frame, look-ahead and quanta; a quantum the emulation drops
    // from the sender's capture (a glitch: no xrun, no loss) takes its length off the lag
    // (a CI run: 24.27 ms, then 16.27 ms after 8 ms were dropped), so the floor holds on a
    // run without glitches
    assert!(n("round_trip_ms") < 40.0, "{result}");
    if n("glitches") == 0.0 {
        assert!(n("round_trip_ms") > 20.0, "{result}");
    }
    // measured and reported agree to a whole number of 64-frame quanta, within a tenth of
    // one (0.13 ms; the self-test's own tolerance is 0.5 ms): with patchcord's JACK host
    // on this emulation the remainder measured -0.07 to -0.08 ms
    let quanta = n("difference_ms") / (64.0 / 48.0);
    assert!((quanta - quanta.round()).abs() < 0.1, "{result}");
    // and anything the self-test found wrong is one of those two things
    let failures = result["failures"].as_array().cloned().unwrap_or_default();
    for f in failures.iter().filter_map(|f| f.as_str()) {
        assert!(
            f.contains("latency report is off") || f.contains("glitches"),
            "{f}"
        );
    }
    assert_eq!(out.status.success(), failures.is_empty(), "{stdout}");
}
