//! `GET /events`: the recorded events since `since`, then the live ones until `until`.

use std::collections::HashMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::broadcast::error::RecvError;

use super::{AppState, Query, channel_body, parse_filters};
use crate::error::{EngineError, Result};
use crate::events::Filter;
use crate::logs::parse_since;

const KEYS: &[&str] = &[
    "type",
    "event",
    "container",
    "image",
    "network",
    "volume",
    "label",
    "scope",
    "daemon",
    "node",
    "service",
    "plugin",
    "config",
    "secret",
];

pub async fn events(State(e): State<AppState>, q: Query) -> Result<Response> {
    let time = |k: &str| -> Result<Option<f64>> {
        match q.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_since(s)
                .map(Some)
                .ok_or_else(|| EngineError::BadRequest(format!("invalid value for `{k}`: `{s}` is not a timestamp"))),
        }
    };
    let filters: HashMap<String, Vec<String>> = parse_filters(q.get("filters"))?.into_iter().collect();
    if let Some(k) = filters.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
    }
    let f = Filter { since: time("since")?, until: time("until")?, filters };
    let (past, last, mut live) = e.events.subscribe(&f);
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let line = |ev: &crate::events::Event| {
        let mut b = serde_json::to_vec(ev).unwrap_or_default();
        b.push(b'\n');
        Bytes::from(b)
    };
    tokio::spawn(async move {
        for ev in &past {
            if tx.send(line(ev)).await.is_err() {
                return;
            }
        }
        let until = f.until.map(|u| {
            let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as f64 / 1e9;
            tokio::time::Instant::now() + std::time::Duration::from_secs_f64((u - now).max(0.0))
        });
        let deadline = async {
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = live.recv() => match r {
                    Ok((seq, ev)) => {
                        if seq > last && f.matches(&ev) && tx.send(line(&ev)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => tracing::warn!("an events reader fell behind and missed {n} events"),
                    Err(RecvError::Closed) => return,
                },
                _ = &mut deadline => return,
                _ = tx.closed() => return,
            }
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}
