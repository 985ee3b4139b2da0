//! From run options to an OCI runtime spec with Docker's default confinement.
//!
//! The defaults follow moby's `oci/defaults.go` so that a program sees the same environment
//! under berth as under Docker: the same 14 capabilities, the same masked and read-only paths,
//! the same mounts under /dev.

use std::path::{Path, PathBuf};

use oci::spec::runtime::{Process, Spec};
use serde_json::{Value, json};

use crate::RuntimeError;

/// Docker's default capability set (moby `oci/caps/defaults.go`); CapEff `00000000a80425fb`.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (moby `oci/defaults.go`).
pub const MASKED_PATHS: [&str; 10] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container may read but not write.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A bind mount from the host into the container.
#[derive(Debug, Clone)]
pub struct BindMount {
    pub source: PathBuf,
    pub destination: String,
    pub readonly: bool,
}

/// A mount from `-v`, `--mount`, `--tmpfs` volumes or `--volumes-from`, as OCI sees it:
/// `kind` is `bind` or `tmpfs`, `options` go to the runtime as they are.
#[derive(Debug, Clone, Default)]
pub struct UserMount {
    pub kind: String,
    pub source: PathBuf,
    pub destination: String,
    pub options: Vec<String>,
}

/// The user a process runs as, already resolved to numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// What a process runs: shared by a container's first process and exec sessions.
#[derive(Debug, Clone, Default)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: ProcessUser,
    pub terminal: bool,
    /// (height, width)
    pub console_size: Option<(u16, u16)>,
    pub privileged: bool,
    pub no_new_privileges: bool,
    /// `--cap-add` names (with or without `CAP_`, or `ALL`), validated by [`capabilities`].
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// A seccomp filter will be loaded by the executor just before exec (see
    /// `libct::SeccompExecutor`): CAP_SYS_ADMIN stays effective until then, outside the
    /// bounding set, and the executor drops it once the filter is in.
    pub seccomp: bool,
}

/// Resource limits, in Docker's units.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    /// Bytes; 0 is unlimited.
    pub memory: i64,
    /// Memory plus swap in bytes; -1 unlimited, 0 unset.
    pub memory_swap: i64,
    /// Billionths of a CPU (`--cpus 1.5` is 1_500_000_000).
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    /// None or <= 0: unlimited.
    pub pids_limit: Option<i64>,
    /// Soft limit in bytes; 0 is unset.
    pub memory_reservation: i64,
    /// `0-3`, `0,2`; empty is all.
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    /// 10 to 1000; 0 is unset.
    pub blkio_weight: u16,
}

/// A resource limit for the process (`--ulimit nofile=1024:2048`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// Docker's short name: `nofile`, `nproc`, `core`…
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// The rlimits Docker's `--ulimit` knows, by short name.
pub const RLIMITS: [(&str, &str); 16] = [
    ("as", "RLIMIT_AS"),
    ("core", "RLIMIT_CORE"),
    ("cpu", "RLIMIT_CPU"),
    ("data", "RLIMIT_DATA"),
    ("fsize", "RLIMIT_FSIZE"),
    ("locks", "RLIMIT_LOCKS"),
    ("memlock", "RLIMIT_MEMLOCK"),
    ("msgqueue", "RLIMIT_MSGQUEUE"),
    ("nice", "RLIMIT_NICE"),
    ("nofile", "RLIMIT_NOFILE"),
    ("nproc", "RLIMIT_NPROC"),
    ("rss", "RLIMIT_RSS"),
    ("rtprio", "RLIMIT_RTPRIO"),
    ("rttime", "RLIMIT_RTTIME"),
    ("sigpending", "RLIMIT_SIGPENDING"),
    ("stack", "RLIMIT_STACK"),
];

/// Sysctls a container may set: those namespaced per IPC or network namespace (moby's
/// `ValidateSysctl`). `net.*` only when the container has its own network namespace.
pub fn check_sysctl(key: &str, own_netns: bool) -> Result<(), String> {
    const IPC: [&str; 8] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key.starts_with("net.") {
        return if own_netns {
            Ok(())
        } else {
            Err(format!("sysctl \"{key}\" is not allowed with the host's network namespace"))
        };
    }
    Err(format!("sysctl \"{key}\" is not allowed: it is not namespaced, so it would change the host"))
}

