//! One repository on one registry endpoint: requests, and the answer to a 401.
//!
//! Docker's flow: a request without credentials gets `401` with `WWW-Authenticate`.
//! `Basic realm=…` → the same request with basic credentials. `Bearer realm=…,service=…,scope=…`
//! → `GET realm?service=…&scope=repository:<name>:<actions>` (basic credentials if any, else
//! anonymous) returns a token, kept in [`Registries`] until `expires_in` runs out and reused by
//! later sessions, and the request is sent again with it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::Value;

use super::{Credentials, Registries, RemoteError, Result, Token};

pub struct Session {
    regs: Arc<Registries>,
    client: reqwest::Client,
    /// The host that tokens and credentials belong to.
    pub host: String,
    /// `scheme://host` of the endpoint (a mirror's URL for a mirror).
    pub base: String,
    /// Repository path on the registry (`library/busybox`).
    pub repo: String,
    creds: Option<Credentials>,
    /// Scopes beyond this repository's (mount sources: `repository:<other>:pull`).
    extra_scopes: Vec<String>,
    push: bool,
    auth: Mutex<Option<String>>,
}

/// The parameters of a `WWW-Authenticate` header.
#[derive(Debug, Default, PartialEq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn parse(h: &str) -> Challenge {
        let h = h.trim();
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        let mut params = Vec::new();
        let mut s = rest.trim();
        while !s.is_empty() {
            let Some((k, after)) = s.split_once('=') else { break };
            let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
            let after = after.trim_start();
            let (v, tail) = if let Some(q) = after.strip_prefix('"') {
                let mut val = String::new();
                let mut end = q.len();
                let mut esc = false;
                for (i, c) in q.char_indices() {
                    if esc {
                        val.push(c);
                        esc = false;
                    } else if c == '\\' {
                        esc = true;
                    } else if c == '"' {
                        end = i + 1;
                        break;
                    } else {
                        val.push(c);
                    }
                }
                (val, &q[end.min(q.len())..])
            } else {
                let end = after.find(',').unwrap_or(after.len());
                (after[..end].trim().to_owned(), &after[end..])
            };
            params.push((k, v));
            s = tail.trim_start().trim_start_matches(',').trim_start();
        }
        Challenge { scheme: scheme.to_ascii_lowercase(), params }
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }
}

/// The text of an error and the chain of its causes.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// `code: message` of a registry's `{"errors":[…]}` body, or the status line.
pub async fn error_text(resp: Response) -> (StatusCode, String, String) {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    if let Ok(v) = serde_json::from_slice::<Value>(&body)
        && let Some(e) = v.get("errors").and_then(Value::as_array).and_then(|a| a.first())
    {
        let code = e.get("code").and_then(Value::as_str).unwrap_or_default().to_owned();
        let msg = e.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
        let text =
            if code.is_empty() { msg } else { format!("{}: {msg}", code.to_ascii_lowercase().replace('_', " ")) };
        return (status, code, text);
    }
    let text = String::from_utf8_lossy(&body).trim().chars().take(200).collect::<String>();
    let text = if text.is_empty() { status.to_string() } else { format!("{status}: {text}") };
    (status, String::new(), text)
}

impl Session {
    /// A session on `host` (or on `mirror`, a base URL, when given) for `repo`.
    pub async fn new(
        regs: &Arc<Registries>,
        host: &str,
        mirror: Option<&str>,
        repo: &str,
        creds: Option<Credentials>,
        extra_scopes: Vec<String>,
    ) -> Result<Session> {
        let (base, auth_host) = match mirror {
            Some(m) => {
                let h = m.split("://").nth(1).unwrap_or(m).split('/').next().unwrap_or_default().to_owned();
                (m.trim_end_matches('/').to_owned(), h)
            }
            None => (format!("{}://{host}", regs.scheme(host).await?), host.to_owned()),
        };
        let client = regs.client(&auth_host)?;
        Ok(Session {
            regs: regs.clone(),
            client,
            host: auth_host,
            base,
            repo: repo.to_owned(),
            // Credentials belong to the origin; a mirror is asked anonymously.
            creds: if mirror.is_some() { None } else { creds },
            extra_scopes,
            push: false,
            auth: Mutex::new(None),
        })
    }

    /// Asks for push rights as well as pull when authenticating.
    pub fn for_push(mut self) -> Self {
        self.push = true;
        self
    }

    pub fn url(&self, tail: &str) -> String {
        format!("{}/v2/{}/{tail}", self.base, self.repo)
    }

    fn current_auth(&self) -> Option<String> {
        self.auth.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        build: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        let mut rb = build(self.client.request(method.clone(), url));
        if let Some(a) = self.current_auth() {
            rb = rb.header(AUTHORIZATION, a);
        }
        rb.send().await.map_err(|e| RemoteError::Http {
            method: method.to_string(),
            url: url.to_owned(),
            message: chain(&e),
        })
    }

