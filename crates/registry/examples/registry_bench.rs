//! Load generator for `bench/registry/run.sh`: measures one registry at `--url` (berth's or
//! Distribution's) and prints one JSON object of figures.
//!
//! Rows: 100 MB blob upload and download throughput (MB/s, best of three), manifest GET and blob HEAD requests per
//! second with `--concurrency` keep-alive connections for `--seconds`, and the wall time of 20
//! concurrent pushes of a small image (config + 4 MB layer + manifest) to 20 repositories.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use oci::Digest;

#[derive(Parser)]
struct Args {
    /// host:port of the registry
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 100)]
    blob_mb: usize,
    /// A tag for this run's repositories, so runs do not collide
    #[arg(long, default_value = "run")]
    prefix: String,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

struct Resp {
    status: u16,
    location: Option<String>,
    len: usize,
}

async fn send(
    s: &mut SendRequest<Full<Bytes>>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    ct: Option<&str>,
    body: Bytes,
) -> anyhow::Result<Resp> {
    s.ready().await?;
    let mut b = hyper::Request::builder().method(method).uri(path).header("host", addr.to_string());
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    if method == "GET" && path.contains("/manifests/") {
        b = b.header("accept", "application/vnd.oci.image.manifest.v1+json");
    }
    let resp = s.send_request(b.body(Full::new(body))?).await?;
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut body = resp.into_body();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            len += data.len();
        }
    }
    Ok(Resp { status, location, len })
}

/// POST, one PATCH with everything, PUT with the digest: what docker push does.
async fn push_blob(addr: SocketAddr, name: &str, data: Bytes) -> anyhow::Result<Digest> {
    let d = Digest::sha256_of(&data);
    let mut s = connect(addr).await?;
    let r = send(&mut s, addr, "POST", &format!("/v2/{name}/blobs/uploads/"), None, Bytes::new()).await?;
    anyhow::ensure!(r.status == 202, "POST upload: {}", r.status);
    let loc = r.location.ok_or_else(|| anyhow::anyhow!("no location"))?;
    let loc = loc.split_once("/v2/").map(|(_, p)| format!("/v2/{p}")).unwrap_or(loc);
    let r = send(&mut s, addr, "PATCH", &loc, Some("application/octet-stream"), data).await?;
    anyhow::ensure!(r.status == 202, "PATCH: {}", r.status);
    let loc = r.location.ok_or_else(|| anyhow::anyhow!("no location"))?;
    let loc = loc.split_once("/v2/").map(|(_, p)| format!("/v2/{p}")).unwrap_or(loc);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = send(&mut s, addr, "PUT", &format!("{loc}{sep}digest={d}"), None, Bytes::new()).await?;
    anyhow::ensure!(r.status == 201, "PUT: {}", r.status);
    Ok(d)
}

async fn push_image(addr: SocketAddr, name: &str, layer: Bytes) -> anyhow::Result<()> {
    let config =
        Bytes::from(format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","n":"{name}"}}}}"#));
    let (cl, ll) = (config.len(), layer.len());
    let cd = push_blob(addr, name, config).await?;
    let ld = push_blob(addr, name, layer).await?;
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd.to_string(), "size": cl },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld.to_string(), "size": ll }],
    });
    let mut s = connect(addr).await?;
    let ct = Some("application/vnd.oci.image.manifest.v1+json");
    let r = send(&mut s, addr, "PUT", &format!("/v2/{name}/manifests/latest"), ct, Bytes::from(m.to_string())).await?;
    anyhow::ensure!(r.status == 201, "PUT manifest: {}", r.status);
    Ok(())
}

/// Requests per second of `path` with `c` connections for `secs`.
async fn rps(addr: SocketAddr, method: &'static str, path: String, c: usize, secs: u64) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..c {
        let (done, path) = (done.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(addr).await?;
            while Instant::now() < deadline {
                let r = send(&mut s, addr, method, &path, None, Bytes::new()).await?;
                anyhow::ensure!(r.status == 200, "{method} {path}: {}", r.status);
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    let start = Instant::now();
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn data(len: usize, seed: u64) -> Bytes {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    Bytes::from(v)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let addr = a.addr;
    let name = format!("bench/{}", a.prefix);
    let seed = a.prefix.bytes().map(u64::from).sum::<u64>();

    // Best of three for the throughput rows (distinct content for each upload).
    let (mut upload_mbs, mut download_mbs) = (0f64, 0f64);
    let mut bd = None;
    for i in 0..3u64 {
        let big = data(a.blob_mb << 20, seed + 1000 + i);
        let t = Instant::now();
        let d = push_blob(addr, &name, big.clone()).await?;
        upload_mbs = upload_mbs.max(a.blob_mb as f64 / t.elapsed().as_secs_f64());
        let mut s = connect(addr).await?;
        let t = Instant::now();
        let r = send(&mut s, addr, "GET", &format!("/v2/{name}/blobs/{d}"), None, Bytes::new()).await?;
        anyhow::ensure!(r.status == 200 && r.len == big.len(), "download: {} {}", r.status, r.len);
        download_mbs = download_mbs.max(a.blob_mb as f64 / t.elapsed().as_secs_f64());
        bd = Some(d);
    }
    let bd = bd.ok_or_else(|| anyhow::anyhow!("no blob"))?;

    push_image(addr, &name, data(1 << 20, seed + 1)).await?;
    let manifest_rps = rps(addr, "GET", format!("/v2/{name}/manifests/latest"), a.concurrency, a.seconds).await?;
    let head_rps = rps(addr, "HEAD", format!("/v2/{name}/blobs/{bd}"), a.concurrency, a.seconds).await?;

    let t = Instant::now();
    let mut pushes = Vec::new();
    for i in 0..20u64 {
        let layer = data(4 << 20, seed * 100 + i);
        let repo = format!("bench/{}-push{i}", a.prefix);
        pushes.push(tokio::spawn(async move { push_image(addr, &repo, layer).await }));
    }
    for p in pushes {
        p.await??;
    }
    let pushes_secs = t.elapsed().as_secs_f64();

    println!(
        "{}",
        serde_json::json!({
            "upload_mb_s": (upload_mbs * 10.0).round() / 10.0,
            "download_mb_s": (download_mbs * 10.0).round() / 10.0,
            "manifest_get_rps": manifest_rps.round(),
            "blob_head_rps": head_rps.round(),
            "push20_seconds": (pushes_secs * 1000.0).round() / 1000.0,
        })
    );
    Ok(())
}
