//! The self-test's own JACK client: one output port that plays the test signal into
//! patchcord-send, one input port that records what patchcord-recv plays.
//!
//! Both start on the same process cycle, when [`JackLoop::start`] is called, and advance by
//! the same frames: sample `n` of the recording was recorded `n` frames after sample 0 of the
//! signal was played, so the lag between them is the round trip port to port, to the sample.
//! The process callback only copies between preallocated buffers ([`Transport::step`]); it
//! never allocates, locks or blocks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jack::{AudioIn, AudioOut, Client, ClientOptions, Control, LatencyType, Port, ProcessScope};

/// Flags shared between the process callback and the main thread.
#[derive(Default)]
struct Shared {
    go: AtomicBool,
    done: AtomicBool,
    xruns: AtomicUsize,
}

/// Plays `signal` and records the same number of frames plus a tail, in lockstep.
pub struct Transport {
    signal: Vec<f32>,
    recording: Vec<f32>,
    position: usize,
}

impl Transport {
    /// `tail` frames are recorded after the signal ends (room for the round trip).
    pub fn new(signal: Vec<f32>, tail: usize) -> Transport {
        let recording = vec![0.0; signal.len() + tail];
        Transport {
            signal,
            recording,
            position: 0,
        }
    }

    /// One process cycle: write the next signal frames to `output` (silence past its end),
    /// record `input`. Returns true once the recording is full.
    pub fn step(&mut self, input: &[f32], output: &mut [f32]) -> bool {
        let p = self.position;
        for (i, o) in output.iter_mut().enumerate() {
            *o = self.signal.get(p + i).copied().unwrap_or(0.0);
        }
        let room = self.recording.len().saturating_sub(p);
        let n = input.len().min(room);
        self.recording[p..p + n].copy_from_slice(&input[..n]);
        self.position = p + n;
        self.position >= self.recording.len()
    }
}

struct Process {
    out: Port<AudioOut>,
    input: Port<AudioIn>,
    transport: Transport,
    shared: Arc<Shared>,
}

impl jack::ProcessHandler for Process {
    fn process(&mut self, _: &Client, ps: &ProcessScope) -> Control {
        let output = self.out.as_mut_slice(ps);
        if !self.shared.go.load(Ordering::Acquire) || self.shared.done.load(Ordering::Relaxed) {
            output.fill(0.0);
            return Control::Continue;
        }
        if self.transport.step(self.input.as_slice(ps), output) {
            self.shared.done.store(true, Ordering::Release);
        }
        Control::Continue
    }
}

struct Notifications {
    shared: Arc<Shared>,
}

impl jack::NotificationHandler for Notifications {
    fn xrun(&mut self, _: &Client) -> Control {
        self.shared.xruns.fetch_add(1, Ordering::Relaxed);
        Control::Continue
    }
}

/// The running client.
pub struct JackLoop {
    client: jack::AsyncClient<Notifications, Process>,
    shared: Arc<Shared>,
    /// Full name of the output port (connect patchcord-send's input to it).
    pub out_port: String,
    /// Full name of the input port (connect patchcord-recv's output to it).
    pub in_port: String,
}

/// What the client saw of the graph once both binaries were connected.
pub struct Wiring {
    /// JACK's period, frames.
    pub period: u32,
    /// JACK's sample rate.
    pub sample_rate: u32,
    /// patchcord-send's ports connected to ours, with their capture latency (frames).
    pub sender_ports: Vec<(String, u32)>,
    /// patchcord-recv's ports connected to ours, with their playback latency (frames).
    pub receiver_ports: Vec<(String, u32)>,
}

