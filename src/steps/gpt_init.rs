//! `gpt-init`: GPT-2 weights drawn from a seed, for the tokenizer's vocabulary.

use anyhow::{Context, Result, anyhow};
use tokenizers::Tokenizer;

use super::Artifact;
use super::bpe_tokenizer::END_OF_TEXT;
use super::{
    Default as D, InputDecl, Inputs, Kind, OutputDecl, ParamDecl, ParamType as T, Params, StepCtx,
};
use crate::model::{GptConfig, Weights};

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new("n_layer", T::Int, D::Int(4), "Transformer blocks.").range(1.0, 256.0),
    ParamDecl::new(
        "n_head",
        T::Int,
        D::Int(4),
        "Attention heads; must divide n_embd.",
    )
    .range(1.0, 256.0),
    ParamDecl::new("n_embd", T::Int, D::Int(128), "Channels C.").range(1.0, 65536.0),
    ParamDecl::new(
        "context",
        T::Int,
        D::Int(128),
        "Positions T; must equal the pack context.",
    )
    .range(1.0, 1_048_576.0),
    ParamDecl::new(
        "init_std",
        T::Float,
        D::Float(0.02),
        "Standard deviation of the normal init (residual projections: divided by √(2·n_layer)).",
    )
    .range(0.0, 1.0),
    ParamDecl::new("seed", T::Int, D::Int(1), "Initialisation seed."),
];

pub static GPT_INIT: Kind = Kind {
    name: "gpt-init",
    version: 1,
    doc: "GPT-2 (learned positions, pre-LayerNorm, tanh-GELU, output tied to the token embedding) with \
          weights drawn N(0, init_std) from a seeded generator, residual projections scaled by \
          1/√(2·n_layer), biases zero, LayerNorm weights one: the same parameters give the same bytes on \
          every machine. The vocabulary is the tokenizer's. Writes `model.safetensors` (Hugging Face \
          GPT-2 names and layouts) and `config.json`.",
    params: PARAMS,
    inputs: Inputs::Slots(&[InputDecl {
        role: "tokenizer",
        kinds: &["bpe-tokenizer"],
        doc: "for the vocabulary size",
    }]),
    outputs: |_| {
        Ok(vec![
            OutputDecl::keep(
                "model.safetensors",
                "initial weights (Hugging Face GPT-2 names)",
            )
            .artifact(Artifact::Initialization),
            OutputDecl::keep("config.json", "Hugging Face GPT-2 config")
                .artifact(Artifact::Initialization),
        ])
    },
    validate,
    run,
    ..Kind::PLAIN
};

fn validate(p: &Params) -> std::result::Result<(), String> {
    let (heads, embd) = (
        p.int("n_head").map_err(|e| e.to_string())?,
        p.int("n_embd").map_err(|e| e.to_string())?,
    );
    if embd % heads != 0 {
        return Err(format!(
            "n_head = {heads} does not divide n_embd = {embd}: each head gets n_embd / n_head \
             channels; pick an n_embd that is a multiple of n_head"
        ));
    }
    Ok(())
}

/// The vocabulary size and end-of-text id of a tokenizer.json.
pub fn vocab(bytes: &[u8], node: &str) -> Result<(usize, u32)> {
    let tok = Tokenizer::from_bytes(bytes)
        .map_err(|e| anyhow!("loading tokenizer.json of `{node}`: {e}"))?;
    let eot = tok
        .token_to_id(END_OF_TEXT)
        .with_context(|| format!("the tokenizer of `{node}` has no {END_OF_TEXT} token"))?;
    Ok((tok.get_vocab_size(true), eot))
}

/// The model configuration a gpt-init node's parameters describe.
pub fn config(p: &Params, vocab_size: usize) -> Result<GptConfig> {
    let cfg = GptConfig {
        vocab_size,
        context: p.usize("context")?,
        n_layer: p.usize("n_layer")?,
        n_head: p.usize("n_head")?,
        n_embd: p.usize("n_embd")?,
    };
    cfg.check()?;
    Ok(cfg)
}

fn run(ctx: &StepCtx) -> Result<()> {
    let tok = ctx.input("tokenizer")?;
    let (vocab_size, eot) = vocab(&tok.read("tokenizer.json")?, &tok.node)?;
    let cfg = config(ctx.params, vocab_size)?;
    let w = Weights::init(
        cfg,
        ctx.params.float("init_std")? as f32,
        ctx.params.int("seed")? as u64,
    );
    std::fs::write(ctx.out("model.safetensors"), w.to_safetensors()?)?;
    std::fs::write(
        ctx.out("config.json"),
        serde_json::to_string_pretty(&cfg.hf_config_json(eot))?,
    )?;
    (ctx.summary)(&format!(
        "{} parameters ({} layers, {} heads, {} channels, vocab {}, context {})",
        crate::report::count(cfg.param_count() as u64),
        cfg.n_layer,
        cfg.n_head,
        cfg.n_embd,
        cfg.vocab_size,
        cfg.context
    ));
    Ok(())
}
