//! Container lifecycle: create, start, stop, kill, pause, remove, wait, and what happens
//! when a container's process ends.

use std::sync::Arc;
use std::time::Duration;

use api::types::{ContainerConfig, HostConfig};
use runtime::shim::proto::{ExitStatus, Request, ShimConfig, ShimKind};
use runtime::spec::{BindMount, ProcessSpec, Resources, RunSpec};
use serde_json::Value;

use crate::container::{
    Container, Events, PendingAttach, Record, State, Status, ZERO_TIME, new_id, random_name, valid_name,
};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The exit of a container whose shim vanished without leaving its status.
pub fn lost_exit() -> ExitStatus {
    ExitStatus { exit_code: 255, finished_at: now(), oom_killed: false }
}

fn str_list(v: &Value) -> Option<Vec<String>> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
}

/// Merges a create request with the image's defaults, as Docker does.
fn merge_config(mut cfg: ContainerConfig, image: &Value) -> ContainerConfig {
    let img = |k: &str| image.get(k).filter(|v| !v.is_null());
    let mut env: Vec<String> = img("Env").and_then(str_list).unwrap_or_default();
    for e in std::mem::take(&mut cfg.env) {
        let key = e.split_once('=').map(|(k, _)| k.to_owned()).unwrap_or_else(|| e.clone());
        env.retain(|x| x.split_once('=').map(|(k, _)| k) != Some(key.as_str()) && *x != key);
        env.push(e);
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    cfg.env = env;
    if cfg.entrypoint.is_none() {
        cfg.entrypoint = img("Entrypoint").and_then(str_list);
        if cfg.cmd.is_none() {
            cfg.cmd = img("Cmd").and_then(str_list);
        }
    }
    if cfg.working_dir.is_empty() {
        cfg.working_dir = img("WorkingDir").and_then(Value::as_str).unwrap_or_default().to_owned();
    }
    if cfg.user.is_empty() {
        cfg.user = img("User").and_then(Value::as_str).unwrap_or_default().to_owned();
    }
    if let Some(labels) = img("Labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(v) = v.as_str() {
                cfg.labels.entry(k.clone()).or_insert_with(|| v.to_owned());
            }
        }
    }
    if cfg.stop_signal.is_none() {
        cfg.stop_signal = img("StopSignal").and_then(Value::as_str).map(str::to_owned);
    }
    if cfg.exposed_ports.is_none() {
        cfg.exposed_ports = img("ExposedPorts").and_then(|v| serde_json::from_value(v.clone()).ok());
    }
    if cfg.volumes.is_none() {
        cfg.volumes = img("Volumes").and_then(|v| serde_json::from_value(v.clone()).ok());
    }
    cfg.healthcheck = crate::health::merge(cfg.healthcheck.take(), img("Healthcheck"));
    cfg
}

/// The seccomp filter a container runs under, compiled (once per profile and capability set)
/// into a BPF file under the exec root: none when privileged or `seccomp=unconfined`, else the
/// profile the client sent (docker reads `seccomp=FILE` and sends the file's content) or
/// berth's default.
pub(crate) fn seccomp_bpf(paths: &crate::engine::Paths, h: &HostConfig) -> Result<Option<std::path::PathBuf>> {
    let Some((profile, caps)) = seccomp_profile(h)? else { return Ok(None) };
    runtime::seccomp::bpf_file(&paths.exec_root.join("seccomp"), profile, &caps)
        .map(Some)
        .map_err(|e| EngineError::BadRequest(format!("--security-opt {e}")))
}

/// The profile text (None: the default) and capabilities, or None when unconfined.
fn seccomp_profile(h: &HostConfig) -> Result<Option<(Option<&str>, Vec<String>)>> {
    let mut profile = None;
    for opt in &h.security_opt {
        if let Some(v) = opt.strip_prefix("seccomp=").or_else(|| opt.strip_prefix("seccomp:")) {
            profile = Some(v);
        }
    }
    if h.privileged || profile == Some("unconfined") {
        return Ok(None);
    }
    if let Some(p) = profile
        && !p.trim_start().starts_with('{')
    {
        return Err(EngineError::BadRequest(format!(
            "--security-opt seccomp: `{p}` is neither `unconfined` nor a JSON profile (the client sends the content of the profile file)"
        )));
    }
    let caps = runtime::spec::capabilities(false, &h.cap_add, &h.cap_drop).map_err(EngineError::BadRequest)?;
    runtime::seccomp::oci_profile(profile, &caps)
        .map_err(|e| EngineError::BadRequest(format!("--security-opt {e}")))?;
    Ok(Some((profile, caps)))
}

