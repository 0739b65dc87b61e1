#![recursion_limit = "256"]
//! `patchcord-recv`: receive Opus/RTP streams over UDP and play them.
//!
//! Threads: tokio (main thread) receives datagrams, stamps their arrival, validates them
//! and passes them through an rtrb queue of preallocated packet slots to the cpal output
//! callback, which owns the jitter buffer and decoder of the playing stream and pulls
//! audio on the output device's clock. The same tokio thread parses RTCP, prints the
//! status line once a second, writes JSON stats and handles signals.

mod ahead;
mod monitor;
mod output;
mod registry;
mod udp;

/// Tests run the real callbacks under an allocator that counts allocations made inside
/// `assert_no_alloc` scopes, and the live bytes of each thread.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: test_alloc::Counting = test_alloc::Counting;

#[cfg(test)]
mod test_alloc {
    use std::alloc::{GlobalAlloc, Layout};
    use std::cell::Cell;

    thread_local! {
        static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
    }

    /// Bytes allocated and not yet freed by the calling thread.
    pub fn live_bytes() -> isize {
        LIVE_BYTES.with(|c| c.get())
    }

    pub struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + layout.size() as isize));
            unsafe { assert_no_alloc::AllocDisabler.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            let _ = LIVE_BYTES.try_with(|c| c.set(c.get() - layout.size() as isize));
            unsafe { assert_no_alloc::AllocDisabler.dealloc(ptr, layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + layout.size() as isize));
            unsafe { assert_no_alloc::AllocDisabler.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let _ = LIVE_BYTES.try_with(|c| c.set(c.get() + new_size as isize - layout.size() as isize));
            unsafe { assert_no_alloc::AllocDisabler.realloc(ptr, layout, new_size) }
        }
    }
}

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::SampleFormat;
use patchcord_common::latency::CaptureClock;
use patchcord_common::mixer::db_to_linear;
use patchcord_common::playout::{packets_for_delay, DelayMode, PlayoutConfig, StreamPlayout};
use patchcord_common::red::{validate_red_rtp, RedInfo};
use patchcord_common::rtcp::{is_rtcp, parse_compound, RtcpPacket};
use patchcord_common::rtp::{validate_opus_rtp, DropReason, RtpOpusHeader, MAX_DATAGRAM_LEN, RTP_HEADER_LEN};
use patchcord_common::source::{PacketMeta, Probation};
use patchcord_devices::app::{
    choose_config, parse_seconds, run_main, wait_for_stop, DeviceArgs, StatsSink, StopReason,
};
use patchcord_devices::clock::HostClock;
use patchcord_devices::jack_ports::{rewire, JackArgs};
use patchcord_devices::server::PeriodWatch;
use patchcord_devices::{open_device, Direction};
use tokio::net::UdpSocket;

use monitor::{Monitor, NetCounters};
use output::{Control, OutputSide, PacketSlot, Retired, Snapshot, StreamReport, StreamSegment};
use registry::{parse_source_gain, GainKey, Registry};

