//! End-to-end tests of networking: the default bridge with published ports, user networks with
//! the embedded DNS server, `--internal`, links, the `/networks` API through `berth` and the
//! real `docker` CLI, bad input, and that nothing is left behind.
//!
//! Traffic goes only between the host and the containers these tests make: to 127.0.0.1, the
//! host's own address, the test bridges' addresses and the containers' addresses. Each daemon
//! has its own default bridge and firewall table (see `Daemon::bridge`), and each test its own
//! user subnets (10.231.N.0/24), so tests run in parallel.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;

use common::{Daemon, can_run, eventually, stderr, stdout};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// The host's own (first global) IPv4 address.
fn host_addr() -> Option<Ipv4Addr> {
    let o = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().ok()?;
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| !l.contains(" bt") && !l.contains(" br-"))
        .find_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
}

/// `wget` from the host, with a time limit (busybox's own -T is not used: it crashes in 1.35).
/// Retried for a while: the server in a container just started may not listen yet.
fn host_wget(url: &str) -> Option<String> {
    for _ in 0..30 {
        let o = Command::new("timeout").args(["10", "busybox", "wget", "-q", "-O", "-", url]).output().ok()?;
        if o.status.success() {
            return Some(String::from_utf8_lossy(&o.stdout).into_owned());
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    None
}

/// Links enslaved to a bridge, and whether the bridge exists.
fn ports_of(bridge: &str) -> (bool, Vec<String>) {
    let exists = Command::new("ip").args(["link", "show", bridge]).output().is_ok_and(|o| o.status.success());
    let o = Command::new("ip").args(["-o", "link", "show", "master", bridge]).output().expect("ip link");
    let names = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|s| s.trim().split('@').next().unwrap_or("").to_owned()))
        .collect();
    (exists, names)
}

