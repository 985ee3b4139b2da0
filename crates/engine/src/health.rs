//! Healthchecks: the image's HEALTHCHECK or `--health-*`, probed by exec'ing the test in the
//! running container, with Docker's timing rules and status (`starting`, `healthy`,
//! `unhealthy`) kept in the container's state and announced as `health_status` events.
//!
//! Each start bumps the container's health generation; a monitor whose generation is no longer
//! current (the container stopped, restarted or was removed) ends at its next tick.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use api::types::{ExecConfig, Health, HealthConfig, HealthResult};
use serde_json::Value;

use crate::container::{Container, Status};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_START_INTERVAL: Duration = Duration::from_secs(5);
const DEFAULT_RETRIES: i64 = 3;
/// Results kept in `State.Health.Log`, and bytes of output kept per result (Docker's limits).
const KEEP_RESULTS: usize = 5;
const MAX_OUTPUT: usize = 4096;
/// Docker refuses intervals below this.
const MIN_DURATION_NS: i64 = 1_000_000;

/// The container's healthcheck merged with the image's, as moby merges them: the container's
/// fields win, its zero fields (and an empty test) are taken from the image.
pub fn merge(container: Option<Value>, image: Option<&Value>) -> Option<Value> {
    let img: Option<HealthConfig> = image.and_then(|v| serde_json::from_value(v.clone()).ok());
    let Some(c) = container.filter(|v| !v.is_null()) else { return image.cloned() };
    let Ok(mut h) = serde_json::from_value::<HealthConfig>(c.clone()) else { return Some(c) };
    if let Some(i) = img {
        if h.test.is_empty() {
            h.test = i.test;
        }
        for (mine, theirs) in [
            (&mut h.interval, i.interval),
            (&mut h.timeout, i.timeout),
            (&mut h.start_period, i.start_period),
            (&mut h.start_interval, i.start_interval),
            (&mut h.retries, i.retries),
        ] {
            if *mine == 0 {
                *mine = theirs;
            }
        }
    }
    serde_json::to_value(h).ok()
}

/// Checks `Config.Healthcheck` as dockerd does.
pub fn validate(v: Option<&Value>) -> Result<()> {
    let Some(v) = v.filter(|v| !v.is_null()) else { return Ok(()) };
    let h: HealthConfig = serde_json::from_value(v.clone())
        .map_err(|e| EngineError::BadRequest(format!("invalid JSON at `Healthcheck`: {e}")))?;
    for (name, d) in [
        ("Interval", h.interval),
        ("Timeout", h.timeout),
        ("StartPeriod", h.start_period),
        ("StartInterval", h.start_interval),
    ] {
        if d != 0 && d < MIN_DURATION_NS {
            return Err(EngineError::BadRequest(format!("{name} in Healthcheck cannot be less than 1ms")));
        }
    }
    if h.retries < 0 {
        return Err(EngineError::BadRequest("Retries in Healthcheck cannot be negative".into()));
    }
    match h.test.first().map(String::as_str) {
        None | Some("NONE") | Some("CMD") | Some("CMD-SHELL") => Ok(()),
        Some(other) => Err(EngineError::BadRequest(format!(
            "unknown type of healthcheck test `{other}`: use NONE, CMD or CMD-SHELL"
        ))),
    }
}

/// The command a probe runs, or None when there is no healthcheck.
fn probe_argv(h: &HealthConfig, shell: Option<&[String]>) -> Option<Vec<String>> {
    match h.test.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Some(rest.to_vec()),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            let mut argv: Vec<String> =
                shell.map(<[String]>::to_vec).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
            argv.push(rest.join(" "));
            Some(argv)
        }
        _ => None,
    }
}

fn dur(ns: i64, default: Duration) -> Duration {
    if ns > 0 { Duration::from_nanos(ns as u64) } else { default }
}

