//! The KV-cache path: its kernels (embedding at a position, cached attention, the cache append)
//! against their f64 references at odd sizes, and the whole decode path against the full
//! forward pass.

use crate::gpu_util::*;
use pai::gpu::ops::attention::{self as att, DecodeShape};
use pai::gpu::ops::embedding as emb;
use pai::gpu::ops::{CpuOps, GpuOps};
use pai::gpu::reference::{self as r, AttnShape};
use pai::model::{Generator, GptConfig, Model, Sampling, Weights};

fn run(f: impl FnOnce(&mut pai::gpu::Batch) -> anyhow::Result<()>) {
    let mut b = gpu().batch();
    f(&mut b).unwrap();
    b.run().unwrap();
}

#[test]
fn cached_attention_matches_its_reference_at_odd_sizes() {
    let mut rng = Rng::new(7);
    // (T, C, NH, pos, n): heads of 1, 5 and 7 channels, one and several new rows.
    for &(t, c, nh, pos, n) in &[
        (13, 15, 3, 0, 1),
        (13, 15, 3, 12, 1),
        (9, 14, 2, 3, 5),
        (37, 7, 1, 20, 17),
        (5, 10, 2, 0, 5),
    ] {
        let cache = rng.vec(t * 3 * c, 1.5);
        let ct = up(&cache, &[t, 3 * c]);
        let out = poisoned(&[n, c]);
        run(|b| att::attention_decode(b, nh, pos, &ct, &out));
        let d = DecodeShape { t, c, nh, pos, n };
        let want = r::attention_decode(&f64s(&cache), d);
        let e = rel_err(&read(&out), &want);
        assert!(e < 1e-5, "attention_decode {d:?}: relative error {e}");
        // The rows of the full causal attention at those positions.
        let (full, _) = r::attention_fwd(&f64s(&cache), AttnShape { b: 1, t, c, nh });
        assert!(rel_err64(&want, &full[pos * c..(pos + n) * c]) < 1e-12);
    }
}

#[test]
fn cached_attention_refuses_positions_past_the_cache() {
    let ct = gpu().zeros(&[4, 12]).unwrap();
    let out = gpu().zeros(&[2, 4]).unwrap();
    let mut b = gpu().batch();
    let e = att::attention_decode(&mut b, 2, 3, &ct, &out).unwrap_err();
    assert!(e.to_string().contains("do not fit"), "{e}");
}

#[test]
fn embedding_at_a_position_matches_its_reference() {
    let mut rng = Rng::new(3);
    for &(v, t, c, pos, n) in &[(11, 9, 5, 0, 1), (11, 9, 5, 8, 1), (23, 31, 13, 4, 19)] {
        let wte = rng.vec(v * c, 1.0);
        let wpe = rng.vec(t * c, 1.0);
        let ids: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
        let out = poisoned(&[n, c]);
        let (a, p, i) = (
            up(&wte, &[v, c]),
            up(&wpe, &[t, c]),
            gpu().upload_u32(&ids, &[n]).unwrap(),
        );
        run(|b| emb::embedding_at(b, &i, &a, &p, &out, pos));
        let want = r::embedding_at(&ids, &f64s(&wte), &f64s(&wpe), pos, c);
        assert!(
            rel_err(&read(&out), &want) < 1e-7,
            "embedding_at v{v} t{t} c{c} pos{pos} n{n}"
        );
    }
    // Past the context: refused on the host.
    let (a, p) = (up(&[0.0; 6], &[2, 3]), up(&[0.0; 6], &[2, 3]));
    let i = gpu().upload_u32(&[0, 1], &[2]).unwrap();
    let out = gpu().zeros(&[2, 3]).unwrap();
    assert!(emb::embedding_at(&mut gpu().batch(), &i, &a, &p, &out, 1).is_err());
}

#[test]
fn the_cache_append_writes_exactly_its_rows() {
    let mut rng = Rng::new(5);
    let (t, c, pos, n) = (7, 5, 2, 3);
    let before = rng.vec(t * 3 * c, 1.0);
    let rows = rng.vec(n * 3 * c, 1.0);
    let cache = up(&before, &[t, 3 * c]);
    let q = up(&rows, &[n, 3 * c]);
    run(|b| att::kv_append(b, &q, &cache, pos));
    let mut want = before.clone();
    want[pos * 3 * c..(pos + n) * 3 * c].copy_from_slice(&rows);
    assert_eq!(read(&cache), want);
}

