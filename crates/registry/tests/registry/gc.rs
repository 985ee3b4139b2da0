//! Garbage collection.

use std::time::Duration;

use berth_registry::gc::collect;
use berth_registry::storage::FsStorage;

use crate::common::{TestServer, files_under};

#[tokio::test]
async fn gc_removes_only_unreferenced_blobs() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let (_, kept_manifest) = c.push_image("g", "v1", b"referenced layer").await;
    let orphan = c.push_blob("g", b"orphan layer").await;
    let (_, gone_manifest) = c.push_image("g", "v2", b"layer of deleted image").await;
    assert_eq!(c.delete(&format!("/v2/g/manifests/{gone_manifest}")).await.status, 202);
    let store = FsStorage::new(ts.root()).expect("store");

    // Within the grace period nothing is removed: a push may be in flight.
    let report = collect(&store, false, Duration::from_secs(3600)).await.expect("gc");
    assert!(report.blobs_deleted.is_empty(), "{report:?}");

    // Dry run reports without removing.
    let report = collect(&store, true, Duration::ZERO).await.expect("gc");
    assert!(report.blobs_deleted.contains(&orphan), "{report:?}");
    assert_eq!(c.head(&format!("/v2/g/blobs/{orphan}")).await.status, 200);

    let report = collect(&store, false, Duration::ZERO).await.expect("gc");
    // orphan, the deleted image's layer and its manifest blob (its config is shared with nothing:
    // configs differ by layer size, so it goes too)
    assert!(report.blobs_deleted.contains(&orphan));
    assert!(report.blobs_deleted.contains(&gone_manifest));
    assert_eq!(report.blobs_deleted.len(), 4, "{report:?}");
    assert_eq!(c.head(&format!("/v2/g/blobs/{orphan}")).await.status, 404);
    let r = c.get("/v2/g/manifests/v1").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("docker-content-digest"), Some(kept_manifest.to_string()));
    let m: serde_json::Value = r.json();
    for l in m["layers"].as_array().expect("layers") {
        let d = l["digest"].as_str().expect("digest");
        assert_eq!(c.get(&format!("/v2/g/blobs/{d}")).await.body, &b"referenced layer"[..]);
    }
    assert!(!files_under(&ts.root()).iter().any(|f| f.starts_with("_trash")));
    ts.stop().await;
}

#[tokio::test]
async fn gc_keeps_an_old_blob_whose_link_a_push_just_touched() {
    use berth_registry::storage::Storage;
    let ts = TestServer::start().await;
    let c = &ts.client;
    let layer = c.push_blob("race", b"layer pushed earlier").await;
    let store = FsStorage::new(ts.root()).expect("store");
    // Everything looks two hours old and nothing references the layer...
    let old = std::time::SystemTime::now() - Duration::from_secs(7200);
    for f in files_under(&ts.root()) {
        let file = std::fs::OpenOptions::new().write(true).open(ts.root().join(&f)).expect("open");
        file.set_modified(old).expect("set mtime");
    }
    // ...but a manifest PUT in flight has touched its link (its first step) and not yet written itself.
    store.touch(&berth_registry::names::layer_link("race", &layer)).await.expect("touch");
    let report = collect(&store, false, Duration::from_secs(60)).await.expect("gc");
    assert!(report.blobs_deleted.is_empty(), "{report:?}");
    let config = c.push_blob("race", b"{}").await;
    let m = crate::common::manifest(crate::common::OCI_MANIFEST, &config, 2, &[(&layer, 20)], None);
    assert_eq!(c.put_manifest("race", "v1", crate::common::OCI_MANIFEST, &m).await.status, 201);
    assert_eq!(c.head(&format!("/v2/race/blobs/{layer}")).await.status, 200);
    ts.stop().await;
}

#[tokio::test]
async fn gc_removes_stale_uploads() {
    let ts = TestServer::start().await;
    let c = &ts.client;
    let r = c.req("POST", "/v2/u/blobs/uploads/", &[], bytes::Bytes::new()).await;
    let loc = r.header("location").expect("location");
    c.req("PATCH", &loc, &[], vec![7u8; 10]).await;
    let store = FsStorage::new(ts.root()).expect("store");
    let report = collect(&store, false, Duration::ZERO).await.expect("gc");
    assert_eq!(report.uploads_removed, 1);
    assert!(!files_under(&ts.root()).iter().any(|f| f.starts_with("_uploads/")));
    ts.stop().await;
}

#[test]
fn gc_command_runs_on_a_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = berth_registry::GcArgs {
        root: Some(dir.path().to_owned()),
        dry_run: true,
        grace: 0,
        config: None,
        delete_untagged: true,
    };
    berth_registry::gc(args).expect("gc");
}

#[tokio::test]
async fn gc_delete_untagged_keeps_what_tags_reach() {
    use crate::common::{OCI_INDEX, OCI_MANIFEST, index, manifest};
    use berth_registry::gc::{GcOptions, collect_with};
    let ts = TestServer::start().await;
    let c = &ts.client;
    // A tagged index over one manifest, which has a referrer; and an untagged manifest.
    let (child, child_d) = c.push_image("u", "tmp", b"child layer").await;
    assert_eq!(c.delete("/v2/u/manifests/tmp").await.status, 202);
    let idx = index(OCI_INDEX, &[(OCI_MANIFEST, &child_d, child.len(), "amd64")]);
    assert_eq!(c.put_manifest("u", "multi", OCI_INDEX, &idx).await.status, 201);
    let cfg = c.push_blob("u", b"{}").await;
    let sig = c.push_blob("u", b"sig").await;
    let referrer = manifest(OCI_MANIFEST, &cfg, 2, &[(&sig, 3)], Some((&child_d, child.len())));
    let referrer_d = oci::Digest::sha256_of(&referrer);
    assert_eq!(c.put_manifest("u", &referrer_d.to_string(), OCI_MANIFEST, &referrer).await.status, 201);
    let (_, lone_d) = c.push_image("u", "lone", b"lone layer").await;
    assert_eq!(c.delete("/v2/u/manifests/lone").await.status, 202);
    let store = FsStorage::new(ts.root()).expect("store");

    let recent =
        collect_with(&store, &GcOptions { delete_untagged: true, grace: Duration::from_secs(3600), dry_run: false })
            .await
            .expect("gc");
    assert!(recent.manifests_deleted.is_empty(), "recent manifests are kept: {recent:?}");
    let dry = collect_with(&store, &GcOptions { delete_untagged: true, grace: Duration::ZERO, dry_run: true })
        .await
        .expect("gc");
    assert_eq!(dry.manifests_deleted, vec![("u".to_owned(), lone_d.clone())]);
    assert!(dry.blobs_deleted.contains(&lone_d), "{dry:?}");
    assert_eq!(c.get(&format!("/v2/u/manifests/{lone_d}")).await.status, 200);
    let report = collect_with(&store, &GcOptions { delete_untagged: true, grace: Duration::ZERO, dry_run: false })
        .await
        .expect("gc");
    assert_eq!(report.manifests_deleted, vec![("u".to_owned(), lone_d.clone())]);
    assert_eq!(c.get(&format!("/v2/u/manifests/{lone_d}")).await.status, 404);
    for d in [&child_d, &referrer_d] {
        assert_eq!(c.get(&format!("/v2/u/manifests/{d}")).await.status, 200);
    }
    assert_eq!(c.get(&format!("/v2/u/blobs/{sig}")).await.status, 200);
    assert_eq!(c.get("/v2/u/manifests/multi").await.status, 200);
    ts.stop().await;
}
