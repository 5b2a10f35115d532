//! Running a build: nodes in dependency order, independent ones in parallel
//! (`-j`), GPU nodes one at a time, each committed atomically to the store.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Decision, KeyParts, Project, decide, source::Listing};
use crate::remote::{Cache, Traffic, chain::wanted};
use crate::report::Ui;
use crate::steps::{InputFile, InputView, LazyGpu, OutputDecl, StepCtx};
use crate::store::{self, RanOn, RecFile, RecOutput, Record, Store};

pub struct BuildOptions {
    pub jobs: usize,
    /// The GPU adapter to open (a name substring or backend), from `--adapter`
    /// or `PAI_ADAPTER`; `None`: the best one found; `cpu`: the native CPU
    /// adapter (no wgpu device is opened).
    pub adapter: Option<String>,
    /// The shared remote cache, asked after the local store before a stale
    /// node runs, and sent what is built here (unless read-only).
    pub remote: Option<Arc<Cache>>,
    /// `pai pull`: a stale node the remote does not hold fails instead of
    /// running.
    pub remote_only: bool,
}

impl BuildOptions {
    /// `jobs`: `-j`; `None`: one per CPU.
    pub fn new(jobs: Option<usize>, adapter: Option<String>) -> BuildOptions {
        let jobs = jobs.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        BuildOptions {
            jobs,
            adapter,
            remote: None,
            remote_only: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeStatus {
    Fresh,
    Restored,
    Built,
    /// Found in the shared remote cache and downloaded, not run.
    Remote,
    Failed,
    Skipped,
}

impl NodeStatus {
    pub fn word(self) -> &'static str {
        match self {
            NodeStatus::Fresh => "fresh",
            NodeStatus::Restored => "restored",
            NodeStatus::Built => "built",
            NodeStatus::Remote => "remote",
            NodeStatus::Failed => "failed",
            NodeStatus::Skipped => "skipped",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeReport {
    pub name: String,
    pub status: NodeStatus,
    pub seconds: f64,
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a node that was built says of its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// A node that is done: its record and, for a source, where its files are.
#[derive(Clone)]
struct Done {
    rec: Record,
    source_root: Option<PathBuf>,
}

struct Builder<'a> {
    project: &'a Project,
    ui: &'a Ui,
    done: Mutex<Vec<Option<Done>>>,
    /// The single GPU slot: held by a GPU node for its whole run.
    gpu_slot: Mutex<()>,
    /// One per node: held while a consumer rebuilds it (its collected temporaries,
    /// a corrupt output), so two consumers never run one producer at once (they
    /// would share its tmp folder and each delete the other's outputs).
    rebuilding: Vec<Mutex<()>>,
    /// The build's device, opened by the first step that asks for it.
    gpu: LazyGpu,
    remote: Option<&'a Cache>,
    remote_only: bool,
    /// Keys the remote did not have (asked once per run).
    remote_missed: Mutex<HashSet<String>>,
    /// Per node: a consumer in this build reads its temporary outputs, so a
    /// download from the remote brings them too.
    needs_temporaries: Vec<bool>,
}

/// Builds the targets and what they need. Returns one report per node in
/// the order they finished; the caller maps a failure to exit code 1.
pub fn build(
    project: &Project,
    targets: &[usize],
    opts: &BuildOptions,
    ui: &Ui,
) -> Result<Vec<NodeReport>> {
    let order = crate::graph::plan_order(&project.pipeline, targets);
    let n = project.pipeline.nodes.len();
    let file = std::path::absolute(&project.pipeline.path)
        .unwrap_or_else(|_| project.pipeline.path.clone());
    project.store.note_pipeline_file(&file)?;
    let builder = Builder {
        project,
        ui,
        done: Mutex::new(vec![None; n]),
        gpu_slot: Mutex::new(()),
        rebuilding: (0..n).map(|_| Mutex::new(())).collect(),
        gpu: LazyGpu::new(opts.adapter.clone()),
        remote: opts.remote.as_deref(),
        remote_only: opts.remote_only,
        remote_missed: Mutex::new(HashSet::new()),
        needs_temporaries: {
            let p = &project.pipeline;
            let mut v = vec![false; n];
            for &idx in &order {
                if p.nodes[idx].step.reads_temporaries() {
                    for j in p.nodes[idx].inputs.iter().filter_map(|i| p.get(i)) {
                        v[j] = true;
                    }
                }
            }
            v
        },
    };
    let deps: Vec<Vec<usize>> = project
        .pipeline
        .nodes
        .iter()
        .map(|node| {
            node.inputs
                .iter()
                .filter_map(|i| project.pipeline.get(i))
                .collect()
        })
        .collect();
    // The scheduler is linear in nodes and edges: each waiting node counts
    // its unfinished inputs, and the ready ones start in plan order.
    let mut rank = vec![usize::MAX; n];
    for (r, &idx) in order.iter().enumerate() {
        rank[idx] = r;
    }
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut unfinished = vec![0usize; n];
    for &idx in &order {
        for &d in &deps[idx] {
            if rank[d] != usize::MAX {
                dependents[d].push(idx);
                unfinished[idx] += 1;
            }
        }
    }
    // Ranks of the nodes not started yet, and of those of them ready to.
    let mut waiting: std::collections::BTreeSet<usize> = (0..order.len()).collect();
    let mut ready: std::collections::BTreeSet<usize> = order
        .iter()
        .filter(|&&idx| unfinished[idx] == 0)
        .map(|&idx| rank[idx])
        .collect();
    let mut reports = Vec::new();
    let jobs = opts.jobs.max(1);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, NodeReport)>();
    std::thread::scope(|scope| {
        let mut running = 0usize;
        let mut stop = false;
        loop {
            // Start what is ready (after a failure, start nothing new).
            while !stop && running < jobs {
                let Some(r) = ready.pop_first() else {
                    break;
                };
                waiting.remove(&r);
                let idx = order[r];
                running += 1;
                let tx = tx.clone();
                let b = &builder;
                scope.spawn(move || {
                    let r = b.node(idx);
                    tx.send((idx, r)).ok();
                });
            }
            if running == 0 {
                break;
            }
            let Ok((idx, r)) = rx.recv() else { break };
            running -= 1;
            ui.node_line(
                &r.name,
                r.status.word(),
                r.seconds,
                r.error.as_deref(),
                r.summary.as_deref(),
            );
            let ok = r.status != NodeStatus::Failed;
            reports.push(r);
            if ok {
                for &w in &dependents[idx] {
                    unfinished[w] -= 1;
                    if unfinished[w] == 0 {
                        ready.insert(rank[w]);
                    }
                }
            } else {
                stop = true;
                // Everything downstream of the failure is skipped, in plan order.
                let mut below = std::collections::BTreeSet::new();
                let mut stack = vec![idx];
                while let Some(v) = stack.pop() {
                    for &w in &dependents[v] {
                        if waiting.remove(&rank[w]) {
                            below.insert(rank[w]);
                            stack.push(w);
                        }
                    }
                }
                for r in below {
                    ready.remove(&r);
                    reports.push(skipped(project, order[r], "an input failed", ui));
                }
            }
        }
        // Nodes never started because of a failure elsewhere.
        for idx in std::mem::take(&mut waiting).into_iter().map(|r| order[r]) {
            reports.push(skipped(
                project,
                idx,
                "the build stopped after a failure",
                ui,
            ));
        }
    });
    // Uploads finish while the store's lock is held (gc waits for them).
    if let Some(c) = &opts.remote {
        c.finish(ui);
    }
    Ok(reports)
}

fn skipped(project: &Project, idx: usize, why: &str, ui: &Ui) -> NodeReport {
    let r = NodeReport {
        name: project.pipeline.nodes[idx].name.clone(),
        status: NodeStatus::Skipped,
        seconds: 0.0,
        key: None,
        error: Some(why.into()),
        summary: None,
    };
    ui.node_line(
        &r.name,
        r.status.word(),
        r.seconds,
        r.error.as_deref(),
        None,
    );
    r
}

impl Builder<'_> {
    fn node(&self, idx: usize) -> NodeReport {
        let start = Instant::now();
        let name = self.project.pipeline.nodes[idx].name.clone();
        match self.ensure(idx, 0, false) {
            Ok((status, rec)) => NodeReport {
                name,
                status,
                seconds: start.elapsed().as_secs_f64(),
                summary: rec.summary.filter(|_| status == NodeStatus::Built),
                key: Some(rec.key),
                error: None,
            },
            Err(e) => NodeReport {
                name,
                status: NodeStatus::Failed,
                seconds: start.elapsed().as_secs_f64(),
                key: None,
                error: Some(format!("{e:#}")),
                summary: None,
            },
        }
    }

    fn input_contents(&self, idx: usize) -> Vec<Option<String>> {
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let p = &self.project.pipeline;
        p.nodes[idx]
            .inputs
            .iter()
            .map(|n| {
                p.get(n)
                    .and_then(|j| done[j].as_ref().map(|d| d.rec.content.clone()))
            })
            .collect()
    }

    /// Makes node `idx` current: fresh, restored, or built. `depth` bounds
    /// the rebuilds that a corrupted input object triggers.
    /// `force` reruns a node even if a complete build of its key exists (to
    /// bring back temporary outputs a consumer reads after `gc --temporaries`).
    fn ensure(&self, idx: usize, depth: usize, force: bool) -> Result<(NodeStatus, Record)> {
        let node = &self.project.pipeline.nodes[idx];
        let store = &self.project.store;
        loop {
            let (mut decision, listing) = decide(self.project, idx, &self.input_contents(idx))?;
            // Forced only while temporaries are still missing: another consumer
            // may have rebuilt them meanwhile.
            if force
                && listing.is_none()
                && let Decision::Fresh(rec) | Decision::Restore(rec) = &decision
                && rec.outputs.iter().any(|o| o.collected)
            {
                decision = Decision::Build(super::parts_of(rec), rec.key.clone());
            }
            let root = listing.as_ref().map(|l| l.root.clone());
            let (status, rec) = match decision {
                Decision::Fresh(rec) => {
                    if !node.step.is_source() && !store.out_current(&node.name, &rec) {
                        store.link_out(&node.name, &rec)?;
                    }
                    (NodeStatus::Fresh, rec)
                }
                Decision::Restore(rec) => {
                    store.write_ref(&node.name, &rec.key)?;
                    if !node.step.is_source() {
                        store.link_out(&node.name, &rec)?;
                    }
                    (NodeStatus::Restored, rec)
                }
                Decision::Blocked(why) => bail!("{why}"),
                Decision::Build(parts, key) => {
                    if self.ui.verbose {
                        let files = listing.as_ref().map(|l| l.files.as_slice());
                        for r in super::reasons(store, &node.name, Some(&parts), files) {
                            self.ui.message(&format!("      why {}: {r}", node.name));
                        }
                    }
                    if let Some(listing) = listing.as_ref() {
                        (
                            NodeStatus::Built,
                            self.record_source(idx, parts, key, listing)?,
                        )
                    } else if let Some(rec) = self.ask_remote(idx, &key, force)? {
                        (NodeStatus::Remote, rec)
                    } else {
                        if self.remote_only {
                            bail!(
                                "the remote cache{} does not hold this build of `{}`; build it \
                                 (`pai build {}`), or push it from where it was built",
                                self.remote
                                    .map(|c| format!(" {}", c.url()))
                                    .unwrap_or_default(),
                                node.name,
                                node.name
                            );
                        }
                        // Producers to rebuild before this node reads them:
                        // temporaries it reads were collected (rerun even
                        // though the key's build is complete), or an output
                        // is corrupt (deleted, so an ordinary ensure reruns it).
                        let (corrupt, collected) = self.verify_inputs(idx)?;
                        let rebuild: Vec<(usize, bool)> = collected
                            .into_iter()
                            .map(|j| (j, true))
                            .chain(corrupt.into_iter().map(|j| (j, false)))
                            .collect();
                        if !rebuild.is_empty() {
                            if depth >= 3 {
                                bail!(
                                    "inputs stay corrupt or incomplete after rebuilding them; run `pai verify --repair` and build again"
                                );
                            }
                            for (j, force) in rebuild {
                                let _one =
                                    self.rebuilding[j].lock().unwrap_or_else(|e| e.into_inner());
                                let producer = &self.project.pipeline.nodes[j].name;
                                self.ui.message(&if force {
                                    format!(
                                        "rebuilding `{producer}`: `{}` reads its temporary outputs, which `pai gc --temporaries` deleted",
                                        node.name
                                    )
                                } else {
                                    format!(
                                        "warning: an output of `{producer}` was corrupt in the store; rebuilding it"
                                    )
                                });
                                let (_, rec) = self.ensure(j, depth + 1, force)?;
                                self.set_done(j, rec, None);
                            }
                            continue;
                        }
                        let rec = self.run(idx, parts, key)?;
                        if let Some(c) = self.remote {
                            c.upload_later(store, &rec);
                        }
                        (NodeStatus::Built, rec)
                    }
                }
            };
            self.set_done(idx, rec.clone(), root);
            return Ok((status, rec));
        }
    }

    /// The second half of the cache chain: the remote's build of `key`,
    /// downloaded (each object hashed before it enters the store) and
    /// committed like a local build: record, ref, `out/`. `None`: a miss
    /// (no record, a missing or damaged object, the remote down).
    fn ask_remote(&self, idx: usize, key: &str, force: bool) -> Result<Option<Record>> {
        let Some(cache) = self.remote else {
            return Ok(None);
        };
        if self
            .remote_missed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
        {
            return Ok(None);
        }
        let node = &self.project.pipeline.nodes[idx];
        let store = &self.project.store;
        let miss = || {
            self.remote_missed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_string());
            Ok(None)
        };
        let Some(rec) = cache.lookup(key, self.ui)? else {
            return miss();
        };
        if rec.content != content_hash(&rec.outputs) || rec.kind != node.kind() {
            self.ui.message(&format!(
                "warning: remote cache {}: the record of `{}` does not add up (its content \
                 hash or kind); ignored, building locally",
                cache.url(),
                node.name
            ));
            return miss();
        }
        let temporaries = force || self.needs_temporaries[idx];
        let Some(rec) = cache.fetch(
            store,
            &node.name,
            &rec,
            &|o| wanted(o, temporaries),
            self.ui,
        )?
        else {
            return miss();
        };
        store.publish(&node.name, &rec)?;
        Ok(Some(rec))
    }

    fn set_done(&self, idx: usize, rec: Record, source_root: Option<PathBuf>) {
        let mut done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let source_root =
            source_root.or_else(|| done[idx].as_ref().and_then(|d| d.source_root.clone()));
        done[idx] = Some(Done { rec, source_root });
    }

    fn record_source(
        &self,
        idx: usize,
        parts: KeyParts,
        key: String,
        listing: &Listing,
    ) -> Result<Record> {
        let node = &self.project.pipeline.nodes[idx];
        let rec = super::source_record(&node.name, parts, key, listing);
        self.project.store.write_record(&rec)?;
        self.project.store.write_ref(&node.name, &rec.key)?;
        Ok(rec)
    }

    /// Re-hashes the input objects a node is about to read. Corrupt ones are
    /// deleted and their producers returned, to be rebuilt; so are producers
    /// whose temporary outputs were collected, if this kind reads temporaries.
    fn verify_inputs(&self, idx: usize) -> Result<(Vec<usize>, Vec<usize>)> {
        let p = &self.project.pipeline;
        let store = &self.project.store;
        let node = &p.nodes[idx];
        // (producer, outputs) of the inputs, copied out of the lock; sources
        // have no outputs (and their listings can be long), so none are taken.
        let inputs: Vec<(usize, Vec<RecOutput>)> = {
            let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
            let mut v = Vec::new();
            for name in &node.inputs {
                let j = p.get(name).context("unknown input")?;
                let d = done[j]
                    .as_ref()
                    .with_context(|| format!("input `{name}` is not built"))?;
                v.push((j, d.rec.outputs.clone()));
            }
            v
        };
        let mut corrupt = Vec::new();
        let mut collected = Vec::new();
        for (j, outputs) in inputs {
            if node.step.reads_temporaries() && outputs.iter().any(|o| o.collected) {
                collected.push(j);
            }
            for o in outputs.iter().filter(|o| !o.collected) {
                let path = store.object_path(&o.hash);
                let ok = store::hash_file(&path)
                    .map(|(h, _)| h == o.hash)
                    .unwrap_or(false);
                if !ok {
                    store::make_writable(&path);
                    fs::remove_file(&path).ok();
                    if !corrupt.contains(&j) {
                        corrupt.push(j);
                    }
                }
            }
        }
        Ok((corrupt, collected))
    }

    fn input_views(&self, idx: usize) -> Result<Vec<InputView>> {
        let p = &self.project.pipeline;
        let store = &self.project.store;
        let done = self.done.lock().unwrap_or_else(|e| e.into_inner());
        let node = &p.nodes[idx];
        let mut views = Vec::new();
        for (name, role) in node.inputs.iter().zip(&node.roles) {
            let j = p.get(name).context("unknown input")?;
            let d = done[j]
                .as_ref()
                .with_context(|| format!("input `{name}` is not built"))?;
            let (dir, files) = match &d.source_root {
                Some(root) => (
                    root.clone(),
                    d.rec
                        .files
                        .iter()
                        .map(|f: &RecFile| InputFile {
                            name: f.path.clone(),
                            path: root.join(&f.path),
                            hash: f.hash.clone(),
                            bytes: f.bytes,
                        })
                        .collect(),
                ),
                None => (
                    store.out_dir(name),
                    d.rec
                        .live_outputs()
                        .map(|o| InputFile {
                            name: o.name.clone(),
                            path: store.object_path(&o.hash),
                            hash: o.hash.clone(),
                            bytes: o.bytes,
                        })
                        .collect(),
                ),
            };
            views.push(InputView {
                role: role.clone(),
                node: name.clone(),
                kind: p.nodes[j].kind().into(),
                dir,
                files,
            });
        }
        Ok(views)
    }

    fn run(&self, idx: usize, parts: KeyParts, key: String) -> Result<Record> {
        let node = &self.project.pipeline.nodes[idx];
        let store = &self.project.store;
        let inputs = self.input_views(idx)?;
        let decls = node.step.outputs(&node.params)?;
        let tmp = store.tmp_root().join(format!(
            "{}-{}-{}",
            node.name,
            &key[..12],
            std::process::id()
        ));
        store::remove_entry(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
        fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let work = store.open_work(&key)?;
        let start = Instant::now();
        let progress = self.ui.node_progress(&node.name);
        let uses_gpu = node.step.uses_gpu(&node.params);
        let summary = Mutex::new(None::<String>);
        let (result, ran_on) = {
            let _slot = uses_gpu.then(|| self.gpu_slot.lock().unwrap_or_else(|e| e.into_inner()));
            if let Some(g) = self.gpu.opened() {
                g.take_dispatched();
            }
            let ctx = StepCtx {
                node: &node.name,
                params: &node.params,
                inputs: &inputs,
                out_dir: &tmp,
                work_dir: &work.path,
                project_dir: &self.project.dir,
                progress: &|pos, len, unit| progress.set(pos, len, unit),
                message: &|m| progress.message(m),
                summary: &|m| *summary.lock().unwrap_or_else(|e| e.into_inner()) = Some(m.into()),
                gpu: uses_gpu.then_some(&self.gpu),
            };
            let result = node.step.run(&ctx);
            let native = (uses_gpu && self.gpu.is_native()).then(|| RanOn {
                adapter: crate::gpu::native::describe(),
                backend: "native".into(),
                device_type: "Cpu".into(),
                driver: format!(
                    "pai {} (matrixmultiply sgemm, rayon)",
                    env!("CARGO_PKG_VERSION")
                ),
                kernels: Vec::new(),
            });
            let ran_on = native.or_else(|| {
                self.gpu.opened().filter(|_| uses_gpu).map(|g| {
                    let i = &g.info;
                    RanOn {
                        adapter: i.name.clone(),
                        backend: format!("{:?}", i.backend),
                        device_type: format!("{:?}", i.device_type),
                        driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
                        kernels: g.take_dispatched().into_iter().collect(),
                    }
                })
            });
            (result, ran_on)
        };
        progress.finish();
        let seconds = start.elapsed().as_secs_f64();
        let result = result.and_then(|()| undeclared_kernels(node, ran_on.as_ref()));
        let committed = result.and_then(|()| {
            commit(
                store,
                node.name.as_str(),
                &tmp,
                &decls,
                parts,
                key,
                seconds,
                ran_on,
                summary.into_inner().unwrap_or_else(|e| e.into_inner()),
            )
        });
        store::remove_entry(&tmp).ok();
        // A committed key needs no resumable state; a failed one keeps what
        // it wrote there.
        let empty = fs::read_dir(&work.path).is_ok_and(|mut d| d.next().is_none());
        if committed.is_ok() || empty {
            store.remove_work(work)?;
        }
        committed
    }
}

/// A node that dispatched a kernel its kind does not declare fails: that
/// kernel's source is not in its key, so an edit to it would not rebuild.
fn undeclared_kernels(node: &crate::spec::Node, ran_on: Option<&RanOn>) -> Result<()> {
    let Some(r) = ran_on else { return Ok(()) };
    let declared = node.step.kernel_names();
    let missing: Vec<&String> = r
        .kernels
        .iter()
        .filter(|k| !declared.contains(*k))
        .collect();
    if !missing.is_empty() {
        bail!(
            "node `{}` dispatched kernels its kind `{}` does not declare: {}; add them to the \
             kind's `kernels` so their source is part of its key",
            node.name,
            node.kind(),
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// Files under `dir`, as '/'-separated relative names.
fn files_under(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut v = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e?;
        let t = e.file_type();
        if !t.is_file() && !t.is_dir() {
            // A link's target is not what the node wrote; a FIFO or socket
            // is no content. Named, not skipped.
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
            let what = fs::symlink_metadata(e.path())
                .map(|m| store::file_kind(&m))
                .unwrap_or("not a regular file");
            bail!(
                "`{}` in the node's output folder is {what}; outputs must be regular files \
                 the node wrote (copy the file, e.g. `cp -L`, instead of linking it)",
                rel.display()
            );
        }
        if t.is_file() {
            let rel = e
                .path()
                .strip_prefix(dir)?
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            v.push((rel, e.path().to_path_buf()));
        }
    }
    v.sort();
    Ok(v)
}

/// Moves a finished node's outputs into the store and records the build:
/// objects, then the record, then the ref, then `out/`.
#[allow(clippy::too_many_arguments)]
fn commit(
    store: &Store,
    node: &str,
    tmp: &Path,
    decls: &[OutputDecl],
    parts: KeyParts,
    key: String,
    seconds: f64,
    ran_on: Option<RanOn>,
    summary: Option<String>,
) -> Result<Record> {
    let files = files_under(tmp).with_context(|| format!("node `{node}` left a bad output"))?;
    for d in decls.iter().filter(|d| d.required) {
        if !files.iter().any(|(n, _)| d.matches(n)) {
            bail!(
                "node `{node}` did not write its declared output `{}`",
                d.name
            );
        }
    }
    let mut outputs = Vec::new();
    for (name, path) in &files {
        if name.split('/').any(|c| c.starts_with('.')) {
            bail!(
                "node `{node}` wrote `{name}`: output names must not start with `.` (pai keeps its own files there)"
            );
        }
        let Some(decl) = decls.iter().find(|d| d.matches(name)) else {
            let declared: Vec<&str> = decls.iter().map(|d| d.name.as_str()).collect();
            bail!(
                "node `{node}` wrote `{name}`, which is not a declared output (declared: {})",
                declared.join(", ")
            );
        };
        let (hash, bytes) = store.put_file(path)?;
        outputs.push(RecOutput {
            name: name.clone(),
            hash,
            bytes,
            retention: decl.retention,
            collected: false,
        });
    }
    let content = content_hash(&outputs);
    let (built_at, built_at_nanos) = store::now();
    let rec = Record {
        key,
        node: node.to_string(),
        kind: parts.kind,
        kind_version: parts.kind_version,
        engine: super::ENGINE_VERSION,
        params: parts.params,
        inputs: parts.inputs,
        shaders: parts.shaders,
        outputs,
        content,
        files: Vec::new(),
        seconds,
        built_at,
        built_at_nanos,
        ran_on,
        summary,
    };
    store.publish(node, &rec)?;
    Ok(rec)
}

/// What dependents key on: every output but logs (a log holds wall-clock
/// figures, which differ run to run; a rebuild with the same artifacts must
/// not rebuild what follows).
pub fn content_hash(outputs: &[RecOutput]) -> String {
    store::pairs_hash(
        outputs
            .iter()
            .filter(|o| o.retention != crate::steps::Retention::Log)
            .map(|o| (o.name.as_str(), o.hash.as_str())),
    )
}

/// `pai build`: whether every node is done, and each node's report. Its text
/// is empty: each node's line was shown as it finished.
#[derive(Serialize, Debug)]
pub struct BuildRun {
    pub ok: bool,
    pub nodes: Vec<NodeReport>,
    /// What moved to and from the shared remote cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<Traffic>,
}

impl BuildRun {
    /// What went wrong, for stderr: `None` when the build succeeded.
    pub fn error(&self) -> Option<String> {
        if self.ok {
            return None;
        }
        let failed: Vec<&str> = self
            .nodes
            .iter()
            .filter(|r| r.status == NodeStatus::Failed)
            .map(|r| r.name.as_str())
            .collect();
        Some(format!("the build failed at {}", failed.join(", ")))
    }

    pub fn exit_code(&self) -> u8 {
        if self.ok { 0 } else { 1 }
    }
}

impl std::fmt::Display for BuildRun {
    fn fmt(&self, _: &mut std::fmt::Formatter) -> std::fmt::Result {
        Ok(())
    }
}

/// `pai build` (not a dry run): commands end with pai on a signal, then
/// [`Project::locked_build`].
pub fn run(project: &Project, targets: &[usize], opts: &BuildOptions, ui: &Ui) -> Result<BuildRun> {
    crate::process::stop_commands_on_signals()?;
    let reports = project.locked_build(targets, opts, ui);
    crate::process::hold_if_stopping();
    let nodes = reports?;
    let ok = nodes.iter().all(|r| {
        matches!(
            r.status,
            NodeStatus::Fresh | NodeStatus::Restored | NodeStatus::Built | NodeStatus::Remote
        )
    });
    let remote = opts.remote.as_ref().map(|c| c.traffic());
    Ok(BuildRun { ok, nodes, remote })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ran_on(kernels: &[&str]) -> RanOn {
        RanOn {
            adapter: "test".into(),
            backend: "Vulkan".into(),
            device_type: "Cpu".into(),
            driver: String::new(),
            kernels: kernels.iter().map(|k| k.to_string()).collect(),
        }
    }

    #[test]
    fn a_node_that_dispatches_a_kernel_its_kind_does_not_declare_fails() {
        let text = "[nodes.corpus]\nkind = \"source\"\npath = \"c\"\n\
                    [nodes.tokenizer]\nkind = \"bpe-tokenizer\"\ninputs = [\"corpus\"]\n\
                    [nodes.init]\nkind = \"gpt-init\"\ninputs = [\"tokenizer\"]\n\
                    [nodes.q]\nkind = \"quantize\"\ninputs = [\"t\", \"tokenizer\"]\n\
                    [nodes.tokens]\nkind = \"tokenize\"\ninputs = [\"corpus\", \"tokenizer\"]\n\
                    [nodes.packed]\nkind = \"pack\"\ninputs = [\"tokens\"]\n\
                    [nodes.t]\nkind = \"train\"\ninputs = [\"init\", \"packed\"]\n";
        let p = crate::spec::parse(Path::new("Pipeline.toml"), text.into()).unwrap();
        let train = &p.nodes[p.get("t").unwrap()];
        let quant = &p.nodes[p.get("q").unwrap()];
        // What training dispatches is declared; what quantization dispatches is not.
        let adamw = "optim::adamw".to_string();
        assert!(train.step.kernel_names().contains(&adamw));
        assert!(undeclared_kernels(train, Some(&ran_on(&["optim::adamw"]))).is_ok());
        let q4 = quant
            .step
            .kernel_names()
            .into_iter()
            .find(|k| k.starts_with("quant::"))
            .unwrap();
        let e = undeclared_kernels(train, Some(&ran_on(&["optim::adamw", &q4])))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&q4) && e.contains("does not declare"), "{e}");
        assert!(undeclared_kernels(quant, Some(&ran_on(&["optim::adamw"]))).is_err());
        // A node that opened no device has nothing to check.
        assert!(undeclared_kernels(train, None).is_ok());
    }
}
