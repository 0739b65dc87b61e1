//! `patchcord-recv`: receive Opus/RTP streams over UDP and play them.
//!
//! Threads: tokio (main thread) receives datagrams, stamps their arrival, checks them in
//! order (`--allow`, SRTP/SRTCP authentication and decryption with `--srtp-key`, RTCP
//! demux, payload type, then source validation: probation, binding, jumps;
//! [`NetSide::datagram`]) and passes them through an rtrb queue of preallocated
//! packet slots to the cpal output callback, which owns the jitter buffer and decoder of
//! the playing stream and pulls audio on the output device's clock. The same tokio thread
//! takes RTCP about each stream only from that stream's own source and sends its receiver
//! reports back there (`feedback.rs`, as SRTCP with a key), makes the stats record once a second
//! (`monitor.rs`, `stats.rs`) for the status line, the JSON lines and the HTTP endpoint
//! (`--http`, on a thread of its own), and handles signals.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod ahead;
mod durations;
mod feedback;
mod latency;
mod monitor;
mod net_counters;
mod output;
mod payload;
mod registry;
mod stats;
mod status;
mod timeline;
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

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::SampleFormat;
use patchcord_common::latency::CaptureClock;
use patchcord_common::load::LoadGovernor;
use patchcord_common::mixer::db_to_linear;
use patchcord_common::playout::{packets_for_delay, DelayMode, PlayoutConfig, StreamPlayout};
use patchcord_common::rtcp::{is_rtcp, parse_compound, RtcpPacket, SenderReport};
use patchcord_common::rtp::{DropReason, MAX_DATAGRAM_LEN, RTP_HEADER_LEN};
use patchcord_common::sdp::{RtcpPort, StreamDescription};
use patchcord_common::source::{is_rtcp_source, PacketMeta, Probation};
use patchcord_common::srtp::{Opened, Protector, Unprotector};
use patchcord_devices::allow::{parse_allow, Allow, IpNet};
use patchcord_devices::app::{
    choose_config, parse_seconds, rtcp_cname, run_main, wait_for_stop, DeviceArgs, SetupArgs, StatsSink,
    StopReason,
};
use patchcord_devices::clock::HostClock;
use patchcord_devices::jack_args::JackArgs;
use patchcord_devices::net::{bind_group, parse_interface, Interface, Membership};
use patchcord_devices::server::PeriodWatch;
use patchcord_devices::srtp_args::SrtpArgs;
use patchcord_devices::{open_device, Direction};
use tokio::net::UdpSocket;

use feedback::{Feedback, Via};
use monitor::{Context, Monitor};
use net_counters::NetCounters;
use output::{Control, OutputSide, PacketSlot, Retired, Snapshot, StreamReport, StreamSegment};
use patchcord_web::{HttpCounters, Publisher};
use payload::PayloadTypes;
use registry::{parse_source_gain, GainKey, Registry};

