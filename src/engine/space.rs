//! `pai space`: the space study's table projected from first principles —
//! for the pipeline's own model, or for a model of N parameters — beside
//! what `pai du` measures and the study's own estimates, and the host memory
//! a training run of that size needs.
//!
//! Weights are 4 bytes per parameter (f32), AdamW's two moments 8, Q8_0 34
//! bytes per 32 weights and Q4_0 18 per 32 (1-D tensors stay f32), times the
//! checkpoints and snapshots the `train` parameters imply; file headers are
//! computed as the writers lay them out; data sizes come from the corpus and,
//! once it is built, the tokenizer.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use super::Project;
use crate::formats::ggml::Format;
use crate::model::{GptConfig, specs};
use crate::report::size_si as size;
use crate::report::study::{STUDY_TOTALS, StudyRow, StudyTable, StudyTotals};
use crate::spec::Node;
use crate::steps::Artifact;

/// Host memory of a training run: what the study calls "RAM minimum 32 GB".
#[derive(Serialize, Debug, Clone)]
pub struct TrainingMemory {
    pub weights: u64,
    pub gradients: u64,
    pub optimizer: u64,
    /// Activations (and their gradients) at the pipeline's batch and context.
    pub activations: u64,
    pub total: u64,
    pub batch: usize,
    pub context: usize,
}

/// The model the rows are projected for.
#[derive(Serialize, Debug, Clone)]
pub struct ModelShape {
    pub params: u64,
    pub n_layer: usize,
    pub n_embd: usize,
    pub n_head: usize,
    pub context: usize,
    pub vocab_size: usize,
    /// The shape was derived from N (GPT-2's aspect ratio, 64 channels per
    /// layer), for the activations only; the rows use N itself.
    pub derived: bool,
}

#[derive(Serialize, Debug)]
pub struct SpaceReport {
    pub model: ModelShape,
    /// Checkpoints and validation snapshots the `train` parameters imply.
    pub checkpoints: u64,
    pub snapshots: u64,
    pub projected: StudyTable,
    /// `pai du` of the built pipeline, when the model is the pipeline's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measured: Option<StudyTable>,
    pub memory: TrainingMemory,
    /// How each projected row was computed.
    pub how: BTreeMap<String, String>,
}

/// The pipeline's numbers the projection starts from.
struct Funnel<'a> {
    project: &'a Project,
    cfg: GptConfig,
    steps: u64,
    batch: usize,
    eval_every: u64,
    checkpoint_every: u64,
    quantize: Vec<Format>,
    exports: usize,
    evaluates: usize,
    pack_context: usize,
    /// The built tokenizer's `tokenizer.json`, read once: its vocabulary,
    /// its size, its token counts of the corpus.
    tokenizer_json: Option<Vec<u8>>,
    vocab: Option<crate::model::gguf::GgufVocab>,
}

fn first<'a>(p: &'a Project, kind: &str) -> Option<&'a Node> {
    p.pipeline.nodes.iter().find(|n| n.kind() == kind)
}

/// A current build's output file, if built and not collected.
fn built_output(p: &Project, node: &str, output: &str) -> Option<Vec<u8>> {
    let rec = p.store.read_ref(node).and_then(|k| p.store.record(&k))?;
    let o = rec
        .outputs
        .iter()
        .find(|o| o.name == output && !o.collected)?;
    std::fs::read(p.store.object_path(&o.hash)).ok()
}

