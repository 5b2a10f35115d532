//! Plain-Rust references of every training kernel, in f64 (inputs, accumulation and outputs).
//!
//! Same shapes and semantics as the WGSL kernels in `shaders/`; the tests' oracle, and the CPU
//! implementation behind [`crate::gpu::ops::CpuOps`]. All matrices are row-major.

/// y[m,n] = x[m,k] · w[n,k]ᵀ + b[n].
pub fn matmul_fwd(
    x: &[f64],
    w: &[f64],
    b: Option<&[f64]>,
    m: usize,
    n: usize,
    k: usize,
) -> Vec<f64> {
    assert_eq!(x.len(), m * k);
    assert_eq!(w.len(), n * k);
    let mut y = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = b.map_or(0.0, |b| b[j]);
            for p in 0..k {
                s += x[i * k + p] * w[j * k + p];
            }
            y[i * n + j] = s;
        }
    }
    y
}

/// Gradients of [`matmul_fwd`]: dx = dy·w [m,k], dw = dyᵀ·x [n,k], db = column sums of dy [n].
pub fn matmul_bwd(
    dy: &[f64],
    x: &[f64],
    w: &[f64],
    m: usize,
    n: usize,
    k: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; m * k];
    let mut dw = vec![0.0; n * k];
    let mut db = vec![0.0; n];
    for i in 0..m {
        for j in 0..n {
            let g = dy[i * n + j];
            db[j] += g;
            for p in 0..k {
                dx[i * k + p] += g * w[j * k + p];
                dw[j * k + p] += g * x[i * k + p];
            }
        }
    }
    (dx, dw, db)
}

/// Column sums: out[j] = Σ_i a[i,j] for a [m,n].
pub fn colsum(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    let mut s = vec![0.0; n];
    for i in 0..m {
        for j in 0..n {
            s[j] += a[i * n + j];
        }
    }
    s
}

/// LayerNorm forward over rows of x [rows, cols]: (y, mean, rstd).
pub fn layernorm_fwd(
    x: &[f64],
    w: &[f64],
    b: &[f64],
    rows: usize,
    cols: usize,
    eps: f64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut y = vec![0.0; rows * cols];
    let mut mean = vec![0.0; rows];
    let mut rstd = vec![0.0; rows];
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let m = row.iter().sum::<f64>() / cols as f64;
        let v = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / cols as f64;
        let rs = 1.0 / (v + eps).sqrt();
        for c in 0..cols {
            y[r * cols + c] = (row[c] - m) * rs * w[c] + b[c];
        }
        mean[r] = m;
        rstd[r] = rs;
    }
    (y, mean, rstd)
}

/// LayerNorm backward: (dx, dw, db).
pub fn layernorm_bwd(
    dy: &[f64],
    x: &[f64],
    w: &[f64],
    mean: &[f64],
    rstd: &[f64],
    rows: usize,
    cols: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut dx = vec![0.0; rows * cols];
    let mut dw = vec![0.0; cols];
    let mut db = vec![0.0; cols];
    for r in 0..rows {
        let o = r * cols;
        let n: Vec<f64> = (0..cols).map(|c| (x[o + c] - mean[r]) * rstd[r]).collect();
        let dn: Vec<f64> = (0..cols).map(|c| w[c] * dy[o + c]).collect();
        let mdn = dn.iter().sum::<f64>() / cols as f64;
        let mdnn = dn.iter().zip(&n).map(|(a, b)| a * b).sum::<f64>() / cols as f64;
        for c in 0..cols {
            dx[o + c] = (dn[c] - mdn - n[c] * mdnn) * rstd[r];
            dw[c] += n[c] * dy[o + c];
            db[c] += dy[o + c];
        }
    }
    (dx, dw, db)
}

/// Shape of an attention call: batch, context, channels, heads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub b: usize,
    pub t: usize,
    pub c: usize,
    pub nh: usize,
}

impl AttnShape {
    pub fn hs(&self) -> usize {
        self.c / self.nh
    }
    pub fn scale(&self) -> f64 {
        1.0 / (self.hs() as f64).sqrt()
    }
}

