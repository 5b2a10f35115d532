//! Reading a built model node's weights, whichever kind made it: a `train` node (its
//! `config.json` and chosen weights), an `export` folder (`config.json`, `model.safetensors`)
//! or a `quantize` node (`model.gguf`, dequantized on the device). Shared by `evaluate` and
//! `pai generate`.

use anyhow::{Result, bail};
use serde::Serialize;

use crate::gpu::Device;
use crate::model::{GptConfig, Weights};

/// The kinds whose builds hold a model.
pub const MODEL_KINDS: &[&str] = &["train", "export", "quantize"];

/// A model read from a node's files.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub cfg: GptConfig,
    pub weights: Weights,
    pub info: ModelInfo,
}

/// What a model file is: its name, its tensor format and its size on disk.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelInfo {
    /// `f32`, `f16`, `q8_0`, `q4_0`.
    pub format: String,
    /// The file the weights came from (`best.safetensors`, `model.gguf`, …).
    pub file: String,
    pub bytes: u64,
}

/// The weights file of a node of `kind` (`weights`: `best` or `final`, for `train`).
pub fn weights_file(kind: &str, weights: &str) -> Result<&'static str> {
    Ok(match (kind, weights) {
        ("train", "final") => "model.safetensors",
        ("train", _) => "best.safetensors",
        ("export", _) => "model.safetensors",
        ("quantize", _) => "model.gguf",
        _ => bail!(
            "a node of kind `{kind}` holds no model; models come from {}",
            MODEL_KINDS.join(", ")
        ),
    })
}

/// Reads the model of a node of `kind` through `read` (a file of its build by name).
/// `dev` dequantizes GGUF tensors (the native CPU adapter: the reference dequantizer).
pub fn load<'g>(
    dev: impl Into<Device<'g>>,
    kind: &str,
    weights: &str,
    read: &dyn Fn(&str) -> Result<Vec<u8>>,
) -> Result<LoadedModel> {
    let file = weights_file(kind, weights)?;
    let bytes = read(file)?;
    let size = bytes.len() as u64;
    if kind == "quantize" {
        return load_gguf(dev.into(), &bytes, size);
    }
    let cfg = GptConfig::from_hf_config(&serde_json::from_slice(&read("config.json")?)?)?;
    let w = Weights::from_safetensors(&cfg, &bytes)?;
    Ok(LoadedModel {
        cfg,
        weights: w,
        info: ModelInfo {
            format: "f32".into(),
            file: file.into(),
            bytes: size,
        },
    })
}

/// A `model.gguf`: dequantized on the device; its format is that of its matrices (the
/// 1-D tensors stay f32 in every format).
fn load_gguf(dev: Device, bytes: &[u8], size: u64) -> Result<LoadedModel> {
    let format = crate::formats::gguf::read(bytes)?
        .tensor("blk.0.attn_qkv.weight")
        .and_then(|t| crate::formats::ggml::Format::from_ggml_type(t.ggml_type))
        .map_or("unknown", |f| f.name())
        .to_string();
    let (cfg, weights) = crate::model::gguf::from_gguf(dev, bytes)?;
    Ok(LoadedModel {
        cfg,
        weights,
        info: ModelInfo {
            format,
            file: "model.gguf".into(),
            bytes: size,
        },
    })
}
