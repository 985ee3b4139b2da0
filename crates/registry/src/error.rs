//! The registry's error type and the one place that maps it to an HTTP status and a spec error code.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use oci::Digest;

use crate::storage::StorageError;

/// The error codes of the OCI Distribution Spec 1.1 (plus `UNKNOWN` for server faults, as Distribution does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    Unknown,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::Unknown => "UNKNOWN",
        }
    }
}

/// Everything a registry operation can fail with. Each variant carries the object it is about.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob {digest} unknown to repository {name}")]
    BlobUnknown { name: String, digest: Digest },
    #[error("blob upload {id} unknown")]
    UploadUnknown { id: String },
    #[error("blob upload {id} invalid: {reason}")]
    UploadInvalid { id: String, reason: String },
    #[error("blob upload {id} out of order: chunk starts at {got}, upload has {expected} bytes")]
    UploadRange { id: String, expected: u64, got: u64 },
    #[error("upload {id} digest mismatch: client said {expected}, content is {actual}")]
    DigestMismatch { id: String, expected: Digest, actual: Digest },
    #[error("invalid digest `{value}`")]
    DigestInvalid { value: String },
    #[error("manifest {reference} unknown to repository {name}")]
    ManifestUnknown { name: String, reference: String },
    #[error("manifest {reference} of {name} is {media_type}, which the client does not accept")]
    ManifestNotAcceptable { name: String, reference: String, media_type: String },
    #[error("manifest references blob {digest} unknown to repository {name}")]
    ManifestBlobUnknown { name: String, digest: Digest },
    #[error("manifest for {name}:{reference} invalid: {reason}")]
    ManifestInvalid { name: String, reference: String, reason: String },
    #[error("manifest for {name}:{reference} is {size} bytes, over the {limit} byte limit")]
    ManifestTooLarge { name: String, reference: String, size: u64, limit: u64 },
    #[error("invalid repository name `{name}`")]
    NameInvalid { name: String },
    #[error("invalid tag `{tag}`")]
    TagInvalid { tag: String },
    #[error("repository {name} unknown")]
    NameUnknown { name: String },
    #[error("size invalid for {what}: {reason}")]
    SizeInvalid { what: String, reason: String },
    #[error("range {range} not satisfiable for blob {digest} of {size} bytes")]
    RangeNotSatisfiable { digest: Digest, range: String, size: u64 },
    #[error("authentication required for {what}")]
    Unauthorized { what: String, challenge: String },
    #[error("access to {what} denied for {user}")]
    Denied { what: String, user: String },
    #[error("{what} is not supported by this registry")]
    Unsupported { what: String },
    #[error("too many requests: {what}")]
    TooManyRequests { what: String },
    #[error("reading request body for {what}: {reason}")]
    BodyRead { what: String, reason: String },
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// The spec error code this error is reported with.
    pub fn code(&self) -> ErrorCode {
        self.classify().1
    }

    /// The classification shared with the rest of berth.
    pub fn kind(&self) -> oci::ErrorKind {
        use oci::ErrorKind as K;
        match self.classify().0 {
            StatusCode::NOT_FOUND => K::NotFound,
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => K::Forbidden,
            StatusCode::METHOD_NOT_ALLOWED => K::Unsupported,
            StatusCode::RANGE_NOT_SATISFIABLE | StatusCode::TOO_MANY_REQUESTS => K::Conflict,
            s if s.is_client_error() => K::InvalidArgument,
            _ => K::Internal,
        }
    }

    /// HTTP status and spec code: the one mapping of errors to the wire.
    pub fn classify(&self) -> (StatusCode, ErrorCode) {
        use ErrorCode as C;
        use RegistryError as E;
        match self {
            E::BlobUnknown { .. } => (StatusCode::NOT_FOUND, C::BlobUnknown),
            E::UploadUnknown { .. } => (StatusCode::NOT_FOUND, C::BlobUploadUnknown),
            E::UploadInvalid { .. } | E::BodyRead { .. } => (StatusCode::BAD_REQUEST, C::BlobUploadInvalid),
            E::UploadRange { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, C::BlobUploadInvalid),
            E::DigestMismatch { .. } | E::DigestInvalid { .. } => (StatusCode::BAD_REQUEST, C::DigestInvalid),
            E::ManifestUnknown { .. } | E::ManifestNotAcceptable { .. } => (StatusCode::NOT_FOUND, C::ManifestUnknown),
            E::ManifestBlobUnknown { .. } => (StatusCode::BAD_REQUEST, C::ManifestBlobUnknown),
            E::ManifestInvalid { .. } | E::TagInvalid { .. } => (StatusCode::BAD_REQUEST, C::ManifestInvalid),
            E::ManifestTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, C::SizeInvalid),
            E::NameInvalid { .. } => (StatusCode::BAD_REQUEST, C::NameInvalid),
            E::NameUnknown { .. } => (StatusCode::NOT_FOUND, C::NameUnknown),
            E::SizeInvalid { .. } => (StatusCode::BAD_REQUEST, C::SizeInvalid),
            E::RangeNotSatisfiable { .. } => (StatusCode::RANGE_NOT_SATISFIABLE, C::SizeInvalid),
            E::Unauthorized { .. } => (StatusCode::UNAUTHORIZED, C::Unauthorized),
            E::Denied { .. } => (StatusCode::FORBIDDEN, C::Denied),
            E::Unsupported { .. } => (StatusCode::METHOD_NOT_ALLOWED, C::Unsupported),
            E::TooManyRequests { .. } => (StatusCode::TOO_MANY_REQUESTS, C::TooManyRequests),
            E::Storage(StorageError::NotFound { .. }) => (StatusCode::NOT_FOUND, C::BlobUnknown),
            E::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, C::Unknown),
        }
    }
}

