//! End-to-end tests of volumes, files and disk: `-v`/`--mount`/`--volumes-from`, the volume
//! API, `cp` and the archive API, `save`/`load`, `export`, prunes and `system df` measured with
//! `du`, the start-up sweep, log rotation and drivers — through `berth` and the real `docker`
//! CLI. Every test runs real containers as root and starts its own daemon.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Daemon, can_run, stderr, stdout};
use serde_json::Value;

fn ok(o: &std::process::Output) -> String {
    assert!(o.status.success(), "failed: {}{}", stdout(o), stderr(o));
    stdout(o)
}

fn chrono_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() + 1).unwrap_or(0)
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn root_volumes_binds_tmpfs_and_the_volume_api() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    // A named volume outlives its containers.
    ok(&d.berth(&["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f"]));
    assert_eq!(ok(&d.berth(&["run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"])), "kept\n");
    // A new volume over image content starts with that content; an existing one keeps its own.
    let o = d.berth(&["run", "--rm", "-v", "etcvol:/etc", "busybox", "grep", "-c", "root", "/etc/passwd"]);
    assert_eq!(ok(&o).trim(), "1");
    ok(&d.berth(&["run", "--rm", "-v", "etcvol:/etc", "busybox", "rm", "/etc/group"]));
    let o = d.berth(&["run", "--rm", "-v", "etcvol:/etc", "busybox", "ls", "/etc/group"]);
    assert!(!o.status.success(), "the copy-up happened only once");
    // --mount volume-nocopy: empty.
    let o = d.berth(&["run", "--rm", "--mount", "src=empty1,dst=/etc,volume-nocopy", "busybox", "/bin/ls", "/etc"]);
    assert_eq!(ok(&o).lines().filter(|l| !l.starts_with("host") && *l != "resolv.conf").count(), 0, "{}", stdout(&o));

    // Binds: read-only, and a missing host path created for -v.
    let host = d.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).expect("mkdir");
    std::fs::write(host.join("hello"), "from host\n").expect("write");
    let spec = format!("{}:/h:ro", host.display());
    assert_eq!(ok(&d.berth(&["run", "--rm", "-v", &spec, "busybox", "cat", "/h/hello"])), "from host\n");
    let o = d.berth(&["run", "--rm", "-v", &spec, "busybox", "touch", "/h/x"]);
    assert!(!o.status.success() && stderr(&o).contains("Read-only"), "{}", stderr(&o));
    let missing = d.dir.path().join("made/by/v");
    let spec = format!("{}:/m", missing.display());
    ok(&d.berth(&["run", "--rm", "-v", &spec, "busybox", "touch", "/m/new"]));
    assert!(missing.join("new").exists());
    // --mount type=bind refuses a missing source, naming it.
    let gone = d.dir.path().join("no-such-dir");
    let m = format!("type=bind,source={},target=/x", gone.display());
    let o = d.berth(&["run", "--rm", "--mount", &m, "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("bind source path does not exist"), "{}", stderr(&o));
    assert!(!gone.exists());
    // tmpfs through --mount.
    let o = d.berth(&[
        "run",
        "--rm",
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=1m",
        "busybox",
        "sh",
        "-c",
        "grep /scratch /proc/mounts",
    ]);
    let line = ok(&o);
    assert!(line.starts_with("tmpfs /scratch tmpfs") && line.contains("size=1024k"), "{line}");
    // Bad specifications are refused with Docker's words.
    let o = d.berth(&["run", "--rm", "-v", "a:b", "busybox", "true"]);
    assert!(
        stderr(&o).contains("invalid volume specification") || stderr(&o).contains("must be absolute"),
        "{}",
        stderr(&o)
    );
    let o = d.berth(&["run", "--rm", "-v", "/a:/x", "-v", "v1:/x", "busybox", "true"]);
    assert!(stderr(&o).contains("Duplicate mount point: /x"), "{}", stderr(&o));

    // Anonymous volumes for the image's VOLUMEs; inspect shows them as Docker does.
    let tar = std::fs::read(common::busybox_tar()).expect("tar");
    ok(&d.berth_stdin(&["import", "-c", "VOLUME /data", "-c", "CMD [\"sh\"]", "-", "volimg:1"], &tar));
    ok(&d.berth(&[
        "create",
        "--name",
        "anon",
        "-v",
        "data:/named",
        "-v",
        &format!("{}:/b", host.display()),
        "volimg:1",
    ]));
    let i = d.inspect("anon");
    let mounts = i["Mounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 3, "{mounts:?}");
    let anon = mounts.iter().find(|m| m["Destination"] == "/data").expect("anonymous volume");
    let anon_name = anon["Name"].as_str().expect("name").to_owned();
    assert_eq!(anon_name.len(), 64);
    assert_eq!(anon["Type"], "volume");
    assert_eq!(anon["Driver"], "local");
    assert_eq!(anon["RW"], true);
    assert!(anon["Source"].as_str().expect("source").ends_with(&format!("volumes/{anon_name}/_data")));
    let bind = mounts.iter().find(|m| m["Destination"] == "/b").expect("bind");
    assert_eq!((bind["Type"].as_str(), bind["Propagation"].as_str()), (Some("bind"), Some("rprivate")));
    let named = mounts.iter().find(|m| m["Destination"] == "/named").expect("named");
    assert_eq!((named["Name"].as_str(), named["Mode"].as_str()), (Some("data"), Some("z")));
    // --volumes-from takes them all, read-only when asked.
    let o =
        d.berth(&["run", "--rm", "--volumes-from", "anon:ro", "busybox", "sh", "-c", "cat /named/f; touch /named/g"]);
    assert_eq!(stdout(&o), "kept\n");
    assert!(!o.status.success());
    // A volume in use cannot be removed; `rm -v` takes the anonymous one with the container.
    let o = d.berth(&["volume", "rm", "data"]);
    assert!(!o.status.success() && stderr(&o).contains("volume is in use"), "{}", stderr(&o));
    let (st, _) = d.http("DELETE", "/volumes/data", None).expect("http");
    assert_eq!(st, 409);
    ok(&d.berth(&["rm", "-v", "anon"]));
    assert!(!ok(&d.berth(&["volume", "ls", "-q"])).contains(&anon_name));

    // The volume API: create with local driver options, inspect, ls with filters, rm, prune.
    ok(&d.berth(&["volume", "create", "--label", "team=a", "-o", "type=tmpfs", "-o", "o=size=2m", "tmpvol"]));
    let o = d.berth(&["run", "--rm", "-v", "tmpvol:/t", "busybox", "sh", "-c", "grep ' /t ' /proc/mounts"]);
    assert!(ok(&o).starts_with("tmpfs /t tmpfs"), "{}", stdout(&o));
    let bdev = d.dir.path().join("bdev");
    std::fs::create_dir_all(&bdev).expect("mkdir");
    ok(&d.berth(&[
        "volume",
        "create",
        "-o",
        "type=none",
        "-o",
        "o=bind",
        "-o",
        &format!("device={}", bdev.display()),
        "bindvol",
    ]));
    ok(&d.berth(&["run", "--rm", "-v", "bindvol:/b", "busybox", "sh", "-c", "echo via-bind > /b/x"]));
    assert_eq!(std::fs::read_to_string(bdev.join("x")).expect("bind volume wrote to the device"), "via-bind\n");
    let v = json(&ok(&d.berth(&["volume", "inspect", "tmpvol"])));
    assert_eq!(v[0]["Labels"]["team"], "a");
    assert_eq!(v[0]["Options"]["type"], "tmpfs");
    assert_eq!(v[0]["Scope"], "local");
    assert_eq!(ok(&d.berth(&["volume", "ls", "-q", "--filter", "label=team=a"])), "tmpvol\n");
    let o = d.berth(&["volume", "create", "-o", "bogus=1", "badopts"]);
    assert!(!o.status.success() && stderr(&o).contains("invalid option key"), "{}", stderr(&o));
    let o = d.berth(&["volume", "inspect", "nosuch"]);
    assert!(stderr(&o).contains("no such volume"), "{}", stderr(&o));
    assert!(d.mounts().iter().all(|m| !m.contains("/volumes/")), "volume mounts left: {:?}", d.mounts());
    // Docker's volume events.
    let now = chrono_now();
    let (_, ev) = d
        .http("GET", &format!("/events?since=0&until={now}&filters=%7B%22type%22%3A%5B%22volume%22%5D%7D"), None)
        .expect("events");
    for action in ["\"create\"", "\"mount\"", "\"unmount\"", "\"destroy\""] {
        assert!(ev.contains(&format!("\"Action\":{action}")), "no volume {action} event: {ev}");
    }

    if common::docker_cli().is_some() {
        let dk = |args: &[&str]| d.docker(args).expect("docker");
        assert_eq!(ok(&dk(&["run", "--rm", "-v", "data:/data", "busybox", "cat", "/data/f"])), "kept\n");
        let o = dk(&[
            "run",
            "--rm",
            "--mount",
            "type=volume,source=dv,target=/dv",
            "busybox",
            "sh",
            "-c",
            "echo d > /dv/x && cat /dv/x",
        ]);
        assert_eq!(ok(&o), "d\n");
        let spec = format!("{}:/h:ro", host.display());
        assert_eq!(ok(&dk(&["run", "--rm", "-v", &spec, "busybox", "cat", "/h/hello"])), "from host\n");
        let m = format!("type=bind,source={},target=/x", gone.display());
        let o = dk(&["run", "--rm", "--mount", &m, "busybox", "true"]);
        assert!(!o.status.success());
        assert_eq!(ok(&dk(&["volume", "create", "dockervol"])), "dockervol\n");
        assert!(ok(&dk(&["volume", "ls"])).contains("dockervol"));
        let v = json(&ok(&dk(&["volume", "inspect", "dockervol"])));
        assert_eq!(v[0]["Driver"], "local");
        ok(&dk(&["create", "--name", "holder", "-v", "dockervol:/x", "busybox"]));
        let o = dk(&["volume", "rm", "dockervol"]);
        assert!(!o.status.success() && stderr(&o).contains("volume is in use"), "{}", stderr(&o));
        ok(&dk(&["rm", "holder"]));
        ok(&dk(&["volume", "rm", "dockervol"]));
        let i =
            json(&ok(&dk(&["inspect", "--type", "container", ok(&dk(&["create", "-v", "/anon2", "busybox"])).trim()])));
        assert_eq!(i[0]["Mounts"][0]["Type"], "volume");
        assert_eq!(i[0]["Mounts"][0]["Destination"], "/anon2");
    }
}

#[test]
fn root_cp_and_archive_api_running_and_stopped() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let work = d.dir.path().join("cp");
    std::fs::create_dir_all(work.join("tree/sub")).expect("mkdir");
    std::fs::write(work.join("tree/sub/a.txt"), "A\n").expect("write");
    std::fs::write(work.join("one.txt"), "one\n").expect("write");
    ok(&d.berth(&["run", "-d", "--name", "live", "-v", "cpvol:/vol", "busybox", "sleep", "60"]));
    ok(&d.berth(&["create", "--name", "stopped", "busybox", "true"]));
    for ctr in ["live", "stopped"] {
        let src = work.join("one.txt");
        ok(&d.berth(&["cp", src.to_str().expect("utf8"), &format!("{ctr}:/tmp/")]));
        ok(&d.berth(&["cp", src.to_str().expect("utf8"), &format!("{ctr}:/tmp/renamed.txt")]));
        ok(&d.berth(&["cp", work.join("tree").to_str().expect("utf8"), &format!("{ctr}:/tmp/")]));
        let out = work.join(format!("out-{ctr}"));
        std::fs::create_dir_all(&out).expect("mkdir");
        ok(&d.berth(&["cp", &format!("{ctr}:/tmp/renamed.txt"), out.to_str().expect("utf8")]));
        assert_eq!(std::fs::read_to_string(out.join("renamed.txt")).expect("copied out"), "one\n");
        ok(&d.berth(&["cp", &format!("{ctr}:/tmp/tree"), out.join("t2").to_str().expect("utf8")]));
        assert_eq!(std::fs::read_to_string(out.join("t2/sub/a.txt")).expect("dir copied out"), "A\n");
        // A file of the image, and one through an absolute symlink of the container.
        ok(&d.berth(&["cp", &format!("{ctr}:/etc/passwd"), out.join("pw").to_str().expect("utf8")]));
        assert!(std::fs::read_to_string(out.join("pw")).expect("passwd").starts_with("root:x:0:0"));
        let o = d.berth(&["cp", &format!("{ctr}:/no/such"), out.to_str().expect("utf8")]);
        assert!(!o.status.success() && stderr(&o).contains("Could not find the file"), "{}", stderr(&o));
    }
    assert!(d.mounts().iter().all(|m| !m.contains("/stopped")), "the stopped container's rootfs stays unmounted");
    assert_eq!(ok(&d.berth(&["exec", "live", "cat", "/tmp/tree/sub/a.txt"])), "A\n");
    ok(&d.berth(&["start", "stopped"]));
    // cp into a volume's path lands in the volume.
    ok(&d.berth(&["cp", work.join("one.txt").to_str().expect("utf8"), "live:/vol/"]));
    assert_eq!(ok(&d.berth(&["run", "--rm", "-v", "cpvol:/v", "busybox", "cat", "/v/one.txt"])), "one\n");
    // A symlink planted in the container cannot send a copy out to the host.
    ok(&d.berth(&["exec", "live", "ln", "-s", "/", "/tmp/escape"]));
    ok(&d.berth(&["exec", "live", "mkdir", "/tmp/target"]));
    let marker = d.dir.path().join("escaped-marker");
    let _ = std::fs::remove_file(&marker);
    let o = d.berth(&["cp", work.join("one.txt").to_str().expect("utf8"), "live:/tmp/escape/tmp/"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !Path::new("/tmp/one.txt").exists()
            || std::fs::read_to_string("/tmp/one.txt").map(|s| s != "one\n").unwrap_or(true)
    );
    assert_eq!(ok(&d.berth(&["exec", "live", "cat", "/tmp/one.txt"])), "one\n", "resolved inside the container");
    // A crafted tar with `..` or writing through a symlink is refused by the archive API.
    let evil = crafted_tar(&[("link", Some("/"), b"" as &[u8]), ("link/etc/pwned-by-cp", None, b"x")]);
    let (st, body) = put_tar(&d, "live", "/tmp/target", &evil);
    assert_eq!(st, 400, "{body}");
    assert!(!Path::new("/etc/pwned-by-cp").exists());
    let evil = crafted_tar(&[("../../../../../../tmp/berth-pwned", None, b"x")]);
    let (st, _) = put_tar(&d, "live", "/tmp/target", &evil);
    assert_eq!(st, 400);
    assert!(!Path::new("/tmp/berth-pwned").exists());
    // HEAD gives the stat header.
    let (st, head) = raw(&d, "HEAD", "/containers/live/archive?path=/etc/passwd", b"");
    assert_eq!(st, 200);
    assert!(head.to_ascii_lowercase().contains("x-docker-container-path-stat"), "{head}");
    // A read-only rootfs refuses copies into it.
    ok(&d.berth(&["create", "--name", "ro", "--read-only", "busybox", "true"]));
    let o = d.berth(&["cp", work.join("one.txt").to_str().expect("utf8"), "ro:/tmp/"]);
    assert!(!o.status.success() && stderr(&o).contains("read-only"), "{}", stderr(&o));
    // export: the whole rootfs with what was copied in.
    let exp = work.join("exp.tar");
    ok(&d.berth(&["export", "-o", exp.to_str().expect("utf8"), "stopped"]));
    let list = stdout(&Command::new("tar").arg("-tf").arg(&exp).output().expect("tar"));
    assert!(list.lines().any(|l| l == "bin/busybox") && list.lines().any(|l| l == "tmp/tree/sub/a.txt"), "{list}");
    assert!(d.mounts().iter().all(|m| !m.contains("/stopped")));

    if common::docker_cli().is_some() {
        let dk = |args: &[&str]| d.docker(args).expect("docker");
        ok(&dk(&["cp", work.join("tree").to_str().expect("utf8"), "live:/dk"]));
        assert_eq!(ok(&d.berth(&["exec", "live", "cat", "/dk/sub/a.txt"])), "A\n");
        let out = work.join("dkout");
        ok(&dk(&["cp", "live:/dk", out.to_str().expect("utf8")]));
        assert_eq!(std::fs::read_to_string(out.join("sub/a.txt")).expect("docker cp out"), "A\n");
        ok(&dk(&["cp", work.join("one.txt").to_str().expect("utf8"), "stopped:/one-by-docker"]));
        ok(&dk(&["cp", "stopped:/one-by-docker", work.join("back.txt").to_str().expect("utf8")]));
        assert_eq!(std::fs::read_to_string(work.join("back.txt")).expect("back"), "one\n");
        let o = dk(&["export", "-o", work.join("dexp.tar").to_str().expect("utf8"), "stopped"]);
        ok(&o);
        assert!(std::fs::metadata(work.join("dexp.tar")).expect("export").len() > 100_000);
    }
}

/// A tar with raw names (`..`, absolute) and links, as an attacker would write it.
fn crafted_tar(entries: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, link, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1);
        h.set_entry_type(if link.is_some() { tar::EntryType::Symlink } else { tar::EntryType::Regular });
        {
            let g = h.as_gnu_mut().expect("gnu");
            g.name = [0; 100];
            g.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(l) = link {
                g.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.extend(std::iter::repeat_n(0u8, (512 - data.len() % 512) % 512));
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

/// A raw request with a binary body: (status, head).
fn raw(d: &Daemon, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
    write!(s, "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Length: {}\r\n\r\n", body.len()).expect("write");
    s.write_all(body).expect("body");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn put_tar(d: &Daemon, ctr: &str, path: &str, tar: &[u8]) -> (u16, String) {
    raw(d, "PUT", &format!("/containers/{ctr}/archive?path={path}"), tar)
}

/// A real Docker daemon (dockerd 20.10) on its own data root, exec root, socket and pidfile,
/// stopped and cleaned up on drop. None when it cannot start here.
struct RealDocker {
    dir: tempfile::TempDir,
    child: std::process::Child,
}

impl RealDocker {
    fn start() -> Option<RealDocker> {
        if common::docker_cli().is_none() || Command::new("dockerd").arg("--version").output().is_err() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("bdk").tempdir_in("/tmp").ok()?;
        let p = dir.path();
        let log = std::fs::File::create(p.join("log")).ok()?;
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(p.join("data"))
            .arg("--exec-root")
            .arg(p.join("exec"))
            .arg("-H")
            .arg(format!("unix://{}", p.join("d.sock").display()))
            .arg("--pidfile")
            .arg(p.join("d.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false", "--storage-driver=vfs"])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .ok()?;
        let d = RealDocker { dir, child };
        for _ in 0..150 {
            if d.docker(&["version"]).status.success() {
                return Some(d);
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        eprintln!("skipped: dockerd did not start");
        None
    }

    fn docker(&self, args: &[&str]) -> std::process::Output {
        self.client("docker", args)
    }

    /// The berth CLI, driving this dockerd.
    fn berth(&self, args: &[&str]) -> std::process::Output {
        self.client(common::BERTH, args)
    }

    /// `program` (a CLI of the Engine API) run against this dockerd.
    fn client(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new(program)
            .args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.dir.path().join("d.sock").display()))
            .env("DOCKER_CONFIG", self.dir.path().join("cfg"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"))
    }
}

/// The berth CLI speaks only the Engine API, so it drives a real Docker daemon too: one whose
/// API (1.41) is older than the client's, whose lists hold nulls, and whose attach and exec
/// streams are labelled raw even when they are multiplexed.
#[test]
fn root_berth_cli_drives_real_docker() {
    if !can_run() {
        return;
    }
    let Some(real) = RealDocker::start() else {
        eprintln!("skipped: no dockerd");
        return;
    };
    let tarball = common::busybox_tar();
    ok(&real.berth(&["import", "-c", "CMD [\"sh\"]", tarball.to_str().expect("utf8"), "busybox:latest"]));
    // `Labels` and `RepoDigests` are null in Docker's image list, `Tags` in its history.
    let images = ok(&real.berth(&["images"]));
    assert!(images.lines().any(|l| l.starts_with("busybox ") && l.contains("latest")), "{images}");
    assert!(ok(&real.berth(&["history", "busybox"])).contains("Imported from"));
    // stdout and stderr arrive apart, without the frames' headers.
    let o = real.berth(&["run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!((stdout(&o).as_str(), stderr(&o).as_str(), o.status.code()), ("out\n", "err\n", Some(3)));
    ok(&real.berth(&["run", "-d", "--network", "none", "--name", "on-docker", "busybox", "sleep", "30"]));
    assert_eq!(ok(&real.berth(&["exec", "on-docker", "echo", "in"])), "in\n");
    assert!(ok(&real.berth(&["ps"])).contains("on-docker"));
    ok(&real.berth(&["rm", "-f", "on-docker"]));
    assert!(!ok(&real.berth(&["ps", "-a"])).contains("on-docker"));
}

impl Drop for RealDocker {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        for m in mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| m.starts_with(&root))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

#[test]
fn root_save_and_load_both_formats_and_with_real_docker() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let work = d.dir.path().join("sl");
    std::fs::create_dir_all(&work).expect("mkdir");
    let id = ok(&d.berth(&["inspect", "-f", "{{.Id}}", "busybox"])).trim().to_owned();
    ok(&d.berth(&["tag", "busybox", "mine:2"]));
    let file = work.join("bb.tar");
    ok(&d.berth(&["save", "-o", file.to_str().expect("utf8"), "busybox", "mine:2"]));
    let list = stdout(&Command::new("tar").arg("-tf").arg(&file).output().expect("tar"));
    for want in ["manifest.json", "index.json", "oci-layout", "repositories"] {
        assert!(list.lines().any(|l| l == want), "{want} missing: {list}");
    }
    ok(&d.berth(&["rmi", "mine:2", "busybox"]));
    let o = d.berth(&["load", "-i", file.to_str().expect("utf8")]);
    let out = ok(&o);
    assert!(out.contains("Loaded image: busybox:latest") && out.contains("Loaded image: mine:2"), "{out}");
    assert_eq!(ok(&d.berth(&["inspect", "-f", "{{.Id}}", "mine:2"])).trim(), id, "the image id survives the trip");
    assert_eq!(ok(&d.berth(&["run", "--rm", "mine:2", "echo", "loaded"])), "loaded\n");
    // From stdin, and through the docker CLI.
    let data = std::fs::read(&file).expect("read");
    ok(&d.berth(&["rmi", "mine:2"]));
    assert!(ok(&d.berth_stdin(&["load"], &data)).contains("mine:2"));
    if common::docker_cli().is_some() {
        let dfile = work.join("dk.tar");
        ok(&d.docker(&["save", "-o", dfile.to_str().expect("utf8"), "mine:2"]).expect("docker"));
        ok(&d.docker(&["rmi", "mine:2"]).expect("docker"));
        let o = d.docker(&["load", "-i", dfile.to_str().expect("utf8")]).expect("docker");
        assert!(ok(&o).contains("Loaded image: mine:2"), "{}", stdout(&o));
    }
    // A malicious archive is refused and leaves nothing behind.
    // The bad entry comes first and 32 MB follow: the daemon refuses while the client is still
    // sending, and the client must get the error, not a broken connection.
    let padding = vec![0u8; 32 << 20];
    let evil = crafted_tar(&[("../../../../../tmp/berth-load-pwned", None, b"x"), ("padding", None, &padding)]);
    let o = d.berth_stdin(&["load"], &evil);
    assert!(!o.status.success() && stderr(&o).contains("unsafe path"), "{}", stderr(&o));
    assert!(!Path::new("/tmp/berth-load-pwned").exists());
    let o = d.berth_stdin(&["load"], b"not an archive at all");
    assert!(!o.status.success());
    let ingest = d.data_root().join("content/ingest");
    assert_eq!(std::fs::read_dir(&ingest).expect("ingest").count(), 0, "scratch left in {}", ingest.display());

    // Real Docker: its `docker save` loads into berth, and berth's into Docker.
    let Some(real) = RealDocker::start() else {
        eprintln!("skipped the real-Docker part: no dockerd");
        return;
    };
    ok(&real.docker(&["load", "-i", file.to_str().expect("utf8")]));
    assert_eq!(ok(&real.docker(&["inspect", "-f", "{{.Id}}", "mine:2"])).trim(), id, "Docker reads berth's archive");
    let tarball = common::busybox_tar();
    ok(&real.docker(&["import", "-c", "CMD [\"sh\"]", tarball.to_str().expect("utf8"), "fromdocker:1"]));
    let rid = ok(&real.docker(&["inspect", "-f", "{{.Id}}", "fromdocker:1"])).trim().to_owned();
    let rfile = work.join("real.tar");
    ok(&real.docker(&["save", "-o", rfile.to_str().expect("utf8"), "fromdocker:1"]));
    drop(real);
    let o = d.berth(&["load", "-i", rfile.to_str().expect("utf8")]);
    assert!(ok(&o).contains("Loaded image: fromdocker:1"), "{}", stdout(&o));
    assert_eq!(ok(&d.berth(&["inspect", "-f", "{{.Id}}", "fromdocker:1"])).trim(), rid);
    assert_eq!(ok(&d.berth(&["run", "--rm", "fromdocker:1", "echo", "from docker"])), "from docker\n");
}

/// `du` of the data root in bytes, without the SQLite files (their pages come and go).
fn du(p: &Path) -> i64 {
    let o = Command::new("du")
        .args(["-s", "-B1", "--exclude=metadata.db*", "--exclude=events.log*"])
        .arg(p)
        .output()
        .expect("du");
    stdout(&o).split_whitespace().next().and_then(|n| n.parse().ok()).expect("du output")
}

#[test]
fn root_prune_and_df_report_what_comes_back() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let root = d.data_root();
    // Containers with data in their upper layer.
    for n in ["c1", "c2"] {
        ok(&d.berth(&["run", "--name", n, "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1k", "count=3000"]));
    }
    ok(&d.berth(&["run", "-d", "--name", "keep", "busybox", "sleep", "60"]));
    let df = json(&d.http_ok("/system/df"));
    let c1 =
        df["Containers"].as_array().expect("containers").iter().find(|c| c["Names"][0] == "/c1").expect("c1").clone();
    assert!(c1["SizeRw"].as_i64().expect("size") >= 3_000_000, "{c1}");
    let before = du(&root);
    let v = json(&d.http_post("/containers/prune"));
    let after = du(&root);
    let reclaimed = v["SpaceReclaimed"].as_i64().expect("reclaimed");
    assert_eq!(v["ContainersDeleted"].as_array().map(Vec::len), Some(2), "{v}");
    assert!((before - after - reclaimed).abs() <= 64 * 1024, "du says {} went, prune says {reclaimed}", before - after);
    assert!(ok(&d.berth(&["ps", "-aq"])).lines().count() == 1);

    // Images: two tags of one image and a second image sharing nothing; dangling first.
    let tar = std::fs::read(common::busybox_tar()).expect("tar");
    ok(&d.berth_stdin(&["import", "-c", "LABEL x=1", "-", "other:1"], &tar));
    ok(&d.berth(&["rmi", "other:1"]));
    // Importing over a tag leaves the old image dangling.
    ok(&d.berth_stdin(&["import", "-", "dangling:1"], &tar));
    std::thread::sleep(std::time::Duration::from_millis(10));
    ok(&d.berth_stdin(&["import", "-", "dangling:1"], &tar));
    assert_eq!(ok(&d.berth(&["images", "-q", "-f", "dangling=true"])).lines().count(), 1);
    let out = ok(&d.berth(&["image", "prune", "-f"]));
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert_eq!(ok(&d.berth(&["images", "-q", "-f", "dangling=true"])).lines().count(), 0);
    ok(&d.berth_stdin(&["import", "-", "unused:1"], &tar));
    let out = ok(&d.berth(&["system", "df"]));
    assert!(out.starts_with("TYPE") && out.contains("Images") && out.contains("Local Volumes"), "{out}");
    let verbose = ok(&d.berth(&["system", "df", "-v"]));
    assert!(verbose.contains("SHARED SIZE") && verbose.contains("keep"), "{verbose}");
    // Three image records share one snapshot (same content): LayersSize counts it once.
    let df = json(&d.http_ok("/system/df"));
    let layers = df["LayersSize"].as_i64().expect("layers size");
    let sum: i64 = df["Images"].as_array().expect("images").iter().map(|i| i["Size"].as_i64().unwrap_or(0)).sum();
    assert!(layers < sum, "shared layers are counted once: {layers} vs {sum}");
    let before = du(&root);
    let o = d.berth(&["image", "prune", "-a", "-f"]);
    let out = ok(&o);
    let after = du(&root);
    assert!(out.contains("unused:1") && out.contains("dangling:1") && !out.contains("busybox"), "{out}");
    let v = json(&d.http_post("/images/prune?filters=%7B%22dangling%22%3A%5B%22false%22%5D%7D"));
    assert_eq!(v["ImagesDeleted"], Value::Null, "nothing left to prune: {v}");
    let reported = reclaimed_of(&out);
    assert!(
        (before - after - reported).abs() <= 64 * 1024 + reported / 100,
        "du: {}, reported {reported}",
        before - after
    );
    assert_eq!(ok(&d.berth(&["run", "--rm", "busybox", "echo", "still"])), "still\n", "the used image stays");

    // Volumes: anonymous ones by default, all with -a; one in use stays.
    ok(&d.berth(&[
        "run",
        "--name",
        "vc",
        "-v",
        "/anon",
        "-v",
        "named1:/n",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/anon/z",
        "bs=1k",
        "count=2000",
    ]));
    ok(&d.berth(&[
        "run",
        "--rm",
        "-v",
        "named2:/n",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/n/z",
        "bs=1k",
        "count=2000",
    ]));
    ok(&d.berth(&["rm", "vc"]));
    ok(&d.berth(&["volume", "create", "inuse"]));
    ok(&d.berth(&["create", "--name", "user", "-v", "inuse:/x", "busybox"]));
    let before = du(&root);
    let out = ok(&d.berth(&["volume", "prune", "-f"]));
    assert!(!out.contains("named"), "{out}");
    let reported = reclaimed_of(&out);
    assert!(reported >= 2_000_000, "{out}");
    assert!((before - du(&root) - reported).abs() <= 64 * 1024, "{out}");
    let out = ok(&d.berth(&["volume", "prune", "-a", "-f"]));
    assert!(out.contains("named1") && out.contains("named2") && !out.contains("inuse"), "{out}");
    if let Some(o) = d.docker(&["system", "df"]) {
        assert!(ok(&o).contains("Local Volumes"));
        let o = d.docker(&["container", "prune", "-f"]).expect("docker");
        assert!(ok(&o).contains("Total reclaimed space"), "{}", stdout(&o));
        let o = d.docker(&["volume", "prune", "-f", "-a"]).expect("docker");
        assert!(ok(&o).contains("inuse"), "the container using it was pruned: {}", stdout(&o));
        let o = d.docker(&["image", "prune", "-f"]).expect("docker");
        ok(&o);
    }
    let o = d.berth(&["system", "prune", "-f", "--volumes"]);
    assert!(ok(&o).contains("Total reclaimed space"), "{}", stderr(&o));
    assert_eq!(ok(&d.berth(&["ps", "-q"])).lines().count(), 1, "the running container stays");
}

/// "Total reclaimed space: 3.1MB" → bytes (Docker's decimal units).
fn reclaimed_of(out: &str) -> i64 {
    let s = out.lines().find_map(|l| l.strip_prefix("Total reclaimed space: ")).expect("total line").trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let mult = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => panic!("unit {unit}"),
    };
    (num.parse::<f64>().expect("number") * mult) as i64
}

#[test]
fn root_log_rotation_drivers_and_the_start_up_sweep() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    let o = d.berth(&[
        "run",
        "--name",
        "chatty",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=3",
        "busybox",
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    ok(&o);
    let i = d.inspect("chatty");
    let log = i["LogPath"].as_str().expect("log path").to_owned();
    assert_eq!(i["HostConfig"]["LogConfig"]["Type"], "json-file");
    let files: Vec<_> = (0..5)
        .map(|n| if n == 0 { log.clone() } else { format!("{log}.{n}") })
        .filter(|p| Path::new(p).exists())
        .collect();
    assert_eq!(files.len(), 3, "{files:?}");
    for f in &files {
        assert!(std::fs::metadata(f).expect("stat").len() <= 2048, "{f}");
    }
    // logs reads across the rotated files: the newest lines, in order, none repeated.
    let out = ok(&d.berth(&["logs", "chatty"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.last(), Some(&"line-299"));
    let first: usize = lines[0].trim_start_matches("line-").parse().expect("number");
    assert!(first > 0, "the oldest went");
    assert_eq!(lines.len(), 300 - first, "contiguous from the oldest kept line");
    // Following across a rotation while the container writes.
    ok(&d.berth(&[
        "run",
        "-d",
        "--name",
        "follow",
        "--log-opt",
        "max-size=1k",
        "busybox",
        "sh",
        "-c",
        "sleep 1; i=0; while [ $i -lt 100 ]; do echo f-$i; i=$((i+1)); done",
    ]));
    let out = ok(&d.berth(&["logs", "-f", "follow"]));
    assert!(out.ends_with("f-99\n"), "{out}");
    assert!(out.lines().count() >= 20, "{out}");
    if let Some(o) = d.docker(&["logs", "--tail", "1", "chatty"]) {
        assert_eq!(ok(&o), "line-299\n");
    }
    // Drivers: none keeps nothing, local is readable; daemon.json log-opts are the default.
    ok(&d.berth(&["run", "--name", "quiet", "--log-driver", "none", "busybox", "echo", "x"]));
    let o = d.berth(&["logs", "quiet"]);
    assert!(!o.status.success() && stderr(&o).contains("does not support reading"), "{}", stderr(&o));
    ok(&d.berth(&["run", "--name", "loc", "--log-driver", "local", "busybox", "echo", "local log"]));
    assert_eq!(ok(&d.berth(&["logs", "loc"])), "local log\n");
    let o = d.berth(&["run", "--log-driver", "syslog", "busybox", "true"]);
    assert!(!o.status.success() && stderr(&o).contains("no log driver named 'syslog'"), "{}", stderr(&o));

    // The sweep: what a crash leaves is gone after a restart; what images use stays.
    d.kill9();
    let snap = d.data_root().join("snapshots").join("ab".repeat(32));
    std::fs::create_dir_all(snap.join("fs/junk")).expect("mkdir");
    let blob = d.data_root().join("content/blobs/sha256").join("cd".repeat(32));
    std::fs::write(&blob, "orphan").expect("write");
    let ingest = d.data_root().join("content/ingest/partial");
    std::fs::write(&ingest, "half").expect("write");
    let tmp = d.data_root().join("snapshots/tmp-deadbeef");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    let cdir = d.data_root().join("containers").join("ef".repeat(32));
    std::fs::create_dir_all(cdir.join("upper")).expect("mkdir");
    d.write_config(r#"{"log-opts": {"max-size": "1k", "max-file": "2"}}"#);
    d.spawn();
    for p in [&snap, &blob, &ingest, &tmp, &cdir] {
        assert!(!p.exists(), "{} survived the sweep", p.display());
    }
    assert_eq!(ok(&d.berth(&["run", "--rm", "busybox", "echo", "intact"])), "intact\n");
    ok(&d.berth(&["create", "--name", "dj", "busybox"]));
    let i = d.inspect("dj");
    assert_eq!(i["HostConfig"]["LogConfig"]["Config"]["max-size"], "1k");
    d.write_config("{}");
}

/// `import URL`: the daemon fetches the archive (here from a server on loopback).
#[test]
fn root_import_from_a_url() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let tar = std::fs::read(common::busybox_tar()).expect("tar");
    let server = std::thread::spawn(move || {
        use std::io::{BufRead, Write};
        for _ in 0..2 {
            let (mut s, _) = listener.accept().expect("accept");
            let mut line = String::new();
            let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
            r.read_line(&mut line).expect("request line");
            while r.read_line(&mut String::new()).map(|n| n > 2).unwrap_or(false) {}
            if line.contains("/busybox.tar ") {
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", tar.len());
                let _ = s.write_all(&tar);
            } else {
                let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/busybox.tar");
    let o = d.berth(&["import", "-c", "CMD [\"echo\", \"from a url\"]", &url, "fromurl:1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&d.berth(&["run", "--rm", "fromurl:1"])), "from a url\n");
    let o = d.berth(&["import", &format!("http://127.0.0.1:{port}/missing.tar"), "nope:1"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.tar") && stderr(&o).contains("404"), "{}", stderr(&o));
    server.join().expect("server");
    let (status, body) = d.http("POST", "/images/create?fromSrc=ftp%3A%2F%2Fx", None).expect("http");
    assert_eq!(status, 400, "{body}");
}
