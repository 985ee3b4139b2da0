//! One function per verb.

use std::collections::BTreeMap;

use api::client::{Client, ClientError, reader_body};
use api::types::{
    ContainerConfig, ContainerInspect, ContainerSummary, CreateResponse, DeleteItem, ExecConfig, ExecInspect,
    ExecStart, HistoryItem, HostConfig, IdResponse, ImageSummary, TopResponse, WaitResponse,
};
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::fmt::{ago, ellipsis, human_size, short_id, table, template};
use crate::stream::{RawTerminal, pump, stdin_is_tty, terminal_size};
use crate::{Command, ExecArgs, ImagesArgs, LogsArgs, PsArgs, RunArgs};

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

pub(crate) fn report(e: &ClientError) {
    match e {
        ClientError::Status { message, .. } => eprintln!("Error response from daemon: {message}"),
        other => eprintln!("{other}"),
    }
}

/// Runs `f` for each name, printing errors as docker does; 1 if any failed.
async fn each<F, Fut>(names: &[String], f: F) -> i32
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), ClientError>>,
{
    let mut code = 0;
    for n in names {
        if let Err(e) = f(n.clone()).await {
            report(&e);
            code = 1;
        }
    }
    code
}

pub async fn dispatch(c: &Client, cmd: Command) -> i32 {
    match cmd {
        Command::Run(a) => run(c, a, true).await,
        Command::Pull(a) => crate::distribution::pull(c, a).await,
        Command::Push(a) => crate::distribution::push(c, a).await,
        Command::Login(a) => crate::distribution::login(c, a).await,
        Command::Logout { server } => crate::distribution::logout(server).await,
        Command::Create(a) => run(c, a, false).await,
        Command::Start(a) => {
            if a.attach || a.interactive {
                let name = a.names[0].clone();
                return start_attached(c, &name, a.interactive).await;
            }
            each(&a.names, |n| async move {
                c.post_raw::<()>(&format!("/containers/{}/start", enc(&n)), None).await?;
                println!("{n}");
                Ok(())
            })
            .await
        }
        Command::Stop(a) => stop_like(c, "stop", a).await,
        Command::Restart(a) => stop_like(c, "restart", a).await,
        Command::Kill(a) => {
            let sig = a.signal.clone();
            each(&a.names, |n| {
                let sig = sig.clone();
                async move {
                    c.post_raw::<()>(&format!("/containers/{}/kill?signal={}", enc(&n), enc(&sig)), None).await?;
                    println!("{n}");
                    Ok(())
                }
            })
            .await
        }
        Command::Rm(a) => {
            let (force, v) = (a.force, a.volumes);
            each(&a.names, |n| async move {
                c.delete(&format!("/containers/{}?force={}&v={}", enc(&n), force, v)).await?;
                println!("{n}");
                Ok(())
            })
            .await
        }
        Command::Ps(a) => ps(c, a).await,
        Command::Logs(a) => logs(c, a).await,
        Command::Exec(a) => exec(c, a).await,
        Command::Inspect(a) => inspect(c, a.names, a.format, a.kind).await,
        Command::Wait(a) => {
            each(&a.names, |n| async move {
                let w: WaitResponse = c.post::<(), _>(&format!("/containers/{}/wait", enc(&n)), None).await?;
                println!("{}", w.status_code);
                Ok(())
            })
            .await
        }
        Command::Top(a) => {
            let q =
                if a.ps_args.is_empty() { String::new() } else { format!("?ps_args={}", enc(&a.ps_args.join(" "))) };
            match c.get::<TopResponse>(&format!("/containers/{}/top{q}", enc(&a.container))).await {
                Ok(t) => {
                    let titles: Vec<&str> = t.titles.iter().map(String::as_str).collect();
                    print!("{}", table(&titles, &t.processes));
                    0
                }
                Err(e) => {
                    report(&e);
                    1
                }
            }
        }
        Command::Rename { container, new_name } => {
            match c
                .post_raw::<()>(&format!("/containers/{}/rename?name={}", enc(&container), enc(&new_name)), None)
                .await
            {
                Ok(_) => 0,
                Err(e) => {
                    report(&e);
                    1
                }
            }
        }
        Command::Pause(a) => simple_post(c, &a.names, "pause").await,
        Command::Unpause(a) => simple_post(c, &a.names, "unpause").await,
        Command::Import(a) => import(c, a).await,
        Command::Stats(a) => stats(c, a).await,
        Command::Events(a) => crate::events::events(c, a).await,
        Command::Update(a) => update(c, a).await,
        Command::Images(a) => images(c, a).await,
        Command::Rmi(a) => {
            let force = a.force;
            each(&a.images, |n| async move {
                let resp = c.delete(&format!("/images/{n}?force={force}")).await?;
                let items: Vec<DeleteItem> = api::client::decode(resp).await?;
                for i in items {
                    if let Some(u) = i.untagged {
                        println!("Untagged: {u}");
                    }
                    if let Some(d) = i.deleted {
                        println!("Deleted: {d}");
                    }
                }
                Ok(())
            })
            .await
        }
        Command::Tag { source, target } => {
            let (repo, tag) = split_tag(&target);
            let q = format!("repo={}{}", enc(&repo), tag.map(|t| format!("&tag={}", enc(&t))).unwrap_or_default());
            match c.post_raw::<()>(&format!("/images/{source}/tag?{q}"), None).await {
                Ok(_) => 0,
                Err(e) => {
                    report(&e);
                    1
                }
            }
        }
        Command::History(a) => history(c, a).await,
        Command::Build(a) => crate::build::build(c, a).await,
        Command::Commit(a) => crate::build::commit(c, a).await,
        Command::Diff { container } => crate::build::diff(c, &container).await,
        Command::Network(n) => crate::network::network(c, n).await,
        Command::Port(a) => crate::network::port(c, a).await,
        Command::Volume(v) => crate::volume::run(c, v).await,
        Command::Cp(a) => crate::files::cp(c, a).await,
        Command::Save(a) => crate::files::save(c, a).await,
        Command::Load(a) => crate::files::load(c, a).await,
        Command::Export(a) => crate::files::export(c, a).await,
        Command::System(s) => crate::disk::system(c, s).await,
        Command::Image(crate::disk::PruneOnly::Prune(a)) => crate::disk::prune(c, "image", a).await,
        Command::Container(crate::disk::PruneOnly::Prune(a)) => crate::disk::prune(c, "container", a).await,
        Command::Builder(crate::disk::PruneOnly::Prune(a)) => crate::disk::prune(c, "builder", a).await,
        Command::Version => version(c).await,
        Command::Info => info(c).await,
        Command::Daemon => {
            eprintln!("`berth daemon` is handled by the berth binary");
            1
        }
    }
}

