//! The registry client: pull, push and login against OCI Distribution registries.
//!
//! - [`Registries`]: what the daemon knows about registries (insecure ones, mirrors, CA
//!   certificates under `certs.d/<host:port>/`, parallelism), one HTTP client per host and the
//!   bearer tokens it holds until they expire. Shared by every pull and push.
//! - [`session::Session`]: one repository on one endpoint; sends requests and answers a 401
//!   with the challenge's scheme (Basic, or Docker's token flow with realm/service/scope).
//! - [`pull::pull`]: tag → manifest (index → the platform's manifest) → config → the layers,
//!   3 at a time by default, each streamed through the digest check and unpacked as it arrives;
//!   blob, diff_id and snapshot become visible only after both digests check.
//! - [`push::push`]: HEAD each blob, mount it from another repository of the same registry
//!   when one is known to hold it, upload the rest, then the manifest.
//!
//! Progress goes out as [`Event`]s, which the engine writes as Docker's JSON progress lines.
//!
//! Why not the `oci-client` crate: its token request names only the target repository, so a
//! cross-repository mount is never authorised on a token registry; a mount answered with 202
//! is an error rather than the start of the upload; it has no mirrors; its TLS roots are per
//! client rather than per registry; and it brings a second `reqwest` (0.13, with aws-lc by
//! default) next to the one the workspace already builds.

pub mod pull;
pub mod push;
pub mod session;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use oci::{ErrorKind, Reference};
use serde::Deserialize;
use serde_json::Value;

use crate::ImageError;

/// Docker Hub's API host (`docker.io` is only the name in references).
pub const DOCKER_HUB_HOST: &str = "registry-1.docker.io";
/// The key of Docker Hub in config.json and in `X-Registry-Auth`.
pub const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Denied(String),
    #[error("{what} {digest}: digest mismatch: got {actual}")]
    Digest { what: String, digest: String, actual: String },
    #[error("{0}")]
    Invalid(String),
    #[error("{method} {url}: {message}")]
    Http { method: String, url: String, message: String },
    #[error("{0}")]
    Image(#[from] ImageError),
}

impl RemoteError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RemoteError::NotFound(_) => ErrorKind::NotFound,
            RemoteError::Unauthorized(_) => ErrorKind::Unauthorized,
            RemoteError::Denied(_) => ErrorKind::Forbidden,
            RemoteError::Digest { .. } | RemoteError::Invalid(_) => ErrorKind::InvalidArgument,
            RemoteError::Http { .. } => ErrorKind::Internal,
            RemoteError::Image(e) => e.kind(),
        }
    }
}

pub type Result<T, E = RemoteError> = std::result::Result<T, E>;

/// Credentials for one registry, as in Docker's `X-Registry-Auth` / `AuthConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// base64 of `user:password`, as config.json stores it.
    pub auth: String,
    #[serde(rename = "serveraddress")]
    pub server_address: String,
    #[serde(rename = "identitytoken")]
    pub identity_token: String,
    #[serde(rename = "registrytoken")]
    pub registry_token: String,
}

/// Decodes the base64 of a registry header (`X-Registry-Auth`, `X-Registry-Config`): clients
/// send it URL-safe or standard, padded or not.
pub fn decode_header_base64(h: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
    ]
    .iter()
    .find_map(|e| e.decode(h).ok())
}

impl Credentials {
    /// Decodes an `X-Registry-Auth` header: base64url (padded or not) of the JSON AuthConfig.
    pub fn from_header(h: &str) -> Result<Option<Credentials>> {
        let h = h.trim();
        if h.is_empty() {
            return Ok(None);
        }
        let raw = decode_header_base64(h).ok_or_else(|| RemoteError::Invalid("X-Registry-Auth: not base64".into()))?;
        if raw.iter().all(u8::is_ascii_whitespace) || raw == b"{}" || raw == b"null" {
            return Ok(None);
        }
        let mut c: Credentials = serde_json::from_slice(&raw)
            .map_err(|e| RemoteError::Invalid(format!("X-Registry-Auth: invalid JSON: {e}")))?;
        c.fill_from_auth();
        Ok(if c.is_empty() { None } else { Some(c) })
    }

    /// Splits `auth` into username and password when those are empty.
    pub fn fill_from_auth(&mut self) {
        use base64::Engine;
        if self.username.is_empty()
            && !self.auth.is_empty()
            && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(self.auth.trim())
            && let Ok(s) = String::from_utf8(raw)
            && let Some((u, p)) = s.split_once(':')
        {
            self.username = u.to_owned();
            self.password = p.to_owned();
        }
    }

    pub fn is_empty(&self) -> bool {
        self.username.is_empty() && self.identity_token.is_empty() && self.registry_token.is_empty()
    }
}

