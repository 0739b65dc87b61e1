//! Audio device selection for patchcord.
//!
//! The sender and receiver open every device through [`open_device`], which returns a plain
//! [`cpal::Device`]. Real devices come from cpal's ALSA, PipeWire or PulseAudio hosts, or from
//! patchcord's own JACK host ([`mod@jack_host`], a cpal *custom host*, so that the client can be
//! named and connected as the user says); virtual devices (`tone:HZ`, `wav:PATH`, `silence`,
//! `null`) come from another custom host, [`mod@virtual_host`], so the audio path is identical
//! with real or virtual devices.
//!
//! ```no_run
//! use patchcord_devices::{jack_host::JackOptions, open_device, Direction, HostChoice, VirtualOptions};
//! let mic = open_device(HostChoice::Auto, Some("tone:440"), Direction::Input,
//!                       VirtualOptions::default(), &JackOptions::default())?;
//! assert!(mic.is_virtual);
//! # Ok::<(), patchcord_devices::DeviceError>(())
//! ```
//!
//! [`net`] holds the multicast socket options both binaries share, [`allow`] their
//! `--allow CIDR` list; [`config_file`] and [`generate`] their `--config FILE` and
//! `--generate KIND`; [`srtp_args`] their SRTP key flags.

#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

/// Tests run the JACK process path under an allocator that counts allocations made inside
/// `assert_no_alloc` scopes.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: assert_no_alloc::AllocDisabler = assert_no_alloc::AllocDisabler;

pub mod allow;
mod alsa_quiet;
pub mod app;
pub mod clock;
pub mod config_file;
pub mod generate;
pub mod jack_args;
pub mod jack_host;
mod list;
pub mod matcher;
pub mod net;
pub mod realtime;
pub mod server;
pub mod srtp_args;
pub mod virtual_host;

use std::{fmt, str::FromStr};

use cpal::{
    traits::{DeviceTrait, HostTrait},
    DeviceDirection, HostId,
};

use jack_host::{JackHost, JackInfo, JackOptions};
pub use list::list_devices;
use matcher::{match_keys, MatchError};
use virtual_host::{is_virtual_name, VirtualDevice, VirtualHost};

/// Which audio host to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum HostChoice {
    /// cpal's default host: PipeWire when its socket is in `$XDG_RUNTIME_DIR` (or
    /// `$PIPEWIRE_RUNTIME_DIR`), else PulseAudio when its server is reachable, else ALSA;
    /// except that virtual device names (`tone:…`, `wav:…`, `silence`, `null`) select the
    /// virtual host.
    #[default]
    Auto,
    /// ALSA.
    Alsa,
    /// JACK (needs a running JACK server), through patchcord's own host ([`mod@jack_host`]).
    Jack,
    /// PulseAudio (needs a running PulseAudio or PipeWire-Pulse server).
    PulseAudio,
    /// PipeWire, natively (needs a running PipeWire server).
    PipeWire,
    /// patchcord's virtual devices.
    Virtual,
}

impl HostChoice {
    /// The cpal host id of a cpal host (`None` for `Auto`, and for the custom hosts `Jack`
    /// and `Virtual`).
    pub fn host_id(self) -> Option<HostId> {
        match self {
            HostChoice::Alsa => Some(HostId::Alsa),
            HostChoice::PulseAudio => Some(HostId::PulseAudio),
            HostChoice::PipeWire => Some(HostId::PipeWire),
            HostChoice::Auto | HostChoice::Jack | HostChoice::Virtual => None,
        }
    }
}

impl FromStr for HostChoice {
    type Err = DeviceError;

    /// Parses `auto`, `alsa`, `jack`, `pulseaudio` (or `pulse`), `pipewire` (or `pw`),
    /// `virtual` (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "default" => Ok(HostChoice::Auto),
            "alsa" => Ok(HostChoice::Alsa),
            "jack" => Ok(HostChoice::Jack),
            "pulseaudio" | "pulse" => Ok(HostChoice::PulseAudio),
            "pipewire" | "pw" => Ok(HostChoice::PipeWire),
            "virtual" => Ok(HostChoice::Virtual),
            _ => Err(DeviceError::UnknownHost(s.to_owned())),
        }
    }
}

