//! Pull, push and login against real registries on loopback: `berth registry serve` (open,
//! htpasswd, tokens, TLS), Debian's `docker-registry` (Distribution 2.8) when installed, and a
//! small test server that serves a corrupt or a slow blob. Counts come from the registry's side
//! (its /metrics). The real docker CLI drives the berth daemon for login/push/pull/run.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{BERTH, Daemon, can_run, stderr, stdout};
use sha2::Digest as _;

fn sha(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// One HTTP/1.1 request with `Connection: close`: (status, body).
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    s.write_all(body).expect("write body");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let head_end = resp.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(resp.len());
    let head = String::from_utf8_lossy(&resp[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, resp[head_end..].to_vec())
}

/// `berth registry serve` on a free loopback port.
struct Registry {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    fn start(extra: &[&str]) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(BERTH)
            .args(["registry", "serve", "--addr", &addr, "--root"])
            .arg(dir.path().join("root"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("log")).expect("log"))
            .spawn()
            .expect("spawn registry");
        let r = Registry { child, addr, _dir: dir };
        r.wait();
        r
    }

    fn wait(&self) {
        let t = Instant::now();
        while TcpStream::connect(&self.addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "registry did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A counter of /metrics, summed over the labels that contain every one of `labels`.
    fn metric(&self, name: &str, labels: &[&str]) -> u64 {
        let (_, body) = http(&self.addr, "GET", "/metrics", &[], b"");
        String::from_utf8_lossy(&body)
            .lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum::<f64>() as u64
    }

    /// Completed blob uploads.
    fn uploads(&self) -> u64 {
        self.metric("berth_registry_requests_total", &["method=\"PUT\"", "route=\"upload\"", "status=\"201\""])
    }

    fn blob_gets(&self) -> u64 {
        self.metric("berth_registry_requests_total", &["method=\"GET\"", "route=\"blob\"", "status=\"200\""])
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Copy)]
enum Comp {
    None,
    Gzip,
    Zstd,
}

/// An image made here: blobs, config, manifest.
struct Img {
    id: String,
    config: Vec<u8>,
    manifest: Vec<u8>,
    manifest_type: &'static str,
    layers: Vec<Vec<u8>>,
}

fn tar_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, name, &data[..]).expect("append");
    }
    b.into_inner().expect("tar")
}

fn compress(tar: &[u8], c: Comp) -> (Vec<u8>, &'static str) {
    match c {
        Comp::None => (tar.to_vec(), "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).expect("gzip");
            (e.finish().expect("gzip"), "application/vnd.oci.image.layer.v1.tar+gzip")
        }
        Comp::Zstd => (zstd::encode_all(tar, 1).expect("zstd"), "application/vnd.oci.image.layer.v1.tar+zstd"),
    }
}

/// An OCI image (or Docker schema 2 with `docker`) of the given layer tars.
fn image(tars: &[(Vec<u8>, Comp)], docker: bool) -> Img {
    let mut layers = Vec::new();
    let mut descs = Vec::new();
    let mut diffs = Vec::new();
    for (t, c) in tars {
        let (blob, mt) = compress(t, *c);
        let mt = if docker { "application/vnd.docker.image.rootfs.diff.tar.gzip" } else { mt };
        diffs.push(sha(t));
        descs.push(serde_json::json!({"mediaType": mt, "digest": sha(&blob), "size": blob.len()}));
        layers.push(blob);
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diffs},
        "history": diffs.iter().map(|_| serde_json::json!({"created_by": "test"})).collect::<Vec<_>>(),
    }))
    .expect("config");
    let (mt, ct) = if docker {
        ("application/vnd.docker.distribution.manifest.v2+json", "application/vnd.docker.container.image.v1+json")
    } else {
        ("application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.config.v1+json")
    };
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": mt,
        "config": {"mediaType": ct, "digest": sha(&config), "size": config.len()},
        "layers": descs,
    }))
    .expect("manifest");
    Img { id: sha(&config), config, manifest, manifest_type: mt, layers }
}

