//! The filesystem backend: one file per key under a root directory. Writes go to `<root>/_tmp/<random>`,
//! are fsynced, then renamed into place, so a crash leaves either the old object or the new one.

use std::io::{ErrorKind, Read, Seek, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;

use super::{ByteStream, ObjectMeta, ObjectWriter, Storage, StorageError, check_key};

const TMP_DIR: &str = "_tmp";
/// Bytes gathered before one blocking write.
const WRITE_BATCH: usize = 512 << 10;
/// Bytes per blocking read when streaming a blob.
const READ_CHUNK: usize = 1 << 20;

/// Stores objects as files under `root`.
#[derive(Debug, Clone)]
pub struct FsStorage {
    root: PathBuf,
}

fn io_err(op: &'static str, key: &str, source: std::io::Error) -> StorageError {
    if source.kind() == ErrorKind::NotFound {
        StorageError::NotFound { key: key.to_owned() }
    } else {
        StorageError::Io { op, key: key.to_owned(), source }
    }
}

fn random_name() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

impl FsStorage {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let root = root.into();
        let tmp = root.join(TMP_DIR);
        std::fs::create_dir_all(&tmp).map_err(|e| io_err("create", &tmp.display().to_string(), e))?;
        Ok(FsStorage { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf, StorageError> {
        check_key(key)?;
        Ok(self.root.join(key.trim_end_matches('/')))
    }

    fn tmp_path(&self) -> PathBuf {
        self.root.join(TMP_DIR).join(random_name())
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, StorageError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StorageError::Backend {
        op: "run blocking task",
        key: String::new(),
        source: Box::new(e),
    })?
}

fn rename_into_place(tmp: &Path, dest: &Path, key: &str) -> Result<(), StorageError> {
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io_err("create directory for", key, e))?;
    }
    std::fs::rename(tmp, dest).map_err(|e| io_err("rename into", key, e))
}

type ChunkRead = tokio::task::JoinHandle<std::io::Result<(std::fs::File, Bytes, u64)>>;

/// Reads up to READ_CHUNK of the `remaining` bytes on the blocking pool; returns the file, the bytes
/// and what remains after them.
fn read_chunk(file: std::fs::File, remaining: u64) -> ChunkRead {
    tokio::task::spawn_blocking(move || {
        let want = remaining.min(READ_CHUNK as u64);
        let mut buf = Vec::with_capacity(want as usize);
        let mut limited = file.take(want);
        limited.read_to_end(&mut buf)?;
        if (buf.len() as u64) < want {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "blob shorter than its size"));
        }
        Ok((limited.into_inner(), Bytes::from(buf), remaining - want))
    })
}

fn walk(dir: &Path, rel: &str, out: &mut Vec<ObjectMeta>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let key = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if rel.is_empty() && name == TMP_DIR {
                continue;
            }
            walk(&entry.path(), &key, out)?;
        } else if ft.is_file() {
            let md = match entry.metadata() {
                Ok(md) => md,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            out.push(ObjectMeta { key, size: md.len(), modified: md.modified()? });
        }
    }
    Ok(())
}

