//! `/containers/…`.

use std::collections::BTreeMap;

use api::types::{
    ContainerConfig, ContainerInspect, ContainerState, ContainerSummary, CreateResponse, TopResponse, WaitResponse,
};
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use api::units::human_duration;

use super::{AppState, Query, bridge, channel_body, hijack, parse_filters, parse_json, qbool, qint};
use crate::container::{Container, Status};
use crate::error::{EngineError, Result};
use crate::lifecycle::parse_signal;
use crate::logs::{LogOptions, parse_since};

pub async fn create(State(e): State<AppState>, q: Query, body: Bytes) -> Result<Response> {
    let cfg: ContainerConfig = parse_json(&body)?;
    let (id, warnings) = e.create(q.get("name").map(String::as_str), cfg).await?;
    Ok((StatusCode::CREATED, axum::Json(CreateResponse { id, warnings })).into_response())
}

fn since(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| (chrono::Utc::now().timestamp() - d.timestamp()).max(0))
        .unwrap_or(0)
}

fn status_text(c: &Container) -> String {
    let r = c.lock();
    match r.state.status {
        Status::Created => "Created".into(),
        Status::Running => {
            let health = match r.state.health.as_ref().map(|h| h.status.as_str()) {
                Some("starting") => " (health: starting)".to_owned(),
                Some(s) => format!(" ({s})"),
                None => String::new(),
            };
            format!("Up {}{health}", human_duration(since(&r.state.started_at)))
        }
        Status::Paused => format!("Up {} (Paused)", human_duration(since(&r.state.started_at))),
        Status::Restarting => {
            format!("Restarting ({}) {} ago", r.state.exit_code, human_duration(since(&r.state.finished_at)))
        }
        Status::Removing => "Removal In Progress".into(),
        Status::Exited => format!("Exited ({}) {} ago", r.state.exit_code, human_duration(since(&r.state.finished_at))),
        Status::Dead => "Dead".into(),
    }
}