#[derive(Parser, Debug)]
#[command(
    name = "patchcord-recv",
    version,
    about = "Receive Opus over RTP/UDP and play it",
    // a negative number is a value (reported against its range), not an unknown flag
    allow_negative_numbers = true
)]
struct Args {
    /// Address and port to receive RTP on. RTCP is accepted on the same port (RFC 5761)
    /// and on port + 1.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:5004")]
    listen: String,
    /// Hear only senders whose address is in one of these networks (CIDR, e.g.
    /// 192.168.1.0/24 or 2001:db8::/32, or a single address); datagrams from anywhere else
    /// are counted (`not_allowed`) and dropped. Default: every address.
    #[arg(long, value_name = "CIDR", num_args = 1.., value_parser = parse_allow)]
    allow: Vec<ipnet::IpNet>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    jack: JackArgs,
    /// Playout delay: `auto` (adaptive: follows the measured jitter within --latency-min
    /// and --latency-max, moved by removing or repeating pitch periods, never by changing
    /// pitch) or a fixed delay in ms from a packet's arrival to its playout (never slips;
    /// clock drift is resampled away).
    #[arg(long, value_name = "auto|MS", default_value = "auto", value_parser = parse_latency)]
    latency: Latency,
    /// Adaptive mode: lowest delay above the fastest packets, ms.
    #[arg(long, value_name = "MS", default_value = "5", value_parser = parse_latency_ms)]
    latency_min: f64,
    /// Adaptive mode: highest delay, ms.
    #[arg(long, value_name = "MS", default_value = "500", value_parser = parse_latency_ms)]
    latency_max: f64,
    /// Adaptive mode: the target is at least the (100 − budget) % quantile of the packets'
    /// relative arrival delay (2 s memory); it also covers the peaks of the last 10 s and
    /// any peak level reached twice in two minutes.
    #[arg(long, value_name = "PCT", default_value = "1", value_parser = parse_budget)]
    glitch_budget: f64,
    /// Expected RTP payload type (96..=127); other payload types are counted and dropped.
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u8).range(96..=127))]
    payload_type: u8,
    /// RTP payload type of RFC 2198 redundant packets (sender --redundancy); 96..=127.
    #[arg(long, default_value_t = 97, value_parser = clap::value_parser!(u8).range(96..=127))]
    red_payload_type: u8,
    /// Most streams played at once; further senders are counted and refused. Each stream
    /// preallocates its jitter buffer: 1500 bytes per 2.5 ms of --latency-max (or of a fixed
    /// --latency) plus 250 ms: 450 KB of packet storage at the defaults.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_streams: u16,
    /// Gain of every stream in the mix, dB.
    #[arg(long, default_value_t = 0.0, value_parser = parse_gain_db)]
    gain_db: f32,
    /// Gain of one source, overriding --gain-db: KEY=DB where KEY is an SSRC (0x1234abcd or
    /// decimal), HOST:PORT or HOST. Repeatable.
    #[arg(long, value_name = "KEY=DB", allow_hyphen_values = true, value_parser = parse_source_gain)]
    source_gain: Vec<(GainKey, f32)>,
    /// A stream silent this long fades out and leaves the mix.
    #[arg(long, value_name = "SECONDS", default_value = "1", value_parser = parse_seconds)]
    stream_timeout: f64,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<f64>,
    /// Write statistics as JSON lines to PATH (or - for standard output), once a second
    /// and a final summary.
    #[arg(long, value_name = "PATH|-")]
    stats_json: Option<String>,
    /// Write the playout timeline to PATH as CSV: for every run of output frames, the RTP
    /// timestamp and packet it was decoded from, or that it was concealed.
    #[arg(long, value_name = "PATH")]
    timeline: Option<String>,
    /// Decode and mix in a render thread that keeps N device periods ahead of the output
    /// callback, which then only copies (0: render inside the callback). For many streams
    /// or a shared audio server (JACK): use 2 or more, so that a late render thread is
    /// absorbed rather than heard. Adds N periods of latency (reported).
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=ahead::MAX_AHEAD_PERIODS as i64))]
    render_ahead: u32,
    /// No status line on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Latency {
    Auto,
    Fixed(f64),
}

fn parse_latency(s: &str) -> Result<Latency, String> {
    if s.eq_ignore_ascii_case("auto") {
        Ok(Latency::Auto)
    } else {
        parse_latency_ms(s).map(Latency::Fixed)
    }
}

/// `--allow`: a network in CIDR notation, or one address.
fn parse_allow(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("'{s}' is not a network (CIDR like 192.168.1.0/24 or fd00::/8) or an address"))
}

fn parse_budget(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage"))?;
    if !(0.01..=20.0).contains(&v) {
        return Err("glitch budget must be between 0.01 and 20 percent".into());
    }
    Ok(v)
}

fn parse_gain_db(s: &str) -> Result<f32, String> {
    let v: f32 = s
        .trim_end_matches("dB")
        .parse()
        .map_err(|_| format!("'{s}' is not a number of dB"))?;
    if !(-90.0..=24.0).contains(&v) {
        return Err("gain must be within -90..=24 dB".into());
    }
    Ok(v)
}

fn parse_latency_ms(s: &str) -> Result<f64, String> {
    let s = s.trim_end_matches("ms");
    let v: f64 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of milliseconds"))?;
    if !(0.5..=2000.0).contains(&v) {
        return Err("latency must be between 0.5 and 2000 ms".into());
    }
    Ok(v)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let device = args.device.clone();
    run_main("patchcord-recv", &device, move || run(args))
}

