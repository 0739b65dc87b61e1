//! The one sample rate of patchcord and conversions between nanoseconds and frames.
//!
//! Opus and the RTP clock of RFC 7587 always run at 48 kHz, and so does every decoded
//! stream and the output: a frame count and a duration convert exactly, without knowing
//! which device is used.

use crate::rtp::OPUS_RTP_CLOCK_HZ;

/// Output sample rate; Opus and patchcord always run at 48 kHz.
pub const SAMPLE_RATE: u32 = OPUS_RTP_CLOCK_HZ;

/// Converts a duration in nanoseconds to 48 kHz frames, rounding up.
pub fn ns_to_frames_ceil(ns: i64) -> i64 {
    let r = SAMPLE_RATE as i128;
    let ns = ns as i128;
    let frames = (ns * r + 999_999_999).div_euclid(1_000_000_000);
    frames as i64
}

/// Converts 48 kHz frames to nanoseconds (rounded to nearest).
pub fn frames_to_ns(frames: i64) -> i64 {
    ((frames as i128 * 1_000_000_000 + SAMPLE_RATE as i128 / 2) / SAMPLE_RATE as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_round_as_documented() {
        assert_eq!(frames_to_ns(48_000), 1_000_000_000);
        assert_eq!(frames_to_ns(1), 20_833);
        assert_eq!(ns_to_frames_ceil(20_833), 1);
        assert_eq!(ns_to_frames_ceil(20_834), 2);
        assert_eq!(ns_to_frames_ceil(-20_833), 0);
        assert_eq!(ns_to_frames_ceil(1_000_000_000), 48_000);
    }
}
