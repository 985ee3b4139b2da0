//! The shim spawner: a small process the daemon forks at its very start, while it is still
//! single-threaded, that forks a shim for each container (and exec session) on request.
//!
//! A shim started this way skips an `execve` of berth's binary: no loading and relocating of a
//! 37 MB executable, no page faults to bring its code back in, no runtime start-up; a fork of
//! the spawner (a few MB, mostly shared) costs a fraction of that, and every `run`, `exec` and
//! build step waits for it. The spawner is forked before the daemon has a thread, an open
//! file or a lock, so a shim forked from it inherits nothing of the daemon's. By the same
//! token, what the daemon changes process-wide after that fork (rlimits, umask, environment)
//! does not reach its shims: such a setting belongs before [`start`], or in the shim's config.
//!
//! Protocol, over a `SOCK_SEQPACKET` pair: the daemon sends the shim's configuration path with
//! three descriptors (the shim's stdin, stdout and stderr) as `SCM_RIGHTS`; the spawner answers
//! with the shim's pid, or an error. It reaps its children (`SIGCHLD` ignored) and exits when
//! the daemon's end closes; shims it forked run on, as those of an exec'd shim would.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::signal::{SigHandler, Signal, signal};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
};
use nix::unistd::{ForkResult, fork};

/// The daemon's end of the spawner.
pub struct Spawner {
    sock: Mutex<OwnedFd>,
    pid: i32,
}

/// Forks the spawner. Call it before any thread exists (first thing in `main`): the spawner is
/// a copy of this process at this point. `None` if it cannot be made (the daemon then execs
/// its shims).
pub fn start() -> Option<Spawner> {
    let (ours, theirs) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).ok()?;
    // SAFETY: the caller guarantees this process is single-threaded; the child only runs
    // `serve`, which never returns.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            serve(theirs)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(theirs);
            Some(Spawner { sock: Mutex::new(ours), pid: child.as_raw() })
        }
        Err(_) => None,
    }
}

impl Spawner {
    /// The spawner's pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Forks a shim that runs [`super::main`] with `config` and the given standard streams;
    /// returns its pid. Blocking (a fork's worth of time).
    pub fn spawn(&self, config: &Path, stdin: &OwnedFd, stdout: &OwnedFd, stderr: &OwnedFd) -> std::io::Result<i32> {
        let sock = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        let path = config.as_os_str().as_encoded_bytes();
        let fds = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(path)], &cmsg, MsgFlags::MSG_NOSIGNAL, None)?;
        let mut buf = [0u8; 512];
        let n = nix::sys::socket::recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        if n == 0 {
            return Err(std::io::Error::other("the shim spawner has exited"));
        }
        parse_reply(&buf[..n])
    }
}

/// `+<pid>` or `-<message>`.
fn parse_reply(b: &[u8]) -> std::io::Result<i32> {
    match b.split_first() {
        Some((b'+', pid)) => std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| std::io::Error::other("the shim spawner answered nonsense")),
        Some((b'-', msg)) => Err(std::io::Error::other(format!("fork shim: {}", String::from_utf8_lossy(msg)))),
        _ => Err(std::io::Error::other("the shim spawner answered nonsense")),
    }
}

