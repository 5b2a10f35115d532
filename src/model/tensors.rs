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
    /// Parameters, gradients and AdamW moments in `specs` order. Each of the four is allocated
    /// as one group in [`DeviceTensors::opt_order`] (an implementation may make a group one
    /// block).
    pub params: Vec<X>,
    pub grads: Vec<X>,
    pub m: Vec<X>,
    pub v: Vec<X>,
    pub acts: Acts<X>,
    pub scratch: Scratch<X>,
    /// [norm, clip factor] from the global-norm kernel.
    pub clip: X,
    /// The order the parameter groups are laid out in: the weight-decayed (2-D) tensors
    /// first, then the rest, each in `specs` order, so that each kind is one contiguous run.
    pub opt_order: Vec<usize>,
}

impl<X> DeviceTensors<X> {
    /// Makes every tensor for `batch` rows through `alloc`, in a fixed order. `alloc` gets
    /// groups of slots to allocate together (parameters, gradients, each AdamW moment) and
    /// single slots (everything else) and returns one tensor per slot.
    pub fn build(
        cfg: &GptConfig,
        batch: usize,
        alloc: &mut dyn FnMut(&[Slot]) -> Result<Vec<X>>,
    ) -> Result<Self> {
        let (b, t, c, nh, v) = (batch, cfg.context, cfg.n_embd, cfg.n_head, cfg.vocab_size);
        let sp = specs(cfg);
        let opt_order: Vec<usize> = (0..sp.len())
            .filter(|&i| sp[i].shape.len() >= 2)
            .chain((0..sp.len()).filter(|&i| sp[i].shape.len() < 2))
            .collect();
        // One group in opt_order, returned in specs order.
        let mut group = |prefix: Option<&str>| -> Result<Vec<X>> {
            let names: Vec<String> = opt_order
                .iter()
                .map(|&i| match prefix {
                    Some(p) => format!("{p}.{}", sp[i].name),
                    None => sp[i].name.clone(),
                })
                .collect();
            let slots: Vec<Slot> = opt_order
                .iter()
                .zip(&names)
                .map(|(&i, name)| Slot {
                    name,
                    shape: &sp[i].shape,
                    init: if prefix.is_none() {
                        Init::Param(i)
                    } else {
                        Init::Zeros
                    },
                })
                .collect();
            let made = alloc(&slots)?;
            anyhow::ensure!(
                made.len() == slots.len(),
                "allocator returned too few tensors"
            );
            let mut by_spec: Vec<Option<X>> = (0..sp.len()).map(|_| None).collect();
            for (&i, x) in opt_order.iter().zip(made) {
                by_spec[i] = Some(x);
            }
            Ok(by_spec.into_iter().map(|x| x.unwrap()).collect())
        };
        let params = group(None)?;
        let grads = group(Some("grad"))?;
        let m = group(Some("adam_m"))?;
        let vv = group(Some("adam_v"))?;
        let mut z = |name: &str, shape: &[usize]| -> Result<X> {
            let mut one = alloc(&[Slot {
                name,
                shape,
                init: Init::Zeros,
            }])?;
            one.pop()
                .ok_or_else(|| anyhow::anyhow!("allocator returned nothing for {name}"))
        };
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
            opt_order,
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
