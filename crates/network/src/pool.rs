//! Network namespaces made ahead of time.
//!
//! Making a namespace (`unshare(CLONE_NEWNET)`, which registers its loopback device, then the
//! bind mount that pins it and `lo` brought up) takes about a millisecond of a container's
//! start. A [`NetnsPool`] keeps a few made and unused; a start takes one by bind-mounting it
//! where the container's namespace belongs and unpinning it from the pool, and the pool is
//! filled again on a thread of its own once the start has had its head start. An empty pool
//! (the first starts, or many at once) makes the namespace on the spot, as before.
//!
//! The pool lives in a directory of its own. A daemon that stops drains it
//! ([`NetnsPool::drain`]); one that was killed leaves namespaces behind, and the next
//! [`NetnsPool::new`] on that directory unpins them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::{NetworkError, create_netns, remove_netns};

/// How long a refill waits after a take, so it does not compete with the start that took.
const REFILL_DELAY: Duration = Duration::from_millis(10);

pub struct NetnsPool {
    dir: PathBuf,
    want: usize,
    ready: Mutex<Vec<PathBuf>>,
    filling: AtomicBool,
    closed: AtomicBool,
    seq: AtomicU64,
}

impl NetnsPool {
    /// A pool of `want` namespaces in `dir`, unpinning whatever an earlier daemon left there,
    /// and filled in the background.
    pub fn new(dir: PathBuf, want: usize) -> Arc<Self> {
        sweep(&dir);
        let pool = Arc::new(NetnsPool {
            dir,
            want,
            ready: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            seq: AtomicU64::new(0),
        });
        pool.refill(Duration::ZERO);
        pool
    }

    /// Pins a fresh namespace with `lo` up at `dest`: one made ahead of time when there is
    /// one, else made now.
    pub fn take(self: &Arc<Self>, dest: &Path) -> Result<(), NetworkError> {
        let ready = self.ready.lock().unwrap_or_else(|p| p.into_inner()).pop();
        self.refill(REFILL_DELAY);
        if let Some(src) = ready {
            match move_pin(&src, dest) {
                Ok(()) => return Ok(()),
                Err(e) => tracing::warn!("{e}; making the namespace now"),
            }
        }
        create_netns(dest)
    }

    /// How many namespaces are ready.
    pub fn ready(&self) -> usize {
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Unpins every namespace in the pool and removes its directory; no refill after this.
    pub fn drain(&self) {
        self.closed.store(true, Ordering::SeqCst);
        // A refill in progress finishes its namespace and sees `closed`: wait for it.
        while self.filling.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(1));
        }
        self.ready.lock().unwrap_or_else(|p| p.into_inner()).clear();
        sweep(&self.dir);
        let _ = std::fs::remove_dir(&self.dir);
    }

    fn refill(self: &Arc<Self>, delay: Duration) {
        if self.closed.load(Ordering::SeqCst) || self.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new().name("netns-pool".into()).spawn(move || {
            std::thread::sleep(delay);
            while !pool.closed.load(Ordering::SeqCst) && pool.ready() < pool.want {
                let path = pool.dir.join(pool.seq.fetch_add(1, Ordering::SeqCst).to_string());
                match create_netns(&path) {
                    Ok(()) => pool.ready.lock().unwrap_or_else(|p| p.into_inner()).push(path),
                    Err(e) => {
                        tracing::warn!("netns pool: {e}");
                        break;
                    }
                }
            }
            pool.filling.store(false, Ordering::SeqCst);
        });
        if spawned.is_err() {
            self.filling.store(false, Ordering::SeqCst);
        }
    }
}

/// Pins the namespace pinned at `src` at `dest` as well, then unpins it from `src`.
fn move_pin(src: &Path, dest: &Path) -> Result<(), NetworkError> {
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
    let _ = remove_netns(src);
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
        wait_for("a full pool", || pool.ready() == 2);
        let (a, b, c) = (d.path().join("ns/a"), d.path().join("ns/b"), d.path().join("ns/c"));
        for p in [&a, &b, &c] {
            pool.take(p).expect("take");
            assert!(is_netns(p), "{} is a pinned namespace", p.display());
        }
        // Each is its own namespace, not the host's.
        let ino = |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
        let host =
            std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("host");
        assert!(ino(&a) != ino(&b) && ino(&b) != ino(&c) && ino(&a) != host);
        wait_for("the refill", || pool.ready() == 2);
        pool.drain();
        assert!(!dir.exists(), "a drained pool leaves no directory");
        for p in [&a, &b, &c] {
            remove_netns(p).expect("remove");
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!info.contains(&d.path().display().to_string()), "mounts left: {info}");
    }
}
