//! Typed wrappers of the WGSL kernels: each checks shapes on the host, then records its
//! dispatches into a [`Batch`]. Shapes are row-major; "acc" means the kernel adds into its
//! output instead of overwriting it (gradient accumulation).

use super::reference::{AdamW, AttnShape};
use super::{Access, Batch, DType, Kernel, Params, Tensor};
use anyhow::{Result, bail, ensure};

const R: Access = Access::Read;
const W: Access = Access::ReadWrite;

macro_rules! kernel {
    ($name:ident, $family:literal, $entry:literal, [$($b:expr),*], $wg:literal) => {
        pub const $name: Kernel = Kernel {
            family: $family,
            entry: $entry,
            bindings: &[$($b),*],
            workgroup: $wg,
        };
    };
}

kernel!(MM_GENERIC, "matmul", "mm_generic", [R, R, R, W], 64);
kernel!(COLSUM, "matmul", "colsum", [R, R, R, W], 64);
kernel!(MM_NT_VEC4, "matmul_vec4", "mm_nt_vec4", [R, R, R, W], 64);
kernel!(MM_NT_ROWS8, "matmul_vec4", "mm_nt_rows8", [R, R, R, W], 64);
kernel!(MM_TILE16X8, "matmul_tile", "mm_tile16x8", [R, R, R, W], 32);
kernel!(LN_FWD, "layernorm", "ln_fwd", [R, R, R, R, W, W, W, W], 64);
kernel!(
    LN_BWD_DX,
    "layernorm",
    "ln_bwd_dx",
    [R, R, R, R, W, W, W, W],
    64
);
kernel!(
    LN_BWD_DWDB,
    "layernorm",
    "ln_bwd_dwdb",
    [R, R, R, R, W, W, W, W],
    64
);
kernel!(ATTN_FWD, "attention", "attn_fwd", [R, R, W, W, W], 64);
kernel!(ATTN_BWD_Q, "attention", "attn_bwd_q", [R, R, W, W, W], 64);
kernel!(ATTN_BWD_KV, "attention", "attn_bwd_kv", [R, R, W, W, W], 64);
kernel!(GELU_FWD, "elementwise", "gelu_fwd", [R, R, W, W], 64);
kernel!(GELU_BWD, "elementwise", "gelu_bwd", [R, R, W, W], 64);
kernel!(ADD, "elementwise", "add", [R, R, W, W], 64);
kernel!(
    RESIDUAL_BWD,
    "elementwise",
    "residual_bwd",
    [R, R, W, W],
    64
);
kernel!(EMBED_FWD, "embedding", "embed_fwd", [R, R, R, R, W], 64);
kernel!(
    EMBED_BWD_WTE,
    "embedding",
    "embed_bwd_wte",
    [R, R, R, R, W],
    64
);
kernel!(
    EMBED_BWD_WPE,
    "embedding",
    "embed_bwd_wpe",
    [R, R, R, R, W],
    64
);
kernel!(XENT, "crossentropy", "xent", [R, R, W, W], 64);
kernel!(SUM_CHUNKS, "optim", "sum_chunks", [R, R, W, W, W], 64);
kernel!(SUM_FINAL, "optim", "sum_final", [R, R, W, W, W], 1);
kernel!(ADAMW, "optim", "adamw", [R, R, W, W, W], 64);

/// Every training kernel (benchmarks and `prepare_all` compile these).
pub const ALL: &[&Kernel] = &[
    &MM_GENERIC,
    &COLSUM,
    &MM_NT_VEC4,
    &MM_NT_ROWS8,
    &MM_TILE16X8,
    &LN_FWD,
    &LN_BWD_DX,
    &LN_BWD_DWDB,
    &ATTN_FWD,
    &ATTN_BWD_Q,
    &ATTN_BWD_KV,
    &GELU_FWD,
    &GELU_BWD,
    &ADD,
    &RESIDUAL_BWD,
    &EMBED_FWD,
    &EMBED_BWD_WTE,
    &EMBED_BWD_WPE,
    &XENT,
    &SUM_CHUNKS,
    &SUM_FINAL,
    &ADAMW,
];

/// Elements per partial sum in the fixed-order reductions.
pub const REDUCE_CHUNK: usize = 4096;

fn f32t(t: &Tensor, what: &str) -> Result<()> {
    ensure!(
        t.dtype == DType::F32,
        "{what} must be f32, is {:?}",
        t.dtype
    );
    Ok(())
}

