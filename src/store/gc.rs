//! `pai gc`: deletes what no current build reaches.
//!
//! Roots are the refs of every pipeline file (view) in the store. Kept:
//! their records and live outputs, plus `--keep N` older builds per node.
//! `--temporaries` also collects the temporary and log outputs of current
//! builds (optimizer states, checkpoints, snapshots, logs). Work folders go
//! once no pipeline file's node would build their key. Records and objects
//! younger than the grace period are kept even when nothing reaches them, so
//! a build that just wrote them never loses them. Call with the lock held.

use std::collections::{BTreeMap, HashSet};
use std::fs;

use anyhow::{Result, bail};
use serde::Serialize;

use super::{Record, Retention, Store};

pub struct GcOptions {
    pub dry_run: bool,
    pub temporaries: bool,
    pub keep: usize,
    /// Refs to drop first, as (view, node): nodes no longer in their
    /// pipeline file.
    pub drop_refs: Vec<(String, String)>,
    /// Action keys some pipeline file's node would build now: their work
    /// folders may be resumed and are kept. `None` (a pipeline file could
    /// not be planned): keep every work folder.
    pub work_keys: Option<HashSet<String>>,
    /// Seconds: unreachable records and objects younger than this are kept.
    pub grace: u64,
}

/// Why a build is kept.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum KeptBy {
    /// A ref of a pipeline file (view) names it: the node's current build.
    Current { view: String },
    /// `--keep N`: the node's n-th newest older build (1-based).
    Keep { rank: usize },
    /// Its record is younger than the grace period.
    Grace,
}

/// A build (record) gc keeps, the root that keeps it, and the bytes of its
/// live outputs.
#[derive(Serialize, Debug, Clone)]
pub struct KeptBuild {
    pub node: String,
    pub key: String,
    pub by: KeptBy,
    pub bytes: u64,
}

/// A build (record) gc deletes, and the bytes of the objects that go with it
/// (objects another kept build also holds are not counted).
#[derive(Serialize, Debug, Clone)]
pub struct DeletedBuild {
    pub node: String,
    pub key: String,
    pub bytes: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct GcReport {
    pub dry_run: bool,
    /// Refs of nodes no longer declared, dropped (or that would be).
    pub dropped_refs: Vec<String>,
    pub deleted_objects: usize,
    pub freed_bytes: u64,
    pub deleted_records: usize,
    pub collected_outputs: usize,
    pub tmp_bytes: u64,
    pub kept_objects: usize,
    pub kept_bytes: u64,
    /// Of the kept bytes, those only temporary and log outputs of current
    /// builds hold: what `--temporaries` would free on top.
    pub temporary_bytes: u64,
    /// Abandoned work folders (resumable state of builds no node would run
    /// again) deleted, and their bytes (part of `freed_bytes`).
    pub deleted_work: usize,
    pub work_bytes: u64,
    /// Every kept build with the root that keeps it.
    pub kept_builds: Vec<KeptBuild>,
    /// Every deleted build with the bytes it frees.
    pub deleted_builds: Vec<DeletedBuild>,
    /// Unreachable objects kept because they are younger than the grace
    /// period, and their bytes.
    pub grace_objects: usize,
    pub grace_bytes: u64,
}

/// Every view of the store, the main one first.
pub fn views(store: &Store) -> Vec<Store> {
    let mut v = vec![Store::new(store.root.clone(), super::MAIN_VIEW)];
    if let Ok(rd) = fs::read_dir(store.root.join("views")) {
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        v.extend(names.iter().map(|n| Store::new(store.root.clone(), n)));
    }
    v
}

/// (node, key) of every ref in every view.
pub fn roots(store: &Store) -> Vec<(Store, String, String)> {
    let mut out = Vec::new();
    for view in views(store) {
        for n in view.ref_names() {
            if let Some(k) = view.read_ref(&n) {
                out.push((Store::new(store.root.clone(), &view.view), n, k));
            }
        }
    }
    out
}

/// Refs that exist but cannot be read (empty, garbage, not a file), in
/// every view: (path, label).
pub fn bad_refs(store: &Store) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    for view in views(store) {
        for n in view.ref_names() {
            if view.read_ref(&n).is_none() {
                let label = if view.view == super::MAIN_VIEW {
                    n.clone()
                } else {
                    format!("{}:{n}", view.view)
                };
                out.push((view.refs_dir().join(&n), label));
            }
        }
    }
    out
}

