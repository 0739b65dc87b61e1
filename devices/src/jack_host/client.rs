//! The JACK client of a device: opening it, registering its ports, and connecting them
//! once it is active.
//!
//! Ports are named `in_1`, `in_2`… or `out_1`, `out_2`…, one per channel. [`connect`] makes
//! exactly the connections [`Connect`] asks for and nothing else: channel `i` to the `i`-th
//! physical port (found with `PortFlags::IS_PHYSICAL`, in JACK's order:
//! `system:capture_1`, `system:capture_2`… on jackd), to the `i`-th `--connect` port (every
//! channel to the one port when only one is given), or nowhere.

use jack::{AudioIn, AudioOut, Client, ClientOptions, Port, PortFlags, PortSpec};

use super::Connect;
use crate::Direction;

/// Open a client named `name` (JACK appends `-01`… on a clash), without starting a server.
pub fn open(name: &str) -> Result<Client, String> {
    Client::new(name, ClientOptions::NO_START_SERVER)
        .map(|(client, _status)| client)
        .map_err(|e| format!("cannot open JACK client '{name}': {e} (is a JACK server running?)"))
}

/// The short name of channel `index`'s port (counted from 0): `in_1`, `out_2`…
pub fn port_name(dir: Direction, index: usize) -> String {
    match dir {
        Direction::Input => format!("in_{}", index + 1),
        Direction::Output => format!("out_{}", index + 1),
    }
}

/// Register `channels` ports of spec `spec`.
pub fn register<PS: PortSpec + Default + Clone>(
    client: &Client,
    dir: Direction,
    channels: usize,
) -> Result<Vec<Port<PS>>, String> {
    (0..channels)
        .map(|i| {
            let name = port_name(dir, i);
            client
                .register_port(&name, PS::default())
                .map_err(|e| format!("cannot register JACK port '{name}': {e}"))
        })
        .collect()
}

/// Capture ports.
pub fn register_inputs(client: &Client, channels: usize) -> Result<Vec<Port<AudioIn>>, String> {
    register(client, Direction::Input, channels)
}

/// Playback ports.
pub fn register_outputs(client: &Client, channels: usize) -> Result<Vec<Port<AudioOut>>, String> {
    register(client, Direction::Output, channels)
}

/// The port each of `ours` (full names, in channel order) connects to, or an error that
/// names the candidates.
pub fn targets(
    client: &Client,
    dir: Direction,
    ours: usize,
    connect: &Connect,
) -> Result<Vec<Option<String>>, String> {
    // our capture ports read from output ports, our playback ports write to input ports
    let wanted = match dir {
        Direction::Input => PortFlags::IS_OUTPUT,
        Direction::Output => PortFlags::IS_INPUT,
    };
    match connect {
        Connect::Nothing => Ok(vec![None; ours]),
        Connect::Physical => {
            let physical = client.ports(
                None,
                Some(AudioIn::default().jack_port_type()),
                wanted | PortFlags::IS_PHYSICAL,
            );
            Ok((0..ours).map(|i| physical.get(i).cloned()).collect())
        }
        Connect::Ports(ports) => {
            let picked = pick(ports, ours)?;
            for p in ports {
                if client.port_by_name(p).is_none() {
                    let candidates = client
                        .ports(None, Some(AudioIn::default().jack_port_type()), wanted)
                        .join(", ");
                    return Err(format!("no JACK port '{p}'; candidates: {candidates}"));
                }
            }
            Ok(picked)
        }
    }
}

/// Channel `i`'s port of a `--connect` list: the `i`-th, or the only one.
fn pick(ports: &[String], ours: usize) -> Result<Vec<Option<String>>, String> {
    if ports.len() > ours.max(1) {
        return Err(format!(
            "--connect names {} ports for {ours} channel(s); give one per channel, or one for all",
            ports.len()
        ));
    }
    Ok((0..ours)
        .map(|i| {
            ports
                .get(i)
                .or(ports.first().filter(|_| ports.len() == 1))
                .cloned()
        })
        .collect())
}

/// Connect our ports (full names, channel order) as `connect` says, on an active client.
/// Returns the connections made, as `from -> to`.
pub fn connect(
    client: &Client,
    dir: Direction,
    ours: &[String],
    connect: &Connect,
) -> Result<Vec<String>, String> {
    let targets = targets(client, dir, ours.len(), connect)?;
    let mut made = Vec::new();
    for (port, target) in ours.iter().zip(targets) {
        let Some(target) = target else { continue };
        let (from, to) = match dir {
            Direction::Input => (target.as_str(), port.as_str()),
            Direction::Output => (port.as_str(), target.as_str()),
        };
        client
            .connect_ports_by_name(from, to)
            .map_err(|e| format!("cannot connect JACK port {from} -> {to}: {e}"))?;
        made.push(format!("{from} -> {to}"));
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_numbered_from_one() {
        assert_eq!(port_name(Direction::Input, 0), "in_1");
        assert_eq!(port_name(Direction::Output, 1), "out_2");
    }

    #[test]
    fn one_port_takes_every_channel() {
        let one = vec!["a:x".to_owned()];
        assert_eq!(pick(&one, 2), Ok(vec![Some("a:x".into()), Some("a:x".into())]));
        let two = vec!["a:x".to_owned(), "a:y".to_owned()];
        assert_eq!(pick(&two, 2), Ok(vec![Some("a:x".into()), Some("a:y".into())]));
        assert_eq!(pick(&two[..1], 1), Ok(vec![Some("a:x".into())]));
        let err = pick(&two, 1).err().unwrap_or_default();
        assert!(err.contains("2 ports for 1 channel"), "{err}");
    }
}