/// Everything the engine decided about one container, ready to become an OCI spec.
#[derive(Debug, Clone, Default)]
pub struct RunSpec {
    pub process: ProcessSpec,
    pub hostname: String,
    pub rootfs: PathBuf,
    pub readonly_rootfs: bool,
    /// Path of a network namespace to join; None shares the host's.
    pub netns: Option<PathBuf>,
    pub cgroups_path: String,
    pub resources: Resources,
    pub mounts: Vec<BindMount>,
    /// The user's mounts, parents before children; mounted before `mounts` (the /etc files).
    pub user_mounts: Vec<UserMount>,
    pub shm_size: Option<i64>,
    /// `--tmpfs`: destination and mount options (`size=64m,mode=1777`).
    pub tmpfs: Vec<(String, String)>,
    pub rlimits: Vec<Rlimit>,
    pub sysctl: std::collections::BTreeMap<String, String>,
}

impl ProcessSpec {
    fn to_json(&self) -> Value {
        // Validated when the container was created; an unknown name cannot reach here.
        let caps = capabilities(self.privileged, &self.cap_add, &self.cap_drop).unwrap_or_default();
        let mut held = caps.clone();
        if self.seccomp && !held.iter().any(|c| c == "CAP_SYS_ADMIN") {
            held.push("CAP_SYS_ADMIN".into());
        }
        let mut p = json!({
            "terminal": self.terminal,
            "user": {
                "uid": self.user.uid,
                "gid": self.user.gid,
            },
            "args": self.args,
            "env": self.env,
            "cwd": if self.cwd.is_empty() { "/" } else { &self.cwd },
            "capabilities": {
                "bounding": caps,
                "effective": held,
                "permitted": held,
            },
        });
        // Only when set: libcontainer reads a present `false` as "load seccomp after dropping
        // capabilities", which needs no_new_privs and so fails.
        if self.no_new_privileges {
            p["noNewPrivileges"] = json!(true);
        }
        if !self.user.additional_gids.is_empty() {
            p["user"]["additionalGids"] = json!(self.user.additional_gids);
        }
        if let Some((h, w)) = self.console_size {
            p["consoleSize"] = json!({"height": h, "width": w});
        }
        p
    }

    /// The OCI `process` object for an exec session.
    pub fn to_oci(&self) -> Result<Process, RuntimeError> {
        serde_json::from_value(self.to_json()).map_err(|e| RuntimeError::Other {
            op: "build process spec",
            id: String::new(),
            message: e.to_string(),
        })
    }
}

/// Every capability in the host's bounding set: `--privileged` grants what the host has, not
/// a fixed list (a fixed list fails on hosts that lack one, as CAP_SYS_RESOURCE here).
pub fn all_capabilities() -> Vec<String> {
    let bounding = own_capabilities("CapBnd").unwrap_or(u64::MAX);
    CAP_NAMES.iter().enumerate().filter(|(i, _)| bounding & (1u64 << i) != 0).map(|(_, n)| format!("CAP_{n}")).collect()
}

/// One of this process's capability sets (`CapBnd`, `CapEff`…) from /proc/self/status, read
/// once: a daemon's capabilities do not change, and every container start asks (the file is
/// costly to make for a process with many threads).
pub fn own_capabilities(set: &str) -> Option<u64> {
    static STATUS: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let status = STATUS.get_or_init(|| std::fs::read_to_string("/proc/self/status").ok()).as_deref()?;
    let hex = status.lines().find_map(|l| l.strip_prefix(set)?.strip_prefix(':'))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Normalises a capability name as Docker accepts it: any case, with or without `CAP_`.
fn normalize_cap(name: &str) -> Result<String, String> {
    let up = name.trim().to_ascii_uppercase();
    if up == "ALL" {
        return Ok(up);
    }
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    if CAP_NAMES.contains(&bare) { Ok(format!("CAP_{bare}")) } else { Err(format!("unknown capability: \"{name}\"")) }
}

/// The capability set of a process: Docker's defaults (or, privileged, the host's bounding
/// set), plus `add`, less `drop`, where `ALL` stands for every capability. As in Docker, an
/// added capability wins over a dropped `ALL`, and a dropped one over an added `ALL`.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>, String> {
    let add: Vec<String> = add.iter().map(|c| normalize_cap(c)).collect::<Result<_, _>>()?;
    let drop: Vec<String> = drop.iter().map(|c| normalize_cap(c)).collect::<Result<_, _>>()?;
    if privileged {
        return Ok(all_capabilities());
    }
    let host = all_capabilities();
    let mut caps: Vec<String> = if add.iter().any(|c| c == "ALL") {
        host.clone()
    } else {
        DEFAULT_CAPS.iter().map(|s| (*s).to_owned()).collect()
    };
    if drop.iter().any(|c| c == "ALL") {
        caps.clear();
    } else {
        caps.retain(|c| !drop.contains(c));
    }
    for c in add.iter().filter(|c| *c != "ALL") {
        if !caps.contains(c) && host.contains(c) {
            caps.push(c.clone());
        }
    }
    Ok(caps)
}

