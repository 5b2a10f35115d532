//! A node's current build as files: what `pai generate` reads, and where
//! `pai path` says a node's outputs are.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::Project;
use crate::spec::UsageError;

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

/// `pai path NODE [OUTPUT]`: where a node's outputs are.
#[derive(serde::Serialize, Debug)]
pub struct NodePath {
    /// Absolute (lexically: links stay as written).
    pub path: PathBuf,
}

impl std::fmt::Display for NodePath {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// A node's output folder, or one output's path in it: a source's folder
/// in the project, else the folder of its current build's outputs.
pub fn node_path(project: &Project, node: &str, output: Option<&str>) -> Result<NodePath> {
    let idx = project.pipeline.node(node)?;
    let n = &project.pipeline.nodes[idx];
    let path = if n.step.is_source() {
        let dir = project.dir.join(n.params.str("path")?);
        match output {
            Some(o) => dir.join(o),
            None => dir,
        }
    } else {
        let key = project.store.read_ref(node).with_context(|| {
            format!("node `{node}` has not been built yet; run `pai build {node}`")
        })?;
        let rec = project
            .store
            .record(&key)
            .with_context(|| format!("the record of `{node}` is missing; rebuild it"))?;
        let dir = project.store.out_dir(node);
        match output {
            None => dir,
            Some(o) => {
                if !rec.live_outputs().any(|x| x.name == o) {
                    let names: Vec<&str> = rec.live_outputs().map(|x| x.name.as_str()).collect();
                    anyhow::bail!(UsageError(format!(
                        "node `{node}` has no output `{o}`; its outputs are: {}",
                        names.join(", ")
                    )));
                }
                dir.join(o)
            }
        }
    };
    Ok(NodePath {
        path: std::path::absolute(&path).unwrap_or(path),
    })
}
