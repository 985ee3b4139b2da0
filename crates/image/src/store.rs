//! Image records and tags in SQLite; import, lookup, tag, delete, history.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use oci::{Digest, Reference, media_type};
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::ImageError;
use crate::content::ContentStore;
use crate::layer::Compression;
use crate::snapshot::Snapshots;

/// One layer of an image, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerRecord {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// The layer blob as received (compressed or not).
    pub blob: Digest,
    pub media_type: String,
    pub blob_size: u64,
    /// Bytes of the uncompressed tar.
    pub size: u64,
}

/// An image: its config (the OCI image configuration JSON) and its layers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config's digest: the image id.
    pub id: Digest,
    pub manifest: Digest,
    pub config: Value,
    pub layers: Vec<LayerRecord>,
    /// Id of the image this one was built on, if known.
    #[serde(default)]
    pub parent: Option<Digest>,
    /// `name@sha256:…` of the manifests (or indexes) this image was pulled as or pushed as.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
}

impl ImageRecord {
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    pub fn created(&self) -> String {
        self.config.get("created").and_then(Value::as_str).unwrap_or_default().to_owned()
    }

    /// The `config` part of the image configuration (Cmd, Env, …).
    pub fn run_config(&self) -> &Value {
        self.config.get("config").unwrap_or(&Value::Null)
    }
}

/// One row of `history`.
#[derive(Debug, Clone)]
pub struct HistoryEntry {
    pub id: Option<Digest>,
    pub created: String,
    pub created_by: String,
    pub comment: String,
    pub size: u64,
    pub empty_layer: bool,
}

/// What removing an image did, in Docker's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(String),
    Deleted(Digest),
}

#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    pub tag: Option<Reference>,
    /// Dockerfile-style instructions applied to the config (`CMD ["sh"]`, `ENV A=b`).
    pub changes: Vec<String>,
    pub message: Option<String>,
    /// Where the archive came from, for the history comment (`-` for the request body).
    pub source: String,
}

pub struct ImageStore {
    content: ContentStore,
    snapshots: Snapshots,
    db: Mutex<Connection>,
}

