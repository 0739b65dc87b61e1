//! The stage between a stream's decoder and its rate stage that carries out the delay
//! policy's requests to play faster or slower *without changing pitch*: it keeps the last
//! frames it played (history) and, when asked, a little decoded audio ahead, and lets
//! [`crate::tsm::TimeStretch`] remove or repeat whole pitch periods there.
//!
//! Why here: the adaptive delay used to move by resampling at up to ±2 % (a pitch change of
//! up to 34 cents, audible on any tone). Removing or repeating a pitch period moves the
//! delay by 2.5–15 ms at once with the pitch untouched, as WebRTC NetEq's accelerate and
//! preemptive expand do. The rate stage after this one is left with clock drift alone.
//!
//! Accounting: the stage reports the frames it took from the decoder but has not played
//! yet ([`StretchStage::ahead_frames`]), so the caller always knows which stream sample
//! plays next; a removal moves that point forward by the removed frames, a repetition
//! back. Between requests the stage holds nothing ahead: it adds no delay. Everything is
//! allocated in [`StretchStage::new`].

use crate::tsm::{is_quiet, TimeStretch, MIN_LAG_FRAMES, OVERLAP_FRAMES, QUIET_BLOCK_FRAMES, QUIET_ONLY};

/// A request for a quiet passage only ([`QUIET_ONLY`]) is tried in a *pause*: after this
/// much quiet (100 ms). PESQ-WB of 20 s of speech against itself with 10 ms of silence
/// removed: 4.64 when in a 400 ms pause between sentences, 4.18–4.39 in a 52 ms gap between
/// words (its alignment sees the time shift inside an utterance).
pub const PAUSE_FRAMES: usize = 4800;

/// What the delay policy asks of the next block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StretchRequest {
    /// Remove up to `max_frames` (the delay is too high). `lookahead_frames`: decoded audio
    /// the caller can supply ahead of the play point without concealing (the packets are
    /// buffered). `min_quality`: the splice's correlation required (0 = any).
    Accelerate {
        max_frames: usize,
        lookahead_frames: usize,
        min_quality: f32,
    },
    /// Repeat up to `max_frames` (the delay is too low).
    Expand {
        max_frames: usize,
        lookahead_frames: usize,
        min_quality: f32,
    },
}

/// Most frames fetched from the source per call.
const FETCH_MAX: usize = 1024;

pub struct StretchStage {
    tsm: TimeStretch,
    channels: usize,
    /// Interleaved frames: `[0, play)` played (history), `[play, len)` fetched, not played.
    buf: Vec<f32>,
    len: usize,
    play: usize,
    /// Signed frames of the last splice (+ removed, − repeated), taken by the caller.
    last_splice: i64,
    /// Quiet frames played in a row, up to the play point.
    quiet_run: usize,
}

impl StretchStage {
    pub fn new(channels: usize) -> Self {
        let ch = channels.max(1);
        let frames = TimeStretch::HISTORY_FRAMES + TimeStretch::LOOKAHEAD_FRAMES + FETCH_MAX;
        StretchStage {
            tsm: TimeStretch::new(ch),
            channels: ch,
            buf: crate::mem::resident_vec(frames * ch, 0.0),
            len: 0,
            play: 0,
            last_splice: 0,
            quiet_run: 0,
        }
    }

    /// Frames taken from the source that have not been played yet.
    pub fn ahead_frames(&self) -> usize {
        self.len - self.play
    }

    /// Forget the history (a new timeline starts).
    pub fn reset(&mut self) {
        self.len = 0;
        self.play = 0;
        self.last_splice = 0;
        self.quiet_run = 0;
    }

    /// Signed frames of the splice made since the last call (+ removed, − repeated).
    pub fn take_splice(&mut self) -> i64 {
        std::mem::take(&mut self.last_splice)
    }

    /// Try the request (at most one splice per call), then fill `out` (interleaved) with
    /// the next frames. `source` fills the slice it gets with the next stream frames.
    pub fn render(
        &mut self,
        out: &mut [f32],
        request: Option<StretchRequest>,
        mut source: impl FnMut(&mut [f32]),
    ) {
        if let Some(r) = request {
            self.splice(r, &mut source);
        }
        let ch = self.channels;
        let frames = out.len() / ch;
        let mut k = 0;
        while k < frames {
            if self.play < self.len {
                let n = (self.len - self.play).min(frames - k);
                out[k * ch..(k + n) * ch].copy_from_slice(&self.buf[self.play * ch..(self.play + n) * ch]);
                self.play += n;
                k += n;
            } else {
                let n = (frames - k).min(FETCH_MAX);
                self.make_room(n);
                let dst = &mut self.buf[self.len * ch..(self.len + n) * ch];
                source(dst);
                out[k * ch..(k + n) * ch].copy_from_slice(dst);
                self.len += n;
                self.play = self.len;
                k += n;
            }
        }
        for block in out.chunks(QUIET_BLOCK_FRAMES * ch) {
            if is_quiet(block, ch) {
                self.quiet_run += block.len() / ch;
            } else {
                self.quiet_run = 0;
            }
        }
    }

