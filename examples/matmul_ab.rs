//! A/B timing of matrix-product variants on the 15 products of a default-model training step
//! (M = B·T = 1024 tokens): y = x·Wᵀ, dx = dy·W and dW = dyᵀ·x of the qkv, attention
//! projection, fc, fc projection and logits layers, through `gemm_with` as training calls them.
//! Variants run interleaved (every product, every variant, then the next round) in one process.
//!
//! Usage: `cargo run --release --example matmul_ab -- [ROUNDS] [VARIANT...]`, where a variant is
//! an entry of `GEMM_VARIANTS` (run on the products it accepts, its cell `-` elsewhere) or `auto`
//! (what `gemm_variant` picks per product on the default kernel path); default
//! `5 mm_tile16x8 auto`. Prints GFLOP/s per product by wall clock and by CPU time (the CPU
//! seconds of all threads of this process divided by the cores: steadier than the wall clock
//! on a machine shared with other work), the medians over the rounds, and per-round ratios of
//! the total against the first variant.

use anyhow::{Result, bail};
use pai::gpu::ops::matmul::{self as mm, GEMM_VARIANTS};
use pai::gpu::{Gpu, Kernel, Tensor};
use std::time::Instant;

/// CPU time of all threads of this process, in seconds (Linux: /proc/self/task/*/schedstat).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .sum::<f64>()
        * 1e-9
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