fn same(a: &Tensor, b: &Tensor, what: &str) -> Result<()> {
    ensure!(
        a.len() == b.len(),
        "{what}: shapes {:?} and {:?} differ in size",
        a.shape,
        b.shape
    );
    Ok(())
}

/// The checks every elementwise kernel needs: f32 tensors of one length.
fn elementwise(ts: &[&Tensor], what: &str) -> Result<()> {
    for t in ts {
        f32t(t, what)?;
        same(ts[0], t, what)?;
    }
    Ok(())
}

fn distinct(ts: &[&Tensor], what: &str) -> Result<()> {
    for i in 0..ts.len() {
        for j in i + 1..ts.len() {
            ensure!(
                ts[i].buffer != ts[j].buffer,
                "{what}: the same buffer is passed twice (in-place use is not supported)"
            );
        }
    }
    Ok(())
}

/// The `y = x·Wᵀ` kernels (any of them is correct for any shape they accept; the `mm_nt_*`
/// ones need K % 4 == 0).
pub const NT_VARIANTS: [&Kernel; 4] = [&MM_GENERIC, &MM_NT_VEC4, &MM_NT_ROWS8, &MM_TILE16X8];

/// The strided-product kernels behind [`gemm`] (and so `matmul_dx`, `matmul_dw`): both take
/// any strides and any shape.
pub const GEMM_VARIANTS: [&Kernel; 2] = [&MM_GENERIC, &MM_TILE16X8];

fn needs_k4(v: &Kernel) -> bool {
    v.entry == MM_NT_VEC4.entry || v.entry == MM_NT_ROWS8.entry
}

/// `PAI_MATMUL_KERNEL` (an entry name), if it names one of `variants`.
fn forced(variants: &[&'static Kernel]) -> Option<&'static Kernel> {
    let name = std::env::var("PAI_MATMUL_KERNEL").ok()?;
    variants.iter().copied().find(|v| v.entry == name)
}

/// Which matmul variant `y = x·Wᵀ` uses, chosen at run time from the adapter and K:
/// CPU adapters (lavapipe/llvmpipe) take the 16×8 register tile `mm_tile16x8` for every shape
/// (~2–4× `mm_nt_rows8` there); GPUs take the 4×4 vec4 kernel `mm_nt_vec4` when K % 4 == 0 and
/// the portable `mm_generic` otherwise. `PAI_MATMUL_KERNEL` (an entry name) overrides the
/// choice for experiments where the forced kernel accepts K.
pub fn nt_variant(gpu: &super::Gpu, k: usize) -> &'static Kernel {
    let k4 = k.is_multiple_of(4) && k > 0;
    if let Some(v) = forced(&NT_VARIANTS)
        && (k4 || !needs_k4(v))
    {
        return v;
    }
    if gpu.is_cpu() {
        &MM_TILE16X8
    } else if k4 {
        &MM_NT_VEC4
    } else {
        &MM_GENERIC
    }
}

/// Which kernel a strided product ([`gemm`]: the backward `dx = dy·W`, `dW = dyᵀ·x`) uses:
/// `mm_tile16x8` on CPU adapters, `mm_generic` on GPUs (untuned there); `PAI_MATMUL_KERNEL`
/// overrides as for [`nt_variant`].
pub fn gemm_variant(gpu: &super::Gpu) -> &'static Kernel {
    if let Some(v) = forced(&GEMM_VARIANTS) {
        return v;
    }
    if gpu.is_cpu() {
        &MM_TILE16X8
    } else {
        &MM_GENERIC
    }
}

/// Linear forward: y[M,N] = x[M,K]·w[N,K]ᵀ (+ bias[N]) (+ y if acc). x may have any leading
/// dimensions (flattened to M rows).
pub fn matmul(
    b: &mut Batch,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    acc: bool,
) -> Result<()> {
    let (m, k) = x.as_2d();
    ensure!(
        w.shape.len() == 2,
        "matmul: weight must be 2-D [out, in], is {:?}",
        w.shape
    );
    let (n, kw) = (w.shape[0], w.shape[1]);
    ensure!(
        k == kw,
        "matmul: x {:?} has {k} columns but weight {:?} expects {kw}",
        x.shape,
        w.shape
    );
    ensure!(
        y.len() == m * n,
        "matmul: output {:?} should hold [{m}, {n}]",
        y.shape
    );
    if let Some(bt) = bias {
        ensure!(
            bt.len() == n,
            "matmul: bias {:?} should have {n} elements",
            bt.shape
        );
    }
    for (t, nm) in [(x, "x"), (w, "weight"), (y, "output")] {
        f32t(t, nm)?;
    }
    distinct(&[x, y], "matmul")?;
    distinct(&[w, y], "matmul")?;
    matmul_with(b, nt_variant(b.gpu, k), x, w, bias, y, acc)
}

