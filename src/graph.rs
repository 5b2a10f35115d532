//! The pipeline as a petgraph DAG: the closure of targets, a topological
//! order, and cycles reported as the path that closes them.

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

use crate::spec::Pipeline;

/// Edges point from an input to the node that reads it.
pub fn build(p: &Pipeline) -> DiGraph<usize, ()> {
    let mut g = DiGraph::new();
    let idx: Vec<NodeIndex> = (0..p.nodes.len()).map(|i| g.add_node(i)).collect();
    for (i, n) in p.nodes.iter().enumerate() {
        for input in &n.inputs {
            if let Some(j) = p.get(input) {
                g.add_edge(idx[j], idx[i], ());
            }
        }
    }
    g
}

/// A cycle as node indices in order, if there is one.
pub fn find_cycle(p: &Pipeline) -> Result<(), Vec<usize>> {
    let g = build(p);
    if petgraph::algo::toposort(&g, None).is_ok() {
        return Ok(());
    }
    // Colour DFS to recover the path that closes the cycle.
    let n = g.node_count();
    let mut colour = vec![0u8; n];
    let mut stack: Vec<usize> = Vec::new();
    fn visit(
        g: &DiGraph<usize, ()>,
        v: usize,
        colour: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        colour[v] = 1;
        stack.push(v);
        for w in g.neighbors_directed(NodeIndex::new(v), Direction::Outgoing) {
            let w = w.index();
            if colour[w] == 1 {
                let start = stack.iter().position(|&x| x == w).unwrap_or(0);
                return Some(stack[start..].to_vec());
            }
            if colour[w] == 0
                && let Some(c) = visit(g, w, colour, stack)
            {
                return Some(c);
            }
        }
        stack.pop();
        colour[v] = 2;
        None
    }
    for v in 0..n {
        if colour[v] == 0
            && let Some(c) = visit(&g, v, &mut colour, &mut stack)
        {
            return Err(c);
        }
    }
    Err(Vec::new())
}

/// The targets and everything they need, in topological order (inputs first;
/// ties in file order).
pub fn plan_order(p: &Pipeline, targets: &[usize]) -> Vec<usize> {
    let g = build(p);
    let rev = Reversed(&g);
    let mut needed = vec![false; p.nodes.len()];
    // One walk for all targets: what one target reached is not walked again.
    let mut dfs = Dfs::empty(rev);
    for &t in targets {
        dfs.move_to(NodeIndex::new(t));
        while let Some(v) = dfs.next(rev) {
            needed[v.index()] = true;
        }
    }
    // Kahn's algorithm with a file-order tie-break keeps output stable.
    let mut indeg: Vec<usize> = (0..p.nodes.len())
        .map(|i| {
            g.neighbors_directed(NodeIndex::new(i), Direction::Incoming)
                .filter(|j| needed[j.index()])
                .count()
        })
        .collect();
    let mut ready: std::collections::BTreeSet<usize> = (0..p.nodes.len())
        .filter(|&i| needed[i] && indeg[i] == 0)
        .collect();
    let mut order = Vec::new();
    while let Some(v) = ready.pop_first() {
        order.push(v);
        for w in g.neighbors_directed(NodeIndex::new(v), Direction::Outgoing) {
            let w = w.index();
            if needed[w] {
                indeg[w] -= 1;
                if indeg[w] == 0 {
                    ready.insert(w);
                }
            }
        }
    }
    order
}

/// Graphviz or Mermaid text of the whole pipeline.
pub fn render(p: &Pipeline, format: &str) -> String {
    let mut s = String::new();
    if format == "mermaid" {
        s.push_str("flowchart LR\n");
        for n in &p.nodes {
            s.push_str(&format!(
                "  {}[\"{}<br/><small>{}</small>\"]\n",
                mermaid_id(&n.name),
                n.name,
                n.kind()
            ));
        }
        for n in &p.nodes {
            for i in &n.inputs {
                s.push_str(&format!(
                    "  {} --> {}\n",
                    mermaid_id(i),
                    mermaid_id(&n.name)
                ));
            }
        }
    } else {
        s.push_str("digraph pipeline {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &p.nodes {
            s.push_str(&format!(
                "  \"{}\" [label=\"{}\\n{}\"];\n",
                n.name,
                n.name,
                n.kind()
            ));
        }
        for n in &p.nodes {
            for i in &n.inputs {
                s.push_str(&format!("  \"{i}\" -> \"{}\";\n", n.name));
            }
        }
        s.push_str("}\n");
    }
    s
}

fn mermaid_id(name: &str) -> String {
    name.replace('-', "_")
}

/// `pai graph`: the pipeline's nodes, and its text in one format.
#[derive(serde::Serialize, Debug)]
pub struct GraphReport {
    pub nodes: Vec<GraphNode>,
    /// Graphviz or Mermaid text ([`render`]).
    pub text: String,
}

/// One node of [`GraphReport`].
#[derive(serde::Serialize, Debug)]
pub struct GraphNode {
    pub name: String,
    pub kind: String,
    pub inputs: Vec<String>,
}

/// The pipeline as `pai graph` shows it; `format`: `dot` or `mermaid`.
pub fn report(p: &Pipeline, format: &str) -> GraphReport {
    GraphReport {
        nodes: p
            .nodes
            .iter()
            .map(|n| GraphNode {
                name: n.name.clone(),
                kind: n.kind().to_string(),
                inputs: n.inputs.clone(),
            })
            .collect(),
        text: render(p, format),
    }
}

impl std::fmt::Display for GraphReport {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}
