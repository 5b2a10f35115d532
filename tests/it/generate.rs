//! `evaluate` and `pai generate` on a minute model of the generated corpus: the loss of each
//! model input, size against quality, and streamed, seeded text through the KV-cache path.

use std::sync::OnceLock;

use crate::common::*;
use serde_json::Value;

/// The minute model (context 16), its export, its two quantized files and their evaluation.
fn pipeline() -> String {
    let more = r#"
[pipeline]
default = "final-4bit"

[nodes.hf]
kind = "export"
inputs = ["train", "tokenizer"]

[nodes.final-8bit]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "q8_0"

[nodes.final-4bit]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "q4_0"

[nodes.eval]
kind = "evaluate"
inputs = ["train", "final-8bit", "final-4bit", "packed"]
rows = 8
"#;
    model_pipeline(16, 1, 32, 16, "eval_every = 8", more)
}

/// One built project shared by the tests of this file (training it once is the slow part).
fn built() -> &'static Proj {
    static P: OnceLock<Proj> = OnceLock::new();
    P.get_or_init(|| {
        let p = Proj::with_pipeline(&pipeline());
        p.build(&["eval", "hf"]);
        p
    })
}

fn generate(p: &Proj, args: &[&str]) -> (String, String, i32) {
    let mut all = vec!["generate"];
    all.extend_from_slice(args);
    let o = p.run(&all);
    (
        String::from_utf8_lossy(&o.stdout).to_string(),
        stderr(&o),
        o.status.code().unwrap_or(-1),
    )
}

#[test]
fn evaluate_writes_the_loss_and_perplexity_of_each_model() {
    let p = built();
    let e: Value = serde_json::from_str(&p.read("cache/out/eval/eval.json")).unwrap();
    assert_eq!(e["rows"].as_array().unwrap().len(), 8);
    let models = e["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["node"].as_str().unwrap()).collect();
    assert_eq!(names, ["train", "final-8bit", "final-4bit"]);
    let formats: Vec<&str> = models
        .iter()
        .map(|m| m["format"].as_str().unwrap())
        .collect();
    assert_eq!(formats, ["f32", "q8_0", "q4_0"]);
    for m in models {
        let loss = m["val_loss"].as_f64().unwrap();
        let ppl = m["perplexity"].as_f64().unwrap();
        assert!(loss > 0.0 && loss < 10.0, "{m}");
        assert!((ppl - loss.exp()).abs() < 1e-9 * ppl, "{m}");
        assert!(m["bytes"].as_u64().unwrap() > 0);
    }
    let b: Vec<u64> = models
        .iter()
        .map(|m| m["bytes"].as_u64().unwrap())
        .collect();
    assert!(b[0] > b[1] && b[1] > b[2], "smaller with fewer bits: {b:?}");
    let best = std::fs::metadata(p.path("cache/out/train/best.safetensors"))
        .unwrap()
        .len();
    assert_eq!(b[0], best);
}

#[test]
fn the_fp32_loss_equals_the_train_nodes_and_quantized_losses_stay_close() {
    let p = built();
    let e: Value = serde_json::from_str(&p.read("cache/out/eval/eval.json")).unwrap();
    let loss = |i: usize| e["models"][i]["val_loss"].as_f64().unwrap();
    let log = p.read("cache/out/train/log.jsonl");
    let summary: Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    let train = summary["best_val_loss"].as_f64().unwrap();
    // The same 8 evenly spaced rows as train's val_rows = 8, the same weights.
    assert!(
        (loss(0) - train).abs() < 1e-5 * train,
        "{} vs {train}",
        loss(0)
    );
    assert!(
        (loss(1) - loss(0)).abs() < 0.02,
        "q8_0 {} vs f32 {}",
        loss(1),
        loss(0)
    );
    assert!(
        loss(2) > loss(0) - 0.05,
        "q4_0 {} vs f32 {}",
        loss(2),
        loss(0)
    );
    assert!(
        (loss(2) - loss(0)).abs() < 0.3,
        "q4_0 {} vs f32 {}",
        loss(2),
        loss(0)
    );
}

#[test]
fn evaluate_refuses_inputs_that_are_not_models_or_a_second_pack() {
    let p = Proj::with_pipeline(&pipeline().replace(
        r#"inputs = ["train", "final-8bit", "final-4bit", "packed"]"#,
        r#"inputs = ["train", "tokens", "packed"]"#,
    ));
    let o = p.run(&["status"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("input `tokens` is a `tokenize` node"),
        "{}",
        stderr(&o)
    );
    let p = Proj::with_pipeline(&pipeline().replace(
        r#"inputs = ["train", "final-8bit", "final-4bit", "packed"]"#,
        r#"inputs = ["train"]"#,
    ));
    let o = p.run(&["status"]);
    assert!(
        stderr(&o).contains("needs one `pack` input"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_same_seed_gives_the_same_text_and_another_seed_other_text() {
    let p = built();
    let args = |seed: &'static str| {
        [
            "--model",
            "train",
            "--tokens",
            "12",
            "--temperature",
            "1",
            "--seed",
            seed,
            "the data",
        ]
    };
    let (a, err, code) = generate(p, &args("1"));
    assert_eq!(code, 0, "{err}");
    assert!(a.starts_with("the data"), "the prompt is echoed: {a:?}");
    assert!(err.contains("tokens/s"), "{err}");
    assert_eq!(a, generate(p, &args("1")).0);
    assert_ne!(a, generate(p, &args("2")).0);
}

#[test]
fn greedy_generation_is_deterministic_and_json_reports_it() {
    let p = built();
    let run = |seed: &str| {
        let (v, code) = p.json(&[
            "generate",
            "--model",
            "final-4bit",
            "--tokens",
            "10",
            "--temperature",
            "0",
            "--seed",
            seed,
            "model",
        ]);
        assert_eq!(code, 0, "{v}");
        v
    };
    let a = run("1");
    assert_eq!(a["tokens"], 10);
    assert!(a["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(a["format"], "q4_0");
    assert_eq!(a["text"], run("7")["text"], "greedy ignores the seed");
}

#[test]
fn an_over_long_prompt_is_cut_from_the_left_with_a_warning() {
    let p = built();
    let long = "the model learns from a small corpus of notes and scripts ".repeat(20);
    let (v, code) = p.json(&["generate", "--model", "hf", "--tokens", "5", &long]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["prompt_tokens"], 16, "cut to the context");
    assert!(v["prompt_cut"].as_u64().unwrap() > 0);
    assert_eq!(v["tokens"], 1, "the context is full after one more token");
    let (_, err, code) = generate(p, &["--model", "hf", "--tokens", "5", &long]);
    assert_eq!(code, 0);
    assert!(
        err.contains("warning: the prompt is") && err.contains("dropped"),
        "{err}"
    );
}

#[test]
fn an_empty_prompt_starts_from_end_of_text_and_stops_at_the_context() {
    let p = built();
    let (v, code) = p.json(&["generate", "--tokens", "100"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["model"], "final-4bit", "the default target");
    assert_eq!(v["prompt_tokens"], 1);
    assert_eq!(
        v["tokens"], 16,
        "1 prompt token + 16 fill the context of 16 and one more"
    );
}

#[test]
fn generating_from_an_unbuilt_node_says_how_to_build_it() {
    let p = Proj::with_pipeline(&pipeline());
    let (_, err, code) = generate(&p, &["--model", "final-8bit", "hi"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("node `final-8bit` has not been built")
            && err.contains("pai build final-8bit"),
        "{err}"
    );
    let (_, err, code) = generate(&p, &["--model", "packed", "hi"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a model"), "{err}");
}
