//! `/_ping`, `/version`, `/info`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;
use crate::container::Status;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub async fn ping() -> impl IntoResponse {
    let mut h = HeaderMap::new();
    h.insert("Api-Version", HeaderValue::from_static(api::API_VERSION));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Cache-Control", HeaderValue::from_static("no-cache, no-store, must-revalidate"));
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    (h, "OK")
}

fn kernel_version() -> String {
    nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default()
}

fn cgroup_version() -> &'static str {
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => "2",
        _ => "1",
    }
}

pub async fn version() -> axum::Json<Value> {
    let kv = kernel_version();
    axum::Json(json!({
        "Platform": {"Name": "berth"},
        "Components": [{"Name": "Engine", "Version": VERSION, "Details": {"ApiVersion": api::API_VERSION, "MinAPIVersion": api::MIN_API_VERSION, "Os": "linux", "Arch": "amd64", "KernelVersion": kv}}],
        "Version": VERSION,
        "ApiVersion": api::API_VERSION,
        "MinAPIVersion": api::MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "KernelVersion": kv,
        "BuildTime": "",
    }))
}

pub async fn info(State(engine): State<AppState>) -> axum::Json<Value> {
    let containers = engine.list();
    let count = |s: &[Status]| containers.iter().filter(|c| s.contains(&c.status())).count();
    let images = {
        let e = engine.clone();
        tokio::task::spawn_blocking(move || e.images.all().map(|v| v.len()).unwrap_or(0)).await.unwrap_or(0)
    };
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap_or(0) * 1024)
            })
        })
        .unwrap_or(0);
    let name = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=").map(|v| v.trim_matches('"').to_owned())))
        .unwrap_or_else(|| "Linux".into());
    axum::Json(json!({
        "ID": name,
        "Containers": containers.len(),
        "ContainersRunning": count(&[Status::Running, Status::Restarting]),
        "ContainersPaused": count(&[Status::Paused]),
        "ContainersStopped": count(&[Status::Created, Status::Exited, Status::Dead]),
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"]],
        "Plugins": {"Volume": ["local"], "Network": ["null", "host"], "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": true,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "Debug": false,
        "NFd": 0,
        "NGoroutines": 0,
        "SystemTime": chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": cgroup_version(),
        "NEventsListener": 0,
        "KernelVersion": kernel_version(),
        "OperatingSystem": os,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"IndexConfigs": {}, "InsecureRegistryCIDRs": ["127.0.0.0/8"], "Mirrors": []},
        "NCPU": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "MemTotal": mem_total,
        "DockerRootDir": engine.data_root(),
        "Name": name,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": VERSION,
        "Runtimes": {"berth": {"path": "libcontainer"}},
        "DefaultRuntime": "berth",
        "Swarm": {"LocalNodeState": "inactive", "NodeID": "", "NodeAddr": "", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "SecurityOptions": [],
        "Warnings": [],
    }))
}
