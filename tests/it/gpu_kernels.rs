//! Every training kernel against the plain-Rust f64 reference on random inputs at odd sizes and
//! a training-sized shape; every backward kernel also against central finite differences of the
//! f64 forward; outputs poisoned with NaN first; determinism (same bits twice).

use crate::gpu_util::*;
use pai::gpu::reference::{self as r, AdamW, AttnShape};
use pai::gpu::{KernelPath, Tensor, reference::to_f64};

/// The GPU functions of every op.
mod k {
    pub use pai::gpu::ops::attention::{attention, attention_bwd};
    pub use pai::gpu::ops::crossentropy::crossentropy;
    pub use pai::gpu::ops::elementwise::{add, gelu, gelu_bwd, residual_bwd};
    pub use pai::gpu::ops::embedding::{
        EmbeddingIndex, EmbeddingIndexGpu, embedding, embedding_bwd,
    };
    pub use pai::gpu::ops::layernorm::{layernorm, layernorm_bwd};
    pub use pai::gpu::ops::matmul::*;
    pub use pai::gpu::ops::optim::{adamw, grad_norm_clip, norm_slots, sum};
}

const TOL: f64 = 1e-5;
/// GPU (f32) backward against f64 finite differences.
const FD_TOL: f64 = 1e-4;

fn run(f: impl FnOnce(&mut pai::gpu::Batch) -> anyhow::Result<()>) {
    let mut b = gpu().batch();
    f(&mut b).unwrap();
    b.run().unwrap();
}

// ---------------------------------------------------------------- matmul

fn check_matmul(m: usize, n: usize, kk: usize, bias: bool, seed: u64) {
    let mut rng = Rng::new(seed);
    let x = rng.vec(m * kk, 1.0);
    let w = rng.vec(n * kk, 1.0);
    let bv = rng.vec(n, 1.0);
    let (xt, wt, bt) = (up(&x, &[m, kk]), up(&w, &[n, kk]), up(&bv, &[n]));
    let y = poisoned(&[m, n]);
    run(|b| k::matmul(b, &xt, &wt, bias.then_some(&bt), &y, false));
    let bref = f64s(&bv);
    let want = r::matmul_fwd(&f64s(&x), &f64s(&w), bias.then_some(&bref[..]), m, n, kk);
    assert_close(
        &format!("matmul {m}x{n}x{kk} bias={bias}"),
        &read(&y),
        &want,
        TOL,
    );

    // Backward: dx, dw, db against the reference.
    let dy = rng.vec(m * n, 1.0);
    let dyt = up(&dy, &[m, n]);
    let (dx, dw, db) = (poisoned(&[m, kk]), poisoned(&[n, kk]), poisoned(&[n]));
    run(|b| {
        k::matmul_dx(b, &dyt, &wt, &dx, false)?;
        k::matmul_dw(b, &dyt, &xt, &dw, false)?;
        k::colsum(b, &dyt, &db, false)
    });
    let (rdx, rdw, rdb) = r::matmul_bwd(&f64s(&dy), &f64s(&x), &f64s(&w), m, n, kk);
    assert_close(&format!("matmul dx {m}x{n}x{kk}"), &read(&dx), &rdx, TOL);
    assert_close(&format!("matmul dw {m}x{n}x{kk}"), &read(&dw), &rdw, TOL);
    assert_close(&format!("matmul db {m}x{n}x{kk}"), &read(&db), &rdb, TOL);
}

#[test]
fn matmul_odd_sizes_match_reference() {
    for (i, &(m, n, kk)) in [
        (1, 1, 1),
        (7, 13, 5),
        (13, 7, 12),
        (5, 3, 4),
        (33, 17, 9),
        (9, 65, 20),
    ]
    .iter()
    .enumerate()
    {
        check_matmul(m, n, kk, i % 2 == 0, i as u64);
        check_matmul(m, n, kk, i % 2 == 1, 100 + i as u64);
    }
}

#[test]
fn every_matmul_variant_matches_reference() {
    for (i, &(m, n, kk)) in [(1, 1, 4), (7, 13, 12), (9, 65, 20), (17, 130, 36)]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(200 + i as u64);
        let (x, w, bv) = (rng.vec(m * kk, 1.0), rng.vec(n * kk, 1.0), rng.vec(n, 1.0));
        let (xt, wt, bt) = (up(&x, &[m, kk]), up(&w, &[n, kk]), up(&bv, &[n]));
        let want = r::matmul_fwd(&f64s(&x), &f64s(&w), Some(&f64s(&bv)), m, n, kk);
        for v in k::NT_VARIANTS {
            if !k::supported(gpu(), v) {
                eprintln!("skipping {}: {}", v.entry, NO_SG8);
                continue;
            }
            let y = poisoned(&[m, n]);
            run(|b| k::matmul_with(b, v, &xt, &wt, Some(&bt), &y, false));
            assert_close(&format!("{} {m}x{n}x{kk}", v.entry), &read(&y), &want, TOL);
        }
    }
}

/// Why a subgroup kernel is skipped.
const NO_SG8: &str = "the adapter has no 8-lane subgroups (lavapipe has them)";

