//! The operations, one module per op, and the one interface model code calls them through.
//!
//! Each op module holds the op's kernels ([`Kernel`] values over its `shaders/*.wgsl`), its
//! uniform block as one `#[repr(C)]` Pod struct, the shape check both implementations run, its
//! GPU function (records dispatches into a [`Batch`]), its [`CpuOps`] function (`cpu`) and its
//! plain-Rust f64 reference (`reference`).
//!
//! [`Ops`] has three implementations: [`GpuOps`] (the WGSL kernels, the product's path),
//! [`CpuOps`] (the f64 references: the tests' oracle) and [`NativeOps`] (native f32 code on the
//! CPU, the opt-in `cpu` adapter, in [`native`]). Nothing above this trait knows which one runs.
//! Outputs are passed by shared reference (device buffers / interior mutability) and must not
//! alias inputs.

pub mod attention;
pub mod crossentropy;
pub mod elementwise;
pub mod embedding;
pub mod layernorm;
pub mod matmul;
pub mod native;
pub mod optim;
pub mod quant;

pub use super::pipelines::{Kernel, kernel_sources};
pub use attention::{AttnShape, DecodeShape};
pub use embedding::{EmbeddingIndex, EmbeddingIndexGpu};
pub use native::NativeOps;
pub use optim::AdamW;

use super::{Batch, DType, Gpu, KernelPath, Tensor};
use anyhow::{Result, ensure};
use std::cell::RefCell;

/// Kernels a training step may dispatch (forward, backward, optimizer), by op.
pub const TRAIN_KERNELS: &[&[&Kernel]] = &[
    matmul::KERNELS,
    layernorm::KERNELS,
    attention::KERNELS,
    elementwise::KERNELS,
    embedding::KERNELS,
    crossentropy::KERNELS,
    optim::KERNELS,
];
/// Kernels evaluation dispatches: the forward pass and loss, and the
/// dequantize kernels (for GGUF inputs), by op.
pub const EVAL_KERNELS: &[&[&Kernel]] = &[
    matmul::KERNELS,
    layernorm::KERNELS,
    attention::KERNELS,
    elementwise::KERNELS,
    embedding::KERNELS,
    crossentropy::KERNELS,
    quant::KERNELS,
];
/// Kernels quantization dispatches.
pub const QUANT_KERNELS: &[&[&Kernel]] = &[quant::KERNELS];

/// Every kernel of every op.
pub const ALL_KERNELS: &[&[&Kernel]] = &[
    matmul::KERNELS,
    layernorm::KERNELS,
    attention::KERNELS,
    elementwise::KERNELS,
    embedding::KERNELS,
    crossentropy::KERNELS,
    optim::KERNELS,
    quant::KERNELS,
];

/// A size as a shader word. Every size passed here is bounded by a buffer the adapter accepted
/// (at most max_buffer_size bytes); saturate rather than panic anyway, and let the host-side
/// binding checks refuse the dispatch.
pub(crate) fn u(v: usize) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Rows and columns of a shape viewed as a matrix: all leading dimensions times the last.
pub(crate) fn rows_cols(shape: &[usize]) -> (usize, usize) {
    match shape.split_last() {
        None => (1, 1),
        Some((last, rest)) => (rest.iter().product(), *last),
    }
}

pub(crate) fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

pub(crate) fn f32t(t: &Tensor, what: &str) -> Result<()> {
    ensure!(
        t.dtype == DType::F32,
        "{what} must be f32, is {:?}",
        t.dtype
    );
    Ok(())
}

/// Two shapes hold the same number of elements.
pub(crate) fn same(a: &[usize], b: &[usize], what: &str) -> Result<()> {
    ensure!(
        numel(a) == numel(b),
        "{what}: shapes {a:?} and {b:?} differ in size"
    );
    Ok(())
}

pub(crate) fn distinct(ts: &[&Tensor], what: &str) -> Result<()> {
    for i in 0..ts.len() {
        for j in i + 1..ts.len() {
            ensure!(
                !ts[i].overlaps(ts[j]),
                "{what}: the same buffer (or overlapping parts of one) is passed twice (in-place use is not supported)"
            );
        }
    }
    Ok(())
}

