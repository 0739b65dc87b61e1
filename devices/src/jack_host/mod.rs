//! patchcord's own JACK backend, implemented as a cpal *custom host* (like
//! [`mod@crate::virtual_host`]), so that `--host jack` hands the binaries a plain
//! [`cpal::Device`] and the rest of the pipeline does not know it is on JACK.
//!
//! # Why not cpal's JACK host
//!
//! cpal 0.18.2's JACK host names its clients `cpal_client_<PID>_in` / `_out` when the host is
//! created (`Host::new`, before any setter can run), and connects the ports to
//! `system:capture_*` / `system:playback_*` when a stream is built. So a user could not name
//! the client, and patchcord could only rewire the ports afterwards with a second client,
//! leaving a window in which a sender sent what `system:capture` heard. Its playback
//! timestamp also adds a whole period when JACK reports no playback latency. This host fixes
//! all three:
//!
//! * **Name.** The client is opened under the name the user chose (`--jack-name`; default
//!   `patchcord-send` / `patchcord-recv`). On a clash jackd appends `-01`, `-02`…; the name
//!   JACK gave is reported ([`JackInfo::client_name`]). PipeWire's JACK API gives every
//!   client the name it asked for and shows clashing ones to others as `NAME-<node id>`.
//! * **Ports.** `in_1`, `in_2`… (capture) or `out_1`, `out_2`… (playback), one per channel.
//! * **Connections** ([`Connect`]) are made by the stream's own client right after it is
//!   activated, in [`client::connect`]: to the physical ports by default (looked up with
//!   `PortFlags::IS_PHYSICAL`, channel `i` to the `i`-th one), to the ports given with
//!   `--connect`, or none (`--no-connect`). No other connection is ever made, so there is no
//!   window of wrong connections. The device's callbacks start on `play()`; before it the
//!   client outputs silence.
//! * **Timestamps** ([`process`]) are JACK's own: the cycle start from `cycle_times`, all in
//!   JACK's microsecond clock (`jack_get_time`, one monotonic origin for every instant of
//!   the stream and for `now()`). `callback` = cycle start + the frames since the cycle
//!   started; `capture` = cycle start − the capture latency JACK gives the port;
//!   `playback` = cycle start + the playback latency JACK gives the port (the maximum of its
//!   range, over the ports). Nothing is invented: a port that feeds another client directly
//!   has a latency of 0, and its frames reach that client in the same cycle. (The binaries
//!   use only the offsets from `callback`, against their own wall clock; when the JACK
//!   dummy driver drops cycles in an xrun, their readings still step by whole periods,
//!   which no timestamp of the host can hide: BENCHMARKS.md §1.)
//!
//! # Devices
//!
//! One input (`JACK Input`) and one output (`JACK Output`); their driver field is the client
//! name. They run at the server's sample rate and period, in `f32`, with 1 to
//! [`MAX_CHANNELS`] channels. `BufferSize::Fixed` is accepted and ignored: the period is
//! the server's (`jackd -p`), and may change while running; up to [`MAX_FRAMES`] frames
//! per cycle are handled without allocation, larger cycles are played as silence and
//! counted.
//!
//! The client is opened when the device is ([`JackHost::open`]): that is where a missing
//! server is found, and where the name is fixed. The first stream built on the device uses
//! that client; another one opens a new client of the same requested name.
//!
//! # Errors
//!
//! xruns reach the error callback as [`cpal::ErrorKind::Xrun`] (counted, not fatal); the
//! server shutting down or changing its sample rate as [`cpal::ErrorKind::StreamInvalidated`].

pub mod client;
pub mod process;
mod stream;

use std::{
    fmt,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use cpal::{
    traits::{DeviceTrait, HostTrait},
    ChannelCount, Data, DeviceDescription, DeviceDescriptionBuilder, DeviceDirection, DeviceId, Error,
    ErrorKind, HostId, InputCallbackInfo, OutputCallbackInfo, SampleFormat, StreamConfig,
    SupportedBufferSize, SupportedStreamConfig, SupportedStreamConfigRange,
};

pub use stream::JackStream;

use crate::Direction;

/// Largest channel count of a JACK device.
pub const MAX_CHANNELS: ChannelCount = 8;
/// Largest JACK period handled: the interleaving buffer is preallocated for it.
pub const MAX_FRAMES: usize = 8192;
/// Host name shown to the user.
pub const HOST_NAME: &str = "JACK";

/// Where the device's ports are connected when its stream starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Connect {
    /// To the physical ports (`system:capture_N` / `system:playback_N` on jackd), in order.
    #[default]
    Physical,
    /// To these ports, one per channel in order; a single port takes every channel.
    Ports(Vec<String>),
    /// Nowhere: the user connects them.
    Nothing,
}

