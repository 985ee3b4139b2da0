//! The e2e harness: a daemon on a temporary data root and socket, a busybox image made
//! from Debian's busybox-static, and helpers to run `berth` and the real `docker` CLI
//! against it. Everything a test starts is torn down when its [`Daemon`] drops: containers,
//! mounts, cgroups, network namespaces, the daemon itself.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// Whether this process may run containers (root); tests that need it skip otherwise.
pub fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: containers need root");
    }
    root && Path::new("/bin/busybox").exists()
}

/// A busybox root filesystem tar, built once per test binary.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/busybox-rootfs.sh");
        let out = Command::new("sh").arg(script).output().expect("run busybox-rootfs.sh");
        assert!(out.status.success(), "busybox-rootfs.sh: {}", String::from_utf8_lossy(&out.stderr));
        // Under cargo's per-target scratch directory: written once per test binary run,
        // nothing left in /tmp.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let tmp = dir.join(format!("busybox-{}.tar.tmp", std::process::id()));
        std::fs::write(&tmp, &out.stdout).expect("write busybox tar");
        std::fs::rename(&tmp, dir.join("busybox.tar")).expect("rename busybox tar");
        dir.join("busybox.tar")
    })
}

pub fn docker_cli() -> Option<&'static str> {
    static D: OnceLock<Option<&'static str>> = OnceLock::new();
    *D.get_or_init(|| {
        Command::new("docker").arg("--version").output().ok().filter(|o| o.status.success()).map(|_| "docker")
    })
}

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
    /// The binary the daemon runs (the built one unless a test swaps it).
    pub exe: PathBuf,
}

impl Daemon {
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("s.sock")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    /// Starts a daemon and imports `busybox:latest`.
    pub fn start() -> Daemon {
        let dir = tempfile::Builder::new().prefix("be2e").tempdir_in("/tmp").expect("tempdir");
        let mut d = Daemon { dir, child: None, exe: PathBuf::from(BERTH) };
        d.spawn();
        let out = d.berth_stdin(
            &["import", "-c", "CMD [\"sh\"]", "-", "busybox:latest"],
            &std::fs::read(busybox_tar()).expect("read tar"),
        );
        assert!(out.status.success(), "import busybox: {}", String::from_utf8_lossy(&out.stderr));
        d
    }

    /// The default bridge of this daemon: named after its unique temporary directory, so
    /// parallel test daemons never share a bridge or a firewall table.
    /// Writes daemon.json (read at the next `spawn`), keeping this daemon's own bridge: a test
    /// daemon on the default `berth0` would leave that bridge and its nft table behind.
    pub fn write_config(&self, json: &str) {
        let mut v: serde_json::Value = serde_json::from_str(json).expect("daemon.json is JSON");
        if v.get("bridge").is_none() {
            v["bridge"] = serde_json::Value::String(self.bridge());
        }
        std::fs::write(self.dir.path().join("daemon.json"), v.to_string()).expect("write daemon.json");
    }

    pub fn bridge(&self) -> String {
        let tail: String = self.dir.path().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tail: String = tail.trim_start_matches("be2e").chars().filter(char::is_ascii_alphanumeric).collect();
        format!("bt{}", &tail[..tail.len().min(12)])
    }

    /// The nftables table of this daemon (see `NetSettings::table`).
    pub fn nft_table(&self) -> String {
        format!("berth_{}", self.bridge())
    }