impl<'a> Funnel<'a> {
    fn read(project: &'a Project) -> Result<Self> {
        let init = first(project, "gpt-init")
            .context("the pipeline has no `gpt-init` node, so it has no model to project")?;
        let train = first(project, "train");
        let tok = first(project, "bpe-tokenizer");
        let tokenizer_json = tok.and_then(|t| built_output(project, &t.name, "tokenizer.json"));
        let voc = tokenizer_json
            .as_deref()
            .map(crate::model::gguf::vocab_from_tokenizer_json)
            .transpose()?;
        // The vocabulary the model gets: the built tokenizer's, else the asked size.
        let vocab = match (&voc, tok) {
            (Some(v), _) => v.tokens.len(),
            (None, Some(t)) => t.params.usize("vocab_size")?,
            (None, None) => 2048,
        };
        let ip = &init.params;
        let cfg = GptConfig {
            vocab_size: vocab,
            context: ip.usize("context")?,
            n_layer: ip.usize("n_layer")?,
            n_head: ip.usize("n_head")?,
            n_embd: ip.usize("n_embd")?,
        };
        let int = |n: Option<&Node>, k: &str, d: u64| -> Result<u64> {
            Ok(match n {
                Some(n) => n.params.int(k)? as u64,
                None => d,
            })
        };
        let quantize = project
            .pipeline
            .nodes
            .iter()
            .filter(|n| n.kind() == "quantize")
            .map(|n| Format::parse(n.params.str("format")?))
            .collect::<Result<Vec<_>>>()?;
        let count = |k: &str| {
            project
                .pipeline
                .nodes
                .iter()
                .filter(|n| n.kind() == k)
                .count()
        };
        Ok(Funnel {
            project,
            steps: int(train, "steps", 0)?,
            batch: int(train, "batch", 8)? as usize,
            eval_every: int(train, "eval_every", 1)?.max(1),
            checkpoint_every: int(train, "checkpoint_every", 1)?.max(1),
            pack_context: match first(project, "pack") {
                Some(p) => p.params.usize("context")?,
                None => cfg.context,
            },
            cfg,
            quantize,
            exports: count("export"),
            evaluates: count("evaluate"),
            tokenizer_json,
            vocab: voc,
        })
    }

    /// Steps at which something happens every `every` steps, the last step always.
    fn events(&self, every: u64) -> u64 {
        self.steps / every + u64::from(!self.steps.is_multiple_of(every))
    }
}

/// A safetensors file of f32 tensors (plus `extra` i64 scalars), as the
/// `safetensors` crate lays it out: an 8-byte length, the JSON header padded
/// to 8 bytes, then the data.
fn safetensors_bytes(f32s: &[(String, Vec<usize>)], i64s: &[String]) -> u64 {
    let mut entries: Vec<(usize, &str, Vec<usize>)> = f32s
        .iter()
        .map(|(n, s)| (4, n.as_str(), s.clone()))
        .chain(i64s.iter().map(|n| (8, n.as_str(), vec![1])))
        .collect();
    // The crate's order: larger dtype first, then by name.
    entries.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    let mut header = String::from("{\"__metadata__\":{\"format\":\"pt\"}");
    let mut offset = 0usize;
    for (width, name, shape) in &entries {
        let n = width * shape.iter().product::<usize>();
        let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{}]}}",
            serde_json::to_string(name).unwrap_or_default(),
            if *width == 4 { "F32" } else { "I64" },
            dims.join(","),
            offset + n
        ));
        offset += n;
    }
    header.push('}');
    8 + header.len().next_multiple_of(8) as u64 + offset as u64
}

fn weights_file(cfg: &GptConfig) -> u64 {
    let t: Vec<(String, Vec<usize>)> = specs(cfg).into_iter().map(|s| (s.name, s.shape)).collect();
    safetensors_bytes(&t, &[])
}

fn optimizer_tensors(cfg: &GptConfig) -> Vec<(String, Vec<usize>)> {
    let sp = specs(cfg);
    let mut t: Vec<(String, Vec<usize>)> = sp
        .iter()
        .map(|s| (format!("m.{}", s.name), s.shape.clone()))
        .collect();
    t.extend(
        sp.iter()
            .map(|s| (format!("v.{}", s.name), s.shape.clone())),
    );
    t
}

fn optimizer_file(cfg: &GptConfig) -> u64 {
    safetensors_bytes(&optimizer_tensors(cfg), &["step".into()])
}

fn checkpoint_file(cfg: &GptConfig) -> u64 {
    let mut t: Vec<(String, Vec<usize>)> =
        specs(cfg).into_iter().map(|s| (s.name, s.shape)).collect();
    t.extend(optimizer_tensors(cfg));
    safetensors_bytes(&t, &["step".into()])
}

fn config_json(cfg: &GptConfig) -> u64 {
    serde_json::to_vec_pretty(&cfg.hf_config_json(0))
        .map(|v| v.len() as u64)
        .unwrap_or(0)
}

/// The corpus as (file name, bytes, tokens if the tokenizer is built).
struct Corpus {
    files: Vec<(String, u64)>,
    tokens: Option<Vec<u64>>,
}

