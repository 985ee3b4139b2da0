//! [`Runtime`] over youki's libcontainer, in-process.
//!
//! libcontainer forks an intermediate process that clones the container's init as its
//! sibling (`CLONE_PARENT`, no exit signal), so init is a child of the caller: wait for it
//! with `__WALL`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::oci_spec::runtime::{Capability, Spec};
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::Signal;

use crate::{Runtime, RuntimeError, Stdio};

/// libcontainer with its state under `root` (like `runc --root`).
#[derive(Clone)]
pub struct Libcontainer {
    root: PathBuf,
    seccomp: Option<Arc<Vec<u8>>>,
    preserved_fds: i32,
    no_pivot: bool,
    ignore_paused: bool,
    sub_cgroup: Option<String>,
}

/// Runs the process as libcontainer's default executor does, with a compiled seccomp program
/// loaded. libcontainer would compile the profile anew in every container's init, and runs
/// exec'd processes without one at all; this loads the program compiled once by the daemon
/// into both. It loads it once the init has reported ready, while the init waits for the start
/// (the vendored libcontainer's `before_start`: the kernel's ~0.5 ms to translate and compile
/// the program then overlaps with the runtime's work between create and start, as runc loads
/// its filter before it waits on its exec fifo). That is after libcontainer has set the
/// capabilities: CAP_SYS_ADMIN was kept effective (never in the bounding set) for this step
/// and is dropped right after, so the process execs with exactly its own capabilities and
/// cannot regain it; waiting for the start and exec are all that follow, under the filter.
#[derive(Clone)]
struct SeccompExecutor {
    bpf: Arc<Vec<u8>>,
}

impl Executor for SeccompExecutor {
    fn before_start(&self, spec: &Spec) -> Result<(), ExecutorError> {
        crate::seccomp::install(&self.bpf).map_err(ExecutorError::Other)?;
        let keep = spec
            .process()
            .as_ref()
            .and_then(|p| p.capabilities().as_ref())
            .and_then(|c| c.bounding().as_ref())
            .is_some_and(|b| b.contains(&Capability::SysAdmin));
        if !keep {
            drop_sys_admin().map_err(ExecutorError::Other)?;
        }
        Ok(())
    }

    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }
}

