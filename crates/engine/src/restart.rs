//! Restart policies, as Docker's restart manager applies them.
//!
//! After an exit the policy decides: `always` and `unless-stopped` restart whatever the exit
//! code, `on-failure[:N]` only after a non-zero code and at most N times; none of them after the
//! user stopped or killed the container. The wait before each restart starts at 100 ms and
//! doubles up to a minute; it goes back to 100 ms once a run lasted 10 s. While it waits the
//! container is `restarting`; `stop` cancels the wait. When the daemon starts, `always`
//! containers come back even if the user had stopped them, `unless-stopped` ones only if not.

use std::sync::Arc;
use std::time::Duration;

use api::types::RestartPolicy;

use crate::container::{Container, Status};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(60);
/// A run at least this long resets the back-off.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Checks a policy as `docker run --restart` and the create API receive it.
pub fn validate(p: &RestartPolicy, auto_remove: bool) -> Result<()> {
    match p.name.as_str() {
        "" | "no" | "always" | "unless-stopped" => {
            if p.maximum_retry_count != 0 {
                return Err(EngineError::BadRequest(format!(
                    "invalid restart policy: maximum retry count can only be used with 'on-failure' (got `{}`)",
                    p.name
                )));
            }
        }
        "on-failure" => {
            if p.maximum_retry_count < 0 {
                return Err(EngineError::BadRequest(
                    "invalid restart policy: maximum retry count cannot be negative".into(),
                ));
            }
        }
        other => {
            return Err(EngineError::BadRequest(format!(
                "invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'"
            )));
        }
    }
    if auto_remove && !matches!(p.name.as_str(), "" | "no") {
        return Err(EngineError::BadRequest("can't create 'AutoRemove' container with restart policy".into()));
    }
    Ok(())
}

/// Whether a container that exited with `exit_code` after `count` policy restarts comes back.
/// `manually_stopped` only holds `unless-stopped` back (the exit path checks it for all).
pub fn should_restart(p: &RestartPolicy, exit_code: i64, count: i64, manually_stopped: bool) -> bool {
    match p.name.as_str() {
        "always" => true,
        "unless-stopped" => !manually_stopped,
        "on-failure" => exit_code != 0 && (p.maximum_retry_count == 0 || count < p.maximum_retry_count),
        _ => false,
    }
}

/// The next wait, given the last one and how long the container ran.
pub fn next_delay(last: Option<Duration>, ran: Duration) -> Duration {
    match last {
        Some(d) if ran < RESET_AFTER => (d * 2).min(MAX_DELAY),
        _ => FIRST_DELAY,
    }
}

impl Engine {
    /// Called on every exit while the container's record is locked: true (and the state set
    /// to `restarting`) when the policy brings it back.
    pub(crate) fn decide_restart(&self, c: &Container, rec: &mut crate::container::Record, exit_code: i64) -> bool {
        let s = &rec.state;
        if s.stopped_by_user || !should_restart(&rec.host_config.restart_policy, exit_code, s.restart_count, false) {
            return false;
        }
        let ran = match (
            chrono::DateTime::parse_from_rfc3339(&s.started_at),
            chrono::DateTime::parse_from_rfc3339(&s.finished_at),
        ) {
            (Ok(a), Ok(b)) => (b - a).to_std().unwrap_or_default(),
            _ => Duration::ZERO,
        };
        let mut delay = c.backoff.lock().unwrap_or_else(|p| p.into_inner());
        *delay = Some(next_delay(*delay, ran));
        rec.state.status = Status::Restarting;
        true
    }

    /// Starts the container again once its back-off has passed, unless it was stopped or
    /// removed meanwhile. A start that fails counts as an exit and is tried again.
    pub(crate) fn schedule_restart(self: &Arc<Self>, c: Arc<Container>) {
        let delay = c.backoff.lock().unwrap_or_else(|p| p.into_inner()).unwrap_or(FIRST_DELAY);
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let op = c.op.lock().await;
            if c.status() != Status::Restarting {
                return;
            }
            c.lock().state.restart_count += 1;
            match engine.start_checked(&c).await {
                Ok(()) => engine.container_event(&c, "start", Vec::new()),
                Err(e) => {
                    tracing::warn!("restart of {} failed: {e}", c.short_id());
                    drop(op);
                    let again = {
                        let mut r = c.lock();
                        r.state.status = Status::Exited;
                        let code = r.state.exit_code;
                        engine.decide_restart(&c, &mut r, code)
                    };
                    let _ = engine.save(&c);
                    if again {
                        engine.schedule_restart(c);
                    }
                }
            }
        });
    }

    /// At daemon start: brings back the stopped containers their policy asks for.
    pub(crate) async fn restart_on_boot(self: &Arc<Self>) {
        for c in self.list() {
            let go = {
                let r = c.lock();
                r.state.status == Status::Exited
                    && r.state.started_at != crate::container::ZERO_TIME
                    && should_restart(
                        &r.host_config.restart_policy,
                        r.state.exit_code,
                        r.state.restart_count,
                        r.state.stopped_by_user,
                    )
            };
            if go {
                let _op = c.op.lock().await;
                if c.status() != Status::Exited {
                    continue;
                }
                match self.start_checked(&c).await {
                    Ok(()) => self.container_event(&c, "start", Vec::new()),
                    Err(e) => tracing::error!("restart {} at daemon start: {e}", c.short_id()),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(name: &str, n: i64) -> RestartPolicy {
        RestartPolicy { name: name.into(), maximum_retry_count: n }
    }

    #[test]
    fn policies_decide_as_dockers_restart_manager() {
        assert!(!should_restart(&p("no", 0), 1, 0, false));
        assert!(should_restart(&p("always", 0), 0, 5, true));
        assert!(should_restart(&p("unless-stopped", 0), 0, 0, false));
        assert!(!should_restart(&p("unless-stopped", 0), 0, 0, true));
        assert!(!should_restart(&p("on-failure", 0), 0, 0, false));
        assert!(should_restart(&p("on-failure", 0), 1, 100, false));
        assert!(should_restart(&p("on-failure", 2), 1, 1, false));
        assert!(!should_restart(&p("on-failure", 2), 1, 2, false));
    }

    #[test]
    fn back_off_doubles_to_a_minute_and_resets_after_a_long_run() {
        let short = Duration::from_secs(1);
        let mut d = next_delay(None, short);
        assert_eq!(d, Duration::from_millis(100));
        d = next_delay(Some(d), short);
        assert_eq!(d, Duration::from_millis(200));
        for _ in 0..20 {
            d = next_delay(Some(d), short);
        }
        assert_eq!(d, Duration::from_secs(60));
        assert_eq!(next_delay(Some(d), Duration::from_secs(11)), Duration::from_millis(100));
    }

    #[test]
    fn bad_policies_are_refused_with_the_reason() {
        assert!(validate(&p("always", 0), false).is_ok());
        assert!(validate(&p("on-failure", 3), false).is_ok());
        assert!(validate(&p("sometimes", 0), false).expect_err("refused").to_string().contains("sometimes"));
        assert!(validate(&p("always", 3), false).expect_err("refused").to_string().contains("on-failure"));
        assert!(validate(&p("on-failure", -1), false).is_err());
        assert!(validate(&p("always", 0), true).expect_err("refused").to_string().contains("AutoRemove"));
        assert!(validate(&p("no", 0), true).is_ok());
    }
}
