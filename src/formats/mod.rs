//! File formats: token files (and, with the model issues, safetensors and GGUF).
pub mod safetensors;
pub mod tokens;