/// [`matmul`] with an explicit kernel variant (one of [`NT_VARIANTS`]; the vec4 ones need
/// K % 4 == 0).
pub fn matmul_with(
    b: &mut Batch,
    kern: &Kernel,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    acc: bool,
) -> Result<()> {
    ensure!(
        w.shape.len() == 2,
        "matmul_with: weight must be 2-D [out, in], is {:?}",
        w.shape
    );
    for (t, what) in [(x, "matmul x"), (w, "matmul w"), (y, "matmul y")] {
        f32t(t, what)?;
    }
    let (m, k) = x.as_2d();
    let n = w.shape[0];
    ensure!(
        y.len() == m * n && w.len() == n * k,
        "matmul_with: shapes {:?} {:?} {:?}",
        x.shape,
        w.shape,
        y.shape
    );
    ensure!(
        !needs_k4(kern) || k.is_multiple_of(4),
        "{} needs K % 4 == 0, K = {k}",
        kern.entry
    );
    if m == 0 || n == 0 {
        return Ok(());
    }
    if GEMM_VARIANTS.iter().any(|v| v.entry == kern.entry) {
        return gemm_with(b, kern, x, (k, 1), w, (1, k), (m, n, k), bias, y, acc);
    }
    let flags = bias.is_some() as usize | (acc as usize) << 1;
    let bias_t = bias.unwrap_or(b.gpu.dummy());
    let p = Params::new().u(m).u(n).u(k / 4).u(flags);
    let groups = if kern.entry == MM_NT_ROWS8.entry {
        m.div_ceil(8) * n.div_ceil(64) * 64
    } else {
        m.div_ceil(4) * n.div_ceil(4)
    };
    b.dispatch(kern, &p, &[x, w, bias_t, y], groups)
}

/// Strided product C[M,N] = A(i,p)·B(p,j) with A(i,p) = a[i*rs + p*cs], B(p,j) = b[p*rs + j*cs]
/// (+ bias[j]) (+ C if acc), with the kernel [`gemm_variant`] picks for this adapter.
#[allow(clippy::too_many_arguments)]
pub fn gemm(
    b: &mut Batch,
    a: &Tensor,
    a_strides: (usize, usize),
    bm: &Tensor,
    b_strides: (usize, usize),
    mnk: (usize, usize, usize),
    bias: Option<&Tensor>,
    c: &Tensor,
    acc: bool,
) -> Result<()> {
    let kern = gemm_variant(b.gpu);
    gemm_with(b, kern, a, a_strides, bm, b_strides, mnk, bias, c, acc)
}

/// [`gemm`] with an explicit kernel (one of [`GEMM_VARIANTS`]).
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    b: &mut Batch,
    kern: &Kernel,
    a: &Tensor,
    a_strides: (usize, usize),
    bm: &Tensor,
    b_strides: (usize, usize),
    (m, n, k): (usize, usize, usize),
    bias: Option<&Tensor>,
    c: &Tensor,
    acc: bool,
) -> Result<()> {
    let span = |rows: usize, cols: usize, (rs, cs): (usize, usize)| {
        if rows == 0 || cols == 0 {
            0
        } else {
            (rows - 1) * rs + (cols - 1) * cs + 1
        }
    };
    ensure!(
        span(m, k, a_strides) <= a.len(),
        "gemm: A {:?} too small for [{m}, {k}] with strides {a_strides:?}",
        a.shape
    );
    ensure!(
        span(k, n, b_strides) <= bm.len(),
        "gemm: B {:?} too small for [{k}, {n}] with strides {b_strides:?}",
        bm.shape
    );
    ensure!(
        c.len() == m * n,
        "gemm: C {:?} should hold [{m}, {n}]",
        c.shape
    );
    for (t, what) in [(a, "gemm A"), (bm, "gemm B"), (c, "gemm C")] {
        f32t(t, what)?;
    }
    if let Some(bias) = bias {
        f32t(bias, "gemm bias")?;
        ensure!(
            bias.len() == n,
            "gemm: bias {:?} should have {n} elements",
            bias.shape
        );
    }
    distinct(&[a, c], "gemm")?;
    distinct(&[bm, c], "gemm")?;
    ensure!(
        GEMM_VARIANTS.iter().any(|v| v.entry == kern.entry),
        "gemm: {} is not a strided-product kernel",
        kern.entry
    );
    if m == 0 || n == 0 {
        return Ok(());
    }
    let flags = bias.is_some() as usize | (acc as usize) << 1;
    let p = Params::new()
        .u(m)
        .u(n)
        .u(k)
        .u(a_strides.0)
        .u(a_strides.1)
        .u(b_strides.0)
        .u(b_strides.1)
        .u(flags);
    let bias_t = bias.unwrap_or(b.gpu.dummy());
    let blocks = if kern.entry == MM_TILE16X8.entry {
        m.div_ceil(16) * n.div_ceil(8)
    } else {
        m.div_ceil(4) * n.div_ceil(4)
    };
    b.dispatch(kern, &p, &[a, bm, bias_t, c], blocks)
}

