//! Every tensor a [`super::gpt::Model`] keeps on the device, listed once: `Model::new` allocates
//! from this list and `memory_plan` sizes it, so the two cannot disagree. Generic over what a
//! slot becomes (a device tensor, or just its size).

use super::config::GptConfig;
use super::weights::specs;
use anyhow::Result;

/// How a slot starts: parameter `i` (uploaded from the host weights) or zeros.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    Param(usize),
    Zeros,
}

/// One device tensor to make: a name for messages, its shape, and how it starts.
pub struct Slot<'a> {
    pub name: &'a str,
    pub shape: &'a [usize],
    pub init: Init,
}

/// Activations of one transformer block, B rows of T positions (C channels, NH heads).
pub struct LayerActs<X> {
    pub ln1: X,      // [B,T,C]
    pub ln1_mean: X, // [B*T]
    pub ln1_rstd: X, // [B*T]
    pub qkv: X,      // [B,T,3C]
    pub atty: X,     // [B,T,C]
    pub att: X,      // [B,NH,T,T] softmax probabilities
    pub attproj: X,  // [B,T,C]
    pub res2: X,     // [B,T,C]
    pub ln2: X,      // [B,T,C]
    pub ln2_mean: X, // [B*T]
    pub ln2_rstd: X, // [B*T]
    pub fch: X,      // [B,T,4C]
    pub fch_gelu: X, // [B,T,4C]
    pub fcproj: X,   // [B,T,C]
    pub res3: X,     // [B,T,C]
}

/// Forward activations.
pub struct Acts<X> {
    pub encoded: X, // [B,T,C]
    pub layers: Vec<LayerActs<X>>,
    pub lnf: X,      // [B,T,C]
    pub lnf_mean: X, // [B*T]
    pub lnf_rstd: X, // [B*T]
    pub logits: X,   // [B*T,V]
    pub losses: X,   // [B*T]
}

/// Backward scratch, reused by every layer.
pub struct Scratch<X> {
    pub dres: X,      // [B,T,C] gradient of the residual stream
    pub dln: X,       // [B,T,C] gradient of a LayerNorm output
    pub datty: X,     // [B,T,C]
    pub dqkv: X,      // [B,T,3C]
    pub datt: X,      // [B,NH,T,T] attention backward scratch (dS)
    pub dfch_gelu: X, // [B,T,4C]
    pub dfch: X,      // [B,T,4C]
    pub dlogits: X,   // [B*T,V]
}

/// Everything on the device.
pub struct DeviceTensors<X> {
    pub params: Vec<X>,
    pub grads: Vec<X>,
    pub m: Vec<X>,
    pub v: Vec<X>,
    pub acts: Acts<X>,
    pub scratch: Scratch<X>,
    /// [norm, clip factor] from the global-norm kernel.
    pub clip: X,
}

impl<X> DeviceTensors<X> {
    /// Makes every tensor for `batch` rows through `alloc`, in a fixed order.
    pub fn build(
        cfg: &GptConfig,
        batch: usize,
        alloc: &mut dyn FnMut(Slot) -> Result<X>,
    ) -> Result<Self> {
        let (b, t, c, nh, v) = (batch, cfg.context, cfg.n_embd, cfg.n_head, cfg.vocab_size);
        let sp = specs(cfg);
        let mut params = Vec::with_capacity(sp.len());
        for (i, s) in sp.iter().enumerate() {
            params.push(alloc(Slot {
                name: &s.name,
                shape: &s.shape,
                init: Init::Param(i),
            })?);
        }
        let mut z = |name: &str, shape: &[usize]| {
            alloc(Slot {
                name,
                shape,
                init: Init::Zeros,
            })
        };
        let mut group = |prefix: &str| {
            sp.iter()
                .map(|s| z(&format!("{prefix}.{}", s.name), &s.shape))
                .collect::<Result<Vec<X>>>()
        };
        let grads = group("grad")?;
        let m = group("adam_m")?;
        let vv = group("adam_v")?;
        let (btc, bt) = ([b, t, c], [b * t]);
        let encoded = z("act.encoded", &btc)?;
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for l in 0..cfg.n_layer {
            let n = |s: &str| format!("act.h.{l}.{s}");
            layers.push(LayerActs {
                ln1: z(&n("ln1"), &btc)?,
                ln1_mean: z(&n("ln1_mean"), &bt)?,
                ln1_rstd: z(&n("ln1_rstd"), &bt)?,
                qkv: z(&n("qkv"), &[b, t, 3 * c])?,
                atty: z(&n("atty"), &btc)?,
                att: z(&n("att"), &[b, nh, t, t])?,
                attproj: z(&n("attproj"), &btc)?,
                res2: z(&n("res2"), &btc)?,
                ln2: z(&n("ln2"), &btc)?,
                ln2_mean: z(&n("ln2_mean"), &bt)?,
                ln2_rstd: z(&n("ln2_rstd"), &bt)?,
                fch: z(&n("fch"), &[b, t, 4 * c])?,
                fch_gelu: z(&n("fch_gelu"), &[b, t, 4 * c])?,
                fcproj: z(&n("fcproj"), &btc)?,
                res3: z(&n("res3"), &btc)?,
            });
        }
        let acts = Acts {
            encoded,
            layers,
            lnf: z("act.lnf", &btc)?,
            lnf_mean: z("act.lnf_mean", &bt)?,
            lnf_rstd: z("act.lnf_rstd", &bt)?,
            logits: z("act.logits", &[b * t, v])?,
            losses: z("act.losses", &bt)?,
        };
        let scratch = Scratch {
            dres: z("scratch.dres", &btc)?,
            dln: z("scratch.dln", &btc)?,
            datty: z("scratch.datty", &btc)?,
            dqkv: z("scratch.dqkv", &[b, t, 3 * c])?,
            datt: z("scratch.datt", &[b, nh, t, t])?,
            dfch_gelu: z("scratch.dfch_gelu", &[b, t, 4 * c])?,
            dfch: z("scratch.dfch", &[b, t, 4 * c])?,
            dlogits: z("scratch.dlogits", &[b * t, v])?,
        };
        let clip = z("clip", &[2])?;
        Ok(DeviceTensors {
            params,
            grads,
            m,
            v: vv,
            acts,
            scratch,
            clip,
        })
    }
}

/// Tensors uploaded afresh each step (not held by the model): token ids [B,T], targets [B*T],
/// the embedding-gradient index (offsets [V+1], positions [B*T]), all 4-byte words.
pub fn step_uploads(cfg: &GptConfig, batch: usize) -> Vec<(String, Vec<usize>)> {
    let (b, t) = (batch, cfg.context);
    vec![
        ("step.tokens".into(), vec![b, t]),
        ("step.targets".into(), vec![b * t]),
        ("step.index_offsets".into(), vec![cfg.vocab_size + 1]),
        ("step.index_positions".into(), vec![b * t]),
    ]
}
