//! Counters served at `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// (method, route, status) -> (count, seconds total)
type RequestCounts = BTreeMap<(String, &'static str, u16), (u64, f64)>;

/// The server's counters.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<RequestCounts>,
    pub bytes_received: Arc<AtomicU64>,
    pub bytes_sent: Arc<AtomicU64>,
    pub notifications_sent: AtomicU64,
    pub notifications_failed: AtomicU64,
    pub notifications_dropped: AtomicU64,
}

impl Metrics {
    pub fn record_request(&self, method: &str, route: &'static str, status: u16, elapsed: Duration) {
        if let Ok(mut m) = self.requests.lock() {
            let e = m.entry((method.to_owned(), route, status)).or_default();
            e.0 += 1;
            e.1 += elapsed.as_secs_f64();
        }
    }

    /// The exposition text.
    pub fn text(&self, uploads_open: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP berth_registry_requests_total HTTP requests served.\n");
        out.push_str("# TYPE berth_registry_requests_total counter\n");
        let snapshot = self.requests.lock().map(|m| m.clone()).unwrap_or_default();
        for ((method, route, status), (count, _)) in &snapshot {
            let _ = writeln!(
                out,
                "berth_registry_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP berth_registry_request_seconds_total Time spent serving requests.\n");
        out.push_str("# TYPE berth_registry_request_seconds_total counter\n");
        for ((method, route, status), (_, secs)) in &snapshot {
            let _ = writeln!(
                out,
                "berth_registry_request_seconds_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {secs:.6}"
            );
        }
        let counters = [
            (
                "berth_registry_bytes_received_total",
                "Request body bytes received.",
                self.bytes_received.load(Ordering::Relaxed),
            ),
            ("berth_registry_bytes_sent_total", "Blob bytes sent.", self.bytes_sent.load(Ordering::Relaxed)),
            (
                "berth_registry_notifications_sent_total",
                "Event envelopes delivered.",
                self.notifications_sent.load(Ordering::Relaxed),
            ),
            (
                "berth_registry_notifications_failed_total",
                "Event envelopes given up on after retries.",
                self.notifications_failed.load(Ordering::Relaxed),
            ),
            (
                "berth_registry_notifications_dropped_total",
                "Events dropped because the queue was full.",
                self.notifications_dropped.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP berth_registry_uploads_open Upload sessions in progress.\n# TYPE berth_registry_uploads_open gauge\nberth_registry_uploads_open {uploads_open}"
        );
        out
    }

    pub fn render(&self, uploads_open: usize) -> Response {
        let mut r = self.text(uploads_open).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
        r
    }
}
