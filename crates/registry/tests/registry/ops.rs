//! Metrics, notifications, config files, graceful shutdown.

use std::sync::{Arc, Mutex};

use axum::body::Bytes as AxBytes;
use berth_registry::config::EndpointConfig;

use crate::common::TestServer;

#[tokio::test]
async fn metrics_in_prometheus_format() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    c.push_image("m", "v1", b"layer").await;
    let r = c.get("/metrics").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(text.contains("# TYPE berth_registry_requests_total counter"), "{text}");
    assert!(text.contains(r#"berth_registry_requests_total{method="PUT",route="manifest",status="201"} 1"#), "{text}");
    assert!(text.contains("berth_registry_uploads_open 0"), "{text}");
    ts.stop().await;
}

/// A webhook receiver on 127.0.0.1 that fails its first request (to exercise retries).
async fn receiver() -> (std::net::SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>, tokio::task::JoinHandle<()>) {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: AxBytes| {
            let (g, calls) = (g.clone(), calls.clone());
            async move {
                if calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                }
                if let Ok(v) = serde_json::from_slice(&body) {
                    g.lock().expect("lock").push(v);
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (addr, got, task)
}

#[tokio::test]
async fn webhooks_on_push_pull_delete_with_retry() {
    let (addr, got, task) = receiver().await;
    let ts = TestServer::start_with(|c| {
        c.notifications.endpoints.push(EndpointConfig {
            name: Some("test".into()),
            url: format!("http://{addr}/hook"),
            timeout_ms: 2000,
            retries: 3,
            backoff_ms: 50,
            headers: Default::default(),
        })
    })
    .await;
    let c = &ts.client;
    let (_, d) = c.push_image("n/app", "v1", b"layer").await;
    c.get("/v2/n/app/manifests/v1").await;
    c.delete(&format!("/v2/n/app/manifests/{d}")).await;
    let mut events = Vec::new();
    for _ in 0..100 {
        events = got
            .lock()
            .expect("lock")
            .iter()
            .flat_map(|e| e["events"].as_array().cloned().unwrap_or_default())
            .collect();
        if events.iter().any(|e| e["action"] == "delete") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let manifest_push = events
        .iter()
        .find(|e| e["action"] == "push" && e["target"]["tag"] == "v1")
        .unwrap_or_else(|| panic!("no manifest push event in {events:?}"));
    assert_eq!(manifest_push["target"]["repository"], "n/app");
    assert_eq!(manifest_push["target"]["digest"], d.to_string());
    assert!(events.iter().any(|e| e["action"] == "pull" && e["target"]["digest"] == d.to_string()));
    assert!(events.iter().any(|e| e["action"] == "delete"));
    ts.stop().await;
    task.abort();
}

#[tokio::test]
async fn config_files_toml_and_yaml() {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml_path = dir.path().join("r.toml");
    std::fs::write(
        &toml_path,
        "addr = \"127.0.0.1:0\"\n[delete]\nenabled = false\n[[auth.access]]\nuser = \"*\"\nrepository = \"*\"\nactions = [\"pull\"]\n",
    )
    .expect("write");
    let c = berth_registry::Config::load(&toml_path).expect("toml");
    assert!(!c.delete.enabled);
    assert_eq!(c.auth.access.len(), 1);
    let yaml_path = dir.path().join("r.yaml");
    std::fs::write(&yaml_path, "addr: 127.0.0.1:0\nnotifications:\n  endpoints:\n    - url: http://127.0.0.1:1/x\n")
        .expect("write");
    let c = berth_registry::Config::load(&yaml_path).expect("yaml");
    assert_eq!(c.notifications.endpoints.len(), 1);
    std::fs::write(&toml_path, "bogus = 1\n").expect("write");
    assert!(berth_registry::Config::load(&toml_path).is_err());
}

#[tokio::test]
async fn shutdown_finishes_uploads_in_flight() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ts = TestServer::start().await;
    let data = crate::common::bytes_of(300_000, 9);
    let d = oci::Digest::sha256_of(&data);
    let mut s = tokio::net::TcpStream::connect(ts.client.addr).await.expect("connect");
    let head = format!(
        "POST /v2/s/blobs/uploads/?digest={d} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        data.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&data[..100_000]).await.expect("write");
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let client = ts.client.clone();
    let stopping = tokio::spawn(ts.stop());
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    s.write_all(&data[100_000..]).await.expect("write rest");
    let mut resp = String::new();
    s.read_to_string(&mut resp).await.expect("read");
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");
    stopping.await.expect("stopped");
    // No longer accepting.
    assert!(tokio::net::TcpStream::connect(client.addr).await.is_err());
}

#[tokio::test]
async fn tls_with_rustls() {
    let have = |c: &str| std::process::Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success());
    if !have("curl") || !std::process::Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success())
    {
        eprintln!("skipping tls_with_rustls: needs openssl and curl");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ts = TestServer::start_with(|c| {
        c.tls = Some(berth_registry::config::TlsConfig { cert: cert.clone(), key: key.clone() });
    })
    .await;
    let url = format!("https://{}/v2/", ts.client.addr);
    let cert2 = cert.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert"])
            .arg(&cert2)
            .arg(&url)
            .output()
            .expect("curl")
    })
    .await
    .expect("join");
    let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("docker-distribution-api-version: registry/2.0"), "{text}");
    ts.stop().await;
}
