//! A container's files from the host: `cp` (the archive API) and `export`.
//!
//! A container path is resolved the way the container sees it ([`View::resolve`]): its root is
//! the overlay rootfs, its mounts (volumes, binds, the /etc files) replace what is below their
//! destination, and symlinks — absolute ones included — are followed inside that view, so a
//! link planted in the container cannot point a copy at the host's files. A stopped
//! container's rootfs is mounted for the operation (under the container's lock, so it cannot
//! start meanwhile) and unmounted after.
//!
//! Writing (`PUT …/archive`) unpacks with [`image::archive::unpack`]: `..`, links out of the
//! target and device nodes are refused or skipped whatever the archive says. What remains is
//! the race of a running container swapping a directory for a symlink between the resolution
//! and the write (CVE-2018-15664); the unpacker's own check of each entry's parent narrows it
//! to the window of one entry.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use serde_json::json;

use crate::container::Container;
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// What the container sees: its root and its mounts (container path → host path).
#[derive(Debug, Clone)]
pub struct View {
    pub rootfs: PathBuf,
    /// (destination, host source, writable), longest destination first.
    pub mounts: Vec<(String, PathBuf, bool)>,
    pub readonly_rootfs: bool,
}

/// A container path resolved to the host.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The container path after following symlinks.
    pub path: String,
    pub host: PathBuf,
    pub writable: bool,
}

/// Resolves `path` inside `root` alone (no mounts), as [`View::resolve`] does.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> Result<PathBuf> {
    let v = View { rootfs: root.to_owned(), mounts: Vec::new(), readonly_rootfs: false };
    v.resolve(path, follow_last).map(|r| r.host)
}

impl View {
    /// The host path of a clean absolute container path, with whether it may be written.
    fn map(&self, cpath: &Path) -> (PathBuf, bool) {
        for (dst, src, rw) in &self.mounts {
            if let Ok(rest) = cpath.strip_prefix(dst) {
                return (if rest.as_os_str().is_empty() { src.clone() } else { src.join(rest) }, *rw);
            }
        }
        let rel = cpath.strip_prefix("/").unwrap_or(cpath);
        (self.rootfs.join(rel), !self.readonly_rootfs)
    }

    /// Follows `path` component by component inside the view; `..` never climbs above `/`
    /// and a symlink is read and followed inside the view too.
    pub fn resolve(&self, path: &str, follow_last: bool) -> Result<Resolved> {
        let mut pending: std::collections::VecDeque<OsString> = Path::new(path)
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.to_owned()),
                Component::ParentDir => Some(OsString::from("..")),
                _ => None,
            })
            .collect();
        let mut cur = PathBuf::from("/");
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let next = cur.join(&c);
            let (host, _) = self.map(&next);
            let is_link = std::fs::symlink_metadata(&host).map(|m| m.file_type().is_symlink()).unwrap_or(false);
            if is_link && (follow_last || !pending.is_empty()) {
                links += 1;
                if links > 40 {
                    return Err(EngineError::BadRequest(format!("too many levels of symbolic links in `{path}`")));
                }
                let target = std::fs::read_link(&host)
                    .map_err(|e| EngineError::Internal(format!("read link `{}`: {e}", next.display())))?;
                if target.is_absolute() {
                    cur = PathBuf::from("/");
                }
                let mut front: std::collections::VecDeque<OsString> = target
                    .components()
                    .filter_map(|c| match c {
                        Component::Normal(n) => Some(n.to_owned()),
                        Component::ParentDir => Some(OsString::from("..")),
                        _ => None,
                    })
                    .collect();
                front.extend(pending);
                pending = front;
                continue;
            }
            cur = next;
        }
        let (host, writable) = self.map(&cur);
        Ok(Resolved { path: cur.display().to_string(), host, writable })
    }
}

