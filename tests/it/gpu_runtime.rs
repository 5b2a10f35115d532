//! Runtime: adapter report, errors instead of panics for bad shapes, work split beyond the
//! per-dimension workgroup limit, batched readback.

use crate::gpu_util::*;
use pai::gpu::ops::{self, QUANT_KERNELS, TRAIN_KERNELS};
use pai::gpu::{Gpu, doctor, kernel_sources};

/// The GPU functions the tests call.
mod k {
    pub use pai::gpu::ops::elementwise::{add, gelu};
    pub use pai::gpu::ops::matmul::{gemm, matmul};
    pub use pai::gpu::ops::optim::adamw;
}

#[test]
fn doctor_lists_adapters_and_marks_the_chosen_one() {
    let r = doctor::report(None);
    assert!(
        r.ok(),
        "lavapipe (or a GPU) must be present for the tests: {r}"
    );
    let i = r.chosen.unwrap();
    assert!(r.adapters[i].chosen);
    assert_eq!(r.adapters.iter().filter(|a| a.chosen).count(), 1);
    assert_eq!(
        r.adapters[i].name,
        gpu().info.name,
        "doctor and Gpu::new agree"
    );
    let json = serde_json::to_value(&r).unwrap();
    let l = &json["adapters"][i]["limits"];
    assert!(l["max_storage_buffer_binding_size"].as_u64().unwrap() >= 128 << 20);
    assert!(l["max_compute_workgroups_per_dimension"].as_u64().unwrap() >= 65535);
    let text = r.to_string();
    assert!(
        text.contains("pai uses: ") && text.contains(&r.adapters[i].name),
        "{text}"
    );

    let r = doctor::report(Some("no-such-adapter-xyz"));
    assert!(!r.ok());
    assert!(r.to_string().contains("no-such-adapter-xyz"));
}

