//! IPv4 subnets: parsing, overlap, the host's routes, and picking a free subnet from
//! Docker's default address pools.

use std::net::Ipv4Addr;

/// An IPv4 network `addr/prefix` with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Subnet {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(prefix)) }
}

impl Subnet {
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Subnet {
        Subnet { addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)), prefix }
    }

    /// Parses `a.b.c.d/n` (host bits are cleared, as Docker does).
    pub fn parse(s: &str) -> Result<Subnet, String> {
        let (a, p) = s.split_once('/').ok_or_else(|| format!("invalid subnet {s}: expected ADDRESS/PREFIX"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| format!("invalid subnet {s}: `{a}` is not an IPv4 address"))?;
        let prefix: u8 =
            p.parse().ok().filter(|p| *p <= 32).ok_or_else(|| format!("invalid subnet {s}: bad prefix"))?;
        Ok(Subnet::new(addr, prefix))
    }

    /// Parses `a.b.c.d/n` keeping the address (for `bip`, which names the gateway).
    pub fn parse_cidr(s: &str) -> Result<(Ipv4Addr, Subnet), String> {
        let sub = Subnet::parse(s)?;
        let addr: Ipv4Addr = s.split('/').next().unwrap_or_default().parse().map_err(|_| format!("invalid {s}"))?;
        Ok((addr, sub))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    pub fn overlaps(&self, o: &Subnet) -> bool {
        let p = self.prefix.min(o.prefix);
        u32::from(self.addr) & mask(p) == u32::from(o.addr) & mask(p)
    }

    /// The `n`th address of the subnet (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = self.size();
        if u64::from(n) >= size {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.addr) + n))
    }

    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    /// Usable host addresses: all but the network and broadcast addresses.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let first = u32::from(self.addr);
        let last = u32::from(self.broadcast());
        (first.saturating_add(1)..last).map(Ipv4Addr::from)
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The IPv4 destinations routed on this host (`/proc/net/route`), default route excluded.
pub fn host_routes() -> Vec<Subnet> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let m = u32::from_str_radix(f.get(7)?, 16).ok()?;
            if m == 0 {
                return None;
            }
            // The kernel prints the address as a native-endian u32 of network-order bytes.
            let addr = Ipv4Addr::from(dst.to_ne_bytes());
            let prefix = m.count_ones() as u8;
            Some(Subnet::new(addr, prefix))
        })
        .collect()
}

/// An address pool in daemon.json's `default-address-pools`: subnets of `size` bits cut from `base`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub base: Subnet,
    pub size: u8,
}

/// Docker's default pools: 172.17-31.0.0/16, then 192.168.0.0/16 in /20s.
pub fn default_pools() -> Vec<Pool> {
    let mut v: Vec<Pool> =
        (17..=31).map(|b| Pool { base: Subnet::new(Ipv4Addr::new(172, b, 0, 0), 16), size: 16 }).collect();
    v.push(Pool { base: Subnet::new(Ipv4Addr::new(192, 168, 0, 0), 16), size: 20 });
    v
}

/// The first subnet from `pools` that overlaps nothing in `taken`.
pub fn pick(pools: &[Pool], taken: &[Subnet]) -> Option<Subnet> {
    for p in pools {
        let size = p.size.max(p.base.prefix);
        let count = 1u64 << (size - p.base.prefix);
        for i in 0..count.min(1 << 16) {
            let addr = u32::from(p.base.addr) + (i as u32) * (1u64 << (32 - u32::from(size))) as u32;
            let s = Subnet::new(Ipv4Addr::from(addr), size);
            if !taken.iter().any(|t| t.overlaps(&s)) {
                return Some(s);
            }
        }
    }
    None
}

/// Docker's MAC for an address: 02:42 and the four bytes of the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn mac_string(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_parse_overlap_and_pick() {
        let a = Subnet::parse("172.18.5.1/16").expect("parse");
        assert_eq!(a.to_string(), "172.18.0.0/16");
        assert!(a.contains(Ipv4Addr::new(172, 18, 200, 1)));
        assert!(!a.contains(Ipv4Addr::new(172, 19, 0, 1)));
        let b = Subnet::parse("172.18.3.0/24").expect("parse");
        assert!(a.overlaps(&b) && b.overlaps(&a));
        assert!(!b.overlaps(&Subnet::parse("172.18.4.0/24").expect("parse")));
        assert!(Subnet::parse("1.2.3/8").is_err());
        assert!(Subnet::parse("1.2.3.4/33").is_err());
        assert_eq!(a.hosts().next(), Some(Ipv4Addr::new(172, 18, 0, 1)));
        let pools = default_pools();
        let taken = [Subnet::parse("172.17.0.0/16").expect("p"), Subnet::parse("172.19.1.0/24").expect("p")];
        assert_eq!(pick(&pools, &taken).map(|s| s.to_string()), Some("172.18.0.0/16".into()));
        let pools = [Pool { base: Subnet::parse("10.9.0.0/16").expect("p"), size: 24 }];
        let taken = [Subnet::parse("10.9.0.0/24").expect("p")];
        assert_eq!(pick(&pools, &taken).map(|s| s.to_string()), Some("10.9.1.0/24".into()));
        assert_eq!(mac_string(mac_for(Ipv4Addr::new(172, 17, 0, 2))), "02:42:ac:11:00:02");
    }

    #[test]
    fn reads_host_routes() {
        // Whatever the host has, each route parses into a subnet with its bits cleared.
        for r in host_routes() {
            assert_eq!(Subnet::new(r.addr, r.prefix), r);
        }
    }
}
