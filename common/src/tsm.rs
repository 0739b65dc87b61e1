//! Time-scale modification by whole pitch periods (stub until the branch `tsm` lands:
//! finds no splice).

/// A splice found by [`TimeStretch`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Splice {
    pub frames: usize,
    pub quality: f32,
}

pub struct TimeStretch {
    _channels: usize,
}

impl TimeStretch {
    pub const HISTORY_FRAMES: usize = 960;
    pub const LOOKAHEAD_FRAMES: usize = 960;
    pub const OVERLAP_FRAMES: usize = 240;

    pub fn new(channels: usize) -> Self {
        TimeStretch { _channels: channels }
    }

    pub fn accelerate(&mut self, _buf: &mut [f32], _pos: usize, _min: usize, _max: usize, _q: f32) -> Option<Splice> {
        None
    }

    pub fn expand(&mut self, _buf: &mut [f32], _pos: usize, _min: usize, _max: usize, _q: f32) -> Option<Splice> {
        None
    }
}
