//! `pai bench engine`: the engine's own speed, each figure beside a baseline
//! measured in the same run.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use super::{Action, BuildOptions, NodeStatus, Project, build, status};
use crate::report::{Ui, size};
use crate::steps::SplitMix64;
use crate::store::lock;

#[derive(Serialize)]
pub struct EngineBench {
    /// Targets of the no-op build measurement.
    pub noop_targets: Vec<String>,
    pub noop_build_runs: usize,
    pub noop_build_ms_median: f64,
    pub noop_build_ms_min: f64,
    /// The same, each run a new `pai` process (start-up included).
    pub noop_build_process_ms_median: f64,
    pub corpus_files: usize,
    pub corpus_bytes: u64,
    /// `status` with no stat cache: walk, stat, hash every file.
    pub cold_status_seconds: f64,
    pub cold_gbps: f64,
    /// Plain parallel BLAKE3 over the same files (b3sum-like), same run.
    pub baseline_seconds: f64,
    pub baseline_gbps: f64,
    pub cold_vs_baseline: f64,
    pub noop_status_ms_median: f64,
    pub noop_status_ms_min: f64,
    /// What syncing commits to the disk costs (`store::durable`): the same
    /// no-op build, and a build of the data end (every node up to the `pack`
    /// nodes) into an empty store, with and without syncs (best of two each).
    pub noop_build_ms_unsynced: f64,
    pub data_end_targets: Vec<String>,
    pub data_end_build_seconds_synced: f64,
    pub data_end_build_seconds_unsynced: f64,
    pub data_end_sync_cost: f64,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// One no-op build exactly as `pai build` runs it: parse, lock, plan, check.
fn noop_build(dir: &Path, file: Option<&Path>, names: &[String], ui: &Ui) -> Result<(f64, bool)> {
    let t = Instant::now();
    let project = Project::open(dir, file)?;
    let targets = project.targets(names)?;
    let reports = project.locked_build(&targets, &BuildOptions::new(Some(2), None), ui)?;
    let all_fresh = reports.iter().all(|r| r.status == NodeStatus::Fresh);
    Ok((t.elapsed().as_secs_f64() * 1e3, all_fresh))
}

pub fn engine(
    dir: &Path,
    file: Option<&Path>,
    files: usize,
    bytes: u64,
    runs: usize,
    ui: &Ui,
) -> Result<EngineBench> {
    let quiet = Ui::new(true, false);
    // 1. No-op build of the default pipeline (or of what of it builds today).
    let project = Project::open(dir, file)?;
    let default_targets = project.targets(&[])?;
    ui.message("bench: building the pipeline once so the timed builds are no-ops");
    let reports = {
        let _lock = lock::acquire(&project.store.root, "bench", &|m| ui.message(m))?;
        build(
            &project,
            &default_targets,
            &BuildOptions::new(Some(2), None),
            &quiet,
        )?
    };
    let built: Vec<String> = reports
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                NodeStatus::Fresh | NodeStatus::Restored | NodeStatus::Built
            )
        })
        .map(|r| r.name.clone())
        .collect();
    let targets: Vec<String> = if built.len() == reports.len() {
        default_targets
            .iter()
            .map(|&i| project.pipeline.nodes[i].name.clone())
            .collect()
    } else {
        ui.message("bench: the default target does not build yet; timing a no-op build of the nodes that do");
        built
    };
    drop(project);
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let (ms, fresh) = noop_build(dir, file, &targets, &quiet)?;
        anyhow::ensure!(
            fresh,
            "a no-op build ran a node: the pipeline is not deterministic"
        );
        times.push(ms);
    }
    // The same as a user runs it: a fresh `pai` process each time.
    let mut process = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        for _ in 0..runs.max(1) {
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("-C").arg(dir).arg("-q");
            if let Some(f) = file {
                cmd.arg("-f").arg(f);
            }
            cmd.arg("build").args(&targets);
            let t = Instant::now();
            let status = cmd.status()?;
            process.push(t.elapsed().as_secs_f64() * 1e3);
            anyhow::ensure!(status.success(), "`pai build` failed during the benchmark");
        }
    }

    // What durability costs: the same no-op build without syncs (it writes
    // nothing, so about the same), and the data end built from scratch.
    crate::store::set_durable(false);
    let unsynced = (0..runs.max(1))
        .map(|_| noop_build(dir, file, &targets, &quiet).map(|(ms, _)| ms))
        .collect::<Result<Vec<f64>>>();
    crate::store::set_durable(true);
    let noop_unsynced = median(unsynced?);
    let (data_end_targets, synced, unsynced) = data_end_bench(dir, file, ui)?;

    // 2. A generated corpus.
    let root = std::env::temp_dir().join(format!("pai-bench-{}", std::process::id()));
    let result = corpus_bench(&root, files, bytes, runs, ui);
    std::fs::remove_dir_all(&root).ok();
    let (cold, base, noop) = result?;
    let gb = bytes as f64 / 1e9;
    Ok(EngineBench {
        noop_targets: targets,
        noop_build_runs: times.len(),
        noop_build_ms_median: median(times.clone()),
        noop_build_ms_min: min(&times),
        noop_build_process_ms_median: median(process),
        corpus_files: files,
        corpus_bytes: bytes,
        cold_status_seconds: cold,
        cold_gbps: gb / cold,
        baseline_seconds: base,
        baseline_gbps: gb / base,
        cold_vs_baseline: base / cold,
        noop_status_ms_median: median(noop.clone()),
        noop_status_ms_min: min(&noop),
        noop_build_ms_unsynced: noop_unsynced,
        data_end_targets,
        data_end_build_seconds_synced: synced,
        data_end_build_seconds_unsynced: unsynced,
        data_end_sync_cost: if unsynced > 0.0 {
            synced / unsynced
        } else {
            0.0
        },
    })
}

