//! The plan: what a build would do with each node ([`decide`]), why a node is
//! stale ([`reasons`]), and the status report built from both ([`status`]),
//! which `pai status`, `pai explain`, `pai build --dry-run` and gc's roots
//! read.

use std::fmt;

use anyhow::Result;
use serde::Serialize;

use super::key::{ENGINE_VERSION, KeyParts, parts_of};
use super::{Project, source};
use crate::store::{RecInput, Record, Store};

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

/// What a build would do with a node, as `status` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Its current build is its key now: nothing to do.
    Fresh,
    /// An earlier build of its key is in the store: it becomes current.
    Restore,
    /// It runs (a source: a new record of its files).
    Build,
    /// An input is stale, so its key is not known yet.
    Blocked,
    /// It cannot be planned (its reasons say why).
    Error,
}

impl Action {
    /// The word `--json` and `pai status` show.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Fresh => "fresh",
            Action::Restore => "restore",
            Action::Build => "build",
            Action::Blocked => "blocked",
            Action::Error => "error",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `status`.
#[derive(Serialize)]
pub struct NodeState {
    pub name: String,
    pub kind: String,
    pub stale: bool,
    pub action: Action,
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
                action: Action::Error,
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
                        (Action::Fresh, false, vec![], Some(rec.key))
                    }
                    Decision::Restore(rec) => {
                        let parts = parts_of(&rec);
                        let mut r = reasons(&project.store, &node.name, Some(&parts), files);
                        r.push(
                            "an earlier build matches: it will be restored from the cache".into(),
                        );
                        content[idx] = Some(rec.content.clone());
                        (Action::Restore, true, r, Some(rec.key))
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
                        (Action::Build, true, r, Some(key))
                    }
                    Decision::Blocked(why) => (Action::Blocked, true, vec![why], None),
                };
                NodeState {
                    name: node.name.clone(),
                    kind: node.kind().into(),
                    stale,
                    action,
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

/// `pai status`: every node the targets need, fresh or stale and why.
#[derive(Serialize)]
pub struct StatusReport {
    pub nodes: Vec<NodeState>,
}

impl StatusReport {
    /// Nothing is stale.
    pub fn up_to_date(&self) -> bool {
        self.nodes.iter().all(|s| !s.stale)
    }

    /// 1 when a node cannot be planned.
    pub fn exit_code(&self) -> u8 {
        if self.nodes.iter().any(|s| s.action == Action::Error) {
            1
        } else {
            0
        }
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for s in &self.nodes {
            let word = if s.stale {
                format!("stale ({})", s.action)
            } else {
                "fresh".into()
            };
            writeln!(f, "{word:>17} {}", s.name)?;
            for r in &s.reasons {
                writeln!(f, "{:>17}   {r}", "")?;
            }
        }
        Ok(())
    }
}

/// `pai status` of the targets.
pub fn status_report(project: &Project, targets: &[usize]) -> StatusReport {
    StatusReport {
        nodes: status(project, targets),
    }
}

/// `pai build --dry-run`: what a build would do, changing nothing.
#[derive(Serialize)]
pub struct DryRun {
    /// Always true: tells this document from a build's.
    pub dry_run: bool,
    pub nodes: Vec<NodeState>,
    /// Whether the text shows why each stale node is stale.
    #[serde(skip)]
    pub reasons: bool,
}

impl fmt::Display for DryRun {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for s in &self.nodes {
            let word = match s.action {
                Action::Fresh => "fresh",
                Action::Restore => "would restore",
                Action::Error => "error",
                Action::Build | Action::Blocked => "would build",
            };
            writeln!(f, "{word:>14} {}", s.name)?;
            if s.action != Action::Fresh && self.reasons {
                for r in &s.reasons {
                    writeln!(f, "{:>14}   {r}", "")?;
                }
            }
        }
        Ok(())
    }
}

