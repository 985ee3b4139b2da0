//! Published ports: checking `PortBindings`, choosing and holding host ports at start, and
//! showing them as Docker does in inspect and in the container list.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use api::types::HostConfig;
use network::ports::Held;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ContNet;
use crate::container::Record;
use crate::error::{EngineError, Result};

/// One published port of a running container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMap {
    pub proto: String,
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

/// Parses a port key: `80`, `80/tcp`, `53/udp`.
pub fn parse_key(k: &str) -> Result<(u16, String)> {
    let (p, proto) = k.split_once('/').unwrap_or((k, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(EngineError::BadRequest(format!("invalid proto: {proto} in port {k}")));
    }
    let port: u16 = p
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| EngineError::BadRequest(format!("invalid containerPort: {p}")))?;
    Ok((port, proto))
}

/// A host port spec: empty (any free port), `8080`, or a range `8000-8010`.
fn parse_host_port(s: &str) -> Result<(u16, u16)> {
    if s.is_empty() {
        return Ok((0, 0));
    }
    let bad = || EngineError::BadRequest(format!("invalid hostPort: {s}"));
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| bad())?;
    let b: u16 = b.parse().map_err(|_| bad())?;
    if a > b || (a == 0 && b != 0) {
        return Err(bad());
    }
    Ok((a, b))
}

fn parse_host_ip(s: &str) -> Result<Option<Ipv4Addr>> {
    if s.is_empty() {
        return Ok(Some(Ipv4Addr::UNSPECIFIED));
    }
    match s.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => Ok(Some(ip)),
        // IPv6 bindings (`::`, which the docker CLI adds beside 0.0.0.0 on some setups) are
        // not published: berth's networks are IPv4 only.
        Ok(std::net::IpAddr::V6(_)) => Ok(None),
        Err(_) => Err(EngineError::BadRequest(format!("invalid host IP address in port binding: {s}"))),
    }
}

/// Checks `PortBindings` and `ExposedPorts` at create, naming what is wrong.
pub fn validate(h: &HostConfig) -> Result<()> {
    for (k, bindings) in &h.port_bindings {
        parse_key(k)?;
        for b in bindings {
            parse_host_ip(&b.host_ip)?;
            parse_host_port(&b.host_port)?;
        }
    }
    Ok(())
}

/// What a container asks to publish: (proto, container port, host ip, host port range).
pub type Wanted = Vec<(String, u16, Ipv4Addr, (u16, u16))>;

pub fn wanted(rec: &Record) -> Result<Wanted> {
    let h = &rec.host_config;
    let mut out: Wanted = Vec::new();
    let mut keys: BTreeMap<(u16, String), ()> = BTreeMap::new();
    for (k, bindings) in &h.port_bindings {
        let (port, proto) = parse_key(k)?;
        keys.insert((port, proto.clone()), ());
        for b in bindings {
            let Some(ip) = parse_host_ip(&b.host_ip)? else { continue };
            out.push((proto.clone(), port, ip, parse_host_port(&b.host_port)?));
        }
        if bindings.is_empty() && h.publish_all_ports {
            out.push((proto.clone(), port, Ipv4Addr::UNSPECIFIED, (0, 0)));
        }
    }
    if h.publish_all_ports {
        for k in rec.config.exposed_ports.iter().flat_map(|m| m.keys()) {
            let (port, proto) = parse_key(k)?;
            if keys.insert((port, proto.clone()), ()).is_none() {
                out.push((proto, port, Ipv4Addr::UNSPECIFIED, (0, 0)));
            }
        }
    }
    Ok(out)
}

fn clash(a: Ipv4Addr, b: Ipv4Addr) -> bool {
    a == b || a.is_unspecified() || b.is_unspecified()
}

