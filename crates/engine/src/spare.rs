//! Container directories made ahead of time.
//!
//! A container's directory on the data root holds its writable layer (`upper`), overlayfs's
//! `work`, the `rootfs` mount point and its json-file log: made at create and deleted after
//! the removal, that is five inodes created and five deleted on the data root's file system
//! per `run --rm`, beside the seven overlayfs creates and deletes itself at each mount. On an
//! ext4 without a journal every inode allocation skips the inodes of its block group deleted
//! in the last minutes (ext4's `recently_deleted`), so each of them costs more the more were
//! deleted: after a few thousand, a start's allocations add milliseconds.
//!
//! [`SpareDirs`] keeps a few such directories ready, as `containers/.spare-*`; a create renames
//! one into place, and its empty log to the container's log name. A removed container's
//! directory becomes a spare again while fewer than [`KEEP`] are ready: its `rootfs` (unmounted
//! and empty) stays; its log, `upper` and `work` are deleted and made anew. Those are never
//! reused: an overlay that was detached but still lives (held by a mount namespace cloned
//! while the container ran) keeps using its own `upper` and `work`, and a `logs` reader that
//! still has the removed container's log open must not read the next container's lines from
//! it. All of that happens off the start's path, in the removal's background task or on a
//! thread of the pool's own.
//!
//! Spares a daemon leaves behind are checked as a removed container's directory is, and kept
//! or deleted, by the next one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The name prefix of spare directories in the data root's `containers`.
pub const SPARE_PREFIX: &str = ".spare-";
/// How many spares are kept ready.
pub const KEEP: usize = 4;
/// A take that leaves fewer ready than this starts the pool's thread. Above it, removals keep
/// the pool up: a `run --rm` loop takes one and gives one back, and a spare made meanwhile
/// would only make the removal delete its directory instead.
const LOW: usize = 2;
/// A spare's log, renamed to the container's at create.
const LOG: &str = "spare-json.log";

pub struct SpareDirs {
    /// The data root's `containers`.
    dir: PathBuf,
    ready: Mutex<Vec<PathBuf>>,
    filling: AtomicBool,
    /// Names spares: this daemon's start time and a counter, so that no name is one that an
    /// earlier daemon left.
    tag: u128,
    seq: AtomicU64,
}

