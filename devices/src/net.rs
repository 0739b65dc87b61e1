//! Multicast socket plumbing both binaries share (IPv4 and IPv6): naming an interface,
//! the sender's TTL / hop limit and outgoing interface, and the receiver's group
//! membership, any-source (ASM) or source-specific (SSM, RFC 4607).
//!
//! `socket2` does most of it. Two things it lacks are done with `setsockopt` here: the
//! IPv4 outgoing interface by index (`IP_MULTICAST_IF` with `ip_mreqn`, so `--multicast-if
//! lo` works without an address), and source-specific joins by interface index for both
//! families (`MCAST_JOIN_SOURCE_GROUP`, RFC 3678); an IPv4 SSM join on an interface given
//! by address is socket2's `IP_ADD_SOURCE_MEMBERSHIP`.
//!
//! A receiver socket on a group sets `SO_REUSEADDR` before binding, so that several
//! receivers on one host get every packet, and binds to the group address itself (on
//! Linux that keeps other groups on the same port out).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockRef, Socket, Type};

/// A network interface, as `--iface` / `--multicast-if` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interface {
    Index(u32),
    Address(IpAddr),
}

/// `NAME` (e.g. `eth0`, `lo`), an interface index, or one of the interface's addresses.
pub fn parse_interface(s: &str) -> Result<Interface, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Interface::Address(ip));
    }
    if let Ok(i) = s.parse::<u32>() {
        return Ok(Interface::Index(i));
    }
    let name = std::ffi::CString::new(s).map_err(|_| format!("'{s}' is not an interface name"))?;
    // SAFETY: a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(name.as_ptr()) } {
        0 => Err(format!("no network interface named '{s}' (see `ip link`)")),
        i => Ok(Interface::Index(i)),
    }
}

impl Interface {
    fn index(self) -> u32 {
        match self {
            Interface::Index(i) => i,
            Interface::Address(_) => 0,
        }
    }
}

/// Sending to `dest`: its TTL / hop limit (multicast: `IP_MULTICAST_TTL` /
/// `IPV6_MULTICAST_HOPS`; unicast: the ordinary one) and, for a group, the interface
/// that carries it.
pub fn configure_sender(
    socket: SockRef<'_>,
    dest: SocketAddr,
    ttl: Option<u32>,
    iface: Option<Interface>,
) -> io::Result<()> {
    let group = dest.ip().is_multicast();
    match (dest.ip(), ttl) {
        (IpAddr::V4(_), Some(t)) if group => socket.set_multicast_ttl_v4(t)?,
        (IpAddr::V4(_), Some(t)) => socket.set_ttl_v4(t)?,
        (IpAddr::V6(_), Some(t)) if group => socket.set_multicast_hops_v6(t)?,
        (IpAddr::V6(_), Some(t)) => socket.set_unicast_hops_v6(t)?,
        _ => {}
    }
    match (dest.ip(), iface) {
        (_, None) => {}
        (_, Some(_)) if !group => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--multicast-if is for a multicast destination",
            ))
        }
        (IpAddr::V4(_), Some(Interface::Address(IpAddr::V4(a)))) => socket.set_multicast_if_v4(&a)?,
        (IpAddr::V4(_), Some(Interface::Index(i))) => set_multicast_if_v4_index(&socket, i)?,
        (IpAddr::V6(_), Some(Interface::Index(i))) => socket.set_multicast_if_v6(i)?,
        (_, Some(Interface::Address(a))) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{a} is not an interface of the destination's family (IPv6: give the interface name)"
                ),
            ))
        }
    }
    Ok(())
}

/// `IP_MULTICAST_IF` by interface index (Linux `ip_mreqn`).
fn set_multicast_if_v4_index(socket: &SockRef<'_>, index: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: index as libc::c_int,
    };
    // SAFETY: setsockopt on a valid socket with a pointer to a struct of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            &mreqn as *const libc::ip_mreqn as *const libc::c_void,
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A group to receive: any source, or only `source` (SSM), on `iface` (else the one the
/// kernel routes the group to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Membership {
    pub group: IpAddr,
    pub source: Option<IpAddr>,
    pub iface: Option<Interface>,
}

