//! `patchcord-loadgen`: send N concurrent mono Opus/RTP streams to one receiver, in real
//! time, for load tests of `patchcord-recv`.
//!
//! A few seconds of a test signal (a tone plus a little noise) are Opus-encoded once, up
//! front; every frame period the generator then sends one RTP packet per stream, looping
//! over the stored packets. Each stream has its own random SSRC, initial sequence number
//! and initial timestamp, and starts at a different point of the loop. Ticks are paced on
//! absolute deadlines (`t0 + k * frame`), so lateness never accumulates into drift; the N
//! packets of a tick go out back-to-back from one UDP socket.
//!
//! On exit (after `--duration`, or on Ctrl-C / SIGTERM) one JSON line goes to stdout:
//! `{"streams":N,"packets_sent":..,"send_errors":..,"late_ticks":..,"max_tick_lateness_us":..,...}`.

use std::collections::HashSet;
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use patchcord_common::rtcp::CompoundWriter;
use patchcord_common::rtp::Packetizer;
use patchcord_devices::app::{parse_frame_ms, parse_seconds};
use rand::Rng;

const SAMPLE_RATE: u32 = 48_000;
/// Seconds of test signal encoded up front and looped.
const LOOP_SECONDS: u32 = 5;
/// Largest Opus packet we ask the encoder for (RFC 6716 caps a frame at 1275 bytes).
const MAX_OPUS_PACKET: usize = 1500;

#[derive(Parser, Debug)]
#[command(
    name = "patchcord-loadgen",
    about = "Send N concurrent mono Opus/RTP streams to a receiver in real time (load generator)",
    // a negative number is a value (reported against its range), not an unknown flag
    allow_negative_numbers = true
)]
struct Args {
    /// Receiver address (HOST:PORT) to send RTP to.
    #[arg(long, value_name = "ADDR:PORT")]
    to: String,
    /// Number of concurrent streams (distinct SSRCs), 1..=4096.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    streams: u32,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    duration: Option<f64>,
    /// Opus frame duration in ms: 2.5, 5, 10, 20, 40 or 60.
    #[arg(long, default_value = "10", value_parser = parse_frame_ms)]
    frame_ms: f64,
    /// Opus bitrate of every stream, bits/s (500..=512000).
    #[arg(long, default_value_t = 32_000, value_parser = clap::value_parser!(i32).range(500..=512_000))]
    bitrate: i32,
    /// RTP payload type (96..=127).
    #[arg(long, default_value_t = 96, value_parser = clap::value_parser!(u8).range(96..=127))]
    payload_type: u8,
    /// Send an RTCP BYE for every SSRC at the end (to the RTP port, RFC 5761 muxing).
    #[arg(long)]
    bye: bool,
    /// A tick counts as late when its packets start going out more than this many
    /// microseconds after its deadline.
    #[arg(long, default_value_t = 1000, value_name = "US")]
    late_threshold_us: u64,
}

/// A mono test signal: a 440 Hz tone at -12 dBFS with white noise at about -40 dBFS.
fn test_signal(samples: usize, rng: &mut impl Rng) -> Vec<f32> {
    let w = 2.0 * std::f32::consts::PI * 440.0 / SAMPLE_RATE as f32;
    (0..samples)
        .map(|i| {
            let tone = 0.25 * (w * (i % SAMPLE_RATE as usize) as f32).sin();
            let noise = 0.01 * (rng.random::<f32>() * 2.0 - 1.0);
            tone + noise
        })
        .collect()
}

/// Encode `LOOP_SECONDS` of the test signal into Opus packets of `frame_samples` each.
fn encode_loop(frame_samples: usize, bitrate: i32, rng: &mut impl Rng) -> Result<Vec<Vec<u8>>, String> {
    let total = SAMPLE_RATE as usize * LOOP_SECONDS as usize;
    let frames = total / frame_samples;
    let pcm = test_signal(frames * frame_samples, rng);
    let mut enc = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, opus::Application::Audio)
        .map_err(|e| format!("Opus encoder: {e}"))?;
    enc.set_bitrate(opus::Bitrate::Bits(bitrate))
        .map_err(|e| format!("Opus bitrate {bitrate}: {e}"))?;
    let mut buf = vec![0u8; MAX_OPUS_PACKET];
    pcm.chunks_exact(frame_samples)
        .map(|frame| {
            let n = enc
                .encode_float(frame, &mut buf)
                .map_err(|e| format!("Opus encode: {e}"))?;
            Ok(buf[..n].to_vec())
        })
        .collect()
}

fn resolve(to: &str) -> Result<SocketAddr, String> {
    to.to_socket_addrs()
        .map_err(|e| format!("cannot resolve --to '{to}': {e}"))?
        .next()
        .ok_or_else(|| format!("--to '{to}' resolves to no address"))
}

