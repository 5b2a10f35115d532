//! `pai push`, `pai pull` and `pai remote status`: the current builds moved
//! to and from the shared remote cache explicitly, and what it holds for the
//! pipeline's nodes.

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::{BuildOptions, Decision, NodeReport, NodeStatus, Project, decide};
use crate::remote::chain::Uploaded;
use crate::remote::{Cache, Traffic};
use crate::report::{self, Ui};

/// One node of a push.
#[derive(Serialize, Debug)]
pub struct Pushed {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `written`, `present` (the remote had it), `incomplete` (an output
    /// collected here is not on the remote either), `not-built`.
    pub outcome: String,
    pub bytes: u64,
}

/// `pai push`.
#[derive(Serialize, Debug)]
pub struct PushReport {
    pub url: String,
    pub nodes: Vec<Pushed>,
    pub uploaded_objects: u64,
    pub uploaded_bytes: u64,
    pub uploaded_records: u64,
    pub seconds: f64,
}

impl std::fmt::Display for PushReport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        for n in &self.nodes {
            writeln!(
                f,
                "{:>10} {:<16} {}",
                n.outcome,
                n.name,
                if n.bytes > 0 {
                    report::size(n.bytes)
                } else {
                    String::new()
                }
            )?;
        }
        write!(
            f,
            "pushed to {}: {} objects ({}) and {} records in {}",
            self.url,
            self.uploaded_objects,
            report::size(self.uploaded_bytes),
            self.uploaded_records,
            report::duration(self.seconds)
        )
    }
}

