//! Volumes and a container's mounts.
//!
//! A volume of the `local` driver is a directory, `volumes/<name>/_data`, recorded in SQLite
//! (`volumes` table). Driver options follow Docker's local driver: `type=tmpfs` (with `o=`
//! mount options) mounts a tmpfs on `_data` while a container uses it; `o=bind` with
//! `device=/path` makes `_data` a bind mount of that host directory.
//!
//! A container's mounts are decided at create ([`Engine::prepare_mounts`]): `-v`/`Binds`,
//! `--mount`/`Mounts`, `--volumes-from`, and an anonymous volume for every `VOLUME` of the
//! image not covered by those. They are kept in the container's record as [`MountPoint`]s and
//! turned into OCI mounts at start ([`setup_mounts`]), when a new volume mounted over image
//! content is first filled with that content, as Docker does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use api::types::{ContainerConfig, HostConfig};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::{EngineError, Result};

pub const ANON_LABEL: &str = "com.docker.volume.anonymous";

/// A volume as recorded.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Volume {
    pub name: String,
    pub driver: String,
    pub created_at: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

impl Volume {
    pub fn anonymous(&self) -> bool {
        self.labels.contains_key(ANON_LABEL)
    }
}

/// One mount of a container, as Docker shows it in `Mounts`.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct MountPoint {
    /// `bind`, `volume` or `tmpfs`.
    pub kind: String,
    /// The volume's name (volumes only).
    #[serde(default)]
    pub name: String,
    /// The host path (binds), the volume's `_data` (volumes); empty for tmpfs.
    pub source: PathBuf,
    pub destination: String,
    pub rw: bool,
    /// What the user wrote after the paths of `-v` (`ro`, `z`, `nocopy`…).
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub propagation: String,
    /// Do not fill a new volume with the image's content.
    #[serde(default)]
    pub nocopy: bool,
    /// tmpfs options (`size=…,mode=…`).
    #[serde(default)]
    pub tmpfs_options: String,
}

impl MountPoint {
    /// The entry of `Mounts` in container inspect.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind,
            "Source": self.source,
            "Destination": self.destination,
            "Mode": self.mode,
            "RW": self.rw,
            "Propagation": self.propagation,
        });
        if self.kind == "volume" {
            v["Name"] = json!(self.name);
            v["Driver"] = json!("local");
        }
        v
    }
}

/// The volume store.
pub struct Volumes {
    root: PathBuf,
    db: Mutex<Connection>,
}

