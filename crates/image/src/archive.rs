//! Tar archives of plain directories: unpacking untrusted input safely (`cp` into a container,
//! the files of `docker load`), packing a path (`cp` out, `export`), copying a tree.
//!
//! Whatever the source, [`unpack`] writes only inside its target:
//! - `..` components are refused, absolute names are made relative (CVE-2001-1267 class);
//! - an entry whose parent resolves (through symlinks already on disk or earlier in the
//!   archive) outside the target is refused: the `tar` crate canonicalises the parent and
//!   checks it (CVE-2018-15664 class, "symlink then write through it");
//! - a hard link must name a file inside the target (checked the same way);
//! - character and block devices are never created (an unprivileged source must not hand a
//!   container `/dev/sda`); they are skipped and counted;
//! - a symlink entry itself may point anywhere: it is only a name, and nothing is written
//!   through it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::{ImageError, io_err};

/// How [`unpack`] treats what it writes.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Owner of everything written; None keeps the archive's owners.
    pub chown: Option<(u32, u32)>,
    /// Refuse to replace a directory by a non-directory or the reverse
    /// (`noOverwriteDirNonDir` of the archive API).
    pub no_overwrite_dir_non_dir: bool,
    /// Refuse links and anything but regular files and directories (the files of an image
    /// archive never need more).
    pub plain_only: bool,
}

/// What [`unpack`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub entries: usize,
    /// Device nodes skipped.
    pub devices_skipped: usize,
}

fn unsafe_path(p: &Path, reason: &'static str) -> ImageError {
    ImageError::UnsafePath { path: p.display().to_string(), reason }
}

/// The relative path of an archive entry: `/` and `.` dropped, `..` refused.
pub fn entry_path(p: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => return Err(unsafe_path(p, "it contains `..`")),
        }
    }
    Ok(out)
}

