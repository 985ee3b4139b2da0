//! End-to-end tests of the engine core through `berth` and the real `docker` CLI. Every test
//! runs real containers and needs root (the names say so); each starts its own daemon.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Daemon, can_run, stderr, stdout};

#[test]
fn root_run_prints_output_and_propagates_exit_codes() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&["run", "--rm", "busybox", "echo", "hello berth"]);
    assert_eq!(stdout(&o), "hello berth\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(0));
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    assert_eq!(o.status.code(), Some(3));
    // An unknown executable: docker's 127.
    let o = d.berth(&["run", "--rm", "busybox", "/no/such/binary"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    if let Some(o) = d.docker(&["run", "--rm", "busybox", "sh", "-c", "echo via docker; exit 4"]) {
        assert_eq!(stdout(&o), "via docker\n", "{}", stderr(&o));
        assert_eq!(o.status.code(), Some(4));
    }
    // --rm removed them all.
    assert_eq!(stdout(&d.berth(&["ps", "-aq"])), "");
    assert!(d.mounts().is_empty(), "mounts left: {:?}", d.mounts());
}

#[test]
fn root_stdin_is_passed_and_closed_at_eof() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth_stdin(&["run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo done"], b"line1\nline2\n");
    assert_eq!(stdout(&o), "line1\nline2\ndone\n", "{}", stderr(&o));
    let o = d.berth_stdin(&["run", "-i", "--rm", "busybox", "wc", "-c"], &vec![b'x'; 300_000]);
    assert_eq!(stdout(&o).trim(), "300000");
    if let Some(o) = d.docker_stdin(&["run", "-i", "--rm", "busybox", "cat"], b"through docker\n") {
        assert_eq!(stdout(&o), "through docker\n", "{}", stderr(&o));
    }
}

#[test]
fn root_tty_under_script_propagates_exit_code() {
    if !can_run() || std::process::Command::new("script").arg("--version").output().is_err() {
        return;
    }
    let d = Daemon::start();
    let cmd = format!("{} run -it --rm busybox sh -c 'tty; exit 5'", common::BERTH);
    let o = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("DOCKER_HOST", d.host())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    assert!(stdout(&o).contains("/dev/pts/0"), "{}", stdout(&o));
    assert_eq!(o.status.code(), Some(5));
    if common::docker_cli().is_some() {
        let o = std::process::Command::new("script")
            .args(["-qec", "docker run -it --rm busybox sh -c 'test -t 0 && exit 6'", "/dev/null"])
            .env("DOCKER_HOST", d.host())
            .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
            .stdin(std::process::Stdio::null())
            .output()
            .expect("script");
        assert_eq!(o.status.code(), Some(6), "{}", stdout(&o));
    }
}

#[test]
fn root_logs_survive_exit_and_daemon_restart() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    let o = d.berth(&[
        "run",
        "--name",
        "talker",
        "busybox",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; done; echo oops >&2",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let o = d.berth(&["logs", "talker"]);
    assert_eq!(stdout(&o), "line 1\nline 2\nline 3\n");
    assert_eq!(stderr(&o), "oops\n");
    // stdout and stderr are read by two threads: only lines of one stream keep their order.
    assert!(d.berth(&["run", "--name", "counter", "busybox", "seq", "1", "5"]).status.success());
    let o = d.berth(&["logs", "--tail", "2", "counter"]);
    assert_eq!(stdout(&o), "4\n5\n");
    let o = d.berth(&["logs", "-t", "talker"]);
    assert!(stdout(&o).lines().all(|l| l.len() > 30 && l.contains('T') && l.contains("Z line")), "{}", stdout(&o));
    d.kill9();
    d.spawn();
    let o = d.berth(&["logs", "talker"]);
    assert_eq!(stdout(&o), "line 1\nline 2\nline 3\n");
    if let Some(o) = d.docker(&["logs", "talker"]) {
        assert_eq!(stdout(&o), "line 1\nline 2\nline 3\n");
        assert_eq!(stderr(&o), "oops\n");
    }
    // logs -f of a running container ends when it exits.
    let o = d.berth(&["run", "-d", "--name", "ticker", "busybox", "sh", "-c", "echo a; sleep 1; echo b"]);
    assert!(o.status.success());
    let o = d.berth(&["logs", "-f", "ticker"]);
    assert_eq!(stdout(&o), "a\nb\n");
}

#[test]
fn root_daemon_keeps_running_containers_after_its_binary_is_replaced() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    d.kill9();
    // A package upgrade unlinks the binary the daemon was started from.
    let copy = d.dir.path().join("berth-old");
    std::fs::copy(common::BERTH, &copy).expect("copy berth");
    d.exe = copy.clone();
    d.spawn();
    std::fs::remove_file(&copy).expect("remove the copy");
    let o = d.berth(&["run", "--rm", "busybox", "echo", "still here"]);
    assert_eq!(stdout(&o), "still here\n", "{}", stderr(&o));
    let o = d.berth(&["run", "-d", "--name", "bg", "busybox", "sleep", "30"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.berth(&["exec", "bg", "echo", "exec too"]);
    assert_eq!(stdout(&o), "exec too\n", "{}", stderr(&o));
    assert!(d.berth(&["rm", "-f", "bg"]).status.success());
}

#[test]
fn root_exec_runs_in_the_container() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&["run", "-d", "--name", "box", "-e", "FOO=bar", "busybox", "sleep", "60"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = stdout(&o).trim().to_owned();
    let o = d.berth(&["exec", "box", "sh", "-c", "echo $FOO $BAZ; hostname; exit 7", "--"]);
    assert_eq!(o.status.code(), Some(7));
    let o = d.berth(&[
        "exec",
        "-e",
        "BAZ=qux",
        "-w",
        "/tmp",
        "-u",
        "www-data",
        "box",
        "sh",
        "-c",
        "echo $FOO $BAZ; pwd; id -u",
    ]);
    assert_eq!(stdout(&o), "bar qux\n/tmp\n33\n", "{}", stderr(&o));
    let o = d.berth(&["exec", "box", "hostname"]);
    assert_eq!(stdout(&o).trim(), &id[..12]);
    let o = d.berth_stdin(&["exec", "-i", "box", "cat"], b"piped into exec\n");
    assert_eq!(stdout(&o), "piped into exec\n");
    if let Some(o) = d.docker(&["exec", "box", "sh", "-c", "echo docker exec; exit 2"]) {
        assert_eq!(stdout(&o), "docker exec\n", "{}", stderr(&o));
        assert_eq!(o.status.code(), Some(2));
    }
    // The exec sees the container's processes, not the host's.
    let o = d.berth(&["exec", "box", "ps"]);
    assert!(stdout(&o).contains("sleep 60"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("berth"), "{}", stdout(&o));
    let o = d.berth(&["top", "box"]);
    assert!(stdout(&o).contains("sleep 60"), "{}", stdout(&o));
}

#[test]
fn root_ps_filters_and_formats() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    assert!(d.berth(&["run", "-d", "--name", "up1", "-l", "team=a", "busybox", "sleep", "60"]).status.success());
    assert!(d.berth(&["run", "--name", "down1", "-l", "team=b", "busybox", "true"]).status.success());
    assert!(d.berth(&["create", "--name", "new1", "busybox", "true"]).status.success());
    let names = |args: &[&str]| {
        let mut v: Vec<String> = stdout(&d.berth(args)).lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(names(&["ps", "--format", "{{.Names}}"]), vec!["up1"]);
    assert_eq!(names(&["ps", "-a", "--format", "{{.Names}}"]), vec!["down1", "new1", "up1"]);
    assert_eq!(names(&["ps", "-a", "-f", "status=exited", "--format", "{{.Names}}"]), vec!["down1"]);
    assert_eq!(names(&["ps", "-a", "-f", "status=created", "--format", "{{.Names}}"]), vec!["new1"]);
    assert_eq!(names(&["ps", "-a", "-f", "label=team=b", "--format", "{{.Names}}"]), vec!["down1"]);
    assert_eq!(names(&["ps", "-a", "-f", "name=up", "--format", "{{.Names}}"]), vec!["up1"]);
    let id = d.inspect("up1")["Id"].as_str().expect("id").to_owned();
    assert_eq!(names(&["ps", "-a", "-f", &format!("id={}", &id[..8]), "--format", "{{.Names}}"]), vec!["up1"]);
    assert_eq!(names(&["ps", "-q"]), vec![id[..12].to_owned()]);
    let table = stdout(&d.berth(&["ps", "-a"]));
    assert!(table.starts_with("CONTAINER ID   IMAGE"), "{table}");
    assert!(table.contains("Exited (0)"), "{table}");
    if let Some(o) = d.docker(&["ps", "-a", "--filter", "status=running", "--format", "{{.Names}} {{.Status}}"]) {
        assert!(stdout(&o).starts_with("up1 Up "), "{}", stdout(&o));
    }
}

#[test]
fn root_rm_force_and_conflicts() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    assert!(d.berth(&["run", "-d", "--name", "busy", "busybox", "sleep", "60"]).status.success());
    let o = d.berth(&["rm", "busy"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("You cannot remove a running container"), "{}", stderr(&o));
    let (status, _) = d.http("DELETE", "/containers/busy", None).expect("http");
    assert_eq!(status, 409);
    let since = (chrono::Utc::now().timestamp() - 1).to_string();
    let o = d.berth(&["rm", "-f", "busy"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // rm -f kills at once: SIGKILL, no SIGTERM and grace period first.
    let until = (chrono::Utc::now().timestamp() + 1).to_string();
    let o = d.berth(&["events", "--since", &since, "--until", &until, "--filter", "event=kill"]);
    let text = stdout(&o);
    let kills: Vec<&str> = text.lines().map(|l| l.rsplit("signal=").next().unwrap_or("")).collect();
    assert!(!kills.is_empty() && kills.iter().all(|k| k.starts_with('9')), "{text}");
    assert_eq!(stdout(&d.berth(&["ps", "-aq"])), "");
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
    let o = d.berth(&["rm", "busy"]);
    assert!(stderr(&o).contains("No such container: busy"), "{}", stderr(&o));
    // stop sends SIGTERM, then SIGKILL after the timeout.
    assert!(
        d.berth(&["run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; sleep 60"]).status.success()
    );
    let t = Instant::now();
    assert!(d.berth(&["stop", "-t", "1", "stubborn"]).status.success());
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert_eq!(d.inspect("stubborn")["State"]["ExitCode"], 137);
}

#[test]
fn root_containers_layers_are_isolated() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "sh",
        "-c",
        "echo secret > /etc/mine; rm /bin/ls; cat /etc/mine",
    ]);
    assert_eq!(stdout(&o), "secret\n", "{}", stderr(&o));
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "test ! -e /etc/mine && test -e /bin/ls && echo clean"]);
    assert_eq!(stdout(&o), "clean\n", "{}", stderr(&o));
    // A `--rm` container's layer is mounted volatile (nothing syncs a layer about to go); a
    // kept container's is not.
    let mounted_volatile = "grep -cE ' / .*[,=]volatile' /proc/self/mountinfo || true";
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", mounted_volatile]);
    assert_eq!(stdout(&o), "1\n", "{}", stderr(&o));
    let o = d.berth(&["run", "--name", "kept", "busybox", "sh", "-c", mounted_volatile]);
    assert_eq!(stdout(&o), "0\n", "{}", stderr(&o));
    // The writer's layer keeps its change across restarts of the same container.
    let o = d.berth(&["start", "-a", "writer"]);
    assert_eq!(stdout(&o), "secret\n", "{}", stderr(&o));
    // Hostname, hosts and resolv.conf are the container's own.
    let o = d.berth(&[
        "run",
        "--rm",
        "-h",
        "myhost",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hostname; grep -c localhost /etc/hosts; test -s /etc/resolv.conf && echo resolv",
    ]);
    assert_eq!(stdout(&o), "myhost\nmyhost\n2\nresolv\n", "{}", stderr(&o));
    // Their mount points come from the shared init layer, not the container's own layer:
    // nothing is copied up or created there for them (busybox has no /etc/hosts), and
    // `diff` is empty for a container that wrote nothing.
    let id = d.inspect("kept")["Id"].as_str().expect("id").to_owned();
    let upper = d.data_root().join("containers").join(&id).join("upper");
    let left: Vec<_> = std::fs::read_dir(&upper).expect("upper").flatten().map(|e| e.file_name()).collect();
    assert!(left.is_empty(), "the container's layer holds {left:?}");
    assert_eq!(stdout(&d.berth(&["diff", "kept"])), "");
    // And an image whose /etc/resolv.conf is a symlink cannot steer the mount through it.
    let dir = tempfile::tempdir().expect("tempdir");
    let tar = dir.path().join("base.tar");
    assert!(d.berth(&["export", "-o", tar.to_str().expect("path"), "kept"]).status.success());
    std::fs::create_dir_all(dir.path().join("add/etc")).expect("mkdir");
    std::os::unix::fs::symlink("/tmp/steered", dir.path().join("add/etc/resolv.conf")).expect("symlink");
    let o =
        Command::new("tar").arg("-rf").arg(&tar).arg("-C").arg(dir.path().join("add")).arg("etc/resolv.conf").output();
    assert!(o.is_ok_and(|o| o.status.success()));
    let o = d.berth(&["import", tar.to_str().expect("path"), "symlinked:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.berth(&[
        "run",
        "--rm",
        "symlinked:1",
        "sh",
        "-c",
        "test -s /etc/resolv.conf && test ! -e /tmp/steered && echo safe",
    ]);
    assert_eq!(stdout(&o), "safe\n", "{}", stderr(&o));
}

/// A removed container's files are deleted after the answer, in the background: nothing of
/// it may be left once the daemon has stopped, and what a crash leaves half-deleted goes at
/// the next start.
#[test]
fn root_removal_leaves_nothing_behind_even_across_a_crash() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    let mut ids = Vec::new();
    for name in ["gone1", "gone2"] {
        let script = format!("echo private-{name}; echo {name} > /etc/mine");
        assert!(d.berth(&["run", "-d", "--name", name, "busybox", "sh", "-c", &script]).status.success());
        assert_eq!(stdout(&d.berth(&["wait", name])), "0\n");
        ids.push(d.inspect(name)["Id"].as_str().expect("id").to_owned());
    }
    // The runtime's files (OCI bundle, shim's configuration, log and lock, exit status) and
    // the /etc files are in the exec root; the data root keeps the layer and the log.
    let bundle = d.exec_root().join("bundles").join(&ids[0]);
    for f in ["config.json", "shim.json", "shim.log", "shim.lock", "exit.json", "hosts", "hostname", "resolv.conf"] {
        assert!(bundle.join(f).exists(), "{f} in the bundle");
        assert!(!d.data_root().join("containers").join(&ids[0]).join(f).exists(), "{f} not in the data root");
    }
    let inspect = d.inspect("gone1");
    for (key, f) in [("HostsPath", "hosts"), ("HostnamePath", "hostname"), ("ResolvConfPath", "resolv.conf")] {
        assert_eq!(inspect[key].as_str(), bundle.join(f).to_str(), "{key}");
    }
    // A stopped container's /etc files are still what `cp` reads.
    let o = d.berth(&["cp", "gone1:/etc/hostname", "-"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains(&ids[0][..12]), "cp gets the container's hostname");
    assert!(d.berth(&["rm", "gone1", "gone2"]).status.success());
    // Their directories become spares (see engine::spare) that the next containers get,
    // emptied: neither their layer nor their log follows.
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "test ! -e /etc/mine && echo clean"]);
    assert_eq!(stdout(&o), "clean\n", "{}", stderr(&o));
    assert!(d.berth(&["run", "--name", "fresh", "busybox", "sh", "-c", "test ! -e /etc/mine"]).status.success());
    let o = d.berth(&["logs", "fresh"]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str()), ("", ""));
    assert_eq!(stdout(&d.berth(&["diff", "fresh"])), "");
    assert!(d.berth(&["rm", "fresh"]).status.success());
    assert_eq!(d.terminate().and_then(|s| s.code()), Some(0));
    // What stays on the data root is spares, empty.
    let containers = d.data_root().join("containers");
    let left: Vec<_> = std::fs::read_dir(&containers).expect("containers dir").flatten().map(|e| e.path()).collect();
    for dir in &left {
        let name = dir.file_name().expect("name").to_string_lossy().into_owned();
        assert!(name.starts_with(".spare-"), "container directory left after the daemon stopped: {name}");
        let mut inside: Vec<_> = std::fs::read_dir(dir)
            .expect("spare")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        inside.sort();
        assert_eq!(inside, ["rootfs", "spare-json.log", "upper", "work"], "in {name}");
        assert_eq!(std::fs::metadata(dir.join("spare-json.log")).expect("log").len(), 0, "{name}'s log");
        for sub in ["rootfs", "upper", "work"] {
            assert_eq!(std::fs::read_dir(dir.join(sub)).expect("dir").count(), 0, "{name}/{sub}");
        }
    }
    let state: Vec<_> = std::fs::read_dir(d.exec_root().join("runtime"))
        .expect("runtime dir")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(state.is_empty(), "runtime state left: {state:?}");
    let bundles: Vec<_> = std::fs::read_dir(d.exec_root().join("bundles"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(bundles.is_empty(), "bundles left: {bundles:?}");
    // A `--rm` container's rootfs and network namespace go after the answer, in the
    // background, and a stopping daemon waits for them.
    let netns: Vec<_> = std::fs::read_dir(d.exec_root().join("netns"))
        .map(|r| r.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(netns.is_empty(), "network namespaces left: {netns:?}");
    assert!(!d.exec_root().join("netns-pool").exists(), "the namespaces made ahead of time are unpinned at stop");
    let roots = [d.data_root().display().to_string(), d.exec_root().display().to_string()];
    let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .expect("mountinfo")
        .lines()
        .filter(|l| roots.iter().any(|r| l.split(' ').nth(4).is_some_and(|m| m.starts_with(r.as_str()))))
        .map(str::to_owned)
        .collect();
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    for id in &ids {
        let cgroups: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
            .expect("cgroup fs")
            .flatten()
            .map(|h| h.path().join("berth").join(id))
            .chain(std::iter::once(std::path::Path::new("/sys/fs/cgroup/berth").join(id)))
            .filter(|p| p.exists())
            .collect();
        assert!(cgroups.is_empty(), "{cgroups:?}");
    }
    // A crash in the middle of a removal: the directory was moved aside, its rootfs still
    // mounted and its network namespace still there, the runtime's state (unreadable here) not
    // removed yet.
    let fake = "f".repeat(64);
    let half = containers.join(format!(".removing-{fake}"));
    std::fs::create_dir_all(half.join("rootfs")).expect("mkdir");
    let o = Command::new("mount").args(["-t", "tmpfs", "tmpfs"]).arg(half.join("rootfs")).output().expect("mount");
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(half.join("rootfs/etc")).expect("mkdir");
    std::fs::write(half.join("rootfs/etc/hostname"), "x").expect("write");
    let ns = d.exec_root().join("netns").join(&fake[..16]);
    std::fs::create_dir_all(d.exec_root().join("netns")).expect("mkdir");
    std::fs::write(&ns, "").expect("netns file");
    let o = Command::new("mount").args(["--bind", "/proc/self/ns/net"]).arg(&ns).output().expect("mount");
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::create_dir_all(d.exec_root().join("runtime").join(&fake)).expect("mkdir");
    std::fs::write(d.exec_root().join("runtime").join(&fake).join("state.json"), "{torn").expect("write");
    let fake_bundle = d.exec_root().join("bundles").join(&fake);
    std::fs::create_dir_all(&fake_bundle).expect("mkdir");
    std::fs::write(fake_bundle.join("shim.lock"), "").expect("write");
    // And a bundle whose container has no record at all (a crash between create and record).
    let stray = d.exec_root().join("bundles").join("e".repeat(64));
    std::fs::create_dir_all(&stray).expect("mkdir");
    std::fs::write(stray.join("config.json"), "{}").expect("write");
    d.spawn();
    assert!(!fake_bundle.exists(), "the half-removed container's bundle survived the restart");
    assert!(!stray.exists(), "a bundle without a container survived the restart");
    assert!(!half.exists(), "a half-removed container directory survived the restart");
    for e in std::fs::read_dir(&containers).expect("containers dir").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(name.starts_with(".spare-"), "{name} in the containers directory after the restart");
    }
    assert!(!ns.exists(), "its network namespace survived the restart");
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(!info.contains(&fake[..16]), "its mounts survived the restart: {info}");
    assert!(!d.exec_root().join("runtime").join(&fake).exists(), "its runtime state survived the restart");
}

#[test]
fn root_daemon_kill9_keeps_containers_manageable() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    assert!(
        d.berth(&["run", "-d", "--name", "survivor", "busybox", "sh", "-c", "echo before; sleep 60"]).status.success()
    );
    assert!(d.berth(&["run", "-d", "--name", "shortlived", "busybox", "sh", "-c", "sleep 1; exit 9"]).status.success());
    let pid = d.inspect("survivor")["State"]["Pid"].as_i64().expect("pid");
    let spawner = ppid(ppid(pid as i32));
    assert_eq!(proc_comm(spawner), "berth-spawner");
    d.kill9();
    // The container outlives the daemon; the shim spawner does not.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(common::eventually(|| !alive(spawner)), "the shim spawner outlived its daemon");
    std::thread::sleep(Duration::from_millis(1500));
    d.spawn();
    let st = d.inspect("survivor");
    assert_eq!(st["State"]["Status"], "running");
    assert_eq!(st["State"]["Pid"], pid);
    let st = d.inspect("shortlived");
    assert_eq!(st["State"]["Status"], "exited");
    assert_eq!(st["State"]["ExitCode"], 9);
    let o = d.berth(&["exec", "survivor", "echo", "still here"]);
    assert_eq!(stdout(&o), "still here\n", "{}", stderr(&o));
    assert_eq!(stdout(&d.berth(&["logs", "survivor"])), "before\n");
    assert!(d.berth(&["stop", "-t", "1", "survivor"]).status.success());
    assert_eq!(d.inspect("survivor")["State"]["Status"], "exited");
    assert!(d.berth(&["rm", "survivor", "shortlived"]).status.success());
    assert!(d.mounts().is_empty(), "{:?}", d.mounts());
}