/// Uploads an image straight to a registry (monolithic POST per blob, then the manifest).
fn seed(addr: &str, repo: &str, tag: &str, img: &Img) {
    for b in img.layers.iter().chain([&img.config]) {
        let (st, body) = http(addr, "POST", &format!("/v2/{repo}/blobs/uploads/?digest={}", sha(b)), &[], b);
        assert_eq!(st, 201, "seed blob: {}", String::from_utf8_lossy(&body));
    }
    let (st, body) = http(
        addr,
        "PUT",
        &format!("/v2/{repo}/manifests/{tag}"),
        &[("Content-Type", img.manifest_type)],
        &img.manifest,
    );
    assert_eq!(st, 201, "seed manifest: {}", String::from_utf8_lossy(&body));
}

fn busybox_layer() -> Vec<u8> {
    std::fs::read(common::busybox_tar()).expect("busybox tar")
}

/// `berth` with a client config directory of its own.
fn berth(d: &Daemon, args: &[&str]) -> Output {
    Command::new(BERTH)
        .args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.dir.path().join("berth-config"))
        .stdin(Stdio::null())
        .output()
        .expect("run berth")
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what}: {}{}", stdout(o), stderr(o));
    stdout(o)
}

fn image_id(d: &Daemon, name: &str) -> String {
    d.inspect(name)["Id"].as_str().unwrap_or_default().to_owned()
}

fn restart_with(d: &mut Daemon, json: &str) {
    d.terminate();
    d.write_config(json);
    d.spawn();
}

/// Nothing half-written: no ingest files, no unfinished snapshots.
fn assert_no_partials(d: &Daemon) {
    let root = d.data_root();
    let ingest: Vec<_> = std::fs::read_dir(root.join("content/ingest")).expect("ingest").flatten().collect();
    assert!(ingest.is_empty(), "ingest left: {ingest:?}");
    let tmp: Vec<_> = std::fs::read_dir(root.join("snapshots"))
        .expect("snapshots")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("tmp-"))
        .collect();
    assert!(tmp.is_empty(), "unfinished snapshots left: {tmp:?}");
}

