//! `pai kinds`: every node kind with its parameters, inputs and outputs, as a
//! report (`--json`) or as the Markdown reference without its code marks.

use std::fmt;

use serde::Serialize;
use serde_json::Value as Json;

use super::{Inputs, OutputDecl, ParamType, Value, default_params, kinds_markdown, registry};

/// Every kind the registry holds.
#[derive(Serialize, Debug)]
pub struct KindsReport {
    pub kinds: Vec<KindDoc>,
}

/// One kind as `pai kinds --json` shows it.
#[derive(Serialize, Debug)]
pub struct KindDoc {
    pub kind: &'static str,
    pub version: u32,
    pub doc: &'static str,
    /// Whether it takes the GPU with its default parameters.
    pub gpu: bool,
    pub params: Vec<ParamDoc>,
    /// Its input slots, or `"any"`.
    pub inputs: Json,
    /// Its outputs with the default parameters; `None`: they depend on
    /// parameters it has no default for.
    pub outputs: Option<Vec<OutputDecl>>,
}

/// One parameter of a kind.
#[derive(Serialize, Debug)]
pub struct ParamDoc {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: ParamType,
    pub default: Option<Value>,
    pub required: bool,
    pub doc: &'static str,
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// The reference of every kind.
pub fn report() -> KindsReport {
    let kinds = registry()
        .iter()
        .map(|s| {
            let params = s
                .params()
                .iter()
                .map(|p| ParamDoc {
                    name: p.name,
                    ty: p.ty,
                    default: p.default.value(),
                    required: p.default.value().is_none(),
                    doc: p.doc,
                    min: p.min,
                    max: p.max,
                })
                .collect();
            let inputs = match s.inputs() {
                Inputs::Slots(slots) => serde_json::to_value(slots).unwrap_or_default(),
                Inputs::Any => Json::from("any"),
            };
            KindDoc {
                kind: s.kind(),
                version: s.version(),
                doc: s.doc(),
                gpu: s.uses_gpu(&default_params(s)),
                params,
                inputs,
                outputs: s.outputs(&default_params(s)).ok(),
            }
        })
        .collect();
    KindsReport { kinds }
}

impl fmt::Display for KindsReport {
    /// The Markdown reference without its backticks.
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&kinds_markdown().replace('`', ""))
    }
}
