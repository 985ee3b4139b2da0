//! Registry credentials kept as the docker CLI keeps them: `$DOCKER_CONFIG/config.json`
//! (default `~/.docker/config.json`), `auths` entries with `auth` = base64(`user:password`), or
//! a credential helper (`credsStore`, or `credHelpers` per registry) — the program
//! `docker-credential-<name>` with the `get`/`store`/`erase` protocol on stdin/stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine;
use serde_json::{Value, json};

/// Docker Hub's key in config.json.
pub const DOCKER_HUB: &str = "https://index.docker.io/v1/";

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Auth {
    pub username: String,
    pub password: String,
    pub identity_token: String,
}

pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"));
    home.join(".docker")
}

fn config_path() -> PathBuf {
    config_dir().join("config.json")
}

fn load() -> Result<Value, String> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(json!({})),
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("read `{}`: {e}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(format!("read `{}`: {e}", p.display())),
    }
}

/// Writes config.json atomically (temp file, fsync, rename), mode 0600.
fn save(v: &Value) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = config_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("create `{}`: {e}", dir.display()))?;
    let p = config_path();
    let tmp = dir.join(format!(".config.json.{}", std::process::id()));
    let text = serde_json::to_vec_pretty(v).map_err(|e| e.to_string())?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("write `{}`: {e}", tmp.display()))?;
    f.write_all(&text).and_then(|_| f.sync_all()).map_err(|e| format!("write `{}`: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &p).map_err(|e| format!("rename `{}`: {e}", p.display()))
}

/// The config.json key of a registry host (Docker Hub has its historical URL).
pub fn key_for_host(host: &str) -> String {
    match host {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        h => h.to_owned(),
    }
}

/// The key of a login's server argument: `https://host:5000/` → `host:5000`.
pub fn key_for_server(server: &str) -> String {
    let s = server.trim();
    if s.is_empty() {
        return DOCKER_HUB.to_owned();
    }
    let s = s.strip_prefix("https://").or_else(|| s.strip_prefix("http://")).unwrap_or(s);
    key_for_host(s.split('/').next().unwrap_or_default())
}

/// The registry host of an image name, as Docker splits it.
pub fn host_of_image(name: &str) -> String {
    match name.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => first.to_owned(),
        _ => "docker.io".to_owned(),
    }
}

fn helper_for(cfg: &Value, key: &str) -> Option<String> {
    cfg.get("credHelpers")
        .and_then(|h| h.get(key))
        .and_then(Value::as_str)
        .or_else(|| cfg.get("credsStore").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn run_helper(name: &str, verb: &str, input: &[u8]) -> Result<Vec<u8>, String> {
    let prog = format!("docker-credential-{name}");
    let mut child = Command::new(&prog)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("credential helper `{prog}`: {e}"))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(input);
    }
    let out = child.wait_with_output().map_err(|e| format!("credential helper `{prog}`: {e}"))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        return Err(format!("credential helper `{prog} {verb}`: {msg}"));
    }
    Ok(out.stdout)
}

/// The credentials stored for `key`, if any.
pub fn get(key: &str) -> Result<Option<Auth>, String> {
    let cfg = load()?;
    if let Some(h) = helper_for(&cfg, key) {
        return match run_helper(&h, "get", key.as_bytes()) {
            Ok(out) => {
                let v: Value = serde_json::from_slice(&out).map_err(|e| format!("credential helper `{h}`: {e}"))?;
                let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
                let (user, secret) = (s("Username"), s("Secret"));
                if user.is_empty() && secret.is_empty() {
                    return Ok(None);
                }
                Ok(Some(if user == "<token>" {
                    Auth { identity_token: secret, ..Default::default() }
                } else {
                    Auth { username: user, password: secret, ..Default::default() }
                }))
            }
            // Helpers answer "credentials not found" with a failure.
            Err(e) if e.contains("not found") => Ok(None),
            Err(e) => Err(e),
        };
    }
    let Some(entry) = cfg.get("auths").and_then(|a| a.get(key)) else { return Ok(None) };
    let mut a = Auth {
        identity_token: entry.get("identitytoken").and_then(Value::as_str).unwrap_or_default().to_owned(),
        ..Default::default()
    };
    if let Some(enc) = entry.get("auth").and_then(Value::as_str)
        && let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(enc.trim())
        && let Ok(s) = String::from_utf8(raw)
        && let Some((u, p)) = s.split_once(':')
    {
        a.username = u.to_owned();
        a.password = p.to_owned();
    }
    Ok((a != Auth::default()).then_some(a))
}