#[test]
fn every_gemm_variant_matches_reference() {
    // The forward and backward products through each strided kernel, at sizes that are not
    // multiples of any tile (32x32, 16x8, 4x4) and with accumulation into a non-zero output.
    // The vec4 kernels take only some strides (`accepts`): the last sizes are multiples of 4
    // where they need it (K odd for the dW one), so each runs on at least one product.
    let mut ran = vec![0; k::GEMM_VARIANTS.len()];
    for (i, &(m, n, kk)) in [
        (1, 1, 1),
        (7, 13, 5),
        (17, 9, 33),
        (33, 130, 20),
        (16, 8, 3),
        (37, 20, 44),
        (65, 40, 12),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(300 + i as u64);
        let (x, w, dy) = (
            rng.vec(m * kk, 1.0),
            rng.vec(n * kk, 1.0),
            rng.vec(m * n, 1.0),
        );
        let dw0 = rng.vec(n * kk, 1.0);
        let (xt, wt, dyt) = (up(&x, &[m, kk]), up(&w, &[n, kk]), up(&dy, &[m, n]));
        let (rdx, rdw, _) = r::matmul_bwd(&f64s(&dy), &f64s(&x), &f64s(&w), m, n, kk);
        let ry = r::matmul_fwd(&f64s(&x), &f64s(&w), None, m, n, kk);
        let want_acc: Vec<f64> = rdw.iter().zip(&dw0).map(|(a, b)| a + *b as f64).collect();
        // (what, A, A strides, B, B strides, [M, N, K], want)
        let products = [
            ("y", &xt, (kk, 1), &wt, (1, kk), (m, n, kk), &ry),
            ("dx", &dyt, (n, 1), &wt, (kk, 1), (m, kk, n), &rdx),
            ("dw", &dyt, (1, n), &xt, (kk, 1), (n, kk, m), &rdw),
        ];
        for (vi, v) in k::GEMM_VARIANTS.iter().enumerate() {
            if !k::supported(gpu(), v) {
                eprintln!("skipping {}: {}", v.entry, NO_SG8);
                continue;
            }
            for &(what, a, a_st, bm, b_st, mnk, want) in &products {
                if !k::accepts(v, a_st, b_st, mnk) {
                    continue;
                }
                ran[vi] += 1;
                let c = poisoned(&[mnk.0, mnk.1]);
                run(|b| k::gemm_with(b, v, a, a_st, bm, b_st, mnk, None, &c, false));
                let label = format!("{} {what} {m}x{n}x{kk}", v.entry);
                assert_close(&label, &read(&c), want, TOL);
                if what == "dw" {
                    let dwa = up(&dw0, &[n, kk]);
                    run(|b| k::gemm_with(b, v, a, a_st, bm, b_st, mnk, None, &dwa, true));
                    assert_close(&format!("{label} acc"), &read(&dwa), &want_acc, TOL);
                }
            }
        }
    }
    for (v, n) in k::GEMM_VARIANTS.iter().zip(&ran) {
        assert!(
            *n > 0 || !k::supported(gpu(), v),
            "{} ran on no product",
            v.entry
        );
    }
}

#[test]
fn matmul_variant_choice_follows_adapter_path_and_strides() {
    // A device of its own: the path is switched here, and the shared one serves other tests.
    let g = pai::gpu::Gpu::new(None).unwrap();
    let (dx, dw) = (((128, 1), (512, 1)), ((1, 128), (512, 1)));
    let choose = |g: &pai::gpu::Gpu| {
        [
            k::nt_variant(g, g.path(), 128).entry,
            k::nt_variant(g, g.path(), 127).entry,
            k::gemm_variant(g, g.path(), dx.0, dx.1, (1024, 512, 128)).entry,
            k::gemm_variant(g, g.path(), dw.0, dw.1, (128, 512, 1024)).entry,
            k::gemm_variant(g, g.path(), (129, 1), (512, 1), (1024, 512, 129)).entry,
        ]
    };
    let release1 = if g.is_cpu() {
        ["mm_tile16x8"; 5]
    } else {
        [
            "mm_nt_vec4",
            "mm_generic",
            "mm_generic",
            "mm_generic",
            "mm_generic",
        ]
    };
    if g.is_cpu() && k::subgroups8(&g) {
        assert_eq!(
            choose(&g),
            ["mm_sg_nt", "mm_sg", "mm_sg_nn", "mm_sg_tn", "mm_sg"]
        );
    } else {
        eprintln!(
            "{}: {NO_SG8}; the fused path keeps the first release's choice",
            g.info.name
        );
        assert_eq!(choose(&g), release1);
    }
    g.set_path(pai::gpu::KernelPath::Release1);
    assert_eq!(choose(&g), release1, "the first release's variants");
    // A forced variant wins where it takes the strides, and only there.
    g.set_path(pai::gpu::KernelPath::Fused);
    g.force_matmul(Some("mm_generic"));
    assert_eq!(choose(&g), ["mm_generic"; 5]);
    if g.is_cpu() && k::subgroups8(&g) {
        g.force_matmul(Some("mm_sg_tn"));
        assert_eq!(
            k::gemm_variant(&g, g.path(), dw.0, dw.1, (128, 512, 1024)).entry,
            "mm_sg_tn"
        );
        assert_eq!(
            k::gemm_variant(&g, g.path(), dx.0, dx.1, (1024, 512, 128)).entry,
            "mm_sg_nn"
        );
    }
}

#[test]
fn matmul_training_shape_matches_reference() {
    // [B*T, 3C, C] of the default model with B = 2 (the full B = 8 is benchmarked instead).
    check_matmul(256, 384, 128, true, 7);
}

