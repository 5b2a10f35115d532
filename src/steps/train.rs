//! `train`: AdamW training of a GPT-2 on the packed rows, on the GPU.
//!
//! The host schedules: it draws each step's rows, sets the learning rate,
//! reads back the loss and writes files; every forward, backward and optimizer
//! operation runs in the WGSL kernels (`model::Model` over `gpu::ops`), or in
//! native f32 code on the CPU when the build chose that adapter (`--adapter
//! cpu`; the same key: where it ran goes in the record).
//!
//! The run's state lives in the node's work folder, so a killed build resumes:
//! `checkpoints/step-N.safetensors` (weights and optimizer state),
//! `snapshots/step-N.safetensors` (weights at each evaluation), `log.jsonl`.
//! Everything a step does is a function of the checkpoint it starts from and
//! the step number (the batch is drawn from (seed, step)), so a resumed run
//! ends bit-identical to one that was never stopped.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use serde::{Deserialize, Serialize};

use super::Artifact;
use super::{
    Default as D, GpuUse, InputDecl, InputParams, Inputs, Kind, OutputDecl, ParamDecl,
    ParamType as T, Params, SplitMix64, StepCtx,
};
use crate::formats::tokens;
use crate::gpu::ops::{GpuOps, NativeOps, Ops};
use crate::gpu::{Device, Gpu};
use crate::model::{self, GptConfig, Hyper, Model, OptState, Weights};

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new("steps", T::Int, D::Int(1500), "Optimizer steps.").range(1.0, 1e9),
    ParamDecl::new("batch", T::Int, D::Int(8), "Rows per step.").range(1.0, 65536.0),
    ParamDecl::new("lr", T::Float, D::Float(1e-3), "Peak learning rate.").range(0.0, 10.0),
    ParamDecl::new("warmup", T::Int, D::Int(100), "Linear warm-up steps.").range(0.0, 1e9),
    ParamDecl::new(
        "min_lr_ratio",
        T::Float,
        D::Float(0.1),
        "Cosine decay floor, as a share of lr.",
    )
    .range(0.0, 1.0),
    ParamDecl::new(
        "weight_decay",
        T::Float,
        D::Float(0.1),
        "AdamW decay on 2-D weights.",
    )
    .range(0.0, 10.0),
    ParamDecl::new("beta1", T::Float, D::Float(0.9), "AdamW β1.").range(0.0, 1.0),
    ParamDecl::new("beta2", T::Float, D::Float(0.95), "AdamW β2.").range(0.0, 1.0),
    ParamDecl::new(
        "grad_clip",
        T::Float,
        D::Float(1.0),
        "Global-norm clip (0: off).",
    )
    .range(0.0, 1e6),
    ParamDecl::new(
        "eval_every",
        T::Int,
        D::Int(100),
        "Steps between validation passes (and weight snapshots); the last step is always evaluated.",
    )
    .range(1.0, 1e9),
    ParamDecl::new(
        "val_rows",
        T::Int,
        D::Int(64),
        "Validation rows evaluated each time (evenly spaced over val.bin; all of them if fewer).",
    )
    .range(1.0, 1e9),
    ParamDecl::new(
        "checkpoint_every",
        T::Int,
        D::Int(500),
        "Steps between checkpoints (weights and optimizer state; a killed build resumes from the newest).",
    )
    .range(1.0, 1e9),
    ParamDecl::new("seed", T::Int, D::Int(1), "Batch sampling seed."),
];

