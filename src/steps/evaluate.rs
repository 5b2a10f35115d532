//! `evaluate`: validation loss, perplexity and size on disk of each model input, on the same
//! validation rows for every model, so that quantized models can be set against the full
//! precision one (size against quality).

use std::fmt::Write as _;

use anyhow::{Context, Result, ensure};
use serde::{Deserialize, Serialize};

use super::Artifact;
use super::models::{self, MODEL_KINDS, ModelInfo};
use super::{
    Default as D, GpuUse, InputParams, Inputs, Kind, OutputDecl, ParamDecl, ParamType as T, Params,
    StepCtx,
};
use crate::formats::tokens;
use crate::gpu::Device;
use crate::gpu::ops::{GpuOps, NativeOps, Ops};
use crate::model::Model;

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new(
        "rows",
        T::Int,
        D::Int(64),
        "Validation rows to evaluate (evenly spaced over the pack's val.bin, all of them if fewer; the same rows for every model).",
    )
    .range(1.0, 1e9),
    super::export::WEIGHTS_PARAM,
];

pub static EVALUATE: Kind = Kind {
    name: "evaluate",
    version: 1,
    doc: "Validation loss (mean cross-entropy, nats per token), perplexity (its exponential) and size \
          on disk of each model input — `train` (its chosen weights), `export` or `quantize` (its \
          `model.gguf`, dequantized on the GPU) nodes — on the same `val.bin` rows of the one `pack` \
          input, forward passes in WGSL. Writes `eval.json`; the summary sets size against quality.",
    params: PARAMS,
    inputs: Inputs::Any,
    outputs: |_| {
        Ok(vec![
            OutputDecl::keep(
                "eval.json",
                "the rows used, and per model: node, kind, format, bytes, val_loss, perplexity",
            )
            .artifact(Artifact::Logs),
        ])
    },
    kernels: crate::gpu::ops::EVAL_KERNELS,
    gpu: GpuUse::Yes,
    validate: super::export::check_weights,
    input_checks: Some(check_inputs),
    run,
    ..Kind::PLAIN
};

/// Model inputs and exactly one `pack`.
fn check_inputs(_p: &Params, inputs: &InputParams) -> std::result::Result<(), String> {
    let mut packs = Vec::new();
    let mut models = 0;
    for (name, kind, _) in &inputs.inputs {
        match *kind {
            "pack" => packs.push(*name),
            k if MODEL_KINDS.contains(&k) => models += 1,
            k => {
                return Err(format!(
                    "input `{name}` is a `{k}` node; evaluate takes model nodes ({}) and one `pack`",
                    MODEL_KINDS.join(", ")
                ));
            }
        }
    }
    match packs.len() {
        1 => {}
        0 => return Err("it needs one `pack` input: the validation rows".into()),
        _ => {
            return Err(format!(
                "it takes one `pack` input, got {}: keep one so that every model sees the same rows",
                packs.join(", ")
            ));
        }
    }
    if models == 0 {
        return Err(format!(
            "it has no model to evaluate: add `train`, `export` or `quantize` nodes to its inputs \
             ({} are model kinds)",
            MODEL_KINDS.join(", ")
        ));
    }
    Ok(())
}

/// One model's entry of `eval.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ModelEval {
    pub node: String,
    pub kind: String,
    pub format: String,
    pub file: String,
    pub bytes: u64,
    pub val_loss: f64,
    pub perplexity: f64,
}

/// `eval.json`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    pub pack: String,
    pub context: usize,
    /// Indices of the `val.bin` rows evaluated (of `val_rows_total`).
    pub rows: Vec<usize>,
    pub val_rows_total: usize,
    pub models: Vec<ModelEval>,
}

impl EvalReport {
    /// The compact table: size against quality, in input order.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        for (i, m) in self.models.iter().enumerate() {
            if i > 0 {
                s.push_str(" → ");
            }
            let _ = write!(
                s,
                "{} {} {}: loss {:.4} ppl {:.2}",
                m.node,
                m.format,
                crate::report::size(m.bytes),
                m.val_loss,
                m.perplexity
            );
        }
        let _ = write!(s, " ({} val rows)", self.rows.len());
        s
    }
}

