// Matrix products and column sums, any strides (portable path; works for every shape).
//
// mm_generic: C[i,j] = (acc ? C[i,j] : 0) + sum_p A(i,p) * B(p,j) (+ bias[j] if has_bias)
//   A(i,p) = A[i*a_rs + p*a_cs]   shape [M,K]
//   B(p,j) = B[p*b_rs + j*b_cs]   shape [K,N]
//   C [M,N] row-major. Each invocation computes a 4x4 block; p runs 0..K in order.
//   Linear forward y = x.W^T + b: A = x (a_rs=K, a_cs=1), B = W^T (b_rs=1, b_cs=K).
//   dx = dy.W: A = dy (N', 1), B = W (K', 1).  dW = dy^T.x: A = dy^T (1, N'), B = x (K', 1).
// colsum: C[j] = (acc ? C[j] : 0) + sum_i A[i*N + j] for i in 0..M in order (bias gradient).

// #include "matmul_common.wgsl"

@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;

@compute @workgroup_size(WG)
fn mm_generic(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * WG + li;
    let tn = (p.n + 3u) / 4u;
    let tm = (p.m + 3u) / 4u;
    if (idx >= tm * tn) {
        return;
    }
    let i0 = (idx / tn) * 4u;
    let j0 = (idx % tn) * 4u;
    // Clamp reads to valid rows/columns; out-of-range outputs are computed but not written.
    let ia = vec4<u32>(min(i0, p.m - 1u), min(i0 + 1u, p.m - 1u), min(i0 + 2u, p.m - 1u),
                       min(i0 + 3u, p.m - 1u)) * p.a_rs;
    let jb = vec4<u32>(min(j0, p.n - 1u), min(j0 + 1u, p.n - 1u), min(j0 + 2u, p.n - 1u),
                       min(j0 + 3u, p.n - 1u)) * p.b_cs;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k; kk++) {
        let ao = kk * p.a_cs;
        let bo = kk * p.b_rs;
        let b = vec4<f32>(B[bo + jb.x], B[bo + jb.y], B[bo + jb.z], B[bo + jb.w]);
        c0 += A[ia.x + ao] * b;
        c1 += A[ia.y + ao] * b;
        c2 += A[ia.z + ao] * b;
        c3 += A[ia.w + ao] * b;
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

@compute @workgroup_size(WG)
fn colsum(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let j = wg_linear(wg, nwg) * WG + li;
    if (j >= p.n) {
        return;
    }
    var s = 0.0;
    for (var i = 0u; i < p.m; i++) {
        s += A[i * p.n + j];
    }
    if ((p.flags & 2u) != 0u) {
        s = C[j] + s;
    }
    C[j] = s;
}
