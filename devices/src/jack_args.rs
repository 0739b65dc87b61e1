//! The JACK flags both binaries share: `--jack-name NAME`, `--connect PORT…`, `--no-connect`.
//! They become the [`JackOptions`] of patchcord's own JACK host ([`mod@crate::jack_host`]),
//! which names its client and makes its connections itself, at activation; once the
//! stream runs, [`JackArgs::report`] says what was made of them.

use crate::jack_host::{Connect, JackOptions};
use crate::OpenedDevice;

/// JACK client name and connection flags, shared by both binaries.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct JackArgs {
    /// JACK only: the client name (default: patchcord-send / patchcord-recv). jackd appends
    /// -01, -02… when the name is taken; the name given is printed.
    #[arg(long, value_name = "NAME", value_parser = parse_client_name)]
    pub jack_name: Option<String>,
    /// JACK only: connect the ports (in_1, in_2… / out_1, out_2…) to these ports instead of
    /// the physical ones, one per channel in order (one PORT for every channel when only one
    /// is given). Capture reads from them, playback writes to them.
    #[arg(long, value_name = "PORT", num_args = 1.., conflicts_with = "no_connect")]
    pub connect: Vec<String>,
    /// JACK only: leave the ports unconnected (connect them yourself, e.g. with
    /// jack_connect or a patchbay).
    #[arg(long)]
    pub no_connect: bool,
}

impl JackArgs {
    /// Whether any JACK flag was given (for the note when the host is not JACK).
    pub fn given(&self) -> bool {
        self.jack_name.is_some() || self.no_connect || !self.connect.is_empty()
    }

    /// Once `program`'s stream runs on `opened`: on JACK, the client's name (jackd may
    /// have suffixed it) and each connection made, or that there was none to make;
    /// elsewhere, that the JACK flags given are ignored.
    pub fn report(&self, program: &str, opened: &OpenedDevice) {
        let Some(jack) = &opened.jack else {
            if self.given() {
                crate::say!(
                    "{program}: note: --jack-name / --connect / --no-connect concern JACK only; ignored on {}",
                    opened.host_name
                );
            }
            return;
        };
        crate::say!("{program}: JACK client '{}'", jack.client_name());
        let made = jack.connections();
        for c in &made {
            crate::say!("{program}: JACK: connected {c}");
        }
        if made.is_empty() && !self.no_connect {
            crate::say!(
                "{program}: JACK: no physical ports to connect to; connect the ports with --connect or jack_connect"
            );
        }
    }

    /// The host options, with `default_name` when `--jack-name` is not given.
    pub fn options(&self, default_name: &str) -> JackOptions {
        let connect = if self.no_connect {
            Connect::Nothing
        } else if self.connect.is_empty() {
            Connect::Physical
        } else {
            Connect::Ports(self.connect.clone())
        };
        JackOptions {
            client_name: self.jack_name.clone().unwrap_or_else(|| default_name.to_owned()),
            connect,
        }
    }
}

/// JACK client names: 1 to 63 bytes (JACK's limit with its `-NN` suffix room left to it),
/// no `:` (it separates client and port in a port name).
fn parse_client_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 63 {
        return Err("a JACK client name has 1 to 63 characters".into());
    }
    if s.contains(':') {
        return Err("a JACK client name cannot contain ':'".into());
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_become_options() {
        let args = JackArgs::default();
        assert_eq!(args.options("patchcord-send").client_name, "patchcord-send");
        assert_eq!(args.options("x").connect, Connect::Physical);
        let args = JackArgs {
            jack_name: Some("studio_a".into()),
            connect: vec!["a:b".into()],
            no_connect: false,
        };
        let o = args.options("patchcord-recv");
        assert_eq!(o.client_name, "studio_a");
        assert_eq!(o.connect, Connect::Ports(vec!["a:b".into()]));
        let args = JackArgs {
            no_connect: true,
            ..JackArgs::default()
        };
        assert_eq!(args.options("x").connect, Connect::Nothing);
    }

    #[test]
    fn client_names_are_checked() {
        assert!(parse_client_name("studio_a").is_ok());
        assert!(parse_client_name("").is_err());
        assert!(parse_client_name("a:b").is_err());
        assert!(parse_client_name(&"x".repeat(64)).is_err());
    }
}
