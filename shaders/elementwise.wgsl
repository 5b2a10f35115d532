// Elementwise kernels over n elements (one invocation per element).
//
// gelu_fwd:     out = gelu(x), tanh approximation 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))
// gelu_bwd:     out = (acc ? out : 0) + gelu'(x) * y          (y = dout)
// add:          out = x + y                                    (residual forward)
// residual_bwd: out = (acc ? out : 0) + x; out2 = (acc ? out2 : 0) + x   (x = dout)
// scale:        out = a * out, in place (e.g. averaging gradients accumulated over micro-batches)

// #include "common.wgsl"
// #include "gelu.wgsl"

struct Params {
    n: u32,
    acc: u32,
    a: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> out2: array<f32>;

@compute @workgroup_size(WG)
fn gelu_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.n) {
        return;
    }
    out[i] = gelu(x[i]);
}

@compute @workgroup_size(WG)
fn gelu_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.n) {
        return;
    }
    var g = gelu_grad(x[i]) * y[i];
    if (p.acc != 0u) {
        g = out[i] + g;
    }
    out[i] = g;
}

@compute @workgroup_size(WG)
fn add(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
       @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.n) {
        return;
    }
    out[i] = x[i] + y[i];
}

@compute @workgroup_size(WG)
fn residual_bwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.n) {
        return;
    }
    var a = x[i];
    var b = x[i];
    if (p.acc != 0u) {
        a = out[i] + a;
        b = out2[i] + b;
    }
    out[i] = a;
    out2[i] = b;
}

@compute @workgroup_size(WG)
fn scale(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.n) {
        return;
    }
    out[i] = p.a * out[i];
}
