// Subgroup matrix products with vec4 loads, for CPU adapters whose subgroups have 8 lanes
// (lavapipe), one kernel per stride pattern of a training step; matmul.rs `accepts` says which
// strides each takes, and `nt_variant` / `gemm_variant` choose them on the default kernel path.
//
// C[i,j] = (acc ? C[i,j] : 0) + sum_p A(i,p) * B(p,j) (+ bias[j] if has_bias), the contract,
// Params and epilogue of mm_sg (matmul_sg.wgsl) and mm_tile16x8, in the same order of additions
// (p from 0 to K, one at a time): on lavapipe all of them give the same bits. A and B are read
// as vec4, so the vec4 axis must be contiguous and the other strides multiples of 4:
//   mm_sg_nt: A and B along p (a_cs = b_rs = 1; K, a_rs, b_cs % 4 == 0): y = x.W^T.
//   mm_sg_nn: A along p, B along j (a_cs = b_cs = 1; K, a_rs, b_rs % 4 == 0): dx = dy.W.
//   mm_sg_tn: A along i, B along j (a_rs = b_cs = 1; a_cs, b_rs % 4 == 0; any K): dW = dy^T.x.
// Reads past M or N (clamped, or the rest of a vec4) only feed outputs that are not written.
//
// Layout as mm_sg: a subgroup computes a 32x32 tile, lane l holds columns j0+4l..j0+4l+3 of all
// 32 rows, and the rows of A reach the lanes by subgroupBroadcast. nt and nn load 4 steps of p
// per iteration (a lane: 4 vec4 of B and 4 vec4 of A, rows i0+l+8q); tn loads 2 (a lane: A at
// rows i0+4l..i0+4l+3 and B at its columns, per step), an odd last step paired with zeros.
//
// Why: on lavapipe a vec4 load costs one bounds-checked branch per component but shares the
// per-lane address and descriptor work, and taking 4 steps of p per iteration writes each
// accumulator (and its execution-mask blend and spill) once per 4 multiply-adds instead of
// once per one. Measured by `cargo run --release --example matmul_ab -- 5 mm_tile16x8 auto
// mm_sg` (one process, interleaved, 5 rounds, CPU time / 2 cores; wall clock in brackets),
// GFLOP/s on the 15 products of a training step of the default model (M = 1024 tokens):
//                 y = x.W^T          dx = dy.W          dW = dy^T.x
//   layer         tile16x8  sg_nt    tile16x8  sg_nn    tile16x8  sg_tn
//   qkv            6.2      14.9      6.3      17.3      6.8      21.1
//   attn proj      5.8      14.9      5.8      14.8      6.6      22.3
//   fc             6.3      15.6      6.8      19.0      6.7      21.7
//   fc proj        6.6      18.8      6.0      16.2      6.2      21.3
//   logits         6.1      15.2      7.0      19.7      6.9      20.0
//   total of the 15: 2.80x mm_tile16x8 (2.66-2.85) [2.87x, 2.74-3.18]; mm_sg alone 2.0x.
// Also measured (one or two runs each; runs differ by about 10% on this shared machine), none
// consistently better than the 32x32 tiles above: nt tiles of 16x32, 24x32, 40x32, 16x48,
// 48x16, 32x64 and 64x32; nn tiles of 16x32, 24x32, 40x32, 48x32, 64x32 and 16x64; tn tiles of
// 64x32 and 32x64; nt with 8 steps of p per iteration (0.8x); tn with 1 step per iteration
// (0.83x), 3 or 4; workgroups of 8 or 64 invocations.

// #include "matmul_common.wgsl"

// Invocations per workgroup: 4 subgroups of 8, one 32x32 tile each.
const SG_WG: u32 = 32u;

@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<f32>>;

// c + s.x * bx + s.y * by + s.z * bz + s.w * bw: four steps of p, in order.
fn step4(c: vec4<f32>, s: vec4<f32>, bx: vec4<f32>, by: vec4<f32>, bz: vec4<f32>,
         bw: vec4<f32>) -> vec4<f32> {
    return c + s.x * bx + s.y * by + s.z * bz + s.w * bw;
}

