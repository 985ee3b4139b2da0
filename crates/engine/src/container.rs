//! Containers: the record kept in SQLite, the live state, and the lifecycle enum.

use std::sync::Mutex;

use api::types::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};
use tokio::sync::{oneshot, watch};

/// Where a container is in its life. Verbs check `can_<verb>()` first and name the state
/// in their error (house style rule 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Has a live process (running or paused). A `restarting` container has none: it waits
    /// for its restart policy's back-off.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }

    pub fn can_start(self) -> bool {
        matches!(self, Status::Created | Status::Exited)
    }

    pub fn can_kill(self) -> bool {
        matches!(self, Status::Running)
    }

    pub fn can_pause(self) -> bool {
        matches!(self, Status::Running)
    }

    pub fn can_remove(self) -> bool {
        !self.is_live() && self != Status::Removing
    }
}

/// The mutable part of a container, persisted with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub started_at: String,
    pub finished_at: String,
    pub oom_killed: bool,
    pub restart_count: i64,
    pub name: String,
    /// Set by `stop`/`kill` so that the restart policy knows the user asked for it.
    #[serde(default)]
    pub stopped_by_user: bool,
    /// The healthcheck's status and last results, when the container has one.
    #[serde(default)]
    pub health: Option<api::types::Health>,
}

pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// What is persisted for a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub created: String,
    /// The image id (`sha256:…`).
    pub image: String,
    /// The image as the user named it.
    pub image_name: String,
    pub path: String,
    pub args: Vec<String>,
    /// The create request's config merged with the image's defaults.
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub state: State,
    /// Binds, volumes and tmpfs mounts, decided at create.
    #[serde(default)]
    pub mounts: Vec<crate::volumes::MountPoint>,
}

/// A pending attach, waiting for the container to start: the start handler connects it to
/// the shim and hands over the connection.
pub struct PendingAttach {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tx: oneshot::Sender<tokio::net::UnixStream>,
}

/// Bumped on every exit and on removal; waiters watch it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Events {
    pub exits: u64,
    pub removed: bool,
}

/// A container known to the daemon.
pub struct Container {
    pub id: String,
    pub record: Mutex<Record>,
    pub events: watch::Sender<Events>,
    pub pending: Mutex<Vec<PendingAttach>>,
    /// Serialises start/stop/kill/remove of this container.
    pub op: tokio::sync::Mutex<()>,
    pub exec_ids: Mutex<Vec<String>>,
    /// The restart policy's current back-off (not persisted: a daemon restart resets it).
    pub backoff: Mutex<Option<std::time::Duration>>,
    /// Bumped on every start: a healthcheck monitor of an older generation stops.
    pub health_gen: std::sync::atomic::AtomicU64,
}

impl Container {
    pub fn new(record: Record) -> Self {
        Self {
            id: record.id.clone(),
            record: Mutex::new(record),
            events: watch::channel(Events::default()).0,
            pending: Mutex::new(Vec::new()),
            op: tokio::sync::Mutex::new(()),
            exec_ids: Mutex::new(Vec::new()),
            backoff: Mutex::new(None),
            health_gen: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// A copy of the record.
    pub fn snapshot(&self) -> Record {
        self.lock().clone()
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        // The record is plain data; a panic elsewhere cannot leave it half-updated in a way
        // that matters more than losing the daemon would.
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self) -> Status {
        self.lock().state.status
    }

    pub fn name(&self) -> String {
        self.lock().state.name.clone()
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }
}

/// Docker-style random names: adjective_surname.
pub fn random_name() -> String {
    const LEFT: [&str; 24] = [
        "admiring",
        "brave",
        "clever",
        "dazzling",
        "eager",
        "focused",
        "gallant",
        "happy",
        "jolly",
        "keen",
        "lucid",
        "modest",
        "nifty",
        "optimistic",
        "peaceful",
        "quirky",
        "relaxed",
        "serene",
        "tender",
        "upbeat",
        "vibrant",
        "wizardly",
        "youthful",
        "zealous",
    ];
    const RIGHT: [&str; 24] = [
        "albattani",
        "babbage",
        "curie",
        "darwin",
        "euclid",
        "fermat",
        "galileo",
        "hopper",
        "hypatia",
        "jennings",
        "kepler",
        "lovelace",
        "meitner",
        "noether",
        "pasteur",
        "ride",
        "shannon",
        "tesla",
        "turing",
        "volhard",
        "wilson",
        "wu",
        "yalow",
        "zhukovsky",
    ];
    format!("{}_{}", LEFT[rand::random_range(0..LEFT.len())], RIGHT[rand::random_range(0..RIGHT.len())])
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`, an optional leading `/`.
pub fn valid_name(name: &str) -> bool {
    let n = name.strip_prefix('/').unwrap_or(name);
    let b = n.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A new 64-hex container or exec id.
pub fn new_id() -> String {
    let b: [u8; 32] = rand::random();
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        assert!(valid_name("web-1"));
        assert!(valid_name("/web.1_x"));
        assert!(!valid_name("a"));
        assert!(!valid_name("-a"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a/b"));
        assert!(valid_name(&random_name()));
        assert_eq!(new_id().len(), 64);
    }

    #[test]
    fn lifecycle_checks() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(Status::Running.can_kill());
        assert!(!Status::Exited.can_kill());
        assert!(!Status::Running.can_remove());
        assert!(Status::Exited.can_remove());
    }
}