#[test]
fn matmul_accumulates() {
    let mut rng = Rng::new(3);
    let (m, n, kk) = (5, 6, 7);
    let (x, w, y0) = (
        rng.vec(m * kk, 1.0),
        rng.vec(n * kk, 1.0),
        rng.vec(m * n, 1.0),
    );
    let y = up(&y0, &[m, n]);
    let dw0 = rng.vec(n * kk, 1.0);
    let dw = up(&dw0, &[n, kk]);
    let (xt, wt) = (up(&x, &[m, kk]), up(&w, &[n, kk]));
    let dyt = up(&y0, &[m, n]);
    run(|b| {
        k::matmul(b, &xt, &wt, None, &y, true)?;
        k::matmul_dw(b, &dyt, &xt, &dw, true)
    });
    let prod = r::matmul_fwd(&f64s(&x), &f64s(&w), None, m, n, kk);
    let want: Vec<f64> = prod.iter().zip(&y0).map(|(a, b)| a + *b as f64).collect();
    assert_close("matmul acc", &read(&y), &want, TOL);
    let (_, rdw, _) = r::matmul_bwd(&f64s(&y0), &f64s(&x), &f64s(&w), m, n, kk);
    let want: Vec<f64> = rdw.iter().zip(&dw0).map(|(a, b)| a + *b as f64).collect();
    assert_close("matmul dw acc", &read(&dw), &want, TOL);
}

#[test]
fn matmul_backward_matches_finite_differences() {
    let (m, n, kk) = (3, 4, 5);
    let mut rng = Rng::new(11);
    let (x, w, bv, g) = (
        rng.vec(m * kk, 1.0),
        rng.vec(n * kk, 1.0),
        rng.vec(n, 1.0),
        rng.vec(m * n, 1.0),
    );
    let (x64, w64, b64, g64) = (f64s(&x), f64s(&w), f64s(&bv), f64s(&g));
    let loss = |x: &[f64], w: &[f64], b: &[f64]| dot(&r::matmul_fwd(x, w, Some(b), m, n, kk), &g64);
    let fdx = fd_grad(|v| loss(v, &w64, &b64), &x64, 1e-5);
    let fdw = fd_grad(|v| loss(&x64, v, &b64), &w64, 1e-5);
    let fdb = fd_grad(|v| loss(&x64, &w64, v), &b64, 1e-5);
    let (rdx, rdw, rdb) = r::matmul_bwd(&g64, &x64, &w64, m, n, kk);
    assert!(
        rel_err64(&rdx, &fdx) < 1e-7
            && rel_err64(&rdw, &fdw) < 1e-7
            && rel_err64(&rdb, &fdb) < 1e-7
    );
    let (xt, wt, gt) = (up(&x, &[m, kk]), up(&w, &[n, kk]), up(&g, &[m, n]));
    let (dx, dw, db) = (poisoned(&[m, kk]), poisoned(&[n, kk]), poisoned(&[n]));
    run(|b| {
        k::matmul_dx(b, &gt, &wt, &dx, false)?;
        k::matmul_dw(b, &gt, &xt, &dw, false)?;
        k::colsum(b, &gt, &db, false)
    });
    assert_close("matmul dx vs fd", &read(&dx), &fdx, FD_TOL);
    assert_close("matmul dw vs fd", &read(&dw), &fdw, FD_TOL);
    assert_close("matmul db vs fd", &read(&db), &fdb, FD_TOL);
}

#[test]
fn every_gemm_variant_matches_finite_differences() {
    // dx and dW through each strided kernel that takes their strides: K = 5 for the scalar
    // ones, K = 8 (multiples of 4) for mm_sg_nn (dx) and mm_sg_tn (dW) too. mm_sg_nt takes
    // neither product's strides (its gradient is the forward's, checked against the reference
    // above), so it is the one variant allowed not to run here.
    let mut ran = vec![0; k::GEMM_VARIANTS.len()];
    for (m, n, kk) in [(3, 4, 5), (3, 4, 8)] {
        let mut rng = Rng::new(12 + kk as u64);
        let (x, w, g) = (
            rng.vec(m * kk, 1.0),
            rng.vec(n * kk, 1.0),
            rng.vec(m * n, 1.0),
        );
        let (x64, w64, g64) = (f64s(&x), f64s(&w), f64s(&g));
        let loss = |x: &[f64], w: &[f64]| dot(&r::matmul_fwd(x, w, None, m, n, kk), &g64);
        let fdx = fd_grad(|v| loss(v, &w64), &x64, 1e-5);
        let fdw = fd_grad(|v| loss(&x64, v), &w64, 1e-5);
        let (xt, wt, gt) = (up(&x, &[m, kk]), up(&w, &[n, kk]), up(&g, &[m, n]));
        // (what, A, A strides, B, B strides, [M, N, K], finite differences)
        let products = [
            ("dx", &gt, (n, 1), &wt, (kk, 1), (m, kk, n), &fdx),
            ("dw", &gt, (1, n), &xt, (kk, 1), (n, kk, m), &fdw),
        ];
        for (vi, v) in k::GEMM_VARIANTS.iter().enumerate() {
            if !k::supported(gpu(), v) {
                eprintln!("skipping {}: {}", v.entry, NO_SG8);
                continue;
            }
            for &(what, a, a_st, bm, b_st, mnk, fd) in &products {
                if k::accepts(v, a_st, b_st, mnk) {
                    ran[vi] += 1;
                    let c = poisoned(&[mnk.0, mnk.1]);
                    run(|b| k::gemm_with(b, v, a, a_st, bm, b_st, mnk, None, &c, false));
                    let label = format!("{} {what} {m}x{n}x{kk} vs fd", v.entry);
                    assert_close(&label, &read(&c), fd, FD_TOL);
                }
            }
        }
    }
    for (v, &n) in k::GEMM_VARIANTS.iter().zip(&ran) {
        assert!(
            n > 0 || v.entry == "mm_sg_nt" || !k::supported(gpu(), v),
            "{} ran on no gradient product",
            v.entry
        );
    }
}

