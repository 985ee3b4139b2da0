//! The `berth` binary: `daemon`, `registry`, `runtime` (runc's command line), the hidden
//! `shim`, and every CLI verb.

mod oci_runtime;

use std::path::PathBuf;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "berth daemon", about = "Run the berth daemon")]
struct DaemonArgs {
    /// Root of persistent state
    #[arg(long, value_name = "DIR")]
    data_root: Option<PathBuf>,
    /// Root of runtime state (sockets, namespaces)
    #[arg(long, value_name = "DIR")]
    exec_root: Option<PathBuf>,
    /// Daemon socket(s) to listen on
    #[arg(short = 'H', long = "host")]
    host: Vec<String>,
    /// Daemon configuration file
    #[arg(long, default_value = "/etc/berth/daemon.json")]
    config_file: PathBuf,
    /// Log at debug level
    #[arg(short = 'D', long)]
    debug: bool,
}

#[derive(Debug, Parser)]
#[command(name = "berth registry", about = "Run or maintain an OCI Distribution registry")]
struct RegistryArgs {
    #[command(subcommand)]
    command: registry::RegistryCommand,
}

fn registry_main(a: RegistryArgs) -> i32 {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    match registry::main(a.command) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth registry: {e:#}");
            1
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        // The shim must fork while single-threaded: no async runtime before it.
        Some("shim") => match args.get(2) {
            Some(cfg) => runtime::shim::main(std::path::Path::new(cfg)),
            None => {
                eprintln!("usage: berth shim CONFIG");
                std::process::exit(2)
            }
        },
        Some("daemon") => {
            // Forked first, while this process has no thread, file or lock to pass on: the
            // daemon's shims are forked from it rather than exec'd (see runtime::shim::spawner).
            if let Some(s) = runtime::shim::spawner::start() {
                engine::shim::use_spawner(s);
            }
            std::process::exit(daemon(DaemonArgs::parse_from(&args[1..])))
        }
        // runc's command line; forks like the shim, so no async runtime either.
        Some("runtime") => std::process::exit(oci_runtime::main(oci_runtime::RuntimeArgs::parse_from(&args[1..]))),
        Some("registry") => std::process::exit(registry_main(RegistryArgs::parse_from(&args[1..]))),
        _ => {
            let cli = cli::Cli::parse();
            // One thread is plenty for a client, and starts faster than a pool.
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("berth: start async runtime: {e}");
                    std::process::exit(1)
                }
            };
            let code = rt.block_on(cli::run(cli));
            // stdin may be blocked in a read on a runtime thread: exit without waiting for it.
            std::process::exit(code)
        }
    }
}

fn daemon(a: DaemonArgs) -> i32 {
    let level = if a.debug { "debug" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("BERTH_LOG").unwrap_or_else(|_| level.into()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth daemon: start async runtime: {e}");
            return 1;
        }
    };
    let opts = engine::DaemonOptions {
        data_root: a.data_root,
        exec_root: a.exec_root,
        hosts: a.host,
        config_file: a.config_file,
    };
    match rt.block_on(engine::run(opts)) {
        Ok(()) => {
            rt.shutdown_timeout(std::time::Duration::from_millis(200));
            0
        }
        Err(e) => {
            eprintln!("berth daemon: {e}");
            1
        }
    }
}
