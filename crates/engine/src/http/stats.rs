//! `GET /containers/{id}/stats` and `POST /containers/{id}/update`.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Query, channel_body, parse_json};
use crate::error::{EngineError, Result};

fn sample(cgroup: &str, id: &str, name: &str, pre: Option<&Value>) -> Value {
    let mut v = runtime::cgroups::stats(cgroup);
    v["read"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true));
    v["id"] = json!(id);
    v["name"] = json!(format!("/{name}"));
    v["num_procs"] = json!(0);
    v["storage_stats"] = json!({});
    match pre {
        Some(p) => {
            v["preread"] = p["read"].clone();
            v["precpu_stats"] = p["cpu_stats"].clone();
        }
        None => {
            v["preread"] = json!("0001-01-01T00:00:00Z");
            v["precpu_stats"] = json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}});
        }
    }
    v
}

/// Docker's stats: a stream of samples a second apart, or one (with `stream=false` after a
/// second, so that the CPU figures have a previous sample; at once with `one-shot=true`).
pub async fn stats(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<Response> {
    let c = e.lookup(&id)?;
    let stream = q.get("stream").is_none_or(|v| matches!(v.as_str(), "1" | "true" | "True"));
    let one_shot = q.get("one-shot").is_some_and(|v| matches!(v.as_str(), "1" | "true" | "True"));
    let cgroup = format!("/berth/{}", c.id);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut pre: Option<Value> = None;
        loop {
            let live = c.status().is_live();
            let name = c.name();
            let v = if live {
                sample(&cgroup, &c.id, &name, pre.as_ref())
            } else {
                // A stopped container reports zeros, as Docker does.
                json!({"read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z", "id": c.id, "name": format!("/{name}"),
                    "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}}, "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
                    "memory_stats": {}, "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {}})
            };
            let send_now = stream || one_shot || pre.is_some() || !live;
            if send_now {
                let mut line = serde_json::to_vec(&v).unwrap_or_default();
                line.push(b'\n');
                if tx.send(Bytes::from(line)).await.is_err() || !stream {
                    return;
                }
            }
            pre = Some(v);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct UpdateConfig {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub pids_limit: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub blkio_weight: Option<u16>,
    pub restart_policy: Option<api::types::RestartPolicy>,
}

/// `docker update`: new limits, written to the running container's cgroup and kept.
pub async fn update(State(e): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<axum::Json<Value>> {
    let c = e.lookup(&id)?;
    let u: UpdateConfig = parse_json(&body)?;
    // Zero means "leave as is" in Docker's update body.
    let nz = |v: Option<i64>| v.filter(|x| *x != 0);
    let mut h = c.lock().host_config.clone();
    if let Some(m) = nz(u.memory) {
        h.memory = m;
    }
    if let Some(s) = nz(u.memory_swap) {
        h.memory_swap = s;
    }
    if let Some(r) = nz(u.memory_reservation) {
        h.memory_reservation = r;
    }
    if let Some(n) = nz(u.nano_cpus) {
        h.nano_cpus = n;
    }
    if let Some(s) = nz(u.cpu_shares) {
        h.cpu_shares = s;
    }
    if let Some(p) = nz(u.pids_limit) {
        h.pids_limit = Some(p);
    }
    if let Some(cs) = u.cpuset_cpus.clone().filter(|s| !s.is_empty()) {
        h.cpuset_cpus = cs;
    }
    if let Some(w) = u.blkio_weight.filter(|w| *w != 0) {
        h.blkio_weight = w;
    }
    if let Some(r) = u.restart_policy.clone() {
        h.restart_policy = r;
    }
    crate::lifecycle::validate_host_config(&h)?;
    if c.status().is_live() {
        let upd = runtime::cgroups::Update {
            memory: nz(u.memory),
            memory_swap: nz(u.memory_swap),
            memory_reservation: nz(u.memory_reservation),
            nano_cpus: nz(u.nano_cpus),
            cpu_shares: nz(u.cpu_shares),
            pids_limit: nz(u.pids_limit),
            cpuset_cpus: u.cpuset_cpus.clone().filter(|s| !s.is_empty()),
            blkio_weight: u.blkio_weight.filter(|w| *w != 0),
        };
        let cgroup = format!("/berth/{}", c.id);
        tokio::task::spawn_blocking(move || runtime::cgroups::update(&cgroup, &upd))
            .await
            .map_err(EngineError::internal)?
            .map_err(|m| EngineError::Internal(format!("Cannot update container {}: {m}", c.id)))?;
    }
    c.lock().host_config = h;
    e.save(&c)?;
    e.container_event(&c, "update", Vec::new());
    Ok(axum::Json(json!({"Warnings": []})))
}