/// A non-blocking UDP socket on `group_port` (a group address and port) that has joined
/// the group as `m` says.
pub fn bind_group(port: u16, m: &Membership) -> io::Result<std::net::UdpSocket> {
    let domain = if m.group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    if socket.bind(&SocketAddr::new(m.group, port).into()).is_err() {
        let any: IpAddr = if m.group.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        socket.bind(&SocketAddr::new(any, port).into())?;
    }
    join(&socket, m)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn join(socket: &Socket, m: &Membership) -> io::Result<()> {
    let family_mismatch = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "the interface address, source and group must be of one family",
        )
    };
    match (m.group, m.source, m.iface) {
        (IpAddr::V4(g), None, iface) => {
            let iface = match iface {
                None => InterfaceIndexOrAddress::Address(Ipv4Addr::UNSPECIFIED),
                Some(Interface::Index(i)) => InterfaceIndexOrAddress::Index(i),
                Some(Interface::Address(IpAddr::V4(a))) => InterfaceIndexOrAddress::Address(a),
                Some(Interface::Address(IpAddr::V6(_))) => return Err(family_mismatch()),
            };
            socket.join_multicast_v4_n(&g, &iface)
        }
        (IpAddr::V4(g), Some(IpAddr::V4(s)), Some(Interface::Address(IpAddr::V4(a)))) => {
            socket.join_ssm_v4(&s, &g, &a)
        }
        (IpAddr::V6(g), None, iface) => match iface {
            Some(Interface::Address(_)) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an IPv6 group is joined on an interface given by name or index",
            )),
            _ => socket.join_multicast_v6(&g, iface.map_or(0, Interface::index)),
        },
        (g, Some(s), iface) if g.is_ipv4() == s.is_ipv4() => {
            if matches!(iface, Some(Interface::Address(_))) && g.is_ipv6() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "an IPv6 group is joined on an interface given by name or index",
                ));
            }
            join_source_group(socket, g, s, iface.map_or(0, Interface::index))
        }
        _ => Err(family_mismatch()),
    }
}

/// `MCAST_JOIN_SOURCE_GROUP` (RFC 3678): receive `group` from `source` only, on the
/// interface with `index` (0: the kernel's choice). IPv4 and IPv6 alike.
fn join_source_group(socket: &Socket, group: IpAddr, source: IpAddr, index: u32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let storage = |ip: IpAddr| {
        let addr: socket2::SockAddr = SocketAddr::new(ip, 0).into();
        // SAFETY: sockaddr_storage is plain data, all-zero is a valid value.
        let mut s: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: `addr` holds at most a sockaddr_storage's worth of bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(
                addr.as_ptr() as *const u8,
                &mut s as *mut libc::sockaddr_storage as *mut u8,
                addr.len() as usize,
            )
        };
        s
    };
    let req = libc::group_source_req {
        gsr_interface: index,
        gsr_group: storage(group),
        gsr_source: storage(source),
    };
    let level = if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    };
    // SAFETY: setsockopt on a valid socket with a pointer to a struct of the given size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            libc::MCAST_JOIN_SOURCE_GROUP,
            &req as *const libc::group_source_req as *const libc::c_void,
            std::mem::size_of::<libc::group_source_req>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interfaces_by_name_index_or_address() {
        assert_eq!(parse_interface("lo").ok(), Some(Interface::Index(1)));
        assert_eq!(parse_interface("3"), Ok(Interface::Index(3)));
        assert_eq!(
            parse_interface("127.0.0.1"),
            Ok(Interface::Address(IpAddr::from([127, 0, 0, 1])))
        );
        assert!(parse_interface("no-such-if0")
            .unwrap_err()
            .contains("no network interface"));
    }

    /// Joins need a multicast route, which only the namespaced end-to-end tests set up;
    /// here: a family mismatch is an error, not a panic.
    #[test]
    fn mismatched_families_are_refused() {
        let m = Membership {
            group: "239.1.2.3".parse().unwrap(),
            source: Some("::1".parse().unwrap()),
            iface: None,
        };
        assert!(bind_group(0, &m).is_err());
    }
}
