//! Causal multi-head self-attention on the CPU, forward and backward: one task per (batch row,
//! head), its products through sgemm on strided views of qkv (the head's columns), the softmax
//! rows in between; and the KV-cache path (decode, append).

use super::super::CpuTensor;
use super::super::attention::{AttnShape, check, check_bwd, check_decode};
use super::math::widest;
use super::matmul::{gemm, gemm_into};
use super::{Disjoint, dot, input, math, output, sum};
use anyhow::Result;
use rayon::prelude::*;

/// Query rows per causal block: a block of queries needs only the keys up to its last row, so
/// the products skip most of the masked half (5/8 of the full work at T = 128).
const BLOCK: usize = 32;

/// The causal blocks of T rows: (first row, one past the last).
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t)
        .step_by(BLOCK)
        .map(move |r0| (r0, (r0 + BLOCK).min(t)))
}

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
        for (r0, r1) in blocks(t) {
            // S = scale·Q·Kᵀ for these queries and the keys up to the last of them, then each
            // row's softmax over the keys up to its position (the rest of the row set to 0).
            gemm(
                (r1 - r0, r1, hs),
                scale,
                &q[qb + r0 * c3..],
                (c3, 1),
                &q[qb + c..],
                (1, c3),
                0.0,
                &mut pr[r0 * t..],
                (t, 1),
            );
            for ti in r0..r1 {
                softmax_causal(&mut pr[ti * t..(ti + 1) * t], ti);
            }
            // out_h = P·V, into the head's columns of out.
            // SAFETY: rows bi·T.., columns h·hs..(h+1)·hs of out belong to this (bi, h) alone.
            unsafe {
                gemm_into(
                    (r1 - r0, hs, r1),
                    1.0,
                    &pr[r0 * t..],
                    (t, 1),
                    &q[qb + 2 * c..],
                    (c3, 1),
                    0.0,
                    od,
                    (bi * t + r0) * c + h * hs,
                    (c, 1),
                )
            };
        }
    });
    Ok(())
}

widest! {
    /// In place: row[..=ti] ← softmax(row[..=ti]), row[ti+1..] ← 0.
    fn softmax_causal(row: &mut [f32], ti: usize) {
        let (live, dead) = row.split_at_mut(ti + 1);
        let mx = math::max(live);
        for v in live.iter_mut() {
            *v = math::exp(*v - mx);
        }
        let inv = 1.0 / sum(live);
        for v in live.iter_mut() {
            *v *= inv;
        }
        dead.fill(0.0);
    }
}

widest! {
    /// In place: dP's row ti becomes dS = P ⊙ (dP − Σ dP ⊙ P) over the keys up to ti, 0 after.
    fn softmax_grad_causal(row: &mut [f32], prow: &[f32], ti: usize) {
        let (live, dead) = row.split_at_mut(ti + 1);
        let rowdot = dot(live, &prow[..=ti]);
        for (v, &pv) in live.iter_mut().zip(prow) {
            *v = pv * (*v - rowdot);
        }
        dead.fill(0.0);
    }
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
            for (r0, r1) in blocks(t) {
                // Queries r0..r1: dP = dO·Vᵀ over their keys, dS in place, dQ = scale·dS·K.
                gemm(
                    (r1 - r0, r1, hs),
                    1.0,
                    &dd[ob + r0 * c..],
                    (c, 1),
                    &q[qb + 2 * c..],
                    (1, c3),
                    0.0,
                    &mut dsr[r0 * t..],
                    (t, 1),
                );
                for ti in r0..r1 {
                    softmax_grad_causal(&mut dsr[ti * t..(ti + 1) * t], &pr[ti * t..], ti);
                }
                unsafe {
                    gemm_into(
                        (r1 - r0, hs, r1),
                        scale,
                        &dsr[r0 * t..],
                        (t, 1),
                        &q[qb + c..],
                        (c3, 1),
                        0.0,
                        dqd,
                        qb + r0 * c3,
                        (c3, 1),
                    )
                };
            }
            for (k0, k1) in blocks(t) {
                // Keys k0..k1: only queries from k0 on attend to them (P and dS are 0 above).
                // dV = Pᵀ·dO, dK = scale·dSᵀ·Q.
                unsafe {
                    gemm_into(
                        (k1 - k0, hs, t - k0),
                        1.0,
                        &pr[k0 * t + k0..],
                        (1, t),
                        &dd[ob + k0 * c..],
                        (c, 1),
                        0.0,
                        dqd,
                        qb + k0 * c3 + 2 * c,
                        (c3, 1),
                    );
                    gemm_into(
                        (k1 - k0, hs, t - k0),
                        scale,
                        &dsr[k0 * t + k0..],
                        (1, t),
                        &q[qb + k0 * c3..],
                        (c3, 1),
                        0.0,
                        dqd,
                        qb + k0 * c3 + c,
                        (c3, 1),
                    );
                }
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
    let a = d.attn();
    let (c, hs, scale) = (d.c, a.hs(), a.scale() as f32);
    let c3 = 3 * c;
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
