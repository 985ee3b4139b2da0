//! [`Registry`]: the registry's operations on blobs and upload sessions, over a [`Storage`]. Manifests,
//! tags and referrers are in `manifests.rs`. Nothing here knows about HTTP.
//!
//! An upload session is `_uploads/<id>/`: an `info` file and one `parts/<offset>` object per chunk
//! received. The running sha256 state of a session is kept in memory so the digest is known when the
//! last chunk lands; after a restart, or for a `sha512` digest, it is computed from the parts. On the
//! final PUT the digest is checked, then the content is moved (one part: a rename; several:
//! concatenated) to its blob key and linked into the repository. Until then nothing of it is visible.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use oci::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{RegistryError, Result};
use crate::names::{self, blob_key, layer_link};
use crate::storage::{ByteStream, Storage};

/// Policy switches of a [`Registry`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Whether manifests, tags and blobs may be deleted through the API.
    pub delete_enabled: bool,
    /// Most upload sessions open at once; beyond it POST gets TOOMANYREQUESTS.
    pub max_uploads: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { delete_enabled: true, max_uploads: 10_000 }
    }
}

/// The registry over one store.
pub struct Registry {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) options: Options,
    uploads: Mutex<HashMap<String, Session>>,
}

/// How long an upload session may sit untouched before it is dropped from memory (its parts stay in
/// storage, and it is reloaded if the client comes back; `gc` removes it after its grace period).
const SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

type Shared = Arc<tokio::sync::Mutex<UploadState>>;

struct Session {
    state: Shared,
    touched: std::time::Instant,
}

