//! Fuzzing the plan-time path `pai` runs on a pipeline file: parse and validate it
//! (kinds, parameters, inputs, cycles), pick targets, order the plan, render the graph,
//! and work out what is stale (`pai status`, `pai build --dry-run`, `pai explain`),
//! building nothing.
//!
//! Three generators feed it: arbitrary bytes, arbitrary TOML documents, and pipeline-like
//! TOML (real kind names and parameters, valid and invalid values, inputs that exist, are
//! missing or form cycles, odd strings) together with mutations of the shipped pipeline
//! files. Every input must end in `Ok` or in an error with a message, never in a panic.
//!
//! A seeded generator rather than proptest: a million cases must run in seconds, and
//! a failure prints the exact input (and the seed that reproduces the run), which is
//! what shrinking would give us anyway for inputs this small.
//!
//! `PAI_FUZZ_CASES` sets the number of cases per generator (default 8,000: about ten
//! seconds in a debug build on two cores); `PAI_FUZZ_SEED` the seed (printed on failure);
//! `PAI_FUZZ_SHOW=1` prints the first line of every rejection (to see what the
//! generators reach). A million: `PAI_FUZZ_CASES=250000 cargo test --release --test it fuzz_spec`.

use std::cell::RefCell;

use crate::common::Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Instant;

use pai::engine::{self, Project};
use pai::spec;
use pai::steps::{self, ParamType};
use pai::store::Store;

// ---------------------------------------------------------------- randomness

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => {
            v.trim().replace('_', "").parse().unwrap_or_else(|_| {
                panic!("{name}={v:?} is not a whole number; unset it or fix it")
            })
        }
        Err(_) => default,
    }
}

fn cases() -> u64 {
    env_u64("PAI_FUZZ_CASES", 8_000)
}

fn seed() -> u64 {
    env_u64("PAI_FUZZ_SEED", 0x00f0_22ed)
}

// ---------------------------------------------------------------- the harness

/// A project folder with a few source folders, nested four folders deep inside its
/// temporary folder so that a source `path` with up to four `..` stays inside it.
/// The store sits under a plain file, so nothing the plan writes (the stat cache, best
/// effort) lands anywhere: a million cases leave no million files.
struct Harness {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    store_root: PathBuf,
}

impl Harness {
    fn new() -> Harness {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("d1/d2/d3/proj");
        let w = |rel: &str, s: &str| {
            let p = dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, s).unwrap();
        };
        w("corpus/doc0.md", "the model learns from a small corpus\n");
        w("corpus/sub/deep.md", "of notes and scripts\n");
        w("corpus/x.py", "print('hi')\n");
        w("notes/a.txt", "alpha\n");
        w("notes/b.txt", "beta\n");
        w("empty/.hidden", "hidden\n");
        w("blocker", "a file where the store's folder would be\n");
        let store_root = dir.join("blocker/cache");
        Harness {
            _tmp: tmp,
            dir,
            store_root,
        }
    }
}

/// Whether a source's `path` stays inside the harness's temporary folder (so `status`
/// may walk it): relative, at most four `..`.
fn walkable(path: &str) -> bool {
    let p = Path::new(path);
    !p.has_root()
        && p.components()
            .filter(|c| matches!(c, std::path::Component::ParentDir))
            .count()
            <= 4
}

thread_local! {
    /// Inside a case: the message of its panic, kept for the report.
    static PANIC: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

/// Inside a case (see `check`), a panic's message is kept for the report instead of
/// printed; outside, panics print as usual (a test's own failed assertion included).
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let kept = PANIC.with(|p| match &mut *p.borrow_mut() {
                Some(slot) => {
                    *slot = Some(format!("{info}"));
                    true
                }
                None => false,
            });
            if !kept {
                default(info)
            }
        }));
    });
}

/// What happened to one input.
#[derive(Default)]
struct Tally {
    cases: u64,
    parsed_ok: u64,
    parse_errors: u64,
    planned: u64,
    failures: Vec<String>,
}