fn corpus(f: &Funnel) -> Result<Corpus> {
    let p = f.project;
    let Some(src) = first(p, "source") else {
        return Ok(Corpus {
            files: Vec::new(),
            tokens: None,
        });
    };
    let listing = super::source::scan(&p.dir, &p.store, src, &p.pipeline.path)?;
    let files: Vec<(String, u64)> = listing
        .files
        .iter()
        .map(|f| (f.path.clone(), f.bytes))
        .collect();
    let tokenizer = f
        .tokenizer_json
        .as_deref()
        .and_then(|b| tokenizers::Tokenizer::from_bytes(b).ok());
    let tokens = tokenizer.map(|t| {
        files
            .par_iter()
            .map(|(name, _)| {
                let text = std::fs::read_to_string(listing.root.join(name)).unwrap_or_default();
                t.encode(text.as_str(), false)
                    .map(|e| e.get_ids().len() as u64 + 1)
                    .unwrap_or(0)
            })
            .collect()
    });
    Ok(Corpus { files, tokens })
}

/// Tokens per file: counted with the built tokenizer, else about 3.5 bytes per token.
fn tokens_per_file(c: &Corpus) -> Vec<u64> {
    c.tokens.clone().unwrap_or_else(|| {
        c.files
            .iter()
            .map(|(_, b)| (*b as f64 / 3.5) as u64 + 1)
            .collect()
    })
}

/// Rows of `context + 1` tokens that overlap by one (as `pack` cuts them).
fn pack_rows(tokens: u64, context: usize) -> u64 {
    tokens.saturating_sub(1) / context as u64
}

