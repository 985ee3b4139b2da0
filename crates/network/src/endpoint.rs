//! Bridges and container endpoints: a Linux bridge per network with the gateway address on
//! it, and per container a veth pair whose inside end (`eth0`, `eth1`, …) gets the address,
//! Docker's MAC for it and the default route, while the outside end joins the bridge.
//!
//! A container's first interface usually comes made with its namespace from the pool
//! ([`crate::pool::PreparedVeth`]), with a netlink socket opened inside: finishing it needs no
//! namespace change. Other namespace work (more interfaces, the DNS server's sockets) happens on
//! a short-lived thread that enters the container's namespace with `setns` (a thread's
//! namespace is its own; the caller's is never touched). A netlink socket opened before the
//! `setns` stays in the host's namespace, so one thread configures both ends.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::sched::{CloneFlags, setns};

use crate::NetworkError;
use crate::netlink::Netlink;
use crate::pool::{PREPARED_IFNAME, PreparedVeth};
use crate::subnet::Subnet;

fn err(op: impl Into<String>) -> impl Fn(String) -> NetworkError {
    let op = op.into();
    move |message| NetworkError::Setup { op: op.clone(), message }
}

fn write_proc(path: &str, value: &str) -> Result<(), String> {
    std::fs::write(path, value).map_err(|e| format!("write {path}: {e}"))
}

/// Creates the bridge if it is missing, puts the gateway address on it and brings it up.
/// Also turns on IP forwarding, and `route_localnet` on the bridge so that ports published on
/// 127.0.0.1 can be forwarded to it.
pub fn ensure_bridge(name: &str, gateway: Ipv4Addr, subnet: Subnet) -> Result<(), NetworkError> {
    let e = err(format!("set up bridge `{name}`"));
    let mut nl = Netlink::open().map_err(|x| e(x.to_string()))?;
    let index = match nl.link_index(name).map_err(|x| e(x.to_string()))? {
        Some(i) => i,
        None => {
            nl.add_bridge(name, random_mac()).map_err(|x| e(x.to_string()))?;
            nl.link_index(name).map_err(|x| e(x.to_string()))?.ok_or_else(|| e("vanished after creation".into()))?
        }
    };
    nl.add_addr(index, gateway, subnet.prefix).map_err(|x| e(x.to_string()))?;
    nl.set_up(index, None).map_err(|x| e(x.to_string()))?;
    if std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").map(|s| s.trim() != "1").unwrap_or(true) {
        write_proc("/proc/sys/net/ipv4/ip_forward", "1").map_err(&e)?;
    }
    write_proc(&format!("/proc/sys/net/ipv4/conf/{name}/route_localnet"), "1").map_err(&e)?;
    Ok(())
}

/// Deletes a link (a bridge, or a veth pair by either end); a missing one is fine.
pub fn delete_link(name: &str) -> Result<(), NetworkError> {
    let e = err(format!("delete link `{name}`"));
    let mut nl = Netlink::open().map_err(|x| e(x.to_string()))?;
    nl.del_link(name).map_err(|x| e(x.to_string()))?;
    Ok(())
}

/// Whether a link exists on the host.
pub fn link_exists(name: &str) -> bool {
    Netlink::open().and_then(|mut nl| nl.link_index(name)).ok().flatten().is_some()
}

/// Names of the host's links.
pub fn link_names() -> Vec<String> {
    Netlink::open()
        .and_then(|mut nl| nl.links())
        .map(|v| v.into_iter().map(|(_, n, _)| n).collect())
        .unwrap_or_default()
}

/// One interface to give a container.
#[derive(Debug, Clone)]
pub struct Attach {
    pub bridge: String,
    /// The host end's name (`veth` and 7 hex digits, as Docker names them).
    pub host_veth: String,
    /// The name inside the container (`eth0`, …).
    pub ifname: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub mac: [u8; 6],
    /// The default route's gateway (None on an internal network, or for a second interface).
    pub gateway: Option<Ipv4Addr>,
}

/// The embedded DNS server's sockets, bound to 127.0.0.11:53 inside a container's namespace.
pub struct DnsSockets {
    pub udp: UdpSocket,
    pub tcp: TcpListener,
}