@compute @workgroup_size(SG_WG)
fn mm_sg_nt(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) l: u32) {
    let tile = wg_linear(wg, nwg) * (SG_WG / 8u) + sg;
    let tn = (p.n + 31u) / 32u;
    if (tile >= tn * ((p.m + 31u) / 32u)) {
        return;
    }
    let i0 = (tile / tn) * 32u;
    let j = (tile % tn) * 32u + 4u * l;
    let lm = p.m - 1u;
    let ln = p.n - 1u;
    // vec4 offsets of this lane's 4 columns of B and its 4 rows of A (i0 + l + 8q).
    let jb = vec4<u32>(min(j, ln), min(j + 1u, ln), min(j + 2u, ln), min(j + 3u, ln))
             * (p.b_cs / 4u);
    let ia = vec4<u32>(min(i0 + l, lm), min(i0 + l + 8u, lm), min(i0 + l + 16u, lm),
                       min(i0 + l + 24u, lm)) * (p.a_rs / 4u);
    var c0 = vec4<f32>(); var c1 = vec4<f32>(); var c2 = vec4<f32>(); var c3 = vec4<f32>();
    var c4 = vec4<f32>(); var c5 = vec4<f32>(); var c6 = vec4<f32>(); var c7 = vec4<f32>();
    var c8 = vec4<f32>(); var c9 = vec4<f32>(); var c10 = vec4<f32>(); var c11 = vec4<f32>();
    var c12 = vec4<f32>(); var c13 = vec4<f32>(); var c14 = vec4<f32>(); var c15 = vec4<f32>();
    var c16 = vec4<f32>(); var c17 = vec4<f32>(); var c18 = vec4<f32>(); var c19 = vec4<f32>();
    var c20 = vec4<f32>(); var c21 = vec4<f32>(); var c22 = vec4<f32>(); var c23 = vec4<f32>();
    var c24 = vec4<f32>(); var c25 = vec4<f32>(); var c26 = vec4<f32>(); var c27 = vec4<f32>();
    var c28 = vec4<f32>(); var c29 = vec4<f32>(); var c30 = vec4<f32>(); var c31 = vec4<f32>();
    for (var k4 = 0u; k4 < p.k / 4u; k4++) {
        // Column j + c at p = 4*k4 .. 4*k4 + 3; transposed, bx holds p = 4*k4 of the 4 columns.
        let b0 = B[jb.x + k4];
        let b1 = B[jb.y + k4];
        let b2 = B[jb.z + k4];
        let b3 = B[jb.w + k4];
        let bx = vec4<f32>(b0.x, b1.x, b2.x, b3.x);
        let by = vec4<f32>(b0.y, b1.y, b2.y, b3.y);
        let bz = vec4<f32>(b0.z, b1.z, b2.z, b3.z);
        let bw = vec4<f32>(b0.w, b1.w, b2.w, b3.w);
        let a0 = A[ia.x + k4];
        let a1 = A[ia.y + k4];
        let a2 = A[ia.z + k4];
        let a3 = A[ia.w + k4];
        c0 = step4(c0, subgroupBroadcast(a0, 0u), bx, by, bz, bw);
        c1 = step4(c1, subgroupBroadcast(a0, 1u), bx, by, bz, bw);
        c2 = step4(c2, subgroupBroadcast(a0, 2u), bx, by, bz, bw);
        c3 = step4(c3, subgroupBroadcast(a0, 3u), bx, by, bz, bw);
        c4 = step4(c4, subgroupBroadcast(a0, 4u), bx, by, bz, bw);
        c5 = step4(c5, subgroupBroadcast(a0, 5u), bx, by, bz, bw);
        c6 = step4(c6, subgroupBroadcast(a0, 6u), bx, by, bz, bw);
        c7 = step4(c7, subgroupBroadcast(a0, 7u), bx, by, bz, bw);
        c8 = step4(c8, subgroupBroadcast(a1, 0u), bx, by, bz, bw);
        c9 = step4(c9, subgroupBroadcast(a1, 1u), bx, by, bz, bw);
        c10 = step4(c10, subgroupBroadcast(a1, 2u), bx, by, bz, bw);
        c11 = step4(c11, subgroupBroadcast(a1, 3u), bx, by, bz, bw);
        c12 = step4(c12, subgroupBroadcast(a1, 4u), bx, by, bz, bw);
        c13 = step4(c13, subgroupBroadcast(a1, 5u), bx, by, bz, bw);
        c14 = step4(c14, subgroupBroadcast(a1, 6u), bx, by, bz, bw);
        c15 = step4(c15, subgroupBroadcast(a1, 7u), bx, by, bz, bw);
        c16 = step4(c16, subgroupBroadcast(a2, 0u), bx, by, bz, bw);
        c17 = step4(c17, subgroupBroadcast(a2, 1u), bx, by, bz, bw);
        c18 = step4(c18, subgroupBroadcast(a2, 2u), bx, by, bz, bw);
        c19 = step4(c19, subgroupBroadcast(a2, 3u), bx, by, bz, bw);
        c20 = step4(c20, subgroupBroadcast(a2, 4u), bx, by, bz, bw);
        c21 = step4(c21, subgroupBroadcast(a2, 5u), bx, by, bz, bw);
        c22 = step4(c22, subgroupBroadcast(a2, 6u), bx, by, bz, bw);
        c23 = step4(c23, subgroupBroadcast(a2, 7u), bx, by, bz, bw);
        c24 = step4(c24, subgroupBroadcast(a3, 0u), bx, by, bz, bw);
        c25 = step4(c25, subgroupBroadcast(a3, 1u), bx, by, bz, bw);
        c26 = step4(c26, subgroupBroadcast(a3, 2u), bx, by, bz, bw);
        c27 = step4(c27, subgroupBroadcast(a3, 3u), bx, by, bz, bw);
        c28 = step4(c28, subgroupBroadcast(a3, 4u), bx, by, bz, bw);
        c29 = step4(c29, subgroupBroadcast(a3, 5u), bx, by, bz, bw);
        c30 = step4(c30, subgroupBroadcast(a3, 6u), bx, by, bz, bw);
        c31 = step4(c31, subgroupBroadcast(a3, 7u), bx, by, bz, bw);
    }
    put4(i0 + 0u, j, c0);
    put4(i0 + 1u, j, c1);
    put4(i0 + 2u, j, c2);
    put4(i0 + 3u, j, c3);
    put4(i0 + 4u, j, c4);
    put4(i0 + 5u, j, c5);
    put4(i0 + 6u, j, c6);
    put4(i0 + 7u, j, c7);
    put4(i0 + 8u, j, c8);
    put4(i0 + 9u, j, c9);
    put4(i0 + 10u, j, c10);
    put4(i0 + 11u, j, c11);
    put4(i0 + 12u, j, c12);
    put4(i0 + 13u, j, c13);
    put4(i0 + 14u, j, c14);
    put4(i0 + 15u, j, c15);
    put4(i0 + 16u, j, c16);
    put4(i0 + 17u, j, c17);
    put4(i0 + 18u, j, c18);
    put4(i0 + 19u, j, c19);
    put4(i0 + 20u, j, c20);
    put4(i0 + 21u, j, c21);
    put4(i0 + 22u, j, c22);
    put4(i0 + 23u, j, c23);
    put4(i0 + 24u, j, c24);
    put4(i0 + 25u, j, c25);
    put4(i0 + 26u, j, c26);
    put4(i0 + 27u, j, c27);
    put4(i0 + 28u, j, c28);
    put4(i0 + 29u, j, c29);
    put4(i0 + 30u, j, c30);
    put4(i0 + 31u, j, c31);
}