impl fmt::Display for HostChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostChoice::Auto => "auto",
            HostChoice::Alsa => "alsa",
            HostChoice::Jack => "jack",
            HostChoice::PulseAudio => "pulseaudio",
            HostChoice::PipeWire => "pipewire",
            HostChoice::Virtual => "virtual",
        })
    }
}

/// Options of the virtual devices.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VirtualOptions {
    /// Clock offset of virtual devices in parts per million: their effective sample rate is
    /// `48000 * (1 + clock_ppm * 1e-6)` frames per wall-clock second (positive = fast).
    /// Must be within ±100000.
    pub clock_ppm: f64,
}

impl Default for VirtualOptions {
    fn default() -> Self {
        Self { clock_ppm: 0.0 }
    }
}

/// Stream direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Capture.
    Input,
    /// Playback.
    Output,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Input => "input",
            Direction::Output => "output",
        })
    }
}

/// A device resolved by [`open_device`].
#[derive(Clone, Debug)]
pub struct OpenedDevice {
    /// The device; build streams on it as usual.
    pub device: cpal::Device,
    /// Host name: `ALSA`, `JACK`, `PipeWire`, `PulseAudio` or `Virtual`.
    pub host_name: String,
    /// Human readable device name (for ALSA with the PCM id in parentheses).
    pub device_name: String,
    /// True for patchcord's virtual devices.
    pub is_virtual: bool,
    /// On JACK: the client's name and, once a stream is built, its connections.
    pub jack: Option<JackInfo>,
}

/// Errors of device selection. Messages say what to do next.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// `--host` value not recognised.
    #[error("unknown audio host '{0}'; expected one of: auto, alsa, jack, pulseaudio (or pulse), pipewire (or pw), virtual")]
    UnknownHost(String),

    /// The host could not be initialised.
    #[error("host {host} is not available ({reason})")]
    HostUnavailable {
        /// Host name.
        host: String,
        /// Why, and what to check.
        reason: String,
    },

    /// Listing the devices of a host failed.
    #[error("cannot enumerate the devices of host {host}: {source}")]
    Enumerate {
        /// Host name.
        host: String,
        /// cpal's error.
        #[source]
        source: cpal::Error,
    },

    /// No device matches the requested name.
    #[error(
        "no {direction} device matching '{query}' on host {host}; {}; run with --list-devices",
        candidates_text(.candidates)
    )]
    NoMatch {
        /// Input or output.
        direction: Direction,
        /// The requested name.
        query: String,
        /// Host name.
        host: String,
        /// Names of the devices that exist.
        candidates: Vec<String>,
    },

    /// Several devices match the requested name.
    #[error(
        "device name '{query}' is ambiguous on {host}: matches {}; use a longer or exact name{}",
        quoted_list(.matches),
        alsa_hint(.host)
    )]
    Ambiguous {
        /// The requested name.
        query: String,
        /// Host name.
        host: String,
        /// Names of the matching devices.
        matches: Vec<String>,
    },

    /// The host has no default device for this direction.
    #[error("host {host} has no default {direction} device; pick one by name (run with --list-devices)")]
    NoDefaultDevice {
        /// Input or output.
        direction: Direction,
        /// Host name.
        host: String,
    },

    /// Auto host, but the machine has no sound card.
    #[error("no sound card found; use a virtual {direction} device instead: {}", virtual_choices(*.direction))]
    NoSoundCard {
        /// Input or output.
        direction: Direction,
    },

    /// A virtual device spec is malformed or used in the wrong direction.
    #[error("virtual device '{spec}': {reason}")]
    InvalidVirtual {
        /// The spec as given.
        spec: String,
        /// What is wrong.
        reason: String,
    },

    /// A `wav:` input file cannot be read or decoded.
    #[error("cannot read wav:{path}: {reason}")]
    WavRead {
        /// File path.
        path: String,
        /// Underlying error.
        reason: String,
    },

    /// A `wav:` input file is not 48 kHz.
    #[error("wav:{path} has sample rate {rate}; patchcord runs at 48000 Hz (resample it, e.g. `sox in.wav -r 48000 out.wav`)")]
    WavSampleRate {
        /// File path.
        path: String,
        /// Its sample rate.
        rate: u32,
    },

    /// A `wav:` output file cannot be created.
    #[error("cannot write wav:{path}: {reason}")]
    WavWrite {
        /// File path.
        path: String,
        /// What is wrong.
        reason: String,
    },

    /// Invalid [`VirtualOptions`].
    #[error("invalid virtual device options: {0}")]
    InvalidOptions(String),
}

