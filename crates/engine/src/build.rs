//! The engine's side of the builder: RUN steps in real containers (a [`build::StepRunner`]
//! through the shim and the runtime, as `start` does), builds, `commit`, `diff` and the build
//! cache's prune.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use build::{BuildError, RunStep, StepRunner};
use image::store::ImageRecord;
use oci::{Digest, Reference};
use runtime::shim::proto::{Request, ShimConfig, ShimKind};
use runtime::spec::{BindMount, ProcessSpec, RunSpec};
use serde_json::{Value, json};

use crate::container::{Container, Status};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// Runs RUN steps as containers: bundle → shim → attach → start → wait; nothing remains after.
pub struct EngineRunner {
    engine: Arc<Engine>,
    handle: tokio::runtime::Handle,
    /// Credentials from `X-Registry-Config`, by registry host (`login_host` form).
    auth: std::collections::HashMap<String, image::remote::Credentials>,
}

/// Decodes `X-Registry-Config`: base64 (url-safe or standard) of a JSON map
/// registry → AuthConfig, as the docker CLI sends it with a build. Keys are normalised to
/// registry hosts (`https://index.docker.io/v1/` → Docker Hub's API host).
pub fn registry_config(h: &str) -> Result<std::collections::HashMap<String, image::remote::Credentials>> {
    let h = h.trim();
    let mut out = std::collections::HashMap::new();
    if h.is_empty() {
        return Ok(out);
    }
    let raw = image::remote::decode_header_base64(h)
        .ok_or_else(|| EngineError::BadRequest("X-Registry-Config: not base64".into()))?;
    if raw.iter().all(u8::is_ascii_whitespace) || raw == b"null" {
        return Ok(out);
    }
    let m: std::collections::HashMap<String, image::remote::Credentials> = serde_json::from_slice(&raw)
        .map_err(|e| EngineError::BadRequest(format!("X-Registry-Config: invalid JSON: {e}")))?;
    for (k, mut c) in m {
        c.fill_from_auth();
        if !c.is_empty() {
            out.insert(image::remote::login_host(&k), c);
        }
    }
    Ok(out)
}

fn runner_err(e: impl std::fmt::Display) -> BuildError {
    BuildError::Runner(e.to_string())
}

