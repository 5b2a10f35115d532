//! The one interface model code calls its operations through, with two implementations:
//! [`GpuOps`] (the WGSL kernels, the product's path) and [`CpuOps`] (the plain-Rust f64
//! references: the tests' oracle and the shape a native CPU path would take). Nothing above this
//! trait knows which one runs. Signatures mirror [`crate::gpu::kernels`]; outputs are passed by
//! shared reference (device buffers / interior mutability) and must not alias inputs.

use super::kernels::{self as k, EmbeddingIndex, EmbeddingIndexGpu};
use super::reference::{self as r, AdamW, AttnShape, to_f64};
use super::{Batch, Gpu, Tensor};
use anyhow::{Result, ensure};
use std::cell::RefCell;

/// Tensor operations of a GPT-2 training step.
#[allow(clippy::too_many_arguments)]
pub trait Ops {
    type T;
    type Index;
    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<Self::T>;
    /// Token ids / targets.
    fn upload_ids(&mut self, ids: &[u32], shape: &[usize]) -> Result<Self::T>;
    fn zeros(&mut self, shape: &[usize]) -> Result<Self::T>;
    /// Reads a tensor back (finishing any queued work first).
    fn read(&mut self, t: &Self::T) -> Result<Vec<f32>>;
    fn shape<'a>(&self, t: &'a Self::T) -> &'a [usize];
    fn embedding_index(&mut self, tokens: &[u32], vocab: usize) -> Result<Self::Index>;

    fn matmul(
        &mut self,
        x: &Self::T,
        w: &Self::T,
        bias: Option<&Self::T>,
        y: &Self::T,
        acc: bool,
    ) -> Result<()>;
    fn matmul_dx(&mut self, dy: &Self::T, w: &Self::T, dx: &Self::T, acc: bool) -> Result<()>;
    fn matmul_dw(&mut self, dy: &Self::T, x: &Self::T, dw: &Self::T, acc: bool) -> Result<()>;
    fn colsum(&mut self, dy: &Self::T, db: &Self::T, acc: bool) -> Result<()>;
    fn layernorm(
        &mut self,
        x: &Self::T,
        w: &Self::T,
        b: &Self::T,
        y: &Self::T,
        mean: &Self::T,
        rstd: &Self::T,
        eps: f32,
    ) -> Result<()>;
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
    ) -> Result<()>;
    fn attention(&mut self, s: AttnShape, qkv: &Self::T, out: &Self::T, p: &Self::T) -> Result<()>;
    fn attention_bwd(
        &mut self,
        s: AttnShape,
        dout: &Self::T,
        qkv: &Self::T,
        p: &Self::T,
        ds: &Self::T,
        dqkv: &Self::T,
    ) -> Result<()>;
    fn gelu(&mut self, x: &Self::T, y: &Self::T) -> Result<()>;
    fn gelu_bwd(&mut self, x: &Self::T, dy: &Self::T, dx: &Self::T, acc: bool) -> Result<()>;
    fn add(&mut self, a: &Self::T, b: &Self::T, y: &Self::T) -> Result<()>;
    fn residual_bwd(&mut self, dy: &Self::T, da: &Self::T, db: &Self::T, acc: bool) -> Result<()>;
    fn embedding(
        &mut self,
        tokens: &Self::T,
        wte: &Self::T,
        wpe: &Self::T,
        out: &Self::T,
    ) -> Result<()>;
    fn embedding_bwd(
        &mut self,
        idx: &Self::Index,
        dx: &Self::T,
        dwte: &Self::T,
        dwpe: &Self::T,
        acc: bool,
    ) -> Result<()>;
    fn crossentropy(
        &mut self,
        logits: &Self::T,
        targets: &Self::T,
        losses: &Self::T,
        dlogits: Option<&Self::T>,
        grad_scale: f32,
    ) -> Result<()>;
    /// clip[0] = global norm, clip[1] = clip factor.
    fn grad_norm_clip(&mut self, grads: &[&Self::T], clip: &Self::T, max_norm: f32) -> Result<()>;
    fn adamw(
        &mut self,
        h: &AdamW,
        step: u64,
        param: &Self::T,
        grad: &Self::T,
        m: &Self::T,
        v: &Self::T,
        clip: Option<&Self::T>,
    ) -> Result<()>;
}

