//! `pai explain NODE`: what changed in a node's key since its current build.

use anyhow::{Context, Result};
use serde_json::{Value as Json, json};

use super::{NodeState, Project, status};

/// Lines for `pai explain NODE`: the key's parts now, against its current build.
pub fn explain(project: &Project, idx: usize) -> Result<Json> {
    let node = &project.pipeline.nodes[idx];
    let states = status(project, &[idx]);
    let me = states
        .iter()
        .find(|s| s.name == node.name)
        .context("node missing from its own plan")?;
    let current = project.store.read_ref(&node.name);
    let ran_on = current
        .as_deref()
        .and_then(|k| project.store.record(k))
        .and_then(|r| r.ran_on);
    let blockers: Vec<&NodeState> = states
        .iter()
        .filter(|s| s.name != node.name && s.stale)
        .collect();
    Ok(json!({
        "name": node.name,
        "kind": node.kind(),
        "action": me.action,
        "stale": me.stale,
        "key": me.key,
        "current_key": current,
        "reasons": me.reasons,
        "ran_on": ran_on,
        "stale_inputs": blockers.iter().map(|s| json!({"name": s.name, "action": s.action, "reasons": s.reasons})).collect::<Vec<_>>(),
    }))
}