/// Linear backward, input gradient: dx[M,K] (+)= dy[M,N]·w[N,K].
pub fn matmul_dx(b: &mut Batch, dy: &Tensor, w: &Tensor, dx: &Tensor, acc: bool) -> Result<()> {
    let (m, n) = dy.as_2d();
    ensure!(
        w.shape.len() == 2 && w.shape[0] == n,
        "matmul_dx: dy {:?} does not match weight {:?}",
        dy.shape,
        w.shape
    );
    let k = w.shape[1];
    ensure!(
        dx.len() == m * k,
        "matmul_dx: dx {:?} should hold [{m}, {k}]",
        dx.shape
    );
    gemm(b, dy, (n, 1), w, (k, 1), (m, k, n), None, dx, acc)
}

/// Linear backward, weight gradient: dw[N,K] (+)= dy[M,N]ᵀ·x[M,K] (rows summed in order).
pub fn matmul_dw(b: &mut Batch, dy: &Tensor, x: &Tensor, dw: &Tensor, acc: bool) -> Result<()> {
    let (m, n) = dy.as_2d();
    let (mx, k) = x.as_2d();
    ensure!(
        m == mx,
        "matmul_dw: dy {:?} and x {:?} have different row counts",
        dy.shape,
        x.shape
    );
    ensure!(
        dw.len() == n * k,
        "matmul_dw: dw {:?} should hold [{n}, {k}]",
        dw.shape
    );
    gemm(b, dy, (1, n), x, (k, 1), (n, k, m), None, dw, acc)
}

/// Bias gradient: db[N] (+)= Σ_rows dy[M,N] (rows in order).
pub fn colsum(b: &mut Batch, dy: &Tensor, db: &Tensor, acc: bool) -> Result<()> {
    let (m, n) = dy.as_2d();
    ensure!(
        db.len() == n,
        "colsum: output {:?} should have {n} elements",
        db.shape
    );
    distinct(&[dy, db], "colsum")?;
    let d = b.gpu.dummy();
    let p = Params::new()
        .u(m)
        .u(n)
        .u(0)
        .u(0)
        .u(0)
        .u(0)
        .u(0)
        .u((acc as usize) << 1);
    b.dispatch(&COLSUM, &p, &[dy, d, d, db], n)
}

fn rw_dummy(b: &Batch) -> Result<Tensor> {
    b.gpu.zeros(&[4])
}

/// LayerNorm forward over the last dimension: y, mean [rows], rstd [rows].
#[allow(clippy::too_many_arguments)]
pub fn layernorm(
    b: &mut Batch,
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    y: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    eps: f32,
) -> Result<()> {
    let (rows, cols) = x.as_2d();
    ensure!(
        w.len() == cols && bias.len() == cols,
        "layernorm: weight {:?} / bias {:?} should have {cols} elements",
        w.shape,
        bias.shape
    );
    same(x, y, "layernorm x/y")?;
    ensure!(
        mean.len() == rows && rstd.len() == rows,
        "layernorm: mean/rstd should have {rows} elements"
    );
    distinct(&[x, y, mean, rstd], "layernorm")?;
    let d = b.gpu.dummy();
    let d2 = rw_dummy(b)?;
    let p = Params::new().u(rows).u(cols).f(eps).u(0);
    b.dispatch(&LN_FWD, &p, &[x, w, bias, d, y, &d2, mean, rstd], rows)
}

