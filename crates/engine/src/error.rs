//! The engine's errors and the one place they become HTTP statuses.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use oci::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such exec instance: {0}")]
    NoSuchExec(String),
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    #[error("get {0}: no such volume")]
    NoSuchVolume(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("Container {0} is not running")]
    NotRunning(String),
    #[error("Container {0} is paused, unpause the container before stopping or killing")]
    Paused(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("not modified")]
    NotModified,
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Image(#[from] image::ImageError),
    #[error(transparent)]
    Runtime(#[from] runtime::RuntimeError),
    #[error(transparent)]
    Remote(#[from] image::remote::RemoteError),
    #[error(transparent)]
    Network(#[from] network::NetworkError),
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Build(#[from] build::BuildError),
    #[error("{0}")]
    Internal(String),
}

impl EngineError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::NoSuchContainer(_)
            | EngineError::NoSuchExec(_)
            | EngineError::NoSuchNetwork(_)
            | EngineError::NoSuchVolume(_)
            | EngineError::NotFound(_) => ErrorKind::NotFound,
            EngineError::Forbidden(_) => ErrorKind::Forbidden,
            EngineError::NotRunning(_) | EngineError::Paused(_) | EngineError::Conflict(_) => ErrorKind::Conflict,
            EngineError::BadRequest(_) => ErrorKind::InvalidArgument,
            EngineError::Unsupported(_) => ErrorKind::Unsupported,
            EngineError::Image(e) => e.kind(),
            EngineError::Runtime(e) => e.kind(),
            EngineError::Remote(e) => e.kind(),
            EngineError::Network(e) => e.kind(),
            EngineError::Build(e) => e.kind(),
            EngineError::NotModified | EngineError::Db(_) | EngineError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        EngineError::Internal(e.to_string())
    }
}

/// The one mapping from error kind to HTTP status (house style rule 3).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for EngineError {
    fn into_response(self) -> Response {
        if matches!(self, EngineError::NotModified) {
            return StatusCode::NOT_MODIFIED.into_response();
        }
        let status = status_of(self.kind());
        if status.is_server_error() {
            tracing::error!("{self}");
        } else {
            tracing::debug!("{self}");
        }
        (status, axum::Json(api::types::ErrorResponse { message: self.to_string() })).into_response()
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
