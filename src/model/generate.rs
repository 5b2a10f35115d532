//! Text generation with a KV cache: a [`Generator`] holds a model's parameters and, per layer,
//! a cache of the qkv rows of every position fed so far, so each new token costs one position's
//! forward pass (embedding at its position, the blocks on one row, attention against the cached
//! keys and values). Sampling runs on the host from the logits read back: temperature, top-k,
//! a seeded splitmix64, greedy at temperature 0.

use super::config::GptConfig;
use super::layers::LN_EPS;
use super::rng::SplitMix64;
use super::weights::{PER_LAYER, Weights};
use crate::gpu::ops::Ops;
use anyhow::{Context, Result, bail, ensure};
use std::time::Instant;

/// Activations for `n` new positions (reused by every layer: nothing is kept for a backward).
struct Acts<X> {
    n: usize,
    ids: Option<X>,
    x: X,      // [n,C] residual stream
    ln: X,     // [n,C]
    mean: X,   // [n]
    rstd: X,   // [n]
    qkv: X,    // [n,3C]
    atty: X,   // [n,C]
    proj: X,   // [n,C]
    res2: X,   // [n,C]
    fch: X,    // [n,4C]
    fchg: X,   // [n,4C]
    logits: X, // [n,V]
}

/// A GPT-2 on the device of `O` with a KV cache of `context` positions.
pub struct Generator<O: Ops> {
    cfg: GptConfig,
    params: Vec<O::T>,
    /// Per layer: the qkv rows [T,3C] of positions 0..pos.
    caches: Vec<O::T>,
    pos: usize,
    acts: Option<Acts<O::T>>,
}

impl<O: Ops> Generator<O> {
    /// Uploads the weights and allocates an empty cache.
    pub fn new(ops: &mut O, w: &Weights) -> Result<Self> {
        w.check()?;
        let cfg = w.cfg;
        let specs = super::weights::specs(&cfg);
        let params = specs
            .iter()
            .zip(&w.tensors)
            .map(|(s, t)| ops.upload(t, &s.shape))
            .collect::<Result<Vec<_>>>()
            .context("uploading the weights")?;
        let caches = (0..cfg.n_layer)
            .map(|_| ops.zeros(&[cfg.context, 3 * cfg.n_embd]))
            .collect::<Result<Vec<_>>>()
            .context("allocating the KV cache")?;
        Ok(Self {
            cfg,
            params,
            caches,
            pos: 0,
            acts: None,
        })
    }

    pub fn config(&self) -> &GptConfig {
        &self.cfg
    }

    /// Positions fed since the last reset (the cache's fill).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Forgets every position (the cache is overwritten as positions are fed again).
    pub fn reset(&mut self) {
        self.pos = 0;
    }

    fn acts(&mut self, ops: &mut O, n: usize) -> Result<()> {
        if self.acts.as_ref().is_some_and(|a| a.n == n) {
            return Ok(());
        }
        let (c, v) = (self.cfg.n_embd, self.cfg.vocab_size);
        let mut z = |s: &[usize]| ops.zeros(s);
        self.acts = Some(Acts {
            n,
            ids: None,
            x: z(&[n, c])?,
            ln: z(&[n, c])?,
            mean: z(&[n])?,
            rstd: z(&[n])?,
            qkv: z(&[n, 3 * c])?,
            atty: z(&[n, c])?,
            proj: z(&[n, c])?,
            res2: z(&[n, c])?,
            fch: z(&[n, 4 * c])?,
            fchg: z(&[n, 4 * c])?,
            logits: z(&[n, v])?,
        });
        Ok(())
    }

