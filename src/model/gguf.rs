//! GPT-2 ↔ llama.cpp's `gpt2` GGUF: the keys llama.cpp reads, the tokenizer embedded, and the
//! tensor names and shapes.
//!
//! pai's compute layout already stores a linear weight as (out, in) row-major, which is ggml's
//! [in, out] with the contiguous dimension first: matrices are written as they are, never
//! transposed. Matrices go in the chosen format (Q8_0 and Q4_0 quantized on the device, or by
//! the bit-identical reference quantizer on the native CPU adapter; F16 converted on the host);
//! norms, biases and other 1-D tensors stay F32.

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value as Json;

use super::config::GptConfig;
use super::weights::{Weights, specs};
use crate::formats::ggml::{self, Format};
use crate::formats::gguf::{self, DEFAULT_ALIGNMENT, GGML_TYPE_F32, Value, Writer};
use crate::gpu::Device;
use crate::gpu::ops::quant;

/// The special token GPT-2 uses as bos, eos and document separator.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The llama.cpp name of a Hugging Face GPT-2 parameter name (`transformer.h.3.mlp.c_fc.weight`
/// → `blk.3.ffn_up.weight`).
pub fn gguf_name(hf: &str) -> Result<String> {
    let (stem, leaf) = hf
        .rsplit_once('.')
        .with_context(|| format!("{hf:?} is not a GPT-2 parameter name"))?;
    let unknown = || anyhow::anyhow!("{hf:?} is not a GPT-2 parameter name");
    let base = match stem {
        "transformer.wte" => "token_embd".to_string(),
        "transformer.wpe" => "position_embd".to_string(),
        "transformer.ln_f" => "output_norm".to_string(),
        _ => {
            let rest = stem.strip_prefix("transformer.h.").ok_or_else(unknown)?;
            let (n, part) = rest.split_once('.').ok_or_else(unknown)?;
            let n: usize = n.parse().map_err(|_| unknown())?;
            let part = match part {
                "ln_1" => "attn_norm",
                "attn.c_attn" => "attn_qkv",
                "attn.c_proj" => "attn_output",
                "ln_2" => "ffn_norm",
                "mlp.c_fc" => "ffn_up",
                "mlp.c_proj" => "ffn_down",
                _ => return Err(unknown()),
            };
            format!("blk.{n}.{part}")
        }
    };
    Ok(format!("{base}.{leaf}"))
}

/// GGUF dims (contiguous first) of a tensor of pai's compute shape: the shape reversed.
fn ggml_dims(shape: &[usize]) -> Vec<u64> {
    shape.iter().rev().map(|&d| d as u64).collect()
}

/// Checks, before any work, that every matrix's rows are whole blocks of `format`: the message
/// names the tensor and the fix.
pub fn check_format(cfg: &GptConfig, format: Format) -> Result<()> {
    cfg.check()?;
    let bs = format.block_size();
    for s in specs(cfg).iter().filter(|s| s.shape.len() == 2) {
        let row = s.shape[1];
        if !row.is_multiple_of(bs) {
            bail!(
                "tensor {} ({}): its rows hold {row} values, not a multiple of the {} block size \
                 {bs}; set the gpt-init node's n_embd to a multiple of {bs} (e.g. {}), or use \
                 format = \"f16\" or \"f32\"",
                gguf_name(&s.name)?,
                s.name,
                format.name(),
                cfg.n_embd.next_multiple_of(bs)
            );
        }
    }
    Ok(())
}

/// The tokenizer of a Hugging Face `tokenizer.json` (byte-level BPE) as llama.cpp's keys want it.
#[derive(Clone, Debug)]
pub struct GgufVocab {
    /// Byte-level token strings in id order.
    pub tokens: Vec<String>,
    /// 1 normal, 3 control.
    pub token_type: Vec<i32>,
    /// "left right", in rank order.
    pub merges: Vec<String>,
    /// The `<|endoftext|>` id.
    pub eot: u32,
}

