//! `berth volume …`, and the mount flags of `run`/`create` (`-v`, `--mount`, `--volumes-from`).

use std::collections::BTreeMap;

use api::client::{Client, ClientError};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::commands::{enc, parse_bytes};
use crate::fmt::{human_size, print_each, table};

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum VolumeCmd {
    /// Create a volume
    Create(VolumeCreateArgs),
    /// List volumes
    #[command(alias = "list")]
    Ls(VolumeLsArgs),
    /// Display detailed information on one or more volumes
    Inspect {
        /// Format output using a Go template
        #[arg(short = 'f', long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove one or more volumes
    #[command(alias = "remove")]
    Rm {
        /// Force the removal of one or more volumes
        #[arg(short = 'f', long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused local volumes
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct VolumeCreateArgs {
    /// Specify volume driver name
    #[arg(short = 'd', long, default_value = "local")]
    pub driver: String,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt")]
    pub opts: Vec<String>,
    /// Set metadata for a volume
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Volume name
    #[arg(long = "name")]
    pub name_flag: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct VolumeLsArgs {
    /// Only display volume names
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Provide filter values (e.g. "dangling=true")
    #[arg(short = 'f', long = "filter")]
    pub filter: Vec<String>,
    /// Format output using a Go template
    #[arg(long)]
    pub format: Option<String>,
}

// Flags shared by the prune verbs. (Not `///`: see `Command`.)
#[derive(Debug, Args, Clone)]
pub struct PruneArgs {
    /// Remove all unused objects, not just dangling/anonymous ones
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Do not prompt for confirmation
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Provide filter values (e.g. "until=24h", "label=a=b")
    #[arg(long = "filter")]
    pub filter: Vec<String>,
}

fn kv(list: &[String]) -> BTreeMap<String, String> {
    list.iter()
        .map(|s| {
            let (k, v) = s.split_once('=').unwrap_or((s, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

pub fn report(e: &ClientError) {
    match e {
        ClientError::Status { message, .. } => eprintln!("Error response from daemon: {message}"),
        other => eprintln!("{other}"),
    }
}

/// Filters as the API wants them: `{"key":["v",…]}`.
pub fn filters_json(f: &[String], extra: &[(&str, &str)]) -> String {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for x in f {
        let (k, v) = x.split_once('=').unwrap_or((x, ""));
        m.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    for (k, v) in extra {
        m.entry((*k).to_owned()).or_default().push((*v).to_owned());
    }
    serde_json::to_string(&m).unwrap_or_default()
}

/// Asks "Are you sure…" unless `force`; false when the answer is not yes.
pub fn confirm(force: bool, warning: &str) -> bool {
    if force {
        return true;
    }
    eprint!("{warning}\nAre you sure you want to continue? [y/N] ");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes")
}

pub async fn run(c: &Client, cmd: VolumeCmd) -> i32 {
    match cmd {
        VolumeCmd::Create(a) => {
            let name = a.name.clone().or(a.name_flag.clone()).unwrap_or_default();
            let body = json!({"Name": name, "Driver": a.driver, "DriverOpts": kv(&a.opts), "Labels": kv(&a.labels)});
            match c.post::<_, Value>("/volumes/create", Some(&body)).await {
                Ok(v) => {
                    println!("{}", v["Name"].as_str().unwrap_or_default());
                    0
                }
                Err(e) => {
                    report(&e);
                    1
                }
            }
        }
        VolumeCmd::Ls(a) => {
            let q = if a.filter.is_empty() {
                String::new()
            } else {
                format!("?filters={}", enc(&filters_json(&a.filter, &[])))
            };
            let v: Value = match c.get(&format!("/volumes{q}")).await {
                Ok(v) => v,
                Err(e) => {
                    report(&e);
                    return 1;
                }
            };
            let vols = v["Volumes"].as_array().cloned().unwrap_or_default();
            if a.quiet {
                for v in &vols {
                    println!("{}", v["Name"].as_str().unwrap_or_default());
                }
                return 0;
            }
            if let Some(f) = &a.format {
                return print_each(f, &vols);
            }
            let rows: Vec<Vec<String>> = vols
                .iter()
                .map(|v| {
                    vec![
                        v["Driver"].as_str().unwrap_or_default().to_owned(),
                        v["Name"].as_str().unwrap_or_default().to_owned(),
                    ]
                })
                .collect();
            print!("{}", table(&["DRIVER", "VOLUME NAME"], &rows));
            0
        }
        VolumeCmd::Inspect { format, names } => {
            let mut out = Vec::new();
            let mut code = 0;
            for n in &names {
                match c.get::<Value>(&format!("/volumes/{}", enc(n))).await {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        report(&e);
                        code = 1;
                    }
                }
            }
            match format {
                Some(f) => {
                    if print_each(&f, &out) != 0 {
                        return 1;
                    }
                }
                None => println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default()),
            }
            code
        }
        VolumeCmd::Rm { force, names } => {
            let mut code = 0;
            for n in &names {
                match c.delete(&format!("/volumes/{}?force={force}", enc(n))).await {
                    Ok(_) => println!("{n}"),
                    Err(e) => {
                        report(&e);
                        code = 1;
                    }
                }
            }
            code
        }
        VolumeCmd::Prune(a) => {
            let warn = if a.all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !confirm(a.force, warn) {
                return 0;
            }
            let extra: Vec<(&str, &str)> = if a.all { vec![("all", "true")] } else { Vec::new() };
            match c
                .post::<(), Value>(&format!("/volumes/prune?filters={}", enc(&filters_json(&a.filter, &extra))), None)
                .await
            {
                Ok(v) => {
                    print_deleted("Deleted Volumes:", &v["VolumesDeleted"]);
                    println!("Total reclaimed space: {}", human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0)));
                    0
                }
                Err(e) => {
                    report(&e);
                    1
                }
            }
        }
    }
}

pub fn print_deleted(title: &str, list: &Value) {
    let items: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| match v {
            Value::String(s) => s.clone(),
            Value::Object(o) => o
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}: {}",
                        if k == "Untagged" { "untagged" } else { "deleted" },
                        v.as_str().unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            other => other.to_string(),
        })
        .collect();
    if !items.is_empty() {
        println!("{title}");
        for i in items {
            println!("{i}");
        }
        println!();
    }
}

fn truthy(v: Option<&str>) -> Result<bool, String> {
    match v {
        None | Some("true") | Some("1") => Ok(true),
        Some("false") | Some("0") => Ok(false),
        Some(o) => Err(format!("invalid boolean value: {o}")),
    }
}

/// `--mount type=…,source=…,target=…,readonly,…` as the API's `Mounts` entry.
pub fn parse_mount(spec: &str) -> Result<Value, String> {
    let mut m = json!({"Type": "volume"});
    let mut vol_opts = serde_json::Map::new();
    let mut vol_labels = serde_json::Map::new();
    for field in spec.split(',').filter(|f| !f.is_empty()) {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let val = || v.map(str::to_owned).ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match k.as_str() {
            "type" => m["Type"] = json!(val()?),
            "source" | "src" => m["Source"] = json!(val()?),
            "target" | "destination" | "dst" => m["Target"] = json!(val()?),
            "readonly" | "ro" => m["ReadOnly"] = json!(truthy(v)?),
            "bind-propagation" => m["BindOptions"] = json!({"Propagation": val()?}),
            "volume-nocopy" => {
                let o = m.as_object_mut().map(|o| o.entry("VolumeOptions").or_insert_with(|| json!({})));
                if let Some(o) = o {
                    o["NoCopy"] = json!(truthy(v)?);
                }
            }
            "volume-driver" => {
                let _ = val()?;
            }
            "volume-opt" => {
                let s = val()?;
                let (a, b) = s.split_once('=').ok_or_else(|| format!("invalid volume-opt '{s}'"))?;
                vol_opts.insert(a.to_owned(), json!(b));
            }
            "volume-label" => {
                let s = val()?;
                let (a, b) = s.split_once('=').unwrap_or((s.as_str(), ""));
                vol_labels.insert(a.to_owned(), json!(b));
            }
            "tmpfs-size" => {
                let n = parse_bytes(&val()?)?;
                let o = m.as_object_mut().map(|o| o.entry("TmpfsOptions").or_insert_with(|| json!({})));
                if let Some(o) = o {
                    o["SizeBytes"] = json!(n);
                }
            }
            "tmpfs-mode" => {
                let s = val()?;
                let n = u32::from_str_radix(&s, 8).map_err(|_| format!("invalid tmpfs-mode '{s}'"))?;
                let o = m.as_object_mut().map(|o| o.entry("TmpfsOptions").or_insert_with(|| json!({})));
                if let Some(o) = o {
                    o["Mode"] = json!(n);
                }
            }
            "consistency" | "bind-nonrecursive" => {}
            _ => return Err(format!("unexpected key '{k}' in '{field}'")),
        }
    }
    if !vol_opts.is_empty() || !vol_labels.is_empty() {
        let o = m.as_object_mut().map(|o| o.entry("VolumeOptions").or_insert_with(|| json!({})));
        if let Some(o) = o {
            if !vol_opts.is_empty() {
                o["DriverConfig"] = json!({"Name": "local", "Options": vol_opts});
            }
            if !vol_labels.is_empty() {
                o["Labels"] = Value::Object(vol_labels);
            }
        }
    }
    if m.get("Target").is_none() {
        return Err("target is required".into());
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_flag_becomes_api_json() {
        let m = parse_mount("type=bind,source=/a,target=/b,readonly").expect("bind");
        assert_eq!(m, json!({"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": true}));
        let m = parse_mount("src=v,dst=/d,volume-opt=type=tmpfs,volume-nocopy").expect("volume");
        assert_eq!(m["VolumeOptions"]["NoCopy"], json!(true));
        assert_eq!(m["VolumeOptions"]["DriverConfig"]["Options"]["type"], json!("tmpfs"));
        let m = parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777").expect("tmpfs");
        assert_eq!(m["TmpfsOptions"], json!({"SizeBytes": 1048576, "Mode": 1023}));
        assert!(parse_mount("type=bind,source=/a").is_err());
        assert!(parse_mount("bogus=1,target=/x").is_err());
    }
}
