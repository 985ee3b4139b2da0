//! berth's command line: docker's verbs over the Engine API.
//!
//! It depends on the `api` crate only, so the same binary drives a real Docker daemon
//! (`-H unix:///var/run/docker.sock`). [`Cli`] is the clap definition; [`run`] dispatches;
//! [`stream`] holds the interactive parts (attach, TTY, exec) and [`fmt`] docker's output
//! formats.

pub mod build;
pub mod commands;
pub mod credentials;
pub mod disk;
pub mod distribution;
pub mod events;
pub mod files;
pub mod fmt;
pub mod network;
pub mod stream;
pub mod volume;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";

#[derive(Debug, Parser)]
#[command(name = "berth", version, about = "A Docker-compatible container engine", disable_help_subcommand = true)]
pub struct Cli {
    /// Daemon socket to connect to (also DOCKER_HOST)
    #[arg(short = 'H', long = "host", global = true, env = "DOCKER_HOST")]
    pub host: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Each verb's arguments are built only when that verb runs (or its help is shown): building
// every verb's parser cost about 0.5 ms of each CLI start. A flattened argument struct then
// must not have a doc comment: clap would apply it after the verb's own, as the verb's help.
#[command(defer = true)]
pub enum Command {
    /// Create and run a new container from an image
    #[command(disable_help_flag = true)]
    Run(RunArgs),
    /// Create a new container
    #[command(disable_help_flag = true)]
    Create(RunArgs),
    /// Start one or more stopped containers
    Start(StartArgs),
    /// Stop one or more running containers
    Stop(StopArgs),
    /// Restart one or more containers
    Restart(StopArgs),
    /// Kill one or more running containers
    Kill(KillArgs),
    /// Remove one or more containers
    Rm(RmArgs),
    /// List containers
    Ps(PsArgs),
    /// Fetch the logs of a container
    Logs(LogsArgs),
    /// Execute a command in a running container
    Exec(ExecArgs),
    /// Return low-level information on objects
    Inspect(InspectArgs),
    /// Block until containers stop, then print their exit codes
    Wait(Names),
    /// Display the running processes of a container
    Top(TopArgs),
    /// Rename a container
    Rename { container: String, new_name: String },
    /// Pause all processes within one or more containers
    Pause(Names),
    /// Unpause all processes within one or more containers
    Unpause(Names),
    /// Display a live stream of container(s) resource usage statistics
    Stats(StatsArgs),
    /// Update configuration of one or more containers
    Update(UpdateArgs),
    /// Import the contents from a tarball to create a filesystem image
    Import(ImportArgs),
    /// List images
    Images(ImagesArgs),
    /// Remove one or more images
    Rmi(RmiArgs),
    /// Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE
    Tag { source: String, target: String },
    /// Show the history of an image
    History(HistoryArgs),
    /// Build an image from a Dockerfile
    Build(build::BuildArgs),
    /// Create a new image from a container's changes
    Commit(build::CommitArgs),
    /// Inspect changes to files or directories on a container's filesystem
    Diff { container: String },
    /// Download an image from a registry
    Pull(distribution::PullArgs),
    /// Upload an image to a registry
    Push(distribution::PushArgs),
    /// Authenticate to a registry
    Login(distribution::LoginArgs),
    /// Log out from a registry
    Logout { server: Option<String> },
    /// Manage networks
    #[command(subcommand)]
    Network(network::NetworkCmd),
    /// List port mappings or a specific mapping for the container
    Port(network::PortArgs),
    /// Manage volumes
    #[command(subcommand)]
    Volume(volume::VolumeCmd),
    /// Copy files/folders between a container and the local filesystem
    Cp(files::CpArgs),
    /// Save one or more images to a tar archive (streamed to STDOUT by default)
    Save(files::SaveArgs),
    /// Load an image from a tar archive or STDIN
    Load(files::LoadArgs),
    /// Export a container's filesystem as a tar archive
    Export(files::ExportArgs),
    /// Manage berth (disk usage, prune)
    #[command(subcommand)]
    System(disk::SystemCmd),
    /// Manage images (prune)
    #[command(subcommand)]
    Image(disk::PruneOnly),
    /// Manage containers (prune)
    #[command(subcommand)]
    Container(disk::PruneOnly),
    /// Manage builds (prune)
    #[command(subcommand)]
    Builder(disk::PruneOnly),
    /// Show the berth version information
    Version,
    /// Display system-wide information
    Info,
    /// Get real time events from the server
    Events(events::EventsArgs),
    /// Run the daemon
    #[command(hide = true)]
    Daemon,
}

#[derive(Debug, Args, Clone, Default)]
pub struct Names {
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args, Clone, Default)]
pub struct RunArgs {
    /// Print help (-h is --hostname, as in docker)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Automatically remove the container when it exits
    #[arg(long)]
    pub rm: bool,
    /// Assign a name to the container
    #[arg(long)]
    pub name: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Container host name
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label")]
    pub labels: Vec<String>,
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Add Linux capabilities
    #[arg(long)]
    pub cap_add: Vec<String>,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Mount a tmpfs directory (DEST[:OPTIONS])
    #[arg(long)]
    pub tmpfs: Vec<String>,
    /// Ulimit options (NAME=SOFT[:HARD])
    #[arg(long)]
    pub ulimit: Vec<String>,
    /// Sysctl options (KEY=VALUE)
    #[arg(long)]
    pub sysctl: Vec<String>,
    /// Security options
    #[arg(long)]
    pub security_opt: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long)]
    pub cap_drop: Vec<String>,
    /// Mount the container's root filesystem as read only
    #[arg(long)]
    pub read_only: bool,
    /// Connect a container to a network
    #[arg(long = "network", alias = "net")]
    pub network: Option<String>,
    #[command(flatten)]
    pub net: network::NetRunArgs,
    /// Signal to stop the container
    #[arg(long)]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long)]
    pub stop_timeout: Option<i64>,
    /// Add additional groups to join
    #[arg(long)]
    pub group_add: Vec<String>,
    /// Size of /dev/shm
    #[arg(long)]
    pub shm_size: Option<String>,
    /// Bind mount a volume (SRC:DST[:OPTS], NAME:DST, or DST for an anonymous volume)
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Attach a filesystem mount to the container (type=bind|volume|tmpfs,source=,target=,…)
    #[arg(long)]
    pub mount: Vec<String>,
    /// Mount volumes from the specified container(s) (CONTAINER[:ro|rw])
    #[arg(long)]
    pub volumes_from: Vec<String>,
    /// Logging driver for the container (json-file, local, none)
    #[arg(long)]
    pub log_driver: Option<String>,
    /// Log driver options (max-size=10m, max-file=3)
    #[arg(long)]
    pub log_opt: Vec<String>,
    /// Restart policy to apply when a container exits (no, always, unless-stopped, on-failure[:N])
    #[arg(long)]
    pub restart: Option<String>,
    #[command(flatten)]
    pub health: HealthArgs,
    /// Image to run
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