async fn simple_post(c: &Client, names: &[String], verb: &str) -> i32 {
    each(names, |n| async move {
        c.post_raw::<()>(&format!("/containers/{}/{verb}", enc(&n)), None).await?;
        println!("{n}");
        Ok(())
    })
    .await
}

async fn stop_like(c: &Client, verb: &str, a: crate::StopArgs) -> i32 {
    let mut q = Vec::new();
    if let Some(t) = a.time {
        q.push(format!("t={t}"));
    }
    if let Some(s) = &a.signal {
        q.push(format!("signal={}", enc(s)));
    }
    let q = if q.is_empty() { String::new() } else { format!("?{}", q.join("&")) };
    each(&a.names, |n| {
        let q = q.clone();
        async move {
            c.post_raw::<()>(&format!("/containers/{}/{verb}{q}", enc(&n)), None).await?;
            println!("{n}");
            Ok(())
        }
    })
    .await
}

/// `repo[:tag]`, where a `:` inside a registry host is not a tag.
fn split_tag(s: &str) -> (String, Option<String>) {
    match s.rfind(':') {
        Some(i) if !s[i..].contains('/') => (s[..i].to_owned(), Some(s[i + 1..].to_owned())),
        _ => (s.to_owned(), None),
    }
}

/// Docker's `RAMInBytes`: `64m`, `1g`, `512k`, `100` (bytes).
pub fn parse_bytes(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|x| x.ends_with(['k', 'm', 'g', 't'])).unwrap_or(&t).to_owned();
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t.as_str(), 1),
    };
    num.parse::<f64>().map(|n| (n * mult as f64) as i64).map_err(|_| format!("invalid size: '{s}'"))
}

/// `--memory` and friends, parsed once for `run` and `update`; the names are the API's.
#[derive(Debug, Default, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_swap: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory_reservation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nano_cpus: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_shares: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pids_limit: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpuset_cpus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cpuset_mems: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blkio_weight: Option<u16>,
}

fn resources(r: &crate::ResourceArgs) -> Result<Resources, String> {
    let bytes = |s: &Option<String>| -> Result<Option<i64>, String> {
        match s.as_deref() {
            Some("-1") => Ok(Some(-1)),
            Some(s) => parse_bytes(s).map(Some),
            None => Ok(None),
        }
    };
    Ok(Resources {
        memory: bytes(&r.memory)?,
        memory_swap: bytes(&r.memory_swap)?,
        memory_reservation: bytes(&r.memory_reservation)?,
        nano_cpus: r.cpus.map(|c| (c * 1e9) as i64),
        cpu_shares: r.cpu_shares,
        pids_limit: r.pids_limit,
        cpuset_cpus: r.cpuset_cpus.clone(),
        cpuset_mems: r.cpuset_mems.clone(),
        blkio_weight: r.blkio_weight,
    })
}