/// Builds the pipeline's data end (its `pack` nodes and what they read) into
/// an empty scratch store, synced and unsynced alternately, twice each:
/// (targets, best synced seconds, best unsynced seconds).
fn data_end_bench(dir: &Path, file: Option<&Path>, ui: &Ui) -> Result<(Vec<String>, f64, f64)> {
    let mut project = Project::open(dir, file)?;
    let targets: Vec<usize> = (0..project.pipeline.nodes.len())
        .filter(|&i| project.pipeline.nodes[i].kind() == "pack")
        .collect();
    if targets.is_empty() {
        ui.message("bench: the pipeline has no `pack` node; the data-end build is not measured");
        return Ok((Vec::new(), 0.0, 0.0));
    }
    let names = targets
        .iter()
        .map(|&i| project.pipeline.nodes[i].name.clone())
        .collect();
    ui.message("bench: building the data end into a scratch store, with and without syncs");
    let quiet = Ui::new(true, false);
    let scratch = std::env::temp_dir().join(format!("pai-bench-sync-{}", std::process::id()));
    let mut best = [f64::INFINITY; 2];
    let result = (|| -> Result<()> {
        for round in 0..4 {
            let synced = round % 2 == 0;
            std::fs::remove_dir_all(&scratch).ok();
            project.store =
                crate::store::Store::new(scratch.join("cache"), crate::store::MAIN_VIEW);
            crate::store::set_durable(synced);
            let t = Instant::now();
            let reports = build(
                &project,
                &targets,
                &BuildOptions::new(Some(2), None),
                &quiet,
            );
            let secs = t.elapsed().as_secs_f64();
            crate::store::set_durable(true);
            let failed = reports?
                .into_iter()
                .find(|r| r.status == NodeStatus::Failed);
            if let Some(r) = failed {
                anyhow::bail!(
                    "the data end failed at `{}`: {}",
                    r.name,
                    r.error.unwrap_or_default()
                );
            }
            let slot = &mut best[usize::from(!synced)];
            *slot = slot.min(secs);
        }
        Ok(())
    })();
    crate::store::set_durable(true);
    std::fs::remove_dir_all(&scratch).ok();
    result?;
    Ok((names, best[0], best[1]))
}