/// LayerNorm backward: dx (+)= ..., dw (+)= Σ n·dy, db (+)= Σ dy (acc_w for dw/db).
#[allow(clippy::too_many_arguments)]
pub fn layernorm_bwd(
    b: &mut Batch,
    dy: &Tensor,
    x: &Tensor,
    w: &Tensor,
    mean: &Tensor,
    rstd: &Tensor,
    dx: &Tensor,
    dw: &Tensor,
    db: &Tensor,
    acc_dx: bool,
    acc_w: bool,
) -> Result<()> {
    let (rows, cols) = x.as_2d();
    same(x, dy, "layernorm_bwd x/dy")?;
    same(x, dx, "layernorm_bwd x/dx")?;
    ensure!(
        w.len() == cols && dw.len() == cols && db.len() == cols,
        "layernorm_bwd: w/dw/db should have {cols} elements"
    );
    ensure!(
        mean.len() == rows && rstd.len() == rows,
        "layernorm_bwd: mean/rstd should have {rows} elements"
    );
    distinct(&[dy, x, dx, dw, db, mean, rstd], "layernorm_bwd")?;
    let d = b.gpu.dummy();
    let d2 = rw_dummy(b)?;
    let p = Params::new().u(rows).u(cols).f(0.0).b(acc_dx);
    b.dispatch(&LN_BWD_DX, &p, &[x, w, d, dy, dx, &d2, mean, rstd], rows)?;
    let p = Params::new().u(rows).u(cols).f(0.0).b(acc_w);
    b.dispatch(&LN_BWD_DWDB, &p, &[x, d, d, dy, dw, db, mean, rstd], cols)
}

fn attn_check(s: AttnShape, qkv: &Tensor, out: &Tensor, p: &Tensor) -> Result<()> {
    ensure!(
        s.nh > 0 && s.c.is_multiple_of(s.nh),
        "attention: {} channels do not split into {} heads",
        s.c,
        s.nh
    );
    ensure!(
        qkv.len() == s.b * s.t * 3 * s.c,
        "attention: qkv {:?} should hold [{}, {}, {}]",
        qkv.shape,
        s.b,
        s.t,
        3 * s.c
    );
    ensure!(
        out.len() == s.b * s.t * s.c,
        "attention: out {:?} should hold [{}, {}, {}]",
        out.shape,
        s.b,
        s.t,
        s.c
    );
    ensure!(
        p.len() == s.b * s.nh * s.t * s.t,
        "attention: probabilities {:?} should hold [{}, {}, {}, {}]",
        p.shape,
        s.b,
        s.nh,
        s.t,
        s.t
    );
    Ok(())
}

fn attn_params(s: AttnShape) -> Params {
    Params::new()
        .u(s.b)
        .u(s.t)
        .u(s.c)
        .u(s.nh)
        .f(s.scale() as f32)
}

