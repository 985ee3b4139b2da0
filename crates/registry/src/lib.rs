//! berth's registry: an OCI Distribution 1.1 server (Docker Registry HTTP API v2 compatible),
//! run as `berth registry serve` and collected with `berth registry gc`.
//!
//! A tour of the main types:
//!
//! - [`storage::Storage`]: a flat, atomic object store; [`storage::FsStorage`] (default) and
//!   [`storage::S3Storage`] (the `object_store` crate) implement it, and one test suite runs on both.
//! - [`Registry`]: blobs, upload sessions, manifests, tags, referrers and the catalog over a store.
//!   It knows nothing of HTTP. The storage key layout is documented in [`names`].
//! - [`error::RegistryError`]: every failure, carrying its object; [`error::RegistryError::classify`]
//!   is the one place that maps it to an HTTP status and a spec error code.
//! - [`http`]: the route table and handlers; [`auth::Auth`]: open, htpasswd basic, or bearer tokens
//!   from the registry's own `/token` endpoint, with per-namespace [`auth::AccessRule`]s.
//! - [`gc::collect`]: mark and sweep, safe against pushes in flight (see its module docs).
//! - [`notify::Notifier`]: webhook events; [`metrics::Metrics`]: `/metrics` in Prometheus format.
//! - [`config::Config`]: flags plus a TOML or YAML file; [`start`] runs a server and returns a
//!   [`Server`] handle, [`serve`] runs one until SIGINT/SIGTERM.

pub mod auth;
pub mod config;
pub mod error;
pub mod gc;
pub mod http;
mod manifests;
pub mod metrics;
pub mod names;
pub mod notify;
mod registry;
pub mod storage;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use config::Config;
pub use error::{ErrorCode, RegistryError};
pub use manifests::{Descriptor, MAX_MANIFEST_SIZE, Manifest, PutManifest};
pub use registry::{Options, Registry, UploadStatus};

/// `berth registry serve`: run the registry.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:5000]
    #[arg(long)]
    pub addr: Option<String>,
    /// Directory of the filesystem store [default: /var/lib/berth/registry]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// TOML or YAML config file for everything else (auth rules, S3, TLS, notifications)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// htpasswd file (bcrypt entries): enables basic auth
    #[arg(long)]
    pub htpasswd: Option<PathBuf>,
    /// With --htpasswd: use bearer tokens from this registry's /token endpoint instead of basic auth
    #[arg(long)]
    pub token_auth: bool,
    /// PEM certificate chain for TLS
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// `berth registry gc`: remove blobs no manifest references.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GcArgs {
    /// Directory of the filesystem store [default: /var/lib/berth/registry]
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Config file (for an S3 store)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Report what would be removed without removing anything
    #[arg(long)]
    pub dry_run: bool,
    /// Keep unreferenced blobs written or linked in the last SECONDS (protects pushes in flight)
    #[arg(long, default_value_t = 3600)]
    pub grace: u64,
    /// Also remove manifests that no tag reaches (directly, through an index, or as a referrer)
    #[arg(long)]
    pub delete_untagged: bool,
}

/// `berth registry <command>`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RegistryCommand {
    /// Run the registry server
    Serve(ServeArgs),
    /// Remove unreferenced blobs and stale uploads
    Gc(GcArgs),
}

/// Runs a registry command. Blocking: it starts its own runtime, so call it outside any runtime
/// (from async code use [`serve`] and [`gc_async`]).
pub fn main(cmd: RegistryCommand) -> anyhow::Result<()> {
    match cmd {
        RegistryCommand::Serve(args) => {
            tokio::runtime::Runtime::new().context("starting runtime")?.block_on(serve(args))
        }
        RegistryCommand::Gc(args) => {
            tokio::runtime::Runtime::new().context("starting runtime")?.block_on(gc_async(args)).map(|_| ())
        }
    }
}

