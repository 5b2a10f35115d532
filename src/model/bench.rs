//! `pai bench train` (`bench quant` is in `quant_bench.rs`): training throughput of a model on the adapter, where the
//! time goes (forward, backward, optimizer; the kernels that take most), and
//! the plain-Rust reference implementation timed in the same run as the
//! baseline.

use std::fmt;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use super::{GptConfig, Hyper, Model, Weights};
use crate::gpu::ops::{CpuOps, GpuOps, Ops};
use crate::gpu::{Gpu, KernelPath};

#[derive(Serialize, Debug)]
pub struct KernelTime {
    pub name: String,
    pub calls_per_step: f64,
    pub ms_per_step: f64,
    /// Share of the profiled step.
    pub share: f64,
}

#[derive(Serialize, Debug)]
pub struct Baseline {
    pub what: &'static str,
    pub steps: usize,
    pub tokens_per_s: f64,
}

/// The first training release's kernels (`KernelPath::Release1`), timed in the same run.
#[derive(Serialize, Debug)]
pub struct PathFigure {
    pub path: KernelPath,
    pub tokens_per_s: f64,
    pub ms_per_step: f64,
    pub dispatches_per_step: f64,
}

#[derive(Serialize, Debug)]
pub struct TrainBench {
    pub adapter: String,
    pub model: GptConfig,
    pub batch: usize,
    pub parameters: usize,
    pub device_bytes: u64,
    pub steps_timed: usize,
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    /// Shares of a step: forward (a forward-and-loss pass timed alone),
    /// optimizer (its kernels, profiled), backward (the rest).
    pub forward_share: f64,
    pub backward_share: f64,
    pub optimizer_share: f64,
    pub dispatches_per_step: f64,
    /// Each kernel timed alone (one submission and wait per dispatch).
    pub top_kernels: Vec<KernelTime>,
    /// The first release's path, same model, data and adapter.
    pub release1: PathFigure,
    /// tokens/s of the current path ÷ the first release's.
    pub speedup_over_release1: f64,
    /// Largest |loss difference| / loss between the two paths over the steps both trained from
    /// the same weights on the same rows (float tolerance, not a fixed seed's luck).
    pub loss_curve_max_rel_diff: f64,
    pub loss_curve_steps: usize,
    pub baseline: Baseline,
    /// tokens/s on the adapter ÷ the baseline's.
    pub ratio: f64,
    /// The native CPU adapter measured in the same run (`--adapter cpu`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub native: Option<super::bench_native::NativeBench>,
}

/// Random rows of `context + 1` tokens (throughput does not depend on them).
fn rows(cfg: &GptConfig, batch: usize, seed: u64) -> Vec<u32> {
    let mut rng = super::rng::SplitMix64(seed);
    (0..batch * (cfg.context + 1))
        .map(|_| rng.below(cfg.vocab_size as u64) as u32)
        .collect()
}

/// A model in training on some ops: its last step number and the losses so far.
pub(super) struct Run<O: Ops> {
    pub ops: O,
    pub model: Model<O>,
    step: u64,
    losses: Vec<f32>,
}

impl<O: Ops> Run<O> {
    pub fn new(mut ops: O, w: &Weights, batch: usize) -> Result<Self> {
        let model = Model::new(&mut ops, w, batch)?;
        Ok(Self {
            ops,
            model,
            step: 0,
            losses: vec![],
        })
    }

    /// Trains `steps` steps (step s on rows seeded s, so two runs see the same data); returns
    /// the seconds per step.
    pub fn steps(&mut self, cfg: &GptConfig, steps: usize) -> Result<f64> {
        let h = Hyper::default();
        let t = Instant::now();
        for _ in 0..steps {
            self.step += 1;
            let r = rows(cfg, self.model.batch(), self.step);
            let s = self.model.train_step(&mut self.ops, &r, &h, self.step)?;
            self.losses.push(s.loss);
        }
        Ok(t.elapsed().as_secs_f64() / steps.max(1) as f64)
    }
}

impl Run<GpuOps<'_>> {
    /// One step with every dispatch timed alone: (kernel, calls, seconds).
    fn profile(&mut self, gpu: &Gpu, cfg: &GptConfig) -> Result<Vec<(String, u64, f64)>> {
        gpu.set_profiling(true);
        let profiled = self.steps(cfg, 1);
        gpu.set_profiling(false);
        profiled?;
        Ok(gpu.take_profile())
    }
}

