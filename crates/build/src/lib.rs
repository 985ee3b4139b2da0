//! berth's builder: a Dockerfile and a context directory in, an image out.
//!
//! - [`parser`]: Dockerfile text → [`parser::Dockerfile`] (instructions with flags, exec or
//!   shell form, heredocs); every syntax error, with its line, before anything runs.
//! - [`words`]: variable substitution and quote removal (`$v`, `${v:-d}`, `${v:+a}`, `\$`).
//! - [`ignore`]: `.dockerignore` patterns (`**`, `!`), from `oci::dockerignore`.
//! - [`builder`]: the evaluator. Splits the file into stages, builds the ones the target needs
//!   (independent ones in parallel), each instruction one step that becomes an image: metadata
//!   steps change the config only, RUN runs in a container through a [`StepRunner`], COPY/ADD
//!   copy into an overlay mount; the overlay's upper directory becomes the layer.
//! - [`cache`]: step → image, persisted in metadata.db.
//! - [`fsutil`]: in-root path resolution, Docker's copy semantics, the sources' content hash.

pub mod builder;
pub mod cache;
pub mod fetch;
pub mod fsutil;
/// `.dockerignore` patterns (in `oci`, which the CLI shares).
pub use oci::dockerignore as ignore;
pub mod parser;
mod steps;
pub mod words;

use std::path::PathBuf;

use oci::ErrorKind;

pub use builder::{BuildOptions, Builder, Progress};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A syntax error in the Dockerfile, found before anything ran.
    #[error("dockerfile parse error on line {line} of {file}: {message}")]
    Parse { file: String, line: usize, message: String },
    /// An instruction that cannot be carried out as written (bad value, missing source…).
    #[error("{0}")]
    Invalid(String),
    /// A base image or `--from` image that is not here.
    #[error("{0}")]
    NotFound(String),
    /// A RUN whose command failed.
    #[error("The command '{command}' returned a non-zero code: {code}")]
    RunFailed { command: String, code: i64 },
    #[error("{0}")]
    Unsupported(String),
    /// The step runner could not run the step at all.
    #[error("run step: {0}")]
    Runner(String),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error("{op} `{path}`: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
}

impl BuildError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BuildError::Parse { .. } | BuildError::Invalid(_) | BuildError::RunFailed { .. } => {
                ErrorKind::InvalidArgument
            }
            BuildError::NotFound(_) => ErrorKind::NotFound,
            BuildError::Unsupported(_) => ErrorKind::Unsupported,
            BuildError::Image(e) => e.kind(),
            BuildError::Runner(_) | BuildError::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// One RUN step to run in a container.
#[derive(Debug, Clone)]
pub struct RunStep {
    /// A name for the step's container (64 hex characters, as a container id).
    pub id: String,
    /// The stage's filesystem, already mounted (an overlay whose upper becomes the layer).
    pub rootfs: PathBuf,
    pub argv: Vec<String>,
    /// The stage's environment with the build args it declared.
    pub env: Vec<String>,
    /// `USER` as written (name or id, optional group), resolved in the rootfs by the runner.
    pub user: String,
    pub workdir: String,
    /// `host`, `none` or `default`.
    pub network: String,
}

/// Runs RUN steps. The engine implements it with a real container (the shim and the
/// runtime); the lifecycle is one call: create the container on `rootfs`, start it, stream
/// its output to `output`, wait, delete it, return the exit code. It must leave nothing behind
/// (processes, mounts it made, cgroups, namespaces) whatever the outcome.
///
/// It also fetches the images a build names but does not have (FROM, `COPY --from=<image>`),
/// or all of them with `pull=1`: [`pull`](StepRunner::pull) reports its progress to
/// `progress` and returns the image, stored and tagged.
pub trait StepRunner: Send + Sync {
    fn run(&self, step: &RunStep, output: &mut dyn FnMut(&[u8])) -> Result<i64, BuildError>;

    /// Downloads an ADD source URL into the directory `dir`; returns the file and its name
    /// (the URL's last path component), its mtime the response's Last-Modified. The default
    /// speaks plain HTTP only; the engine's also https (system roots plus its certs.d).
    fn fetch(&self, url: &str, dir: &std::path::Path) -> Result<(PathBuf, String), BuildError> {
        fetch::download(url, dir)
    }

    fn pull(
        &self,
        reference: &oci::Reference,
        progress: &dyn Progress,
    ) -> Result<image::store::ImageRecord, BuildError> {
        let _ = progress;
        Err(BuildError::NotFound(format!("No such image: {}", reference.familiar())))
    }
}
