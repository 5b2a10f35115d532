//! The build engine: action keys, what is stale and why, and the scheduler.
//! It knows node kinds only through `steps::Kind`, and nothing of tokenizers
//! or models.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Map, Value as Json, json};

use crate::spec::{self, Pipeline, UsageError};
use crate::store::{MAIN_VIEW, RecInput, RecShader, Record, Store};

pub mod bench;
mod build;
pub mod du;
pub mod gc;
pub mod source;
pub mod space;

pub use build::{BuildOptions, NodeReport, NodeStatus, build};

/// Bumped when the store layout or the meaning of keys changes: every node
/// then rebuilds.
pub const ENGINE_VERSION: u32 = 1;

/// A project folder, its pipeline file and its store.
pub struct Project {
    pub dir: PathBuf,
    pub pipeline: Pipeline,
    pub store: Store,
}

/// The name a pipeline file's refs live under: `main` for the project's
/// `Pipeline.toml`, else the file's path relative to the project, spelled so
/// that distinct files get distinct names: `/` becomes `+`, letters, digits,
/// `.` and `-` stay, every other byte (`_` and `+` too) becomes `_XX` (hex); a
/// `.toml` extension is dropped and any other file gets a trailing `_` (which no
/// escape ends with). `pipelines/tiny.toml` is `pipelines+tiny`. Files outside
/// the project are `_ext-<stem>-<hash>`, and a project file that would spell
/// `main` is `_main` (`_` followed by a non-hex letter is no escape).
pub fn view_name(dir: &Path, file: &Path) -> String {
    let canon = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let (dir, file) = (canon(dir), canon(file));
    if file == dir.join("Pipeline.toml") {
        return MAIN_VIEW.to_string();
    }
    let rel = match file.strip_prefix(&dir) {
        Ok(r) => r.to_string_lossy().to_string(),
        Err(_) => {
            return format!(
                "_ext-{}-{}",
                escape(
                    &file
                        .file_stem()
                        .map(|s| s.to_string_lossy().to_string())
                        .unwrap_or_default()
                ),
                &blake3::hash(file.to_string_lossy().as_bytes()).to_hex()[..8]
            );
        }
    };
    let name = match rel.strip_suffix(".toml") {
        Some(stem) => escape(stem),
        None => format!("{}_", escape(&rel)),
    };
    if name == MAIN_VIEW {
        format!("_{MAIN_VIEW}")
    } else {
        name
    }
}

/// The pipeline file of a view, relative to the project: the inverse of
/// [`view_name`]. `None` for files outside the project (`_ext-…`), whose
/// absolute path the view notes instead.
pub fn view_file_rel(view: &str) -> Option<PathBuf> {
    if view == MAIN_VIEW {
        return Some(PathBuf::from("Pipeline.toml"));
    }
    if view == format!("_{MAIN_VIEW}") {
        return Some(PathBuf::from(format!("{MAIN_VIEW}.toml")));
    }
    let (body, toml) = match view.strip_suffix('_') {
        Some(b) => (b, false),
        None => (view, true),
    };
    let b = body.as_bytes();
    let mut out = Vec::with_capacity(b.len() + 5);
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b'/'),
            b'_' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                if !hex
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c))
                {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    if toml {
        out.extend_from_slice(b".toml");
    }
    Some(PathBuf::from(String::from_utf8(out).ok()?))
}

/// The pipeline file a view's refs were built from, in the project folder
/// `dir` as it is now: a copied or moved project judges its views by its own
/// files. `None`: an outside file whose note is missing.
pub fn view_file(dir: &Path, view: &Store) -> Option<PathBuf> {
    match view_file_rel(&view.view) {
        Some(rel) => Some(dir.join(rel)),
        None => view.pipeline_file(),
    }
}

/// A relative path as one file name, injectively (see [`view_name`]).
fn escape(rel: &str) -> String {
    let mut out = String::new();
    for b in rel.bytes() {
        match b {
            b'/' | b'\\' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b == b'-' || b == b'.' => out.push(b as char),
            b => out.push_str(&format!("_{b:02X}")),
        }
    }
    out
}

