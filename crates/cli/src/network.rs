//! Networking on the command line: `run`'s network flags (`-p`, `-P`, `--link`, `--dns`, …),
//! `berth port`, and `berth network create|ls|inspect|rm|connect|disconnect|prune`.

use std::collections::BTreeMap;

use api::client::{Client, ClientError};
use api::types::{ContainerConfig, PortBinding};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::commands::enc;
use crate::fmt::{print_each, table};

// `run`/`create` flags about networking. (Not `///`: see `Command`.)
#[derive(Debug, Args, Clone, Default)]
pub struct NetRunArgs {
    /// Publish a container's port(s) to the host ([ip:][hostPort:]containerPort[/proto])
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Expose a port or a range of ports
    #[arg(long)]
    pub expose: Vec<String>,
    /// Add link to another container (name[:alias])
    #[arg(long)]
    pub link: Vec<String>,
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host")]
    pub add_host: Vec<String>,
    /// Set custom DNS servers
    #[arg(long)]
    pub dns: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search")]
    pub dns_search: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt")]
    pub dns_option: Vec<String>,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long)]
    pub ip: Option<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias")]
    pub network_alias: Vec<String>,
    /// Container NIS domain name
    #[arg(long)]
    pub domainname: Option<String>,
}

fn parse_range(s: &str, what: &str) -> Result<(u16, u16), String> {
    let bad = || format!("invalid {what}: {s}");
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a > b || (what == "containerPort" && a == 0) {
        return Err(bad());
    }
    Ok((a, b))
}

/// Parses one `-p` value as the docker CLI does: `[ip:][hostPort[-end]:]containerPort[-end][/proto]`.
pub fn parse_publish(spec: &str) -> Result<Vec<(String, PortBinding)>, String> {
    let (rest, proto) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    // An IPv6 host address comes in brackets.
    let (ip, rest) = if let Some(r) = rest.strip_prefix('[') {
        let (ip, r) = r.split_once("]:").ok_or_else(|| format!("invalid IP address: {rest}"))?;
        (ip.to_owned(), r.to_owned())
    } else {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), rest.to_owned()),
            3 => (parts[0].to_owned(), format!("{}:{}", parts[1], parts[2])),
            _ => return Err(format!("invalid port format for --publish: {spec}")),
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (host, cont) = match rest.split_once(':') {
        Some((h, c)) => (h.to_owned(), c.to_owned()),
        None => (String::new(), rest.clone()),
    };
    if cont.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (c1, c2) = parse_range(&cont, "containerPort")?;
    let host_range = if host.is_empty() { None } else { Some(parse_range(&host, "hostPort")?) };
    let mut out = Vec::new();
    match host_range {
        Some((h1, h2)) if c1 == c2 && h1 != h2 => {
            out.push((format!("{c1}/{proto}"), PortBinding { host_ip: ip.clone(), host_port: format!("{h1}-{h2}") }));
        }
        Some((h1, h2)) => {
            if h2 - h1 != c2 - c1 {
                return Err(format!("invalid ranges specified for container and host Ports: {cont} and {host}"));
            }
            for i in 0..=(c2 - c1) {
                out.push((
                    format!("{}/{proto}", c1 + i),
                    PortBinding { host_ip: ip.clone(), host_port: (h1 + i).to_string() },
                ));
            }
        }
        None => {
            for p in c1..=c2 {
                out.push((format!("{p}/{proto}"), PortBinding { host_ip: ip.clone(), host_port: String::new() }));
            }
        }
    }
    Ok(out)
}

