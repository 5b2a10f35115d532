//! The model end of the funnel through the CLI: gpt-init, train (on the WGSL
//! kernels), export; resume after SIGKILL, determinism, refusals.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;
use serde_json::Value;

/// The minute model (context 8), evaluated and checkpointed every 4 steps, and its export.
fn pipeline(steps: usize, extra_train: &str) -> String {
    model_pipeline(
        8,
        1,
        32,
        steps,
        &format!("eval_every = 4\ncheckpoint_every = 4\n{extra_train}"),
        "\n[nodes.hf]\nkind = \"export\"\ninputs = [\"train\", \"tokenizer\"]\n",
    )
}

fn out(p: &Proj, node: &str, file: &str) -> Vec<u8> {
    std::fs::read(p.path(&format!("cache/out/{node}/{file}"))).unwrap()
}

fn log_lines(p: &Proj) -> Vec<Value> {
    String::from_utf8(out(p, "train", "log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (bounded) until a file matching `pred` exists under `dir`.
fn wait_for(dir: &Path, pred: impl Fn(&Path) -> bool, child: &mut std::process::Child) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(120) {
        let found = walk(dir).iter().any(|p| pred(p));
        if found {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return v;
    };
    for e in rd.flatten() {
        if e.path().is_dir() {
            v.extend(walk(&e.path()));
        } else {
            v.push(e.path());
        }
    }
    v
}

#[test]
fn the_model_end_trains_exports_and_its_loss_falls() {
    let p = Proj::with_pipeline(&pipeline(24, ""));
    let b = p.build(&["hf"]);
    for n in ["init", "train", "hf"] {
        assert_eq!(b[n], "built", "{b:?}");
    }
    let log = log_lines(&p);
    assert_eq!(log.len(), 25, "24 steps and a summary");
    let first = log[0]["loss"].as_f64().unwrap();
    let summary = &log[24];
    assert_eq!(summary["summary"], true);
    let last = summary["final_loss"].as_f64().unwrap();
    assert!(last < first * 0.9, "loss fell from {first} to {last}");
    // ln(300) is the loss of a uniform guess: the start is near it.
    assert!((first - 300f64.ln()).abs() < 0.5, "{first}");
    for l in &log[..24] {
        for k in ["step", "loss", "lr", "grad_norm", "tokens_per_s", "seconds"] {
            assert!(l[k].is_number(), "{k} in {l}");
        }
    }
    let evals: Vec<u64> = log[..24]
        .iter()
        .filter(|l| l["val_loss"].is_number())
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(evals, vec![4, 8, 12, 16, 20, 24]);
    assert!(summary["unigram_val_loss"].as_f64().unwrap() > 0.0);
    // The outputs DESIGN lists, and the best weights are one of the snapshots.
    for f in [
        "model.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
        "checkpoints/step-24.safetensors",
        "snapshots/step-4.safetensors",
        "loss.svg",
    ] {
        assert!(p.path(&format!("cache/out/train/{f}")).exists(), "{f}");
    }
    let best_step = summary["best_step"].as_u64().unwrap();
    assert_eq!(
        out(&p, "train", "best.safetensors"),
        out(
            &p,
            "train",
            &format!("snapshots/step-{best_step}.safetensors")
        )
    );
    let svg = String::from_utf8(out(&p, "train", "loss.svg")).unwrap();
    assert!(
        svg.contains("<svg") && svg.contains("optimizer step") && svg.contains("validation loss")
    );
    // export: the best weights, byte for byte, and the files transformers reads.
    assert_eq!(
        out(&p, "hf", "model.safetensors"),
        out(&p, "train", "best.safetensors")
    );
    let cfg: Value = serde_json::from_slice(&out(&p, "hf", "config.json")).unwrap();
    assert_eq!(cfg["model_type"], "gpt2");
    assert_eq!(cfg["n_positions"], 8);
    assert_eq!(
        out(&p, "hf", "tokenizer.json"),
        out(&p, "tokenizer", "tokenizer.json")
    );
    let tc: Value = serde_json::from_slice(&out(&p, "hf", "tokenizer_config.json")).unwrap();
    assert_eq!(tc["eos_token"], "<|endoftext|>");
    // The record says where it ran and which kernels, outside the key.
    let (v, code) = p.json(&["explain", "train"]);
    assert_eq!(code, 0);
    let kernels = v["ran_on"]["kernels"].as_array().unwrap();
    assert!(
        kernels
            .iter()
            .any(|k| k.as_str().unwrap().contains("adamw")),
        "{v}"
    );
    assert!(!v["ran_on"]["adapter"].as_str().unwrap().is_empty());
    // A second build is fresh; `weights = "final"` exports the last step.
    let again = p.build(&["hf"]);
    assert!(with_status(&again, "built").is_empty(), "{again:?}");
    p.write(
        "Pipeline.toml",
        &pipeline(24, "").replace(
            "inputs = [\"train\", \"tokenizer\"]",
            "inputs = [\"train\", \"tokenizer\"]\nweights = \"final\"",
        ),
    );
    let b = p.build(&["hf"]);
    assert_eq!(b["hf"], "built");
    assert_eq!(b["train"], "fresh");
    assert_eq!(
        out(&p, "hf", "model.safetensors"),
        out(&p, "train", "model.safetensors")
    );
}

#[test]
fn a_killed_training_run_resumes_and_ends_bit_identical_in_another_store() {
    let reference = Proj::with_pipeline(&pipeline(40, ""));
    reference.build(&["hf"]);

    let p = Proj::with_pipeline(&pipeline(40, ""));
    p.build(&["packed", "init"]);
    for kill_after in [8, 20] {
        let mut child = p
            .cmd(&["build", "train"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let name = format!("step-{kill_after}.safetensors");
        let seen = wait_for(
            &p.path("cache/work"),
            |f| f.ends_with(Path::new("checkpoints").join(&name)),
            &mut child,
        );
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        assert!(seen, "the build finished before checkpoint {kill_after}");
    }
    let (v, _) = p.json(&["status", "train"]);
    let train = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "train")
        .unwrap()
        .to_string();
    assert!(train.contains("it resumes from there"), "{train}");
    let b = p.build(&["hf"]);
    assert_eq!(b["train"], "built");
    let log = log_lines(&p);
    let resumed = log.last().unwrap()["resumed_from"].as_u64().unwrap();
    assert!(resumed >= 20, "resumed from step {resumed}");
    assert_eq!(log.len(), 41, "every step logged once: {}", log.len());
    for f in [
        "model.safetensors",
        "best.safetensors",
        "optimizer.safetensors",
        "checkpoints/step-40.safetensors",
        "snapshots/step-12.safetensors",
    ] {
        assert!(
            out(&p, "train", f) == out(&reference, "train", f),
            "{f} differs from the uninterrupted run"
        );
    }
    for (node, f) in [
        ("init", "model.safetensors"),
        ("init", "config.json"),
        ("hf", "model.safetensors"),
        ("hf", "config.json"),
        ("hf", "tokenizer.json"),
    ] {
        assert!(
            out(&p, node, f) == out(&reference, node, f),
            "{node}/{f} differs between the two stores"
        );
    }
    // Same artifacts, so the same content: dependents would not rebuild.
    let content = |p: &Proj| {
        let key = p.read("cache/refs/train");
        let rec: Value =
            serde_json::from_str(&p.read(&format!("cache/records/{}.json", key.trim()))).unwrap();
        rec["content"].as_str().unwrap().to_string()
    };
    assert_eq!(content(&p), content(&reference));
    // The committed key's work folder is gone.
    assert!(
        walk(&p.path("cache/work"))
            .iter()
            .all(|f| f.extension().is_some_and(|e| e == "lock"))
    );
}

#[test]
fn init_and_train_outputs_load_back_into_the_model_code_with_equal_bytes() {
    use pai::model::{GptConfig, Weights};
    let p = Proj::with_pipeline(&pipeline(4, ""));
    p.build(&["train"]);
    for node in ["init", "train"] {
        let cfg: Value = serde_json::from_slice(&out(&p, node, "config.json")).unwrap();
        let cfg = GptConfig::from_hf_config(&cfg).unwrap();
        assert_eq!(
            (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.context),
            (1, 2, 32, 8)
        );
        let bytes = out(&p, node, "model.safetensors");
        let w = Weights::from_safetensors(&cfg, &bytes).unwrap();
        assert_eq!(w.to_safetensors().unwrap(), bytes, "{node}");
    }
    let cfg = GptConfig::from_hf_config(
        &serde_json::from_slice(&out(&p, "train", "config.json")).unwrap(),
    )
    .unwrap();
    let opt = out(&p, "train", "optimizer.safetensors");
    let state = pai::model::opt_from_safetensors(&cfg, &opt).unwrap();
    assert_eq!(state.step, 4);
    assert_eq!(pai::model::opt_to_safetensors(&cfg, &state).unwrap(), opt);
}

#[test]
fn gc_keeps_a_resumable_work_folder_until_no_node_would_build_its_key() {
    let p = Proj::with_pipeline(&pipeline(400, ""));
    p.build(&["packed", "init"]);
    let mut child = p
        .cmd(&["build", "train"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = wait_for(
        &p.path("cache/work"),
        |f| f.ends_with("checkpoints/step-4.safetensors"),
        &mut child,
    );
    // While the build runs, gc waits for the store lock; kill first.
    child.kill().ok();
    child.wait().unwrap();
    assert!(seen);
    let work_dirs = |p: &Proj| -> Vec<PathBuf> {
        std::fs::read_dir(p.path("cache/work"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()
    };
    assert_eq!(work_dirs(&p).len(), 1);
    let (v, code) = p.json(&["gc", "--grace", "0"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["deleted_work"], 0, "the key is still wanted: {v}");
    assert_eq!(work_dirs(&p).len(), 1);
    // A changed parameter: no node builds that key any more.
    p.write("Pipeline.toml", &pipeline(401, ""));
    let (v, _) = p.json(&["gc", "--grace", "0", "--dry-run"]);
    assert_eq!(v["deleted_work"], 1, "{v}");
    assert_eq!(work_dirs(&p).len(), 1, "dry run deletes nothing");
    // A folder whose lock a live process holds is in use: gc leaves it.
    let dir = work_dirs(&p).remove(0);
    let lock = std::fs::File::open(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    let (v, _) = p.json(&["gc", "--grace", "0"]);
    assert_eq!(v["deleted_work"], 0, "a held folder is live: {v}");
    drop(lock);
    let (v, _) = p.json(&["gc", "--grace", "0"]);
    assert_eq!(v["deleted_work"], 1, "{v}");
    assert!(v["work_bytes"].as_u64().unwrap() > 0);
    assert!(work_dirs(&p).is_empty());
}

#[test]
fn a_model_too_large_for_the_adapter_is_refused_with_the_numbers() {
    let p = Proj::with_pipeline(&pipeline(4, "").replace("batch = 4", "batch = 60000"));
    let o = p.run(&["build", "train"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("batch"), "{err}");
    assert!(err.chars().any(|c| c.is_ascii_digit()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn a_model_context_unlike_the_pack_is_a_plan_time_error() {
    let p = Proj::with_pipeline(&pipeline(4, "").replace(
        "context = 8\n\n[nodes.train]",
        "context = 12\n\n[nodes.train]",
    ));
    let o = p.run(&["build", "train"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("context") && err.contains("= 12") && err.contains("= 8"),
        "{err}"
    );
}

#[test]
fn a_diverging_run_stops_naming_the_step() {
    // β2 = 1 leaves AdamW's second moment at zero and its bias correction
    // 1 − β2^t at zero: the first update writes NaN into every weight.
    let p = Proj::with_pipeline(&pipeline(12, "beta2 = 1.0\n"));
    let o = p.run(&["build", "train"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("diverged at step 2"), "{err}");
    assert!(!p.path("cache/refs/train").exists());
}

#[test]
fn after_gc_temporaries_nothing_rebuilds_and_a_retrain_starts_from_the_init_model() {
    let p = Proj::with_pipeline(&pipeline(8, ""));
    p.build(&["train"]);
    let (r, code) = p.json(&["gc", "--temporaries", "--grace", "0"]);
    assert_eq!(code, 0, "{r}");
    assert!(r["collected_outputs"].as_u64().unwrap() > 0, "{r}");
    let again = p.build(&["train"]);
    assert!(again.values().all(|s| s == "fresh"), "{again:?}");
    // A train parameter edit: the init model is still there, so only train runs.
    p.write("Pipeline.toml", &pipeline(9, ""));
    let retrain = p.build(&["train"]);
    assert_eq!(retrain["train"], "built", "{retrain:?}");
    assert_eq!(retrain["init"], "fresh", "{retrain:?}");
    let steps: Vec<u64> = log_lines(&p)
        .iter()
        .filter(|l| l["loss"].is_number())
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=9).collect::<Vec<u64>>(), "trained from step 1");
}
