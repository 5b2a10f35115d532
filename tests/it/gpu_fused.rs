//! The fused training path against the first release's: each fused product (GELU epilogue,
//! GELU' epilogue, residual add) equals the separate dispatches it replaces and the f64
//! reference, and whole training runs on the two paths follow the same loss curve.

use crate::gpu_util::*;
use pai::gpu::KernelPath;
use pai::gpu::ops::{GpuOps, Ops, elementwise as ew, matmul as mm};
use pai::gpu::reference as r;
use pai::model::rng::SplitMix64;
use pai::model::{GptConfig, Hyper, Model, Weights};

fn run(f: impl FnOnce(&mut pai::gpu::Batch) -> anyhow::Result<()>) {
    let mut b = gpu().batch();
    f(&mut b).unwrap();
    b.run().unwrap();
}

fn bits(x: &[f32]) -> Vec<u32> {
    x.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn fused_products_equal_the_separate_dispatches_and_the_reference() {
    for (i, &(m, n, k)) in [(37, 19, 13), (5, 3, 1), (64, 96, 32)].iter().enumerate() {
        let mut rng = Rng::new(100 + i as u64);
        let x = rng.vec(m * k, 1.0);
        let w = rng.vec(n * k, 1.0);
        let bv = rng.vec(n, 1.0);
        let res = rng.vec(m * n, 1.0);
        let dy = rng.vec(m * k, 1.0);
        let (xt, wt, bt, rt) = (
            up(&x, &[m, k]),
            up(&w, &[n, k]),
            up(&bv, &[n]),
            up(&res, &[m, n]),
        );
        let what = format!("[{m},{n},{k}]");

        // pre = x·wᵀ + b, y = gelu(pre): fused against matmul then gelu.
        let (pre, y, pre2, y2) = (
            poisoned(&[m, n]),
            poisoned(&[m, n]),
            poisoned(&[m, n]),
            poisoned(&[m, n]),
        );
        run(|b| mm::matmul_gelu(b, &xt, &wt, &bt, &pre, &y));
        run(|b| {
            mm::matmul(b, &xt, &wt, Some(&bt), &pre2, false)?;
            ew::gelu(b, &pre2, &y2)
        });
        assert_eq!(
            bits(&read(&pre)),
            bits(&read(&pre2)),
            "{what} pre-activation"
        );
        assert_eq!(bits(&read(&y)), bits(&read(&y2)), "{what} gelu");
        let want_pre = r::matmul_fwd(&f64s(&x), &f64s(&w), Some(&f64s(&bv)), m, n, k);
        assert_close(
            &format!("{what} matmul_gelu pre"),
            &read(&pre),
            &want_pre,
            1e-5,
        );
        assert_close(
            &format!("{what} matmul_gelu"),
            &read(&y),
            &r::gelu_fwd(&want_pre),
            1e-5,
        );

        // dx = gelu'(pre) ∘ (dpre·w) with dpre [m,n] and w [n,k]: here the pre-activation is
        // [m,k] (the input side of the product).
        let dyt = up(&dy, &[m, k]);
        let dout = rng.vec(m * n, 1.0);
        let doutt = up(&dout, &[m, n]);
        let (dx, dx2, tmp) = (poisoned(&[m, k]), poisoned(&[m, k]), poisoned(&[m, k]));
        run(|b| mm::matmul_dx_gelu(b, &doutt, &wt, &dyt, &dx));
        run(|b| {
            mm::matmul_dx(b, &doutt, &wt, &tmp, false)?;
            ew::gelu_bwd(b, &dyt, &tmp, &dx2, false)
        });
        assert_eq!(bits(&read(&dx)), bits(&read(&dx2)), "{what} dx gelu'");
        let (d, _, _) = r::matmul_bwd(&f64s(&dout), &vec![0.0; m * k], &f64s(&w), m, n, k);
        assert_close(
            &format!("{what} matmul_dx_gelu"),
            &read(&dx),
            &r::gelu_bwd(&f64s(&dy), &d),
            1e-5,
        );

        // y = r + (x·wᵀ + b): fused against matmul then add.
        let (o, o2, p) = (poisoned(&[m, n]), poisoned(&[m, n]), poisoned(&[m, n]));
        run(|b| mm::matmul_residual(b, &xt, &wt, Some(&bt), &rt, &o));
        run(|b| {
            mm::matmul(b, &xt, &wt, Some(&bt), &p, false)?;
            ew::add(b, &rt, &p, &o2)
        });
        assert_eq!(bits(&read(&o)), bits(&read(&o2)), "{what} residual");
        let want: Vec<f64> = want_pre
            .iter()
            .zip(&res)
            .map(|(a, b)| a + *b as f64)
            .collect();
        assert_close(&format!("{what} matmul_residual"), &read(&o), &want, 1e-5);
    }
}

fn small() -> GptConfig {
    GptConfig {
        vocab_size: 301,
        context: 9,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
    }
}

/// Losses of `steps` training steps from the same weights and data on one kernel path.
fn curve(path: KernelPath, w: &Weights, steps: u64) -> (Vec<f32>, Vec<Vec<f32>>) {
    let cfg = w.cfg;
    let mut ops = GpuOps::with_path(gpu(), path);
    assert_eq!(ops.fused(), path == KernelPath::Fused);
    let mut m = Model::new(&mut ops, w, 3).unwrap();
    let h = Hyper {
        lr: 3e-3,
        ..Hyper::default()
    };
    let mut losses = vec![];
    for s in 1..=steps {
        let mut r = SplitMix64(s % 3);
        let rows: Vec<u32> = (0..3 * (cfg.context + 1))
            .map(|_| r.below(cfg.vocab_size as u64) as u32)
            .collect();
        losses.push(m.train_step(&mut ops, &rows, &h, s).unwrap().loss);
    }
    (losses, m.weights(&mut ops).unwrap().tensors)
}

#[test]
fn the_fused_path_follows_the_first_release_s_loss_curve() {
    let w = Weights::init(small(), 0.05, 11);
    let (old, old_w) = curve(KernelPath::Release1, &w, 12);
    let (new, new_w) = curve(KernelPath::Fused, &w, 12);
    println!("release1 {old:?}\nfused    {new:?}");
    assert!(old.last() < old.first(), "the loss falls: {old:?}");
    for (s, (a, b)) in old.iter().zip(&new).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs(),
            "step {}: loss {a} on the first release's path, {b} fused",
            s + 1
        );
    }
    for (i, (a, b)) in old_w.iter().zip(&new_w).enumerate() {
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        // Adam divides each gradient by its running RMS, so where a gradient is near zero
        // (a bias) rounding differences in the attention sums move a parameter by a fraction
        // of a learning-rate step; a tenth of one over twelve steps is the bound.
        assert!(
            worst <= 0.1 * 3e-3,
            "parameter tensor {i}: max difference {worst}"
        );
    }
}

