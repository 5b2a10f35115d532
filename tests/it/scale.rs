//! Scale: planning commands stay linear in the number of nodes.

use crate::common::*;

/// A pipeline of `n` command nodes, each reading up to two of the 50 before
/// it (many sinks, as a generated pipeline has).
fn wide_pipeline(n: usize) -> String {
    let mut s = String::from("[nodes.src]\nkind = \"source\"\npath = \"notes\"\n");
    let mut rng = 1u64;
    for i in 0..n {
        let inputs = if i < 10 {
            "\"src\"".to_string()
        } else {
            let mut pick = || {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                i - 1 - (rng >> 33) as usize % 50.min(i)
            };
            let (a, b) = (pick(), pick());
            if a == b {
                format!("\"n{a}\"")
            } else {
                format!("\"n{a}\", \"n{b}\"")
            }
        };
        s.push_str(&format!(
            "[nodes.n{i}]\nkind = \"command\"\ninputs = [{inputs}]\nrun = \"echo {i} > $PAI_OUT/o\"\noutputs = [\"o\"]\n"
        ));
    }
    s
}

/// Best of three wall times of `pai status` on a pipeline file, in seconds.
fn status_seconds(p: &Proj, file: &str) -> f64 {
    (0..3)
        .map(|_| {
            let t = std::time::Instant::now();
            let out = p.run(&["-f", file, "status"]);
            assert!(out.status.success(), "{}", stderr(&out));
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

#[test]
fn status_time_grows_linearly_with_the_node_count() {
    let p = Proj::new();
    p.write("small.toml", &wide_pipeline(1_500));
    p.write("large.toml", &wide_pipeline(12_000));
    let small = status_seconds(&p, "small.toml");
    let large = status_seconds(&p, "large.toml");
    // 8x the nodes: linear is about 8x, quadratic about 64x. The bound leaves
    // room for noise on a shared machine.
    let ratio = large / small;
    eprintln!("status: 1,500 nodes {small:.3} s, 12,000 nodes {large:.3} s, ratio {ratio:.1}");
    assert!(
        ratio < 24.0,
        "status is superlinear: {small:.3} s → {large:.3} s ({ratio:.1}x)"
    );
}
