//! Authentication and authorization.
//!
//! Three modes: open (no checks; the default, allowed only on loopback unless forced), basic
//! (htpasswd file with bcrypt hashes) and token (Docker's token flow: the registry answers
//! `401` with `WWW-Authenticate: Bearer realm=…,service=…,scope=…`, the client fetches an HS256 JWT
//! from the registry's own `/token` endpoint with basic credentials, and retries with
//! `Authorization: Bearer`). In both authenticated modes, [`AccessRule`]s decide who may do what to
//! which repository namespace; with no rules every authenticated user may do everything.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::{RegistryError, Result};

/// The user name rules use for requests without credentials.
pub const ANONYMOUS: &str = "anonymous";

/// Who may do what where. `user` is a name, `*` (any authenticated user) or `anonymous`;
/// `repository` is an exact name, `ns/*` (everything under `ns/`) or `*`, and may contain `${user}`;
/// `actions` are `pull`, `push`, `delete` or `*`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub user: String,
    pub repository: String,
    pub actions: Vec<String>,
}

/// Settings of the token flow.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenConfig {
    /// Absolute URL of the token endpoint; derived from the request's Host when absent.
    pub realm: Option<String>,
    pub service: String,
    pub issuer: String,
    /// HMAC key; a random one per process when absent.
    pub secret: Option<String>,
    pub expiry_secs: u64,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            realm: None,
            service: "berth-registry".to_owned(),
            issuer: "berth-registry".to_owned(),
            secret: None,
            expiry_secs: 300,
        }
    }
}

/// What a request needs: nothing beyond a valid login (`/v2/`), the catalog, or actions on a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Base,
    Catalog,
    Repository { name: String, actions: Vec<&'static str> },
}

impl Scope {
    fn challenge_scope(&self) -> Option<String> {
        match self {
            Scope::Base => None,
            Scope::Catalog => Some("registry:catalog:*".to_owned()),
            Scope::Repository { name, actions } => Some(format!("repository:{name}:{}", actions.join(","))),
        }
    }

    fn what(&self) -> String {
        match self {
            Scope::Base => "registry".to_owned(),
            Scope::Catalog => "catalog".to_owned(),
            Scope::Repository { name, actions } => format!("{} on repository {name}", actions.join(",")),
        }
    }
}

/// One granted access entry of a token, as Docker's token spec writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenAccess {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<TokenAccess>,
}

enum Mode {
    Open,
    Basic,
    Token { config: TokenConfig, key: Vec<u8> },
}

/// The authenticator of one server.
pub struct Auth {
    mode: Mode,
    users: HashMap<String, String>,
    rules: Vec<AccessRule>,
    /// sha256(user, password, hash) of credentials already checked, so bcrypt runs once per login.
    verified: Mutex<HashSet<[u8; 32]>>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    #[error("reading htpasswd file {path}: {source}")]
    Htpasswd { path: String, source: std::io::Error },
    #[error("htpasswd file {path} line {line}: only bcrypt entries (user:$2y$…) are supported")]
    NotBcrypt { path: String, line: usize },
    #[error("token auth needs user credentials: give an htpasswd file")]
    TokenWithoutUsers,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Parses an htpasswd file of bcrypt entries.
pub fn load_htpasswd(path: &Path) -> std::result::Result<HashMap<String, String>, AuthSetupError> {
    let p = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AuthSetupError::Htpasswd { path: p.clone(), source })?;
    let mut users = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(':') {
            Some((user, hash)) if hash.starts_with("$2") => {
                users.insert(user.to_owned(), hash.to_owned());
            }
            _ => return Err(AuthSetupError::NotBcrypt { path: p, line: i + 1 }),
        }
    }
    Ok(users)
}

fn repo_matches(pattern: &str, user: &str, name: &str) -> bool {
    let pattern = pattern.replace("${user}", user);
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix("/*") {
        Some(ns) => name.strip_prefix(ns).is_some_and(|rest| rest.starts_with('/')),
        None => pattern == name,
    }
}

impl Auth {
    pub fn open() -> Self {
        Auth { mode: Mode::Open, users: HashMap::new(), rules: Vec::new(), verified: Mutex::default() }
    }

    pub fn basic(users: HashMap<String, String>, rules: Vec<AccessRule>) -> Self {
        Auth { mode: Mode::Basic, users, rules, verified: Mutex::default() }
    }

    pub fn token(
        users: HashMap<String, String>,
        rules: Vec<AccessRule>,
        config: TokenConfig,
    ) -> std::result::Result<Self, AuthSetupError> {
        if users.is_empty() {
            return Err(AuthSetupError::TokenWithoutUsers);
        }
        let key = match &config.secret {
            Some(s) => s.as_bytes().to_vec(),
            None => rand::random::<[u8; 32]>().to_vec(),
        };
        Ok(Auth { mode: Mode::Token { config, key }, users, rules, verified: Mutex::default() })
    }

    pub fn is_open(&self) -> bool {
        matches!(self.mode, Mode::Open)
    }

