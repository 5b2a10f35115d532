// Subgroup matrix product for CPU adapters whose subgroups have 8 lanes (lavapipe on AVX2 and
// AVX-512 hosts), any strides and shapes. Chosen on the default kernel path where the vec4
// kernels of matmul_sg4.wgsl do not take the strides (matmul.rs: `nt_variant`, `gemm_variant`).
//
// mm_sg: C[i,j] = (acc ? C[i,j] : 0) + sum_p A(i,p) * B(p,j) (+ bias[j] if has_bias)
//   A(i,p) = A[i*a_rs + p*a_cs], B(p,j) = B[p*b_rs + j*b_cs], C [M,N] row-major: the contract,
//   Params and epilogue of mm_tile16x8 (matmul_tile.wgsl), and the same order of additions (p
//   runs 0..K for every output, from 0): on lavapipe the two give the same bits.
//
// Layout: each subgroup computes a 32x32 tile; lane l holds its 4 columns j0+4l..j0+4l+3 for
// all 32 rows (32 vec4 accumulators). Per step of p a lane loads its 4 values of B and the 4
// values of A at rows i0+l+8q; row r reaches every lane by subgroupBroadcast from lane r%8.
//
// Why: lavapipe compiles a subgroup into one loop over 8-wide vectors, and every storage load,
// uniform address or not, into 8 scalar loads, each with its own bounds check and branch (read
// from GALLIVM_DEBUG=asm with MESA_SHADER_CACHE_DISABLE=true): ~10 instructions per value
// loaded, against 3-5 per 8-lane multiply-add (mul, add, the execution-mask blend, and a spill
// once the accumulators outgrow the registers; fma() compiles to mul + add). What pays is
// multiply-adds per value loaded. mm_tile16x8 loads 24 values per lane per step for 128
// multiply-adds; here a lane loads 8 for the same 128, and a broadcast is one vpermd.
// Measured with examples/matmul_ab.rs on the 15 products of a training step (one process,
// interleaved, CPU time): 2.0x mm_tile16x8 (1.94-2.11 over 5 rounds). The vec4 kernels of
// matmul_sg4.wgsl go further where strides allow. Other subgroup tiles (rows x columns, same
// runs, wall clock): 8x8 0.86x mm_tile16x8, 16x8 1.1x, 16x32 1.5-1.9x, 16x64 1.6-1.9x, 24x32
// 1.7-2.0x, 32x16 1.9x, against 2.1x for 32x32 in the same runs.
// Loads made workgroup-uniform instead of broadcast (workgroup = 8 lanes, A(i,p) uniform)
// were 2-4x slower than mm_tile16x8: lavapipe loads uniform addresses lane by lane too.

// #include "matmul_common.wgsl"

// Invocations per workgroup: 4 subgroups of 8, one 32x32 tile each.
const SG_WG: u32 = 32u;

@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;

@compute @workgroup_size(SG_WG)
fn mm_sg(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
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
    // This lane's 4 columns of B and its 4 rows of A (i0 + l + 8q), clamped.
    let jb = vec4<u32>(min(j, ln), min(j + 1u, ln), min(j + 2u, ln), min(j + 3u, ln))
             * p.b_cs;
    let ia = vec4<u32>(min(i0 + l, lm), min(i0 + l + 8u, lm), min(i0 + l + 16u, lm),
                       min(i0 + l + 24u, lm)) * p.a_rs;
    var c0 = vec4<f32>(); var c1 = vec4<f32>(); var c2 = vec4<f32>(); var c3 = vec4<f32>();
    var c4 = vec4<f32>(); var c5 = vec4<f32>(); var c6 = vec4<f32>(); var c7 = vec4<f32>();
    var c8 = vec4<f32>(); var c9 = vec4<f32>(); var c10 = vec4<f32>(); var c11 = vec4<f32>();
    var c12 = vec4<f32>(); var c13 = vec4<f32>(); var c14 = vec4<f32>(); var c15 = vec4<f32>();
    var c16 = vec4<f32>(); var c17 = vec4<f32>(); var c18 = vec4<f32>(); var c19 = vec4<f32>();
    var c20 = vec4<f32>(); var c21 = vec4<f32>(); var c22 = vec4<f32>(); var c23 = vec4<f32>();
    var c24 = vec4<f32>(); var c25 = vec4<f32>(); var c26 = vec4<f32>(); var c27 = vec4<f32>();
    var c28 = vec4<f32>(); var c29 = vec4<f32>(); var c30 = vec4<f32>(); var c31 = vec4<f32>();
    for (var kk = 0u; kk < p.k; kk++) {
        let bo = kk * p.b_rs;
        let b = vec4<f32>(B[bo + jb.x], B[bo + jb.y], B[bo + jb.z], B[bo + jb.w]);
        let ao = kk * p.a_cs;
        let a = vec4<f32>(A[ia.x + ao], A[ia.y + ao], A[ia.z + ao], A[ia.w + ao]);
        // Row r of the tile is lane r % 8's element r / 8 of a.
        c0 += subgroupBroadcast(a.x, 0u) * b;
        c1 += subgroupBroadcast(a.x, 1u) * b;
        c2 += subgroupBroadcast(a.x, 2u) * b;
        c3 += subgroupBroadcast(a.x, 3u) * b;
        c4 += subgroupBroadcast(a.x, 4u) * b;
        c5 += subgroupBroadcast(a.x, 5u) * b;
        c6 += subgroupBroadcast(a.x, 6u) * b;
        c7 += subgroupBroadcast(a.x, 7u) * b;
        c8 += subgroupBroadcast(a.y, 0u) * b;
        c9 += subgroupBroadcast(a.y, 1u) * b;
        c10 += subgroupBroadcast(a.y, 2u) * b;
        c11 += subgroupBroadcast(a.y, 3u) * b;
        c12 += subgroupBroadcast(a.y, 4u) * b;
        c13 += subgroupBroadcast(a.y, 5u) * b;
        c14 += subgroupBroadcast(a.y, 6u) * b;
        c15 += subgroupBroadcast(a.y, 7u) * b;
        c16 += subgroupBroadcast(a.z, 0u) * b;
        c17 += subgroupBroadcast(a.z, 1u) * b;
        c18 += subgroupBroadcast(a.z, 2u) * b;
        c19 += subgroupBroadcast(a.z, 3u) * b;
        c20 += subgroupBroadcast(a.z, 4u) * b;
        c21 += subgroupBroadcast(a.z, 5u) * b;
        c22 += subgroupBroadcast(a.z, 6u) * b;
        c23 += subgroupBroadcast(a.z, 7u) * b;
        c24 += subgroupBroadcast(a.w, 0u) * b;
        c25 += subgroupBroadcast(a.w, 1u) * b;
        c26 += subgroupBroadcast(a.w, 2u) * b;
        c27 += subgroupBroadcast(a.w, 3u) * b;
        c28 += subgroupBroadcast(a.w, 4u) * b;
        c29 += subgroupBroadcast(a.w, 5u) * b;
        c30 += subgroupBroadcast(a.w, 6u) * b;
        c31 += subgroupBroadcast(a.w, 7u) * b;
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
