//! [`Runtime`] over youki's libcontainer, in-process.
//!
//! libcontainer forks an intermediate process that clones the container's init as its
//! sibling (`CLONE_PARENT`, no exit signal), so init is a child of the caller: wait for it
//! with `__WALL`.

use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::Signal;

use crate::{Runtime, RuntimeError, Stdio};

/// libcontainer with its state under `root` (like `runc --root`).
pub struct Libcontainer {
    root: PathBuf,
}

impl Libcontainer {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn load(&self, id: &str, op: &'static str) -> Result<Container, RuntimeError> {
        Container::load(self.root.join(id)).map_err(|e| RuntimeError::Other {
            op,
            id: id.to_owned(),
            message: e.to_string(),
        })
    }

    fn builder(&self, id: &str, stdio: Stdio) -> Result<ContainerBuilder, String> {
        let mut b = ContainerBuilder::new(id.to_owned(), SyscallType::default())
            .with_root_path(&self.root)
            .map_err(|e| e.to_string())?
            .with_console_socket(stdio.console_socket.as_ref());
        if let Some(fd) = stdio.stdin {
            b = b.with_stdin(fd);
        }
        if let Some(fd) = stdio.stdout {
            b = b.with_stdout(fd);
        }
        if let Some(fd) = stdio.stderr {
            b = b.with_stderr(fd);
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

impl Runtime for Libcontainer {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        let err = |message: String| RuntimeError::Create { id: id.to_owned(), message };
        let container = self
            .builder(id, stdio)
            .map_err(err)?
            .as_init(bundle)
            .with_systemd(false)
            .with_detach(true)
            .build()
            .map_err(|e| err(e.to_string()))?;
        container.pid().map(|p| p.as_raw()).ok_or_else(|| err("the runtime reported no pid".into()))
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "start")?.start().map_err(|e| RuntimeError::Start { id: id.to_owned(), message: e.to_string() })
    }

    fn exec(&self, id: &str, process: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        let err = |message: String| RuntimeError::Exec { id: id.to_owned(), message };
        let pid = self
            .builder(id, stdio)
            .map_err(err)?
            .as_tenant()
            .with_process(Some(process))
            .with_detach(true)
            .build()
            .map_err(|e| err(e.to_string()))?;
        Ok(pid.as_raw())
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let err = |message: String| RuntimeError::Kill { id: id.to_owned(), message };
        let sig = Signal::try_from(signal).map_err(|e| err(e.to_string()))?;
        self.load(id, "kill")?.kill(sig, all).map_err(|e| err(e.to_string()))
    }

    fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "pause")?.pause().map_err(|e| RuntimeError::Other {
            op: "pause",
            id: id.to_owned(),
            message: e.to_string(),
        })
    }

    fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.load(id, "resume")?.resume().map_err(|e| RuntimeError::Other {
            op: "resume",
            id: id.to_owned(),
            message: e.to_string(),
        })
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        if !self.root.join(id).exists() {
            return Ok(());
        }
        self.load(id, "delete")?
            .delete(force)
            .map_err(|e| RuntimeError::Delete { id: id.to_owned(), message: e.to_string() })
    }
}