/// The address the embedded DNS server listens on inside each container, as in Docker.
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Gives the container whose namespace is pinned at `netns` the interfaces in `attach`, and,
/// with `dns`, opens the embedded DNS server's sockets in it. With `prepared` (the veth pair the
/// namespace came with from the pool), the first interface is that pair, finished here without
/// entering the namespace; `attach[0].host_veth` must be its host end. On error, the veths made
/// so far are deleted.
pub fn attach(
    netns: &Path,
    attach: &[Attach],
    dns: bool,
    prepared: Option<PreparedVeth>,
) -> Result<Option<DnsSockets>, NetworkError> {
    let e = err(format!("connect container namespace `{}`", netns.display()));
    let fail = |m: String| {
        for a in attach {
            let _ = delete_link(&a.host_veth);
        }
        e(m)
    };
    let mut rest = attach;
    if let Some(p) = prepared {
        let Some((first, others)) = attach.split_first() else {
            return Err(e("a prepared veth pair with no interface to make of it".into()));
        };
        if first.host_veth != p.host {
            return Err(fail(format!("the prepared veth pair is `{}`, not `{}`", p.host, first.host_veth)));
        }
        finish_prepared(p, first).map_err(&fail)?;
        rest = others;
    }
    if rest.is_empty() && !dns {
        return Ok(None);
    }
    let ns = std::fs::File::open(netns).map_err(|x| fail(x.to_string()))?;
    let list = rest.to_vec();
    let result = std::thread::spawn(move || -> Result<Option<DnsSockets>, String> {
        let mut host = Netlink::open().map_err(|x| x.to_string())?;
        let host_ns = std::fs::File::open("/proc/thread-self/ns/net").map_err(|x| format!("open host netns: {x}"))?;
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|x| format!("setns: {x}"))?;
        let mut inside = Netlink::open().map_err(|x| x.to_string())?;
        for a in &list {
            inside.add_veth(&a.ifname, Some(a.mac), &a.host_veth, host_ns.as_raw_fd()).map_err(|x| x.to_string())?;
            let idx = inside
                .link_index(&a.ifname)
                .map_err(|x| x.to_string())?
                .ok_or_else(|| format!("`{}` vanished", a.ifname))?;
            inside.add_addr(idx, a.ip, a.prefix).map_err(|x| x.to_string())?;
            inside.set_up(idx, None).map_err(|x| x.to_string())?;
            if let Some(gw) = a.gateway {
                inside.add_default_route(gw).map_err(|x| x.to_string())?;
            }
            let hidx = host
                .link_index(&a.host_veth)
                .map_err(|x| x.to_string())?
                .ok_or_else(|| format!("`{}` vanished", a.host_veth))?;
            join_bridge(&mut host, hidx, a)?;
        }
        if !dns {
            return Ok(None);
        }
        let udp = UdpSocket::bind((DNS_ADDR, 53)).map_err(|x| format!("bind {DNS_ADDR}:53/udp: {x}"))?;
        let tcp = TcpListener::bind((DNS_ADDR, 53)).map_err(|x| format!("bind {DNS_ADDR}:53/tcp: {x}"))?;
        udp.set_nonblocking(true).map_err(|x| x.to_string())?;
        tcp.set_nonblocking(true).map_err(|x| x.to_string())?;
        Ok(Some(DnsSockets { udp, tcp }))
    })
    .join()
    .unwrap_or_else(|_| Err("namespace thread panicked".into()));
    result.map_err(fail)
}

/// Makes a container's first interface of the veth pair its namespace came with: `eth0` gets
/// its name, MAC, address and the default route over the socket opened inside the namespace,
/// and the host end joins the bridge. What [`attach`] does for a pair it makes, less making it.
fn finish_prepared(p: PreparedVeth, a: &Attach) -> Result<(), String> {
    let PreparedVeth { host_index, inner_index, mut inner, .. } = p;
    let rename = (a.ifname != PREPARED_IFNAME).then_some(a.ifname.as_str());
    inner.set_up_as(inner_index, rename, a.mac).map_err(|x| x.to_string())?;
    inner.add_addr(inner_index, a.ip, a.prefix).map_err(|x| x.to_string())?;
    if let Some(gw) = a.gateway {
        inner.add_default_route(gw).map_err(|x| x.to_string())?;
    }
    let mut host = Netlink::open().map_err(|x| x.to_string())?;
    join_bridge(&mut host, host_index, a)
}

/// Brings the host end of `a`'s veth pair (link `host_index`) up on `a`'s bridge, in hairpin
/// mode: a container reaching its own published port gets the reply back through the port it
/// came in on.
fn join_bridge(host: &mut Netlink, host_index: u32, a: &Attach) -> Result<(), String> {
    let br = host
        .link_index(&a.bridge)
        .map_err(|x| x.to_string())?
        .ok_or_else(|| format!("bridge `{}` does not exist", a.bridge))?;
    host.set_up(host_index, Some(br)).map_err(|x| x.to_string())?;
    let _ = std::fs::write(format!("/sys/class/net/{}/brport/hairpin_mode", a.host_veth), "1");
    Ok(())
}

/// Opens the embedded DNS server's sockets in an existing namespace (after a daemon restart).
pub fn dns_sockets(netns: &Path) -> Result<DnsSockets, NetworkError> {
    attach(netns, &[], true, None)?.ok_or_else(|| err("open dns sockets")("no sockets".into()))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut b);
    }
    b
}

/// A random host-side veth name.
pub fn veth_name() -> String {
    format!("veth{:07x}", u32::from_le_bytes(random()) & 0x0fff_ffff)
}

/// A random unicast, locally administered MAC address (as Docker gives its bridges).
pub fn random_mac() -> [u8; 6] {
    let mut m: [u8; 6] = random();
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}
