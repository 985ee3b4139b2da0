//! A container's (or a build step's) filesystem change: the overlayfs upper directory.
//!
//! - [`changes`]: `docker diff`'s list (A, C, D) from the upper directory and the lowers.
//! - [`write_layer`]: the upper directory as a layer tar, overlayfs whiteouts (0/0 character
//!   devices) turned into Docker's `.wh.NAME` entries and opaque directories
//!   (`trusted.overlay.opaque=y`) into `.wh..wh..opq` entries. Entries are written in sorted
//!   order so the same tree always gives the same diff_id.
//! - [`prune_mount_points`]: removes what the runtime created in an upper directory only to
//!   mount over it (`/etc/hosts`, `/proc`, …), which is no change made by the process.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci::Digest;

use crate::store::{ImageStore, LayerRecord};
use crate::{ImageError, io_err};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// The paths the runtime mounts over inside every container; Docker keeps them in an "init"
/// layer below the container's, so they never show in `docker diff` or a commit.
pub const MOUNT_POINTS: &[&str] = &[
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
    "proc",
    "sys",
    "dev",
    "dev/pts",
    "dev/shm",
    "dev/mqueue",
    "dev/console",
    ".dockerenv",
    "sbin/docker-init",
];

/// One entry of `docker diff`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Absolute path inside the container.
    pub path: String,
    /// 0 modified, 1 added, 2 deleted (Docker's `Kind`).
    pub kind: u8,
}

impl Change {
    pub fn letter(&self) -> char {
        match self.kind {
            0 => 'C',
            1 => 'A',
            _ => 'D',
        }
    }
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Reads an extended attribute of `path` (not following a symlink); None when absent.
fn get_xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).ok()?;
    let n = CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: valid NUL-terminated strings and a buffer with its length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

/// Names of the extended attributes of `path` worth keeping in a layer (`security.*`,
/// `user.*`; overlayfs's own `trusted.overlay.*` are its bookkeeping).
fn list_xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else { return Vec::new() };
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid NUL-terminated string and a buffer with its length.
    let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r <= 0 {
        return Vec::new();
    }
    buf.truncate(r as usize);
    buf.split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .filter_map(|n| std::str::from_utf8(n).ok())
        .filter(|n| n.starts_with("security.") || n.starts_with("user."))
        .filter_map(|n| get_xattr(path, n).map(|v| (n.to_owned(), v)))
        .collect()
}

fn is_opaque(path: &Path) -> bool {
    get_xattr(path, "trusted.overlay.opaque").is_some_and(|v| v == b"y")
}

