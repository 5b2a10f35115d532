//! `pai bench quant`: quantization throughput on the adapter beside the plain-Rust reference,
//! and generation speed (the KV-cache decode path) with f32 weights and with q4_0 weights
//! (dequantized on the device) of the default model size.

use std::fmt;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use super::GptConfig;
use super::generate::{Generator, Sampling, generate};
use super::weights::{Weights, specs};
use crate::gpu::Gpu;
use crate::gpu::bench::{QuantBench, quantize_throughput};
use crate::gpu::ops::GpuOps;
use crate::gpu::ops::quant::{self, Format};

/// Generation speed with one kind of weights.
#[derive(Clone, Debug, Serialize)]
pub struct GenBench {
    /// `f32`, or the format the matrices went through (`q4_0`).
    pub weights: String,
    pub tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
}

/// What `pai bench quant` reports.
#[derive(Clone, Debug, Serialize)]
pub struct QuantGenBench {
    pub adapter: String,
    pub model: GptConfig,
    pub quantize: Vec<QuantBench>,
    pub generation: Vec<GenBench>,
}

impl fmt::Display for QuantGenBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "adapter: {}", self.adapter)?;
        for q in &self.quantize {
            writeln!(
                f,
                "quantize {}: {:.3} GB/s of f32 input; plain-Rust reference (1 thread) {:.3} GB/s; ratio {:.2}",
                q.format,
                q.gbps,
                q.cpu_gbps,
                q.gbps / q.cpu_gbps
            )?;
        }
        let m = &self.model;
        let base = self.generation.first().map(|g| g.tokens_per_s);
        for g in &self.generation {
            write!(
                f,
                "generate ({} layers, {} heads, {} channels, context {}, vocab {}) with {} weights: \
                 {:.1} tokens/s ({} tokens in {:.2} s, KV cache, batch 1)",
                m.n_layer,
                m.n_head,
                m.n_embd,
                m.context,
                m.vocab_size,
                g.weights,
                g.tokens_per_s,
                g.tokens,
                g.seconds
            )?;
            match base {
                Some(b) if g.weights != "f32" => writeln!(f, "; {:.2}× f32", g.tokens_per_s / b)?,
                _ => writeln!(f)?,
            }
        }
        Ok(())
    }
}

/// The matrices of `w` through `format` and back (quantized and dequantized on the device),
/// as `quantize` writes them and `pai generate` reads them; 1-D tensors stay f32.
pub fn through_format(gpu: &Gpu, w: &Weights, format: Format) -> Result<Weights> {
    let mut out = w.clone();
    for (s, t) in specs(&w.cfg).iter().zip(out.tensors.iter_mut()) {
        if s.shape.len() == 2 {
            let q = quant::quantize(gpu, format, &s.name, t)?;
            *t = quant::dequantize(gpu, format, &q)?;
        }
    }
    Ok(out)
}

/// Runs the benchmark on the adapter `adapter_pref` chooses.
pub fn quant(adapter_pref: Option<&str>) -> Result<QuantGenBench> {
    let gpu = Gpu::new(adapter_pref)?;
    let quantize = quantize_throughput(&gpu, Duration::from_millis(300))?;
    let cfg = GptConfig {
        vocab_size: 2048,
        context: 128,
        n_layer: 4,
        n_head: 4,
        n_embd: 128,
    };
    let w = Weights::init(cfg, 0.02, 1);
    let q4 = through_format(&gpu, &w, Format::Q4_0)?;
    let mut generation = Vec::new();
    for (name, weights) in [("f32", &w), ("q4_0", &q4)] {
        let mut ops = GpuOps::new(&gpu);
        let mut g = Generator::new(&mut ops, weights)?;
        let s = Sampling::default();
        // A warm-up run compiles the pipelines.
        generate(&mut ops, &mut g, &[0], 4, s, &mut |_| Ok(()))?;
        let r = generate(&mut ops, &mut g, &[0], cfg.context, s, &mut |_| Ok(()))?;
        generation.push(GenBench {
            weights: name.into(),
            tokens: r.tokens.len(),
            seconds: r.seconds,
            tokens_per_s: r.tokens_per_s,
        });
    }
    Ok(QuantGenBench {
        adapter: gpu.describe(),
        model: cfg,
        quantize,
        generation,
    })
}
