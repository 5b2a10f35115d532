//! Kinds of the model end of the funnel whose parameters are fixed here so
//! that pipelines can declare the whole funnel, but whose implementation
//! lands with later issues: building one is a clear error, not a fake output.

use anyhow::{Result, bail};

use super::{
    Default, GpuUse, InputDecl, Inputs, Kind, OutputDecl, ParamDecl, ParamType, Params, Retention,
    StepCtx,
};

/// The `run` of a kind whose implementation has not landed yet.
fn not_yet(ctx: &StepCtx) -> Result<()> {
    bail!(
        "node `{}`: its kind is declared (its parameters are checked) but not implemented in this \
         version of pai yet; the data end of the funnel builds today (try `pai build packed`)",
        ctx.node
    )
}

fn fixed(outputs: &[(&str, Retention)]) -> Result<Vec<OutputDecl>> {
    Ok(outputs
        .iter()
        .map(|(name, r)| OutputDecl {
            name: name.to_string(),
            retention: *r,
            required: *r == Retention::Keep,
            doc: "",
        })
        .collect())
}

use Default as D;
use ParamType as T;

pub static QUANTIZE: Kind = Kind {
    name: "quantize",
    doc: "(not implemented yet) `model.gguf` (llama.cpp `gpt2`) with q8_0 or q4_0 tensors, tokenizer embedded.",
    params: &[ParamDecl::new(
        "format",
        T::Str,
        D::Str("q4_0"),
        "`q8_0` or `q4_0`.",
    )],
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
    outputs: |_| fixed(&[("model.gguf", Retention::Keep)]),
    gpu: GpuUse::Yes,
    kernels: crate::gpu::ops::QUANT_KERNELS,
    validate: check_format,
    reads_temporaries: false,
    source: false,
    input_checks: None,
    run: not_yet,
    version: 0,
};

/// Quantize's `format` must be one it can write.
fn check_format(params: &Params) -> std::result::Result<(), String> {
    match params.str("format") {
        Ok("q8_0" | "q4_0") | Err(_) => Ok(()),
        Ok(other) => Err(format!(
            "format {other:?} is not supported: use \"q8_0\" or \"q4_0\""
        )),
    }
}
