//! Token + position embedding, forward and backward (`shaders/embedding.wgsl`). The token
//! gradient is a deterministic gather per vocabulary row through a host-built index of the
//! positions holding each token ([`EmbeddingIndex`]), not a scatter.

use super::{distinct, f32t, numel, u};
use crate::gpu::pipelines::kernel;
use crate::gpu::{Batch, DType, Gpu, Kernel, Tensor};
use anyhow::{Result, bail, ensure};

/// The uniform block (`Params` in `shaders/embedding.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EmbeddingParams {
    pub b: u32,
    pub t: u32,
    pub c: u32,
    pub v: u32,
    /// Non-zero: accumulate into the output.
    pub acc: u32,
    /// First position (`embed_at`, the KV-cache path).
    pub pos: u32,
    pub _pad: [u32; 2],
}

pub const EMBED_FWD: Kernel = kernel!("embedding", "embed_fwd", EmbeddingParams);
pub const EMBED_BWD_WTE: Kernel = kernel!("embedding", "embed_bwd_wte", EmbeddingParams);
pub const EMBED_BWD_WPE: Kernel = kernel!("embedding", "embed_bwd_wpe", EmbeddingParams);
pub const EMBED_AT: Kernel = kernel!("embedding", "embed_at", EmbeddingParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[&EMBED_FWD, &EMBED_BWD_WTE, &EMBED_BWD_WPE, &EMBED_AT];

/// Embedding at positions pos..pos+n: tokens [n], wte [V,C], wpe [≥pos+n, C], out [n,C].
/// Returns (n, C, V).
pub fn check_at(
    tokens: &[usize],
    wte: &[usize],
    wpe: &[usize],
    out: &[usize],
    pos: usize,
) -> Result<(usize, usize, usize)> {
    let n = numel(tokens);
    ensure!(n > 0, "embedding_at: no tokens");
    ensure!(
        wte.len() == 2 && wpe.len() == 2 && wpe[1] == wte[1],
        "embedding_at: wte {wte:?} and wpe {wpe:?} must be [V, C] and [T, C]"
    );
    let (v, c) = (wte[0], wte[1]);
    ensure!(
        pos + n <= wpe[0],
        "embedding_at: positions {pos}..{} are past the {} positions of wpe (the context)",
        pos + n,
        wpe[0]
    );
    ensure!(
        numel(out) == n * c,
        "embedding_at: out {out:?} should hold [{n}, {c}]"
    );
    Ok((n, c, v))
}

/// Embedding of `n` tokens [n] at positions pos..pos+n (the KV-cache path):
/// out[i,:] = wte[tok[i]] + wpe[pos+i]. Token ids ≥ V produce NaN rows.
pub fn embedding_at(
    b: &mut Batch,
    tokens: &Tensor,
    wte: &Tensor,
    wpe: &Tensor,
    out: &Tensor,
    pos: usize,
) -> Result<()> {
    ensure!(
        tokens.dtype == DType::U32,
        "embedding_at: tokens must be u32, are {:?}",
        tokens.dtype
    );
    let (n, c, v) = check_at(&tokens.shape, &wte.shape, &wpe.shape, &out.shape, pos)?;
    for (x, what) in [
        (wte, "embedding_at wte"),
        (wpe, "embedding_at wpe"),
        (out, "embedding_at out"),
    ] {
        f32t(x, what)?;
    }
    distinct(&[tokens, wte, wpe, out], "embedding_at")?;
    let p = EmbeddingParams {
        b: 1,
        t: u(n),
        c: u(c),
        v: u(v),
        pos: u(pos),
        ..Default::default()
    };
    b.dispatch(
        &EMBED_AT,
        &p,
        &[("ids", tokens), ("ta", wte), ("tb", wpe), ("out", out)],
        n * c,
    )
}

/// Every token id is below `vocab`.
pub fn check_ids(tokens: &[u32], vocab: usize) -> Result<()> {
    if let Some(i) = tokens.iter().position(|&t| t as usize >= vocab) {
        bail!(
            "token id {} at position {i} is outside the vocabulary of {vocab}",
            tokens[i]
        );
    }
    Ok(())
}

/// Positions of each token id, for the deterministic embedding-gradient gather: the positions
/// holding token v are `positions[offsets[v]..offsets[v+1]]`, ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingIndex {
    pub vocab: usize,
    pub offsets: Vec<u32>,
    pub positions: Vec<u32>,
}

