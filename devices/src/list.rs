//! `--list-devices` output.

use std::{collections::BTreeSet, io::Write};

use cpal::{
    traits::{DeviceTrait, HostTrait},
    HostId, SupportedBufferSize, SupportedStreamConfigRange,
};

use crate::{
    alsa_quiet::quietly,
    describe_real, devices_of, has_sound_card,
    jack_host::{self, Connect, JackHost, JackOptions},
    real_host_by_id,
    virtual_host::{effective_rate, VirtualHost, INPUT_SYNTAX, OUTPUT_SYNTAX},
    Direction, VirtualOptions,
};

/// Print every host (ALSA, PipeWire, PulseAudio, JACK, Virtual) and, for each, its input and output
/// devices with supported sample-rate ranges, channel counts, sample formats and buffer-size
/// ranges. Unavailable hosts are printed with the reason (not an error). Virtual devices are
/// listed with their syntax. Only write errors are returned. alsa-lib's own messages about
/// PCMs that cannot open are not printed (see `alsa_quiet`).
pub fn list_devices(out: &mut dyn Write, opts: VirtualOptions) -> std::io::Result<()> {
    quietly(|| list_all(out, opts))
}

fn list_all(out: &mut dyn Write, opts: VirtualOptions) -> std::io::Result<()> {
    let default_id = cpal::default_host().id();
    for &id in cpal::ALL_HOSTS {
        if id == HostId::Custom {
            continue;
        }
        let tag = if id == default_id { " (default host)" } else { "" };
        writeln!(out, "Host {}{tag}:", id.name())?;
        match real_host_by_id(id) {
            Ok(host) => {
                if id == HostId::Alsa && !has_sound_card() {
                    writeln!(
                        out,
                        "  note: no sound card found (only ALSA plugin/pseudo devices); \
                         the virtual devices below work without one"
                    )?;
                }
                list_host(out, &host)?;
            }
            Err(e) => writeln!(out, "  unavailable: {e}")?,
        }
        writeln!(out)?;
    }
    list_jack(out)?;
    list_virtual(out, opts)
}

/// patchcord's own JACK host: its client (named `patchcord-list` while listing) shows the
/// one input and one output a stream would get.
fn list_jack(out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "Host {}:", jack_host::HOST_NAME)?;
    let options = JackOptions {
        client_name: "patchcord-list".into(),
        connect: Connect::Nothing,
    };
    match JackHost::open(options) {
        Ok(host) => list_host(out, &host.into_cpal())?,
        Err(e) => writeln!(out, "  unavailable: {e}")?,
    }
    writeln!(out)
}

fn list_host(out: &mut dyn Write, host: &cpal::Host) -> std::io::Result<()> {
    for dir in [Direction::Input, Direction::Output] {
        let default = match dir {
            Direction::Input => host.default_input_device(),
            Direction::Output => host.default_output_device(),
        };
        let default_id = default.and_then(|d| d.id().ok());
        let devices = devices_of(host, dir);
        writeln!(out, "  {dir} devices:")?;
        let devices = match devices {
            Ok(d) => d,
            Err(e) => {
                writeln!(out, "    cannot enumerate: {e}")?;
                continue;
            }
        };
        if devices.is_empty() {
            writeln!(out, "    (none)")?;
        }
        for device in &devices {
            let (label, _) = describe_real(device);
            let is_default = default_id.is_some() && device.id().ok() == default_id;
            let mark = if is_default { "  [default]" } else { "" };
            writeln!(out, "    '{label}'{mark}")?;
            write_configs(out, device, dir, "      ")?;
        }
    }
    Ok(())
}

fn list_virtual(out: &mut dyn Write, opts: VirtualOptions) -> std::io::Result<()> {
    writeln!(
        out,
        "Host Virtual (patchcord built-in; selected by these names with --host auto or virtual):"
    )?;
    writeln!(
        out,
        "  clock: {:+} ppm, effective rate {:.3} frames/s; period = buffer size, default 128 frames",
        opts.clock_ppm,
        effective_rate(opts.clock_ppm)
    )?;
    for (dir, table) in [
        (Direction::Input, INPUT_SYNTAX),
        (Direction::Output, OUTPUT_SYNTAX),
    ] {
        writeln!(out, "  {dir} devices:")?;
        for (syntax, what) in table {
            writeln!(out, "    {syntax:<10} {what}")?;
        }
    }
    writeln!(out, "  examples:")?;
    let host = VirtualHost::new(opts);
    match host.devices() {
        Ok(devices) => {
            for device in devices {
                let dir = if device.supports_input() {
                    Direction::Input
                } else {
                    Direction::Output
                };
                writeln!(out, "    '{}' ({dir})", device.spec())?;
                write_configs(out, &device.into_cpal(), dir, "      ")?;
            }
        }
        Err(e) => writeln!(out, "    cannot enumerate: {e}")?,
    }
    Ok(())
}

