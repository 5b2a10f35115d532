//! `pai generate`: a built model node's weights and its pipeline's tokenizer, the KV-cache
//! decode path ([`crate::model::Generator`]) on the GPU (or the native CPU adapter), text
//! streamed as it is produced.

use std::fmt;

use anyhow::{Context, Result, anyhow};
use serde::Serialize;
use tokenizers::Tokenizer;

use super::bpe_tokenizer::END_OF_TEXT;
use super::models::LoadedModel;
use crate::gpu::Device;
use crate::gpu::ops::{GpuOps, NativeOps, Ops};
use crate::model::{Generated, Generator, Sampling, Weights, generate};

/// What to generate.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: String,
    /// New tokens at most.
    pub tokens: usize,
    pub sampling: Sampling,
}

/// What `pai generate` reports (`--json`: this document).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub format: String,
    /// The prompt as the model saw it (after a cut to the context).
    pub prompt: String,
    pub prompt_tokens: usize,
    /// Prompt tokens dropped from the left to fit the context.
    pub prompt_cut: usize,
    /// The generated text (the prompt not included).
    pub text: String,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub sampling: Sampling,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} tokens in {:.2} s: {:.1} tokens/s ({} {}, prompt {} tokens)",
            self.tokens,
            self.seconds,
            self.tokens_per_s,
            self.model,
            self.format,
            self.prompt_tokens
        )
    }
}

/// Text decoded incrementally: each call returns what the new token adds, holding back an
/// incomplete UTF-8 sequence (a byte-level token may end inside a character) until it completes.
struct Detok<'a> {
    tok: &'a Tokenizer,
    ids: Vec<u32>,
    shown: usize,
    start: usize,
}

impl Detok<'_> {
    fn decode(&self) -> Result<String> {
        self.tok
            .decode(&self.ids, true)
            .map_err(|e| anyhow!("decoding tokens: {e}"))
    }
    fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let s = self.decode()?;
        if s.ends_with('\u{FFFD}') || s.len() < self.shown || !s.is_char_boundary(self.shown) {
            return Ok(String::new());
        }
        let new = s[self.shown..].to_string();
        self.shown = s.len();
        Ok(new)
    }
}

/// Generates from `model` with the tokenizer `tokenizer_json`: `on_text` gets the prompt (as
/// kept) first, then each piece of text as tokens are produced; `warn` gets warnings.
#[allow(clippy::too_many_arguments)]
pub fn run<'g>(
    dev: impl Into<Device<'g>>,
    name: &str,
    model: &LoadedModel,
    tokenizer_json: &[u8],
    req: &Request,
    on_text: &mut dyn FnMut(&str) -> Result<()>,
    warn: &dyn Fn(&str),
) -> Result<Report> {
    let tok =
        Tokenizer::from_bytes(tokenizer_json).map_err(|e| anyhow!("loading the tokenizer: {e}"))?;
    let cfg = model.cfg;
    let vocab = tok.get_vocab_size(true);
    anyhow::ensure!(
        vocab == cfg.vocab_size,
        "the tokenizer has {vocab} tokens but the model `{name}` was made for {}: they do not belong together",
        cfg.vocab_size
    );
    let eot = tok
        .token_to_id(END_OF_TEXT)
        .with_context(|| format!("the tokenizer has no {END_OF_TEXT} token"))?;
    let mut ids = if req.prompt.is_empty() {
        vec![eot]
    } else {
        tok.encode(req.prompt.as_str(), false)
            .map_err(|e| anyhow!("encoding the prompt: {e}"))?
            .get_ids()
            .to_vec()
    };
    let mut cut = 0;
    if ids.len() > cfg.context {
        cut = ids.len() - cfg.context;
        warn(&format!(
            "warning: the prompt is {} tokens, more than the model's context of {}: its first {cut} tokens are dropped",
            ids.len(),
            cfg.context
        ));
        ids.drain(..cut);
    }
    let mut d = Detok {
        tok: &tok,
        ids: ids.clone(),
        shown: 0,
        start: 0,
    };
    let prompt = d.decode()?;
    d.shown = prompt.len();
    d.start = prompt.len();
    on_text(&prompt)?;
    let mut on_token = |id| {
        let piece = d.push(id)?;
        if !piece.is_empty() {
            on_text(&piece)?;
        }
        Ok(())
    };
    let out = match dev.into() {
        Device::Wgpu(gpu) => sample(
            &mut GpuOps::new(gpu),
            &model.weights,
            &ids,
            req,
            &mut on_token,
        ),
        Device::Native => sample(
            &mut NativeOps::new(),
            &model.weights,
            &ids,
            req,
            &mut on_token,
        ),
    }?;
    let all = d.decode()?;
    if all.len() > d.shown && all.is_char_boundary(d.shown) {
        on_text(&all[d.shown..])?;
    }
    let text = all.get(d.start..).unwrap_or_default().to_string();
    Ok(Report {
        model: name.to_string(),
        format: model.info.format.clone(),
        prompt,
        prompt_tokens: ids.len(),
        prompt_cut: cut,
        text,
        tokens: out.tokens.len(),
        seconds: out.seconds,
        tokens_per_s: out.tokens_per_s,
        sampling: req.sampling,
    })
}

/// Samples from `w` on `ops` after the prompt `ids`.
fn sample<O: Ops>(
    ops: &mut O,
    w: &Weights,
    ids: &[u32],
    req: &Request,
    on_token: &mut dyn FnMut(u32) -> Result<()>,
) -> Result<Generated> {
    let mut g = Generator::new(ops, w)?;
    generate(ops, &mut g, ids, req.tokens, req.sampling, on_token)
}