/// The WGSL implementation: operations are recorded into one batch, submitted on `read` or
/// [`GpuOps::flush`].
pub struct GpuOps<'g> {
    pub gpu: &'g Gpu,
    batch: Option<Batch<'g>>,
}

impl<'g> GpuOps<'g> {
    pub fn new(gpu: &'g Gpu) -> Self {
        Self { gpu, batch: None }
    }
    fn b(&mut self) -> &mut Batch<'g> {
        let gpu = self.gpu;
        self.batch.get_or_insert_with(|| gpu.batch())
    }
    /// Submits the recorded work (without waiting).
    pub fn flush(&mut self) -> Result<()> {
        if let Some(b) = self.batch.take() {
            b.submit()?;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
impl<'g> Ops for GpuOps<'g> {
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
    fn read(&mut self, t: &Tensor) -> Result<Vec<f32>> {
        self.flush()?;
        self.gpu.read(t)
    }
    fn shape<'a>(&self, t: &'a Tensor) -> &'a [usize] {
        &t.shape
    }
    fn embedding_index(&mut self, tokens: &[u32], vocab: usize) -> Result<EmbeddingIndexGpu> {
        EmbeddingIndexGpu::upload(self.gpu, &EmbeddingIndex::build(tokens, vocab)?)
    }
    fn matmul(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        bias: Option<&Tensor>,
        y: &Tensor,
        acc: bool,
    ) -> Result<()> {
        k::matmul(self.b(), x, w, bias, y, acc)
    }
    fn matmul_dx(&mut self, dy: &Tensor, w: &Tensor, dx: &Tensor, acc: bool) -> Result<()> {
        k::matmul_dx(self.b(), dy, w, dx, acc)
    }
    fn matmul_dw(&mut self, dy: &Tensor, x: &Tensor, dw: &Tensor, acc: bool) -> Result<()> {
        k::matmul_dw(self.b(), dy, x, dw, acc)
    }
    fn colsum(&mut self, dy: &Tensor, db: &Tensor, acc: bool) -> Result<()> {
        k::colsum(self.b(), dy, db, acc)
    }
    fn layernorm(
        &mut self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        y: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        eps: f32,
    ) -> Result<()> {
        k::layernorm(self.b(), x, w, b, y, mean, rstd, eps)
    }
    fn layernorm_bwd(
        &mut self,
        dy: &Tensor,
        x: &Tensor,
        w: &Tensor,
        mean: &Tensor,
        rstd: &Tensor,
        dx: &Tensor,
        dw: &Tensor,
        db: &Tensor,
        acc_dx: bool,
        acc_w: bool,
    ) -> Result<()> {
        k::layernorm_bwd(self.b(), dy, x, w, mean, rstd, dx, dw, db, acc_dx, acc_w)
    }
    fn attention(&mut self, s: AttnShape, qkv: &Tensor, out: &Tensor, p: &Tensor) -> Result<()> {
        k::attention(self.b(), s, qkv, out, p)
    }
    fn attention_bwd(
        &mut self,
        s: AttnShape,
        dout: &Tensor,
        qkv: &Tensor,
        p: &Tensor,
        ds: &Tensor,
        dqkv: &Tensor,
    ) -> Result<()> {
        k::attention_bwd(self.b(), s, dout, qkv, p, ds, dqkv)
    }
    fn gelu(&mut self, x: &Tensor, y: &Tensor) -> Result<()> {
        k::gelu(self.b(), x, y)
    }
    fn gelu_bwd(&mut self, x: &Tensor, dy: &Tensor, dx: &Tensor, acc: bool) -> Result<()> {
        k::gelu_bwd(self.b(), x, dy, dx, acc)
    }
    fn add(&mut self, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<()> {
        k::add(self.b(), a, b, y)
    }
    fn residual_bwd(&mut self, dy: &Tensor, da: &Tensor, db: &Tensor, acc: bool) -> Result<()> {
        k::residual_bwd(self.b(), dy, da, db, acc)
    }
    fn embedding(
        &mut self,
        tokens: &Tensor,
        wte: &Tensor,
        wpe: &Tensor,
        out: &Tensor,
    ) -> Result<()> {
        k::embedding(self.b(), tokens, wte, wpe, out)
    }
    fn embedding_bwd(
        &mut self,
        idx: &EmbeddingIndexGpu,
        dx: &Tensor,
        dwte: &Tensor,
        dwpe: &Tensor,
        acc: bool,
    ) -> Result<()> {
        k::embedding_bwd(self.b(), idx, dx, dwte, dwpe, acc)
    }
    fn crossentropy(
        &mut self,
        logits: &Tensor,
        targets: &Tensor,
        losses: &Tensor,
        dlogits: Option<&Tensor>,
        grad_scale: f32,
    ) -> Result<()> {
        k::crossentropy(self.b(), logits, targets, losses, dlogits, grad_scale)
    }
    fn grad_norm_clip(&mut self, grads: &[&Tensor], clip: &Tensor, max_norm: f32) -> Result<()> {
        let partials = self.gpu.zeros(&[k::norm_slots(grads)])?;
        k::grad_norm_clip(self.b(), grads, &partials, clip, max_norm)
    }
    fn adamw(
        &mut self,
        h: &AdamW,
        step: u64,
        param: &Tensor,
        grad: &Tensor,
        m: &Tensor,
        v: &Tensor,
        clip: Option<&Tensor>,
    ) -> Result<()> {
        k::adamw(self.b(), h, step, param, grad, m, v, clip)
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
    fn get(&self) -> Vec<f64> {
        to_f64(&self.data.borrow())
    }
    fn put(&self, v: &[f64], acc: bool) {
        let mut d = self.data.borrow_mut();
        for (o, &x) in d.iter_mut().zip(v) {
            *o = if acc {
                (*o as f64 + x) as f32
            } else {
                x as f32
            };
        }
    }
    fn rows_cols(&self) -> (usize, usize) {
        match self.shape.split_last() {
            None => (1, 1),
            Some((l, rest)) => (rest.iter().product(), *l),
        }
    }
}

/// The plain-Rust implementation (f64 references, one thread).
#[derive(Default)]
pub struct CpuOps;

fn len(t: &CpuTensor) -> usize {
    t.shape.iter().product()
}

#[allow(clippy::too_many_arguments)]
impl Ops for CpuOps {
    type T = CpuTensor;
    type Index = Vec<u32>;
    fn upload(&mut self, data: &[f32], shape: &[usize]) -> Result<CpuTensor> {
        ensure!(
            data.len() == shape.iter().product::<usize>(),
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
            ids.len() == shape.iter().product::<usize>(),
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
            data: RefCell::new(vec![0.0; shape.iter().product()]),
            ids: vec![],
        })
    }
    fn read(&mut self, t: &CpuTensor) -> Result<Vec<f32>> {
        Ok(t.data.borrow().clone())
    }
    fn shape<'a>(&self, t: &'a CpuTensor) -> &'a [usize] {
        &t.shape
    }
    fn embedding_index(&mut self, tokens: &[u32], vocab: usize) -> Result<Vec<u32>> {
        EmbeddingIndex::build(tokens, vocab)?;
        Ok(tokens.to_vec())
    }
    fn matmul(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        bias: Option<&CpuTensor>,
        y: &CpuTensor,
        acc: bool,
    ) -> Result<()> {
        let (m, kk) = x.rows_cols();
        ensure!(
            w.shape.len() == 2 && w.shape[1] == kk,
            "matmul: x {:?} vs weight {:?}",
            x.shape,
            w.shape
        );
        let n = w.shape[0];
        ensure!(
            len(y) == m * n,
            "matmul: output {:?} should hold [{m}, {n}]",
            y.shape
        );
        let b = bias.map(|b| b.get());
        y.put(
            &r::matmul_fwd(&x.get(), &w.get(), b.as_deref(), m, n, kk),
            acc,
        );
        Ok(())
    }
    fn matmul_dx(
        &mut self,
        dy: &CpuTensor,
        w: &CpuTensor,
        dx: &CpuTensor,
        acc: bool,
    ) -> Result<()> {
        let (m, n) = dy.rows_cols();
        let kk = w.shape[1];
        ensure!(
            w.shape[0] == n && len(dx) == m * kk,
            "matmul_dx: shapes {:?} {:?} {:?}",
            dy.shape,
            w.shape,
            dx.shape
        );
        let (d, _, _) = r::matmul_bwd(&dy.get(), &vec![0.0; m * kk], &w.get(), m, n, kk);
        dx.put(&d, acc);
        Ok(())
    }
    fn matmul_dw(
        &mut self,
        dy: &CpuTensor,
        x: &CpuTensor,
        dw: &CpuTensor,
        acc: bool,
    ) -> Result<()> {
        let (m, n) = dy.rows_cols();
        let (_, kk) = x.rows_cols();
        ensure!(
            len(dw) == n * kk && len(x) == m * kk,
            "matmul_dw: shapes {:?} {:?} {:?}",
            dy.shape,
            x.shape,
            dw.shape
        );
        let (_, d, _) = r::matmul_bwd(&dy.get(), &x.get(), &vec![0.0; n * kk], m, n, kk);
        dw.put(&d, acc);
        Ok(())
    }
    fn colsum(&mut self, dy: &CpuTensor, db: &CpuTensor, acc: bool) -> Result<()> {
        let (m, n) = dy.rows_cols();
        ensure!(len(db) == n, "colsum: output {:?}", db.shape);
        db.put(&r::colsum(&dy.get(), m, n), acc);
        Ok(())
    }
    fn layernorm(
        &mut self,
        x: &CpuTensor,
        w: &CpuTensor,
        b: &CpuTensor,
        y: &CpuTensor,
        mean: &CpuTensor,
        rstd: &CpuTensor,
        eps: f32,
    ) -> Result<()> {
        let (rows, cols) = x.rows_cols();
        ensure!(
            len(w) == cols && len(b) == cols && len(y) == rows * cols,
            "layernorm: shapes"
        );
        let (yy, m, rs) = r::layernorm_fwd(&x.get(), &w.get(), &b.get(), rows, cols, eps as f64);
        y.put(&yy, false);
        mean.put(&m, false);
        rstd.put(&rs, false);
        Ok(())
    }
    fn layernorm_bwd(
        &mut self,
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
        let (rows, cols) = x.rows_cols();
        let (a, b, c) = r::layernorm_bwd(
            &dy.get(),
            &x.get(),
            &w.get(),
            &mean.get(),
            &rstd.get(),
            rows,
            cols,
        );
        dx.put(&a, acc_dx);
        dw.put(&b, acc_w);
        db.put(&c, acc_w);
        Ok(())
    }
    fn attention(
        &mut self,
        s: AttnShape,
        qkv: &CpuTensor,
        out: &CpuTensor,
        p: &CpuTensor,
    ) -> Result<()> {
        ensure!(
            len(qkv) == s.b * s.t * 3 * s.c,
            "attention: qkv {:?}",
            qkv.shape
        );
        let (o, pp) = r::attention_fwd(&qkv.get(), s);
        out.put(&o, false);
        p.put(&pp, false);
        Ok(())
    }
    fn attention_bwd(
        &mut self,
        s: AttnShape,
        dout: &CpuTensor,
        qkv: &CpuTensor,
        p: &CpuTensor,
        _ds: &CpuTensor,
        dqkv: &CpuTensor,
    ) -> Result<()> {
        dqkv.put(
            &r::attention_bwd(&dout.get(), &qkv.get(), &p.get(), s),
            false,
        );
        Ok(())
    }
    fn gelu(&mut self, x: &CpuTensor, y: &CpuTensor) -> Result<()> {
        y.put(&r::gelu_fwd(&x.get()), false);
        Ok(())
    }
    fn gelu_bwd(&mut self, x: &CpuTensor, dy: &CpuTensor, dx: &CpuTensor, acc: bool) -> Result<()> {
        dx.put(&r::gelu_bwd(&x.get(), &dy.get()), acc);
        Ok(())
    }
    fn add(&mut self, a: &CpuTensor, b: &CpuTensor, y: &CpuTensor) -> Result<()> {
        y.put(&r::residual_fwd(&a.get(), &b.get()), false);
        Ok(())
    }
    fn residual_bwd(
        &mut self,
        dy: &CpuTensor,
        da: &CpuTensor,
        db: &CpuTensor,
        acc: bool,
    ) -> Result<()> {
        let g = dy.get();
        da.put(&g, acc);
        db.put(&g, acc);
        Ok(())
    }
    fn embedding(
        &mut self,
        tokens: &CpuTensor,
        wte: &CpuTensor,
        wpe: &CpuTensor,
        out: &CpuTensor,
    ) -> Result<()> {
        let (b, t) = (tokens.shape[0], tokens.shape[1]);
        let c = wte.shape[1];
        EmbeddingIndex::build(&tokens.ids, wte.shape[0])?;
        out.put(
            &r::embedding_fwd(&tokens.ids, &wte.get(), &wpe.get(), b, t, c),
            false,
        );
        Ok(())
    }
    fn embedding_bwd(
        &mut self,
        idx: &Vec<u32>,
        dx: &CpuTensor,
        dwte: &CpuTensor,
        dwpe: &CpuTensor,
        acc: bool,
    ) -> Result<()> {
        let (b, t, c) = (dx.shape[0], dx.shape[1], dx.shape[2]);
        let (a, p) = r::embedding_bwd(idx, &dx.get(), dwte.shape[0], b, t, c);
        dwte.put(&a, acc);
        dwpe.put(&p, acc);
        Ok(())
    }
    fn crossentropy(
        &mut self,
        logits: &CpuTensor,
        targets: &CpuTensor,
        losses: &CpuTensor,
        dlogits: Option<&CpuTensor>,
        grad_scale: f32,
    ) -> Result<()> {
        let (rows, v) = logits.rows_cols();
        ensure!(
            targets.ids.iter().all(|&t| (t as usize) < v),
            "crossentropy: a target is outside the vocabulary of {v}"
        );
        let (l, d) = r::crossentropy(&logits.get(), &targets.ids, rows, v, grad_scale as f64);
        losses.put(&l, false);
        if let Some(dl) = dlogits {
            dl.put(&d, false);
        }
        Ok(())
    }
    fn grad_norm_clip(
        &mut self,
        grads: &[&CpuTensor],
        clip: &CpuTensor,
        max_norm: f32,
    ) -> Result<()> {
        let g: Vec<Vec<f64>> = grads.iter().map(|g| g.get()).collect();
        let norm = r::global_norm(&g.iter().map(|v| &v[..]).collect::<Vec<_>>());
        clip.put(&[norm, r::clip_factor(norm, max_norm as f64)], false);
        Ok(())
    }
    fn adamw(
        &mut self,
        h: &AdamW,
        step: u64,
        param: &CpuTensor,
        grad: &CpuTensor,
        m: &CpuTensor,
        v: &CpuTensor,
        clip: Option<&CpuTensor>,
    ) -> Result<()> {
        let (mut p, mut mm, mut vv) = (param.get(), m.get(), v.get());
        let wd = if param.shape.len() >= 2 {
            h.weight_decay as f64
        } else {
            0.0
        };
        let scale = clip.map_or(1.0, |c| c.data.borrow()[1] as f64);
        r::adamw(&mut p, &grad.get(), &mut mm, &mut vv, h, wd, step, scale);
        param.put(&p, false);
        m.put(&mm, false);
        v.put(&vv, false);
        Ok(())
    }
}
