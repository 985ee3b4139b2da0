//! A small synchronous rtnetlink client: the handful of requests berth needs (bridges, veth
//! pairs, addresses, routes), built with `netlink-packet-route` and sent over a blocking
//! `netlink-sys` socket. A socket belongs to the network namespace it was opened in, so a
//! thread that has entered a container's namespace can still hold one opened on the host.

use std::net::Ipv4Addr;
use std::os::fd::RawFd;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::Socket;
use netlink_sys::protocols::NETLINK_ROUTE;

/// struct nlmsghdr: length (u32), type (u16), flags (u16), sequence (u32), port (u32).
const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;

/// An rtnetlink socket in the namespace of the thread that opened it.
pub struct Netlink {
    sock: Socket,
    seq: u32,
}

/// A failed request: the operation and the kernel's errno.
#[derive(Debug)]
pub struct NlError {
    pub op: String,
    pub errno: i32,
    pub message: String,
}

impl std::fmt::Display for NlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.op, self.message)
    }
}

type Result<T> = std::result::Result<T, NlError>;

fn io_err(op: &str, e: std::io::Error) -> NlError {
    NlError { op: op.to_owned(), errno: e.raw_os_error().unwrap_or(libc::EIO), message: e.to_string() }
}

impl Netlink {
    pub fn open() -> Result<Self> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|e| io_err("open netlink socket", e))?;
        sock.bind_auto().map_err(|e| io_err("bind netlink socket", e))?;
        Ok(Netlink { sock, seq: 0 })
    }

    /// Sends one request, asking for an ACK; returns its sequence number.
    fn send(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<u32> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.sock.send(&buf, 0).map_err(|e| io_err(op, e))?;
        Ok(self.seq)
    }

    /// Reads the replies to request `seq` until its ACK (or the end of a dump), handing each
    /// other message of it to `each` with its type, whole (header included). An error reply
    /// ends the read with its errno. Only the headers are decoded here.
    fn replies(&mut self, op: &str, seq: u32, mut each: impl FnMut(u16, &[u8]) -> Result<()>) -> Result<()> {
        let mut rbuf = vec![0u8; 64 * 1024];
        loop {
            let n = self.sock.recv(&mut &mut rbuf[..], 0).map_err(|e| io_err(op, e))?;
            let mut off = 0;
            while off + NLMSG_HDR_LEN <= n {
                let h = &rbuf[off..n];
                let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
                let kind = u16::from_ne_bytes([h[4], h[5]]);
                let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
                if len < NLMSG_HDR_LEN || len > h.len() {
                    return Err(NlError {
                        op: op.to_owned(),
                        errno: libc::EIO,
                        message: format!("bad reply length {len}"),
                    });
                }
                let msg = &h[..len];
                if mseq == seq {
                    match kind {
                        // struct nlmsgerr: the (negative) errno first; 0 is the ACK.
                        NLMSG_ERROR if len >= NLMSG_HDR_LEN + 4 => {
                            let b = &msg[NLMSG_HDR_LEN..];
                            return match -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]) {
                                0 => Ok(()),
                                errno => Err(NlError {
                                    op: op.to_owned(),
                                    errno,
                                    message: std::io::Error::from_raw_os_error(errno).to_string(),
                                }),
                            };
                        }
                        NLMSG_DONE => return Ok(()),
                        _ => each(kind, msg)?,
                    }
                }
                off += (len + 3) & !3;
            }
        }
    }

    /// Sends one request and collects the replies until the ACK (or the end of a dump).
    fn request(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
        let seq = self.send(op, msg, flags)?;
        let mut out = Vec::new();
        self.replies(op, seq, |_, raw| {
            let msg = NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw).map_err(|e| NlError {
                op: op.to_owned(),
                errno: libc::EIO,
                message: format!("decode reply: {e}"),
            })?;
            if let NetlinkPayload::InnerMessage(m) = msg.payload {
                out.push(m);
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The index of the link named `name`, or None.
    ///
    /// The kernel answers with the link's whole description: for a bridge, well over a hundred
    /// attributes, which `netlink-packet-route` parses slowly (it formats its error contexts
    /// as it goes: half a millisecond a bridge). Only the header is read here, by hand.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        let op = format!("look up link `{name}`");
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        let seq = self.send(&op, RouteNetlinkMessage::GetLink(m), 0)?;
        let mut index = None;
        let read = self.replies(&op, seq, |kind, raw| {
            // struct ifinfomsg after the header: family, pad, type (u16), then the index (i32).
            if kind == RTM_NEWLINK && raw.len() >= NLMSG_HDR_LEN + 8 {
                let b = &raw[NLMSG_HDR_LEN + 4..NLMSG_HDR_LEN + 8];
                index = Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
            }
            Ok(())
        });
        match read {
            Ok(()) => Ok(index),
            Err(e) if e.errno == libc::ENODEV => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Names of all links, with their controller (bridge) index.
    pub fn links(&mut self) -> Result<Vec<(u32, String, Option<u32>)>> {
        let m = LinkMessage::default();
        let v = self.request("list links", RouteNetlinkMessage::GetLink(m), NLM_F_DUMP)?;
        Ok(v.into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let name = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    })?;
                    let master = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::Controller(i) => Some(*i),
                        _ => None,
                    });
                    Some((l.header.index, name, master))
                }
                _ => None,
            })
            .collect())
    }

    /// Creates a bridge with the MAC address `mac`. A bridge given its address keeps it; one
    /// left to the kernel takes the lowest of its ports' addresses, and so changes as
    /// containers come and go, under the feet of every container's ARP entry for its gateway.
    pub fn add_bridge(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(&format!("create bridge `{name}`"), RouteNetlinkMessage::NewLink(m), NLM_F_CREATE | NLM_F_EXCL)
            .map(|_| ())
    }

    /// Creates a veth pair in this socket's namespace: `name` (with `mac`, or a random one)
    /// here, `peer` moved into the namespace open at `peer_netns`.
    pub fn add_veth(&mut self, name: &str, mac: Option<[u8; 6]>, peer: &str, peer_netns: RawFd) -> Result<()> {
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        p.attributes.push(LinkAttribute::NetNsFd(peer_netns));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        if let Some(mac) = mac {
            m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        }
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(
            &format!("create veth pair `{name}`/`{peer}`"),
            RouteNetlinkMessage::NewLink(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(|_| ())
    }

    /// Brings a link up, and puts it under `controller` (a bridge) when given.
    pub fn set_up(&mut self, index: u32, controller: Option<u32>) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(c) = controller {
            m.attributes.push(LinkAttribute::Controller(c));
        }
        self.request(&format!("bring up link {index}"), RouteNetlinkMessage::SetLink(m), 0).map(|_| ())
    }

    /// Names a link that is down `name` (when given), gives it `mac` and brings it up, in one
    /// request (the kernel renames and readdresses before it changes the flags).
    pub fn set_up_as(&mut self, index: u32, name: Option<&str>, mac: [u8; 6]) -> Result<()> {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        if let Some(n) = name {
            m.attributes.push(LinkAttribute::IfName(n.to_owned()));
        }
        m.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.request(&format!("set up link {index}"), RouteNetlinkMessage::SetLink(m), 0).map(|_| ())
    }

    pub fn del_link(&mut self, name: &str) -> Result<bool> {
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(&format!("delete link `{name}`"), RouteNetlinkMessage::DelLink(m), 0) {
            Ok(_) => Ok(true),
            Err(e) if e.errno == libc::ENODEV => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Adds `addr/prefix` to a link; an address already there is fine.
    pub fn add_addr(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<()> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr.into()));
        m.attributes.push(AddressAttribute::Address(addr.into()));
        let bits = u32::from(addr);
        let mask = if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) };
        m.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(bits | !mask)));
        match self.request(
            &format!("add address {addr}/{prefix}"),
            RouteNetlinkMessage::NewAddress(m),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(()),
            Err(e) if e.errno == libc::EEXIST => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The IPv4 addresses on a link.
    pub fn addrs(&mut self, index: u32) -> Result<Vec<(Ipv4Addr, u8)>> {
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet;
        let v = self.request("list addresses", RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP)?;
        Ok(v.into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Local(std::net::IpAddr::V4(ip)) => Some((*ip, a.header.prefix_len)),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut m = RouteMessage::default();
        m.header = RouteHeader {
            address_family: AddressFamily::Inet,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..Default::default()
        };
        m.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(
            &format!("add default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(m),
            NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_index_reads_the_index_and_tells_a_missing_link() {
        let mut nl = Netlink::open().expect("netlink");
        for name in link_names_in_sysfs() {
            let want: u32 = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .expect("ifindex");
            assert_eq!(nl.link_index(&name).expect("lookup"), Some(want), "{name}");
        }
        assert_eq!(nl.link_index("nosuchlink0").expect("lookup"), None);
        // The socket is still in step after a miss.
        assert_eq!(nl.link_index("lo").expect("lookup"), Some(1));
        // A name the kernel refuses outright is an error, not "missing".
        assert!(nl.link_index(&"x".repeat(40)).is_err());
    }

    fn link_names_in_sysfs() -> Vec<String> {
        std::fs::read_dir("/sys/class/net")
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default()
    }
}
