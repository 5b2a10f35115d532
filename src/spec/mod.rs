//! Pipeline.toml → a validated `Pipeline`. Every problem is reported with
//! file:line:col, the offending line, and the closest valid name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::steps::{self, Inputs, ParamType, Params, Value};

pub mod gc;
pub mod remote;
pub use gc::GcDefaults;
pub use remote::RemoteSpec;

/// A bad pipeline file or bad invocation: exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub struct Node {
    pub name: String,
    pub step: &'static steps::Kind,
    /// Every declared parameter, defaults filled in.
    pub params: Params,
    /// Input node names, in file order.
    pub inputs: Vec<String>,
    /// The role each input fills (same order as `inputs`).
    pub roles: Vec<String>,
    pub span: Range<usize>,
}

impl Node {
    pub fn kind(&self) -> &'static str {
        self.step.kind()
    }
}

pub struct Pipeline {
    pub path: PathBuf,
    pub text: String,
    pub default: Option<String>,
    pub nodes: Vec<Node>,
    /// The `[gc]` table: defaults for `pai gc`.
    pub gc: GcDefaults,
    /// The `[remote]` table: the shared cache.
    pub remote: RemoteSpec,
    index: HashMap<String, usize>,
}

impl Pipeline {
    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Looks up a node a user named on the command line.
    pub fn node(&self, name: &str) -> Result<usize, UsageError> {
        self.get(name).ok_or_else(|| {
            let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            UsageError(format!(
                "{}: no node named `{name}`{}",
                self.path.display(),
                suggest(name, &names)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default()
            ))
        })
    }

    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        line_col(&self.text, offset)
    }
}

struct Diag {
    span: Range<usize>,
    message: String,
    help: Option<String>,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    (line, text[line_start..offset].chars().count() + 1)
}

fn render(path: &Path, text: &str, diags: &[Diag]) -> String {
    let mut out = String::new();
    for (i, d) in diags.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let (line, col) = line_col(text, d.span.start);
        out.push_str(&format!("{}:{line}:{col}: {}\n", path.display(), d.message));
        if let Some(src) = text.lines().nth(line - 1) {
            let width = text[d.span.clone()]
                .lines()
                .next()
                .map(|l| l.chars().count())
                .unwrap_or(1)
                .max(1);
            out.push_str(&format!(
                "{line:>5} | {src}\n      | {}{}\n",
                " ".repeat(col - 1),
                "^".repeat(width)
            ));
        }
        if let Some(h) = &d.help {
            out.push_str(&format!("      = help: {h}\n"));
        }
    }
    out.trim_end().to_string()
}

/// Levenshtein distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate, if it is close enough to be a plausible typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (distance(word, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    match suggest(word, candidates) {
        Some(s) => Some(format!("did you mean `{s}`?")),
        None if candidates.is_empty() => None,
        None => Some(format!("expected one of: {}", candidates.join(", "))),
    }
}

fn type_name(v: &DeValue) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a bool",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

fn parse_int(s: &str, radix: u32) -> Option<i64> {
    i64::from_str_radix(&s.replace('_', ""), radix).ok()
}

fn convert(ty: ParamType, v: &DeValue) -> Result<Value, String> {
    let wrong = || format!("expected {}, found {}", ty, type_name(v));
    Ok(match (ty, v) {
        (ParamType::Int, DeValue::Integer(i)) => Value::Int(
            parse_int(i.as_str(), i.radix())
                .ok_or_else(|| format!("integer {} is out of range", i.as_str()))?,
        ),
        (ParamType::Float, DeValue::Float(f)) => Value::Float(
            f.as_str()
                .replace('_', "")
                .parse::<f64>()
                .map_err(|e| format!("bad float: {e}"))?,
        ),
        (ParamType::Float, DeValue::Integer(i)) => Value::Float(
            parse_int(i.as_str(), i.radix())
                .ok_or_else(|| format!("integer {} is out of range", i.as_str()))?
                as f64,
        ),
        (ParamType::Str, DeValue::String(s)) => Value::Str(s.to_string()),
        (ParamType::Bool, DeValue::Boolean(b)) => Value::Bool(*b),
        (ParamType::StrList, DeValue::Array(items)) => {
            let mut out = Vec::new();
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(s) => out.push(s.to_string()),
                    other => {
                        return Err(format!(
                            "expected a list of strings, found {} in it",
                            type_name(other)
                        ));
                    }
                }
            }
            Value::StrList(out)
        }
        _ => return Err(wrong()),
    })
}

