//! `patchcord-send`: capture audio from a device, encode it with Opus, send it as RTP
//! (RFC 3550 / RFC 7587) over UDP.
//!
//! Threads: the cpal input callback (copy only) → rtrb sample ring → encoder thread
//! (Opus + RTP + UDP send + RTCP SR) ; the main thread runs a small tokio runtime for
//! name resolution, the once-a-second stats record (`stats.rs`: status line, JSON lines,
//! the `--http` endpoint on a thread of its own) and signals.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

mod capture;
mod encoder;
mod preset;
mod reports;
mod stats;

/// Tests run the real callbacks under an allocator that counts allocations made inside
/// `assert_no_alloc` scopes.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser};
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::SampleFormat;
use patchcord_common::level::meter_text;
use patchcord_common::red::{RedEncoder, MAX_RED_BLOCK_LEN, MAX_RED_PAYLOAD_LEN};
use patchcord_common::rtp::Packetizer;
use patchcord_common::sdp::{Redundancy, RtcpPort, StreamDescription};
use patchcord_devices::allow::{parse_allow, Allow, IpNet};
use patchcord_devices::app::{
    choose_config, parse_frame_ms, parse_seconds, rtcp_cname, run_main, wait_for_stop, DeviceArgs, SetupArgs,
    StatsSink, StopReason,
};
use patchcord_devices::clock::HostClock;
use patchcord_devices::jack_args::JackArgs;
use patchcord_devices::net::{configure_sender, parse_interface, Interface};
use patchcord_devices::server::PeriodWatch;
use patchcord_devices::srtp_args::SrtpArgs;
use patchcord_devices::virtual_host::wav_input_note;
use patchcord_devices::{open_device, Direction};
use patchcord_web::Publisher;

use capture::{CaptureCounters, CaptureMark, CaptureSide};
use encoder::{EncoderConfig, EncoderStats, EncoderThread, SentReport};
use patchcord_common::srtp::{Protector, Unprotector};
use reports::{ReceiverView, ReportReader, Reports, MAX_RECEIVERS};
use stats::{Identity, StatsReader};

