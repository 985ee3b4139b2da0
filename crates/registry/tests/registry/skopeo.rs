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
