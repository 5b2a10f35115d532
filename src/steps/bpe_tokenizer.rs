//! `bpe-tokenizer`: trains a byte-level BPE tokenizer (Hugging Face
//! `tokenizers`) on a source's text files.

use anyhow::{Context, Result, anyhow};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::Artifact;
use super::{
    Default, InputDecl, Inputs, Kind, OutputDecl, ParamDecl, ParamType, Params, StepCtx,
    read_verified,
};

/// The end-of-text token (bos, eos and document separator), as GGUF names it too.
pub use crate::model::gguf::END_OF_TEXT;

static PARAMS: &[ParamDecl] = &[
    ParamDecl::new(
        "vocab_size",
        ParamType::Int,
        Default::Int(2048),
        "Vocabulary size, including the 256 byte tokens and `<|endoftext|>`; a small corpus may stop short of it.",
    )
    .range(258.0, 1_000_000.0),
    ParamDecl::new(
        "min_frequency",
        ParamType::Int,
        Default::Int(2),
        "A pair must occur at least this often to be merged.",
    )
    .range(0.0, 1e12),
];

static INPUTS: &[InputDecl] = &[InputDecl {
    role: "corpus",
    kinds: &["source"],
    doc: "the text to learn merges from",
}];

/// Decodes a corpus file, naming the file and the fix when it is not UTF-8.
pub fn utf8(name: &str, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{name} is not valid UTF-8 (bad byte at offset {}): convert it to UTF-8 or leave it out with the source node's `exclude`",
            e.utf8_error().valid_up_to()
        )
    })
}

pub static BPE_TOKENIZER: Kind = Kind {
    name: "bpe-tokenizer",
    version: 1,
    doc: "Trains a byte-level BPE tokenizer (Hugging Face `tokenizers`: ByteLevel pre-tokenizer and decoder, \
         no prefix space, all 256 bytes in the alphabet, `<|endoftext|>` as id 0). Files are read in sorted \
         path order, one sequence each; a file that is not UTF-8 fails the node and is named. \
         Deterministic: the same corpus gives the same bytes.",
    params: PARAMS,
    inputs: Inputs::Slots(INPUTS),
    outputs,
    run,
    ..Kind::PLAIN
};

fn outputs(_params: &Params) -> Result<Vec<OutputDecl>> {
    Ok(vec![
        OutputDecl::keep("tokenizer.json", "the tokenizer in Hugging Face format")
            .artifact(Artifact::Tokenized),
    ])
}

fn run(ctx: &StepCtx) -> Result<()> {
    let corpus = ctx.input("corpus")?;
    let mut texts = Vec::with_capacity(corpus.files.len());
    for f in &corpus.files {
        texts.push(utf8(
            &corpus.dir.join(&f.name).display().to_string(),
            read_verified(f)?,
        )?);
    }
    let vocab_size = ctx.params.usize("vocab_size")?;
    let min_frequency = ctx.params.int("min_frequency")? as u64;
    let tokenizer = train(&texts, vocab_size, min_frequency)?;
    let json = tokenizer
        .to_string(true)
        .map_err(|e| anyhow!("serializing the tokenizer: {e}"))?;
    std::fs::write(ctx.out("tokenizer.json"), json)?;
    Ok(())
}

pub fn train(texts: &[String], vocab_size: usize, min_frequency: u64) -> Result<Tokenizer> {
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(min_frequency)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    let mut tokenizer = Tokenizer::new(BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::new(false, true, true)));
    tokenizer
        .train(&mut trainer, texts.iter())
        .map_err(|e| anyhow!("training the BPE tokenizer: {e}"))?;
    tokenizer
        .token_to_id(END_OF_TEXT)
        .context("the trained tokenizer lost <|endoftext|>")?;
    Ok(tokenizer)
}
