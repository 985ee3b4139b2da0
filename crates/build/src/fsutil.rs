//! Files for COPY and ADD: paths resolved inside a root (symlinks never lead out of it),
//! Docker's copy semantics, ownership from the image's /etc/passwd and /etc/group, and the
//! content hash that keys the cache (contents, mode, ownership; never mtime).

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::BuildError;

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BuildError {
    let path = path.to_owned();
    move |source| BuildError::Io { op, path, source }
}

/// Resolves `path` (absolute inside the container, or relative to the root) under `root`,
/// following symlinks as the container would see them but never out of `root`
/// (CVE-2018-15664 class). The last component is followed only when `follow_last`.
pub fn resolve_in_root(root: &Path, path: &str, follow_last: bool) -> PathBuf {
    let mut queue: Vec<String> = path.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_owned).collect();
    queue.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(c) = queue.pop() {
        if c == ".." {
            cur.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        for x in &cur {
            candidate.push(x);
        }
        candidate.push(&c);
        let last = queue.is_empty();
        match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() && (!last || follow_last) && links < 40 => {
                links += 1;
                let Ok(target) = std::fs::read_link(&candidate) else {
                    cur.push(c);
                    continue;
                };
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    cur.clear();
                }
                for x in t.split('/').filter(|x| !x.is_empty() && *x != ".").rev() {
                    queue.push(x.to_owned());
                }
            }
            _ => cur.push(c),
        }
    }
    let mut out = root.to_path_buf();
    for x in cur {
        out.push(x);
    }
    out
}

/// Makes `rel` a clean relative path; None when it climbs out (`../x`).
pub fn clean_rel(rel: &str) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(rel).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}

/// Owner and mode given to copied files.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyOpts {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
}

/// Looks a user or group up by name in `root`'s `/etc/passwd` or `/etc/group`.
fn lookup_id(root: &Path, file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(resolve_in_root(root, file, true)).ok()?;
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() > 2 && f[0] == name).then(|| f[2].parse().ok()).flatten()
        })
        .next()
}

/// `--chown=user[:group]`: names looked up in the image, numbers taken as they are; a user
/// without a group uses the user's numeric id as the group id, as Docker does.
pub fn parse_chown(root: &Path, spec: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let uid = match u.parse::<u32>() {
        Ok(n) => n,
        Err(_) => lookup_id(root, "/etc/passwd", u)
            .ok_or_else(|| format!("unable to find user {u}: no matching entries in passwd file"))?,
    };
    let gid = match g {
        None => uid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup_id(root, "/etc/group", g)
                .ok_or_else(|| format!("unable to find group {g}: no matching entries in group file"))?,
        },
    };
    Ok((uid, gid))
}

fn chown(p: &Path, uid: u32, gid: u32) -> Result<(), BuildError> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid)).map_err(io("chown", p))
}

/// Creates `dir` and its missing parents inside the root, owned as given.
pub fn mkdir_all(dir: &Path, uid: u32, gid: u32) -> Result<(), BuildError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        mkdir_all(parent, uid, gid)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).map_err(io("chmod", dir))?;
            chown(dir, uid, gid)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(BuildError::Io { op: "create directory", path: dir.to_owned(), source: e }),
    }
}

fn set_times(p: &Path, m: &std::fs::Metadata) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_bytes()) else { return };
    let t = libc::timespec { tv_sec: m.mtime() as libc::time_t, tv_nsec: m.mtime_nsec() as _ };
    let times = [t, t];
    // SAFETY: a valid NUL-terminated path and a two-element timespec array.
    unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) };
}

