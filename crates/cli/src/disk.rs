//! `system df`, `system prune`, `image prune`, `container prune`, `builder prune`.

use api::client::Client;
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::commands::enc;
use crate::fmt::{human_size, short_id, table};
use crate::volume::{PruneArgs, confirm, filters_json, print_deleted, report};

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum SystemCmd {
    /// Show docker disk usage
    Df {
        /// Show detailed information on space usage
        #[arg(short = 'v', long)]
        verbose: bool,
    },
    /// Remove unused data
    Prune(SystemPruneArgs),
}

#[derive(Debug, Args)]
pub struct SystemPruneArgs {
    #[command(flatten)]
    pub prune: PruneArgs,
    /// Prune anonymous volumes
    #[arg(long)]
    pub volumes: bool,
}

#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum PruneOnly {
    /// Remove unused data
    Prune(PruneArgs),
}

fn pct(part: i64, whole: i64) -> String {
    if whole <= 0 { "0%".into() } else { format!("{}%", part * 100 / whole) }
}

pub async fn system(c: &Client, cmd: SystemCmd) -> i32 {
    match cmd {
        SystemCmd::Df { verbose } => df(c, verbose).await,
        SystemCmd::Prune(a) => {
            let mut warn = String::from("WARNING! This will remove:\n  - all stopped containers\n");
            if a.volumes {
                warn.push_str("  - all anonymous volumes not used by at least one container\n");
            }
            warn.push_str(if a.prune.all {
                "  - all images without at least one container associated to them\n"
            } else {
                "  - all dangling images\n"
            });
            warn.push_str("  - unused build cache\n");
            if !confirm(a.prune.force, &warn) {
                return 0;
            }
            let f = &a.prune.filter;
            let mut total = 0;
            let mut steps: Vec<(String, &str, &str)> = vec![(
                format!("/containers/prune?filters={}", enc(&filters_json(f, &[]))),
                "ContainersDeleted",
                "Deleted Containers:",
            )];
            steps.push((
                format!("/networks/prune?filters={}", enc(&filters_json(f, &[]))),
                "NetworksDeleted",
                "Deleted Networks:",
            ));
            if a.volumes {
                steps.push((
                    format!("/volumes/prune?filters={}", enc(&filters_json(f, &[]))),
                    "VolumesDeleted",
                    "Deleted Volumes:",
                ));
            }
            let dangling: Vec<(&str, &str)> = if a.prune.all { vec![("dangling", "false")] } else { Vec::new() };
            steps.push((
                format!("/images/prune?filters={}", enc(&filters_json(f, &dangling))),
                "ImagesDeleted",
                "Deleted Images:",
            ));
            steps.push((format!("/build/prune?all={}", a.prune.all), "CachesDeleted", "Deleted build cache objects:"));
            for (path, key, title) in steps {
                match c.post::<(), Value>(&path, None).await {
                    Ok(v) => {
                        print_deleted(title, &v[key]);
                        total += v["SpaceReclaimed"].as_i64().unwrap_or(0);
                    }
                    // A daemon without networks or a builder has nothing of theirs to prune.
                    Err(e) if e.status() == Some(404) => {}
                    Err(e) => {
                        report(&e);
                        return 1;
                    }
                }
            }
            println!("Total reclaimed space: {}", human_size(total));
            0
        }
    }
}

/// `image prune`, `container prune`, `builder prune`.
pub async fn prune(c: &Client, what: &str, a: PruneArgs) -> i32 {
    let (warn, path, key, title) = match what {
        "image" => (
            if a.all {
                "WARNING! This will remove all images without at least one container associated to them."
            } else {
                "WARNING! This will remove all dangling images."
            },
            {
                let extra: Vec<(&str, &str)> = if a.all { vec![("dangling", "false")] } else { Vec::new() };
                format!("/images/prune?filters={}", enc(&filters_json(&a.filter, &extra)))
            },
            "ImagesDeleted",
            "Deleted Images:",
        ),
        "container" => (
            "WARNING! This will remove all stopped containers.",
            format!("/containers/prune?filters={}", enc(&filters_json(&a.filter, &[]))),
            "ContainersDeleted",
            "Deleted Containers:",
        ),
        _ => (
            "WARNING! This will remove all dangling build cache.",
            format!("/build/prune?all={}", a.all),
            "CachesDeleted",
            "Deleted build cache objects:",
        ),
    };
    if !confirm(a.force, warn) {
        return 0;
    }
    match c.post::<(), Value>(&path, None).await {
        Ok(v) => {
            print_deleted(title, &v[key]);
            println!("Total reclaimed space: {}", human_size(v["SpaceReclaimed"].as_i64().unwrap_or(0)));
            0
        }
        Err(e) => {
            report(&e);
            1
        }
    }
}