const MAX_LISTED_CANDIDATES: usize = 40;

fn quoted_list(names: &[String]) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .take(MAX_LISTED_CANDIDATES)
        .map(|n| format!("'{n}'"))
        .collect();
    if names.len() > MAX_LISTED_CANDIDATES {
        parts.push(format!("and {} more", names.len() - MAX_LISTED_CANDIDATES));
    }
    parts.join(", ")
}

fn alsa_hint(host: &str) -> &'static str {
    if host == HostId::Alsa.name() {
        " (on ALSA the PCM id in parentheses is unique, e.g. plughw:CARD=0,DEV=0)"
    } else {
        ""
    }
}

fn candidates_text(candidates: &[String]) -> String {
    if candidates.is_empty() {
        "the host has no such devices".to_owned()
    } else {
        format!("candidates: {}", quoted_list(candidates))
    }
}

fn virtual_choices(direction: Direction) -> &'static str {
    match direction {
        Direction::Input => "tone:HZ (sine wave, e.g. tone:440), wav:PATH (plays a 48 kHz WAV file), silence",
        Direction::Output => "wav:PATH (records a WAV file), null (discards the audio)",
    }
}

/// The virtual devices as a [`cpal::Host`] (a cpal custom host, id [`HostId::Custom`]).
pub fn virtual_host(opts: VirtualOptions) -> cpal::Host {
    VirtualHost::new(opts).into_cpal()
}

/// Resolve a device.
///
/// * `name == None` (or blank) selects the host's default device.
/// * Names beginning with a virtual prefix (`tone:`, `wav:`, `silence`, `null`) select the
///   virtual host when `host` is [`HostChoice::Auto`] or [`HostChoice::Virtual`]; with an
///   explicit real host they are matched against that host's devices like any other name.
/// * Real devices: case-insensitive substring match on the device description name (and, for
///   ALSA, on the PCM id such as `hw:CARD=0,DEV=0`); an exact match wins over substrings;
///   several matches → [`DeviceError::Ambiguous`]; none → [`DeviceError::NoMatch`], both listing
///   the candidates.
/// * `Auto` uses cpal's default host. If that is ALSA and the machine has no sound card, the
///   result is [`DeviceError::NoSoundCard`], which names the virtual devices.
pub fn open_device(
    host: HostChoice,
    name: Option<&str>,
    dir: Direction,
    opts: VirtualOptions,
    jack: &JackOptions,
) -> Result<OpenedDevice, DeviceError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    match host {
        HostChoice::Virtual => open_virtual(name, dir, opts),
        HostChoice::Auto if name.is_some_and(is_virtual_name) => open_virtual(name, dir, opts),
        HostChoice::Auto => {
            let host = cpal::default_host();
            if host.id() == HostId::Alsa && !has_sound_card() {
                return Err(DeviceError::NoSoundCard { direction: dir });
            }
            resolve_real(&host, host.id().name(), name, dir)
        }
        HostChoice::Jack => {
            let host = JackHost::open(jack.clone()).map_err(|reason| DeviceError::HostUnavailable {
                host: jack_host::HOST_NAME.into(),
                reason,
            })?;
            let info = host.info();
            let opened = resolve_real(&host.into_cpal(), jack_host::HOST_NAME, name, dir)?;
            Ok(OpenedDevice {
                jack: Some(info),
                ..opened
            })
        }
        HostChoice::Alsa | HostChoice::PulseAudio | HostChoice::PipeWire => {
            let host = real_host(host)?;
            resolve_real(&host, host.id().name(), name, dir)
        }
    }
}