// ---------------------------------------------------------------- layernorm

fn ln_gpu(x: &[f32], w: &[f32], bv: &[f32], dy: &[f32], rows: usize, cols: usize) -> [Vec<f32>; 6] {
    let (xt, wt, bt, dyt) = (
        up(x, &[rows, cols]),
        up(w, &[cols]),
        up(bv, &[cols]),
        up(dy, &[rows, cols]),
    );
    let (y, mean, rstd) = (
        poisoned(&[rows, cols]),
        poisoned(&[rows]),
        poisoned(&[rows]),
    );
    let (dx, dw, db) = (
        poisoned(&[rows, cols]),
        poisoned(&[cols]),
        poisoned(&[cols]),
    );
    run(|b| {
        k::layernorm(b, &xt, &wt, &bt, &y, &mean, &rstd, 1e-5)?;
        k::layernorm_bwd(b, &dyt, &xt, &wt, &mean, &rstd, &dx, &dw, &db, false, false)
    });
    [
        read(&y),
        read(&mean),
        read(&rstd),
        read(&dx),
        read(&dw),
        read(&db),
    ]
}

#[test]
fn layernorm_matches_reference() {
    for (i, &(rows, cols)) in [(1, 1), (7, 13), (3, 33), (256, 128)].iter().enumerate() {
        let mut rng = Rng::new(20 + i as u64);
        let x: Vec<f32> = rng.vec(rows * cols, 2.0).iter().map(|v| v + 0.5).collect();
        let (w, bv, dy) = (
            rng.vec(cols, 1.0),
            rng.vec(cols, 1.0),
            rng.vec(rows * cols, 1.0),
        );
        let [y, mean, rstd, dx, dw, db] = ln_gpu(&x, &w, &bv, &dy, rows, cols);
        let (ry, rm, rr) = r::layernorm_fwd(&f64s(&x), &f64s(&w), &f64s(&bv), rows, cols, 1e-5);
        let what = format!("layernorm {rows}x{cols}");
        assert_close(&what, &y, &ry, TOL);
        assert_close(&what, &mean, &rm, TOL);
        assert_close(&what, &rstd, &rr, TOL);
        let (rdx, rdw, rdb) =
            r::layernorm_bwd(&f64s(&dy), &f64s(&x), &f64s(&w), &rm, &rr, rows, cols);
        // cols = 1 makes dx exactly zero in exact arithmetic; compare absolutely there.
        let tol = if cols == 1 { 1e-3 } else { TOL };
        assert_close(&format!("{what} dx"), &dx, &rdx, tol);
        assert_close(&format!("{what} dw"), &dw, &rdw, TOL);
        assert_close(&format!("{what} db"), &db, &rdb, TOL);
    }
}

#[test]
fn layernorm_eps_matters_on_near_constant_rows() {
    // Variance ~3e-7, below eps = 1e-5: the result depends on eps itself.
    let (rows, cols) = (3, 128);
    let mut rng = Rng::new(77);
    // Centred on 0: an offset would make f32 itself the limit (x − mean cancels).
    let x = rng.vec(rows * cols, 1e-3);
    let (w, bv, dy) = (
        rng.vec(cols, 1.0),
        rng.vec(cols, 1.0),
        rng.vec(rows * cols, 1.0),
    );
    let [y, _, rstd, dx, _, _] = ln_gpu(&x, &w, &bv, &dy, rows, cols);
    let (ry, rm, rr) = r::layernorm_fwd(&f64s(&x), &f64s(&w), &f64s(&bv), rows, cols, 1e-5);
    assert_close("near-constant layernorm y", &y, &ry, TOL);
    assert_close("near-constant layernorm rstd", &rstd, &rr, TOL);
    let (rdx, _, _) = r::layernorm_bwd(&f64s(&dy), &f64s(&x), &f64s(&w), &rm, &rr, rows, cols);
    assert_close("near-constant layernorm dx", &dx, &rdx, TOL);
    // The check has teeth: another eps gives a clearly different rstd.
    let (_, _, other) = r::layernorm_fwd(&f64s(&x), &f64s(&w), &f64s(&bv), rows, cols, 1e-6);
    assert!(rel_err(&rstd, &other) > 1e-2);
}

#[test]
fn layernorm_backward_matches_finite_differences() {
    let (rows, cols) = (3, 7);
    let mut rng = Rng::new(31);
    let (x, w, bv, g) = (
        rng.vec(rows * cols, 2.0),
        rng.vec(cols, 1.0),
        rng.vec(cols, 1.0),
        rng.vec(rows * cols, 1.0),
    );
    let (x64, w64, b64, g64) = (f64s(&x), f64s(&w), f64s(&bv), f64s(&g));
    let loss =
        |x: &[f64], w: &[f64], b: &[f64]| dot(&r::layernorm_fwd(x, w, b, rows, cols, 1e-5).0, &g64);
    let fdx = fd_grad(|v| loss(v, &w64, &b64), &x64, 1e-5);
    let fdw = fd_grad(|v| loss(&x64, v, &b64), &w64, 1e-5);
    let fdb = fd_grad(|v| loss(&x64, &w64, v), &b64, 1e-5);
    let (_, rm, rr) = r::layernorm_fwd(&x64, &w64, &b64, rows, cols, 1e-5);
    let (rdx, rdw, rdb) = r::layernorm_bwd(&g64, &x64, &w64, &rm, &rr, rows, cols);
    assert!(rel_err64(&rdx, &fdx) < 1e-6, "reference dx vs fd");
    assert!(rel_err64(&rdw, &fdw) < 1e-6 && rel_err64(&rdb, &fdb) < 1e-6);
    let [_, _, _, dx, dw, db] = ln_gpu(&x, &w, &bv, &g, rows, cols);
    assert_close("layernorm dx vs fd", &dx, &fdx, FD_TOL);
    assert_close("layernorm dw vs fd", &dw, &fdw, FD_TOL);
    assert_close("layernorm db vs fd", &db, &fdb, FD_TOL);
}

