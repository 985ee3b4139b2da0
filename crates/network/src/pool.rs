//! Network namespaces made ahead of time.
//!
//! Making a namespace (`unshare(CLONE_NEWNET)`, which registers its loopback device, then the
//! bind mount that pins it and `lo` brought up) takes about a millisecond of a container's
//! start, and making the veth pair of a container on a bridge another: the kernel registers
//! two devices, with their sysfs entries, and moves one into the namespace. A [`NetnsPool`]
//! keeps a few of each kind made and unused:
//!
//! - plain namespaces, for `--network none` (and for any start that asks for no veth);
//! - namespaces with a veth pair: `eth0` inside, down, with no address; its peer on the host,
//!   down and on no bridge (so `ip link show master BRIDGE` lists only containers), with a
//!   netlink socket opened inside the namespace so that the start that takes it configures
//!   `eth0` without entering the namespace. See [`PreparedVeth`].
//!
//! A start takes one by bind-mounting it where the container's namespace belongs; the pool's
//! thread then unpins it from the pool at once, and fills the pool again once the start has had
//! its head start. A kind is made ahead of time once it has been asked for (the veth kind from the
//! outset: the default bridge is the default network). An empty pool (the first starts, or many
//! at once) makes the namespace on the spot, as before, and the caller makes its veth.
//!
//! The pool lives in a directory of its own. A daemon that stops drains it
//! ([`NetnsPool::drain`]); one that was killed leaves namespaces behind, and the next
//! [`NetnsPool::new`] on that directory unpins them. A namespace that goes takes its veth pair
//! with it.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::netlink::Netlink;
use crate::{NetworkError, create_netns, make_netns, remove_netns};

/// How long a refill waits after a take, so it does not compete with the start that took.
const REFILL_DELAY: Duration = Duration::from_millis(10);

/// The name of the inside end of a prepared veth pair.
pub const PREPARED_IFNAME: &str = "eth0";

/// A veth pair made with a pooled namespace, to be the container's first interface: `eth0`
/// inside, its peer [`host`](Self::host) on the host, both down, neither addressed nor on a
/// bridge. [`endpoint::attach`](crate::endpoint::attach) finishes it. Dropped unused, it goes
/// with its namespace.
pub struct PreparedVeth {
    /// The host end's name (`veth` and 7 hex digits, as Docker names them).
    pub host: String,
    pub(crate) host_index: u32,
    pub(crate) inner_index: u32,
    /// An rtnetlink socket opened inside the namespace.
    pub(crate) inner: Netlink,
}

impl std::fmt::Debug for PreparedVeth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedVeth").field("host", &self.host).field("host_index", &self.host_index).finish()
    }
}

#[derive(Default)]
struct Ready {
    plain: Vec<PathBuf>,
    veth: Vec<(PathBuf, PreparedVeth)>,
}

pub struct NetnsPool {
    dir: PathBuf,
    want: usize,
    ready: Mutex<Ready>,
    /// Which kinds are made ahead of time (a kind is, once it has been asked for).
    want_plain: AtomicBool,
    want_veth: AtomicBool,
    filling: AtomicBool,
    closed: AtomicBool,
    seq: AtomicU64,
    /// The pool's pins of namespaces handed out, pinned at their container's path as well:
    /// the pool's thread unpins them, so that a start does not wait for the unmount (an
    /// expedited RCU grace period, ~150 µs).
    handed: Mutex<Vec<PathBuf>>,
}