fn open_virtual(
    name: Option<&str>,
    dir: Direction,
    opts: VirtualOptions,
) -> Result<OpenedDevice, DeviceError> {
    let device = match name {
        Some(spec) => {
            let device = VirtualDevice::open(spec, dir, opts)?;
            if dir == Direction::Output {
                if let Some(path) = virtual_host::wav_path(spec) {
                    check_output_path(path)?;
                }
            }
            device
        }
        None => {
            virtual_host::check_clock_ppm(opts.clock_ppm).map_err(DeviceError::InvalidOptions)?;
            let host = VirtualHost::new(opts);
            let device = match dir {
                Direction::Input => host.default_input_device(),
                Direction::Output => host.default_output_device(),
            };
            device.ok_or_else(|| DeviceError::NoDefaultDevice {
                direction: dir,
                host: "Virtual".into(),
            })?
        }
    };
    Ok(OpenedDevice {
        host_name: "Virtual".into(),
        device_name: device.spec().to_owned(),
        is_virtual: true,
        device: device.into_cpal(),
        jack: None,
    })
}

/// Early, friendlier check of a `wav:` output path (the file itself is created when the stream
/// is built).
fn check_output_path(path: &std::path::Path) -> Result<(), DeviceError> {
    let shown = path.display().to_string();
    if path.is_dir() {
        return Err(DeviceError::WavWrite {
            path: shown,
            reason: "it is a directory".into(),
        });
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => return Ok(()),
    };
    if !parent.is_dir() {
        return Err(DeviceError::WavWrite {
            path: shown,
            reason: format!("directory '{}' does not exist", parent.display()),
        });
    }
    Ok(())
}

/// Initialise a real host, with a helpful error if it is not running.
pub(crate) fn real_host_by_id(id: HostId) -> Result<cpal::Host, DeviceError> {
    cpal::host_from_id(id).map_err(|e| DeviceError::HostUnavailable {
        host: id.name().to_owned(),
        reason: unavailable_reason(id, &e),
    })
}

fn real_host(choice: HostChoice) -> Result<cpal::Host, DeviceError> {
    match choice.host_id() {
        Some(id) => real_host_by_id(id),
        None => Ok(cpal::default_host()),
    }
}

pub(crate) fn unavailable_reason(id: HostId, error: &cpal::Error) -> String {
    let hint = match id {
        HostId::PulseAudio => "is a PulseAudio or PipeWire-Pulse server running?",
        HostId::PipeWire => "is a PipeWire server running (socket pipewire-0 in $XDG_RUNTIME_DIR)?",
        _ => "is the audio subsystem installed?",
    };
    format!("{hint} cpal reported: {error}")
}

/// Name shown for a real device, plus the keys a user may type to select it: its
/// description, its driver (on ALSA the PCM id), and its id when that says something the
/// others do not (a PulseAudio sink or source name, a PipeWire node name, shown in
/// brackets).
pub(crate) fn describe_real(device: &cpal::Device) -> (String, Vec<String>) {
    match device.description() {
        Ok(desc) => {
            let name = desc.name().to_owned();
            let mut label = name.clone();
            let mut keys = vec![name];
            if let Some(driver) = desc.driver().filter(|d| !d.is_empty() && *d != keys[0]) {
                label = format!("{label} ({driver})");
                keys.push(driver.to_owned());
            }
            let id = device.id().map(|i| i.id().to_owned()).unwrap_or_default();
            let lower = id.to_lowercase();
            let shown = keys.iter().any(|k| k.to_lowercase().contains(&lower));
            if !id.is_empty() && !shown {
                label = format!("{label} [{id}]");
                keys.push(id);
            }
            (label, keys)
        }
        Err(_) => {
            let id = device
                .id()
                .map(|i| i.id().to_owned())
                .unwrap_or_else(|_| "<unnamed device>".into());
            (id.clone(), vec![id])
        }
    }
}

/// The devices of `host` for `dir`. cpal keeps a device that reports configurations in
/// that direction: a device that states its direction is kept only where it says.
pub(crate) fn devices_of(host: &cpal::Host, dir: Direction) -> Result<Vec<cpal::Device>, cpal::Error> {
    let devices: Vec<cpal::Device> = alsa_quiet::quietly(|| match dir {
        Direction::Input => host.input_devices().map(Iterator::collect),
        Direction::Output => host.output_devices().map(Iterator::collect),
    })?;
    let stated = |d: &cpal::Device| d.description().map(|desc| desc.direction());
    Ok(devices
        .into_iter()
        .filter(|d| {
            !matches!(
                (stated(d), dir),
                (Ok(DeviceDirection::Input), Direction::Output)
                    | (Ok(DeviceDirection::Output), Direction::Input)
            )
        })
        .collect())
}

