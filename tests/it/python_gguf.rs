//! The tiny pipeline's model.gguf checked by the `gguf` Python package (llama.cpp's own reader
//! and quantizers): `tests/python/check_gguf.py` with `$PAI_PYTHON` (default `python3`).
//! Without the module the test is skipped on a developer machine; under `CI` it fails.

use std::process::Command;

use crate::common::*;

fn python() -> String {
    std::env::var("PAI_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Whether `$PAI_PYTHON` has numpy, gguf and safetensors; the reason when not.
fn python_ready() -> Result<(), String> {
    match Command::new(python())
        .args(["-c", "import numpy, gguf, safetensors"])
        .output()
    {
        Err(e) => Err(format!("cannot run {}: {e}", python())),
        Ok(o) if !o.status.success() => Err(String::from_utf8_lossy(&o.stderr).trim().to_string()),
        Ok(_) => Ok(()),
    }
}

#[test]
fn the_gguf_python_package_reads_pais_model_gguf_and_quantizes_its_weights_to_the_same_bytes() {
    if let Err(why) = python_ready() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "no gguf module for {} under CI ({why}): .ci/run installs numpy, gguf and \
                 safetensors in a venv and exports PAI_PYTHON",
                python()
            );
        }
        eprintln!("skipped: no gguf module (CI installs it): {why}");
        return;
    }
    let tiny = include_str!("../../pipelines/tiny.toml");
    let extra = r#"
[nodes.final-f16]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "f16"

[nodes.final-f32]
kind = "quantize"
inputs = ["train", "tokenizer"]
format = "f32"
"#;
    let p = Proj::with_pipeline(&format!("{tiny}{extra}"));
    let nodes = ["final-8bit", "final-4bit", "final-f16", "final-f32"];
    p.build(&nodes);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/check_gguf.py");
    for node in nodes {
        let o = Command::new(python())
            .arg(script)
            .arg(p.path(&format!("cache/out/{node}/model.gguf")))
            .arg(p.path("cache/out/train/best.safetensors"))
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!("{node}: {text}");
        assert!(
            o.status.success(),
            "check_gguf.py on {node} failed:\n{text}"
        );
    }
}