/// The parent of `pid` (0 once it is gone).
fn ppid(pid: i32) -> i32 {
    procfs::process::Process::new(pid).and_then(|p| p.stat()).map(|s| s.ppid).unwrap_or(0)
}

fn proc_comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

/// The descriptors `pid` has open, in order.
fn open_fds(pid: i32) -> Vec<String> {
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the fd directory")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.into_iter().map(|f| f.to_string()).collect()
}

/// Whether `pid` runs (exists and is not a zombie).
fn alive(pid: i32) -> bool {
    procfs::process::Process::new(pid).and_then(|p| p.stat()).is_ok_and(|s| s.state != 'Z' && s.state != 'X')
}

#[test]
fn root_shims_are_forked_by_the_spawner_and_execd_without_it() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let daemon = d.child.as_ref().expect("daemon").id() as i32;
    assert!(d.berth(&["run", "-d", "--name", "forked", "busybox", "sleep", "60"]).status.success());
    let pid = d.inspect("forked")["State"]["Pid"].as_i64().expect("pid") as i32;
    let shim = ppid(pid);
    assert_eq!(proc_comm(shim), "berth-shim");
    let cmdline = std::fs::read(format!("/proc/{shim}/cmdline")).expect("cmdline");
    assert!(cmdline.starts_with(b"berth\0shim\0"), "{}", String::from_utf8_lossy(&cmdline));
    let spawner = ppid(shim);
    assert_eq!(proc_comm(spawner), "berth-spawner");
    assert_eq!(ppid(spawner), daemon, "the spawner is the daemon's child");
    assert_eq!(stdout(&d.berth(&["exec", "forked", "echo", "in"])), "in\n");
    // What the spawner keeps open for its shims (the procfs handle pathrs caches) stays with
    // them: a container's processes have their standard streams and nothing else.
    assert_eq!(open_fds(pid), ["0", "1", "2"], "the container's init");
    // (Not the shell's last command, or it would be `ls` itself, with its directory open.)
    let o = d.berth(&["exec", "forked", "sh", "-c", "ls /proc/$$/fd; exit 0"]);
    assert_eq!(stdout(&o).split_whitespace().collect::<Vec<_>>(), ["0", "1", "2"], "an exec'd process");

    // Without its spawner the daemon execs its shims: containers and exec sessions still run.
    // SAFETY: kill(2) on a process this test just identified.
    unsafe { libc::kill(spawner, libc::SIGKILL) };
    // Reaped by the daemon: no zombie left.
    assert!(common::eventually(|| !std::path::Path::new(&format!("/proc/{spawner}")).exists()));
    let o = d.berth(&["run", "--rm", "busybox", "echo", "execd"]);
    assert_eq!(stdout(&o), "execd\n", "{}", stderr(&o));
    assert_eq!(stdout(&d.berth(&["exec", "forked", "echo", "still"])), "still\n");
    assert!(d.berth(&["run", "-d", "--name", "execd", "busybox", "sleep", "60"]).status.success());
    let execd = d.inspect("execd")["State"]["Pid"].as_i64().expect("pid") as i32;
    assert_eq!(open_fds(execd), ["0", "1", "2"], "a container started by an exec'd shim");
    assert!(d.log().contains("the shim spawner (pid"), "{}", d.log());
    assert!(d.berth(&["rm", "-f", "execd"]).status.success());
    assert!(d.berth(&["rm", "-f", "forked"]).status.success());
}

