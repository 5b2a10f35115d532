//! The op interface: one generic training step (a one-block, attention-only GPT slice with a
//! tied output embedding) runs through both implementations and gives the same loss, gradients
//! and updated parameters.

use crate::gpu_util::*;
use pai::gpu::ops::{CpuOps, GpuOps, Ops};
use pai::gpu::reference::{AdamW, AttnShape};

pub(crate) struct Out {
    pub(crate) loss: Vec<f32>,
    pub(crate) grads: Vec<Vec<f32>>,
    pub(crate) params: Vec<Vec<f32>>,
}

/// The step (also run on the native CPU adapter by `native_ops`).
pub(crate) fn step<O: Ops>(o: &mut O, seed: u64) -> anyhow::Result<Out> {
    let s = AttnShape {
        b: 2,
        t: 5,
        c: 8,
        nh: 2,
    };
    let (b, t, c, v) = (s.b, s.t, s.c, 11);
    let mut rng = Rng::new(seed);
    let tokens: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let targets: Vec<u32> = (0..b * t).map(|_| rng.below(v) as u32).collect();
    let wte = o.upload(&rng.vec(v * c, 0.5), &[v, c])?;
    let wpe = o.upload(&rng.vec(t * c, 0.5), &[t, c])?;
    let lnw = o.upload(&rng.vec(c, 1.0), &[c])?;
    let lnb = o.upload(&rng.vec(c, 0.1), &[c])?;
    let wqkv = o.upload(&rng.vec(3 * c * c, 0.3), &[3 * c, c])?;
    let bqkv = o.upload(&rng.vec(3 * c, 0.1), &[3 * c])?;
    let tok = o.upload_ids(&tokens, &[b, t])?;
    let tgt = o.upload_ids(&targets, &[b * t])?;
    let idx = o.embedding_index(&tokens, v)?;
    let z = |o: &mut O, sh: &[usize]| o.zeros(sh);
    let (x, ln, mean, rstd) = (
        z(o, &[b, t, c])?,
        z(o, &[b, t, c])?,
        z(o, &[b * t])?,
        z(o, &[b * t])?,
    );
    let (qkv, att, p, ds) = (
        z(o, &[b, t, 3 * c])?,
        z(o, &[b, t, c])?,
        z(o, &[b, s.nh, t, t])?,
        z(o, &[b, s.nh, t, t])?,
    );
    let (res, g, logits, losses, dlogits) = (
        z(o, &[b, t, c])?,
        z(o, &[b, t, c])?,
        z(o, &[b * t, v])?,
        z(o, &[b * t])?,
        z(o, &[b * t, v])?,
    );
    // Forward.
    o.embedding(&tok, &wte, &wpe, &x)?;
    o.layernorm(&x, &lnw, &lnb, &ln, &mean, &rstd, 1e-5)?;
    o.matmul(&ln, &wqkv, Some(&bqkv), &qkv, false)?;
    o.attention(s, &qkv, &att, &p)?;
    o.add(&x, &att, &res)?;
    o.gelu(&res, &g)?;
    o.matmul(&g, &wte, None, &logits, false)?;
    o.crossentropy(&logits, &tgt, &losses, Some(&dlogits), 1.0 / (b * t) as f32)?;
    // Backward.
    let (dwte, dwpe, dlnw, dlnb, dwqkv, dbqkv) = (
        z(o, &[v, c])?,
        z(o, &[t, c])?,
        z(o, &[c])?,
        z(o, &[c])?,
        z(o, &[3 * c, c])?,
        z(o, &[3 * c])?,
    );
    let (dg, dres, dx, datt, dqkv, dln) = (
        z(o, &[b, t, c])?,
        z(o, &[b, t, c])?,
        z(o, &[b, t, c])?,
        z(o, &[b, t, c])?,
        z(o, &[b, t, 3 * c])?,
        z(o, &[b, t, c])?,
    );
    o.matmul_dw(&dlogits, &g, &dwte, false)?;
    o.matmul_dx(&dlogits, &wte, &dg, false)?;
    o.gelu_bwd(&res, &dg, &dres, false)?;
    o.residual_bwd(&dres, &dx, &datt, false)?;
    o.attention_bwd(s, &datt, &qkv, &p, &ds, &dqkv)?;
    o.matmul_dw(&dqkv, &ln, &dwqkv, false)?;
    o.colsum(&dqkv, &dbqkv, false)?;
    o.matmul_dx(&dqkv, &wqkv, &dln, false)?;
    o.layernorm_bwd(&dln, &x, &lnw, &mean, &rstd, &dx, &dlnw, &dlnb, true, false)?;
    o.embedding_bwd(&idx, &dx, &dwte, &dwpe, true)?;
    // Update.
    let params = [&wte, &wpe, &lnw, &lnb, &wqkv, &bqkv];
    let grads = [&dwte, &dwpe, &dlnw, &dlnb, &dwqkv, &dbqkv];
    let clip = z(o, &[2])?;
    o.grad_norm_clip(&grads, &clip, 0.5)?;
    // A first Adam step moves each parameter by about lr * sign(g); the key bias gradient is
    // exactly zero in exact arithmetic (softmax ignores a shift of all keys), so with eps 1e-8
    // its f32 rounding noise would decide the sign. eps 1e-3 keeps the comparison meaningful.
    let h = AdamW {
        lr: 1e-2,
        eps: 1e-3,
        ..AdamW::default()
    };
    for (pp, gg) in params.iter().zip(&grads) {
        let sh = o.shape(pp).to_vec();
        let (m, vv) = (z(o, &sh)?, z(o, &sh)?);
        o.adamw(&h, 1, pp, gg, &m, &vv, Some(&clip))?;
    }
    Ok(Out {
        loss: o.read(&losses)?,
        grads: grads
            .iter()
            .map(|g| o.read(g))
            .collect::<anyhow::Result<_>>()?,
        params: params
            .iter()
            .map(|p| o.read(p))
            .collect::<anyhow::Result<_>>()?,
    })
}

#[test]
fn gpu_and_cpu_implementations_agree_on_a_training_step() {
    let cpu = step(&mut CpuOps, 5).unwrap();
    let gpu_out = step(&mut GpuOps::new(gpu()), 5).unwrap();
    assert_close("loss", &gpu_out.loss, &f64s(&cpu.loss), 1e-5);
    for (i, (g, c)) in gpu_out.grads.iter().zip(&cpu.grads).enumerate() {
        assert_close(&format!("grad {i}"), g, &f64s(c), 1e-4);
    }
    for (i, (g, c)) in gpu_out.params.iter().zip(&cpu.params).enumerate() {
        assert_close(&format!("param {i}"), g, &f64s(c), 1e-5);
    }
    // The loss is a real cross-entropy: around ln(11) for a random model.
    let mean: f32 = cpu.loss.iter().sum::<f32>() / cpu.loss.len() as f32;
    assert!(mean > 1.0 && mean < 5.0, "{mean}");
}
