// What every matrix product shares: the parameter block, the bias and output bindings, and the
// epilogue C[i,j] = (acc ? C[i,j] : 0) + v (+ bias[j]), optionally fused with GELU:
//   flags bit 2 (GELU forward): C = v (+ bias), G = gelu(C) (the MLP's pre-activation and
//     activation in one pass);
//   flags bit 3 (GELU backward): C = (acc ? C : 0) + gelu'(G) * v (G holds the pre-activation).
// Dispatches without a GELU flag bind C as G (G is then never touched). Each product file
// declares its own A and B (bindings 1 and 2: f32 or vec4 arrays) and includes this file.
//
// Strided products read A(i,p) = A[i*a_rs + p*a_cs] and B(p,j) = B[p*b_rs + j*b_cs]; the vec4
// kernels read rows of K/4 vec4 and ignore the strides.

// #include "common.wgsl"
// #include "gelu.wgsl"

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_rs: u32,
    a_cs: u32,
    b_rs: u32,
    b_cs: u32,
    flags: u32, // bit 0: add bias, bit 1: accumulate into C, bit 2: GELU into G, bit 3: GELU'
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;
@group(0) @binding(5) var<storage, read_write> G: array<f32>;

// Writes one output element (bias and accumulation per flags); the caller checks i < M, j < N.
fn store(i: u32, j: u32, v: f32) {
    var x = v;
    if ((p.flags & 1u) != 0u) {
        x += bias[j];
    }
    let o = i * p.n + j;
    if ((p.flags & 4u) != 0u) {
        G[o] = gelu(x);
    }
    if ((p.flags & 8u) != 0u) {
        x = gelu_grad(G[o]) * x;
    }
    if ((p.flags & 2u) != 0u) {
        x = C[o] + x;
    }
    C[o] = x;
}

// Writes v to C[i, j..j+4), skipping elements outside [M, N].
fn put4(i: u32, j: u32, v: vec4<f32>) {
    if (i >= p.m) {
        return;
    }
    for (var c = 0u; c < 4u; c++) {
        if (j + c >= p.n) {
            return;
        }
        store(i, j + c, v[c]);
    }
}