#[test]
fn root_pull_push_round_trip_with_layer_reuse() {
    if !can_run() {
        return;
    }
    let src = Registry::start(&[]);
    let dst = Registry::start(&[]);
    // Uncompressed, the base layer is the very blob the harness imported as busybox: present
    // before the first pull.
    let base = (busybox_layer(), Comp::None);
    let l2 = (tar_of(&[("etc/two", b"two\n".to_vec())]), Comp::Zstd);
    let l3 = (tar_of(&[("etc/three", b"three\n".to_vec())]), Comp::None);
    let l4 = (tar_of(&[("etc/three", b"four\n".to_vec())]), Comp::Gzip);
    let x = image(&[base.clone(), l2.clone(), l3], false);
    let y = image(&[base, l2, l4], true);
    seed(&src.addr, "seed/x", "1", &x);
    seed(&src.addr, "seed/y", "1", &y);
    let mut d = Daemon::start();

    // Pull: OCI, gzip + zstd + plain layers; the image id is the config's digest.
    let xr = format!("{}/seed/x:1", src.addr);
    let out = ok(&berth(&d, &["pull", &xr]), "pull x");
    assert!(out.contains("Status: Downloaded newer image for"), "{out}");
    assert!(out.trim_end().ends_with(&xr), "{out}");
    assert_eq!(image_id(&d, &xr), x.id);
    assert!(out.contains("Already exists"), "{out}");
    assert_eq!(src.blob_gets(), 3, "2 layers (the base is present) and the config");
    let digests = d.inspect(&xr)["RepoDigests"].clone();
    assert_eq!(digests, serde_json::json!([format!("{}/seed/x@{}", src.addr, sha(&x.manifest))]));
    let o = berth(&d, &["run", "--rm", &xr, "cat", "/etc/two", "/etc/three"]);
    assert_eq!(ok(&o, "run x"), "two\nthree\n");

    // `pull -a`: every tag of the repository; nothing travels twice.
    let (st, _) = http(&src.addr, "PUT", "/v2/seed/x/manifests/2", &[("Content-Type", x.manifest_type)], &x.manifest);
    assert_eq!(st, 201);
    let out = ok(&berth(&d, &["pull", "-a", &format!("{}/seed/x", src.addr)]), "pull -a");
    assert!(out.contains("Image is up to date for") && out.contains("seed/x:2"), "{out}");
    assert_eq!(image_id(&d, &format!("{}/seed/x:2", src.addr)), x.id);
    assert_eq!(src.blob_gets(), 3, "layers and config were present");

    // Docker schema 2 sharing two layers: only the third travels.
    let yr = format!("{}/seed/y:1", src.addr);
    let out = ok(&berth(&d, &["pull", &yr]), "pull y");
    assert_eq!(out.matches("Already exists").count(), 2, "{out}");
    assert_eq!(src.blob_gets(), 5, "one layer and the config");
    let out = ok(&berth(&d, &["pull", &yr]), "pull y again");
    assert!(out.contains("Image is up to date"), "{out}");
    assert_eq!(src.blob_gets(), 5, "nothing fetched again");

    // Push x to another registry: every blob uploaded once; again: none.
    let dx = format!("{}/app/x:1", dst.addr);
    ok(&berth(&d, &["tag", &xr, &dx]), "tag");
    let out = ok(&berth(&d, &["push", &dx]), "push x");
    assert!(out.contains(&format!("1: digest: {} size: {}", sha(&x.manifest), x.manifest.len())), "{out}");
    assert_eq!(dst.uploads(), 4);
    let out = ok(&berth(&d, &["push", &dx]), "push x again");
    assert_eq!(out.matches("Layer already exists").count(), 3, "{out}");
    assert_eq!(dst.uploads(), 4, "nothing uploaded twice");
    // y differs from x only in its top layer: that layer and the config travel, no more.
    let dy = format!("{}/app/x:2", dst.addr);
    ok(&berth(&d, &["tag", &yr, &dy]), "tag");
    let out = ok(&berth(&d, &["push", &dy]), "push y");
    assert_eq!(out.matches("Layer already exists").count(), 2, "{out}");
    assert_eq!(dst.uploads(), 6);
    // Another repository of the same registry: mounted, not uploaded.
    let dz = format!("{}/other/z:1", dst.addr);
    ok(&berth(&d, &["tag", &yr, &dz]), "tag");
    let out = ok(&berth(&d, &["push", &dz]), "push z");
    assert!(out.contains("Mounted from app/x"), "{out}");
    assert_eq!(dst.uploads(), 7, "only the config is uploaded");

    // rmi + pull from where it was pushed: the same image.
    ok(&berth(&d, &["rmi", &xr, &dx]), "rmi");
    ok(&berth(&d, &["pull", &dx]), "pull back");
    assert_eq!(image_id(&d, &dx), x.id);

    // A name the registry lacks: a clear not found; pulls by digest verify the manifest.
    let o = berth(&d, &["pull", &format!("{}/nope:1", src.addr)]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not found"), "{}", stderr(&o));
    let by_digest = format!("{}/seed/x@{}", src.addr, sha(&x.manifest));
    ok(&berth(&d, &["pull", &by_digest]), "pull by digest");

    // A mirror that has the image serves it; one that does not falls back to the origin.
    let gets = dst.blob_gets();
    restart_with(&mut d, &format!(r#"{{"berth-registry-mirrors": {{"{}": ["http://{}"]}}}}"#, src.addr, dst.addr));
    let x2 = format!("{}/seed/x:2", src.addr);
    ok(&berth(&d, &["rmi", &dx, &x2, &yr, &dy, &dz]), "rmi");
    // dst holds app/x:1 (= x); seed/x is not on the mirror, so that name comes from src.
    let before = src.blob_gets();
    ok(&berth(&d, &["pull", &format!("{}/app/x:1", src.addr)]), "pull through the mirror");
    assert!(dst.blob_gets() > gets, "the mirror served the blobs");
    assert_eq!(src.blob_gets(), before, "the origin served nothing");
    ok(&berth(&d, &["pull", &yr]), "pull with fallback to the origin");
    assert!(src.blob_gets() > before);
    assert_no_partials(&d);

    // Docker's image events for pulls and pushes.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 1;
    let (_, events) = d.http("GET", &format!("/events?since=0&until={now}"), None).expect("events");
    assert!(events.contains(&format!(r#""Action":"pull","Actor":{{"ID":"{yr}""#)), "{events}");
    assert!(events.contains(&format!(r#""Action":"push","Actor":{{"ID":"{dz}""#)), "{events}");
}

#[test]
fn root_docker_distribution_round_trip() {
    if !can_run() {
        return;
    }
    if !Path::new("/usr/bin/docker-registry").exists() {
        eprintln!("skipped: /usr/bin/docker-registry (Debian's docker-registry) is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let log = dir.path().join("log");
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn docker-registry");
    // Killed on drop, so a failing assertion does not leave it running.
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _child = Kill(child);
    let t = Instant::now();
    while TcpStream::connect(&addr).is_err() && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let d = Daemon::start();
    let id = image_id(&d, "busybox");
    let r = format!("{addr}/tools/busybox:1");
    ok(&berth(&d, &["tag", "busybox", &r]), "tag");
    let out = ok(&berth(&d, &["push", &r]), "push");
    assert!(out.contains("Pushed"), "{out}");
    let out = ok(&berth(&d, &["push", &r]), "push again");
    assert!(out.contains("Layer already exists"), "{out}");
    ok(&berth(&d, &["rmi", "busybox", &r]), "rmi");
    ok(&berth(&d, &["pull", &r]), "pull");
    assert_eq!(image_id(&d, &r), id, "same image id after the round trip");
    let o = berth(&d, &["run", "--rm", &r, "echo", "ok"]);
    assert_eq!(ok(&o, "run"), "ok\n");
    // Distribution's log: one blob upload per push of new content, none the second time.
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let puts = text
        .lines()
        .filter(|l| l.contains("http.request.method=PUT") && l.contains("uri=\"/v2/tools/busybox/blobs/uploads/"))
        .count();
    assert_eq!(puts, 2, "the layer and the config, once each:\n{text}");
}

fn htpasswd(dir: &Path) -> PathBuf {
    let p = dir.join("htpasswd");
    let h = bcrypt::hash("s3cret", 4).expect("bcrypt");
    std::fs::write(&p, format!("alice:{h}\n")).expect("htpasswd");
    p
}

#[test]
fn root_basic_and_token_auth_and_the_docker_cli() {
    if !can_run() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = htpasswd(dir.path());
    let pw = pw.to_str().expect("path");
    let d = Daemon::start();
    for token in [false, true] {
        let mut args = vec!["--htpasswd", pw];
        if token {
            args.push("--token-auth");
        }
        let reg = Registry::start(&args);
        let r = format!("{}/alice/bb:1", reg.addr);
        ok(&berth(&d, &["tag", "busybox", &r]), "tag");
        let o = berth(&d, &["push", &r]);
        assert!(!o.status.success(), "push without login: {}", stdout(&o));
        let o = berth(&d, &["login", "-u", "alice", "-p", "wrong", &reg.addr]);
        assert!(!o.status.success(), "wrong password accepted");
        assert!(stderr(&o).contains("401") || stderr(&o).contains("nauthorized"), "{}", stderr(&o));
        let o = berth(&d, &["login", "-u", "alice", "-p", "s3cret", &reg.addr]);
        assert!(ok(&o, "login").contains("Login Succeeded"));
        let cfg = std::fs::read_to_string(d.dir.path().join("berth-config/config.json")).expect("config.json");
        assert!(cfg.contains(&reg.addr), "{cfg}");
        ok(&berth(&d, &["push", &r]), "push");
        ok(&berth(&d, &["rmi", &r]), "rmi");
        ok(&berth(&d, &["pull", &r]), "pull");
        if token {
            // Tokens are reused until they expire: a second pull asks for none.
            let tokens = reg.metric("berth_registry_requests_total", &["route=\"token\""]);
            ok(&berth(&d, &["rmi", &r]), "rmi");
            ok(&berth(&d, &["pull", &r]), "pull again");
            assert_eq!(reg.metric("berth_registry_requests_total", &["route=\"token\""]), tokens);
        }
        ok(&berth(&d, &["logout", &reg.addr]), "logout");
        ok(&berth(&d, &["rmi", &r]), "rmi");
        let o = berth(&d, &["pull", &r]);
        assert!(!o.status.success(), "pull after logout");

        // The real docker CLI: login, push, run of a missing image (pull), pull.
        if common::docker_cli().is_none() {
            eprintln!("skipped the docker CLI part: docker is not installed");
            continue;
        }
        let o = d.docker_stdin(&["login", "-u", "alice", "--password-stdin", &reg.addr], b"s3cret\n").expect("docker");
        assert!(ok(&o, "docker login").contains("Login Succeeded"));
        let dr = format!("{}/alice/docker:1", reg.addr);
        ok(&d.docker(&["tag", "busybox", &dr]).expect("docker"), "docker tag");
        let out = ok(&d.docker(&["push", &dr]).expect("docker"), "docker push");
        assert!(out.contains("1: digest: sha256:"), "{out}");
        ok(&d.docker(&["rmi", &dr]).expect("docker"), "docker rmi");
        let o = d.docker(&["run", "--rm", &dr, "echo", "pulled-and-ran"]).expect("docker");
        assert_eq!(ok(&o, "docker run"), "pulled-and-ran\n");
        assert!(stderr(&o).contains(&format!("Unable to find image '{dr}' locally")), "{}", stderr(&o));
        let out = ok(&d.docker(&["pull", &dr]).expect("docker"), "docker pull");
        assert!(out.contains("Image is up to date"), "{out}");
        let o = d.docker_stdin(&["login", "-u", "alice", "--password-stdin", &reg.addr], b"nope\n").expect("docker");
        assert!(!o.status.success(), "docker login with a wrong password: {}{}", stdout(&o), stderr(&o));
        ok(&d.docker(&["rmi", &dr]).expect("docker"), "docker rmi");
    }
}

/// A registry stand-in that serves one image, with a corrupt or a slow layer blob.
struct FakeRegistry {
    addr: String,
    sent: Arc<AtomicU64>,
    slow: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl FakeRegistry {
    fn start(img: Img, corrupt: Option<Vec<u8>>) -> FakeRegistry {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let (sent, slow, stop) =
            (Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (s2, sl2, st2) = (sent.clone(), slow.clone(), stop.clone());
        let img = Arc::new(img);
        l.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            while !st2.load(Ordering::Relaxed) {
                let Ok((mut c, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let _ = c.set_nonblocking(false);
                let (img, corrupt, sent, slow) = (img.clone(), corrupt.clone(), s2.clone(), sl2.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let n = c.read(&mut buf).unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = req.split_whitespace().nth(1).unwrap_or_default().to_owned();
                    let (status, ct, body): (&str, &str, Vec<u8>) = if path == "/v2/" {
                        ("200 OK", "application/json", b"{}".to_vec())
                    } else if path.contains("/manifests/") {
                        ("200 OK", img.manifest_type, img.manifest.clone())
                    } else if path.ends_with(&img.id) {
                        ("200 OK", "application/octet-stream", img.config.clone())
                    } else if path.contains("/blobs/") {
                        let i = img.layers.iter().position(|b| path.ends_with(&sha(b))).unwrap_or(0);
                        let last = i == img.layers.len() - 1;
                        let body = match (&corrupt, last) {
                            (Some(c), true) => c.clone(),
                            _ => img.layers[i].clone(),
                        };
                        ("200 OK", "application/octet-stream", body)
                    } else {
                        (
                            "404 Not Found",
                            "application/json",
                            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}"#.to_vec(),
                        )
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\nDocker-Distribution-API-Version: registry/2.0\r\n\r\n",
                        body.len()
                    );
                    if c.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    for chunk in body.chunks(64 * 1024) {
                        if c.write_all(chunk).is_err() {
                            return;
                        }
                        sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        if slow.load(Ordering::Relaxed) && body.len() > 1 << 20 {
                            std::thread::sleep(Duration::from_millis(25));
                        }
                    }
                });
            }
        });
        FakeRegistry { addr, sent, slow, stop }
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn root_corrupt_blob_and_interrupted_pull_leave_nothing() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    let good = tar_of(&[("etc/good", b"good\n".to_vec())]);
    let evil = tar_of(&[("etc/good", b"evil\n".to_vec())]);
    let img = image(&[(busybox_layer(), Comp::Gzip), (good, Comp::Gzip)], false);
    let bad_blob = compress(&evil, Comp::Gzip).0;
    let layer = sha(&img.layers[1]);
    let fake = FakeRegistry::start(img, Some(bad_blob));
    let r = format!("{}/evil:1", fake.addr);
    let o = berth(&d, &["pull", &r]);
    assert!(!o.status.success(), "a corrupt blob was accepted");
    assert!(stderr(&o).contains("digest mismatch"), "{}", stderr(&o));
    assert!(stderr(&o).contains(&layer), "{}", stderr(&o));
    assert!(!berth(&d, &["inspect", &r]).status.success(), "image recorded");
    let blob = d.data_root().join("content/blobs/sha256").join(layer.trim_start_matches("sha256:"));
    assert!(!blob.exists(), "corrupt blob stored");
    assert!(
        !d.data_root()
            .join("content/blobs/sha256")
            .join(sha(&compress(&evil, Comp::Gzip).0).trim_start_matches("sha256:"))
            .exists()
    );
    assert_no_partials(&d);
    drop(fake);

    // Interrupted: the daemon is killed with -9 halfway through a big layer.
    let big: Vec<u8> = (0..24u32 << 20).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let img = image(&[(busybox_layer(), Comp::Gzip), (tar_of(&[("big", big)]), Comp::None)], false);
    let id = img.id.clone();
    let fake = FakeRegistry::start(img, None);
    fake.slow.store(true, Ordering::Relaxed);
    let r = format!("{}/big:1", fake.addr);
    let mut pull = Command::new(BERTH)
        .args(["pull", &r])
        .env("DOCKER_HOST", d.host())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pull");
    let t = Instant::now();
    while fake.sent.load(Ordering::Relaxed) < 6 << 20 {
        assert!(t.elapsed() < Duration::from_secs(60), "pull did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    d.kill9();
    let _ = pull.wait();
    let partial = std::fs::read_dir(d.data_root().join("content/ingest")).expect("ingest").count();
    assert!(partial > 0, "the pull was not halfway");
    d.spawn();
    assert_no_partials(&d);
    assert!(!berth(&d, &["inspect", &r]).status.success(), "a partial image is visible");
    fake.slow.store(false, Ordering::Relaxed);
    ok(&berth(&d, &["pull", &r]), "pull after the crash");
    assert_eq!(image_id(&d, &r), id);
    let o = berth(&d, &["run", "--rm", &r, "sh", "-c", "wc -c < /big"]);
    assert_eq!(ok(&o, "run").trim(), (24u32 << 20).to_string());
}

fn sh(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).output().expect("sh")
}

#[test]
fn root_tls_registry_trusted_through_certs_d() {
    if !can_run() {
        return;
    }
    if sh("command -v openssl").stdout.is_empty() {
        eprintln!("skipped: openssl is not installed");
        return;
    }
    let pki = tempfile::tempdir().expect("tempdir");
    let p = pki.path().display();
    let o = sh(&format!(
        "cd {p} && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=berth-test-ca 2>&1 && \
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>&1 && \
         printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext && \
         openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt -days 1 -extfile ext 2>&1"
    ));
    assert!(o.status.success(), "openssl: {}", stdout(&o));
    let cert = pki.path().join("srv.crt");
    let key = pki.path().join("srv.key");
    let reg = Registry::start(&["--tls-cert", cert.to_str().expect("path"), "--tls-key", key.to_str().expect("path")]);
    let mut d = Daemon::start();
    let r = format!("{}/tls/bb:1", reg.addr);
    ok(&berth(&d, &["tag", "busybox", &r]), "tag");
    // Unknown CA: TLS fails, and plain HTTP to a TLS server fails too.
    let o = berth(&d, &["push", &r]);
    assert!(!o.status.success(), "pushed over TLS to an untrusted registry: {}", stdout(&o));
    let dir = d.dir.path().join("certs.d").join(&reg.addr);
    std::fs::create_dir_all(&dir).expect("certs.d");
    std::fs::copy(pki.path().join("ca.crt"), dir.join("ca.crt")).expect("ca.crt");
    d.terminate();
    d.spawn();
    ok(&berth(&d, &["push", &r]), "push over TLS");
    let id = image_id(&d, &r);
    ok(&berth(&d, &["rmi", &r]), "rmi");
    ok(&berth(&d, &["pull", &r]), "pull over TLS");
    assert_eq!(image_id(&d, &r), id);
}

/// A registry in a network namespace made by the test, reached over a veth pair at a
/// non-loopback address: plain HTTP only once it is listed in `insecure-registries`.
struct NetnsRegistry {
    ns: String,
    child: Option<Child>,
    addr: String,
    _dir: tempfile::TempDir,
}

impl NetnsRegistry {
    fn start() -> Option<NetnsRegistry> {
        if sh("command -v ip").stdout.is_empty() {
            eprintln!("skipped: iproute2 is not installed");
            return None;
        }
        let pid = std::process::id();
        let ns = format!("bdist{pid}");
        let net = format!("10.251.{}", pid % 250);
        let (a, b) = (format!("bd{}a", pid % 100000), format!("bd{}b", pid % 100000));
        let dir = tempfile::tempdir().expect("tempdir");
        let mut r = NetnsRegistry { ns: ns.clone(), child: None, addr: format!("{net}.2:5000"), _dir: dir };
        let o = sh(&format!(
            "ip netns add {ns} && ip link add {a} type veth peer name {b} && ip link set {b} netns {ns} && \
             ip addr add {net}.1/30 dev {a} && ip link set {a} up && \
             ip netns exec {ns} ip addr add {net}.2/30 dev {b} && ip netns exec {ns} ip link set {b} up && \
             ip netns exec {ns} ip link set lo up"
        ));
        assert!(o.status.success(), "netns setup: {}", stderr(&o));
        let cfg = r._dir.path().join("registry.toml");
        std::fs::write(&cfg, "[auth]\ninsecure_open = true\n").expect("config");
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, BERTH, "registry", "serve", "--addr", &r.addr, "--config"])
            .arg(&cfg)
            .arg("--root")
            .arg(r._dir.path().join("root"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn registry");
        r.child = Some(child);
        let t = Instant::now();
        while TcpStream::connect(&r.addr).is_err() {
            assert!(t.elapsed() < Duration::from_secs(10), "registry in the namespace did not come up");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(r)
    }
}

impl Drop for NetnsRegistry {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // Deleting the namespace deletes the veth end in it, and with it the pair.
        let _ = sh(&format!("ip netns del {}", self.ns));
    }
}

#[test]
fn root_plain_http_only_for_loopback_and_insecure_registries() {
    if !can_run() {
        return;
    }
    let Some(reg) = NetnsRegistry::start() else { return };
    let mut d = Daemon::start();
    let r = format!("{}/ins/bb:1", reg.addr);
    ok(&berth(&d, &["tag", "busybox", &r]), "tag");
    let o = berth(&d, &["push", &r]);
    assert!(!o.status.success(), "plain HTTP to a non-loopback registry: {}", stdout(&o));
    assert!(stderr(&o).contains("https://"), "{}", stderr(&o));
    let (_, metrics) = http(&reg.addr, "GET", "/metrics", &[], b"");
    assert!(!String::from_utf8_lossy(&metrics).contains("route=\"upload\""), "something was uploaded");
    restart_with(&mut d, &format!(r#"{{"insecure-registries": ["{}"]}}"#, reg.addr));
    ok(&berth(&d, &["push", &r]), "push to an insecure registry");
    ok(&berth(&d, &["rmi", &r]), "rmi");
    ok(&berth(&d, &["pull", &r]), "pull from an insecure registry");
}