/// The longest node name: it names folders (`cache/out/<node>`, `cache/tmp/<node>-…`) and
/// files (`cache/refs/<node>`), which most filesystems cap at 255 bytes.
pub const MAX_NAME: usize = 128;

pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads and validates a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, UsageError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        UsageError(if e.kind() == std::io::ErrorKind::NotFound {
            format!(
                "{}: no such pipeline file; run pai in a folder with a Pipeline.toml, or give one with -C DIR or -f FILE",
                path.display()
            )
        } else {
            format!("{}: cannot read the pipeline file: {e}", path.display())
        })
    })?;
    parse(path, text)
}

pub fn parse(path: &Path, text: String) -> Result<Pipeline, UsageError> {
    let mut diags = Vec::new();
    let result = parse_inner(&text, &mut diags);
    match result {
        Some((default, nodes, gc, remote)) if diags.is_empty() => {
            let index = nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.name.clone(), i))
                .collect();
            let p = Pipeline {
                path: path.to_path_buf(),
                text,
                default,
                nodes,
                gc,
                remote,
                index,
            };
            if let Err(cycle) = crate::graph::find_cycle(&p) {
                let first = &p.nodes[cycle[0]];
                let names: Vec<&str> = cycle.iter().map(|&i| p.nodes[i].name.as_str()).collect();
                let diag = Diag {
                    span: first.span.clone(),
                    message: format!(
                        "the inputs form a cycle: {} → {}",
                        names.join(" → "),
                        names[0]
                    ),
                    help: Some("remove one of these inputs; a pipeline must be a DAG".into()),
                };
                return Err(UsageError(render(path, &p.text, &[diag])));
            }
            Ok(p)
        }
        _ => Err(UsageError(render(path, &text, &diags))),
    }
}

type Parsed = (Option<String>, Vec<Node>, GcDefaults, RemoteSpec);