pub static TRAIN: Kind = Kind {
    name: "train",
    version: 1,
    doc: "AdamW training (bias-corrected, decay on 2-D weights only, global-norm clipping, linear warm-up \
          then cosine decay to `min_lr_ratio`) of the initial model on the packed rows, every forward, \
          backward and optimizer operation in WGSL on the GPU. Batches are drawn from `train.bin` by a \
          seeded generator; the validation loss is measured on a fixed set of `val.bin` rows every \
          `eval_every` steps. A killed build resumes from the newest checkpoint and ends with the same \
          bits. NaN or Inf in the loss or gradient norm stops training, naming the step.",
    params: PARAMS,
    inputs: Inputs::Slots(&[
        InputDecl {
            role: "init",
            kinds: &["gpt-init"],
            doc: "initial weights",
        },
        InputDecl {
            role: "packed",
            kinds: &["pack"],
            doc: "training and validation rows",
        },
    ]),
    outputs: |_| {
        Ok(vec![
            OutputDecl::keep("config.json", "the model's Hugging Face config (from init)")
                .artifact(Artifact::FinalWeights),
            OutputDecl::keep("model.safetensors", "weights after the last step")
                .artifact(Artifact::FinalWeights),
            OutputDecl::keep("best.safetensors", "weights at the best validation loss")
                .artifact(Artifact::ValidationSnapshots),
            OutputDecl::temporary("optimizer.safetensors", "AdamW m, v and step")
                .artifact(Artifact::OptimizerStates),
            OutputDecl::temporary(
                "checkpoints/*",
                "weights + optimizer every checkpoint_every",
            )
            .artifact(Artifact::GradientCheckpoints),
            OutputDecl::temporary("snapshots/*", "weights at each evaluation")
                .artifact(Artifact::ValidationSnapshots),
            OutputDecl::log("log.jsonl", "one line per step, then a summary"),
            OutputDecl::keep("loss.svg", "training and validation loss curves")
                .artifact(Artifact::Logs),
        ])
    },
    kernels: crate::gpu::ops::TRAIN_KERNELS,
    gpu: GpuUse::Yes,
    input_checks: Some(check_inputs),
    resumes: true,
    run,
    ..Kind::PLAIN
};

/// The model's context must be the pack's: each row holds context + 1 tokens.
fn check_inputs(_p: &Params, inputs: &InputParams) -> std::result::Result<(), String> {
    let (Some(init), Some(pack)) = (inputs.get("init"), inputs.get("packed")) else {
        return Ok(());
    };
    let (a, b) = (init.int("context"), pack.int("context"));
    if let (Ok(a), Ok(b)) = (a, b)
        && a != b
    {
        return Err(format!(
            "the model's context (gpt-init `context` = {a}) differs from the packed rows' (pack \
             `context` = {b}): set both to the same value"
        ));
    }
    Ok(())
}

/// The model and batch a pipeline's gpt-init, train and tokenizer parameters
/// describe (the vocabulary is the tokenizer's `vocab_size`, what a trained
/// tokenizer reaches on any real corpus): what `pai bench train` measures.
pub fn model_shape(
    init: &Params,
    train: &Params,
    tokenizer: &Params,
) -> Result<(GptConfig, usize)> {
    let cfg = super::gpt_init::config(init, tokenizer.usize("vocab_size")?)?;
    Ok((cfg, train.usize("batch")?))
}

/// The learning rate at `step` (1-based): linear warm-up to `lr`, then cosine
/// decay to `lr · min_ratio` at the last step.
pub fn lr_at(step: u64, steps: u64, warmup: u64, lr: f64, min_ratio: f64) -> f64 {
    if step <= warmup && warmup > 0 {
        return lr * step as f64 / warmup as f64;
    }
    let span = steps.saturating_sub(warmup).max(1) as f64;
    let progress = ((step - warmup.min(step)) as f64 / span).min(1.0);
    lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()))
}

/// The rows of step `step`: `batch` draws from `n` rows, a function of
/// (seed, step) alone, so a resumed run draws what an unbroken one would.
pub fn batch_rows(seed: u64, step: u64, batch: usize, n: usize) -> Vec<usize> {
    let mut rng = SplitMix64(seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
    (0..batch).map(|_| rng.below(n as u64) as usize).collect()
}

/// The entropy (nats per token) of the token frequencies of `targets`: the
/// loss of the best model that ignores context, the baseline to beat.
pub fn unigram_loss(targets: impl Iterator<Item = u32>, vocab: usize) -> f64 {
    let mut counts = vec![0u64; vocab];
    let mut n = 0u64;
    for t in targets {
        if let Some(c) = counts.get_mut(t as usize) {
            *c += 1;
            n += 1;
        }
    }
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n as f64;
            -p * p.ln()
        })
        .sum()
}

/// One line of `log.jsonl`.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct LogLine {
    pub step: u64,
    pub loss: f32,
    pub lr: f64,
    pub grad_norm: f32,
    pub tokens_per_s: f64,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f32>,
}