impl StepRunner for EngineRunner {
    fn fetch(&self, url: &str, dir: &Path) -> std::result::Result<(PathBuf, String), BuildError> {
        if !url.starts_with("https://") {
            return build::fetch::download(url, dir);
        }
        let bad = |m: String| BuildError::Invalid(format!("ADD {url}: {m}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let host = match (parsed.host_str(), parsed.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_owned(),
            (None, _) => return Err(bad("no host in the URL".into())),
        };
        let name = parsed.path_segments().and_then(|mut s| s.next_back()).unwrap_or_default().to_owned();
        if name.is_empty() {
            return Err(bad("cannot determine a file name from the URL".into()));
        }
        // The registries' client for that host: system roots plus certs.d/<host>/*.crt.
        let client = self.engine.registries.client(&host).map_err(|e| bad(e.to_string()))?;
        let out = dir.join(&name);
        let (url2, out2, dir2) = (url.to_owned(), out.clone(), dir.to_path_buf());
        let last_modified = self
            .handle
            .block_on(async move {
                use std::io::Write;
                let mut resp = client.get(&url2).send().await.map_err(|e| format!("{e:#}"))?;
                if !resp.status().is_success() {
                    return Err(format!("server answered {}", resp.status()));
                }
                let lm =
                    resp.headers().get(reqwest::header::LAST_MODIFIED).and_then(|v| v.to_str().ok()).map(str::to_owned);
                std::fs::create_dir_all(&dir2).map_err(|e| e.to_string())?;
                let mut f = std::fs::File::create(&out2).map_err(|e| e.to_string())?;
                while let Some(chunk) = resp.chunk().await.map_err(|e| format!("download: {e:#}"))? {
                    f.write_all(&chunk).map_err(|e| e.to_string())?;
                }
                Ok(lm)
            })
            .map_err(bad)?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600));
        build::fetch::set_mtime(&out, last_modified.as_deref());
        Ok((out, name))
    }

    fn pull(&self, r: &Reference, progress: &dyn build::Progress) -> std::result::Result<ImageRecord, BuildError> {
        let host = image::remote::api_host(r.domain()).to_owned();
        let creds = self.auth.get(&host).cloned();
        let platform = image::remote::pull::Platform::host();
        let (store, regs) = (self.engine.images.clone(), self.engine.registries.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let r2 = r.clone();
        let job = self.handle.spawn(async move {
            image::remote::pull::pull(store, regs, &r2, &platform, creds, image::remote::Events(tx)).await
        });
        // The pull's events, forwarded as they come (this is a blocking thread).
        while let Some(ev) = rx.blocking_recv() {
            progress.status(ev.id.as_deref(), &ev.status, ev.progress);
        }
        let pulled = self.handle.block_on(job).map_err(runner_err)?.map_err(|e| match e.kind() {
            oci::ErrorKind::NotFound => BuildError::NotFound(e.to_string()),
            _ => BuildError::Invalid(e.to_string()),
        })?;
        self.engine.image_event("pull", &r.familiar(), &r.familiar_name());
        self.engine
            .images
            .get(&pulled.id)?
            .ok_or_else(|| BuildError::NotFound(format!("No such image: {}", r.familiar())))
    }

    fn run(&self, step: &RunStep, output: &mut dyn FnMut(&[u8])) -> std::result::Result<i64, BuildError> {
        let paths = &self.engine.paths;
        // The step's bundle holds its /etc files, as a container's (Paths::etc_dir): one a
        // crash leaves behind is swept at the next start, as any record-less bundle.
        let etc = paths.etc_dir(&step.id);
        std::fs::create_dir_all(&etc).map_err(runner_err)?;
        let mode = step.network.as_str();
        let bridged = !matches!(mode, "none" | "host");
        let mut netns = None;
        let result = (|| {
            if mode == "none" {
                let ns = paths.netns(&step.id);
                network::create_netns(&ns).map_err(runner_err)?;
                netns = Some(ns);
            } else if bridged {
                netns = self.attach_network(step)?;
            }
            self.run_in(step, &etc, netns.as_deref(), !bridged, output)
        })();
        if bridged {
            self.engine.net.teardown(&step.id);
            self.engine.net.forget(&step.id);
        }
        if let Some(ns) = &netns {
            let _ = network::remove_netns(ns);
        }
        let _ = std::fs::remove_file(paths.shim_socket(&step.id));
        let _ = std::fs::remove_dir_all(paths.bundle(&step.id));
        result
    }
}

impl EngineRunner {
    /// Puts a RUN step on a bridge network (`default`/`bridge` or a user network named by
    /// `--network`) as a container's start does: an endpoint, a namespace with a veth and an
    /// address, /etc/hosts and resolv.conf in the step's directory. Undone by `teardown` and
    /// `forget` after the step.
    fn attach_network(&self, step: &RunStep) -> std::result::Result<Option<PathBuf>, BuildError> {
        let net = &self.engine.net;
        let host = api::types::HostConfig { network_mode: step.network.clone(), ..Default::default() };
        let config = api::types::ContainerConfig { hostname: step.id[..12].to_owned(), ..Default::default() };
        let name = format!("/build-{}", &step.id[..12]);
        let rec = crate::container::Record {
            id: step.id.clone(),
            created: crate::lifecycle::now(),
            image: String::new(),
            image_name: String::new(),
            path: step.argv.first().cloned().unwrap_or_default(),
            args: step.argv.iter().skip(1).cloned().collect(),
            config,
            host_config: host,
            state: crate::container::State {
                status: Status::Created,
                pid: 0,
                exit_code: 0,
                error: String::new(),
                started_at: crate::container::ZERO_TIME.into(),
                finished_at: crate::container::ZERO_TIME.into(),
                oom_killed: false,
                restart_count: 0,
                name: name.clone(),
                stopped_by_user: false,
                health: None,
            },
            mounts: Vec::new(),
        };
        let plan = net
            .plan(&rec.host_config, None)
            .map_err(|e| BuildError::Invalid(format!("network {}: {e}", step.network)))?;
        net.insert(&step.id, &name, plan).map_err(runner_err)?;
        let started = net.setup(&rec, &self.engine.paths, None, &[]).map_err(runner_err)?;
        Ok(started.netns)
    }

