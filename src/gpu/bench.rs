//! `pai bench kernels`: kernel throughput on the chosen adapter, each beside a CPU baseline
//! measured in the same run (matmul: the `matrixmultiply` crate on all cores; attention and
//! quantization: the plain-Rust references).

use super::ops::attention::{self, AttnShape};
use super::ops::matmul as mm;
use super::ops::quant::{self, Format, QuantParams};
use super::reference;
use super::{Batch, Gpu, KernelPath};
use crate::formats::ggml::QK;
use anyhow::Result;
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, Serialize)]
pub struct MatmulBench {
    /// [m, n, k]: an m×n result summed over k (forward: y[m,n] = x[m,k]·w[n,k]ᵀ).
    pub shape: [usize; 3],
    /// What the shape is (e.g. "qkv [B·T, 3C, C]").
    pub what: String,
    /// The kernel variant the runtime chose.
    pub kernel: String,
    pub gflops: f64,
    pub cpu_gflops: f64,
    /// gflops / cpu_gflops.
    pub ratio: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttentionBench {
    /// [B, T, C, NH].
    pub shape: [usize; 4],
    /// The default kernel path (tiled products, [`KernelPath::Fused`]).
    pub forward_ms: f64,
    pub backward_ms: f64,
    /// The first release's per-row kernels ([`KernelPath::Release1`]), same run.
    pub release1_forward_ms: f64,
    pub release1_backward_ms: f64,
    pub cpu_forward_ms: f64,
    pub cpu_backward_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct QuantBench {
    pub format: String,
    /// Elements quantized per run.
    pub elements: usize,
    /// GB/s of f32 input, data already on the device.
    pub gbps: f64,
    /// The plain-Rust reference quantizer, one thread.
    pub cpu_gbps: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelBench {
    pub adapter: String,
    pub backend: String,
    pub device_type: String,
    pub cpu_threads: usize,
    pub matmul: Vec<MatmulBench>,
    pub attention: Vec<AttentionBench>,
    pub quantize: Vec<QuantBench>,
    pub seconds: f64,
}

/// Deterministic pseudo-random data in [-1, 1).
fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Seconds per repetition of `f` on the GPU: one warm-up batch, then batches of doubling size
/// until one takes at least `budget`.
fn time_gpu(
    gpu: &Gpu,
    budget: Duration,
    mut f: impl FnMut(&mut Batch) -> Result<()>,
) -> Result<f64> {
    let mut b = gpu.batch();
    f(&mut b)?;
    b.run()?;
    let mut reps = 1;
    loop {
        let t = Instant::now();
        let mut b = gpu.batch();
        for _ in 0..reps {
            f(&mut b)?;
        }
        b.run()?;
        let el = t.elapsed();
        if el >= budget || reps >= 256 {
            return Ok(el.as_secs_f64() / reps as f64);
        }
        reps *= 2;
    }
}

/// Seconds per repetition of a CPU closure (same doubling scheme).
fn time_cpu(budget: Duration, mut f: impl FnMut()) -> f64 {
    f();
    let mut reps = 1;
    loop {
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        let el = t.elapsed();
        if el >= budget || reps >= 256 {
            return el.as_secs_f64() / reps as f64;
        }
        reps *= 2;
    }
}

/// C[m×n] = A[m×k]·B[k×n] with the given (row, column) strides of A and B.
#[allow(clippy::too_many_arguments)]
fn cpu_sgemm(
    (m, kk, n): (usize, usize, usize),
    a: &[f32],
    (rsa, csa): (usize, usize),
    b: &[f32],
    (rsb, csb): (usize, usize),
    c: &mut [f32],
) {
    assert!(a.len() >= m * kk && b.len() >= kk * n && c.len() >= m * n);
    // SAFETY: the asserts above bound every element the strides reach.
    unsafe {
        matrixmultiply::sgemm(
            m,
            kk,
            n,
            1.0,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

fn cpu_sgemm_nt(x: &[f32], w: &[f32], y: &mut [f32], m: usize, n: usize, kk: usize) {
    // SAFETY: the slices hold m*k, n*k and m*n elements, as the strides describe.
    unsafe {
        matrixmultiply::sgemm(
            m,
            kk,
            n,
            1.0,
            x.as_ptr(),
            kk as isize,
            1,
            w.as_ptr(),
            1,
            kk as isize,
            0.0,
            y.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Runs the kernel benchmark on the adapter `Gpu::new(adapter_pref)` picks (~1 minute on
/// lavapipe). `PAI_MATMUL_KERNEL` (an entry name, e.g. `mm_generic`) forces that matmul
/// variant where it accepts the shape, for experiments.
pub fn kernels(adapter_pref: Option<&str>) -> Result<KernelBench> {
    let gpu = Gpu::new(adapter_pref)?;
    if let Ok(name) = std::env::var("PAI_MATMUL_KERNEL") {
        gpu.force_matmul(Some(&name));
    }
    run(&gpu)
}

/// The benchmark on an already opened device.
pub fn run(gpu: &Gpu) -> Result<KernelBench> {
    let start = Instant::now();
    let budget = Duration::from_millis(if gpu.is_cpu() { 300 } else { 200 });
    let (bt, c, v) = (8 * 128, 128, 2048);
    let shapes: [([usize; 3], &str); 5] = [
        ([1024, 1024, 1024], "square 1024³"),
        ([bt, 3 * c, c], "qkv [B·T, 3C, C]"),
        ([bt, 4 * c, c], "fc [B·T, 4C, C]"),
        ([bt, c, 4 * c], "fc proj [B·T, C, 4C]"),
        ([bt, v, c], "logits [B·T, V, C]"),
    ];
    let mut matmul = Vec::new();
    for (i, ([m, n, kk], what)) in shapes.iter().enumerate() {
        let (m, n, kk) = (*m, *n, *kk);
        let x = data(m * kk, 1 + i as u64);
        let w = data(n * kk, 100 + i as u64);
        let xt = gpu.upload(&x, &[m, kk])?;
        let wt = gpu.upload(&w, &[n, kk])?;
        let yt = gpu.zeros(&[m, n])?;
        let flop = 2.0 * (m * n * kk) as f64;
        let s = time_gpu(gpu, budget, |b| mm::matmul(b, &xt, &wt, None, &yt, false))?;
        let mut y = vec![0.0f32; m * n];
        let cs = time_cpu(budget, || cpu_sgemm_nt(&x, &w, &mut y, m, n, kk));
        let (gf, cf) = (flop / s / 1e9, flop / cs / 1e9);
        matmul.push(MatmulBench {
            shape: [m, n, kk],
            what: what.to_string(),
            kernel: mm::nt_variant(gpu, gpu.path(), kk).entry.to_string(),
            gflops: gf,
            cpu_gflops: cf,
            ratio: gf / cf,
        });
    }
    // The backward products of the same layers: dx = dy·W and dW = dyᵀ·x.
    for (i, ([m, n, kk], what)) in shapes.iter().enumerate().skip(1) {
        let (m, n, kk) = (*m, *n, *kk);
        let dy = data(m * n, 200 + i as u64);
        let w = data(n * kk, 300 + i as u64);
        let x = data(m * kk, 400 + i as u64);
        let (dyt, wt, xt) = (
            gpu.upload(&dy, &[m, n])?,
            gpu.upload(&w, &[n, kk])?,
            gpu.upload(&x, &[m, kk])?,
        );
        let (dxt, dwt) = (gpu.zeros(&[m, kk])?, gpu.zeros(&[n, kk])?);
        let flop = 2.0 * (m * n * kk) as f64;
        let s = time_gpu(gpu, budget, |b| mm::matmul_dx(b, &dyt, &wt, &dxt, false))?;
        let mut out = vec![0.0f32; m * kk];
        let cs = time_cpu(budget, || {
            cpu_sgemm((m, n, kk), &dy, (n, 1), &w, (kk, 1), &mut out)
        });
        let (gf, cf) = (flop / s / 1e9, flop / cs / 1e9);
        matmul.push(MatmulBench {
            shape: [m, kk, n],
            what: format!("dx = dy·W, {what}"),
            kernel: mm::gemm_variant(gpu, gpu.path(), (n, 1), (kk, 1), (m, kk, n))
                .entry
                .to_string(),
            gflops: gf,
            cpu_gflops: cf,
            ratio: gf / cf,
        });
        let s = time_gpu(gpu, budget, |b| mm::matmul_dw(b, &dyt, &xt, &dwt, false))?;
        let mut out = vec![0.0f32; n * kk];
        let cs = time_cpu(budget, || {
            cpu_sgemm((n, m, kk), &dy, (1, n), &x, (kk, 1), &mut out)
        });
        let (gf, cf) = (flop / s / 1e9, flop / cs / 1e9);
        matmul.push(MatmulBench {
            shape: [n, kk, m],
            what: format!("dW = dyᵀ·x, {what}"),
            kernel: mm::gemm_variant(gpu, gpu.path(), (1, n), (kk, 1), (n, kk, m))
                .entry
                .to_string(),
            gflops: gf,
            cpu_gflops: cf,
            ratio: gf / cf,
        });
    }

    let s = AttnShape {
        b: 8,
        t: 128,
        c: 128,
        nh: 4,
    };
    let qkv = data(s.b * s.t * 3 * s.c, 7);
    let dout = data(s.b * s.t * s.c, 8);
    let qt = gpu.upload(&qkv, &[s.b, s.t, 3 * s.c])?;
    let dt = gpu.upload(&dout, &[s.b, s.t, s.c])?;
    let out = gpu.zeros(&[s.b, s.t, s.c])?;
    let p = gpu.zeros(&[s.b, s.nh, s.t, s.t])?;
    let ds = gpu.zeros(&[s.b, s.nh, s.t, s.t])?;
    let dq = gpu.zeros(&[s.b, s.t, 3 * s.c])?;
    // The two paths alternate, three rounds, best of each: a loaded machine slows whichever
    // runs during a burst, and measuring one path after the other skewed the ratio.
    let mut attn_ms = [[f64::INFINITY; 2]; 2];
    for _ in 0..3 {
        for (ms, path) in attn_ms
            .iter_mut()
            .zip([KernelPath::Fused, KernelPath::Release1])
        {
            let fwd = time_gpu(gpu, budget, |b| {
                b.set_path(path);
                attention::attention(b, s, &qt, &out, &p)
            })?;
            let bwd = time_gpu(gpu, budget, |b| {
                b.set_path(path);
                attention::attention_bwd(b, s, &dt, &qt, &p, &ds, &dq)
            })?;
            ms[0] = ms[0].min(fwd * 1e3);
            ms[1] = ms[1].min(bwd * 1e3);
        }
    }
    let (q64, d64) = (reference::to_f64(&qkv), reference::to_f64(&dout));
    let mut rp = Vec::new();
    let cf = time_cpu(budget, || rp = reference::attention_fwd(&q64, s).1);
    let cb = time_cpu(budget, || {
        std::hint::black_box(reference::attention_bwd(&d64, &q64, &rp, s));
    });
    let attention = vec![AttentionBench {
        shape: [s.b, s.t, s.c, s.nh],
        forward_ms: attn_ms[0][0],
        backward_ms: attn_ms[0][1],
        release1_forward_ms: attn_ms[1][0],
        release1_backward_ms: attn_ms[1][1],
        cpu_forward_ms: cf * 1e3,
        cpu_backward_ms: cb * 1e3,
    }];

    let quantize = quantize_throughput(gpu, budget)?;
    Ok(KernelBench {
        adapter: gpu.info.name.clone(),
        backend: format!("{:?}", gpu.info.backend),
        device_type: format!("{:?}", gpu.info.device_type),
        cpu_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        matmul,
        attention,
        quantize,
        seconds: start.elapsed().as_secs_f64(),
    })
}

impl fmt::Display for KernelBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "adapter: {} ({}, {})",
            self.adapter, self.backend, self.device_type
        )?;
        writeln!(
            f,
            "matmul (forward y = x·Wᵀ, then backward)      [m x n x k]    GPU GFLOP/s  CPU GFLOP/s   GPU/CPU   (CPU: matrixmultiply, {} threads)",
            self.cpu_threads
        )?;
        for m in &self.matmul {
            writeln!(
                f,
                "  {:<34} {:>5}x{:<5}x{:<5} {:>9.2} {:>12.2} {:>10.3}   ({})",
                m.what,
                m.shape[0],
                m.shape[1],
                m.shape[2],
                m.gflops,
                m.cpu_gflops,
                m.ratio,
                m.kernel
            )?;
        }
        for a in &self.attention {
            writeln!(
                f,
                "attention B={} T={} C={} NH={}: forward {:.2} ms (CPU reference {:.2} ms), backward {:.2} ms (CPU reference {:.2} ms)",
                a.shape[0],
                a.shape[1],
                a.shape[2],
                a.shape[3],
                a.forward_ms,
                a.cpu_forward_ms,
                a.backward_ms,
                a.cpu_backward_ms
            )?;
            writeln!(
                f,
                "  tiled kernels vs the first release's per-row kernels: forward {:.2} vs {:.2} ms ({:.2}x), backward {:.2} vs {:.2} ms ({:.2}x)",
                a.forward_ms,
                a.release1_forward_ms,
                a.release1_forward_ms / a.forward_ms,
                a.backward_ms,
                a.release1_backward_ms,
                a.release1_backward_ms / a.backward_ms
            )?;
        }
        for q in &self.quantize {
            writeln!(
                f,
                "quantize {}: {:.3} GB/s of f32 input (CPU reference {:.3} GB/s, 1 thread), {} elements",
                q.format, q.gbps, q.cpu_gbps, q.elements
            )?;
        }
        write!(f, "({:.1} s)", self.seconds)
    }
}

/// Quantize throughput (GB/s of f32 input, data on the device) of the q8_0 and q4_0 kernels,
/// each beside the one-thread plain-Rust reference quantizer timed in the same run.
pub fn quantize_throughput(gpu: &Gpu, budget: Duration) -> Result<Vec<QuantBench>> {
    let n = 1 << 22;
    let x = data(n, 9);
    let xt = gpu.upload(&x, &[n])?;
    let mut quantize = Vec::new();
    for f in [Format::Q8_0, Format::Q4_0] {
        let kern = quant::quantize_kernel(f)?;
        let nb = n / QK;
        let out = gpu.zeros_u8(nb * f.block_bytes())?;
        let flag = gpu.upload_u32(&[u32::MAX], &[1])?;
        let s = time_gpu(gpu, budget, |b| {
            b.dispatch(
                kern,
                &QuantParams::new(nb),
                &[("src", &xt), ("dst", &out), ("flag", &flag)],
                quant::quantize_invocations(nb),
            )
        })?;
        let cs = time_cpu(budget, || {
            std::hint::black_box(quant::quantize_ref(f, "bench", &x).unwrap());
        });
        let bytes = (n * 4) as f64;
        quantize.push(QuantBench {
            format: f.name().to_string(),
            elements: n,
            gbps: bytes / s / 1e9,
            cpu_gbps: bytes / cs / 1e9,
        });
    }
    Ok(quantize)
}
