//! patchcord-impair: a UDP proxy that puts a seeded impairment profile between a sender
//! and a receiver on this machine.
//!
//! Datagrams arriving on `--listen` go through [`patchcord_netsim::Impairment`] and the
//! delivered copies are sent on to `--to` at their delivery times (a timerfd-driven loop,
//! precise to tens of microseconds). Datagrams arriving on listen port + 1 (RTCP) are sent
//! to `--to` port + 1 at once, unimpaired; so is RTCP multiplexed on the RTP port. Datagrams
//! coming back from a destination are sent, unimpaired, to whoever last sent to that port.
//!
//! Everything done is counted; the counts go to stderr once a second, and with
//! `--stats-json` as JSON lines ending with a `"final": true` record. The top-level counts
//! (`received`, `dropped`, `duplicated`, `delivered`, `reordered`, `pending`, …) are the
//! model's, over every datagram impaired (RTP or not; `rtp` and `non_rtp` split them). The
//! lists `dropped_seqs`, `duplicated_seqs`, `reordered_seqs` hold the RTP sequence numbers
//! (bytes 2..4 of a version-2 datagram) in arrival order, over all SSRCs, and `streams`
//! has the same per SSRC. "Reordered" in the lists means: sent on after a packet of the
//! same SSRC that reached the proxy later — what that stream's receiver sees out of order.
//! With `--packet-log`, one JSON line per impaired datagram gives its fate and delivery
//! times as decided on arrival. At stop (SIGINT, SIGTERM, `--duration`), reception stops and
//! the copies still delayed are sent at their times (for at most `--drain` seconds); any
//! left are counted in `unsent_at_exit`.
//!
//! For a given `--seed`, the N-th datagram always gets the same loss, duplicate, reorder,
//! jitter and spike draws; only the absolute times follow the real clock.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

/// `eprintln!` that never panics: standard error may be closed (`… 2>&1 | head -1`).
macro_rules! say {
    ($($arg:tt)*) => {{ use std::io::Write as _; let _ = writeln!(std::io::stderr(), $($arg)*); }};
}

mod ledger;
mod timer;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use patchcord_netsim::{named_profiles, Decision, Fate, ImpairStats, Impairment, Profile, PROFILE_SYNTAX};
use serde_json::{json, Value};
use tokio::net::UdpSocket;

use ledger::{classify, Kind, Ledger};

/// Put a seeded network impairment (loss, bursty loss, delay, jitter, spikes, reordering,
/// duplication) between a UDP sender and receiver.
#[derive(Parser, Debug)]
#[command(
    name = "patchcord-impair",
    version,
    after_help = format!("PROFILE SYNTAX\n\n{PROFILE_SYNTAX}\n\nRTP datagrams (version 2) are accounted by sequence number; RTCP (port + 1, or packet types 192-223 on the RTP port) passes unimpaired."),
    // a negative number is a value (reported against its range), not an unknown flag
    allow_negative_numbers = true
)]
struct Args {
    /// Address to receive RTP on (HOST:PORT); port + 1 receives RTCP. Port 0 picks a free pair.
    #[arg(long, required_unless_present = "list_profiles")]
    listen: Option<String>,
    /// Where to send RTP (HOST:PORT); RTCP goes to port + 1.
    #[arg(long, required_unless_present = "list_profiles")]
    to: Option<String>,
    /// Impairment profile: a named profile and/or KEY=VALUE items (see below).
    #[arg(long, default_value = "clean")]
    profile: String,
    /// Random seed (default: from the clock; printed at start so a run can be repeated).
    #[arg(long)]
    seed: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Write the stats as JSON lines (once a second, then a final record) to this file ("-": stdout).
    #[arg(long, value_name = "PATH")]
    stats_json: Option<String>,
    /// Write one JSON line per impaired datagram (its fate and delivery times) to this file.
    #[arg(long, value_name = "PATH")]
    packet_log: Option<String>,
    /// Do not bind or forward the RTCP port (listen port + 1).
    #[arg(long)]
    no_rtcp: bool,
    /// On stop, keep sending the pending delivered copies at their times for at most this many seconds.
    #[arg(long, default_value_t = 2.0, value_name = "S")]
    drain: f64,
    /// No per-second status line on stderr.
    #[arg(long)]
    quiet: bool,
    /// Run with real-time scheduling (SCHED_FIFO, best effort) so deliveries stay on time on
    /// a loaded machine.
    #[arg(long)]
    realtime: bool,
    /// List the named profiles and exit.
    #[arg(long)]
    list_profiles: bool,
}

