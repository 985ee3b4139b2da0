//! Seccomp: berth's default profile, Docker-format profiles (`--security-opt seccomp=…`), and
//! their translation into the OCI `linux.seccomp` object libcontainer loads.
//!
//! The default profile is an allowlist written here by kind of syscall. It keeps Docker's
//! semantics: what creates namespaces, mounts, loads modules, changes the clock, reboots, or
//! reaches kernel state that no namespace isolates (keyrings, kexec, BPF, perf, the
//! hypervisor socket) is refused with EPERM unless the capability that makes it legitimate has
//! been granted (`--cap-add SYS_ADMIN` lets `mount` through, as in Docker); `clone` is allowed
//! without namespace flags only, `personality` only for the personas programs really switch
//! to. Differences from Docker's own file, on purpose: a syscall the profile does not know
//! (newer than this table or than libseccomp) fails with ENOSYS rather than EPERM, so programs
//! take their "old kernel" fallback — as runc arranges — and `io_uring_*`, `modify_ldt` and
//! `kexec_*` are refused whatever the capabilities.
//!
//! A profile is turned into the OCI object once per set of capabilities and kept
//! ([`oci_profile`]): starting a container reuses it. (libcontainer still generates the BPF
//! program in each container's init; `bench/confinement.sh` measures what that costs.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Value, json};

/// What a denied syscall returns.
const EPERM: i64 = 1;
/// What an unknown syscall returns: "not implemented", so callers fall back.
const ENOSYS: i64 = 38;