struct Product {
    name: String,
    a: usize,
    a_st: (usize, usize),
    b: usize,
    b_st: (usize, usize),
    mnk: (usize, usize, usize),
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s[s.len() / 2]
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1).peekable();
    let rounds: usize = match args.peek().and_then(|a| a.parse().ok()) {
        Some(r) => {
            args.next();
            r
        }
        None => 5,
    };
    let mut names: Vec<String> = args.collect();
    if names.is_empty() {
        names = vec!["mm_tile16x8".into(), "auto".into()];
    }
    let gpu = Gpu::new(std::env::var("PAI_ADAPTER").ok().as_deref())?;
    let variants: Vec<Option<&'static Kernel>> = names
        .iter()
        .map(|n| match GEMM_VARIANTS.iter().find(|v| v.entry == n) {
            Some(v) if mm::supported(&gpu, v) => Ok(Some(*v)),
            Some(_) => bail!("{n} does not run on {}", gpu.info.name),
            None if n == "auto" => Ok(None),
            None => bail!("unknown variant {n}: auto or one of GEMM_VARIANTS"),
        })
        .collect::<Result<_>>()?;
    println!("{} ({:?})", gpu.describe(), gpu.path());

    let bt = 1024;
    let layers = [
        ("qkv", 384, 128),
        ("attn proj", 128, 128),
        ("fc", 512, 128),
        ("fc proj", 128, 512),
        ("logits", 2048, 128),
    ];
    let mut tensors: Vec<Tensor> = Vec::new();
    let mut products = Vec::new();
    for (i, &(name, n, k)) in layers.iter().enumerate() {
        let seed = 10 * i as u64;
        let (x, w, dy) = (tensors.len(), tensors.len() + 1, tensors.len() + 2);
        tensors.push(gpu.upload(&data(bt * k, seed + 1), &[bt, k])?);
        tensors.push(gpu.upload(&data(n * k, seed + 2), &[n, k])?);
        tensors.push(gpu.upload(&data(bt * n, seed + 3), &[bt, n])?);
        let p = |what: &str, a, a_st, b, b_st, mnk| Product {
            name: format!("{name} {what}"),
            a,
            a_st,
            b,
            b_st,
            mnk,
        };
        products.push(p("y", x, (k, 1), w, (1, k), (bt, n, k)));
        products.push(p("dx", dy, (n, 1), w, (k, 1), (bt, k, n)));
        products.push(p("dW", dy, (1, n), x, (k, 1), (n, k, bt)));
    }
    let outs: Vec<Tensor> = products
        .iter()
        .map(|p| gpu.zeros(&[p.mnk.0, p.mnk.1]))
        .collect::<Result<_>>()?;
    // The kernel each variant runs on each product (None: it does not take the strides).
    let kernel = |v: Option<&'static Kernel>, p: &Product| match v {
        None => Some(mm::gemm_variant(&gpu, gpu.path(), p.a_st, p.b_st, p.mnk)),
        Some(v) => mm::accepts(v, p.a_st, p.b_st, p.mnk).then_some(v),
    };
    let time = |kern: &Kernel, pi: usize, reps: usize| -> Result<(f64, f64)> {
        let p = &products[pi];
        let (t, c) = (Instant::now(), cpu_seconds());
        let mut b = gpu.batch();
        for _ in 0..reps {
            let (a, bm) = (&tensors[p.a], &tensors[p.b]);
            mm::gemm_with(
                &mut b, kern, a, p.a_st, bm, p.b_st, p.mnk, None, &outs[pi], false,
            )?;
        }
        b.run()?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let wall = t.elapsed().as_secs_f64() / reps as f64;
        Ok((wall, (cpu_seconds() - c) / cores / reps as f64))
    };
    // Warm-up (compiles the pipelines), then rounds: [variant][product] -> (wall, cpu) per round.
    let mut runs = vec![vec![Vec::new(); products.len()]; variants.len()];
    for round in 0..=rounds {
        for (pi, p) in products.iter().enumerate() {
            let flop = 2.0 * (p.mnk.0 * p.mnk.1 * p.mnk.2) as f64;
            let reps = if round == 0 {
                1
            } else {
                (4e8 / flop).ceil() as usize
            };
            for (vi, &v) in variants.iter().enumerate() {
                if let Some(kern) = kernel(v, p) {
                    let t = time(kern, pi, reps)?;
                    if round > 0 {
                        runs[vi][pi].push(t);
                    }
                }
            }
        }
    }
    for (label, pick) in [("wall clock", 0), ("CPU time / cores", 1)] {
        let secs = |vi: usize, pi: usize| -> Vec<f64> {
            runs[vi][pi]
                .iter()
                .map(|t: &(f64, f64)| if pick == 0 { t.0 } else { t.1 })
                .collect()
        };
        println!("\nGFLOP/s by {label}, median of {rounds} rounds (kernel in brackets for auto)");
        print!("{:<16}", "product");
        for n in &names {
            print!(" {n:>24}");
        }
        println!();
        for (pi, p) in products.iter().enumerate() {
            print!("{:<16}", p.name);
            let flop = 2.0 * (p.mnk.0 * p.mnk.1 * p.mnk.2) as f64;
            for (vi, &v) in variants.iter().enumerate() {
                match kernel(v, p) {
                    Some(k) if v.is_none() => {
                        let cell =
                            format!("{:.2} ({})", flop / median(&secs(vi, pi)) / 1e9, k.entry);
                        print!(" {cell:>24}");
                    }
                    Some(_) => print!(" {:>24.2}", flop / median(&secs(vi, pi)) / 1e9),
                    None => print!(" {:>24}", "-"),
                }
            }
            println!();
        }
        // Totals over the products every variant ran, per round.
        let common: Vec<usize> = (0..products.len())
            .filter(|&pi| runs.iter().all(|r| !r[pi].is_empty()))
            .collect();
        let totals: Vec<Vec<f64>> = (0..variants.len())
            .map(|vi| {
                (0..rounds)
                    .map(|r| common.iter().map(|&pi| secs(vi, pi)[r]).sum())
                    .collect()
            })
            .collect();
        print!("{:<16}", format!("total ms ({})", common.len()));
        for t in &totals {
            print!(" {:>24.1}", median(t) * 1e3);
        }
        println!();
        print!("{:<16}", "speed-up");
        for t in &totals {
            let r: Vec<f64> = (0..rounds).map(|r| totals[0][r] / t[r]).collect();
            let (lo, hi) = r
                .iter()
                .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
            print!(" {:>24}", format!("{:.2}x ({lo:.2}-{hi:.2})", median(&r)));
        }
        println!();
    }
    Ok(())
}
