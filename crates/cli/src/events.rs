//! `berth events`: the daemon's event stream, live, as `docker events` prints it.

use api::client::Client;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use crate::commands::{enc, relative_time, report};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Show all events created since timestamp
    #[arg(long)]
    pub since: Option<String>,
    /// Stream events until this timestamp
    #[arg(long)]
    pub until: Option<String>,
    /// Filter output based on conditions provided (key=value)
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template ('json' for one JSON object per line)
    #[arg(long)]
    pub format: Option<String>,
}

/// `key=value` flags as the API's `{"key":["value",…]}`.
fn filters_json(list: &[String]) -> Result<String, String> {
    let mut m: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for f in list {
        let (k, v) = f.split_once('=').ok_or_else(|| format!("bad format of filter (expected name=value): {f}"))?;
        m.entry(k.trim().to_lowercase()).or_default().push(v.to_owned());
    }
    serde_json::to_string(&m).map_err(|e| e.to_string())
}

/// One line as `docker events` prints it: time, type, action, actor and its attributes.
pub fn line(ev: &Value) -> String {
    let nanos = ev["timeNano"].as_i64().unwrap_or_else(|| ev["time"].as_i64().unwrap_or(0) * 1_000_000_000);
    let t = chrono::DateTime::from_timestamp(nanos.div_euclid(1_000_000_000), nanos.rem_euclid(1_000_000_000) as u32)
        .unwrap_or_default()
        .with_timezone(&chrono::Local);
    let mut time = t.format("%Y-%m-%dT%H:%M:%S%.9f%:z").to_string();
    if time.ends_with("+00:00") {
        time.truncate(time.len() - 6);
        time.push('Z');
    }
    let mut out = format!(
        "{time} {} {} {}",
        ev["Type"].as_str().unwrap_or_default(),
        ev["Action"].as_str().unwrap_or_default(),
        ev["Actor"]["ID"].as_str().unwrap_or_default()
    );
    if let Some(attrs) = ev["Actor"]["Attributes"].as_object().filter(|a| !a.is_empty()) {
        let mut kv: Vec<String> =
            attrs.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect();
        kv.sort();
        out.push_str(&format!(" ({})", kv.join(", ")));
    }
    out
}

pub async fn events(c: &Client, a: EventsArgs) -> i32 {
    let mut q = Vec::new();
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(&relative_time(v))));
        }
    }
    if !a.filter.is_empty() {
        match filters_json(&a.filter) {
            Ok(f) => q.push(format!("filters={}", enc(&f))),
            Err(e) => {
                eprintln!("berth: {e}");
                return 125;
            }
        }
    }
    let path = if q.is_empty() { "/events".to_owned() } else { format!("/events?{}", q.join("&")) };
    let resp = match c.request(Method::GET, &path, Vec::new(), api::client::empty()).await {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    let mut body = resp.into_body();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(d) = frame.into_data() else { continue };
        pending.extend_from_slice(&d);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = pending.drain(..=i).collect();
            let Ok(ev) = serde_json::from_slice::<Value>(&raw) else { continue };
            let text = match a.format.as_deref() {
                None | Some("") => line(&ev),
                Some("json") | Some("{{json .}}") => ev.to_string(),
                Some(tpl) => match crate::fmt::template(tpl, &ev) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("berth: {e}");
                        return 125;
                    }
                },
            };
            // Each event is shown as it happens: println! on a line-buffered stdout is not
            // enough when stdout is a pipe.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if writeln!(out, "{text}").and_then(|_| out.flush()).is_err() {
                return 0;
            }
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_reads_like_dockers() {
        let ev = serde_json::json!({"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"web","image":"busybox"}},"time":1,"timeNano":1_000_000_005i64});
        let l = line(&ev);
        assert!(l.ends_with(" container start abc (image=busybox, name=web)"), "{l}");
        assert!(l.contains(".000000005"), "{l}");
    }

    #[test]
    fn filters_become_the_apis_map() {
        assert_eq!(
            filters_json(&["type=container".into(), "event=start".into(), "event=die".into()]).expect("valid filters"),
            r#"{"event":["start","die"],"type":["container"]}"#
        );
        assert!(filters_json(&["nonsense".into()]).is_err());
    }
}
