//! Exec sessions: a process started in a running container, with its own shim.

use std::sync::{Arc, Mutex};

use api::types::{ExecConfig, ExecInspect, ProcessConfig};
use runtime::shim::proto::{Request, ShimConfig, ShimKind};
use runtime::spec::ProcessSpec;
use tokio::net::UnixStream;

use crate::container::{Container, new_id};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

#[derive(Debug, Default, Clone)]
pub struct ExecState {
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub state: Mutex<ExecState>,
    pub done: tokio::sync::watch::Sender<bool>,
}

impl Exec {
    fn lock(&self) -> std::sync::MutexGuard<'_, ExecState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn inspect(&self) -> ExecInspect {
        let s = self.lock().clone();
        let mut args = self.config.cmd.clone();
        let entrypoint = if args.is_empty() { String::new() } else { args.remove(0) };
        ExecInspect {
            id: self.id.clone(),
            running: s.running,
            exit_code: s.exit_code,
            process_config: ProcessConfig {
                privileged: self.config.privileged,
                user: self.config.user.clone(),
                tty: self.config.tty,
                entrypoint,
                arguments: args,
            },
            open_stdin: self.config.attach_stdin,
            open_stderr: self.config.attach_stderr,
            open_stdout: self.config.attach_stdout,
            can_remove: false,
            container_id: self.container_id.clone(),
            detach_keys: String::new(),
            pid: s.pid,
        }
    }
}

