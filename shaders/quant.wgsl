// GGML Q8_0 and Q4_0 quantization (blocks of 32 f32), bit-identical to ggml's reference
// quantizers (quantize_row_q8_0_ref / quantize_row_q4_0_ref). All rounding-sensitive steps are
// done in integer arithmetic on the f32 bits, so the result does not depend on the adapter's
// division accuracy, FMA contraction or denormal flushing:
//   d = amax / 127 (Q8_0) or max / -8 (Q4_0), correctly rounded; id = 1/d correctly rounded
//   (0 when d == 0); fp16(d) round-to-nearest-even; x0 = x * id (one f32 product);
//   Q8_0: q = roundf(x0) (ties away from zero); Q4_0: q = min(15, trunc(f32(x0 + 8.5))).
//   When 1/d overflows (d subnormal), ggml on x86-64 stores q = 0 (float->int conversion of inf
//   or NaN gives 0x80000000, low byte 0); so do we.
//
// Layouts (little-endian bytes): Q8_0 block = f16 d, i8 qs[32] (34 bytes);
// Q4_0 block = f16 d, u8 qs[16] (18 bytes), byte j = q[j] | q[j+16] << 4.
// Blocks are not 4-byte aligned, so each invocation handles a pair of blocks (68 or 36 bytes,
// a whole number of u32 words); an odd last block pads its final word with zeros.
// Any NaN/Inf input sets flag[0] = min(flag[0], block index) (an integer atomic; deterministic).
//
// q8_0_quantize / q4_0_quantize: src = f32 bits [32*nb], dst = words, flag [1].
// q8_0_dequantize / q4_0_dequantize (one invocation per block): src = words, dst = f32 bits.

// #include "common.wgsl"

struct Params {
    nb: u32, // number of blocks
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(2) var<storage, read_write> dst: array<u32>;
@group(0) @binding(3) var<storage, read_write> flag: array<atomic<u32>>;

// Correctly rounded a / b for positive finite f32 bit patterns a, b (b != 0), any of them
// subnormal; returns f32 bits (0x7f800000 on overflow).
fn fdiv_rn(a: u32, b: u32) -> u32 {
    if (a == 0u) {
        return 0u;
    }
    var ea = i32(a >> 23u);
    var ma = a & 0x7fffffu;
    if (ea == 0) {
        let s = 23u - firstLeadingBit(ma);
        ma = ma << s;
        ea = 1 - i32(s);
    } else {
        ma = ma | 0x800000u;
    }
    var eb = i32(b >> 23u);
    var mb = b & 0x7fffffu;
    if (eb == 0) {
        let s = 23u - firstLeadingBit(mb);
        mb = mb << s;
        eb = 1 - i32(s);
    } else {
        mb = mb | 0x800000u;
    }
    // q = floor(ma / mb * 2^26), r = remainder (sticky).
    var q = 0u;
    var r = ma;
    for (var i = 0u; i < 27u; i++) {
        q = q << 1u;
        if (r >= mb) {
            r -= mb;
            q = q | 1u;
        }
        r = r << 1u;
    }
    // value = (q + frac) * 2^(ea - eb - 26)
    return round_pack(q, r != 0u, ea - eb - 26);
}

// Rounds (q + sticky fraction) * 2^e (q != 0, q < 2^31) to the nearest f32 (ties to even).
fn round_pack(q: u32, sticky: bool, e: i32) -> u32 {
    let l = i32(firstLeadingBit(q));
    // Right shift to 24 significant bits, or to the subnormal grid 2^-149.
    let shift = max(l - 23, -149 - e);
    var keep: u32;
    if (shift <= 0) {
        keep = q << u32(-shift);
    } else if (shift >= 32) {
        keep = 0u;
    } else {
        keep = q >> u32(shift);
        let rem = q & ((1u << u32(shift)) - 1u);
        let half = 1u << u32(shift - 1);
        if (rem > half || (rem == half && (sticky || (keep & 1u) == 1u))) {
            keep += 1u;
        }
    }
    // Exponent field minus one: the implicit bit of `keep` (2^23) adds the one back, and a
    // rounding carry to 2^24 moves into the exponent by itself.
    let ebits = e + shift + 23 + 126;
    if (keep == 0u) {
        return 0u;
    }
    if (ebits >= 254) {
        return 0x7f800000u;
    }
    return (u32(ebits) << 23u) + keep;
}

// f32 bits -> f16 bits, round to nearest even (as F16C / ggml's GGML_FP32_TO_FP16).
fn f32_to_f16(b: u32) -> u32 {
    let sign = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    let e = i32(a >> 23u);
    if (e - 112 >= 31) {
        return sign | 0x7c00u;
    }
    if (e - 112 >= 1) {
        let mant = a & 0x7fffffu;
        var h = (u32(e - 112) << 10u) | (mant >> 13u);
        let rem = mant & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u) == 1u)) {
            h += 1u;
        }
        return sign | h;
    }
    if (e == 0) {
        return sign;
    }
    let m = (a & 0x7fffffu) | 0x800000u;
    let shift = u32(126 - e);
    if (shift >= 25u) {
        return sign;
    }
    var keep = m >> shift;
    let rem = m & ((1u << shift) - 1u);
    let half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (keep & 1u) == 1u)) {
        keep += 1u;
    }
    return sign | keep;
}

