//! Shared vocabulary of berth, with no I/O.
//!
//! - [`Digest`]: a content address (`sha256:<64 hex>`), parsed and validated once.
//! - [`Reference`]: an image name as users type it (`busybox`, `user/app:1`,
//!   `host:5000/a/b@sha256:…`), normalised the way Docker does
//!   (`docker.io/library/busybox:latest`).
//! - [`ErrorKind`]: the classification every library error maps to; the engine turns it
//!   into an HTTP status in exactly one place.
//! - [`media_type`]: the media type strings of OCI and Docker manifests and layers.
//! - [`dockerignore`]: `.dockerignore` patterns, shared by the CLI (which leaves ignored
//!   files out of the context it sends) and the builder.
//!
//! The OCI image and runtime types themselves come from the `oci-spec` crate, re-exported
//! as [`spec`].

pub use oci_spec as spec;

mod digest;
pub mod dockerignore;
mod reference;

pub use digest::{Digest, DigestError, Sha256Writer};
pub use reference::{Reference, ReferenceError, valid_path_component};

/// What kind of failure an error is, independent of where it happened.
///
/// Each crate's error enum has a `kind()` returning one of these; the engine maps a kind to
/// an HTTP status in one exhaustive match (house style rule 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist (404).
    NotFound,
    /// The request conflicts with the object's current state (409).
    Conflict,
    /// The request itself is malformed (400).
    InvalidArgument,
    /// The operation is not supported by this engine or host (501).
    Unsupported,
    /// The caller lacks the rights (403).
    Forbidden,
    /// The caller's credentials were refused (401), e.g. a registry login.
    Unauthorized,
    /// Anything else: I/O, a child process failing, a bug (500).
    Internal,
}

/// Media types of manifests, configs and layers, OCI and Docker.
pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
}