/// Reads `model.vocab`, `added_tokens` and `model.merges` (either the `"a b"` string form or the
/// `["a", "b"]` pair form) from a `tokenizer.json`; ids must run 0..n without gaps or duplicates.
pub fn vocab_from_tokenizer_json(bytes: &[u8]) -> Result<GgufVocab> {
    let j: Json = serde_json::from_slice(bytes).context("tokenizer.json is not JSON")?;
    let model = j.get("model").context("tokenizer.json has no \"model\"")?;
    if let Some(t) = model.get("type").and_then(Json::as_str) {
        ensure!(
            t == "BPE",
            "tokenizer.json model type is {t:?}; GGUF's gpt2 tokenizer is BPE"
        );
    }
    let vocab = model
        .get("vocab")
        .and_then(Json::as_object)
        .context("tokenizer.json has no model.vocab object")?;
    let mut by_id: Vec<Option<String>> = Vec::new();
    let mut special = std::collections::HashSet::new();
    let mut put = |tok: &str, id: u64| -> Result<()> {
        let id = id as usize;
        ensure!(
            id < 1 << 24,
            "tokenizer.json token {tok:?} has id {id}, too large"
        );
        if by_id.len() <= id {
            by_id.resize(id + 1, None);
        }
        match &by_id[id] {
            Some(t) if t != tok => bail!("tokenizer.json gives id {id} to both {t:?} and {tok:?}"),
            _ => by_id[id] = Some(tok.to_string()),
        }
        Ok(())
    };
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .with_context(|| format!("tokenizer.json model.vocab {tok:?} has id {id}"))?;
        put(tok, id)?;
    }
    for a in j
        .get("added_tokens")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
    {
        let (Some(tok), Some(id)) = (
            a.get("content").and_then(Json::as_str),
            a.get("id").and_then(Json::as_u64),
        ) else {
            bail!("tokenizer.json added_tokens entry {a} has no content or id");
        };
        put(tok, id)?;
        if a.get("special").and_then(Json::as_bool).unwrap_or(false) {
            special.insert(tok.to_string());
        }
    }
    let tokens = by_id
        .into_iter()
        .enumerate()
        .map(|(i, t)| t.with_context(|| format!("tokenizer.json has no token with id {i}")))
        .collect::<Result<Vec<String>>>()?;
    let eot = tokens
        .iter()
        .position(|t| t == END_OF_TEXT)
        .with_context(|| format!("tokenizer.json has no {END_OF_TEXT} token"))?
        as u32;
    let token_type = tokens
        .iter()
        .map(|t| {
            if t == END_OF_TEXT || special.contains(t) {
                3
            } else {
                1
            }
        })
        .collect();
    let merges = model
        .get("merges")
        .and_then(Json::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .enumerate()
        .map(|(i, m)| match m {
            Json::String(s) => Ok(s.clone()),
            Json::Array(p) if p.len() == 2 => match (p[0].as_str(), p[1].as_str()) {
                (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                _ => bail!("tokenizer.json merge {i} is {m}, not a pair of strings"),
            },
            _ => bail!("tokenizer.json merge {i} is {m}, not \"a b\" or [a, b]"),
        })
        .collect::<Result<Vec<String>>>()?;
    Ok(GgufVocab {
        tokens,
        token_type,
        merges,
        eot,
    })
}

/// The key/values of a model's GGUF file: architecture, shape, quantization
/// and the embedded tokenizer (llama.cpp's `gpt2` keys).
pub fn metadata(cfg: &GptConfig, voc: GgufVocab, format: Format) -> Result<Vec<(String, Value)>> {
    let u32_ = |v: usize| -> Result<Value> {
        Ok(Value::U32(
            u32::try_from(v).with_context(|| format!("{v} does not fit a GGUF u32"))?,
        ))
    };
    let mut g = Writer::new();
    g.kv("general.architecture", Value::Str("gpt2".into()));
    g.kv("general.name", Value::Str("pai gpt2".into()));
    g.kv("general.file_type", Value::U32(format.file_type()));
    g.kv("general.quantization_version", Value::U32(2));
    g.kv("general.alignment", Value::U32(DEFAULT_ALIGNMENT as u32));
    g.kv("gpt2.context_length", u32_(cfg.context)?);
    g.kv("gpt2.embedding_length", u32_(cfg.n_embd)?);
    g.kv("gpt2.block_count", u32_(cfg.n_layer)?);
    g.kv("gpt2.feed_forward_length", u32_(4 * cfg.n_embd)?);
    g.kv("gpt2.attention.head_count", u32_(cfg.n_head)?);
    g.kv(
        "gpt2.attention.layer_norm_epsilon",
        Value::F32(super::layers::LN_EPS),
    );
    g.kv("tokenizer.ggml.model", Value::Str("gpt2".into()));
    g.kv("tokenizer.ggml.pre", Value::Str("gpt-2".into()));
    g.kv(
        "tokenizer.ggml.tokens",
        Value::Array(voc.tokens.into_iter().map(Value::Str).collect()),
    );
    g.kv(
        "tokenizer.ggml.token_type",
        Value::Array(voc.token_type.into_iter().map(Value::I32).collect()),
    );
    g.kv(
        "tokenizer.ggml.merges",
        Value::Array(voc.merges.into_iter().map(Value::Str).collect()),
    );
    g.kv("tokenizer.ggml.bos_token_id", Value::U32(voc.eot));
    g.kv("tokenizer.ggml.eos_token_id", Value::U32(voc.eot));

    Ok(g.kv)
}

/// The tensors of a model's GGUF file as (name, dims, GGML type), in the
/// order written: 2-D weights in `format`, 1-D ones in F32, the embedding
/// twice (also as `output.weight`, the tied head).
pub fn tensor_layout(cfg: &GptConfig, format: Format) -> Result<Vec<(String, Vec<u64>, u32)>> {
    let mut head = Vec::new();
    let mut blocks = Vec::new();
    for s in specs(cfg) {
        let name = gguf_name(&s.name)?;
        let ty = if s.shape.len() == 2 {
            format.ggml_type()
        } else {
            GGML_TYPE_F32
        };
        let t = (name, ggml_dims(&s.shape), ty);
        if t.0.starts_with("blk.") {
            blocks.push(t);
        } else {
            let tied = (t.0 == "token_embd.weight")
                .then(|| ("output.weight".to_string(), t.1.clone(), t.2));
            head.push(t);
            head.extend(tied);
        }
    }
    head.extend(blocks);
    Ok(head)
}

/// A GGUF file llama.cpp runs as it is: architecture `gpt2`, its keys, the tokenizer of
/// `tokenizer_json` embedded, matrices in `format` (quantized on the device), 1-D tensors F32,
/// `output.weight` written explicitly (= `token_embd.weight`). Deterministic bytes.
pub fn to_gguf<'g>(
    dev: impl Into<Device<'g>>,
    cfg: &GptConfig,
    w: &Weights,
    tokenizer_json: &[u8],
    format: Format,
) -> Result<Vec<u8>> {
    ensure!(
        w.cfg == *cfg,
        "the weights are of the model {:?}, not {cfg:?}",
        w.cfg
    );
    let dev = dev.into();
    w.check()?;
    check_format(cfg, format)?;
    let voc = vocab_from_tokenizer_json(tokenizer_json)?;
    ensure!(
        voc.tokens.len() == cfg.vocab_size,
        "the tokenizer has {} tokens but the model was made for {}: use the tokenizer it was \
         trained with",
        voc.tokens.len(),
        cfg.vocab_size
    );

    let mut g = Writer::new();
    g.kv = metadata(cfg, voc, format)?;
    // Each parameter encoded once, by its GGUF name; the file's tensors in
    // the order and types `tensor_layout` gives (what `pai space` counts).
    let mut encoded = std::collections::HashMap::new();
    for (s, t) in specs(cfg).iter().zip(&w.tensors) {
        let name = gguf_name(&s.name)?;
        let bytes = if s.shape.len() == 2 {
            match format {
                Format::Q8_0 | Format::Q4_0 => match dev {
                    Device::Wgpu(gpu) => quant::quantize(gpu, format, &name, t)?,
                    Device::Native => ggml::quantize_ref(format, &name, t)?,
                },
                Format::F16 | Format::F32 => {
                    ggml::check_finite(&name, t)?;
                    ggml::quantize_ref(format, &name, t)?
                }
            }
        } else {
            ggml::quantize_ref(Format::F32, &name, t)?
        };
        encoded.insert(name, bytes);
    }
    for (name, dims, ty) in tensor_layout(cfg, format)? {
        // The tied head is the embedding's bytes.
        let source = if name == "output.weight" {
            "token_embd.weight"
        } else {
            name.as_str()
        };
        // The two tied names share bytes, so those are copied; every other tensor is written
        // once and moved out.
        let bytes = if source == "token_embd.weight" {
            encoded.get(source).cloned()
        } else {
            encoded.remove(source)
        }
        .with_context(|| format!("no tensor {source} to write"))?;
        g.tensor(&name, &dims, ty, bytes);
    }
    g.finish()
}

