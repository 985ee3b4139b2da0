//! The HTTP face of the registry: the route table, authorization per route, and the handlers that
//! turn requests into [`Registry`] calls and results into spec responses.
//!
//! Repository names contain `/`, so routes are parsed by hand from the path's tail
//! (`…/blobs/uploads/<id>`, `…/blobs/<digest>`, `…/manifests/<ref>`, `…/tags/list`, `…/referrers/<digest>`).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use oci::Digest;

use crate::auth::{Auth, Scope};
use crate::error::{ErrorCode, RegistryError, Result, error_body};
use crate::manifests::MAX_MANIFEST_SIZE;
use crate::metrics::Metrics;
use crate::names::{ManifestRef, parse_digest, validate_name};
use crate::notify::{Action, Event, Notifier};
use crate::registry::Registry;
use crate::storage::ByteStream;

/// Shared state of the HTTP server.
pub struct AppState {
    pub registry: Registry,
    pub auth: Auth,
    pub metrics: Arc<Metrics>,
    pub notifier: Option<Notifier>,
    pub tls: bool,
}

/// What a request path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Base,
    Catalog,
    Token,
    Metrics,
    Blob {
        name: String,
        digest: String,
    },
    UploadStart {
        name: String,
    },
    Upload {
        name: String,
        id: String,
    },
    Manifest {
        name: String,
        reference: String,
    },
    Tags {
        name: String,
    },
    Referrers {
        name: String,
        digest: String,
    },
    /// `/v2/<name>/` (berth extension: DELETE removes the repository).
    Repository {
        name: String,
    },
}

impl Route {
    pub fn parse(path: &str) -> Option<Route> {
        match path {
            "/token" => return Some(Route::Token),
            "/metrics" => return Some(Route::Metrics),
            "/v2" | "/v2/" => return Some(Route::Base),
            "/v2/_catalog" => return Some(Route::Catalog),
            _ => {}
        }
        let rest = path.strip_prefix("/v2/")?;
        let own = |s: &str| s.to_owned();
        if let Some(name) = rest.strip_suffix("/tags/list") {
            return Some(Route::Tags { name: own(name) });
        }
        if let Some(name) = rest.strip_suffix("/blobs/uploads").or_else(|| rest.strip_suffix("/blobs/uploads/")) {
            return Some(Route::UploadStart { name: own(name) });
        }
        if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
            return Some(Route::Upload { name: own(name), id: own(id) });
        }
        if let Some((name, digest)) = rest.rsplit_once("/blobs/") {
            return Some(Route::Blob { name: own(name), digest: own(digest) });
        }
        if let Some((name, reference)) = rest.rsplit_once("/manifests/") {
            return Some(Route::Manifest { name: own(name), reference: own(reference) });
        }
        if let Some((name, digest)) = rest.rsplit_once("/referrers/") {
            return Some(Route::Referrers { name: own(name), digest: own(digest) });
        }
        rest.strip_suffix('/').map(|name| Route::Repository { name: own(name) })
    }

    fn name(&self) -> Option<&str> {
        match self {
            Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Manifest { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. }
            | Route::Repository { name } => Some(name),
            _ => None,
        }
    }

    /// A short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Token => "token",
            Route::Metrics => "metrics",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } | Route::Upload { .. } => "upload",
            Route::Manifest { .. } => "manifest",
            Route::Tags { .. } => "tags",
            Route::Referrers { .. } => "referrers",
            Route::Repository { .. } => "repository",
        }
    }

    /// What the request needs to be allowed to do.
    fn scope(&self, method: &Method) -> Option<Scope> {
        let actions = match *method {
            Method::GET | Method::HEAD => vec!["pull"],
            Method::DELETE => vec!["delete"],
            _ => vec!["pull", "push"],
        };
        match self {
            Route::Token | Route::Metrics => None,
            Route::Base => Some(Scope::Base),
            Route::Catalog => Some(Scope::Catalog),
            r => r.name().map(|n| Scope::Repository { name: n.to_owned(), actions }),
        }
    }
}

