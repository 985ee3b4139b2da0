//! `berth runtime`: runc's command line over the same libcontainer path the shim uses.

mod common;

use std::process::Command;

use common::{BERTH, can_run, stderr, stdout};

fn bundle(dir: &std::path::Path, args: &[&str], id: &str) {
    bundle_with(dir, args, id, |_| {});
}

/// A busybox bundle whose config.json `edit` may change.
fn bundle_with(dir: &std::path::Path, args: &[&str], id: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir");
    let st = Command::new("tar").arg("-C").arg(&rootfs).arg("-xf").arg(common::busybox_tar()).status().expect("tar");
    assert!(st.success());
    let caps = ["CAP_CHOWN", "CAP_KILL", "CAP_SETUID", "CAP_SETGID"];
    let mut cfg = serde_json::json!({
        "ociVersion": "1.0.2",
        "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "args": args, "env": ["PATH=/bin"], "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
        "root": {"path": "rootfs"},
        "hostname": "rt",
        "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}],
            "cgroupsPath": format!("/berth-runtime-test/{id}")},
    });
    edit(&mut cfg);
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&cfg).expect("json")).expect("write");
}

fn rt(root: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BERTH).arg("runtime").arg("--root").arg(root).args(args).output().expect("berth runtime")
}

#[test]
fn root_runtime_runs_a_bundle_like_runc() {
    if !can_run() {
        return;
    }
    let d = tempfile::Builder::new().prefix("bert").tempdir_in("/tmp").expect("tempdir");
    let state = d.path().join("state");
    let b1 = d.path().join("b1");
    let id1 = format!("rt-run-{}", std::process::id());
    bundle(&b1, &["sh", "-c", "echo hello from $(hostname); exit 3"], &id1);
    let o = rt(&state, &["run", "-b", b1.to_str().expect("path"), &id1]);
    assert_eq!(stdout(&o), "hello from rt\n", "{}", stderr(&o));
    assert_eq!(o.status.code(), Some(3));

    let b2 = d.path().join("b2");
    let id2 = format!("rt-life-{}", std::process::id());
    bundle(&b2, &["sleep", "30"], &id2);
    let pidfile = d.path().join("pid");
    // The container's process keeps the stdio it inherits, as with runc: do not wait on pipes.
    let st = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(&state)
        .args(["create", "-b", b2.to_str().expect("path"), "--pid-file", pidfile.to_str().expect("path"), &id2])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("create");
    assert!(st.success());
    let state_of = |id: &str| -> serde_json::Value {
        let o = rt(&state, &["state", id]);
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    };
    assert_eq!(state_of(&id2)["status"], "created");
    let pid: i64 = std::fs::read_to_string(&pidfile).expect("pid file").trim().parse().expect("pid");
    assert_eq!(state_of(&id2)["pid"], pid);
    assert!(rt(&state, &["start", &id2]).status.success());
    assert_eq!(state_of(&id2)["status"], "running");
    let o = rt(&state, &["exec", &id2, "sh", "-c", "echo in $(hostname)"]);
    assert_eq!(stdout(&o), "in rt\n", "{}", stderr(&o));
    let o = rt(&state, &["ps", "--format", "json", &id2]);
    assert!(stdout(&o).contains(&pid.to_string()), "{}", stdout(&o));
    assert!(stdout(&rt(&state, &["list", "-q"])).contains(&id2));
    assert!(rt(&state, &["kill", &id2, "KILL"]).status.success());
    for _ in 0..100 {
        if state_of(&id2)["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(state_of(&id2)["status"], "stopped");
    assert!(rt(&state, &["delete", &id2]).status.success());
    let o = rt(&state, &["state", &id2]);
    assert!(!o.status.success());
    let o = rt(&state, &["features"]);
    let f: serde_json::Value = serde_json::from_slice(&o.stdout).expect("features json");
    assert_eq!(f["linux"]["cgroup"]["v1"], true);
    for sub in ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"] {
        let p = std::path::Path::new("/sys/fs/cgroup").join(sub).join("berth-runtime-test");
        let _ = std::fs::remove_dir(&p);
        assert!(!p.join(&id1).exists() && !p.join(&id2).exists(), "cgroup left in {sub}");
    }
}

/// Found by runtime-tools' linux_cgroups_memory: libcontainer dropped `disableOOMKiller`. And
/// its errors were bare categories ("oci spec error") that did not name the bad value.
#[test]
fn root_runtime_disables_the_oom_killer_v1_and_names_bad_spec_values() {
    if !can_run() {
        return;
    }
    let d = tempfile::Builder::new().prefix("bert").tempdir_in("/tmp").expect("tempdir");
    let state = d.path().join("state");
    let b = d.path().join("oom");
    let id = format!("rt-oom-{}", std::process::id());
    bundle_with(&b, &["sleep", "30"], &id, |c| {
        c["linux"]["resources"] = serde_json::json!({"memory": {"limit": 64 << 20, "disableOOMKiller": true}});
    });
    let st = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(&state)
        .args(["create", "-b", b.to_str().expect("path"), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("create");
    assert!(st.success());
    let v2 = runtime::cgroups::is_v2();
    let ctl = std::path::Path::new("/sys/fs/cgroup/memory/berth-runtime-test").join(&id).join("memory.oom_control");
    let oom_control = std::fs::read_to_string(&ctl).unwrap_or_default();
    let _ = rt(&state, &["delete", "--force", &id]);
    if !v2 {
        assert!(oom_control.contains("oom_kill_disable 1"), "{}: {oom_control}", ctl.display());
    }

    let b = d.path().join("badcap");
    let id = format!("rt-badcap-{}", std::process::id());
    bundle_with(&b, &["true"], &id, |c| {
        c["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_CHOWN", "CAP_TEST"]);
    });
    let o = rt(&state, &["create", "-b", b.to_str().expect("path"), &id]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("CAP_TEST"), "{}", stderr(&o));
    assert!(!rt(&state, &["state", &id]).status.success(), "a failed create left state behind");

    // Was a bare "io error: No such file or directory".
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.starts_with('Y'));
    if !apparmor {
        let b = d.path().join("aa");
        let id = format!("rt-aa-{}", std::process::id());
        bundle_with(&b, &["true"], &id, |c| c["process"]["apparmorProfile"] = "acme".into());
        let o = rt(&state, &["create", "-b", b.to_str().expect("path"), &id]);
        assert!(!o.status.success());
        assert!(stderr(&o).contains("apparmor profile `acme`"), "{}", stderr(&o));
        assert!(!rt(&state, &["state", &id]).status.success(), "a failed create left state behind");
    }
    for sub in ["memory", "pids", "cpu"] {
        let p = std::path::Path::new("/sys/fs/cgroup").join(sub).join("berth-runtime-test");
        let _ = std::fs::remove_dir(&p);
    }
}

/// libcontainer 0.7 runs an exec'd process without the bundle's seccomp filter; berth loads it
/// itself (and gives back the CAP_SYS_ADMIN it holds for that).
#[test]
fn root_runtime_exec_keeps_the_bundles_seccomp_filter() {
    if !can_run() {
        return;
    }
    let d = tempfile::Builder::new().prefix("bert").tempdir_in("/tmp").expect("tempdir");
    let state = d.path().join("state");
    let b = d.path().join("b");
    let id = format!("rt-sc-{}", std::process::id());
    bundle_with(&b, &["sleep", "30"], &id, |cfg| {
        cfg["linux"]["seccomp"] = serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        });
    });
    let st = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(&state)
        .args(["run", "-d", "-b", b.to_str().expect("path"), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run");
    assert!(st.success());
    let o = rt(
        &state,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "grep -E '^(Seccomp|CapEff):' /proc/self/status; mkdir /x 2>/dev/null || echo refused",
        ],
    );
    assert_eq!(stdout(&o), "CapEff:\t00000000000000e1\nSeccomp:\t2\nrefused\n", "{}", stderr(&o));
    assert!(rt(&state, &["kill", &id, "KILL"]).status.success());
    for _ in 0..100 {
        if rt(&state, &["delete", &id]).status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for sub in ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"] {
        let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(sub).join("berth-runtime-test"));
    }
}