/// Print a one-line summary of a device's supported configurations: the union of sample-rate
/// ranges, channel counts, sample formats and buffer sizes (ALSA plugins report hundreds of
/// ranges, which are useless one per line).
fn write_configs(
    out: &mut dyn Write,
    device: &cpal::Device,
    dir: Direction,
    indent: &str,
) -> std::io::Result<()> {
    let ranges: Result<Vec<SupportedStreamConfigRange>, _> = match dir {
        Direction::Input => device.supported_input_configs().map(Iterator::collect),
        Direction::Output => device.supported_output_configs().map(Iterator::collect),
    };
    let ranges = match ranges {
        Ok(r) => r,
        Err(e) => return writeln!(out, "{indent}cannot query configurations: {e}"),
    };
    if ranges.is_empty() {
        return writeln!(out, "{indent}no supported configurations reported");
    }
    writeln!(out, "{indent}{}", summarize(&ranges))
}

/// "48000 Hz; channels 1, 2; formats f32; buffer 16-8192 frames".
fn summarize(ranges: &[SupportedStreamConfigRange]) -> String {
    let mut rates: BTreeSet<(u32, u32)> = BTreeSet::new();
    let mut channels: BTreeSet<u16> = BTreeSet::new();
    let mut formats: Vec<String> = Vec::new();
    let mut buffer: Option<(u32, u32)> = None;
    let mut buffer_unknown = false;
    for r in ranges {
        rates.insert((r.min_sample_rate(), r.max_sample_rate()));
        channels.insert(r.channels());
        let format = r.sample_format().to_string();
        if !formats.contains(&format) {
            formats.push(format);
        }
        match *r.buffer_size() {
            SupportedBufferSize::Range { min, max } => {
                buffer = Some(match buffer {
                    Some((lo, hi)) => (lo.min(min), hi.max(max)),
                    None => (min, max),
                });
            }
            SupportedBufferSize::Unknown => buffer_unknown = true,
        }
    }
    let rates: Vec<String> = rates
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                format!("{lo}")
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect();
    let buffer = match buffer {
        Some((lo, hi)) if !buffer_unknown => format!("buffer {lo}-{hi} frames"),
        Some((lo, hi)) => format!("buffer {lo}-{hi} frames (or unknown)"),
        None => "buffer size unknown".to_owned(),
    };
    format!(
        "{} Hz; channels {}; formats {}; {buffer}",
        rates.join(", "),
        channel_text(&channels),
        formats.join(", ")
    )
}

/// "1-64" for contiguous sets, "1, 2, 6" otherwise.
fn channel_text(channels: &BTreeSet<u16>) -> String {
    let (Some(&first), Some(&last)) = (channels.first(), channels.last()) else {
        return "none".into();
    };
    let contiguous = usize::from(last - first) + 1 == channels.len();
    if contiguous && channels.len() > 2 {
        format!("{first}-{last}")
    } else {
        channels.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_sets() {
        let s = |v: &[u16]| channel_text(&v.iter().copied().collect());
        assert_eq!(s(&[1, 2]), "1, 2");
        assert_eq!(s(&[1, 2, 3, 4]), "1-4");
        assert_eq!(s(&[2, 6]), "2, 6");
        assert_eq!(s(&[]), "none");
    }

    #[test]
    fn summary_merges_ranges() {
        use cpal::SampleFormat;
        let r = |ch, lo, hi, f| {
            SupportedStreamConfigRange::new(ch, lo, hi, SupportedBufferSize::Range { min: 16, max: 8192 }, f)
        };
        let text = summarize(&[
            r(1, 48_000, 48_000, SampleFormat::F32),
            r(2, 48_000, 48_000, SampleFormat::F32),
            r(2, 44_100, 96_000, SampleFormat::I16),
        ]);
        assert_eq!(
            text,
            "44100-96000, 48000 Hz; channels 1, 2; formats f32, i16; buffer 16-8192 frames"
        );
    }
}