/// The host's character and block devices under /dev (not pts, shm, mqueue, or the
/// standard ones the runtime makes itself), as OCI `linux.devices` entries.
pub fn host_devices() -> Vec<Value> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    const SKIP_DIRS: [&str; 3] = ["/dev/pts", "/dev/shm", "/dev/mqueue"];
    const RUNTIME_MADE: [&str; 7] =
        ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty", "/dev/console"];
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from("/dev")];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
            let ft = m.file_type();
            let ps = p.display().to_string();
            if ft.is_dir() {
                if !SKIP_DIRS.contains(&ps.as_str()) {
                    stack.push(p);
                }
                continue;
            }
            if RUNTIME_MADE.contains(&ps.as_str()) || ps == "/dev/ptmx" {
                continue;
            }
            let kind = if ft.is_char_device() {
                "c"
            } else if ft.is_block_device() {
                "b"
            } else {
                continue;
            };
            let rdev = m.rdev();
            out.push(json!({
                "path": ps, "type": kind,
                "major": libc::major(rdev), "minor": libc::minor(rdev),
                "fileMode": m.mode() & 0o7777, "uid": m.uid(), "gid": m.gid(),
            }));
        }
    }
    out
}

/// Capability names by number (linux/capability.h).
pub const CAP_NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

impl RunSpec {
    /// The OCI runtime spec for this container.
    pub fn to_oci(&self) -> Result<Spec, RuntimeError> {
        let shm = format!("size={}k", self.shm_size.unwrap_or(64 * 1024 * 1024) / 1024);
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if self.process.privileged { "rw" } else { "ro" }]}),
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", shm]}),
        ];
        for (dst, opts) in &self.tmpfs {
            let mut options = vec!["nosuid".to_owned(), "nodev".to_owned(), "noexec".to_owned()];
            options.extend(opts.split(',').filter(|o| !o.is_empty()).map(str::to_owned));
            mounts.push(json!({"destination": dst, "type": "tmpfs", "source": "tmpfs", "options": options}));
        }
        for m in &self.user_mounts {
            mounts
                .push(json!({"destination": m.destination, "type": m.kind, "source": m.source, "options": m.options}));
        }
        for m in &self.mounts {
            let mut options = vec!["rbind", "rprivate"];
            if m.readonly {
                options.push("ro");
            }
            mounts.push(json!({"destination": m.destination, "type": "bind", "source": m.source, "options": options}));
        }
        let mut namespaces =
            vec![json!({"type": "pid"}), json!({"type": "ipc"}), json!({"type": "uts"}), json!({"type": "mount"})];
        if let Some(ns) = &self.netns {
            namespaces.push(json!({"type": "network", "path": ns}));
        }
        let mut resources = json!({
            "devices": [{"allow": !self.process.privileged, "access": "rwm"}],
        });
        if !self.process.privileged {
            // The devices a container may use (moby `oci/defaults.go`, DefaultLinuxSpec).
            let allow = |t: &str, major: i64, minor: i64| json!({"allow": true, "type": t, "major": major, "minor": minor, "access": "rwm"});
            resources["devices"] = json!([
                {"allow": false, "access": "rwm"},
                allow("c", 1, 5), allow("c", 1, 3), allow("c", 1, 9), allow("c", 1, 8),
                allow("c", 5, 0), allow("c", 5, 1), allow("c", 1, 7),
                {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
                allow("c", 136, -1), allow("c", 5, 2), allow("c", 10, 200),
            ]);
            // A minor of -1 stands for "any minor": the OCI spec says so by leaving it out.
            for d in resources["devices"].as_array_mut().into_iter().flatten() {
                if d["minor"] == json!(-1)
                    && let Some(o) = d.as_object_mut()
                {
                    o.remove("minor");
                }
            }
        }
        let r = &self.resources;
        if r.memory > 0 || r.memory_reservation > 0 {
            let mut mem = json!({});
            if r.memory > 0 {
                mem["limit"] = json!(r.memory);
            }
            if r.memory > 0 && r.memory_swap != 0 {
                mem["swap"] = json!(r.memory_swap);
            }
            if r.memory_reservation > 0 {
                mem["reservation"] = json!(r.memory_reservation);
            }
            resources["memory"] = mem;
        }
        if r.blkio_weight > 0 {
            resources["blockIO"] = json!({"weight": r.blkio_weight});
        }
        if r.nano_cpus > 0 || r.cpu_shares > 0 {
            let mut cpu = json!({});
            if r.nano_cpus > 0 {
                let period = 100_000u64;
                cpu["period"] = json!(period);
                cpu["quota"] = json!(r.nano_cpus * period as i64 / 1_000_000_000);
            }
            if r.cpu_shares > 0 {
                cpu["shares"] = json!(r.cpu_shares);
            }
            resources["cpu"] = cpu;
        }
        if !r.cpuset_cpus.is_empty() || !r.cpuset_mems.is_empty() {
            let cpu = resources.as_object_mut().map(|o| o.entry("cpu").or_insert_with(|| json!({})));
            if let Some(cpu) = cpu {
                if !r.cpuset_cpus.is_empty() {
                    cpu["cpus"] = json!(r.cpuset_cpus);
                }
                if !r.cpuset_mems.is_empty() {
                    cpu["mems"] = json!(r.cpuset_mems);
                }
            }
        }
        if let Some(p) = r.pids_limit.filter(|p| *p > 0) {
            resources["pids"] = json!({"limit": p});
        }
        let mut linux = json!({
            "namespaces": namespaces,
            "cgroupsPath": self.cgroups_path,
            "resources": resources,
        });
        if !self.sysctl.is_empty() {
            linux["sysctl"] = json!(self.sysctl);
        }
        mounts.extend(cgroup_mounts(self.process.privileged, &self.cgroups_path));
        if self.process.privileged {
            // --privileged: every device of the host, as Docker gives it.
            linux["devices"] = json!(host_devices());
        }
        if !self.process.privileged {
            linux["maskedPaths"] = json!(MASKED_PATHS);
            linux["readonlyPaths"] = json!(READONLY_PATHS);
        }
        let mut process = self.process.to_json();
        if !self.rlimits.is_empty() {
            let rl: Vec<Value> = self
                .rlimits
                .iter()
                .filter_map(|l| {
                    RLIMITS
                        .iter()
                        .find(|(n, _)| *n == l.name)
                        .map(|(_, t)| json!({"type": t, "soft": l.soft, "hard": l.hard}))
                })
                .collect();
            process["rlimits"] = json!(rl);
        }
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": process,
            "root": {"path": self.rootfs, "readonly": self.readonly_rootfs},
            "hostname": self.hostname,
            "mounts": mounts,
            "linux": linux,
        });
        serde_json::from_value(spec).map_err(|e| RuntimeError::Other {
            op: "build runtime spec",
            id: String::new(),
            message: e.to_string(),
        })
    }

    /// Writes `config.json` into `bundle` atomically, making the directory if it is missing.
    pub fn write_bundle(&self, bundle: &Path) -> Result<(), RuntimeError> {
        let spec = self.to_oci()?;
        std::fs::create_dir_all(bundle).map_err(|source| RuntimeError::Io { path: bundle.to_owned(), source })?;
        let tmp = bundle.join("config.json.tmp");
        spec.save(&tmp)
            .map_err(|e| RuntimeError::Io { path: tmp.clone(), source: std::io::Error::other(e.to_string()) })?;
        let dst = bundle.join("config.json");
        std::fs::rename(&tmp, &dst).map_err(|source| RuntimeError::Io { path: dst, source })
    }
}