impl Engine {
    pub fn exec_create(&self, c: &Container, cfg: ExecConfig) -> Result<String> {
        if !c.status().is_live() {
            return Err(EngineError::Conflict(format!("container {} is not running", c.id)));
        }
        if c.status() == crate::container::Status::Paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is paused, unpause the container before exec",
                c.id
            )));
        }
        if cfg.cmd.is_empty() {
            return Err(EngineError::BadRequest("No exec command specified".into()));
        }
        let id = new_id();
        self.container_event(c, &format!("exec_create: {}", cfg.cmd.join(" ")), vec![("execID".into(), id.clone())]);
        let e = Arc::new(Exec {
            id: id.clone(),
            container_id: c.id.clone(),
            config: cfg,
            state: Mutex::new(ExecState::default()),
            done: tokio::sync::watch::channel(false).0,
        });
        self.execs.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), e);
        c.exec_ids.lock().unwrap_or_else(|p| p.into_inner()).push(id.clone());
        Ok(id)
    }

    pub fn exec_lookup(&self, id: &str) -> Result<Arc<Exec>> {
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| EngineError::NoSuchExec(id.to_owned()))
    }

    /// Starts an exec session; returns the attach stream when `attach` is set.
    pub async fn exec_start(self: &Arc<Self>, e: &Arc<Exec>, tty: bool, attach: bool) -> Result<Option<UnixStream>> {
        {
            let mut s = e.lock();
            if s.started {
                return Err(EngineError::Conflict(format!("Error: Exec command {} has already run", e.id)));
            }
            s.started = true;
        }
        let c = self.lookup(&e.container_id)?;
        if !c.status().is_live() {
            return Err(EngineError::Conflict(format!("container {} is not running", c.id)));
        }
        let rec = c.snapshot();
        let cfg = e.config.clone();
        let paths = self.paths.clone();
        let exec_dir = paths.bundle(&c.id).join("exec");
        let eid = e.id.clone();
        let tty = tty || cfg.tty;
        let shim = tokio::task::spawn_blocking(move || -> Result<ShimConfig> {
            let rootfs = paths.rootfs(&rec.id);
            let user_spec = if cfg.user.is_empty() { rec.config.user.clone() } else { cfg.user.clone() };
            let user = runtime::user::resolve(&rootfs, &user_spec, &rec.host_config.group_add)?;
            let mut env = rec.config.env.clone();
            for kv in &cfg.env {
                let k = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
                env.retain(|x| x.split_once('=').map(|(n, _)| n) != Some(k));
                env.push(kv.clone());
            }
            if !env.iter().any(|x| x.starts_with("HOSTNAME=")) {
                env.push(format!("HOSTNAME={}", rec.config.hostname));
            }
            if !env.iter().any(|x| x.starts_with("HOME=")) {
                env.push(format!("HOME={}", user.home));
            }
            if tty && !env.iter().any(|x| x.starts_with("TERM=")) {
                env.push("TERM=xterm".into());
            }
            let cwd = if !cfg.working_dir.is_empty() {
                cfg.working_dir.clone()
            } else if !rec.config.working_dir.is_empty() {
                rec.config.working_dir.clone()
            } else {
                "/".into()
            };
            // libcontainer runs an exec'd process without the container's seccomp filter: the
            // shim's executor loads it, as for the container's first process.
            let seccomp = crate::lifecycle::seccomp_bpf(&paths, &rec.host_config)?;
            let p = ProcessSpec {
                args: cfg.cmd.clone(),
                env,
                cwd,
                user: user.user,
                terminal: tty,
                console_size: cfg.console_size.as_ref().filter(|v| v.len() == 2 && v[0] > 0).map(|v| (v[0], v[1])),
                privileged: cfg.privileged || rec.host_config.privileged,
                no_new_privileges: false,
                cap_add: rec.host_config.cap_add.clone(),
                cap_drop: rec.host_config.cap_drop.clone(),
                seccomp: seccomp.is_some(),
            };
            std::fs::create_dir_all(&exec_dir)
                .map_err(|e| EngineError::Internal(format!("create `{}`: {e}", exec_dir.display())))?;
            let process_path = exec_dir.join(format!("{eid}.json"));
            let proc = p.to_oci()?;
            let data = serde_json::to_vec(&proc).map_err(EngineError::internal)?;
            std::fs::write(&process_path, data)
                .map_err(|e| EngineError::Internal(format!("write `{}`: {e}", process_path.display())))?;
            Ok(ShimConfig {
                container_id: rec.id.clone(),
                kind: ShimKind::Exec { process: process_path },
                runtime_root: paths.runtime_root(),
                socket: paths.shim_socket(&eid),
                console_socket: paths.console_socket(&eid),
                log: None,
                log_rotate: None,
                exit_file: exec_dir.join(format!("{eid}.exit")),
                tty,
                stdin: cfg.attach_stdin,
                stdin_once: true,
                cgroup: None,
                seccomp,
                lock: None,
            })
        })
        .await
        .map_err(EngineError::internal)?;
        let shim = match shim {
            Ok(s) => s,
            Err(err) => {
                self.exec_finished(e, 126);
                return Err(err);
            }
        };
        let dir = self.paths.bundle(&c.id).join("exec");
        // The attacher, then the wait (so an instant exit is not missed), queued ahead of start.
        let mut before = Vec::new();
        if attach {
            before.push(Request::Attach {
                stdin: e.config.attach_stdin,
                stdout: e.config.attach_stdout,
                stderr: e.config.attach_stderr,
            });
        }
        before.push(Request::Wait);
        let launched = crate::shim::launch(
            &shim,
            &dir.join(format!("{}.shim.json", e.id)),
            &dir.join(format!("{}.shim.log", e.id)),
            &before,
        )
        .await;
        let (pid, mut conns) = match launched {
            Ok(l) => (l.pid, l.conns),
            Err(crate::shim::LaunchError::Shim(err)) => {
                self.exec_finished(e, 126);
                return Err(err);
            }
            Err(crate::shim::LaunchError::Start(msg)) => {
                let code = i64::from(api::start_error_code(&msg).unwrap_or(126));
                self.exec_finished(e, code);
                return Err(EngineError::BadRequest(format!("OCI runtime exec failed: {msg}")));
            }
        };
        let wait_conn = conns.pop().ok_or_else(|| EngineError::internal("exec shim lost its wait"))?;
        let mut stream = None;
        if let Some(mut s) = conns.pop() {
            crate::shim::read_response(&mut s)
                .await
                .map_err(|err| EngineError::Internal(format!("attach to exec {}: {err}", e.id)))?;
            stream = Some(s);
        }
        {
            let mut s = e.lock();
            s.running = true;
            s.pid = i64::from(pid);
        }
        self.exec_event(e, &format!("exec_start: {}", e.config.cmd.join(" ")), Vec::new());
        let engine = self.clone();
        let e2 = e.clone();
        let exit_file = shim.exit_file.clone();
        tokio::spawn(async move {
            let mut conn = wait_conn;
            let mut buf = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut conn, &mut buf).await;
            let code = serde_json::from_slice::<runtime::shim::proto::Response>(buf.trim_ascii_end())
                .ok()
                .and_then(|r| r.exit)
                .or_else(|| runtime::shim::proto::read_exit_file(&exit_file))
                .map(|x| x.exit_code as i64)
                .unwrap_or(255);
            engine.exec_finished(&e2, code);
            let _ = tokio::fs::remove_file(&exit_file).await;
        });
        Ok(stream)
    }

    fn exec_finished(&self, e: &Exec, code: i64) {
        {
            let mut s = e.lock();
            s.running = false;
            s.exit_code = Some(code);
        }
        self.exec_event(e, "exec_die", vec![("exitCode".into(), code.to_string())]);
        e.done.send_replace(true);
    }

    fn exec_event(&self, e: &Exec, action: &str, mut extra: Vec<(String, String)>) {
        if let Ok(c) = self.lookup(&e.container_id) {
            extra.push(("execID".into(), e.id.clone()));
            self.container_event(&c, action, extra);
        }
    }

    /// Kills an exec session's process (a healthcheck probe that ran past its timeout).
    pub async fn exec_kill(&self, e: &Exec) -> Result<()> {
        crate::shim::call(&self.paths.shim_socket(&e.id), &Request::Kill { signal: libc::SIGKILL, all: true })
            .await
            .map(|_| ())
    }

    /// Drops an exec session the engine ran for itself (healthcheck probes), so a long-lived
    /// container does not collect them.
    pub fn exec_forget(&self, c: &Container, id: &str) {
        self.execs.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        c.exec_ids.lock().unwrap_or_else(|p| p.into_inner()).retain(|x| x != id);
    }

    pub async fn exec_resize(&self, e: &Exec, h: u16, w: u16) -> Result<()> {
        crate::shim::call(&self.paths.shim_socket(&e.id), &Request::Resize { height: h, width: w }).await.map(|_| ())
    }
}
