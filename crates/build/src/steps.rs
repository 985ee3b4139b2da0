//! What each instruction does to a stage: the history line (which keys the cache), the next
//! config, and for RUN, COPY, ADD and WORKDIR the filesystem change made in an overlay mount
//! whose upper directory becomes the layer.

use std::path::{Path, PathBuf};

use image::diff::Take;
use image::store::ImageRecord;
use serde_json::{Map, Value, json};

use crate::builder::{Builder, DEFAULT_PATH, PROXY_ARGS, Run, Stage, StageState, command_of, go_list, host_arch, now};
use crate::fsutil::{self, CopyOpts};
use crate::ignore::{glob, has_glob};
use crate::parser::{self, Args, Cmd, Instruction};
use crate::words::Lexer;
use crate::{BuildError, RunStep};

/// An overlay mount for one step (or a read-only view of a stage for `COPY --from`): removed,
/// with its directory, when dropped.
pub(crate) struct StepMount {
    dir: PathBuf,
    pub upper: PathBuf,
    pub merged: PathBuf,
    pub lowers: Vec<PathBuf>,
    mounted: bool,
}

impl StepMount {
    fn new(b: &Builder<'_>, layers: &[image::store::LayerRecord]) -> Result<StepMount, BuildError> {
        let lowers = if layers.is_empty() {
            vec![b.store.snapshots().empty_dir()?]
        } else {
            layers.iter().map(|l| b.store.snapshots().fs(&l.chain_id)).collect()
        };
        let dir = b.scratch.join(format!("step-{}", random_hex(8)));
        let upper = dir.join("upper");
        let merged = dir.join("merged");
        let mut m =
            StepMount { dir: dir.clone(), upper: upper.clone(), merged: merged.clone(), lowers, mounted: false };
        image::snapshot::mount_overlay(&m.lowers, &upper, &dir.join("work"), &merged, false)?;
        m.mounted = true;
        Ok(m)
    }

    fn unmount(&mut self) -> Result<(), BuildError> {
        if self.mounted {
            image::snapshot::unmount(&self.merged)?;
            self.mounted = false;
        }
        Ok(())
    }
}

