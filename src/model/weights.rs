//! GPT-2's parameter layout (Hugging Face names, pai's compute shapes), the host copy of the
//! weights, their seeded initialisation and their safetensors form.
//!
//! Compute layout: linear weights [out, in], biases [out], embeddings [rows, C]. Hugging Face
//! stores the four Conv1D weights (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj) as (in, out),
//! the transpose; everything else has the same shape in both.

use super::config::GptConfig;
use super::rng::Normal;
use crate::formats::safetensors::{self as st, Entry};
use anyhow::{Context, Result, ensure};

pub use super::checkpoint::{
    OptState, checkpoint_from_safetensors, checkpoint_to_safetensors, opt_from_safetensors,
    opt_to_safetensors,
};

/// One parameter tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// Hugging Face name, e.g. "transformer.h.0.attn.c_attn.weight".
    pub name: String,
    /// pai's compute layout: linear weights [out, in], biases [out].
    pub shape: Vec<usize>,
    /// AdamW weight decay: 2-D tensors only.
    pub decay: bool,
}

impl ParamSpec {
    /// Stored transposed in Hugging Face files (a Conv1D weight).
    pub fn is_conv1d(&self) -> bool {
        self.shape.len() == 2
            && self.name.starts_with("transformer.h.")
            && (self.name.contains(".attn.c_") || self.name.contains(".mlp.c_"))
    }

    /// Shape in the Hugging Face file.
    pub fn hf_shape(&self) -> Vec<usize> {
        if self.is_conv1d() {
            vec![self.shape[1], self.shape[0]]
        } else {
            self.shape.clone()
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Parameters per transformer block, in [`specs`] order.
pub const PER_LAYER: usize = 12;

/// Every parameter in one fixed order: wte [V,C], wpe [T,C]; per layer ln_1 w/b [C],
/// c_attn w [3C,C] / b [3C], attn.c_proj w [C,C] / b [C], ln_2 w/b [C], c_fc w [4C,C] / b [4C],
/// mlp.c_proj w [C,4C] / b [C]; then ln_f w/b [C]. No lm_head: it is tied to wte.
pub fn specs(cfg: &GptConfig) -> Vec<ParamSpec> {
    let (v, t, c) = (cfg.vocab_size, cfg.context, cfg.n_embd);
    let p = |name: String, shape: Vec<usize>| ParamSpec {
        decay: shape.len() == 2,
        name,
        shape,
    };
    let mut out = vec![
        p("transformer.wte.weight".into(), vec![v, c]),
        p("transformer.wpe.weight".into(), vec![t, c]),
    ];
    for l in 0..cfg.n_layer {
        let n = |s: &str| format!("transformer.h.{l}.{s}");
        out.extend([
            p(n("ln_1.weight"), vec![c]),
            p(n("ln_1.bias"), vec![c]),
            p(n("attn.c_attn.weight"), vec![3 * c, c]),
            p(n("attn.c_attn.bias"), vec![3 * c]),
            p(n("attn.c_proj.weight"), vec![c, c]),
            p(n("attn.c_proj.bias"), vec![c]),
            p(n("ln_2.weight"), vec![c]),
            p(n("ln_2.bias"), vec![c]),
            p(n("mlp.c_fc.weight"), vec![4 * c, c]),
            p(n("mlp.c_fc.bias"), vec![4 * c]),
            p(n("mlp.c_proj.weight"), vec![c, 4 * c]),
            p(n("mlp.c_proj.bias"), vec![c]),
        ]);
    }
    out.push(p("transformer.ln_f.weight".into(), vec![c]));
    out.push(p("transformer.ln_f.bias".into(), vec![c]));
    out
}

/// Host weights: one f32 vector per [`specs`] entry, in compute layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    pub cfg: GptConfig,
    pub tensors: Vec<Vec<f32>>,
}

/// Transposes a row-major [rows, cols] matrix.
pub(crate) fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            y[c * rows + r] = x[r * cols + c];
        }
    }
    y
}