fn matches(c: &Container, filters: &BTreeMap<String, Vec<String>>) -> Result<bool> {
    let r = c.lock();
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "id" => vals.iter().any(|v| r.id.starts_with(v.as_str())),
            "name" => vals.iter().any(|v| r.state.name.contains(v.trim_start_matches('/'))),
            "status" => {
                for v in vals {
                    if !matches!(
                        v.as_str(),
                        "created" | "restarting" | "running" | "removing" | "paused" | "exited" | "dead"
                    ) {
                        return Err(EngineError::BadRequest(format!("invalid filter 'status={v}'")));
                    }
                }
                vals.iter().any(|v| v == r.state.status.as_str())
            }
            "label" => vals.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => r.config.labels.get(k).is_some_and(|x| x == val),
                None => r.config.labels.contains_key(v),
            }),
            "ancestor" => vals.iter().any(|v| r.image_name == *v || r.image.contains(v.as_str())),
            "health" => {
                let now = r.state.health.as_ref().map(|h| h.status.as_str()).unwrap_or("none");
                for v in vals {
                    if !matches!(v.as_str(), "starting" | "healthy" | "unhealthy" | "none") {
                        return Err(EngineError::BadRequest(format!("Unrecognized filter value for health: {v}")));
                    }
                }
                vals.iter().any(|v| v == now)
            }
            "exited" => vals
                .iter()
                .any(|v| r.state.status == Status::Exited && v.parse::<i64>().ok() == Some(r.state.exit_code)),
            other => return Err(EngineError::BadRequest(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

pub async fn list(State(e): State<AppState>, q: Query) -> Result<axum::Json<Vec<ContainerSummary>>> {
    let all = qbool(&q, "all");
    let filters = parse_filters(q.get("filters"))?;
    let limit = qint(&q, "limit")?.filter(|l| *l > 0);
    let mut out = Vec::new();
    let mut list = e.list();
    list.sort_by_key(|c| std::cmp::Reverse(c.lock().created.clone()));
    for c in list {
        let st = c.status();
        let shows = all || st.is_live() || filters.contains_key("status") || (limit.is_some() && !st.is_live());
        if !shows || !matches(&c, &filters)? {
            continue;
        }
        let r = c.snapshot();
        let command = std::iter::once(r.path.clone()).chain(r.args.iter().cloned()).collect::<Vec<_>>().join(" ");
        out.push(ContainerSummary {
            id: r.id.clone(),
            names: vec![format!("/{}", r.state.name)],
            image: r.image_name.clone(),
            image_id: r.image.clone(),
            command,
            created: chrono::DateTime::parse_from_rfc3339(&r.created).map(|d| d.timestamp()).unwrap_or(0),
            ports: e.net.summary_ports(&r, st.is_live()),
            labels: r.config.labels.clone(),
            state: st.as_str().into(),
            status: status_text(&c),
            host_config: [(
                "NetworkMode".to_owned(),
                json!(match r.host_config.network_mode.as_str() {
                    "" => "none",
                    m => m,
                }),
            )]
            .into(),
            network_settings: [("Networks".to_owned(), e.net.summary_networks(&r, st.is_live())["Networks"].clone())]
                .into(),
            mounts: r.mounts.iter().map(crate::volumes::MountPoint::to_json).collect(),
        });
        if limit.is_some_and(|l| out.len() as i64 >= l) {
            break;
        }
    }
    Ok(axum::Json(out))
}

pub fn inspect_of(e: &crate::engine::Engine, c: &Container) -> ContainerInspect {
    let r = c.snapshot();
    let dir = e.paths.container_dir(&r.id);
    let etc = e.paths.etc_dir(&r.id);
    let mut config = r.config.clone();
    config.host_config = None;
    let s = &r.state;
    ContainerInspect {
        id: r.id.clone(),
        created: r.created.clone(),
        path: r.path.clone(),
        args: r.args.clone(),
        state: ContainerState {
            status: s.status.as_str().into(),
            running: s.status.is_live(),
            paused: s.status == Status::Paused,
            restarting: s.status == Status::Restarting,
            oom_killed: s.oom_killed,
            dead: s.status == Status::Dead,
            pid: s.pid,
            exit_code: s.exit_code,
            error: s.error.clone(),
            started_at: s.started_at.clone(),
            finished_at: s.finished_at.clone(),
            health: s.health.clone(),
        },
        image: r.image.clone(),
        resolv_conf_path: etc.join("resolv.conf").display().to_string(),
        hostname_path: etc.join("hostname").display().to_string(),
        hosts_path: etc.join("hosts").display().to_string(),
        log_path: crate::logs::log_file(&e.paths, &r.id, &r.host_config.log_config)
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        name: format!("/{}", s.name),
        restart_count: s.restart_count,
        driver: "overlay2".into(),
        platform: "linux".into(),
        mount_label: String::new(),
        process_label: String::new(),
        app_armor_profile: String::new(),
        exec_ids: {
            let ids = c.exec_ids.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if ids.is_empty() { None } else { Some(ids) }
        },
        host_config: r.host_config.clone(),
        graph_driver: json!({"Name": "overlay2", "Data": {
            "MergedDir": dir.join("rootfs"), "UpperDir": dir.join("upper"), "WorkDir": dir.join("work"),
        }}),
        mounts: r.mounts.iter().map(crate::volumes::MountPoint::to_json).collect(),
        config,
        network_settings: e.net.settings_json(&r, &e.paths.netns(&r.id), s.status.is_live()),
    }
}

pub async fn inspect(State(e): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<ContainerInspect>> {
    let c = e.lookup(&id)?;
    Ok(axum::Json(inspect_of(&e, &c)))
}

pub async fn start(State(e): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    e.start(&c).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn stop(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    e.stop(&c, qint(&q, "t")?, q.get("signal").map(String::as_str).filter(|s| !s.is_empty())).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn restart(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    e.restart(&c, qint(&q, "t")?, q.get("signal").map(String::as_str).filter(|s| !s.is_empty())).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn kill(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    let sig = parse_signal(q.get("signal").map(String::as_str).filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
    e.kill(&c, sig, sig == libc::SIGKILL).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn pause(State(e): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    e.pause(&c, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn unpause(State(e): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    e.pause(&c, false).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn rename(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    let name = q.get("name").ok_or_else(|| EngineError::BadRequest("missing query parameter `name`".into()))?;
    e.rename(&c, name)?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    let mounts = c.lock().mounts.clone();
    e.remove(&c, qbool(&q, "force")).await?;
    if qbool(&q, "v") {
        e.remove_anonymous_volumes(&mounts);
    }
    Ok(StatusCode::NO_CONTENT)
}

pub async fn wait(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<Response> {
    let c = e.lookup(&id)?;
    let fut = e.wait(&c, q.get("condition").map(String::as_str).unwrap_or(""))?;
    // The headers go out now; the body when the condition is met.
    let stream = futures_util::stream::once(async move {
        let code = fut.await;
        let body = serde_json::to_vec(&WaitResponse { status_code: code, error: None }).unwrap_or_default();
        Ok::<_, std::io::Error>(Bytes::from(body))
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], Body::from_stream(stream)).into_response())
}

pub async fn attach(State(e): State<AppState>, Path(id): Path<String>, q: Query, req: Request) -> Result<Response> {
    let c = e.lookup(&id)?;
    let (stdin, stdout, stderr) = (qbool(&q, "stdin"), qbool(&q, "stdout"), qbool(&q, "stderr"));
    let tty = c.lock().config.tty;
    if c.status().is_live() {
        let socket = e.paths.shim_socket(&c.id);
        let req_shim = runtime::shim::proto::Request::Attach { stdin, stdout, stderr };
        let (stream, _) =
            crate::shim::open(&socket, &req_shim).await.map_err(|_| EngineError::NotRunning(c.id.clone()))?;
        e.container_event(&c, "attach", Vec::new());
        return Ok(hijack(req, !tty, move |client| bridge(client, stream)));
    }
    let rx = e.pend_attach(&c, stdin, stdout, stderr);
    e.container_event(&c, "attach", Vec::new());
    Ok(hijack(req, !tty, move |client| async move {
        match rx.await {
            Ok(stream) => bridge(client, stream).await,
            Err(_) => drop(client),
        }
    }))
}

pub async fn resize(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    let h = qint(&q, "h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = qint(&q, "w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    if !c.status().is_live() {
        return Err(EngineError::NotRunning(c.id.clone()));
    }
    crate::shim::call(&e.paths.shim_socket(&c.id), &runtime::shim::proto::Request::Resize { height: h, width: w })
        .await?;
    e.container_event(&c, "resize", vec![("height".into(), h.to_string()), ("width".into(), w.to_string())]);
    Ok(StatusCode::OK)
}

pub async fn logs(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<Response> {
    let c = e.lookup(&id)?;
    let o = LogOptions {
        stdout: qbool(&q, "stdout"),
        stderr: qbool(&q, "stderr"),
        follow: qbool(&q, "follow"),
        timestamps: qbool(&q, "timestamps"),
        tail: q
            .get("tail")
            .filter(|t| *t != "all" && !t.is_empty())
            .map(|t| t.parse::<usize>())
            .transpose()
            .map_err(|_| EngineError::BadRequest("invalid value for `tail`".into()))?,
        since: q.get("since").and_then(|s| parse_since(s)).filter(|s| *s > 0.0),
        until: q.get("until").and_then(|s| parse_since(s)).filter(|s| *s > 0.0),
        raw: c.lock().config.tty,
    };
    if !o.stdout && !o.stderr {
        return Err(EngineError::BadRequest("Bad parameters: you must choose at least one stream".into()));
    }
    let ct = if o.raw { "application/vnd.docker.raw-stream" } else { "application/vnd.docker.multiplexed-stream" };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let path = crate::logs::log_file(&e.paths, &c.id, &c.lock().host_config.log_config)
        .ok_or_else(|| EngineError::BadRequest("configured logging driver does not support reading".into()))?;
    tokio::task::spawn_blocking(move || crate::logs::stream(path, c, o, tx));
    Ok(([(header::CONTENT_TYPE, ct)], channel_body(rx)).into_response())
}

pub async fn top(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<axum::Json<TopResponse>> {
    let c = e.lookup(&id)?;
    if !c.status().is_live() {
        return Err(EngineError::Conflict(format!("Container {} is not running", c.id)));
    }
    let pid = c.lock().state.pid;
    let args = q.get("ps_args").filter(|a| !a.is_empty()).cloned().unwrap_or_else(|| "-ef".into());
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .output()
        .await
        .map_err(|err| EngineError::Internal(format!("run ps: {err}")))?;
    if !out.status.success() {
        return Err(EngineError::BadRequest(format!("ps: {}", String::from_utf8_lossy(&out.stderr).trim())));
    }
    let pids = tokio::task::spawn_blocking(move || runtime::process::pids_in_namespace_of(pid))
        .await
        .map_err(EngineError::internal)?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let titles: Vec<String> = lines.next().unwrap_or_default().split_whitespace().map(str::to_owned).collect();
    let pid_col = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| EngineError::BadRequest("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    for l in lines {
        let fields: Vec<&str> = l.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Some(p) = fields.get(pid_col).and_then(|p| p.parse::<i64>().ok()) else { continue };
        if !pids.contains(&p) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1].iter().map(|s| (*s).to_owned()).collect();
        row.push(fields[titles.len() - 1..].join(" "));
        processes.push(row);
    }
    Ok(axum::Json(TopResponse { titles, processes }))
}
