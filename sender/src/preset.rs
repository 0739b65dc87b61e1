//! `--low-latency`: the encoder settings for the shortest delay, without knowing Opus.
//!
//! Opus's `audio` application adds 6.5 ms of look-ahead and, at 2.5 ms frames, cannot use
//! its SILK/hybrid modes anyway; `lowdelay` (CELT only) has 2.5 ms of look-ahead. On JACK
//! (dummy backend, 64-frame periods, BENCHMARKS.md §1) 2.5 ms frames measured a 21.6 ms
//! round trip with the default application and 7.1 ms with `lowdelay` at 256 kb/s. The
//! preset sets 2.5 ms frames, `lowdelay` and 256 kb/s (CELT at 2.5 ms needs the bitrate:
//! each frame is only 80 bytes at 256 kb/s); any of the three given on the command line
//! wins over the preset.

use clap::parser::ValueSource;
use clap::ArgMatches;

/// Frame duration of the preset, ms.
pub const FRAME_MS: f64 = 2.5;
/// Opus application of the preset.
pub const APPLICATION: &str = "lowdelay";
/// Bitrate of the preset, bits per second.
pub const BITRATE: i32 = 256_000;

/// Encoder settings a preset may change.
pub struct EncoderChoice<'a> {
    pub frame_ms: &'a mut f64,
    pub application: &'a mut String,
    pub bitrate: &'a mut i32,
}

/// Apply `--low-latency` to the settings not given on the command line (`matches` tells
/// which were; clap ids `frame_ms`, `application`, `bitrate`).
pub fn apply_low_latency(matches: &ArgMatches, choice: EncoderChoice<'_>) {
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    if !given("frame_ms") {
        *choice.frame_ms = FRAME_MS;
    }
    if !given("application") {
        *choice.application = APPLICATION.to_owned();
    }
    if !given("bitrate") {
        *choice.bitrate = BITRATE;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn run(argv: &[&str]) -> (f64, String, i32) {
        let cmd = Command::new("t")
            .arg(Arg::new("frame_ms").long("frame-ms").default_value("10"))
            .arg(Arg::new("application").long("application").default_value("audio"))
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
        apply_low_latency(&m, choice);
        (frame_ms, application, bitrate)
    }

    #[test]
    fn preset_sets_what_the_command_line_leaves() {
        assert_eq!(run(&["t"]), (2.5, "lowdelay".into(), 256_000));
        assert_eq!(
            run(&["t", "--bitrate", "192000"]),
            (2.5, "lowdelay".into(), 192_000)
        );
        assert_eq!(
            run(&["t", "--frame-ms", "5", "--application", "audio"]),
            (5.0, "audio".into(), 256_000)
        );
    }
}