/// Checks the limits in a HostConfig as Docker does, naming the option at fault.
pub(crate) fn validate_host_config(h: &HostConfig) -> Result<()> {
    crate::restart::validate(&h.restart_policy, h.auto_remove)?;
    if h.memory != 0 && h.memory < 6 * 1024 * 1024 {
        return Err(EngineError::BadRequest("Minimum memory limit allowed is 6MB".into()));
    }
    if h.memory_swap > 0 && h.memory > 0 && h.memory_swap < h.memory {
        return Err(EngineError::BadRequest(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        ));
    }
    if h.nano_cpus < 0 {
        return Err(EngineError::BadRequest("Range of CPUs is from 0.01 to the number of CPUs available".into()));
    }
    let cpus = std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1);
    if h.nano_cpus > cpus * 1_000_000_000 {
        return Err(EngineError::BadRequest(format!(
            "range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available"
        )));
    }
    runtime::spec::capabilities(h.privileged, &h.cap_add, &h.cap_drop).map_err(EngineError::BadRequest)?;
    if h.memory_reservation < 0 || (h.memory > 0 && h.memory_reservation > h.memory) {
        return Err(EngineError::BadRequest(
            "Minimum memory limit can not be less than memory reservation limit, see usage".into(),
        ));
    }
    if h.blkio_weight != 0 && !(10..=1000).contains(&h.blkio_weight) {
        return Err(EngineError::BadRequest(format!(
            "invalid --blkio-weight {}: range is from 10 to 1000",
            h.blkio_weight
        )));
    }
    check_cpuset(&h.cpuset_cpus, "/sys/devices/system/cpu/online", "--cpuset-cpus")?;
    check_cpuset(&h.cpuset_mems, "/sys/devices/system/node/online", "--cpuset-mems")?;
    let own_netns = h.network_mode != "host";
    for k in h.sysctls.keys() {
        runtime::spec::check_sysctl(k, own_netns).map_err(|e| EngineError::BadRequest(format!("--sysctl: {e}")))?;
    }
    let mut hard_max = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    for u in &h.ulimits {
        let Some((_, kind)) = runtime::spec::RLIMITS.iter().find(|(n, _)| *n == u.name) else {
            return Err(EngineError::BadRequest(format!("--ulimit: invalid ulimit type: {}", u.name)));
        };
        if u.soft < 0 || u.hard < 0 || u.soft > u.hard {
            return Err(EngineError::BadRequest(format!(
                "--ulimit {}: soft limit {} must not be above hard limit {}",
                u.name, u.soft, u.hard
            )));
        }
        // Without CAP_SYS_RESOURCE nobody can raise a hard limit: refuse now, not at start.
        let res = rlimit_resource(kind);
        // SAFETY: getrlimit writes into the rlimit we own.
        if unsafe { libc::getrlimit(res, &mut hard_max) } == 0
            && hard_max.rlim_max != libc::RLIM_INFINITY
            && u.hard as u64 > hard_max.rlim_max
            && !has_cap_sys_resource()
        {
            return Err(EngineError::BadRequest(format!(
                "--ulimit {}: hard limit {} is above this host's {} and the daemon cannot raise it",
                u.name, u.hard, hard_max.rlim_max
            )));
        }
    }
    for opt in &h.security_opt {
        match opt.split_once(['=', ':']).map(|(k, v)| (k, Some(v))).unwrap_or((opt.as_str(), None)) {
            ("no-new-privileges", None | Some("true") | Some("false")) => {}
            ("seccomp", Some("unconfined")) | ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
            ("seccomp", Some(_)) => {
                seccomp_profile(h)?;
            }
            _ => return Err(EngineError::BadRequest(format!("invalid --security-opt: \"{opt}\""))),
        }
    }
    if h.cpu_shares < 0 {
        return Err(EngineError::BadRequest("invalid CPU shares: must be positive".into()));
    }
    Ok(())
}

fn rlimit_resource(kind: &str) -> libc::__rlimit_resource_t {
    match kind {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => libc::RLIMIT_NOFILE,
    }
}

/// Whether this process holds CAP_SYS_RESOURCE (bit 24) in its effective set.
fn has_cap_sys_resource() -> bool {
    runtime::spec::own_capabilities("CapEff").is_some_and(|c| c & (1 << 24) != 0)
}

