//! GPT-2's layers as forward/backward pairs over [`Ops`] (in the manner of llm.c's
//! train_gpt2.c): outputs first, then inputs, then sizes. B rows, T positions, C channels,
//! NH heads, V vocabulary. Backward functions overwrite parameter gradients (one step's
//! gradients are written once) and say which input gradients they accumulate into.

use crate::gpu::ops::Ops;
use crate::gpu::reference::AttnShape;
use anyhow::Result;

/// LayerNorm epsilon (GPT-2's).
pub const LN_EPS: f32 = 1e-5;

/// out [B,T,C] = wte[tokens] + wpe[t]; tokens u32 [B,T], wte [V,C], wpe [T,C].
pub fn encoder_forward<O: Ops>(
    ops: &mut O,
    out: &O::T,
    tokens: &O::T,
    wte: &O::T,
    wpe: &O::T,
) -> Result<()> {
    ops.embedding(tokens, wte, wpe, out)
}

/// dwte [V,C] = Σ dout over positions holding each token (overwritten), dwpe [T,C] = Σ_b dout
/// (overwritten); dout [B,T,C].
pub fn encoder_backward<O: Ops>(
    ops: &mut O,
    dwte: &O::T,
    dwpe: &O::T,
    dout: &O::T,
    index: &O::Index,
) -> Result<()> {
    ops.embedding_bwd(index, dout, dwte, dwpe, false)
}

/// out [B,T,C], mean/rstd [B*T] = LayerNorm(inp [B,T,C]; w, b [C]).
pub fn layernorm_forward<O: Ops>(
    ops: &mut O,
    out: &O::T,
    mean: &O::T,
    rstd: &O::T,
    inp: &O::T,
    w: &O::T,
    b: &O::T,
) -> Result<()> {
    ops.layernorm(inp, w, b, out, mean, rstd, LN_EPS)
}

/// dinp [B,T,C] += ..., dw, db [C] overwritten; dout, inp [B,T,C], mean/rstd [B*T].
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward<O: Ops>(
    ops: &mut O,
    dinp: &O::T,
    dw: &O::T,
    db: &O::T,
    dout: &O::T,
    inp: &O::T,
    w: &O::T,
    mean: &O::T,
    rstd: &O::T,
    acc_dinp: bool,
) -> Result<()> {
    ops.layernorm_bwd(dout, inp, w, mean, rstd, dinp, dw, db, acc_dinp, false)
}

/// out [B,T,OC] = inp [B,T,IC] · wᵀ + b; w [OC,IC], b [OC] (None: no bias).
pub fn linear_forward<O: Ops>(
    ops: &mut O,
    out: &O::T,
    inp: &O::T,
    w: &O::T,
    b: Option<&O::T>,
) -> Result<()> {
    ops.matmul(inp, w, b, out, false)
}

/// dinp [B,T,IC] = dout·w (overwritten), dw [OC,IC] = doutᵀ·inp, db [OC] = Σ_rows dout
/// (overwritten; None: no bias); dout [B,T,OC].
pub fn linear_backward<O: Ops>(
    ops: &mut O,
    dinp: &O::T,
    dw: &O::T,
    db: Option<&O::T>,
    dout: &O::T,
    inp: &O::T,
    w: &O::T,
) -> Result<()> {
    ops.matmul_dx(dout, w, dinp, false)?;
    ops.matmul_dw(dout, inp, dw, false)?;
    if let Some(db) = db {
        ops.colsum(dout, db, false)?;
    }
    Ok(())
}

/// pre, out [B,T,OC]: pre = inp [B,T,IC] · wᵀ + b, out = gelu(pre) (one fused pass).
pub fn linear_gelu_forward<O: Ops>(
    ops: &mut O,
    pre: &O::T,
    out: &O::T,
    inp: &O::T,
    w: &O::T,
    b: &O::T,
) -> Result<()> {
    ops.matmul_gelu(inp, w, b, pre, out)
}

/// out [B,T,OC] = res [B,T,OC] + (inp [B,T,IC] · wᵀ + b): a linear that ends in the residual
/// add (its backward is [`linear_backward`] with dout = the residual stream's gradient).
pub fn linear_residual_forward<O: Ops>(
    ops: &mut O,
    out: &O::T,
    inp: &O::T,
    w: &O::T,
    b: Option<&O::T>,
    res: &O::T,
) -> Result<()> {
    ops.matmul_residual(inp, w, b, res, out)
}

/// The backward of `gelu(pre)` followed by a linear: dpre [B,T,IC] = gelu'(pre)·(dout·w)
/// (overwritten, one fused pass), dw [OC,IC] = doutᵀ·gelu(pre) = doutᵀ·act, db [OC] (overwritten;
/// None: no bias); dout [B,T,OC], act = gelu(pre) and pre [B,T,IC].
#[allow(clippy::too_many_arguments)]
pub fn gelu_linear_backward<O: Ops>(
    ops: &mut O,
    dpre: &O::T,
    dw: &O::T,
    db: Option<&O::T>,
    dout: &O::T,
    act: &O::T,
    pre: &O::T,
    w: &O::T,
) -> Result<()> {
    ops.matmul_dx_gelu(dout, w, pre, dpre)?;
    ops.matmul_dw(dout, act, dw, false)?;
    if let Some(db) = db {
        ops.colsum(dout, db, false)?;
    }
    Ok(())
}

/// out [B,T,C], att [B,NH,T,T] (probabilities) = causal attention of qkv [B,T,3C].
pub fn attention_forward<O: Ops>(
    ops: &mut O,
    out: &O::T,
    att: &O::T,
    qkv: &O::T,
    s: AttnShape,
) -> Result<()> {
    ops.attention(s, qkv, out, att)
}

/// dqkv [B,T,3C] (overwritten), datt [B,NH,T,T] scratch; dout [B,T,C], qkv, att.
pub fn attention_backward<O: Ops>(
    ops: &mut O,
    dqkv: &O::T,
    datt: &O::T,
    dout: &O::T,
    qkv: &O::T,
    att: &O::T,
    s: AttnShape,
) -> Result<()> {
    ops.attention_bwd(s, dout, qkv, att, datt, dqkv)
}

/// out [B,T,4C] = gelu(inp [B,T,4C]).
pub fn gelu_forward<O: Ops>(ops: &mut O, out: &O::T, inp: &O::T) -> Result<()> {
    ops.gelu(inp, out)
}

/// dinp [B,T,4C] = gelu'(inp)·dout (overwritten).
pub fn gelu_backward<O: Ops>(ops: &mut O, dinp: &O::T, inp: &O::T, dout: &O::T) -> Result<()> {
    ops.gelu_bwd(inp, dout, dinp, false)
}

/// out [B,T,C] = a + b. (Its backward passes dout to both inputs: the model reuses the
/// residual-stream gradient in place instead of copying it.)
pub fn residual_forward<O: Ops>(ops: &mut O, out: &O::T, a: &O::T, b: &O::T) -> Result<()> {
    ops.add(a, b, out)
}

/// losses [B*T] = −log softmax(logits [B*T,V])[targets]; with dlogits [B*T,V]:
/// (softmax − onehot)/(B*T).
pub fn crossentropy_forward<O: Ops>(
    ops: &mut O,
    losses: &O::T,
    dlogits: Option<&O::T>,
    logits: &O::T,
    targets: &O::T,
    rows: usize,
) -> Result<()> {
    ops.crossentropy(logits, targets, losses, dlogits, 1.0 / rows as f32)
}
