//! The registry's configuration: command-line flags for the common settings, a TOML or YAML file
//! (chosen by extension; TOML otherwise) for the rest. Flags win over the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::auth::{AccessRule, Auth, TokenConfig, load_htpasswd};
use crate::storage::{FsStorage, S3Config, S3Storage, Storage};

pub const DEFAULT_ADDR: &str = "127.0.0.1:5000";
pub const DEFAULT_ROOT: &str = "/var/lib/berth/registry";

/// Everything a registry server is configured with.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (default 127.0.0.1:5000).
    pub addr: Option<String>,
    /// Root directory of the filesystem store (default /var/lib/berth/registry).
    pub root: Option<PathBuf>,
    /// Use this S3 bucket instead of the filesystem.
    pub s3: Option<S3Config>,
    pub delete: DeleteConfig,
    pub auth: AuthConfig,
    pub tls: Option<TlsConfig>,
    pub notifications: NotificationsConfig,
    /// Most upload sessions open at once.
    pub max_uploads: Option<usize>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeleteConfig {
    /// Whether manifests, tags, blobs and repositories may be deleted through the API.
    pub enabled: bool,
}

impl Default for DeleteConfig {
    fn default() -> Self {
        DeleteConfig { enabled: true }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// htpasswd file with bcrypt entries; enables basic auth (or token auth with `token`).
    pub htpasswd: Option<PathBuf>,
    /// Enables the bearer token flow with the registry's own `/token` endpoint.
    pub token: Option<TokenConfig>,
    pub access: Vec<AccessRule>,
    /// Allows serving without auth on a non-loopback address.
    pub insecure_open: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    pub endpoints: Vec<EndpointConfig>,
    /// Events held for delivery at most; beyond it new events are dropped (and counted).
    pub queue_size: usize,
}

impl Default for NotificationsConfig {
    fn default() -> Self {
        NotificationsConfig { endpoints: Vec::new(), queue_size: 1024 }
    }
}

/// A webhook receiving event envelopes by POST (`http://` only).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointConfig {
    pub name: Option<String>,
    pub url: String,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    #[serde(default = "default_retries")]
    pub retries: u32,
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
}

fn default_timeout_ms() -> u64 {
    2000
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    200
}

impl Config {
    /// Reads a config file: YAML if it ends in `.yaml`/`.yml`, TOML otherwise.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        if yaml {
            serde_yaml::from_str(&text).with_context(|| format!("parsing YAML config {}", path.display()))
        } else {
            toml::from_str(&text).with_context(|| format!("parsing TOML config {}", path.display()))
        }
    }

    pub fn addr(&self) -> anyhow::Result<SocketAddr> {
        let a = self.addr.as_deref().unwrap_or(DEFAULT_ADDR);
        a.parse().with_context(|| format!("parsing listen address {a}"))
    }

    pub fn root(&self) -> PathBuf {
        self.root.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
    }

    /// Opens the configured store.
    pub fn storage(&self) -> anyhow::Result<Arc<dyn Storage>> {
        Ok(match &self.s3 {
            Some(s3) => Arc::new(S3Storage::new(s3).context("configuring S3 storage")?),
            None => {
                let root = self.root();
                Arc::new(FsStorage::new(&root).with_context(|| format!("opening store {}", root.display()))?)
            }
        })
    }

    /// Builds the authenticator; refuses an open registry on a non-loopback address unless forced.
    pub fn auth(&self, addr: &SocketAddr) -> anyhow::Result<Auth> {
        let users = match &self.auth.htpasswd {
            Some(p) => load_htpasswd(p)?,
            None => Default::default(),
        };
        let rules = self.auth.access.clone();
        Ok(match (&self.auth.token, self.auth.htpasswd.is_some()) {
            (Some(token), _) => Auth::token(users, rules, token.clone())?,
            (None, true) => Auth::basic(users, rules),
            (None, false) => {
                if !addr.ip().is_loopback() && !self.auth.insecure_open {
                    anyhow::bail!(
                        "refusing to serve {addr} without authentication: give --htpasswd, or set auth.insecure_open"
                    );
                }
                Auth::open()
            }
        })
    }
}
