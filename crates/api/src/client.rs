//! An Engine API client over a Unix socket or TCP, one HTTP/1.1 connection per request.
//!
//! The first request goes out with this client's API version; a daemon too old for it says so
//! (400, "client version … is too new", as Docker and berth word it), and only then is the
//! version negotiated with `/_ping`, as the docker CLI always does first, and the request sent
//! again. So the same client drives berth and older Docker daemons, and a command against a
//! current daemon does not wait for a ping first.

use std::path::PathBuf;

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OnceCell;

use crate::types::ErrorResponse;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("Cannot connect to the berth daemon at {addr}. Is the daemon running? ({source})")]
    Connect { addr: String, source: std::io::Error },
    #[error("invalid host `{0}`: expected unix:///path or tcp://host:port")]
    BadHost(String),
    #[error("{message}")]
    Status { status: u16, message: String },
    #[error("request to the daemon failed: {0}")]
    Http(String),
    #[error("decode response: {0}")]
    Decode(String),
}

impl ClientError {
    /// The HTTP status of an error response, if that is what this is.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
enum Addr {
    Unix(PathBuf),
    Tcp(String),
}

/// Something a hijacked connection can be read from and written to.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Body = BoxBody<Bytes, std::io::Error>;

pub struct Client {
    addr: Addr,
    host: String,
    version: OnceCell<String>,
}

pub fn empty() -> Body {
    Full::new(Bytes::new()).map_err(|e| match e {}).boxed()
}

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// A request body streamed from a reader.
pub fn reader_body<R: AsyncRead + Send + Sync + 'static>(r: R) -> Body {
    let s = tokio_util::io::ReaderStream::with_capacity(r, 256 * 1024).map(|r| r.map(Frame::data));
    BodyExt::boxed(StreamBody::new(s))
}

