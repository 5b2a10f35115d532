// Causal multi-head self-attention (GPT-2), softmax inside.
// qkv [B,T,3C]: Q, K, V at channel offsets 0, C, 2C; head h at [h*hs, (h+1)*hs), hs = C/NH.
// P, dS [B,NH,T,T] (row t holds key positions t2; entries t2 > t are written as 0).
//
// attn_fwd (one invocation per (b,h,t)): S = scale * Q.K^T (t2 <= t), P = softmax(S),
//   out[b,t,h*hs+d] = sum_t2 P[t,t2] V[t2,d].
// attn_bwd_q (one per (b,h,t)): dP = dO.V^T, dS = P * (dP - sum_t2 dP*P), dQ = scale * dS.K.
// attn_bwd_kv (one per (b,h,t2)): dK = scale * dS^T.Q, dV = P^T.dO  (sums over t >= t2 in order).
// dqkv is fully written: Q part by attn_bwd_q, K and V parts by attn_bwd_kv.
// attn_decode (one per (i,h), i < n): the KV-cache path. qkv is a cache [T,3C] of qkv rows
//   (rows 0..pos+n written); out [n,C]. Row i is the new position q = pos+i, attending to the
//   cached rows t2 <= q: out[i,h*hs+d] = sum_t2 softmax_t2(scale * Q[q].K[t2]) V[t2,d]
//   (two passes: the maximum, then exp-sums and the weighted V accumulated in out).

// #include "common.wgsl"

struct Params {
    b: u32,
    t: u32,
    c: u32,
    nh: u32,
    scale: f32,
    pos: u32,
    n: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> P: array<f32>;
@group(0) @binding(5) var<storage, read_write> dS: array<f32>;

@compute @workgroup_size(WG)
fn attn_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * WG + li;
    if (idx >= p.b * p.nh * p.t) {
        return;
    }
    let t = idx % p.t;
    let bh = idx / p.t;
    let h = bh % p.nh;
    let b = bh / p.nh;
    let hs = p.c / p.nh;
    let c3 = 3u * p.c;
    let q = (b * p.t + t) * c3 + h * hs;
    let kbase = b * p.t * c3 + p.c + h * hs;
    let row = idx * p.t;
    var mx = -3.0e38;
    for (var t2 = 0u; t2 <= t; t2++) {
        let k = kbase + t2 * c3;
        var s = 0.0;
        for (var d = 0u; d < hs; d++) {
            s += qkv[q + d] * qkv[k + d];
        }
        s *= p.scale;
        P[row + t2] = s;
        mx = max(mx, s);
    }
    var sum = 0.0;
    for (var t2 = 0u; t2 <= t; t2++) {
        let e = exp(P[row + t2] - mx);
        P[row + t2] = e;
        sum += e;
    }
    let inv = 1.0 / sum;
    for (var t2 = 0u; t2 < p.t; t2++) {
        if (t2 <= t) {
            P[row + t2] = P[row + t2] * inv;
        } else {
            P[row + t2] = 0.0;
        }
    }
    let vbase = b * p.t * c3 + 2u * p.c + h * hs;
    let o = (b * p.t + t) * p.c + h * hs;
    for (var d = 0u; d < hs; d++) {
        var acc = 0.0;
        for (var t2 = 0u; t2 <= t; t2++) {
            acc += P[row + t2] * qkv[vbase + t2 * c3 + d];
        }
        out[o + d] = acc;
    }
}

@compute @workgroup_size(WG)
fn attn_bwd_q(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * WG + li;
    if (idx >= p.b * p.nh * p.t) {
        return;
    }
    let t = idx % p.t;
    let bh = idx / p.t;
    let h = bh % p.nh;
    let b = bh / p.nh;
    let hs = p.c / p.nh;
    let c3 = 3u * p.c;
    let row = idx * p.t;
    let o = (b * p.t + t) * p.c + h * hs;
    let vbase = b * p.t * c3 + 2u * p.c + h * hs;
    var rowdot = 0.0;
    for (var t2 = 0u; t2 <= t; t2++) {
        var dp = 0.0;
        for (var d = 0u; d < hs; d++) {
            dp += dout[o + d] * qkv[vbase + t2 * c3 + d];
        }
        dS[row + t2] = dp;
        rowdot += dp * P[row + t2];
    }
    for (var t2 = 0u; t2 < p.t; t2++) {
        if (t2 <= t) {
            dS[row + t2] = P[row + t2] * (dS[row + t2] - rowdot);
        } else {
            dS[row + t2] = 0.0;
        }
    }
    let kbase = b * p.t * c3 + p.c + h * hs;
    let q = (b * p.t + t) * c3 + h * hs;
    for (var d = 0u; d < hs; d++) {
        var acc = 0.0;
        for (var t2 = 0u; t2 <= t; t2++) {
            acc += dS[row + t2] * qkv[kbase + t2 * c3 + d];
        }
        out[q + d] = acc * p.scale;
    }
}

@compute @workgroup_size(WG)
fn attn_bwd_kv(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * WG + li;
    if (idx >= p.b * p.nh * p.t) {
        return;
    }
    let t2 = idx % p.t;
    let bh = idx / p.t;
    let h = bh % p.nh;
    let b = bh / p.nh;
    let hs = p.c / p.nh;
    let c3 = 3u * p.c;
    let qbase = b * p.t * c3 + h * hs;
    let obase = b * p.t * p.c + h * hs;
    let kv = (b * p.t + t2) * c3 + h * hs;
    for (var d = 0u; d < hs; d++) {
        var dk = 0.0;
        var dv = 0.0;
        for (var t = t2; t < p.t; t++) {
            let r = (bh * p.t + t) * p.t + t2;
            dk += dS[r] * qkv[qbase + t * c3 + d];
            dv += P[r] * dout[obase + t * p.c + d];
        }
        out[kv + p.c + d] = dk * p.scale;
        out[kv + 2u * p.c + d] = dv;
    }
}

@compute @workgroup_size(WG)
fn attn_decode(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) li: u32) {
    let idx = wg_linear(wg, nwg) * WG + li;
    if (idx >= p.n * p.nh) {
        return;
    }
    let h = idx % p.nh;
    let i = idx / p.nh;
    let qpos = p.pos + i;
    let hs = p.c / p.nh;
    let c3 = 3u * p.c;
    let q = qpos * c3 + h * hs;
    let kbase = p.c + h * hs;
    let vbase = 2u * p.c + h * hs;
    let o = i * p.c + h * hs;
    var mx = -3.0e38;
    for (var t2 = 0u; t2 <= qpos; t2++) {
        var s = 0.0;
        for (var d = 0u; d < hs; d++) {
            s += qkv[q + d] * qkv[kbase + t2 * c3 + d];
        }
        mx = max(mx, s * p.scale);
    }
    for (var d = 0u; d < hs; d++) {
        out[o + d] = 0.0;
    }
    var sum = 0.0;
    for (var t2 = 0u; t2 <= qpos; t2++) {
        var s = 0.0;
        for (var d = 0u; d < hs; d++) {
            s += qkv[q + d] * qkv[kbase + t2 * c3 + d];
        }
        let e = exp(s * p.scale - mx);
        sum += e;
        for (var d = 0u; d < hs; d++) {
            out[o + d] += e * qkv[vbase + t2 * c3 + d];
        }
    }
    let inv = 1.0 / sum;
    for (var d = 0u; d < hs; d++) {
        out[o + d] = out[o + d] * inv;
    }
}