fn bind_error(addr: &str, e: std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: address already in use (is another patchcord-recv running? choose another port with --listen)"
        ),
        std::io::ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {addr}: that address is not on this machine")
        }
        std::io::ErrorKind::PermissionDenied => {
            format!("cannot listen on {addr}: permission denied (ports below 1024 need privileges)")
        }
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listen: SocketAddr = match args.listen.parse() {
        Ok(a) => a,
        Err(_) => tokio::net::lookup_host(&args.listen)
            .await
            .map_err(|e| {
                format!(
                    "bad --listen address '{}': {e} (expected ADDR:PORT, e.g. 0.0.0.0:5004)",
                    args.listen
                )
            })?
            .next()
            .ok_or_else(|| format!("bad --listen address '{}'", args.listen))?,
    };
    let socket = UdpSocket::bind(listen)
        .await
        .map_err(|e| bind_error(&args.listen, e))?;
    let local = socket.local_addr().map_err(|e| format!("socket: {e}"))?;
    let recv_buffer = udp::grow_receive_buffer(&socket);
    let drops_at_start = udp::kernel_drops(local).unwrap_or(0);
    let rtcp_socket = if local.port() > 0 && local.port() < u16::MAX {
        let mut a = local;
        a.set_port(local.port() + 1);
        match UdpSocket::bind(a).await {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!(
                    "patchcord-recv: warning: {}; RTCP accepted on the RTP port only",
                    bind_error(&a.to_string(), e)
                );
                None
            }
        }
    } else {
        None
    };

    let clock = HostClock::new();
    let channels = args.device.channels as usize;
    if args.red_payload_type == args.payload_type {
        return Err(format!(
            "--red-payload-type {} equals --payload-type; choose two different dynamic payload types",
            args.red_payload_type
        ));
    }
    if args.latency_min > args.latency_max {
        return Err(format!(
            "--latency-min {} ms is above --latency-max {} ms",
            args.latency_min, args.latency_max
        ));
    }
    let playout_cfg = match args.latency {
        Latency::Fixed(ms) => PlayoutConfig {
            mode: DelayMode::Fixed,
            channels,
            latency_ns: (ms * 1e6).round() as i64,
            capacity_packets: packets_for_delay((ms * 1e6).round() as i64),
            ..PlayoutConfig::default()
        },
        Latency::Auto => PlayoutConfig {
            mode: DelayMode::Adaptive {
                min_ns: (args.latency_min * 1e6).round() as i64,
                max_ns: (args.latency_max * 1e6).round() as i64,
                quantile: 1.0 - args.glitch_budget / 100.0,
            },
            channels,
            latency_ns: (args.latency_min * 1e6).round() as i64,
            capacity_packets: packets_for_delay((args.latency_max * 1e6).round() as i64),
            ..PlayoutConfig::default()
        },
    };
    let latency_text = match args.latency {
        Latency::Fixed(ms) => format!("fixed latency {ms} ms"),
        Latency::Auto => format!(
            "adaptive latency {}..{} ms, glitch budget {} %",
            args.latency_min, args.latency_max, args.glitch_budget
        ),
    };

    // Device
    let opened = open_device(
        args.device.host,
        args.device.device.as_deref(),
        Direction::Output,
        args.device.virtual_options(),
    )
    .map_err(|e| e.to_string())?;
    let (config, format) = choose_config(&opened, Direction::Output, channels, args.device.period)?;
    let mut period_watch = PeriodWatch::of(&config);

    // Queues between the network/control thread and the audio thread.
    let max_streams = args.max_streams as usize;
    // 16 packets per stream: when many streams start at once, the network thread creates
    // them (tens of ms at 256 streams) and then hands over the backlog in one burst; 8 per
    // stream overflowed once in that burst (BENCHMARKS.md §3).
    let (packet_tx, packet_rx) = rtrb::RingBuffer::<PacketSlot>::new(512.max(max_streams * 16));
    let (control_tx, control_rx) = rtrb::RingBuffer::<Control>::new(max_streams * 2 + 8);
    let (retired_tx, retired_rx) = rtrb::RingBuffer::<Retired>::new(max_streams + 8);
    let (snap_tx, snap_rx) = rtrb::RingBuffer::<Snapshot>::new(4096);
    let (report_tx, report_rx) = rtrb::RingBuffer::<StreamReport>::new(1 << 14);
    let (seg_tx, seg_rx) = if args.timeline.is_some() {
        let (tx, rx) = rtrb::RingBuffer::<StreamSegment>::new(1 << 16);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (err_tx, mut err_rx) = rtrb::RingBuffer::<cpal::Error>::new(64);
    let xruns = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));

    let side = OutputSide::new(
        packet_rx,
        control_rx,
        retired_tx,
        snap_tx,
        report_tx,
        seg_tx,
        max_streams,
        channels,
        8192,
        clock,
    );
    // --render-ahead: the render thread owns the output side; the callback copies.
    let period_guess = match config.buffer_size {
        cpal::BufferSize::Fixed(n) => n as usize,
        cpal::BufferSize::Default => 480,
    };
    let (mut callback_side, render_thread, callback_durations) = if args.render_ahead > 0 {
        let (output, thread, durations) =
            ahead::start(side, args.render_ahead, period_guess, !args.device.no_realtime)?;
        (
            CallbackSide::Ring(Box::new(output)),
            Some(thread),
            Some(durations),
        )
    } else {
        (CallbackSide::Render(Box::new(side)), None, None)
    };
    let xr = xruns.clone();
    let mut err_tx = err_tx;
    let err_cb = move |e: cpal::Error| {
        if e.kind() == cpal::ErrorKind::Xrun {
            xr.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            let _ = err_tx.push(e);
        }
    };
    let build = match format {
        SampleFormat::I16 => opened.device.build_output_stream::<i16, _, _>(
            config,
            move |data, info| callback_side.on_output_i16(data, info),
            err_cb,
            None,
        ),
        _ => opened.device.build_output_stream::<f32, _, _>(
            config,
            move |data, info| callback_side.on_output_f32(data, info),
            err_cb,
            None,
        ),
    };
    let stream = build.map_err(|e| {
        format!(
            "cannot open output device '{}' on {}: {e}",
            opened.device_name, opened.host_name
        )
    })?;
    stream
        .play()
        .map_err(|e| format!("cannot start output device '{}': {e}", opened.device_name))?;
    if args.jack.rewires() {
        if opened.host_name != "JACK" {
            eprintln!(
                "patchcord-recv: note: --connect / --no-connect concern JACK only; ignored on {}",
                opened.host_name
            );
        } else {
            for c in rewire(&args.jack, Direction::Output, channels)? {
                eprintln!("patchcord-recv: JACK: connected {c}");
            }
        }
    }

    let mut stats_out = StatsSink::open(args.stats_json.as_deref()).map_err(|e| e.to_string())?;
    let timeline_out = match &args.timeline {
        Some(p) => {
            let mut w = BufWriter::new(
                File::create(p).map_err(|e| format!("cannot create timeline file '{p}': {e}"))?,
            );
            writeln!(w, "ssrc,out_frame,frames,rtp_ts,source,seq")
                .map_err(|e| format!("timeline file: {e}"))?;
            Some(w)
        }
        None => None,
    };
    if !args.quiet {
        eprintln!(
            "patchcord-recv: listening on {local} (RTCP also on {}) -> {} on {} | {channels} ch, {latency_text}, PT {}",
            rtcp_socket.as_ref().and_then(|s| s.local_addr().ok()).map(|a| a.to_string()).unwrap_or("-".into()),
            opened.device_name,
            opened.host_name,
            args.payload_type
        );
    }

    // The network thread is on the audio path (arrival -> playout): real-time priority.
    if !args.device.no_realtime {
        if let Err(e) = patchcord_devices::realtime::promote_current_thread(480) {
            eprintln!("patchcord-recv: note: network thread: {e}");
        }
    }
    let mut monitor = Monitor::new(
        snap_rx,
        report_rx,
        retired_rx,
        seg_rx,
        timeline_out,
        max_streams,
        callback_durations,
    );
    let mut side = NetSide {
        payload_type: args.payload_type,
        red_payload_type: args.red_payload_type,
        playout: playout_cfg,
        counters: NetCounters::default(),
        registry: Registry::new(max_streams, args.gain_db, args.source_gain.clone()),
        // new SSRCs on probation: room for every slot to be contested twice over
        probation: Probation::new(64 + 2 * max_streams),
        allow: args.allow.clone(),
        clocks: HashMap::new(),
        early_reports: std::collections::VecDeque::with_capacity(EARLY_REPORTS),
        packets: packet_tx,
        control: control_tx,
        silent: Vec::with_capacity(max_streams),
        local,
        recv_buffer,
        drops_at_start,
    };
    let mut buf = vec![0u8; 65_536];
    let mut rtcp_buf = vec![0u8; 65_536];
    let timeout_ns = (args.stream_timeout * 1e9) as i64;
    let xrun_count = || xruns.load(std::sync::atomic::Ordering::Relaxed);

    let stop_fut = wait_for_stop(args.duration);
    tokio::pin!(stop_fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut drain = tokio::time::interval(Duration::from_millis(20));
    let mut last_bytes = 0u64;

    let mut render_failed = false;
    let reason = loop {
        tokio::select! {
            r = &mut stop_fut => break r,
            res = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = res else { continue };
                side.datagram(&buf[..len], clock.now_unix_ns(), from);
            }
            res = async {
                match &rtcp_socket {
                    Some(s) => s.recv_from(&mut rtcp_buf).await,
                    None => std::future::pending().await,
                }
            } => {
                let Ok((len, from)) = res else { continue };
                side.counters.datagrams += 1;
                if side.allowed(from) {
                    side.rtcp(&rtcp_buf[..len], from);
                }
            }
            _ = drain.tick() => {
                monitor.drain(&side.clocks, &mut side.registry);
                side.fade_out_silent(clock.now_unix_ns(), timeout_ns);
            }
            _ = tick.tick() => {
                if render_thread.as_ref().is_some_and(|t| t.has_died()) {
                    render_failed = true;
                    break StopReason::Terminated;
                }
                monitor.drain(&side.clocks, &mut side.registry);
                monitor.end_second();
                while let Ok(e) = err_rx.pop() {
                    eprintln!("patchcord-recv: device error: {e}");
                }
                side.refresh_gauges();
                let s = monitor.stats_json(&side.counters, &side.registry, xrun_count(), &playout_cfg, false);
                if let Some(w) = s["period_frames"].as_f64().and_then(|p| period_watch.observe(p)) {
                    eprintln!("patchcord-recv: {w}");
                }
                if !args.quiet {
                    let bytes = s["payload_bytes"].as_u64().unwrap_or(0);
                    print_status(&s, (bytes - last_bytes.min(bytes)) as f64 * 8.0 / 1000.0);
                    last_bytes = bytes;
                }
                if let Err(e) = stats_out.write(&s) {
                    eprintln!("patchcord-recv: stats output failed: {e}");
                }
            }
        }
    };
    // Let the callback report its last periods, then stop the device (finalizes WAVs).
    tokio::time::sleep(Duration::from_millis(30)).await;
    monitor.drain(&side.clocks, &mut side.registry);
    monitor.end_second();
    drop(stream);
    if let Some(t) = render_thread {
        t.stop();
    }
    monitor.drain(&side.clocks, &mut side.registry);
    if let Err(e) = monitor.finish_timeline() {
        eprintln!("patchcord-recv: timeline file: {e}");
    }
    side.refresh_gauges();
    let summary = monitor.stats_json(&side.counters, &side.registry, xrun_count(), &playout_cfg, true);
    let _ = stats_out.write(&summary);
    print_summary(&summary, reason);
    if render_failed {
        return Err("the render thread (--render-ahead) stopped unexpectedly; see the message above".into());
    }
    Ok(())
}