fn resolve_real(
    host: &cpal::Host,
    host_name: &str,
    name: Option<&str>,
    dir: Direction,
) -> Result<OpenedDevice, DeviceError> {
    alsa_quiet::quietly(|| resolve_quietly(host, host_name, name, dir))
}

fn resolve_quietly(
    host: &cpal::Host,
    host_name: &str,
    name: Option<&str>,
    dir: Direction,
) -> Result<OpenedDevice, DeviceError> {
    let host_name = host_name.to_owned();
    let device = match name {
        None => match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        }
        .ok_or_else(|| DeviceError::NoDefaultDevice {
            direction: dir,
            host: host_name.clone(),
        })?,
        Some(query) => {
            let enumerate = |e| DeviceError::Enumerate {
                host: host_name.clone(),
                source: e,
            };
            let devices = devices_of(host, dir).map_err(enumerate)?;
            let described: Vec<(String, Vec<String>)> = devices.iter().map(describe_real).collect();
            let keys: Vec<&[String]> = described.iter().map(|(_, k)| k.as_slice()).collect();
            match match_keys(query, &keys) {
                Ok(i) => devices[i].clone(),
                Err(MatchError::NotFound) => {
                    return Err(DeviceError::NoMatch {
                        direction: dir,
                        query: query.to_owned(),
                        host: host_name,
                        candidates: described.into_iter().map(|(label, _)| label).collect(),
                    })
                }
                Err(MatchError::Ambiguous(indices)) => {
                    return Err(DeviceError::Ambiguous {
                        query: query.to_owned(),
                        host: host_name,
                        matches: indices.iter().map(|&i| described[i].0.clone()).collect(),
                    })
                }
            }
        }
    };
    let (device_name, _) = describe_real(&device);
    Ok(OpenedDevice {
        device,
        host_name,
        device_name,
        is_virtual: false,
        jack: None,
    })
}

/// True if ALSA reports at least one hardware PCM (a PCM id on a card: `hw:…`, `plughw:…`,
/// or any `…CARD=…`). Plugin and pseudo devices such as `null`, `default`, `pulse`, `jack` do
/// not count. Used to print "no sound card found; use the virtual devices: …".
pub fn has_sound_card() -> bool {
    alsa_quiet::quietly(has_hardware_pcm)
}

fn has_hardware_pcm() -> bool {
    let Ok(host) = cpal::host_from_id(HostId::Alsa) else {
        return false;
    };
    let Ok(mut devices) = host.devices() else {
        return false;
    };
    devices.any(|d| {
        d.description()
            .ok()
            .and_then(|desc| desc.driver().map(is_hardware_pcm_id))
            .unwrap_or(false)
    })
}

