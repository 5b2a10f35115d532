//! Runtime: adapter report, errors instead of panics for bad shapes, work split beyond the
//! per-dimension workgroup limit, batched readback.

mod gpu_util;

use gpu_util::*;
use pai::gpu::{Gpu, doctor, kernels as k, shaders};

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
    for (name, src) in shaders::SOURCES {
        assert!(!src.is_empty(), "{name}");
    }
    let train = shaders::sources(shaders::TRAIN);
    assert_eq!(train.len(), shaders::TRAIN.len());
    assert!(
        train
            .iter()
            .any(|(n, s)| *n == "attention" && s.contains("fn attn_bwd_kv"))
    );
    let q = shaders::sources(shaders::QUANT);
    assert!(q.iter().any(|(_, s)| s.contains("fn q4_0_quantize")));
    // Every kernel compiles on this adapter.
    for kern in k::ALL {
        gpu().prepare(kern).unwrap();
    }
}
