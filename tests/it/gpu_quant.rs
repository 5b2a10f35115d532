//! Q8_0 / Q4_0: the GPU quantizer gives identical bytes to the plain-Rust port of ggml's
//! reference quantizer on many random blocks and on edge blocks; dequantization matches too;
//! NaN/Inf is a clear error.

use crate::gpu_util::*;
use pai::gpu::ops::quant::{self, Format, f16_to_f32, f32_to_f16};

const FORMATS: [Format; 2] = [Format::Q8_0, Format::Q4_0];

fn first_diff(format: Format, a: &[u8], b: &[u8]) -> Option<String> {
    if a.len() != b.len() {
        return Some(format!("lengths {} vs {}", a.len(), b.len()));
    }
    let bb = format.block_bytes();
    a.iter().zip(b).position(|(x, y)| x != y).map(|i| {
        let blk = i / bb;
        format!(
            "block {blk} byte {}: gpu {:02x?} vs ref {:02x?}",
            i % bb,
            &a[blk * bb..(blk + 1) * bb],
            &b[blk * bb..(blk + 1) * bb]
        )
    })
}

fn check_same(format: Format, what: &str, x: &[f32]) {
    let want = quant::quantize_ref(format, what, x).unwrap();
    let got = quant::quantize(gpu(), format, what, x).unwrap();
    if let Some(d) = first_diff(format, &got, &want) {
        panic!("{} {what}: {d}", format.name());
    }
    // Dequantization: GPU and reference agree bit for bit.
    let dq = quant::dequantize(gpu(), format, &got).unwrap();
    let dr = quant::dequantize_ref(format, &want).unwrap();
    assert_eq!(
        dq.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        dr.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        "{} {what}: dequantized values differ",
        format.name()
    );
}

/// Random blocks with a spread of magnitudes (each block its own scale, 2^-30..2^30).
fn random_blocks(rng: &mut Rng, blocks: usize) -> Vec<f32> {
    let mut x = Vec::with_capacity(blocks * 32);
    for _ in 0..blocks {
        let e = rng.below(61) as i32 - 30;
        let scale = 2f32.powi(e);
        for _ in 0..32 {
            x.push(rng.f32() * scale);
        }
    }
    x
}

#[test]
fn random_blocks_are_bit_identical_to_reference() {
    let mut rng = Rng::new(1234);
    let x = random_blocks(&mut rng, 100_003);
    for f in FORMATS {
        check_same(f, "random", &x);
    }
}

#[test]
fn edge_blocks_are_bit_identical_to_reference() {
    let mut blocks: Vec<(&str, Vec<f32>)> = vec![
        ("all zeros", vec![0.0; 32]),
        (
            "subnormal inputs with a finite scale",
            (0..32)
                .map(|i| if i == 5 { -1e-36 } else { i as f32 * 3e-40 })
                .collect(),
        ),
        ("negative zeros", vec![-0.0; 32]),
        (
            "one non-zero",
            (0..32).map(|i| if i == 17 { 0.75 } else { 0.0 }).collect(),
        ),
        (
            "one negative non-zero",
            (0..32).map(|i| if i == 3 { -3.5 } else { 0.0 }).collect(),
        ),
        (
            "largest value negative",
            (0..32)
                .map(|i| if i == 9 { -10.0 } else { (i as f32) * 0.25 })
                .collect(),
        ),
        (
            "largest value positive",
            (0..32)
                .map(|i| if i == 31 { 10.0 } else { -(i as f32) * 0.25 })
                .collect(),
        ),
        (
            "equal magnitudes, sign first negative",
            (0..32)
                .map(|i| if i % 2 == 0 { -2.0 } else { 2.0 })
                .collect(),
        ),
        (
            "subnormals only",
            (0..32).map(|i| f32::from_bits(1 + i * 12345)).collect(),
        ),
        (
            "subnormal and tiny normals",
            (0..32)
                .map(|i| {
                    f32::from_bits(0x0080_0000 + i * 99_999) * if i % 3 == 0 { -1.0 } else { 1.0 }
                })
                .collect(),
        ),
        (
            "normal with subnormals",
            (0..32)
                .map(|i| {
                    if i == 0 {
                        1.0
                    } else {
                        f32::from_bits(i * 1000)
                    }
                })
                .collect(),
        ),
        (
            "huge",
            (0..32).map(|i| f32::MAX / (i as f32 + 1.0)).collect(),
        ),
        (
            "largest magnitudes",
            (0..32)
                .map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX })
                .collect(),
        ),
        (
            "f16 overflow scale",
            (0..32).map(|i| 1e7 * (i as f32 - 16.0)).collect(),
        ),
        (
            "f16 subnormal scale",
            (0..32).map(|i| 1e-6 * (i as f32 - 16.0)).collect(),
        ),
    ];
    // Ties: values landing exactly on .5 after scaling (Q8_0: amax 127 makes id exactly 1).
    blocks.push((
        "q8 ties",
        (0..32)
            .map(|i| if i == 0 { 127.0 } else { i as f32 - 15.5 })
            .collect(),
    ));
    blocks.push((
        "q8 negative ties",
        (0..32)
            .map(|i| if i == 0 { -127.0 } else { 0.5 - i as f32 })
            .collect(),
    ));
    // Q4_0: max = -8 gives d = 1, id = 1: x + 8.5 lands on .5 and on integers.
    blocks.push((
        "q4 ties",
        (0..32)
            .map(|i| {
                if i == 0 {
                    -8.0
                } else {
                    (i as f32 - 16.0) * 0.5
                }
            })
            .collect(),
    ));
    blocks.push((
        "q4 near-integers",
        (0..32)
            .map(|i| {
                if i == 0 {
                    -8.0
                } else {
                    (i as f32 - 16.0) * 0.5 - f32::EPSILON * 4.0
                }
            })
            .collect(),
    ));
    // Values one ulp either side of .5 boundaries.
    blocks.push((
        "ulp neighbours of ties",
        (0..32)
            .map(|i| {
                if i == 0 {
                    127.0
                } else {
                    let v = (i as f32) - 16.5;
                    f32::from_bits((v.to_bits() as i64 + if i % 2 == 0 { 1 } else { -1 }) as u32)
                }
            })
            .collect(),
    ));
    let mut all = Vec::new();
    for (name, b) in &blocks {
        assert_eq!(b.len(), 32, "{name}");
        for f in FORMATS {
            check_same(f, name, b);
        }
        all.extend_from_slice(b);
    }
    // Together (odd block count, so the last pair is half-filled).
    if all.len() / 32 % 2 == 0 {
        all.extend_from_slice(&[0.5; 32]);
    }
    assert!(all.len() / 32 % 2 == 1);
    for f in FORMATS {
        check_same(f, "edge blocks together", &all);
    }
}