#[test]
fn root_twenty_containers_in_parallel() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let host = d.host();
            std::thread::spawn(move || {
                std::process::Command::new(common::BERTH)
                    .args(["run", "--rm", "busybox", "sh", "-c", &format!("echo n{i}")])
                    .env("DOCKER_HOST", host)
                    .output()
                    .expect("run")
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let o = h.join().expect("thread");
        assert_eq!(stdout(&o), format!("n{i}\n"), "{}", stderr(&o));
        assert!(o.status.success());
    }
    assert_eq!(stdout(&d.berth(&["ps", "-aq"])), "");
}

#[test]
fn root_bad_input_gets_clear_errors_and_the_daemon_stays_up() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&["run", "--rm", "nosuchimage"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("Unable to find image 'nosuchimage:latest' locally"), "{}", stderr(&o));
    let (s, b) = d.http("POST", "/containers/create", Some(r#"{"Image":"nosuch"}"#)).expect("http");
    assert_eq!((s, b.contains("No such image: nosuch:latest")), (404, true), "{b}");
    let (s, b) = d.http("POST", "/containers/create", Some(r#"{"Image":"busybox","Cmd":5}"#)).expect("http");
    assert_eq!(s, 400);
    assert!(b.contains("Cmd"), "{b}");
    let (s, b) = d
        .http("POST", "/containers/create", Some(r#"{"Image": "busybox", "HostConfig": {"Memory": "lots"}}"#))
        .expect("http");
    assert_eq!(s, 400);
    assert!(b.contains("HostConfig.Memory"), "{b}");
    let (s, _) = d.http("POST", "/containers/create", Some("{not json")).expect("http");
    assert_eq!(s, 400);
    let o = d.berth(&["create", "--name", "bad name!", "busybox"]);
    assert!(stderr(&o).contains("Invalid container name"), "{}", stderr(&o));
    let o = d.berth(&["create", "-m", "1m", "busybox"]);
    assert!(stderr(&o).contains("Minimum memory limit allowed is 6MB"), "{}", stderr(&o));
    assert!(d.berth(&["create", "--name", "taken", "busybox"]).status.success());
    let o = d.berth(&["create", "--name", "taken", "busybox"]);
    assert!(stderr(&o).contains("is already in use"), "{}", stderr(&o));
    let o = d.berth_stdin(&["import", "-", "notatar"], b"this is certainly not a tar archive, not even close\n");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("not a tar archive"), "{}", stderr(&o));
    assert!(!stdout(&d.berth(&["images"])).contains("notatar"));
    // Nothing half-imported: no leftovers in the ingest area or the snapshots.
    let ingest = std::fs::read_dir(d.data_root().join("content/ingest")).expect("ingest").count();
    assert_eq!(ingest, 0);
    let tmp = std::fs::read_dir(d.data_root().join("snapshots"))
        .expect("snapshots")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .count();
    assert_eq!(tmp, 0);
    // A start that fails records Docker's exit code and the error.
    assert!(d.berth(&["create", "--name", "nobin", "busybox", "/no/such/binary"]).status.success());
    let o = d.berth(&["start", "nobin"]);
    assert_eq!(o.status.code(), Some(1));
    let st = d.inspect("nobin");
    assert_eq!(st["State"]["ExitCode"], 127);
    assert!(st["State"]["Error"].as_str().unwrap_or_default().contains("/no/such/binary"), "{st}");
    assert!(d.mounts().is_empty(), "a failed start leaves no mount: {:?}", d.mounts());
    // Still serving.
    assert_eq!(stdout(&d.berth(&["run", "--rm", "busybox", "echo", "alive"])), "alive\n");
}

#[test]
fn root_api_versions_ping_and_lock() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    assert_eq!(d.http("GET", "/v1.24/_ping", None).expect("http").0, 200);
    assert_eq!(d.http("GET", "/v1.45/version", None).expect("http").0, 200);
    let (s, b) = d.http("GET", "/v1.99/version", None).expect("http");
    assert_eq!(s, 400);
    assert!(b.contains("too new"), "{b}");
    let (s, b) = d.http("GET", "/v1.12/version", None).expect("http");
    assert_eq!(s, 400);
    assert!(b.contains("too old"), "{b}");
    let mut sock = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    use std::io::{Read, Write};
    sock.write_all(b"HEAD /_ping HTTP/1.0\r\n\r\n").expect("write");
    let mut resp = String::new();
    sock.read_to_string(&mut resp).expect("read");
    for h in ["Api-Version: 1.45", "Ostype: linux", "Builder-Version:"] {
        assert!(resp.to_ascii_lowercase().contains(&h.to_ascii_lowercase()), "{resp}");
    }
    // A second daemon on the same data root is refused.
    let o = std::process::Command::new(common::BERTH)
        .args(["daemon", "--data-root"])
        .arg(d.data_root())
        .arg("--exec-root")
        .arg(d.dir.path().join("run2"))
        .arg("-H")
        .arg(format!("unix://{}/s2.sock", d.dir.path().display()))
        .output()
        .expect("second daemon");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already running on data root"), "{}", stderr(&o));
    // SIGTERM: exit 0, containers keep running.
    assert!(d.berth(&["run", "-d", "--name", "keeps", "busybox", "sleep", "60"]).status.success());
    let pid = d.inspect("keeps")["State"]["Pid"].as_i64().expect("pid");
    let st = d.terminate().expect("status");
    assert_eq!(st.code(), Some(0));
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    d.spawn();
    assert_eq!(d.inspect("keeps")["State"]["Status"], "running");
}

#[test]
fn root_images_tag_history_rmi() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    assert!(d.berth(&["tag", "busybox", "example.com/team/tool:v1"]).status.success());
    let o = d.berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, vec!["busybox:latest", "example.com/team/tool:v1"]);
    let o = d.berth(&["history", "busybox"]);
    assert!(stdout(&o).contains("Imported from -"), "{}", stdout(&o));
    let img = d.inspect("busybox");
    assert_eq!(img["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(img["RootFS"]["Layers"].as_array().map(Vec::len), Some(1));
    let o = d.berth(&["rmi", "example.com/team/tool:v1"]);
    assert_eq!(stdout(&o), "Untagged: example.com/team/tool:v1\n");
    assert!(d.berth(&["create", "--name", "user", "busybox"]).status.success());
    let o = d.berth(&["rmi", "busybox"]);
    assert!(stderr(&o).contains("conflict"), "{}", stderr(&o));
    assert!(d.berth(&["rm", "user"]).status.success());
    if let Some(o) = d.docker(&["rmi", "busybox"]) {
        assert!(stdout(&o).contains("Untagged: busybox:latest"), "{} {}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("Deleted: sha256:"));
    }
}

#[test]
fn root_pause_rename_restart_kill_and_wait() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    assert!(
        d.berth(&[
            "run",
            "-d",
            "--name",
            "svc",
            "busybox",
            "sh",
            "-c",
            "trap 'exit 42' USR1; while true; do sleep 0.1; done"
        ])
        .status
        .success()
    );
    assert!(d.berth(&["pause", "svc"]).status.success());
    assert_eq!(d.inspect("svc")["State"]["Status"], "paused");
    assert!(stdout(&d.berth(&["ps", "--format", "{{.Status}}"])).contains("(Paused)"));
    let o = d.berth(&["pause", "svc"]);
    assert!(stderr(&o).contains("already paused"), "{}", stderr(&o));
    assert!(d.berth(&["unpause", "svc"]).status.success());
    assert_eq!(d.inspect("svc")["State"]["Status"], "running");
    assert!(d.berth(&["rename", "svc", "svc2"]).status.success());
    assert_eq!(d.inspect("svc2")["Name"], "/svc2");
    let o = d.berth(&["inspect", "svc"]);
    assert!(!o.status.success());
    // kill -s delivers the named signal; wait reports the exit code.
    let waiter = {
        let host = d.host();
        std::thread::spawn(move || {
            std::process::Command::new(common::BERTH)
                .args(["wait", "svc2"])
                .env("DOCKER_HOST", host)
                .output()
                .expect("wait")
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(d.berth(&["kill", "-s", "USR1", "svc2"]).status.success());
    let o = waiter.join().expect("waiter");
    assert_eq!(stdout(&o), "42\n", "{}", stderr(&o));
    assert_eq!(d.inspect("svc2")["State"]["ExitCode"], 42);
    let o = d.berth(&["kill", "svc2"]);
    assert!(stderr(&o).contains("is not running"), "{}", stderr(&o));
    // restart brings an exited container back with its own layer.
    assert!(d.berth(&["restart", "-t", "1", "svc2"]).status.success());
    assert_eq!(d.inspect("svc2")["State"]["Status"], "running");
    // wait?condition=not-running on a stopped container answers at once.
    assert!(d.berth(&["run", "--name", "done3", "busybox", "sh", "-c", "exit 3"]).status.code() == Some(3));
    let (s, b) = d.http("POST", "/containers/done3/wait", None).expect("http");
    assert_eq!(s, 200);
    assert!(b.contains("\"StatusCode\":3"), "{b}");
    let (s, _) = d.http("POST", "/containers/done3/wait?condition=bogus", None).expect("http");
    assert_eq!(s, 400);
    if let Some(o) = d.docker(&["pause", "svc2"]) {
        assert!(o.status.success(), "{}", stderr(&o));
        let o = d.docker(&["inspect", "-f", "{{.State.Paused}}", "svc2"]).expect("docker");
        assert_eq!(stdout(&o), "true\n");
        assert!(d.docker(&["unpause", "svc2"]).expect("docker").status.success());
        assert!(d.docker(&["rename", "svc2", "svc3"]).expect("docker").status.success());
        let o = d.docker(&["stop", "-t", "1", "svc3"]).expect("docker");
        assert!(o.status.success(), "{}", stderr(&o));
        let o = d.docker(&["wait", "svc3"]).expect("docker");
        assert_eq!(stdout(&o), "137\n", "{}", stderr(&o));
        let o = d.docker(&["start", "-a", "done3"]).expect("docker");
        assert_eq!(o.status.code(), Some(3));
        assert!(d.docker(&["rm", "svc3", "done3"]).expect("docker").status.success());
    }
}

#[test]
fn root_docker_cli_create_start_top_and_inspect() {
    if !can_run() || common::docker_cli().is_none() {
        return;
    }
    let d = Daemon::start();
    let o = d
        .docker(&["create", "--name", "dc", "-e", "A=1", "-w", "/tmp", "-u", "www-data", "busybox", "sleep", "60"])
        .expect("docker");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(d.docker(&["start", "dc"]).expect("docker").status.success());
    let o = d
        .docker(&["inspect", "-f", "{{.Config.User}} {{.Config.WorkingDir}} {{.State.Running}}", "dc"])
        .expect("docker");
    assert_eq!(stdout(&o), "www-data /tmp true\n");
    let o = d.docker(&["top", "dc"]).expect("docker");
    assert!(stdout(&o).contains("sleep 60"), "{}", stdout(&o));
    let o = d.docker(&["exec", "dc", "sh", "-c", "echo $A; pwd; id -un"]).expect("docker");
    assert_eq!(stdout(&o), "1\n/tmp\nwww-data\n", "{}", stderr(&o));
    let o = d.docker(&["ps", "--format", "{{.Names}} {{.Image}} {{.Command}}"]).expect("docker");
    assert_eq!(stdout(&o), "dc busybox \"sleep 60\"\n");
    let o = d.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).expect("docker");
    assert_eq!(stdout(&o), "busybox:latest\n");
    let o = d.docker(&["history", "busybox"]).expect("docker");
    assert!(stdout(&o).contains("Imported from -"), "{}", stdout(&o));
    let o = d.docker(&["version", "--format", "{{.Server.APIVersion}}"]).expect("docker");
    assert_eq!(stdout(&o), "1.45\n", "{}", stderr(&o));
    let o = d.docker(&["info", "--format", "{{.Containers}} {{.ContainersRunning}}"]).expect("docker");
    assert_eq!(stdout(&o), "1 1\n", "{}", stderr(&o));
    let o = d.docker(&["rm", "-f", "dc"]).expect("docker");
    assert!(o.status.success(), "{}", stderr(&o));
    // docker import of a gzipped tar, then run it.
    let tar = std::fs::read(common::busybox_tar()).expect("tar");
    let gz = std::process::Command::new("gzip").arg("-c").arg(common::busybox_tar()).output().expect("gzip").stdout;
    assert!(gz.len() < tar.len());
    let o = d.docker_stdin(&["import", "-", "gzipped:1"], &gz).expect("docker");
    assert!(stdout(&o).starts_with("sha256:"), "{} {}", stdout(&o), stderr(&o));
    let o = d.docker(&["run", "--rm", "gzipped:1", "/bin/echo", "from gzip"]).expect("docker");
    assert_eq!(stdout(&o), "from gzip\n", "{}", stderr(&o));
}

/// Reads a capability set line (`CapEff`, `CapBnd`) from a container's /proc/self/status.
fn cap_line(d: &Daemon, args: &[&str], field: &str) -> String {
    let script = format!("grep {field} /proc/self/status");
    let mut a = vec!["run", "--rm"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["busybox", "sh", "-c", &script]);
    let o = d.berth(&a);
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).split_whitespace().nth(1).unwrap_or_default().to_owned()
}

#[test]
fn root_capabilities_default_add_drop_privileged() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(cap_line(&d, &[], "CapEff"), "00000000a80425fb");
    assert_eq!(cap_line(&d, &[], "CapBnd"), "00000000a80425fb");
    assert_eq!(cap_line(&d, &["--cap-drop", "ALL"], "CapEff"), "0000000000000000");
    // NET_ADMIN is bit 12: 0x1000 more than the defaults.
    assert_eq!(cap_line(&d, &["--cap-add", "net_admin"], "CapEff"), "00000000a80435fb");
    assert_eq!(cap_line(&d, &["--cap-drop", "CAP_CHOWN"], "CapEff"), "00000000a80425fa");
    // A non-root user has no effective capabilities, as in Docker.
    assert_eq!(cap_line(&d, &["-u", "1000"], "CapEff"), "0000000000000000");
    // --privileged: the host's bounding set, not a fixed list.
    let host = std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_owned()))
        .expect("CapBnd");
    assert_eq!(cap_line(&d, &["--privileged"], "CapEff"), host);
    // --privileged sees the host's devices (a loop device here); the default does not.
    if std::path::Path::new("/dev/loop0").exists() {
        let o = d.berth(&["run", "--rm", "--privileged", "busybox", "sh", "-c", "test -b /dev/loop0 && echo yes"]);
        assert_eq!(stdout(&o), "yes\n", "{}", stderr(&o));
        let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "test -e /dev/loop0 || echo no"]);
        assert_eq!(stdout(&o), "no\n", "{}", stderr(&o));
    }
    let o = d.berth(&["run", "--rm", "--cap-add", "BOGUS", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("unknown capability: \"BOGUS\""), "{}", stderr(&o));
    assert_eq!(stdout(&d.berth(&["ps", "-aq"])), "", "nothing is left of a refused create");
}

