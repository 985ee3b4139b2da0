//! Basic auth, the bearer token flow and access rules.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use berth_registry::auth::{AccessRule, TokenConfig};
use bytes::Bytes;
use oci::Digest;

use crate::common::{Client, TestServer, files_under};

fn htpasswd(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("htpasswd");
    let alice = bcrypt::hash("alice-pw", 4).expect("hash");
    let bob = bcrypt::hash("bob-pw", 4).expect("hash");
    std::fs::write(&p, format!("alice:{alice}\nbob:{bob}\n")).expect("write htpasswd");
    p
}

fn basic(user: &str, pw: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{pw}")))
}

fn rules() -> Vec<AccessRule> {
    vec![
        AccessRule { user: "*".into(), repository: "${user}/*".into(), actions: vec!["*".into()] },
        AccessRule { user: "*".into(), repository: "shared/*".into(), actions: vec!["pull".into()] },
        AccessRule { user: "alice".into(), repository: "shared/*".into(), actions: vec!["push".into()] },
        AccessRule { user: "anonymous".into(), repository: "public/*".into(), actions: vec!["pull".into()] },
    ]
}

async fn start(token: bool) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = htpasswd(dir.path());
    let ts = TestServer::start_with(|c| {
        c.auth.htpasswd = Some(pw);
        c.auth.access = rules();
        if token {
            c.auth.token = Some(TokenConfig { expiry_secs: 60, ..Default::default() });
        }
    })
    .await;
    (ts, dir)
}

