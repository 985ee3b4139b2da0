//! Manifests, tags, catalog, referrers.

use bytes::Bytes;
use oci::Digest;
use serde_json::json;

use crate::common::{DOCKER_LIST, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, TestServer, index, manifest};

#[tokio::test]
async fn oci_manifest_by_tag_and_digest() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let (m, d) = c.push_image("lib/app", "v1", b"layer one").await;
    for reference in ["v1".to_owned(), d.to_string()] {
        let r = c
            .req("GET", &format!("/v2/lib/app/manifests/{reference}"), &[("accept", OCI_MANIFEST)], Bytes::new())
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, m);
        assert_eq!(r.header("content-type"), Some(OCI_MANIFEST.into()));
        assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
        let r = c.head(&format!("/v2/lib/app/manifests/{reference}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-length"), Some(m.len().to_string()));
        assert!(r.body.is_empty());
    }
    let r = c.get("/v2/lib/app/manifests/nope").await;
    assert_eq!((r.status, r.code().as_str()), (404, "MANIFEST_UNKNOWN"));
    let r = c.get(&format!("/v2/other/manifests/{d}")).await;
    assert_eq!(r.code(), "MANIFEST_UNKNOWN");
    // PUT by digest: must match the content.
    let r = c.put_manifest("lib/app", &d.to_string(), OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 201);
    let wrong = Digest::sha256_of(b"x");
    let r = c.put_manifest("lib/app", &wrong.to_string(), OCI_MANIFEST, &m).await;
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    ts.stop().await;
}

/// A manifest pushed by a sha512 digest is stored and served under that digest, naming sha512 blobs
/// (the OCI conformance suite's "Digest Algorithm sha512"; berth hashed every manifest with sha256).
#[tokio::test]
async fn manifest_pushed_by_sha512_digest() {
    fn sha512_of(data: &[u8]) -> Digest {
        use sha2::Digest as _;
        format!("sha512:{}", hex::encode(sha2::Sha512::digest(data))).parse().expect("sha512 digest")
    }
    let ts = TestServer::start().await;
    let c = &ts.client;
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let layer = b"a sha512 layer";
    let mut blobs = Vec::new();
    for data in [&config[..], &layer[..]] {
        let d = sha512_of(data);
        let r = c.req("POST", &format!("/v2/s5/blobs/uploads/?digest={d}"), &[], data.to_vec()).await;
        assert_eq!(r.status, 201, "{r:?}");
        blobs.push(d);
    }
    let m = manifest(OCI_MANIFEST, &blobs[0], config.len(), &[(&blobs[1], layer.len())], None);
    let d = sha512_of(&m);
    let r = c.put_manifest("s5", &d.to_string(), OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    assert_eq!(r.header("location"), Some(format!("/v2/s5/manifests/{d}")));
    let r = c.req("GET", &format!("/v2/s5/manifests/{d}"), &[("accept", OCI_MANIFEST)], Bytes::new()).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, m);
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    assert_eq!(c.head(&format!("/v2/s5/manifests/{d}")).await.status, 200);
    // Its sha256 name was never pushed; a sha512 that is not the content's is refused.
    assert_eq!(c.head(&format!("/v2/s5/manifests/{}", Digest::sha256_of(&m))).await.status, 404);
    let wrong = sha512_of(b"not the manifest");
    let r = c.put_manifest("s5", &wrong.to_string(), OCI_MANIFEST, &m).await;
    assert_eq!((r.status, r.code().as_str()), (400, "DIGEST_INVALID"));
    ts.stop().await;
}

