//! `berth runtime`: an OCI runtime with runc's command line, over the same libcontainer
//! code path the shim uses (`runtime::libct::Libcontainer`).

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use runtime::libct::Libcontainer;
use runtime::{Runtime, Stdio};

#[derive(Debug, Parser)]
#[command(name = "berth runtime", about = "An OCI runtime with runc's command line")]
pub struct RuntimeArgs {
    /// Root directory for container state
    #[arg(long, default_value = "/run/berth-runtime")]
    root: PathBuf,
    /// Log file (default: stderr)
    #[arg(long)]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long, default_value = "text")]
    log_format: String,
    /// Accepted for runc compatibility; cgroups are driven directly
    #[arg(long, hide = true)]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility
    #[arg(long, hide = true)]
    debug: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

/// What `create` and `run` share.
#[derive(Debug, clap::Args)]
struct CreateOpts {
    /// The OCI bundle
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// File to write the container's pid to
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master when the process has a terminal
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Pass this many file descriptors after stderr (3, 4, …) on to the container's process
    #[arg(long, default_value_t = 0)]
    preserve_fds: i32,
    /// Move the root with MS_MOVE instead of pivot_root (a rootfs on ramfs)
    #[arg(long)]
    no_pivot: bool,
}

impl CreateOpts {
    fn create(self, rt: &Libcontainer, id: &str) -> Result<i32, String> {
        let pid = rt
            .clone()
            .with_preserved_fds(self.preserve_fds)
            .with_no_pivot(self.no_pivot)
            .create(id, &self.bundle, stdio(self.console_socket))
            .map_err(|e| e.to_string())?;
        write_pid(&self.pid_file, pid)?;
        Ok(pid)
    }
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create a container (its process waits for `start`)
    Create {
        #[command(flatten)]
        opts: CreateOpts,
        id: String,
    },
    /// Start a created container
    Start { id: String },
    /// Print a container's state as JSON
    State { id: String },
    /// Send a signal to a container's process
    Kill {
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container's state and cgroups
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// Create and start a container; without --detach wait for it and exit with its status
    Run {
        #[command(flatten)]
        opts: CreateOpts,
        #[arg(short, long)]
        detach: bool,
        id: String,
    },
    /// Run a process in a container
    Exec {
        /// process.json to run
        #[arg(short, long)]
        process: Option<PathBuf>,
        #[arg(long)]
        pid_file: Option<PathBuf>,
        #[arg(long)]
        console_socket: Option<PathBuf>,
        #[arg(short, long)]
        detach: bool,
        #[arg(short, long)]
        tty: bool,
        #[arg(long)]
        cwd: Option<String>,
        #[arg(short, long)]
        env: Vec<String>,
        /// Add a capability to the process's bounding, effective and permitted sets (as runc)
        #[arg(short, long)]
        cap: Vec<String>,
        /// Pass this many file descriptors after stderr (3, 4, …) on to the process
        #[arg(long, default_value_t = 0)]
        preserve_fds: i32,
        /// Run the process even if the container is paused
        #[arg(long)]
        ignore_paused: bool,
        /// Put the process in this sub-cgroup of the container's (cgroup v2)
        #[arg(long)]
        cgroup: Option<String>,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// List the processes of a container
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
    },
    /// List containers
    List {
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pause a container
    Pause { id: String },
    /// Resume a paused container
    Resume { id: String },
    /// Print what this runtime supports, as runc features does
    Features,
}

fn write_pid(path: &Option<PathBuf>, pid: i32) -> Result<(), String> {
    if let Some(p) = path {
        std::fs::write(p, pid.to_string()).map_err(|e| format!("write pid file `{}`: {e}", p.display()))?;
    }
    Ok(())
}

/// `exec --cap NAME`: runc (1.2 on) adds it to the bounding, effective and permitted sets.
fn add_caps(p: &mut oci::spec::runtime::Process, names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Ok(());
    }
    let mut caps = p.capabilities().clone().unwrap_or_default();
    let mut sets = [caps.bounding().clone(), caps.effective().clone(), caps.permitted().clone()];
    for name in names {
        let full = if name.to_ascii_uppercase().starts_with("CAP_") {
            name.to_ascii_uppercase()
        } else {
            format!("CAP_{}", name.to_ascii_uppercase())
        };
        let c: oci::spec::runtime::Capability = serde_json::from_value(serde_json::Value::String(full))
            .map_err(|_| format!("unknown capability `{name}`"))?;
        for set in sets.iter_mut() {
            set.get_or_insert_with(Default::default).insert(c);
        }
    }
    let [b, e, pm] = sets;
    caps.set_bounding(b).set_effective(e).set_permitted(pm);
    p.set_capabilities(Some(caps));
    Ok(())
}

fn stdio(console_socket: Option<PathBuf>) -> Stdio {
    Stdio { stdin: None, stdout: None, stderr: None, console_socket }
}

/// Runs a runtime command; returns the exit code.
pub fn main(a: RuntimeArgs) -> i32 {
    let rt = Libcontainer::new(&a.root);
    let json_log = a.log_format == "json";
    let log_path = a.log.clone();
    let r = run(&rt, a);
    match r {
        Ok(code) => code,
        Err(msg) => {
            let line = if json_log {
                serde_json::json!({"level": "error", "msg": msg, "time": chrono::Utc::now().to_rfc3339()}).to_string()
            } else {
                // runc-like: callers (contest among them) look for "error" in stderr.
                format!("berth runtime: error: {msg}")
            };
            match log_path.and_then(|p| std::fs::OpenOptions::new().create(true).append(true).open(p).ok()) {
                Some(mut f) => {
                    let _ = writeln!(f, "{line}");
                }
                None => eprintln!("{line}"),
            }
            1
        }
    }
}

fn run(rt: &Libcontainer, a: RuntimeArgs) -> Result<i32, String> {
    let _ = std::fs::create_dir_all(&a.root);
    // As runc: every verb on an unknown id says so in these words (callers match on them).
    let existing = match &a.cmd {
        Cmd::Start { id } | Cmd::State { id } | Cmd::Kill { id, .. } | Cmd::Exec { id, .. } => Some(id),
        Cmd::Ps { id, .. } | Cmd::Pause { id } | Cmd::Resume { id } => Some(id),
        Cmd::Delete { force: false, id } => Some(id),
        _ => None,
    };
    if let Some(id) = existing
        && !rt.list().contains(id)
    {
        return Err(format!("container `{id}` does not exist"));
    }
    let e = |e: runtime::RuntimeError| e.to_string();
    match a.cmd {
        Cmd::Create { opts, id } => opts.create(rt, &id).map(|_| 0),
        Cmd::Start { id } => rt.start(&id).map(|_| 0).map_err(e),
        Cmd::State { id } => {
            println!("{}", serde_json::to_string_pretty(&rt.state(&id).map_err(e)?).map_err(|x| x.to_string())?);
            Ok(0)
        }
        Cmd::Kill { all, id, signal } => {
            rt.kill(&id, runtime::process::parse_signal(&signal)?, all).map(|_| 0).map_err(e)
        }
        // The shim's delete is idempotent; runc's refuses an unknown id unless forced (above).
        Cmd::Delete { force, id } => rt.delete(&id, force).map(|_| 0).map_err(e),
        Cmd::Run { opts, detach, id } => {
            let pid = opts.create(rt, &id)?;
            rt.start(&id).map_err(e)?;
            if detach {
                return Ok(0);
            }
            let code = runtime::process::wait_exit(pid);
            rt.delete(&id, true).map_err(e)?;
            Ok(code)
        }
        Cmd::Exec {
            process,
            pid_file,
            console_socket,
            detach,
            tty,
            cwd,
            env,
            cap,
            preserve_fds,
            ignore_paused,
            cgroup,
            id,
            command,
        } => {
            let st = rt.state(&id).map_err(e)?;
            let bundle = PathBuf::from(st["bundle"].as_str().unwrap_or("."));
            let spec = oci::spec::runtime::Spec::load(bundle.join("config.json")).map_err(|x| x.to_string())?;
            let mut p: oci::spec::runtime::Process = match process {
                Some(path) => {
                    let data = std::fs::read(&path).map_err(|x| format!("read `{}`: {x}", path.display()))?;
                    serde_json::from_slice(&data).map_err(|x| format!("parse `{}`: {x}", path.display()))?
                }
                None => {
                    if command.is_empty() {
                        return Err("exec needs --process or a command".into());
                    }
                    let mut p = spec.process().clone().ok_or("the container's spec has no process")?;
                    p.set_args(Some(command));
                    p.set_terminal(Some(tty));
                    if let Some(c) = cwd {
                        p.set_cwd(c.into());
                    }
                    let mut envs = p.env().clone().unwrap_or_default();
                    envs.extend(env);
                    p.set_env(Some(envs));
                    p
                }
            };
            add_caps(&mut p, &cap)?;
            // libcontainer runs an exec'd process without the container's seccomp filter: load
            // it from our executor, as the daemon does (CAP_SYS_ADMIN held until it is in).
            let seccomp = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
            let exec_rt = match seccomp {
                Some(s) => {
                    let v = serde_json::to_value(&s).map_err(|x| x.to_string())?;
                    let bpf = runtime::seccomp::compile(&v)?;
                    if let Some(mut caps) = p.capabilities().clone() {
                        let add = |s: &Option<std::collections::HashSet<oci::spec::runtime::Capability>>| {
                            let mut s = s.clone().unwrap_or_default();
                            s.insert(oci::spec::runtime::Capability::SysAdmin);
                            Some(s)
                        };
                        let (eff, perm) = (add(caps.effective()), add(caps.permitted()));
                        caps.set_effective(eff).set_permitted(perm);
                        p.set_capabilities(Some(caps));
                    }
                    Libcontainer::new(&a.root).with_seccomp(bpf)
                }
                None => Libcontainer::new(&a.root),
            }
            .with_preserved_fds(preserve_fds)
            .with_ignore_paused(ignore_paused)
            .with_sub_cgroup(cgroup);
            // Kept beside the container's state, and removed with it by `delete`.
            let path = a.root.join(&id).join(format!("exec-{}.json", std::process::id()));
            std::fs::write(&path, serde_json::to_vec(&p).map_err(|x| x.to_string())?).map_err(|x| x.to_string())?;
            let pid = exec_rt.exec(&id, &path, stdio(console_socket)).map_err(e)?;
            write_pid(&pid_file, pid)?;
            if detach { Ok(0) } else { Ok(runtime::process::wait_exit(pid)) }
        }
        Cmd::Ps { format, id } => {
            let st = rt.state(&id).map_err(e)?;
            let init = st["pid"].as_i64().unwrap_or(0);
            let pids = runtime::process::pids_in_namespace_of(init);
            if format == "json" {
                println!("{}", serde_json::to_string(&pids).map_err(|x| x.to_string())?);
            } else {
                println!("PID");
                for p in pids {
                    println!("{p}");
                }
            }
            Ok(0)
        }
        Cmd::List { quiet } => {
            if !quiet {
                println!("ID\tPID\tSTATUS\tBUNDLE");
            }
            for id in rt.list() {
                if quiet {
                    println!("{id}");
                } else if let Ok(s) = rt.state(&id) {
                    println!(
                        "{id}\t{}\t{}\t{}",
                        s["pid"],
                        s["status"].as_str().unwrap_or(""),
                        s["bundle"].as_str().unwrap_or("")
                    );
                }
            }
            Ok(0)
        }
        Cmd::Pause { id } => rt.pause(&id).map(|_| 0).map_err(e),
        Cmd::Resume { id } => rt.resume(&id).map(|_| 0).map_err(e),
        Cmd::Features => {
            let caps: Vec<String> = runtime::spec::CAP_NAMES.iter().map(|c| format!("CAP_{c}")).collect();
            let f = serde_json::json!({
                "ociVersionMin": "1.0.0",
                "ociVersionMax": "1.2.0",
                "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
                "mountOptions": ["ro", "rw", "bind", "rbind", "nosuid", "nodev", "noexec", "private", "rprivate", "slave", "rslave", "shared", "rshared"],
                "linux": {
                    "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts", "time"],
                    "capabilities": caps,
                    "cgroup": {"v1": true, "v2": true, "systemd": false},
                    "seccomp": {"enabled": true},
                    "apparmor": {"enabled": false},
                    "selinux": {"enabled": false},
                },
                "annotations": {"org.opencontainers.runc.version": "berth"},
            });
            println!("{}", serde_json::to_string_pretty(&f).map_err(|x| x.to_string())?);
            Ok(0)
        }
    }
}
