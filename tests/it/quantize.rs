//! The `quantize` kind through the CLI, and `model::gguf`'s mapping: the tiny model's
//! model.gguf reads back with every key and tensor, its blocks equal ggml's reference
//! quantizer's, f32 round-trips exactly, the other formats within their error; bad files and
//! bad models are refused, never a panic.

use std::sync::OnceLock;

use crate::common::*;
use crate::gpu_util::gpu;
use pai::formats::ggml::{self, Format};
use pai::formats::gguf::{self, Value};
use pai::model::gguf::{from_gguf, gguf_name, to_gguf};
use pai::model::{GptConfig, Weights, specs};

const FORMATS: [(&str, Format); 4] = [
    ("final-4bit", Format::Q4_0),
    ("final-8bit", Format::Q8_0),
    ("final-f16", Format::F16),
    ("final-f32", Format::F32),
];

/// The minute model (2 layers, context 16) with a quantize node per format.
fn pipeline(n_embd: usize) -> String {
    let quantized = r#"
[nodes.final-4bit]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "q4_0"

[nodes.final-8bit]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "q8_0"

[nodes.final-f16]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "f16"

[nodes.final-f32]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "f32"
weights = "final"
"#;
    model_pipeline(16, 2, n_embd, 6, "eval_every = 3", quantized)
}

/// One project, built once for every test of this file.
fn built() -> &'static Proj {
    static P: OnceLock<Proj> = OnceLock::new();
    P.get_or_init(|| {
        let p = Proj::with_pipeline(&pipeline(32));
        let nodes: Vec<&str> = FORMATS.iter().map(|f| f.0).collect();
        let st = p.build(&nodes);
        for n in nodes {
            assert_eq!(st[n], "built", "{st:?}");
        }
        p
    })
}

fn out(p: &Proj, node: &str, file: &str) -> Vec<u8> {
    std::fs::read(p.path(&format!("cache/out/{node}/{file}"))).unwrap()
}

/// The trained model's config and the weights a quantize node reads (`best` unless told).
fn trained(p: &Proj, file: &str) -> Weights {
    let cfg = GptConfig::from_hf_config(
        &serde_json::from_slice(&out(p, "train", "config.json")).unwrap(),
    )
    .unwrap();
    Weights::from_safetensors(&cfg, &out(p, "train", file)).unwrap()
}

fn weights_file(node: &str) -> &'static str {
    if node == "final-f32" {
        "model.safetensors"
    } else {
        "best.safetensors"
    }
}

#[test]
fn building_final_4bit_writes_a_gguf_that_reads_back_with_every_key_and_tensor() {
    let p = built();
    let w = trained(p, "best.safetensors");
    let cfg = w.cfg;
    let tok: serde_json::Value =
        serde_json::from_slice(&out(p, "tokenizer", "tokenizer.json")).unwrap();
    let vocab = tok["model"]["vocab"].as_object().unwrap();
    for (node, format) in FORMATS {
        let bytes = out(p, node, "model.gguf");
        let g = gguf::read(&bytes).unwrap();
        let u = |k: &str| {
            g.get(k)
                .unwrap_or_else(|| panic!("{node}: no key {k}"))
                .as_u64()
                .unwrap()
        };
        let s = |k: &str| g.get(k).unwrap().as_str().unwrap().to_string();
        assert_eq!(s("general.architecture"), "gpt2");
        assert_eq!(s("tokenizer.ggml.model"), "gpt2");
        assert_eq!(s("tokenizer.ggml.pre"), "gpt-2");
        assert!(!s("general.name").is_empty());
        assert_eq!(u("general.file_type"), format.file_type() as u64);
        assert_eq!(u("general.quantization_version"), 2);
        assert_eq!(u("general.alignment"), 32);
        assert_eq!(u("gpt2.context_length"), cfg.context as u64);
        assert_eq!(u("gpt2.embedding_length"), cfg.n_embd as u64);
        assert_eq!(u("gpt2.block_count"), cfg.n_layer as u64);
        assert_eq!(u("gpt2.feed_forward_length"), 4 * cfg.n_embd as u64);
        assert_eq!(u("gpt2.attention.head_count"), cfg.n_head as u64);
        for k in [
            "gpt2.context_length",
            "gpt2.block_count",
            "tokenizer.ggml.eos_token_id",
        ] {
            assert!(matches!(g.get(k), Some(Value::U32(_))), "{k} must be a u32");
        }
        assert_eq!(
            g.get("gpt2.attention.layer_norm_epsilon"),
            Some(&Value::F32(1e-5))
        );
        let tokens = g.get("tokenizer.ggml.tokens").unwrap().as_array().unwrap();
        assert_eq!(tokens.len(), cfg.vocab_size);
        for (t, id) in vocab {
            assert_eq!(
                tokens[id.as_u64().unwrap() as usize].as_str(),
                Some(t.as_str())
            );
        }
        let eot = vocab["<|endoftext|>"].as_u64().unwrap();
        assert_eq!(u("tokenizer.ggml.bos_token_id"), eot);
        assert_eq!(u("tokenizer.ggml.eos_token_id"), eot);
        let types = g
            .get("tokenizer.ggml.token_type")
            .unwrap()
            .as_array()
            .unwrap();
        assert_eq!(types[eot as usize], Value::I32(3));
        assert_eq!(
            types.iter().filter(|t| **t == Value::I32(1)).count(),
            cfg.vocab_size - 1
        );
        let merges = g.get("tokenizer.ggml.merges").unwrap().as_array().unwrap();
        assert_eq!(
            merges.len(),
            tok["model"]["merges"].as_array().unwrap().len()
        );
        assert!(
            merges
                .iter()
                .all(|m| m.as_str().unwrap().split(' ').count() == 2)
        );

        // Every parameter under its llama.cpp name, shape reversed, plus output.weight.
        assert_eq!(g.tensors.len(), specs(&cfg).len() + 1, "{node}");
        for sp in specs(&cfg) {
            let name = gguf_name(&sp.name).unwrap();
            let t = g
                .tensor(&name)
                .unwrap_or_else(|| panic!("{node}: no tensor {name}"));
            let dims: Vec<u64> = sp.shape.iter().rev().map(|&d| d as u64).collect();
            assert_eq!(t.dims, dims, "{name}");
            let want = if sp.shape.len() == 2 {
                format.ggml_type()
            } else {
                0
            };
            assert_eq!(t.ggml_type, want, "{node} {name}");
            assert_eq!(t.offset % 32, 0);
        }
        assert_eq!(
            g.tensor_data(&bytes, "output.weight").unwrap(),
            g.tensor_data(&bytes, "token_embd.weight").unwrap()
        );
    }
}