/// The entries of a directory, sorted by name.
fn sorted_entries(dir: &Path) -> Result<Vec<(String, PathBuf, std::fs::Metadata)>, ImageError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err("read directory", dir))? {
        let e = e.map_err(io_err("read directory", dir))?;
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
        out.push((e.file_name().to_string_lossy().into_owned(), p, m));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Whether `rel` exists in one of the lowers (top-most first), honouring whiteouts and
/// opaque directories above it only roughly: enough to tell "added" from "changed".
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> Option<std::fs::Metadata> {
    for l in lowers.iter().rev() {
        let p = l.join(rel);
        if let Ok(m) = std::fs::symlink_metadata(&p) {
            if is_whiteout(&m) {
                return None;
            }
            return Some(m);
        }
    }
    None
}

/// `docker diff`: what changed in `upper` over `lowers` (bottom layer first), sorted by path.
pub fn changes(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<Change>, ImageError> {
    let mut out = Vec::new();
    walk_changes(upper, Path::new(""), lowers, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Walks one directory; returns whether anything under it was reported.
fn walk_changes(dir: &Path, rel: &Path, lowers: &[PathBuf], out: &mut Vec<Change>) -> Result<bool, ImageError> {
    let mut any = false;
    for (name, path, m) in sorted_entries(dir)? {
        let r = rel.join(&name);
        let abs = format!("/{}", r.display());
        let rs = r.to_string_lossy();
        if is_whiteout(&m) {
            if in_lowers(lowers, &r).is_some() {
                out.push(Change { path: abs, kind: 2 });
                any = true;
            }
            continue;
        }
        let lower = in_lowers(lowers, &r);
        let mount_point = MOUNT_POINTS.contains(&rs.as_ref());
        if m.is_dir() {
            let opaque = is_opaque(&path);
            let before = out.len();
            let inner = walk_changes(&path, &r, if opaque { &[] } else { lowers }, out)?;
            match lower {
                None if mount_point && !inner => {}
                None => {
                    out.insert(before, Change { path: abs, kind: 1 });
                    any = true;
                }
                Some(lm) => {
                    let meta_changed = lm.mode() != m.mode() || lm.uid() != m.uid() || lm.gid() != m.gid();
                    if inner || opaque || (meta_changed && !mount_point) {
                        out.insert(before, Change { path: abs, kind: 0 });
                        any = true;
                    }
                }
            }
            continue;
        }
        if mount_point && m.len() == 0 && lower.is_none() {
            continue;
        }
        out.push(Change { path: abs, kind: if lower.is_some() { 0 } else { 1 } });
        any = true;
    }
    Ok(any)
}

/// Removes from an upper directory the empty files and directories the runtime made only to
/// mount over ([`MOUNT_POINTS`]) when the lowers do not have them, then parent directories
/// left empty that only mirror a lower one.
pub fn prune_mount_points(upper: &Path, lowers: &[PathBuf]) {
    for rel in MOUNT_POINTS.iter().rev() {
        let p = upper.join(rel);
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if in_lowers(lowers, Path::new(rel)).is_some() && !is_whiteout(&m) {
            // The lower has it: what is in the upper was copied up to be mounted over.
            if m.is_dir() {
                let _ = std::fs::remove_dir(&p);
            } else if m.len() == 0 {
                let _ = std::fs::remove_file(&p);
            }
            continue;
        }
        if m.is_dir() {
            let _ = std::fs::remove_dir(&p);
        } else if m.is_file() && m.len() == 0 {
            let _ = std::fs::remove_file(&p);
        }
    }
    for parent in ["etc", "dev", "sbin"] {
        let p = upper.join(parent);
        if std::fs::read_dir(&p).is_ok_and(|mut d| d.next().is_none())
            && !is_opaque(&p)
            && let (Ok(m), Some(lm)) = (std::fs::symlink_metadata(&p), in_lowers(lowers, Path::new(parent)))
            && lm.mode() == m.mode()
            && lm.uid() == m.uid()
            && lm.gid() == m.gid()
        {
            let _ = std::fs::remove_dir(&p);
        }
    }
}

/// Whether an upper directory holds no change at all.
pub fn is_empty(upper: &Path) -> bool {
    std::fs::read_dir(upper).map(|mut d| d.next().is_none()).unwrap_or(true)
}

/// Writes `upper` as a layer tar (Docker's whiteout format) to `out`.
pub fn write_layer<W: Write>(upper: &Path, out: W) -> Result<W, ImageError> {
    write_layer_filtered(upper, out, &|_| true)
}

/// [`write_layer`] of the entries `keep` accepts (relative paths; a directory not kept is
/// skipped with everything below it).
pub fn write_layer_filtered<W: Write>(upper: &Path, out: W, keep: &dyn Fn(&Path) -> bool) -> Result<W, ImageError> {
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    write_dir(&mut b, upper, Path::new(""), &mut links, keep)?;
    b.into_inner().map_err(io_err("write layer of", upper))
}

fn header_for(m: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(m.mode() & 0o7777);
    h.set_uid(m.uid() as u64);
    h.set_gid(m.gid() as u64);
    h.set_mtime(m.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn write_dir<W: Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
    keep: &dyn Fn(&Path) -> bool,
) -> Result<(), ImageError> {
    let werr = |p: &Path| io_err("write layer entry", p.to_owned());
    for (name, path, m) in sorted_entries(dir)? {
        let r = rel.join(&name);
        if !keep(&r) {
            continue;
        }
        let ft = m.file_type();
        if is_whiteout(&m) {
            let wh = rel.join(format!("{WHITEOUT_PREFIX}{name}"));
            let mut h = header_for(&m);
            h.set_mode(0o600);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, &wh, std::io::empty()).map_err(werr(&wh))?;
            continue;
        }
        let xattrs = list_xattrs(&path);
        if !xattrs.is_empty() {
            let pax: Vec<(String, Vec<u8>)> =
                xattrs.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)).collect();
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice()))).map_err(werr(&r))?;
        }
        let mut h = header_for(&m);
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            b.append_data(&mut h, &r, std::io::empty()).map_err(werr(&r))?;
            if is_opaque(&path) {
                let o = r.join(OPAQUE);
                let mut oh = header_for(&m);
                oh.set_mode(0o600);
                oh.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut oh, &o, std::io::empty()).map_err(werr(&o))?;
            }
            write_dir(b, &path, &r, links, keep)?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(&path).map_err(io_err("read link", &path))?;
            h.set_entry_type(tar::EntryType::Symlink);
            b.append_link(&mut h, &r, &target).map_err(werr(&r))?;
        } else if ft.is_file() {
            if m.nlink() > 1 {
                let key = (m.dev(), m.ino());
                if let Some(first) = links.get(&key) {
                    h.set_entry_type(tar::EntryType::Link);
                    b.append_link(&mut h, &r, first).map_err(werr(&r))?;
                    continue;
                }
                links.insert(key, r.clone());
            }
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.len());
            let f = std::fs::File::open(&path).map_err(io_err("open", &path))?;
            b.append_data(&mut h, &r, f).map_err(werr(&r))?;
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() { tar::EntryType::Char } else { tar::EntryType::Block });
            let rdev = m.rdev();
            h.set_device_major(libc::major(rdev)).map_err(werr(&r))?;
            h.set_device_minor(libc::minor(rdev)).map_err(werr(&r))?;
            b.append_data(&mut h, &r, std::io::empty()).map_err(werr(&r))?;
        } else if ft.is_fifo() {
            h.set_entry_type(tar::EntryType::Fifo);
            b.append_data(&mut h, &r, std::io::empty()).map_err(werr(&r))?;
        }
        // Sockets are not carried in layers (Docker skips them too).
    }
    Ok(())
}

