//! A container's /etc/hosts, /etc/hostname and /etc/resolv.conf, and the legacy `--link`
//! environment variables.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use api::types::HostConfig;

use super::LinkTarget;
use crate::container::Record;
use crate::error::{EngineError, Result};

const BASE_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

fn w(dir: &Path, name: &str, data: String) -> Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, data).map_err(|e| EngineError::Internal(format!("write `{}`: {e}", p.display())))
}

/// `--add-host host:ip` entries.
/// `host-gateway` stands for the default bridge's gateway, the host as containers see it.
fn extra_hosts(h: &HostConfig, host_gw: Option<Ipv4Addr>) -> Vec<(String, String)> {
    h.extra_hosts
        .iter()
        .filter_map(|e| e.split_once([':', '=']))
        .filter_map(|(n, ip)| match ip {
            "host-gateway" => host_gw.map(|g| (g.to_string(), n.to_owned())),
            ip => Some((ip.to_owned(), n.to_owned())),
        })
        .collect()
}

/// Checks `--add-host` and `--dns` at create.
pub fn validate(h: &HostConfig) -> Result<()> {
    for e in &h.extra_hosts {
        let Some((name, ip)) = e.split_once([':', '=']) else {
            return Err(EngineError::BadRequest(format!("bad format for add-host: \"{e}\"")));
        };
        if name.is_empty() || (ip != "host-gateway" && ip.parse::<IpAddr>().is_err()) {
            return Err(EngineError::BadRequest(format!("invalid IP address in add-host: \"{ip}\"")));
        }
    }
    for d in &h.dns {
        if d.parse::<IpAddr>().is_err() {
            return Err(EngineError::BadRequest(format!("invalid --dns address: {d}")));
        }
    }
    Ok(())
}

pub fn write_hostname(dir: &Path, hostname: &str) -> Result<()> {
    w(dir, "hostname", format!("{hostname}\n"))
}

fn host_resolv() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

fn resolv_field<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            if it.next() == Some(key) { Some(it.collect::<Vec<_>>()) } else { None }
        })
        .flatten()
        .collect()
}

/// `--network host`: the host's own files, plus `--add-host` entries.
pub fn write_host_mode(dir: &Path, rec: &Record) -> Result<()> {
    let mut hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| BASE_HOSTS.to_owned());
    for (ip, name) in extra_hosts(&rec.host_config, Some(Ipv4Addr::LOCALHOST)) {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    w(dir, "hosts", hosts)?;
    write_hostname(dir, &rec.config.hostname)?;
    w(dir, "resolv.conf", host_resolv())
}