#[test]
fn q8_0_and_q4_0_blocks_in_the_file_equal_ggmls_reference_quantizer_byte_for_byte() {
    let p = built();
    let w = trained(p, "best.safetensors");
    for (node, format) in FORMATS.into_iter().filter(|f| f.1.is_quantized()) {
        let bytes = out(p, node, "model.gguf");
        let g = gguf::read(&bytes).unwrap();
        let mut blocks = 0;
        for (sp, t) in specs(&w.cfg).iter().zip(&w.tensors) {
            let name = gguf_name(&sp.name).unwrap();
            let got = g.tensor_data(&bytes, &name).unwrap();
            let want = if sp.shape.len() == 2 {
                blocks += t.len() / 32;
                ggml::quantize_ref(format, &name, t).unwrap()
            } else {
                ggml::quantize_ref(Format::F32, &name, t).unwrap()
            };
            assert!(
                got == want.as_slice(),
                "{node}: {name} differs from ggml's reference"
            );
        }
        assert!(blocks > 1000, "{blocks}");
    }
}

#[test]
fn an_f32_file_round_trips_the_weights_exactly_and_to_gguf_is_deterministic() {
    let p = built();
    let w = trained(p, weights_file("final-f32"));
    let bytes = out(p, "final-f32", "model.gguf");
    let (cfg, back) = from_gguf(gpu(), &bytes).unwrap();
    assert_eq!(cfg, w.cfg);
    assert_eq!(back, w, "f32 must round-trip bit for bit");
    // The library call gives the node's bytes.
    let tok = out(p, "tokenizer", "tokenizer.json");
    assert_eq!(to_gguf(gpu(), &cfg, &w, &tok, Format::F32).unwrap(), bytes);
    let w4 = trained(p, "best.safetensors");
    assert_eq!(
        to_gguf(gpu(), &cfg, &w4, &tok, Format::Q4_0).unwrap(),
        out(p, "final-4bit", "model.gguf")
    );
}

