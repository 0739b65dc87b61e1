//! The encoder's three profiles: what frame, Opus application and bitrate mean when the
//! command line does not say.
//!
//! - **Default: low delay on a LAN.** 5 ms frames, `lowdelay` (CELT only, 2.5 ms of
//!   look-ahead against the `audio` application's 6.5 ms), 128 kb/s (80 bytes a frame).
//!   Issue 9 asked for ≤ 30 ms end to end with default flags through a desktop server: with
//!   the old default (10 ms frames, `audio`) frame and look-ahead alone were 16.5 ms and a
//!   headless PulseAudio null sink measured 41–48 ms; with this one it measures ≤ 30 ms once
//!   the receiver's first-minute cushion is gone (BENCHMARKS.md §7). Nothing was given up
//!   for it: the old default had no FEC either (`--fec` was, and is, a flag), and at
//!   128 kb/s the `audio` application chose CELT anyway. Loss protection for this profile is
//!   `--redundancy N` (exact RFC 2198 copies).
//! - **`--low-latency`**: 2.5 ms frames, `lowdelay`, 256 kb/s (CELT at 2.5 ms needs the
//!   bitrate: each frame is only 80 bytes at 256 kb/s). On JACK (dummy backend, 64-frame
//!   periods, BENCHMARKS.md §1) 2.5 ms frames measured a 21.6 ms round trip with the `audio`
//!   application and 7.1 ms with `lowdelay` at 256 kb/s.
//! - **`--fec`**: 10 ms frames and the `audio` application, because Opus's in-band FEC lives
//!   in its SILK/hybrid modes only, which need 10 ms frames and an application other than
//!   `lowdelay` (the old default plus FEC).
//!
//! Any of the three settings given on the command line (or in the config file) wins over
//! the profile.

use clap::parser::ValueSource;
use clap::ArgMatches;

/// The default profile's frame (ms), application and bitrate, as clap default strings.
pub const DEFAULT_FRAME_MS: &str = "5";
pub const DEFAULT_APPLICATION: &str = "lowdelay";
pub const DEFAULT_BITRATE: i32 = 128_000;

/// A profile that replaces the defaults of the settings not given on the command line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub frame_ms: f64,
    pub application: &'static str,
    pub bitrate: Option<i32>,
}

/// `--low-latency`.
pub const LOW_LATENCY: Profile = Profile {
    frame_ms: 2.5,
    application: "lowdelay",
    bitrate: Some(256_000),
};

/// `--fec` (the bitrate stays the default's).
pub const FEC: Profile = Profile {
    frame_ms: 10.0,
    application: "audio",
    bitrate: None,
};

/// Encoder settings a profile may change.
pub struct EncoderChoice<'a> {
    pub frame_ms: &'a mut f64,
    pub application: &'a mut String,
    pub bitrate: &'a mut i32,
}

/// Apply `profile` to the settings not given on the command line (`matches` tells which
/// were; clap ids `frame_ms`, `application`, `bitrate`).
pub fn apply(profile: Profile, matches: &ArgMatches, choice: EncoderChoice<'_>) {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    if !given("frame_ms") {
        *choice.frame_ms = profile.frame_ms;
    }
    if !given("application") {
        *choice.application = profile.application.to_owned();
    }
    if let Some(bitrate) = profile.bitrate.filter(|_| !given("bitrate")) {
        *choice.bitrate = bitrate;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn run(profile: Profile, argv: &[&str]) -> (f64, String, i32) {
        let cmd = Command::new("t")
            .arg(
                Arg::new("frame_ms")
                    .long("frame-ms")
                    .default_value(DEFAULT_FRAME_MS),
            )
            .arg(
                Arg::new("application")
                    .long("application")
                    .default_value(DEFAULT_APPLICATION),
            )
            .arg(Arg::new("bitrate").long("bitrate").default_value("128000"));
        let m = cmd.try_get_matches_from(argv).unwrap_or_else(|e| panic!("{e}"));
        let num = |id: &str| {
            m.get_one::<String>(id)
                .map(|s| s.parse::<f64>().unwrap_or(f64::NAN))
        };
        let mut frame_ms = num("frame_ms").unwrap_or(f64::NAN);
        let mut application = m.get_one::<String>("application").cloned().unwrap_or_default();
        let mut bitrate = num("bitrate").unwrap_or(f64::NAN) as i32;
        let choice = EncoderChoice {
            frame_ms: &mut frame_ms,
            application: &mut application,
            bitrate: &mut bitrate,
        };
        apply(profile, &m, choice);
        (frame_ms, application, bitrate)
    }

    #[test]
    fn low_latency_sets_what_the_command_line_leaves() {
        assert_eq!(run(LOW_LATENCY, &["t"]), (2.5, "lowdelay".into(), 256_000));
        assert_eq!(
            run(LOW_LATENCY, &["t", "--bitrate", "192000"]),
            (2.5, "lowdelay".into(), 192_000)
        );
        assert_eq!(
            run(LOW_LATENCY, &["t", "--frame-ms", "5", "--application", "audio"]),
            (5.0, "audio".into(), 256_000)
        );
    }

    #[test]
    fn fec_moves_to_frames_and_an_application_that_carry_it() {
        assert_eq!(run(FEC, &["t"]), (10.0, "audio".into(), 128_000));
        assert_eq!(
            run(FEC, &["t", "--frame-ms", "20", "--bitrate", "64000"]),
            (20.0, "audio".into(), 64_000)
        );
        assert_eq!(
            run(FEC, &["t", "--application", "voip"]),
            (10.0, "voip".into(), 128_000)
        );
    }
}