/// An error with the exit code it deserves: 2 for bad arguments, 1 for everything else.
struct Failure {
    code: u8,
    message: String,
}

fn usage(message: String) -> Failure {
    Failure { code: 2, message }
}

fn failure(message: String) -> Failure {
    Failure { code: 1, message }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_profiles {
        for (name, spec, about) in named_profiles() {
            let spec = if spec.is_empty() { "(nothing)" } else { spec };
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{name:<9} {spec}\n          {about}").is_err() {
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            say!("patchcord-impair: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            say!("patchcord-impair: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn resolve(flag: &str, text: &str) -> Result<SocketAddr, Failure> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err(usage(format!(
            "bad --{flag} address \"{text}\": expected HOST:PORT"
        )));
    }
    let mut addrs = tokio::net::lookup_host(text)
        .await
        .map_err(|e| usage(format!("bad --{flag} address \"{text}\": {e}")))?;
    addrs
        .next()
        .ok_or_else(|| usage(format!("bad --{flag} address \"{text}\": it resolves to nothing")))
}

fn with_port_plus_one(flag: &str, addr: SocketAddr) -> Result<SocketAddr, Failure> {
    let port = addr.port().checked_add(1).ok_or_else(|| {
        usage(format!(
            "--{flag} port 65535 has no port + 1 for RTCP (use --no-rtcp)"
        ))
    })?;
    Ok(SocketAddr::new(addr.ip(), port))
}

/// A UDP socket with large buffers (best effort), so bursts are not lost in the kernel.
fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into())?;
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket.into())
}

fn bind_error(what: &str, addr: SocketAddr, e: std::io::Error) -> Failure {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        failure(format!(
            "cannot listen for {what} on {addr}: address already in use"
        ))
    } else {
        failure(format!("cannot listen for {what} on {addr}: {e}"))
    }
}

/// Bind the RTP socket and, unless disabled, the RTCP socket on port + 1. With port 0, try
/// a few free ports until port + 1 is free too.
fn bind_pair(listen: SocketAddr, rtcp: bool) -> Result<(UdpSocket, Option<UdpSocket>), Failure> {
    let attempts = if listen.port() == 0 && rtcp { 32 } else { 1 };
    let mut last_error = None;
    for _ in 0..attempts {
        let rtp = bind_udp(listen).map_err(|e| bind_error("RTP", listen, e))?;
        if !rtcp {
            return Ok((rtp, None));
        }
        let local = rtp
            .local_addr()
            .map_err(|e| failure(format!("local address: {e}")))?;
        let rtcp_addr = with_port_plus_one("listen", local)?;
        match bind_udp(rtcp_addr) {
            Ok(s) => return Ok((rtp, Some(s))),
            Err(e) => {
                last_error = Some(bind_error(
                    "RTCP (listen port + 1; --no-rtcp skips it)",
                    rtcp_addr,
                    e,
                ))
            }
        }
    }
    Err(last_error.unwrap_or_else(|| failure("cannot bind".into())))
}

/// A JSON-lines output: a file, or stdout for "-".
enum Sink {
    File(BufWriter<File>),
    Stdout,
}

impl Sink {
    fn create(flag: &str, path: &str) -> Result<Sink, Failure> {
        if path == "-" {
            return Ok(Sink::Stdout);
        }
        File::create(path)
            .map(|f| Sink::File(BufWriter::new(f)))
            .map_err(|e| failure(format!("cannot create --{flag} file {path}: {e}")))
    }

    fn line(&mut self, value: &Value, flush: bool) -> std::io::Result<()> {
        match self {
            Sink::File(w) => {
                serde_json::to_writer(&mut *w, value)?;
                w.write_all(b"\n")?;
                if flush {
                    w.flush()?;
                }
                Ok(())
            }
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                serde_json::to_writer(&mut out, value)?;
                out.write_all(b"\n")?;
                out.flush()
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(w) => w.flush(),
            Sink::Stdout => Ok(()),
        }
    }
}

