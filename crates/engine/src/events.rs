//! Docker's event stream: every action on a container, image, volume or network becomes an
//! [`Event`], appended to `events.log` under the data root (so `--since` reaches back past a
//! daemon restart) and broadcast to the live `GET /events` readers.
//!
//! The log is JSON lines of `{"seq":N,"event":{…}}`; it is rotated to `events.log.1` when it
//! passes [`ROTATE_AT`] bytes, so two files bound the disk it takes. A reader subscribes to the
//! broadcast before reading the files and drops the live events it already read (by `seq`), so
//! no event is lost or shown twice between the two.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// Size at which `events.log` is rotated.
pub const ROTATE_AT: u64 = 4 << 20;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: HashMap<String, String>,
}

/// One event as the Engine API sends it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Event {
    /// Legacy fields, sent for containers and images as dockerd still does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub typ: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

impl Event {
    fn seconds(&self) -> f64 {
        self.time_nano as f64 / 1e9
    }
}

#[derive(Serialize, Deserialize)]
struct Stored {
    seq: u64,
    event: Event,
}

struct Writer {
    file: Option<File>,
    size: u64,
    seq: u64,
}

pub struct Events {
    path: PathBuf,
    writer: Mutex<Writer>,
    tx: broadcast::Sender<(u64, Event)>,
}

impl Events {
    /// Opens (or starts) the event log in `dir`.
    pub fn open(dir: &Path) -> Events {
        let path = dir.join("events.log");
        // Just after a rotation the current file is empty: the sequence goes on from the old one.
        let last_seq = read_file(&path)
            .last()
            .map(|s| s.seq)
            .or_else(|| read_file(&path.with_extension("log.1")).last().map(|s| s.seq))
            .unwrap_or(0);
        let file = File::options().create(true).append(true).open(&path);
        if let Err(e) = &file {
            tracing::error!("open `{}`: {e}; events will not be kept", path.display());
        }
        let size = file.as_ref().ok().and_then(|f| f.metadata().ok()).map(|m| m.len()).unwrap_or(0);
        let (tx, _) = broadcast::channel(1024);
        Events { path, writer: Mutex::new(Writer { file: file.ok(), size, seq: last_seq }), tx }
    }

    /// Records and broadcasts an event. `attrs` are the actor's attributes (name, image, labels…).
    pub fn emit(&self, typ: &str, action: &str, id: &str, attrs: Vec<(String, String)>) {
        let now = chrono::Utc::now();
        let nanos = now.timestamp_nanos_opt().unwrap_or_default();
        let attributes: HashMap<String, String> = attrs.into_iter().collect();
        let legacy = matches!(typ, "container" | "image");
        let event = Event {
            status: if legacy { action.to_owned() } else { String::new() },
            id: if legacy { id.to_owned() } else { String::new() },
            from: if typ == "container" { attributes.get("image").cloned().unwrap_or_default() } else { String::new() },
            typ: typ.to_owned(),
            action: action.to_owned(),
            actor: Actor { id: id.to_owned(), attributes },
            scope: "local".to_owned(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
        };
        let Ok(mut w) = self.writer.lock() else { return };
        w.seq += 1;
        let seq = w.seq;
        let mut line = match serde_json::to_vec(&Stored { seq, event: event.clone() }) {
            Ok(l) => l,
            Err(_) => return,
        };
        line.push(b'\n');
        if w.size + line.len() as u64 > ROTATE_AT {
            let _ = std::fs::rename(&self.path, self.path.with_extension("log.1"));
            w.file = File::options().create(true).append(true).open(&self.path).ok();
            w.size = 0;
        }
        // One write per line: readers never see half an event.
        if let Some(f) = w.file.as_mut()
            && f.write_all(&line).is_ok()
        {
            w.size += line.len() as u64;
        }
        // Sent under the lock, so live readers get events in `seq` order.
        let _ = self.tx.send((seq, event));
    }

    /// The recorded events matching `f` (oldest first) and a receiver for what follows.
    pub fn subscribe(&self, f: &Filter) -> (Vec<Event>, u64, broadcast::Receiver<(u64, Event)>) {
        let rx = self.tx.subscribe();
        let mut past = Vec::new();
        let mut last = 0;
        if f.since.is_some() || f.until.is_some() {
            for p in [self.path.with_extension("log.1"), self.path.clone()] {
                for s in read_file(&p) {
                    last = last.max(s.seq);
                    if f.matches(&s.event) {
                        past.push(s.event);
                    }
                }
            }
        } else if let Ok(w) = self.writer.lock() {
            last = w.seq;
        }
        (past, last, rx)
    }
}

fn read_file(path: &Path) -> Vec<Stored> {
    let Ok(f) = File::open(path) else { return Vec::new() };
    BufReader::new(f).lines().map_while(|l| l.ok()).filter_map(|l| serde_json::from_str(&l).ok()).collect()
}

/// `since`, `until` and Docker's event filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub since: Option<f64>,
    pub until: Option<f64>,
    pub filters: HashMap<String, Vec<String>>,
}

