//! Fused softmax cross-entropy per row, with or without the logits gradient
//! (`shaders/crossentropy.wgsl`).

use super::{distinct, f32t, numel, rows_cols, same, u};
use crate::gpu::pipelines::kernel;
use crate::gpu::{Batch, DType, Kernel, Tensor};
use anyhow::{Result, ensure};

/// The uniform block (`Params` in `shaders/crossentropy.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CrossentropyParams {
    pub rows: u32,
    pub v: u32,
    pub grad_scale: f32,
    pub _pad: u32,
}

/// Losses only.
pub const XENT: Kernel = kernel!("crossentropy", "xent", CrossentropyParams);
/// Losses and the logits gradient.
pub const XENT_GRAD: Kernel = kernel!("crossentropy", "xent_grad", CrossentropyParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[&XENT, &XENT_GRAD];

/// logits [R,V], targets [R], losses [R], dlogits like logits. Returns (R, V).
pub fn check(
    logits: &[usize],
    targets: &[usize],
    losses: &[usize],
    dlogits: Option<&[usize]>,
) -> Result<(usize, usize)> {
    let (rows, v) = rows_cols(logits);
    ensure!(
        numel(targets) == rows,
        "crossentropy: targets must have {rows} elements, are {targets:?}"
    );
    ensure!(
        numel(losses) == rows,
        "crossentropy: losses {losses:?} should have {rows} elements"
    );
    if let Some(d) = dlogits {
        same(logits, d, "crossentropy logits/dlogits")?;
    }
    Ok((rows, v))
}

/// Fused softmax cross-entropy: losses[R] per row; with `dlogits`, (softmax − onehot)·grad_scale.
pub fn crossentropy(
    b: &mut Batch,
    logits: &Tensor,
    targets: &Tensor,
    losses: &Tensor,
    dlogits: Option<&Tensor>,
    grad_scale: f32,
) -> Result<()> {
    let (rows, v) = logits.as_2d();
    ensure!(
        targets.dtype == DType::U32 && targets.len() == rows,
        "crossentropy: targets must be u32 with {rows} elements, are {:?} {:?}",
        targets.dtype,
        targets.shape
    );
    check(
        &logits.shape,
        &targets.shape,
        &losses.shape,
        dlogits.map(|t| &t.shape[..]),
    )?;
    match dlogits {
        Some(t) => distinct(&[logits, t, losses], "crossentropy")?,
        None => distinct(&[logits, losses], "crossentropy")?,
    }
    f32t(logits, "crossentropy logits")?;
    f32t(losses, "crossentropy losses")?;
    let p = CrossentropyParams {
        rows: u(rows),
        v: u(v),
        grad_scale,
        _pad: 0,
    };
    match dlogits {
        Some(dl) => b.dispatch(
            &XENT_GRAD,
            &p,
            &[
                ("logits", logits),
                ("targets", targets),
                ("losses", losses),
                ("dlogits", dl),
            ],
            rows,
        ),
        None => b.dispatch(
            &XENT,
            &p,
            &[("logits", logits), ("targets", targets), ("losses", losses)],
            rows,
        ),
    }
}

pub mod cpu {
    use super::super::CpuTensor;
    use super::{check, reference as r};
    use anyhow::{Result, ensure};

    pub fn crossentropy(
        logits: &CpuTensor,
        targets: &CpuTensor,
        losses: &CpuTensor,
        dlogits: Option<&CpuTensor>,
        grad_scale: f32,
    ) -> Result<()> {
        let (rows, v) = check(
            &logits.shape,
            &targets.shape,
            &losses.shape,
            dlogits.map(|t| &t.shape[..]),
        )?;
        ensure!(
            targets.ids.iter().all(|&t| (t as usize) < v),
            "crossentropy: a target is outside the vocabulary of {v}"
        );
        let (l, d) = r::crossentropy(&logits.get(), &targets.ids, rows, v, grad_scale as f64);
        losses.put(&l, false);
        if let Some(dl) = dlogits {
            dl.put(&d, false);
        }
        Ok(())
    }
}

pub mod reference {
    /// Softmax cross-entropy per row: (losses [rows], dlogits [rows,V] = (p − onehot)·grad_scale).
    pub fn crossentropy(
        logits: &[f64],
        targets: &[u32],
        rows: usize,
        v: usize,
        grad_scale: f64,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut losses = vec![0.0; rows];
        let mut dl = vec![0.0; rows * v];
        for r in 0..rows {
            let row = &logits[r * v..(r + 1) * v];
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = row.iter().map(|x| (x - mx).exp()).sum();
            let tgt = targets[r] as usize;
            losses[r] = sum.ln() - (row[tgt] - mx);
            for j in 0..v {
                let pj = (row[j] - mx).exp() / sum;
                dl[r * v + j] = (pj - if j == tgt { 1.0 } else { 0.0 }) * grad_scale;
            }
        }
        (losses, dl)
    }
}
