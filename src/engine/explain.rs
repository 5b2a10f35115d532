//! `pai explain NODE`: what changed in a node's key since its current build,
//! and what its inputs still have to do first.

use std::fmt;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{Action, Project, status};
use crate::store::RanOn;

/// `pai explain NODE`: the node's key now against its current build.
#[derive(Serialize, Debug)]
pub struct Explanation {
    pub name: String,
    pub kind: String,
    pub action: Action,
    pub stale: bool,
    /// Its key now; `None` until its inputs are built.
    pub key: Option<String>,
    /// The key of its current build; `None`: never built.
    pub current_key: Option<String>,
    pub reasons: Vec<String>,
    /// Where its current build ran (not part of the key).
    pub ran_on: Option<RanOn>,
    /// Its stale upstream nodes, in build order.
    pub stale_inputs: Vec<StaleInput>,
}

/// An upstream node that is stale, and why.
#[derive(Serialize, Debug)]
pub struct StaleInput {
    pub name: String,
    pub action: Action,
    pub reasons: Vec<String>,
}

/// The key's parts now, against the node's current build.
pub fn explain(project: &Project, idx: usize) -> Result<Explanation> {
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
    let stale_inputs = states
        .iter()
        .filter(|s| s.name != node.name && s.stale)
        .map(|s| StaleInput {
            name: s.name.clone(),
            action: s.action,
            reasons: s.reasons.clone(),
        })
        .collect();
    Ok(Explanation {
        name: node.name.clone(),
        kind: node.kind().to_string(),
        action: me.action,
        stale: me.stale,
        key: me.key.clone(),
        current_key: current,
        reasons: me.reasons.clone(),
        ran_on,
        stale_inputs,
    })
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        writeln!(f, "node {} (kind {})", self.name, self.kind)?;
        writeln!(
            f,
            "  key now:      {}",
            self.key
                .as_deref()
                .unwrap_or("unknown until its inputs are built")
        )?;
        writeln!(
            f,
            "  current key:  {}",
            self.current_key.as_deref().unwrap_or("none (never built)")
        )?;
        writeln!(f, "  action:       {}", self.action)?;
        for r in &self.reasons {
            writeln!(f, "  - {r}")?;
        }
        if let Some(r) = &self.ran_on {
            writeln!(
                f,
                "  built on:     {} ({}, {}, {}); not part of the key",
                r.adapter, r.backend, r.device_type, r.driver
            )?;
            if r.kernels.is_empty() {
                writeln!(f, "  kernels run:  none (no WGSL dispatched)")?;
            } else {
                writeln!(f, "  kernels run:  {}", r.kernels.join(", "))?;
            }
        }
        for s in &self.stale_inputs {
            writeln!(f, "  stale input {} ({})", s.name, s.action)?;
            for r in &s.reasons {
                writeln!(f, "    - {r}")?;
            }
        }
        if self.action == Action::Fresh {
            writeln!(f, "  nothing changed since its current build")?;
        }
        Ok(())
    }
}
