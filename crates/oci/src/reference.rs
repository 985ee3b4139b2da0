use std::fmt;
use std::str::FromStr;

use crate::Digest;

/// An image reference normalised as Docker does it.
///
/// `busybox` is `docker.io/library/busybox:latest`; `user/app` is `docker.io/user/app:latest`;
/// a first component with a `.` or `:` or equal to `localhost` is a registry host.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("invalid reference format: `{0}`")]
    Invalid(String),
    #[error("invalid reference format: repository name `{0}` must be lowercase")]
    Uppercase(String),
    #[error("invalid reference format: `{0}` has an invalid tag")]
    InvalidTag(String),
    #[error("invalid reference format: `{0}` has an invalid digest")]
    InvalidDigest(String),
    #[error("invalid reference format: repository name `{0}` is longer than 255 characters")]
    TooLong(String),
}

pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";

/// Whether `c` is a valid repository path component:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` (the distribution spec's grammar).
pub fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || x == b'_' || x == b'.' || x == b'-')
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || d.starts_with('[') => (h, Some(p)),
        _ => (d, None),
    };
    if let Some(p) = port
        && (p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    if host.starts_with('[') && host.ends_with(']') {
        return true;
    }
    !host.is_empty()
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

impl Reference {
    /// Parses and normalises a reference as the docker CLI does (`ParseNormalizedNamed`).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let invalid = || ReferenceError::Invalid(s.to_owned());
        if s.is_empty() {
            return Err(invalid());
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.parse::<Digest>().map_err(|_| ReferenceError::InvalidDigest(s.to_owned()))?)),
            None => (s, None),
        };
        // A tag is after the last ':' that follows the last '/'.
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(i) if last_slash.is_none_or(|sl| i > sl) => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::InvalidTag(s.to_owned()));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.')
                    || first.contains(':')
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_owned(), remainder.to_owned())
            }
            _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
        };
        if !valid_domain(&domain) {
            return Err(invalid());
        }
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(s.to_owned()));
        }
        if !path.split('/').all(valid_path_component) {
            return Err(invalid());
        }
        let domain = if domain == LEGACY_DEFAULT_DOMAIN { DEFAULT_DOMAIN.to_owned() } else { domain };
        let path =
            if domain == DEFAULT_DOMAIN && !path.contains('/') { format!("{OFFICIAL_PREFIX}{path}") } else { path };
        if domain.len() + 1 + path.len() > 255 {
            return Err(ReferenceError::TooLong(s.to_owned()));
        }
        Ok(Reference { domain, path, tag: tag.map(str::to_owned), digest })
    }

    /// Like [`Reference::parse`], then adds the `latest` tag when neither tag nor digest is given.
    pub fn parse_with_default_tag(s: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some("latest".to_owned());
        }
        Ok(r)
    }

    /// The registry host (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// A copy with the given tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::InvalidTag(tag.to_owned()));
        }
        Ok(Reference { tag: Some(tag.to_owned()), digest: None, ..self.clone() })
    }

    /// The full repository name, `docker.io/library/busybox`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository name as Docker shows it: `busybox`, `user/app`, `host:5000/app`.
    pub fn familiar_name(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path.strip_prefix(OFFICIAL_PREFIX).unwrap_or(&self.path).to_owned()
        } else {
            self.name()
        }
    }

    /// `busybox:latest`, `host:5000/app@sha256:…`.
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_name();
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse_with_default_tag(s).expect("valid reference").to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("index.docker.io/user/app:v1"), "docker.io/user/app:v1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        assert_eq!(norm("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(norm(&format!("app@{d}")), format!("docker.io/library/app@{d}"));
        assert_eq!(Reference::parse("busybox").expect("valid").familiar(), "busybox");
        assert_eq!(Reference::parse("host:5/x:y").expect("valid").familiar(), "host:5/x:y");
    }

    #[test]
    fn rejects_bad_names() {
        assert!(matches!(Reference::parse("Busybox"), Err(ReferenceError::Uppercase(_))));
        assert!(Reference::parse("").is_err());
        assert!(Reference::parse("a//b").is_err());
        assert!(Reference::parse("-a").is_err());
        assert!(matches!(Reference::parse("a:b c"), Err(ReferenceError::InvalidTag(_))));
        assert!(matches!(Reference::parse("a@sha256:12"), Err(ReferenceError::InvalidDigest(_))));
        assert!(Reference::parse("a..b").is_err());
        assert!(Reference::parse("a__b").is_ok());
        assert!(Reference::parse("a---b").is_ok());
    }
}
