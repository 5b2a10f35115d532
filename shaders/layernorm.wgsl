// LayerNorm over the last dimension: x [R,C], eps, biased variance.
//
// ln_fwd (one invocation per row): mean[r], rstd[r] = 1/sqrt(var + eps),
//   y[r,c] = (x[r,c] - mean) * rstd * w[c] + b[c].
// ln_bwd_dx (one invocation per row): n = (x - mean) * rstd, dn = w * dout,
//   dx = (acc ? dx : 0) + (dn - mean(dn) - n * mean(dn * n)) * rstd.
// ln_bwd_dwdb (one invocation per column; rows summed in order 0..R):
//   dw[c] = (acc ? dw[c] : 0) + sum_r n[r,c] * dout[r,c];  db[c] = (acc ? db[c] : 0) + sum_r dout[r,c].

// #include "common.wgsl"

struct Params {
    rows: u32,
    cols: u32,
    eps: f32,
    acc: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> out2: array<f32>;
@group(0) @binding(7) var<storage, read_write> mean: array<f32>;
@group(0) @binding(8) var<storage, read_write> rstd: array<f32>;

@compute @workgroup_size(WG)
fn ln_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let r = wg_linear(wg, nwg) * WG + li;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let inv_c = 1.0 / f32(p.cols);
    var s = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        s += x[base + c];
    }
    let m = s * inv_c;
    var v = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let d = x[base + c] - m;
        v += d * d;
    }
    let rs = 1.0 / sqrt(v * inv_c + p.eps);
    for (var c = 0u; c < p.cols; c++) {
        out[base + c] = (x[base + c] - m) * rs * w[c] + b[c];
    }
    mean[r] = m;
    rstd[r] = rs;
}

@compute @workgroup_size(WG)
fn ln_bwd_dx(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let r = wg_linear(wg, nwg) * WG + li;
    if (r >= p.rows) {
        return;
    }
    let base = r * p.cols;
    let m = mean[r];
    let rs = rstd[r];
    var sdn = 0.0;
    var sdnn = 0.0;
    for (var c = 0u; c < p.cols; c++) {
        let n = (x[base + c] - m) * rs;
        let dn = w[c] * dout[base + c];
        sdn += dn;
        sdnn += dn * n;
    }
    let inv_c = 1.0 / f32(p.cols);
    let mdn = sdn * inv_c;
    let mdnn = sdnn * inv_c;
    for (var c = 0u; c < p.cols; c++) {
        let n = (x[base + c] - m) * rs;
        let dn = w[c] * dout[base + c];
        var v = (dn - mdn - n * mdnn) * rs;
        if (p.acc != 0u) {
            v = out[base + c] + v;
        }
        out[base + c] = v;
    }
}

@compute @workgroup_size(WG)
fn ln_bwd_dwdb(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let c = wg_linear(wg, nwg) * WG + li;
    if (c >= p.cols) {
        return;
    }
    var sw = 0.0;
    var sb = 0.0;
    for (var r = 0u; r < p.rows; r++) {
        let o = r * p.cols + c;
        let n = (x[o] - mean[r]) * rstd[r];
        sw += n * dout[o];
        sb += dout[o];
    }
    if (p.acc != 0u) {
        sw = out[c] + sw;
        sb = out2[c] + sb;
    }
    out[c] = sw;
    out2[c] = sb;
}