    /// Sends a request built by `build` (called again for the retry after a 401).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        build: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync),
    ) -> Result<Response> {
        let resp = self.send_once(&method, url, build).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let had_auth = self.current_auth();
        let ch = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(Challenge::parse);
        let Some(ch) = ch else { return Ok(resp) };
        self.authenticate(&ch, had_auth.as_deref()).await?;
        if self.current_auth() == had_auth {
            return Ok(resp);
        }
        self.send_once(&method, url, build).await
    }

    pub async fn get(&self, url: &str, build: &(dyn Fn(RequestBuilder) -> RequestBuilder + Sync)) -> Result<Response> {
        self.send(Method::GET, url, build).await
    }

    fn scopes(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.repo.is_empty() {
            v.push(format!("repository:{}:{}", self.repo, if self.push { "pull,push" } else { "pull" }));
        }
        v.extend(self.extra_scopes.iter().cloned());
        v
    }

    /// Answers a challenge: sets the Authorization header to use, or fails.
    async fn authenticate(&self, ch: &Challenge, had: Option<&str>) -> Result<()> {
        let creds = self.creds.as_ref().filter(|c| !c.is_empty());
        match ch.scheme.as_str() {
            "basic" => {
                let Some(c) = creds.filter(|c| !c.username.is_empty()) else {
                    return Err(RemoteError::Unauthorized("no basic auth credentials".into()));
                };
                let v = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", c.username, c.password))
                );
                if had == Some(v.as_str()) {
                    return Ok(());
                }
                *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
                Ok(())
            }
            "bearer" => {
                if let Some(c) = creds.filter(|c| !c.registry_token.is_empty()) {
                    *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!("Bearer {}", c.registry_token));
                    return Ok(());
                }
                let realm = ch
                    .get("realm")
                    .ok_or_else(|| RemoteError::Invalid(format!("{}: bearer challenge without a realm", self.host)))?;
                let service = ch.get("service").unwrap_or_default();
                let mut scopes = self.scopes();
                if let Some(s) = ch.get("scope")
                    && !scopes.iter().any(|x| x == s)
                {
                    scopes.push(s.to_owned());
                }
                // Tokens are cached per credential (a hash of the secret, not only the user name), so
                // a wrong password never reuses the token a right one obtained.
                let who = creds
                    .map(|c| {
                        oci::Digest::sha256_of(
                            format!("{}\0{}\0{}", c.username, c.password, c.identity_token).as_bytes(),
                        )
                        .to_string()
                    })
                    .unwrap_or_default();
                let key = format!("{realm}|{service}|{}|{who}", scopes.join(" "));
                let cached = self.regs.tokens.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
                let value = match cached.filter(|t| t.until > Instant::now()) {
                    Some(t) if had != Some(format!("Bearer {}", t.value).as_str()) => t.value,
                    _ => {
                        let t = self.fetch_token(realm, service, &scopes, creds).await?;
                        self.regs.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(key, t.clone());
                        t.value
                    }
                };
                let v = format!("Bearer {value}");
                if had == Some(v.as_str()) {
                    return Ok(());
                }
                *self.auth.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
                Ok(())
            }
            other => Err(RemoteError::Invalid(format!("{}: unsupported authentication scheme `{other}`", self.host))),
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: &str,
        scopes: &[String],
        creds: Option<&Credentials>,
    ) -> Result<Token> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if !service.is_empty() {
            query.push(("service", service));
        }
        for s in scopes {
            query.push(("scope", s));
        }
        let client = self.regs.client(&self.host)?;
        let req = match creds {
            Some(c) if !c.identity_token.is_empty() => {
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.identity_token.as_str()),
                    ("client_id", "berth"),
                ];
                form.extend(query.iter().copied());
                client.post(realm).form(&form)
            }
            Some(c) if !c.username.is_empty() => {
                query.push(("account", &c.username));
                client.get(realm).query(&query).basic_auth(&c.username, Some(&c.password))
            }
            _ => client.get(realm).query(&query),
        };
        let resp = req.send().await.map_err(|e| RemoteError::Http {
            method: "GET".into(),
            url: realm.to_owned(),
            message: chain(&e),
        })?;
        if !resp.status().is_success() {
            let (status, _, text) = error_text(resp).await;
            let msg = format!("get token from {realm}: {text}");
            return Err(if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                RemoteError::Unauthorized(msg)
            } else {
                RemoteError::Http { method: "GET".into(), url: realm.to_owned(), message: status.to_string() }
            });
        }
        let body = resp.bytes().await.map_err(|e| RemoteError::Http {
            method: "GET".into(),
            url: realm.to_owned(),
            message: chain(&e),
        })?;
        let v: Value =
            serde_json::from_slice(&body).map_err(|e| RemoteError::Invalid(format!("token from {realm}: {e}")))?;
        let value = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| RemoteError::Invalid(format!("token from {realm}: no token in the answer")))?
            .to_owned();
        // Docker's default lifetime is 60 s; keep a margin so a token never expires in flight.
        let secs = v.get("expires_in").and_then(Value::as_u64).unwrap_or(60).max(60);
        Ok(Token { value, until: Instant::now() + Duration::from_secs(secs.saturating_sub(10)) })
    }

    /// `POST /auth`: `/v2/` answers 200 with these credentials (or asks for none).
    pub async fn login(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let resp = self.get(&url, &|r| r).await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status();
        Err(if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            RemoteError::Unauthorized(format!("login attempt to {url} failed with status: {status}"))
        } else {
            RemoteError::Http { method: "GET".into(), url, message: status.to_string() }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(c.scheme, "bearer");
        assert_eq!(c.get("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c.get("service"), Some("registry.docker.io"));
        assert_eq!(c.get("scope"), Some("repository:library/busybox:pull"));
        let b = Challenge::parse(r#"Basic realm="berth-registry""#);
        assert_eq!((b.scheme.as_str(), b.get("realm")), ("basic", Some("berth-registry")));
        let e = Challenge::parse(r#"Bearer realm="x", error="invalid_token""#);
        assert_eq!(e.get("error"), Some("invalid_token"));
    }
}
