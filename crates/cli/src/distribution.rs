//! `pull`, `push`, `login`, `logout`, and the display of Docker's JSON progress stream:
//! per-layer bars (indicatif) on a terminal, one line per change of status otherwise.

use std::collections::HashMap;
use std::io::IsTerminal;

use api::client::{Client, ClientError, empty, full};
use api::types::ProgressLine;
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;

use crate::commands::enc;
use crate::credentials;

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Download all tagged images in the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Set platform if server is multi-platform capable
    #[arg(long)]
    pub platform: Option<String>,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Push all tags of an image to the repository
    #[arg(short = 'a', long)]
    pub all_tags: bool,
    /// Suppress verbose output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Username
    #[arg(short = 'u', long)]
    pub username: Option<String>,
    /// Password
    #[arg(short = 'p', long)]
    pub password: Option<String>,
    /// Take the password from stdin
    #[arg(long)]
    pub password_stdin: bool,
    /// Server (default: Docker Hub)
    pub server: Option<String>,
}

/// `name[:tag|@digest]` → (name, tag or digest, whether one was given).
pub fn split_ref(s: &str) -> (String, String, bool) {
    if let Some((n, d)) = s.split_once('@') {
        return (n.to_owned(), d.to_owned(), true);
    }
    let slash = s.rfind('/');
    match s.rfind(':') {
        Some(i) if slash.is_none_or(|sl| i > sl) => (s[..i].to_owned(), s[i + 1..].to_owned(), true),
        _ => (s.to_owned(), "latest".to_owned(), false),
    }
}

/// `docker.io/library/busybox` for `busybox`, as `docker pull` prints it.
fn full_name(name: &str) -> String {
    if credentials::host_of_image(name) != "docker.io" {
        return name.to_owned();
    }
    let path = name.strip_prefix("docker.io/").unwrap_or(name);
    if path.contains('/') { format!("docker.io/{path}") } else { format!("docker.io/library/{path}") }
}

fn auth_headers(image: &str) -> Vec<(&'static str, String)> {
    credentials::registry_auth(image).map(|h| vec![("X-Registry-Auth", h)]).unwrap_or_default()
}

fn report(e: &ClientError) {
    match e {
        ClientError::Status { message, .. } => eprintln!("Error response from daemon: {message}"),
        other => eprintln!("{other}"),
    }
}

/// Pulls `image` (as `docker run` does after "Unable to find image"), progress on stderr.
pub async fn pull_for_run(c: &Client, image: &str) -> Result<(), String> {
    let (name, tag, _) = split_ref(image);
    let path = format!("/images/create?fromImage={}&tag={}", enc(&name), enc(&tag));
    let resp = c.request(Method::POST, &path, auth_headers(&name), empty()).await.map_err(|e| match e {
        ClientError::Status { message, .. } => format!("Error response from daemon: {message}"),
        other => other.to_string(),
    })?;
    show(resp, Target::Stderr, false).await.map(|_| ())
}

