//! Applying a layer: a tar stream (plain, gzip or zstd) unpacked into a snapshot directory.
//!
//! Docker's whiteouts become overlayfs ones: `.wh.NAME` a 0/0 character device `NAME`,
//! `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on the directory. Entries whose path
//! is absolute is made relative; an entry with a `..` component is refused, and the `tar`
//! crate's `unpack_in` refuses to follow a symlink out of the target (CVE-2018-15664 class) and a
//! hard link to a file outside it. Device nodes are skipped.

use std::ffi::CString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use oci::Digest;
use sha2::{Digest as _, Sha256};

use crate::{ImageError, io_err};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// A reader that hashes and counts what is read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        Self { inner, hasher: Sha256::new(), count: 0 }
    }

    /// Reads the rest to EOF and returns the digest and byte count of everything read.
    pub fn finish(mut self) -> std::io::Result<(Digest, u64, R)> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        let hex = hex::encode(self.hasher.finalize());
        let d = Digest::from_sha256_hex(&hex).map_err(std::io::Error::other)?;
        Ok((d, self.count, self.inner))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// The compression of a layer, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn detect(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// What applying a layer found.
#[derive(Debug, Clone)]
pub struct Applied {
    /// Digest of the uncompressed tar (the layer's diff_id).
    pub diff_id: Digest,
    pub compression: Compression,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
}

/// Unpacks the layer read from `src` into `dest` (which must exist).
pub fn apply<R: Read>(src: R, dest: &Path) -> Result<Applied, ImageError> {
    let mut buffered = BufReader::with_capacity(128 * 1024, src);
    let head = buffered.fill_buf().map_err(io_err("read layer", dest))?;
    let compression = detect(head);
    if head.is_empty() {
        return Err(ImageError::InvalidArchive("empty input is not a tar archive".into()));
    }
    let decompressed: Box<dyn Read> = match compression {
        Compression::None => Box::new(buffered),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(buffered)),
        Compression::Zstd => {
            Box::new(zstd::stream::read::Decoder::with_buffer(buffered).map_err(io_err("zstd", dest))?)
        }
    };
    let mut hashing = HashingReader::new(decompressed);
    unpack(&mut hashing, dest)?;
    let (diff_id, tar_size, _) = hashing.finish().map_err(io_err("read layer", dest))?;
    Ok(Applied { diff_id, compression, tar_size })
}

fn unpack<R: Read>(src: R, dest: &Path) -> Result<(), ImageError> {
    let mut ar = tar::Archive::new(src);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(true);
    ar.set_preserve_mtime(true);
    ar.set_unpack_xattrs(true);
    ar.set_overwrite(true);
    let entries = ar.entries().map_err(|e| ImageError::InvalidArchive(format!("not a tar archive: {e}")))?;
    let mut seen = 0usize;
    let mut dirs = Vec::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| ImageError::InvalidArchive(format!("not a tar archive: {e}")))?;
        seen += 1;
        let raw = entry.path().map_err(|e| ImageError::InvalidArchive(e.to_string()))?.into_owned();
        let rel = sanitize(&raw)?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        if name == OPAQUE {
            let dir = dest.join(&parent);
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            set_xattr(&dir, "trusted.overlay.opaque", b"y")?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            let dir = dest.join(&parent);
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            let target = dir.join(hidden);
            let _ = std::fs::remove_file(&target);
            mknod_whiteout(&target)?;
            continue;
        }
        // Device nodes are never created from a layer: an image must not hand its containers
        // a host device (a container's /dev is a tmpfs the runtime fills anyway).
        let kind = entry.header().entry_type();
        if kind.is_character_special() || kind.is_block_special() {
            continue;
        }
        if entry.header().entry_type().is_dir() {
            dirs.push((rel.clone(), entry.header().mtime().unwrap_or(0)));
        }
        let ok = entry
            .unpack_in(dest)
            .map_err(|e| ImageError::InvalidArchive(format!("unpack `{}`: {}", rel.display(), error_chain(&e))))?;
        if !ok {
            return Err(ImageError::UnsafePath {
                path: raw.display().to_string(),
                reason: "it would be written outside the layer",
            });
        }
    }
    if seen == 0 {
        return Err(ImageError::InvalidArchive("not a tar archive: no entries".into()));
    }
    // Directory mtimes changed as their contents were written: set them last.
    for (rel, mtime) in dirs {
        let p = dest.join(rel);
        if let Ok(c) = CString::new(p.as_os_str().as_bytes()) {
            let t = libc::timespec { tv_sec: mtime as libc::time_t, tv_nsec: 0 };
            let times = [t, t];
            // SAFETY: valid NUL-terminated path and a two-element timespec array.
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
        }
    }
    Ok(())
}