/// Times `steps` training steps of `cfg` at `batch` on `gpu` (after two warm-up
/// steps), a forward pass alone, one profiled step, and `baseline_steps` steps
/// of the plain-Rust reference.
pub fn train(
    gpu: &Gpu,
    cfg: GptConfig,
    batch: usize,
    steps: usize,
    baseline_steps: usize,
) -> Result<TrainBench> {
    let w = Weights::init(cfg, 0.02, 1);
    let tokens = (batch * cfg.context) as f64;
    let plan = super::memory_plan(&cfg, batch);
    super::check_fits(
        &plan,
        gpu.limits.max_buffer_size,
        gpu.limits.max_storage_buffer_binding_size,
    )?;
    // Both paths from the same weights on the same rows, timed in alternating halves so that
    // a change in machine load hits both.
    let mut cur = Run::new(GpuOps::with_path(gpu, KernelPath::Fused), &w, batch)?;
    let mut old = Run::new(GpuOps::with_path(gpu, KernelPath::Release1), &w, batch)?;
    cur.steps(&cfg, 2)?;
    old.steps(&cfg, 2)?;
    let halves = [steps.div_ceil(2), steps / 2];
    let (mut step_s, mut old_s) = (0.0, 0.0);
    for n in halves.into_iter().filter(|&n| n > 0) {
        step_s += cur.steps(&cfg, n)? * n as f64;
        old_s += old.steps(&cfg, n)? * n as f64;
    }
    let (step_s, old_s) = (step_s / steps as f64, old_s / steps as f64);
    let loss_curve_max_rel_diff = cur
        .losses
        .iter()
        .zip(&old.losses)
        .map(|(a, b)| ((a - b).abs() / b.abs().max(1e-30)) as f64)
        .fold(0.0, f64::max);
    let loss_curve_steps = cur.losses.len().min(old.losses.len());

    let t = Instant::now();
    let n_fwd = steps.clamp(1, 4);
    for s in 0..n_fwd {
        cur.model
            .loss(&mut cur.ops, &rows(&cfg, batch, 100 + s as u64))?;
    }
    let forward_s = t.elapsed().as_secs_f64() / n_fwd as f64;

    let old_profile = old.profile(gpu, &cfg)?;
    let profile = cur.profile(gpu, &cfg)?;
    let total: f64 = profile.iter().map(|k| k.2).sum::<f64>().max(1e-12);
    let optimizer: f64 = profile
        .iter()
        .filter(|k| k.0.starts_with("optim::"))
        .map(|k| k.2)
        .sum();
    let mut top: Vec<KernelTime> = profile
        .iter()
        .map(|(name, calls, secs)| KernelTime {
            name: name.clone(),
            calls_per_step: *calls as f64,
            ms_per_step: secs * 1e3,
            share: secs / total,
        })
        .collect();
    top.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));
    let dispatches: f64 = top.iter().map(|k| k.calls_per_step).sum();
    top.truncate(5);
    let old_dispatches: f64 = old_profile.iter().map(|k| k.1 as f64).sum();

    let forward_share = (forward_s / step_s).min(1.0);
    let optimizer_share = (optimizer / total).min(1.0 - forward_share);
    let base_s = Run::new(CpuOps, &w, batch)?.steps(&cfg, baseline_steps.max(1))?;
    let tokens_per_s = tokens / step_s;
    let base_tps = tokens / base_s;
    Ok(TrainBench {
        adapter: gpu.describe(),
        model: cfg,
        batch,
        parameters: cfg.param_count(),
        device_bytes: plan.device_bytes,
        steps_timed: steps,
        ms_per_step: step_s * 1e3,
        tokens_per_s,
        forward_share,
        backward_share: (1.0 - forward_share - optimizer_share).max(0.0),
        optimizer_share,
        dispatches_per_step: dispatches,
        top_kernels: top,
        release1: PathFigure {
            path: KernelPath::Release1,
            tokens_per_s: tokens / old_s,
            ms_per_step: old_s * 1e3,
            dispatches_per_step: old_dispatches,
        },
        speedup_over_release1: old_s / step_s,
        loss_curve_max_rel_diff,
        loss_curve_steps,
        baseline: Baseline {
            what: "the plain-Rust reference (CpuOps: f64, one thread), same model and batch",
            steps: baseline_steps.max(1),
            tokens_per_s: base_tps,
        },
        ratio: tokens_per_s / base_tps,
        native: None,
    })
}

impl fmt::Display for TrainBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.model;
        writeln!(f, "adapter: {}", self.adapter)?;
        writeln!(
            f,
            "model: {} layers, {} heads, {} channels, context {}, vocab {} ({} parameters), batch {}; {:.1} MiB on the device",
            c.n_layer,
            c.n_head,
            c.n_embd,
            c.context,
            c.vocab_size,
            crate::report::count(self.parameters as u64),
            self.batch,
            self.device_bytes as f64 / (1 << 20) as f64
        )?;
        writeln!(
            f,
            "training: {:.0} tokens/s ({:.1} ms per step, {} steps timed, {:.0} dispatches per step)",
            self.tokens_per_s, self.ms_per_step, self.steps_timed, self.dispatches_per_step
        )?;
        writeln!(
            f,
            "  forward {:.0} %, backward {:.0} %, optimizer {:.0} %",
            self.forward_share * 100.0,
            self.backward_share * 100.0,
            self.optimizer_share * 100.0
        )?;
        writeln!(
            f,
            "  kernels that take most (each dispatch timed alone, so small ones look bigger):"
        )?;
        for k in &self.top_kernels {
            writeln!(
                f,
                "    {:<28} {:>7.1} ms per step {:>5.1} %  ({} calls)",
                k.name,
                k.ms_per_step,
                k.share * 100.0,
                k.calls_per_step
            )?;
        }
        writeln!(
            f,
            "first release's kernels: {:.0} tokens/s ({:.1} ms per step, {:.0} dispatches per step), \
             timed in the same run: the current path is {:.2}× as fast",
            self.release1.tokens_per_s,
            self.release1.ms_per_step,
            self.release1.dispatches_per_step,
            self.speedup_over_release1
        )?;
        writeln!(
            f,
            "  loss curves of the two paths from the same weights and rows: largest relative \
             difference {:.1e} over {} steps",
            self.loss_curve_max_rel_diff, self.loss_curve_steps
        )?;
        writeln!(
            f,
            "baseline: {:.0} tokens/s, {} ({} step{})",
            self.baseline.tokens_per_s,
            self.baseline.what,
            self.baseline.steps,
            if self.baseline.steps == 1 { "" } else { "s" }
        )?;
        writeln!(f, "ratio: {:.2}× the baseline", self.ratio)?;
        if let Some(n) = &self.native {
            writeln!(f, "{n}")?;
        }
        write!(
            f,
            "for scale: PyTorch (CPU, float32, eager, 2 threads) trains 4 layers × 128 channels, context 128, \
             vocab 2048, batch 8 at 7,300–12,400 tokens/s on 2-core machines like CI's (not measured here)"
        )
    }
}
