//! UDP sockets: bound with a receive buffer big enough for bursts, and the
//! kernel's own drops (a full receive buffer) read back for /metrics — drops
//! that happen before the server sees a packet and would otherwise be invisible.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Bind a UDP socket asking the kernel for `receive_buffer` bytes of receive
/// buffer (`SO_RCVBUF`). The kernel caps the request at `net.core.rmem_max`;
/// a warning says so, and how to raise it. Returns the socket and the buffer
/// granted.
pub fn bind_udp(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<(UdpSocket, usize)> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if receive_buffer > 0 {
        // Not fatal: the default buffer still works, only bursts drop sooner.
        let _ = socket.set_recv_buffer_size(receive_buffer);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    // Linux reports twice what it keeps for data (the rest is bookkeeping).
    let granted = socket.recv_buffer_size().unwrap_or(0) / 2;
    if receive_buffer > 0 && granted < receive_buffer {
        tracing::warn!(
            %addr,
            asked = receive_buffer,
            granted,
            "the kernel capped the UDP receive buffer; bursts may be dropped before the server sees them \
             (raise it with `sysctl -w net.core.rmem_max=...`)"
        );
    }
    Ok((UdpSocket::from_std(socket.into())?, granted))
}

/// Datagrams the kernel dropped on `socket` so far (the `drops` column of
/// /proc/net/udp and udp6 for its inode); `None` where that cannot be read.
pub fn kernel_drops(socket: &UdpSocket) -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).ok()?;
        let link = link.to_str()?;
        let inode = link.strip_prefix("socket:[")?.strip_suffix(']')?;
        for table in ["/proc/net/udp", "/proc/net/udp6"] {
            let Ok(text) = std::fs::read_to_string(table) else {
                continue;
            };
            if let Some(drops) = drops_of(&text, inode) {
                return Some(drops);
            }
        }
        None
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = socket;
        None
    }
}

/// The `drops` column of the row for `inode` in a /proc/net/udp table.
fn drops_of(table: &str, inode: &str) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        (cols.get(9) == Some(&inode)).then(|| cols.get(12)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_drops_column() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
            1: 0100007F:0714 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
            2: 0100007F:0715 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0\n";
        assert_eq!(drops_of(table, "4242"), Some(17));
        assert_eq!(drops_of(table, "4243"), Some(0));
        assert_eq!(drops_of(table, "9"), None);
    }

    #[tokio::test]
    async fn a_bound_socket_reports_its_buffer_and_drops() {
        let (socket, granted) = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(granted > 0);
        #[cfg(target_os = "linux")]
        assert_eq!(kernel_drops(&socket), Some(0));
    }
}