/// Set `stop` on SIGINT (and SIGTERM on Unix), from a helper thread.
fn watch_signals(stop: Arc<AtomicBool>) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| format!("signal runtime: {e}"))?;
    // Register the handlers before returning, so that a signal arriving right after start
    // is already caught.
    #[cfg(unix)]
    let mut term = {
        let _guard = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("SIGTERM handler: {e}"))?
    };
    let ctrl_c = {
        let _guard = rt.enter();
        tokio::spawn(async { tokio::signal::ctrl_c().await })
    };
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                #[cfg(unix)]
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
                #[cfg(not(unix))]
                let _ = ctrl_c.await;
            });
            stop.store(true, Ordering::Relaxed);
        })
        .map_err(|e| format!("signal thread: {e}"))?;
    Ok(())
}

struct Stream {
    packetizer: Packetizer,
    /// Index into the packet loop of this stream's first packet.
    loop_offset: usize,
}

fn run(args: Args) -> Result<(), String> {
    let dest = resolve(&args.to)?;
    let frame_samples = (args.frame_ms * SAMPLE_RATE as f64 / 1000.0).round() as usize;
    let frame = Duration::from_secs_f64(args.frame_ms / 1000.0);
    let mut rng = rand::rng();

    let packets = encode_loop(frame_samples, args.bitrate, &mut rng)?;
    if packets.is_empty() {
        return Err("no Opus packets encoded".into());
    }

    let mut ssrcs = HashSet::new();
    let mut streams: Vec<Stream> = (0..args.streams as usize)
        .map(|i| {
            let ssrc = loop {
                let s: u32 = rng.random();
                if s != 0 && ssrcs.insert(s) {
                    break s;
                }
            };
            Stream {
                packetizer: Packetizer::new(ssrc, args.payload_type, rng.random(), rng.random()),
                loop_offset: (i * 37) % packets.len(),
            }
        })
        .collect();

    let bind: SocketAddr = if dest.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal address")
    } else {
        "[::]:0".parse().expect("literal address")
    };
    // Unconnected, like patchcord-send: ICMP port-unreachable (receiver not up yet) is
    // not reported back as a send error, so only local failures are counted.
    let socket = UdpSocket::bind(bind).map_err(|e| format!("bind UDP socket: {e}"))?;

    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;

    let total_ticks: Option<u64> = args
        .duration
        .map(|d| ((d / (args.frame_ms / 1000.0)).round() as u64).max(1));

    eprintln!(
        "patchcord-loadgen: {} stream(s) of {} ms Opus at {} b/s to {dest}, {} packets looped",
        args.streams,
        args.frame_ms,
        args.bitrate,
        packets.len()
    );

    let mut out = vec![0u8; MAX_OPUS_PACKET + 64];
    let mut packets_sent: u64 = 0;
    let mut send_errors: u64 = 0;
    let mut first_error: Option<String> = None;
    let mut late_ticks: u64 = 0;
    let mut max_lateness = Duration::ZERO;
    let late_threshold = Duration::from_micros(args.late_threshold_us);

    let t0 = Instant::now();
    let mut tick: u64 = 0;
    while total_ticks.is_none_or(|n| tick < n) && !stop.load(Ordering::Relaxed) {
        // Absolute deadline: t0 + tick * frame (computed from tick, never accumulated).
        let deadline = t0 + frame.mul_f64(tick as f64);
        let now = Instant::now();
        if now < deadline {
            std::thread::sleep(deadline - now);
        }
        let lateness = Instant::now().saturating_duration_since(deadline);
        max_lateness = max_lateness.max(lateness);
        if lateness > late_threshold {
            late_ticks += 1;
        }

        let frame_index = tick * frame_samples as u64;
        for s in &mut streams {
            let payload = &packets[(s.loop_offset + tick as usize) % packets.len()];
            let len = s
                .packetizer
                .build(frame_index, payload, &mut out)
                .map_err(|e| format!("RTP packetizer: {e}"))?;
            match socket.send_to(&out[..len], dest) {
                Ok(_) => packets_sent += 1,
                Err(e) => {
                    send_errors += 1;
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        tick += 1;
    }
    let elapsed = t0.elapsed();

    let mut byes_sent: u64 = 0;
    if args.bye {
        for s in &streams {
            let mut w = CompoundWriter::new(&mut out);
            if w.bye(s.packetizer.ssrc()).is_some() {
                match socket.send_to(w.packet(), dest) {
                    Ok(_) => byes_sent += 1,
                    Err(e) => {
                        send_errors += 1;
                        first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
        }
    }

    if let Some(e) = &first_error {
        eprintln!("patchcord-loadgen: {send_errors} send error(s), first: {e}");
    }
    println!(
        "{{\"streams\":{},\"packets_sent\":{},\"send_errors\":{},\"late_ticks\":{},\"max_tick_lateness_us\":{},\"ticks\":{},\"frame_ms\":{},\"bitrate\":{},\"byes_sent\":{},\"elapsed_s\":{:.3},\"interrupted\":{}}}",
        args.streams,
        packets_sent,
        send_errors,
        late_ticks,
        max_lateness.as_micros(),
        tick,
        args.frame_ms,
        args.bitrate,
        byes_sent,
        elapsed.as_secs_f64(),
        stop.load(Ordering::Relaxed)
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("patchcord-loadgen: error: {e}");
            ExitCode::FAILURE
        }
    }
}
