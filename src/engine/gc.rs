//! `pai gc` as the project runs it: the settings (command line over the
//! pipeline file's `[gc]` table over built-in defaults), the store's lock,
//! the roots of every pipeline file, the two passes of `--max-size`, and the
//! report a user reads.

use std::fmt;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{pending_keys, pipeline_path, store_at, undeclared_refs, view_file_rel};
use crate::report::{Ui, size};
use crate::spec::GcDefaults;
use crate::store::gc::{self, GcOptions, GcReport, KeptBy};
use crate::store::lock;

/// The grace period when neither the command line nor `[gc]` sets one.
pub const DEFAULT_GRACE: u64 = 3600;

/// What the command line asked; `None`: not given.
#[derive(Clone, Debug, Default)]
pub struct GcRequest {
    pub dry_run: bool,
    pub temporaries: Option<bool>,
    pub keep: Option<usize>,
    pub max_size: Option<u64>,
    pub grace: Option<u64>,
}

/// The settings gc ran with, and where each came from.
#[derive(Serialize, Debug, Clone)]
pub struct GcSettings {
    pub keep: usize,
    pub temporaries: bool,
    pub max_size: Option<u64>,
    pub grace: u64,
    /// For each setting given by the pipeline file's `[gc]` table rather
    /// than the command line or the default: its name.
    pub from_pipeline: Vec<String>,
}

#[derive(Serialize, Debug)]
pub struct GcRun {
    pub settings: GcSettings,
    /// `--max-size` was exceeded after a plain collection, so temporaries go.
    pub temporaries_for_size: bool,
    #[serde(flatten)]
    pub report: GcReport,
}

fn settings(req: &GcRequest, file: &GcDefaults) -> GcSettings {
    let mut from = Vec::new();
    let mut pick = |name: &str, cli: bool, toml: bool| {
        if !cli && toml {
            from.push(name.to_string());
        }
    };
    pick("keep", req.keep.is_some(), file.keep.is_some());
    pick(
        "temporaries",
        req.temporaries.is_some(),
        file.temporaries.is_some(),
    );
    pick("max_size", req.max_size.is_some(), file.max_size.is_some());
    pick("grace", req.grace.is_some(), file.grace.is_some());
    GcSettings {
        keep: req.keep.or(file.keep).unwrap_or(0),
        temporaries: req.temporaries.or(file.temporaries).unwrap_or(false),
        max_size: req.max_size.or(file.max_size),
        grace: req.grace.or(file.grace).unwrap_or(DEFAULT_GRACE),
        from_pipeline: from,
    }
}

/// Runs gc on the project in `dir` (its pipeline file `file`, `-f`).
pub fn run(dir: &Path, file: Option<&Path>, req: &GcRequest, ui: &Ui) -> Result<GcRun> {
    let path = pipeline_path(dir, file);
    let defaults = match crate::spec::load(&path) {
        Ok(p) => p.gc,
        Err(_) => {
            ui.message(&format!(
                "note: {} does not parse, so its [gc] table is not read; built-in defaults apply",
                path.display()
            ));
            GcDefaults::default()
        }
    };
    let settings = settings(req, &defaults);
    let store = store_at(dir, file);
    let _lock = lock::acquire(&store.root, "gc", &|m| ui.message(m))?;
    let drop_refs = undeclared_refs(dir, &store, ui);
    let work_keys = pending_keys(dir, &store);
    let opts = |dry_run: bool, temporaries: bool| GcOptions {
        dry_run,
        temporaries,
        keep: settings.keep,
        drop_refs: drop_refs.clone(),
        work_keys: work_keys.clone(),
        grace: settings.grace,
    };
    // Over the size limit after a plain collection: temporaries go too.
    let mut temporaries = settings.temporaries;
    let mut for_size = false;
    if let Some(max) = settings.max_size
        && !temporaries
    {
        for_size = gc::gc(&store, &opts(true, false))?.kept_bytes > max;
        temporaries = for_size;
    }
    let report = gc::gc(&store, &opts(req.dry_run, temporaries))?;
    if let Some(max) = settings.max_size
        && report.kept_bytes > max
    {
        ui.message(&format!(
            "note: the current builds alone take {}, more than max_size {}; drop nodes or \
             builds (`--keep 0`) to go lower",
            size(report.kept_bytes),
            size(max)
        ));
    }
    Ok(GcRun {
        settings,
        temporaries_for_size: for_size,
        report,
    })
}