/// Go's `os.FileMode` bits, as Docker's path stat carries them.
fn go_mode(m: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let ft = m.file_type();
    let raw = m.permissions().mode();
    let mut mode = raw & 0o777;
    if ft.is_dir() {
        mode |= 1 << 31;
    }
    if ft.is_symlink() {
        mode |= 1 << 27;
    }
    if ft.is_fifo() {
        mode |= 1 << 25;
    }
    if ft.is_socket() {
        mode |= 1 << 24;
    }
    if ft.is_block_device() {
        mode |= 1 << 26;
    }
    if ft.is_char_device() {
        mode |= (1 << 26) | (1 << 21);
    }
    if raw & 0o4000 != 0 {
        mode |= 1 << 23;
    }
    if raw & 0o2000 != 0 {
        mode |= 1 << 22;
    }
    if raw & 0o1000 != 0 {
        mode |= 1 << 20;
    }
    mode
}

/// The name an archive of `path` is rooted at: its last component, `.` for `dir/.` and `/`.
fn base_name(path: &str) -> String {
    if path.ends_with("/.") || path.trim_end_matches('/').is_empty() {
        return ".".into();
    }
    Path::new(path.trim_end_matches('/')).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(".".into())
}

/// A container path's stat, as the `X-Docker-Container-Path-Stat` header carries it.
pub fn path_stat(view: &View, path: &str) -> Result<(serde_json::Value, Resolved)> {
    let follow = path.ends_with('/') || path.ends_with("/.");
    let r = view.resolve(path, follow)?;
    let m = std::fs::symlink_metadata(&r.host)
        .map_err(|_| EngineError::NotFound(format!("Could not find the file {path} in container")))?;
    let link = if m.file_type().is_symlink() {
        view.resolve(path, true).map(|t| t.path).unwrap_or_default()
    } else {
        String::new()
    };
    let mtime = m.modified().ok().map(chrono::DateTime::<chrono::Utc>::from).unwrap_or_default();
    let st = json!({
        "name": base_name(path),
        "size": m.len(),
        "mode": go_mode(&m),
        "mtime": mtime.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "linkTarget": link,
    });
    Ok((st, r))
}

pub fn encode_stat(v: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(v.to_string())
}

/// Writes the tar of a container path (named by its base name) into `w`.
pub fn write_path_tar<W: std::io::Write>(view: &View, path: &str, w: W) -> Result<()> {
    let (_, r) = path_stat(view, path)?;
    let mut b = tar::Builder::new(w);
    let name = base_name(path);
    image::archive::append_path(&mut b, &r.host, Path::new(&name))
        .and_then(|_| b.into_inner().map(|_| ()))
        .map_err(|e| EngineError::Internal(format!("archive `{path}`: {e}")))
}

/// Unpacks a tar into a directory of the container.
pub fn extract_into<R: std::io::Read>(view: &View, path: &str, no_overwrite_dir_non_dir: bool, src: R) -> Result<()> {
    let r = view.resolve(path, true)?;
    let m = std::fs::metadata(&r.host)
        .map_err(|_| EngineError::NotFound(format!("Could not find the file {path} in container")))?;
    if !m.is_dir() {
        return Err(EngineError::BadRequest(format!("extraction point is not a directory: {path}")));
    }
    if !r.writable {
        return Err(EngineError::Forbidden(format!(
            "container rootfs is marked read-only: cannot copy into `{}`",
            r.path
        )));
    }
    let opts = image::archive::UnpackOptions { no_overwrite_dir_non_dir, ..Default::default() };
    image::archive::unpack(src, &r.host, &opts)?;
    Ok(())
}

/// Writes the whole root filesystem (what `docker export` gives: not the volumes).
pub fn write_rootfs_tar<W: std::io::Write>(rootfs: &Path, w: W) -> Result<()> {
    let mut b = tar::Builder::new(w);
    let mut children: Vec<OsString> = std::fs::read_dir(rootfs)
        .map_err(|e| EngineError::Internal(format!("read `{}`: {e}", rootfs.display())))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    children.sort();
    for c in children {
        image::archive::append_path(&mut b, &rootfs.join(&c), Path::new(&c))
            .map_err(|e| EngineError::Internal(format!("export `{}`: {e}", c.to_string_lossy())))?;
    }
    b.into_inner().map(|_| ()).map_err(|e| EngineError::Internal(format!("export: {e}")))
}

