//! The global gradient norm with its clip factor, and AdamW, on the CPU. The norm is a fixed-
//! order reduction: squares summed (f64) per fixed chunk of each tensor in parallel, the partial
//! sums then added in tensor and chunk order, whatever the number of threads.

use super::super::CpuTensor;
use super::super::optim::{AdamW, REDUCE_CHUNK, check_adamw, check_clip, reference as r};
use super::{CHUNK, input, output};
use anyhow::Result;
use rayon::prelude::*;

/// clip[0] = ‖g‖ over all the tensors, clip[1] = max_norm/‖g‖ when above max_norm, else 1.
pub fn grad_norm_clip(grads: &[&CpuTensor], clip: &CpuTensor, max_norm: f32) -> Result<()> {
    check_clip(&clip.shape)?;
    let data = grads
        .iter()
        .map(|g| input(g, "grad_norm_clip gradient"))
        .collect::<Result<Vec<_>>>()?;
    let chunks: Vec<&[f32]> = data.iter().flat_map(|g| g.chunks(REDUCE_CHUNK)).collect();
    let partials: Vec<f64> = chunks
        .par_iter()
        .map(|c| c.iter().map(|&v| v as f64 * v as f64).sum::<f64>())
        .collect();
    let norm = partials.iter().sum::<f64>().sqrt();
    let mut out = output(clip, "grad_norm_clip clip")?;
    out[0] = norm as f32;
    out[1] = r::clip_factor(norm, max_norm as f64) as f32;
    Ok(())
}

/// One AdamW step for one parameter tensor (weight decay only on tensors of ≥ 2 dimensions;
/// with `clip`, g is multiplied by clip[1] first).
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
    let scale = match clip {
        Some(c) => input(c, "adamw clip")?[1],
        None => 1.0,
    };
    let g = input(grad, "adamw grad")?;
    let mut p = output(param, "adamw param")?;
    let mut md = output(m, "adamw m")?;
    let mut vd = output(v, "adamw v")?;
    let (g, p, md, vd) = (&*g, &mut *p, &mut *md, &mut *vd);
    let (bc1, bc2) = h.corrections(step);
    let (bc1, bc2) = (bc1 as f32, bc2 as f32);
    let (b1, b2, lr, eps) = (h.beta1, h.beta2, h.lr, h.eps);
    let wd = h.decay_for(&param.shape);
    p.par_chunks_mut(CHUNK)
        .zip(md.par_chunks_mut(CHUNK))
        .zip(vd.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|((ps, ms), (vs, gs))| {
            for (((p, m), v), &g) in ps.iter_mut().zip(ms).zip(vs).zip(gs) {
                let g = g * scale;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let mh = *m / bc1;
                let vh = *v / bc2;
                *p -= lr * (mh / (vh.sqrt() + eps) + wd * *p);
            }
        });
    Ok(())
}
