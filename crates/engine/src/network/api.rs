//! The `/networks` verbs: create, remove, connect, disconnect, prune, and the JSON Docker
//! returns for a network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use network::subnet::{Subnet, mac_for, mac_string};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Network, Networks};
use crate::engine::Engine;
use crate::error::{EngineError, Result};

/// `POST /networks/create` body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateRequest {
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    #[serde(deserialize_with = "nullable")]
    pub internal: bool,
    #[serde(deserialize_with = "nullable")]
    pub attachable: bool,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    pub options: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    #[serde(deserialize_with = "nullable")]
    pub driver: String,
    pub config: Option<Vec<IpamConfig>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    #[serde(deserialize_with = "nullable")]
    pub subnet: String,
    #[serde(deserialize_with = "nullable")]
    pub gateway: String,
    #[serde(rename = "IPRange", deserialize_with = "nullable")]
    pub ip_range: String,
}

/// docker-py sends `null` for fields it leaves unset.
fn nullable<'de, D: serde::Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker's rule for network names.
fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next().is_some_and(|f| f.is_ascii_alphanumeric())
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

impl Networks {
    /// Creates a bridge network (its bridge and firewall rules at once, as Docker does).
    pub fn create(&self, req: CreateRequest) -> Result<String> {
        if req.name.is_empty() {
            return Err(EngineError::BadRequest("network name must not be empty".into()));
        }
        if !valid_name(&req.name) {
            return Err(EngineError::BadRequest(format!(
                "invalid network name \"{}\": only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        if !matches!(req.driver.as_str(), "" | "bridge") {
            return Err(EngineError::NoSuchNetwork(format!(
                "driver {} (only the bridge driver is supported)",
                req.driver
            )));
        }
        if req.enable_ipv6 == Some(true) {
            return Err(EngineError::BadRequest("IPv6 networks are not supported by berth".into()));
        }
        let ipam = req.ipam.unwrap_or_default();
        if !matches!(ipam.driver.as_str(), "" | "default") {
            return Err(EngineError::BadRequest(format!("IPAM driver {} is not supported", ipam.driver)));
        }
        let configs = ipam.config.unwrap_or_default();
        if configs.iter().any(|c| !c.ip_range.is_empty()) {
            return Err(EngineError::BadRequest("IPAM IPRange is not supported by berth".into()));
        }
        if configs.len() > 1 {
            return Err(EngineError::BadRequest("only one IPAM config (one IPv4 subnet) per network".into()));
        }
        let options = req.options.unwrap_or_default();
        let id = crate::container::new_id();
        let bridge =
            options.get("com.docker.network.bridge.name").cloned().unwrap_or_else(|| format!("br-{}", &id[..12]));
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return Err(EngineError::BadRequest(format!("invalid bridge name \"{bridge}\"")));
        }
        let _lock = super::subnet_lock();
        let mut st = self.state();
        if st.nets.values().any(|n| n.name == req.name) {
            return Err(EngineError::Conflict(format!("network with name {} already exists", req.name)));
        }
        if st.nets.values().any(|n| n.bridge == bridge) {
            return Err(EngineError::Conflict(format!("bridge name {bridge} is already used by another network")));
        }
        let (subnet, gateway, user_ipam) = match configs.first() {
            Some(c) if !c.subnet.is_empty() => {
                if c.subnet.contains(':') {
                    return Err(EngineError::BadRequest("IPv6 subnets are not supported by berth".into()));
                }
                let sub = Subnet::parse(&c.subnet).map_err(EngineError::BadRequest)?;
                if sub.prefix > 30 {
                    return Err(EngineError::BadRequest(format!("subnet {sub} is too small: at most /30")));
                }
                if let Some(o) = st.nets.values().find(|n| n.subnet().is_some_and(|s| s.overlaps(&sub))) {
                    return Err(EngineError::Conflict(format!(
                        "invalid pool request: subnet {sub} overlaps with network {} ({})",
                        o.name,
                        o.subnet.clone().unwrap_or_default()
                    )));
                }
                let gw = if c.gateway.is_empty() {
                    sub.nth(1).ok_or_else(|| EngineError::BadRequest(format!("subnet {sub} has no addresses")))?
                } else {
                    let gw: Ipv4Addr = c
                        .gateway
                        .parse()
                        .map_err(|_| EngineError::BadRequest(format!("invalid gateway address {}", c.gateway)))?;
                    if !sub.contains(gw) || gw == sub.addr || gw == sub.broadcast() {
                        return Err(EngineError::BadRequest(format!(
                            "gateway {gw} is not a host address of subnet {sub}"
                        )));
                    }
                    gw
                };
                (sub, gw, true)
            }
            Some(c) if !c.gateway.is_empty() => {
                return Err(EngineError::BadRequest(format!("gateway {} given without a subnet", c.gateway)));
            }
            _ => {
                let taken = self.taken_subnets(&st, None);
                let sub = network::subnet::pick(&self.settings.pools, &taken).ok_or_else(|| {
                    EngineError::Forbidden(
                        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network".into(),
                    )
                })?;
                (sub, sub.nth(1).unwrap_or(sub.addr), false)
            }
        };
        let n = Network {
            id: id.clone(),
            name: req.name.clone(),
            driver: "bridge".into(),
            created: crate::lifecycle::now(),
            subnet: Some(subnet.to_string()),
            gateway: Some(gateway.to_string()),
            user_ipam,
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels.unwrap_or_default(),
            options,
            bridge,
        };
        // The bridge first: if it cannot be made, nothing is recorded.
        if let Err(e) = self.ensure_bridge(&n) {
            let _ = network::endpoint::delete_link(&n.bridge);
            return Err(e);
        }
        self.save_net(&n)?;
        st.nets.insert(id.clone(), n.clone());
        drop(st);
        if let Err(e) = self.apply_firewall() {
            self.state().nets.remove(&id);
            let _ = self
                .db
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .prepare_cached("DELETE FROM networks WHERE id = ?1")
                .and_then(|mut st| st.execute([&id]));
            let _ = network::endpoint::delete_link(&n.bridge);
            let _ = self.apply_firewall();
            return Err(e);
        }
        Ok(id)
    }

    /// Removes a user network that no running container uses.
    pub fn remove(&self, s: &str) -> Result<()> {
        let n = self.lookup(s)?;
        if n.predefined() {
            return Err(EngineError::Forbidden(format!("{} is a pre-defined network and cannot be removed", n.name)));
        }
        if !self.members(&n.id).is_empty() {
            return Err(EngineError::Conflict(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        {
            let mut st = self.state();
            st.nets.remove(&n.id);
            // Stopped containers forget it too: they would fail to start on a missing network.
            let ids: Vec<String> = st
                .conts
                .iter()
                .filter(|(_, c)| c.endpoints.iter().any(|e| e.network == n.id))
                .map(|(id, _)| id.clone())
                .collect();
            for id in ids {
                if let Some(c) = st.conts.get_mut(&id) {
                    c.endpoints.retain(|e| e.network != n.id);
                    let c = c.clone();
                    let _ = self.save_cont(&id, &c);
                }
            }
        }
        self.db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prepare_cached("DELETE FROM networks WHERE id = ?1")?
            .execute([&n.id])?;
        network::endpoint::delete_link(&n.bridge)?;
        self.apply_firewall()
    }

    /// A network as `GET /networks/{id}` shows it.
    pub fn inspect_json(&self, n: &Network, containers: bool) -> Value {
        let config = match (&n.subnet, &n.gateway) {
            (Some(s), Some(g)) => json!([{"Subnet": s, "Gateway": g}]),
            _ => json!([]),
        };
        let mut members = serde_json::Map::new();
        if containers {
            let prefix = n.subnet().map(|s| s.prefix).unwrap_or(0);
            for (id, name, ep) in self.members(&n.id) {
                let ip = ep.ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
                members.insert(
                    id,
                    json!({
                        "Name": name, "EndpointID": ep.endpoint_id, "MacAddress": mac_string(mac_for(ip)),
                        "IPv4Address": format!("{ip}/{prefix}"), "IPv6Address": "",
                    }),
                );
            }
        }
        json!({
            "Name": n.name, "Id": n.id, "Created": n.created, "Scope": "local", "Driver": n.driver,
            "EnableIPv6": false,
            "IPAM": {"Driver": "default", "Options": if n.predefined() { Value::Null } else { json!({}) }, "Config": config},
            "Internal": n.internal, "Attachable": n.attachable, "Ingress": false,
            "ConfigFrom": {"Network": ""}, "ConfigOnly": false,
            "Containers": members, "Options": n.options, "Labels": n.labels,
        })
    }
}

/// Docker's network list filters: name (substring), id (prefix), label, driver, type.
pub fn matches(n: &Network, used: bool, filters: &BTreeMap<String, Vec<String>>) -> Result<bool> {
    for (k, vals) in filters {
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.contains(&n.driver),
            "label" => vals.iter().all(|v| match v.split_once('=') {
                Some((k, val)) => n.labels.get(k).is_some_and(|x| x == val),
                None => n.labels.contains_key(v),
            }),
            "type" => vals.iter().any(|v| match v.as_str() {
                "custom" => !n.predefined(),
                "builtin" => n.predefined(),
                _ => false,
            }),
            "dangling" => vals.iter().any(|v| (v == "true" || v == "1") != used),
            "scope" => vals.iter().any(|v| v == "local"),
            other => return Err(EngineError::BadRequest(format!("invalid filter '{other}'"))),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Engine {
    /// `POST /networks/{id}/connect`: a stopped container joins at its next start; a running
    /// one gets its interface now.
    pub async fn network_connect(self: &Arc<Self>, net: &str, container: &str, cfg: Option<Value>) -> Result<()> {
        let n = self.net.lookup(net)?;
        let c = self.lookup(container)?;
        let _op = c.op.lock().await;
        let rec = c.snapshot();
        let mode = rec.host_config.network_mode.as_str();
        if !n.is_bridge() || mode == "host" || mode == "none" || mode.starts_with("container:") {
            return Err(EngineError::BadRequest(format!(
                "container cannot be connected to network {}: it uses network mode {mode}",
                n.name
            )));
        }
        let ep = self.net.endpoint_for(&n, cfg.as_ref(), &[])?;
        let running = c.status().is_live();
        let netns = self.paths.netns(&c.id);
        let net = self.net.clone();
        let id = c.id.clone();
        let attrs = vec![
            ("container".into(), c.id.clone()),
            ("name".into(), n.name.clone()),
            ("type".into(), n.driver.clone()),
        ];
        let nid = n.id.clone();
        tokio::task::spawn_blocking(move || net.connect(&id, &n, ep, running.then_some(netns.as_path()), &rec))
            .await
            .map_err(EngineError::internal)??;
        self.events.emit("network", "connect", &nid, attrs);
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn network_disconnect(self: &Arc<Self>, net: &str, container: &str) -> Result<()> {
        let n = self.net.lookup(net)?;
        let c = self.lookup(container)?;
        let _op = c.op.lock().await;
        let net = self.net.clone();
        let id = c.id.clone();
        let attrs = vec![
            ("container".into(), c.id.clone()),
            ("name".into(), n.name.clone()),
            ("type".into(), n.driver.clone()),
        ];
        let nid = n.id.clone();
        tokio::task::spawn_blocking(move || net.disconnect(&id, &n)).await.map_err(EngineError::internal)??;
        self.events.emit("network", "disconnect", &nid, attrs);
        Ok(())
    }

    /// `POST /networks/prune`: user networks no running container uses.
    pub fn network_prune(&self, filters: &BTreeMap<String, Vec<String>>) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in self.net.list() {
            if n.predefined() || !self.net.members(&n.id).is_empty() {
                continue;
            }
            let mut f = filters.clone();
            f.remove("until");
            if !matches(&n, false, &f)? {
                continue;
            }
            self.net.remove(&n.id)?;
            self.events.emit(
                "network",
                "destroy",
                &n.id,
                vec![("name".into(), n.name.clone()), ("type".into(), n.driver)],
            );
            out.push(n.name);
        }
        Ok(out)
    }
}

impl Networks {
    fn connect(
        self: &Arc<Self>,
        id: &str,
        n: &Network,
        mut ep: super::Endpoint,
        netns: Option<&std::path::Path>,
        rec: &crate::container::Record,
    ) -> Result<()> {
        let (attach, first_user) = {
            let mut st = self.state();
            let snapshot = st.conts.get(id).cloned().unwrap_or_default();
            let first_user = !n.is_default()
                && !snapshot.endpoints.iter().any(|e| st.nets.get(&e.network).is_some_and(|x| !x.is_default()));
            let cont = st.conts.entry(id.to_owned()).or_default();
            if cont.endpoints.iter().any(|e| e.network == n.id) {
                return Err(EngineError::Forbidden(format!(
                    "endpoint with name {} already exists in network {}",
                    rec.state.name, n.name
                )));
            }
            let Some(_) = netns else {
                cont.endpoints.push(ep);
                let c = cont.clone();
                self.save_cont(id, &c)?;
                return Ok(());
            };
            let (ip, prefix) = Networks::allocate(&st, n, ep.requested_ip)?;
            let cont = st.conts.entry(id.to_owned()).or_default();
            ep.ip = Some(ip);
            ep.ifname = format!("eth{}", cont.endpoints.len());
            ep.endpoint_id = crate::container::new_id();
            let veth = network::endpoint::veth_name();
            ep.host_veth = Some(veth.clone());
            let gateway = if cont.endpoints.iter().all(|e| e.ip.is_none()) && !n.internal { n.gw() } else { None };
            let attach = network::endpoint::Attach {
                bridge: n.bridge.clone(),
                host_veth: veth,
                ifname: ep.ifname.clone(),
                ip,
                prefix,
                mac: mac_for(ip),
                gateway,
            };
            cont.endpoints.push(ep);
            cont.running = true;
            let c = cont.clone();
            self.save_cont(id, &c)?;
            (attach, first_user)
        };
        let Some(netns) = netns else { return Ok(()) };
        match network::endpoint::attach(netns, std::slice::from_ref(&attach), first_user, None) {
            Ok(sockets) => {
                if let Some(s) = sockets {
                    self.serve_dns(id, s, rec);
                }
                Ok(())
            }
            Err(e) => {
                let mut st = self.state();
                if let Some(c) = st.conts.get_mut(id) {
                    c.endpoints.retain(|x| x.network != n.id);
                    let c = c.clone();
                    let _ = self.save_cont(id, &c);
                }
                Err(e.into())
            }
        }
    }

    fn disconnect(&self, id: &str, n: &Network) -> Result<()> {
        let ep = {
            let mut st = self.state();
            let cont = st.conts.get_mut(id).ok_or_else(|| {
                EngineError::Forbidden(format!("container {} is not connected to network {}", &id[..12], n.name))
            })?;
            let Some(pos) = cont.endpoints.iter().position(|e| e.network == n.id) else {
                return Err(EngineError::Forbidden(format!(
                    "container {} is not connected to network {}",
                    &id[..12],
                    n.name
                )));
            };
            let ep = cont.endpoints.remove(pos);
            let c = cont.clone();
            self.save_cont(id, &c)?;
            ep
        };
        if let Some(v) = ep.host_veth {
            network::endpoint::delete_link(&v)?;
        }
        Ok(())
    }
}
