//! GPT-2 (learned positions, pre-LayerNorm, tanh-GELU, tied output embedding): its
//! configuration, parameter layout and weights, safetensors forms, and the model that trains on
//! a device through [`crate::gpu::ops::Ops`] only.
pub mod bench;
pub mod bench_native;
pub mod checkpoint;
pub mod config;
pub mod generate;
pub mod gguf;
pub mod gpt;
pub mod layers;
pub mod memory;
pub mod quant_bench;
pub mod rng;
pub mod tensors;
pub mod weights;

pub use checkpoint::{
    OptState, checkpoint_from_safetensors, checkpoint_to_safetensors, opt_from_safetensors,
    opt_to_safetensors,
};
pub use config::GptConfig;
pub use generate::{Generated, Generator, Sampler, Sampling, generate};
pub use gpt::{Hyper, Model, StepStats};
pub use memory::{MemoryPlan, check_fits, memory_plan};
pub use weights::{ParamSpec, Weights, specs};