/// Sender reports kept for SSRCs not heard yet.
const EARLY_REPORTS: usize = 64;

/// What the device callback runs: the whole output side, or the copy from the render
/// thread's ring (`--render-ahead`).
enum CallbackSide {
    Render(Box<OutputSide>),
    Ring(Box<ahead::RingOutput>),
}

impl CallbackSide {
    fn on_output_f32(&mut self, out: &mut [f32], info: &cpal::OutputCallbackInfo) {
        match self {
            CallbackSide::Render(s) => s.on_output_f32(out, info),
            CallbackSide::Ring(r) => r.on_output_f32(out, info),
        }
    }

    fn on_output_i16(&mut self, out: &mut [i16], info: &cpal::OutputCallbackInfo) {
        match self {
            CallbackSide::Render(s) => s.on_output_i16(out, info),
            CallbackSide::Ring(r) => r.on_output_i16(out, info),
        }
    }
}

/// The network side: everything the tokio thread owns to route datagrams to the callback.
struct NetSide {
    payload_type: u8,
    red_payload_type: u8,
    playout: PlayoutConfig,
    counters: NetCounters,
    registry: Registry,
    probation: Probation,
    /// `--allow`: the networks heard (empty: all).
    allow: Vec<ipnet::IpNet>,
    /// Latest sender report of each SSRC: RTP timestamp → capture instant.
    clocks: HashMap<u32, CaptureClock>,
    /// Sender reports of SSRCs not heard yet, with where they came from (the last few).
    early_reports: std::collections::VecDeque<(u32, SocketAddr, CaptureClock)>,
    packets: rtrb::Producer<PacketSlot>,
    control: rtrb::Producer<Control>,
    silent: Vec<(u16, u32)>,
    local: SocketAddr,
    recv_buffer: usize,
    drops_at_start: u64,
}