pub async fn pull(c: &Client, a: PullArgs) -> i32 {
    let (name, tag, given) = split_ref(&a.name);
    if !given && !a.all_tags && !a.quiet {
        println!("Using default tag: latest");
    }
    let mut path = format!("/images/create?fromImage={}", enc(&name));
    if !a.all_tags {
        path.push_str(&format!("&tag={}", enc(&tag)));
    }
    if let Some(p) = &a.platform {
        path.push_str(&format!("&platform={}", enc(p)));
    }
    let resp = match c.request(Method::POST, &path, auth_headers(&name), empty()).await {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    match show(resp, Target::Stdout, a.quiet).await {
        Ok(_) => {
            let sep = if tag.starts_with("sha256:") { "@" } else { ":" };
            println!("{}{sep}{tag}", full_name(&name));
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

pub async fn push(c: &Client, a: PushArgs) -> i32 {
    let (name, tag, given) = split_ref(&a.name);
    if !given && !a.all_tags && !a.quiet {
        println!("Using default tag: latest");
    }
    let tag = if a.all_tags { String::new() } else { tag };
    let path = format!("/images/{name}/push?tag={}", enc(&tag));
    let resp = match c.request(Method::POST, &path, auth_headers(&name), empty()).await {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    match show(resp, Target::Stdout, a.quiet).await {
        Ok(lines) => {
            if a.quiet {
                for l in lines {
                    if let Some(d) = l.aux.as_ref().and_then(|x| x.get("Digest")).and_then(|d| d.as_str()) {
                        println!("{}@{d}", full_name(&name));
                    }
                }
            }
            0
        }
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn read_line(prompt: &str, echo: bool) -> Result<String, String> {
    use std::io::Write;
    eprint!("{prompt}");
    let _ = std::io::stderr().flush();
    let stdin = std::io::stdin();
    let saved = if echo { None } else { nix::sys::termios::tcgetattr(&stdin).ok() };
    if let Some(t) = &saved {
        let mut t2 = t.clone();
        t2.local_flags.remove(nix::sys::termios::LocalFlags::ECHO);
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, &t2);
    }
    let mut s = String::new();
    let r = stdin.read_line(&mut s);
    if let Some(t) = &saved {
        let _ = nix::sys::termios::tcsetattr(&stdin, nix::sys::termios::SetArg::TCSANOW, t);
        eprintln!();
    }
    r.map_err(|e| e.to_string())?;
    Ok(s.trim_end_matches(['\r', '\n']).to_owned())
}

pub async fn login(c: &Client, a: LoginArgs) -> i32 {
    let server = a.server.clone().unwrap_or_else(|| credentials::DOCKER_HUB.to_owned());
    let key = credentials::key_for_server(&server);
    let tty = std::io::stdin().is_terminal();
    let stored = credentials::get(&key).ok().flatten();
    let username = match a.username.clone() {
        Some(u) => u,
        None if !a.password_stdin
            && a.password.is_none()
            && stored.as_ref().is_some_and(|s| !s.username.is_empty()) =>
        {
            stored.as_ref().map(|s| s.username.clone()).unwrap_or_default()
        }
        None if tty => match read_line("Username: ", true) {
            Ok(u) => u,
            Err(e) => {
                eprintln!("Error: {e}");
                return 1;
            }
        },
        None => {
            eprintln!("Error: Cannot perform an interactive login from a non TTY device");
            return 1;
        }
    };
    let password = if a.password_stdin {
        if a.password.is_some() {
            eprintln!("Error: --password and --password-stdin are mutually exclusive");
            return 1;
        }
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            eprintln!("Error: {e}");
            return 1;
        }
        s.trim_end_matches(['\r', '\n']).to_owned()
    } else if let Some(p) = a.password.clone() {
        eprintln!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
        p
    } else if a.username.is_none() && stored.as_ref().is_some_and(|s| s.username == username) {
        stored.as_ref().map(|s| s.password.clone()).unwrap_or_default()
    } else if tty {
        match read_line("Password: ", false) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("Error: {e}");
                return 1;
            }
        }
    } else {
        eprintln!("Error: Cannot perform an interactive login from a non TTY device");
        return 1;
    };
    if username.is_empty() {
        eprintln!("Error: Username is required");
        return 1;
    }
    let body = serde_json::json!({"username": username, "password": password, "serveraddress": server});
    let resp = c
        .request(
            Method::POST,
            "/auth",
            vec![("Content-Type", "application/json".to_owned())],
            full(serde_json::to_vec(&body).unwrap_or_default()),
        )
        .await;
    if let Err(e) = resp {
        report(&e);
        return 1;
    }
    if let Err(e) = credentials::store(&key, &credentials::Auth { username, password, ..Default::default() }) {
        eprintln!("Error saving credentials: {e}");
        return 1;
    }
    println!("Login Succeeded");
    0
}

pub async fn logout(server: Option<String>) -> i32 {
    let key = credentials::key_for_server(server.as_deref().unwrap_or_default());
    match credentials::erase(&key) {
        Ok(true) => {
            println!("Removing login credentials for {key}");
            0
        }
        Ok(false) => {
            println!("Not logged in to {key}");
            0
        }
        Err(e) => {
            eprintln!("Error: {e}");
            1
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Target {
    Stdout,
    Stderr,
}

/// Follows a JSON progress stream until it ends; returns its lines, or the error it carried.
pub async fn show(
    resp: hyper::Response<hyper::body::Incoming>,
    target: Target,
    quiet: bool,
) -> Result<Vec<ProgressLine>, String> {
    let tty = !quiet
        && match target {
            Target::Stdout => std::io::stdout().is_terminal(),
            Target::Stderr => std::io::stderr().is_terminal(),
        };
    let mut view = if tty { View::bars(target) } else { View::Plain { last: HashMap::new(), target, quiet } };
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(d) = frame.into_data() {
            buf.extend_from_slice(&d);
        }
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(p) = serde_json::from_slice::<ProgressLine>(line.trim_ascii()) else { continue };
            if let Some(e) = &p.error {
                view.finish();
                return Err(e.clone());
            }
            view.show(&p);
            lines.push(p);
        }
    }
    view.finish();
    Ok(lines)
}

enum View {
    Plain { last: HashMap<String, String>, target: Target, quiet: bool },
    Bars { mp: indicatif::MultiProgress, bars: HashMap<String, indicatif::ProgressBar> },
}

impl View {
    fn bars(target: Target) -> View {
        let draw = match target {
            Target::Stdout => indicatif::ProgressDrawTarget::stdout(),
            Target::Stderr => indicatif::ProgressDrawTarget::stderr(),
        };
        View::Bars { mp: indicatif::MultiProgress::with_draw_target(draw), bars: HashMap::new() }
    }

    fn show(&mut self, p: &ProgressLine) {
        let status = p.status.clone().unwrap_or_default();
        match self {
            View::Plain { last, target, quiet } => {
                if *quiet || status.is_empty() {
                    return;
                }
                let text = match &p.id {
                    Some(id) => {
                        // One line per change of status, not per progress tick.
                        if last.get(id) == Some(&status) {
                            return;
                        }
                        last.insert(id.clone(), status.clone());
                        format!("{id}: {status}")
                    }
                    None => status,
                };
                match target {
                    Target::Stdout => println!("{text}"),
                    Target::Stderr => eprintln!("{text}"),
                }
            }
            View::Bars { mp, bars } => {
                let Some(id) = &p.id else {
                    if !status.is_empty() {
                        let _ = mp.println(&status);
                    }
                    return;
                };
                let bar = bars.entry(id.clone()).or_insert_with(|| {
                    let b = mp.add(indicatif::ProgressBar::new(0));
                    b.set_prefix(id.clone());
                    b
                });
                let detail = p.progress_detail.as_ref();
                let num = |k: &str| detail.and_then(|d| d.get(k)).and_then(|v| v.as_u64());
                // A bar while bytes move, the status alone otherwise (as docker draws it).
                let template = match (num("current"), num("total")) {
                    (Some(cur), Some(total)) if total > 0 => {
                        bar.set_length(total);
                        bar.set_position(cur);
                        "{prefix}: {msg:<12} [{bar:50}] {bytes:>10}/{total_bytes}"
                    }
                    _ => "{prefix}: {msg}",
                };
                bar.set_style(
                    indicatif::ProgressStyle::with_template(template)
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                bar.set_message(status);
            }
        }
    }

    fn finish(&mut self) {
        if let View::Bars { bars, .. } = self {
            for b in bars.values() {
                b.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_like_docker() {
        assert_eq!(split_ref("busybox"), ("busybox".into(), "latest".into(), false));
        assert_eq!(split_ref("127.0.0.1:5000/a:v1"), ("127.0.0.1:5000/a".into(), "v1".into(), true));
        assert_eq!(split_ref("127.0.0.1:5000/a"), ("127.0.0.1:5000/a".into(), "latest".into(), false));
        assert_eq!(split_ref("a@sha256:00"), ("a".into(), "sha256:00".into(), true));
        assert_eq!(full_name("busybox"), "docker.io/library/busybox");
        assert_eq!(full_name("user/app"), "docker.io/user/app");
        assert_eq!(full_name("localhost:5000/app"), "localhost:5000/app");
    }
}
