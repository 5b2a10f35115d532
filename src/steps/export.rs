//! `export`: a Hugging Face GPT-2 folder (`config.json`, `model.safetensors`,
//! `tokenizer.json` and the small files `transformers` reads beside them),
//! which `GPT2LMHeadModel.from_pretrained(dir)` and
//! `AutoTokenizer.from_pretrained(dir)` load as it is.

use anyhow::{Result, bail};
use serde_json::json;

use super::Artifact;
use super::bpe_tokenizer::END_OF_TEXT;
use super::{
    Default as D, InputDecl, InputView, Inputs, Kind, OutputDecl, ParamDecl, ParamType as T,
    Params, StepCtx,
};
use crate::model::{GptConfig, Weights};

/// The `weights` parameter of the kinds that read a trained model.
pub const WEIGHTS_PARAM: ParamDecl = ParamDecl::new(
    "weights",
    T::Str,
    D::Str("best"),
    "Which weights of the `train` input: `best` (best validation loss) or `final` (last step).",
);

/// `weights` must be `best` or `final`.
pub fn check_weights(p: &Params) -> std::result::Result<(), String> {
    match p.str("weights") {
        Ok("best" | "final") | Err(_) => Ok(()),
        Ok(other) => Err(format!(
            "weights = {other:?} is not a choice: use \"best\" (the best validation loss) or \"final\" (the last step)"
        )),
    }
}

/// The file of a `train` node the `weights` parameter names.
pub fn weights_file(p: &Params) -> Result<&'static str> {
    super::models::weights_file("train", p.str("weights")?)
}

/// The configuration and the chosen weights of a trained model input, the
/// weights checked tensor by tensor against the config.
pub fn trained_model(model: &InputView, p: &Params) -> Result<(GptConfig, Vec<u8>)> {
    let cfg = GptConfig::from_hf_config(&serde_json::from_slice(&model.read("config.json")?)?)?;
    let bytes = model.read(weights_file(p)?)?;
    // Reading checks every name, shape and dtype against the config.
    Weights::from_safetensors(&cfg, &bytes)?;
    Ok((cfg, bytes))
}

pub static EXPORT: Kind = Kind {
    name: "export",
    version: 1,
    doc: "A Hugging Face GPT-2 directory that `transformers` loads as it is \
          (`GPT2LMHeadModel.from_pretrained(dir)`, `AutoTokenizer.from_pretrained(dir)`): `config.json`, \
          `model.safetensors` (the chosen weights, byte for byte), `tokenizer.json`, \
          `tokenizer_config.json`, `special_tokens_map.json`, `generation_config.json`.",
    params: &[WEIGHTS_PARAM],
    inputs: Inputs::Slots(&[
        InputDecl {
            role: "model",
            kinds: &["train"],
            doc: "trained weights",
        },
        InputDecl {
            role: "tokenizer",
            kinds: &["bpe-tokenizer"],
            doc: "the tokenizer",
        },
    ]),
    outputs: |_| {
        Ok([
            OutputDecl::keep("config.json", "Hugging Face GPT-2 config"),
            OutputDecl::keep("model.safetensors", "the weights"),
            OutputDecl::keep("tokenizer.json", "the tokenizer"),
            OutputDecl::keep(
                "tokenizer_config.json",
                "tokenizer class and special tokens",
            ),
            OutputDecl::keep("special_tokens_map.json", "bos, eos and unk tokens"),
            OutputDecl::keep("generation_config.json", "bos and eos ids for generate()"),
        ]
        .into_iter()
        .map(|o| o.artifact(Artifact::FinalWeights))
        .collect())
    },
    validate: check_weights,
    run,
    ..Kind::PLAIN
};

fn run(ctx: &StepCtx) -> Result<()> {
    let (cfg, weights) = trained_model(ctx.input("model")?, ctx.params)?;
    let tok = ctx.input("tokenizer")?;
    let tok_bytes = tok.read("tokenizer.json")?;
    let (vocab, eot) = super::gpt_init::vocab(&tok_bytes, &tok.node)?;
    if vocab != cfg.vocab_size {
        bail!(
            "the tokenizer `{}` has {vocab} tokens but the model was made for {}: export the model \
             with the tokenizer it was trained with",
            tok.node,
            cfg.vocab_size
        );
    }
    let pretty = |v: serde_json::Value| serde_json::to_string_pretty(&v);
    std::fs::write(ctx.out("config.json"), pretty(cfg.hf_config_json(eot))?)?;
    std::fs::write(ctx.out("model.safetensors"), weights)?;
    std::fs::write(ctx.out("tokenizer.json"), tok_bytes)?;
    std::fs::write(
        ctx.out("tokenizer_config.json"),
        pretty(json!({
            "tokenizer_class": "GPT2TokenizerFast",
            "bos_token": END_OF_TEXT,
            "eos_token": END_OF_TEXT,
            "unk_token": END_OF_TEXT,
            "add_prefix_space": false,
            "model_max_length": cfg.context,
            "clean_up_tokenization_spaces": false,
        }))?,
    )?;
    std::fs::write(
        ctx.out("special_tokens_map.json"),
        pretty(json!({
            "bos_token": END_OF_TEXT,
            "eos_token": END_OF_TEXT,
            "unk_token": END_OF_TEXT,
        }))?,
    )?;
    std::fs::write(
        ctx.out("generation_config.json"),
        pretty(json!({
            "bos_token_id": eot,
            "eos_token_id": eot,
        }))?,
    )?;
    Ok(())
}
