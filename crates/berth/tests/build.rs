//! The builder end to end: a corpus of Dockerfiles (tests/build/<case>/: Dockerfile, its
//! context, `args` for `berth build`, `expect` the output of running the image), the cache
//! (hits, a changed file rebuilding from its COPY on, a failed build resuming, surviving a
//! daemon restart, prune), errors, commit and diff, and the real docker CLI's legacy builder.

mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, can_run, eventually, stderr, stdout};

fn corpus(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/build").join(case)
}

fn words(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn build(d: &Daemon, ctx: &Path, extra: &[&str]) -> std::process::Output {
    let ctx = ctx.display().to_string();
    let mut args = vec!["build"];
    args.extend_from_slice(extra);
    args.push(&ctx);
    d.berth(&args)
}

fn run_out(d: &Daemon, image: &str) -> String {
    let o = d.berth(&["run", "--rm", image]);
    assert!(o.status.success(), "run {image}: {}", stderr(&o));
    words(&stdout(&o))
}

#[test]
fn root_corpus_builds_and_runs() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    for case in ["basic", "multistage", "heredoc", "ignore", "addtar", "onbuild"] {
        let dir = corpus(case);
        let args: Vec<String> = std::fs::read_to_string(dir.join("args"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect();
        let tag = format!("corpus-{case}:1");
        let mut extra: Vec<&str> = vec!["-t", &tag];
        extra.extend(args.iter().map(String::as_str));
        let o = build(&d, &dir, &extra);
        assert!(o.status.success(), "build {case}: {}\n{}\n{}", stdout(&o), stderr(&o), d.log());
        assert!(stdout(&o).contains(&format!("Successfully tagged {tag}")), "{case}: {}", stdout(&o));
        let want = words(&std::fs::read_to_string(dir.join("expect")).expect("expect"));
        assert_eq!(run_out(&d, &tag), want, "case {case}");
        if case == "multistage" {
            // Stages the target does not need never ran (one of them fails).
            assert!(!stdout(&o).contains("exit 1"), "{}", stdout(&o));
            assert!(!stdout(&o).contains("exit 9"), "{}", stdout(&o));
        }
    }
    // The config Docker records.
    let v = d.inspect("corpus-basic:1");
    let c = &v["Config"];
    assert_eq!(c["WorkingDir"], "/app");
    assert_eq!(c["User"], "1:2");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/app/greet.sh"]));
    assert_eq!(c["Cmd"], serde_json::json!(["arg1"]));
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Labels"]["org.test.kind"], "basic");
    assert_eq!(c["Labels"]["quoted key"], "v 1");
    assert!(c["ExposedPorts"].get("8080/tcp").is_some() && c["ExposedPorts"].get("53/udp").is_some(), "{c}");
    assert!(c["Volumes"].get("/data").is_some());
    assert_eq!(c["Healthcheck"]["Test"], serde_json::json!(["CMD-SHELL", "true"]));
    assert_eq!(c["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(c["Healthcheck"]["Retries"], 2);
    assert!(c["Env"].as_array().expect("env").iter().any(|e| e == "OTHER=two words"));
    // The RUN removed /tmp: a whiteout in the layer, so it is gone in the image.
    let o = d.berth(&["run", "--rm", "--entrypoint", "ls", "corpus-basic:1", "/"]);
    assert!(!stdout(&o).split_whitespace().any(|w| w == "tmp"), "{}", stdout(&o));
    // History: one entry per instruction, sizes, CREATED BY.
    let o = d.berth(&["history", "--no-trunc", "corpus-basic:1"]);
    let h = stdout(&o);
    assert!(h.contains("/bin/sh -c #(nop)  CMD [\"arg1\"]"), "{h}");
    assert!(h.contains("|1 WHO=berth /bin/sh -c chmod +x greet.sh"), "{h}");
    assert!(h.contains("COPY file:"), "{h}");
    assert!(h.contains("WORKDIR /app"), "{h}");
    // Intermediate images are hidden from `images` but there with -a.
    let plain = stdout(&d.berth(&["images", "-q"])).lines().count();
    let all = stdout(&d.berth(&["images", "-aq"])).lines().count();
    assert!(all > plain, "{plain} vs {all}");
    assert!(d.mounts().is_empty(), "mounts left: {:?}", d.mounts());
}

#[test]
fn root_cache_hits_misses_resume_and_restart() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let ctx = tmp.path().join("ctx");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    std::fs::write(ctx.join("a.txt"), "one").expect("write");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\nCMD cat /copy\n",
    )
    .expect("write");
    let o = build(&d, &ctx, &["-t", "cached:1"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(!stdout(&o).contains("Using cache"));
    // Everything cached.
    let o = build(&d, &ctx, &["-t", "cached:1"]);
    assert_eq!(stdout(&o).matches("Using cache").count(), 4, "{}", stdout(&o));
    assert!(!stdout(&o).contains("Running in"));
    // mtime alone changes nothing.
    std::fs::write(ctx.join("a.txt"), "one").expect("touch");
    let o = build(&d, &ctx, &["-t", "cached:1"]);
    assert_eq!(stdout(&o).matches("Using cache").count(), 4, "{}", stdout(&o));
    // A changed file: the RUN before it is cached, the COPY and what follows are not.
    std::fs::write(ctx.join("a.txt"), "two").expect("write");
    let o = build(&d, &ctx, &["-t", "cached:1"]);
    let out = stdout(&o);
    assert_eq!(out.matches("Using cache").count(), 1, "{out}");
    assert_eq!(out.matches("Running in").count(), 1, "{out}");
    assert_eq!(run_out(&d, "cached:1"), "two");
    // A failing step: the error names the command and its code, no image is tagged, the
    // daemon stays up; the next build resumes from the cached steps.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN echo x > /x && exit 3\nCMD cat /x\n",
    )
    .expect("write");
    let o = build(&d, &ctx, &["-t", "broken:1"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("The command '/bin/sh -c echo x > /x && exit 3' returned a non-zero code: 3"),
        "{}",
        stderr(&o)
    );
    assert!(
        !d.berth(&["image", "inspect", "broken:1"]).status.success()
            || !d.berth(&["inspect", "broken:1"]).status.success()
    );
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:latest\nRUN echo first > /first\nCOPY a.txt /a.txt\nRUN echo x > /x\nCMD cat /x\n",
    )
    .expect("write");
    let o = build(&d, &ctx, &["-t", "fixed:1"]);
    assert_eq!(stdout(&o).matches("Using cache").count(), 2, "{}", stdout(&o));
    // The cache survives a daemon restart.
    d.terminate();
    d.spawn();
    let o = build(&d, &ctx, &["-t", "fixed:1"]);
    assert_eq!(stdout(&o).matches("Using cache").count(), 4, "{}", stdout(&o));
    // --no-cache runs everything.
    let o = build(&d, &ctx, &["--no-cache", "-t", "fixed:2"]);
    assert!(!stdout(&o).contains("Using cache"), "{}", stdout(&o));
    // --cache-from: with the local cache pruned, an image's history serves as cache.
    let o = d.berth(&["builder", "prune", "-f"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Total reclaimed space"), "{}", stdout(&o));
    let o = build(&d, &ctx, &["-t", "fixed:3"]);
    assert!(!stdout(&o).contains("Using cache"), "after prune: {}", stdout(&o));
    let o = build(&d, &ctx, &["--cache-from", "fixed:3", "-t", "fixed:4"]);
    assert!(stdout(&o).contains("Using cache"), "{}", stdout(&o));
    assert_eq!(run_out(&d, "fixed:4"), "x");
}

#[test]
fn root_errors_before_anything_runs() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &str)] = &[
        ("FROM busybox:latest\nRUN touch /x\nFOO bar\n", "line 3 of Dockerfile: unknown instruction: FOO"),
        ("FROM busybox:latest\nCOPY --bogus=1 a b\n", "line 2 of Dockerfile: unknown flag: --bogus"),
        ("FROM busybox:latest\nENV A=\"open\n", "line 2 of Dockerfile"),
        ("FROM busybox:latest\nRUN <<EOF\necho\n", "unterminated heredoc"),
        ("FROM busybox:latest\nCOPY missing.txt /x\n", "missing.txt"),
        // A missing base is pulled: from a loopback port nothing listens on (no other traffic).
        ("FROM 127.0.0.1:1/nosuchimage:1\n", "127.0.0.1:1"),
    ];
    for (i, (df, want)) in cases.iter().enumerate() {
        let ctx = tmp.path().join(format!("c{i}"));
        std::fs::create_dir_all(&ctx).expect("mkdir");
        std::fs::write(ctx.join("Dockerfile"), df).expect("write");
        let tag = format!("err{i}:1");
        let o = build(&d, &ctx, &["-t", &tag]);
        assert!(!o.status.success(), "{df}");
        assert!(stderr(&o).contains(want), "{df}: want `{want}` in {}", stderr(&o));
        // Nothing ran for a syntax error and no image is tagged.
        assert!(!stdout(&o).contains("Running in"), "{}", stdout(&o));
        assert!(!d.berth(&["inspect", &tag]).status.success());
    }
    assert!(d.http("GET", "/_ping", None).expect("ping").0 == 200);
}

#[test]
fn root_commit_and_diff() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "c1",
        "busybox:latest",
        "sh",
        "-c",
        "echo hi > /new.txt; rm /bin/vi; mkdir -p /etc/x; sleep 60",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut out = String::new();
    for _ in 0..100 {
        out = stdout(&d.berth(&["diff", "c1"]));
        if out.contains("/new.txt") && out.contains("/etc/x") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.contains(&"A /new.txt"), "{out}");
    assert!(lines.contains(&"D /bin/vi"), "{out}");
    assert!(lines.contains(&"C /bin"), "{out}");
    assert!(lines.contains(&"A /etc/x"), "{out}");
    assert!(!out.contains("/etc/hosts") && !out.contains("resolv.conf"), "mount points are no change: {out}");
    let o = d.berth(&["commit", "-m", "snap", "-a", "me", "-c", "CMD [\"cat\", \"/new.txt\"]", "c1", "snap:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().starts_with("sha256:"), "{}", stdout(&o));
    // Still running (paused and resumed).
    assert_eq!(d.inspect("c1")["State"]["Running"], true);
    assert_eq!(run_out(&d, "snap:1"), "hi");
    let o = d.berth(&["run", "--rm", "snap:1", "ls", "/bin/vi"]);
    assert!(!o.status.success(), "the deletion is in the layer");
    let v = d.inspect("snap:1");
    assert_eq!(v["Author"], "me");
    assert_eq!(v["Comment"], "snap");
    let h = stdout(&d.berth(&["history", "snap:1"]));
    assert!(h.contains("snap"), "{h}");
    // Docker's events: container commit, image tag.
    let until = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 1;
    let (status, body) = d.http("GET", &format!("/events?since=0&until={until}"), None).expect("events");
    assert_eq!(status, 200);
    assert!(body.contains("\"Action\":\"commit\""), "{body}");
    assert!(body.contains("snap:1"), "{body}");
}

#[test]
fn root_docker_cli_legacy_builder() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let Some(_) = common::docker_cli() else { return };
    let dir = corpus("basic");
    let ctx = dir.display().to_string();
    let o = std::process::Command::new("docker")
        .args(["build", "--build-arg", "WHO=berth", "-t", "viadocker:1", &ctx])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .expect("docker build");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Step 1/"), "{}", stdout(&o));
    assert!(stdout(&o).contains("Successfully tagged viadocker:1"), "{}", stdout(&o));
    let want = words(&std::fs::read_to_string(dir.join("expect")).expect("expect"));
    assert_eq!(run_out(&d, "viadocker:1"), want);
    // -q prints the id only; errors come back as docker prints them.
    let o = std::process::Command::new("docker")
        .args(["build", "-q", "--build-arg", "WHO=berth", &ctx])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .expect("docker build -q");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).trim().starts_with("sha256:"), "{}", stdout(&o));
    let tmp = tempfile::tempdir().expect("tempdir");
    std::fs::write(tmp.path().join("Dockerfile"), "FROM busybox:latest\nRUN exit 7\n").expect("write");
    let o = std::process::Command::new("docker")
        .args(["build", &tmp.path().display().to_string()])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .output()
        .expect("docker build");
    assert!(!o.status.success());
    assert!(stderr(&o).contains("returned a non-zero code: 7"), "{}", stderr(&o));
    // docker commit and diff through the API.
    let o = d.docker(&["run", "--name", "dc", "busybox:latest", "touch", "/made"]).expect("docker");
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.docker(&["diff", "dc"]).expect("docker");
    assert!(stdout(&o).contains("A /made"), "{}", stdout(&o));
    let o = d.docker(&["commit", "dc", "dcommit:1"]).expect("docker");
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn root_docker_py_images_build() {
    if !can_run() {
        return;
    }
    let ok = std::process::Command::new("python3").args(["-c", "import docker"]).output();
    if !ok.is_ok_and(|o| o.status.success()) {
        eprintln!("skipped: docker-py is not installed");
        return;
    }
    let d = Daemon::start();
    let script = r#"
import sys, docker
c = docker.DockerClient(base_url=sys.argv[1])
img, logs = c.images.build(path=sys.argv[2], tag="viapy:1", buildargs={"WHO": "berth"})
print("ID", img.id)
print("TAGS", img.tags)
try:
    c.images.build(fileobj=__import__("io").BytesIO(b"FROM busybox:latest\nRUN exit 5\n"))
except docker.errors.BuildError as e:
    print("ERR", e.msg)
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script, &d.host(), &corpus("basic").display().to_string()])
        .output()
        .expect("python3");
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("ID sha256:"), "{out}");
    assert!(out.contains("viapy:1"), "{out}");
    assert!(out.contains("ERR The command '/bin/sh -c exit 5' returned a non-zero code: 5"), "{out}");
    let want = words(&std::fs::read_to_string(corpus("basic").join("expect")).expect("expect"));
    assert_eq!(run_out(&d, "viapy:1"), want);
}

