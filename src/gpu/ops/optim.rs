//! Fixed-order reductions (sum, global gradient norm and clip factor) and the AdamW update
//! (`shaders/optim.wgsl`).

use super::{distinct, f32t, numel, same, u};
use crate::gpu::pipelines::kernel;
use crate::gpu::{Batch, Kernel, Tensor};
use anyhow::{Result, ensure};

/// The uniform block (`Params` in `shaders/optim.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct OptimParams {
    /// Elements (chunk kernels, adamw) or partial sums (final kernels).
    pub n: u32,
    pub chunk: u32,
    pub slot: u32,
    /// sum_final: the factor; norm_clip_final: the max norm.
    pub scale: f32,
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub wd: f32,
    pub bc1: f32,
    pub bc2: f32,
    pub _pad: u32,
}

pub const SUM_CHUNKS: Kernel = kernel!("optim", "sum_chunks", OptimParams);
pub const SUM_SQ_CHUNKS: Kernel = kernel!("optim", "sum_sq_chunks", OptimParams);
pub const SUM_FINAL: Kernel = kernel!("optim", "sum_final", OptimParams);
pub const NORM_CLIP_FINAL: Kernel = kernel!("optim", "norm_clip_final", OptimParams);
pub const ADAMW: Kernel = kernel!("optim", "adamw", OptimParams);
pub const ADAMW_CLIP: Kernel = kernel!("optim", "adamw_clip", OptimParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[
    &SUM_CHUNKS,
    &SUM_SQ_CHUNKS,
    &SUM_FINAL,
    &NORM_CLIP_FINAL,
    &ADAMW,
    &ADAMW_CLIP,
];

/// Elements per partial sum in the fixed-order reductions.
pub const REDUCE_CHUNK: usize = 4096;

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Applied only to tensors with 2 or more dimensions.
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

impl AdamW {
    /// Bias corrections (1 − β1^t, 1 − β2^t) for step t ≥ 1.
    pub fn corrections(&self, step: u64) -> (f64, f64) {
        let t = step.max(1) as i32;
        (
            1.0 - (self.beta1 as f64).powi(t),
            1.0 - (self.beta2 as f64).powi(t),
        )
    }

    /// The weight decay for a tensor of this shape (none for 1-D tensors).
    pub fn decay_for(&self, shape: &[usize]) -> f32 {
        if shape.len() >= 2 {
            self.weight_decay
        } else {
            0.0
        }
    }
}

/// AdamW on one tensor: param, grad, m, v of one size; clip holds [norm, factor].
pub fn check_adamw(
    step: u64,
    param: &[usize],
    grad: &[usize],
    m: &[usize],
    v: &[usize],
    clip: Option<&[usize]>,
) -> Result<()> {
    ensure!(step >= 1, "adamw: steps count from 1");
    same(param, grad, "adamw param/grad")?;
    same(param, m, "adamw param/m")?;
    same(param, v, "adamw param/v")?;
    if let Some(c) = clip {
        // The clip factor is read from element 1 (element 0: the norm).
        ensure!(
            numel(c) >= 2,
            "adamw: clip {c:?} must hold [norm, factor] as written by the clip kernel"
        );
    }
    Ok(())
}

/// The global norm's output: clip [≥ 2].
pub fn check_clip(clip: &[usize]) -> Result<()> {
    ensure!(numel(clip) >= 2, "grad_norm_clip: clip needs 2 elements");
    Ok(())
}

/// out[slot] = scale · Σ x (fixed order: chunk partial sums, then their sum). `partials` needs
/// at least `ceil(len/REDUCE_CHUNK)` elements.
pub fn sum(
    b: &mut Batch,
    x: &Tensor,
    partials: &Tensor,
    out: &Tensor,
    slot: usize,
    scale: f32,
) -> Result<()> {
    let n = x.len();
    let parts = n.div_ceil(REDUCE_CHUNK).max(1);
    ensure!(
        partials.len() >= parts,
        "sum: partials has {} slots, needs {parts}",
        partials.len()
    );
    ensure!(
        slot < out.len(),
        "sum: slot {slot} outside output {:?}",
        out.shape
    );
    distinct(&[x, partials, out], "sum")?;
    if n == 0 {
        b.zero(partials);
    }
    let p = OptimParams {
        n: u(n),
        chunk: u(REDUCE_CHUNK),
        ..Default::default()
    };
    b.dispatch(&SUM_CHUNKS, &p, &[("x", x), ("out", partials)], parts)?;
    let p = OptimParams {
        n: u(parts),
        slot: u(slot),
        scale,
        ..Default::default()
    };
    b.dispatch(&SUM_FINAL, &p, &[("partials", partials), ("out", out)], 1)
}

/// Slots of partial sums of squares a set of gradient tensors needs for [`grad_norm_clip`].
pub fn norm_slots(grads: &[&Tensor]) -> usize {
    grads
        .iter()
        .map(|g| g.len().div_ceil(REDUCE_CHUNK))
        .sum::<usize>()
        .max(1)
}

/// Global gradient norm and clip factor: clip[0] = ‖g‖ = √(Σ over tensors, in the given order,
/// of fixed-chunk partial sums of squares), clip[1] = max_norm/‖g‖ if above max_norm, else 1.
pub fn grad_norm_clip(
    b: &mut Batch,
    grads: &[&Tensor],
    partials: &Tensor,
    clip: &Tensor,
    max_norm: f32,
) -> Result<()> {
    let slots = norm_slots(grads);
    ensure!(
        partials.len() >= slots,
        "grad_norm_clip: partials has {} slots, needs {slots}",
        partials.len()
    );
    check_clip(&clip.shape)?;
    b.zero(partials);
    let mut slot = 0;
    for g in grads {
        let n = g.len();
        let parts = n.div_ceil(REDUCE_CHUNK);
        let p = OptimParams {
            n: u(n),
            chunk: u(REDUCE_CHUNK),
            slot: u(slot),
            ..Default::default()
        };
        b.dispatch(&SUM_SQ_CHUNKS, &p, &[("x", g), ("out", partials)], parts)?;
        slot += parts;
    }
    let p = OptimParams {
        n: u(slots),
        scale: max_norm,
        ..Default::default()
    };
    b.dispatch(
        &NORM_CLIP_FINAL,
        &p,
        &[("partials", partials), ("out", clip)],
        1,
    )
}

/// `adamw_many`'s four lists hold one entry per parameter tensor.
pub fn check_many(params: usize, grads: usize, m: usize, v: usize) -> Result<()> {
    ensure!(
        grads == params && m == params && v == params,
        "adamw_many: {params} parameters, {grads} gradients, {m} and {v} moments"
    );
    Ok(())
}

/// One AdamW step for one parameter tensor. Weight decay applies only to tensors with ≥ 2
/// dimensions. With `clip` (from [`grad_norm_clip`]), g is multiplied by clip[1] first.
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    b: &mut Batch,
    h: &AdamW,
    step: u64,
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    clip: Option<&Tensor>,
) -> Result<()> {
    let wd = h.decay_for(&param.shape);
    adamw_decay(b, h, step, param, grad, m, v, clip, wd)
}