    /// Actions `user` may perform on repository `name`.
    pub fn allowed(&self, user: &str, name: &str) -> HashSet<String> {
        let mut out = HashSet::new();
        if self.rules.is_empty() {
            if user != ANONYMOUS {
                out.extend(["pull", "push", "delete"].map(String::from));
            }
            return out;
        }
        for r in &self.rules {
            let who = r.user == user || (r.user == "*" && user != ANONYMOUS);
            if who && repo_matches(&r.repository, user, name) {
                for a in &r.actions {
                    if a == "*" {
                        out.extend(["pull", "push", "delete"].map(String::from));
                    } else {
                        out.insert(a.clone());
                    }
                }
            }
        }
        out
    }

    fn catalog_allowed(&self, user: &str) -> bool {
        user != ANONYMOUS
            && (self.rules.is_empty()
                || self.rules.iter().any(|r| (r.user == user || r.user == "*") && r.repository == "*"))
    }

    /// Checks basic credentials (`Authorization: Basic …`); `None` if absent, an error if wrong.
    pub async fn check_basic(&self, authorization: Option<&str>) -> Result<Option<String>> {
        let Some(value) = authorization.and_then(|v| v.strip_prefix("Basic ")) else { return Ok(None) };
        let bad = || RegistryError::Unauthorized { what: "credentials".to_owned(), challenge: self.basic_challenge() };
        let decoded = STANDARD.decode(value.trim()).map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (user, password) = decoded.split_once(':').ok_or_else(bad)?;
        let hash = self.users.get(user).ok_or_else(bad)?;
        let mut h = Sha256::new();
        for part in [user, "\0", password, "\0", hash.as_str()] {
            h.update(part.as_bytes());
        }
        let fingerprint: [u8; 32] = h.finalize().into();
        if self.verified.lock().map(|s| s.contains(&fingerprint)).unwrap_or(false) {
            return Ok(Some(user.to_owned()));
        }
        let (pw, hash2) = (password.to_owned(), hash.clone());
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(pw, &hash2).unwrap_or(false)).await.unwrap_or(false);
        if !ok {
            return Err(bad());
        }
        if let Ok(mut set) = self.verified.lock() {
            if set.len() > 10_000 {
                set.clear();
            }
            set.insert(fingerprint);
        }
        Ok(Some(user.to_owned()))
    }

    fn basic_challenge(&self) -> String {
        "Basic realm=\"berth-registry\"".to_owned()
    }

    fn bearer_challenge(&self, host: &str, scheme: &str, scope: &Scope, error: Option<&str>) -> String {
        let Mode::Token { config, .. } = &self.mode else { return self.basic_challenge() };
        let realm = config.realm.clone().unwrap_or_else(|| format!("{scheme}://{host}/token"));
        let mut c = format!("Bearer realm=\"{realm}\",service=\"{}\"", config.service);
        if let Some(s) = scope.challenge_scope() {
            c.push_str(&format!(",scope=\"{s}\""));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error=\"{e}\""));
        }
        c
    }

    /// Decides a request: the user it is made as, or the 401/403 to answer.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        host: &str,
        scheme: &str,
        scope: &Scope,
    ) -> Result<String> {
        match &self.mode {
            Mode::Open => Ok(ANONYMOUS.to_owned()),
            Mode::Basic => {
                let user = self.check_basic(authorization).await?;
                let name = user.as_deref().unwrap_or(ANONYMOUS);
                if self.permits(name, scope) {
                    return Ok(name.to_owned());
                }
                if user.is_none() {
                    return Err(RegistryError::Unauthorized { what: scope.what(), challenge: self.basic_challenge() });
                }
                Err(RegistryError::Denied { what: scope.what(), user: name.to_owned() })
            }
            Mode::Token { config, key } => {
                let challenge = |e: Option<&str>| self.bearer_challenge(host, scheme, scope, e);
                let Some(token) = authorization.and_then(|v| v.strip_prefix("Bearer ")) else {
                    return Err(RegistryError::Unauthorized { what: scope.what(), challenge: challenge(None) });
                };
                let Some(claims) = verify_jwt(token.trim(), key, config) else {
                    return Err(RegistryError::Unauthorized {
                        what: scope.what(),
                        challenge: challenge(Some("invalid_token")),
                    });
                };
                if token_covers(&claims.access, scope) {
                    return Ok(claims.sub);
                }
                Err(RegistryError::Unauthorized {
                    what: scope.what(),
                    challenge: challenge(Some("insufficient_scope")),
                })
            }
        }
    }

    fn permits(&self, user: &str, scope: &Scope) -> bool {
        match scope {
            Scope::Base => user != ANONYMOUS,
            Scope::Catalog => self.catalog_allowed(user),
            Scope::Repository { name, actions } => {
                let allowed = self.allowed(user, name);
                actions.iter().all(|a| allowed.contains(*a))
            }
        }
    }

    /// The token endpoint: authenticates with basic credentials (or none, for anonymous access) and
    /// grants the requested scopes the rules allow.
    pub async fn issue_token(
        &self,
        authorization: Option<&str>,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<TokenResponse> {
        let Mode::Token { config, key } = &self.mode else {
            return Err(RegistryError::Unsupported { what: "token endpoint without token auth".to_owned() });
        };
        let user = self.check_basic(authorization).await?.unwrap_or_else(|| ANONYMOUS.to_owned());
        if service.is_some_and(|s| s != config.service) {
            return Err(RegistryError::Denied { what: format!("tokens for service {}", service.unwrap_or("")), user });
        }
        let mut access = Vec::new();
        for scope in scopes.iter().flat_map(|s| s.split(' ')).filter(|s| !s.is_empty()) {
            let Some((kind, rest)) = scope.split_once(':') else { continue };
            let Some((name, actions)) = rest.rsplit_once(':') else { continue };
            let granted: Vec<String> = match kind {
                "repository" => {
                    let allowed = self.allowed(&user, name);
                    actions
                        .split(',')
                        .filter(|a| allowed.contains(*a) || (*a == "*" && allowed.len() == 3))
                        .map(String::from)
                        .collect()
                }
                "registry" if name == "catalog" && self.catalog_allowed(&user) => vec!["*".to_owned()],
                _ => Vec::new(),
            };
            access.push(TokenAccess { kind: kind.to_owned(), name: name.to_owned(), actions: granted });
        }
        let iat = now();
        let claims = Claims {
            iss: config.issuer.clone(),
            sub: user,
            aud: config.service.clone(),
            exp: iat + config.expiry_secs,
            nbf: iat.saturating_sub(10),
            iat,
            jti: crate::registry::uuid_v4(),
            access,
        };
        let token = sign_jwt(&claims, key);
        let issued_at = chrono::DateTime::<chrono::Utc>::from(SystemTime::now()).to_rfc3339();
        Ok(TokenResponse { access_token: token.clone(), token, expires_in: config.expiry_secs, issued_at })
    }
}