/// Stores credentials for `key` (in the helper when one is configured).
pub fn store(key: &str, a: &Auth) -> Result<(), String> {
    let mut cfg = load()?;
    if let Some(h) = helper_for(&cfg, key) {
        let input = json!({"ServerURL": key, "Username": a.username, "Secret": a.password});
        run_helper(&h, "store", &serde_json::to_vec(&input).map_err(|e| e.to_string())?)?;
        // Docker keeps an empty entry so `auths` lists the registry.
        cfg["auths"][key] = json!({});
    } else {
        let enc = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", a.username, a.password));
        if !cfg.get("auths").is_some_and(Value::is_object) {
            cfg["auths"] = json!({});
        }
        cfg["auths"][key] = json!({"auth": enc});
    }
    save(&cfg)
}

/// Forgets the credentials for `key`; false when there were none.
pub fn erase(key: &str) -> Result<bool, String> {
    let mut cfg = load()?;
    let had = cfg.get("auths").and_then(|a| a.get(key)).is_some();
    if let Some(h) = helper_for(&cfg, key) {
        let _ = run_helper(&h, "erase", key.as_bytes());
    }
    if let Some(a) = cfg.get_mut("auths").and_then(Value::as_object_mut) {
        a.remove(key);
    }
    save(&cfg)?;
    Ok(had)
}

/// The `X-Registry-Auth` header for an image, as the docker CLI sends it (base64url JSON).
pub fn registry_auth(image: &str) -> Option<String> {
    let key = key_for_host(&host_of_image(image));
    let a = get(&key).ok().flatten()?;
    let v = json!({
        "username": a.username,
        "password": a.password,
        "identitytoken": a.identity_token,
        "serveraddress": key,
    });
    Some(base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&v).ok()?))
}

/// The `X-Registry-Config` header of `POST /build`: every stored credential, as a base64url
/// JSON map registry → AuthConfig (the docker CLI sends them all; the daemon picks by host).
pub fn registry_config() -> Option<String> {
    let cfg = load().ok()?;
    let mut keys: Vec<String> = Vec::new();
    for k in ["auths", "credHelpers"] {
        if let Some(m) = cfg.get(k).and_then(Value::as_object) {
            keys.extend(m.keys().cloned());
        }
    }
    keys.sort();
    keys.dedup();
    let mut out = serde_json::Map::new();
    for key in keys {
        if let Ok(Some(a)) = get(&key) {
            out.insert(
                key.clone(),
                json!({
                    "username": a.username,
                    "password": a.password,
                    "identitytoken": a.identity_token,
                    "serveraddress": key,
                }),
            );
        }
    }
    if out.is_empty() {
        return None;
    }
    Some(base64::engine::general_purpose::URL_SAFE.encode(serde_json::to_vec(&Value::Object(out)).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hosts() {
        assert_eq!(host_of_image("busybox"), "docker.io");
        assert_eq!(host_of_image("user/app"), "docker.io");
        assert_eq!(host_of_image("localhost/app"), "localhost");
        assert_eq!(host_of_image("127.0.0.1:5000/a/b"), "127.0.0.1:5000");
        assert_eq!(key_for_host("docker.io"), DOCKER_HUB);
        assert_eq!(key_for_server("http://127.0.0.1:5000/"), "127.0.0.1:5000");
        assert_eq!(key_for_server(""), DOCKER_HUB);
    }
}
