#![recursion_limit = "256"]
//! `patchcord-recv`: receive Opus/RTP streams over UDP and play them.
//!
//! Threads: tokio (main thread) receives datagrams, stamps their arrival, validates them
//! and passes them through an rtrb queue of preallocated packet slots to the cpal output
//! callback, which owns the jitter buffer and decoder of the playing stream and pulls
//! audio on the output device's clock. The same tokio thread parses RTCP, prints the
//! status line once a second, writes JSON stats and handles signals.

mod output;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use cpal::traits::{DeviceTrait, StreamTrait};
use cpal::{BufferSize, SampleFormat, StreamConfig};
use patchcord_common::latency::CaptureClock;
use patchcord_common::playout::{frames_to_ns, PlayoutConfig, SampleSource, Segment, StreamPlayout};
use patchcord_common::rtcp::{is_rtcp, parse_compound, RtcpPacket};
use patchcord_common::rtp::{validate_opus_rtp, DropReason, MAX_DATAGRAM_LEN};
use patchcord_devices::app::{parse_seconds, wait_for_stop, DeviceArgs, StatsSink, StopReason};
use patchcord_devices::clock::HostClock;
use patchcord_devices::{open_device, Direction};
use serde_json::json;
use tokio::net::UdpSocket;

use output::{OutputSide, PacketSlot, Snapshot};

