//! `quantize`: the trained model as one `model.gguf` that llama.cpp runs as it is
//! (architecture `gpt2`, tokenizer embedded), matrices in q8_0, q4_0, f16 or f32.

use anyhow::{Result, bail};

use super::Artifact;
use super::export::{WEIGHTS_PARAM, check_weights, trained_model};
use super::{
    Default as D, GpuUse, InputDecl, InputParams, Inputs, Kind, OutputDecl, ParamDecl,
    ParamType as T, Params, StepCtx,
};
use crate::formats::ggml::Format;
use crate::model::Weights;
use crate::model::gguf::{check_format, to_gguf};

pub static QUANTIZE: Kind = Kind {
    name: "quantize",
    version: 1,
    doc: "`model.gguf`: the trained model as llama.cpp's `gpt2` architecture, tokenizer embedded, \
          2-D weight matrices in the chosen format (q8_0 and q4_0 quantized on the GPU, \
          byte-identical to ggml's reference quantizer), norms and biases in f32. \
          Run it with `llama-cli -m cache/out/NODE/model.gguf`.",
    params: &[
        ParamDecl::new(
            "format",
            T::Str,
            D::Str("q4_0"),
            "`q8_0`, `q4_0`, `f16` or `f32` (the block formats need n_embd a multiple of 32).",
        ),
        WEIGHTS_PARAM,
    ],
    inputs: Inputs::Slots(&[
        InputDecl {
            role: "model",
            kinds: &["train"],
            doc: "trained weights",
        },
        InputDecl {
            role: "tokenizer",
            kinds: &["bpe-tokenizer"],
            doc: "embedded in the file",
        },
    ]),
    outputs: |p| {
        let artifact = Artifact::of_format(Format::parse(p.str("format")?)?);
        Ok(vec![
            OutputDecl::keep(
                "model.gguf",
                "GGUF v3, llama.cpp `gpt2`, tokenizer embedded",
            )
            .artifact(artifact),
        ])
    },
    gpu: GpuUse::Yes,
    kernels: crate::gpu::ops::QUANT_KERNELS,
    validate,
    input_checks: Some(check_blocks),
    run,
    ..Kind::PLAIN
};

/// A block format needs every matrix row to be whole blocks: the rows of every weight matrix
/// hold n_embd or 4·n_embd values, so n_embd (a parameter of the `gpt-init` node upstream)
/// must be a multiple of the block size. `run` checks the weights themselves again.
fn check_blocks(p: &Params, inputs: &InputParams) -> std::result::Result<(), String> {
    let (Ok(format), Some(init)) = (p.str("format"), inputs.upstream("gpt-init")) else {
        return Ok(());
    };
    let Ok(format) = Format::parse(format) else {
        return Ok(());
    };
    let block = format.block_size();
    match init.int("n_embd") {
        Ok(c) if block > 1 && c % block as i64 != 0 => Err(format!(
            "format {} stores rows in blocks of {block}, but token_embd.weight (and every matrix) \
             has rows of n_embd = {c} values: make the model's n_embd a multiple of {block} or \
             use format = \"f16\"",
            format.name()
        )),
        _ => Ok(()),
    }
}

/// `format` must be one pai writes; `weights` best or final.
fn validate(p: &Params) -> std::result::Result<(), String> {
    match p.str("format") {
        Ok("q8_0" | "q4_0" | "f16" | "f32") | Err(_) => {}
        Ok(other) => {
            return Err(format!(
                "format {other:?} is not supported: use \"q8_0\", \"q4_0\", \"f16\" or \"f32\""
            ));
        }
    }
    check_weights(p)
}

fn run(ctx: &StepCtx) -> Result<()> {
    let format = Format::parse(ctx.params.str("format")?)?;
    let model = ctx.input("model")?;
    let (cfg, bytes) = trained_model(model, ctx.params)?;
    // Every matrix row must be whole blocks: refused here, naming the tensor, before any work.
    check_format(&cfg, format).map_err(|e| {
        anyhow::anyhow!("node `{}` cannot write {}: {e:#}", ctx.node, format.name())
    })?;
    let tok = ctx.input("tokenizer")?;
    let tok_bytes = tok.read("tokenizer.json")?;
    let (vocab, _) = super::gpt_init::vocab(&tok_bytes, &tok.node)?;
    if vocab != cfg.vocab_size {
        bail!(
            "the tokenizer `{}` has {vocab} tokens but the model `{}` was made for {}: quantize \
             the model with the tokenizer it was trained with",
            tok.node,
            model.node,
            cfg.vocab_size
        );
    }
    let w = Weights::from_safetensors(&cfg, &bytes)?;
    (ctx.progress)(0, 1, "quantizing");
    let file = to_gguf(ctx.device()?, &cfg, &w, &tok_bytes, format)?;
    (ctx.progress)(1, 1, "quantizing");
    std::fs::write(ctx.out("model.gguf"), &file)?;
    let f32_bytes = 4 * cfg.param_count() as u64;
    (ctx.summary)(&format!(
        "{} model.gguf: {} ({:.1}× smaller than f32 weights)",
        format.name(),
        crate::report::size(file.len() as u64),
        f32_bytes as f64 / file.len() as f64
    ));
    Ok(())
}
