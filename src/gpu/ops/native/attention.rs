//! Causal multi-head self-attention on the CPU, forward and backward: one task per (batch row,
//! head), its products through sgemm on strided views of qkv (the head's columns), the softmax
//! rows in between; and the KV-cache path (decode, append).

use super::super::CpuTensor;
use super::super::attention::{AttnShape, check, check_bwd, check_decode};
use super::matmul::{gemm, gemm_into};
use super::{Disjoint, dot, input, output, sum};
use anyhow::Result;
use rayon::prelude::*;

/// Causal attention forward: qkv [B,T,3C] → out [B,T,C], probabilities P [B,NH,T,T] (zero above
/// the diagonal).
pub fn attention(s: AttnShape, qkv: &CpuTensor, out: &CpuTensor, p: &CpuTensor) -> Result<()> {
    check(s, &qkv.shape, &out.shape, &p.shape)?;
    let q = input(qkv, "attention qkv")?;
    let mut o = output(out, "attention out")?;
    let mut pd = output(p, "attention probabilities")?;
    let (q, pd) = (&*q, &mut *pd);
    let AttnShape { t, c, nh, .. } = s;
    if s.b * t * c == 0 {
        return Ok(());
    }
    let (hs, c3, scale) = (s.hs(), 3 * c, s.scale() as f32);
    let od = Disjoint::new(&mut o);
    pd.par_chunks_mut(t * t).enumerate().for_each(|(bh, pr)| {
        let (bi, h) = (bh / nh, bh % nh);
        let qb = bi * t * c3 + h * hs;
        // S = scale·Q·Kᵀ, then each row's softmax over the keys up to its position.
        gemm(
            (t, t, hs),
            scale,
            &q[qb..],
            (c3, 1),
            &q[qb + c..],
            (1, c3),
            0.0,
            pr,
            (t, 1),
        );
        for (ti, row) in pr.chunks_mut(t).enumerate() {
            softmax_causal(row, ti);
        }
        // out_h = P·V, into the head's columns of out (no other task writes them).
        // SAFETY: rows bi·T.., columns h·hs..(h+1)·hs of out belong to this (bi, h) alone.
        unsafe {
            gemm_into(
                (t, hs, t),
                1.0,
                pr,
                (t, 1),
                &q[qb + 2 * c..],
                (c3, 1),
                0.0,
                od,
                bi * t * c + h * hs,
                (c, 1),
            )
        };
    });
    Ok(())
}

/// In place: row[..=ti] ← softmax(row[..=ti]), row[ti+1..] ← 0.
fn softmax_causal(row: &mut [f32], ti: usize) {
    let (live, dead) = row.split_at_mut(ti + 1);
    let mx = live.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in live.iter_mut() {
        *v = (*v - mx).exp();
    }
    let inv = 1.0 / sum(live);
    for v in live.iter_mut() {
        *v *= inv;
    }
    dead.fill(0.0);
}

