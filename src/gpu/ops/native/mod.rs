//! [`NativeOps`]: the third implementation of [`super::Ops`], native f32 code on the CPU (the
//! `cpu` adapter, `--adapter cpu`). Products go through `matrixmultiply::sgemm` (its own
//! threads; strides make every transpose free), everything else through rayon. One file per op,
//! mirroring the op modules; the tensor is the references' [`CpuTensor`].
//!
//! Deterministic: every output element is computed by one task in a fixed order (fixed chunks,
//! partial sums added in order; sgemm's blocking does not depend on its thread count), so the
//! same inputs give the same bits run to run and for any number of threads.

pub mod attention;
pub mod crossentropy;
pub mod elementwise;
pub mod embedding;
pub mod layernorm;
pub mod math;
pub mod matmul;
pub mod optim;

use super::CpuTensor;
use anyhow::{Result, anyhow};
use std::cell::{Ref, RefMut};
use std::collections::BTreeMap;
use std::time::Instant;

/// Elements per task of the elementwise loops (a fixed chunking: it decides no result).
pub(crate) const CHUNK: usize = 1 << 14;

/// The native implementation. `NativeOps::default()` runs on the rayon pool of the calling
/// thread (the global one unless inside `ThreadPool::install`) and sgemm's own threads.
#[derive(Default)]
pub struct NativeOps {
    /// Per-op time when profiling: name → (calls, wall seconds, process CPU seconds).
    profile: Option<BTreeMap<&'static str, (usize, f64, f64)>>,
}

/// One op's share of a profile.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    pub name: String,
    pub calls: usize,
    pub wall_s: f64,
    /// CPU time of the whole process while the op ran (every thread, spinning included).
    pub cpu_s: f64,
}

impl NativeOps {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts (or stops) timing every op call.
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(BTreeMap::new);
    }

    /// The time per op since profiling started, slowest first.
    pub fn take_profile(&mut self) -> Vec<OpTime> {
        let mut v: Vec<OpTime> = self
            .profile
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, (calls, wall_s, cpu_s))| OpTime {
                name: k.to_string(),
                calls,
                wall_s,
                cpu_s,
            })
            .collect();
        v.sort_by(|a, b| b.wall_s.total_cmp(&a.wall_s));
        v
    }

    /// Runs one op, timing it when profiling.
    pub(crate) fn timed<R>(&mut self, name: &'static str, f: impl FnOnce() -> R) -> R {
        let Some(p) = self.profile.as_mut() else {
            return f();
        };
        let (t, c) = (Instant::now(), cpu_seconds());
        let r = f();
        let e = p.entry(name).or_default();
        e.0 += 1;
        e.1 += t.elapsed().as_secs_f64();
        e.2 += cpu_seconds() - c;
        r
    }
}

/// CPU time the process has used (all its threads), in seconds.
pub fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Reads a tensor's data.
pub(crate) fn input<'a>(t: &'a CpuTensor, what: &str) -> Result<Ref<'a, [f32]>> {
    t.data
        .try_borrow()
        .map(|r| Ref::map(r, |v| v.as_slice()))
        .map_err(|_| {
            anyhow!("{what}: the tensor is also an output (in-place use is not supported)")
        })
}

/// Writes a tensor's data; an output that is also an input (already borrowed) is an error.
pub(crate) fn output<'a>(t: &'a CpuTensor, what: &str) -> Result<RefMut<'a, [f32]>> {
    t.data
        .try_borrow_mut()
        .map(|r| RefMut::map(r, |v| v.as_mut_slice()))
        .map_err(|_| {
            anyhow!("{what}: the same tensor is passed twice (in-place use is not supported)")
        })
}

/// A mutable slice handed to parallel tasks that write disjoint parts of it (attention heads
/// write disjoint column blocks of the same rows, which no safe split expresses).
#[derive(Clone, Copy)]
pub(crate) struct Disjoint {
    ptr: *mut f32,
    len: usize,
}

// SAFETY: tasks only write through `at`, at offsets whose ranges they own exclusively (each user
// documents its partition); the borrow it was made from outlives the tasks.
unsafe impl Send for Disjoint {}
unsafe impl Sync for Disjoint {}

impl Disjoint {
    pub(crate) fn new(s: &mut [f32]) -> Self {
        Self {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }
    pub(crate) fn len(&self) -> usize {
        self.len
    }
    /// The pointer to element `offset`.
    ///
    /// # Safety
    /// The caller writes only elements no other task touches while it runs.
    pub(crate) unsafe fn at(&self, offset: usize) -> *mut f32 {
        assert!(offset <= self.len);
        // SAFETY: in bounds (checked above).
        unsafe { self.ptr.add(offset) }
    }
}

/// Σ a[i]·b[i] in a fixed order (8 lanes, then the lanes pairwise, then the tail): vectorizes,
/// and gives the same bits wherever it runs.
#[inline(always)]
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = lanes(acc);
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Σ a[i] in the order of [`dot`].
#[inline(always)]
pub(crate) fn sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let c = a.chunks_exact(8);
    let r = c.remainder();
    for x in c {
        for l in 0..8 {
            acc[l] += x[l];
        }
    }
    let mut s = lanes(acc);
    for x in r {
        s += x;
    }
    s
}