impl EmbeddingIndex {
    /// Builds the index; a token ≥ vocab is an error.
    pub fn build(tokens: &[u32], vocab: usize) -> Result<Self> {
        check_ids(tokens, vocab)?;
        let mut counts = vec![0u32; vocab + 1];
        for &t in tokens {
            counts[t as usize + 1] += 1;
        }
        for v in 0..vocab {
            counts[v + 1] += counts[v];
        }
        let mut fill = counts.clone();
        let mut positions = vec![0u32; tokens.len()];
        for (i, &t) in tokens.iter().enumerate() {
            positions[fill[t as usize] as usize] = i as u32;
            fill[t as usize] += 1;
        }
        Ok(Self {
            vocab,
            offsets: counts,
            positions,
        })
    }
}

/// Uploaded [`EmbeddingIndex`].
pub struct EmbeddingIndexGpu {
    pub vocab: usize,
    pub offsets: Tensor,
    pub positions: Tensor,
}

impl EmbeddingIndexGpu {
    pub fn upload(gpu: &Gpu, idx: &EmbeddingIndex) -> Result<Self> {
        Ok(Self {
            vocab: idx.vocab,
            offsets: gpu.upload_u32(&idx.offsets, &[idx.offsets.len()])?,
            positions: gpu.upload_u32(&idx.positions, &[idx.positions.len()])?,
        })
    }
}

/// Forward: tokens [B,T], wte [V,C], wpe [≥T,C], out [B,T,C]. Returns (B, T, C, V).
pub fn check(
    tokens: &[usize],
    wte: &[usize],
    wpe: &[usize],
    out: &[usize],
) -> Result<(usize, usize, usize, usize)> {
    ensure!(
        tokens.len() == 2,
        "embedding: tokens must be [B, T], are {tokens:?}"
    );
    let (bb, t) = (tokens[0], tokens[1]);
    ensure!(
        wte.len() == 2 && wpe.len() == 2,
        "embedding: wte and wpe must be 2-D"
    );
    let (v, c) = (wte[0], wte[1]);
    ensure!(
        wpe[1] == c && wpe[0] >= t,
        "embedding: wpe {wpe:?} must be [>= {t}, {c}]"
    );
    ensure!(
        numel(out) == bb * t * c,
        "embedding: out {out:?} should hold [{bb}, {t}, {c}]"
    );
    Ok((bb, t, c, v))
}

/// Backward: dx [B,T,C], an index over B·T positions and V tokens, dwte [V,C], dwpe [≥T,C].
/// Returns (B, T, C).
pub fn check_bwd(
    positions: usize,
    vocab: usize,
    dx: &[usize],
    dwte: &[usize],
    dwpe: &[usize],
) -> Result<(usize, usize, usize)> {
    ensure!(
        dx.len() == 3,
        "embedding_bwd: dx must be [B, T, C], is {dx:?}"
    );
    let (bb, t, c) = (dx[0], dx[1], dx[2]);
    ensure!(
        positions == bb * t,
        "embedding_bwd: the index covers {positions} positions, dx has {}",
        bb * t
    );
    ensure!(
        numel(dwte) == vocab * c,
        "embedding_bwd: dwte {dwte:?} should hold [{vocab}, {c}]"
    );
    ensure!(
        dwpe.len() == 2 && dwpe[1] == c && dwpe[0] >= t,
        "embedding_bwd: dwpe {dwpe:?} must be [>= {t}, {c}]"
    );
    Ok((bb, t, c))
}

/// Embedding forward: out[B,T,C] = wte[tok] + wpe[t]. Token ids ≥ V produce NaN rows.
pub fn embedding(
    b: &mut Batch,
    tokens: &Tensor,
    wte: &Tensor,
    wpe: &Tensor,
    out: &Tensor,
) -> Result<()> {
    ensure!(
        tokens.dtype == DType::U32 && tokens.shape.len() == 2,
        "embedding: tokens must be u32 [B, T], are {:?} {:?}",
        tokens.dtype,
        tokens.shape
    );
    let (bb, t, c, v) = check(&tokens.shape, &wte.shape, &wpe.shape, &out.shape)?;
    for (x, what) in [
        (wte, "embedding wte"),
        (wpe, "embedding wpe"),
        (out, "embedding out"),
    ] {
        f32t(x, what)?;
    }
    distinct(&[tokens, wte, wpe, out], "embedding")?;
    let p = EmbeddingParams {
        b: u(bb),
        t: u(t),
        c: u(c),
        v: u(v),
        ..Default::default()
    };
    b.dispatch(
        &EMBED_FWD,
        &p,
        &[("ids", tokens), ("ta", wte), ("tb", wpe), ("out", out)],
        bb * t * c,
    )
}