@compute @workgroup_size(SG_WG)
fn mm_sg_nn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) l: u32) {
    let tile = wg_linear(wg, nwg) * (SG_WG / 8u) + sg;
    let tn = (p.n + 31u) / 32u;
    if (tile >= tn * ((p.m + 31u) / 32u)) {
        return;
    }
    let i0 = (tile / tn) * 32u;
    let j = (tile % tn) * 32u + 4u * l;
    let lm = p.m - 1u;
    // vec4 offset of this lane's 4 columns in a row of B (the last whole vec4 past N), and
    // of its 4 rows of A (i0 + l + 8q).
    let jb = min(j, p.n - 1u) / 4u;
    let bs = p.b_rs / 4u;
    let ia = vec4<u32>(min(i0 + l, lm), min(i0 + l + 8u, lm), min(i0 + l + 16u, lm),
                       min(i0 + l + 24u, lm)) * (p.a_rs / 4u);
    var c0 = vec4<f32>(); var c1 = vec4<f32>(); var c2 = vec4<f32>(); var c3 = vec4<f32>();
    var c4 = vec4<f32>(); var c5 = vec4<f32>(); var c6 = vec4<f32>(); var c7 = vec4<f32>();
    var c8 = vec4<f32>(); var c9 = vec4<f32>(); var c10 = vec4<f32>(); var c11 = vec4<f32>();
    var c12 = vec4<f32>(); var c13 = vec4<f32>(); var c14 = vec4<f32>(); var c15 = vec4<f32>();
    var c16 = vec4<f32>(); var c17 = vec4<f32>(); var c18 = vec4<f32>(); var c19 = vec4<f32>();
    var c20 = vec4<f32>(); var c21 = vec4<f32>(); var c22 = vec4<f32>(); var c23 = vec4<f32>();
    var c24 = vec4<f32>(); var c25 = vec4<f32>(); var c26 = vec4<f32>(); var c27 = vec4<f32>();
    var c28 = vec4<f32>(); var c29 = vec4<f32>(); var c30 = vec4<f32>(); var c31 = vec4<f32>();
    for (var k4 = 0u; k4 < p.k / 4u; k4++) {
        // Rows p = 4*k4 .. 4*k4 + 3 of B at this lane's 4 columns.
        let bo = 4u * k4 * bs + jb;
        let bx = B[bo];
        let by = B[bo + bs];
        let bz = B[bo + 2u * bs];
        let bw = B[bo + 3u * bs];
        let a0 = A[ia.x + k4];
        let a1 = A[ia.y + k4];
        let a2 = A[ia.z + k4];
        let a3 = A[ia.w + k4];
        c0 = step4(c0, subgroupBroadcast(a0, 0u), bx, by, bz, bw);
        c1 = step4(c1, subgroupBroadcast(a0, 1u), bx, by, bz, bw);
        c2 = step4(c2, subgroupBroadcast(a0, 2u), bx, by, bz, bw);
        c3 = step4(c3, subgroupBroadcast(a0, 3u), bx, by, bz, bw);
        c4 = step4(c4, subgroupBroadcast(a0, 4u), bx, by, bz, bw);
        c5 = step4(c5, subgroupBroadcast(a0, 5u), bx, by, bz, bw);
        c6 = step4(c6, subgroupBroadcast(a0, 6u), bx, by, bz, bw);
        c7 = step4(c7, subgroupBroadcast(a0, 7u), bx, by, bz, bw);
        c8 = step4(c8, subgroupBroadcast(a1, 0u), bx, by, bz, bw);
        c9 = step4(c9, subgroupBroadcast(a1, 1u), bx, by, bz, bw);
        c10 = step4(c10, subgroupBroadcast(a1, 2u), bx, by, bz, bw);
        c11 = step4(c11, subgroupBroadcast(a1, 3u), bx, by, bz, bw);
        c12 = step4(c12, subgroupBroadcast(a1, 4u), bx, by, bz, bw);
        c13 = step4(c13, subgroupBroadcast(a1, 5u), bx, by, bz, bw);
        c14 = step4(c14, subgroupBroadcast(a1, 6u), bx, by, bz, bw);
        c15 = step4(c15, subgroupBroadcast(a1, 7u), bx, by, bz, bw);
        c16 = step4(c16, subgroupBroadcast(a2, 0u), bx, by, bz, bw);
        c17 = step4(c17, subgroupBroadcast(a2, 1u), bx, by, bz, bw);
        c18 = step4(c18, subgroupBroadcast(a2, 2u), bx, by, bz, bw);
        c19 = step4(c19, subgroupBroadcast(a2, 3u), bx, by, bz, bw);
        c20 = step4(c20, subgroupBroadcast(a2, 4u), bx, by, bz, bw);
        c21 = step4(c21, subgroupBroadcast(a2, 5u), bx, by, bz, bw);
        c22 = step4(c22, subgroupBroadcast(a2, 6u), bx, by, bz, bw);
        c23 = step4(c23, subgroupBroadcast(a2, 7u), bx, by, bz, bw);
        c24 = step4(c24, subgroupBroadcast(a3, 0u), bx, by, bz, bw);
        c25 = step4(c25, subgroupBroadcast(a3, 1u), bx, by, bz, bw);
        c26 = step4(c26, subgroupBroadcast(a3, 2u), bx, by, bz, bw);
        c27 = step4(c27, subgroupBroadcast(a3, 3u), bx, by, bz, bw);
        c28 = step4(c28, subgroupBroadcast(a3, 4u), bx, by, bz, bw);
        c29 = step4(c29, subgroupBroadcast(a3, 5u), bx, by, bz, bw);
        c30 = step4(c30, subgroupBroadcast(a3, 6u), bx, by, bz, bw);
        c31 = step4(c31, subgroupBroadcast(a3, 7u), bx, by, bz, bw);
    }
    put4(i0 + 0u, j, c0);
    put4(i0 + 1u, j, c1);
    put4(i0 + 2u, j, c2);
    put4(i0 + 3u, j, c3);
    put4(i0 + 4u, j, c4);
    put4(i0 + 5u, j, c5);
    put4(i0 + 6u, j, c6);
    put4(i0 + 7u, j, c7);
    put4(i0 + 8u, j, c8);
    put4(i0 + 9u, j, c9);
    put4(i0 + 10u, j, c10);
    put4(i0 + 11u, j, c11);
    put4(i0 + 12u, j, c12);
    put4(i0 + 13u, j, c13);
    put4(i0 + 14u, j, c14);
    put4(i0 + 15u, j, c15);
    put4(i0 + 16u, j, c16);
    put4(i0 + 17u, j, c17);
    put4(i0 + 18u, j, c18);
    put4(i0 + 19u, j, c19);
    put4(i0 + 20u, j, c20);
    put4(i0 + 21u, j, c21);
    put4(i0 + 22u, j, c22);
    put4(i0 + 23u, j, c23);
    put4(i0 + 24u, j, c24);
    put4(i0 + 25u, j, c25);
    put4(i0 + 26u, j, c26);
    put4(i0 + 27u, j, c27);
    put4(i0 + 28u, j, c28);
    put4(i0 + 29u, j, c29);
    put4(i0 + 30u, j, c30);
    put4(i0 + 31u, j, c31);
}