#[async_trait]
impl Storage for FsStorage {
    async fn stat(&self, key: &str) -> Result<Option<ObjectMeta>, StorageError> {
        let path = self.path(key)?;
        match tokio::fs::metadata(&path).await {
            Ok(md) if md.is_file() => Ok(Some(ObjectMeta {
                key: key.to_owned(),
                size: md.len(),
                modified: md.modified().map_err(|e| io_err("stat", key, e))?,
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("stat", key, e)),
        }
    }

    async fn get(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = self.path(key)?;
        tokio::fs::read(&path).await.map(Bytes::from).map_err(|e| io_err("read", key, e))
    }

    async fn read(&self, key: &str, range: Range<u64>) -> Result<ByteStream, StorageError> {
        let path = self.path(key)?;
        let k = key.to_owned();
        let file = blocking(move || {
            let mut f = std::fs::File::open(&path).map_err(|e| io_err("open", &k, e))?;
            f.seek(std::io::SeekFrom::Start(range.start)).map_err(|e| io_err("seek", &k, e))?;
            Ok(f)
        })
        .await?;
        // One blocking read per READ_CHUNK, and the next chunk is read while this one is sent.
        let remaining = range.end.saturating_sub(range.start);
        let first = (remaining > 0).then(|| read_chunk(file, remaining));
        let stream = futures_util::stream::try_unfold(first, |next| async move {
            let Some(task) = next else { return Ok(None) };
            let (file, buf, remaining) = task.await.map_err(std::io::Error::other)??;
            let next = (remaining > 0).then(|| read_chunk(file, remaining));
            Ok(Some((buf, next)))
        });
        Ok(stream.boxed())
    }

    async fn put(&self, key: &str, data: Bytes) -> Result<(), StorageError> {
        let dest = self.path(key)?;
        let tmp = self.tmp_path();
        let key = key.to_owned();
        blocking(move || {
            let write = || -> std::io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                f.write_all(&data)?;
                f.sync_all()
            };
            if let Err(e) = write() {
                let _ = std::fs::remove_file(&tmp);
                return Err(io_err("write", &key, e));
            }
            rename_into_place(&tmp, &dest, &key).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })
        })
        .await
    }

    async fn writer(&self, key: &str) -> Result<Box<dyn ObjectWriter>, StorageError> {
        let dest = self.path(key)?;
        let tmp = self.tmp_path();
        let (t, k) = (tmp.clone(), key.to_owned());
        let file =
            blocking(move || std::fs::File::create(&t).map_err(|e| io_err("create temporary file for", &k, e))).await?;
        Ok(Box::new(FsWriter {
            key: key.to_owned(),
            dest,
            tmp,
            file: Some(file),
            pending: Vec::new(),
            pending_len: 0,
            done: false,
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("delete", key, e)),
            _ => Ok(()),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<(), StorageError> {
        let path = self.path(prefix)?;
        match tokio::fs::remove_dir_all(&path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("delete", prefix, e)),
            _ => Ok(()),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let rel = prefix.trim_end_matches('/').to_owned();
        let dir = if rel.is_empty() { self.root.clone() } else { self.path(&rel)? };
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut out = Vec::new();
            walk(&dir, &rel, &mut out).map_err(|e| io_err("list", &prefix, e))?;
            Ok(out)
        })
        .await
    }

    async fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let src = self.path(from)?;
        let dest = self.path(to)?;
        let key = to.to_owned();
        blocking(move || rename_into_place(&src, &dest, &key)).await
    }

    async fn touch(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key)?;
        let key = key.to_owned();
        blocking(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(|e| io_err("touch", &key, e))?;
            f.set_modified(std::time::SystemTime::now()).map_err(|e| io_err("touch", &key, e))
        })
        .await
    }
}

struct FsWriter {
    key: String,
    dest: PathBuf,
    tmp: PathBuf,
    /// `None` only while a blocking write has it.
    file: Option<std::fs::File>,
    /// Chunks received but not yet written (kept as received: no copying).
    pending: Vec<Bytes>,
    pending_len: usize,
    /// Set once committed or aborted; a writer dropped before that (a request cancelled mid-body)
    /// removes its temporary file.
    done: bool,
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl FsWriter {
    /// Writes the pending chunks in one blocking call.
    async fn flush_pending(&mut self) -> Result<(), StorageError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunks = std::mem::take(&mut self.pending);
        self.pending_len = 0;
        let mut file = self.file.take().ok_or_else(|| StorageError::Io {
            op: "write",
            key: self.key.clone(),
            source: std::io::Error::other("an earlier write failed"),
        })?;
        let key = self.key.clone();
        let file = blocking(move || {
            for c in &chunks {
                file.write_all(c).map_err(|e| io_err("write", &key, e))?;
            }
            Ok(file)
        })
        .await?;
        self.file = Some(file);
        Ok(())
    }
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.pending_len += chunk.len();
        self.pending.push(chunk);
        if self.pending_len >= WRITE_BATCH { self.flush_pending().await } else { Ok(()) }
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        self.flush_pending().await?;
        let file = self.file.take();
        let (tmp, dest, key) = (self.tmp.clone(), self.dest.clone(), self.key.clone());
        blocking(move || {
            if let Some(f) = file {
                f.sync_all().map_err(|e| io_err("fsync", &key, e))?;
            }
            rename_into_place(&tmp, &dest, &key)
        })
        .await?;
        self.done = true;
        Ok(())
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        self.done = true;
        self.file = None;
        match tokio::fs::remove_file(&self.tmp).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("remove temporary file for", &self.key, e)),
            _ => Ok(()),
        }
    }
}
