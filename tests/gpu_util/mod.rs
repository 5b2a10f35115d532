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

/// splitmix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
    pub fn below(&mut self, n: u32) -> u32 {
        (self.next_u64() % n as u64) as u32
    }
}

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