/// Causal attention forward: qkv [B,T,3C] → (out [B,T,C], P [B,NH,T,T]).
pub fn attention_fwd(qkv: &[f64], s: AttnShape) -> (Vec<f64>, Vec<f64>) {
    let AttnShape { b, t, c, nh } = s;
    let hs = s.hs();
    let c3 = 3 * c;
    let mut out = vec![0.0; b * t * c];
    let mut p = vec![0.0; b * nh * t * t];
    for bi in 0..b {
        for h in 0..nh {
            for ti in 0..t {
                let q = (bi * t + ti) * c3 + h * hs;
                let row = ((bi * nh + h) * t + ti) * t;
                let mut scores = vec![0.0; ti + 1];
                for (t2, sc) in scores.iter_mut().enumerate() {
                    let k = (bi * t + t2) * c3 + c + h * hs;
                    *sc = (0..hs).map(|d| qkv[q + d] * qkv[k + d]).sum::<f64>() * s.scale();
                }
                let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scores.iter().map(|v| (v - mx).exp()).sum();
                for (t2, sc) in scores.iter().enumerate() {
                    p[row + t2] = (sc - mx).exp() / sum;
                }
                for d in 0..hs {
                    out[(bi * t + ti) * c + h * hs + d] = (0..=ti)
                        .map(|t2| p[row + t2] * qkv[(bi * t + t2) * c3 + 2 * c + h * hs + d])
                        .sum();
                }
            }
        }
    }
    (out, p)
}

/// Causal attention backward: dqkv [B,T,3C] from dout [B,T,C], qkv and P.
pub fn attention_bwd(dout: &[f64], qkv: &[f64], p: &[f64], s: AttnShape) -> Vec<f64> {
    let AttnShape { b, t, c, nh } = s;
    let hs = s.hs();
    let c3 = 3 * c;
    let sc = s.scale();
    let mut dqkv = vec![0.0; b * t * c3];
    for bi in 0..b {
        for h in 0..nh {
            for ti in 0..t {
                let row = ((bi * nh + h) * t + ti) * t;
                let o = (bi * t + ti) * c + h * hs;
                let dp: Vec<f64> = (0..=ti)
                    .map(|t2| {
                        let v = (bi * t + t2) * c3 + 2 * c + h * hs;
                        (0..hs).map(|d| dout[o + d] * qkv[v + d]).sum()
                    })
                    .collect();
                let rowdot: f64 = (0..=ti).map(|t2| dp[t2] * p[row + t2]).sum();
                let q = (bi * t + ti) * c3 + h * hs;
                for t2 in 0..=ti {
                    let ds = p[row + t2] * (dp[t2] - rowdot);
                    let k = (bi * t + t2) * c3 + c + h * hs;
                    let v = k + c;
                    for d in 0..hs {
                        dqkv[q + d] += sc * ds * qkv[k + d];
                        dqkv[k + d] += sc * ds * qkv[q + d];
                        dqkv[v + d] += p[row + t2] * dout[o + d];
                    }
                }
            }
        }
    }
    dqkv
}

const GELU_S: f64 = 0.797_884_560_802_865_4; // sqrt(2/pi)
const GELU_A: f64 = 0.044715;

/// tanh-GELU.
pub fn gelu_fwd(x: &[f64]) -> Vec<f64> {
    x.iter()
        .map(|&v| 0.5 * v * (1.0 + (GELU_S * (v + GELU_A * v * v * v)).tanh()))
        .collect()
}

/// dx = gelu'(x) · dy.
pub fn gelu_bwd(x: &[f64], dy: &[f64]) -> Vec<f64> {
    x.iter()
        .zip(dy)
        .map(|(&v, &g)| {
            let t = (GELU_S * (v + GELU_A * v * v * v)).tanh();
            let local =
                0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_S * (1.0 + 3.0 * GELU_A * v * v);
            local * g
        })
        .collect()
}