/// How the JACK client is named and connected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JackOptions {
    /// The client name asked for (JACK may append `-01`… on a clash).
    pub client_name: String,
    /// Connections made at activation.
    pub connect: Connect,
}

impl Default for JackOptions {
    fn default() -> Self {
        Self {
            client_name: "patchcord".into(),
            connect: Connect::Physical,
        }
    }
}

/// What the JACK client of a device is called, and which connections its stream made.
/// Shared with the device: read it after the stream is built.
#[derive(Clone, Debug)]
pub struct JackInfo(Arc<Slot>);

impl JackInfo {
    /// The client's name, as JACK gave it.
    pub fn client_name(&self) -> String {
        lock(&self.0.name).clone()
    }

    /// The connections the last stream built made, as `from -> to`.
    pub fn connections(&self) -> Vec<String> {
        lock(&self.0.connections).clone()
    }
}

/// The client a device opened, shared by the devices of one host.
#[derive(Debug)]
struct Slot {
    options: JackOptions,
    /// The client opened with the host, until a stream takes it.
    client: Mutex<Option<jack::Client>>,
    name: Mutex<String>,
    connections: Mutex<Vec<String>>,
    sample_rate: u32,
    buffer_size: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The cpal custom host of patchcord's JACK devices.
#[derive(Clone, Debug)]
pub struct JackHost {
    slot: Arc<Slot>,
}

impl JackHost {
    /// Open the JACK client (without starting a server). Fails when no server runs.
    pub fn open(options: JackOptions) -> Result<Self, String> {
        let client = client::open(&options.client_name)?;
        let slot = Slot {
            name: Mutex::new(client.name().to_owned()),
            sample_rate: client.sample_rate(),
            buffer_size: client.buffer_size(),
            client: Mutex::new(Some(client)),
            connections: Mutex::new(Vec::new()),
            options,
        };
        Ok(Self { slot: Arc::new(slot) })
    }

    /// Name, connections of this host's client.
    pub fn info(&self) -> JackInfo {
        JackInfo(Arc::clone(&self.slot))
    }

    /// Wrap into a [`cpal::Host`] (host id [`cpal::HostId::Custom`]).
    pub fn into_cpal(self) -> cpal::Host {
        cpal::Host::from(cpal::platform::CustomHost::from_host(self))
    }

    fn device(&self, direction: Direction) -> JackDevice {
        JackDevice {
            slot: Arc::clone(&self.slot),
            direction,
        }
    }
}

impl HostTrait for JackHost {
    type Devices = std::vec::IntoIter<JackDevice>;
    type Device = JackDevice;

    fn is_available() -> bool {
        true
    }

    fn devices(&self) -> Result<Self::Devices, Error> {
        Ok(vec![self.device(Direction::Input), self.device(Direction::Output)].into_iter())
    }

    fn default_input_device(&self) -> Option<Self::Device> {
        Some(self.device(Direction::Input))
    }

    fn default_output_device(&self) -> Option<Self::Device> {
        Some(self.device(Direction::Output))
    }
}

/// The input or the output of a JACK client.
#[derive(Clone)]
pub struct JackDevice {
    slot: Arc<Slot>,
    direction: Direction,
}

impl JackDevice {
    fn label(&self) -> &'static str {
        match self.direction {
            Direction::Input => "JACK Input",
            Direction::Output => "JACK Output",
        }
    }

    fn ranges(&self, direction: Direction) -> Vec<SupportedStreamConfigRange> {
        if direction != self.direction {
            return Vec::new();
        }
        (1..=MAX_CHANNELS)
            .map(|ch| {
                SupportedStreamConfigRange::new(
                    ch,
                    self.slot.sample_rate,
                    self.slot.sample_rate,
                    self.buffer_range(),
                    SampleFormat::F32,
                )
            })
            .collect()
    }

    fn buffer_range(&self) -> SupportedBufferSize {
        SupportedBufferSize::Range {
            min: self.slot.buffer_size,
            max: self.slot.buffer_size,
        }
    }

    fn default_config(&self, direction: Direction) -> Result<SupportedStreamConfig, Error> {
        self.require(direction)?;
        Ok(SupportedStreamConfig::new(
            2,
            self.slot.sample_rate,
            self.buffer_range(),
            SampleFormat::F32,
        ))
    }

    fn require(&self, direction: Direction) -> Result<(), Error> {
        if direction == self.direction {
            Ok(())
        } else {
            Err(Error::with_message(
                ErrorKind::UnsupportedOperation,
                format!("{} is {}-only", self.label(), self.direction),
            ))
        }
    }