/// `PUT /v2/<name>/manifests/<digest>?tag=a&tag=b` tags the manifest and answers with OCI-Tag
/// (distribution-spec 1.1+; the conformance suite's "Manifest put with tag params").
#[tokio::test]
async fn push_by_digest_with_tag_parameters() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let cd = c.push_blob("tp", b"{}").await;
    let m = manifest(OCI_MANIFEST, &cd, 2, &[], None);
    let d = Digest::sha256_of(&m);
    let r = c.put_manifest("tp", &format!("{d}?tag=v1&tag=latest&tag=v1"), OCI_MANIFEST, &m).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("oci-tag"), Some("v1, latest".into()));
    assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    for tag in ["v1", "latest"] {
        let r = c.head(&format!("/v2/tp/manifests/{tag}")).await;
        assert_eq!(r.status, 200, "{tag}: {r:?}");
        assert_eq!(r.header("docker-content-digest"), Some(d.to_string()));
    }
    assert_eq!(c.get("/v2/tp/tags/list").await.json()["tags"], json!(["latest", "v1"]));
    // Without tag parameters there is no OCI-Tag header.
    let r = c.put_manifest("tp", &d.to_string(), OCI_MANIFEST, &m).await;
    assert_eq!((r.status, r.header("oci-tag")), (201, None));
    // One bad tag refuses the whole push.
    let m2 = manifest(OCI_MANIFEST, &cd, 2, &[], Some((&d, m.len())));
    let d2 = Digest::sha256_of(&m2);
    let r = c.put_manifest("tp", &format!("{d2}?tag=ok&tag=.bad"), OCI_MANIFEST, &m2).await;
    assert_eq!((r.status, r.code().as_str()), (400, "MANIFEST_INVALID"), "{r:?}");
    assert_eq!(c.head(&format!("/v2/tp/manifests/{d2}")).await.status, 404);
    assert_eq!(c.head("/v2/tp/manifests/ok").await.status, 404);
    ts.stop().await;
}

#[tokio::test]
async fn manifest_naming_missing_blob_is_refused() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let cd = c.push_blob("x", b"{}").await;
    let missing = Digest::sha256_of(b"never pushed");
    let m = manifest(OCI_MANIFEST, &cd, 2, &[(&missing, 12)], None);
    let r = c.put_manifest("x", "t", OCI_MANIFEST, &m).await;
    assert_eq!((r.status, r.code().as_str()), (400, "MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(c.get("/v2/x/manifests/t").await.status, 404);
    // A blob in another repository does not count.
    let elsewhere = c.push_blob("y", b"layer in y").await;
    let m = manifest(OCI_MANIFEST, &cd, 2, &[(&elsewhere, 10)], None);
    assert_eq!(c.put_manifest("x", "t", OCI_MANIFEST, &m).await.code(), "MANIFEST_BLOB_UNKNOWN");
    ts.stop().await;
}

#[tokio::test]
async fn invalid_and_oversized_manifests() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let r = c.put_manifest("x", "t", OCI_MANIFEST, b"not json").await;
    assert_eq!((r.status, r.code().as_str()), (400, "MANIFEST_INVALID"));
    let r = c.put_manifest("x", "t", OCI_MANIFEST, br#"{"schemaVersion":1}"#).await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    let r = c
        .put_manifest(
            "x",
            "t",
            DOCKER_MANIFEST,
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}"}}"#).as_bytes(),
        )
        .await;
    assert_eq!(r.code(), "MANIFEST_INVALID");
    let r = c.put_manifest("x", "bad:tag:x", OCI_MANIFEST, b"{}").await;
    assert_eq!(r.status, 400);
    let big = vec![b' '; (4 << 20) + 1];
    let r = c.put_manifest("x", "t", OCI_MANIFEST, &big).await;
    assert_eq!((r.status, r.code().as_str()), (413, "SIZE_INVALID"));
    ts.stop().await;
}