/// y = a + b.
pub fn residual_fwd(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

/// out[b,t,:] = wte[tok[b,t],:] + wpe[t,:]. Panics on a token ≥ V (callers validate).
pub fn embedding_fwd(
    tokens: &[u32],
    wte: &[f64],
    wpe: &[f64],
    b: usize,
    t: usize,
    c: usize,
) -> Vec<f64> {
    let mut out = vec![0.0; b * t * c];
    for bt in 0..b * t {
        let tok = tokens[bt] as usize;
        let ti = bt % t;
        for ci in 0..c {
            out[bt * c + ci] = wte[tok * c + ci] + wpe[ti * c + ci];
        }
    }
    out
}

/// Embedding gradients: (dwte [V,C], dwpe [T,C]).
pub fn embedding_bwd(
    tokens: &[u32],
    dx: &[f64],
    v: usize,
    b: usize,
    t: usize,
    c: usize,
) -> (Vec<f64>, Vec<f64>) {
    let mut dwte = vec![0.0; v * c];
    let mut dwpe = vec![0.0; t * c];
    for bt in 0..b * t {
        let tok = tokens[bt] as usize;
        let ti = bt % t;
        for ci in 0..c {
            dwte[tok * c + ci] += dx[bt * c + ci];
            dwpe[ti * c + ci] += dx[bt * c + ci];
        }
    }
    (dwte, dwpe)
}

/// Softmax cross-entropy per row: (losses [rows], dlogits [rows,V] = (p − onehot)·grad_scale).
pub fn crossentropy(
    logits: &[f64],
    targets: &[u32],
    rows: usize,
    v: usize,
    grad_scale: f64,
) -> (Vec<f64>, Vec<f64>) {
    let mut losses = vec![0.0; rows];
    let mut dl = vec![0.0; rows * v];
    for r in 0..rows {
        let row = &logits[r * v..(r + 1) * v];
        let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|x| (x - mx).exp()).sum();
        let tgt = targets[r] as usize;
        losses[r] = sum.ln() - (row[tgt] - mx);
        for j in 0..v {
            let pj = (row[j] - mx).exp() / sum;
            dl[r * v + j] = (pj - if j == tgt { 1.0 } else { 0.0 }) * grad_scale;
        }
    }
    (losses, dl)
}

/// √(Σ g²) over all the tensors.
pub fn global_norm(grads: &[&[f64]]) -> f64 {
    grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|v| v * v)
        .sum::<f64>()
        .sqrt()
}

/// Clip factor for a global norm: max_norm / norm when norm > max_norm, else 1.
pub fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if norm > max_norm {
        max_norm / norm
    } else {
        1.0
    }
}

/// AdamW hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Applied only to tensors with 2 or more dimensions.
    pub weight_decay: f32,
}

impl Default for AdamW {
    fn default() -> Self {
        Self {
            lr: 3e-4,
            beta1: 0.9,
            beta2: 0.95,
            eps: 1e-8,
            weight_decay: 0.1,
        }
    }
}

impl AdamW {
    /// Bias corrections (1 − β1^t, 1 − β2^t) for step t ≥ 1.
    pub fn corrections(&self, step: u64) -> (f64, f64) {
        let t = step.max(1) as i32;
        (
            1.0 - (self.beta1 as f64).powi(t),
            1.0 - (self.beta2 as f64).powi(t),
        )
    }
}

/// One AdamW step in place; `grad_scale` multiplies g (the clip factor); `wd` is the weight
/// decay to use for this tensor (0 for 1-D tensors).
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    h: &AdamW,
    wd: f64,
    step: u64,
    grad_scale: f64,
) {
    let (bc1, bc2) = h.corrections(step);
    let (b1, b2) = (h.beta1 as f64, h.beta2 as f64);
    for i in 0..p.len() {
        let gi = g[i] * grad_scale;
        m[i] = b1 * m[i] + (1.0 - b1) * gi;
        v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
        let mh = m[i] / bc1;
        let vh = v[i] / bc2;
        p[i] -= h.lr as f64 * (mh / (vh.sqrt() + h.eps as f64) + wd * p[i]);
    }
}

/// f32 slice to f64.
pub fn to_f64(x: &[f32]) -> Vec<f64> {
    x.iter().map(|&v| v as f64).collect()
}

/// f64 slice to f32.
pub fn to_f32(x: &[f64]) -> Vec<f32> {
    x.iter().map(|&v| v as f32).collect()
}