pub fn space(project: &Project, params: Option<f64>) -> Result<SpaceReport> {
    let f = Funnel::read(project)?;
    let c = corpus(&f)?;
    let mut how = BTreeMap::new();
    let mut rows = StudyTable::empty();
    let at = |a: Artifact| Artifact::ALL.iter().position(|&x| x == a).unwrap_or(0);
    let mut set = |a: Artifact,
                   bytes: u64,
                   files: usize,
                   note: String,
                   how: &mut BTreeMap<String, String>| {
        let r: &mut StudyRow = &mut rows[at(a)];
        r.bytes += bytes;
        r.files += files;
        how.insert(a.label().to_string(), note);
    };
    let ckpts = f.events(f.checkpoint_every);
    let snaps = f.events(f.eval_every);

    // Data.
    let raw: u64 = c.files.iter().map(|(_, b)| b).sum();
    set(
        Artifact::RawText,
        raw,
        c.files.len(),
        format!("{} files of the source", c.files.len()),
        &mut how,
    );
    let per_file = tokens_per_file(&c);
    let n_tokens: u64 = per_file.iter().sum();
    let tokenizer_json = f
        .tokenizer_json
        .as_ref()
        .map(|b| b.len() as u64)
        .unwrap_or(f.cfg.vocab_size as u64 * 30);
    // tokens.json: the vocabulary, the end-of-text id and one entry per document.
    let meta = crate::steps::tokenize::TokensMeta {
        vocab_size: f.cfg.vocab_size as u32,
        eot_id: 0,
        tokens: n_tokens,
        documents: c
            .files
            .iter()
            .zip(&per_file)
            .scan(0u64, |start, ((name, _), n)| {
                let d = crate::steps::tokenize::Document {
                    path: name.clone(),
                    start: *start,
                    len: *n,
                };
                *start += n;
                Some(d)
            })
            .collect(),
    };
    let tokens_json = serde_json::to_vec_pretty(&meta)
        .map(|v| v.len() as u64)
        .unwrap_or(0);
    set(
        Artifact::Tokenized,
        4 * n_tokens + tokens_json + tokenizer_json,
        3,
        format!(
            "{n_tokens} tokens × 4 bytes ({}), the tokenizer, the document list",
            if c.tokens.is_some() {
                "counted with the built tokenizer"
            } else {
                "estimated at 3.5 bytes of text per token"
            }
        ),
        &mut how,
    );
    let val_fraction = first(project, "pack")
        .map(|p| p.params.float("val_fraction"))
        .transpose()?
        .unwrap_or(0.1);
    let val = (n_tokens as f64 * val_fraction).ceil() as u64;
    let rows_total =
        pack_rows(n_tokens - val.min(n_tokens), f.pack_context) + pack_rows(val, f.pack_context);
    set(
        Artifact::Packed,
        rows_total * (f.pack_context as u64 + 1) * 4 + 400 + (c.files.len() as u64 * 12),
        3,
        format!(
            "{rows_total} rows of context + 1 = {} tokens × 4 bytes",
            f.pack_context + 1
        ),
        &mut how,
    );
    let (tool, _) = super::du::tool_bytes();
    set(
        Artifact::Tool,
        tool,
        1,
        "the running pai binary".into(),
        &mut how,
    );

    // The model.
    let p_own = f.cfg.param_count() as u64;
    let n = params.map(|x| x as u64).unwrap_or(p_own);
    let shape = match params {
        None => ModelShape {
            params: p_own,
            n_layer: f.cfg.n_layer,
            n_embd: f.cfg.n_embd,
            n_head: f.cfg.n_head,
            context: f.cfg.context,
            vocab_size: f.cfg.vocab_size,
            derived: false,
        },
        Some(_) => derived_shape(n, &f.cfg),
    };
    let cfg_n = GptConfig {
        vocab_size: shape.vocab_size,
        context: shape.context,
        n_layer: shape.n_layer,
        n_head: shape.n_head,
        n_embd: shape.n_embd,
    };
    // For the pipeline's model: each file as written. For N: the per-parameter rates.
    let (weights, optimizer, checkpoint) = match params {
        None => (
            weights_file(&f.cfg),
            optimizer_file(&f.cfg),
            checkpoint_file(&f.cfg),
        ),
        Some(_) => (4 * n, 8 * n, 12 * n),
    };
    let cfg_bytes = config_json(&f.cfg);
    set(
        Artifact::Initialization,
        weights + cfg_bytes,
        2,
        "f32 weights, 4 bytes per parameter".into(),
        &mut how,
    );
    set(
        Artifact::GradientCheckpoints,
        ckpts * checkpoint,
        ckpts as usize,
        format!(
            "{ckpts} checkpoints (steps / checkpoint_every, the last step always) × weights + AdamW moments, 12 bytes per parameter"
        ),
        &mut how,
    );
    set(
        Artifact::ValidationSnapshots,
        snaps * weights,
        snaps as usize,
        format!(
            "{snaps} snapshots (steps / eval_every, the last step always; the best is one of them) × 4 bytes per parameter"
        ),
        &mut how,
    );
    let export_extra = if f.exports > 0 {
        tokenizer_json + 3 * cfg_bytes
    } else {
        0
    };
    set(
        Artifact::FinalWeights,
        weights + cfg_bytes + export_extra,
        2,
        "f32 weights, 4 bytes per parameter (an export shares the same bytes)".into(),
        &mut how,
    );
    set(
        Artifact::OptimizerStates,
        optimizer,
        1,
        "AdamW m and v, 8 bytes per parameter".into(),
        &mut how,
    );
    for fmt in &f.quantize {
        let row = Artifact::of_format(*fmt);
        let rate = match fmt {
            Format::Q8_0 => "Q8_0: 34 bytes per 32 weights",
            Format::Q4_0 => "Q4_0: 18 bytes per 32 weights",
            _ => "unquantized",
        };
        let bytes = match (params, &f.vocab) {
            (None, Some(v)) => {
                let kv = crate::model::gguf::metadata(&f.cfg, v.clone(), *fmt)?;
                crate::formats::gguf::file_bytes(
                    &kv,
                    &crate::model::gguf::tensor_layout(&f.cfg, *fmt)?,
                )?
            }
            _ => {
                let per32 = match fmt {
                    Format::Q8_0 => 34,
                    Format::Q4_0 => 18,
                    Format::F16 => 64,
                    Format::F32 => 128,
                };
                n * per32 / 32 + tokenizer_json
            }
        };
        set(
            row,
            bytes,
            1,
            format!("{rate}, 1-D tensors f32, the tokenizer embedded"),
            &mut how,
        );
    }
    // Logs: one JSON line per step, the loss plot, evaluation reports.
    let line = serde_json::to_vec(&crate::steps::train::LogLine {
        step: f.steps,
        loss: 5.754_167,
        lr: 0.000_12,
        grad_norm: 1.123_739,
        tokens_per_s: 2_142.925_424_688_476,
        seconds: 0.319_764_074,
        val_loss: None,
    })
    .map(|v| v.len() as u64 + 1)
    .unwrap_or(0);
    // A falling curve from a uniform guess (ln V), as training draws it.
    let start = (f.cfg.vocab_size as f64).ln();
    let curve = |s: u64| start * (1.0 - 0.2 * s as f64 / f.steps.max(1) as f64);
    let points: Vec<(u64, f64)> = (1..=f.steps).map(|s| (s, curve(s))).collect();
    let val_points: Vec<(u64, f64)> = (1..=f.steps)
        .filter(|s| s.is_multiple_of(f.eval_every) || *s == f.steps)
        .map(|s| (s, curve(s) + 0.05))
        .collect();
    let svg = if f.steps > 0 {
        crate::report::plot::loss_svg(&points, &val_points, Some(start * 0.9))
            .map(|s| s.len() as u64)
            .unwrap_or(0)
    } else {
        0
    };
    set(
        Artifact::Logs,
        f.steps * line + snaps * 22 + 300 + svg + f.evaluates as u64 * (600 + 260 * f.quantize.len() as u64),
        3,
        "a JSON line per step, the loss plot, evaluation reports (their size depends on the digits printed)".into(),
        &mut how,
    );
    for r in rows.iter_mut() {
        if r.bytes > 0 {
            r.held_by = vec![how.get(r.label).cloned().unwrap_or_default()];
        }
        r.retention = match r.artifact {
            Artifact::GradientCheckpoints | Artifact::OptimizerStates => "temporary".into(),
            Artifact::ValidationSnapshots => "mixed".into(),
            Artifact::Logs => "mixed".into(),
            Artifact::RawText | Artifact::Tool => "-".into(),
            _ => "keep".into(),
        };
    }
    let sum = |pred: &dyn Fn(Artifact) -> bool| -> u64 {
        rows.iter()
            .filter(|r| pred(r.artifact))
            .map(|r| r.bytes)
            .sum()
    };
    let temporary = rows[at(Artifact::GradientCheckpoints)].bytes
        + rows[at(Artifact::OptimizerStates)].bytes
        + snaps * weights
        + f.steps * line;
    // The last step is always evaluated, so its snapshot holds the final
    // weights' very bytes: stored once.
    let shared = if snaps > 0 { weights } else { 0 };
    let rows_sum = sum(&|_| true);
    let all = rows_sum - shared;
    let totals = StudyTotals {
        after_training: all,
        // The snapshots go (the one like the final weights included).
        after_cleanup: rows_sum - temporary.min(rows_sum),
        usable_model: sum(&|a| matches!(a, Artifact::Model8Bit | Artifact::Model4Bit)),
    };
    let measured = match params {
        None => {
            let m = super::du::measured_table(project);
            m.rows
                .iter()
                .any(|r| r.bytes > 0 && r.artifact != Artifact::Tool)
                .then_some(m)
        }
        Some(_) => None,
    };
    let plan = crate::model::memory_plan(&cfg_n, f.batch);
    // Weights and gradients 4 bytes per parameter, AdamW 8; the plan's
    // device bytes beyond those 16 are the activations.
    let activations = plan
        .device_bytes
        .saturating_sub(16 * cfg_n.param_count() as u64);
    let memory = TrainingMemory {
        weights: 4 * n,
        gradients: 4 * n,
        optimizer: 8 * n,
        activations,
        total: 16 * n + activations,
        batch: f.batch,
        context: shape.context,
    };
    Ok(SpaceReport {
        model: shape,
        checkpoints: ckpts,
        snapshots: snaps,
        projected: StudyTable { rows, totals },
        measured,
        memory,
        how,
    })
}

