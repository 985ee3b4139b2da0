//! The shim: one process per container (and per exec session), the parent of its process.
//!
//! Lifecycle: the daemon writes a [`proto::ShimConfig`], binds the control socket, spawns
//! `berth shim CONFIG` with the listener as its stdin, and queues its requests at once: the
//! attachers, then `start`. It then reads one JSON line from the shim's stdout (`{"pid":N}` or
//! `{"error":…}`): for a container the shim has by then created it (init waiting to exec); for
//! an exec session nothing runs yet. The shim then takes the queued requests in order and
//! starts the process, so no round trip to the daemon sits between create and start. When the
//! process ends the shim drains its output, writes the exit file atomically, answers every
//! `wait`, closes the attach streams, and only then removes the runtime state (cgroups), while
//! the daemon cleans up its side; the container's lock file, held until the shim exits, keeps
//! a restart or a removal from overlapping that. A daemon that died meanwhile reads the exit
//! file when it comes back.
//!
//! The fork into the container happens while the shim is still single-threaded (before any
//! thread for a container, and from the main thread for an exec session).

mod io;
pub mod proto;
pub mod spawner;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::unistd::Pid;

use self::io::{Attacher, Output};
use self::proto::{ExitStatus, Request, Response, ShimConfig, ShimKind};
use crate::libct::Libcontainer;
use crate::{Runtime, Stdio};

struct Shared {
    cfg: ShimConfig,
    runtime: Libcontainer,
    pid: AtomicI32,
    exit: Mutex<Option<ExitStatus>>,
    exit_cv: Condvar,
    output: Arc<Output>,
    /// Where stdin goes: the pipe's write end, or the pty master.
    stdin: Mutex<Option<File>>,
    master: Option<File>,
    /// Requests being handled: the shim does not exit until each has had its answer.
    busy: AtomicI32,
}

/// Runs the shim with the configuration at `config_path`; never returns on success.
pub fn main(config_path: &Path) -> ! {
    let code = match run(config_path) {
        Ok(()) => 0,
        Err(e) => {
            // The daemon is reading our stdout for the ready line: the error goes there.
            let line = serde_json::to_string(&Response::error(e.clone())).unwrap_or_default();
            let _ = writeln!(std::io::stdout(), "{line}");
            eprintln!("shim: {e}");
            1
        }
    };
    std::process::exit(code)
}