/// `berth registry serve` on a free loopback port, htpasswd (alice / s3cret).
struct Registry {
    child: std::process::Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// With `tls` (cert, key): TLS and no authentication; else plain HTTP with htpasswd.
    fn start(tls: Option<(&Path, &Path)>) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let pw = dir.path().join("htpasswd");
        std::fs::write(&pw, format!("alice:{}\n", bcrypt::hash("s3cret", 4).expect("bcrypt"))).expect("htpasswd");
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let addr = format!("127.0.0.1:{port}");
        let mut cmd = std::process::Command::new(common::BERTH);
        cmd.args(["registry", "serve", "--addr", &addr]);
        match tls {
            Some((cert, key)) => cmd.arg("--tls-cert").arg(cert).arg("--tls-key").arg(key),
            None => cmd.arg("--htpasswd").arg(&pw),
        };
        let child = cmd
            .arg("--root")
            .arg(dir.path().join("root"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn registry");
        let t = std::time::Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(t.elapsed() < std::time::Duration::from_secs(10), "registry did not come up");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Registry { child, addr, _dir: dir }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}\n{}", stdout(o), stderr(o));
    stdout(o)
}

fn docker_build(d: &Daemon, args: &[&str]) -> std::process::Output {
    std::process::Command::new("docker")
        .arg("build")
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_BUILDKIT", "0")
        .env("DOCKER_CONFIG", d.dir.path().join("docker-config"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("docker build")
}

#[test]
fn root_pulls_missing_base_images_with_credentials() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let reg = Registry::start(None);
    let base = format!("{}/alice/base:1", reg.addr);
    ok(&d.berth(&["login", "-u", "alice", "-p", "s3cret", &reg.addr]), "login");
    ok(&d.berth(&["tag", "busybox:latest", &base]), "tag");
    ok(&d.berth(&["push", &base]), "push");
    ok(&d.berth(&["rmi", &base]), "rmi");
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        format!("FROM {base}\nRUN echo pulled > /p\nCMD [\"cat\", \"/p\"]\n"),
    )
    .expect("write");
    // Missing: pulled with the CLI's stored credentials (X-Registry-Config), progress shown.
    let out = ok(&build(&d, ctx.path(), &["-t", "pulled:1"]), "build from a missing base");
    assert!(out.contains("Pulling from alice/base"), "{out}");
    assert_eq!(run_out(&d, "pulled:1"), "pulled");
    ok(&d.berth(&["inspect", &base]), "the base is now here");
    // Present: not pulled again, unless --pull.
    let out = ok(&build(&d, ctx.path(), &["-t", "pulled:1"]), "build again");
    assert!(!out.contains("Pulling from"), "{out}");
    let out = ok(&build(&d, ctx.path(), &["--pull", "-t", "pulled:1"]), "build --pull");
    assert!(out.contains("Pulling from alice/base"), "{out}");
    // Without credentials: the registry's refusal, nothing tagged, the daemon up.
    ok(&d.berth(&["logout", &reg.addr]), "logout");
    ok(&d.berth(&["rmi", &base]), "rmi");
    let o = build(&d, ctx.path(), &["-t", "denied:1"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    assert!(stderr(&o).contains("pull access denied") || stderr(&o).contains("401"), "{}", stderr(&o));
    assert!(!d.berth(&["image", "inspect", "denied:1"]).status.success());
    // The docker CLI's legacy builder sends its own credentials the same way.
    if common::docker_cli().is_none() {
        return;
    }
    let o = d.docker_stdin(&["login", "-u", "alice", "--password-stdin", &reg.addr], b"s3cret\n").expect("docker");
    ok(&o, "docker login");
    let o = docker_build(&d, &["-t", "viadocker-pulled:1", &ctx.path().display().to_string()]);
    let out = ok(&o, "docker build from a missing base");
    assert!(out.contains("Pulling from alice/base"), "{out}");
    assert_eq!(run_out(&d, "viadocker-pulled:1"), "pulled");
}

#[test]
fn root_run_steps_on_the_default_bridge_and_stdin_contexts() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let (code, body) = d.http("GET", "/networks/bridge", None).expect("inspect bridge");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let subnet = v["IPAM"]["Config"][0]["Subnet"].as_str().expect("subnet").to_owned();
    let net: std::net::Ipv4Addr = subnet.split('/').next().expect("addr").parse().expect("ipv4");
    let prefix: u32 = subnet.split('/').nth(1).expect("prefix").parse().expect("prefix");
    // The veths on this daemon's own bridge.
    let ports = || {
        let o = std::process::Command::new("ip").args(["-o", "link", "show", "master", &d.bridge()]).output();
        o.map(|o| stdout(&o).lines().count()).unwrap_or(0)
    };
    let links_before = ports();
    // A Dockerfile on stdin (no context): RUN sees eth0 with an address of the bridge.
    let df = "FROM busybox:latest\nRUN ip -4 -o addr show eth0 | awk '{print $4}' > /addr\nCMD [\"cat\", \"/addr\"]\n";
    let o = d.berth_stdin(&["build", "-t", "bridged:1", "-"], df.as_bytes());
    ok(&o, "build - < Dockerfile");
    let addr = run_out(&d, "bridged:1");
    let ip: std::net::Ipv4Addr = addr.split('/').next().unwrap_or_default().parse().expect("an address on eth0");
    let mask = u32::MAX << (32 - prefix);
    assert_eq!(u32::from(ip) & mask, u32::from(net) & mask, "{addr} not in {subnet}");
    // FROM an image id: local, never pulled.
    let id = ok(&d.berth(&["inspect", "-f", "{{.Id}}", "busybox:latest"]), "inspect").trim().to_owned();
    let df = format!("FROM {id}\nRUN true\n");
    ok(&d.berth_stdin(&["build", "-"], df.as_bytes()), "FROM <image id>");
    // --network none: no eth0.
    let df = "FROM busybox:latest\nRUN ! ip link show eth0\n";
    ok(&d.berth_stdin(&["build", "--network", "none", "-"], df.as_bytes()), "build --network none");
    // The step's endpoint and veth are gone.
    let (_, body) = d.http("GET", "/networks/bridge", None).expect("inspect bridge");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(v["Containers"].as_object().is_none_or(|m| m.is_empty()), "{body}");
    assert!(eventually(|| ports() == links_before), "a veth was left behind: {} then {}", links_before, ports());
    // A tar context on stdin, and -f - with a directory context.
    let ctx = tempfile::tempdir().expect("tempdir");
    std::fs::write(ctx.path().join("hello.txt"), "from-tar\n").expect("write");
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM busybox:latest\nCOPY hello.txt /\nCMD [\"cat\", \"/hello.txt\"]\n",
    )
    .expect("write");
    let tar =
        std::process::Command::new("tar").arg("-C").arg(ctx.path()).args(["-cf", "-", "."]).output().expect("tar");
    ok(&d.berth_stdin(&["build", "-t", "fromtar:1", "-"], &tar.stdout), "build - < ctx.tar");
    assert_eq!(run_out(&d, "fromtar:1"), "from-tar");
    let df = "FROM busybox:latest\nCOPY hello.txt /other.txt\nCMD [\"cat\", \"/other.txt\"]\n";
    let c = ctx.path().display().to_string();
    ok(&d.berth_stdin(&["build", "-t", "dashf:1", "-f", "-", &c], df.as_bytes()), "build -f - ctx");
    assert_eq!(run_out(&d, "dashf:1"), "from-tar");
    let o = d.berth_stdin(&["build", "-f", "-", "-"], df.as_bytes());
    assert!(!o.status.success());
    // Context directories are reused between builds: nothing of the last context remains,
    // and a path may change type.
    let ctx2 = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(ctx2.path().join("hello.txt")).expect("mkdir");
    std::fs::write(ctx2.path().join("hello.txt/inner"), "x").expect("write");
    let df = "FROM busybox:latest\nCOPY . /c\nRUN test -f /c/hello.txt/inner && test ! -e /c/other.txt && ls -A /c | wc -l | grep -qx 3\n";
    std::fs::write(ctx2.path().join("Dockerfile"), df).expect("write");
    std::fs::write(ctx2.path().join(".dockerignore"), "nothing-here\n").expect("write");
    ok(&build(&d, ctx2.path(), &["--no-cache"]), "build over a reused context directory");
}

#[test]
fn root_add_https_with_checksum() {
    if !can_run() {
        return;
    }
    let sh = |c: &str| std::process::Command::new("sh").args(["-c", c]).output().expect("sh");
    if sh("command -v openssl").stdout.is_empty() {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let pki = tempfile::tempdir().expect("tempdir");
    let o = sh(&format!(
        "cd {} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=berth-test-ca 2>&1 && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>&1 && \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext && \
         openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext 2>&1",
        pki.path().display()
    ));
    assert!(o.status.success(), "openssl: {}", stdout(&o));
    let reg = Registry::start(Some((&pki.path().join("srv.crt"), &pki.path().join("srv.key"))));
    let mut d = Daemon::start();
    // The daemon trusts the registry's CA through certs.d, for pulls and for ADD alike.
    let certs = d.dir.path().join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&certs).expect("certs.d");
    std::fs::copy(pki.path().join("ca.crt"), certs.join("ca.crt")).expect("ca.crt");
    d.terminate();
    d.spawn();
    let r = format!("{}/tls/bb:1", reg.addr);
    ok(&d.berth(&["tag", "busybox:latest", &r]), "tag");
    ok(&d.berth(&["push", &r]), "push over TLS");
    // The image's config blob, served over https, is what ADD fetches.
    let id = ok(&d.berth(&["inspect", "-f", "{{.Id}}", &r]), "inspect").trim().to_owned();
    let url = format!("https://{}/v2/tls/bb/blobs/{id}", reg.addr);
    let ctx = tempfile::tempdir().expect("tempdir");
    let df = format!("FROM busybox:latest\nADD --checksum={id} {url} /cfg/\nCMD [\"sha256sum\", \"/cfg/{id}\"]\n");
    std::fs::write(ctx.path().join("Dockerfile"), df).expect("write");
    ok(&build(&d, ctx.path(), &["-t", "https-add:1"]), "ADD https://");
    let sum = run_out(&d, "https-add:1");
    assert!(sum.starts_with(id.trim_start_matches("sha256:")), "{sum} vs {id}");
    let bad = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    std::fs::write(ctx.path().join("Dockerfile"), format!("FROM busybox:latest\nADD --checksum={bad} {url} /x\n"))
        .expect("write");
    let o = build(&d, ctx.path(), &[]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("checksum mismatch"), "{}", stderr(&o));
}
