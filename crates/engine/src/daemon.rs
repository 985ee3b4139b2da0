//! The daemon process: options and daemon.json, the data-root lock, the API socket, signals.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::{Engine, Paths};
use crate::error::{EngineError, Result};

#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub hosts: Vec<String>,
    pub config_file: PathBuf,
}

/// The keys of daemon.json berth reads, named as Docker names them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct DaemonJson {
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub hosts: Vec<String>,
    pub debug: bool,
    pub init_path: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    /// berth: mirrors for any registry, `{"host:port": ["https://mirror"]}`.
    pub berth_registry_mirrors: std::collections::HashMap<String, Vec<String>>,
    /// berth: where `<host:port>/ca.crt` files are (default: `certs.d` next to daemon.json).
    pub certs_dir: Option<PathBuf>,
    pub max_concurrent_downloads: Option<usize>,
    pub max_concurrent_uploads: Option<usize>,
    pub log_driver: Option<String>,
    pub log_opts: std::collections::BTreeMap<String, String>,
    /// The default bridge's name (`berth0`).
    pub bridge: Option<String>,
    /// The default bridge's gateway address and prefix.
    pub bip: Option<String>,
    pub default_address_pools: Vec<PoolJson>,
    pub dns: Vec<String>,
}

impl DaemonJson {
    /// The registry settings, with `certs.d` next to the configuration file by default.
    pub fn registry_config(&self, config_file: &Path) -> image::remote::RegistryConfig {
        let d = image::remote::RegistryConfig::default();
        image::remote::RegistryConfig {
            insecure: self.insecure_registries.clone(),
            docker_hub_mirrors: self.registry_mirrors.clone(),
            mirrors: self.berth_registry_mirrors.clone(),
            certs_dir: self.certs_dir.clone().or_else(|| config_file.parent().map(|p| p.join("certs.d"))),
            max_downloads: self.max_concurrent_downloads.filter(|n| *n > 0).unwrap_or(d.max_downloads),
            max_uploads: self.max_concurrent_uploads.filter(|n| *n > 0).unwrap_or(d.max_uploads),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PoolJson {
    pub base: String,
    pub size: u8,
}

/// The networking part of daemon.json, checked.
fn net_settings(json: &DaemonJson) -> Result<crate::network::NetSettings> {
    let mut s = crate::network::NetSettings::default();
    if let Some(b) = &json.bridge {
        if b.is_empty() || b.len() > 15 || b.contains(['/', ' ']) || b == "none" {
            return Err(EngineError::BadRequest(format!("invalid daemon configuration: bridge name `{b}`")));
        }
        s.bridge = b.clone();
    }
    if let Some(bip) = &json.bip {
        network::subnet::Subnet::parse_cidr(bip)
            .map_err(|e| EngineError::BadRequest(format!("invalid daemon configuration: bip: {e}")))?;
        s.bip = Some(bip.clone());
    }
    if !json.default_address_pools.is_empty() {
        s.pools = json
            .default_address_pools
            .iter()
            .map(|p| {
                let base = network::subnet::Subnet::parse(&p.base).map_err(|e| {
                    EngineError::BadRequest(format!("invalid daemon configuration: default-address-pools: {e}"))
                })?;
                if p.size < base.prefix || p.size > 30 {
                    return Err(EngineError::BadRequest(format!(
                        "invalid daemon configuration: default-address-pools: size {} does not fit base {}",
                        p.size, p.base
                    )));
                }
                Ok(network::subnet::Pool { base, size: p.size })
            })
            .collect::<Result<_>>()?;
    }
    for d in &json.dns {
        s.dns
            .push(d.parse().map_err(|_| EngineError::BadRequest(format!("invalid daemon configuration: dns: `{d}`")))?);
    }
    Ok(s)
}

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_EXEC_ROOT: &str = "/run/berth";
pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

fn load_json(path: &Path, explicit: bool) -> Result<DaemonJson> {
    match std::fs::read(path) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(DaemonJson::default()),
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| EngineError::BadRequest(format!("invalid daemon configuration `{}`: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => Ok(DaemonJson::default()),
        Err(e) => Err(EngineError::BadRequest(format!("read daemon configuration `{}`: {e}", path.display()))),
    }
}

/// Holds the data root for this process: an exclusive `flock` on `berth.lock`.
struct DataRootLock {
    _file: std::fs::File,
}

fn lock_data_root(root: &Path) -> Result<DataRootLock> {
    std::fs::create_dir_all(root)
        .map_err(|e| EngineError::Internal(format!("create data root `{}`: {e}", root.display())))?;
    let path = root.join("berth.lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| EngineError::Internal(format!("open `{}`: {e}", path.display())))?;
    // SAFETY: flock on an fd we own.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r != 0 {
        let other = std::fs::read_to_string(&path).unwrap_or_default();
        return Err(EngineError::Conflict(format!(
            "another berth daemon (pid {}) is already running on data root `{}`",
            other.trim(),
            root.display()
        )));
    }
    use std::io::Write;
    let _ = file.set_len(0);
    let _ = write!(file, "{}", std::process::id());
    Ok(DataRootLock { _file: file })
}

/// Runs the daemon until SIGTERM or SIGINT. Containers keep running after it returns.
pub async fn run(opts: DaemonOptions) -> Result<()> {
    let explicit = opts.config_file != Path::new("/etc/berth/daemon.json");
    let json = load_json(&opts.config_file, explicit)?;
    let data_root = opts.data_root.or(json.data_root.clone()).unwrap_or_else(|| DEFAULT_DATA_ROOT.into());
    let exec_root = opts.exec_root.or(json.exec_root.clone()).unwrap_or_else(|| DEFAULT_EXEC_ROOT.into());
    let mut hosts = if opts.hosts.is_empty() { json.hosts.clone() } else { opts.hosts };
    if hosts.is_empty() {
        hosts.push(DEFAULT_HOST.into());
    }
    let _lock = lock_data_root(&data_root)?;
    let settings = crate::engine::Settings {
        init_path: json.init_path.clone(),
        registry: json.registry_config(&opts.config_file),
        net: net_settings(&json)?,
        log_driver: json.log_driver.clone(),
        log_opts: json.log_opts.clone(),
    };
    // A bad default log configuration is refused now, not at the first `run`.
    crate::logs::fill_log_config(&mut api::types::HostConfig::default(), &settings)?;
    let engine = Engine::open(Paths { data_root: data_root.clone(), exec_root }, settings).await?;
    let app = crate::http::router(engine.clone());
    // The version prefix is stripped before routing, so one route table serves `/v1.45/…` and `/…`.
    let app = tower::Layer::layer(
        &axum::middleware::map_request(|req: axum::extract::Request| async move { crate::http::strip_version(req) }),
        app,
    );
    let mut servers = tokio::task::JoinSet::new();
    let mut sockets = Vec::new();
    for h in &hosts {
        let path = h.strip_prefix("unix://").ok_or_else(|| {
            EngineError::BadRequest(format!("unsupported host `{h}`: only unix:// sockets are served"))
        })?;
        let path = PathBuf::from(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| EngineError::Internal(format!("create `{}`: {e}", dir.display())))?;
        }
        let _ = std::fs::remove_file(&path);
        let listener = tokio::net::UnixListener::bind(&path)
            .map_err(|e| EngineError::Internal(format!("listen on `{}`: {e}", path.display())))?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660));
        tracing::info!("API listening on {}", path.display());
        sockets.push(path);
        let svc = axum::ServiceExt::<axum::extract::Request>::into_make_service(app.clone());
        servers.spawn(async move { axum::serve(listener, svc).await });
    }
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(EngineError::internal)?;
    let mut int =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).map_err(EngineError::internal)?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping; containers keep running"),
        _ = int.recv() => tracing::info!("SIGINT: stopping; containers keep running"),
        r = servers.join_next() => {
            if let Some(Ok(Err(e))) = r {
                return Err(EngineError::Internal(format!("serve: {e}")));
            }
        }
    }
    servers.abort_all();
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    // Removed containers whose files are still being deleted.
    engine.background.close();
    if tokio::time::timeout(std::time::Duration::from_secs(30), engine.background.wait()).await.is_err() {
        tracing::warn!("stopping with removed containers' files still being deleted");
    }
    let net = engine.net.clone();
    let _ = tokio::task::spawn_blocking(move || net.pool.drain()).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_json_empty_missing_and_bad() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("daemon.json");
        assert!(load_json(&p, false).is_ok(), "a missing default file is fine");
        assert!(load_json(&p, true).is_err(), "a missing explicit file is an error");
        std::fs::write(&p, "  \n").expect("write");
        assert!(load_json(&p, true).is_ok(), "an empty file is an empty configuration");
        std::fs::write(&p, r#"{"data-root": "/x", "hosts": ["unix:///y"]}"#).expect("write");
        let j = load_json(&p, true).expect("valid");
        assert_eq!(j.data_root, Some(PathBuf::from("/x")));
        std::fs::write(&p, "{nope").expect("write");
        assert!(load_json(&p, true).expect_err("invalid").to_string().contains("invalid daemon configuration"));
    }
}
