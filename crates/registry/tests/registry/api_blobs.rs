//! Base endpoint, blobs and upload sessions.

use bytes::Bytes;
use oci::Digest;

use crate::common::{TestServer, bytes_of, files_under};

#[tokio::test]
async fn base_endpoint_answers_with_api_version() {
    let ts = TestServer::start().await;
    let r = ts.client.get("/v2/").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-distribution-api-version").as_deref(), Some("registry/2.0"));
    let r = ts.client.get("/v2/nothing/here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.header("docker-distribution-api-version").as_deref(), Some("registry/2.0"));
    ts.stop().await;
}

#[tokio::test]
async fn monolithic_post_with_digest_then_head_and_get() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let data = bytes_of(100_000, 1);
    let d = c.push_blob("a/b", &data).await;
    let r = c.head(&format!("/v2/a/b/blobs/{d}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("100000".into()));
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    assert!(r.body.is_empty());
    let r = c.get(&format!("/v2/a/b/blobs/{d}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], &data[..]);
    // Not linked into another repository.
    let r = c.head(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(r.status, 404);
    let r = c.get(&format!("/v2/other/blobs/{d}")).await;
    assert_eq!(r.code(), "BLOB_UNKNOWN");
    ts.stop().await;
}

#[tokio::test]
async fn range_requests() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let data = bytes_of(1000, 2);
    let d = c.push_blob("r", &data).await;
    let path = format!("/v2/r/blobs/{d}");
    let r = c.req("GET", &path, &[("range", "bytes=10-19")], Bytes::new()).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 10-19/1000".into()));
    assert_eq!(&r.body[..], &data[10..20]);
    let r = c.req("GET", &path, &[("range", "bytes=990-")], Bytes::new()).await;
    assert_eq!(&r.body[..], &data[990..]);
    let r = c.req("GET", &path, &[("range", "bytes=-5")], Bytes::new()).await;
    assert_eq!(&r.body[..], &data[995..]);
    let r = c.req("GET", &path, &[("range", "bytes=2000-")], Bytes::new()).await;
    assert_eq!(r.status, 416);
    ts.stop().await;
}

#[tokio::test]
async fn post_then_put_upload() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let r = c.req("POST", "/v2/x/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(r.status, 202, "{r:?}");
    let loc = r.header("location").expect("location");
    assert!(r.header("docker-upload-uuid").is_some());
    assert_eq!(r.header("range"), Some("0-0".into()));
    let data = bytes_of(5000, 3);
    let d = Digest::sha256_of(&data);
    let r = c.req("PUT", &format!("{loc}?digest={d}"), &[], data.clone()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some(format!("/v2/x/blobs/{d}")));
    assert_eq!(c.get(&format!("/v2/x/blobs/{d}")).await.body, data);
    // The session is gone.
    let r = c.get(&loc).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.code(), "BLOB_UPLOAD_UNKNOWN");
    ts.stop().await;
}

#[tokio::test]
async fn chunked_upload_in_order_and_out_of_order() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let data = bytes_of(30_000, 4);
    let d = Digest::sha256_of(&data);
    let r = c.req("POST", "/v2/chunky/blobs/uploads/", &[], Bytes::new()).await;
    let loc = r.header("location").expect("location");
    let r = c
        .req(
            "PATCH",
            &loc,
            &[("content-range", "0-9999"), ("content-type", "application/octet-stream")],
            data[..10_000].to_vec(),
        )
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.header("range"), Some("0-9999".into()));
    // Out of order: starts at 20000 while 10000 bytes are there.
    let r = c.req("PATCH", &loc, &[("content-range", "20000-29999")], data[20_000..].to_vec()).await;
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
    let r = c.req("PATCH", &loc, &[("content-range", "10000-19999")], data[10_000..20_000].to_vec()).await;
    assert_eq!(r.status, 202);
    let r = c.get(&loc).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("range"), Some("0-19999".into()));
    let r = c.req("PUT", &format!("{loc}?digest={d}"), &[], data[20_000..].to_vec()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(c.get(&format!("/v2/chunky/blobs/{d}")).await.body, data);
    ts.stop().await;
}

/// The final PUT of a chunked upload carries a Content-Range too: out of order, it is refused with 416
/// and the session is left as it was, so the client can ask where it stands and carry on (found by the
/// OCI conformance suite's "chunked out-of-order and put chunk").
#[tokio::test]
async fn out_of_order_final_put_chunk_is_refused_and_session_kept() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let data = bytes_of(30_000, 9);
    let d = Digest::sha256_of(&data);
    let r = c.req("POST", "/v2/chunky/blobs/uploads/", &[], Bytes::new()).await;
    let loc = r.header("location").expect("location");
    let r = c.req("PATCH", &loc, &[("content-range", "0-9999")], data[..10_000].to_vec()).await;
    assert_eq!(r.status, 202, "{r:?}");
    let put = format!("{loc}?digest={d}");
    let r = c.req("PUT", &put, &[("content-range", "20000-29999")], data[20_000..].to_vec()).await;
    assert_eq!(r.status, 416, "{r:?}");
    assert_eq!(r.code(), "BLOB_UPLOAD_INVALID");
    let r = c.get(&loc).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(r.header("range"), Some("0-9999".into()));
    let r = c.req("PATCH", &loc, &[("content-range", "10000-19999")], data[10_000..20_000].to_vec()).await;
    assert_eq!(r.status, 202, "{r:?}");
    let r = c.req("PUT", &put, &[("content-range", "20000-29999")], data[20_000..].to_vec()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(c.get(&format!("/v2/chunky/blobs/{d}")).await.body, data);
    ts.stop().await;
}

fn sha512_of(data: &[u8]) -> Digest {
    use sha2::Digest as _;
    format!("sha512:{}", hex::encode(sha2::Sha512::digest(data))).parse().expect("sha512 digest")
}

/// Blobs named by sha512 digests: monolithic and chunked uploads, pulls, and a wrong sha512 refused
/// (the OCI conformance suite's "sha512 blobs"; berth refused every sha512 upload with DIGEST_INVALID).
#[tokio::test]
async fn sha512_blobs_upload_and_pull() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let data = bytes_of(7_000, 11);
    let d = sha512_of(&data);
    let r = c.req("POST", &format!("/v2/big/blobs/uploads/?digest={d}"), &[], data.clone()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    assert_eq!(r.header("location"), Some(format!("/v2/big/blobs/{d}")));
    let r = c.head(&format!("/v2/big/blobs/{d}")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-length"), Some("7000".into()));
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    assert_eq!(c.get(&format!("/v2/big/blobs/{d}")).await.body, data);

    let data = bytes_of(30_000, 12);
    let d = sha512_of(&data);
    let r = c.req("POST", "/v2/big/blobs/uploads/", &[], Bytes::new()).await;
    let loc = r.header("location").expect("location");
    let r = c.req("PATCH", &loc, &[("content-range", "0-9999")], data[..10_000].to_vec()).await;
    assert_eq!(r.status, 202, "{r:?}");
    let r = c.req("PATCH", &loc, &[("content-range", "10000-19999")], data[10_000..20_000].to_vec()).await;
    assert_eq!(r.status, 202, "{r:?}");
    let r = c.req("PUT", &format!("{loc}?digest={d}"), &[], data[20_000..].to_vec()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    assert_eq!(c.get(&format!("/v2/big/blobs/{d}")).await.body, data);

    let wrong = sha512_of(b"something else");
    let r = c.req("POST", &format!("/v2/big/blobs/uploads/?digest={wrong}"), &[], data.clone()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"), "{r:?}");
    assert_eq!(c.head(&format!("/v2/big/blobs/{wrong}")).await.status, 404);
    ts.stop().await;
}

/// `POST …/blobs/uploads/?digest-algorithm=` (distribution-spec 1.1+): sha256 and sha512 open a
/// session, anything else is refused with 400 DIGEST_INVALID.
#[tokio::test]
async fn upload_digest_algorithm_parameter() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    for alg in ["sha256", "sha512"] {
        let r = c.req("POST", &format!("/v2/alg/blobs/uploads/?digest-algorithm={alg}"), &[], Bytes::new()).await;
        assert_eq!(r.status, 202, "{alg}: {r:?}");
    }
    let r = c.req("POST", "/v2/alg/blobs/uploads/?digest-algorithm=md5", &[], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"), "{r:?}");
    ts.stop().await;
}

#[tokio::test]
async fn cancel_upload() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let r = c.req("POST", "/v2/x/blobs/uploads/", &[], Bytes::new()).await;
    let loc = r.header("location").expect("location");
    c.req("PATCH", &loc, &[], vec![1u8; 100]).await;
    assert_eq!(c.delete(&loc).await.status, 204);
    assert_eq!(c.get(&loc).await.code(), "BLOB_UPLOAD_UNKNOWN");
    assert_eq!(c.delete(&loc).await.status, 404);
    assert!(!files_under(&ts.root()).iter().any(|f| f.starts_with("_uploads/") && f.contains("parts")));
    // Another repository cannot touch a session.
    let r = c.req("POST", "/v2/x/blobs/uploads/", &[], Bytes::new()).await;
    let id = r.header("docker-upload-uuid").expect("uuid");
    assert_eq!(c.get(&format!("/v2/y/blobs/uploads/{id}")).await.code(), "BLOB_UPLOAD_UNKNOWN");
    ts.stop().await;
}

#[tokio::test]
async fn digest_mismatch_leaves_nothing_visible() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let wrong = Digest::sha256_of(b"something else");
    let r = c.req("POST", &format!("/v2/x/blobs/uploads/?digest={wrong}"), &[], b"content".to_vec()).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.code(), "DIGEST_INVALID");
    assert_eq!(c.head(&format!("/v2/x/blobs/{wrong}")).await.status, 404);
    let actual = Digest::sha256_of(b"content");
    assert_eq!(c.head(&format!("/v2/x/blobs/{actual}")).await.status, 404);
    assert!(!files_under(&ts.root()).iter().any(|f| f.starts_with("blobs/")), "{:?}", files_under(&ts.root()));
    let r = c.req("POST", "/v2/x/blobs/uploads/?digest=sha256:nothex", &[], b"x".to_vec()).await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    let r = c.req("POST", "/v2/x/blobs/uploads/", &[], Bytes::new()).await;
    let loc = r.header("location").expect("location");
    let r = c.req("PUT", &loc, &[], b"x".to_vec()).await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    ts.stop().await;
}

#[tokio::test]
async fn interrupted_upload_leaves_nothing_visible() {
    use tokio::io::AsyncWriteExt;
    let ts = TestServer::start().await;
    let c = &ts.client;
    let data = bytes_of(200_000, 5);
    let d = Digest::sha256_of(&data);
    let mut s = tokio::net::TcpStream::connect(ts.client.addr).await.expect("connect");
    let head =
        format!("POST /v2/x/blobs/uploads/?digest={d} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n", data.len());
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(&data[..50_000]).await.expect("write");
    drop(s);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(c.head(&format!("/v2/x/blobs/{d}")).await.status, 404);
    let files = files_under(&ts.root());
    assert!(!files.iter().any(|f| f.starts_with("blobs/") || f.starts_with("_tmp/")), "{files:?}");
    ts.stop().await;
}

#[tokio::test]
async fn blob_delete() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let d = c.push_blob("x", b"delete me").await;
    assert_eq!(c.delete(&format!("/v2/x/blobs/{d}")).await.status, 202);
    assert_eq!(c.head(&format!("/v2/x/blobs/{d}")).await.status, 404);
    let r = c.delete(&format!("/v2/x/blobs/{d}")).await;
    assert_eq!((r.status, r.code().as_str()), (404, "BLOB_UNKNOWN"));
    ts.stop().await;
}