/// Sends the current builds of the targets and what they need (objects,
/// then records, put-if-absent), with a progress bar in bytes.
pub fn push(project: &Project, targets: &[usize], cache: &Cache, ui: &Ui) -> Result<PushReport> {
    let start = Instant::now();
    let store = &project.store;
    let _lock = crate::store::lock::acquire(&store.root, "push", &|m| ui.message(m))?;
    let order = crate::graph::plan_order(&project.pipeline, targets);
    let mut builds = Vec::new();
    let mut nodes = Vec::new();
    for idx in order {
        let node = &project.pipeline.nodes[idx];
        if node.step.is_source() {
            continue;
        }
        match store.read_ref(&node.name).and_then(|k| store.record(&k)) {
            Some(rec) => builds.push((node.name.clone(), rec)),
            None => nodes.push(Pushed {
                name: node.name.clone(),
                key: None,
                outcome: "not-built".into(),
                bytes: 0,
            }),
        }
    }
    let total: u64 = builds
        .iter()
        .flat_map(|(_, r)| r.outputs.iter().map(|o| o.bytes))
        .sum();
    let progress = ui.node_progress("push");
    let sent = std::cell::Cell::new(0u64);
    for (name, rec) in builds {
        let outcome = cache.upload_now(store, &rec, &|b| {
            sent.set(sent.get() + b);
            progress.set(sent.get(), total, "bytes");
        })?;
        nodes.push(Pushed {
            name,
            key: Some(rec.key.clone()),
            outcome: match outcome {
                Uploaded::Written => "written",
                Uploaded::Present => "present",
                Uploaded::Incomplete => "incomplete",
            }
            .into(),
            bytes: rec.outputs.iter().map(|o| o.bytes).sum(),
        });
    }
    progress.finish();
    let t = cache.traffic();
    Ok(PushReport {
        url: cache.url().to_string(),
        nodes,
        uploaded_objects: t.uploaded_objects,
        uploaded_bytes: t.uploaded_bytes,
        uploaded_records: t.uploaded_records,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `pai pull`.
#[derive(Serialize, Debug)]
pub struct PullReport {
    pub ok: bool,
    pub url: String,
    pub nodes: Vec<NodeReport>,
    pub traffic: Traffic,
    pub seconds: f64,
}

impl std::fmt::Display for PullReport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        let n = self
            .nodes
            .iter()
            .filter(|r| r.status == NodeStatus::Remote)
            .count();
        write!(
            f,
            "pulled {n} builds from {}: {} objects ({}) in {}",
            self.url,
            self.traffic.downloaded_objects,
            report::size(self.traffic.downloaded_bytes),
            report::duration(self.seconds)
        )
    }
}

/// Brings the targets' builds from the remote: a build that runs nothing
/// but sources; a node the remote does not hold fails (and what needs it is
/// skipped).
pub fn pull(
    project: &Project,
    targets: &[usize],
    opts: &BuildOptions,
    ui: &Ui,
) -> Result<PullReport> {
    let start = Instant::now();
    let cache = opts
        .remote
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no remote cache to pull from"))?;
    let opts = BuildOptions {
        jobs: opts.jobs,
        adapter: opts.adapter.clone(),
        remote: Some(cache.clone()),
        remote_only: true,
    };
    let r = super::build::run(project, targets, &opts, ui)?;
    Ok(PullReport {
        ok: r.ok,
        url: cache.url().to_string(),
        nodes: r.nodes,
        traffic: cache.traffic(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// One node in `pai remote status`.
#[derive(Serialize, Debug)]
pub struct RemoteNode {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Here: `fresh`, `restore`, `build`, `blocked`, `source`.
    pub local: String,
    /// On the remote: `complete` (record and every live object), `incomplete`
    /// (record, objects missing), `absent`, `unknown` (key not known: an
    /// input is neither built here nor on the remote).
    pub remote: String,
    /// Bytes of the outputs the remote's record names.
    pub bytes: u64,
}

/// `pai remote status`.
#[derive(Serialize, Debug)]
pub struct RemoteStatus {
    pub url: String,
    pub nodes: Vec<RemoteNode>,
}

impl std::fmt::Display for RemoteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        writeln!(f, "remote cache {}", self.url)?;
        for n in &self.nodes {
            writeln!(
                f,
                "  {:<16} here {:<8} remote {:<10} {}",
                n.name,
                n.local,
                n.remote,
                if n.bytes > 0 {
                    report::size(n.bytes)
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}

/// What the remote holds for the targets' nodes (default: all), following
/// keys through the remote's records where nothing is built here.
pub fn status(project: &Project, targets: &[usize], cache: &Cache) -> Result<RemoteStatus> {
    let p = &project.pipeline;
    let order = crate::graph::plan_order(p, targets);
    let mut content: Vec<Option<String>> = vec![None; p.nodes.len()];
    let mut nodes = Vec::new();
    let remote = cache.remote();
    let err = |e: crate::remote::RemoteError| match e {
        crate::remote::RemoteError::Denied(code) => {
            crate::remote::chain::denied(cache.url(), &code)
        }
        e => anyhow::anyhow!("remote cache {}: {e}", cache.url()),
    };
    for idx in order {
        let node = &p.nodes[idx];
        let inputs: Vec<Option<String>> = node
            .inputs
            .iter()
            .map(|n| p.get(n).and_then(|j| content[j].clone()))
            .collect();
        let (decision, _) = decide(project, idx, &inputs)?;
        let (local, key, local_content) = match decision {
            Decision::Fresh(r) => ("fresh", Some(r.key.clone()), Some(r.content)),
            Decision::Restore(r) => ("restore", Some(r.key.clone()), Some(r.content)),
            Decision::Build(_, k) => ("build", Some(k), None),
            Decision::Blocked(_) => ("blocked", None, None),
        };
        if node.step.is_source() {
            content[idx] = local_content;
            nodes.push(RemoteNode {
                name: node.name.clone(),
                key,
                local: "source".into(),
                remote: "-".into(),
                bytes: 0,
            });
            continue;
        }
        let (state, bytes) = match &key {
            None => ("unknown", 0),
            Some(k) => match remote.get_record(k).map_err(err)? {
                None => ("absent", 0),
                Some(b) => match serde_json::from_slice::<crate::store::Record>(&b) {
                    Err(_) => ("unreadable", 0),
                    Ok(r) => {
                        // The first missing object settles it: no more requests.
                        let mut complete = true;
                        for o in &r.outputs {
                            if remote.head_object(&o.hash).map_err(err)? != Some(o.bytes) {
                                complete = false;
                                break;
                            }
                        }
                        if complete {
                            content[idx] = Some(r.content.clone());
                        }
                        (
                            if complete { "complete" } else { "incomplete" },
                            r.outputs.iter().map(|o| o.bytes).sum(),
                        )
                    }
                },
            },
        };
        if local_content.is_some() {
            content[idx] = local_content;
        }
        nodes.push(RemoteNode {
            name: node.name.clone(),
            key,
            local: local.into(),
            remote: state.into(),
            bytes,
        });
    }
    Ok(RemoteStatus {
        url: cache.url().to_string(),
        nodes,
    })
}