fn build_config(a: &RunArgs) -> Result<ContainerConfig, String> {
    let mut env = Vec::new();
    for e in &a.env {
        if e.contains('=') {
            env.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            env.push(format!("{e}={v}"));
        }
    }
    let mut labels = BTreeMap::new();
    for l in &a.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        labels.insert(k.to_owned(), v.to_owned());
    }
    let r = resources(&a.resources)?;
    let console = if a.tty { terminal_size().map(|(h, w)| vec![h, w]) } else { None };
    let mut tmpfs = BTreeMap::new();
    for t in &a.tmpfs {
        let (dst, opts) = t.split_once(':').unwrap_or((t, ""));
        tmpfs.insert(dst.to_owned(), opts.to_owned());
    }
    let mut ulimits = Vec::new();
    for u in &a.ulimit {
        let (name, vals) = u.split_once('=').ok_or_else(|| format!("invalid ulimit argument: {u}"))?;
        let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
        let n = |v: &str| v.parse::<i64>().map_err(|_| format!("invalid ulimit argument: {u}"));
        ulimits.push(api::types::Ulimit { name: name.to_owned(), soft: n(soft)?, hard: n(hard)? });
    }
    let mut sysctls = BTreeMap::new();
    for s in &a.sysctl {
        let (k, v) = s.split_once('=').ok_or_else(|| format!("invalid sysctl value: {s}"))?;
        sysctls.insert(k.to_owned(), v.to_owned());
    }
    let mut extra = api::types::Map::new();
    if !a.mount.is_empty() {
        let m: Vec<Value> = a.mount.iter().map(|m| crate::volume::parse_mount(m)).collect::<Result<_, _>>()?;
        extra.insert("Mounts".into(), Value::Array(m));
    }
    if !a.volumes_from.is_empty() {
        extra.insert("VolumesFrom".into(), serde_json::json!(a.volumes_from));
    }
    let log_config = api::types::LogConfig {
        kind: a.log_driver.clone().unwrap_or_default(),
        config: a
            .log_opt
            .iter()
            .map(|o| {
                o.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .ok_or_else(|| format!("invalid log opt: {o}"))
            })
            .collect::<Result<_, _>>()?,
    };
    let host = HostConfig {
        binds: a.volumes.clone(),
        log_config,
        restart_policy: a.restart.as_deref().map(restart_policy).transpose()?.unwrap_or_default(),
        network_mode: a.network.clone().unwrap_or_else(|| "default".into()),
        auto_remove: a.rm,
        privileged: a.privileged,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        init: a.init.then_some(true),
        tmpfs,
        ulimits,
        sysctls,
        security_opt: security_opts(&a.security_opt)?,
        readonly_rootfs: a.read_only,
        memory: r.memory.unwrap_or(0),
        memory_swap: r.memory_swap.unwrap_or(0),
        memory_reservation: r.memory_reservation.unwrap_or(0),
        nano_cpus: r.nano_cpus.unwrap_or(0),
        cpu_shares: r.cpu_shares.unwrap_or(0),
        pids_limit: r.pids_limit,
        cpuset_cpus: r.cpuset_cpus.unwrap_or_default(),
        cpuset_mems: r.cpuset_mems.unwrap_or_default(),
        blkio_weight: r.blkio_weight.unwrap_or(0),
        shm_size: a.shm_size.as_deref().map(parse_bytes).transpose()?.unwrap_or(0),
        group_add: a.group_add.clone(),
        console_size: console,
        ..Default::default()
    };
    let mut host = host;
    // Mounts and VolumesFrom travel as the API spells them (HostConfig keeps them in `extra`).
    host.extra.extend(extra);
    let mut cfg = ContainerConfig {
        hostname: a.hostname.clone().unwrap_or_default(),
        user: a.user.clone().unwrap_or_default(),
        attach_stdin: a.interactive && !a.detach,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        tty: a.tty,
        open_stdin: a.interactive,
        stdin_once: a.interactive && !a.detach,
        env,
        cmd: if a.command.is_empty() { None } else { Some(a.command.clone()) },
        image: a.image.clone(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        entrypoint: a.entrypoint.as_ref().map(|e| if e.is_empty() { vec![] } else { vec![e.clone()] }),
        labels,
        stop_signal: a.stop_signal.clone(),
        stop_timeout: a.stop_timeout,
        healthcheck: healthcheck(&a.health)?,
        host_config: Some(host),
        ..Default::default()
    };
    crate::network::apply(&a.net, a.network.as_deref(), &mut cfg)?;
    Ok(cfg)
}

/// docker's exit code for a failed start: 126 cannot run, 127 not found, else 125.
fn start_failure_code(msg: &str) -> i32 {
    api::start_error_code(msg).unwrap_or(125)
}

async fn create_container(c: &Client, a: &RunArgs, cfg: &ContainerConfig) -> Result<String, (i32, String)> {
    let path = match &a.name {
        Some(n) => format!("/containers/create?name={}", enc(n)),
        None => "/containers/create".to_owned(),
    };
    match c.post::<_, CreateResponse>(&path, Some(cfg)).await {
        Ok(r) => {
            for w in r.warnings {
                eprintln!("WARNING: {w}");
            }
            Ok(r.id)
        }
        Err(ClientError::Status { status: 404, message }) if message.starts_with("No such image") => {
            let (repo, tag) = split_tag(&a.image);
            let tag = tag.unwrap_or_else(|| "latest".into());
            eprintln!("Unable to find image '{repo}:{tag}' locally");
            crate::distribution::pull_for_run(c, &a.image).await.map_err(|e| (125, e))?;
            c.post::<_, CreateResponse>(&path, Some(cfg)).await.map(|r| r.id).map_err(|e| (125, e.to_string()))
        }
        Err(e) => Err((125, e.to_string())),
    }
}

