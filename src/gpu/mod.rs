//! GPU runtime (wgpu): device, tensors, kernels.
//!
//! One [`Gpu`] (one wgpu device) per process ([`device`]). Tensors are storage buffers with a
//! shape ([`tensor`]); kernels are WGSL entry points from `shaders/*.wgsl`, compiled lazily and
//! cached with layouts derived from the shader ([`pipelines`]). Work is recorded into a
//! [`Batch`] (one command encoder, many dispatches) and submitted at once ([`batch`]); only what
//! the host needs is read back.
//!
//! The operations live in [`ops`], one module per op (its WGSL, uniform struct, shape check, GPU
//! function and plain-Rust reference), behind the [`ops::Ops`] trait so model code does not know
//! which implementation runs. [`native`] is the opt-in CPU adapter (`--adapter cpu`) that runs
//! the same operations as native f32 code instead ([`Device`] says which a step runs on).

pub mod batch;
pub mod bench;
pub mod device;
pub mod doctor;
pub mod native;
pub mod ops;
pub mod pipelines;
mod profile;
pub mod reference;
pub mod tensor;

pub use batch::Batch;
pub use device::{Gpu, KernelPath, NO_ADAPTER_HELP, adapter_preference};
pub(crate) use device::{choose, instance};
pub use native::Device;
pub use pipelines::{Kernel, kernel_sources};
pub use tensor::{DType, Tensor};