// `--health-*` flags of `run` and `create`. (Not `///`: see `Command`.)
#[derive(Debug, Args, Clone, Default)]
pub struct HealthArgs {
    /// Command to run to check health
    #[arg(long)]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h)
    #[arg(long)]
    pub health_interval: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h)
    #[arg(long)]
    pub health_timeout: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long)]
    pub health_retries: Option<i64>,
    /// Start period for the container to initialize before counting retries (ms|s|m|h)
    #[arg(long)]
    pub health_start_period: Option<String>,
    /// Time between running the check during the start period (ms|s|m|h)
    #[arg(long)]
    pub health_start_interval: Option<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long)]
    pub no_healthcheck: bool,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Disable streaming stats and only pull the first result
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate output
    #[arg(long)]
    pub no_trunc: bool,
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub resources: ResourceArgs,
    /// Restart policy to apply when a container exits
    #[arg(long)]
    pub restart: Option<String>,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

// Resource limits, shared by `run`/`create` and `update`. (Not `///`: see `Command`.)
#[derive(Debug, Args, Clone, Default)]
pub struct ResourceArgs {
    /// Memory limit
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Swap limit equal to memory plus swap: -1 to enable unlimited swap
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Number of CPUs
    #[arg(long)]
    pub cpus: Option<f64>,
    /// CPU shares (relative weight)
    #[arg(short = 'c', long)]
    pub cpu_shares: Option<i64>,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Block IO (relative weight), between 10 and 1000
    #[arg(long)]
    pub blkio_weight: Option<u16>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Attach STDOUT/STDERR and forward signals
    #[arg(short = 'a', long)]
    pub attach: bool,
    /// Attach container's STDIN
    #[arg(short = 'i', long)]
    pub interactive: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait before killing the container
    #[arg(short = 't', long = "time", alias = "timeout")]
    pub time: Option<i64>,
    /// Signal to send to the container
    #[arg(short = 's', long)]
    pub signal: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// Signal to send to the container
    #[arg(short = 's', long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Force the removal of a running container (uses SIGKILL)
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Remove anonymous volumes associated with the container
    #[arg(short = 'v', long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default shows just running)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Only display container IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    /// Show n last created containers
    #[arg(short = 'n', long)]
    pub last: Option<i64>,
    /// Show the latest created container
    #[arg(short = 'l', long)]
    pub latest: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Follow log output
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Number of lines to show from the end of the logs
    #[arg(short = 'n', long, default_value = "all")]
    pub tail: String,
    /// Show timestamps
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// Show logs since timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub since: Option<String>,
    /// Show logs before a timestamp or relative (e.g. 42m)
    #[arg(long)]
    pub until: Option<String>,
    pub container: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Detached mode: run command in the background
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Username or UID
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Give extended privileges to the command
    #[arg(long)]
    pub privileged: bool,
    pub container: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a Go template
    #[arg(short = 'f', long)]
    pub format: Option<String>,
    /// Only inspect objects of the given type (container, image)
    #[arg(long = "type")]
    pub kind: Option<String>,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
    /// ps options
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Set commit message for imported image
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// File to import, or - for standard input
    pub file: String,
    /// Repository and tag to give the image
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Show all images
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Filter output based on conditions provided
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
    pub reference: Option<String>,
}

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Force removal of the image
    #[arg(short = 'f', long)]
    pub force: bool,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Don't truncate output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only show image IDs
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub image: String,
}

/// Runs a CLI command and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    let host = cli.host.clone().unwrap_or_else(|| DEFAULT_HOST.to_owned());
    let client = match api::client::Client::new(&host) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    commands::dispatch(&client, cli.command).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Each verb's help says what the verb does: its arguments are built deferred, and a doc
    /// comment on a struct they flatten would replace the verb's own text when they are.
    #[test]
    fn every_verb_keeps_its_own_help_once_its_arguments_are_built() {
        fn check(cmd: &clap::Command, path: &str) {
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                let listed = sub.get_about().map(|a| a.to_string());
                assert!(listed.is_some(), "`{name}` has no help text");
                let mut built = sub.clone();
                built.build();
                assert_eq!(built.get_about().map(|a| a.to_string()), listed, "`{name} --help`");
                check(&built, &name);
            }
        }
        let cmd = super::Cli::command();
        cmd.clone().debug_assert();
        check(&cmd, "berth");
    }
}