/// Embedding backward: dwte[V,C] (+)= gather of dx rows per token (via the index),
/// dwpe[T',C] (+)= Σ_b dx[b,t] for t < T (rows t ≥ T of dwpe untouched).
pub fn embedding_bwd(
    b: &mut Batch,
    idx: &EmbeddingIndexGpu,
    dx: &Tensor,
    dwte: &Tensor,
    dwpe: &Tensor,
    acc: bool,
) -> Result<()> {
    let (bb, t, c) = check_bwd(
        idx.positions.len(),
        idx.vocab,
        &dx.shape,
        &dwte.shape,
        &dwpe.shape,
    )?;
    distinct(&[dx, dwte, dwpe], "embedding_bwd")?;
    let p = EmbeddingParams {
        b: u(bb),
        t: u(t),
        c: u(c),
        v: u(idx.vocab),
        acc: acc as u32,
        ..Default::default()
    };
    b.dispatch(
        &EMBED_BWD_WTE,
        &p,
        &[
            ("ids", &idx.offsets),
            ("positions", &idx.positions),
            ("ta", dx),
            ("out", dwte),
        ],
        idx.vocab * c,
    )?;
    b.dispatch(&EMBED_BWD_WPE, &p, &[("ta", dx), ("out", dwpe)], t * c)
}

pub mod cpu {
    use super::super::CpuTensor;
    use super::{EmbeddingIndex, check, check_at, check_bwd, reference as r};
    use anyhow::Result;

    pub fn embedding_at(
        tokens: &CpuTensor,
        wte: &CpuTensor,
        wpe: &CpuTensor,
        out: &CpuTensor,
        pos: usize,
    ) -> Result<()> {
        let (_, c, v) = check_at(&tokens.shape, &wte.shape, &wpe.shape, &out.shape, pos)?;
        EmbeddingIndex::build(&tokens.ids, v)?;
        out.put(
            &r::embedding_at(&tokens.ids, &wte.get(), &wpe.get(), pos, c),
            false,
        );
        Ok(())
    }

    pub fn embedding(
        tokens: &CpuTensor,
        wte: &CpuTensor,
        wpe: &CpuTensor,
        out: &CpuTensor,
    ) -> Result<()> {
        let (b, t, c, v) = check(&tokens.shape, &wte.shape, &wpe.shape, &out.shape)?;
        EmbeddingIndex::build(&tokens.ids, v)?;
        out.put(
            &r::embedding_fwd(&tokens.ids, &wte.get(), &wpe.get(), b, t, c),
            false,
        );
        Ok(())
    }

    /// `idx` is the token list itself (what `CpuOps::embedding_index` returns).
    pub fn embedding_bwd(
        idx: &[u32],
        dx: &CpuTensor,
        dwte: &CpuTensor,
        dwpe: &CpuTensor,
        acc: bool,
    ) -> Result<()> {
        let vocab = dwte.shape.first().copied().unwrap_or(0);
        let (b, t, c) = check_bwd(idx.len(), vocab, &dx.shape, &dwte.shape, &dwpe.shape)?;
        let (a, p) = r::embedding_bwd(idx, &dx.get(), vocab, b, t, c);
        dwte.put(&a, acc);
        dwpe.put(&p, acc);
        Ok(())
    }
}

pub mod reference {
    /// out[i,:] = wte[tok[i],:] + wpe[pos+i,:] (the KV-cache path's embedding).
    pub fn embedding_at(
        tokens: &[u32],
        wte: &[f64],
        wpe: &[f64],
        pos: usize,
        c: usize,
    ) -> Vec<f64> {
        let mut out = vec![0.0; tokens.len() * c];
        for (i, &tok) in tokens.iter().enumerate() {
            for ci in 0..c {
                out[i * c + ci] = wte[tok as usize * c + ci] + wpe[(pos + i) * c + ci];
            }
        }
        out
    }

    /// out[b,t,:] = wte[tok[b,t],:] + wpe[t,:]. Panics on a token ≥ V (callers validate).
    pub fn embedding_fwd(
        tokens: &[u32],
        wte: &[f64],
        wpe: &[f64],
        b: usize,
        t: usize,
        c: usize,
    ) -> Vec<f64> {
        let mut out = vec![0.0; b * t * c];
        for bt in 0..b * t {
            let tok = tokens[bt] as usize;
            let ti = bt % t;
            for ci in 0..c {
                out[bt * c + ci] = wte[tok * c + ci] + wpe[ti * c + ci];
            }
        }
        out
    }

    /// Embedding gradients: (dwte [V,C], dwpe [T,C]).
    pub fn embedding_bwd(
        tokens: &[u32],
        dx: &[f64],
        v: usize,
        b: usize,
        t: usize,
        c: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let mut dwte = vec![0.0; v * c];
        let mut dwpe = vec![0.0; t * c];
        for bt in 0..b * t {
            let tok = tokens[bt] as usize;
            let ti = bt % t;
            for ci in 0..c {
                dwte[tok * c + ci] += dx[bt * c + ci];
                dwpe[ti * c + ci] += dx[bt * c + ci];
            }
        }
        (dwte, dwpe)
    }
}