impl Session {
    fn new(state: UploadState) -> Self {
        Session { state: Arc::new(tokio::sync::Mutex::new(state)), touched: std::time::Instant::now() }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct UploadInfo {
    repository: String,
    started: u64,
}

/// In-memory state of an upload session.
struct UploadState {
    repository: String,
    size: u64,
    /// Parts written, in order, with their sizes.
    parts: Vec<(String, u64)>,
    /// sha256 of everything so far; `None` when the session was loaded from storage.
    hasher: Option<Sha256>,
    /// Set once the session is finished or cancelled.
    closed: bool,
}

/// Where an upload stands: its id and the bytes received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadStatus {
    pub id: String,
    pub size: u64,
}

impl Registry {
    pub fn new(storage: Arc<dyn Storage>, options: Options) -> Self {
        Registry { storage, options, uploads: Mutex::new(HashMap::new()) }
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Size of blob `digest` if it is linked into repository `name`.
    pub async fn blob_size(&self, name: &str, digest: &Digest) -> Result<u64> {
        let unknown = || RegistryError::BlobUnknown { name: name.to_owned(), digest: digest.clone() };
        if self.storage.stat(&layer_link(name, digest)).await?.is_none() {
            return Err(unknown());
        }
        match self.storage.stat(&blob_key(digest)).await? {
            Some(meta) => Ok(meta.size),
            None => Err(unknown()),
        }
    }

    /// Streams `range` of blob `digest` (which must be linked into `name`).
    pub async fn blob_read(&self, name: &str, digest: &Digest, range: Range<u64>) -> Result<ByteStream> {
        self.storage.read(&blob_key(digest), range).await.map_err(|e| match e {
            e if e.is_not_found() => RegistryError::BlobUnknown { name: name.to_owned(), digest: digest.clone() },
            e => e.into(),
        })
    }

    /// Unlinks blob `digest` from `name`; the content goes at the next GC if nothing else uses it.
    pub async fn blob_delete(&self, name: &str, digest: &Digest) -> Result<()> {
        self.check_delete("blob delete")?;
        self.blob_size(name, digest).await?;
        self.storage.delete(&layer_link(name, digest)).await?;
        Ok(())
    }

    pub(crate) fn check_delete(&self, what: &str) -> Result<()> {
        if self.options.delete_enabled { Ok(()) } else { Err(RegistryError::Unsupported { what: what.to_owned() }) }
    }

    /// Links a blob into a repository (or refreshes the link's time, which GC reads).
    pub(crate) async fn link_blob(&self, name: &str, digest: &Digest) -> Result<()> {
        self.storage.put(&layer_link(name, digest), Bytes::from(digest.to_string())).await?;
        Ok(())
    }

    /// Cross-repository mount: links `digest` from `from` into `name` if `from` has it.
    pub async fn mount(&self, name: &str, from: &str, digest: &Digest) -> Result<bool> {
        if self.storage.stat(&layer_link(from, digest)).await?.is_none() {
            return Ok(false);
        }
        // Link before checking the content, for the same GC ordering as upload_finish.
        self.link_blob(name, digest).await?;
        if self.storage.stat(&blob_key(digest)).await?.is_some() {
            return Ok(true);
        }
        self.storage.delete(&layer_link(name, digest)).await?;
        Ok(false)
    }

    /// Opens an upload session for repository `name`.
    pub async fn upload_start(&self, name: &str) -> Result<UploadStatus> {
        let open = {
            let mut sessions = self.sessions();
            // Forget sessions abandoned by their clients, so they do not count against the limit.
            sessions.retain(|_, s| s.touched.elapsed() < SESSION_IDLE || Arc::strong_count(&s.state) > 1);
            sessions.len()
        };
        if open >= self.options.max_uploads {
            return Err(RegistryError::TooManyRequests { what: format!("{open} upload sessions open") });
        }
        let id = uuid_v4();
        let started = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let info = UploadInfo { repository: name.to_owned(), started };
        let json = serde_json::to_vec(&info).expect("upload info serializes");
        self.storage.put(&names::upload_info(&id), Bytes::from(json)).await?;
        let state = UploadState {
            repository: name.to_owned(),
            size: 0,
            parts: Vec::new(),
            hasher: Some(Sha256::new()),
            closed: false,
        };
        self.sessions().insert(id.clone(), Session::new(state));
        Ok(UploadStatus { id, size: 0 })
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A poisoned map only means a panic elsewhere mid-insert; the map itself is still consistent.
        self.uploads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The session `id` of repository `name`, from memory or reloaded from storage.
    async fn session(&self, name: &str, id: &str) -> Result<Shared> {
        let unknown = || RegistryError::UploadUnknown { id: id.to_owned() };
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(unknown());
        }
        let existing = self.sessions().get_mut(id).map(|s| {
            s.touched = std::time::Instant::now();
            s.state.clone()
        });
        let state = match existing {
            Some(s) => s,
            None => {
                let info = match self.storage.get(&names::upload_info(id)).await {
                    Ok(b) => b,
                    Err(e) if e.is_not_found() => return Err(unknown()),
                    Err(e) => return Err(e.into()),
                };
                let info: UploadInfo = serde_json::from_slice(&info).map_err(|_| unknown())?;
                let mut parts: Vec<(String, u64)> =
                    self.storage.list(&names::upload_parts(id)).await?.into_iter().map(|m| (m.key, m.size)).collect();
                parts.sort();
                let size = parts.iter().map(|p| p.1).sum();
                let state = UploadState { repository: info.repository, size, parts, hasher: None, closed: false };
                self.sessions().entry(id.to_owned()).or_insert_with(|| Session::new(state)).state.clone()
            }
        };
        if state.lock().await.repository != name {
            return Err(unknown());
        }
        Ok(state)
    }

    /// Where upload `id` stands.
    pub async fn upload_status(&self, name: &str, id: &str) -> Result<UploadStatus> {
        let state = self.session(name, id).await?;
        let st = state.lock().await;
        if st.closed {
            return Err(RegistryError::UploadUnknown { id: id.to_owned() });
        }
        Ok(UploadStatus { id: id.to_owned(), size: st.size })
    }

    /// Appends a chunk. `start`, from Content-Range, must equal the bytes received so far.
    pub async fn upload_append(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadStatus> {
        let state = self.session(name, id).await?;
        let mut st = state.lock().await;
        self.append_checked(id, &mut st, start, body).await?;
        Ok(UploadStatus { id: id.to_owned(), size: st.size })
    }

    /// Appends a chunk to an open session whose size so far is `start` (from Content-Range),
    /// the check PATCH and the closing PUT share.
    async fn append_checked(&self, id: &str, st: &mut UploadState, start: Option<u64>, body: ByteStream) -> Result<()> {
        if st.closed {
            return Err(RegistryError::UploadUnknown { id: id.to_owned() });
        }
        if let Some(start) = start
            && start != st.size
        {
            return Err(RegistryError::UploadRange { id: id.to_owned(), expected: st.size, got: start });
        }
        self.write_part(id, st, body).await
    }

    async fn write_part(&self, id: &str, st: &mut UploadState, mut body: ByteStream) -> Result<()> {
        let key = names::upload_part(id, st.size);
        let mut hasher = st.hasher.clone();
        let mut writer = None;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    if let Some(w) = writer {
                        let _ = crate::storage::ObjectWriter::abort(w).await;
                    }
                    return Err(RegistryError::BodyRead { what: format!("upload {id}"), reason: e.to_string() });
                }
            };
            if chunk.is_empty() {
                continue;
            }
            if writer.is_none() {
                writer = Some(self.storage.writer(&key).await?);
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            written += chunk.len() as u64;
            if let Some(w) = writer.as_mut()
                && let Err(e) = w.write(chunk).await
            {
                if let Some(w) = writer.take() {
                    let _ = w.abort().await;
                }
                return Err(e.into());
            }
        }
        if let Some(w) = writer {
            w.commit().await?;
            st.parts.push((key, written));
            st.size += written;
            st.hasher = hasher;
        }
        Ok(())
    }