async fn run(c: &Client, a: RunArgs, start: bool) -> i32 {
    let cfg = match build_config(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    let id = match create_container(c, &a, &cfg).await {
        Ok(id) => id,
        Err((code, msg)) => {
            eprintln!("berth: {}", msg.trim_start_matches("Error response from daemon: "));
            let _ = msg;
            return code;
        }
    };
    if !start {
        println!("{id}");
        return 0;
    }
    if a.detach {
        return match c.post_raw::<()>(&format!("/containers/{id}/start"), None).await {
            Ok(_) => {
                println!("{id}");
                0
            }
            Err(e) => {
                eprintln!("berth: Error response from daemon: {}", message(&e));
                start_failure_code(&message(&e))
            }
        };
    }
    attach_start_wait(c, &id, a.interactive, a.tty, if a.rm { "removed" } else { "next-exit" }).await
}

fn message(e: &ClientError) -> String {
    match e {
        ClientError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Attach, register the wait, start, stream, and return the exit code.
async fn attach_start_wait(c: &Client, id: &str, stdin: bool, tty: bool, condition: &str) -> i32 {
    // Both must be in place before the start; neither depends on the other.
    let attach_path = format!("/containers/{id}/attach?stream=1&stdin={}&stdout=1&stderr=1", u8::from(stdin));
    let wait_path = format!("/containers/{id}/wait?condition={condition}");
    let (attached, wait) = tokio::join!(c.hijack::<()>(&attach_path, None, tty), c.post_raw::<()>(&wait_path, None));
    let (conn, multiplexed) = match attached {
        Ok(v) => v,
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    let wait = match wait {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: {e}");
            return 125;
        }
    };
    let wait = tokio::spawn(async move { api::client::decode::<WaitResponse>(wait).await });
    if let Err(e) = c.post_raw::<()>(&format!("/containers/{id}/start"), None).await {
        let msg = message(&e);
        eprintln!("berth: Error response from daemon: {msg}");
        if condition == "removed" {
            let _ = c.delete(&format!("/containers/{id}?force=1")).await;
        }
        return start_failure_code(&msg);
    }
    let _raw = (tty && stdin && stdin_is_tty()).then(RawTerminal::enter);
    if tty {
        resize(c, &format!("/containers/{id}/resize")).await;
        watch_resize(c.host().to_owned(), format!("/containers/{id}/resize"));
    }
    pump(conn, multiplexed, stdin).await;
    drop(_raw);
    match wait.await {
        Ok(Ok(w)) => w.status_code as i32,
        Ok(Err(e)) => {
            eprintln!("berth: {e}");
            125
        }
        Err(_) => 125,
    }
}

async fn resize(c: &Client, path: &str) {
    if let Some((h, w)) = terminal_size() {
        let _ = c.post_raw::<()>(&format!("{path}?h={h}&w={w}"), None).await;
    }
}

/// Sends the new terminal size on every SIGWINCH.
fn watch_resize(host: String, path: String) {
    tokio::spawn(async move {
        let Ok(mut sig) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()) else { return };
        let Ok(c) = Client::new(&host) else { return };
        while sig.recv().await.is_some() {
            resize(&c, &path).await;
        }
    });
}

async fn start_attached(c: &Client, name: &str, stdin: bool) -> i32 {
    let info: ContainerInspect = match c.get(&format!("/containers/{}/json", enc(name))).await {
        Ok(i) => i,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    attach_start_wait(c, &info.id, stdin && info.config.open_stdin, info.config.tty, "next-exit").await
}

async fn exec(c: &Client, a: ExecArgs) -> i32 {
    let cfg = ExecConfig {
        attach_stdin: a.interactive && !a.detach,
        attach_stdout: !a.detach,
        attach_stderr: !a.detach,
        tty: a.tty,
        env: a.env.clone(),
        cmd: a.command.clone(),
        privileged: a.privileged,
        user: a.user.clone().unwrap_or_default(),
        working_dir: a.workdir.clone().unwrap_or_default(),
        console_size: if a.tty { terminal_size().map(|(h, w)| vec![h, w]) } else { None },
        ..Default::default()
    };
    let id = match c.post::<_, IdResponse>(&format!("/containers/{}/exec", enc(&a.container)), Some(&cfg)).await {
        Ok(r) => r.id,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    if a.detach {
        return match c
            .post_raw(&format!("/exec/{id}/start"), Some(&ExecStart { detach: true, tty: a.tty, console_size: None }))
            .await
        {
            Ok(_) => 0,
            Err(e) => {
                report(&e);
                126
            }
        };
    }
    let (conn, multiplexed) = match c
        .hijack(&format!("/exec/{id}/start"), Some(&ExecStart { detach: false, tty: a.tty, console_size: None }), a.tty)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            let msg = message(&e);
            eprintln!("Error response from daemon: {msg}");
            return start_failure_code(&msg).max(126);
        }
    };
    let _raw = (a.tty && a.interactive && stdin_is_tty()).then(RawTerminal::enter);
    if a.tty {
        resize(c, &format!("/exec/{id}/resize")).await;
        watch_resize(c.host().to_owned(), format!("/exec/{id}/resize"));
    }
    pump(conn, multiplexed, a.interactive).await;
    drop(_raw);
    for _ in 0..200 {
        match c.get::<ExecInspect>(&format!("/exec/{id}/json")).await {
            Ok(i) if !i.running && i.exit_code.is_some() => return i.exit_code.unwrap_or(0) as i32,
            Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(25)).await,
            Err(e) => {
                report(&e);
                return 1;
            }
        }
    }
    1
}

fn filters_json(f: &[String]) -> String {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for x in f {
        let (k, v) = x.split_once('=').unwrap_or((x, ""));
        m.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    serde_json::to_string(&m).unwrap_or_default()
}

/// Prints rows through a `--format` template, with docker's `table` prefix for a header.
fn print_formatted(format: &str, rows: &[Value], headers: &[(&str, &str)]) -> i32 {
    let (is_table, tpl) = match format.strip_prefix("table") {
        Some(rest) => (true, rest.trim_start().to_owned()),
        None => (false, format.to_owned()),
    };
    let mut out_rows = Vec::new();
    for r in rows {
        match template(&tpl, r) {
            Ok(s) => out_rows.push(s),
            Err(e) => {
                eprintln!("{e}");
                return 1;
            }
        }
    }
    if is_table {
        let mut header = tpl.replace("\\t", "\t");
        for (k, h) in headers {
            header = header.replace(&format!("{{{{.{k}}}}}"), h);
        }
        let cols: Vec<&str> = header.split('\t').collect();
        let data: Vec<Vec<String>> = out_rows.iter().map(|r| r.split('\t').map(str::to_owned).collect()).collect();
        print!("{}", table(&cols, &data));
    } else {
        for r in out_rows {
            println!("{r}");
        }
    }
    0
}

async fn ps(c: &Client, a: PsArgs) -> i32 {
    let mut q = vec![format!("all={}", u8::from(a.all))];
    if !a.filter.is_empty() {
        q.push(format!("filters={}", enc(&filters_json(&a.filter))));
    }
    if let Some(n) = a.last.or(a.latest.then_some(1)) {
        q.push(format!("limit={n}"));
    }
    let list: Vec<ContainerSummary> = match c.get(&format!("/containers/json?{}", q.join("&"))).await {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    if a.quiet {
        for s in &list {
            println!("{}", if a.no_trunc { s.id.clone() } else { short_id(&s.id) });
        }
        return 0;
    }
    let row = |s: &ContainerSummary| -> (String, String, String, String, String, String, String) {
        let id = if a.no_trunc { s.id.clone() } else { short_id(&s.id) };
        let cmd = if a.no_trunc { format!("\"{}\"", s.command) } else { format!("\"{}\"", ellipsis(&s.command, 20)) };
        let names = s.names.iter().map(|n| n.trim_start_matches('/')).collect::<Vec<_>>().join(",");
        (id, s.image.clone(), cmd, ago(s.created), s.status.clone(), crate::network::format_ports(&s.ports), names)
    };
    if let Some(f) = &a.format {
        let rows: Vec<Value> = list
            .iter()
            .map(|s| {
                let (id, image, cmd, created, status, ports, names) = row(s);
                serde_json::json!({"ID": id, "Image": image, "Command": cmd, "RunningFor": created, "CreatedAt": s.created,
                    "Status": status, "Ports": ports, "Names": names, "State": s.state, "Labels": s.labels})
            })
            .collect();
        let h = [
            ("ID", "CONTAINER ID"),
            ("Image", "IMAGE"),
            ("Command", "COMMAND"),
            ("RunningFor", "CREATED"),
            ("Status", "STATUS"),
            ("Ports", "PORTS"),
            ("Names", "NAMES"),
            ("State", "STATE"),
        ];
        return print_formatted(f, &rows, &h);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|s| {
            let (id, image, cmd, created, status, ports, names) = row(s);
            vec![id, image, cmd, created, status, ports, names]
        })
        .collect();
    print!("{}", table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows));
    0
}

async fn logs(c: &Client, a: LogsArgs) -> i32 {
    let info: ContainerInspect = match c.get(&format!("/containers/{}/json", enc(&a.container))).await {
        Ok(i) => i,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    let mut q = format!(
        "stdout=1&stderr=1&follow={}&timestamps={}&tail={}",
        u8::from(a.follow),
        u8::from(a.timestamps),
        enc(&a.tail)
    );
    for (k, v) in [("since", &a.since), ("until", &a.until)] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", enc(&relative_time(v))));
        }
    }
    let resp = match c
        .request(Method::GET, &format!("/containers/{}/logs?{q}", info.id), Vec::new(), api::client::empty())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    let mut body = resp.into_body();
    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let mut pending = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(d) = frame.into_data() else { continue };
        if info.config.tty {
            let _ = out.write_all(&d).await;
        } else {
            pending.extend_from_slice(&d);
            for (s, data) in api::frame::decode(&mut pending) {
                if s == api::frame::STDERR {
                    let _ = err.write_all(&data).await;
                } else {
                    let _ = out.write_all(&data).await;
                }
            }
        }
        // tokio hands each write to a blocking thread: without a flush the last one may still
        // be on its way when the process exits.
        let _ = out.flush().await;
        let _ = err.flush().await;
    }
    0
}