/// Causal attention backward: dqkv [B,T,3C] (overwritten) from dout, qkv and P; `ds`
/// [B,NH,T,T] is scratch (it ends holding dS).
pub fn attention_bwd(
    s: AttnShape,
    dout: &CpuTensor,
    qkv: &CpuTensor,
    p: &CpuTensor,
    ds: &CpuTensor,
    dqkv: &CpuTensor,
) -> Result<()> {
    check_bwd(s, &dout.shape, &qkv.shape, &p.shape, &ds.shape, &dqkv.shape)?;
    let (dd, q, pd) = (
        input(dout, "attention_bwd dout")?,
        input(qkv, "attention_bwd qkv")?,
        input(p, "attention_bwd probabilities")?,
    );
    let mut dsd = output(ds, "attention_bwd dS")?;
    let mut dq = output(dqkv, "attention_bwd dqkv")?;
    let (dd, q, pd, dsd) = (&*dd, &*q, &*pd, &mut *dsd);
    let AttnShape { t, c, nh, .. } = s;
    if s.b * t * c == 0 {
        return Ok(());
    }
    let (hs, c3, scale) = (s.hs(), 3 * c, s.scale() as f32);
    let dqd = Disjoint::new(&mut dq);
    dsd.par_chunks_mut(t * t)
        .zip(pd.par_chunks(t * t))
        .enumerate()
        .for_each(|(bh, (dsr, pr))| {
            let (bi, h) = (bh / nh, bh % nh);
            let qb = bi * t * c3 + h * hs;
            let ob = bi * t * c + h * hs;
            // SAFETY (every gemm_into below): rows bi·T.., columns h·hs..(h+1)·hs of each of
            // the Q, K and V parts of dqkv belong to this (bi, h) alone.
            // dV = Pᵀ·dO.
            unsafe {
                gemm_into(
                    (t, hs, t),
                    1.0,
                    pr,
                    (1, t),
                    &dd[ob..],
                    (c, 1),
                    0.0,
                    dqd,
                    qb + 2 * c,
                    (c3, 1),
                )
            };
            // dP = dO·Vᵀ, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place.
            gemm(
                (t, t, hs),
                1.0,
                &dd[ob..],
                (c, 1),
                &q[qb + 2 * c..],
                (1, c3),
                0.0,
                dsr,
                (t, 1),
            );
            for (ti, (row, prow)) in dsr.chunks_mut(t).zip(pr.chunks(t)).enumerate() {
                let (live, dead) = row.split_at_mut(ti + 1);
                let rowdot = dot(live, &prow[..=ti]);
                for (v, &pv) in live.iter_mut().zip(prow) {
                    *v = pv * (*v - rowdot);
                }
                dead.fill(0.0);
            }
            // dQ = scale·dS·K; dK = scale·dSᵀ·Q.
            unsafe {
                gemm_into(
                    (t, hs, t),
                    scale,
                    dsr,
                    (t, 1),
                    &q[qb + c..],
                    (c3, 1),
                    0.0,
                    dqd,
                    qb,
                    (c3, 1),
                );
                gemm_into(
                    (t, hs, t),
                    scale,
                    dsr,
                    (1, t),
                    &q[qb..],
                    (c3, 1),
                    0.0,
                    dqd,
                    qb + c,
                    (c3, 1),
                );
            }
        });
    Ok(())
}

/// KV-cache attention: the rows of `out` [n,C] are the new positions pos..pos+n, each against
/// the cached qkv rows [T,3C] up to and including itself (which must hold them already).
pub fn attention_decode(nh: usize, pos: usize, cache: &CpuTensor, out: &CpuTensor) -> Result<()> {
    let d = check_decode(nh, pos, &cache.shape, &out.shape, 1, "attention_decode")?;
    let q = input(cache, "attention_decode cache")?;
    let mut o = output(out, "attention_decode out")?;
    let (q, o) = (&*q, &mut *o);
    let (c, hs) = (d.c, d.c / nh);
    let c3 = 3 * c;
    let scale = (1.0 / (hs as f64).sqrt()) as f32;
    o.par_chunks_mut(c).enumerate().for_each(|(i, orow)| {
        let qp = pos + i;
        let mut p = vec![0f32; qp + 1];
        for h in 0..nh {
            let qh = &q[qp * c3 + h * hs..][..hs];
            for (t2, v) in p.iter_mut().enumerate() {
                *v = dot(qh, &q[t2 * c3 + c + h * hs..][..hs]) * scale;
            }
            softmax_causal(&mut p, qp);
            let oh = &mut orow[h * hs..(h + 1) * hs];
            oh.fill(0.0);
            for (t2, &pv) in p.iter().enumerate() {
                let v = &q[t2 * c3 + 2 * c + h * hs..][..hs];
                for (a, &vv) in oh.iter_mut().zip(v) {
                    *a += pv * vv;
                }
            }
        }
    });
    Ok(())
}

/// Writes the qkv rows [n,3C] of positions pos..pos+n into the cache [T,3C].
pub fn kv_append(qkv: &CpuTensor, cache: &CpuTensor, pos: usize) -> Result<()> {
    let d = check_decode(1, pos, &cache.shape, &qkv.shape, 3, "kv_append")?;
    let src = input(qkv, "kv_append qkv")?;
    let mut dst = output(cache, "kv_append cache")?;
    let at = pos * 3 * d.c;
    dst[at..at + src.len()].copy_from_slice(&src);
    Ok(())
}