impl Weights {
    /// GPT-2 initialisation: weights N(0, init_std), the residual projections (attn.c_proj,
    /// mlp.c_proj weights) N(0, init_std/√(2·n_layer)), biases 0, LayerNorm weights 1. Tensor i
    /// is drawn (in compute layout) from the stream of (seed, i): the same bytes everywhere.
    pub fn init(cfg: GptConfig, init_std: f32, seed: u64) -> Weights {
        let resid = 1.0 / (2.0 * cfg.n_layer as f64).sqrt();
        let tensors = specs(&cfg)
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let n = s.numel();
                let leaf = s.name.rsplit('.').nth(1).unwrap_or("");
                if s.name.ends_with(".bias") {
                    vec![0.0; n]
                } else if leaf.starts_with("ln_") {
                    vec![1.0; n]
                } else {
                    let std = if s.name.ends_with("c_proj.weight") {
                        init_std as f64 * resid
                    } else {
                        init_std as f64
                    };
                    let mut g = Normal::new(seed, i as u64);
                    (0..n).map(|_| (g.sample() * std) as f32).collect()
                }
            })
            .collect();
        Weights { cfg, tensors }
    }

    /// Checks that the tensors match the configuration's layout.
    pub fn check(&self) -> Result<()> {
        self.cfg.check()?;
        let sp = specs(&self.cfg);
        ensure!(
            sp.len() == self.tensors.len(),
            "weights hold {} tensors, the configuration has {}",
            self.tensors.len(),
            sp.len()
        );
        for (s, t) in sp.iter().zip(&self.tensors) {
            ensure!(
                t.len() == s.numel(),
                "weight {} has {} values, expected {} for shape {:?}",
                s.name,
                t.len(),
                s.numel(),
                s.shape
            );
        }
        Ok(())
    }

    /// The weights as safetensors entries under their Hugging Face names and layouts.
    pub(crate) fn hf_entries(&self) -> Result<Vec<Entry>> {
        self.check()?;
        Ok(specs(&self.cfg)
            .iter()
            .zip(&self.tensors)
            .map(|(s, t)| {
                if s.is_conv1d() {
                    Entry::f32(
                        &s.name,
                        &s.hf_shape(),
                        &transpose(t, s.shape[0], s.shape[1]),
                    )
                } else {
                    Entry::f32(&s.name, &s.shape, t)
                }
            })
            .collect())
    }

    /// Reads the weights from a parsed file, checking every name, dtype and shape.
    pub(crate) fn from_reader(cfg: &GptConfig, r: &st::Reader) -> Result<Weights> {
        let tensors = specs(cfg)
            .iter()
            .map(|s| {
                let t = r.f32(&s.name, &s.hf_shape()).with_context(|| {
                    format!("the file does not fit the model {cfg:?}: check its configuration")
                })?;
                Ok(if s.is_conv1d() {
                    transpose(&t, s.shape[1], s.shape[0])
                } else {
                    t
                })
            })
            .collect::<Result<_>>()?;
        Ok(Weights { cfg: *cfg, tensors })
    }

    /// Hugging Face GPT-2 `model.safetensors` bytes (F32, Conv1D weights as (in, out), no
    /// lm_head, `__metadata__` {"format": "pt"}); deterministic.
    pub fn to_safetensors(&self) -> Result<Vec<u8>> {
        st::write(&self.hf_entries()?)
    }

    /// Reads Hugging Face GPT-2 weights for `cfg`, refusing a missing or extra tensor, a
    /// dtype other than F32 or a shape other than the configuration's.
    pub fn from_safetensors(cfg: &GptConfig, bytes: &[u8]) -> Result<Weights> {
        cfg.check()?;
        let r = st::Reader::new(bytes)?;
        let names: Vec<String> = specs(cfg).into_iter().map(|s| s.name).collect();
        r.expect_names(&names, "GPT-2 weights file")?;
        Self::from_reader(cfg, &r)
    }
}
