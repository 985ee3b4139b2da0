//! The engine: every manager in one place, wired once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use image::store::ImageStore;
use rusqlite::{Connection, params};

use crate::container::{Container, Record, Status};
use crate::error::{EngineError, Result};
use crate::exec::Exec;

/// Where the daemon keeps things.
#[derive(Debug, Clone)]
pub struct Paths {
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
}

impl Paths {
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(id)
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.exec_root.join("runtime")
    }
    /// Unix socket paths are limited to 108 bytes: sockets and namespaces live under the
    /// exec root, named by the first 16 hex characters of the id.
    pub fn shim_socket(&self, id: &str) -> PathBuf {
        self.exec_root.join("s").join(format!("{}.sock", &id[..16]))
    }
    pub fn console_socket(&self, id: &str) -> PathBuf {
        self.exec_root.join("s").join(format!("{}.con", &id[..16]))
    }
    pub fn netns(&self, id: &str) -> PathBuf {
        self.exec_root.join("netns").join(&id[..16])
    }
    /// Network namespaces made ahead of time (network::pool), not yet any container's.
    pub fn netns_pool(&self) -> PathBuf {
        self.exec_root.join("netns-pool")
    }
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }
    /// A container's runtime files: the OCI bundle's `config.json`, the shim's configuration,
    /// log and lock, the exit status, exec sessions' files and the `/etc` files (see
    /// [`Self::etc_dir`]). Made at the first start, removed with the container. On the exec
    /// root (a tmpfs under /run), as containerd keeps its bundles: nothing here is worth a disk
    /// write, and the data root's file system is spared creating and deleting half a dozen
    /// inodes per start.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.exec_root.join("bundles").join(id)
    }
    /// The directory of the container's `/etc/hosts`, `/etc/hostname` and `/etc/resolv.conf`,
    /// written at each start: its bundle, where podman keeps them too (its run directory), so
    /// that a start does not create three more inodes on the data root's file system, nor its
    /// removal delete them. `cp` from a stopped container still finds them, until a reboot
    /// empties the exec root (then it gets the image's files, as a container never started).
    pub fn etc_dir(&self, id: &str) -> PathBuf {
        self.bundle(id)
    }
    /// The container's `/etc` files bound from [`Self::etc_dir`]: each one's path in the
    /// container and on the host.
    pub fn etc_mounts(&self, id: &str) -> impl Iterator<Item = (String, PathBuf)> {
        let dir = self.etc_dir(id);
        ["resolv.conf", "hostname", "hosts"].into_iter().map(move |f| (format!("/etc/{f}"), dir.join(f)))
    }
    pub fn exit_file(&self, id: &str) -> PathBuf {
        self.bundle(id).join("exit.json")
    }
    pub fn rootfs(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("rootfs")
    }
    /// Where a removed container's directory goes until it is deleted in the background.
    pub fn removing_dir(&self, id: &str) -> PathBuf {
        self.data_root.join("containers").join(format!("{REMOVING_PREFIX}{id}"))
    }
}

