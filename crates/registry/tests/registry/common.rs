//! Test harness: a registry started in-process on 127.0.0.1:0 and a small HTTP/1 client.

use std::net::SocketAddr;
use std::path::PathBuf;

use berth_registry::{Config, Server};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use hyper_util::rt::TokioIo;
use oci::Digest;
use serde_json::{Value, json};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// The first spec error code of an error body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or("").to_owned()
    }
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} {}", self.status, self.headers, String::from_utf8_lossy(&self.body))
    }
}

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub auth: Option<String>,
}

impl Client {
    pub async fn req(&self, method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Resp {
        let stream = tokio::net::TcpStream::connect(self.addr).await.expect("connect");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
        tokio::spawn(conn);
        let mut b = hyper::Request::builder().method(method).uri(path).header("host", self.addr.to_string());
        if let Some(a) = &self.auth {
            b = b.header("authorization", a);
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(body.into())).expect("request");
        let resp = sender.send_request(req).await.expect("send");
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.expect("read body").to_bytes();
        Resp { status: parts.status.as_u16(), headers: parts.headers, body }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, &[], Bytes::new()).await
    }

    pub async fn head(&self, path: &str) -> Resp {
        self.req("HEAD", path, &[], Bytes::new()).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.req("DELETE", path, &[], Bytes::new()).await
    }

    /// Monolithic upload (POST with digest); returns the digest.
    pub async fn push_blob(&self, name: &str, data: &[u8]) -> Digest {
        let d = Digest::sha256_of(data);
        let r = self
            .req(
                "POST",
                &format!("/v2/{name}/blobs/uploads/?digest={d}"),
                &[("content-type", "application/octet-stream")],
                Bytes::copy_from_slice(data),
            )
            .await;
        assert_eq!(r.status, 201, "{r:?}");
        d
    }

    pub async fn put_manifest(&self, name: &str, reference: &str, media_type: &str, body: &[u8]) -> Resp {
        self.req(
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", media_type)],
            Bytes::copy_from_slice(body),
        )
        .await
    }

    /// Pushes a config and one layer, then an OCI manifest tagged `tag`; returns the manifest bytes.
    pub async fn push_image(&self, name: &str, tag: &str, layer: &[u8]) -> (Vec<u8>, Digest) {
        let config = format!(r#"{{"architecture":"amd64","os":"linux","layer":{}}}"#, layer.len());
        let cd = self.push_blob(name, config.as_bytes()).await;
        let ld = self.push_blob(name, layer).await;
        let m = manifest(OCI_MANIFEST, &cd, config.len(), &[(&ld, layer.len())], None);
        let r = self.put_manifest(name, tag, OCI_MANIFEST, &m).await;
        assert_eq!(r.status, 201, "{r:?}");
        let d = Digest::sha256_of(&m);
        assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
        (m, d)
    }
}

/// An image manifest (OCI or Docker schema2) as bytes.
pub fn manifest(
    media_type: &str,
    config: &Digest,
    config_size: usize,
    layers: &[(&Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let docker = media_type == DOCKER_MANIFEST;
    let config_type = if docker {
        "application/vnd.docker.container.image.v1+json"
    } else {
        "application/vnd.oci.image.config.v1+json"
    };
    let layer_type = if docker {
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    } else {
        "application/vnd.oci.image.layer.v1.tar"
    };
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": { "mediaType": config_type, "digest": config.to_string(), "size": config_size },
        "layers": layers.iter().map(|(d, s)| json!({ "mediaType": layer_type, "digest": d.to_string(), "size": s })).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = json!({ "mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s });
    }
    serde_json::to_vec(&m).expect("json")
}

pub fn index(media_type: &str, children: &[(&str, &Digest, usize, &str)]) -> Vec<u8> {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(mt, d, s, arch)| {
            json!({ "mediaType": mt, "digest": d.to_string(), "size": s, "platform": { "os": "linux", "architecture": arch } })
        })
        .collect();
    serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": media_type, "manifests": manifests })).expect("json")
}

pub struct TestServer {
    pub server: Option<Server>,
    pub dir: tempfile::TempDir,
    pub client: Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config =
            Config { addr: Some("127.0.0.1:0".to_owned()), root: Some(dir.path().join("store")), ..Default::default() };
        f(&mut config);
        let server = berth_registry::start(config).await.expect("start registry");
        let client = Client { addr: server.addr, auth: None };
        TestServer { server: Some(server), dir, client }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(2654435761).wrapping_add(seed as u32).to_le_bytes()[1]).collect()
}

/// Every file under `dir`, relative.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("under dir").display().to_string());
            }
        }
    }
    out
}