    /// Feeds `tokens` at the next positions and returns their logits, [n × V] row-major (row i:
    /// the distribution of the token after tokens[..=i]). Refuses tokens past the context.
    pub fn feed(&mut self, ops: &mut O, tokens: &[u32]) -> Result<Vec<f32>> {
        let (t, v) = (self.cfg.context, self.cfg.vocab_size);
        let n = tokens.len();
        ensure!(n > 0, "nothing to feed");
        ensure!(
            self.pos + n <= t,
            "{} positions are fed and {n} more do not fit the context of {t}",
            self.pos
        );
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= v) {
            bail!("token id {bad} is outside the model's vocabulary of {v}");
        }
        self.acts(ops, n)?;
        let pos = self.pos;
        let nh = self.cfg.n_head;
        let a = self.acts.as_mut().unwrap();
        a.ids = Some(ops.upload_ids(tokens, &[n])?);
        let a = self.acts.as_ref().unwrap();
        let p = &self.params;
        ops.embedding_at(a.ids.as_ref().unwrap(), &p[0], &p[1], &a.x, pos)?;
        for l in 0..self.cfg.n_layer {
            let w = &p[2 + l * PER_LAYER..2 + (l + 1) * PER_LAYER];
            ops.layernorm(&a.x, &w[0], &w[1], &a.ln, &a.mean, &a.rstd, LN_EPS)?;
            ops.matmul(&a.ln, &w[2], Some(&w[3]), &a.qkv, false)?;
            ops.kv_append(&a.qkv, &self.caches[l], pos)?;
            ops.attention_decode(nh, pos, &self.caches[l], &a.atty)?;
            ops.matmul(&a.atty, &w[4], Some(&w[5]), &a.proj, false)?;
            ops.add(&a.x, &a.proj, &a.res2)?;
            ops.layernorm(&a.res2, &w[6], &w[7], &a.ln, &a.mean, &a.rstd, LN_EPS)?;
            ops.matmul(&a.ln, &w[8], Some(&w[9]), &a.fch, false)?;
            ops.gelu(&a.fch, &a.fchg)?;
            ops.matmul(&a.fchg, &w[10], Some(&w[11]), &a.proj, false)?;
            ops.add(&a.res2, &a.proj, &a.x)?;
        }
        let nl = 2 + self.cfg.n_layer * PER_LAYER;
        ops.layernorm(&a.x, &p[nl], &p[nl + 1], &a.ln, &a.mean, &a.rstd, LN_EPS)?;
        ops.matmul(&a.ln, &p[0], None, &a.logits, false)?;
        let logits = ops.read(&a.logits)?;
        self.pos += n;
        debug_assert_eq!(logits.len(), n * v);
        Ok(logits)
    }
}

/// How the next token is drawn from the logits.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Sampling {
    /// Softmax temperature; 0 = greedy (the most likely token, the lowest id on ties).
    pub temperature: f32,
    /// Draw among the k most likely tokens only; 0 = all.
    pub top_k: usize,
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            seed: 1,
        }
    }
}

/// A seeded sampler: the same seed and logits give the same tokens on every machine (the
/// draws are splitmix64; the arithmetic is f64 on the host).
pub struct Sampler {
    s: Sampling,
    rng: SplitMix64,
}

impl Sampler {
    pub fn new(s: Sampling) -> Result<Self> {
        ensure!(
            s.temperature.is_finite() && s.temperature >= 0.0,
            "temperature {} must be 0 (greedy) or positive",
            s.temperature
        );
        Ok(Self {
            s,
            rng: SplitMix64(s.seed),
        })
    }

    /// The next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        ensure!(!logits.is_empty(), "no logits to sample from");
        if let Some(i) = logits.iter().position(|l| !l.is_finite()) {
            bail!(
                "the model produced a non-finite logit ({} for token {i}); its weights are broken",
                logits[i]
            );
        }
        // Most likely first; ties by id, so the order is a function of the logits alone.
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.s.temperature == 0.0 {
            return Ok(order[0] as u32);
        }
        let k = match self.s.top_k {
            0 => order.len(),
            k => k.min(order.len()),
        };
        let top = &order[..k];
        let mx = logits[top[0]] as f64;
        let temp = self.s.temperature as f64;
        let w: Vec<f64> = top
            .iter()
            .map(|&i| ((logits[i] as f64 - mx) / temp).exp())
            .collect();
        let total: f64 = w.iter().sum();
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        let mut acc = 0.0;
        for (&i, &wi) in top.iter().zip(&w) {
            acc += wi;
            if u < acc {
                return Ok(i as u32);
            }
        }
        Ok(*top.last().unwrap() as u32)
    }
}

