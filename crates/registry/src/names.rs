//! Repository names and tags as the Distribution spec allows them, and the storage key layout.
//!
//! ```text
//! blobs/sha256/ab/abcd…/data                                   blob content (layers, configs, manifests)
//! repositories/<name>/_layers/sha256/<hex>/link                blob linked into a repository
//! repositories/<name>/_manifests/revisions/sha256/<hex>/link   manifest in a repository (JSON: type, size)
//! repositories/<name>/_manifests/tags/<tag>                    tag -> manifest digest
//! repositories/<name>/_referrers/sha256/<subject hex>/<hex>    descriptor of a manifest whose subject is <subject>
//! _uploads/<id>/info                                           upload session (JSON: repository, start time)
//! _uploads/<id>/parts/<offset, 20 digits>                      chunks received so far, in order
//! ```

use oci::Digest;

use crate::error::{RegistryError, Result};

/// Longest repository name accepted (Distribution's limit).
pub const MAX_NAME_LEN: usize = 255;

use oci::valid_path_component as valid_component;

/// Validates a repository name (`library/busybox`, `a.b/c-d/e__f`).
pub fn validate_name(name: &str) -> Result<()> {
    if name.len() > MAX_NAME_LEN || !name.split('/').all(valid_component) {
        return Err(RegistryError::NameInvalid { name: name.to_owned() });
    }
    Ok(())
}

/// Is `tag` a valid tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn is_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

/// A manifest reference from a URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestRef {
    Tag(String),
    Digest(Digest),
}

impl ManifestRef {
    pub fn parse(s: &str) -> Result<Self> {
        if s.contains(':') {
            parse_digest(s).map(ManifestRef::Digest)
        } else if is_tag(s) {
            Ok(ManifestRef::Tag(s.to_owned()))
        } else {
            Err(RegistryError::TagInvalid { tag: s.to_owned() })
        }
    }
}

impl std::fmt::Display for ManifestRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestRef::Tag(t) => f.write_str(t),
            ManifestRef::Digest(d) => write!(f, "{d}"),
        }
    }
}

/// Parses a digest from a URL or a query, as a spec error if malformed.
pub fn parse_digest(s: &str) -> Result<Digest> {
    s.parse().map_err(|_| RegistryError::DigestInvalid { value: s.to_owned() })
}

/// The digest `algorithm:hex` of content hashed here.
pub fn digest_from_hex(algorithm: &str, hex: &str) -> Result<Digest> {
    parse_digest(&format!("{algorithm}:{hex}"))
}

/// The digest of `data` by `algorithm` (`sha256` or `sha512`).
pub fn digest_of(algorithm: &str, data: &[u8]) -> Result<Digest> {
    use sha2::Digest as _;
    match algorithm {
        "sha256" => Ok(Digest::sha256_of(data)),
        "sha512" => digest_from_hex(algorithm, &hex::encode(sha2::Sha512::digest(data))),
        _ => Err(RegistryError::DigestInvalid { value: format!("{algorithm}:") }),
    }
}

pub fn blob_key(d: &Digest) -> String {
    format!("blobs/{}/{}/{}/data", d.algorithm(), &d.hex()[..2], d.hex())
}

pub fn repo_prefix(name: &str) -> String {
    format!("repositories/{name}/")
}

pub fn layer_link(name: &str, d: &Digest) -> String {
    format!("repositories/{name}/_layers/{}/{}/link", d.algorithm(), d.hex())
}

pub fn revision_link(name: &str, d: &Digest) -> String {
    format!("repositories/{name}/_manifests/revisions/{}/{}/link", d.algorithm(), d.hex())
}

pub fn tags_prefix(name: &str) -> String {
    format!("repositories/{name}/_manifests/tags/")
}

pub fn tag_key(name: &str, tag: &str) -> String {
    format!("repositories/{name}/_manifests/tags/{tag}")
}

pub fn referrers_prefix(name: &str, subject: &Digest) -> String {
    format!("repositories/{name}/_referrers/{}/{}/", subject.algorithm(), subject.hex())
}

pub fn referrer_key(name: &str, subject: &Digest, d: &Digest) -> String {
    format!("{}{}-{}", referrers_prefix(name, subject), d.algorithm(), d.hex())
}

pub const UPLOADS: &str = "_uploads/";

pub fn upload_info(id: &str) -> String {
    format!("_uploads/{id}/info")
}

pub fn upload_parts(id: &str) -> String {
    format!("_uploads/{id}/parts/")
}

pub fn upload_part(id: &str, offset: u64) -> String {
    format!("_uploads/{id}/parts/{offset:020}")
}

/// Parses the digest back out of `…/<alg>/<hex>/link` or `blobs/<alg>/<xx>/<hex>/data`.
pub fn digest_from_key(key: &str) -> Option<Digest> {
    let mut parts = key.rsplit('/');
    let _file = parts.next()?;
    let hex = parts.next()?;
    let alg = parts.next()?;
    let alg = if alg.len() == 2 && alg.bytes().all(|b| b.is_ascii_hexdigit()) { parts.next()? } else { alg };
    format!("{alg}:{hex}").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "library/busybox", "a.b/c-d/e__f", "a---b", "x0/y_1", "berth/test.repo"] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "A", "a//b", "/a", "a/", "-a", "a-", "a___b", "a..b", "a:b", &"a".repeat(256)] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_and_refs() {
        assert!(is_tag("latest") && is_tag("_x") && is_tag("v1.2-rc_3"));
        assert!(!is_tag("") && !is_tag(".x") && !is_tag("-x") && !is_tag(&"a".repeat(129)));
        assert!(matches!(ManifestRef::parse("v1"), Ok(ManifestRef::Tag(_))));
        assert!(matches!(ManifestRef::parse("sha256:zz"), Err(RegistryError::DigestInvalid { .. })));
        assert!(matches!(ManifestRef::parse("a/b"), Err(RegistryError::TagInvalid { .. })));
    }

    #[test]
    fn keys_round_trip() {
        let d = oci::Digest::sha256_of(b"x");
        assert_eq!(digest_from_key(&blob_key(&d)), Some(d.clone()));
        assert_eq!(digest_from_key(&layer_link("a/b", &d)), Some(d.clone()));
        assert_eq!(digest_from_key(&revision_link("a", &d)), Some(d));
    }
}
