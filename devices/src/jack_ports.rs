//! JACK port connections: `--connect PORT…` and `--no-connect`.
//!
//! cpal 0.18.2's JACK host names its clients `cpal_client_<PID>_in` / `_out` and connects
//! their ports to `system:capture_*` / `system:playback_*` when the stream is built. Its
//! `Host::set_connect_automatically` and `input_device_with_name` cannot change either:
//! the host creates its devices, which carry the name and the flag, in `Host::new`, before
//! any setter can run. So patchcord lets cpal connect, then a short-lived control client of
//! the `jack` crate (the binding cpal itself uses) rewires the ports: `--no-connect`
//! disconnects them, `--connect` disconnects them and connects the given ports instead.
//! For the few milliseconds in between, the ports are connected to `system:*` (a receiver
//! plays silence then; a sender hears the system capture before it is disconnected, and
//! that audio is sent). The client name cannot be chosen (`--jack-name` is not offered):
//! that needs a JACK backend of patchcord's own.

use jack::{Client, ClientOptions, PortFlags};

use crate::Direction;

/// JACK connection flags, shared by both binaries.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JackArgs {
    /// JACK only: connect the device's ports to these ports instead of system:*, one per
    /// channel in order (one PORT for every channel when only one is given). Capture reads
    /// from them, playback writes to them.
    #[arg(long, value_name = "PORT", num_args = 1.., conflicts_with = "no_connect")]
    pub connect: Vec<String>,
    /// JACK only: leave the device's ports unconnected (connect them yourself, e.g. with
    /// jack_connect or a patchbay).
    #[arg(long)]
    pub no_connect: bool,
}

impl JackArgs {
    /// Whether the flags ask for anything (else cpal's connections to system:* stay).
    pub fn rewires(&self) -> bool {
        self.no_connect || !self.connect.is_empty()
    }
}

/// Rewire the ports of this process's cpal JACK client for `dir` as `args` say, once its
/// stream is playing. Returns the connections made, as `from -> to`.
pub fn rewire(args: &JackArgs, dir: Direction, channels: usize) -> Result<Vec<String>, String> {
    if args.connect.len() > channels.max(1) {
        return Err(format!(
            "--connect names {} ports for {channels} channel(s); give one per channel, or one for all",
            args.connect.len()
        ));
    }
    let name = format!("patchcord_ctl_{}", std::process::id());
    let (client, _) = Client::new(&name, ClientOptions::NO_START_SERVER)
        .map_err(|e| format!("JACK control client: {e} (is jackd running?)"))?;
    let suffix = match dir {
        Direction::Input => "in",
        Direction::Output => "out",
    };
    // cpal's client is cpal_client_<PID>_in (JACK appends -01 … on a name clash)
    let pattern = format!("^cpal_client_{}_{suffix}(-[0-9]+)?:", std::process::id());
    let mut ours = client.ports(Some(&pattern), None, PortFlags::empty());
    ours.sort_by_key(|p| port_index(p));
    if ours.is_empty() {
        return Err(format!(
            "no JACK ports of this process found (looked for {pattern})"
        ));
    }
    for port in &ours {
        let Some(p) = client.port_by_name(port) else {
            continue;
        };
        for other in p.get_connections() {
            let (from, to) = ordered(dir, &other, port);
            client
                .disconnect_ports_by_name(from, to)
                .map_err(|e| format!("cannot disconnect {from} -> {to}: {e}"))?;
        }
    }
    let mut made = Vec::new();
    for (i, port) in ours.iter().enumerate() {
        let Some(target) = args
            .connect
            .get(i)
            .or(args.connect.first().filter(|_| args.connect.len() == 1))
        else {
            continue;
        };
        if client.port_by_name(target).is_none() {
            let wanted = match dir {
                Direction::Input => PortFlags::IS_OUTPUT,
                Direction::Output => PortFlags::IS_INPUT,
            };
            let candidates = client.ports(None, Some("audio"), wanted).join(", ");
            return Err(format!("no JACK port '{target}'; candidates: {candidates}"));
        }
        let (from, to) = ordered(dir, target, port);
        client
            .connect_ports_by_name(from, to)
            .map_err(|e| format!("cannot connect {from} -> {to}: {e}"))?;
        made.push(format!("{from} -> {to}"));
    }
    Ok(made)
}

/// (source, destination) of a connection between one of our ports and another: capture
/// ports receive, playback ports send.
fn ordered<'a>(dir: Direction, other: &'a str, ours: &'a str) -> (&'a str, &'a str) {
    match dir {
        Direction::Input => (other, ours),
        Direction::Output => (ours, other),
    }
}

/// The channel index of a cpal port (`…:in_3` → 3), for ordering.
fn port_index(port: &str) -> usize {
    port.rsplit('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_sort_by_channel() {
        let mut p = vec!["c:out_10".to_owned(), "c:out_2".to_owned(), "c:out_0".to_owned()];
        p.sort_by_key(|p| port_index(p));
        assert_eq!(p, ["c:out_0", "c:out_2", "c:out_10"]);
    }

    #[test]
    fn capture_receives_playback_sends() {
        assert_eq!(
            ordered(Direction::Input, "system:capture_1", "me:in_0"),
            ("system:capture_1", "me:in_0")
        );
        assert_eq!(
            ordered(Direction::Output, "system:playback_1", "me:out_0"),
            ("me:out_0", "system:playback_1")
        );
    }
}