    fn run_in(
        &self,
        step: &RunStep,
        dir: &Path,
        netns: Option<&Path>,
        write_etc: bool,
        output: &mut dyn FnMut(&[u8]),
    ) -> std::result::Result<i64, BuildError> {
        let paths = &self.engine.paths;
        let user = runtime::user::resolve(&step.rootfs, &step.user, &[])
            .map_err(|e| BuildError::Invalid(format!("USER {}: {e}", step.user)))?;
        let hostname = step.id[..12].to_owned();
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let files = [
            (
                "hosts",
                format!("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"),
            ),
            ("hostname", format!("{hostname}\n")),
            ("resolv.conf", host_resolv),
        ];
        let mut mounts = Vec::new();
        for (name, data) in files {
            let p = dir.join(name);
            // On a bridge the network setup wrote them (the step's address in /etc/hosts).
            if write_etc || !p.exists() {
                std::fs::write(&p, data).map_err(runner_err)?;
            }
            mounts.push(BindMount { source: p, destination: format!("/etc/{name}"), readonly: false });
        }
        let mut env = step.env.clone();
        if !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
            env.push(format!("HOSTNAME={hostname}"));
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let cgroup = format!("/berth/{}", step.id);
        // Docker's default seccomp profile, as for any container.
        let seccomp = crate::lifecycle::seccomp_bpf(paths, &api::types::HostConfig::default()).map_err(runner_err)?;
        let spec = RunSpec {
            process: ProcessSpec {
                args: step.argv.clone(),
                env,
                cwd: step.workdir.clone(),
                user: user.user,
                seccomp: seccomp.is_some(),
                ..Default::default()
            },
            hostname,
            rootfs: step.rootfs.clone(),
            readonly_rootfs: false,
            netns: netns.map(Path::to_path_buf),
            cgroups_path: cgroup.clone(),
            resources: Default::default(),
            mounts,
            user_mounts: Vec::new(),
            shm_size: None,
            tmpfs: Vec::new(),
            rlimits: Vec::new(),
            sysctl: Default::default(),
        };
        let bundle = paths.bundle(&step.id);
        spec.write_bundle(&bundle).map_err(runner_err)?;
        let cfg = ShimConfig {
            container_id: step.id.clone(),
            kind: ShimKind::Init { bundle: bundle.clone() },
            runtime_root: paths.runtime_root(),
            socket: paths.shim_socket(&step.id),
            console_socket: paths.console_socket(&step.id),
            log: None,
            log_rotate: None,
            exit_file: bundle.join("exit.json"),
            tty: false,
            stdin: false,
            stdin_once: false,
            cgroup: Some(cgroup),
            seccomp,
            lock: Some(bundle.join(runtime::shim::proto::LOCK_FILE)),
        };
        let exit_file = cfg.exit_file.clone();
        // The container runs on the runtime; its output comes back over a channel to this
        // (blocking) thread, where `output` may block (the progress channel's blocking send
        // must not run inside the runtime).
        let (ftx, frx) = std::sync::mpsc::channel::<Vec<u8>>();
        let job = self.handle.spawn(async move {
            use tokio::io::AsyncReadExt;
            let attach = Request::Attach { stdin: false, stdout: true, stderr: true };
            let launched = crate::shim::launch(&cfg, &bundle.join("shim.json"), &bundle.join("shim.log"), &[attach])
                .await
                .map_err(|e| runner_err(crate::error::EngineError::from(e)))?;
            let mut stream =
                launched.conns.into_iter().next().ok_or_else(|| runner_err("the step's attach was lost"))?;
            let resp = crate::shim::read_response(&mut stream).await.map_err(runner_err)?;
            if let Some(e) = resp.error {
                return Err(runner_err(e));
            }
            // Frames: 8-byte header (stream, 0, 0, 0, big-endian length), then the payload.
            let mut header = [0u8; 8];
            while stream.read_exact(&mut header).await.is_ok() {
                let n = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
                let mut buf = vec![0u8; n];
                if stream.read_exact(&mut buf).await.is_err() {
                    break;
                }
                let _ = ftx.send(buf);
            }
            drop(ftx);
            let exit = match crate::shim::open(&cfg.socket, &Request::Wait).await {
                Ok((_, resp)) => resp.exit,
                Err(_) => None,
            };
            let exit = exit
                .or_else(|| runtime::shim::proto::read_exit_file(&exit_file))
                .ok_or_else(|| runner_err("the step's container ended without an exit status"))?;
            Ok(exit.exit_code as i64)
        });
        while let Ok(b) = frx.recv() {
            output(&b);
        }
        self.handle.block_on(job).map_err(runner_err)?
    }
}

