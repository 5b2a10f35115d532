//! LayerNorm over the last dimension on the CPU (biased variance), forward and backward: rows
//! in parallel; the weight and bias gradients are summed per fixed block of rows (f64), the
//! blocks then added in order.

use super::super::CpuTensor;
use super::super::layernorm::{check, check_bwd};
use super::math::widest;
use super::{dot, input, output, sum};
use anyhow::Result;
use rayon::prelude::*;

/// Rows per task (a fixed chunking: the weight and bias gradients add the tasks' sums in
/// task order).
const ROWS: usize = 16;

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
    // dx row by row; each task also sums its rows' n·dy and dy (f64) into its own slot, and
    // the slots are added in task order: a fixed order for any number of threads.
    let tasks = rows.div_ceil(ROWS);
    let mut part = vec![0f64; tasks * 2 * cols];
    dxd.par_chunks_mut(ROWS * cols)
        .zip(part.par_chunks_mut(2 * cols))
        .enumerate()
        .for_each(|(ci, (dxs, pw))| {
            let r0 = ci * ROWS;
            let span = r0 * cols..r0 * cols + dxs.len();
            let (xs, dys) = (&xd[span.clone()], &dyd[span]);
            let n = dxs.len() / cols;
            bwd_rows(
                dxs,
                xs,
                dys,
                wd,
                &md[r0..r0 + n],
                &rd[r0..r0 + n],
                acc_dx,
                pw,
            );
        });
    let (pw, pb) = (&mut dwd[..], &mut dbd[..]);
    let mut sw = vec![0f64; cols];
    let mut sb = vec![0f64; cols];
    for slot in part.chunks(2 * cols) {
        let (a, b) = slot.split_at(cols);
        sw.iter_mut().zip(a).for_each(|(s, v)| *s += v);
        sb.iter_mut().zip(b).for_each(|(s, v)| *s += v);
    }
    for c in 0..cols {
        pw[c] = if acc_w {
            (pw[c] as f64 + sw[c]) as f32
        } else {
            sw[c] as f32
        };
        pb[c] = if acc_w {
            (pb[c] as f64 + sb[c]) as f32
        } else {
            sb[c] as f32
        };
    }
    Ok(())
}

widest! {
    /// dx (+)= (dn − mean(dn) − n·mean(dn·n))·rstd for the rows of `xs`; pw[..C] += Σ n·dy and
    /// pw[C..] += Σ dy over them (in row order).
    fn bwd_rows(
        dxs: &mut [f32],
        xs: &[f32],
        dys: &[f32],
        w: &[f32],
        means: &[f32],
        rstds: &[f32],
        acc: bool,
        pw: &mut [f64],
    ) {
        let cols = w.len();
        let mut n = vec![0f32; cols];
        let mut dn = vec![0f32; cols];
        let (pwn, pdb) = pw.split_at_mut(cols);
        for (i, dxr) in dxs.chunks_mut(cols).enumerate() {
            let (xr, dyr) = (&xs[i * cols..(i + 1) * cols], &dys[i * cols..(i + 1) * cols]);
            let (m, s) = (means[i], rstds[i]);
            for c in 0..cols {
                n[c] = (xr[c] - m) * s;
                dn[c] = w[c] * dyr[c];
            }
            let mdn = sum(&dn) / cols as f32;
            let mdnn = dot(&dn, &n) / cols as f32;
            for c in 0..cols {
                let v = (dn[c] - mdn - n[c] * mdnn) * s;
                dxr[c] = if acc { dxr[c] + v } else { v };
                pwn[c] += (n[c] * dyr[c]) as f64;
                pdb[c] += dyr[c] as f64;
            }
        }
    }
}
