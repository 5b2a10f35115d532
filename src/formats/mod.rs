//! File formats: token files, safetensors, GGML block layouts and GGUF.
pub mod ggml;
pub mod gguf;
pub mod safetensors;
pub mod tokens;
