//! Garbage collection: removes blobs no manifest references, and stale upload sessions.
//!
//! Mark: every manifest revision of every repository is read; it, its config, its layers and (for an
//! index) its child manifests are marked. Sweep: an unmarked blob is removed only if neither it nor
//! any repository link to it was written or touched after `start - grace`.
//!
//! Why a push in flight is safe: uploads write the repository link before checking for the content,
//! and a manifest PUT touches the link of every blob it names *before* checking the blob exists. The
//! sweep first moves a candidate to `_trash/`, then re-reads its links: if one was touched meanwhile
//! the blob is moved back, otherwise it is deleted. So a manifest PUT either sees its blob (and its
//! touch makes GC keep it), or finds it missing and is refused with MANIFEST_BLOB_UNKNOWN; it is never
//! accepted while naming a deleted blob. Blobs uploaded but not yet referenced are protected by
//! `grace` (default one hour): a push must finish within it, or re-upload.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use oci::Digest;

use crate::error::Result;
use crate::names::{UPLOADS, blob_key, digest_from_key};
use crate::storage::Storage;

/// What a GC run found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub manifests: usize,
    pub blobs_marked: usize,
    pub blobs_deleted: Vec<Digest>,
    pub bytes_freed: u64,
    pub blobs_recent: usize,
    pub uploads_removed: usize,
}

fn refs_of(manifest: &[u8]) -> Vec<Digest> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(manifest) else { return Vec::new() };
    let mut out = Vec::new();
    let mut add = |d: &serde_json::Value| {
        if let Some(d) = d.get("digest").and_then(|d| d.as_str()).and_then(|s| s.parse().ok()) {
            out.push(d);
        }
    };
    if let Some(c) = v.get("config") {
        add(c);
    }
    for key in ["layers", "manifests"] {
        for d in v.get(key).and_then(|l| l.as_array()).into_iter().flatten() {
            add(d);
        }
    }
    out
}

/// Runs a collection over `storage`. With `dry_run` nothing is removed; the report says what would be.
pub async fn collect(storage: &dyn Storage, dry_run: bool, grace: Duration) -> Result<GcReport> {
    let start = SystemTime::now();
    let cutoff = start.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    // digest -> link keys, with the newest link time
    let mut links: HashMap<Digest, (SystemTime, Vec<String>)> = HashMap::new();
    for meta in storage.list("repositories/").await? {
        let is_rev = meta.key.contains("/_manifests/revisions/") && meta.key.ends_with("/link");
        let is_layer = meta.key.contains("/_layers/") && meta.key.ends_with("/link");
        let Some(d) = (is_rev || is_layer).then(|| digest_from_key(&meta.key)).flatten() else { continue };
        let e = links.entry(d.clone()).or_insert((SystemTime::UNIX_EPOCH, Vec::new()));
        e.0 = e.0.max(meta.modified);
        if is_layer {
            e.1.push(meta.key.clone());
        }
        if is_rev {
            report.manifests += 1;
            if marked.insert(d.clone()) {
                match storage.get(&blob_key(&d)).await {
                    Ok(body) => marked.extend(refs_of(&body)),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    report.blobs_marked = marked.len();
    let mut candidates = Vec::new();
    for meta in storage.list("blobs/").await? {
        let Some(d) = digest_from_key(&meta.key) else { continue };
        if marked.contains(&d) {
            continue;
        }
        let linked_recently = links.get(&d).is_some_and(|(t, _)| *t > cutoff);
        if meta.modified > cutoff || linked_recently {
            report.blobs_recent += 1;
            continue;
        }
        candidates.push((d, meta));
    }
    if dry_run {
        for (d, meta) in candidates {
            report.bytes_freed += meta.size;
            report.blobs_deleted.push(d);
        }
    } else {
        // Trash every candidate, then re-read all links once: a link written or touched since the
        // listing above (an upload or manifest PUT racing with us) brings its blob back.
        for (d, meta) in &candidates {
            storage.rename(&meta.key, &trash_key(d)).await?;
        }
        let fresh = fresh_links(storage, cutoff).await?;
        for (d, meta) in candidates {
            if fresh.contains(&d) {
                storage.rename(&trash_key(&d), &meta.key).await?;
                report.blobs_recent += 1;
                continue;
            }
            storage.delete(&trash_key(&d)).await?;
            for link in links.get(&d).map(|l| l.1.as_slice()).unwrap_or_default() {
                // A link written since the re-listing belongs to a push that found the blob gone and
                // is putting it back: leave it.
                if storage.stat(link).await?.is_some_and(|m| m.modified <= cutoff) {
                    storage.delete(link).await?;
                }
            }
            report.bytes_freed += meta.size;
            report.blobs_deleted.push(d);
        }
    }
    // Upload sessions with nothing written since the cutoff.
    let mut sessions: HashMap<String, SystemTime> = HashMap::new();
    for meta in storage.list(UPLOADS).await? {
        if let Some(id) = meta.key.strip_prefix(UPLOADS).and_then(|r| r.split('/').next()) {
            let t = sessions.entry(id.to_owned()).or_insert(SystemTime::UNIX_EPOCH);
            *t = (*t).max(meta.modified);
        }
    }
    for (id, t) in sessions {
        if t <= cutoff {
            report.uploads_removed += 1;
            if !dry_run {
                storage.delete_prefix(&format!("{UPLOADS}{id}/")).await?;
            }
        }
    }
    Ok(report)
}

fn trash_key(d: &Digest) -> String {
    format!("_trash/{}-{}", d.algorithm(), d.hex())
}

/// Digests with a repository link newer than `cutoff`.
async fn fresh_links(storage: &dyn Storage, cutoff: SystemTime) -> Result<HashSet<Digest>> {
    Ok(storage
        .list("repositories/")
        .await?
        .into_iter()
        .filter(|m| m.modified > cutoff && m.key.ends_with("/link"))
        .filter_map(|m| digest_from_key(&m.key))
        .collect())
}