/// A writer that sends what it gets down a channel (a streaming HTTP body), from a blocking
/// thread.
pub struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    pub fn new(tx: tokio::sync::mpsc::Sender<bytes::Bytes>) -> Self {
        Self { tx, buf: Vec::with_capacity(64 * 1024) }
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= 64 * 1024 {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = std::io::Write::flush(self);
    }
}

impl Engine {
    /// The container's view, with its rootfs mounted. Returns whether this call mounted it
    /// (then the caller unmounts with [`Engine::release_view`]). Call under the container's
    /// `op` lock unless it runs.
    pub(crate) fn open_view(&self, c: &Container) -> Result<(View, bool)> {
        let rec = c.snapshot();
        let dir = self.paths.container_dir(&c.id);
        let rootfs = self.paths.rootfs(&c.id);
        let mut mounted = false;
        if !image::snapshot::is_mounted(&rootfs) {
            let img = self.images.resolve(&rec.image)?;
            let lowers = self.images.container_lowers(&img)?;
            image::snapshot::mount_overlay(&lowers, &dir.join("upper"), &dir.join("work"), &rootfs, false)?;
            mounted = true;
        }
        let mut mounts: Vec<(String, PathBuf, bool)> = Vec::new();
        for m in rec.mounts.iter().filter(|m| m.kind != "tmpfs") {
            mounts.push((m.destination.clone(), m.source.clone(), m.rw));
        }
        for (dest, p) in self.paths.etc_mounts(&c.id) {
            if p.exists() && !mounts.iter().any(|(d, _, _)| *d == dest) {
                mounts.push((dest, p, true));
            }
        }
        mounts.sort_by_key(|(d, _, _)| std::cmp::Reverse(Path::new(d).components().count()));
        Ok((View { rootfs, mounts, readonly_rootfs: rec.host_config.readonly_rootfs }, mounted))
    }

    pub(crate) fn release_view(&self, view: &View, mounted: bool) {
        if mounted && let Err(e) = image::snapshot::unmount(&view.rootfs) {
            tracing::warn!("{e}");
        }
    }

    /// Runs `f` on the container's view in a blocking thread, holding the container's lock
    /// when it does not run (so its rootfs, mounted for `f`, cannot be mounted by a start).
    pub async fn with_view<T: Send + 'static>(
        self: &Arc<Self>,
        c: &Arc<Container>,
        f: impl FnOnce(&View) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let guard = if c.status().is_live() { None } else { Some(c.op.lock().await) };
        let e = self.clone();
        let c2 = c.clone();
        let r = tokio::task::spawn_blocking(move || {
            let (view, mounted) = e.open_view(&c2)?;
            let r = f(&view);
            e.release_view(&view, mounted);
            r
        })
        .await
        .map_err(EngineError::internal)?;
        drop(guard);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_symlinks_inside_the_view() {
        let d = tempfile::tempdir().expect("tempdir");
        let root = d.path().join("root");
        let vol = d.path().join("vol");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::create_dir_all(&vol).expect("mkdir");
        std::fs::write(root.join("etc/passwd"), b"ctr").expect("write");
        // An absolute link to /etc stays in the container's /etc.
        std::os::unix::fs::symlink("/etc", root.join("e")).expect("link");
        std::os::unix::fs::symlink("../../../../../etc", root.join("up")).expect("link");
        std::os::unix::fs::symlink("/data/x", root.join("tovol")).expect("link");
        let v = View { rootfs: root.clone(), mounts: vec![("/data".into(), vol.clone(), true)], readonly_rootfs: true };
        assert_eq!(v.resolve("/e/passwd", false).expect("resolve").host, root.join("etc/passwd"));
        assert_eq!(v.resolve("/up/passwd", false).expect("resolve").host, root.join("etc/passwd"));
        let r = v.resolve("/tovol", true).expect("resolve");
        assert_eq!((r.host, r.writable, r.path.as_str()), (vol.join("x"), true, "/data/x"));
        // Not following the last component gives the link itself.
        assert_eq!(v.resolve("/e", false).expect("resolve").host, root.join("e"));
        assert!(!v.resolve("/etc", false).expect("resolve").writable);
        assert_eq!(base_name("/a/b/"), "b");
        assert_eq!(base_name("/a/b/."), ".");
        assert_eq!(base_name("/"), ".");
    }
}
