//! The content store: blobs by digest, verified before they are visible.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use oci::{Digest, Sha256Writer};

use crate::{ImageError, io_err, random_hex};

pub struct ContentStore {
    root: PathBuf,
}

/// A blob being written: hashed as it goes, renamed into place by [`Ingest::commit`].
pub struct Ingest {
    path: PathBuf,
    writer: Sha256Writer<std::io::BufWriter<File>>,
}

impl Ingest {
    pub fn writer(&mut self) -> &mut impl Write {
        &mut self.writer
    }

    /// Verifies (when `expected` is given), fsyncs and renames the blob into the store.
    pub fn commit(self, store: &ContentStore, expected: Option<&Digest>) -> Result<(Digest, u64), ImageError> {
        let (digest, size, w) = self.writer.finish();
        let f = w.into_inner().map_err(|e| ImageError::Io {
            op: "flush",
            path: self.path.clone(),
            source: e.into_error(),
        })?;
        f.sync_all().map_err(io_err("fsync", &self.path))?;
        if let Some(exp) = expected
            && *exp != digest
        {
            let _ = std::fs::remove_file(&self.path);
            return Err(ImageError::DigestMismatch {
                path: self.path,
                expected: exp.to_string(),
                actual: digest.to_string(),
            });
        }
        let dst = store.path(&digest);
        std::fs::rename(&self.path, &dst).map_err(io_err("rename", &dst))?;
        Ok((digest, size))
    }

    pub fn abort(self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ContentStore {
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let root = root.join("content");
        for d in ["blobs/sha256", "ingest"] {
            std::fs::create_dir_all(root.join(d)).map_err(io_err("create", root.join(d)))?;
        }
        Ok(Self { root })
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm()).join(d.hex())
    }

    pub fn exists(&self, d: &Digest) -> bool {
        self.path(d).exists()
    }

    pub fn ingest(&self) -> Result<Ingest, ImageError> {
        let path = self.root.join("ingest").join(random_hex(16));
        let f = File::create(&path).map_err(io_err("create", &path))?;
        Ok(Ingest { path, writer: Sha256Writer::new(std::io::BufWriter::new(f)) })
    }

    /// Stores `data` and returns its digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest, ImageError> {
        let d = Digest::sha256_of(data);
        if self.exists(&d) {
            return Ok(d);
        }
        let mut i = self.ingest()?;
        i.writer().write_all(data).map_err(io_err("write", &i.path))?;
        i.commit(self, Some(&d))?;
        Ok(d)
    }

    pub fn read(&self, d: &Digest) -> Result<Vec<u8>, ImageError> {
        let p = self.path(d);
        let mut v = Vec::new();
        File::open(&p).and_then(|mut f| f.read_to_end(&mut v)).map_err(io_err("read", &p))?;
        Ok(v)
    }

    pub fn size(&self, d: &Digest) -> u64 {
        std::fs::metadata(self.path(d)).map(|m| m.len()).unwrap_or(0)
    }

    pub fn delete(&self, d: &Digest) -> Result<(), ImageError> {
        let p = self.path(d);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ImageError::Io { op: "remove", path: p, source: e }),
        }
    }

    /// A new empty directory under `ingest/` for unpacking an upload (`load`); removed at
    /// start if a crash leaves it.
    pub fn scratch_dir(&self) -> Result<PathBuf, ImageError> {
        let p = self.root.join("ingest").join(format!("dir-{}", random_hex(8)));
        std::fs::create_dir_all(&p).map_err(io_err("create", &p))?;
        Ok(p)
    }

    /// The directory holding the blobs (for the start-up sweep).
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Removes partial writes left by a crash.
    pub fn clean_ingest(&self) {
        if let Ok(rd) = std::fs::read_dir(self.root.join("ingest")) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = std::fs::remove_dir_all(e.path());
                } else {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_read_and_verify() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = ContentStore::open(d.path()).expect("open");
        let dg = s.put(b"hello").expect("put");
        assert_eq!(s.read(&dg).expect("read"), b"hello");
        let mut i = s.ingest().expect("ingest");
        i.writer().write_all(b"other").expect("write");
        let err = i.commit(&s, Some(&dg)).expect_err("mismatch");
        assert!(matches!(err, ImageError::DigestMismatch { .. }));
        assert_eq!(std::fs::read_dir(d.path().join("content/ingest")).expect("ls").count(), 0);
    }
}
