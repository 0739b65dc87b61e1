//! Socket details of the receive path: a receive buffer big enough for many streams' packets
//! arriving together, and the kernel's count of datagrams it dropped because the buffer was
//! full (so no loss inside this machine goes uncounted).

use std::net::SocketAddr;

/// Receive buffer asked for: 256 streams × a few 10 ms bursts, with the kernel's per-datagram
/// overhead (about 1 KB each).
pub const RECV_BUFFER_BYTES: usize = 4 << 20;

/// Enlarge the socket's receive buffer. With privileges (CAP_NET_ADMIN, e.g. root) the
/// system limit `net.core.rmem_max` is bypassed; otherwise the kernel caps the request.
/// Returns the size the kernel granted (it reports twice the usable size).
pub fn grow_receive_buffer(socket: &tokio::net::UdpSocket) -> usize {
    let sock = socket2::SockRef::from(socket);
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let size = RECV_BUFFER_BYTES as libc::c_int;
        // SAFETY: setsockopt on a valid socket with a pointer to an int of the right size.
        let forced = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if forced != 0 {
            let _ = sock.set_recv_buffer_size(RECV_BUFFER_BYTES);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = sock.set_recv_buffer_size(RECV_BUFFER_BYTES);
    sock.recv_buffer_size().unwrap_or(0)
}

/// Datagrams the kernel dropped for the UDP socket bound to `local` (the `drops` column of
/// /proc/net/udp or udp6). `None` where that is not available.
pub fn kernel_drops(local: SocketAddr) -> Option<u64> {
    let file = if local.is_ipv4() {
        "/proc/net/udp"
    } else {
        "/proc/net/udp6"
    };
    let text = std::fs::read_to_string(file).ok()?;
    let port = format!(":{:04X}", local.port());
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode ref pointer drops
        if cols.get(1).is_some_and(|a| a.ends_with(&port)) {
            cols.last()?.parse().ok()
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_of_a_bound_socket_are_readable() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let granted = grow_receive_buffer(&s);
            assert!(granted > 0);
            let local = s.local_addr().unwrap();
            if std::path::Path::new("/proc/net/udp").exists() {
                assert_eq!(kernel_drops(local), Some(0));
            }
        });
    }
}
