//! Integration tests of berth's registry: servers on 127.0.0.1:0, driven over HTTP.

mod api_blobs;
mod api_manifests;
mod auth;
mod common;
mod gc;
mod ops;
mod skopeo;
mod storage_suite;
