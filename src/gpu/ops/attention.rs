//! Causal multi-head self-attention with the softmax inside, forward and backward. Two kernel
//! sets compute the same thing: register-tiled products over the lower triangle with the
//! softmax around them (`shaders/attention_tile.wgsl`, [`KernelPath::Fused`]) and the first
//! release's per-row kernels (`shaders/attention.wgsl`, [`KernelPath::Release1`]); the batch's
//! [`Batch::path`] chooses. The KV-cache decode kernel lives in `attention.wgsl`.

use super::{distinct, f32t, numel, same, u};
use crate::gpu::pipelines::kernel;
use crate::gpu::{Batch, Kernel, KernelPath, Tensor};
use anyhow::{Result, ensure};

/// Shape of an attention call: batch, context, channels, heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub c: usize,
    pub nh: usize,
}

impl AttnShape {
    pub fn hs(&self) -> usize {
        self.c / self.nh
    }
    pub fn scale(&self) -> f64 {
        1.0 / (self.hs() as f64).sqrt()
    }
}

/// The uniform block (`Params` in `shaders/attention.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttentionParams {
    pub b: u32,
    pub t: u32,
    pub c: u32,
    pub nh: u32,
    pub scale: f32,
    /// The KV-cache path (`attn_decode`): first new position and number of new positions.
    pub pos: u32,
    pub n: u32,
    pub _pad: [u32; 1],
}

impl AttentionParams {
    fn new(s: AttnShape) -> Self {
        Self {
            b: u(s.b),
            t: u(s.t),
            c: u(s.c),
            nh: u(s.nh),
            scale: s.scale() as f32,
            ..Default::default()
        }
    }
}

pub const ATTN_FWD: Kernel = kernel!("attention", "attn_fwd", AttentionParams);
pub const ATTN_BWD_Q: Kernel = kernel!("attention", "attn_bwd_q", AttentionParams);
pub const ATTN_BWD_KV: Kernel = kernel!("attention", "attn_bwd_kv", AttentionParams);
pub const ATTN_DECODE: Kernel = kernel!("attention", "attn_decode", AttentionParams);

/// Rows and columns of the output block of one invocation of the tiled kernels (`TM`, `TN` in
/// `shaders/attention_tile.wgsl`).
const TILE_M: usize = 16;
const TILE_N: usize = 8;

/// The uniform block of the tiled kernels (`Params` in `shaders/attention_tile.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AttnTileParams {
    pub b: u32,
    pub t: u32,
    pub c: u32,
    pub nh: u32,
    pub scale: f32,
    pub hs: u32,
    /// Row tiles: ceil(T / 16).
    pub tm: u32,
    /// Tiles of the lower triangle of one [T,T] block (see [`AttnTileParams::new`]).
    pub ntri: u32,
}

impl AttnTileParams {
    fn new(s: AttnShape) -> Self {
        let tm = s.t.div_ceil(TILE_M);
        Self {
            b: u(s.b),
            t: u(s.t),
            c: u(s.c),
            nh: u(s.nh),
            scale: s.scale() as f32,
            hs: u(s.hs()),
            tm: u(tm),
            ntri: u(Self::triangle_tiles(s.t)),
        }
    }

    /// 16x8 tiles of a [T,T] block holding an entry t2 <= t: row tile r < last has 2r + 2
    /// (rows 16r..16r+15 reach column 16r+15), the last one ceil(T/8).
    fn triangle_tiles(t: usize) -> usize {
        let tm = t.div_ceil(TILE_M);
        tm.saturating_sub(1) * tm + t.div_ceil(TILE_N)
    }

    /// Invocations of a tiled [T, hs] per-head product: (row tile, b, h, column tile).
    fn out_tiles(s: AttnShape) -> usize {
        s.t.div_ceil(TILE_M) * s.b * s.nh * s.hs().div_ceil(TILE_N)
    }
}

pub const ATTN_TILE_SCORES: Kernel = kernel!("attention_tile", "attn_tile_scores", AttnTileParams);
pub const ATTN_TILE_SOFTMAX: Kernel =
    kernel!("attention_tile", "attn_tile_softmax", AttnTileParams);
pub const ATTN_TILE_PV: Kernel = kernel!("attention_tile", "attn_tile_pv", AttnTileParams);
pub const ATTN_TILE_DP: Kernel = kernel!("attention_tile", "attn_tile_dp", AttnTileParams);
pub const ATTN_TILE_DSOFTMAX: Kernel =
    kernel!("attention_tile", "attn_tile_dsoftmax", AttnTileParams);