/// One line of progress: Docker's `{"status","id","progressDetail","aux"}`.
#[derive(Debug, Clone, Default)]
pub struct Event {
    pub id: Option<String>,
    pub status: String,
    /// (current, total) bytes.
    pub progress: Option<(u64, u64)>,
    pub aux: Option<Value>,
}

impl Event {
    pub fn status(s: impl Into<String>) -> Self {
        Event { status: s.into(), ..Default::default() }
    }
    pub fn layer(id: &str, s: impl Into<String>) -> Self {
        Event { id: Some(id.to_owned()), status: s.into(), ..Default::default() }
    }
}

/// Where progress goes; a closed receiver is ignored (the work goes on).
#[derive(Clone)]
pub struct Events(pub tokio::sync::mpsc::UnboundedSender<Event>);

impl Events {
    pub fn send(&self, e: Event) {
        let _ = self.0.send(e);
    }
}

/// The daemon's registry settings (daemon.json keys in parentheses).
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// `insecure-registries`: `host[:port]` or CIDR; plain HTTP is allowed for these and for
    /// loopback addresses.
    pub insecure: Vec<String>,
    /// `registry-mirrors`: tried before Docker Hub.
    pub docker_hub_mirrors: Vec<String>,
    /// `berth-registry-mirrors`: `{"host:port": ["https://mirror"]}` for any registry.
    pub mirrors: HashMap<String, Vec<String>>,
    /// `certs.d` next to daemon.json (or `certs-dir`): `<host:port>/*.crt` are extra CA roots.
    pub certs_dir: Option<PathBuf>,
    /// `max-concurrent-downloads` (3) and `max-concurrent-uploads` (5).
    pub max_downloads: usize,
    pub max_uploads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            insecure: Vec::new(),
            docker_hub_mirrors: Vec::new(),
            mirrors: HashMap::new(),
            certs_dir: None,
            max_downloads: 3,
            max_uploads: 5,
        }
    }
}

/// A bearer token and when it stops being good.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    pub until: Instant,
}

/// Shared registry state: configuration, HTTP clients per host, tokens, schemes found.
pub struct Registries {
    pub config: RegistryConfig,
    clients: Mutex<HashMap<String, reqwest::Client>>,
    pub(crate) tokens: Mutex<HashMap<String, Token>>,
    schemes: Mutex<HashMap<String, &'static str>>,
}

/// The API host of a reference's domain (`docker.io` → `registry-1.docker.io`).
pub fn api_host(domain: &str) -> &str {
    if domain == "docker.io" { DOCKER_HUB_HOST } else { domain }
}

/// The registry host named by a login's server address (`https://index.docker.io/v1/`,
/// `localhost:5000`, `http://host:5000/`).
pub fn login_host(server: &str) -> String {
    let s = server.trim();
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    let host = s.split('/').next().unwrap_or_default();
    match host {
        "" | "index.docker.io" | "docker.io" | "registry-1.docker.io" => DOCKER_HUB_HOST.to_owned(),
        h => h.to_owned(),
    }
}