#[test]
fn from_gguf_of_to_gguf_is_the_weights_within_each_formats_error() {
    let p = built();
    let w = trained(p, "best.safetensors");
    for (node, format) in FORMATS.into_iter().filter(|f| f.0 != "final-f32") {
        let (cfg, back) = from_gguf(gpu(), &out(p, node, "model.gguf")).unwrap();
        assert_eq!(cfg, w.cfg);
        let mut worst = 0.0f32;
        for ((sp, a), b) in specs(&cfg).iter().zip(&w.tensors).zip(&back.tensors) {
            if sp.shape.len() == 1 {
                assert_eq!(a, b, "{node}: 1-D {} is f32, exact", sp.name);
                continue;
            }
            for (xa, xb) in a.chunks(32).zip(b.chunks(32)) {
                let amax = xa.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                // Error bound relative to the block's largest magnitude (f16 d rounding included).
                let bound = match format {
                    Format::Q8_0 => amax / 127.0 * 0.5 + amax * 2e-3,
                    Format::Q4_0 => amax / 8.0 + amax * 2e-3,
                    _ => 0.0,
                };
                for (x, y) in xa.iter().zip(xb) {
                    let err = (x - y).abs();
                    let bound = if format == Format::F16 {
                        x.abs() * 4.9e-4 + 6e-8
                    } else {
                        bound
                    };
                    assert!(err <= bound, "{node} {}: {x} came back {y}", sp.name);
                    worst = worst.max(err / amax.max(1e-30));
                }
            }
        }
        eprintln!("{node}: worst error {worst:.4} of the block's max |x|");
    }
}

#[test]
fn bad_gguf_files_are_refused_naming_what_is_wrong_never_a_panic() {
    let p = built();
    let bytes = out(p, "final-4bit", "model.gguf");
    let err = |b: &[u8]| format!("{:#}", from_gguf(gpu(), b).unwrap_err());
    assert!(err(&bytes[..bytes.len() / 2]).contains("truncated"));
    assert!(err(&bytes[..3]).contains("byte"));
    let mut bad = bytes.clone();
    bad[0] = b'X';
    assert!(err(&bad).contains("not a GGUF file"));
    // Rewrite the file with one key or tensor changed.
    let g = gguf::read(&bytes).unwrap();
    let rewrite = |kv_edit: &dyn Fn(&str, &Value) -> Value, skip: &str| {
        let mut w = gguf::Writer::new();
        for (k, v) in &g.kv {
            w.kv(k, kv_edit(k, v));
        }
        for t in g.tensors.iter().filter(|t| t.name != skip) {
            w.tensor(
                &t.name,
                &t.dims,
                t.ggml_type,
                g.tensor_data(&bytes, &t.name).unwrap().to_vec(),
            );
        }
        w.finish().unwrap()
    };
    let same = rewrite(&|_, v| v.clone(), "");
    assert_eq!(same, bytes);
    let ctx = rewrite(
        &|k, v| {
            if k == "gpt2.context_length" {
                Value::U32(8)
            } else {
                v.clone()
            }
        },
        "",
    );
    assert!(err(&ctx).contains("position_embd.weight"), "{}", err(&ctx));
    let arch = rewrite(
        &|k, v| {
            if k == "general.architecture" {
                Value::Str("llama".into())
            } else {
                v.clone()
            }
        },
        "",
    );
    assert!(err(&arch).contains("gpt2"));
    let missing = rewrite(&|_, v| v.clone(), "blk.1.ffn_down.weight");
    assert!(err(&missing).contains("blk.1.ffn_down.weight"));
    let mut flips = 0;
    for i in (0..bytes.len()).step_by(97) {
        let mut b = bytes.clone();
        b[i] ^= 0xa5;
        flips += from_gguf(gpu(), &b).is_err() as usize;
    }
    assert!(flips > 0);
}

#[test]
fn a_model_whose_rows_are_not_whole_blocks_is_refused_at_plan_time_naming_the_tensor() {
    let p = Proj::with_pipeline(&pipeline(40));
    let o = p.run(&["build", "final-4bit"]);
    assert_eq!(o.status.code(), Some(2), "a pipeline error: {}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("final-4bit")
            && e.contains("token_embd.weight")
            && e.contains("n_embd = 40")
            && e.contains("f16"),
        "{e}"
    );
    assert!(!p.path("cache/out/train").exists(), "nothing ran");
    // f16 and f32 have no block constraint.
    let only_float = pipeline(40);
    let cut = only_float.find("[nodes.final-4bit]").unwrap();
    let end = only_float.find("[nodes.final-f16]").unwrap();
    p.write(
        "Pipeline.toml",
        &format!("{}{}", &only_float[..cut], &only_float[end..]),
    );
    let st = p.build(&["final-f16"]);
    assert_eq!(st["final-f16"], "built");
}

#[test]
fn an_unknown_format_is_a_pipeline_error_that_lists_the_choices() {
    let p = Proj::with_pipeline(&pipeline(32).replace("format = \"q8_0\"", "format = \"q5_0\""));
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("q5_0") && e.contains("q4_0") && e.contains("f16"),
        "{e}"
    );
}
