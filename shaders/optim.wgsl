// Reductions in a fixed order, global-norm clipping and AdamW.
//
// sum_chunks / sum_sq_chunks (one invocation per chunk): out[slot + i] = sum over
//   x[i*chunk .. (i+1)*chunk) of x (resp. x^2), in index order. Partial sums go to fixed slots.
// sum_final (one invocation): out[slot] = scale * sum_i partials[i], i in 0..n in order
//   (mean: scale = 1/count).
// norm_clip_final (one invocation): norm = sqrt(sum_i partials[i]), i in 0..n in order;
//   out[0] = norm, out[1] = norm > scale ? scale / norm : 1 (the clip factor; scale = max norm).
// adamw (one per element): g = x; adamw_clip: g = x * clip[1]. Then m = b1 m + (1-b1) g;
//   v = b2 v + (1-b2) g^2; out -= lr * ((m/bc1) / (sqrt(v/bc2) + eps) + wd * out),
//   bc1 = 1 - b1^t, bc2 = 1 - b2^t (out holds the parameters).

// #include "common.wgsl"

struct Params {
    n: u32,
    chunk: u32,
    slot: u32,
    scale: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    bc1: f32,
    bc2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> partials: array<f32>;
@group(0) @binding(3) var<storage, read> clip: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn sum_chunks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    let start = i * p.chunk;
    if (start >= p.n) {
        return;
    }
    let end = min(p.n, start + p.chunk);
    var s = 0.0;
    for (var k = start; k < end; k++) {
        s += x[k];
    }
    out[p.slot + i] = s;
}

@compute @workgroup_size(WG)
fn sum_sq_chunks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    let start = i * p.chunk;
    if (start >= p.n) {
        return;
    }
    let end = min(p.n, start + p.chunk);
    var s = 0.0;
    for (var k = start; k < end; k++) {
        s += x[k] * x[k];
    }
    out[p.slot + i] = s;
}

fn partials_total() -> f32 {
    var total = 0.0;
    for (var i = 0u; i < p.n; i++) {
        total += partials[i];
    }
    return total;
}

@compute @workgroup_size(1)
fn sum_final() {
    out[p.slot] = partials_total() * p.scale;
}

@compute @workgroup_size(1)
fn norm_clip_final() {
    let norm = sqrt(partials_total());
    out[0] = norm;
    if (norm > p.scale) {
        out[1] = p.scale / norm;
    } else {
        out[1] = 1.0;
    }
}

// The update of element i with gradient g.
fn adamw_update(i: u32, g: f32) {
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let mhat = mi / p.bc1;
    let vhat = vi / p.bc2;
    let w = out[i];
    out[i] = w - p.lr * (mhat / (sqrt(vhat) + p.eps) + p.wd * w);
}

@compute @workgroup_size(WG)
fn adamw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.n) {
        return;
    }
    adamw_update(i, x[i]);
}

@compute @workgroup_size(WG)
fn adamw_clip(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.n) {
        return;
    }
    adamw_update(i, x[i] * clip[1]);
}
