//! Fused softmax cross-entropy per row on the CPU, with or without the logits gradient: rows in
//! parallel.

use super::super::CpuTensor;
use super::super::crossentropy::check;
use super::math::{exp, max, widest};
use super::{input, output, sum};
use anyhow::{Result, ensure};
use rayon::prelude::*;

/// losses[R] = −log softmax(logits[R,V])[target]; with `dlogits`, (softmax − onehot)·grad_scale.
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
    let tg = &targets.ids;
    ensure!(
        tg.len() == rows && tg.iter().all(|&t| (t as usize) < v),
        "crossentropy: a target is outside the vocabulary of {v}"
    );
    let l = input(logits, "crossentropy logits")?;
    let mut ls = output(losses, "crossentropy losses")?;
    let (l, ls) = (&*l, &mut *ls);
    if v == 0 {
        return Ok(());
    }
    match dlogits {
        Some(d) => {
            let mut dl = output(d, "crossentropy dlogits")?;
            let dl = &mut *dl;
            ls.par_iter_mut()
                .zip(dl.par_chunks_mut(v))
                .enumerate()
                .for_each(|(r, (loss, drow))| {
                    *loss = loss_grad(drow, &l[r * v..][..v], tg[r] as usize, grad_scale);
                });
        }
        None => {
            ls.par_iter_mut().enumerate().for_each(|(r, loss)| {
                *loss = loss_only(&l[r * v..][..v], tg[r] as usize);
            });
        }
    }
    Ok(())
}

widest! {
    /// One row's loss, and its gradient (softmax − onehot)·grad_scale into `drow`.
    fn loss_grad(drow: &mut [f32], row: &[f32], tgt: usize, grad_scale: f32) -> f32 {
        let mx = max(row);
        for (o, &x) in drow.iter_mut().zip(row) {
            *o = exp(x - mx);
        }
        let s = sum(drow);
        let inv = 1.0 / s;
        for o in drow.iter_mut() {
            *o = *o * inv * grad_scale;
        }
        drow[tgt] = (exp(row[tgt] - mx) * inv - 1.0) * grad_scale;
        s.ln() - (row[tgt] - mx)
    }
}

widest! {
    /// One row's loss.
    fn loss_only(row: &[f32], tgt: usize) -> f32 {
        let mx = max(row);
        let mut e = [0f32; 8];
        let c = row.chunks_exact(8);
        let tail = c.remainder();
        for ch in c {
            for k in 0..8 {
                e[k] += exp(ch[k] - mx);
            }
        }
        let mut s = sum(&e);
        for &x in tail {
            s += exp(x - mx);
        }
        s.ln() - (row[tgt] - mx)
    }
}