/// Docker's /sys/fs/cgroup: the container's own cgroups. Privileged: writable, so that a
/// daemon inside (DinD) makes its containers' cgroups under them. Otherwise read-only; on
/// cgroup v1 libcontainer's own `cgroup` mount would be writable whatever its options say
/// (and a container could make child cgroups), so berth mounts a tmpfs and binds each
/// hierarchy's container directory read-only onto it, as runc does.
fn cgroup_mounts(privileged: bool, cgroups_path: &str) -> Vec<Value> {
    let opts = ["nosuid", "noexec", "nodev", "relatime"];
    if privileged || crate::cgroups::is_v2() {
        let mut o: Vec<&str> = opts.to_vec();
        o.push(if privileged { "rw" } else { "ro" });
        return vec![json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": o})];
    }
    let mut v = vec![
        json!({"destination": "/sys/fs/cgroup", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "noexec", "nodev", "mode=755", "size=64k"]}),
    ];
    let rel = cgroups_path.trim_start_matches('/');
    for h in v1_hierarchies() {
        v.push(json!({
            "destination": format!("/sys/fs/cgroup/{h}"),
            "type": "bind",
            "source": format!("/sys/fs/cgroup/{h}/{rel}"),
            "options": ["rbind", "ro", "nosuid", "noexec", "nodev"],
        }));
    }
    v
}