/// Declares [`Ops`] and its implementations from one list of signatures: each op method of
/// [`GpuOps`] is its module's GPU function on the open batch, each of [`CpuOps`] its module's
/// `cpu` function, each of [`NativeOps`] the function of the same name in `native::<module>`
/// (timed when profiling). Methods that are not one op (allocation, readback) are written out.
macro_rules! ops {
    (
        trait { $($base:tt)* }
        gpu { $($gpu:tt)* }
        cpu { $($cpu:tt)* }
        native { $($native:tt)* }
        ops { $(
            $(#[$attr:meta])*
            fn $name:ident(&mut self, $($a:ident: $t:ty),* $(,)?) => $m:ident;
        )* }
    ) => {
        /// Tensor operations of a GPT-2 training step.
        #[allow(clippy::too_many_arguments)]
        pub trait Ops {
            $($base)*
            $( $(#[$attr])* fn $name(&mut self, $($a: $t),*) -> Result<()>; )*
        }

        #[allow(clippy::too_many_arguments)]
        impl<'g> Ops for GpuOps<'g> {
            $($gpu)*
            $( fn $name(&mut self, $($a: $t),*) -> Result<()> {
                $m::$name(self.b(), $($a),*)
            } )*
        }

        #[allow(clippy::too_many_arguments)]
        impl Ops for CpuOps {
            $($cpu)*
            $( fn $name(&mut self, $($a: $t),*) -> Result<()> {
                $m::cpu::$name($($a),*)
            } )*
        }

        #[allow(clippy::too_many_arguments)]
        impl Ops for NativeOps {
            $($native)*
            $( fn $name(&mut self, $($a: $t),*) -> Result<()> {
                self.timed(concat!(stringify!($m), "::", stringify!($name)), || {
                    native::$m::$name($($a),*)
                })
            } )*
        }
    };
}

ops! {
    trait {
        type T;
        type Index;
        fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<Self::T>;
        /// Token ids / targets.
        fn upload_ids(&mut self, ids: &[u32], shape: &[usize]) -> Result<Self::T>;
        fn zeros(&mut self, shape: &[usize]) -> Result<Self::T>;
        /// Zero tensors allocated together: an implementation may place them in one block
        /// (the fused GPU path does), which [`Ops::adamw_many`] and [`Ops::grad_norm_clip`] then
        /// sweep in a few dispatches instead of one per tensor. By default, one by one.
        fn zeros_many(&mut self, shapes: &[&[usize]]) -> Result<Vec<Self::T>> {
            shapes.iter().map(|s| self.zeros(s)).collect()
        }
        /// Overwrites a tensor's contents from the host.
        fn write(&mut self, t: &Self::T, data: &[f32]) -> Result<()>;
        /// Reads a tensor back (finishing any queued work first).
        fn read(&mut self, t: &Self::T) -> Result<Vec<f32>>;
        fn shape<'a>(&self, t: &'a Self::T) -> &'a [usize];
        /// Whether the model should call the fused ops (`matmul_gelu`, `matmul_dx_gelu`,
        /// `matmul_residual`, one flat AdamW) or the first release's separate ones; both
        /// sequences compute the same functions.
        fn fused(&self) -> bool;
        fn embedding_index(&mut self, tokens: &[u32], vocab: usize) -> Result<Self::Index>;
        /// clip[0] = global norm, clip[1] = clip factor.
        fn grad_norm_clip(
            &mut self,
            grads: &[&Self::T],
            clip: &Self::T,
            max_norm: f32,
        ) -> Result<()>;
        /// One AdamW step of every listed tensor (the four lists in one order): the same as
        /// [`Ops::adamw`] on each, which is what it does by default.
        fn adamw_many(
            &mut self,
            h: &AdamW,
            step: u64,
            params: &[&Self::T],
            grads: &[&Self::T],
            m: &[&Self::T],
            v: &[&Self::T],
            clip: Option<&Self::T>,
        ) -> Result<()> {
            optim::check_many(params.len(), grads.len(), m.len(), v.len())?;
            for i in 0..params.len() {
                self.adamw(h, step, params[i], grads[i], m[i], v[i], clip)?;
            }
            Ok(())
        }
    }
    gpu {
        type T = Tensor;
        type Index = EmbeddingIndexGpu;
        fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<Tensor> {
            self.gpu.upload(data, shape)
        }
        fn upload_ids(&mut self, ids: &[u32], shape: &[usize]) -> Result<Tensor> {
            self.gpu.upload_u32(ids, shape)
        }
        fn zeros(&mut self, shape: &[usize]) -> Result<Tensor> {
            self.gpu.zeros(shape)
        }
        fn zeros_many(&mut self, shapes: &[&[usize]]) -> Result<Vec<Tensor>> {
            if self.path == KernelPath::Release1 {
                return shapes.iter().map(|s| self.gpu.zeros(s)).collect();
            }
            Ok(self.gpu.zeros_block(shapes)?.1)
        }
        fn write(&mut self, t: &Tensor, data: &[f32]) -> Result<()> {
            // Queue writes land before the next submission: finish what is recorded first.
            self.flush()?;
            self.gpu.write(t, data)
        }
        fn read(&mut self, t: &Tensor) -> Result<Vec<f32>> {
            self.flush()?;
            self.gpu.read(t)
        }
        fn shape<'a>(&self, t: &'a Tensor) -> &'a [usize] {
            &t.shape
        }
        fn fused(&self) -> bool {
            self.path == KernelPath::Fused
        }
        fn embedding_index(&mut self, tokens: &[u32], vocab: usize) -> Result<EmbeddingIndexGpu> {
            EmbeddingIndexGpu::upload(self.gpu, &EmbeddingIndex::build(tokens, vocab)?)
        }
        fn grad_norm_clip(&mut self, grads: &[&Tensor], clip: &Tensor, max_norm: f32) -> Result<()> {
            let spans;
            let grads: Vec<&Tensor> = if self.path == KernelPath::Fused {
                spans = runs(&[grads], |_, _| true)
                    .into_iter()
                    .map(|(_, ts)| ts.into_iter().next().unwrap())
                    .collect::<Vec<_>>();
                spans.iter().collect()
            } else {
                grads.to_vec()
            };
            let partials = self.gpu.zeros(&[optim::norm_slots(&grads)])?;
            optim::grad_norm_clip(self.b(), &grads, &partials, clip, max_norm)
        }
        fn adamw_many(
            &mut self,
            h: &AdamW,
            step: u64,
            params: &[&Tensor],
            grads: &[&Tensor],
            m: &[&Tensor],
            v: &[&Tensor],
            clip: Option<&Tensor>,
        ) -> Result<()> {
            optim::check_many(params.len(), grads.len(), m.len(), v.len())?;
            if self.path == KernelPath::Release1 {
                for i in 0..params.len() {
                    optim::adamw(self.b(), h, step, params[i], grads[i], m[i], v[i], clip)?;
                }
                return Ok(());
            }
            let same_decay = |a: &Tensor, b: &Tensor| h.decay_for(&a.shape) == h.decay_for(&b.shape);
            for (first, s) in runs(&[params, grads, m, v], same_decay) {
                let wd = h.decay_for(&params[first].shape);
                optim::adamw_decay(self.b(), h, step, &s[0], &s[1], &s[2], &s[3], clip, wd)?;
            }
            Ok(())
        }
    }
    cpu {
        type T = CpuTensor;
        type Index = Vec<u32>;
        fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
            ensure!(
                data.len() == numel(shape),
                "data does not fill shape {shape:?}"
            );
            Ok(CpuTensor {
                shape: shape.to_vec(),
                data: RefCell::new(data.to_vec()),
                ids: vec![],
            })
        }
        fn upload_ids(&mut self, ids: &[u32], shape: &[usize]) -> Result<CpuTensor> {
            ensure!(
                ids.len() == numel(shape),
                "ids do not fill shape {shape:?}"
            );
            Ok(CpuTensor {
                shape: shape.to_vec(),
                data: RefCell::new(vec![]),
                ids: ids.to_vec(),
            })
        }
        fn zeros(&mut self, shape: &[usize]) -> Result<CpuTensor> {
            Ok(CpuTensor {
                shape: shape.to_vec(),
                data: RefCell::new(vec![0.0; numel(shape)]),
                ids: vec![],
            })
        }
        fn write(&mut self, t: &CpuTensor, data: &[f32]) -> Result<()> {
            ensure!(
                data.len() == numel(&t.shape),
                "data does not fill shape {:?}",
                t.shape
            );
            t.data.borrow_mut().copy_from_slice(data);
            Ok(())
        }
        fn read(&mut self, t: &CpuTensor) -> Result<Vec<f32>> {
            Ok(t.data.borrow().clone())
        }
        fn shape<'a>(&self, t: &'a CpuTensor) -> &'a [usize] {
            &t.shape
        }
        fn fused(&self) -> bool {
            true
        }
        fn embedding_index(&mut self, tokens: &[u32], vocab: usize) -> Result<Vec<u32>> {
            EmbeddingIndex::build(tokens, vocab)?;
            Ok(tokens.to_vec())
        }
        fn grad_norm_clip(
            &mut self,
            grads: &[&CpuTensor],
            clip: &CpuTensor,
            max_norm: f32,
        ) -> Result<()> {
            optim::cpu::grad_norm_clip(grads, clip, max_norm)
        }
    }
    native {
        type T = CpuTensor;
        type Index = EmbeddingIndex;
        fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
            CpuOps.upload(data, shape)
        }
        fn upload_ids(&mut self, ids: &[u32], shape: &[usize]) -> Result<CpuTensor> {
            CpuOps.upload_ids(ids, shape)
        }
        fn zeros(&mut self, shape: &[usize]) -> Result<CpuTensor> {
            CpuOps.zeros(shape)
        }
        fn write(&mut self, t: &CpuTensor, data: &[f32]) -> Result<()> {
            CpuOps.write(t, data)
        }
        fn read(&mut self, t: &CpuTensor) -> Result<Vec<f32>> {
            CpuOps.read(t)
        }
        fn shape<'a>(&self, t: &'a CpuTensor) -> &'a [usize] {
            &t.shape
        }
        fn embedding_index(&mut self, tokens: &[u32], vocab: usize) -> Result<EmbeddingIndex> {
            EmbeddingIndex::build(tokens, vocab)
        }
        fn grad_norm_clip(
            &mut self,
            grads: &[&CpuTensor],
            clip: &CpuTensor,
            max_norm: f32,
        ) -> Result<()> {
            self.timed("optim::grad_norm_clip", || {
                native::optim::grad_norm_clip(grads, clip, max_norm)
            })
        }
        fn fused(&self) -> bool {
            true
        }
    }
    ops {
        fn matmul(
            &mut self,
            x: &Self::T,
            w: &Self::T,
            bias: Option<&Self::T>,
            y: &Self::T,
            acc: bool,
        ) => matmul;
        fn matmul_dx(&mut self, dy: &Self::T, w: &Self::T, dx: &Self::T, acc: bool) => matmul;
        fn matmul_dw(&mut self, dy: &Self::T, x: &Self::T, dw: &Self::T, acc: bool) => matmul;
        fn colsum(&mut self, dy: &Self::T, db: &Self::T, acc: bool) => matmul;
        /// pre = x·wᵀ + bias, y = gelu(pre) in one pass.
        fn matmul_gelu(
            &mut self,
            x: &Self::T,
            w: &Self::T,
            bias: &Self::T,
            pre: &Self::T,
            y: &Self::T,
        ) => matmul;
        /// dx = gelu'(pre) ∘ (dy·w) in one pass.
        fn matmul_dx_gelu(&mut self, dy: &Self::T, w: &Self::T, pre: &Self::T, dx: &Self::T) => matmul;
        /// y = r + (x·wᵀ + bias): a linear that ends in a residual add.
        fn matmul_residual(
            &mut self,
            x: &Self::T,
            w: &Self::T,
            bias: Option<&Self::T>,
            r: &Self::T,
            y: &Self::T,
        ) => matmul;
        fn layernorm(
            &mut self,
            x: &Self::T,
            w: &Self::T,
            b: &Self::T,
            y: &Self::T,
            mean: &Self::T,
            rstd: &Self::T,
            eps: f32,
        ) => layernorm;
        fn layernorm_bwd(
            &mut self,
            dy: &Self::T,
            x: &Self::T,
            w: &Self::T,
            mean: &Self::T,
            rstd: &Self::T,
            dx: &Self::T,
            dw: &Self::T,
            db: &Self::T,
            acc_dx: bool,
            acc_w: bool,
        ) => layernorm;
        fn attention(&mut self, s: AttnShape, qkv: &Self::T, out: &Self::T, p: &Self::T) => attention;
        fn attention_bwd(
            &mut self,
            s: AttnShape,
            dout: &Self::T,
            qkv: &Self::T,
            p: &Self::T,
            ds: &Self::T,
            dqkv: &Self::T,
        ) => attention;
        /// KV-cache attention of the new positions pos.. (rows of `out` [n,C]) against the
        /// cache [T,3C].
        fn attention_decode(&mut self, nh: usize, pos: usize, cache: &Self::T, out: &Self::T) => attention;
        /// Writes qkv rows [n,3C] into the cache [T,3C] at positions pos..pos+n.
        fn kv_append(&mut self, qkv: &Self::T, cache: &Self::T, pos: usize) => attention;
        fn gelu(&mut self, x: &Self::T, y: &Self::T) => elementwise;
        fn gelu_bwd(&mut self, x: &Self::T, dy: &Self::T, dx: &Self::T, acc: bool) => elementwise;
        fn add(&mut self, a: &Self::T, b: &Self::T, y: &Self::T) => elementwise;
        fn residual_bwd(&mut self, dy: &Self::T, da: &Self::T, db: &Self::T, acc: bool) => elementwise;
        fn embedding(
            &mut self,
            tokens: &Self::T,
            wte: &Self::T,
            wpe: &Self::T,
            out: &Self::T,
        ) => embedding;
        /// Embedding of tokens [n] at positions pos..pos+n.
        fn embedding_at(
            &mut self,
            tokens: &Self::T,
            wte: &Self::T,
            wpe: &Self::T,
            out: &Self::T,
            pos: usize,
        ) => embedding;
        fn embedding_bwd(
            &mut self,
            idx: &Self::Index,
            dx: &Self::T,
            dwte: &Self::T,
            dwpe: &Self::T,
            acc: bool,
        ) => embedding;
        fn crossentropy(
            &mut self,
            logits: &Self::T,
            targets: &Self::T,
            losses: &Self::T,
            dlogits: Option<&Self::T>,
            grad_scale: f32,
        ) => crossentropy;
        fn adamw(
            &mut self,
            h: &AdamW,
            step: u64,
            param: &Self::T,
            grad: &Self::T,
            m: &Self::T,
            v: &Self::T,
            clip: Option<&Self::T>,
        ) => optim;
    }
}