impl NetSide {
    /// Streams silent for `timeout_ns` fade out and leave the mix; one whose removal cannot
    /// be sent now (control queue full) is tried again at the next sweep.
    fn fade_out_silent(&mut self, now_ns: i64, timeout_ns: i64) {
        self.registry.silent(now_ns, timeout_ns, &mut self.silent);
        for &(slot, ssrc) in &self.silent {
            if self.control.push(Control::Remove { slot, ssrc }).is_ok() {
                self.registry.forget(ssrc);
            } else {
                self.counters.control_queue_full += 1;
            }
        }
    }

    /// The gauges of the stats: socket drops and buffer, packets waiting in probation.
    fn refresh_gauges(&mut self) {
        self.counters.in_probation = self.probation.waiting_packets();
        self.counters.socket_drops =
            udp::kernel_drops(self.local).map(|d| d.saturating_sub(self.drops_at_start));
        self.counters.socket_buffer_bytes = self.recv_buffer;
    }

    /// `--allow`: whether datagrams from `from` are heard (counted when not).
    fn allowed(&mut self, from: SocketAddr) -> bool {
        let ip = from.ip().to_canonical();
        if self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip)) {
            return true;
        }
        self.counters.not_allowed += 1;
        false
    }

    fn datagram(&mut self, d: &[u8], arrival: i64, from: SocketAddr) {
        self.counters.datagrams += 1;
        if !self.allowed(from) {
            return;
        }
        if is_rtcp(d) {
            self.rtcp(d, from);
            return;
        }
        let pts = (self.payload_type, self.red_payload_type);
        let header = match parse_rtp(d, pts) {
            Ok((h, _)) => h,
            Err(reason) => {
                self.counters.dropped[reason.index()] += 1;
                return;
            }
        };
        let meta = PacketMeta::of(&header, arrival);
        let ssrc = header.ssrc;
        let Self {
            registry,
            counters,
            packets,
            ..
        } = self;
        if let Some(entry) = registry.get_mut(ssrc) {
            let slot = entry.slot;
            entry
                .source
                .check(&meta, from, d, &mut counters.source, &mut |dg, at, restart| {
                    hand_over(packets, &mut counters.queue_full, pts, slot, dg, at, restart)
                });
            return;
        }
        if registry.still_refused(ssrc) {
            return;
        }
        let Some(admission) = self.probation.offer(&meta, from, d, &mut self.counters.source) else {
            return;
        };
        // A new sender passed probation: its stream is allocated here, off the audio thread.
        let waiting = admission.earlier.len() as u64 + 1;
        let Some((slot, gain_db)) = self.registry.free_slot(ssrc, from) else {
            self.registry.refuse(ssrc, waiting);
            return;
        };
        let Ok(playout) = StreamPlayout::new(ssrc, self.playout) else {
            self.counters.source.unvalidated += waiting;
            return;
        };
        let add = Control::Add {
            slot,
            stream: Box::new(playout),
            gain: db_to_linear(gain_db),
        };
        if self.control.push(add).is_err() {
            self.counters.control_queue_full += 1;
            self.counters.source.unvalidated += waiting;
            return;
        }
        if let Some(&(_, _, clock)) = self
            .early_reports
            .iter()
            .rev()
            .find(|(s, at, _)| *s == ssrc && admission.source.is_rtcp_source(*at))
        {
            self.clocks.insert(ssrc, clock);
        }
        self.registry.started(ssrc, slot, admission.source);
        for h in &admission.earlier {
            hand_over(
                &mut self.packets,
                &mut self.counters.queue_full,
                pts,
                slot,
                &h.datagram,
                h.meta.arrival_ns,
                false,
            );
        }
        hand_over(
            &mut self.packets,
            &mut self.counters.queue_full,
            pts,
            slot,
            d,
            arrival,
            false,
        );
    }

    /// An RTCP datagram from `from`. Sender reports and BYEs count only from the stream's
    /// own RTCP source (its RTP address or the next port; see `patchcord_common::source`).
    fn rtcp(&mut self, d: &[u8], from: SocketAddr) {
        self.counters.rtcp += 1;
        for p in parse_compound(d) {
            match p {
                Ok(RtcpPacket::SenderReport(sr)) => {
                    self.counters.sender_reports += 1;
                    let clock = CaptureClock::from_sender_report(&sr);
                    let from_source = match self.registry.get(sr.ssrc) {
                        Some(e) => e.source.is_rtcp_source(from),
                        None if self.probation.is_rtcp_source(sr.ssrc, from) => true,
                        None => {
                            // before the SSRC's first RTP packet (ffmpeg sends one first):
                            // kept aside until the SSRC passes probation from its address
                            if self.early_reports.len() == EARLY_REPORTS {
                                self.early_reports.pop_front();
                            }
                            self.early_reports.push_back((sr.ssrc, from, clock));
                            continue;
                        }
                    };
                    if !from_source {
                        self.counters.rtcp_wrong_source += 1;
                    } else if self.clocks.len() < 4096 || self.clocks.contains_key(&sr.ssrc) {
                        self.clocks.insert(sr.ssrc, clock);
                    }
                }
                Ok(RtcpPacket::Bye { ssrcs, count }) => {
                    self.counters.byes += 1;
                    for &ssrc in &ssrcs[..count.min(31)] {
                        let Some(e) = self.registry.get(ssrc).filter(|e| e.source.is_rtcp_source(from))
                        else {
                            if !self.probation.is_rtcp_source(ssrc, from) {
                                self.counters.rtcp_wrong_source += 1;
                            }
                            continue;
                        };
                        let bye = PacketSlot::bye(e.slot, ssrc);
                        if self.packets.push(bye).is_err() {
                            self.counters.queue_full += 1;
                        }
                    }
                }
                Ok(RtcpPacket::Other { .. }) => {}
                // shorter than an RTP header and not RTCP either: a truncated datagram
                Err(_) if d.len() < RTP_HEADER_LEN => {
                    self.counters.dropped[DropReason::Truncated.index()] += 1
                }
                Err(_) => self.counters.rtcp_malformed += 1,
            }
        }
    }
}

