//! Plain-Rust references of every training kernel, in f64 (inputs, accumulation and outputs),
//! gathered from the op modules in [`crate::gpu::ops`] where each lives beside its kernel.
//!
//! Same shapes and semantics as the WGSL kernels in `shaders/`; the tests' oracle, and the CPU
//! implementation behind [`crate::gpu::ops::CpuOps`]. All matrices are row-major.

pub use super::ops::attention::reference::*;
pub use super::ops::crossentropy::reference::*;
pub use super::ops::elementwise::reference::*;
pub use super::ops::embedding::reference::*;
pub use super::ops::layernorm::reference::*;
pub use super::ops::matmul::reference::*;
pub use super::ops::optim::reference::*;
pub use super::ops::{AdamW, AttnShape, to_f32, to_f64};
