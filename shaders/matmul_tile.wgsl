// Register-tiled matrix product for CPU adapters (lavapipe/llvmpipe), any strides and shapes.
//
// mm_tile16x8: C[i,j] = (acc ? C[i,j] : 0) + sum_p A(i,p) * B(p,j) (+ bias[j] if has_bias)
//   A(i,p) = A[i*a_rs + p*a_cs], B(p,j) = B[p*b_rs + j*b_cs], C [M,N] row-major: the same
//   contract, Params and epilogue as mm_generic (matmul_common.wgsl), so it serves y = x.W^T,
//   dx = dy.W and dW = dy^T.x alike. p runs 0..K in order for every output (fixed reduction order).
//
// Why this shape: lavapipe runs a workgroup on one thread, 8 invocations in SIMD lanes, and
// every storage load costs about the same whether its address is uniform or not (measured:
// keeping x rows workgroup-uniform, as mm_nt_rows8 does, was slower). What pays is outputs per
// load: each invocation computes a 16x8 block, so per k-step it loads 16 + 8 values and does 128
// multiply-adds (the 4x4 mm_generic: 8 loads, 16). 16x8 beat 8x8, 12x8, 16x4, 16x6, 24x8, 32x8,
// 8x16 and 16x16 on the training shapes; unrolling k made it slower. Workgroups of 32.
// Reads are clamped to valid rows/columns; out-of-range outputs are computed but not written.

// #include "matmul_common.wgsl"

// Invocations per workgroup of mm_tile16x8.
const TILE_WG: u32 = 32u;

@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;

