//! Host ports for published container ports. Packets to a published port are DNATed by the
//! firewall (see [`crate::nft`]) before any local socket sees them; the daemon still binds
//! (without listening) a socket on each one, so that a port another program holds is refused
//! before the container starts, and no program can take it while the container runs.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::OwnedFd;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, getsockname, socket};

/// A host port held for a container.
#[derive(Debug)]
pub enum Held {
    Tcp(OwnedFd),
    Udp(UdpSocket),
}

/// Binds `ip:port/proto` (port 0: the kernel picks a free one) and returns the socket and the
/// port. The error names the address as Docker does.
pub fn hold(ip: Ipv4Addr, port: u16, proto: &str) -> Result<(Held, u16), String> {
    let addr = SocketAddrV4::new(ip, port);
    match proto {
        "udp" => {
            let s = UdpSocket::bind(addr).map_err(|e| format!("listen udp4 {addr}: bind: {}", msg(&e)))?;
            let p = s.local_addr().map(|a| a.port()).unwrap_or(port);
            Ok((Held::Udp(s), p))
        }
        "tcp" | "sctp" => {
            let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
                .map_err(|e| format!("socket: {e}"))?;
            bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(addr)).map_err(|e| {
                format!("listen tcp4 {addr}: bind: {}", msg(&std::io::Error::from_raw_os_error(e as i32)))
            })?;
            let p = getsockname::<SockaddrIn>(std::os::fd::AsRawFd::as_raw_fd(&fd)).map(|a| a.port()).unwrap_or(port);
            Ok((Held::Tcp(fd), p))
        }
        other => Err(format!("invalid protocol {other}")),
    }
}

fn msg(e: &std::io::Error) -> String {
    if e.raw_os_error() == Some(libc::EADDRINUSE) { "address already in use".into() } else { e.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_cannot_be_taken_twice() {
        let (_a, port) = hold(Ipv4Addr::LOCALHOST, 0, "tcp").expect("hold a free port");
        assert_ne!(port, 0);
        let e = hold(Ipv4Addr::LOCALHOST, port, "tcp").expect_err("taken");
        assert!(e.contains("address already in use"), "{e}");
        let (_u, uport) = hold(Ipv4Addr::LOCALHOST, 0, "udp").expect("hold udp");
        assert!(hold(Ipv4Addr::LOCALHOST, uport, "udp").is_err());
    }
}
