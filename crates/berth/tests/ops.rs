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

/// Polls `inspect` until `pred` holds (10 s at most); returns the last inspect.
fn wait_state(d: &Daemon, name: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = d.inspect(name);
        if pred(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{name}: never {what}: {:#}", v["State"]);
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn root_restart_policies_backoff_and_daemon_restart() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    // on-failure:2 — a container that exits 1 runs three times, then stays down.
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "onf",
        "--restart",
        "on-failure:2",
        "busybox",
        "sh",
        "-c",
        "echo ran; exit 1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = wait_state(&d, "onf", "exited after two restarts", |v| {
        v["RestartCount"] == 2 && v["State"]["Status"] == "exited"
    });
    assert_eq!(v["State"]["ExitCode"], 1);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(d.inspect("onf")["RestartCount"], 2, "no third restart");
    assert_eq!(stdout(&d.berth(&["logs", "onf"])), "ran\nran\nran\n");
    // on-failure does not restart a clean exit.
    assert!(d.berth(&["run", "--name", "clean", "--restart", "on-failure", "busybox", "true"]).status.success());
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(d.inspect("clean")["RestartCount"], 0);

    // always: restarts after a clean exit too; stop cancels a pending restart for good.
    let o = d.berth(&["run", "-d", "--name", "flappy", "--restart", "always", "busybox", "true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_state(&d, "flappy", "restarted twice", |v| v["RestartCount"].as_i64() >= Some(2));
    assert!(d.berth(&["stop", "-t", "1", "flappy"]).status.success());
    let n = d.inspect("flappy")["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(800));
    let v = d.inspect("flappy");
    assert_eq!(v["State"]["Status"], "exited", "{:#}", v["State"]);
    assert_eq!(v["RestartCount"], n, "stopped means stopped");

    // A long-running `always` container killed while the daemon is down comes back when it
    // starts; an `always` one the user stopped comes back too; `unless-stopped` stays down.
    assert!(
        d.berth(&["run", "-d", "--name", "svc", "--restart", "always", "busybox", "sleep", "300"]).status.success()
    );
    assert!(
        d.berth(&["run", "-d", "--name", "us", "--restart", "unless-stopped", "busybox", "sleep", "300"])
            .status
            .success()
    );
    assert!(d.berth(&["stop", "-t", "0", "us"]).status.success());
    let pid = d.inspect("svc")["State"]["Pid"].as_i64().expect("pid") as i32;
    d.kill9();
    // SAFETY: kill(2) on the container's init, a process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(300));
    d.spawn();
    let v = wait_state(&d, "svc", "running again", |v| v["State"]["Status"] == "running");
    assert_ne!(v["State"]["Pid"].as_i64(), Some(pid as i64));
    wait_state(&d, "flappy", "running again after the daemon restart", |v| {
        v["State"]["Status"] == "running" || v["RestartCount"].as_i64() > n.as_i64()
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.inspect("us")["State"]["Status"], "exited");

    // Bad input.
    let o = d.berth(&["run", "--rm", "--restart", "always", "busybox", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("AutoRemove") || stderr(&o).contains("--rm"), "{}", stderr(&o));
    let o = d.berth(&["run", "--restart", "sometimes", "busybox", "true"]);
    assert!(stderr(&o).contains("sometimes"), "{}", stderr(&o));
    // update --restart changes the policy of an existing container.
    assert!(d.berth(&["update", "--restart", "on-failure:5", "onf"]).status.success());
    let v = d.inspect("onf");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(v["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 5);
}

#[test]
fn root_healthchecks_turn_healthy_then_unhealthy() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let events = Reader::start(&d, common::BERTH, &["events", "--filter", "container=hc"]);
    std::thread::sleep(Duration::from_millis(200));
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "hc",
        "--health-cmd",
        "test -e /tmp/ok && echo fine",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        "busybox",
        "sh",
        "-c",
        "touch /tmp/ok; sleep 300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.inspect("hc")["State"]["Health"]["Status"], "starting");
    let v = wait_state(&d, "hc", "healthy", |v| v["State"]["Health"]["Status"] == "healthy");
    let last = &v["State"]["Health"]["Log"][0];
    assert_eq!(last["ExitCode"], 0);
    assert_eq!(last["Output"], "fine\n");
    assert!(stdout(&d.berth(&["ps"])).contains("(healthy)"));
    assert!(stdout(&d.berth(&["ps", "-q", "--filter", "health=healthy"])).trim().len() == 12);
    events.until(&["health_status: healthy"]);
    assert!(d.berth(&["exec", "hc", "rm", "/tmp/ok"]).status.success());
    let v = wait_state(&d, "hc", "unhealthy", |v| v["State"]["Health"]["Status"] == "unhealthy");
    assert!(v["State"]["Health"]["FailingStreak"].as_i64() >= Some(2), "{:#}", v["State"]["Health"]);
    let log = v["State"]["Health"]["Log"].as_array().expect("log");
    assert!(log.len() <= 5 && log.last().expect("a result")["ExitCode"] == 1, "{log:#?}");
    events.until(&["health_status: unhealthy"]);
    if let Some(o) = d.docker(&["ps", "--format", "{{.Status}}", "--filter", "name=hc"]) {
        assert!(stdout(&o).contains("(unhealthy)"), "{}", stdout(&o));
    }
    // Probes are not kept as exec sessions of the container.
    assert!(d.inspect("hc")["ExecIDs"].as_array().is_none_or(|a| a.len() <= 2));

    // A probe that runs past its timeout fails with Docker's message.
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "slow",
        "--health-cmd",
        "sleep 5",
        "--health-interval",
        "100ms",
        "--health-timeout",
        "300ms",
        "--health-retries",
        "1",
        "busybox",
        "sleep",
        "300",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = wait_state(&d, "slow", "unhealthy", |v| v["State"]["Health"]["Status"] == "unhealthy");
    assert!(
        v["State"]["Health"]["Log"][0]["Output"].as_str().unwrap_or("").contains("exceeded timeout (300ms)"),
        "{:#}",
        v["State"]["Health"]
    );

    // A healthcheck given through the API, and --no-healthcheck.
    let (status, body) = d
        .http(
            "POST",
            "/containers/create?name=apihc",
            Some(r#"{"Image":"busybox","Cmd":["sleep","300"],"Healthcheck":{"Test":["CMD","true"],"Interval":100000000}}"#),
        )
        .expect("create");
    assert_eq!(status, 201, "{body}");
    assert!(d.berth(&["start", "apihc"]).status.success());
    wait_state(&d, "apihc", "healthy", |v| v["State"]["Health"]["Status"] == "healthy");
    let o = d.berth(&["run", "-d", "--name", "nohc", "--no-healthcheck", "busybox", "sleep", "300"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = d.inspect("nohc");
    assert_eq!(v["Config"]["Healthcheck"]["Test"][0], "NONE");
    assert!(v["State"]["Health"].is_null());
    // Bad input is named.
    let o = d.berth(&["run", "--health-interval", "10", "busybox", "true"]);
    assert!(stderr(&o).contains("health-interval"), "{}", stderr(&o));
    let (status, body) = d
        .http("POST", "/containers/create", Some(r#"{"Image":"busybox","Healthcheck":{"Test":["WHAT"]}}"#))
        .expect("create");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("WHAT"), "{body}");
}

#[test]
fn root_docker_cli_inside_a_container_drives_the_host_daemon() {
    if !can_run() {
        return;
    }
    let Some(docker) = common::docker_cli() else { return };
    let Ok(cli) = which(docker) else { return };
    let d = Daemon::start();
    let sock = format!("{}:/var/run/docker.sock", d.socket().display());
    let bin = format!("{}:/usr/local/bin/docker:ro", cli.display());
    let run = |script: &str| {
        d.berth(&["run", "--rm", "-v", &sock, "-v", &bin, "-e", "DOCKER_CONFIG=/tmp/dc", "busybox", "sh", "-c", script])
    };
    // List: the container sees itself among the host daemon's containers.
    let o = run("docker ps --format '{{.Image}} {{.Status}}'");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("busybox Up"), "{}", stdout(&o));
    // Run: a sibling container on the host daemon.
    let o = run("docker run --rm --name sibling busybox echo from a sibling");
    assert_eq!(stdout(&o), "from a sibling\n", "{}", stderr(&o));
    let o = run("docker version --format '{{.Server.Version}}'");
    assert_eq!(stdout(&o).trim(), env!("CARGO_PKG_VERSION"), "{}", stderr(&o));
}

/// The path of a program on PATH.
fn which(p: &str) -> Result<std::path::PathBuf, ()> {
    if p.contains('/') {
        return Ok(p.into());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|v| std::env::split_paths(&v).collect::<Vec<_>>())
        .map(|d| d.join(p))
        .find(|c| c.is_file())
        .ok_or(())
}

#[test]
fn root_berth_daemon_inside_a_privileged_container() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dind-rootfs.sh");
    let tar = Command::new("sh").arg(&script).arg(common::BERTH).output().expect("dind-rootfs.sh");
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    let o = d.berth_stdin(&["import", "-c", r#"CMD ["berth", "daemon"]"#, "-", "berth-dind:test"], &tar.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    let busybox = std::fs::read(common::busybox_tar()).expect("busybox tar");
    let start_dind = || {
        // The data root on a volume: overlayfs is not stacked on the container's overlayfs.
        let o = d.berth(&[
            "run",
            "-d",
            "--privileged",
            "--name",
            "dind",
            "-v",
            "dind-data:/var/lib/berth",
            "berth-dind:test",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.berth(&["exec", "dind", "berth", "version"]).status.success() {
            assert!(Instant::now() < deadline, "inner daemon never answered: {}", stdout(&d.berth(&["logs", "dind"])));
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    start_dind();
    let o = d.berth_stdin(
        &["exec", "-i", "dind", "berth", "import", "-c", r#"CMD ["sh"]"#, "-", "busybox:latest"],
        &busybox,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.berth(&[
        "exec",
        "dind",
        "berth",
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "echo inner; grep Seccomp: /proc/self/status",
    ]);
    assert_eq!(stdout(&o), "inner\nSeccomp:\t2\n", "{}", stderr(&o));
    let outer = d.inspect("dind")["Id"].as_str().expect("id").to_owned();
    assert!(d.berth(&["rm", "-f", "dind"]).status.success());
    // Nothing of the inner containers' cgroups is left under the outer one.
    let left: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join("berth").join(&outer))
        .filter(|p| p.exists())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // The inner daemon's images live on the volume: a new DinD container still has busybox.
    start_dind();
    let o = d.berth(&["exec", "dind", "berth", "images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(stdout(&o).trim(), "busybox:latest", "{}", stderr(&o));
    assert!(d.berth(&["rm", "-f", "dind"]).status.success());
}

#[test]
fn root_stop_signal_timeout_and_image_stopsignal() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let trap = "trap 'echo got $SIG; exit 7' $SIG; echo ready; while true; do sleep 0.1; done";
    let ready = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !stdout(&d.berth(&["logs", name])).contains("ready") {
            assert!(Instant::now() < deadline, "{name} never got ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // --stop-signal: stop sends it (and the process may exit its own way).
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "usr1",
        "--stop-signal",
        "USR1",
        "-e",
        "SIG=USR1",
        "busybox",
        "sh",
        "-c",
        trap,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    ready("usr1");
    assert!(d.berth(&["stop", "usr1"]).status.success());
    assert_eq!(d.inspect("usr1")["State"]["ExitCode"], 7);
    assert!(stdout(&d.berth(&["logs", "usr1"])).contains("got USR1"));
    // STOPSIGNAL from the image, overridable per container.
    let tar = std::fs::read(common::busybox_tar()).expect("tar");
    assert!(d.berth_stdin(&["import", "-c", "STOPSIGNAL SIGUSR2", "-", "usr2:img"], &tar).status.success());
    let o = d.berth(&["run", "-d", "--name", "usr2", "-e", "SIG=USR2", "usr2:img", "sh", "-c", trap]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(d.inspect("usr2")["Config"]["StopSignal"], "SIGUSR2");
    ready("usr2");
    let stop = match d.docker(&["stop", "usr2"]) {
        Some(o) => o,
        None => d.berth(&["stop", "usr2"]),
    };
    assert!(stop.status.success(), "{}", stderr(&stop));
    assert_eq!(d.inspect("usr2")["State"]["ExitCode"], 7);
    // --stop-timeout: a process that ignores the signal is killed after it (no -t given).
    let since = (chrono::Utc::now().timestamp() - 1).to_string();
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "deaf",
        "--stop-timeout",
        "1",
        "busybox",
        "sh",
        "-c",
        "trap '' TERM; echo ready; sleep 60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    ready("deaf");
    assert!(d.berth(&["stop", "deaf"]).status.success());
    assert_eq!(d.inspect("deaf")["State"]["ExitCode"], 137);
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let o = d.berth(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=deaf",
        "--filter",
        "event=kill",
    ]);
    let signals: Vec<String> = stdout(&o)
        .lines()
        .filter_map(|l| l.split("signal=").nth(1))
        .map(|s| s.trim_end_matches(')').to_owned())
        .collect();
    assert_eq!(signals, ["15", "9"], "{}", stdout(&o));
    // kill -s with a name, a number, and a bad one.
    let o = d.berth(&["run", "-d", "--name", "hup", "-e", "SIG=HUP", "busybox", "sh", "-c", trap]);
    assert!(o.status.success(), "{}", stderr(&o));
    ready("hup");
    assert!(d.berth(&["kill", "-s", "SIGHUP", "hup"]).status.success());
    let o = d.berth(&["wait", "hup"]);
    assert_eq!(stdout(&o), "7\n");
    let o = d.berth(&["kill", "-s", "NOPE", "usr1"]);
    assert!(!o.status.success() && stderr(&o).contains("NOPE"), "{}", stderr(&o));
}