/// Causal attention forward: qkv [B,T,3C] → out [B,T,C], probabilities P [B,NH,T,T] (saved for
/// the backward pass).
pub fn attention(
    b: &mut Batch,
    s: AttnShape,
    qkv: &Tensor,
    out: &Tensor,
    p: &Tensor,
) -> Result<()> {
    attn_check(s, qkv, out, p)?;
    distinct(&[qkv, out, p], "attention")?;
    let d = b.gpu.dummy();
    let d2 = rw_dummy(b)?;
    b.dispatch(
        &ATTN_FWD,
        &attn_params(s),
        &[qkv, d, out, p, &d2],
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
    attn_check(s, qkv, dout, p)?;
    same(qkv, dqkv, "attention_bwd qkv/dqkv")?;
    same(p, ds, "attention_bwd P/dS")?;
    distinct(&[dout, qkv, p, ds, dqkv], "attention_bwd")?;
    let n = s.b * s.nh * s.t;
    b.dispatch(&ATTN_BWD_Q, &attn_params(s), &[qkv, dout, dqkv, p, ds], n)?;
    b.dispatch(&ATTN_BWD_KV, &attn_params(s), &[qkv, dout, dqkv, p, ds], n)
}

/// y = gelu(x) (tanh approximation).
pub fn gelu(b: &mut Batch, x: &Tensor, y: &Tensor) -> Result<()> {
    elementwise(&[x, y], "gelu")?;
    distinct(&[x, y], "gelu")?;
    let d = b.gpu.dummy();
    let d2 = rw_dummy(b)?;
    b.dispatch(
        &GELU_FWD,
        &Params::new().u(x.len()).u(0),
        &[x, d, y, &d2],
        x.len(),
    )
}

/// dx (+)= gelu'(x)·dy.
pub fn gelu_bwd(b: &mut Batch, x: &Tensor, dy: &Tensor, dx: &Tensor, acc: bool) -> Result<()> {
    elementwise(&[x, dy, dx], "gelu_bwd")?;
    distinct(&[x, dy, dx], "gelu_bwd")?;
    let d2 = rw_dummy(b)?;
    b.dispatch(
        &GELU_BWD,
        &Params::new().u(x.len()).b(acc),
        &[x, dy, dx, &d2],
        x.len(),
    )
}

/// y = a + b.
pub fn add(b: &mut Batch, x: &Tensor, y: &Tensor, out: &Tensor) -> Result<()> {
    elementwise(&[x, y, out], "add")?;
    distinct(&[x, out], "add")?;
    distinct(&[y, out], "add")?;
    let d2 = rw_dummy(b)?;
    b.dispatch(
        &ADD,
        &Params::new().u(x.len()).u(0),
        &[x, y, out, &d2],
        x.len(),
    )
}

/// Residual backward: da (+)= dy, db (+)= dy.
pub fn residual_bwd(b: &mut Batch, dy: &Tensor, da: &Tensor, db: &Tensor, acc: bool) -> Result<()> {
    elementwise(&[dy, da, db], "residual_bwd")?;
    distinct(&[dy, da, db], "residual_bwd")?;
    let d = b.gpu.dummy();
    b.dispatch(
        &RESIDUAL_BWD,
        &Params::new().u(dy.len()).b(acc),
        &[dy, d, da, db],
        dy.len(),
    )
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
        let mut counts = vec![0u32; vocab + 1];
        for (i, &t) in tokens.iter().enumerate() {
            if t as usize >= vocab {
                bail!("token id {t} at position {i} is outside the vocabulary of {vocab}");
            }
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
    let (bb, t) = (tokens.shape[0], tokens.shape[1]);
    ensure!(
        wte.shape.len() == 2 && wpe.shape.len() == 2,
        "embedding: wte and wpe must be 2-D"
    );
    let (v, c) = (wte.shape[0], wte.shape[1]);
    ensure!(
        wpe.shape[1] == c && wpe.shape[0] >= t,
        "embedding: wpe {:?} must be [>= {t}, {c}]",
        wpe.shape
    );
    ensure!(
        out.len() == bb * t * c,
        "embedding: out {:?} should hold [{bb}, {t}, {c}]",
        out.shape
    );
    for (x, what) in [
        (wte, "embedding wte"),
        (wpe, "embedding wpe"),
        (out, "embedding out"),
    ] {
        f32t(x, what)?;
    }
    distinct(&[tokens, wte, wpe, out], "embedding")?;
    let d = b.gpu.dummy();
    let p = Params::new().u(bb).u(t).u(c).u(v).u(0);
    b.dispatch(&EMBED_FWD, &p, &[tokens, d, wte, wpe, out], bb * t * c)
}

/// Uploaded [`EmbeddingIndex`].
pub struct EmbeddingIndexGpu {
    pub vocab: usize,
    pub offsets: Tensor,
    pub positions: Tensor,
}

impl EmbeddingIndexGpu {
    pub fn upload(gpu: &super::Gpu, idx: &EmbeddingIndex) -> Result<Self> {
        Ok(Self {
            vocab: idx.vocab,
            offsets: gpu.upload_u32(&idx.offsets, &[idx.offsets.len()])?,
            positions: gpu.upload_u32(&idx.positions, &[idx.positions.len()])?,
        })
    }
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
    ensure!(
        dx.shape.len() == 3,
        "embedding_bwd: dx must be [B, T, C], is {:?}",
        dx.shape
    );
    let (bb, t, c) = (dx.shape[0], dx.shape[1], dx.shape[2]);
    ensure!(
        idx.positions.len() == bb * t,
        "embedding_bwd: the index covers {} positions, dx has {}",
        idx.positions.len(),
        bb * t
    );
    ensure!(
        dwte.len() == idx.vocab * c,
        "embedding_bwd: dwte {:?} should hold [{}, {c}]",
        dwte.shape,
        idx.vocab
    );
    ensure!(
        dwpe.shape.len() == 2 && dwpe.shape[1] == c && dwpe.shape[0] >= t,
        "embedding_bwd: dwpe {:?} must be [>= {t}, {c}]",
        dwpe.shape
    );
    distinct(&[dx, dwte, dwpe], "embedding_bwd")?;
    let d = b.gpu.dummy();
    let p = Params::new().u(bb).u(t).u(c).u(idx.vocab).b(acc);
    b.dispatch(
        &EMBED_BWD_WTE,
        &p,
        &[&idx.offsets, &idx.positions, dx, d, dwte],
        idx.vocab * c,
    )?;
    b.dispatch(&EMBED_BWD_WPE, &p, &[d, d, dx, d, dwpe], t * c)
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
    ensure!(
        losses.len() == rows,
        "crossentropy: losses {:?} should have {rows} elements",
        losses.shape
    );
    let d2;
    let dl = match dlogits {
        Some(t) => {
            same(logits, t, "crossentropy logits/dlogits")?;
            distinct(&[logits, t, losses], "crossentropy")?;
            t
        }
        None => {
            distinct(&[logits, losses], "crossentropy")?;
            d2 = rw_dummy(b)?;
            &d2
        }
    };
    f32t(logits, "crossentropy logits")?;
    f32t(losses, "crossentropy losses")?;
    let p = Params::new()
        .u(rows)
        .u(v)
        .b(dlogits.is_some())
        .f(grad_scale);
    b.dispatch(&XENT, &p, &[logits, targets, losses, dl], rows)
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
    let d = b.gpu.dummy();
    let (d2, d3) = (rw_dummy(b)?, rw_dummy(b)?);
    if n == 0 {
        b.zero(partials);
    }
    let p = optim_params(n, REDUCE_CHUNK, 0, 0);
    b.dispatch(&SUM_CHUNKS, &p, &[x, d, partials, &d2, &d3], parts)?;
    let p = Params::new()
        .u(parts)
        .u(0)
        .u(0)
        .u(slot)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(scale);
    b.dispatch(&SUM_FINAL, &p, &[d, partials, out, &d2, &d3], 1)
}

/// Parameters of the reduction kernels (the optim family's 12-word block, floats zero).
fn optim_params(n: usize, chunk: usize, mode: usize, slot: usize) -> Params {
    (0..8).fold(Params::new().u(n).u(chunk).u(mode).u(slot), |p, _| p.f(0.0))
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
    ensure!(clip.len() >= 2, "grad_norm_clip: clip needs 2 elements");
    let d = b.gpu.dummy();
    let (d2, d3) = (rw_dummy(b)?, rw_dummy(b)?);
    b.zero(partials);
    let mut slot = 0;
    for g in grads {
        let n = g.len();
        let parts = n.div_ceil(REDUCE_CHUNK);
        let p = optim_params(n, REDUCE_CHUNK, 1, slot);
        b.dispatch(&SUM_CHUNKS, &p, &[g, d, partials, &d2, &d3], parts)?;
        slot += parts;
    }
    let p = Params::new()
        .u(slots)
        .u(0)
        .u(1)
        .u(0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(0.0)
        .f(max_norm);
    b.dispatch(&SUM_FINAL, &p, &[d, partials, clip, &d2, &d3], 1)
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
    ensure!(step >= 1, "adamw: steps count from 1");
    same(param, grad, "adamw param/grad")?;
    same(param, m, "adamw param/m")?;
    same(param, v, "adamw param/v")?;
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
        // The clip factor is read from element 1 (element 0: the norm).
        f32t(c, "adamw clip")?;
        ensure!(
            c.len() >= 2,
            "adamw: clip {:?} must hold [norm, factor] as written by the clip kernel",
            c.shape
        );
    }
    let (bc1, bc2) = h.corrections(step);
    let wd = if param.shape.len() >= 2 {
        h.weight_decay
    } else {
        0.0
    };
    let p = Params::new()
        .u(param.len())
        .u(0)
        .b(clip.is_some())
        .u(0)
        .f(h.lr)
        .f(h.beta1)
        .f(h.beta2)
        .f(h.eps)
        .f(wd)
        .f(bc1 as f32)
        .f(bc2 as f32)
        .f(0.0);
    let aux = clip.unwrap_or(b.gpu.dummy());
    b.dispatch(&ADAMW, &p, &[grad, aux, param, m, v], param.len())
}