/// `42m`, `10s`, `2h` before now as unix seconds; anything else as given.
pub(crate) fn relative_time(v: &str) -> String {
    let (num, unit) = v.split_at(v.len().saturating_sub(1));
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return v.to_owned(),
    };
    match num.parse::<f64>() {
        Ok(n) => format!("{:.9}", chrono::Utc::now().timestamp_micros() as f64 / 1e6 - n * mult as f64),
        Err(_) => v.to_owned(),
    }
}

async fn inspect(c: &Client, names: Vec<String>, format: Option<String>, kind: Option<String>) -> i32 {
    let mut out = Vec::new();
    let mut code = 0;
    for n in &names {
        let mut found = None;
        if kind.as_deref() != Some("image") {
            match c.get::<Value>(&format!("/containers/{}/json", enc(n))).await {
                Ok(v) => found = Some(v),
                Err(e) if e.status() == Some(404) => {}
                Err(e) => {
                    report(&e);
                    code = 1;
                    continue;
                }
            }
        }
        if found.is_none()
            && kind.as_deref() != Some("container")
            && let Ok(v) = c.get::<Value>(&format!("/images/{n}/json")).await
        {
            found = Some(v);
        }
        if found.is_none()
            && matches!(kind.as_deref(), None | Some("network"))
            && let Ok(v) = c.get::<Value>(&format!("/networks/{}", enc(n))).await
        {
            found = Some(v);
        }
        match found {
            Some(v) => out.push(v),
            None => {
                eprintln!("Error: No such object: {n}");
                code = 1;
            }
        }
    }
    match format {
        Some(f) => {
            if crate::fmt::print_each(&f, &out) != 0 {
                return 1;
            }
        }
        None => {
            let mut buf = Vec::new();
            let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
            let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
            if serde::Serialize::serialize(&out, &mut ser).is_ok() {
                println!("{}", String::from_utf8_lossy(&buf));
            }
        }
    }
    code
}

