//! The integration tests: one test crate (one binary to link) with a module
//! per subject. They drive the built `pai` binary in temporary projects
//! (`common`) or the library's GPU paths on the adapter at hand (`gpu_util`).

mod common;
mod gpu_util;

mod corpus;
mod crash;
mod durability;
mod engine;
mod errors;
mod fuzz_spec;
mod generate;
mod gpu_decode;
mod gpu_fused;
mod gpu_kernels;
mod gpu_ops;
mod gpu_quant;
mod gpu_runtime;
mod model;
mod native_ops;
mod pipelines;
mod processes;
mod property;
mod python_gguf;
mod quantize;
mod remote;
mod scale;
mod space;
mod train;