#[test]
fn root_confinement_and_limits_cgroup_v1() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let sh = |args: &[&str], script: &str| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["busybox", "sh", "-c", script]);
        d.berth(&a)
    };
    // Masked and read-only paths, as Docker's defaults.
    let o = sh(
        &[],
        "for p in /proc/keys /proc/timer_list /proc/sched_debug /proc/kcore /proc/latency_stats; do [ -e $p ] && echo $(wc -c < $p); done; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/domainname 2>/dev/null || echo ro",
    );
    let lines: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    assert_eq!(lines.last().map(String::as_str), Some("ro"), "{}", stderr(&o));
    assert!(lines[..lines.len() - 1].iter().all(|l| l == "0"), "masked paths must read empty: {lines:?}");
    // The container's own cgroups are visible (what a JVM reads its limits from), read-only.
    let o = sh(
        &["-m", "32m"],
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes; mkdir /sys/fs/cgroup/memory/child 2>/dev/null || echo ro",
    );
    assert_eq!(stdout(&o), format!("{}\nro\n", 32 << 20), "{}", stderr(&o));
    // --read-only, with a writable --tmpfs.
    let o = sh(
        &["--read-only", "--tmpfs", "/scratch:size=1m"],
        "touch /x 2>/dev/null || echo rootfs-ro; touch /scratch/y && echo tmpfs-rw; grep /scratch /proc/mounts | grep -c size=1024k",
    );
    assert_eq!(stdout(&o), "rootfs-ro\ntmpfs-rw\n1\n", "{}", stderr(&o));
    // /dev/shm defaults to 64m; --shm-size changes it.
    let o = sh(&["--shm-size", "8m"], "grep /dev/shm /proc/mounts | grep -o size=[0-9]*k");
    assert_eq!(stdout(&o), "size=8192k\n", "{}", stderr(&o));
    // --ulimit and --sysctl reach the process.
    let o = sh(&["--ulimit", "nofile=512:1024"], "ulimit -n; ulimit -Hn");
    assert_eq!(stdout(&o), "512\n1024\n", "{}", stderr(&o));
    let o = sh(
        &["--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmni=1000"],
        "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmni",
    );
    assert_eq!(stdout(&o), "1\n1000\n", "{}", stderr(&o));
    // no-new-privileges.
    let o = sh(&["--security-opt", "no-new-privileges"], "grep NoNewPrivs /proc/self/status");
    assert!(stdout(&o).contains("1"), "{}", stdout(&o));
    let o = sh(&[], "grep NoNewPrivs /proc/self/status");
    assert!(stdout(&o).contains("0"), "{}", stdout(&o));
    // Limits are written into the container's own cgroup (v1 here).
    assert!(
        d.berth(&[
            "run",
            "-d",
            "--name",
            "limited",
            "-m",
            "32m",
            "--cpus",
            "0.5",
            "--pids-limit",
            "20",
            "--cpuset-cpus",
            "0",
            "busybox",
            "sleep",
            "60"
        ])
        .status
        .success()
    );
    let id = d.inspect("limited")["Id"].as_str().expect("id").to_owned();
    if runtime_is_v1() {
        let read = |c: &str, f: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/berth/{id}/{f}")).unwrap_or_default().trim().to_owned()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), (32 << 20).to_string());
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("pids", "pids.max"), "20");
        assert_eq!(read("cpuset", "cpuset.cpus"), "0");
    }
    // A fork loop stops at --pids-limit.
    let o = sh(&["--pids-limit", "10"], "for i in $(seq 30); do sleep 5 & done; echo survived");
    assert!(stderr(&o).contains("can't fork"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("survived"));
    // Out of memory: exit 137 and OOMKilled.
    let o = d.berth(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_eq!(d.inspect("hog")["State"]["OOMKilled"], true);
    // … and an oom event before the die.
    let o = d.berth(&[
        "events",
        "--since",
        "0",
        "--until",
        &(chrono::Utc::now().timestamp() + 1).to_string(),
        "--filter",
        "container=hog",
    ]);
    let text = stdout(&o);
    let actions: Vec<&str> = text.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    let oom = actions.iter().position(|a| *a == "oom");
    assert!(oom.is_some() && oom < actions.iter().position(|a| *a == "die"), "{actions:?}");
    assert!(d.berth(&["rm", "-f", "limited", "hog"]).status.success());
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/memory/berth/{id}")).exists(),
        "cgroup removed with the container"
    );
    // Bad input: each a 400 naming the option, nothing created.
    for (args, needle) in [
        (vec!["--sysctl", "vm.swappiness=10"], "vm.swappiness"),
        (vec!["--cpuset-cpus", "0-63"], "--cpuset-cpus"),
        (vec!["--ulimit", "bogus=1"], "bogus"),
        (vec!["--blkio-weight", "5"], "--blkio-weight"),
        (vec!["--security-opt", "wat"], "--security-opt"),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend(args.iter().copied());
        a.extend(["busybox", "true"]);
        let o = d.berth(&a);
        assert_eq!(o.status.code(), Some(125), "{args:?}");
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    assert_eq!(stdout(&d.berth(&["ps", "-aq"])), "");
}

fn runtime_is_v1() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory").is_dir()
}