fn run(config_path: &Path) -> Result<(), String> {
    let cfg: ShimConfig = std::fs::read(config_path)
        .map_err(|e| format!("read shim config `{}`: {e}", config_path.display()))
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| format!("parse shim config: {e}")))?;
    // A session of its own: a daemon killed with its process group leaves us running.
    let _ = nix::unistd::setsid();
    let listener = listen()?;
    // Held until this process exits: see `lock_container`.
    let mut lock = match &cfg.lock {
        Some(p) => proto::lock_container(p, Duration::from_secs(30))?,
        None => None,
    };
    let mut runtime = Libcontainer::new(&cfg.runtime_root);
    if let Some(p) = &cfg.seccomp {
        let bpf = std::fs::read(p).map_err(|e| format!("read seccomp program `{}`: {e}", p.display()))?;
        runtime = runtime.with_seccomp(bpf);
    }

    // Standard streams for the process.
    let mut stdio = Stdio { stdin: None, stdout: None, stderr: None, console_socket: None };
    let mut stdin_w = None;
    let mut readers: Vec<(OwnedFd, u8)> = Vec::new();
    let console = if cfg.tty {
        let _ = std::fs::remove_file(&cfg.console_socket);
        let l = UnixListener::bind(&cfg.console_socket)
            .map_err(|e| format!("bind console socket `{}`: {e}", cfg.console_socket.display()))?;
        stdio.console_socket = Some(cfg.console_socket.clone());
        Some(l)
    } else {
        let devnull = || File::open("/dev/null").map(OwnedFd::from).map_err(|e| format!("open /dev/null: {e}"));
        if cfg.stdin {
            let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
            stdio.stdin = Some(r);
            stdin_w = Some(File::from(w));
        } else {
            stdio.stdin = Some(devnull()?);
        }
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        stdio.stdout = Some(w);
        readers.push((r, 1));
        let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        stdio.stderr = Some(w);
        readers.push((r, 2));
        None
    };

    let output = Arc::new(Output::new(cfg.tty, cfg.log.as_deref(), cfg.log_rotate)?);
    let timing = std::env::var_os("BERTH_SHIM_TIMING").is_some_and(|v| !v.is_empty());
    let t_create = std::time::Instant::now();
    // A container is created now (its init waits to exec); an exec session's process is made
    // only at `start`.
    let (created, mut stdio) = match &cfg.kind {
        ShimKind::Init { bundle } => {
            // State left by a shim that died before it could clean up would make the create
            // fail with "container already exists"; nothing of it can still run, as the
            // daemon starts a container only once its previous shim has reported its exit.
            let _ = runtime.delete(&cfg.container_id, true);
            let pid = runtime.create(&cfg.container_id, bundle, stdio).map_err(|e| e.to_string())?;
            // The container's init was forked holding the lock's open file (until it execs): a
            // lock it kept after this shim died would stall the container's next start. The
            // lock moves to a file only this process has open. (Nothing else can take it in
            // between: the daemon starts or removes a container one operation at a time.)
            if let (Some(old), Some(path)) = (lock.take(), &cfg.lock) {
                let _ = old.unlock();
                drop(old);
                lock = proto::lock_container(path, Duration::from_secs(30))?;
            }
            if timing {
                eprintln!("shim: create took {:?}", t_create.elapsed());
            }
            (Some(pid), None)
        }
        ShimKind::Exec { .. } => (None, Some(stdio)),
    };
    ready(created.unwrap_or(0))?;

    // Until `start`, requests are served on this thread, so that the fork of an exec session
    // happens before any other thread exists. The daemon queues its attachers (and an exec's
    // wait) before the start: attachers are registered before any output is read, so they
    // miss none of it.
    let mut early: Vec<(UnixStream, Request)> = Vec::new();
    let start_conn = loop {
        let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        match read_request(&conn) {
            Some(Request::Start) => break conn,
            Some(req @ Request::Attach { .. }) => {
                // Acknowledged now: nothing can be written to the client before the ack.
                reply(&conn, &Response::ok());
                early.push((conn, req));
            }
            Some(req @ (Request::Resize { .. } | Request::Wait)) => early.push((conn, req)),
            Some(_) => reply(&conn, &Response::error("the process has not been started")),
            None => {}
        }
    };
    let pid = match (&cfg.kind, created) {
        (ShimKind::Init { .. }, Some(pid)) => match runtime.start(&cfg.container_id) {
            Ok(()) => pid,
            Err(e) => {
                reply(&start_conn, &Response::error(e.to_string()));
                let _ = runtime.delete(&cfg.container_id, true);
                return Err(e.to_string());
            }
        },
        (ShimKind::Exec { process }, _) => {
            let stdio = stdio.take().ok_or("exec session without its streams")?;
            match runtime.exec(&cfg.container_id, process, stdio) {
                Ok(pid) => pid,
                Err(e) => {
                    reply(&start_conn, &Response::error(e.to_string()));
                    return Err(e.to_string());
                }
            }
        }
        (ShimKind::Init { .. }, None) => return Err("container was not created".into()),
    };

    let master = match console {
        Some(l) => {
            let f = receive_pty_master(&l)?;
            let _ = std::fs::remove_file(&cfg.console_socket);
            Some(f)
        }
        None => None,
    };
    if let Some(m) = &master {
        let r = m.try_clone().map_err(|e| format!("dup pty master: {e}"))?;
        readers.push((OwnedFd::from(r), 1));
        stdin_w = Some(m.try_clone().map_err(|e| format!("dup pty master: {e}"))?);
    }

    let shared = Arc::new(Shared {
        runtime,
        pid: AtomicI32::new(pid),
        exit: Mutex::new(None),
        exit_cv: Condvar::new(),
        output: output.clone(),
        stdin: Mutex::new(stdin_w),
        master,
        cfg,
        busy: AtomicI32::new(0),
    });

    // From here on, threads.
    for (conn, req) in early {
        match req {
            // Acknowledged already, before the process existed.
            Request::Attach { stdin, stdout, stderr } => attach(&shared, conn, stdin, stdout, stderr, false),
            req => {
                let shared = shared.clone();
                std::thread::spawn(move || dispatch(&shared, conn, req));
            }
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (fd, stream) in readers {
        let out = output.clone();
        let tx = done_tx.clone();
        std::thread::spawn(move || {
            out.pump(File::from(fd), stream);
            let _ = tx.send(());
        });
    }
    let reader_count = if shared.master.is_some() { 1 } else { 2 };
    reply(&start_conn, &Response { pid: Some(pid), ..Response::ok() });
    drop(start_conn);
    {
        let shared = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || handle(&shared, conn));
            }
        });
    }

    let status = crate::process::wait_exit(pid);
    let t_exit = std::time::Instant::now();
    // Output ends when every holder of the pipes is gone. For a container that is when its
    // pid namespace is empty; an exec'd process may leave a background child holding them,
    // so an exec session waits a little only.
    let drain = match shared.cfg.kind {
        ShimKind::Init { .. } => Duration::from_secs(60),
        ShimKind::Exec { .. } => Duration::from_secs(2),
    };
    for _ in 0..reader_count {
        if done_rx.recv_timeout(drain).is_err() {
            break;
        }
    }
    output.flush();
    if timing {
        eprintln!("shim: drained {:?}", t_exit.elapsed());
    }
    let oom_killed = shared.cfg.cgroup.as_deref().is_some_and(crate::cgroups::oom_killed);
    let exit = ExitStatus {
        exit_code: status,
        finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        oom_killed,
    };
    // The exit is reported first, written down and the runtime's state removed after: the
    // daemon's cleanup (unmount, network) runs meanwhile. A restart's new shim, and the
    // removal of the container, wait for this process to end (the lock). A daemon that
    // restarts in between asks this shim while its socket is there, and reads the file once
    // it is gone.
    *shared.exit.lock().map_err(|_| "exit lock poisoned")? = Some(exit.clone());
    shared.exit_cv.notify_all();
    output.close_attachers();
    if let Err(e) = write_exit_file(&shared.cfg.exit_file, &exit) {
        eprintln!("shim: {e}");
    }
    if let ShimKind::Init { bundle } = &shared.cfg.kind
        && let Err(e) = shared.runtime.delete_exited(&shared.cfg.container_id, bundle)
    {
        eprintln!("shim: {e}");
    }
    if timing {
        eprintln!("shim: deleted {:?}", t_exit.elapsed());
    }
    let _ = std::fs::remove_file(&shared.cfg.socket);
    // Let the handlers (every `wait`) write their answers before the process goes.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while shared.busy.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Whoever waits for this container's shim to be done may go on.
    drop(lock);
    Ok(())
}