/// Evenly spaced rows: `n` of `total` (all when fewer).
pub fn spaced_rows(n: usize, total: usize) -> Vec<usize> {
    let n = n.min(total);
    (0..n).map(|i| i * total / n).collect()
}

/// Rows evaluated per forward pass.
const BATCH: usize = 8;

fn run(ctx: &StepCtx) -> Result<()> {
    let pack = ctx
        .inputs
        .iter()
        .find(|i| i.kind == "pack")
        .context("evaluate needs a `pack` input")?;
    let val = tokens::decode(&pack.read("val.bin")?)?;
    let meta: serde_json::Value = serde_json::from_slice(&pack.read("pack.json")?)?;
    let context = meta["context"]
        .as_u64()
        .context("pack.json has no context")? as usize;
    let w = context + 1;
    ensure!(
        val.len().is_multiple_of(w),
        "val.bin of `{}` is not whole rows of context + 1 = {w}",
        pack.node
    );
    let total = val.len() / w;
    ensure!(
        total > 0,
        "the pack `{}` has no validation rows: raise its val_fraction or give it more text",
        pack.node
    );
    let idx = spaced_rows(ctx.params.usize("rows")?, total);
    let rows: Vec<u32> = idx
        .iter()
        .flat_map(|&i| val[i * w..(i + 1) * w].iter().copied())
        .collect();
    let dev = ctx.device()?;
    let weights = ctx.params.str("weights")?;
    let model_inputs: Vec<_> = ctx.inputs.iter().filter(|i| i.kind != "pack").collect();
    let mut out = Vec::new();
    for (k, input) in model_inputs.iter().enumerate() {
        (ctx.message)(&format!(
            "{} ({}/{})",
            input.node,
            k + 1,
            model_inputs.len()
        ));
        let m = models::load(dev, &input.kind, weights, &|f| input.read(f))
            .with_context(|| format!("reading the model of `{}`", input.node))?;
        ensure!(
            m.cfg.context == context,
            "the model `{}` has a context of {} but the pack `{}` has rows of {context}: evaluate \
             a model on a pack made with its context",
            input.node,
            m.cfg.context,
            pack.node
        );
        let loss = eval_loss(dev, &m.weights, &rows, w)
            .with_context(|| format!("evaluating `{}`", input.node))?;
        ensure!(
            loss.is_finite(),
            "the validation loss of `{}` is {loss}: its weights are broken",
            input.node
        );
        let ModelInfo {
            format,
            file,
            bytes,
        } = m.info;
        out.push(ModelEval {
            node: input.node.clone(),
            kind: input.kind.clone(),
            format,
            file,
            bytes,
            val_loss: loss,
            perplexity: loss.exp(),
        });
        (ctx.progress)(k as u64 + 1, model_inputs.len() as u64, "models");
    }
    let report = EvalReport {
        pack: pack.node.clone(),
        context,
        rows: idx,
        val_rows_total: total,
        models: out,
    };
    std::fs::write(ctx.out("eval.json"), serde_json::to_string_pretty(&report)?)?;
    (ctx.summary)(&report.summary());
    Ok(())
}

/// Mean loss over whole rows (context + 1 ids each), BATCH rows per forward pass, as `train`
/// measures its validation loss: chunk means weighted by their rows, summed in f64.
pub fn eval_loss<'g>(
    dev: impl Into<Device<'g>>,
    w: &crate::model::Weights,
    rows: &[u32],
    width: usize,
) -> Result<f64> {
    match dev.into() {
        Device::Wgpu(gpu) => loss_on(&mut GpuOps::new(gpu), w, rows, width),
        Device::Native => loss_on(&mut NativeOps::new(), w, rows, width),
    }
}

fn loss_on<O: Ops>(
    ops: &mut O,
    w: &crate::model::Weights,
    rows: &[u32],
    width: usize,
) -> Result<f64> {
    let n = rows.len() / width;
    let mut model = Model::new(ops, w, BATCH.min(n.max(1)))?;
    let mut total = 0.0f64;
    for chunk in rows.chunks(BATCH * width) {
        let l = model.loss(ops, chunk)?;
        total += l as f64 * (chunk.len() / width) as f64;
    }
    Ok(total / n as f64)
}