fn parse_inner(text: &str, diags: &mut Vec<Diag>) -> Option<Parsed> {
    let root = match DeTable::parse(text) {
        Ok(t) => t,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            diags.push(Diag {
                span,
                message: format!("invalid TOML: {}", e.message().trim()),
                help: None,
            });
            return None;
        }
    };
    let mut default = None;
    let mut default_span = 0..0;
    let mut nodes_table = None;
    let mut gc_defaults = GcDefaults::default();
    let mut remote_spec = RemoteSpec::default();
    for (key, value) in root.get_ref().iter() {
        match key.get_ref().as_ref() {
            "pipeline" => match value.get_ref() {
                DeValue::Table(t) => {
                    for (k, v) in t.iter() {
                        match (k.get_ref().as_ref(), v.get_ref()) {
                            ("default", DeValue::String(s)) => {
                                default = Some(s.to_string());
                                default_span = v.span();
                            }
                            ("default", other) => diags.push(Diag {
                                span: v.span(),
                                message: format!(
                                    "`default` must be a string (a node name), found {}",
                                    type_name(other)
                                ),
                                help: None,
                            }),
                            (other, _) => diags.push(Diag {
                                span: k.span(),
                                message: format!("unknown key `{other}` in [pipeline]"),
                                help: did_you_mean(other, &["default"]),
                            }),
                        }
                    }
                }
                _ => diags.push(Diag {
                    span: value.span(),
                    message: "`pipeline` must be a table".into(),
                    help: None,
                }),
            },
            "nodes" => match value.get_ref() {
                DeValue::Table(t) => nodes_table = Some(t),
                _ => diags.push(Diag {
                    span: value.span(),
                    message: "`nodes` must be a table of tables ([nodes.NAME])".into(),
                    help: None,
                }),
            },
            "gc" => match value.get_ref() {
                DeValue::Table(t) => gc_defaults = gc::parse(t, diags),
                _ => diags.push(Diag {
                    span: value.span(),
                    message: "`gc` must be a table ([gc] with keep, max_size, temporaries, grace)"
                        .into(),
                    help: None,
                }),
            },
            "remote" => match value.get_ref() {
                DeValue::Table(t) => remote_spec = remote::parse(t, diags),
                _ => diags.push(Diag {
                    span: value.span(),
                    message: "`remote` must be a table ([remote] with url, endpoint, region)"
                        .into(),
                    help: None,
                }),
            },
            other => diags.push(Diag {
                span: key.span(),
                message: format!("unknown top-level key `{other}`"),
                help: did_you_mean(other, &["pipeline", "nodes", "gc", "remote"]),
            }),
        }
    }
    let Some(nodes_table) = nodes_table else {
        if diags.is_empty() {
            diags.push(Diag {
                span: 0..0,
                message: "the pipeline declares no nodes".into(),
                help: Some(
                    "add nodes as [nodes.NAME] tables with a `kind`; `pai kinds` lists the kinds"
                        .into(),
                ),
            });
        }
        return None;
    };

    let node_names: Vec<&str> = nodes_table
        .iter()
        .map(|(k, _)| k.get_ref().as_ref())
        .collect();
    let kind_names: Vec<&str> = steps::registry().iter().map(|s| s.kind()).collect();
    let mut nodes = Vec::new();
    // Nodes whose parameters have a problem (wrong type, out of range, missing,
    // or failing the kind's own checks): the checks that assume valid values
    // (`validate`, `input_checks`, which may divide by them) skip them.
    let mut bad_params: std::collections::HashSet<String> = Default::default();
    let mut input_spans: Vec<Vec<Range<usize>>> = Vec::new();
    for (key, value) in nodes_table.iter() {
        let name = key.get_ref().to_string();
        let span = key.span();
        if !valid_name(&name) {
            diags.push(Diag {
                span: span.clone(),
                message: format!("node name `{name}` is not valid"),
                help: Some(format!(
                    "node names use lower-case letters, digits and `-` only, at most {MAX_NAME} of them"
                )),
            });
        }
        let DeValue::Table(table) = value.get_ref() else {
            diags.push(Diag {
                span: value.span(),
                message: format!("node `{name}` must be a table"),
                help: None,
            });
            continue;
        };
        let step = match table.get("kind").map(|v| (v.span(), v.get_ref())) {
            None => {
                diags.push(Diag {
                    span: span.clone(),
                    message: format!("node `{name}` has no `kind`"),
                    help: Some(format!(
                        "add kind = \"...\", one of: {}",
                        kind_names.join(", ")
                    )),
                });
                continue;
            }
            Some((vspan, DeValue::String(k))) => match steps::find(k) {
                Some(s) => s,
                None => {
                    diags.push(Diag {
                        span: vspan,
                        message: format!("unknown node kind `{k}` in node `{name}`"),
                        help: did_you_mean(k, &kind_names),
                    });
                    continue;
                }
            },
            Some((vspan, other)) => {
                diags.push(Diag {
                    span: vspan,
                    message: format!("`kind` must be a string, found {}", type_name(other)),
                    help: None,
                });
                continue;
            }
        };
        let mut params = BTreeMap::new();
        let diags_before_params = diags.len();
        let mut inputs = Vec::new();
        let mut spans = Vec::new();
        let mut valid_keys: Vec<&str> = vec!["kind", "inputs"];
        valid_keys.extend(step.params().iter().map(|p| p.name));
        for (k, v) in table.iter() {
            let kname = k.get_ref().as_ref();
            if kname == "kind" {
                continue;
            }
            if kname == "inputs" {
                match v.get_ref() {
                    DeValue::Array(items) => {
                        for item in items.iter() {
                            match item.get_ref() {
                                DeValue::String(s) => {
                                    inputs.push(s.to_string());
                                    spans.push(item.span());
                                }
                                other => diags.push(Diag {
                                    span: item.span(),
                                    message: format!(
                                        "`inputs` must list node names, found {}",
                                        type_name(other)
                                    ),
                                    help: None,
                                }),
                            }
                        }
                    }
                    other => diags.push(Diag {
                        span: v.span(),
                        message: format!(
                            "`inputs` must be a list of node names, found {}",
                            type_name(other)
                        ),
                        help: Some(format!(
                            "write inputs = [\"...\"]; nodes: {}",
                            node_names.join(", ")
                        )),
                    }),
                }
                continue;
            }
            let Some(decl) = step.params().iter().find(|p| p.name == kname) else {
                diags.push(Diag {
                    span: k.span(),
                    message: format!(
                        "unknown key `{kname}` in node `{name}` (kind {})",
                        step.kind()
                    ),
                    help: did_you_mean(kname, &valid_keys),
                });
                continue;
            };
            match convert(decl.ty, v.get_ref()) {
                Ok(val) => {
                    let num = match &val {
                        Value::Int(i) => Some(*i as f64),
                        Value::Float(f) => Some(*f),
                        _ => None,
                    };
                    if let (Some(x), Some(lo), Some(hi)) = (num, decl.min, decl.max)
                        && (x.is_nan() || x < lo || x > hi)
                    {
                        diags.push(Diag {
                            span: v.span(),
                            message: format!("`{kname}` = {val} is out of range"),
                            help: Some(format!("{}: between {lo} and {hi}", decl.doc)),
                        });
                    }
                    params.insert(kname.to_string(), val);
                }
                Err(msg) => diags.push(Diag {
                    span: v.span(),
                    message: format!("`{kname}` in node `{name}`: {msg}"),
                    help: Some(decl.doc.to_string()),
                }),
            }
        }
        for decl in step.params() {
            if !params.contains_key(decl.name) {
                match decl.default.value() {
                    Some(v) => {
                        params.insert(decl.name.to_string(), v);
                    }
                    None => {
                        if table.get(decl.name).is_none() {
                            diags.push(Diag {
                                span: span.clone(),
                                message: format!(
                                    "node `{name}` (kind {}) needs `{}`",
                                    step.kind(),
                                    decl.name
                                ),
                                help: Some(decl.doc.to_string()),
                            });
                        }
                    }
                }
            }
        }
        let params = Params(params);
        if diags.len() > diags_before_params {
            bad_params.insert(name.clone());
        } else if let Err(msg) = step.validate(&params) {
            bad_params.insert(name.clone());
            diags.push(Diag {
                span: span.clone(),
                message: format!("node `{name}`: {msg}"),
                help: None,
            });
        }
        nodes.push(Node {
            name,
            step,
            params,
            inputs,
            roles: Vec::new(),
            span,
        });
        input_spans.push(spans);
    }

    // Inputs: exist, and fill the kind's slots.
    let kinds: HashMap<String, &str> = nodes.iter().map(|n| (n.name.clone(), n.kind())).collect();
    for (node, spans) in nodes.iter_mut().zip(&input_spans) {
        let mut seen = Vec::new();
        for (input, ispan) in node.inputs.iter().zip(spans) {
            if seen.contains(input) {
                diags.push(Diag {
                    span: ispan.clone(),
                    message: format!("node `{}` lists input `{input}` twice", node.name),
                    help: None,
                });
            }
            seen.push(input.clone());
            if input == &node.name {
                diags.push(Diag {
                    span: ispan.clone(),
                    message: format!("node `{}` lists itself as an input", node.name),
                    help: None,
                });
            } else if !kinds.contains_key(input.as_str()) {
                diags.push(Diag {
                    span: ispan.clone(),
                    message: format!(
                        "node `{}` has input `{input}`, but there is no such node",
                        node.name
                    ),
                    help: did_you_mean(input, &node_names),
                });
            }
        }
        match node.step.inputs() {
            Inputs::Any => node.roles = node.inputs.clone(),
            Inputs::Slots(slots) => {
                let mut filled = vec![None; slots.len()];
                for (input, ispan) in node.inputs.iter().zip(spans) {
                    let Some(kind) = kinds.get(input.as_str()) else {
                        continue;
                    };
                    match slots.iter().position(|s| s.kinds.contains(kind)) {
                        Some(i) if filled[i].is_none() => filled[i] = Some(input.clone()),
                        Some(i) => diags.push(Diag {
                            span: ispan.clone(),
                            message: format!(
                                "node `{}` takes one `{}` input, but `{}` and `{input}` both fill it",
                                node.name,
                                slots[i].role,
                                filled[i].as_deref().unwrap_or("?")
                            ),
                            help: None,
                        }),
                        None => diags.push(Diag {
                            span: ispan.clone(),
                            message: format!(
                                "node `{}` (kind {}) cannot take `{input}` (kind {kind}) as an input",
                                node.name,
                                node.step.kind()
                            ),
                            help: Some(format!(
                                "its inputs are: {}",
                                slots.iter().map(|s| format!("{} ({})", s.role, s.kinds.join(" or "))).collect::<Vec<_>>().join(", ")
                            )),
                        }),
                    }
                }
                for (slot, f) in slots.iter().zip(&filled) {
                    if f.is_none() && node.inputs.iter().all(|i| kinds.contains_key(i.as_str())) {
                        diags.push(Diag {
                            span: node.span.clone(),
                            message: format!(
                                "node `{}` (kind {}) needs a `{}` input: a node of kind {}",
                                node.name,
                                node.step.kind(),
                                slot.role,
                                slot.kinds.join(" or ")
                            ),
                            help: Some(format!("add it to `inputs`; {}", slot.doc)),
                        });
                    }
                }
                // Roles in the order of `inputs`.
                node.roles = node
                    .inputs
                    .iter()
                    .map(|i| {
                        let kind = kinds.get(i.as_str()).copied().unwrap_or("");
                        slots
                            .iter()
                            .find(|s| s.kinds.contains(&kind))
                            .map(|s| s.role.to_string())
                            .unwrap_or_default()
                    })
                    .collect();
            }
        }
    }
    // Checks across nodes (e.g. a model's context against its pack's).
    for node in &nodes {
        let Some(check) = node.step.input_checks else {
            continue;
        };
        if bad_params.contains(&node.name) {
            continue;
        }
        let find = |name: &str| nodes.iter().find(|n| n.name == name);
        // Everything upstream, breadth first (nearest first); a cycle is reported
        // elsewhere, so each node is visited once.
        let mut upstream = Vec::new();
        let mut upstream_bad = false;
        let mut seen: Vec<&str> = vec![node.name.as_str()];
        let mut queue: std::collections::VecDeque<&str> =
            node.inputs.iter().map(|s| s.as_str()).collect();
        while let Some(name) = queue.pop_front() {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            upstream_bad |= bad_params.contains(name);
            if let Some(n) = find(name) {
                upstream.push((n.kind(), &n.params));
                queue.extend(n.inputs.iter().map(|s| s.as_str()));
            }
        }
        if upstream_bad {
            continue;
        }
        let inputs = steps::InputParams {
            inputs: node
                .inputs
                .iter()
                .zip(&node.roles)
                .filter_map(|(i, role)| {
                    let n = find(i)?;
                    Some((role.as_str(), n.kind(), &n.params))
                })
                .collect(),
            upstream,
        };
        if let Err(msg) = check(&node.params, &inputs) {
            diags.push(Diag {
                span: node.span.clone(),
                message: format!("node `{}`: {msg}", node.name),
                help: None,
            });
        }
    }
    if let Some(d) = &default
        && !kinds.contains_key(d.as_str())
    {
        diags.push(Diag {
            span: default_span,
            message: format!("default target `{d}` is not a node"),
            help: did_you_mean(d, &node_names),
        });
    }
    Some((default, nodes, gc_defaults, remote_spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        match parse(Path::new("P.toml"), text.to_string()) {
            Ok(_) => panic!("expected an error for:\n{text}"),
            Err(e) => e.0,
        }
    }

    #[test]
    fn suggestions_find_typos() {
        assert_eq!(
            suggest("vocab_sise", &["vocab_size", "min_frequency"]),
            Some("vocab_size")
        );
        assert_eq!(suggest("zzzzzz", &["vocab_size"]), None);
    }

    #[test]
    fn unknown_key_names_line_column_and_fix() {
        let e = err(
            "[nodes.c]\nkind = \"source\"\npath = \"x\"\n\n[nodes.t]\nkind = \"bpe-tokenizer\"\ninputs = [\"c\"]\nvocab_sise = 10\n",
        );
        assert!(e.contains("P.toml:8:1: unknown key `vocab_sise`"), "{e}");
        assert!(e.contains("did you mean `vocab_size`?"), "{e}");
    }

    #[test]
    fn wrong_type_and_range() {
        let e = err("[nodes.c]\nkind = \"source\"\npath = 3\n");
        assert!(
            e.contains("P.toml:3:8") && e.contains("expected string, found an integer"),
            "{e}"
        );
        let e = err(
            "[nodes.c]\nkind = \"source\"\npath = \"c\"\n[nodes.t]\nkind = \"bpe-tokenizer\"\ninputs = [\"c\"]\nvocab_size = 5\n",
        );
        assert!(e.contains("out of range"), "{e}");
    }

    #[test]
    fn missing_input_and_unknown_kind() {
        let e = err(
            "[nodes.t]\nkind = \"bpe-tokenizer\"\ninputs = [\"corpsu\"]\n[nodes.corpus]\nkind = \"source\"\npath = \"c\"\n",
        );
        assert!(
            e.contains("no such node") && e.contains("did you mean `corpus`?"),
            "{e}"
        );
        let e = err("[nodes.t]\nkind = \"bpe-tokeniser\"\n");
        assert!(
            e.contains("unknown node kind `bpe-tokeniser`") && e.contains("`bpe-tokenizer`"),
            "{e}"
        );
    }

    #[test]
    fn cycle_is_reported_as_a_path() {
        let e = err(
            "[nodes.a]\nkind = \"command\"\ninputs = [\"b\"]\nrun = \"true\"\noutputs = [\"x\"]\n\
                     [nodes.b]\nkind = \"command\"\ninputs = [\"a\"]\nrun = \"true\"\noutputs = [\"x\"]\n",
        );
        assert!(
            e.contains("cycle: a → b → a") || e.contains("cycle: b → a → b"),
            "{e}"
        );
    }

    #[test]
    fn duplicate_node_is_a_toml_error() {
        let e = err(
            "[nodes.a]\nkind = \"source\"\npath = \"x\"\n[nodes.a]\nkind = \"source\"\npath = \"y\"\n",
        );
        assert!(e.contains("P.toml:4:") && e.contains("invalid TOML"), "{e}");
    }

    #[test]
    fn an_out_of_range_parameter_is_reported_not_passed_to_the_kinds_checks() {
        // gpt-init's check divides n_embd by n_head: with n_head = 0 it panicked.
        let e = err(
            "[nodes.c]\nkind = \"source\"\npath = \"c\"\n[nodes.t]\nkind = \"bpe-tokenizer\"\n\
             inputs = [\"c\"]\n[nodes.i]\nkind = \"gpt-init\"\ninputs = [\"t\"]\nn_head = 0\n",
        );
        assert!(e.contains("`n_head` = 0 is out of range"), "{e}");
        assert!(!e.contains("does not divide"), "{e}");
    }

    #[test]
    fn defaults_are_filled() {
        let p = parse(
            Path::new("P.toml"),
            "[nodes.c]\nkind = \"source\"\npath = \"c\"\n".into(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            p.nodes[0].params.list("include").unwrap(),
            &["**/*".to_string()]
        );
    }
}