/// A build's messages sent to a channel as the legacy builder's JSON lines.
pub struct ChannelProgress {
    pub tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    pub quiet: bool,
}

impl ChannelProgress {
    pub fn send(&self, v: Value) {
        let mut line = serde_json::to_vec(&v).unwrap_or_default();
        line.extend_from_slice(b"\r\n");
        let _ = self.tx.blocking_send(bytes::Bytes::from(line));
    }
}

impl build::Progress for ChannelProgress {
    fn stream(&self, text: &str) {
        if !self.quiet {
            self.send(json!({"stream": text}));
        }
    }

    fn aux_id(&self, id: &Digest) {
        self.send(json!({"aux": {"ID": id.to_string()}}));
    }

    fn status(&self, id: Option<&str>, status: &str, progress: Option<(u64, u64)>) {
        if self.quiet {
            return;
        }
        let ev = image::remote::Event { id: id.map(str::to_owned), status: status.to_owned(), progress, aux: None };
        self.send(serde_json::to_value(crate::http::distribution::line(ev)).unwrap_or_default());
    }
}

/// `POST /commit` options.
#[derive(Debug, Default, Clone)]
pub struct CommitOptions {
    pub tag: Option<Reference>,
    pub comment: String,
    pub author: String,
    pub changes: Vec<String>,
    pub pause: bool,
}

/// The container's config fields an image keeps.
const IMAGE_KEYS: &[&str] = &[
    "Env",
    "Cmd",
    "Entrypoint",
    "WorkingDir",
    "User",
    "Labels",
    "ExposedPorts",
    "Volumes",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
];

/// Removes what a crashed build left under `<data-root>/builds` (contexts, step mounts and
/// upper directories, RUN bundles): unmounts first, then deletes. Called at daemon start.
pub fn clean_leftovers(data_root: &Path) {
    let dir = data_root.join("builds");
    let prefix = format!("{}/", dir.display());
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for m in mounts {
        let _ = image::snapshot::unmount(Path::new(&m));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Gives a build's context directory back for the next build (at most two wait idle).
pub fn release_context_dir(ctx: &Path) {
    let Some(parent) = ctx.parent() else { return };
    let idle = std::fs::read_dir(parent)
        .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with("idle-ctx-")).count())
        .unwrap_or(0);
    let name = ctx.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if idle >= 2 || std::fs::rename(ctx, parent.join(format!("idle-{name}"))).is_err() {
        let ctx = ctx.to_owned();
        std::thread::spawn(move || {
            let _ = std::fs::remove_dir_all(ctx);
        });
    }
}

impl Engine {
    fn builds_dir(&self) -> PathBuf {
        self.paths.data_root.join("builds")
    }