/// Copies `src` (a file, symlink or directory on the host side) to the host path `dst`,
/// recursively, giving everything the owner and mode in `opts` and keeping mtimes.
pub fn copy_tree(src: &Path, dst: &Path, opts: &CopyOpts) -> Result<(), BuildError> {
    let m = std::fs::symlink_metadata(src).map_err(io("stat", src))?;
    let ft = m.file_type();
    if ft.is_dir() {
        if !dst.is_dir() {
            if std::fs::symlink_metadata(dst).is_ok() {
                std::fs::remove_file(dst).map_err(io("replace", dst))?;
            }
            std::fs::create_dir(dst).map_err(io("create directory", dst))?;
        }
        let mode = opts.chmod.unwrap_or(m.mode() & 0o7777);
        let mut entries: Vec<_> = std::fs::read_dir(src).map_err(io("read directory", src))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            copy_tree(&e.path(), &dst.join(e.file_name()), opts)?;
        }
        chown(dst, opts.uid, opts.gid)?;
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", dst))?;
        set_times(dst, &m);
        return Ok(());
    }
    if let Ok(old) = std::fs::symlink_metadata(dst) {
        if old.is_dir() {
            std::fs::remove_dir_all(dst).map_err(io("replace", dst))?;
        } else {
            std::fs::remove_file(dst).map_err(io("replace", dst))?;
        }
    }
    if ft.is_symlink() {
        let target = std::fs::read_link(src).map_err(io("read link", src))?;
        std::os::unix::fs::symlink(&target, dst).map_err(io("create symlink", dst))?;
        chown(dst, opts.uid, opts.gid)?;
        set_times(dst, &m);
        return Ok(());
    }
    if ft.is_file() {
        std::fs::copy(src, dst).map_err(io("copy to", dst))?;
        chown(dst, opts.uid, opts.gid)?;
        let mode = opts.chmod.unwrap_or(m.mode() & 0o7777);
        std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode)).map_err(io("chmod", dst))?;
        set_times(dst, &m);
        return Ok(());
    }
    // Devices, fifos, sockets in a build context are skipped, as Docker's tar of it would.
    Ok(())
}

/// The sha256 of files' contents already known (the build context's, hashed as it was
/// received), by host path: [`hash_sources`] uses them instead of reading the files again.
pub type KnownDigests = std::collections::HashMap<PathBuf, [u8; 32]>;

/// Hashes the sources of a COPY or ADD: names, types, modes, owners and contents (each
/// file's contents as their own sha256, taken from `known` when it is there).
pub fn hash_sources(sources: &[(String, PathBuf)], known: &KnownDigests) -> Result<String, BuildError> {
    let mut h = Sha256::new();
    let mut buf = Vec::new();
    for (name, p) in sources {
        h.update(name.as_bytes());
        h.update([0]);
        hash_tree(&mut h, p, Path::new(""), known, &mut buf)?;
    }
    Ok(hex::encode(h.finalize()))
}

/// The sha256 of a file's contents.
pub fn file_digest(p: &Path, buf: &mut Vec<u8>) -> Result<[u8; 32], BuildError> {
    if buf.is_empty() {
        buf.resize(256 * 1024, 0);
    }
    let mut f = std::fs::File::open(p).map_err(io("open", p))?;
    let mut fh = Sha256::new();
    loop {
        let n = f.read(buf).map_err(io("read", p))?;
        if n == 0 {
            break;
        }
        fh.update(&buf[..n]);
    }
    Ok(fh.finalize().into())
}

fn hash_tree(h: &mut Sha256, p: &Path, rel: &Path, known: &KnownDigests, buf: &mut Vec<u8>) -> Result<(), BuildError> {
    let m = std::fs::symlink_metadata(p).map_err(io("stat", p))?;
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        'd'
    } else if ft.is_symlink() {
        'l'
    } else if ft.is_file() {
        'f'
    } else {
        'o'
    };
    h.update(format!("{}\0{kind}\0{:o}\0{}\0{}\0", rel.display(), m.mode() & 0o7777, m.uid(), m.gid()).as_bytes());
    if ft.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p).map_err(io("read directory", p))?.flatten().collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            hash_tree(h, &e.path(), &rel.join(e.file_name()), known, buf)?;
        }
    } else if ft.is_symlink() {
        let t = std::fs::read_link(p).map_err(io("read link", p))?;
        h.update(t.as_os_str().as_encoded_bytes());
    } else if ft.is_file() {
        h.update(m.len().to_le_bytes());
        let d = match known.get(p) {
            Some(d) => *d,
            None => file_digest(p, buf)?,
        };
        h.update(d);
    }
    h.update([0xff]);
    Ok(())
}