/// Groups consecutive entries of parallel tensor lists into runs that one dispatch can sweep:
/// within a run, each list's tensors lie in one buffer in ascending order at the same relative
/// offsets in every list (blocks from [`Gpu::zeros_block`] made for the same shapes), and
/// `joins(prev, next)` holds (on the first list). Returns each run's first index and, per list,
/// the span from the run's first tensor to the end of its last (the alignment gaps between them
/// are zeros that no kernel writes otherwise, so sweeping them is harmless: AdamW and the norm
/// keep zeros zero).
fn runs(
    lists: &[&[&Tensor]],
    joins: impl Fn(&Tensor, &Tensor) -> bool,
) -> Vec<(usize, Vec<Tensor>)> {
    let n = lists[0].len();
    let mut out = vec![];
    let mut start = 0;
    for i in 1..=n {
        let continues = i < n && joins(lists[0][i - 1], lists[0][i]) && {
            let rel = |l: &[&Tensor]| l[i].offset.checked_sub(l[start].offset);
            let r0 = rel(lists[0]);
            lists.iter().all(|l| {
                l[i].buffer == l[start].buffer
                    && l[i].offset >= l[i - 1].offset + l[i - 1].size
                    && rel(l) == r0
            })
        };
        if continues {
            continue;
        }
        let spans = lists
            .iter()
            .map(|l| {
                let (a, z) = (l[start], l[i - 1]);
                Tensor {
                    buffer: a.buffer.clone(),
                    offset: a.offset,
                    size: z.offset + z.size - a.offset,
                    shape: vec![((z.offset + z.size - a.offset) / 4) as usize],
                    dtype: a.dtype,
                }
            })
            .collect();
        out.push((start, spans));
        start = i;
    }
    out
}