pub const ATTN_TILE_DQKV: Kernel = kernel!("attention_tile", "attn_tile_dqkv", AttnTileParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[
    &ATTN_FWD,
    &ATTN_BWD_Q,
    &ATTN_BWD_KV,
    &ATTN_DECODE,
    &ATTN_TILE_SCORES,
    &ATTN_TILE_SOFTMAX,
    &ATTN_TILE_PV,
    &ATTN_TILE_DP,
    &ATTN_TILE_DSOFTMAX,
    &ATTN_TILE_DQKV,
];

/// Shape of a KV-cache call: a cache of `t` rows of qkv [T,3C] (C channels, NH heads) and `n`
/// new positions starting at `pos`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeShape {
    pub t: usize,
    pub c: usize,
    pub nh: usize,
    pub pos: usize,
    pub n: usize,
}

impl DecodeShape {
    pub(crate) fn attn(&self) -> AttnShape {
        AttnShape {
            b: 1,
            t: self.t,
            c: self.c,
            nh: self.nh,
        }
    }
}

/// The cache [T,3C] and n rows of width `width` (out [n,C] or new qkv [n,3C]) of a KV-cache call
/// with `nh` heads at `pos`: returns the shape.
pub fn check_decode(
    nh: usize,
    pos: usize,
    cache: &[usize],
    rows: &[usize],
    per_c: usize,
    what: &str,
) -> Result<DecodeShape> {
    ensure!(
        cache.len() == 2 && cache[1].is_multiple_of(3) && cache[1] > 0,
        "{what}: the cache must be [T, 3C], is {cache:?}"
    );
    let (t, c) = (cache[0], cache[1] / 3);
    ensure!(
        nh > 0 && c.is_multiple_of(nh),
        "{what}: {c} channels do not split into {nh} heads"
    );
    let width = per_c * c;
    ensure!(
        numel(rows) > 0 && numel(rows).is_multiple_of(width),
        "{what}: {rows:?} is not whole rows of {width}"
    );
    let n = numel(rows) / width;
    ensure!(
        pos + n <= t,
        "{what}: positions {pos}..{} do not fit a cache of {t} positions (the context)",
        pos + n
    );
    Ok(DecodeShape { t, c, nh, pos, n })
}

/// qkv [B,T,3C], out (or dout) [B,T,C], P [B,NH,T,T]; C splits into NH heads.
pub fn check(s: AttnShape, qkv: &[usize], out: &[usize], p: &[usize]) -> Result<()> {
    ensure!(
        s.nh > 0 && s.c.is_multiple_of(s.nh),
        "attention: {} channels do not split into {} heads",
        s.c,
        s.nh
    );
    ensure!(
        numel(qkv) == s.b * s.t * 3 * s.c,
        "attention: qkv {qkv:?} should hold [{}, {}, {}]",
        s.b,
        s.t,
        3 * s.c
    );
    ensure!(
        numel(out) == s.b * s.t * s.c,
        "attention: out {out:?} should hold [{}, {}, {}]",
        s.b,
        s.t,
        s.c
    );
    ensure!(
        numel(p) == s.b * s.nh * s.t * s.t,
        "attention: probabilities {p:?} should hold [{}, {}, {}, {}]",
        s.b,
        s.nh,
        s.t,
        s.t
    );
    Ok(())
}

/// Backward: as [`check`], with dqkv like qkv and dS like P.
pub fn check_bwd(
    s: AttnShape,
    dout: &[usize],
    qkv: &[usize],
    p: &[usize],
    ds: &[usize],
    dqkv: &[usize],
) -> Result<()> {
    check(s, qkv, dout, p)?;
    same(qkv, dqkv, "attention_bwd qkv/dqkv")?;
    same(p, ds, "attention_bwd P/dS")
}

/// Causal attention forward: qkv [B,T,3C] → out [B,T,C], probabilities P [B,NH,T,T] (saved for
/// the backward pass; zeros above the diagonal).
pub fn attention(
    b: &mut Batch,
    s: AttnShape,
    qkv: &Tensor,
    out: &Tensor,
    p: &Tensor,
) -> Result<()> {
    check(s, &qkv.shape, &out.shape, &p.shape)?;
    distinct(&[qkv, out, p], "attention")?;
    if b.path() != KernelPath::Release1 {
        let params = AttnTileParams::new(s);
        let bh = s.b * s.nh;
        b.dispatch(
            &ATTN_TILE_SCORES,
            &params,
            &[("qkv", qkv), ("P", p)],
            params.ntri as usize * bh,
        )?;
        b.dispatch(&ATTN_TILE_SOFTMAX, &params, &[("P", p)], bh * s.t)?;
        return b.dispatch(
            &ATTN_TILE_PV,
            &params,
            &[("qkv", qkv), ("out", out), ("P", p)],
            AttnTileParams::out_tiles(s),
        );
    }
    b.dispatch(
        &ATTN_FWD,
        &AttentionParams::new(s),
        &[("qkv", qkv), ("out", out), ("P", p)],
        s.b * s.nh * s.t,
    )
}