#[tokio::test]
async fn docker_schema2_and_manifest_list_with_negotiation() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let cd = c.push_blob("d", b"{\"os\":\"linux\"}").await;
    let ld = c.push_blob("d", b"gzip layer").await;
    let m = manifest(DOCKER_MANIFEST, &cd, 14, &[(&ld, 10)], None);
    let md = Digest::sha256_of(&m);
    assert_eq!(c.put_manifest("d", &md.to_string(), DOCKER_MANIFEST, &m).await.status, 201);
    let list = index(DOCKER_LIST, &[(DOCKER_MANIFEST, &md, m.len(), "amd64")]);
    let r = c.put_manifest("d", "multi", DOCKER_LIST, &list).await;
    assert_eq!(r.status, 201, "{r:?}");
    // A client accepting lists gets the list.
    let r = c
        .req("GET", "/v2/d/manifests/multi", &[("accept", &format!("{DOCKER_LIST}, {DOCKER_MANIFEST}"))], Bytes::new())
        .await;
    assert_eq!(r.header("content-type"), Some(DOCKER_LIST.into()));
    assert_eq!(r.body, list);
    // One that does not gets the linux/amd64 manifest.
    let r = c.req("GET", "/v2/d/manifests/multi", &[("accept", DOCKER_MANIFEST)], Bytes::new()).await;
    assert_eq!(r.header("content-type"), Some(DOCKER_MANIFEST.into()));
    assert_eq!(r.header("docker-content-digest"), Some(md.to_string()));
    // An OCI-only client asking for a schema2 manifest is refused.
    let r = c.req("GET", &format!("/v2/d/manifests/{md}"), &[("accept", OCI_MANIFEST)], Bytes::new()).await;
    assert_eq!((r.status, r.code().as_str()), (404, "MANIFEST_UNKNOWN"));
    // An index naming an unknown manifest is refused.
    let ghost = Digest::sha256_of(b"ghost");
    let bad = index(OCI_INDEX, &[(OCI_MANIFEST, &ghost, 5, "arm64")]);
    assert_eq!(c.put_manifest("d", "bad", OCI_INDEX, &bad).await.code(), "MANIFEST_BLOB_UNKNOWN");
    // OCI index over an OCI manifest.
    let (om, od) = c.push_image("d", "oci", b"oci layer").await;
    let oi = index(OCI_INDEX, &[(OCI_MANIFEST, &od, om.len(), "amd64")]);
    assert_eq!(c.put_manifest("d", "ociindex", OCI_INDEX, &oi).await.status, 201);
    let r = c.req("GET", "/v2/d/manifests/ociindex", &[("accept", OCI_INDEX)], Bytes::new()).await;
    assert_eq!(r.body, oi);
    ts.stop().await;
}

#[tokio::test]
async fn delete_tag_and_manifest() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let (_, d) = c.push_image("x", "a", b"l").await;
    let r = c.put_manifest("x", "b", OCI_MANIFEST, &c.get("/v2/x/manifests/a").await.body).await;
    assert_eq!(r.status, 201);
    assert_eq!(c.delete("/v2/x/manifests/a").await.status, 202);
    assert_eq!(c.get("/v2/x/manifests/a").await.status, 404);
    assert_eq!(c.get("/v2/x/manifests/b").await.status, 200);
    assert_eq!(c.delete(&format!("/v2/x/manifests/{d}")).await.status, 202);
    assert_eq!(c.get("/v2/x/manifests/b").await.status, 404, "tags of a deleted manifest go too");
    assert_eq!(c.get(&format!("/v2/x/manifests/{d}")).await.status, 404);
    assert_eq!(c.delete(&format!("/v2/x/manifests/{d}")).await.code(), "MANIFEST_UNKNOWN");
    ts.stop().await;
}

#[tokio::test]
async fn deletes_can_be_disabled() {
    let ts = TestServer::start_with(|c| c.delete.enabled = false).await;
    let c = &ts.client;
    let (_, d) = c.push_image("x", "a", b"l").await;
    for path in [format!("/v2/x/manifests/{d}"), "/v2/x/manifests/a".to_owned()] {
        let r = c.delete(&path).await;
        assert_eq!((r.status, r.code().as_str()), (405, "UNSUPPORTED"));
    }
    assert_eq!(c.get("/v2/x/manifests/a").await.status, 200);
    ts.stop().await;
}

#[tokio::test]
async fn tags_and_catalog_paginate() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let (m, _) = c.push_image("p/one", "t0", b"l").await;
    for t in ["t1", "t2", "t3", "t4"] {
        assert_eq!(c.put_manifest("p/one", t, OCI_MANIFEST, &m).await.status, 201);
    }
    c.push_image("p/two", "x", b"l").await;
    c.push_image("q", "x", b"l").await;
    let r = c.get("/v2/p/one/tags/list").await;
    assert_eq!(r.json(), json!({ "name": "p/one", "tags": ["t0", "t1", "t2", "t3", "t4"] }));
    assert!(r.header("link").is_none());
    let r = c.get("/v2/p/one/tags/list?n=2").await;
    assert_eq!(r.json()["tags"], json!(["t0", "t1"]));
    assert_eq!(r.header("link"), Some("</v2/p/one/tags/list?n=2&last=t1>; rel=\"next\"".into()));
    let r = c.get("/v2/p/one/tags/list?n=2&last=t3").await;
    assert_eq!(r.json()["tags"], json!(["t4"]));
    assert!(r.header("link").is_none());
    let r = c.get("/v2/p/one/tags/list?n=0").await;
    assert_eq!(r.json()["tags"], json!([]));
    let r = c.get("/v2/_catalog").await;
    assert_eq!(r.json(), json!({ "repositories": ["p/one", "p/two", "q"] }));
    let r = c.get("/v2/_catalog?n=1").await;
    assert_eq!(r.json()["repositories"], json!(["p/one"]));
    assert_eq!(r.header("link"), Some("</v2/_catalog?n=1&last=p%2Fone>; rel=\"next\"".into()));
    let r = c.get("/v2/_catalog?n=5&last=p/one").await;
    assert_eq!(r.json()["repositories"], json!(["p/two", "q"]));
    let r = c.get("/v2/_catalog?n=abc").await;
    assert_eq!(r.status, 400);
    ts.stop().await;
}

