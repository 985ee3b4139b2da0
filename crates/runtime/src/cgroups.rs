//! Reading a container's cgroup, on cgroup v1 or v2 hosts.

use std::path::{Path, PathBuf};

/// Whether the unified (v2) hierarchy is mounted at /sys/fs/cgroup.
pub fn is_v2() -> bool {
    nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// The directory of `path` (`/berth/<id>`) for a controller (`memory`), v1 or v2.
pub fn controller_dir(controller: &str, path: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if is_v2() { Path::new("/sys/fs/cgroup").join(rel) } else { Path::new("/sys/fs/cgroup").join(controller).join(rel) }
}

/// Whether the kernel's OOM killer killed a process of the cgroup: `oom_kill` in
/// `memory.oom_control` (v1) or `memory.events` (v2).
pub fn oom_killed(path: &str) -> bool {
    let dir = controller_dir("memory", path);
    let file = if is_v2() { "memory.events" } else { "memory.oom_control" };
    std::fs::read_to_string(dir.join(file))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|n| n.trim().parse::<u64>().ok())))
        .is_some_and(|n| n > 0)
}