fn serve(sock: OwnedFd) -> ! {
    let args = ArgArea::of_this_process();
    args.rename(c"berth-spawner", &[b"berth", b"shim-spawner"]);
    // Children are reaped by the kernel; each shim restores the default before it runs.
    // SAFETY: SIG_IGN is not a handler; nothing else runs in this process.
    let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigIgn) };
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2(null.as_raw_fd(), 0);
        let _ = nix::unistd::dup2(null.as_raw_fd(), 1);
    }
    // libcontainer's processes (the shim, the runtime's intermediate and init) resolve paths
    // in /proc through pathrs, which opens a private procfs instance (fsopen, fsconfig,
    // fsmount: a new superblock) the first time a process asks, and keeps it. Opened here once,
    // it is inherited by every shim and the processes they start, instead of made for each.
    // After the dup2s: had it taken fd 0 or 1, they would replace it (pathrs would then stop
    // trusting its cache, and each process would make its own again).
    let _ = pathrs::procfs::ProcfsHandle::new();
    let mut buf = vec![0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; 3]);
        let (n, fds) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok(m) => {
                    let mut fds = Vec::new();
                    if let Ok(cmsgs) = m.cmsgs() {
                        for c in cmsgs {
                            if let ControlMessageOwned::ScmRights(v) = c {
                                // SAFETY: descriptors just received are ours alone.
                                fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
                            }
                        }
                    }
                    (m.bytes, fds)
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => std::process::exit(1),
            }
        };
        // The daemon's end closed: it has exited.
        if n == 0 {
            std::process::exit(0);
        }
        let reply = match <[OwnedFd; 3]>::try_from(fds) {
            Ok(stdio) => {
                // SAFETY: as `OsStr::from_encoded_bytes_unchecked` requires, the bytes came from
                // `as_encoded_bytes` in this same binary.
                let path = PathBuf::from(unsafe { std::ffi::OsStr::from_encoded_bytes_unchecked(&buf[..n]) });
                match fork_shim(&sock, &args, &path, stdio) {
                    Ok(pid) => format!("+{pid}"),
                    Err(e) => format!("-{e}"),
                }
            }
            Err(_) => "-expected three descriptors".to_owned(),
        };
        let _ = nix::sys::socket::send(sock.as_raw_fd(), reply.as_bytes(), MsgFlags::MSG_NOSIGNAL);
    }
}

fn fork_shim(sock: &OwnedFd, args: &ArgArea, config: &Path, stdio: [OwnedFd; 3]) -> nix::Result<i32> {
    // SAFETY: the spawner is single-threaded.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child.as_raw()),
        ForkResult::Child => {
            // SAFETY: restoring the default disposition.
            let _ = unsafe { signal(Signal::SIGCHLD, SigHandler::SigDfl) };
            let _ = nix::unistd::close(sock.as_raw_fd());
            for (i, fd) in stdio.iter().enumerate() {
                // dup2 clears FD_CLOEXEC on the copy; the originals close on exec or below.
                if nix::unistd::dup2(fd.as_raw_fd(), i as RawFd).is_err() {
                    std::process::exit(127);
                }
            }
            for fd in stdio {
                if fd.as_raw_fd() > 2 {
                    drop(fd);
                } else {
                    std::mem::forget(fd);
                }
            }
            args.rename(c"berth-shim", &[b"berth", b"shim", config.as_os_str().as_encoded_bytes()]);
            super::main(config)
        }
    }
}

/// Where this process's command line is: a fork has it at the same address, so the spawner
/// reads /proc once for all its shims.
struct ArgArea {
    start: usize,
    len: usize,
}

impl ArgArea {
    fn of_this_process() -> Self {
        let stat = procfs::process::Process::myself().and_then(|p| p.stat()).ok();
        let (start, end) = stat.and_then(|s| Some((s.arg_start? as usize, s.arg_end? as usize))).unwrap_or((0, 0));
        ArgArea { start, len: end.saturating_sub(start) }
    }

    /// Names this process `comm` and shows `args` as its command line in `ps`: as much of
    /// them as fits where the daemon's command line was (the kernel reads /proc/PID/cmdline
    /// from that memory; moving it elsewhere needs CAP_SYS_RESOURCE).
    fn rename(&self, comm: &std::ffi::CStr, args: &[&[u8]]) {
        // SAFETY: prctl(PR_SET_NAME) with a NUL-terminated string.
        unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr()) };
        if self.len == 0 {
            return;
        }
        let mut title: Vec<u8> = args.join(&0u8);
        title.resize(self.len, 0);
        title[self.len - 1] = 0;
        // SAFETY: [start, start + len) is this process's own argument area on its stack (the
        // spawner's, copied by fork to the same address), writable, and nothing in this
        // process reads its arguments again.
        unsafe { std::ptr::copy_nonoverlapping(title.as_ptr(), self.start as *mut u8, self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_parse_or_name_what_is_wrong() {
        assert_eq!(parse_reply(b"+123").expect("pid"), 123);
        let e = parse_reply(b"-EAGAIN: Try again").expect_err("error");
        assert!(e.to_string().contains("fork shim: EAGAIN"), "{e}");
        assert!(parse_reply(b"+x").is_err());
        assert!(parse_reply(b"").is_err());
    }
}
