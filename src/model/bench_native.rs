//! The native CPU adapter's part of `pai bench train --adapter cpu`: training steps of
//! `Model<NativeOps>` timed (tokens/s) with the ops that take most, to print beside the wgpu
//! adapter and the f64 reference measured in the same run.

use std::fmt;

use anyhow::Result;
use serde::Serialize;

use super::bench::Run;
use super::{GptConfig, Weights};
use crate::gpu::native;
use crate::gpu::ops::native::cpu_seconds;
use crate::gpu::ops::{CpuOps, NativeOps};

/// One op's time in a profiled step.
#[derive(Serialize, Debug)]
pub struct OpShare {
    pub name: String,
    pub calls_per_step: usize,
    pub ms_per_step: f64,
    /// The process's CPU time while it ran (all threads).
    pub cpu_ms_per_step: f64,
    /// Share of the profiled step's wall time.
    pub share: f64,
}

#[derive(Serialize, Debug)]
pub struct NativeBench {
    /// "cpu (native f32, N threads)".
    pub adapter: String,
    pub steps_timed: usize,
    pub ms_per_step: f64,
    pub tokens_per_s: f64,
    /// CPU time of the process per step (all threads, spinning included): on a machine shared
    /// with other work, tokens per CPU-second say what the adapter would do with whole cores.
    pub cpu_ms_per_step: f64,
    pub tokens_per_cpu_s: f64,
    /// Each op's time over one profiled step, slowest first (Display shows the first 8).
    pub top_ops: Vec<OpShare>,
    /// tokens/s ÷ the wgpu adapter's, measured in the same run (when one was).
    pub vs_adapter: Option<f64>,
    /// tokens/s ÷ the f64 reference's (CpuOps), measured in the same run.
    pub vs_baseline: Option<f64>,
}

/// Times `steps` training steps of `cfg` at `batch` on the native adapter (after two warm-up
/// steps), then one step with per-op timers.
pub fn train(cfg: GptConfig, batch: usize, steps: usize) -> Result<NativeBench> {
    let w = Weights::init(cfg, 0.02, 1);
    let mut run = Run::new(NativeOps::new(), &w, batch)?;
    run.steps(&cfg, 2)?;
    let cpu0 = cpu_seconds();
    let step_s = run.steps(&cfg, steps.max(1))?;
    let cpu_s = (cpu_seconds() - cpu0) / steps.max(1) as f64;
    run.ops.set_profiling(true);
    run.steps(&cfg, 1)?;
    let profile = run.ops.take_profile();
    let total: f64 = profile.iter().map(|k| k.wall_s).sum::<f64>().max(1e-12);
    let top_ops = profile
        .iter()
        .map(|k| OpShare {
            name: k.name.clone(),
            calls_per_step: k.calls,
            ms_per_step: k.wall_s * 1e3,
            cpu_ms_per_step: k.cpu_s * 1e3,
            share: k.wall_s / total,
        })
        .collect();
    Ok(NativeBench {
        adapter: native::describe(),
        steps_timed: steps.max(1),
        ms_per_step: step_s * 1e3,
        tokens_per_s: (batch * cfg.context) as f64 / step_s,
        cpu_ms_per_step: cpu_s * 1e3,
        tokens_per_cpu_s: (batch * cfg.context) as f64 / cpu_s.max(1e-12),
        top_ops,
        vs_adapter: None,
        vs_baseline: None,
    })
}

/// tokens/s of one training step of the f64 reference (CpuOps), for when no wgpu adapter
/// measured it.
pub fn baseline_tokens_per_s(cfg: GptConfig, batch: usize) -> Result<f64> {
    let w = Weights::init(cfg, 0.02, 1);
    Ok((batch * cfg.context) as f64 / Run::new(CpuOps, &w, batch)?.steps(&cfg, 1)?)
}

impl NativeBench {
    /// Sets the ratios to the wgpu adapter's and the baseline's tokens/s.
    pub fn compare(mut self, adapter_tps: Option<f64>, baseline_tps: f64) -> Self {
        self.vs_adapter = adapter_tps.map(|a| self.tokens_per_s / a);
        self.vs_baseline = Some(self.tokens_per_s / baseline_tps);
        self
    }
}

impl fmt::Display for NativeBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "native adapter {}: {:.0} tokens/s ({:.1} ms per step, {} steps timed)",
            self.adapter, self.tokens_per_s, self.ms_per_step, self.steps_timed
        )?;
        if let Some(r) = self.vs_adapter {
            write!(f, ", {r:.2}× the wgpu adapter")?;
        }
        if let Some(r) = self.vs_baseline {
            write!(f, ", {r:.2}× the baseline")?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "  {:.1} ms of CPU per step (all threads): {:.0} tokens per CPU-second",
            self.cpu_ms_per_step, self.tokens_per_cpu_s
        )?;
        write!(f, "  ops that take most (one profiled step):")?;
        for k in self.top_ops.iter().take(8) {
            write!(
                f,
                "\n    {:<28} {:>7.1} ms per step {:>5.1} %  ({:.1} ms CPU, {} calls)",
                k.name,
                k.ms_per_step,
                k.share * 100.0,
                k.cpu_ms_per_step,
                k.calls_per_step
            )?;
        }
        Ok(())
    }
}