fn corpus_bench(
    root: &Path,
    files: usize,
    bytes: u64,
    runs: usize,
    ui: &Ui,
) -> Result<(f64, f64, Vec<f64>)> {
    let corpus = root.join("corpus");
    ui.message(&format!(
        "bench: writing {files} files, {} in all, under {}",
        size(bytes),
        root.display()
    ));
    let per = (bytes / files.max(1) as u64) as usize;
    let paths: Vec<PathBuf> = (0..files)
        .map(|i| {
            corpus
                .join(format!("d{:03}", i % 100))
                .join(format!("f{i:05}.txt"))
        })
        .collect();
    for d in 0..100.min(files) {
        std::fs::create_dir_all(corpus.join(format!("d{d:03}")))?;
    }
    paths
        .par_iter()
        .enumerate()
        .try_for_each(|(i, p)| -> Result<()> {
            let mut rng = SplitMix64(i as u64);
            let mut buf = vec![0u8; per];
            for chunk in buf.chunks_mut(8) {
                let v = rng.next_u64().to_le_bytes();
                chunk.copy_from_slice(&v[..chunk.len()]);
            }
            std::fs::write(p, &buf).with_context(|| format!("writing {}", p.display()))
        })?;
    std::fs::write(
        root.join("Pipeline.toml"),
        "[nodes.corpus]\nkind = \"source\"\npath = \"corpus\"\n",
    )?;

    let baseline = || -> Result<f64> {
        let t = Instant::now();
        let hashes: Vec<Result<blake3::Hash>> = paths
            .par_iter()
            .map(|p| {
                let mut h = blake3::Hasher::new();
                h.update(&std::fs::read(p)?);
                Ok(h.finalize())
            })
            .collect();
        for h in hashes {
            h?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let project = Project::open(root, None)?;
    let all: Vec<usize> = (0..project.pipeline.nodes.len()).collect();
    let cold = || -> Result<f64> {
        std::fs::remove_dir_all(project.store.root.join("stat")).ok();
        let t = Instant::now();
        let s = status(&project, &all);
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(
            s.iter().all(|s| s.action != Action::Error),
            "status failed: {:?}",
            s[0].reasons
        );
        Ok(secs)
    };
    baseline()?; // warm the page cache: both sides then read from memory
    let mut base = f64::INFINITY;
    let mut cold_best = f64::INFINITY;
    for _ in 0..2 {
        base = base.min(baseline()?);
        cold_best = cold_best.min(cold()?);
    }
    // Let every mtime fall safely behind the stat cache's racy window.
    std::thread::sleep(std::time::Duration::from_millis(300));
    cold()?;
    let mut noop = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let project = Project::open(root, None)?;
        let s = status(&project, &all);
        noop.push(t.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(s.iter().all(|s| s.action != Action::Error), "status failed");
    }
    Ok((cold_best, base, noop))
}

impl fmt::Display for EngineBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "no-op build of {} ({} runs, in process):",
            self.noop_targets.join(", "),
            self.noop_build_runs
        )?;
        writeln!(
            f,
            "  median {:.2} ms, min {:.2} ms   (target < 10 ms); as a new process each run: median {:.2} ms",
            self.noop_build_ms_median, self.noop_build_ms_min, self.noop_build_process_ms_median
        )?;
        writeln!(
            f,
            "generated corpus: {} files, {}",
            self.corpus_files,
            size(self.corpus_bytes)
        )?;
        writeln!(
            f,
            "  cold status (walk + stat + hash): {:.3} s = {:.2} GB/s",
            self.cold_status_seconds, self.cold_gbps
        )?;
        writeln!(
            f,
            "  baseline parallel BLAKE3 of the same files: {:.3} s = {:.2} GB/s",
            self.baseline_seconds, self.baseline_gbps
        )?;
        writeln!(
            f,
            "  ratio cold/baseline throughput: {:.2}   (target ≥ 0.80)",
            self.cold_vs_baseline
        )?;
        writeln!(
            f,
            "  no-op status: median {:.2} ms, min {:.2} ms   (target < 100 ms)",
            self.noop_status_ms_median, self.noop_status_ms_min
        )?;
        writeln!(
            f,
            "durability (every commit synced to the disk, the default):"
        )?;
        writeln!(
            f,
            "  no-op build unsynced: median {:.2} ms (synced: {:.2} ms above)",
            self.noop_build_ms_unsynced, self.noop_build_ms_median
        )?;
        if self.data_end_targets.is_empty() {
            return Ok(());
        }
        writeln!(
            f,
            "  data end ({}) from an empty store: synced {:.3} s, unsynced {:.3} s, ratio {:.2}",
            self.data_end_targets.join(", "),
            self.data_end_build_seconds_synced,
            self.data_end_build_seconds_unsynced,
            self.data_end_sync_cost
        )
    }
}