// ---------------------------------------------------------------- attention

/// Both attention kernel paths: the tiled products (the default) and the first release's
/// per-row kernels. Each test picks the path on its own batch ([`pai::gpu::Batch::set_path`]),
/// never on the shared device, so tests running in parallel cannot see each other's choice.
const PATHS: [KernelPath; 2] = [KernelPath::Fused, KernelPath::Release1];

fn attn_gpu(
    path: KernelPath,
    s: AttnShape,
    qkv: &[f32],
    dout: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (qt, dt) = (up(qkv, &[s.b, s.t, 3 * s.c]), up(dout, &[s.b, s.t, s.c]));
    let out = poisoned(&[s.b, s.t, s.c]);
    let p = poisoned(&[s.b, s.nh, s.t, s.t]);
    let ds = poisoned(&[s.b, s.nh, s.t, s.t]);
    let dqkv = poisoned(&[s.b, s.t, 3 * s.c]);
    run(|b| {
        b.set_path(path);
        k::attention(b, s, &qt, &out, &p)?;
        k::attention_bwd(b, s, &dt, &qt, &p, &ds, &dqkv)
    });
    (read(&out), read(&p), read(&dqkv))
}

fn shape(b: usize, t: usize, c: usize, nh: usize) -> AttnShape {
    AttnShape { b, t, c, nh }
}