impl ServeArgs {
    /// The config file (if any) with these flags applied over it.
    pub fn config(&self) -> anyhow::Result<Config> {
        let mut c = match &self.config {
            Some(p) => Config::load(p)?,
            None => Config::default(),
        };
        if let Some(a) = &self.addr {
            c.addr = Some(a.clone());
        }
        if let Some(r) = &self.root {
            c.root = Some(r.clone());
        }
        if let Some(h) = &self.htpasswd {
            c.auth.htpasswd = Some(h.clone());
        }
        if self.token_auth && c.auth.token.is_none() {
            c.auth.token = Some(auth::TokenConfig::default());
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            c.tls = Some(config::TlsConfig { cert: cert.clone(), key: key.clone() });
        }
        Ok(c)
    }
}

/// Runs the registry until SIGINT or SIGTERM, then stops accepting and lets requests in flight
/// (uploads included) finish.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let server = start(args.config()?).await?;
    tracing::info!(addr = %server.addr, "registry listening");
    shutdown_signal().await;
    tracing::info!("shutting down: finishing requests in flight");
    server.shutdown().await
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A running server.
pub struct Server {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    pub state: Arc<http::AppState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Stops accepting connections and waits for requests in flight to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.context("server task")?.context("serving")
    }
}

/// Builds the router for `state`.
pub fn router(state: Arc<http::AppState>) -> axum::Router {
    axum::Router::new().fallback(http::handle).with_state(state)
}

/// Binds and starts a server in the background.
pub async fn start(config: Config) -> anyhow::Result<Server> {
    let addr = config.addr()?;
    let auth = config.auth(&addr)?;
    let storage = config.storage()?;
    let options = Options {
        delete_enabled: config.delete.enabled,
        max_uploads: config.max_uploads.unwrap_or(Options::default().max_uploads),
    };
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr().context("reading bound address")?;
    let metrics = Arc::new(metrics::Metrics::default());
    let notifier = notify::Notifier::start(&config.notifications, addr.to_string(), metrics.clone());
    let state = Arc::new(http::AppState {
        registry: Registry::new(storage, options),
        auth,
        metrics,
        notifier,
        tls: config.tls.is_some(),
    });
    let app = router(state.clone());
    let (stop, stopped) = oneshot::channel::<()>();
    let graceful = async move {
        let _ = stopped.await;
    };
    let task = match &config.tls {
        Some(t) => {
            let tls = tls::TlsListener::new(listener, tls::server_config(&t.cert, &t.key)?)?;
            tokio::spawn(async move { axum::serve(tls, app).with_graceful_shutdown(graceful).await })
        }
        None => tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(graceful).await }),
    };
    Ok(Server { addr, state, stop: Some(stop), task })
}

/// Runs a garbage collection and prints what it did. Starts its own runtime: call [`gc_async`] from
/// inside one.
pub fn gc(args: GcArgs) -> anyhow::Result<()> {
    tokio::runtime::Runtime::new().context("starting runtime")?.block_on(gc_async(args)).map(|_| ())
}

/// [`gc`] for callers already in a tokio runtime; returns the report after printing it.
pub async fn gc_async(args: GcArgs) -> anyhow::Result<gc::GcReport> {
    let mut config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(r) = &args.root {
        config.root = Some(r.clone());
    }
    let storage = config.storage()?;
    let options = gc::GcOptions {
        dry_run: args.dry_run,
        grace: Duration::from_secs(args.grace),
        delete_untagged: args.delete_untagged,
    };
    let report = gc::collect_with(storage.as_ref(), &options).await?;
    let verb = if args.dry_run { "would remove" } else { "removed" };
    for (name, d) in &report.manifests_deleted {
        println!("{verb} untagged manifest {name}@{d}");
    }
    for d in &report.blobs_deleted {
        println!("{verb} blob {d}");
    }
    println!(
        "{} manifests, {} blobs referenced, {} recent blobs kept; {verb} {} blobs ({} bytes) and {} stale uploads",
        report.manifests,
        report.blobs_marked,
        report.blobs_recent,
        report.blobs_deleted.len(),
        report.bytes_freed,
        report.uploads_removed
    );
    Ok(report)
}