#[test]
fn root_init_reaps_and_forwards_signals() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&["run", "--rm", "--init", "busybox", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"]);
    assert!(stdout(&o).starts_with("/sbin/docker-init -- sh -c"), "{} {}", stdout(&o), stderr(&o));
    // `sleep` as PID 1 ignores SIGTERM; under the init it gets it and stop is quick.
    assert!(d.berth(&["run", "-d", "--init", "--name", "sleeper", "busybox", "sleep", "100"]).status.success());
    // The init blocks signals before it starts its child: once `sleep` runs, SIGTERM is caught
    // and forwarded (sent any earlier, PID 1 without a handler would drop it).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stdout(&d.berth(&["top", "sleeper"])).contains("sleep 100") {
        assert!(Instant::now() < deadline, "sleep never started under the init");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Exit code 143 (SIGTERM), not 137: the signal reached sleep before the timeout's SIGKILL.
    assert!(d.berth(&["stop", "-t", "30", "sleeper"]).status.success());
    assert_eq!(d.inspect("sleeper")["State"]["ExitCode"], 143);
    // Orphans are reaped: no zombie is left after the parent of a background child exits.
    let o = d.berth(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "sh -c 'sleep 0.2 &' ; sleep 0.6; ps -o stat | grep -c Z",
    ]);
    assert_eq!(stdout(&o).trim(), "0", "{}", stderr(&o));
}