/// Opens the metadata database shared by the engine's stores (WAL, so readers don't block).
pub fn open_db(root: &Path) -> Result<Connection, ImageError> {
    let path = root.join("metadata.db");
    let c = Connection::open(&path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(c)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

impl ImageStore {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let content = ContentStore::open(root)?;
        let snapshots = Snapshots::open(root)?;
        content.clean_ingest();
        snapshots.clean();
        let db = open_db(root)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, record TEXT NOT NULL, created TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS tags (name TEXT PRIMARY KEY, image_id TEXT NOT NULL, tagged_at TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS blob_sources (digest TEXT NOT NULL, registry TEXT NOT NULL, repo TEXT NOT NULL, PRIMARY KEY (digest, registry, repo));",
        )?;
        Ok(Self { content, snapshots, db: Mutex::new(db) })
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (each call is one statement
        // or one transaction), so a poisoned lock is still usable.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Imports a root filesystem tar (plain, gzip or zstd) as a one-layer image.
    pub fn import<R: Read>(&self, src: R, opts: &ImportOptions) -> Result<ImageRecord, ImageError> {
        let mut ingest = self.content.ingest()?;
        let mut tee = Tee { inner: src, out: ingest.writer() };
        let applied = self.snapshots.apply(None, &mut tee);
        let (chain, applied) = match applied {
            Ok(v) => v,
            Err(e) => {
                ingest.abort();
                return Err(e);
            }
        };
        if let Err(e) = std::io::copy(&mut tee, &mut std::io::sink()) {
            ingest.abort();
            return Err(ImageError::Io { op: "read", path: PathBuf::from(&opts.source), source: e });
        }
        let (blob, blob_size) = ingest.commit(&self.content, None)?;
        let media = match applied.compression {
            Compression::None => media_type::OCI_LAYER,
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        };
        let layer = LayerRecord {
            diff_id: applied.diff_id.clone(),
            chain_id: chain,
            blob,
            media_type: media.to_owned(),
            blob_size,
            size: applied.tar_size,
        };
        let now = now_rfc3339();
        let mut run = json!({});
        for c in &opts.changes {
            apply_change(&mut run, c)?;
        }
        let mut history = json!({"created": now, "comment": format!("Imported from {}", opts.source)});
        if let Some(m) = opts.message.as_ref().filter(|m| !m.is_empty()) {
            history["comment"] = json!(m);
        }
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "created": now,
            "config": run,
            "rootfs": {"type": "layers", "diff_ids": [applied.diff_id]},
            "history": [history],
        });
        let rec = self.create(config, vec![layer], None)?;
        if let Some(t) = &opts.tag {
            self.tag(&rec.id, t)?;
        }
        Ok(rec)
    }

    /// Stores an image made of existing layers and the given config.
    pub fn create(
        &self,
        config: Value,
        layers: Vec<LayerRecord>,
        parent: Option<Digest>,
    ) -> Result<ImageRecord, ImageError> {
        let config_bytes = serde_json::to_vec(&config).map_err(|e| ImageError::InvalidArchive(e.to_string()))?;
        self.create_raw(&config_bytes, layers, parent)
    }

    /// [`ImageStore::create`] from the config's bytes as received, so that the image id (their
    /// digest) is the one the image had elsewhere (`load`, `pull`).
    pub fn create_raw(
        &self,
        config_bytes: &[u8],
        layers: Vec<LayerRecord>,
        parent: Option<Digest>,
    ) -> Result<ImageRecord, ImageError> {
        let config: Value = serde_json::from_slice(config_bytes)
            .map_err(|e| ImageError::InvalidArchive(format!("image config is not JSON: {e}")))?;
        let id = self.content.put(config_bytes)?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": id, "size": config_bytes.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.blob, "size": l.blob_size})).collect::<Vec<_>>(),
        });
        let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| ImageError::InvalidArchive(e.to_string()))?;
        let manifest = self.content.put(&manifest_bytes)?;
        let repo_digests = self.get(&id)?.map(|r| r.repo_digests).unwrap_or_default();
        let rec = ImageRecord { id: id.clone(), manifest, config, layers, parent, repo_digests };
        self.put_record(&rec)?;
        Ok(rec)
    }

    fn put_record(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        let text = serde_json::to_string(rec)
            .map_err(|e| ImageError::Corrupt { id: rec.id.to_string(), message: e.to_string() })?;
        self.db().prepare_cached(
            "INSERT INTO images (id, record, created) VALUES (?1, ?2, ?3) ON CONFLICT(id) DO UPDATE SET record = excluded.record")?.execute(params![rec.id.to_string(), text, rec.created()],
        )?;
        Ok(())
    }

    /// Stores an image as a registry sent it: the config and manifest bytes are kept exactly
    /// (the id is the digest of the config as received), every layer must already be
    /// committed. `repo_digest` (`name@sha256:…`) is added to the image's RepoDigests.
    pub fn create_pulled(
        &self,
        config_bytes: &[u8],
        manifest_bytes: &[u8],
        layers: Vec<LayerRecord>,
        repo_digest: Option<String>,
    ) -> Result<ImageRecord, ImageError> {
        let config: Value = serde_json::from_slice(config_bytes)
            .map_err(|e| ImageError::InvalidArchive(format!("image config: {e}")))?;
        let id = self.content.put(config_bytes)?;
        let manifest = self.content.put(manifest_bytes)?;
        let mut repo_digests = self.get(&id)?.map(|r| r.repo_digests).unwrap_or_default();
        if let Some(d) = repo_digest {
            add_repo_digest(&mut repo_digests, d);
        }
        let rec = ImageRecord { id, manifest, config, layers, parent: None, repo_digests };
        self.put_record(&rec)?;
        Ok(rec)
    }

    /// Bytes of the uncompressed layer whose snapshot is `chain`, from an image that has it.
    pub fn layer_size(&self, chain: &Digest) -> u64 {
        let known = self.all().unwrap_or_default().into_iter().flat_map(|r| r.layers).find(|l| &l.chain_id == chain);
        known.map(|l| l.size).unwrap_or_else(|| self.snapshots.size(chain))
    }

    /// Records `name@sha256:…` as a RepoDigest of an image (after a push).
    pub fn add_repo_digest(&self, id: &Digest, repo_digest: String) -> Result<(), ImageError> {
        let Some(mut rec) = self.get(id)? else { return Err(ImageError::NotFound(id.to_string())) };
        add_repo_digest(&mut rec.repo_digests, repo_digest);
        self.put_record(&rec)
    }

    /// Remembers that `registry/repo` holds the blob `digest`, so a push to another repository
    /// of that registry can mount it instead of uploading it.
    pub fn add_blob_source(&self, digest: &Digest, registry: &str, repo: &str) -> Result<(), ImageError> {
        self.db()
            .prepare_cached("INSERT OR IGNORE INTO blob_sources (digest, registry, repo) VALUES (?1, ?2, ?3)")?
            .execute(params![digest.to_string(), registry, repo])?;
        Ok(())
    }

    /// Repositories of `registry` known to hold the blob `digest`.
    pub fn blob_sources(&self, digest: &Digest, registry: &str) -> Result<Vec<String>, ImageError> {
        let db = self.db();
        let mut st = db.prepare_cached("SELECT repo FROM blob_sources WHERE digest = ?1 AND registry = ?2")?;
        let repos = st.query_map(params![digest.to_string(), registry], |r| r.get(0))?.collect::<Result<_, _>>()?;
        Ok(repos)
    }

    fn row_to_record(id: &str, text: &str) -> Result<ImageRecord, ImageError> {
        serde_json::from_str(text).map_err(|e| ImageError::Corrupt { id: id.to_owned(), message: e.to_string() })
    }

    pub fn get(&self, id: &Digest) -> Result<Option<ImageRecord>, ImageError> {
        let text: Option<String> = self
            .db()
            .prepare_cached("SELECT record FROM images WHERE id = ?1")?
            .query_row([id.to_string()], |r| r.get(0))
            .optional()?;
        text.map(|t| Self::row_to_record(&id.to_string(), &t)).transpose()
    }

    /// Finds an image by full id, `sha256:`-prefixed id, reference or unique id prefix.
    pub fn resolve(&self, s: &str) -> Result<ImageRecord, ImageError> {
        let not_found = || ImageError::NotFound(s.to_owned());
        if let Ok(d) = s.parse::<Digest>() {
            return self.get(&d)?.ok_or_else(not_found);
        }
        if let Ok(r) = Reference::parse_with_default_tag(s) {
            if let Some(d) = r.digest() {
                // name@digest: the manifest digest of an image of that name.
                let suffix = format!("@{d}");
                for rec in self.all()? {
                    if &rec.manifest == d || rec.repo_digests.iter().any(|r| r.ends_with(&suffix)) {
                        return Ok(rec);
                    }
                }
                return Err(not_found());
            }
            let id: Option<String> = self
                .db()
                .prepare_cached("SELECT image_id FROM tags WHERE name = ?1")?
                .query_row([r.to_string()], |row| row.get(0))
                .optional()?;
            if let Some(id) = id {
                let d: Digest =
                    id.parse().map_err(|_| ImageError::Corrupt { id: id.clone(), message: "bad id".into() })?;
                return self.get(&d)?.ok_or_else(not_found);
            }
        }
        let hex = s.strip_prefix("sha256:").unwrap_or(s);
        if !hex.is_empty() && hex.len() < 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let ids: Vec<String> = {
                let db = self.db();
                let mut st = db.prepare_cached("SELECT id FROM images WHERE id LIKE ?1")?;
                st.query_map([format!("sha256:{hex}%")], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            if ids.len() == 1
                && let Ok(d) = ids[0].parse::<Digest>()
            {
                return self.get(&d)?.ok_or_else(not_found);
            }
        }
        Err(not_found())
    }

    pub fn all(&self) -> Result<Vec<ImageRecord>, ImageError> {
        let rows: Vec<(String, String)> = {
            let db = self.db();
            let mut st = db.prepare_cached("SELECT id, record FROM images ORDER BY created DESC")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        rows.iter().map(|(id, t)| Self::row_to_record(id, t)).collect()
    }

    /// Tags of an image, as full references (`docker.io/library/busybox:latest`).
    pub fn tags_of(&self, id: &Digest) -> Result<Vec<Reference>, ImageError> {
        let names: Vec<String> = {
            let db = self.db();
            let mut st = db.prepare_cached("SELECT name FROM tags WHERE image_id = ?1 ORDER BY name")?;
            st.query_map([id.to_string()], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        Ok(names.iter().filter_map(|n| Reference::parse(n).ok()).collect())
    }

    pub fn tag(&self, id: &Digest, r: &Reference) -> Result<(), ImageError> {
        let r = if r.tag().is_none() && r.digest().is_none() { r.with_tag("latest")? } else { r.clone() };
        self.db()
            .prepare_cached(
                "INSERT INTO tags (name, image_id, tagged_at) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET image_id = excluded.image_id, tagged_at = excluded.tagged_at",
            )?
            .execute(params![r.to_string(), id.to_string(), now_rfc3339()])?;
        Ok(())
    }

    fn untag(&self, r: &Reference) -> Result<bool, ImageError> {
        Ok(self.db().prepare_cached("DELETE FROM tags WHERE name = ?1")?.execute([r.to_string()])? > 0)
    }

    /// Removes an image or one of its tags as `docker rmi` does. `user_of` names a container
    /// using the image (and whether it runs), which blocks the deletion.
    pub fn remove(
        &self,
        s: &str,
        force: bool,
        user_of: &dyn Fn(&Digest) -> Option<(String, bool)>,
    ) -> Result<Vec<Removed>, ImageError> {
        let rec = self.resolve(s)?;
        let tags = self.tags_of(&rec.id)?;
        let by_name = Reference::parse_with_default_tag(s)
            .ok()
            .filter(|r| tags.contains(r) && !rec.id.hex().starts_with(s.strip_prefix("sha256:").unwrap_or(s)));
        let mut out = Vec::new();
        let user = user_of(&rec.id);
        if let Some(r) = by_name {
            if tags.len() > 1 {
                self.untag(&r)?;
                return Ok(vec![Removed::Untagged(r.familiar())]);
            }
            if let Some((c, running)) = &user
                && (!force || *running)
            {
                return Err(ImageError::InUse {
                    reference: r.familiar(),
                    container: c[..12].to_owned(),
                    image: rec.id.short().to_owned(),
                });
            }
            self.untag(&r)?;
            out.push(Removed::Untagged(r.familiar()));
        } else {
            if tags.len() > 1 && !force {
                return Err(ImageError::MultipleReferences { image: rec.id.short().to_owned() });
            }
            if let Some((c, running)) = &user {
                let how = if *running {
                    "cannot be forced) - image is being used by running"
                } else {
                    "must be forced) - image is being used by stopped"
                };
                if *running || !force {
                    return Err(ImageError::Conflict(format!(
                        "conflict: unable to delete {} ({how} container {}",
                        rec.id.short(),
                        &c[..12]
                    )));
                }
            }
            for t in &tags {
                self.untag(t)?;
                out.push(Removed::Untagged(t.familiar()));
            }
        }
        if user.is_none() {
            self.delete(&rec)?;
            out.push(Removed::Deleted(rec.id.clone()));
        }
        Ok(out)
    }

    /// Deletes an image record and whatever of its content no other image uses.
    fn delete(&self, rec: &ImageRecord) -> Result<(), ImageError> {
        self.db().prepare_cached("DELETE FROM images WHERE id = ?1")?.execute([rec.id.to_string()])?;
        let others = self.all()?;
        for l in &rec.layers {
            if !others.iter().any(|o| o.layers.iter().any(|x| x.chain_id == l.chain_id)) {
                self.snapshots.remove(&l.chain_id)?;
            }
            if !others.iter().any(|o| o.layers.iter().any(|x| x.blob == l.blob)) {
                self.content.delete(&l.blob)?;
            }
        }
        if !others.iter().any(|o| o.manifest == rec.manifest) {
            self.content.delete(&rec.manifest)?;
        }
        self.content.delete(&rec.id)?;
        Ok(())
    }

    /// The snapshot directories of an image, bottom layer first.
    /// A container's read-only layers, bottom first: the image's, then the init layer
    /// ([`Snapshots::init_dir`](crate::snapshot::Snapshots::init_dir)).
    pub fn container_lowers(&self, rec: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        let mut v = self.layer_dirs(rec)?;
        v.push(self.snapshots.init_dir()?);
        Ok(v)
    }

    pub fn layer_dirs(&self, rec: &ImageRecord) -> Result<Vec<PathBuf>, ImageError> {
        if rec.layers.is_empty() {
            return Ok(vec![self.snapshots.empty_dir()?]);
        }
        rec.layers
            .iter()
            .map(|l| {
                let p = self.snapshots.fs(&l.chain_id);
                if p.is_dir() {
                    Ok(p)
                } else {
                    Err(ImageError::Corrupt {
                        id: rec.id.to_string(),
                        message: format!("snapshot {} is missing", l.chain_id),
                    })
                }
            })
            .collect()
    }

    /// `docker history`: newest step first, each with the layer it made.
    pub fn history(&self, rec: &ImageRecord) -> Vec<HistoryEntry> {
        let hist = rec.config.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut layers = rec.layers.iter();
        let mut out: Vec<HistoryEntry> = hist
            .iter()
            .map(|h| {
                let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
                let size = if empty { 0 } else { layers.next().map(|l| l.size).unwrap_or(0) };
                let s = |k: &str| h.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                HistoryEntry {
                    id: None,
                    created: s("created"),
                    created_by: s("created_by"),
                    comment: s("comment"),
                    size,
                    empty_layer: empty,
                }
            })
            .collect();
        out.reverse();
        if let Some(first) = out.first_mut() {
            first.id = Some(rec.id.clone());
        }
        out
    }
}

/// Replaces the entry for the same repository, as Docker keeps one digest per repository.
fn add_repo_digest(list: &mut Vec<String>, d: String) {
    let repo = d.split('@').next().unwrap_or_default().to_owned();
    list.retain(|x| x.split('@').next() != Some(repo.as_str()));
    list.push(d);
    list.sort();
}

/// A reader that copies what it reads into `out`.
struct Tee<'a, R, W> {
    inner: R,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// Applies one Dockerfile-style instruction (`docker import --change`, `commit -c`) to a
/// config's `config` object.
pub fn apply_change(run: &mut Value, change: &str) -> Result<(), ImageError> {
    let bad = |m: &str| ImageError::InvalidArchive(format!("invalid change `{change}`: {m}"));
    let change = change.trim();
    let (instr, rest) =
        change.split_once(char::is_whitespace).ok_or_else(|| bad("expected an instruction and its arguments"))?;
    let rest = rest.trim();
    let as_list = |rest: &str| -> Vec<String> {
        match serde_json::from_str::<Vec<String>>(rest) {
            Ok(v) => v,
            Err(_) => vec!["/bin/sh".to_owned(), "-c".to_owned(), rest.to_owned()],
        }
    };
    let obj = run.as_object_mut().ok_or_else(|| bad("config is not an object"))?;
    match instr.to_ascii_uppercase().as_str() {
        "CMD" => {
            obj.insert("Cmd".into(), json!(as_list(rest)));
        }
        "ENTRYPOINT" => {
            obj.insert("Entrypoint".into(), json!(as_list(rest)));
        }
        "WORKDIR" => {
            obj.insert("WorkingDir".into(), json!(rest));
        }
        "USER" => {
            obj.insert("User".into(), json!(rest));
        }
        "STOPSIGNAL" => {
            obj.insert("StopSignal".into(), json!(rest));
        }
        "ENV" => {
            let env = obj.entry("Env").or_insert_with(|| json!([]));
            let pairs: Vec<(String, String)> = if let Some((k, v)) = rest.split_once('=') {
                if k.contains(char::is_whitespace) {
                    return Err(bad("ENV names cannot contain spaces"));
                }
                vec![(k.to_owned(), v.trim_matches('"').to_owned())]
            } else {
                let (k, v) = rest.split_once(char::is_whitespace).ok_or_else(|| bad("ENV needs a name and a value"))?;
                vec![(k.to_owned(), v.trim().to_owned())]
            };
            if let Some(list) = env.as_array_mut() {
                for (k, v) in pairs {
                    list.retain(|e| e.as_str().and_then(|s| s.split_once('=')).map(|(n, _)| n) != Some(k.as_str()));
                    list.push(json!(format!("{k}={v}")));
                }
            }
        }
        "LABEL" => {
            let labels = obj.entry("Labels").or_insert_with(|| json!({}));
            let (k, v) = rest.split_once('=').ok_or_else(|| bad("LABEL needs key=value"))?;
            labels[k.trim_matches('"')] = json!(v.trim_matches('"'));
        }
        "EXPOSE" => {
            let ports = obj.entry("ExposedPorts").or_insert_with(|| json!({}));
            for p in rest.split_whitespace() {
                let p = if p.contains('/') { p.to_owned() } else { format!("{p}/tcp") };
                ports[p] = json!({});
            }
        }
        "VOLUME" => {
            let vols = obj.entry("Volumes").or_insert_with(|| json!({}));
            let list: Vec<String> =
                serde_json::from_str(rest).unwrap_or_else(|_| rest.split_whitespace().map(str::to_owned).collect());
            for v in list {
                vols[v] = json!({});
            }
        }
        other => return Err(bad(&format!("`{other}` is not supported here"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, "bin/hello", &b"hello"[..]).expect("append");
        b.into_inner().expect("finish")
    }

    #[test]
    fn import_resolve_tag_and_remove() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = ImageStore::open(d.path()).expect("open");
        let opts = ImportOptions {
            tag: Some(Reference::parse("busybox").expect("ref")),
            changes: vec!["CMD [\"sh\"]".into(), "ENV A=b".into()],
            source: "-".into(),
            ..Default::default()
        };
        let rec = s.import(&rootfs_tar()[..], &opts).expect("import");
        assert_eq!(rec.run_config()["Cmd"], json!(["sh"]));
        assert_eq!(s.resolve("busybox").expect("by name").id, rec.id);
        assert_eq!(s.resolve("busybox:latest").expect("by tag").id, rec.id);
        assert_eq!(s.resolve(rec.id.short()).expect("by prefix").id, rec.id);
        assert_eq!(s.resolve(&rec.id.to_string()).expect("by id").id, rec.id);
        assert!(matches!(s.resolve("nope"), Err(ImageError::NotFound(_))));
        let dirs = s.layer_dirs(&rec).expect("layers");
        assert!(dirs[0].join("bin/hello").exists());
        // The same content imported again shares the snapshot.
        let rec2 =
            s.import(&rootfs_tar()[..], &ImportOptions { source: "-".into(), ..Default::default() }).expect("import");
        assert_eq!(rec2.layers[0].chain_id, rec.layers[0].chain_id);
        s.tag(&rec.id, &Reference::parse("other:1").expect("ref")).expect("tag");
        let none = |_: &Digest| None;
        assert!(matches!(s.remove(rec.id.short(), false, &none), Err(ImageError::MultipleReferences { .. })));
        assert_eq!(s.remove("other:1", false, &none).expect("untag"), vec![Removed::Untagged("other:1".into())]);
        let out = s.remove("busybox", false, &none).expect("remove");
        assert_eq!(out, vec![Removed::Untagged("busybox:latest".into()), Removed::Deleted(rec.id.clone())]);
        // rec2 still uses the layer.
        assert!(s.layer_dirs(&rec2).is_ok());
        assert!(s.get(&rec.id).expect("get").is_none());
        let hist = s.history(&rec2);
        assert_eq!(hist.len(), 1);
        assert_eq!(hist[0].comment, "Imported from -");
    }
}