fn tiny() -> Weights {
    let cfg = GptConfig {
        vocab_size: 37,
        context: 11,
        n_layer: 2,
        n_head: 3,
        n_embd: 15,
    };
    // A larger init than GPT-2's so that the logits differ visibly between positions.
    Weights::init(cfg, 0.3, 4)
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / scale)
        .fold(0f32, f32::max)
}

#[test]
fn kv_cache_logits_equal_full_forward_logits() {
    let w = tiny();
    let (t, v) = (w.cfg.context, w.cfg.vocab_size);
    let tokens: Vec<u32> = (0..t as u32).map(|i| (i * 7 + 3) % v as u32).collect();
    let mut ops = GpuOps::new(gpu());
    let mut model = Model::new(&mut ops, &w, 2).unwrap();
    let full = model.logits(&mut ops, &tokens).unwrap();
    // Token by token through the decode path: every position.
    let mut g = Generator::new(&mut ops, &w).unwrap();
    for (i, &tok) in tokens.iter().enumerate() {
        let step = g.feed(&mut ops, &[tok]).unwrap();
        let e = max_rel(&step, &full[i * v..(i + 1) * v]);
        assert!(
            e < 1e-4,
            "position {i}: token-by-token logits differ by {e}"
        );
    }
    assert!(g.feed(&mut ops, &[0]).is_err(), "the context is full");
    // A prompt of 4 in one call, then single tokens: the same logits.
    g.reset();
    let pre = g.feed(&mut ops, &tokens[..4]).unwrap();
    assert!(max_rel(&pre, &full[..4 * v]) < 1e-4);
    for i in 4..t {
        let step = g.feed(&mut ops, &[tokens[i]]).unwrap();
        let e = max_rel(&step, &full[i * v..(i + 1) * v]);
        assert!(e < 1e-4, "position {i} after a prefill: {e}");
    }
    // A prefix's full forward equals the longer one's first rows (causality).
    let short = model.logits(&mut ops, &tokens[..5]).unwrap();
    assert!(max_rel(&short, &full[..5 * v]) < 1e-5);
}

#[test]
fn the_decode_path_on_the_gpu_matches_the_reference_implementation() {
    let w = tiny();
    let tokens = [1u32, 5, 9, 2, 30, 0, 36];
    let mut gops = GpuOps::new(gpu());
    let mut cops = CpuOps;
    let mut gg = Generator::new(&mut gops, &w).unwrap();
    let mut cg = Generator::new(&mut cops, &w).unwrap();
    let a = gg.feed(&mut gops, &tokens).unwrap();
    let b = cg.feed(&mut cops, &tokens).unwrap();
    assert!(max_rel(&a, &b) < 1e-4, "{}", max_rel(&a, &b));
}

#[test]
fn generation_is_a_function_of_the_seed() {
    let w = tiny();
    let mut ops = GpuOps::new(gpu());
    let mut g = Generator::new(&mut ops, &w).unwrap();
    let mut gen_with = |s: Sampling, n| {
        pai::model::generate(&mut ops, &mut g, &[0, 4], n, s, &mut |_| Ok(())).unwrap()
    };
    let s = |seed, temperature| Sampling {
        temperature,
        top_k: 0,
        seed,
    };
    let a = gen_with(s(1, 1.0), 9);
    assert_eq!(
        a.tokens.len(),
        9,
        "9 = context 11 - prompt 2 + 1 (the last is not fed)"
    );
    assert_eq!(a.tokens, gen_with(s(1, 1.0), 9).tokens);
    assert_ne!(a.tokens, gen_with(s(2, 1.0), 9).tokens);
    assert_eq!(
        gen_with(s(1, 0.0), 20).tokens,
        gen_with(s(9, 0.0), 20).tokens
    );
    assert_eq!(gen_with(s(1, 1.0), 3).tokens.len(), 3);
}