/// The WGSL implementation: operations are recorded into one batch, submitted on `read` or
/// [`GpuOps::flush`].
pub struct GpuOps<'g> {
    pub gpu: &'g Gpu,
    path: KernelPath,
    batch: Option<Batch<'g>>,
}

impl<'g> GpuOps<'g> {
    /// Ops on the device's default kernel path ([`Gpu::path`]).
    pub fn new(gpu: &'g Gpu) -> Self {
        Self::with_path(gpu, gpu.path())
    }
    /// Ops on the given kernel path (for this value only: the device is unchanged).
    pub fn with_path(gpu: &'g Gpu, path: KernelPath) -> Self {
        Self {
            gpu,
            path,
            batch: None,
        }
    }
    pub fn path(&self) -> KernelPath {
        self.path
    }
    fn b(&mut self) -> &mut Batch<'g> {
        let (gpu, path) = (self.gpu, self.path);
        self.batch.get_or_insert_with(|| {
            let mut b = gpu.batch();
            b.set_path(path);
            b
        })
    }
    /// Submits the recorded work (without waiting).
    pub fn flush(&mut self) -> Result<()> {
        if let Some(b) = self.batch.take() {
            b.submit()?;
        }
        Ok(())
    }
}

/// A host tensor for [`CpuOps`].
#[derive(Debug)]
pub struct CpuTensor {
    pub shape: Vec<usize>,
    pub data: RefCell<Vec<f32>>,
    pub ids: Vec<u32>,
}