/// How [`ImageStore::layer_from_upper`] turns the upper directory into a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// The directory is moved into the snapshot store (a finished build step: nothing else
    /// uses it any more). Fast: the layer's files are never copied.
    Move,
    /// The layer tar is unpacked into a new snapshot and the directory is left alone (a
    /// running container's upper).
    Copy,
}

impl ImageStore {
    /// The entries of a (possibly live) upper directory that `keep` accepts as a layer on top
    /// of `parent`; the directory is left alone. None when nothing is kept.
    pub fn layer_from_upper_filtered(
        &self,
        parent: Option<&Digest>,
        upper: &Path,
        keep: &dyn Fn(&Path) -> bool,
    ) -> Result<Option<LayerRecord>, ImageError> {
        let mut ingest = self.content().ingest()?;
        if let Err(e) = write_layer_filtered(upper, ingest.writer(), keep) {
            ingest.abort();
            return Err(e);
        }
        let (blob, size) = ingest.commit(self.content(), None)?;
        if size <= 1024 {
            // Only the end-of-archive blocks: no change.
            return Ok(None);
        }
        let path = self.content().path(&blob);
        let f = std::fs::File::open(&path).map_err(io_err("open", &path))?;
        let chain = self.snapshots().apply(parent, f)?.0;
        Ok(Some(LayerRecord {
            diff_id: blob.clone(),
            chain_id: chain,
            blob,
            media_type: oci::media_type::OCI_LAYER.to_owned(),
            blob_size: size,
            size,
        }))
    }