/// Validate an RTP packet of payload types `(opus, red)`: plain Opus or RFC 2198. Returns
/// its header and redundant blocks.
fn parse_rtp(
    d: &[u8],
    (payload_type, red_payload_type): (u8, u8),
) -> Result<(RtpOpusHeader, RedInfo), DropReason> {
    if d.len() > 1 && d[1] & 0x7f == red_payload_type {
        validate_red_rtp(d, red_payload_type, payload_type)
    } else {
        validate_opus_rtp(d, payload_type).map(|h| (h, RedInfo::default()))
    }
}

/// Hand a packet (parsed again from its datagram) to the callback for the stream in `slot`;
/// `restart`: the stream starts a new sequence with it.
fn hand_over(
    packets: &mut rtrb::Producer<PacketSlot>,
    queue_full: &mut u64,
    pts: (u8, u8),
    slot: u16,
    d: &[u8],
    arrival: i64,
    restart: bool,
) {
    // it validated when it arrived
    let Ok((header, red)) = parse_rtp(d, pts) else {
        return;
    };
    let mut p = PacketSlot {
        slot,
        bye: false,
        restart,
        header,
        red,
        arrival_unix_ns: arrival,
        len: d.len(),
        data: [0; MAX_DATAGRAM_LEN],
    };
    p.data[..d.len()].copy_from_slice(d);
    if packets.push(p).is_err() {
        *queue_full += 1;
    }
}