impl JackLoop {
    /// Register the client (named `name`, or JACK's variant of it on a clash) and its two
    /// ports, and activate it; it plays silence until [`JackLoop::start`].
    pub fn open(name: &str, signal: Vec<f32>, tail: usize) -> Result<JackLoop, String> {
        let (client, _) = Client::new(name, ClientOptions::NO_START_SERVER)
            .map_err(|e| format!("cannot open a JACK client: {e} (is jackd running?)"))?;
        let register = |e: jack::Error| format!("cannot register a JACK port: {e}");
        let out = client
            .register_port("out", AudioOut::default())
            .map_err(register)?;
        let input = client.register_port("in", AudioIn::default()).map_err(register)?;
        let port_name = |p: Result<String, jack::Error>| p.map_err(|e| format!("JACK port name: {e}"));
        let out_port = port_name(out.name())?;
        let in_port = port_name(input.name())?;
        let shared = Arc::new(Shared::default());
        let process = Process {
            out,
            input,
            transport: Transport::new(signal, tail),
            shared: shared.clone(),
        };
        let notifications = Notifications {
            shared: shared.clone(),
        };
        let client = client
            .activate_async(notifications, process)
            .map_err(|e| format!("cannot activate the JACK client: {e}"))?;
        Ok(JackLoop {
            client,
            shared,
            out_port,
            in_port,
        })
    }

    /// Wait until something is connected to both ports (the binaries connect themselves,
    /// `--connect`), at most `deadline`; then read the latencies JACK gives their ports.
    pub fn wait_for_wiring(&self, deadline: Duration) -> Option<Wiring> {
        let client = self.client.as_client();
        let start = Instant::now();
        loop {
            let connections = |name: &str| {
                client
                    .port_by_name(name)
                    .map(|p| p.get_connections())
                    .unwrap_or_default()
            };
            let (senders, receivers) = (connections(&self.out_port), connections(&self.in_port));
            if !senders.is_empty() && !receivers.is_empty() {
                // let JACK propagate the latencies of the new connections
                std::thread::sleep(Duration::from_millis(200));
                let latency = |name: &String, kind| {
                    let frames = client
                        .port_by_name(name)
                        .map_or(0, |p| p.get_latency_range(kind).1);
                    (name.clone(), frames)
                };
                return Some(Wiring {
                    period: client.buffer_size(),
                    sample_rate: client.sample_rate(),
                    sender_ports: senders.iter().map(|p| latency(p, LatencyType::Capture)).collect(),
                    receiver_ports: receivers
                        .iter()
                        .map(|p| latency(p, LatencyType::Playback))
                        .collect(),
                });
            }
            if start.elapsed() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Start playing and recording, on the next process cycle.
    pub fn start(&self) {
        self.shared.go.store(true, Ordering::Release);
    }

    /// Whether the recording is complete.
    pub fn done(&self) -> bool {
        self.shared.done.load(Ordering::Acquire)
    }

    /// xruns JACK reported since the client was activated.
    pub fn xruns(&self) -> usize {
        self.shared.xruns.load(Ordering::Relaxed)
    }

    /// Close the client; returns the recording (complete or not).
    pub fn finish(self) -> Result<Vec<f32>, String> {
        let (_, _, process) = self
            .client
            .deactivate()
            .map_err(|e| format!("cannot close the JACK client: {e}"))?;
        let t = process.transport;
        let mut recording = t.recording;
        recording.truncate(t.position);
        Ok(recording)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plays_and_records_in_lockstep_without_allocating() {
        let mut t = Transport::new((1..=10).map(|v| v as f32).collect(), 6);
        let mut out = [0.0f32; 4];
        let mut full = false;
        let mut cycle = 0.0;
        assert_no_alloc::reset_violation_count();
        assert_no_alloc::assert_no_alloc(|| {
            while !full {
                cycle += 1.0;
                full = t.step(&[cycle; 4], &mut out);
            }
        });
        assert_eq!(
            assert_no_alloc::violation_count(),
            0,
            "the process callback allocated"
        );
        assert_eq!(out, [0.0; 4], "silence past the signal's end");
        assert_eq!(t.position, 16);
        assert_eq!(&t.recording[..5], &[1.0, 1.0, 1.0, 1.0, 2.0]);
        assert_eq!(&t.recording[12..], &[4.0; 4]);
    }
}
