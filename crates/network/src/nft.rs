//! The daemon's firewall: one nftables table (`ip berth` by default) holding every rule berth
//! needs, re-rendered whole and loaded with `nft -f -` as one atomic transaction. Nothing of
//! berth lives in other tables, so removing the table removes every rule exactly, and a daemon
//! restart simply renders it again from the state it keeps.
//!
//! What the table does, per bridge network:
//! - masquerade traffic leaving the subnet for anywhere but its own bridge (not for `--internal`);
//! - published ports: DNAT of packets addressed to a local address (`fib daddr type local`), in
//!   prerouting (from outside and from containers) and in output (from the host itself, including
//!   127.0.0.1, which needs `route_localnet` on the bridge and a masquerade of the loopback source);
//! - hairpin: a container reaching a published port of its own network is masqueraded, so the
//!   reply comes back through the host;
//! - isolation: no forwarding between two networks (except to a published port), and nothing
//!   in or out of an internal network but its own subnet, and nothing from it to the host;
//! - packets for 127.0.0.0/8 arriving from a bridge are dropped (route_localnet would otherwise
//!   let containers reach services bound to the host's loopback; see CVE-2020-8558).

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use crate::subnet::Subnet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Subnet,
    pub gateway: Ipv4Addr,
    pub internal: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// The host address the port is published on; None for all.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub proto: String,
    pub container_ip: Ipv4Addr,
    pub container_port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub table: String,
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortRule>,
}

fn q(s: &str) -> String {
    format!("\"{}\"", s.replace('"', ""))
}

impl Ruleset {
    /// The nft script: create-then-delete the table (so the delete never fails), then the
    /// whole table, all in one transaction.
    pub fn render(&self) -> String {
        let t = &self.table;
        let mut s = format!("table ip {t}\ndelete table ip {t}\ntable ip {t} {{\n");
        s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    fib daddr type local jump ports\n  }\n");
        s.push_str("  chain output {\n    type nat hook output priority -100; policy accept;\n    fib daddr type local jump ports\n  }\n");
        s.push_str("  chain ports {\n");
        for p in &self.ports {
            let dst = p.host_ip.map(|ip| format!("ip daddr {ip} ")).unwrap_or_default();
            s.push_str(&format!(
                "    {dst}{proto} dport {} dnat to {}:{}\n",
                p.host_port,
                p.container_ip,
                p.container_port,
                proto = p.proto
            ));
        }
        s.push_str("  }\n");
        s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
        for b in &self.bridges {
            let br = q(&b.bridge);
            if !b.internal {
                s.push_str(&format!("    ip saddr {} oifname != {br} masquerade\n", b.subnet));
            }
            s.push_str(&format!("    oifname {br} ip saddr 127.0.0.0/8 masquerade\n"));
            s.push_str(&format!("    oifname {br} ct status dnat ip saddr {} masquerade\n", b.subnet));
        }
        s.push_str("  }\n");
        s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
        for b in self.bridges.iter().filter(|b| b.internal) {
            let br = q(&b.bridge);
            s.push_str(&format!("    iifname {br} oifname != {br} drop\n"));
            s.push_str(&format!("    oifname {br} iifname != {br} drop\n"));
        }
        // Replies pass; new connections between two networks only to a published port.
        s.push_str("    ct state established,related accept\n");
        for b in self.bridges.iter().filter(|b| !b.internal) {
            let br = q(&b.bridge);
            let others: Vec<String> =
                self.bridges.iter().filter(|o| o.bridge != b.bridge).map(|o| q(&o.bridge)).collect();
            if !others.is_empty() {
                let others = others.join(", ");
                s.push_str(&format!("    iifname {br} oifname {{ {others} }} ct status dnat accept\n"));
                s.push_str(&format!("    iifname {br} oifname {{ {others} }} drop\n"));
            }
            s.push_str(&format!("    iifname {br} accept\n    oifname {br} ct status dnat accept\n"));
        }
        s.push_str("  }\n");
        // Before conntrack: a reply whose masquerade is undone is addressed to 127.0.0.1 later on.
        s.push_str("  chain raw {\n    type filter hook prerouting priority raw; policy accept;\n");
        for b in &self.bridges {
            s.push_str(&format!("    iifname {} ip daddr 127.0.0.0/8 drop\n", q(&b.bridge)));
        }
        s.push_str("  }\n");
        s.push_str("  chain input {\n    type filter hook input priority filter; policy accept;\n");
        for b in &self.bridges {
            let br = q(&b.bridge);
            if b.internal {
                // The host is outside too: nothing from an internal network reaches it.
                s.push_str(&format!("    iifname {br} drop\n"));
            }
        }
        s.push_str("  }\n}\n");
        s
    }

    /// Loads the table, replacing what was there.
    pub fn apply(&self) -> Result<(), String> {
        nft(&self.render())
    }
}

/// Removes a table; a missing one is not an error.
pub fn remove_table(table: &str) -> Result<(), String> {
    nft(&format!("table ip {table}\ndelete table ip {table}\n"))
}

fn nft(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run nft: {e} (berth needs the nftables package)"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(|e| format!("write to nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("wait for nft: {e}"))?;
    if !out.status.success() {
        return Err(format!("nft: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_rules_for_bridges_and_ports() {
        let r = Ruleset {
            table: "berth".into(),
            bridges: vec![
                BridgeRules {
                    bridge: "berth0".into(),
                    subnet: Subnet::parse("172.18.0.0/16").expect("p"),
                    gateway: Ipv4Addr::new(172, 18, 0, 1),
                    internal: false,
                },
                BridgeRules {
                    bridge: "br-1".into(),
                    subnet: Subnet::parse("10.5.0.0/24").expect("p"),
                    gateway: Ipv4Addr::new(10, 5, 0, 1),
                    internal: true,
                },
            ],
            ports: vec![PortRule {
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 8080,
                proto: "tcp".into(),
                container_ip: Ipv4Addr::new(172, 18, 0, 2),
                container_port: 80,
            }],
        };
        let s = r.render();
        assert!(s.starts_with("table ip berth\ndelete table ip berth\n"));
        assert!(s.contains("ip daddr 127.0.0.1 tcp dport 8080 dnat to 172.18.0.2:80"));
        assert!(s.contains("ip saddr 172.18.0.0/16 oifname != \"berth0\" masquerade"));
        assert!(!s.contains("ip saddr 10.5.0.0/24 oifname != \"br-1\" masquerade"), "internal: no way out");
        assert!(s.contains("iifname \"br-1\" oifname != \"br-1\" drop"));
        assert!(s.contains("iifname \"berth0\" oifname { \"br-1\" } drop"));
    }
}
