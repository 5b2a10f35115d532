//! GGML block layouts (Q8_0, Q4_0): type ids, f16 conversion and plain-Rust ports of ggml's
//! reference quantizers (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`) and dequantizers.
//! The GPU quantizer (`gpu::ops::quant`) produces the same bytes; the GGUF writer lives beside
//! this file.
//!
//! Q8_0 block (34 bytes): f16 d, i8 q[32]; x ≈ q·d. Q4_0 block (18 bytes): f16 d, u8 qs[16]
//! with q[j] in the low nibble of byte j and q[j+16] in the high nibble; x ≈ (q−8)·d.
//! NaN or Inf in the input is an error naming the tensor and block, never a silent block.

use anyhow::{Result, bail, ensure};
use serde::Serialize;

/// Elements per block (both formats).
pub const QK: usize = 32;

/// A GGML tensor format: the two block formats, and plain F32 and F16 (blocks of one value).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Q8_0,
    Q4_0,
    F16,
    F32,
}

impl Format {
    /// Values per block: 32 for Q8_0 and Q4_0, 1 for F16 and F32.
    pub fn block_size(self) -> usize {
        match self {
            Format::Q8_0 | Format::Q4_0 => QK,
            Format::F16 | Format::F32 => 1,
        }
    }
    /// Bytes per block (of [`Format::block_size`] values).
    pub fn block_bytes(self) -> usize {
        match self {
            Format::Q8_0 => 34,
            Format::Q4_0 => 18,
            Format::F16 => 2,
            Format::F32 => 4,
        }
    }
    /// Whether this is a block-quantized format (Q8_0, Q4_0).
    pub fn is_quantized(self) -> bool {
        matches!(self, Format::Q8_0 | Format::Q4_0)
    }
    pub fn name(self) -> &'static str {
        match self {
            Format::Q8_0 => "q8_0",
            Format::Q4_0 => "q4_0",
            Format::F16 => "f16",
            Format::F32 => "f32",
        }
    }
    /// GGML tensor type id (GGUF).
    pub fn ggml_type(self) -> u32 {
        match self {
            Format::Q8_0 => 8,
            Format::Q4_0 => 2,
            Format::F16 => 1,
            Format::F32 => 0,
        }
    }
    /// The format of a GGML tensor type id.
    pub fn from_ggml_type(t: u32) -> Option<Self> {
        [Format::Q8_0, Format::Q4_0, Format::F16, Format::F32]
            .into_iter()
            .find(|f| f.ggml_type() == t)
    }
    /// GGUF `general.file_type` (llama_ftype) of a file whose matrices are in this format.
    pub fn file_type(self) -> u32 {
        match self {
            Format::F32 => 0,
            Format::F16 => 1,
            Format::Q4_0 => 2,
            Format::Q8_0 => 7,
        }
    }
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(Format::Q8_0),
            "q4_0" => Ok(Format::Q4_0),
            "f16" => Ok(Format::F16),
            "f32" => Ok(Format::F32),
            _ => bail!("unknown tensor format {s:?} (expected q8_0, q4_0, f16 or f32)"),
        }
    }
}

/// f32 → f16 bits, round to nearest even (as F16C `_cvtss_sh(x, 0)` / GGML_FP32_TO_FP16).
pub fn f32_to_f16(x: f32) -> u16 {
    let b = x.to_bits();
    let sign = ((b >> 16) & 0x8000) as u16;
    let a = b & 0x7fff_ffff;
    if a > 0x7f80_0000 {
        return sign | 0x7e00; // NaN
    }
    let e = (a >> 23) as i32;
    if e - 112 >= 31 {
        return sign | 0x7c00;
    }
    if e - 112 >= 1 {
        let mant = a & 0x7f_ffff;
        let mut h = (((e - 112) as u32) << 10) | (mant >> 13);
        let rem = mant & 0x1fff;
        if rem > 0x1000 || (rem == 0x1000 && h & 1 == 1) {
            h += 1;
        }
        return sign | h as u16;
    }
    if e == 0 {
        return sign;
    }
    let m = (a & 0x7f_ffff) | 0x80_0000;
    let shift = (126 - e) as u32;
    if shift >= 25 {
        return sign;
    }
    let mut keep = m >> shift;
    let rem = m & ((1 << shift) - 1);
    let half = 1 << (shift - 1);
    if rem > half || (rem == half && keep & 1 == 1) {
        keep += 1;
    }
    sign | keep as u16
}

/// f16 bits → f32 (exact).
pub fn f16_to_f32(h: u16) -> f32 {
    let h = h as u32;
    let sign = (h & 0x8000) << 16;
    let e = (h >> 10) & 0x1f;
    let m = h & 0x3ff;
    let bits = if e == 0 {
        if m == 0 {
            sign
        } else {
            let s = m.leading_zeros() - 21; // shift that puts the leading 1 at bit 10
            let mm = (m << s) & 0x3ff;
            sign | ((113 - s) << 23) | (mm << 13)
        }
    } else if e == 31 {
        sign | 0x7f80_0000 | (m << 13)
    } else {
        sign | ((e + 112) << 23) | (m << 13)
    };
    f32::from_bits(bits)
}