impl CpuTensor {
    pub(crate) fn get(&self) -> Vec<f64> {
        to_f64(&self.data.borrow())
    }
    pub(crate) fn put(&self, v: &[f64], acc: bool) {
        let mut d = self.data.borrow_mut();
        for (o, &x) in d.iter_mut().zip(v) {
            *o = if acc {
                (*o as f64 + x) as f32
            } else {
                x as f32
            };
        }
    }
}

/// The plain-Rust implementation (f64 references, one thread).
#[derive(Default)]
pub struct CpuOps;

/// f32 slice to f64.
pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// f64 slice to f32.
pub fn to_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_params_struct_matches_its_wgsl_block() {
        for list in ALL_KERNELS {
            for k in *list {
                let r = k.reflect().unwrap();
                assert_eq!(
                    r.uniform,
                    Some(k.params),
                    "{}: WGSL Params (naga size, padded to 16) vs the Rust struct",
                    k.name()
                );
                assert_eq!(
                    k.params % 16,
                    0,
                    "{}: uniform blocks are 16-byte units",
                    k.name()
                );
            }
        }
    }

    #[test]
    fn every_entry_point_is_declared_once() {
        let declared: Vec<String> = ALL_KERNELS
            .iter()
            .flat_map(|l| l.iter().map(|k| k.name()))
            .collect();
        let set: BTreeSet<&String> = declared.iter().collect();
        assert_eq!(set.len(), declared.len(), "a kernel is listed twice");
        let files: BTreeSet<(&str, String)> = ALL_KERNELS
            .iter()
            .flat_map(|l| l.iter().map(|k| (k.file, k.wgsl())))
            .collect();
        for (file, text) in files {
            let m = naga::front::wgsl::parse_str(&text).unwrap();
            for ep in &m.entry_points {
                let name = format!("{file}::{}", ep.name);
                assert!(set.contains(&name), "{name} is in no op's KERNELS");
            }
        }
    }

    #[test]
    fn kernels_are_named_and_include_their_helpers() {
        let k = &matmul::MM_TILE16X8;
        assert_eq!(k.name(), "matmul_tile::mm_tile16x8");
        let text = k.wgsl();
        assert!(text.contains("fn wg_linear") && text.contains("fn put4"));
        assert!(!text.contains("#include"), "includes are resolved");
        assert_eq!(text.matches("fn wg_linear").count(), 1, "each file once");
        let r = k.reflect().unwrap();
        assert_eq!(r.workgroup, 32);
        assert_eq!(optim::NORM_CLIP_FINAL.reflect().unwrap().workgroup, 1);
        assert_eq!(elementwise::ADD.reflect().unwrap().workgroup, 64);
        // Bindings are what the entry point uses, by name.
        let names = |k: &Kernel| -> Vec<String> {
            k.reflect()
                .unwrap()
                .storage
                .into_iter()
                .map(|(_, n)| n)
                .collect()
        };
        assert_eq!(names(&matmul::COLSUM), ["A", "C"]);
        assert_eq!(
            names(&layernorm::LN_FWD),
            ["x", "w", "b", "out", "mean", "rstd"]
        );
        assert_eq!(names(&optim::ADAMW), ["x", "out", "m", "v"]);
        let sources = kernel_sources(&[matmul::KERNELS, matmul::KERNELS]);
        assert_eq!(sources.len(), matmul::KERNELS.len(), "deduplicated");
        assert!(sources.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
    }
}