/// A required non-negative integer key.
fn key_usize(f: &gguf::Gguf, key: &str) -> Result<usize> {
    let v = f
        .get(key)
        .with_context(|| format!("the GGUF file has no {key:?}; a gpt2 file needs it"))?;
    v.as_u64()
        .map(|n| n as usize)
        .with_context(|| format!("GGUF {key:?} is {v:?}, expected a non-negative integer"))
}

/// Reads a `gpt2` GGUF file back into pai's model: the configuration from the keys, every
/// tensor's shape checked against it (a disagreement names the tensor), quantized tensors
/// dequantized on the device, nothing transposed. `output.weight`, if present, must have
/// `token_embd.weight`'s shape and is otherwise ignored (pai ties it to the embedding).
pub fn from_gguf<'g>(dev: impl Into<Device<'g>>, bytes: &[u8]) -> Result<(GptConfig, Weights)> {
    let dev = dev.into();
    let f = gguf::read(bytes)?;
    match f.get("general.architecture").and_then(Value::as_str) {
        Some("gpt2") => {}
        other => bail!("GGUF general.architecture is {other:?}; pai reads \"gpt2\" models"),
    }
    let tok = f
        .tensor("token_embd.weight")
        .context("the GGUF file has no tensor \"token_embd.weight\"")?;
    ensure!(
        tok.dims.len() == 2,
        "tensor \"token_embd.weight\" has dims {:?}, expected [n_embd, n_vocab]",
        tok.dims
    );
    let cfg = GptConfig {
        vocab_size: tok.dims[1] as usize,
        context: key_usize(&f, "gpt2.context_length")?,
        n_layer: key_usize(&f, "gpt2.block_count")?,
        n_head: key_usize(&f, "gpt2.attention.head_count")?,
        n_embd: key_usize(&f, "gpt2.embedding_length")?,
    };
    cfg.check()?;
    if let Some(ff) = f.get("gpt2.feed_forward_length") {
        ensure!(
            ff.as_u64() == Some(4 * cfg.n_embd as u64),
            "GGUF gpt2.feed_forward_length is {ff:?}; pai's GPT-2 uses 4 × n_embd = {}",
            4 * cfg.n_embd
        );
    }
    if let Some(t) = f.get("tokenizer.ggml.tokens").and_then(Value::as_array) {
        ensure!(
            t.len() == cfg.vocab_size,
            "GGUF tokenizer.ggml.tokens holds {} tokens but token_embd.weight has {} rows",
            t.len(),
            cfg.vocab_size
        );
    }
    let sp = specs(&cfg);
    let mut known: Vec<String> = vec!["output.weight".into()];
    let mut tensors = Vec::with_capacity(sp.len());
    for s in &sp {
        let name = gguf_name(&s.name)?;
        let info = f
            .tensor(&name)
            .with_context(|| format!("the GGUF file has no tensor {name:?}"))?;
        let want = ggml_dims(&s.shape);
        ensure!(
            info.dims == want,
            "tensor {name:?} has dims {:?}, but the model the keys describe ({cfg:?}) needs {want:?}",
            info.dims
        );
        let fmt = Format::from_ggml_type(info.ggml_type).with_context(|| {
            format!(
                "tensor {name:?} has GGML type {}, which pai cannot read",
                info.ggml_type
            )
        })?;
        let data = f.tensor_data(bytes, &name)?;
        let x = if let (true, Device::Wgpu(gpu)) = (fmt.is_quantized(), dev) {
            quant::dequantize(gpu, fmt, data)?
        } else {
            ggml::dequantize_ref(fmt, data)?
        };
        ensure!(
            x.len() == s.numel(),
            "tensor {name:?}: decoded {} values, expected {}",
            x.len(),
            s.numel()
        );
        tensors.push(x);
        known.push(name);
    }
    if let Some(out) = f.tensor("output.weight") {
        ensure!(
            out.dims == ggml_dims(&[cfg.vocab_size, cfg.n_embd]),
            "tensor \"output.weight\" has dims {:?}, expected token_embd.weight's {:?}",
            out.dims,
            tok.dims
        );
    }
    if let Some(extra) = f.tensors.iter().find(|t| !known.contains(&t.name)) {
        bail!(
            "the GGUF file has a tensor {:?} that a gpt2 model of pai does not have",
            extra.name
        );
    }
    Ok((cfg, Weights { cfg, tensors }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_has_a_llama_cpp_name() {
        let cfg = GptConfig {
            vocab_size: 64,
            context: 8,
            n_layer: 2,
            n_head: 2,
            n_embd: 32,
        };
        let names: Vec<String> = specs(&cfg)
            .iter()
            .map(|s| gguf_name(&s.name).unwrap())
            .collect();
        assert!(names.contains(&"blk.1.attn_qkv.weight".to_string()));
        assert!(names.contains(&"blk.0.ffn_down.bias".to_string()));
        assert!(names.contains(&"output_norm.weight".to_string()));
        assert!(names.contains(&"position_embd.weight".to_string()));
        assert!(gguf_name("transformer.h.0.mlp.c_x.weight").is_err());
    }

    #[test]
    fn merges_are_read_in_both_json_forms() {
        let a = br#"{"added_tokens":[{"id":0,"content":"<|endoftext|>","special":true}],
            "model":{"type":"BPE","vocab":{"<|endoftext|>":0,"a":1,"b":2,"ab":3},"merges":["a b"]}}"#;
        let b = br#"{"model":{"type":"BPE","vocab":{"<|endoftext|>":0,"a":1,"b":2,"ab":3},"merges":[["a","b"]]}}"#;
        for j in [&a[..], &b[..]] {
            let v = vocab_from_tokenizer_json(j).unwrap();
            assert_eq!(v.tokens, ["<|endoftext|>", "a", "b", "ab"]);
            assert_eq!(v.token_type, [3, 1, 1, 1]);
            assert_eq!(v.merges, ["a b"]);
            assert_eq!(v.eot, 0);
        }
        let gap = br#"{"model":{"vocab":{"<|endoftext|>":0,"a":2},"merges":[]}}"#;
        assert!(format!("{:#}", vocab_from_tokenizer_json(gap).err().unwrap()).contains("id 1"));
    }

    #[test]
    fn a_row_length_not_a_multiple_of_32_is_refused_naming_the_tensor() {
        let cfg = GptConfig {
            vocab_size: 64,
            context: 8,
            n_layer: 1,
            n_head: 2,
            n_embd: 40,
        };
        let e = format!("{:#}", check_format(&cfg, Format::Q4_0).unwrap_err());
        assert!(
            e.contains("token_embd.weight") && e.contains("n_embd") && e.contains("f16"),
            "{e}"
        );
        check_format(&cfg, Format::F16).unwrap();
    }
}
