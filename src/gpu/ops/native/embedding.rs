//! Token + position embedding on the CPU, forward and backward. The token gradient is a gather
//! per vocabulary row through [`EmbeddingIndex`] (positions in ascending order), as on the GPU:
//! rows in parallel, each summed in a fixed order.

use super::super::CpuTensor;
use super::super::embedding::{EmbeddingIndex, check, check_at, check_bwd, check_ids};
use super::{input, output};
use anyhow::{Result, anyhow};
use rayon::prelude::*;

/// out[b,t,:] = wte[tok[b,t],:] + wpe[t,:].
pub fn embedding(
    tokens: &CpuTensor,
    wte: &CpuTensor,
    wpe: &CpuTensor,
    out: &CpuTensor,
) -> Result<()> {
    let (_, t, c, v) = check(&tokens.shape, &wte.shape, &wpe.shape, &out.shape)?;
    check_ids(&tokens.ids, v).map_err(|e| anyhow!("embedding: {e}"))?;
    rows(&tokens.ids, wte, wpe, out, c, |i| i % t.max(1))
}

/// out[i,:] = wte[tok[i],:] + wpe[pos+i,:] (the KV-cache path).
pub fn embedding_at(
    tokens: &CpuTensor,
    wte: &CpuTensor,
    wpe: &CpuTensor,
    out: &CpuTensor,
    pos: usize,
) -> Result<()> {
    let (_, c, v) = check_at(&tokens.shape, &wte.shape, &wpe.shape, &out.shape, pos)?;
    check_ids(&tokens.ids, v).map_err(|e| anyhow!("embedding_at: {e}"))?;
    rows(&tokens.ids, wte, wpe, out, c, |i| pos + i)
}

/// out row i = wte[ids[i]] + wpe[position(i)].
fn rows(
    ids: &[u32],
    wte: &CpuTensor,
    wpe: &CpuTensor,
    out: &CpuTensor,
    c: usize,
    position: impl Fn(usize) -> usize + Sync,
) -> Result<()> {
    let (te, pe) = (input(wte, "embedding wte")?, input(wpe, "embedding wpe")?);
    let mut o = output(out, "embedding out")?;
    let (te, pe, o) = (&*te, &*pe, &mut *o);
    if c == 0 {
        return Ok(());
    }
    o.par_chunks_mut(c).enumerate().for_each(|(i, row)| {
        let tok = ids[i] as usize;
        let (a, b) = (&te[tok * c..][..c], &pe[position(i) * c..][..c]);
        for ((o, &x), &y) in row.iter_mut().zip(a).zip(b) {
            *o = x + y;
        }
    });
    Ok(())
}

/// Embedding backward: dwte[V,C] (+)= Σ of the dx rows holding each token (ascending
/// positions), dwpe[T',C] (+)= Σ_b dx[b,t] for t < T (rows t ≥ T untouched).
pub fn embedding_bwd(
    idx: &EmbeddingIndex,
    dx: &CpuTensor,
    dwte: &CpuTensor,
    dwpe: &CpuTensor,
    acc: bool,
) -> Result<()> {
    let (b, t, c) = check_bwd(
        idx.positions.len(),
        idx.vocab,
        &dx.shape,
        &dwte.shape,
        &dwpe.shape,
    )?;
    let g = input(dx, "embedding_bwd dx")?;
    let mut te = output(dwte, "embedding_bwd dwte")?;
    let mut pe = output(dwpe, "embedding_bwd dwpe")?;
    let (g, te, pe) = (&*g, &mut *te, &mut *pe);
    if c == 0 {
        return Ok(());
    }
    te.par_chunks_mut(c).enumerate().for_each(|(v, row)| {
        let at = &idx.positions[idx.offsets[v] as usize..idx.offsets[v + 1] as usize];
        gather(row, acc, at.iter().map(|&p| &g[p as usize * c..][..c]));
    });
    pe[..t * c]
        .par_chunks_mut(c)
        .enumerate()
        .for_each(|(ti, row)| {
            gather(row, acc, (0..b).map(|bi| &g[(bi * t + ti) * c..][..c]));
        });
    Ok(())
}

/// Columns summed at once by [`gather`].
const COLS: usize = 64;

/// out (+)= Σ of the rows, in their order (the sum first, then onto out when accumulating).
fn gather<'a>(out: &mut [f32], acc: bool, rows: impl Iterator<Item = &'a [f32]> + Clone) {
    for (ci, o) in out.chunks_mut(COLS).enumerate() {
        let j0 = ci * COLS;
        let mut s = [0f32; COLS];
        for r in rows.clone() {
            for (a, &x) in s.iter_mut().zip(&r[j0..j0 + o.len()]) {
                *a += x;
            }
        }
        for (o, &v) in o.iter_mut().zip(&s) {
            *o = if acc { *o + v } else { v };
        }
    }
}
