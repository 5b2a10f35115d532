//! `pai du` (the space study's table, measured) and `pai space` (the same
//! table projected from first principles) on the tiny funnel, built whole.

use crate::common::*;
use serde_json::Value;

fn row<'a>(table: &'a Value, artifact: &str) -> &'a Value {
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["artifact"] == artifact)
        .unwrap_or_else(|| panic!("no row {artifact} in {table}"))
}

fn bytes(v: &Value) -> f64 {
    v["bytes"].as_u64().unwrap() as f64
}

fn file_len(p: &Proj, rel: &str) -> f64 {
    std::fs::metadata(p.path(rel)).unwrap().len() as f64
}

#[test]
fn du_measures_the_study_table_and_space_projects_the_same_rows() {
    let p = Proj::with_pipeline(include_str!("../../pipelines/tiny.toml"));
    p.build(&["final-4bit", "final-8bit", "eval", "hf"]);

    // du: the study's rows, measured.
    let (du, code) = p.json(&["du"]);
    assert_eq!(code, 0, "{du}");
    let t = &du["table"];
    let q8 = file_len(&p, "cache/out/final-8bit/model.gguf");
    let q4 = file_len(&p, "cache/out/final-4bit/model.gguf");
    assert_eq!(bytes(row(t, "model8_bit")), q8, "{t}");
    assert_eq!(bytes(row(t, "model4_bit")), q4, "{t}");
    assert_eq!(t["totals"]["usable_model"].as_f64().unwrap(), q8 + q4);
    let corpus: u64 = std::fs::read_dir(p.path("corpus"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .map(|e| e.metadata().unwrap().len())
        .sum::<u64>()
        + std::fs::metadata(p.path("corpus/sub/deep.md"))
            .unwrap()
            .len();
    assert_eq!(bytes(row(t, "raw_text")), corpus as f64);
    assert_eq!(
        bytes(row(t, "optimizer_states")),
        file_len(&p, "cache/out/train/optimizer.safetensors")
    );
    // The export's weights are the train node's bytes: counted once.
    let weights = file_len(&p, "cache/out/train/model.safetensors");
    assert!(bytes(row(t, "final_weights")) < 1.5 * weights, "{t}");
    let text = String::from_utf8_lossy(&p.run(&["du"]).stdout).to_string();
    for label in [
        "raw text",
        "gradient checkpoints",
        "4-bit model",
        "after cleanup",
        "█",
    ] {
        assert!(text.contains(label), "{label}: {text}");
    }

    // space: projected beside measured; every row within 5% (logs, whose
    // size depends on the digits printed, within 25%).
    let (sp, code) = p.json(&["space"]);
    assert_eq!(code, 0, "{sp}");
    let (proj, meas) = (&sp["projected"], &sp["measured"]);
    for r in proj["rows"].as_array().unwrap() {
        let a = r["artifact"].as_str().unwrap();
        if a == "other" {
            continue;
        }
        let (x, y) = (bytes(r), bytes(row(meas, a)));
        let tol = if a == "logs" { 0.25 } else { 0.05 };
        assert!(
            (x - y).abs() <= tol * y.max(1.0),
            "{a}: projected {x} vs measured {y}"
        );
    }
    for k in ["after_training", "after_cleanup", "usable_model"] {
        let (x, y) = (
            proj["totals"][k].as_f64().unwrap(),
            meas["totals"][k].as_f64().unwrap(),
        );
        assert!((x - y).abs() <= 0.05 * y, "{k}: {x} vs {y}");
    }
    // The GGUF files are laid out exactly as the writer does.
    assert_eq!(bytes(row(proj, "model4_bit")), q4);

    // After gc --temporaries the table is still the funnel after training.
    p.json(&["gc", "--temporaries", "--grace", "0"]);
    let (after, _) = p.json(&["du"]);
    assert_eq!(after["table"]["totals"], du["table"]["totals"]);
    assert!(
        row(&after["table"], "optimizer_states")["retention"]
            .as_str()
            .unwrap()
            .contains("collected")
    );
}

#[test]
fn space_for_n_parameters_sets_first_principles_beside_the_study() {
    let p = Proj::with_pipeline(include_str!("../../pipelines/tiny.toml"));
    let (sp, code) = p.json(&["space", "--params", "75e9"]);
    assert_eq!(code, 0, "{sp}");
    let t = &sp["projected"];
    let n = 75e9;
    assert_eq!(bytes(row(t, "optimizer_states")), 8.0 * n);
    assert!((bytes(row(t, "initialization")) - 4.0 * n).abs() < 1e5);
    let q8 = bytes(row(t, "model8_bit"));
    let q4 = bytes(row(t, "model4_bit"));
    assert!((q8 / (n * 34.0 / 32.0) - 1.0).abs() < 1e-3, "{q8}");
    assert!((q4 / (n * 18.0 / 32.0) - 1.0).abs() < 1e-3, "{q4}");
    assert_eq!(row(t, "final_weights")["study"], "~300 GB");
    assert!(sp["memory"]["total"].as_f64().unwrap() > 16.0 * n);
    assert!(sp["model"]["derived"].as_bool().unwrap());
    let text = String::from_utf8_lossy(&p.run(&["space", "--params", "75e9"]).stdout).to_string();
    assert!(
        text.contains("RAM minimum 32 GB") && text.contains("80–90 GB"),
        "{text}"
    );
    let bad = p.run(&["space", "--params", "lots"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("124M"), "{}", stderr(&bad));
}