#[tokio::test]
async fn referrers_and_subject() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let (m, subject) = c.push_image("r", "v1", b"image layer").await;
    let cd = c.push_blob("r", b"{}").await;
    let sig_layer = c.push_blob("r", b"signature").await;
    // An artifact whose type comes from the config media type...
    let mut a = serde_json::from_slice::<serde_json::Value>(&manifest(
        OCI_MANIFEST,
        &cd,
        2,
        &[(&sig_layer, 9)],
        Some((&subject, m.len())),
    ))
    .expect("json");
    a["config"]["mediaType"] = json!("application/vnd.example.sig");
    let a = serde_json::to_vec(&a).expect("json");
    let ad = Digest::sha256_of(&a);
    let r = c.put_manifest("r", &ad.to_string(), OCI_MANIFEST, &a).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.header("oci-subject"), Some(subject.to_string()));
    // ...and one with an explicit artifactType.
    let mut b = serde_json::from_slice::<serde_json::Value>(&a).expect("json");
    b["artifactType"] = json!("application/vnd.example.sbom");
    b["annotations"] = json!({ "k": "v" });
    let b = serde_json::to_vec(&b).expect("json");
    let bd = Digest::sha256_of(&b);
    assert_eq!(c.put_manifest("r", &bd.to_string(), OCI_MANIFEST, &b).await.status, 201);
    let r = c.get(&format!("/v2/r/referrers/{subject}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some(OCI_INDEX.into()));
    let idx = r.json();
    assert_eq!(idx["manifests"].as_array().map(Vec::len), Some(2), "{idx}");
    let r = c.get(&format!("/v2/r/referrers/{subject}?artifactType=application/vnd.example.sbom")).await;
    assert_eq!(r.header("oci-filters-applied"), Some("artifactType".into()));
    let idx = r.json();
    assert_eq!(idx["manifests"][0]["digest"], json!(bd.to_string()));
    assert_eq!(idx["manifests"][0]["annotations"], json!({ "k": "v" }));
    assert_eq!(idx["manifests"].as_array().map(Vec::len), Some(1));
    // Deleting a referrer removes it from the list; unknown subjects give an empty index.
    assert_eq!(c.delete(&format!("/v2/r/manifests/{bd}")).await.status, 202);
    let r = c.get(&format!("/v2/r/referrers/{subject}")).await;
    assert_eq!(r.json()["manifests"].as_array().map(Vec::len), Some(1));
    let r = c.get(&format!("/v2/r/referrers/{}", Digest::sha256_of(b"none"))).await;
    assert_eq!(r.json()["manifests"], json!([]));
    let r = c.get("/v2/r/referrers/sha256:bad").await;
    assert_eq!(r.code(), "DIGEST_INVALID");
    ts.stop().await;
}

#[tokio::test]
async fn delete_repository() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    c.push_image("gone/app", "v1", b"l").await;
    c.push_image("kept", "v1", b"l").await;
    assert_eq!(c.delete("/v2/gone/app/").await.status, 202);
    assert_eq!(c.get("/v2/gone/app/tags/list").await.code(), "NAME_UNKNOWN");
    assert_eq!(c.get("/v2/_catalog").await.json()["repositories"], json!(["kept"]));
    let r = c.delete("/v2/gone/app/").await;
    assert_eq!((r.status, r.code().as_str()), (404, "NAME_UNKNOWN"));
    ts.stop().await;
}