/// Makes an archive path relative and refuses `..`.
pub fn sanitize(p: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                return Err(ImageError::UnsafePath { path: p.display().to_string(), reason: "it contains `..`" });
            }
        }
    }
    Ok(out)
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), ImageError> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|e| ImageError::InvalidArchive(e.to_string()))?;
    let n = CString::new(name).map_err(|e| ImageError::InvalidArchive(e.to_string()))?;
    // SAFETY: valid NUL-terminated strings and a buffer with its length.
    let r = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 {
        return Err(ImageError::Io {
            op: "set xattr on",
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn mknod_whiteout(path: &Path) -> Result<(), ImageError> {
    nix::sys::stat::mknod(path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0)
        .map_err(|e| ImageError::Io { op: "create whiteout", path: path.to_owned(), source: e.into() })
}

/// `e` and its sources, joined: the tar crate wraps the useful part.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append_data(&mut h, name, *data).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn applies_plain_and_gzip_with_the_same_diff_id() {
        let t = tar_with(&[("a/b.txt", b"hi"), ("./abs.txt", b"x")]);
        let d1 = tempfile::tempdir().expect("tempdir");
        let a1 = apply(&t[..], d1.path()).expect("apply");
        assert_eq!(std::fs::read(d1.path().join("a/b.txt")).expect("read"), b"hi");
        assert!(d1.path().join("abs.txt").exists());
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &t).expect("gzip");
        let gz = gz.finish().expect("gzip");
        let d2 = tempfile::tempdir().expect("tempdir");
        let a2 = apply(&gz[..], d2.path()).expect("apply");
        assert_eq!(a1.diff_id, a2.diff_id);
        assert_eq!(a1.diff_id, Digest::sha256_of(&t));
        assert_eq!(a2.compression, Compression::Gzip);
    }

    #[test]
    fn refuses_dotdot_and_garbage() {
        let mut raw = tar_with(&[("ok", b"x")]);
        // Rewrite the name in the header to ../evil (the builder refuses to write it).
        raw[..6].copy_from_slice(b"../evi");
        let mut h = tar::Header::from_byte_slice(&raw[..512]).clone();
        h.set_cksum();
        raw[..512].copy_from_slice(h.as_bytes());
        let d = tempfile::tempdir().expect("tempdir");
        let e = apply(&raw[..], d.path()).expect_err("must refuse");
        assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
        let e = apply(&b"this is not a tar archive at all"[..], d.path()).expect_err("garbage");
        assert!(matches!(e, ImageError::InvalidArchive(_)), "{e}");
        assert!(apply(&b""[..], d.path()).is_err());
    }

    #[test]
    fn refuses_symlink_and_hardlink_escapes_and_skips_devices() {
        let t = tempfile::tempdir().expect("tempdir");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("secret"), b"s").expect("write");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "esc", &outside).expect("symlink");
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "esc/pwned", &b"x"[..]).expect("through");
        let d = t.path().join("d1");
        std::fs::create_dir_all(&d).expect("mkdir");
        assert!(apply(&b.into_inner().expect("finish")[..], &d).is_err());
        assert!(!outside.join("pwned").exists());
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        h.set_mode(0o644);
        b.append_link(&mut h, "hl", outside.join("secret")).expect("hardlink");
        let d = t.path().join("d2");
        std::fs::create_dir_all(&d).expect("mkdir");
        assert!(apply(&b.into_inner().expect("finish")[..], &d).is_err());
        assert!(!d.join("hl").exists());
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Block);
        h.set_size(0);
        h.set_mode(0o600);
        h.set_device_major(8).expect("major");
        h.set_device_minor(0).expect("minor");
        b.append_data(&mut h, "dev/sda", std::io::empty()).expect("device");
        let d = t.path().join("d3");
        std::fs::create_dir_all(&d).expect("mkdir");
        apply(&b.into_inner().expect("finish")[..], &d).expect("devices are skipped");
        assert!(std::fs::symlink_metadata(d.join("dev/sda")).is_err());
    }

    #[test]
    fn root_whiteouts_become_overlay_whiteouts() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let t = tar_with(&[("d/.wh.gone", b""), ("e/.wh..wh..opq", b"")]);
        let d = tempfile::tempdir().expect("tempdir");
        apply(&t[..], d.path()).expect("apply");
        let m = std::fs::symlink_metadata(d.path().join("d/gone")).expect("whiteout");
        assert!(std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()));
    }
}