/// Parses a cpuset list (`0-2,4`) into its members.
fn parse_cpuset(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (a.parse::<u32>().ok()?, b.parse::<u32>().ok()?);
                if a > b {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

/// Refuses a cpuset naming CPUs (or memory nodes) the host does not have.
fn check_cpuset(want: &str, online: &str, flag: &str) -> Result<()> {
    if want.is_empty() {
        return Ok(());
    }
    let asked =
        parse_cpuset(want).ok_or_else(|| EngineError::BadRequest(format!("invalid value {want} for {flag}")))?;
    let have = std::fs::read_to_string(online).ok().and_then(|s| parse_cpuset(s.trim())).unwrap_or_else(|| vec![0]);
    if let Some(bad) = asked.iter().find(|c| !have.contains(c)) {
        return Err(EngineError::BadRequest(format!(
            "invalid value {want} for {flag}: {bad} is not available on this host (online: {})",
            std::fs::read_to_string(online).unwrap_or_default().trim()
        )));
    }
    Ok(())
}

/// Parses a signal given by name (`SIGTERM`, `term`) or number.
pub fn parse_signal(s: &str) -> Result<i32> {
    runtime::process::parse_signal(s).map_err(EngineError::BadRequest)
}

impl Engine {
    /// `POST /containers/create`.
    pub async fn create(self: &Arc<Self>, name: Option<&str>, cfg: ContainerConfig) -> Result<(String, Vec<String>)> {
        // A start usually follows at once (`run`): the kernel's wait before the container's
        // first cgroup move starts now, a few milliseconds earlier than the start could begin
        // it (see prime_migration; the start primes again in case it comes later).
        drop(tokio::task::spawn_blocking(runtime::cgroups::prime_migration));
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !valid_name(n) {
                    return Err(EngineError::BadRequest(format!(
                        "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
                    )));
                }
                n.trim_start_matches('/').to_owned()
            }
            None => String::new(),
        };
        let random = name.is_empty();
        if !random && let Some(other) = self.name_in_use(&name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        if cfg.image.is_empty() {
            return Err(EngineError::BadRequest("config.Image must be set: no image specified".into()));
        }
        let host = cfg.host_config.clone().unwrap_or_default();
        validate_host_config(&host)?;
        crate::health::validate(cfg.healthcheck.as_ref())?;
        let netplan = self.net_plan(&host, cfg.networking_config.as_ref())?;
        let images = self.images.clone();
        let image_name = cfg.image.clone();
        let img =
            tokio::task::spawn_blocking(move || images.resolve(&image_name)).await.map_err(EngineError::internal)?;
        if host.init == Some(true) {
            self.init_binary()?;
        }
        let img = img.map_err(|e| match e {
            image::ImageError::NotFound(_) => image::ImageError::NotFound(
                oci::Reference::parse_with_default_tag(&cfg.image)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| cfg.image.clone()),
            ),
            e => e,
        })?;
        let mut cfg = merge_config(cfg, img.run_config());
        cfg.host_config = None;
        let argv: Vec<String> =
            cfg.entrypoint.clone().unwrap_or_default().into_iter().chain(cfg.cmd.clone().unwrap_or_default()).collect();
        if argv.is_empty() {
            return Err(EngineError::BadRequest("no command specified".into()));
        }
        let mut host = host;
        crate::logs::fill_log_config(&mut host, &self.settings)?;
        let mounts = self.prepare_mounts(&cfg, &host)?;
        let id = new_id();
        if cfg.hostname.is_empty() {
            cfg.hostname = id[..12].to_owned();
        }
        let rec = Record {
            id: id.clone(),
            created: now(),
            image: img.id.to_string(),
            image_name: cfg.image.clone(),
            path: argv[0].clone(),
            args: argv[1..].to_vec(),
            config: cfg,
            host_config: host,
            state: State {
                status: Status::Created,
                pid: 0,
                exit_code: 0,
                error: String::new(),
                started_at: ZERO_TIME.into(),
                finished_at: ZERO_TIME.into(),
                oom_killed: false,
                restart_count: 0,
                name,
                stopped_by_user: false,
                health: None,
            },
            mounts,
        };
        let dir = self.paths.container_dir(&id);
        {
            let (spares, d) = (self.spares.clone(), dir.clone());
            let log = crate::logs::log_file(&self.paths, &id, &rec.host_config.log_config);
            tokio::task::spawn_blocking(move || {
                if spares.take(&d, log.as_deref()) { Ok(()) } else { std::fs::create_dir_all(&d) }
            })
            .await
            .map_err(EngineError::internal)?
            .map_err(|e| EngineError::Internal(format!("create `{}`: {e}", dir.display())))?;
        }
        let mut rec = rec;
        // A name is taken atomically; a random one is drawn again (with a number, as Docker
        // does, once the plain names run short) until one is free.
        let mut attempt = 0;
        let c = loop {
            if random {
                rec.state.name = if attempt < 10 { random_name() } else { format!("{}{}", random_name(), attempt) };
            }
            let c = Arc::new(Container::new(rec.clone()));
            match self.insert_unique(c.clone()) {
                Ok(()) => break c,
                Err(_) if random && attempt < 100 => attempt += 1,
                Err(e) => {
                    let _ = tokio::fs::remove_dir_all(&dir).await;
                    self.remove_anonymous_volumes(&rec.mounts);
                    return Err(e);
                }
            }
        };
        if let Err(e) = self.save(&c).and_then(|_| self.net.insert(&c.id, &c.name(), netplan)) {
            self.forget(&c.id);
            let _ = self.delete_record(&c.id);
            self.remove_anonymous_volumes(&rec.mounts);
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
        self.container_event(&c, "create", Vec::new());
        Ok((id, Vec::new()))
    }

    /// `POST /containers/{id}/start`.
    pub async fn start(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        let _op = c.op.lock().await;
        let status = c.status();
        if status.is_live() {
            return Err(EngineError::NotModified);
        }
        if !status.can_start() {
            return Err(EngineError::Conflict(format!(
                "cannot start container {}: it is {}",
                c.short_id(),
                status.as_str()
            )));
        }
        // A start by the user begins the restart policy's count afresh.
        c.lock().state.restart_count = 0;
        *c.backoff.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.start_checked(c).await?;
        self.container_event(c, "start", Vec::new());
        Ok(())
    }

    /// Starts a container whose state allows it (the caller holds `op`); on failure the
    /// runtime is cleaned up and the error recorded in the state.
    pub(crate) async fn start_checked(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        match self.start_locked(c).await {
            Ok(()) => {
                self.start_health(c);
                Ok(())
            }
            Err(e) => {
                self.cleanup_runtime(c).await;
                {
                    let msg = e.to_string();
                    let mut r = c.lock();
                    r.state.exit_code = api::start_error_code(&msg).unwrap_or(128) as i64;
                    r.state.error = msg;
                }
                let _ = self.save(c);
                // The attachers waiting for this start get nothing: their streams end.
                c.pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                Err(e)
            }
        }
    }

    async fn start_locked(self: &Arc<Self>, c: &Arc<Container>) -> Result<()> {
        let t0 = std::time::Instant::now();
        // The runtime moves the container's process into its cgroup a few milliseconds from
        // now; the kernel's wait for that move starts here instead (see prime_migration).
        drop(tokio::task::spawn_blocking(runtime::cgroups::prime_migration));
        let rec = c.snapshot();
        let id = rec.id.clone();
        let paths = self.paths.clone();
        let images = self.images.clone();
        let volumes = self.volumes.clone();
        let image_id = rec.image.clone();
        let init = if rec.host_config.init == Some(true) { Some(self.init_binary()?) } else { None };
        let (joined, links) = self.net_inputs(&rec)?;
        // The network (namespace, veth pair, addresses, the /etc files) is made on a thread of
        // its own beside the rootfs: each takes about a millisecond, and neither needs the other.
        // Its task is queued first: the blocking pool runs queued tasks in order, so it runs no
        // later than the one below that waits for it, even with every pool thread busy.
        let (net_tx, net_rx) = std::sync::mpsc::channel();
        {
            let (net, rec, paths) = (self.net.clone(), rec.clone(), self.paths.clone());
            drop(tokio::task::spawn_blocking(move || {
                let _ = net_tx.send(net.setup(&rec, &paths, joined.as_deref(), &links));
            }));
        }
        let (spec, shim_cfg) = tokio::task::spawn_blocking(move || -> Result<(RunSpec, ShimConfig)> {
            let rootfs = paths.rootfs(&id);
            let made = (|| -> Result<runtime::user::ResolvedUser> {
                let img = images.resolve(&image_id)?;
                let lowers = images.container_lowers(&img)?;
                let dir = paths.container_dir(&id);
                if !image::snapshot::is_mounted(&rootfs) {
                    // Nobody keeps a `--rm` container's layer: no sync when it goes.
                    let volatile = rec.host_config.auto_remove;
                    image::snapshot::mount_overlay(&lowers, &dir.join("upper"), &dir.join("work"), &rootfs, volatile)?;
                }
                Ok(runtime::user::resolve(&rootfs, &rec.config.user, &rec.host_config.group_add)?)
            })();
            // Both halves are done before either's error goes back: the caller's cleanup then
            // undoes whatever each of them made.
            let started =
                net_rx.recv().map_err(|_| EngineError::Internal("network setup ended without a result".into()));
            let user = made?;
            let started = started??;
            let netns = started.netns;
            // Link variables first: the container's own environment wins.
            let mut env = started.env;
            env.extend(rec.config.env.iter().cloned());
            if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
                env.push(format!("HOSTNAME={}", rec.config.hostname));
            }
            if !env.iter().any(|e| e.starts_with("HOME=")) {
                env.push(format!("HOME={}", user.home));
            }
            if rec.config.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
                env.push("TERM=xterm".into());
            }
            let h = &rec.host_config;
            let mut mounts: Vec<BindMount> = paths
                .etc_mounts(&id)
                .map(|(destination, source)| BindMount { source, destination, readonly: false })
                .collect();
            let user_mounts = crate::volumes::setup_mounts(&volumes, &rec.mounts, &rootfs)?;
            // --init: a small init as PID 1 reaps zombies and forwards signals to the command.
            let mut args: Vec<String> = std::iter::once(rec.path.clone()).chain(rec.args.iter().cloned()).collect();
            if let Some(init) = &init {
                mounts.push(BindMount {
                    source: init.clone(),
                    destination: "/sbin/docker-init".into(),
                    readonly: true,
                });
                args.splice(0..0, ["/sbin/docker-init".to_owned(), "--".to_owned()]);
            }
            let console_size = h.console_size.as_ref().filter(|v| v.len() == 2 && v[0] > 0).map(|v| (v[0], v[1]));
            let seccomp = seccomp_bpf(&paths, h)?;
            let spec = RunSpec {
                process: ProcessSpec {
                    args,
                    env,
                    cwd: if rec.config.working_dir.is_empty() { "/".into() } else { rec.config.working_dir.clone() },
                    user: user.user,
                    terminal: rec.config.tty,
                    console_size,
                    privileged: h.privileged,
                    no_new_privileges: h.security_opt.iter().any(|o| {
                        o == "no-new-privileges" || o == "no-new-privileges=true" || o == "no-new-privileges:true"
                    }),
                    cap_add: h.cap_add.clone(),
                    cap_drop: h.cap_drop.clone(),
                    seccomp: seccomp.is_some(),
                },
                hostname: rec.config.hostname.clone(),
                rootfs: rootfs.clone(),
                readonly_rootfs: h.readonly_rootfs,
                netns,
                cgroups_path: format!("/berth/{id}"),
                resources: Resources {
                    memory: h.memory,
                    memory_swap: h.memory_swap,
                    nano_cpus: h.nano_cpus,
                    cpu_shares: h.cpu_shares,
                    pids_limit: h.pids_limit,
                    memory_reservation: h.memory_reservation,
                    cpuset_cpus: h.cpuset_cpus.clone(),
                    cpuset_mems: h.cpuset_mems.clone(),
                    blkio_weight: h.blkio_weight,
                },
                mounts,
                user_mounts,
                shm_size: if h.shm_size > 0 { Some(h.shm_size) } else { None },
                tmpfs: h.tmpfs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                rlimits: h
                    .ulimits
                    .iter()
                    .map(|u| runtime::spec::Rlimit { name: u.name.clone(), soft: u.soft as u64, hard: u.hard as u64 })
                    .collect(),
                sysctl: h.sysctls.clone(),
            };
            let bundle = paths.bundle(&id);
            spec.write_bundle(&bundle)?;
            let shim = ShimConfig {
                container_id: id.clone(),
                kind: ShimKind::Init { bundle: bundle.clone() },
                runtime_root: paths.runtime_root(),
                socket: paths.shim_socket(&id),
                console_socket: paths.console_socket(&id),
                log: crate::logs::log_file(&paths, &id, &rec.host_config.log_config),
                log_rotate: crate::logs::rotation(&rec.host_config.log_config)?,
                exit_file: paths.exit_file(&id),
                tty: rec.config.tty,
                stdin: rec.config.open_stdin,
                stdin_once: rec.config.stdin_once,
                cgroup: Some(format!("/berth/{id}")),
                seccomp,
                lock: Some(bundle.join(runtime::shim::proto::LOCK_FILE)),
            };
            let _ = std::fs::remove_file(&shim.exit_file);
            Ok((spec, shim))
        })
        .await
        .map_err(EngineError::internal)??;
        let _ = spec;
        let t_prepared = t0.elapsed();
        let bundle = self.paths.bundle(&c.id);
        // Those who attached before the start are queued ahead of it, so they miss nothing.
        let pending: Vec<PendingAttach> = std::mem::take(&mut *c.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let before: Vec<Request> =
            pending.iter().map(|p| Request::Attach { stdin: p.stdin, stdout: p.stdout, stderr: p.stderr }).collect();
        // Running before the process is released, so that a process asking the daemon about
        // itself at once (`docker ps` in the container) finds it running; its pid follows as
        // soon as the shim reports it. Undone if the start fails.
        let before_state = {
            let mut r = c.lock();
            let before = r.state.clone();
            r.state.status = Status::Running;
            r.state.pid = 0;
            r.state.started_at = now();
            r.state.finished_at = ZERO_TIME.into();
            r.state.exit_code = 0;
            r.state.error.clear();
            r.state.oom_killed = false;
            r.state.stopped_by_user = false;
            before
        };
        let launched =
            match crate::shim::launch(&shim_cfg, &bundle.join("shim.json"), &bundle.join("shim.log"), &before).await {
                Ok(l) => l,
                Err(e) => {
                    let mut r = c.lock();
                    r.state.status = before_state.status;
                    r.state.pid = before_state.pid;
                    r.state.started_at = before_state.started_at;
                    r.state.finished_at = before_state.finished_at;
                    r.state.oom_killed = before_state.oom_killed;
                    r.state.stopped_by_user = before_state.stopped_by_user;
                    return Err(e.into());
                }
            };
        let t_created = t0.elapsed();
        c.lock().state.pid = i64::from(launched.pid);
        for (p, mut conn) in pending.into_iter().zip(launched.conns) {
            if let Ok(resp) = crate::shim::read_response(&mut conn).await
                && resp.error.is_none()
            {
                let _ = p.tx.send(conn);
            }
        }
        self.volume_events(&c.id, &c.lock().mounts.clone(), "mount");
        self.save(c)?;
        self.monitor(c.clone());
        tracing::debug!(
            "started {} in {:?} (prepared {:?}, launched {:?})",
            c.short_id(),
            t0.elapsed(),
            t_prepared,
            t_created
        );
        Ok(())
    }

    /// Watches a running container's shim and records the exit.
    pub fn monitor(self: &Arc<Self>, c: Arc<Container>) {
        let engine = self.clone();
        tokio::spawn(async move {
            let socket = engine.paths.shim_socket(&c.id);
            let exit = match crate::shim::open(&socket, &Request::Wait).await {
                Ok((_, resp)) => resp.exit,
                Err(_) => None,
            };
            let exit = exit
                .or_else(|| runtime::shim::proto::read_exit_file(&engine.paths.exit_file(&c.id)))
                .unwrap_or_else(lost_exit);
            engine.on_exit(&c, exit).await;
        });
    }

    /// Unmounts the rootfs and removes the network namespace of a stopped container.
    pub(crate) async fn cleanup_runtime(&self, c: &Container) {
        let (net, paths, id) = (self.net.clone(), self.paths.clone(), c.id.clone());
        let _ = tokio::task::spawn_blocking(move || {
            net.teardown(&id);
            crate::engine::unpin_container(&paths, &id, &paths.rootfs(&id));
            runtime::cgroups::remove_tree(&format!("/berth/{id}"));
        })
        .await;
        let mounts = c.lock().mounts.clone();
        self.release_volumes(&c.id, &mounts);
    }

    pub(crate) async fn on_exit(self: &Arc<Self>, c: &Arc<Container>, exit: ExitStatus) {
        // A `--rm` container is removed next, and its removal undoes the runtime (mostly after
        // its answer, see finish_remove) and replaces its record: neither is done twice.
        let removed_next = {
            let r = c.lock();
            r.host_config.auto_remove && r.state.status != Status::Removing
        };
        if !removed_next {
            self.cleanup_runtime(c).await;
        }
        let (auto_remove, restart) = {
            let mut r = c.lock();
            if r.state.status == Status::Removing {
                (false, false)
            } else {
                r.state.status = Status::Exited;
                r.state.exit_code = exit.exit_code as i64;
                r.state.finished_at = exit.finished_at.clone();
                r.state.oom_killed = exit.oom_killed;
                r.state.pid = 0;
                let restart = self.decide_restart(c, &mut r, exit.exit_code as i64);
                (r.host_config.auto_remove, restart)
            }
        };
        // (AutoRemove and a restart policy never go together: validate_host_config.)
        if !removed_next && let Err(e) = self.save(c) {
            tracing::error!("save container {}: {e}", c.id);
        }
        if exit.oom_killed {
            self.container_event(c, "oom", Vec::new());
        }
        let started = chrono::DateTime::parse_from_rfc3339(&c.lock().state.started_at).ok();
        let ran = started.map(|s| (chrono::Utc::now() - s.to_utc()).num_seconds().max(0)).unwrap_or(0);
        self.container_event(
            c,
            "die",
            vec![("exitCode".into(), exit.exit_code.to_string()), ("execDuration".into(), ran.to_string())],
        );
        c.events.send_modify(|e| e.exits += 1);
        if restart {
            self.schedule_restart(c.clone());
        }
        if auto_remove {
            let engine = self.clone();
            let c = c.clone();
            tokio::spawn(async move {
                let mounts = c.lock().mounts.clone();
                match engine.remove(&c, false).await {
                    Ok(()) => engine.remove_anonymous_volumes(&mounts),
                    // Another removal (`rm -f`) has it, runtime and all.
                    Err(EngineError::Conflict(_)) => {}
                    Err(e) => {
                        tracing::error!("auto-remove {}: {e}", c.id);
                        // It stays, exited: what on_exit left to the removal is done here.
                        engine.cleanup_runtime(&c).await;
                        if let Err(e) = engine.save(&c) {
                            tracing::error!("save container {}: {e}", c.id);
                        }
                    }
                }
            });
        }
    }

    /// Waits until the container has exited more times than `seen`, or `timeout` passes.
    async fn wait_exit(&self, c: &Container, seen: u64, timeout: Option<Duration>) -> bool {
        let mut rx = c.events.subscribe();
        let fut = rx.wait_for(|e| e.exits > seen || e.removed);
        match timeout {
            Some(t) => matches!(tokio::time::timeout(t, fut).await, Ok(Ok(_))),
            None => fut.await.is_ok(),
        }
    }

    /// Sends a signal to the container's process (or all its processes).
    pub async fn kill(&self, c: &Container, signal: i32, all: bool) -> Result<()> {
        let status = c.status();
        if status == Status::Paused && signal != libc::SIGKILL {
            return Err(EngineError::Paused(c.id.clone()));
        }
        if !status.is_live() {
            return Err(EngineError::NotRunning(c.id.clone()));
        }
        {
            // As Docker: SIGKILL or the stop signal means the user wants it down, and the
            // restart policy leaves it so; other signals are only delivered.
            let mut r = c.lock();
            let stop_signal =
                r.config.stop_signal.as_deref().and_then(|s| parse_signal(s).ok()).unwrap_or(libc::SIGTERM);
            if signal == libc::SIGKILL || signal == stop_signal {
                r.state.stopped_by_user = true;
            }
        }
        crate::shim::call(&self.paths.shim_socket(&c.id), &Request::Kill { signal, all }).await?;
        self.container_event(c, "kill", vec![("signal".into(), signal.to_string())]);
        Ok(())
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after the timeout.
    pub async fn stop(&self, c: &Container, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let _op = c.op.lock().await;
        self.stop_locked(c, timeout, signal).await?;
        self.container_event(c, "stop", Vec::new());
        Ok(())
    }

    async fn stop_locked(&self, c: &Container, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        let status = c.status();
        if status == Status::Restarting {
            // Nothing runs: cancelling the pending restart is the stop.
            {
                let mut r = c.lock();
                r.state.status = Status::Exited;
                r.state.stopped_by_user = true;
            }
            return self.save(c);
        }
        if !status.is_live() {
            return Err(EngineError::NotModified);
        }
        let rec = c.snapshot();
        let sig = parse_signal(signal.or(rec.config.stop_signal.as_deref()).unwrap_or("SIGTERM"))?;
        let t = timeout.or(rec.config.stop_timeout).unwrap_or(10);
        let seen = c.events.borrow().exits;
        if status == Status::Paused {
            let _ = crate::shim::call(&self.paths.shim_socket(&c.id), &Request::Resume).await;
            c.lock().state.status = Status::Running;
        }
        if t != 0 {
            let _ = self.kill(c, sig, false).await;
        }
        let limit = if t < 0 { None } else { Some(Duration::from_secs(t as u64)) };
        if t != 0 && self.wait_exit(c, seen, limit).await {
            return Ok(());
        }
        let _ = self.kill(c, libc::SIGKILL, true).await;
        if !self.wait_exit(c, seen, Some(Duration::from_secs(30))).await {
            return Err(EngineError::Internal(format!("container {} did not exit after SIGKILL", c.short_id())));
        }
        Ok(())
    }

    pub async fn restart(
        self: &Arc<Self>,
        c: &Arc<Container>,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> Result<()> {
        match self.stop(c, timeout, signal).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        self.start(c).await?;
        self.container_event(c, "restart", Vec::new());
        Ok(())
    }

    pub async fn pause(&self, c: &Container, pause: bool) -> Result<()> {
        let _op = c.op.lock().await;
        let status = c.status();
        let req = if pause {
            if !status.can_pause() {
                return match status {
                    Status::Paused => Err(EngineError::Conflict(format!("Container {} is already paused", c.id))),
                    _ => Err(EngineError::NotRunning(c.id.clone())),
                };
            }
            Request::Pause
        } else {
            if status != Status::Paused {
                return Err(EngineError::Conflict(format!("Container {} is not paused", c.id)));
            }
            Request::Resume
        };
        crate::shim::call(&self.paths.shim_socket(&c.id), &req).await?;
        c.lock().state.status = if pause { Status::Paused } else { Status::Running };
        self.save(c)?;
        self.container_event(c, if pause { "pause" } else { "unpause" }, Vec::new());
        Ok(())
    }

    /// `DELETE /containers/{id}`. The container's files go in the background, after the answer
    /// (see [`Engine::finish_remove`]).
    pub async fn remove(self: &Arc<Self>, c: &Arc<Container>, force: bool) -> Result<()> {
        self.remove_then(c, force).await.map(drop)
    }

    /// [`Engine::remove`], returning the background deletion of the container's files, for a
    /// caller (prune) that answers only once that space is back.
    pub(crate) async fn remove_then(self: &Arc<Self>, c: &Arc<Container>, force: bool) -> Result<FilesGone> {
        let _op = c.op.lock().await;
        let status = c.status();
        if status == Status::Removing {
            return Err(EngineError::Conflict(format!("removal of container {} is already in progress", c.id)));
        }
        if status == Status::Restarting && !force {
            return Err(EngineError::Conflict(format!(
                "You cannot remove a restarting container {}. Stop the container before attempting removal or force remove",
                c.id
            )));
        }
        if status.is_live() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    c.id
                )));
            }
            self.stop_locked(c, Some(0), None)
                .await
                .or_else(|e| if matches!(e, EngineError::NotModified) { Ok(()) } else { Err(e) })?;
        }
        c.lock().state.status = Status::Removing;
        self.save(c)?;
        self.finish_remove(c).await
    }

    pub(crate) async fn finish_remove(&self, c: &Container) -> Result<FilesGone> {
        // Before the answer, only what another container or request could run into: the
        // network (addresses and published ports go back to their pools) and the volumes'
        // use. The rest goes after the answer, in the background: the directory is moved out
        // of the way at once (a rename) and then the rootfs unmounted, the network namespace
        // removed and the files deleted (waiting for the shim to end). That is the slowest part
        // of a removal, and of every `run --rm`. A daemon that stops first waits for it; one
        // that crashes sweeps `.removing-*` when it starts again.
        let (net, id) = (self.net.clone(), c.id.clone());
        tokio::task::spawn_blocking(move || net.teardown_for_removal(&id)).await.map_err(EngineError::internal)?;
        let mounts = c.lock().mounts.clone();
        self.release_volumes(&c.id, &mounts);
        let dir = self.paths.container_dir(&c.id);
        let trash = self.paths.removing_dir(&c.id);
        let (paths, spares) = (self.paths.clone(), self.spares.clone());
        let id = c.id.clone();
        let (d, t) = (dir.clone(), trash.clone());
        let moved =
            tokio::task::spawn_blocking(move || std::fs::rename(&d, &t)).await.map_err(EngineError::internal)?;
        let gone = match moved {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!("move `{}` aside: {e}; removing it now", dir.display());
                tokio::task::spawn_blocking(move || crate::engine::remove_container_files(&paths, &spares, &id, &dir))
                    .await
                    .map_err(EngineError::internal)??;
                FilesGone(None)
            }
            _ => FilesGone(Some(self.background.spawn_blocking(move || {
                if let Err(e) = crate::engine::remove_container_files(&paths, &spares, &id, &trash) {
                    tracing::warn!("{e}");
                }
            }))),
        };
        self.delete_record(&c.id)?;
        self.net.forget(&c.id);
        self.forget(&c.id);
        let execs: Vec<String> = std::mem::take(&mut *c.exec_ids.lock().unwrap_or_else(|p| p.into_inner()));
        {
            let mut m = self.execs.lock().unwrap_or_else(|p| p.into_inner());
            for e in execs {
                m.remove(&e);
            }
        }
        self.container_event(c, "destroy", Vec::new());
        c.events.send_modify(|e| e.removed = true);
        Ok(gone)
    }

    /// `POST /containers/{id}/wait`: subscribes first (so nothing is missed), then waits.
    pub fn wait(&self, c: &Arc<Container>, condition: &str) -> Result<impl std::future::Future<Output = i64> + use<>> {
        let mut rx = c.events.subscribe();
        let start: Events = *rx.borrow();
        let status = c.status();
        let c = c.clone();
        let cond = match condition {
            "" | "not-running" => 0,
            "next-exit" => 1,
            "removed" => 2,
            other => return Err(EngineError::BadRequest(format!("invalid condition: \"{other}\""))),
        };
        Ok(async move {
            let code = |c: &Container| c.lock().state.exit_code;
            match cond {
                0 if !status.is_live() => code(&c),
                0 | 1 => {
                    let _ = rx.wait_for(|e| e.exits > start.exits || e.removed).await;
                    code(&c)
                }
                _ => {
                    let _ = rx.wait_for(|e| e.removed).await;
                    code(&c)
                }
            }
        })
    }

    /// Registers an attach for a container that has not started yet.
    pub fn pend_attach(
        &self,
        c: &Container,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> tokio::sync::oneshot::Receiver<tokio::net::UnixStream> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        c.pending.lock().unwrap_or_else(|p| p.into_inner()).push(PendingAttach { stdin, stdout, stderr, tx });
        rx
    }

    pub fn rename(&self, c: &Container, new: &str) -> Result<()> {
        if !valid_name(new) {
            return Err(EngineError::BadRequest(format!(
                "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let new = new.trim_start_matches('/');
        if let Some(other) = self.name_in_use(new) {
            if other == c.id {
                return Err(EngineError::BadRequest(
                    "Renaming a container with the same name as its current name".into(),
                ));
            }
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let old = std::mem::replace(&mut c.lock().state.name, new.to_owned());
        self.net.rename(&c.id, new);
        self.save(c)?;
        self.container_event(c, "rename", vec![("oldName".into(), format!("/{old}"))]);
        Ok(())
    }
}

/// The deletion of a removed container's files, still running in the background (or already
/// done): dropping it lets it run on; [`FilesGone::wait`] waits for it.
#[must_use = "drop it to leave the deletion in the background, or wait for it"]
pub(crate) struct FilesGone(Option<tokio::task::JoinHandle<()>>);

impl FilesGone {
    pub(crate) async fn wait(self) {
        if let Some(h) = self.0 {
            let _ = h.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_image_defaults_like_docker() {
        let image = json!({"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": null, "WorkingDir": "/w", "Labels": {"l": "1"}});
        let cfg = ContainerConfig { env: vec!["A=2".into()], ..Default::default() };
        let m = merge_config(cfg, &image);
        assert_eq!(m.env, vec!["PATH=/bin", "A=2"]);
        assert_eq!(m.cmd, Some(vec!["sh".into()]));
        assert_eq!(m.working_dir, "/w");
        assert_eq!(m.labels.get("l").map(String::as_str), Some("1"));
        // An entrypoint given on the command line drops the image's CMD.
        let cfg = ContainerConfig { entrypoint: Some(vec!["echo".into()]), ..Default::default() };
        let m = merge_config(cfg, &image);
        assert_eq!(m.cmd, None);
        assert!(m.env[0].starts_with("PATH="));
    }

    #[test]
    fn signals_and_limits() {
        assert_eq!(parse_signal("SIGKILL").ok(), Some(9));
        assert_eq!(parse_signal("term").ok(), Some(15));
        assert_eq!(parse_signal("2").ok(), Some(2));
        assert!(parse_signal("NOPE").is_err());
        let h = HostConfig { memory: 1024, ..Default::default() };
        assert!(validate_host_config(&h).expect_err("too small").to_string().contains("6MB"));
    }
}