// f16 bits -> f32 (exact).
fn f16_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    if (e == 0u) {
        if (m == 0u) {
            return bitcast<f32>(sign);
        }
        let s = 10u - firstLeadingBit(m);
        let mm = (m << s) & 0x3ffu;
        let ee = 113u - s;
        return bitcast<f32>(sign | (ee << 23u) | (mm << 13u));
    }
    if (e == 31u) {
        return bitcast<f32>(sign | 0x7f800000u | (m << 13u));
    }
    return bitcast<f32>(sign | ((e + 112u) << 23u) | (m << 13u));
}

// roundf(x) (halves away from zero) for |x| < 2^31, from the bits.
fn roundf_i(xb: u32) -> i32 {
    let a = xb & 0x7fffffffu;
    let e = a >> 23u;
    if (e < 126u) {
        return 0;
    }
    let m = (a & 0x7fffffu) | 0x800000u;
    var r: u32;
    if (e >= 150u) {
        r = m << (e - 150u);
    } else {
        let s = 150u - e;
        r = (m + (1u << (s - 1u))) >> s;
    }
    if ((xb & 0x80000000u) != 0u) {
        return -i32(r);
    }
    return i32(r);
}

// min(15, trunc(f32(x0 + 8.5))) computed exactly: y = x0 + 8.5 in units of 2^-25, then the
// float rounding of y can only lift floor(y) to n = floor(y) + 1 when y >= n - half the float
// spacing just below n.
fn q4_i(xb: u32) -> u32 {
    let a = xb & 0x7fffffffu;
    let e = i32(a >> 23u);
    var fx: i32 = 0; // floor(x0 * 2^25)
    let neg = (xb & 0x80000000u) != 0u;
    if (a != 0u) {
        var m = a & 0x7fffffu;
        var ee = e;
        if (e == 0) {
            ee = 1;
        } else {
            m = m | 0x800000u;
        }
        let sh = ee - 150 + 25; // x0 * 2^25 = m * 2^sh
        if (sh >= 0) {
            let v = i32(m << u32(sh));
            fx = select(v, -v, neg);
        } else if (sh > -32) {
            let s = u32(-sh);
            if (neg) {
                fx = -i32((m + (1u << s) - 1u) >> s);
            } else {
                fx = i32(m >> s);
            }
        } else {
            fx = select(0, -1, neg);
        }
    }
    let y = 17 * 16777216 + fx; // (8.5 + x0) * 2^25, floored
    if (y < 0) {
        return 0u;
    }
    let yu = u32(y);
    let q0 = yu >> 25u;
    let n = q0 + 1u;
    var c = 0u; // ceil(log2 n)
    if (n > 1u) {
        c = 32u - countLeadingZeros(n - 1u);
    }
    let t = (n << 25u) - (1u << c);
    var q = q0;
    if (yu >= t) {
        q = n;
    }
    return min(15u, q);
}

fn put_byte(w: ptr<function, array<u32, 17>>, i: u32, v: u32) {
    (*w)[i >> 2u] = (*w)[i >> 2u] | ((v & 0xffu) << ((i & 3u) * 8u));
}

fn check_block(blk: u32) -> bool {
    for (var j = 0u; j < 32u; j++) {
        if ((src[blk * 32u + j] & 0x7f800000u) == 0x7f800000u) {
            atomicMin(&flag[0], blk);
            return false;
        }
    }
    return true;
}

// Writes Q8_0 block `blk` at byte offset `off` of the local words.
fn q8_block(blk: u32, w: ptr<function, array<u32, 17>>, off: u32) {
    if (!check_block(blk)) {
        return;
    }
    var amax = 0u;
    for (var j = 0u; j < 32u; j++) {
        amax = max(amax, src[blk * 32u + j] & 0x7fffffffu);
    }
    let d = fdiv_rn(amax, 0x42fe0000u); // amax / 127
    var id = 0u;
    var inf = false;
    if (d != 0u) {
        id = fdiv_rn(0x3f800000u, d);
        inf = id >= 0x7f800000u;
    }
    let h = f32_to_f16(d);
    put_byte(w, off, h);
    put_byte(w, off + 1u, h >> 8u);
    for (var j = 0u; j < 32u; j++) {
        var q = 0;
        if (!inf) {
            let x0 = bitcast<f32>(src[blk * 32u + j]) * bitcast<f32>(id);
            q = roundf_i(bitcast<u32>(x0));
        }
        put_byte(w, off + 2u + j, u32(q));
    }
}

