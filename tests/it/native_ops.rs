//! The native CPU adapter (`NativeOps`, f32): every op against the f64 reference on random
//! inputs at odd sizes and a training-sized shape, outputs poisoned with NaN first; backward ops
//! also against central finite differences of the f64 forward (the tolerances of the WGSL
//! kernels' tests); a whole training step agreeing with the reference; and determinism: the same
//! bits twice and on rayon pools of 1, 2 and 3 threads. No GPU is involved.

use crate::gpu_util::{Rng, assert_close, dot, f64s, fd_grad, rel_err, rel_err64};
use crate::model::{bits, rel, small};
use pai::gpu::ops::attention::DecodeShape;
use pai::gpu::ops::{CpuOps, CpuTensor, NativeOps, Ops};
use pai::gpu::reference::{self as r, AdamW, AttnShape, to_f64};
use pai::model::{Generator, GptConfig, Hyper, Model, Weights, specs};

const TOL: f64 = 1e-5;
const FD_TOL: f64 = 1e-4;

fn up(x: &[f32], shape: &[usize]) -> CpuTensor {
    NativeOps::new().upload(x, shape).unwrap()
}

fn ids(x: &[u32], shape: &[usize]) -> CpuTensor {
    NativeOps::new().upload_ids(x, shape).unwrap()
}

/// A new output filled with NaN, so an element an op fails to write is caught.
fn poisoned(shape: &[usize]) -> CpuTensor {
    up(&vec![f32::NAN; shape.iter().product()], shape)
}

fn read(t: &CpuTensor) -> Vec<f32> {
    NativeOps::new().read(t).unwrap()
}

// ---------------------------------------------------------------- matmul

fn check_matmul(m: usize, n: usize, kk: usize, bias: bool, seed: u64) {
    let o = &mut NativeOps::new();
    let mut rng = Rng::new(seed);
    let (x, w, bv) = (rng.vec(m * kk, 1.0), rng.vec(n * kk, 1.0), rng.vec(n, 1.0));
    let (xt, wt, bt) = (up(&x, &[m, kk]), up(&w, &[n, kk]), up(&bv, &[n]));
    let y = poisoned(&[m, n]);
    o.matmul(&xt, &wt, bias.then_some(&bt), &y, false).unwrap();
    let bref = f64s(&bv);
    let want = r::matmul_fwd(&f64s(&x), &f64s(&w), bias.then_some(&bref[..]), m, n, kk);
    let what = format!("matmul {m}x{n}x{kk} bias={bias}");
    assert_close(&what, &read(&y), &want, TOL);
    // Accumulating onto what is there (with the bias, if any, added once).
    let y0 = rng.vec(m * n, 1.0);
    let ya = up(&y0, &[m, n]);
    o.matmul(&xt, &wt, bias.then_some(&bt), &ya, true).unwrap();
    let acc: Vec<f64> = want.iter().zip(&y0).map(|(a, b)| a + *b as f64).collect();
    assert_close(&format!("{what} acc"), &read(&ya), &acc, TOL);

    let dy = rng.vec(m * n, 1.0);
    let dyt = up(&dy, &[m, n]);
    let (dx, dw, db) = (poisoned(&[m, kk]), poisoned(&[n, kk]), poisoned(&[n]));
    o.matmul_dx(&dyt, &wt, &dx, false).unwrap();
    o.matmul_dw(&dyt, &xt, &dw, false).unwrap();
    o.colsum(&dyt, &db, false).unwrap();
    let (rdx, rdw, rdb) = r::matmul_bwd(&f64s(&dy), &f64s(&x), &f64s(&w), m, n, kk);
    assert_close(&format!("{what} dx"), &read(&dx), &rdx, TOL);
    assert_close(&format!("{what} dw"), &read(&dw), &rdw, TOL);
    assert_close(&format!("{what} db"), &read(&db), &rdb, TOL);
    // The backward products accumulate too.
    let (dx0, dw0, db0) = (rng.vec(m * kk, 1.0), rng.vec(n * kk, 1.0), rng.vec(n, 1.0));
    let (dxa, dwa, dba) = (up(&dx0, &[m, kk]), up(&dw0, &[n, kk]), up(&db0, &[n]));
    o.matmul_dx(&dyt, &wt, &dxa, true).unwrap();
    o.matmul_dw(&dyt, &xt, &dwa, true).unwrap();
    o.colsum(&dyt, &dba, true).unwrap();
    let plus = |a: &[f64], b: &[f32]| -> Vec<f64> {
        a.iter().zip(b).map(|(a, b)| a + *b as f64).collect()
    };
    assert_close(
        &format!("{what} dx acc"),
        &read(&dxa),
        &plus(&rdx, &dx0),
        TOL,
    );
    assert_close(
        &format!("{what} dw acc"),
        &read(&dwa),
        &plus(&rdw, &dw0),
        TOL,
    );
    assert_close(
        &format!("{what} db acc"),
        &read(&dba),
        &plus(&rdb, &db0),
        TOL,
    );
}