/// The cgroup v1 controllers mounted under /sys/fs/cgroup that the runtime makes a directory
/// in for each container (read once).
fn v1_hierarchies() -> &'static [String] {
    static H: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    H.get_or_init(|| {
        const MANAGED: &[&str] = &[
            "cpu",
            "cpuacct",
            "cpuset",
            "memory",
            "devices",
            "freezer",
            "blkio",
            "pids",
            "hugetlb",
            "perf_event",
            "net_cls",
            "net_prio",
        ];
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut v: Vec<String> = info
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let mut r = right.split_whitespace();
                (r.next()? == "cgroup").then_some(())?;
                let point = left.split_whitespace().nth(4)?;
                let name = point.strip_prefix("/sys/fs/cgroup/")?;
                MANAGED.contains(&name).then(|| name.to_owned())
            })
            .collect();
        v.sort();
        v.dedup();
        v
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_has_dockers_confinement() {
        let rs = RunSpec {
            process: ProcessSpec { args: vec!["true".into()], ..Default::default() },
            hostname: "abc".into(),
            rootfs: "/tmp/rootfs".into(),
            cgroups_path: "/berth/abc".into(),
            resources: Resources {
                memory: 64 << 20,
                nano_cpus: 1_500_000_000,
                pids_limit: Some(10),
                ..Default::default()
            },
            ..Default::default()
        };
        let spec = rs.to_oci().expect("valid spec");
        let v = serde_json::to_value(&spec).expect("serialise");
        let caps = v["process"]["capabilities"]["bounding"].as_array().expect("caps");
        assert_eq!(caps.len(), 14);
        assert_eq!(v["linux"]["maskedPaths"].as_array().map(|a| a.len()), Some(10));
        assert_eq!(v["linux"]["resources"]["cpu"]["quota"], json!(150000));
        assert_eq!(v["linux"]["resources"]["memory"]["limit"], json!(64 << 20));
        assert_eq!(v["linux"]["resources"]["pids"]["limit"], json!(10));
        assert_eq!(v["hostname"], json!("abc"));
    }

    #[test]
    fn cap_add_and_drop_like_docker() {
        let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<String>>();
        let c = capabilities(false, &s(&["net_admin"]), &s(&["CAP_CHOWN", "kill"])).expect("valid");
        assert!(c.contains(&"CAP_NET_ADMIN".to_owned()));
        assert!(!c.contains(&"CAP_CHOWN".to_owned()) && !c.contains(&"CAP_KILL".to_owned()));
        assert_eq!(c.len(), 13);
        let c = capabilities(false, &s(&["NET_RAW"]), &s(&["ALL"])).expect("valid");
        assert_eq!(c, vec!["CAP_NET_RAW".to_owned()]);
        let c = capabilities(false, &s(&["ALL"]), &s(&["SYS_ADMIN"])).expect("valid");
        assert!(!c.contains(&"CAP_SYS_ADMIN".to_owned()) && c.len() > 14);
        let e = capabilities(false, &s(&["NOPE"]), &[]).expect_err("unknown");
        assert!(e.contains("NOPE"), "{e}");
    }

    #[test]
    fn privileged_has_no_masks_and_host_caps() {
        let mut rs = RunSpec::default();
        rs.process.privileged = true;
        let v = serde_json::to_value(rs.to_oci().expect("valid spec")).expect("serialise");
        assert!(v["linux"].get("maskedPaths").is_none_or(|m| m.is_null()));
        assert!(v["process"]["capabilities"]["bounding"].as_array().expect("caps").len() >= 14);
    }
}