#[test]
fn root_stats_and_update_cgroup_v1() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    assert!(
        d.berth(&[
            "run",
            "-d",
            "--name",
            "st",
            "-m",
            "64m",
            "busybox",
            "sh",
            "-c",
            "x=$(head -c 4000000 /dev/zero | tr '\\0' a); sleep 60"
        ])
        .status
        .success()
    );
    std::thread::sleep(Duration::from_millis(500));
    let (s, b) = d.http("GET", "/containers/st/stats?stream=false&one-shot=true", None).expect("http");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(b.trim()).expect("stats json");
    assert_eq!(v["memory_stats"]["limit"], 64 << 20);
    assert!(v["memory_stats"]["usage"].as_u64().unwrap_or(0) > 0, "{v}");
    assert!(v["memory_stats"]["max_usage"].as_u64().unwrap_or(0) > 4_000_000, "{v}");
    assert!(v["pids_stats"]["current"].as_u64().unwrap_or(0) >= 1);
    assert!(v["cpu_stats"]["cpu_usage"]["total_usage"].as_u64().unwrap_or(0) > 0);
    assert!(v["cpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0);
    let o = d.berth(&["stats", "--no-stream", "st"]);
    let out = stdout(&o);
    assert!(out.starts_with("CONTAINER ID   NAME"), "{out}");
    assert!(out.contains(" / 64MiB"), "{out}");
    // update changes the running container's limits.
    assert!(
        d.berth(&["update", "-m", "128m", "--memory-swap", "256m", "--pids-limit", "50", "--cpus", "0.5", "st"])
            .status
            .success()
    );
    let id = d.inspect("st")["Id"].as_str().expect("id").to_owned();
    if runtime_is_v1() {
        let read = |c: &str, f: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/{c}/berth/{id}/{f}")).unwrap_or_default().trim().to_owned()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), (128 << 20).to_string());
        assert_eq!(read("pids", "pids.max"), "50");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    }
    assert_eq!(d.inspect("st")["HostConfig"]["Memory"], 128 << 20);
    let o = d.berth(&["update", "-m", "1m", "st"]);
    assert!(stderr(&o).contains("Minimum memory limit allowed is 6MB"), "{}", stderr(&o));
    if let Some(o) = d.docker(&["stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", "st"]) {
        assert!(stdout(&o).starts_with("st ") && stdout(&o).contains("/ 128MiB"), "{} {}", stdout(&o), stderr(&o));
        let o = d.docker(&["update", "--memory", "96m", "--memory-swap", "192m", "st"]).expect("docker");
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(d.inspect("st")["HostConfig"]["Memory"], 96 << 20);
    }
}

/// Regression: a process that exits at once used to race libcontainer's post-start state
/// save against the shim's delete, leaving a stale state that failed every later start with
/// "container already exists".
#[test]
fn root_fast_exiting_container_restarts_many_times() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    assert_eq!(d.berth(&["run", "--name", "quick", "busybox", "sh", "-c", "exit 3"]).status.code(), Some(3));
    for i in 0..40 {
        let o = d.berth(&["start", "-a", "quick"]);
        assert_eq!(o.status.code(), Some(3), "start {i}: {}", stderr(&o));
    }
}

