//! `--allow CIDR …`, which both binaries take: the networks whose datagrams are heard.
//! The receiver applies it to everything that arrives (RTP and RTCP), the sender to the
//! RTCP that comes back (receiver reports). Anything from elsewhere is counted by the
//! caller and dropped. An empty list hears every address; IPv4-mapped IPv6 addresses
//! (a dual-stack socket) are judged as the IPv4 address they carry.

use std::net::IpAddr;

pub use ipnet::IpNet;

/// The networks heard (empty: all).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allow(Vec<IpNet>);

impl Allow {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Allow(nets)
    }

    /// Whether a datagram from `ip` is heard.
    pub fn hears(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.is_empty() || self.0.iter().any(|n| n.contains(&ip))
    }
}

/// One `--allow` value: a network in CIDR notation, or one address.
pub fn parse_allow(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
        .map(|n| n.trunc())
        .map_err(|_| format!("'{s}' is not a network (CIDR like 192.168.1.0/24 or fd00::/8) or an address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_takes_networks_and_addresses() {
        let n = parse_allow("192.168.1.77/24").unwrap();
        assert_eq!(n.to_string(), "192.168.1.0/24");
        assert_eq!(parse_allow("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_allow("fd00::/8").unwrap().to_string(), "fd00::/8");
        assert!(parse_allow("10.0.0.0/33").is_err());
        assert!(parse_allow("somewhere").is_err());
    }

    #[test]
    fn hears_listed_networks_and_mapped_addresses() {
        let a = Allow::new(vec![parse_allow("10.0.0.0/8").unwrap()]);
        assert!(a.hears("10.9.8.7".parse().unwrap()));
        assert!(a.hears("::ffff:10.9.8.7".parse().unwrap()));
        assert!(!a.hears("127.0.0.1".parse().unwrap()));
        assert!(Allow::default().hears("127.0.0.1".parse().unwrap()));
    }
}