/// The status after one result, given the last health and whether the start period is on.
pub fn next(mut h: Health, ok: bool, retries: i64, in_start_period: bool) -> Health {
    if ok {
        h.status = "healthy".into();
        h.failing_streak = 0;
    } else if !in_start_period {
        h.failing_streak += 1;
        if h.failing_streak >= retries {
            h.status = "unhealthy".into();
        }
    }
    h
}

impl Engine {
    /// Starts probing a container that just started, if it has a healthcheck.
    pub(crate) fn start_health(self: &Arc<Self>, c: &Arc<Container>) {
        let generation = c.health_gen.fetch_add(1, Ordering::SeqCst) + 1;
        let (cfg, shell) = {
            let r = c.lock();
            (
                r.config.healthcheck.clone().and_then(|v| serde_json::from_value::<HealthConfig>(v).ok()),
                r.config.shell.clone(),
            )
        };
        let Some(cfg) = cfg else {
            c.lock().state.health = None;
            return;
        };
        let Some(argv) = probe_argv(&cfg, shell.as_deref()) else {
            c.lock().state.health = None;
            return;
        };
        c.lock().state.health = Some(Health { status: "starting".into(), failing_streak: 0, log: Vec::new() });
        let engine = self.clone();
        let c = c.clone();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let interval = dur(cfg.interval, DEFAULT_INTERVAL);
            let timeout = dur(cfg.timeout, DEFAULT_TIMEOUT);
            let start_period = dur(cfg.start_period, Duration::ZERO);
            let start_interval = dur(cfg.start_interval, DEFAULT_START_INTERVAL);
            let retries = if cfg.retries > 0 { cfg.retries } else { DEFAULT_RETRIES };
            loop {
                let in_start = started.elapsed() < start_period;
                // Docker probes at StartInterval during the start period while not yet healthy.
                let starting = c.lock().state.health.as_ref().is_some_and(|h| h.status == "starting");
                tokio::time::sleep(if in_start && starting && cfg.start_interval > 0 {
                    start_interval
                } else {
                    interval
                })
                .await;
                if c.health_gen.load(Ordering::SeqCst) != generation {
                    return;
                }
                match c.status() {
                    Status::Running => {}
                    Status::Paused => continue,
                    _ => return,
                }
                let in_start = started.elapsed() < start_period;
                let result = engine.probe(&c, &argv, timeout).await;
                if c.health_gen.load(Ordering::SeqCst) != generation {
                    return;
                }
                let ok = result.exit_code == 0;
                let changed = {
                    let mut r = c.lock();
                    let old = r.state.health.clone().unwrap_or_default();
                    let mut h = next(old.clone(), ok, retries, in_start);
                    h.log.push(result);
                    if h.log.len() > KEEP_RESULTS {
                        let extra = h.log.len() - KEEP_RESULTS;
                        h.log.drain(..extra);
                    }
                    let changed = (old.status != h.status).then(|| h.status.clone());
                    r.state.health = Some(h);
                    changed
                };
                let _ = engine.save(&c);
                if let Some(status) = changed {
                    engine.container_event(&c, &format!("health_status: {status}"), Vec::new());
                }
            }
        });
    }

    /// Runs one probe: exec in the container, output and exit code, killed after `timeout`.
    async fn probe(self: &Arc<Self>, c: &Arc<Container>, argv: &[String], timeout: Duration) -> HealthResult {
        let start = crate::lifecycle::now();
        let fail = |msg: String, code: i64| HealthResult {
            start: start.clone(),
            end: crate::lifecycle::now(),
            exit_code: code,
            output: msg,
        };
        let cfg = ExecConfig { cmd: argv.to_vec(), attach_stdout: true, attach_stderr: true, ..Default::default() };
        let id = match self.exec_create(c, cfg) {
            Ok(id) => id,
            Err(e) => return fail(e.to_string(), -1),
        };
        let result = async {
            let e = self.exec_lookup(&id)?;
            let stream = self.exec_start(&e, false, true).await?;
            let mut done = e.done.subscribe();
            let run = async {
                let mut out = Vec::new();
                if let Some(mut s) = stream {
                    let mut raw = Vec::new();
                    let _ = tokio::io::AsyncReadExt::read_to_end(&mut s, &mut raw).await;
                    for (_, chunk) in api::frame::decode(&mut raw) {
                        out.extend_from_slice(&chunk);
                    }
                }
                let _ = done.wait_for(|d| *d).await;
                out
            };
            match tokio::time::timeout(timeout, run).await {
                Ok(mut out) => {
                    out.truncate(MAX_OUTPUT);
                    let code = e.inspect().exit_code.unwrap_or(-1);
                    Ok::<_, EngineError>(HealthResult {
                        start: start.clone(),
                        end: crate::lifecycle::now(),
                        exit_code: code,
                        output: String::from_utf8_lossy(&out).into_owned(),
                    })
                }
                Err(_) => {
                    let _ = self.exec_kill(&e).await;
                    Ok(fail(format!("Health check exceeded timeout ({})", go_duration(timeout)), -1))
                }
            }
        }
        .await
        .unwrap_or_else(|e| fail(e.to_string(), -1));
        self.exec_forget(c, &id);
        result
    }
}