    pub fn spawn(&mut self) {
        let cfg = self.dir.path().join("daemon.json");
        if !cfg.exists() {
            std::fs::write(&cfg, format!("{{\"bridge\": \"{}\"}}", self.bridge())).expect("write daemon.json");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("daemon.log"))
            .expect("log");
        let child = Command::new(&self.exe)
            .args(["daemon", "--data-root"])
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("-H")
            .arg(self.host())
            .arg("--config-file")
            .arg(self.dir.path().join("daemon.json"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn daemon");
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn wait_ready(&mut self) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(20) {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("daemon exited with {st}: {}", self.log());
            }
            if let Ok(r) = self.http("GET", "/_ping", None)
                && r.0 == 200
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not come up: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL (containers stay).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        c.wait().ok()
    }

    pub fn berth(&self, args: &[&str]) -> Output {
        Command::new(BERTH).args(args).env("DOCKER_HOST", self.host()).stdin(Stdio::null()).output().expect("run berth")
    }

    pub fn berth_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_with_stdin(Command::new(BERTH).args(args).env("DOCKER_HOST", self.host()), input)
    }

    pub fn docker(&self, args: &[&str]) -> Option<Output> {
        let d = docker_cli()?;
        Some(
            Command::new(d)
                .args(args)
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
                .stdin(Stdio::null())
                .output()
                .expect("run docker"),
        )
    }

    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Option<Output> {
        let d = docker_cli()?;
        Some(run_with_stdin(
            Command::new(d)
                .args(args)
                .env("DOCKER_HOST", self.host())
                .env("DOCKER_CONFIG", self.dir.path().join("docker-config")),
            input,
        ))
    }

    /// A raw HTTP/1.0 request on the socket: (status, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
        let mut s = UnixStream::connect(self.socket())?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        let body = body.unwrap_or("");
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: docker\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
        let mut resp = String::new();
        s.read_to_string(&mut resp)?;
        let status = resp.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
        Ok((status, body))
    }

    /// GET that must answer 200: the body.
    pub fn http_ok(&self, path: &str) -> String {
        let (st, body) = self.http("GET", path, None).expect("http");
        assert_eq!(st, 200, "GET {path}: {body}");
        body
    }

    /// POST that must answer 200: the body.
    pub fn http_post(&self, path: &str) -> String {
        let (st, body) = self.http("POST", path, None).expect("http");
        assert_eq!(st, 200, "POST {path}: {body}");
        body
    }

    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let o = self.berth(&["inspect", name]);
        assert!(o.status.success(), "inspect {name}: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("inspect json");
        v[0].clone()
    }

    /// Mount points under this daemon's directories.
    /// The mounts under the daemon's roots that belong to containers, once removals under
    /// way have finished: a removed container's rootfs and network namespace go in the
    /// background, milliseconds after the answer. The daemon's pool of network namespaces made
    /// ahead of time (`netns-pool`) is its own, not a container's.
    pub fn mounts(&self) -> Vec<String> {
        let root = self.dir.path().display().to_string();
        let pool = self.exec_root().join("netns-pool").display().to_string();
        let list = || -> Vec<String> {
            std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
                .filter(|m| m.starts_with(&root) && !m.starts_with(&pool))
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let now = list();
            if now.is_empty() || std::time::Instant::now() > deadline {
                return now;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

fn run_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = w.join();
    out
}

/// Polls `f` until it holds (2 s at most), for what the daemon finishes after its answer (the
/// kernel's deletion of a stopped container's veth pair).
#[allow(dead_code)]
pub fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_none() && self.socket().exists() {
            self.spawn();
        }
        if self.child.is_some() {
            let ids = self.berth(&["ps", "-aq", "--no-trunc"]);
            let ids: Vec<String> = stdout(&ids).split_whitespace().map(str::to_owned).collect();
            if !ids.is_empty() {
                let mut args = vec!["rm", "-f"];
                args.extend(ids.iter().map(String::as_str));
                let _ = self.berth(&args);
            }
            let _ = self.berth(&["network", "prune", "-f"]);
            let _ = self.terminate();
        }
        // The default bridge and the firewall table outlive a daemon (as docker0 does): a
        // test daemon's go with it.
        let _ = Command::new("ip").args(["link", "del", &self.bridge()]).stderr(Stdio::null()).status();
        let _ = Command::new("nft").args(["delete", "table", "ip", &self.nft_table()]).stderr(Stdio::null()).status();
        // Whatever is still mounted under our directory (a failed test) goes now.
        for m in self.mounts().into_iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(&m).status();
        }
        for sub in ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd", "unified"] {
            let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(sub).join("berth"));
        }
    }
}