fn q4_block(blk: u32, w: ptr<function, array<u32, 17>>, off: u32) {
    if (!check_block(blk)) {
        return;
    }
    var amax = 0u;
    var mx = 0u;
    for (var j = 0u; j < 32u; j++) {
        let v = src[blk * 32u + j];
        if (amax < (v & 0x7fffffffu)) {
            amax = v & 0x7fffffffu;
            mx = v;
        }
    }
    // d = max / -8: magnitude amax / 8, sign opposite to max (max = +0 gives d = -0).
    let d = fdiv_rn(amax, 0x41000000u) | ((mx ^ 0x80000000u) & 0x80000000u);
    var id = 0u;
    var inf = false;
    if ((d & 0x7fffffffu) != 0u) {
        id = fdiv_rn(0x3f800000u, d & 0x7fffffffu) | (d & 0x80000000u);
        inf = (id & 0x7fffffffu) >= 0x7f800000u;
    }
    let h = f32_to_f16(d);
    put_byte(w, off, h);
    put_byte(w, off + 1u, h >> 8u);
    for (var j = 0u; j < 16u; j++) {
        var lo = 0u;
        var hi = 0u;
        if (!inf) {
            let x0 = bitcast<f32>(src[blk * 32u + j]) * bitcast<f32>(id);
            let x1 = bitcast<f32>(src[blk * 32u + 16u + j]) * bitcast<f32>(id);
            lo = q4_i(bitcast<u32>(x0));
            hi = q4_i(bitcast<u32>(x1));
        }
        put_byte(w, off + 2u + j, lo | (hi << 4u));
    }
}

@compute @workgroup_size(WG)
fn q8_0_quantize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let pair = wg_linear(wg, nwg) * WG + li;
    let b0 = pair * 2u;
    if (b0 >= p.nb) {
        return;
    }
    var w: array<u32, 17>;
    for (var i = 0u; i < 17u; i++) {
        w[i] = 0u;
    }
    q8_block(b0, &w, 0u);
    var nw = 9u;
    if (b0 + 1u < p.nb) {
        q8_block(b0 + 1u, &w, 34u);
        nw = 17u;
    }
    for (var i = 0u; i < nw; i++) {
        dst[pair * 17u + i] = w[i];
    }
}

@compute @workgroup_size(WG)
fn q4_0_quantize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let pair = wg_linear(wg, nwg) * WG + li;
    let b0 = pair * 2u;
    if (b0 >= p.nb) {
        return;
    }
    var w: array<u32, 17>;
    for (var i = 0u; i < 17u; i++) {
        w[i] = 0u;
    }
    q4_block(b0, &w, 0u);
    var nw = 5u;
    if (b0 + 1u < p.nb) {
        q4_block(b0 + 1u, &w, 18u);
        nw = 9u;
    }
    for (var i = 0u; i < nw; i++) {
        dst[pair * 9u + i] = w[i];
    }
}

fn get_byte(i: u32) -> u32 {
    return (src[i >> 2u] >> ((i & 3u) * 8u)) & 0xffu;
}

@compute @workgroup_size(WG)
fn q8_0_dequantize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let blk = wg_linear(wg, nwg) * WG + li;
    if (blk >= p.nb) {
        return;
    }
    let off = blk * 34u;
    let d = f16_to_f32(get_byte(off) | (get_byte(off + 1u) << 8u));
    for (var j = 0u; j < 32u; j++) {
        let q = (i32(get_byte(off + 2u + j)) << 24u) >> 24u;
        dst[blk * 32u + j] = bitcast<u32>(f32(q) * d);
    }
}

@compute @workgroup_size(WG)
fn q4_0_dequantize(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) li: u32) {
    let blk = wg_linear(wg, nwg) * WG + li;
    if (blk >= p.nb) {
        return;
    }
    let off = blk * 18u;
    let d = f16_to_f32(get_byte(off) | (get_byte(off + 1u) << 8u));
    for (var j = 0u; j < 16u; j++) {
        let b = get_byte(off + 2u + j);
        dst[blk * 32u + j] = bitcast<u32>(f32(i32(b & 15u) - 8) * d);
        dst[blk * 32u + 16u + j] = bitcast<u32>(f32(i32(b >> 4u) - 8) * d);
    }
}