#[test]
fn root_seccomp_default_profile_custom_profiles_and_exec() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let status = |o: &std::process::Output, key: &str| -> String {
        stdout(o).lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_owned()).unwrap_or_default()
    };
    // Default: filtered, Docker's capabilities exactly (CAP_SYS_ADMIN held for loading the
    // filter is gone), and a user namespace — which needs no capability from the kernel — is
    // refused by the profile.
    let o = d.berth(&["run", "--rm", "busybox", "sh", "-c", "cat /proc/self/status; unshare -U true || echo refused"]);
    assert_eq!(status(&o, "Seccomp:"), "2");
    assert_eq!(status(&o, "CapEff:"), "00000000a80425fb");
    assert_eq!(status(&o, "CapPrm:"), "00000000a80425fb");
    assert!(stdout(&o).contains("refused"), "{}", stdout(&o));
    // Exec'd processes get the same filter.
    assert!(d.berth(&["run", "-d", "--name", "box", "busybox", "sleep", "60"]).status.success());
    let o = d.berth(&["exec", "box", "sh", "-c", "cat /proc/self/status; unshare -U true || echo refused"]);
    assert_eq!(status(&o, "Seccomp:"), "2");
    assert_eq!(status(&o, "CapEff:"), "00000000a80425fb");
    assert!(stdout(&o).contains("refused"));
    // A capability opens what it gates: CAP_SYS_ADMIN lets mount and unshare through.
    let o = d.berth(&[
        "run",
        "--rm",
        "--cap-add",
        "SYS_ADMIN",
        "busybox",
        "sh",
        "-c",
        "mkdir /m && mount -t tmpfs none /m && unshare -U true && echo both",
    ]);
    assert_eq!(stdout(&o).trim(), "both", "{}", stderr(&o));
    // unconfined and --privileged: no filter.
    let o = d.berth(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        "cat /proc/self/status; unshare -U true && echo allowed",
    ]);
    assert_eq!(status(&o, "Seccomp:"), "0");
    assert!(stdout(&o).contains("allowed"));
    let o = d.berth(&["run", "--rm", "--privileged", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status(&o, "Seccomp:"), "0");
    // A profile file, read by the client as docker does: mkdir refused, the rest allowed.
    let profile = d.dir.path().join("no-mkdir.json");
    std::fs::write(
        &profile,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
    )
    .expect("write profile");
    let opt = format!("seccomp={}", profile.display());
    let o = d.berth(&["run", "--rm", "--security-opt", &opt, "busybox", "sh", "-c", "mkdir /x 2>&1; echo done"]);
    assert!(
        stdout(&o).contains("Operation not permitted") && stdout(&o).contains("done"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    if let Some(o) =
        d.docker(&["run", "--rm", "--security-opt", &opt, "busybox", "sh", "-c", "mkdir /x 2>&1; echo done"])
    {
        assert!(stdout(&o).contains("Operation not permitted"), "{}{}", stdout(&o), stderr(&o));
    }
    // Bad profiles are named and nothing runs.
    let o = d.berth(&["run", "--rm", "--security-opt", "seccomp=/nonexistent.json", "busybox", "true"]);
    assert!(stderr(&o).contains("/nonexistent.json"), "{}", stderr(&o));
    std::fs::write(&profile, r#"{"defaultAction":"SCMP_ACT_SOMETIMES"}"#).expect("write profile");
    let o = d.berth(&["run", "--rm", "--security-opt", &opt, "busybox", "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("SCMP_ACT_SOMETIMES"), "{}", stderr(&o));
}

/// The same limits through cgroup v2's files. Runs only on a cgroup v2 host (this project's
/// CI machine has cgroup v1, where `root_confinement_and_limits_cgroup_v1` and
/// `root_stats_and_update_cgroup_v1` cover the shared code).
#[test]
fn root_limits_stats_and_update_cgroup_v2() {
    if !can_run() {
        return;
    }
    let v2 = nix::sys::statfs::statfs("/sys/fs/cgroup")
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if !v2 {
        eprintln!("skipped: /sys/fs/cgroup is not a cgroup v2 hierarchy here");
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "v2",
        "-m",
        "32m",
        "--memory-swap",
        "64m",
        "--cpus",
        "0.5",
        "--pids-limit",
        "20",
        "--cpuset-cpus",
        "0",
        "busybox",
        "sleep",
        "60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = d.inspect("v2")["Id"].as_str().expect("id").to_owned();
    let read = |f: &str| {
        std::fs::read_to_string(format!("/sys/fs/cgroup/berth/{id}/{f}")).unwrap_or_default().trim().to_owned()
    };
    assert_eq!(read("memory.max"), (32 << 20).to_string());
    assert_eq!(read("memory.swap.max"), (32 << 20).to_string(), "v2 counts swap apart from memory");
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("pids.max"), "20");
    assert_eq!(read("cpuset.cpus"), "0");
    let (s, b) = d.http("GET", "/containers/v2/stats?stream=false", None).expect("http");
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(b.trim()).expect("stats json");
    assert_eq!(v["memory_stats"]["limit"], 32 << 20);
    assert!(v["pids_stats"]["current"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(d.berth(&["update", "-m", "128m", "--memory-swap", "256m", "--pids-limit", "50", "v2"]).status.success());
    assert_eq!(read("memory.max"), (128 << 20).to_string());
    assert_eq!(read("memory.swap.max"), (128 << 20).to_string());
    assert_eq!(read("pids.max"), "50");
    let o = d.berth(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "--memory-swap",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=a; while true; do x=$x$x; done",
    ]);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
    assert_eq!(d.inspect("hog")["State"]["OOMKilled"], true);
    assert!(d.berth(&["rm", "-f", "v2", "hog"]).status.success());
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/berth/{id}")).exists(), "cgroup removed with the container");
}
