//! Snapshots: unpacked layers, each once, shared read-only as overlayfs lower directories.
//!
//! A snapshot is named by the layer's chain id (the OCI image spec's ChainID: the diff_id of
//! the first layer, then `sha256(parent_chain + " " + diff_id)`), so a layer that appears in two
//! images at the same position is stored once. A new snapshot is unpacked under
//! `snapshots/tmp-<random>` and renamed into place, so a crash never leaves a half layer that
//! looks complete; leftovers are removed at start.

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use oci::Digest;

use crate::layer::{self, Applied};
use crate::{ImageError, io_err, random_hex};

pub struct Snapshots {
    root: PathBuf,
}

/// A layer unpacked under `snapshots/tmp-*`, not yet a snapshot.
#[derive(Debug)]
pub struct Unpacked {
    tmp: PathBuf,
    pub applied: Applied,
}

/// The chain id of a layer given its parent's chain id.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::sha256_of(format!("{p} {diff_id}").as_bytes()),
    }
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let root = root.join("snapshots");
        std::fs::create_dir_all(&root).map_err(io_err("create", &root))?;
        Ok(Self { root })
    }

    /// `snapshots/`: one directory per chain id (for the start-up sweep and disk usage).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding the layer's files.
    pub fn fs(&self, chain: &Digest) -> PathBuf {
        self.root.join(chain.hex()).join("fs")
    }

    pub fn exists(&self, chain: &Digest) -> bool {
        self.fs(chain).is_dir()
    }

    /// An empty directory, the lower layer of an image without layers.
    pub fn empty_dir(&self) -> Result<PathBuf, ImageError> {
        let p = self.root.join("empty");
        std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        Ok(p)
    }

    /// The init layer: a read-only lower, shared by every container and topmost under its own
    /// layer, that holds what the runtime mounts over (`/etc/hosts`, `/etc/hostname`,
    /// `/etc/resolv.conf` as empty files; `/proc`, `/sys`, `/dev` and its mount points as
    /// directories). As Docker's per-container init layer, but one for all: the mount targets
    /// exist whatever the image holds, so a start neither copies `/etc` up into the container's
    /// layer nor creates files there, and a symlinked `/etc/resolv.conf` in an image cannot
    /// steer the mount elsewhere. Made once, under a temporary name, then renamed.
    pub fn init_dir(&self) -> Result<PathBuf, ImageError> {
        let p = self.root.join("init");
        if p.is_dir() {
            return Ok(p);
        }
        let tmp = self.root.join(format!("tmp-init-{}", random_hex(8)));
        // Modes set after creation, whatever the umask: directories 0755, files 0644.
        let made = (|| -> Result<(), ImageError> {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path, m: u32| {
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).map_err(io_err("chmod", p))
            };
            for d in ["", "etc", "proc", "sys", "dev", "dev/pts", "dev/shm", "dev/mqueue"] {
                let d = tmp.join(d);
                std::fs::create_dir_all(&d).map_err(io_err("create", &d))?;
                mode(&d, 0o755)?;
            }
            for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
                let f = tmp.join(f);
                std::fs::write(&f, "").map_err(io_err("create", &f))?;
                mode(&f, 0o644)?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match std::fs::rename(&tmp, &p) {
            Ok(()) => Ok(p),
            // Another start made it first.
            Err(_) if p.is_dir() => {
                let _ = std::fs::remove_dir_all(&tmp);
                Ok(p)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(io_err("rename", &p)(e))
            }
        }
    }

    /// Unpacks a layer on top of `parent` and returns its chain id with what was applied.
    /// When the snapshot exists already the new copy is dropped.
    pub fn apply<R: Read>(&self, parent: Option<&Digest>, src: R) -> Result<(Digest, Applied), ImageError> {
        let u = self.unpack(src)?;
        let applied = u.applied.clone();
        let chain = self.commit(u, parent)?;
        Ok((chain, applied))
    }

    /// Unpacks a layer under a temporary name, invisible until [`Snapshots::commit`]: a pull
    /// checks the blob digest and the diff_id first, and [`Snapshots::discard`]s on a mismatch.
    pub fn unpack<R: Read>(&self, src: R) -> Result<Unpacked, ImageError> {
        let tmp = self.root.join(format!("tmp-{}", random_hex(8)));
        let fs = tmp.join("fs");
        std::fs::create_dir_all(&fs).map_err(io_err("create", &fs))?;
        match layer::apply(src, &fs) {
            Ok(applied) => Ok(Unpacked { tmp, applied }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                Err(e)
            }
        }
    }

    /// Makes an unpacked layer visible as the snapshot on top of `parent`; returns its chain id.
    pub fn commit(&self, u: Unpacked, parent: Option<&Digest>) -> Result<Digest, ImageError> {
        let chain = chain_id(parent, &u.applied.diff_id);
        let dst = self.root.join(chain.hex());
        if dst.exists() {
            let _ = std::fs::remove_dir_all(&u.tmp);
        } else if let Err(e) = std::fs::rename(&u.tmp, &dst) {
            let _ = std::fs::remove_dir_all(&u.tmp);
            return Err(ImageError::Io { op: "rename", path: dst, source: e });
        }
        Ok(chain)
    }

    /// Drops an unpacked layer that will not be committed.
    pub fn discard(&self, u: Unpacked) {
        let _ = std::fs::remove_dir_all(&u.tmp);
    }

    /// Moves an unpacked directory (an overlay upper holding the layer `diff_id`, already in
    /// overlayfs whiteout form) into place as the snapshot on top of `parent`. `dir` must be
    /// on the same filesystem. When the snapshot exists already, `dir` is removed instead.
    pub fn insert_dir(&self, parent: Option<&Digest>, diff_id: &Digest, dir: &Path) -> Result<Digest, ImageError> {
        let chain = chain_id(parent, diff_id);
        let dst = self.root.join(chain.hex());
        if dst.exists() {
            let _ = std::fs::remove_dir_all(dir);
            return Ok(chain);
        }
        let tmp = self.root.join(format!("tmp-{}", random_hex(8)));
        std::fs::create_dir_all(&tmp).map_err(io_err("create", &tmp))?;
        std::fs::rename(dir, tmp.join("fs")).map_err(io_err("rename", dir))?;
        if let Err(e) = std::fs::rename(&tmp, &dst) {
            let _ = std::fs::remove_dir_all(&tmp);
            if dst.exists() {
                return Ok(chain);
            }
            return Err(ImageError::Io { op: "rename", path: dst, source: e });
        }
        Ok(chain)
    }

    pub fn remove(&self, chain: &Digest) -> Result<(), ImageError> {
        let p = self.root.join(chain.hex());
        // Rename first so that a crash halfway does not leave a partial snapshot in place.
        let trash = self.root.join(format!("tmp-{}", random_hex(8)));
        match std::fs::rename(&p, &trash) {
            Ok(()) => std::fs::remove_dir_all(&trash).map_err(io_err("remove", &trash)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::Io { op: "remove", path: p, source: e }),
        }
    }

    /// Removes what a crash left behind: unfinished snapshots.
    pub fn clean(&self) {
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("tmp-") {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    /// Disk used by a snapshot, in bytes.
    pub fn size(&self, chain: &Digest) -> u64 {
        dir_size(&self.fs(chain))
    }
}

/// Bytes used by the regular files under `p` (hard links counted once).
pub fn dir_size(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() && (m.nlink() == 1 || seen.insert(m.ino())) {
                total += m.len();
            }
        }
    }
    total
}