#[derive(clap::Parser, Debug)]
#[command(
    name = "patchcord-recv",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PATCHCORD_COMMIT"), ")"),
    about = "Receive Opus over RTP/UDP and play it",
    // a negative number is a value (reported against its range), not an unknown flag
    allow_negative_numbers = true
)]
struct Args {
    /// Address and port to receive RTP on. RTCP is accepted on the same port (RFC 5761)
    /// and on port + 1.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:5004")]
    listen: String,
    /// Configure from an SDP description (RFC 4566) of the stream instead: its port and
    /// address, payload types, RTCP port, and channels (unless --channels is given).
    /// patchcord-send writes one with --sdp, ffmpeg with -sdp_file.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["listen", "payload_type", "red_payload_type"])]
    sdp: Option<String>,
    /// Interface to join a multicast group on (--listen GROUP:PORT or an SDP's group): a
    /// name (eth0), an index, or (IPv4) one of its addresses. Default: the kernel's route.
    #[arg(long, value_name = "IFACE", value_parser = parse_interface)]
    iface: Option<Interface>,
    /// Source-specific multicast (SSM, RFC 4607): receive the group from this sender only.
    /// An SDP's source filter (a=source-filter) says the same.
    #[arg(long, value_name = "ADDR")]
    source: Option<std::net::IpAddr>,
    /// Whether --channels was on the command line (it then wins over the SDP's).
    #[arg(skip)]
    channels_given: bool,
    /// Hear only senders whose address is in one of these networks (CIDR, e.g.
    /// 192.168.1.0/24 or 2001:db8::/32, or a single address); datagrams from anywhere else
    /// are counted (`not_allowed`) and dropped. Default: every address. For a multicast
    /// group, a sender's address is its own (unicast) source address, not the group's.
    #[arg(long, value_name = "CIDR", num_args = 1.., value_parser = parse_allow)]
    allow: Vec<IpNet>,
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
    /// RTP payload type of Opus (96..=127); others are counted and dropped. Default: any
    /// dynamic type but the RED one (patchcord and GStreamer send 96, ffmpeg 97).
    #[arg(long, value_name = "PT", value_parser = clap::value_parser!(u8).range(96..=127))]
    payload_type: Option<u8>,
    /// RTP payload type of RFC 2198 redundant packets (sender --redundancy); 96..=127.
    #[arg(long, value_name = "PT", default_value_t = payload::DEFAULT_RED_PT, value_parser = clap::value_parser!(u8).range(96..=127))]
    red_payload_type: u8,
    /// Most streams played at once; further senders are counted and refused. Each stream
    /// preallocates its jitter buffer: 1500 bytes per 2.5 ms of --latency-max (or of a fixed
    /// --latency) plus 250 ms: 450 KB of packet storage at the defaults.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1024))]
    max_streams: u16,
    /// Share of real time the rendering (every stream's decode and the mix) may use, in %.
    /// New streams are refused when one more would not fit; if the load goes over anyway
    /// (over half a second), the newest streams are shed so the rest keep playing in real
    /// time. Both are counted (`refused_for_load`, `streams_shed`).
    #[arg(long, value_name = "PERCENT", default_value_t = patchcord_common::load::DEFAULT_LIMIT * 100.0, value_parser = parse_load_limit)]
    load_limit: f64,
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
    #[command(flatten)]
    http: patchcord_web::HttpArgs,
    /// Write an HTML report of a finished run from its --stats-json file (the dashboard's
    /// plots, self-contained) to --output, and exit.
    #[arg(long, value_name = "STATS.jsonl", requires = "output")]
    report: Option<String>,
    /// Where --report writes the HTML.
    #[arg(long, short, value_name = "FILE.html", requires = "report")]
    output: Option<String>,
    #[command(flatten)]
    srtp: SrtpArgs,
    #[command(flatten)]
    setup: SetupArgs,
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

/// `--load-limit`: a percentage in 0.1..=100.
fn parse_load_limit(s: &str) -> Result<f64, String> {
    match s.trim().trim_end_matches('%').parse::<f64>() {
        Ok(p) if (0.1..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("'{s}': expected a percentage of real time, 0.1 to 100")),
    }
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
    let command = <Args as clap::CommandFactory>::command;
    let matches = patchcord_devices::config_file::matches(command()).unwrap_or_else(|e| e.exit());
    let mut args = match <Args as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    if let Some(kind) = args.setup.generate {
        return patchcord_devices::generate::print(kind, command());
    }
    if let (Some(input), Some(output)) = (&args.report, &args.output) {
        return write_report(input, output);
    }
    args.channels_given = matches.value_source("channels") == Some(clap::parser::ValueSource::CommandLine);
    let device = args.device.clone();
    run_main("patchcord-recv", &device, move || run(args))
}

/// `--report`: the HTML report of a `--stats-json` file.
fn write_report(input: &str, output: &str) -> ExitCode {
    match patchcord_web::report::write(input, output) {
        Ok(n) => {
            patchcord_devices::say!("patchcord-recv: wrote {output} ({n} records)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            patchcord_devices::say!("patchcord-recv: {e}");
            ExitCode::FAILURE
        }
    }
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

/// Read `--sdp FILE`.
fn read_sdp(path: &str) -> Result<StreamDescription, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read the SDP file '{path}': {e}"))?;
    StreamDescription::parse(&text).map_err(|e| format!("--sdp {path}: {e}"))
}

fn group_error(m: &Membership, port: u16, e: std::io::Error) -> String {
    let source = m.source.map(|s| format!(" from {s}")).unwrap_or_default();
    format!(
        "cannot join multicast group {}{source} on port {port}: {e} (is there a multicast route? `ip route add 224.0.0.0/4 dev IFACE`; or choose the interface with --iface)",
        m.group
    )
}

/// Bind the RTP socket: at `listen`; for a unicast address from an SDP that is not one of
/// this machine's (it names the host the sender sent to), at the unspecified address of
/// its family and the same port.
async fn bind_rtp(listen: SocketAddr, from_sdp: bool) -> std::io::Result<UdpSocket> {
    match UdpSocket::bind(listen).await {
        Err(e) if from_sdp && e.kind() == std::io::ErrorKind::AddrNotAvailable => {
            let any: std::net::IpAddr = if listen.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            };
            UdpSocket::bind((any, listen.port())).await
        }
        r => r,
    }
}

async fn run(mut args: Args) -> Result<(), String> {
    // before any thread takes real-time priority: its thread inherits none
    let mut publisher = patchcord_web::server::start(&args.http, "patchcord-recv")?;
    if let Some(p) = publisher.as_ref().filter(|_| !args.quiet) {
        patchcord_devices::say!(
            "patchcord-recv: dashboard on http://{}/ (metrics at /metrics)",
            p.local_addr()
        );
    }
    let sdp = args.sdp.as_deref().map(read_sdp).transpose()?;
    // a key on the command line wins over the SDP's a=crypto
    let srtp_key = match args.srtp.master_key()? {
        Some(k) => Some(k),
        None => sdp.as_ref().and_then(|d| d.crypto.clone()),
    };
    if let Some(d) = &sdp {
        args.listen = SocketAddr::new(d.destination, d.port).to_string();
        args.payload_type = Some(d.opus_payload_type);
        if let Some(r) = d.red {
            args.red_payload_type = r.payload_type;
        }
        if !args.channels_given {
            args.device.channels = d.channels;
        }
    }
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
    let membership = if listen.ip().is_multicast() {
        Some(Membership {
            group: listen.ip(),
            source: args
                .source
                .or(sdp.as_ref().filter(|d| d.source_filter).and_then(|d| d.source)),
            iface: args.iface,
        })
    } else if args.iface.is_some() || args.source.is_some() {
        return Err(format!(
            "--iface and --source are for a multicast group; {listen} is not one"
        ));
    } else {
        None
    };
    let socket = match &membership {
        Some(m) => bind_group(listen.port(), m)
            .and_then(UdpSocket::from_std)
            .map_err(|e| group_error(m, listen.port(), e))?,
        None => bind_rtp(listen, sdp.is_some())
            .await
            .map_err(|e| bind_error(&args.listen, e))?,
    };
    let local = socket.local_addr().map_err(|e| format!("socket: {e}"))?;
    let recv_buffer = udp::grow_receive_buffer(&socket);
    let drops_at_start = udp::kernel_drops(local).unwrap_or(0);
    let rtcp_port = match sdp.as_ref().map(|d| d.rtcp) {
        Some(RtcpPort::Port(p)) => Some(p),
        _ => local.port().checked_add(1),
    };
    let rtcp_socket = if let (true, Some(port)) = (local.port() > 0, rtcp_port) {
        let mut a = local;
        a.set_port(port);
        let bound = match &membership {
            Some(m) => bind_group(port, m).and_then(UdpSocket::from_std),
            None => UdpSocket::bind(a).await,
        };
        match bound {
            Ok(s) => Some(s),
            Err(e) => {
                patchcord_devices::say!(
                    "patchcord-recv: warning: {}; RTCP accepted on the RTP port only",
                    bind_error(&a.to_string(), e)
                );
                None
            }
        }
    } else {
        None
    };

    // A socket bound to a group cannot send (its address is no source): receiver reports
    // to the senders of a group leave from a socket of their own.
    let report_socket = match &membership {
        Some(m) => {
            let any: SocketAddr = if m.group.is_ipv4() {
                (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            Some(
                UdpSocket::bind(any)
                    .await
                    .map_err(|e| format!("cannot open a socket for RTCP reports: {e}"))?,
            )
        }
        None => None,
    };

    let clock = HostClock::new();
    let channels = args.device.channels as usize;
    let payload = PayloadTypes::new(args.payload_type, args.red_payload_type)?;
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
        &args.jack.options("patchcord-recv"),
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
    args.jack.report("patchcord-recv", &opened);

    let mut stats_out = StatsSink::open(args.stats_json.as_deref()).map_err(|e| e.to_string())?;
    let timeline = match (&args.timeline, seg_rx) {
        (Some(p), Some(rx)) => Some(timeline::Timeline::create(p, rx)?),
        _ => None,
    };
    if !args.quiet {
        patchcord_devices::say!(
            "patchcord-recv: listening on {local} (RTCP also on {}) -> {} on {} | {channels} ch, {latency_text}, {} | SRTP {}",
            rtcp_socket.as_ref().and_then(|s| s.local_addr().ok()).map(|a| a.to_string()).unwrap_or("-".into()),
            opened.device_name,
            opened.host_name,
            payload.describe(),
            srtp_key.as_ref().map_or("off", |k| k.suite().name())
        );
    }

    // The network thread is on the audio path (arrival -> playout): real-time priority.
    if !args.device.no_realtime {
        if let Err(e) = patchcord_devices::realtime::promote_current_thread(480) {
            patchcord_devices::say!("patchcord-recv: note: network thread: {e}");
        }
    }
    let mut monitor = Monitor::new(
        snap_rx,
        report_rx,
        retired_rx,
        timeline,
        max_streams,
        callback_durations,
    );
    let mut side = NetSide {
        payload,
        playout: playout_cfg,
        counters: NetCounters {
            srtp_suite: srtp_key.as_ref().map(|k| k.suite().name()),
            ..NetCounters::default()
        },
        registry: Registry::new(
            max_streams,
            args.gain_db,
            args.source_gain.clone(),
            LoadGovernor::new(args.load_limit / 100.0),
        ),
        probation: Probation::new(64 + 2 * max_streams),
        allow: Allow::new(args.allow.clone()),
        feedback: Feedback::new(rand::random(), rtcp_cname()),
        srtp: srtp_key
            .as_ref()
            .map(|k| Unprotector::new(k, 2 * max_streams + 16)),
        clocks: HashMap::new(),
        early_rtcp: VecDeque::with_capacity(EARLY_RTCP),
        packets: packet_tx,
        control: control_tx,
        silent: Vec::with_capacity(max_streams),
        local,
        recv_buffer,
        drops_at_start,
    };
    let mut buf = vec![0u8; 65_536];
    let mut rtcp_buf = vec![0u8; 65_536];
    // what SRTP opens, and the SRTCP our reports become
    let mut plain = vec![0u8; 65_536];
    let mut report_protect = srtp_key.as_ref().map(Protector::new);
    let mut sealed = vec![0u8; 2048];
    let timeout_ns = (args.stream_timeout * 1e9) as i64;
    let xrun_count = || xruns.load(std::sync::atomic::Ordering::Relaxed);

    let stop_fut = wait_for_stop(args.duration);
    tokio::pin!(stop_fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut drain = tokio::time::interval(Duration::from_millis(20));
    // every fifth drain (100 ms) the dashboard's meters get their levels
    let mut drains = 0u64;
    let mut last_bytes = 0u64;
    // RTP rate received, the session bandwidth of the RTCP schedule (at least 16 kb/s)
    let mut session_bps = 16_000.0;
    let (_, first_report) = side
        .feedback
        .reports(clock.now_unix_ns(), &[], session_bps, rand::random());
    let mut next_report = tokio::time::Instant::now() + Duration::from_nanos(first_report as u64);

    let mut render_failed = false;
    let reason = loop {
        // senders left: the next round of reports comes sooner (RFC 3550 §6.3.4)
        if let Some(at) = side.feedback.take_rescheduled() {
            let wait = (at - clock.now_unix_ns()).max(0) as u64;
            next_report = tokio::time::Instant::now() + Duration::from_nanos(wait);
        }
        tokio::select! {
            r = &mut stop_fut => break r,
            res = socket.recv_from(&mut buf) => {
                let Ok((len, from)) = res else { continue };
                side.datagram(&buf[..len], clock.now_unix_ns(), from, &mut plain);
            }
            _ = tokio::time::sleep_until(next_report) => {
                let receptions = monitor.receptions();
                let (out, next) = side.feedback.reports(clock.now_unix_ns(), &receptions, session_bps, rand::random());
                for o in out {
                    let from_socket = match (&report_socket, o.via, &rtcp_socket) {
                        (Some(r), _, _) => r,
                        (None, Via::Rtcp, Some(s)) => s,
                        _ => &socket,
                    };
                    let datagram = match report_protect.as_mut() {
                        None => &o.packet[..],
                        Some(p) => match p.protect_rtcp(&o.packet, &mut sealed) {
                            Ok(n) => &sealed[..n],
                            Err(_) => {
                                side.feedback.report_send_errors += 1;
                                continue;
                            }
                        },
                    };
                    match from_socket.send_to(datagram, o.to).await {
                        Ok(_) => side.feedback.reports_sent += 1,
                        Err(_) => side.feedback.report_send_errors += 1,
                    }
                }
                next_report = tokio::time::Instant::now() + Duration::from_nanos(next.max(0) as u64);
            }
            res = async {
                match &rtcp_socket {
                    Some(s) => s.recv_from(&mut rtcp_buf).await,
                    None => std::future::pending().await,
                }
            } => {
                let Ok((len, from)) = res else { continue };
                side.counters.datagrams += 1;
                if !side.allowed(from) {
                    continue;
                }
                if let Some(d) = side.open(&rtcp_buf[..len], &mut plain) {
                    side.rtcp(d, clock.now_unix_ns(), from, Via::Rtcp);
                }
            }
            _ = drain.tick() => {
                monitor.drain(&side.clocks, &mut side.registry);
                side.shed_overload(clock.now_unix_ns());
                side.fade_out_silent(clock.now_unix_ns(), timeout_ns);
                drains += 1;
                if let Some(p) = publisher.as_ref().filter(|_| drains.is_multiple_of(5)) {
                    p.publish_levels(&monitor.live_levels());
                }
            }
            _ = tick.tick() => {
                if render_thread.as_ref().is_some_and(|t| t.has_died()) {
                    render_failed = true;
                    break StopReason::Terminated;
                }
                monitor.drain(&side.clocks, &mut side.registry);
                monitor.end_second();
                while let Ok(e) = err_rx.pop() {
                    patchcord_devices::say!("patchcord-recv: device error: {e}");
                }
                side.refresh_gauges();
                side.payload.end_second();
                let http = publisher.as_ref().map(Publisher::counters).unwrap_or_default();
                let s = monitor.stats(&side.context(xrun_count(), &playout_cfg, http), false);
                if let Some(w) = period_watch.observe(s.period_frames as f64) {
                    patchcord_devices::say!("patchcord-recv: {w}");
                }
                let bytes = s.payload_bytes;
                let bps = (bytes - last_bytes.min(bytes)) as f64 * 8.0;
                last_bytes = bytes;
                session_bps = bps.max(16_000.0);
                if !args.quiet {
                    status::print_status(&s, bps / 1000.0);
                }
                if let Err(e) = stats_out.write(&s) {
                    patchcord_devices::say!("patchcord-recv: stats output failed: {e}");
                }
                if let Some(p) = publisher.as_mut() {
                    p.publish(&s);
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
        patchcord_devices::say!("patchcord-recv: timeline file: {e}");
    }
    side.refresh_gauges();
    let http = publisher.as_ref().map(Publisher::counters).unwrap_or_default();
    let summary = monitor.stats(&side.context(xrun_count(), &playout_cfg, http), true);
    let _ = stats_out.write(&summary);
    if let Some(p) = publisher.as_mut() {
        p.publish(&summary);
    }
    status::print_summary(&summary, reason);
    if render_failed {
        return Err("the render thread (--render-ahead) stopped unexpectedly; see the message above".into());
    }
    Ok(())
}

/// RTCP items kept aside for SSRCs that have no stream yet (the last few).
const EARLY_RTCP: usize = 64;

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

/// What one RTCP packet said about one source.
#[derive(Debug, Clone, Copy)]
enum Said {
    /// A sender report.
    Report(SenderReport),
    /// An SDES chunk: whether its TOOL names patchcord-send.
    Tool { patchcord: bool },
}

/// One thing RTCP said about `ssrc`, and where and when it came from.
#[derive(Debug, Clone, Copy)]
struct RtcpItem {
    ssrc: u32,
    said: Said,
    arrival: i64,
    from: SocketAddr,
    via: Via,
}

/// The network side: everything the tokio thread owns to route datagrams to the callback.
struct NetSide {
    payload: PayloadTypes,
    playout: PlayoutConfig,
    counters: NetCounters,
    registry: Registry,
    probation: Probation,
    /// `--allow`: the networks heard.
    allow: Allow,
    /// RTCP kept about each stream's sender (from its own RTCP source only), and the
    /// receiver reports sent back.
    feedback: Feedback,
    /// `--srtp-key`: opens SRTP and SRTCP; what fails is counted here and goes no further.
    srtp: Option<Unprotector>,
    /// Latest sender report of each patchcord SSRC: RTP timestamp → capture instant.
    clocks: HashMap<u32, CaptureClock>,
    /// RTCP about SSRCs that have no stream yet (the last [`EARLY_RTCP`]): a sender report
    /// often comes before the first RTP packet (ffmpeg sends one first) or during
    /// probation. Taken when the SSRC passes probation, if it came from its RTCP source.
    early_rtcp: VecDeque<RtcpItem>,
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
    /// `--load-limit`: the newest streams fade out when the governor says the render time
    /// went over the limit.
    fn shed_overload(&mut self, now_ns: i64) {
        let n = self.registry.load.take_shed() as usize;
        for (slot, ssrc) in self.registry.newest(n) {
            if self.control.push(Control::Remove { slot, ssrc }).is_ok() {
                self.registry.shed(ssrc, now_ns);
                self.feedback.left(ssrc, now_ns);
            } else {
                self.counters.control_queue_full += 1;
            }
        }
    }

    fn fade_out_silent(&mut self, now_ns: i64, timeout_ns: i64) {
        self.registry.silent(now_ns, timeout_ns, &mut self.silent);
        for &(slot, ssrc) in &self.silent {
            if self.control.push(Control::Remove { slot, ssrc }).is_ok() {
                self.registry.forget(ssrc);
                self.feedback.left(ssrc, now_ns);
            } else {
                self.counters.control_queue_full += 1;
            }
        }
    }

    /// The gauges of the stats, read just before they are written: the socket's kernel
    /// drops and buffer size, and the packets waiting in probation.
    fn refresh_gauges(&mut self) {
        self.counters.in_probation = self.probation.waiting_packets();
        self.counters.socket_drops =
            udp::kernel_drops(self.local).map(|d| d.saturating_sub(self.drops_at_start));
        self.counters.socket_buffer_bytes = self.recv_buffer;
    }

    /// What the stats record reads of the network side.
    fn context<'a>(&'a self, xruns: u64, cfg: &'a PlayoutConfig, http: HttpCounters) -> Context<'a> {
        Context {
            net: &self.counters,
            registry: &self.registry,
            feedback: &self.feedback,
            xruns,
            cfg,
            hint: self.payload.hint(),
            http,
        }
    }

    /// `--allow`: whether datagrams from `from` are heard (counted when not).
    fn allowed(&mut self, from: SocketAddr) -> bool {
        if self.allow.hears(from.ip()) {
            return true;
        }
        self.counters.not_allowed += 1;
        false
    }

    /// With `--srtp-key`: `d` authenticated and decrypted into `plain`, or `None` when it
    /// is refused (counted). Without: `d` itself.
    fn open<'a>(&mut self, d: &'a [u8], plain: &'a mut [u8]) -> Option<&'a [u8]> {
        let Some(srtp) = self.srtp.as_mut() else {
            return Some(d);
        };
        match srtp.unprotect(d, plain) {
            Ok(Opened::Rtp(n) | Opened::Rtcp(n)) => Some(&plain[..n]),
            Err(r) => {
                self.counters.srtp.count(r);
                None
            }
        }
    }

    /// A datagram on the RTP socket, in this order: `--allow`; SRTP (`--srtp-key`:
    /// authentication, replay, decryption; plain packets are refused); RTCP (multiplexed)
    /// to [`NetSide::rtcp`]; the payload type; then source validation (a playing stream's
    /// binding and continuity, or probation for a new SSRC). `plain` is scratch space
    /// for what SRTP opens.
    fn datagram(&mut self, d: &[u8], arrival: i64, from: SocketAddr, plain: &mut [u8]) {
        self.counters.datagrams += 1;
        if !self.allowed(from) {
            return;
        }
        let Some(d) = self.open(d, plain) else {
            return;
        };
        if is_rtcp(d) {
            self.rtcp(d, arrival, from, Via::Rtp);
            return;
        }
        let header = match self.payload.validate(d) {
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
            payload,
            ..
        } = self;
        if let Some(entry) = registry.get_mut(ssrc) {
            let slot = entry.slot;
            entry
                .source
                .check(&meta, from, d, &mut counters.source, &mut |dg, at, restart| {
                    hand_over(packets, &mut counters.queue_full, payload, slot, dg, at, restart)
                });
            return;
        }
        if registry.still_refused(ssrc, arrival) {
            return;
        }
        let Some(admission) = self.probation.offer(&meta, from, d, &mut self.counters.source) else {
            return;
        };
        // A new sender passed probation: its stream is allocated here, off the audio thread.
        let waiting = admission.earlier.len() as u64 + 1;
        let (slot, gain_db) = match self.registry.free_slot(ssrc, from) {
            Ok(s) => s,
            Err(why) => {
                self.registry.refuse(ssrc, waiting, why);
                return;
            }
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
        self.registry.started(ssrc, slot, admission.source);
        self.take_early_rtcp(ssrc);
        let held = admission
            .earlier
            .iter()
            .map(|h| (&h.datagram[..], h.meta.arrival_ns));
        for (dg, at) in held.chain([(d, arrival)]) {
            hand_over(
                &mut self.packets,
                &mut self.counters.queue_full,
                &self.payload,
                slot,
                dg,
                at,
                false,
            );
        }
    }

    /// A compound RTCP packet that arrived at `arrival` from `from`, on the socket `via`.
    /// What it says about a playing stream (sender report, SDES, BYE) counts only from the
    /// stream's own RTCP source, its RTP address or the next port (see
    /// `patchcord_common::source`); from anywhere else it is counted (`rtcp_wrong_source`)
    /// and used for nothing: not for the latency, not for receiver reports. What it says
    /// about an SSRC with no stream yet is kept aside until that SSRC passes probation.
    fn rtcp(&mut self, d: &[u8], arrival: i64, from: SocketAddr, via: Via) {
        self.counters.rtcp += 1;
        let mut report = None;
        for p in parse_compound(d) {
            let (ssrc, said) = match p {
                Ok(RtcpPacket::SenderReport(sr, _)) => {
                    self.counters.sender_reports += 1;
                    (sr.ssrc, Said::Report(sr))
                }
                Ok(RtcpPacket::Sdes { ssrc, tool, .. }) => (
                    ssrc,
                    Said::Tool {
                        patchcord: feedback::is_patchcord_tool(tool),
                    },
                ),
                Ok(RtcpPacket::Bye { ssrcs, count }) => {
                    self.counters.byes += 1;
                    for &ssrc in &ssrcs[..count.min(31)] {
                        self.bye(ssrc, from, arrival);
                    }
                    continue;
                }
                Ok(_) => continue,
                // shorter than an RTP header and not RTCP either: a truncated datagram
                Err(_) if d.len() < RTP_HEADER_LEN => {
                    self.counters.dropped[DropReason::Truncated.index()] += 1;
                    continue;
                }
                Err(_) => {
                    self.counters.rtcp_malformed += 1;
                    continue;
                }
            };
            let item = RtcpItem {
                ssrc,
                said,
                arrival,
                from,
                via,
            };
            match self.registry.get(ssrc) {
                Some(e) if e.source.is_rtcp_source(from) => report = self.take(item).or(report),
                Some(_) => self.counters.rtcp_wrong_source += 1,
                None => {
                    if self.early_rtcp.len() == EARLY_RTCP {
                        self.early_rtcp.pop_front();
                    }
                    self.early_rtcp.push_back(item);
                }
            }
        }
        // after the whole compound packet: its SDES TOOL comes after its sender report
        if let Some(sr) = report {
            self.capture_clock(&sr);
        }
    }

    /// A BYE for `ssrc` from `from`: the stream ends if it came from its RTCP source.
    fn bye(&mut self, ssrc: u32, from: SocketAddr, now_ns: i64) {
        match self.registry.get(ssrc) {
            Some(e) if e.source.is_rtcp_source(from) => {
                let bye = PacketSlot::bye(e.slot, ssrc);
                self.feedback.left(ssrc, now_ns);
                if self.packets.push(bye).is_err() {
                    self.counters.queue_full += 1;
                }
            }
            // a sender on probation that leaves: nothing to end
            _ if self.probation.is_rtcp_source(ssrc, from) => {}
            _ => self.counters.rtcp_wrong_source += 1,
        }
    }

    /// Take an item of RTCP from the stream's own RTCP source; returns its sender report.
    fn take(&mut self, i: RtcpItem) -> Option<SenderReport> {
        match i.said {
            Said::Report(sr) => {
                self.feedback
                    .sender_report(i.ssrc, sr.ntp, i.arrival, i.from, i.via);
                Some(sr)
            }
            Said::Tool { patchcord } => {
                self.feedback.sdes(i.ssrc, patchcord, i.arrival, i.from, i.via);
                None
            }
        }
    }

    /// The SSRC `ssrc` passed probation: the RTCP kept aside for it from its RTCP source is
    /// taken, in the order it came; what came from elsewhere is counted
    /// (`rtcp_wrong_source`) and dropped. What was known of the SSRC from another source
    /// (an earlier stream of the same SSRC) is forgotten.
    fn take_early_rtcp(&mut self, ssrc: u32) {
        let Some(source) = self.registry.get(ssrc).map(|e| e.source.address()) else {
            return;
        };
        if !self
            .feedback
            .rtcp_source(ssrc)
            .is_some_and(|a| is_rtcp_source(source, a))
        {
            self.feedback.forget(ssrc);
            self.clocks.remove(&ssrc);
        }
        let (mine, elsewhere): (Vec<RtcpItem>, Vec<RtcpItem>) = self
            .early_rtcp
            .iter()
            .filter(|i| i.ssrc == ssrc)
            .partition(|i| is_rtcp_source(source, i.from));
        self.counters.rtcp_wrong_source += elsewhere.len() as u64;
        self.early_rtcp.retain(|i| i.ssrc != ssrc);
        let mut report = None;
        for i in mine {
            report = self.take(i).or(report);
        }
        if let Some(sr) = report {
            self.capture_clock(&sr);
        }
    }

    /// A sender report taken: only a patchcord sender's (its SDES TOOL says so) pairs RTP
    /// time with a *capture* instant on a clock this host can compare, so only for it is
    /// the latency end to end.
    fn capture_clock(&mut self, sr: &SenderReport) {
        if self.feedback.is_patchcord(sr.ssrc) {
            if self.clocks.len() < 4096 || self.clocks.contains_key(&sr.ssrc) {
                self.clocks.insert(sr.ssrc, CaptureClock::from_sender_report(sr));
            }
        } else {
            self.clocks.remove(&sr.ssrc);
        }
    }
}

/// Hand a packet (parsed again from its datagram) to the callback for the stream in `slot`;
/// `restart`: the stream starts a new sequence with it.
fn hand_over(
    packets: &mut rtrb::Producer<PacketSlot>,
    queue_full: &mut u64,
    payload: &PayloadTypes,
    slot: u16,
    d: &[u8],
    arrival: i64,
    restart: bool,
) {
    // it validated when it arrived
    let Ok((header, red)) = payload.parse(d) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `Args` from `argv` (no program name), with `--config` naming a file holding `toml`
    /// when it is given; printed, with the file's name left out.
    fn parsed(toml: Option<&str>, argv: &[&str]) -> String {
        let mut all: Vec<std::ffi::OsString> = vec!["patchcord-recv".into()];
        if let Some(text) = toml {
            let path =
                std::env::temp_dir().join(format!("patchcord-recv-config-{}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            all.extend(["--config".into(), path.into()]);
        }
        all.extend(argv.iter().map(Into::into));
        let matches =
            patchcord_devices::config_file::matches_from(<Args as clap::CommandFactory>::command(), all)
                .unwrap_or_else(|e| panic!("{e}"));
        let mut args = <Args as clap::FromArgMatches>::from_arg_matches(&matches).unwrap();
        args.setup.config = None;
        format!("{args:?}")
    }

    #[test]
    fn a_config_file_reads_as_the_same_flags() {
        let file = r#"
            listen = "127.0.0.1:6000"
            iface = "1"
            source = "10.0.0.9"
            allow = ["10.0.0.0/8", "fd00::/8"]
            host = "virtual"
            device = "null"
            channels = 1
            period = 256
            clock-ppm = -5.5
            no-realtime = true
            connect = ["system:playback_1", "system:playback_2"]
            latency = "20"
            latency-min = 3
            latency-max = 100.5
            glitch-budget = 2
            payload-type = 97
            red-payload-type = 100
            max-streams = 4
            gain-db = -6
            source-gain = ["0x1234=-3", "10.0.0.1=2"]
            stream-timeout = 2
            duration = 3
            stats-json = "-"
            timeline = "t.csv"
            render-ahead = 2
            quiet = true
            http = "[::1]:9900"
        "#;
        let flags = [
            "--listen=127.0.0.1:6000",
            "--iface",
            "1",
            "--source",
            "10.0.0.9",
            "--allow",
            "10.0.0.0/8",
            "fd00::/8",
            "--host",
            "virtual",
            "--device",
            "null",
            "--channels",
            "1",
            "--period",
            "256",
            "--clock-ppm",
            "-5.5",
            "--no-realtime",
            "--connect",
            "system:playback_1",
            "system:playback_2",
            "--latency",
            "20",
            "--latency-min",
            "3",
            "--latency-max",
            "100.5",
            "--glitch-budget",
            "2",
            "--payload-type",
            "97",
            "--red-payload-type",
            "100",
            "--max-streams",
            "4",
            "--gain-db",
            "-6",
            "--source-gain",
            "0x1234=-3",
            "--source-gain",
            "10.0.0.1=2",
            "--stream-timeout",
            "2",
            "--duration",
            "3",
            "--stats-json",
            "-",
            "--timeline",
            "t.csv",
            "--render-ahead",
            "2",
            "-q",
            "--http",
            "[::1]:9900",
        ];
        let from_file = parsed(Some(file), &[]);
        assert_eq!(from_file, parsed(None, &flags));
        assert_ne!(from_file, parsed(None, &[]), "the file changed nothing");
        // the command line wins, for one value and for a whole list
        let over = parsed(Some(file), &["--latency-min", "7", "--allow", "192.168.0.0/16"]);
        let mut expected = flags.to_vec();
        let min = expected.iter().position(|f| *f == "--latency-min").unwrap();
        expected[min + 1] = "7";
        expected.splice(6..8, ["192.168.0.0/16"]);
        assert_eq!(over, parsed(None, &expected));
    }

    #[test]
    fn man_page_and_completions_carry_every_flag() {
        use patchcord_devices::generate::{missing_flags, Generate};
        for kind in [
            Generate::Man,
            Generate::CompleteBash,
            Generate::CompleteZsh,
            Generate::CompleteFish,
        ] {
            let missing = missing_flags(kind, <Args as clap::CommandFactory>::command());
            assert!(missing.is_empty(), "{kind:?} lacks {missing:?}");
        }
    }
}
