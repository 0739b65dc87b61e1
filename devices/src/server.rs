//! Desktop sound servers (PipeWire, PulseAudio, and ALSA routed into one of them): the
//! period patchcord asks them for, and the warning when they hand out much more.
//!
//! A sound server decides the buffering of its clients. Left to their defaults they choose
//! for music players, not for a live link: measured on Debian 12 (issue 9), PulseAudio 16
//! gave a 3970-frame period (1855 ms end to end, the sender's ring overran), pipewire-pulse
//! 2048 frames (2019 ms), PipeWire's own protocol its 1024-frame default quantum. So on a
//! server patchcord asks, unless `--period` says otherwise, for [`SERVER_PERIOD_FRAMES`]
//! (256 frames, 5.3 ms): about 10 ms of buffering, since the servers double-buffer
//! (cpal's PulseAudio host sets the playback target to two periods; PipeWire plays one
//! quantum while the next is computed). PipeWire rounds a requested latency down to a
//! power of two, which 256 already is.
//!
//! A server may still hand out more (another client holds the graph at a larger quantum,
//! or the server ignores the request). [`PeriodWatch`] compares the period the callbacks
//! actually get with the one asked for, and words one warning when it is more than twice
//! that.
//!
//! Which ALSA devices go through a server is decided from the PCM id: `pulse` and
//! `pipewire` always do; `default` and `sysdefault` do when a server is running here (its
//! socket exists), because Debian's `pulse` and `pipewire-alsa` configurations route the
//! default device to the server only then.

use std::path::PathBuf;

use cpal::traits::DeviceTrait;

use crate::OpenedDevice;

/// The period patchcord asks a sound server for when `--period` is not given: 256 frames
/// (5.3 ms at 48 kHz), about 10 ms of buffering.
pub const SERVER_PERIOD_FRAMES: u32 = 256;

/// The sound server a device plays or captures through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// cpal's PipeWire host.
    PipeWire,
    /// cpal's PulseAudio host (PulseAudio, or PipeWire through pipewire-pulse).
    PulseAudio,
    /// An ALSA PCM that is a client of a sound server (`pulse`, `pipewire`, or the
    /// default device while a server runs).
    AlsaPlugin,
}

impl Server {
    /// The sound server behind `opened`, if any (virtual devices and JACK have none).
    pub fn of(opened: &OpenedDevice) -> Option<Server> {
        match opened.host_name.as_str() {
            "PipeWire" => Some(Server::PipeWire),
            "PulseAudio" => Some(Server::PulseAudio),
            "ALSA" => {
                let pcm = opened.device.description().ok()?.driver()?.to_ascii_lowercase();
                alsa_pcm_uses_server(&pcm, server_running()).then_some(Server::AlsaPlugin)
            }
            _ => None,
        }
    }

    /// Whether the server converts any channel count to the device's own: a PipeWire node
    /// lists only its own channel count, but its streams may have 1 or 2 channels.
    pub fn converts_channels(self) -> bool {
        self == Server::PipeWire
    }
}

/// Whether an ALSA PCM id goes through a sound server, given whether one runs here.
fn alsa_pcm_uses_server(pcm: &str, server_running: bool) -> bool {
    match pcm {
        "pulse" | "pipewire" => true,
        "default" | "sysdefault" => server_running,
        _ => false,
    }
}

/// Whether a PipeWire or PulseAudio server socket exists for this user, where their
/// clients look for it (`$PIPEWIRE_RUNTIME_DIR`, `$XDG_RUNTIME_DIR`, `$PULSE_SERVER`).
pub fn server_running() -> bool {
    let env_dir = |name: &str| std::env::var_os(name).map(PathBuf::from);
    let pipewire = [env_dir("PIPEWIRE_RUNTIME_DIR"), env_dir("XDG_RUNTIME_DIR")]
        .into_iter()
        .flatten()
        .any(|d| d.join("pipewire-0").exists());
    let pulse = std::env::var_os("PULSE_SERVER").is_some()
        || env_dir("XDG_RUNTIME_DIR").is_some_and(|d| d.join("pulse").join("native").exists());
    pipewire || pulse
}

/// Watches the period a device's callbacks actually get and says once when it is much
/// larger than the one asked for.
#[derive(Debug)]
pub struct PeriodWatch {
    requested: Option<u32>,
    warned: bool,
}

impl PeriodWatch {
    /// `requested`: the period the device was opened with (`None`: its own default, which
    /// is never warned about).
    pub fn new(requested: Option<u32>) -> Self {
        Self {
            requested,
            warned: false,
        }
    }

    /// A watch of the period a stream was opened with.
    pub fn of(config: &cpal::StreamConfig) -> Self {
        Self::new(match config.buffer_size {
            cpal::BufferSize::Fixed(n) => Some(n),
            cpal::BufferSize::Default => None,
        })
    }

    /// Feed the period observed (frames per callback); returns the warning the first time
    /// it is more than twice the request.
    pub fn observe(&mut self, observed_frames: f64) -> Option<String> {
        let requested = self.requested?;
        if self.warned || observed_frames <= 2.0 * f64::from(requested) {
            return None;
        }
        self.warned = true;
        Some(format!(
            "warning: the audio server hands out {observed_frames:.0}-frame periods ({:.1} ms) where {requested} ({:.1} ms) were asked; \
             the latency grows by about the difference (another client may hold the server at a larger buffer; try --period or the server's own settings)",
            observed_frames / 48.0,
            f64::from(requested) / 48.0
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alsa_pcms_through_a_server() {
        assert!(alsa_pcm_uses_server("pulse", false));
        assert!(alsa_pcm_uses_server("pipewire", false));
        assert!(alsa_pcm_uses_server("default", true));
        assert!(!alsa_pcm_uses_server("default", false));
        assert!(!alsa_pcm_uses_server("hw:CARD=0,DEV=0", true));
        assert!(!alsa_pcm_uses_server("null", true));
    }

    #[test]
    fn warns_once_when_handed_much_more() {
        let mut w = PeriodWatch::new(Some(256));
        assert_eq!(w.observe(256.0), None);
        assert_eq!(w.observe(512.0), None, "twice the request is still fine");
        let msg = w.observe(3970.0);
        assert!(
            msg.as_deref()
                .is_some_and(|m| m.contains("3970-frame periods (82.7 ms)") && m.contains("256 (5.3 ms)")),
            "{msg:?}"
        );
        assert_eq!(w.observe(3970.0), None, "only once");
        assert_eq!(
            PeriodWatch::new(None).observe(9000.0),
            None,
            "nothing asked, nothing to warn"
        );
    }
}