/// The plan-time path on one pipeline text: `Err` names a broken promise (an error
/// without a message); a panic is caught by the caller.
fn plan(
    h: &Harness,
    rng: &mut Rng,
    file: &Path,
    text: String,
    tally: &mut Tally,
) -> Result<(), String> {
    let pipeline = match spec::parse(file, text) {
        Ok(p) => p,
        Err(e) => {
            tally.parse_errors += 1;
            if std::env::var_os("PAI_FUZZ_SHOW").is_some() {
                eprintln!("REJECTED: {}", e.0.lines().next().unwrap_or(""));
            }
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            if e.0.trim().is_empty() || !e.0.contains(&name) {
                return Err(format!(
                    "parse error without a message naming the file: {:?}",
                    e.0
                ));
            }
            return Ok(());
        }
    };
    tally.parsed_ok += 1;
    let project = Project {
        dir: h.dir.clone(),
        store: Store::new(h.store_root.clone(), "main"),
        pipeline,
    };
    let p = &project.pipeline;
    let names: Vec<String> = p.nodes.iter().map(|n| n.name.clone()).collect();
    let nonempty = |what: &str, e: anyhow::Error| -> Result<(), String> {
        if format!("{e:#}").trim().is_empty() {
            Err(format!("{what}: an error without a message"))
        } else {
            Ok(())
        }
    };
    // Targets: the default (or every sink), one named node, a name that is not there.
    let default = match project.targets(&[]) {
        Ok(t) => t,
        Err(e) => {
            nonempty("targets()", e)?;
            Vec::new()
        }
    };
    if !names.is_empty() {
        let one = rng.pick(&names).clone();
        match project.targets(std::slice::from_ref(&one)) {
            Ok(t) if t.len() == 1 && p.nodes[t[0]].name == one => {}
            Ok(t) => return Err(format!("targets([{one:?}]) gave {t:?}")),
            Err(e) => nonempty("targets(NODE)", e)?,
        }
    }
    if let Ok(t) = project.targets(&["no-such-node-here".into()]) {
        return Err(format!("a missing target was accepted: {t:?}"));
    }
    for format in ["dot", "mermaid"] {
        let _ = pai::graph::render(p, format);
    }
    let all: Vec<usize> = (0..p.nodes.len()).collect();
    let order = pai::graph::plan_order(p, &all);
    if order.len() != p.nodes.len() {
        return Err(format!(
            "plan order has {} of {} nodes",
            order.len(),
            p.nodes.len()
        ));
    }
    // `status` walks source folders: only those that stay inside the harness.
    let walk_ok = p
        .nodes
        .iter()
        .all(|n| !n.step.is_source() || n.params.str("path").is_ok_and(walkable));
    if walk_ok {
        let targets = if default.is_empty() { all } else { default };
        for s in engine::status(&project, &targets) {
            if s.action == engine::Action::Error && s.reasons.iter().all(|r| r.trim().is_empty()) {
                return Err(format!(
                    "status of `{}`: an error without a message",
                    s.name
                ));
            }
        }
        if !p.nodes.is_empty() && rng.pct(10) {
            let idx = rng.below(p.nodes.len());
            if let Err(e) = engine::explain(&project, idx) {
                nonempty("explain", e)?;
            }
        }
        tally.planned += 1;
    }
    Ok(())
}

/// Runs `plan` on one input, catching a panic; a failure is recorded with the input.
fn check(h: &Harness, rng: &mut Rng, gen_name: &str, case: u64, bytes: Vec<u8>, tally: &mut Tally) {
    tally.cases += 1;
    let shown = String::from_utf8_lossy(&bytes).to_string();
    PANIC.with(|p| *p.borrow_mut() = Some(None));
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        match String::from_utf8(bytes) {
            Ok(text) => {
                // Now and then through the file and `Project::open`, as `pai -f` reads it:
                // the same verdict as parsing the text.
                if rng.pct(3) {
                    let file = h.dir.join("fuzz.toml");
                    std::fs::write(&file, &text).unwrap();
                    let opened = Project::open(&h.dir, Some(Path::new("fuzz.toml")));
                    let parsed = spec::parse(&file, text.clone());
                    match (&opened, &parsed) {
                        (Ok(_), Ok(_)) => {}
                        (Err(a), Err(b)) if format!("{a:#}") == b.0 => {}
                        _ => {
                            return Err(format!(
                                "Project::open and spec::parse disagree: {:?} against {:?}",
                                opened.as_ref().err().map(|e| format!("{e:#}")),
                                parsed.as_ref().err().map(|e| e.0.clone())
                            ));
                        }
                    }
                }
                plan(h, rng, Path::new("Pipeline.toml"), text, tally)
            }
            Err(e) => {
                // Not UTF-8: what `pai` reads from the disk.
                let file = h.dir.join("fuzz.toml");
                std::fs::write(&file, e.as_bytes()).unwrap();
                match spec::load(&file) {
                    Ok(_) => Err("a file that is not UTF-8 was accepted".into()),
                    Err(e) if e.0.trim().is_empty() => Err("an error without a message".into()),
                    Err(_) => {
                        tally.parse_errors += 1;
                        Ok(())
                    }
                }
            }
        }
    }));
    let panic = PANIC.with(|p| p.borrow_mut().take()).flatten();
    let problem = match result {
        Ok(Ok(())) => return,
        Ok(Err(msg)) => msg,
        Err(_) => format!("panic: {}", panic.unwrap_or_else(|| "(no message)".into())),
    };
    if tally.failures.len() < 5 {
        tally.failures.push(format!(
            "generator {gen_name}, case {case} (PAI_FUZZ_SEED={}): {problem}\ninput ({} bytes):\n{shown}\n--- escaped: {shown:?}",
            seed(),
            shown.len()
        ));
    }
}