    /// Stores the change in `upper` as a layer on top of the chain `parent`: the tar blob
    /// (uncompressed) in the content store and the snapshot. None when nothing changed.
    pub fn layer_from_upper(
        &self,
        parent: Option<&Digest>,
        upper: &Path,
        take: Take,
    ) -> Result<Option<LayerRecord>, ImageError> {
        if is_empty(upper) {
            return Ok(None);
        }
        let mut ingest = self.content().ingest()?;
        if let Err(e) = write_layer(upper, ingest.writer()) {
            ingest.abort();
            return Err(e);
        }
        let (blob, size) = ingest.commit(self.content(), None)?;
        let chain = match take {
            Take::Move => self.snapshots().insert_dir(parent, &blob, upper)?,
            Take::Copy => {
                let path = self.content().path(&blob);
                let f = std::fs::File::open(&path).map_err(io_err("open", &path))?;
                self.snapshots().apply(parent, f)?.0
            }
        };
        Ok(Some(LayerRecord {
            diff_id: blob.clone(),
            chain_id: chain,
            blob,
            media_type: oci::media_type::OCI_LAYER.to_owned(),
            blob_size: size,
            size,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mknod_whiteout(p: &Path) {
        nix::sys::stat::mknod(p, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).expect("mknod");
    }

    fn root() -> bool {
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() == 0 }
    }

    #[test]
    fn root_layer_and_changes_from_an_upper_dir() {
        if !root() {
            return;
        }
        let lower = tempfile::tempdir().expect("tempdir");
        let upper = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(lower.path().join("etc")).expect("mkdir");
        std::fs::write(lower.path().join("etc/passwd"), "root").expect("write");
        std::fs::write(lower.path().join("gone"), "x").expect("write");
        std::fs::create_dir_all(lower.path().join("opq/old")).expect("mkdir");
        std::fs::create_dir_all(upper.path().join("etc")).expect("mkdir");
        std::fs::write(upper.path().join("etc/passwd"), "root2").expect("write");
        std::fs::write(upper.path().join("new"), "n").expect("write");
        mknod_whiteout(&upper.path().join("gone"));
        std::fs::create_dir_all(upper.path().join("opq")).expect("mkdir");
        let p = CString::new(upper.path().join("opq").as_os_str().as_bytes()).expect("cstring");
        // SAFETY: valid path and name, a one-byte value.
        unsafe { libc::lsetxattr(p.as_ptr(), c"trusted.overlay.opaque".as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        // A mount point the runtime made.
        std::fs::write(upper.path().join("etc/hosts"), "").expect("write");
        let lowers = vec![lower.path().to_path_buf()];
        let ch: Vec<String> = changes(upper.path(), &lowers)
            .expect("changes")
            .iter()
            .map(|c| format!("{} {}", c.letter(), c.path))
            .collect();
        assert_eq!(ch, vec!["C /etc", "C /etc/passwd", "D /gone", "A /new", "C /opq"]);
        prune_mount_points(upper.path(), &lowers);
        assert!(!upper.path().join("etc/hosts").exists());
        let tar = write_layer(upper.path(), Vec::new()).expect("layer");
        let mut ar = tar::Archive::new(&tar[..]);
        let names: Vec<String> = ar
            .entries()
            .expect("entries")
            .map(|e| e.expect("entry").path().expect("path").display().to_string())
            .collect();
        assert_eq!(names, vec!["etc", "etc/passwd", ".wh.gone", "new", "opq", "opq/.wh..wh..opq"]);
        // Applied again, the layer gives the same overlay form back.
        let back = tempfile::tempdir().expect("tempdir");
        let applied = crate::layer::apply(&tar[..], back.path()).expect("apply");
        assert_eq!(applied.diff_id, Digest::sha256_of(&tar));
        assert!(is_whiteout(&std::fs::symlink_metadata(back.path().join("gone")).expect("stat")));
        assert!(is_opaque(&back.path().join("opq")));
        // Deterministic: the same tree gives the same bytes.
        assert_eq!(write_layer(upper.path(), Vec::new()).expect("layer"), tar);
    }
}
