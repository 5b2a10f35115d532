//! `pai du`: the funnel as built — every node's outputs and sizes, the
//! cache's total, and what `gc` would free.

use std::fmt;

use anyhow::Result;

use super::{Project, pending_keys, undeclared_refs};

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
        nodes,
        cache_bytes: crate::store::dir_size(&store.root),
        reclaimable_bytes: plain.freed_bytes,
        temporary_bytes: plain.temporary_bytes,
    })
}

impl fmt::Display for DuReport {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        use crate::report::size;
        writeln!(
            f,
            "{:<14} {:<26} {:>10}  retention",
            "node", "output", "size"
        )?;
        for n in &self.nodes {
            if !n.built {
                writeln!(f, "{:<14} {:<26} {:>10}", n.name, "(not built)", "")?;
            } else if let (Some(files), Some(bytes)) = (n.source_files, n.source_bytes) {
                writeln!(
                    f,
                    "{:<14} {:<26} {:>10}  source",
                    n.name,
                    format!("{files} files"),
                    size(bytes)
                )?;
            }
            for o in &n.outputs {
                let ret = if o.collected {
                    format!("{} (collected)", o.retention)
                } else {
                    o.retention.clone()
                };
                writeln!(
                    f,
                    "{:<14} {:<26} {:>10}  {ret}",
                    n.name,
                    o.name,
                    size(o.bytes)
                )?;
            }
        }
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
        writeln!(
            f,
            "more with `pai gc --temporaries`: {}",
            size(self.temporary_bytes)
        )
    }
}
