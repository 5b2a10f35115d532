//! AdamW state and training checkpoints in safetensors: the moments `m.<HF name>` and
//! `v.<HF name>` in pai's compute layout (linear weights [out, in], not transposed as the Hugging
//! Face weights are: they are only ever read back by pai), and the step count `step` (I64 [1]).
//! A checkpoint is the weights under their Hugging Face names plus these tensors.

use super::config::GptConfig;
use super::weights::{Weights, specs};
use crate::formats::safetensors::{self as st, Entry};
use anyhow::{Context, Result, ensure};

/// AdamW moments (one per [`specs`] entry, compute layout) and the last completed step.
#[derive(Clone, Debug, PartialEq)]
pub struct OptState {
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub step: u64,
}

impl OptState {
    /// Zero moments at step 0.
    pub fn zeros(cfg: &GptConfig) -> OptState {
        let z: Vec<Vec<f32>> = specs(cfg).iter().map(|s| vec![0.0; s.numel()]).collect();
        OptState {
            m: z.clone(),
            v: z,
            step: 0,
        }
    }

    fn check(&self, cfg: &GptConfig) -> Result<()> {
        let sp = specs(cfg);
        ensure!(
            self.m.len() == sp.len() && self.v.len() == sp.len(),
            "optimizer state holds {}/{} moments, the configuration has {} tensors",
            self.m.len(),
            self.v.len(),
            sp.len()
        );
        for ((s, m), v) in sp.iter().zip(&self.m).zip(&self.v) {
            ensure!(
                m.len() == s.numel() && v.len() == s.numel(),
                "optimizer moments of {} have {}/{} values, expected {}",
                s.name,
                m.len(),
                v.len(),
                s.numel()
            );
        }
        Ok(())
    }
}

fn opt_entries(cfg: &GptConfig, s: &OptState) -> Result<Vec<Entry>> {
    s.check(cfg)?;
    let step = i64::try_from(s.step).context("optimizer step does not fit in an i64")?;
    let sp = specs(cfg);
    let mut out = Vec::with_capacity(2 * sp.len() + 1);
    for (p, m) in sp.iter().zip(&s.m) {
        out.push(Entry::f32(format!("m.{}", p.name), &p.shape, m));
    }
    for (p, v) in sp.iter().zip(&s.v) {
        out.push(Entry::f32(format!("v.{}", p.name), &p.shape, v));
    }
    out.push(Entry::i64("step", &[1], &[step]));
    Ok(out)
}

fn opt_names(cfg: &GptConfig) -> Vec<String> {
    let sp = specs(cfg);
    let mut n: Vec<String> = sp.iter().map(|p| format!("m.{}", p.name)).collect();
    n.extend(sp.iter().map(|p| format!("v.{}", p.name)));
    n.push("step".into());
    n
}

fn opt_from_reader(cfg: &GptConfig, r: &st::Reader) -> Result<OptState> {
    let sp = specs(cfg);
    let read = |prefix: &str| -> Result<Vec<Vec<f32>>> {
        sp.iter()
            .map(|p| r.f32(&format!("{prefix}.{}", p.name), &p.shape))
            .collect()
    };
    let (m, v) = (read("m")?, read("v")?);
    let step = r.i64("step", &[1])?[0];
    let step = u64::try_from(step)
        .with_context(|| format!("optimizer step is {step}; a step count is never negative"))?;
    Ok(OptState { m, v, step })
}

/// The optimizer state alone as safetensors bytes (deterministic).
pub fn opt_to_safetensors(cfg: &GptConfig, s: &OptState) -> Result<Vec<u8>> {
    st::write(&opt_entries(cfg, s)?)
}

/// Reads an optimizer state for `cfg`, checking every name, dtype and shape.
pub fn opt_from_safetensors(cfg: &GptConfig, bytes: &[u8]) -> Result<OptState> {
    cfg.check()?;
    let r = st::Reader::new(bytes)?;
    r.expect_names(&opt_names(cfg), "optimizer state file")?;
    opt_from_reader(cfg, &r).context("reading the optimizer state")
}

/// A training checkpoint: the weights (Hugging Face names and layouts) plus the optimizer
/// tensors, in one deterministic safetensors buffer.
pub fn checkpoint_to_safetensors(w: &Weights, s: &OptState) -> Result<Vec<u8>> {
    let mut e = w.hf_entries()?;
    e.extend(opt_entries(&w.cfg, s)?);
    st::write(&e)
}

/// Reads a checkpoint written by [`checkpoint_to_safetensors`] for `cfg`.
pub fn checkpoint_from_safetensors(cfg: &GptConfig, bytes: &[u8]) -> Result<(Weights, OptState)> {
    cfg.check()?;
    let r = st::Reader::new(bytes)?;
    let mut names: Vec<String> = specs(cfg).into_iter().map(|s| s.name).collect();
    names.extend(opt_names(cfg));
    r.expect_names(&names, "training checkpoint")?;
    let w = Weights::from_reader(cfg, &r)?;
    let s = opt_from_reader(cfg, &r).context("reading the checkpoint's optimizer state")?;
    Ok((w, s))
}
