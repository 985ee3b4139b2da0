//! The evaluator: stages, their order and parallelism, and each step's cache lookup and
//! commit. What each instruction does is in `steps.rs`.
//!
//! A build reads the Dockerfile from the context, prunes the context by `.dockerignore`,
//! splits the instructions into stages (the global ARGs before the first FROM apply to FROM
//! lines), finds the stages the target needs (its base and `COPY --from` sources,
//! transitively), and builds them in waves: every stage whose dependencies are built runs in
//! its own thread. Each step is looked up in the cache by (parent image, history line, extra)
//! and on a miss carried out and committed as an untagged image whose parent is the previous
//! step's, so a failed build leaves everything before the failure cached. Tags are applied
//! only once the whole build has succeeded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use image::store::{ImageRecord, ImageStore, LayerRecord};
use oci::{Digest, Reference};
use serde_json::{Value, json};

use crate::cache::{self, Cache};
use crate::ignore::Ignore;
use crate::parser::{self, Args, Cmd, Instruction};
use crate::words::Lexer;
use crate::{BuildError, StepRunner};

/// What a build was asked for (the query of `POST /build`, the flags of `berth build`).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The Dockerfile's path inside the context (`Dockerfile` when empty).
    pub dockerfile: String,
    pub tags: Vec<Reference>,
    /// `--build-arg`: a value, or None for "from the client's environment, unset".
    pub build_args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    pub no_cache: bool,
    /// Images whose history may serve as cache.
    pub cache_from: Vec<String>,
    /// `--label`: added to the final image as a last LABEL step (as Docker's legacy builder).
    pub labels: BTreeMap<String, String>,
    /// RUN's network: `default`, `host` or `none`.
    pub network: String,
    /// `--pull`: fetch the base images even when they are here.
    pub pull: bool,
}

/// Where a build's messages go: the legacy builder's stream lines and the aux id.
pub trait Progress: Sync {
    fn stream(&self, text: &str);
    fn aux_id(&self, id: &Digest);
    /// A pull's progress line (`status`, an optional layer `id`, bytes done of total), as
    /// `docker pull` streams it.
    fn status(&self, id: Option<&str>, status: &str, progress: Option<(u64, u64)>) {
        let _ = (id, status, progress);
    }
}

/// The proxy args every RUN sees when given, without an ARG and never in the history.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// This host's platform as OCI names it.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// A Go duration (`30s`, `1m30s`, `500ms`, `1h`) in nanoseconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    if s == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += v * mult;
        rest = &rest[u..];
    }
    Some(total as i64)
}

/// One stage of the Dockerfile.
#[derive(Debug, Clone)]
pub(crate) struct Stage {
    pub index: usize,
    pub name: Option<String>,
    pub from: Instruction,
    /// The base after global-arg substitution.
    pub base: String,
    pub body: Vec<Instruction>,
    pub deps: Vec<usize>,
    /// The number of this stage's FROM step.
    pub first_step: usize,
}

/// Everything a stage's steps share.
pub(crate) struct Run<'a> {
    pub context: &'a Path,
    pub opts: &'a BuildOptions,
    pub escape: char,
    pub globals: Vec<(String, Option<String>)>,
    pub stages: &'a [Stage],
    pub results: &'a Mutex<HashMap<usize, ImageRecord>>,
    pub total: usize,
    pub consumed: &'a Mutex<HashSet<String>>,
    pub cache_from: Vec<ImageRecord>,
    /// Images pulled by this build, by the name it used.
    pub pulled: Mutex<HashMap<String, ImageRecord>>,
}

pub struct Builder<'a> {
    pub store: &'a ImageStore,
    pub cache: &'a Cache,
    pub runner: &'a dyn StepRunner,
    /// A directory on the data root's filesystem for step mounts and upper directories.
    pub scratch: PathBuf,
    pub progress: &'a dyn Progress,
    /// The context files' content digests, taken as the context was received.
    pub known: &'a crate::fsutil::KnownDigests,
}

fn perr(file: &str, e: parser::ParseError) -> BuildError {
    BuildError::Parse { file: file.to_owned(), line: e.line, message: e.message }
}