@compute @workgroup_size(SG_WG)
fn mm_sg_tn(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(subgroup_id) sg: u32, @builtin(subgroup_invocation_id) l: u32) {
    let tile = wg_linear(wg, nwg) * (SG_WG / 8u) + sg;
    let tn = (p.n + 31u) / 32u;
    if (tile >= tn * ((p.m + 31u) / 32u)) {
        return;
    }
    let i0 = (tile / tn) * 32u;
    let j = (tile % tn) * 32u + 4u * l;
    // vec4 offsets of this lane's 4 rows of A (i0 + 4l ..) and 4 columns of B.
    let ia = min(i0 + 4u * l, p.m - 1u) / 4u;
    let jb = min(j, p.n - 1u) / 4u;
    let as4 = p.a_cs / 4u;
    let bs = p.b_rs / 4u;
    var c0 = vec4<f32>(); var c1 = vec4<f32>(); var c2 = vec4<f32>(); var c3 = vec4<f32>();
    var c4 = vec4<f32>(); var c5 = vec4<f32>(); var c6 = vec4<f32>(); var c7 = vec4<f32>();
    var c8 = vec4<f32>(); var c9 = vec4<f32>(); var c10 = vec4<f32>(); var c11 = vec4<f32>();
    var c12 = vec4<f32>(); var c13 = vec4<f32>(); var c14 = vec4<f32>(); var c15 = vec4<f32>();
    var c16 = vec4<f32>(); var c17 = vec4<f32>(); var c18 = vec4<f32>(); var c19 = vec4<f32>();
    var c20 = vec4<f32>(); var c21 = vec4<f32>(); var c22 = vec4<f32>(); var c23 = vec4<f32>();
    var c24 = vec4<f32>(); var c25 = vec4<f32>(); var c26 = vec4<f32>(); var c27 = vec4<f32>();
    var c28 = vec4<f32>(); var c29 = vec4<f32>(); var c30 = vec4<f32>(); var c31 = vec4<f32>();
    // Two steps of p per iteration; an odd last step pairs with zeros.
    for (var kk = 0u; kk < p.k; kk += 2u) {
        let a0 = A[kk * as4 + ia];
        let b0 = B[kk * bs + jb];
        let more = kk + 1u < p.k;
        let a1 = select(vec4<f32>(0.0), A[(kk + 1u) * as4 + ia], more);
        let b1 = select(vec4<f32>(0.0), B[(kk + 1u) * bs + jb], more);
        // Row r of the tile is lane r / 4's component r % 4.
        c0 = c0 + subgroupBroadcast(a0.x, 0u) * b0 + subgroupBroadcast(a1.x, 0u) * b1;
        c1 = c1 + subgroupBroadcast(a0.y, 0u) * b0 + subgroupBroadcast(a1.y, 0u) * b1;
        c2 = c2 + subgroupBroadcast(a0.z, 0u) * b0 + subgroupBroadcast(a1.z, 0u) * b1;
        c3 = c3 + subgroupBroadcast(a0.w, 0u) * b0 + subgroupBroadcast(a1.w, 0u) * b1;
        c4 = c4 + subgroupBroadcast(a0.x, 1u) * b0 + subgroupBroadcast(a1.x, 1u) * b1;
        c5 = c5 + subgroupBroadcast(a0.y, 1u) * b0 + subgroupBroadcast(a1.y, 1u) * b1;
        c6 = c6 + subgroupBroadcast(a0.z, 1u) * b0 + subgroupBroadcast(a1.z, 1u) * b1;
        c7 = c7 + subgroupBroadcast(a0.w, 1u) * b0 + subgroupBroadcast(a1.w, 1u) * b1;
        c8 = c8 + subgroupBroadcast(a0.x, 2u) * b0 + subgroupBroadcast(a1.x, 2u) * b1;
        c9 = c9 + subgroupBroadcast(a0.y, 2u) * b0 + subgroupBroadcast(a1.y, 2u) * b1;
        c10 = c10 + subgroupBroadcast(a0.z, 2u) * b0 + subgroupBroadcast(a1.z, 2u) * b1;
        c11 = c11 + subgroupBroadcast(a0.w, 2u) * b0 + subgroupBroadcast(a1.w, 2u) * b1;
        c12 = c12 + subgroupBroadcast(a0.x, 3u) * b0 + subgroupBroadcast(a1.x, 3u) * b1;
        c13 = c13 + subgroupBroadcast(a0.y, 3u) * b0 + subgroupBroadcast(a1.y, 3u) * b1;
        c14 = c14 + subgroupBroadcast(a0.z, 3u) * b0 + subgroupBroadcast(a1.z, 3u) * b1;
        c15 = c15 + subgroupBroadcast(a0.w, 3u) * b0 + subgroupBroadcast(a1.w, 3u) * b1;
        c16 = c16 + subgroupBroadcast(a0.x, 4u) * b0 + subgroupBroadcast(a1.x, 4u) * b1;
        c17 = c17 + subgroupBroadcast(a0.y, 4u) * b0 + subgroupBroadcast(a1.y, 4u) * b1;
        c18 = c18 + subgroupBroadcast(a0.z, 4u) * b0 + subgroupBroadcast(a1.z, 4u) * b1;
        c19 = c19 + subgroupBroadcast(a0.w, 4u) * b0 + subgroupBroadcast(a1.w, 4u) * b1;
        c20 = c20 + subgroupBroadcast(a0.x, 5u) * b0 + subgroupBroadcast(a1.x, 5u) * b1;
        c21 = c21 + subgroupBroadcast(a0.y, 5u) * b0 + subgroupBroadcast(a1.y, 5u) * b1;
        c22 = c22 + subgroupBroadcast(a0.z, 5u) * b0 + subgroupBroadcast(a1.z, 5u) * b1;
        c23 = c23 + subgroupBroadcast(a0.w, 5u) * b0 + subgroupBroadcast(a1.w, 5u) * b1;
        c24 = c24 + subgroupBroadcast(a0.x, 6u) * b0 + subgroupBroadcast(a1.x, 6u) * b1;
        c25 = c25 + subgroupBroadcast(a0.y, 6u) * b0 + subgroupBroadcast(a1.y, 6u) * b1;
        c26 = c26 + subgroupBroadcast(a0.z, 6u) * b0 + subgroupBroadcast(a1.z, 6u) * b1;
        c27 = c27 + subgroupBroadcast(a0.w, 6u) * b0 + subgroupBroadcast(a1.w, 6u) * b1;
        c28 = c28 + subgroupBroadcast(a0.x, 7u) * b0 + subgroupBroadcast(a1.x, 7u) * b1;
        c29 = c29 + subgroupBroadcast(a0.y, 7u) * b0 + subgroupBroadcast(a1.y, 7u) * b1;
        c30 = c30 + subgroupBroadcast(a0.z, 7u) * b0 + subgroupBroadcast(a1.z, 7u) * b1;
        c31 = c31 + subgroupBroadcast(a0.w, 7u) * b0 + subgroupBroadcast(a1.w, 7u) * b1;
    }
    put4(i0 + 0u, j, c0);
    put4(i0 + 1u, j, c1);
    put4(i0 + 2u, j, c2);
    put4(i0 + 3u, j, c3);
    put4(i0 + 4u, j, c4);
    put4(i0 + 5u, j, c5);
    put4(i0 + 6u, j, c6);
    put4(i0 + 7u, j, c7);
    put4(i0 + 8u, j, c8);
    put4(i0 + 9u, j, c9);
    put4(i0 + 10u, j, c10);
    put4(i0 + 11u, j, c11);
    put4(i0 + 12u, j, c12);
    put4(i0 + 13u, j, c13);
    put4(i0 + 14u, j, c14);
    put4(i0 + 15u, j, c15);
    put4(i0 + 16u, j, c16);
    put4(i0 + 17u, j, c17);
    put4(i0 + 18u, j, c18);
    put4(i0 + 19u, j, c19);
    put4(i0 + 20u, j, c20);
    put4(i0 + 21u, j, c21);
    put4(i0 + 22u, j, c22);
    put4(i0 + 23u, j, c23);
    put4(i0 + 24u, j, c24);
    put4(i0 + 25u, j, c25);
    put4(i0 + 26u, j, c26);
    put4(i0 + 27u, j, c27);
    put4(i0 + 28u, j, c28);
    put4(i0 + 29u, j, c29);
    put4(i0 + 30u, j, c30);
    put4(i0 + 31u, j, c31);
}