#[test]
fn attention_matches_reference() {
    // Odd sizes around the 16x8 tiles of the tiled path (T not a multiple of 16 or 8, hs not a
    // multiple of 8 or 4, hs = 1, NH = 1, B = 1), the training shape and a larger one.
    let shapes = [
        shape(1, 1, 1, 1),
        shape(2, 7, 6, 3),
        shape(1, 13, 10, 2),
        shape(1, 17, 5, 1),
        shape(3, 9, 12, 4),
        shape(2, 31, 14, 1),
        shape(1, 33, 36, 3),
        shape(2, 40, 24, 2),
        shape(1, 128, 128, 4),
        shape(2, 200, 96, 2),
    ];
    for (i, &s) in shapes.iter().enumerate() {
        let mut rng = Rng::new(40 + i as u64);
        let qkv = rng.vec(s.b * s.t * 3 * s.c, 1.0);
        let dout = rng.vec(s.b * s.t * s.c, 1.0);
        let (rout, rp) = r::attention_fwd(&f64s(&qkv), s);
        let rd = r::attention_bwd(&f64s(&dout), &f64s(&qkv), &rp, s);
        for path in PATHS {
            let (out, p, dqkv) = attn_gpu(path, s, &qkv, &dout);
            let what = format!("attention {path:?} {s:?}");
            assert_close(&what, &out, &rout, TOL);
            assert_close(&format!("{what} P"), &p, &rp, TOL);
            // t = 1 makes dQ and dK exactly zero (softmax over one key); compare absolutely there.
            assert_close(&format!("{what} dqkv"), &dqkv, &rd, TOL);
        }
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    for (i, s) in [shape(2, 5, 6, 2), shape(1, 19, 9, 3)]
        .into_iter()
        .enumerate()
    {
        let mut rng = Rng::new(51 + i as u64);
        let qkv = rng.vec(s.b * s.t * 3 * s.c, 1.0);
        let g = rng.vec(s.b * s.t * s.c, 1.0);
        let g64 = f64s(&g);
        let fd = fd_grad(|v| dot(&r::attention_fwd(v, s).0, &g64), &f64s(&qkv), 1e-5);
        let (_, rp) = r::attention_fwd(&f64s(&qkv), s);
        assert!(rel_err64(&r::attention_bwd(&g64, &f64s(&qkv), &rp, s), &fd) < 1e-6);
        for path in PATHS {
            let (_, _, dqkv) = attn_gpu(path, s, &qkv, &g);
            assert_close(
                &format!("attention {path:?} {s:?} dqkv vs fd"),
                &dqkv,
                &fd,
                FD_TOL,
            );
        }
    }
}

#[test]
fn attention_paths_agree() {
    // The two paths sum in different orders: close, not equal bits.
    let s = shape(2, 50, 40, 5);
    let mut rng = Rng::new(57);
    let qkv = rng.vec(s.b * s.t * 3 * s.c, 2.0);
    let dout = rng.vec(s.b * s.t * s.c, 1.0);
    let (o1, p1, d1) = attn_gpu(KernelPath::Fused, s, &qkv, &dout);
    let (o0, p0, d0) = attn_gpu(KernelPath::Release1, s, &qkv, &dout);
    assert_close("out", &o1, &f64s(&o0), TOL);
    assert_close("P", &p1, &f64s(&p0), TOL);
    assert_close("dqkv", &d1, &f64s(&d0), TOL);
    // Above the diagonal P is exactly zero on both paths.
    for (i, (a, b)) in p1.iter().zip(&p0).enumerate() {
        let (t, t2) = ((i / s.t) % s.t, i % s.t);
        if t2 > t {
            assert!(*a == 0.0 && *b == 0.0, "P[{i}] above the diagonal");
        }
    }
}

#[test]
fn attention_paths_dispatch_their_kernels() {
    // A device of its own: the shared one records the other tests' dispatches too.
    let g = pai::gpu::Gpu::new(None).unwrap();
    let s = shape(1, 5, 4, 2);
    let qkv = g.zeros(&[s.b, s.t, 3 * s.c]).unwrap();
    let out = g.zeros(&[s.b, s.t, s.c]).unwrap();
    let p = g.zeros(&[s.b, s.nh, s.t, s.t]).unwrap();
    let ds = g.zeros(&[s.b, s.nh, s.t, s.t]).unwrap();
    let dqkv = g.zeros(&[s.b, s.t, 3 * s.c]).unwrap();
    let kernels = |set: Option<KernelPath>| {
        let mut b = g.batch();
        if let Some(path) = set {
            b.set_path(path);
        }
        k::attention(&mut b, s, &qkv, &out, &p).unwrap();
        k::attention_bwd(&mut b, s, &out, &qkv, &p, &ds, &dqkv).unwrap();
        b.run().unwrap();
        g.take_dispatched()
            .into_iter()
            .map(|n| n.split("::").next().unwrap().to_string())
            .collect::<std::collections::BTreeSet<_>>()
    };
    let tiled = ["attention_tile".to_string()].into();
    let per_row = ["attention".to_string()].into();
    assert_eq!(kernels(None), tiled, "the default path");
    assert_eq!(kernels(Some(KernelPath::Release1)), per_row);
    // A batch takes the device's path when it starts.
    g.set_path(KernelPath::Release1);
    assert_eq!(kernels(None), per_row);
    assert_eq!(kernels(Some(KernelPath::Fused)), tiled);
}

// ---------------------------------------------------------------- gelu, residual

#[test]
fn gelu_and_residual_match_reference() {
    for (i, &n) in [1usize, 7, 13 * 7, 1000, 256 * 512].iter().enumerate() {
        let mut rng = Rng::new(60 + i as u64);
        let x = rng.vec(n, 4.0);
        let y2 = rng.vec(n, 1.0);
        let (xt, yt) = (up(&x, &[n]), up(&y2, &[n]));
        let (g, dg, s, da, db) = (
            poisoned(&[n]),
            poisoned(&[n]),
            poisoned(&[n]),
            poisoned(&[n]),
            poisoned(&[n]),
        );
        run(|b| {
            k::gelu(b, &xt, &g)?;
            k::gelu_bwd(b, &xt, &yt, &dg, false)?;
            k::add(b, &xt, &yt, &s)?;
            k::residual_bwd(b, &yt, &da, &db, false)
        });
        assert_close(
            &format!("gelu {n}"),
            &read(&g),
            &r::gelu_fwd(&f64s(&x)),
            TOL,
        );
        assert_close(
            &format!("gelu_bwd {n}"),
            &read(&dg),
            &r::gelu_bwd(&f64s(&x), &f64s(&y2)),
            TOL,
        );
        assert_close(
            &format!("add {n}"),
            &read(&s),
            &r::residual_fwd(&f64s(&x), &f64s(&y2)),
            TOL,
        );
        assert_eq!(read(&da), y2, "residual_bwd passes dy");
        assert_eq!(read(&db), y2, "residual_bwd passes dy");
        // Accumulating variants add into what is there.
        run(|b| {
            k::gelu_bwd(b, &xt, &yt, &dg, true)?;
            k::residual_bwd(b, &yt, &da, &db, true)
        });
        let twice: Vec<f64> = r::gelu_bwd(&f64s(&x), &f64s(&y2))
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        assert_close("gelu_bwd acc", &read(&dg), &twice, TOL);
        let y2x2: Vec<f32> = y2.iter().map(|v| 2.0 * v).collect();
        assert_eq!(read(&da), y2x2);
    }
}

#[test]
fn gelu_backward_matches_finite_differences() {
    let mut rng = Rng::new(70);
    let x = rng.vec(29, 5.0);
    let g = rng.vec(29, 1.0);
    let g64 = f64s(&g);
    let fd = fd_grad(|v| dot(&r::gelu_fwd(v), &g64), &f64s(&x), 1e-6);
    assert!(rel_err64(&r::gelu_bwd(&f64s(&x), &g64), &fd) < 1e-7);
    let dx = poisoned(&[29]);
    let (xt, gt) = (up(&x, &[29]), up(&g, &[29]));
    run(|b| k::gelu_bwd(b, &xt, &gt, &dx, false));
    assert_close("gelu_bwd vs fd", &read(&dx), &fd, FD_TOL);
}

// ---------------------------------------------------------------- embedding

#[test]
fn embedding_matches_reference_and_finite_differences() {
    for (i, &(bb, t, c, v)) in [
        (1, 1, 1, 1),
        (2, 7, 13, 5),
        (3, 5, 3, 50),
        (8, 128, 128, 2048),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(80 + i as u64);
        // Skewed ids so some rows repeat many times and some never occur.
        let tokens: Vec<u32> = (0..bb * t)
            .map(|_| (rng.below(v) as u32).min(rng.below(v) as u32))
            .collect();
        let tmax = t + 2;
        let (wte, wpe, dx) = (
            rng.vec(v * c, 1.0),
            rng.vec(tmax * c, 1.0),
            rng.vec(bb * t * c, 1.0),
        );
        let tok = gpu().upload_u32(&tokens, &[bb, t]).unwrap();
        let (wtet, wpet, dxt) = (
            up(&wte, &[v, c]),
            up(&wpe, &[tmax, c]),
            up(&dx, &[bb, t, c]),
        );
        let out = poisoned(&[bb, t, c]);
        let dwte = poisoned(&[v, c]);
        let dwpe = poisoned(&[tmax, c]);
        let idx = k::EmbeddingIndex::build(&tokens, v).unwrap();
        let idxg = k::EmbeddingIndexGpu::upload(gpu(), &idx).unwrap();
        run(|b| {
            k::embedding(b, &tok, &wtet, &wpet, &out)?;
            k::embedding_bwd(b, &idxg, &dxt, &dwte, &dwpe, false)
        });
        let what = format!("embedding {bb}x{t}x{c} V={v}");
        assert_close(
            &what,
            &read(&out),
            &r::embedding_fwd(&tokens, &f64s(&wte), &f64s(&wpe), bb, t, c),
            TOL,
        );
        let (rwte, rwpe) = r::embedding_bwd(&tokens, &f64s(&dx), v, bb, t, c);
        assert_close(&format!("{what} dwte"), &read(&dwte), &rwte, TOL);
        // Rows t >= T of dwpe are not touched by the kernel (they keep their NaN poison).
        let gdwpe = read(&dwpe);
        assert_close(&format!("{what} dwpe"), &gdwpe[..t * c], &rwpe, TOL);
        assert!(gdwpe[t * c..].iter().all(|x| x.is_nan()));
        if i == 1 {
            let g64 = f64s(&rng.vec(bb * t * c, 1.0));
            let g32: Vec<f32> = g64.iter().map(|&x| x as f32).collect();
            let fd_wte = fd_grad(
                |w| dot(&r::embedding_fwd(&tokens, w, &f64s(&wpe), bb, t, c), &g64),
                &f64s(&wte),
                1e-5,
            );
            let gt = up(&g32, &[bb, t, c]);
            run(|b| k::embedding_bwd(b, &idxg, &gt, &dwte, &dwpe, false));
            assert_close("embedding dwte vs fd", &read(&dwte), &fd_wte, FD_TOL);
        }
    }
    assert!(
        k::EmbeddingIndex::build(&[0, 5], 5).is_err(),
        "out-of-vocabulary id is an error"
    );
}

// ---------------------------------------------------------------- cross-entropy

#[test]
fn crossentropy_matches_reference_and_finite_differences() {
    for (i, &(rows, v)) in [(1, 1), (1, 2), (7, 13), (5, 100), (256, 2048)]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(90 + i as u64);
        let logits = rng.vec(rows * v, 5.0);
        let targets: Vec<u32> = (0..rows).map(|_| rng.below(v) as u32).collect();
        let lt = up(&logits, &[rows, v]);
        let tt = gpu().upload_u32(&targets, &[rows]).unwrap();
        let (losses, dl) = (poisoned(&[rows]), poisoned(&[rows, v]));
        let scale = 1.0 / rows as f32;
        run(|b| k::crossentropy(b, &lt, &tt, &losses, Some(&dl), scale));
        let (rl, rdl) = r::crossentropy(&f64s(&logits), &targets, rows, v, scale as f64);
        let what = format!("crossentropy {rows}x{v}");
        // v = 1: the loss is exactly 0 and the gradient exactly 0.
        let tol = if v == 1 { 1e-6 } else { TOL };
        assert_close(&what, &read(&losses), &rl, tol);
        assert_close(&format!("{what} dlogits"), &read(&dl), &rdl, tol);
        if (rows, v) == (7, 13) {
            let fd = fd_grad(
                |x| {
                    r::crossentropy(x, &targets, rows, v, 1.0)
                        .0
                        .iter()
                        .sum::<f64>()
                        * scale as f64
                },
                &f64s(&logits),
                1e-5,
            );
            assert!(rel_err64(&rdl, &fd) < 1e-7);
            assert_close("crossentropy dlogits vs fd", &read(&dl), &fd, FD_TOL);
            // Mean loss through the fixed-order reduction.
            let part = poisoned(&[1]);
            let mean = poisoned(&[2]);
            run(|b| k::sum(b, &losses, &part, &mean, 1, scale));
            let want = rl.iter().sum::<f64>() / rows as f64;
            assert!((read(&mean)[1] as f64 - want).abs() < 1e-5 * want.abs());
        }
    }
}

