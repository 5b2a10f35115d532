//! Helpers for integration tests: a project in a temporary folder and the
//! `pai` binary run against it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_pai");

/// A small pipeline: the data funnel on a generated corpus, plus command
/// nodes for early cutoff and a second, independent source.
pub const PIPELINE: &str = r#"
[nodes.corpus]
kind = "source"
path = "corpus"
include = ["**/*.md"]

[nodes.tokenizer]
kind = "bpe-tokenizer"
inputs = ["corpus"]
vocab_size = 300

[nodes.tokens]
kind = "tokenize"
inputs = ["corpus", "tokenizer"]

[nodes.packed]
kind = "pack"
inputs = ["tokens"]
context = 8
val_fraction = 0.25

[nodes.stamp]
kind = "command"
inputs = ["corpus"]
run = "echo constant > $PAI_OUT/x"
outputs = ["x"]

[nodes.after]
kind = "command"
inputs = ["stamp"]
run = "cp $PAI_IN_STAMP/x $PAI_OUT/y"
outputs = ["y"]

[nodes.notes]
kind = "source"
path = "notes"

[nodes.summary]
kind = "command"
inputs = ["notes"]
run = "cat $PAI_IN_NOTES/*.txt | wc -c > $PAI_OUT/count.txt"
outputs = ["count.txt"]
"#;

/// A minute GPT-2 on the generated corpus: the data funnel (vocabulary 300, rows of
/// `context`), `init` (`n_layer` layers, 2 heads, `n_embd` channels) and `train` (`steps`
/// steps of 4 rows; `train_extra` adds keys to it), then `more` (further nodes).
pub fn model_pipeline(
    context: usize,
    n_layer: usize,
    n_embd: usize,
    steps: usize,
    train_extra: &str,
    more: &str,
) -> String {
    format!(
        r#"
[nodes.corpus]
kind = "source"
path = "corpus"
include = ["**/*.md"]

[nodes.tokenizer]
kind = "bpe-tokenizer"
inputs = ["corpus"]
vocab_size = 300

[nodes.tokens]
kind = "tokenize"
inputs = ["corpus", "tokenizer"]

[nodes.packed]
kind = "pack"
inputs = ["tokens"]
context = {context}
val_fraction = 0.2

[nodes.init]
kind = "gpt-init"
inputs = ["tokenizer"]
n_layer = {n_layer}
n_head = 2
n_embd = {n_embd}
context = {context}

[nodes.train]
kind = "train"
inputs = ["init", "packed"]
steps = {steps}
batch = 4
lr = 3e-3
warmup = 2
val_rows = 8
{train_extra}
{more}"#
    )
}

pub struct Proj {
    pub tmp: tempfile::TempDir,
}

/// The tests' seeded generator: the library's splitmix64 (`pai::model::rng`,
/// the one behind initialisation, sampling and the pack's shuffle) with the
/// helpers tests want. A seed reproduces a test's inputs exactly.
pub struct Rng(pub pai::model::rng::SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(pai::model::rng::SplitMix64(seed))
    }
    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    /// Uniform-ish in 0..n (by modulo; n ≥ 1).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    /// True with probability `p` percent.
    pub fn pct(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    /// Uniform in [-1, 1).
    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.f32() * scale).collect()
    }
}

/// Deterministic English-looking text.
pub fn text(seed: u64, words: usize) -> String {
    const W: &[&str] = &[
        "the",
        "data",
        "model",
        "learns",
        "from",
        "a",
        "small",
        "corpus",
        "of",
        "notes",
        "and",
        "scripts",
        "python",
        "runs",
        "each",
        "cell",
        "in",
        "order",
        "git",
        "keeps",
        "history",
        "we",
        "clean",
        "tables",
        "plot",
        "charts",
        "test",
        "functions",
        "with",
        "pytest",
        "before",
        "every",
        "commit",
        "branch",
        "merge",
        "review",
    ];
    let mut r = Rng::new(seed);
    let mut s = String::new();
    for i in 0..words {
        s.push_str(W[(r.next() % W.len() as u64) as usize]);
        s.push(if i % 12 == 11 { '.' } else { ' ' });
        if i % 48 == 47 {
            s.push('\n');
        }
    }
    s.push('\n');
    s
}

impl Proj {
    pub fn new() -> Proj {
        Self::with_pipeline(PIPELINE)
    }

    pub fn with_pipeline(pipeline: &str) -> Proj {
        let p = Proj {
            tmp: tempfile::tempdir().expect("tempdir"),
        };
        p.write("Pipeline.toml", pipeline);
        for i in 0..4 {
            p.write(&format!("corpus/doc{i}.md"), &text(i, 300));
        }
        p.write("corpus/sub/deep.md", &text(99, 200));
        p.write("notes/a.txt", "alpha\n");
        p.write("notes/b.txt", "beta\n");
        p
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("-C").arg(self.dir()).args(args);
        c.env_remove("PAI_KIND_VERSION");
        // A developer's shared cache must not serve (or receive) test builds.
        c.env_remove("PAI_REMOTE");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running pai")
    }

    /// `pai` run as an unprivileged user, so that file permissions bind
    /// (root reads a mode-000 folder). As root, runs as `nobody` through
    /// `setpriv` after opening the project to everyone (on the first call); None when that is
    /// not possible here.
    pub fn unprivileged(&self, args: &[&str]) -> Option<Output> {
        use std::os::unix::fs::MetadataExt;
        let root = std::fs::metadata("/proc/self").ok()?.uid() == 0;
        if !root {
            return Some(self.run(args));
        }
        // Once: later calls must not undo permissions a test set.
        let opened = std::fs::metadata(self.dir()).ok()?.mode() & 0o002 != 0
            || Command::new("chmod")
                .args(["-R", "a+rwX"])
                .arg(self.dir())
                .status()
                .ok()?
                .success();
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "-C",
        ])
        .arg(self.dir())
        .args(args)
        .env_remove("PAI_KIND_VERSION");
        let out = c.output().ok()?;
        // No setpriv, or a binary nobody may run: not a result about pai.
        let ran = opened && !String::from_utf8_lossy(&out.stderr).contains("setpriv:");
        ran.then_some(out)
    }

    /// Runs with --json; returns the document and the exit code.
    pub fn json(&self, args: &[&str]) -> (Value, i32) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "pai {args:?} printed no JSON ({e}), {}: stdout {} stderr {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (v, out.status.code().unwrap_or(-1))
    }

    /// `pai build`: node → status. Panics unless it succeeds.
    pub fn build(&self, args: &[&str]) -> BTreeMap<String, String> {
        let mut all = vec!["build"];
        all.extend_from_slice(args);
        let (v, code) = self.json(&all);
        assert_eq!(code, 0, "build {args:?} failed: {v}");
        statuses(&v)
    }
}

pub fn statuses(v: &Value) -> BTreeMap<String, String> {
    v["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Names of the nodes with the given status.
pub fn with_status(m: &BTreeMap<String, String>, status: &str) -> Vec<String> {
    m.iter()
        .filter(|(_, s)| *s == status)
        .map(|(n, _)| n.clone())
        .collect()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Objects in the store.
pub fn objects(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("cache/objects")) {
        for sub in rd.flatten() {
            for e in std::fs::read_dir(sub.path()).unwrap().flatten() {
                v.push(e.path());
            }
        }
    }
    v.sort();
    v
}