/// The spec's JSON error body: `{"errors":[{"code":…,"message":…,"detail":…}]}`.
pub fn error_body(code: ErrorCode, message: &str) -> String {
    serde_json::json!({ "errors": [{ "code": code.as_str(), "message": message, "detail": null }] }).to_string()
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code) = self.classify();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        } else {
            tracing::debug!(error = %self, code = code.as_str(), "request refused");
        }
        let mut resp = (status, error_body(code, &self.to_string())).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let RegistryError::Unauthorized { challenge, .. } = &self
            && let Ok(v) = HeaderValue::from_str(challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_to_status_and_code() {
        let d = Digest::sha256_of(b"");
        let cases: Vec<(RegistryError, u16, &str)> = vec![
            (RegistryError::BlobUnknown { name: "a".into(), digest: d.clone() }, 404, "BLOB_UNKNOWN"),
            (RegistryError::UploadUnknown { id: "u".into() }, 404, "BLOB_UPLOAD_UNKNOWN"),
            (RegistryError::UploadRange { id: "u".into(), expected: 1, got: 2 }, 416, "BLOB_UPLOAD_INVALID"),
            (RegistryError::DigestInvalid { value: "x".into() }, 400, "DIGEST_INVALID"),
            (
                RegistryError::ManifestTooLarge { name: "a".into(), reference: "t".into(), size: 9, limit: 1 },
                413,
                "SIZE_INVALID",
            ),
            (RegistryError::NameInvalid { name: "A".into() }, 400, "NAME_INVALID"),
            (RegistryError::NameUnknown { name: "a".into() }, 404, "NAME_UNKNOWN"),
            (RegistryError::Unauthorized { what: "x".into(), challenge: "Basic".into() }, 401, "UNAUTHORIZED"),
            (RegistryError::Denied { what: "x".into(), user: "u".into() }, 403, "DENIED"),
            (RegistryError::Unsupported { what: "x".into() }, 405, "UNSUPPORTED"),
            (RegistryError::TooManyRequests { what: "x".into() }, 429, "TOOMANYREQUESTS"),
            (RegistryError::Storage(StorageError::InvalidKey { key: "k".into() }), 500, "UNKNOWN"),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.classify().0.as_u16(), e.code().as_str()), (status, code), "{e}");
        }
        let e = RegistryError::Unauthorized { what: "x".into(), challenge: "Basic realm=\"r\"".into() };
        let r = e.into_response();
        assert_eq!(r.headers().get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Basic realm=\"r\""));
        assert_eq!(RegistryError::NameUnknown { name: "a".into() }.kind(), oci::ErrorKind::NotFound);
    }
}
