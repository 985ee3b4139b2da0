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
//!
//! With `delete_untagged`, a first pass removes the manifests of each repository that no tag
//! reaches — directly, as a child of a reached index, or as a referrer of a reached manifest — and
//! that are older than the grace period (a multi-platform push writes its children untagged before
//! the index). Their blobs then go in the sweep.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use oci::Digest;

use crate::error::Result;
use crate::names::{UPLOADS, blob_key, digest_from_key, referrer_key};
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
    /// (repository, manifest) pairs removed as untagged.
    pub manifests_deleted: Vec<(String, Digest)>,
}

/// How a collection runs.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Report only; change nothing.
    pub dry_run: bool,
    /// Keep anything written or linked more recently than this.
    pub grace: Duration,
    /// Also remove manifests no tag reaches.
    pub delete_untagged: bool,
}

/// An untagged manifest: repository, digest, revision link key, subject.
type Untagged = (String, Digest, String, Option<Digest>);

#[derive(Default)]
struct RepoManifests {
    revisions: HashMap<Digest, (SystemTime, String)>,
    tags: Vec<String>,
}

/// The manifests of every repository that no tag reaches and that are older than `cutoff`.
async fn untagged(storage: &dyn Storage, cutoff: SystemTime) -> Result<Vec<Untagged>> {
    let mut repos: BTreeMap<String, RepoManifests> = BTreeMap::new();
    for meta in storage.list("repositories/").await? {
        let Some(rest) = meta.key.strip_prefix("repositories/") else { continue };
        let Some(i) = rest.find("/_manifests/") else { continue };
        let (name, tail) = (&rest[..i], &rest[i + "/_manifests/".len()..]);
        let repo = repos.entry(name.to_owned()).or_default();
        if tail.starts_with("revisions/") && tail.ends_with("/link") {
            if let Some(d) = digest_from_key(&meta.key) {
                repo.revisions.insert(d, (meta.modified, meta.key));
            }
        } else if tail.starts_with("tags/") {
            repo.tags.push(meta.key);
        }
    }
    let mut out = Vec::new();
    for (name, repo) in repos {
        let mut reached: HashSet<Digest> =
            repo.revisions.iter().filter(|(_, (t, _))| *t > cutoff).map(|(d, _)| d.clone()).collect();
        for key in &repo.tags {
            match storage.get(key).await {
                Ok(b) => reached.extend(std::str::from_utf8(&b).ok().and_then(|s| s.trim().parse().ok())),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut children: HashMap<Digest, Vec<Digest>> = HashMap::new();
        let mut subjects: HashMap<Digest, Digest> = HashMap::new();
        for d in repo.revisions.keys() {
            let body = match storage.get(&blob_key(d)).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else { continue };
            let digest_of = |x: &serde_json::Value| x.get("digest")?.as_str()?.parse::<Digest>().ok();
            if let Some(s) = v.get("subject").and_then(digest_of) {
                subjects.insert(d.clone(), s);
            }
            let kids = v.get("manifests").and_then(|m| m.as_array()).into_iter().flatten().filter_map(digest_of);
            children.insert(d.clone(), kids.collect());
        }
        loop {
            let before = reached.len();
            let from_index: Vec<Digest> =
                reached.iter().flat_map(|d| children.get(d).into_iter().flatten().cloned()).collect();
            reached.extend(from_index);
            let referrers: Vec<Digest> =
                subjects.iter().filter(|(_, s)| reached.contains(*s)).map(|(r, _)| r.clone()).collect();
            reached.extend(referrers);
            if reached.len() == before {
                break;
            }
        }
        for (d, (_, key)) in repo.revisions {
            if !reached.contains(&d) {
                let subject = subjects.get(&d).cloned();
                out.push((name.clone(), d, key, subject));
            }
        }
    }
    Ok(out)
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
    collect_with(storage, &GcOptions { dry_run, grace, delete_untagged: false }).await
}

/// Runs a collection with all options.
pub async fn collect_with(storage: &dyn Storage, options: &GcOptions) -> Result<GcReport> {
    let (dry_run, grace) = (options.dry_run, options.grace);
    let start = SystemTime::now();
    let cutoff = start.checked_sub(grace).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = GcReport::default();
    // Revision links the mark phase ignores (untagged manifests, in a dry run).
    let mut skip: HashSet<String> = HashSet::new();
    if options.delete_untagged {
        for (name, d, key, subject) in untagged(storage, cutoff).await? {
            if dry_run {
                skip.insert(key);
            } else {
                if let Some(s) = &subject {
                    storage.delete(&referrer_key(&name, s, &d)).await?;
                }
                storage.delete(&key).await?;
            }
            report.manifests_deleted.push((name, d));
        }
    }
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
        if is_rev && !skip.contains(&meta.key) {
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
