#![recursion_limit = "256"]
//! berth's daemon: the Docker Engine API on a Unix socket and the managers behind it.
//!
//! - [`engine::Engine`] wires the image store, the containers and exec sessions; it is the
//!   one place that knows them all.
//! - [`container`] holds a container's record and lifecycle enum; [`lifecycle`] the verbs
//!   (create, start, stop, kill, pause, remove, wait) and what happens on exit.
//! - [`build`]: builds (RUN steps as containers through the shim), commit, diff.
//! - [`events`] records every action (Docker's event JSON) and streams it to `GET /events`.
//! - [`shim`] spawns and talks to the per-container shims (see `runtime::shim`).
//! - [`network`] keeps networks and container endpoints (bridge, IPAM, ports, DNS).
//! - [`http`] maps routes to those verbs; [`error`] maps every error kind to an HTTP status
//!   in one match.
//! - [`volumes`] keeps volumes and decides a container's mounts; [`archive`] reads and writes
//!   a container's files (`cp`, `export`); [`disk`] is `system df`, the prunes and the sweep
//!   of what a crash left at start; [`spare`] keeps container directories made ahead of time.
//! - [`daemon`] is the process: options, the data-root lock, the socket, signals.

pub mod archive;
pub mod build;
pub mod container;
pub mod daemon;
pub mod disk;
pub mod engine;
pub mod error;
pub mod events;
pub mod exec;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod logs;
pub mod network;
pub mod restart;
pub mod shim;
pub mod spare;
pub mod volumes;

pub use daemon::{DaemonOptions, run};