fn run(gen_name: &str, salt: u64, generate: fn(&mut Rng) -> Vec<u8>) {
    quiet_panics();
    let h = Harness::new();
    let mut tally = Tally::default();
    let n = cases();
    let start = Instant::now();
    for case in 0..n {
        // One generator per case, seeded by (seed, generator, case): any case is
        // reproducible on its own.
        let mut rng = Rng::new(
            seed()
                ^ salt.wrapping_mul(0x2545_F491_4F6C_DD1D)
                ^ case.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let bytes = generate(&mut rng);
        check(&h, &mut rng, gen_name, case, bytes, &mut tally);
    }
    eprintln!(
        "fuzz_spec {gen_name}: {} cases in {:.1} s: {} parsed, {} rejected with a message, {} planned (status)",
        tally.cases,
        start.elapsed().as_secs_f64(),
        tally.parsed_ok,
        tally.parse_errors,
        tally.planned
    );
    assert!(
        tally.failures.is_empty(),
        "{} of {} inputs broke the plan-time path:\n\n{}",
        tally.failures.len(),
        tally.cases,
        tally.failures.join("\n\n")
    );
}

// ---------------------------------------------------------------- odd strings

const ODD: &[&str] = &[
    "",
    " ",
    "..",
    "../..",
    "../../../../..",
    "/",
    "/etc",
    "a/../b",
    "./corpus",
    "corpus/",
    "corpus//sub",
    "corpus/doc0.md",
    "missing",
    "empty",
    ".",
    "*",
    "**",
    "**/*",
    "[",
    "[a-",
    "{a,b",
    "*.{md",
    "\\",
    "a\\",
    "[!]",
    "{}",
    "{,}",
    "**/**/**",
    "é",
    "日本語",
    "🦀",
    "\u{0}",
    "\u{7f}",
    "\u{202e}",
    "\u{feff}",
    "line\nbreak",
    "tab\there",
    "quote\"inside",
    "$PAI_OUT",
    "$(rm -rf /)",
    "a b",
    "-",
    "--",
    "-a",
    "a-",
    "A",
    "node_1",
    "main",
    "x.toml",
    "cache",
    "cache/refs",
];

fn long_string(rng: &mut Rng) -> String {
    let unit = *rng.pick(&["a", "-", "é", "🦀", "/", "..", "*", "[", "x/"]);
    unit.repeat(1 + rng.below(400))
}

fn odd_string(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => long_string(rng),
        1 => {
            let n = rng.below(12);
            (0..n)
                .map(|_| char::from_u32(rng.below(0x11_0000) as u32).unwrap_or('?'))
                .collect()
        }
        _ => rng.pick(ODD).to_string(),
    }
}

/// A TOML basic string for `s`, escaped as TOML requires.
fn quote(s: impl AsRef<str>) -> String {
    let s = s.as_ref();
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A key as TOML writes it: bare where it may be, quoted otherwise.
fn key(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        s.to_string()
    } else {
        quote(s)
    }
}

// ---------------------------------------------------------------- generator (a): bytes

