// Token + position embedding. tokens [B,T] u32, wte [V,C], wpe [Tmax,C], out [B,T,C].
//
// embed_fwd (one invocation per output element): out[b,t,c] = wte[tok[b,t],c] + wpe[t,c]
//   (NaN where tok >= V, so a bad id cannot pass silently).
// embed_bwd_wte (one per (v,c)): dwte[v,c] = (acc ? dwte : 0) + sum of dx[pos,c] over the
//   positions holding v, taken from a host-built index (offsets [V+1], positions ascending):
//   a deterministic gather, no atomics.
// embed_at (one per output element; the KV-cache path): tokens [n] at positions pos..pos+n,
//   out[i,c] = wte[tok[i],c] + wpe[pos+i,c] (t = n; NaN where tok >= V).
// embed_bwd_wpe (one per (t,c)): dwpe[t,c] = (acc ? dwpe : 0) + sum_b dx[b,t,c], b in order.

// #include "common.wgsl"

struct Params {
    b: u32,
    t: u32,
    c: u32,
    v: u32,
    acc: u32,
    pos: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
@group(0) @binding(3) var<storage, read> ta: array<f32>;
@group(0) @binding(4) var<storage, read> tb: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(WG)
fn embed_fwd(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.b * p.t * p.c) {
        return;
    }
    let c = i % p.c;
    let bt = i / p.c;
    let t = bt % p.t;
    let tok = ids[bt];
    if (tok >= p.v) {
        out[i] = nan_f32();
        return;
    }
    out[i] = ta[tok * p.c + c] + tb[t * p.c + c];
}

@compute @workgroup_size(WG)
fn embed_at(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.t * p.c) {
        return;
    }
    let c = i % p.c;
    let row = i / p.c;
    let tok = ids[row];
    if (tok >= p.v) {
        out[i] = nan_f32();
        return;
    }
    out[i] = ta[tok * p.c + c] + tb[(p.pos + row) * p.c + c];
}

@compute @workgroup_size(WG)
fn embed_bwd_wte(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.v * p.c) {
        return;
    }
    let c = i % p.c;
    let v = i / p.c;
    var s = 0.0;
    for (var k = ids[v]; k < ids[v + 1u]; k++) {
        s += ta[positions[k] * p.c + c];
    }
    if (p.acc != 0u) {
        s = out[i] + s;
    }
    out[i] = s;
}

@compute @workgroup_size(WG)
fn embed_bwd_wpe(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) li: u32) {
    let i = wg_linear(wg, nwg) * WG + li;
    if (i >= p.t * p.c) {
        return;
    }
    var s = 0.0;
    for (var b = 0u; b < p.b; b++) {
        s += ta[b * p.t * p.c + i];
    }
    if (p.acc != 0u) {
        s = out[i] + s;
    }
    out[i] = s;
}
