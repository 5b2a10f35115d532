//! Matrix products on the CPU: the linear forward y = x·Wᵀ (+ b) and its backward products
//! dx = dy·W and dW = dyᵀ·x through `matrixmultiply::sgemm` (strided views, no transposes
//! copied), and the bias gradient (column sums) on rayon. "acc" adds into the output.

use super::super::CpuTensor;
use super::super::matmul::{check, check_colsum, check_dw, check_dx};
use super::math::widest;
use super::{Disjoint, input, output};
use anyhow::Result;
use rayon::prelude::*;

/// (row stride, column stride) of a matrix view of a slice.
pub(crate) type Strides = (usize, usize);

/// Elements a [rows, cols] view with these strides reaches (0 when empty).
fn span(rows: usize, cols: usize, (rs, cs): Strides) -> usize {
    if rows == 0 || cols == 0 {
        0
    } else {
        (rows - 1) * rs + (cols - 1) * cs + 1
    }
}

/// C[m,n] = α·A[m,k]·B[k,n] + β·C (β = 0: C is not read), with A(i,p) = a[i·rs + p·cs] and
/// likewise B and C. Panics when a view does not fit its slice.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    beta: f32,
    c: &mut [f32],
    sc: Strides,
) {
    let d = Disjoint::new(c);
    // SAFETY: `c` is borrowed mutably for the whole call, so the written range is ours alone.
    unsafe { gemm_into((m, n, k), alpha, a, sa, b, sb, beta, d, 0, sc) }
}

/// [`gemm`] writing the view of `c` that starts at `offset`.
///
/// # Safety
/// No other task reads or writes the elements of that view while this runs.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm_into(
    (m, n, k): (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    sa: Strides,
    b: &[f32],
    sb: Strides,
    beta: f32,
    c: Disjoint,
    offset: usize,
    sc: Strides,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(span(m, k, sa) <= a.len(), "gemm: A too small");
    assert!(span(k, n, sb) <= b.len(), "gemm: B too small");
    assert!(offset + span(m, n, sc) <= c.len(), "gemm: C too small");
    let i = |v: usize| v as isize;
    // SAFETY: every view is in bounds (checked above); the caller owns C's view.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            i(sa.0),
            i(sa.1),
            b.as_ptr(),
            i(sb.0),
            i(sb.1),
            beta,
            c.at(offset),
            i(sc.0),
            i(sc.1),
        )
    }
}

/// Linear forward: y[M,N] = x[M,K]·w[N,K]ᵀ (+ bias[N]) (+ y if acc).
pub fn matmul(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
    y: &CpuTensor,
    acc: bool,
) -> Result<()> {
    let (m, n, k) = check(&x.shape, &w.shape, bias.map(|t| &t.shape[..]), &y.shape)?;
    let (xd, wd) = (input(x, "matmul x")?, input(w, "matmul weight")?);
    let bd = bias.map(|b| input(b, "matmul bias")).transpose()?;
    let mut yd = output(y, "matmul output")?;
    let bd = bd.as_deref();
    if m == 0 || n == 0 {
        return Ok(());
    }
    let beta = match &bd {
        Some(b) => {
            // The bias first (into or onto y), then the product added to it.
            yd.par_chunks_mut(n).for_each(|row| {
                if acc {
                    row.iter_mut().zip(b.iter()).for_each(|(o, v)| *o += v);
                } else {
                    row.copy_from_slice(b);
                }
            });
            1.0
        }
        None => acc as u8 as f32,
    };
    gemm(
        (m, n, k),
        1.0,
        &xd,
        (k, 1),
        &wd,
        (1, k),
        beta,
        &mut yd,
        (n, 1),
    );
    Ok(())
}

/// pre = x·wᵀ + bias, y = gelu(pre).
pub fn matmul_gelu(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: &CpuTensor,
    pre: &CpuTensor,
    y: &CpuTensor,
) -> Result<()> {
    matmul(x, w, Some(bias), pre, false)?;
    super::elementwise::gelu(pre, y)
}

