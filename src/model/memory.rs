//! How much memory a model needs for a batch, from the same tensor list `Model::new`
//! allocates, and whether its largest tensor fits the adapter's buffer limits.

use super::config::GptConfig;
use super::tensors::{DeviceTensors, step_uploads};
use anyhow::{Result, bail};

/// Device and host bytes of training a model, and its largest single tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Every tensor the model holds plus one step's uploads (tokens, targets, index).
    pub device_bytes: u64,
    /// Peak host memory of writing a checkpoint: the weights, the two AdamW moments and the
    /// serialised safetensors buffer holding all three (6 × 4 bytes per parameter).
    pub host_bytes: u64,
    /// The biggest single device tensor and its bytes.
    pub largest: (String, u64),
}

/// The plan for `cfg` trained on `batch` rows (all tensors 4-byte words).
pub fn memory_plan(cfg: &GptConfig, batch: usize) -> MemoryPlan {
    let mut sizes: Vec<(String, u64)> = Vec::new();
    let bytes = |shape: &[usize]| {
        shape
            .iter()
            .fold(4u64, |acc, &d| acc.saturating_mul(d as u64))
    };
    // The closure never fails, so neither does build.
    let _ = DeviceTensors::<()>::build(cfg, batch, &mut |slots| {
        for s in slots {
            sizes.push((s.name.to_string(), bytes(s.shape)));
        }
        Ok(vec![(); slots.len()])
    });
    for (name, shape) in step_uploads(cfg, batch) {
        sizes.push((name, bytes(&shape)));
    }
    let device_bytes = sizes.iter().fold(0u64, |a, (_, b)| a.saturating_add(*b));
    let largest = sizes
        .iter()
        .fold(None::<&(String, u64)>, |m, x| match m {
            Some(m) if m.1 >= x.1 => Some(m),
            _ => Some(x),
        })
        .cloned()
        .unwrap_or_default();
    let params = cfg.param_count() as u64;
    MemoryPlan {
        device_bytes,
        host_bytes: params.saturating_mul(24),
        largest,
    }
}

/// Refuses a plan whose largest tensor exceeds the adapter's per-buffer or per-binding limit.
pub fn check_fits(plan: &MemoryPlan, max_buffer_size: u64, max_binding_size: u64) -> Result<()> {
    let (name, size) = &plan.largest;
    let limit = max_buffer_size.min(max_binding_size);
    if *size > limit {
        let which = if max_binding_size <= max_buffer_size {
            format!("max_storage_buffer_binding_size {max_binding_size}")
        } else {
            format!("max_buffer_size {max_buffer_size}")
        };
        bail!(
            "tensor {name} needs {size} bytes ({:.1} MiB), more than this adapter's {which} \
             bytes ({:.1} MiB): use a smaller batch or context (logits and attention grow with \
             them), a smaller vocabulary, or fewer channels",
            *size as f64 / (1 << 20) as f64,
            limit as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
