//! Operations (issue 9): events, restart policies, healthchecks, stop semantics, the daemon
//! socket inside a container. Root-only tests say so by name.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Daemon, can_run, stderr, stdout};

/// A live `events` reader (berth's or docker's): its lines arrive on a channel.
struct Reader {
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
}

impl Reader {
    fn start(d: &Daemon, program: &str, args: &[&str]) -> Reader {
        let mut child = Command::new(program)
            .args(args)
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn events reader");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Reader { child, lines }
    }

    /// Lines until one contains every word of `want`, or panics after 10 s with what came.
    fn until(&self, want: &[&str]) -> Vec<String> {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let hit = want.iter().all(|w| l.contains(w));
                    seen.push(l);
                    if hit {
                        return seen;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no event with {want:?}; saw {seen:#?}");
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn root_events_live_filtered_and_kept_across_restart() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    let before = chrono::Utc::now().timestamp() - 1;
    let ours = Reader::start(&d, common::BERTH, &["events", "--filter", "type=container", "--filter", "container=ev1"]);
    let docker = common::docker_cli()
        .map(|p| Reader::start(&d, p, &["events", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"]));
    // Both readers are subscribed once a first event reaches them.
    std::thread::sleep(Duration::from_millis(300));
    let o = d.berth(&["run", "--name", "ev1", "--label", "tier=front", "busybox", "sh", "-c", "exit 3"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let seen = ours.until(&["container die", "exitCode=3"]);
    let actions: Vec<&str> = seen.iter().filter_map(|l| l.split_whitespace().nth(2)).collect();
    assert_eq!(actions, ["create", "attach", "start", "die"], "{seen:#?}");
    assert!(
        seen.iter().all(|l| l.contains("name=ev1") && l.contains("image=busybox") && l.contains("tier=front")),
        "{seen:#?}"
    );
    if let Some(r) = &docker {
        let seen = r.until(&["container die ev1"]);
        assert!(seen.iter().any(|l| l == "container start ev1"), "{seen:#?}");
    }
    assert!(d.berth(&["tag", "busybox", "other:1"]).status.success());
    if let Some(r) = &docker {
        r.until(&["image tag other:1"]);
    }
    // The filter kept image events and other containers away from the first reader.
    assert!(d.berth(&["run", "--name", "ev2", "busybox", "true"]).status.success());
    assert!(d.berth(&["rm", "ev1"]).status.success());
    let seen = ours.until(&["container destroy", "name=ev1"]);
    assert!(seen.iter().all(|l| l.contains("name=ev1")), "{seen:#?}");
    drop(ours);
    drop(docker);

    // After a restart, --since still lists what happened before it; --until ends the stream.
    d.kill9();
    d.spawn();
    let now = chrono::Utc::now().timestamp() + 1;
    let o = d.berth(&["events", "--since", &before.to_string(), "--until", &now.to_string(), "--filter", "event=die"]);
    let lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines[0].contains("name=ev1") && lines[0].contains("exitCode=3"), "{lines:#?}");
    assert!(lines[1].contains("name=ev2") && lines[1].contains("exitCode=0"), "{lines:#?}");
    if let Some(o) =
        d.docker(&["events", "--since", &before.to_string(), "--until", &now.to_string(), "--filter", "image=other:1"])
    {
        let out = stdout(&o);
        assert!(out.contains("image tag") && out.contains("name=other:1"), "{out}");
    }
    // Bad input: a filter the daemon does not know.
    let (status, body) =
        d.http("GET", "/events?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D&until=1", None).expect("http");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("colour"), "{body}");
}