    /// Check a requested config; returns the channel count.
    fn check(&self, config: &StreamConfig, format: SampleFormat) -> Result<usize, Error> {
        let unsupported = |what: String| {
            Err(Error::with_message(
                ErrorKind::UnsupportedConfig,
                format!(
                    "{what}; the JACK server runs at {} Hz, f32, 1 to {MAX_CHANNELS} channels",
                    self.slot.sample_rate
                ),
            ))
        };
        if config.sample_rate != self.slot.sample_rate {
            return unsupported(format!("sample rate {} Hz", config.sample_rate));
        }
        if !(1..=MAX_CHANNELS).contains(&config.channels) {
            return unsupported(format!("{} channels", config.channels));
        }
        if format != SampleFormat::F32 {
            return unsupported(format!("sample format {format}"));
        }
        // config.buffer_size is ignored: the server sets the period.
        Ok(usize::from(config.channels))
    }

    /// The client opened with the host, or a new one of the same requested name.
    fn take_client(&self) -> Result<jack::Client, Error> {
        let taken = lock(&self.slot.client).take();
        let client = match taken {
            Some(c) => c,
            None => client::open(&self.slot.options.client_name)
                .map_err(|m| Error::with_message(ErrorKind::DeviceNotAvailable, m))?,
        };
        *lock(&self.slot.name) = client.name().to_owned();
        Ok(client)
    }

    fn record(&self, connections: Vec<String>) {
        *lock(&self.slot.connections) = connections;
    }
}

impl DeviceTrait for JackDevice {
    type SupportedInputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type SupportedOutputConfigs = std::vec::IntoIter<SupportedStreamConfigRange>;
    type Stream = JackStream;

    fn description(&self) -> Result<DeviceDescription, Error> {
        let (direction, ports) = match self.direction {
            Direction::Input => (DeviceDirection::Input, "in_1, in_2, …"),
            Direction::Output => (DeviceDirection::Output, "out_1, out_2, …"),
        };
        let connect = match &self.slot.options.connect {
            Connect::Physical => "connects to the physical ports".to_owned(),
            Connect::Ports(p) => format!("connects to {}", p.join(", ")),
            Connect::Nothing => "connects nowhere".to_owned(),
        };
        let name = lock(&self.slot.name).clone();
        Ok(DeviceDescriptionBuilder::new(self.label())
            .driver(name.as_str())
            .direction(direction)
            .add_extended_line(format!(
                "JACK client '{name}', ports {ports}; {connect}; {} Hz, {}-frame periods",
                self.slot.sample_rate, self.slot.buffer_size
            ))
            .build())
    }

    fn id(&self) -> Result<DeviceId, Error> {
        Ok(DeviceId::new(HostId::Custom, self.label()))
    }

    fn supports_input(&self) -> bool {
        self.direction == Direction::Input
    }

    fn supports_output(&self) -> bool {
        self.direction == Direction::Output
    }

    fn supported_input_configs(&self) -> Result<Self::SupportedInputConfigs, Error> {
        Ok(self.ranges(Direction::Input).into_iter())
    }

    fn supported_output_configs(&self) -> Result<Self::SupportedOutputConfigs, Error> {
        Ok(self.ranges(Direction::Output).into_iter())
    }

    fn default_input_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.default_config(Direction::Input)
    }

    fn default_output_config(&self) -> Result<SupportedStreamConfig, Error> {
        self.default_config(Direction::Output)
    }

    fn build_input_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&Data, &InputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        self.require(Direction::Input)?;
        let channels = self.check(&config, sample_format)?;
        let client = self.take_client()?;
        let (stream, connections) = JackStream::input(
            client,
            channels,
            &self.slot.options.connect,
            data_callback,
            error_callback,
        )?;
        self.record(connections);
        Ok(stream)
    }

    fn build_output_stream_raw<D, E>(
        &self,
        config: StreamConfig,
        sample_format: SampleFormat,
        data_callback: D,
        error_callback: E,
        _timeout: Option<Duration>,
    ) -> Result<Self::Stream, Error>
    where
        D: FnMut(&mut Data, &OutputCallbackInfo) + Send + 'static,
        E: FnMut(Error) + Send + 'static,
    {
        self.require(Direction::Output)?;
        let channels = self.check(&config, sample_format)?;
        let client = self.take_client()?;
        let (stream, connections) = JackStream::output(
            client,
            channels,
            &self.slot.options.connect,
            data_callback,
            error_callback,
        )?;
        self.record(connections);
        Ok(stream)
    }
}

impl PartialEq for JackDevice {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot) && self.direction == other.direction
    }
}

impl Eq for JackDevice {}

impl Hash for JackDevice {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.slot).hash(state);
        self.direction.hash(state);
    }
}

impl fmt::Debug for JackDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JackDevice")
            .field("client", &*lock(&self.slot.name))
            .field("direction", &self.direction)
            .finish()
    }
}

impl fmt::Display for JackDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}