/// Syscalls any process may make: they act on the caller's own files, memory, processes,
/// sockets and namespaced IPC, and the kernel checks permissions on their objects.
const ALLOWED: &[&[&str]] = &[
    // Files and descriptors.
    &[
        "read",
        "write",
        "readv",
        "writev",
        "pread64",
        "pwrite64",
        "preadv",
        "pwritev",
        "preadv2",
        "pwritev2",
        "open",
        "openat",
        "openat2",
        "close",
        "close_range",
        "creat",
        "lseek",
        "_llseek",
        "dup",
        "dup2",
        "dup3",
        "pipe",
        "pipe2",
        "fcntl",
        "fcntl64",
        "ioctl",
        "flock",
        "fsync",
        "fdatasync",
        "sync",
        "syncfs",
        "sync_file_range",
        "sync_file_range2",
        "arm_sync_file_range",
        "truncate",
        "truncate64",
        "ftruncate",
        "ftruncate64",
        "fallocate",
        "fadvise64",
        "fadvise64_64",
        "arm_fadvise64_64",
        "readahead",
        "sendfile",
        "sendfile64",
        "splice",
        "tee",
        "vmsplice",
        "copy_file_range",
        "stat",
        "stat64",
        "lstat",
        "lstat64",
        "fstat",
        "fstat64",
        "newfstatat",
        "fstatat64",
        "statx",
        "statfs",
        "statfs64",
        "fstatfs",
        "fstatfs64",
        "access",
        "faccessat",
        "faccessat2",
        "readlink",
        "readlinkat",
        "getdents",
        "getdents64",
        "getcwd",
        "chdir",
        "fchdir",
        "mkdir",
        "mkdirat",
        "rmdir",
        "rename",
        "renameat",
        "renameat2",
        "link",
        "linkat",
        "symlink",
        "symlinkat",
        "unlink",
        "unlinkat",
        "mknod",
        "mknodat",
        "chmod",
        "fchmod",
        "fchmodat",
        "fchmodat2",
        "chown",
        "fchown",
        "lchown",
        "fchownat",
        "chown32",
        "fchown32",
        "lchown32",
        "umask",
        "utime",
        "utimes",
        "futimesat",
        "utimensat",
        "utimensat_time64",
        "getxattr",
        "lgetxattr",
        "fgetxattr",
        "setxattr",
        "lsetxattr",
        "fsetxattr",
        "listxattr",
        "llistxattr",
        "flistxattr",
        "removexattr",
        "lremovexattr",
        "fremovexattr",
        "getxattrat",
        "setxattrat",
        "listxattrat",
        "removexattrat",
        "inotify_init",
        "inotify_init1",
        "inotify_add_watch",
        "inotify_rm_watch",
        "fanotify_mark",
        "memfd_create",
        "memfd_secret",
        "cachestat",
    ],
    // Processes, threads, credentials (the kernel checks CAP_SETUID and friends).
    &[
        "fork",
        "vfork",
        "execve",
        "execveat",
        "exit",
        "exit_group",
        "wait4",
        "waitid",
        "waitpid",
        "kill",
        "tkill",
        "tgkill",
        "getpid",
        "getppid",
        "gettid",
        "getpgid",
        "setpgid",
        "getpgrp",
        "getsid",
        "setsid",
        "getuid",
        "geteuid",
        "getgid",
        "getegid",
        "getuid32",
        "geteuid32",
        "getgid32",
        "getegid32",
        "setuid",
        "setgid",
        "setuid32",
        "setgid32",
        "setreuid",
        "setregid",
        "setreuid32",
        "setregid32",
        "setresuid",
        "setresgid",
        "setresuid32",
        "setresgid32",
        "getresuid",
        "getresgid",
        "getresuid32",
        "getresgid32",
        "setfsuid",
        "setfsgid",
        "setfsuid32",
        "setfsgid32",
        "getgroups",
        "setgroups",
        "getgroups32",
        "setgroups32",
        "capget",
        "capset",
        "prctl",
        "arch_prctl",
        "set_tid_address",
        "set_robust_list",
        "get_robust_list",
        "rseq",
        "futex",
        "futex_time64",
        "futex_waitv",
        "futex_wake",
        "futex_wait",
        "futex_requeue",
        "sched_yield",
        "sched_getaffinity",
        "sched_setaffinity",
        "sched_getparam",
        "sched_setparam",
        "sched_getscheduler",
        "sched_setscheduler",
        "sched_get_priority_max",
        "sched_get_priority_min",
        "sched_rr_get_interval",
        "sched_rr_get_interval_time64",
        "sched_getattr",
        "sched_setattr",
        "getpriority",
        "setpriority",
        "nice",
        "ioprio_get",
        "ioprio_set",
        "getrlimit",
        "setrlimit",
        "prlimit64",
        "ugetrlimit",
        "getrusage",
        "times",
        "uname",
        "sysinfo",
        "pidfd_open",
        "pidfd_send_signal",
        "pidfd_getfd",
        "process_madvise",
        "process_mrelease",
        "seccomp",
        "restart_syscall",
        "pause",
        "alarm",
        "getitimer",
        "setitimer",
        "getcpu",
        "get_thread_area",
        "set_thread_area",
        "set_tls",
        "get_tls",
        "landlock_create_ruleset",
        "landlock_add_rule",
        "landlock_restrict_self",
        "getrandom",
        "adjtimex",
        "breakpoint",
        "cacheflush",
    ],
    // Time (reading it, sleeping, timers).
    &[
        "nanosleep",
        "clock_nanosleep",
        "clock_nanosleep_time64",
        "clock_gettime",
        "clock_gettime64",
        "clock_getres",
        "clock_getres_time64",
        "gettimeofday",
        "time",
        "timer_create",
        "timer_settime",
        "timer_settime64",
        "timer_gettime",
        "timer_gettime64",
        "timer_getoverrun",
        "timer_delete",
        "timerfd_create",
        "timerfd_settime",
        "timerfd_settime64",
        "timerfd_gettime",
        "timerfd_gettime64",
    ],
    // Signals.
    &[
        "rt_sigaction",
        "rt_sigprocmask",
        "rt_sigreturn",
        "rt_sigpending",
        "rt_sigsuspend",
        "rt_sigtimedwait",
        "rt_sigtimedwait_time64",
        "rt_sigqueueinfo",
        "rt_tgsigqueueinfo",
        "sigaltstack",
        "signalfd",
        "signalfd4",
        "sigaction",
        "sigprocmask",
        "sigreturn",
        "sigpending",
        "sigsuspend",
        "signal",
        "sgetmask",
        "ssetmask",
    ],
    // Memory.
    &[
        "brk",
        "mmap",
        "mmap2",
        "munmap",
        "mremap",
        "mprotect",
        "pkey_mprotect",
        "pkey_alloc",
        "pkey_free",
        "madvise",
        "mlock",
        "mlock2",
        "munlock",
        "mlockall",
        "munlockall",
        "mincore",
        "msync",
        "remap_file_pages",
        "membarrier",
        "mseal",
        "map_shadow_stack",
    ],
    // IPC (namespaced), event and poll interfaces, Linux AIO.
    &[
        "shmget",
        "shmat",
        "shmdt",
        "shmctl",
        "semget",
        "semop",
        "semtimedop",
        "semtimedop_time64",
        "semctl",
        "msgget",
        "msgsnd",
        "msgrcv",
        "msgctl",
        "mq_open",
        "mq_unlink",
        "mq_timedsend",
        "mq_timedsend_time64",
        "mq_timedreceive",
        "mq_timedreceive_time64",
        "mq_notify",
        "mq_getsetattr",
        "ipc",
        "eventfd",
        "eventfd2",
        "select",
        "_newselect",
        "pselect6",
        "pselect6_time64",
        "poll",
        "ppoll",
        "ppoll_time64",
        "epoll_create",
        "epoll_create1",
        "epoll_ctl",
        "epoll_wait",
        "epoll_pwait",
        "epoll_pwait2",
        "io_setup",
        "io_destroy",
        "io_getevents",
        "io_pgetevents",
        "io_pgetevents_time64",
        "io_submit",
        "io_cancel",
    ],
    // Sockets (`socket` itself is below: one family is refused).
    &[
        "socketpair",
        "bind",
        "listen",
        "accept",
        "accept4",
        "connect",
        "getsockname",
        "getpeername",
        "sendto",
        "recvfrom",
        "sendmsg",
        "recvmsg",
        "sendmmsg",
        "recvmmsg",
        "recvmmsg_time64",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "socketcall",
        "send",
        "recv",
    ],
];