    /// Runs a build in a context directory (which it consumes).
    pub async fn build(
        self: &Arc<Self>,
        context: PathBuf,
        opts: build::BuildOptions,
        auth: std::collections::HashMap<String, image::remote::Credentials>,
        known: build::fsutil::KnownDigests,
        progress: ChannelProgress,
    ) -> std::result::Result<ImageRecord, BuildError> {
        let engine = self.clone();
        let handle = tokio::runtime::Handle::current();
        let scratch = self.builds_dir().join(format!("scratch-{}", &crate::container::new_id()[..16]));
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&scratch).map_err(runner_err)?;
            let cache = build::cache::Cache::open(&engine.paths.data_root)?;
            let runner = EngineRunner { engine: engine.clone(), handle, auth };
            let b = build::Builder {
                store: &engine.images,
                cache: &cache,
                runner: &runner,
                scratch: scratch.clone(),
                progress: &progress,
                known: &known,
            };
            let t0 = std::time::Instant::now();
            let out = b.build(&context, &opts);
            tracing::debug!("build: steps took {:?}", t0.elapsed());
            // The context dir goes back to the pool; scratch goes after the answer (a crash
            // before either is swept at start).
            release_context_dir(&context);
            std::thread::spawn(move || {
                let _ = std::fs::remove_dir_all(&scratch);
            });
            if let Ok(rec) = &out {
                for t in &opts.tags {
                    engine.image_event("tag", &rec.id.to_string(), &t.familiar());
                }
                if progress.quiet {
                    progress.send(json!({"stream": format!("{}\n", rec.id)}));
                }
            }
            out
        })
        .await
        .map_err(runner_err)?
    }

    /// A private directory for a build context: an idle one from the last builds when there
    /// is one (claimed by an atomic rename), else a new one. Reusing it matters: a context
    /// unpacked over the previous one rewrites files in place, where creating thousands of
    /// files right after deleting as many costs ext4 more than everything else a warm build
    /// does. [`unpack`](crate::http) removes what the new context does not have.
    pub fn new_context_dir(&self) -> Result<PathBuf> {
        let dir = self.builds_dir();
        let d = dir.join(format!("ctx-{}", &crate::container::new_id()[..16]));
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with("idle-ctx-") && std::fs::rename(e.path(), &d).is_ok() {
                    return Ok(d);
                }
            }
        }
        std::fs::create_dir_all(&d).map_err(|e| EngineError::Internal(format!("create `{}`: {e}", d.display())))?;
        Ok(d)
    }

    /// `GET /containers/{id}/changes`.
    pub async fn changes(&self, c: &Container) -> Result<Vec<image::diff::Change>> {
        let rec = c.snapshot();
        let images = self.images.clone();
        let upper = self.paths.container_dir(&c.id).join("upper");
        tokio::task::spawn_blocking(move || {
            if !upper.exists() {
                return Ok(Vec::new());
            }
            let img = images.resolve(&rec.image)?;
            let lowers = images.layer_dirs(&img)?;
            Ok(image::diff::changes(&upper, &lowers)?)
        })
        .await
        .map_err(EngineError::internal)?
    }

    /// `POST /commit`: the container's changes as a new layer on its image, its config as
    /// the image's.
    pub async fn commit(self: &Arc<Self>, c: &Arc<Container>, o: CommitOptions) -> Result<Digest> {
        let paused = o.pause && c.status() == Status::Running;
        if paused {
            self.pause(c, true).await?;
        }
        let rec = c.snapshot();
        let images = self.images.clone();
        let upper = self.paths.container_dir(&c.id).join("upper");
        let id = c.id.clone();
        let out = tokio::task::spawn_blocking(move || -> Result<Digest> {
            let img = images.resolve(&rec.image)?;
            let lowers = images.layer_dirs(&img)?;
            let changed: Vec<String> = if upper.exists() {
                image::diff::changes(&upper, &lowers)?.into_iter().map(|ch| ch.path).collect()
            } else {
                Vec::new()
            };
            let keep = |rel: &Path| {
                let abs = format!("/{}", rel.display());
                changed.iter().any(|p| *p == abs || p.starts_with(&format!("{abs}/")))
            };
            let parent_chain = img.layers.last().map(|l| l.chain_id.clone());
            let layer = if changed.is_empty() {
                None
            } else {
                images.layer_from_upper_filtered(parent_chain.as_ref(), &upper, &keep)?
            };
            let mut config = img.config.clone();
            let cfg = serde_json::to_value(&rec.config).map_err(EngineError::internal)?;
            let mut run = json!({});
            for k in IMAGE_KEYS {
                if let Some(v) = cfg.get(*k).filter(|v| !v.is_null()) {
                    run[*k] = v.clone();
                }
            }
            for ch in &o.changes {
                for line in ch.lines().filter(|l| !l.trim().is_empty()) {
                    image::store::apply_change(&mut run, line)?;
                }
            }
            let now = crate::lifecycle::now();
            let created_by: Vec<String> = std::iter::once(rec.path.clone()).chain(rec.args.iter().cloned()).collect();
            let mut hist = json!({"created": now, "created_by": created_by.join(" ")});
            if !o.comment.is_empty() {
                hist["comment"] = json!(o.comment);
            }
            if !o.author.is_empty() {
                hist["author"] = json!(o.author);
                config["author"] = json!(o.author);
            }
            let mut layers = img.layers.clone();
            match layer {
                Some(l) => layers.push(l),
                None => hist["empty_layer"] = json!(true),
            }
            let mut history = config.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
            history.push(hist);
            config["created"] = json!(now);
            config["config"] = run;
            config["container"] = json!(id);
            config["history"] = Value::Array(history);
            config["rootfs"] =
                json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()});
            let new = images.create(config, layers, Some(img.id.clone()))?;
            if let Some(t) = &o.tag {
                images.tag(&new.id, t)?;
            }
            Ok(new.id)
        })
        .await
        .map_err(EngineError::internal);
        if paused {
            let _ = self.pause(c, false).await;
        }
        out?
    }

    /// `POST /build/prune`: removes the images only the build cache holds (untagged, unused
    /// by containers) and forgets every cache entry; returns the ids and bytes reclaimed.
    pub async fn prune_build_cache(self: &Arc<Self>) -> Result<(Vec<String>, u64)> {
        let e = self.clone();
        tokio::task::spawn_blocking(move || -> Result<(Vec<String>, u64)> {
            let cache =
                build::cache::Cache::open(&e.paths.data_root).map_err(|err| EngineError::Internal(err.to_string()))?;
            let ids = cache.images().map_err(|err| EngineError::Internal(err.to_string()))?;
            let all = e.images.all()?;
            let mut deleted = Vec::new();
            let mut reclaimed = 0u64;
            // Children first, so parents become removable.
            let mut order: Vec<&ImageRecord> = all.iter().filter(|r| ids.contains(&r.id)).collect();
            order.sort_by_key(|r| {
                std::cmp::Reverse(r.config.get("history").and_then(Value::as_array).map_or(0, Vec::len))
            });
            for rec in order {
                let _ = cache.forget(&rec.id);
                if !e.images.tags_of(&rec.id)?.is_empty() || e.image_user(&rec.id.to_string()).is_some() {
                    continue;
                }
                let before: Vec<(Digest, u64)> =
                    rec.layers.iter().map(|l| (l.chain_id.clone(), e.images.snapshots().size(&l.chain_id))).collect();
                let none = |_: &Digest| None;
                if e.images.remove(&rec.id.to_string(), false, &none).is_ok() {
                    deleted.push(rec.id.to_string());
                    for (chain, size) in before {
                        if !e.images.snapshots().exists(&chain) {
                            reclaimed += size;
                        }
                    }
                }
            }
            Ok((deleted, reclaimed))
        })
        .await
        .map_err(EngineError::internal)?
    }
}
