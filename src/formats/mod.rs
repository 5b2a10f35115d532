//! File formats: token files, GGML block layouts (and, with the model issues, safetensors and
//! GGUF).
pub mod ggml;
pub mod tokens;