const TOKENS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "\"\"\"",
    "'''",
    "\n",
    " ",
    ".",
    ",",
    "{",
    "}",
    "#",
    "nodes",
    "pipeline",
    "default",
    "kind",
    "inputs",
    "source",
    "command",
    "train",
    "path",
    "run",
    "outputs",
    "temporary",
    "1",
    "-1",
    "0x",
    "1e9999",
    "nan",
    "inf",
    "true",
    "1979-05-27",
    "\\u",
    "\\",
    "\r\n",
    "\t",
    "é",
    "🦀",
];

fn gen_bytes(rng: &mut Rng) -> Vec<u8> {
    let max = if rng.pct(10) { 4096 } else { 256 };
    let len = rng.below(max);
    let mode = rng.below(4);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        match mode {
            // Raw bytes: mostly invalid UTF-8.
            0 => out.push(rng.next() as u8),
            // Printable ASCII and newlines.
            1 => out.push(if rng.pct(8) {
                b'\n'
            } else {
                0x20 + rng.below(95) as u8
            }),
            // TOML-ish tokens.
            2 => out.extend_from_slice(rng.pick(TOKENS).as_bytes()),
            // Tokens with a raw byte now and then.
            _ => {
                if rng.pct(5) {
                    out.push(rng.next() as u8)
                } else {
                    out.extend_from_slice(rng.pick(TOKENS).as_bytes())
                }
            }
        }
    }
    out
}

// ---------------------------------------------------------------- generator (b): TOML values

const KEYS: &[&str] = &[
    "nodes",
    "pipeline",
    "default",
    "kind",
    "inputs",
    "path",
    "include",
    "exclude",
    "run",
    "outputs",
    "temporary",
    "gpu",
    "vocab_size",
    "context",
    "steps",
    "format",
    "seed",
    "a",
    "b",
    "corpus",
    "x",
    "",
];

fn toml_value(rng: &mut Rng, depth: usize) -> toml::Value {
    use toml::Value as V;
    match rng.below(if depth >= 3 { 6 } else { 9 }) {
        0 => V::String(odd_string(rng)),
        1 => V::String(
            rng.pick(&[
                "source",
                "command",
                "train",
                "pack",
                "tokenize",
                "bpe-tokenizer",
                "gpt-init",
                "export",
                "quantize",
                "evaluate",
                "q8_0",
                "q4_0",
                "corpus",
                "notes",
            ])
            .to_string(),
        ),
        2 => {
            let any = rng.next() as i64;
            V::Integer(*rng.pick(&[
                0,
                1,
                -1,
                2,
                8,
                128,
                320,
                2048,
                i64::MAX,
                i64::MIN,
                i32::MAX as i64 + 1,
                any,
            ]))
        }
        3 => V::Float(*rng.pick(&[
            0.0,
            -0.0,
            0.1,
            1e-3,
            1.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
            1e300,
        ])),
        4 => V::Boolean(rng.pct(50)),
        5 => V::Datetime("1979-05-27T07:32:00Z".parse().unwrap()),
        6 | 7 => {
            let n = rng.below(5);
            V::Array((0..n).map(|_| toml_value(rng, depth + 1)).collect())
        }
        _ => V::Table(toml_table(rng, depth + 1)),
    }
}

fn toml_table(rng: &mut Rng, depth: usize) -> toml::Table {
    let mut t = toml::Table::new();
    for _ in 0..rng.below(6) {
        let k = if rng.pct(80) {
            rng.pick(KEYS).to_string()
        } else {
            odd_string(rng)
        };
        t.insert(k, toml_value(rng, depth));
    }
    t
}

fn gen_toml(rng: &mut Rng) -> Vec<u8> {
    let mut root = toml_table(rng, 0);
    // Most documents get a `nodes` table of tables, so validation runs past the top level.
    if rng.pct(70) {
        let mut nodes = toml::Table::new();
        for _ in 0..rng.below(6) {
            let mut node = toml_table(rng, 1);
            if rng.pct(80) {
                node.insert(
                    "kind".into(),
                    toml::Value::String(rng.pick(&kind_names()).to_string()),
                );
            }
            let name = if rng.pct(80) {
                rng.pick(&["a", "b", "c", "corpus", "notes", "x-1"])
                    .to_string()
            } else {
                odd_string(rng)
            };
            nodes.insert(name, toml::Value::Table(node));
        }
        root.insert("nodes".into(), toml::Value::Table(nodes));
    }
    toml::to_string(&root).unwrap_or_default().into_bytes()
}

