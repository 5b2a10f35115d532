//! Elementwise ops on the CPU: tanh-GELU forward and backward, the residual add and its
//! backward, in fixed chunks on rayon. GELU is written through the logistic function
//! (0.5·(1 + tanh u) = σ(2u)), which vectorizes.

use super::super::CpuTensor;
use super::super::elementwise::check;
use super::math::{sigmoid, widest};
use super::{CHUNK, input, output};
use anyhow::Result;
use rayon::prelude::*;

const GELU_S: f32 = 0.797_884_6; // sqrt(2/pi)
const GELU_A: f32 = 0.044715;

/// y = gelu(x) (tanh approximation).
pub fn gelu(x: &CpuTensor, y: &CpuTensor) -> Result<()> {
    check(&[&x.shape, &y.shape], "gelu")?;
    let xd = input(x, "gelu x")?;
    let mut yd = output(y, "gelu y")?;
    let (xd, yd) = (&*xd, &mut *yd);
    yd.par_chunks_mut(CHUNK)
        .zip(xd.par_chunks(CHUNK))
        .for_each(|(ys, xs)| gelu_chunk(ys, xs));
    Ok(())
}

widest! {
    fn gelu_chunk(ys: &mut [f32], xs: &[f32]) {
        for (o, &v) in ys.iter_mut().zip(xs) {
            *o = v * sigmoid(2.0 * GELU_S * (v + GELU_A * v * v * v));
        }
    }
}

/// dx (+)= gelu'(x)·dy.
pub fn gelu_bwd(x: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor, acc: bool) -> Result<()> {
    check(&[&x.shape, &dy.shape, &dx.shape], "gelu_bwd")?;
    let (xd, dyd) = (input(x, "gelu_bwd x")?, input(dy, "gelu_bwd dy")?);
    let mut dxd = output(dx, "gelu_bwd dx")?;
    let (xd, dyd, dxd) = (&*xd, &*dyd, &mut *dxd);
    dxd.par_chunks_mut(CHUNK)
        .zip(xd.par_chunks(CHUNK).zip(dyd.par_chunks(CHUNK)))
        .for_each(|(os, (xs, gs))| gelu_bwd_chunk(os, xs, gs, acc));
    Ok(())
}

widest! {
    fn gelu_bwd_chunk(os: &mut [f32], xs: &[f32], gs: &[f32], acc: bool) {
        for ((o, &v), &g) in os.iter_mut().zip(xs).zip(gs) {
            // s = 0.5·(1 + t), so 0.5·(1 − t²) = 2·s·(1 − s).
            let s = sigmoid(2.0 * GELU_S * (v + GELU_A * v * v * v));
            let local = s + 2.0 * v * s * (1.0 - s) * GELU_S * (1.0 + 3.0 * GELU_A * v * v);
            *o = if acc { *o + local * g } else { local * g };
        }
    }
}

/// d = gelu'(x)·d, in place (the activation's backward applied to a product's output).
pub fn gelu_bwd_in_place(x: &CpuTensor, d: &CpuTensor) -> Result<()> {
    check(&[&x.shape, &d.shape], "gelu_bwd_in_place")?;
    let xd = input(x, "gelu_bwd x")?;
    let mut dd = output(d, "gelu_bwd d")?;
    let (xd, dd) = (&*xd, &mut *dd);
    dd.par_chunks_mut(CHUNK)
        .zip(xd.par_chunks(CHUNK))
        .for_each(|(os, xs)| gelu_scale_chunk(os, xs));
    Ok(())
}

widest! {
    fn gelu_scale_chunk(os: &mut [f32], xs: &[f32]) {
        for (o, &v) in os.iter_mut().zip(xs) {
            let s = sigmoid(2.0 * GELU_S * (v + GELU_A * v * v * v));
            let local = s + 2.0 * v * s * (1.0 - s) * GELU_S * (1.0 + 3.0 * GELU_A * v * v);
            *o *= local;
        }
    }
}

/// y = a + b.
pub fn add(a: &CpuTensor, b: &CpuTensor, y: &CpuTensor) -> Result<()> {
    check(&[&a.shape, &b.shape, &y.shape], "add")?;
    let (ad, bd) = (input(a, "add a")?, input(b, "add b")?);
    let mut yd = output(y, "add y")?;
    let (ad, bd, yd) = (&*ad, &*bd, &mut *yd);
    yd.par_chunks_mut(CHUNK)
        .zip(ad.par_chunks(CHUNK).zip(bd.par_chunks(CHUNK)))
        .for_each(|(ys, (xs, zs))| {
            for ((o, &u), &v) in ys.iter_mut().zip(xs).zip(zs) {
                *o = u + v;
            }
        });
    Ok(())
}

/// Residual backward: da (+)= dy, db (+)= dy.
pub fn residual_bwd(dy: &CpuTensor, da: &CpuTensor, db: &CpuTensor, acc: bool) -> Result<()> {
    check(&[&dy.shape, &da.shape, &db.shape], "residual_bwd")?;
    let g = input(dy, "residual_bwd dy")?;
    let mut a = output(da, "residual_bwd da")?;
    let mut b = output(db, "residual_bwd db")?;
    let (g, a, b) = (&*g, &mut *a, &mut *b);
    a.par_chunks_mut(CHUNK)
        .zip(b.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(xs, (ys, gs))| {
            if acc {
                for ((x, y), &v) in xs.iter_mut().zip(ys.iter_mut()).zip(gs) {
                    *x += v;
                    *y += v;
                }
            } else {
                xs.copy_from_slice(gs);
                ys.copy_from_slice(gs);
            }
        });
    Ok(())
}