/// [`adamw`] with the weight decay given (a span of several tensors has no shape to take it
/// from).
#[allow(clippy::too_many_arguments)]
pub fn adamw_decay(
    b: &mut Batch,
    h: &AdamW,
    step: u64,
    param: &Tensor,
    grad: &Tensor,
    m: &Tensor,
    v: &Tensor,
    clip: Option<&Tensor>,
    wd: f32,
) -> Result<()> {
    check_adamw(
        step,
        &param.shape,
        &grad.shape,
        &m.shape,
        &v.shape,
        clip.map(|c| &c.shape[..]),
    )?;
    distinct(&[param, grad, m, v], "adamw")?;
    for (t, what) in [
        (param, "adamw param"),
        (grad, "adamw grad"),
        (m, "adamw m"),
        (v, "adamw v"),
    ] {
        f32t(t, what)?;
    }
    if let Some(c) = clip {
        f32t(c, "adamw clip")?;
    }
    let (bc1, bc2) = h.corrections(step);
    let p = OptimParams {
        n: u(param.len()),
        lr: h.lr,
        beta1: h.beta1,
        beta2: h.beta2,
        eps: h.eps,
        wd,
        bc1: bc1 as f32,
        bc2: bc2 as f32,
        ..Default::default()
    };
    let state = [("x", grad), ("out", param), ("m", m), ("v", v)];
    match clip {
        Some(c) => {
            let mut bufs = state.to_vec();
            bufs.push(("clip", c));
            b.dispatch(&ADAMW_CLIP, &p, &bufs, param.len())
        }
        None => b.dispatch(&ADAMW, &p, &state, param.len()),
    }
}

