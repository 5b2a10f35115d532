//! The GPT-2 shape: vocabulary, context, layers, heads and channels; its checks, its parameter
//! count, and its Hugging Face `config.json`.

use anyhow::{Result, bail};
use serde_json::{Value, json};

/// Sizes of a GPT-2 model (V, T, L, NH, C in the kernels' notation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GptConfig {
    pub vocab_size: usize,
    pub context: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
}

impl GptConfig {
    /// Every size is positive and the heads split the channels evenly.
    pub fn check(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("context", self.context),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_embd", self.n_embd),
        ] {
            if v == 0 {
                bail!("model {name} is 0; set it to a positive number");
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            let up = self.n_embd.next_multiple_of(self.n_head);
            bail!(
                "model n_embd {} is not a multiple of n_head {}: set n_embd to a multiple \
                 (e.g. {up}) or choose an n_head that divides {}",
                self.n_embd,
                self.n_head,
                self.n_embd
            );
        }
        Ok(())
    }

    /// Number of parameters (the output projection is tied to `wte` and not counted twice).
    pub fn param_count(&self) -> usize {
        super::weights::specs(self)
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum()
    }

    /// Hugging Face GPT-2 `config.json`; `eot_id` is the end-of-text token (bos = eos).
    pub fn hf_config_json(&self, eot_id: u32) -> Value {
        json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "vocab_size": self.vocab_size,
            "n_positions": self.context,
            "n_ctx": self.context,
            "n_embd": self.n_embd,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "n_inner": null,
            "activation_function": "gelu_new",
            "layer_norm_epsilon": 1e-5,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attn_pdrop": 0.0,
            "bos_token_id": eot_id,
            "eos_token_id": eot_id,
            "tie_word_embeddings": true,
        })
    }

    /// Reads the sizes back from a Hugging Face GPT-2 `config.json` (`n_positions`, or `n_ctx`
    /// when absent, is the context) and checks them.
    pub fn from_hf_config(v: &Value) -> Result<Self> {
        let get = |key: &str| -> Result<usize> {
            match v.get(key) {
                None => bail!("config.json has no {key:?}; a GPT-2 config needs it"),
                Some(x) => match x.as_u64() {
                    Some(n) => Ok(n as usize),
                    None => bail!("config.json {key:?} is {x}, expected a non-negative integer"),
                },
            }
        };
        if let Some(t) = v.get("model_type")
            && t != "gpt2"
        {
            bail!("config.json model_type is {t}, expected \"gpt2\"");
        }
        if let Some(n) = v.get("n_inner")
            && !n.is_null()
            && n.as_u64() != get("n_embd").ok().map(|c| 4 * c as u64)
        {
            bail!("config.json n_inner is {n}; pai's GPT-2 uses 4 * n_embd (null)");
        }
        let context = if v.get("n_positions").is_some() {
            get("n_positions")?
        } else {
            get("n_ctx")?
        };
        let cfg = GptConfig {
            vocab_size: get("vocab_size")?,
            context,
            n_layer: get("n_layer")?,
            n_head: get("n_head")?,
            n_embd: get("n_embd")?,
        };
        cfg.check()?;
        Ok(cfg)
    }
}
