//! A killed build and two builds at once leave a valid store.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

/// The data funnel plus slow command nodes, so a kill lands inside a node
/// as well as between nodes and during commits.
fn slow_pipeline() -> String {
    format!(
        "{PIPELINE}\n\
         [nodes.slow1]\nkind = \"command\"\ninputs = [\"packed\"]\n\
         run = \"sleep 0.15; cat $PAI_IN_PACKED/train.bin $PAI_IN_PACKED/val.bin > $PAI_OUT/both.bin\"\noutputs = [\"both.bin\"]\n\
         [nodes.slow2]\nkind = \"command\"\ninputs = [\"slow1\", \"summary\"]\n\
         run = \"sleep 0.15; head -c 1000 $PAI_IN_SLOW1/both.bin > $PAI_OUT/head.bin; mkdir $PAI_OUT/d; cp $PAI_IN_SUMMARY/count.txt $PAI_OUT/d/\"\n\
         outputs = [\"head.bin\", \"d/count.txt\"]\n"
    )
}

/// node → content hash of its current build, read from the store.
fn contents(p: &Proj) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for e in std::fs::read_dir(p.path("cache/refs")).unwrap().flatten() {
        let key = std::fs::read_to_string(e.path()).unwrap();
        let rec: serde_json::Value =
            serde_json::from_str(&p.read(&format!("cache/records/{}.json", key.trim()))).unwrap();
        m.insert(
            e.file_name().to_string_lossy().to_string(),
            rec["content"].as_str().unwrap().to_string(),
        );
    }
    m
}

#[test]
fn sigkill_at_random_moments_leaves_a_valid_store_and_the_same_outputs() {
    let reference = Proj::with_pipeline(&slow_pipeline());
    let t = Instant::now();
    reference.build(&[]);
    let full = t.elapsed();
    let expected = contents(&reference);

    let p = Proj::with_pipeline(&slow_pipeline());
    let mut seed = 0x5eed_u64;
    for round in 0..10 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // A moment within the build, at 100 µs resolution.
        let at = Duration::from_micros((seed >> 33) % (full.as_micros() as u64 + 1) / 100 * 100);
        let mut child = p
            .cmd(&["build", "-j", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(at);
        child.kill().ok(); // SIGKILL
        child.wait().unwrap();
        let (v, code) = p.json(&["verify"]);
        assert_eq!(code, 0, "round {round}, killed after {at:?}: {v}");
        if round % 3 == 2 {
            // Sometimes edit between kills, so restores and rebuilds mix.
            let doc = p.read("notes/a.txt");
            p.write("notes/a.txt", &format!("{doc}x"));
        }
    }
    p.write("notes/a.txt", "alpha\n");
    let b = p.build(&[]);
    assert!(b.values().all(|s| s != "failed"), "{b:?}");
    assert_eq!(contents(&p), expected);
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
    // Nothing of the killed runs is left once a build has run.
    let tmp: Vec<_> = std::fs::read_dir(p.path("cache/tmp"))
        .map(|r| r.flatten().collect())
        .unwrap_or_default();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn a_second_build_waits_for_the_first_and_says_so() {
    let pipeline = "[nodes.slow]\nkind = \"command\"\nrun = \"sleep 1; echo done > $PAI_OUT/o\"\noutputs = [\"o\"]\n";
    let p = Proj::with_pipeline(pipeline);
    let first = p
        .cmd(&["--json", "build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the first holds the lock.
    let owner = p.path("cache/lock.owner");
    let start = Instant::now();
    while !owner.exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let second = p.cmd(&["--json", "build"]).output().unwrap();
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success() && second.status.success(),
        "{first:?} {second:?}"
    );
    let err = stderr(&second);
    assert!(err.contains("waiting for another pai process"), "{err}");
    assert!(
        err.contains("pai build"),
        "the message names the holder: {err}"
    );
    let s1 = statuses(&serde_json::from_slice(&first.stdout).unwrap());
    let s2 = statuses(&serde_json::from_slice(&second.stdout).unwrap());
    assert_eq!(s1["slow"], "built");
    assert_eq!(
        s2["slow"], "fresh",
        "the second build saw the first's result"
    );
    let (v, code) = p.json(&["verify"]);
    assert_eq!(code, 0, "{v}");
}