impl SpareDirs {
    /// The pool in `containers`: keeps the spares an earlier daemon left there that pass the
    /// checks (deletes the others), then fills itself in the background.
    pub fn open(containers: PathBuf) -> Arc<Self> {
        let tag = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let pool = Arc::new(SpareDirs {
            dir: containers,
            ready: Mutex::new(Vec::new()),
            filling: AtomicBool::new(false),
            tag,
            seq: AtomicU64::new(0),
        });
        let left: Vec<PathBuf> = std::fs::read_dir(&pool.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(SPARE_PREFIX))
            .map(|e| e.path())
            .collect();
        for d in left {
            if !pool.keep(&d) {
                let _ = std::fs::remove_dir_all(&d);
            }
        }
        pool.fill();
        pool
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many spares are ready.
    pub fn ready(&self) -> usize {
        self.lock().len()
    }

    fn next_name(&self) -> PathBuf {
        self.dir.join(format!("{SPARE_PREFIX}{:x}-{}", self.tag, self.seq.fetch_add(1, Ordering::Relaxed)))
    }

    /// Moves a spare to `dir` (which must not exist), with its log at `log` when that is in
    /// `dir` (the json-file driver's); false when there was no spare or it could not be moved:
    /// the caller makes the directory.
    pub fn take(self: &Arc<Self>, dir: &Path, log: Option<&Path>) -> bool {
        let (spare, low) = {
            let mut ready = self.lock();
            let spare = ready.pop();
            (spare, ready.len() < LOW)
        };
        if low {
            self.fill();
        }
        let Some(spare) = spare else { return false };
        if let Err(e) = std::fs::rename(&spare, dir) {
            tracing::warn!("move spare `{}` to `{}`: {e}", spare.display(), dir.display());
            let _ = std::fs::remove_dir_all(&spare);
            return false;
        }
        let spare_log = dir.join(LOG);
        let moved = match log {
            Some(l) if l.parent() == Some(dir) => std::fs::rename(&spare_log, l),
            _ => std::fs::remove_file(&spare_log),
        };
        if let Err(e) = moved {
            // The driver makes its file; this one goes with the directory.
            tracing::warn!("spare log `{}`: {e}", spare_log.display());
        }
        true
    }

    /// Makes `dir` (a removed container's directory, its shim gone, or a spare found at start)
    /// a spare, when fewer than [`KEEP`] are ready and it passes [`clean`]; false when it was
    /// not kept, for the caller to delete.
    pub fn keep(&self, dir: &Path) -> bool {
        if self.ready() >= KEEP {
            return false;
        }
        if let Err(e) = clean(dir) {
            tracing::debug!("not keeping `{}` as a spare: {e}", dir.display());
            return false;
        }
        let spare = self.next_name();
        if std::fs::rename(dir, &spare).is_err() {
            return false;
        }
        self.lock().push(spare);
        true
    }

    /// Makes spares on a thread of the pool's own until [`KEEP`] are ready (unless one is at
    /// it already); it stops at the first error.
    fn fill(self: &Arc<Self>) {
        if self.filling.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        let spawned = std::thread::Builder::new().name("spare-dirs".into()).spawn(move || {
            loop {
                let mut failed = false;
                while pool.ready() < KEEP {
                    match pool.make() {
                        Ok(spare) => pool.lock().push(spare),
                        Err(e) => {
                            tracing::warn!("make a spare container directory: {e}");
                            failed = true;
                            break;
                        }
                    }
                }
                pool.filling.store(false, Ordering::SeqCst);
                // A take that came between the last count and the store above left it to us.
                if failed || pool.ready() >= KEEP || pool.filling.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
        if spawned.is_err() {
            self.filling.store(false, Ordering::SeqCst);
        }
    }

    fn make(&self) -> std::io::Result<PathBuf> {
        let spare = self.next_name();
        std::fs::create_dir(&spare)?;
        let made = std::fs::create_dir(spare.join("rootfs")).and_then(|()| make_contents(&spare));
        match made {
            Ok(()) => Ok(spare),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&spare);
                Err(e)
            }
        }
    }
}

/// Makes a container directory fit to be a spare: `rootfs` must be there, unmounted and empty;
/// everything else (`upper`, `work`, the logs) is deleted, then an empty `upper`, `work` and
/// spare log made. A spare found at start that has just those, all empty, is left as it is.
fn clean(dir: &Path) -> std::io::Result<()> {
    let rootfs = dir.join("rootfs");
    if image::snapshot::is_mounted(&rootfs) {
        return Err(std::io::Error::other("its rootfs is mounted"));
    }
    if std::fs::read_dir(&rootfs)?.next().is_some() {
        return Err(std::io::Error::other("its rootfs is not empty"));
    }
    if is_spare_as_made(dir) {
        return Ok(());
    }
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_name() == "rootfs" {
            continue;
        }
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    make_contents(dir)
}

/// What a spare holds beside `rootfs`, new and empty: `upper`, `work` and the log.
fn make_contents(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir(dir.join("upper"))?;
    std::fs::create_dir(dir.join("work"))?;
    std::fs::File::create(dir.join(LOG)).map(drop)
}

/// `dir` holds exactly what [`SpareDirs::make`] makes (`rootfs` and [`make_contents`]), all
/// of it empty (a spare an earlier daemon left untouched).
fn is_spare_as_made(dir: &Path) -> bool {
    let empty_dir = |n: &str| std::fs::read_dir(dir.join(n)).is_ok_and(|mut r| r.next().is_none());
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    names == ["rootfs", LOG, "upper", "work"]
        && empty_dir("upper")
        && empty_dir("work")
        && std::fs::symlink_metadata(dir.join(LOG)).is_ok_and(|m| m.is_file() && m.len() == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn wait_ready(pool: &SpareDirs, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while pool.ready() < n {
            assert!(std::time::Instant::now() < deadline, "{} spares ready, not {n}", pool.ready());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_create_takes_a_spare_with_its_log_and_the_pool_fills_again() {
        let d = tempfile::tempdir().expect("tempdir");
        let pool = SpareDirs::open(d.path().to_owned());
        wait_ready(&pool, KEEP);
        assert_eq!(names(d.path()).len(), KEEP);
        let mut taken = Vec::new();
        for i in 0..KEEP + 2 {
            let dir = d.path().join(format!("c{i}"));
            let log = dir.join(format!("c{i}-json.log"));
            if pool.take(&dir, Some(&log)) {
                assert_eq!(names(&dir), [format!("c{i}-json.log"), "rootfs".into(), "upper".into(), "work".into()]);
                assert_eq!(std::fs::metadata(&log).expect("file system").len(), 0);
                taken.push(dir);
            }
        }
        assert!(taken.len() >= KEEP, "took {} spares", taken.len());
        // Below LOW, the pool's thread made more.
        wait_ready(&pool, KEEP);
        // A driver whose log is elsewhere gets no spare log.
        let dir = d.path().join("local");
        assert!(pool.take(&dir, Some(&dir.join("local-logs/container.log"))));
        assert_eq!(names(&dir), ["rootfs", "upper", "work"]);
    }

    #[test]
    fn a_removed_directory_is_emptied_and_kept_with_new_upper_and_work() {
        let d = tempfile::tempdir().expect("tempdir");
        let pool = SpareDirs::open(d.path().to_owned());
        wait_ready(&pool, KEEP);
        let dir = d.path().join("c");
        assert!(pool.take(&dir, Some(&dir.join("c-json.log"))));
        std::fs::write(dir.join("c-json.log"), "a secret line\n").expect("file system");
        std::fs::write(dir.join("c-json.log.1"), "older\n").expect("file system");
        std::fs::create_dir_all(dir.join("upper/etc")).expect("file system");
        std::fs::write(dir.join("upper/etc/passwd"), "x").expect("file system");
        std::fs::create_dir_all(dir.join("work/work")).expect("file system");
        std::fs::create_dir_all(dir.join("local-logs")).expect("file system");
        let (upper, work) = (
            std::fs::metadata(dir.join("upper")).expect("file system").ino(),
            std::fs::metadata(dir.join("work")).expect("file system").ino(),
        );
        // A `logs -f` of the removed container still has its log open.
        let mut reader = std::fs::File::open(dir.join("c-json.log")).expect("file system");
        let mut seen = String::new();
        std::io::Read::read_to_string(&mut reader, &mut seen).expect("read");
        assert!(pool.keep(&dir));
        assert!(!dir.exists());
        // The next create gets it (the last one kept is taken first).
        let next = d.path().join("n");
        assert!(pool.take(&next, Some(&next.join("n-json.log"))));
        assert_eq!(names(&next), ["n-json.log", "rootfs", "upper", "work"]);
        assert_eq!(std::fs::read(next.join("n-json.log")).expect("file system"), b"");
        // The next container's lines are not in the file that reader has open.
        std::fs::write(next.join("n-json.log"), "the next container's line, longer than the first\n")
            .expect("file system");
        seen.clear();
        std::io::Read::read_to_string(&mut reader, &mut seen).expect("read");
        assert_eq!(seen, "");
        assert!(names(&next.join("upper")).is_empty() && names(&next.join("work")).is_empty());
        assert_ne!(std::fs::metadata(next.join("upper")).expect("file system").ino(), upper);
        assert_ne!(std::fs::metadata(next.join("work")).expect("file system").ino(), work);
    }

    #[test]
    fn a_directory_with_something_in_its_rootfs_is_not_kept_nor_touched() {
        let d = tempfile::tempdir().expect("tempdir");
        let pool = SpareDirs::open(d.path().to_owned());
        let dir = d.path().join("c");
        std::fs::create_dir_all(dir.join("rootfs/bin")).expect("file system");
        std::fs::create_dir_all(dir.join("upper/x")).expect("file system");
        wait_ready(&pool, KEEP);
        // A full pool keeps nothing.
        assert!(!pool.keep(&dir));
        pool.take(&d.path().join("t"), None);
        assert!(!pool.keep(&dir));
        assert_eq!(names(&dir), ["rootfs", "upper"]);
        assert!(dir.join("upper/x").exists());
    }

    #[test]
    fn a_new_pool_keeps_the_sound_spares_an_earlier_one_left_and_deletes_the_others() {
        let d = tempfile::tempdir().expect("tempdir");
        {
            let pool = SpareDirs::open(d.path().to_owned());
            wait_ready(&pool, KEEP);
        }
        let inodes = |d: &Path| -> Vec<u64> {
            let mut v: Vec<u64> = names(d)
                .iter()
                .filter(|n| n.starts_with(SPARE_PREFIX))
                .flat_map(|n| {
                    ["upper", "work", LOG].map(|f| std::fs::metadata(d.join(n).join(f)).expect("file system").ino())
                })
                .collect();
            v.sort();
            v
        };
        let before = inodes(d.path());
        // Half made: no rootfs.
        let broken = d.path().join(format!("{SPARE_PREFIX}broken"));
        std::fs::create_dir_all(broken.join("upper")).expect("file system");
        let pool = SpareDirs::open(d.path().to_owned());
        assert_eq!(pool.ready(), KEEP);
        let left = names(d.path());
        assert_eq!(left.len(), KEEP, "{left:?}");
        assert!(left.iter().all(|n| n.starts_with(SPARE_PREFIX)) && !broken.exists());
        // Untouched spares are kept as they are, not made again.
        assert_eq!(inodes(d.path()), before);
    }
}
