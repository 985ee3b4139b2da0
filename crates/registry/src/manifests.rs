//! Manifests, tags, the catalog and the referrers API of [`Registry`].
//!
//! A manifest's bytes are stored as a blob; the repository holds a revision link recording its
//! media type and size, and tags point at digests. A manifest is accepted only once every blob
//! (or child manifest, for an index) it names is present in the repository.

use std::collections::BTreeSet;

use bytes::Bytes;
use oci::Digest;
use oci::media_type::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{RegistryError, Result};
use crate::names::{self, ManifestRef, blob_key, layer_link, revision_link, tag_key};
use crate::registry::Registry;

/// Largest manifest accepted, as the spec suggests.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;

/// A content descriptor, as found in manifests and in the referrers index.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Value>,
}

/// The parts of any manifest or index the registry looks at.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ManifestDoc {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
    manifests: Option<Vec<Descriptor>>,
    subject: Option<Descriptor>,
    annotations: Option<serde_json::Map<String, Value>>,
}

/// What the revision link records about a manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Revision {
    media_type: String,
    size: u64,
}

/// A manifest as served.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    /// `None` for a HEAD.
    pub body: Option<Bytes>,
}

/// What a manifest PUT did.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub subject: Option<Digest>,
    /// Tags set by the request: the reference if it is a tag, or the `tag` parameters of a push by digest.
    pub tags: Vec<String>,
}

fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

fn base_type(s: &str) -> &str {
    s.split(';').next().unwrap_or("").trim()
}

impl Registry {
    fn invalid(name: &str, reference: &ManifestRef, reason: impl Into<String>) -> RegistryError {
        RegistryError::ManifestInvalid {
            name: name.to_owned(),
            reference: reference.to_string(),
            reason: reason.into(),
        }
    }

