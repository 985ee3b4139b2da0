//! The builder end to end: a corpus of Dockerfiles (tests/build/<case>/: Dockerfile, its
//! context, `args` for `berth build`, `expect` the output of running the image), the cache
//! (hits, a changed file rebuilding from its COPY on, a failed build resuming, surviving a
//! daemon restart, prune), errors, commit and diff, and the real docker CLI's legacy builder.

mod common;

use std::path::{Path, PathBuf};

use common::{Daemon, can_run, stderr, stdout};

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
        ("FROM nosuchimage:1\n", "No such image: nosuchimage:1"),
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