async fn import(c: &Client, a: crate::ImportArgs) -> i32 {
    // A URL is fetched by the daemon, as docker does.
    let url = a.file.starts_with("http://") || a.file.starts_with("https://");
    let mut q = vec![format!("fromSrc={}", if url { enc(&a.file) } else { "-".to_owned() })];
    if let Some(r) = &a.reference {
        let (repo, tag) = split_tag(r);
        q.push(format!("repo={}", enc(&repo)));
        if let Some(t) = tag {
            q.push(format!("tag={}", enc(&t)));
        }
    }
    if let Some(m) = &a.message {
        q.push(format!("message={}", enc(m)));
    }
    for ch in &a.changes {
        q.push(format!("changes={}", enc(ch)));
    }
    let body = if url {
        api::client::empty()
    } else if a.file == "-" {
        reader_body(tokio::io::stdin())
    } else {
        match tokio::fs::File::open(&a.file).await {
            Ok(f) => reader_body(f),
            Err(e) => {
                eprintln!("open {}: {e}", a.file);
                return 1;
            }
        }
    };
    let headers = vec![("Content-Type", "application/x-tar".to_owned())];
    match c.request(Method::POST, &format!("/images/create?{}", q.join("&")), headers, body).await {
        Ok(resp) => match crate::distribution::show(resp, crate::distribution::Target::Stderr, true).await {
            Ok(lines) => {
                for l in lines {
                    if let Some(s) = l.status {
                        println!("{s}");
                    }
                }
                0
            }
            Err(e) => {
                eprintln!("Error response from daemon: {e}");
                1
            }
        },
        Err(e) => {
            report(&e);
            1
        }
    }
}

async fn images(c: &Client, a: ImagesArgs) -> i32 {
    let mut filters = a.filter.clone();
    if let Some(r) = &a.reference {
        filters.push(format!("reference={r}"));
    }
    let mut q = if filters.is_empty() { String::new() } else { format!("?filters={}", enc(&filters_json(&filters))) };
    if a.all {
        q.push_str(if q.is_empty() { "?all=1" } else { "&all=1" });
    }
    let list: Vec<ImageSummary> = match c.get(&format!("/images/json{q}")).await {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    let mut rows = Vec::new();
    for i in &list {
        let id = if a.no_trunc { i.id.clone() } else { short_id(&i.id) };
        if a.quiet {
            if !rows.iter().any(|r: &Vec<String>| r[2] == id) {
                rows.push(vec![String::new(), String::new(), id]);
            }
            continue;
        }
        let tags = if i.repo_tags.is_empty() { vec!["<none>:<none>".to_owned()] } else { i.repo_tags.clone() };
        for t in tags {
            let (repo, tag) = split_tag(&t);
            rows.push(vec![
                repo,
                tag.unwrap_or_else(|| "<none>".into()),
                id.clone(),
                ago(i.created),
                human_size(i.size),
            ]);
        }
    }
    if a.quiet {
        for r in rows {
            println!("{}", r[2]);
        }
        return 0;
    }
    if let Some(f) = &a.format {
        let vals: Vec<Value> = rows
            .iter()
            .map(|r| serde_json::json!({"Repository": r[0], "Tag": r[1], "ID": r[2], "CreatedSince": r[3], "Size": r[4]}))
            .collect();
        let h = [
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
            ("CreatedSince", "CREATED"),
            ("Size", "SIZE"),
        ];
        return print_formatted(f, &vals, &h);
    }
    print!("{}", table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows));
    0
}

