//! `tokenize`: the corpus as one stream of u32 token ids.

use anyhow::{Context, Result, anyhow};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

use super::Artifact;
use super::bpe_tokenizer::{END_OF_TEXT, utf8};
use super::{InputDecl, Inputs, Kind, OutputDecl, Params, StepCtx, read_verified};
use crate::formats::tokens;

static INPUTS: &[InputDecl] = &[
    InputDecl {
        role: "corpus",
        kinds: &["source"],
        doc: "the text to encode",
    },
    InputDecl {
        role: "tokenizer",
        kinds: &["bpe-tokenizer"],
        doc: "the tokenizer to encode with",
    },
];

/// `tokens.json`: what `pack` needs to split by document.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct TokensMeta {
    pub vocab_size: u32,
    pub eot_id: u32,
    pub tokens: u64,
    pub documents: Vec<Document>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Document {
    pub path: String,
    /// Index of the document's first token in `tokens.bin`.
    pub start: u64,
    /// Tokens of the document, its closing end-of-text token included.
    pub len: u64,
}

pub static TOKENIZE: Kind = Kind {
    name: "tokenize",
    version: 1,
    doc: "Encodes every corpus file (in parallel) and writes them in sorted path order as one stream of \
         little-endian u32 ids, each document followed by the `<|endoftext|>` id. `tokens.json` lists \
         each document's offset and length.",
    params: &[],
    inputs: Inputs::Slots(INPUTS),
    outputs,
    run,
    ..Kind::PLAIN
};

fn outputs(_params: &Params) -> Result<Vec<OutputDecl>> {
    Ok(vec![
        OutputDecl::keep("tokens.bin", "u32 little-endian token ids").artifact(Artifact::Tokenized),
        OutputDecl::keep(
            "tokens.json",
            "vocabulary size, end-of-text id, document offsets",
        )
        .artifact(Artifact::Tokenized),
    ])
}

fn run(ctx: &StepCtx) -> Result<()> {
    let corpus = ctx.input("corpus")?;
    let tok_input = ctx.input("tokenizer")?;
    let tokenizer = Tokenizer::from_bytes(tok_input.read("tokenizer.json")?)
        .map_err(|e| anyhow!("loading tokenizer.json of `{}`: {e}", tok_input.node))?;
    let eot = tokenizer
        .token_to_id(END_OF_TEXT)
        .context("the tokenizer has no <|endoftext|> token")?;
    let done = std::sync::atomic::AtomicU64::new(0);
    let total = corpus.files.len() as u64;
    let encoded: Vec<Vec<u32>> = corpus
        .files
        .par_iter()
        .map(|f| -> Result<Vec<u32>> {
            let text = utf8(
                &corpus.dir.join(&f.name).display().to_string(),
                read_verified(f)?,
            )?;
            let enc = tokenizer
                .encode(text.as_str(), false)
                .map_err(|e| anyhow!("encoding {}: {e}", f.name))?;
            let mut ids = enc.get_ids().to_vec();
            ids.push(eot);
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            (ctx.progress)(n, total, "files");
            Ok(ids)
        })
        .collect::<Result<_>>()?;
    let mut all = Vec::with_capacity(encoded.iter().map(Vec::len).sum());
    let mut documents = Vec::with_capacity(encoded.len());
    for (f, ids) in corpus.files.iter().zip(&encoded) {
        documents.push(Document {
            path: f.name.clone(),
            start: all.len() as u64,
            len: ids.len() as u64,
        });
        all.extend_from_slice(ids);
    }
    tokens::write(&ctx.out("tokens.bin"), &all)?;
    let meta = TokensMeta {
        vocab_size: tokenizer.get_vocab_size(true) as u32,
        eot_id: eot,
        tokens: all.len() as u64,
        documents,
    };
    std::fs::write(ctx.out("tokens.json"), serde_json::to_string_pretty(&meta)?)?;
    Ok(())
}