/// The pipeline file a view belongs to, as a user names it.
fn view_label(view: &str) -> String {
    view_file_rel(view)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| format!("view {view}"))
}

impl fmt::Display for GcRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.report;
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        if r.dry_run {
            for b in &r.kept_builds {
                let by = match &b.by {
                    KeptBy::Current { view } => {
                        format!("current build in {}", view_label(view))
                    }
                    KeptBy::Keep { rank } => format!("--keep: older build #{rank}"),
                    KeptBy::Grace => format!(
                        "younger than the grace period ({})",
                        duration(self.settings.grace)
                    ),
                };
                writeln!(
                    f,
                    "keep    {:<20} {}  {:>10}  {by}",
                    b.node,
                    &b.key[..12.min(b.key.len())],
                    size(b.bytes)
                )?;
            }
            for b in &r.deleted_builds {
                writeln!(
                    f,
                    "delete  {:<20} {}  {:>10}",
                    b.node,
                    &b.key[..12.min(b.key.len())],
                    size(b.bytes)
                )?;
            }
        }
        for n in &r.dropped_refs {
            writeln!(
                f,
                "{verb} the builds of `{n}`: no pipeline file declares it any more"
            )?;
        }
        if self.temporaries_for_size {
            writeln!(
                f,
                "over max_size {}: temporary outputs of current builds go too",
                size(self.settings.max_size.unwrap_or(0))
            )?;
        }
        writeln!(
            f,
            "{verb} {} objects and {} records{}{}, freeing {}",
            r.deleted_objects,
            r.deleted_records,
            if r.collected_outputs > 0 {
                format!(" ({} temporary outputs)", r.collected_outputs)
            } else {
                String::new()
            },
            if r.deleted_work > 0 {
                format!(
                    " and {} abandoned work folders ({})",
                    r.deleted_work,
                    size(r.work_bytes)
                )
            } else {
                String::new()
            },
            size(r.freed_bytes)
        )?;
        write!(
            f,
            "kept {} objects ({})",
            r.kept_objects,
            size(r.kept_bytes)
        )?;
        if r.grace_objects > 0 {
            write!(
                f,
                "; {} of them ({}) only because they are younger than the grace period ({}; \
                 `--grace 0` to collect them now)",
                r.grace_objects,
                size(r.grace_bytes),
                duration(self.settings.grace)
            )?;
        }
        if !self.settings.from_pipeline.is_empty() {
            write!(
                f,
                "\n[gc] in the pipeline file set: {}",
                self.settings.from_pipeline.join(", ")
            )?;
        }
        Ok(())
    }
}

/// Seconds as a user writes them: `1h`, `30m`, `45s`.
fn duration(s: u64) -> String {
    match s {
        0 => "0".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_overrides_the_gc_table_which_overrides_the_defaults() {
        let file = GcDefaults {
            keep: Some(3),
            max_size: Some(10),
            temporaries: Some(true),
            grace: Some(60),
        };
        let s = settings(&GcRequest::default(), &file);
        assert_eq!(
            (s.keep, s.temporaries, s.max_size, s.grace),
            (3, true, Some(10), 60)
        );
        assert_eq!(s.from_pipeline.len(), 4);
        let cli = GcRequest {
            keep: Some(0),
            temporaries: Some(false),
            grace: Some(0),
            ..GcRequest::default()
        };
        let s = settings(&cli, &file);
        assert_eq!(
            (s.keep, s.temporaries, s.max_size, s.grace),
            (0, false, Some(10), 0)
        );
        assert_eq!(s.from_pipeline, vec!["max_size".to_string()]);
        let s = settings(&GcRequest::default(), &GcDefaults::default());
        assert_eq!(
            (s.keep, s.temporaries, s.max_size, s.grace),
            (0, false, None, DEFAULT_GRACE)
        );
    }
}