async fn history(c: &Client, a: crate::HistoryArgs) -> i32 {
    let list: Vec<HistoryItem> = match c.get(&format!("/images/{}/history", a.image)).await {
        Ok(l) => l,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    let id = |h: &HistoryItem| if h.id == "<missing>" || a.no_trunc { h.id.clone() } else { short_id(&h.id) };
    if a.quiet {
        for h in &list {
            println!("{}", id(h));
        }
        return 0;
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|h| {
            let by = if a.no_trunc { h.created_by.clone() } else { ellipsis(&h.created_by, 45) };
            vec![id(h), ago(h.created), by, human_size(h.size), h.comment.clone()]
        })
        .collect();
    print!("{}", table(&["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"], &rows));
    0
}

async fn version(c: &Client) -> i32 {
    println!(
        "Client:\n Version:           {}\n API version:       {}\n OS/Arch:           linux/{}",
        env!("CARGO_PKG_VERSION"),
        api::API_VERSION,
        std::env::consts::ARCH
    );
    match c.get::<api::types::Version>("/version").await {
        Ok(v) => {
            println!(
                "\nServer:\n Engine:\n  Version:          {}\n  API version:      {} (minimum version {})\n  OS/Arch:          {}/{}\n  Kernel:           {}",
                v.version, v.api_version, v.min_api_version, v.os, v.arch, v.kernel_version
            );
            0
        }
        Err(e) => {
            report(&e);
            1
        }
    }
}

async fn info(c: &Client) -> i32 {
    match c.get::<Value>("/info").await {
        Ok(v) => {
            let g = |k: &str| {
                v.get(k).map(|x| x.as_str().map(str::to_owned).unwrap_or_else(|| x.to_string())).unwrap_or_default()
            };
            println!("Server:");
            println!(" Containers: {}", g("Containers"));
            println!("  Running: {}", g("ContainersRunning"));
            println!("  Paused: {}", g("ContainersPaused"));
            println!("  Stopped: {}", g("ContainersStopped"));
            println!(" Images: {}", g("Images"));
            println!(" Server Version: {}", g("ServerVersion"));
            println!(" Storage Driver: {}", g("Driver"));
            println!(" Logging Driver: {}", g("LoggingDriver"));
            println!(" Cgroup Driver: {}", g("CgroupDriver"));
            println!(" Cgroup Version: {}", g("CgroupVersion"));
            println!(" Kernel Version: {}", g("KernelVersion"));
            println!(" Operating System: {}", g("OperatingSystem"));
            println!(" OSType: {}", g("OSType"));
            println!(" Architecture: {}", g("Architecture"));
            println!(" CPUs: {}", g("NCPU"));
            println!(" Total Memory: {}", human_size(v.get("MemTotal").and_then(Value::as_i64).unwrap_or(0)));
            println!(" Name: {}", g("Name"));
            println!(" Docker Root Dir: {}", g("DockerRootDir"));
            0
        }
        Err(e) => {
            report(&e);
            1
        }
    }
}

/// Docker's `units.BytesSize`: binary units (`1.5MiB`).
pub fn bytes_size(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n.max(0.0);
    let mut i = 0;
    while v >= 1024.0 && i < units.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    let s = format!("{v:.3}");
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_owned() } else { s };
    format!("{s}{}", units[i])
}

/// One row of `docker stats` from a stats sample.
fn stats_row(v: &Value, no_trunc: bool) -> Vec<String> {
    let u = |p: &[&str]| p.iter().try_fold(v, |acc, k| acc.get(*k)).and_then(Value::as_f64).unwrap_or(0.0);
    let cpu_delta = u(&["cpu_stats", "cpu_usage", "total_usage"]) - u(&["precpu_stats", "cpu_usage", "total_usage"]);
    let sys_delta = u(&["cpu_stats", "system_cpu_usage"]) - u(&["precpu_stats", "system_cpu_usage"]);
    let online = u(&["cpu_stats", "online_cpus"]).max(1.0);
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 { cpu_delta / sys_delta * online * 100.0 } else { 0.0 };
    let usage = u(&["memory_stats", "usage"]);
    // Page cache that could be dropped is not counted, as docker does (v1, then v2 names).
    let inactive = {
        let v1 = u(&["memory_stats", "stats", "total_inactive_file"]);
        if v1 > 0.0 { v1 } else { u(&["memory_stats", "stats", "inactive_file"]) }
    };
    let mem = if inactive < usage { usage - inactive } else { usage };
    let limit = u(&["memory_stats", "limit"]);
    let mem_pct = if limit > 0.0 { mem / limit * 100.0 } else { 0.0 };
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in v.pointer("/blkio_stats/io_service_bytes_recursive").and_then(Value::as_array).into_iter().flatten() {
        let val = e.get("value").and_then(Value::as_f64).unwrap_or(0.0);
        match e.get("op").and_then(Value::as_str).map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += val,
            Some("write") => wr += val,
            _ => {}
        }
    }
    let id = v.get("id").and_then(Value::as_str).unwrap_or_default();
    vec![
        if no_trunc { id.to_owned() } else { short_id(id) },
        v.get("name").and_then(Value::as_str).unwrap_or_default().trim_start_matches('/').to_owned(),
        format!("{cpu:.2}%"),
        format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        format!("{mem_pct:.2}%"),
        "0B / 0B".to_owned(),
        format!("{} / {}", human_size(rd as i64), human_size(wr as i64)),
        format!("{}", u(&["pids_stats", "current"]) as i64),
    ]
}

