//! Kinds of the model end of the funnel whose parameters are fixed here so
//! that pipelines can declare the whole funnel, but whose implementation
//! lands with later issues: building one is a clear error, not a fake output.

use anyhow::{Result, bail};

use super::{
    Default, InputDecl, Inputs, OutputDecl, ParamDecl, ParamType, Params, Retention, Step, StepCtx,
};

pub struct Planned {
    kind: &'static str,
    doc: &'static str,
    params: &'static [ParamDecl],
    inputs: Inputs,
    outputs: &'static [(&'static str, Retention)],
    gpu: bool,
    /// Kernels it will dispatch, by op: their text is in its key already.
    shaders: &'static [&'static [&'static crate::gpu::Kernel]],
}

impl Step for Planned {
    fn kind(&self) -> &'static str {
        self.kind
    }
    fn version(&self) -> u32 {
        0
    }
    fn doc(&self) -> &'static str {
        self.doc
    }
    fn params(&self) -> &'static [ParamDecl] {
        self.params
    }
    fn inputs(&self) -> Inputs {
        self.inputs
    }
    fn outputs(&self, _params: &Params) -> Result<Vec<OutputDecl>> {
        Ok(self
            .outputs
            .iter()
            .map(|(name, r)| OutputDecl {
                name: name.to_string(),
                retention: *r,
                required: *r == Retention::Keep,
                doc: "",
            })
            .collect())
    }
    fn shaders(&self) -> Vec<(String, String)> {
        crate::gpu::kernel_sources(self.shaders)
    }
    fn uses_gpu(&self, _params: &Params) -> bool {
        self.gpu
    }
    fn validate(&self, params: &Params) -> std::result::Result<(), String> {
        if self.kind == "quantize" {
            Self::check_format(params)
        } else {
            Ok(())
        }
    }
    fn run(&self, ctx: &StepCtx) -> Result<()> {
        bail!(
            "node `{}`: kind `{}` is declared (its parameters are checked) but not implemented in this \
             version of pai yet; the data end of the funnel builds today (try `pai build packed`)",
            ctx.node,
            self.kind
        )
    }
}

use Default as D;
use ParamType as T;

pub static GPT_INIT: Planned = Planned {
    kind: "gpt-init",
    doc: "(not implemented yet) GPT-2 weights initialised from a seed: `model.safetensors`, `config.json`.",
    params: &[
        ParamDecl::new("n_layer", T::Int, D::Int(4), "Transformer blocks.").range(1.0, 256.0),
        ParamDecl::new(
            "n_head",
            T::Int,
            D::Int(4),
            "Attention heads; must divide n_embd.",
        )
        .range(1.0, 256.0),
        ParamDecl::new("n_embd", T::Int, D::Int(128), "Channels C.").range(1.0, 65536.0),
        ParamDecl::new(
            "context",
            T::Int,
            D::Int(128),
            "Positions T; must equal the pack context.",
        )
        .range(1.0, 1_048_576.0),
        ParamDecl::new(
            "init_std",
            T::Float,
            D::Float(0.02),
            "Standard deviation of the normal init.",
        )
        .range(0.0, 1.0),
        ParamDecl::new("seed", T::Int, D::Int(1), "Initialisation seed."),
    ],
    inputs: Inputs::Slots(&[InputDecl {
        role: "tokenizer",
        kinds: &["bpe-tokenizer"],
        doc: "for the vocabulary size",
    }]),
    outputs: &[
        ("model.safetensors", Retention::Keep),
        ("config.json", Retention::Keep),
    ],
    gpu: false,
    shaders: &[],
};