fn valid_volume_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        && (b.len() >= 2)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Volumes {
    pub fn open(data_root: &Path) -> Result<Self> {
        let root = data_root.join("volumes");
        std::fs::create_dir_all(&root)
            .map_err(|e| EngineError::Internal(format!("create `{}`: {e}", root.display())))?;
        let db = image::store::open_db(data_root)?;
        db.execute_batch("CREATE TABLE IF NOT EXISTS volumes (name TEXT PRIMARY KEY, record TEXT NOT NULL);")?;
        let v = Self { root, db: Mutex::new(db) };
        v.clean();
        Ok(v)
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Where containers see the volume's files.
    pub fn data(&self, name: &str) -> PathBuf {
        self.dir(name).join("_data")
    }

    /// Removes what a crash left: directories without a record, and the unmount of any
    /// tmpfs/bind volume still mounted (no container runs yet at daemon start … those that do
    /// are found again when they are reconnected).
    fn clean(&self) {
        let known: Vec<String> = self.all().unwrap_or_default().into_iter().map(|v| v.name).collect();
        if let Ok(rd) = std::fs::read_dir(&self.root) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&n) && !is_mountpoint(&e.path().join("_data")) {
                    tracing::info!("removing volume directory `{}` without a record", e.path().display());
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }

    pub fn get(&self, name: &str) -> Result<Option<Volume>> {
        let t: Option<String> = self
            .db()
            .prepare_cached("SELECT record FROM volumes WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        t.map(|t| serde_json::from_str(&t).map_err(EngineError::internal)).transpose()
    }

    pub fn must_get(&self, name: &str) -> Result<Volume> {
        self.get(name)?.ok_or_else(|| EngineError::NoSuchVolume(name.to_owned()))
    }

    pub fn all(&self) -> Result<Vec<Volume>> {
        let rows: Vec<String> = {
            let db = self.db();
            let mut st = db.prepare_cached("SELECT record FROM volumes ORDER BY name")?;
            st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        Ok(rows.iter().filter_map(|t| serde_json::from_str(t).ok()).collect())
    }

    /// Creates a volume, or returns the existing one of that name (as Docker does).
    pub fn create(
        &self,
        name: Option<&str>,
        driver: &str,
        options: BTreeMap<String, String>,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume> {
        if !driver.is_empty() && driver != "local" {
            return Err(EngineError::NotFound(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let name = match name.filter(|n| !n.is_empty()) {
            Some(n) => {
                if !valid_volume_name(n) {
                    return Err(EngineError::BadRequest(format!(
                        "create {n}: \"{n}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
                    )));
                }
                if let Some(v) = self.get(n)? {
                    return Ok(v);
                }
                n.to_owned()
            }
            None => crate::container::new_id(),
        };
        check_options(&name, &options)?;
        let v = Volume { name: name.clone(), driver: "local".into(), created_at: now(), labels, options };
        let data = self.data(&name);
        std::fs::create_dir_all(&data)
            .map_err(|e| EngineError::Internal(format!("create volume `{}`: {e}", data.display())))?;
        let text = serde_json::to_string(&v).map_err(EngineError::internal)?;
        if let Err(e) = self
            .db()
            .prepare_cached("INSERT INTO volumes (name, record) VALUES (?1, ?2)")
            .and_then(|mut st| st.execute(params![name, text]))
        {
            let _ = std::fs::remove_dir_all(self.dir(&name));
            return Err(e.into());
        }
        Ok(v)
    }

    /// Removes a volume (the caller checked it is unused) and its data.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _ = self.must_get(name)?;
        let data = self.data(name);
        if is_mountpoint(&data) {
            image::snapshot::unmount(&data)?;
        }
        // Rename first: a crash halfway leaves no half volume under a live name.
        let trash = self.root.join(format!("{name}.removing"));
        let dir = self.dir(name);
        self.db().prepare_cached("DELETE FROM volumes WHERE name = ?1")?.execute([name])?;
        if std::fs::rename(&dir, &trash).is_ok() {
            let _ = std::fs::remove_dir_all(&trash);
        } else {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    }

    /// Makes a volume with driver options ready to be bind-mounted into a container.
    pub fn mount(&self, v: &Volume) -> Result<()> {
        let data = self.data(&v.name);
        let Some(kind) = v.options.get("type").filter(|t| !t.is_empty()) else {
            if let Some(dev) = v.options.get("device") {
                return self.mount_bind(&data, Path::new(dev));
            }
            return Ok(());
        };
        if is_mountpoint(&data) {
            return Ok(());
        }
        std::fs::create_dir_all(&data)
            .map_err(|e| EngineError::Internal(format!("create `{}`: {e}", data.display())))?;
        let o = v.options.get("o").cloned().unwrap_or_default();
        let opts: Vec<&str> = o.split(',').filter(|s| !s.is_empty() && *s != "bind" && *s != "rbind").collect();
        if kind == "none" || o.split(',').any(|s| s == "bind" || s == "rbind") {
            let dev = v.options.get("device").cloned().unwrap_or_default();
            return self.mount_bind(&data, Path::new(&dev));
        }
        let device = v.options.get("device").cloned().unwrap_or_else(|| kind.clone());
        nix::mount::mount(
            Some(device.as_str()),
            &data,
            Some(kind.as_str()),
            nix::mount::MsFlags::empty(),
            Some(opts.join(",").as_str()),
        )
        .map_err(|e| EngineError::Internal(format!("mount volume `{}` ({kind}): {e}", v.name)))
    }

    fn mount_bind(&self, data: &Path, dev: &Path) -> Result<()> {
        if is_mountpoint(data) {
            return Ok(());
        }
        if !dev.is_dir() {
            return Err(EngineError::BadRequest(format!(
                "error while mounting volume '{}': failed to mount local volume: no such file or directory `{}`",
                data.display(),
                dev.display()
            )));
        }
        nix::mount::mount(
            Some(dev),
            data,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| EngineError::Internal(format!("bind `{}` on `{}`: {e}", dev.display(), data.display())))
    }

    /// Undoes [`Volumes::mount`] for a volume no running container uses any more.
    pub fn unmount(&self, name: &str) {
        let data = self.data(name);
        if is_mountpoint(&data)
            && let Err(e) = image::snapshot::unmount(&data)
        {
            tracing::warn!("unmount volume {name}: {e}");
        }
    }

    /// Bytes on disk of a volume (tmpfs and bind volumes are not counted: -1, as Docker does
    /// for volumes it cannot size).
    pub fn usage(&self, v: &Volume) -> i64 {
        if v.options.contains_key("type") || v.options.contains_key("device") {
            return -1;
        }
        image::usage::disk_usage(&self.dir(&v.name)) as i64
    }

    /// The Engine API's JSON for a volume.
    pub fn to_json(&self, v: &Volume) -> Value {
        json!({
            "CreatedAt": v.created_at,
            "Driver": v.driver,
            "Labels": if v.labels.is_empty() { Value::Null } else { json!(v.labels) },
            "Mountpoint": self.data(&v.name),
            "Name": v.name,
            "Options": if v.options.is_empty() { Value::Null } else { json!(v.options) },
            "Scope": "local",
        })
    }
}

/// Whether `p` is a mount point, from /proc/self/mountinfo (a bind mount of a directory of the
/// same filesystem has the same device as its parent, so comparing devices is not enough).
pub fn is_mountpoint(p: &Path) -> bool {
    let want = p.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| m.replace("\\040", " ") == want)
}

/// Refuses local driver options Docker's local driver refuses.
fn check_options(name: &str, o: &BTreeMap<String, String>) -> Result<()> {
    for k in o.keys() {
        if !matches!(k.as_str(), "type" | "o" | "device" | "size") {
            return Err(EngineError::BadRequest(format!(
                "create {name}: invalid option key: \"{k}\" (the local driver accepts type, o, device)"
            )));
        }
    }
    let binds = o.get("o").is_some_and(|o| o.split(',').any(|s| s == "bind" || s == "rbind"));
    if binds {
        let dev = o.get("device").map(String::as_str).unwrap_or("");
        if !Path::new(dev).is_absolute() || !Path::new(dev).is_dir() {
            return Err(EngineError::BadRequest(format!(
                "create {name}: failed to mount local volume: device `{dev}` is not an existing absolute directory"
            )));
        }
    } else if o.contains_key("device") && !o.contains_key("type") {
        return Err(EngineError::BadRequest(format!("create {name}: missing \"type\" option for device")));
    }
    Ok(())
}

/// What a user asked to mount, before volumes exist.
#[derive(Debug, Clone, Default)]
struct MountRequest {
    kind: String,
    /// Host path (bind), volume name (volume; empty for anonymous).
    source: String,
    destination: String,
    rw: bool,
    mode: String,
    propagation: String,
    nocopy: bool,
    tmpfs_options: String,
    /// `--mount type=bind` refuses a missing source; `-v` creates it.
    create_source: bool,
    volume_options: BTreeMap<String, String>,
    volume_labels: BTreeMap<String, String>,
}

fn bad_spec(spec: &str) -> EngineError {
    EngineError::BadRequest(format!("invalid volume specification: '{spec}'"))
}

fn clean_dest(d: &str) -> String {
    let p = Path::new(d).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect::<PathBuf>();
    let s = p.display().to_string();
    if s.len() > 1 { s.trim_end_matches('/').to_owned() } else { s }
}

/// `-v` / `Binds`: `/host:/ctr[:opts]`, `name:/ctr[:opts]`, or `/ctr` (anonymous).
fn parse_bind(spec: &str) -> Result<MountRequest> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(bad_spec(spec)),
    };
    if dst.is_empty() || !dst.starts_with('/') {
        return Err(EngineError::BadRequest(format!(
            "invalid volume specification: '{spec}': invalid mount config: mount path must be absolute"
        )));
    }
    if dst == "/" {
        return Err(EngineError::BadRequest(format!(
            "invalid volume specification: '{spec}': destination can't be '/'"
        )));
    }
    let mut m = MountRequest { destination: clean_dest(dst), rw: true, mode: mode.to_owned(), ..Default::default() };
    for o in mode.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.rw = false,
            "rw" => m.rw = true,
            "z" | "Z" => {}
            "nocopy" => m.nocopy = true,
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => m.propagation = o.to_owned(),
            _ => return Err(bad_spec(spec)),
        }
    }
    if src.starts_with('/') {
        m.kind = "bind".into();
        m.source = src.to_owned();
        m.create_source = true;
        if m.propagation.is_empty() {
            m.propagation = "rprivate".into();
        }
        if m.nocopy {
            return Err(bad_spec(spec));
        }
    } else {
        m.kind = "volume".into();
        if !src.is_empty() && !valid_volume_name(src) {
            return Err(EngineError::BadRequest(format!(
                "create {src}: \"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"
            )));
        }
        m.source = src.to_owned();
        if mode.is_empty() {
            m.mode = "z".into();
        }
    }
    Ok(m)
}

/// `--mount` / `HostConfig.Mounts` (the API's JSON form).
fn parse_api_mount(v: &Value) -> Result<MountRequest> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let kind = s("Type");
    let target = s("Target");
    let bad = |m: &str| EngineError::BadRequest(format!("invalid mount config for type \"{kind}\": {m}"));
    if target.is_empty() {
        return Err(bad("field Target must not be empty"));
    }
    if !target.starts_with('/') {
        return Err(bad(&format!("invalid mount path: '{target}' mount path must be absolute")));
    }
    let ro = v.get("ReadOnly").and_then(Value::as_bool).unwrap_or(false);
    let mut m = MountRequest { kind: kind.clone(), destination: clean_dest(&target), rw: !ro, ..Default::default() };
    match kind.as_str() {
        "bind" => {
            let src = s("Source");
            if src.is_empty() {
                return Err(bad("field Source must not be empty"));
            }
            if !src.starts_with('/') {
                return Err(bad(&format!("invalid mount path: '{src}' mount path must be absolute")));
            }
            if !Path::new(&src).exists() {
                return Err(bad(&format!("bind source path does not exist: {src}")));
            }
            m.source = src;
            m.propagation = v
                .pointer("/BindOptions/Propagation")
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .unwrap_or("rprivate")
                .to_owned();
        }
        "volume" => {
            m.source = s("Source");
            if !m.source.is_empty() && !valid_volume_name(&m.source) {
                return Err(bad(&format!("invalid volume name: {}", m.source)));
            }
            m.nocopy = v.pointer("/VolumeOptions/NoCopy").and_then(Value::as_bool).unwrap_or(false);
            if let Some(o) = v.pointer("/VolumeOptions/DriverConfig/Options").and_then(Value::as_object) {
                m.volume_options =
                    o.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))).collect();
            }
            if let Some(o) = v.pointer("/VolumeOptions/Labels").and_then(Value::as_object) {
                m.volume_labels = o.iter().filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned()))).collect();
            }
        }
        "tmpfs" => {
            if !s("Source").is_empty() {
                return Err(bad("field Source must not be specified"));
            }
            let mut opts = Vec::new();
            if let Some(size) = v.pointer("/TmpfsOptions/SizeBytes").and_then(Value::as_i64).filter(|s| *s > 0) {
                opts.push(format!("size={}k", size / 1024));
            }
            if let Some(mode) = v.pointer("/TmpfsOptions/Mode").and_then(Value::as_u64).filter(|m| *m > 0) {
                opts.push(format!("mode={mode:o}"));
            }
            m.tmpfs_options = opts.join(",");
        }
        "" => return Err(EngineError::BadRequest("invalid mount config: mount type must be specified".into())),
        other => {
            return Err(EngineError::BadRequest(format!(
                "invalid mount config for type \"{other}\": mount type unknown"
            )));
        }
    }
    Ok(m)
}