#[test]
fn unknown_adapter_name_is_a_clear_error() {
    let e = Gpu::new(Some("no-such-adapter-xyz"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no adapter matches") && e.contains("available"),
        "{e}"
    );
}

#[test]
fn bad_shapes_are_errors_not_panics() {
    let g = gpu();
    let x = g.zeros(&[4, 5]).unwrap();
    let w = g.zeros(&[3, 6]).unwrap();
    let y = g.zeros(&[4, 3]).unwrap();
    let mut b = g.batch();
    let e = k::matmul(&mut b, &x, &w, None, &y, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 columns") && e.contains("expects 6"), "{e}");
    let e = k::gelu(&mut b, &x, &y).unwrap_err().to_string();
    assert!(e.contains("differ"), "{e}");
    let e = k::gelu(&mut b, &x, &x).unwrap_err().to_string();
    assert!(e.contains("same buffer"), "{e}");
    assert!(g.upload(&[1.0, 2.0], &[3]).is_err());
    // Wrong dtypes, lengths and aliasing are refused on the host too.
    let idx = g.upload_u32(&[0, 1, 2, 3], &[4]).unwrap();
    let e = k::gelu(&mut b, &idx, &y).unwrap_err().to_string();
    assert!(e.contains("must be f32"), "{e}");
    let bias = g.zeros(&[1]).unwrap();
    let w4 = g.zeros(&[5, 3]).unwrap();
    let e = k::gemm(
        &mut b,
        &x,
        (5, 1),
        &w4,
        (3, 1),
        (4, 3, 5),
        Some(&bias),
        &y,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("bias"), "{e}");
    let (p, m, v) = (
        g.zeros(&[3]).unwrap(),
        g.zeros(&[3]).unwrap(),
        g.zeros(&[3]).unwrap(),
    );
    let gr = g.zeros(&[3]).unwrap();
    let e = k::adamw(
        &mut b,
        &pai::gpu::reference::AdamW::default(),
        1,
        &p,
        &gr,
        &m,
        &v,
        Some(&bias),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("clip"), "{e}");
    let w0 = g.zeros(&[]).unwrap();
    assert!(k::matmul(&mut b, &x, &w0, None, &y, false).is_err());
    assert!(g.grid(u32::MAX as usize * 70_000).is_err());
    assert!(b.is_empty(), "nothing was recorded");
}

#[test]
fn work_beyond_the_workgroup_limit_is_split() {
    let g = gpu();
    let max = g.limits.max_compute_workgroups_per_dimension as usize;
    // More elementwise invocations than one grid row of 64-wide workgroups holds.
    let n = max * 64 + 1000;
    let (gx, gy) = g.grid(n.div_ceil(64)).unwrap();
    assert!(gy >= 2 && gx as usize <= max);
    let x: Vec<f32> = (0..n).map(|i| (i % 1013) as f32 * 0.01 - 5.0).collect();
    let xt = up(&x, &[n]);
    let y = poisoned(&[n]);
    let mut b = g.batch();
    k::gelu(&mut b, &xt, &y).unwrap();
    b.run().unwrap();
    let out = read(&y);
    for i in [0, 1, max * 64 - 1, max * 64, n - 1] {
        let v = x[i] as f64;
        let want = 0.5 * v * (1.0 + (0.7978845608028654 * (v + 0.044715 * v * v * v)).tanh());
        assert!(
            (out[i] as f64 - want).abs() < 1e-5,
            "element {i}: {} vs {want}",
            out[i]
        );
    }
    assert!(out.iter().all(|v| v.is_finite()), "every element written");
}

#[test]
fn many_dispatches_in_one_batch_and_one_readback() {
    let g = gpu();
    let a = up(&[1.0, 2.0, 3.0], &[3]);
    let mut cur = up(&[0.0; 3], &[3]);
    let mut b = g.batch();
    for _ in 0..50 {
        let next = g.zeros(&[3]).unwrap();
        k::add(&mut b, &cur, &a, &next).unwrap();
        cur = next;
    }
    assert_eq!(b.len(), 50);
    b.run().unwrap();
    let out = g.read_many(&[&cur, &a]).unwrap();
    let v: Vec<f32> = bytemuck::pod_collect_to_vec(&out[0]);
    assert_eq!(v, vec![50.0, 100.0, 150.0]);
}

#[test]
fn shader_sources_are_embedded_and_named() {
    for list in ops::ALL_KERNELS {
        for kern in *list {
            assert!(!kern.wgsl().is_empty(), "{}", kern.name());
        }
    }
    let train = kernel_sources(TRAIN_KERNELS);
    assert_eq!(
        train.len(),
        TRAIN_KERNELS.iter().map(|l| l.len()).sum::<usize>()
    );
    assert!(
        train
            .iter()
            .any(|(n, s)| n == "attention::attn_bwd_kv" && s.contains("fn attn_bwd_kv"))
    );
    let q = kernel_sources(QUANT_KERNELS);
    assert!(q.iter().any(|(_, s)| s.contains("fn q4_0_quantize")));
    // Every kernel compiles on this adapter.
    for list in TRAIN_KERNELS {
        for kern in *list {
            gpu().prepare(kern).unwrap();
        }
    }
}

/// Dispatches kernel `k` with zeroed parameters (no work: every size is 0) and a small buffer
/// for each storage binding its entry point uses, named as in the WGSL.
fn dispatch_zeroed(g: &Gpu, b: &mut pai::gpu::Batch, k: &pai::gpu::Kernel) -> anyhow::Result<()> {
    let r = k.reflect()?;
    let bufs: Vec<(String, pai::gpu::Tensor)> = r
        .storage
        .iter()
        .map(|(_, n)| (n.clone(), g.zeros(&[16]).unwrap()))
        .collect();
    let named: Vec<(&str, &pai::gpu::Tensor)> = bufs.iter().map(|(n, t)| (&n[..], t)).collect();
    match k.params {
        16 => b.dispatch(k, &[0u32; 4], &named, 1),
        32 => b.dispatch(k, &[0u32; 8], &named, 1),
        48 => b.dispatch(k, &[0u32; 12], &named, 1),
        n => panic!("{}: no test params of {n} bytes", k.name()),
    }
}

#[test]
fn every_kernel_binds_exactly_what_its_entry_point_uses() {
    let g = gpu();
    let mut b = g.batch();
    for list in ops::ALL_KERNELS {
        for kern in *list {
            dispatch_zeroed(g, &mut b, kern).unwrap_or_else(|e| panic!("{}: {e:#}", kern.name()));
        }
    }
    b.run().unwrap();
    // A buffer the entry point does not use, or a missing one, is refused on the host.
    let (x, y, extra) = (
        g.zeros(&[4]).unwrap(),
        g.zeros(&[4]).unwrap(),
        g.zeros(&[4]).unwrap(),
    );
    let mut b = g.batch();
    let p = ops::elementwise::ElementwiseParams::default();
    let e = b
        .dispatch(
            &ops::elementwise::GELU_FWD,
            &p,
            &[("x", &x), ("out", &y), ("out2", &extra)],
            4,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not use") && e.contains("out2"), "{e}");
    let e = b
        .dispatch(&ops::elementwise::GELU_FWD, &p, &[("x", &x)], 4)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no buffer") && e.contains("out"), "{e}");
    // Parameters of the wrong struct are refused.
    let e = b
        .dispatch(
            &ops::elementwise::GELU_FWD,
            &[0u32; 8],
            &[("x", &x), ("out", &y)],
            4,
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("bytes"), "{e}");
}

#[test]
fn the_device_reports_the_kernels_dispatched() {
    use pai::gpu::ops::{GpuOps, Ops};
    // A device of its own: the shared one records the other tests' dispatches too.
    let g = Gpu::new(None).unwrap();
    let mut o = GpuOps::new(&g);
    let x = o.upload(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let (w, bias) = (
        o.upload(&[0.5; 3], &[1, 3]).unwrap(),
        o.zeros(&[3]).unwrap(),
    );
    let (y, mean, rstd) = (
        o.zeros(&[2, 3]).unwrap(),
        o.zeros(&[2]).unwrap(),
        o.zeros(&[2]).unwrap(),
    );
    assert!(g.take_dispatched().is_empty());
    let ones = o.upload(&[1.0; 3], &[3]).unwrap();
    o.layernorm(&x, &ones, &bias, &y, &mean, &rstd, 1e-5)
        .unwrap();
    let got = g.take_dispatched();
    assert_eq!(
        got.iter().map(String::as_str).collect::<Vec<_>>(),
        ["layernorm::ln_fwd"]
    );
    assert!(g.take_dispatched().is_empty(), "taking clears the set");
    let (logits, tgt, losses) = (
        o.upload(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6], &[2, 3]).unwrap(),
        o.upload_ids(&[0, 2], &[2]).unwrap(),
        o.zeros(&[2]).unwrap(),
    );
    let out = o.zeros(&[2, 1]).unwrap();
    o.crossentropy(&logits, &tgt, &losses, None, 1.0).unwrap();
    o.matmul(&x, &w, None, &out, false).unwrap();
    o.colsum(&x, &bias, false).unwrap();
    let want: std::collections::BTreeSet<String> = [
        "crossentropy::xent".to_string(),
        "matmul::colsum".to_string(),
        ops::matmul::nt_variant(&g, g.path(), 3).name(),
    ]
    .into();
    assert_eq!(g.take_dispatched(), want);
    o.read(&out).unwrap();
}
