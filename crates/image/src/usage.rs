//! Disk usage as `du` counts it: allocated blocks, each inode once.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes allocated on disk for `p` and everything under it (not following symlinks, each
/// hard-linked inode once, not crossing into other filesystems).
pub fn disk_usage(p: &Path) -> u64 {
    let mut seen = HashSet::new();
    disk_usage_shared(p, &mut seen)
}

/// [`disk_usage`] with a set of inodes already counted elsewhere (shared layers once).
pub fn disk_usage_shared(p: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let Ok(top) = std::fs::symlink_metadata(p) else { return 0 };
    let dev = top.dev();
    let mut total = 0;
    let mut stack = vec![(p.to_path_buf(), top)];
    while let Some((path, m)) = stack.pop() {
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir() && m.dev() == dev {
            let Ok(rd) = std::fs::read_dir(&path) else { continue };
            for e in rd.flatten() {
                if let Ok(cm) = e.metadata() {
                    stack.push((e.path(), cm));
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_hardlinks_once() {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::write(d.path().join("a"), vec![1u8; 100_000]).expect("write");
        let one = disk_usage(d.path());
        std::fs::hard_link(d.path().join("a"), d.path().join("b")).expect("link");
        assert_eq!(disk_usage(d.path()), one);
        assert!(one >= 100_000);
    }
}