impl Engine {
    /// Decides a new container's mounts and creates the volumes they name.
    pub(crate) fn prepare_mounts(&self, cfg: &ContainerConfig, host: &HostConfig) -> Result<Vec<MountPoint>> {
        let mut reqs = Vec::new();
        for b in &host.binds {
            reqs.push(parse_bind(b)?);
        }
        if let Some(list) = host.extra.get("Mounts").and_then(Value::as_array) {
            for m in list {
                reqs.push(parse_api_mount(m)?);
            }
        }
        for r in &reqs {
            if reqs.iter().filter(|o| o.destination == r.destination).count() > 1 {
                return Err(EngineError::BadRequest(format!("Duplicate mount point: {}", r.destination)));
            }
        }
        let mut out: Vec<MountPoint> = Vec::new();
        let mut created: Vec<String> = Vec::new();
        let result = (|| -> Result<()> {
            for r in reqs {
                out.push(self.realise(r, &mut created)?);
            }
            // --volumes-from: the other container's mounts, unless one of ours has the path.
            for spec in host.extra.get("VolumesFrom").and_then(Value::as_array).into_iter().flatten() {
                let spec = spec.as_str().unwrap_or_default();
                let (name, mode) =
                    spec.rsplit_once(':').filter(|(_, m)| matches!(*m, "ro" | "rw")).unwrap_or((spec, ""));
                let other = self.lookup(name)?;
                for mut m in other.lock().mounts.clone() {
                    if m.kind == "tmpfs" || out.iter().any(|o| o.destination == m.destination) {
                        continue;
                    }
                    match mode {
                        "ro" => m.rw = false,
                        "rw" => m.rw = true,
                        _ => {}
                    }
                    out.push(m);
                }
            }
            // An anonymous volume for each VOLUME of the image not mounted otherwise.
            let mut image_vols: Vec<String> = cfg.volumes.iter().flat_map(|v| v.keys().cloned()).collect();
            image_vols.sort();
            for dst in image_vols {
                let dst = clean_dest(&dst);
                if !dst.starts_with('/') || out.iter().any(|o| o.destination == dst) {
                    continue;
                }
                let r = MountRequest { kind: "volume".into(), destination: dst, rw: true, ..Default::default() };
                out.push(self.realise(r, &mut created)?);
            }
            Ok(())
        })();
        if let Err(e) = result {
            for n in created {
                let _ = self.volumes.remove(&n);
            }
            return Err(e);
        }
        // Parents before children, as the runtime must mount them.
        out.sort_by_key(|m| Path::new(&m.destination).components().count());
        Ok(out)
    }

