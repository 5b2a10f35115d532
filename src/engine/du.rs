//! `pai du`: the funnel as built, measured — the space study's table (one
//! row per artifact class, the study's totals), every node's outputs and
//! sizes, the cache's total, and what `gc` would free.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use anyhow::Result;

use super::{Project, pending_keys, undeclared_refs};
use crate::report::size;
use crate::report::study::{StudyTable, StudyTotals};
use crate::steps::{Artifact, Retention};

#[derive(serde::Serialize)]
pub struct DuOutput {
    pub name: String,
    pub bytes: u64,
    pub retention: String,
    pub collected: bool,
}

#[derive(serde::Serialize)]
pub struct DuNode {
    pub name: String,
    pub kind: String,
    pub built: bool,
    pub outputs: Vec<DuOutput>,
    /// For a source: its files and their bytes (not stored by pai).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_bytes: Option<u64>,
}

#[derive(serde::Serialize)]
pub struct DuReport {
    pub nodes: Vec<DuNode>,
    /// Everything under cache/, each file counted once.
    pub cache_bytes: u64,
    /// What `pai gc` would free now.
    pub reclaimable_bytes: u64,
    /// What `pai gc --temporaries` would free on top.
    pub temporary_bytes: u64,
    /// The space study's table, measured.
    pub table: StudyTable,
}

/// The funnel as built: every node's outputs and sizes, and the cache's.
pub fn du(project: &Project) -> Result<DuReport> {
    use crate::store::gc::{GcOptions, gc};
    let store = &project.store;
    let mut nodes = Vec::new();
    for node in &project.pipeline.nodes {
        let rec = store.read_ref(&node.name).and_then(|k| store.record(&k));
        let outputs = rec
            .as_ref()
            .map(|r| {
                r.outputs
                    .iter()
                    .map(|o| DuOutput {
                        name: o.name.clone(),
                        bytes: o.bytes,
                        retention: o.retention.to_string(),
                        collected: o.collected,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let (source_files, source_bytes) = match (&rec, node.step.is_source()) {
            (Some(r), true) => (
                Some(r.files.len()),
                Some(r.files.iter().map(|f| f.bytes).sum()),
            ),
            _ => (None, None),
        };
        nodes.push(DuNode {
            name: node.name.clone(),
            kind: node.kind().into(),
            built: rec.is_some(),
            outputs,
            source_files,
            source_bytes,
        });
    }
    let quiet = crate::report::Ui::new(true, false);
    let drop_refs = undeclared_refs(&project.dir, store, &quiet);
    let plain = gc(
        store,
        &GcOptions {
            dry_run: true,
            temporaries: false,
            keep: 0,
            drop_refs,
            work_keys: pending_keys(&project.dir, store),
            // Reclaimable: all that nothing reaches, young or not.
            grace: 0,
        },
    )?;
    Ok(DuReport {
        table: measured_table(project),
        nodes,
        cache_bytes: crate::store::dir_size(&store.root),
        reclaimable_bytes: plain.freed_bytes,
        temporary_bytes: plain.temporary_bytes,
    })
}

/// The size of the running `pai` binary: the study's "Python environment" row.
pub fn tool_bytes() -> (u64, String) {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some((std::fs::metadata(&p).ok()?.len(), p.display().to_string())))
        .unwrap_or((0, "pai".into()))
}

/// The study's table from the current builds of the project's pipeline file:
/// each output in the row its kind declares, with the bytes the build wrote
/// (also for temporaries `gc --temporaries` has collected since: the table
/// is the funnel as it was after training).
pub fn measured_table(project: &Project) -> StudyTable {
    let store = &project.store;
    let mut rows = StudyTable::empty();
    let at = |a: Artifact| Artifact::ALL.iter().position(|&x| x == a).unwrap_or(0);
    // Every distinct object (or source file) once: (bytes, its rows, kept?).
    type Unique = (u64, Vec<Artifact>, bool);
    let mut unique: HashMap<String, Unique> = HashMap::new();
    let mut retentions: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut seen_in_row: HashMap<usize, std::collections::HashSet<String>> = HashMap::new();
    for node in &project.pipeline.nodes {
        let Some(rec) = store.read_ref(&node.name).and_then(|k| store.record(&k)) else {
            continue;
        };
        if node.step.is_source() {
            let row = &mut rows[at(Artifact::RawText)];
            let mut bytes = 0;
            for f in &rec.files {
                if seen_in_row
                    .entry(at(Artifact::RawText))
                    .or_default()
                    .insert(f.hash.clone())
                {
                    row.bytes += f.bytes;
                    row.files += 1;
                }
                bytes += f.bytes;
                unique.entry(format!("source:{}", f.hash)).or_insert((
                    f.bytes,
                    vec![Artifact::RawText],
                    true,
                ));
            }
            row.held_by.push(format!(
                "{} ({} files, {})",
                node.name,
                rec.files.len(),
                size(bytes)
            ));
            continue;
        }
        let decls = node.step.outputs(&node.params).unwrap_or_default();
        // Outputs grouped per (row, declared name): `train/checkpoints/* (3 files)`.
        let mut groups: BTreeMap<(usize, String), usize> = BTreeMap::new();
        for o in &rec.outputs {
            let decl = decls.iter().find(|d| d.matches(&o.name));
            let artifact = decl.map(|d| d.artifact).unwrap_or(Artifact::Other);
            let i = at(artifact);
            let name = decl
                .map(|d| d.name.clone())
                .unwrap_or_else(|| o.name.clone());
            *groups.entry((i, name)).or_default() += 1;
            if seen_in_row.entry(i).or_default().insert(o.hash.clone()) {
                rows[i].bytes += o.bytes;
                rows[i].files += 1;
            }
            let mut r = o.retention.to_string();
            if o.collected {
                r.push_str(" (collected)");
            }
            let list = retentions.entry(i).or_default();
            if !list.contains(&r) {
                list.push(r);
            }
            let e = unique
                .entry(o.hash.clone())
                .or_insert((o.bytes, Vec::new(), false));
            if !e.1.contains(&artifact) {
                e.1.push(artifact);
            }
            e.2 |= o.retention == Retention::Keep;
        }
        for ((i, name), n) in groups {
            rows[i].held_by.push(if n > 1 {
                format!("{}/{name} ({n} files)", node.name)
            } else {
                format!("{}/{name}", node.name)
            });
        }
    }
    for (i, list) in retentions {
        rows[i].retention = if list.len() == 1 {
            list[0].clone()
        } else {
            "mixed".into()
        };
    }
    let (tool, path) = tool_bytes();
    let t = &mut rows[at(Artifact::Tool)];
    t.bytes = tool;
    t.files = 1;
    t.held_by = vec![path];
    let sum = |pred: &dyn Fn(&Unique) -> bool| -> u64 {
        unique.values().filter(|e| pred(e)).map(|e| e.0).sum()
    };
    let totals = StudyTotals {
        after_training: sum(&|_| true) + tool,
        after_cleanup: sum(&|e| e.2) + tool,
        usable_model: sum(&|e| {
            e.1.iter()
                .any(|a| matches!(a, Artifact::Model8Bit | Artifact::Model4Bit))
        }),
    };
    StudyTable { rows, totals }
}

impl fmt::Display for DuReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.table)?;
        writeln!(f)?;
        writeln!(
            f,
            "cache total:                     {}",
            size(self.cache_bytes)
        )?;
        writeln!(
            f,
            "reclaimable by `pai gc`:         {}",
            size(self.reclaimable_bytes)
        )?;
        write!(
            f,
            "more with `pai gc --temporaries`: {}",
            size(self.temporary_bytes)
        )
    }
}
