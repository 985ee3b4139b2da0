//! The embedded DNS server. Each container on a user network has a UDP and a TCP socket bound
//! to 127.0.0.11:53 inside its own namespace (opened there by `network::endpoint::attach`);
//! the daemon serves them from its runtime. A socket stays in the namespace it was made in,
//! so the server knows which container asks without looking at addresses, and forwards what
//! it does not know from the host's namespace, where the host's resolvers (even loopback
//! ones) are reachable.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use network::dns::{self, SERVFAIL, TYPE_A};
use network::endpoint::DnsSockets;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Networks;

const TTL: u32 = 600;

pub fn serve(
    net: Arc<Networks>,
    cid: String,
    s: DnsSockets,
    upstream: Vec<SocketAddr>,
    rt: &tokio::runtime::Handle,
) -> Vec<tokio::task::AbortHandle> {
    let _enter = rt.enter();
    let mut tasks = Vec::new();
    let udp = match tokio::net::UdpSocket::from_std(s.udp) {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("dns server for {}: {e}", &cid[..12]);
            return tasks;
        }
    };
    let tcp = tokio::net::TcpListener::from_std(s.tcp);
    let upstream = Arc::new(upstream);
    {
        let (net, cid, upstream) = (net.clone(), cid.clone(), upstream.clone());
        tasks.push(
            rt.spawn(async move {
                let udp = Arc::new(udp);
                let mut buf = vec![0u8; 4096];
                loop {
                    let Ok((n, from)) = udp.recv_from(&mut buf).await else { break };
                    let q = buf[..n].to_vec();
                    let (net, cid, upstream, udp) = (net.clone(), cid.clone(), upstream.clone(), udp.clone());
                    tokio::spawn(async move {
                        if let Some(r) = answer(&net, &cid, &q, &upstream).await {
                            let _ = udp.send_to(&r, from).await;
                        }
                    });
                }
            })
            .abort_handle(),
        );
    }
    if let Ok(tcp) = tcp {
        tasks.push(
            rt.spawn(async move {
                loop {
                    let Ok((mut conn, _)) = tcp.accept().await else { break };
                    let (net, cid, upstream) = (net.clone(), cid.clone(), upstream.clone());
                    tokio::spawn(async move {
                        loop {
                            let mut len = [0u8; 2];
                            if conn.read_exact(&mut len).await.is_err() {
                                break;
                            }
                            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                            if conn.read_exact(&mut q).await.is_err() {
                                break;
                            }
                            let Some(r) = answer(&net, &cid, &q, &upstream).await else { break };
                            let mut out = (r.len() as u16).to_be_bytes().to_vec();
                            out.extend_from_slice(&r);
                            if conn.write_all(&out).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            })
            .abort_handle(),
        );
    }
    tasks
}

/// Answers a query: names of containers this one can see, else the upstream resolvers' answer.
async fn answer(net: &Networks, cid: &str, q: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    if let Some(query) = dns::parse_query(q)
        && query.qclass == dns::CLASS_IN
        && let Some(ips) = net.resolve(cid, &query.name)
    {
        // Known names have IPv4 addresses only: other types get an empty answer.
        let ips = if query.qtype == TYPE_A { ips } else { Vec::new() };
        return Some(dns::answer(&query, q, &ips, TTL));
    }
    let query = dns::parse_query(q);
    if net.internal_only(cid) || upstream.is_empty() {
        return query.map(|query| dns::error(&query, q, SERVFAIL));
    }
    match forward(q, upstream).await {
        Some(r) => Some(r),
        None => query.map(|query| dns::error(&query, q, SERVFAIL)),
    }
}

async fn forward(q: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().ok()?;
        let Ok(sock) = tokio::net::UdpSocket::bind(bind).await else { continue };
        if sock.send_to(q, server).await.is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_secs(3), sock.recv_from(&mut buf)).await {
            buf.truncate(n);
            return Some(buf);
        }
    }
    None
}
