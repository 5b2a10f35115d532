//! The action key: everything a node's build depends on ([`KeyParts`]: its
//! kind and that kind's implementation version, its parameters, its inputs'
//! contents and its shaders) and the one hash of them that names the build.

use serde_json::{Map, Value as Json, json};

use crate::spec;
use crate::store::{RecInput, RecShader, Record};

/// Bumped when the store layout or the meaning of keys changes: every node
/// then rebuilds.
pub const ENGINE_VERSION: u32 = 1;

/// Everything that goes into a node's action key.
#[derive(Clone, Debug)]
pub struct KeyParts {
    pub kind: String,
    pub kind_version: u32,
    pub params: Map<String, Json>,
    pub inputs: Vec<RecInput>,
    pub shaders: Vec<RecShader>,
}

/// A kind's implementation version, which `PAI_KIND_VERSION=kind=N,...` can
/// override so tests can show that a new implementation rebuilds its nodes.
pub fn kind_version(step: &crate::steps::Kind) -> u32 {
    if let Ok(spec) = std::env::var("PAI_KIND_VERSION") {
        for part in spec.split(',') {
            if let Some((k, v)) = part.split_once('=')
                && k.trim() == step.kind()
                && let Ok(v) = v.trim().parse()
            {
                return v;
            }
        }
    }
    step.version()
}

impl KeyParts {
    pub fn new(node: &spec::Node, inputs: Vec<RecInput>) -> KeyParts {
        let params = match serde_json::to_value(&node.params.0) {
            Ok(Json::Object(m)) => m,
            _ => Map::new(),
        };
        let shaders = node
            .step
            .shaders()
            .into_iter()
            .map(|(name, src)| RecShader {
                name: name.to_string(),
                hash: blake3::hash(src.as_bytes()).to_hex().to_string(),
            })
            .collect();
        KeyParts {
            kind: node.kind().to_string(),
            kind_version: kind_version(node.step),
            params,
            inputs,
            shaders,
        }
    }

    /// BLAKE3 of a canonical encoding. Input node names are left out: renaming
    /// a node rebuilds nothing; only contents count (early cutoff).
    pub fn key(&self) -> String {
        // Sorted by role: the order of `inputs` in the file does not matter.
        let mut inputs: Vec<(&String, &String)> =
            self.inputs.iter().map(|i| (&i.role, &i.hash)).collect();
        inputs.sort();
        let inputs: Vec<Json> = inputs.into_iter().map(|(r, h)| json!([r, h])).collect();
        let shaders: Vec<Json> = self
            .shaders
            .iter()
            .map(|s| json!([s.name, s.hash]))
            .collect();
        let mut params: Vec<(&String, &Json)> = self.params.iter().collect();
        params.sort_by(|a, b| a.0.cmp(b.0));
        let params: Vec<Json> = params.into_iter().map(|(k, v)| json!([k, v])).collect();
        let doc = json!([
            "pai-action",
            ENGINE_VERSION,
            self.kind,
            self.kind_version,
            params,
            inputs,
            shaders
        ]);
        blake3::hash(doc.to_string().as_bytes())
            .to_hex()
            .to_string()
    }
}

/// The key parts a record was built from.
pub fn parts_of(rec: &Record) -> KeyParts {
    KeyParts {
        kind: rec.kind.clone(),
        kind_version: rec.kind_version,
        params: rec.params.clone(),
        inputs: rec.inputs.clone(),
        shaders: rec.shaders.clone(),
    }
}