    fn realise(&self, r: MountRequest, created: &mut Vec<String>) -> Result<MountPoint> {
        let mut m = MountPoint {
            kind: r.kind.clone(),
            destination: r.destination.clone(),
            rw: r.rw,
            mode: r.mode.clone(),
            propagation: r.propagation.clone(),
            nocopy: r.nocopy,
            tmpfs_options: r.tmpfs_options.clone(),
            ..Default::default()
        };
        match r.kind.as_str() {
            "bind" => {
                let p = PathBuf::from(&r.source);
                if r.create_source && !p.exists() {
                    std::fs::create_dir_all(&p)
                        .map_err(|e| EngineError::BadRequest(format!("create bind source `{}`: {e}", p.display())))?;
                }
                m.source = p;
            }
            "volume" => {
                let existed = !r.source.is_empty() && self.volumes.get(&r.source)?.is_some();
                let mut labels = r.volume_labels.clone();
                if r.source.is_empty() {
                    labels.insert(ANON_LABEL.into(), String::new());
                }
                let v = self.volumes.create(
                    Some(&r.source).filter(|s| !s.is_empty()).map(String::as_str),
                    "local",
                    r.volume_options.clone(),
                    labels,
                )?;
                if !existed {
                    created.push(v.name.clone());
                    self.events.emit("volume", "create", &v.name, vec![("driver".into(), "local".into())]);
                }
                m.name = v.name.clone();
                m.source = self.volumes.data(&v.name);
            }
            _ => {}
        }
        Ok(m)
    }

