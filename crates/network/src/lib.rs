//! berth's networking. For now: the per-container network namespace.
//!
//! A namespace is made on a short-lived thread (`unshare(CLONE_NEWNET)` affects only the
//! calling thread), kept alive by a bind mount of `/proc/thread-self/ns/net` onto a file, as
//! `ip netns add` does, and its loopback brought up with `SIOCSIFFLAGS`. The runtime joins it
//! by path. Synchronous, no async runtime here.

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
}

impl NetworkError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

/// Creates a network namespace pinned at `path` with `lo` up.
pub fn create_netns(path: &Path) -> Result<(), NetworkError> {
    let err = |message: String| NetworkError::CreateNetns { path: path.to_owned(), message };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
    let target = path.to_owned();
    let result = std::thread::spawn(move || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        mount(Some("/proc/thread-self/ns/net"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .map_err(|e| format!("bind mount: {e}"))?;
        loopback_up().map_err(|e| format!("bring up lo: {e}"))
    })
    .join()
    .unwrap_or_else(|_| Err("namespace thread panicked".into()));
    if let Err(message) = result {
        let _ = umount2(path, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(path);
        return Err(err(message));
    }
    Ok(())
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

    #[test]
    fn root_netns_create_and_remove() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = std::env::temp_dir().join(format!("berth-netns-test-{}", std::process::id()));
        let p = d.join("ns");
        create_netns(&p).expect("create netns");
        let ino = std::fs::metadata(&p).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
        let host =
            std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m)).expect("stat");
        assert_ne!(ino, host);
        remove_netns(&p).expect("remove netns");
        assert!(!p.exists());
        let _ = std::fs::remove_dir(&d);
    }
}
