//! Disk: `system df`, the prunes, and the sweep of what a crash left behind at start.
//!
//! Sizes are what `du` counts (allocated blocks, each inode once — [`image::usage`]), and an
//! image is its snapshots plus its blobs, because both are on disk. What a prune reports is
//! measured, not estimated: the usage of every path it is about to remove is taken before,
//! and only what is gone afterwards is counted, so layers shared with a kept image count for
//! nothing and a layer shared by two removed images counts once.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use image::store::{ImageRecord, Removed};
use serde_json::{Value, json};

use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// `label=k`, `label=k=v`, `label!=…` against a label map.
fn labels_match(filters: &BTreeMap<String, Vec<String>>, labels: &BTreeMap<String, String>) -> bool {
    let one = |f: &str| match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    };
    filters.get("label").is_none_or(|v| v.iter().all(|f| one(f)))
        && filters.get("label!").is_none_or(|v| v.iter().all(|f| !one(f)))
}

/// `until=<timestamp|duration>`: created before that time.
fn until_match(filters: &BTreeMap<String, Vec<String>>, created: &str) -> Result<bool> {
    let Some(u) = filters.get("until").and_then(|v| v.first()) else { return Ok(true) };
    let limit = parse_until(u).ok_or_else(|| EngineError::BadRequest(format!("invalid filter 'until={u}'")))?;
    let t = chrono::DateTime::parse_from_rfc3339(created).map(|d| d.timestamp()).unwrap_or(0);
    Ok(t < limit)
}

fn parse_until(u: &str) -> Option<i64> {
    let now = chrono::Utc::now().timestamp();
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(u) {
        return Some(d.timestamp());
    }
    if let Ok(n) = u.parse::<f64>() {
        return Some(n as i64);
    }
    let (num, unit) = u.split_at(u.len().checked_sub(1)?);
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    num.parse::<f64>().ok().map(|n| now - (n * mult as f64) as i64)
}

fn check_keys(filters: &BTreeMap<String, Vec<String>>, allowed: &[&str]) -> Result<()> {
    for k in filters.keys() {
        if !allowed.contains(&k.as_str()) {
            return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
        }
    }
    Ok(())
}

/// Paths about to be removed, measured before; [`Measure::reclaimed`] counts what went.
struct Measure {
    paths: Vec<(PathBuf, u64)>,
    seen: HashSet<(u64, u64)>,
}

impl Measure {
    fn new() -> Self {
        Self { paths: Vec::new(), seen: HashSet::new() }
    }

    fn add(&mut self, p: PathBuf) {
        if self.paths.iter().any(|(x, _)| *x == p) {
            return;
        }
        let n = image::usage::disk_usage_shared(&p, &mut self.seen);
        self.paths.push((p, n));
    }

    fn reclaimed(&self) -> u64 {
        self.paths.iter().filter(|(p, _)| std::fs::symlink_metadata(p).is_err()).map(|(_, n)| n).sum()
    }
}