impl NetnsPool {
    /// A pool of `want` namespaces of each kind in use in `dir`, unpinning whatever an earlier
    /// daemon left there, and filled in the background with namespaces with a veth pair.
    pub fn new(dir: PathBuf, want: usize) -> Arc<Self> {
        sweep(&dir);
        let pool = Arc::new(NetnsPool {
            dir,
            want,
            ready: Mutex::new(Ready::default()),
            want_plain: AtomicBool::new(false),
            want_veth: AtomicBool::new(true),
            filling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
            handed: Mutex::new(Vec::new()),
        });
        pool.refill(Duration::ZERO);
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ready> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Pins a fresh namespace with `lo` up at `dest`: one made ahead of time when there is
    /// one, else made now. With `veth`, the namespace comes with a [`PreparedVeth`] when the
    /// pool had one; without, it has no device but `lo`.
    pub fn take(self: &Arc<Self>, dest: &Path, veth: bool) -> Result<Option<PreparedVeth>, NetworkError> {
        let ready = if veth {
            self.want_veth.store(true, Ordering::SeqCst);
            self.lock().veth.pop().map(|(src, prepared)| (src, Some(prepared)))
        } else {
            self.want_plain.store(true, Ordering::SeqCst);
            self.lock().plain.pop().map(|src| (src, None))
        };
        let taken = ready.and_then(|(src, prepared)| match pin_also(&src, dest) {
            Ok(()) => {
                // Before the refill below, whose thread unpins it.
                self.handed.lock().unwrap_or_else(|p| p.into_inner()).push(src);
                Some(prepared)
            }
            Err(e) => {
                tracing::warn!("{e}; making the namespace now");
                let _ = remove_netns(&src);
                None
            }
        });
        self.refill(REFILL_DELAY);
        match taken {
            Some(prepared) => Ok(prepared),
            None => create_netns(dest).map(|()| None),
        }
    }

    /// Unpins the pool's pins of the namespaces handed out so far.
    fn unpin_handed(&self) {
        let handed = std::mem::take(&mut *self.handed.lock().unwrap_or_else(|p| p.into_inner()));
        for src in handed {
            let _ = remove_netns(&src);
        }
    }

    /// How many namespaces are ready: (plain, with a veth pair).
    pub fn ready(&self) -> (usize, usize) {
        let r = self.lock();
        (r.plain.len(), r.veth.len())
    }

    /// Unpins every namespace in the pool and removes its directory; no refill after this.
    pub fn drain(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // A refill in progress finishes its namespace and sees `closed`: wait for it.
        while self.filling.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        *self.lock() = Ready::default();
        self.handed.lock().unwrap_or_else(|p| p.into_inner()).clear();
        sweep(&self.dir);
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// The kind to make next, if any is short: with a veth pair (`true`) or plain.
    fn short(&self) -> Option<bool> {
        let r = self.lock();
        if self.want_veth.load(Ordering::SeqCst) && r.veth.len() < self.want {
            Some(true)
        } else if self.want_plain.load(Ordering::SeqCst) && r.plain.len() < self.want {
            Some(false)
        } else {
            None
        }
    }

    fn refill(self: &Arc<Self>, delay: Duration) {
        if self.closed.load(Ordering::SeqCst) || self.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new().name("netns-pool".into()).spawn(move || {
            let mut delay = delay;
            loop {
                // At once: a handed-out namespace must not outlive its container's removal
                // pinned by the pool (its veth pair would stay on the bridge with the address).
                pool.unpin_handed();
                std::thread::sleep(delay);
                while !pool.closed.load(Ordering::SeqCst)
                    && let Some(veth) = pool.short()
                {
                    let path = pool.dir.join(pool.seq.fetch_add(1, Ordering::SeqCst).to_string());
                    let made = if veth {
                        make_with_veth(&path).map(|v| pool.lock().veth.push((path, v)))
                    } else {
                        create_netns(&path).map(|()| pool.lock().plain.push(path))
                    };
                    if let Err(e) = made {
                        tracing::warn!("netns pool: {e}");
                        break;
                    }
                }
                pool.filling.store(false, Ordering::SeqCst);
                // A take while this thread was filling found it busy and started none: its pin
                // is unpinned here, unless a new thread has taken over meanwhile.
                let more = !pool.handed.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
                if !more || pool.filling.swap(true, Ordering::SeqCst) {
                    break;
                }
                delay = Duration::ZERO;
            }
        });
        if spawned.is_err() {
            self.filling.store(false, Ordering::SeqCst);
        }
    }
}

/// A namespace pinned at `path` with a veth pair: `eth0` inside, a `veth…` peer on the host.
fn make_with_veth(path: &Path) -> Result<PreparedVeth, NetworkError> {
    let mut inner = make_netns(path, || Netlink::open().map_err(|e| e.to_string()))?;
    let made = (|| -> Result<PreparedVeth, String> {
        let ns = std::fs::File::open(path).map_err(|e| format!("open: {e}"))?;
        let mut host = Netlink::open().map_err(|e| e.to_string())?;
        let name = crate::endpoint::veth_name();
        host.add_veth(&name, None, PREPARED_IFNAME, ns.as_raw_fd()).map_err(|e| e.to_string())?;
        let host_index = host.link_index(&name).map_err(|e| e.to_string())?;
        let inner_index = inner.link_index(PREPARED_IFNAME).map_err(|e| e.to_string())?;
        match (host_index, inner_index) {
            (Some(host_index), Some(inner_index)) => Ok(PreparedVeth { host: name, host_index, inner_index, inner }),
            _ => Err(format!("veth pair `{name}`/`{PREPARED_IFNAME}` vanished after creation")),
        }
    })();
    made.map_err(|message| {
        // The pair, if made, goes with the namespace.
        let _ = remove_netns(path);
        NetworkError::Setup { op: format!("prepare a veth pair in `{}`", path.display()), message }
    })
}

/// Pins the namespace pinned at `src` at `dest` as well (the pool's thread unpins `src`).
fn pin_also(src: &Path, dest: &Path) -> Result<(), NetworkError> {
    let err = |message: String| NetworkError::CreateNetns { path: dest.to_owned(), message };
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    std::fs::File::create(dest).map_err(|e| err(e.to_string()))?;
    // A bind mount, not a move: a move is refused where the pool's parent mount is shared
    // (`/run` under systemd).
    if let Err(e) = mount(Some(src), dest, None::<&str>, MsFlags::MS_BIND, None::<&str>) {
        let _ = std::fs::remove_file(dest);
        return Err(err(format!("bind `{}`: {e}", src.display())));
    }
    Ok(())
}

/// Unpins and removes every namespace file in `dir`.
fn sweep(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let _ = umount2(&e.path(), MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_netns(p: &Path) -> bool {
        // SAFETY: statfs is plain old data; zeroed is a valid value.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: statfs into the struct we own, on a NUL-terminated path.
        let ok = unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0;
        ok && st.f_type == 0x6e73_6673 // NSFS_MAGIC
    }

    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// `ip ARGS` run inside the namespace pinned at `ns`.
    fn ip_in(ns: &Path, args: &[&str]) -> String {
        let o = std::process::Command::new("nsenter")
            .arg(format!("--net={}", ns.display()))
            .arg("ip")
            .args(args)
            .output()
            .expect("nsenter ip");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn link_names_in(ns: &Path) -> Vec<String> {
        ip_in(ns, &["-o", "link"])
            .lines()
            .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().split('@').next().unwrap_or("").to_owned()))
            .collect()
    }

    #[test]
    fn root_the_pool_hands_out_namespaces_refills_and_drains() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let dir = d.path().join("pool");
        // What a killed daemon left: a pinned namespace in the pool's directory.
        create_netns(&dir.join("old")).expect("leftover");
        let pool = NetnsPool::new(dir.clone(), 2);
        assert!(!dir.join("old").exists(), "leftovers are unpinned");
        // At first only the kind with a veth pair is made ahead of time.
        wait_for("a full pool", || pool.ready() == (0, 2));
        let (a, b, c) = (d.path().join("ns/a"), d.path().join("ns/b"), d.path().join("ns/c"));
        // With a veth pair: `eth0` inside, down, and its peer on the host, down, on no bridge.
        let prepared = pool.take(&a, true).expect("take").expect("a prepared veth pair");
        assert!(is_netns(&a));
        assert_eq!(link_names_in(&a), ["lo", PREPARED_IFNAME]);
        assert!(crate::endpoint::link_exists(&prepared.host));
        let host = std::process::Command::new("ip").args(["-o", "link", "show", &prepared.host]).output();
        let host = String::from_utf8_lossy(&host.expect("ip").stdout).into_owned();
        assert!(host.contains("state DOWN") && !host.contains("master"), "{host}");
        // Finished by attach: the container's MAC, address, route, and the peer on a bridge.
        let br = format!("bpt{:x}", std::process::id() % 0xfffff);
        let subnet = crate::subnet::Subnet::parse("10.213.9.0/24").expect("subnet");
        let gw = std::net::Ipv4Addr::new(10, 213, 9, 1);
        crate::endpoint::ensure_bridge(&br, gw, subnet).expect("bridge");
        let ip = std::net::Ipv4Addr::new(10, 213, 9, 2);
        let host_veth = prepared.host.clone();
        let att = crate::endpoint::Attach {
            bridge: br.clone(),
            host_veth: host_veth.clone(),
            ifname: PREPARED_IFNAME.into(),
            ip,
            prefix: 24,
            mac: crate::subnet::mac_for(ip),
            gateway: Some(gw),
        };
        let attached = crate::endpoint::attach(&a, std::slice::from_ref(&att), false, Some(prepared));
        let addr = ip_in(&a, &["-o", "addr", "show", "dev", "eth0"]);
        let link = ip_in(&a, &["-o", "link", "show", "dev", "eth0"]);
        let route = ip_in(&a, &["route", "show", "default"]);
        let host = std::process::Command::new("ip").args(["-o", "link", "show", &host_veth]).output();
        let host = String::from_utf8_lossy(&host.expect("ip").stdout).into_owned();
        let hairpin = std::fs::read_to_string(format!("/sys/class/net/{host_veth}/brport/hairpin_mode"));
        // A pair that is not the prepared one is refused.
        let wrong = crate::endpoint::Attach { host_veth: "vethnot".into(), ..att.clone() };
        let d2 = d.path().join("ns/d");
        let other = pool.take(&d2, true).expect("take");
        let refused = other.map(|p| crate::endpoint::attach(&d2, &[wrong], false, Some(p)));
        let _ = crate::endpoint::delete_link(&br);
        let _ = remove_netns(&d2);
        assert!(attached.is_ok(), "{:?}", attached.err());
        assert!(addr.contains("inet 10.213.9.2/24"), "{addr}");
        assert!(link.contains("02:42:0a:d5:09:02") && link.contains("UP"), "{link}");
        assert!(route.contains("default via 10.213.9.1 dev eth0"), "{route}");
        assert!(host.contains(&format!("master {br}")) && host.contains(",UP"), "{host}");
        assert_eq!(hairpin.ok().as_deref().map(str::trim), Some("1"));
        if let Some(r) = refused {
            assert!(r.is_err_and(|e| e.to_string().contains("vethnot")));
        }
        // Plain: only `lo`. The first is made on the spot, and from then on plain ones are
        // made ahead of time too.
        assert!(pool.take(&b, false).expect("take").is_none());
        wait_for("both kinds", || pool.ready() == (2, 2));
        assert!(pool.take(&c, false).expect("take").is_none());
        for p in [&b, &c] {
            assert_eq!(link_names_in(p), ["lo"], "{}", p.display());
        }
        // Each is its own namespace, not the host's.
        let ino = |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
        let host =
            std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("host");
        assert!(ino(&a) != ino(&b) && ino(&b) != ino(&c) && ino(&a) != host);
        wait_for("the refill", || pool.ready() == (2, 2));
        // The pool's own pins of the namespaces it handed out go (on its thread): only the
        // ready ones are left in its directory, and the handed-out ones live on, pinned where
        // they were taken to.
        let pinned = || std::fs::read_dir(&dir).map(|r| r.count()).unwrap_or(0);
        wait_for("the pool to unpin what it handed out", || pinned() == 4);
        assert!([&a, &b, &c].iter().all(|p| is_netns(p)));
        let pooled: Vec<String> = pool.lock().veth.iter().map(|(_, v)| v.host.clone()).collect();
        pool.drain();
        assert!(!dir.exists(), "a drained pool leaves no directory");
        for p in [&a, &b, &c] {
            remove_netns(p).expect("remove");
        }
        // The pairs go with their namespaces (the kernel deletes them in the background).
        for v in pooled.iter().chain([&host_veth]) {
            wait_for("a pair to go with its namespace", || !crate::endpoint::link_exists(v));
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!info.contains(&d.path().display().to_string()), "mounts left: {info}");
    }
}