/// Found by youki's contest: an unknown id was deleted "successfully" and its state error did not
/// say "does not exist"; a running container was deleted without --force and a stopped one
/// killed without a word containing "error" (runc's callers look for both); `exec --cap`,
/// `exec --preserve-fds` and `create --no-pivot` were refused as unknown flags.
#[test]
fn root_runtime_refuses_unknown_ids_and_running_deletes_and_takes_runcs_exec_flags() {
    if !can_run() {
        return;
    }
    let d = tempfile::Builder::new().prefix("bert").tempdir_in("/tmp").expect("tempdir");
    let state = d.path().join("state");
    for args in [&["delete", "nosuch"][..], &["state", "nosuch"], &["kill", "nosuch", "KILL"], &["start", "nosuch"]] {
        let o = rt(&state, args);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr(&o).contains("error: container `nosuch` does not exist"), "{args:?}: {}", stderr(&o));
    }
    assert!(rt(&state, &["delete", "--force", "nosuch"]).status.success());

    let b = d.path().join("b");
    let id = format!("rt-flags-{}", std::process::id());
    bundle(&b, &["sleep", "30"], &id);
    let st = Command::new(BERTH)
        .arg("runtime")
        .arg("--root")
        .arg(&state)
        .args(["run", "-d", "--no-pivot", "-b", b.to_str().expect("path"), &id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run");
    assert!(st.success());
    let o = rt(&state, &["delete", &id]);
    assert!(!o.status.success() && stderr(&o).contains("error"), "{}", stderr(&o));
    let st = |o: std::process::Output| serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap_or_default();
    assert_eq!(st(rt(&state, &["state", &id]))["status"], "running");

    // CAP_SYSLOG (34) joins the bundle's chown/kill/setgid/setuid in three sets, not in the others.
    let o = rt(&state, &["exec", "--cap", "CAP_SYSLOG", &id, "grep", "^Cap", "/proc/self/status"]);
    assert_eq!(
        stdout(&o),
        "CapInh:\t0000000000000000\nCapPrm:\t00000004000000e1\nCapEff:\t00000004000000e1\n\
         CapBnd:\t00000004000000e1\nCapAmb:\t0000000000000000\n",
        "{}",
        stderr(&o)
    );
    let o = rt(&state, &["exec", "--cap", "CAP_NOPE", &id, "true"]);
    assert!(stderr(&o).contains("unknown capability `CAP_NOPE`"), "{}", stderr(&o));
    // fd 3 reaches the process only when asked for.
    let f = d.path().join("fd3");
    std::fs::write(&f, "through fd 3\n").expect("write");
    let exec_fd3 = |extra: &str| {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec \"$0\" runtime --root \"$1\" exec {extra} \"$2\" sh -c 'cat /proc/self/fd/3 2>&1 || true' 3<\"$3\""
            ))
            .arg(BERTH)
            .arg(&state)
            .arg(&id)
            .arg(&f)
            .output()
            .expect("exec")
    };
    assert_eq!(stdout(&exec_fd3("--preserve-fds 1")), "through fd 3\n");
    assert!(!stdout(&exec_fd3("")).contains("through fd 3"));
    // A paused container takes an exec only with --ignore-paused; it runs once resumed.
    assert!(rt(&state, &["pause", &id]).status.success());
    let o = rt(&state, &["exec", &id, "true"]);
    assert!(!o.status.success() && stderr(&o).contains("error"), "{}", stderr(&o));
    let resume = {
        let (state, id) = (state.clone(), id.clone());
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(500));
            rt(&state, &["resume", &id]).status.success()
        })
    };
    let o = rt(&state, &["exec", "--ignore-paused", &id, "echo", "while paused"]);
    assert!(resume.join().expect("resume"));
    assert_eq!(stdout(&o), "while paused\n", "{}", stderr(&o));

    assert!(rt(&state, &["kill", &id, "KILL"]).status.success());
    for _ in 0..100 {
        if st(rt(&state, &["state", &id]))["status"] == "stopped" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let o = rt(&state, &["kill", &id, "KILL"]);
    assert!(!o.status.success() && stderr(&o).contains("error"), "{}", stderr(&o));
    assert!(rt(&state, &["delete", &id]).status.success());
    for sub in ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"] {
        let p = std::path::Path::new("/sys/fs/cgroup").join(sub).join("berth-runtime-test");
        assert!(!p.join(&id).exists(), "cgroup left in {sub}");
        let _ = std::fs::remove_dir(&p);
    }
}
