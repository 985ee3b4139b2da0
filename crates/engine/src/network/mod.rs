//! Networks and container endpoints, engine side.
//!
//! [`Networks`] keeps the networks (`networks` table: the predefined `bridge`, `host`, `none`
//! and the user's bridge networks) and each container's endpoints (`endpoints` table: which
//! networks, aliases, the requested and the assigned address, the host veth, the published
//! ports). The assigned addresses are the IPAM: an address is taken when a container starts
//! and given back when it stops, under one lock, and persisted, so a restarted daemon knows
//! which addresses its running containers hold.
//!
//! A start runs [`Networks::setup`] (synchronous, on a blocking thread): hold the published
//! host ports first (a taken port fails the start before anything else is made), make the
//! namespace, take addresses, plug veth pairs into the bridges (`network::endpoint`), open the
//! embedded DNS server's sockets inside the namespace on user networks ([`dns`]), reload the
//! firewall table when ports changed, and write /etc/hosts and /etc/resolv.conf ([`etc`]).
//! [`Networks::teardown`] undoes each step and is safe to run on a half-made setup.

pub mod api;
mod dns;
mod etc;
mod ports;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use network::ports::Held;
use network::subnet::{Pool, Subnet, default_pools, mac_for, mac_string};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::container::Record;
use crate::engine::Paths;
use crate::error::{EngineError, Result};

pub use ports::PortMap;

/// Daemon settings for networking (daemon.json: `bridge`, `bip`, `default-address-pools`, `dns`).
#[derive(Debug, Clone)]
pub struct NetSettings {
    /// The default bridge's interface name.
    pub bridge: String,
    /// The default bridge's gateway address and prefix (`172.30.0.1/16`).
    pub bip: Option<String>,
    pub pools: Vec<Pool>,
    /// Resolvers for containers (and for the embedded DNS server's forwarding).
    pub dns: Vec<Ipv4Addr>,
}

impl Default for NetSettings {
    fn default() -> Self {
        NetSettings { bridge: "berth0".into(), bip: None, pools: default_pools(), dns: Vec::new() }
    }
}

impl NetSettings {
    /// The nftables table: `berth` for the default bridge name, else one per bridge name, so
    /// two daemons (tests) never share rules.
    pub fn table(&self) -> String {
        if self.bridge == "berth0" {
            return "berth".into();
        }
        let s: String = self.bridge.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        format!("berth_{s}")
    }
}

/// A network as kept in the `networks` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Network {
    pub id: String,
    pub name: String,
    /// `bridge`, `host` or `null`.
    pub driver: String,
    pub created: String,
    #[serde(default)]
    pub subnet: Option<String>,
    #[serde(default)]
    pub gateway: Option<String>,
    /// The subnet was given by the user (then `--ip` may be used on it).
    #[serde(default)]
    pub user_ipam: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub attachable: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// The Linux bridge's name.
    #[serde(default)]
    pub bridge: String,
}

impl Network {
    /// One of the networks every daemon has (`bridge`, `host`, `none`), before its settings.
    fn new_predefined(name: &str, driver: &str) -> Network {
        Network {
            id: new_id(),
            name: name.into(),
            driver: driver.into(),
            created: now(),
            subnet: None,
            gateway: None,
            user_ipam: false,
            internal: false,
            attachable: false,
            labels: BTreeMap::new(),
            options: BTreeMap::new(),
            bridge: String::new(),
        }
    }

    pub fn is_bridge(&self) -> bool {
        self.driver == "bridge"
    }
    pub fn predefined(&self) -> bool {
        matches!(self.name.as_str(), "bridge" | "host" | "none")
    }
    /// The default bridge, where links and no DNS apply.
    pub fn is_default(&self) -> bool {
        self.name == "bridge"
    }
    pub fn subnet(&self) -> Option<Subnet> {
        self.subnet.as_deref().and_then(|s| Subnet::parse(s).ok())
    }
    pub fn gw(&self) -> Option<Ipv4Addr> {
        self.gateway.as_deref().and_then(|g| g.parse().ok())
    }
}

/// A container's membership of one network.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Endpoint {
    /// The network's id.
    pub network: String,
    pub endpoint_id: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `target:alias` links (on user networks, aliases only this container resolves).
    #[serde(default)]
    pub links: Vec<String>,
    #[serde(default)]
    pub requested_ip: Option<Ipv4Addr>,
    /// The address it holds while the container runs.
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub host_veth: Option<String>,
    #[serde(default)]
    pub ifname: String,
}

/// A container's networking, persisted in the `endpoints` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContNet {
    pub name: String,
    pub endpoints: Vec<Endpoint>,
    /// The published ports while it runs.
    #[serde(default)]
    pub ports: Vec<PortMap>,
    #[serde(default)]
    pub running: bool,
}

#[derive(Default)]
struct State {
    nets: BTreeMap<String, Network>,
    conts: HashMap<String, ContNet>,
}