#[test]
fn native_products_match_the_reference_at_odd_sizes_and_a_training_shape() {
    for (i, &(m, n, kk)) in [
        (1, 1, 1),
        (7, 13, 5),
        (13, 7, 12),
        (5, 3, 4),
        (33, 17, 9),
        (9, 65, 20),
        (67, 130, 300),
    ]
    .iter()
    .enumerate()
    {
        check_matmul(m, n, kk, i % 2 == 0, i as u64);
        check_matmul(m, n, kk, i % 2 == 1, 100 + i as u64);
    }
    // [B*T, 3C, C] of the default model with B = 2.
    check_matmul(256, 384, 128, true, 7);
}

#[test]
fn native_product_gradients_match_finite_differences() {
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
    let o = &mut NativeOps::new();
    let (xt, wt, gt) = (up(&x, &[m, kk]), up(&w, &[n, kk]), up(&g, &[m, n]));
    let (dx, dw, db) = (poisoned(&[m, kk]), poisoned(&[n, kk]), poisoned(&[n]));
    o.matmul_dx(&gt, &wt, &dx, false).unwrap();
    o.matmul_dw(&gt, &xt, &dw, false).unwrap();
    o.colsum(&gt, &db, false).unwrap();
    assert_close("matmul dx vs fd", &read(&dx), &fdx, FD_TOL);
    assert_close("matmul dw vs fd", &read(&dw), &fdw, FD_TOL);
    assert_close("matmul db vs fd", &read(&db), &fdb, FD_TOL);
}

// ---------------------------------------------------------------- layernorm