@compute @workgroup_size(TILE_WG)
fn mm_tile16x8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * TILE_WG + li;
    let tn = (p.n + 7u) / 8u;
    let tm = (p.m + 15u) / 16u;
    if (idx >= tm * tn) {
        return;
    }
    let i0 = (idx / tn) * 16u;
    let j0 = (idx % tn) * 8u;
    let lm = p.m - 1u;
    let ln = p.n - 1u;
    // Column offsets into B (two groups of 4) and row offsets into A, clamped.
    let jb0 = vec4<u32>(min(j0, ln), min(j0 + 1u, ln), min(j0 + 2u, ln),
                        min(j0 + 3u, ln)) * p.b_cs;
    let jb1 = vec4<u32>(min(j0 + 4u, ln), min(j0 + 5u, ln), min(j0 + 6u, ln),
                        min(j0 + 7u, ln)) * p.b_cs;
    let ia0 = min(i0 + 0u, lm) * p.a_rs;
    let ia1 = min(i0 + 1u, lm) * p.a_rs;
    let ia2 = min(i0 + 2u, lm) * p.a_rs;
    let ia3 = min(i0 + 3u, lm) * p.a_rs;
    let ia4 = min(i0 + 4u, lm) * p.a_rs;
    let ia5 = min(i0 + 5u, lm) * p.a_rs;
    let ia6 = min(i0 + 6u, lm) * p.a_rs;
    let ia7 = min(i0 + 7u, lm) * p.a_rs;
    let ia8 = min(i0 + 8u, lm) * p.a_rs;
    let ia9 = min(i0 + 9u, lm) * p.a_rs;
    let ia10 = min(i0 + 10u, lm) * p.a_rs;
    let ia11 = min(i0 + 11u, lm) * p.a_rs;
    let ia12 = min(i0 + 12u, lm) * p.a_rs;
    let ia13 = min(i0 + 13u, lm) * p.a_rs;
    let ia14 = min(i0 + 14u, lm) * p.a_rs;
    let ia15 = min(i0 + 15u, lm) * p.a_rs;
    // Row r of the block: columns 0..3 in c{r}a, 4..7 in c{r}b.
    var c0a = vec4<f32>(0.0);
    var c0b = vec4<f32>(0.0);
    var c1a = vec4<f32>(0.0);
    var c1b = vec4<f32>(0.0);
    var c2a = vec4<f32>(0.0);
    var c2b = vec4<f32>(0.0);
    var c3a = vec4<f32>(0.0);
    var c3b = vec4<f32>(0.0);
    var c4a = vec4<f32>(0.0);
    var c4b = vec4<f32>(0.0);
    var c5a = vec4<f32>(0.0);
    var c5b = vec4<f32>(0.0);
    var c6a = vec4<f32>(0.0);
    var c6b = vec4<f32>(0.0);
    var c7a = vec4<f32>(0.0);
    var c7b = vec4<f32>(0.0);
    var c8a = vec4<f32>(0.0);
    var c8b = vec4<f32>(0.0);
    var c9a = vec4<f32>(0.0);
    var c9b = vec4<f32>(0.0);
    var c10a = vec4<f32>(0.0);
    var c10b = vec4<f32>(0.0);
    var c11a = vec4<f32>(0.0);
    var c11b = vec4<f32>(0.0);
    var c12a = vec4<f32>(0.0);
    var c12b = vec4<f32>(0.0);
    var c13a = vec4<f32>(0.0);
    var c13b = vec4<f32>(0.0);
    var c14a = vec4<f32>(0.0);
    var c14b = vec4<f32>(0.0);
    var c15a = vec4<f32>(0.0);
    var c15b = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let ao = kk * p.a_cs;
        let bo = kk * p.b_rs;
        let b0 = vec4<f32>(B[bo + jb0.x], B[bo + jb0.y], B[bo + jb0.z], B[bo + jb0.w]);
        let b1 = vec4<f32>(B[bo + jb1.x], B[bo + jb1.y], B[bo + jb1.z], B[bo + jb1.w]);
        let a0 = A[ia0 + ao];
        c0a += a0 * b0;
        c0b += a0 * b1;
        let a1 = A[ia1 + ao];
        c1a += a1 * b0;
        c1b += a1 * b1;
        let a2 = A[ia2 + ao];
        c2a += a2 * b0;
        c2b += a2 * b1;
        let a3 = A[ia3 + ao];
        c3a += a3 * b0;
        c3b += a3 * b1;
        let a4 = A[ia4 + ao];
        c4a += a4 * b0;
        c4b += a4 * b1;
        let a5 = A[ia5 + ao];
        c5a += a5 * b0;
        c5b += a5 * b1;
        let a6 = A[ia6 + ao];
        c6a += a6 * b0;
        c6b += a6 * b1;
        let a7 = A[ia7 + ao];
        c7a += a7 * b0;
        c7b += a7 * b1;
        let a8 = A[ia8 + ao];
        c8a += a8 * b0;
        c8b += a8 * b1;
        let a9 = A[ia9 + ao];
        c9a += a9 * b0;
        c9b += a9 * b1;
        let a10 = A[ia10 + ao];
        c10a += a10 * b0;
        c10b += a10 * b1;
        let a11 = A[ia11 + ao];
        c11a += a11 * b0;
        c11b += a11 * b1;
        let a12 = A[ia12 + ao];
        c12a += a12 * b0;
        c12b += a12 * b1;
        let a13 = A[ia13 + ao];
        c13a += a13 * b0;
        c13b += a13 * b1;
        let a14 = A[ia14 + ao];
        c14a += a14 * b0;
        c14b += a14 * b1;
        let a15 = A[ia15 + ao];
        c15a += a15 * b0;
        c15b += a15 * b1;
    }
    // Stores with constant indices only: the first version copied the accumulators into an
    // array indexed in a loop, which measured 10-30% slower on lavapipe (noisy A/B runs).
    put4(i0 + 0u, j0, c0a);
    put4(i0 + 0u, j0 + 4u, c0b);
    put4(i0 + 1u, j0, c1a);
    put4(i0 + 1u, j0 + 4u, c1b);
    put4(i0 + 2u, j0, c2a);
    put4(i0 + 2u, j0 + 4u, c2b);
    put4(i0 + 3u, j0, c3a);
    put4(i0 + 3u, j0 + 4u, c3b);
    put4(i0 + 4u, j0, c4a);
    put4(i0 + 4u, j0 + 4u, c4b);
    put4(i0 + 5u, j0, c5a);
    put4(i0 + 5u, j0 + 4u, c5b);
    put4(i0 + 6u, j0, c6a);
    put4(i0 + 6u, j0 + 4u, c6b);
    put4(i0 + 7u, j0, c7a);
    put4(i0 + 7u, j0 + 4u, c7b);
    put4(i0 + 8u, j0, c8a);
    put4(i0 + 8u, j0 + 4u, c8b);
    put4(i0 + 9u, j0, c9a);
    put4(i0 + 9u, j0 + 4u, c9b);
    put4(i0 + 10u, j0, c10a);
    put4(i0 + 10u, j0 + 4u, c10b);
    put4(i0 + 11u, j0, c11a);
    put4(i0 + 11u, j0 + 4u, c11b);
    put4(i0 + 12u, j0, c12a);
    put4(i0 + 12u, j0 + 4u, c12b);
    put4(i0 + 13u, j0, c13a);
    put4(i0 + 13u, j0 + 4u, c13b);
    put4(i0 + 14u, j0, c14a);
    put4(i0 + 14u, j0 + 4u, c14b);
    put4(i0 + 15u, j0, c15a);
    put4(i0 + 15u, j0 + 4u, c15b);
}
