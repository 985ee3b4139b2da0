//! The Engine API routes. One file per resource; the table fits on a screen.

mod build;
mod containers;
pub(crate) mod distribution;
mod events;
mod exec;
mod files;
mod images;
mod networks;
mod stats;
mod system;
mod volumes;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::engine::Engine;
use crate::error::{EngineError, Result};

pub type AppState = Arc<Engine>;

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(events::events))
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/stats", get(stats::stats))
        .route("/containers/{id}/changes", get(build::changes))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/commit", post(build::commit))
        .route("/containers/{id}/update", post(stats::update))
        .route("/containers/{id}", axum::routing::delete(containers::remove))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/containers/prune", post(files::prune_containers))
        .route("/containers/{id}/archive", get(files::archive_get).head(files::archive_head).put(files::archive_put))
        .route("/containers/{id}/export", get(files::export))
        .route("/images/get", get(files::save_many))
        .route("/images/load", post(files::load))
        .route("/images/prune", post(files::prune_images))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes/{name}", get(volumes::inspect).delete(volumes::remove))
        .route("/system/df", get(files::df))
        .route("/images/create", post(images::create))
        .route("/auth", post(distribution::auth))
        .route("/images/json", get(images::list))
        .route("/images/{*rest}", get(images::get_dispatch).post(images::post_dispatch).delete(images::remove))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route("/networks/{id}", get(networks::inspect).delete(networks::remove))
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .fallback(not_found)
        .with_state(engine)
}

async fn not_found(uri: Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(api::types::ErrorResponse { message: format!("page not found: {}", uri.path()) }),
    )
        .into_response()
}

/// Strips a `/v1.NN` prefix, refusing versions outside what berth speaks.
pub fn strip_version(mut req: Request) -> Result<Request> {
    let path = req.uri().path();
    if let Some(rest) = path.strip_prefix("/v")
        && let Some((ver, tail)) = rest.split_once('/')
        && ver.contains('.')
        && ver.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        if api::client::version_lt(api::API_VERSION, ver) {
            let msg = format!("client version {ver} is too new. Maximum supported API version is {}", api::API_VERSION);
            return Err(EngineError::BadRequest(msg));
        }
        if api::client::version_lt(ver, api::MIN_API_VERSION) {
            let msg = format!(
                "client version {ver} is too old. Minimum supported API version is {}, please upgrade your client to a newer version",
                api::MIN_API_VERSION
            );
            return Err(EngineError::BadRequest(msg));
        }
        let new = match req.uri().query() {
            Some(q) => format!("/{tail}?{q}"),
            None => format!("/{tail}"),
        };
        if let Ok(u) = new.parse::<Uri>() {
            *req.uri_mut() = u;
        }
    }
    Ok(req)
}

pub type Query = axum::extract::Query<HashMap<String, String>>;

/// Docker's `filters` query value: `{"label":["a=b"]}`, or the older map form
/// `{"label":{"a=b":true}}`; the one parser of every list, prune and events route.
pub fn parse_filters(s: Option<&String>) -> Result<BTreeMap<String, Vec<String>>> {
    let Some(s) = s.filter(|s| !s.is_empty()) else { return Ok(BTreeMap::new()) };
    let v: Value = serde_json::from_str(s).map_err(|e| EngineError::BadRequest(format!("invalid filters: {e}")))?;
    let mut out = BTreeMap::new();
    for (k, v) in v.as_object().into_iter().flatten() {
        let vals: Vec<String> = match v {
            Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
            Value::Object(o) => o.iter().filter(|(_, b)| b.as_bool() != Some(false)).map(|(k, _)| k.clone()).collect(),
            _ => return Err(EngineError::BadRequest(format!("invalid filter `{k}`"))),
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}

/// Docker's boolean query values: `1`, `true`, `True`.
pub fn qbool(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True" | "TRUE"))
}

pub fn qint(q: &HashMap<String, String>, k: &str) -> Result<Option<i64>> {
    match q.get(k).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| EngineError::BadRequest(format!("invalid value for `{k}`: `{v}` is not an integer"))),
    }
}

/// Parses a JSON body, naming the field at fault.
pub fn parse_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            EngineError::BadRequest(format!("invalid JSON: {inner}"))
        } else {
            EngineError::BadRequest(format!("invalid JSON at `{path}`: {inner}"))
        }
    })
}

/// Answers an upgrade request with 101 and hands the raw connection to `f`.
pub fn hijack<F, Fut>(mut req: Request, multiplexed: bool, f: F) -> Response
where
    F: FnOnce(Box<dyn Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => f(Box::new(hyper_util::rt::TokioIo::new(up))).await,
            Err(e) => tracing::debug!("upgrade failed: {e}"),
        }
    });
    let ct =
        if multiplexed { "application/vnd.docker.multiplexed-stream" } else { "application/vnd.docker.raw-stream" };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    resp
}

pub trait Upgraded: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Upgraded for T {}

/// Copies between a client's hijacked connection and a shim's attach stream until the
/// output ends. The client closing its side ends the process's stdin.
pub async fn bridge(client: Box<dyn Upgraded>, shim: tokio::net::UnixStream) {
    bridge_then(client, shim, async {}).await
}

/// [`bridge`], awaiting `before_close` between the end of the output and closing the client's
/// stream (an exec session records its exit code there, which the client asks for next).
pub async fn bridge_then(
    client: Box<dyn Upgraded>,
    shim: tokio::net::UnixStream,
    before_close: impl std::future::Future<Output = ()>,
) {
    use tokio::io::AsyncWriteExt;
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut sr, mut sw) = shim.into_split();
    let input = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut cr, &mut sw).await;
        let _ = sw.shutdown().await;
    });
    let _ = tokio::io::copy(&mut sr, &mut cw).await;
    before_close.await;
    let _ = cw.shutdown().await;
    input.abort();
}

/// A streaming body fed from a channel.
pub fn channel_body(rx: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Body {
    let s =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx)) },
        );
    Body::from_stream(s)
}