/// Unpacks a tar stream into `dest` (an existing directory), safely (see the module's notes).
pub fn unpack<R: Read>(src: R, dest: &Path, opts: &UnpackOptions) -> Result<Unpacked, ImageError> {
    let mut ar = tar::Archive::new(src);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(opts.chown.is_none());
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let bad = |e: std::io::Error| ImageError::InvalidArchive(format!("not a tar archive: {e}"));
    let mut done = Unpacked::default();
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path().map_err(|e| ImageError::InvalidArchive(e.to_string()))?.into_owned();
        let rel = entry_path(&raw)?;
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() {
            tracing::debug!("skipping device node `{}` from an archive", raw.display());
            done.devices_skipped += 1;
            continue;
        }
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() || kind.is_gnu_longname() {
            continue;
        }
        if opts.plain_only && !(kind.is_file() || kind.is_dir() || kind == tar::EntryType::Continuous) {
            return Err(unsafe_path(&raw, "only files and directories are allowed here"));
        }
        if kind.is_hard_link() {
            let target = entry
                .link_name()
                .map_err(|e| ImageError::InvalidArchive(e.to_string()))?
                .ok_or_else(|| ImageError::InvalidArchive(format!("hard link `{}` has no target", raw.display())))?;
            let t = entry_path(&target)?;
            let full = dest.join(&t);
            // The target must already be a file inside dest, not reached through a symlink.
            let canon = full.canonicalize().map_err(|_| unsafe_path(&raw, "its hard link target does not exist"))?;
            let root = dest.canonicalize().map_err(io_err("resolve", dest))?;
            if !canon.starts_with(&root) {
                return Err(unsafe_path(&raw, "its hard link points outside the target"));
            }
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        if opts.no_overwrite_dir_non_dir
            && let Ok(m) = std::fs::symlink_metadata(dest.join(&rel))
            && m.is_dir() != kind.is_dir()
        {
            return Err(ImageError::Conflict(format!(
                "cannot overwrite {} `{}` with a {}",
                if m.is_dir() { "directory" } else { "non-directory" },
                rel.display(),
                if kind.is_dir() { "directory" } else { "non-directory" }
            )));
        }
        let ok = entry.unpack_in(dest).map_err(|e| {
            if e.to_string().contains("outside of destination") || chain(&e).contains("outside of destination") {
                unsafe_path(&raw, "it would be written outside the target (through a symlink)")
            } else {
                ImageError::InvalidArchive(format!("unpack `{}`: {}", rel.display(), chain(&e)))
            }
        })?;
        if !ok {
            return Err(unsafe_path(&raw, "it would be written outside the target"));
        }
        if let Some((uid, gid)) = opts.chown {
            let p = dest.join(&rel);
            let _ = std::os::unix::fs::lchown(&p, Some(uid), Some(gid));
        }
        done.entries += 1;
    }
    Ok(done)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// Writes `path` (a file, symlink or directory with everything under it) into `b` as `name`.
/// Symlinks are stored as links, never followed.
pub fn append_path<W: std::io::Write>(b: &mut tar::Builder<W>, path: &Path, name: &Path) -> std::io::Result<()> {
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() { append_dir(b, path, name) } else { b.append_path_with_name(path, name) }
}

/// Like `tar::Builder::append_dir_all`, but a socket is skipped instead of failing the whole
/// archive, and the walk does not follow symlinks.
fn append_dir<W: std::io::Write>(b: &mut tar::Builder<W>, root: &Path, name: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let mut stack = vec![(root.to_path_buf(), name.to_path_buf())];
    while let Some((src, dst)) = stack.pop() {
        let meta = std::fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_socket() {
            continue;
        }
        if meta.is_dir() {
            if dst.as_os_str().is_empty() || dst == Path::new(".") {
                let mut h = tar::Header::new_gnu();
                h.set_metadata(&meta);
                h.set_entry_type(tar::EntryType::Directory);
                b.append_data(&mut h, "./", std::io::empty())?;
            } else {
                b.append_dir(&dst, &src)?;
            }
            let mut children: Vec<_> = std::fs::read_dir(&src)?.flatten().map(|e| e.file_name()).collect();
            children.sort();
            for c in children.into_iter().rev() {
                stack.push((src.join(&c), dst.join(&c)));
            }
        } else {
            b.append_path_with_name(&src, &dst)?;
        }
    }
    Ok(())
}

/// Copies a directory tree (files, directories, symlinks; modes, owners, times), for
/// filling a new volume with an image's content. Device nodes and sockets are skipped.
pub fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::create_dir_all(dst)?;
    let mut stack = vec![(src.to_path_buf(), dst.to_path_buf())];
    let mut dirs = Vec::new();
    while let Some((s, d)) = stack.pop() {
        for e in std::fs::read_dir(&s)?.flatten() {
            let sp = e.path();
            let dp = d.join(e.file_name());
            let m = std::fs::symlink_metadata(&sp)?;
            let ft = m.file_type();
            if ft.is_dir() {
                std::fs::create_dir_all(&dp)?;
                stack.push((sp, dp.clone()));
                dirs.push((dp, m));
                continue;
            } else if ft.is_symlink() {
                let t = std::fs::read_link(&sp)?;
                let _ = std::fs::remove_file(&dp);
                std::os::unix::fs::symlink(t, &dp)?;
            } else if ft.is_file() {
                std::fs::copy(&sp, &dp)?;
                std::fs::set_permissions(&dp, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            } else {
                continue;
            }
            let _ = std::os::unix::fs::lchown(&dp, Some(m.uid()), Some(m.gid()));
            set_times(&dp, &m);
        }
    }
    for (d, m) in dirs.into_iter().rev() {
        let _ = std::fs::set_permissions(&d, std::fs::Permissions::from_mode(m.mode() & 0o7777));
        let _ = std::os::unix::fs::lchown(&d, Some(m.uid()), Some(m.gid()));
        set_times(&d, &m);
    }
    Ok(())
}

fn set_times(p: &Path, m: &std::fs::Metadata) {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return };
    let t = [
        libc::timespec { tv_sec: m.atime() as libc::time_t, tv_nsec: m.atime_nsec() as _ },
        libc::timespec { tv_sec: m.mtime() as libc::time_t, tv_nsec: m.mtime_nsec() as _ },
    ];
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), t.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: tar::EntryType, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_size(size);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_entry_type(kind);
        h
    }

    /// Writes a raw name into a header (the builder refuses `..` and absolute names).
    fn raw_entry(out: &mut Vec<u8>, name: &str, kind: tar::EntryType, link: Option<&str>, data: &[u8]) {
        let mut h = header(kind, data.len() as u64);
        {
            let g = h.as_gnu_mut().expect("gnu");
            g.name = [0; 100];
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                g.linkname = [0; 100];
                g.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }

    fn finish(mut v: Vec<u8>) -> Vec<u8> {
        v.extend(std::iter::repeat_n(0u8, 1024));
        v
    }

    fn dirs() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().expect("tempdir");
        let dest = t.path().join("dest");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&dest).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        (t, dest, outside)
    }

    #[test]
    fn refuses_dotdot() {
        let (_t, dest, _) = dirs();
        let mut v = Vec::new();
        raw_entry(&mut v, "../evil", tar::EntryType::Regular, None, b"x");
        let e = unpack(&finish(v)[..], &dest, &UnpackOptions::default()).expect_err("..");
        assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
        assert!(!dest.parent().expect("parent").join("evil").exists());
    }

    #[test]
    fn absolute_names_land_inside() {
        let (_t, dest, _) = dirs();
        let mut v = Vec::new();
        raw_entry(&mut v, "/etc/abs-test", tar::EntryType::Regular, None, b"x");
        unpack(&finish(v)[..], &dest, &UnpackOptions::default()).expect("absolute");
        assert_eq!(std::fs::read(dest.join("etc/abs-test")).expect("inside"), b"x");
    }

    #[test]
    fn refuses_writing_through_a_symlink_out() {
        let (_t, dest, outside) = dirs();
        let mut v = Vec::new();
        raw_entry(&mut v, "link", tar::EntryType::Symlink, Some(outside.to_str().expect("utf8")), b"");
        raw_entry(&mut v, "link/pwned", tar::EntryType::Regular, None, b"x");
        let e = unpack(&finish(v)[..], &dest, &UnpackOptions::default()).expect_err("through symlink");
        assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
        assert!(!outside.join("pwned").exists());
        // A relative symlink climbing out is refused the same way.
        let (_t, dest, outside) = dirs();
        let mut v = Vec::new();
        raw_entry(&mut v, "up", tar::EntryType::Symlink, Some("../outside"), b"");
        raw_entry(&mut v, "up/pwned", tar::EntryType::Regular, None, b"x");
        assert!(unpack(&finish(v)[..], &dest, &UnpackOptions::default()).is_err());
        assert!(!outside.join("pwned").exists());
    }

    #[test]
    fn refuses_hardlinks_out() {
        let (_t, dest, outside) = dirs();
        std::fs::write(outside.join("secret"), b"s").expect("write");
        let mut v = Vec::new();
        raw_entry(&mut v, "hl", tar::EntryType::Link, Some(outside.join("secret").to_str().expect("utf8")), b"");
        // An absolute target is taken inside dest, where it does not exist: refused.
        assert!(unpack(&finish(v)[..], &dest, &UnpackOptions::default()).is_err());
        let mut v = Vec::new();
        raw_entry(&mut v, "hl", tar::EntryType::Link, Some("../outside/secret"), b"");
        let e = unpack(&finish(v)[..], &dest, &UnpackOptions::default()).expect_err("..");
        assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
        // Through a symlink planted first.
        let mut v = Vec::new();
        raw_entry(&mut v, "l", tar::EntryType::Symlink, Some(outside.to_str().expect("utf8")), b"");
        raw_entry(&mut v, "hl2", tar::EntryType::Link, Some("l/secret"), b"");
        assert!(unpack(&finish(v)[..], &dest, &UnpackOptions::default()).is_err());
        assert!(!dest.join("hl2").exists());
        // A link inside is fine.
        let mut v = Vec::new();
        raw_entry(&mut v, "f", tar::EntryType::Regular, None, b"data");
        raw_entry(&mut v, "g", tar::EntryType::Link, Some("f"), b"");
        unpack(&finish(v)[..], &dest, &UnpackOptions::default()).expect("inner link");
        assert_eq!(std::fs::read(dest.join("g")).expect("read"), b"data");
    }

    #[test]
    fn device_nodes_are_not_created() {
        let (_t, dest, _) = dirs();
        let mut v = Vec::new();
        let mut h = header(tar::EntryType::Block, 0);
        h.set_device_major(8).expect("major");
        h.set_device_minor(0).expect("minor");
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut h, "sda", std::io::empty()).expect("append");
        let mut h = header(tar::EntryType::Char, 0);
        h.set_device_major(1).expect("major");
        h.set_device_minor(1).expect("minor");
        b.append_data(&mut h, "mem", std::io::empty()).expect("append");
        v.extend(b.into_inner().expect("finish"));
        let done = unpack(&v[..], &dest, &UnpackOptions::default()).expect("unpack");
        assert_eq!(done.devices_skipped, 2);
        assert!(std::fs::symlink_metadata(dest.join("sda")).is_err());
        assert!(std::fs::symlink_metadata(dest.join("mem")).is_err());
    }

    #[test]
    fn plain_only_refuses_links_and_chown_applies() {
        let (_t, dest, _) = dirs();
        let mut v = Vec::new();
        raw_entry(&mut v, "l", tar::EntryType::Symlink, Some("x"), b"");
        let opts = UnpackOptions { plain_only: true, ..Default::default() };
        assert!(unpack(&finish(v)[..], &dest, &opts).is_err());
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        let (_t, src, out) = dirs();
        std::fs::create_dir_all(src.join("d/e")).expect("mkdir");
        std::fs::write(src.join("d/e/f"), b"hello").expect("write");
        std::os::unix::fs::symlink("/etc/passwd", src.join("d/abs")).expect("symlink");
        let mut b = tar::Builder::new(Vec::new());
        append_path(&mut b, &src.join("d"), Path::new("d")).expect("pack");
        let data = b.into_inner().expect("finish");
        unpack(&data[..], &out, &UnpackOptions::default()).expect("unpack");
        assert_eq!(std::fs::read(out.join("d/e/f")).expect("read"), b"hello");
        assert_eq!(std::fs::read_link(out.join("d/abs")).expect("link"), Path::new("/etc/passwd"));
        let copy = out.join("copy");
        copy_tree(&src, &copy).expect("copy");
        assert_eq!(std::fs::read(copy.join("d/e/f")).expect("read"), b"hello");
    }
}