    /// Names of containers (any state) that use the volume.
    pub fn volume_users(&self, name: &str) -> Vec<String> {
        self.list().iter().filter(|c| c.lock().mounts.iter().any(|m| m.name == name)).map(|c| c.id.clone()).collect()
    }

    /// Removes a volume unless a container uses it.
    pub fn remove_volume(&self, name: &str, force: bool) -> Result<()> {
        let v = match self.volumes.get(name)? {
            Some(v) => v,
            None if force => return Ok(()),
            None => return Err(EngineError::NoSuchVolume(name.to_owned())),
        };
        let users = self.volume_users(&v.name);
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!("remove {}: volume is in use - [{}]", v.name, users.join(", "))));
        }
        self.destroy_volume(&v.name)
    }

    /// Removes a volume's record and data, and says so on the event stream.
    fn destroy_volume(&self, name: &str) -> Result<()> {
        self.volumes.remove(name)?;
        self.events.emit("volume", "destroy", name, vec![("driver".into(), "local".into())]);
        Ok(())
    }

    /// A container started or stopped using its volumes: Docker's `mount`/`unmount` events.
    pub(crate) fn volume_events(&self, id: &str, mounts: &[MountPoint], action: &str) {
        for m in mounts.iter().filter(|m| m.kind == "volume") {
            let mut attrs = vec![("driver".to_owned(), "local".to_owned()), ("container".to_owned(), id.to_owned())];
            if action == "mount" {
                attrs.push(("destination".into(), m.destination.clone()));
                attrs.push(("read/write".into(), m.rw.to_string()));
                attrs.push(("propagation".into(), m.propagation.clone()));
            }
            self.events.emit("volume", action, &m.name, attrs);
        }
    }

    /// After a container is removed: its anonymous volumes go too, unless another uses them.
    pub(crate) fn remove_anonymous_volumes(&self, mounts: &[MountPoint]) {
        for m in mounts.iter().filter(|m| m.kind == "volume") {
            let Ok(Some(v)) = self.volumes.get(&m.name) else { continue };
            if v.anonymous()
                && self.volume_users(&v.name).is_empty()
                && let Err(e) = self.destroy_volume(&v.name)
            {
                tracing::warn!("remove anonymous volume {}: {e}", v.name);
            }
        }
    }

    /// After a container stops: volumes with driver options no running container needs
    /// are unmounted.
    pub(crate) fn release_volumes(&self, id: &str, mounts: &[MountPoint]) {
        self.volume_events(id, mounts, "unmount");
        for m in mounts.iter().filter(|m| m.kind == "volume") {
            let busy = self
                .list()
                .iter()
                .any(|c| c.id != id && c.status().is_live() && c.lock().mounts.iter().any(|o| o.name == m.name));
            if !busy {
                self.volumes.unmount(&m.name);
            }
        }
    }
}