/// A GPT-2-like shape with about `n` parameters: 64 channels per layer
/// (GPT-2 small is 12 × 768), heads of 64 channels, the pipeline's context
/// and vocabulary.
fn derived_shape(n: u64, own: &GptConfig) -> ModelShape {
    let count = |l: usize| {
        let c = 64 * l;
        GptConfig {
            vocab_size: own.vocab_size,
            context: own.context,
            n_layer: l,
            n_head: l,
            n_embd: c,
        }
        .param_count() as u64
    };
    let mut l = 1;
    while count(l + 1) <= n && l < 100_000 {
        l += 1;
    }
    if l < 100_000 && count(l + 1).abs_diff(n) < count(l).abs_diff(n) {
        l += 1;
    }
    ModelShape {
        params: n,
        n_layer: l,
        n_embd: 64 * l,
        n_head: l,
        context: own.context,
        vocab_size: own.vocab_size,
        derived: true,
    }
}

/// `75e9`, `124M`, `1.5B`, `350k`, `7000000` as a number of parameters.
pub fn parse_params(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1e3),
        'm' | 'M' => (&s[..s.len() - 1], 1e6),
        'b' | 'B' | 'g' | 'G' => (&s[..s.len() - 1], 1e9),
        't' | 'T' => (&s[..s.len() - 1], 1e12),
        _ => (s, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 1.0).then_some(v * mult)
}

