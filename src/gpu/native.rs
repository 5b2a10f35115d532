//! The native CPU adapter (`--adapter cpu`, [`crate::gpu::ops::NativeOps`]): its reserved name,
//! how it describes itself (threads), its measured speed for `pai doctor`, and [`Device`], what a
//! step runs on: a wgpu device or this adapter. Never chosen by default: the WGSL kernels are
//! the product's path; this one serves machines without a GPU driver (CI runners, cloud VMs).

use super::Gpu;
use std::time::Instant;

/// The reserved adapter name of the native implementation: `--adapter cpu` (exact,
/// case-insensitive) selects it, never a wgpu adapter whose name or type mentions a CPU.
pub const NAME: &str = "cpu";

/// True when an adapter preference names the native adapter.
pub fn is_native(pref: Option<&str>) -> bool {
    pref.is_some_and(|p| p.trim().eq_ignore_ascii_case(NAME))
}

/// Threads the rayon ops run on (the calling thread's pool; `RAYON_NUM_THREADS` sets the
/// global one).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// Threads sgemm runs on: matrixmultiply's own pool, `MATMUL_NUM_THREADS` or the physical
/// cores, 1 to 4 (its rule).
pub fn matmul_threads() -> usize {
    match std::env::var("MATMUL_NUM_THREADS") {
        Ok(s) if !s.is_empty() => s.parse().unwrap_or(1),
        _ => num_cpus::get_physical(),
    }
    .clamp(1, 4)
}

/// How the adapter names itself in records and reports: "cpu (native f32, N threads)".
pub fn describe() -> String {
    let (t, m) = (threads(), matmul_threads());
    let s = if t == 1 { "" } else { "s" };
    if t == m {
        format!("{NAME} (native f32, {t} thread{s})")
    } else {
        format!("{NAME} (native f32, {t} thread{s}, sgemm {m})")
    }
}

/// The product shape [`sgemm_gflops`] measures: the default model's qkv projection
/// (B·T = 8·128 rows, 3C = 384 outputs, C = 128 inputs).
pub const PROBE_SHAPE: (usize, usize, usize) = (1024, 384, 128);

/// sgemm's speed at [`PROBE_SHAPE`] in GFLOP/s: the best of a few ~0.1 s rounds.
pub fn sgemm_gflops() -> f64 {
    let (m, n, k) = PROBE_SHAPE;
    let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..n * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let mut c = vec![0f32; m * n];
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        let mut reps = 0;
        while reps < 2 || t.elapsed().as_secs_f64() < 0.03 {
            crate::gpu::ops::native::matmul::gemm(
                (m, n, k),
                1.0,
                &a,
                (k, 1),
                &b,
                (1, k),
                0.0,
                &mut c,
                (n, 1),
            );
            reps += 1;
        }
        let flops = 2.0 * (m * n * k) as f64 * reps as f64;
        best = best.max(flops / t.elapsed().as_secs_f64() / 1e9);
    }
    best
}

/// What a step's operations run on.
#[derive(Clone, Copy)]
pub enum Device<'a> {
    /// A wgpu device: the WGSL kernels ([`crate::gpu::ops::GpuOps`]).
    Wgpu(&'a Gpu),
    /// The native CPU adapter ([`crate::gpu::ops::NativeOps`]).
    Native,
}

impl<'a> From<&'a Gpu> for Device<'a> {
    fn from(g: &'a Gpu) -> Self {
        Device::Wgpu(g)
    }
}