#[tokio::test]
async fn basic_auth_and_rules() {
    let (ts, _dir) = start(false).await;
    let anon = ts.client.clone();
    let r = anon.get("/v2/").await;
    assert_eq!((r.status, r.code().as_str()), (401, "UNAUTHORIZED"));
    assert_eq!(r.header("www-authenticate"), Some("Basic realm=\"berth-registry\"".into()));
    let wrong = Client { auth: Some(basic("alice", "nope")), ..anon.clone() };
    assert_eq!(wrong.get("/v2/").await.status, 401);
    let alice = Client { auth: Some(basic("alice", "alice-pw")), ..anon.clone() };
    let bob = Client { auth: Some(basic("bob", "bob-pw")), ..anon.clone() };
    assert_eq!(alice.get("/v2/").await.status, 200);
    alice.push_image("alice/app", "v1", b"alice layer").await;
    alice.push_image("shared/base", "v1", b"shared layer").await;
    // bob may pull shared/* but not push there, nor touch alice/*.
    assert_eq!(bob.get("/v2/shared/base/manifests/v1").await.status, 200);
    let r = bob.req("POST", "/v2/shared/base/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (403, "DENIED"));
    let r = bob.get("/v2/alice/app/manifests/v1").await;
    assert_eq!(r.status, 403);
    let d = Digest::sha256_of(b"bob was here");
    let r = bob.req("POST", &format!("/v2/alice/app/blobs/uploads/?digest={d}"), &[], b"bob was here".to_vec()).await;
    assert_eq!(r.status, 403);
    let r = wrong.req("POST", &format!("/v2/alice/app/blobs/uploads/?digest={d}"), &[], b"bob was here".to_vec()).await;
    assert_eq!(r.status, 401);
    assert!(!files_under(&ts.root()).iter().any(|f| f.contains(d.hex())), "nothing written");
    // Anonymous pulls of public/* only.
    alice.push_image("alice/x", "v1", b"x").await;
    let r = anon.get("/v2/alice/x/manifests/v1").await;
    assert_eq!(r.status, 401);
    assert_eq!(bob.get("/v2/_catalog").await.status, 403);
    ts.stop().await;
}

async fn token(c: &Client, auth: Option<String>, scope: &str) -> String {
    let c = Client { auth, ..c.clone() };
    let r = c.get(&format!("/token?service=berth-registry&scope={scope}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["token"].as_str().expect("token").to_owned()
}

#[tokio::test]
async fn bearer_token_flow() {
    let (ts, _dir) = start(true).await;
    let anon = ts.client.clone();
    let r = anon.get("/v2/alice/app/tags/list").await;
    assert_eq!(r.status, 401);
    let challenge = r.header("www-authenticate").expect("challenge");
    assert_eq!(
        challenge,
        format!(
            "Bearer realm=\"http://{}/token\",service=\"berth-registry\",scope=\"repository:alice/app:pull\"",
            anon.addr
        )
    );
    // Wrong credentials at the token endpoint.
    let bad = Client { auth: Some(basic("alice", "wrong")), ..anon.clone() };
    assert_eq!(bad.get("/token?service=berth-registry&scope=repository:alice/app:pull").await.status, 401);
    // Alice gets push+pull on her namespace.
    let t = token(&anon, Some(basic("alice", "alice-pw")), "repository:alice/app:pull,push").await;
    let alice = Client { auth: Some(format!("Bearer {t}")), ..anon.clone() };
    alice.push_image("alice/app", "v1", b"layer").await;
    assert_eq!(alice.get("/v2/alice/app/manifests/v1").await.status, 200);
    // The same token does not cover another repository.
    let r = alice.get("/v2/shared/base/tags/list").await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").expect("challenge").contains("error=\"insufficient_scope\""));
    // Bob asks for push on alice/app: the token grants nothing, and pushing is refused.
    let t = token(&anon, Some(basic("bob", "bob-pw")), "repository:alice/app:pull,push").await;
    let bob = Client { auth: Some(format!("Bearer {t}")), ..anon.clone() };
    let d = Digest::sha256_of(b"evil");
    let r = bob.req("POST", &format!("/v2/alice/app/blobs/uploads/?digest={d}"), &[], b"evil".to_vec()).await;
    assert_eq!(r.status, 401);
    assert!(!files_under(&ts.root()).iter().any(|f| f.contains(d.hex())), "nothing written");
    // Anonymous tokens cover what the rules give "anonymous", and nothing else.
    let t = token(&anon, None, "repository:public/img:pull").await;
    let a = Client { auth: Some(format!("Bearer {t}")), ..anon.clone() };
    assert_eq!(a.get("/v2/public/img/tags/list").await.code(), "NAME_UNKNOWN");
    let t = token(&anon, None, "repository:alice/app:pull").await;
    let a = Client { auth: Some(format!("Bearer {t}")), ..anon.clone() };
    assert_eq!(a.get("/v2/alice/app/tags/list").await.status, 401);
    // Tokens for another service are not issued.
    let alice_basic = Client { auth: Some(basic("alice", "alice-pw")), ..anon.clone() };
    let r = alice_basic.get("/token?service=elsewhere&scope=repository:alice/app:pull").await;
    assert_eq!((r.status, r.code().as_str()), (403, "DENIED"));
    // A forged token is refused.
    let (head, last) = t.split_at(t.len() - 1);
    let forged = Client { auth: Some(format!("Bearer {head}{}", if last == "x" { "y" } else { "x" })), ..anon.clone() };
    assert_eq!(forged.get("/v2/alice/app/tags/list").await.status, 401);
    ts.stop().await;
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = htpasswd(dir.path());
    let ts = TestServer::start_with(|c| {
        c.auth.htpasswd = Some(pw);
        c.auth.token = Some(TokenConfig { expiry_secs: 1, ..Default::default() });
    })
    .await;
    let t = token(&ts.client, Some(basic("alice", "alice-pw")), "repository:a:pull,push").await;
    let c = Client { auth: Some(format!("Bearer {t}")), ..ts.client.clone() };
    assert_eq!(c.req("POST", "/v2/a/blobs/uploads/", &[], Bytes::new()).await.status, 202);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = c.req("POST", "/v2/a/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").expect("challenge").contains("invalid_token"));
    ts.stop().await;
}

#[tokio::test]
async fn open_registry_refused_off_loopback() {
    let config = berth_registry::Config { addr: Some("0.0.0.0:0".into()), ..Default::default() };
    let err = berth_registry::start(config).await.err().expect("refused");
    assert!(err.to_string().contains("without authentication"), "{err}");
}