impl Engine {
    fn image_paths(&self, rec: &ImageRecord) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for l in &rec.layers {
            if let Some(dir) = self.images.snapshots().fs(&l.chain_id).parent() {
                v.push(dir.to_path_buf());
            }
            v.push(self.images.content().path(&l.blob));
        }
        v.push(self.images.content().path(&rec.id));
        v.push(self.images.content().path(&rec.manifest));
        v
    }

    /// `POST /containers/prune`.
    pub async fn prune_containers(self: &Arc<Self>, filters: &BTreeMap<String, Vec<String>>) -> Result<Value> {
        check_keys(filters, &["label", "label!", "until"])?;
        let mut deleted = Vec::new();
        let mut m = Measure::new();
        let mut victims = Vec::new();
        for c in self.list() {
            let r = c.snapshot();
            if c.status().is_live() || c.status() == crate::container::Status::Removing {
                continue;
            }
            if !labels_match(filters, &r.config.labels) || !until_match(filters, &r.created)? {
                continue;
            }
            m.add(self.paths.container_dir(&c.id));
            victims.push(c);
        }
        let mut deletions = Vec::new();
        for c in victims {
            match self.remove_then(&c, false).await {
                Ok(gone) => {
                    deleted.push(c.id.clone());
                    deletions.push(gone);
                }
                Err(e) => tracing::warn!("prune container {}: {e}", c.short_id()),
            }
        }
        // The answer reports space that is back: wait for the deletions `remove` leaves running.
        for gone in deletions {
            gone.wait().await;
        }
        let reclaimed = tokio::task::spawn_blocking(move || m.reclaimed()).await.map_err(EngineError::internal)?;
        self.events.emit("container", "prune", "", vec![("reclaimed".into(), reclaimed.to_string())]);
        Ok(
            json!({"ContainersDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }, "SpaceReclaimed": reclaimed}),
        )
    }

    /// `POST /images/prune`: dangling images, or (`dangling=false`) every image no container
    /// uses.
    pub async fn prune_images(self: &Arc<Self>, filters: &BTreeMap<String, Vec<String>>) -> Result<Value> {
        check_keys(filters, &["dangling", "label", "label!", "until"])?;
        let all = filters.get("dangling").is_some_and(|v| v.iter().any(|x| x == "false" || x == "0"));
        let e = self.clone();
        let filters = filters.clone();
        tokio::task::spawn_blocking(move || {
            let used: HashSet<String> = e.list().iter().map(|c| c.lock().image.clone()).collect();
            let mut m = Measure::new();
            let mut victims = Vec::new();
            for rec in e.images.all()? {
                if used.contains(&rec.id.to_string()) {
                    continue;
                }
                let tagged = !e.images.tags_of(&rec.id)?.is_empty();
                if tagged && !all {
                    continue;
                }
                let labels: BTreeMap<String, String> = rec
                    .run_config()
                    .get("Labels")
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default();
                if !labels_match(&filters, &labels) || !until_match(&filters, &rec.created())? {
                    continue;
                }
                for p in e.image_paths(&rec) {
                    m.add(p);
                }
                victims.push(rec);
            }
            let mut deleted = Vec::new();
            let none = |_: &oci::Digest| None;
            for rec in victims {
                match e.images.remove(&rec.id.to_string(), true, &none) {
                    Ok(list) => {
                        for r in list {
                            deleted.push(match r {
                                Removed::Untagged(t) => json!({"Untagged": t}),
                                Removed::Deleted(d) => json!({"Deleted": d.to_string()}),
                            });
                        }
                    }
                    Err(err) => tracing::warn!("prune image {}: {err}", rec.id.short()),
                }
            }
            let reclaimed = m.reclaimed();
            e.events.emit("image", "prune", "", vec![("reclaimed".into(), reclaimed.to_string())]);
            Ok(json!({"ImagesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }, "SpaceReclaimed": reclaimed}))
        })
        .await
        .map_err(EngineError::internal)?
    }

    /// `POST /volumes/prune`: unused anonymous volumes, or (`all=true`) every unused volume.
    pub async fn prune_volumes(self: &Arc<Self>, filters: &BTreeMap<String, Vec<String>>) -> Result<Value> {
        check_keys(filters, &["all", "label", "label!"])?;
        let all = filters.get("all").is_some_and(|v| v.iter().any(|x| x == "true" || x == "1"));
        let e = self.clone();
        let filters = filters.clone();
        tokio::task::spawn_blocking(move || {
            let mut m = Measure::new();
            let mut deleted = Vec::new();
            for v in e.volumes.all()? {
                if (!all && !v.anonymous()) || !labels_match(&filters, &v.labels) || !e.volume_users(&v.name).is_empty() {
                    continue;
                }
                m.add(e.volumes.dir(&v.name));
                match e.remove_volume(&v.name, false) {
                    Ok(()) => deleted.push(v.name.clone()),
                    Err(err) => tracing::warn!("prune volume {}: {err}", v.name),
                }
            }
            let reclaimed = m.reclaimed();
            e.events.emit("volume", "prune", "", vec![("reclaimed".into(), reclaimed.to_string())]);
            Ok(json!({"VolumesDeleted": if deleted.is_empty() { Value::Null } else { json!(deleted) }, "SpaceReclaimed": reclaimed}))
        })
        .await
        .map_err(EngineError::internal)?
    }

    /// `GET /system/df`.
    pub async fn disk_usage(self: &Arc<Self>) -> Result<Value> {
        let e = self.clone();
        tokio::task::spawn_blocking(move || {
            let containers = e.list();
            let images = e.images.all()?;
            // Each snapshot and blob once, for LayersSize and for SharedSize.
            let mut users: BTreeMap<PathBuf, usize> = BTreeMap::new();
            for rec in &images {
                for p in e.image_paths(rec) {
                    *users.entry(p).or_default() += 1;
                }
            }
            let sizes: BTreeMap<PathBuf, u64> =
                users.keys().map(|p| (p.clone(), image::usage::disk_usage(p))).collect();
            let layers_size: u64 = sizes.values().sum();
            let mut image_rows = Vec::new();
            let mut image_size: BTreeMap<String, u64> = BTreeMap::new();
            for rec in &images {
                let paths = e.image_paths(rec);
                let size: u64 = paths.iter().map(|p| sizes.get(p).copied().unwrap_or(0)).sum();
                let shared: u64 = paths
                    .iter()
                    .filter(|p| users.get(*p).copied().unwrap_or(0) > 1)
                    .map(|p| sizes.get(p).copied().unwrap_or(0))
                    .sum();
                let n = containers.iter().filter(|c| c.lock().image == rec.id.to_string()).count();
                image_size.insert(rec.id.to_string(), size);
                let tags: Vec<String> =
                    e.images.tags_of(&rec.id)?.iter().map(oci::Reference::familiar).collect();
                image_rows.push(json!({
                    "Id": rec.id.to_string(), "ParentId": "", "RepoTags": tags, "RepoDigests": [],
                    "Created": chrono::DateTime::parse_from_rfc3339(&rec.created()).map(|d| d.timestamp()).unwrap_or(0),
                    "Size": size, "SharedSize": shared, "VirtualSize": size, "Labels": {}, "Containers": n,
                }));
            }
            let mut container_rows = Vec::new();
            for c in &containers {
                let r = c.snapshot();
                let rw = image::usage::disk_usage(&e.paths.container_dir(&c.id).join("upper"));
                container_rows.push(json!({
                    "Id": r.id, "Names": [format!("/{}", r.state.name)], "Image": r.image_name, "ImageID": r.image,
                    "Command": std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>().join(" "),
                    "Created": chrono::DateTime::parse_from_rfc3339(&r.created).map(|d| d.timestamp()).unwrap_or(0),
                    "State": r.state.status.as_str(), "Status": r.state.status.as_str(),
                    "SizeRw": rw, "SizeRootFs": rw + image_size.get(&r.image).copied().unwrap_or(0),
                    "Labels": r.config.labels, "Mounts": r.mounts.iter().map(crate::volumes::MountPoint::to_json).collect::<Vec<_>>(),
                }));
            }
            let mut volume_rows = Vec::new();
            for v in e.volumes.all()? {
                let mut j = e.volumes.to_json(&v);
                j["UsageData"] = json!({"Size": e.volumes.usage(&v), "RefCount": e.volume_users(&v.name).len()});
                volume_rows.push(j);
            }
            Ok(json!({
                "LayersSize": layers_size,
                "Images": image_rows,
                "Containers": container_rows,
                "Volumes": volume_rows,
                "BuildCache": [],
            }))
        })
        .await
        .map_err(EngineError::internal)?
    }

    /// At start: removes what a crash can leave — container directories and bundles without a
    /// record, snapshots and blobs no image refers to. (Unfinished snapshots `tmp-*` and `ingest/`
    /// are removed when the image store opens; volume directories without a record when the
    /// volume store opens.)
    pub(crate) async fn sweep_at_start(self: &Arc<Self>) {
        let e = self.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let known: HashSet<String> = e.list().iter().map(|c| c.id.clone()).collect();
            if let Ok(rd) = std::fs::read_dir(e.paths.data_root.join("containers")) {
                for d in rd.flatten() {
                    let id = d.file_name().to_string_lossy().into_owned();
                    // Removed, and not yet deleted when the daemon went down.
                    if let Some(id) = id.strip_prefix(crate::engine::REMOVING_PREFIX) {
                        if let Err(err) = crate::engine::remove_container_files(&e.paths, &e.spares, id, &d.path()) {
                            tracing::warn!("{err}");
                        }
                        continue;
                    }
                    if known.contains(&id) || id.len() != 64 {
                        continue;
                    }
                    let _ = image::snapshot::unmount(&d.path().join("rootfs"));
                    tracing::info!("removing container directory {id} left without a record");
                    let _ = std::fs::remove_dir_all(d.path());
                }
            }
            // Bundles of containers with no record (a removal's bundles went just above).
            if let Ok(rd) = std::fs::read_dir(e.paths.exec_root.join("bundles")) {
                for d in rd.flatten() {
                    let id = d.file_name().to_string_lossy().into_owned();
                    if !known.contains(&id) {
                        tracing::info!("removing bundle {id} left without a record");
                        let _ = std::fs::remove_dir_all(d.path());
                    }
                }
            }
            let Ok(images) = e.images.all() else { return };
            let mut chains = HashSet::new();
            let mut blobs = HashSet::new();
            for rec in &images {
                for l in &rec.layers {
                    chains.insert(l.chain_id.hex().to_owned());
                    blobs.insert(l.blob.hex().to_owned());
                }
                blobs.insert(rec.id.hex().to_owned());
                blobs.insert(rec.manifest.hex().to_owned());
            }
            let snaps = e.images.snapshots().root().to_path_buf();
            if let Ok(rd) = std::fs::read_dir(&snaps) {
                for d in rd.flatten() {
                    let n = d.file_name().to_string_lossy().into_owned();
                    if n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()) && !chains.contains(&n) {
                        tracing::info!("removing snapshot {n}: no image uses it");
                        let _ = std::fs::remove_dir_all(d.path());
                    }
                }
            }
            if let Ok(rd) = std::fs::read_dir(e.images.content().blobs_dir()) {
                for d in rd.flatten() {
                    let n = d.file_name().to_string_lossy().into_owned();
                    if !blobs.contains(&n) {
                        tracing::info!("removing blob sha256:{n}: no image uses it");
                        let _ = std::fs::remove_file(d.path());
                    }
                }
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_match() {
        let f =
            crate::http::parse_filters(Some(&r#"{"label":["a=1"],"until":{"1h":true}}"#.to_owned())).expect("filters");
        let labels: BTreeMap<String, String> = [("a".to_owned(), "1".to_owned())].into();
        assert!(labels_match(&f, &labels));
        assert!(!labels_match(&f, &BTreeMap::new()));
        assert!(until_match(&f, "2000-01-01T00:00:00Z").expect("until"));
        assert!(!until_match(&f, &chrono::Utc::now().to_rfc3339()).expect("until"));
        assert!(check_keys(&f, &["label"]).is_err());
        assert!(parse_until("nonsense").is_none());
    }
}
