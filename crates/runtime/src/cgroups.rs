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

/// The cgroup of process `pid` for a v1 controller (`memory`), or its v2 cgroup, as
/// `/proc/<pid>/cgroup` names it (relative to this process's cgroup namespace).
pub fn of_pid(pid: i32, controller: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
        let hit = if is_v2() { ctrls.is_empty() } else { ctrls.split(',').any(|c| c == controller) };
        hit.then(|| path.to_owned())
    })
}

/// Starts the wait that the next move of a process into a cgroup would otherwise start alone,
/// so that it overlaps with the work before that move.
///
/// Moving a process between cgroups (a write to `cgroup.procs`) takes the kernel's global
/// cgroup threadgroup lock for writing. The first writer after a quiet spell waits a full RCU
/// grace period before it gets it (about 10 ms on an idle 2-CPU machine: the largest single
/// item of a container start); writers that arrive while that wait is under way share it, and
/// for one more grace period after the last writer leaves no new wait is needed. The daemon
/// calls this when a start begins: the calling thread moves itself into the cgroup it is
/// already in (no change), and the runtime's move of the container's process, a few
/// milliseconds later, finds the wait under way or over. Hosts whose cgroup root is mounted
/// with `favordynmods` have no such wait. Errors are ignored: this only saves time.
pub fn prime_migration() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    let me = std::process::id() as i32;
    if is_v2() {
        if let Some(path) = of_pid(me, "") {
            let _ = std::fs::write(controller_dir("", &path).join("cgroup.procs"), me.to_string());
        }
        return;
    }
    for controller in ["pids", "cpu", "memory"] {
        if let Some(path) = of_pid(me, controller) {
            let file = controller_dir(controller, &path).join("tasks");
            if std::fs::write(&file, tid.to_string()).is_ok() {
                return;
            }
        }
    }
}

/// Turns the OOM killer off for the memory cgroup of process `pid` (`memory.oom_control`, the
/// spec's `linux.resources.memory.disableOOMKiller`), as runc does. cgroup v2 has no such
/// switch: there it is a no-op, as in runc.
pub fn disable_oom_killer(pid: i32) -> Result<(), String> {
    if is_v2() {
        return Ok(());
    }
    let path = of_pid(pid, "memory").ok_or_else(|| format!("process {pid} has no memory cgroup"))?;
    let file = controller_dir("memory", &path).join("memory.oom_control");
    std::fs::write(&file, "1").map_err(|e| format!("disable the OOM killer in `{}`: {e}", file.display()))
}

/// Removes what is left of a stopped container's cgroup `path` in every hierarchy, children
/// first. The runtime removes the container's own directory, but not one that still holds
/// cgroups made inside it — by a daemon running in a privileged container (DinD) — and an
/// empty cgroup only goes with `rmdir`. Directories with processes in them are left alone.
/// Safe to run beside another removal of the same tree (the shim's): every step tolerates a
/// directory that is already gone.
pub fn remove_tree(path: &str) {
    remove_tree_with(path, false)
}

/// Kills every process left in the cgroup tree at `path` (in each hierarchy), then removes it
/// as [`remove_tree`] does. For a container whose init has exited: without a pid namespace of
/// its own, its other processes outlive the init, and runc, crun and libcontainer kill them
/// at delete.
pub fn kill_and_remove_tree(path: &str) {
    remove_tree_with(path, true)
}

fn remove_tree_with(path: &str, kill: bool) {
    fn rm(dir: &Path, kill: bool) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rm(&e.path(), kill);
            }
        }
        if kill {
            for pid in std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default().lines() {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
                }
            }
        }
        // EBUSY while the last processes of the cgroup are still being torn down: a moment later
        // it is empty (seen with the v1 freezer when tests stop many containers at once).
        for _ in 0..20 {
            match std::fs::remove_dir(dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(10))
                }
                _ => break,
            }
        }
    }
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel.split('/').any(|c| c == "..") {
        return;
    }
    if is_v2() {
        rm(&Path::new("/sys/fs/cgroup").join(rel), kill);
        return;
    }
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let dir = h.path().join(rel);
        if dir.is_dir() {
            rm(&dir, kill);
        }
    }
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

fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok().map(|s| s.trim().to_owned())
}

fn read_u64(p: &Path) -> Option<u64> {
    read_trim(p).and_then(|s| s.parse().ok())
}

/// `key value` lines (memory.stat, cpu.stat) as a map.
fn read_kv(p: &Path) -> serde_json::Map<String, serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            l.split_once(' ').and_then(|(k, v)| v.trim().parse::<u64>().ok().map(|v| (k.to_owned(), v.into())))
        })
        .collect()
}

/// Host CPU time in nanoseconds, from the first line of /proc/stat (as Docker computes
/// `system_cpu_usage`).
pub fn system_cpu_usage() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().skip(1).take(7).filter_map(|v| v.parse::<u64>().ok()).sum::<u64>())
        })
        .map(|jiffies| jiffies * (1_000_000_000 / tck))
        .unwrap_or(0)
}