fn nft_table(d: &Daemon) -> String {
    let o = Command::new("nft").args(["list", "table", "ip", &d.nft_table()]).output().expect("nft");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A shell `w URL`: wget, retried while the server starts.
const W: &str = "w() { for i in $(seq 30); do wget -q -O - \"$1\" && return 0; sleep 0.1; done; return 1; }; ";

const HTTPD: &str = "mkdir -p /www && echo \"hello from $(hostname)\" > /www/index.html && exec httpd -f -p 80 -h /www";

#[test]
fn root_published_ports_default_bridge_links_and_restart() {
    if !can_run() {
        return;
    }
    let mut d = Daemon::start();
    let br = d.bridge();
    let port = free_port();
    let p = format!("{port}:80");
    let o = d.berth(&["run", "-d", "--name", "web", "--hostname", "webhost", "-p", &p, "busybox", "sh", "-c", HTTPD]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = d.inspect("web");
    let ns = &v["NetworkSettings"];
    let ip = ns["IPAddress"].as_str().unwrap_or("").to_owned();
    assert!(ip.parse::<Ipv4Addr>().is_ok(), "an address on the default bridge: {ns}");
    assert_eq!(ns["Ports"]["80/tcp"][0]["HostPort"], port.to_string(), "{ns}");
    assert!(ns["Networks"]["bridge"]["Gateway"].as_str().is_some_and(|g| !g.is_empty()));
    assert_eq!(ns["MacAddress"].as_str().map(|m| m.starts_with("02:42:")), Some(true));
    assert_eq!(stdout(&d.berth(&["port", "web"])), format!("80/tcp -> 0.0.0.0:{port}\n"));
    assert!(stdout(&d.berth(&["ps"])).contains(&format!("0.0.0.0:{port}->80/tcp")));
    assert_eq!(ports_of(&br).1.len(), 1, "one veth on the bridge");
    // IPv6 is off in a container's namespace, as Docker has it on networks without IPv6: no
    // `::1`, no link-local address on eth0. `--sysctl` turns it back on.
    let v6 = "cat /proc/sys/net/ipv6/conf/all/disable_ipv6 /proc/sys/net/ipv6/conf/default/disable_ipv6; ip addr";
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        for net in ["bridge", "none"] {
            let o = d.berth(&["run", "--rm", "--network", net, "busybox", "sh", "-c", v6]);
            let out = stdout(&o);
            assert!(o.status.success() && out.starts_with("1\n1\n") && !out.contains("inet6"), "{net}: {out}");
        }
        let o = d.berth(&[
            "run",
            "--rm",
            "--sysctl",
            "net.ipv6.conf.all.disable_ipv6=0",
            "busybox",
            "sh",
            "-c",
            "sleep 0.1; ip addr",
        ]);
        assert!(stdout(&o).contains("inet6 ::1/128"), "{}{}", stdout(&o), stderr(&o));
    }
    // From the host: loopback and the host's own address.
    let page = "hello from webhost\n";
    assert_eq!(host_wget(&format!("http://127.0.0.1:{port}/")).as_deref(), Some(page));
    if let Some(h) = host_addr() {
        assert_eq!(host_wget(&format!("http://{h}:{port}/")).as_deref(), Some(page));
    }
    // From another container: by link (hosts entry and variables) and through the published port.
    let gw = ns["Gateway"].as_str().unwrap_or("").to_owned();
    let script = format!(
        "{W}grep -w db /etc/hosts && echo \"$DB_PORT_80_TCP_ADDR $DB_NAME\" && w http://db/ && w http://{gw}:{port}/"
    );
    let o = d.berth(&["run", "--rm", "--link", "web:db", "busybox", "sh", "-c", &script]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out} {}", stderr(&o));
    assert!(out.contains(&format!("{ip}\tdb ")), "{out}");
    assert!(out.contains(&format!("{ip} /")), "{out}");
    assert_eq!(out.matches(page).count(), 2, "{out}");
    // A taken port is refused before the container starts, naming the port.
    let o = d.berth(&["run", "-d", "--name", "twin", "-p", &p, "busybox", "sleep", "30"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains(&format!("{port}")) && stderr(&o).contains("already allocated"), "{}", stderr(&o));
    let held = TcpListener::bind("0.0.0.0:0").expect("bind");
    let taken = held.local_addr().expect("addr").port();
    let o = d.berth(&["run", "-d", "--name", "taken", "-p", &format!("{taken}:80"), "busybox", "sleep", "30"]);
    assert!(stderr(&o).contains(&format!("0.0.0.0:{taken}")) && stderr(&o).contains("address already in use"));
    assert_eq!(d.inspect("taken")["State"]["Running"], false);
    assert!(eventually(|| ports_of(&br).1.len() == 1), "the failed start left a veth: {:?}", ports_of(&br).1);
    drop(held);
    // A start that fails on the rootfs side (no such user) while its network, made beside it,
    // was set up: the veth and the address go too.
    let o = d.berth(&["run", "-d", "--name", "nouser", "-u", "nosuchuser", "busybox", "sleep", "30"]);
    assert!(!o.status.success() && stderr(&o).contains("nosuchuser"), "{}", stderr(&o));
    assert!(eventually(|| ports_of(&br).1.len() == 1), "the failed start left a veth: {:?}", ports_of(&br).1);
    assert_eq!(d.inspect("nouser")["NetworkSettings"]["IPAddress"], "");
    // The rules come back after a daemon restart.
    d.kill9();
    d.spawn();
    assert_eq!(host_wget(&format!("http://127.0.0.1:{port}/")).as_deref(), Some(page), "{}", d.log());
    // And go when the container stops.
    assert!(d.berth(&["stop", "-t", "1", "web"]).status.success());
    assert!(!nft_table(&d).contains("dnat to"), "{}", nft_table(&d));
    assert!(eventually(|| ports_of(&br).1.is_empty()), "veths left: {:?}", ports_of(&br).1);
    assert!(TcpListener::bind(("0.0.0.0", port)).is_ok(), "the host port is free again");
    assert_eq!(d.inspect("web")["NetworkSettings"]["IPAddress"], "");
    // -P: every exposed port onto a free high port.
    let o = d.berth(&["run", "-d", "--name", "all", "-P", "--expose", "80", "busybox", "sh", "-c", HTTPD]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&d.berth(&["port", "all", "80"]));
    let got: u16 = out.trim().rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port");
    assert!(got >= 1024, "{out}");
    assert!(host_wget(&format!("http://127.0.0.1:{got}/")).is_some_and(|s| s.starts_with("hello from")));
    assert!(d.berth(&["rm", "-f", "web", "all", "taken"]).status.success());
    assert!(!nft_table(&d).contains("dnat to"));
    assert!(ports_of(&br).1.is_empty());
}

#[test]
fn root_user_networks_dns_internal_and_cleanup() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let o = d.berth(&["network", "create", "--subnet", "10.231.1.0/24", "--label", "team=net", "appnet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&d.berth(&["network", "inspect", "appnet"]).stdout).expect("json");
    let bridge = format!("br-{}", &v[0]["Id"].as_str().unwrap_or("")[..12]);
    assert_eq!(v[0]["IPAM"]["Config"][0]["Subnet"], "10.231.1.0/24");
    assert_eq!(v[0]["Labels"]["team"], "net");
    assert!(ports_of(&bridge).0, "network create made the bridge");
    let o = d.berth(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "appnet",
        "--network-alias",
        "www",
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // By name and alias through the embedded DNS server; --ip, --hostname, --add-host, --dns-search.
    let script = format!(
        "{W}cat /etc/resolv.conf; w http://srv/ && w http://www/ && ip -4 addr show eth0 && cat /etc/hosts && nslookup srv.appnet 127.0.0.11"
    );
    let o = d.berth(&[
        "run",
        "--rm",
        "--network",
        "appnet",
        "--ip",
        "10.231.1.77",
        "--hostname",
        "client",
        "--add-host",
        "extra.test:10.9.9.9",
        "--dns-search",
        "corp.test",
        "busybox",
        "sh",
        "-c",
        &script,
    ]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out} {}", stderr(&o));
    assert!(out.contains("nameserver 127.0.0.11") && out.contains("search corp.test"), "{out}");
    assert_eq!(out.matches("hello from").count(), 2, "{out}");
    assert!(out.contains("inet 10.231.1.77/24"), "{out}");
    assert!(out.contains("10.9.9.9\textra.test") && out.contains("10.231.1.77\tclient"), "{out}");
    assert!(out.contains("Address: 10.231.1.2"), "{out}");
    let ns = &d.inspect("srv")["NetworkSettings"]["Networks"]["appnet"];
    assert_eq!(ns["IPAddress"], "10.231.1.2", "{ns}");
    assert_eq!(ns["Aliases"][0], "www");
    // A network in use cannot be removed.
    let (status, body) = d.http("DELETE", "/networks/appnet", None).expect("http");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("appnet") && body.contains("active endpoints"), "{body}");
    // An internal network has no way out: not to the host (gateway, own address), not to
    // another network's published port, while a normal user network reaches that port.
    let port = free_port();
    let o = d.berth(&["run", "-d", "--name", "pub", "-p", &format!("{port}:80"), "busybox", "sh", "-c", HTTPD]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.berth(&["network", "create", "--internal", "--subnet", "10.231.2.0/24", "closed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let via_gw = |net: &str, gw: &str| {
        let script = format!("wget -q -O - http://{gw}:{port}/ & p=$!; sleep 3; kill $p 2>/dev/null; wait $p");
        stdout(&d.berth(&["run", "--rm", "--network", net, "busybox", "sh", "-c", &script]))
    };
    assert!(via_gw("appnet", "10.231.1.1").contains("hello from"), "a user network reaches a published port");
    assert!(!via_gw("closed", "10.231.2.1").contains("hello"), "the internal network does not");
    if let Some(h) = host_addr() {
        assert!(!via_gw("closed", &h.to_string()).contains("hello"));
    }
    let o = d.berth(&["run", "--rm", "--network", "closed", "busybox", "ip", "route"]);
    assert!(!stdout(&o).contains("default"), "no default route: {}", stdout(&o));
    // Connect and disconnect a running container.
    let o = d.berth(&["network", "connect", "closed", "srv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d.berth(&["exec", "srv", "ip", "-4", "addr", "show", "eth1"]);
    assert!(stdout(&o).contains("10.231.2."), "{}", stdout(&o));
    assert!(d.berth(&["network", "disconnect", "closed", "srv"]).status.success());
    assert!(!d.berth(&["exec", "srv", "ip", "addr", "show", "eth1"]).status.success());
    // Everything goes: no veth, bridge, address or rule is left.
    assert!(d.berth(&["rm", "-f", "srv", "pub"]).status.success());
    let o = d.berth(&["network", "rm", "appnet", "closed"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!ports_of(&bridge).0, "bridge {bridge} left");
    assert!(eventually(|| ports_of(&d.bridge()).1.is_empty()), "{:?}", ports_of(&d.bridge()).1);
    let addrs =
        String::from_utf8_lossy(&Command::new("ip").args(["-4", "addr"]).output().expect("ip").stdout).into_owned();
    assert!(!addrs.contains("10.231.1.") && !addrs.contains("10.231.2."), "{addrs}");
    let t = nft_table(&d);
    assert!(!t.contains("10.231.") && !t.contains("dnat to"), "{t}");
    assert_eq!(stdout(&d.berth(&["network", "ls", "-q"])).lines().count(), 3, "bridge, host, none");
}

#[test]
fn root_bad_network_input_is_refused_whole() {
    if !can_run() {
        return;
    }
    let d = Daemon::start();
    let before = stdout(&d.berth(&["network", "ls", "-q"]));
    let body = r#"{"Name":"n1","IPAM":{"Config":[{"Subnet":"10.231.3.0/24"}]}}"#;
    assert_eq!(d.http("POST", "/networks/create", Some(body)).expect("http").0, 201);
    // An overlapping subnet: 409 naming both.
    let (s, b) = d
        .http("POST", "/networks/create", Some(r#"{"Name":"n2","IPAM":{"Config":[{"Subnet":"10.231.3.128/25"}]}}"#))
        .expect("http");
    assert_eq!(s, 409, "{b}");
    assert!(b.contains("10.231.3.128/25") && b.contains("n1"), "{b}");
    // A duplicate name, a bad subnet, a gateway outside its subnet: refused, nothing made.
    assert_eq!(d.http("POST", "/networks/create", Some(body)).expect("http").0, 409);
    let (s, b) = d
        .http("POST", "/networks/create", Some(r#"{"Name":"n3","IPAM":{"Config":[{"Subnet":"10.231.300.0/24"}]}}"#))
        .expect("http");
    assert_eq!(s, 400, "{b}");
    let (s, b) = d
        .http(
            "POST",
            "/networks/create",
            Some(r#"{"Name":"n4","IPAM":{"Config":[{"Subnet":"10.231.4.0/24","Gateway":"10.231.5.1"}]}}"#),
        )
        .expect("http");
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("10.231.5.1"), "{b}");
    let o = d.berth(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(stdout(&o).lines().filter(|l| l.starts_with('n')).collect::<Vec<_>>(), ["n1", "none"]);
    // An unknown network: 404 naming it, and no container is created.
    let (s, b) = d
        .http("POST", "/containers/create", Some(r#"{"Image":"busybox","HostConfig":{"NetworkMode":"nope"}}"#))
        .expect("http");
    assert_eq!(s, 404, "{b}");
    assert!(b.contains("network nope not found"), "{b}");
    assert_eq!(d.http("GET", "/networks/nope", None).expect("http").0, 404);
    // Malformed port specs: 400 from the API, a clear message from the CLI.
    let (s, b) = d
        .http(
            "POST",
            "/containers/create",
            Some(r#"{"Image":"busybox","HostConfig":{"PortBindings":{"80/tcp":[{"HostPort":"eighty"}]}}}"#),
        )
        .expect("http");
    assert_eq!(s, 400, "{b}");
    assert!(b.contains("eighty"), "{b}");
    let (s, b) = d
        .http("POST", "/containers/create", Some(r#"{"Image":"busybox","HostConfig":{"PortBindings":{"80/icmp":[]}}}"#))
        .expect("http");
    assert_eq!(s, 400, "{b}");
    let o = d.berth(&["run", "--rm", "-p", "8080:http", "busybox", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("invalid containerPort: http"), "{}", stderr(&o));
    // Aliases and --ip need a user network with its own subnet.
    let o = d.berth(&["create", "--ip", "172.17.0.50", "busybox"]);
    assert!(!o.status.success() && stderr(&o).contains("user configured subnets"), "{}", stderr(&o));
    assert_eq!(stdout(&d.berth(&["ps", "-aq"])), "", "no container was made");
    // The predefined networks stay.
    assert_eq!(d.http("DELETE", "/networks/bridge", None).expect("http").0, 403);
    // docker-py sends null for what it leaves unset.
    let body = r#"{"Name":"n5","Driver":null,"Internal":null,"IPAM":{"Driver":null,"Config":[{"Subnet":"10.231.7.0/24","Gateway":null,"IPRange":null}]},"Options":null,"Labels":null}"#;
    let (s, b) = d.http("POST", "/networks/create", Some(body)).expect("http");
    assert_eq!(s, 201, "{b}");
    assert!(d.berth(&["network", "rm", "n1", "n5"]).status.success());
    assert_eq!(stdout(&d.berth(&["network", "ls", "-q"])), before);
}

#[test]
fn root_docker_cli_manages_networks_and_ports() {
    if !can_run() || common::docker_cli().is_none() {
        return;
    }
    let d = Daemon::start();
    let dk = |args: &[&str]| d.docker(args).expect("docker");
    // The docker CLI names the default network `default` in EndpointsConfig: that is the
    // default bridge, not an unknown network (a 404 here made the CLI try to pull).
    let o = dk(&["run", "--rm", "busybox", "ip", "-4", "route"]);
    assert!(o.status.success() && stdout(&o).contains("default via"), "{} {}", stdout(&o), stderr(&o));
    let o = dk(&["network", "create", "--subnet", "10.231.6.0/24", "--gateway", "10.231.6.254", "dnet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dk(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"]);
    assert!(stdout(&o).contains("dnet bridge") && stdout(&o).contains("bridge bridge"), "{}", stdout(&o));
    let o = dk(&["network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", "dnet"]);
    assert_eq!(stdout(&o).trim(), "10.231.6.0/24 10.231.6.254", "{}", stderr(&o));
    let port = free_port();
    let o = dk(&[
        "run",
        "-d",
        "--name",
        "dweb",
        "--network",
        "dnet",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "busybox",
        "sh",
        "-c",
        HTTPD,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = dk(&["port", "dweb"]);
    assert_eq!(stdout(&o).trim(), format!("80/tcp -> 127.0.0.1:{port}"), "{}", stderr(&o));
    assert!(host_wget(&format!("http://127.0.0.1:{port}/")).is_some_and(|s| s.starts_with("hello from")));
    let o = dk(&["inspect", "-f", "{{.NetworkSettings.Networks.dnet.IPAddress}}", "dweb"]);
    assert_eq!(stdout(&o).trim(), "10.231.6.1", "{}", stderr(&o));
    let o = dk(&["network", "rm", "dnet"]);
    assert!(!o.status.success() && stderr(&o).contains("active endpoints"), "{}", stderr(&o));
    assert!(dk(&["rm", "-f", "dweb"]).status.success());
    let o = dk(&["network", "rm", "dnet"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!nft_table(&d).contains("10.231.6."));
}
