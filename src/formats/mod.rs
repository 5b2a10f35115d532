//! File formats: token files, safetensors, GGML block layouts (and, with the quantization
//! issue, GGUF).
pub mod ggml;
pub mod safetensors;
pub mod tokens;
