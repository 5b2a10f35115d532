//! LayerNorm over the last dimension on the CPU (biased variance), forward and backward: rows
//! in parallel; the weight and bias gradients are column sums over the rows in order, columns
//! in parallel.

use super::super::CpuTensor;
use super::super::layernorm::{check, check_bwd};
use super::{dot, input, output, sum};
use anyhow::Result;
use rayon::prelude::*;

/// Rows per task.
const ROWS: usize = 16;
/// Columns per task of the weight and bias gradients.
const COLS: usize = 32;

/// LayerNorm forward: y, mean [rows], rstd [rows].
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
    let (xd, wd, bd) = (
        input(x, "layernorm x")?,
        input(w, "layernorm weight")?,
        input(b, "layernorm bias")?,
    );
    let mut yd = output(y, "layernorm y")?;
    let mut md = output(mean, "layernorm mean")?;
    let mut rd = output(rstd, "layernorm rstd")?;
    let (xd, wd, bd) = (&*xd, &*wd, &*bd);
    let (yd, md, rd) = (&mut *yd, &mut *md, &mut *rd);
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    yd.par_chunks_mut(ROWS * cols)
        .zip(md.par_chunks_mut(ROWS))
        .zip(rd.par_chunks_mut(ROWS))
        .enumerate()
        .for_each(|(ci, ((ys, ms), rs))| {
            for (i, yrow) in ys.chunks_mut(cols).enumerate() {
                let r = ci * ROWS + i;
                let xr = &xd[r * cols..(r + 1) * cols];
                let m = sum(xr) / cols as f32;
                let mut dev = [0f32; 8];
                let c8 = xr.chunks_exact(8);
                let tail = c8.remainder();
                for ch in c8 {
                    for l in 0..8 {
                        let d = ch[l] - m;
                        dev[l] += d * d;
                    }
                }
                let mut v = sum(&dev);
                for &t in tail {
                    v += (t - m) * (t - m);
                }
                let s = 1.0 / (v / cols as f32 + eps).sqrt();
                for (((o, &xv), &wv), &bv) in yrow.iter_mut().zip(xr).zip(&*wd).zip(&*bd) {
                    *o = (xv - m) * s * wv + bv;
                }
                ms[i] = m;
                rs[i] = s;
            }
        });
    Ok(())
}

/// LayerNorm backward: dx (+)= (dn − mean(dn) − n·mean(dn·n))·rstd, dw (+)= Σ n·dy,
/// db (+)= Σ dy (acc_w for dw and db).
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
    let (dyd, xd, wd) = (
        input(dy, "layernorm_bwd dy")?,
        input(x, "layernorm_bwd x")?,
        input(w, "layernorm_bwd weight")?,
    );
    let (md, rd) = (
        input(mean, "layernorm_bwd mean")?,
        input(rstd, "layernorm_bwd rstd")?,
    );
    let mut dxd = output(dx, "layernorm_bwd dx")?;
    let mut dwd = output(dw, "layernorm_bwd dw")?;
    let mut dbd = output(db, "layernorm_bwd db")?;
    let (dyd, xd, wd, md, rd) = (&*dyd, &*xd, &*wd, &*md, &*rd);
    let (dxd, dwd, dbd) = (&mut *dxd, &mut *dwd, &mut *dbd);
    if cols == 0 {
        return Ok(());
    }
    dxd.par_chunks_mut(ROWS * cols)
        .enumerate()
        .for_each(|(ci, dxs)| {
            let mut n = vec![0f32; cols];
            let mut dn = vec![0f32; cols];
            for (i, dxr) in dxs.chunks_mut(cols).enumerate() {
                let r = ci * ROWS + i;
                let (o, m, s) = (r * cols, md[r], rd[r]);
                for c in 0..cols {
                    n[c] = (xd[o + c] - m) * s;
                    dn[c] = wd[c] * dyd[o + c];
                }
                let mdn = sum(&dn) / cols as f32;
                let mdnn = dot(&dn, &n) / cols as f32;
                for c in 0..cols {
                    let v = (dn[c] - mdn - n[c] * mdnn) * s;
                    dxr[c] = if acc_dx { dxr[c] + v } else { v };
                }
            }
        });
    dwd.par_chunks_mut(COLS)
        .zip(dbd.par_chunks_mut(COLS))
        .enumerate()
        .for_each(|(ci, (dws, dbs))| {
            let c0 = ci * COLS;
            let w = dws.len();
            let (mut sw, mut sb) = ([0f64; COLS], [0f64; COLS]);
            for r in 0..rows {
                let (m, s) = (md[r], rd[r]);
                let o = r * cols + c0;
                for c in 0..w {
                    let g = dyd[o + c];
                    sw[c] += ((xd[o + c] - m) * s * g) as f64;
                    sb[c] += g as f64;
                }
            }
            for c in 0..w {
                dws[c] = if acc_w {
                    (dws[c] as f64 + sw[c]) as f32
                } else {
                    sw[c] as f32
                };
                dbs[c] = if acc_w {
                    (dbs[c] as f64 + sb[c]) as f32
                } else {
                    sb[c] as f32
                };
            }
        });
    Ok(())
}
