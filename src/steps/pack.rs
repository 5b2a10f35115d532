//! `pack`: fixed-length training and validation rows, split by document.

use anyhow::{Result, bail};
use serde::Serialize;

use super::Artifact;
use super::tokenize::TokensMeta;
use super::{
    Default, InputDecl, Inputs, Kind, OutputDecl, ParamDecl, ParamType, Params, SplitMix64, StepCtx,
};
use crate::formats::tokens;

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new(
        "context",
        ParamType::Int,
        Default::Int(128),
        "Context length T: each row holds T + 1 tokens.",
    )
    .range(1.0, 1_048_576.0),
    ParamDecl::new(
        "val_fraction",
        ParamType::Float,
        Default::Float(0.1),
        "Share of the tokens held out for validation, taken as whole documents.",
    )
    .range(0.0, 0.9),
    ParamDecl::new(
        "seed",
        ParamType::Int,
        Default::Int(1),
        "Seed of the document shuffle that picks the validation documents.",
    ),
];

static INPUTS: &[InputDecl] = &[InputDecl {
    role: "tokens",
    kinds: &["tokenize"],
    doc: "the token stream",
}];

#[derive(Serialize)]
struct PackMeta<'a> {
    split: &'static str,
    context: usize,
    row_tokens: usize,
    seed: i64,
    train_rows: usize,
    val_rows: usize,
    train_tokens: usize,
    val_tokens: usize,
    val_documents: Vec<&'a str>,
    eot_id: u32,
    vocab_size: u32,
}

/// Rows of `context + 1` tokens with stride `context`: every token after the
/// first is a prediction target exactly once. A tail shorter than a row is dropped.
pub fn rows(stream: &[u32], context: usize) -> Vec<u32> {
    if stream.len() < context + 1 {
        return Vec::new();
    }
    let n = (stream.len() - 1) / context;
    let mut out = Vec::with_capacity(n * (context + 1));
    for r in 0..n {
        out.extend_from_slice(&stream[r * context..r * context + context + 1]);
    }
    out
}

pub static PACK: Kind = Kind {
    name: "pack",
    version: 1,
    doc: "Splits the token stream into training and validation sets by whole document (no document is in \
         both): documents are shuffled with `seed` and taken for validation until `val_fraction` of the \
         tokens is reached; each set keeps corpus order. Each set is cut into rows of `context + 1` tokens \
         with stride `context` (a shorter tail is dropped), written as u32 little-endian.",
    params: PARAMS,
    inputs: Inputs::Slots(INPUTS),
    outputs,
    run,
    ..Kind::PLAIN
};

fn outputs(_params: &Params) -> Result<Vec<OutputDecl>> {
    Ok(vec![
        OutputDecl::keep("train.bin", "training rows, (context + 1) u32 each")
            .artifact(Artifact::Packed),
        OutputDecl::keep("val.bin", "validation rows, (context + 1) u32 each")
            .artifact(Artifact::Packed),
        OutputDecl::keep("pack.json", "context, row counts, the validation documents")
            .artifact(Artifact::Packed),
    ])
}

fn run(ctx: &StepCtx) -> Result<()> {
    let input = ctx.input("tokens")?;
    let meta: TokensMeta = serde_json::from_slice(&input.read("tokens.json")?)?;
    let all = tokens::decode(&input.read("tokens.bin")?)?;
    let context = ctx.params.usize("context")?;
    let val_fraction = ctx.params.float("val_fraction")?;
    let seed = ctx.params.int("seed")?;
    let docs = &meta.documents;
    if docs.iter().any(|d| (d.start + d.len) as usize > all.len()) {
        bail!("tokens.json of `{}` does not match tokens.bin", input.node);
    }

    let mut order: Vec<usize> = (0..docs.len()).collect();
    let mut rng = SplitMix64(seed as u64);
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let target = (val_fraction * all.len() as f64).ceil() as u64;
    let mut is_val = vec![false; docs.len()];
    let mut val_tokens = 0u64;
    for &d in &order {
        if val_tokens >= target || val_fraction == 0.0 {
            break;
        }
        is_val[d] = true;
        val_tokens += docs[d].len;
    }
    if val_fraction > 0.0 && is_val.iter().all(|&v| v) {
        bail!(
            "val_fraction = {val_fraction} takes every one of the {} documents for validation: \
                 lower val_fraction or add documents to the corpus",
            docs.len()
        );
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (i, d) in docs.iter().enumerate() {
        let slice = &all[d.start as usize..(d.start + d.len) as usize];
        if is_val[i] { &mut val } else { &mut train }.extend_from_slice(slice);
    }
    let train_rows = rows(&train, context);
    let val_rows = rows(&val, context);
    if train_rows.is_empty() {
        bail!(
            "the training split has {} tokens, fewer than one row of context + 1 = {}: lower `context` or add text",
            train.len(),
            context + 1
        );
    }
    if val_fraction > 0.0 && val_rows.is_empty() {
        bail!(
            "the validation split has {} tokens, fewer than one row of context + 1 = {}: raise `val_fraction` or lower `context`",
            val.len(),
            context + 1
        );
    }
    tokens::write(&ctx.out("train.bin"), &train_rows)?;
    tokens::write(&ctx.out("val.bin"), &val_rows)?;
    let pm = PackMeta {
        split: "document",
        context,
        row_tokens: context + 1,
        seed,
        train_rows: train_rows.len() / (context + 1),
        val_rows: val_rows.len() / (context + 1),
        train_tokens: train.len(),
        val_tokens: val.len(),
        val_documents: docs
            .iter()
            .zip(&is_val)
            .filter(|(_, v)| **v)
            .map(|(d, _)| d.path.as_str())
            .collect(),
        eot_id: meta.eot_id,
        vocab_size: meta.vocab_size,
    };
    std::fs::write(ctx.out("pack.json"), serde_json::to_string_pretty(&pm)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::rows;

    #[test]
    fn rows_overlap_by_one_and_drop_the_tail() {
        let s: Vec<u32> = (0..10).collect();
        assert_eq!(rows(&s, 3), vec![0, 1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9]);
        assert_eq!(rows(&s, 4), vec![0, 1, 2, 3, 4, 4, 5, 6, 7, 8]);
        assert!(rows(&s, 10).is_empty());
    }
}