pub mod cpu {
    use super::super::CpuTensor;
    use super::{AdamW, check_adamw, check_clip, reference as r};
    use anyhow::Result;

    pub fn grad_norm_clip(grads: &[&CpuTensor], clip: &CpuTensor, max_norm: f32) -> Result<()> {
        check_clip(&clip.shape)?;
        let g: Vec<Vec<f64>> = grads.iter().map(|g| g.get()).collect();
        let norm = r::global_norm(&g.iter().map(|v| &v[..]).collect::<Vec<_>>());
        clip.put(&[norm, r::clip_factor(norm, max_norm as f64)], false);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn adamw(
        h: &AdamW,
        step: u64,
        param: &CpuTensor,
        grad: &CpuTensor,
        m: &CpuTensor,
        v: &CpuTensor,
        clip: Option<&CpuTensor>,
    ) -> Result<()> {
        check_adamw(
            step,
            &param.shape,
            &grad.shape,
            &m.shape,
            &v.shape,
            clip.map(|c| &c.shape[..]),
        )?;
        let (mut p, mut mm, mut vv) = (param.get(), m.get(), v.get());
        let wd = h.decay_for(&param.shape) as f64;
        let scale = clip.map_or(1.0, |c| c.data.borrow()[1] as f64);
        r::adamw(&mut p, &grad.get(), &mut mm, &mut vv, h, wd, step, scale);
        param.put(&p, false);
        m.put(&mm, false);
        v.put(&vv, false);
        Ok(())
    }
}

pub mod reference {
    use super::AdamW;

    /// √(Σ g²) over all the tensors.
    pub fn global_norm(grads: &[&[f64]]) -> f64 {
        grads
            .iter()
            .flat_map(|g| g.iter())
            .map(|v| v * v)
            .sum::<f64>()
            .sqrt()
    }

    /// Clip factor for a global norm: max_norm / norm when norm > max_norm, else 1.
    pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
        if norm > max_norm {
            max_norm / norm
        } else {
            1.0
        }
    }

    /// One AdamW step in place; `grad_scale` multiplies g (the clip factor); `wd` is the weight
    /// decay to use for this tensor (0 for 1-D tensors).
    #[allow(clippy::too_many_arguments)]
    pub fn adamw(
        p: &mut [f64],
        g: &[f64],
        m: &mut [f64],
        v: &mut [f64],
        h: &AdamW,
        wd: f64,
        step: u64,
        grad_scale: f64,
    ) {
        let (bc1, bc2) = h.corrections(step);
        let (b1, b2) = (h.beta1 as f64, h.beta2 as f64);
        for i in 0..p.len() {
            let gi = g[i] * grad_scale;
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let mh = m[i] / bc1;
            let vh = v[i] / bc2;
            p[i] -= h.lr as f64 * (mh / (vh.sqrt() + h.eps as f64) + wd * p[i]);
        }
    }
}
