//! The filesystem backend: one file per key under a root directory. Writes go to `<root>/_tmp/<random>`,
//! are fsynced, then renamed into place, so a crash leaves either the old object or the new one.

use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

use super::{ByteStream, ObjectMeta, ObjectWriter, Storage, StorageError, check_key};

const TMP_DIR: &str = "_tmp";
const WRITE_BUFFER: usize = 1 << 20;
const READ_CHUNK: usize = 256 << 10;

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
        let mut file = tokio::fs::File::open(&path).await.map_err(|e| io_err("open", key, e))?;
        if range.start > 0 {
            file.seek(std::io::SeekFrom::Start(range.start)).await.map_err(|e| io_err("seek", key, e))?;
        }
        let reader = tokio::io::AsyncReadExt::take(file, range.end.saturating_sub(range.start));
        Ok(tokio_util::io::ReaderStream::with_capacity(reader, READ_CHUNK).boxed())
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
        let file = tokio::fs::File::create(&tmp).await.map_err(|e| io_err("create temporary file for", key, e))?;
        Ok(Box::new(FsWriter {
            key: key.to_owned(),
            dest,
            tmp,
            file: tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file),
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
    file: tokio::io::BufWriter<tokio::fs::File>,
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

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), StorageError> {
        self.file.write_all(&chunk).await.map_err(|e| io_err("write", &self.key, e))
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let result = async {
            self.file.flush().await.map_err(|e| io_err("flush", &self.key, e))?;
            self.file.get_mut().sync_all().await.map_err(|e| io_err("fsync", &self.key, e))?;
            let (tmp, dest, key) = (self.tmp.clone(), self.dest.clone(), self.key.clone());
            blocking(move || rename_into_place(&tmp, &dest, &key)).await
        }
        .await;
        if result.is_ok() {
            self.done = true;
        }
        result
    }

    async fn abort(mut self: Box<Self>) -> Result<(), StorageError> {
        self.done = true;
        match tokio::fs::remove_file(&self.tmp).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_err("remove temporary file for", &self.key, e)),
            _ => Ok(()),
        }
    }
}