impl Drop for StepMount {
    fn drop(&mut self) {
        let _ = self.unmount();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn random_hex(n: usize) -> String {
    let v: Vec<u8> = (0..n).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

fn invalid(ins: &Instruction, m: impl std::fmt::Display) -> BuildError {
    BuildError::Invalid(format!("{} (line {}): {m}", ins.cmd.name(), ins.line))
}

fn nop(s: &str) -> String {
    format!("/bin/sh -c #(nop) {s}")
}

fn obj(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("made an object above")
}

/// Cleans an absolute path (`/a/./b/../c` → `/a/c`).
fn clean_abs(p: &str) -> String {
    format!("/{}", crate::ignore::clean(p))
}

/// A source of COPY or ADD, resolved to a host path.
struct Src {
    /// The name it gets at the destination when copied into a directory.
    name: String,
    path: PathBuf,
    is_dir: bool,
    /// ADD of a local tar: extracted at the destination.
    extract: bool,
}

impl Builder<'_> {
    pub(crate) fn stage_base(&self, run: &Run<'_>, stage: &Stage) -> Result<StageState, BuildError> {
        let ins = &stage.from;
        self.progress.stream(&format!("Step {}/{} : {}\n", stage.first_step, run.total, ins.original));
        let lex = Lexer::new(run.escape);
        let globals = |k: &str| run.globals.iter().rev().find(|(n, _)| n == k).and_then(|(_, v)| v.clone());
        if let Some(p) = ins.flag("platform") {
            let p = lex.word(p, &globals).map_err(|m| invalid(ins, m))?;
            let host = format!("linux/{}", host_arch());
            if !p.is_empty() && p != host && !p.starts_with(&format!("{host}/")) {
                return Err(BuildError::Unsupported(format!("FROM --platform={p}: this host builds for {host} only")));
            }
        }
        let (img, config) = if stage.base == "scratch" {
            let config = json!({
                "architecture": host_arch(),
                "os": "linux",
                "config": {},
                "rootfs": {"type": "layers", "diff_ids": []},
                "history": [],
            });
            (None, config)
        } else {
            let rec = match stage
                .deps
                .first()
                .filter(|d| run.stages[**d].name.as_deref() == Some(stage.base.to_ascii_lowercase().as_str()))
            {
                Some(d) => run
                    .results
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(d)
                    .cloned()
                    .ok_or_else(|| BuildError::Invalid(format!("stage {} was not built", stage.base)))?,
                None => self.base_image(run, &stage.base)?,
            };
            self.progress.stream(&format!(" ---> {}\n", rec.id.short()));
            let config = rec.config.clone();
            (Some(rec), config)
        };
        let layers = img.as_ref().map(|r| r.layers.clone()).unwrap_or_default();
        let mut st = StageState { img, config, layers, args: Vec::new(), cmd_set: false };
        {
            let rc = obj(&mut st.config["config"]);
            let env = rc.entry("Env").or_insert_with(|| json!([]));
            if let Some(list) = env.as_array_mut()
                && !list.iter().any(|e| e.as_str().is_some_and(|s| s.starts_with("PATH=")))
            {
                list.insert(0, json!(format!("PATH={DEFAULT_PATH}")));
            }
        }
        let triggers: Vec<String> = st.config["config"]
            .get("OnBuild")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if let Some(rc) = st.config["config"].as_object_mut() {
            rc.remove("OnBuild");
        }
        if !triggers.is_empty() {
            let s = if triggers.len() == 1 { "" } else { "s" };
            self.progress.stream(&format!("# Executing {} build trigger{s}\n", triggers.len()));
            for t in triggers {
                let (tins, _) = parser::parse_instruction(&t, ins.line, run.escape, &[])
                    .map_err(|e| invalid(ins, format!("ONBUILD trigger `{t}`: {}", e.message)))?;
                self.dispatch(run, &mut st, &tins)?;
            }
        }
        Ok(st)
    }

    /// Adopts a step's image (from the cache or a commit) as the stage's current one.
    fn adopt(&self, st: &mut StageState, rec: ImageRecord, cached: bool) {
        if cached {
            self.progress.stream(" ---> Using cache\n");
        }
        self.progress.stream(&format!(" ---> {}\n", rec.id.short()));
        st.config = rec.config.clone();
        st.layers = rec.layers.clone();
        st.img = Some(rec);
    }

    /// A step that changes the config only.
    fn meta_step(&self, run: &Run<'_>, st: &mut StageState, created_by: String, rc: Value) -> Result<(), BuildError> {
        if let Some(rec) = self.cached(run, st, &created_by, "", &rc)? {
            self.adopt(st, rec, true);
            return Ok(());
        }
        let key = crate::cache::key(st.img.as_ref().map(|r| &r.id), &created_by, "");
        let hist = json!({"created": now(), "created_by": created_by, "empty_layer": true});
        let rec = self.commit(st, rc, st.layers.clone(), hist)?;
        self.cache.put(&key, &rec.id)?;
        self.adopt(st, rec, false);
        Ok(())
    }

    /// A step that changes the filesystem: `action` works in an overlay mount of the stage.
    #[allow(clippy::too_many_arguments)]
    fn layer_step(
        &self,
        run: &Run<'_>,
        st: &mut StageState,
        created_by: String,
        extra: &str,
        rc: Value,
        prune: bool,
        action: &mut dyn FnMut(&StepMount) -> Result<(), BuildError>,
    ) -> Result<(), BuildError> {
        if let Some(rec) = self.cached(run, st, &created_by, extra, &rc)? {
            self.adopt(st, rec, true);
            return Ok(());
        }
        let key = crate::cache::key(st.img.as_ref().map(|r| &r.id), &created_by, extra);
        let mut m = StepMount::new(self, &st.layers)?;
        action(&m)?;
        m.unmount()?;
        if prune {
            image::diff::prune_mount_points(&m.upper, &m.lowers);
        }
        let parent_chain = st.layers.last().map(|l| l.chain_id.clone());
        let layer = self.store.layer_from_upper(parent_chain.as_ref(), &m.upper, Take::Move)?;
        let mut layers = st.layers.clone();
        let mut hist = json!({"created": now(), "created_by": created_by});
        match layer {
            Some(l) => layers.push(l),
            None => hist["empty_layer"] = json!(true),
        }
        let rec = self.commit(st, rc, layers, hist)?;
        self.cache.put(&key, &rec.id)?;
        self.adopt(st, rec, false);
        Ok(())
    }

    pub(crate) fn dispatch(&self, run: &Run<'_>, st: &mut StageState, ins: &Instruction) -> Result<(), BuildError> {
        let lex = Lexer::new(run.escape);
        let text = ins.text();
        let mut rc = st.run_config();
        let word = |st: &StageState, s: &str| lex.word(s, &|k| st.lookup(k)).map_err(|m| invalid(ins, m));
        match ins.cmd {
            Cmd::Env | Cmd::Label => {
                let pairs = parser::parse_key_values(&text, run.escape, ins.cmd).map_err(|m| invalid(ins, m))?;
                let mut shown = Vec::new();
                for (k, v) in pairs {
                    let (k, v) = (word(st, &k)?, word(st, &v)?);
                    if ins.cmd == Cmd::Env {
                        let env = obj(&mut rc).entry("Env").or_insert_with(|| json!([]));
                        if let Some(list) = env.as_array_mut() {
                            list.retain(|e| {
                                e.as_str().and_then(|s| s.split_once('=')).map(|(n, _)| n) != Some(k.as_str())
                            });
                            list.push(json!(format!("{k}={v}")));
                        }
                        shown.push(format!("{k}={v}"));
                    } else {
                        let labels = obj(&mut rc).entry("Labels").or_insert_with(|| json!({}));
                        obj(labels).insert(k.clone(), json!(v));
                        shown.push(format!("{k}={v}"));
                    }
                }
                let created_by = nop(&format!(" {} {}", ins.cmd.name(), shown.join(" ")));
                self.meta_step(run, st, created_by, rc)
            }
            Cmd::Arg => {
                let mut shown = Vec::new();
                for w in crate::words::split_raw(&text, run.escape).map_err(|m| invalid(ins, m))? {
                    let (k, def) = match w.split_once('=') {
                        Some((k, v)) => (k.to_owned(), Some(word(st, v)?)),
                        None => (w.clone(), None),
                    };
                    let global = run.globals.iter().rev().find(|(n, _)| *n == k).and_then(|(_, v)| v.clone());
                    let val = match run.opts.build_args.get(&k) {
                        Some(Some(v)) => Some(v.clone()),
                        _ => def.clone().or(global),
                    };
                    run.consumed.lock().unwrap_or_else(|p| p.into_inner()).insert(k.clone());
                    shown.push(match &def {
                        Some(d) => format!("{k}={d}"),
                        None => k.clone(),
                    });
                    st.args.push((k, val));
                }
                self.meta_step(run, st, nop(&format!(" ARG {}", shown.join(" "))), rc)
            }
            Cmd::Maintainer => {
                let who = word(st, &text)?;
                st.config["author"] = json!(who);
                self.meta_step(run, st, nop(&format!(" MAINTAINER {who}")), rc)
            }
            Cmd::User => {
                let u = word(st, &text)?;
                obj(&mut rc).insert("User".into(), json!(u));
                self.meta_step(run, st, nop(&format!(" USER {u}")), rc)
            }
            Cmd::Stopsignal => {
                let s = word(st, &text)?;
                let name = s.trim_start_matches("SIG");
                let ok = s.parse::<u32>().is_ok_and(|n| n > 0 && n < 65)
                    || (!name.is_empty()
                        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '+' || c == '-'));
                if !ok {
                    return Err(invalid(ins, format!("invalid signal: {s}")));
                }
                obj(&mut rc).insert("StopSignal".into(), json!(s));
                self.meta_step(run, st, nop(&format!(" STOPSIGNAL {s}")), rc)
            }
            Cmd::Expose => {
                let mut keys = Vec::new();
                for w in lex.words(&text, &|k| st.lookup(k)).map_err(|m| invalid(ins, m))? {
                    for p in w.split_whitespace() {
                        let (port, proto) = p.split_once('/').unwrap_or((p, "tcp"));
                        let proto = proto.to_ascii_lowercase();
                        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
                            return Err(invalid(ins, format!("invalid proto: {proto}")));
                        }
                        let (lo, hi) = match port.split_once('-') {
                            Some((a, b)) => (a.parse::<u16>(), b.parse::<u16>()),
                            None => (port.parse::<u16>(), port.parse::<u16>()),
                        };
                        let (Ok(lo), Ok(hi)) = (lo, hi) else {
                            return Err(invalid(ins, format!("invalid containerPort: {port}")));
                        };
                        for n in lo..=hi.max(lo) {
                            let ports = obj(&mut rc).entry("ExposedPorts").or_insert_with(|| json!({}));
                            obj(ports).insert(format!("{n}/{proto}"), json!({}));
                            keys.push(format!("{n}/{proto}"));
                        }
                    }
                }
                // As Docker shows them: sorted, `/tcp` left out.
                keys.sort();
                keys.dedup();
                let shown: Vec<&str> = keys.iter().map(|k| k.strip_suffix("/tcp").unwrap_or(k)).collect();
                self.meta_step(run, st, nop(&format!(" EXPOSE {}", shown.join(" "))), rc)
            }
            Cmd::Volume => {
                let list = match &ins.args {
                    Args::Exec(v) => v.iter().map(|s| word(st, s)).collect::<Result<Vec<_>, _>>()?,
                    Args::Shell(s) => lex.words(s, &|k| st.lookup(k)).map_err(|m| invalid(ins, m))?,
                };
                for v in &list {
                    if v.trim().is_empty() {
                        return Err(invalid(ins, "VOLUME specified can not be an empty string"));
                    }
                    let vols = obj(&mut rc).entry("Volumes").or_insert_with(|| json!({}));
                    obj(vols).insert(v.clone(), json!({}));
                }
                self.meta_step(run, st, nop(&format!(" VOLUME [{}]", list.join(" "))), rc)
            }
            Cmd::Cmd => {
                let cmd = command_of(st, ins);
                obj(&mut rc).insert("Cmd".into(), json!(cmd));
                st.cmd_set = true;
                self.meta_step(run, st, nop(&format!(" CMD {}", go_list(&cmd))), rc)
            }
            Cmd::Entrypoint => {
                let ep = command_of(st, ins);
                let r = obj(&mut rc);
                if ep.is_empty() {
                    r.insert("Entrypoint".into(), Value::Null);
                } else {
                    r.insert("Entrypoint".into(), json!(ep));
                }
                if !st.cmd_set {
                    r.insert("Cmd".into(), Value::Null);
                }
                self.meta_step(run, st, nop(&format!(" ENTRYPOINT {}", go_list(&ep))), rc)
            }
            Cmd::Shell => {
                let Args::Exec(v) = &ins.args else {
                    return Err(invalid(ins, "SHELL requires the arguments to be in JSON form"));
                };
                obj(&mut rc).insert("Shell".into(), json!(v));
                self.meta_step(run, st, nop(&format!(" SHELL {}", go_list(v))), rc)
            }
            Cmd::Onbuild => {
                let t = text.trim().to_owned();
                let list = obj(&mut rc).entry("OnBuild").or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(t));
                }
                self.meta_step(run, st, nop(&format!(" ONBUILD {t}")), rc)
            }
            Cmd::Healthcheck => {
                let t = text.trim();
                let hc = if t.eq_ignore_ascii_case("NONE") {
                    json!({"Test": ["NONE"]})
                } else {
                    let rest = t[3..].trim();
                    let test: Vec<String> = match serde_json::from_str::<Vec<String>>(rest) {
                        Ok(v) if rest.starts_with('[') => std::iter::once("CMD".to_owned()).chain(v).collect(),
                        _ => vec!["CMD-SHELL".into(), rest.to_owned()],
                    };
                    let mut h = json!({"Test": test});
                    for (flag, key) in [
                        ("interval", "Interval"),
                        ("timeout", "Timeout"),
                        ("start-period", "StartPeriod"),
                        ("start-interval", "StartInterval"),
                    ] {
                        if let Some(v) = ins.flag(flag) {
                            let d = crate::builder::parse_duration(v)
                                .ok_or_else(|| invalid(ins, format!("invalid --{flag}: {v}")))?;
                            if d != 0 && d < 1_000_000 {
                                return Err(invalid(ins, format!("--{flag} cannot be less than 1ms")));
                            }
                            if d != 0 {
                                h[key] = json!(d);
                            }
                        }
                    }
                    if let Some(r) = ins.flag("retries") {
                        let n: i64 = r.parse().map_err(|_| invalid(ins, format!("invalid --retries: {r}")))?;
                        if n != 0 {
                            h["Retries"] = json!(n);
                        }
                    }
                    h
                };
                obj(&mut rc).insert("Healthcheck".into(), hc.clone());
                self.meta_step(run, st, nop(&format!(" HEALTHCHECK {}", healthcheck_text(&hc))), rc)
            }
            Cmd::Workdir => {
                let p = word(st, &text)?;
                let cur = rc.get("WorkingDir").and_then(Value::as_str).unwrap_or("/").to_owned();
                let dir = if p.starts_with('/') { clean_abs(&p) } else { clean_abs(&format!("{cur}/{p}")) };
                obj(&mut rc).insert("WorkingDir".into(), json!(dir));
                let d = dir.clone();
                self.layer_step(run, st, nop(&format!("WORKDIR {dir}")), "", rc, false, &mut |m| {
                    fsutil::mkdir_all(&fsutil::resolve_in_root(&m.merged, &d, true), 0, 0)
                })
            }
            Cmd::Run => self.run_step(run, st, ins, rc),
            Cmd::Copy | Cmd::Add => self.copy_step(run, st, ins, rc),
            Cmd::From => Err(invalid(ins, "FROM inside a stage")),
        }
    }

    fn run_step(&self, run: &Run<'_>, st: &mut StageState, ins: &Instruction, rc: Value) -> Result<(), BuildError> {
        let argv = match (&ins.args, ins.heredocs.is_empty()) {
            (Args::Shell(s), false) => {
                let sole: String =
                    s.chars().filter(|c| !matches!(c, '<' | '-' | '"' | '\'') && !c.is_whitespace()).collect();
                let mut v = st.shell();
                if ins.heredocs.len() == 1 && sole == ins.heredocs[0].name {
                    v.push(ins.heredocs[0].content.clone());
                } else {
                    let mut script = s.clone();
                    for h in &ins.heredocs {
                        script.push('\n');
                        script.push_str(&h.content);
                        script.push_str(&h.name);
                    }
                    v.push(script);
                }
                v
            }
            _ => command_of(st, ins),
        };
        // Build args the stage declared (ENV of the same name wins), then proxies given.
        let env_names: Vec<String> =
            st.env().iter().filter_map(|e| e.split_once('=').map(|(k, _)| k.to_owned())).collect();
        let mut declared: Vec<(String, String)> = Vec::new();
        for (k, v) in &st.args {
            if let Some(v) = v
                && !env_names.contains(k)
            {
                declared.retain(|(n, _)| n != k);
                declared.push((k.clone(), v.clone()));
            }
        }
        declared.sort();
        let mut env = st.env();
        env.extend(declared.iter().map(|(k, v)| format!("{k}={v}")));
        for p in PROXY_ARGS {
            if let Some(Some(v)) = run.opts.build_args.get(*p)
                && !declared.iter().any(|(k, _)| k == p)
            {
                env.push(format!("{p}={v}"));
            }
        }
        let joined = argv.join(" ");
        let created_by = if declared.is_empty() {
            joined.clone()
        } else {
            let kv: Vec<String> = declared.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("|{} {} {joined}", declared.len(), kv.join(" "))
        };
        let network = ins.flag("network").map(str::to_owned).unwrap_or_else(|| run.opts.network.clone());
        let user = rc.get("User").and_then(Value::as_str).unwrap_or_default().to_owned();
        let workdir = rc.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("/").to_owned();
        let id = random_hex(32);
        let extra = format!("network={network}");
        let mut ran = false;
        self.layer_step(run, st, created_by, &extra, rc, true, &mut |m| {
            self.progress.stream(&format!(" ---> Running in {}\n", &id[..12]));
            fsutil::mkdir_all(&fsutil::resolve_in_root(&m.merged, &workdir, true), 0, 0)?;
            let step = RunStep {
                id: id.clone(),
                rootfs: m.merged.clone(),
                argv: argv.clone(),
                env: env.clone(),
                user: user.clone(),
                workdir: workdir.clone(),
                network: network.clone(),
            };
            let code = self.runner.run(&step, &mut |b| self.progress.stream(&String::from_utf8_lossy(b)))?;
            if code != 0 {
                return Err(BuildError::RunFailed { command: joined.clone(), code });
            }
            ran = true;
            Ok(())
        })?;
        if ran {
            self.progress.stream(&format!("Removing intermediate container {}\n", &id[..12]));
        }
        Ok(())
    }

    fn copy_step(&self, run: &Run<'_>, st: &mut StageState, ins: &Instruction, rc: Value) -> Result<(), BuildError> {
        let lex = Lexer::new(run.escape);
        let is_add = ins.cmd == Cmd::Add;
        let words: Vec<String> = match &ins.args {
            Args::Exec(v) => v.iter().map(|s| lex.word(s, &|k| st.lookup(k))).collect::<Result<_, _>>(),
            Args::Shell(s) => lex.words(s, &|k| st.lookup(k)),
        }
        .map_err(|m| invalid(ins, m))?;
        let (dest_raw, srcs) = words.split_last().ok_or_else(|| invalid(ins, "requires a destination"))?;
        let workdir = rc.get("WorkingDir").and_then(Value::as_str).filter(|s| !s.is_empty()).unwrap_or("/").to_owned();
        let dest_is_dir_syntax = dest_raw.ends_with('/') || dest_raw.ends_with("/.") || dest_raw == ".";
        let dest =
            if dest_raw.starts_with('/') { clean_abs(dest_raw) } else { clean_abs(&format!("{workdir}/{dest_raw}")) };
        // The source root: the context, or a stage's or image's filesystem.
        let from = ins.flag("from").map(|f| lex.word(f, &|k| st.lookup(k))).transpose().map_err(|m| invalid(ins, m))?;
        let mut _from_mount = None;
        let (root, where_) = match &from {
            None => (run.context.to_path_buf(), "build context".to_owned()),
            Some(f) => {
                let lf = f.to_ascii_lowercase();
                let stage_idx = run
                    .stages
                    .iter()
                    .position(|s| s.name.as_deref() == Some(lf.as_str()))
                    .or_else(|| f.parse::<usize>().ok());
                let rec = match stage_idx {
                    Some(i) => run
                        .results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&i)
                        .cloned()
                        .ok_or_else(|| invalid(ins, format!("stage {f} is not built before this one")))?,
                    None => self.base_image(run, f).map_err(|e| match e {
                        BuildError::NotFound(m) => BuildError::NotFound(format!("COPY --from={f}: {m}")),
                        e => e,
                    })?,
                };
                let m = StepMount::new(self, &rec.layers)?;
                let root = m.merged.clone();
                _from_mount = Some(m);
                (root, format!("stage {f}"))
            }
        };
        let scratch = self.scratch.join(format!("src-{}", random_hex(8)));
        let _cleanup = Cleanup(scratch.clone());
        let mut sources: Vec<Src> = Vec::new();
        for s in srcs {
            if let Some(name) =
                s.strip_prefix("<<").map(|n| n.trim_start_matches('-').trim_matches(|c| c == '"' || c == '\''))
                && let Some(h) = ins.heredocs.iter().find(|h| h.name == name)
            {
                let content = if h.expand {
                    lex.expand_vars(&h.content, &|k| st.lookup(k)).map_err(|m| invalid(ins, m))?
                } else {
                    h.content.clone()
                };
                std::fs::create_dir_all(&scratch).map_err(|e| BuildError::Io {
                    op: "create",
                    path: scratch.clone(),
                    source: e,
                })?;
                let p = scratch.join(format!("heredoc-{}", sources.len()));
                std::fs::write(&p, content).map_err(|e| BuildError::Io { op: "write", path: p.clone(), source: e })?;
                use std::os::unix::fs::PermissionsExt;
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644));
                sources.push(Src { name: h.name.clone(), path: p, is_dir: false, extract: false });
                continue;
            }
            if is_add && (s.starts_with("http://") || s.starts_with("https://")) {
                std::fs::create_dir_all(&scratch).map_err(|e| BuildError::Io {
                    op: "create",
                    path: scratch.clone(),
                    source: e,
                })?;
                self.progress.stream(&format!("Downloading {s}\n"));
                let (p, name) = self.runner.fetch(s, &scratch.join(format!("url-{}", sources.len())))?;
                if let Some(sum) = ins.flag("checksum") {
                    let got = crate::fetch::sha256_file(&p)?;
                    if sum != got {
                        return Err(invalid(ins, format!("checksum mismatch for {s}: expected {sum}, got {got}")));
                    }
                }
                sources.push(Src { name, path: p, is_dir: false, extract: false });
                continue;
            }
            if ins.flag("checksum").is_some() {
                return Err(invalid(ins, "--checksum can only be used with a remote URL source"));
            }
            let rel = fsutil::clean_rel(s)
                .ok_or_else(|| invalid(ins, format!("forbidden path outside the build context: {s}")))?;
            let rel_s = rel.to_string_lossy().into_owned();
            let matches: Vec<String> = if has_glob(&rel_s) { expand_glob(&root, &rel_s) } else { vec![rel_s.clone()] };
            if has_glob(&rel_s) && matches.is_empty() {
                return Err(invalid(
                    ins,
                    format!("no source files were specified: `{s}` matches nothing in the {where_}"),
                ));
            }
            for m in matches {
                let path = fsutil::resolve_in_root(&root, &m, true);
                let meta = std::fs::metadata(&path).map_err(|_| {
                    BuildError::Invalid(format!(
                        "{} failed: file not found in {where_}{}: stat {m}: file does not exist",
                        ins.cmd.name(),
                        if from.is_none() { " or excluded by .dockerignore" } else { "" }
                    ))
                })?;
                let name = Path::new(&m).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let extract = is_add && from.is_none() && meta.is_file() && fsutil::is_archive(&path);
                sources.push(Src { name, path, is_dir: meta.is_dir(), extract });
            }
        }
        if sources.is_empty() {
            return Err(invalid(ins, "no source files were specified"));
        }
        if sources.len() > 1 && !dest_is_dir_syntax {
            return Err(invalid(
                ins,
                format!(
                    "When using {} with more than one source file, the destination must be a directory and end with a /",
                    ins.cmd.name()
                ),
            ));
        }
        let th = std::time::Instant::now();
        let empty = fsutil::KnownDigests::new();
        let known = if from.is_none() { self.known } else { &empty };
        let hash =
            fsutil::hash_sources(&sources.iter().map(|s| (s.name.clone(), s.path.clone())).collect::<Vec<_>>(), known)?;
        tracing::debug!("build: {} sources hashed in {:?}", ins.cmd.name(), th.elapsed());
        let kind = match (sources.len(), sources[0].is_dir) {
            (1, true) => "dir",
            (1, false) => "file",
            _ => "multi",
        };
        let mut flags = String::new();
        for f in ["from", "chown", "chmod"] {
            if let Some(v) = ins.flag(f) {
                flags.push_str(&format!("--{f}={v} "));
            }
        }
        let created_by = nop(&format!("{} {flags}{kind}:{hash} in {dest_raw} ", ins.cmd.name()));
        let chown =
            ins.flag("chown").map(|c| lex.word(c, &|k| st.lookup(k))).transpose().map_err(|m| invalid(ins, m))?;
        let chmod = ins
            .flag("chmod")
            .map(|m| u32::from_str_radix(m, 8))
            .transpose()
            .map_err(|_| invalid(ins, "invalid --chmod"))?;
        let extra = format!("dest={dest}");
        self.layer_step(run, st, created_by, &extra, rc, false, &mut |m| {
            let (uid, gid) = match &chown {
                Some(c) => fsutil::parse_chown(&m.merged, c).map_err(|e| invalid(ins, e))?,
                None => (0, 0),
            };
            let opts = CopyOpts { uid, gid, chmod };
            for s in &sources {
                let d = fsutil::resolve_in_root(&m.merged, &dest, true);
                if s.extract {
                    fsutil::mkdir_all(&d, uid, gid)?;
                    fsutil::extract_archive(&s.path, &d, chown.as_ref().map(|_| &opts))?;
                } else if s.is_dir {
                    fsutil::mkdir_all(&d, uid, gid)?;
                    let mut entries: Vec<_> = std::fs::read_dir(&s.path)
                        .map_err(|e| BuildError::Io { op: "read directory", path: s.path.clone(), source: e })?
                        .flatten()
                        .collect();
                    entries.sort_by_key(|e| e.file_name());
                    for e in entries {
                        fsutil::copy_tree(&e.path(), &d.join(e.file_name()), &opts)?;
                    }
                } else if dest_is_dir_syntax || d.is_dir() {
                    fsutil::mkdir_all(&d, uid, gid)?;
                    fsutil::copy_tree(&s.path, &d.join(&s.name), &opts)?;
                } else {
                    let target = fsutil::resolve_in_root(&m.merged, &dest, false);
                    if let Some(parent) = target.parent() {
                        fsutil::mkdir_all(parent, uid, gid)?;
                    }
                    fsutil::copy_tree(&s.path, &target, &opts)?;
                }
            }
            Ok(())
        })
    }
}