/// The token endpoint's answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub access_token: String,
    pub expires_in: u64,
    pub issued_at: String,
}

fn token_covers(access: &[TokenAccess], scope: &Scope) -> bool {
    match scope {
        Scope::Base => true,
        Scope::Catalog => access.iter().any(|a| a.kind == "registry" && a.name == "catalog" && !a.actions.is_empty()),
        Scope::Repository { name, actions } => actions.iter().all(|want| {
            access
                .iter()
                .any(|a| a.kind == "repository" && &a.name == name && a.actions.iter().any(|g| g == want || g == "*"))
        }),
    }
}

fn sign_jwt(claims: &Claims, key: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"));
    let signing_input = format!("{header}.{body}");
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("hmac takes keys of any length");
    mac.update(signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn verify_jwt(token: &str, key: &[u8], config: &TokenConfig) -> Option<Claims> {
    let mut parts = token.split('.');
    let (header, body, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let parsed: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
    if parsed.get("alg")?.as_str()? != "HS256" {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(format!("{header}.{body}").as_bytes());
    mac.verify_slice(&URL_SAFE_NO_PAD.decode(sig).ok()?).ok()?;
    let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
    let t = now();
    (claims.exp > t && claims.nbf <= t && claims.aud == config.service && claims.iss == config.issuer).then_some(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> HashMap<String, String> {
        let hash = bcrypt::hash("secret", 4).expect("hash");
        HashMap::from([("alice".to_owned(), hash)])
    }

    #[test]
    fn namespaces() {
        assert!(repo_matches("*", "u", "a/b"));
        assert!(repo_matches("alice/*", "u", "alice/x/y"));
        assert!(!repo_matches("alice/*", "u", "alicex/y"));
        assert!(!repo_matches("alice/*", "u", "alice"));
        assert!(repo_matches("${user}/*", "bob", "bob/app"));
        assert!(repo_matches("exact", "u", "exact"));
    }

    #[tokio::test]
    async fn jwt_round_trip_and_tamper() {
        let auth = Auth::token(users(), vec![], TokenConfig::default()).expect("auth");
        let basic = format!("Basic {}", STANDARD.encode("alice:secret"));
        let t = auth.issue_token(Some(&basic), None, &["repository:a/b:pull,push".to_owned()]).await.expect("token");
        let scope = Scope::Repository { name: "a/b".into(), actions: vec!["pull", "push"] };
        let bearer = format!("Bearer {}", t.token);
        assert_eq!(auth.authorize(Some(&bearer), "h", "http", &scope).await.expect("ok"), "alice");
        let other = Scope::Repository { name: "c".into(), actions: vec!["pull"] };
        assert!(matches!(
            auth.authorize(Some(&bearer), "h", "http", &other).await,
            Err(RegistryError::Unauthorized { .. })
        ));
        let mut tampered = t.token.clone();
        let last = tampered.pop();
        tampered.push(if last == Some('A') { 'B' } else { 'A' });
        let bearer = format!("Bearer {tampered}");
        assert!(auth.authorize(Some(&bearer), "h", "http", &scope).await.is_err());
    }
}
