// Fast linear forward y = x.W^T (+ b) when K % 4 == 0: both operands are read as vec4 rows.
//
// mm_nt_vec4: x [M,K] as vec4 [M,K/4], W [N,K] as vec4 [N,K/4], y [M,N].
//   Each invocation computes a 4 (rows) x 4 (cols) block: per k-step 8 vec4 loads, 16 dot products.
//   Params and epilogue: matmul_common.wgsl (k = K, a multiple of 4; strides unused).

// #include "matmul_common.wgsl"

@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<f32>>;

@compute @workgroup_size(WG)
fn mm_nt_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * WG + li;
    let k4 = p.k / 4u;
    let tn = (p.n + 3u) / 4u;
    let tm = (p.m + 3u) / 4u;
    if (idx >= tm * tn) {
        return;
    }
    let i0 = (idx / tn) * 4u;
    let j0 = (idx % tn) * 4u;
    let ra = vec4<u32>(min(i0, p.m - 1u), min(i0 + 1u, p.m - 1u), min(i0 + 2u, p.m - 1u),
                       min(i0 + 3u, p.m - 1u)) * k4;
    let rb = vec4<u32>(min(j0, p.n - 1u), min(j0 + 1u, p.n - 1u), min(j0 + 2u, p.n - 1u),
                       min(j0 + 3u, p.n - 1u)) * k4;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < k4; kk++) {
        let a0 = A[ra.x + kk];
        let a1 = A[ra.y + kk];
        let a2 = A[ra.z + kk];
        let a3 = A[ra.w + kk];
        let b0 = B[rb.x + kk];
        let b1 = B[rb.y + kk];
        let b2 = B[rb.z + kk];
        let b3 = B[rb.w + kk];
        c0 += vec4<f32>(dot(a0, b0), dot(a0, b1), dot(a0, b2), dot(a0, b3));
        c1 += vec4<f32>(dot(a1, b0), dot(a1, b1), dot(a1, b2), dot(a1, b3));
        c2 += vec4<f32>(dot(a2, b0), dot(a2, b1), dot(a2, b2), dot(a2, b3));
        c3 += vec4<f32>(dot(a3, b0), dot(a3, b1), dot(a3, b2), dot(a3, b3));
    }
    var rows = array<vec4<f32>, 4>(c0, c1, c2, c3);
    for (var r = 0u; r < 4u; r++) {
        let i = i0 + r;
        if (i >= p.m) {
            break;
        }
        for (var c = 0u; c < 4u; c++) {
            let j = j0 + c;
            if (j >= p.n) {
                break;
            }
            store(i, j, rows[r][c]);
        }
    }
}

// mm_nt_rows8: the variant for CPU adapters (lavapipe/llvmpipe), which run 8 invocations in
// SIMD lanes: loads whose address is the same in every lane are one scalar load, others are
// gathers. Each workgroup takes 8 rows of x (the same for all its invocations, so their loads
// are uniform) and 64 columns (one per invocation); per k-step an invocation gathers one vec4
// of its W row and does 32 multiply-adds. Requires K % 4 == 0.
@compute @workgroup_size(WG)
fn mm_nt_rows8(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let wid = wg_linear(wg, nwg);
    let k4 = p.k / 4u;
    let tn = (p.n + WG - 1u) / WG;
    let i0 = (wid / tn) * 8u;
    if (i0 >= p.m) {
        return;
    }
    let j = (wid % tn) * WG + li;
    let rb = min(j, p.n - 1u) * k4;
    let last = p.m - 1u;
    let r0 = min(i0, last) * k4;
    let r1 = min(i0 + 1u, last) * k4;
    let r2 = min(i0 + 2u, last) * k4;
    let r3 = min(i0 + 3u, last) * k4;
    let r4 = min(i0 + 4u, last) * k4;
    let r5 = min(i0 + 5u, last) * k4;
    let r6 = min(i0 + 6u, last) * k4;
    let r7 = min(i0 + 7u, last) * k4;
    var c0 = 0.0;
    var c1 = 0.0;
    var c2 = 0.0;
    var c3 = 0.0;
    var c4 = 0.0;
    var c5 = 0.0;
    var c6 = 0.0;
    var c7 = 0.0;
    for (var kk = 0u; kk < k4; kk++) {
        let b = B[rb + kk];
        c0 += dot(A[r0 + kk], b);
        c1 += dot(A[r1 + kk], b);
        c2 += dot(A[r2 + kk], b);
        c3 += dot(A[r3 + kk], b);
        c4 += dot(A[r4 + kk], b);
        c5 += dot(A[r5 + kk], b);
        c6 += dot(A[r6 + kk], b);
        c7 += dot(A[r7 + kk], b);
    }
    if (j >= p.n) {
        return;
    }
    var rows = array<f32, 8>(c0, c1, c2, c3, c4, c5, c6, c7);
    for (var r = 0u; r < 8u; r++) {
        let i = i0 + r;
        if (i >= p.m) {
            break;
        }
        store(i, j, rows[r]);
    }
}
