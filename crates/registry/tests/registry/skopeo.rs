//! skopeo copies images in and out (skipped when skopeo is not installed).

use crate::common::TestServer;

fn have(cmd: &str) -> bool {
    std::process::Command::new(cmd).arg("--version").output().is_ok_and(|o| o.status.success())
}

fn skopeo(args: &[&str]) {
    let out = std::process::Command::new("skopeo").args(args).output().expect("run skopeo");
    assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn skopeo_copies_in_and_out() {
    if !have("skopeo") {
        eprintln!("skipping skopeo_copies_in_and_out: skopeo not installed");
        return;
    }
    let ts = TestServer::start().await;
    let (_, d) = ts.client.push_image("src/img", "v1", b"some layer content").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = format!("oci:{}:v1", dir.path().join("layout").display());
    let reg = ts.client.addr;
    let src = format!("docker://{reg}/src/img:v1");
    let dst = format!("docker://{reg}/dst/img:copied");
    let t = tokio::task::spawn_blocking(move || {
        skopeo(&["copy", "--src-tls-verify=false", &src, &layout]);
        skopeo(&["copy", "--dest-tls-verify=false", &layout, &dst]);
        skopeo(&["inspect", "--tls-verify=false", "--raw", &dst]);
    });
    t.await.expect("skopeo");
    let r = ts.client.get("/v2/dst/img/manifests/copied").await;
    assert_eq!(r.status, 200, "{r:?}");
    // skopeo may re-serialize the manifest; the layers must be the same.
    let src = ts.client.get(&format!("/v2/src/img/manifests/{d}")).await.json();
    assert_eq!(r.json()["layers"], src["layers"]);
    ts.stop().await;
}

/// skopeo through the bearer token flow: challenge, /token with basic credentials, retry.
#[tokio::test]
async fn skopeo_pushes_with_token_auth() {
    if !have("skopeo") {
        eprintln!("skipping skopeo_pushes_with_token_auth: skopeo not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, format!("alice:{}\n", bcrypt::hash("alice-pw", 4).expect("hash"))).expect("write");
    let ts = TestServer::start_with(|c| {
        c.auth.htpasswd = Some(htpasswd);
        c.auth.token = Some(Default::default());
        c.auth.access = vec![berth_registry::auth::AccessRule {
            user: "alice".into(),
            repository: "alice/*".into(),
            actions: vec!["*".into()],
        }];
    })
    .await;
    // Seed an OCI layout through an open registry.
    let open = TestServer::start().await;
    open.client.push_image("seed", "v1", b"token flow layer").await;
    let layout = format!("oci:{}:v1", dir.path().join("layout").display());
    let (o, reg) = (open.client.addr, ts.client.addr);
    let out = tokio::task::spawn_blocking(move || {
        skopeo(&["copy", "--src-tls-verify=false", &format!("docker://{o}/seed:v1"), &layout]);
        skopeo(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            "alice:alice-pw",
            &layout,
            &format!("docker://{reg}/alice/img:v1"),
        ]);
        // Wrong password and a repository outside alice's namespace are refused.
        let bad = std::process::Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", "alice:nope", &layout])
            .arg(format!("docker://{reg}/alice/img:v2"))
            .output()
            .expect("skopeo");
        let outside = std::process::Command::new("skopeo")
            .args(["copy", "--dest-tls-verify=false", "--dest-creds", "alice:alice-pw", &layout])
            .arg(format!("docker://{reg}/bob/img:v1"))
            .output()
            .expect("skopeo");
        (bad.status.success(), outside.status.success())
    })
    .await
    .expect("skopeo");
    assert_eq!(out, (false, false));
    let alice = crate::common::Client {
        auth: Some(format!(
            "Basic {}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "alice:alice-pw")
        )),
        ..ts.client.clone()
    };
    let t = alice.get("/token?service=berth-registry&scope=repository:alice/img:pull").await.json();
    let alice =
        crate::common::Client { auth: Some(format!("Bearer {}", t["token"].as_str().expect("token"))), ..alice };
    assert_eq!(alice.get("/v2/alice/img/manifests/v1").await.status, 200);
    assert_eq!(alice.get("/v2/alice/img/tags/list").await.json()["tags"], serde_json::json!(["v1"]));
    ts.stop().await;
    open.stop().await;
}
