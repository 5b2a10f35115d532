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

#[cfg(test)]
mod tests {
    use super::*;

    fn input(role: &str, node: &str, hash: &str) -> RecInput {
        RecInput {
            role: role.into(),
            node: node.into(),
            hash: hash.into(),
        }
    }

    fn parts(params: Json, inputs: Vec<RecInput>) -> KeyParts {
        let Json::Object(params) = params else {
            panic!("params must be an object")
        };
        KeyParts {
            kind: "tokenize".into(),
            kind_version: 1,
            params,
            inputs,
            shaders: vec![RecShader {
                name: "matmul::main".into(),
                hash: "5a".into(),
            }],
        }
    }

    #[test]
    fn input_order_does_not_change_the_key() {
        let a = parts(
            json!({"seq": 64}),
            vec![
                input("corpus", "text", "aa"),
                input("tokenizer", "bpe", "bb"),
            ],
        );
        let b = parts(
            json!({"seq": 64}),
            vec![
                input("tokenizer", "bpe", "bb"),
                input("corpus", "text", "aa"),
            ],
        );
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn parameter_order_does_not_change_the_key() {
        let a = parts(json!({"seq": 64, "split": 0.1}), vec![]);
        let b = parts(json!({"split": 0.1, "seq": 64}), vec![]);
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn node_names_do_not_change_the_key() {
        let a = parts(json!({"seq": 64}), vec![input("corpus", "text", "aa")]);
        let renamed = parts(json!({"seq": 64}), vec![input("corpus", "books", "aa")]);
        assert_eq!(a.key(), renamed.key());
    }

    #[test]
    fn a_parameter_changes_the_key() {
        let a = parts(json!({"seq": 64}), vec![input("corpus", "text", "aa")]);
        let changed = parts(json!({"seq": 128}), vec![input("corpus", "text", "aa")]);
        let added = parts(
            json!({"seq": 64, "split": 0.1}),
            vec![input("corpus", "text", "aa")],
        );
        let typed = parts(json!({"seq": "64"}), vec![input("corpus", "text", "aa")]);
        let keys = [a.key(), changed.key(), added.key(), typed.key()];
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
    }

    #[test]
    fn an_inputs_content_changes_the_key() {
        let a = parts(json!({}), vec![input("corpus", "text", "aa")]);
        let b = parts(json!({}), vec![input("corpus", "text", "ab")]);
        assert_ne!(a.key(), b.key());
        // The same content in another role is another key.
        let c = parts(json!({}), vec![input("tokenizer", "text", "aa")]);
        assert_ne!(a.key(), c.key());
    }

    #[test]
    fn kind_version_and_shaders_change_the_key() {
        let a = parts(json!({}), vec![]);
        let mut v = a.clone();
        v.kind_version = 2;
        let mut s = a.clone();
        s.shaders[0].hash = "5b".into();
        let mut k = a.clone();
        k.kind = "pack".into();
        assert_ne!(a.key(), v.key());
        assert_ne!(a.key(), s.key());
        assert_ne!(a.key(), k.key());
    }

    #[test]
    fn a_record_gives_back_its_key_parts() {
        let a = parts(json!({"seq": 64}), vec![input("corpus", "text", "aa")]);
        let rec = Record {
            key: a.key(),
            node: "tok".into(),
            kind: a.kind.clone(),
            kind_version: a.kind_version,
            engine: ENGINE_VERSION,
            params: a.params.clone(),
            inputs: a.inputs.clone(),
            shaders: a.shaders.clone(),
            outputs: vec![],
            content: String::new(),
            files: vec![],
            seconds: 0.0,
            built_at: 0,
            built_at_nanos: 0,
            ran_on: None,
            summary: None,
        };
        assert_eq!(parts_of(&rec).key(), rec.key);
    }
}