    /// Drop history beyond what a splice can use so that `n` more frames fit.
    fn make_room(&mut self, n: usize) {
        let ch = self.channels;
        let cap = self.buf.len() / ch;
        if self.len + n <= cap {
            return;
        }
        let keep_from = self.play.saturating_sub(TimeStretch::HISTORY_FRAMES);
        self.buf.copy_within(keep_from * ch..self.len * ch, 0);
        self.len -= keep_from;
        self.play -= keep_from;
    }

    fn splice(&mut self, r: StretchRequest, source: &mut impl FnMut(&mut [f32])) {
        let (max_frames, lookahead, q, accelerate) = match r {
            StretchRequest::Accelerate {
                max_frames,
                lookahead_frames,
                min_quality,
            } => (max_frames, lookahead_frames, min_quality, true),
            StretchRequest::Expand {
                max_frames,
                lookahead_frames,
                min_quality,
            } => (max_frames, lookahead_frames, min_quality, false),
        };
        if max_frames < MIN_LAG_FRAMES || q >= QUIET_ONLY && self.quiet_run < PAUSE_FRAMES {
            return;
        }
        // Audio needed after the play point: a removal reads its length plus the
        // cross-fade (as much as the buffered packets allow: a shorter look-ahead only
        // narrows the lags searched), a repetition only the cross-fade.
        let have = self.len - self.play;
        let (want, need) = if accelerate {
            let want = (max_frames + OVERLAP_FRAMES).min(TimeStretch::LOOKAHEAD_FRAMES);
            (want.min(have + lookahead), MIN_LAG_FRAMES + OVERLAP_FRAMES)
        } else {
            (OVERLAP_FRAMES, OVERLAP_FRAMES)
        };
        if want < need || self.play < MIN_LAG_FRAMES && !accelerate {
            return;
        }
        if have < want {
            let fetch = want - have;
            if fetch > lookahead {
                return;
            }
            let ch = self.channels;
            self.make_room(fetch);
            source(&mut self.buf[self.len * ch..(self.len + fetch) * ch]);
            self.len += fetch;
        }
        let ch = self.channels;
        let buf = &mut self.buf[..self.len * ch];
        if accelerate {
            if let Some(s) = self.tsm.accelerate(buf, self.play, MIN_LAG_FRAMES, max_frames, q) {
                let t = s.frames.min(self.len - self.play);
                self.play += t;
                self.last_splice += t as i64;
            }
        } else if let Some(s) = self.tsm.expand(buf, self.play, MIN_LAG_FRAMES, max_frames, q) {
            let t = s.frames.min(self.play);
            self.play -= t;
            self.last_splice -= t as i64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quiet-only request splices in a pause (100 ms of quiet played), not in a gap
    /// between words.
    #[test]
    fn quiet_only_waits_for_a_pause() {
        let request = StretchRequest::Accelerate {
            max_frames: 480,
            lookahead_frames: 4800,
            min_quality: QUIET_ONLY,
        };
        // sound, then silence: offer the request at every 128-frame block
        let mut stage = StretchStage::new(1);
        let mut pos = 0usize;
        let sound_until = 48_000;
        let source = |pos: &mut usize, dst: &mut [f32]| {
            for x in dst.iter_mut() {
                *x = if *pos < sound_until {
                    ((*pos as f32) * 0.05).sin() * 0.3
                } else {
                    0.0
                };
                *pos += 1;
            }
        };
        let mut out = [0f32; 128];
        let mut spliced_at = None;
        let mut played = 0usize;
        while played < 96_000 && spliced_at.is_none() {
            stage.render(&mut out, Some(request), |d| source(&mut pos, d));
            played += out.len();
            if stage.take_splice() != 0 {
                spliced_at = Some(played);
            }
        }
        let at = spliced_at.expect("no splice in the pause");
        assert!(
            (sound_until + PAUSE_FRAMES..sound_until + PAUSE_FRAMES + 1024).contains(&at),
            "spliced at {at}"
        );
        // a 50 ms gap is not a pause
        let mut stage = StretchStage::new(1);
        let mut pos = 0usize;
        let gappy = |pos: &mut usize, dst: &mut [f32]| {
            for x in dst.iter_mut() {
                *x = if *pos % 12_000 < 9_600 {
                    ((*pos as f32) * 0.05).sin() * 0.3
                } else {
                    0.0
                };
                *pos += 1;
            }
        };
        for _ in 0..750 {
            stage.render(&mut out, Some(request), |d| gappy(&mut pos, d));
            assert_eq!(stage.take_splice(), 0);
        }
    }
}