#[derive(Parser, Debug)]
#[command(
    name = "patchcord-send",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PATCHCORD_COMMIT"), ")"),
    about = "Capture audio and send it as Opus over RTP/UDP",
    // a negative number is a value (reported against its range), not an unknown flag
    allow_negative_numbers = true
)]
struct Args {
    /// Destination HOST:PORT (IPv4, [IPv6] or a host name), e.g. 192.168.1.20:5004.
    #[arg(long, value_name = "HOST:PORT", required_unless_present_any = ["list_devices", "generate"])]
    to: Option<String>,
    #[command(flatten)]
    device: DeviceArgs,
    #[command(flatten)]
    jack: JackArgs,
    /// Opus frame duration in ms: 2.5, 5, 10, 20, 40 or 60 (default 5; 2.5 with
    /// --low-latency, 10 with --fec).
    #[arg(long, default_value = preset::DEFAULT_FRAME_MS, value_parser = parse_frame_ms)]
    frame_ms: f64,
    /// Opus bitrate in bits per second (6000..=510000; 256000 with --low-latency).
    #[arg(long, default_value_t = preset::DEFAULT_BITRATE, value_parser = clap::value_parser!(i32).range(6000..=510_000))]
    bitrate: i32,
    /// Opus application: audio, voip or lowdelay (CELT only: lowest delay, no in-band FEC;
    /// the default, except with --fec, which makes it audio).
    #[arg(long, default_value = preset::DEFAULT_APPLICATION, value_parser = ["audio", "voip", "lowdelay"])]
    application: String,
    /// Enable Opus in-band FEC: a lower-quality copy of each frame in the next packet. It
    /// lives in Opus's SILK/hybrid modes, so unless given, --frame-ms becomes 10 and
    /// --application audio (about 9 ms more delay than the default).
    #[arg(long)]
    fec: bool,
    /// Expected packet loss in percent, tunes how much FEC the encoder adds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=100))]
    expected_loss: i32,
    /// Opus encoder complexity 0..=10.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i32).range(0..=10))]
    complexity: i32,
    /// RTP payload type (dynamic range 96..=127).
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u8).range(96..=127))]
    payload_type: u8,
    /// RFC 2198 redundancy (0..=3): each packet also carries the previous N Opus frames, so
    /// up to N consecutive lost packets are recovered exactly; costs about (N+1)× the
    /// bitrate. The loss protection for --application lowdelay, which has no Opus FEC.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=3))]
    redundancy: u8,
    /// RTP payload type of the RED packets sent with --redundancy (96..=127, not the
    /// --payload-type, which stays the type of the Opus blocks inside).
    #[arg(long, value_name = "PT", default_value_t = 121, value_parser = clap::value_parser!(u8).range(96..=127))]
    red_payload_type: u8,
    /// Time to live (IPv4) / hop limit (IPv6) of the packets; for a multicast group the
    /// system default is 1 (this network only).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=255))]
    ttl: Option<u32>,
    /// Interface that carries the packets to a multicast group: a name (eth0), an index,
    /// or (IPv4) one of its addresses.
    #[arg(long, value_name = "IFACE", value_parser = parse_interface)]
    multicast_if: Option<Interface>,
    /// Send RTCP to the RTP port (RFC 5761 mux) instead of port + 1.
    #[arg(long)]
    rtcp_mux: bool,
    /// Hear receiver reports only from these networks (CIDR, e.g. 192.168.1.0/24, or one
    /// address); RTCP from anywhere else is counted (`rtcp_not_allowed`) and ignored.
    /// Default: every address.
    #[arg(long, value_name = "CIDR", num_args = 1.., value_parser = parse_allow)]
    allow: Vec<IpNet>,
    /// Do not send RTCP at all.
    #[arg(long, conflicts_with = "rtcp_mux")]
    no_rtcp: bool,
    /// Write an SDP description (RFC 4566, RFC 7587) of exactly what is sent to FILE (or -
    /// for standard output) before the first packet: for ffmpeg (`-protocol_whitelist
    /// file,udp,rtp -i FILE`), GStreamer (`filesrc ! sdpdemux`) or `patchcord-recv --sdp`.
    #[arg(long, value_name = "FILE|-")]
    sdp: Option<String>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<f64>,
    /// Write statistics as JSON lines to PATH (or - for standard output), once a second
    /// and a final summary.
    #[arg(long, value_name = "PATH|-")]
    stats_json: Option<String>,
    /// No status line on stderr.
    #[arg(long, short)]
    quiet: bool,
    /// Shortest delay: 2.5 ms frames, --application lowdelay, 256 kb/s (each overridden
    /// by its own flag when given).
    #[arg(long)]
    low_latency: bool,
    #[command(flatten)]
    http: patchcord_web::HttpArgs,
    #[command(flatten)]
    srtp: SrtpArgs,
    #[command(flatten)]
    setup: SetupArgs,
}

fn main() -> ExitCode {
    let matches = patchcord_devices::config_file::matches(Args::command()).unwrap_or_else(|e| e.exit());
    let mut args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    if let Some(kind) = args.setup.generate {
        return patchcord_devices::generate::print(kind, Args::command());
    }
    let profile = match (args.low_latency, args.fec) {
        (true, _) => Some(preset::LOW_LATENCY),
        (false, true) => Some(preset::FEC),
        (false, false) => None,
    };
    if let Some(profile) = profile {
        let choice = preset::EncoderChoice {
            frame_ms: &mut args.frame_ms,
            application: &mut args.application,
            bitrate: &mut args.bitrate,
        };
        preset::apply(profile, &matches, choice);
    }
    let device = args.device.clone();
    run_main("patchcord-send", &device, move || run(args))
}

async fn resolve(to: &str) -> Result<SocketAddr, String> {
    let mut addrs = tokio::net::lookup_host(to).await.map_err(|e| {
        format!("bad destination '{to}': {e} (expected HOST:PORT, e.g. 127.0.0.1:5004 or [::1]:5004)")
    })?;
    addrs
        .next()
        .ok_or_else(|| format!("destination '{to}' resolved to no address"))
}

/// SDES TOOL and SDP `a=tool`: a receiver that reads it knows the sender reports capture
/// instants (its latency is then capture → playback).
const TOOL: &str = concat!("patchcord-send ", env!("CARGO_PKG_VERSION"));

