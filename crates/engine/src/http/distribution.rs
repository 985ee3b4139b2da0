//! Pull, push and login: `POST /images/create?fromImage=`, `POST /images/{name}/push`,
//! `POST /auth`. Pull and push answer with Docker's JSON progress stream; an error before the
//! first line is an HTTP status (as moby does, so `docker run` can tell "not found"), an error
//! after it is an `errorDetail` line.

use std::collections::HashMap;
use std::future::Future;

use api::types::ProgressLine;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use image::remote::{Credentials, Event, Events, RemoteError, pull::Platform};
use oci::Reference;
use serde_json::json;

use super::{AppState, parse_json};
use crate::error::{EngineError, Result};

fn credentials(headers: &HeaderMap) -> Result<Option<Credentials>> {
    match headers.get("x-registry-auth").and_then(|v| v.to_str().ok()) {
        Some(h) => Ok(Credentials::from_header(h)?),
        None => Ok(None),
    }
}

/// Docker's text bar: `[=====>     ]  1.2MB/3.4MB` (jsonmessage's layout, go-units' sizes).
fn bar(current: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (current.min(total) * width).checked_div(total).unwrap_or(0) as usize;
    let mut s = String::from("[");
    s.push_str(&"=".repeat(filled));
    let mut drawn = filled;
    if current < total {
        s.push('>');
        drawn += 1;
    }
    s.push_str(&" ".repeat((width as usize).saturating_sub(drawn)));
    s.push(']');
    format!("{s} {:>8}/{}", human(current), human(total))
}

/// go-units `HumanSize`: decimal units, 4 significant digits.
fn human(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    let decimals = if v >= 100.0 {
        1
    } else if v >= 10.0 {
        2
    } else {
        3
    };
    let t = format!("{v:.decimals$}");
    let t = if t.contains('.') { t.trim_end_matches('0').trim_end_matches('.').to_owned() } else { t };
    format!("{t}{}", units[i])
}

/// A pull or push event as a progress line of the JSON stream.
pub(crate) fn line(e: Event) -> ProgressLine {
    let detail = match e.progress {
        Some((c, t)) => Some(json!({"current": c, "total": t})),
        None if e.id.is_some() || e.aux.is_some() => Some(json!({})),
        None => None,
    };
    ProgressLine {
        status: (!e.status.is_empty()).then_some(e.status),
        id: e.id,
        progress: e.progress.map(|(c, t)| bar(c, t)),
        progress_detail: detail,
        aux: e.aux,
        ..Default::default()
    }
}

fn to_bytes(p: &ProgressLine) -> bytes::Bytes {
    let mut v = serde_json::to_vec(p).unwrap_or_default();
    v.extend_from_slice(b"\r\n");
    v.into()
}

/// Runs `job`, streaming its events; fails with a status when it fails before saying anything.
async fn progress_response<F>(job: impl FnOnce(Events) -> F) -> Result<Response>
where
    F: Future<Output = std::result::Result<(), RemoteError>> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel();
    let fut = job(Events(tx));
    tokio::spawn(async move {
        let r = fut.await;
        let _ = done_tx.send(r);
    });
    // The first event, or the end: a job that ends without a word answers with a status.
    let mut result = None;
    let first = tokio::select! {
        biased;
        ev = rx.recv() => ev,
        r = &mut done_rx => {
            let r = r.unwrap_or(Ok(()));
            match rx.try_recv() {
                Ok(ev) => {
                    result = Some(r);
                    Some(ev)
                }
                Err(_) => {
                    result = Some(r);
                    None
                }
            }
        }
    };
    let Some(first) = first else {
        let r = match result {
            Some(r) => r,
            None => done_rx.await.unwrap_or(Ok(())),
        };
        r?;
        return Ok(([(header::CONTENT_TYPE, "application/json")], "").into_response());
    };
    let (btx, brx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
    tokio::spawn(async move {
        let _ = btx.send(to_bytes(&line(first))).await;
        let result = if let Some(r) = result {
            while let Ok(ev) = rx.try_recv() {
                let _ = btx.send(to_bytes(&line(ev))).await;
            }
            r
        } else {
            loop {
                tokio::select! {
                    biased;
                    ev = rx.recv() => match ev {
                        Some(ev) => { let _ = btx.send(to_bytes(&line(ev))).await; }
                        None => break (&mut done_rx).await.unwrap_or(Ok(())),
                    },
                    r = &mut done_rx => {
                        while let Ok(ev) = rx.try_recv() {
                            let _ = btx.send(to_bytes(&line(ev))).await;
                        }
                        break r.unwrap_or(Ok(()));
                    }
                }
            }
        };
        if let Err(e) = result {
            let m = e.to_string();
            let p = ProgressLine {
                error: Some(m.clone()),
                error_detail: Some(json!({"message": m})),
                ..Default::default()
            };
            let _ = btx.send(to_bytes(&p)).await;
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], super::channel_body(brx)).into_response())
}