/// Whether the file at `p` looks like a tar archive (plain or gzip), for ADD's extraction.
pub fn is_archive(p: &Path) -> bool {
    let mut head = [0u8; 512];
    let Ok(mut f) = std::fs::File::open(p) else { return false };
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    if n >= 2 && head[0] == 0x1f && head[1] == 0x8b {
        return true;
    }
    n == 512 && &head[257..262] == b"ustar"
}

/// Extracts a tar (plain or gzip) into `dst` (a directory inside the root), owned as given.
pub fn extract_archive(archive: &Path, dst: &Path, opts: Option<&CopyOpts>) -> Result<(), BuildError> {
    let f = std::fs::File::open(archive).map_err(io("open", archive))?;
    let mut br = std::io::BufReader::new(f);
    let head = std::io::BufRead::fill_buf(&mut br).map_err(io("read", archive))?;
    let r: Box<dyn Read> =
        if head.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::GzDecoder::new(br)) } else { Box::new(br) };
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_ownerships(opts.is_none());
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let bad = |e: std::io::Error| BuildError::Invalid(format!("extract `{}`: {e}", archive.display()));
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.into_owned();
        if !entry.unpack_in(dst).map_err(bad)? {
            return Err(BuildError::Invalid(format!(
                "extract `{}`: entry `{}` would be written outside the destination",
                archive.display(),
                path.display()
            )));
        }
        if let Some(o) = opts
            && let Some(rel) = clean_rel(&path.to_string_lossy())
        {
            let _ = chown(&dst.join(rel), o.uid, o.gid);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_never_leaves_the_root() {
        let d = tempfile::tempdir().expect("tempdir");
        let r = d.path();
        std::fs::create_dir_all(r.join("real/sub")).expect("mkdir");
        std::os::unix::fs::symlink("/real", r.join("abs")).expect("symlink");
        std::os::unix::fs::symlink("../../../../etc", r.join("up")).expect("symlink");
        std::os::unix::fs::symlink("real/sub", r.join("rel")).expect("symlink");
        assert_eq!(resolve_in_root(r, "/abs/sub", true), r.join("real/sub"));
        assert_eq!(resolve_in_root(r, "/up/passwd", true), r.join("etc/passwd"));
        assert_eq!(resolve_in_root(r, "rel/x", true), r.join("real/sub/x"));
        assert_eq!(resolve_in_root(r, "/rel", false), r.join("rel"));
        assert_eq!(resolve_in_root(r, "/../../x", true), r.join("x"));
        assert_eq!(clean_rel("a/../../b"), None);
        assert_eq!(clean_rel("./a/./b"), Some(PathBuf::from("a/b")));
    }

    #[test]
    fn hash_ignores_mtime_but_not_mode() {
        let d = tempfile::tempdir().expect("tempdir");
        let f = d.path().join("f");
        std::fs::write(&f, "x").expect("write");
        let src = vec![("f".to_owned(), f.clone())];
        let none = KnownDigests::new();
        let a = hash_sources(&src, &none).expect("hash");
        set_times(&f, &std::fs::metadata(d.path()).expect("stat"));
        assert_eq!(hash_sources(&src, &none).expect("hash"), a);
        // A digest known from the context's reception gives the same hash as reading.
        let mut known = KnownDigests::new();
        known.insert(f.clone(), file_digest(&f, &mut Vec::new()).expect("digest"));
        assert_eq!(hash_sources(&src, &known).expect("hash"), a);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        assert_ne!(hash_sources(&src, &none).expect("hash"), a);
    }

    #[test]
    fn chown_lookup() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(d.path().join("etc")).expect("mkdir");
        std::fs::write(d.path().join("etc/passwd"), "root:x:0:0::/:/bin/sh\nbin:x:2:2::/:/bin/false\n").expect("w");
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("w");
        assert_eq!(parse_chown(d.path(), "bin"), Ok((2, 2)));
        assert_eq!(parse_chown(d.path(), "bin:staff"), Ok((2, 50)));
        assert_eq!(parse_chown(d.path(), "10:20"), Ok((10, 20)));
        assert_eq!(parse_chown(d.path(), "7"), Ok((7, 7)));
        assert!(parse_chown(d.path(), "nobody").is_err());
    }
}