/// One sample of a container's cgroup in the shape of Docker's stats
/// (`cpu_stats`, `memory_stats`, `pids_stats`, `blkio_stats`).
pub fn stats(path: &str) -> serde_json::Value {
    use serde_json::json;
    let online = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let max_or_unlimited = |s: Option<String>| s.and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
    if is_v2() {
        let d = controller_dir("", path);
        let cpu = read_kv(&d.join("cpu.stat"));
        let us = |k: &str| cpu.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        let mem = read_kv(&d.join("memory.stat"));
        return json!({
            "cpu_stats": {
                "cpu_usage": {"total_usage": us("usage_usec") * 1000, "usage_in_kernelmode": us("system_usec") * 1000, "usage_in_usermode": us("user_usec") * 1000},
                "system_cpu_usage": system_cpu_usage(),
                "online_cpus": online,
                "throttling_data": {"periods": us("nr_periods"), "throttled_periods": us("nr_throttled"), "throttled_time": us("throttled_usec") * 1000},
            },
            "memory_stats": {
                "usage": read_u64(&d.join("memory.current")).unwrap_or(0),
                "limit": max_or_unlimited(read_trim(&d.join("memory.max"))),
                "stats": mem,
            },
            "pids_stats": {"current": read_u64(&d.join("pids.current")).unwrap_or(0), "limit": max_or_unlimited(read_trim(&d.join("pids.max")))},
            "blkio_stats": {"io_service_bytes_recursive": null},
        });
    }
    let c = |ctl: &str, f: &str| controller_dir(ctl, path).join(f);
    let percpu: Vec<u64> = read_trim(&c("cpuacct", "cpuacct.usage_percpu"))
        .map(|s| s.split_whitespace().filter_map(|v| v.parse().ok()).collect())
        .unwrap_or_default();
    let acct = read_kv(&c("cpuacct", "cpuacct.stat"));
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = |k: &str| acct.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0) * (1_000_000_000 / tck);
    let thr = read_kv(&c("cpu", "cpu.stat"));
    let t = |k: &str| thr.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let blkio: Vec<serde_json::Value> = std::fs::read_to_string(c("blkio", "blkio.throttle.io_service_bytes_recursive"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (maj, min) = f.first()?.split_once(':')?;
            Some(json!({"major": maj.parse::<u64>().ok()?, "minor": min.parse::<u64>().ok()?, "op": f.get(1)?, "value": f.get(2)?.parse::<u64>().ok()?}))
        })
        .collect();
    json!({
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": read_u64(&c("cpuacct", "cpuacct.usage")).unwrap_or(0),
                "percpu_usage": percpu,
                "usage_in_kernelmode": ticks("system"),
                "usage_in_usermode": ticks("user"),
            },
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": online,
            "throttling_data": {"periods": t("nr_periods"), "throttled_periods": t("nr_throttled"), "throttled_time": t("throttled_time")},
        },
        "memory_stats": {
            "usage": read_u64(&c("memory", "memory.usage_in_bytes")).unwrap_or(0),
            "max_usage": read_u64(&c("memory", "memory.max_usage_in_bytes")).unwrap_or(0),
            "limit": read_u64(&c("memory", "memory.limit_in_bytes")).unwrap_or(u64::MAX),
            "stats": read_kv(&c("memory", "memory.stat")),
        },
        "pids_stats": {"current": read_u64(&c("pids", "pids.current")).unwrap_or(0), "limit": max_or_unlimited(read_trim(&c("pids", "pids.max")))},
        "blkio_stats": {"io_service_bytes_recursive": blkio},
    })
}

/// New limits for a running container (`docker update`); unset fields are left alone.
#[derive(Debug, Clone, Default)]
pub struct Update {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub blkio_weight: Option<u16>,
}

/// Writes new limits into the container's cgroup, v1 or v2.
pub fn update(path: &str, u: &Update) -> Result<(), String> {
    update_at(Path::new("/sys/fs/cgroup"), is_v2(), path, u)
}

