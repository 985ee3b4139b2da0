//! Where registry content lives: a flat key space of objects ("blobs/sha256/ab/abcd…") behind the
//! [`Storage`] trait, with a filesystem backend ([`FsStorage`]) and an S3 backend ([`S3Storage`]).
//!
//! Keys are `/`-separated, relative, never start with `/` and never contain `..`. Every write is
//! atomic: a reader sees either nothing or the whole object.

mod fs;
mod s3;

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use fs::FsStorage;
pub use s3::{S3Config, S3Storage};

/// A stream of an object's bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object {key} not found")]
    NotFound { key: String },
    #[error("invalid storage key `{key}`")]
    InvalidKey { key: String },
    #[error("{op} {key}: {source}")]
    Io {
        op: &'static str,
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {key}: {source}")]
    Backend {
        op: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StorageError {
    pub fn kind(&self) -> oci::ErrorKind {
        match self {
            StorageError::NotFound { .. } => oci::ErrorKind::NotFound,
            StorageError::InvalidKey { .. } => oci::ErrorKind::InvalidArgument,
            StorageError::Io { .. } | StorageError::Backend { .. } => oci::ErrorKind::Internal,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound { .. })
    }
}

/// What a listing or a stat tells about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// An object store. Implementations must make `put`, `writer(..).commit()` and `rename` atomic.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Size and modification time of `key`, or `None` if it does not exist.
    async fn stat(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError>;
    /// The whole object (for small objects: manifests, links).
    async fn get(&self, key: &str) -> Result<Bytes, StorageError>;
    /// A byte range of the object, streamed.
    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream, StorageError>;
    /// Writes a whole object atomically, replacing any previous one.
    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError>;
    /// Starts a streamed atomic write of `key`; nothing is visible until [`ObjectWriter::commit`].
    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError>;
    /// Removes `key`; removing a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// Removes every object under `prefix` (a "directory").
    async fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError>;
    /// Every object under `prefix`, recursively, in no particular order.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError>;
    /// Moves `from` to `to`, replacing `to`.
    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Sets the modification time of `key` to now (S3: rewrites the object if small). Used for GC safety.
    async fn touch(&self, key: &str) -> Result<(), StorageError>;
}

/// A streamed write in progress.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError>;
    /// Makes the object visible under its key, whole.
    async fn commit(self: Box<Self>) -> Result<(), StorageError>;
    /// Discards what was written.
    async fn abort(self: Box<Self>) -> Result<(), StorageError>;
}

/// Refuses keys that could escape the store.
pub(crate) fn check_key(key: &str) -> Result<(), StorageError> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.split('/').any(|c| c == ".." || c == ".")
        || key.contains('\0')
        || key.contains("//");
    if bad { Err(StorageError::InvalidKey { key: key.to_owned() }) } else { Ok(()) }
}
