// Fast linear forward y = x.W^T (+ b) when K % 4 == 0: both operands are read as vec4 rows.
//
// mm_nt_vec4: x [M,K] as vec4 [M,K/4], W [N,K] as vec4 [N,K/4], y [M,N].
//   Each invocation computes a 4 (rows) x 4 (cols) block: per k-step 8 vec4 loads, 16 dot products.
//   flags: bit 0 add bias, bit 1 accumulate into y.

struct Params {
    m: u32,
    n: u32,
    k4: u32,
    flags: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> A: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;

@compute @workgroup_size(64)
fn mm_nt_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * 64u + li;
    let tn = (p.n + 3u) / 4u;
    let tm = (p.m + 3u) / 4u;
    if (idx >= tm * tn) {
        return;
    }
    let i0 = (idx / tn) * 4u;
    let j0 = (idx % tn) * 4u;
    let ra = vec4<u32>(min(i0, p.m - 1u), min(i0 + 1u, p.m - 1u), min(i0 + 2u, p.m - 1u),
                       min(i0 + 3u, p.m - 1u)) * p.k4;
    let rb = vec4<u32>(min(j0, p.n - 1u), min(j0 + 1u, p.n - 1u), min(j0 + 2u, p.n - 1u),
                       min(j0 + 3u, p.n - 1u)) * p.k4;
    var c0 = vec4<f32>(0.0);
    var c1 = vec4<f32>(0.0);
    var c2 = vec4<f32>(0.0);
    var c3 = vec4<f32>(0.0);
    for (var kk = 0u; kk < p.k4; kk++) {
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
            var v = rows[r][c];
            if ((p.flags & 1u) != 0u) {
                v += bias[j];
            }
            let o = i * p.n + j;
            if ((p.flags & 2u) != 0u) {
                v = C[o] + v;
            }
            C[o] = v;
        }
    }
}
