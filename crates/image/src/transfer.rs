//! `docker save` / `docker load`: images as one tar file.
//!
//! [`save`] writes what Docker 25+ writes, which both formats' readers accept:
//! - the OCI image layout: `oci-layout`, `index.json` (one entry per tag, named by the
//!   `io.containerd.image.name` and `org.opencontainers.image.ref.name` annotations), and
//!   `blobs/sha256/<hex>` for manifests, configs and layers;
//! - the docker-archive index: `manifest.json` (`Config`, `RepoTags`, `Layers` as paths into
//!   `blobs/`) and `repositories`.
//!
//! Layers are written uncompressed, so each layer's file digest is its diff_id, and the config
//! is written byte for byte as stored, so the image id survives the round trip.
//!
//! [`load`] reads either format, also the older docker-archive (`<id>/layer.tar`, `<hex>.json`,
//! with symlinks between duplicate layers, as Docker 20.10 writes it), and a plain OCI layout.
//! The archive is first unpacked with [`crate::archive::unpack`] into a scratch directory under
//! `content/ingest/` (nothing it contains may land outside it), every path it names is resolved
//! inside that directory, every layer is verified against the config's diff_ids and every OCI
//! blob against its descriptor before an image record is written.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use oci::{Digest, Reference, media_type};
use serde_json::{Value, json};

use crate::layer::{Compression, detect};
use crate::store::{ImageRecord, ImageStore, LayerRecord};
use crate::{ImageError, io_err};

/// One image in a save request, with the tags to write for it.
struct Entry {
    rec: ImageRecord,
    tags: Vec<Reference>,
}

/// What [`load`] stored.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: Digest,
    /// Familiar names (`busybox:latest`).
    pub tags: Vec<String>,
}

fn invalid(m: impl Into<String>) -> ImageError {
    ImageError::InvalidArchive(m.into())
}