#[test]
fn known_layouts() {
    // Q8_0 of 0..31 scaled: amax 31 -> d = 31/127, q = round(x * 127/31).
    let x: Vec<f32> = (0..32).map(|i| i as f32).collect();
    let q8 = quant::quantize(gpu(), Format::Q8_0, "ramp", &x).unwrap();
    assert_eq!(q8.len(), 34);
    assert_eq!(u16::from_le_bytes([q8[0], q8[1]]), f32_to_f16(31.0 / 127.0));
    assert_eq!(q8[2 + 31] as i8, 127);
    assert_eq!(q8[2 + 1] as i8, 4); // 127/31 = 4.097
    // Q4_0: max = 31 -> d = -31/8; x = 0 -> q = 8, x = 31 -> q = 0 (clamped range 0..15).
    let q4 = quant::quantize(gpu(), Format::Q4_0, "ramp", &x).unwrap();
    assert_eq!(q4.len(), 18);
    assert_eq!(q4[2] & 15, 8);
    assert_eq!(q4[2 + 15] >> 4, 0);
    // GGML's nibble order: byte j holds q[j] (low) and q[j + 16] (high).
    let id = 1.0f32 / (31.0f32 / -8.0);
    let q: Vec<u8> = x.iter().map(|v| ((v * id + 8.5) as u8).min(15)).collect();
    for j in 0..16 {
        assert_eq!(q4[2 + j], q[j] | q[j + 16] << 4, "byte {j}");
    }
    assert_eq!(q4[3], 8 | 4 << 4); // q[1] = 8, q[17] = 4
}

#[test]
fn f16_conversion_rounds_to_nearest_even() {
    assert_eq!(f32_to_f16(1.0), 0x3c00);
    assert_eq!(f32_to_f16(-2.0), 0xc000);
    assert_eq!(f32_to_f16(65504.0), 0x7bff);
    assert_eq!(f32_to_f16(65519.0), 0x7bff);
    assert_eq!(f32_to_f16(65520.0), 0x7c00);
    assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
    assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000); // tie to even (0)
    assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 0x0002); // tie to even (2)
    assert_eq!(f32_to_f16(1.0 + 2f32.powi(-11)), 0x3c00); // tie to even
    assert_eq!(f32_to_f16(1.0 + 3.0 * 2f32.powi(-11)), 0x3c02);
    assert_eq!(f32_to_f16(-0.0), 0x8000);
    for h in 0..0x7c00u16 {
        assert_eq!(f32_to_f16(f16_to_f32(h)), h, "round trip {h:#x}");
    }
}

#[test]
fn non_finite_weights_are_a_clear_error() {
    for f in FORMATS {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = vec![0.5f32; 32 * 5];
            x[3 * 32 + 7] = bad;
            let e = quant::quantize(gpu(), f, "blk.0.attn_qkv.weight", &x)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("blk.0.attn_qkv.weight") && e.contains("block 3"),
                "{e}"
            );
            assert!(quant::quantize_ref(f, "w", &x).is_err());
            // The device path (data already on the GPU) reports it too.
            let t = gpu().upload(&x, &[x.len()]).unwrap();
            let e = quant::quantize_tensor(gpu(), f, "w", &t)
                .unwrap_err()
                .to_string();
            assert!(e.contains("block 3"), "{e}");
        }
        let e = quant::quantize(gpu(), f, "odd", &[1.0; 33])
            .unwrap_err()
            .to_string();
        assert!(e.contains("multiple of the block size"), "{e}");
    }
}