/// A delivered datagram waiting for its copies to be sent.
struct Held {
    data: Vec<u8>,
    kind: Kind,
    /// Arrival index within its RTP stream.
    index: u64,
    copies_left: u8,
}

/// One forwarding direction pair: traffic from clients goes to `dest`; traffic from `dest`
/// goes back to the last client.
struct Port {
    socket: UdpSocket,
    dest: SocketAddr,
    client: Option<SocketAddr>,
}

#[derive(Default)]
struct Counters {
    rtcp_forwarded: u64,
    returned: u64,
    send_errors: u64,
    recv_errors: u64,
}

struct Proxy {
    rtp: Port,
    rtcp: Option<Port>,
    impairment: Impairment,
    held: HashMap<u64, Held>,
    next_id: u64,
    ledger: Ledger,
    counters: Counters,
    start_ns: i64,
    packet_log: Option<Sink>,
}

impl Proxy {
    async fn on_rtp(&mut self, data: &[u8], from: SocketAddr, now: i64) {
        if from == self.rtp.dest {
            if let Some(client) = self.rtp.client {
                self.counters.returned += 1;
                if self.rtp.socket.send_to(data, client).await.is_err() {
                    self.counters.send_errors += 1;
                }
            }
            return;
        }
        self.rtp.client = Some(from);
        let kind = classify(data);
        if kind == Kind::Rtcp {
            self.counters.rtcp_forwarded += 1;
            if self.rtp.socket.send_to(data, self.rtp.dest).await.is_err() {
                self.counters.send_errors += 1;
            }
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let decision = self.impairment.submit_detailed(id, now);
        let index = self.ledger.submitted(kind, &decision);
        if let Fate::Delivered { copies } = decision.fate {
            self.held.insert(
                id,
                Held {
                    data: data.to_vec(),
                    kind,
                    index,
                    copies_left: copies,
                },
            );
        }
        self.log_packet(id, kind, now, &decision);
    }

    fn log_packet(&mut self, id: u64, kind: Kind, now: i64, d: &Decision) {
        let Some(log) = &mut self.packet_log else { return };
        let (ssrc, seq) = match kind {
            Kind::Rtp { ssrc, seq } => (Some(ssrc), Some(seq)),
            _ => (None, None),
        };
        let rel = |t: i64| t - self.start_ns;
        let deliver_ns: Vec<i64> = [d.deliver_at_ns, d.duplicate_at_ns]
            .into_iter()
            .flatten()
            .map(rel)
            .collect();
        let copies = match d.fate {
            Fate::Dropped => 0,
            Fate::Delivered { copies } => copies,
        };
        let line = json!({
            "n": id,
            "rx_ns": rel(now),
            "ssrc": ssrc,
            "seq": seq,
            "fate": if d.fate == Fate::Dropped { "dropped" } else { "delivered" },
            "copies": copies,
            "deliver_ns": deliver_ns,
            "spiked": d.spiked,
            "reorder_delayed": d.reorder_delayed,
        });
        if log.line(&line, false).is_err() {
            say!("patchcord-impair: cannot write the packet log; no longer writing it");
            self.packet_log = None;
        }
    }

    async fn on_rtcp(&mut self, data: &[u8], from: SocketAddr) {
        let Some(port) = &mut self.rtcp else { return };
        let target = if from == port.dest {
            let Some(client) = port.client else { return };
            self.counters.returned += 1;
            client
        } else {
            port.client = Some(from);
            self.counters.rtcp_forwarded += 1;
            port.dest
        };
        if port.socket.send_to(data, target).await.is_err() {
            self.counters.send_errors += 1;
        }
    }

    /// Send every copy due at `now`.
    async fn deliver_due(&mut self, now: i64) {
        while let Some(d) = self.impairment.poll_delivery(now) {
            let Some(held) = self.held.get_mut(&d.id) else {
                continue;
            };
            if self.rtp.socket.send_to(&held.data, self.rtp.dest).await.is_err() {
                self.counters.send_errors += 1;
            }
            let (kind, index) = (held.kind, held.index);
            held.copies_left = held.copies_left.saturating_sub(1);
            if held.copies_left == 0 {
                self.held.remove(&d.id);
            }
            self.ledger.delivered(kind, index, d.copy);
        }
    }

    fn snapshot(&self, now: i64, final_record: bool) -> Value {
        let s: ImpairStats = self.impairment.stats();
        let mut v = json!({
            "t": (now - self.start_ns) as f64 / 1e9,
            "final": final_record,
            "received": s.submitted,
            "dropped": s.dropped,
            "duplicated": s.duplicated,
            "delivered": s.delivered,
            "reordered": s.reordered,
            "pending": s.pending,
            "spiked": s.spiked,
            "reorder_delayed": s.reorder_delayed,
            "max_added_delay_ms": s.max_added_delay_ns as f64 / 1e6,
            "mean_added_delay_ms": s.mean_added_delay_ns / 1e6,
            "rtp": self.ledger.rtp,
            "non_rtp": self.ledger.non_rtp,
            "rtcp_forwarded": self.counters.rtcp_forwarded,
            "returned": self.counters.returned,
            "send_errors": self.counters.send_errors,
            "recv_errors": self.counters.recv_errors,
        });
        if final_record {
            if let Value::Object(map) = &mut v {
                map.insert("profile".into(), json!(self.impairment.profile().to_string()));
                map.insert("seed".into(), json!(self.impairment.seed()));
                map.insert("dropped_seqs".into(), json!(self.ledger.dropped_seqs));
                map.insert("duplicated_seqs".into(), json!(self.ledger.duplicated_seqs));
                map.insert("reordered_seqs".into(), json!(self.ledger.reordered_seqs));
                map.insert("lists_truncated".into(), json!(self.ledger.lists_truncated));
                map.insert(
                    "streams".into(),
                    json!(self.ledger.streams.values().collect::<Vec<_>>()),
                );
            }
        }
        v
    }
}

fn status_line(v: &Value) -> String {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let received = n("received");
    let loss = if received == 0 {
        0.0
    } else {
        100.0 * n("dropped") as f64 / received as f64
    };
    format!(
        "patchcord-impair: rx {received} drop {} ({loss:.1}%) dup {} tx {} reord {} pending {} | rtcp {} back {}",
        n("dropped"),
        n("duplicated"),
        n("delivered"),
        n("reordered"),
        n("pending"),
        n("rtcp_forwarded"),
        n("returned"),
    )
}

async fn wait_for_stop(duration: Option<f64>) -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut sigterm = signal(SignalKind::terminate()).ok();
    let mut sigint = signal(SignalKind::interrupt()).ok();
    let timeout = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs_f64(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = timeout => "duration reached",
        _ = async { match &mut sigterm { Some(s) => { s.recv().await; } None => std::future::pending().await } } => "SIGTERM",
        _ = async { match &mut sigint { Some(s) => { s.recv().await; } None => std::future::pending().await } } => "SIGINT",
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    let (Some(listen_text), Some(to_text)) = (&args.listen, &args.to) else {
        return Err(usage("--listen and --to are required".into()));
    };
    let profile = Profile::parse(&args.profile).map_err(|e| usage(format!("bad --profile: {e}")))?;
    if let Some(d) = args.duration {
        if !(d.is_finite() && d > 0.0 && d < 1e9) {
            return Err(usage(format!(
                "bad --duration {d}: must be a positive number of seconds"
            )));
        }
    }
    if !(args.drain.is_finite() && (0.0..=3600.0).contains(&args.drain)) {
        return Err(usage(format!(
            "bad --drain {}: must be 0 to 3600 seconds",
            args.drain
        )));
    }
    let listen = resolve("listen", listen_text).await?;
    let to = resolve("to", to_text).await?;
    let rtcp_to = if args.no_rtcp {
        None
    } else {
        Some(with_port_plus_one("to", to)?)
    };
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });

    let mut stats_out = args
        .stats_json
        .as_deref()
        .map(|p| Sink::create("stats-json", p))
        .transpose()?;
    let packet_log = args
        .packet_log
        .as_deref()
        .map(|p| Sink::create("packet-log", p))
        .transpose()?;
    let (rtp_socket, rtcp_socket) = bind_pair(listen, !args.no_rtcp)?;
    let local = rtp_socket
        .local_addr()
        .map_err(|e| failure(format!("local address: {e}")))?;
    let rtcp_local = rtcp_socket.as_ref().and_then(|s| s.local_addr().ok());

    timer::reduce_timer_slack();
    if args.realtime {
        if let Err(e) = timer::promote_to_realtime() {
            say!("patchcord-impair: note: no real-time scheduling: {e}");
        }
    }
    let mut timer = timer::new_timer().map_err(|e| failure(format!("cannot create timer: {e}")))?;
    let start_ns = timer::now_ns();
    let profile_text = profile.to_string();
    let mut proxy = Proxy {
        rtp: Port {
            socket: rtp_socket,
            dest: to,
            client: None,
        },
        rtcp: match (rtcp_socket, rtcp_to) {
            (Some(socket), Some(dest)) => Some(Port {
                socket,
                dest,
                client: None,
            }),
            _ => None,
        },
        impairment: Impairment::new(profile, seed),
        held: HashMap::new(),
        next_id: 0,
        ledger: Ledger::default(),
        counters: Counters::default(),
        start_ns,
        packet_log,
    };
    // Tests and scripts wait for this line.
    say!(
        "patchcord-impair: listening on {local} (RTCP {}) -> {to} (RTCP {}) | profile {profile_text} | seed {seed}",
        rtcp_local.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
        rtcp_to.map(|a| a.to_string()).unwrap_or_else(|| "off".into()),
    );

    let stop = wait_for_stop(args.duration);
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut buf = vec![0u8; 65_536];
    let mut rtcp_buf = vec![0u8; 65_536];
    let mut drain_until: Option<i64> = None;
    let drain_ns = (args.drain * 1e9) as i64;
    let mut stop_reason = "";

    loop {
        let now = timer::now_ns();
        proxy.deliver_due(now).await;
        if let Some(until) = drain_until {
            if proxy.impairment.pending() == 0 || now >= until {
                break;
            }
        }
        let next = match (proxy.impairment.next_delivery(), drain_until) {
            (Some(t), Some(until)) => Some(t.min(until)),
            (t, None) => t,
            (None, until) => until,
        };
        timer.set(next).map_err(|e| failure(format!("timer: {e}")))?;
        let stopping = drain_until.is_some();

        tokio::select! {
            biased;
            r = timer.fired(), if timer.armed() => {
                r.map_err(|e| failure(format!("timer: {e}")))?;
                timer.expired();
            }
            reason = &mut stop, if !stopping => {
                stop_reason = reason;
                drain_until = Some(timer::now_ns().saturating_add(drain_ns));
            }
            res = proxy.rtp.socket.recv_from(&mut buf), if !stopping => {
                let now = timer::now_ns();
                match res {
                    Ok((len, from)) => proxy.on_rtp(&buf[..len], from, now).await,
                    Err(_) => proxy.counters.recv_errors += 1,
                }
            }
            res = async {
                match &proxy.rtcp {
                    Some(p) => p.socket.recv_from(&mut rtcp_buf).await,
                    None => std::future::pending().await,
                }
            }, if !stopping => {
                match res {
                    Ok((len, from)) => proxy.on_rtcp(&rtcp_buf[..len], from).await,
                    Err(_) => proxy.counters.recv_errors += 1,
                }
            }
            _ = tick.tick() => {
                let v = proxy.snapshot(timer::now_ns(), false);
                if !args.quiet {
                    say!("{}", status_line(&v));
                }
                if let Some(out) = &mut stats_out {
                    if let Err(e) = out.line(&v, true) {
                        say!("patchcord-impair: cannot write --stats-json: {e}");
                    }
                }
            }
        }
    }

    let end = timer::now_ns();
    let unsent = proxy.impairment.pending();
    let mut v = proxy.snapshot(end, true);
    if let Value::Object(map) = &mut v {
        map.insert("stop_reason".into(), json!(stop_reason));
        map.insert("unsent_at_exit".into(), json!(unsent));
    }
    say!("{}", status_line(&v));
    say!(
        "patchcord-impair: stopped ({stop_reason}){}",
        if unsent > 0 {
            format!("; {unsent} delayed copies were still pending and not sent")
        } else {
            String::new()
        }
    );
    if let Some(log) = &mut proxy.packet_log {
        if let Err(e) = log.flush() {
            say!("patchcord-impair: cannot write the packet log: {e}");
        }
    }
    if let Some(out) = &mut stats_out {
        out.line(&v, true)
            .map_err(|e| failure(format!("cannot write --stats-json: {e}")))?;
    }
    Ok(())
}