/// Mounts an overlay at `target`: `lowers` bottom layer first, `upper` and `work` writable.
///
/// `volatile`: the overlay never syncs its upper directory, so unmounting it does not wait for
/// the upper's file system to write back and commit (a journal commit and a cache flush: from
/// about a millisecond on this VM's disk to tens on real ones). Meant for a writable layer
/// nobody keeps (`run --rm`), as Podman does: after a host crash such an upper may have lost
/// writes. Kernels before 5.10 do not know the option; the overlay is then mounted without it.
pub fn mount_overlay(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
    volatile: bool,
) -> Result<(), ImageError> {
    let err = |message: String| ImageError::Mount { target: target.to_owned(), message };
    for d in [upper, work, target] {
        std::fs::create_dir_all(d).map_err(|e| err(format!("create `{}`: {e}", d.display())))?;
    }
    // A volatile mount leaves this mark, and overlayfs refuses to mount the directories again
    // while it is there. Only a layer that was mounted volatile has it, and it was unmounted
    // cleanly if it is being mounted again in this boot; after a crash its owner is removed.
    let mark = work.join("work/incompat/volatile");
    if mark.exists() {
        std::fs::remove_dir_all(&mark).map_err(|e| err(format!("remove `{}`: {e}", mark.display())))?;
    }
    // overlayfs lists the top-most lower first.
    let lower: Vec<String> = lowers.iter().rev().map(|p| p.display().to_string()).collect();
    let data = format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display());
    const VOLATILE: &str = ",volatile";
    if data.len() + if volatile { VOLATILE.len() } else { 0 } >= 4096 {
        return Err(err(format!("{} layers make mount options longer than a page", lowers.len())));
    }
    let mount_with = |data: &str| mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(data));
    let mounted = if volatile {
        match mount_with(&format!("{data}{VOLATILE}")) {
            Err(nix::errno::Errno::EINVAL) => mount_with(&data),
            r => r,
        }
    } else {
        mount_with(&data)
    };
    mounted.map_err(|e| err(e.to_string()))
}