// ---------------------------------------------------------------- optimizer

#[test]
fn adamw_and_clipping_match_reference() {
    let mut rng = Rng::new(100);
    let shapes: [&[usize]; 3] = [&[7, 13], &[13], &[300, 50]];
    let h = AdamW {
        lr: 1e-2,
        ..AdamW::default()
    };
    let params: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| rng.vec(s.iter().product(), 1.0))
        .collect();
    let grads: Vec<Vec<f32>> = shapes
        .iter()
        .map(|s| rng.vec(s.iter().product(), 3.0))
        .collect();
    let pt: Vec<Tensor> = params.iter().zip(shapes).map(|(p, s)| up(p, s)).collect();
    let gt: Vec<Tensor> = grads.iter().zip(shapes).map(|(g, s)| up(g, s)).collect();
    let mt: Vec<Tensor> = shapes.iter().map(|s| gpu().zeros(s).unwrap()).collect();
    let vt: Vec<Tensor> = shapes.iter().map(|s| gpu().zeros(s).unwrap()).collect();
    let grefs: Vec<&Tensor> = gt.iter().collect();
    let partials = poisoned(&[k::norm_slots(&grefs)]);
    let clip = poisoned(&[2]);
    let mut rp: Vec<Vec<f64>> = params.iter().map(|p| to_f64(p)).collect();
    let mut rm: Vec<Vec<f64>> = rp.iter().map(|p| vec![0.0; p.len()]).collect();
    let mut rv = rm.clone();
    for step in 1..=3u64 {
        run(|b| {
            k::grad_norm_clip(b, &grefs, &partials, &clip, 1.0)?;
            for i in 0..3 {
                k::adamw(b, &h, step, &pt[i], &gt[i], &mt[i], &vt[i], Some(&clip))?;
            }
            Ok(())
        });
        let g64: Vec<Vec<f64>> = grads.iter().map(|g| f64s(g)).collect();
        let norm = r::global_norm(&g64.iter().map(|g| &g[..]).collect::<Vec<_>>());
        let scale = r::clip_factor(norm, 1.0);
        let c = read(&clip);
        assert!(
            (c[0] as f64 - norm).abs() < 1e-5 * norm,
            "norm {} vs {norm}",
            c[0]
        );
        assert!((c[1] as f64 - scale).abs() < 1e-5 * scale);
        for i in 0..3 {
            let wd = if shapes[i].len() >= 2 {
                h.weight_decay as f64
            } else {
                0.0
            };
            r::adamw(
                &mut rp[i], &g64[i], &mut rm[i], &mut rv[i], &h, wd, step, scale,
            );
            assert_close(
                &format!("adamw param {i} step {step}"),
                &read(&pt[i]),
                &rp[i],
                TOL,
            );
            assert_close(&format!("adamw m {i}"), &read(&mt[i]), &rm[i], TOL);
            assert_close(&format!("adamw v {i}"), &read(&vt[i]), &rv[i], TOL);
        }
    }
    // Weight decay only on 2-D tensors: with zero gradients, a 1-D tensor stays put.
    let p1 = up(&[1.0, -2.0, 3.0], &[3]);
    let p2 = up(&[1.0, -2.0, 3.0], &[1, 3]);
    let z = gpu().zeros(&[3]).unwrap();
    let (m1, v1, m2, v2) = (
        gpu().zeros(&[3]).unwrap(),
        gpu().zeros(&[3]).unwrap(),
        gpu().zeros(&[3]).unwrap(),
        gpu().zeros(&[3]).unwrap(),
    );
    run(|b| {
        k::adamw(b, &h, 1, &p1, &z, &m1, &v1, None)?;
        k::adamw(b, &h, 1, &p2, &z, &m2, &v2, None)
    });
    assert_eq!(read(&p1), vec![1.0, -2.0, 3.0]);
    let decayed = read(&p2);
    assert!(
        (decayed[0] - (1.0 - 1e-2 * 0.1)).abs() < 1e-6,
        "{decayed:?}"
    );
}