/// Removes CAP_SYS_ADMIN from this thread's effective and permitted sets.
fn drop_sys_admin() -> Result<(), String> {
    // linux/capability.h, version 3: a header and two 32-bit words per set.
    const CAP_SYS_ADMIN: u32 = 21;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header { version: 0x2008_0522, pid: 0 };
    let mut data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capget fills the two-element data array that version 3 of the header requires.
    if unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut _, data.as_mut_ptr()) } != 0 {
        return Err(format!("capget: {}", std::io::Error::last_os_error()));
    }
    let bit = !(1u32 << CAP_SYS_ADMIN);
    data[0].effective &= bit;
    data[0].permitted &= bit;
    // SAFETY: as above; capset only lowers the sets here.
    if unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut _, data.as_ptr()) } != 0 {
        return Err(format!("drop CAP_SYS_ADMIN after loading seccomp: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

/// An error with its causes: libcontainer's own messages are often only a category ("oci spec
/// error", "io error"), the detail that names the culprit is in the source.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Whether the kernel's AppArmor LSM is on, as libcontainer and runc test it.
fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'))
}

impl Libcontainer {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            seccomp: None,
            preserved_fds: 0,
            no_pivot: false,
            ignore_paused: false,
            sub_cgroup: None,
        }
    }

    /// Loads this compiled seccomp program into every process it starts (see
    /// [`crate::seccomp::compile`]).
    pub fn with_seccomp(mut self, bpf: Vec<u8>) -> Self {
        self.seccomp = Some(Arc::new(bpf));
        self
    }

    /// Passes this many file descriptors after stderr (3, 4, …) on to the process it starts, as
    /// runc's `--preserve-fds` does.
    pub fn with_preserved_fds(mut self, n: i32) -> Self {
        self.preserved_fds = n;
        self
    }

    /// Moves the root with MS_MOVE instead of pivot_root (runc's `--no-pivot`, for a rootfs on
    /// ramfs); the daemon never sets it.
    pub fn with_no_pivot(mut self, no_pivot: bool) -> Self {
        self.no_pivot = no_pivot;
        self
    }

    /// `exec` into a paused container too (runc's `exec --ignore-paused`).
    pub fn with_ignore_paused(mut self, ignore_paused: bool) -> Self {
        self.ignore_paused = ignore_paused;
        self
    }

    /// `exec` into this sub-cgroup of the container's (runc's `exec --cgroup`, cgroup v2).
    pub fn with_sub_cgroup(mut self, sub_cgroup: Option<String>) -> Self {
        self.sub_cgroup = sub_cgroup;
        self
    }

    fn load(&self, id: &str, op: &'static str) -> Result<Container, RuntimeError> {
        Container::load(self.root.join(id)).map_err(|e| RuntimeError::Other {
            op,
            id: id.to_owned(),
            message: chain(&e),
        })
    }

    fn builder(&self, id: &str, stdio: Stdio) -> Result<ContainerBuilder, String> {
        let mut b = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(|e| e.to_string())?
            .with_console_socket(stdio.console_socket.as_ref())
            .with_preserved_fds(self.preserved_fds);
        if let Some(fd) = stdio.stdin {
            b = b.with_stdin(fd);
        }
        if let Some(fd) = stdio.stdout {
            b = b.with_stdout(fd);
        }
        if let Some(fd) = stdio.stderr {
            b = b.with_stderr(fd);
        }
        if let Some(bpf) = &self.seccomp {
            b = b.with_executor(SeccompExecutor { bpf: bpf.clone() });
        }
        Ok(b)
    }
}

impl Libcontainer {
    /// The OCI state of a container (`runc state`), its status refreshed.
    pub fn state(&self, id: &str) -> Result<serde_json::Value, RuntimeError> {
        let mut c = self.load(id, "state")?;
        let _ = c.refresh_status();
        let s = &c.state;
        Ok(serde_json::json!({
            "ociVersion": s.oci_version,
            "id": s.id,
            "status": format!("{:?}", s.status).to_ascii_lowercase(),
            "pid": s.pid.unwrap_or(0),
            "bundle": s.bundle,
            "rootfs": s.bundle.join("rootfs"),
            "created": s.created,
            "owner": "",
            "annotations": s.annotations.clone().unwrap_or_default(),
        }))
    }