#[inline(always)]
fn lanes(a: [f32; 8]) -> f32 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

#[cfg(test)]
mod tests {
    use super::super::attention::AttnShape;
    use super::super::{CpuOps, Ops};
    use super::*;
    use std::sync::atomic::Ordering;

    /// Every op with a `widest!` loop, on odd sizes: all outputs' bits.
    fn run_all() -> Vec<Vec<u32>> {
        let mut o = NativeOps::new();
        let mut seed = 7u64;
        let mut vec = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
                })
                .collect()
        };
        let up = |o: &mut NativeOps, x: Vec<f32>, s: &[usize]| o.upload(&x, s).unwrap();
        let (n, rows, cols, v) = (1037, 19, 45, 301);
        let s = AttnShape {
            b: 2,
            t: 37,
            c: 12,
            nh: 3,
        };
        let x = up(&mut o, vec(n, 4.0), &[n]);
        let g = up(&mut o, vec(n, 1.0), &[n]);
        let lx = up(&mut o, vec(rows * cols, 2.0), &[rows, cols]);
        let lw = up(&mut o, vec(cols, 1.0), &[cols]);
        let lb = up(&mut o, vec(cols, 1.0), &[cols]);
        let ldy = up(&mut o, vec(rows * cols, 1.0), &[rows, cols]);
        let logits = up(&mut o, vec(rows * v, 6.0), &[rows, v]);
        let tg: Vec<u32> = (0..rows as u32).map(|i| (i * 37) % v as u32).collect();
        let tg = o.upload_ids(&tg, &[rows]).unwrap();
        let qkv = up(&mut o, vec(s.b * s.t * 3 * s.c, 1.5), &[s.b, s.t, 3 * s.c]);
        let dout = up(&mut o, vec(s.b * s.t * s.c, 1.0), &[s.b, s.t, s.c]);
        let z = |o: &mut NativeOps, sh: &[usize]| o.zeros(sh).unwrap();
        let outs = [
            z(&mut o, &[n]),
            z(&mut o, &[n]),
            z(&mut o, &[rows, cols]),
            z(&mut o, &[rows]),
            z(&mut o, &[rows]),
            z(&mut o, &[rows, cols]),
            z(&mut o, &[cols]),
            z(&mut o, &[cols]),
            z(&mut o, &[rows]),
            z(&mut o, &[rows, v]),
            z(&mut o, &[rows]),
            z(&mut o, &[s.b, s.t, s.c]),
            z(&mut o, &[s.b, s.nh, s.t, s.t]),
            z(&mut o, &[s.b, s.nh, s.t, s.t]),
            z(&mut o, &[s.b, s.t, 3 * s.c]),
            z(&mut o, &[cols]),
        ];
        let [
            gy,
            gdx,
            ly,
            lm,
            lr,
            ldx,
            ldw,
            ldb,
            loss,
            dl,
            loss2,
            ao,
            ap,
            ads,
            adq,
            cs,
        ] = &outs;
        o.gelu(&x, gy).unwrap();
        o.gelu_bwd(&x, &g, gdx, false).unwrap();
        o.layernorm(&lx, &lw, &lb, ly, lm, lr, 1e-5).unwrap();
        o.layernorm_bwd(&ldy, &lx, &lw, lm, lr, ldx, ldw, ldb, false, false)
            .unwrap();
        o.crossentropy(&logits, &tg, loss, Some(dl), 0.25).unwrap();
        o.crossentropy(&logits, &tg, loss2, None, 1.0).unwrap();
        o.attention(s, &qkv, ao, ap).unwrap();
        o.attention_bwd(s, &dout, &qkv, ap, ads, adq).unwrap();
        o.colsum(&ldy, cs, false).unwrap();
        outs.iter()
            .map(|t| {
                let d = CpuOps.read(t).unwrap();
                assert!(d.iter().all(|v| v.is_finite()));
                d.iter().map(|v| v.to_bits()).collect()
            })
            .collect()
    }

    /// The paths differ in optimized builds (`cargo test --release --lib native`, run when this
    /// was written: equal); a debug build checks the dispatch.
    #[test]
    fn every_vector_path_gives_the_same_bits() {
        let widest = run_all();
        math::WIDEST.store(1, Ordering::Relaxed);
        let avx2 = run_all();
        math::WIDEST.store(0, Ordering::Relaxed);
        let base = run_all();
        math::WIDEST.store(2, Ordering::Relaxed);
        assert!(widest == avx2, "AVX-512 and AVX2 differ");
        assert!(widest == base, "AVX-512 and the baseline differ");
    }
}
