//! Matrix products: the linear forward y = x·Wᵀ (+ b) and its backward products dx = dy·W,
//! dW = dyᵀ·x, and the bias gradient (column sums). Several kernel variants compute the same
//! products (`shaders/matmul.wgsl`, `matmul_vec4.wgsl`, `matmul_tile.wgsl`, `matmul_sg.wgsl`,
//! `matmul_sg4.wgsl`, sharing `matmul_common.wgsl`); [`nt_variant`] and [`gemm_variant`] choose
//! one per adapter, kernel path, strides and shape.
//! "acc" means the kernel adds into its output instead of overwriting it.

use super::{distinct, f32t, numel, rows_cols, u};
use crate::gpu::pipelines::kernel;
use crate::gpu::{Batch, Gpu, Kernel, KernelPath, Tensor};
use anyhow::{Result, ensure};

/// The uniform block of every product kernel (`Params` in `shaders/matmul_common.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub a_rs: u32,
    pub a_cs: u32,
    pub b_rs: u32,
    pub b_cs: u32,
    /// Bit 0: add bias; bit 1: accumulate into C; bit 2: GELU into G; bit 3: GELU' from G.
    pub flags: u32,
}

/// What a product does to each output v besides its bias and accumulation (the epilogue of
/// `shaders/matmul_common.wgsl`): fusing an elementwise op into the product saves a dispatch
/// and a pass over the output.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// C = v (+ bias).
    Plain,
    /// C = v (+ bias) and the given tensor = gelu(C): the MLP's first linear and activation.
    Gelu(&'a Tensor),
    /// C = gelu'(pre) · v, `pre` the given tensor: the activation's backward fused into dx.
    GeluBwd(&'a Tensor),
}

impl<'a> Epilogue<'a> {
    /// The epilogue's tensor is f32, holds C's `mn` elements, and is none of `others` (the
    /// product's operands and C).
    fn check(&self, others: &[&Tensor], mn: usize, what: &str) -> Result<()> {
        let (Epilogue::Gelu(g) | Epilogue::GeluBwd(g)) = self else {
            return Ok(());
        };
        f32t(g, &format!("{what} epilogue"))?;
        ensure!(
            g.len() == mn,
            "{what}: the epilogue's tensor {:?} should hold {mn} elements like the output",
            g.shape
        );
        for o in others {
            distinct(&[o, g], what)?;
        }
        Ok(())
    }
    fn flag(&self) -> u32 {
        match self {
            Epilogue::Plain => 0,
            Epilogue::Gelu(_) => 4,
            Epilogue::GeluBwd(_) => 8,
        }
    }
    /// The tensor bound as G (C itself when the epilogue does not touch G).
    fn g(&self, c: &'a Tensor) -> &'a Tensor {
        match self {
            Epilogue::Plain => c,
            Epilogue::Gelu(t) | Epilogue::GeluBwd(t) => t,
        }
    }
}

pub const MM_GENERIC: Kernel = kernel!("matmul", "mm_generic", MatmulParams);
pub const COLSUM: Kernel = kernel!("matmul", "colsum", MatmulParams);
pub const MM_NT_VEC4: Kernel = kernel!("matmul_vec4", "mm_nt_vec4", MatmulParams);
pub const MM_NT_ROWS8: Kernel = kernel!("matmul_vec4", "mm_nt_rows8", MatmulParams);
pub const MM_TILE16X8: Kernel = kernel!("matmul_tile", "mm_tile16x8", MatmulParams);
pub const MM_SG: Kernel = kernel!("matmul_sg", "mm_sg", MatmulParams);
pub const MM_SG_NT: Kernel = kernel!("matmul_sg4", "mm_sg_nt", MatmulParams);
pub const MM_SG_NN: Kernel = kernel!("matmul_sg4", "mm_sg_nn", MatmulParams);
pub const MM_SG_TN: Kernel = kernel!("matmul_sg4", "mm_sg_tn", MatmulParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[
    &MM_GENERIC,
    &COLSUM,
    &MM_NT_VEC4,
    &MM_NT_ROWS8,
    &MM_TILE16X8,
    &MM_SG,
    &MM_SG_NT,
    &MM_SG_NN,
    &MM_SG_TN,
];

/// The `y = x·Wᵀ` kernels (any of them is correct for any shape they accept; the `mm_nt_*`
/// ones and `mm_sg_nt` need K % 4 == 0; the `mm_sg*` ones need [`subgroups8`]).
pub const NT_VARIANTS: [&Kernel; 6] = [
    &MM_GENERIC,
    &MM_NT_VEC4,
    &MM_NT_ROWS8,
    &MM_TILE16X8,
    &MM_SG,
    &MM_SG_NT,
];

/// The strided-product kernels behind [`gemm`] (and so `matmul_dx`, `matmul_dw`): the first
/// three take any strides and shape; the vec4 `mm_sg_*` ones take the strides [`accepts`]
/// says; the `mm_sg*` ones need [`subgroups8`].
pub const GEMM_VARIANTS: [&Kernel; 6] = [
    &MM_GENERIC,
    &MM_TILE16X8,
    &MM_SG,
    &MM_SG_NT,
    &MM_SG_NN,
    &MM_SG_TN,
];

/// The `mm_sg*` kernels: one 32×32 tile per 8-lane subgroup.
const SG_KERNELS: [&Kernel; 4] = [&MM_SG, &MM_SG_NT, &MM_SG_NN, &MM_SG_TN];

fn needs_k4(v: &Kernel) -> bool {
    v.entry == MM_NT_VEC4.entry || v.entry == MM_NT_ROWS8.entry || v.entry == MM_SG_NT.entry
}

fn is_sg(v: &Kernel) -> bool {
    SG_KERNELS.iter().any(|s| s.entry == v.entry)
}

/// True when the device has subgroup operations with exactly 8 lanes (lavapipe on AVX2 and
/// AVX-512 hosts, whose vectors are 256 bits wide): what the `mm_sg*` kernels are written for.
pub fn subgroups8(gpu: &Gpu) -> bool {
    gpu.features.contains(wgpu::Features::SUBGROUP)
        && gpu.info.subgroup_min_size == 8
        && gpu.info.subgroup_max_size == 8
}

/// Whether `v` can run on this device at all (`mm_sg*` need [`subgroups8`]).
pub fn supported(gpu: &Gpu, v: &Kernel) -> bool {
    !is_sg(v) || subgroups8(gpu)
}

/// Whether strided-product kernel `v` computes C[M,N] = A(i,p)·B(p,j) with these strides
/// (A(i,p) = a[i*a_rs + p*a_cs], B(p,j) = b[p*b_rs + j*b_cs]) and shape: the vec4 `mm_sg_*`
/// kernels read A and B as vec4 along the axes their names say (`nt`: A and B contiguous along
/// p, K % 4 == 0; `nn`: A along p, B along j; `tn`: A along i, B along j), so those strides are
/// 1 and the others multiples of 4. The other kernels take any strides.
pub fn accepts(
    v: &Kernel,
    (a_rs, a_cs): (usize, usize),
    (b_rs, b_cs): (usize, usize),
    (_, _, k): (usize, usize, usize),
) -> bool {
    let (k4, m4) = (k.is_multiple_of(4), |s: usize| s.is_multiple_of(4));
    if v.entry == MM_SG_NT.entry {
        a_cs == 1 && b_rs == 1 && k4 && m4(a_rs) && m4(b_cs)
    } else if v.entry == MM_SG_NN.entry {
        a_cs == 1 && b_cs == 1 && k4 && m4(a_rs) && m4(b_rs)
    } else if v.entry == MM_SG_TN.entry {
        a_rs == 1 && b_cs == 1 && m4(a_cs) && m4(b_rs)
    } else {
        true
    }
}

/// The variant [`Gpu::force_matmul`] names, if it is one of `variants` and runs on this device.
fn forced(gpu: &Gpu, variants: &[&'static Kernel]) -> Option<&'static Kernel> {
    let name = gpu.forced_matmul()?;
    variants
        .iter()
        .copied()
        .find(|v| v.entry == name && supported(gpu, v))
}

/// True when the CPU-adapter choice is the subgroup family: the current kernel path on a device
/// with 8-lane subgroups (`KernelPath::Release1` keeps `mm_tile16x8`).
fn sg_path(gpu: &Gpu, path: KernelPath) -> bool {
    path == KernelPath::Fused && subgroups8(gpu)
}

/// Which matmul variant `y = x·Wᵀ` uses, chosen at run time from the adapter, the kernel path
/// and K. CPU adapters (lavapipe/llvmpipe): on [`KernelPath::Fused`] with 8-lane subgroups,
/// `mm_sg_nt` when K % 4 == 0 and `mm_sg` otherwise (with [`gemm_variant`]'s choices, 2.8×
/// `mm_tile16x8` over the products of a training step on lavapipe: `shaders/matmul_sg4.wgsl`);
/// else the 16×8 register tile `mm_tile16x8` (~2–4× `mm_nt_rows8` there). GPUs take the 4×4 vec4 kernel `mm_nt_vec4` when K % 4 == 0 and the portable
/// `mm_generic` otherwise. [`Gpu::force_matmul`] overrides the choice for experiments where the
/// forced kernel accepts K and runs on the device.
pub fn nt_variant(gpu: &Gpu, path: KernelPath, k: usize) -> &'static Kernel {
    let k4 = k.is_multiple_of(4) && k > 0;
    if let Some(v) = forced(gpu, &NT_VARIANTS)
        && (k4 || !needs_k4(v))
    {
        return v;
    }
    if gpu.is_cpu() {
        if !sg_path(gpu, path) {
            &MM_TILE16X8
        } else if k4 {
            &MM_SG_NT
        } else {
            &MM_SG
        }
    } else if k4 {
        &MM_NT_VEC4
    } else {
        &MM_GENERIC
    }
}

/// Which kernel a strided product ([`gemm`]: the backward `dx = dy·W`, `dW = dyᵀ·x`) with these
/// strides and shape uses. CPU adapters: on [`KernelPath::Fused`] with 8-lane subgroups, the
/// first of `mm_sg_nt`, `mm_sg_nn`, `mm_sg_tn` that [`accepts`] the strides (dx takes `nn`, dW
/// `tn` when the sizes are multiples of 4), else `mm_sg`; otherwise `mm_tile16x8`. GPUs:
/// `mm_generic` (untuned there). [`Gpu::force_matmul`] overrides as for [`nt_variant`].
pub fn gemm_variant(
    gpu: &Gpu,
    path: KernelPath,
    a_strides: (usize, usize),
    b_strides: (usize, usize),
    mnk: (usize, usize, usize),
) -> &'static Kernel {
    if let Some(v) = forced(gpu, &GEMM_VARIANTS)
        && accepts(v, a_strides, b_strides, mnk)
    {
        return v;
    }
    if !gpu.is_cpu() {
        &MM_GENERIC
    } else if !sg_path(gpu, path) {
        &MM_TILE16X8
    } else {
        [&MM_SG_NT, &MM_SG_NN, &MM_SG_TN]
            .into_iter()
            .find(|v| accepts(v, a_strides, b_strides, mnk))
            .unwrap_or(&MM_SG)
    }
}

// ---------------------------------------------------------------- shape checks (both sides)

/// y[M,N] = x[M,K]·w[N,K]ᵀ (+ bias[N]): returns (M, N, K).
pub fn check(
    x: &[usize],
    w: &[usize],
    bias: Option<&[usize]>,
    y: &[usize],
) -> Result<(usize, usize, usize)> {
    let (m, k) = rows_cols(x);
    ensure!(
        w.len() == 2,
        "matmul: weight must be 2-D [out, in], is {w:?}"
    );
    let (n, kw) = (w[0], w[1]);
    ensure!(
        k == kw,
        "matmul: x {x:?} has {k} columns but weight {w:?} expects {kw}"
    );
    ensure!(
        numel(y) == m * n,
        "matmul: output {y:?} should hold [{m}, {n}]"
    );
    if let Some(b) = bias {
        ensure!(numel(b) == n, "matmul: bias {b:?} should have {n} elements");
    }
    Ok((m, n, k))
}

/// dx[M,K] = dy[M,N]·w[N,K]: returns (M, N, K).
pub fn check_dx(dy: &[usize], w: &[usize], dx: &[usize]) -> Result<(usize, usize, usize)> {
    let (m, n) = rows_cols(dy);
    ensure!(
        w.len() == 2 && w[0] == n,
        "matmul_dx: dy {dy:?} does not match weight {w:?}"
    );
    let k = w[1];
    ensure!(
        numel(dx) == m * k,
        "matmul_dx: dx {dx:?} should hold [{m}, {k}]"
    );
    Ok((m, n, k))
}

/// dw[N,K] = dy[M,N]ᵀ·x[M,K]: returns (M, N, K).
pub fn check_dw(dy: &[usize], x: &[usize], dw: &[usize]) -> Result<(usize, usize, usize)> {
    let (m, n) = rows_cols(dy);
    let (mx, k) = rows_cols(x);
    ensure!(
        m == mx,
        "matmul_dw: dy {dy:?} and x {x:?} have different row counts"
    );
    ensure!(
        numel(dw) == n * k,
        "matmul_dw: dw {dw:?} should hold [{n}, {k}]"
    );
    Ok((m, n, k))
}

/// db[N] = Σ_rows dy[M,N]: returns (M, N).
pub fn check_colsum(dy: &[usize], db: &[usize]) -> Result<(usize, usize)> {
    let (m, n) = rows_cols(dy);
    ensure!(
        numel(db) == n,
        "colsum: output {db:?} should have {n} elements"
    );
    Ok((m, n))
}

// ---------------------------------------------------------------- GPU

fn flags(bias: bool, acc: bool) -> u32 {
    bias as u32 | (acc as u32) << 1
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
    let k = rows_cols(&x.shape).1;
    matmul_with(b, nt_variant(b.gpu, b.path(), k), x, w, bias, y, acc)
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
    matmul_ep(b, kern, x, w, bias, y, acc, Epilogue::Plain)
}

/// [`matmul_with`] with an epilogue.
#[allow(clippy::too_many_arguments)]
pub fn matmul_ep(
    b: &mut Batch,
    kern: &Kernel,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    y: &Tensor,
    acc: bool,
    ep: Epilogue,
) -> Result<()> {
    let (m, n, k) = check(&x.shape, &w.shape, bias.map(|t| &t.shape[..]), &y.shape)?;
    for (t, nm) in [(x, "x"), (w, "weight"), (y, "output")] {
        f32t(t, nm)?;
    }
    if let Some(t) = bias {
        f32t(t, "bias")?;
    }
    distinct(&[x, y], "matmul")?;
    distinct(&[w, y], "matmul")?;
    ep.check(&[x, w, y], m * n, "matmul")?;
    ensure!(
        !needs_k4(kern) || k.is_multiple_of(4),
        "{} needs K % 4 == 0, K = {k}",
        kern.entry
    );
    if m == 0 || n == 0 {
        return Ok(());
    }
    if GEMM_VARIANTS.iter().any(|v| v.entry == kern.entry) {
        return gemm_ep(b, kern, x, (k, 1), w, (1, k), (m, n, k), bias, y, acc, ep);
    }
    let p = MatmulParams {
        m: u(m),
        n: u(n),
        k: u(k),
        flags: flags(bias.is_some(), acc) | ep.flag(),
        ..Default::default()
    };
    let invocations = if kern.entry == MM_NT_ROWS8.entry {
        m.div_ceil(8) * n.div_ceil(64) * 64
    } else {
        m.div_ceil(4) * n.div_ceil(4)
    };
    // Without a bias the flag keeps `bias` unread; the weight (read-only here too) fills the
    // binding.
    let bias_t = bias.unwrap_or(w);
    b.dispatch(
        kern,
        &p,
        &[
            ("A", x),
            ("B", w),
            ("bias", bias_t),
            ("C", y),
            ("G", ep.g(y)),
        ],
        invocations,
    )
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
    let kern = gemm_variant(b.gpu, b.path(), a_strides, b_strides, mnk);
    gemm_with(b, kern, a, a_strides, bm, b_strides, mnk, bias, c, acc)
}

/// [`gemm`] with an explicit kernel (one of [`GEMM_VARIANTS`], one that [`accepts`] these
/// strides and is [`supported`] on the device).
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    b: &mut Batch,
    kern: &Kernel,
    a: &Tensor,
    a_strides: (usize, usize),
    bm: &Tensor,
    b_strides: (usize, usize),
    mnk: (usize, usize, usize),
    bias: Option<&Tensor>,
    c: &Tensor,
    acc: bool,
) -> Result<()> {
    gemm_ep(
        b,
        kern,
        a,
        a_strides,
        bm,
        b_strides,
        mnk,
        bias,
        c,
        acc,
        Epilogue::Plain,
    )
}

/// [`gemm_with`] with an epilogue (its tensor must hold [M, N] like C).
#[allow(clippy::too_many_arguments)]
pub fn gemm_ep(
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
    ep: Epilogue,
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
    ep.check(&[a, bm, c], m * n, "gemm")?;
    ensure!(
        GEMM_VARIANTS.iter().any(|v| v.entry == kern.entry),
        "gemm: {} is not a strided-product kernel",
        kern.entry
    );
    ensure!(
        accepts(kern, a_strides, b_strides, (m, n, k)),
        "gemm: {} does not take strides A {a_strides:?}, B {b_strides:?} with K = {k}",
        kern.entry
    );
    ensure!(
        supported(b.gpu, kern),
        "gemm: {} needs subgroups of 8 lanes, which {} does not have",
        kern.entry,
        b.gpu.info.name
    );
    if m == 0 || n == 0 {
        return Ok(());
    }
    let p = MatmulParams {
        m: u(m),
        n: u(n),
        k: u(k),
        a_rs: u(a_strides.0),
        a_cs: u(a_strides.1),
        b_rs: u(b_strides.0),
        b_cs: u(b_strides.1),
        flags: flags(bias.is_some(), acc) | ep.flag(),
    };
    let invocations = if kern.entry == MM_TILE16X8.entry {
        m.div_ceil(16) * n.div_ceil(8)
    } else if is_sg(kern) {
        // One 32×32 tile per subgroup of 8 invocations.
        m.div_ceil(32) * n.div_ceil(32) * 8
    } else {
        m.div_ceil(4) * n.div_ceil(4)
    };
    // Without a bias the flag keeps `bias` unread; B (read-only here too) fills the binding.
    let bias_t = bias.unwrap_or(bm);
    b.dispatch(
        kern,
        &p,
        &[
            ("A", a),
            ("B", bm),
            ("bias", bias_t),
            ("C", c),
            ("G", ep.g(c)),
        ],
        invocations,
    )
}

/// Linear backward, input gradient: dx[M,K] (+)= dy[M,N]·w[N,K].
pub fn matmul_dx(b: &mut Batch, dy: &Tensor, w: &Tensor, dx: &Tensor, acc: bool) -> Result<()> {
    let (m, n, k) = check_dx(&dy.shape, &w.shape, &dx.shape)?;
    gemm(b, dy, (n, 1), w, (k, 1), (m, k, n), None, dx, acc)
}

/// Linear backward, weight gradient: dw[N,K] (+)= dy[M,N]ᵀ·x[M,K] (rows summed in order).
pub fn matmul_dw(b: &mut Batch, dy: &Tensor, x: &Tensor, dw: &Tensor, acc: bool) -> Result<()> {
    let (m, n, k) = check_dw(&dy.shape, &x.shape, &dw.shape)?;
    gemm(b, dy, (1, n), x, (k, 1), (n, k, m), None, dw, acc)
}

/// The MLP's first linear with its activation in one pass: pre[M,N] = x[M,K]·w[N,K]ᵀ + bias,
/// y = gelu(pre).
pub fn matmul_gelu(
    b: &mut Batch,
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    pre: &Tensor,
    y: &Tensor,
) -> Result<()> {
    ensure!(
        pre.shape == y.shape,
        "matmul_gelu: pre-activation {:?} and activation {:?} differ",
        pre.shape,
        y.shape
    );
    let k = rows_cols(&x.shape).1;
    let kern = nt_variant(b.gpu, b.path(), k);
    matmul_ep(b, kern, x, w, Some(bias), pre, false, Epilogue::Gelu(y))
}

/// The activation's backward fused into the input gradient: dx[M,K] = gelu'(pre) ∘ (dy[M,N]·w[N,K]),
/// pre [M,K] the pre-activation.
pub fn matmul_dx_gelu(
    b: &mut Batch,
    dy: &Tensor,
    w: &Tensor,
    pre: &Tensor,
    dx: &Tensor,
) -> Result<()> {
    let (m, n, k) = check_dx(&dy.shape, &w.shape, &dx.shape)?;
    ensure!(
        pre.shape == dx.shape,
        "matmul_dx_gelu: pre-activation {:?} and dx {:?} differ",
        pre.shape,
        dx.shape
    );
    let kern = gemm_variant(b.gpu, b.path(), (n, 1), (k, 1), (m, k, n));
    gemm_ep(
        b,
        kern,
        dy,
        (n, 1),
        w,
        (k, 1),
        (m, k, n),
        None,
        dx,
        false,
        Epilogue::GeluBwd(pre),
    )
}

/// A linear that ends in a residual add: y = r + (x·wᵀ + bias), r and y [M,N]. Copies r into y
/// and accumulates the product onto it, so it rounds exactly as the product followed by `add`.
pub fn matmul_residual(
    b: &mut Batch,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    r: &Tensor,
    y: &Tensor,
) -> Result<()> {
    check(&x.shape, &w.shape, bias.map(|t| &t.shape[..]), &y.shape)?;
    ensure!(
        r.len() == y.len(),
        "matmul_residual: residual {:?} and output {:?} differ in size",
        r.shape,
        y.shape
    );
    distinct(&[r, y], "matmul_residual")?;
    b.copy(r, y)?;
    matmul(b, x, w, bias, y, true)
}

/// Bias gradient: db[N] (+)= Σ_rows dy[M,N] (rows in order).
pub fn colsum(b: &mut Batch, dy: &Tensor, db: &Tensor, acc: bool) -> Result<()> {
    let (m, n) = check_colsum(&dy.shape, &db.shape)?;
    distinct(&[dy, db], "colsum")?;
    let p = MatmulParams {
        m: u(m),
        n: u(n),
        flags: flags(false, acc),
        ..Default::default()
    };
    b.dispatch(&COLSUM, &p, &[("A", dy), ("C", db)], n)
}

// ---------------------------------------------------------------- CpuOps

pub mod cpu {
    use super::super::CpuTensor;
    use super::{check, check_colsum, check_dw, check_dx, reference as r};
    use anyhow::Result;

    pub fn matmul(
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        y: &CpuTensor,
        acc: bool,
    ) -> Result<()> {
        let (m, n, k) = check(&x.shape, &w.shape, bias.map(|t| &t.shape[..]), &y.shape)?;
        let b = bias.map(|b| b.get());
        y.put(
            &r::matmul_fwd(&x.get(), &w.get(), b.as_deref(), m, n, k),
            acc,
        );
        Ok(())
    }

    pub fn matmul_dx(dy: &CpuTensor, w: &CpuTensor, dx: &CpuTensor, acc: bool) -> Result<()> {
        let (m, n, k) = check_dx(&dy.shape, &w.shape, &dx.shape)?;
        let (d, _, _) = r::matmul_bwd(&dy.get(), &vec![0.0; m * k], &w.get(), m, n, k);
        dx.put(&d, acc);
        Ok(())
    }

    pub fn matmul_dw(dy: &CpuTensor, x: &CpuTensor, dw: &CpuTensor, acc: bool) -> Result<()> {
        let (m, n, k) = check_dw(&dy.shape, &x.shape, &dw.shape)?;
        let (_, d, _) = r::matmul_bwd(&dy.get(), &x.get(), &vec![0.0; n * k], m, n, k);
        dw.put(&d, acc);
        Ok(())
    }

    pub fn matmul_gelu(
        x: &CpuTensor,
        w: &CpuTensor,
        bias: &CpuTensor,
        pre: &CpuTensor,
        y: &CpuTensor,
    ) -> Result<()> {
        matmul(x, w, Some(bias), pre, false)?;
        crate::gpu::ops::elementwise::cpu::gelu(pre, y)
    }

    pub fn matmul_dx_gelu(
        dy: &CpuTensor,
        w: &CpuTensor,
        pre: &CpuTensor,
        dx: &CpuTensor,
    ) -> Result<()> {
        let (m, n, k) = check_dx(&dy.shape, &w.shape, &dx.shape)?;
        let (d, _, _) = r::matmul_bwd(&dy.get(), &vec![0.0; m * k], &w.get(), m, n, k);
        let d = crate::gpu::ops::elementwise::reference::gelu_bwd(&pre.get(), &d);
        dx.put(&d, false);
        Ok(())
    }

    pub fn matmul_residual(
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        r: &CpuTensor,
        y: &CpuTensor,
    ) -> Result<()> {
        check(&x.shape, &w.shape, bias.map(|t| &t.shape[..]), &y.shape)?;
        anyhow::ensure!(
            r.shape.iter().product::<usize>() == y.shape.iter().product::<usize>(),
            "matmul_residual: residual {:?} and output {:?} differ in size",
            r.shape,
            y.shape
        );
        y.put(&r.get(), false);
        matmul(x, w, bias, y, true)
    }

    pub fn colsum(dy: &CpuTensor, db: &CpuTensor, acc: bool) -> Result<()> {
        let (m, n) = check_colsum(&dy.shape, &db.shape)?;
        db.put(&r::colsum(&dy.get(), m, n), acc);
        Ok(())
    }
}

// ---------------------------------------------------------------- f64 reference

pub mod reference {
    /// y[m,n] = x[m,k] · w[n,k]ᵀ + b[n].
    pub fn matmul_fwd(
        x: &[f64],
        w: &[f64],
        b: Option<&[f64]>,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f64> {
        assert_eq!(x.len(), m * k);
        assert_eq!(w.len(), n * k);
        let mut y = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = b.map_or(0.0, |b| b[j]);
                for p in 0..k {
                    s += x[i * k + p] * w[j * k + p];
                }
                y[i * n + j] = s;
            }
        }
        y
    }

    /// Gradients of [`matmul_fwd`]: dx = dy·w [m,k], dw = dyᵀ·x [n,k], db = column sums of dy
    /// [n].
    pub fn matmul_bwd(
        dy: &[f64],
        x: &[f64],
        w: &[f64],
        m: usize,
        n: usize,
        k: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0; m * k];
        let mut dw = vec![0.0; n * k];
        let mut db = vec![0.0; n];
        for i in 0..m {
            for j in 0..n {
                let g = dy[i * n + j];
                db[j] += g;
                for p in 0..k {
                    dx[i * k + p] += g * w[j * k + p];
                    dw[j * k + p] += g * x[i * k + p];
                }
            }
        }
        (dx, dw, db)
    }

    /// Column sums: out[j] = Σ_i a[i,j] for a [m,n].
    pub fn colsum(a: &[f64], m: usize, n: usize) -> Vec<f64> {
        let mut s = vec![0.0; n];
        for i in 0..m {
            for j in 0..n {
                s[j] += a[i * n + j];
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vec4_subgroup_kernels_take_the_training_strides_and_only_aligned_ones() {
        // y = x·Wᵀ, dx = dy·W, dW = dyᵀ·x of a [1024, 384, 128] layer, as gemm passes them.
        let (m, n, k) = (1024, 384, 128);
        let fwd = ((k, 1), (1, k), (m, n, k));
        let dx = ((n, 1), (k, 1), (m, k, n));
        let dw = ((1, n), (k, 1), (n, k, m));
        let takes = |v: &Kernel| [fwd, dx, dw].map(|(a, b, s)| accepts(v, a, b, s)).to_vec();
        assert_eq!(takes(&MM_SG_NT), [true, false, false]);
        assert_eq!(takes(&MM_SG_NN), [false, true, false]);
        assert_eq!(takes(&MM_SG_TN), [false, false, true]);
        for v in [&MM_SG, &MM_TILE16X8, &MM_GENERIC] {
            assert_eq!(takes(v), [true; 3], "{}", v.entry);
        }
        // Strides or K that are not multiples of 4 leave the scalar kernels.
        assert!(!accepts(&MM_SG_NT, (130, 1), (1, 130), (8, 8, 130)));
        assert!(!accepts(&MM_SG_NN, (8, 1), (6, 1), (8, 6, 8)));
        assert!(!accepts(&MM_SG_TN, (1, 6), (8, 1), (6, 8, 9)));
        assert!(accepts(&MM_SG_TN, (1, 8), (8, 1), (6, 8, 9)), "any K");
    }
}