/// C's float→int8 conversion as ggml's reference code gets it on x86-64 (cvttss2si, low byte):
/// in range it truncates toward zero; ±Inf and NaN give 0 (0x80000000's low byte).
fn c_float_to_i8(v: f32) -> i8 {
    if !v.is_finite() || v.abs() >= 2147483648.0 {
        0
    } else {
        (v.trunc() as i32) as i8
    }
}

pub(crate) fn check_finite(name: &str, x: &[f32]) -> Result<()> {
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        bail!(
            "tensor {name:?}: element {i} (block {}, offset {}) is {}; cannot quantize non-finite weights",
            i / QK,
            i % QK,
            x[i]
        );
    }
    Ok(())
}

pub(crate) fn check_len(name: &str, x: &[f32]) -> Result<()> {
    ensure!(
        x.len().is_multiple_of(QK),
        "tensor {name:?}: {} elements is not a multiple of the block size {QK}",
        x.len()
    );
    Ok(())
}

/// Plain-Rust port of ggml's `quantize_row_q8_0_ref`.
pub fn quantize_q8_0_ref(name: &str, x: &[f32]) -> Result<Vec<u8>> {
    check_len(name, x)?;
    check_finite(name, x)?;
    let mut out = Vec::with_capacity(x.len() / QK * 34);
    for blk in x.chunks_exact(QK) {
        let mut amax = 0.0f32;
        for &v in blk {
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        for &v in blk {
            let x0 = v * id;
            out.push(c_float_to_i8(x0.round()) as u8);
        }
    }
    Ok(out)
}

/// Plain-Rust port of ggml's `quantize_row_q4_0_ref`.
pub fn quantize_q4_0_ref(name: &str, x: &[f32]) -> Result<Vec<u8>> {
    check_len(name, x)?;
    check_finite(name, x)?;
    let mut out = Vec::with_capacity(x.len() / QK * 18);
    for blk in x.chunks_exact(QK) {
        let mut amax = 0.0f32;
        let mut max = 0.0f32;
        for &v in blk {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&f32_to_f16(d).to_le_bytes());
        for j in 0..QK / 2 {
            let x0 = blk[j] * id;
            let x1 = blk[QK / 2 + j] * id;
            let xi0 = c_float_to_i8(x0 + 8.5).min(15) as u8;
            let xi1 = c_float_to_i8(x1 + 8.5).min(15) as u8;
            out.push(xi0 | (xi1 << 4));
        }
    }
    Ok(out)
}

/// Reference quantizer for any format (F32: the little-endian bytes; F16: round to nearest
/// even, as ggml's `ggml_fp32_to_fp16_row`).
pub fn quantize_ref(format: Format, name: &str, x: &[f32]) -> Result<Vec<u8>> {
    match format {
        Format::Q8_0 => quantize_q8_0_ref(name, x),
        Format::Q4_0 => quantize_q4_0_ref(name, x),
        Format::F16 => Ok(x
            .iter()
            .flat_map(|&v| f32_to_f16(v).to_le_bytes())
            .collect()),
        Format::F32 => Ok(x.iter().flat_map(|v| v.to_le_bytes()).collect()),
    }
}

/// Plain-Rust dequantization (ggml's `dequantize_row_q8_0` / `dequantize_row_q4_0`).
pub fn dequantize_ref(format: Format, bytes: &[u8]) -> Result<Vec<f32>> {
    let bb = format.block_bytes();
    ensure!(
        bytes.len().is_multiple_of(bb),
        "{} data of {} bytes is not whole blocks of {bb}",
        format.name(),
        bytes.len()
    );
    match format {
        Format::F32 => {
            return Ok(bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect());
        }
        Format::F16 => {
            return Ok(bytes
                .chunks_exact(2)
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect());
        }
        Format::Q8_0 | Format::Q4_0 => {}
    }
    let mut out = Vec::with_capacity(bytes.len() / bb * QK);
    for blk in bytes.chunks_exact(bb) {
        let d = f16_to_f32(u16::from_le_bytes([blk[0], blk[1]]));
        match format {
            Format::Q8_0 => out.extend(blk[2..].iter().map(|&q| q as i8 as f32 * d)),
            Format::Q4_0 => {
                let lo: Vec<f32> = blk[2..]
                    .iter()
                    .map(|&b| ((b & 15) as i32 - 8) as f32 * d)
                    .collect();
                let hi: Vec<f32> = blk[2..]
                    .iter()
                    .map(|&b| ((b >> 4) as i32 - 8) as f32 * d)
                    .collect();
                out.extend(lo);
                out.extend(hi);
            }
            Format::F16 | Format::F32 => unreachable!("returned above"),
        }
    }
    Ok(out)
}