/// The pipeline file `-f FILE` names in project folder `dir` (default
/// `Pipeline.toml`), as it is shown in messages.
pub fn pipeline_path(dir: &Path, file: Option<&Path>) -> PathBuf {
    let file = file.unwrap_or(Path::new("Pipeline.toml"));
    if dir == Path::new(".") {
        file.to_path_buf()
    } else {
        dir.join(file)
    }
}

/// The store of a project folder, with the refs of the given pipeline file,
/// for commands that need no parsed pipeline (`gc`, `verify`).
/// The store's root is absolute (see [`Project::open`]).
pub fn store_at(dir: &Path, file: Option<&Path>) -> Store {
    Store::new(
        absolute(dir).join("cache"),
        &view_name(dir, &pipeline_path(dir, file)),
    )
}

/// A folder as an absolute path (lexically, so links stay as the user wrote
/// them; unchanged if the working folder cannot be read).
fn absolute(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

impl Project {
    /// `dir`: the project folder (`-C`); `file`: the pipeline file (`-f`),
    /// relative to `dir`.
    pub fn open(dir: &Path, file: Option<&Path>) -> Result<Project> {
        let pipeline = spec::load(&pipeline_path(dir, file))?;
        // Absolute: nodes run in the project folder, so every path handed to
        // them (`$PAI_OUT`, `$PAI_IN_*`, work folders) must not be relative
        // to where pai was started (`pai -C sub build`).
        Ok(Project {
            dir: absolute(dir),
            store: store_at(dir, file),
            pipeline,
        })
    }

    /// A build as `pai build` runs it: take the store's lock (saying so while
    /// waiting), end the commands killed runs left running, clear what they
    /// left, build.
    pub fn locked_build(
        &self,
        targets: &[usize],
        opts: &BuildOptions,
        ui: &crate::report::Ui,
    ) -> Result<Vec<NodeReport>> {
        let _lock = crate::store::lock::acquire(&self.store.root, "build", &|m| ui.message(m))?;
        crate::process::end_orphans(&self.store.tmp_root(), &|m| ui.message(m));
        self.store.clean_tmp()?;
        build(self, targets, opts, ui)
    }

    /// The targets a user named, or the pipeline's default, or every sink.
    pub fn targets(&self, names: &[String]) -> Result<Vec<usize>> {
        if !names.is_empty() {
            return names.iter().map(|n| Ok(self.pipeline.node(n)?)).collect();
        }
        if let Some(d) = &self.pipeline.default {
            return Ok(vec![self.pipeline.node(d)?]);
        }
        let p = &self.pipeline;
        let consumed: std::collections::HashSet<&str> = p
            .nodes
            .iter()
            .flat_map(|n| n.inputs.iter().map(|s| s.as_str()))
            .collect();
        let sinks: Vec<usize> = (0..p.nodes.len())
            .filter(|&i| !consumed.contains(p.nodes[i].name.as_str()))
            .collect();
        if sinks.is_empty() {
            return Err(UsageError("the pipeline has no nodes to build".into()).into());
        }
        Ok(sinks)
    }
}

/// Everything that goes into a node's action key.
#[derive(Clone, Debug)]
pub struct KeyParts {
    pub kind: String,
    pub kind_version: u32,
    pub params: Map<String, Json>,
    pub inputs: Vec<RecInput>,
    pub shaders: Vec<RecShader>,
}

/// A kind's implementation version, which `PAI_KIND_VERSION=kind=N,...` can
/// override so tests can show that a new implementation rebuilds its nodes.
pub fn kind_version(step: &crate::steps::Kind) -> u32 {
    if let Ok(spec) = std::env::var("PAI_KIND_VERSION") {
        for part in spec.split(',') {
            if let Some((k, v)) = part.split_once('=')
                && k.trim() == step.kind()
                && let Ok(v) = v.trim().parse()
            {
                return v;
            }
        }
    }
    step.version()
}

impl KeyParts {
    pub fn new(node: &spec::Node, inputs: Vec<RecInput>) -> KeyParts {
        let params = match serde_json::to_value(&node.params.0) {
            Ok(Json::Object(m)) => m,
            _ => Map::new(),
        };
        let shaders = node
            .step
            .shaders()
            .into_iter()
            .map(|(name, src)| RecShader {
                name: name.to_string(),
                hash: blake3::hash(src.as_bytes()).to_hex().to_string(),
            })
            .collect();
        KeyParts {
            kind: node.kind().to_string(),
            kind_version: kind_version(node.step),
            params,
            inputs,
            shaders,
        }
    }

    /// BLAKE3 of a canonical encoding. Input node names are left out: renaming
    /// a node rebuilds nothing; only contents count (early cutoff).
    pub fn key(&self) -> String {
        // Sorted by role: the order of `inputs` in the file does not matter.
        let mut inputs: Vec<(&String, &String)> =
            self.inputs.iter().map(|i| (&i.role, &i.hash)).collect();
        inputs.sort();
        let inputs: Vec<Json> = inputs.into_iter().map(|(r, h)| json!([r, h])).collect();
        let shaders: Vec<Json> = self
            .shaders
            .iter()
            .map(|s| json!([s.name, s.hash]))
            .collect();
        let mut params: Vec<(&String, &Json)> = self.params.iter().collect();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let params: Vec<Json> = params.into_iter().map(|(k, v)| json!([k, v])).collect();
        let doc = json!([
            "pai-action",
            ENGINE_VERSION,
            self.kind,
            self.kind_version,
            params,
            inputs,
            shaders
        ]);
        blake3::hash(doc.to_string().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// What a build would do with a node.
pub enum Decision {
    /// The current build is this key, complete.
    Fresh(Record),
    /// An earlier build of this key is complete in the store.
    Restore(Record),
    /// Must run (or, for a source, be recorded).
    Build(KeyParts, String),
    /// An input must be built first; the key is not known yet.
    Blocked(String),
}

/// Why a node is stale: the differences between its current build's record
/// and what the key would be now.
pub fn reasons(
    store: &Store,
    node: &str,
    parts: Option<&KeyParts>,
    files: Option<&[crate::store::RecFile]>,
) -> Vec<String> {
    let Some(old_key) = store.read_ref(node) else {
        return vec!["never built".into()];
    };
    let Some(old) = store.record(&old_key) else {
        return vec!["the record of its current build is missing from the store".into()];
    };
    let Some(parts) = parts else { return vec![] };
    let mut r = Vec::new();
    if old.engine != ENGINE_VERSION {
        r.push(format!(
            "pai's engine version changed ({} → {ENGINE_VERSION})",
            old.engine
        ));
    }
    if old.kind != parts.kind {
        r.push(format!("kind changed: {} → {}", old.kind, parts.kind));
    } else if old.kind_version != parts.kind_version {
        r.push(format!(
            "the `{}` implementation changed (version {} → {})",
            parts.kind, old.kind_version, parts.kind_version
        ));
    }
    for (k, v) in &parts.params {
        match old.params.get(k) {
            None => r.push(format!("parameter `{k}` is new: {v}")),
            Some(ov) if ov != v => r.push(format!("parameter `{k}` changed: {ov} → {v}")),
            _ => {}
        }
    }
    for k in old.params.keys() {
        if !parts.params.contains_key(k) {
            r.push(format!("parameter `{k}` was removed"));
        }
    }
    if let Some(files) = files {
        let old_files: std::collections::HashMap<&str, &str> = old
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.hash.as_str()))
            .collect();
        let new_files: std::collections::HashMap<&str, &str> = files
            .iter()
            .map(|f| (f.path.as_str(), f.hash.as_str()))
            .collect();
        let mut changes = Vec::new();
        for f in files {
            match old_files.get(f.path.as_str()) {
                None => changes.push(format!("file `{}` added", f.path)),
                Some(h) if *h != f.hash => changes.push(format!("file `{}` modified", f.path)),
                _ => {}
            }
        }
        for f in &old.files {
            if !new_files.contains_key(f.path.as_str()) {
                changes.push(format!("file `{}` removed", f.path));
            }
        }
        let n = changes.len();
        r.extend(changes.into_iter().take(20));
        if n > 20 {
            r.push(format!("… and {} more file changes", n - 20));
        }
    } else {
        for i in &parts.inputs {
            match old.inputs.iter().find(|o| o.role == i.role) {
                Some(o) if o.hash == i.hash => {}
                Some(o) if o.node != i.node => {
                    r.push(format!("input `{}` is now `{}`", o.node, i.node))
                }
                Some(_) => r.push(format!("input `{}` changed", i.node)),
                None => r.push(format!("input `{}` is new", i.node)),
            }
        }
        for o in &old.inputs {
            if !parts.inputs.iter().any(|i| i.role == o.role) {
                r.push(format!("input `{}` was removed", o.node));
            }
        }
    }
    for s in &parts.shaders {
        match old.shaders.iter().find(|o| o.name == s.name) {
            Some(o) if o.hash == s.hash => {}
            Some(_) => r.push(format!("shader `{}` changed", s.name)),
            None => r.push(format!("shader `{}` is new", s.name)),
        }
    }
    if r.is_empty() && old.key == parts.key() {
        r.push("outputs of its current build are missing from the store".into());
    }
    r
}

/// Plans one node given its inputs' decisions: the basis of `status`,
/// `explain`, `build --dry-run` and the build itself.
pub fn decide(
    project: &Project,
    idx: usize,
    inputs: &[Option<String>],
) -> Result<(Decision, Option<source::Listing>)> {
    let node = &project.pipeline.nodes[idx];
    let store = &project.store;
    let (parts, listing) = if node.step.is_source() {
        let listing = source::scan(&project.dir, store, node, &project.pipeline.path)?;
        let inputs = vec![RecInput {
            role: "files".into(),
            node: String::new(),
            hash: listing.content.clone(),
        }];
        (KeyParts::new(node, inputs), Some(listing))
    } else {
        let mut ins = Vec::new();
        for ((name, role), content) in node.inputs.iter().zip(&node.roles).zip(inputs) {
            match content {
                Some(h) => ins.push(RecInput {
                    role: role.clone(),
                    node: name.clone(),
                    hash: h.clone(),
                }),
                None => {
                    return Ok((
                        Decision::Blocked(format!(
                            "input `{name}` is stale (its new content decides this key)"
                        )),
                        None,
                    ));
                }
            }
        }
        (KeyParts::new(node, ins), None)
    };
    let key = parts.key();
    if let Some(listing) = listing {
        // A source's record holds nothing the listing does not: skip parsing
        // it (it can list thousands of files) when it exists.
        if !store.record_path(&key).exists() {
            return Ok((Decision::Build(parts, key), Some(listing)));
        }
        let rec = source_record(&node.name, parts, key.clone(), &listing);
        let d = if store.read_ref(&node.name).as_deref() == Some(key.as_str()) {
            Decision::Fresh(rec)
        } else {
            Decision::Restore(rec)
        };
        return Ok((d, Some(listing)));
    }
    if let Some(rec) = store.record(&key)
        && store.complete(&rec)
    {
        if store.read_ref(&node.name).as_deref() == Some(key.as_str()) {
            return Ok((Decision::Fresh(rec), None));
        }
        return Ok((Decision::Restore(rec), None));
    }
    Ok((Decision::Build(parts, key), None))
}

/// The record of a source build: its listing is its whole content.
pub fn source_record(
    node: &str,
    parts: KeyParts,
    key: String,
    listing: &source::Listing,
) -> Record {
    let (built_at, built_at_nanos) = crate::store::now();
    Record {
        key,
        node: node.to_string(),
        kind: parts.kind,
        kind_version: parts.kind_version,
        engine: ENGINE_VERSION,
        params: parts.params,
        inputs: parts.inputs,
        shaders: parts.shaders,
        outputs: Vec::new(),
        content: listing.content.clone(),
        files: listing.files.clone(),
        seconds: 0.0,
        built_at,
        built_at_nanos,
        ran_on: None,
        summary: None,
    }
}

/// One line of `status`.
#[derive(serde::Serialize)]
pub struct NodeState {
    pub name: String,
    pub kind: String,
    pub stale: bool,
    /// fresh, restore, build, blocked or error.
    pub action: String,
    pub reasons: Vec<String>,
    pub key: Option<String>,
    /// For a source: files whose hash the stat cache could not vouch for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashed_files: Option<usize>,
}

/// What is stale and why, building nothing.
pub fn status(project: &Project, targets: &[usize]) -> Vec<NodeState> {
    let order = crate::graph::plan_order(&project.pipeline, targets);
    let mut content: Vec<Option<String>> = vec![None; project.pipeline.nodes.len()];
    let mut out = Vec::new();
    for idx in order {
        let node = &project.pipeline.nodes[idx];
        let inputs: Vec<Option<String>> = node
            .inputs
            .iter()
            .map(|n| project.pipeline.get(n).and_then(|j| content[j].clone()))
            .collect();
        let state = match decide(project, idx, &inputs) {
            Err(e) => NodeState {
                name: node.name.clone(),
                kind: node.kind().into(),
                stale: true,
                action: "error".into(),
                reasons: vec![format!("{e:#}")],
                key: None,
                hashed_files: None,
            },
            Ok((d, listing)) => {
                let files = listing.as_ref().map(|l| l.files.as_slice());
                let hashed_files = listing.as_ref().map(|l| l.hashed_files);
                let (action, stale, reasons, key) = match d {
                    Decision::Fresh(rec) => {
                        content[idx] = Some(rec.content.clone());
                        ("fresh", false, vec![], Some(rec.key))
                    }
                    Decision::Restore(rec) => {
                        let parts = parts_of(&rec);
                        let mut r = reasons(&project.store, &node.name, Some(&parts), files);
                        r.push(
                            "an earlier build matches: it will be restored from the cache".into(),
                        );
                        content[idx] = Some(rec.content.clone());
                        ("restore", true, r, Some(rec.key))
                    }
                    Decision::Build(parts, key) => {
                        let mut r = reasons(&project.store, &node.name, Some(&parts), files);
                        let work = project.store.work_path(&key);
                        if std::fs::read_dir(&work).is_ok_and(|mut d| d.next().is_some()) {
                            let left = crate::report::size(crate::store::dir_size(&work));
                            r.push(if node.step.resumes {
                                format!(
                                    "an interrupted build of this key left {left} of resumable state in {}: it resumes from there",
                                    work.display()
                                )
                            } else {
                                format!(
                                    "an earlier build of this key failed or was stopped; what it left ({left}, its log) is in {}",
                                    work.display()
                                )
                            });
                        }
                        if let Some(l) = &listing {
                            // A source "build" is only a new record: its
                            // content is known now.
                            content[idx] = Some(l.content.clone());
                        }
                        ("build", true, r, Some(key))
                    }
                    Decision::Blocked(why) => ("blocked", true, vec![why], None),
                };
                NodeState {
                    name: node.name.clone(),
                    kind: node.kind().into(),
                    stale,
                    action: action.into(),
                    reasons,
                    key,
                    hashed_files,
                }
            }
        };
        out.push(state);
    }
    out
}

/// The key parts a record was built from.
pub fn parts_of(rec: &Record) -> KeyParts {
    KeyParts {
        kind: rec.kind.clone(),
        kind_version: rec.kind_version,
        params: rec.params.clone(),
        inputs: rec.inputs.clone(),
        shaders: rec.shaders.clone(),
    }
}

/// Lines for `pai explain NODE`: the key's parts now, against its current build.
pub fn explain(project: &Project, idx: usize) -> Result<Json> {
    let node = &project.pipeline.nodes[idx];
    let states = status(project, &[idx]);
    let me = states
        .iter()
        .find(|s| s.name == node.name)
        .context("node missing from its own plan")?;
    let current = project.store.read_ref(&node.name);
    let ran_on = current
        .as_deref()
        .and_then(|k| project.store.record(k))
        .and_then(|r| r.ran_on);
    let blockers: Vec<&NodeState> = states
        .iter()
        .filter(|s| s.name != node.name && s.stale)
        .collect();
    Ok(json!({
        "name": node.name,
        "kind": node.kind(),
        "action": me.action,
        "stale": me.stale,
        "key": me.key,
        "current_key": current,
        "reasons": me.reasons,
        "ran_on": ran_on,
        "stale_inputs": blockers.iter().map(|s| json!({"name": s.name, "action": s.action, "reasons": s.reasons})).collect::<Vec<_>>(),
    }))
}

/// Refs (view, node) of nodes their pipeline file no longer declares: `gc`
/// drops them. A view whose file is gone or does not parse keeps its refs.
pub fn undeclared_refs(dir: &Path, store: &Store, ui: &crate::report::Ui) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for view in crate::store::gc::views(store) {
        let refs = view.ref_names();
        let Some(file) = view_file(dir, &view) else {
            if !refs.is_empty() {
                ui.message(&format!(
                    "note: view `{}` does not say which pipeline file it belongs to; gc keeps \
                     its {} builds (remove {} to let gc reclaim them)",
                    view.view,
                    refs.len(),
                    view.refs_dir().display()
                ));
            }
            continue;
        };
        if refs.is_empty() {
            continue;
        }
        match spec::load(&file) {
            Ok(p) => out.extend(
                refs.into_iter()
                    .filter(|n| p.get(n).is_none())
                    .map(|n| (view.view.clone(), n)),
            ),
            Err(_) if !file.exists() => ui.message(&format!(
                "note: {} is gone; its {} builds are kept (remove {} to let gc reclaim them)",
                file.display(),
                refs.len(),
                view.refs_dir().display()
            )),
            Err(_) => ui.message(&format!(
                "note: {} does not parse; gc keeps all its builds",
                file.display()
            )),
        }
    }
    out
}

/// The action keys the nodes of every pipeline file in the store would have
/// now (stale or fresh): the work folders `gc` keeps. `None` when a pipeline
/// file is gone, does not parse or cannot be planned (then gc keeps them all).
pub fn pending_keys(dir: &Path, store: &Store) -> Option<std::collections::HashSet<String>> {
    let mut keys = std::collections::HashSet::new();
    for view in crate::store::gc::views(store) {
        let file = view_file(dir, &view)?;
        if view.ref_names().is_empty() && view.view != crate::store::MAIN_VIEW {
            continue;
        }
        let pipeline = spec::load(&file).ok()?;
        let all: Vec<usize> = (0..pipeline.nodes.len()).collect();
        let project = Project {
            dir: dir.to_path_buf(),
            pipeline,
            store: Store::new(store.root.clone(), &view.view),
        };
        for s in status(&project, &all) {
            if s.action == "error" {
                return None;
            }
            keys.extend(s.key);
        }
    }
    Some(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_pipeline_files_get_distinct_views() {
        let dir = Path::new("/project");
        let files = [
            "pipelines/tiny.toml",
            "pipelines/tiny",
            "pipelines+tiny.toml",
            "pipelines_tiny.toml",
            "pipelines tiny.toml",
            "pipelines/a_2B.toml",
            "pipelines/a+.toml",
            "main.toml",
            "main-file.toml",
            "_main.toml",
            "ext-x-00000000.toml",
            "../elsewhere/x.toml",
        ];
        let names: Vec<String> = files.iter().map(|f| view_name(dir, &dir.join(f))).collect();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), files.len(), "{names:?}");
        assert!(!names.contains(&MAIN_VIEW.to_string()));
        assert_eq!(names[0], "pipelines+tiny");
        assert_eq!(view_name(dir, &dir.join("Pipeline.toml")), MAIN_VIEW);
        // Each in-project view names its file relative to the project, so a
        // copied project judges its views by its own files.
        for (f, n) in files.iter().zip(&names) {
            assert_eq!(view_file_rel(n), Some(PathBuf::from(f)), "{n}");
        }
        assert_eq!(
            view_file_rel(MAIN_VIEW),
            Some(PathBuf::from("Pipeline.toml"))
        );
        assert_eq!(view_file_rel("_ext-x-0a1b2c3d"), None);
        for n in &names {
            assert!(
                n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b)),
                "{n}"
            );
        }
    }
}