/// Causal attention backward: dqkv [B,T,3C] (overwritten) from dout, qkv, P; `ds` [B,NH,T,T] is
/// scratch.
pub fn attention_bwd(
    b: &mut Batch,
    s: AttnShape,
    dout: &Tensor,
    qkv: &Tensor,
    p: &Tensor,
    ds: &Tensor,
    dqkv: &Tensor,
) -> Result<()> {
    check_bwd(s, &dout.shape, &qkv.shape, &p.shape, &ds.shape, &dqkv.shape)?;
    distinct(&[dout, qkv, p, ds, dqkv], "attention_bwd")?;
    let n = s.b * s.nh * s.t;
    if b.path() != KernelPath::Release1 {
        let params = AttnTileParams::new(s);
        b.dispatch(
            &ATTN_TILE_DP,
            &params,
            &[("qkv", qkv), ("dout", dout), ("dS", ds)],
            params.ntri as usize * s.b * s.nh,
        )?;
        b.dispatch(&ATTN_TILE_DSOFTMAX, &params, &[("P", p), ("dS", ds)], n)?;
        return b.dispatch(
            &ATTN_TILE_DQKV,
            &params,
            &[
                ("qkv", qkv),
                ("dout", dout),
                ("out", dqkv),
                ("P", p),
                ("dS", ds),
            ],
            3 * AttnTileParams::out_tiles(s),
        );
    }
    let bufs = [
        ("qkv", qkv),
        ("dout", dout),
        ("out", dqkv),
        ("P", p),
        ("dS", ds),
    ];
    let params = AttentionParams::new(s);
    b.dispatch(&ATTN_BWD_Q, &params, &bufs, n)?;
    b.dispatch(&ATTN_BWD_KV, &params, &bufs, n)
}

/// KV-cache attention: `n` = rows of `out` [n,C] new positions pos..pos+n, each attending to
/// the cached qkv rows 0..=its position of `cache` [T,3C] (which must already hold them: see
/// [`kv_append`]).
pub fn attention_decode(
    b: &mut Batch,
    nh: usize,
    pos: usize,
    cache: &Tensor,
    out: &Tensor,
) -> Result<()> {
    let d = check_decode(nh, pos, &cache.shape, &out.shape, 1, "attention_decode")?;
    f32t(cache, "attention_decode cache")?;
    f32t(out, "attention_decode out")?;
    distinct(&[cache, out], "attention_decode")?;
    let params = AttentionParams {
        pos: u(pos),
        n: u(d.n),
        ..AttentionParams::new(d.attn())
    };
    b.dispatch(
        &ATTN_DECODE,
        &params,
        &[("qkv", cache), ("out", out)],
        d.n * nh,
    )
}

/// Writes the qkv rows [n,3C] of positions pos..pos+n into the cache [T,3C] (a buffer-range
/// copy recorded in the batch).
pub fn kv_append(b: &mut Batch, qkv: &Tensor, cache: &Tensor, pos: usize) -> Result<()> {
    let d = check_decode(1, pos, &cache.shape, &qkv.shape, 3, "kv_append")?;
    distinct(&[qkv, cache], "kv_append")?;
    b.copy_range(qkv, 0, cache, pos * 3 * d.c, d.n * 3 * d.c)
}

pub mod cpu {
    use super::super::CpuTensor;
    use super::{AttnShape, check, check_bwd, check_decode, reference as r};
    use anyhow::Result;

    pub fn attention_decode(
        nh: usize,
        pos: usize,
        cache: &CpuTensor,
        out: &CpuTensor,
    ) -> Result<()> {
        let d = check_decode(nh, pos, &cache.shape, &out.shape, 1, "attention_decode")?;
        out.put(&r::attention_decode(&cache.get(), d), false);
        Ok(())
    }

    pub fn kv_append(qkv: &CpuTensor, cache: &CpuTensor, pos: usize) -> Result<()> {
        let d = check_decode(1, pos, &cache.shape, &qkv.shape, 3, "kv_append")?;
        let at = pos * 3 * d.c;
        let src = qkv.data.borrow();
        cache.data.borrow_mut()[at..at + src.len()].copy_from_slice(&src);
        Ok(())
    }

    pub fn attention(s: AttnShape, qkv: &CpuTensor, out: &CpuTensor, p: &CpuTensor) -> Result<()> {
        check(s, &qkv.shape, &out.shape, &p.shape)?;
        let (o, pp) = r::attention_fwd(&qkv.get(), s);
        out.put(&o, false);
        p.put(&pp, false);
        Ok(())
    }