/// At start: mounts volumes with driver options, fills new volumes with the image's content,
/// and returns the OCI mounts. `rootfs` is the container's mounted root.
pub fn setup_mounts(volumes: &Volumes, mounts: &[MountPoint], rootfs: &Path) -> Result<Vec<runtime::spec::UserMount>> {
    let mut out = Vec::new();
    for m in mounts {
        match m.kind.as_str() {
            "volume" => {
                let v = volumes.must_get(&m.name)?;
                volumes.mount(&v)?;
                if !m.nocopy {
                    copy_up(rootfs, &m.destination, &volumes.data(&v.name))?;
                }
            }
            "bind" if !m.source.exists() => {
                return Err(EngineError::BadRequest(format!(
                    "error while creating mount source path '{}': it does not exist",
                    m.source.display()
                )));
            }
            _ => {}
        }
        let mut options = Vec::new();
        if m.kind == "tmpfs" {
            options.extend(["nosuid", "nodev", "noexec"].map(String::from));
            options.extend(m.tmpfs_options.split(',').filter(|o| !o.is_empty()).map(str::to_owned));
        } else {
            options.push("rbind".into());
            options.push(if m.propagation.is_empty() { "rprivate".into() } else { m.propagation.clone() });
        }
        if !m.rw {
            options.push("ro".into());
        }
        out.push(runtime::spec::UserMount {
            kind: if m.kind == "tmpfs" { "tmpfs".into() } else { "bind".into() },
            source: if m.kind == "tmpfs" { PathBuf::from("tmpfs") } else { m.source.clone() },
            destination: m.destination.clone(),
            options,
        });
    }
    Ok(out)
}

