//! berth's networking. Synchronous, no async runtime here.
//!
//! - namespaces (this file): a container's network namespace, pinned by a bind mount;
//! - [`netlink`]: a small blocking rtnetlink client (bridges, veth pairs, addresses, routes);
//! - [`endpoint`]: a network's bridge, and a container's veth pair in its namespace;
//! - [`subnet`]: IPv4 subnets, the host's routes, Docker's default address pools;
//! - [`nft`]: the daemon's one nftables table (masquerade, published ports, isolation);
//! - [`pool`]: network namespaces made ahead of time, so a start need not wait for one;
//! - [`ports`]: holding published host ports, so a taken one is refused before start;
//! - [`dns`]: the DNS messages the embedded resolver reads and writes.
//!
//! A namespace is made on a short-lived thread (`unshare(CLONE_NEWNET)` affects only the
//! calling thread), kept alive by a bind mount of `/proc/thread-self/ns/net` onto a file, as
//! `ip netns add` does, its IPv6 turned off (as Docker does; berth's networks are IPv4) and its
//! loopback brought up with `SIOCSIFFLAGS`. The runtime joins it by path.

pub mod dns;
pub mod endpoint;
pub mod netlink;
pub mod nft;
pub mod pool;
pub mod ports;
pub mod subnet;

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use oci::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("create network namespace `{path}`: {message}")]
    CreateNetns { path: PathBuf, message: String },
    #[error("remove network namespace `{path}`: {message}")]
    RemoveNetns { path: PathBuf, message: String },
    #[error("{op}: {message}")]
    Setup { op: String, message: String },
}

impl NetworkError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

/// Creates a network namespace pinned at `path` with `lo` up.
pub fn create_netns(path: &Path) -> Result<(), NetworkError> {
    make_netns(path, || Ok(()))
}

/// [`create_netns`], then `inside` run in the new namespace (what it opens there, a netlink
/// socket say, stays there whichever thread uses it).
pub(crate) fn make_netns<T: Send + 'static>(
    path: &Path,
    inside: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, NetworkError> {
    let err = |message: String| NetworkError::CreateNetns { path: path.to_owned(), message };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let target = path.to_owned();
    let result = std::thread::spawn(move || -> Result<T, String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        disable_ipv6();
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("bind mount: {e}"))?;
        loopback_up().map_err(|e| format!("bring up lo: {e}"))?;
        inside()
    })
    .join()
    .unwrap_or_else(|_| Err("namespace thread panicked".into()));
    match result {
        Ok(s) => Ok(s),
        Err(message) => {
            let _ = umount2(path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(path);
            Err(err(message))
        }
    }
}

/// Unpins and removes the namespace at `path`; a missing one is not an error.
pub fn remove_netns(path: &Path) -> Result<(), NetworkError> {
    if !path.exists() {
        return Ok(());
    }
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(NetworkError::RemoveNetns { path: path.to_owned(), message: e.to_string() }),
    }
    std::fs::remove_file(path)
        .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        .map_err(|e| NetworkError::RemoveNetns { path: path.to_owned(), message: e.to_string() })
}

/// Turns IPv6 off in the calling thread's (new) namespace, for the devices there (`lo`) and
/// for those made later (`eth0`), as Docker does for a container on networks without IPv6 —
/// berth has none. No `::1`, no link-local addresses, and none of the kernel's duplicate
/// address detection, router solicitations or multicast reports on the bridge. A container
/// can turn it back on with `--sysctl net.ipv6.conf.all.disable_ipv6=0`. A kernel without
/// IPv6 has nothing to turn off, and a daemon that cannot write `/proc/sys` (read-only in some
/// nested setups) runs its containers with IPv6 on, as before, rather than not at all.
fn disable_ipv6() {
    // `/proc/sys/net` shows the namespace of the thread that opens it: this one's.
    for which in ["default", "all"] {
        let path = format!("/proc/sys/net/ipv6/conf/{which}/disable_ipv6");
        match std::fs::write(&path, "1") {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!("a container's network namespace keeps IPv6: write {path}: {e}");
                return;
            }
        }
    }
}

fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a plain socket(2) call; the fd is owned and closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; zeroed is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    let r = unsafe {
        if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            -1
        } else {
            ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(fd, libc::SIOCSIFFLAGS, &ifr)
        }
    };
    let e = std::io::Error::last_os_error();
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    if r < 0 { Err(e) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sched::setns;

    #[test]
    fn root_netns_create_and_remove() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = std::env::temp_dir().join(format!("berth-netns-test-{}", std::process::id()));
        let p = d.join("ns");
        let host_v6 = std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6").ok();
        create_netns(&p).expect("create netns");
        let ino = std::fs::metadata(&p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
        let host =
            std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
        assert_ne!(ino, host);
        // Inside: IPv6 off for `lo` and for devices made later.
        let ns = std::fs::File::open(&p).expect("open netns");
        let inside = std::thread::spawn(move || {
            setns(&ns, CloneFlags::CLONE_NEWNET).expect("setns");
            let read = |f: &str| std::fs::read_to_string(f).unwrap_or_else(|e| format!("{f}: {e}"));
            (
                read("/proc/sys/net/ipv6/conf/all/disable_ipv6"),
                read("/proc/sys/net/ipv6/conf/default/disable_ipv6"),
                read("/proc/sys/net/ipv6/conf/lo/disable_ipv6"),
            )
        })
        .join()
        .expect("thread");
        if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            assert_eq!((inside.0.trim(), inside.1.trim(), inside.2.trim()), ("1", "1", "1"), "{inside:?}");
        }
        // The host's own setting is untouched.
        assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv6/conf/all/disable_ipv6").ok(), host_v6);
        remove_netns(&p).expect("remove netns");
        assert!(!p.exists());
        let _ = std::fs::remove_dir(&d);
    }
}

#[cfg(test)]
mod root_tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn root_bridge_veth_and_firewall() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let pid = std::process::id();
        let br = format!("bnt{:x}", pid % 0xfffff);
        let table = format!("berth_test_{pid}");
        let subnet = subnet::Subnet::parse("10.213.7.0/24").expect("subnet");
        let gw = Ipv4Addr::new(10, 213, 7, 1);
        let d = tempfile::tempdir().expect("tempdir");
        let ns = d.path().join("ns");
        create_netns(&ns).expect("netns");
        endpoint::ensure_bridge(&br, gw, subnet).expect("bridge");
        // The bridge has an address of its own (NET_ADDR_SET), which its ports do not change.
        let sys = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{br}/{f}")).unwrap_or_default();
        assert_eq!(sys("addr_assign_type").trim(), "3");
        let mac = sys("address");
        let first = u8::from_str_radix(&mac[..2], 16).expect("hex");
        assert_eq!(first & 0x03, 0x02, "unicast, locally administered: {mac}");
        let veth = endpoint::veth_name();
        let ip = Ipv4Addr::new(10, 213, 7, 2);
        let a = endpoint::Attach {
            bridge: br.clone(),
            host_veth: veth.clone(),
            ifname: "eth0".into(),
            ip,
            prefix: 24,
            mac: subnet::mac_for(ip),
            gateway: Some(gw),
        };
        let dns = endpoint::attach(&ns, &[a], true, None).expect("attach");
        assert!(dns.is_some());
        assert!(endpoint::link_exists(&veth));
        assert_eq!(sys("address"), mac, "a port does not change the bridge's address");
        // The host reaches the container's address through the bridge: a TCP connection to
        // the DNS listener inside the namespace would need 127.0.0.11, so check the route instead.
        assert!(subnet::host_routes().contains(&subnet));
        let rules = nft::Ruleset {
            table: table.clone(),
            bridges: vec![nft::BridgeRules { bridge: br.clone(), subnet, gateway: gw, internal: false }],
            ports: vec![nft::PortRule {
                host_ip: None,
                host_port: 18080,
                proto: "tcp".into(),
                container_ip: ip,
                container_port: 80,
            }],
        };
        let applied = rules.apply();
        let _ = nft::remove_table(&table);
        endpoint::delete_link(&veth).expect("delete veth");
        assert!(!endpoint::link_exists(&veth));
        endpoint::delete_link(&br).expect("delete bridge");
        remove_netns(&ns).expect("remove netns");
        applied.expect("nft accepts the ruleset");
        assert!(!endpoint::link_exists(&br));
    }
}