    /// Ids of the containers under the state root.
    pub fn list(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("state.json").exists())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// What of a bundle's spec decides whether [`Libcontainer::delete_exited`] can do without
/// libcontainer's delete.
#[derive(serde::Deserialize, Default)]
struct DeleteProbe {
    #[serde(default)]
    hooks: Option<ProbeHooks>,
    #[serde(default)]
    linux: Option<ProbeLinux>,
}

#[derive(serde::Deserialize, Default)]
struct ProbeHooks {
    #[serde(default)]
    poststop: Vec<serde_json::Value>,
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ProbeLinux {
    #[serde(default)]
    cgroups_path: Option<String>,
    #[serde(default)]
    intel_rdt: Option<serde_json::Value>,
}

impl Libcontainer {
    /// Deletes a container whose init has exited (the shim's delete): kills what is left in
    /// its cgroup, removes the cgroup and the runtime's state directory. This does what
    /// libcontainer's `delete --force` does for such a container, without its cgroup v1
    /// manager, which re-reads `/proc/self/mountinfo` and `/proc/self/cgroup` once per
    /// controller (1–2 ms of CPU at every exit). A spec with poststop hooks, Intel RDT, or a
    /// cgroup path that is not absolute (systemd's `slice:prefix:name`) goes through
    /// libcontainer's delete, which handles them.
    pub fn delete_exited(&self, id: &str, bundle: &Path) -> Result<(), RuntimeError> {
        let probe: Option<DeleteProbe> =
            std::fs::read(bundle.join("config.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
        let cgroup = probe.as_ref().and_then(|p| {
            let linux = p.linux.as_ref()?;
            let simple = p.hooks.as_ref().is_none_or(|h| h.poststop.is_empty()) && linux.intel_rdt.is_none();
            linux.cgroups_path.as_deref().filter(|c| simple && c.starts_with('/'))
        });
        let Some(cgroup) = cgroup else {
            return self.delete(id, true);
        };
        crate::cgroups::kill_and_remove_tree(cgroup);
        match std::fs::remove_dir_all(self.root.join(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(RuntimeError::Delete {
                id: id.to_owned(),
                message: format!("remove `{}`: {e}", self.root.join(id).display()),
            }),
            _ => Ok(()),
        }
    }
}

impl Runtime for Libcontainer {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        let err = |message: String| RuntimeError::Create { id: id.to_owned(), message };
        // libcontainer reads it too; a spec it cannot parse is its to report.
        let spec = Spec::load(bundle.join("config.json")).ok();
        let apparmor = spec.as_ref().and_then(|s| s.process().as_ref()).and_then(|p| p.apparmor_profile().clone());
        if let Some(profile) = apparmor.filter(|p| !p.is_empty())
            && !apparmor_enabled()
        {
            return Err(err(format!(
                "apparmor profile `{profile}` requested, but AppArmor is not enabled on this host"
            )));
        }
        let container = self
            .builder(id, stdio)
            .map_err(err)?
            .as_init(bundle)
            .with_systemd(false)
            .with_no_pivot(self.no_pivot)
            .with_detach(true)
            .build()
            .map_err(|e| err(chain(&e)))?;
        let pid = container.pid().map(|p| p.as_raw()).ok_or_else(|| err("the runtime reported no pid".into()))?;
        // libcontainer 0.7 never passes the spec's disableOOMKiller to its cgroup manager.
        let disable_oom = spec.is_some_and(|s| {
            s.linux()
                .as_ref()
                .and_then(|l| l.resources().as_ref())
                .and_then(|r| r.memory().as_ref())
                .and_then(|m| m.disable_oom_killer())
                == Some(true)
        });
        if disable_oom && let Err(message) = crate::cgroups::disable_oom_killer(pid) {
            let _ = self.delete(id, true);
            return Err(err(message));
        }
        Ok(pid)
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "start")?.start().map_err(|e| RuntimeError::Start { id: id.to_owned(), message: chain(&e) })
    }

    fn exec(&self, id: &str, process: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        let err = |message: String| RuntimeError::Exec { id: id.to_owned(), message };
        let pid = self
            .builder(id, stdio)
            .map_err(err)?
            .as_tenant()
            .with_process(Some(process))
            .with_ignore_paused(self.ignore_paused)
            .with_sub_cgroup(self.sub_cgroup.clone())
            .with_detach(true)
            .build()
            .map_err(|e| err(chain(&e)))?;
        Ok(pid.as_raw())
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let err = |message: String| RuntimeError::Kill { id: id.to_owned(), message };
        let sig = Signal::try_from(signal).map_err(|e| err(chain(&e)))?;
        self.load(id, "kill")?.kill(sig, all).map_err(|e| err(chain(&e)))
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "pause")?.pause().map_err(|e| RuntimeError::Other {
            op: "pause",
            id: id.to_owned(),
            message: chain(&e),
        })
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "resume")?.resume().map_err(|e| RuntimeError::Other {
            op: "resume",
            id: id.to_owned(),
            message: chain(&e),
        })
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        self.load(id, "delete")?
            .delete(force)
            .map_err(|e| RuntimeError::Delete { id: id.to_owned(), message: chain(&e) })
    }
}
