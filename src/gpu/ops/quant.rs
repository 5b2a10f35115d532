//! Q8_0 and Q4_0 quantization on the GPU (`shaders/quant.wgsl`), bit-identical to the reference
//! quantizers in [`crate::formats::ggml`], which also holds the block layouts; this module only
//! dispatches.

use crate::formats::ggml::{self, QK};
use crate::gpu::pipelines::kernel;
use crate::gpu::{DType, Gpu, Kernel, Tensor};
use anyhow::{Result, bail, ensure};

pub use crate::formats::ggml::{
    Format, dequantize_ref, f16_to_f32, f32_to_f16, quantize_q4_0_ref, quantize_q8_0_ref,
    quantize_ref,
};

/// The uniform block (`Params` in `shaders/quant.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct QuantParams {
    /// Number of blocks.
    pub nb: u32,
    pub _pad: [u32; 3],
}

impl QuantParams {
    pub fn new(nb: usize) -> Self {
        Self {
            nb: super::u(nb),
            _pad: [0; 3],
        }
    }
}

pub const Q8_0_QUANTIZE: Kernel = kernel!("quant", "q8_0_quantize", QuantParams);
pub const Q4_0_QUANTIZE: Kernel = kernel!("quant", "q4_0_quantize", QuantParams);
pub const Q8_0_DEQUANTIZE: Kernel = kernel!("quant", "q8_0_dequantize", QuantParams);
pub const Q4_0_DEQUANTIZE: Kernel = kernel!("quant", "q4_0_dequantize", QuantParams);

/// Every kernel this op can dispatch.
pub const KERNELS: &[&Kernel] = &[
    &Q8_0_QUANTIZE,
    &Q4_0_QUANTIZE,
    &Q8_0_DEQUANTIZE,
    &Q4_0_DEQUANTIZE,
];

/// The quantize kernel of a block format (F16 and F32 have none).
pub fn quantize_kernel(format: Format) -> Result<&'static Kernel> {
    match format {
        Format::Q8_0 => Ok(&Q8_0_QUANTIZE),
        Format::Q4_0 => Ok(&Q4_0_QUANTIZE),
        Format::F16 | Format::F32 => bail!(
            "{} is not a block format: no quantize kernel",
            format.name()
        ),
    }
}

/// The dequantize kernel of a block format (F16 and F32 have none).
pub fn dequantize_kernel(format: Format) -> Result<&'static Kernel> {
    match format {
        Format::Q8_0 => Ok(&Q8_0_DEQUANTIZE),
        Format::Q4_0 => Ok(&Q4_0_DEQUANTIZE),
        Format::F16 | Format::F32 => bail!(
            "{} is not a block format: no dequantize kernel",
            format.name()
        ),
    }
}

/// Invocations a quantize dispatch of `nb` blocks takes (one per pair of blocks).
pub fn quantize_invocations(nb: usize) -> usize {
    nb.div_ceil(2)
}

/// Quantizes a device tensor (f32, length a multiple of 32) into a byte tensor of
/// `blocks × block_bytes` bytes. Non-finite input is an error naming `name` and the first bad
/// block.
pub fn quantize_tensor(gpu: &Gpu, format: Format, name: &str, x: &Tensor) -> Result<Tensor> {
    ensure!(
        x.dtype == DType::F32,
        "tensor {name:?}: quantize needs f32 input"
    );
    let n = x.len();
    ensure!(
        n.is_multiple_of(QK),
        "tensor {name:?}: {n} elements is not a multiple of the block size {QK}"
    );
    let kern = quantize_kernel(format)?;
    let nb = n / QK;
    let out = gpu.zeros_u8(nb * format.block_bytes())?;
    let flag = gpu.upload_u32(&[u32::MAX], &[1])?;
    let mut b = gpu.batch();
    b.dispatch(
        kern,
        &QuantParams::new(nb),
        &[("src", x), ("dst", &out), ("flag", &flag)],
        quantize_invocations(nb),
    )?;
    b.submit()?;
    let f = gpu.read_u32(&flag)?[0];
    if f != u32::MAX {
        bail!(
            "tensor {name:?}: block {f} (elements {}..{}) holds NaN or Inf; cannot quantize non-finite weights",
            f as usize * QK,
            (f as usize + 1) * QK
        );
    }
    Ok(out)
}

/// Quantizes host data on the GPU and returns the GGML block bytes.
pub fn quantize(gpu: &Gpu, format: Format, name: &str, x: &[f32]) -> Result<Vec<u8>> {
    ggml::check_len(name, x)?;
    ggml::check_finite(name, x)?;
    let t = gpu.upload(x, &[x.len()])?;
    let q = quantize_tensor(gpu, format, name, &t)?;
    gpu.read_bytes(&q)
}

/// Dequantizes a byte tensor of whole blocks into a new f32 tensor.
pub fn dequantize_tensor(gpu: &Gpu, format: Format, q: &Tensor) -> Result<Tensor> {
    let kern = dequantize_kernel(format)?;
    let bb = format.block_bytes();
    ensure!(
        q.dtype == DType::U8,
        "dequantize: {} data must be a u8 tensor, is {:?}",
        format.name(),
        q.dtype
    );
    ensure!(
        q.len().is_multiple_of(bb),
        "{} data of {} bytes is not whole blocks of {bb}",
        format.name(),
        q.len()
    );
    let nb = q.len() / bb;
    let out = gpu.zeros(&[nb * QK])?;
    let mut b = gpu.batch();
    b.dispatch(
        kern,
        &QuantParams::new(nb),
        &[("src", q), ("dst", &out)],
        nb,
    )?;
    b.submit()?;
    Ok(out)
}

/// Dequantizes host bytes on the GPU.
pub fn dequantize(gpu: &Gpu, format: Format, bytes: &[u8]) -> Result<Vec<f32>> {
    let q = gpu.upload_u8(bytes)?;
    let t = dequantize_tensor(gpu, format, &q)?;
    gpu.read(&t)
}