/// What a start needs from other containers: a `--link` target.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    pub id: String,
    pub name: String,
    pub alias: String,
    pub env: Vec<String>,
    pub exposed: Vec<String>,
}

/// What the network setup gives the rest of a start.
#[derive(Debug, Default)]
pub struct StartNet {
    pub netns: Option<PathBuf>,
    pub env: Vec<String>,
}

/// Network namespaces kept made ahead of time (network::pool), of each kind in use (plain, and
/// with the veth pair of a container's first interface): two, so that two starts in a row, or
/// a start and a `run`'s next one, find one ready.
const NETNS_POOL_SIZE: usize = 2;

pub struct Networks {
    pub settings: NetSettings,
    db: Mutex<Connection>,
    st: Mutex<State>,
    /// Serialises firewall reloads, so the last one loaded renders the latest state.
    fw: Mutex<()>,
    holds: Mutex<HashMap<String, Vec<Held>>>,
    dns: Mutex<HashMap<String, Vec<tokio::task::AbortHandle>>>,
    rt: tokio::runtime::Handle,
    /// Containers' network namespaces, made ahead of time.
    pub pool: Arc<network::pool::NetnsPool>,
}

fn new_id() -> String {
    crate::container::new_id()
}

fn now() -> String {
    crate::lifecycle::now()
}

/// A host-wide lock while a subnet is chosen and its bridge made, so two daemons never pick
/// the same free subnet at once.
fn subnet_lock() -> Option<std::fs::File> {
    use std::os::fd::AsRawFd;
    let f =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open("/run/berth-network.lock").ok()?;
    // SAFETY: flock on an fd we own; released when the file is dropped.
    unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    Some(f)
}

