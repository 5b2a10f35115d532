//! Helpers shared by the GPU integration tests: one device per test process, a seeded PRNG,
//! poisoned outputs and error norms.
#![allow(dead_code)]

use pai::gpu::{Gpu, Tensor};
use std::sync::OnceLock;

/// The process's device (lavapipe in CI).
pub fn gpu() -> &'static Gpu {
    static G: OnceLock<Gpu> = OnceLock::new();
    G.get_or_init(|| Gpu::new(None).expect("a wgpu adapter (install mesa-vulkan-drivers)"))
}

/// The shared seeded generator (`common::Rng`), with `below` over u32.
pub use crate::common::Rng;

/// A new output tensor filled with NaN, so an element the kernel fails to write is caught.
pub fn poisoned(shape: &[usize]) -> Tensor {
    let t = gpu().zeros(shape).unwrap();
    gpu().poison(&t);
    t
}

pub fn up(x: &[f32], shape: &[usize]) -> Tensor {
    gpu().upload(x, shape).unwrap()
}

pub fn read(t: &Tensor) -> Vec<f32> {
    gpu().read(t).unwrap()
}

pub fn f64s(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// ‖out − ref‖ / ‖ref‖ (‖out − ref‖ when ref is zero).
pub fn rel_err(out: &[f32], reference: &[f64]) -> f64 {
    assert_eq!(out.len(), reference.len(), "length mismatch");
    let mut num = 0.0;
    let mut den = 0.0;
    for (&o, &r) in out.iter().zip(reference) {
        num += (o as f64 - r) * (o as f64 - r);
        den += r * r;
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

pub fn rel_err64(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let den: f64 = b.iter().map(|y| y * y).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Asserts every element is finite (no poison left) and the relative error is under `tol`.
pub fn assert_close(what: &str, out: &[f32], reference: &[f64], tol: f64) {
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        panic!(
            "{what}: element {i} of {} is {} (unwritten or overflowed)",
            out.len(),
            out[i]
        );
    }
    let e = rel_err(out, reference);
    assert!(e < tol, "{what}: relative error {e:e} >= {tol:e}");
}

/// Central finite differences of a scalar function of x, in f64.
pub fn fd_grad(f: impl Fn(&[f64]) -> f64, x: &[f64], h: f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            let orig = xp[i];
            xp[i] = orig + h;
            let a = f(&xp);
            xp[i] = orig - h;
            let b = f(&xp);
            xp[i] = orig;
            (a - b) / (2.0 * h)
        })
        .collect()
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
