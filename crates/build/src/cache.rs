//! The build cache: instruction key → the image that step produced, in metadata.db, so it
//! survives a daemon restart.
//!
//! A key is `sha256(parent image id, the step's history line, extra)`: the history line holds
//! the instruction with its arguments expanded, the build args a RUN sees, and for COPY/ADD the
//! content hash of the sources; the parent id stands for everything before. The images a
//! step made are ordinary (untagged) images, so `rmi` and GC see them like any other.

use std::sync::Mutex;

use oci::Digest;
use rusqlite::{Connection, OptionalExtension, params};

use crate::BuildError;

pub struct Cache {
    db: Mutex<Connection>,
}

/// The cache key of a step.
pub fn key(parent: Option<&Digest>, created_by: &str, extra: &str) -> String {
    let p = parent.map(ToString::to_string).unwrap_or_default();
    Digest::sha256_of(format!("{p}\n{created_by}\n{extra}").as_bytes()).to_string()
}

impl Cache {
    pub fn open(root: &std::path::Path) -> Result<Cache, BuildError> {
        let db = image::store::open_db(root)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS build_cache (key TEXT PRIMARY KEY, image_id TEXT NOT NULL, created TEXT NOT NULL);",
        )
        .map_err(image::ImageError::from)?;
        Ok(Cache { db: Mutex::new(db) })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Result<Option<Digest>, BuildError> {
        let id: Option<String> = self
            .db()
            .query_row("SELECT image_id FROM build_cache WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(image::ImageError::from)?;
        Ok(id.and_then(|s| s.parse().ok()))
    }

    pub fn put(&self, key: &str, id: &Digest) -> Result<(), BuildError> {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        self.db()
            .execute(
                "INSERT INTO build_cache (key, image_id, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT(key) DO UPDATE SET image_id = excluded.image_id, created = excluded.created",
                params![key, id.to_string(), now],
            )
            .map_err(image::ImageError::from)?;
        Ok(())
    }

    /// Every image id the cache refers to.
    pub fn images(&self) -> Result<Vec<Digest>, BuildError> {
        let db = self.db();
        let mut st = db.prepare("SELECT DISTINCT image_id FROM build_cache").map_err(image::ImageError::from)?;
        let ids: Vec<String> = st
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect::<Result<_, _>>())
            .map_err(image::ImageError::from)?;
        Ok(ids.iter().filter_map(|s| s.parse().ok()).collect())
    }

    /// Forgets the entries that point at `id`.
    pub fn forget(&self, id: &Digest) -> Result<(), BuildError> {
        self.db()
            .execute("DELETE FROM build_cache WHERE image_id = ?1", [id.to_string()])
            .map_err(image::ImageError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let d = tempfile::tempdir().expect("tempdir");
        let id = Digest::sha256_of(b"x");
        let k = key(None, "RUN a", "");
        assert_ne!(k, key(Some(&id), "RUN a", ""));
        {
            let c = Cache::open(d.path()).expect("open");
            assert_eq!(c.get(&k).expect("get"), None);
            c.put(&k, &id).expect("put");
        }
        let c = Cache::open(d.path()).expect("reopen");
        assert_eq!(c.get(&k).expect("get"), Some(id.clone()));
        assert_eq!(c.images().expect("images"), vec![id.clone()]);
        c.forget(&id).expect("forget");
        assert_eq!(c.get(&k).expect("get"), None);
    }
}