/// Whether `id` is one berth makes for a container or a build step: 64 lowercase hex digits.
pub fn is_container_id(id: &str) -> bool {
    id.len() == 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The name prefix of container directories being deleted (see [`Paths::removing_dir`]).
pub const REMOVING_PREFIX: &str = ".removing-";

/// Removes what is left of a container once its record is gone: unmounts its rootfs (in
/// `dir`, wherever that directory was moved) and removes its network namespace, waits for its
/// shim to finish removing the runtime's state (the lock in its bundle), deletes what the
/// runtime left, the cgroups, the bundle and the directory.
/// The directory becomes one of `spares` when the pool wants one (see [`crate::spare`])
/// instead of being deleted.
pub fn remove_container_files(paths: &Paths, spares: &crate::spare::SpareDirs, id: &str, dir: &Path) -> Result<()> {
    // A `.removing-*` name found at start is not checked: an id too short to name the exec
    // root's files has none there.
    if id.len() >= 16 {
        unpin_container(paths, id, &dir.join("rootfs"));
    } else if let Err(e) = image::snapshot::unmount(&dir.join("rootfs")) {
        tracing::warn!("{e}");
    }
    // Only an id berth made names a bundle (a `.removing-*` name found at start is not
    // trusted to stay inside the exec root).
    let bundle = is_container_id(id).then(|| paths.bundle(id));
    let lock = bundle
        .as_ref()
        .map(|b| {
            runtime::shim::proto::lock_container(
                &b.join(runtime::shim::proto::LOCK_FILE),
                std::time::Duration::from_secs(10),
            )
        })
        .transpose()
        .map(Option::flatten);
    // The shim is gone (or there was none): nothing of the container's uses its directory.
    let shim_gone = lock.is_ok();
    let _lock = lock.unwrap_or_else(|e| {
        tracing::warn!("remove container {id}: {e}");
        None
    });
    let runtime_root = paths.runtime_root();
    let rt = runtime::libct::Libcontainer::new(&runtime_root);
    let _ = runtime::Runtime::delete(&rt, id, true);
    // State the runtime could not read (a crash mid-write) goes too: no record needs it.
    let _ = std::fs::remove_dir_all(runtime_root.join(id));
    // Whatever the runtime could not remove of the container's cgroups goes now.
    runtime::cgroups::remove_tree(&format!("/berth/{id}"));
    if let Some(b) = &bundle {
        let _ = std::fs::remove_dir_all(b);
    }
    if shim_gone && bundle.is_some() && spares.keep(dir) {
        return Ok(());
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(EngineError::Internal(format!("remove `{}`: {e}", dir.display()))),
    }
}

/// Undoes what pins a stopped container on the host: unmounts its `rootfs` (wherever its
/// directory is now), removes its network namespace and its shim's socket.
pub(crate) fn unpin_container(paths: &Paths, id: &str, rootfs: &Path) {
    if let Err(e) = image::snapshot::unmount(rootfs) {
        tracing::warn!("{e}");
    }
    if let Err(e) = network::remove_netns(&paths.netns(id)) {
        tracing::warn!("{e}");
    }
    let _ = std::fs::remove_file(paths.shim_socket(id));
}

/// Daemon settings the engine acts on (from daemon.json and flags).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The init run as PID 1 with `--init` (Docker's `init-path`); found on PATH when unset.
    pub init_path: Option<PathBuf>,
    /// Registries: insecure ones, mirrors, CA certificates, parallel transfers.
    pub registry: image::remote::RegistryConfig,
    pub net: crate::network::NetSettings,
    /// daemon.json `log-driver` and `log-opts`: the defaults of new containers.
    pub log_driver: Option<String>,
    pub log_opts: std::collections::BTreeMap<String, String>,
}

pub struct Engine {
    pub paths: Paths,
    pub settings: Settings,
    pub images: Arc<ImageStore>,
    /// The registry client's shared state (HTTP clients, tokens).
    pub registries: Arc<image::remote::Registries>,
    pub net: Arc<crate::network::Networks>,
    pub volumes: Arc<crate::volumes::Volumes>,
    db: Mutex<Connection>,
    containers: RwLock<HashMap<String, Arc<Container>>>,
    pub(crate) execs: Mutex<HashMap<String, Arc<Exec>>>,
    pub events: crate::events::Events,
    pub started: Instant,
    /// Work that outlives the request that started it (a removed container's files): the
    /// daemon waits for it before it exits.
    pub(crate) background: tokio_util::task::TaskTracker,
    /// Container directories made ahead of time, or kept from removed containers.
    pub(crate) spares: Arc<crate::spare::SpareDirs>,
}