/// The control socket, handed over by the daemon as stdin (see [`proto::ShimConfig::socket`]).
fn listen() -> Result<UnixListener, String> {
    use nix::fcntl::{FcntlArg, fcntl};
    let fd = fcntl(0, FcntlArg::F_DUPFD_CLOEXEC(3)).map_err(|e| format!("take the listener from stdin: {e}"))?;
    // SAFETY: F_DUPFD_CLOEXEC just made this descriptor, and nothing else owns it.
    let l = unsafe { UnixListener::from_raw_fd(fd) };
    nix::sys::socket::getsockname::<nix::sys::socket::UnixAddr>(l.as_raw_fd())
        .map_err(|e| format!("stdin is not the control socket: {e}"))?;
    if let Ok(null) = File::open("/dev/null") {
        // SAFETY: dup2 onto fd 0 with a valid open fd.
        unsafe { libc::dup2(null.as_raw_fd(), 0) };
    }
    Ok(l)
}

fn ready(pid: i32) -> Result<(), String> {
    let line = serde_json::to_string(&Response { pid: Some(pid), ..Response::ok() }).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout();
    writeln!(out, "{line}").and_then(|_| out.flush()).map_err(|e| format!("report ready: {e}"))?;
    // The daemon reads only this line; later output would fill a pipe nobody reads.
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: dup2 onto fd 1 with a valid open fd; stdout is not used concurrently.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    Ok(())
}

fn write_exit_file(path: &Path, exit: &ExitStatus) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let data = serde_json::to_vec(exit).map_err(|e| e.to_string())?;
    let mut f = File::create(&tmp).map_err(|e| format!("write `{}`: {e}", tmp.display()))?;
    // No fsync: the file must survive the daemon, not the host (a rebooted host has no
    // container left to report on); the rename alone makes it all-or-nothing.
    f.write_all(&data).map_err(|e| format!("write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename `{}`: {e}", path.display()))
}

fn receive_pty_master(l: &UnixListener) -> Result<File, String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let (conn, _) = l.accept().map_err(|e| format!("accept console socket: {e}"))?;
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
        .map_err(|e| format!("receive pty master: {e}"))?;
    for c in msg.cmsgs().map_err(|e| format!("receive pty master: {e}"))? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor in our table for us.
            return Ok(unsafe { File::from_raw_fd(fd) });
        }
    }
    Err("receive pty master: no descriptor in the message".into())
}