/// Unmounts `target`; not mounted is not an error.
pub fn unmount(target: &Path) -> Result<(), ImageError> {
    match umount2(target, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(ImageError::Mount { target: target.to_owned(), message: format!("unmount: {e}") }),
    }
}

/// Whether `target` is a mount point (its device differs from its parent's).
pub fn is_mounted(target: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(target), target.parent().map(std::fs::metadata)) {
        (Ok(a), Some(Ok(b))) => a.dev() != b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_layer_holds_the_mount_points_and_is_made_once() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tempdir");
        let snaps = Snapshots::open(&d.path().join("snapshots")).expect("open");
        let init = snaps.init_dir().expect("init");
        for f in ["etc/hosts", "etc/hostname", "etc/resolv.conf"] {
            let m = std::fs::symlink_metadata(init.join(f)).expect(f);
            assert!(m.is_file() && m.len() == 0, "{f}");
            assert_eq!(m.permissions().mode() & 0o7777, 0o644, "{f}");
        }
        for dir in ["etc", "proc", "sys", "dev", "dev/pts", "dev/shm", "dev/mqueue"] {
            let m = std::fs::symlink_metadata(init.join(dir)).expect(dir);
            assert!(m.is_dir(), "{dir}");
            assert_eq!(m.permissions().mode() & 0o7777, 0o755, "{dir}");
        }
        // Made once: a second call finds it, and nothing temporary is left.
        std::fs::write(init.join("marker"), "").expect("marker");
        assert_eq!(snaps.init_dir().expect("again"), init);
        assert!(init.join("marker").exists());
        let tmp: Vec<_> = std::fs::read_dir(d.path().join("snapshots"))
            .expect("read")
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
            .collect();
        assert!(tmp.is_empty());
    }

    /// Whether the overlay at `target` is volatile ("volatile", or "fsync=volatile" from 6.x).
    fn volatile(target: &Path) -> bool {
        let o = options_of(target).expect("mounted");
        o.split(',').any(|o| o == "volatile" || o == "fsync=volatile")
    }

    fn options_of(target: &Path) -> Option<String> {
        let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let t = target.display().to_string();
        info.lines()
            .find(|l| l.split(' ').nth(4) == Some(t.as_str()))
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
    }

    #[test]
    fn root_a_volatile_upper_mounts_again_after_a_clean_unmount() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return;
        }
        let d = tempfile::tempdir().expect("tempdir");
        let (lower, upper, work, target) =
            (d.path().join("l"), d.path().join("u"), d.path().join("w"), d.path().join("m"));
        std::fs::create_dir_all(&lower).expect("lower");
        struct Unmount<'a>(&'a Path);
        impl Drop for Unmount<'_> {
            fn drop(&mut self) {
                let _ = unmount(self.0);
            }
        }
        mount_overlay(std::slice::from_ref(&lower), &upper, &work, &target, true).expect("volatile mount");
        let guard = Unmount(&target);
        assert!(volatile(&target));
        std::fs::write(target.join("kept"), "x").expect("write");
        drop(guard);
        assert!(work.join("work/incompat/volatile").exists(), "the kernel marks a volatile work dir");
        // overlayfs refuses a marked work dir; a clean unmount lets the mark go.
        mount_overlay(std::slice::from_ref(&lower), &upper, &work, &target, false).expect("mount again");
        let _guard = Unmount(&target);
        assert!(!volatile(&target));
        assert_eq!(std::fs::read_to_string(target.join("kept")).expect("read"), "x");
    }
}