/// A node's current build as files: what `pai generate` reads.
#[derive(Clone, Debug)]
pub struct BuiltNode {
    pub name: String,
    pub kind: String,
    /// Output name → the stored object holding it.
    pub files: Vec<(String, PathBuf)>,
}

impl BuiltNode {
    /// Reads one output, checking it against the hash its build recorded.
    pub fn read(&self, name: &str) -> Result<Vec<u8>> {
        let (_, path) = self.files.iter().find(|(n, _)| n == name).with_context(|| {
            format!(
                "the build of `{}` has no output `{name}` (it may have been collected: rebuild it)",
                self.name
            )
        })?;
        let bytes =
            std::fs::read(path).with_context(|| format!("reading {} of `{}`", name, self.name))?;
        let want = path.file_name().map(|f| f.to_string_lossy().to_string());
        let got = blake3::hash(&bytes).to_hex().to_string();
        anyhow::ensure!(
            want.is_none_or(|w| got.ends_with(&w)),
            "{name} of `{}` is damaged in the store; run `pai verify --repair` and build it again",
            self.name
        );
        Ok(bytes)
    }
}

/// The current build of `node` (its ref's record and objects); an error that says how to
/// build it when there is none.
pub fn built_node(project: &Project, node: &str) -> Result<BuiltNode> {
    let idx = project.pipeline.node(node)?;
    let n = &project.pipeline.nodes[idx];
    let how = |what: &str| {
        format!(
            "node `{node}` {what}; build it first: `pai{} build {node}`",
            match project.pipeline.path.strip_prefix(&project.dir) {
                Ok(f) if f == Path::new("Pipeline.toml") => String::new(),
                Ok(f) => format!(" -f {}", f.display()),
                Err(_) if project.pipeline.path == Path::new("Pipeline.toml") => String::new(),
                Err(_) => format!(" -f {}", project.pipeline.path.display()),
            }
        )
    };
    let key = project
        .store
        .read_ref(node)
        .with_context(|| how("has not been built"))?;
    let rec = project
        .store
        .record(&key)
        .with_context(|| how("has lost the record of its build"))?;
    let mut files = Vec::new();
    for o in rec.live_outputs() {
        let path = project.store.object_path(&o.hash);
        if !path.exists() {
            anyhow::bail!(how(&format!(
                "is missing its output `{}` in the store",
                o.name
            )));
        }
        files.push((o.name.clone(), path));
    }
    Ok(BuiltNode {
        name: node.to_string(),
        kind: n.kind().to_string(),
        files,
    })
}

/// The nearest node of `kind` upstream of `node` (breadth first, inputs in file order).
pub fn upstream_of_kind(project: &Project, node: &str, kind: &str) -> Option<String> {
    let p = &project.pipeline;
    let mut queue = std::collections::VecDeque::from([node.to_string()]);
    let mut seen = std::collections::HashSet::new();
    while let Some(n) = queue.pop_front() {
        let Some(i) = p.get(&n) else { continue };
        for input in &p.nodes[i].inputs {
            if !seen.insert(input.clone()) {
                continue;
            }
            if p.get(input).is_some_and(|j| p.nodes[j].kind() == kind) {
                return Some(input.clone());
            }
            queue.push_back(input.clone());
        }
    }
    None
}