#[tokio::test]
async fn cross_repository_mount() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let d = c.push_blob("src/repo", b"shared layer").await;
    let r = c.req("POST", &format!("/v2/dst/blobs/uploads/?mount={d}&from=src/repo"), &[], Bytes::new()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("location"), Some(format!("/v2/dst/blobs/{d}")));
    assert_eq!(c.get(&format!("/v2/dst/blobs/{d}")).await.body, &b"shared layer"[..]);
    // Unknown in `from`: falls back to a normal upload session.
    let other = Digest::sha256_of(b"not there");
    let r = c.req("POST", &format!("/v2/dst/blobs/uploads/?mount={other}&from=src/repo"), &[], Bytes::new()).await;
    assert_eq!(r.status, 202);
    assert!(r.header("location").expect("location").starts_with("/v2/dst/blobs/uploads/"));
    ts.stop().await;
}

#[tokio::test]
async fn names_are_validated() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    for bad in ["/v2/UPPER/tags/list", "/v2/a..b/blobs/uploads/", "/v2/-x/manifests/latest"] {
        let r = c.req(if bad.contains("uploads") { "POST" } else { "GET" }, bad, &[], Bytes::new()).await;
        assert_eq!((r.status, r.code().as_str()), (400, "NAME_INVALID"), "{bad}");
    }
    let r = c.get("/v2/nobody/tags/list").await;
    assert_eq!((r.status, r.code().as_str()), (404, "NAME_UNKNOWN"));
    let r = c.req("PUT", "/v2/x/blobs/sha256:abc", &[], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (405, "UNSUPPORTED"));
    ts.stop().await;
}

