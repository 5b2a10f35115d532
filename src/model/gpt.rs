//! The GPT-2 model on a device: parameters, gradients, AdamW moments and activations held as
//! [`Ops`] tensors (allocated once), with a training step, a loss evaluation and read-back.
//! Everything runs through `Ops`; the host only schedules, uploads token rows and reads back
//! the per-position losses and the gradient norm.

use super::config::GptConfig;
use super::layers::*;
use super::tensors::{DeviceTensors, Init, LayerActs};
use super::weights::{OptState, PER_LAYER, Weights, specs};
use crate::gpu::ops::Ops;
use crate::gpu::reference::{AdamW, AttnShape};
use anyhow::{Context, Result, bail, ensure};

/// Optimiser hyper-parameters of one step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Hyper {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// AdamW decoupled weight decay, applied to the 2-D weights only.
    pub weight_decay: f32,
    /// Global gradient-norm clip; 0 = off.
    pub grad_clip: f32,
}

impl Default for Hyper {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
            grad_clip: 1.0,
        }
    }
}

/// What one training step reports: the mean loss before the update and the global gradient
/// norm (before clipping). May be NaN: the caller checks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    pub loss: f32,
    pub grad_norm: f32,
}

/// The parameters of block `l` (a [`PER_LAYER`] slice of a specs-ordered list).
struct Block<'a, T> {
    ln1w: &'a T,
    ln1b: &'a T,
    qkvw: &'a T,
    qkvb: &'a T,
    projw: &'a T,
    projb: &'a T,
    ln2w: &'a T,
    ln2b: &'a T,
    fcw: &'a T,
    fcb: &'a T,
    fcprojw: &'a T,
    fcprojb: &'a T,
}

fn block<T>(v: &[T], l: usize) -> Block<'_, T> {
    let s = &v[2 + l * PER_LAYER..2 + (l + 1) * PER_LAYER];
    Block {
        ln1w: &s[0],
        ln1b: &s[1],
        qkvw: &s[2],
        qkvb: &s[3],
        projw: &s[4],
        projb: &s[5],
        ln2w: &s[6],
        ln2b: &s[7],
        fcw: &s[8],
        fcb: &s[9],
        fcprojw: &s[10],
        fcprojb: &s[11],
    }
}

/// A GPT-2 with its training state on the device of `O`, for `batch` rows of `context`
/// positions.
pub struct Model<O: Ops> {
    cfg: GptConfig,
    batch: usize,
    t: DeviceTensors<O::T>,
    has_grads: bool,
}