/// The address this host sends to `dest` from (the route's source, through `iface` for a
/// group), for the SDP.
fn source_address(dest: SocketAddr, iface: Option<Interface>) -> Option<std::net::IpAddr> {
    let any: SocketAddr = if dest.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let probe = UdpSocket::bind(any).ok()?;
    configure_sender(socket2::SockRef::from(&probe), dest, None, iface).ok()?;
    probe.connect(dest).ok()?;
    probe
        .local_addr()
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_unspecified())
}

/// Write the SDP to standard output, or to a file that appears whole (written beside it,
/// then renamed): a reader polling for it never sees half a description.
fn write_sdp(path: &str, text: &str) -> Result<(), String> {
    if path == "-" {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        return out
            .write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| format!("cannot write the SDP to standard output: {e}"));
    }
    let tmp = format!("{path}.part");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write the SDP to '{path}': {e}"))
}

async fn run(args: Args) -> Result<(), String> {
    let mut publisher = patchcord_web::server::start(&args.http, "patchcord-send")?;
    if let Some(p) = publisher.as_ref().filter(|_| !args.quiet) {
        patchcord_devices::say!(
            "patchcord-send: dashboard on http://{}/ (metrics at /metrics)",
            p.local_addr()
        );
    }
    if args.sdp.as_deref() == Some("-") && args.stats_json.as_deref() == Some("-") {
        return Err("--sdp - and --stats-json - both want standard output; give one a file".into());
    }
    let to = args.to.as_deref().ok_or("missing --to HOST:PORT")?;
    let redundancy = usize::from(args.redundancy);
    if redundancy > 0 && args.red_payload_type == args.payload_type {
        return Err(format!(
            "--red-payload-type {} is also the --payload-type: RED packets need a payload type of their own (e.g. --red-payload-type {})",
            args.red_payload_type,
            if args.payload_type == 127 { 126 } else { args.payload_type + 1 }
        ));
    }
    let dest = resolve(to).await?;
    if dest.port() == 0 {
        return Err(format!("bad destination '{to}': port 0"));
    }
    let rtcp_dest = if args.no_rtcp {
        None
    } else if args.rtcp_mux {
        Some(dest)
    } else {
        let mut d = dest;
        d.set_port(
            dest.port()
                .checked_add(1)
                .ok_or("RTP port 65535 leaves no port for RTCP; use --rtcp-mux")?,
        );
        Some(d)
    };
    let clock = HostClock::new();
    let channels = args.device.channels as usize;
    let frame_samples = (args.frame_ms * 48.0).round() as usize;

    // Encoder
    let app = match args.application.as_str() {
        "voip" => opus::Application::Voip,
        "lowdelay" => opus::Application::LowDelay,
        _ => opus::Application::Audio,
    };
    let opus_channels = if channels == 2 {
        opus::Channels::Stereo
    } else {
        opus::Channels::Mono
    };
    let mut enc = opus::Encoder::new(48_000, opus_channels, app).map_err(|e| format!("Opus encoder: {e}"))?;
    enc.set_bitrate(opus::Bitrate::Bits(args.bitrate))
        .map_err(|e| format!("Opus bitrate: {e}"))?;
    enc.set_complexity(args.complexity)
        .map_err(|e| format!("Opus complexity: {e}"))?;
    if args.fec {
        enc.set_inband_fec(true).map_err(|e| format!("Opus FEC: {e}"))?;
        enc.set_packet_loss_perc(args.expected_loss)
            .map_err(|e| format!("Opus FEC: {e}"))?;
        if app == opus::Application::LowDelay {
            patchcord_devices::say!(
                "patchcord-send: note: --fec has no effect with --application lowdelay or --low-latency (CELT carries no FEC); use --redundancy N for exact copies"
            );
        }
    }
    if args.fec && redundancy > 0 {
        patchcord_devices::say!(
            "patchcord-send: note: --fec and --redundancy together: both add bitrate; FEC repairs a single loss with a lower-quality copy (SILK/hybrid only), RED up to {redundancy} consecutive losses exactly"
        );
    }
    let red = if redundancy > 0 {
        // Only whole frames that fit in one datagram (1488 bytes of RED payload) and in the
        // 10-bit block length (1023 bytes) can be repeated; say so when the bitrate is too high.
        let frame_bytes = args.bitrate as f64 * args.frame_ms / 8000.0;
        let fit = ((MAX_RED_PAYLOAD_LEN as f64 - 1.0 - frame_bytes) / (frame_bytes + 4.0)).floor();
        if frame_bytes > MAX_RED_BLOCK_LEN as f64 || fit < redundancy as f64 {
            patchcord_devices::say!(
                "patchcord-send: note: at {} kb/s with {} ms frames (~{frame_bytes:.0} bytes each) only {} of {redundancy} redundant frames fit in a packet; lower --bitrate or --frame-ms",
                args.bitrate / 1000,
                args.frame_ms,
                if frame_bytes > MAX_RED_BLOCK_LEN as f64 { 0.0 } else { fit.max(0.0) }
            );
        }
        Some(RedEncoder::new(redundancy).map_err(|e| format!("--redundancy: {e}"))?)
    } else {
        None
    };
    let rtp_payload_type = if red.is_some() {
        args.red_payload_type
    } else {
        args.payload_type
    };
    let lookahead = enc
        .get_lookahead()
        .map_err(|e| format!("Opus lookahead: {e}"))?
        .max(0) as u32;

    // Socket
    let bind: SocketAddr = if dest.is_ipv6() {
        "[::]:0".parse()
    } else {
        "0.0.0.0:0".parse()
    }
    .map_err(|e| format!("{e}"))?;
    let socket = UdpSocket::bind(bind).map_err(|e| format!("cannot open UDP socket: {e}"))?;
    configure_sender(socket2::SockRef::from(&socket), dest, args.ttl, args.multicast_if)
        .map_err(|e| format!("cannot send to {dest}: {e}"))?;

    let srtp_key = args.srtp.master_key()?;
    // RTP identity: random SSRC, sequence and timestamp start (RFC 3550 §5.1).
    let ssrc: u32 = rand::random();
    let seq0: u16 = rand::random();
    let ts0: u32 = rand::random();
    let packetizer = Packetizer::new(ssrc, rtp_payload_type, seq0, ts0);
    if let Some(path) = &args.sdp {
        let description = StreamDescription {
            destination: dest.ip(),
            port: dest.port(),
            ttl: dest.ip().is_multicast().then_some(args.ttl.unwrap_or(1) as u8),
            source: source_address(dest, args.multicast_if),
            source_filter: dest.ip().is_multicast(),
            rtcp: match rtcp_dest {
                None => RtcpPort::None,
                Some(d) if d == dest => RtcpPort::Mux,
                Some(d) => RtcpPort::Port(d.port()),
            },
            opus_payload_type: args.payload_type,
            red: (redundancy > 0).then_some(Redundancy {
                payload_type: args.red_payload_type,
                depth: redundancy,
            }),
            channels: channels as u16,
            ptime_ms: Some(args.frame_ms),
            max_average_bitrate: Some(args.bitrate as u32),
            inband_fec: args.fec && app != opus::Application::LowDelay,
            crypto: srtp_key.clone(),
        };
        let text = description.to_sdp(u64::from(ssrc), TOOL);
        write_sdp(path, &text)?;
    }

    // Device
    let opened = open_device(
        args.device.host,
        args.device.device.as_deref(),
        Direction::Input,
        args.device.virtual_options(),
        &args.jack.options("patchcord-send"),
    )
    .map_err(|e| e.to_string())?;
    let (config, format) = choose_config(&opened, Direction::Input, channels, args.device.period)?;
    let mut period_watch = PeriodWatch::of(&config);
    if let Some(note) = wav_input_note(&opened.device_name, config.channels).filter(|_| opened.is_virtual) {
        patchcord_devices::say!("patchcord-send: note: {}: {note}", opened.device_name);
    }

    // Rings between the audio thread and the encoder: one second of samples.
    let (sample_tx, sample_rx) = rtrb::RingBuffer::<f32>::new(48_000 * channels);
    let (mark_tx, mark_rx) = rtrb::RingBuffer::<CaptureMark>::new(1024);
    let (err_tx, mut err_rx) = rtrb::RingBuffer::<cpal::Error>::new(64);
    let (sent_tx, sent_rx) = rtrb::RingBuffer::<SentReport>::new(16);
    let capture_counters = Arc::new(CaptureCounters::default());
    let enc_stats = Arc::new(EncoderStats::default());
    let stop = Arc::new(AtomicBool::new(false));

    // Receiver reports come back to the socket our RTCP leaves from.
    let reports = Arc::new(Reports::default());
    let report_reader = match rtcp_dest {
        None => None,
        Some(_) => {
            let reader = ReportReader {
                socket: socket
                    .try_clone()
                    .map_err(|e| format!("cannot share the UDP socket: {e}"))?,
                ssrc,
                clock,
                allow: Allow::new(args.allow.clone()),
                sent: sent_rx,
                reports: reports.clone(),
                stop: stop.clone(),
                srtp: srtp_key.as_ref().map(|k| Unprotector::new(k, MAX_RECEIVERS)),
            };
            let handle = std::thread::Builder::new()
                .name("patchcord-rtcp".into())
                .spawn(move || reader.run())
                .map_err(|e| format!("cannot start the RTCP thread: {e}"))?;
            Some(handle)
        }
    };

    let encoder_thread = EncoderThread {
        cfg: EncoderConfig {
            channels,
            frame_samples,
            packetizer,
            encoder: enc,
            lookahead_samples: lookahead,
            socket,
            rtp_dest: dest,
            rtcp_dest,
            clock,
            red,
            opus_payload_type: args.payload_type,
            cname: rtcp_cname(),
            tool: TOOL,
            reports_sent: sent_tx,
            srtp: srtp_key.as_ref().map(Protector::new),
        },
        samples: sample_rx,
        marks: mark_rx,
        capture: capture_counters.clone(),
        stats: enc_stats.clone(),
        stop: stop.clone(),
    };
    let no_realtime = args.device.no_realtime;
    let encoder_handle = std::thread::Builder::new()
        .name("patchcord-encoder".into())
        .spawn(move || {
            if !no_realtime {
                if let Err(e) = patchcord_devices::realtime::promote_current_thread(frame_samples as u32) {
                    patchcord_devices::say!("patchcord-send: note: encoder thread: {e}");
                }
            }
            encoder_thread.run()
        })
        .map_err(|e| format!("cannot start encoder thread: {e}"))?;

    let mut side = CaptureSide {
        samples: sample_tx,
        marks: mark_tx,
        channels,
        clock,
        counters: capture_counters.clone(),
        encoder: encoder_handle.thread().clone(),
        frame_index: 0,
    };
    let xruns = capture_counters.clone();
    let mut err_tx = err_tx;
    let err_cb = move |e: cpal::Error| {
        if e.kind() == cpal::ErrorKind::Xrun {
            xruns.xruns.fetch_add(1, Ordering::Relaxed);
        } else {
            let _ = err_tx.push(e);
        }
    };
    let build = match format {
        SampleFormat::I16 => opened.device.build_input_stream::<i16, _, _>(
            config,
            move |data, info| side.on_input(data, info, |s| s as f32 / 32768.0),
            err_cb,
            None,
        ),
        _ => opened.device.build_input_stream::<f32, _, _>(
            config,
            move |data, info| side.on_input(data, info, |s| s),
            err_cb,
            None,
        ),
    };
    let stream = build.map_err(|e| {
        format!(
            "cannot open input device '{}' on {}: {e}",
            opened.device_name, opened.host_name
        )
    })?;
    stream
        .play()
        .map_err(|e| format!("cannot start input device '{}': {e}", opened.device_name))?;
    args.jack.report("patchcord-send", &opened);

    let mut stats_out = StatsSink::open(args.stats_json.as_deref()).map_err(|e| e.to_string())?;
    if !args.quiet {
        patchcord_devices::say!(
            "patchcord-send: {} on {} -> {dest} | {channels} ch, {} ms frames, {} kb/s, {}{} | SSRC {ssrc:08x}, PT {}, {} | RTCP {} | SRTP {}",
            opened.device_name,
            opened.host_name,
            args.frame_ms,
            args.bitrate / 1000,
            args.application,
            if args.fec { " +FEC" } else { "" },
            args.payload_type,
            if redundancy > 0 {
                format!("RED {redundancy} (PT {}, ~{}x bitrate)", args.red_payload_type, redundancy + 1)
            } else {
                "RED off".to_string()
            },
            match rtcp_dest {
                None => "off".to_string(),
                Some(d) => d.to_string(),
            },
            srtp_key.as_ref().map_or("off", |k| k.suite().name())
        );
    }

    let mut reader = StatsReader::new(
        Identity {
            ssrc,
            initial_timestamp: ts0,
            initial_sequence: seq0,
            lookahead_samples: lookahead,
            frame_samples,
            redundancy,
            red_payload_type: (redundancy > 0).then_some(args.red_payload_type),
            srtp: srtp_key.as_ref().map(|k| k.suite().name()),
        },
        enc_stats.clone(),
        capture_counters.clone(),
        reports.clone(),
    );

    let stop_fut = wait_for_stop(args.duration);
    tokio::pin!(stop_fut);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.tick().await;
    let mut clipped_before = 0;
    // the dashboard's meters get the capture levels ten times a second
    let mut meters = tokio::time::interval(std::time::Duration::from_millis(100));
    let reason = loop {
        tokio::select! {
            r = &mut stop_fut => break r,
            _ = meters.tick(), if publisher.is_some() => {
                if let Some(p) = publisher.as_ref() {
                    p.publish_levels(&reader.live_levels());
                }
            }
            _ = tick.tick() => {
                while let Ok(e) = err_rx.pop() {
                    patchcord_devices::say!("patchcord-send: device error: {e}");
                }
                let s = reader.record(false, publisher.as_ref().map(Publisher::counters).unwrap_or_default());
                let callbacks = capture_counters.callbacks.load(Ordering::Relaxed).max(1);
                if let Some(w) = period_watch.observe(s.frames_captured as f64 / callbacks as f64) {
                    patchcord_devices::say!("patchcord-send: {w}");
                }
                if !args.quiet {
                    patchcord_devices::say!(
                        "send {:>6.1}s | packets {:>7} | {:>6.1} kb/s | overruns {} | xruns {} | gaps {} ({:.0} ms) | send errors {} | encode mean {:.0} us max {:.0} us | in {} | {}",
                        s.t,
                        s.packets_sent,
                        s.send_kbps,
                        s.ring_overruns,
                        s.xruns,
                        s.capture_gaps,
                        s.capture_gap_ms,
                        s.send_errors,
                        s.encode_us_mean,
                        s.encode_us_max,
                        meter_text(s.rms_dbfs, s.peak_dbfs, s.clipped_samples > clipped_before),
                        receivers_text(&s.receivers),
                    );
                }
                clipped_before = s.clipped_samples;
                if let Err(e) = stats_out.write(&s) {
                    patchcord_devices::say!("patchcord-send: stats output failed: {e}");
                }
                if let Some(p) = publisher.as_mut() {
                    p.publish(&s);
                }
            }
        }
    };
    // Stop capture first, then let the encoder drain the ring and send BYE.
    drop(stream);
    stop.store(true, Ordering::Release);
    encoder_handle.thread().unpark();
    if encoder_handle.join().is_err() {
        return Err("encoder thread panicked".into());
    }
    if let Some(h) = report_reader {
        let _ = h.join();
    }
    let summary = reader.record(
        true,
        publisher.as_ref().map(Publisher::counters).unwrap_or_default(),
    );
    let _ = stats_out.write(&summary);
    if let Some(p) = publisher.as_mut() {
        p.publish(&summary);
    }
    patchcord_devices::say!(
        "patchcord-send: stopped ({}) after {:.1} s: {} packets, {} bytes, {} frames captured, {} ring overruns, {} xruns, {} capture gaps ({:.1} ms), {} send errors",
        match reason {
            StopReason::Interrupted => "interrupted",
            StopReason::Terminated => "terminated",
            StopReason::DurationElapsed => "duration reached",
        },
        summary.t,
        summary.packets_sent,
        summary.bytes_sent,
        summary.frames_captured,
        summary.ring_overruns,
        summary.xruns,
        summary.capture_gaps,
        summary.capture_gap_ms,
        summary.send_errors,
    );
    Ok(())
}