impl Networks {
    /// Opens the tables, makes the predefined networks, brings up every bridge and loads the
    /// firewall table.
    pub fn open(
        data_root: &Path,
        netns_pool: PathBuf,
        settings: NetSettings,
        rt: tokio::runtime::Handle,
    ) -> Result<Arc<Self>> {
        let db = image::store::open_db(data_root)?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS networks (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS endpoints (container TEXT PRIMARY KEY, record TEXT NOT NULL);",
        )?;
        let mut st = State::default();
        {
            let mut q = db.prepare("SELECT id, record FROM networks")?;
            let rows: Vec<(String, String)> =
                q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            for (id, text) in rows {
                match serde_json::from_str::<Network>(&text) {
                    Ok(n) => {
                        st.nets.insert(id, n);
                    }
                    Err(e) => tracing::error!("skipping corrupt network record {id}: {e}"),
                }
            }
            let mut q = db.prepare("SELECT container, record FROM endpoints")?;
            let rows: Vec<(String, String)> =
                q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            for (id, text) in rows {
                if let Ok(c) = serde_json::from_str::<ContNet>(&text) {
                    st.conts.insert(id, c);
                }
            }
        }
        let me = Arc::new(Networks {
            settings,
            db: Mutex::new(db),
            st: Mutex::new(st),
            fw: Mutex::new(()),
            holds: Mutex::new(HashMap::new()),
            dns: Mutex::new(HashMap::new()),
            rt,
            pool: network::pool::NetnsPool::new(netns_pool, NETNS_POOL_SIZE),
        });
        me.ensure_predefined()?;
        let bridges: Vec<Network> = me.state().nets.values().filter(|n| n.is_bridge()).cloned().collect();
        for n in bridges {
            if let Err(e) = me.ensure_bridge(&n) {
                tracing::error!("{e}");
            }
        }
        if let Err(e) = me.apply_firewall() {
            tracing::error!("{e}");
        }
        Ok(me)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn save_net(&self, n: &Network) -> Result<()> {
        let text = serde_json::to_string(n).map_err(EngineError::internal)?;
        self.db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prepare_cached(
                "INSERT INTO networks (id, name, record) VALUES (?1, ?2, ?3)
             ON CONFLICT(id) DO UPDATE SET name = excluded.name, record = excluded.record",
            )?
            .execute(params![n.id, n.name, text])?;
        Ok(())
    }

    fn save_cont(&self, id: &str, c: &ContNet) -> Result<()> {
        let text = serde_json::to_string(c).map_err(EngineError::internal)?;
        self.db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prepare_cached(
                "INSERT INTO endpoints (container, record) VALUES (?1, ?2)
             ON CONFLICT(container) DO UPDATE SET record = excluded.record",
            )?
            .execute(params![id, text])?;
        Ok(())
    }

    /// The subnets in use: the host's routes and every network of this daemon.
    fn taken_subnets(&self, st: &State, except: Option<&str>) -> Vec<Subnet> {
        let mut v = network::subnet::host_routes();
        // Our own bridges' routes are in the host's table too; a network keeps its subnet.
        if let Some(id) = except
            && let Some(n) = st.nets.get(id)
            && let Some(s) = n.subnet()
        {
            v.retain(|r| *r != s);
        }
        v.extend(st.nets.values().filter(|n| Some(n.id.as_str()) != except).filter_map(Network::subnet));
        v
    }

    fn ensure_predefined(&self) -> Result<()> {
        let _lock = subnet_lock();
        let mut st = self.state();
        let existing = st.nets.values().find(|n| n.name == "bridge").cloned();
        let mut bridge = existing.clone().unwrap_or_else(|| Network::new_predefined("bridge", "bridge"));
        bridge.bridge = self.settings.bridge.clone();
        bridge.options = [
            ("com.docker.network.bridge.default_bridge", "true"),
            ("com.docker.network.bridge.enable_icc", "true"),
            ("com.docker.network.bridge.enable_ip_masquerade", "true"),
            ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
            ("com.docker.network.bridge.name", self.settings.bridge.as_str()),
            ("com.docker.network.driver.mtu", "1500"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(bip) = &self.settings.bip {
            let (gw, sub) = Subnet::parse_cidr(bip).map_err(|e| EngineError::BadRequest(format!("bip: {e}")))?;
            bridge.subnet = Some(sub.to_string());
            bridge.gateway = Some(gw.to_string());
        } else if bridge.subnet.is_none() || !network::endpoint::link_exists(&bridge.bridge) {
            // A bridge that still exists keeps its subnet; otherwise choose again, avoiding
            // what the host routes now (another daemon may have taken ours meanwhile).
            let taken = {
                let mut t = network::subnet::host_routes();
                t.extend(st.nets.values().filter(|n| n.name != "bridge").filter_map(Network::subnet));
                t
            };
            let keep = bridge.subnet().filter(|s| !taken.iter().any(|t| t.overlaps(s)));
            let sub = match keep {
                Some(s) => s,
                None => network::subnet::pick(&self.settings.pools, &taken).ok_or_else(|| {
                    EngineError::Internal("no free subnet in default-address-pools for the default bridge".into())
                })?,
            };
            bridge.subnet = Some(sub.to_string());
            bridge.gateway = sub.nth(1).map(|g| g.to_string());
        }
        self.save_net(&bridge)?;
        st.nets.insert(bridge.id.clone(), bridge);
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if !st.nets.values().any(|n| n.name == name) {
                let n = Network::new_predefined(name, driver);
                self.save_net(&n)?;
                st.nets.insert(n.id.clone(), n);
            }
        }
        Ok(())
    }

    fn ensure_bridge(&self, n: &Network) -> Result<()> {
        let (Some(sub), Some(gw)) = (n.subnet(), n.gw()) else {
            return Err(EngineError::Internal(format!("network {} has no subnet", n.name)));
        };
        network::endpoint::ensure_bridge(&n.bridge, gw, sub)?;
        Ok(())
    }

    /// Renders the firewall table from the current state and loads it.
    pub fn apply_firewall(&self) -> Result<()> {
        let _g = self.fw.lock().unwrap_or_else(|p| p.into_inner());
        let rules = {
            let st = self.state();
            let bridges = st
                .nets
                .values()
                .filter(|n| n.is_bridge())
                .filter_map(|n| {
                    Some(network::nft::BridgeRules {
                        bridge: n.bridge.clone(),
                        subnet: n.subnet()?,
                        gateway: n.gw()?,
                        internal: n.internal,
                    })
                })
                .collect();
            let mut ports = Vec::new();
            for c in st.conts.values().filter(|c| c.running) {
                let Some(ip) = c.endpoints.iter().find_map(|e| e.ip) else { continue };
                for p in &c.ports {
                    ports.push(network::nft::PortRule {
                        host_ip: if p.host_ip.is_unspecified() { None } else { Some(p.host_ip) },
                        host_port: p.host_port,
                        proto: p.proto.clone(),
                        container_ip: ip,
                        container_port: p.container_port,
                    });
                }
            }
            network::nft::Ruleset { table: self.settings.table(), bridges, ports }
        };
        rules.apply().map_err(|e| EngineError::Internal(format!("load firewall table `{}`: {e}", rules.table)))
    }

    /// Finds a network by id, name or unique id prefix.
    pub fn lookup(&self, s: &str) -> Result<Network> {
        let st = self.state();
        if let Some(n) = st.nets.get(s) {
            return Ok(n.clone());
        }
        if let Some(n) = st.nets.values().find(|n| n.name == s) {
            return Ok(n.clone());
        }
        let m: Vec<&Network> = st.nets.values().filter(|n| !s.is_empty() && n.id.starts_with(s)).collect();
        match m.len() {
            1 => Ok(m[0].clone()),
            0 => Err(EngineError::NoSuchNetwork(s.to_owned())),
            _ => Err(EngineError::BadRequest(format!("network {s} is ambiguous ({} matches found on name)", m.len()))),
        }
    }

    pub fn list(&self) -> Vec<Network> {
        self.state().nets.values().cloned().collect()
    }

    /// The network a container's mode names: None for `host`, `none` and `container:…`.
    pub fn mode_network(&self, mode: &str) -> Result<Option<Network>> {
        match mode {
            "" | "default" | "bridge" => self.lookup("bridge").map(Some),
            "host" | "none" => Ok(None),
            m if m.starts_with("container:") => Ok(None),
            m => {
                let n = self.lookup(m)?;
                Ok(if n.is_bridge() { Some(n) } else { None })
            }
        }
    }

    /// Checks a create request's networking and returns the container's endpoints.
    pub fn plan(&self, host: &::api::types::HostConfig, netcfg: Option<&Value>) -> Result<ContNet> {
        ports::validate(host)?;
        etc::validate(host)?;
        let mode = host.network_mode.as_str();
        if let Some(rest) = mode.strip_prefix("container:")
            && rest.is_empty()
        {
            return Err(EngineError::BadRequest("--network container: needs a container name or id".into()));
        }
        let configs: BTreeMap<String, Value> = netcfg
            .and_then(|v| v.get("EndpointsConfig"))
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        let mut out = ContNet::default();
        let primary = self.mode_network(mode)?;
        if primary.is_none() && mode != "host" && mode != "none" && !mode.starts_with("container:") {
            // A network with the host or null driver named by name: treat as its mode.
            let n = self.lookup(mode)?;
            return Err(EngineError::BadRequest(format!(
                "network {} uses the {} driver: use --network {}",
                n.name,
                n.driver,
                if n.driver == "null" { "none" } else { "host" }
            )));
        }
        if let Some(n) = primary {
            let cfg = configs
                .get(mode)
                .or_else(|| configs.get(&n.name))
                .or_else(|| configs.get(&n.id))
                .or_else(|| if n.is_default() { configs.get("default") } else { None });
            out.endpoints.push(self.endpoint_for(&n, cfg, &host.links)?);
            for (k, v) in &configs {
                // The docker CLI names the mode's own entry as the mode (`default` too).
                if k == mode || (n.is_default() && matches!(k.as_str(), "default" | "bridge")) {
                    continue;
                }
                let other = self.lookup(k)?;
                if other.id == n.id {
                    continue;
                }
                if !other.is_bridge() {
                    return Err(EngineError::BadRequest(format!(
                        "container cannot be connected to network {} and to {}",
                        n.name, other.name
                    )));
                }
                out.endpoints.push(self.endpoint_for(&other, Some(v), &[])?);
            }
        } else if let Some(k) = configs.keys().find(|k| k.as_str() != mode) {
            let n = self.lookup(k)?;
            return Err(EngineError::BadRequest(format!(
                "container sharing network namespace with another container or host cannot be connected to network {}",
                n.name
            )));
        }
        Ok(out)
    }

    /// One endpoint from an `EndpointSettings` body, checked against its network.
    pub fn endpoint_for(&self, n: &Network, cfg: Option<&Value>, links: &[String]) -> Result<Endpoint> {
        let strs = |k: &str| -> Vec<String> {
            cfg.and_then(|c| c.get(k))
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
                .unwrap_or_default()
        };
        let aliases = strs("Aliases");
        let mut all_links = strs("Links");
        all_links.extend(links.iter().cloned());
        if n.is_default() && !aliases.is_empty() {
            return Err(EngineError::BadRequest(
                "network-scoped alias is supported only for containers in user defined networks".into(),
            ));
        }
        let requested = cfg
            .and_then(|c| c.get("IPAMConfig"))
            .and_then(|c| c.get("IPv4Address"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let requested_ip = match requested {
            None => None,
            Some(s) => {
                let ip: Ipv4Addr =
                    s.parse().map_err(|_| EngineError::BadRequest(format!("invalid IPv4 address: {s}")))?;
                if !n.user_ipam {
                    return Err(EngineError::BadRequest(
                        "user specified IP address is supported only when connecting to networks with user configured subnets".into(),
                    ));
                }
                if !n.subnet().is_some_and(|sub| sub.contains(ip)) {
                    return Err(EngineError::BadRequest(format!(
                        "no configured subnet or ip-range contain the IP address {ip}"
                    )));
                }
                Some(ip)
            }
        };
        for l in &all_links {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            if target.trim_start_matches('/').is_empty() || alias.trim_start_matches('/').is_empty() {
                return Err(EngineError::BadRequest(format!("invalid link format: {l}")));
            }
        }
        Ok(Endpoint {
            network: n.id.clone(),
            endpoint_id: String::new(),
            aliases,
            links: all_links,
            requested_ip,
            ip: None,
            host_veth: None,
            ifname: String::new(),
        })
    }

    /// Records a new container's networking.
    pub fn insert(&self, id: &str, name: &str, mut c: ContNet) -> Result<()> {
        c.name = name.to_owned();
        self.save_cont(id, &c)?;
        self.state().conts.insert(id.to_owned(), c);
        Ok(())
    }

    /// Forgets a removed container.
    pub fn forget(&self, id: &str) {
        self.state().conts.remove(id);
        let _ = self
            .db
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .prepare_cached("DELETE FROM endpoints WHERE container = ?1")
            .and_then(|mut st| st.execute([id]));
    }

    pub fn rename(&self, id: &str, name: &str) {
        let mut st = self.state();
        if let Some(c) = st.conts.get_mut(id) {
            c.name = name.to_owned();
            let c = c.clone();
            drop(st);
            let _ = self.save_cont(id, &c);
        }
    }

    pub fn cont(&self, id: &str) -> Option<ContNet> {
        self.state().conts.get(id).cloned()
    }

    /// Takes an address on `n` for an endpoint.
    fn allocate(st: &State, n: &Network, requested: Option<Ipv4Addr>) -> Result<(Ipv4Addr, u8)> {
        let sub = n.subnet().ok_or_else(|| EngineError::Internal(format!("network {} has no subnet", n.name)))?;
        let used: Vec<Ipv4Addr> = st
            .conts
            .values()
            .flat_map(|c| c.endpoints.iter())
            .filter(|e| e.network == n.id)
            .filter_map(|e| e.ip)
            .chain(n.gw())
            .collect();
        if let Some(ip) = requested {
            if used.contains(&ip) {
                return Err(EngineError::Conflict(format!("address {ip} on network {} is already in use", n.name)));
            }
            return Ok((ip, sub.prefix));
        }
        sub.hosts()
            .find(|ip| !used.contains(ip))
            .map(|ip| (ip, sub.prefix))
            .ok_or_else(|| EngineError::Conflict(format!("no available IPv4 addresses on network {}", n.name)))
    }

    /// Sets up a starting container's network; see the module comment. `joined` is the id of
    /// the container whose namespace a `container:` mode joins.
    pub fn setup(
        self: &Arc<Self>,
        rec: &Record,
        paths: &Paths,
        joined: Option<&str>,
        links: &[LinkTarget],
    ) -> Result<StartNet> {
        let id = &rec.id;
        let dir = paths.etc_dir(id);
        std::fs::create_dir_all(&dir).map_err(|e| EngineError::Internal(format!("create `{}`: {e}", dir.display())))?;
        let h = &rec.host_config;
        let mode = h.network_mode.as_str();
        if mode == "host" {
            etc::write_host_mode(&dir, rec)?;
            return Ok(StartNet::default());
        }
        if let Some(other) = joined {
            for f in ["hosts", "resolv.conf"] {
                let src = paths.etc_dir(other).join(f);
                std::fs::copy(&src, dir.join(f))
                    .map_err(|e| EngineError::Internal(format!("copy `{}`: {e}", src.display())))?;
            }
            etc::write_hostname(&dir, &rec.config.hostname)?;
            return Ok(StartNet { netns: Some(paths.netns(other)), env: Vec::new() });
        }
        let netns = paths.netns(id);
        let has_endpoints = self.state().conts.get(id).is_some_and(|c| !c.endpoints.is_empty());
        if !has_endpoints {
            if !netns.exists() {
                self.pool.take(&netns, false)?;
            }
            let gw = self.lookup("bridge").ok().and_then(|n| n.gw());
            etc::write(&dir, rec, &[], &[], false, &self.settings.dns, gw)?;
            return Ok(StartNet { netns: Some(netns), env: Vec::new() });
        }
        // 1. Ports first: a taken one fails the start before anything is made.
        let exposed = ports::wanted(rec)?;
        let (maps, held) = {
            let st = self.state();
            ports::hold_all(&exposed, &st.conts, id)?
        };
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), held);
        // 2. The namespace, with the veth pair of the first interface when the pool has one.
        let prepared = if netns.exists() { None } else { self.pool.take(&netns, true)? };
        // 3. Addresses, under the lock, saved before anything refers to them.
        let (attach, nets, user_net) = {
            let mut st = self.state();
            let mut cont = st.conts.get(id).cloned().unwrap_or_default();
            let mut attach = Vec::new();
            let mut nets = Vec::new();
            for (i, ep) in cont.endpoints.iter_mut().enumerate() {
                let n =
                    st.nets.get(&ep.network).cloned().ok_or_else(|| EngineError::NoSuchNetwork(ep.network.clone()))?;
                let (ip, prefix) = match ep.ip {
                    Some(ip) => (ip, n.subnet().map(|s| s.prefix).unwrap_or(16)),
                    None => Self::allocate(&st, &n, ep.requested_ip)?,
                };
                ep.ip = Some(ip);
                ep.ifname = format!("eth{i}");
                ep.endpoint_id = new_id();
                let veth = match (&prepared, i) {
                    (Some(p), 0) => p.host.clone(),
                    _ => network::endpoint::veth_name(),
                };
                ep.host_veth = Some(veth.clone());
                attach.push(network::endpoint::Attach {
                    bridge: n.bridge.clone(),
                    host_veth: veth,
                    ifname: ep.ifname.clone(),
                    ip,
                    prefix,
                    mac: mac_for(ip),
                    gateway: if i == 0 && !n.internal { n.gw() } else { None },
                });
                nets.push(n);
            }
            cont.running = true;
            cont.ports = maps;
            cont.name = rec.state.name.clone();
            self.save_cont(id, &cont)?;
            st.conts.insert(id.clone(), cont);
            let user_net = nets.iter().any(|n| !n.is_default());
            (attach, nets, user_net)
        };
        for n in &nets {
            if !network::endpoint::link_exists(&n.bridge) {
                self.ensure_bridge(n)?;
            }
        }
        // 4. The veth pairs, and the DNS server's sockets inside the namespace.
        let sockets = network::endpoint::attach(&netns, &attach, user_net, prepared)?;
        if let Some(s) = sockets {
            self.serve_dns(id, s, rec);
        }
        // 5. The firewall, when this container publishes ports.
        if !self.state().conts.get(id).is_none_or(|c| c.ports.is_empty()) {
            self.apply_firewall()?;
        }
        // 6. /etc/hosts and /etc/resolv.conf, and the link variables.
        let own: Vec<Ipv4Addr> = attach.iter().map(|a| a.ip).collect();
        let default_gw = self.lookup("bridge").ok().and_then(|n| n.gw());
        let mut link_hosts = Vec::new();
        let mut env = Vec::new();
        if nets.first().is_some_and(Network::is_default) {
            for l in links {
                let ip = self.ip_on(&l.id, &nets[0].id).ok_or_else(|| {
                    EngineError::BadRequest(format!(
                        "cannot link to {}: it is not connected to the default bridge network",
                        l.name
                    ))
                })?;
                link_hosts.push((ip, format!("{} {} {}", l.alias, &l.id[..12], l.name)));
                env.extend(etc::link_env(&rec.state.name, l, ip));
            }
        }
        etc::write(&dir, rec, &own, &link_hosts, user_net, &self.settings.dns, default_gw)?;
        Ok(StartNet { netns: Some(netns), env })
    }

    /// The address a container holds on a network.
    pub fn ip_on(&self, cid: &str, net: &str) -> Option<Ipv4Addr> {
        self.state().conts.get(cid)?.endpoints.iter().find(|e| e.network == net)?.ip
    }

    /// Undoes [`setup`](Self::setup): DNS server, held ports, veths, addresses, firewall rules.
    pub fn teardown(&self, id: &str) {
        self.teardown_saving(id, true)
    }

    /// [`teardown`](Self::teardown) for a container being removed: its endpoints' row is
    /// deleted next ([`forget`](Self::forget)), so it is not written first. (A crash in between
    /// leaves the row as it was; a container being removed holds no address after a restart.)
    pub fn teardown_for_removal(&self, id: &str) {
        self.teardown_saving(id, false)
    }

    fn teardown_saving(&self, id: &str, save: bool) {
        if let Some(tasks) = self.dns.lock().unwrap_or_else(|p| p.into_inner()).remove(id) {
            for t in tasks {
                t.abort();
            }
        }
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let (veths, had_ports) = {
            let mut st = self.state();
            let Some(c) = st.conts.get_mut(id) else { return };
            if !c.running && c.endpoints.iter().all(|e| e.ip.is_none() && e.host_veth.is_none()) {
                return;
            }
            let veths: Vec<String> = c.endpoints.iter_mut().filter_map(|e| e.host_veth.take()).collect();
            for e in c.endpoints.iter_mut() {
                e.ip = None;
                e.endpoint_id.clear();
            }
            let had = !c.ports.is_empty();
            c.ports.clear();
            c.running = false;
            if save {
                let c = c.clone();
                let _ = self.save_cont(id, &c);
            }
            (veths, had)
        };
        // Deleting a veth waits for the kernel to unregister it (RCU grace periods, ~15 ms,
        // holding the rtnl lock that the next container's network setup needs), and nothing
        // needs it gone at once: the address is free already (no process is left in the
        // container's namespace to use it) and the names are random. The kernel deletes the
        // pair by itself, in the background, when the container's namespace goes (just after
        // this); the pair is deleted here only if it is still there a second later (something
        // kept the namespace alive).
        if !veths.is_empty() {
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_secs(1));
                // A pair the kernel has deleted already is fine to `delete_link`.
                for v in veths {
                    if let Err(e) = network::endpoint::delete_link(&v) {
                        tracing::warn!("{e}");
                    }
                }
            });
        }
        if had_ports && let Err(e) = self.apply_firewall() {
            tracing::warn!("{e}");
        }
    }

    /// After a daemon restart: hold the running containers' ports again, reopen their DNS
    /// servers, reload the firewall. Containers not in `running` lose their addresses.
    pub fn restore(self: &Arc<Self>, running: &[(String, Record)], paths: &Paths) {
        let stale: Vec<String> = {
            let st = self.state();
            st.conts
                .iter()
                .filter(|(id, c)| c.running && !running.iter().any(|(r, _)| r == *id))
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in stale {
            self.teardown(&id);
        }
        for (id, rec) in running {
            let Some(c) = self.cont(id) else { continue };
            if !c.running {
                continue;
            }
            let mut held = Vec::new();
            for p in &c.ports {
                match network::ports::hold(p.host_ip, p.host_port, &p.proto) {
                    Ok((h, _)) => held.push(h),
                    Err(e) => tracing::warn!("container {}: hold published port again: {e}", &id[..12]),
                }
            }
            self.holds.lock().unwrap_or_else(|p| p.into_inner()).insert(id.clone(), held);
            let user_net = {
                let st = self.state();
                c.endpoints.iter().any(|e| st.nets.get(&e.network).is_some_and(|n| !n.is_default()))
            };
            if user_net {
                match network::endpoint::dns_sockets(&paths.netns(id)) {
                    Ok(s) => self.serve_dns(id, s, rec),
                    Err(e) => tracing::warn!("container {}: reopen DNS server: {e}", &id[..12]),
                }
            }
        }
        if let Err(e) = self.apply_firewall() {
            tracing::error!("{e}");
        }
    }

    fn serve_dns(self: &Arc<Self>, id: &str, s: network::endpoint::DnsSockets, rec: &Record) {
        let upstream = etc::upstream(&rec.host_config, &self.settings.dns);
        let tasks = dns::serve(self.clone(), id.to_owned(), s, upstream, &self.rt);
        if let Some(old) = self.dns.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_owned(), tasks) {
            for t in old {
                t.abort();
            }
        }
    }

    /// The addresses `name` stands for, seen from container `cid`: the names, short ids and
    /// aliases of running containers on the user networks it shares with them, and its links.
    pub fn resolve(&self, cid: &str, name: &str) -> Option<Vec<Ipv4Addr>> {
        let st = self.state();
        let me = st.conts.get(cid)?;
        let mut out = Vec::new();
        for ep in me.endpoints.iter().filter(|e| e.ip.is_some()) {
            let Some(n) = st.nets.get(&ep.network) else { continue };
            if n.is_default() {
                continue;
            }
            // `name.network` also names a container on that network.
            let short = name.strip_suffix(&format!(".{}", n.name)).unwrap_or(name);
            let mut wanted = vec![short.to_owned()];
            for l in &ep.links {
                let (target, alias) = l.split_once(':').unwrap_or((l, l));
                if alias.trim_start_matches('/') == short {
                    wanted.push(target.trim_start_matches('/').to_owned());
                }
            }
            for (oid, o) in st.conts.iter().filter(|(_, o)| o.running) {
                for oep in o.endpoints.iter().filter(|e| e.network == ep.network) {
                    let Some(ip) = oep.ip else { continue };
                    let hit = wanted.iter().any(|w| {
                        o.name.eq_ignore_ascii_case(w)
                            || oep.aliases.iter().any(|a| a.eq_ignore_ascii_case(w))
                            || (w.len() == 12 && oid.starts_with(w.as_str()))
                    });
                    if hit && !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
        }
        if out.is_empty() { None } else { Some(out) }
    }

    /// Whether every network of the container is internal (then names outside are not forwarded).
    pub fn internal_only(&self, cid: &str) -> bool {
        let st = self.state();
        st.conts
            .get(cid)
            .is_some_and(|c| c.endpoints.iter().all(|e| st.nets.get(&e.network).is_some_and(|n| n.internal)))
    }

    /// `NetworkSettings` of a container's inspect, as Docker fills it.
    pub fn settings_json(&self, rec: &Record, netns: &Path, live: bool) -> Value {
        let st = self.state();
        let c = st.conts.get(&rec.id);
        let mode = rec.host_config.network_mode.as_str();
        let mut networks = serde_json::Map::new();
        let mut top = json!({
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "Ports": {},
            "HairpinMode": false, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null, "EndpointID": "",
            "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
        });
        if live && mode != "host" {
            top["SandboxKey"] = json!(netns);
            top["SandboxID"] = json!(rec.id.clone());
        }
        let blank = |nid: &str| {
            json!({
                "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null,
                "NetworkID": nid, "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null,
            })
        };
        if mode == "host" || mode == "none" {
            let nid = st.nets.values().find(|n| n.name == mode).map(|n| n.id.clone()).unwrap_or_default();
            networks.insert(mode.to_owned(), blank(&nid));
        }
        if let Some(c) = c {
            for ep in &c.endpoints {
                let Some(n) = st.nets.get(&ep.network) else { continue };
                let mut v = blank(&n.id);
                if !ep.aliases.is_empty() {
                    v["Aliases"] = json!(ep.aliases);
                }
                if !ep.links.is_empty() {
                    v["Links"] = json!(ep.links);
                }
                if let Some(r) = ep.requested_ip {
                    v["IPAMConfig"] = json!({"IPv4Address": r.to_string()});
                }
                if let (Some(ip), true) = (ep.ip, live) {
                    let prefix = n.subnet().map(|s| s.prefix).unwrap_or(0);
                    let gw = n.gw().map(|g| g.to_string()).unwrap_or_default();
                    v["IPAddress"] = json!(ip.to_string());
                    v["IPPrefixLen"] = json!(prefix);
                    v["Gateway"] = json!(gw);
                    v["MacAddress"] = json!(mac_string(mac_for(ip)));
                    v["EndpointID"] = json!(ep.endpoint_id);
                    if !n.is_default() {
                        let mut names = vec![c.name.clone(), rec.id[..12].to_owned()];
                        names.extend(ep.aliases.iter().cloned());
                        v["DNSNames"] = json!(names);
                    }
                    if n.is_default() {
                        for k in ["IPAddress", "IPPrefixLen", "Gateway", "MacAddress", "EndpointID"] {
                            top[k] = v[k].clone();
                        }
                    }
                }
                networks.insert(n.name.clone(), v);
            }
        }
        top["Networks"] = Value::Object(networks);
        top["Ports"] = ports::inspect_ports(rec, c.map(|c| c.ports.as_slice()).unwrap_or(&[]), live);
        top
    }

    /// The `Ports` of a `GET /containers/json` row.
    pub fn summary_ports(&self, rec: &Record, live: bool) -> Vec<Value> {
        let st = self.state();
        let maps = st.conts.get(&rec.id).map(|c| c.ports.clone()).unwrap_or_default();
        ports::summary_ports(rec, &maps, live)
    }

    /// `NetworkSettings.Networks` of a `GET /containers/json` row.
    pub fn summary_networks(&self, rec: &Record, live: bool) -> Value {
        let v = self.settings_json(rec, Path::new(""), live);
        json!({"Networks": v["Networks"]})
    }

    /// The running containers with an address on a network: (id, name, endpoint).
    pub fn members(&self, net: &str) -> Vec<(String, String, Endpoint)> {
        let st = self.state();
        let mut v: Vec<(String, String, Endpoint)> = st
            .conts
            .iter()
            .filter(|(_, c)| c.running)
            .flat_map(|(id, c)| {
                c.endpoints
                    .iter()
                    .filter(|e| e.network == net && e.ip.is_some())
                    .map(|e| (id.clone(), c.name.clone(), e.clone()))
            })
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }
}

impl crate::engine::Engine {
    /// Checks a create request's network mode and endpoints.
    pub(crate) fn net_plan(&self, host: &::api::types::HostConfig, netcfg: Option<&Value>) -> Result<ContNet> {
        if let Some(x) = host.network_mode.strip_prefix("container:")
            && !x.is_empty()
        {
            self.lookup(x)?;
        }
        for l in &host.links {
            let target = l.split_once(':').map(|(t, _)| t).unwrap_or(l).trim_start_matches('/');
            self.lookup(target)
                .map_err(|_| EngineError::BadRequest(format!("could not get container for {target}")))?;
        }
        self.net.plan(host, netcfg)
    }

    /// What a start needs from other containers: the one whose namespace `container:` joins,
    /// and the `--link` targets.
    pub(crate) fn net_inputs(&self, rec: &Record) -> Result<(Option<String>, Vec<LinkTarget>)> {
        let joined = match rec.host_config.network_mode.strip_prefix("container:") {
            Some(x) => {
                let o = self.lookup(x)?;
                if !o.status().is_live() {
                    return Err(EngineError::Conflict(format!(
                        "cannot join network namespace of a non running container: {x}"
                    )));
                }
                if o.id == rec.id {
                    return Err(EngineError::BadRequest("cannot join own network namespace".into()));
                }
                Some(o.id.clone())
            }
            None => None,
        };
        let mut links = Vec::new();
        for l in &rec.host_config.links {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let target = target.trim_start_matches('/');
            let alias = alias.rsplit('/').next().unwrap_or(alias);
            let o = self.lookup(target)?;
            let r = o.snapshot();
            if !o.status().is_live() {
                return Err(EngineError::Conflict(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    r.state.name, rec.state.name
                )));
            }
            let mut exposed: Vec<String> = r.config.exposed_ports.iter().flat_map(|m| m.keys().cloned()).collect();
            exposed.extend(r.host_config.port_bindings.keys().cloned());
            links.push(LinkTarget {
                id: r.id.clone(),
                name: r.state.name.clone(),
                alias: alias.to_owned(),
                env: r.config.env.clone(),
                exposed,
            });
        }
        Ok((joined, links))
    }
}