/// Reads and parses the Dockerfile of a context; errors name the file and line.
pub fn load_dockerfile(context: &Path, name: &str) -> Result<(String, parser::Dockerfile), BuildError> {
    let name = if name.is_empty() { "Dockerfile" } else { name };
    let rel = crate::fsutil::clean_rel(name)
        .ok_or_else(|| BuildError::Invalid(format!("the Dockerfile ({name}) must be within the build context")))?;
    let path = context.join(&rel);
    let text =
        std::fs::read(&path).map_err(|_| BuildError::Invalid(format!("Cannot locate specified Dockerfile: {name}")))?;
    let text = String::from_utf8_lossy(&text).into_owned();
    let df = parser::parse(&text).map_err(|e| perr(name, e))?;
    if df.instructions.is_empty() {
        return Err(BuildError::Invalid(format!("the Dockerfile ({name}) cannot be empty")));
    }
    Ok((name.to_owned(), df))
}

/// Removes from the (private, extracted) context what `.dockerignore` excludes. The
/// Dockerfile's own `<Dockerfile>.dockerignore` wins over the context's `.dockerignore`.
pub fn apply_dockerignore(context: &Path, dockerfile: &str) -> Result<(), BuildError> {
    let own = context.join(format!("{dockerfile}.dockerignore"));
    let text = std::fs::read_to_string(&own).or_else(|_| std::fs::read_to_string(context.join(".dockerignore")));
    let Ok(text) = text else { return Ok(()) };
    let ig = Ignore::parse(&text);
    if ig.is_empty() {
        return Ok(());
    }
    prune(context, "", &ig)
}

fn prune(dir: &Path, rel: &str, ig: &Ignore) -> Result<(), BuildError> {
    let rd =
        std::fs::read_dir(dir).map_err(|e| BuildError::Io { op: "read directory", path: dir.to_owned(), source: e })?;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        let p = e.path();
        let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
        if ig.excluded(&r) {
            if is_dir && ig.may_reinclude_below(&r) {
                prune(&p, &r, ig)?;
                continue;
            }
            let res = if is_dir { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            res.map_err(|e| BuildError::Io { op: "remove ignored", path: p.clone(), source: e })?;
        } else if is_dir {
            prune(&p, &r, ig)?;
        }
    }
    Ok(())
}