/// `pai build --dry-run` of the targets; `reasons`: show why (not `-q`).
pub fn dry_run(project: &Project, targets: &[usize], reasons: bool) -> DryRun {
    DryRun {
        dry_run: true,
        nodes: status(project, targets),
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value as Json, json};

    use super::*;
    use crate::store::{MAIN_VIEW, RecShader};

    fn parts(params: Json, input_hash: &str, kind_version: u32) -> KeyParts {
        let Json::Object(params) = params else {
            panic!("params must be an object")
        };
        KeyParts {
            kind: "tokenize".into(),
            kind_version,
            params,
            inputs: vec![RecInput {
                role: "corpus".into(),
                node: "text".into(),
                hash: input_hash.into(),
            }],
            shaders: vec![RecShader {
                name: "matmul::main".into(),
                hash: "5a".into(),
            }],
        }
    }

    /// A store in which `tok`'s current build was made from `built`.
    fn store_with_build(built: &KeyParts) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("cache"), MAIN_VIEW);
        let rec = Record {
            key: built.key(),
            node: "tok".into(),
            kind: built.kind.clone(),
            kind_version: built.kind_version,
            engine: ENGINE_VERSION,
            params: built.params.clone(),
            inputs: built.inputs.clone(),
            shaders: built.shaders.clone(),
            outputs: vec![],
            content: "c0".into(),
            files: vec![],
            seconds: 0.0,
            built_at: 0,
            built_at_nanos: 0,
            ran_on: None,
            summary: None,
        };
        store.write_record(&rec).unwrap();
        store.write_ref("tok", &rec.key).unwrap();
        (dir, store)
    }

    #[test]
    fn a_node_never_built_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path().join("cache"), MAIN_VIEW);
        let now = parts(json!({"seq": 64}), "aa", 1);
        assert_eq!(
            reasons(&store, "tok", Some(&now), None),
            vec!["never built"]
        );
    }

    #[test]
    fn a_parameter_change_is_named_with_both_values() {
        let (_dir, store) = store_with_build(&parts(json!({"seq": 64, "old": 1}), "aa", 1));
        let now = parts(json!({"seq": 128, "new": true}), "aa", 1);
        assert_eq!(
            reasons(&store, "tok", Some(&now), None),
            vec![
                "parameter `seq` changed: 64 → 128",
                "parameter `new` is new: true",
                "parameter `old` was removed",
            ]
        );
    }

    #[test]
    fn an_inputs_content_change_names_the_input() {
        let (_dir, store) = store_with_build(&parts(json!({"seq": 64}), "aa", 1));
        let now = parts(json!({"seq": 64}), "ab", 1);
        assert_eq!(
            reasons(&store, "tok", Some(&now), None),
            vec!["input `text` changed"]
        );
        // The same content from a renamed node is no change: no reason, and
        // the same key.
        let mut renamed = parts(json!({"seq": 64}), "aa", 1);
        renamed.inputs[0].node = "books".into();
        let r = reasons(&store, "tok", Some(&renamed), None);
        assert_eq!(
            r,
            vec!["outputs of its current build are missing from the store"]
        );
    }

    #[test]
    fn a_kind_version_change_names_the_kind_and_both_versions() {
        let (_dir, store) = store_with_build(&parts(json!({"seq": 64}), "aa", 1));
        let now = parts(json!({"seq": 64}), "aa", 2);
        assert_eq!(
            reasons(&store, "tok", Some(&now), None),
            vec!["the `tokenize` implementation changed (version 1 → 2)"]
        );
    }

    #[test]
    fn a_shader_change_and_a_lost_record_say_so() {
        let built = parts(json!({"seq": 64}), "aa", 1);
        let (_dir, store) = store_with_build(&built);
        let mut now = built.clone();
        now.shaders[0].hash = "5b".into();
        assert_eq!(
            reasons(&store, "tok", Some(&now), None),
            vec!["shader `matmul::main` changed"]
        );
        std::fs::remove_file(store.record_path(&built.key())).unwrap();
        assert_eq!(
            reasons(&store, "tok", Some(&now), None),
            vec!["the record of its current build is missing from the store"]
        );
    }

    #[test]
    fn actions_serialise_to_the_words_status_shows() {
        for (a, w) in [
            (Action::Fresh, "fresh"),
            (Action::Restore, "restore"),
            (Action::Build, "build"),
            (Action::Blocked, "blocked"),
            (Action::Error, "error"),
        ] {
            assert_eq!(serde_json::to_value(a).unwrap(), json!(w));
            assert_eq!(a.to_string(), w);
        }
    }
}