impl Engine {
    /// Opens the stores under the data root and reconnects to running containers' shims.
    pub async fn open(paths: Paths, settings: Settings) -> Result<Arc<Self>> {
        for d in [
            paths.data_root.join("containers"),
            paths.exec_root.join("s"),
            paths.exec_root.join("netns"),
            paths.runtime_root(),
        ] {
            std::fs::create_dir_all(&d).map_err(|e| EngineError::Internal(format!("create `{}`: {e}", d.display())))?;
        }
        crate::build::clean_leftovers(&paths.data_root);
        let root = paths.data_root.clone();
        let images =
            tokio::task::spawn_blocking(move || ImageStore::open(&root)).await.map_err(EngineError::internal)??;
        let volumes = Arc::new(crate::volumes::Volumes::open(&paths.data_root)?);
        let db = image::store::open_db(&paths.data_root)?;
        db.execute_batch("CREATE TABLE IF NOT EXISTS containers (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL);")?;
        let records: Vec<(String, String)> = {
            let mut st = db.prepare("SELECT id, record FROM containers")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let registries = Arc::new(image::remote::Registries::new(settings.registry.clone()));
        let (root, ns, rt) = (paths.data_root.clone(), settings.net.clone(), tokio::runtime::Handle::current());
        let pool = paths.netns_pool();
        let net = tokio::task::spawn_blocking(move || crate::network::Networks::open(&root, pool, ns, rt))
            .await
            .map_err(EngineError::internal)??;
        let containers = paths.data_root.join("containers");
        let spares = tokio::task::spawn_blocking(move || crate::spare::SpareDirs::open(containers))
            .await
            .map_err(EngineError::internal)?;
        let events = crate::events::Events::open(&paths.data_root);
        let engine = Arc::new(Engine {
            paths,
            settings,
            registries,
            images: Arc::new(images),
            net,
            volumes,
            db: Mutex::new(db),
            containers: RwLock::new(HashMap::new()),
            execs: Mutex::new(HashMap::new()),
            events,
            started: Instant::now(),
            background: tokio_util::task::TaskTracker::new(),
            spares,
        });
        for (id, text) in records {
            match serde_json::from_str::<Record>(&text) {
                Ok(rec) => {
                    let c = Arc::new(Container::new(rec));
                    engine.containers_mut().insert(c.id.clone(), c);
                }
                Err(e) => tracing::error!("skipping corrupt container record {id}: {e}"),
            }
        }
        let all = engine.list();
        for c in all {
            engine.restore(c).await;
        }
        engine.sweep_at_start().await;
        let running: Vec<(String, Record)> =
            engine.list().iter().filter(|c| c.status().is_live()).map(|c| (c.id.clone(), c.snapshot())).collect();
        let (net, paths) = (engine.net.clone(), engine.paths.clone());
        tokio::task::spawn_blocking(move || net.restore(&running, &paths)).await.map_err(EngineError::internal)?;
        engine.restart_on_boot().await;
        Ok(engine)
    }

    /// Reattaches to a container's shim after a daemon restart, or records how it ended.
    async fn restore(self: &Arc<Self>, c: Arc<Container>) {
        let status = c.status();
        if status == Status::Removing {
            match self.finish_remove(&c).await {
                Ok(gone) => drop(gone),
                Err(e) => tracing::error!("finish removing {}: {e}", c.id),
            }
            return;
        }
        if status == Status::Restarting {
            // The daemon went down during a back-off: the boot pass decides again.
            c.lock().state.status = Status::Exited;
            let _ = self.save(&c);
            return;
        }
        if !status.is_live() {
            return;
        }
        let socket = self.paths.shim_socket(&c.id);
        match crate::shim::call(&socket, &runtime::shim::proto::Request::State).await {
            Ok(resp) if resp.exit.is_none() => {
                tracing::info!("reconnected to container {}", c.short_id());
                self.monitor(c);
            }
            Ok(resp) => {
                let exit = resp.exit.unwrap_or_else(crate::lifecycle::lost_exit);
                self.on_exit(&c, exit).await;
            }
            Err(_) => {
                let exit = runtime::shim::proto::read_exit_file(&self.paths.exit_file(&c.id))
                    .unwrap_or_else(crate::lifecycle::lost_exit);
                self.on_exit(&c, exit).await;
            }
        }
    }

    fn containers_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.write().unwrap_or_else(|p| p.into_inner())
    }

