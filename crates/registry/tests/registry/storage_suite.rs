//! One test suite for every Storage backend: the filesystem, and S3 through a moto server started
//! on loopback (skipped, saying why, when `moto_server` is not installed).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use berth_registry::storage::{FsStorage, S3Config, S3Storage, Storage};
use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::common::{OCI_MANIFEST, TestServer, bytes_of};

async fn read_all(s: &dyn Storage, key: &str, range: std::ops::Range<u64>) -> Vec<u8> {
    let chunks: Vec<Bytes> = s.read(key, range).await.expect("read").try_collect().await.expect("stream");
    chunks.concat()
}

/// The shared suite.
async fn suite(s: &dyn Storage) {
    assert!(s.stat("a/b/c").await.expect("stat").is_none());
    assert!(s.get("a/b/c").await.expect_err("missing").is_not_found());
    s.put("a/b/c", Bytes::from_static(b"hello")).await.expect("put");
    let meta = s.stat("a/b/c").await.expect("stat").expect("exists");
    assert_eq!(meta.size, 5);
    assert_eq!(&s.get("a/b/c").await.expect("get")[..], b"hello");
    s.put("a/b/c", Bytes::from_static(b"replaced")).await.expect("put");
    assert_eq!(&s.get("a/b/c").await.expect("get")[..], b"replaced");
    assert_eq!(read_all(s, "a/b/c", 2..5).await, b"pla");

    // Streamed writes are invisible until committed; aborted ones never appear.
    let big = bytes_of(3 << 20, 7);
    let mut w = s.writer("big/one").await.expect("writer");
    for chunk in big.chunks(700_000) {
        w.write(Bytes::copy_from_slice(chunk)).await.expect("write");
    }
    assert!(s.stat("big/one").await.expect("stat").is_none(), "visible before commit");
    w.commit().await.expect("commit");
    assert_eq!(s.stat("big/one").await.expect("stat").map(|m| m.size), Some(big.len() as u64));
    assert_eq!(read_all(s, "big/one", 0..big.len() as u64).await, big);
    assert_eq!(read_all(s, "big/one", 1_000_000..1_000_010).await, &big[1_000_000..1_000_010]);
    let mut w = s.writer("big/aborted").await.expect("writer");
    w.write(Bytes::from_static(b"partial")).await.expect("write");
    w.abort().await.expect("abort");
    assert!(s.stat("big/aborted").await.expect("stat").is_none());

    // Listing, renaming, touching, deleting.
    s.put("a/b/d", Bytes::from_static(b"1")).await.expect("put");
    s.put("a/x", Bytes::from_static(b"2")).await.expect("put");
    let mut keys: Vec<String> = s.list("a/").await.expect("list").into_iter().map(|m| m.key).collect();
    keys.sort();
    assert_eq!(keys, ["a/b/c", "a/b/d", "a/x"]);
    assert!(s.list("nothing/").await.expect("list").is_empty());
    s.rename("a/x", "moved/y").await.expect("rename");
    assert!(s.stat("a/x").await.expect("stat").is_none());
    assert_eq!(&s.get("moved/y").await.expect("get")[..], b"2");
    let before = s.stat("moved/y").await.expect("stat").expect("exists").modified;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    s.touch("moved/y").await.expect("touch");
    assert!(s.stat("moved/y").await.expect("stat").expect("exists").modified > before);
    assert!(s.touch("nope").await.expect_err("missing").is_not_found());
    s.delete("moved/y").await.expect("delete");
    s.delete("moved/y").await.expect("delete twice");
    s.delete_prefix("a/").await.expect("delete prefix");
    assert!(s.list("a/").await.expect("list").is_empty());
    assert!(s.put("../escape", Bytes::new()).await.is_err());
    assert!(s.put("/abs", Bytes::new()).await.is_err());
}

#[tokio::test]
async fn storage_suite_filesystem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = FsStorage::new(dir.path()).expect("store");
    suite(&s).await;
}

/// A moto S3 server on 127.0.0.1, killed on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn moto() -> Option<Moto> {
    let exe = std::env::var("BERTH_MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_owned());
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = match Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("skipping S3 tests: cannot run {exe} ({e}); install it with `pip install 'moto[server]'`");
            return None;
        }
    };
    let m = Moto { child, port };
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some(m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("skipping S3 tests: {exe} did not start listening on 127.0.0.1:{port}");
    None
}

/// Creates a bucket (moto does not check signatures).
async fn create_bucket(port: u16, bucket: &str) {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::put(format!("/{bucket}"))
        .header("host", format!("127.0.0.1:{port}"))
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = sender.send_request(req).await.expect("create bucket");
    assert!(resp.status().is_success(), "create bucket: {}", resp.status());
}

fn s3_config(port: u16, bucket: &str) -> S3Config {
    S3Config {
        bucket: bucket.to_owned(),
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        region: "us-east-1".to_owned(),
        access_key_id: Some("testing".to_owned()),
        secret_access_key: Some("testing".to_owned()),
        prefix: "reg".to_owned(),
    }
}

#[tokio::test]
async fn storage_suite_s3() {
    let Some(m) = moto().await else { return };
    create_bucket(m.port, "suite").await;
    let s = S3Storage::new(&s3_config(m.port, "suite")).expect("s3");
    suite(&s).await;
}

#[tokio::test]
async fn registry_round_trip_on_s3() {
    let Some(m) = moto().await else { return };
    create_bucket(m.port, "registry").await;
    let ts = TestServer::start_with(|c| c.s3 = Some(s3_config(m.port, "registry"))).await;
    let c = &ts.client;
    let (manifest, d) = c.push_image("s3/app", "v1", &bytes_of(6 << 20, 3)).await;
    let r = c.get("/v2/s3/app/manifests/v1").await;
    assert_eq!(r.body, manifest);
    // Chunked upload: parts concatenated into a blob large enough for a multipart upload.
    let data = bytes_of(12 << 20, 4);
    let bd = oci::Digest::sha256_of(&data);
    let r = c.req("POST", "/v2/s3/app/blobs/uploads/", &[], Bytes::new()).await;
    let loc = r.header("location").expect("location");
    let r = c.req("PATCH", &loc, &[("content-range", "0-5999999")], data[..6_000_000].to_vec()).await;
    assert_eq!(r.status, 202, "{r:?}");
    let r = c.req("PUT", &format!("{loc}?digest={bd}"), &[], data[6_000_000..].to_vec()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(c.get(&format!("/v2/s3/app/blobs/{bd}")).await.body, data);
    assert_eq!(c.get("/v2/_catalog").await.json()["repositories"], serde_json::json!(["s3/app"]));
    assert_eq!(c.delete(&format!("/v2/s3/app/manifests/{d}")).await.status, 202);
    let store: Arc<dyn Storage> = Arc::new(S3Storage::new(&s3_config(m.port, "registry")).expect("s3"));
    let report = berth_registry::gc::collect(store.as_ref(), false, Duration::ZERO).await.expect("gc");
    assert_eq!(report.blobs_deleted.len(), 4, "{report:?}");
    let _ = OCI_MANIFEST;
    ts.stop().await;
}