    /// Completes upload `id`: appends `body` (whose `start`, from Content-Range, must equal the bytes
    /// received so far, or the session is left as it was), checks the content against `digest`, then
    /// makes the blob visible in `name`. On a mismatch the session is discarded and nothing becomes visible.
    pub async fn upload_finish(
        &self,
        name: &str,
        id: &str,
        start: Option<u64>,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        let state = self.session(name, id).await?;
        let mut st = state.lock().await;
        self.append_checked(id, &mut st, start, body).await?;
        let actual = match (digest.algorithm(), st.hasher.clone()) {
            ("sha256", Some(h)) => names::digest_from_hex("sha256", &hex::encode(h.finalize()))?,
            ("sha256", None) => names::digest_from_hex("sha256", &self.hash_parts::<Sha256>(&st.parts).await?)?,
            // sha512 uploads are rare: hash what was stored rather than run a second hasher on every upload.
            ("sha512", _) => names::digest_from_hex("sha512", &self.hash_parts::<Sha512>(&st.parts).await?)?,
            _ => return Err(RegistryError::DigestInvalid { value: digest.to_string() }),
        };
        if &actual != digest {
            st.closed = true;
            self.drop_session(id).await;
            return Err(RegistryError::DigestMismatch { id: id.to_owned(), expected: digest.clone(), actual });
        }
        // Link first, then check for the content: a concurrent GC either sees the fresh link and keeps
        // an existing blob, or has removed it already and the parts are moved in below.
        self.link_blob(name, digest).await?;
        let dest = blob_key(digest);
        if self.storage.stat(&dest).await?.is_none() {
            match st.parts.as_slice() {
                [] => self.storage.put(&dest, Bytes::new()).await?,
                [(only, _)] => self.storage.rename(only, &dest).await?,
                parts => {
                    let mut w = self.storage.writer(&dest).await?;
                    for (key, size) in parts {
                        let mut s = self.storage.read(key, 0..*size).await?;
                        while let Some(chunk) = s.next().await {
                            let chunk = chunk.map_err(|source| crate::storage::StorageError::Io {
                                op: "read",
                                key: key.clone(),
                                source,
                            })?;
                            w.write(chunk).await?;
                        }
                    }
                    w.commit().await?;
                }
            }
        }
        st.closed = true;
        let size = st.size;
        self.drop_session(id).await;
        Ok(size)
    }

    /// The hex digest, by hash `H`, of the parts of an upload.
    async fn hash_parts<H: sha2::Digest>(&self, parts: &[(String, u64)]) -> Result<String> {
        let mut h = H::new();
        for (key, size) in parts {
            let mut s = self.storage.read(key, 0..*size).await?;
            while let Some(chunk) = s.next().await {
                let chunk = chunk.map_err(|source| crate::storage::StorageError::Io {
                    op: "read",
                    key: key.clone(),
                    source,
                })?;
                h.update(&chunk);
            }
        }
        Ok(hex::encode(h.finalize()))
    }

    /// Cancels upload `id`, removing what it received.
    pub async fn upload_cancel(&self, name: &str, id: &str) -> Result<()> {
        let state = self.session(name, id).await?;
        let mut st = state.lock().await;
        if st.closed {
            return Err(RegistryError::UploadUnknown { id: id.to_owned() });
        }
        st.closed = true;
        self.drop_session(id).await;
        Ok(())
    }

    async fn drop_session(&self, id: &str) {
        self.sessions().remove(id);
        if let Err(e) = self.storage.delete_prefix(&format!("_uploads/{id}/")).await {
            tracing::warn!(upload = id, error = %e, "removing upload session");
        }
    }

    /// Number of upload sessions held in memory (for metrics).
    pub fn uploads_open(&self) -> usize {
        self.sessions().len()
    }
}

/// A random (version 4) UUID, as Distribution names upload sessions.
pub fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
