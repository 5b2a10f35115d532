// Fused softmax + cross-entropy. logits [R,V], targets [R] u32 (one invocation per row).
//
// xent: losses[r] = logsumexp(logits[r]) - logits[r, target[r]].
// xent_grad: the same losses, and dlogits[r,v] = (softmax(logits[r])[v] - (v == target)) *
//   grad_scale (grad_scale = 1/(B*T) for a mean loss).
// A target >= V gives a NaN loss (and NaN gradients).

// #include "common.wgsl"

struct Params {
    rows: u32,
    v: u32,
    grad_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

// Row max and sum of exp(logit - max) of row r (base = r * V).
fn row_stats(base: u32) -> vec2<f32> {
    var mx = -3.0e38;
    for (var v = 0u; v < p.v; v++) {
        mx = max(mx, logits[base + v]);
    }
    var sum = 0.0;
    for (var v = 0u; v < p.v; v++) {
        sum += exp(logits[base + v] - mx);
    }
    return vec2<f32>(mx, sum);
}

// Writes losses[r] and returns the row's (max, sum); NaN loss for a target outside V.
fn row_loss(r: u32) -> vec2<f32> {
    let base = r * p.v;
    let tgt = targets[r];
    let st = row_stats(base);
    if (tgt >= p.v) {
        losses[r] = nan_f32();
    } else {
        losses[r] = log(st.y) - (logits[base + tgt] - st.x);
    }
    return st;
}

@compute @workgroup_size(WG)
fn xent(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let r = wg_linear(wg, nwg) * WG + li;
    if (r >= p.rows) {
        return;
    }
    row_loss(r);
}

@compute @workgroup_size(WG)
fn xent_grad(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let r = wg_linear(wg, nwg) * WG + li;
    if (r >= p.rows) {
        return;
    }
    let st = row_loss(r);
    let base = r * p.v;
    let tgt = targets[r];
    if (tgt >= p.v) {
        for (var v = 0u; v < p.v; v++) {
            dlogits[base + v] = nan_f32();
        }
        return;
    }
    let inv = 1.0 / st.y;
    for (var v = 0u; v < p.v; v++) {
        var g = exp(logits[base + v] - st.x) * inv;
        if (v == tgt) {
            g -= 1.0;
        }
        dlogits[base + v] = g * p.grad_scale;
    }
}