fn read_request(conn: &UnixStream) -> Option<Request> {
    let mut line = String::new();
    BufReader::new(conn).read_line(&mut line).ok()?;
    match serde_json::from_str(&line) {
        Ok(r) => Some(r),
        Err(e) => {
            reply(conn, &Response::error(format!("bad request: {e}")));
            None
        }
    }
}

fn reply(mut conn: &UnixStream, resp: &Response) {
    if let Ok(mut line) = serde_json::to_vec(resp) {
        line.push(b'\n');
        let _ = conn.write_all(&line);
    }
}

fn handle(shared: &Arc<Shared>, conn: UnixStream) {
    if let Some(req) = read_request(&conn) {
        dispatch(shared, conn, req);
    }
}

/// Answers one request; counted as busy until the answer is written.
fn dispatch(shared: &Arc<Shared>, conn: UnixStream, req: Request) {
    shared.busy.fetch_add(1, Ordering::SeqCst);
    answer(shared, conn, req);
    shared.busy.fetch_sub(1, Ordering::SeqCst);
}

fn answer(shared: &Arc<Shared>, conn: UnixStream, req: Request) {
    let id = &shared.cfg.container_id;
    let resp = match req {
        Request::Attach { stdin, stdout, stderr } => {
            attach(shared, conn, stdin, stdout, stderr, true);
            return;
        }
        Request::Start => Response::error("already started"),
        Request::Wait => Response { exit: wait_exit(shared), ..Response::ok() },
        Request::Resize { height, width } => resize(shared, height, width),
        Request::Kill { signal, all } => {
            if shared.exit.lock().map(|e| e.is_some()).unwrap_or(true) {
                Response::error("process is not running")
            } else {
                match &shared.cfg.kind {
                    ShimKind::Init { .. } => match shared.runtime.kill(id, signal, all) {
                        Ok(()) => Response::ok(),
                        Err(e) => Response::error(e.to_string()),
                    },
                    ShimKind::Exec { .. } => {
                        let pid = shared.pid.load(Ordering::SeqCst);
                        match nix::sys::signal::kill(
                            Pid::from_raw(pid),
                            nix::sys::signal::Signal::try_from(signal).ok(),
                        ) {
                            Ok(()) => Response::ok(),
                            Err(e) => Response::error(format!("signal process {pid}: {e}")),
                        }
                    }
                }
            }
        }
        Request::State => Response {
            pid: Some(shared.pid.load(Ordering::SeqCst)),
            exit: shared.exit.lock().ok().and_then(|e| e.clone()),
            ..Response::ok()
        },
        Request::CloseStdin => {
            if let Ok(mut s) = shared.stdin.lock() {
                s.take();
            }
            Response::ok()
        }
        Request::Pause => match shared.runtime.pause(id) {
            Ok(()) => Response::ok(),
            Err(e) => Response::error(e.to_string()),
        },
        Request::Resume => match shared.runtime.resume(id) {
            Ok(()) => Response::ok(),
            Err(e) => Response::error(e.to_string()),
        },
    };
    reply(&conn, &resp);
}

fn wait_exit(shared: &Shared) -> Option<ExitStatus> {
    let mut exit = shared.exit.lock().ok()?;
    while exit.is_none() {
        exit = shared.exit_cv.wait(exit).ok()?;
    }
    exit.clone()
}

fn resize(shared: &Shared, height: u16, width: u16) -> Response {
    let Some(m) = &shared.master else { return Response::error("the process has no terminal") };
    let ws = libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct that lives for the duration of the call.
    let rc = unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        Response::error(format!("resize terminal: {}", std::io::Error::last_os_error()))
    } else {
        Response::ok()
    }
}

/// Registers an attacher. With `ack`, the acknowledgement is written while the output is
/// held, so that no output can reach the client before it (nor be missed after it).
fn attach(shared: &Arc<Shared>, conn: UnixStream, stdin: bool, stdout: bool, stderr: bool, ack: bool) {
    if stdin && let Ok(mut rd) = conn.try_clone() {
        let shared = shared.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 32 * 1024];
            loop {
                let n = match std::io::Read::read(&mut rd, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let Ok(mut guard) = shared.stdin.lock() else { break };
                let Some(w) = guard.as_mut() else { break };
                if w.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            // The client closed its side: with stdin_once the process sees EOF (not with a
            // terminal, where EOF is a character the user types).
            if shared.cfg.stdin_once
                && shared.master.is_none()
                && let Ok(mut g) = shared.stdin.lock()
            {
                g.take();
            }
        });
    }
    let ok = Response::ok();
    shared.output.add(Attacher::new(conn, stdout, stderr), |c| {
        if ack {
            reply(c, &ok);
        }
    });
}