/// Writes the images named in `names` (references or ids) as one archive.
pub fn save<W: Write>(store: &ImageStore, names: &[String], out: W) -> Result<(), ImageError> {
    let mut entries: Vec<Entry> = Vec::new();
    for n in names {
        let rec = store.resolve(n)?;
        let by_id = rec.id.hex().starts_with(n.strip_prefix("sha256:").unwrap_or(n));
        let tag = if by_id { None } else { Reference::parse_with_default_tag(n).ok().filter(|r| r.digest().is_none()) };
        match entries.iter_mut().find(|e| e.rec.id == rec.id) {
            Some(e) => {
                if let Some(t) = tag.filter(|t| !e.tags.contains(t)) {
                    e.tags.push(t);
                }
            }
            None => entries.push(Entry { rec, tags: tag.into_iter().collect() }),
        }
    }
    let mut b = tar::Builder::new(out);
    let mut written: Vec<Digest> = Vec::new();
    let dir = |b: &mut tar::Builder<W>, name: &str| -> Result<(), ImageError> {
        let mut h = header(0, tar::EntryType::Directory, 0o755);
        b.append_data(&mut h, name, std::io::empty()).map_err(io_err("write archive", name))
    };
    dir(&mut b, "blobs/")?;
    dir(&mut b, "blobs/sha256/")?;
    let mut index = Vec::new();
    let mut manifest_json = Vec::new();
    let mut repositories = serde_json::Map::new();
    for e in &entries {
        // Layers, uncompressed.
        let mut layer_descs = Vec::new();
        for l in &e.rec.layers {
            if !written.contains(&l.diff_id) {
                let mut src = open_uncompressed(store, l)?;
                let mut h = header(l.size, tar::EntryType::Regular, 0o644);
                let name = format!("blobs/sha256/{}", l.diff_id.hex());
                b.append_data(&mut h, &name, &mut src).map_err(io_err("write archive", &name))?;
                written.push(l.diff_id.clone());
            }
            layer_descs.push(json!({"mediaType": media_type::OCI_LAYER, "digest": l.diff_id, "size": l.size}));
        }
        let config = store.content().read(&e.rec.id)?;
        put_blob(&mut b, &mut written, &e.rec.id, &config)?;
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": media_type::OCI_MANIFEST,
            "config": {"mediaType": media_type::OCI_CONFIG, "digest": e.rec.id, "size": config.len()},
            "layers": layer_descs,
        }))
        .map_err(|err| invalid(err.to_string()))?;
        let mdigest = Digest::sha256_of(&manifest);
        put_blob(&mut b, &mut written, &mdigest, &manifest)?;
        let desc = json!({"mediaType": media_type::OCI_MANIFEST, "digest": mdigest, "size": manifest.len()});
        if e.tags.is_empty() {
            index.push(desc.clone());
        }
        for t in &e.tags {
            let mut d = desc.clone();
            d["annotations"] = json!({
                "io.containerd.image.name": t.to_string(),
                "org.opencontainers.image.ref.name": t.tag().unwrap_or("latest"),
            });
            index.push(d);
            if let Some(top) = e.rec.layers.last() {
                let repo = repositories.entry(t.familiar_name()).or_insert_with(|| json!({}));
                repo[t.tag().unwrap_or("latest")] = json!(top.diff_id.hex());
            }
        }
        manifest_json.push(json!({
            "Config": format!("blobs/sha256/{}", e.rec.id.hex()),
            "RepoTags": if e.tags.is_empty() { Value::Null } else { json!(e.tags.iter().map(Reference::familiar).collect::<Vec<_>>()) },
            "Layers": e.rec.layers.iter().map(|l| format!("blobs/sha256/{}", l.diff_id.hex())).collect::<Vec<_>>(),
        }));
    }
    let file = |b: &mut tar::Builder<W>, name: &str, data: &[u8]| -> Result<(), ImageError> {
        let mut h = header(data.len() as u64, tar::EntryType::Regular, 0o644);
        b.append_data(&mut h, name, data).map_err(io_err("write archive", name))
    };
    let index = json!({"schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": index});
    file(&mut b, "index.json", &to_vec(&index)?)?;
    file(&mut b, "manifest.json", &to_vec(&Value::Array(manifest_json))?)?;
    file(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if !repositories.is_empty() {
        file(&mut b, "repositories", &to_vec(&Value::Object(repositories))?)?;
    }
    b.into_inner().and_then(|mut w| w.flush()).map_err(io_err("write archive", "-"))
}

fn to_vec(v: &Value) -> Result<Vec<u8>, ImageError> {
    serde_json::to_vec(v).map_err(|e| invalid(e.to_string()))
}

fn header(size: u64, kind: tar::EntryType, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

fn put_blob<W: Write>(
    b: &mut tar::Builder<W>,
    written: &mut Vec<Digest>,
    d: &Digest,
    data: &[u8],
) -> Result<(), ImageError> {
    if written.contains(d) {
        return Ok(());
    }
    let name = format!("blobs/sha256/{}", d.hex());
    let mut h = header(data.len() as u64, tar::EntryType::Regular, 0o644);
    b.append_data(&mut h, &name, data).map_err(io_err("write archive", &name))?;
    written.push(d.clone());
    Ok(())
}

/// A layer's tar, decompressed if it was stored compressed.
fn open_uncompressed(store: &ImageStore, l: &LayerRecord) -> Result<Box<dyn Read>, ImageError> {
    let p = store.content().path(&l.blob);
    let f = File::open(&p).map_err(io_err("open layer", &p))?;
    let mut r = BufReader::new(f);
    let head = std::io::BufRead::fill_buf(&mut r).map_err(io_err("read layer", &p))?;
    Ok(match detect(head) {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r).map_err(io_err("zstd", &p))?),
    })
}

