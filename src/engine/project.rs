//! A project and its views: the folder, its pipeline file and its store
//! ([`Project`]); the name each pipeline file's refs live under in the shared
//! store ([`view_name`], [`view_file_rel`]); and what every view of the store
//! keeps alive ([`undeclared_refs`], [`pending_keys`]), which `gc` and `du`
//! read.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::{Action, BuildOptions, NodeReport, build, status};
use crate::spec::{self, Pipeline, UsageError};
use crate::store::{MAIN_VIEW, Store};

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

/// Refuses a folder that is not a project (no pipeline file) before anything
/// is created there: `pai -C typo gc` must not make `typo/cache`.
pub fn require_project(dir: &Path, file: Option<&Path>) -> Result<()> {
    let path = pipeline_path(dir, file);
    if !dir.is_dir() {
        return Err(UsageError(format!(
            "{}: no such folder; give a project folder (one with a {}) with -C DIR",
            dir.display(),
            file.unwrap_or(Path::new("Pipeline.toml")).display()
        ))
        .into());
    }
    if !path.is_file() {
        return Err(UsageError(format!(
            "{} is not a pai project: no pipeline file {}; run pai in a folder with a \
             Pipeline.toml, or give one with -C DIR or -f FILE",
            absolute(dir).display(),
            path.display()
        ))
        .into());
    }
    Ok(())
}

/// [`store_at`] of a folder that [`require_project`] accepts.
pub fn store_for(dir: &Path, file: Option<&Path>) -> Result<Store> {
    require_project(dir, file)?;
    Ok(store_at(dir, file))
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
            if s.action == Action::Error {
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