/// Quotes a value for a synthetic Dockerfile line.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl Builder<'_> {
    /// An image a build names (FROM, `COPY --from`): the local one, or pulled when it is
    /// missing or `pull` is asked for. Pulls of the same name within a build happen once.
    pub(crate) fn base_image(&self, run: &Run<'_>, name: &str) -> Result<ImageRecord, BuildError> {
        let local = match self.store.resolve(name) {
            Ok(rec) => Some(rec),
            Err(image::ImageError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let mut pulled = run.pulled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rec) = pulled.get(name) {
            return Ok(rec.clone());
        }
        let r = match (Reference::parse_with_default_tag(name), local) {
            (Ok(_), Some(rec)) if !run.opts.pull => return Ok(rec),
            (Ok(r), _) => r,
            // An image id (or anything else that is not a reference) is only ever local.
            (Err(_), Some(rec)) => return Ok(rec),
            (Err(e), None) => return Err(BuildError::NotFound(format!("No such image: {name}: {e}"))),
        };
        // `--pull` with the image here and the registry unreachable fails, as in Docker.
        let rec = self.runner.pull(&r, self.progress)?;
        pulled.insert(name.to_owned(), rec.clone());
        Ok(rec)
    }

    /// Builds the image described by the context's Dockerfile; returns the final image,
    /// tagged as asked.
    pub fn build(&self, context: &Path, opts: &BuildOptions) -> Result<ImageRecord, BuildError> {
        let t = std::time::Instant::now();
        let (file, df) = load_dockerfile(context, &opts.dockerfile)?;
        apply_dockerignore(context, &file)?;
        tracing::debug!("build: dockerfile and .dockerignore in {:?}", t.elapsed());
        let lexer = Lexer::new(df.escape);
        // Global args (before the first FROM) and the stages.
        let mut globals: Vec<(String, Option<String>)> = vec![
            ("TARGETPLATFORM".into(), Some(format!("linux/{}", host_arch()))),
            ("TARGETOS".into(), Some("linux".into())),
            ("TARGETARCH".into(), Some(host_arch().into())),
            ("TARGETVARIANT".into(), Some(String::new())),
            ("BUILDPLATFORM".into(), Some(format!("linux/{}", host_arch()))),
            ("BUILDOS".into(), Some("linux".into())),
            ("BUILDARCH".into(), Some(host_arch().into())),
            ("BUILDVARIANT".into(), Some(String::new())),
        ];
        let consumed = Mutex::new(HashSet::new());
        let mut stages: Vec<Stage> = Vec::new();
        for ins in &df.instructions {
            match ins.cmd {
                Cmd::From => {
                    let lookup = |k: &str| globals.iter().rev().find(|(n, _)| n == k).and_then(|(_, v)| v.clone());
                    let words = lexer
                        .words(&ins.text(), &lookup)
                        .map_err(|m| perr(&file, parser::ParseError { line: ins.line, message: m }))?;
                    let base = words.first().cloned().unwrap_or_default();
                    if base.is_empty() {
                        return Err(perr(
                            &file,
                            parser::ParseError {
                                line: ins.line,
                                message: "base name (\"\") should not be blank".into(),
                            },
                        ));
                    }
                    let name = words.get(2).map(|n| n.to_ascii_lowercase());
                    if let Some(n) = &name
                        && stages.iter().any(|s| s.name.as_deref() == Some(n))
                    {
                        return Err(perr(
                            &file,
                            parser::ParseError { line: ins.line, message: format!("duplicate stage name \"{n}\"") },
                        ));
                    }
                    stages.push(Stage {
                        index: stages.len(),
                        name,
                        from: ins.clone(),
                        base: if base.eq_ignore_ascii_case("scratch") { "scratch".to_owned() } else { base },
                        body: Vec::new(),
                        deps: Vec::new(),
                        first_step: 0,
                    });
                }
                Cmd::Arg if stages.is_empty() => {
                    for w in crate::words::split_raw(&ins.text(), df.escape).unwrap_or_default() {
                        let (k, def) = match w.split_once('=') {
                            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                            None => (w.clone(), None),
                        };
                        let lookup = |k: &str| globals.iter().rev().find(|(n, _)| n == k).and_then(|(_, v)| v.clone());
                        let def = match def {
                            Some(d) => Some(
                                lexer
                                    .word(&d, &lookup)
                                    .map_err(|m| perr(&file, parser::ParseError { line: ins.line, message: m }))?,
                            ),
                            None => None,
                        };
                        let val = match opts.build_args.get(&k) {
                            Some(Some(v)) => Some(v.clone()),
                            _ => def,
                        };
                        consumed.lock().unwrap_or_else(|p| p.into_inner()).insert(k.clone());
                        globals.push((k, val));
                    }
                }
                _ => match stages.last_mut() {
                    Some(s) => s.body.push(ins.clone()),
                    None => {
                        return Err(perr(
                            &file,
                            parser::ParseError {
                                line: ins.line,
                                message: format!(
                                    "{} before the first FROM: no build stage in current context",
                                    ins.cmd.name()
                                ),
                            },
                        ));
                    }
                },
            }
        }
        if stages.is_empty() {
            return Err(BuildError::Invalid(format!("{file}: no FROM instruction: no build stage in current context")));
        }
        // Dependencies: FROM <stage> and COPY --from=<stage|index>.
        let names: Vec<Option<String>> = stages.iter().map(|s| s.name.clone()).collect();
        let find = |name: &str, before: usize| -> Option<usize> {
            let lname = name.to_ascii_lowercase();
            names[..before].iter().position(|s| s.as_deref() == Some(lname.as_str()))
        };
        #[allow(clippy::needless_range_loop)] // stages[..i] is read while stages[i] is written
        for i in 0..stages.len() {
            let mut deps = Vec::new();
            if let Some(d) = find(&stages[i].base, i) {
                deps.push(d);
            }
            for ins in &stages[i].body {
                if let Some(from) = ins.flag("from")
                    && ins.cmd == Cmd::Copy
                {
                    let lookup = |k: &str| globals.iter().rev().find(|(n, _)| n == k).and_then(|(_, v)| v.clone());
                    let from = lexer.word(from, &lookup).unwrap_or_else(|_| from.to_owned());
                    if let Some(d) = find(&from, i) {
                        deps.push(d);
                    } else if let Ok(n) = from.parse::<usize>() {
                        if n >= i {
                            return Err(BuildError::Invalid(format!(
                                "{file}:{}: COPY --from={n} refers to stage {n}, which is not before this one",
                                ins.line
                            )));
                        }
                        deps.push(n);
                    }
                }
            }
            stages[i].deps = deps;
        }
        let target = match &opts.target {
            Some(t) if !t.is_empty() => stages
                .iter()
                .position(|s| s.name.as_deref() == Some(t.to_ascii_lowercase().as_str()))
                .ok_or_else(|| BuildError::Invalid(format!("failed to reach build target {t} in Dockerfile")))?,
            _ => stages.len() - 1,
        };
        if !opts.labels.is_empty() {
            let line = opts.labels.iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect::<Vec<_>>();
            let text = format!("LABEL {}", line.join(" "));
            let (ins, _) = parser::parse_instruction(&text, 0, '\\', &[]).map_err(|e| perr("--label", e))?;
            stages[target].body.push(ins);
        }
        let mut needed = HashSet::new();
        let mut todo = vec![target];
        while let Some(s) = todo.pop() {
            if needed.insert(s) {
                todo.extend(stages[s].deps.iter().copied());
            }
        }
        let mut n = 1;
        for s in stages.iter_mut().filter(|s| needed.contains(&s.index)) {
            s.first_step = n;
            n += 1 + s.body.len();
        }
        let total = n - 1;
        let mut cache_from = Vec::new();
        for c in &opts.cache_from {
            match self.store.resolve(c) {
                Ok(r) => cache_from.push(r),
                Err(_) => self.progress.stream(&format!("[Warning] cache-from image {c} not found\n")),
            }
        }
        let results = Mutex::new(HashMap::new());
        let run = Run {
            context,
            opts,
            escape: df.escape,
            globals,
            stages: &stages,
            results: &results,
            total,
            consumed: &consumed,
            cache_from,
            pulled: Mutex::new(HashMap::new()),
        };
        // Waves: every needed stage whose dependencies are built, in parallel.
        let mut done: HashSet<usize> = HashSet::new();
        while done.len() < needed.len() {
            let ready: Vec<usize> = stages
                .iter()
                .filter(|s| needed.contains(&s.index) && !done.contains(&s.index))
                .filter(|s| s.deps.iter().all(|d| done.contains(d)))
                .map(|s| s.index)
                .collect();
            if ready.is_empty() {
                return Err(BuildError::Invalid("circular dependency between build stages".into()));
            }
            let outcomes: Vec<Result<(), BuildError>> = if ready.len() == 1 {
                vec![self.build_stage(&run, &stages[ready[0]])]
            } else {
                std::thread::scope(|sc| {
                    let hs: Vec<_> = ready
                        .iter()
                        .map(|&i| {
                            let run = &run;
                            let stage = &stages[i];
                            sc.spawn(move || self.build_stage(run, stage))
                        })
                        .collect();
                    hs.into_iter()
                        .map(|h| h.join().unwrap_or_else(|_| Err(BuildError::Runner("a build stage panicked".into()))))
                        .collect()
                })
            };
            for o in outcomes {
                o?;
            }
            done.extend(ready);
        }
        let unused: Vec<String> = {
            let consumed = consumed.lock().unwrap_or_else(|p| p.into_inner());
            opts.build_args
                .keys()
                .filter(|k| !consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
                .cloned()
                .collect()
        };
        if !unused.is_empty() {
            self.progress
                .stream(&format!("[Warning] One or more build-args [{}] were not consumed\n", unused.join(" ")));
        }
        let fin = results
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&target)
            .ok_or_else(|| BuildError::Invalid("No image was generated. Is your Dockerfile empty?".into()))?;
        self.progress.aux_id(&fin.id);
        self.progress.stream(&format!("Successfully built {}\n", fin.id.short()));
        for t in &opts.tags {
            self.store.tag(&fin.id, t)?;
            self.progress.stream(&format!("Successfully tagged {}\n", t.familiar()));
        }
        Ok(fin)
    }

    fn build_stage(&self, run: &Run<'_>, stage: &Stage) -> Result<(), BuildError> {
        let mut st = self.stage_base(run, stage)?;
        for (i, ins) in stage.body.iter().enumerate() {
            self.progress.stream(&format!("Step {}/{} : {}\n", stage.first_step + 1 + i, run.total, ins.original));
            let t = std::time::Instant::now();
            self.dispatch(run, &mut st, ins)?;
            tracing::debug!("build: step {} took {:?}", stage.first_step + 1 + i, t.elapsed());
        }
        let rec = match st.img {
            Some(r) => r,
            None => {
                // FROM scratch and nothing else: an image without layers.
                self.store.create(st.config.clone(), Vec::new(), None)?
            }
        };
        run.results.lock().unwrap_or_else(|p| p.into_inner()).insert(stage.index, rec);
        Ok(())
    }

    /// The cache entry of a step, or an image from `--cache-from` whose history continues the
    /// parent's with this step.
    pub(crate) fn cached(
        &self,
        run: &Run<'_>,
        st: &StageState,
        created_by: &str,
        extra: &str,
        next_run_config: &Value,
    ) -> Result<Option<ImageRecord>, BuildError> {
        if run.opts.no_cache {
            return Ok(None);
        }
        let key = cache::key(st.img.as_ref().map(|r| &r.id), created_by, extra);
        if let Some(id) = self.cache.get(&key)?
            && let Some(rec) = self.store.get(&id)?
            && self.store.layer_dirs(&rec).is_ok()
        {
            return Ok(Some(rec));
        }
        let hist = st.history();
        let l = hist.len();
        for t in &run.cache_from {
            let th = t.config.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
            if th.len() <= l {
                continue;
            }
            let cb = |h: &Value| h.get("created_by").and_then(Value::as_str).unwrap_or_default().to_owned();
            if th[..l].iter().map(cb).ne(hist.iter().map(cb)) || cb(&th[l]) != created_by {
                continue;
            }
            let n = st.layers.len();
            if t.layers.len() < n || t.layers[..n].iter().zip(&st.layers).any(|(a, b)| a.diff_id != b.diff_id) {
                continue;
            }
            if th.len() == l + 1 {
                return Ok(Some(t.clone()));
            }
            let empty = th[l].get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
            let mut layers = st.layers.clone();
            if !empty {
                let Some(layer) = t.layers.get(n) else { continue };
                layers.push(layer.clone());
            }
            let rec = self.commit(st, next_run_config.clone(), layers, th[l].clone())?;
            self.cache.put(&key, &rec.id)?;
            return Ok(Some(rec));
        }
        Ok(None)
    }

    /// Stores a step's image: the stage's config with `run_config`, `layers` and one more
    /// history entry, its parent the stage's current image.
    pub(crate) fn commit(
        &self,
        st: &StageState,
        run_config: Value,
        layers: Vec<LayerRecord>,
        history: Value,
    ) -> Result<ImageRecord, BuildError> {
        let mut config = st.config.clone();
        let created = history.get("created").cloned().unwrap_or_else(|| json!(now()));
        let mut hist = st.history();
        hist.push(history);
        config["created"] = created;
        config["config"] = run_config;
        config["history"] = Value::Array(hist);
        config["rootfs"] =
            json!({"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()});
        Ok(self.store.create(config, layers, st.img.as_ref().map(|r| r.id.clone()))?)
    }
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// A stage being built.
pub(crate) struct StageState {
    /// The image of the last step (the next step's parent); None on FROM scratch.
    pub img: Option<ImageRecord>,
    /// The full image configuration (architecture, os, config, rootfs, history).
    pub config: Value,
    pub layers: Vec<LayerRecord>,
    /// ARGs declared in this stage, with their values.
    pub args: Vec<(String, Option<String>)>,
    pub cmd_set: bool,
}

impl StageState {
    pub fn history(&self) -> Vec<Value> {
        self.config.get("history").and_then(Value::as_array).cloned().unwrap_or_default()
    }

    pub fn run_config(&self) -> Value {
        match self.config.get("config") {
            Some(v) if v.is_object() => v.clone(),
            _ => json!({}),
        }
    }

    pub fn env(&self) -> Vec<String> {
        self.config
            .get("config")
            .and_then(|c| c.get("Env"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }

    /// The value of a variable for substitution: ENV first, then the stage's ARGs.
    pub fn lookup(&self, k: &str) -> Option<String> {
        for e in self.env().iter().rev() {
            if let Some((n, v)) = e.split_once('=')
                && n == k
            {
                return Some(v.to_owned());
            }
        }
        self.args.iter().rev().find(|(n, _)| n == k).and_then(|(_, v)| v.clone())
    }

    /// The shell for shell-form commands (`SHELL`, default `/bin/sh -c`).
    pub fn shell(&self) -> Vec<String> {
        self.config
            .get("config")
            .and_then(|c| c.get("Shell"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect::<Vec<_>>())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
    }
}

/// Go's `%q` of a string list, as Docker's history shows CMD and ENTRYPOINT.
pub(crate) fn go_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
    format!("[{}]", items.join(" "))
}

/// The argv of an exec- or shell-form command.
pub(crate) fn command_of(st: &StageState, ins: &Instruction) -> Vec<String> {
    match &ins.args {
        Args::Exec(v) => v.clone(),
        Args::Shell(s) => {
            let mut v = st.shell();
            v.push(s.clone());
            v
        }
    }
}