fn kind_names() -> Vec<&'static str> {
    steps::registry().iter().map(|k| k.kind()).collect()
}

// ---------------------------------------------------------------- generator (c): pipelines

/// A value of TOML type `ty`: valid and in range, or (with `err` percent) at a bound,
/// outside it, or an odd one.
fn param_value(rng: &mut Rng, decl: &steps::ParamDecl, names: &[String], err: u64) -> String {
    let num = |rng: &mut Rng| -> f64 {
        let pick = if rng.pct(err * 4) { rng.below(4) } else { 4 };
        match (decl.min, decl.max, pick) {
            (Some(lo), _, 0) => lo,
            (_, Some(hi), 1) => hi,
            (Some(lo), _, 2) => lo - 1.0,
            (_, Some(hi), 3) => hi + 1.0,
            // In range, small: large values are valid but say nothing new.
            (Some(lo), Some(hi), _) => lo + (hi - lo).min(64.0) * (rng.below(1000) as f64 / 1000.0),
            _ => rng.below(1000) as f64,
        }
    };
    let odd = rng.pct(err);
    match decl.ty {
        ParamType::Int if odd => rng
            .pick(&[
                "0x7fffffffffffffff",
                "-9223372036854775808",
                "9223372036854775808",
                "99999999999999999999",
                "0o777",
                "0b101",
                "1_000",
                "+0",
                "-0",
            ])
            .to_string(),
        // Values the cross-parameter and cross-node checks accept (heads divide channels,
        // channels are whole q4/q8 blocks, one context throughout), unless going wrong.
        ParamType::Int if decl.name == "n_head" && !rng.pct(err) => {
            rng.pick(&["1", "2", "4"]).to_string()
        }
        ParamType::Int if decl.name == "n_embd" && !rng.pct(err) => {
            rng.pick(&["32", "64"]).to_string()
        }
        ParamType::Int if decl.name == "context" && !rng.pct(err) => "16".to_string(),
        ParamType::Int => format!("{}", num(rng).round() as i64),
        ParamType::Float if odd => rng
            .pick(&[
                "nan", "+inf", "-inf", "1e400", "-1e400", "1e-400", "0.0", "-0.0", "1_0.5", "3",
            ])
            .to_string(),
        ParamType::Float => format!("{:?}", num(rng)),
        ParamType::Bool => rng.pick(&["true", "false"]).to_string(),
        ParamType::Str if odd => quote(odd_string(rng)),
        ParamType::Str => match decl.name {
            "path" => quote(rng.pick(&["corpus", "notes", "corpus/sub", ".", "../proj/notes"])),
            "run" => quote(rng.pick(&[
                "cat $PAI_IN_CORPUS/*.md | sort > $PAI_OUT/x",
                "wc -c $PAI_IN_NOTES/*.txt > $PAI_OUT/x",
                "true",
            ])),
            "format" => quote(rng.pick(&["q8_0", "q4_0", "f16", "f32"])),
            "weights" => quote(rng.pick(&["best", "final"])),
            _ => quote(rng.pick(&["a", "x"])),
        },
        ParamType::StrList => {
            let n = if decl.name == "outputs" { 1 } else { 0 } + rng.below(3);
            let items: Vec<String> = (0..n)
                .map(|_| match (decl.name, rng.pct(err * 3)) {
                    (_, true) if rng.pct(30) && !names.is_empty() => quote(rng.pick(names)),
                    (_, true) => quote(odd_string(rng)),
                    ("include" | "exclude", _) => {
                        quote(rng.pick(&["**/*.md", "*.txt", "**/*", "sub/**"]))
                    }
                    ("outputs", _) => quote(rng.pick(&["x", "y.txt", "d/z", "*.log"])),
                    // Valid only when it is also an output: the generator does not know.
                    ("temporary", _) => quote(rng.pick(&["x", "*.log"])),
                    _ => quote("a"),
                })
                .collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A value of some other TOML type than `ty` (a type error).
fn wrong_value(rng: &mut Rng) -> String {
    rng.pick(&[
        "1",
        "1.5",
        "\"s\"",
        "true",
        "[]",
        "[1, \"a\"]",
        "[[1], [2]]",
        "{ a = 1 }",
        "1979-05-27",
        "07:32:00",
        "1979-05-27T07:32:00Z",
    ])
    .to_string()
}

fn node_name(rng: &mut Rng, i: usize, err: u64) -> String {
    if !rng.pct(err) {
        format!("{}{i}", rng.pick(&["n", "corpus-", "a", "train-", "x"]))
    } else {
        match rng.below(4) {
            0 => "a".repeat(spec::MAX_NAME + rng.below(3)),
            1 => "a".repeat(spec::MAX_NAME - 1 + rng.below(2)),
            _ => odd_string(rng),
        }
    }
}

/// A pipeline of real kinds. `err` (percent, per decision) sets how often a choice goes
/// wrong: zero gives pipelines that are mostly valid (a cross-node check may still fail),
/// so validation and planning get exercised past the first error.
fn gen_pipeline(rng: &mut Rng) -> Vec<u8> {
    let err = *rng.pick(&[0, 0, 1, 3, 10, 25]);
    let kinds = steps::registry();
    let n = 1 + rng.below(8);
    let names: Vec<String> = (0..n).map(|i| node_name(rng, i, err)).collect();
    let mut chosen: Vec<&steps::Kind> = Vec::new();
    let mut s = String::new();
    if rng.pct(30) {
        s.push_str("[pipeline]\n");
        let d = if rng.pct(err * 2) {
            if rng.pct(50) {
                quote(odd_string(rng))
            } else {
                wrong_value(rng)
            }
        } else {
            quote(rng.pick(&names))
        };
        s.push_str(&format!("default = {d}\n"));
        if rng.pct(err) {
            s.push_str("defualt = \"a\"\n");
        }
    }
    let inline = rng.pct(15);
    if inline {
        s.push_str("[nodes]\n");
    }
    for (i, name) in names.iter().enumerate() {
        // A kind whose input slots the nodes before can fill (a DAG), unless it goes wrong.
        let has = |kinds: &[&str]| chosen.iter().any(|c| kinds.contains(&c.kind()));
        let fits = |k: &steps::Kind| match k.inputs() {
            // evaluate: one pack and models (its own plan-time check).
            _ if k.kind() == "evaluate" => has(&["pack"]) && has(&["train", "export", "quantize"]),
            steps::Inputs::Any => true,
            steps::Inputs::Slots(slots) => slots
                .iter()
                .all(|sl| chosen.iter().any(|c| sl.kinds.contains(&c.kind()))),
        };
        let candidates: Vec<&steps::Kind> = kinds.iter().copied().filter(|k| fits(k)).collect();
        let kind = if rng.pct(err * 2) || candidates.is_empty() {
            kinds[rng.below(kinds.len())]
        } else {
            candidates[rng.below(candidates.len())]
        };
        chosen.push(kind);
        let mut fields: Vec<(String, String)> = Vec::new();
        if rng.pct(err) {
            match rng.below(3) {
                0 => {}
                1 => fields.push(("kind".into(), wrong_value(rng))),
                _ => fields.push(("kind".into(), quote(odd_string(rng)))),
            }
        } else {
            fields.push(("kind".into(), quote(kind.kind())));
        }
        // Inputs: one per slot from the nodes before; for commands any earlier nodes.
        let mut ins: Vec<String> = match kind.inputs() {
            steps::Inputs::Slots(slots) => slots
                .iter()
                .filter_map(|sl| {
                    let fill: Vec<usize> = (0..i)
                        .filter(|&j| sl.kinds.contains(&chosen[j].kind()))
                        .collect();
                    (!fill.is_empty()).then(|| quote(&names[*rng.pick(&fill)]))
                })
                .collect(),
            steps::Inputs::Any if kind.kind() == "evaluate" => {
                let of = |kinds: &[&str]| -> Vec<usize> {
                    (0..i)
                        .filter(|&j| kinds.contains(&chosen[j].kind()))
                        .collect()
                };
                let (packs, models) = (of(&["pack"]), of(&["train", "export", "quantize"]));
                let mut v = Vec::new();
                if !packs.is_empty() {
                    v.push(quote(&names[*rng.pick(&packs)]));
                }
                if !models.is_empty() {
                    v.push(quote(&names[*rng.pick(&models)]));
                }
                v
            }
            steps::Inputs::Any => (0..rng.below(i.min(3) + 1))
                .map(|_| quote(&names[rng.below(i.max(1))]))
                .collect(),
        };
        if i == 0 && matches!(kind.inputs(), steps::Inputs::Any) {
            ins.clear();
        }
        ins.dedup();
        // Going wrong: itself, a later node (maybe a cycle), a missing one, twice, a number.
        if rng.pct(err * 2) {
            let bad = match rng.below(6) {
                0 => quote(name),
                1 => quote(rng.pick(&names)),
                2 => quote(odd_string(rng)),
                3 => "1".to_string(),
                _ => ins
                    .first()
                    .cloned()
                    .unwrap_or_else(|| quote(rng.pick(&names))),
            };
            let at = rng.below(ins.len() + 1);
            ins.insert(at, bad);
        }
        if !ins.is_empty() || rng.pct(20) {
            let v = if rng.pct(err / 2) {
                wrong_value(rng)
            } else {
                format!("[{}]", ins.join(", "))
            };
            fields.push(("inputs".into(), v));
        }
        // A command's temporaries are some of its outputs.
        let outs: Vec<&str> = ["x", "y.txt", "d/z", "*.log"]
            .into_iter()
            .filter(|_| rng.pct(50))
            .collect();
        let outs = if outs.is_empty() { vec!["x"] } else { outs };
        let list = |items: &[&str]| {
            let q: Vec<String> = items.iter().map(quote).collect();
            format!("[{}]", q.join(", "))
        };
        for decl in kind.params() {
            let required = decl.default.value().is_none();
            if (required && !rng.pct(err)) || rng.pct(30 + err) {
                let v = if rng.pct(err) {
                    wrong_value(rng)
                } else if kind.kind() == "command" && decl.name == "outputs" && !rng.pct(err) {
                    list(&outs)
                } else if kind.kind() == "command" && decl.name == "temporary" && !rng.pct(err) {
                    let t: Vec<&str> = outs.iter().copied().filter(|_| rng.pct(40)).collect();
                    list(&t)
                } else {
                    param_value(rng, decl, &names, err)
                };
                fields.push((decl.name.to_string(), v));
            }
        }
        if rng.pct(err) {
            let k = odd_string(rng);
            fields.push((k, wrong_value(rng)));
        }
        if rng.pct(err / 2) && !fields.is_empty() {
            // A key twice: a TOML error.
            let dup = fields[rng.below(fields.len())].clone();
            fields.push(dup);
        }
        // Shuffle a little: the order of keys must not matter.
        if fields.len() > 1 && rng.pct(30) {
            let (a, b) = (rng.below(fields.len()), rng.below(fields.len()));
            fields.swap(a, b);
        }
        if inline {
            let body: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{} = {v}", key(k)))
                .collect();
            s.push_str(&format!("{} = {{ {} }}\n", key(name), body.join(", ")));
        } else {
            s.push_str(&format!("\n[nodes.{}]\n", key(name)));
            for (k, v) in &fields {
                s.push_str(&format!("{} = {v}\n", key(k)));
            }
        }
    }
    s.into_bytes()
}

/// The project's `Pipeline.toml`, every `pipelines/*.toml`, and a command pipeline with
/// globs and temporaries.
fn shipped() -> &'static [String] {
    static SHIPPED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    SHIPPED.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![root.join("Pipeline.toml")];
        let mut more: Vec<PathBuf> = std::fs::read_dir(root.join("pipelines"))
            .expect("pipelines/")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        more.sort();
        files.extend(more);
        let mut texts: Vec<String> = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
            .collect();
        texts.push(
            "[nodes.notes]\nkind = \"source\"\npath = \"notes\"\n\n[nodes.summary]\n\
             kind = \"command\"\ninputs = [\"notes\"]\n\
             run = \"cat $PAI_IN_NOTES/*.txt | wc -c > $PAI_OUT/count.txt\"\n\
             outputs = [\"count.txt\", \"log/*.txt\"]\ntemporary = [\"log/*.txt\"]\n"
                .into(),
        );
        texts
    })
}