    pub fn attention_bwd(
        s: AttnShape,
        dout: &CpuTensor,
        qkv: &CpuTensor,
        p: &CpuTensor,
        ds: &CpuTensor,
        dqkv: &CpuTensor,
    ) -> Result<()> {
        check_bwd(s, &dout.shape, &qkv.shape, &p.shape, &ds.shape, &dqkv.shape)?;
        dqkv.put(
            &r::attention_bwd(&dout.get(), &qkv.get(), &p.get(), s),
            false,
        );
        Ok(())
    }
}

pub mod reference {
    use super::{AttnShape, DecodeShape};

    /// KV-cache attention: out [n,C] for positions pos..pos+n, each against the cached qkv rows
    /// [T,3C] up to and including itself (the rows of [`attention_fwd`] at those positions).
    pub fn attention_decode(cache: &[f64], d: DecodeShape) -> Vec<f64> {
        let DecodeShape { c, nh, pos, n, .. } = d;
        let hs = c / nh;
        let c3 = 3 * c;
        let scale = 1.0 / (hs as f64).sqrt();
        let mut out = vec![0.0; n * c];
        for i in 0..n {
            let qp = pos + i;
            for h in 0..nh {
                let q = qp * c3 + h * hs;
                let scores: Vec<f64> = (0..=qp)
                    .map(|t2| {
                        let k = t2 * c3 + c + h * hs;
                        (0..hs).map(|e| cache[q + e] * cache[k + e]).sum::<f64>() * scale
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().map(|v| (v - mx).exp()).sum();
                for e in 0..hs {
                    out[i * c + h * hs + e] = scores
                        .iter()
                        .enumerate()
                        .map(|(t2, sc)| (sc - mx).exp() / sum * cache[t2 * c3 + 2 * c + h * hs + e])
                        .sum();
                }
            }
        }
        out
    }

    /// Causal attention forward: qkv [B,T,3C] → (out [B,T,C], P [B,NH,T,T]).
    pub fn attention_fwd(qkv: &[f64], s: AttnShape) -> (Vec<f64>, Vec<f64>) {
        let AttnShape { b, t, c, nh } = s;
        let hs = s.hs();
        let c3 = 3 * c;
        let mut out = vec![0.0; b * t * c];
        let mut p = vec![0.0; b * nh * t * t];
        for bi in 0..b {
            for h in 0..nh {
                for ti in 0..t {
                    let q = (bi * t + ti) * c3 + h * hs;
                    let row = ((bi * nh + h) * t + ti) * t;
                    let mut scores = vec![0.0; ti + 1];
                    for (t2, sc) in scores.iter_mut().enumerate() {
                        let k = (bi * t + t2) * c3 + c + h * hs;
                        *sc = (0..hs).map(|d| qkv[q + d] * qkv[k + d]).sum::<f64>() * s.scale();
                    }
                    let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let sum: f64 = scores.iter().map(|v| (v - mx).exp()).sum();
                    for (t2, sc) in scores.iter().enumerate() {
                        p[row + t2] = (sc - mx).exp() / sum;
                    }
                    for d in 0..hs {
                        out[(bi * t + ti) * c + h * hs + d] = (0..=ti)
                            .map(|t2| p[row + t2] * qkv[(bi * t + t2) * c3 + 2 * c + h * hs + d])
                            .sum();
                    }
                }
            }
        }
        (out, p)
    }

    /// Causal attention backward: dqkv [B,T,3C] from dout [B,T,C], qkv and P.
    pub fn attention_bwd(dout: &[f64], qkv: &[f64], p: &[f64], s: AttnShape) -> Vec<f64> {
        let AttnShape { b, t, c, nh } = s;
        let hs = s.hs();
        let c3 = 3 * c;
        let sc = s.scale();
        let mut dqkv = vec![0.0; b * t * c3];
        for bi in 0..b {
            for h in 0..nh {
                for ti in 0..t {
                    let row = ((bi * nh + h) * t + ti) * t;
                    let o = (bi * t + ti) * c + h * hs;
                    let dp: Vec<f64> = (0..=ti)
                        .map(|t2| {
                            let v = (bi * t + t2) * c3 + 2 * c + h * hs;
                            (0..hs).map(|d| dout[o + d] * qkv[v + d]).sum()
                        })
                        .collect();
                    let rowdot: f64 = (0..=ti).map(|t2| dp[t2] * p[row + t2]).sum();
                    let q = (bi * t + ti) * c3 + h * hs;
                    for t2 in 0..=ti {
                        let ds = p[row + t2] * (dp[t2] - rowdot);
                        let k = (bi * t + t2) * c3 + c + h * hs;
                        let v = k + c;
                        for d in 0..hs {
                            dqkv[q + d] += sc * ds * qkv[k + d];
                            dqkv[k + d] += sc * ds * qkv[q + d];
                            dqkv[v + d] += p[row + t2] * dout[o + d];
                        }
                    }
                }
            }
        }
        dqkv
    }
}
