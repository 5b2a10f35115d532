//! LayerNorm over the last dimension (biased variance), forward and backward
//! (`shaders/layernorm.wgsl`).

use super::{distinct, numel, rows_cols, same, u};
use crate::gpu::pipelines::kernel;
use crate::gpu::{Batch, Kernel, Tensor};
use anyhow::{Result, ensure};

/// The uniform block (`Params` in `shaders/layernorm.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct LayernormParams {
    pub rows: u32,
    pub cols: u32,
    pub eps: f32,
    /// Non-zero: accumulate into the outputs.
    pub acc: u32,
}

pub const LN_FWD: Kernel = kernel!("layernorm", "ln_fwd", LayernormParams);
pub const LN_BWD_DX: Kernel = kernel!("layernorm", "ln_bwd_dx", LayernormParams);
pub const LN_BWD_DWDB: Kernel = kernel!("layernorm", "ln_bwd_dwdb", LayernormParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[&LN_FWD, &LN_BWD_DX, &LN_BWD_DWDB];

/// Forward: x [rows, cols], w and b [cols], y like x, mean and rstd [rows]. Returns
/// (rows, cols).
pub fn check(
    x: &[usize],
    w: &[usize],
    b: &[usize],
    y: &[usize],
    mean: &[usize],
    rstd: &[usize],
) -> Result<(usize, usize)> {
    let (rows, cols) = rows_cols(x);
    ensure!(
        numel(w) == cols && numel(b) == cols,
        "layernorm: weight {w:?} / bias {b:?} should have {cols} elements"
    );
    same(x, y, "layernorm x/y")?;
    ensure!(
        numel(mean) == rows && numel(rstd) == rows,
        "layernorm: mean/rstd should have {rows} elements"
    );
    Ok((rows, cols))
}

/// Backward: dy and dx like x, w/dw/db [cols], mean and rstd [rows]. Returns (rows, cols).
#[allow(clippy::too_many_arguments)]
pub fn check_bwd(
    dy: &[usize],
    x: &[usize],
    w: &[usize],
    mean: &[usize],
    rstd: &[usize],
    dx: &[usize],
    dw: &[usize],
    db: &[usize],
) -> Result<(usize, usize)> {
    let (rows, cols) = rows_cols(x);
    same(x, dy, "layernorm_bwd x/dy")?;
    same(x, dx, "layernorm_bwd x/dx")?;
    ensure!(
        numel(w) == cols && numel(dw) == cols && numel(db) == cols,
        "layernorm_bwd: w/dw/db should have {cols} elements"
    );
    ensure!(
        numel(mean) == rows && numel(rstd) == rows,
        "layernorm_bwd: mean/rstd should have {rows} elements"
    );
    Ok((rows, cols))
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
    let (rows, cols) = check(
        &x.shape,
        &w.shape,
        &bias.shape,
        &y.shape,
        &mean.shape,
        &rstd.shape,
    )?;
    distinct(&[x, y, mean, rstd], "layernorm")?;
    let p = LayernormParams {
        rows: u(rows),
        cols: u(cols),
        eps,
        acc: 0,
    };
    b.dispatch(
        &LN_FWD,
        &p,
        &[
            ("x", x),
            ("w", w),
            ("b", bias),
            ("out", y),
            ("mean", mean),
            ("rstd", rstd),
        ],
        rows,
    )
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
    let (rows, cols) = check_bwd(
        &dy.shape,
        &x.shape,
        &w.shape,
        &mean.shape,
        &rstd.shape,
        &dx.shape,
        &dw.shape,
        &db.shape,
    )?;
    distinct(&[dy, x, dx, dw, db, mean, rstd], "layernorm_bwd")?;
    let p = LayernormParams {
        rows: u(rows),
        cols: u(cols),
        eps: 0.0,
        acc: acc_dx as u32,
    };
    b.dispatch(
        &LN_BWD_DX,
        &p,
        &[
            ("x", x),
            ("w", w),
            ("dout", dy),
            ("out", dx),
            ("mean", mean),
            ("rstd", rstd),
        ],
        rows,
    )?;
    let p = LayernormParams {
        acc: acc_w as u32,
        ..p
    };
    b.dispatch(
        &LN_BWD_DWDB,
        &p,
        &[
            ("x", x),
            ("dout", dy),
            ("out", dw),
            ("out2", db),
            ("mean", mean),
            ("rstd", rstd),
        ],
        cols,
    )
}

pub mod cpu {
    use super::super::CpuTensor;
    use super::{check, check_bwd, reference as r};
    use anyhow::Result;

    pub fn layernorm(
        x: &CpuTensor,
        w: &CpuTensor,
        b: &CpuTensor,
        y: &CpuTensor,
        mean: &CpuTensor,
        rstd: &CpuTensor,
        eps: f32,
    ) -> Result<()> {
        let (rows, cols) = check(
            &x.shape,
            &w.shape,
            &b.shape,
            &y.shape,
            &mean.shape,
            &rstd.shape,
        )?;
        let (yy, m, rs) = r::layernorm_fwd(&x.get(), &w.get(), &b.get(), rows, cols, eps as f64);
        y.put(&yy, false);
        mean.put(&m, false);
        rstd.put(&rs, false);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn layernorm_bwd(
        dy: &CpuTensor,
        x: &CpuTensor,
        w: &CpuTensor,
        mean: &CpuTensor,
        rstd: &CpuTensor,
        dx: &CpuTensor,
        dw: &CpuTensor,
        db: &CpuTensor,
        acc_dx: bool,
        acc_w: bool,
    ) -> Result<()> {
        let (rows, cols) = check_bwd(
            &dy.shape,
            &x.shape,
            &w.shape,
            &mean.shape,
            &rstd.shape,
            &dx.shape,
            &dw.shape,
            &db.shape,
        )?;
        let (a, b, c) = r::layernorm_bwd(
            &dy.get(),
            &x.get(),
            &w.get(),
            &mean.get(),
            &rstd.get(),
            rows,
            cols,
        );
        dx.put(&a, acc_dx);
        dw.put(&b, acc_w);
        db.put(&c, acc_w);
        Ok(())
    }
}

pub mod reference {
    /// LayerNorm forward over rows of x [rows, cols]: (y, mean, rstd).
    pub fn layernorm_fwd(
        x: &[f64],
        w: &[f64],
        b: &[f64],
        rows: usize,
        cols: usize,
        eps: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut y = vec![0.0; rows * cols];
        let mut mean = vec![0.0; rows];
        let mut rstd = vec![0.0; rows];
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let m = row.iter().sum::<f64>() / cols as f64;
            let v = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / cols as f64;
            let rs = 1.0 / (v + eps).sqrt();
            for c in 0..cols {
                y[r * cols + c] = (row[c] - m) * rs * w[c] + b[c];
            }
            mean[r] = m;
            rstd[r] = rs;
        }
        (y, mean, rstd)
    }

    /// LayerNorm backward: (dx, dw, db).
    pub fn layernorm_bwd(
        dy: &[f64],
        x: &[f64],
        w: &[f64],
        mean: &[f64],
        rstd: &[f64],
        rows: usize,
        cols: usize,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut dx = vec![0.0; rows * cols];
        let mut dw = vec![0.0; cols];
        let mut db = vec![0.0; cols];
        for r in 0..rows {
            let o = r * cols;
            let n: Vec<f64> = (0..cols).map(|c| (x[o + c] - mean[r]) * rstd[r]).collect();
            let dn: Vec<f64> = (0..cols).map(|c| w[c] * dy[o + c]).collect();
            let mdn = dn.iter().sum::<f64>() / cols as f64;
            let mdnn = dn.iter().zip(&n).map(|(a, b)| a * b).sum::<f64>() / cols as f64;
            for c in 0..cols {
                dx[o + c] = (dn[c] - mdn - n[c] * mdnn) * rstd[r];
                dw[c] += n[c] * dy[o + c];
                db[c] += dy[o + c];
            }
        }
        (dx, dw, db)
    }
}