/// One of the shipped pipelines (or a generated one), mutated a few times.
fn gen_mutation(rng: &mut Rng) -> Vec<u8> {
    let mut text: Vec<u8> = if rng.pct(75) {
        rng.pick(shipped()).as_bytes().to_vec()
    } else {
        gen_pipeline(rng)
    };
    for _ in 0..1 + rng.below(4) {
        let len = text.len();
        let at = rng.below(len + 1);
        match rng.below(9) {
            // Flip a byte.
            0 if len > 0 => {
                let i = rng.below(len);
                text[i] ^= 1 << rng.below(8);
            }
            // Delete a range.
            1 if len > 0 => {
                let end = (at + 1 + rng.below(40)).min(len);
                text.drain(at.min(end)..end);
            }
            // Insert a token or an odd string.
            2 => {
                let ins = if rng.pct(50) {
                    rng.pick(TOKENS).to_string()
                } else {
                    odd_string(rng)
                };
                text.splice(at..at, ins.bytes());
            }
            // Truncate.
            3 => text.truncate(at),
            // Replace a quoted string's content.
            4 | 5 => {
                let s = String::from_utf8_lossy(&text).to_string();
                let quotes: Vec<usize> = s.match_indices('"').map(|(i, _)| i).collect();
                if quotes.len() >= 2 {
                    let q = rng.below(quotes.len() / 2) * 2;
                    let (a, b) = (quotes[q] + 1, quotes[q + 1]);
                    let new = odd_string(rng).replace(['"', '\\', '\n'], "");
                    let mut out = s[..a].to_string();
                    out.push_str(&new);
                    out.push_str(&s[b..]);
                    text = out.into_bytes();
                }
            }
            // Replace a number.
            6 => {
                let s = String::from_utf8_lossy(&text).to_string();
                let digits: Vec<usize> = s
                    .char_indices()
                    .filter(|(_, c)| c.is_ascii_digit())
                    .map(|(i, _)| i)
                    .collect();
                if !digits.is_empty() {
                    let i = *rng.pick(&digits);
                    let new = *rng.pick(&[
                        "0",
                        "-1",
                        "99999999999999999999",
                        "1e400",
                        "nan",
                        "0.5",
                        "1_",
                        "0x10",
                    ]);
                    let mut out = s[..i].to_string();
                    out.push_str(new);
                    out.push_str(&s[i + 1..]);
                    text = out.into_bytes();
                }
            }
            // Duplicate or swap lines.
            _ => {
                let s = String::from_utf8_lossy(&text).to_string();
                let mut lines: Vec<&str> = s.split('\n').collect();
                if !lines.is_empty() {
                    let (a, b) = (rng.below(lines.len()), rng.below(lines.len()));
                    if rng.pct(50) {
                        lines.swap(a, b);
                    } else {
                        let l = lines[a];
                        lines.insert(b, l);
                    }
                }
                text = lines.join("\n").into_bytes();
            }
        }
    }
    text
}

