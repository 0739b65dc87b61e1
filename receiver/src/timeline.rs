//! `--timeline PATH`: the playout timeline as CSV, one row per run of output frames:
//! `ssrc,out_frame,frames,rtp_ts,source,seq`, saying for every sample played which RTP
//! timestamp and packet it was decoded from (`packet`, `fec`, `red`), or that it was
//! concealed (`plc`, `plc-fade`) or silent. The audio thread hands out segments through a
//! queue; runs of silence of one stream are merged into one row, and segments of no
//! frames (decodes that only fed the decoder's state) are left out.

use std::fs::File;
use std::io::{BufWriter, Write};

use patchcord_common::playout::SampleSource;

use crate::output::StreamSegment;

pub struct Timeline {
    segments: rtrb::Consumer<StreamSegment>,
    out: BufWriter<File>,
    pending_silence: Option<StreamSegment>,
}

impl Timeline {
    /// Create the file at `path` and write its header.
    pub fn create(path: &str, segments: rtrb::Consumer<StreamSegment>) -> Result<Self, String> {
        let mut out = BufWriter::new(
            File::create(path).map_err(|e| format!("cannot create timeline file '{path}': {e}"))?,
        );
        writeln!(out, "ssrc,out_frame,frames,rtp_ts,source,seq")
            .map_err(|e| format!("timeline file: {e}"))?;
        Ok(Timeline {
            segments,
            out,
            pending_silence: None,
        })
    }

    /// Write what the audio thread has handed out.
    pub fn drain(&mut self) {
        while let Ok(seg) = self.segments.pop() {
            if seg.segment.frames == 0 {
                continue;
            }
            if seg.segment.source == SampleSource::Silence {
                match self.pending_silence.as_mut() {
                    Some(p)
                        if p.ssrc == seg.ssrc
                            && p.segment.out_frame + p.segment.frames as u64 == seg.segment.out_frame =>
                    {
                        p.segment.frames += seg.segment.frames
                    }
                    _ => {
                        if let Some(p) = self.pending_silence.take() {
                            write_segment(&mut self.out, &p);
                        }
                        self.pending_silence = Some(seg);
                    }
                }
                continue;
            }
            if let Some(p) = self.pending_silence.take() {
                write_segment(&mut self.out, &p);
            }
            write_segment(&mut self.out, &seg);
        }
    }

    /// Write the last run of silence and flush.
    pub fn finish(&mut self) -> std::io::Result<()> {
        self.drain();
        if let Some(s) = self.pending_silence.take() {
            write_segment(&mut self.out, &s);
        }
        self.out.flush()
    }
}

fn write_segment(w: &mut BufWriter<File>, s: &StreamSegment) {
    let seg = &s.segment;
    let (source, seq) = match seg.source {
        SampleSource::Silence => ("silence", String::new()),
        SampleSource::Packet { seq } => ("packet", (seq as u16).to_string()),
        SampleSource::Fec { seq } => ("fec", (seq as u16).to_string()),
        SampleSource::Redundancy { seq } => ("red", (seq as u16).to_string()),
        SampleSource::Plc => ("plc", String::new()),
        SampleSource::FadingPlc { .. } => ("plc-fade", String::new()),
    };
    let ts = if seg.source == SampleSource::Silence {
        String::new()
    } else {
        (seg.rtp_ts as u32).to_string()
    };
    let _ = writeln!(
        w,
        "{},{},{},{},{},{}",
        s.ssrc, seg.out_frame, seg.frames, ts, source, seq
    );
}