/// Query parameters, percent-decoded, repeated keys kept.
fn query(req: &Request) -> Vec<(String, String)> {
    let q = req.uri().query().unwrap_or("");
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

fn first<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The one entry point: parses the route, authorizes, dispatches, records metrics and logs.
pub async fn handle(State(state): State<Arc<AppState>>, req: Request) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let route = Route::parse(&path);
    let label = route.as_ref().map(Route::label).unwrap_or("unknown");
    let mut resp = match route {
        Some(route) => dispatch(&state, route, req).await.unwrap_or_else(IntoResponse::into_response),
        None => not_found(&path),
    };
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    let status = resp.status().as_u16();
    state.metrics.record_request(method.as_str(), label, status, started.elapsed());
    tracing::info!(%method, path, status, route = label, elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

fn not_found(path: &str) -> Response {
    let body = error_body(ErrorCode::Unsupported, &format!("no route for {path}"));
    (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn header_str(h: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn dispatch(state: &Arc<AppState>, route: Route, req: Request) -> Result<Response> {
    if let Some(name) = route.name() {
        validate_name(name)?;
    }
    let method = req.method().clone();
    let user = match route.scope(&method) {
        Some(scope) => {
            let h = req.headers();
            let host = header_str(h, header::HOST).unwrap_or("localhost");
            let scheme = if state.tls { "https" } else { "http" };
            state.auth.authorize(header_str(h, header::AUTHORIZATION), host, scheme, &scope).await?
        }
        None => String::new(),
    };
    let cx = Cx { state, user, q: query(&req) };
    use Method as M;
    use Route as R;
    match (method, route) {
        (M::GET | M::HEAD, R::Base) => {
            Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], "{}").into_response())
        }
        (M::GET, R::Catalog) => cx.catalog().await,
        (M::GET | M::POST, R::Token) => cx.token(req).await,
        (M::GET, R::Metrics) => Ok(state.metrics.render(state.registry.uploads_open())),
        (m @ (M::GET | M::HEAD), R::Blob { name, digest }) => cx.blob_get(&name, &digest, m == M::HEAD, req).await,
        (M::DELETE, R::Blob { name, digest }) => cx.blob_delete(&name, &digest).await,
        (M::POST, R::UploadStart { name }) => cx.upload_start(&name, req).await,
        (M::GET, R::Upload { name, id }) => cx.upload_status(&name, &id).await,
        (M::PATCH, R::Upload { name, id }) => cx.upload_patch(&name, &id, req).await,
        (M::PUT, R::Upload { name, id }) => cx.upload_put(&name, &id, req).await,
        (M::DELETE, R::Upload { name, id }) => cx.upload_cancel(&name, &id).await,
        (m @ (M::GET | M::HEAD), R::Manifest { name, reference }) => {
            cx.manifest_get(&name, &reference, m == M::HEAD, req).await
        }
        (M::PUT, R::Manifest { name, reference }) => cx.manifest_put(&name, &reference, req).await,
        (M::DELETE, R::Manifest { name, reference }) => cx.manifest_delete(&name, &reference).await,
        (M::GET, R::Tags { name }) => cx.tags(&name).await,
        (M::GET, R::Referrers { name, digest }) => cx.referrers(&name, &digest).await,
        (M::DELETE, R::Repository { name }) => cx.repository_delete(&name).await,
        (m, r) => Err(RegistryError::Unsupported { what: format!("{m} on {}", r.label()) }),
    }
}

/// One request's context.
struct Cx<'a> {
    state: &'a Arc<AppState>,
    user: String,
    q: Vec<(String, String)>,
}

fn body_stream(req: Request, metrics: &Metrics) -> ByteStream {
    let counter = metrics.bytes_received.clone();
    req.into_body()
        .into_data_stream()
        .map_ok(move |b| {
            counter.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            b
        })
        .map_err(std::io::Error::other)
        .boxed()
}

fn h(v: impl AsRef<str>) -> HeaderValue {
    HeaderValue::from_str(v.as_ref()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn upload_headers(status: StatusCode, name: &str, id: &str, size: u64) -> Response {
    let range = if size == 0 { "0-0".to_owned() } else { format!("0-{}", size - 1) };
    let mut r = status.into_response();
    let hm = r.headers_mut();
    hm.insert(header::LOCATION, h(format!("/v2/{name}/blobs/uploads/{id}")));
    hm.insert(header::RANGE, h(range));
    hm.insert("docker-upload-uuid", h(id));
    hm.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn created_blob(name: &str, digest: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let hm = r.headers_mut();
    hm.insert(header::LOCATION, h(format!("/v2/{name}/blobs/{digest}")));
    hm.insert("docker-content-digest", h(digest.to_string()));
    hm.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn link_header(r: &mut Response, path: &str, n: Option<usize>, last: Option<&String>) {
    if let Some(last) = last {
        let mut url = format!("{path}?");
        if let Some(n) = n {
            url.push_str(&format!("n={n}&"));
        }
        url.push_str(&format!("last={}", form_urlencoded::byte_serialize(last.as_bytes()).collect::<String>()));
        r.headers_mut().insert(header::LINK, h(format!("<{url}>; rel=\"next\"")));
    }
}

/// Where a chunk of upload `id` says it starts, from its Content-Range (`a-b`, also `bytes a-b/n`).
fn chunk_start(headers: &HeaderMap, id: &str) -> Result<Option<u64>> {
    let Some(v) = header_str(headers, header::CONTENT_RANGE) else { return Ok(None) };
    let v = v.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']);
    let start = v.split(['-', '/']).next().and_then(|s| s.trim().parse::<u64>().ok());
    start
        .map(Some)
        .ok_or_else(|| RegistryError::UploadInvalid { id: id.to_owned(), reason: format!("bad Content-Range {v}") })
}

/// Parses `bytes=a-b`, `bytes=a-` or `bytes=-n` against a blob of `size` bytes.
fn parse_range(v: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.saturating_sub(n), size.checked_sub(1)?)
        }
        (a, "") => (a.parse().ok()?, size.checked_sub(1)?),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.min(size.checked_sub(1)?)),
    };
    (start <= end && start < size).then_some(start..end + 1)
}

impl Cx<'_> {
    fn registry(&self) -> &Registry {
        &self.state.registry
    }

    fn notify(&self, action: Action, req_headers: &HeaderMap, f: impl FnOnce(&mut Event)) {
        if let Some(n) = &self.state.notifier {
            let mut ev = Event::new(action, &self.user, req_headers);
            f(&mut ev);
            n.send(ev, &self.state.metrics);
        }
    }

    fn page_params(&self) -> Result<(Option<usize>, Option<&str>)> {
        let n = match first(&self.q, "n") {
            Some(n) => Some(n.parse::<usize>().map_err(|_| RegistryError::SizeInvalid {
                what: "pagination".to_owned(),
                reason: format!("n={n} is not a number"),
            })?),
            None => None,
        };
        Ok((n, first(&self.q, "last")))
    }

    async fn catalog(&self) -> Result<Response> {
        let (n, last) = self.page_params()?;
        let (repos, more) = self.registry().catalog(n, last).await?;
        let mut r = axum::Json(serde_json::json!({ "repositories": repos })).into_response();
        link_header(&mut r, "/v2/_catalog", n, more.then(|| repos.last()).flatten());
        Ok(r)
    }

    async fn tags(&self, name: &str) -> Result<Response> {
        let (n, last) = self.page_params()?;
        let (tags, more) = self.registry().tags(name, n, last).await?;
        let mut r = axum::Json(serde_json::json!({ "name": name, "tags": tags })).into_response();
        link_header(&mut r, &format!("/v2/{name}/tags/list"), n, more.then(|| tags.last()).flatten());
        Ok(r)
    }

    async fn token(&self, req: Request) -> Result<Response> {
        let scopes: Vec<String> = self.q.iter().filter(|(k, _)| k == "scope").map(|(_, v)| v.clone()).collect();
        let auth = header_str(req.headers(), header::AUTHORIZATION);
        let t = self.state.auth.issue_token(auth, first(&self.q, "service"), &scopes).await?;
        Ok(axum::Json(t).into_response())
    }

    async fn blob_get(&self, name: &str, digest: &str, head: bool, req: Request) -> Result<Response> {
        let digest = parse_digest(digest)?;
        let size = self.registry().blob_size(name, &digest).await?;
        let range = match header_str(req.headers(), header::RANGE) {
            Some(v) => Some(parse_range(v, size).ok_or_else(|| RegistryError::RangeNotSatisfiable {
                digest: digest.clone(),
                range: v.to_owned(),
                size,
            })?),
            None => None,
        };
        let (status, r) = match &range {
            Some(r) => (StatusCode::PARTIAL_CONTENT, r.clone()),
            None => (StatusCode::OK, 0..size),
        };
        let body = if head {
            Body::empty()
        } else {
            let counter = self.state.metrics.bytes_sent.clone();
            let s = self.registry().blob_read(name, &digest, r.clone()).await?.inspect_ok(move |b| {
                counter.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
            });
            self.notify(Action::Pull, req.headers(), |e| {
                e.target(name, &digest, "application/octet-stream", size, None)
            });
            Body::from_stream(s)
        };
        let mut resp = (status, body).into_response();
        let hm = resp.headers_mut();
        hm.insert(header::CONTENT_LENGTH, h((r.end - r.start).to_string()));
        hm.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        hm.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        hm.insert("docker-content-digest", h(digest.to_string()));
        hm.insert(header::ETAG, h(format!("\"{digest}\"")));
        if range.is_some() {
            hm.insert(header::CONTENT_RANGE, h(format!("bytes {}-{}/{size}", r.start, r.end - 1)));
        }
        Ok(resp)
    }

    async fn blob_delete(&self, name: &str, digest: &str) -> Result<Response> {
        let digest = parse_digest(digest)?;
        self.registry().blob_delete(name, &digest).await?;
        Ok(StatusCode::ACCEPTED.into_response())
    }

    async fn upload_start(&self, name: &str, req: Request) -> Result<Response> {
        // distribution-spec 1.1+: the algorithm a chunked upload will be named by; refuse what we cannot.
        if let Some(alg) = first(&self.q, "digest-algorithm")
            && !matches!(alg, "sha256" | "sha512")
        {
            return Err(RegistryError::DigestInvalid { value: format!("{alg}: (unsupported digest-algorithm)") });
        }
        if let (Some(mount), Some(from)) = (first(&self.q, "mount"), first(&self.q, "from")) {
            let digest = parse_digest(mount)?;
            let from_ok = validate_name(from).is_ok() && {
                let scope = Scope::Repository { name: from.to_owned(), actions: vec!["pull"] };
                let hdrs = req.headers();
                let host = header_str(hdrs, header::HOST).unwrap_or("localhost");
                self.state.auth.authorize(header_str(hdrs, header::AUTHORIZATION), host, "http", &scope).await.is_ok()
            };
            if from_ok && self.registry().mount(name, from, &digest).await? {
                self.notify(Action::Mount, req.headers(), |e| {
                    e.target(name, &digest, "application/octet-stream", 0, None);
                    e.from_repository(from);
                });
                return Ok(created_blob(name, &digest));
            }
        }
        if let Some(d) = first(&self.q, "digest") {
            let digest = parse_digest(d)?;
            let up = self.registry().upload_start(name).await?;
            let headers = req.headers().clone();
            let body = body_stream(req, &self.state.metrics);
            let size = match self.registry().upload_finish(name, &up.id, None, &digest, body).await {
                Ok(size) => size,
                Err(e) => {
                    // A monolithic upload has no session for the client to resume.
                    let _ = self.registry().upload_cancel(name, &up.id).await;
                    return Err(e);
                }
            };
            self.notify(Action::Push, &headers, |e| e.target(name, &digest, "application/octet-stream", size, None));
            return Ok(created_blob(name, &digest));
        }
        let up = self.registry().upload_start(name).await?;
        Ok(upload_headers(StatusCode::ACCEPTED, name, &up.id, up.size))
    }

    async fn upload_status(&self, name: &str, id: &str) -> Result<Response> {
        let st = self.registry().upload_status(name, id).await?;
        Ok(upload_headers(StatusCode::NO_CONTENT, name, id, st.size))
    }

    async fn upload_patch(&self, name: &str, id: &str, req: Request) -> Result<Response> {
        let start = chunk_start(req.headers(), id)?;
        let st = self.registry().upload_append(name, id, start, body_stream(req, &self.state.metrics)).await?;
        Ok(upload_headers(StatusCode::ACCEPTED, name, id, st.size))
    }

    async fn upload_put(&self, name: &str, id: &str, req: Request) -> Result<Response> {
        let d = first(&self.q, "digest").ok_or_else(|| RegistryError::DigestInvalid { value: String::new() })?;
        let digest = parse_digest(d)?;
        let headers = req.headers().clone();
        let start = chunk_start(&headers, id)?;
        let body = body_stream(req, &self.state.metrics);
        let size = self.registry().upload_finish(name, id, start, &digest, body).await?;
        self.notify(Action::Push, &headers, |e| e.target(name, &digest, "application/octet-stream", size, None));
        Ok(created_blob(name, &digest))
    }

    async fn upload_cancel(&self, name: &str, id: &str) -> Result<Response> {
        self.registry().upload_cancel(name, id).await?;
        Ok(StatusCode::NO_CONTENT.into_response())
    }

    async fn manifest_get(&self, name: &str, reference: &str, head: bool, req: Request) -> Result<Response> {
        let reference = ManifestRef::parse(reference)?;
        let accept: Vec<String> = req
            .headers()
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|t| t.split(';').next().unwrap_or("").trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect();
        let m = self.registry().manifest_get(name, &reference, &accept, !head).await?;
        if !head {
            let tag = match &reference {
                ManifestRef::Tag(t) => Some(t.as_str()),
                ManifestRef::Digest(_) => None,
            };
            self.notify(Action::Pull, req.headers(), |e| e.target(name, &m.digest, &m.media_type, m.size, tag));
        }
        let body = m.body.map(Body::from).unwrap_or_else(Body::empty);
        let mut resp = (StatusCode::OK, body).into_response();
        let hm = resp.headers_mut();
        hm.insert(header::CONTENT_TYPE, h(&m.media_type));
        hm.insert(header::CONTENT_LENGTH, h(m.size.to_string()));
        hm.insert("docker-content-digest", h(m.digest.to_string()));
        hm.insert(header::ETAG, h(format!("\"{}\"", m.digest)));
        Ok(resp)
    }

    async fn manifest_put(&self, name: &str, reference: &str, req: Request) -> Result<Response> {
        let reference = ManifestRef::parse(reference)?;
        let too_large = |size| RegistryError::ManifestTooLarge {
            name: name.to_owned(),
            reference: reference.to_string(),
            size,
            limit: MAX_MANIFEST_SIZE,
        };
        let declared = header_str(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        if let Some(len) = declared.filter(|l| *l > MAX_MANIFEST_SIZE) {
            return Err(too_large(len));
        }
        let headers = req.headers().clone();
        let content_type = header_str(&headers, header::CONTENT_TYPE);
        let body: Bytes = axum::body::to_bytes(req.into_body(), MAX_MANIFEST_SIZE as usize).await.map_err(|e| {
            if std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) {
                too_large(MAX_MANIFEST_SIZE + 1)
            } else {
                RegistryError::BodyRead { what: format!("manifest {name}:{reference}"), reason: e.to_string() }
            }
        })?;
        self.state.metrics.bytes_received.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
        // Tags as parameters of a push by digest (distribution-spec 1.1+: `?tag=a&tag=b`).
        let extra_tags: Vec<String> = match &reference {
            ManifestRef::Digest(_) => self.q.iter().filter(|(k, _)| k == "tag").map(|(_, v)| v.clone()).collect(),
            ManifestRef::Tag(_) => Vec::new(),
        };
        let put = self.registry().manifest_put(name, &reference, &extra_tags, content_type, body).await?;
        if put.tags.is_empty() {
            self.notify(Action::Push, &headers, |e| e.target(name, &put.digest, &put.media_type, put.size, None));
        }
        for tag in &put.tags {
            self.notify(Action::Push, &headers, |e| e.target(name, &put.digest, &put.media_type, put.size, Some(tag)));
        }
        let mut r = StatusCode::CREATED.into_response();
        let hm = r.headers_mut();
        hm.insert(header::LOCATION, h(format!("/v2/{name}/manifests/{}", put.digest)));
        hm.insert("docker-content-digest", h(put.digest.to_string()));
        hm.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        if let Some(s) = &put.subject {
            hm.insert("oci-subject", h(s.to_string()));
        }
        if !extra_tags.is_empty() {
            hm.insert("oci-tag", h(put.tags.join(", ")));
        }
        Ok(r)
    }

    async fn manifest_delete(&self, name: &str, reference: &str) -> Result<Response> {
        let reference = ManifestRef::parse(reference)?;
        self.registry().manifest_delete(name, &reference).await?;
        self.notify(Action::Delete, &HeaderMap::new(), |e| e.delete_target(name, &reference.to_string()));
        Ok(StatusCode::ACCEPTED.into_response())
    }

    async fn repository_delete(&self, name: &str) -> Result<Response> {
        self.registry().repository_delete(name).await?;
        self.notify(Action::Delete, &HeaderMap::new(), |e| e.delete_target(name, ""));
        Ok(StatusCode::ACCEPTED.into_response())
    }

    async fn referrers(&self, name: &str, digest: &str) -> Result<Response> {
        let digest = parse_digest(digest)?;
        let filter = first(&self.q, "artifactType");
        let index = self.registry().referrers(name, &digest, filter).await?;
        let mut r = axum::Json(index).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(oci::media_type::OCI_INDEX));
        if filter.is_some() {
            r.headers_mut().insert("oci-filters-applied", HeaderValue::from_static("artifactType"));
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(Route::parse("/v2/"), Some(Route::Base));
        assert_eq!(
            Route::parse("/v2/a/blobs/b/blobs/sha256:x"),
            Some(Route::Blob { name: "a/blobs/b".into(), digest: "sha256:x".into() })
        );
        assert_eq!(Route::parse("/v2/a/b/blobs/uploads/"), Some(Route::UploadStart { name: "a/b".into() }));
        assert_eq!(Route::parse("/v2/a/blobs/uploads/u1"), Some(Route::Upload { name: "a".into(), id: "u1".into() }));
        assert_eq!(Route::parse("/v2/a/tags/list"), Some(Route::Tags { name: "a".into() }));
        assert_eq!(Route::parse("/v3/"), None);
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Some(90..100));
        assert_eq!(parse_range("bytes=95-200", 100), Some(95..100));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("bytes=5-2", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
