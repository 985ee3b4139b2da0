//! The S3 backend, over the `object_store` crate. S3 puts are atomic by nature; streamed writes use
//! `object_store`'s buffered writer (a single put when small, a multipart upload when large), which
//! S3 makes visible only when completed.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{ByteStream, ObjectMeta, ObjectWriter, Storage, StorageError, check_key};

/// Where the S3 bucket is and how to sign requests to it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// e.g. `http://127.0.0.1:9000` for an S3-compatible server; AWS when absent.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Key prefix inside the bucket.
    #[serde(default)]
    pub prefix: String,
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

/// Stores objects in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
}

fn backend(op: &'static str, key: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound { key: key.to_owned() },
        e => StorageError::Backend { op, key: key.to_owned(), source: Box::new(e) },
    }
}

impl S3Storage {
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        let mut b = AmazonS3Builder::new().with_bucket_name(&config.bucket).with_region(&config.region);
        if let Some(endpoint) = &config.endpoint {
            b = b
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"))
                .with_virtual_hosted_style_request(false);
        }
        if let Some(id) = &config.access_key_id {
            b = b.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            b = b.with_secret_access_key(secret);
        }
        let store = b.build().map_err(|e| backend("configure bucket", &config.bucket, e))?;
        let prefix = config.prefix.trim_matches('/').to_owned();
        Ok(S3Storage { store: Arc::new(store), prefix })
    }

    fn path(&self, key: &str) -> Result<Path, StorageError> {
        check_key(key)?;
        let key = key.trim_end_matches('/');
        Ok(if self.prefix.is_empty() { Path::from(key) } else { Path::from(format!("{}/{key}", self.prefix)) })
    }

    fn key_of(&self, path: &Path) -> String {
        let s = path.as_ref();
        if self.prefix.is_empty() {
            s.to_owned()
        } else {
            s.strip_prefix(&self.prefix).map(|s| s.trim_start_matches('/')).unwrap_or(s).to_owned()
        }
    }
}

#[async_trait]
impl Storage for S3Storage {
    async fn stat(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        match self.store.head(&self.path(key)?).await {
            Ok(m) => Ok(Some(ObjectMeta { key: key.to_owned(), size: m.size, modified: m.last_modified.into() })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend("stat", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let r = self.store.get(&self.path(key)?).await.map_err(|e| backend("get", key, e))?;
        r.bytes().await.map_err(|e| backend("read", key, e))
    }

    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream, StorageError> {
        if range.is_empty() {
            return Ok(futures_util::stream::empty().boxed());
        }
        let opts = GetOptions { range: Some(GetRange::Bounded(range)), ..Default::default() };
        let r = self.store.get_opts(&self.path(key)?, opts).await.map_err(|e| backend("get", key, e))?;
        Ok(r.into_stream().map_err(std::io::Error::other).boxed())
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.store.put(&self.path(key)?, PutPayload::from(data)).await.map_err(|e| backend("put", key, e))?;
        Ok(())
    }

    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        let path = self.path(key)?;
        Ok(Box::new(S3Writer { key: key.to_owned(), inner: BufWriter::new(self.store.clone(), path) }))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend("delete", key, e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        for meta in self.list(prefix).await? {
            self.delete(&meta.key).await?;
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let p = if prefix.is_empty() {
            (!self.prefix.is_empty()).then(|| Path::from(self.prefix.as_str()))
        } else {
            Some(self.path(prefix)?)
        };
        let metas: Vec<object_store::ObjectMeta> =
            self.store.list(p.as_ref()).try_collect().await.map_err(|e| backend("list", prefix, e))?;
        Ok(metas
            .into_iter()
            .map(|m| ObjectMeta { key: self.key_of(&m.location), size: m.size, modified: m.last_modified.into() })
            .collect())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.store.rename(&self.path(from)?, &self.path(to)?).await.map_err(|e| backend("rename", from, e))
    }

    async fn touch(&self, key: &str) -> Result<(), StorageError> {
        let data = self.get(key).await?;
        self.put(key, data).await
    }
}

struct S3Writer {
    key: String,
    inner: BufWriter,
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.inner.put(chunk).await.map_err(|e| backend("write", &self.key, e))
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        self.inner.shutdown().await.map_err(|e| StorageError::Io { op: "complete upload of", key: self.key, source: e })
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        self.inner.abort().await.map_err(|e| backend("abort upload of", &self.key, e))
    }
}