fn ln_native(
    x: &[f32],
    w: &[f32],
    bv: &[f32],
    dy: &[f32],
    rows: usize,
    cols: usize,
) -> [Vec<f32>; 6] {
    let o = &mut NativeOps::new();
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
    o.layernorm(&xt, &wt, &bt, &y, &mean, &rstd, 1e-5).unwrap();
    o.layernorm_bwd(&dyt, &xt, &wt, &mean, &rstd, &dx, &dw, &db, false, false)
        .unwrap();
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
fn native_layernorm_matches_the_reference_and_finite_differences() {
    for (i, &(rows, cols)) in [(1, 1), (7, 13), (3, 33), (37, 70), (256, 128)]
        .iter()
        .enumerate()
    {
        let mut rng = Rng::new(20 + i as u64);
        let x: Vec<f32> = rng.vec(rows * cols, 2.0).iter().map(|v| v + 0.5).collect();
        let (w, bv, dy) = (
            rng.vec(cols, 1.0),
            rng.vec(cols, 1.0),
            rng.vec(rows * cols, 1.0),
        );
        let [y, mean, rstd, dx, dw, db] = ln_native(&x, &w, &bv, &dy, rows, cols);
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
    // Near-constant rows: the result depends on eps itself.
    let (rows, cols) = (3, 128);
    let mut rng = Rng::new(77);
    let x = rng.vec(rows * cols, 1e-3);
    let (w, bv, dy) = (
        rng.vec(cols, 1.0),
        rng.vec(cols, 1.0),
        rng.vec(rows * cols, 1.0),
    );
    let [y, _, rstd, ..] = ln_native(&x, &w, &bv, &dy, rows, cols);
    let (ry, _, rr) = r::layernorm_fwd(&f64s(&x), &f64s(&w), &f64s(&bv), rows, cols, 1e-5);
    assert_close("near-constant layernorm y", &y, &ry, TOL);
    assert_close("near-constant layernorm rstd", &rstd, &rr, TOL);
    // Finite differences.
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
    let [_, _, _, dx, dw, db] = ln_native(&x, &w, &bv, &g, rows, cols);
    assert_close("layernorm dx vs fd", &dx, &fdx, FD_TOL);
    assert_close("layernorm dw vs fd", &dw, &fdw, FD_TOL);
    assert_close("layernorm db vs fd", &db, &fdb, FD_TOL);
}

#[test]
fn native_layernorm_backward_accumulates_where_asked() {
    let (rows, cols) = (5, 9);
    let mut rng = Rng::new(32);
    let (x, w, bv, dy) = (
        rng.vec(rows * cols, 1.0),
        rng.vec(cols, 1.0),
        rng.vec(cols, 1.0),
        rng.vec(rows * cols, 1.0),
    );
    let [_, mean, rstd, dx, dw, db] = ln_native(&x, &w, &bv, &dy, rows, cols);
    let o = &mut NativeOps::new();
    let (dx0, dw0) = (rng.vec(rows * cols, 1.0), rng.vec(cols, 1.0));
    let (dxa, dwa, dba) = (
        up(&dx0, &[rows, cols]),
        up(&dw0, &[cols]),
        up(&dw0, &[cols]),
    );
    let (xt, wt, dyt) = (
        up(&x, &[rows, cols]),
        up(&w, &[cols]),
        up(&dy, &[rows, cols]),
    );
    let (mt, rt) = (up(&mean, &[rows]), up(&rstd, &[rows]));
    o.layernorm_bwd(&dyt, &xt, &wt, &mt, &rt, &dxa, &dwa, &dba, true, true)
        .unwrap();
    let plus = |a: &[f32], b: &[f32]| -> Vec<f64> {
        a.iter()
            .zip(b)
            .map(|(a, b)| *a as f64 + *b as f64)
            .collect()
    };
    assert_close("layernorm dx acc", &read(&dxa), &plus(&dx, &dx0), 1e-6);
    assert_close("layernorm dw acc", &read(&dwa), &plus(&dw, &dw0), 1e-6);
    assert_close("layernorm db acc", &read(&dba), &plus(&db, &dw0), 1e-6);
}

// ---------------------------------------------------------------- attention

fn attn_native(s: AttnShape, qkv: &[f32], dout: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let o = &mut NativeOps::new();
    let (qt, dt) = (up(qkv, &[s.b, s.t, 3 * s.c]), up(dout, &[s.b, s.t, s.c]));
    let out = poisoned(&[s.b, s.t, s.c]);
    let p = poisoned(&[s.b, s.nh, s.t, s.t]);
    let ds = poisoned(&[s.b, s.nh, s.t, s.t]);
    let dqkv = poisoned(&[s.b, s.t, 3 * s.c]);
    o.attention(s, &qt, &out, &p).unwrap();
    o.attention_bwd(s, &dt, &qt, &p, &ds, &dqkv).unwrap();
    (read(&out), read(&p), read(&dqkv))
}

#[test]
fn native_attention_matches_the_reference_and_finite_differences() {
    let shape = |b, t, c, nh| AttnShape { b, t, c, nh };
    for (i, &s) in [
        shape(1, 1, 1, 1),
        shape(2, 7, 6, 3),
        shape(1, 13, 10, 2),
        shape(3, 19, 21, 3),
        shape(1, 128, 128, 4),
    ]
    .iter()
    .enumerate()
    {
        let mut rng = Rng::new(40 + i as u64);
        let qkv = rng.vec(s.b * s.t * 3 * s.c, 1.0);
        let dout = rng.vec(s.b * s.t * s.c, 1.0);
        let (out, p, dqkv) = attn_native(s, &qkv, &dout);
        let (rout, rp) = r::attention_fwd(&f64s(&qkv), s);
        let rd = r::attention_bwd(&f64s(&dout), &f64s(&qkv), &rp, s);
        let what = format!("attention {s:?}");
        assert_close(&what, &out, &rout, TOL);
        assert_close(&format!("{what} P"), &p, &rp, TOL);
        assert_close(&format!("{what} dqkv"), &dqkv, &rd, TOL);
    }
    let s = shape(2, 5, 6, 2);
    let mut rng = Rng::new(51);
    let qkv = rng.vec(s.b * s.t * 3 * s.c, 1.0);
    let g = rng.vec(s.b * s.t * s.c, 1.0);
    let g64 = f64s(&g);
    let fd = fd_grad(|v| dot(&r::attention_fwd(v, s).0, &g64), &f64s(&qkv), 1e-5);
    let (_, _, dqkv) = attn_native(s, &qkv, &g);
    assert_close("attention dqkv vs fd", &dqkv, &fd, FD_TOL);
}

#[test]
fn native_cached_attention_and_append_match_the_reference() {
    let mut rng = Rng::new(7);
    for &(t, c, nh, pos, n) in &[
        (13, 15, 3, 0, 1),
        (13, 15, 3, 12, 1),
        (9, 14, 2, 3, 5),
        (37, 7, 1, 20, 17),
    ] {
        let o = &mut NativeOps::new();
        let cache = rng.vec(t * 3 * c, 1.5);
        let rows = rng.vec(n * 3 * c, 1.5);
        let ct = up(&cache, &[t, 3 * c]);
        o.kv_append(&up(&rows, &[n, 3 * c]), &ct, pos).unwrap();
        let mut want_cache = cache.clone();
        want_cache[pos * 3 * c..(pos + n) * 3 * c].copy_from_slice(&rows);
        assert_eq!(read(&ct), want_cache, "kv_append writes exactly its rows");
        let out = poisoned(&[n, c]);
        o.attention_decode(nh, pos, &ct, &out).unwrap();
        let d = DecodeShape { t, c, nh, pos, n };
        let e = rel_err(&read(&out), &r::attention_decode(&f64s(&want_cache), d));
        assert!(e < TOL, "attention_decode {d:?}: relative error {e}");
    }
    let o = &mut NativeOps::new();
    let e = o
        .attention_decode(2, 3, &up(&[0.0; 48], &[4, 12]), &poisoned(&[2, 4]))
        .unwrap_err();
    assert!(e.to_string().contains("do not fit"), "{e}");
}

// ---------------------------------------------------------------- gelu, residual

#[test]
fn native_gelu_and_residual_match_the_reference() {
    for (i, &n) in [1usize, 7, 13 * 7, 1000, 256 * 512 + 3].iter().enumerate() {
        let o = &mut NativeOps::new();
        let mut rng = Rng::new(60 + i as u64);
        let (x, y2) = (rng.vec(n, 4.0), rng.vec(n, 1.0));
        let (xt, yt) = (up(&x, &[n]), up(&y2, &[n]));
        let (g, dg, s, da, db) = (
            poisoned(&[n]),
            poisoned(&[n]),
            poisoned(&[n]),
            poisoned(&[n]),
            poisoned(&[n]),
        );
        o.gelu(&xt, &g).unwrap();
        o.gelu_bwd(&xt, &yt, &dg, false).unwrap();
        o.add(&xt, &yt, &s).unwrap();
        o.residual_bwd(&yt, &da, &db, false).unwrap();
        assert_close(
            &format!("gelu {n}"),
            &read(&g),
            &r::gelu_fwd(&f64s(&x)),
            TOL,
        );
        let rdg = r::gelu_bwd(&f64s(&x), &f64s(&y2));
        assert_close(&format!("gelu_bwd {n}"), &read(&dg), &rdg, TOL);
        let rs = r::residual_fwd(&f64s(&x), &f64s(&y2));
        assert_close(&format!("add {n}"), &read(&s), &rs, TOL);
        assert_eq!(read(&da), y2, "residual_bwd passes dy");
        assert_eq!(read(&db), y2, "residual_bwd passes dy");
        o.gelu_bwd(&xt, &yt, &dg, true).unwrap();
        o.residual_bwd(&yt, &da, &db, true).unwrap();
        let twice: Vec<f64> = rdg.iter().map(|v| 2.0 * v).collect();
        assert_close("gelu_bwd acc", &read(&dg), &twice, TOL);
        let y2x2: Vec<f32> = y2.iter().map(|v| 2.0 * v).collect();
        assert_eq!(read(&da), y2x2);
        assert_eq!(read(&db), y2x2);
    }
    let mut rng = Rng::new(70);
    let (x, g) = (rng.vec(29, 5.0), rng.vec(29, 1.0));
    let g64 = f64s(&g);
    let fd = fd_grad(|v| dot(&r::gelu_fwd(v), &g64), &f64s(&x), 1e-6);
    let dx = poisoned(&[29]);
    NativeOps::new()
        .gelu_bwd(&up(&x, &[29]), &up(&g, &[29]), &dx, false)
        .unwrap();
    assert_close("gelu_bwd vs fd", &read(&dx), &fd, FD_TOL);
}

// ---------------------------------------------------------------- embedding

#[test]
fn native_embedding_matches_the_reference_and_finite_differences() {
    for (i, &(bb, t, c, v)) in [
        (1, 1, 1, 1),
        (2, 7, 13, 5),
        (3, 5, 3, 50),
        (2, 9, 70, 11),
        (8, 128, 128, 2048),
    ]
    .iter()
    .enumerate()
    {
        let o = &mut NativeOps::new();
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
        let tok = ids(&tokens, &[bb, t]);
        let (wtet, wpet, dxt) = (
            up(&wte, &[v, c]),
            up(&wpe, &[tmax, c]),
            up(&dx, &[bb, t, c]),
        );
        let (out, dwte, dwpe) = (
            poisoned(&[bb, t, c]),
            poisoned(&[v, c]),
            poisoned(&[tmax, c]),
        );
        let idx = o.embedding_index(&tokens, v).unwrap();
        o.embedding(&tok, &wtet, &wpet, &out).unwrap();
        o.embedding_bwd(&idx, &dxt, &dwte, &dwpe, false).unwrap();
        let what = format!("embedding {bb}x{t}x{c} V={v}");
        let want = r::embedding_fwd(&tokens, &f64s(&wte), &f64s(&wpe), bb, t, c);
        assert_close(&what, &read(&out), &want, TOL);
        let (rwte, rwpe) = r::embedding_bwd(&tokens, &f64s(&dx), v, bb, t, c);
        assert_close(&format!("{what} dwte"), &read(&dwte), &rwte, TOL);
        // Rows t >= T of dwpe are not touched (they keep their NaN poison).
        let got = read(&dwpe);
        assert_close(&format!("{what} dwpe"), &got[..t * c], &rwpe, TOL);
        assert!(got[t * c..].iter().all(|x| x.is_nan()));
        // Accumulating adds onto what is there.
        o.embedding_bwd(&idx, &dxt, &dwte, &dwpe, true).unwrap();
        let twice: Vec<f64> = rwte.iter().map(|v| 2.0 * v).collect();
        assert_close(&format!("{what} dwte acc"), &read(&dwte), &twice, TOL);
        if i == 1 {
            let g64 = f64s(&rng.vec(bb * t * c, 1.0));
            let g32: Vec<f32> = g64.iter().map(|&x| x as f32).collect();
            let fd_wte = fd_grad(
                |w| dot(&r::embedding_fwd(&tokens, w, &f64s(&wpe), bb, t, c), &g64),
                &f64s(&wte),
                1e-5,
            );
            o.embedding_bwd(&idx, &up(&g32, &[bb, t, c]), &dwte, &dwpe, false)
                .unwrap();
            assert_close("embedding dwte vs fd", &read(&dwte), &fd_wte, FD_TOL);
            // The KV-cache path's embedding at a position.
            let at = poisoned(&[3, c]);
            o.embedding_at(&ids(&tokens[..3], &[3]), &wtet, &wpet, &at, 4)
                .unwrap();
            let want = r::embedding_at(&tokens[..3], &f64s(&wte), &f64s(&wpe), 4, c);
            assert_close("embedding_at", &read(&at), &want, TOL);
        }
    }
    let o = &mut NativeOps::new();
    assert!(o.embedding_index(&[0, 5], 5).is_err(), "an id past V");
    let e = o
        .embedding(
            &ids(&[0, 5], &[1, 2]),
            &up(&[0.0; 10], &[5, 2]),
            &up(&[0.0; 4], &[2, 2]),
            &poisoned(&[1, 2, 2]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

// ---------------------------------------------------------------- cross-entropy

#[test]
fn native_crossentropy_matches_the_reference_and_finite_differences() {
    for (i, &(rows, v)) in [(1, 1), (1, 2), (7, 13), (5, 100), (256, 2048)]
        .iter()
        .enumerate()
    {
        let o = &mut NativeOps::new();
        let mut rng = Rng::new(90 + i as u64);
        let logits = rng.vec(rows * v, 5.0);
        let targets: Vec<u32> = (0..rows).map(|_| rng.below(v) as u32).collect();
        let (lt, tt) = (up(&logits, &[rows, v]), ids(&targets, &[rows]));
        let (losses, dl, only) = (poisoned(&[rows]), poisoned(&[rows, v]), poisoned(&[rows]));
        let scale = 1.0 / rows as f32;
        o.crossentropy(&lt, &tt, &losses, Some(&dl), scale).unwrap();
        o.crossentropy(&lt, &tt, &only, None, scale).unwrap();
        let (rl, rdl) = r::crossentropy(&f64s(&logits), &targets, rows, v, scale as f64);
        let what = format!("crossentropy {rows}x{v}");
        // v = 1: the loss is exactly 0 and the gradient exactly 0.
        let tol = if v == 1 { 1e-6 } else { TOL };
        assert_close(&what, &read(&losses), &rl, tol);
        assert_close(
            &format!("{what} without the gradient"),
            &read(&only),
            &rl,
            tol,
        );
        assert_close(&format!("{what} dlogits"), &read(&dl), &rdl, tol);
        if (rows, v) == (7, 13) {
            let fd = fd_grad(
                |x| {
                    let l = r::crossentropy(x, &targets, rows, v, 1.0).0;
                    l.iter().sum::<f64>() * scale as f64
                },
                &f64s(&logits),
                1e-5,
            );
            assert_close("crossentropy dlogits vs fd", &read(&dl), &fd, FD_TOL);
        }
    }
    let o = &mut NativeOps::new();
    let e = o
        .crossentropy(
            &up(&[0.0; 6], &[2, 3]),
            &ids(&[0, 3], &[2]),
            &poisoned(&[2]),
            None,
            1.0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

// ---------------------------------------------------------------- optimizer

#[test]
fn native_adamw_and_clipping_match_the_reference() {
    let o = &mut NativeOps::new();
    let mut rng = Rng::new(100);
    // The last tensor spans several reduction chunks, with a partial one at the end.
    let shapes: [&[usize]; 4] = [&[7, 13], &[13], &[300, 50], &[3, 4099]];
    let h = AdamW {
        lr: 1e-2,
        ..AdamW::default()
    };
    let n = |s: &[usize]| s.iter().product::<usize>();
    let params: Vec<Vec<f32>> = shapes.iter().map(|s| rng.vec(n(s), 1.0)).collect();
    let grads: Vec<Vec<f32>> = shapes.iter().map(|s| rng.vec(n(s), 3.0)).collect();
    let pt: Vec<CpuTensor> = params.iter().zip(shapes).map(|(p, s)| up(p, s)).collect();
    let gt: Vec<CpuTensor> = grads.iter().zip(shapes).map(|(g, s)| up(g, s)).collect();
    let mt: Vec<CpuTensor> = shapes.iter().map(|s| o.zeros(s).unwrap()).collect();
    let vt: Vec<CpuTensor> = shapes.iter().map(|s| o.zeros(s).unwrap()).collect();
    let grefs: Vec<&CpuTensor> = gt.iter().collect();
    let clip = poisoned(&[2]);
    let mut rp: Vec<Vec<f64>> = params.iter().map(|p| to_f64(p)).collect();
    let mut rm: Vec<Vec<f64>> = rp.iter().map(|p| vec![0.0; p.len()]).collect();
    let mut rv = rm.clone();
    let g64: Vec<Vec<f64>> = grads.iter().map(|g| f64s(g)).collect();
    let norm = r::global_norm(&g64.iter().map(|g| &g[..]).collect::<Vec<_>>());
    let scale = r::clip_factor(norm, 1.0);
    for step in 1..=3u64 {
        o.grad_norm_clip(&grefs, &clip, 1.0).unwrap();
        for i in 0..shapes.len() {
            o.adamw(&h, step, &pt[i], &gt[i], &mt[i], &vt[i], Some(&clip))
                .unwrap();
        }
        let c = read(&clip);
        assert!(
            (c[0] as f64 - norm).abs() < 1e-6 * norm,
            "norm {} vs {norm}",
            c[0]
        );
        assert!((c[1] as f64 - scale).abs() < 1e-6 * scale);
        for i in 0..shapes.len() {
            let wd = if shapes[i].len() >= 2 {
                h.weight_decay as f64
            } else {
                0.0
            };
            r::adamw(
                &mut rp[i], &g64[i], &mut rm[i], &mut rv[i], &h, wd, step, scale,
            );
            let what = format!("adamw tensor {i} step {step}");
            assert_close(&what, &read(&pt[i]), &rp[i], TOL);
            assert_close(&format!("{what} m"), &read(&mt[i]), &rm[i], TOL);
            assert_close(&format!("{what} v"), &read(&vt[i]), &rv[i], TOL);
        }
    }
    // Small gradients are not clipped.
    let g = up(&[0.1, 0.2, -0.2], &[3]);
    o.grad_norm_clip(&[&g], &clip, 1.0).unwrap();
    let c = read(&clip);
    assert!((c[0] - 0.3).abs() < 1e-6 && c[1] == 1.0, "{c:?}");
    // Weight decay only on 2-D tensors: with zero gradients, a 1-D tensor stays put.
    let (p1, p2) = (up(&[1.0, -2.0, 3.0], &[3]), up(&[1.0, -2.0, 3.0], &[1, 3]));
    let z = o.zeros(&[3]).unwrap();
    let zs = || NativeOps::new().zeros(&[3]).unwrap();
    o.adamw(&h, 1, &p1, &z, &zs(), &zs(), None).unwrap();
    o.adamw(&h, 1, &p2, &z, &zs(), &zs(), None).unwrap();
    assert_eq!(read(&p1), vec![1.0, -2.0, 3.0]);
    assert!((read(&p2)[0] - (1.0 - 1e-2 * 0.1)).abs() < 1e-6);
}

#[test]
fn a_native_op_refuses_an_output_that_is_also_an_input() {
    let o = &mut NativeOps::new();
    let x = up(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let e = o.gelu(&x, &x).unwrap_err();
    assert!(e.to_string().contains("in-place"), "{e}");
    let w = up(&[1.0; 4], &[2, 2]);
    assert!(o.matmul(&x, &w, None, &x, false).is_err());
    assert!(o.matmul(&x, &w, None, &w, false).is_err());
    // Nothing was written.
    assert_eq!(read(&x), vec![1.0, 2.0, 3.0, 4.0]);
}

// ---------------------------------------------------------------- whole steps

#[test]
fn the_native_and_reference_implementations_agree_on_a_training_step() {
    let cpu = crate::gpu_ops::step(&mut CpuOps, 5).unwrap();
    let nat = crate::gpu_ops::step(&mut NativeOps::new(), 5).unwrap();
    assert_close("loss", &nat.loss, &f64s(&cpu.loss), 1e-5);
    for (i, (g, c)) in nat.grads.iter().zip(&cpu.grads).enumerate() {
        assert_close(&format!("grad {i}"), g, &f64s(c), 1e-4);
    }
    for (i, (g, c)) in nat.params.iter().zip(&cpu.params).enumerate() {
        assert_close(&format!("param {i}"), g, &f64s(c), 1e-5);
    }
}

fn rows(cfg: &GptConfig, n: usize, seed: u64) -> Vec<u32> {
    let mut r = Rng::new(seed);
    (0..n * (cfg.context + 1))
        .map(|_| r.below(cfg.vocab_size) as u32)
        .collect()
}

/// (loss, grad norm, gradients, updated parameters) after `steps` steps from `w`.
fn train<O: Ops>(
    ops: &mut O,
    w: &Weights,
    batch: usize,
    steps: u64,
    h: &Hyper,
) -> (Vec<f32>, Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let cfg = w.cfg;
    let mut m = Model::new(ops, w, batch).unwrap();
    let mut stats = Vec::new();
    for s in 1..=steps {
        let st = m.train_step(ops, &rows(&cfg, batch, s), h, s).unwrap();
        stats.extend([st.loss, st.grad_norm]);
    }
    let g = m.grads(ops).unwrap();
    (stats, g, m.weights(ops).unwrap().tensors)
}

#[test]
fn one_native_model_step_agrees_with_the_f64_reference() {
    let cfg = small();
    let w = Weights::init(cfg, 0.1, 7);
    // eps 1e-3: see model.rs (a gradient that is zero in exact arithmetic, the key bias, would
    // otherwise be decided by rounding noise).
    let h = Hyper {
        lr: 1e-2,
        eps: 1e-3,
        grad_clip: 0.5,
        ..Hyper::default()
    };
    let (cs, cg, cp) = train(&mut CpuOps, &w, 3, 1, &h);
    let (ns, ng, np) = train(&mut NativeOps::new(), &w, 3, 1, &h);
    assert!(
        (cs[0] - ns[0]).abs() <= 1e-5 * cs[0].abs(),
        "loss {} {}",
        cs[0],
        ns[0]
    );
    assert!(
        (cs[1] - ns[1]).abs() <= 1e-4 * cs[1],
        "norm {} {}",
        cs[1],
        ns[1]
    );
    for (i, s) in specs(&cfg).iter().enumerate() {
        let e = rel(&ng[i], &cg[i]);
        assert!(e < 1e-4, "gradient of {}: relative error {e:e}", s.name);
        let e = rel(&np[i], &cp[i]);
        assert!(e < 1e-4, "updated {}: relative error {e:e}", s.name);
    }
}

#[test]
fn native_training_gives_the_same_bits_twice_and_on_1_2_and_3_threads() {
    // Odd sizes, a batch that does not split evenly, several steps.
    let cfg = GptConfig {
        vocab_size: 97,
        context: 13,
        n_layer: 2,
        n_head: 3,
        n_embd: 24,
    };
    let w = Weights::init(cfg, 0.1, 3);
    let h = Hyper::default();
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let (s, g, p) = pool.install(|| train(&mut NativeOps::new(), &w, 5, 3, &h));
        (bits(&[s]), bits(&g), bits(&p))
    };
    let one = on(1);
    assert!(one.0[0].iter().all(|&b| f32::from_bits(b).is_finite()));
    assert_eq!(one, on(1), "two runs on one thread");
    assert_eq!(one, on(2), "one thread against two");
    assert_eq!(one, on(3), "one thread against three");
}

#[test]
fn native_decoding_matches_the_full_forward_pass_and_the_reference() {
    let cfg = GptConfig {
        vocab_size: 37,
        context: 11,
        n_layer: 2,
        n_head: 3,
        n_embd: 15,
    };
    let w = Weights::init(cfg, 0.3, 4);
    let v = cfg.vocab_size;
    let tokens: Vec<u32> = (0..cfg.context as u32)
        .map(|i| (i * 7 + 3) % v as u32)
        .collect();
    let mut ops = NativeOps::new();
    let mut model = Model::new(&mut ops, &w, 2).unwrap();
    let full = model.logits(&mut ops, &tokens).unwrap();
    let mut g = Generator::new(&mut ops, &w).unwrap();
    let pre = g.feed(&mut ops, &tokens[..4]).unwrap();
    assert!(rel(&pre, &full[..4 * v]) < 1e-5);
    for (i, &tok) in tokens.iter().enumerate().skip(4) {
        let step = g.feed(&mut ops, &[tok]).unwrap();
        let e = rel(&step, &full[i * v..(i + 1) * v]);
        assert!(e < 1e-5, "position {i}: {e}");
    }
    let mut cops = CpuOps;
    let mut cg = Generator::new(&mut cops, &w).unwrap();
    let want = cg.feed(&mut cops, &tokens).unwrap();
    let mut ng = Generator::new(&mut ops, &w).unwrap();
    let got = ng.feed(&mut ops, &tokens).unwrap();
    assert!(rel64(&got, &want) < 1e-5);
}

fn rel64(a: &[f32], b: &[f32]) -> f64 {
    rel_err64(&f64s(a), &f64s(b))
}

// ---------------------------------------------------------------- the adapter, end to end

/// `pai` with `--adapter cpu` and no Vulkan or EGL driver reachable: wgpu would find no
/// adapter (`pai doctor` lists none there), so nothing may need one.
fn native(p: &crate::common::Proj, args: &[&str]) -> (serde_json::Value, i32) {
    let mut all = vec!["--json", "--adapter", "CPU"];
    all.extend_from_slice(args);
    let out = p
        .cmd(&all)
        .env("VK_ICD_FILENAMES", "/nonexistent.json")
        .env("VK_DRIVER_FILES", "/nonexistent.json")
        .env("__EGL_VENDOR_LIBRARY_FILENAMES", "/nonexistent.json")
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "pai {args:?} printed no JSON ({e}): {}",
            crate::common::stderr(&out)
        )
    });
    (v, out.status.code().unwrap_or(-1))
}

#[test]
fn the_tiny_pipeline_builds_on_the_native_adapter_with_the_keys_of_a_default_build() {
    use crate::common::{Proj, statuses};
    let p = Proj::with_pipeline(include_str!("../../pipelines/tiny.toml"));
    let (v, code) = native(&p, &["build", "final-4bit", "final-8bit", "eval", "hf"]);
    assert_eq!(code, 0, "{v}");
    let built = statuses(&v);
    assert!(built.values().all(|s| s == "built"), "{built:?}");
    // Every node that uses the device ran on the native adapter and dispatched no kernel.
    for node in ["train", "final-4bit", "final-8bit", "eval"] {
        let key = p.read(&format!("cache/refs/{node}"));
        let rec: serde_json::Value =
            serde_json::from_str(&p.read(&format!("cache/records/{}.json", key.trim()))).unwrap();
        let ran = &rec["ran_on"];
        let adapter = ran["adapter"].as_str().unwrap();
        assert!(adapter.starts_with("cpu (native f32, "), "{node}: {ran}");
        assert_eq!(ran["backend"], "native", "{node}: {ran}");
        assert_eq!(ran["kernels"], serde_json::json!([]), "{node}: {ran}");
    }
    // The keys are those the default adapter computes: a default build finds everything fresh.
    let again = p.build(&["final-4bit", "final-8bit", "eval", "hf"]);
    assert!(again.values().all(|s| s == "fresh"), "{again:?}");
    // The evaluation and the models it read are sane: about the uniform guess or below.
    let eval: serde_json::Value =
        serde_json::from_str(&p.read("cache/out/eval/eval.json")).unwrap();
    for m in eval["models"].as_array().unwrap() {
        let l = m["val_loss"].as_f64().unwrap();
        assert!(l.is_finite() && l < (320f64).ln() + 0.5, "{m}");
    }
    // Generation on the native adapter.
    let (g, code) = native(&p, &["generate", "--tokens", "5", "--seed", "3", "the"]);
    assert_eq!(code, 0, "{g}");
    assert_eq!(g["tokens"], 5, "{g}");
}

#[test]
fn doctor_lists_the_native_adapter_beside_the_wgpu_ones_and_never_chooses_it_by_default() {
    let p = crate::common::Proj::new();
    let (v, _) = p.json(&["doctor"]);
    let n = &v["native"];
    assert_eq!(n["name"], "cpu", "{v}");
    assert_eq!(n["chosen"], false, "{v}");
    assert_eq!(n["opt_in"], "opt-in: --adapter cpu");
    assert!(n["sgemm_gflops"].as_f64().unwrap() > 0.0, "{n}");
    assert!(
        v["adapters"].is_array(),
        "the wgpu adapters are still listed"
    );
    let (v, code) = native(&p, &["doctor"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["native"]["chosen"], true, "{v}");
    assert_eq!(
        v["chosen"],
        serde_json::Value::Null,
        "no wgpu adapter chosen"
    );
    // `cpu` is reserved: it never selects a wgpu adapter by substring.
    let out = p.run(&["--adapter", "cpu", "bench", "kernels"]);
    assert!(!out.status.success());
    assert!(crate::common::stderr(&out).contains("native CPU adapter"));
}

#[test]
fn a_native_training_build_gives_the_same_bytes_for_any_number_of_threads() {
    use crate::common::{Proj, model_pipeline};
    // Wide enough (256 rows × 128 channels) that sgemm splits its work when it has threads.
    let pipeline = model_pipeline(64, 1, 128, 4, "", "");
    let model = |sgemm: &str, rayon: &str| {
        let p = Proj::with_pipeline(&pipeline);
        let out = p
            .cmd(&["--json", "--adapter", "cpu", "build", "train"])
            .env("MATMUL_NUM_THREADS", sgemm)
            .env("RAYON_NUM_THREADS", rayon)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", crate::common::stderr(&out));
        let key = p.read("cache/refs/train");
        let rec: serde_json::Value =
            serde_json::from_str(&p.read(&format!("cache/records/{}.json", key.trim()))).unwrap();
        let adapter = rec["ran_on"]["adapter"].as_str().unwrap().to_string();
        (
            std::fs::read(p.path("cache/out/train/model.safetensors")).unwrap(),
            adapter,
        )
    };
    let (one, a1) = model("1", "1");
    let (many, a4) = model("4", "3");
    assert_eq!(a1, "cpu (native f32, 1 thread)");
    assert_eq!(a4, "cpu (native f32, 3 threads, sgemm 4)");
    assert!(
        one == many,
        "the trained weights differ between 1 and 3-4 threads"
    );
}