/// A Go `time.Duration` as Go prints it (`5s`, `1m30s`, `500ms`, `0s`).
pub(crate) fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns % 1_000_000_000 != 0 {
        return if ns % 1_000_000 == 0 { format!("{}ms", ns / 1_000_000) } else { format!("{}s", ns as f64 / 1e9) };
    }
    let s = ns / 1_000_000_000;
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    match (h, m) {
        (0, 0) => format!("{sec}s"),
        (0, _) => format!("{m}m{sec}s"),
        _ => format!("{h}h{m}m{sec}s"),
    }
}

/// The history line Docker's legacy builder writes for a HEALTHCHECK (Go's `%v` of its
/// config: `&{["CMD-SHELL" "true"] "5s" "0s" "0s" '\x02'}`).
fn healthcheck_text(hc: &Value) -> String {
    let test: Vec<String> =
        hc["Test"].as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_owned)).collect();
    let d = |k: &str| format!("{:?}", go_duration(hc.get(k).and_then(Value::as_i64).unwrap_or(0)));
    let r = hc.get("Retries").and_then(Value::as_i64).unwrap_or(0);
    let retries = match u8::try_from(r) {
        Ok(b) if (0x20..0x7f).contains(&b) => format!("'{}'", b as char),
        Ok(b) => format!("'\\x{b:02x}'"),
        Err(_) => r.to_string(),
    };
    format!("&{{{} {} {} {} {retries}}}", go_list(&test), d("Interval"), d("Timeout"), d("StartPeriod"))
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Paths under `root` matching a relative pattern with wildcards, component by component,
/// sorted.
fn expand_glob(root: &Path, pattern: &str) -> Vec<String> {
    let parts: Vec<&str> = pattern.split('/').collect();
    let mut out = Vec::new();
    walk_glob(root, "", &parts, &mut out);
    out.sort();
    out
}

fn walk_glob(dir: &Path, rel: &str, parts: &[&str], out: &mut Vec<String>) {
    let Some((first, rest)) = parts.split_first() else {
        out.push(rel.to_owned());
        return;
    };
    let join = |n: &str| if rel.is_empty() { n.to_owned() } else { format!("{rel}/{n}") };
    if !has_glob(first) {
        let p = dir.join(first);
        if std::fs::symlink_metadata(&p).is_ok() {
            walk_glob(&p, &join(first), rest, out);
        }
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if glob(first.as_bytes(), n.as_bytes()) {
            walk_glob(&e.path(), &join(&n), rest, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_history_formats() {
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(500_000_000), "500ms");
        let hc = json!({"Test": ["CMD-SHELL", "true"], "Interval": 5_000_000_000i64, "Retries": 2});
        assert_eq!(healthcheck_text(&hc), r#"&{["CMD-SHELL" "true"] "5s" "0s" "0s" '\x02'}"#);
    }
}
