// Reductions in a fixed order, global-norm clipping and AdamW.
//
// sum_chunks (one invocation per chunk): out[slot + i] = sum over x[i*chunk .. (i+1)*chunk) of
//   x (mode 0) or x^2 (mode 1), in index order. Partial sums go to fixed slots.
// sum_final (one invocation): total = sum_i aux[i], i in 0..n in order;
//   mode 0: out[slot] = total * scale (mean = scale 1/count);
//   mode 1: out[0] = norm = sqrt(total), out[1] = norm > scale ? scale / norm : 1 (clip factor,
//   scale = max norm).
// adamw (one per element): g = x * (mode == 1 ? aux[1] : 1); m = b1 m + (1-b1) g;
//   v = b2 v + (1-b2) g^2; p -= lr * ((m/bc1) / (sqrt(v/bc2) + eps) + wd * p),
//   bc1 = 1 - b1^t, bc2 = 1 - b2^t.

struct Params {
    n: u32,
    chunk: u32,
    mode: u32,
    slot: u32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    wd: f32,
    bc1: f32,
    bc2: f32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> aux: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(64)
fn sum_chunks(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * 64u + li;
    let start = i * p.chunk;
    if (start >= p.n) {
        return;
    }
    let end = min(p.n, start + p.chunk);
    var s = 0.0;
    if (p.mode == 1u) {
        for (var k = start; k < end; k++) {
            s += x[k] * x[k];
        }
    } else {
        for (var k = start; k < end; k++) {
            s += x[k];
        }
    }
    out[p.slot + i] = s;
}

@compute @workgroup_size(1)
fn sum_final() {
    var total = 0.0;
    for (var i = 0u; i < p.n; i++) {
        total += aux[i];
    }
    if (p.mode == 1u) {
        let norm = sqrt(total);
        out[0] = norm;
        if (norm > p.scale) {
            out[1] = p.scale / norm;
        } else {
            out[1] = 1.0;
        }
    } else {
        out[p.slot] = total * p.scale;
    }
}

@compute @workgroup_size(64)
fn adamw(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * 64u + li;
    if (i >= p.n) {
        return;
    }
    var g = x[i];
    if (p.mode == 1u) {
        g *= aux[1];
    }
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let mhat = mi / p.bc1;
    let vhat = vi / p.bc2;
    let w = out[i];
    out[i] = w - p.lr * (mhat / (sqrt(vhat) + p.eps) + p.wd * w);
}
