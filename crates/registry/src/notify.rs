//! Webhook notifications, in the shape of Distribution's: a JSON envelope `{"events":[…]}` with media
//! type `application/vnd.docker.distribution.events.v1+json`, POSTed to every configured endpoint.
//!
//! Events go into one bounded queue (`notifications.queue_size`); when it is full new events are
//! dropped and counted rather than slowing requests down. A worker drains the queue in batches and
//! delivers each batch to each endpoint with exponential-backoff retries.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use oci::Digest;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::config::{EndpointConfig, NotificationsConfig};
use crate::metrics::Metrics;

pub const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v1+json";
const BATCH: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Push,
    Pull,
    Delete,
    Mount,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub size: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub digest: String,
    pub length: u64,
    pub repository: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(rename = "fromRepository", skip_serializing_if = "Option::is_none")]
    pub from_repository: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub struct RequestInfo {
    pub id: String,
    pub addr: String,
    pub host: String,
    pub method: String,
    pub useragent: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    pub addr: String,
    #[serde(rename = "instanceID")]
    pub instance_id: String,
}

/// One event of the envelope.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    pub action: Action,
    pub target: Target,
    pub request: RequestInfo,
    pub actor: Actor,
    pub source: Option<Source>,
}

impl Event {
    pub fn new(action: Action, user: &str, headers: &HeaderMap) -> Self {
        let hv = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        Event {
            id: crate::registry::uuid_v4(),
            timestamp: chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).to_rfc3339(),
            action,
            target: Target::default(),
            request: RequestInfo {
                id: crate::registry::uuid_v4(),
                host: hv("host"),
                useragent: hv("user-agent"),
                method: match action {
                    Action::Push | Action::Mount => "PUT",
                    Action::Pull => "GET",
                    Action::Delete => "DELETE",
                }
                .to_owned(),
                ..Default::default()
            },
            actor: Actor { name: user.to_owned() },
            source: None,
        }
    }

    pub fn target(&mut self, repo: &str, digest: &Digest, media_type: &str, size: u64, tag: Option<&str>) {
        self.target = Target {
            media_type: media_type.to_owned(),
            size,
            length: size,
            digest: digest.to_string(),
            repository: repo.to_owned(),
            url: format!("/v2/{repo}/{}/{digest}", if media_type.contains("manifest") { "manifests" } else { "blobs" }),
            tag: tag.map(str::to_owned),
            ..Default::default()
        };
    }

    pub fn delete_target(&mut self, repo: &str, reference: &str) {
        let is_digest = reference.contains(':');
        self.target = Target {
            repository: repo.to_owned(),
            digest: if is_digest { reference.to_owned() } else { String::new() },
            tag: (!is_digest).then(|| reference.to_owned()),
            ..Default::default()
        };
    }

    pub fn from_repository(&mut self, from: &str) {
        self.target.from_repository = Some(from.to_owned());
    }
}

/// The sending half: cheap to call from request handlers.
pub struct Notifier {
    tx: mpsc::Sender<Event>,
    source: Source,
}

impl Notifier {
    /// Starts the delivery worker; `None` when no endpoint is configured.
    pub fn start(config: &NotificationsConfig, addr: String, metrics: Arc<Metrics>) -> Option<Self> {
        if config.endpoints.is_empty() {
            return None;
        }
        let (tx, rx) = mpsc::channel(config.queue_size.max(1));
        tokio::spawn(deliver(rx, config.endpoints.clone(), metrics));
        Some(Notifier { tx, source: Source { addr, instance_id: crate::registry::uuid_v4() } })
    }

    /// Queues an event, or drops it (counted) when the queue is full.
    pub fn send(&self, mut event: Event, metrics: &Metrics) {
        event.source = Some(self.source.clone());
        if self.tx.try_send(event).is_err() {
            metrics.notifications_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("notification queue full: event dropped");
        }
    }
}

async fn deliver(mut rx: mpsc::Receiver<Event>, endpoints: Vec<EndpointConfig>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let body = Bytes::from(serde_json::to_vec(&serde_json::json!({ "events": batch })).expect("events serialize"));
        batch.clear();
        for ep in &endpoints {
            let mut delay = Duration::from_millis(ep.backoff_ms);
            let mut attempt = 0;
            loop {
                match post(ep, body.clone()).await {
                    Ok(()) => {
                        metrics.notifications_sent.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) if attempt < ep.retries => {
                        tracing::debug!(endpoint = ep.url, attempt, error = %e, "notification failed, retrying");
                        attempt += 1;
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                    Err(e) => {
                        metrics.notifications_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(endpoint = ep.url, error = %e, "notification given up");
                        break;
                    }
                }
            }
        }
    }
}

async fn post(ep: &EndpointConfig, body: Bytes) -> anyhow::Result<()> {
    let rest = ep.url.strip_prefix("http://").ok_or_else(|| anyhow::anyhow!("only http:// endpoints are supported"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = if hostport.contains(':') { hostport.to_owned() } else { format!("{hostport}:80") };
    let attempt = async {
        let stream = tokio::net::TcpStream::connect(&target).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = hyper::Request::post(path)
            .header("host", hostport)
            .header("content-type", EVENTS_MEDIA_TYPE)
            .body(Full::new(body))?;
        for (k, v) in &ep.headers {
            req.headers_mut().insert(hyper::header::HeaderName::try_from(k.as_str())?, v.parse()?);
        }
        let resp = sender.send_request(req).await?;
        anyhow::ensure!(resp.status().is_success(), "endpoint answered {}", resp.status());
        Ok(())
    };
    tokio::time::timeout(Duration::from_millis(ep.timeout_ms), attempt)
        .await
        .map_err(|_| anyhow::anyhow!("timed out after {} ms", ep.timeout_ms))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        // Nothing listens on the endpoint; the worker is stuck retrying its first batch.
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port());
        let port = port.expect("free port");
        let config = NotificationsConfig {
            endpoints: vec![EndpointConfig {
                name: None,
                url: format!("http://127.0.0.1:{port}/hook"),
                timeout_ms: 500,
                retries: 100,
                backoff_ms: 10_000,
                headers: Default::default(),
            }],
            queue_size: 1,
        };
        let metrics = Arc::new(Metrics::default());
        let n = Notifier::start(&config, "test".into(), metrics.clone()).expect("endpoints configured");
        for _ in 0..10 {
            n.send(Event::new(Action::Push, "u", &HeaderMap::new()), &metrics);
        }
        assert!(metrics.notifications_dropped.load(Ordering::Relaxed) >= 8);
        assert!(Notifier::start(&NotificationsConfig::default(), "x".into(), metrics).is_none());
    }
}