#[test]
fn views_of_a_block_bind_at_their_offsets_and_leave_the_gaps_alone() {
    let g = gpu();
    let shapes: [&[usize]; 3] = [&[3], &[5, 2], &[1]];
    let (whole, views) = g.zeros_block(&shapes).unwrap();
    let align = (g.limits.min_storage_buffer_offset_alignment / 4) as usize;
    assert_eq!(
        views[1].offset as usize,
        align.max(3).div_ceil(align) * align * 4
    );
    let a: Vec<f32> = (0..10).map(|i| i as f32 * 0.5 - 2.0).collect();
    g.write(&views[1], &a).unwrap();
    g.write(&views[0], &[9.0, 9.0, 9.0]).unwrap();
    // GELU from the middle view into a fresh tensor, and one element of that into the last
    // view through copy_range.
    let out = poisoned(&[5, 2]);
    run(|b| ew::gelu(b, &views[1], &out));
    let want = r::gelu_fwd(&f64s(&a));
    assert_close("gelu of a view", &read(&out), &want, 1e-6);
    run(|b| b.copy_range(&out, 0, &views[2], 0, 1));
    assert_eq!(read(&views[2]), vec![read(&out)[0]]);
    assert_eq!(read(&views[0]), vec![9.0; 3], "the first view is untouched");
    // Everything outside the three views is still zero.
    let all = read(&whole);
    let mut inside = vec![false; all.len()];
    for v in &views {
        let at = v.offset as usize / 4;
        inside[at..at + v.len()].iter_mut().for_each(|x| *x = true);
    }
    assert!(
        all.iter().zip(&inside).all(|(x, &i)| i || *x == 0.0),
        "a gap was written"
    );
    // Overlapping views are refused as in-place use.
    let overlap = whole
        .view(views[1].offset as usize / 4 + 4, &[5, 2])
        .unwrap();
    assert!(overlap.overlaps(&views[1]) && !overlap.overlaps(&views[0]));
    let mut b = g.batch();
    let e = ew::gelu(&mut b, &views[1], &overlap).unwrap_err();
    assert!(e.to_string().contains("in-place"), "{e}");
}

#[test]
fn bench_train_times_both_kernel_paths_on_the_same_rows_and_their_losses_agree() {
    let p = crate::common::Proj::with_pipeline(&crate::common::model_pipeline(8, 1, 32, 4, "", ""));
    let (r, code) = p.json(&["bench", "train", "--runs", "2"]);
    assert_eq!(code, 0, "{r}");
    assert_eq!(r["release1"]["path"], "Release1", "{r}");
    let (cur, old) = (
        r["tokens_per_s"].as_f64().unwrap(),
        r["release1"]["tokens_per_s"].as_f64().unwrap(),
    );
    assert!(cur > 0.0 && old > 0.0, "{r}");
    assert!((r["speedup_over_release1"].as_f64().unwrap() - cur / old).abs() < 1e-6 * cur / old);
    // Two warm-up steps and two timed steps on each path, compared step by step.
    assert_eq!(r["loss_curve_steps"], 4, "{r}");
    assert!(r["loss_curve_max_rel_diff"].as_f64().unwrap() < 1e-5, "{r}");
    // The fused path dispatches fewer kernels per step.
    assert!(
        r["dispatches_per_step"].as_f64().unwrap()
            < r["release1"]["dispatches_per_step"].as_f64().unwrap(),
        "{r}"
    );
}