pub fn gc(store: &Store, opts: &GcOptions) -> Result<GcReport> {
    // A ref that cannot be read is damage, not "no current build": gc would
    // delete that node's build.
    let bad = bad_refs(store);
    if !bad.is_empty() {
        bail!(
            "gc refused: {} cannot be read ({}), so gc cannot tell which build is current and \
             would delete it; run `pai verify --repair` to remove the bad ref, or rebuild the \
             node (`pai build {}`)",
            bad.iter()
                .map(|(p, _)| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if bad.len() == 1 {
                "it is empty or not a build key"
            } else {
                "they are empty or not build keys"
            },
            bad.iter()
                .map(|(_, l)| l.rsplit(':').next().unwrap_or(l).to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut roots = roots(store);
    roots.retain(|(view, node, _)| {
        let drop = opts
            .drop_refs
            .iter()
            .any(|(v, n)| v == &view.view && n == node);
        if drop {
            report.dropped_refs.push(if view.view == super::MAIN_VIEW {
                node.clone()
            } else {
                format!("{}:{node}", view.view)
            });
            if !opts.dry_run {
                fs::remove_file(view.refs_dir().join(node)).ok();
            }
        }
        !drop
    });
    let current: HashSet<String> = roots.iter().map(|(_, _, k)| k.clone()).collect();
    let records = store.all_records();

    // Older builds to keep: the newest N per node.
    let mut by_node: BTreeMap<String, Vec<&Record>> = BTreeMap::new();
    for (_, rec) in &records {
        if let Some(rec) = rec
            && !current.contains(&rec.key)
        {
            by_node.entry(rec.node.clone()).or_default().push(rec);
        }
    }
    // Every kept build and the root that keeps it.
    let mut kept: BTreeMap<String, KeptBy> = roots
        .iter()
        .map(|(view, _, k)| {
            (
                k.clone(),
                KeptBy::Current {
                    view: view.view.clone(),
                },
            )
        })
        .collect();
    for recs in by_node.values_mut() {
        recs.sort_by(|a, b| {
            (b.built_at, b.built_at_nanos)
                .cmp(&(a.built_at, a.built_at_nanos))
                .then(a.key.cmp(&b.key))
        });
        for (i, r) in recs.iter().take(opts.keep).enumerate() {
            kept.insert(r.key.clone(), KeptBy::Keep { rank: i + 1 });
        }
    }
    // Young records: a build that just committed (or is committing) them.
    let young = |path: &std::path::Path| {
        opts.grace > 0
            && fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_none_or(|age| age.as_secs() < opts.grace)
    };
    for (path, rec) in &records {
        if let Some(rec) = rec
            && !kept.contains_key(&rec.key)
            && young(path)
        {
            kept.insert(rec.key.clone(), KeptBy::Grace);
        }
    }

    let mut reachable: HashSet<String> = HashSet::new();
    // Objects held only as temporaries of current builds (see temporary_bytes).
    let mut temporary: HashSet<String> = HashSet::new();
    let mut held: HashSet<String> = HashSet::new();
    let mut changed: Vec<Record> = Vec::new();
    let mut deleted_recs: Vec<&Record> = Vec::new();
    for (path, rec) in &records {
        match rec {
            Some(rec) if kept.contains_key(&rec.key) => {
                report.kept_builds.push(KeptBuild {
                    node: rec.node.clone(),
                    key: rec.key.clone(),
                    by: kept[&rec.key].clone(),
                    bytes: rec.live_outputs().map(|o| o.bytes).sum(),
                });
                let mut rec = rec.clone();
                if opts.temporaries && current.contains(&rec.key) {
                    let mut touched = false;
                    for o in rec.outputs.iter_mut() {
                        if !o.collected
                            && matches!(o.retention, Retention::Temporary | Retention::Log)
                        {
                            o.collected = true;
                            touched = true;
                            report.collected_outputs += 1;
                        }
                    }
                    if touched {
                        changed.push(rec.clone());
                    }
                }
                for o in rec.live_outputs() {
                    let temp = current.contains(&rec.key)
                        && matches!(o.retention, Retention::Temporary | Retention::Log);
                    if temp {
                        temporary.insert(o.hash.clone());
                    } else {
                        held.insert(o.hash.clone());
                    }
                    reachable.insert(o.hash.clone());
                }
            }
            _ => {
                report.deleted_records += 1;
                match rec {
                    Some(rec) => deleted_recs.push(rec),
                    None => report.deleted_builds.push(DeletedBuild {
                        node: "(unreadable record)".into(),
                        key: path
                            .file_stem()
                            .map(|s| s.to_string_lossy().to_string())
                            .unwrap_or_default(),
                        bytes: 0,
                    }),
                }
                if !opts.dry_run {
                    fs::remove_file(path).ok();
                }
            }
        }
    }

    if !opts.dry_run {
        // Records first, then the out links, then the objects: a crash in
        // between leaves records that ask for nothing missing.
        for rec in &changed {
            store.write_record(rec)?;
        }
        // Relink what no longer matches, also after a gc killed before this step.
        let by_key: std::collections::HashMap<&str, &Record> = records
            .iter()
            .filter_map(|(_, r)| r.as_ref().map(|r| (r.key.as_str(), r)))
            .collect();
        for (view, node, key) in &roots {
            let rec = changed
                .iter()
                .find(|r| &r.key == key)
                .or_else(|| by_key.get(key.as_str()).copied())
                .cloned();
            if let Some(rec) = rec
                && !rec.outputs.is_empty()
                && !view.out_current(node, &rec)
                && view.complete(&rec)
            {
                view.link_out(node, &rec)?;
            }
        }
        // Half-written records of killed runs.
        if let Ok(rd) = fs::read_dir(store.records_dir()) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with('.') {
                    fs::remove_file(e.path()).ok();
                }
            }
        }
        // out/ folders of nodes without a ref.
        for view in views(store) {
            if let Ok(rd) = fs::read_dir(view.out_root()) {
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().to_string();
                    if !name.starts_with('.') && view.read_ref(&name).is_none() {
                        super::remove_entry(&e.path()).ok();
                    }
                }
            }
        }
    }

    // Sizes of the objects that go, read once here (before any is deleted).
    let mut deleted_sizes: std::collections::HashMap<String, u64> = Default::default();
    for (hash, path) in store.all_objects() {
        let bytes = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if reachable.contains(&hash) {
            report.kept_objects += 1;
            report.kept_bytes += bytes;
            if temporary.contains(&hash) && !held.contains(&hash) {
                report.temporary_bytes += bytes;
            }
            continue;
        }
        if young(&path) {
            report.grace_objects += 1;
            report.grace_bytes += bytes;
            report.kept_objects += 1;
            report.kept_bytes += bytes;
            continue;
        }
        report.deleted_objects += 1;
        report.freed_bytes += bytes;
        deleted_sizes.insert(hash.clone(), bytes);
        if !opts.dry_run {
            super::remove_entry(&path).ok();
            if let Some(parent) = path.parent() {
                fs::remove_dir(parent).ok(); // only if empty
            }
        }
    }
    // What each deleted build frees: its objects that go, each counted once.
    for rec in deleted_recs {
        let bytes = rec
            .live_outputs()
            .filter_map(|o| deleted_sizes.remove(&o.hash))
            .sum();
        report.deleted_builds.push(DeletedBuild {
            node: rec.node.clone(),
            key: rec.key.clone(),
            bytes,
        });
    }
    if let Some(keys) = &opts.work_keys {
        for (key, _, bytes) in store.abandoned_work() {
            if keys.contains(&key) {
                continue;
            }
            report.deleted_work += 1;
            report.work_bytes += bytes;
            report.freed_bytes += bytes;
            if !opts.dry_run {
                store.remove_abandoned_work(&key)?;
            }
        }
    }
    report.tmp_bytes = if opts.dry_run {
        super::dir_size(&store.tmp_root())
    } else {
        store.clean_tmp()?
    };
    report.freed_bytes += report.tmp_bytes;
    Ok(report)
}
