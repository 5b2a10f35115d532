//! Elementwise kernels over n elements: tanh-GELU forward and backward, the residual add and
//! its backward, scaling in place (`shaders/elementwise.wgsl`).

use super::{distinct, f32t, numel, same, u};
use crate::gpu::pipelines::kernel;
use crate::gpu::{Batch, Kernel, Tensor};
use anyhow::Result;

/// The uniform block (`Params` in `shaders/elementwise.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct ElementwiseParams {
    pub n: u32,
    /// Non-zero: accumulate into the outputs.
    pub acc: u32,
    /// The factor of `scale`.
    pub a: f32,
    pub _pad: u32,
}

impl ElementwiseParams {
    fn new(n: usize, acc: bool) -> Self {
        Self {
            n: u(n),
            acc: acc as u32,
            ..Default::default()
        }
    }
}

pub const GELU_FWD: Kernel = kernel!("elementwise", "gelu_fwd", ElementwiseParams);
pub const GELU_BWD: Kernel = kernel!("elementwise", "gelu_bwd", ElementwiseParams);
pub const ADD: Kernel = kernel!("elementwise", "add", ElementwiseParams);
pub const RESIDUAL_BWD: Kernel = kernel!("elementwise", "residual_bwd", ElementwiseParams);
pub const SCALE: Kernel = kernel!("elementwise", "scale", ElementwiseParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[&GELU_FWD, &GELU_BWD, &ADD, &RESIDUAL_BWD, &SCALE];

/// Every operand holds as many elements as the first. Returns that count.
pub fn check(shapes: &[&[usize]], what: &str) -> Result<usize> {
    for s in shapes {
        same(shapes[0], s, what)?;
    }
    Ok(numel(shapes[0]))
}

/// The GPU-side checks: f32 tensors of one length.
fn check_gpu(ts: &[&Tensor], what: &str) -> Result<usize> {
    for t in ts {
        f32t(t, what)?;
        same(&ts[0].shape, &t.shape, what)?;
    }
    Ok(ts[0].len())
}

/// y = gelu(x) (tanh approximation).
pub fn gelu(b: &mut Batch, x: &Tensor, y: &Tensor) -> Result<()> {
    let n = check_gpu(&[x, y], "gelu")?;
    distinct(&[x, y], "gelu")?;
    b.dispatch(
        &GELU_FWD,
        &ElementwiseParams::new(n, false),
        &[("x", x), ("out", y)],
        n,
    )
}

/// dx (+)= gelu'(x)·dy.
pub fn gelu_bwd(b: &mut Batch, x: &Tensor, dy: &Tensor, dx: &Tensor, acc: bool) -> Result<()> {
    let n = check_gpu(&[x, dy, dx], "gelu_bwd")?;
    distinct(&[x, dy, dx], "gelu_bwd")?;
    b.dispatch(
        &GELU_BWD,
        &ElementwiseParams::new(n, acc),
        &[("x", x), ("y", dy), ("out", dx)],
        n,
    )
}

/// y = a + b.
pub fn add(b: &mut Batch, x: &Tensor, y: &Tensor, out: &Tensor) -> Result<()> {
    let n = check_gpu(&[x, y, out], "add")?;
    distinct(&[x, out], "add")?;
    distinct(&[y, out], "add")?;
    b.dispatch(
        &ADD,
        &ElementwiseParams::new(n, false),
        &[("x", x), ("y", y), ("out", out)],
        n,
    )
}

/// Residual backward: da (+)= dy, db (+)= dy.
pub fn residual_bwd(b: &mut Batch, dy: &Tensor, da: &Tensor, db: &Tensor, acc: bool) -> Result<()> {
    let n = check_gpu(&[dy, da, db], "residual_bwd")?;
    distinct(&[dy, da, db], "residual_bwd")?;
    b.dispatch(
        &RESIDUAL_BWD,
        &ElementwiseParams::new(n, acc),
        &[("x", dy), ("out", da), ("out2", db)],
        n,
    )
}

/// x = a·x, in place (e.g. averaging gradients accumulated over micro-batches).
pub fn scale(b: &mut Batch, x: &Tensor, a: f32) -> Result<()> {
    let n = check_gpu(&[x], "scale")?;
    let p = ElementwiseParams {
        a,
        ..ElementwiseParams::new(n, false)
    };
    b.dispatch(&SCALE, &p, &[("out", x)], n)
}

pub mod cpu {
    use super::super::CpuTensor;
    use super::{check, reference as r};
    use anyhow::Result;

    pub fn gelu(x: &CpuTensor, y: &CpuTensor) -> Result<()> {
        check(&[&x.shape, &y.shape], "gelu")?;
        y.put(&r::gelu_fwd(&x.get()), false);
        Ok(())
    }

    pub fn gelu_bwd(x: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor, acc: bool) -> Result<()> {
        check(&[&x.shape, &dy.shape, &dx.shape], "gelu_bwd")?;
        dx.put(&r::gelu_bwd(&x.get(), &dy.get()), acc);
        Ok(())
    }

    pub fn add(a: &CpuTensor, b: &CpuTensor, y: &CpuTensor) -> Result<()> {
        check(&[&a.shape, &b.shape, &y.shape], "add")?;
        y.put(&r::residual_fwd(&a.get(), &b.get()), false);
        Ok(())
    }

    pub fn residual_bwd(dy: &CpuTensor, da: &CpuTensor, db: &CpuTensor, acc: bool) -> Result<()> {
        check(&[&dy.shape, &da.shape, &db.shape], "residual_bwd")?;
        let g = dy.get();
        da.put(&g, acc);
        db.put(&g, acc);
        Ok(())
    }

    pub fn scale(x: &CpuTensor, a: f32) -> Result<()> {
        x.put(&r::scale(&x.get(), a as f64), false);
        Ok(())
    }
}

pub mod reference {
    const GELU_S: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)
    const GELU_A: f64 = 0.044715;

    /// tanh-GELU.
    pub fn gelu_fwd(x: &[f64]) -> Vec<f64> {
        x.iter()
            .map(|&v| 0.5 * v * (1.0 + (GELU_S * (v + GELU_A * v * v * v)).tanh()))
            .collect()
    }

    /// dx = gelu'(x) · dy.
    pub fn gelu_bwd(x: &[f64], dy: &[f64]) -> Vec<f64> {
        x.iter()
            .zip(dy)
            .map(|(&v, &g)| {
                let t = (GELU_S * (v + GELU_A * v * v * v)).tanh();
                let local = 0.5 * (1.0 + t)
                    + 0.5 * v * (1.0 - t * t) * GELU_S * (1.0 + 3.0 * GELU_A * v * v);
                local * g
            })
            .collect()
    }

    /// y = a + b.
    pub fn residual_fwd(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    /// y = a·x.
    pub fn scale(x: &[f64], a: f64) -> Vec<f64> {
        x.iter().map(|v| a * v).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::Gpu;

    #[test]
    fn scale_matches_reference_in_place() {
        let gpu = Gpu::new(None).unwrap();
        let n = 4099;
        let x: Vec<f32> = (0..n)
            .map(|i| ((i * 37) % 101) as f32 * 0.03 - 1.5)
            .collect();
        let t = gpu.upload(&x, &[n]).unwrap();
        let mut b = gpu.batch();
        scale(&mut b, &t, 0.25).unwrap();
        b.run().unwrap();
        let want = reference::scale(&super::super::to_f64(&x), 0.25);
        let got = gpu.read(&t).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (*g as f64 - w).abs() <= 1e-6 * w.abs().max(1.0),
                "{i}: {g} vs {w}"
            );
        }
        assert!(gpu.take_dispatched().contains("elementwise::scale"));
        let cpu = super::super::CpuTensor {
            shape: vec![n],
            data: std::cell::RefCell::new(x.clone()),
            ids: vec![],
        };
        cpu::scale(&cpu, 0.25).unwrap();
        assert_eq!(
            *cpu.data.borrow(),
            got,
            "a·x is exact in f32 for a power of two"
        );
    }
}