fn split_host_port(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[')
        && let Some((h, tail)) = rest.split_once(']')
    {
        return (h, tail.strip_prefix(':'));
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        _ => (host, None),
    }
}

fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = cidr.split_once('/') else { return false };
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else { return false };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// Docker's rule: plain HTTP only for a registry listed in `insecure-registries` (by
/// `host[:port]`, or by a CIDR holding its addresses) or whose addresses are all loopback.
pub fn allows_http(insecure: &[String], host: &str, addrs: &[IpAddr]) -> bool {
    let (name, _) = split_host_port(host);
    if insecure.iter().any(|e| e == host || e == name) {
        return true;
    }
    if name == "localhost" {
        return true;
    }
    if !addrs.is_empty() && addrs.iter().all(|a| a.is_loopback()) {
        return true;
    }
    !addrs.is_empty() && addrs.iter().all(|a| insecure.iter().any(|c| cidr_contains(c, *a)))
}

impl Registries {
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            clients: Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
            schemes: Mutex::new(HashMap::new()),
        }
    }

    /// The HTTP client for `host`, trusting the system roots plus `certs.d/<host>/*.crt`.
    pub fn client(&self, host: &str) -> Result<reqwest::Client> {
        let mut map = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(host) {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(15))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(16);
        if let Some(dir) = &self.config.certs_dir {
            let d = dir.join(host.replace(['[', ']'], ""));
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    let p = e.path();
                    if p.extension().is_some_and(|x| x == "crt") {
                        let pem = std::fs::read(&p)
                            .map_err(|e| RemoteError::Invalid(format!("read CA certificate `{}`: {e}", p.display())))?;
                        for cert in reqwest::Certificate::from_pem_bundle(&pem)
                            .map_err(|e| RemoteError::Invalid(format!("CA certificate `{}`: {e}", p.display())))?
                        {
                            b = b.add_root_certificate(cert);
                        }
                    }
                }
            }
        }
        let c = b.build().map_err(|e| RemoteError::Invalid(format!("HTTP client for {host}: {e}")))?;
        map.insert(host.to_owned(), c.clone());
        Ok(c)
    }

    /// `https` or, where Docker's rule allows and the registry does not speak TLS, `http`.
    pub(crate) async fn scheme(&self, host: &str) -> Result<&'static str> {
        if let Some(s) = self.schemes.lock().unwrap_or_else(|p| p.into_inner()).get(host) {
            return Ok(s);
        }
        let (name, port) = split_host_port(host);
        let addrs: Vec<IpAddr> =
            match tokio::net::lookup_host((name, port.and_then(|p| p.parse().ok()).unwrap_or(443))).await {
                Ok(it) => it.map(|a| a.ip()).collect(),
                Err(_) => Vec::new(),
            };
        let scheme = if allows_http(&self.config.insecure, host, &addrs) {
            // As Docker does: TLS first, plain HTTP when the registry does not answer TLS.
            let client = self.client(host)?;
            match client.get(format!("https://{host}/v2/")).send().await {
                Ok(_) => "https",
                Err(_) => "http",
            }
        } else {
            "https"
        };
        self.schemes.lock().unwrap_or_else(|p| p.into_inner()).insert(host.to_owned(), scheme);
        Ok(scheme)
    }

    /// The mirrors to try before `host`, as base URLs.
    pub fn mirrors_for(&self, host: &str) -> Vec<String> {
        let mut out: Vec<String> = self.config.mirrors.get(host).cloned().unwrap_or_default();
        if host == DOCKER_HUB_HOST {
            out.extend(self.config.docker_hub_mirrors.iter().cloned());
        }
        out.into_iter().map(|m| m.trim_end_matches('/').to_owned()).collect()
    }

    /// `POST /auth`: checks credentials against `server`'s `/v2/`.
    pub async fn login(self: &std::sync::Arc<Self>, creds: &Credentials) -> Result<()> {
        let host = login_host(&creds.server_address);
        let s = session::Session::new(self, &host, None, "", Some(creds.clone()), Vec::new()).await?;
        s.login().await
    }
}

/// The repository path of a reference on its registry (`library/busybox`).
pub fn repo_path(r: &Reference) -> &str {
    r.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_for_loopback_and_listed_registries() {
        let lo: Vec<IpAddr> = vec!["127.0.0.1".parse().expect("ip")];
        let other: Vec<IpAddr> = vec!["10.1.2.3".parse().expect("ip")];
        assert!(allows_http(&[], "127.0.0.1:5000", &lo));
        assert!(allows_http(&[], "localhost:5000", &[]));
        assert!(allows_http(&[], "[::1]:5000", &["::1".parse().expect("ip")]));
        assert!(!allows_http(&[], "10.1.2.3:5000", &other));
        assert!(!allows_http(&[], "reg.example:5000", &[]));
        assert!(allows_http(&["10.1.2.3:5000".into()], "10.1.2.3:5000", &other));
        assert!(!allows_http(&["10.1.2.3:5001".into()], "10.1.2.3:5000", &other));
        assert!(allows_http(&["reg.example".into()], "reg.example:5000", &[]));
        assert!(allows_http(&["10.0.0.0/8".into()], "reg.example:5000", &other));
        assert!(!allows_http(&["192.168.0.0/16".into()], "reg.example:5000", &other));
    }

    #[test]
    fn registry_auth_header_decodes_in_every_base64_flavour() {
        use base64::Engine;
        let json = r#"{"username":"u","password":"p?>","serveraddress":"localhost:5000"}"#;
        for e in [base64::engine::general_purpose::URL_SAFE, base64::engine::general_purpose::STANDARD] {
            let c = Credentials::from_header(&e.encode(json)).expect("decode").expect("some");
            assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p?>"));
        }
        let auth = base64::engine::general_purpose::STANDARD.encode("a:b:c");
        let h = base64::engine::general_purpose::URL_SAFE.encode(format!(r#"{{"auth":"{auth}"}}"#));
        let c = Credentials::from_header(&h).expect("decode").expect("some");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("a", "b:c"));
        assert!(Credentials::from_header("e30=").expect("{}").is_none());
        assert!(Credentials::from_header("!!").is_err());
        assert_eq!(login_host("https://index.docker.io/v1/"), DOCKER_HUB_HOST);
        assert_eq!(login_host("http://127.0.0.1:5000/"), "127.0.0.1:5000");
    }
}