async fn stats(c: &Client, a: crate::StatsArgs) -> i32 {
    let names = if a.containers.is_empty() {
        match c.get::<Vec<ContainerSummary>>(&format!("/containers/json?all={}", u8::from(a.all))).await {
            Ok(l) => l.into_iter().map(|s| s.id).collect(),
            Err(e) => {
                report(&e);
                return 1;
            }
        }
    } else {
        a.containers.clone()
    };
    let header = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"];
    loop {
        let mut rows = Vec::new();
        for n in &names {
            match c.get::<Value>(&format!("/containers/{}/stats?stream=false", enc(n))).await {
                Ok(v) => rows.push(stats_row(&v, a.no_trunc)),
                Err(e) => {
                    report(&e);
                    return 1;
                }
            }
        }
        if !a.no_stream && crate::stream::stdout_is_tty() {
            print!("\x1b[2J\x1b[H");
        }
        print!("{}", table(&header, &rows));
        if a.no_stream {
            return 0;
        }
    }
}

async fn update(c: &Client, a: crate::UpdateArgs) -> i32 {
    let r = match resources(&a.resources) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth: {e}");
            return 1;
        }
    };
    let mut body = serde_json::to_value(&r).unwrap_or_default();
    if let Some(p) = &a.restart {
        match restart_policy(p) {
            Ok(p) => body["RestartPolicy"] = serde_json::to_value(p).unwrap_or_default(),
            Err(e) => {
                eprintln!("berth: {e}");
                return 125;
            }
        }
    }
    each(&a.containers, |n| {
        let body = body.clone();
        async move {
            c.post_raw(&format!("/containers/{}/update", enc(&n)), Some(&body)).await?;
            println!("{n}");
            Ok(())
        }
    })
    .await
}

/// `--security-opt`, with `seccomp=FILE` replaced by the file's content, as docker sends it.
fn security_opts(opts: &[String]) -> Result<Vec<String>, String> {
    opts.iter()
        .map(|o| match o.split_once(['=', ':']) {
            Some(("seccomp", v)) if v != "unconfined" && !v.trim_start().starts_with('{') => {
                let text =
                    std::fs::read_to_string(v).map_err(|e| format!("opening seccomp profile ({v}) failed: {e}"))?;
                Ok(format!("seccomp={text}"))
            }
            _ => Ok(o.clone()),
        })
        .collect()
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
fn restart_policy(s: &str) -> Result<api::types::RestartPolicy, String> {
    let (name, max) = match s.split_once(':') {
        Some((n, m)) => (
            n,
            m.parse::<i64>()
                .map_err(|_| format!("invalid restart policy `{s}`: maximum retry count must be an integer"))?,
        ),
        None => (s, 0),
    };
    Ok(api::types::RestartPolicy { name: name.to_owned(), maximum_retry_count: max })
}

/// The `--health-*` flags as `Config.Healthcheck`; None when none is given.
fn healthcheck(h: &crate::HealthArgs) -> Result<Option<Value>, String> {
    let d = |v: &Option<String>, flag: &str| -> Result<i64, String> {
        match v {
            None => Ok(0),
            Some(s) => {
                let ns = api::units::parse_go_duration(s).map_err(|e| format!("--{flag}: {e}"))?;
                if ns < 0 {
                    return Err(format!("--{flag} cannot be negative"));
                }
                Ok(ns)
            }
        }
    };
    let any = h.health_cmd.is_some()
        || h.health_interval.is_some()
        || h.health_timeout.is_some()
        || h.health_retries.is_some()
        || h.health_start_period.is_some()
        || h.health_start_interval.is_some();
    if h.no_healthcheck {
        if any {
            return Err("--no-healthcheck conflicts with --health-* options".into());
        }
        return Ok(Some(serde_json::json!({"Test": ["NONE"]})));
    }
    if !any {
        return Ok(None);
    }
    let cfg = api::types::HealthConfig {
        test: h.health_cmd.as_ref().map(|c| vec!["CMD-SHELL".to_owned(), c.clone()]).unwrap_or_default(),
        interval: d(&h.health_interval, "health-interval")?,
        timeout: d(&h.health_timeout, "health-timeout")?,
        start_period: d(&h.health_start_period, "health-start-period")?,
        start_interval: d(&h.health_start_interval, "health-start-interval")?,
        retries: match h.health_retries {
            Some(r) if r < 0 => return Err("--health-retries cannot be negative".into()),
            r => r.unwrap_or(0),
        },
    };
    serde_json::to_value(cfg).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_tags() {
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("512"), Ok(512));
        assert_eq!(parse_bytes("10mb"), Ok(10 << 20));
        assert!(parse_bytes("abc").is_err());
        assert_eq!(split_tag("a:b"), ("a".into(), Some("b".into())));
        assert_eq!(split_tag("host:5000/a"), ("host:5000/a".into(), None));
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
        assert_eq!(start_failure_code("exec: \"x\": executable file not found in $PATH"), 127);
    }
}