impl fmt::Display for SpaceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.model;
        writeln!(
            f,
            "a model of {} parameters ({} layers × {} channels, {} heads, context {}, vocabulary {}{}); \
             {} checkpoints, {} validation snapshots",
            crate::report::count(m.params),
            m.n_layer,
            m.n_embd,
            m.n_head,
            m.context,
            m.vocab_size,
            if m.derived {
                ", shape derived from N for the activations"
            } else {
                ""
            },
            self.checkpoints,
            self.snapshots
        )?;
        writeln!(f)?;
        let third = if self.measured.is_some() {
            "measured (du)"
        } else if m.derived {
            "the study (~75 B)"
        } else {
            ""
        };
        writeln!(
            f,
            "{:<22} {:>11}  {:>13}  how",
            "artifact", "projected", third
        )?;
        for r in &self.projected.rows {
            if r.artifact == Artifact::Other {
                continue;
            }
            let other = match &self.measured {
                Some(t) => size(t.row(r.artifact).bytes),
                None if m.derived => r.study.unwrap_or("").to_string(),
                None => String::new(),
            };
            writeln!(
                f,
                "{:<22} {:>11}  {:>13}  {}",
                r.label,
                size(r.bytes),
                other,
                r.held_by.first().map(String::as_str).unwrap_or("")
            )?;
        }
        writeln!(f)?;
        let t = &self.projected.totals;
        let mt = self.measured.as_ref().map(|x| &x.totals);
        let line = |f: &mut fmt::Formatter<'_>, label: &str, p: u64, mv: Option<u64>| {
            writeln!(
                f,
                "{label:<38} {:>11}{}",
                size(p),
                mv.map(|v| format!("  (measured {})", size(v)))
                    .unwrap_or_default()
            )
        };
        line(
            f,
            "after training (everything):",
            t.after_training,
            mt.map(|x| x.after_training),
        )?;
        line(
            f,
            "after cleanup (`gc --temporaries`):",
            t.after_cleanup,
            mt.map(|x| x.after_cleanup),
        )?;
        line(
            f,
            "the usable model alone (8-bit, 4-bit):",
            t.usable_model,
            mt.map(|x| x.usable_model),
        )?;
        if m.derived {
            let s: Vec<String> = STUDY_TOTALS
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            writeln!(f, "the study's disk: {}", s.join(", "))?;
        }
        let mem = &self.memory;
        writeln!(f)?;
        writeln!(
            f,
            "host memory to train it (batch {}, context {}): weights {} + gradients {} + AdamW {} + \
             activations {} = {}   (the study: RAM minimum 32 GB)",
            mem.batch,
            mem.context,
            size(mem.weights),
            size(mem.gradients),
            size(mem.optimizer),
            size(mem.activations),
            size(mem.total)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_counts_take_suffixes() {
        assert_eq!(parse_params("75e9"), Some(75e9));
        assert_eq!(parse_params("124M"), Some(124e6));
        assert_eq!(parse_params("1.5B"), Some(1.5e9));
        assert_eq!(parse_params("7000"), Some(7000.0));
        assert_eq!(parse_params("lots"), None);
        assert_eq!(parse_params("0"), None);
    }

    #[test]
    fn safetensors_sizes_are_the_writers_to_the_byte() {
        let cfg = GptConfig {
            vocab_size: 300,
            context: 8,
            n_layer: 1,
            n_head: 2,
            n_embd: 32,
        };
        let w = crate::model::Weights::init(cfg, 0.02, 1);
        let written = w.to_safetensors().unwrap().len() as u64;
        assert_eq!(weights_file(&cfg), written);
    }

    #[test]
    fn a_derived_shape_has_about_n_parameters() {
        let own = GptConfig {
            vocab_size: 50257,
            context: 1024,
            n_layer: 12,
            n_head: 12,
            n_embd: 768,
        };
        for n in [124e6 as u64, 1_500_000_000, 75_000_000_000] {
            let s = derived_shape(n, &own);
            let got = GptConfig {
                vocab_size: s.vocab_size,
                context: s.context,
                n_layer: s.n_layer,
                n_head: s.n_head,
                n_embd: s.n_embd,
            }
            .param_count() as f64;
            assert!((got / n as f64 - 1.0).abs() < 0.35, "{n}: {got}");
        }
    }
}