impl<O: Ops> Model<O> {
    /// Uploads the weights and allocates gradients, zero AdamW moments and activations.
    pub fn new(ops: &mut O, w: &Weights, batch: usize) -> Result<Self> {
        w.check()?;
        ensure!(batch > 0, "batch is 0; train on at least one row");
        let t = DeviceTensors::build(&w.cfg, batch, &mut |slots| {
            let shapes: Vec<&[usize]> = slots.iter().map(|s| s.shape).collect();
            let made = match &shapes[..] {
                [one] => ops.zeros(one).map(|t| vec![t]),
                _ => ops.zeros_many(&shapes),
            }
            .and_then(|ts| {
                for (s, t) in slots.iter().zip(&ts) {
                    if let Init::Param(i) = s.init {
                        ops.write(t, &w.tensors[i])?;
                    }
                }
                Ok(ts)
            });
            made.with_context(|| {
                let names: Vec<&str> = slots.iter().map(|s| s.name).collect();
                format!("allocating {} on the device", names.join(", "))
            })
        })?;
        Ok(Self {
            cfg: w.cfg,
            batch,
            t,
            has_grads: false,
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    fn attn_shape(&self) -> AttnShape {
        AttnShape {
            b: self.batch,
            t: self.cfg.context,
            c: self.cfg.n_embd,
            nh: self.cfg.n_head,
        }
    }

    /// Splits `rows` (n × (T+1) ids, n ≤ batch) into inputs [B,T] and targets [B*T], padding
    /// to the batch with copies of the first row; returns them and n.
    fn split_rows(&self, rows: &[u32]) -> Result<(Vec<u32>, Vec<u32>, usize)> {
        let (t, v) = (self.cfg.context, self.cfg.vocab_size);
        let w = t + 1;
        ensure!(
            !rows.is_empty() && rows.len().is_multiple_of(w),
            "got {} token ids; a batch is whole rows of context + 1 = {w} ids",
            rows.len()
        );
        let n = rows.len() / w;
        ensure!(
            n <= self.batch,
            "got {n} rows but the model was made for a batch of {}; pass at most that many",
            self.batch
        );
        if let Some(i) = rows.iter().position(|&id| id as usize >= v) {
            bail!(
                "token id {} (row {}, position {}) is outside the vocabulary of {v}; \
                 the tokens do not belong to this model's tokenizer",
                rows[i],
                i / w,
                i % w
            );
        }
        let mut inputs = Vec::with_capacity(self.batch * t);
        let mut targets = Vec::with_capacity(self.batch * t);
        for r in 0..self.batch {
            let row = if r < n {
                &rows[r * w..(r + 1) * w]
            } else {
                &rows[..w]
            };
            inputs.extend_from_slice(&row[..t]);
            targets.extend_from_slice(&row[1..]);
        }
        Ok((inputs, targets, n))
    }

    /// Forward pass and loss: fills the activations and `losses`, and `dlogits` when `grad`.
    fn forward(&self, ops: &mut O, tokens: &O::T, targets: &O::T, grad: bool) -> Result<()> {
        let (p, a) = (&self.t.params, &self.t.acts);
        let s = self.attn_shape();
        encoder_forward(ops, &a.encoded, tokens, &p[0], &p[1])?;
        for l in 0..self.cfg.n_layer {
            let (w, x) = (block(p, l), &a.layers[l]);
            let inp = if l == 0 {
                &a.encoded
            } else {
                &a.layers[l - 1].res3
            };
            block_forward(ops, x, &w, inp, s)?;
        }
        let last = self.last_residual();
        let nl = 2 + self.cfg.n_layer * PER_LAYER;
        layernorm_forward(
            ops,
            &a.lnf,
            &a.lnf_mean,
            &a.lnf_rstd,
            last,
            &p[nl],
            &p[nl + 1],
        )?;
        linear_forward(ops, &a.logits, &a.lnf, &p[0], None)?;
        let dl = grad.then_some(&self.t.scratch.dlogits);
        crossentropy_forward(
            ops,
            &a.losses,
            dl,
            &a.logits,
            targets,
            self.batch * self.cfg.context,
        )
    }

    fn last_residual(&self) -> &O::T {
        let a = &self.t.acts;
        a.layers.last().map_or(&a.encoded, |x| &x.res3)
    }

    /// Backward pass from `dlogits` into every parameter gradient.
    fn backward(&self, ops: &mut O, index: &O::Index) -> Result<()> {
        let (p, g, a, sc) = (&self.t.params, &self.t.grads, &self.t.acts, &self.t.scratch);
        let s = self.attn_shape();
        let nl = 2 + self.cfg.n_layer * PER_LAYER;
        // Tied output: dlnf = dlogits·wte (its dW goes onto dwte at the end).
        ops.matmul_dx(&sc.dlogits, &p[0], &sc.dln, false)?;
        layernorm_backward(
            ops,
            &sc.dres,
            &g[nl],
            &g[nl + 1],
            &sc.dln,
            self.last_residual(),
            &p[nl],
            &a.lnf_mean,
            &a.lnf_rstd,
            false,
        )?;
        for l in (0..self.cfg.n_layer).rev() {
            let inp = if l == 0 {
                &a.encoded
            } else {
                &a.layers[l - 1].res3
            };
            block_backward(ops, &block(g, l), sc, &a.layers[l], &block(p, l), inp, s)?;
        }
        // dres now holds d(encoded). The embedding gradient first, then the logits' dW onto
        // the same wte gradient: one fixed order.
        encoder_backward(ops, &g[0], &g[1], &sc.dres, index)?;
        ops.matmul_dw(&sc.dlogits, &a.lnf, &g[0], true)
    }

    /// One AdamW step on `rows` (batch × (context+1) token ids; inputs row[..T], targets
    /// row[1..]); `step` counts from 1. Returns the mean loss and the gradient norm.
    pub fn train_step(
        &mut self,
        ops: &mut O,
        rows: &[u32],
        h: &Hyper,
        step: u64,
    ) -> Result<StepStats> {
        ensure!(step >= 1, "train_step: steps count from 1 (got 0)");
        let (inputs, targets, n) = self.split_rows(rows)?;
        ensure!(
            n == self.batch,
            "train_step got {n} rows, the model was made for a batch of {}",
            self.batch
        );
        let (b, t) = (self.batch, self.cfg.context);
        let tokens = ops.upload_ids(&inputs, &[b, t])?;
        let tgt = ops.upload_ids(&targets, &[b * t])?;
        let index = ops.embedding_index(&inputs, self.cfg.vocab_size)?;
        self.forward(ops, &tokens, &tgt, true)?;
        self.backward(ops, &index)?;
        self.has_grads = true;
        // The fused path sums the norm over the gradient block in layout order; the first
        // release's path per tensor in specs order, as it did.
        let grads = if ops.fused() {
            in_order(&self.t.grads, &self.t.opt_order)
        } else {
            self.t.grads.iter().collect()
        };
        let max_norm = if h.grad_clip > 0.0 {
            h.grad_clip
        } else {
            f32::MAX
        };
        ops.grad_norm_clip(&grads, &self.t.clip, max_norm)?;
        let adam = AdamW {
            lr: h.lr,
            beta1: h.beta1,
            beta2: h.beta2,
            eps: h.eps,
            weight_decay: h.weight_decay,
        };
        let clip = (h.grad_clip > 0.0).then_some(&self.t.clip);
        let tt = &self.t;
        ops.adamw_many(
            &adam,
            step,
            &in_order(&tt.params, &tt.opt_order),
            &in_order(&tt.grads, &tt.opt_order),
            &in_order(&tt.m, &tt.opt_order),
            &in_order(&tt.v, &tt.opt_order),
            clip,
        )?;
        let losses = ops.read(&self.t.acts.losses)?;
        let clip = ops.read(&self.t.clip)?;
        Ok(StepStats {
            loss: mean(&losses),
            grad_norm: clip.first().copied().unwrap_or(f32::NAN),
        })
    }

    /// Mean loss over n ≤ batch rows of context + 1 ids (forward only; the batch is padded with
    /// copies of the first row, whose losses are not counted).
    pub fn loss(&mut self, ops: &mut O, rows: &[u32]) -> Result<f32> {
        let (inputs, targets, n) = self.split_rows(rows)?;
        let (b, t) = (self.batch, self.cfg.context);
        let tokens = ops.upload_ids(&inputs, &[b, t])?;
        let tgt = ops.upload_ids(&targets, &[b * t])?;
        self.forward(ops, &tokens, &tgt, false)?;
        let losses = ops.read(&self.t.acts.losses)?;
        Ok(mean(&losses[..n * t]))
    }

    /// The logits [len × V] of one sequence of 1..=context tokens by the full forward pass (the
    /// row is padded to the context with token 0; causal attention keeps the padding from
    /// changing the logits of the first `len` positions).
    pub fn logits(&mut self, ops: &mut O, tokens: &[u32]) -> Result<Vec<f32>> {
        let (t, v) = (self.cfg.context, self.cfg.vocab_size);
        ensure!(
            !tokens.is_empty() && tokens.len() <= t,
            "logits: {} tokens; pass 1 to the context of {t}",
            tokens.len()
        );
        let mut row = tokens.to_vec();
        row.resize(t + 1, 0);
        let (inputs, targets, _) = self.split_rows(&row)?;
        let b = self.batch;
        let ids = ops.upload_ids(&inputs, &[b, t])?;
        let tgt = ops.upload_ids(&targets, &[b * t])?;
        self.forward(ops, &ids, &tgt, false)?;
        let mut logits = ops.read(&self.t.acts.logits)?;
        logits.truncate(tokens.len() * v);
        Ok(logits)
    }

    /// Reads the parameters back.
    pub fn weights(&mut self, ops: &mut O) -> Result<Weights> {
        let tensors = read_all(ops, &self.t.params)?;
        Ok(Weights {
            cfg: self.cfg,
            tensors,
        })
    }

    /// The gradients of the last [`Model::train_step`] (before its update), specs order.
    pub fn grads(&mut self, ops: &mut O) -> Result<Vec<Vec<f32>>> {
        ensure!(
            self.has_grads,
            "no gradients yet: run train_step before reading them"
        );
        read_all(ops, &self.t.grads)
    }

    /// Reads the AdamW moments back, labelled with `step` (the last completed step).
    pub fn opt_state(&mut self, ops: &mut O, step: u64) -> Result<OptState> {
        Ok(OptState {
            m: read_all(ops, &self.t.m)?,
            v: read_all(ops, &self.t.v)?,
            step,
        })
    }

    /// Replaces the AdamW moments (to resume from a checkpoint).
    pub fn load_opt_state(&mut self, ops: &mut O, s: &OptState) -> Result<()> {
        let sp = specs(&self.cfg);
        ensure!(
            s.m.len() == sp.len() && s.v.len() == sp.len(),
            "optimizer state holds {}/{} moments, the model has {} tensors; \
             was it saved for another configuration?",
            s.m.len(),
            s.v.len(),
            sp.len()
        );
        for (i, p) in sp.iter().enumerate() {
            ensure!(
                s.m[i].len() == p.numel() && s.v[i].len() == p.numel(),
                "optimizer moments of {} have {}/{} values, expected {}",
                p.name,
                s.m[i].len(),
                s.v[i].len(),
                p.numel()
            );
        }
        for i in 0..sp.len() {
            ops.write(&self.t.m[i], &s.m[i])?;
            ops.write(&self.t.v[i], &s.v[i])?;
        }
        Ok(())
    }
}

/// One transformer block forward: x's activations from inp [B,T,C].
fn block_forward<O: Ops>(
    ops: &mut O,
    x: &LayerActs<O::T>,
    w: &Block<O::T>,
    inp: &O::T,
    s: AttnShape,
) -> Result<()> {
    let fused = ops.fused();
    layernorm_forward(ops, &x.ln1, &x.ln1_mean, &x.ln1_rstd, inp, w.ln1w, w.ln1b)?;
    linear_forward(ops, &x.qkv, &x.ln1, w.qkvw, Some(w.qkvb))?;
    attention_forward(ops, &x.atty, &x.att, &x.qkv, s)?;
    if fused {
        linear_residual_forward(ops, &x.res2, &x.atty, w.projw, Some(w.projb), inp)?;
    } else {
        linear_forward(ops, &x.attproj, &x.atty, w.projw, Some(w.projb))?;
        residual_forward(ops, &x.res2, inp, &x.attproj)?;
    }
    layernorm_forward(
        ops,
        &x.ln2,
        &x.ln2_mean,
        &x.ln2_rstd,
        &x.res2,
        w.ln2w,
        w.ln2b,
    )?;
    if fused {
        linear_gelu_forward(ops, &x.fch, &x.fch_gelu, &x.ln2, w.fcw, w.fcb)?;
        linear_residual_forward(
            ops,
            &x.res3,
            &x.fch_gelu,
            w.fcprojw,
            Some(w.fcprojb),
            &x.res2,
        )
    } else {
        linear_forward(ops, &x.fch, &x.ln2, w.fcw, Some(w.fcb))?;
        gelu_forward(ops, &x.fch_gelu, &x.fch)?;
        linear_forward(ops, &x.fcproj, &x.fch_gelu, w.fcprojw, Some(w.fcprojb))?;
        residual_forward(ops, &x.res3, &x.res2, &x.fcproj)
    }
}

/// One transformer block backward: on entry `sc.dres` holds d(res3); on exit d(inp). The
/// residual adds pass `dres` on unchanged, so the LayerNorm backwards accumulate into it.
fn block_backward<O: Ops>(
    ops: &mut O,
    g: &Block<O::T>,
    sc: &super::tensors::Scratch<O::T>,
    x: &LayerActs<O::T>,
    w: &Block<O::T>,
    inp: &O::T,
    s: AttnShape,
) -> Result<()> {
    // res3 = res2 + fcproj: d(fcproj) = dres.
    let dres = &sc.dres;
    if ops.fused() {
        gelu_linear_backward(
            ops,
            &sc.dfch,
            g.fcprojw,
            Some(g.fcprojb),
            dres,
            &x.fch_gelu,
            &x.fch,
            w.fcprojw,
        )?;
    } else {
        linear_backward(
            ops,
            &sc.dfch_gelu,
            g.fcprojw,
            Some(g.fcprojb),
            dres,
            &x.fch_gelu,
            w.fcprojw,
        )?;
        gelu_backward(ops, &sc.dfch, &x.fch, &sc.dfch_gelu)?;
    }
    linear_backward(ops, &sc.dln, g.fcw, Some(g.fcb), &sc.dfch, &x.ln2, w.fcw)?;
    layernorm_backward(
        ops,
        dres,
        g.ln2w,
        g.ln2b,
        &sc.dln,
        &x.res2,
        w.ln2w,
        &x.ln2_mean,
        &x.ln2_rstd,
        true,
    )?;
    // res2 = inp + attproj: d(attproj) = dres (now d(res2)).
    linear_backward(
        ops,
        &sc.datty,
        g.projw,
        Some(g.projb),
        dres,
        &x.atty,
        w.projw,
    )?;
    attention_backward(ops, &sc.dqkv, &sc.datt, &sc.datty, &x.qkv, &x.att, s)?;
    linear_backward(ops, &sc.dln, g.qkvw, Some(g.qkvb), &sc.dqkv, &x.ln1, w.qkvw)?;
    layernorm_backward(
        ops,
        dres,
        g.ln1w,
        g.ln1b,
        &sc.dln,
        inp,
        w.ln1w,
        &x.ln1_mean,
        &x.ln1_rstd,
        true,
    )
}

/// The tensors of `v` in the given order.
fn in_order<'a, T>(v: &'a [T], order: &[usize]) -> Vec<&'a T> {
    order.iter().map(|&i| &v[i]).collect()
}

fn read_all<O: Ops>(ops: &mut O, ts: &[O::T]) -> Result<Vec<Vec<f32>>> {
    ts.iter().map(|t| ops.read(t)).collect()
}

/// Mean in f64, summed in position order.
fn mean(x: &[f32]) -> f32 {
    (x.iter().map(|&v| v as f64).sum::<f64>() / x.len().max(1) as f64) as f32
}