/// What one generation produced.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Generated {
    /// The new token ids (the prompt not included).
    pub tokens: Vec<u32>,
    pub prompt_tokens: usize,
    /// From the first fed prompt token to the last new token read back.
    pub seconds: f64,
    /// New tokens per second over `seconds` (the prompt's forward pass included).
    pub tokens_per_s: f64,
}

/// Generates up to `max_tokens` tokens after `prompt` (1..=context ids), calling `on_token`
/// with each as it is produced. Stops early when the context is full: the last token is drawn
/// from the logits of the last position and not fed back.
pub fn generate<O: Ops>(
    ops: &mut O,
    g: &mut Generator<O>,
    prompt: &[u32],
    max_tokens: usize,
    sampling: Sampling,
    on_token: &mut dyn FnMut(u32) -> Result<()>,
) -> Result<Generated> {
    let t = g.config().context;
    let v = g.config().vocab_size;
    ensure!(
        !prompt.is_empty(),
        "the prompt is empty; start from the end-of-text token"
    );
    ensure!(
        prompt.len() <= t,
        "the prompt has {} tokens, more than the context of {t}; cut it first",
        prompt.len()
    );
    let mut sampler = Sampler::new(sampling)?;
    let start = Instant::now();
    g.reset();
    let mut tokens = Vec::new();
    if max_tokens > 0 {
        let logits = g.feed(ops, prompt)?;
        let mut last = logits[logits.len() - v..].to_vec();
        loop {
            let tok = sampler.sample(&last)?;
            tokens.push(tok);
            on_token(tok)?;
            if tokens.len() >= max_tokens || g.position() >= t {
                break;
            }
            last = g.feed(ops, &[tok])?;
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(Generated {
        prompt_tokens: prompt.len(),
        tokens_per_s: tokens.len() as f64 / seconds.max(1e-9),
        tokens,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_most_likely_token_and_the_lowest_id_on_ties() {
        let mut s = Sampler::new(Sampling {
            temperature: 0.0,
            top_k: 0,
            seed: 1,
        })
        .unwrap();
        assert_eq!(s.sample(&[0.1, 2.0, -1.0, 2.0]).unwrap(), 1);
    }

    #[test]
    fn top_one_is_greedy_and_seeds_repeat() {
        let logits: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let draw = |seed, k| {
            let mut s = Sampler::new(Sampling {
                temperature: 1.0,
                top_k: k,
                seed,
            })
            .unwrap();
            (0..40)
                .map(|_| s.sample(&logits).unwrap())
                .collect::<Vec<_>>()
        };
        assert!(draw(3, 1).iter().all(|&t| t == draw(1, 1)[0]));
        assert_eq!(draw(5, 0), draw(5, 0));
        assert_ne!(draw(5, 0), draw(6, 0));
        // top-k keeps the draws among the k most likely.
        let mut order: Vec<usize> = (0..50).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        assert!(
            draw(7, 3)
                .iter()
                .all(|&t| order[..3].contains(&(t as usize)))
        );
    }

    #[test]
    fn non_finite_logits_are_an_error() {
        let mut s = Sampler::new(Sampling::default()).unwrap();
        assert!(s.sample(&[0.0, f32::NAN]).is_err());
        assert!(
            Sampler::new(Sampling {
                temperature: -1.0,
                ..Default::default()
            })
            .is_err()
        );
    }
}