    fn containers_ref(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn list(&self) -> Vec<Arc<Container>> {
        self.containers_ref().values().cloned().collect()
    }

    /// Finds a container by id, name or unique id prefix.
    pub fn lookup(&self, s: &str) -> Result<Arc<Container>> {
        let map = self.containers_ref();
        if let Some(c) = map.get(s) {
            return Ok(c.clone());
        }
        let name = s.strip_prefix('/').unwrap_or(s);
        if let Some(c) = map.values().find(|c| c.lock().state.name == name) {
            return Ok(c.clone());
        }
        if !s.is_empty() {
            let matches: Vec<_> = map.values().filter(|c| c.id.starts_with(s)).collect();
            if matches.len() == 1 {
                return Ok(matches[0].clone());
            }
            if matches.len() > 1 {
                return Err(EngineError::BadRequest(format!("multiple IDs found with provided prefix: {s}")));
            }
        }
        Err(EngineError::NoSuchContainer(s.to_owned()))
    }

    pub fn name_in_use(&self, name: &str) -> Option<String> {
        self.containers_ref().values().find(|c| c.lock().state.name == name).map(|c| c.id.clone())
    }

    /// Adds a container if its name is free, atomically (two creates cannot take one name).
    pub(crate) fn insert_unique(&self, c: Arc<Container>) -> Result<()> {
        let mut map = self.containers_mut();
        let name = c.name();
        if let Some(other) = map.values().find(|o| o.lock().state.name == name) {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{name}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                other.id
            )));
        }
        map.insert(c.id.clone(), c);
        Ok(())
    }

    pub(crate) fn forget(&self, id: &str) {
        self.containers_mut().remove(id);
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes a container's record.
    pub fn save(&self, c: &Container) -> Result<()> {
        let rec = c.snapshot();
        let text = serde_json::to_string(&rec).map_err(EngineError::internal)?;
        self.db()
            .prepare_cached(
                "INSERT INTO containers (id, name, record) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, record = excluded.record",
            )?
            .execute(params![rec.id, rec.state.name, text])?;
        Ok(())
    }

    pub fn delete_record(&self, id: &str) -> Result<()> {
        self.db().prepare_cached("DELETE FROM containers WHERE id = ?1")?.execute([id])?;
        Ok(())
    }

    /// The id of a container that uses `image`, and whether it runs.
    pub fn image_user(&self, image: &str) -> Option<(String, bool)> {
        let map = self.containers_ref();
        let users: Vec<(String, bool)> =
            map.values().filter(|c| c.lock().image == image).map(|c| (c.id.clone(), c.status().is_live())).collect();
        // A running user is the stronger reason to refuse, so it is the one named.
        users.iter().find(|(_, running)| *running).or(users.first()).cloned()
    }

    /// The init binary for `--init`: `init-path`, else docker-init or tini-static.
    pub fn init_binary(&self) -> Result<PathBuf> {
        if let Some(p) = &self.settings.init_path {
            return if p.is_file() {
                Ok(p.clone())
            } else {
                Err(EngineError::BadRequest(format!("--init: init-path `{}` does not exist", p.display())))
            };
        }
        [
            "/usr/bin/docker-init",
            "/usr/libexec/docker/docker-init",
            "/usr/bin/tini-static",
            "/usr/local/bin/docker-init",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            EngineError::BadRequest(
                "--init: no init binary found (install Debian's tini, or set init-path in daemon.json)".into(),
            )
        })
    }

    pub fn data_root(&self) -> &Path {
        &self.paths.data_root
    }
}

impl Engine {
    /// Emits a container event with Docker's attributes: the container's labels, `image` (as
    /// the user named it) and `name`, plus `extra`.
    pub fn container_event(&self, c: &Container, action: &str, extra: Vec<(String, String)>) {
        let mut attrs: Vec<(String, String)> = {
            let r = c.lock();
            let mut a: Vec<(String, String)> = r.config.labels.clone().into_iter().collect();
            a.push(("image".into(), r.image_name.clone()));
            a.push(("name".into(), r.state.name.clone()));
            a
        };
        attrs.extend(extra);
        self.events.emit("container", action, &c.id, attrs);
    }

    /// Emits an image event; `name` is the reference acted on (or the id).
    pub fn image_event(&self, action: &str, id: &str, name: &str) {
        self.events.emit("image", action, id, vec![("name".into(), name.to_owned())]);
    }
}