#[tokio::test]
async fn too_many_upload_sessions() {
    let ts = TestServer::start_with(|c| c.max_uploads = Some(1)).await;
    let c = &ts.client;
    let r = c.req("POST", "/v2/x/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!(r.status, 202);
    let r = c.req("POST", "/v2/x/blobs/uploads/", &[], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (429, "TOOMANYREQUESTS"));
    ts.stop().await;
}

#[tokio::test]
async fn upload_resumes_after_restart() {
    let ts = TestServer::start().await;
    let root = ts.root();
    let data = bytes_of(20_000, 6);
    let d = Digest::sha256_of(&data);
    let r = ts.client.req("POST", "/v2/x/blobs/uploads/", &[], Bytes::new()).await;
    let loc = r.header("location").expect("location");
    let r = ts.client.req("PATCH", &loc, &[("content-range", "0-9999")], data[..10_000].to_vec()).await;
    assert_eq!(r.status, 202);
    // Stop the server, keep the store, start another on it.
    let dir = ts.dir;
    if let Some(s) = ts.server {
        s.shutdown().await.expect("shutdown");
    }
    let config =
        berth_registry::Config { addr: Some("127.0.0.1:0".into()), root: Some(root.clone()), ..Default::default() };
    let server = berth_registry::start(config).await.expect("restart");
    let c = crate::common::Client { addr: server.addr, auth: None };
    let r = c.get(&loc).await;
    assert_eq!((r.status, r.header("range")), (204, Some("0-9999".into())));
    let r = c.req("PATCH", &loc, &[("content-range", "10000-19999")], data[10_000..].to_vec()).await;
    assert_eq!(r.status, 202);
    let wrong = Digest::sha256_of(b"wrong");
    let r = c.req("PUT", &format!("{loc}?digest={d}"), &[], Bytes::new()).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(c.get(&format!("/v2/x/blobs/{d}")).await.body, data);
    assert_eq!(c.head(&format!("/v2/x/blobs/{wrong}")).await.status, 404);
    server.shutdown().await.expect("shutdown");
    drop(dir);
}