/// Reads an archive of images (docker-archive or OCI layout) and stores them.
pub fn load<R: Read>(store: &ImageStore, src: R) -> Result<Vec<Loaded>, ImageError> {
    let dir = store.content().scratch_dir()?;
    let result = (|| {
        let opts = crate::archive::UnpackOptions { chown: Some((0, 0)), ..Default::default() };
        let done = crate::archive::unpack(src, &dir, &opts)?;
        if done.entries == 0 {
            return Err(invalid("empty archive: it holds no images"));
        }
        load_dir(store, &dir)
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// A path named by the archive, resolved inside its directory (symlinks included).
fn inside(root: &Path, rel: &str) -> Result<PathBuf, ImageError> {
    let clean = crate::archive::entry_path(Path::new(rel))?;
    let p = root.join(clean);
    let canon =
        p.canonicalize().map_err(|_| invalid(format!("the archive names `{rel}`, which it does not contain")))?;
    let croot = root.canonicalize().map_err(io_err("resolve", root))?;
    if !canon.starts_with(&croot) {
        return Err(ImageError::UnsafePath { path: rel.to_owned(), reason: "it points outside the archive" });
    }
    Ok(canon)
}

fn read_json(p: &Path) -> Result<Value, ImageError> {
    let b = std::fs::read(p).map_err(io_err("read", p))?;
    serde_json::from_slice(&b).map_err(|e| invalid(format!("`{}` is not valid JSON: {e}", p.display())))
}

/// One image found in the archive, before it is stored.
struct Found {
    config: Vec<u8>,
    /// Layer files with the blob digest they must have (OCI) when known.
    layers: Vec<(PathBuf, Option<Digest>)>,
    tags: Vec<Reference>,
}

fn load_dir(store: &ImageStore, dir: &Path) -> Result<Vec<Loaded>, ImageError> {
    let mut found = Vec::new();
    if dir.join("manifest.json").is_file() {
        let m = read_json(&dir.join("manifest.json"))?;
        for e in m.as_array().ok_or_else(|| invalid("manifest.json is not a list"))? {
            let cfg = e.get("Config").and_then(Value::as_str).ok_or_else(|| invalid("manifest.json: no Config"))?;
            let config = std::fs::read(inside(dir, cfg)?).map_err(io_err("read", cfg))?;
            let mut layers = Vec::new();
            for l in e.get("Layers").and_then(Value::as_array).into_iter().flatten() {
                let l = l.as_str().ok_or_else(|| invalid("manifest.json: a layer is not a path"))?;
                layers.push((inside(dir, l)?, None));
            }
            let mut tags = Vec::new();
            for t in e.get("RepoTags").and_then(Value::as_array).into_iter().flatten() {
                let t = t.as_str().unwrap_or_default();
                tags.push(Reference::parse_with_default_tag(t)?);
            }
            found.push(Found { config, layers, tags });
        }
    } else if dir.join("index.json").is_file() {
        let index = read_json(&dir.join("index.json"))?;
        for d in index.get("manifests").and_then(Value::as_array).into_iter().flatten() {
            oci_manifest(dir, d, None, &mut found)?;
        }
    } else {
        return Err(invalid("neither manifest.json nor index.json found: not an image archive"));
    }
    if found.is_empty() {
        return Err(invalid("the archive holds no images"));
    }
    let mut out = Vec::new();
    for f in found {
        out.push(store_one(store, f)?);
    }
    Ok(out)
}

fn blob_path(dir: &Path, d: &Value) -> Result<(PathBuf, Digest), ImageError> {
    let digest: Digest = d
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a descriptor has no digest"))?
        .parse()
        .map_err(|e: oci::DigestError| invalid(e.to_string()))?;
    let p = inside(dir, &format!("blobs/{}/{}", digest.algorithm(), digest.hex()))?;
    Ok((p, digest))
}

fn verified(p: &Path, d: &Digest) -> Result<Vec<u8>, ImageError> {
    let b = std::fs::read(p).map_err(io_err("read", p))?;
    if d.algorithm() == "sha256" && Digest::sha256_of(&b) != *d {
        return Err(ImageError::DigestMismatch {
            path: p.to_owned(),
            expected: d.to_string(),
            actual: Digest::sha256_of(&b).to_string(),
        });
    }
    Ok(b)
}

/// An OCI index entry: a manifest, or a nested index (the linux/amd64 entry, else the first).
fn oci_manifest(dir: &Path, d: &Value, name: Option<Reference>, found: &mut Vec<Found>) -> Result<(), ImageError> {
    let ann = |k: &str| d.pointer(&format!("/annotations/{}", k.replace('/', "~1"))).and_then(Value::as_str);
    let name = name.or_else(|| {
        ann("io.containerd.image.name")
            .or_else(|| ann("org.opencontainers.image.ref.name").filter(|n| n.contains(':') || n.contains('/')))
            .and_then(|n| Reference::parse_with_default_tag(n).ok())
    });
    let (p, digest) = blob_path(dir, d)?;
    let m: Value = serde_json::from_slice(&verified(&p, &digest)?).map_err(|e| invalid(e.to_string()))?;
    if let Some(list) = m.get("manifests").and_then(Value::as_array) {
        let pick = list
            .iter()
            .find(|x| {
                x.pointer("/platform/os").and_then(Value::as_str) == Some("linux")
                    && x.pointer("/platform/architecture").and_then(Value::as_str) == Some(host_arch())
            })
            .or_else(|| list.first())
            .ok_or_else(|| invalid("an index lists no manifests"))?;
        return oci_manifest(dir, pick, name, found);
    }
    let (cp, cd) = blob_path(dir, m.get("config").ok_or_else(|| invalid("a manifest has no config"))?)?;
    let config = verified(&cp, &cd)?;
    let mut layers = Vec::new();
    for l in m.get("layers").and_then(Value::as_array).into_iter().flatten() {
        let (lp, ld) = blob_path(dir, l)?;
        layers.push((lp, Some(ld)));
    }
    if let Some(f) = found.iter_mut().find(|f| f.config == config) {
        f.tags.extend(name);
        return Ok(());
    }
    found.push(Found { config, layers, tags: name.into_iter().collect() });
    Ok(())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Stores one image: each layer into the content store (verified) and unpacked into its
/// snapshot (its diff_id checked against the config), then the record and its tags.
fn store_one(store: &ImageStore, f: Found) -> Result<Loaded, ImageError> {
    let config: Value = serde_json::from_slice(&f.config).map_err(|e| invalid(format!("image config: {e}")))?;
    let diff_ids: Vec<Digest> = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|d| d.as_str().and_then(|s| s.parse().ok())).collect())
        .unwrap_or_default();
    if diff_ids.len() != f.layers.len() {
        return Err(invalid(format!(
            "the image config lists {} layers but the archive has {}",
            diff_ids.len(),
            f.layers.len()
        )));
    }
    let mut layers = Vec::new();
    let mut parent: Option<Digest> = None;
    for ((path, want_blob), want_diff) in f.layers.iter().zip(&diff_ids) {
        let mut ingest = store.content().ingest()?;
        let file = File::open(path).map_err(io_err("open layer", path))?;
        std::io::copy(&mut BufReader::new(file), ingest.writer()).map_err(io_err("read layer", path))?;
        let (blob, blob_size) = ingest.commit(store.content(), want_blob.as_ref())?;
        let file = File::open(store.content().path(&blob)).map_err(io_err("open layer", path))?;
        let expected_chain = crate::snapshot::chain_id(parent.as_ref(), want_diff);
        let existed = store.snapshots().exists(&expected_chain);
        let (chain, applied) = store.snapshots().apply(parent.as_ref(), file)?;
        if applied.diff_id != *want_diff {
            if !existed {
                let _ = store.snapshots().remove(&chain);
            }
            return Err(ImageError::DigestMismatch {
                path: path.clone(),
                expected: want_diff.to_string(),
                actual: applied.diff_id.to_string(),
            });
        }
        let media = match applied.compression {
            Compression::None => media_type::OCI_LAYER,
            Compression::Gzip => media_type::OCI_LAYER_GZIP,
            Compression::Zstd => media_type::OCI_LAYER_ZSTD,
        };
        layers.push(LayerRecord {
            diff_id: applied.diff_id.clone(),
            chain_id: chain.clone(),
            blob,
            media_type: media.to_owned(),
            blob_size,
            size: applied.tar_size,
        });
        parent = Some(chain);
    }
    let rec = store.create_raw(&f.config, layers, None)?;
    let mut tags = Vec::new();
    for t in &f.tags {
        store.tag(&rec.id, t)?;
        tags.push(t.familiar());
    }
    Ok(Loaded { id: rec.id, tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs_tar(content: &[u8]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(content.len() as u64, tar::EntryType::Regular, 0o755);
        b.append_data(&mut h, "bin/hello", content).expect("append");
        b.into_inner().expect("finish")
    }

    #[test]
    fn save_then_load_keeps_ids_and_tags() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = ImageStore::open(d.path()).expect("open");
        let opts = crate::store::ImportOptions {
            tag: Some(Reference::parse("app:1").expect("ref")),
            source: "-".into(),
            ..Default::default()
        };
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&rootfs_tar(b"hi")).expect("gzip");
        let rec = s.import(&gz.finish().expect("gzip")[..], &opts).expect("import");
        let mut out = Vec::new();
        save(&s, &["app:1".to_owned()], &mut out).expect("save");
        let d2 = tempfile::tempdir().expect("tempdir");
        let s2 = ImageStore::open(d2.path()).expect("open");
        let loaded = load(&s2, &out[..]).expect("load");
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].id, rec.id);
        assert_eq!(loaded[0].tags, vec!["app:1".to_owned()]);
        let got = s2.resolve("app:1").expect("tagged");
        assert!(s2.layer_dirs(&got).expect("dirs")[0].join("bin/hello").exists());
        // Without manifest.json the OCI layout alone is enough.
        let mut ar = tar::Archive::new(&out[..]);
        let mut b = tar::Builder::new(Vec::new());
        for e in ar.entries().expect("entries") {
            let mut e = e.expect("entry");
            let p = e.path().expect("path").into_owned();
            if p == Path::new("manifest.json") {
                continue;
            }
            let mut h = e.header().clone();
            let mut data = Vec::new();
            e.read_to_end(&mut data).expect("read");
            b.append_data(&mut h, &p, &data[..]).expect("append");
        }
        let oci_only = b.into_inner().expect("finish");
        let d3 = tempfile::tempdir().expect("tempdir");
        let s3 = ImageStore::open(d3.path()).expect("open");
        let loaded = load(&s3, &oci_only[..]).expect("load oci");
        assert_eq!(loaded[0].id, rec.id);
        assert_eq!(loaded[0].tags, vec!["app:1".to_owned()]);
    }

    #[test]
    fn load_refuses_tampered_layers_and_escapes() {
        let d = tempfile::tempdir().expect("tempdir");
        let s = ImageStore::open(d.path()).expect("open");
        let layer = rootfs_tar(b"real");
        let diff = Digest::sha256_of(&layer);
        let config =
            serde_json::to_vec(&json!({"rootfs": {"type": "layers", "diff_ids": [diff]}, "config": {}})).expect("json");
        let build = |layer: &[u8], layer_path: &str| {
            let mut b = tar::Builder::new(Vec::new());
            let manifest =
                serde_json::to_vec(&json!([{"Config": "c.json", "RepoTags": ["x:1"], "Layers": [layer_path]}]))
                    .expect("json");
            for (n, data) in [("c.json", &config[..]), ("l.tar", layer), ("manifest.json", &manifest[..])] {
                let mut h = header(data.len() as u64, tar::EntryType::Regular, 0o644);
                b.append_data(&mut h, n, data).expect("append");
            }
            b.into_inner().expect("finish")
        };
        let ok = load(&s, &build(&layer, "l.tar")[..]).expect("good archive");
        assert_eq!(ok[0].tags, vec!["x:1".to_owned()]);
        let e = load(&s, &build(&rootfs_tar(b"evil"), "l.tar")[..]).expect_err("tampered");
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");
        let e = load(&s, &build(&layer, "../../etc/passwd")[..]).expect_err("escape");
        assert!(matches!(e, ImageError::UnsafePath { .. }), "{e}");
        assert!(load(&s, &b"garbage that is not a tar"[..]).is_err());
        // Nothing is left in the scratch area.
        assert_eq!(std::fs::read_dir(d.path().join("content/ingest")).expect("ls").count(), 0);
    }
}
