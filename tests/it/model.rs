//! The GPT-2 model: a training step agrees between the WGSL and the plain-Rust implementations
//! and with finite differences, training lowers the loss, runs are bit-reproducible, and the
//! weights, optimizer state and checkpoints round-trip through safetensors with the Hugging Face
//! names and layouts.

use crate::gpu_util::gpu;
use pai::formats::safetensors::{self as st, Entry};
use pai::gpu::ops::{CpuOps, GpuOps, Ops};
use pai::model::rng::SplitMix64;
use pai::model::{
    GptConfig, Hyper, Model, OptState, Weights, check_fits, checkpoint_from_safetensors,
    checkpoint_to_safetensors, memory_plan, opt_from_safetensors, opt_to_safetensors, specs,
};
use serde_json::{Value, json};

pub(crate) fn small() -> GptConfig {
    GptConfig {
        vocab_size: 301,
        context: 7,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
    }
}

fn rows(cfg: &GptConfig, n: usize, seed: u64) -> Vec<u32> {
    let mut r = SplitMix64(seed);
    (0..n * (cfg.context + 1))
        .map(|_| (r.next_u64() % cfg.vocab_size as u64) as u32)
        .collect()
}

/// max|a − b| / max(max|b|, 1e-30), per tensor: the error relative to the tensor's scale.
pub(crate) fn rel(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).abs())
        .fold(0.0, f64::max);
    let den = b.iter().map(|y| (*y as f64).abs()).fold(0.0, f64::max);
    num / den.max(1e-30)
}

pub(crate) fn bits(x: &[Vec<f32>]) -> Vec<Vec<u32>> {
    x.iter()
        .map(|t| t.iter().map(|v| v.to_bits()).collect())
        .collect()
}

struct StepOut {
    loss: f32,
    grad_norm: f32,
    grads: Vec<Vec<f32>>,
    params: Vec<Vec<f32>>,
}

fn one_step<O: Ops>(ops: &mut O, w: &Weights, batch: usize, data: &[u32], h: &Hyper) -> StepOut {
    let mut m = Model::new(ops, w, batch).unwrap();
    let s = m.train_step(ops, data, h, 1).unwrap();
    StepOut {
        loss: s.loss,
        grad_norm: s.grad_norm,
        grads: m.grads(ops).unwrap(),
        params: m.weights(ops).unwrap().tensors,
    }
}

#[test]
fn one_optimizer_step_agrees_between_the_gpu_and_the_cpu_reference() {
    let cfg = small();
    let w = Weights::init(cfg, 0.1, 7);
    let data = rows(&cfg, 3, 1);
    // eps 1e-3: a first Adam step moves a parameter by about lr·sign(g), so a gradient that is
    // zero in exact arithmetic (the key bias) would otherwise be decided by rounding noise.
    let h = Hyper {
        lr: 1e-2,
        eps: 1e-3,
        grad_clip: 0.5,
        ..Hyper::default()
    };
    let cpu = one_step(&mut CpuOps, &w, 3, &data, &h);
    let g = one_step(&mut GpuOps::new(gpu()), &w, 3, &data, &h);
    assert!(
        (cpu.loss - g.loss).abs() <= 1e-4 * cpu.loss.abs(),
        "{} {}",
        cpu.loss,
        g.loss
    );
    assert!((cpu.grad_norm - g.grad_norm).abs() <= 1e-4 * cpu.grad_norm);
    // A random model's loss is about ln(V).
    assert!((cpu.loss - (301f32).ln()).abs() < 0.5, "{}", cpu.loss);
    println!("loss {} norm {}", cpu.loss, cpu.grad_norm);
    let mut worst = (0.0, 0.0);
    for (i, s) in specs(&cfg).iter().enumerate() {
        worst.0 = rel(&g.grads[i], &cpu.grads[i]).max(worst.0);
        worst.1 = rel(&g.params[i], &cpu.params[i]).max(worst.1);
        let e = rel(&g.grads[i], &cpu.grads[i]);
        assert!(e < 1e-4, "gradient of {}: relative error {e:e}", s.name);
        let e = rel(&g.params[i], &cpu.params[i]);
        assert!(e < 1e-4, "updated {}: relative error {e:e}", s.name);
        assert_ne!(
            bits(&[cpu.params[i].clone()]),
            bits(&[w.tensors[i].clone()])
        );
    }
    println!(
        "worst relative error: gradients {:e}, parameters {:e}",
        worst.0, worst.1
    );
}