/// A duration as Go prints it (`30s`, `1.5s`, `500ms`).
fn go_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else {
        let s = d.as_secs_f64();
        if s.fract() == 0.0 { format!("{}s", s as u64) } else { format!("{s}s") }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_containers_fields_win_and_zero_ones_come_from_the_image() {
        let img = json!({"Test": ["CMD-SHELL", "check"], "Interval": 5_000_000_000i64, "Retries": 2});
        let merged = merge(Some(json!({"Interval": 1_000_000_000i64})), Some(&img)).expect("merged");
        let h: HealthConfig = serde_json::from_value(merged).expect("config");
        assert_eq!(h.test, ["CMD-SHELL", "check"]);
        assert_eq!(h.interval, 1_000_000_000);
        assert_eq!(h.retries, 2);
        assert_eq!(merge(None, Some(&img)), Some(img.clone()));
        let none = merge(Some(json!({"Test": ["NONE"]})), Some(&img)).expect("merged");
        assert_eq!(probe_argv(&serde_json::from_value(none).expect("config"), None), None);
    }

    #[test]
    fn probes_run_the_test_directly_or_through_the_shell() {
        let h = |t: &[&str]| HealthConfig { test: t.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        assert_eq!(probe_argv(&h(&["CMD", "true", "x"]), None), Some(vec!["true".into(), "x".into()]));
        assert_eq!(
            probe_argv(&h(&["CMD-SHELL", "exit 1"]), None),
            Some(vec!["/bin/sh".into(), "-c".into(), "exit 1".into()])
        );
        let shell = ["/bin/ash".to_string(), "-ec".to_string()];
        assert_eq!(probe_argv(&h(&["CMD-SHELL", "x"]), Some(&shell)).expect("argv")[0], "/bin/ash");
        assert_eq!(probe_argv(&h(&[]), None), None);
    }

    #[test]
    fn status_follows_dockers_rules() {
        let start = Health { status: "starting".into(), ..Default::default() };
        let h = next(start.clone(), false, 2, true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0), "start period failures do not count");
        let h = next(start, false, 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 1));
        let h = next(h, false, 2, false);
        assert_eq!(h.status, "unhealthy");
        let h = next(h, true, 2, false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
    }

    #[test]
    fn bad_healthchecks_are_named() {
        assert!(
            validate(Some(&json!({"Test": ["CMD", "x"], "Interval": 10})))
                .expect_err("refused")
                .to_string()
                .contains("Interval")
        );
        assert!(validate(Some(&json!({"Test": ["BOGUS"]}))).expect_err("refused").to_string().contains("BOGUS"));
        assert!(validate(Some(&json!({"Retries": -1}))).is_err());
        assert!(validate(Some(&json!({"Test": ["CMD-SHELL", "x"], "Interval": 1_000_000_000i64}))).is_ok());
    }

    #[test]
    fn timeouts_read_as_go_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(30)), "30s");
        assert_eq!(go_duration(Duration::from_millis(500)), "500ms");
    }
}