/// Syscalls allowed only with a capability (any one of those listed), as the kernel would
/// otherwise let a container act outside its namespaces.
const BY_CAPABILITY: &[(&[&str], &[&str])] = &[
    (
        &["CAP_SYS_ADMIN"],
        &[
            "mount",
            "umount",
            "umount2",
            "pivot_root",
            "unshare",
            "setns",
            "fanotify_init",
            "quotactl",
            "quotactl_fd",
            "lookup_dcookie",
            "sethostname",
            "setdomainname",
            "swapon",
            "swapoff",
            "fsopen",
            "fsconfig",
            "fsmount",
            "fspick",
            "move_mount",
            "open_tree",
            "open_tree_attr",
            "mount_setattr",
            "statmount",
            "listmount",
            "clone3",
        ],
    ),
    (&["CAP_SYS_ADMIN", "CAP_BPF"], &["bpf"]),
    (&["CAP_SYS_ADMIN", "CAP_PERFMON"], &["perf_event_open"]),
    (&["CAP_SYS_PTRACE"], &["kcmp", "process_vm_readv", "process_vm_writev", "userfaultfd"]),
    (&["CAP_SYS_MODULE"], &["init_module", "finit_module", "delete_module"]),
    (&["CAP_SYS_BOOT"], &["reboot"]),
    (&["CAP_SYS_PACCT"], &["acct"]),
    (&["CAP_SYS_RAWIO"], &["iopl", "ioperm"]),
    (
        &["CAP_SYS_TIME"],
        &["settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64"],
    ),
    (
        &["CAP_SYS_NICE"],
        &["get_mempolicy", "set_mempolicy", "set_mempolicy_home_node", "mbind", "move_pages", "migrate_pages"],
    ),
    (&["CAP_SYSLOG"], &["syslog"]),
    (&["CAP_SYS_CHROOT"], &["chroot"]),
    (&["CAP_SYS_TTY_CONFIG"], &["vhangup"]),
    (&["CAP_DAC_READ_SEARCH"], &["open_by_handle_at", "name_to_handle_at"]),
];

/// Refused whatever the capabilities: kernel state no namespace covers (keyrings, kexec,
/// the LSM attributes of the host), interfaces with a history of escapes (io_uring,
/// modify_ldt), and obsolete calls nothing legitimate makes.
const DENIED: &[&str] = &[
    "keyctl",
    "add_key",
    "request_key",
    "kexec_load",
    "kexec_file_load",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "modify_ldt",
    "nfsservctl",
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "vm86",
    "vm86old",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "afs_syscall",
    "tuxcall",
    "security",
    "putpmsg",
    "getpmsg",
    "vserver",
    "epoll_ctl_old",
    "epoll_wait_old",
    "lsm_get_self_attr",
    "lsm_set_self_attr",
    "lsm_list_modules",
    "uretprobe",
    "olduname",
    "oldstat",
    "oldlstat",
    "oldfstat",
    "idle",
    "bdflush",
    "stty",
    "gtty",
    "prof",
    "profil",
    "ftime",
    "lock",
    "mpx",
    "ulimit",
    "break",
    "umount_old",
    "waitpid_old",
];

/// `clone`'s namespace flags: without CAP_SYS_ADMIN, `clone` must not carry any of them.
const CLONE_NS_FLAGS: u64 = 0x0002_0000 // CLONE_NEWNS
    | 0x0200_0000 // CLONE_NEWCGROUP
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000; // CLONE_NEWNET

