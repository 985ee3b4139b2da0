//! berth's images: where layers live and how they become a container's filesystem.
//!
//! - [`content::ContentStore`]: blobs addressed by digest. Writes go to `content/ingest/` and
//!   are renamed into `content/blobs/sha256/` only after the digest is verified.
//! - [`snapshot::Snapshots`]: each layer unpacked once into `snapshots/<chain-id>/fs`, shared
//!   read-only by every image and container that uses it; [`snapshot::mount_overlay`] stacks them
//!   under a container's writable upper directory.
//! - [`layer`]: applying a layer tar (plain, gzip or zstd) with Docker's whiteouts turned into
//!   overlayfs ones, refusing entries that would land outside the target.
//! - [`diff`]: an overlay upper directory as `docker diff`'s change list and as a layer tar
//!   (whiteouts as `.wh.` entries), for commit and build.
//! - [`archive`]: tar of plain directories, unpacked safely (`cp`, the files of `load`);
//!   [`transfer`]: `docker save`/`docker load` archives (docker-archive and OCI layout);
//!   [`usage`]: disk usage as `du` counts it.
//! - [`store::ImageStore`]: image records and tags in SQLite, import, lookup by id, prefix or
//!   reference, tag/untag/delete, history, RepoDigests.
//! - [`remote`]: the registry client — pull, push, login, token auth, mirrors.

pub mod archive;
pub mod content;
pub mod diff;
pub mod layer;
pub mod remote;
pub mod snapshot;
pub mod store;
pub mod transfer;
pub mod usage;

use std::path::PathBuf;

use oci::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("No such image: {0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidReference(#[from] oci::ReferenceError),
    #[error("import: {0}")]
    InvalidArchive(String),
    #[error("digest mismatch for `{path}`: expected {expected}, got {actual}")]
    DigestMismatch { path: PathBuf, expected: String, actual: String },
    #[error("conflict: unable to delete {image} (must be forced) - image is referenced in multiple repositories")]
    MultipleReferences { image: String },
    #[error(
        "conflict: unable to remove repository reference \"{reference}\" (must force) - container {container} is using its referenced image {image}"
    )]
    InUse { reference: String, container: String, image: String },
    #[error("{0}")]
    Conflict(String),
    #[error("unsafe path `{path}` in layer: {reason}")]
    UnsafePath { path: String, reason: &'static str },
    #[error("{op} `{path}`: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("corrupt image record `{id}`: {message}")]
    Corrupt { id: String, message: String },
    #[error("mount overlay on `{target}`: {message}")]
    Mount { target: PathBuf, message: String },
}

impl ImageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::InvalidReference(_) | ImageError::InvalidArchive(_) | ImageError::UnsafePath { .. } => {
                ErrorKind::InvalidArgument
            }
            ImageError::DigestMismatch { .. } => ErrorKind::InvalidArgument,
            ImageError::MultipleReferences { .. } | ImageError::InUse { .. } | ImageError::Conflict(_) => {
                ErrorKind::Conflict
            }
            ImageError::Io { .. } | ImageError::Db(_) | ImageError::Corrupt { .. } | ImageError::Mount { .. } => {
                ErrorKind::Internal
            }
        }
    }
}

pub(crate) fn io_err(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io { op, path, source }
}

/// A random hex string for temporary names.
pub(crate) fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}