/// The last line of `log.jsonl`.
#[derive(Serialize, Deserialize, Debug)]
pub struct Summary {
    pub summary: bool,
    pub steps: u64,
    pub resumed_from: u64,
    pub final_loss: f32,
    pub final_val_loss: Option<f32>,
    pub best_val_loss: Option<f32>,
    pub best_step: u64,
    /// Entropy of the validation targets' unigram distribution (nats).
    pub unigram_val_loss: Option<f64>,
    pub tokens_per_s: f64,
    pub train_seconds: f64,
    /// Device memory of the model, its gradients, AdamW state and activations.
    pub device_bytes: u64,
    /// Peak host memory of writing a checkpoint.
    pub host_bytes: u64,
}

struct Rows {
    tokens: Vec<u32>,
    row: usize,
}

impl Rows {
    fn load(bytes: &[u8], cfg: &GptConfig, what: &str) -> Result<Rows> {
        let tokens = tokens::decode(bytes)?;
        let row = cfg.context + 1;
        ensure!(
            tokens.len().is_multiple_of(row),
            "{what} holds {} tokens, not a whole number of rows of context + 1 = {row}: the pack's \
             context must equal the model's ({})",
            tokens.len(),
            cfg.context
        );
        if let Some(t) = tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            bail!(
                "{what} holds token id {t}, outside the model's vocabulary of {}: train the model \
                 on rows made with its own tokenizer",
                cfg.vocab_size
            );
        }
        Ok(Rows { tokens, row })
    }
    fn len(&self) -> usize {
        self.tokens.len() / self.row
    }
    fn gather(&self, idx: &[usize]) -> Vec<u32> {
        let mut out = Vec::with_capacity(idx.len() * self.row);
        for &i in idx {
            out.extend_from_slice(&self.tokens[i * self.row..(i + 1) * self.row]);
        }
        out
    }
}

/// Writes a file so that a crash leaves either nothing or the whole file.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::store::write_atomic(path, bytes)
}

fn step_file(dir: &Path, step: u64) -> PathBuf {
    dir.join(format!("step-{step}.safetensors"))
}

/// Steps of the `step-N.safetensors` files in a folder, ascending.
fn steps_in(dir: &Path) -> Vec<u64> {
    let mut v: Vec<u64> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix("step-")?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()
        })
        .collect();
    v.sort();
    v
}

/// Where a run starts: from the initial weights, or from the newest
/// checkpoint in the work folder with the log lines up to it.
struct Start {
    step: u64,
    weights: Weights,
    opt: Option<OptState>,
    log: Vec<LogLine>,
}