/// Personas `personality(2)` may switch to: Linux, 32-bit Linux, UNAME26 variants, and the
/// query value.
const PERSONAS: &[u64] = &[0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// `AF_VSOCK`: a socket to the hypervisor, which no namespace isolates.
const AF_VSOCK: u64 = 40;

/// berth's default profile, in Docker's profile format (the format `--security-opt
/// seccomp=FILE` takes), so one translation serves both.
pub fn default_profile() -> &'static Value {
    static P: OnceLock<Value> = OnceLock::new();
    P.get_or_init(|| {
        let mut rules = Vec::new();
        let allowed: Vec<&str> = ALLOWED.iter().flat_map(|g| g.iter().copied()).collect();
        rules.push(json!({"names": allowed, "action": "SCMP_ACT_ALLOW"}));
        rules.push(json!({
            "names": ["socket"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_NE"}],
        }));
        rules.push(json!({
            "names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM,
            "args": [{"index": 0, "value": AF_VSOCK, "op": "SCMP_CMP_EQ"}],
        }));
        for p in PERSONAS {
            rules.push(json!({
                "names": ["personality"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 0, "value": p, "op": "SCMP_CMP_EQ"}],
            }));
        }
        // ptrace was a way around seccomp before Linux 4.8; from then on the kernel rechecks
        // the filter after a tracer changes a syscall.
        rules.push(json!({"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}}));
        rules.push(json!({"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}}));
        rules.push(json!({
            "names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        }));
        rules.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}}));
        // clone3 passes its flags in memory a filter cannot read: without CAP_SYS_ADMIN it
        // answers "not implemented", and the C library falls back to clone.
        rules.push(json!({
            "names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        }));
        let mut gated_denials: Vec<&str> = Vec::new();
        for (caps, names) in BY_CAPABILITY {
            for cap in *caps {
                rules.push(json!({"names": names, "action": "SCMP_ACT_ALLOW", "includes": {"caps": [cap]}}));
            }
            gated_denials.extend(names.iter().filter(|n| **n != "clone3"));
        }
        // Known but refused: EPERM, as Docker answers, not the ENOSYS of unknown syscalls.
        // (A capability's ALLOW rule above wins: libseccomp keeps the most permissive match.)
        rules.push(json!({"names": DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM}));
        rules.push(json!({"names": gated_denials, "action": "SCMP_ACT_ERRNO", "errnoRet": EPERM, "_gated": true}));
        json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": ENOSYS,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
            ],
            "syscalls": rules,
        })
    })
}

/// The architectures a profile covers on this host (native first).
fn arches(profile: &Value) -> Vec<String> {
    let native = match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "x86" => "SCMP_ARCH_X86",
        "arm" => "SCMP_ARCH_ARM",
        other => return vec![format!("SCMP_ARCH_{}", other.to_uppercase())],
    };
    if let Some(map) = profile.get("archMap").and_then(Value::as_array) {
        for m in map {
            if m["architecture"] == native {
                let mut v = vec![native.to_owned()];
                v.extend(
                    m["subArchitectures"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned),
                );
                return v;
            }
        }
        return vec![native.to_owned()];
    }
    match profile.get("architectures").and_then(Value::as_array) {
        Some(a) => a.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        None => vec![native.to_owned()],
    }
}

fn kernel_at_least(min: &str) -> bool {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let parse = |s: &str| -> (u32, u32) {
        let mut it = s.split(|c: char| !c.is_ascii_digit()).filter(|p| !p.is_empty()).map(|p| p.parse().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    parse(&release) >= parse(min)
}

/// Whether a syscall name means something to libseccomp (and so to libcontainer) here.
fn known(name: &str) -> bool {
    libseccomp::ScmpSyscall::from_name(name).is_ok()
}

/// Translates a Docker-format profile into the OCI `linux.seccomp` object for a container
/// with `caps` (names like `CAP_SYS_ADMIN`): rules whose `includes`/`excludes` do not match
/// the capabilities, architecture or kernel are left out, unknown syscall names dropped.
pub fn translate(profile: &Value, caps: &[String]) -> Result<Value, String> {
    let obj = profile.as_object().ok_or("seccomp profile: not a JSON object")?;
    let default =
        obj.get("defaultAction").and_then(Value::as_str).ok_or("seccomp profile: `defaultAction` is missing")?;
    check_action(default)?;
    let arch = arches(profile);
    let has_cap = |c: &Value| c.as_str().is_some_and(|c| caps.iter().any(|x| x == c));
    let mut out_rules = Vec::new();
    // (name, action, errno, args) already emitted: a syscall allowed by two rules (two
    // capabilities that each open it) is added to the filter once.
    let mut seen = std::collections::HashSet::new();
    for (i, rule) in obj.get("syscalls").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let inc = &rule["includes"];
        let exc = &rule["excludes"];
        if inc["caps"].as_array().is_some_and(|l| !l.iter().all(has_cap)) {
            continue;
        }
        if exc["caps"].as_array().is_some_and(|l| l.iter().any(has_cap)) {
            continue;
        }
        if inc["arches"].as_array().is_some_and(|l| !l.iter().any(|a| arch_matches(a, &arch))) {
            continue;
        }
        if exc["arches"].as_array().is_some_and(|l| l.iter().any(|a| arch_matches(a, &arch))) {
            continue;
        }
        if inc["minKernel"].as_str().is_some_and(|k| !kernel_at_least(k)) {
            continue;
        }
        // A capability that lets a gated syscall through also lifts its EPERM rule.
        let mut names: Vec<String> = match (rule.get("names").and_then(Value::as_array), rule.get("name")) {
            (Some(l), _) => l.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            (None, Some(Value::String(n))) => vec![n.clone()],
            _ => return Err(format!("seccomp profile: rule {i} has no `names`")),
        };
        names.retain(|n| known(n));
        if rule.get("_gated").is_some() {
            names.retain(|n| !gated_allowed(n, caps));
        }
        let action = rule["action"].as_str().ok_or_else(|| format!("seccomp profile: rule {i} has no `action`"))?;
        let shape =
            (action.to_owned(), rule.get("errnoRet").map(Value::to_string), rule.get("args").map(Value::to_string));
        names.retain(|n| seen.insert((n.clone(), shape.clone())));
        if names.is_empty() {
            continue;
        }
        check_action(action)?;
        let mut r = json!({"names": names, "action": action});
        if let Some(e) = rule.get("errnoRet").filter(|v| !v.is_null()) {
            r["errnoRet"] = e.clone();
        }
        if let Some(args) = rule.get("args").and_then(Value::as_array).filter(|a| !a.is_empty()) {
            let mut list = Vec::new();
            for a in args {
                let op =
                    a["op"].as_str().ok_or_else(|| format!("seccomp profile: rule {i}: an argument has no `op`"))?;
                if !matches!(
                    op,
                    "SCMP_CMP_NE"
                        | "SCMP_CMP_LT"
                        | "SCMP_CMP_LE"
                        | "SCMP_CMP_EQ"
                        | "SCMP_CMP_GE"
                        | "SCMP_CMP_GT"
                        | "SCMP_CMP_MASKED_EQ"
                ) {
                    return Err(format!("seccomp profile: rule {i}: unknown comparison `{op}`"));
                }
                let index = a["index"]
                    .as_u64()
                    .filter(|x| *x < 6)
                    .ok_or_else(|| format!("seccomp profile: rule {i}: argument index must be 0 to 5"))?;
                list.push(json!({
                    "index": index,
                    "value": a["value"].as_u64().unwrap_or(0),
                    "valueTwo": a["valueTwo"].as_u64().unwrap_or(0),
                    "op": op,
                }));
            }
            r["args"] = Value::Array(list);
        }
        out_rules.push(r);
    }
    let mut out = json!({"defaultAction": default, "architectures": arch, "syscalls": out_rules});
    if let Some(e) = obj.get("defaultErrnoRet").filter(|v| !v.is_null()) {
        out["defaultErrnoRet"] = e.clone();
    }
    if let Some(f) = obj.get("flags").filter(|v| v.is_array()) {
        out["flags"] = f.clone();
    }
    Ok(out)
}

fn gated_allowed(name: &str, caps: &[String]) -> bool {
    BY_CAPABILITY.iter().any(|(need, names)| names.contains(&name) && need.iter().any(|c| caps.iter().any(|x| x == c)))
}

fn arch_matches(a: &Value, arches: &[String]) -> bool {
    // Docker's profiles name arches as Go does (`amd64`) or as libseccomp does.
    let Some(a) = a.as_str() else { return false };
    let scmp = match a {
        "amd64" => "SCMP_ARCH_X86_64",
        "386" | "x86" => "SCMP_ARCH_X86",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        other => other,
    };
    arches.first().is_some_and(|n| n == scmp)
}

fn check_action(a: &str) -> Result<(), String> {
    match a {
        "SCMP_ACT_KILL"
        | "SCMP_ACT_KILL_PROCESS"
        | "SCMP_ACT_KILL_THREAD"
        | "SCMP_ACT_TRAP"
        | "SCMP_ACT_ERRNO"
        | "SCMP_ACT_TRACE"
        | "SCMP_ACT_ALLOW"
        | "SCMP_ACT_LOG" => Ok(()),
        "SCMP_ACT_NOTIFY" => Err("seccomp profile: SCMP_ACT_NOTIFY needs a listener, which berth does not run".into()),
        other => Err(format!("seccomp profile: unknown action `{other}`")),
    }
}

/// The OCI object for `profile` (None: the default) and `caps`, translated once per distinct
/// pair and then reused.
pub fn oci_profile(profile: Option<&str>, caps: &[String]) -> Result<Arc<Value>, String> {
    entry(profile, caps).map(|e| e.oci.clone())
}

/// One translated profile, and the file its compiled program was written to.
struct Entry {
    oci: Arc<Value>,
    file: Mutex<Option<std::path::PathBuf>>,
}

/// The cache behind [`oci_profile`] and [`bpf_file`], keyed by the profile and the sorted
/// capabilities.
fn entry(profile: Option<&str>, caps: &[String]) -> Result<Arc<Entry>, String> {
    type Cache = Mutex<HashMap<(Option<String>, Vec<String>), Arc<Entry>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let mut sorted = caps.to_vec();
    sorted.sort();
    let key = (profile.map(str::to_owned), sorted);
    let cache = CACHE.get_or_init(Default::default);
    if let Some(e) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(e.clone());
    }
    let v = match profile {
        None => translate(default_profile(), caps)?,
        Some(text) => {
            let p: Value = serde_json::from_str(text).map_err(|e| format!("seccomp profile: invalid JSON: {e}"))?;
            translate(&p, caps)?
        }
    };
    let e = Arc::new(Entry { oci: Arc::new(v), file: Mutex::new(None) });
    let mut c = cache.lock().unwrap_or_else(|p| p.into_inner());
    // A daemon sees few distinct profiles; a runaway client cannot grow this without bound.
    if c.len() > 256 {
        c.clear();
    }
    // Starts that missed the cache together translated the profile each; the first one in
    // wins, so that all of them share one entry (and its lock, and one compile).
    Ok(c.entry(key).or_insert(e).clone())
}

/// Compiles an OCI seccomp object into the BPF program the kernel loads (what libcontainer
/// would do in every container's init), with libseccomp.
pub fn compile(oci: &Value) -> Result<Vec<u8>, String> {
    use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
    use std::str::FromStr;
    let action = |name: &str, errno: Option<&Value>| -> Result<ScmpAction, String> {
        let val = errno.and_then(Value::as_i64).map(|v| v as i32);
        let val = match name {
            "SCMP_ACT_ERRNO" => Some(val.unwrap_or(EPERM as i32)),
            "SCMP_ACT_TRACE" => Some(val.unwrap_or(EPERM as i32)),
            _ => val,
        };
        ScmpAction::from_str(name, val).map_err(|e| format!("seccomp action `{name}`: {e}"))
    };
    let default = action(oci["defaultAction"].as_str().unwrap_or("SCMP_ACT_ERRNO"), oci.get("defaultErrnoRet"))?;
    let mut ctx = ScmpFilterContext::new(default).map_err(|e| format!("seccomp filter: {e}"))?;
    // The executor loads the program while it still holds CAP_SYS_ADMIN: no no_new_privs.
    ctx.set_ctl_nnp(false).map_err(|e| format!("seccomp filter: {e}"))?;
    // A binary tree over syscall numbers instead of libseccomp's default chain of comparisons:
    // the kernel, when it loads a filter, runs it once per syscall number to find those it
    // always allows (its action cache), so a chain costs it O(syscalls × rules) at every
    // container start (~1 ms for this profile) and a tree O(syscalls × log rules); each syscall
    // the container makes is also checked in O(log rules). libseccomp < 2.5 has no tree: the
    // chain it makes instead is the same filter, only slower.
    let _ = ctx.set_ctl_optimize(2);
    for a in oci["architectures"].as_array().into_iter().flatten().filter_map(Value::as_str) {
        let arch = ScmpArch::from_str(a).map_err(|e| format!("seccomp architecture `{a}`: {e}"))?;
        if arch == ScmpArch::X32 && !kernel_runs_x32() {
            // A kernel without the x32 ABI answers every x32 syscall "not implemented" before
            // any table is looked up. The filter says the same for all of them (the bad-arch
            // action covers the x32 numbers of an x86-64 filter that has no x32 part) instead
            // of deciding each of them: about a third of the program, which the kernel
            // translates and compiles at every container start.
            ctx.set_act_badarch(ScmpAction::Errno(ENOSYS as i32))
                .map_err(|e| format!("seccomp architecture `{a}`: {e}"))?;
            continue;
        }
        if arch != ScmpArch::native() {
            ctx.add_arch(arch).map_err(|e| format!("seccomp architecture `{a}`: {e}"))?;
        }
    }
    for rule in oci["syscalls"].as_array().into_iter().flatten() {
        let act = action(rule["action"].as_str().unwrap_or_default(), rule.get("errnoRet"))?;
        if act == default {
            continue;
        }
        let mut cmps = Vec::new();
        let mut idx: Vec<u64> = Vec::new();
        for a in rule["args"].as_array().into_iter().flatten() {
            let op = a["op"].as_str().unwrap_or_default();
            let value = a["value"].as_u64().unwrap_or(0);
            let op = match op {
                "SCMP_CMP_MASKED_EQ" => ScmpCompareOp::MaskedEqual(value),
                other => ScmpCompareOp::from_str(other).map_err(|e| format!("seccomp comparison `{other}`: {e}"))?,
            };
            let datum =
                if matches!(op, ScmpCompareOp::MaskedEqual(_)) { a["valueTwo"].as_u64().unwrap_or(0) } else { value };
            idx.push(a["index"].as_u64().unwrap_or(0));
            cmps.push(ScmpArgCompare::new(a["index"].as_u64().unwrap_or(0) as u32, op, datum));
        }
        for name in rule["names"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
            let r = if cmps.is_empty() {
                ctx.add_rule(act, sc)
            } else {
                // libseccomp compares each argument once per rule; several comparisons of one
                // argument become one rule each (as runc does).
                let mut distinct = idx.clone();
                distinct.sort_unstable();
                distinct.dedup();
                if distinct.len() == cmps.len() {
                    ctx.add_rule_conditional(act, sc, &cmps)
                } else {
                    cmps.iter()
                        .try_for_each(|c| ctx.add_rule_conditional(act, sc, std::slice::from_ref(c)).map(|_| ()))
                        .map(|_| &mut ctx)
                }
            };
            r.map_err(|e| format!("seccomp rule for `{name}`: {e}"))?;
        }
    }
    let fd = nix::sys::memfd::memfd_create(c"berth-seccomp", nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| format!("seccomp filter: memfd: {e}"))?;
    let mut f = std::fs::File::from(fd);
    ctx.export_bpf(&f).map_err(|e| format!("seccomp filter: export: {e}"))?;
    use std::io::{Read, Seek};
    let mut bpf = Vec::new();
    f.rewind().and_then(|_| f.read_to_end(&mut bpf)).map_err(|e| format!("seccomp filter: read back: {e}"))?;
    if bpf.is_empty() || !bpf.len().is_multiple_of(8) {
        return Err(format!("seccomp filter: libseccomp produced {} bytes, not a BPF program", bpf.len()));
    }
    Ok(bpf)
}

/// Whether the kernel runs x32 code (x86-64's ILP32 ABI, `CONFIG_X86_X32_ABI`, off in most
/// distributions' kernels): a child makes x32's `getpid`, which such a kernel answers ENOSYS.
/// The child, not the daemon, makes the call: a filter the daemon runs under (systemd's
/// `SystemCallArchitectures=native`) may kill the caller of a foreign-ABI syscall, and then
/// the containers, which inherit that filter, cannot make x32 calls either.
fn kernel_runs_x32() -> bool {
    static X32: OnceLock<bool> = OnceLock::new();
    *X32.get_or_init(|| {
        if !cfg!(target_arch = "x86_64") {
            return false;
        }
        const X32_SYSCALL_BIT: libc::c_long = 0x4000_0000;
        // SAFETY: fork has no preconditions; the child below only makes raw syscalls.
        match unsafe { libc::fork() } {
            // SAFETY: the child makes two raw syscalls and exits, touching no lock or allocator.
            0 => unsafe {
                let r = libc::syscall(X32_SYSCALL_BIT | libc::SYS_getpid);
                libc::_exit(if r > 0 { 0 } else { 1 })
            },
            -1 => true,
            child => {
                let mut status = 0;
                // SAFETY: waits for the child forked above.
                while unsafe { libc::waitpid(child, &mut status, 0) } == -1
                    && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
                {}
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
            }
        }
    })
}

/// The compiled program for `profile` (None: the default) and `caps`, as a file under `dir`
/// named by its digest: compiled once per distinct pair, written once, then reused by every
/// container start (the shim reads it and hands it to the container's executor).
pub fn bpf_file(dir: &std::path::Path, profile: Option<&str>, caps: &[String]) -> Result<std::path::PathBuf, String> {
    let e = entry(profile, caps)?;
    // Held while compiling: two starts with the same profile compile it once.
    let mut file = e.file.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = file.as_ref().filter(|p| p.exists()) {
        return Ok(p.clone());
    }
    let bpf = compile(&e.oci)?;
    use sha2::Digest;
    let hex = format!("{:x}", sha2::Sha256::digest(&bpf));
    std::fs::create_dir_all(dir).map_err(|e| format!("create `{}`: {e}", dir.display()))?;
    let path = dir.join(format!("{hex}.bpf"));
    if !path.exists() {
        // A name of its own: two entries (profiles or capability sets that compile alike) may
        // write the same program at once.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".tmp-{}-{n}-{hex}", std::process::id()));
        std::fs::write(&tmp, &bpf).map_err(|e| format!("write `{}`: {e}", tmp.display()))?;
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("rename `{}`: {e}", path.display()));
        }
    }
    *file = Some(path.clone());
    Ok(path)
}

/// Loads a BPF program (from [`compile`]) as this thread's seccomp filter. Needs
/// CAP_SYS_ADMIN or no_new_privs.
pub fn install(bpf: &[u8]) -> Result<(), String> {
    let filters: Vec<libc::sock_filter> = bpf
        .chunks_exact(8)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    let prog = libc::sock_fprog { len: filters.len() as u16, filter: filters.as_ptr() as *mut libc::sock_filter };
    // SAFETY: `prog` points at `filters`, alive for the call; the kernel copies the program.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if r != 0 {
        return Err(format!("load seccomp filter: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_with(v: &Value, action: &str) -> Vec<String> {
        v["syscalls"]
            .as_array()
            .expect("rules")
            .iter()
            .filter(|r| r["action"] == action && r.get("args").is_none())
            .flat_map(|r| r["names"].as_array().expect("names").iter().map(|n| n.as_str().expect("name").to_owned()))
            .collect()
    }

    fn default_caps() -> Vec<String> {
        crate::spec::DEFAULT_CAPS.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn every_syscall_libseccomp_knows_here_is_classified() {
        let arch = libseccomp::ScmpArch::native();
        let mut all: Vec<&str> = ALLOWED.iter().flat_map(|g| g.iter().copied()).collect();
        all.extend(BY_CAPABILITY.iter().flat_map(|(_, n)| n.iter().copied()));
        all.extend(DENIED);
        all.extend(["socket", "personality", "ptrace", "clone", "clone3"]);
        let mut missing = Vec::new();
        for nr in 0..1024 {
            if let Ok(name) = libseccomp::ScmpSyscall::from(nr).get_name_by_arch(arch)
                && !all.contains(&name.as_str())
            {
                missing.push(name);
            }
        }
        assert!(missing.is_empty(), "syscalls nobody decided on (allow, gate or deny them): {missing:?}");
    }

    #[test]
    fn the_default_profile_gates_by_capability() {
        let v = translate(default_profile(), &default_caps()).expect("translate");
        let allowed = names_with(&v, "SCMP_ACT_ALLOW");
        for s in ["read", "openat", "execve", "chown", "setuid", "socketpair"] {
            assert!(allowed.iter().any(|n| n == s), "{s} allowed");
        }
        for s in ["mount", "unshare", "setns", "keyctl", "bpf", "reboot", "init_module", "kexec_load", "acct"] {
            assert!(!allowed.iter().any(|n| n == s), "{s} refused by default");
        }
        let denied = names_with(&v, "SCMP_ACT_ERRNO");
        assert!(denied.iter().any(|n| n == "mount") && denied.iter().any(|n| n == "keyctl"), "EPERM for known ones");
        assert_eq!(v["defaultErrnoRet"], ENOSYS);
        let clone = v["syscalls"].as_array().expect("rules").iter().find(|r| r["names"][0] == "clone").expect("clone");
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], CLONE_NS_FLAGS);

        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let v = translate(default_profile(), &caps).expect("translate");
        let allowed = names_with(&v, "SCMP_ACT_ALLOW");
        assert!(allowed.iter().any(|n| n == "mount") && allowed.iter().any(|n| n == "clone"));
        assert!(!names_with(&v, "SCMP_ACT_ERRNO").iter().any(|n| n == "mount"), "no EPERM rule left for mount");
        assert!(!allowed.iter().any(|n| n == "keyctl"), "keyrings stay closed");
    }

    #[test]
    fn docker_format_profiles_translate_and_bad_ones_are_named() {
        let p = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [
                {"name": "mkdir", "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                {"names": ["chmod", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            ]
        });
        let v = translate(&p, &default_caps()).expect("translate");
        assert_eq!(v["syscalls"].as_array().map(Vec::len), Some(1));
        assert_eq!(v["syscalls"][0]["names"], json!(["mkdir"]));
        assert!(translate(&json!({"syscalls": []}), &[]).expect_err("no default").contains("defaultAction"));
        assert!(
            translate(&json!({"defaultAction": "SCMP_ACT_MAYBE"}), &[]).expect_err("bad").contains("SCMP_ACT_MAYBE")
        );
        let bad_op = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]});
        assert!(translate(&bad_op, &[]).expect_err("bad op").contains("SCMP_CMP_SOMETIMES"));
        assert!(oci_profile(Some("{not json"), &[]).expect_err("json").contains("invalid JSON"));
    }

    #[test]
    fn starts_that_compile_the_same_program_at_once_all_get_it() {
        // Twenty starts with a profile not seen yet, at once, as `run` twenty times in
        // parallel does; and capability sets that compile to the same program (this profile
        // has no capability rules), whose entries differ but whose file is one.
        let dir = tempfile::tempdir().expect("tempdir");
        let profile =
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_ERRNO"}]}"#;
        let go = Arc::new(std::sync::Barrier::new(20));
        let threads: Vec<_> = (0..20)
            .map(|i| {
                let (go, d) = (go.clone(), dir.path().to_owned());
                std::thread::spawn(move || {
                    let caps = if i % 2 == 0 { Vec::new() } else { vec![format!("CAP_X{i}")] };
                    go.wait();
                    bpf_file(&d, Some(profile), &caps)
                })
            })
            .collect();
        let paths: Vec<_> = threads.into_iter().map(|t| t.join().expect("thread").expect("bpf file")).collect();
        assert!(paths.iter().all(|p| *p == paths[0] && p.exists()), "{paths:?}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").flatten().map(|e| e.file_name()).collect();
        assert_eq!(left.len(), 1, "one program and no temporary file: {left:?}");
    }

    #[test]
    fn the_default_profile_compiles_once_to_bpf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = bpf_file(dir.path(), None, &default_caps()).expect("compile");
        let b = bpf_file(dir.path(), None, &default_caps()).expect("again");
        assert_eq!(a, b);
        let len = std::fs::metadata(&a).expect("file").len();
        assert!(len > 800 && len.is_multiple_of(8), "{len} bytes");
    }

    /// Runs a compiled seccomp program over one syscall (x86-64, the given arguments) the way
    /// the kernel does: the action it returns and how many instructions it executed.
    fn evaluate(bpf: &[u8], nr: u32, args: [u64; 6]) -> (u32, usize) {
        let insns: Vec<(u16, u8, u8, u32)> = bpf
            .chunks_exact(8)
            .map(|c| (u16::from_ne_bytes([c[0], c[1]]), c[2], c[3], u32::from_ne_bytes([c[4], c[5], c[6], c[7]])))
            .collect();
        let mut data = Vec::with_capacity(64);
        data.extend(nr.to_ne_bytes());
        data.extend(0xC000_003E_u32.to_ne_bytes()); // AUDIT_ARCH_X86_64
        data.extend(0_u64.to_ne_bytes());
        args.iter().for_each(|a| data.extend(a.to_ne_bytes()));
        let (mut a, mut x, mut mem, mut pc, mut steps) = (0_u32, 0_u32, [0_u32; 16], 0_usize, 0);
        loop {
            let (code, jt, jf, k) = insns[pc];
            steps += 1;
            pc += 1;
            let jump = |cond: bool| if cond { jt as usize } else { jf as usize };
            match code {
                0x20 => a = u32::from_ne_bytes(data[k as usize..k as usize + 4].try_into().expect("word")),
                0x60 => a = mem[k as usize],
                0x61 => x = mem[k as usize],
                0x02 => mem[k as usize] = a,
                0x03 => mem[k as usize] = x,
                0x54 => a &= k,
                0x44 => a |= k,
                0x04 => a = a.wrapping_add(k),
                0x87 => a = x,
                0x07 => x = a,
                0x05 => pc += k as usize,
                0x15 => pc += jump(a == k),
                0x25 => pc += jump(a > k),
                0x35 => pc += jump(a >= k),
                0x45 => pc += jump(a & k != 0),
                0x1d => pc += jump(a == x),
                0x2d => pc += jump(a > x),
                0x3d => pc += jump(a >= x),
                0x06 => return (k, steps),
                0x16 => return (a, steps),
                other => panic!("instruction {other:#x} at {} not known to this evaluator", pc - 1),
            }
        }
    }

    /// The actions a compiled program returns: allow, and fail with an errno.
    const ALLOW: u32 = 0x7fff_0000;
    fn errno(e: i64) -> u32 {
        0x0005_0000 | e as u32
    }

    #[test]
    fn the_compiled_default_profile_decides_every_syscall_in_a_few_steps() {
        let bpf = compile(&oci_profile(None, &default_caps()).expect("default")).expect("compile");
        let mut worst = (0, 0);
        for nr in 0..512 {
            let (_, steps) = evaluate(&bpf, nr, [0; 6]);
            worst = worst.max((steps, nr));
        }
        // A chain of comparisons (libseccomp's default shape) takes hundreds of steps for the
        // syscalls at its end, and the kernel walks it for every number when it loads it.
        assert!(worst.0 <= 64, "syscall {} takes {} steps to decide", worst.1, worst.0);
        assert_eq!(evaluate(&bpf, libc::SYS_read as u32, [0; 6]).0, ALLOW);
        assert_eq!(evaluate(&bpf, libc::SYS_openat as u32, [0; 6]).0, ALLOW);
        assert_eq!(evaluate(&bpf, libc::SYS_kexec_load as u32, [0; 6]).0, errno(EPERM));
        assert_eq!(evaluate(&bpf, libc::SYS_mount as u32, [0; 6]).0, errno(EPERM));
        let thread = (libc::CLONE_VM | libc::CLONE_THREAD | libc::CLONE_SIGHAND) as u64;
        assert_eq!(evaluate(&bpf, libc::SYS_clone as u32, [thread, 0, 0, 0, 0, 0]).0, ALLOW);
        let new_user = (libc::CLONE_NEWUSER as u64) | libc::SIGCHLD as u64;
        assert_ne!(evaluate(&bpf, libc::SYS_clone as u32, [new_user, 0, 0, 0, 0, 0]).0, ALLOW);
    }

    #[test]
    fn x32_syscalls_are_not_implemented_where_the_kernel_has_no_x32() {
        let bpf = compile(&oci_profile(None, &default_caps()).expect("default")).expect("compile");
        let x32_getpid = 0x4000_0000 | libc::SYS_getpid as u32;
        let x32_mount = 0x4000_0000 | libc::SYS_mount as u32;
        if kernel_runs_x32() {
            assert_eq!(evaluate(&bpf, x32_getpid, [0; 6]).0, ALLOW);
            assert_eq!(evaluate(&bpf, x32_mount, [0; 6]).0, errno(EPERM));
        } else {
            // What the kernel itself answers, for every x32 number, with no x32 part in the
            // program: the x86-64 part alone is smaller than both together were.
            for nr in [x32_getpid, x32_mount, 0x4000_0000, 0x4000_0000 | 1023, u32::MAX] {
                assert_eq!(evaluate(&bpf, nr, [0; 6]).0, errno(ENOSYS), "{nr:#x}");
            }
            assert!(bpf.len() / 8 < 1200, "{} instructions", bpf.len() / 8);
        }
        // x86-64 numbers decide as before.
        assert_eq!(evaluate(&bpf, libc::SYS_getpid as u32, [0; 6]).0, ALLOW);
    }

    #[test]
    fn translations_are_reused() {
        let a = oci_profile(None, &default_caps()).expect("default");
        let b = oci_profile(None, &default_caps()).expect("default");
        assert!(Arc::ptr_eq(&a, &b));
    }
}