/// Whether an ALSA PCM id names a device on a sound card.
pub(crate) fn is_hardware_pcm_id(pcm_id: &str) -> bool {
    let id = pcm_id.to_ascii_lowercase();
    id.starts_with("hw:") || id.starts_with("plughw:") || id.contains("card=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_choice_parses_and_displays() {
        for (s, h) in [
            ("alsa", HostChoice::Alsa),
            ("JACK", HostChoice::Jack),
            ("pulse", HostChoice::PulseAudio),
            ("pulseaudio", HostChoice::PulseAudio),
            ("PipeWire", HostChoice::PipeWire),
            ("pw", HostChoice::PipeWire),
            ("virtual", HostChoice::Virtual),
            ("auto", HostChoice::Auto),
        ] {
            assert_eq!(s.parse::<HostChoice>().ok(), Some(h));
            assert_eq!(h.to_string().parse::<HostChoice>().ok(), Some(h));
        }
        let err = "coreaudio".parse::<HostChoice>().err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("unknown audio host 'coreaudio'; expected one of: auto, alsa, jack, pulseaudio (or pulse), pipewire (or pw), virtual")
        );
    }

    #[test]
    fn hardware_pcm_ids() {
        assert!(is_hardware_pcm_id("hw:CARD=PCH,DEV=0"));
        assert!(is_hardware_pcm_id("plughw:CARD=0,DEV=0"));
        assert!(is_hardware_pcm_id("front:CARD=PCH,DEV=0"));
        assert!(!is_hardware_pcm_id("null"));
        assert!(!is_hardware_pcm_id("default"));
        assert!(!is_hardware_pcm_id("pulse"));
        assert!(!is_hardware_pcm_id("jack"));
    }

    #[test]
    fn error_messages_are_actionable() {
        let e = DeviceError::NoMatch {
            direction: Direction::Input,
            query: "USB Mic".into(),
            host: "ALSA".into(),
            candidates: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            e.to_string(),
            "no input device matching 'USB Mic' on host ALSA; candidates: 'a', 'b'; run with --list-devices"
        );
        let e = DeviceError::Ambiguous {
            query: "hw".into(),
            host: "ALSA".into(),
            matches: vec!["a".into(), "b".into()],
        };
        assert!(e
            .to_string()
            .starts_with("device name 'hw' is ambiguous on ALSA: matches 'a', 'b'"));
        let e = DeviceError::NoSoundCard {
            direction: Direction::Output,
        };
        let msg = e.to_string();
        assert!(msg.starts_with("no sound card found"), "{msg}");
        assert!(msg.contains("wav:PATH") && msg.contains("null"), "{msg}");
    }

    #[test]
    fn virtual_names_select_virtual_host_in_auto() {
        let opts = VirtualOptions::default();
        let d = open_device(
            HostChoice::Auto,
            Some("tone:440"),
            Direction::Input,
            opts,
            &JackOptions::default(),
        );
        let d = d.map_err(|e| e.to_string());
        assert!(
            matches!(&d, Ok(d) if d.is_virtual && d.host_name == "Virtual" && d.device_name == "tone:440")
        );
        let d = open_device(
            HostChoice::Auto,
            Some("null"),
            Direction::Output,
            opts,
            &JackOptions::default(),
        );
        assert!(matches!(&d, Ok(d) if d.is_virtual));
        let d = open_device(
            HostChoice::Virtual,
            None,
            Direction::Output,
            opts,
            &JackOptions::default(),
        );
        assert!(matches!(&d, Ok(d) if d.device_name == "null"));
    }

    #[test]
    fn bad_virtual_specs_are_clear() {
        let opts = VirtualOptions::default();
        let msg = |r: Result<OpenedDevice, DeviceError>| r.err().map(|e| e.to_string());
        assert_eq!(
            msg(open_device(
                HostChoice::Auto,
                Some("tone:abc"),
                Direction::Input,
                opts,
                &JackOptions::default()
            ))
            .as_deref(),
            Some("virtual device 'tone:abc': frequency must be a number in (0, 24000)")
        );
        assert!(msg(open_device(
            HostChoice::Auto,
            Some("tone:24000"),
            Direction::Input,
            opts,
            &JackOptions::default()
        ))
        .is_some());
        assert!(msg(open_device(
            HostChoice::Auto,
            Some("tone:-1"),
            Direction::Input,
            opts,
            &JackOptions::default()
        ))
        .is_some());
        let m = msg(open_device(
            HostChoice::Auto,
            Some("silence"),
            Direction::Output,
            opts,
            &JackOptions::default(),
        ));
        assert!(m.as_deref().is_some_and(|m| m.contains("input-only")), "{m:?}");
        let m = msg(open_device(
            HostChoice::Virtual,
            Some("foo"),
            Direction::Input,
            opts,
            &JackOptions::default(),
        ));
        assert!(m.as_deref().is_some_and(|m| m.contains("tone:HZ")), "{m:?}");
        let bad_ppm = VirtualOptions { clock_ppm: f64::NAN };
        assert!(msg(open_device(
            HostChoice::Virtual,
            Some("null"),
            Direction::Output,
            bad_ppm,
            &JackOptions::default()
        ))
        .is_some());
    }
}
