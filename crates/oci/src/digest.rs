use std::fmt;
use std::io;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};

/// A validated content digest. Only `sha256` is produced; `sha512` is accepted when parsed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: &'static str,
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("invalid digest `{0}`: expected `sha256:` followed by 64 lowercase hex characters")]
    Invalid(String),
    #[error("unsupported digest algorithm in `{0}`")]
    UnsupportedAlgorithm(String),
}

impl Digest {
    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Self {
        Self::from_sha256_bytes(&Sha256::digest(data))
    }

    fn from_sha256_bytes(bytes: &[u8]) -> Self {
        Digest { algorithm: "sha256", hex: hex::encode(bytes) }
    }

    pub fn algorithm(&self) -> &str {
        self.algorithm
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex characters, as `docker images` shows ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// Parses `hex` as a bare sha256 hex string (64 characters).
    pub fn from_sha256_hex(hex: &str) -> Result<Self, DigestError> {
        format!("sha256:{hex}").parse()
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| DigestError::Invalid(s.to_owned()))?;
        let (algorithm, len) = match alg {
            "sha256" => ("sha256", 64),
            "sha512" => ("sha512", 128),
            _ if !alg.is_empty()
                && alg.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c)) =>
            {
                return Err(DigestError::UnsupportedAlgorithm(s.to_owned()));
            }
            _ => return Err(DigestError::Invalid(s.to_owned())),
        };
        if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Invalid(s.to_owned()));
        }
        Ok(Digest { algorithm, hex: hex.to_owned() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A writer that hashes what passes through it and counts the bytes.
pub struct Sha256Writer<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> Sha256Writer<W> {
    pub fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new(), written: 0 }
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        (Digest::from_sha256_bytes(&self.hasher.finalize()), self.written, self.inner)
    }
}

impl<W: io::Write> io::Write for Sha256Writer<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let d = Digest::sha256_of(b"");
        assert_eq!(d.to_string(), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d.clone()));
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!("sha256:abc".parse::<Digest>(), Err(DigestError::Invalid(_))));
        assert!(matches!("md5:abc".parse::<Digest>(), Err(DigestError::UnsupportedAlgorithm(_))));
        assert!(matches!("nocolon".parse::<Digest>(), Err(DigestError::Invalid(_))));
        let upper = format!("sha256:{}", "A".repeat(64));
        assert!(upper.parse::<Digest>().is_err());
    }

    #[test]
    fn writer_hashes_what_it_writes() {
        use std::io::Write;
        let mut w = Sha256Writer::new(Vec::new());
        w.write_all(b"hello").expect("write to vec");
        let (d, n, v) = w.finish();
        assert_eq!(n, 5);
        assert_eq!(v, b"hello");
        assert_eq!(d, Digest::sha256_of(b"hello"));
    }
}
