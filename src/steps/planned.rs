//! Kinds of the model end of the funnel whose parameters are fixed here so
//! that pipelines can declare the whole funnel, but whose implementation
//! lands with later issues: building one is a clear error, not a fake output.

use anyhow::{Result, bail};

use super::{Default, GpuUse, Inputs, Kind, OutputDecl, ParamDecl, ParamType, Retention, StepCtx};

/// The `run` of a kind whose implementation has not landed yet.
fn not_yet(ctx: &StepCtx) -> Result<()> {
    bail!(
        "node `{}`: its kind is declared (its parameters are checked) but not implemented in this \
         version of pai yet; everything up to the quantized files builds today (try `pai build final-4bit`)",
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

pub static EVALUATE: Kind = Kind {
    name: "evaluate",
    doc: "(not implemented yet) Validation loss, perplexity and size on disk of each model input.",
    params: &[ParamDecl::new(
        "batches",
        T::Int,
        D::Int(16),
        "Validation batches per model.",
    )
    .range(1.0, 1e9)],
    inputs: Inputs::Any,
    outputs: |_| fixed(&[("eval.json", Retention::Keep)]),
    gpu: GpuUse::Yes,
    kernels: crate::gpu::ops::EVAL_KERNELS,
    run: not_yet,
    version: 0,
    ..Kind::PLAIN
};