impl Client {
    /// `host` as in DOCKER_HOST: `unix:///run/berth/berth.sock` or `tcp://127.0.0.1:2375`.
    pub fn new(host: &str) -> Result<Self, ClientError> {
        let addr = if let Some(p) = host.strip_prefix("unix://") {
            Addr::Unix(PathBuf::from(p))
        } else if let Some(h) = host.strip_prefix("tcp://").or_else(|| host.strip_prefix("http://")) {
            Addr::Tcp(h.trim_end_matches('/').to_owned())
        } else if host.starts_with('/') {
            Addr::Unix(PathBuf::from(host))
        } else {
            return Err(ClientError::BadHost(host.to_owned()));
        };
        Ok(Self { addr, host: host.to_owned(), version: OnceCell::new() })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    async fn connect(&self) -> Result<Box<dyn Io>, ClientError> {
        let err = |source| ClientError::Connect { addr: self.host.clone(), source };
        Ok(match &self.addr {
            Addr::Unix(p) => Box::new(tokio::net::UnixStream::connect(p).await.map_err(err)?),
            Addr::Tcp(h) => Box::new(tokio::net::TcpStream::connect(h).await.map_err(err)?),
        })
    }

    /// The API version to use: the lower of ours and the daemon's.
    pub async fn version(&self) -> Result<&str, ClientError> {
        self.version
            .get_or_try_init(|| async {
                let resp = self.send_raw(Method::GET, "/_ping", Vec::new(), empty()).await?;
                let v = resp
                    .headers()
                    .get("api-version")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or(crate::API_VERSION)
                    .to_owned();
                Ok(if version_lt(&v, crate::API_VERSION) { v } else { crate::API_VERSION.to_owned() })
            })
            .await
            .map(String::as_str)
    }

    async fn send_raw(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(&str, String)>,
        body: Body,
    ) -> Result<Response<Incoming>, ClientError> {
        let io = self.connect().await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| ClientError::Http(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut req = Request::builder().method(method).uri(path).header("Host", "docker");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(body).map_err(|e| ClientError::Http(e.to_string()))?;
        sender.send_request(req).await.map_err(|e| ClientError::Http(e.to_string()))
    }

    /// Sends a request to `/v<version><path>`; error statuses become [`ClientError::Status`].
    /// A streamed body cannot be sent twice: the version is negotiated first when unknown.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(&str, String)>,
        body: Body,
    ) -> Result<Response<Incoming>, ClientError> {
        let v = self.version().await?.to_owned();
        self.send_in(&v, method, path, headers, body).await
    }

    /// Sends a request to `/v<v><path>`; error statuses become [`ClientError::Status`].
    async fn send_in(
        &self,
        v: &str,
        method: Method,
        path: &str,
        headers: Vec<(&str, String)>,
        body: Body,
    ) -> Result<Response<Incoming>, ClientError> {
        let resp = self.send_raw(method, &format!("/v{v}{path}"), headers, body).await?;
        check(resp).await
    }

    /// [`Client::request`] with a body held in memory: while the version is unknown it goes
    /// out with ours, and again with the negotiated one if the daemon is older (see the module
    /// comment).
    async fn request_bytes(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(&str, String)>,
        body: Bytes,
    ) -> Result<Response<Incoming>, ClientError> {
        if let Some(v) = self.version.get() {
            return self.send_in(v, method, path, headers, full(body)).await;
        }
        let ours = crate::API_VERSION;
        match self.send_in(ours, method.clone(), path, headers.clone(), full(body.clone())).await {
            Ok(resp) => {
                // Accepted: the daemon's version is at least ours, so ours is the one to use.
                let _ = self.version.set(ours.to_owned());
                Ok(resp)
            }
            Err(ClientError::Status { status, message })
                if message.contains("client version") && message.contains("is too new") =>
            {
                let v = self.version().await?.to_owned();
                if v == ours {
                    return Err(ClientError::Status { status, message });
                }
                self.send_in(&v, method, path, headers, full(body)).await
            }
            Err(e) => Err(e),
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.request_bytes(Method::GET, path, Vec::new(), Bytes::new()).await?;
        decode(resp).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let resp = self.post_raw(path, body).await?;
        decode(resp).await
    }

    /// POST with an optional JSON body, response undecoded.
    pub async fn post_raw<B: Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<Response<Incoming>, ClientError> {
        let (headers, body) = match body {
            Some(b) => (
                vec![("Content-Type", "application/json".to_owned())],
                Bytes::from(serde_json::to_vec(b).map_err(|e| ClientError::Decode(e.to_string()))?),
            ),
            None => (Vec::new(), Bytes::new()),
        };
        self.request_bytes(Method::POST, path, headers, body).await
    }

    pub async fn delete(&self, path: &str) -> Result<Response<Incoming>, ClientError> {
        self.request_bytes(Method::DELETE, path, Vec::new(), Bytes::new()).await
    }

    /// Sends a request that upgrades the connection (attach, exec start) and returns the raw
    /// stream and whether it is multiplexed. `tty`: whether the process has a terminal (its
    /// stream is then raw). Daemons before API 1.42 label every such stream
    /// `vnd.docker.raw-stream`, multiplexed or not: with them, as with a daemon that names no
    /// type, `tty` decides, as it does in the docker CLI.
    pub async fn hijack<B: Serialize>(
        &self,
        path: &str,
        body: Option<&B>,
        tty: bool,
    ) -> Result<(Box<dyn Io>, bool), ClientError> {
        let mut headers = vec![("Connection", "Upgrade".to_owned()), ("Upgrade", "tcp".to_owned())];
        let body = match body {
            Some(b) => {
                headers.push(("Content-Type", "application/json".to_owned()));
                Bytes::from(serde_json::to_vec(b).map_err(|e| ClientError::Decode(e.to_string()))?)
            }
            None => Bytes::new(),
        };
        let resp = self.request_bytes(Method::POST, path, headers, body).await?;
        let typed = self.version.get().is_some_and(|v| !version_lt(v, "1.42"));
        let multiplexed = match resp.headers().get("content-type").and_then(|v| v.to_str().ok()) {
            Some("application/vnd.docker.multiplexed-stream") => true,
            Some("application/vnd.docker.raw-stream") if typed => false,
            _ => !tty,
        };
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(ClientError::Http(format!("expected 101 Switching Protocols, got {}", resp.status())));
        }
        let up = hyper::upgrade::on(resp).await.map_err(|e| ClientError::Http(e.to_string()))?;
        Ok((Box::new(TokioIo::new(up)), multiplexed))
    }
}

async fn check(resp: Response<Incoming>) -> Result<Response<Incoming>, ClientError> {
    let status = resp.status();
    if status.is_success() || status == StatusCode::SWITCHING_PROTOCOLS || status == StatusCode::NOT_MODIFIED {
        return Ok(resp);
    }
    let bytes = resp.into_body().collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
    let message = serde_json::from_slice::<ErrorResponse>(&bytes)
        .map(|e| e.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_owned());
    Err(ClientError::Status { status: status.as_u16(), message })
}

/// Reads a whole JSON body.
pub async fn decode<T: DeserializeOwned>(resp: Response<Incoming>) -> Result<T, ClientError> {
    let bytes = resp.into_body().collect().await.map_err(|e| ClientError::Http(e.to_string()))?.to_bytes();
    let bytes = if bytes.is_empty() { Bytes::from_static(b"null") } else { bytes };
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Compares dotted versions numerically (`1.9` < `1.41`).
pub fn version_lt(a: &str, b: &str) -> bool {
    let p = |s: &str| s.split('.').map(|x| x.parse::<u32>().unwrap_or(0)).collect::<Vec<_>>();
    p(a) < p(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the fake daemon's socket.
    struct Unlink(PathBuf);

    impl Drop for Unlink {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    /// A daemon speaking API `max` on a fresh socket; returns the client and the paths it has
    /// been asked for.
    async fn fake_daemon(max: &'static str) -> (Client, std::sync::Arc<std::sync::Mutex<Vec<String>>>, Unlink) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = std::env::temp_dir().join(format!("berth-client-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path).expect("bind");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(k) => buf.extend_from_slice(&chunk[..k]),
                    }
                }
                let line = String::from_utf8_lossy(&buf).lines().next().unwrap_or_default().to_owned();
                let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                log.lock().expect("log").push(path.clone());
                let (status, body) = if path == "/_ping" {
                    ("200 OK", "OK".to_owned())
                } else if path.starts_with(&format!("/v{max}/")) {
                    ("200 OK", "{}".to_owned())
                } else {
                    let v = path.trim_start_matches("/v").split('/').next().unwrap_or_default().to_owned();
                    (
                        "400 Bad Request",
                        format!(
                            "{{\"message\":\"client version {v} is too new. Maximum supported API version is {max}\"}}"
                        ),
                    )
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\nApi-Version: {max}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (Client::new(&format!("unix://{}", path.display())).expect("client"), seen, Unlink(path))
    }

    #[tokio::test]
    async fn a_current_daemon_is_not_pinged() {
        let (c, seen, _socket) = fake_daemon(crate::API_VERSION).await;
        let _: serde_json::Value = c.get("/info").await.expect("info");
        let _: serde_json::Value = c.post::<(), _>("/containers/x/start", None).await.expect("start");
        assert_eq!(
            *seen.lock().expect("seen"),
            [format!("/v{0}/info", crate::API_VERSION), format!("/v{0}/containers/x/start", crate::API_VERSION)]
        );
    }

    #[tokio::test]
    async fn an_older_daemon_gets_the_request_again_in_its_version() {
        let (c, seen, _socket) = fake_daemon("1.41").await;
        let _: serde_json::Value = c.get("/info").await.expect("info, after negotiating");
        let _: serde_json::Value = c.get("/version").await.expect("version");
        let want =
            [format!("/v{}/info", crate::API_VERSION), "/_ping".into(), "/v1.41/info".into(), "/v1.41/version".into()];
        assert_eq!(*seen.lock().expect("seen"), want);
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(version_lt("1.41", "1.45"));
        assert!(version_lt("1.9", "1.24"));
        assert!(!version_lt("1.45", "1.45"));
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("unix:///run/x.sock").is_ok());
    }
}