/// The status line's receiver part: what the receivers' reports say (the worst of them).
fn receivers_text(views: &[ReceiverView]) -> String {
    let Some(worst) = views
        .iter()
        .max_by(|a, b| a.fraction_lost_pct.total_cmp(&b.fraction_lost_pct))
    else {
        return "no receiver reports".into();
    };
    let rtt = |v: &ReceiverView| v.rtt_ms.map_or("?".into(), |r| format!("{r:.2} ms"));
    format!(
        "{}: loss {:.1}% (total {}) jitter {:.2} ms rtt {}",
        if views.len() == 1 {
            "receiver".to_string()
        } else {
            format!("{} receivers, worst", views.len())
        },
        worst.fraction_lost_pct,
        worst.cumulative_lost,
        worst.jitter_ms,
        rtt(worst),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Args` from `argv` (no program name), with `--config` naming a file holding `toml`
    /// when it is given; printed, with the file's name left out.
    fn parsed(toml: Option<&str>, argv: &[&str]) -> String {
        let mut all: Vec<std::ffi::OsString> = vec!["patchcord-send".into()];
        if let Some(text) = toml {
            let path =
                std::env::temp_dir().join(format!("patchcord-send-config-{}.toml", std::process::id()));
            std::fs::write(&path, text).unwrap();
            all.extend(["--config".into(), path.into()]);
        }
        all.extend(argv.iter().map(Into::into));
        let matches = patchcord_devices::config_file::matches_from(Args::command(), all)
            .unwrap_or_else(|e| panic!("{e}"));
        let mut args = Args::from_arg_matches(&matches).unwrap();
        args.setup.config = None;
        format!("{args:?}")
    }

    #[test]
    fn a_config_file_reads_as_the_same_flags() {
        let file = r#"
            to = "192.168.1.20:5004"
            host = "virtual"
            device = "tone:440"
            channels = 1
            period = 128
            clock-ppm = 12
            no-realtime = true
            no-connect = true
            frame-ms = 2.5
            bitrate = 96000
            application = "lowdelay"
            fec = true
            expected-loss = 5
            complexity = 5
            payload-type = 98
            redundancy = 2
            red-payload-type = 110
            ttl = 4
            multicast-if = "1"
            rtcp-mux = true
            sdp = "out.sdp"
            duration = 2.5
            stats-json = "-"
            quiet = true
            low-latency = true
            http = "127.0.0.1:9901"
            http-public = true
        "#;
        let flags = [
            "--to",
            "192.168.1.20:5004",
            "--host",
            "virtual",
            "--device",
            "tone:440",
            "--channels",
            "1",
            "--period",
            "128",
            "--clock-ppm",
            "12",
            "--no-realtime",
            "--no-connect",
            "--frame-ms",
            "2.5",
            "--bitrate",
            "96000",
            "--application",
            "lowdelay",
            "--fec",
            "--expected-loss",
            "5",
            "--complexity",
            "5",
            "--payload-type",
            "98",
            "--redundancy",
            "2",
            "--red-payload-type",
            "110",
            "--ttl",
            "4",
            "--multicast-if",
            "1",
            "--rtcp-mux",
            "--sdp",
            "out.sdp",
            "--duration",
            "2.5",
            "--stats-json",
            "-",
            "--quiet",
            "--low-latency",
            "--http",
            "127.0.0.1:9901",
            "--http-public",
        ];
        let from_file = parsed(Some(file), &[]);
        assert_eq!(from_file, parsed(None, &flags));
        assert_ne!(
            from_file,
            parsed(None, &["--to", "192.168.1.20:5004"]),
            "the file changed nothing"
        );
        // the command line wins
        let over = parsed(Some(file), &["--bitrate", "64000", "--to", "[::1]:5004"]);
        let mut expected = flags.to_vec();
        expected[1] = "[::1]:5004";
        let bitrate = expected.iter().position(|f| *f == "--bitrate").unwrap();
        expected[bitrate + 1] = "64000";
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
            let missing = missing_flags(kind, Args::command());
            assert!(missing.is_empty(), "{kind:?} lacks {missing:?}");
        }
    }
}