/// Holds a host port for each wanted one. A port another berth container publishes is
/// refused as Docker refuses it; one a host program holds, with the bind error.
pub fn hold_all(wanted: &Wanted, conts: &HashMap<String, ContNet>, me: &str) -> Result<(Vec<PortMap>, Vec<Held>)> {
    let mut maps: Vec<PortMap> = Vec::new();
    let mut held = Vec::new();
    let ours = |ip: Ipv4Addr, port: u16, proto: &str, maps: &[PortMap]| {
        conts
            .iter()
            .filter(|(id, c)| c.running && id.as_str() != me)
            .flat_map(|(_, c)| c.ports.iter())
            .chain(maps.iter())
            .any(|p| p.host_port == port && p.proto == proto && clash(p.host_ip, ip))
    };
    for (proto, cport, ip, (lo, hi)) in wanted {
        let mut last_err = None;
        let mut done = false;
        for port in *lo..=*hi {
            if port != 0 && ours(*ip, port, proto, &maps) {
                last_err = Some(EngineError::Conflict(format!(
                    "driver failed programming external connectivity: Bind for {ip}:{port} failed: port is already allocated"
                )));
                continue;
            }
            match network::ports::hold(*ip, port, proto) {
                Ok((h, got)) => {
                    maps.push(PortMap { proto: proto.clone(), container_port: *cport, host_ip: *ip, host_port: got });
                    held.push(h);
                    done = true;
                    break;
                }
                Err(e) => {
                    last_err =
                        Some(EngineError::Conflict(format!("driver failed programming external connectivity: {e}")))
                }
            }
        }
        if !done {
            return Err(last_err.unwrap_or_else(|| EngineError::Conflict("no free host port".into())));
        }
    }
    Ok((maps, held))
}

/// Every port a container exposes or publishes, as `80/tcp` keys.
fn exposed_keys(rec: &Record) -> Vec<String> {
    let mut keys: Vec<String> = rec.config.exposed_ports.iter().flat_map(|m| m.keys().cloned()).collect();
    keys.extend(rec.host_config.port_bindings.keys().cloned());
    let mut norm: Vec<String> =
        keys.into_iter().filter_map(|k| parse_key(&k).ok().map(|(p, proto)| format!("{p}/{proto}"))).collect();
    norm.sort();
    norm.dedup();
    norm
}

/// `NetworkSettings.Ports`: each exposed port, with its host bindings (null when unpublished).
pub fn inspect_ports(rec: &Record, maps: &[PortMap], live: bool) -> Value {
    let mut out = serde_json::Map::new();
    if !live {
        return Value::Object(out);
    }
    for k in exposed_keys(rec) {
        let binds: Vec<Value> = maps
            .iter()
            .filter(|m| format!("{}/{}", m.container_port, m.proto) == k)
            .map(|m| json!({"HostIp": m.host_ip.to_string(), "HostPort": m.host_port.to_string()}))
            .collect();
        out.insert(k, if binds.is_empty() { Value::Null } else { Value::Array(binds) });
    }
    Value::Object(out)
}

/// The `Ports` of a container list row.
pub fn summary_ports(rec: &Record, maps: &[PortMap], live: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for k in exposed_keys(rec) {
        let Ok((port, proto)) = parse_key(&k) else { continue };
        let binds: Vec<&PortMap> =
            maps.iter().filter(|m| m.container_port == port && m.proto == proto && live).collect();
        if binds.is_empty() {
            out.push(json!({"PrivatePort": port, "Type": proto}));
        }
        for m in binds {
            out.push(
                json!({"IP": m.host_ip.to_string(), "PrivatePort": port, "PublicPort": m.host_port, "Type": proto}),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_specs() {
        assert_eq!(parse_key("80").ok(), Some((80, "tcp".into())));
        assert_eq!(parse_key("53/UDP").ok(), Some((53, "udp".into())));
        assert!(parse_key("80/icmp").is_err());
        assert!(parse_key("0").is_err());
        assert!(parse_key("http").is_err());
        assert_eq!(parse_host_port("").ok(), Some((0, 0)));
        assert_eq!(parse_host_port("8000-8010").ok(), Some((8000, 8010)));
        assert!(parse_host_port("9-8").is_err());
        assert!(parse_host_port("x").is_err());
        assert!(parse_host_ip("1.2.3").is_err());
        assert_eq!(parse_host_ip("::").ok(), Some(None));
    }
}