/// [`update`] under a cgroup mount `root` of the given version (tests point it at a copy).
fn update_at(root: &Path, v2: bool, path: &str, u: &Update) -> Result<(), String> {
    let rel = path.trim_start_matches('/');
    let write = |ctl: &str, file: &str, v: String| -> Result<(), String> {
        let dir = if v2 { root.join(rel) } else { root.join(ctl).join(rel) };
        let p = dir.join(file);
        std::fs::write(&p, &v).map_err(|e| format!("write {v} to `{}`: {e}", p.display()))
    };
    let unlimited = |n: i64| if n <= 0 { if v2 { "max".to_owned() } else { "-1".to_owned() } } else { n.to_string() };
    if let Some(m) = u.memory {
        // v1 refuses a memory limit above memsw: raise memsw first when both change.
        if let Some(s) = u.memory_swap
            && !v2
        {
            let _ = write("memory", "memory.memsw.limit_in_bytes", unlimited(s));
        }
        write("memory", if v2 { "memory.max" } else { "memory.limit_in_bytes" }, unlimited(m))?;
    }
    if let Some(s) = u.memory_swap {
        if v2 {
            let swap = match (s, u.memory) {
                (s, Some(m)) if s > 0 && m > 0 => (s - m).to_string(),
                _ => "max".to_owned(),
            };
            write("memory", "memory.swap.max", swap)?;
        } else {
            write("memory", "memory.memsw.limit_in_bytes", unlimited(s))?;
        }
    }
    if let Some(r) = u.memory_reservation {
        write("memory", if v2 { "memory.low" } else { "memory.soft_limit_in_bytes" }, unlimited(r))?;
    }
    if let Some(n) = u.nano_cpus {
        let period = 100_000i64;
        let quota = if n > 0 { n * period / 1_000_000_000 } else { -1 };
        if v2 {
            write("cpu", "cpu.max", if quota > 0 { format!("{quota} {period}") } else { format!("max {period}") })?;
        } else {
            write("cpu", "cpu.cfs_period_us", period.to_string())?;
            write("cpu", "cpu.cfs_quota_us", quota.to_string())?;
        }
    }
    if let Some(s) = u.cpu_shares.filter(|s| *s > 0) {
        if v2 {
            // The OCI mapping of shares (2..262144) onto weight (1..10000).
            write("cpu", "cpu.weight", (1 + ((s.clamp(2, 262_144) - 2) * 9999) / 262_142).to_string())?;
        } else {
            write("cpu", "cpu.shares", s.to_string())?;
        }
    }
    if let Some(p) = u.pids_limit {
        write("pids", "pids.max", if p > 0 { p.to_string() } else { "max".to_owned() })?;
    }
    if let Some(c) = &u.cpuset_cpus {
        write("cpuset", "cpuset.cpus", c.clone())?;
    }
    if let Some(w) = u.blkio_weight.filter(|w| *w > 0) {
        write("blkio", if v2 { "io.weight" } else { "blkio.weight" }, w.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(root: &Path, dirs: &[&str]) {
        for d in dirs {
            std::fs::create_dir_all(root.join(d)).expect("dir");
        }
    }

    #[test]
    fn priming_the_migration_lock_leaves_every_thread_where_it_was() {
        let before = std::fs::read_to_string("/proc/self/cgroup").expect("own cgroups");
        let tid = std::thread::spawn(|| {
            prime_migration();
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            (tid, std::fs::read_to_string("/proc/thread-self/cgroup").expect("thread cgroups"))
        })
        .join()
        .expect("thread");
        assert_eq!(tid.1, before, "the priming thread {} moved", tid.0);
        assert_eq!(std::fs::read_to_string("/proc/self/cgroup").expect("own cgroups"), before);
    }

    fn read(p: std::path::PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|_| format!("<no {}>", p.display()))
    }

    fn all() -> Update {
        Update {
            memory: Some(128 << 20),
            memory_swap: Some(256 << 20),
            memory_reservation: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            cpu_shares: Some(1024),
            pids_limit: Some(50),
            cpuset_cpus: Some("0".into()),
            blkio_weight: Some(300),
        }
    }

    #[test]
    fn update_writes_cgroup_v2_files() {
        let t = tempfile::tempdir().expect("tempdir");
        files(t.path(), &["berth/c"]);
        update_at(t.path(), true, "/berth/c", &all()).expect("update");
        let f = |n: &str| read(t.path().join("berth/c").join(n));
        assert_eq!(f("memory.max"), (128u64 << 20).to_string());
        assert_eq!(f("memory.swap.max"), (128u64 << 20).to_string(), "swap alone, not memory+swap");
        assert_eq!(f("memory.low"), (64u64 << 20).to_string());
        assert_eq!(f("cpu.max"), "50000 100000");
        assert_eq!(f("cpu.weight"), "39");
        assert_eq!(f("pids.max"), "50");
        assert_eq!(f("cpuset.cpus"), "0");
        assert_eq!(f("io.weight"), "300");
        // Unlimited is `max` in v2.
        let u = Update { memory: Some(-1), pids_limit: Some(0), nano_cpus: Some(0), ..Default::default() };
        update_at(t.path(), true, "/berth/c", &u).expect("update");
        assert_eq!(f("memory.max"), "max");
        assert_eq!(f("pids.max"), "max");
        assert_eq!(f("cpu.max"), "max 100000");
    }

    #[test]
    fn update_writes_cgroup_v1_files() {
        let t = tempfile::tempdir().expect("tempdir");
        files(t.path(), &["memory/berth/c", "cpu/berth/c", "pids/berth/c", "cpuset/berth/c", "blkio/berth/c"]);
        update_at(t.path(), false, "/berth/c", &all()).expect("update");
        let f = |c: &str, n: &str| read(t.path().join(c).join("berth/c").join(n));
        assert_eq!(f("memory", "memory.limit_in_bytes"), (128u64 << 20).to_string());
        assert_eq!(f("memory", "memory.memsw.limit_in_bytes"), (256u64 << 20).to_string());
        assert_eq!(f("memory", "memory.soft_limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(f("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(f("cpu", "cpu.shares"), "1024");
        assert_eq!(f("pids", "pids.max"), "50");
        assert_eq!(f("blkio", "blkio.weight"), "300");
        // A path outside the mount cannot be named.
        assert!(update_at(t.path(), false, "/berth/missing", &all()).is_err());
    }
}
