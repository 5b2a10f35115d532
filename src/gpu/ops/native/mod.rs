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
