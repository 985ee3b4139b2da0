//! Process helpers shared by the shim, the daemon and `berth runtime`.

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Parses a signal given by name (`SIGTERM`, `term`) or number (1 to 64).
pub fn parse_signal(s: &str) -> Result<i32, String> {
    let invalid = || format!("Invalid signal: {s}");
    if let Ok(n) = s.parse::<i32>() {
        return if (1..=64).contains(&n) { Ok(n) } else { Err(invalid()) };
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<nix::sys::signal::Signal>().map(|sig| sig as i32).map_err(|_| invalid())
}

/// Waits for a child and returns its exit code, 128 + the signal that killed it.
///
/// `__WALL`: libcontainer clones a container's init with `CLONE_PARENT` and no exit signal,
/// and a plain wait does not see such a child.
pub fn wait_exit(pid: i32) -> i32 {
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL)) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

/// The processes in the same pid namespace as `pid` (a container's, from its init), sorted.
pub fn pids_in_namespace_of(pid: i64) -> Vec<i64> {
    use std::os::unix::fs::MetadataExt;
    let ns_of = |p: i64| std::fs::metadata(format!("/proc/{p}/ns/pid")).map(|m| m.ino()).ok();
    let Some(ns) = ns_of(pid) else { return Vec::new() };
    let mut v: Vec<i64> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i64>().ok()))
        .filter(|p| ns_of(*p) == Some(ns))
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(parse_signal("SIGKILL"), Ok(9));
        assert_eq!(parse_signal("term"), Ok(15));
        assert_eq!(parse_signal("2"), Ok(2));
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
        let me = std::process::id() as i64;
        assert!(pids_in_namespace_of(me).contains(&me));
    }
}