impl Filter {
    pub fn matches(&self, e: &Event) -> bool {
        let t = e.seconds();
        if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
            return false;
        }
        self.filters.iter().all(|(k, values)| values.is_empty() || values.iter().any(|v| self.one(k, v, e)))
    }

    fn one(&self, key: &str, v: &str, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k).map(String::as_str);
        let is_object = |typ: &str| {
            e.typ == typ && (e.actor.id == v || (v.len() >= 3 && e.actor.id.starts_with(v)) || attr("name") == Some(v))
        };
        match key {
            "type" => e.typ == v,
            // `exec_start: sh -c …` matches `exec_start`.
            "event" => e.action == v || e.action.split(':').next() == Some(v),
            "container" => is_object("container"),
            "image" => {
                let image_matches = |s: &str| s == v || s.strip_suffix(":latest") == Some(v) || s.starts_with(v);
                if e.typ == "image" {
                    image_matches(&e.actor.id) || attr("name").is_some_and(image_matches)
                } else {
                    attr("image").is_some_and(image_matches)
                }
            }
            "network" => is_object("network"),
            "volume" => is_object("volume"),
            "label" => match v.split_once('=') {
                Some((k, val)) => attr(k) == Some(val),
                None => attr(v).is_some(),
            },
            "scope" => e.scope == v,
            "daemon" => e.typ == "daemon" && e.actor.id == v,
            _ => false,
        }
    }

    /// Whether the stream is over: `until` has passed.
    pub fn ended(&self) -> bool {
        self.until.is_some_and(|u| (chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default() as f64 / 1e9) > u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(typ: &str, action: &str, id: &str, attrs: &[(&str, &str)]) -> Event {
        Event {
            typ: typ.into(),
            action: action.into(),
            actor: Actor {
                id: id.into(),
                attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            },
            scope: "local".into(),
            ..Default::default()
        }
    }

    fn filter(pairs: &[(&str, &str)]) -> Filter {
        let mut f = Filter::default();
        for (k, v) in pairs {
            f.filters.entry(k.to_string()).or_default().push(v.to_string());
        }
        f
    }

    #[test]
    fn filters_combine_as_docker_does() {
        let e = ev(
            "container",
            "exec_start: sh -c true",
            "abcdef0123",
            &[("name", "web"), ("image", "busybox"), ("tier", "front")],
        );
        assert!(filter(&[("type", "container"), ("event", "exec_start")]).matches(&e));
        assert!(filter(&[("container", "web")]).matches(&e));
        assert!(filter(&[("container", "abcdef")]).matches(&e));
        assert!(filter(&[("container", "other"), ("container", "web")]).matches(&e), "values of one key are ORed");
        assert!(!filter(&[("container", "web"), ("type", "image")]).matches(&e), "keys are ANDed");
        assert!(filter(&[("image", "busybox")]).matches(&e));
        assert!(filter(&[("label", "tier=front")]).matches(&e));
        assert!(filter(&[("label", "tier")]).matches(&e));
        assert!(!filter(&[("label", "tier=back")]).matches(&e));
        let i = ev("image", "tag", "sha256:0123", &[("name", "busybox:latest")]);
        assert!(filter(&[("image", "busybox")]).matches(&i));
        assert!(!filter(&[("container", "busybox")]).matches(&i));
    }

    #[test]
    fn events_survive_reopening_and_rotation_keeps_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let ev = Events::open(dir.path());
            ev.emit("container", "create", "c1", vec![("name".into(), "one".into())]);
            ev.emit("container", "start", "c1", vec![("name".into(), "one".into())]);
        }
        let ev = Events::open(dir.path());
        ev.emit("image", "tag", "sha256:x", vec![("name".into(), "a:b".into())]);
        let f = Filter { since: Some(0.0), ..Default::default() };
        let (past, last, _rx) = ev.subscribe(&f);
        let actions: Vec<&str> = past.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, ["create", "start", "tag"]);
        assert_eq!(last, 3, "sequence numbers continue across a reopen");
        assert_eq!(past[0].status, "create");
        assert_eq!(past[2].from, "");
        // Rotation: both files are read, oldest first.
        std::fs::rename(dir.path().join("events.log"), dir.path().join("events.log.1")).expect("rotate");
        let ev = Events::open(dir.path());
        ev.emit("network", "create", "n1", vec![]);
        let (past, _, _) = ev.subscribe(&f);
        assert_eq!(past.len(), 4);
        assert_eq!(past[3].typ, "network");
        assert_eq!(past[3].status, "", "no legacy fields for networks");
    }
}