/// Docker's copy-up: a volume that is empty gets what the image has at the mount path.
fn copy_up(rootfs: &Path, dest: &str, data: &Path) -> Result<()> {
    let empty = std::fs::read_dir(data).map(|mut d| d.next().is_none()).unwrap_or(false);
    if !empty {
        return Ok(());
    }
    // Resolved inside the container's root: a symlink in the image cannot point the copy at
    // the host.
    let Ok(src) = crate::archive::resolve_in_root(rootfs, dest, true) else { return Ok(()) };
    let Ok(meta) = std::fs::symlink_metadata(&src) else { return Ok(()) };
    if !meta.is_dir() {
        return Ok(());
    }
    image::archive::copy_tree(&src, data)
        .map_err(|e| EngineError::Internal(format!("copy image content of `{dest}` into volume: {e}")))?;
    // The volume's root takes the mode and owner of the image's directory.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _ = std::fs::set_permissions(data, std::fs::Permissions::from_mode(meta.mode() & 0o7777));
    let _ = std::os::unix::fs::lchown(data, Some(meta.uid()), Some(meta.gid()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_binds_like_docker() {
        let m = parse_bind("/h:/c:ro").expect("bind");
        assert_eq!((m.kind.as_str(), m.source.as_str(), m.destination.as_str(), m.rw), ("bind", "/h", "/c", false));
        assert_eq!(m.propagation, "rprivate");
        let m = parse_bind("data:/d").expect("volume");
        assert_eq!((m.kind.as_str(), m.source.as_str(), m.mode.as_str()), ("volume", "data", "z"));
        let m = parse_bind("/anon").expect("anonymous");
        assert_eq!((m.kind.as_str(), m.source.as_str()), ("volume", ""));
        assert!(parse_bind("a:b").is_err());
        assert!(parse_bind("/a:/b:bogus").is_err());
        assert!(parse_bind("/a:/").is_err());
        assert!(parse_bind("bad name:/x").is_err());
    }

    #[test]
    fn parses_api_mounts() {
        let m = parse_api_mount(
            &json!({"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1048576, "Mode": 448}}),
        )
        .expect("tmpfs");
        assert_eq!(m.tmpfs_options, "size=1024k,mode=700");
        let e = parse_api_mount(&json!({"Type": "bind", "Source": "/no/such/dir/here", "Target": "/x"}))
            .expect_err("missing");
        assert!(e.to_string().contains("bind source path does not exist"), "{e}");
        let m = parse_api_mount(&json!({"Type": "volume", "Source": "v1", "Target": "/x", "ReadOnly": true, "VolumeOptions": {"NoCopy": true}}))
            .expect("volume");
        assert!(!m.rw && m.nocopy);
        assert!(parse_api_mount(&json!({"Type": "nfs", "Target": "/x"})).is_err());
    }

    #[test]
    fn volume_store_create_get_remove() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = Volumes::open(d.path()).expect("open");
        let v = s.create(Some("data1"), "local", BTreeMap::new(), BTreeMap::new()).expect("create");
        assert!(s.data("data1").is_dir());
        // Creating again returns the same volume.
        assert_eq!(
            s.create(Some("data1"), "", BTreeMap::new(), BTreeMap::new()).expect("again").created_at,
            v.created_at
        );
        assert!(s.create(Some("a/b"), "local", BTreeMap::new(), BTreeMap::new()).is_err());
        assert!(s.create(Some("x1"), "nfs", BTreeMap::new(), BTreeMap::new()).is_err());
        let bad: BTreeMap<String, String> = [("foo".to_owned(), "1".to_owned())].into();
        assert!(s.create(Some("x2"), "local", bad, BTreeMap::new()).is_err());
        s.remove("data1").expect("remove");
        assert!(!s.dir("data1").exists());
        assert!(s.get("data1").expect("get").is_none());
    }
}