fn print_status(s: &serde_json::Value, kbps: f64) {
    let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
    let dropped: u64 = s["dropped"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    // refused by source validation: not allowed, wrong source, never validated, jumps
    let foreign: u64 = [
        "not_allowed",
        "wrong_source",
        "rtcp_wrong_source",
        "unvalidated",
        "jumps_rejected",
    ]
    .iter()
    .filter_map(|k| s[*k].as_u64())
    .sum();
    eprintln!(
        "recv {:>6.1}s | streams {} | packets {:>7} | lost {} | late {} | concealed {:.1} ms | delay {:.1}/{:.1} ms | underruns {} | xruns {} | {:.1} kb/s | latency {} | bad {} | foreign {} | cb p99 {:.0}%",
        f("t"),
        s["active_streams"],
        s["packets_received"],
        s["lost"],
        s["late"],
        f("concealed_ms"),
        f("delay_ms"),
        f("target_delay_ms"),
        s["underruns"],
        s["xruns"],
        kbps,
        match s["latency_ms"].as_f64() {
            Some(l) => format!("{l:.2} ms"),
            None => "? (no RTCP SR yet)".into(),
        },
        dropped,
        foreign,
        f("callback_p99") * 100.0,
    );
}

fn print_summary(s: &serde_json::Value, reason: StopReason) {
    let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
    eprintln!(
        "patchcord-recv: stopped ({}) after {:.1} s",
        match reason {
            StopReason::Interrupted => "interrupted",
            StopReason::Terminated => "terminated",
            StopReason::DurationElapsed => "duration reached",
        },
        f("t")
    );
    eprintln!(
        "  streams: {} started, {} refused (--max-streams), {} timed out",
        s["streams_started"], s["streams_refused"], s["streams_timed_out"]
    );
    eprintln!(
        "  sources: {} datagrams not allowed (--allow), {} from the wrong source (RTCP {}), {} never validated (probation; {} candidates evicted), {} held aside as jumps ({} rejected), {} restarts",
        s["not_allowed"],
        s["wrong_source"],
        s["rtcp_wrong_source"],
        s["unvalidated"],
        s["probation_evicted"],
        s["held_aside"],
        s["jumps_rejected"],
        s["restarts"]
    );
    eprintln!(
        "  packets received {}, played {}, discarded {} (audio older than the chosen delay at a stream start, or a sender restart), late {}, duplicates {}",
        s["packets_received"], s["played"], s["discarded"], s["late"], s["duplicates"]
    );
    eprintln!(
        "  lost {} (RFC 3550), missing at playout {}, recovered by FEC {} / redundancy {}",
        s["lost"], s["missing"], s["recovered_fec"], s["recovered_red"]
    );
    eprintln!(
        "  concealed {:.1} ms in {} events ({} interruptions >= 150 ms), underruns {}, streams ended {}, pitch-period splices {}, xruns {}, resyncs {}, bad datagrams {}, socket drops {}, jitter {:.2} ms",
        f("concealed_ms"),
        s["concealment_events"],
        s["interruptions"],
        s["underruns"],
        s["ended"],
        s["tsm_operations"],
        s["xruns"],
        s["resyncs"],
        s["dropped"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()).unwrap_or(0),
        s["socket_drops"],
        f("jitter_ms")
    );
    match s["latency_ms"].as_f64() {
        Some(l) => eprintln!(
            "  end-to-end latency (capture -> playback, from RTCP SR): {l:.2} ms, last measured while playing ({} jitter buffer)",
            s["mode"].as_str().unwrap_or("?")
        ),
        None => eprintln!("  end-to-end latency: unknown (no RTCP sender report received)"),
    }
    eprintln!(
        "  audio callback: p50 {:.1}%, p99 {:.1}%, max {:.1}% of the {}-frame period",
        f("callback_p50") * 100.0,
        f("callback_p99") * 100.0,
        f("callback_max") * 100.0,
        s["period_frames"]
    );
    if s["render_ahead"].as_bool() == Some(true) {
        eprintln!(
            "  render thread (--render-ahead): p50 {:.1}%, p99 {:.1}%, max {:.1}% of the period; {} frames played as silence because it was late",
            f("render_p50") * 100.0,
            f("render_p99") * 100.0,
            f("render_max") * 100.0,
            s["render_underrun_frames"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_takes_networks_and_addresses() {
        let n = parse_allow("192.168.1.77/24").unwrap();
        assert_eq!(n.to_string(), "192.168.1.0/24");
        assert!(n.contains(&"192.168.1.5".parse::<std::net::IpAddr>().unwrap()));
        assert_eq!(parse_allow("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_allow("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(parse_allow("10.0.0.0/33").is_err());
        assert!(parse_allow("somewhere").is_err());
    }
}