/// Puts the network flags into a create request.
pub fn apply(a: &NetRunArgs, network: Option<&str>, cfg: &mut ContainerConfig) -> Result<(), String> {
    let host = cfg.host_config.get_or_insert_with(Default::default);
    let mut exposed: BTreeMap<String, Value> = cfg.exposed_ports.take().unwrap_or_default();
    for p in &a.publish {
        for (k, b) in parse_publish(p)? {
            exposed.insert(k.clone(), json!({}));
            host.port_bindings.entry(k).or_default().push(b);
        }
    }
    for e in &a.expose {
        let (ports, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (a1, a2) =
            parse_range(ports, "containerPort").map_err(|_| format!("invalid range format for --expose: {e}"))?;
        for p in a1..=a2 {
            exposed.insert(format!("{p}/{proto}"), json!({}));
        }
    }
    if !exposed.is_empty() {
        cfg.exposed_ports = Some(exposed);
    }
    host.publish_all_ports = a.publish_all;
    host.links = a.link.clone();
    host.extra_hosts = a.add_host.clone();
    host.dns = a.dns.clone();
    host.dns_search = a.dns_search.clone();
    host.dns_options = a.dns_option.clone();
    if let Some(d) = &a.domainname {
        cfg.domainname = d.clone();
    }
    if a.ip.is_some() || !a.network_alias.is_empty() {
        let net = network.unwrap_or("default");
        if matches!(net, "default" | "bridge") && !a.network_alias.is_empty() {
            return Err("network-scoped aliases are only supported for user-defined networks".into());
        }
        let mut ep = json!({});
        if !a.network_alias.is_empty() {
            ep["Aliases"] = json!(a.network_alias);
        }
        if let Some(ip) = &a.ip {
            ep["IPAMConfig"] = json!({"IPv4Address": ip});
        }
        cfg.networking_config = Some(json!({"EndpointsConfig": {net: ep}}));
    }
    Ok(())
}

/// docker's PORTS column: `0.0.0.0:8080->80/tcp, 443/tcp`.
pub fn format_ports(ports: &[Value]) -> String {
    let mut v: Vec<String> = ports
        .iter()
        .map(|p| {
            let private = p["PrivatePort"].as_u64().unwrap_or(0);
            let ty = p["Type"].as_str().unwrap_or("tcp");
            match (p["IP"].as_str(), p["PublicPort"].as_u64()) {
                (Some(ip), Some(public)) => format!("{ip}:{public}->{private}/{ty}"),
                _ => format!("{private}/{ty}"),
            }
        })
        .collect();
    v.sort();
    v.dedup();
    v.join(", ")
}

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    pub private: Option<String>,
}

/// `berth port CONTAINER [PRIVATE_PORT[/PROTO]]`.
pub async fn port(c: &Client, a: PortArgs) -> i32 {
    let v: Value = match c.get(&format!("/containers/{}/json", enc(&a.container))).await {
        Ok(v) => v,
        Err(e) => return report(&e),
    };
    let ports = v["NetworkSettings"]["Ports"].as_object().cloned().unwrap_or_default();
    let want = a.private.as_ref().map(|p| if p.contains('/') { p.clone() } else { format!("{p}/tcp") });
    let mut found = false;
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort_by_key(|k| k.split('/').next().and_then(|p| p.parse::<u32>().ok()).unwrap_or(0));
    for k in keys {
        if want.as_ref().is_some_and(|w| w != k) {
            continue;
        }
        for b in ports[k].as_array().into_iter().flatten() {
            let addr = format!("{}:{}", b["HostIp"].as_str().unwrap_or(""), b["HostPort"].as_str().unwrap_or(""));
            found = true;
            if want.is_some() { println!("{addr}") } else { println!("{k} -> {addr}") }
        }
    }
    if let (Some(w), false) = (&want, found) {
        eprintln!("Error: No public port '{w}' published for {}", a.container);
        return 1;
    }
    0
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum NetworkCmd {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Display detailed information on one or more networks
    Inspect {
        /// Format output using a Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Remove one or more networks
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        networks: Vec<String>,
    },
    /// Connect a container to a network
    Connect {
        #[arg(long)]
        alias: Vec<String>,
        #[arg(long)]
        ip: Option<String>,
        #[arg(long)]
        link: Vec<String>,
        network: String,
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        #[arg(short = 'f', long)]
        force: bool,
        network: String,
        container: String,
    },
    /// Remove all unused networks
    Prune {
        /// Do not prompt for confirmation
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(long)]
        filter: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short = 'd', long, default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long)]
    pub subnet: Option<String>,
    /// IPv4 Gateway for the master subnet
    #[arg(long)]
    pub gateway: Option<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Set metadata on a network
    #[arg(long)]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opt: Vec<String>,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    #[arg(short = 'q', long)]
    pub quiet: bool,
    #[arg(long)]
    pub no_trunc: bool,
    #[arg(short = 'f', long)]
    pub filter: Vec<String>,
    #[arg(long)]
    pub format: Option<String>,
}