/// dx = gelu'(pre) ∘ (dy·w): the product, then the activation's derivative in place.
pub fn matmul_dx_gelu(
    dy: &CpuTensor,
    w: &CpuTensor,
    pre: &CpuTensor,
    dx: &CpuTensor,
) -> Result<()> {
    matmul_dx(dy, w, dx, false)?;
    super::elementwise::gelu_bwd_in_place(pre, dx)
}

/// y = r + (x·wᵀ + bias): r copied into y, the product accumulated onto it.
pub fn matmul_residual(
    x: &CpuTensor,
    w: &CpuTensor,
    bias: Option<&CpuTensor>,
    r: &CpuTensor,
    y: &CpuTensor,
) -> Result<()> {
    check(&x.shape, &w.shape, bias.map(|t| &t.shape[..]), &y.shape)?;
    {
        let rd = input(r, "matmul_residual r")?;
        let mut yd = output(y, "matmul_residual y")?;
        anyhow::ensure!(
            rd.len() == yd.len(),
            "matmul_residual: residual {:?} and output {:?} differ in size",
            r.shape,
            y.shape
        );
        yd.copy_from_slice(&rd);
    }
    matmul(x, w, bias, y, true)
}

/// Linear backward, input gradient: dx[M,K] (+)= dy[M,N]·w[N,K].
pub fn matmul_dx(dy: &CpuTensor, w: &CpuTensor, dx: &CpuTensor, acc: bool) -> Result<()> {
    let (m, n, k) = check_dx(&dy.shape, &w.shape, &dx.shape)?;
    let (dyd, wd) = (input(dy, "matmul_dx dy")?, input(w, "matmul_dx weight")?);
    let mut dxd = output(dx, "matmul_dx dx")?;
    let beta = acc as u8 as f32;
    gemm(
        (m, k, n),
        1.0,
        &dyd,
        (n, 1),
        &wd,
        (k, 1),
        beta,
        &mut dxd,
        (k, 1),
    );
    Ok(())
}

/// Linear backward, weight gradient: dw[N,K] (+)= dy[M,N]ᵀ·x[M,K].
pub fn matmul_dw(dy: &CpuTensor, x: &CpuTensor, dw: &CpuTensor, acc: bool) -> Result<()> {
    let (m, n, k) = check_dw(&dy.shape, &x.shape, &dw.shape)?;
    let (dyd, xd) = (input(dy, "matmul_dw dy")?, input(x, "matmul_dw x")?);
    let mut dwd = output(dw, "matmul_dw dw")?;
    let beta = acc as u8 as f32;
    gemm(
        (n, k, m),
        1.0,
        &dyd,
        (1, n),
        &xd,
        (k, 1),
        beta,
        &mut dwd,
        (k, 1),
    );
    Ok(())
}

/// Columns per task of the column sums.
const COLS: usize = 64;

/// Bias gradient: db[N] (+)= Σ_rows dy[M,N], rows in order (f64 sums), columns in parallel.
pub fn colsum(dy: &CpuTensor, db: &CpuTensor, acc: bool) -> Result<()> {
    let (_, n) = check_colsum(&dy.shape, &db.shape)?;
    let dyd = input(dy, "colsum dy")?;
    let mut dbd = output(db, "colsum db")?;
    let (dyd, dbd) = (&*dyd, &mut *dbd);
    dbd.par_chunks_mut(COLS)
        .enumerate()
        .for_each(|(ci, out)| colsum_cols(out, dyd, ci * COLS, n, acc));
    Ok(())
}

widest! {
    /// out[j] (+)= Σ_rows dy[r, j0 + j] for the columns of `out`, rows in order (f64 sums).
    fn colsum_cols(out: &mut [f32], dy: &[f32], j0: usize, n: usize, acc: bool) {
        let mut s = [0f64; COLS];
        for row in dy.chunks_exact(n) {
            for (a, &v) in s.iter_mut().zip(&row[j0..j0 + out.len()]) {
                *a += v as f64;
            }
        }
        for (o, &v) in out.iter_mut().zip(&s) {
            *o = if acc { (*o as f64 + v) as f32 } else { v as f32 };
        }
    }
}