#[test]
fn the_whole_model_gradient_matches_finite_differences_on_the_cpu_reference() {
    let cfg = GptConfig {
        vocab_size: 23,
        context: 5,
        n_layer: 2,
        n_head: 2,
        n_embd: 8,
    };
    let mut w = Weights::init(cfg, 0.3, 3);
    // LayerNorm weights and biases away from 1 and 0, so their gradients are exercised.
    let mut r = SplitMix64(9);
    for (s, t) in specs(&cfg).iter().zip(&mut w.tensors) {
        if s.shape.len() == 1 {
            for v in t.iter_mut() {
                *v += ((r.next_u64() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.4;
            }
        }
    }
    let data = rows(&cfg, 2, 4);
    let mut ops = CpuOps;
    let mut m = Model::new(&mut ops, &w, 2).unwrap();
    m.train_step(&mut ops, &data, &Hyper::default(), 1).unwrap();
    let grads = m.grads(&mut ops).unwrap();
    let loss = |w: &Weights| -> f64 {
        let mut ops = CpuOps;
        let mut m = Model::new(&mut ops, w, 2).unwrap();
        m.loss(&mut ops, &data).unwrap() as f64
    };
    // f32 losses of about 3 put a noise floor near 1e-5 on these differences.
    let h = 1e-2;
    let sp = specs(&cfg);
    let mut checked = 0;
    for (i, s) in sp.iter().enumerate() {
        let g = &grads[i];
        let scale = g.iter().fold(0f32, |a, v| a.max(v.abs())) as f64;
        let argmax = (0..g.len())
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap();
        let coords = [
            argmax,
            (r.next_u64() % g.len() as u64) as usize,
            (r.next_u64() % g.len() as u64) as usize,
        ];
        for &j in &coords {
            let mut wp = w.clone();
            let (hi, lo) = (w.tensors[i][j] + h as f32, w.tensors[i][j] - h as f32);
            wp.tensors[i][j] = hi;
            let up = loss(&wp);
            wp.tensors[i][j] = lo;
            let down = loss(&wp);
            let fd = (up - down) / (hi as f64 - lo as f64);
            let an = g[j] as f64;
            assert!(
                (fd - an).abs() <= 1e-2 * an.abs() + 1e-3 * scale + 1e-6,
                "{}[{j}]: finite difference {fd:e}, backward {an:e} (tensor scale {scale:e})",
                s.name
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 3 * sp.len());
}

#[test]
fn the_loss_falls_when_the_gpu_overfits_two_repeated_rows() {
    let cfg = GptConfig {
        vocab_size: 64,
        context: 16,
        n_layer: 2,
        n_head: 2,
        n_embd: 32,
    };
    let w = Weights::init(cfg, 0.02, 11);
    let data = rows(&cfg, 2, 5);
    let mut ops = GpuOps::new(gpu());
    let mut m = Model::new(&mut ops, &w, 2).unwrap();
    let h = Hyper {
        lr: 1e-2,
        weight_decay: 0.0,
        ..Hyper::default()
    };
    let first = m.loss(&mut ops, &data).unwrap();
    let mut last = first;
    for step in 1..=60 {
        let s = m.train_step(&mut ops, &data, &h, step).unwrap();
        assert!(s.loss.is_finite() && s.grad_norm.is_finite());
        last = s.loss;
    }
    let after = m.loss(&mut ops, &data).unwrap();
    assert!(
        after < first / 2.0 && last < first / 2.0,
        "loss {first} → {last} (train) / {after} (eval)"
    );
}

#[test]
fn two_gpu_runs_from_the_same_init_give_bit_identical_weights() {
    let cfg = small();
    let w = Weights::init(cfg, 0.02, 1);
    let run = || {
        let mut ops = GpuOps::new(gpu());
        let mut m = Model::new(&mut ops, &w, 3).unwrap();
        let mut losses = vec![];
        for step in 1..=3 {
            let data = rows(&cfg, 3, 100 + step);
            losses.push(
                m.train_step(&mut ops, &data, &Hyper::default(), step)
                    .unwrap()
                    .loss
                    .to_bits(),
            );
        }
        (losses, bits(&m.weights(&mut ops).unwrap().tensors))
    };
    assert!(run() == run(), "two identical runs differ");
}

#[test]
fn loss_evaluates_fewer_rows_than_the_batch_and_ignores_the_padding() {
    let cfg = small();
    let w = Weights::init(cfg, 0.1, 2);
    let data = rows(&cfg, 3, 8);
    let mut ops = CpuOps;
    let mut one = Model::new(&mut ops, &w, 1).unwrap();
    let mut three = Model::new(&mut ops, &w, 3).unwrap();
    let row = &data[8..16];
    let a = one.loss(&mut ops, row).unwrap();
    let b = three.loss(&mut ops, row).unwrap();
    assert_eq!(a.to_bits(), b.to_bits());
    // Whole rows only, at most a batch, ids inside the vocabulary; errors, not panics.
    let e = three.loss(&mut ops, &data[..10]).unwrap_err().to_string();
    assert!(e.contains("whole rows"), "{e}");
    let e = one.loss(&mut ops, &data[..16]).unwrap_err().to_string();
    assert!(e.contains("batch of 1"), "{e}");
    let mut bad = row.to_vec();
    bad[3] = 301;
    let e = one.loss(&mut ops, &bad).unwrap_err().to_string();
    assert!(
        e.contains("token id 301") && e.contains("position 3"),
        "{e}"
    );
    let e = one.grads(&mut ops).unwrap_err().to_string();
    assert!(e.contains("train_step"), "{e}");
}

fn one_layer() -> GptConfig {
    GptConfig {
        vocab_size: 11,
        context: 5,
        n_layer: 1,
        n_head: 2,
        n_embd: 8,
    }
}

/// The safetensors header, parsed independently of the crate.
fn header(bytes: &[u8]) -> serde_json::Map<String, Value> {
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "header padded to 8 bytes");
    serde_json::from_slice::<Value>(&bytes[8..8 + n])
        .unwrap()
        .as_object()
        .unwrap()
        .clone()
}

#[test]
fn weights_round_trip_through_safetensors_with_the_names_shapes_and_dtypes_transformers_expects() {
    let cfg = one_layer();
    let w = Weights::init(cfg, 0.02, 5);
    let bytes = w.to_safetensors().unwrap();
    let back = Weights::from_safetensors(&cfg, &bytes).unwrap();
    assert_eq!(bits(&back.tensors), bits(&w.tensors));
    assert_eq!(back.to_safetensors().unwrap(), bytes);

    // Hugging Face GPT2LMHeadModel names; Conv1D weights stored (in, out); lm_head tied.
    let expected: &[(&str, &[usize])] = &[
        ("transformer.wte.weight", &[11, 8]),
        ("transformer.wpe.weight", &[5, 8]),
        ("transformer.h.0.ln_1.weight", &[8]),
        ("transformer.h.0.ln_1.bias", &[8]),
        ("transformer.h.0.attn.c_attn.weight", &[8, 24]),
        ("transformer.h.0.attn.c_attn.bias", &[24]),
        ("transformer.h.0.attn.c_proj.weight", &[8, 8]),
        ("transformer.h.0.attn.c_proj.bias", &[8]),
        ("transformer.h.0.ln_2.weight", &[8]),
        ("transformer.h.0.ln_2.bias", &[8]),
        ("transformer.h.0.mlp.c_fc.weight", &[8, 32]),
        ("transformer.h.0.mlp.c_fc.bias", &[32]),
        ("transformer.h.0.mlp.c_proj.weight", &[32, 8]),
        ("transformer.h.0.mlp.c_proj.bias", &[8]),
        ("transformer.ln_f.weight", &[8]),
        ("transformer.ln_f.bias", &[8]),
    ];
    let h = header(&bytes);
    assert_eq!(h["__metadata__"], json!({"format": "pt"}));
    assert_eq!(h.len(), expected.len() + 1);
    for (name, shape) in expected {
        let t = &h[*name];
        assert_eq!(t["dtype"], "F32", "{name}");
        assert_eq!(t["shape"], json!(shape), "{name}");
    }
    // The stored c_fc weight is the transpose of pai's [4C, C]: element (i, o) = w[o][i].
    let r = st::Reader::new(&bytes).unwrap();
    let stored = r.f32("transformer.h.0.mlp.c_fc.weight", &[8, 32]).unwrap();
    let fc = &w.tensors[2 + 8];
    assert_eq!(specs(&cfg)[2 + 8].name, "transformer.h.0.mlp.c_fc.weight");
    for i in 0..8 {
        for o in 0..32 {
            assert_eq!(stored[i * 32 + o].to_bits(), fc[o * 8 + i].to_bits());
        }
    }
}

#[test]
fn a_weights_file_with_a_wrong_shape_or_a_missing_tensor_is_refused_naming_the_tensor() {
    let cfg = one_layer();
    let w = Weights::init(cfg, 0.02, 5);
    // The c_fc weight written in compute layout [32, 8] instead of Hugging Face's [8, 32].
    let entries: Vec<Entry> = specs(&cfg)
        .iter()
        .zip(&w.tensors)
        .map(|(s, t)| Entry::f32(&s.name, &s.hf_shape(), t))
        .map(|mut e| {
            if e.name == "transformer.h.0.mlp.c_fc.weight" {
                e.shape = vec![32, 8];
            }
            e
        })
        .collect();
    let bytes = st::write(&entries).unwrap();
    let e = format!("{:#}", Weights::from_safetensors(&cfg, &bytes).unwrap_err());
    assert!(
        e.contains("transformer.h.0.mlp.c_fc.weight")
            && e.contains("[32, 8]")
            && e.contains("expected [8, 32]"),
        "{e}"
    );
    // Another configuration's file.
    let other = GptConfig { n_layer: 2, ..cfg };
    let e = format!(
        "{:#}",
        Weights::from_safetensors(&other, &w.to_safetensors().unwrap()).unwrap_err()
    );
    assert!(
        e.contains("transformer.h.1.") && e.contains("missing"),
        "{e}"
    );
    let e = format!(
        "{:#}",
        Weights::from_safetensors(&cfg, b"not a file").unwrap_err()
    );
    assert!(e.contains("not a valid safetensors file"), "{e}");
}

#[test]
fn init_is_deterministic_and_has_gpt2_statistics() {
    let cfg = small();
    let a = Weights::init(cfg, 0.02, 1);
    assert_eq!(
        a.to_safetensors().unwrap(),
        Weights::init(cfg, 0.02, 1).to_safetensors().unwrap()
    );
    assert_ne!(
        a.to_safetensors().unwrap(),
        Weights::init(cfg, 0.02, 2).to_safetensors().unwrap()
    );
    // Pinned: a change of generator or layout order shows here (the same on every machine).
    let first: Vec<u32> = a.tensors[0][..2].iter().map(|v| v.to_bits()).collect();
    assert_eq!(first, [0x3d07_1af9, 0x3881_d62c]);
    let hash = blake3::hash(&a.to_safetensors().unwrap())
        .to_hex()
        .to_string();
    assert_eq!(
        hash,
        "be876f4e757194bab64110c5681c1a1e0fc2c57a1891ef607949aca75fa893e7"
    );
    let stats = |x: &[f32]| {
        let n = x.len() as f64;
        let m = x.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = x.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
        (m, var.sqrt())
    };
    let resid = 0.02 / (2.0 * cfg.n_layer as f64).sqrt();
    for (s, t) in specs(&cfg).iter().zip(&a.tensors) {
        let (m, sd) = stats(t);
        let want = if s.name.ends_with(".bias") {
            assert!(t.iter().all(|&v| v == 0.0), "{}", s.name);
            continue;
        } else if s.name.contains("ln_") {
            assert!(t.iter().all(|&v| v == 1.0), "{}", s.name);
            continue;
        } else if s.name.ends_with("c_proj.weight") {
            resid
        } else {
            0.02
        };
        let tol = 4.0 * want / (t.len() as f64).sqrt();
        assert!(m.abs() < tol, "{}: mean {m}", s.name);
        assert!(
            (sd - want).abs() < want * 0.05,
            "{}: std {sd}, want {want}",
            s.name
        );
        assert_eq!(s.decay, s.shape.len() == 2);
    }
    // Different tensors draw different streams.
    assert_ne!(a.tensors[0][..8], a.tensors[1][..8]);
}

#[test]
fn optimizer_state_and_checkpoints_round_trip_bit_identically() {
    let cfg = one_layer();
    let w = Weights::init(cfg, 0.02, 5);
    let mut r = SplitMix64(3);
    let mut rand = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| f32::from_bits((r.next_u64() as u32 & 0x807f_ffff) | 0x3c00_0000))
            .collect()
    };
    let sp = specs(&cfg);
    let s = OptState {
        m: sp.iter().map(|p| rand(p.numel())).collect(),
        v: sp.iter().map(|p| rand(p.numel())).collect(),
        step: 1234,
    };
    let bytes = opt_to_safetensors(&cfg, &s).unwrap();
    let back = opt_from_safetensors(&cfg, &bytes).unwrap();
    assert_eq!(
        (bits(&back.m), bits(&back.v), back.step),
        (bits(&s.m), bits(&s.v), 1234)
    );
    let h = header(&bytes);
    assert_eq!(h["step"]["dtype"], "I64");
    assert_eq!(
        h["m.transformer.h.0.mlp.c_fc.weight"]["shape"],
        json!([32, 8])
    );

    let ck = checkpoint_to_safetensors(&w, &s).unwrap();
    assert_eq!(ck, checkpoint_to_safetensors(&w, &s).unwrap());
    let (w2, s2) = checkpoint_from_safetensors(&cfg, &ck).unwrap();
    assert_eq!(bits(&w2.tensors), bits(&w.tensors));
    assert_eq!(
        (bits(&s2.m), bits(&s2.v), s2.step),
        (bits(&s.m), bits(&s.v), 1234)
    );
    // A weights-only file is not a checkpoint.
    let e = format!(
        "{:#}",
        checkpoint_from_safetensors(&cfg, &w.to_safetensors().unwrap()).unwrap_err()
    );
    assert!(e.contains("missing") && e.contains("m.transformer"), "{e}");
}

#[test]
fn the_model_resumes_from_its_optimizer_state_exactly() {
    let cfg = small();
    let w = Weights::init(cfg, 0.05, 4);
    let (d1, d2) = (rows(&cfg, 2, 1), rows(&cfg, 2, 2));
    let h = Hyper::default();
    let mut ops = CpuOps;
    let mut a = Model::new(&mut ops, &w, 2).unwrap();
    a.train_step(&mut ops, &d1, &h, 1).unwrap();
    let saved = checkpoint_to_safetensors(
        &a.weights(&mut ops).unwrap(),
        &a.opt_state(&mut ops, 1).unwrap(),
    )
    .unwrap();
    a.train_step(&mut ops, &d2, &h, 2).unwrap();
    let (w1, s1) = checkpoint_from_safetensors(&cfg, &saved).unwrap();
    let mut b = Model::new(&mut ops, &w1, 2).unwrap();
    b.load_opt_state(&mut ops, &s1).unwrap();
    b.train_step(&mut ops, &d2, &h, s1.step + 1).unwrap();
    assert_eq!(
        bits(&a.weights(&mut ops).unwrap().tensors),
        bits(&b.weights(&mut ops).unwrap().tensors)
    );
}

#[test]
fn a_model_whose_logits_exceed_the_binding_limit_is_refused_with_the_numbers() {
    let cfg = GptConfig {
        vocab_size: 5000,
        context: 64,
        n_layer: 2,
        n_head: 4,
        n_embd: 64,
    };
    let plan = memory_plan(&cfg, 4);
    assert_eq!(plan.largest, ("act.logits".to_string(), 4 * 64 * 5000 * 4));
    let p = cfg.param_count() as u64;
    assert!(plan.device_bytes > 4 * 4 * p + 2 * plan.largest.1);
    assert_eq!(plan.host_bytes, 24 * p);
    check_fits(&plan, 1 << 30, 128 << 20).unwrap();
    let e = check_fits(&plan, 1 << 30, 4 << 20).unwrap_err().to_string();
    assert!(
        e.contains("act.logits") && e.contains("5120000") && e.contains("4194304"),
        "{e}"
    );
    assert!(e.contains("batch") && e.contains("vocabulary"), "{e}");
}

#[test]
fn the_config_checks_its_sizes_and_round_trips_through_hugging_face_config_json() {
    let cfg = small();
    cfg.check().unwrap();
    let j = cfg.hf_config_json(0);
    assert_eq!(j["model_type"], "gpt2");
    assert_eq!(j["architectures"], json!(["GPT2LMHeadModel"]));
    assert_eq!(j["activation_function"], "gelu_new");
    assert_eq!((&j["n_positions"], &j["n_ctx"]), (&json!(7), &json!(7)));
    assert_eq!(j["tie_word_embeddings"], true);
    assert!(j["n_inner"].is_null());
    assert_eq!(GptConfig::from_hf_config(&j).unwrap(), cfg);
    let mut bad = j.clone();
    bad.as_object_mut().unwrap().remove("n_head");
    let e = GptConfig::from_hf_config(&bad).unwrap_err().to_string();
    assert!(e.contains("\"n_head\""), "{e}");
    let e = GptConfig { n_head: 3, ..cfg }
        .check()
        .unwrap_err()
        .to_string();
    assert!(e.contains("n_head 3") && e.contains("33"), "{e}");
    // 2 + L·12 + 2 tensors: V·C + T·C + L·(12C² + 13C) + 2C.
    let (v, t, c, l) = (301, 7, 32, 2);
    assert_eq!(
        cfg.param_count(),
        v * c + t * c + l * (12 * c * c + 13 * c) + 2 * c
    );
}