async fn df(c: &Client, verbose: bool) -> i32 {
    let v: Value = match c.get("/system/df").await {
        Ok(v) => v,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let (images, containers, volumes, cache) = (arr("Images"), arr("Containers"), arr("Volumes"), arr("BuildCache"));
    let i64_of = |x: &Value, k: &str| x[k].as_i64().unwrap_or(0);
    let img_total = i64_of(&v, "LayersSize");
    let img_active = images.iter().filter(|i| i64_of(i, "Containers") > 0).count();
    let img_reclaim: i64 = images
        .iter()
        .filter(|i| i64_of(i, "Containers") == 0)
        .map(|i| i64_of(i, "Size") - i64_of(i, "SharedSize").max(0))
        .sum();
    let ctr_total: i64 = containers.iter().map(|c| i64_of(c, "SizeRw")).sum();
    let running = |c: &Value| matches!(c["State"].as_str(), Some("running" | "paused" | "restarting"));
    let ctr_active = containers.iter().filter(|c| running(c)).count();
    let ctr_reclaim: i64 = containers.iter().filter(|c| !running(c)).map(|c| i64_of(c, "SizeRw")).sum();
    let vsize = |x: &Value| x["UsageData"]["Size"].as_i64().unwrap_or(0).max(0);
    let vol_total: i64 = volumes.iter().map(vsize).sum();
    let vol_active = volumes.iter().filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) > 0).count();
    let vol_reclaim: i64 =
        volumes.iter().filter(|x| x["UsageData"]["RefCount"].as_i64().unwrap_or(0) == 0).map(vsize).sum();
    let cache_total: i64 = cache.iter().map(|x| i64_of(x, "Size")).sum();
    let row = |t: &str, n: usize, a: usize, size: i64, rec: i64| {
        vec![
            t.to_owned(),
            n.to_string(),
            a.to_string(),
            human_size(size),
            format!("{} ({})", human_size(rec), pct(rec, size)),
        ]
    };
    if !verbose {
        let rows = vec![
            row("Images", images.len(), img_active, img_total, img_reclaim),
            row("Containers", containers.len(), ctr_active, ctr_total, ctr_reclaim),
            row("Local Volumes", volumes.len(), vol_active, vol_total, vol_reclaim),
            row("Build Cache", cache.len(), 0, cache_total, cache_total),
        ];
        print!("{}", table(&["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], &rows));
        return 0;
    }
    println!("Images space usage:\n");
    let rows: Vec<Vec<String>> = images
        .iter()
        .flat_map(|i| {
            let tags: Vec<String> =
                i["RepoTags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
            let tags = if tags.is_empty() { vec!["<none>:<none>".to_owned()] } else { tags };
            tags.into_iter()
                .map(|t| {
                    let (r, tag) = t
                        .rsplit_once(':')
                        .map(|(a, b)| (a.to_owned(), b.to_owned()))
                        .unwrap_or((t.clone(), String::new()));
                    vec![
                        r,
                        tag,
                        short_id(i["Id"].as_str().unwrap_or_default()),
                        crate::fmt::ago(i64_of(i, "Created")),
                        human_size(i64_of(i, "Size")),
                        human_size(i64_of(i, "SharedSize")),
                        human_size(i64_of(i, "Size") - i64_of(i, "SharedSize")),
                        i64_of(i, "Containers").to_string(),
                    ]
                })
                .collect::<Vec<_>>()
        })
        .collect();
    print!(
        "{}",
        table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"], &rows)
    );
    println!("\nContainers space usage:\n");
    let rows: Vec<Vec<String>> = containers
        .iter()
        .map(|c| {
            vec![
                short_id(c["Id"].as_str().unwrap_or_default()),
                c["Image"].as_str().unwrap_or_default().to_owned(),
                format!("\"{}\"", crate::fmt::ellipsis(c["Command"].as_str().unwrap_or_default(), 20)),
                c["Mounts"].as_array().map(|m| m.len()).unwrap_or(0).to_string(),
                human_size(i64_of(c, "SizeRw")),
                crate::fmt::ago(i64_of(c, "Created")),
                c["State"].as_str().unwrap_or_default().to_owned(),
                c["Names"][0].as_str().unwrap_or_default().trim_start_matches('/').to_owned(),
            ]
        })
        .collect();
    print!(
        "{}",
        table(&["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"], &rows)
    );
    println!("\nLocal Volumes space usage:\n");
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|x| {
            vec![
                x["Name"].as_str().unwrap_or_default().to_owned(),
                x["UsageData"]["RefCount"].as_i64().unwrap_or(0).to_string(),
                human_size(vsize(x)),
            ]
        })
        .collect();
    print!("{}", table(&["VOLUME NAME", "LINKS", "SIZE"], &rows));
    println!("\nBuild cache usage: {}", human_size(cache_total));
    0
}