/// Writes the three files. `own` are the container's addresses; `links` extra hosts lines;
/// `embedded` says the embedded DNS server answers (user networks).
pub fn write(
    dir: &Path,
    rec: &Record,
    own: &[Ipv4Addr],
    links: &[(Ipv4Addr, String)],
    embedded: bool,
    daemon_dns: &[Ipv4Addr],
    host_gw: Option<Ipv4Addr>,
) -> Result<()> {
    let h = &rec.host_config;
    let mut hosts = BASE_HOSTS.to_owned();
    for (ip, name) in extra_hosts(h, host_gw) {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    for (ip, names) in links {
        hosts.push_str(&format!("{ip}\t{names}\n"));
    }
    let fqdn = if rec.config.domainname.is_empty() {
        rec.config.hostname.clone()
    } else {
        format!("{}.{} {}", rec.config.hostname, rec.config.domainname, rec.config.hostname)
    };
    if let Some(ip) = own.first() {
        hosts.push_str(&format!("{ip}\t{fqdn}\n"));
    }
    w(dir, "hosts", hosts)?;
    write_hostname(dir, &rec.config.hostname)?;
    let host = host_resolv();
    let search: Vec<String> = if h.dns_search.is_empty() {
        resolv_field(&host, "search").into_iter().map(str::to_owned).collect()
    } else {
        h.dns_search.iter().filter(|s| s.as_str() != ".").cloned().collect()
    };
    let mut options: Vec<String> = if h.dns_options.is_empty() {
        resolv_field(&host, "options").into_iter().map(str::to_owned).collect()
    } else {
        h.dns_options.clone()
    };
    let mut out = String::new();
    if embedded {
        out.push_str(&format!("nameserver {}\n", network::endpoint::DNS_ADDR));
        if !options.iter().any(|o| o.starts_with("ndots:")) {
            options.push("ndots:0".into());
        }
    } else {
        let servers: Vec<String> = if !h.dns.is_empty() {
            h.dns.clone()
        } else if !daemon_dns.is_empty() {
            daemon_dns.iter().map(|d| d.to_string()).collect()
        } else {
            // The host's resolvers, less loopback ones that mean nothing inside the container.
            let v: Vec<String> = resolv_field(&host, "nameserver")
                .into_iter()
                .filter(|s| s.parse::<IpAddr>().is_ok_and(|ip| !ip.is_loopback()))
                .map(str::to_owned)
                .collect();
            if v.is_empty() { vec!["8.8.8.8".into(), "8.8.4.4".into()] } else { v }
        };
        for s in servers {
            out.push_str(&format!("nameserver {s}\n"));
        }
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    w(dir, "resolv.conf", out)
}

/// Where the embedded DNS server forwards names it does not know: `--dns`, daemon.json's
/// `dns`, else the host's resolvers (loopback ones too: the daemon forwards from the host).
pub fn upstream(h: &HostConfig, daemon_dns: &[Ipv4Addr]) -> Vec<SocketAddr> {
    let list: Vec<IpAddr> = if !h.dns.is_empty() {
        h.dns.iter().filter_map(|d| d.parse().ok()).collect()
    } else if !daemon_dns.is_empty() {
        daemon_dns.iter().map(|d| IpAddr::V4(*d)).collect()
    } else {
        resolv_field(&host_resolv(), "nameserver").into_iter().filter_map(|s| s.parse().ok()).collect()
    };
    list.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect()
}

/// Docker's legacy link variables for `--link name:alias`.
pub fn link_env(me: &str, l: &LinkTarget, ip: Ipv4Addr) -> Vec<String> {
    let a: String =
        l.alias.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    let mut env = vec![format!("{a}_NAME=/{me}/{}", l.alias)];
    let mut ports: Vec<(u16, String)> = l.exposed.iter().filter_map(|k| super::ports::parse_key(k).ok()).collect();
    ports.sort();
    if let Some((p, proto)) = ports.first() {
        env.push(format!("{a}_PORT={proto}://{ip}:{p}"));
    }
    for (p, proto) in &ports {
        let pre = format!("{a}_PORT_{p}_{}", proto.to_ascii_uppercase());
        env.push(format!("{pre}={proto}://{ip}:{p}"));
        env.push(format!("{pre}_ADDR={ip}"));
        env.push(format!("{pre}_PORT={p}"));
        env.push(format!("{pre}_PROTO={proto}"));
    }
    for e in &l.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        if matches!(k, "HOME" | "PATH" | "HOSTNAME") {
            continue;
        }
        env.push(format!("{a}_ENV_{k}={v}"));
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_variables_like_docker() {
        let l = LinkTarget {
            id: "a".repeat(64),
            name: "db".into(),
            alias: "my-db".into(),
            env: vec!["PATH=/bin".into(), "PASSWORD=x".into()],
            exposed: vec!["5432/tcp".into()],
        };
        let env = link_env("web", &l, Ipv4Addr::new(172, 17, 0, 2));
        assert!(env.contains(&"MY_DB_NAME=/web/my-db".to_owned()));
        assert!(env.contains(&"MY_DB_PORT=tcp://172.17.0.2:5432".to_owned()));
        assert!(env.contains(&"MY_DB_PORT_5432_TCP_ADDR=172.17.0.2".to_owned()));
        assert!(env.contains(&"MY_DB_ENV_PASSWORD=x".to_owned()));
        assert!(!env.iter().any(|e| e.starts_with("MY_DB_ENV_PATH")));
    }
}