#[test]
fn small_gradients_are_not_clipped() {
    let g = up(&[0.1, 0.2, -0.2], &[3]);
    let partials = poisoned(&[1]);
    let clip = poisoned(&[2]);
    run(|b| k::grad_norm_clip(b, &[&g], &partials, &clip, 1.0));
    let c = read(&clip);
    assert!((c[0] - 0.3).abs() < 1e-6 && c[1] == 1.0, "{c:?}");
}

// ---------------------------------------------------------------- determinism

#[test]
fn kernels_are_deterministic() {
    let s = AttnShape {
        b: 2,
        t: 33,
        c: 24,
        nh: 3,
    };
    let mut rng = Rng::new(110);
    let (rows, c) = (s.b * s.t, s.c);
    let x = rng.vec(rows * c, 1.0);
    let w = rng.vec(3 * c * c, 0.3);
    let once = |path: KernelPath| {
        let xt = up(&x, &[s.b, s.t, c]);
        let wt = up(&w, &[3 * c, c]);
        let qkv = poisoned(&[s.b, s.t, 3 * c]);
        let att = poisoned(&[s.b, s.t, c]);
        let p = poisoned(&[s.b, s.nh, s.t, s.t]);
        let ds = poisoned(&[s.b, s.nh, s.t, s.t]);
        let dqkv = poisoned(&[s.b, s.t, 3 * c]);
        let dw = poisoned(&[3 * c, c]);
        let dx = poisoned(&[s.b, s.t, c]);
        run(|b| {
            b.set_path(path);
            k::matmul(b, &xt, &wt, None, &qkv, false)?;
            k::attention(b, s, &qkv, &att, &p)?;
            k::attention_bwd(b, s, &att, &qkv, &p, &ds, &dqkv)?;
            k::matmul_dw(b, &dqkv, &xt, &dw, false)?;
            k::matmul_dx(b, &dqkv, &wt, &dx, false)
        });
        let bits = |t: &Tensor| read(t).iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
        (bits(&att), bits(&dqkv), bits(&dw), bits(&dx))
    };
    for path in PATHS {
        let a = once(path);
        let b = once(path);
        assert!(a.0.iter().all(|&v| f32::from_bits(v).is_finite()));
        assert_eq!(a, b, "{path:?}: same inputs must give the same bits");
    }
}
