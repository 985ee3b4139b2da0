//! A stand-alone `registry` binary until `berth registry` is wired in:
//! `cargo run -p berth-registry --example registry -- serve --addr 127.0.0.1:5000 --root /tmp/reg`.

use clap::Parser;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: berth_registry::RegistryCommand,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    berth_registry::main(Cli::parse().cmd)
}
