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