#[derive(Parser, Debug)]
#[command(
    name = "patchcord-recv",
    version,
    about = "Receive Opus over RTP/UDP and play it"
)]
struct Args {
    /// Address and port to receive RTP on. RTCP is accepted on the same port (RFC 5761)
    /// and on port + 1.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:5004")]
    listen: String,
    #[command(flatten)]
    device: DeviceArgs,
    /// Fixed playout delay in ms, from a packet's arrival to its playout (0.5..=2000).
    #[arg(long, value_name = "MS", default_value = "20", value_parser = parse_latency_ms)]
    latency: f64,
    /// Expected RTP payload type (96..=127); other payload types are counted and dropped.
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u8).range(96..=127))]
    payload_type: u8,
    /// A stream silent this long may be replaced by a new sender (new SSRC).
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
    /// No status line on stderr.
    #[arg(long, short)]
    quiet: bool,
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
    if args.device.list_devices {
        let mut out = std::io::stdout().lock();
        return match patchcord_devices::list_devices(&mut out, args.device.virtual_options()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("patchcord-recv: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("patchcord-recv: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patchcord-recv: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Minimum over a sliding window of two buckets: a robust estimate of a clock offset from
/// samples that can only be late (a callback reads the clock after the device did).
struct MinWindow {
    current: Option<i64>,
    previous: Option<i64>,
    count: u32,
    bucket: u32,
}

impl MinWindow {
    fn new(bucket: u32) -> Self {
        MinWindow {
            current: None,
            previous: None,
            count: 0,
            bucket,
        }
    }
    fn push(&mut self, v: i64) {
        self.current = Some(self.current.map_or(v, |c| c.min(v)));
        self.count += 1;
        if self.count >= self.bucket {
            self.previous = self.current.take();
            self.count = 0;
        }
    }
    fn get(&self) -> Option<i64> {
        match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Default)]
struct NetCounters {
    datagrams: u64,
    rtcp: u64,
    rtcp_malformed: u64,
    sender_reports: u64,
    byes: u64,
    dropped: [u64; DropReason::ALL.len()],
    queue_full: u64,
    other_ssrc: u64,
    streams_started: u64,
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
    let playout_cfg = PlayoutConfig {
        channels,
        latency_ns: (args.latency * 1e6).round() as i64,
        capacity_packets: 1024,
        idle_after_ns: 500_000_000,
    };

    // Device
    let opened = open_device(
        args.device.host,
        args.device.device.as_deref(),
        Direction::Output,
        args.device.virtual_options(),
    )
    .map_err(|e| e.to_string())?;
    let supported = opened
        .device
        .supported_output_configs()
        .map_err(|e| format!("cannot query output device '{}': {e}", opened.device_name))?;
    let mut format = None;
    let mut offered = vec![];
    for range in supported {
        offered.push(format!(
            "{} ch {}-{} Hz {}",
            range.channels(),
            range.min_sample_rate(),
            range.max_sample_rate(),
            range.sample_format()
        ));
        if range.channels() as usize == channels
            && range.min_sample_rate() <= 48_000
            && range.max_sample_rate() >= 48_000
        {
            match range.sample_format() {
                SampleFormat::F32 => format = Some(SampleFormat::F32),
                SampleFormat::I16 if format.is_none() => format = Some(SampleFormat::I16),
                _ => {}
            }
        }
    }
    let format = format.ok_or_else(|| {
        format!(
            "output device '{}' on {} does not support {channels} channel(s) at 48000 Hz as f32 or i16; it offers: {}",
            opened.device_name,
            opened.host_name,
            if offered.is_empty() { "nothing".to_string() } else { offered.join(", ") }
        )
    })?;
    let config = StreamConfig {
        channels: channels as u16,
        sample_rate: 48_000,
        buffer_size: args
            .device
            .period
            .map(BufferSize::Fixed)
            .unwrap_or(BufferSize::Default),
    };

    // Queues between the network/control thread and the audio thread.
    let (mut packet_tx, packet_rx) = rtrb::RingBuffer::<PacketSlot>::new(512);
    let (mut stream_tx, stream_rx) = rtrb::RingBuffer::<Box<StreamPlayout>>::new(8);
    let (retired_tx, mut retired_rx) = rtrb::RingBuffer::<Box<StreamPlayout>>::new(64);
    let (snap_tx, mut snap_rx) = rtrb::RingBuffer::<Snapshot>::new(4096);
    let (seg_tx, mut seg_rx) = if args.timeline.is_some() {
        let (tx, rx) = rtrb::RingBuffer::<Segment>::new(1 << 16);
        (Some(tx), Some(rx))
    } else {
        (None, None)
    };
    let (err_tx, mut err_rx) = rtrb::RingBuffer::<cpal::Error>::new(64);
    let xruns = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));

    let mut side = OutputSide {
        packets: packet_rx,
        new_streams: stream_rx,
        retired: retired_tx,
        snapshots: snap_tx,
        segments: seg_tx,
        stream: None,
        scratch: vec![0.0; 16384 * channels],
        channels,
        clock,
        out_frame: 0,
        unrouted_packets: 0,
        retire_queue_full: 0,
        segments_dropped: 0,
        snapshots_dropped: 0,
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
            move |data, info| side.on_output_i16(data, info),
            err_cb,
            None,
        ),
        _ => opened.device.build_output_stream::<f32, _, _>(
            config,
            move |data, info| side.on_output_f32(data, info),
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

    let mut stats_out = StatsSink::open(args.stats_json.as_deref()).map_err(|e| e.to_string())?;
    let mut timeline_out = match &args.timeline {
        Some(p) => {
            let mut w = BufWriter::new(
                File::create(p).map_err(|e| format!("cannot create timeline file '{p}': {e}"))?,
            );
            writeln!(w, "out_frame,frames,rtp_ts,source,seq").map_err(|e| format!("timeline file: {e}"))?;
            Some(w)
        }
        None => None,
    };
    if !args.quiet {
        eprintln!(
            "patchcord-recv: listening on {local} (RTCP also on {}) -> {} on {} | {channels} ch, fixed latency {} ms, PT {}",
            rtcp_socket.as_ref().and_then(|s| s.local_addr().ok()).map(|a| a.to_string()).unwrap_or("-".into()),
            opened.device_name,
            opened.host_name,
            args.latency,
            args.payload_type
        );
    }

    let started = Instant::now();
    let mut net = NetCounters::default();
    let mut active: Option<(u32, i64)> = None; // (ssrc, last arrival)
    let mut capture_clocks: HashMap<u32, CaptureClock> = HashMap::new();
    let mut last: Snapshot = Snapshot::default();
    let mut out_start = MinWindow::new(2000);
    let mut callback_ns: Vec<u32> = Vec::with_capacity(4096);
    let mut callback_ns_max_total: u32 = 0;
    let mut latency_ns: Option<i64> = None;
    let mut buf = vec![0u8; 65_536];
    let mut rtcp_buf = vec![0u8; 65_536];
    let timeout_ns = (args.stream_timeout * 1e9) as i64;
    let pending_silence: &mut Option<Segment> = &mut None;

    let stop_fut = wait_for_stop(args.duration);
    tokio::pin!(stop_fut);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut drain = tokio::time::interval(Duration::from_millis(20));
    let mut last_bytes = 0u64;

    let reason = loop {
        tokio::select! {
            r = &mut stop_fut => break r,
            res = socket.recv_from(&mut buf) => {
                let Ok((len, _from)) = res else { continue };
                let arrival = clock.now_unix_ns();
                net.datagrams += 1;
                handle_datagram(&buf[..len], arrival, &args, &playout_cfg, &mut net, &mut active, &mut capture_clocks,
                                &mut packet_tx, &mut stream_tx, timeout_ns);
            }
            res = async { match &rtcp_socket { Some(s) => s.recv_from(&mut rtcp_buf).await, None => std::future::pending().await } } => {
                let Ok((len, _)) = res else { continue };
                net.datagrams += 1;
                handle_rtcp(&rtcp_buf[..len], &mut net, &mut capture_clocks, &mut packet_tx, active);
            }
            _ = drain.tick() => {
                drain_queues(&mut snap_rx, &mut last, &mut out_start, &mut callback_ns, &mut callback_ns_max_total,
                             &mut retired_rx, &mut seg_rx, &mut timeline_out, pending_silence);
            }
            _ = tick.tick() => {
                drain_queues(&mut snap_rx, &mut last, &mut out_start, &mut callback_ns, &mut callback_ns_max_total,
                             &mut retired_rx, &mut seg_rx, &mut timeline_out, pending_silence);
                while let Ok(e) = err_rx.pop() {
                    eprintln!("patchcord-recv: device error: {e}");
                }
                let now_latency = end_to_end_latency(&last, &out_start, &capture_clocks);
                if now_latency.is_some() {
                    latency_ns = now_latency;
                }
                let s = stats_json(&last, &net, &mut callback_ns, callback_ns_max_total, latency_ns, &out_start,
                                   xruns.load(std::sync::atomic::Ordering::Relaxed), started, &playout_cfg, false);
                if !args.quiet {
                    let bytes = last.counters.payload_bytes;
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
    drain_queues(
        &mut snap_rx,
        &mut last,
        &mut out_start,
        &mut callback_ns,
        &mut callback_ns_max_total,
        &mut retired_rx,
        &mut seg_rx,
        &mut timeline_out,
        pending_silence,
    );
    if let Some(l) = end_to_end_latency(&last, &out_start, &capture_clocks) {
        latency_ns = Some(l);
    }
    drop(stream);
    drain_queues(
        &mut snap_rx,
        &mut last,
        &mut out_start,
        &mut callback_ns,
        &mut callback_ns_max_total,
        &mut retired_rx,
        &mut seg_rx,
        &mut timeline_out,
        pending_silence,
    );
    if let Some(w) = timeline_out.as_mut() {
        if let Some(s) = pending_silence.take() {
            write_segment(w, &s);
        }
        if let Err(e) = w.flush() {
            eprintln!("patchcord-recv: timeline file: {e}");
        }
    }
    let summary = stats_json(
        &last,
        &net,
        &mut callback_ns,
        callback_ns_max_total,
        latency_ns,
        &out_start,
        xruns.load(std::sync::atomic::Ordering::Relaxed),
        started,
        &playout_cfg,
        true,
    );
    let _ = stats_out.write(&summary);
    print_summary(&summary, reason);
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn handle_datagram(
    d: &[u8],
    arrival: i64,
    args: &Args,
    cfg: &PlayoutConfig,
    net: &mut NetCounters,
    active: &mut Option<(u32, i64)>,
    clocks: &mut HashMap<u32, CaptureClock>,
    packets: &mut rtrb::Producer<PacketSlot>,
    streams: &mut rtrb::Producer<Box<StreamPlayout>>,
    timeout_ns: i64,
) {
    if is_rtcp(d) {
        handle_rtcp(d, net, clocks, packets, *active);
        return;
    }
    let header = match validate_opus_rtp(d, args.payload_type) {
        Ok(h) => h,
        Err(reason) => {
            net.dropped[reason.index()] += 1;
            return;
        }
    };
    match *active {
        Some((ssrc, _)) if ssrc == header.ssrc => {}
        Some((_, last)) if arrival - last < timeout_ns => {
            net.other_ssrc += 1;
            return;
        }
        _ => {
            // A new sender (or the old one restarted with a new SSRC): new stream. All
            // allocation happens here, off the audio thread.
            let Ok(playout) = StreamPlayout::new(header.ssrc, *cfg) else {
                net.other_ssrc += 1;
                return;
            };
            if streams.push(Box::new(playout)).is_err() {
                net.queue_full += 1;
                return;
            }
            net.streams_started += 1;
        }
    }
    *active = Some((header.ssrc, arrival));
    let mut slot = PacketSlot {
        bye: false,
        header,
        arrival_unix_ns: arrival,
        len: d.len(),
        data: [0; MAX_DATAGRAM_LEN],
    };
    slot.data[..d.len()].copy_from_slice(d);
    if packets.push(slot).is_err() {
        net.queue_full += 1;
    }
}

fn handle_rtcp(
    d: &[u8],
    net: &mut NetCounters,
    clocks: &mut HashMap<u32, CaptureClock>,
    packets: &mut rtrb::Producer<PacketSlot>,
    active: Option<(u32, i64)>,
) {
    net.rtcp += 1;
    for p in parse_compound(d) {
        match p {
            Ok(RtcpPacket::SenderReport(sr)) => {
                net.sender_reports += 1;
                if clocks.len() < 1024 || clocks.contains_key(&sr.ssrc) {
                    clocks.insert(sr.ssrc, CaptureClock::from_sender_report(&sr));
                }
            }
            Ok(RtcpPacket::Bye { ssrcs, count }) => {
                net.byes += 1;
                if let Some((playing, _)) = active {
                    if ssrcs[..count.min(31)].contains(&playing) {
                        let header = patchcord_common::rtp::RtpOpusHeader {
                            marker: false,
                            payload_type: 0,
                            sequence: 0,
                            timestamp: 0,
                            ssrc: playing,
                            payload_offset: 0,
                            payload_len: 0,
                            duration_samples: 0,
                        };
                        let slot = PacketSlot {
                            bye: true,
                            header,
                            arrival_unix_ns: 0,
                            len: 0,
                            data: [0; MAX_DATAGRAM_LEN],
                        };
                        if packets.push(slot).is_err() {
                            net.queue_full += 1;
                        }
                    }
                }
            }
            Ok(RtcpPacket::Other { .. }) => {}
            Err(_) => net.rtcp_malformed += 1,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn drain_queues(
    snaps: &mut rtrb::Consumer<Snapshot>,
    last: &mut Snapshot,
    out_start: &mut MinWindow,
    callback_ns: &mut Vec<u32>,
    callback_ns_max_total: &mut u32,
    retired: &mut rtrb::Consumer<Box<StreamPlayout>>,
    segments: &mut Option<rtrb::Consumer<Segment>>,
    timeline_out: &mut Option<BufWriter<File>>,
    pending_silence: &mut Option<Segment>,
) {
    while let Ok(s) = snaps.pop() {
        out_start.push(s.playback_unix_ns - frames_to_ns(s.out_frame as i64));
        if callback_ns.len() < 1 << 20 {
            callback_ns.push(s.callback_ns);
        }
        *callback_ns_max_total = (*callback_ns_max_total).max(s.callback_ns);
        *last = s;
    }
    while let Ok(old) = retired.pop() {
        drop(old);
    }
    if let (Some(rx), Some(w)) = (segments.as_mut(), timeline_out.as_mut()) {
        while let Ok(seg) = rx.pop() {
            // Merge runs of silence; write everything else as it is.
            if seg.source == SampleSource::Silence {
                match pending_silence {
                    Some(p) if p.out_frame + p.frames as u64 == seg.out_frame => p.frames += seg.frames,
                    _ => {
                        if let Some(p) = pending_silence.take() {
                            write_segment(w, &p);
                        }
                        *pending_silence = Some(seg);
                    }
                }
                continue;
            }
            if let Some(p) = pending_silence.take() {
                write_segment(w, &p);
            }
            write_segment(w, &seg);
        }
    }
}

fn write_segment(w: &mut BufWriter<File>, s: &Segment) {
    let (source, seq) = match s.source {
        SampleSource::Silence => ("silence", String::new()),
        SampleSource::Packet { seq } => ("packet", (seq as u16).to_string()),
        SampleSource::Fec { seq } => ("fec", (seq as u16).to_string()),
        SampleSource::Plc => ("plc", String::new()),
    };
    let ts = if s.source == SampleSource::Silence {
        String::new()
    } else {
        (s.rtp_ts as u32).to_string()
    };
    let _ = writeln!(w, "{},{},{},{},{}", s.out_frame, s.frames, ts, source, seq);
}

/// End-to-end latency of the sample played at the start of the last period: its playback
/// instant minus its capture instant from the sender's reports.
fn end_to_end_latency(
    last: &Snapshot,
    out_start: &MinWindow,
    clocks: &HashMap<u32, CaptureClock>,
) -> Option<i64> {
    let ssrc = last.ssrc?;
    let ts = last.rtp_ts_at_frame?;
    let clock = clocks.get(&ssrc)?;
    let playback = out_start.get()? + frames_to_ns(last.out_frame as i64);
    Some(clock.latency_ns(ts, playback))
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[allow(clippy::too_many_arguments)]
fn stats_json(
    s: &Snapshot,
    net: &NetCounters,
    callback_ns: &mut Vec<u32>,
    callback_ns_max_total: u32,
    latency_ns: Option<i64>,
    out_start: &MinWindow,
    xruns: u64,
    started: Instant,
    cfg: &PlayoutConfig,
    final_: bool,
) -> serde_json::Value {
    callback_ns.sort_unstable();
    let period_ns = frames_to_ns(s.frames as i64).max(1) as f64;
    let c = &s.counters;
    let dropped: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), json!(net.dropped[r.index()])))
        .collect();
    let v = json!({
        "t": started.elapsed().as_secs_f64(),
        "final": final_,
        "ssrc": s.ssrc,
        "packets_received": c.packets_received,
        "payload_bytes": c.payload_bytes,
        "played": c.played,
        "missing": c.missing,
        "lost": s.rfc3550_lost,
        "expected": s.rfc3550_expected,
        "late": c.late,
        "duplicates": c.duplicates,
        "overflow": c.overflow,
        "recovered_fec": c.recovered_fec,
        "concealed_samples": c.concealed_samples,
        "concealed_ms": c.concealed_samples as f64 / 48.0,
        "concealment_events": c.concealment_events,
        "underruns": c.underruns,
        "decode_errors": c.decode_errors,
        "seq_jumps": c.seq_jumps,
        "resyncs": c.resyncs,
        "jitter_ms": s.jitter_rtp / 48.0,
        "buffer_ms": s.buffered_samples as f64 / 48.0,
        "target_latency_ms": cfg.latency_ns as f64 / 1e6,
        "latency_ms": latency_ns.map(|l| l as f64 / 1e6),
        "latency_ns": latency_ns,
        "output_start_unix_ns": out_start.get(),
        "output_frames": s.out_frame + s.frames as u64,
        "period_frames": s.frames,
        "xruns": xruns,
        "callback_p50": percentile(callback_ns, 0.5) as f64 / period_ns,
        "callback_p99": percentile(callback_ns, 0.99) as f64 / period_ns,
        "callback_max": callback_ns_max_total as f64 / period_ns,
        "datagrams": net.datagrams,
        "rtcp_packets": net.rtcp,
        "rtcp_malformed": net.rtcp_malformed,
        "sender_reports": net.sender_reports,
        "byes": net.byes,
        "dropped": dropped,
        "receive_queue_full": net.queue_full,
        "other_ssrc": net.other_ssrc,
        "streams_started": net.streams_started,
        "unrouted_packets": s.unrouted_packets,
        "segments_dropped": s.segments_dropped,
        "snapshots_dropped": s.snapshots_dropped,
    });
    if !final_ {
        callback_ns.clear();
    }
    v
}

fn print_status(s: &serde_json::Value, kbps: f64) {
    let f = |k: &str| s[k].as_f64().unwrap_or(0.0);
    let dropped: u64 = s["dropped"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    eprintln!(
        "recv {:>6.1}s | packets {:>7} | lost {} | late {} | concealed {:.1} ms | buffer {:.1} ms | underruns {} | xruns {} | {:.1} kb/s | latency {} | bad {} | cb p99 {:.0}%",
        f("t"),
        s["packets_received"],
        s["lost"],
        s["late"],
        f("concealed_ms"),
        f("buffer_ms"),
        s["underruns"],
        s["xruns"],
        kbps,
        match s["latency_ms"].as_f64() {
            Some(l) => format!("{l:.2} ms"),
            None => "? (no RTCP SR yet)".into(),
        },
        dropped,
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
        "  packets received {}, played {}, lost {} (RFC 3550), missing at playout {}, late {}, duplicates {}, recovered by FEC {}",
        s["packets_received"], s["played"], s["lost"], s["missing"], s["late"], s["duplicates"], s["recovered_fec"]
    );
    eprintln!(
        "  concealed {:.1} ms in {} events, underruns {}, xruns {}, resyncs {}, bad datagrams {} {}, jitter {:.2} ms",
        f("concealed_ms"),
        s["concealment_events"],
        s["underruns"],
        s["xruns"],
        s["resyncs"],
        s["dropped"].as_object().map(|m| m.values().filter_map(|v| v.as_u64()).sum::<u64>()).unwrap_or(0),
        s["dropped"],
        f("jitter_ms")
    );
    match s["latency_ms"].as_f64() {
        Some(l) => eprintln!(
            "  end-to-end latency (capture -> playback, from RTCP SR): {l:.2} ms (fixed jitter-buffer delay {} ms)",
            s["target_latency_ms"]
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
}
