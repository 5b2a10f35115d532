// Fused softmax + cross-entropy. logits [R,V], targets [R] u32.
//
// xent (one invocation per row): losses[r] = logsumexp(logits[r]) - logits[r, target[r]];
//   if grad != 0: dlogits[r,v] = (softmax(logits[r])[v] - (v == target)) * grad_scale
//   (grad_scale = 1/(B*T) for a mean loss). A target >= V gives a NaN loss and NaN gradients.

struct Params {
    rows: u32,
    v: u32,
    grad: u32,
    grad_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> losses: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

@compute @workgroup_size(64)
fn xent(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let r = wg_linear(wg, nwg) * 64u + li;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.v;
    let tgt = targets[r];
    var mx = -3.0e38;
    for (var v = 0u; v < p.v; v++) {
        mx = max(mx, logits[base + v]);
    }
    var sum = 0.0;
    for (var v = 0u; v < p.v; v++) {
        sum += exp(logits[base + v] - mx);
    }
    if (tgt >= p.v) {
        losses[r] = nan_f32();
        if (p.grad != 0u) {
            for (var v = 0u; v < p.v; v++) {
                dlogits[base + v] = nan_f32();
            }
        }
        return;
    }
    losses[r] = log(sum) - (logits[base + tgt] - mx);
    if (p.grad != 0u) {
        let inv = 1.0 / sum;
        for (var v = 0u; v < p.v; v++) {
            var g = exp(logits[base + v] - mx) * inv;
            if (v == tgt) {
                g -= 1.0;
            }
            dlogits[base + v] = g * p.grad_scale;
        }
    }
}