// ---------------------------------------------------------------- the tests

#[test]
fn arbitrary_bytes_never_panic_the_plan_and_every_error_has_a_message() {
    run("bytes", 1, gen_bytes);
}

#[test]
fn arbitrary_toml_documents_never_panic_the_plan_and_every_error_has_a_message() {
    run("toml", 2, gen_toml);
}

#[test]
fn pipeline_like_files_never_panic_the_plan_and_every_error_has_a_message() {
    run("pipelines", 3, gen_pipeline);
}

#[test]
fn mutated_shipped_pipelines_never_panic_the_plan_and_every_error_has_a_message() {
    run("mutations", 4, gen_mutation);
}

#[test]
fn the_generators_reach_valid_pipelines_and_the_status_walk() {
    // A fuzzer that only ever produces parse errors would pass without testing the
    // validation and planning behind them: check that it gets there.
    quiet_panics();
    let h = Harness::new();
    let mut tally = Tally::default();
    for case in 0..2_000 {
        let mut rng = Rng::new(seed() ^ case);
        let bytes = gen_pipeline(&mut rng);
        check(&h, &mut rng, "pipelines", case, bytes, &mut tally);
    }
    assert!(tally.failures.is_empty(), "{}", tally.failures.join("\n\n"));
    assert!(
        tally.parsed_ok >= 20 && tally.planned >= 10,
        "only {} of 2,000 generated pipelines parsed and {} were planned",
        tally.parsed_ok,
        tally.planned
    );
}