fn report(e: &ClientError) -> i32 {
    match e {
        ClientError::Status { message, .. } => eprintln!("Error response from daemon: {message}"),
        other => eprintln!("{other}"),
    }
    1
}

fn kv(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn filters(f: &[String]) -> String {
    let mut m: BTreeMap<String, BTreeMap<String, bool>> = BTreeMap::new();
    for x in f {
        let (k, v) = x.split_once('=').unwrap_or((x, ""));
        m.entry(k.to_owned()).or_default().insert(v.to_owned(), true);
    }
    serde_json::to_string(&m).unwrap_or_default()
}

pub async fn network(c: &Client, cmd: NetworkCmd) -> i32 {
    match cmd {
        NetworkCmd::Create(a) => {
            let mut ipam = json!({"Driver": "default", "Config": []});
            if a.subnet.is_some() || a.gateway.is_some() {
                ipam["Config"] =
                    json!([{"Subnet": a.subnet.unwrap_or_default(), "Gateway": a.gateway.unwrap_or_default()}]);
            }
            let body = json!({"Name": a.name, "Driver": a.driver, "Internal": a.internal, "Attachable": a.attachable,
                "IPAM": ipam, "Labels": kv(&a.label), "Options": kv(&a.opt)});
            match c.post::<_, Value>("/networks/create", Some(&body)).await {
                Ok(v) => {
                    println!("{}", v["Id"].as_str().unwrap_or(""));
                    0
                }
                Err(e) => report(&e),
            }
        }
        NetworkCmd::Ls(a) => {
            let q = if a.filter.is_empty() { String::new() } else { format!("?filters={}", enc(&filters(&a.filter))) };
            let list: Vec<Value> = match c.get(&format!("/networks{q}")).await {
                Ok(l) => l,
                Err(e) => return report(&e),
            };
            let id = |v: &Value| {
                let id = v["Id"].as_str().unwrap_or("").to_owned();
                if a.no_trunc { id } else { id.chars().take(12).collect() }
            };
            if a.quiet {
                for v in &list {
                    println!("{}", id(v));
                }
                return 0;
            }
            if let Some(f) = &a.format {
                let rows: Vec<Value> = list
                    .iter()
                    .map(|v| {
                        let mut row = v.clone();
                        row["ID"] = json!(id(v));
                        row
                    })
                    .collect();
                return print_each(f, &rows);
            }
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|v| {
                    vec![
                        id(v),
                        v["Name"].as_str().unwrap_or("").to_owned(),
                        v["Driver"].as_str().unwrap_or("").to_owned(),
                        v["Scope"].as_str().unwrap_or("").to_owned(),
                    ]
                })
                .collect();
            print!("{}", table(&["NETWORK ID", "NAME", "DRIVER", "SCOPE"], &rows));
            0
        }
        NetworkCmd::Inspect { format, networks } => {
            let mut out = Vec::new();
            let mut code = 0;
            for n in &networks {
                match c.get::<Value>(&format!("/networks/{}", enc(n))).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        code = report(&e);
                    }
                }
            }
            match format {
                Some(f) => {
                    if print_each(&f, &out) != 0 {
                        return 1;
                    }
                }
                None => println!("{}", pretty(&out)),
            }
            code
        }
        NetworkCmd::Rm { networks } => {
            let mut code = 0;
            for n in networks {
                match c.delete(&format!("/networks/{}", enc(&n))).await {
                    Ok(_) => println!("{n}"),
                    Err(e) => code = report(&e),
                }
            }
            code
        }
        NetworkCmd::Connect { alias, ip, link, network, container } => {
            let mut ep = json!({"Aliases": alias, "Links": link});
            if let Some(ip) = ip {
                ep["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            let body = json!({"Container": container, "EndpointConfig": ep});
            match c.post_raw(&format!("/networks/{}/connect", enc(&network)), Some(&body)).await {
                Ok(_) => 0,
                Err(e) => report(&e),
            }
        }
        NetworkCmd::Disconnect { force, network, container } => {
            let body = json!({"Container": container, "Force": force});
            match c.post_raw(&format!("/networks/{}/disconnect", enc(&network)), Some(&body)).await {
                Ok(_) => 0,
                Err(e) => report(&e),
            }
        }
        NetworkCmd::Prune { force, filter } => {
            if !force {
                eprint!(
                    "WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] "
                );
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
                if !matches!(line.trim(), "y" | "Y" | "yes") {
                    return 0;
                }
            }
            let q = if filter.is_empty() { String::new() } else { format!("?filters={}", enc(&filters(&filter))) };
            match c.post::<(), Value>(&format!("/networks/prune{q}"), None).await {
                Ok(v) => {
                    let names: Vec<&str> =
                        v["NetworksDeleted"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                    if !names.is_empty() {
                        println!("Deleted Networks:");
                        for n in names {
                            println!("{n}");
                        }
                    }
                    0
                }
                Err(e) => report(&e),
            }
        }
    }
}

fn pretty(v: &impl serde::Serialize) -> String {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    let _ = v.serialize(&mut ser);
    String::from_utf8_lossy(&buf).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(ip: &str, port: &str) -> PortBinding {
        PortBinding { host_ip: ip.into(), host_port: port.into() }
    }

    #[test]
    fn publish_specs_like_docker() {
        assert_eq!(parse_publish("8080:80").ok(), Some(vec![("80/tcp".into(), b("", "8080"))]));
        assert_eq!(parse_publish("127.0.0.1:8080:80/udp").ok(), Some(vec![("80/udp".into(), b("127.0.0.1", "8080"))]));
        assert_eq!(parse_publish("127.0.0.1::80").ok(), Some(vec![("80/tcp".into(), b("127.0.0.1", ""))]));
        assert_eq!(parse_publish("80").ok(), Some(vec![("80/tcp".into(), b("", ""))]));
        assert_eq!(
            parse_publish("8000-8001:80-81").ok(),
            Some(vec![("80/tcp".into(), b("", "8000")), ("81/tcp".into(), b("", "8001"))])
        );
        assert_eq!(parse_publish("8000-8010:80").ok(), Some(vec![("80/tcp".into(), b("", "8000-8010"))]));
        assert_eq!(parse_publish("[::1]:8080:80").ok(), Some(vec![("80/tcp".into(), b("::1", "8080"))]));
        assert!(parse_publish("8080:http").expect_err("bad").contains("invalid containerPort"));
        assert!(parse_publish("x:80").expect_err("bad").contains("invalid hostPort"));
        assert!(parse_publish("80/icmp").expect_err("bad").contains("invalid proto"));
        assert!(parse_publish("1.2.3:80:80").expect_err("bad").contains("invalid IP address"));
        assert!(parse_publish("8000-8002:80-81").is_err());
        assert_eq!(
            format_ports(&[
                json!({"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}),
                json!({"PrivatePort": 443, "Type": "tcp"})
            ]),
            "0.0.0.0:8080->80/tcp, 443/tcp"
        );
    }
}