fn resume(work: &Path, cfg: &GptConfig, init: Weights, steps: u64) -> Result<Start> {
    let ckpts = work.join("checkpoints");
    for step in steps_in(&ckpts).into_iter().rev() {
        if step > steps {
            continue;
        }
        let Ok(bytes) = fs::read(step_file(&ckpts, step)) else {
            continue;
        };
        let Ok((weights, opt)) = model::checkpoint_from_safetensors(cfg, &bytes) else {
            continue;
        };
        if opt.step != step {
            continue;
        }
        let log: Vec<LogLine> = fs::read_to_string(work.join("log.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
            .filter(|l| l.step <= step)
            .collect();
        // Every evaluation up to the checkpoint must have its snapshot.
        let complete = log.len() as u64 == step
            && log
                .iter()
                .filter(|l| l.val_loss.is_some())
                .all(|l| step_file(&work.join("snapshots"), l.step).exists());
        if complete {
            return Ok(Start {
                step,
                weights,
                opt: Some(opt),
                log,
            });
        }
    }
    // Nothing to resume from: start clean.
    for d in ["checkpoints", "snapshots"] {
        let p = work.join(d);
        if p.exists() {
            fs::remove_dir_all(&p).with_context(|| format!("clearing {}", p.display()))?;
        }
    }
    fs::remove_file(work.join("log.jsonl")).ok();
    Ok(Start {
        step: 0,
        weights: init,
        opt: None,
        log: Vec::new(),
    })
}

/// The best validation loss in a log: (step, loss), the earliest on ties.
fn best_of(log: &[LogLine]) -> Option<(u64, f32)> {
    let mut best: Option<(u64, f32)> = None;
    for l in log {
        if let Some(v) = l.val_loss
            && best.is_none_or(|(_, b)| v < b)
        {
            best = Some((l.step, v));
        }
    }
    best
}

fn run(ctx: &StepCtx) -> Result<()> {
    match ctx.device()? {
        Device::Wgpu(gpu) => train(ctx, GpuOps::new(gpu), Some(gpu)),
        Device::Native => train(ctx, NativeOps::new(), None),
    }
}

/// The training run on `ops` (`gpu`: the wgpu device behind them, whose limits the model must
/// fit; none for the native CPU adapter).
fn train<O: Ops>(ctx: &StepCtx, mut ops: O, gpu: Option<&Gpu>) -> Result<()> {
    let p = ctx.params;
    let init = ctx.input("init")?;
    let packed = ctx.input("packed")?;
    let config_json = init.read("config.json")?;
    let cfg = GptConfig::from_hf_config(&serde_json::from_slice(&config_json)?)?;
    let train_rows = Rows::load(&packed.read("train.bin")?, &cfg, "train.bin")?;
    let val_rows = Rows::load(&packed.read("val.bin")?, &cfg, "val.bin")?;
    let steps = p.int("steps")? as u64;
    let batch = p.usize("batch")?;
    let warmup = p.int("warmup")? as u64;
    let (lr, min_ratio) = (p.float("lr")?, p.float("min_lr_ratio")?);
    let eval_every = p.int("eval_every")? as u64;
    let ckpt_every = p.int("checkpoint_every")? as u64;
    let seed = p.int("seed")? as u64;
    // Read once (parameters have their defaults filled in); each step sets lr.
    let base = Hyper {
        lr: lr as f32,
        beta1: p.float("beta1")? as f32,
        beta2: p.float("beta2")? as f32,
        eps: 1e-8,
        weight_decay: p.float("weight_decay")? as f32,
        grad_clip: p.float("grad_clip")? as f32,
    };

    // The fixed validation set: evenly spaced rows.
    let val_idx = super::evaluate::spaced_rows(p.usize("val_rows")?, val_rows.len());
    let n_val = val_idx.len();
    let unigram = (n_val > 0).then(|| {
        let rows = val_rows.gather(&val_idx);
        let targets = rows
            .chunks(val_rows.row)
            .flat_map(|r| r[1..].iter().copied())
            .collect::<Vec<_>>();
        unigram_loss(targets.into_iter(), cfg.vocab_size)
    });

    // Refuse what the adapter cannot hold before touching it.
    let plan = model::memory_plan(&cfg, batch);
    if let Some(gpu) = gpu {
        model::check_fits(
            &plan,
            gpu.limits.max_buffer_size,
            gpu.limits.max_storage_buffer_binding_size,
        )?;
    }

    let init_w = Weights::from_safetensors(&cfg, &init.read("model.safetensors")?)?;
    let work = ctx.work_dir;
    let start = resume(work, &cfg, init_w, steps)?;
    if start.step > 0 {
        (ctx.message)(&format!("resuming from step {}", start.step));
    }
    fs::create_dir_all(work.join("checkpoints"))?;
    fs::create_dir_all(work.join("snapshots"))?;

    let mut m = Model::new(&mut ops, &start.weights, batch)?;
    if let Some(opt) = &start.opt {
        m.load_opt_state(&mut ops, opt)?;
    }
    let mut log = start.log;
    let mut best = best_of(&log);
    let mut logf = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(work.join("log.jsonl"))?;
    // Lines past the checkpoint (a run killed between them) are dropped.
    logf.set_len(0)?;
    for l in &log {
        writeln!(logf, "{}", serde_json::to_string(l)?)?;
    }
    let t0 = Instant::now();
    let mut train_seconds = 0.0;
    let tokens_per_step = (batch * cfg.context) as f64;
    let mut last_val = None;
    let mut final_state: Option<(Weights, OptState)> = None;
    for step in start.step + 1..=steps {
        let rows = train_rows.gather(&batch_rows(seed, step, batch, train_rows.len()));
        let lr_now = lr_at(step, steps, warmup, lr, min_ratio);
        let ts = Instant::now();
        let stats = m.train_step(
            &mut ops,
            &rows,
            &Hyper {
                lr: lr_now as f32,
                ..base
            },
            step,
        )?;
        let secs = ts.elapsed().as_secs_f64();
        train_seconds += secs;
        if !stats.loss.is_finite() || !stats.grad_norm.is_finite() {
            let last = steps_in(&work.join("checkpoints")).last().copied();
            bail!(
                "training diverged at step {step}: loss {} and gradient norm {} (learning rate {lr_now:.3e}); \
                 lower `lr`, raise `warmup` or set `grad_clip`; {}",
                stats.loss,
                stats.grad_norm,
                match last {
                    Some(s) => format!(
                        "the last good checkpoint (step {s}) stays in {}",
                        work.display()
                    ),
                    None => "no checkpoint was written before it".to_string(),
                }
            );
        }
        let mut line = LogLine {
            step,
            loss: stats.loss,
            lr: lr_now,
            grad_norm: stats.grad_norm,
            tokens_per_s: tokens_per_step / secs.max(1e-9),
            seconds: t0.elapsed().as_secs_f64(),
            val_loss: None,
        };
        // The weights of this step, read back from the device at most once.
        let mut weights: Option<Weights> = None;
        if n_val > 0 && (step.is_multiple_of(eval_every) || step == steps) {
            let v = validation_loss(&mut m, &mut ops, &val_rows, &val_idx, batch)?;
            ensure!(
                v.is_finite(),
                "training diverged at step {step}: validation loss {v}; lower `lr`"
            );
            let w = weights.insert(m.weights(&mut ops)?);
            let snap = step_file(&work.join("snapshots"), step);
            write_whole(&snap, &w.to_safetensors()?)?;
            if best.is_none_or(|(_, b)| v < b) {
                best = Some((step, v));
            }
            line.val_loss = Some(v);
            last_val = Some(v);
        }
        writeln!(logf, "{}", serde_json::to_string(&line)?)?;
        logf.flush()?;
        if step.is_multiple_of(ckpt_every) || step == steps {
            let w = match weights.take() {
                Some(w) => w,
                None => m.weights(&mut ops)?,
            };
            let opt = m.opt_state(&mut ops, step)?;
            write_whole(
                &step_file(&work.join("checkpoints"), step),
                &model::checkpoint_to_safetensors(&w, &opt)?,
            )?;
            // The last step is always checkpointed: its state is the outputs'.
            if step == steps {
                final_state = Some((w, opt));
            }
        }
        (ctx.progress)(step, steps, "steps");
        (ctx.message)(&format!(
            "loss {:.3}{} {:.0} tok/s",
            line.loss,
            last_val.map(|v| format!(" val {v:.3}")).unwrap_or_default(),
            line.tokens_per_s
        ));
        log.push(line);
    }

    // The outputs, from the final state (read back already unless no step ran) and the work
    // folder.
    let (final_w, opt) = match final_state {
        Some(s) => s,
        None => (m.weights(&mut ops)?, m.opt_state(&mut ops, steps)?),
    };
    fs::write(ctx.out("config.json"), &config_json)?;
    fs::write(ctx.out("model.safetensors"), final_w.to_safetensors()?)?;
    fs::write(
        ctx.out("optimizer.safetensors"),
        model::opt_to_safetensors(&cfg, &opt)?,
    )?;
    match best {
        Some((s, _)) => {
            fs::copy(
                step_file(&work.join("snapshots"), s),
                ctx.out("best.safetensors"),
            )?;
        }
        None => {
            fs::copy(ctx.out("model.safetensors"), ctx.out("best.safetensors"))?;
        }
    }
    for d in ["checkpoints", "snapshots"] {
        fs::create_dir_all(ctx.out(d))?;
        for s in steps_in(&work.join(d)) {
            fs::copy(step_file(&work.join(d), s), step_file(&ctx.out(d), s))?;
        }
    }
    let last = log.last().context("training ran no step")?;
    let summary = Summary {
        summary: true,
        steps,
        resumed_from: start.step,
        final_loss: last.loss,
        final_val_loss: last_val.or_else(|| log.iter().rev().find_map(|l| l.val_loss)),
        best_val_loss: best.map(|b| b.1),
        best_step: best.map(|b| b.0).unwrap_or(steps),
        unigram_val_loss: unigram,
        tokens_per_s: if train_seconds > 0.0 {
            tokens_per_step * (steps - start.step) as f64 / train_seconds
        } else {
            0.0
        },
        train_seconds,
        device_bytes: plan.device_bytes,
        host_bytes: plan.host_bytes,
    };
    let mut text = String::new();
    for l in &log {
        text.push_str(&serde_json::to_string(l)?);
        text.push('\n');
    }
    text.push_str(&serde_json::to_string(&summary)?);
    text.push('\n');
    fs::write(ctx.out("log.jsonl"), text)?;
    fs::write(
        ctx.out("loss.svg"),
        crate::report::plot::loss_svg(
            &log.iter()
                .map(|l| (l.step, l.loss as f64))
                .collect::<Vec<_>>(),
            &log.iter()
                .filter_map(|l| l.val_loss.map(|v| (l.step, v as f64)))
                .collect::<Vec<_>>(),
            unigram,
        )?,
    )?;
    let resumed = if start.step > 0 {
        format!(" (resumed from step {})", start.step)
    } else {
        String::new()
    };
    (ctx.summary)(&match (summary.best_val_loss, unigram) {
        (Some(b), Some(u)) => format!(
            "val loss {b:.3} at step {} (unigram baseline {u:.3}), train loss {:.3}, {:.0} tok/s{resumed}",
            summary.best_step, summary.final_loss, summary.tokens_per_s
        ),
        _ => format!(
            "train loss {:.3} (no validation rows), {:.0} tok/s{resumed}",
            summary.final_loss, summary.tokens_per_s
        ),
    });
    Ok(())
}

/// Mean loss over the validation rows, `batch` at a time.
fn validation_loss<O: Ops>(
    m: &mut Model<O>,
    ops: &mut O,
    rows: &Rows,
    idx: &[usize],
    batch: usize,
) -> Result<f32> {
    let mut total = 0.0f64;
    for chunk in idx.chunks(batch) {
        let l = m.loss(ops, &rows.gather(chunk))?;
        total += l as f64 * chunk.len() as f64;
    }
    Ok((total / idx.len() as f64) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_rate_warms_up_then_decays_to_the_floor() {
        let f = |s| lr_at(s, 100, 10, 1.0, 0.1);
        assert!((f(1) - 0.1).abs() < 1e-12);
        assert!((f(10) - 1.0).abs() < 1e-12);
        assert!(f(50) < 1.0 && f(50) > 0.1);
        assert!((f(100) - 0.1).abs() < 1e-12);
        assert!((1..100).all(|s| f(s + 1) <= f(s) || s < 10));
        // No warm-up: the first step is at (nearly) the peak.
        assert!(lr_at(1, 100, 0, 1.0, 0.0) > 0.99);
    }

    #[test]
    fn batches_depend_only_on_seed_and_step() {
        assert_eq!(batch_rows(1, 7, 5, 100), batch_rows(1, 7, 5, 100));
        assert_ne!(batch_rows(1, 7, 5, 100), batch_rows(1, 8, 5, 100));
        assert_ne!(batch_rows(1, 7, 5, 100), batch_rows(2, 7, 5, 100));
        assert!(batch_rows(3, 1, 1000, 10).iter().all(|&r| r < 10));
    }

    #[test]
    fn unigram_loss_is_the_entropy_of_the_targets() {
        assert!((unigram_loss([0u32, 1, 0, 1].into_iter(), 4) - 2f64.ln()).abs() < 1e-12);
        assert_eq!(unigram_loss([3u32; 5].into_iter(), 4), 0.0);
    }

    #[test]
    fn the_best_validation_loss_is_the_earliest_minimum() {
        let l = |step, v: Option<f32>| LogLine {
            step,
            loss: 1.0,
            lr: 0.0,
            grad_norm: 0.0,
            tokens_per_s: 0.0,
            seconds: 0.0,
            val_loss: v,
        };
        let log = [
            l(1, None),
            l(2, Some(3.0)),
            l(3, Some(2.0)),
            l(4, Some(2.0)),
            l(5, Some(2.5)),
        ];
        assert_eq!(best_of(&log), Some((3, 2.0)));
        assert_eq!(best_of(&log[..1]), None);
    }
}