pub static TRAIN: Planned = Planned {
    kind: "train",
    doc: "(not implemented yet) AdamW training of the initial model on the packed rows, on the GPU.",
    params: &[
        ParamDecl::new("steps", T::Int, D::Int(1500), "Optimizer steps.").range(1.0, 1e9),
        ParamDecl::new("batch", T::Int, D::Int(8), "Rows per step.").range(1.0, 65536.0),
        ParamDecl::new("lr", T::Float, D::Float(1e-3), "Peak learning rate.").range(0.0, 10.0),
        ParamDecl::new("warmup", T::Int, D::Int(100), "Linear warm-up steps.").range(0.0, 1e9),
        ParamDecl::new(
            "min_lr_ratio",
            T::Float,
            D::Float(0.1),
            "Cosine decay floor, as a share of lr.",
        )
        .range(0.0, 1.0),
        ParamDecl::new(
            "weight_decay",
            T::Float,
            D::Float(0.1),
            "AdamW decay on 2-D weights.",
        )
        .range(0.0, 10.0),
        ParamDecl::new("beta1", T::Float, D::Float(0.9), "AdamW β1.").range(0.0, 1.0),
        ParamDecl::new("beta2", T::Float, D::Float(0.95), "AdamW β2.").range(0.0, 1.0),
        ParamDecl::new(
            "grad_clip",
            T::Float,
            D::Float(1.0),
            "Global-norm clip (0: off).",
        )
        .range(0.0, 1e6),
        ParamDecl::new(
            "eval_every",
            T::Int,
            D::Int(100),
            "Steps between validation passes.",
        )
        .range(1.0, 1e9),
        ParamDecl::new(
            "checkpoint_every",
            T::Int,
            D::Int(500),
            "Steps between checkpoints.",
        )
        .range(1.0, 1e9),
        ParamDecl::new("seed", T::Int, D::Int(1), "Batch sampling seed."),
    ],
    inputs: Inputs::Slots(&[
        InputDecl {
            role: "init",
            kinds: &["gpt-init"],
            doc: "initial weights",
        },
        InputDecl {
            role: "packed",
            kinds: &["pack"],
            doc: "training and validation rows",
        },
    ]),
    outputs: &[
        ("model.safetensors", Retention::Keep),
        ("best.safetensors", Retention::Keep),
        ("optimizer.safetensors", Retention::Temporary),
        ("checkpoints/*", Retention::Temporary),
        ("snapshots/*", Retention::Temporary),
        ("log.jsonl", Retention::Log),
        ("loss.svg", Retention::Keep),
    ],
    gpu: true,
    shaders: crate::gpu::ops::TRAIN_KERNELS,
};

pub static EXPORT: Planned = Planned {
    kind: "export",
    doc: "(not implemented yet) A Hugging Face GPT-2 directory that `transformers` loads as it is.",
    params: &[],
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
    outputs: &[
        ("config.json", Retention::Keep),
        ("model.safetensors", Retention::Keep),
        ("tokenizer.json", Retention::Keep),
    ],
    gpu: false,
    shaders: &[],
};

pub static QUANTIZE: Planned = Planned {
    kind: "quantize",
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
    outputs: &[("model.gguf", Retention::Keep)],
    gpu: true,
    shaders: crate::gpu::ops::QUANT_KERNELS,
};

pub static EVALUATE: Planned = Planned {
    kind: "evaluate",
    doc: "(not implemented yet) Validation loss, perplexity and size on disk of each model input.",
    params: &[ParamDecl::new(
        "batches",
        T::Int,
        D::Int(16),
        "Validation batches per model.",
    )
    .range(1.0, 1e9)],
    inputs: Inputs::Any,
    outputs: &[("eval.json", Retention::Keep)],
    gpu: true,
    shaders: crate::gpu::ops::EVAL_KERNELS,
};

impl Planned {
    /// Quantize's `format` must be one it can write.
    pub fn check_format(params: &Params) -> std::result::Result<(), String> {
        match params.str("format") {
            Ok("q8_0" | "q4_0") | Err(_) => Ok(()),
            Ok(other) => Err(format!(
                "format {other:?} is not supported: use \"q8_0\" or \"q4_0\""
            )),
        }
    }
}