    /// Stores a manifest under `reference` after checking it parses and names only present content.
    /// `extra_tags` (the `tag` parameters of a push by digest) are pointed at it too.
    pub async fn manifest_put(
        &self,
        name: &str,
        reference: &ManifestRef,
        extra_tags: &[String],
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<PutManifest> {
        let mut tags: Vec<String> = match reference {
            ManifestRef::Tag(t) => vec![t.clone()],
            ManifestRef::Digest(_) => Vec::new(),
        };
        for t in extra_tags {
            if !names::is_tag(t) {
                return Err(RegistryError::TagInvalid { tag: t.clone() });
            }
            if !tags.contains(t) {
                tags.push(t.clone());
            }
        }
        let size = body.len() as u64;
        if size > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestTooLarge {
                name: name.to_owned(),
                reference: reference.to_string(),
                size,
                limit: MAX_MANIFEST_SIZE,
            });
        }
        let doc: ManifestDoc =
            serde_json::from_slice(&body).map_err(|e| Self::invalid(name, reference, format!("not JSON: {e}")))?;
        let declared = content_type.map(base_type).filter(|t| !t.is_empty());
        let media_type = match (declared, doc.media_type.as_deref()) {
            (Some(h), Some(b)) if h != b => {
                return Err(Self::invalid(name, reference, format!("content type {h} but mediaType {b}")));
            }
            (_, Some(b)) => b.to_owned(),
            (Some(h), None) if h != "application/json" && h != "application/octet-stream" => h.to_owned(),
            _ if doc.manifests.is_some() => OCI_INDEX.to_owned(),
            _ => OCI_MANIFEST.to_owned(),
        };
        if doc.schema_version != Some(2) {
            return Err(Self::invalid(name, reference, "schemaVersion must be 2"));
        }
        // Pushed by digest, the manifest is named by that digest's algorithm; by tag, by sha256.
        let digest = match reference {
            ManifestRef::Digest(d) => names::digest_of(d.algorithm(), &body)?,
            ManifestRef::Tag(_) => Digest::sha256_of(&body),
        };
        if let ManifestRef::Digest(d) = reference
            && d != &digest
        {
            return Err(RegistryError::DigestInvalid { value: format!("{d} (content is {digest})") });
        }
        let parse = |d: &Descriptor| -> Result<Digest> {
            d.digest.parse().map_err(|_| Self::invalid(name, reference, format!("bad digest {}", d.digest)))
        };
        match media_type.as_str() {
            OCI_MANIFEST | DOCKER_MANIFEST => {
                let config = doc.config.as_ref().ok_or_else(|| Self::invalid(name, reference, "no config"))?;
                let layers = doc.layers.as_deref().unwrap_or_default();
                if doc.layers.is_none() && media_type == DOCKER_MANIFEST {
                    return Err(Self::invalid(name, reference, "no layers"));
                }
                for d in std::iter::once(config).chain(layers) {
                    let digest = parse(d)?;
                    if d.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                        continue; // foreign layer, fetched from elsewhere
                    }
                    // Touch the link before checking the blob: a GC that has not seen this manifest
                    // then either keeps the blob or has already removed it, and the check fails.
                    let present = match self.storage.touch(&layer_link(name, &digest)).await {
                        Ok(()) => self.storage.stat(&blob_key(&digest)).await?.is_some(),
                        Err(e) if e.is_not_found() => false,
                        Err(e) => return Err(e.into()),
                    };
                    if !present {
                        return Err(RegistryError::ManifestBlobUnknown { name: name.to_owned(), digest });
                    }
                }
            }
            OCI_INDEX | DOCKER_MANIFEST_LIST => {
                let children =
                    doc.manifests.as_deref().ok_or_else(|| Self::invalid(name, reference, "no manifests"))?;
                for d in children {
                    let digest = parse(d)?;
                    let present = match self.storage.touch(&revision_link(name, &digest)).await {
                        Ok(()) => self.storage.stat(&blob_key(&digest)).await?.is_some(),
                        Err(e) if e.is_not_found() => false,
                        Err(e) => return Err(e.into()),
                    };
                    if !present {
                        return Err(RegistryError::ManifestBlobUnknown { name: name.to_owned(), digest });
                    }
                }
            }
            other => {
                return Err(Self::invalid(name, reference, format!("unsupported manifest media type {other}")));
            }
        }
        let subject = match &doc.subject {
            Some(s) => Some(parse(s)?),
            None => None,
        };
        self.storage.put(&blob_key(&digest), body).await?;
        let rev = Revision { media_type: media_type.clone(), size };
        let rev = serde_json::to_vec(&rev).expect("revision serializes");
        self.storage.put(&revision_link(name, &digest), Bytes::from(rev)).await?;
        if let Some(subject) = &subject {
            let artifact_type = doc
                .artifact_type
                .clone()
                .or_else(|| doc.config.as_ref().filter(|_| !is_index(&media_type)).map(|c| c.media_type.clone()));
            let desc = Descriptor {
                media_type: media_type.clone(),
                digest: digest.to_string(),
                size: size as i64,
                urls: None,
                artifact_type,
                annotations: doc.annotations.clone(),
                platform: None,
            };
            let json = serde_json::to_vec(&desc).expect("descriptor serializes");
            self.storage.put(&names::referrer_key(name, subject, &digest), Bytes::from(json)).await?;
        }
        for tag in &tags {
            self.storage.put(&tag_key(name, tag), Bytes::from(digest.to_string())).await?;
        }
        Ok(PutManifest { digest, media_type, size, subject, tags })
    }

    /// The digest a reference points to in `name`.
    pub async fn resolve(&self, name: &str, reference: &ManifestRef) -> Result<Digest> {
        let unknown = || RegistryError::ManifestUnknown { name: name.to_owned(), reference: reference.to_string() };
        match reference {
            ManifestRef::Digest(d) => Ok(d.clone()),
            ManifestRef::Tag(tag) => match self.storage.get(&tag_key(name, tag)).await {
                Ok(b) => std::str::from_utf8(&b).ok().and_then(|s| s.trim().parse().ok()).ok_or_else(unknown),
                Err(e) if e.is_not_found() => Err(unknown()),
                Err(e) => Err(e.into()),
            },
        }
    }

    async fn revision(&self, name: &str, reference: &ManifestRef, digest: &Digest) -> Result<Revision> {
        let unknown = || RegistryError::ManifestUnknown { name: name.to_owned(), reference: reference.to_string() };
        match self.storage.get(&revision_link(name, digest)).await {
            Ok(b) => serde_json::from_slice(&b).map_err(|_| unknown()),
            Err(e) if e.is_not_found() => Err(unknown()),
            Err(e) => Err(e.into()),
        }
    }

    /// Fetches a manifest (the body only if `with_body`), honouring the client's `accept` list: an
    /// index the client cannot take is replaced by its linux/amd64 entry, as Distribution does.
    pub async fn manifest_get(
        &self,
        name: &str,
        reference: &ManifestRef,
        accept: &[String],
        with_body: bool,
    ) -> Result<Manifest> {
        let digest = self.resolve(name, reference).await?;
        let rev = self.revision(name, reference, &digest).await?;
        let accepts = |t: &str| accept.is_empty() || accept.iter().any(|a| a == t || a == "*/*");
        if !accepts(&rev.media_type) {
            if is_index(&rev.media_type)
                && matches!(reference, ManifestRef::Tag(_))
                && let Some(child) = self.platform_child(name, &digest, &accepts).await?
            {
                return Box::pin(self.manifest_get(name, &ManifestRef::Digest(child), accept, with_body)).await;
            }
            return Err(RegistryError::ManifestNotAcceptable {
                name: name.to_owned(),
                reference: reference.to_string(),
                media_type: rev.media_type,
            });
        }
        let body = if with_body {
            match self.storage.get(&blob_key(&digest)).await {
                Ok(b) => Some(b),
                Err(e) if e.is_not_found() => {
                    return Err(RegistryError::ManifestUnknown {
                        name: name.to_owned(),
                        reference: reference.to_string(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        Ok(Manifest { digest, media_type: rev.media_type, size: rev.size, body })
    }

    async fn platform_child(
        &self,
        name: &str,
        index: &Digest,
        accepts: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<Option<Digest>> {
        let body = self.storage.get(&blob_key(index)).await?;
        let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&body) else { return Ok(None) };
        let _ = name;
        for d in doc.manifests.unwrap_or_default() {
            let platform = d.platform.as_ref();
            let field = |k: &str| platform.and_then(|p| p.get(k)).and_then(Value::as_str);
            if field("os") == Some("linux") && field("architecture") == Some("amd64") && accepts(&d.media_type) {
                return Ok(d.digest.parse().ok());
            }
        }
        Ok(None)
    }

    /// Deletes a tag (by tag) or a manifest and every tag pointing at it (by digest).
    pub async fn manifest_delete(&self, name: &str, reference: &ManifestRef) -> Result<()> {
        self.check_delete("manifest delete")?;
        let unknown = || RegistryError::ManifestUnknown { name: name.to_owned(), reference: reference.to_string() };
        match reference {
            ManifestRef::Tag(tag) => {
                if self.storage.stat(&tag_key(name, tag)).await?.is_none() {
                    return Err(unknown());
                }
                self.storage.delete(&tag_key(name, tag)).await?;
            }
            ManifestRef::Digest(digest) => {
                self.revision(name, reference, digest).await?;
                if let Ok(body) = self.storage.get(&blob_key(digest)).await
                    && let Ok(doc) = serde_json::from_slice::<ManifestDoc>(&body)
                    && let Some(subject) = doc.subject.and_then(|s| s.digest.parse::<Digest>().ok())
                {
                    self.storage.delete(&names::referrer_key(name, &subject, digest)).await?;
                }
                for tag in self.all_tags(name).await? {
                    if self.resolve(name, &ManifestRef::Tag(tag.clone())).await.ok().as_ref() == Some(digest) {
                        self.storage.delete(&tag_key(name, &tag)).await?;
                    }
                }
                self.storage.delete(&revision_link(name, digest)).await?;
            }
        }
        Ok(())
    }

    async fn all_tags(&self, name: &str) -> Result<BTreeSet<String>> {
        let prefix = names::tags_prefix(name);
        Ok(self
            .storage
            .list(&prefix)
            .await?
            .into_iter()
            .filter_map(|m| m.key.strip_prefix(&prefix).map(str::to_owned))
            .filter(|t| names::is_tag(t))
            .collect())
    }

    /// Tags of `name` after `last`, at most `n`; the bool says whether more follow.
    pub async fn tags(&self, name: &str, n: Option<usize>, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        let tags = self.all_tags(name).await?;
        if tags.is_empty() && self.storage.list(&format!("repositories/{name}/_manifests/")).await?.is_empty() {
            return Err(RegistryError::NameUnknown { name: name.to_owned() });
        }
        Ok(paginate(tags, n, last))
    }

    /// Repository names after `last`, at most `n`; the bool says whether more follow.
    pub async fn catalog(&self, n: Option<usize>, last: Option<&str>) -> Result<(Vec<String>, bool)> {
        let repos: BTreeSet<String> = self
            .storage
            .list("repositories/")
            .await?
            .into_iter()
            .filter_map(|m| {
                let rest = m.key.strip_prefix("repositories/")?;
                rest.find("/_manifests/").map(|i| rest[..i].to_owned())
            })
            .collect();
        Ok(paginate(repos, n, last))
    }

    /// Deletes a whole repository: its tags, manifest links and blob links.
    pub async fn repository_delete(&self, name: &str) -> Result<()> {
        self.check_delete("repository delete")?;
        if self.storage.list(&names::repo_prefix(name)).await?.is_empty() {
            return Err(RegistryError::NameUnknown { name: name.to_owned() });
        }
        self.storage.delete_prefix(&names::repo_prefix(name)).await?;
        Ok(())
    }

    /// The referrers of `subject` in `name` as an OCI image index, filtered by `artifact_type`.
    pub async fn referrers(&self, name: &str, subject: &Digest, artifact_type: Option<&str>) -> Result<Value> {
        let mut manifests = Vec::new();
        for meta in self.storage.list(&names::referrers_prefix(name, subject)).await? {
            let b = match self.storage.get(&meta.key).await {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(desc) = serde_json::from_slice::<Descriptor>(&b) else { continue };
            if artifact_type.is_some_and(|t| desc.artifact_type.as_deref() != Some(t)) {
                continue;
            }
            manifests.push(desc);
        }
        manifests.sort_by(|a, b| a.digest.cmp(&b.digest));
        Ok(serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }))
    }
}

fn paginate(items: BTreeSet<String>, n: Option<usize>, last: Option<&str>) -> (Vec<String>, bool) {
    let mut it = items.into_iter().filter(|t| last.is_none_or(|l| t.as_str() > l));
    match n {
        Some(n) => {
            let page: Vec<String> = it.by_ref().take(n).collect();
            let more = it.next().is_some();
            (page, more)
        }
        None => (it.collect(), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagination() {
        let set: BTreeSet<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(paginate(set.clone(), Some(2), None), (vec!["a".into(), "b".into()], true));
        assert_eq!(paginate(set.clone(), Some(2), Some("b")), (vec!["c".into()], false));
        assert_eq!(paginate(set.clone(), Some(0), None), (vec![], true));
        assert_eq!(paginate(set, None, Some("a")), (vec!["b".into(), "c".into()], false));
    }
}