/// `POST /images/create?fromImage=&tag=&platform=`.
pub async fn pull(e: AppState, q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Response> {
    let img = q.get("fromImage").cloned().unwrap_or_default();
    let full = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) if t.starts_with("sha256:") => format!("{img}@{t}"),
        Some(t) if !img.contains('@') => format!("{img}:{t}"),
        _ => img.clone(),
    };
    // No tag anywhere: every tag of the repository (the API's meaning; `docker pull -a`).
    let parsed = Reference::parse(&full).map_err(|err| EngineError::BadRequest(err.to_string()))?;
    let all_tags = parsed.tag().is_none() && parsed.digest().is_none();
    let r = Reference::parse_with_default_tag(&full).map_err(|err| EngineError::BadRequest(err.to_string()))?;
    let platform = Platform::parse(q.get("platform").map(String::as_str).unwrap_or_default())?;
    let creds = credentials(headers)?;
    let (store, regs) = (e.images.clone(), e.registries.clone());
    progress_response(move |ev| async move {
        let refs = if all_tags {
            let tags = image::remote::pull::list_tags(regs.clone(), &parsed, creds.clone()).await?;
            let refs: Vec<Reference> = tags.iter().filter_map(|t| parsed.with_tag(t).ok()).collect();
            if refs.is_empty() {
                return Err(RemoteError::NotFound(format!("no tags in repository {}", parsed.familiar_name())));
            }
            refs
        } else {
            vec![r]
        };
        for r in refs {
            let p = image::remote::pull::pull(store.clone(), regs.clone(), &r, &platform, creds.clone(), ev.clone())
                .await?;
            tracing::info!("pulled {} as {}", p.repo_digest, p.id);
            e.image_event("pull", &r.familiar(), &r.familiar_name());
        }
        Ok(())
    })
    .await
}

/// `POST /images/{name}/push?tag=`: one tag, or every tag of the repository when none is given.
pub async fn push(e: AppState, name: String, q: &HashMap<String, String>, headers: &HeaderMap) -> Result<Response> {
    let creds = credentials(headers)?;
    let base = Reference::parse(&name).map_err(|err| EngineError::BadRequest(err.to_string()))?;
    let refs: Vec<Reference> = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => vec![base.with_tag(t).map_err(|err| EngineError::BadRequest(err.to_string()))?],
        None if base.tag().is_some() => vec![base.clone()],
        None => {
            let images = e.images.clone();
            let want = base.name();
            let mut v: Vec<Reference> = tokio::task::spawn_blocking(move || -> Result<Vec<Reference>> {
                let mut out = Vec::new();
                for rec in images.all()? {
                    out.extend(images.tags_of(&rec.id)?.into_iter().filter(|t| t.name() == want));
                }
                Ok(out)
            })
            .await
            .map_err(EngineError::internal)??;
            v.sort_by_key(|r| r.to_string());
            v
        }
    };
    // Fail with a status (not a stream line) when the image is not here, as Docker does.
    let first = refs.first().cloned().unwrap_or_else(|| base.clone());
    if refs.is_empty() || e.images.resolve(&first.to_string()).is_err() {
        return Err(EngineError::Remote(RemoteError::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            base.familiar_name()
        ))));
    }
    let (store, regs) = (e.images.clone(), e.registries.clone());
    progress_response(move |ev| async move {
        for r in refs {
            image::remote::push::push(store.clone(), regs.clone(), &r, creds.clone(), ev.clone()).await?;
            e.image_event("push", &r.familiar(), &r.familiar_name());
        }
        Ok(())
    })
    .await
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct AuthBody {
    username: String,
    password: String,
    auth: String,
    serveraddress: String,
    identitytoken: String,
    registrytoken: String,
}

/// `POST /auth`: checks credentials with the registry.
pub async fn auth(
    axum::extract::State(e): axum::extract::State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response> {
    let b: AuthBody = parse_json(&body)?;
    let mut c = Credentials {
        username: b.username,
        password: b.password,
        auth: b.auth,
        server_address: b.serveraddress,
        identity_token: b.identitytoken,
        registry_token: b.registrytoken,
    };
    c.fill_from_auth();
    e.registries.login(&c).await?;
    Ok(axum::Json(json!({"Status": "Login Succeeded", "IdentityToken": ""})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_bar_as_docker_draws_it() {
        let b = bar(1_200_000, 3_400_000);
        assert!(b.starts_with("[=================>"), "{b}");
        assert!(b.ends_with("1.2MB/3.4MB"), "{b}");
        let p = line(Event { id: Some("abc".into()), status: "Downloading".into(), progress: Some((1, 2)), aux: None });
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["progressDetail"], json!({"current": 1, "total": 2}));
        assert_eq!(v["id"], "abc");
    }
}
